"""Backpressure: a consumer that does not read is skipped without slowing
others; a producer to a full destination stops being read and gets its
receipt only when there is room; producers to other destinations go on."""
import time

from stompd_test import Client, connected


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
