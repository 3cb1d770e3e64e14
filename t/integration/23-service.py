"""The broker as a service: SIGHUP reloads instead of killing it (a rotated
log is reopened, log.level applied, other keys left for the next restart,
data kept), readiness and status reach systemd through a real
NOTIFY_SOCKET, log lines suit the journal or carry a UTC offset, the
default data directory is absolute (systemd's STATE_DIRECTORY wins), and a
store error names broker.data_dir."""
import os
import re
import signal
import socket
import stat
import subprocess
import time

import pytest

from stompd_test import STOMPD, Broker, NotifySocket, built_with_sd_notify, connected, wait_for

TIMESTAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}[+-]\d{4}"



def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def many_headers(n):
    return [("h%d" % i, "v") for i in range(n)]


def test_sighup_reopens_the_log_reloads_log_level_and_keeps_serving(broker_factory):
    b = broker_factory(start=False)
    logfile = os.path.join(b.dir, "stompd-file.log")
    conf = "[log]\nlevel = %s\nfile = " + logfile + "\n[stomp]\nmax_headers = %d\n"
    b.config_text = conf % ("info", 1000)
    del b.settings["log.level"]            # the file's value, so a reload can change it
    b.start()
    c = connected(b.port)
    c.receipt("SEND", {"destination": "/queue/kept", "persistent": "true"}, "r1", b"before rotation")
    assert "accepting STOMP clients" in read(logfile)
    assert "connected with STOMP" not in read(logfile)   # a debug line, and the level is info

    # logrotate: rename, then signal. The broker must live on and write a new file.
    os.rename(logfile, logfile + ".1")
    b.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in read(logfile), what="a new log file")
    assert b.running()
    assert "configuration reloaded" not in read(logfile + ".1")
    assert "reloading the configuration" in read(logfile + ".1")
    # the connection made before the signal still works
    c.receipt("SEND", {"destination": "/queue/kept", "persistent": "true"}, "r2", b"after rotation")

    # log.level is applied at once; a key that needs a restart is named and kept
    b.config_text = conf % ("debug", 5)
    b.command()                            # rewrites the configuration file
    b.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload: log.level applied" in read(logfile), what="log.level applied")
    wait_for(lambda: "stomp.max_headers changed, but takes effect only at the next restart" in read(logfile),
             what="the key that needs a restart named")
    d = connected(b.port)
    wait_for(lambda: re.search(r"debug conn \d+ .*: connected with STOMP 1.2", read(logfile)), what="debug lines")
    d.receipt("SEND", dict(many_headers(10), destination="/queue/other"), "r3", b"10 headers: still allowed")

    # a file that no longer parses changes nothing
    with open(os.path.join(b.dir, "stompd.conf"), "w") as f:
        f.write("[log\nlevel = error\n")
    b.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "nothing changed" in read(logfile), what="the refused reload")
    assert b.running()
    d.receipt("SEND", {"destination": "/queue/other"}, "r4", b"still serving")
    c.close()
    d.close()

    # the data survived; the restart applies what needed one
    b.config_text = conf % ("debug", 5)
    assert b.stop() == 0
    b.start()
    e = connected(b.port)
    e.send("SUBSCRIBE", {"id": "1", "destination": "/queue/kept"})
    assert [e.recv().body, e.recv().body] == [b"before rotation", b"after rotation"]
    e.send("SEND", dict(many_headers(10), destination="/queue/other"), b"x")
    e.expect_error("too many headers")


@pytest.mark.skipif(not built_with_sd_notify(), reason="built without libsystemd: the unit is Type=simple")
def test_sd_notify_ready_reloading_stopping(broker_factory):
    b = broker_factory(start=False)
    ns = NotifySocket(os.path.join(b.dir, "notify"))
    try:
        b.env = ns.env()
        b.start(wait=False)
        got = ns.wait(lambda m: "READY" in m)
        # ready means serving: the port answers at once
        c = connected(b.port)
        assert got[-1]["READY"] == "1"
        assert got[-1]["STATUS"] == "standalone, serving STOMP on 127.0.0.1:%d" % b.port
        assert all("READY" not in m for m in got[:-1])

        b.proc.send_signal(signal.SIGHUP)
        got = ns.wait(lambda m: "READY" in m)
        reloading = [m for m in got if "RELOADING" in m]
        assert len(reloading) == 1 and int(reloading[0]["MONOTONIC_USEC"]) > 0
        assert got[-1]["STATUS"].startswith("standalone, serving")
        c.receipt("SEND", {"destination": "/queue/a"}, "r", b"x")

        b.proc.send_signal(signal.SIGTERM)
        got = ns.wait(lambda m: "STOPPING" in m)
        assert got[-1]["STOPPING"] == "1"
        assert b.proc.wait(timeout=60) == 0
        b.proc = None
        b.logf.close()
    finally:
        ns.close()


def test_the_watchdog_hears_the_loop_until_the_stop(broker_factory):
    """Under the unit's WatchdogSec= systemd kills a node that stops saying
    WATCHDOG=1: a master whose loop is stuck keeps its ZooKeeper session
    (the client's own thread answers) and so the cluster, without serving.
    The loop says it at half the interval, until STOPPING=1; never when
    the watchdog is another process's (WATCHDOG_PID)."""
    if not built_with_sd_notify():
        pytest.skip("built without libsystemd")
    b = broker_factory(start=False)
    ns = NotifySocket(os.path.join(b.dir, "notify"))
    try:
        b.env = dict(ns.env(), WATCHDOG_USEC="200000")
        b.start(wait=False)
        ns.wait(lambda m: "READY" in m)
        for _ in range(3):   # they come
            ns.wait(lambda m: "WATCHDOG" in m)
        # and no faster than every 0.1 s (a timer late under load catches up
        # once, so a few more than ten in a second at most)
        began, pings = time.time(), 0
        while time.time() - began < 1.0:
            try:
                pings += "WATCHDOG=1" in ns.sock.recv(4096).decode()
            except socket.timeout:
                pass
        assert pings <= 15, pings
        assert "systemd watchdog: telling it every 0.1 s" in b.log()
        b.proc.send_signal(signal.SIGTERM)
        ns.wait(lambda m: "STOPPING" in m)
        assert b.proc.wait(timeout=60) == 0
        b.proc = None
        b.logf.close()
        after = []
        while True:
            try:
                after.append(ns.sock.recv(4096).decode())
            except socket.timeout:
                break
        assert not [m for m in after if "WATCHDOG" in m], after
    finally:
        ns.close()
    b2 = broker_factory(start=False)
    ns = NotifySocket(os.path.join(b2.dir, "notify"))
    try:
        b2.env = dict(ns.env(), WATCHDOG_USEC="200000", WATCHDOG_PID="1")
        b2.start(wait=False)
        got = ns.wait(lambda m: "READY" in m)
        c = connected(b2.port)
        c.receipt("SEND", {"destination": "/queue/a"}, "r", b"x")
        time.sleep(0.5)   # five intervals in which nothing may come
        b2.proc.send_signal(signal.SIGTERM)
        got += ns.wait(lambda m: "STOPPING" in m)
        assert not [m for m in got if "WATCHDOG" in m], got
        assert "systemd watchdog" not in b2.log()
    finally:
        ns.close()


def test_log_lines_for_the_journal(broker_factory):
    """stderr is the journal when JOURNAL_STREAM names it (device:inode):
    <N> priorities, no timestamps."""
    b = broker_factory(start=False)
    open(b.log_path, "ab").close()
    st = os.stat(b.log_path)
    b.env = dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
    b.start()
    c = connected(b.port)
    c.send("SEND", {"destination": "/queue/a"}, b"x")
    c.send("BOGUS", {})
    c.expect_error()
    assert b.stop() == 0
    lines = b.log().splitlines()
    assert lines and all(re.match(r"<[3467]>", line) for line in lines), lines[:5]
    assert not any(re.search(TIMESTAMP, line) for line in lines)
    assert any(re.match(r"<6>accepting STOMP clients on 127\.0\.0\.1:%d$" % b.port, line) for line in lines)
    assert any(line.startswith("<4>console: the default credentials") for line in lines)
    assert any(re.match(r"<7>conn \d+ ", line) for line in lines)


def test_log_lines_elsewhere_carry_the_utc_offset(broker_factory):
    """A JOURNAL_STREAM that is not our stderr (stderr redirected by hand)
    means a terminal or a file: local time with its offset from UTC."""
    b = broker_factory(start=False)
    b.env = dict(os.environ, TZ="XST-5:30", JOURNAL_STREAM="1:2")
    b.start()
    assert b.stop() == 0
    lines = b.log().splitlines()
    assert lines
    for line in lines:
        assert re.match(TIMESTAMP.replace("[+-]\\d{4}", r"\+0530") + " (debug|info |warn |error) ", line), line


def test_default_data_dir_is_absolute_and_systemd_state_directory_wins(broker_factory):
    r = subprocess.run([STOMPD, "--help-config"], capture_output=True, text=True, timeout=20)
    line = next(x for x in r.stdout.splitlines() if x.split()[:1] == ["broker.data_dir"])
    default = line.split()[2]
    assert default.startswith("/") and default.endswith("/lib/stompd"), line

    b = broker_factory(start=False)
    del b.settings["broker.data_dir"]
    state = os.path.join(b.dir, "state")
    os.mkdir(state)
    b.env = dict(os.environ, STATE_DIRECTORY=state)
    b.start()
    c = connected(b.port)
    c.receipt("SEND", {"destination": "/queue/s", "persistent": "true"}, "r", b"x")
    assert os.path.exists(os.path.join(state, "store", "index", "CURRENT"))
    assert "store: leveldb %s/store" % state in b.log()
    assert not os.path.exists(os.path.join(b.dir, "data"))


def test_store_error_names_broker_data_dir(tmp_path):
    (tmp_path / "afile").write_text("")
    b = Broker({"broker.data_dir": "afile/x"}, workdir=str(tmp_path))
    r = subprocess.run(b.command(), cwd=str(tmp_path), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert ("cannot open the store: cannot create afile/x/store: Not a directory "
            "(broker.data_dir = afile/x, relative to the working directory %s)" % tmp_path) in r.stderr, r.stderr


def test_the_zookeeper_clients_lines_go_through_the_log(broker_factory):
    """The ZooKeeper client wrote its own lines to stderr: past log.file,
    with no <N> priority for journald, about 30 a second while ZooKeeper
    was down (helper-88). They go through the log now, at their level,
    10 a minute at most."""
    from stompd_test import free_port, replicated
    b = broker_factory(replicated("z", free_port(), "auto", zookeeper__address="127.0.0.1:%d" % free_port(),
                                  zookeeper__session_timeout="2s", log__level="info"), start=False)
    open(b.log_path, "ab").close()
    st = os.stat(b.log_path)
    b.env = dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
    b.start(wait="zookeeper client: ")
    time.sleep(3)  # a window in which the client writes about 90 lines (fewer on a loaded machine)
    lines = b.log().splitlines()
    zk = [line for line in lines if "zookeeper client: " in line]
    assert 1 <= len(zk) <= 10, zk
    assert all(line.startswith("<3>") for line in zk), zk
    assert not any("ZOO_" in line for line in lines), [line for line in lines if "ZOO_" in line][:3]
    assert b.stop() == 0


def test_started_with_its_standard_files_closed(tmp_path):
    """Started with stdin, stdout and stderr closed, the first files the
    broker opened took their numbers: LevelDB's LOG became fd 2 and got
    the broker's lines (helper-88). They are /dev/null now. And of the
    directories made for broker.data_dir, only it and the store are
    private."""
    from stompd_test import free_port, wait_port
    port = free_port()
    data = tmp_path / "srv" / "lib" / "data"
    log = tmp_path / "stompd.log"

    def close_std():
        for fd in (0, 1, 2):
            os.close(fd)
    p = subprocess.Popen([STOMPD, "--set", "broker.data_dir=%s" % data, "--set", "stomp.listen=127.0.0.1:%d" % port,
                          "--set", "http.listen=", "--set", "log.file=%s" % log], preexec_fn=close_std)
    try:
        assert wait_port(port, 30)
        for fd in (0, 1, 2):
            assert os.readlink("/proc/%d/fd/%d" % (p.pid, fd)) == "/dev/null"
        c = connected(port)
        c.send("BOGUS", {})
        c.expect_error()
        assert wait_for(lambda: "unknown command" in read(str(log)))
    finally:
        p.terminate()
        assert p.wait(30) == 0
    assert "accepting STOMP clients" in read(str(log))
    um = os.umask(0)
    os.umask(um)
    modes = {d: stat.S_IMODE(os.stat(d).st_mode) for d in (tmp_path / "srv", tmp_path / "srv" / "lib", data)}
    assert modes == {tmp_path / "srv": 0o755 & ~um, tmp_path / "srv" / "lib": 0o755 & ~um, data: 0o750 & ~um}, modes
