"""/metrics: clean for promtool (Debian's prometheus package) and for a
strict parser, no two families that collide once a parser strips a
counter's _total, every frame sent counted, the process's resources, the
configured limits, flow-control "full" flags, ZooKeeper's session state
and the build."""
import os
import re
import subprocess
import time

import pytest

from stompd_test import STOMPD, VALGRIND, connected, http_json, http_request, metric_families, promtool_check


def scrape(b):
    s, h, data = http_request(b.http_port, "GET", "/metrics")
    assert s == 200, data[:300]
    return data.decode()


def collisions(fams):
    """Families whose names a parser would mix up: a counter's name without
    _total, or a histogram's or summary's sample names, taken by another."""
    names = {}
    for name, (kind, _) in fams.items():
        base = name[:-6] if kind == "counter" and name.endswith("_total") else name
        derived = {base}
        if kind in ("histogram", "summary"):
            derived |= {base + "_bucket", base + "_sum", base + "_count"}
        if kind == "counter":
            derived |= {base + "_total", base + "_created"}
        for n in derived:
            names.setdefault(n, set()).add(name)
    return {n: s for n, s in names.items() if len(s) > 1}


def test_the_checks_can_fail():
    """promtool and the collision check do find problems (so a clean answer
    below means something): what /metrics used to print."""
    old = ("# HELP stompd_connections Client connections open\n# TYPE stompd_connections gauge\n"
           "stompd_connections 1\n"
           "# HELP stompd_connections_total Client connections accepted\n# TYPE stompd_connections_total counter\n"
           "stompd_connections_total 3\n")
    assert collisions(metric_families(old)) == {"stompd_connections": {"stompd_connections",
                                                                       "stompd_connections_total"}}
    assert "counter" in promtool_check("# HELP x_bytes B\n# TYPE x_bytes counter\nx_bytes 1\n")
    with pytest.raises(AssertionError):
        metric_families('# HELP a A\n# TYPE a gauge\na{l="x} 1\n')


def test_clean_for_promtool_and_parsers(broker_factory):
    b = broker_factory()
    p = connected(b.port, headers={"client-id": "c1"})
    # label values that need escaping: a quote, a backslash (a newline too,
    # but a name with one is refused now: 03-errors)
    for dest in ('/queue/a"quote', "/queue/back\\slash", "/topic/t"):
        p.receipt("SEND", {"destination": dest, "persistent": "true"}, "r", b"x")
    p.receipt("SUBSCRIBE", {"id": "d", "destination": "/topic/t", "activemq.subscriptionName": "keep"}, "s")
    # a name that is not UTF-8 is refused (03-errors): no label to escape
    text = scrape(b)
    assert promtool_check(text) == "", promtool_check(text)
    fams = metric_families(text)
    assert collisions(fams) == {}
    assert "stompd_connections" not in fams and fams["stompd_connections_open"][0] == "gauge"
    assert 'stompd_destination_pending{destination="/queue/a\\"quote",type="queue"}' in \
        fams["stompd_destination_pending"][1]
    assert 'stompd_destination_pending{destination="/queue/back\\\\slash",type="queue"}' in \
        fams["stompd_destination_pending"][1]
    for name, (kind, samples) in fams.items():
        assert name.startswith(("stompd_", "process_")), name
        assert (kind == "counter") == name.endswith("_total"), name


def test_per_destination_series_and_overview_lists_are_bounded(broker_factory):
    """With 50,000 queues /metrics was 52 MB and /api/overview 27 MB, each
    built in one turn of the loop (helper-102). They give series of their
    own to, and list, at most http.max_listed_destinations destinations
    (of each kind, in the overview), those with the most waiting, then the
    most memory, and count the others."""
    b = broker_factory({"http.max_listed_destinations": "3"})
    p = connected(b.port)
    for i, n in enumerate([5, 1, 0, 3, 0, 0, 2]):
        p.receipt("SEND", {"destination": "/queue/m%d" % i}, "c%d" % i, b"")  # makes it
        for k in range(n):
            p.send("SEND", {"destination": "/queue/m%d" % i}, b"x")
    p.receipt("SEND", {"destination": "/topic/t"}, "t", b"")
    fams = metric_families(scrape(b))
    pending = fams["stompd_destination_pending"][1]
    assert sorted(pending) == ['stompd_destination_pending{destination="/queue/m%d",type="queue"}' % i
                               for i in (0, 3, 6)], pending
    assert list(pending.values()) == [6.0, 4.0, 3.0]
    held = fams["stompd_destinations"][1]["stompd_destinations"]
    assert held >= 8
    assert fams["stompd_metrics_destinations_omitted"][1] == {"stompd_metrics_destinations_omitted": held - 3}
    assert len(fams["stompd_destination_enqueued_total"][1]) == 3
    o = http_json(b.http_port, "/api/overview")
    assert [(x["name"], x["pending"]) for x in o["queues"]] == [("/queue/m0", 6), ("/queue/m3", 4), ("/queue/m6", 3)]
    assert o["queues_omitted"] == 4
    assert [x["name"] for x in o["topics"]] == ["/topic/t"] and o["topics_omitted"] == 0
    assert len(http_json(b.http_port, "/api/queues")) == 7  # the list asked for: all of them


def test_every_frame_sent_is_counted(broker_factory):
    b = broker_factory()

    def frames_out():
        f = metric_families(scrape(b))
        return f["stompd_frames_out_total"][1]["stompd_frames_out_total"]

    assert frames_out() == 0
    received = 0
    p = connected(b.port)                      # CONNECTED
    received += 1
    for i in range(3):
        p.receipt("SEND", {"destination": "/queue/f"}, "r%d" % i, b"x")   # RECEIPT
        received += 1
    c = connected(b.port)
    received += 1
    c.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/f"}, "s")
    received += 1
    for _ in range(3):
        c.recv()                                # MESSAGE
        received += 1
    bad = connected(b.port)
    received += 1
    bad.send_raw(b"NOPE\n\n\0")
    bad.expect_error()                          # ERROR
    received += 1
    assert frames_out() == received == 11
    counters = http_json(b.http_port, "/api/counters")
    assert counters["frames_out"] == received
    per_conn = sum(x["frames_out"] for x in http_json(b.http_port, "/api/connections"))
    assert per_conn == received - 2             # the bad connection is gone


def pid_of(b):
    return b.proc.pid


def test_process_limits_flags_zookeeper_and_build(broker_factory):
    b = broker_factory({"broker.memory_limit": "123MiB", "broker.dest_memory_limit": "64KiB",
                        "broker.max_connections": "77", "http.max_connections": "9"})
    f = metric_families(scrape(b))
    one = lambda name: f[name][1][name]  # noqa: E731
    pid = pid_of(b)
    with open("/proc/%d/status" % pid) as st:
        rss = int(re.search(r"VmRSS:\s+(\d+) kB", st.read()).group(1)) * 1024
    assert 0.5 * rss < one("process_resident_memory_bytes") < 2 * rss
    assert one("process_virtual_memory_bytes") > one("process_resident_memory_bytes")
    assert abs(one("process_open_fds") - len(os.listdir("/proc/%d/fd" % pid))) <= 3
    with open("/proc/%d/limits" % pid) as lim:
        soft = re.search(r"Max open files\s+(\d+)", lim.read()).group(1)
    # what getrlimit says inside the process: valgrind keeps a few
    # descriptors of the limit for itself
    assert one("process_max_fds") == int(soft) or VALGRIND and int(soft) - 64 <= one("process_max_fds") < int(soft)
    assert abs(one("process_start_time_seconds") - time.time()) < 120
    assert f["process_cpu_seconds_total"][0] == "counter" and one("process_cpu_seconds_total") >= 0
    lb = f["stompd_limit_bytes"][1]
    assert lb['stompd_limit_bytes{key="broker.memory_limit"}'] == 123 * 1024 * 1024
    assert lb['stompd_limit_bytes{key="broker.dest_memory_limit"}'] == 64 * 1024
    assert f["stompd_limit"][1]['stompd_limit{key="broker.max_connections"}'] == 77
    assert f["stompd_limit"][1]['stompd_limit{key="http.max_connections"}'] == 9
    zk = f["stompd_zookeeper_session_state"][1]
    assert zk == {'stompd_zookeeper_session_state{state="%s"}' % s: (1 if s == "none" else 0)
                  for s in ("none", "connecting", "connected", "expired")}
    version = subprocess.run([STOMPD, "--version"], capture_output=True, text=True).stdout.split()[-1]
    info = f["stompd_build_info"][1]
    assert len(info) == 1
    (key, v), = info.items()
    assert v == 1 and 'version="%s"' % version in key, (key, version)

    # flow control: a destination past its memory limit is full while its
    # producers wait; the node's memory flag follows broker.memory_limit
    p = connected(b.port)
    body = b"f" * 8192
    for i in range(7):
        p.receipt("SEND", {"destination": "/queue/full"}, "r%d" % i, body)
    full = lambda: metric_families(scrape(b))["stompd_destination_full"][1]  # noqa: E731
    assert full()['stompd_destination_full{destination="/queue/full",type="queue"}'] == 0
    p.send("SEND", {"destination": "/queue/full", "receipt": "late"}, body * 2)
    deadline = time.time() + 10
    while full()['stompd_destination_full{destination="/queue/full",type="queue"}'] != 1:
        assert time.time() < deadline
        time.sleep(0.05)
    assert http_json(b.http_port, "/api/queues")[0]["full"] is True
    assert metric_families(scrape(b))["stompd_memory_full"][1]["stompd_memory_full"] == 0
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/full"})
    for _ in range(8):
        c.recv()
    assert p.recv().command == "RECEIPT"
    assert full()['stompd_destination_full{destination="/queue/full",type="queue"}'] == 0


def test_memory_full_flag(broker_factory):
    b = broker_factory({"broker.memory_limit": "1MiB"})
    p = connected(b.port)
    for i in range(9):
        p.receipt("SEND", {"destination": "/queue/m%d" % i}, "r%d" % i, b"m" * 100000)
    p.send("SEND", {"destination": "/queue/m9", "receipt": "last"}, b"m" * 200000)
    deadline = time.time() + 10
    while metric_families(scrape(b))["stompd_memory_full"][1]["stompd_memory_full"] != 1:
        assert time.time() < deadline
        time.sleep(0.05)
    assert promtool_check(scrape(b)) == ""


def test_durable_latency_on_the_page(broker_factory):
    """The store's fdatasync latency (main's histograms) is in /metrics as a
    histogram family of the table and summarized on the page."""
    b = broker_factory()
    page = http_request(b.http_port, "GET", "/")[2].decode()
    assert re.search(r'fdatasync <b id="fdatasync">(none yet|p50 )', page), page[:2000]
    p = connected(b.port)
    for i in range(3):
        p.receipt("SEND", {"destination": "/queue/synced", "persistent": "true"}, "r%d" % i, b"x")
    fams = metric_families(scrape(b))
    kind, samples = fams["stompd_store_fdatasync_seconds"]
    assert kind == "histogram" and samples["stompd_store_fdatasync_seconds_count"] >= 1
    assert fams["stompd_store_group_commit_entries"][0] == "histogram"
    page = http_request(b.http_port, "GET", "/")[2].decode()
    m = re.search(r'fdatasync <b id="fdatasync">p50 \u2264 ([0-9.]+ (\u00b5s|ms|s)), '
                  r'p99 \u2264 ([0-9.]+ (\u00b5s|ms|s))</b> \((\d+)\)', page)
    assert m and int(m.group(5)) >= 1, page[:2000]
    # and each listener's counters (main's), labelled by listener
    assert fams["stompd_listener_accepted_total"][1]['stompd_listener_accepted_total{listener="STOMP"}'] >= 1


def test_console_transport_refusals_counted(broker_factory):
    """A request naming a Host the console does not answer to (421) and one
    not whole within http.request_timeout (408) are counted in /metrics."""
    import socket
    b = broker_factory({"http.request_timeout": "1s"})

    def value(name):
        return metric_families(scrape(b))[name][1][name]

    assert value("stompd_http_misdirected_total") == 0 and value("stompd_http_request_timeouts_total") == 0
    assert value("stompd_http_evicted_total") == 0
    s, _, _ = http_request(b.http_port, "GET", "/api/status", headers={"Host": "evil.example"})
    assert s == 421
    assert value("stompd_http_misdirected_total") == 1
    c = socket.create_connection(("127.0.0.1", b.http_port), timeout=60)
    c.sendall(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\n")   # never finished
    out = b""
    while True:
        d = c.recv(4096)
        if not d:
            break
        out += d
    c.close()
    assert out.startswith(b"HTTP/1.1 408"), out
    assert value("stompd_http_request_timeouts_total") == 1
    assert value("stompd_http_misdirected_total") == 1


def test_a_socket_closed_after_its_error_lingers_until_its_peer_closes(broker_factory):
    """A connection closed after its ERROR keeps its socket, shut for
    writing, while its client still has it open (what the client sends
    then is read and dropped, so no reset costs it the ERROR), and lets it
    go once the client closes: stompd_lingering_sockets says how many."""
    b = broker_factory()

    def lingering():
        return metric_families(scrape(b))["stompd_lingering_sockets"][1]["stompd_lingering_sockets"]

    assert lingering() == 0
    c = connected(b.port)
    c.send_raw(b"GARBAGE\n\n\0")
    assert c.recv().command == "ERROR"
    assert c.sock.recv(10) == b""          # the end of the stream, not a reset
    assert lingering() == 1
    # the JSON counters and the page say the same
    assert http_json(b.http_port, "/api/counters")["lingering_sockets"] == 1
    st, _, page = http_request(b.http_port, "GET", "/")
    assert st == 200 and re.search(r'id="counters">\d+ connections \(and 1 closed, draining', page.decode())
    c.send_raw(b"SEND\ndestination:/queue/x\n\nignored\0")   # read and dropped
    c.close()
    deadline = time.time() + 10
    while lingering() != 0:
        assert time.time() < deadline, "the socket still lingers after its peer closed"
        time.sleep(0.05)
