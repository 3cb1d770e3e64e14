"""SIGHUP reads the users and ACL files again, without a restart: new
CONNECTs use the new users, open connections are held to the new files
(a changed password keeps the session; a user removed, or a read taken
away, ends it), new frames meet the new permissions, the console takes
the new users too, and a file that no longer loads keeps the old one
(the log says where it went wrong)."""
import base64
import http.client
import os
import re
import select
import signal
import time

import pytest

from stompd_test import Client, http_request, login_headers, write_users


def reload(b, expect, refused=False):
    """SIGHUP, wait for this reload's end; its log lines include expect.
    refused: it must change nothing."""
    end = "nothing changed" if refused else "configuration reloaded"
    mark = len(b.log())
    b.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 20
    while end not in b.log()[mark:] and time.time() < deadline:
        time.sleep(0.05)
    tail = b.log()[mark:]
    for part in expect + [end]:
        assert part in tail, (part, tail)
    if refused:
        assert "configuration reloaded" not in tail and "applied" not in tail, tail
    assert b.running()
    return tail


def metric(b, sample, auth=("admin", "s3cret")):
    """A sample of b's /metrics, by its name and labels as printed."""
    st, _, data = http_request(b.http_port, "GET", "/metrics", auth=auth)
    assert st == 200
    return int(float(re.search(r"^%s (\S+)$" % re.escape(sample), data.decode(), re.M).group(1)))


def wait_checks_pending(b, n, auth=("admin", "s3cret")):
    """Until n password checks are under way: the broker has read the
    CONNECTs (a SIGHUP sent before that came first, and the logins met
    only the new file)."""
    deadline = time.time() + 20
    while metric(b, "stompd_auth_checks_pending", auth) != n:
        assert time.time() < deadline, "the checks never began"
        time.sleep(0.02)


def send_own(c, dest, body):
    """SEND to a destination c consumes from: its RECEIPT and the MESSAGE
    come in either order; returns the MESSAGE."""
    c.send("SEND", {"destination": dest, "receipt": "own"}, body)
    frames = [c.recv(), c.recv()]
    assert sorted(f.command for f in frames) == ["MESSAGE", "RECEIPT"], frames
    return [f for f in frames if f.command == "MESSAGE"][0]


def console(b, auth):
    c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=15)
    c.request("GET", "/api/status", headers={"Authorization": "Basic " +
                                             base64.b64encode(("%s:%s" % auth).encode()).decode()})
    st = c.getresponse().status
    c.close()
    return st


@pytest.fixture
def files(tmp_path):
    users = str(tmp_path / "users")
    write_users(users, {"alice": ("one", ["app"]), "bob": ("bob pw", ["admins"])})
    acl = tmp_path / "acl"
    acl.write_text("queue:work.> read=app write=app admin=app\n")
    return users, str(acl)


def test_users_file_reload(broker_factory, files):
    users, acl = files
    b = broker_factory({"auth.users": users})
    old = Client(b.port)
    old.connect(headers=login_headers("alice", "one"))
    assert console(b, ("alice", "one")) == 403

    write_users(users, {"alice": ("two", ["app", "admins"]), "dave": ("dave pw", [])})
    reload(b, ["auth: 2 users from " + users])
    Client(b.port).connect(headers=login_headers("alice", "one"), expect="ERROR")   # the old password
    Client(b.port).connect(headers=login_headers("bob", "bob pw"), expect="ERROR")  # gone
    Client(b.port).connect(headers=login_headers("alice", "two"))
    Client(b.port).connect(headers=login_headers("dave", "dave pw"))
    # the open connection keeps its session: its password changed, its user stays
    old.receipt("SEND", {"destination": "/queue/still"}, "r1", b"still here")
    # the console too: alice is now in admins
    assert console(b, ("alice", "two")) == 200
    assert console(b, ("bob", "bob pw")) == 401

    # a broken file keeps the users there are, and the log says where
    with open(users, "a") as f:
        f.write("eve:plaintext\n")
    tail = reload(b, ["reload: users: %s:4: the hash of user 'eve' is not a crypt(3) hash" % users,
                      "its settings are unchanged"])
    assert "users from" not in tail
    Client(b.port).connect(headers=login_headers("alice", "two"))
    Client(b.port).connect(headers=login_headers("eve", "plaintext"), expect="ERROR")


def test_acl_file_reload(broker_factory, files):
    users, acl = files
    b = broker_factory({"auth.users": users, "auth.acl": acl})
    c = Client(b.port)
    c.connect(headers=login_headers("alice", "one"))
    c.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/work.a"}, "r0")
    assert send_own(c, "/queue/work.a", b"allowed").body == b"allowed"

    # a broken ACL keeps the old rules
    with open(acl, "w") as f:
        f.write("queue:work.> read=app\nqueue:work.> write=app\n")
    reload(b, ["reload: acl: %s:2: queue:work.> is already on line 1" % acl, "its settings are unchanged"])
    assert send_own(c, "/queue/work.a", b"still allowed").body == b"still allowed"

    # write taken away: the same open connection's next SEND is refused
    with open(acl, "w") as f:
        f.write("queue:work.> read=app admin=app\n")
    reload(b, ["auth: 1 ACL entries from " + acl])
    c.send("SEND", {"destination": "/queue/work.a", "receipt": "r3"}, b"now refused")
    f = c.recv()
    assert f.command == "ERROR" and f["message"] == "access denied: no write permission on /queue/work.a"
    assert f["receipt-id"] == "r3"
    c.expect_closed()

    # a new entry: allowed again, to a new connection
    with open(acl, "w") as f:
        f.write("queue:> read=* write=* admin=*\n")
    reload(b, ["auth: 1 ACL entries from " + acl])
    d = Client(b.port)
    d.connect(headers=login_headers("bob", "bob pw"))
    d.receipt("SEND", {"destination": "/queue/anything"}, "r4", b"ok")


def test_a_reload_holds_open_sessions_to_the_new_files(broker_factory, tmp_path):
    """Before, a connection kept its session as it logged in: a user removed,
    a group left, a read taken away, and it went on receiving."""
    users = str(tmp_path / "users")
    write_users(users, {"alice": ("a", ["app"]), "bob": ("b", ["app"]), "dave": ("d", ["ops"]),
                        "erin": ("e", ["admins"])})
    acl = tmp_path / "acl"
    rules = ("queue:work.> read=app write=app admin=app\n"
             "queue:ops.> read=ops write=* admin=*\n"
             "queue:> read=admins write=admins admin=admins\n")
    acl.write_text(rules)
    b = broker_factory({"auth.users": users, "auth.acl": str(acl)})

    plain = Client(b.port)       # alice on /queue/work.a, one message held unacked
    plain.connect(headers=login_headers("alice", "a"))
    plain.receipt("SUBSCRIBE", {"id": "p", "destination": "/queue/work.a", "ack": "client"}, "r0")
    assert send_own(plain, "/queue/work.a", b"held").body == b"held"
    wild = Client(b.port)        # alice on every work queue, two of them now
    wild.connect(headers=login_headers("alice", "a"))
    wild.receipt("SEND", {"destination": "/queue/work.b"}, "r1", b"b1")
    wild.receipt("SEND", {"destination": "/queue/work.secret"}, "r2", b"s1")
    wild.receipt("SUBSCRIBE", {"id": "w", "destination": "/queue/work.>"}, "r3")
    assert sorted(f.body for f in wild.recv_all(2)) == [b"b1", b"s1"]
    gone = Client(b.port)        # bob, removed from the users file
    gone.connect(headers=login_headers("bob", "b"))
    ops = Client(b.port)         # dave, who leaves group ops
    ops.connect(headers=login_headers("dave", "d"))
    ops.receipt("SUBSCRIBE", {"id": "o", "destination": "/queue/ops.q"}, "r4")

    write_users(users, {"alice": ("a", ["app"]), "dave": ("d", []), "erin": ("e", ["admins"])})
    acl.write_text("queue:work.a read=admins write=app,admins admin=app\n"
                   "queue:work.secret read=admins write=app,admins admin=app\n" + rules)
    reload(b, ["reload: 3 connections closed (user gone or access revoked); wildcard subscriptions "
                      "let go of 2 queues they may no longer read"])

    f = gone.expect_error("logged out: the user is no longer in the users file")
    assert "User 'bob'" in f.body.decode(), f
    f = plain.expect_error("access denied: no read permission on /queue/work.a")
    assert "subscription 'p' ends with the connection" in f.body.decode(), f
    ops.expect_error("access denied: no read permission on /queue/ops.q")
    # the wildcard consumer keeps work.b, and no longer takes work.a nor work.secret
    reader = Client(b.port)
    reader.connect(headers=login_headers("erin", "e"))
    reader.receipt("SEND", {"destination": "/queue/work.secret"}, "r5", b"s2")
    assert send_own(wild, "/queue/work.b", b"b2").body == b"b2"
    wild.expect_nothing()
    # what plain held went back to its queue, for one who may read it (not
    # the wildcard consumer: every connection was judged before any closed)
    reader.receipt("SUBSCRIBE", {"id": "x", "destination": "/queue/work.a"}, "r7")
    f = reader.recv()
    assert f.body == b"held" and f.get("redelivered") == "true", f
    reader.receipt("SUBSCRIBE", {"id": "y", "destination": "/queue/work.secret"}, "r8")
    assert reader.recv().body == b"s2"


def revoking_broker(broker_factory, tmp_path, **extra):
    """alice (group app) reads everything; revoke() takes work.secret away."""
    users = str(tmp_path / "users")
    write_users(users, {"alice": ("a", ["app"]), "erin": ("e", ["admins"])})
    acl = tmp_path / "acl"
    rules = ("queue:> read=app,admins write=app,admins admin=app,admins\n"
             "topic:> read=app,admins write=app,admins admin=app,admins\n")
    acl.write_text(rules)
    settings = {"auth.users": users, "auth.acl": str(acl)}
    settings.update(extra)
    b = broker_factory(settings)

    def revoke(kinds=("queue", "topic")):
        acl.write_text("".join("%s:work.secret read=admins write=app,admins admin=app,admins\n" % k
                               for k in kinds) + rules)
        reload(b, [])
    return b, revoke


def test_a_browse_under_way_is_held_to_the_new_acl(broker_factory, tmp_path):
    """A browser:true subscription paused half-way through a deep queue
    went on to the end after its read was taken away (helper-104)."""
    b, revoke = revoking_broker(broker_factory, tmp_path, **{"stomp.output_limit": "64KiB"})
    p = Client(b.port)
    p.connect(headers=login_headers("erin", "e"))
    for i in range(400):
        p.send("SEND", {"destination": "/queue/work.secret"}, b"x" * 8000)
    p.receipt("SEND", {"destination": "/queue/work.secret"}, "done", b"x" * 8000)
    br = Client(b.port, rcvbuf=4096, timeout=20)
    br.connect(headers=login_headers("alice", "a"))
    br.send("SUBSCRIBE", {"id": "b", "destination": "/queue/work.secret", "browser": "true"})
    assert br.recv().command == "MESSAGE"   # it has begun, and waits for room
    revoke()
    while True:
        f = br.recv()
        assert f.command in ("MESSAGE", "ERROR"), f
        assert f.get("browser") != "end", "the browse went on to its end"
        if f.command == "ERROR":
            break
    assert f["message"] == "access denied: no read permission on /queue/work.secret", f
    assert "subscription 'b' ends" in f.body.decode(), f


def test_a_wildcard_topic_subscriptions_backlog_is_held_to_the_new_acl(broker_factory, tmp_path):
    """Messages of a topic waiting in a wildcard subscription's backlog
    were delivered after its read was taken away (helper-104): only new
    publishes were checked."""
    b, revoke = revoking_broker(broker_factory, tmp_path)
    s = Client(b.port)
    s.connect(headers=login_headers("alice", "a"))
    s.receipt("SUBSCRIBE", {"id": "w", "destination": "/topic/work.>", "ack": "client-individual",
                            "activemq.prefetchSize": "1"}, "r0")
    p = Client(b.port)
    p.connect(headers=login_headers("erin", "e"))
    for i in range(5):
        p.receipt("SEND", {"destination": "/topic/work.secret"}, "p%d" % i, b"secret %d" % i)
    p.receipt("SEND", {"destination": "/topic/work.open"}, "po", b"open")
    first = s.recv()
    assert first.body == b"secret 0"
    revoke(kinds=("topic",))
    s.send("ACK", {"id": first["ack"]})
    f = s.recv()
    assert f.body == b"open", f               # the four secret ones left its backlog
    s.send("ACK", {"id": f["ack"]})
    s.expect_nothing()


def test_a_composites_named_topic_is_not_taken_for_a_queue_patterns(broker_factory, tmp_path):
    """/queue/work.>,/topic/work.secret: the topic's read taken away was
    let go of quietly, as if the queue pattern had taken it (helper-104)."""
    b, revoke = revoking_broker(broker_factory, tmp_path)
    s = Client(b.port)
    s.connect(headers=login_headers("alice", "a"))
    s.receipt("SUBSCRIBE", {"id": "c", "destination": "/queue/work.>,/topic/work.secret"}, "r0")
    revoke(kinds=("topic",))
    s.expect_error("access denied: no read permission on /topic/work.secret")


def test_the_revoking_error_cuts_a_long_id_on_a_character(broker_factory, tmp_path):
    b, revoke = revoking_broker(broker_factory, tmp_path)
    c = Client(b.port)
    c.connect(headers=login_headers("alice", "a"))
    sid = "s" + "\u00e9" * 100            # 201 bytes: shown to 128 at most
    c.receipt("SUBSCRIBE", {"id": sid, "destination": "/queue/work.secret"}, "r0")
    revoke()
    f = c.recv()
    assert f.command == "ERROR", f
    assert "subscription 's%s' ends" % ("\u00e9" * 63) in f.body.decode("utf-8"), f


def test_auth_keys_reload_under_the_start_rules(broker_factory, tmp_path):
    """auth.users and auth.anonymous change on SIGHUP, checked by the rules a
    start is checked by (against the listeners that are open): a change that
    would shut everyone out is refused and the old settings stay; a users
    file added applies. Dropping the users file is refused too (an empty
    file read at SIGHUP, say one being rewritten in place, let anonymous
    clients in, helper-79): on a node on loopback, a restart without it
    lets them back in."""
    users = write_users(str(tmp_path / "users"), {"u": ("p", [])})
    b = broker_factory(start=False)
    conf = "[auth]\nusers = %s\nanonymous = %s\n"
    b.config_text = conf % ("", "auto")
    b.start()
    Client(b.port).connect()
    b.config_text = conf % ("", "false")
    b.command()   # rewrites the configuration file
    reload(b, ["reload: users: auth.anonymous = false and auth.users is not set", "its settings are unchanged"])
    Client(b.port).connect()
    b.config_text = conf % (users, "auto")
    b.command()
    reload(b, ["reload: auth.users applied"])
    Client(b.port).connect(expect="ERROR")
    Client(b.port).connect(headers=login_headers("u", "p"))
    b.config_text = conf % ("", "auto")
    b.command()
    reload(b, ["reload: auth.users is set in the running broker and not in the file"], refused=True)
    Client(b.port).connect(expect="ERROR")
    b.stop()
    b.restart()
    Client(b.port).connect()


def test_a_reload_that_would_turn_protection_off_changes_nothing(broker_factory, files):
    """An empty configuration file read at SIGHUP (one being rewritten in
    place) took every key's default: the users file and the ACL went, and
    anonymous clients could write anywhere (helper-79). A reload that
    would drop the users file, the ACL or the console's password changes
    nothing, and says why; the file put back reloads as before."""
    users, acl = files
    b = broker_factory(start=False)
    b.config_text = "[auth]\nusers = %s\nacl = %s\n[http]\nadmin_password = s3cret\n" % (users, acl)
    b.start()
    full = b.config_text
    for text, key in [("", "auth.users"), ("[auth]\nusers = %s\n" % users, "auth.acl"),
                      ("[auth]\nusers = %s\nacl = %s\n" % (users, acl), "http.admin_password")]:
        b.config_text = text
        b.command()
        reload(b, ["reload: %s is set in the running broker and not in the file" % key], refused=True)
        Client(b.port).connect(expect="ERROR")    # anonymous: still refused
        c = Client(b.port)
        c.connect(headers=login_headers("alice", "one"))
        c.send("SEND", {"destination": "/queue/other", "receipt": "r"}, b"x")
        f = c.recv()
        assert f.command == "ERROR" and f["message"] == "access denied: no write permission on /queue/other", f
        assert console(b, ("admin", "admin")) == 401
        assert console(b, ("admin", "s3cret")) == 200
        assert metric(b, "stompd_config_last_reload_successful") == 0
    assert metric(b, 'stompd_config_reloads_total{result="failed"}') == 3
    b.config_text = full
    b.command()
    reload(b, ["auth: 1 ACL entries from " + acl])
    assert metric(b, "stompd_config_last_reload_successful") == 1
    assert metric(b, 'stompd_config_reloads_total{result="applied"}') == 1


def test_a_login_after_a_reload_joins_no_check_begun_before_it(broker_factory, tmp_path):
    """Identical logins share one password check in flight. One read
    after a reload joined a check begun before it, and was given whom the
    user was then: taken out of group app by the new users file (the same
    password), alice could still write to app.> (helper-79). A check in
    flight is joined by no login read after a reload."""
    crypt = pytest.importorskip("crypt")
    slow = crypt.crypt("pw", "$6$rounds=6000000$abcdefgh$")   # a second or more per check
    users, acl = tmp_path / "users", tmp_path / "acl"

    def write(groups):
        users.write_text("alice:%s:%s\n" % (slow, groups))
        os.chmod(users, 0o600)

    def begin(port):
        c = Client(port, timeout=60)
        c.send("CONNECT", {"accept-version": "1.2", "host": "x", "login": "alice", "passcode": "pw"})
        return c

    write("app")
    acl.write_text("queue:app.> read=app write=app admin=app\n")
    b = broker_factory({"auth.users": str(users), "auth.acl": str(acl), "http.admin_password": "s3cret"})
    a, a2 = begin(b.port), begin(b.port)
    # a's check is in flight: a2 joined it
    deadline = time.time() + 30
    while metric(b, "stompd_auth_coalesced_total") < 1:
        assert time.time() < deadline
        time.sleep(0.02)
    write("nobody")    # alice leaves group app, her password the same
    reload(b, ["auth: 1 users from"])
    late = begin(b.port)
    # the window this is about: a's check still under way when late came
    assert not select.select([a.sock], [], [], 0)[0], "a's check ended before the reload: make it slower"
    for c in (a, a2, late):
        f = c.recv()
        assert f.command == "CONNECTED", f
        c.version = "1.2"
    assert metric(b, "stompd_auth_coalesced_total") == 1
    late.send("SEND", {"destination": "/queue/app.x", "receipt": "r"}, b"x")
    f = late.recv()
    assert f.command == "ERROR" and f["message"] == "access denied: no write permission on /queue/app.x", f


def test_a_refused_reload_still_reopens_the_log(broker_factory, files, tmp_path):
    """logrotate renames log.file and signals. A reload refused (the file
    no longer parses, or it would turn protection off) changed nothing,
    the log file's reopening included: the broker went on writing to the
    renamed file, and said why there (helper-84)."""
    users, acl = files
    log = str(tmp_path / "stompd.log")
    b = broker_factory({"log.file": log}, start=False)
    good = "[auth]\nusers = %s\n[http]\nadmin_password = s3cret\n" % users
    b.config_text = good
    b.start()
    for n, text, says in [(1, "[auth\n", "nothing changed"),
                          (2, "[auth]\nusers = %s\n" % users, "http.admin_password is set in the running broker")]:
        os.rename(log, "%s.%d" % (log, n))
        b.config_text = text
        b.command()
        b.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 20
        while not (os.path.exists(log) and says in open(log).read()):
            assert time.time() < deadline, "no new %s saying %r" % (log, says)
            time.sleep(0.05)
        assert "nothing changed" in open(log).read()
        assert b.running()
    b.config_text = good
    b.command()


def test_a_login_checked_across_a_reload_is_whom_the_new_file_says(broker_factory, tmp_path):
    """A check begun before a reload proved the password against the file
    as it was: bob, removed by the reload while his check ran, got in
    (helper-91). The login is now whom the file says once the check ends:
    bob, gone, is refused; alice, in it with the same hash, gets the
    groups it gives her now."""
    crypt = pytest.importorskip("crypt")
    slow = crypt.crypt("pw", "$6$rounds=6000000$abcdefgh$")   # a second or more per check
    users, acl = tmp_path / "users", tmp_path / "acl"

    def write(lines):
        users.write_text("".join(lines))
        os.chmod(users, 0o600)

    def begin(user):
        c = Client(b.port, timeout=60)
        c.send("CONNECT", {"accept-version": "1.2", "host": "x", "login": user, "passcode": "pw"})
        return c

    write(["alice:%s:app\n" % slow, "bob:%s:app\n" % slow.replace("abcdefgh", "bcdefghi")])
    acl.write_text("queue:app.> read=app write=app admin=app\n")
    b = broker_factory({"auth.users": str(users), "auth.acl": str(acl), "http.admin_password": "s3cret",
                        "auth.hash_threads": "2"})
    a, bob = begin("alice"), begin("bob")
    wait_checks_pending(b, 2)
    write(["alice:%s:nobody\n" % slow])
    reload(b, ["auth: 1 users from"])
    # the window this is about: both checks still under way at the reload
    assert not select.select([a.sock, bob.sock], [], [], 0)[0], "a check ended before the reload: make it slower"
    f = bob.recv()
    assert f.command == "ERROR" and f["message"] == "authentication failed", f
    f = a.recv()
    assert f.command == "CONNECTED", f
    a.version = "1.2"
    assert metric(b, "stompd_auth_checks_pending") == 0
    a.send("SEND", {"destination": "/queue/app.x", "receipt": "r"}, b"x")
    f = a.recv()
    assert f.command == "ERROR" and f["message"] == "access denied: no write permission on /queue/app.x", f


def test_a_stomp_login_across_a_reload_is_never_the_consoles_admin(broker_factory, tmp_path):
    """A STOMP login of 'admin' under way when a reload took admin out of
    the users file and made its hash http.admin_password came out as the
    console's fallback admin, in group admins (helper-95). A STOMP login
    is a user of the file or nobody; a check of the console's admin is
    never shared with one of the file's users."""
    crypt = pytest.importorskip("crypt")
    slow = crypt.crypt("pw", "$6$rounds=12000000$abcdefgh$")   # 3 s or so per check
    other = crypt.crypt("x", "$6$abcdefgh$")
    users, acl = tmp_path / "users", tmp_path / "acl"
    users.write_text("admin:%s:app\nalice:%s\nops:%s:admins\n" % (slow, other, other))
    os.chmod(users, 0o600)
    acl.write_text("queue:ops.> read=admins write=admins admin=admins\n")
    conf = "[auth]\nusers = %s\nacl = %s\nhash_threads = 1\n[http]\nadmin_password = %%s\n" % (users, acl)
    b = broker_factory(start=False, config_text=conf % "s3cret")
    b.start()
    assert metric(b, "stompd_auth_checks_pending", ("ops", "x")) == 0
    c = Client(b.port, timeout=60)
    c.send("CONNECT", {"accept-version": "1.2", "host": "x", "login": "admin", "passcode": "pw"})
    wait_checks_pending(b, 1, ("ops", "x"))   # ops's login cached before the slow check
    users.write_text("alice:%s\n" % other)
    os.chmod(users, 0o600)
    b.config_text = conf % slow
    b.command()  # writes the file again
    reload(b, ["auth: 1 users from"])
    assert not select.select([c.sock], [], [], 0)[0], "the check ended before the reload: make it slower"
    f = c.recv()
    assert f.command == "ERROR" and f["message"] == "authentication failed", f
