"""The broker's duplicate window: a SEND whose _AMQ_DUPL_ID it has seen
among the last broker.dup_window ids is dropped and still receipted; the
window forgets the oldest id first, is off at 0, and (for persistent
sends) survives a crash with the store."""
import base64
import json
import urllib.request

from stompd_test import connected


def send(c, dup_id, body, rid, persistent=True):
    h = {"destination": "/queue/dups", "_AMQ_DUPL_ID": dup_id}
    if persistent:
        h["persistent"] = "true"
    return c.receipt("SEND", h, rid, body)


def drain(port, n_expected):
    s = connected(port)
    s.send("SUBSCRIBE", {"id": "1", "destination": "/queue/dups"})
    got = [s.recv(timeout=5).body for _ in range(n_expected)]
    s.expect_nothing(0.5)
    s.close()
    return got


def dropped(b):
    r = urllib.request.Request("http://127.0.0.1:%d/api/overview" % b.http_port)
    r.add_header("Authorization", "Basic " + base64.b64encode(b"admin:admin").decode())
    with urllib.request.urlopen(r, timeout=5) as f:
        return json.load(f)["counters"]["duplicates"]


def test_same_id_twice_is_one_message_and_two_receipts(broker):
    p = connected(broker.port)
    for persistent in (True, False):
        send(p, "a-%s" % persistent, b"first", "r1", persistent)
        send(p, "a-%s" % persistent, b"second", "r2", persistent)
    send(p, "b", b"other", "r3")
    assert drain(broker.port, 3) == [b"first", b"first", b"other"]
    assert dropped(broker) == 2


def test_the_window_forgets_the_oldest_id_first(broker_factory):
    b = broker_factory({"broker.dup_window": "2"})
    p = connected(b.port)
    for i, dup_id in enumerate("AABCA"):
        send(p, dup_id, b"%s%d" % (dup_id.encode(), i), "r%d" % i)
    # the second A is a duplicate; by the third, B and C have pushed A out
    assert drain(b.port, 4) == [b"A0", b"B2", b"C3", b"A4"]


def test_window_zero_is_off(broker_factory):
    b = broker_factory({"broker.dup_window": "0"})
    p = connected(b.port)
    send(p, "A", b"one", "r1")
    send(p, "A", b"two", "r2")
    assert drain(b.port, 2) == [b"one", b"two"]


def resend_after_a_crash(b, dup_id):
    """kill -9 and restart b, then send dup_id again and a new id."""
    b.kill()
    b.restart()
    p = connected(b.port)
    send(p, dup_id, b"resent after the crash", "r-resent")
    send(p, "new", b"new", "r-new")


def test_the_window_survives_a_crash(broker_factory):
    b = broker_factory()
    p = connected(b.port)
    send(p, "kept", b"before", "r1")
    p.close()
    resend_after_a_crash(b, "kept")
    assert drain(b.port, 2) == [b"before", b"new"]


def test_the_same_id_twice_in_one_transaction_is_one_message(broker_factory):
    """Inside one transaction too (before: a persistent SEND's id was
    remembered only once the COMMIT's entry was closed, so both went),
    and the id stays remembered, at that entry, across a crash."""
    b = broker_factory()
    p = connected(b.port)
    p.send("BEGIN", {"transaction": "t"})
    for i, (dup_id, persistent) in enumerate((("tx", "true"), ("tx", "true"), ("np", "false"), ("np", "false"),
                                              ("tx", "false"))):
        p.send("SEND", {"destination": "/queue/dups", "_AMQ_DUPL_ID": dup_id, "persistent": persistent,
                        "transaction": "t"}, b"%d" % i)
    p.receipt("COMMIT", {"transaction": "t"}, "c")
    assert drain(b.port, 2) == [b"0", b"2"]
    p.close()
    resend_after_a_crash(b, "tx")
    assert drain(b.port, 1) == [b"new"]
