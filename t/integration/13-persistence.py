"""The LevelDB store: what was receipted survives kill -9, acked messages
stay gone, delivered-but-unacked ones come back marked redelivered,
non-persistent ones are lost as documented, and a store that cannot be
used stops the broker with a clear message."""
import hashlib
import os
import shutil
import resource
import socket
import subprocess
import threading
import time

import pytest

from stompd_test import (VALGRIND, Broker, connected, consume_own_until_error, exited_with_1, free_port, http_json,
                         replicated, the_failed_send, wait_for)


# a restarted broker reads a queue back on its first dispatch: under
# valgrind on a loaded machine the first message may take a while
FIRST = 60.0 if VALGRIND else 15.0


def drain(port, dest, ack="auto", timeout=1.0, headers=None, first=FIRST):
    """Every message the queue gives: the first within `first` seconds
    (pass a short one where none is expected), each next within timeout."""
    c = connected(port)
    h = {"id": "drain", "destination": dest, "ack": ack}
    h.update(headers or {})
    c.send("SUBSCRIBE", h)
    got = []
    while True:
        try:
            got.append(c.recv(timeout=timeout if got else first))
        except TimeoutError:
            break
    c.close()
    return got


@pytest.mark.parametrize("kill_after", [1, 120, 400])
def test_kill9_loses_nothing_receipted(broker_factory, kill_after):
    b = broker_factory()
    consumer = connected(b.port)
    consumer.receipt("SUBSCRIBE", {"id": "c", "destination": "/queue/p", "ack": "client-individual",
                                   "activemq.prefetchSize": "1000"}, "sub")
    producer = connected(b.port)
    receipted, acked, ack_sent, delivered = set(), set(), set(), set()
    stop = threading.Event()

    def produce():
        i = 0
        while not stop.is_set() and i < 2000:
            try:
                producer.send("SEND", {"destination": "/queue/p", "persistent": "true",
                                       "receipt": "r%d" % i}, b"m%d" % i)
                f = producer.recv(timeout=5)
                assert f.command == "RECEIPT"
                receipted.add(b"m%d" % i)
            except (OSError, ConnectionError, TimeoutError):
                return
            i += 1

    t = threading.Thread(target=produce)
    t.start()
    # consume: ack (with receipts) every other message, leave the rest
    # unacked; an ack counts once its receipt is back
    n = 0
    while n < kill_after:
        f = consumer.recv(timeout=10)
        if f.command == "RECEIPT":
            acked.add(f["receipt-id"][2:].encode())
            continue
        delivered.add(f.body)
        if n % 2 == 0:
            consumer.send("ACK", {"id": f["ack"], "receipt": "a-" + f.body.decode()})
            ack_sent.add(f.body)
        n += 1
    b.kill()
    stop.set()
    t.join()
    assert len(receipted) >= kill_after

    b.restart()
    got = drain(b.port, "/queue/p", first=FIRST if receipted - ack_sent else 1.0)
    bodies = [m.body for m in got]
    assert len(bodies) == len(set(bodies)), "a message came back twice"
    assert not (set(bodies) & acked), "an acked message came back"
    # an ACK whose receipt did not arrive before the kill may or may not
    # have been stored; everything else receipted must be back
    assert receipted - ack_sent <= set(bodies), "a receipted message was lost"
    # what the consumer saw before the kill comes back marked; messages the
    # broker sent that the test had not read yet may be marked too (they
    # were delivered), so only this direction is asserted
    for m in got:
        if m.body in delivered:
            assert m["redelivered"] == "true", m


def journal_lsn(b):
    return http_json(b.http_port, "/api/status")["lsn"]


def wait_written(b):
    """Until the store's writer has everything the loop appended."""
    deadline = time.time() + 30
    while True:
        st = http_json(b.http_port, "/api/status")
        if st["durable_lsn"] >= st["lsn"]:
            return
        assert time.time() < deadline, st
        time.sleep(0.05)


def test_entries_the_loop_writes_itself_survive_kill9(broker_factory):
    """store.sync=local_mem: no fdatasync waits, so while the writer is
    idle the loop writes each round's records to the log itself and
    receipts them at once; the writer indexes them up to 5 ms later. A
    kill -9 in that window leaves records the index never saw: the start
    replays them from the log."""
    b = broker_factory({"store.sync": "local_mem"})
    p = connected(b.port)
    for i in range(300):
        p.receipt("SEND", {"destination": "/queue/inline", "persistent": "true"}, "r%d" % i, b"m%d" % i)
    st = http_json(b.http_port, "/api/status")
    assert st["inline_writes"] >= 100, st  # the path this test is about was taken
    # and the last ones are likely not indexed yet
    b.kill()
    b.restart()
    got = drain(b.port, "/queue/inline")
    assert [m.body for m in got] == [b"m%d" % i for i in range(300)]


def test_unwaited_acks_ride_with_the_next_entry(broker_factory):
    """A producer and a client-ack consumer in step, ACKs without receipts:
    each ACK waits (store.ack_delay, long here so no timer interferes) for
    the next message's entry to carry it, so N messages make 2N entries
    (each SEND's, and its delivery mark), not 3N. A clean stop journals
    the one still waiting."""
    b = broker_factory({"store.ack_delay": "10s"})
    consumer = connected(b.port)
    consumer.receipt("SUBSCRIBE", {"id": "c", "destination": "/queue/step", "ack": "client-individual"}, "sub")
    producer = connected(b.port)
    producer.receipt("SEND", {"destination": "/queue/step", "persistent": "true"}, "r0", b"first")
    f = consumer.recv()
    assert f.body == b"first"
    consumer.send("ACK", {"id": f["ack"]})
    n = 40
    before = journal_lsn(b)
    for i in range(n):
        producer.receipt("SEND", {"destination": "/queue/step", "persistent": "true"}, "r%d" % (i + 1), b"%d" % i)
        f = consumer.recv()
        assert f.body == b"%d" % i
        consumer.send("ACK", {"id": f["ack"]})
    entries = journal_lsn(b) - before
    assert entries == 2 * n, "%d entries for %d messages in step (3 each without coalescing)" % (entries, n)
    consumer.close()
    producer.close()
    assert b.stop() == 0
    b.restart()
    assert drain(b.port, "/queue/step", first=1.0) == [], "an acked message came back after a clean stop"


def test_an_auto_ack_delivery_is_journaled_before_it_leaves(broker_factory):
    """An auto-ack delivery has no delivery mark: its dequeue is journaled
    (and shipped) before the MESSAGE leaves, however long store.ack_delay,
    so a crash or a failover never delivers it again unmarked."""
    b = broker_factory({"store.ack_delay": "10s"})
    consumer = connected(b.port)
    consumer.receipt("SUBSCRIBE", {"id": "c", "destination": "/queue/auto", "ack": "auto"}, "sub")
    producer = connected(b.port)
    before = journal_lsn(b)
    producer.receipt("SEND", {"destination": "/queue/auto", "persistent": "true"}, "r", b"once")
    assert consumer.recv().body == b"once"
    assert journal_lsn(b) == before + 2, "the dequeue was not journaled when the MESSAGE left"
    wait_written(b)
    b.kill()
    b.restart()
    assert drain(b.port, "/queue/auto", first=1.0) == [], "an auto-ack delivery came back after kill -9"


def held_auto_ack_delivery(broker_factory, dest):
    """A broker whose writer is slow (every group waits
    STOMPD_TEST_WRITE_DELAY_MS before its write), an auto-ack consumer of
    dest, and a persistent message sent to it and receipted: its delivery
    is made, and held while its dequeue waits for the writer. Restarts of
    the broker have a writer at full speed."""
    b = broker_factory({"store.ack_delay": "10s"}, start=False)
    b.env = dict(os.environ, STOMPD_TEST_WRITE_DELAY_MS="400")
    b.start()
    consumer = connected(b.port)
    consumer.receipt("SUBSCRIBE", {"id": "c", "destination": dest, "ack": "auto"}, "sub")
    connected(b.port).receipt("SEND", {"destination": dest, "persistent": "true"}, "r", b"once")
    b.env = None
    return b, consumer


@pytest.mark.parametrize("then", ["read", "disconnect"])
def test_an_auto_ack_delivery_waits_for_a_busy_writer(broker_factory, then):
    """Standalone, the log is the only copy: when the writer is busy (here
    every group waits STOMPD_TEST_WRITE_DELAY_MS before its write), an
    auto-ack MESSAGE leaves only once its dequeue is written, so kill -9
    the moment it arrives does not bring the message back unmarked; nor
    does a DISCONNECT sent meanwhile let it out early with its RECEIPT."""
    b, consumer = held_auto_ack_delivery(broker_factory, "/queue/busy")
    if then == "disconnect":
        # the delivery is made when the SEND commits: its dequeue now waits
        # a write delay, and the connection closes after the RECEIPT
        consumer.send("DISCONNECT", {"receipt": "bye"})
    f = consumer.recv(timeout=30)
    assert f.body == b"once" and f.get("redelivered") is None
    if then == "disconnect":
        assert consumer.recv(timeout=30).command == "RECEIPT"
    b.kill()  # no wait for the writer: what arrived must be enough
    b.restart()
    again = drain(b.port, "/queue/busy", first=1.0)
    assert again == [], "kill -9 right after an auto-ack delivery brought it back unmarked: %r" % again


def test_a_stop_does_not_lose_a_held_auto_ack_delivery(broker_factory):
    """SIGTERM while an auto-ack MESSAGE waits for its dequeue's write (a
    slow writer): the broker writes the log first and sends the MESSAGE
    before it closes the connection, so the message is consumed exactly
    once: not dropped with the connection after its dequeue was written."""
    b, consumer = held_auto_ack_delivery(broker_factory, "/queue/stopping")
    assert b.stop() == 0
    got = []
    try:
        got.append(consumer.recv(timeout=5))
    except (TimeoutError, ConnectionError, OSError):
        pass
    b.restart()
    again = drain(b.port, "/queue/stopping", first=1.0)
    assert [f.body for f in got + again] == [b"once"], (got, again)
    assert got, "the held MESSAGE did not go out before the stop closed the connection"


def test_a_given_back_delivery_survives_a_replay(broker_factory):
    """An auto-ack delivery that never left is given back: a dequeue,
    then its message enqueued again under the same key. A restart that
    replays both from the log (the index behind them) skipped the second
    as "already in the index", and the first then removed it for good
    (helper-114)."""
    b = broker_factory({"store.ack_delay": "10s"}, start=False)
    # a slow writer holds the auto-ack MESSAGE long enough to close its
    # consumer; a lagging index keeps the dequeue and the give-back in the
    # log's tail
    b.env = dict(os.environ, STOMPD_TEST_WRITE_DELAY_MS="400", STOMPD_TEST_INDEX_LAG_MS="3000")
    b.start()
    connected(b.port).receipt("SEND", {"destination": "/queue/rl", "persistent": "true"}, "r", b"once")
    wait_for(lambda: http_json(b.http_port, "/api/status")["indexed_lsn"] >= 1, timeout=30, what="the send indexed")
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "c", "destination": "/queue/rl", "ack": "auto"})
    wait_for(lambda: http_json(b.http_port, "/api/status")["lsn"] >= 2, timeout=30, what="the dequeue journaled")
    c.sock.close()  # its MESSAGE still held: given back
    wait_for(lambda: http_json(b.http_port, "/api/status")["lsn"] >= 3, timeout=30, what="the give-back journaled")
    wait_for(lambda: http_json(b.http_port, "/api/status")["durable_lsn"] >= 3, timeout=30, what="both written")
    assert http_json(b.http_port, "/api/status")["indexed_lsn"] < 3, "the index caught up: nothing left to replay"
    b.kill()
    b.env = None
    b.restart()
    assert "applied to the index at start" in b.log_since_start()
    assert [f.body for f in drain(b.port, "/queue/rl")] == [b"once"]


def log_digest(b):
    """What the store's log segments hold (their size and time stamps do
    not tell: they are written ahead with zeros)."""
    d = os.path.join(b.dir, "data", "store", "log")
    h = hashlib.sha256()
    for f in sorted(os.listdir(d)):
        if f.endswith(".log"):
            with open(os.path.join(d, f), "rb") as fh:
                h.update(fh.read())
    return h.digest()


def test_an_unwaited_ack_is_journaled_within_ack_delay(broker_factory):
    """An ACK without a receipt, and nothing after it: the loop journals
    it once store.ack_delay has passed, though nothing else wakes it (the
    broker's periodic timers are set far off, and until the log changes
    the test only reads the log's files), so kill -9 then does not bring
    the message back."""
    b = broker_factory({"store.ack_delay": "200ms", "http.rate_interval": "60s",
                        "broker.expiry_check_interval": "1h"})
    consumer = connected(b.port)
    consumer.receipt("SUBSCRIBE", {"id": "c", "destination": "/queue/late", "ack": "client-individual"}, "sub")
    connected(b.port).receipt("SEND", {"destination": "/queue/late", "persistent": "true"}, "r", b"once")
    f = consumer.recv()
    assert f.body == b"once"
    # the delivery mark was written before the MESSAGE left; now the log is still
    before = log_digest(b)
    consumer.send("ACK", {"id": f["ack"]})
    deadline = time.time() + 30
    while log_digest(b) == before:
        assert time.time() < deadline, "the ACK was not journaled (store.ack_delay is 200ms)"
        time.sleep(0.05)
    # the loop has appended it; the kill waits until the writer is done with it
    wait_written(b)
    b.kill()
    b.restart()
    assert drain(b.port, "/queue/late", first=1.0) == [], "an ACK journaled before kill -9 came undone"


def test_a_graceful_disconnect_journals_its_acks(broker_factory):
    """ACKs without receipts, then DISCONNECT with a receipt (STOMP's
    graceful close): the acks go to the store then, not store.ack_delay
    (long here) later, so kill -9 after it does not bring them back."""
    b = broker_factory({"store.ack_delay": "10s"})
    consumer = connected(b.port)
    consumer.receipt("SUBSCRIBE", {"id": "c", "destination": "/queue/bye", "ack": "client-individual"}, "sub")
    producer = connected(b.port)
    for i in range(3):
        producer.receipt("SEND", {"destination": "/queue/bye", "persistent": "true"}, "r%d" % i, b"%d" % i)
    for i in range(3):
        f = consumer.recv()
        consumer.send("ACK", {"id": f["ack"]})
    consumer.receipt("DISCONNECT", {}, "bye")
    wait_written(b)
    b.kill()
    b.restart()
    assert drain(b.port, "/queue/bye", first=1.0) == [], "acks sent before a receipted DISCONNECT came undone"


@pytest.mark.parametrize("end", ["bad frame", "half-close"])
def test_receipts_of_stored_sends_come_before_the_end(broker_factory, end):
    """Persistent SENDs pipelined with receipts, then a bad frame (or the
    client's half-close, as nc does at the end of its input): the RECEIPTs,
    which wait for the store (slow here: every group waits
    STOMPD_TEST_WRITE_DELAY_MS), all come first, then the ERROR (or the
    end). Before, the ERROR or the close went at once and those RECEIPTs
    never came, though their messages were stored."""
    b = broker_factory({}, start=False)
    b.env = dict(os.environ, STOMPD_TEST_WRITE_DELAY_MS="200")
    b.start()
    c = connected(b.port)
    for i in range(20):
        c.send("SEND", {"destination": "/queue/tail", "persistent": "true", "receipt": "r%d" % i}, b"%d" % i)
    if end == "bad frame":
        c.sock.sendall(b"BOGUS\nreceipt:bad\n\n\0SEND\ndestination:/queue/tail\n\nnever read\0")
    else:
        c.sock.shutdown(socket.SHUT_WR)
    got = c.recv_all(20, timeout=30)
    assert [(f.command, f.get("receipt-id")) for f in got] == [("RECEIPT", "r%d" % i) for i in range(20)]
    if end == "bad frame":
        assert c.expect_error("unknown command")["receipt-id"] == "bad"
    else:
        c.expect_closed()
    assert [m.body for m in drain(b.port, "/queue/tail")] == [b"%d" % i for i in range(20)]


@pytest.mark.parametrize("end", ["bad frame", "half-close"])
def test_a_deferred_end_waits_for_receipts_no_longer_than_the_linger(broker_factory, end):
    """A master without its quorum may never answer a SEND (here
    store.quorum_timeout = 0: it waits for ever). The ERROR for a later bad
    frame, or the close after the client's half-close, waits for that
    RECEIPT 5 s at most, then goes without it: before, the connection (and
    its slot) stayed as long as the quorum was lost, and bytes after the
    bad frame kept its heart-beat alive."""
    b = broker_factory(replicated("m", free_port(), "master", store__replicas="3", store__quorum_timeout="0"))
    # the bad frame's client promises heart-beats it never sends: the bytes
    # left after the bad frame must not pass for them
    c = connected(b.port, headers={"heart-beat": "500,0"} if end == "bad frame" else None)
    c.send("SEND", {"destination": "/queue/noquorum", "persistent": "true", "receipt": "r"}, b"x")
    t0 = time.time()
    if end == "bad frame":
        c.sock.sendall(b"BOGUS\nreceipt:bad\n\n\0SEND\ndestination:/queue/noquorum\n\nnever read\0")
        f = c.recv(timeout=30)
        assert f.command == "ERROR" and f["receipt-id"] == "bad" and "unknown command" in f["message"], f
        c.expect_closed(timeout=10)
    else:
        c.sock.shutdown(socket.SHUT_WR)
        c.expect_closed(timeout=30)
    assert 4.0 <= time.time() - t0, "it did not wait for the RECEIPT"
    assert http_json(b.http_port, "/api/counters")["connections"] == 0


def test_non_persistent_gone_persistent_kept(broker_factory):
    b = broker_factory()
    p = connected(b.port)
    p.receipt("SEND", {"destination": "/queue/mix"}, "r1", b"transient")
    p.receipt("SEND", {"destination": "/queue/mix", "persistent": "true"}, "r2", b"durable")
    b.kill()
    b.restart()
    got = drain(b.port, "/queue/mix")
    assert [m.body for m in got] == [b"durable"]
    assert got[0]["persistent"] == "true"


def test_clean_restart_keeps_order_priority_and_headers(broker_factory):
    b = broker_factory()
    p = connected(b.port)
    for i, prio in enumerate([4, 9, 4, 1]):
        p.send("SEND", {"destination": "/queue/order", "persistent": "true", "priority": str(prio),
                        "x-i": str(i), "weird:hdr": "a\nb"}, b"%d" % i)
    p.receipt("DISCONNECT", {}, "bye")
    assert b.stop() == 0
    b.restart()
    got = drain(b.port, "/queue/order")
    assert [m.body for m in got] == [b"1", b"0", b"2", b"3"]
    assert [m["x-i"] for m in got] == ["1", "0", "2", "3"]
    assert got[0]["weird:hdr"] == "a\nb"
    ids = [m["message-id"] for m in got]
    assert len(set(ids)) == 4


def test_receipt_means_durable_under_local_mem_too(broker_factory):
    b = broker_factory({"store.sync": "local_mem"})
    p = connected(b.port)
    for i in range(50):
        p.receipt("SEND", {"destination": "/queue/mem", "persistent": "true"}, "r%d" % i, b"%d" % i)
    b.kill()
    b.restart()
    assert len(drain(b.port, "/queue/mem")) == 50


def test_durable_subscription_survives_restart(broker_factory):
    b = broker_factory()
    s = connected(b.port, headers={"client-id": "app"})
    s.receipt("SUBSCRIBE", {"id": "1", "destination": "/topic/d", "activemq.subscriptionName": "keep",
                            "selector": "n > 1"}, "sub")
    s.close()
    p = connected(b.port)
    for i in range(4):
        p.receipt("SEND", {"destination": "/topic/d", "persistent": "true", "n": str(i)}, "r%d" % i, b"%d" % i)
    b.kill()
    b.restart()
    s = connected(b.port, headers={"client-id": "app"})
    s.send("SUBSCRIBE", {"id": "1", "destination": "/topic/d", "activemq.subscriptionName": "keep",
                         "selector": "n > 1"})
    assert [m.body for m in s.recv_all(2)] == [b"2", b"3"]
    s.expect_nothing()
    # destroying it is durable too
    s.receipt("UNSUBSCRIBE", {"id": "1", "activemq.subscriptionName": "keep"}, "gone")
    p = connected(b.port)
    p.receipt("SEND", {"destination": "/topic/d", "persistent": "true", "n": "9"}, "r", b"late")
    b.kill()
    b.restart()
    s = connected(b.port, headers={"client-id": "app"})
    s.send("SUBSCRIBE", {"id": "1", "destination": "/topic/d", "activemq.subscriptionName": "keep"})
    s.expect_nothing()


def test_a_durable_subscription_with_the_longest_names_survives_restart(broker_factory):
    """client-id and durable name at their 512-byte bound: the backlog's
    store keys are read back (longer ones, refused now, were not: a
    receipted message was lost at the restart)."""
    b = broker_factory()
    cid, name = "c" * 512, "n" * 512
    s = connected(b.port, headers={"client-id": cid})
    s.receipt("SUBSCRIBE", {"id": "1", "destination": "/topic/longest", "activemq.subscriptionName": name}, "sub")
    s.close()
    p = connected(b.port)
    p.receipt("SEND", {"destination": "/topic/longest", "persistent": "true"}, "r", b"kept")
    for stop in (b.kill, b.stop):
        stop()
        b.restart()
        s = connected(b.port, headers={"client-id": cid})
        s.send("SUBSCRIBE", {"id": "1", "destination": "/topic/longest", "activemq.subscriptionName": name,
                             "ack": "client-individual"})
        assert s.recv().body == b"kept"
        s.close()


def test_transaction_is_all_or_nothing(broker_factory):
    b = broker_factory()
    p = connected(b.port)
    p.send("BEGIN", {"transaction": "t1"})
    for i in range(5):
        p.send("SEND", {"destination": "/queue/tx", "persistent": "true", "transaction": "t1"}, b"c%d" % i)
    p.receipt("COMMIT", {"transaction": "t1"}, "committed")
    p.send("BEGIN", {"transaction": "t2"})
    for i in range(5):
        p.send("SEND", {"destination": "/queue/tx", "persistent": "true", "transaction": "t2"}, b"u%d" % i)
    p.receipt("SEND", {"destination": "/queue/other", "persistent": "true"}, "sync", b"x")
    b.kill()
    b.restart()
    assert [m.body for m in drain(b.port, "/queue/tx")] == [b"c%d" % i for i in range(5)]


def test_acked_in_transaction_stays_acked(broker_factory):
    b = broker_factory()
    p = connected(b.port)
    for i in range(3):
        p.receipt("SEND", {"destination": "/queue/txa", "persistent": "true"}, "r%d" % i, b"%d" % i)
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/txa", "ack": "client-individual"})
    ms = c.recv_all(3)
    c.send("BEGIN", {"transaction": "t"})
    c.send("ACK", {"id": ms[0]["ack"], "transaction": "t"})
    c.send("ACK", {"id": ms[2]["ack"], "transaction": "t"})
    c.receipt("COMMIT", {"transaction": "t"}, "c")
    b.kill()
    b.restart()
    got = drain(b.port, "/queue/txa")
    assert [m.body for m in got] == [b"1"] and got[0]["redelivered"] == "true"


def test_dead_letters_survive_restart(broker_factory):
    b = broker_factory({"broker.max_redeliveries": "0"})
    p = connected(b.port)
    p.receipt("SEND", {"destination": "/queue/bad", "persistent": "true"}, "r", b"poison")
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/bad", "ack": "client-individual"})
    m = c.recv()
    c.receipt("NACK", {"id": m["ack"]}, "n")
    b.kill()
    b.restart()
    assert drain(b.port, "/queue/bad", first=1.0) == []
    dl = drain(b.port, "/queue/ActiveMQ.DLQ")
    assert [m.body for m in dl] == [b"poison"]
    assert dl[0]["original-destination"] == "/queue/bad"


def test_second_broker_on_same_data_dir_refuses(broker_factory):
    a = broker_factory()
    other = Broker({"broker.data_dir": a.settings["broker.data_dir"]})
    try:
        other.start(wait=False)
        rc = other.proc.wait(timeout=20)
        assert rc == 1
        assert "in use by another process" in other.log()
        other.proc = None
        other.logf.close()
    finally:
        other.cleanup()
    # the first one is undisturbed
    p = connected(a.port)
    p.receipt("SEND", {"destination": "/queue/x", "persistent": "true"}, "ok", b"x")


def test_corrupt_store_refuses_to_start(broker_factory):
    b = broker_factory()
    p = connected(b.port)
    p.receipt("SEND", {"destination": "/queue/c", "persistent": "true"}, "ok", b"x")
    assert b.stop() == 0
    store = os.path.join(b.settings["broker.data_dir"], "store", "index")
    current = open(os.path.join(store, "CURRENT")).read().strip()
    with open(os.path.join(store, current), "r+b") as f:
        f.write(b"garbage garbage garbage garbage garbage garbage garbage")
    b.start(wait=False)
    assert "cannot open the store" in exited_with_1(b)


def test_an_index_that_lost_its_current_file_is_set_aside_whole(broker_factory):
    """An index that lost its CURRENT file was opened as a new one: LevelDB
    deleted the old tables and its log, and what a repair could have saved
    was gone, even where the log could not rebuild it (helper-113). It is
    now moved aside whole, and a new one rebuilt from a whole log."""
    b = broker_factory()
    p = connected(b.port)
    for i in range(50):
        p.receipt("SEND", {"destination": "/queue/c", "persistent": "true"}, "r%d" % i, b"%d" % i)
    assert b.stop() == 0
    store = os.path.join(b.settings["broker.data_dir"], "store")
    index = os.path.join(store, "index")
    os.remove(os.path.join(index, "CURRENT"))
    before = sorted(os.listdir(index))
    assert any(f.endswith((".ldb", ".log")) for f in before), before
    b.start()
    log = b.log_since_start()
    assert "lost its CURRENT file: moved to" in log and "its index was missing: rebuilding it from the log" in log, \
        log[-2000:]
    aside = [d for d in os.listdir(store) if d.startswith("index.lost-")]
    assert len(aside) == 1 and sorted(os.listdir(os.path.join(store, aside[0]))) == before
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/c"})
    assert [c.recv().body for _ in range(50)] == [b"%d" % i for i in range(50)]


def test_log_that_lost_its_tail_refuses_to_start(broker_factory):
    """The store's log is the record of what was acknowledged: a log cut
    shorter than its index says (a truncated or lost file) must not be
    served as if nothing were missing. The broker refuses to start and
    says how to repair."""
    b = broker_factory()
    p = connected(b.port)
    for i in range(20):
        p.receipt("SEND", {"destination": "/queue/t", "persistent": "true"}, "r%d" % i, b"x" * 100)
    assert b.stop() == 0
    logdir = os.path.join(b.settings["broker.data_dir"], "store", "log")
    last = sorted(os.listdir(logdir))[-1]
    path = os.path.join(logdir, last)
    os.truncate(path, os.path.getsize(path) // 2)
    b.start(wait=False)
    log = exited_with_1(b)
    assert "missing part of its log" in log and "from a replica" in log, log[-2000:]


@pytest.mark.parametrize("damage", ["lost", "cut"])
def test_a_lost_older_segment_with_live_messages_refuses_to_start(broker_factory, damage):
    """Only the segment at the index's position was checked: one lost or
    cut short before it (its messages still queued) let the node start
    and serve its queue without them, an error line for each
    (helper-113). The start is refused, naming the segment; segments with
    nothing live (removed as they should be) are no reason to refuse."""
    b = broker_factory({"store.segment_size": "64KiB"})
    p = connected(b.port)
    for i in range(400):
        p.receipt("SEND", {"destination": "/queue/lost", "persistent": "true"}, "r%d" % i, b"x" * 300)
    p.close()
    # the first segment's messages consumed: it goes, and the start is fine
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/lost", "ack": "client-individual"})
    for i in range(100):
        f = c.recv(timeout=10)
        c.send("ACK", {"id": f["ack"]})
    c.send("DISCONNECT", {"receipt": "bye"})
    while c.recv(timeout=10).command != "RECEIPT":
        pass
    c.close()
    assert b.stop() == 0
    logdir = os.path.join(b.settings["broker.data_dir"], "store", "log")
    segs = sorted(os.listdir(logdir))
    assert len(segs) >= 3, segs
    b.start()
    assert b.stop() == 0
    segs = sorted(os.listdir(logdir))
    victim = os.path.join(logdir, segs[-2])
    if damage == "lost":
        os.unlink(victim)
    else:
        os.truncate(victim, 20000)
    b.start(wait=False)
    log = exited_with_1(b)
    assert segs[-2] in log and "from a replica" in log, log[-2000:]
    assert ("missing log segment" if damage == "lost" else "missing part of its log") in log, log[-2000:]


def test_lost_index_is_rebuilt_from_a_whole_log_and_refused_otherwise(broker_factory):
    """LevelDB holds only the index: when it is lost and the log still holds
    the whole history, the index is rebuilt from it (nothing lost, durable
    subscriptions and delivery counts included). When older segments were
    removed already, the broker refuses to start and says how to repair."""
    b = broker_factory({"store.segment_size": "64KiB"})
    p = connected(b.port, headers={"client-id": "keeper"})
    p.receipt("SUBSCRIBE", {"id": "d", "destination": "/topic/t", "activemq.subscriptionName": "sub"}, "s")
    p.receipt("UNSUBSCRIBE", {"id": "d"}, "u")          # inactive: the topic keeps its messages for it
    for i in range(20):
        p.receipt("SEND", {"destination": "/queue/q", "persistent": "true"}, "r%d" % i, b"%d" % i)
        p.receipt("SEND", {"destination": "/topic/t", "persistent": "true"}, "t%d" % i, b"t%d" % i)
    p.close()
    assert b.stop() == 0
    index = os.path.join(b.settings["broker.data_dir"], "store", "index")
    shutil.rmtree(index)
    b.start()
    assert "its index was missing: rebuilding it from the log" in b.log_since_start()
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/q"})
    assert [c.recv().body for _ in range(20)] == [b"%d" % i for i in range(20)]
    d = connected(b.port, headers={"client-id": "keeper"})
    d.send("SUBSCRIBE", {"id": "d", "destination": "/topic/t", "activemq.subscriptionName": "sub"})
    assert [d.recv().body for _ in range(20)] == [b"t%d" % i for i in range(20)]
    # acknowledged a lot more: the first segments go, and with them the
    # history an index could be rebuilt from
    for i in range(400):
        c.send("SEND", {"destination": "/queue/churn", "persistent": "true"}, b"c" * 1000)
    c.receipt("SEND", {"destination": "/queue/churn", "persistent": "true"}, "last", b"")
    s = connected(b.port)
    s.send("SUBSCRIBE", {"id": "2", "destination": "/queue/churn"})
    for _ in range(401):
        s.recv()
    logdir = os.path.join(b.settings["broker.data_dir"], "store", "log")
    deadline = time.time() + 30
    while min(os.listdir(logdir)) == "00000001.log":
        assert time.time() < deadline, "no segment was removed"
        time.sleep(0.2)
    d.close()
    c.close()
    s.close()
    assert b.stop() == 0
    shutil.rmtree(index)
    b.start(wait=False)
    log = exited_with_1(b)
    assert "has lost its index" in log and "cannot be rebuilt" in log and "from a replica" in log, log[-2000:]


def start_with_a_file_size_limit(b, size=256 * 1024, env=None):
    """b started with RLIMIT_FSIZE size: its store's writes fail soon."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    b.logf = open(b.log_path, "ab")
    b.proc = subprocess.Popen(b.command(), stdout=b.logf, stderr=subprocess.STDOUT, cwd=b.dir,
                              preexec_fn=limit, env=env)
    from stompd_test import wait_port
    assert wait_port(b.port)


def test_write_failure_refuses_and_stops(broker_factory):
    """A file-size limit makes LevelDB's writes fail: the producers waiting
    get ERROR (nothing unstored is receipted) and the broker stops."""
    b = broker_factory(start=False)
    start_with_a_file_size_limit(b)
    p = connected(b.port)
    receipted = 0
    err = None
    for i in range(400):
        try:
            p.send("SEND", {"destination": "/queue/full", "persistent": "true", "receipt": "r%d" % i},
                   b"z" * 4096)
            f = p.recv(timeout=10)
        except (OSError, ConnectionError):
            break
        if f.command == "ERROR":
            err = f
            break
        receipted += 1
    assert err is not None, "no ERROR after %d receipts" % receipted
    assert "not stored" in err["message"]
    assert "the store failed" in exited_with_1(b)
    # what was receipted is there after a restart without the limit
    b.restart()
    got = drain(b.port, "/queue/full")
    assert len(got) >= receipted


@pytest.mark.parametrize("node", ["standalone", "master"])
@pytest.mark.parametrize("then", ["stop", "kill"])
def test_write_failure_reaches_a_client_whose_deliveries_wait(broker_factory, then, node):
    """A client that consumes its own persistent messages (auto-ack: each
    MESSAGE waits until its dequeue is written) when the store's writes
    fail: its ERROR is not held behind what waited for the failed entry
    until the broker stops: it is dropped, not sent (a master whose sync
    modes wait for no slave would send it had a slave been sent the
    entry; this one has none). Then, whether the broker stops by itself or is killed
    (-9) before it does, no stored message is lost (each was delivered, or
    is there after a restart), and no send it was told was not stored
    comes back: the failed write is cut from the log. No delivered
    message comes back either."""
    settings = replicated("m", free_port(), "master", store__sync="local_disk") if node == "master" else None
    b = broker_factory(settings, start=False)
    # room for a few hundred messages first (their deliveries with them)
    start_with_a_file_size_limit(b, 2 << 20, env=dict(os.environ, STOMPD_TEST_FAIL_STOP_MS="5000"))
    receipted, delivered, err, t = consume_own_until_error(b.port, "/queue/loop", 4096)
    if then == "kill":
        b.kill()
    t.join()
    failed = the_failed_send(err, receipted, delivered)
    if then == "stop":
        assert "the store failed" in exited_with_1(b)
    # no slave was sent the entries (a master sends what one may have)
    left = nothing_stored_lost_or_delivered_again(b, delivered, failed)
    assert not [i for i in left if i >= failed], "sends told they were not stored came back"


def nothing_stored_lost_or_delivered_again(b, delivered, failed, dest="/queue/loop"):
    """b restarted: every send before the failed one was stored (receipted
    or not: a RECEIPT held behind a cut delivery went with it), so each
    was delivered or is queued, and no delivered one is queued again.
    Returns the numbers queued."""
    b.restart()
    left = {int(m.body.split(b":")[0]) for m in drain(b.port, dest)}
    stored = set(range(failed))
    assert stored <= delivered | left, "stored, lost: %s" % sorted(stored - delivered - left)
    assert not delivered & left, "delivered, yet queued again: %s" % sorted(delivered & left)
    return left


@pytest.mark.parametrize("node", ["standalone", "master"])
def test_sync_failure_loses_nothing_and_brings_back_no_delivery(broker_factory, node):
    """The log's fdatasync fails (STOMPD_TEST_FAIL_SYNC_AFTER: a disk that
    reports an I/O error) under a client consuming its own persistent
    messages: the client whose send waited for it gets ERROR "not stored"
    and the broker stops. The failed group is not cut from the log: the
    loop was told it was written before its fdatasync, and auto-ack
    MESSAGEs whose dequeues it holds are gone. So after a restart no
    stored message is lost and no delivered one comes back (a send told
    it was not stored may: what the kernel kept, it kept)."""
    settings = replicated("m", free_port(), "master", store__sync="local_disk") if node == "master" else None
    b = broker_factory(settings, start=False)
    b.env = dict(os.environ, STOMPD_TEST_FAIL_SYNC_AFTER="20", STOMPD_TEST_FAIL_STOP_MS="5000")
    b.start()
    receipted, delivered, err, t = consume_own_until_error(b.port, "/queue/loop", 512)
    t.join()
    failed = the_failed_send(err, receipted, delivered)
    log = exited_with_1(b)
    assert "the store failed" in log and "fdatasync of the log failed" in log, log[-2000:]
    b.env = None
    nothing_stored_lost_or_delivered_again(b, delivered, failed)


def test_no_delivery_once_the_store_failed(broker_factory):
    """In the moment between a store failure and the stop, the broker
    delivers nothing more: a delivery's dequeue could not be written, so
    its MESSAGE, and what the client is told after it, would wait for ever.
    The client's next send gets its ERROR; the messages stay queued. (The
    moment is 5 s here, STOMPD_TEST_FAIL_STOP_MS, for a loaded machine.)"""
    b = broker_factory(start=False)
    start_with_a_file_size_limit(b, 2 << 20, env=dict(os.environ, STOMPD_TEST_FAIL_STOP_MS="5000"))
    c = connected(b.port)
    for i in range(5):
        c.receipt("SEND", {"destination": "/queue/kept", "persistent": "true"}, "k%d" % i, b"%d" % i)
    p = connected(b.port)
    for i in range(1000):
        p.send("SEND", {"destination": "/queue/flood", "persistent": "true", "receipt": "f%d" % i}, b"f" * 8192)
        if p.recv(timeout=30).command == "ERROR":
            break
    c.send("SUBSCRIBE", {"id": "late", "destination": "/queue/kept", "ack": "auto"})
    c.send("SEND", {"destination": "/queue/other", "persistent": "true", "receipt": "after"}, b"x")
    f = c.recv(timeout=10)
    assert f.command == "ERROR" and f["receipt-id"] == "after", f
    assert "the store failed" in exited_with_1(b)
    b.restart()
    assert [m.body for m in drain(b.port, "/queue/kept")] == [b"%d" % i for i in range(5)]


def test_write_failure_tells_a_closing_client_whose_delivery_waits(broker_factory):
    """A client closing (its ERROR written) while its auto-ack MESSAGE
    waits for a dequeue that then fails to be written: the MESSAGE and
    the ERROR behind it are dropped, and it is told the store failed; the
    message stays queued. The writer is slow (STOMPD_TEST_WRITE_DELAY_MS
    before each write), so the failing write, a message larger than the
    file-size limit leaves room for, comes after the client's ERROR.
    Under load the writer may not take the first message before the big
    one is read, and both fail in one group: the setup is then made
    again."""
    for attempt in range(5):
        b = broker_factory(start=False)
        start_with_a_file_size_limit(b, 2 << 20, env=dict(os.environ, STOMPD_TEST_WRITE_DELAY_MS="1000"))
        x = connected(b.port)
        x.receipt("SUBSCRIBE", {"id": "c", "destination": "/queue/held", "ack": "auto"}, "sub")
        p = connected(b.port)
        p.send("SEND", {"destination": "/queue/held", "persistent": "true", "receipt": "r"}, b"once")
        p.send("SEND", {"destination": "/queue/big", "persistent": "true", "receipt": "big"}, b"b" * (3 << 20))
        # committed: x's MESSAGE is made, and waits a write delay for its dequeue
        first = p.recv(timeout=30)
        assert first["receipt-id"] == "r", first
        if first.command == "RECEIPT":
            break
        assert "the store failed" in exited_with_1(b)  # one group: again
    else:
        pytest.fail("the first message never had a group of its own")
    x.send_raw(b"BOGUS\n\n\0")
    f = x.recv(timeout=30)
    assert f.command == "ERROR" and f["message"] == "store failed", f
    assert "deliveries waiting for it were not sent" in f.body.decode(), f
    x.expect_closed()
    err = p.recv(timeout=30)
    assert err.command == "ERROR" and err["receipt-id"] == "big", err
    assert "the store failed" in exited_with_1(b)
    b.restart()
    assert [m.body for m in drain(b.port, "/queue/held")] == [b"once"]
