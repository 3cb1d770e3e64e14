"""Backpressure: a consumer that does not read is skipped without slowing
others; a producer to a full destination stops being read and gets its
receipt only when there is room; producers to other destinations go on."""
import json
import os
import signal
import socket
import struct
import threading
import time

from stompd_test import Client, connected, http_request


def get_json(b, path):
    status, _, body = http_request(b.http_port, "GET", path)
    assert status == 200, (path, status, body)
    return json.loads(body)


def test_stalled_consumer_does_not_block_others(broker_factory):
    b = broker_factory({"stomp.output_limit": "64KiB"})
    stalled = Client(b.port, rcvbuf=4096)
    stalled.connect()
    stalled.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/slow"}, "r")
    fast = connected(b.port)
    fast.receipt("SUBSCRIBE", {"id": "f", "destination": "/queue/slow"}, "r")
    p = connected(b.port)
    body = b"y" * 1024
    n = 20000
    for i in range(n):
        p.send("SEND", {"destination": "/queue/slow"}, body)
    p.receipt("SEND", {"destination": "/queue/other"}, "done", b"")
    got = 0
    while True:
        try:
            fast.recv(timeout=4)   # generous: the machine may be busy
            got += 1
        except TimeoutError:
            break
    # when the stalled one reads, what it was given arrives whole
    rest = 0
    while True:
        try:
            m = stalled.recv(timeout=4)
            assert m.body == body
            rest += 1
        except TimeoutError:
            break
    assert got + rest == n, (got, rest)
    # The stalled consumer held only what the kernel buffers on loopback
    # take (up to 4 MiB of send buffer here) plus output_limit; everything
    # else went to the fast one.
    assert rest <= 6000, (got, rest)


def test_producer_paused_on_full_queue(broker_factory):
    b = broker_factory({"broker.dest_memory_limit": "64KiB"})
    p = connected(b.port)
    body = b"z" * 4096
    receipts = []
    # send until a receipt stops coming back
    sent = 0
    for i in range(100):
        p.send("SEND", {"destination": "/queue/full", "receipt": "r%d" % i}, body)
        sent += 1
        try:
            # the first ten fit for sure: a slow broker gets long enough
            f = p.recv(timeout=0.3 if len(receipts) >= 10 else 10.0)
            receipts.append(f["receipt-id"])
        except TimeoutError:
            break
    assert 10 <= len(receipts) < 100, len(receipts)
    # said in the log (helper-109: nothing told why producers waited)
    assert b.wait_log(r"destination /queue/full is full \(broker.dest_memory_limit, \d+ bytes in memory\): "
                      r"its producers wait for room")
    # another producer to another queue is not slowed
    q = connected(b.port)
    q.receipt("SEND", {"destination": "/queue/free"}, "free", b"x")
    # a consumer drains: the held receipt arrives, the producer goes on
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/full"})
    f = p.recv(timeout=5)
    assert f["receipt-id"] == "r%d" % (sent - 1)
    p.receipt("SEND", {"destination": "/queue/full"}, "more", body)
    n = 0
    try:
        while True:
            c.recv(timeout=0.5)
            n += 1
    except TimeoutError:
        pass
    assert n == sent + 1


def test_a_producer_gone_while_its_send_waits_for_room_is_closed(broker_factory):
    """A producer whose SEND waits for room in a full destination is not
    read. If it goes away meanwhile (closing with frames still unread
    behind that SEND, or with a reset), its connection closes within
    seconds. Before, each one held its slot (broker.max_connections) until
    a consumer made room: a few clients that sent and vanished locked
    everyone out."""
    b = broker_factory({"broker.dest_memory_limit": "64KiB", "broker.max_connections": "8"})
    body = b"z" * 4096
    p = connected(b.port)
    for i in range(100):
        p.send("SEND", {"destination": "/queue/sink", "receipt": "r%d" % i}, body)
        try:
            p.recv(timeout=0.3 if i >= 10 else 10.0)
        except TimeoutError:
            break
    else:
        raise AssertionError("the queue never filled")
    gone = [p]
    for i in range(5):
        q = connected(b.port)
        q.send("SEND", {"destination": "/queue/sink"}, body)
        q.send("SEND", {"destination": "/queue/sink"}, body)  # unread behind the first
        gone.append(q)
    # each has sent CONNECT and a first SEND, which waits for room
    deadline = time.time() + 10
    while sum(c["frames_in"] >= 2 for c in get_json(b, "/api/connections")) < 6:
        assert time.time() < deadline, "the producers' first SENDs were not read"
        time.sleep(0.05)
    for i, q in enumerate(gone):
        if i % 2:
            # a reset, as from a crashed client
            q.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        q.sock.close()
    deadline = time.time() + 15
    while get_json(b, "/api/counters")["connections"] > 0:
        assert time.time() < deadline, "connections of clients gone stay open"
        time.sleep(0.1)
    # every slot is free again; the queue still holds what was accepted
    fresh = [connected(b.port) for _ in range(8)]
    assert get_json(b, "/api/counters")["connections"] == 8
    for c in fresh:
        c.close()


def test_queue_depth_limit(broker_factory):
    b = broker_factory({"broker.max_queue_depth": "50"})
    p = connected(b.port)
    for i in range(48):
        p.send("SEND", {"destination": "/queue/depth"}, b"x")
    p.receipt("SEND", {"destination": "/queue/depth"}, "r48", b"x")    # 49: room left
    p.send("SEND", {"destination": "/queue/depth", "receipt": "r49"}, b"x")   # 50: full
    p.expect_nothing(0.3)
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/depth"})
    assert p.recv(timeout=5)["receipt-id"] == "r49"


def test_global_memory_limit_pauses_producers_everywhere(broker_factory):
    # Per destination there is room (64 MiB): only broker.memory_limit,
    # across all of them, holds the receipts back.
    b = broker_factory({"broker.memory_limit": "1MiB"})
    p = connected(b.port)
    body = b"m" * 65536
    receipted = 0
    for i in range(40):
        p.send("SEND", {"destination": "/queue/mem%d" % (i % 4), "receipt": "r%d" % i}, body)
        try:
            # the first twelve fit for sure: a slow broker gets long enough
            assert p.recv(timeout=0.5 if receipted >= 12 else 10.0)["receipt-id"] == "r%d" % i
            receipted += 1
        except TimeoutError:
            break
    held = i
    assert 12 <= receipted <= 16, receipted      # about 1 MiB of 64 KiB messages
    # a producer to a destination of its own is paused as well
    q = connected(b.port)
    q.send("SEND", {"destination": "/queue/elsewhere", "receipt": "other"}, body)
    q.expect_nothing(0.5)
    # consumers drain: below 90% of the limit both receipts arrive
    c = connected(b.port)
    for k in range(4):
        c.send("SUBSCRIBE", {"id": str(k), "destination": "/queue/mem%d" % k})
    assert p.recv(timeout=5)["receipt-id"] == "r%d" % held
    assert q.recv(timeout=5)["receipt-id"] == "other"
    got = 0
    try:
        while True:
            assert c.recv(timeout=0.5).body == body
            got += 1
    except TimeoutError:
        pass
    assert got == held + 1


def body(i):
    return b"%06d" % i + b"." * (16384 - 6)


def slow_topic_subscriber(b, n):
    """A topic with a subscriber that reads nothing and one that reads all,
    and a producer sending n messages, each waiting for its RECEIPT, until
    one does not come. Returns both subscribers, the producer, how many
    were receipted and the bodies the fast one got."""
    slow = Client(b.port, rcvbuf=4096)
    slow.connect()
    slow.receipt("SUBSCRIBE", {"id": "slow", "destination": "/topic/news"}, "r")
    fast = connected(b.port)
    fast.receipt("SUBSCRIBE", {"id": "fast", "destination": "/topic/news"}, "r")
    got = []
    done = threading.Event()

    def read():
        quiet = 0.0  # since the producer stopped, with nothing to read
        while len(got) < n and quiet < 2.0:
            try:
                got.append(fast.recv(timeout=0.2).body)
                quiet = 0.0
            except TimeoutError:
                quiet += 0.2 if done.is_set() else 0.0
    reader = threading.Thread(target=read)
    reader.start()
    p = connected(b.port)
    receipted = 0
    for i in range(n):
        p.send("SEND", {"destination": "/topic/news", "receipt": "r%d" % i}, body(i))
        try:
            # the first ten fit for sure: a slow broker gets long enough
            assert p.recv(timeout=1.0 if receipted >= 10 else 10.0)["receipt-id"] == "r%d" % i
            receipted += 1
        except TimeoutError:
            break
    done.set()
    reader.join()
    return slow, fast, p, receipted, got


def test_slow_topic_subscriber_pauses_the_producers_by_default(broker_factory):
    """No broker.topic_pending_limit (ActiveMQ's default): nothing is
    discarded; the slow subscriber's backlog fills the topic's memory and
    its producers wait, which holds the other subscriber too."""
    b = broker_factory({"broker.dest_memory_limit": "256KiB", "stomp.output_limit": "64KiB"})
    slow, _, _, receipted, got = slow_topic_subscriber(b, 2000)
    assert 10 <= receipted < 2000, receipted
    # (the SEND whose receipt waits for room was delivered)
    assert receipted <= len(got) <= receipted + 1
    # the slow one reads: every message comes, in order; the producer goes on
    n = 0
    while n < receipted:
        assert slow.recv(timeout=10).body[:6] == b"%06d" % n
        n += 1


def test_topic_pending_limit_discards_a_slow_subscribers_oldest(broker_factory):
    """broker.topic_pending_limit: a subscriber that reads slower than the
    topic is published to loses its oldest waiting messages, counted and
    logged; the producer and the other subscriber go on at full speed."""
    b = broker_factory({"broker.dest_memory_limit": "256KiB", "stomp.output_limit": "64KiB",
                        "broker.topic_pending_limit": "5"})
    n = 1000
    slow, fast, _, receipted, got = slow_topic_subscriber(b, n)
    assert receipted == n, "the producer was paused"
    assert got == [body(i) for i in range(n)], "the fast subscriber lost or reordered messages"
    # the slow one reads: what it gets is in order and ends with the newest
    seen = []
    while not seen or seen[-1] != n - 1:
        seen.append(int(slow.recv(timeout=10).body[:6]))
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    dropped = n - len(seen)
    assert dropped > 0
    # counted: the subscription, the topic, the broker
    conns = get_json(b, "/api/connections")
    subs = {s["id"]: s for c in conns for s in c["subscriptions"]}
    assert subs["slow"]["dropped"] == dropped and subs["fast"]["dropped"] == 0
    assert get_json(b, "/api/destination?name=/topic/news")["stats"]["dropped"] == dropped
    assert get_json(b, "/api/counters")["dropped"] == dropped
    _, _, m = http_request(b.http_port, "GET", "/metrics")
    assert ("stompd_dropped_total %d" % dropped).encode() in m
    assert b.log().count("reads slower than /topic/news is published to") == 1


def held_subscriber(b, dest, selector=None, held_headers=None):
    """A client-ack subscription to dest with prefetch 1, holding one
    message unacked (sent with held_headers, which may name the topic a
    wildcard dest matches), so what comes next waits in its backlog.
    Returns the subscriber, a producer and the held MESSAGE."""
    c = connected(b.port)
    h = {"id": "held", "destination": dest, "ack": "client", "activemq.prefetchSize": "1"}
    if selector:
        h["selector"] = selector
    c.receipt("SUBSCRIBE", h, "r")
    p = connected(b.port)
    p.send("SEND", {"destination": dest, **(held_headers or {})}, b"held")
    held = c.recv(timeout=10)
    assert held.body == b"held"
    return c, p, held


def take_after(c, held, n):
    """ACK the held message, then take n more, acking each: their bodies."""
    c.send("ACK", {"id": held["ack"]})
    got = []
    for _ in range(n):
        m = c.recv(timeout=10)
        got.append(m.body)
        c.send("ACK", {"id": m["ack"]})
    return got


def reload_limit(b, limit):
    """Set broker.topic_pending_limit in b's file and SIGHUP."""
    with open(os.path.join(b.dir, b.name + ".conf"), "w") as f:
        f.write("[broker]\ntopic_pending_limit = %d\n" % limit)
    b.proc.send_signal(signal.SIGHUP)
    assert b.wait_log("configuration reloaded")


def test_topic_pending_limit_discards_the_oldest_of_the_lowest_priority(broker_factory):
    """What waits beyond the prefetch is what the limit counts; of it, the
    oldest message of the lowest priority goes first (ActiveMQ's
    oldest-with-lowest-priority eviction). A message the subscription's
    selector refuses takes no room."""
    b = broker_factory({"broker.topic_pending_limit": "3"})
    c, p, held = held_subscriber(b, "/topic/prio", selector="keep IS NULL")
    for body, prio in [(b"a", 9), (b"b", 0), (b"c", 0), (b"d", 9), (b"e", 0)]:
        p.send("SEND", {"destination": "/topic/prio", "priority": str(prio)}, body)
        p.send("SEND", {"destination": "/topic/prio", "keep": "no"}, b"refused")
    p.receipt("SEND", {"destination": "/topic/other"}, "sent", b"")
    got = take_after(c, held, 3)
    assert got == [b"a", b"d", b"e"], got
    c.expect_nothing(0.5)
    assert get_json(b, "/api/counters")["dropped"] == 2


def test_topic_pending_limit_expires_what_is_due_and_counts_on_the_topic(broker_factory):
    """Room is made by expiry first: an expired message in the way is
    expired (a persistent one dead-lettered), not counted as dropped. A
    wildcard subscription's drops count on the topic published to."""
    b = broker_factory({"broker.topic_pending_limit": "2"})
    c, p, held = held_subscriber(b, "/topic/w.>", held_headers={"destination": "/topic/w.x"})
    soon = int(time.time() * 1000) + 300
    p.receipt("SEND", {"destination": "/topic/w.x", "persistent": "true", "expires": str(soon)}, "a", b"a")
    p.receipt("SEND", {"destination": "/topic/w.x"}, "b", b"b")
    # until a has expired (nothing sweeps it: the sweep runs every 30 s)
    while time.time() * 1000 <= soon + 50:
        time.sleep(0.05)
    p.receipt("SEND", {"destination": "/topic/w.x"}, "c", b"c")
    counters = get_json(b, "/api/counters")
    assert (counters["expired"], counters["dead_lettered"], counters["dropped"]) == (1, 1, 0), counters
    p.receipt("SEND", {"destination": "/topic/w.x"}, "d", b"d")   # now b goes
    assert get_json(b, "/api/destination?name=/topic/w.x")["stats"]["dropped"] == 1
    assert get_json(b, "/api/counters")["dropped"] == 1
    got = take_after(c, held, 2)
    assert got == [b"c", b"d"], got
    assert b.log().count("reads slower than /topic/w.x is published to") == 1


def test_topic_pending_limit_spares_a_subscriber_that_keeps_up(broker_factory):
    """Messages whose selector has not run yet (the routing budget went to
    another subscription's selector) wait in the backlog of a subscriber
    that is reading: they are no reason to discard, it takes them before
    the loop sleeps."""
    b = broker_factory({"broker.topic_pending_limit": "3", "stomp.selector_budget": "1000"})
    dear = connected(b.port)   # its selector spends the routing budget
    dear.receipt("SUBSCRIBE", {"id": "dear", "destination": "/topic/sel", "selector":
                               " OR ".join("pad LIKE '%%%s'" % ch for ch in "qrst")}, "r")
    c = connected(b.port)
    c.receipt("SUBSCRIBE", {"id": "cheap", "destination": "/topic/sel", "selector": "k = '1'"}, "r")
    p = connected(b.port)
    for i in range(40):
        p.send("SEND", {"destination": "/topic/sel", "k": str(i % 2), "pad": "a" * 300}, b"%d" % i)
    p.receipt("SEND", {"destination": "/topic/other"}, "sent", b"")
    got = [int(c.recv(timeout=10).body) for _ in range(20)]
    assert got == list(range(1, 40, 2)), got
    c.expect_nothing(0.5)
    assert get_json(b, "/api/counters")["dropped"] == 0


def test_a_topic_pending_limit_set_by_sighup_frees_a_stalled_topic(broker_factory):
    """SIGHUP applies broker.topic_pending_limit at once: backlogs above
    it are trimmed, so producers a slow subscriber had paused go on."""
    b = broker_factory({"broker.dest_memory_limit": "256KiB", "stomp.output_limit": "64KiB"},
                       config_text="[broker]\ntopic_pending_limit = 0\n")
    slow, _, p, receipted, _ = slow_topic_subscriber(b, 2000)
    assert receipted < 2000, "the topic did not stall"
    p.expect_nothing(0.5)
    reload_limit(b, 5)
    # the paused SEND's receipt comes, and the producer goes on
    assert p.recv(timeout=10)["receipt-id"] == "r%d" % receipted
    for i in range(20):
        p.receipt("SEND", {"destination": "/topic/news"}, "more%d" % i, body(2000 + i))
    dropped = get_json(b, "/api/counters")["dropped"]
    assert dropped > 0
    # the slow one reads: in order, ending with the newest
    seen = []
    while not seen or seen[-1] != 2019:
        seen.append(int(slow.recv(timeout=10).body[:6]))
    assert seen == sorted(seen)
    assert len(seen) + dropped == receipted + 1 + 20


def unjudged_backlog(b):
    """A held subscriber to /topic/judge whose selector (k = '1') has not
    run on what waits for it: another subscription's selector spends the
    routing budget of each of the 40 messages published (k alternating 0
    and 1, from 0). Returns the subscriber and its held MESSAGE."""
    dear = connected(b.port)   # its selector spends the routing budget
    dear.receipt("SUBSCRIBE", {"id": "dear", "destination": "/topic/judge", "selector":
                               " OR ".join("pad LIKE '%%%s'" % ch for ch in "qrst")}, "r")
    c, p, held = held_subscriber(b, "/topic/judge", selector="k = '1'", held_headers={"k": "1"})
    for i in range(40):
        p.send("SEND", {"destination": "/topic/judge", "k": str(i % 2), "pad": "a" * 300}, b"%d" % i)
    p.receipt("SEND", {"destination": "/topic/other"}, "sent", b"")
    return c, held


def test_a_publish_judges_what_it_would_discard(broker_factory):
    """The same backlog at the limit from the start: each publish makes
    room by judging the oldest message on a budget of its own (the
    routing budget is spent), so one the selector refuses goes without
    being counted, and only the subscription's own are dropped."""
    b = broker_factory({"stomp.selector_budget": "1000", "broker.topic_pending_limit": "5"})
    c, held = unjudged_backlog(b)
    # each publish past five waiting removes the oldest: 0 to 34 go, and
    # of them the 17 with k = 1 were the subscription's
    assert get_json(b, "/api/counters")["dropped"] == 17
    got = [int(body) for body in take_after(c, held, 3)]
    assert got == [35, 37, 39], got
    c.expect_nothing(0.5)


def test_a_trim_judges_what_the_selector_has_not(broker_factory):
    """A backlog holds messages whose selector has not run yet (the routing
    budget went to another subscription). Trimmed to a new limit, those
    the selector refuses go without being counted as dropped; only the
    subscription's own messages are."""
    b = broker_factory({"stomp.selector_budget": "1000"}, config_text="[broker]\ntopic_pending_limit = 0\n")
    c, held = unjudged_backlog(b)
    reload_limit(b, 5)
    # the newest five stay (35 to 39); of the 35 older ones, the 17 with
    # k = 1 were the subscription's: dropped
    assert get_json(b, "/api/counters")["dropped"] == 17
    got = [int(body) for body in take_after(c, held, 3)]
    assert got == [35, 37, 39], got
    c.expect_nothing(0.5)


def metric(b, name):
    status, _, text = http_request(b.http_port, "GET", "/metrics")
    assert status == 200
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no %s in /metrics" % name)


def test_output_all_connections_hold_is_bounded(broker_factory):
    """Consumers that do not read each hold at most stomp.output_limit of
    copies of messages, but many of them held that many times over,
    counted nowhere. stomp.max_output_buffers bounds the total: beyond it,
    a connection with output unsent gets no more, one whose output is out
    still gets one message at a time, so a reader is not held by the
    stalled."""
    b = broker_factory({"stomp.max_output_buffers": "1MiB"})
    frame = 256 * 1024
    stalled_n = 6
    p = connected(b.port)
    for q in range(stalled_n):
        # 10 MiB each: more than the kernel's buffers of a socket take
        for i in range(40):
            p.send("SEND", {"destination": "/queue/held%d" % q}, b"h" * frame)
    for i in range(20):
        p.send("SEND", {"destination": "/queue/read"}, b"%06d" % i + b"r" * (frame - 6))
    p.receipt("SEND", {"destination": "/queue/other"}, "sent", b"")
    stalled = []
    for q in range(stalled_n):
        c = Client(b.port, rcvbuf=4096)
        c.connect()
        c.send("SUBSCRIBE", {"id": "s", "destination": "/queue/held%d" % q})
        stalled.append(c)

    def stalled_output():
        held = {}
        for c in get_json(b, "/api/connections"):
            for s in c["subscriptions"]:
                if s["destination"].startswith("/queue/held"):
                    held[s["destination"]] = c["pending_output"]
        return held
    # each has some unsent (its socket took no more), all together the
    # limit: nothing more goes to them now
    deadline = time.monotonic() + 60
    while True:
        held = stalled_output()
        if len(held) == stalled_n and all(held.values()) and sum(held.values()) >= 1 << 20:
            break
        assert time.monotonic() < deadline, held
        time.sleep(0.05)
    # a reader still gets every message of its queue, one at a time
    reader = connected(b.port)
    reader.send("SUBSCRIBE", {"id": "r", "destination": "/queue/read"})
    got = [reader.recv(timeout=30).body for _ in range(20)]
    assert got == [b"%06d" % i + b"r" * (frame - 6) for i in range(20)]
    held = stalled_output()
    # the limit, and at most one frame more for each connection
    bound = (1 << 20) + (stalled_n + 1) * (frame + 1024)
    assert sum(held.values()) <= bound, held
    assert sum(held.values()) <= metric(b, "stompd_output_buffered_bytes") <= bound + 64 * 1024
    # what they were given arrives whole when they read
    for c in stalled:
        assert c.recv(timeout=30).body == b"h" * frame
