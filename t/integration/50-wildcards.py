"""Wildcard subscriptions with ActiveMQ's rules: '.'-separated segments,
'*' matching exactly one segment and '>' the rest (zero or more), for
topics (every matching topic, created before or after, durable
subscriptions included, across a restart) and for queues (a wildcard
consumer takes from every matching queue, existing and future); composite
SUBSCRIBE; SEND to a pattern is an ERROR."""
import base64
import http.client
import json
import time

import pytest

from stompd_test import Client, connected, login_headers, write_users


def console(b, path):
    c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=5)
    c.request("GET", path, headers={"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()})
    r = c.getresponse()
    data = r.read()
    c.close()
    assert r.status == 200, (r.status, data)
    return json.loads(data)


def sub(c, dest, sid="s", receipt="sub", ack=None, prefetch=None, durable=None):
    hs = {"id": sid, "destination": dest}
    if ack:
        hs["ack"] = ack
    if prefetch:
        hs["activemq.prefetchSize"] = prefetch
    if durable:
        hs["activemq.subscriptionName"] = durable
    c.receipt("SUBSCRIBE", hs, receipt)


def collect(c, n=None, timeout=1.0):
    """MESSAGE frames until n have come, or none for `timeout` seconds."""
    got = []
    while n is None or len(got) < n:
        try:
            f = c.recv(timeout=timeout if n is None else 10)
        except TimeoutError:
            break
        assert f.command == "MESSAGE", f
        got.append(f)
    return got


def send_all(b, dests, persistent=False):
    p = connected(b.port)
    for i, d in enumerate(dests):
        h = {"destination": d}
        if persistent:
            h["persistent"] = "true"
        p.receipt("SEND", h, "r%d" % i, d.encode())
    p.close()


def test_star_matches_exactly_one_segment(broker):
    c = connected(broker.port)
    sub(c, "/topic/prices.*")
    send_all(broker, ["/topic/prices", "/topic/prices.eu", "/topic/prices.eu.fx", "/topic/pricesx.eu",
                      "/topic/prices.us"])
    got = collect(c)
    assert sorted(f.body for f in got) == [b"/topic/prices.eu", b"/topic/prices.us"]
    # each MESSAGE names the topic it was published to, and the subscription
    for f in got:
        assert f["destination"] == f.body.decode()
        assert f["subscription"] == "s"


def test_gt_matches_zero_or_more_segments(broker):
    c = connected(broker.port)
    sub(c, "/topic/prices.>")
    c2 = connected(broker.port)
    sub(c2, "/topic/*.eu.>")
    send_all(broker, ["/topic/prices", "/topic/prices.eu", "/topic/prices.eu.fx", "/topic/pricesx.eu",
                      "/topic/other.eu", "/topic/prices.us"])
    assert sorted(f.body for f in collect(c)) == [b"/topic/prices", b"/topic/prices.eu", b"/topic/prices.eu.fx",
                                                  b"/topic/prices.us"]
    assert sorted(f.body for f in collect(c2)) == [b"/topic/other.eu", b"/topic/prices.eu",
                                                   b"/topic/prices.eu.fx", b"/topic/pricesx.eu"]


def test_wildcard_topic_gets_topics_created_later_and_once_per_message(broker):
    c = connected(broker.port)
    # nothing exists yet; a composite that overlaps itself gets each message once
    sub(c, "/topic/news.>,/topic/news.sport,/topic/news.*")
    topics = console(broker, "/api/topics")
    wild = [t for t in topics if t["name"] == "/topic/news.>"]
    assert wild and wild[0]["wildcard"] is True and wild[0]["subscribers"] == 1
    send_all(broker, ["/topic/news.sport", "/topic/news.sport.tennis", "/topic/news", "/topic/weather"])
    got = collect(c)
    assert sorted(f.body for f in got) == [b"/topic/news", b"/topic/news.sport", b"/topic/news.sport.tennis"]
    # the exact-topic subscriber and the wildcard one are different subscriptions: one each
    c2 = connected(broker.port)
    sub(c2, "/topic/news.sport", sid="exact")
    send_all(broker, ["/topic/news.sport"])
    assert [f.body for f in collect(c)] == [b"/topic/news.sport"]
    assert [f["subscription"] for f in collect(c2)] == ["exact"]
    c.receipt("UNSUBSCRIBE", {"id": "s"}, "u")
    send_all(broker, ["/topic/news.sport"])
    assert collect(c, timeout=0.5) == []


@pytest.mark.parametrize("dest", ["/queue/orders.*", "/topic/prices.>", "/queue/a,/topic/b.*"])
def test_send_to_a_wildcard_is_an_error(broker, dest):
    c = connected(broker.port)
    c.send("SEND", {"destination": dest, "receipt": "r"}, b"x")
    f = c.expect_error("invalid destination")
    assert f["receipt-id"] == "r"
    assert "wildcard" in f.body.decode()
    # only that connection went
    ok = connected(broker.port)
    ok.receipt("SEND", {"destination": "/queue/fine"}, "r")


def test_wildcard_queue_consumer_takes_from_existing_and_future_queues(broker):
    p = connected(broker.port)
    for q in ["orders.eu", "orders.us", "ordersx", "orders.eu.late"]:
        p.receipt("SEND", {"destination": "/queue/" + q, "persistent": "true"}, "r-" + q, q.encode())
    c = connected(broker.port)
    sub(c, "/queue/orders.*", ack="client", prefetch="10")
    got = collect(c, 2)
    assert sorted(f.body for f in got) == [b"orders.eu", b"orders.us"]
    for f in got:
        assert f["destination"] == "/queue/" + f.body.decode()
    # a queue created after the SUBSCRIBE is consumed from too
    p.receipt("SEND", {"destination": "/queue/orders.asia"}, "r-asia", b"orders.asia")
    f = collect(c, 1)[0]
    assert f.body == b"orders.asia" and f["destination"] == "/queue/orders.asia"
    # a cumulative ACK covers what came from every queue
    c.receipt("ACK", {"id": f["ack"]}, "ack")
    c.close()
    c = connected(broker.port)
    sub(c, "/queue/orders.>")
    assert sorted(x.body for x in collect(c)) == [b"orders.eu.late"]
    # what was not matched is still there
    c3 = connected(broker.port)
    sub(c3, "/queue/ordersx")
    assert [x.body for x in collect(c3)] == [b"ordersx"]
    queues = {q["name"]: q for q in console(broker, "/api/queues")}
    assert queues["/queue/orders.eu"]["pending"] == 0
    assert queues["/queue/orders.eu"]["consumers"] == 1  # the '>' consumer


def test_wildcard_queue_consumer_shares_one_prefetch_and_load_balances(broker):
    p = connected(broker.port)
    for i in range(4):
        p.receipt("SEND", {"destination": "/queue/jobs.a"}, "a%d" % i, b"a%d" % i)
        p.receipt("SEND", {"destination": "/queue/jobs.b"}, "b%d" % i, b"b%d" % i)
    c = connected(broker.port)
    sub(c, "/queue/jobs.*", ack="client-individual", prefetch="1")
    # one in flight across both queues
    first = collect(c, 1)[0]
    assert collect(c, timeout=0.5) == []
    c.send("NACK", {"id": first["ack"]})
    taken = []
    while len(taken) < 8:
        f = collect(c, 1)[0]
        taken.append(f.body)
        c.send("ACK", {"id": f["ack"]})
    assert sorted(set(taken)) == sorted([b"a%d" % i for i in range(4)] + [b"b%d" % i for i in range(4)])
    # an exact consumer of one queue and the wildcard consumer share it
    for i in range(10):
        p.receipt("SEND", {"destination": "/queue/jobs.a"}, "x%d" % i, b"x%d" % i)
    c.close()
    w = connected(broker.port)
    e = connected(broker.port)
    sub(w, "/queue/jobs.*", sid="w", ack="client-individual", prefetch="1")
    sub(e, "/queue/jobs.a", sid="e", ack="client-individual", prefetch="1")
    counts = {"w": 0, "e": 0}
    deadline = time.time() + 20
    while sum(counts.values()) < 10 and time.time() < deadline:
        for name, cl in (("w", w), ("e", e)):
            try:
                f = cl.recv(timeout=0.2)
            except TimeoutError:
                continue
            counts[name] += 1
            cl.send("ACK", {"id": f["ack"]})
    assert sum(counts.values()) == 10 and counts["w"] > 0 and counts["e"] > 0, counts


def test_composite_subscribe_takes_from_each(broker):
    c = connected(broker.port)
    sub(c, "/queue/inbox,/topic/alerts,/queue/audit.*")
    send_all(broker, ["/queue/inbox", "/topic/alerts", "/queue/audit.x", "/queue/other", "/topic/other"])
    got = collect(c)
    assert sorted(f.body for f in got) == [b"/queue/audit.x", b"/queue/inbox", b"/topic/alerts"]
    conns = console(broker, "/api/connections")
    subs = [s for cn in conns for s in cn["subscriptions"]]
    assert any(s["destination"] == "/queue/inbox,/topic/alerts,/queue/audit.*" for s in subs)
    c.receipt("UNSUBSCRIBE", {"id": "s"}, "u")
    send_all(broker, ["/queue/inbox", "/topic/alerts"])
    assert collect(c, timeout=0.5) == []
    # the queue kept its message for the next consumer
    c2 = connected(broker.port)
    sub(c2, "/queue/inbox")
    assert [f.body for f in collect(c2)] == [b"/queue/inbox"]


def test_composite_subscribe_errors(broker):
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "s", "destination": "/queue/a,,/queue/b", "receipt": "r"})
    assert "empty destination" in c.expect_error("invalid destination").body.decode()
    c = connected(broker.port, headers={"client-id": "dur"})
    c.send("SUBSCRIBE", {"id": "s", "destination": "/topic/a,/topic/b", "activemq.subscriptionName": "x"})
    c.expect_error("durable subscription needs one topic")


@pytest.mark.parametrize("kill", [False, True])
def test_wildcard_durable_subscription_across_restart(broker_factory, kill):
    b = broker_factory()
    c = connected(b.port, headers={"client-id": "reader"})
    sub(c, "/topic/feed.>", durable="all", ack="client-individual")
    c.receipt("DISCONNECT", {}, "bye")
    # published while the subscriber is away, to topics that did not exist
    send_all(b, ["/topic/feed.a", "/topic/feed.b.c", "/topic/other"], persistent=True)
    if kill:
        b.kill()
    else:
        assert b.stop() == 0
    b.restart()
    send_all(b, ["/topic/feed.after"], persistent=True)
    c = connected(b.port, headers={"client-id": "reader"})
    sub(c, "/topic/feed.>", durable="all", ack="client-individual")
    got = collect(c, 3)
    assert sorted((f["destination"], f.body) for f in got) == [
        ("/topic/feed.a", b"/topic/feed.a"), ("/topic/feed.after", b"/topic/feed.after"),
        ("/topic/feed.b.c", b"/topic/feed.b.c")]
    for f in got:
        c.receipt("ACK", {"id": f["ack"]}, "a-" + f["ack"])
    c.receipt("DISCONNECT", {}, "bye")
    b.kill()
    b.restart()
    c = connected(b.port, headers={"client-id": "reader"})
    sub(c, "/topic/feed.>", durable="all")
    assert collect(c, timeout=0.5) == []
    topics = {t["name"]: t for t in console(b, "/api/topics")}
    assert [d["name"] for d in topics["/topic/feed.>"]["durable_subscriptions"]] == ["all"]


def test_wildcard_consumer_resumes_after_its_output_was_full(broker_factory):
    # its socket fills, the broker stops writing to it; once it reads,
    # every leg's queue is dispatched again
    b = broker_factory({"stomp.output_limit": "64KiB"})
    body = b"z" * 1024
    p = connected(b.port)
    for i in range(3000):
        p.send("SEND", {"destination": "/queue/bulk.%d" % (i % 3)}, body)
    p.receipt("SEND", {"destination": "/queue/bulk.0"}, "last", body)
    c = Client(b.port, rcvbuf=4096)
    c.connect()
    c.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/bulk.*"}, "sub")
    time.sleep(0.5)  # it does not read: its output fills
    got = 0
    while got < 3001:
        f = c.recv(timeout=10)
        assert f.command == "MESSAGE" and f.body == body
        got += 1
    assert got == 3001


# Durable subscriptions of a topic and of wildcard topics matching it, with
# selectors, created interleaved (so the journal entry names them in an
# order no single topic's list has). budget: the default, and one that
# covers about one LIKE over the 600-byte header per message, so most
# verdicts are put off and made on the backlog.
DURABLES = [  # (client-id, destination, selector)
    ("d1", "/topic/px.*", "k = 'b' AND v LIKE '%z'"),
    ("d2", "/topic/px.a", "k IN ('b', 'c') AND v LIKE '%z'"),
    ("d3", "/topic/px.>", None),
    ("d4", "/topic/px.a", "v LIKE '%z'"),
    ("d5", "/topic/px.*", "k = 'q' AND v LIKE '%z'"),
]
PUBLISHED = [("/topic/px.a", "a"), ("/topic/px.a", "b"), ("/topic/px.a", "c"), ("/topic/px.b", "b"),
             ("/topic/px.b.c", "b")]
V = "y" * 599 + "z"


def durable_sub(b, cid, dest, selector):
    c = connected(b.port, headers={"client-id": cid})
    hs = {"id": "d", "destination": dest, "activemq.subscriptionName": "n", "ack": "client-individual"}
    if selector:
        hs["selector"] = selector
    c.receipt("SUBSCRIBE", hs, "s")
    return c


def durable_wants(cid):
    want = {"d1": {("/topic/px.a", "b"), ("/topic/px.b", "b")},
            "d2": {("/topic/px.a", "b"), ("/topic/px.a", "c")},
            "d3": set(PUBLISHED),
            "d4": {("/topic/px.a", "a"), ("/topic/px.a", "b"), ("/topic/px.a", "c")},
            "d5": set()}
    return want[cid]


def durable_pending(b, cid, dest):
    topics = console(b, "/api/topics")
    for t in topics:
        if t["name"] == dest:
            for d in t["durable_subscriptions"]:
                if d["client_id"] == cid:
                    return d["pending"] + d["inflight"]
    raise AssertionError((cid, dest, topics))


@pytest.mark.parametrize("budget", ["100000", "2000"])
def test_wildcard_durables_get_what_the_journal_names(broker_factory, budget):
    """A persistent message is journaled once for every durable
    subscription it reaches, its topic's and those of every matching
    wildcard topic, each after its selector; the backlogs hold exactly
    that, live and after a restart, and nothing stays pending once acked."""
    b = broker_factory({"stomp.selector_budget": budget, "broker.queue_window": "4KiB"})
    for cid, dest, sel in DURABLES:
        durable_sub(b, cid, dest, sel).close()
    p = connected(b.port)
    for i, (dest, k) in enumerate(PUBLISHED):
        p.send("SEND", {"destination": dest, "persistent": "true", "k": k, "v": V}, dest.encode())
    p.receipt("SEND", {"destination": "/queue/marker"}, "sent")
    for restart in (False, True):
        if restart:
            b.kill()
            b.restart()
        for cid, dest, sel in DURABLES:
            c = durable_sub(b, cid, dest, sel)
            want = durable_wants(cid)
            got = collect(c, len(want), timeout=30)
            assert {(f["destination"], f["k"]) for f in got} == want, (cid, restart, got)
            assert collect(c, timeout=0.3) == [], cid
            if restart:
                for f in got:
                    c.receipt("ACK", {"id": f["ack"]}, "a-" + f["ack"])
            c.close()
    deadline = time.time() + 30
    for cid, dest, _ in DURABLES:
        while durable_pending(b, cid, dest) != 0:
            assert time.time() < deadline, (cid, console(b, "/api/topics"))
            time.sleep(0.1)


ACL_USERS = {"alice": ("a-pw", ["app"]), "bob": ("b-pw", ["ops"]), "carol": ("c-pw", [])}
ACL = """queue:jobs.>        read=app write=app admin=app
queue:jobs.secret   read=ops write=app admin=app
topic:news.>        read=app write=app admin=app
topic:news.secret   read=ops write=app admin=app
"""


def acl_login(b, user):
    c = Client(b.port)
    c.connect(headers=login_headers(user, ACL_USERS[user][0]))
    return c


def test_wildcard_subscriptions_read_only_what_they_may(broker_factory, tmp_path):
    """auth.acl: a wildcard subscription is allowed as named, and then
    takes only from the destinations it matches that its user may read:
    a wildcard consumer does not attach to a queue it may not read
    (existing or created later), a wildcard topic subscription does not
    receive what is published to a topic it may not read."""
    (tmp_path / "acl").write_text(ACL)
    b = broker_factory({"auth.users": write_users(str(tmp_path / "users"), ACL_USERS),
                        "auth.acl": str(tmp_path / "acl")})
    alice = acl_login(b, "alice")
    for q in ("/queue/jobs.a", "/queue/jobs.secret"):
        alice.receipt("SEND", {"destination": q}, "pre-" + q, q.encode())
    w = acl_login(b, "alice")
    sub(w, "/topic/news.*", sid="t", receipt="sub-t")
    sub(w, "/queue/jobs.*", sid="q")
    for d in ("/queue/jobs.b", "/queue/jobs.secret", "/topic/news.a", "/topic/news.secret"):
        alice.receipt("SEND", {"destination": d}, "post-" + d, d.encode())
    got = sorted(f.body for f in collect(w, 3, timeout=10))
    assert got == [b"/queue/jobs.a", b"/queue/jobs.b", b"/topic/news.a"], got
    assert collect(w, timeout=0.5) == []
    # the secret queue's two messages wait for someone who may read them
    bob = acl_login(b, "bob")
    sub(bob, "/queue/jobs.secret", sid="s")
    assert [f.body for f in collect(bob, 2)] == [b"/queue/jobs.secret"] * 2
    # a pattern nothing grants is refused as named
    carol = acl_login(b, "carol")
    carol.send("SUBSCRIBE", {"id": "x", "destination": "/topic/news.*", "receipt": "deny"})
    f = carol.recv()
    assert f.command == "ERROR" and f["message"] == "access denied: no read permission on /topic/news.*", f


def test_durable_wildcard_subscriptions_read_only_what_they_may(broker_factory, tmp_path):
    """A durable wildcard subscription took every matching topic's
    messages, those of topics its user may not read included, online and
    offline (helper-91). It reads what a plain one does: checked as the
    message is published, against who subscribed last, whom the store
    keeps across a restart (a store of an older release does not: then
    what it kept is checked at delivery)."""
    (tmp_path / "acl").write_text(ACL)
    b = broker_factory({"auth.users": write_users(str(tmp_path / "users"), ACL_USERS),
                        "auth.acl": str(tmp_path / "acl"), "http.admin_password": "console pw"})

    def durable(user):
        c = Client(b.port)
        c.connect(headers=dict(login_headers(user, ACL_USERS[user][0]), **{"client-id": "cid-" + user}))
        sub(c, "/topic/news.*", sid="d", durable="all-news")
        return c
    alice = acl_login(b, "alice")

    def publish(tag, persistent):
        for t in ("news.open", "news.secret"):
            alice.receipt("SEND", {"destination": "/topic/" + t, "persistent": persistent},
                          "%s-%s" % (tag, t), b"%s:%s" % (tag.encode(), t.encode()))
    w = durable("alice")
    publish("online", "false")
    publish("online-p", "true")
    assert sorted(f.body for f in collect(w, 2)) == [b"online-p:news.open", b"online:news.open"]
    assert collect(w, timeout=0.5) == []
    w.close()
    publish("offline", "true")
    w = durable("alice")
    assert [f.body for f in collect(w, 1)] == [b"offline:news.open"]
    assert collect(w, timeout=0.5) == []
    w.close()
    # after a restart, before anyone subscribes again: its reader is kept
    # in the store, so its backlog takes only what alice may read (it
    # took news.secret too until someone subscribed)
    publish("before", "true")
    assert b.stop() == 0
    b.start()
    alice = acl_login(b, "alice")
    publish("restarted", "true")
    topic, = [t for t in console_topics(b) if t["name"] == "/topic/news.*"]
    assert [d["pending"] for d in topic["durable_subscriptions"]] == [2]
    w = durable("alice")
    assert sorted(f.body for f in collect(w, 2)) == [b"before:news.open", b"restarted:news.open"]
    assert collect(w, timeout=0.5) == []
    w.close()
    topic, = [t for t in console_topics(b) if t["name"] == "/topic/news.*"]
    assert [d["pending"] for d in topic["durable_subscriptions"]] == [0]
    # a message passed over is no refused frame (helper-93: each counted)
    assert console_json(b, "/api/counters")["access_denied"] == 0


def console_json(b, path):
    h = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=10)
    h.request("GET", path, headers={"Authorization": "Basic " + base64.b64encode(b"admin:console pw").decode()})
    data = json.loads(h.getresponse().read())
    h.close()
    return data


def console_topics(b):
    return console_json(b, "/api/topics")


def test_a_connection_takes_from_at_most_max_consumers_destinations(broker_factory):
    """stomp.max_consumers bounds what one connection's subscriptions take
    from, counting every queue a wildcard matches (found by review: 999
    subscriptions to /queue/> over 5,000 queues made 5 million consumers,
    3 GB and 7 s of loop time)."""
    b = broker_factory({"stomp.max_consumers": "50"})
    send_all(b, ["/queue/l.%d" % i for i in range(40)])
    c1 = connected(b.port)
    sub(c1, "/queue/l.>", sid="w", ack="client", prefetch="100")
    assert len(collect(c1, 40)) == 40
    # 40 + 11 would go over: the SUBSCRIBE is refused, and names the rule
    c1.send("SUBSCRIBE", {"id": "c", "destination": ",".join("/topic/t.%d" % i for i in range(11))})
    err = c1.expect_error("too many consumers").body.decode()
    assert "stomp.max_consumers" in err and "50" in err
    # the connection is gone, and what it held went back
    c2 = connected(b.port)
    sub(c2, "/queue/l.>", sid="w")
    assert len(collect(c2, 40)) == 40
    sub(c2, ",".join("/topic/t.%d" % i for i in range(5)), sid="t", receipt="t")  # 45
    # ten new queues: room for five, the other five are left to other consumers
    send_all(b, ["/queue/l.%d" % i for i in range(40, 50)])
    assert sorted(f.body for f in collect(c2)) == [b"/queue/l.%d" % i for i in range(40, 45)]
    c3 = connected(b.port)
    sub(c3, ",".join("/queue/l.%d" % i for i in range(45, 50)), sid="rest")
    assert sorted(f.body for f in collect(c3)) == [b"/queue/l.%d" % i for i in range(45, 50)]
    assert console(b, "/api/counters")["wildcard_matches_refused"] == 5
    assert b.log().count("does not take from") == 1  # logged once per subscription
    # what a connection gives up it can take again
    c2.receipt("UNSUBSCRIBE", {"id": "t"}, "u")  # 45
    send_all(b, ["/queue/l.50"])  # 46
    assert [f.body for f in collect(c2, 1)] == [b"/queue/l.50"]
    # a plain SUBSCRIBE counts one
    for i in range(4):
        sub(c2, "/queue/plain.%d" % i, sid="p%d" % i, receipt="p%d" % i)  # 50
    c2.send("SUBSCRIBE", {"id": "p4", "destination": "/queue/plain.4"})
    c2.expect_error("too many consumers")
    assert console(b, "/api/counters")["wildcard_matches_refused"] == 5


def test_all_connections_take_from_at_most_broker_max_consumers_destinations(broker_factory):
    """broker.max_consumers bounds the consumers of all connections
    together: stomp.max_consumers alone let max_connections times it."""
    b = broker_factory({"broker.max_consumers": "30", "stomp.max_consumers": "20"})
    send_all(b, ["/queue/g.%d" % i for i in range(15)])
    c1, c2 = connected(b.port), connected(b.port)
    sub(c1, "/queue/g.>", sid="w", receipt="w1")  # 15
    assert len(collect(c1, 15)) == 15
    sub(c2, ",".join("/topic/g.%d" % i for i in range(10)), sid="t", receipt="t")  # 25
    assert console(b, "/api/counters")["consumers"] == 25
    # c2 has room of its own (10 of 20), the broker has 5 left
    c2.send("SUBSCRIBE", {"id": "w", "destination": "/queue/g.>"})
    err = c2.expect_error("too many consumers").body.decode()
    assert "broker.max_consumers" in err and "30" in err
    assert console(b, "/api/counters")["consumers"] == 15  # c2's went with it
    # a new queue when the broker is full is left to other consumers
    c3 = connected(b.port)
    for i in range(15):
        sub(c3, "/queue/p.%d" % i, sid="p%d" % i, receipt="p%d" % i)  # 30
    send_all(b, ["/queue/g.15"])  # c1's wildcard matches it: no room
    c3.send("SUBSCRIBE", {"id": "one-more", "destination": "/queue/p.x"})
    assert "broker.max_consumers" in c3.expect_error("too many consumers").body.decode()
    c4 = connected(b.port)
    sub(c4, "/queue/g.15", sid="plain", receipt="plain")
    assert [f.body for f in collect(c4, 1)] == [b"/queue/g.15"]
    c1.expect_nothing()
    counters = console(b, "/api/counters")
    assert counters["wildcard_matches_refused"] == 1 and counters["max_consumers"] == 30
    assert counters["consumers"] == 16
    assert "(broker.max_consumers)" in b.log()
