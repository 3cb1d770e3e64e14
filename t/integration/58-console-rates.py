"""Message rates in the console: messages in and out per interval for the
node and each destination, in /api/overview, /api/destination and drawn
on the page; every message is counted once, in the interval it came; a
destination costs a small record and, while it has traffic, one ring of
8 bytes per interval."""
import re
import time

from stompd_test import connected, http_json, http_request, metric_families, wait_for



def test_every_message_is_counted_once(broker_factory):
    b = broker_factory({"http.rate_interval": "1s"})
    consumer = connected(b.port)
    consumer.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/rated", "ack": "client-individual"}, "s")
    p = connected(b.port)
    # three bursts a little apart, so they land in different intervals
    sent = 0
    for burst in (30, 5, 12):
        for i in range(burst):
            p.send("SEND", {"destination": "/queue/rated", "persistent": "true"}, b"m%d" % sent)
            sent += 1
        p.receipt("SEND", {"destination": "/topic/rated-t"}, "r%d" % sent, b"t")
        time.sleep(2.5)   # an interval closed a little late still holds one burst
    for _ in range(sent):
        m = consumer.recv()
        consumer.send("ACK", {"id": m["ack"]})

    def settled():
        o = http_json(b.http_port, "/api/overview")
        r = o["rates"]
        return o if sum(r["in"]) == sent + 3 and sum(r["out"]) == sent else None

    o = wait_for(settled, what="every message in the node's rates")
    r = o["rates"]
    assert r["interval_s"] == 1 and r["window_s"] == 900
    assert len(r["end_ms"]) == len(r["in"]) == len(r["out"]) == len(r["length_ms"]) <= 900
    assert r["end_ms"] == sorted(r["end_ms"])
    # each interval lasts about a second (the timer may fire late on a busy machine)
    assert all(500 <= n <= 10000 for n in r["length_ms"]), r["length_ms"]
    # the bursts are in three intervals at least (each alone in its own)
    assert len([x for x in r["in"] if x]) >= 3, r["in"]
    # per destination: its own series, its share of the node's
    d = http_json(b.http_port, "/api/destination?name=/queue/rated")
    assert sum(d["rates"]["in"]) == sent and sum(d["rates"]["out"]) == sent
    assert d["stats"]["enqueued"] == sent and d["pending"] == 0
    t = http_json(b.http_port, "/api/destination?name=%2Ftopic%2Frated-t")
    assert sum(t["rates"]["in"]) == 3 and sum(t["rates"]["out"]) == 0
    # the lists carry the current rate of each destination
    q = {x["name"]: x for x in o["queues"]}
    assert set(q["/queue/rated"]["rates"]) == {"in_per_s", "out_per_s"}


def test_current_rate_while_producing(broker_factory):
    """A steady producer: the last interval's rate is what it sends."""
    b = broker_factory({"http.rate_interval": "1s"})
    p = connected(b.port)
    deadline = time.time() + 30
    seen = None
    while time.time() < deadline and not seen:
        for i in range(20):
            p.send("SEND", {"destination": "/queue/steady"}, b"x")
        p.receipt("SEND", {"destination": "/queue/steady"}, "r", b"x")
        time.sleep(0.1)
        o = http_json(b.http_port, "/api/overview")
        q = {x["name"]: x for x in o["queues"]}
        if o["rates"]["in_per_s"] > 0 and q["/queue/steady"]["rates"]["in_per_s"] > 0:
            seen = o
    assert seen, "no current rate while a producer sends"
    # about 21 messages per 0.1 s: at most a few hundred a second, never more than was sent
    assert 0 < seen["rates"]["in_per_s"] <= 21 / 0.1 * 3


def test_rates_on_the_page(broker_factory):
    """The page draws them: an SVG chart of the node with one point per
    sample for each series, and a small chart per destination with traffic."""
    b = broker_factory({"http.rate_interval": "1s"})
    p = connected(b.port)
    for i in range(10):
        p.receipt("SEND", {"destination": "/queue/drawn"}, "r%d" % i, b"x")
    p.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/quiet"}, "s")
    wait_for(lambda: len(http_json(b.http_port, "/api/overview")["rates"]["in"]) >= 3, what="three samples")
    s, h, data = http_request(b.http_port, "GET", "/")
    page = data.decode()
    assert s == 200
    chart = re.search(r'<svg id="chart-node" class="chart"[^>]*data-samples="(\d+)"(.*?)</svg>', page, re.S)
    assert chart, page[:3000]
    n = int(chart.group(1))
    assert n >= 3
    for cls in ("rate-in", "rate-out"):
        pts = re.search(r'<polyline class="%s"[^>]*points="([^"]*)"' % cls, chart.group(2))
        assert pts and len(pts.group(1).split()) == n, (cls, chart.group(2)[:500])
    # the x axis is time (increasing), the y axis the rate: the in line rises for the 10 messages
    xs = [float(p.split(",")[0]) for p in pts.group(1).split()]
    assert xs == sorted(xs)
    ins = re.search(r'<polyline class="rate-in"[^>]*points="([^"]*)"', chart.group(2)).group(1)
    ys = [float(p.split(",")[1]) for p in ins.split()]
    assert min(ys) < max(ys), "the in line is flat"
    row = re.search(r'<tr><td class="name"><a href="/destination\?name=/queue/drawn">/queue/drawn</a></td>(.*?)</tr>',
                    page, re.S)
    assert row and '<svg class="spark"' in row.group(1)
    quiet = re.search(r'<tr><td class="name"><a [^>]*>/queue/quiet</a></td>(.*?)</tr>', page, re.S)
    assert quiet and '<span class="idle">idle</span>' in quiet.group(1)
    # the destination's own page has its chart
    s, h, data = http_request(b.http_port, "GET", "/destination?name=/queue/drawn")
    assert s == 200 and b'<svg id="chart-dest" class="chart"' in data


def rates_bytes(b):
    s, h, data = http_request(b.http_port, "GET", "/metrics")
    fam = metric_families(data.decode())
    return int(fam["stompd_console_rates_bytes"][1]["stompd_console_rates_bytes"])


def test_memory_per_destination(broker_factory):
    """Idle destinations cost a small record each; a destination with
    traffic has a ring of 8 bytes per interval (900 at 1 s: 7,200 bytes),
    whatever its traffic; a deleted one costs nothing."""
    b = broker_factory({"http.rate_interval": "1s", "stomp.max_subscriptions": "2000"})
    c = connected(b.port)
    c.sock_name = "%s:%d" % c.sock.getsockname()

    def sampled_destinations():
        return len(http_json(b.http_port, "/api/overview")["rates"]["in"])

    base = rates_bytes(b)
    # 1,000 idle queues: each has a consumer, no message
    for i in range(1000):
        c.send("SUBSCRIBE", {"id": "s%d" % i, "destination": "/queue/idle-%04d" % i})
    c.receipt("SUBSCRIBE", {"id": "last", "destination": "/queue/idle-last"}, "s")
    n0 = sampled_destinations()
    wait_for(lambda: sampled_destinations() >= n0 + 2, what="two samples")
    idle = rates_bytes(b) - base
    assert 1001 * 40 <= idle <= 1001 * 200, "idle destinations cost %d bytes" % idle
    # 100 of them get one message each (the consumers take it): a ring each
    p = connected(b.port)
    for i in range(100):
        p.send("SEND", {"destination": "/queue/idle-%04d" % i}, b"x")
    p.receipt("SEND", {"destination": "/queue/idle-0000"}, "r", b"x")
    wait_for(lambda: rates_bytes(b) - base >= idle + 100 * 7200, what="the rings")
    busy = rates_bytes(b) - base
    assert busy - idle == 100 * 7200, busy - idle
    # gone with their destination: the consumers leave, the queues are deleted
    assert len(http_json(b.http_port, "/api/connections?name=" + c.sock_name)) == 1
    c.close()
    wait_for(lambda: not http_json(b.http_port, "/api/connections?name=" + c.sock_name),
             what="the consumer's connection to close")
    for i in range(100):
        st, h, data = http_request(b.http_port, "POST", "/api/destinations/delete",
                                   {"destination": "/queue/idle-%04d" % i})
        assert st == 200, data
    wait_for(lambda: rates_bytes(b) - base <= idle - 100 * 40, what="the records to go")
