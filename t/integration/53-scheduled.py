"""Scheduled delivery with ActiveMQ's headers: AMQ_SCHEDULED_DELAY never
delivers early, PERIOD and REPEAT deliver repeat+1 times at least a
period apart, a persistent scheduled message survives kill -9 (and a
non-persistent one does not), inside transactions and composites, paged
through a small scheduler window, and every bad header is an ERROR.
"Not early" is measured on the test's own clock: the broker's due time
is its arrival plus the delay, and it arrives after the test sent it."""
import base64
import http.client
import json
import random
import time

import pytest

from stompd_test import connected


def scheduler(b):
    c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=5)
    c.request("GET", "/api/scheduler?limit=5",
              headers={"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()})
    r = c.getresponse()
    data = r.read()
    c.close()
    assert r.status == 200, data
    return json.loads(data)


def subscriber(b, dest="/queue/later", sid="s", headers=None):
    c = connected(b.port)
    h = {"id": sid, "destination": dest}
    h.update(headers or {})
    c.receipt("SUBSCRIBE", h, "sub")
    return c


def recv_timed(c, timeout=20):
    f = c.recv(timeout=timeout)
    assert f.command == "MESSAGE", f
    return f, time.time()


def test_delay_is_never_early_and_strips_the_schedule(broker):
    c = subscriber(broker)
    p = connected(broker.port)
    sent = {}
    for body, delay in ((b"late", 1200), (b"early", 500), (b"durable", 800)):
        h = {"destination": "/queue/later", "AMQ_SCHEDULED_DELAY": str(delay), "x-keep": "me"}
        if body == b"durable":
            h["persistent"] = "true"
        sent[body] = (time.time(), delay)
        p.receipt("SEND", h, "r-" + body.decode(), body)
    got = []
    for _ in range(3):
        f, at = recv_timed(c)
        t0, delay = sent[f.body]
        assert at >= t0 + delay / 1000.0, "%s came %.3f s early" % (f.body, t0 + delay / 1000.0 - at)
        assert at < t0 + delay / 1000.0 + 10, "%s very late" % f.body
        # the copy has no schedule left, names its job, keeps the rest
        assert not any(k.startswith("AMQ_SCHEDULED_") for k, _ in f.headers), f
        assert f["scheduledJobId"] == f["message-id"]  # a one-shot keeps its id
        assert f["x-keep"] == "me"
        got.append(f.body)
    assert got == [b"early", b"durable", b"late"]


def test_period_and_repeat(broker):
    c = subscriber(broker)
    p = connected(broker.port)
    t0 = time.time()
    p.receipt("SEND", {"destination": "/queue/later", "AMQ_SCHEDULED_DELAY": "300", "AMQ_SCHEDULED_PERIOD": "400",
                       "AMQ_SCHEDULED_REPEAT": "3", "persistent": "true"}, "r", b"tick")
    ids = set()
    job = None
    for k in range(4):
        f, at = recv_timed(c)
        # the k-th delivery is due at least delay + k periods after the SEND
        assert at >= t0 + 0.3 + 0.4 * k, "delivery %d early by %.3f s" % (k, t0 + 0.3 + 0.4 * k - at)
        ids.add(f["message-id"])
        job = job or f["scheduledJobId"]
        assert f["scheduledJobId"] == job
    assert len(ids) == 4, "each delivery of a repeating job has its own message-id"
    c.expect_nothing(1.0)  # repeat 3 = four deliveries, no more


def test_bad_headers_are_errors(broker):
    cases = [
        ({"AMQ_SCHEDULED_DELAY": "soon"}, "AMQ_SCHEDULED_DELAY must be an integer"),
        ({"AMQ_SCHEDULED_DELAY": "-5"}, "AMQ_SCHEDULED_DELAY must be an integer"),
        ({"AMQ_SCHEDULED_PERIOD": "1.5"}, "AMQ_SCHEDULED_PERIOD must be an integer"),
        ({"AMQ_SCHEDULED_REPEAT": "-2"}, "AMQ_SCHEDULED_REPEAT must be an integer"),
        ({"AMQ_SCHEDULED_REPEAT": "-1"}, "needs AMQ_SCHEDULED_PERIOD"),
        # a CRON too: each match's series would be dropped, delivering
        # nothing, minute after minute (helper-80)
        ({"AMQ_SCHEDULED_CRON": "* * * * *", "AMQ_SCHEDULED_REPEAT": "-1"}, "needs AMQ_SCHEDULED_PERIOD"),
        ({"AMQ_SCHEDULED_CRON": "61 * * * *"}, "cron minute field"),
        ({"AMQ_SCHEDULED_CRON": "0 0 31 2 *"}, "never matches"),
    ]
    for h, says in cases:
        c = connected(broker.port)
        hs = {"destination": "/queue/bad", "receipt": "r"}
        hs.update(h)
        c.send("SEND", hs, b"x")
        f = c.expect_error("invalid scheduling header")
        assert says in f.body.decode(), (h, f)
        assert f["receipt-id"] == "r"
    # in a transaction the SEND is refused when it arrives
    c = connected(broker.port)
    c.send("BEGIN", {"transaction": "t"})
    c.send("SEND", {"destination": "/queue/bad", "transaction": "t", "AMQ_SCHEDULED_DELAY": "x"}, b"x")
    c.expect_error("invalid scheduling header")
    # delay 0 is no schedule: delivered at once, as sent
    c = subscriber(broker, "/queue/now")
    p = connected(broker.port)
    p.receipt("SEND", {"destination": "/queue/now", "AMQ_SCHEDULED_DELAY": "0"}, "r", b"now")
    f = c.recv(timeout=2)
    assert f.body == b"now" and f.get("scheduledJobId") is None


def test_persistent_survives_kill9_non_persistent_does_not(broker_factory):
    b = broker_factory()
    p = connected(b.port)
    t0 = time.time()
    p.receipt("SEND", {"destination": "/queue/later", "persistent": "true", "AMQ_SCHEDULED_DELAY": "2500"}, "r1",
              b"kept")
    p.receipt("SEND", {"destination": "/queue/later", "AMQ_SCHEDULED_DELAY": "2500"}, "r2", b"lost")
    b.kill()
    b.restart()
    c = subscriber(b)
    f, at = recv_timed(c)
    assert f.body == b"kept"
    assert at >= t0 + 2.5, "early by %.3f s" % (t0 + 2.5 - at)
    c.expect_nothing(1.0)
    # fired once: gone after another crash
    b.kill()
    b.restart()
    c = subscriber(b)
    c.expect_nothing(1.0)


def test_scheduled_inside_transactions_and_composites(broker):
    c1 = subscriber(broker, "/queue/s1", "a")
    c2 = subscriber(broker, "/topic/s2", "b")
    p = connected(broker.port)
    p.send("BEGIN", {"transaction": "dropped"})
    p.send("SEND", {"destination": "/queue/s1", "transaction": "dropped", "AMQ_SCHEDULED_DELAY": "300"}, b"no")
    p.receipt("ABORT", {"transaction": "dropped"}, "ab")
    t0 = time.time()
    p.send("BEGIN", {"transaction": "t"})
    p.send("SEND", {"destination": "/queue/s1,/topic/s2", "transaction": "t", "persistent": "true",
                    "AMQ_SCHEDULED_DELAY": "700"}, b"both")
    p.receipt("COMMIT", {"transaction": "t"}, "c")
    for c, dest in ((c1, "/queue/s1"), (c2, "/topic/s2")):
        f, at = recv_timed(c)
        assert (f.body, f["destination"]) == (b"both", dest)
        assert at >= t0 + 0.7
    c1.expect_nothing(0.5)


def test_expiry_counts_from_the_delivery(broker):
    # expires before its delay is over: ActiveMQ keeps the time to live
    # from when it fires, so it is still delivered
    c = subscriber(broker)
    p = connected(broker.port)
    now = int(time.time() * 1000)
    p.receipt("SEND", {"destination": "/queue/later", "AMQ_SCHEDULED_DELAY": "1000", "expires": str(now + 3000)},
              "r", b"ttl")
    f, _ = recv_timed(c)
    assert f.body == b"ttl" and int(f["expires"]) > now + 3000


def test_duplicate_scheduled_sends_schedule_once(broker):
    c = subscriber(broker)
    p = connected(broker.port)
    for i in range(2):
        p.receipt("SEND", {"destination": "/queue/later", "persistent": "true", "AMQ_SCHEDULED_DELAY": "300",
                           "_AMQ_DUPL_ID": "once"}, "r%d" % i, b"once")
    f, _ = recv_timed(c)
    assert f.body == b"once"
    c.expect_nothing(1.0)


def test_a_small_window_pages_many_scheduled_messages_in_due_order(broker_factory):
    # 4 KiB of scheduled messages in memory: most stay in the store and
    # are read back as their time nears, after a restart too
    b = broker_factory({"broker.scheduler_window": "4KiB"})
    p = connected(b.port)
    n = 200
    delays = list(range(2000, 2000 + 20 * n, 20))
    random.Random(7).shuffle(delays)
    sent = {}
    first = time.time()
    for i, d in enumerate(delays):
        body = b"m%03d" % i
        sent[body] = (time.time(), d)
        p.send("SEND", {"destination": "/queue/paged", "persistent": "true", "AMQ_SCHEDULED_DELAY": str(d)},
               body + b"x" * 200)
    p.receipt("DISCONNECT", {}, "bye")
    # every SEND arrived between `first` and now: a due time is its delay
    # after a moment of that span
    span = time.time() - first
    assert b.stop() == 0
    b.restart()
    st = scheduler(b)
    assert st["scheduled"] == n
    assert st["in_memory"] < n // 4, st  # the window, not the backlog
    c = subscriber(b, "/queue/paged", headers={"activemq.prefetchSize": "1000"})
    delays_seen = []
    for _ in range(n):
        f, at = recv_timed(c, timeout=30)
        t0, d = sent[f.body[:4]]
        assert at >= t0 + d / 1000.0, "%s early by %.3f s" % (f.body[:4], t0 + d / 1000.0 - at)
        delays_seen.append(d)
    # in due order: a message may come before one with a shorter delay
    # only by what the arrival times can differ
    for k in range(n - 1):
        assert delays_seen[k] - delays_seen[k + 1] <= span * 1000, \
            "delivered out of due order at %d: %s (SENDs over %.3f s)" % (k, delays_seen[k:k + 2], span)
    c.expect_nothing(0.5)


def counters(b):
    c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=5)
    c.request("GET", "/api/counters", headers={"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()})
    data = c.getresponse().read()
    c.close()
    return json.loads(data)


@pytest.mark.parametrize("persistent", ["false", "true"])
def test_a_far_expiry_survives_scheduling(broker, persistent):
    """expires:9223372036854775807 (never, in effect) with a delay: the time
    to live from the firing overflowed, so the copy was expired at once
    (dead-lettered, or dropped if not persistent), helper-66."""
    c = subscriber(broker, "/queue/farexp")
    p = connected(broker.port)
    p.receipt("SEND", {"destination": "/queue/farexp", "AMQ_SCHEDULED_DELAY": "100", "persistent": persistent,
                       "expires": "9223372036854775807"}, "r", b"far")
    m = recv_timed(c)[0]
    assert m.body == b"far" and int(m["expires"]) > time.time() * 1000 + 10 ** 12, m


def test_non_persistent_scheduled_messages_that_fill_memory_all_fire(broker_factory):
    """Non-persistent scheduled messages filling broker.memory_limit, then
    firing into a queue nobody reads yet: the broker crashed (the firing's
    batch was freed while it was being closed, helper-66), or else the
    scheduler waited for room for ever (its own jobs held the memory, and
    only firing frees them). They are charged apart (non_persistent_bytes):
    refused once they and the messages held reach the limit, and every one
    accepted fires."""
    b = broker_factory({"broker.memory_limit": "1MiB"})
    p = connected(b.port)
    sent = 0
    for i in range(200):
        p.send("SEND", {"destination": "/queue/memfire", "AMQ_SCHEDULED_DELAY": "200", "receipt": "r%d" % i},
               b"%04d" % i + b"m" * 10000)
        f = p.recv()
        if f.command == "ERROR":
            assert "cannot be kept" in f.body.decode(), f
            break
        sent += 1
    assert 50 < sent < 200, sent
    deadline = time.time() + 30
    while scheduler(b)["fired"] < 2:   # firing into a full memory, nobody reading
        assert time.time() < deadline, scheduler(b)
        time.sleep(0.05)
    c = subscriber(b, "/queue/memfire")
    got = sorted(int(recv_timed(c)[0].body[:4]) for _ in range(sent))
    assert got == list(range(sent))
    st = scheduler(b)
    assert st["scheduled"] == 0 and st["non_persistent_bytes"] == 0 and not st["waits_for_room"], st


def test_scheduled_messages_sent_in_transactions_count_against_memory(broker_factory):
    """Non-persistent scheduled SENDs in transactions: a transaction's
    bytes were checked against the messages held only, and given back at
    COMMIT where the scheduler took them as admitted, so 100 commits of
    900 KB each held 90 MB against a 1 MiB broker.memory_limit
    (helper-80). The scheduler's bytes count when a transaction holds a
    SEND: one is refused once they reach the limit."""
    b = broker_factory({"broker.memory_limit": "1MiB"})
    p = connected(b.port)
    refused = None
    for t in range(40):
        p.send("BEGIN", {"transaction": "t%d" % t})
        for i in range(3):
            p.send("SEND", {"destination": "/queue/txsched", "transaction": "t%d" % t,
                            "AMQ_SCHEDULED_DELAY": "600000"}, b"s" * 100000)
        p.send("COMMIT", {"transaction": "t%d" % t, "receipt": "c%d" % t})
        f = p.recv()
        if f.command == "ERROR":
            refused = f
            break
        assert f.command == "RECEIPT", f
    assert refused is not None and "broker memory full" in refused["message"], refused
    assert "non-persistent scheduled messages" in refused.body.decode(), refused
    st = scheduler(b)
    # the limit, and at most the transaction that crossed it
    assert 0 < st["non_persistent_bytes"] <= (1 << 20) + 3 * 101000, st
    # the others are not disturbed: a plain SEND still goes, and so does
    # one in a transaction that the scheduler will not keep (the
    # scheduler's bytes count for its own, helper-84)
    q = connected(b.port)
    q.receipt("SEND", {"destination": "/queue/other"}, "r", b"small")
    q.send("BEGIN", {"transaction": "u"})
    q.send("SEND", {"destination": "/queue/other", "transaction": "u"}, b"s" * 5000)
    q.receipt("COMMIT", {"transaction": "u"}, "cu")


@pytest.mark.parametrize("persistent", ["false", "true"])
def test_a_repeating_job_waits_while_its_destination_is_full(broker_factory, persistent):
    """A job repeating every 10 ms into a queue nobody reads has no
    producer to pause: the scheduler itself stops firing once the queue
    holds broker.dest_memory_limit, so the broker's memory stays at the
    limit (it grew 10 MB a second before) and other producers are served.
    Once a consumer makes room, firing resumes."""
    limit = 1 << 20
    b = broker_factory({"broker.dest_memory_limit": "1MiB"})
    p = connected(b.port)
    p.receipt("SEND", {"destination": "/queue/flood", "AMQ_SCHEDULED_PERIOD": "10", "AMQ_SCHEDULED_REPEAT": "-1",
                       "persistent": persistent}, "r", b"f" * 100000)
    # 2 s are two hundred periods, 20 MB of copies without the wait; what
    # it may hold: the queue's limit, one firing over it, the job's record
    end = time.time() + 2.0
    while time.time() < end:
        assert counters(b)["memory_bytes"] < limit + 3 * 101000, counters(b)
        time.sleep(0.05)
    deadline = time.time() + 30
    while not scheduler(b)["waits_for_room"]:
        assert time.time() < deadline, scheduler(b)
        time.sleep(0.05)
    fired = scheduler(b)["fired"]
    time.sleep(1.0)   # a hundred periods
    st = scheduler(b)
    assert st["waits_for_room"] and st["fired"] == fired and st["room_waits"] == 1, st
    assert counters(b)["memory_bytes"] < limit + 3 * 101000, counters(b)
    # another destination's producer is not held
    q = connected(b.port)
    q.receipt("SEND", {"destination": "/queue/other"}, "o", b"o")
    # a consumer makes room: firing resumes and the copies keep coming
    c = subscriber(b, "/queue/flood", headers={"ack": "auto"})
    n = 0
    while n < 30:
        assert recv_timed(c)[0].body == b"f" * 100000
        n += 1
    assert scheduler(b)["fired"] > fired


@pytest.mark.parametrize("persistent", ["false", "true"])
def test_a_full_destination_holds_only_its_own_jobs(broker_factory, persistent):
    """A destination nobody reads fills up with a repeating job's copies:
    every scheduled message waited with it, whatever its destination
    (helper-99). Only that destination's jobs wait now; the others fire
    on time, and are listed in due order with the waiting ones."""
    b = broker_factory({"broker.dest_memory_limit": "256KiB"})
    p = connected(b.port)
    p.receipt("SEND", {"destination": "/queue/full", "AMQ_SCHEDULED_PERIOD": "10", "AMQ_SCHEDULED_REPEAT": "-1",
                       "persistent": persistent}, "r", b"f" * 50000)
    p.receipt("SEND", {"destination": "/queue/full", "AMQ_SCHEDULED_DELAY": "300", "persistent": persistent},
              "r2", b"second")
    deadline = time.time() + 30
    while scheduler(b)["jobs_waiting_for_room"] < 2:
        assert time.time() < deadline, scheduler(b)
        time.sleep(0.05)
    st = scheduler(b)
    assert st["waits_for_room"] and st["room_waits"] == 1, st
    # both waiting jobs are still listed, in due order, and cancellable while they wait
    assert [j["destination"] for j in st["jobs"]] == ["/queue/full", "/queue/full"], st
    assert [j["due_ms"] for j in st["jobs"]] == sorted(j["due_ms"] for j in st["jobs"]), st
    p.receipt("SEND", {"destination": "/queue/full", "AMQ_SCHEDULED_DELAY": "1", "persistent": persistent},
              "r4", b"cancelled")
    while scheduler(b)["jobs_waiting_for_room"] < 3:
        assert time.time() < deadline, scheduler(b)
        time.sleep(0.05)
    job = [j["id"] for j in scheduler(b)["jobs"] if j["body_bytes"] == len(b"cancelled")]
    h = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=5)
    h.request("POST", "/api/scheduler/cancel", body=json.dumps({"id": job[0]}),
              headers={"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode(),
                       "Content-Type": "application/json"})
    assert h.getresponse().status == 200
    h.close()

    c = subscriber(b, "/queue/elsewhere")
    sent = time.time()
    p.receipt("SEND", {"destination": "/queue/elsewhere", "AMQ_SCHEDULED_DELAY": "200", "persistent": persistent},
              "r3", b"on time")
    f, at = recv_timed(c)
    assert f.body == b"on time" and at - sent >= 0.2, f
    assert scheduler(b)["jobs_waiting_for_room"] == 2

    # room again: the waiting ones fire, in due order
    r = subscriber(b, "/queue/full", sid="r", headers={"ack": "auto"})
    bodies = []
    while b"second" not in bodies:
        bodies.append(recv_timed(r)[0].body)
    assert b"cancelled" not in bodies
    deadline = time.time() + 30
    while scheduler(b)["jobs_waiting_for_room"] != 0:
        assert time.time() < deadline, scheduler(b)
        time.sleep(0.05)


def fill_to(b, dest, n):
    """n messages on dest (the last one pauses the producer: the queue is
    full), and the connection, which keeps them there."""
    f = connected(b.port)
    for i in range(n):
        f.send("SEND", {"destination": dest}, b"m%d" % i)
    deadline = time.time() + 30
    while True:
        c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=5)
        c.request("GET", "/api/queues?name=" + dest[len("/queue/"):],
                  headers={"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()})
        qs = json.loads(c.getresponse().read())
        c.close()
        if [q for q in qs if q["name"] == dest and q["pending"] == n]:
            return f
        assert time.time() < deadline, qs
        time.sleep(0.05)


def wait_scheduler(b, pred, what):
    deadline = time.time() + 30
    while not pred(scheduler(b)):
        assert time.time() < deadline, (what, scheduler(b))
        time.sleep(0.05)


def test_a_job_due_later_waits_behind_the_parked_ones(broker_factory):
    """A parked waits until its queue is under 90%; between 90% and full
    the queue was not full for a job due later, which fired first, and a
    stream of them kept A waiting (helper-105). A job whose destination has
    jobs waiting waits behind them."""
    b = broker_factory({"broker.max_queue_depth": "10"})
    keep = fill_to(b, "/queue/full", 10)
    p = connected(b.port)
    p.receipt("SEND", {"destination": "/queue/full", "AMQ_SCHEDULED_DELAY": "50"}, "ra", b"A")
    wait_scheduler(b, lambda st: st["jobs_waiting_for_room"] == 1, "A parked")
    c = connected(b.port)
    c.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/full", "ack": "client-individual",
                            "activemq.prefetchSize": "1"}, "sub")
    first = c.recv()                     # the queue at 9 of 10
    p.receipt("SEND", {"destination": "/queue/full", "AMQ_SCHEDULED_DELAY": "50"}, "rb", b"B")
    wait_scheduler(b, lambda st: st["jobs_waiting_for_room"] == 2, "B waits behind A")
    got = [first.body]
    while b"B" not in got:
        c.send("ACK", {"id": first["ack"]})
        first = c.recv()
        got.append(first.body)
    assert got.index(b"A") < got.index(b"B"), got
    keep.close()


def test_jobs_waiting_for_full_destinations_stay_within_the_window(broker_factory):
    """Parked jobs cannot leave memory, and every due job of a full
    destination was read in and parked: 1,500 of 4 KB with a 64 KiB
    window (helper-105). Past a window of them, every firing waits."""
    b = broker_factory({"broker.max_queue_depth": "1", "broker.scheduler_window": "64KiB"})
    keep = fill_to(b, "/queue/full", 1)
    p = connected(b.port)
    p.timeout = 120   # hundreds of persistent SENDs under a sanitizer on a loaded machine
    for i in range(600):
        p.send("SEND", {"destination": "/queue/full", "AMQ_SCHEDULED_DELAY": "1000", "persistent": "true"},
               b"x" * 4000)
    p.receipt("SEND", {"destination": "/topic/sync"}, "sent", b"")  # (a queue of depth 1 would be full)
    wait_scheduler(b, lambda st: st["room_waits"] >= 2, "firing waits once a window of jobs waits")
    st = scheduler(b)
    assert st["jobs_waiting_for_room"] <= 20 and st["in_memory"] <= 60, st
    # room: they all come, in order
    c = connected(b.port)
    c.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/full", "ack": "auto"}, "sub")
    for i in range(601):
        c.recv(timeout=60)
    wait_scheduler(b, lambda st: st["scheduled"] == 0, "all fired")
    keep.close()

