"""Queues: each message to exactly one consumer, round robin, held until a
consumer comes, ack modes, redelivery, priority."""
import time

from stompd_test import Client, connected, encode_frame


def send_n(port, dest, n, headers=None, prefix=b"m"):
    p = connected(port)
    for i in range(n):
        h = {"destination": dest}
        h.update(headers or {})
        p.send("SEND", h, prefix + b"%d" % i)
    p.receipt("DISCONNECT", {}, "sent")


def test_held_until_a_consumer_comes(broker):
    send_n(broker.port, "/queue/hold", 5)
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/hold"})
    got = [c.recv() for _ in range(5)]
    assert [m.body for m in got] == [b"m%d" % i for i in range(5)]
    m = got[0]
    assert m["destination"] == "/queue/hold" and m["subscription"] == "1"
    assert m["message-id"].startswith("ID-")
    assert m.get("ack") is None            # auto ack: no ack header
    assert m["priority"] == "4" and m["expires"] == "0" and int(m["timestamp"]) > 0


def test_round_robin_each_message_once(broker):
    a, b = connected(broker.port), connected(broker.port)
    a.receipt("SUBSCRIBE", {"id": "a", "destination": "/queue/rr"}, "ra")
    b.receipt("SUBSCRIBE", {"id": "b", "destination": "/queue/rr"}, "rb")
    send_n(broker.port, "/queue/rr", 100)
    ga = []
    gb = []
    deadline = time.time() + 5
    while len(ga) + len(gb) < 100 and time.time() < deadline:
        for c, g in ((a, ga), (b, gb)):
            try:
                g.append(c.recv(timeout=0.05).body)
            except TimeoutError:
                pass
    assert len(ga) == 50 and len(gb) == 50
    assert sorted(ga + gb) == sorted(b"m%d" % i for i in range(100))
    a.expect_nothing()
    b.expect_nothing()


def test_client_individual_unacked_redelivered_on_disconnect(broker):
    send_n(broker.port, "/queue/redo", 4)
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/redo", "ack": "client-individual"})
    msgs = c.recv_all(4)
    assert all(m.get("redelivered") is None for m in msgs)
    c.send("ACK", {"id": msgs[1]["ack"]})
    c.send("ACK", {"id": msgs[3]["ack"], "receipt": "acked"})
    assert c.recv()["receipt-id"] == "acked"
    c.close()
    d = connected(broker.port)
    d.send("SUBSCRIBE", {"id": "1", "destination": "/queue/redo", "ack": "client-individual"})
    again = d.recv_all(2)
    assert [m.body for m in again] == [b"m0", b"m2"]
    assert all(m["redelivered"] == "true" for m in again)
    assert again[0]["message-id"] == msgs[0]["message-id"]
    assert again[0]["redelivery-count"] == "1"
    d.expect_nothing()


def test_client_ack_is_cumulative(broker):
    send_n(broker.port, "/queue/cum", 5)
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/cum", "ack": "client"})
    msgs = c.recv_all(5)
    c.receipt("ACK", {"id": msgs[2]["ack"]}, "r")
    c.close()
    d = connected(broker.port)
    d.send("SUBSCRIBE", {"id": "1", "destination": "/queue/cum"})
    assert [m.body for m in d.recv_all(2)] == [b"m3", b"m4"]
    d.expect_nothing()


def test_ack_1_1_by_message_id_and_subscription(broker):
    send_n(broker.port, "/queue/ack11", 2)
    c = connected(broker.port, "1.1")
    c.send("SUBSCRIBE", {"id": "s", "destination": "/queue/ack11", "ack": "client-individual"})
    m0, m1 = c.recv_all(2)
    assert m0.get("ack") is None
    c.receipt("ACK", {"message-id": m0["message-id"], "subscription": "s"}, "a")
    c.receipt("ACK", {"message-id": m1["message-id"]}, "b")
    c.close()
    d = connected(broker.port)
    d.send("SUBSCRIBE", {"id": "1", "destination": "/queue/ack11"})
    d.expect_nothing()


def test_ack_1_0_by_message_id(broker):
    send_n(broker.port, "/queue/ack10", 1)
    c = connected(broker.port, "1.0")
    c.send("SUBSCRIBE", {"destination": "/queue/ack10", "ack": "client"})
    m = c.recv()
    assert m["subscription"] == "/queue/ack10"
    c.receipt("ACK", {"message-id": m["message-id"]}, "a")
    # 1.0 has no NACK (as ActiveMQ refuses it)
    send_n(broker.port, "/queue/ack10", 1)
    m = c.recv()
    c.send("NACK", {"message-id": m["message-id"]})
    assert "not a STOMP 1.0 command" in c.expect_error("unknown command").body.decode()


def test_nack_redelivers_to_next_consumer(broker_factory):
    b = broker_factory({"broker.max_redeliveries": "-1"})
    a = connected(b.port)
    a.receipt("SUBSCRIBE", {"id": "a", "destination": "/queue/nack", "ack": "client-individual",
                            "activemq.prefetchSize": "1"}, "s")
    send_n(b.port, "/queue/nack", 1)
    m = a.recv()
    a.send("NACK", {"id": m["ack"]})
    again = a.recv()
    assert again.body == m.body and again["redelivered"] == "true"
    assert again["redelivery-count"] == "1"


def test_unsubscribe_returns_unacked(broker):
    send_n(broker.port, "/queue/unsub", 2)
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/unsub", "ack": "client"})
    c.recv_all(2)
    c.receipt("UNSUBSCRIBE", {"id": "1"}, "u")
    c.send("SUBSCRIBE", {"id": "2", "destination": "/queue/unsub"})
    again = c.recv_all(2)
    assert [m.body for m in again] == [b"m0", b"m1"]
    assert again[0]["redelivered"] == "true"


def test_priority_order(broker):
    p = connected(broker.port)
    for i, prio in enumerate([1, 4, 9, 4, 0, 9, 7]):
        p.send("SEND", {"destination": "/queue/prio", "priority": str(prio)}, b"%d-%d" % (prio, i))
    p.receipt("DISCONNECT", {}, "x")
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/prio"})
    got = [m.body for m in c.recv_all(7)]
    assert got == [b"9-2", b"9-5", b"7-6", b"4-1", b"4-3", b"1-0", b"0-4"]


def test_redelivered_message_keeps_its_place(broker):
    send_n(broker.port, "/queue/place", 3)
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/place", "ack": "client-individual",
                         "activemq.prefetchSize": "1"})
    first = c.recv()
    c.close()      # m0 goes back ahead of m1, m2
    d = connected(broker.port)
    d.send("SUBSCRIBE", {"id": "1", "destination": "/queue/place"})
    assert [m.body for m in d.recv_all(3)] == [first.body, b"m1", b"m2"]


def test_user_headers_pass_through(broker):
    c = connected(broker.port)
    c.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/hdr"}, "s")
    c.send("SEND", {"destination": "/queue/hdr", "reply-to": "/queue/back", "correlation-id": "c-1",
                    "type": "order", "content-type": "text/plain", "x-custom": "yes"}, b"b")
    m = c.recv()
    assert m["reply-to"] == "/queue/back" and m["correlation-id"] == "c-1"
    assert m["type"] == "order" and m["content-type"] == "text/plain" and m["x-custom"] == "yes"


def drain(conns, wait=0.3):
    """Every frame that arrives on each connection until all are quiet."""
    got = {c: [] for c in conns}
    quiet = False
    while not quiet:
        quiet = True
        for c in conns:
            try:
                got[c].append(c.recv(timeout=wait))
                quiet = False
            except TimeoutError:
                pass
    return got


def test_full_consumers_are_passed_over_and_come_back_when_they_have_room(broker):
    """A consumer found full is set aside from round robin; an ACK (the
    queue empty: each message picks its consumer as it comes) or a backlog
    brings it back."""
    q = "/queue/park"
    f = connected(broker.port)
    for i in range(5):
        f.send("SUBSCRIBE", {"id": "f%d" % i, "destination": q, "ack": "client-individual",
                             "activemq.prefetchSize": "1"})
    f.receipt("SEND", {"destination": "/queue/park-none"}, "subscribed")
    send_n(broker.port, q, 5, prefix=b"held")
    held = {m["subscription"]: m for m in f.recv_all(5)}
    assert sorted(held) == ["f%d" % i for i in range(5)]
    others = [connected(broker.port) for _ in range(3)]
    for i, c in enumerate(others):
        c.receipt("SUBSCRIBE", {"id": "o%d" % i, "destination": q}, "o%d" % i)
    # five full, three with room: round robin over the three
    send_n(broker.port, q, 30, prefix=b"a")
    got = drain(others)
    assert [len(got[c]) for c in others] == [10, 10, 10]
    f.expect_nothing()
    # f2 acks: it takes one of the next four (each picked as it comes)
    f.receipt("ACK", {"id": held["f2"]["ack"]}, "acked-f2")
    send_n(broker.port, q, 4, prefix=b"b")
    got = drain(others + [f])
    assert [m["subscription"] for m in got[f]] == ["f2"]
    assert sum(len(got[c]) for c in others) == 3
    # a backlog behind full consumers: each ACK lets one through
    for i, c in enumerate(others):
        c.receipt("UNSUBSCRIBE", {"id": "o%d" % i}, "u%d" % i)
    send_n(broker.port, q, 3, prefix=b"c")
    f.expect_nothing()
    for i in (0, 1, 3):
        f.send("ACK", {"id": held["f%d" % i]["ack"]})
    got = drain([f])[f]
    assert sorted(m["subscription"] for m in got) == ["f0", "f1", "f3"]
    assert sorted(m.body for m in got) == [b"c0", b"c1", b"c2"]


def test_a_wildcard_consumer_with_room_again_is_offered_every_queue_it_takes_from(broker):
    """Room back on a wildcard subscription (an ACK of a message from one
    queue) puts it back into the round robin of all its queues."""
    w = connected(broker.port)
    w.receipt("SUBSCRIBE", {"id": "w", "destination": "/queue/pk.*", "ack": "client-individual",
                            "activemq.prefetchSize": "1"}, "w")
    a = connected(broker.port)
    a.receipt("SUBSCRIBE", {"id": "a", "destination": "/queue/pk.a"}, "a")
    send_n(broker.port, "/queue/pk.b", 1)
    full = w.recv()
    assert full["destination"] == "/queue/pk.b"
    send_n(broker.port, "/queue/pk.a", 4, prefix=b"a")
    assert len(drain([a])[a]) == 4
    w.expect_nothing()
    w.receipt("ACK", {"id": full["ack"]}, "acked")
    send_n(broker.port, "/queue/pk.a", 2, prefix=b"b")
    got = drain([a, w])
    assert [m["destination"] for m in got[w]] == ["/queue/pk.a"]
    assert len(got[a]) == 1


def browse(port, dest, headers=None, version="1.2"):
    """SUBSCRIBE browser:true: the frames up to the browser:end MESSAGE."""
    b = connected(port, version=version)
    h = {"id": "b", "destination": dest, "browser": "true"}
    h.update(headers or {})
    b.send("SUBSCRIBE", h)
    got = []
    while True:
        f = b.recv(timeout=10)
        assert f.command == "MESSAGE" and f["subscription"] == "b", f
        if f.get("browser") == "end":
            assert f.body == b"" and f["destination"] == dest, f
            return b, got
        assert f.get("ack") is None, f  # nothing to acknowledge
        got.append(f)


def test_a_browser_sees_the_queue_and_takes_nothing(broker):
    """ActiveMQ's browser:true: before, the header was ignored and the
    browser consumed the queue."""
    send_n(broker.port, "/queue/browsed", 4, {"persistent": "true"})
    send_n(broker.port, "/queue/browsed", 2, {"priority": "9", "colour": "red"}, prefix=b"urgent")
    b, got = browse(broker.port, "/queue/browsed")
    assert [m.body for m in got] == [b"urgent0", b"urgent1", b"m0", b"m1", b"m2", b"m3"]
    b.expect_nothing(0.3)  # nothing more, nothing to ack
    b, got = browse(broker.port, "/queue/browsed", {"selector": "colour = 'red'"})
    assert [m.body for m in got] == [b"urgent0", b"urgent1"]
    b.receipt("UNSUBSCRIBE", {"id": "b"}, "u")  # a browse that ended may be unsubscribed
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/browsed"})
    assert len(c.recv_all(6)) == 6
    b, got = browse(broker.port, "/queue/browsed")
    assert got == []  # taken now; an empty queue ends at once
    b, got = browse(broker.port, "/queue/never-sent-to")
    assert got == []


def test_browser_errors(broker):
    for headers, error in (({"destination": "/topic/t"}, "browser needs one queue"),
                           ({"destination": "/queue/a,/queue/b"}, "browser needs one queue"),
                           ({"destination": "/queue/x.*"}, "browser needs one queue"),
                           ({"destination": "/queue/q", "browser": "yes"}, "invalid browser header")):
        c = connected(broker.port)
        h = {"id": "b", "browser": "true"}
        h.update(headers)
        c.send("SUBSCRIBE", h)
        c.expect_error(error)
    # its id is taken while it browses, as any subscription's
    send_n(broker.port, "/queue/brid", 1)
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/other"})
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/brid", "browser": "true"})
    c.expect_error("duplicate subscription id")


def test_a_browser_pages_through_a_deep_queue(broker_factory):
    """A persistent queue paged out to the store is browsed page by page,
    in order, and a slow reader holds only its connection's output."""
    b = broker_factory({"broker.queue_window": "4KiB"})
    p = connected(b.port)
    for i in range(300):
        p.send("SEND", {"destination": "/queue/deep-browse", "persistent": "true"}, b"%04d" % i + b"x" * 1000)
    p.receipt("DISCONNECT", {}, "sent")
    br, got = browse(b.port, "/queue/deep-browse")
    assert [m.body[:4] for m in got] == [b"%04d" % i for i in range(300)]
    # a reader that reads slowly: the broker waits for room, then goes on
    slow = Client(b.port, rcvbuf=4096)
    slow.connect("1.2")
    slow.send("SUBSCRIBE", {"id": "b", "destination": "/queue/deep-browse", "browser": "true"})
    n = 0
    while True:
        f = slow.recv(timeout=10)
        if f.get("browser") == "end":
            break
        n += 1
        if n % 50 == 0:
            time.sleep(0.05)
    assert n == 300
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/deep-browse"})
    assert [m.body[:4] for m in c.recv_all(300)] == [b"%04d" % i for i in range(300)]


def test_browsers_judge_a_costly_selector_each_with_a_whole_budget(broker_factory):
    """Two browsers of one message in one loop turn (helper-63: the second
    got what the first's selector left of the budget, and skipped it)."""
    broker = broker_factory({"stomp.max_header_size": "64KiB"})
    p = connected(broker.port)
    p.receipt("SEND", {"destination": "/queue/brcost", "h": "a" * 30000 + "z"}, "p", b"the one")
    c = connected(broker.port)
    sub = lambda i: encode_frame("SUBSCRIBE", {"id": "b%d" % i, "destination": "/queue/brcost", "browser": "true",
                                               "selector": "h LIKE '%z%'"})
    c.send_raw(sub(0) + sub(1))
    got = {"b0": [], "b1": []}
    ended = 0
    while ended < 2:
        f = c.recv(timeout=10)
        if f.get("browser") == "end":
            ended += 1
        else:
            got[f["subscription"]].append(f.body)
    assert got == {"b0": [b"the one"], "b1": [b"the one"]}
