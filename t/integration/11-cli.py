"""The command line, the configuration file and clean stops."""
import os
import signal
import subprocess
import time

from stompd_test import CONFIG_ERROR, STOMPD, SRCDIR, VALGRIND, Broker, connected, free_port


def run(*args):
    return subprocess.run([STOMPD] + list(args), capture_output=True, text=True, timeout=20)


def test_help_and_version():
    r = run("--help")
    assert r.returncode == 0 and "--set" in r.stdout and "--help-config" in r.stdout
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("stompd ")


def test_help_config_lists_every_key_with_default():
    r = run("--help-config")
    assert r.returncode == 0
    for key in ["stomp.listen", "stomp.max_frame_size", "broker.max_connections",
                "stomp.connect_timeout", "log.level", "store.type"]:
        assert key in r.stdout, key
    assert "127.0.0.1:61613" in r.stdout


def test_shipped_config_documents_every_key():
    keys = [line.split()[0] for line in run("--help-config").stdout.splitlines()
            if line.startswith("  ")]
    text = open(os.path.join(SRCDIR, "conf", "stompd.conf")).read()
    for k in keys:
        section, name = k.split(".", 1)
        assert "[%s]" % section in text, section
        assert ("\n%s =" % name in text) or ("\n# %s =" % name in text), k
    r = run("-c", os.path.join(SRCDIR, "conf", "stompd.conf"), "--check-config")
    assert r.returncode == 0, r.stderr


def test_bad_configuration_stops_the_start(tmp_path):
    r = run("--set", "stomp.nope=1")
    assert r.returncode == CONFIG_ERROR and "unknown configuration key 'stomp.nope'" in r.stderr
    r = run("--set", "stomp.max_headers=0")
    assert r.returncode == CONFIG_ERROR and "out of range" in r.stderr
    r = run("--set", "stomp.max_frame_size=lots")
    assert r.returncode == CONFIG_ERROR and "size" in r.stderr
    r = run("--set", "log.level=loud")
    assert r.returncode == CONFIG_ERROR and "debug|info|warn|error" in r.stderr
    r = run("--set", "novalue")
    assert r.returncode == CONFIG_ERROR and "section.key=value" in r.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text("[stomp]\nmax_headers = many\n")
    r = run("-c", str(bad))
    assert r.returncode == CONFIG_ERROR and "bad.conf" in r.stderr and "max_headers" in r.stderr
    bad.write_text("[stomp\nx\n")
    r = run("-c", str(bad))
    assert r.returncode == CONFIG_ERROR and "syntax error" in r.stderr
    r = run("-c", str(tmp_path / "missing.conf"))
    assert r.returncode == CONFIG_ERROR and "cannot open" in r.stderr
    # rules across keys: --check-config and the start refuse with one message
    for sets, says in ((["broker.dlq=notaqueue"], "broker.dlq 'notaqueue' is not a /queue/ destination"),
                       (["store.sync=bogus"], "store.sync"),
                       (["store.type=replicated-leveldb", "store.role=auto"], "store.role = auto needs"),
                       (["store.type=replicated-leveldb", "store.role=auto", "zookeeper.address=127.0.0.1"],
                        "zookeeper.address: '127.0.0.1' is not host:port"),
                       (["store.type=memory", "store.sync=quorum_disk"], "needs store.type = replicated-leveldb"),
                       (["stomp.listen="], "stomp.listen is empty"),
                       (["stomp.output_limit=2MiB", "stomp.max_output_buffers=1MiB"],
                        "stomp.max_output_buffers (1048576 bytes) is below stomp.output_limit")):
        args = [a for kv in sets for a in ("--set", kv)]
        checked = run(*args, "--check-config")
        started = run(*args, "--set", "broker.data_dir=%s" % (tmp_path / "data"))
        assert checked.returncode == CONFIG_ERROR and says in checked.stderr, checked.stderr
        assert started.returncode == CONFIG_ERROR and says in started.stderr, started.stderr
        assert not (tmp_path / "data").exists()
    # what the start refuses later, --check-config refuses now
    r = run("--set", "store.type=replicated-leveldb", "--set", "store.role=master", "--set", "store.bind=0.0.0.0:7",
            "--check-config")
    assert r.returncode == CONFIG_ERROR and "store.security_token is empty" in r.stderr, r.stderr
    zk = ["--set", "store.type=replicated-leveldb", "--set", "zookeeper.address=127.0.0.1:2181"]
    # not this machine's address (or not resolving): perhaps the network still coming up at boot, so
    # status 1, which the unit restarts (helper-98), not CONFIG_ERROR, which it gives up on
    r = run(*zk, "--set", "store.hostname=192.0.2.11", "--check-config")  # TEST-NET-1: nobody's address
    assert r.returncode == 1 and "does not resolve to an address of this machine" in r.stderr, r.stderr
    r = run(*zk, "--set", "store.hostname=192.0.2.11", "--set", "broker.data_dir=%s" % (tmp_path / "data"),
            "--set", "http.listen=", "--set", "stomp.listen=127.0.0.1:%d" % free_port())
    assert r.returncode == 1 and "does not resolve to an address of this machine" in r.stderr, r.stderr
    r = run(*zk, "--set", "store.hostname=no-such-host.invalid", "--check-config")
    assert r.returncode == 1 and "store.hostname 'no-such-host.invalid' does not resolve" in r.stderr, r.stderr
    # a configuration error found alongside is the configuration's
    r = run(*zk, "--set", "store.hostname=192.0.2.11", "--set", "zookeeper.path=relative", "--check-config")
    assert r.returncode == CONFIG_ERROR and "zookeeper.path 'relative'" in r.stderr, r.stderr
    r = run(*zk, "--set", "zookeeper.path=relative", "--check-config")
    assert r.returncode == CONFIG_ERROR and "zookeeper.path 'relative' must start with /" in r.stderr, r.stderr
    assert run(*zk, "--check-config").returncode == 0
    # a directory given as the file is refused, not read as empty (the defaults)
    r = run("-c", str(tmp_path), "--check-config")
    assert r.returncode == CONFIG_ERROR and "is a directory" in r.stderr, r.stderr
    # --dump-store of a directory without a store creates none
    r = run("--dump-store", str(tmp_path / "dta"))
    assert r.returncode == 1 and "no store under" in r.stderr and not (tmp_path / "dta").exists(), r.stderr
    r = run("--set", "log.file=%s/no/such/dir/stompd.log" % tmp_path)
    assert r.returncode == 1 and "cannot open the log file" in r.stderr and "(log.file)" in r.stderr


def test_config_file_then_set_overrides(tmp_path):
    b = Broker(config_text="[stomp]\nlisten = 127.0.0.1:1\nmax_headers = 5\n")
    try:
        b.start()
        c = connected(b.port)
        c.send_raw(b"SEND\ndestination:/queue/a\n" + b"".join(b"h%d:v\n" % i for i in range(6)) + b"\n\0")
        c.expect_error("too many headers")
    finally:
        b.cleanup()


def test_listen_failure_is_reported(tmp_path):
    """The message names the key to change."""
    b = Broker()
    b.start()
    try:
        data = "--set", "broker.data_dir=%s" % tmp_path
        r = run(*data, "--set", "stomp.listen=127.0.0.1:%d" % b.port, "--set", "http.listen=")
        assert r.returncode == 1 and "cannot listen on 127.0.0.1:%d" % b.port in r.stderr, r.stderr
        assert "(stomp.listen)" in r.stderr
        r = run(*data, "--set", "stomp.listen=127.0.0.1:%d" % free_port(),
                "--set", "http.listen=127.0.0.1:%d" % b.http_port)
        assert r.returncode == 1 and "cannot listen on 127.0.0.1:%d" % b.http_port in r.stderr, r.stderr
        assert "http.listen" in r.stderr
        r = run(*data, "--set", "store.type=replicated-leveldb", "--set", "store.role=master",
                "--set", "store.bind=127.0.0.1:%d" % b.port, "--set", "http.listen=")
        assert r.returncode == 1 and "cannot listen on 127.0.0.1:%d" % b.port in r.stderr, r.stderr
        assert "store.bind" in r.stderr
    finally:
        b.cleanup()


def test_sigterm_and_sigint_stop_cleanly(broker_factory):
    for sig in (signal.SIGTERM, signal.SIGINT):
        b = broker_factory()
        c = connected(b.port)
        c.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/s", "ack": "client"}, "s")
        c.send("SEND", {"destination": "/queue/s"}, b"x")
        c.recv()
        b.proc.send_signal(sig)
        # (valgrind's leak check at exit takes a while)
        assert b.proc.wait(timeout=60 if VALGRIND else 10) == 0
        assert "stopped" in b.log()
        b.proc = None
        b.logf.close()
        c.expect_closed()


def test_signals_during_the_stop_do_not_kill_it(broker_factory):
    """An operator's repeated Ctrl-C or kill during a stop: the stop already
    under way finishes (the store closed, exit 0) instead of the default
    action killing the process part way (exit -15)."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        b = broker_factory()
        c = connected(b.port)
        c.receipt("SEND", {"destination": "/queue/s", "persistent": "true"}, "r1", b"x")
        b.proc.send_signal(signal.SIGTERM)
        sent = 0
        while b.proc.poll() is None:  # a burst through the whole stop
            try:
                b.proc.send_signal(sig)
            except ProcessLookupError:
                break
            sent += 1
            time.sleep(0.0002)  # (valgrind takes each one)
        rc = b.proc.wait(timeout=60 if VALGRIND else 10)
        assert rc == 0, "signal %d during the stop: exit %d after %d signals\n%s" % (sig, rc, sent, b.log())
        assert "stopped" in b.log()
        b.proc = None
        b.logf.close()
        c.expect_closed()
        # the stop was whole: the message is there after a restart
        b2 = broker_factory(workdir=b.dir, name="again")
        c2 = connected(b2.port)
        c2.send("SUBSCRIBE", {"id": "1", "destination": "/queue/s"})
        assert c2.recv().body == b"x"
        c2.close()


def test_check_config_writes_to_the_terminal_and_makes_no_log_file(tmp_path):
    """--check-config opened log.file first: its warnings went there, not
    to the terminal, and a check run as root left a root-owned log file
    the service's user could then not open (helper-88)."""
    h = subprocess.run([STOMPD, "--hash-password"], input="secret\n", capture_output=True, text=True, timeout=20)
    users = tmp_path / "users"
    users.write_text("app:%s\n" % h.stdout.strip())
    os.chmod(users, 0o644)
    log = tmp_path / "logs" / "stompd.log"
    os.mkdir(tmp_path / "logs")
    r = run("--set", "log.file=%s" % log, "--set", "auth.users=%s" % users, "--check-config")
    assert r.returncode == 0 and "configuration OK" in r.stdout, (r.stdout, r.stderr)
    assert "can be read by every user" in r.stderr
    assert not log.exists()


def test_rights_files_writable_by_every_user_are_refused(tmp_path):
    """A users or ACL file writable by every user of the machine was taken
    (the users file with a warning about reading only, the ACL without a
    word): anyone could add themselves to the admins (helper-88)."""
    h = subprocess.run([STOMPD, "--hash-password"], input="secret\n", capture_output=True, text=True, timeout=20)
    users = tmp_path / "users"
    users.write_text("app:%s:admins\n" % h.stdout.strip())
    acl = tmp_path / "acl"
    acl.write_text("queue:>  read=admins write=admins admin=admins\n")
    os.chmod(users, 0o600)
    os.chmod(acl, 0o644)
    args = ["--set", "auth.users=%s" % users, "--set", "auth.acl=%s" % acl]
    r = run(*args, "--check-config")
    assert r.returncode == 0, r.stderr
    for f, key in ((users, "auth.users"), (acl, "auth.acl")):
        os.chmod(f, 0o666)
        r = run(*args, "--check-config")
        assert r.returncode == CONFIG_ERROR and "%s (%s) can be written by every user" % (f, key) in r.stderr, r.stderr
        os.chmod(f, 0o640)
    assert run(*args, "--check-config").returncode == 0


def test_a_console_off_loopback_refuses_the_default_login(tmp_path):
    """A console on another address than loopback took admin/admin with a
    warning, while the STOMP listeners refuse to start without a users
    file (helper-88): the console now refuses too. (Only checked: nothing
    binds beyond loopback.)"""
    base = ["--set", "broker.data_dir=%s" % (tmp_path / "d"), "--set", "stomp.listen=127.0.0.1:%d" % free_port(),
            "--set", "http.listen=0.0.0.0:%d" % free_port()]
    for args in ([], ["--set", "http.admin_user=admin"]):
        r = run(*base, *args, "--check-config")
        assert r.returncode == CONFIG_ERROR, r.stdout
        assert "http.listen = 0.0.0.0:" in r.stderr and "default admin/admin" in r.stderr, r.stderr
    r = run(*base)  # the start says the same, before binding anything
    assert r.returncode == CONFIG_ERROR and "default admin/admin" in r.stderr, r.stderr
    for args in (["--set", "http.admin_password=s3cret-enough"], ["--set", "http.auth=false"]):
        r = run(*base, *args, "--check-config")
        assert r.returncode == 0, r.stderr
