"""The README's telnet session and stomp.py snippet work as printed, the
stomp.py one run with the command the README gives, and contrib/setup
installs what that section uses."""
import os
import re
import subprocess
import time

from stompd_test import SRCDIR, Client, free_port

README = open(os.path.join(SRCDIR, "README.md")).read()
CLIENT_COMMANDS = {"CONNECT", "STOMP", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK",
                   "BEGIN", "COMMIT", "ABORT", "DISCONNECT"}
VARIABLE = {"message-id", "timestamp", "session"}


def block_after(marker):
    i = README.index(marker)
    m = re.compile(r"```[a-z]*\n(.*?)```", re.S).search(README, i)
    return m.group(1)


def telnet_frames():
    lines = block_after("<!-- telnet session -->").splitlines()
    assert lines[0].startswith("$ telnet 127.0.0.1 61613")
    frames, cur = [], None
    for line in lines[1:]:
        if cur is None:
            if line:
                cur = {"command": line, "headers": [], "body": [], "in_body": False}
            continue
        if line.endswith("^@") and (cur["in_body"] or line == "^@"):
            if line != "^@":
                cur["body"].append(line[:-2])
            frames.append(cur)
            cur = None
        elif not cur["in_body"] and line == "":
            cur["in_body"] = True
            if cur["command"] not in CLIENT_COMMANDS and cur["command"] != "MESSAGE":
                frames.append(cur)        # CONNECTED: no body shown
                cur = None
        elif cur["in_body"]:
            cur["body"].append(line)
            if cur["command"] not in CLIENT_COMMANDS:
                frames.append(cur)
                cur = None
        else:
            cur["headers"].append(line.split(":", 1))
    assert cur is None
    return frames


def test_telnet_session(broker):
    c = Client(broker.port)
    for f in telnet_frames():
        if f["command"] in CLIENT_COMMANDS:
            # what telnet sends: each line with CRLF, ^@ is a NUL
            text = f["command"] + "\r\n" + "".join("%s:%s\r\n" % tuple(h) for h in f["headers"]) + "\r\n"
            text += "\r\n".join(f["body"])
            c.send_raw(text.encode() + b"\0\r\n")
        else:
            got = c.recv()
            c.version = "1.2"
            assert got.command == f["command"]
            assert [k for k, _ in got.headers] == [k for k, _ in f["headers"]], got
            for k, v in f["headers"]:
                if k not in VARIABLE:
                    assert got[k] == v, (k, got[k], v)
                else:
                    assert re.sub(r"\d+", "N", got[k]) == re.sub(r"\d+", "N", v), (k, got[k], v)
            if f["body"]:
                assert got.body.decode() == "\n".join(f["body"])


def test_stomp_py_snippet(broker, tmp_path):
    """Saved as the README says, run with the command it shows."""
    code = block_after("<!-- stomp.py example -->").replace("61613", str(broker.port))
    name = re.search(r"save this as `([\w.]+)`", README).group(1)
    (tmp_path / name).write_text(code)
    i = README.index("<!-- stomp.py command -->")
    command = re.compile(r"\n    (\S.*)\n").search(README, i).group(1)
    assert name in command and command.startswith("/usr/bin/python3 ")
    r = subprocess.run(command, shell=True, cwd=str(tmp_path), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "received: Hello from stomp.py" in r.stdout


def test_setup_installs_what_talk_to_it_uses():
    """The start command's contrib/setup brings telnet and stomp.py (and
    only --test brings the test tools)."""
    def packages(*args):
        r = subprocess.run([os.path.join(SRCDIR, "contrib", "setup"), "--list"] + list(args),
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return set(r.stdout.split())
    base, test = packages(), packages("--test")
    assert {"telnet", "python3-stomp"} <= base
    assert not {"valgrind", "chromium", "zookeeper", "python3-pytest", "libcmocka-dev"} & base
    assert {"valgrind", "chromium", "zookeeper", "python3-pytest", "libcmocka-dev"} <= test
    assert "zookeeper" in packages("--cluster")
    assert "contrib/setup` installs it" in README
