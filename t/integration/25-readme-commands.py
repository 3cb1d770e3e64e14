"""The README's two commands, in sequence, on a fresh clone.

On a `git clone` of this repository, with the working tree's uncommitted
changes copied over (so what runs is the code under test):
  1. the test command, alone on the fresh clone;
  2. the start command after it: setup, autoreconf, configure and make in
     the source tree, then the broker it starts (its ports moved to free
     ones) serves a STOMP client and stops cleanly on SIGTERM;
  3. the test command again, after that in-tree build: the sequence that
     failed with "source directory already configured". It must test a
     copy of the working tree and leave the in-tree build alone.
The test command runs in its short form: RUN_TESTS_ONLY limits its step 1
(the sanitizer build and make check) to two tests and skips the valgrind
pass and make distcheck. So this proves contrib/setup, autoreconf,
configure, a complete build and a make check run in each situation, not
the whole suite in each (the suite would run itself; CI runs the whole
test command on a fresh clone anyway). Not covered here: contrib/setup
installing packages on a machine without them (it skips apt when all are
installed), and the valgrind and distcheck steps after an in-tree build.
Also checked: .ci/run runs the README's test command, and the builds leave
no untracked file in the clone (.gitignore is complete)."""
import os
import re
import shutil
import signal
import subprocess

import pytest

from stompd_test import SRCDIR, connected, free_port, wait_port

README = open(os.path.join(SRCDIR, "README.md")).read()
QUICK = "t/unit/test_frame t/integration/01-connect.py"


def command_after(text):
    """The first indented (code) line after the paragraph containing text."""
    i = README.index(text)
    return re.compile(r"\n\n    (\S.*)\n").search(README, i).group(1)


def toplevel():
    r = subprocess.run(["git", "-C", SRCDIR, "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def fresh_clone(dst):
    """git clone, then the working tree's changes on top (tracked files
    modified or deleted, new files git does not ignore)."""
    top = toplevel()
    subprocess.run(["git", "clone", "-q", top, dst], check=True, timeout=300)
    listed = subprocess.run(["git", "-C", top, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, listed):
        src, to = os.path.join(top, f), os.path.join(dst, f)
        if os.path.lexists(src):
            os.makedirs(os.path.dirname(to), exist_ok=True)
            shutil.copy2(src, to, follow_symlinks=False)
        elif os.path.lexists(to):
            os.remove(to)


def env():
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("STOMPD") and k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "TESTS")}
    e["RUN_TESTS_ONLY"] = QUICK
    return e


def sh(command, cwd, timeout=1800):
    # niced: the rest of the suite runs alongside
    r = subprocess.run(["nice", "-n", "10", "bash", "-c", command], cwd=cwd, env=env(), capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, "%s failed (%d):\n%s\n%s" % (command, r.returncode, r.stdout[-6000:], r.stderr[-6000:])
    return r.stdout + r.stderr


@pytest.mark.skipif(toplevel() is None, reason="not a git checkout: nothing to clone")
def test_start_and_test_commands_in_either_order_on_a_fresh_clone(tmp_path):
    start = command_after("Set up, build and start a standalone broker")
    test = command_after("Set up, build and run the whole test suite")
    assert start.startswith("./contrib/setup && ") and test == "./contrib/run-tests"
    with open(os.path.join(SRCDIR, ".ci", "run")) as f:
        assert re.search(r"^%s$" % re.escape(test), f.read(), re.M)
    clone = str(tmp_path / "stompd")
    fresh_clone(clone)

    # 1. the test command alone
    out = sh(test, clone)
    assert "PASS: t/integration/01-connect.py" in out and "RUN_TESTS_ONLY is set" in out
    assert "snapshot" not in out

    # 2. the start command: its build, then the broker it starts
    build, run = start.rsplit(" && ", 1)
    assert run.startswith("src/stompd ")
    sh(build, clone)
    port, http = free_port(), free_port()
    proc = subprocess.Popen(["bash", "-c", "exec %s --set stomp.listen=127.0.0.1:%d --set http.listen=127.0.0.1:%d"
                             % (run, port, http)], cwd=clone, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_port(port, 60), proc.stdout.read1(65536).decode(errors="replace") if proc.poll() else ""
        c = connected(port)
        c.receipt("SEND", {"destination": "/queue/readme", "persistent": "true"}, "r", b"quick start")
        c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert os.path.isfile(os.path.join(clone, "data", "store", "index", "CURRENT"))   # conf/stompd.conf's ./data
    binary = os.path.join(clone, "src", "stompd")
    before = os.stat(binary).st_mtime_ns

    # 3. the test command after the in-tree build
    out = sh(test, clone)
    assert "testing a copy of the working tree in build/snapshot/src" in out
    assert "PASS: t/integration/01-connect.py" in out
    assert os.stat(binary).st_mtime_ns == before
    # every build output is ignored by git
    status = subprocess.run(["git", "-C", clone, "status", "--porcelain", "--untracked-files=all"],
                            capture_output=True, text=True, check=True).stdout
    mine = subprocess.run(["git", "-C", toplevel(), "status", "--porcelain", "--untracked-files=all"],
                          capture_output=True, text=True, check=True).stdout
    assert [line for line in status.splitlines() if line.startswith("??") and line not in mine.splitlines()] == []
