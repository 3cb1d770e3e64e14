"""Composite destinations (ActiveMQ's comma-separated list): a SEND to
/queue/a,/queue/b,/topic/c puts one copy in each, each naming its own
destination; a persistent one is one journal entry (the console's lsn
moves by one, --dump-store shows a key per queue), receipted once, and a
kill -9 keeps all of its copies or none."""
import base64
import http.client
import json
import re
import subprocess
import threading
import time

import pytest

from stompd_test import STOMPD, Client, connected, login_headers, write_users


def console(b, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=5)
    h = {"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()}
    if body is not None:
        h["Content-Type"] = "application/json"
        c.request("POST", path, body=json.dumps(body), headers=h)
    else:
        c.request("GET", path, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data)


def lsn(b):
    st, j = console(b, "/api/status")
    assert st == 200
    return j["lsn"]


def drain(port, dest, timeout=1.0):
    c = connected(port)
    c.receipt("SUBSCRIBE", {"id": "d", "destination": dest}, "s")
    got = []
    while True:
        try:
            got.append(c.recv(timeout=timeout))
        except TimeoutError:
            break
    c.close()
    return got


def test_one_copy_each_with_its_own_destination(broker):
    t = connected(broker.port)
    t.receipt("SUBSCRIBE", {"id": "t", "destination": "/topic/c"}, "s")
    p = connected(broker.port)
    p.receipt("SEND", {"destination": "/queue/a,/queue/b,/topic/c,/queue/a", "x-k": "v"}, "r", b"hello")
    f = t.recv()
    assert (f["destination"], f.body, f["x-k"]) == ("/topic/c", b"hello", "v")
    qa, qb = drain(broker.port, "/queue/a"), drain(broker.port, "/queue/b")
    # a destination named twice gets one copy
    assert [(m["destination"], m.body) for m in qa] == [("/queue/a", b"hello")]
    assert [(m["destination"], m.body) for m in qb] == [("/queue/b", b"hello")]
    assert len({qa[0]["message-id"], qb[0]["message-id"], f["message-id"]}) == 3


def test_persistent_composite_is_one_journal_entry_and_one_receipt(broker_factory):
    b = broker_factory()
    p = connected(b.port)
    p.receipt("SEND", {"destination": "/queue/warmup", "persistent": "true"}, "w", b"w")
    before = lsn(b)
    p.send("SEND", {"destination": "/queue/x,/queue/y,/queue/z", "persistent": "true", "receipt": "r1"}, b"one")
    f = p.recv()
    assert f.command == "RECEIPT" and f["receipt-id"] == "r1"
    p.expect_nothing(0.3)  # one receipt
    assert lsn(b) == before + 1
    # in a transaction too: the transaction's one entry
    p.send("BEGIN", {"transaction": "t"})
    p.send("SEND", {"destination": "/queue/x,/queue/y", "persistent": "true", "transaction": "t"}, b"two")
    p.send("SEND", {"destination": "/queue/z", "persistent": "true", "transaction": "t"}, b"three")
    p.receipt("COMMIT", {"transaction": "t"}, "c")
    assert lsn(b) == before + 2
    p.close()
    assert b.stop() == 0
    dump = subprocess.run([STOMPD, "--dump-store", b.settings["broker.data_dir"]], capture_output=True,
                          text=True, check=True).stdout
    keys = [line.split("\t")[0] for line in dump.splitlines()]
    for q in ["x", "y", "z"]:
        assert sum(1 for k in keys if k.startswith("Q/queue/" + q + "\\x00")) == 2, (q, keys)
    b.restart()
    assert sorted(m.body for m in drain(b.port, "/queue/x")) == [b"one", b"two"]
    assert sorted(m.body for m in drain(b.port, "/queue/z")) == [b"one", b"three"]


def test_kill9_keeps_every_copy_or_none(broker_factory):
    b = broker_factory()
    p = connected(b.port)
    receipted = set()
    stop = threading.Event()

    def produce():
        i = 0
        while not stop.is_set():
            try:
                p.send("SEND", {"destination": "/queue/k1,/queue/k2,/queue/k3", "persistent": "true",
                                "receipt": "r%d" % i}, b"m%d" % i)
                f = p.recv(timeout=5)
                assert f.command == "RECEIPT"
                receipted.add(b"m%d" % i)
            except (OSError, ConnectionError, TimeoutError):
                return
            i += 1

    t = threading.Thread(target=produce)
    t.start()
    deadline = time.time() + 30
    while len(receipted) < 150 and time.time() < deadline:
        time.sleep(0.01)
    b.kill()
    stop.set()
    t.join()
    assert len(receipted) >= 150
    b.restart()
    got = [set(m.body for m in drain(b.port, "/queue/k%d" % k)) for k in (1, 2, 3)]
    # everything receipted is in all three; anything else in all or none
    for g in got:
        assert receipted <= g
    assert got[0] == got[1] == got[2]


def test_composite_with_a_topic_and_durable_subscribers(broker_factory):
    b = broker_factory()
    d = connected(b.port, headers={"client-id": "dur"})
    d.receipt("SUBSCRIBE", {"id": "s", "destination": "/topic/events", "activemq.subscriptionName": "keep"}, "s")
    d.receipt("DISCONNECT", {}, "bye")
    p = connected(b.port)
    before = lsn(b)
    p.receipt("SEND", {"destination": "/queue/log,/topic/events", "persistent": "true"}, "r", b"e1")
    assert lsn(b) == before + 1
    b.kill()
    b.restart()
    assert [m.body for m in drain(b.port, "/queue/log")] == [b"e1"]
    d = connected(b.port, headers={"client-id": "dur"})
    d.receipt("SUBSCRIBE", {"id": "s", "destination": "/topic/events", "activemq.subscriptionName": "keep"}, "s")
    f = d.recv()
    assert (f["destination"], f.body) == ("/topic/events", b"e1")


@pytest.mark.parametrize("dest,says", [
    ("/queue/a,", "empty destination"),
    (",/queue/a", "empty destination"),
    ("/queue/a,b", "unknown destination type"),
    ("/queue/a,/queue/b.*", "wildcard"),
])
def test_bad_lists_are_errors(broker, dest, says):
    c = connected(broker.port)
    c.send("SEND", {"destination": dest}, b"x")
    f = c.expect_error("invalid destination")
    assert says in f.body.decode(), f


def test_max_composite_is_a_limit(broker_factory):
    b = broker_factory({"stomp.max_composite": "3"})
    c = connected(b.port)
    c.receipt("SEND", {"destination": "/queue/1,/queue/2,/queue/3"}, "ok")
    c.send("SEND", {"destination": "/queue/1,/queue/2,/queue/3,/queue/4"}, b"x")
    f = c.expect_error("invalid destination")
    assert "stomp.max_composite" in f.body.decode()
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "s", "destination": "/queue/1,/queue/2,/queue/3,/queue/4"})
    assert "stomp.max_composite" in c.expect_error("invalid destination").body.decode()


def test_console_send_to_a_composite(broker):
    st, j = console(broker, "/api/send", {"destination": "/queue/c1,/queue/c2", "body": "hi", "persistent": True})
    assert st == 200 and j["sent"], j
    assert [m.body for m in drain(broker.port, "/queue/c1")] == [b"hi"]
    assert [m.body for m in drain(broker.port, "/queue/c2")] == [b"hi"]
    st, j = console(broker, "/api/send", {"destination": "/queue/c1,/queue/c*.>", "body": "hi"})
    assert st == 400 and "wildcard" in j["error"], j


ACL_USERS = {"alice": ("a-pw", ["app"]), "root": ("r-pw", ["admins"])}
ACL = """queue:c.>       read=app write=app admin=app
queue:c.locked  read=app admin=app
topic:c.>       read=app write=app admin=app
"""


def test_composite_needs_write_on_each_destination(broker_factory, tmp_path):
    """auth.acl: a composite SEND is checked for each destination it names
    (write, admin to create one); one refused refuses the frame: no copy
    goes anywhere. The console's /api/send meets the same rule."""
    (tmp_path / "acl").write_text(ACL)
    b = broker_factory({"auth.users": write_users(str(tmp_path / "users"), ACL_USERS),
                        "auth.acl": str(tmp_path / "acl")})
    alice = Client(b.port)
    alice.connect(headers=login_headers("alice", "a-pw"))
    alice.receipt("SEND", {"destination": "/queue/c.a,/topic/c.t"}, "ok", b"both")
    for dest in ("/queue/c.a,/queue/c.locked", "/queue/c.a,/queue/other"):
        c = Client(b.port)
        c.connect(headers=login_headers("alice", "a-pw"))
        c.send("SEND", {"destination": dest, "receipt": "no"}, b"none")
        f = c.recv()
        bad = dest.split(",")[1]
        assert f.command == "ERROR" and f["message"] == "access denied: no write permission on %s" % bad, f
        assert f["receipt-id"] == "no"
    # the console's user (root, in no ACL group) is refused just the same
    h = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=10)
    h.request("POST", "/api/send", body=json.dumps({"destination": "/queue/c.b,/queue/c.a", "body": "x"}),
              headers={"Authorization": "Basic " + base64.b64encode(b"root:r-pw").decode(),
                       "Content-Type": "application/json"})
    r = h.getresponse()
    data = json.loads(r.read())
    assert r.status == 403 and data["error"] == "access denied: no write permission on /queue/c.b", data
    reader = Client(b.port)
    reader.connect(headers=login_headers("alice", "a-pw"))
    reader.receipt("SUBSCRIBE", {"id": "a", "destination": "/queue/c.a"}, "s")
    assert reader.recv(timeout=10).body == b"both"
    reader.expect_nothing(0.5)


def test_copies_share_one_body(broker):
    """The copies of a composite SEND share its body: 64 queues holding a
    4 MiB message take about 4 MiB of the broker's memory, not 256 (one
    client's SEND grew it by gigabytes). Each queue is still charged the
    whole message, as if it held it alone, and each copy arrives whole."""
    def rss():
        with open("/proc/%d/status" % broker.proc.pid) as st:
            return int(re.search(r"VmRSS:\s+(\d+) kB", st.read()).group(1)) * 1024
    body = b"0123456789abcdef" * (1 << 18)
    dest = ",".join("/queue/share%d" % i for i in range(64))
    before = rss()
    p = connected(broker.port)
    p.receipt("SEND", {"destination": dest}, "r", body)
    grew = rss() - before
    assert grew < 64 << 20, grew
    st, counters = console(broker, "/api/counters")
    assert counters["memory_bytes"] >= 64 * len(body), counters
    for i in (0, 31, 63):
        c = connected(broker.port)
        c.send("SUBSCRIBE", {"id": "s", "destination": "/queue/share%d" % i})
        f = c.recv()
        assert f["destination"] == "/queue/share%d" % i and f.body == body
        c.close()
    p.close()
