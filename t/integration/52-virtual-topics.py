"""Virtual topics, ActiveMQ's default naming: a message to
/topic/VirtualTopic.X goes to every consumer group's queue
/queue/Consumer.<group>.VirtualTopic.X (each group gets every message,
shared among the group's consumers). A group's queue exists from its
first consumer on (journaled: idle sweeps and restarts keep it); what was
published before any group queue existed is not kept, as in ActiveMQ. A
persistent message is journaled once for every queue."""
import base64
import http.client
import json
import time

from stompd_test import Client, connected, login_headers, write_users

TOPIC = "/topic/VirtualTopic.orders"


def group_queue(g):
    return "/queue/Consumer.%s.VirtualTopic.orders" % g


def console(b, path):
    c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=5)
    c.request("GET", path, headers={"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()})
    r = c.getresponse()
    data = r.read()
    c.close()
    assert r.status == 200
    return json.loads(data)


def consumer(b, g, i):
    c = connected(b.port)
    c.receipt("SUBSCRIBE", {"id": "%s%d" % (g, i), "destination": group_queue(g), "ack": "client-individual",
                            "activemq.prefetchSize": "1"}, "s")
    return c


def take_all(clients, n, timeout=20):
    """Read from every client, acking, until n messages have come in all."""
    got = {id(c): [] for c in clients}
    deadline = time.time() + timeout
    while sum(len(v) for v in got.values()) < n and time.time() < deadline:
        for c in clients:
            try:
                f = c.recv(timeout=0.05)
            except TimeoutError:
                continue
            assert f.command == "MESSAGE", f
            got[id(c)].append(f)
            c.send("ACK", {"id": f["ack"]})
    return [got[id(c)] for c in clients]


def test_two_groups_each_get_everything_shared_within_the_group(broker):
    # the groups' queues exist from their first consumers on
    for g in "AB":
        consumer(broker, g, 0).receipt("DISCONNECT", {}, "bye")
    plain = connected(broker.port)
    plain.receipt("SUBSCRIBE", {"id": "t", "destination": TOPIC}, "s")
    p = connected(broker.port)
    before = console(broker, "/api/status")["lsn"]
    n = 40
    for i in range(n):
        p.receipt("SEND", {"destination": TOPIC, "persistent": "true"}, "r%d" % i, b"o%d" % i)
    # one journal entry per SEND, whatever the number of groups
    assert console(broker, "/api/status")["lsn"] - before == n
    queues = {q["name"]: q for q in console(broker, "/api/queues")}
    assert queues[group_queue("A")]["pending"] == n and queues[group_queue("B")]["pending"] == n
    a = [consumer(broker, "A", i) for i in range(2)]
    bgroup = [consumer(broker, "B", i) for i in range(2)]
    for group, name in ((a, "A"), (bgroup, "B")):
        per = take_all(group, n)
        bodies = [f.body for got in per for f in got]
        assert sorted(bodies) == sorted(b"o%d" % i for i in range(n)), name
        assert all(len(got) > 0 for got in per), "both consumers of group %s take some: %s" % (
            name, [len(g) for g in per])
        for f in per[0] + per[1]:
            assert f["destination"] == group_queue(name)
            assert f["original-destination"] == TOPIC
    # plain topic subscribers still get the topic's messages
    got = []
    while len(got) < n:
        got.append(plain.recv())
    assert got[0]["destination"] == TOPIC


def test_a_group_queue_is_kept_while_its_consumers_are_away(broker_factory):
    # a fast sweep: idle destinations would go within a second
    b = broker_factory({"broker.expiry_check_interval": "100ms"})
    p = connected(b.port)
    # before any group exists nothing is kept
    p.receipt("SEND", {"destination": TOPIC, "persistent": "true"}, "r0", b"lost")
    c = consumer(b, "A", 0)
    c.receipt("DISCONNECT", {}, "bye")
    time.sleep(0.5)  # several sweeps
    names = [q["name"] for q in console(b, "/api/queues")]
    assert group_queue("A") in names
    p.receipt("SEND", {"destination": TOPIC, "persistent": "true"}, "r1", b"kept1")
    b.kill()
    b.restart()
    p = connected(b.port)
    p.receipt("SEND", {"destination": TOPIC, "persistent": "true"}, "r2", b"kept2")
    time.sleep(0.5)
    c = consumer(b, "A", 0)
    got = take_all([c], 2)[0]
    assert [f.body for f in got] == [b"kept1", b"kept2"]
    c.expect_nothing(0.3)
    # still kept after a clean restart with nothing pending
    c.receipt("DISCONNECT", {}, "bye")
    assert b.stop() == 0
    b.restart()
    time.sleep(0.5)
    assert group_queue("A") in [q["name"] for q in console(b, "/api/queues")]
    # the console's delete forgets it for good
    conn = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=5)
    conn.request("POST", "/api/destinations/delete", body=json.dumps({"destination": group_queue("A")}),
                 headers={"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode(),
                          "Content-Type": "application/json"})
    assert conn.getresponse().status == 200
    assert b.stop() == 0
    b.restart()
    assert group_queue("A") not in [q["name"] for q in console(b, "/api/queues")]


def test_virtual_topic_in_a_composite_and_non_persistent(broker):
    c = consumer(broker, "C", 0)
    q = connected(broker.port)
    q.receipt("SUBSCRIBE", {"id": "q", "destination": "/queue/side"}, "s")
    p = connected(broker.port)
    p.receipt("SEND", {"destination": "/queue/side," + TOPIC}, "r", b"both")
    assert [f.body for f in take_all([c], 1)[0]] == [b"both"]
    assert q.recv().body == b"both"


ACL_USERS = {"alice": ("a-pw", ["app"]), "bob": ("b-pw", ["ops"])}
ACL = """topic:VirtualTopic.>              read=app write=app admin=app
queue:Consumer.A.VirtualTopic.>   read=app write=app admin=app
queue:Consumer.B.VirtualTopic.>   read=ops write=ops admin=ops
"""


def test_consumer_queues_are_queues_to_the_acl(broker_factory, tmp_path):
    """auth.acl: a virtual topic's consumer queue is a queue like any
    other: its consumers need read on it (admin to create it), and a copy
    goes only to the groups' queues the producer may write to."""
    (tmp_path / "acl").write_text(ACL)
    b = broker_factory({"auth.users": write_users(str(tmp_path / "users"), ACL_USERS),
                        "auth.acl": str(tmp_path / "acl"), "http.admin_password": "console pw"})

    def login(user, pw):
        c = Client(b.port)
        c.connect(headers=login_headers(user, pw))
        return c

    a = login("alice", "a-pw")
    a.receipt("SUBSCRIBE", {"id": "a", "destination": group_queue("A")}, "s")
    bq = login("bob", "b-pw")
    bq.receipt("SUBSCRIBE", {"id": "b", "destination": group_queue("B")}, "s")
    denied = login("alice", "a-pw")
    denied.send("SUBSCRIBE", {"id": "x", "destination": group_queue("B"), "receipt": "no"})
    f = denied.recv()
    assert f.command == "ERROR" and f["message"] == "access denied: no read permission on %s" % group_queue("B"), f
    p = login("alice", "a-pw")
    p.receipt("SEND", {"destination": TOPIC}, "sent", b"order")
    assert a.recv(timeout=10).body == b"order"
    # alice may not write to group B's queue: it gets no copy from her
    bq.expect_nothing(0.5)
    h = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=10)
    h.request("GET", "/api/queues", headers={"Authorization": "Basic " + base64.b64encode(b"admin:console pw").decode()})
    q = {x["name"]: x for x in json.loads(h.getresponse().read())}
    assert q[group_queue("B")]["pending"] == 0 and q[group_queue("B")]["stats"]["enqueued"] == 0, q[group_queue("B")]
