"""Regressions found in review: each test failed before its fix."""
import base64
import http.client
import json
import signal
import socket
import struct
import threading
import time

from stompd_test import Client, FakeSlave, connected, free_port, replicated


def test_slave_ack_beyond_what_was_sent_does_not_count(broker_factory):
    """A returning node ACKs its old (divergent) position on WELCOME; the
    master must not count entries it never sent it."""
    repl = free_port()
    # the entry never commits: the stop need not wait store.stop_wait for it
    b = broker_factory(replicated("m", repl, "master", store__stop_wait="0"))
    fs = FakeSlave(repl, 0, 1000, 1)
    fs.start()
    time.sleep(0.5)
    p = connected(b.port)
    p.send("SEND", {"destination": "/queue/q", "persistent": "true", "receipt": "r"}, b"x")
    p.expect_nothing(1.5)


def test_dead_letter_copy_waits_for_its_commit(broker_factory):
    repl = free_port()
    b = broker_factory(replicated("m", repl, "master", broker__max_redeliveries="0"))
    fs = FakeSlave(repl, 0, 0, 0, ack_entries=True)
    fs.start()
    time.sleep(0.5)
    c1 = connected(b.port)
    c1.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/q", "ack": "client-individual"}, "s")
    p = connected(b.port)
    p.receipt("SEND", {"destination": "/queue/q", "persistent": "true"}, "r1", b"poison")
    m = c1.recv()
    dlq = connected(b.port)
    dlq.receipt("SUBSCRIBE", {"id": "d", "destination": "/queue/ActiveMQ.DLQ"}, "s")
    fs.ack_entries = False      # no quorum any more
    c1.send("NACK", {"id": m["ack"]})
    dlq.expect_nothing(1.5)     # the move is not committed: the copy is not visible
    fs.ack_entries = True
    # the next entry is acknowledged, and with it everything before
    p.send("SEND", {"destination": "/queue/other", "persistent": "true"}, b"nudge")
    assert dlq.recv(timeout=10).body == b"poison"


def test_broken_slave_socket_while_appending(broker_factory):
    """A slave's socket breaks while the master is not running; the next
    entry is shipped to it and the send fails: no use-after-free."""
    repl = free_port()
    b = broker_factory(replicated("m", repl, "master"))
    # which of the two ready events the loop handles first varies: repeat
    for i in range(4):
        fs = FakeSlave(repl, 0, 0, 0, node=b"fakeslave%04d" % i)
        fs.start()
        time.sleep(0.5)
        p = Client(b.port)
        p.connect()
        b.kill(signal.SIGSTOP)
        try:
            time.sleep(0.2)
            fs.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            fs.s.close()
            time.sleep(0.2)
            p.send("SEND", {"destination": "/queue/q", "persistent": "true"}, b"x")
            time.sleep(0.2)
        finally:
            b.kill(signal.SIGCONT)
        time.sleep(0.5)
        assert b.running()
    q = connected(b.port)
    q.send("SEND", {"destination": "/queue/np", "receipt": "r"}, b"y")
    assert q.recv().command == "RECEIPT"


def test_console_persistent_send_with_connection_close(broker):
    auth = base64.b64encode(b"admin:admin").decode()
    for _ in range(3):
        c = http.client.HTTPConnection("127.0.0.1", broker.http_port, timeout=5)
        c.request("POST", "/api/send", body=json.dumps({"destination": "/queue/c", "persistent": True}),
                  headers={"Authorization": "Basic " + auth, "Content-Type": "application/json",
                           "Connection": "close"})
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["durable"] is True
        c.close()
    assert broker.running()


def test_consumer_that_disconnects_does_not_dead_letter(broker_factory):
    b = broker_factory({"broker.max_redeliveries": "0"})
    p = connected(b.port)
    p.receipt("SEND", {"destination": "/queue/w"}, "r", b"work")
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/w", "ack": "client-individual"})
    assert c.recv().body == b"work"
    c.close()                       # lost, not NACKed
    time.sleep(0.2)
    d = connected(b.port)
    d.send("SUBSCRIBE", {"id": "1", "destination": "/queue/w"})
    m = d.recv()
    assert m.body == b"work" and m["redelivered"] == "true"


def test_paused_producer_is_not_dropped_for_missing_heartbeats(broker_factory):
    b = broker_factory({"broker.dest_memory_limit": "64KiB", "stomp.heartbeat_min": "100ms"})
    p = Client(b.port)
    p.connect("1.2", {"heart-beat": "300,0"})
    for i in range(40):
        p.send("SEND", {"destination": "/queue/full"}, b"z" * 4096)
    assert b.wait_log("producer paused")
    stop = threading.Event()

    def beat():                    # the client keeps its promise throughout
        while not stop.is_set():
            p.send_raw(b"\n")
            time.sleep(0.1)

    t = threading.Thread(target=beat, daemon=True)
    t.start()
    try:
        time.sleep(2.5)            # paused all along
        assert "no heart-beat" not in b.log()
        c = connected(b.port)
        c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/full"})
        assert len([c.recv() for _ in range(40)]) == 40
    finally:
        stop.set()
        t.join()


def test_transactions_are_flow_controlled(broker_factory):
    b = broker_factory({"broker.dest_memory_limit": "64KiB"})
    p = connected(b.port)
    committed = 0
    for i in range(30):
        p.send("BEGIN", {"transaction": "t%d" % i})
        p.send("SEND", {"destination": "/queue/tx", "transaction": "t%d" % i}, b"z" * 8192)
        p.send("COMMIT", {"transaction": "t%d" % i, "receipt": "c%d" % i})
        try:
            f = p.recv(timeout=0.3)
        except TimeoutError:
            break
        assert f.command == "RECEIPT"
        committed += 1
    assert committed < 30, "COMMITs into a full queue were never held"


def test_nothing_after_disconnect_is_processed(broker):
    p = connected(broker.port)
    p.send_raw(b"SEND\ndestination:/queue/before\npersistent:true\n\nfirst\0"
               b"DISCONNECT\nreceipt:bye\n\n\0"
               b"SEND\ndestination:/queue/after\n\nsent after DISCONNECT\0")
    assert p.recv().command == "RECEIPT"
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/after"})
    c.expect_nothing(0.5)
