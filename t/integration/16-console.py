"""The HTTP console: every endpoint, authentication on and off, and bad
requests answered with the right 4xx without disturbing the broker."""
import base64
import http.client
import json
import socket
import time

import pytest

from stompd_test import connected, wait_for


def req(b, method, path, body=None, auth=("admin", "admin"), headers=None):
    c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=5)
    h = dict(headers or {})
    if auth:
        h["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode()
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        h.setdefault("Content-Type", "application/json")
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


def get_json(b, path, **kw):
    st, h, data = req(b, "GET", path, **kw)
    assert st == 200, (st, data)
    assert h["Content-Type"] == "application/json"
    return json.loads(data)


def answered(s):
    """Has the broker written to (or closed) s, which sent nothing?"""
    s.setblocking(False)
    try:
        s.recv(1, socket.MSG_PEEK)
        return True
    except BlockingIOError:
        return False
    finally:
        s.setblocking(True)


def raw(b, data, timeout=5):
    s = socket.create_connection(("127.0.0.1", b.http_port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except socket.timeout:
        pass
    s.close()
    return out


@pytest.fixture
def busy(broker):
    """A broker with a queue holding messages, a consumer and a topic
    subscriber."""
    p = connected(broker.port)
    for i in range(3):
        p.receipt("SEND", {"destination": "/queue/orders", "persistent": "true"}, "r%d" % i, b"o%d" % i)
    consumer = connected(broker.port, headers={"client-id": "shop"})
    consumer.receipt("SUBSCRIBE", {"id": "q", "destination": "/queue/work", "ack": "client-individual"}, "s")
    consumer.receipt("SUBSCRIBE", {"id": "t", "destination": "/topic/news"}, "s2")
    consumer.receipt("SUBSCRIBE", {"id": "d", "destination": "/topic/news", "activemq.subscriptionName": "keep"}, "s3")
    broker.keep = (p, consumer)
    return broker


def test_status_and_health(busy):
    st = get_json(busy, "/api/status")
    assert st["role"] == "standalone" and st["broker"] == "localhost"
    assert st["lsn"] >= 3 and st["committed_lsn"] >= 3 and len(st["node_id"]) == 16
    s, h, data = req(busy, "GET", "/healthz", auth=None)
    assert s == 200 and json.loads(data) == {"status": "ok", "role": "standalone"}


def test_overview_queues_topics_connections(busy):
    o = get_json(busy, "/api/overview")
    q = {x["name"]: x for x in o["queues"]}
    assert q["/queue/orders"]["pending"] == 3 and q["/queue/orders"]["stats"]["enqueued"] == 3
    assert q["/queue/work"]["consumers"] == 1
    t = {x["name"]: x for x in o["topics"]}
    assert t["/topic/news"]["subscribers"] == 1
    assert t["/topic/news"]["durable_subscriptions"][0]["client_id"] == "shop"
    assert o["counters"]["messages_in"] == 3
    conns = {c["client_id"]: c for c in o["connections"]}
    assert {s["destination"] for s in conns["shop"]["subscriptions"]} == {"/queue/work", "/topic/news"}
    # the same views (but for the rates, which a sample may change in between)
    def norates(items):
        return [{k: v for k, v in x.items() if k != "rates"} for x in items]
    assert norates(get_json(busy, "/api/queues")) == norates(o["queues"])
    assert norates(get_json(busy, "/api/topics")) == norates(o["topics"])
    assert len(get_json(busy, "/api/connections")) == 2
    assert get_json(busy, "/api/cluster")["members"] == []
    assert get_json(busy, "/api/counters")["connections"] == 2


def test_page_is_readable_html(busy):
    s, h, data = req(busy, "GET", "/")
    assert s == 200 and h["Content-Type"].startswith("text/html")
    page = data.decode()
    assert "/queue/orders" in page and "/topic/news" in page and "shop/keep" in page
    # reloads itself (its script, every http.refresh) and loads no inline script
    assert 'data-refresh="5000"' in page and '<script src="/console.js" defer></script>' in page
    assert "<script>" not in page
    assert "script-src 'self'" in h["Content-Security-Policy"]
    assert 'class="role standalone"' in page


def test_page_escapes_names(broker):
    p = connected(broker.port)
    p.receipt("SEND", {"destination": "/queue/<script>alert(1)</script>"}, "r", b"x")
    s, h, data = req(broker, "GET", "/")
    assert b"<script>alert(1)</script>" not in data
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in data


def test_metrics(busy):
    s, h, data = req(busy, "GET", "/metrics")
    assert s == 200 and h["Content-Type"].startswith("text/plain; version=0.0.4")
    text = data.decode()
    assert 'stompd_role{role="standalone"} 1' in text
    assert 'stompd_destination_pending{destination="/queue/orders",type="queue"} 3' in text
    assert "# TYPE stompd_messages_in_total counter" in text
    for line in text.splitlines():
        assert line.startswith(("#", "stompd_", "process_")), line


def test_durable_path_metrics(broker):
    # every fdatasync of the store's log is timed, and each group commit
    # counted with the entries it carried: in /api/status and /metrics
    p = connected(broker.port)
    for i in range(5):
        p.receipt("SEND", {"destination": "/queue/durable", "persistent": "true"}, "r%d" % i, b"x")
    st = get_json(broker, "/api/status")
    assert st["fdatasync_us"]["count"] >= 1 and st["fdatasync_us"]["p50"] >= 1, st
    assert st["group_commit_entries"]["count"] >= 1, st
    text = req(broker, "GET", "/metrics")[2].decode()
    assert "# TYPE stompd_store_fdatasync_seconds histogram" in text
    buckets = [int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("stompd_store_fdatasync_seconds_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] >= 1
    count = [int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
             if line.startswith("stompd_store_group_commit_entries_count")]
    assert count and count[0] >= 1
    # messages consumed before their index write, never written to LevelDB
    # (how many depends on timing; test_store checks the skipping itself)
    assert "# TYPE stompd_store_index_skipped_total counter" in text
    skipped = [int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("stompd_store_index_skipped_total ")]
    assert len(skipped) == 1 and skipped[0] <= get_json(broker, "/api/status")["index_skipped"]


def test_actions_purge_delete_send(busy):
    s, h, data = req(busy, "POST", "/api/destinations/purge", {"destination": "/queue/orders"})
    assert s == 200 and json.loads(data)["messages"] == 3
    assert {q["name"]: q for q in get_json(busy, "/api/queues")}["/queue/orders"]["pending"] == 0
    s, h, data = req(busy, "POST", "/api/send", {"destination": "/queue/work", "body": "from the console",
                                                   "headers": {"x-k": "v"}, "persistent": True, "priority": 7})
    assert s == 200 and json.loads(data) == {"sent": True, "durable": True}
    consumer = busy.keep[1]
    m = consumer.recv()
    assert m.body == b"from the console" and m["x-k"] == "v" and m["priority"] == "7"
    assert m["persistent"] == "true"
    # a destination with subscribers is refused, unless forced: its
    # subscribers' connections then get an ERROR naming it (a subscription
    # that ended in silence left its client waiting for ever)
    s, h, data = req(busy, "POST", "/api/destinations/delete", {"destination": "/topic/news"})
    assert s == 409, data
    e = json.loads(data)
    assert e["subscriptions"] == 2 and "force" in e["error"], e
    assert "/topic/news" in {t["name"] for t in get_json(busy, "/api/topics")}
    assert req(busy, "POST", "/api/destinations/delete", {"destination": "/topic/news", "force": 1})[0] == 400
    s, h, data = req(busy, "POST", "/api/destinations/delete", {"destination": "/topic/news", "force": True})
    assert s == 200 and json.loads(data) == {"deleted": "/topic/news", "connections_closed": 1}, data
    e = consumer.expect_error("destination /topic/news deleted by an administrator")
    assert "/topic/news" not in {t["name"] for t in get_json(busy, "/api/topics")}
    # the consumer's unacked messages elsewhere went back: /queue/work is free of it
    assert {q["name"]: q for q in get_json(busy, "/api/queues")}["/queue/work"]["consumers"] == 0


def test_purge_is_durable(broker):
    p = connected(broker.port)
    p.receipt("SEND", {"destination": "/queue/gone", "persistent": "true"}, "r", b"x")
    assert req(broker, "POST", "/api/destinations/purge", {"destination": "/queue/gone"})[0] == 200
    assert broker.stop() == 0
    broker.restart()
    assert {q["name"]: q for q in get_json(broker, "/api/queues")}.get("/queue/gone", {"pending": 0})["pending"] == 0


def test_purge_takes_what_consumers_hold(broker):
    """A purge removed the held messages' store copies but put the messages
    back in the queue, in memory only, when their consumer let go: shown
    as pending and persistent, they were gone after a restart (helper-70).
    As ActiveMQ's purge, it takes them too: acknowledged as usual, and
    gone if they come back."""
    p = connected(broker.port)
    for i in range(30):
        p.send("SEND", {"destination": "/queue/held", "persistent": "true"}, b"m%d" % i)
    p.receipt("SEND", {"destination": "/queue/held", "persistent": "true"}, "r", b"last")
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"destination": "/queue/held", "id": "s", "ack": "client-individual",
                         "activemq.prefetchSize": "20"})
    got = [c.recv() for _ in range(20)]
    s, h, data = req(broker, "POST", "/api/destinations/purge", {"destination": "/queue/held"})
    # the answer counts the held messages it takes (it said 11)
    assert s == 200 and json.loads(data) == {"purged": "/queue/held", "messages": 31, "held": 20}, data
    s, h, data = req(broker, "POST", "/api/destinations/purge", {"destination": "/queue/held"})
    assert s == 200 and json.loads(data) == {"purged": "/queue/held", "messages": 0, "held": 0}, data
    c.receipt("ACK", {"id": got[0]["ack"]}, "a")  # an ACK of a purged message is fine
    c.close()

    def queue():
        return {q["name"]: q for q in get_json(broker, "/api/queues")}.get("/queue/held", {})
    wait_for(lambda: queue().get("consumers", 0) == 0, 30, "the consumer to go")
    assert queue().get("pending", 0) == 0, queue()
    assert broker.stop() == 0
    broker.restart()
    assert queue().get("pending", 0) == 0, queue()
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"destination": "/queue/held", "id": "s"})
    c.expect_nothing(1.0)


def test_purge_counts_what_consumers_hold_without_a_store(broker_factory):
    """The held count came from the paging table, which a queue without a
    store does not keep: it said 0 (helper-77)."""
    b = broker_factory({"store.type": "memory"})
    p = connected(b.port)
    for i in range(31):
        p.send("SEND", {"destination": "/queue/mem"}, b"m%d" % i)
    p.receipt("SEND", {"destination": "/queue/other"}, "r", b"")
    c = connected(b.port)
    c.send("SUBSCRIBE", {"destination": "/queue/mem", "id": "s", "ack": "client-individual",
                         "activemq.prefetchSize": "20"})
    [c.recv() for _ in range(20)]
    s, h, data = req(b, "POST", "/api/destinations/purge", {"destination": "/queue/mem"})
    assert s == 200 and json.loads(data) == {"purged": "/queue/mem", "messages": 31, "held": 20}, data


@pytest.mark.parametrize("dest", ["/queue/wild.>", "/queue/wild.x,/queue/elsewhere"])
def test_purge_counts_what_wildcard_and_composite_subscriptions_hold(broker, dest):
    """Such a subscription keeps its deliveries on its root's list, not
    its legs': the purge counted none of them (helper-78)."""
    p = connected(broker.port)
    for i in range(31):
        p.send("SEND", {"destination": "/queue/wild.x"}, b"m%d" % i)
    p.receipt("SEND", {"destination": "/queue/other"}, "r", b"")
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"destination": dest, "id": "s", "ack": "client-individual", "activemq.prefetchSize": "20"})
    [c.recv() for _ in range(20)]
    s, h, data = req(broker, "POST", "/api/destinations/purge", {"destination": "/queue/wild.x"})
    assert s == 200 and json.loads(data) == {"purged": "/queue/wild.x", "messages": 31, "held": 20}, data


@pytest.mark.parametrize("txn,action", [(False, "purge"), (True, "purge"), (False, "delete")])
def test_a_purge_takes_sends_journaled_before_it_and_released_after(broker_factory, txn, action):
    """A persistent SEND (or COMMIT) reaches the queue once its journal
    entry is durable; a purge journaled after that entry removed its key
    from the store, and the message then came into the queue in memory
    only: pending, receipted, and gone at the restart (helper-72). A
    delete purges too, and the queue made again by the message's arrival
    must drop it as well (helper-73)."""
    import os
    b = broker_factory(start=False)
    b.env = dict(os.environ, STOMPD_TEST_WRITE_DELAY_MS="500")
    b.start()
    p = connected(b.port)
    p.receipt("SEND", {"destination": "/queue/race", "persistent": "true"}, "r0", b"before")
    extra = {"transaction": "t"} if txn else {}
    if txn:
        p.send("BEGIN", {"transaction": "t"})
    for i in range(3):
        p.send("SEND", dict({"destination": "/queue/race", "persistent": "true"}, **extra), b"racing")
    if txn:
        p.send("COMMIT", {"transaction": "t", "receipt": "r1"})
    else:
        p.send("SEND", {"destination": "/queue/race", "persistent": "true", "receipt": "r1"}, b"racing")
    time.sleep(0.1)  # the sends wait for the slow writer: the purge goes into the next entry
    s, h, data = req(b, "POST", "/api/destinations/" + action, {"destination": "/queue/race"})
    assert s == 200, data
    assert p.recv(timeout=30)["receipt-id"] == "r1"

    def pending():
        return {q["name"]: q for q in get_json(b, "/api/queues")}.get("/queue/race", {"pending": 0})["pending"]
    before = pending()
    assert b.stop() == 0
    b.env = None
    b.start()
    assert pending() == before, "the queue showed %d pending, the store had %d" % (before, pending())


def test_purge_and_delete_are_answered_once_durable(broker):
    """The console answered 200 before the purge's journal entry was
    written: a kill -9 just after it brought the messages back (helper-70:
    2 runs in 6). Now the answer waits for the entry, as a RECEIPT does."""
    for i in range(3):
        q = "/queue/purged%d" % i
        p = connected(broker.port)
        for _ in range(300):
            p.send("SEND", {"destination": q, "persistent": "true"}, b"x" * 100)
        p.receipt("SEND", {"destination": q, "persistent": "true"}, "r", b"x")
        action = "/api/destinations/purge" if i % 2 == 0 else "/api/destinations/delete"
        assert req(broker, "POST", action, {"destination": q})[0] == 200
        broker.kill()
        broker.restart()
        got = {x["name"]: x for x in get_json(broker, "/api/queues")}.get(q, {"pending": 0})
        assert got["pending"] == 0, (action, got)


@pytest.mark.parametrize("body,why", [
    ({"body": "x"}, "destination"),
    ({"destination": "/nowhere/x"}, "unknown destination type"),
    ({"destination": "/queue/x", "priority": 10}, "priority"),
    ({"destination": "/queue/x", "priority": "high"}, "priority"),
    ({"destination": "/queue/x", "expires": -1}, "expires"),
    ({"destination": "/queue/x", "persistent": "yes"}, "persistent"),
    ({"destination": "/queue/x", "headers": {"a": 1}}, "headers"),
    ({"destination": "/queue/x", "headers": []}, "headers"),
    ({"destination": "/temp-queue/x"}, "temporary"),
    ({"destination": "/queue/x", "body": 42}, "body"),
    # the checks the frame parser makes on a SEND (stomp.* limits at their
    # defaults but for a 32 KiB frame, so a body can exceed it in a request)
    ({"destination": "/queue/x", "headers": {"": "v"}}, 'header "": empty header name'),
    ({"destination": "/queue/x", "headers": {"ok": "v", "": ""}}, "empty header name"),
    ({"destination": "/queue/x", "headers": {"x-big": "v" * 20000}},
     'header "x-big": header line too long (stomp.max_header_size is 10240)'),
    # the limit counts the line as written: escaping makes this one too long
    ({"destination": "/queue/x", "headers": {"x-esc": ":" * 5200}}, "header line too long"),
    ({"destination": "/queue/x", "headers": {"n" * 10300: "v"}}, 'header "nnnn'),
    ({"destination": "/queue/x", "headers": {"h%d" % i: "v" for i in range(1000)}},
     "too many headers (stomp.max_headers is 1000)"),
    ({"destination": "/queue/x", "body": "b" * 40000}, "frame too large (stomp.max_frame_size is 32768)"),
    ({"destination": "/queue/x", "body": "b" * 16000, "headers": {"a": "v" * 9000, "b": "v" * 9000}},
     "frame too large"),
    ({"destination": "/queue/x", "headers": {"k": "a\u0000b"}}, "JSON"),
    ({"destination": "/queue/x", "headers": {"a\u0000b": "v"}}, "JSON"),
], ids=lambda x: None if isinstance(x, dict) else x[:30])
def test_send_validation(send_broker, body, why):
    """Refused with 400 naming the problem, and nothing delivered."""
    b = send_broker
    consumer = b.consumer
    s, h, data = req(b, "POST", "/api/send", body)  # json.dumps writes a NUL as \\u0000
    assert s == 400 and why in json.loads(data)["error"], data
    s, h, data = req(b, "POST", "/api/send", {"destination": "/queue/x", "body": "next"})
    assert s == 200, data
    assert consumer.recv().body == b"next"


@pytest.fixture
def send_broker(broker_factory):
    b = broker_factory({"stomp.max_frame_size": "32KiB"})
    b.consumer = connected(b.port)
    b.consumer.receipt("SUBSCRIBE", {"id": "x", "destination": "/queue/x"}, "s")
    return b


def test_send_at_the_limits_is_delivered(send_broker):
    """What a STOMP 1.2 producer can send, the console can: exactly at each
    limit, and names and values that need escaping, read back exactly."""
    b = send_broker
    hdrs = {"h%d" % i: "v" for i in range(998)}       # + destination = 999 < 1000
    hdrs["x-long"] = "v" * (10240 - len("x-long:"))   # a line of exactly 10 KiB
    s, h, data = req(b, "POST", "/api/send", {"destination": "/queue/x", "headers": hdrs})
    assert s == 200, data
    m = b.consumer.recv()
    assert m["x-long"] == hdrs["x-long"] and m["h997"] == "v"
    odd = {"a:b": "c:d", "new\nline": "x\ny", "cr\rhere": "v\r", "back\\slash": "\\c"}
    s, h, data = req(b, "POST", "/api/send", {"destination": "/queue/x", "headers": odd, "body": "é"})
    assert s == 200, data
    m = b.consumer.recv()
    for k, v in odd.items():
        assert m[k] == v, (k, m)
    assert m.body == "é".encode()


def test_bad_json_and_content_type(broker):
    s, h, data = req(broker, "POST", "/api/send", "{not json", headers={"Content-Type": "application/json"})
    assert s == 400 and "JSON" in json.loads(data)["error"]
    s, h, data = req(broker, "POST", "/api/send", "[1,2]", headers={"Content-Type": "application/json"})
    assert s == 400
    s, h, data = req(broker, "POST", "/api/send", "destination=/queue/x",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert s == 415
    s, h, data = req(broker, "POST", "/api/destinations/purge", {"destination": "/queue/none"})
    assert s == 404
    s, h, data = req(broker, "POST", "/api/destinations/purge", {"destination": "/topic/t"})
    assert s in (400, 404)


def test_authentication(broker):
    assert req(broker, "GET", "/api/status", auth=None)[0] == 401
    s, h, data = req(broker, "GET", "/", auth=("admin", "wrong"))
    assert s == 401 and h["WWW-Authenticate"].startswith("Basic")
    assert req(broker, "GET", "/api/status", auth=("admi", "admin"))[0] == 401
    assert req(broker, "GET", "/api/status", headers={"Authorization": "Basic !!!"}, auth=None)[0] == 401
    assert req(broker, "GET", "/api/status", headers={"Authorization": "Bearer x"}, auth=None)[0] == 401
    assert broker.wait_log("default credentials admin/admin")


def test_authentication_off_and_custom_credentials(broker_factory):
    off = broker_factory({"http.auth": "false"})
    assert req(off, "GET", "/api/status", auth=None)[0] == 200
    assert off.wait_log("http.auth = false")
    custom = broker_factory({"http.admin_user": "ops", "http.admin_password": "s3cret"})
    assert req(custom, "GET", "/api/status", auth=("ops", "s3cret"))[0] == 200
    assert req(custom, "GET", "/api/status")[0] == 401
    assert "default credentials" not in custom.log()


def test_not_found_and_wrong_method(broker):
    assert req(broker, "GET", "/nope")[0] == 404
    assert req(broker, "GET", "/api/nope")[0] == 404
    s, h, data = req(broker, "DELETE", "/api/queues")
    assert s == 405 and h["Allow"] == "GET, HEAD"
    s, h, data = req(broker, "GET", "/api/send")
    assert s == 405 and h["Allow"] == "POST"
    assert req(broker, "POST", "/healthz", "x")[0] == 405
    assert req(broker, "HEAD", "/api/send")[0] == 405


def test_head_answers_what_get_would_without_the_body(broker):
    """HEAD is GET without the body (RFC 9110 section 9.3.2): curl -I and
    load balancers' health checks use it."""
    auth = b"Authorization: Basic " + base64.b64encode(b"admin:admin") + b"\r\n"
    for path in (b"/healthz", b"/api/counters", b"/"):
        head = raw(broker, b"HEAD " + path + b" HTTP/1.1\r\nHost: localhost\r\n" + auth + b"Connection: close\r\n\r\n")
        get = raw(broker, b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\n" + auth + b"Connection: close\r\n\r\n")
        hh, _, hbody = head.partition(b"\r\n\r\n")
        gh, _, gbody = get.partition(b"\r\n\r\n")
        assert hh.startswith(b"HTTP/1.1 200") and gh.startswith(b"HTTP/1.1 200"), (head, get)
        assert hbody == b"" and len(gbody) > 0
        length = [int(l.split(b":")[1]) for l in hh.split(b"\r\n") if l.lower().startswith(b"content-length:")]
        assert length and length[0] > 0
    # no answer to a HEAD has a body, errors included: on a kept-alive
    # connection the next answer follows its headers at once
    for first, creds, status in ((b"HEAD /healthz", b"", b"200"), (b"HEAD /nope", auth, b"404"),
                                 (b"HEAD /api/counters", b"", b"401"), (b"HEAD /api/send", auth, b"405")):
        s = socket.create_connection(("127.0.0.1", broker.http_port), timeout=5)
        s.sendall(first + b" HTTP/1.1\r\nHost: localhost\r\n" + creds +
                  b"\r\nGET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        out = b""
        deadline = time.time() + 5
        while out.count(b"HTTP/1.1 ") < 2 and time.time() < deadline:
            out += s.recv(65536)
        s.close()
        assert out.startswith(b"HTTP/1.1 " + status), out
        assert out.split(b"\r\n\r\n", 1)[1].startswith(b"HTTP/1.1 200"), out


def test_an_http11_request_without_host_is_refused(broker):
    """RFC 9112 section 3.2: a server responds 400 to an HTTP/1.1 request
    without a Host header. HTTP/1.0 has none to send."""
    out = raw(broker, b"GET /healthz HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400") and b"Host" in out
    assert raw(broker, b"GET /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200")
    assert raw(broker, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").startswith(
        b"HTTP/1.1 200")


def test_malformed_and_oversized(broker_factory):
    b = broker_factory({"http.max_request": "4KiB"})
    watcher = connected(b.port)
    watcher.receipt("SUBSCRIBE", {"id": "w", "destination": "/queue/watch"}, "s")
    assert raw(b, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(b, b"GET / HTTP/1.1\r\nno colon here\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(b, b"GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(b, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 8000 + b"\r\n\r\n").startswith(b"HTTP/1.1 431")
    big = b"x" * 6000
    out = raw(b, b"POST /api/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(big) + big)
    assert out.startswith(b"HTTP/1.1 413")
    assert raw(b, b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n")[:12] in (b"HTTP/1.1 414", b"HTTP/1.1 431")
    # the broker is undisturbed
    p = connected(b.port)
    p.send("SEND", {"destination": "/queue/watch"}, b"still fine")
    assert watcher.recv().body == b"still fine"
    assert req(b, "GET", "/healthz", auth=None)[0] == 200


def test_keep_alive_and_pipelining(broker):
    auth = base64.b64encode(b"admin:admin")
    one = b"GET /api/counters HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic " + auth + b"\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", broker.http_port), timeout=5)
    s.sendall(one + one)
    out = b""
    deadline = time.time() + 5
    while out.count(b"HTTP/1.1 200") < 2 and time.time() < deadline:
        out += s.recv(65536)
    assert out.count(b"HTTP/1.1 200") == 2
    s.sendall(one)
    assert s.recv(65536).startswith(b"HTTP/1.1 200")
    s.close()


def test_console_connection_limit(broker_factory):
    b = broker_factory({"http.max_connections": "2"})

    def healthz(c):
        try:
            c.request("GET", "/healthz")
            r = c.getresponse()
            r.read()
            return r.status
        except OSError:
            return None

    # two kept-alive connections, each answered: both hold a slot (one
    # may first be refused while the broker still counts the start-up
    # probe's connection)
    held = []
    deadline = time.time() + 30
    while len(held) < 2 and time.time() < deadline:
        c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=5)
        if healthz(c) == 200:
            held.append(c)
        else:
            c.close()
            time.sleep(0.05)
    assert len(held) == 2
    assert raw(b, b"").startswith(b"HTTP/1.1 503")
    for c in held:
        c.close()
    while time.time() < deadline and req(b, "GET", "/healthz", auth=None)[0] != 200:
        time.sleep(0.05)
    assert req(b, "GET", "/healthz", auth=None)[0] == 200


def test_slave_answers_status_and_points_to_master(broker_factory):
    from stompd_test import free_port, replicated
    rp = [free_port(), free_port()]
    master = broker_factory(replicated("m", rp[0], "master"))
    slave = broker_factory(replicated("s", rp[1], "slave", rp[0]), start=False)
    slave.start(wait="following master")
    assert req(slave, "GET", "/healthz", auth=None)[0] == 200
    st = get_json(slave, "/api/status")
    assert st["role"] == "slave" and st["master"]["connected"] is True
    # the page is the follower's own (t/integration/60-console-follower.py)
    s, h, data = req(slave, "GET", "/")
    assert s == 200 and h["Content-Type"].startswith("text/html") and b'class="role slave"' in data
    s, h, data = req(slave, "GET", "/api/queues")
    assert s == 503 and "this node is slave" in json.loads(data)["error"]
    assert get_json(master, "/api/status")["role"] == "master"
    replicas = get_json(master, "/api/cluster")["replicas"]
    assert len(replicas) == 1 and replicas[0]["lag"] == 0


def test_expired_counters(broker_factory):
    # A consumer holding one unacked message (prefetch 1) keeps the queue
    # in use, so what follows waits for the sweep: persistent expired
    # messages are dead-lettered, others dropped, all counted.
    b = broker_factory({"broker.expiry_check_interval": "100ms"})
    c = connected(b.port)
    c.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/ttl", "ack": "client",
                            "activemq.prefetchSize": "1"}, "s")
    p = connected(b.port)
    p.receipt("SEND", {"destination": "/queue/ttl"}, "first", b"first")
    assert c.recv().body == b"first"
    now = int(time.time() * 1000)
    p.receipt("SEND", {"destination": "/queue/ttl", "persistent": "true", "expires": str(now + 300)}, "p", b"p")
    p.receipt("SEND", {"destination": "/queue/ttl", "expires": str(now + 300)}, "np", b"np")
    p.receipt("SEND", {"destination": "/queue/ttl", "expires": str(now - 1000)}, "old", b"old")
    deadline = time.time() + 10
    while get_json(b, "/api/overview")["counters"]["expired"] < 3:
        assert time.time() < deadline, get_json(b, "/api/overview")["counters"]
        time.sleep(0.1)
    o = get_json(b, "/api/overview")
    assert o["counters"]["expired"] == 3 and o["counters"]["dead_lettered"] == 1, o["counters"]
    queues = {q["name"]: q for q in o["queues"]}
    assert queues["/queue/ttl"]["stats"]["expired"] == 3 and queues["/queue/ttl"]["stats"]["dead_lettered"] == 1
    assert queues["/queue/ttl"]["pending"] == 0
    assert queues["/queue/ActiveMQ.DLQ"]["pending"] == 1
    text = req(b, "GET", "/metrics")[2].decode()
    assert "\nstompd_expired_total 3\n" in text
    assert "\nstompd_dead_lettered_total 1\n" in text
    assert '\nstompd_destination_expired_total{destination="/queue/ttl",type="queue"} 3\n' in text
    d = connected(b.port)
    d.send("SUBSCRIBE", {"id": "d", "destination": "/queue/ActiveMQ.DLQ"})
    m = d.recv()
    assert m.body == b"p" and m["dlqDeliveryFailureCause"] == "expired"


def test_slave_names_the_master_console_and_its_lag_without_zookeeper(broker_factory):
    """Manual mode: the master tells its slaves its console address and its
    head lsn in the replication handshake and its PINGs, so a slave can name
    the console in /api/status and every 503, and report its lag."""
    from stompd_test import free_port, replicated
    rp = [free_port(), free_port()]
    master = broker_factory(replicated("m", rp[0], "master"))
    p = connected(master.port)
    # journaled before any slave is there (the receipts wait for one)
    for i in range(20):
        p.send("SEND", {"destination": "/queue/lag", "persistent": "true", "receipt": "r%d" % i}, b"x%d" % i)
    slave = broker_factory(replicated("s", rp[1], "slave", rp[0]), start=False)
    slave.start(wait="following master|snapshot installed")
    assert sorted(f["receipt-id"] for f in (p.recv(timeout=10) for _ in range(20))) == \
        sorted("r%d" % i for i in range(20))
    console = "127.0.0.1:%d" % master.http_port
    head = get_json(master, "/api/status")["lsn"]
    assert head >= 20
    st = get_json(slave, "/api/status")
    assert st["master_console"] == console and st["master"]["http"] == console
    assert st["master_lsn"] == head
    assert st["lag"] == st["master_lsn"] - st["durable_lsn"] >= 0
    # more entries: the slave hears the new head and its lag goes back to 0
    for i in range(20, 30):
        p.receipt("SEND", {"destination": "/queue/lag", "persistent": "true"}, "r%d" % i, b"x%d" % i)
    head = get_json(master, "/api/status")["lsn"]
    deadline = time.time() + 10
    while time.time() < deadline:
        st = get_json(slave, "/api/status")
        assert st["lag"] == st["master_lsn"] - st["durable_lsn"] >= 0
        if st["master_lsn"] == head and st["lag"] == 0:
            break
        time.sleep(0.1)
    assert st["master_lsn"] == head and st["lag"] == 0, st
    # every path but /healthz, /api/status, /metrics and the follower's own
    # page: 503 naming the master's console
    for path in ("/api/queues", "/api/overview", "/destination", "/nope", "/api/nope", "/favicon.ico"):
        s, h, data = req(slave, "GET", path)
        body = json.loads(data)
        assert s == 503 and body["master_console"] == console, (path, s, body)
        assert "the master's console is http://%s/" % console in body["error"]
        assert body["lag"] == 0
    # a master's unknown paths stay 404
    assert req(master, "GET", "/nope")[0] == 404


# A console send is a producer like any other: it goes through the same
# publish path as a STOMP SEND (duplicate window, persistence headers,
# flow control).

def test_console_send_drops_a_resent_duplicate(broker):
    c = connected(broker.port)
    c.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/dup"}, "s")
    body = {"destination": "/queue/dup", "body": "once", "persistent": True,
            "headers": {"_AMQ_DUPL_ID": "producer-7:1"}}
    s, h, data = req(broker, "POST", "/api/send", body)
    assert s == 200 and json.loads(data) == {"sent": True, "durable": True}
    s, h, data = req(broker, "POST", "/api/send", body)
    assert s == 200 and json.loads(data)["duplicate"] is True
    # and a STOMP resend with the same id is dropped too: one window
    p = connected(broker.port)
    p.receipt("SEND", {"destination": "/queue/dup", "persistent": "true", "_AMQ_DUPL_ID": "producer-7:1"},
              "r", b"again")
    assert c.recv().body == b"once"
    c.expect_nothing(0.5)
    assert get_json(broker, "/api/counters")["duplicates"] == 2


def test_console_send_honours_persistent_header(broker):
    s, h, data = req(broker, "POST", "/api/send", {"destination": "/queue/hdr", "body": "kept",
                                                   "headers": {"persistent": "true", "priority": "8"}})
    assert s == 200 and json.loads(data)["durable"] is True
    assert broker.stop() == 0
    broker.start()
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/hdr"})
    m = c.recv()
    assert m.body == b"kept" and m["persistent"] == "true" and m["priority"] == "8"
    s, h, data = req(broker, "POST", "/api/send", {"destination": "/queue/hdr",
                                                   "headers": {"persistent": "maybe"}})
    assert s == 400 and "persistent" in json.loads(data)["error"]


def test_console_send_waits_on_a_full_destination(broker_factory):
    b = broker_factory({"broker.dest_memory_limit": "64KiB"})
    p = connected(b.port)
    body = b"f" * 8192
    for i in range(7):
        p.receipt("SEND", {"destination": "/queue/full"}, "r%d" % i, body)
    # the console's message fills the destination: like a STOMP producer's
    # receipt, the console's answer waits until there is room again
    result = {}

    def send():
        result["answer"] = req(b, "POST", "/api/send", {"destination": "/queue/full", "body": "late" * 2048})

    import threading
    t = threading.Thread(target=send)
    t.start()
    t.join(1.0)
    assert t.is_alive(), "the console's send was answered while the destination was full"
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/full"})
    got = [c.recv().body for _ in range(8)]
    t.join(10)
    assert not t.is_alive()
    s, h, data = result["answer"]
    assert s == 200 and json.loads(data)["sent"] is True
    assert got[-1] == b"late" * 2048


def test_a_body_asked_for_with_expect_100_continue(broker):
    """curl sends "Expect: 100-continue" before a body over 1 KiB and waits
    a second for an answer: the console answers 100 Continue once the head
    is whole, then the request's own answer (HTTP/1.0, or no body: none)."""
    body = json.dumps({"destination": "/queue/expect", "body": "x" * 2000}).encode()
    auth = base64.b64encode(b"admin:admin").decode()
    s = socket.create_connection(("127.0.0.1", broker.http_port), timeout=10)
    s.sendall(("POST /api/send HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic %s\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-Continue\r\n\r\n"
               % (auth, len(body))).encode())
    interim = b""
    while not interim.endswith(b"\r\n\r\n"):
        chunk = s.recv(1)
        assert chunk, interim
        interim += chunk
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    s.sendall(body)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = s.recv(4096)
        assert chunk, answer
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    # a GET (no body) and an HTTP/1.0 request get no 100
    for head in ("GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic %s\r\n"
                 "Expect: 100-continue\r\n\r\n" % auth,
                 "POST /api/send HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Basic %s\r\n"
                 "Content-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
                 % (auth, len(body))):
        c = socket.create_connection(("127.0.0.1", broker.http_port), timeout=10)
        c.sendall(head.encode() + (body if head.startswith("POST") else b""))
        first = c.recv(12)
        assert first == b"HTTP/1.1 200" or first == b"HTTP/1.0 200", first
        c.close()
    s.close()
    c = connected(broker.port)
    c.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/expect"}, "s")
    assert c.recv(timeout=10).body == b"x" * 2000
