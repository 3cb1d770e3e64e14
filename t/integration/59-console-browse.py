"""Browsing and acting from the console: the first messages of a queue in
the order consumers get them, read from the store beyond the queue's
window without loading the queue; headers and bodies shown as safe text
whatever they hold; messages moved out of the dead-letter queue (back to
their original destination, or to a chosen queue) in one journal entry
that survives kill -9; connections closed; destinations and connections
filtered and paged by the thousand; sizes a person reads."""
import json
import re
import time

import pytest

from stompd_test import Client, connected, http_json, http_request, login_headers, write_users, wait_for

WINDOW = {"broker.queue_window": "4KiB"}


def fill(b, dest, items, body=lambda i: b"x" * 200):
    """items: a list of header dicts, one message each (persistent)."""
    p = connected(b.port)
    for i, h in enumerate(items):
        hh = {"destination": dest, "persistent": "true", "n": str(i)}
        hh.update(h)
        p.send("SEND", hh, body(i))
    p.receipt("SEND", {"destination": "/queue/marker", "persistent": "true"}, "filled", b"")
    p.close()


def queue_info(b, name):
    return {q["name"]: q for q in http_json(b.http_port, "/api/queues")}.get(name)


def browse_all(b, dest, limit=50):
    """Every page of /api/messages, following "next"."""
    out, after, pages = [], None, 0
    while True:
        path = "/api/messages?destination=%s&limit=%d" % (dest, limit) + ("&after=" + after if after else "")
        page = http_json(b.http_port, path)
        assert len(page["messages"]) <= limit
        out += page["messages"]
        pages += 1
        after = page["next"]
        if not after:
            return out, pages



def test_browse_in_dispatch_order_beyond_the_window(broker_factory):
    b = broker_factory(WINDOW)
    prio = lambda i: (i * 7) % 10  # noqa: E731
    fill(b, "/queue/deep", [{"priority": str(prio(i))} for i in range(400)])
    expected = sorted(range(400), key=lambda i: (-prio(i), i))
    q = wait_for(lambda: (lambda q: q if q["pending_on_disk"] > 300 else None)(queue_info(b, "/queue/deep")),
                 what="the queue to page out")
    in_memory = q["pending_in_memory"]
    got, pages = browse_all(b, "/queue/deep")
    assert [int(dict((h[0], h[1]) for h in m["headers"])["n"]) for m in got] == expected
    assert pages == 8
    assert any(not m["in_memory"] for m in got) and any(m["in_memory"] for m in got)
    # browsing loaded nothing into the queue
    after = queue_info(b, "/queue/deep")
    assert after["pending"] == 400 and after["pending_in_memory"] <= in_memory + 1, (q, after)
    # keys are priority:seq, and the order of the keys is the order shown
    keys = [m["key"] for m in got]
    assert all(re.fullmatch(r"\d:\d+", k) for k in keys)
    assert keys == sorted(keys, key=lambda k: (-int(k[0]), int(k[2:])))

    # a consumer holds the first five (in flight): they are not pending
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/deep", "ack": "client-individual",
                         "activemq.prefetchSize": "5"})
    held = [int(c.recv()["n"]) for _ in range(5)]
    assert held == expected[:5]
    got, _ = browse_all(b, "/queue/deep", limit=100)
    assert [int(dict((h[0], h[1]) for h in m["headers"])["n"]) for m in got] == expected[5:]
    # messages that arrive now, with the highest priority, come after the
    # other priority 9 ones and before the rest (in memory, merged with the store)
    fill(b, "/queue/deep", [{"priority": "9", "n": str(400 + i)} for i in range(3)])
    prio2 = lambda i: 9 if i >= 400 else prio(i)  # noqa: E731
    expected2 = sorted(range(403), key=lambda i: (-prio2(i), i))
    got, _ = browse_all(b, "/queue/deep", limit=100)
    assert [int(dict((h[0], h[1]) for h in m["headers"])["n"]) for m in got] == \
        [i for i in expected2 if i not in held]
    # the consumer goes: its five go back to their place
    c.close()
    wait_for(lambda: queue_info(b, "/queue/deep")["inflight"] == 0, what="the messages to come back")
    got, _ = browse_all(b, "/queue/deep", limit=100)
    order = [int(dict((h[0], h[1]) for h in m["headers"])["n"]) for m in got]
    assert order == expected2
    # after a restart (nothing in memory) the same, then the consumers' order is the browse order
    assert b.stop() == 0
    b.start()
    assert queue_info(b, "/queue/deep")["pending_in_memory"] == 0
    got2, _ = browse_all(b, "/queue/deep", limit=100)
    assert [m["key"] for m in got2] == [m["key"] for m in got]
    assert all(not m["in_memory"] for m in got2)
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/deep"})
    consumed = [c.recv() for _ in range(403)]
    assert [m["message-id"] for m in consumed] == [m["message_id"] for m in got2]


def test_browse_is_bounded(broker_factory):
    b = broker_factory({"broker.queue_window": "16KiB", "http.browse_limit": "10", "http.body_preview": "64"})
    fill(b, "/queue/b", [{} for _ in range(5)], body=lambda i: b"%d" % i + b"y" * 400000)
    fill(b, "/queue/small", [{"h": "v" * 100} for _ in range(20)], body=lambda i: b"z" * 1000)
    s, h, data = http_request(b.http_port, "GET", "/api/messages?destination=/queue/small&limit=11")
    assert s == 400 and "limit" in json.loads(data)["error"]
    page = http_json(b.http_port, "/api/messages?destination=/queue/small&limit=10")
    assert len(page["messages"]) == 10 and page["next"]
    m = page["messages"][0]
    assert m["body_size"] == 1000 and len(m["body_preview"]) == 64 and m["body_truncated"] is True
    assert [x for x in m["headers"] if x[0] == "h"] == [["h", "v" * 64, True]]
    # the default page is 20, bounded by http.browse_limit
    assert len(http_json(b.http_port, "/api/messages?destination=/queue/small")["messages"]) == 10
    # a page reads about a window of bytes (1 MiB at least): 400 KB messages
    # come three at most at a time
    first = http_json(b.http_port, "/api/messages?destination=/queue/b&limit=5")
    assert len(first["messages"]) == 3 and first["next"], [m["key"] for m in first["messages"]]
    got, pages = browse_all(b, "/queue/b", limit=5)
    assert [m["body_preview"][0] for m in got] == list("01234")
    assert pages == 2, pages
    for path, code in (("/api/messages?destination=/queue/none", 404), ("/api/messages", 400),
                       ("/api/messages?destination=/topic/t", 404),
                       ("/api/messages?destination=/queue/b&after=x", 400),
                       ("/api/messages?destination=/queue/b&after=4:", 400),
                       ("/api/messages?destination=/queue/b&limit=0", 400),
                       ("/api/messages?destination=%ZZ", 400),
                       ("/api/messages?destination=/queue/b%00", 400)):
        assert http_request(b.http_port, "GET", path)[0] == code, path


HOSTILE = {
    "x-script": "<script>document.title='pwned'</script>",
    "<b onmouseover=alert(1)>": "\"'><img src=x onerror=alert(2)>",
    "x-ctl": "a\x01b\x7fc",
}
HOSTILE_BODY = b"</pre><script>alert(3)</script><img src=x onerror=alert(4)>\xff\xfe\x00end"


def test_hostile_content_is_shown_as_text(broker_factory):
    b = broker_factory()
    p = connected(b.port)
    # a NUL in the body: sent with content-length
    p.send("SEND", dict(HOSTILE, destination="/queue/hostile", persistent="true", receipt="r"), HOSTILE_BODY,
           content_length=True)
    assert p.recv().command == "RECEIPT"
    page = http_json(b.http_port, "/api/messages?destination=/queue/hostile")
    m = page["messages"][0]
    hs = {h[0]: h[1] for h in m["headers"]}
    assert hs["x-script"] == HOSTILE["x-script"]
    assert hs["<b onmouseover=alert(1)>"] == HOSTILE["<b onmouseover=alert(1)>"]
    assert hs["x-ctl"] == "a\\x01b\\x7fc"
    assert m["body_preview"] == "</pre><script>alert(3)</script><img src=x onerror=alert(4)>\\xff\\xfe\\x00end"
    s, h, data = http_request(b.http_port, "GET", "/destination?name=/queue/hostile")
    html = data.decode()
    assert s == 200 and "default-src 'none'" in h["Content-Security-Policy"]
    for raw in ("<script>document", "<script>alert", "<img src=x", "<b onmouseover", "'><img"):
        assert raw not in html, raw
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in html
    assert "&lt;/pre&gt;&lt;script&gt;alert(3)&lt;/script&gt;&lt;img src=x onerror=alert(4)&gt;\\xff\\xfe\\x00end" \
        in html
    # the only script is the console's own, by URL
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/console.js" defer>']


def dead_letter(b, dest, bodies, headers=None):
    """Send persistent messages and NACK each once (max_redeliveries 0): they
    go to the DLQ with original-destination."""
    p = connected(b.port)
    for i, body in enumerate(bodies):
        h = {"destination": dest, "persistent": "true", "n": str(i)}
        h.update(headers or {})
        p.receipt("SEND", h, "r%d" % i, body)
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": dest, "ack": "client-individual"})
    for _ in bodies:
        m = c.recv()
        c.send("NACK", {"id": m["ack"]})
    c.receipt("UNSUBSCRIBE", {"id": "1"}, "u")
    c.close()
    wait_for(lambda: (queue_info(b, "/queue/ActiveMQ.DLQ") or {}).get("pending", 0) >= len(bodies),
             what="the dead letters")


def test_dead_letters_retried_and_moved_survive_kill_9(broker_factory):
    b = broker_factory({"broker.max_redeliveries": "0"})
    dead_letter(b, "/queue/orders", [b"o0", b"o1", b"o2", b"o3"])
    dlq = http_json(b.http_port, "/api/messages?destination=/queue/ActiveMQ.DLQ")["messages"]
    assert [m["body_preview"] for m in dlq] == ["o0", "o1", "o2", "o3"]
    keys = [m["key"] for m in dlq]
    assert all({h[0]: h[1] for h in m["headers"]}["original-destination"] == "/queue/orders" for m in dlq)
    # retry two (back to /queue/orders), move one elsewhere, one stays
    s, h, data = http_request(b.http_port, "POST", "/api/messages/move",
                              {"destination": "/queue/ActiveMQ.DLQ", "messages": keys[:2]})
    assert s == 200, data
    r = json.loads(data)
    assert r["moved"] == [{"message": keys[0], "to": "/queue/orders"}, {"message": keys[1], "to": "/queue/orders"}]
    assert r["failed"] == []
    s, h, data = http_request(b.http_port, "POST", "/api/messages/move",
                              {"destination": "/queue/ActiveMQ.DLQ", "messages": [keys[2]], "to": "/queue/later"})
    assert s == 200 and json.loads(data)["moved"] == [{"message": keys[2], "to": "/queue/later"}], data
    # answered once durable: a crash now loses nothing and duplicates nothing
    b.kill()
    b.restart()
    q = {x["name"]: x for x in http_json(b.http_port, "/api/queues")}
    assert q["/queue/orders"]["pending"] == 2 and q["/queue/later"]["pending"] == 1
    assert q["/queue/ActiveMQ.DLQ"]["pending"] == 1
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/orders"})
    back = [c.recv(), c.recv()]
    assert [m.body for m in back] == [b"o0", b"o1"]
    for m in back:
        # as it was sent: what dead-lettering added is gone; same message-id
        assert m.get("original-destination") is None and m.get("dlqDeliveryFailureCause") is None
        assert m["persistent"] == "true" and m["destination"] == "/queue/orders"
    assert [m["message-id"] for m in back] == [dlq[0]["message_id"], dlq[1]["message_id"]]
    c.expect_nothing(0.3)
    left = http_json(b.http_port, "/api/messages?destination=/queue/ActiveMQ.DLQ")["messages"]
    assert [m["body_preview"] for m in left] == ["o3"]


def test_move_refusals(broker_factory):
    b = broker_factory({"broker.max_redeliveries": "0", "http.browse_limit": "3"})
    dead_letter(b, "/queue/src", [b"a", b"b"])
    keys = [m["key"] for m in http_json(b.http_port, "/api/messages?destination=/queue/ActiveMQ.DLQ")["messages"]]
    # a message sent straight to a queue has no original-destination
    p = connected(b.port)
    p.receipt("SEND", {"destination": "/queue/plain", "persistent": "true"}, "r", b"p")
    plain = http_json(b.http_port, "/api/messages?destination=/queue/plain")["messages"][0]["key"]

    def move(body):
        s, h, data = http_request(b.http_port, "POST", "/api/messages/move", body)
        return s, json.loads(data)

    dlq = "/queue/ActiveMQ.DLQ"
    for body, why in (({"destination": dlq, "messages": keys, "to": "/topic/x"}, "queue only"),
                      ({"destination": dlq, "messages": keys, "to": dlq}, "in that queue already"),
                      ({"destination": dlq, "messages": keys, "to": "/temp-queue/x"}, "/remote-temp-queue/"),
                      ({"destination": dlq, "messages": keys, "to": "/nowhere"}, "unknown destination"),
                      ({"destination": dlq, "messages": []}, "messages"),
                      ({"destination": dlq, "messages": keys * 2}, "http.browse_limit"),
                      ({"destination": "/topic/t", "messages": keys}, "no such destination"),
                      ({"destination": dlq, "messages": keys, "to": 5}, "queue name")):
        s, r = move(body)
        assert s in (400, 404) and why in r["error"], (body, s, r)
    s, r = move({"destination": "/queue/plain", "messages": [plain]})
    assert s == 409 and r["moved"] == [] and "original-destination" in r["failed"][0]["error"]
    s, r = move({"destination": dlq, "messages": ["4:999999", "x", keys[0]]})
    assert s == 200 and [m["message"] for m in r["moved"]] == [keys[0]]
    assert [f["message"] for f in r["failed"]] == ["4:999999", "x"]
    assert "no such message" in r["failed"][0]["error"] and "key" in r["failed"][1]["error"]
    # a message a consumer holds is not pending: it cannot move
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": dlq, "ack": "client"})
    assert c.recv().body == b"b"
    s, r = move({"destination": dlq, "messages": [keys[1]], "to": "/queue/x"})
    assert s == 409 and "delivered" in r["failed"][0]["error"]
    # nothing was lost on the way: refused messages stayed where they were
    c.close()
    wait_for(lambda: queue_info(b, dlq)["pending"] == 1, what="the held message back")
    assert queue_info(b, "/queue/plain")["pending"] == 1 and queue_info(b, "/queue/src")["pending"] == 1


def test_move_a_message_only_in_the_store(broker_factory):
    b = broker_factory(WINDOW)
    fill(b, "/queue/big", [{} for _ in range(200)])
    wait_for(lambda: queue_info(b, "/queue/big")["pending_on_disk"] > 150, what="paging")
    got, _ = browse_all(b, "/queue/big", limit=100)
    target = got[180]
    assert not target["in_memory"]
    s, h, data = http_request(b.http_port, "POST", "/api/messages/move",
                              {"destination": "/queue/big", "messages": [target["key"]], "to": "/queue/picked"})
    assert s == 200 and json.loads(data)["failed"] == [], data
    assert queue_info(b, "/queue/big")["pending"] == 199
    after, _ = browse_all(b, "/queue/big", limit=100)
    assert [m["key"] for m in after] == [m["key"] for m in got if m is not target]
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/picked"})
    assert c.recv()["n"] == "180"
    c.send("SUBSCRIBE", {"id": "2", "destination": "/queue/big"})
    ns = [int(c.recv()["n"]) for _ in range(199)]
    assert ns == [i for i in range(200) if i != 180]
    c.expect_nothing(0.3)


def test_close_a_connection(broker):
    c = connected(broker.port)
    c.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/held", "ack": "client"}, "s")
    p = connected(broker.port)
    p.receipt("SEND", {"destination": "/queue/held"}, "r", b"held")
    assert c.recv().body == b"held"
    conns = http_json(broker.http_port, "/api/connections")
    mine = [x for x in conns if x["subscriptions"]]
    assert len(mine) == 1
    errors = http_json(broker.http_port, "/api/counters")["protocol_errors"]
    s, h, data = http_request(broker.http_port, "POST", "/api/connections/close", {"id": mine[0]["id"]})
    assert s == 200 and json.loads(data) == {"closed": mine[0]["id"]}
    f = c.expect_error("closed by an administrator")
    assert f.command == "ERROR"
    # its message goes back; an administrator's close is not a protocol error
    wait_for(lambda: queue_info(broker, "/queue/held")["pending"] == 1, what="the message back")
    assert http_json(broker.http_port, "/api/counters")["protocol_errors"] == errors
    assert broker.wait_log(r"connection %d \(127\.0\.0\.1:\d+\) closed by admin \(127\.0\.0\.1:" % mine[0]["id"])
    assert http_request(broker.http_port, "POST", "/api/connections/close", {"id": mine[0]["id"]})[0] == 404
    assert http_request(broker.http_port, "POST", "/api/connections/close", {"id": "1"})[0] == 400
    p.receipt("SEND", {"destination": "/queue/held"}, "r2", b"still served")


def test_thousands_of_destinations_filtered_and_paged(broker_factory):
    b = broker_factory({"broker.max_destinations": "5000", "stomp.max_subscriptions": "5000"})
    c = connected(b.port)
    for i in range(1500):
        c.send("SUBSCRIBE", {"id": "q%d" % i, "destination": "/queue/app.%s.%04d" % ("eu" if i % 3 else "us", i)})
    for i in range(120):
        c.send("SUBSCRIBE", {"id": "t%d" % i, "destination": "/topic/news.%03d" % i})
    c.receipt("SUBSCRIBE", {"id": "last", "destination": "/queue/zz-last"}, "s")
    # the API: RabbitMQ's paging
    r = http_json(b.http_port, "/api/queues?page=3&page_size=100")
    assert r["total_count"] == 1501 and r["filtered_count"] == 1501 and r["page_count"] == 16
    assert r["item_count"] == 100 and r["items"][0]["name"] == "/queue/app.eu.%04d" % (sorted(
        [i for i in range(1500) if i % 3])[200])
    r = http_json(b.http_port, "/api/queues?page=1&page_size=500&name=.US.")
    assert r["filtered_count"] == 500 and all(".us." in x["name"] for x in r["items"])
    assert http_json(b.http_port, "/api/queues?page=2&page_size=500&name=.us.")["items"] == []
    assert len(http_json(b.http_port, "/api/topics?name=news.1")) == 20
    assert http_json(b.http_port, "/api/connections?page=1")["total_count"] == 1
    for bad in ("page=0", "page_size=501", "page=x", "page_size="):
        assert http_request(b.http_port, "GET", "/api/queues?" + bad)[0] == 400, bad
    # the page: 50 rows a table, a filter, links between pages
    s, h, data = http_request(b.http_port, "GET", "/")
    page = data.decode()
    assert page.count("<tr><td class=\"name\">") == 100  # 50 queues, 50 topics
    assert 'id="queues-count">(1501)' in page and 'page 1 of 31 (1501 queues)' in page
    nxt = re.search(r'<nav class="pager" id="pager-q">.*?<a rel="next" href="([^"]+)"', page).group(1)
    s, h, data = http_request(b.http_port, "GET", nxt.replace("&amp;", "&"))
    page2 = data.decode()
    eu = ["/queue/app.eu.%04d</a>" % i for i in range(1500) if i % 3]
    assert "page 2 of 31" in page2 and eu[50] in page2 and eu[99] in page2
    assert eu[49] not in page2 and eu[100] not in page2 and eu[49] in page
    s, h, data = http_request(b.http_port, "GET", "/?filter=zz-LAST&qp=1")
    only = data.decode()
    assert only.count("<tr><td class=\"name\">") == 1 and "/queue/zz-last</a>" in only
    assert 'value="zz-LAST"' in only and "no topic matches" in only
    s, h, data = http_request(b.http_port, "GET", "/?filter=%3Cscript%3E")
    assert s == 200 and b"<script>" not in data and b'value="&lt;script&gt;"' in data
    assert http_request(b.http_port, "GET", "/?qp=0")[0] == 400


def test_sizes_a_person_reads(broker_factory):
    b = broker_factory()
    p = connected(b.port)
    for i in range(3):
        p.receipt("SEND", {"destination": "/queue/heavy"}, "r%d" % i, b"m" * (1024 * 1024))
    p.receipt("SEND", {"destination": "/queue/light"}, "l", b"x" * 1500)
    s, h, data = http_request(b.http_port, "GET", "/")
    page = data.decode()
    heavy = re.search(r'/queue/heavy</a></td>(.*?)</tr>', page, re.S).group(1)
    light = re.search(r'/queue/light</a></td>(.*?)</tr>', page, re.S).group(1)
    mem = lambda row: re.search(r'<td class="num memory" title="(\d+) bytes">([^<]+)</td>', row)  # noqa: E731
    assert mem(heavy).group(2) == "3.0 MiB" and int(mem(heavy).group(1)) > 3 * 1024 * 1024
    assert re.fullmatch(r"1\.\d KiB", mem(light).group(2)), mem(light).group(2)
    assert re.search(r"3\.0 MiB of messages held \(limit 1\.0 GiB\)", page)
    s, h, data = http_request(b.http_port, "GET", "/destination?name=/queue/heavy")
    assert b'<span class="size">1.0 MiB</span>' in data


def test_browse_move_and_close_follow_the_acl(broker_factory, tmp_path):
    """With auth.acl, the console acts for its user: browsing a queue is
    read on it, moving messages out of a queue (a dead letter's retry too)
    admin on it and write on the queue they go to, closing a connection
    admin on every destination it subscribes to."""
    users = write_users(str(tmp_path / "users"), {"root": ("root pw", ["admins", "ops"]),
                                                   "alice": ("alice pw", ["app"])})
    (tmp_path / "acl").write_text("queue:ops.>         read=ops write=ops admin=ops\n"
                                  "queue:view.>        read=app,ops write=app,ops admin=app\n"
                                  "queue:secret.>      read=app write=app admin=app\n"
                                  "queue:drop.>        write=ops admin=ops\n"
                                  "queue:ActiveMQ.DLQ  read=ops admin=ops\n")
    b = broker_factory({"auth.users": users, "auth.acl": str(tmp_path / "acl"), "broker.max_redeliveries": "0"})
    root = ("root", "root pw")

    def call(method, path, body=None):
        s, _, data = http_request(b.http_port, method, path, body, auth=root)
        return s, data

    def jcall(method, path, body=None):
        s, data = call(method, path, body)
        return s, json.loads(data)

    def pending(name):
        return {q["name"]: q["pending"] for q in jcall("GET", "/api/queues")[1]}.get(name, 0)

    alice = Client(b.port)
    alice.connect(headers=login_headers("alice", "alice pw"))
    for dest, body in (("/queue/view.a", b"a0"), ("/queue/view.a", b"a1"), ("/queue/secret.s", b"s0"),
                       ("/queue/view.d", b"d0")):
        alice.receipt("SEND", {"destination": dest, "persistent": "true"}, "r-" + body.decode(), body)
    # two dead letters: one from a queue root may write to, one it may not
    for dest in ("/queue/secret.s", "/queue/view.d"):
        alice.send("SUBSCRIBE", {"id": dest, "destination": dest, "ack": "client-individual"})
        m = alice.recv()
        alice.send("NACK", {"id": m["ack"]})
        alice.receipt("UNSUBSCRIBE", {"id": dest}, "u" + dest)
    wait_for(lambda: pending("/queue/ActiveMQ.DLQ") == 2, what="the dead letters")

    # read on view.a: browsed; no admin on it: nothing moves out
    s, r = jcall("GET", "/api/messages?destination=/queue/view.a")
    assert s == 200 and [m["body_preview"] for m in r["messages"]] == ["a0", "a1"]
    s, r = jcall("POST", "/api/messages/move", {"destination": "/queue/view.a", "messages": [r["messages"][0]["key"]],
                                                "to": "/queue/ops.b"})
    assert s == 403 and r["error"] == "access denied: no admin permission on /queue/view.a"
    assert pending("/queue/view.a") == 2

    # a retry out of the DLQ (admin there): each message needs write on its original destination
    dlq = jcall("GET", "/api/messages?destination=/queue/ActiveMQ.DLQ")[1]["messages"]
    orig = {m["key"]: {h[0]: h[1] for h in m["headers"]}["original-destination"] for m in dlq}
    s, r = jcall("POST", "/api/messages/move", {"destination": "/queue/ActiveMQ.DLQ", "messages": sorted(orig)})
    assert s == 200, r
    assert r["moved"] == [{"message": k, "to": "/queue/view.d"} for k in orig if orig[k] == "/queue/view.d"]
    assert r["failed"] == [{"message": k, "error": "access denied: no write permission on /queue/secret.s"}
                           for k in orig if orig[k] == "/queue/secret.s"]
    wait_for(lambda: pending("/queue/view.d") == 1, what="the retried message")
    assert pending("/queue/ActiveMQ.DLQ") == 1

    # out of a queue it administers: to one it may write to (created: admin there too), not elsewhere
    for body in ("o0", "o1"):
        assert call("POST", "/api/send", {"destination": "/queue/ops.a", "body": body})[0] == 200
    keys = [m["key"] for m in jcall("GET", "/api/messages?destination=/queue/ops.a")[1]["messages"]]
    s, r = jcall("POST", "/api/messages/move", {"destination": "/queue/ops.a", "messages": keys[:1],
                                                "to": "/queue/nowhere.x"})
    assert s == 403 and r["error"] == "access denied: no write permission on /queue/nowhere.x"
    s, r = jcall("POST", "/api/messages/move", {"destination": "/queue/ops.a", "messages": keys[:1],
                                                "to": "/queue/drop.x"})
    assert s == 200 and r["moved"] == [{"message": keys[0], "to": "/queue/drop.x"}], r
    assert pending("/queue/drop.x") == 1 and pending("/queue/ops.a") == 1

    # write and admin on drop.x but no read: not browsed, as JSON or on its page
    s, r = jcall("GET", "/api/messages?destination=/queue/drop.x")
    assert s == 403 and r["error"] == "access denied: no read permission on /queue/drop.x"
    s, data = call("GET", "/destination?name=/queue/drop.x")
    assert s == 200 and b'id="no-read"' in data and b'id="messages"' not in data and b"o0" not in data
    s, data = call("GET", "/destination?name=/queue/ops.a")
    assert s == 200 and b'id="messages"' in data and b'id="no-read"' not in data

    # closing: alice's connection holds view.a (root: no admin there), root's own ops.idle
    alice.receipt("SUBSCRIBE", {"id": "held", "destination": "/queue/view.a", "ack": "client"}, "sa")
    mine = Client(b.port)
    mine.connect(headers=login_headers("root", "root pw"))
    mine.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/ops.idle", "ack": "client"}, "sr")
    conns = {c["user"]: c for c in jcall("GET", "/api/connections")[1]}
    s, r = jcall("POST", "/api/connections/close", {"id": conns["alice"]["id"]})
    assert s == 403 and r["error"] == "access denied: no admin permission on /queue/view.a"
    s, r = jcall("POST", "/api/connections/close", {"id": conns["root"]["id"]})
    assert s == 200 and r == {"closed": conns["root"]["id"]}
    mine.expect_error("closed by an administrator")
    assert [c["user"] for c in jcall("GET", "/api/connections")[1]] == ["alice"]
    assert [alice.recv().body, alice.recv().body] == [b"a0", b"a1"]   # still served
    assert b.wait_log(r"connection %d \(127\.0\.0\.1:\d+\) closed by root \(127\.0\.0\.1:" % conns["root"]["id"])
    m = re.search(r"^stompd_access_denied_total (\d+)$", call("GET", "/metrics")[1].decode(), re.M)
    assert int(m.group(1)) == 6
