"""The console and the users file: members of http.admin_group log in with
their STOMP password, other users get 403, wrong passwords 401 (counted);
http.admin_user stays a fallback (not with the default password while a
users file is set), its password may be a crypt(3) hash; and what a
console user may send to, purge or delete is up to auth.acl."""
import base64
import http.client
import json
import re

import pytest

from stompd_test import Client, hash_password, login_headers, write_users

USERS = {
    "root": ("root pw", ["admins", "ops"]),
    "alice": ("alice pw", ["app"]),
}


def req(b, method, path, auth, body=None):
    c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=15)
    h = {}
    if auth:
        h["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode()
    if body is not None:
        body = json.dumps(body)
        h["Content-Type"] = "application/json"
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


@pytest.fixture
def users(tmp_path):
    return write_users(str(tmp_path / "users"), USERS)


def test_group_members_non_members_and_wrong_passwords(broker_factory, users):
    b = broker_factory({"auth.users": users})
    st, data = req(b, "GET", "/api/overview", ("root", "root pw"))
    assert st == 200 and "queues" in json.loads(data)
    st, data = req(b, "GET", "/api/overview", ("root", "root pw"))   # again: from the login cache
    assert st == 200
    st, data = req(b, "GET", "/api/counters", ("alice", "alice pw"))
    assert st == 403 and "user 'alice' is not in group 'admins' (http.admin_group)" in json.loads(data)["error"]
    for auth in (("root", "wrong"), ("nobody", "root pw"), ("admin", "admin")):
        st, data = req(b, "GET", "/api/counters", auth)
        assert st == 401, (auth, st, data)
    st, _ = req(b, "GET", "/api/counters", None)   # no credentials: the usual challenge
    assert st == 401
    st, _ = req(b, "GET", "/healthz", None)       # still public
    assert st == 200
    st, data = req(b, "GET", "/api/counters", ("root", "root pw"))
    # alice's 403 and the three 401s with credentials; the bare challenge is no failure
    assert json.loads(data)["console_auth_failures"] == 4
    assert b.wait_log(r"auth: console login failed for user 'alice' from 127\.0\.0\.1:")
    assert "root pw" not in b.log() and "alice pw" not in b.log()


def test_admin_group_is_configurable(broker_factory, users):
    b = broker_factory({"auth.users": users, "http.admin_group": "app"})
    assert req(b, "GET", "/api/status", ("alice", "alice pw"))[0] == 200
    assert req(b, "GET", "/api/status", ("root", "root pw"))[0] == 403


def test_fallback_admin(broker_factory, users):
    # the default admin/admin: no fallback while a users file is set
    b = broker_factory({"auth.users": users})
    assert req(b, "GET", "/api/status", ("admin", "admin"))[0] == 401
    assert "with the default password is not accepted while auth.users is set" in b.log()
    # a chosen password
    b = broker_factory({"auth.users": users, "http.admin_password": "chosen"})
    assert req(b, "GET", "/api/status", ("admin", "chosen"))[0] == 200
    assert req(b, "GET", "/api/status", ("admin", "chose"))[0] == 401
    # a crypt(3) hash of it, with or without a users file
    h = hash_password("hashed secret")
    for extra in ({"auth.users": users}, {}):
        b = broker_factory(dict(extra, **{"http.admin_password": h}))
        assert req(b, "GET", "/api/status", ("admin", "hashed secret"))[0] == 200
        assert req(b, "GET", "/api/status", ("admin", h))[0] == 401    # the hash is not the password
        assert "default credentials" not in b.log()


def test_console_actions_follow_the_acl(broker_factory, users, tmp_path):
    (tmp_path / "acl").write_text("queue:ops.>   read=ops write=ops admin=ops\n"
                                  "queue:made.>  write=ops\n"
                                  "queue:shared  read=app,ops write=app,ops admin=app\n")
    b = broker_factory({"auth.users": users, "auth.acl": str(tmp_path / "acl"), "http.admin_password": "fallback"})
    root = ("root", "root pw")
    # send (write), creating the queue on the way (admin)
    st, data = req(b, "POST", "/api/send", root, {"destination": "/queue/ops.x", "body": "hello"})
    assert st == 200, data
    st, data = req(b, "POST", "/api/send", root, {"destination": "/queue/elsewhere", "body": "x"})
    assert st == 403 and json.loads(data)["error"] == "access denied: no write permission on /queue/elsewhere"
    st, data = req(b, "POST", "/api/send", root, {"destination": "/queue/made.x", "body": "x"})
    assert st == 403 and json.loads(data)["error"] == "access denied: no admin permission on /queue/made.x"
    assert "/queue/made.x" not in {q["name"] for q in json.loads(req(b, "GET", "/api/queues", root)[1])}
    # a queue alice made: root may write to it, not purge or delete it
    alice = Client(b.port)
    alice.connect(headers=login_headers("alice", "alice pw"))
    alice.receipt("SEND", {"destination": "/queue/shared"}, "r", b"from alice")
    st, data = req(b, "POST", "/api/send", root, {"destination": "/queue/shared", "body": "from root"})
    assert st == 200, data
    for action in ("purge", "delete"):
        st, data = req(b, "POST", "/api/destinations/" + action, root, {"destination": "/queue/shared"})
        assert st == 403 and json.loads(data)["error"] == "access denied: no admin permission on /queue/shared"
    q = {x["name"]: x for x in json.loads(req(b, "GET", "/api/queues", root)[1])}
    assert q["/queue/shared"]["pending"] == 2
    # where it is admin, it may
    st, data = req(b, "POST", "/api/destinations/purge", root, {"destination": "/queue/ops.x"})
    assert st == 200 and json.loads(data)["messages"] == 1
    assert b.wait_log(r"console: /queue/ops\.x purged \(1 messages\) by root \(127\.0\.0\.1:")
    # the fallback admin is in http.admin_group: the ACL applies to it too
    st, data = req(b, "POST", "/api/destinations/delete", ("admin", "fallback"), {"destination": "/queue/shared"})
    assert st == 403
    m = re.search(r"^stompd_access_denied_total (\d+)$", req(b, "GET", "/metrics", root)[1].decode(), re.M)
    assert int(m.group(1)) == 5
    # a forced delete closes its subscribers' connections: admin on every
    # destination they subscribe to, as closing them from the console needs
    sub = Client(b.port)
    sub.connect(headers=login_headers("root", "root pw"))
    sub.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/ops.y"}, "s1")
    sub.receipt("SUBSCRIBE", {"id": "2", "destination": "/queue/shared", "selector": "none = 1"}, "s2")
    st, data = req(b, "POST", "/api/destinations/delete", root, {"destination": "/queue/ops.y", "force": True})
    assert st == 403 and json.loads(data)["error"] == "access denied: no admin permission on /queue/shared", data
    sub.receipt("UNSUBSCRIBE", {"id": "2"}, "u2")
    st, data = req(b, "POST", "/api/destinations/delete", root, {"destination": "/queue/ops.y", "force": True})
    assert st == 200 and json.loads(data)["connections_closed"] == 1, data
    sub.expect_error("destination /queue/ops.y deleted by an administrator")
