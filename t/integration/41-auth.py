"""Authentication over real sockets: stompd --hash-password, logins with
STOMP 1.0, 1.1 and 1.2 (CONNECT and STOMP frames, raw and with stomp.py),
wrong and missing credentials refused alike (ERROR, close, counted in the
console and /metrics, logged with the peer at most once a second, never
with the password), frames pipelined behind a CONNECT waiting for its
check, the login cache, and the protected-mode start rules."""
import base64
import http.client
import json
import os
import re
import socket
import subprocess
import time

import pytest

from stompd_test import (CONFIG_ERROR, SRCDIR, STOMPD, Client, encode_frame, free_port, hash_password, login_headers,
                         port_open, read_to_the_end, write_users)

PASSWORDS = {"alice": "alice pw: with colon", "bob": "b0b"}


@pytest.fixture
def users(tmp_path):
    return write_users(str(tmp_path / "users"), {"alice": (PASSWORDS["alice"], ["app", "ops"]),
                                                 "bob": (PASSWORDS["bob"], [])})


@pytest.fixture
def secured(broker_factory, users):
    return broker_factory({"auth.users": users})


def get(b, path, auth=("admin", "admin")):
    c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=10)
    h = {"Authorization": "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode()}
    c.request("GET", path, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def counters(b):
    """The console's counters (the fallback admin needs its own password
    while a users file is set)."""
    st, data = get(b, "/api/counters", auth=("admin", "console pw"))
    assert st == 200, data
    return json.loads(data)


def metric(b, name):
    st, data = get(b, "/metrics", auth=("admin", "console pw"))
    assert st == 200
    m = re.search(r"^stompd_%s (\d+)$" % name, data.decode(), re.M)
    return int(m.group(1))


# --------------------------------------------------------------- --hash-password

def test_hash_password_round_trip(broker_factory, tmp_path):
    y = hash_password("correct horse")
    assert y.startswith("$y$") and "\n" not in y and "correct" not in y
    s = hash_password("correct horse", "sha512")
    assert s.startswith("$6$")
    assert hash_password("correct horse") != y        # a new salt every time
    (tmp_path / "users").write_text("# both methods\nyes:%s\n\nsha:%s:g1\n" % (y, s))
    b = broker_factory({"auth.users": str(tmp_path / "users")})
    for name in ("yes", "sha"):
        c = Client(b.port)
        c.connect(headers=login_headers(name, "correct horse"))
        c.close()
    Client(b.port).connect(headers=login_headers("yes", "correct hors"), expect="ERROR")
    # what it refuses
    for args, inp, rc, says in ((["--hash-password"], "\n", 1, "empty"),
                                (["--hash-password"], "", 1, "standard input"),
                                (["--hash-password=md5"], "x\n", 2, "yescrypt")):
        r = subprocess.run([STOMPD] + args, input=inp, capture_output=True, text=True, timeout=60)
        assert r.returncode == rc and says in r.stderr and not r.stdout, r


# --------------------------------------------------------------- logins

def test_logins_in_every_version(secured):
    b = secured
    # 1.0: no accept-version, CONNECT
    c = Client(b.port)
    f = c.connect(version=None, headers=login_headers("alice", PASSWORDS["alice"]))
    assert f.get("version") == "1.0" and f.get("session")  # 1.2 says CONNECTED MUST carry version
    c.close()
    # 1.1 and 1.2 with the STOMP command
    for v in ("1.1", "1.2"):
        c = Client(b.port)
        c.send("STOMP", dict({"accept-version": v, "host": "x"}, **login_headers("bob", "b0b")))
        f = c.recv()
        assert f.command == "CONNECTED" and f["version"] == v, f
        c.version = v
        c.receipt("SEND", {"destination": "/queue/in-" + v}, "r1", b"hello")
        c.close()


def refusal(b, headers, receipt=None):
    c = Client(b.port)
    h = {"accept-version": "1.2", "host": "x"}
    h.update(headers)
    if receipt:
        h["receipt"] = receipt
    c.send("CONNECT", h)
    f = c.expect_error()
    return f


def test_wrong_and_missing_credentials_are_refused_alike(secured):
    b = secured
    first = refusal(b, login_headers("alice", "wrong"))
    assert first["message"] == "authentication failed"
    # which part was wrong is nobody's business: the same frame every time
    for headers in (login_headers("alice", PASSWORDS["bob"]), login_headers("nobody", "x"), {"login": "alice"},
                    {}, login_headers("", PASSWORDS["alice"]), {"passcode": PASSWORDS["alice"]},
                    login_headers("ALICE", PASSWORDS["alice"])):
        f = refusal(b, headers)
        assert (f.command, f.headers, f.body) == (first.command, first.headers, first.body), (headers, f)
    f = refusal(b, login_headers("bob", "nope"), receipt="login-1")
    assert f["receipt-id"] == "login-1" and f["message"] == "authentication failed"
    assert b"nope" not in f.body and b"bob" not in f.body


def test_stomppy_wrong_and_right_credentials(secured):
    import stomp
    b = secured

    class Listener(stomp.ConnectionListener):
        def __init__(self):
            self.errors, self.messages = [], []

        def on_error(self, frame):
            self.errors.append(frame)

        def on_message(self, frame):
            self.messages.append(frame.body)

    bad = stomp.Connection([("127.0.0.1", b.port)])
    lb = Listener()
    bad.set_listener("l", lb)
    with pytest.raises(stomp.exception.ConnectFailedException):
        bad.connect("alice", "not it", wait=True)
    assert lb.errors and lb.errors[0].headers["message"] == "authentication failed"
    bad.disconnect()

    good = stomp.Connection([("127.0.0.1", b.port)])
    lg = Listener()
    good.set_listener("l", lg)
    good.connect("alice", PASSWORDS["alice"], wait=True)
    good.subscribe("/queue/stomppy", id=1)
    good.send("/queue/stomppy", "via stomp.py", receipt="s1")
    deadline = time.time() + 20
    while not lg.messages and time.time() < deadline:
        time.sleep(0.05)
    assert lg.messages == ["via stomp.py"]
    good.disconnect()


def test_frames_behind_a_connect_wait_for_its_check(secured):
    """Pipelined with a CONNECT whose password is being checked: read only
    once it is accepted, and never when it is refused."""
    b = secured
    c = Client(b.port)
    h = {"accept-version": "1.2", "host": "x"}
    c.send_raw(b"".join([
        encode_frame("CONNECT", dict(h, **login_headers("bob", "b0b"))),
        encode_frame("SUBSCRIBE", {"id": "s", "destination": "/queue/piped"}),
        encode_frame("SEND", {"destination": "/queue/piped", "receipt": "r"}, b"one"),
    ]))
    c.version = "1.2"
    frames = [c.recv(timeout=20) for _ in range(3)]
    assert [f.command for f in frames] in (["CONNECTED", "RECEIPT", "MESSAGE"], ["CONNECTED", "MESSAGE", "RECEIPT"])
    # refused: the SEND behind it is never read
    bad = Client(b.port)
    bad.send_raw(encode_frame("CONNECT", dict(h, **login_headers("bob", "b0b!"))) +
                 encode_frame("SEND", {"destination": "/queue/never", "persistent": "true"}, b"sneaky"))
    bad.expect_error("authentication failed")
    probe = Client(b.port)
    probe.connect(headers=login_headers("bob", "b0b"))
    probe.receipt("SUBSCRIBE", {"id": "p", "destination": "/queue/never"}, "s")
    probe.expect_nothing(0.5)


def test_failures_counted_and_logged_once_a_second(broker_factory, users):
    b = broker_factory({"auth.users": users, "http.admin_password": "console pw"})
    assert counters(b)["auth_failures"] == 0
    n = 25
    for i in range(n):
        refusal(b, login_headers("alice", "guess-%d" % i))
    assert counters(b)["auth_failures"] == n
    assert metric(b, "auth_failures_total") == n
    # one line, then a summary with how many were not logged one by one
    def told():
        log = b.log()
        lines = re.findall(r"auth: STOMP login failed for user '(\w+)' from 127\.0\.0\.1:\d+", log)
        return (lines, len(lines) + sum(int(x) for x in re.findall(r"and (\d+) more failed logins", log)) +
                sum(int(x) for x in re.findall(r"auth: (\d+) more failed logins in the last 1 s", log)))
    deadline = time.time() + 20
    while told()[1] < n and time.time() < deadline:
        time.sleep(0.1)
    lines, total = told()
    assert total == n, b.log()[-3000:]
    assert 1 <= len(lines) < n and all(u == "alice" for u in lines), lines
    # no password, right or wrong, ever reaches the log (even at debug level)
    Client(b.port).connect(headers=login_headers("alice", PASSWORDS["alice"]))
    b.stop()
    log = b.log()
    assert "guess-" not in log and PASSWORDS["alice"] not in log and "pw: with colon" not in log


def test_the_login_cache(broker_factory, users):
    b = broker_factory({"auth.users": users, "http.admin_password": "console pw"})
    checks = metric(b, "auth_checks_total")
    for _ in range(5):
        Client(b.port).connect(headers=login_headers("bob", "b0b"))
    assert metric(b, "auth_checks_total") == checks + 1     # crypt(3) once ...
    assert metric(b, "auth_cache_hits_total") == 4          # ... then from the cache
    # a wrong password never comes from the cache
    refusal(b, login_headers("bob", "b0b "))
    assert metric(b, "auth_checks_total") == checks + 2
    # identical checks in flight run once: ten clients at once, cold cache
    b2 = broker_factory({"auth.users": users, "http.admin_password": "console pw"})
    clients = [Client(b2.port) for _ in range(10)]
    frame = encode_frame(
        "CONNECT", dict({"accept-version": "1.2", "host": "x"}, **login_headers("alice", PASSWORDS["alice"])))
    for c in clients:
        c.send_raw(frame)
    for c in clients:
        assert c.recv(timeout=30).command == "CONNECTED"
    # one check: the others joined it while in flight, or came after it from the cache
    assert metric(b2, "auth_checks_total") == 1
    assert metric(b2, "auth_coalesced_total") + metric(b2, "auth_cache_hits_total") == 9


def test_a_client_gone_during_its_check_is_let_go_and_its_check_not_run(broker_factory, tmp_path):
    """A CONNECT's socket is not read while its password is checked, so a
    client that closed was not seen: its check still ran and it held its
    connection slot until then; and a client kept waiting behind others'
    checks got "connect timeout: No CONNECT frame", though its CONNECT had
    come (helper-91). Watched now, it is let go unchecked; a client that
    only shut its side down reads why; the connect timeout does not run
    while the check waits."""
    crypt = pytest.importorskip("crypt")
    slow = crypt.crypt("pw", "$6$rounds=10000000$abcdefgh$")   # 2 s or more per check
    users = tmp_path / "users"
    users.write_text("slow:%s\n" % slow)
    os.chmod(users, 0o600)
    b = broker_factory({"auth.users": str(users), "http.admin_password": "console pw", "auth.hash_threads": "1",
                        "stomp.connect_timeout": "1s"})

    def begin(passcode):
        c = Client(b.port, timeout=60)
        c.send("CONNECT", {"accept-version": "1.2", "host": "x", "login": "slow", "passcode": passcode})
        return c
    first = begin("pw")
    gone = [begin("wrong %d" % i) for i in range(4)]
    half = begin("wrong half")
    # frames behind its CONNECT, then its side shut (printf ... | nc -N):
    # they wait for the check, and are answered (helper-93)
    piped = Client(b.port, timeout=60)
    piped.send_raw(encode_frame("CONNECT", {"accept-version": "1.2", "host": "x", "login": "slow", "passcode": "pw"}) +
                   encode_frame("SEND", {"destination": "/queue/piped", "receipt": "sent"}, b"x") +
                   encode_frame("DISCONNECT", {"receipt": "bye"}))
    # every CONNECT read before any client goes: six checks (piped joined first's)
    deadline = time.time() + 30
    while metric(b, "auth_checks_pending") != 6 or metric(b, "auth_coalesced_total") != 1:
        assert time.time() < deadline, (metric(b, "auth_checks_pending"), metric(b, "auth_coalesced_total"))
        time.sleep(0.02)
    for c in gone:
        c.close()
    half.sock.shutdown(socket.SHUT_WR)
    piped.sock.shutdown(socket.SHUT_WR)
    # each is let go long before five checks of 2 s could run
    deadline = time.time() + 30
    while metric(b, "connections_open") > 2:
        assert time.time() < deadline, metric(b, "connections_open")
        time.sleep(0.1)
    f = half.recv(timeout=30)
    assert f.command == "ERROR" and f["message"] == "login abandoned", f
    # the first, waiting past stomp.connect_timeout, gets in
    f = first.recv(timeout=60)
    assert f.command == "CONNECTED", f
    piped.version = "1.2"
    assert [(f.command, f.get("receipt-id")) for f in piped.recv_all(3, timeout=60)] == \
        [("CONNECTED", None), ("RECEIPT", "sent"), ("RECEIPT", "bye")]
    assert metric(b, "auth_checks_total") <= 3     # its own, the piped one's, one handed to the thread ahead
    assert metric(b, "auth_abandoned_total") >= 4
    assert metric(b, "auth_checks_pending") == 0


def test_one_address_cannot_queue_up_every_login(broker_factory, users):
    """Each distinct credential was a crypt(3) job with no limit, and one
    whose connection closed still ran: 1,500 console requests that closed
    at once made a correct STOMP login time out (helper-69). An address
    may have auth.max_checks_per_peer checks waiting; beyond, a login is
    refused at once, over STOMP (ERROR) and on the console (429)."""
    b = broker_factory({"auth.users": users, "http.admin_password": "console pw", "auth.max_checks_per_peer": 1})
    clients = [Client(b.port) for _ in range(20)]
    for i, c in enumerate(clients):
        c.send_raw(encode_frame("CONNECT", dict({"accept-version": "1.2", "host": "x"},
                                                **login_headers("alice", "guess %d" % i))))
    messages = [c.expect_error()["message"] for c in clients]
    assert set(messages) == {"authentication failed", "too many logins in progress"}, messages
    busy = messages.count("too many logins in progress")
    assert metric(b, "auth_busy_total") == busy
    # the console: twenty requests at once with distinct credentials
    conns = []
    for i in range(20):
        c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=30)
        cred = base64.b64encode(("alice:guess %d" % i).encode()).decode()
        c.request("GET", "/api/status", headers={"Authorization": "Basic " + cred})
        conns.append(c)
    answers = []
    for c in conns:
        r = c.getresponse()
        answers.append((r.status, r.getheader("Retry-After"), r.read()))
        c.close()
    assert {a[0] for a in answers} == {401, 429}, answers
    assert all(a[1] == "1" and b"auth.max_checks_per_peer" in a[2] for a in answers if a[0] == 429)
    # nothing waits now: a right login goes through at once
    Client(b.port).connect(headers=login_headers("alice", PASSWORDS["alice"]))


def test_a_client_that_half_closes_while_its_login_is_checked_gets_its_answers(broker_factory, users):
    """A FIN does not tell a client that left from one that shut its side
    and waits for its answers (nc -N): a connection waiting for its
    password check is answered, over STOMP and on the console, not
    dropped at the close (which is why such a check still runs for a
    client that left; auth.max_checks_per_peer and the turns bound it)."""
    b = broker_factory({"auth.users": users, "http.admin_password": "console pw"})

    def half_close(port, data):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            return read_to_the_end(s, timeout=30)
    out = half_close(b.port, encode_frame("CONNECT", dict({"accept-version": "1.2", "host": "x"},
                                                          **login_headers("alice", PASSWORDS["alice"]))) +
                     encode_frame("SEND", {"destination": "/queue/halfclosed", "receipt": "r1"}, b"hi"))
    assert out.startswith(b"CONNECTED") and b"RECEIPT\nreceipt-id:r1" in out, out
    cred = base64.b64encode(("admin:console pw").encode()).decode()
    out = half_close(b.http_port, ("GET /api/queues HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Basic %s\r\n\r\n"
                                   % (b.http_port, cred)).encode())
    assert out.startswith(b"HTTP/1.1 200") and b"/queue/halfclosed" in out, out[:300]


def test_cache_off_checks_every_login(broker_factory, users):
    b = broker_factory({"auth.users": users, "auth.cache": "false", "http.admin_password": "console pw"})
    for _ in range(3):
        Client(b.port).connect(headers=login_headers("bob", "b0b"))
    assert metric(b, "auth_checks_total") == 3 and metric(b, "auth_cache_hits_total") == 0


def test_anonymous_true_with_users(broker_factory, users):
    b = broker_factory({"auth.users": users, "auth.anonymous": "true"})
    c = Client(b.port)
    c.connect()                                    # no credentials: anonymous
    c.receipt("SEND", {"destination": "/queue/anon"}, "r")
    refusal(b, login_headers("alice", "wrong"))    # a login given is checked
    Client(b.port).connect(headers=login_headers("alice", PASSWORDS["alice"]))


def test_default_is_anonymous_on_loopback(broker):
    """The embedded default (loopback, no users): telnet and stomp.py just
    work, whatever login they send."""
    Client(broker.port).connect(version=None)
    Client(broker.port).connect(headers=login_headers("guest", "guest"))
    st, _ = get(broker, "/api/status")
    assert st == 200   # admin/admin still opens the console


# --------------------------------------------------------------- protected mode

def run_stompd(tmp_path, *settings, check=False):
    cmd = [STOMPD, "--set", "broker.data_dir=%s" % (tmp_path / "data"), "--set", "http.listen="]
    for s in settings:
        cmd += ["--set", s]
    if check:
        cmd.append("--check-config")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=str(tmp_path))


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]", ""])
def test_non_loopback_listener_without_users_refuses_to_start(tmp_path, host):
    port = free_port()
    addr = "%s:%d" % (host, port)
    for check in (True, False):
        r = run_stompd(tmp_path, "stomp.listen=" + addr, check=check)
        out = r.stdout + r.stderr
        assert r.returncode == CONFIG_ERROR, out
        assert "stomp.listen = %s is not a loopback address" % addr in out, out
        assert "auth.users" in out and "auth.anonymous" in out
        assert "accepting STOMP clients" not in out
        assert not port_open(port)
    # with a users file the configuration is fine (checked, not started:
    # this test opens no socket beyond loopback)
    users = write_users(str(tmp_path / "users"), {"u": ("p", [])})
    r = run_stompd(tmp_path, "stomp.listen=" + addr, "auth.users=" + users, check=True)
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr


def test_non_loopback_websocket_listener_without_users_refuses_to_start(tmp_path):
    """stomp.ws_listen is a client listener too: the same rule."""
    port = free_port()
    addr = "0.0.0.0:%d" % port
    for check in (True, False):
        r = run_stompd(tmp_path, "stomp.listen=127.0.0.1:%d" % free_port(), "stomp.ws_listen=" + addr, check=check)
        out = r.stdout + r.stderr
        assert r.returncode == CONFIG_ERROR, out
        assert "stomp.ws_listen = %s is not a loopback address" % addr in out, out
        assert not port_open(port)


def test_anonymous_false_without_users_refuses_to_start(tmp_path):
    r = run_stompd(tmp_path, "stomp.listen=127.0.0.1:%d" % free_port(), "auth.anonymous=false")
    assert r.returncode == CONFIG_ERROR and "auth.anonymous = false and auth.users is not set" in r.stderr, r.stderr


def test_anonymous_true_on_loopback_starts(broker_factory):
    b = broker_factory({"auth.anonymous": "true"})
    Client(b.port).connect()
    assert "can connect without a password" not in b.log()   # loopback: nothing to warn about


def test_a_bad_users_file_stops_the_start_with_file_and_line(tmp_path):
    good = hash_password("x", "sha512")
    path = tmp_path / "users"
    path.write_text("# users\nok:%s\n\nbad:not-a-hash:ops\n" % good)
    r = run_stompd(tmp_path, "stomp.listen=127.0.0.1:%d" % free_port(), "auth.users=%s" % path)
    assert r.returncode == CONFIG_ERROR, r.stderr
    assert "%s:4: the hash of user 'bad' is not a crypt(3) hash" % path in r.stderr, r.stderr
    r = run_stompd(tmp_path, "auth.users=%s" % path, check=True)
    assert r.returncode == CONFIG_ERROR and "%s:4:" % path in r.stderr
    r = run_stompd(tmp_path, "auth.users=%s" % (tmp_path / "missing"), check=True)
    assert r.returncode == CONFIG_ERROR and "cannot open the users file" in r.stderr


# --------------------------------------------------------------- the README

def test_readme_securing_section_as_printed(broker_factory, tmp_path):
    """The README's hash, users line, ACL file, ERROR frame and
    protected-mode message are what stompd takes and says."""
    readme = open(os.path.join(SRCDIR, "README.md")).read()
    sec = readme[readme.index("## Securing stompd"):]
    sec = sec[:sec.index("\n## ")]
    m = re.search(r"\$ echo '([^']+)' \| src/stompd --hash-password\n    (\S+)\n", sec)
    password, printed = m.group(1), m.group(2)
    shop = re.search(r"\n    (shop:\S+)\n", sec).group(1)
    assert shop.split(":")[1] == printed
    (tmp_path / "users").write_text(shop + "\n")
    acl = sec[sec.index("    # /etc/stompd/acl\n"):]
    acl = acl[:acl.index("\n\n")]
    (tmp_path / "acl").write_text("\n".join(line[4:] for line in acl.splitlines()) + "\n")
    b = broker_factory({"auth.users": str(tmp_path / "users"), "auth.acl": str(tmp_path / "acl")})
    c = Client(b.port)
    c.connect(headers=login_headers("shop", password))
    c.send("SEND", {"destination": "/queue/orders.audit", "receipt": "42"}, b"x")
    f = c.expect_error()
    shown = re.search(r"\n    ERROR\n((?:    .*\n)+?)\n((?:    .*\n)+)", sec)
    headers = dict(line.strip().split(":", 1) for line in shown.group(1).splitlines())
    assert f["message"] == headers["message"] and f["receipt-id"] == headers["receipt-id"]
    assert f.body.decode().strip() == shown.group(2).strip()
    # the protected-mode refusal, as printed (the README wraps it)
    port = free_port()
    r = run_stompd(tmp_path, "stomp.listen=0.0.0.0:%d" % port)
    said = re.search(r"cannot start: (.*)", r.stderr).group(1)
    printed = re.search(r"\n\n    (stomp\.listen = 0\.0\.0\.0.*?)\n\n", sec, re.S).group(1)
    assert " ".join(said.split()) == " ".join(printed.replace("0.0.0.0:61613", "0.0.0.0:%d" % port).split())
