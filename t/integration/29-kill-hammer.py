"""The durable path under kill -9: 32 producers send persistent messages
with receipts (the writer commits them in groups) while two consumers
take and acknowledge them with receipts; the broker is killed at a random
point, restarted on its store, and the round begins again, 20 times.
Then the queue is drained. Every receipted SEND is delivered; a message
whose ACK was receipted never comes back; a message delivered more than
once is marked redelivered:true every time after the first; nothing
arrives that was never sent. Small bodies and a small window keep paging
and segment rotation in play."""
import random
import threading
import time

from stompd_test import Client

PRODUCERS = 32
ROUNDS = 20
QUEUE = "/queue/hammer"


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = set()          # every id a SEND went out for
        self.receipted = set()     # SEND receipted
        self.acked = set()         # ACK receipted
        self.deliveries = []       # (id, redelivered, round)
        self.seen = set()
        self.violations = []

    def delivered(self, mid, redelivered, rnd):
        with self.lock:
            if mid in self.acked:
                self.violations.append("%s delivered again after its ACK was receipted (round %d)" % (mid, rnd))
            if mid in self.seen and not redelivered:
                self.violations.append("%s delivered twice, the second time without redelivered (round %d)"
                                       % (mid, rnd))
            if mid not in self.sent:
                self.violations.append("%s delivered but never sent" % mid)
            self.seen.add(mid)
            self.deliveries.append((mid, redelivered, rnd))


def producer(port, k, rnd, ledger, stop):
    try:
        c = Client(port, timeout=10)
        c.connect()
    except (OSError, ConnectionError, AssertionError, TimeoutError):
        return
    n = 0
    try:
        while not stop.is_set():
            mid = "r%d-p%d-%d" % (rnd, k, n)
            n += 1
            with ledger.lock:
                ledger.sent.add(mid)
            c.send("SEND", {"destination": QUEUE, "persistent": "true", "receipt": mid, "mid": mid},
                   b"b" * random.randint(50, 1500))
            f = c.recv(timeout=10)
            if f.command != "RECEIPT" or f["receipt-id"] != mid:
                break
            with ledger.lock:
                ledger.receipted.add(mid)
    except (OSError, ConnectionError, TimeoutError):
        pass
    finally:
        c.close()


def consumer(port, k, rnd, ledger, stop):
    try:
        c = Client(port, timeout=10)
        c.connect()
        c.send("SUBSCRIBE", {"id": "s", "destination": QUEUE, "ack": "client-individual",
                             "activemq.prefetchSize": "50"})
    except (OSError, ConnectionError, AssertionError, TimeoutError):
        return
    pending = {}
    try:
        while not stop.is_set():
            try:
                f = c.recv(timeout=0.5)
            except TimeoutError:
                continue
            if f.command == "MESSAGE":
                mid = f["mid"]
                ledger.delivered(mid, f.get("redelivered") == "true", rnd)
                rid = "a-%s" % mid
                pending[rid] = mid
                c.send("ACK", {"id": f["ack"], "receipt": rid})
            elif f.command == "RECEIPT":
                mid = pending.pop(f["receipt-id"], None)
                if mid:
                    with ledger.lock:
                        ledger.acked.add(mid)
            else:
                break
    except (OSError, ConnectionError):
        pass
    finally:
        c.close()


def test_kill9_rounds_lose_no_receipted_message_and_mark_every_redelivery(broker_factory):
    b = broker_factory({"broker.queue_window": "64KiB", "store.segment_size": "256KiB",
                        "log.level": "info"})
    ledger = Ledger()
    rng = random.Random(20261202)
    for rnd in range(ROUNDS):
        stop = threading.Event()
        threads = [threading.Thread(target=producer, args=(b.port, k, rnd, ledger, stop)) for k in range(PRODUCERS)]
        threads += [threading.Thread(target=consumer, args=(b.port, k, rnd, ledger, stop)) for k in range(2)]
        for t in threads:
            t.start()
        # kill at a random point: after a random number of this round's
        # receipts (a count, not a time, so a slow machine hammers as much)
        before = len(ledger.receipted)
        target = before + 20 + rng.randint(0, 100)
        deadline = time.time() + 60
        while len(ledger.receipted) < target and time.time() < deadline:
            time.sleep(0.01)
        assert len(ledger.receipted) >= target, "round %d: %d receipts in 60 s" % (rnd, len(ledger.receipted) - before)
        time.sleep(rng.uniform(0.0, 0.05))
        b.kill()
        stop.set()
        for t in threads:
            t.join(30)
        b.start()
    # drain what is left
    c = Client(b.port, timeout=10)
    c.connect()
    c.send("SUBSCRIBE", {"id": "d", "destination": QUEUE, "ack": "auto"})
    drained = 0
    while True:
        try:
            # the first may wait for the restarted broker to read its backlog
            f = c.recv(timeout=3.0 if drained else 30.0)
        except TimeoutError:
            break
        drained += 1
        ledger.delivered(f["mid"], f.get("redelivered") == "true", ROUNDS)
    c.close()
    assert ledger.violations == [], ledger.violations[:20]
    delivered = {d[0] for d in ledger.deliveries}
    lost = ledger.receipted - delivered
    assert not lost, "%d receipted messages lost, e.g. %s" % (len(lost), sorted(lost)[:10])
    # the hammer hammered: each round's receipts before its kill (above),
    # and redeliveries after kills
    assert any(d[1] for d in ledger.deliveries)
    print("sent %d, receipted %d, acked %d, deliveries %d, redelivered %d" % (
        len(ledger.sent), len(ledger.receipted), len(ledger.acked), len(ledger.deliveries),
        sum(1 for d in ledger.deliveries if d[1])))
