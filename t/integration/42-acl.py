"""Permissions (auth.acl) over real sockets: read, write and admin each
refused with an ERROR naming the destination and the permission (with
the frame's receipt-id, then the connection closed), ActiveMQ wildcards
with the most specific entry winning, "*" for every user but the
anonymous one, destinations no entry covers denied, temporary
destinations belonging to their connection, the dead-letter queue and
durable subscriptions under the same rules, a transaction's SEND refused
when it arrives, and the refusals counted."""
import base64
import http.client
import json
import re
import time

import pytest

from stompd_test import Client, login_headers, write_users

USERS = {
    "alice": ("a-pw", ["app"]),
    "bob": ("b-pw", ["ops"]),
    "carol": ("c-pw", []),
    "feeder": ("f-pw", ["feed"]),
    "root": ("r-pw", ["admins"]),
}

ACL = """# who may do what
queue:orders.>      read=app,ops write=app admin=ops
queue:orders.audit  read=ops admin=ops
queue:public.>      read=* write=* admin=*
queue:ActiveMQ.DLQ  read=ops
topic:prices.*      read=* write=feed admin=*
topic:desk.*        read=ops write=ops admin=ops
queue:>             admin=ops
"""


@pytest.fixture
def acl_broker(broker_factory, tmp_path):
    users = write_users(str(tmp_path / "users"), USERS)
    (tmp_path / "acl").write_text(ACL)
    return broker_factory({"auth.users": users, "auth.acl": str(tmp_path / "acl"),
                           "broker.max_redeliveries": "0", "http.admin_password": "console pw"})


def login(b, user, headers=None):
    c = Client(b.port)
    h = login_headers(user, USERS[user][0])
    h.update(headers or {})
    c.connect(headers=h)
    return c


def denied(c, command, headers, perm, dest, body=b""):
    """command is refused: ERROR with receipt-id, naming perm and dest, closed."""
    h = dict(headers)
    h["receipt"] = "deny-1"
    c.send(command, h, body)
    f = c.recv()
    assert f.command == "ERROR", f
    assert f["message"] == "access denied: no %s permission on %s" % (perm, dest), f
    assert f["receipt-id"] == "deny-1"
    c.expect_closed()
    return f


def login_once_free(b, user, client_id, deadline=30.0):
    """Log in with client_id once the broker has let go of the previous
    connection that used it (it closes a refused one right after its ERROR)."""
    end = time.time() + deadline
    while True:
        c = Client(b.port)
        h = login_headers(user, USERS[user][0])
        h["client-id"] = client_id
        h.update({"accept-version": "1.2", "host": "localhost"})
        c.send("CONNECT", h)
        f = c.recv()
        if f.command == "CONNECTED":
            c.version = f.get("version", "1.0")
            return c
        assert f["message"] == "client-id already in use" and time.time() < end, f
        c.close()
        time.sleep(0.05)


def send_own(c, dest, body):
    """SEND to a destination c consumes from: its RECEIPT and the MESSAGE
    come in either order; returns the MESSAGE."""
    c.send("SEND", {"destination": dest, "receipt": "own"}, body)
    frames = [c.recv(), c.recv()]
    assert sorted(f.command for f in frames) == ["MESSAGE", "RECEIPT"], frames
    return [f for f in frames if f.command == "MESSAGE"][0]


def api(b, path):
    c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=10)
    c.request("GET", path, headers={"Authorization": "Basic " + base64.b64encode(b"admin:console pw").decode()})
    r = c.getresponse()
    data = r.read()
    c.close()
    assert r.status == 200, data
    return json.loads(data) if path.startswith("/api") else data.decode()


def queue_names(b):
    return {q["name"] for q in api(b, "/api/queues")}


def test_read_write_admin(acl_broker):
    b = acl_broker
    # admin creates: bob (ops) may read and create orders.new
    bob = login(b, "bob")
    bob.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/orders.new"}, "sub")
    # write: alice (app) sends to it
    alice = login(b, "alice")
    alice.receipt("SEND", {"destination": "/queue/orders.new"}, "s1", b"order 1")
    m = bob.recv()
    assert m.command == "MESSAGE" and m.body == b"order 1"
    # read: alice may subscribe too
    alice.receipt("SUBSCRIBE", {"id": "a", "destination": "/queue/orders.new"}, "sub-a")
    alice.receipt("UNSUBSCRIBE", {"id": "a"}, "unsub-a")
    # no write for carol
    f = denied(login(b, "carol"), "SEND", {"destination": "/queue/orders.new"}, "write", "/queue/orders.new", b"x")
    assert b"'carol'" in f.body and b"write to /queue/orders.new" in f.body
    # no read for carol
    denied(login(b, "carol"), "SUBSCRIBE", {"id": "c", "destination": "/queue/orders.new"}, "read",
           "/queue/orders.new")
    # nor to browse it (browser:true reads too)
    denied(login(b, "carol"), "SUBSCRIBE", {"id": "c", "destination": "/queue/orders.new", "browser": "true"},
           "read", "/queue/orders.new")
    # no admin for alice: a new destination is not created ...
    denied(login(b, "alice"), "SEND", {"destination": "/queue/orders.fresh"}, "admin", "/queue/orders.fresh", b"x")
    denied(login(b, "alice"), "SUBSCRIBE", {"id": "f", "destination": "/queue/orders.fresh"}, "admin",
           "/queue/orders.fresh")
    assert "/queue/orders.fresh" not in queue_names(b)
    # ... nor by one who may create but not write there
    denied(login(b, "bob"), "SEND", {"destination": "/queue/orders.other"}, "write", "/queue/orders.other", b"x")
    assert "/queue/orders.other" not in queue_names(b)
    # the ones who were allowed are still connected
    alice.receipt("SEND", {"destination": "/queue/orders.new"}, "s2", b"order 2")
    assert bob.recv().body == b"order 2"
    bob.receipt("UNSUBSCRIBE", {"id": "s"}, "u")


def test_most_specific_entry_wins(acl_broker):
    b = acl_broker
    bob = login(b, "bob")
    bob.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/orders.audit"}, "r")   # ops: yes
    # orders.> lets app read, but orders.audit is more specific and names ops only
    denied(login(b, "alice"), "SUBSCRIBE", {"id": "a", "destination": "/queue/orders.audit"}, "read",
           "/queue/orders.audit")
    # and it grants no write at all, though orders.> gives app write
    denied(login(b, "alice"), "SEND", {"destination": "/queue/orders.audit"}, "write", "/queue/orders.audit", b"x")
    # queue:> covers the rest for admin only
    denied(login(b, "bob"), "SEND", {"destination": "/queue/billing"}, "write", "/queue/billing", b"x")


def test_wildcards_and_every_user(acl_broker, broker_factory, tmp_path):
    b = acl_broker
    # "*": carol, in no group, may create, write and read public.>
    carol = login(b, "carol")
    carol.receipt("SUBSCRIBE", {"id": "p", "destination": "/queue/public.a.b"}, "r1")
    assert send_own(carol, "/queue/public.a.b", b"hi").body == b"hi"
    # prices.*: one segment
    carol.receipt("SUBSCRIBE", {"id": "t", "destination": "/topic/prices.eu"}, "r3")
    feeder = login(b, "feeder")
    feeder.receipt("SEND", {"destination": "/topic/prices.eu"}, "f1", b"1.08")
    assert carol.recv().body == b"1.08"
    denied(login(b, "carol"), "SUBSCRIBE", {"id": "x", "destination": "/topic/prices.eu.fx"}, "read",
           "/topic/prices.eu.fx")
    denied(login(b, "carol"), "SEND", {"destination": "/topic/prices.eu"}, "write", "/topic/prices.eu", b"x")
    # a destination no entry covers: denied, whatever the group
    denied(login(b, "root"), "SUBSCRIBE", {"id": "n", "destination": "/topic/news"}, "read", "/topic/news")
    # the anonymous client is not "every user"
    (tmp_path / "acl2").write_text(ACL)
    b2 = broker_factory({"auth.users": write_users(str(tmp_path / "users2"), {"u": ("p", [])}),
                         "auth.acl": str(tmp_path / "acl2"), "auth.anonymous": "true"})
    anon = Client(b2.port)
    anon.connect()
    denied(anon, "SEND", {"destination": "/queue/public.a"}, "write", "/queue/public.a", b"x")


def test_temporary_destinations_belong_to_their_connection(acl_broker):
    """No ACL entry names them: the owner uses its own, others may reply."""
    b = acl_broker
    carol = login(b, "carol")
    carol.receipt("SUBSCRIBE", {"id": "r", "destination": "/temp-queue/replies"}, "s")
    alice = login(b, "alice")
    alice.receipt("SUBSCRIBE", {"id": "q", "destination": "/queue/public.requests"}, "s")
    carol.receipt("SEND", {"destination": "/queue/public.requests", "reply-to": "/temp-queue/replies"}, "s2",
                  b"question")
    req = alice.recv()
    reply_to = req["reply-to"]
    assert reply_to.startswith("/remote-temp-queue/")
    alice.receipt("SEND", {"destination": reply_to}, "s3", b"answer")
    assert carol.recv().body == b"answer"
    # only the owner consumes from it
    eve = login(b, "alice")
    eve.send("SUBSCRIBE", {"id": "steal", "destination": reply_to, "receipt": "x"})
    assert "another connection's temporary destination" in eve.expect_error()["message"]


def test_dead_letter_queue(acl_broker):
    """The broker moves a message to the DLQ whoever may write there; reading
    it needs read on queue:ActiveMQ.DLQ."""
    b = acl_broker
    bob = login(b, "bob")
    bob.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/orders.dead", "ack": "client-individual"}, "r")
    alice = login(b, "alice")
    alice.receipt("SEND", {"destination": "/queue/orders.dead"}, "s1", b"poison")
    m = bob.recv()
    bob.receipt("NACK", {"id": m["ack"]}, "n")   # max_redeliveries = 0: to the DLQ
    bob.receipt("SUBSCRIBE", {"id": "d", "destination": "/queue/ActiveMQ.DLQ"}, "r2")
    d = bob.recv()
    assert d.body == b"poison" and d["original-destination"] == "/queue/orders.dead"
    denied(login(b, "alice"), "SUBSCRIBE", {"id": "d", "destination": "/queue/ActiveMQ.DLQ"}, "read",
           "/queue/ActiveMQ.DLQ")
    denied(login(b, "bob"), "SEND", {"destination": "/queue/ActiveMQ.DLQ"}, "write", "/queue/ActiveMQ.DLQ", b"x")


def test_durable_subscriptions_need_read(acl_broker):
    b = acl_broker
    c = login(b, "carol", {"client-id": "carol-1"})
    c.receipt("SUBSCRIBE", {"id": "d", "destination": "/topic/prices.us",
                            "activemq.subscriptionName": "keep"}, "r")
    c.receipt("UNSUBSCRIBE", {"id": "d"}, "u")    # inactive, kept
    feeder = login(b, "feeder")
    feeder.receipt("SEND", {"destination": "/topic/prices.us", "persistent": "true"}, "f", b"while away")
    c2 = login(b, "carol", {"client-id": "carol-2"})
    denied(c2, "SUBSCRIBE", {"id": "d", "destination": "/topic/secret.plans", "activemq.subscriptionName": "spy"},
           "read", "/topic/secret.plans")
    topics = {t["name"]: t for t in api(b, "/api/topics")}
    assert "/topic/secret.plans" not in topics
    assert [d["name"] for d in topics["/topic/prices.us"]["durable_subscriptions"]] == ["keep"]
    c.receipt("SUBSCRIBE", {"id": "d", "destination": "/topic/prices.us",
                            "activemq.subscriptionName": "keep"}, "r2")
    assert c.recv().body == b"while away"


def test_durable_subscriptions_are_not_removed_without_read(acl_broker):
    """A durable subscription hangs on client-id and name: another user who
    sends the same pair may not destroy it (by UNSUBSCRIBE with its name,
    or by subscribing the name to another topic) without read on its
    topic; its backlog stays for its subscriber."""
    b = acl_broker
    bob = login(b, "bob", {"client-id": "desk-1"})
    bob.receipt("SUBSCRIBE", {"id": "d", "destination": "/topic/desk.fx",
                              "activemq.subscriptionName": "fx"}, "r")
    bob.close()
    feeder = login(b, "bob")
    feeder.receipt("SEND", {"destination": "/topic/desk.fx", "persistent": "true"}, "f", b"kept for bob")

    def durables():
        topics = {t["name"]: t for t in api(b, "/api/topics")}
        return [d["name"] for d in topics["/topic/desk.fx"]["durable_subscriptions"]]

    assert durables() == ["fx"]
    denied(login_once_free(b, "carol", "desk-1"), "UNSUBSCRIBE",
           {"id": "d", "activemq.subscriptionName": "fx"}, "read", "/topic/desk.fx")
    c2 = login_once_free(b, "carol", "desk-1")
    denied(c2, "SUBSCRIBE", {"id": "d", "destination": "/topic/prices.us",
                             "activemq.subscriptionName": "fx"}, "read", "/topic/desk.fx")
    assert durables() == ["fx"]
    bob = login_once_free(b, "bob", "desk-1")
    bob.receipt("SUBSCRIBE", {"id": "d", "destination": "/topic/desk.fx",
                              "activemq.subscriptionName": "fx"}, "r2")
    assert bob.recv().body == b"kept for bob"
    # its own user removes it
    bob.receipt("UNSUBSCRIBE", {"id": "d", "activemq.subscriptionName": "fx"}, "u")
    assert durables() == []


def test_client_id_takeover_only_by_the_same_user(broker_factory, tmp_path):
    """stomp.client_id_takeover lets a user's new connection replace its
    own older one, never another user's."""
    users = write_users(str(tmp_path / "users"), USERS)
    b = broker_factory({"auth.users": users, "stomp.client_id_takeover": "true"})
    alice = login(b, "alice", {"client-id": "app-1"})
    carol = Client(b.port)
    f = carol.connect(headers=dict(login_headers("carol", "c-pw"), **{"client-id": "app-1"}), expect="ERROR")
    assert f["message"] == "client-id already in use", f
    carol.expect_closed()
    alice.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/x"}, "still-here")
    alice2 = login(b, "alice", {"client-id": "app-1"})
    assert alice.expect_error("client-id taken over")
    alice2.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/x"}, "r")


def test_websocket_clients_log_in_and_meet_the_acl(broker_factory, tmp_path):
    """STOMP over WebSocket goes through the same CONNECT and the same checks."""
    from stompd_test import free_port
    from wsclient import WS
    users = write_users(str(tmp_path / "users"), USERS)
    (tmp_path / "acl").write_text(ACL)
    port = free_port()
    b = broker_factory({"auth.users": users, "auth.acl": str(tmp_path / "acl"),
                        "stomp.ws_listen": "127.0.0.1:%d" % port})
    assert b.wait_log(r"accepting STOMP over WebSocket on ws://127\.0\.0\.1:%d/" % port)
    w = WS(port)
    w.send_stomp("CONNECT", {"accept-version": "1.2", "host": "localhost", "login": "alice", "passcode": "wrong"})
    f = w.recv_stomp()
    assert f.command == "ERROR" and f["message"] == "authentication failed", f
    w.drop()
    w = WS(port)
    w.connect_stomp(headers=login_headers("alice", USERS["alice"][0]))
    w.receipt("SEND", {"destination": "/queue/public.ws"}, "ok", b"x")
    w.send_stomp("SEND", {"destination": "/queue/orders.audit", "receipt": "deny-1"}, b"x")
    f = w.recv_stomp()
    assert f.command == "ERROR" and f["message"] == "access denied: no write permission on /queue/orders.audit", f
    assert f["receipt-id"] == "deny-1"
    w.drop()


def test_a_transactions_send_is_refused_when_it_arrives(acl_broker):
    b = acl_broker
    bob = login(b, "bob")
    bob.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/orders.tx"}, "r")
    carol = login(b, "carol")
    carol.receipt("BEGIN", {"transaction": "t1"}, "b")
    denied(carol, "SEND", {"destination": "/queue/orders.tx", "transaction": "t1"}, "write", "/queue/orders.tx", b"x")
    bob.expect_nothing(0.3)


def test_refusals_are_counted(acl_broker):
    b = acl_broker
    before = api(b, "/api/counters")["access_denied"]
    denied(login(b, "carol"), "SUBSCRIBE", {"id": "x", "destination": "/topic/news"}, "read", "/topic/news")
    denied(login(b, "carol"), "SEND", {"destination": "/queue/billing"}, "write", "/queue/billing", b"x")
    assert api(b, "/api/counters")["access_denied"] == before + 2
    m = re.search(r"^stompd_access_denied_total (\d+)$", api(b, "/metrics"), re.M)
    assert int(m.group(1)) == before + 2
    # the connections list says who is who
    alice = login(b, "alice")
    users = {c["user"] for c in api(b, "/api/connections")}
    assert "alice" in users
    alice.close()
