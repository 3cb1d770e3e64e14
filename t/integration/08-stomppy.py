"""stomp.py (Debian's python3-stomp) at STOMP 1.0, 1.1 and 1.2."""
import threading
import time

import pytest
import stomp


class Collector(stomp.ConnectionListener):
    def __init__(self):
        self.messages = []
        self.errors = []
        self.receipts = []
        self.cv = threading.Condition()

    def on_message(self, frame):
        with self.cv:
            self.messages.append(frame)
            self.cv.notify_all()

    def on_error(self, frame):
        with self.cv:
            self.errors.append(frame)
            self.cv.notify_all()

    def on_receipt(self, frame):
        with self.cv:
            self.receipts.append(frame.headers["receipt-id"])
            self.cv.notify_all()

    def wait(self, n, timeout=5):
        with self.cv:
            self.cv.wait_for(lambda: len(self.messages) >= n, timeout)
        return self.messages


CLASSES = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_queue_round_trip(broker, version):
    conn = CLASSES[version]([("127.0.0.1", broker.port)])
    lst = Collector()
    conn.set_listener("c", lst)
    conn.connect("guest", "guest", wait=True)
    dest = "/queue/py-%s" % version
    if version == "1.0":
        conn.subscribe(destination=dest, ack="client-individual", id="s1")
    else:
        conn.subscribe(destination=dest, id="s1", ack="client-individual")
    for i in range(10):
        conn.send(dest, "hello %d" % i, headers={"x-n": str(i)}, receipt="r%d" % i)
    msgs = lst.wait(10)
    assert [m.body for m in msgs] == ["hello %d" % i for i in range(10)]
    assert [m.headers["x-n"] for m in msgs] == [str(i) for i in range(10)]
    for m in msgs:
        if version == "1.2":
            conn.ack(m.headers["ack"])
        elif version == "1.1":
            conn.ack(m.headers["message-id"], "s1")
        else:
            conn.ack(m.headers["message-id"])
    conn.disconnect(receipt="bye")
    assert not lst.errors
    # all acked: nothing comes back
    conn2 = CLASSES[version]([("127.0.0.1", broker.port)])
    l2 = Collector()
    conn2.set_listener("c", l2)
    conn2.connect(wait=True)
    conn2.subscribe(destination=dest, id="s2", ack="auto")
    time.sleep(0.3)
    assert l2.messages == []
    conn2.disconnect()


def test_topic_and_transaction(broker):
    rx = stomp.Connection12([("127.0.0.1", broker.port)])
    lst = Collector()
    rx.set_listener("c", lst)
    rx.connect(wait=True)
    rx.subscribe("/topic/py", id="t")
    time.sleep(0.1)
    tx = stomp.Connection12([("127.0.0.1", broker.port)])
    tx.connect(wait=True)
    t = tx.begin()
    tx.send("/topic/py", "in tx", transaction=t)
    time.sleep(0.2)
    assert lst.messages == []
    tx.commit(t)
    assert [m.body for m in lst.wait(1)] == ["in tx"]
    tx.disconnect()
    rx.disconnect()


def test_heartbeats_with_stomp_py(broker_factory):
    b = broker_factory({"stomp.heartbeat_min": "100ms"})
    # 1 s beats: stomp.py and the broker each allow half a period late,
    # room for a loaded machine's late wake-ups
    conn = stomp.Connection12([("127.0.0.1", b.port)], heartbeats=(1000, 1000))
    lst = Collector()
    conn.set_listener("c", lst)
    conn.connect(wait=True)
    conn.subscribe("/queue/hbpy", id="1")
    time.sleep(3.5)   # several heart-beat periods with no traffic
    assert conn.is_connected()
    conn.send("/queue/hbpy", "still")
    assert [m.body for m in lst.wait(1)] == ["still"]
    conn.disconnect()
