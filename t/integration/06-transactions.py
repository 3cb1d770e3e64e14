"""Transactions: sends and acks take effect at COMMIT, ABORT drops them,
a connection that closes aborts its open transactions."""
import base64
import http.client
import json
import time

import pytest

from stompd_test import connected, http_json, wait_for


def test_sends_held_until_commit(broker):
    rx = connected(broker.port)
    rx.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/tx"}, "s")
    p = connected(broker.port)
    p.send("BEGIN", {"transaction": "t1"})
    for i in range(3):
        p.receipt("SEND", {"destination": "/queue/tx", "transaction": "t1"}, "r%d" % i, b"%d" % i)
    rx.expect_nothing()
    p.receipt("COMMIT", {"transaction": "t1"}, "c")
    assert [m.body for m in rx.recv_all(3)] == [b"0", b"1", b"2"]


def test_abort_drops_sends(broker):
    rx = connected(broker.port)
    rx.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/txa"}, "s")
    p = connected(broker.port)
    p.send("BEGIN", {"transaction": "t"})
    p.send("SEND", {"destination": "/queue/txa", "transaction": "t"}, b"never")
    p.receipt("ABORT", {"transaction": "t"}, "a")
    p.send("SEND", {"destination": "/queue/txa"}, b"after")
    assert rx.recv().body == b"after"
    rx.expect_nothing()
    # the transaction is gone
    p.send("COMMIT", {"transaction": "t"})
    p.expect_error("unknown transaction")


def test_acks_take_effect_at_commit(broker):
    p = connected(broker.port)
    for i in range(2):
        p.send("SEND", {"destination": "/queue/txack"}, b"%d" % i)
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/txack", "ack": "client-individual"})
    m0, m1 = c.recv_all(2)
    c.send("BEGIN", {"transaction": "a"})
    c.send("ACK", {"id": m0["ack"], "transaction": "a"})
    c.receipt("COMMIT", {"transaction": "a"}, "c")
    c.send("BEGIN", {"transaction": "b"})
    c.send("ACK", {"id": m1["ack"], "transaction": "b"})
    c.receipt("ABORT", {"transaction": "b"}, "x")
    c.close()
    d = connected(broker.port)
    d.send("SUBSCRIBE", {"id": "1", "destination": "/queue/txack"})
    got = d.recv()
    assert got.body == b"1" and got["redelivered"] == "true"
    d.expect_nothing()


def test_close_aborts_open_transaction(broker):
    rx = connected(broker.port)
    rx.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/txc"}, "s")
    p = connected(broker.port)
    p.send("BEGIN", {"transaction": "t"})
    p.receipt("SEND", {"destination": "/queue/txc", "transaction": "t"}, "r", b"lost")
    p.close()
    rx.expect_nothing(0.5)


def test_two_transactions_interleaved(broker):
    rx = connected(broker.port)
    rx.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/txi"}, "s")
    p = connected(broker.port)
    p.send("BEGIN", {"transaction": "x"})
    p.send("BEGIN", {"transaction": "y"})
    p.send("SEND", {"destination": "/queue/txi", "transaction": "x"}, b"x1")
    p.send("SEND", {"destination": "/queue/txi", "transaction": "y"}, b"y1")
    p.send("SEND", {"destination": "/queue/txi", "transaction": "x"}, b"x2")
    p.receipt("COMMIT", {"transaction": "y"}, "cy")
    assert rx.recv().body == b"y1"
    p.receipt("COMMIT", {"transaction": "x"}, "cx")
    assert [m.body for m in rx.recv_all(2)] == [b"x1", b"x2"]


def test_transaction_limits(broker_factory):
    b = broker_factory({"stomp.max_transactions": "2", "stomp.max_tx_frames": "3"})
    p = connected(b.port)
    p.send("BEGIN", {"transaction": "a"})
    p.send("BEGIN", {"transaction": "b"})
    p.send("BEGIN", {"transaction": "c"})
    p.expect_error("too many transactions")
    p = connected(b.port)
    p.send("BEGIN", {"transaction": "a"})
    for i in range(4):
        p.send("SEND", {"destination": "/queue/lim", "transaction": "a"}, b"x")
    p.expect_error("transaction too large")


def test_a_composite_send_counts_once_per_destination(broker_factory):
    """COMMIT publishes a copy to every destination a SEND names, in one
    loop turn: stomp.max_tx_frames and broker.memory_limit count those
    copies, so a transaction of composite SENDs cannot multiply either
    (max_tx_frames x max_composite copies in one turn stalled every other
    client for seconds)."""
    b = broker_factory({"stomp.max_tx_frames": "10", "broker.memory_limit": "1MiB"})
    four = ",".join("/queue/leg%d" % i for i in range(4))
    p = connected(b.port)
    p.send("BEGIN", {"transaction": "a"})
    p.receipt("SEND", {"destination": four, "transaction": "a"}, "s1", b"x")
    p.receipt("SEND", {"destination": four, "transaction": "a"}, "s2", b"x")   # 8 of 10
    p.send("SEND", {"destination": four, "transaction": "a"}, b"x")            # 12
    f = p.expect_error("transaction too large")
    assert "once for each destination" in f.body.decode()
    # the same SENDs to one destination each fit
    p = connected(b.port)
    p.send("BEGIN", {"transaction": "a"})
    for i in range(10):
        p.receipt("SEND", {"destination": "/queue/leg0", "transaction": "a"}, "r%d" % i, b"x")
    p.receipt("COMMIT", {"transaction": "a"}, "c")
    # 200 KB to 8 queues is 1.6 MB at COMMIT: over the 1 MiB limit,
    # though the frame itself is held once
    eight = ",".join("/queue/big%d" % i for i in range(8))
    p = connected(b.port)
    p.send("BEGIN", {"transaction": "m"})
    p.send("SEND", {"destination": eight, "transaction": "m"}, b"y" * 200000)
    p.expect_error("broker memory full")
    # to 4 of them it fits, and COMMIT delivers every copy
    rx = connected(b.port)
    rx.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/big3"}, "s")
    p = connected(b.port)
    p.send("BEGIN", {"transaction": "m"})
    p.receipt("SEND", {"destination": ",".join("/queue/big%d" % i for i in range(4)), "transaction": "m"}, "r",
              b"y" * 200000)
    p.receipt("COMMIT", {"transaction": "m"}, "c")
    assert rx.recv().body == b"y" * 200000


def test_a_bad_send_is_refused_when_it_arrives(broker):
    """A SEND's message headers are checked when it arrives inside a
    transaction too: before, a bad one was held, dropped alone at COMMIT
    (a log line), and the COMMIT's RECEIPT said the rest committed."""
    rx = connected(broker.port)
    rx.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/txbad"}, "s")
    for header, value, error in (("priority", "99", "invalid priority header"),
                                 ("expires", "-5", "invalid expires header"),
                                 ("expires", "abc", "invalid expires header"),
                                 ("persistent", "maybe", "invalid persistent header")):
        p = connected(broker.port)
        p.send("BEGIN", {"transaction": "t"})
        p.receipt("SEND", {"destination": "/queue/txbad", "transaction": "t"}, "one", b"one")
        p.send("SEND", {"destination": "/queue/txbad", "transaction": "t", header: value}, b"two")
        f = p.expect_error(error)
        assert value in f.body.decode()
    # each ERROR closed its connection, and so aborted its transaction
    rx.expect_nothing(0.5)


def temporary_queue(port):
    """A connection's temporary queue, and its name as others send to it."""
    owner = connected(port)
    owner.receipt("SUBSCRIBE", {"id": "r", "destination": "/temp-queue/replies"}, "s")
    peer = connected(port)
    peer.receipt("SUBSCRIBE", {"id": "q", "destination": "/queue/txreq"}, "s")
    owner.send("SEND", {"destination": "/queue/txreq", "reply-to": "/temp-queue/replies"}, b"ping")
    reply_to = peer.recv()["reply-to"]
    peer.close()
    return owner, reply_to


def close_temporary_queue(broker, owner, name):
    owner.close()
    # the temporary queue goes with its owner's connection
    wait_for(lambda: name not in [q["name"] for q in http_json(broker.http_port, "/api/queues")],
             what="the temporary queue gone with its connection")


@pytest.mark.parametrize("composite", [False, True])
def test_commit_drops_only_the_copy_for_a_closed_temporary_queue(broker, composite):
    """A held SEND to a temporary queue that closed before the COMMIT
    (a reply to a requester that went away) takes nothing there, as the
    same SEND outside a transaction: the COMMIT applies the rest, in order,
    and answers its RECEIPT. Before, the COMMIT failed whole with an ERROR,
    which closed the replying service's connection."""
    owner, reply_to = temporary_queue(broker.port)
    rx = connected(broker.port)
    rx.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/txall"}, "s")
    p = connected(broker.port)
    p.send("BEGIN", {"transaction": "t"})
    p.receipt("SEND", {"destination": "/queue/txall", "transaction": "t"}, "a", b"before")
    p.receipt("SEND", {"destination": "/queue/txall," + reply_to if composite else reply_to, "transaction": "t",
                       "persistent": "true"}, "b", b"reply")
    p.receipt("SEND", {"destination": "/queue/txall", "transaction": "t"}, "c", b"after")
    close_temporary_queue(broker, owner, reply_to)
    before = http_json(broker.http_port, "/api/counters")["closed_temp_dropped"]
    p.receipt("COMMIT", {"transaction": "t"}, "c")
    want = [b"before", b"reply", b"after"] if composite else [b"before", b"after"]
    assert [m.body for m in rx.recv_all(len(want))] == want
    rx.expect_nothing(0.3)
    assert http_json(broker.http_port, "/api/counters")["closed_temp_dropped"] == before + 1
    # the connection is still the transaction's producer's
    p.receipt("SEND", {"destination": "/queue/txall"}, "d", b"still here")
    assert rx.recv().body == b"still here"


def test_a_send_to_an_unknown_transaction_creates_nothing(broker):
    p = connected(broker.port)
    p.send("SEND", {"destination": "/queue/txnever-a,/queue/txnever-b", "transaction": "nope"}, b"x")
    p.expect_error("unknown transaction")
    st = http.client.HTTPConnection("127.0.0.1", broker.http_port, timeout=5)
    st.request("GET", "/api/queues", headers={"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()})
    names = [q["name"] for q in json.loads(st.getresponse().read())]
    assert not [n for n in names if n.startswith("/queue/txnever")], names


def test_a_commit_whose_acked_message_went_back_fails_whole(broker):
    """A held ACK whose message went back to its queue before the COMMIT
    (its subscription ended, or a NACK outside the transaction) fails the
    COMMIT whole: before, the ACK was skipped and the transaction's SENDs
    went out, so the work done for the message was published and the
    message came again."""
    for how in ("unsubscribe", "nack"):
        q, out = "/queue/txback-" + how, "/queue/txback-out-" + how
        rx = connected(broker.port)
        rx.receipt("SUBSCRIBE", {"id": "o", "destination": out}, "s")
        p = connected(broker.port)
        p.receipt("SEND", {"destination": q}, "p", b"work")
        c = connected(broker.port)
        c.send("SUBSCRIBE", {"id": "1", "destination": q, "ack": "client-individual"})
        m = c.recv()
        c.send("BEGIN", {"transaction": "t"})
        c.receipt("SEND", {"destination": out, "transaction": "t"}, "w", b"result")
        c.receipt("ACK", {"id": m["ack"], "transaction": "t"}, "a")
        if how == "unsubscribe":
            c.receipt("UNSUBSCRIBE", {"id": "1"}, "u")
        else:
            c.receipt("NACK", {"id": m["ack"]}, "n")
            assert c.recv()["redelivered"] == "true"  # back, and delivered again
        c.send("COMMIT", {"transaction": "t", "receipt": "c"})
        f = c.expect_error("transaction not committed")
        body = f.body.decode()
        assert f["receipt-id"] == "c"
        assert "went back to its queue" in body and m["message-id"] in body, body
        assert "nothing of the transaction was applied" in body, body
        rx.expect_nothing(0.5)
        d = connected(broker.port)
        d.send("SUBSCRIBE", {"id": "1", "destination": q})
        again = d.recv()
        assert again.body == b"work" and again["redelivered"] == "true"
        d.expect_nothing(0.3)


def test_a_held_ack_of_a_message_acked_meanwhile_still_commits(broker):
    """A message a held ACK names that was acknowledged outside the
    transaction meanwhile (a cumulative client ACK of a later one) is done:
    the COMMIT applies the rest and answers its RECEIPT."""
    p = connected(broker.port)
    for i in range(2):
        p.receipt("SEND", {"destination": "/queue/txacked"}, "p%d" % i, b"%d" % i)
    rx = connected(broker.port)
    rx.receipt("SUBSCRIBE", {"id": "o", "destination": "/queue/txacked-out"}, "s")
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/txacked", "ack": "client"})
    m0, m1 = c.recv_all(2)
    c.send("BEGIN", {"transaction": "t"})
    c.receipt("ACK", {"id": m0["ack"], "transaction": "t"}, "a")
    c.receipt("SEND", {"destination": "/queue/txacked-out", "transaction": "t"}, "w", b"result")
    c.receipt("ACK", {"id": m1["ack"]}, "all")  # cumulative: m0 too
    c.receipt("COMMIT", {"transaction": "t"}, "c")
    assert rx.recv().body == b"result"
    c.close()
    d = connected(broker.port)
    d.send("SUBSCRIBE", {"id": "1", "destination": "/queue/txacked"})
    d.expect_nothing(0.5)


def test_a_held_ack_of_a_message_removed_meanwhile_still_commits(broker):
    """ACKs held of a durable subscription's messages, then the
    subscription removed (UNSUBSCRIBE with its name): the COMMIT failed
    saying the messages had gone back to their queue, which they had not,
    and the connection closed with the transaction's SENDs (helper-96).
    Gone for good, they are as acknowledged meanwhile: the rest commits."""
    rx = connected(broker.port)
    rx.receipt("SUBSCRIBE", {"id": "o", "destination": "/queue/txremoved-out"}, "s")
    c = connected(broker.port, headers={"client-id": "txr"})
    c.receipt("SUBSCRIBE", {"id": "d", "destination": "/topic/txremoved", "ack": "client-individual",
                            "activemq.subscriptionName": "n"}, "s")
    for i in range(3):
        rx.receipt("SEND", {"destination": "/topic/txremoved", "persistent": "true"}, "p%d" % i, b"%d" % i)
    ms = c.recv_all(3)
    c.send("BEGIN", {"transaction": "t"})
    for m in ms:
        c.receipt("ACK", {"id": m["ack"], "transaction": "t"}, "a" + m.body.decode())
    c.receipt("SEND", {"destination": "/queue/txremoved-out", "transaction": "t"}, "w", b"result")
    c.receipt("UNSUBSCRIBE", {"id": "d", "activemq.subscriptionName": "n"}, "u")
    c.receipt("COMMIT", {"transaction": "t"}, "c")
    assert rx.recv().body == b"result"
    # the subscription and its messages are gone
    c.receipt("SUBSCRIBE", {"id": "d", "destination": "/topic/txremoved", "activemq.subscriptionName": "n"}, "s2")
    c.expect_nothing(0.5)


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_acks_by_message_id_in_any_order_and_in_a_transaction(broker, version):
    """Before STOMP 1.2 an ACK names a message-id: found by a walk of what
    the connection held, 30,000 unacked made each ACK that long, and
    100,000 held in a transaction held the loop 49 s (helper-96). Found by
    an index now: ACKs in any order, with the subscription named or not,
    leave exactly the messages not acknowledged; a COMMIT of cumulative
    ACKs repeated takes all before them."""
    import random
    p = connected(broker.port)
    for i in range(300):
        p.send("SEND", {"destination": "/queue/bymid"}, b"%d" % i)
    p.receipt("SEND", {"destination": "/queue/bymid-cum"}, "last", b"x")
    for i in range(199):
        p.send("SEND", {"destination": "/queue/bymid-cum"}, b"%d" % i)
    p.receipt("DISCONNECT", {}, "bye")
    c = connected(broker.port, version)
    c.send("SUBSCRIBE", {"id": "s", "destination": "/queue/bymid", "ack": "client-individual",
                         "activemq.prefetchSize": "1000"})
    ms = c.recv_all(300)
    keep = set(random.sample(range(300), 10))
    order = [m for i, m in enumerate(ms) if i not in keep]
    random.shuffle(order)
    for n, m in enumerate(order):
        h = {"message-id": m["message-id"]}
        if n % 2 and version == "1.1":
            h["subscription"] = "s"
        c.send("ACK", h)
    # an ACK of one acknowledged already is refused: it is known no more
    c.send("ACK", {"message-id": order[0]["message-id"]})
    c.expect_error("unknown message-id")
    d = connected(broker.port)
    d.send("SUBSCRIBE", {"id": "s", "destination": "/queue/bymid"})
    assert sorted(int(f.body) for f in d.recv_all(10)) == sorted(keep)
    d.expect_nothing(0.3)
    # cumulative ACKs of the newest, many times over, held in a transaction
    c = connected(broker.port, version)
    c.send("SUBSCRIBE", {"id": "s", "destination": "/queue/bymid-cum", "ack": "client",
                         "activemq.prefetchSize": "1000"})
    ms = c.recv_all(200)
    c.send("BEGIN", {"transaction": "t"})
    for _ in range(1000):
        c.send("ACK", {"message-id": ms[-2]["message-id"], "subscription": "s", "transaction": "t"})
    c.receipt("COMMIT", {"transaction": "t"}, "c")
    c.close()
    d.send("SUBSCRIBE", {"id": "t", "destination": "/queue/bymid-cum"})
    assert d.recv().body == b"198"   # the one after the ACKed
    d.expect_nothing(0.3)


@pytest.mark.parametrize("mode", ["client-individual", "client"])
def test_acks_held_in_a_transaction_leave_prefetch_room(broker, mode):
    """A consumer that takes more messages per transaction than its
    prefetch is not stalled until its COMMIT: what a held ACK covers
    leaves room (ActiveMQ's prefetch extension), given back when the
    transaction ends."""
    q = "/queue/txroom-" + mode
    p = connected(broker.port)
    for i in range(6):
        p.receipt("SEND", {"destination": q}, "p%d" % i, b"%d" % i)
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": q, "ack": mode, "activemq.prefetchSize": "2"})
    c.send("BEGIN", {"transaction": "t"})
    got = c.recv_all(2)
    c.expect_nothing(0.3)  # the prefetch holds the rest back
    c.send("ACK", {"id": got[-1]["ack"], "transaction": "t"})  # a client ACK covers both
    if mode == "client-individual":
        c.send("ACK", {"id": got[0]["ack"], "transaction": "t"})
    got += c.recv_all(2)
    c.receipt("COMMIT", {"transaction": "t"}, "c")
    assert [m.body for m in got] == [b"0", b"1", b"2", b"3"]
    # the room went back with the transaction: two in flight, no more
    c.expect_nothing(0.3)
    c.send("BEGIN", {"transaction": "u"})
    c.send("ACK", {"id": got[-1]["ack"], "transaction": "u"})
    if mode == "client-individual":
        c.send("ACK", {"id": got[-2]["ack"], "transaction": "u"})
    more = c.recv_all(2)
    assert [m.body for m in more] == [b"4", b"5"]
    c.receipt("ABORT", {"transaction": "u"}, "a")
    # aborted: 2, 3, 4 and 5 are in flight again against a prefetch of 2
    p.receipt("SEND", {"destination": q}, "p6", b"6")
    c.expect_nothing(0.3)
    c.receipt("ACK", {"id": more[-1]["ack"]}, "all")  # outside: 5 (and, cumulative, 2 to 4)
    if mode == "client-individual":
        c.expect_nothing(0.3)  # still 2, 3 and 4 in flight
        for m in got[2:] + more[:1]:
            c.send("ACK", {"id": m["ack"]})
    assert c.recv().body == b"6"


def test_a_committed_transaction_is_seen_whole_and_in_order(broker):
    """Non-persistent SENDs of a transaction wait for its persistent ones'
    entry: before, they were delivered at COMMIT at once, ahead of the
    persistent ones (1, 3, 0, 2), and seen even when a crash then lost the
    persistent part."""
    rx = connected(broker.port)
    rx.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/txorder"}, "s")
    p = connected(broker.port)
    p.send("BEGIN", {"transaction": "t"})
    for i in range(6):
        p.send("SEND", {"destination": "/queue/txorder,/topic/txorder-copy" if i == 5 else "/queue/txorder",
                        "transaction": "t", "persistent": "true" if i % 2 == 0 else "false"}, b"%d" % i)
    p.receipt("COMMIT", {"transaction": "t"}, "c")
    assert [m.body for m in rx.recv_all(6)] == [b"%d" % i for i in range(6)]


def test_a_commit_keeps_a_scheduled_send_admitted_before_memory_filled(broker_factory):
    """A non-persistent scheduled SEND was admitted when it arrived: a
    COMMIT after the broker's memory filled keeps it (before: dropped,
    the rest applied, and 'transaction partly applied')."""
    b = broker_factory({"broker.memory_limit": "1MiB"})
    p = connected(b.port)
    p.send("BEGIN", {"transaction": "t"})
    p.receipt("SEND", {"destination": "/queue/txsm-a", "transaction": "t"}, "a", b"plain")
    p.receipt("SEND", {"destination": "/queue/txsm-b", "transaction": "t", "AMQ_SCHEDULED_DELAY": "200"}, "b",
              b"scheduled")
    # another producer fills the memory, over several queues (each has its own, smaller limit)
    o = connected(b.port)
    for sent in range(1, 100):
        o.send("SEND", {"destination": "/queue/txsm-fill%d" % (sent % 8), "receipt": "f%d" % sent}, b"x" * 60000)
        try:
            o.recv(timeout=1.0)
        except (AssertionError, OSError, TimeoutError):
            break  # paused: the memory is full (that SEND was taken, its RECEIPT waits)
    else:
        raise AssertionError("the memory never filled")
    p.send("COMMIT", {"transaction": "t", "receipt": "c"})
    p.expect_nothing(0.5)  # applied; its producer waits for room, as for any SEND
    for k in range(8):
        d = connected(b.port)
        d.send("SUBSCRIBE", {"id": "1", "destination": "/queue/txsm-fill%d" % k})
        d.recv_all(sum(1 for n in range(1, sent + 1) if n % 8 == k), timeout=10)
        d.close()
    f = p.recv(timeout=10)
    assert f.command == "RECEIPT" and f["receipt-id"] == "c", f
    for q, body in (("/queue/txsm-a", b"plain"), ("/queue/txsm-b", b"scheduled")):
        d = connected(b.port)
        d.send("SUBSCRIBE", {"id": "1", "destination": q})
        assert d.recv(timeout=10).body == body


def test_room_and_failure_count_each_delivery_once(broker):
    """Room goes per delivery covered, not per ACK frame (an ACK repeated
    20 times gave 20 more deliveries), and a cumulative ACK covers the
    deliveries before the one it names: one of those going back fails
    the COMMIT too."""
    q = "/queue/txonce"
    p = connected(broker.port)
    for i in range(5):
        p.receipt("SEND", {"destination": q}, "p%d" % i, b"%d" % i)
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": q, "ack": "client-individual", "activemq.prefetchSize": "1"})
    m0 = c.recv()
    c.send("BEGIN", {"transaction": "t"})
    for _ in range(20):
        c.send("ACK", {"id": m0["ack"], "transaction": "t"})
    assert c.recv().body == b"1"
    c.expect_nothing(0.5)  # one more, not twenty
    c.receipt("ABORT", {"transaction": "t"}, "a")
    c.close()
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": q, "ack": "client", "activemq.prefetchSize": "3"})
    got = c.recv_all(3)
    c.send("BEGIN", {"transaction": "t"})
    c.receipt("SEND", {"destination": "/queue/txonce-out", "transaction": "t"}, "w", b"result")
    c.send("ACK", {"id": got[2]["ack"], "transaction": "t"})  # covers all three: room for the last two
    c.send("NACK", {"id": got[0]["ack"]})  # the first goes back, outside
    c.send("COMMIT", {"transaction": "t", "receipt": "c"})
    f = c.recv()
    while f.command == "MESSAGE":  # the NACKed one again, and the rest: the covered ones left room
        f = c.recv()
    assert f.command == "ERROR" and f["message"] == "transaction not committed", f
    assert got[0]["message-id"] in f.body.decode(), f.body


def test_two_transactions_acking_one_delivery_both_see_it_go_back(broker):
    """Each open transaction covering a delivery fails its COMMIT should
    the delivery go back, whichever covered it first, and whether or not
    the first has ended (helper-63: the second COMMIT was receipted)."""
    p = connected(broker.port)
    p.receipt("SEND", {"destination": "/queue/tx2"}, "p", b"m0")
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/tx2", "ack": "client-individual",
                         "activemq.prefetchSize": "1"})
    m0 = c.recv()
    for t in ("t1", "t2"):
        c.send("BEGIN", {"transaction": t})
        c.receipt("ACK", {"id": m0["ack"], "transaction": t}, "a-" + t)
    c.receipt("ABORT", {"transaction": "t1"}, "x")
    c.receipt("NACK", {"id": m0["ack"]}, "n")
    assert c.recv()["redelivered"] == "true"
    c.send("COMMIT", {"transaction": "t2", "receipt": "c"})
    f = c.expect_error("transaction not committed")
    assert m0["message-id"] in f.body.decode(), f.body
