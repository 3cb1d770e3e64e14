"""ActiveMQ semantics STOMP users carry over: prefetch, redelivery and
dead letters, expiry, selectors, temporary destinations, durable topic
subscriptions, exclusive consumers and message groups."""
import re
import time

import pytest

from stompd_test import Client, connected, http_json, http_request, wait_for


def drain(c, timeout=0.5, first=10.0):
    """What comes: the first within `first` seconds (every caller expects
    some; a loaded machine under valgrind may be slow), each next within
    timeout of the one before."""
    got = []
    while True:
        try:
            got.append(c.recv(timeout=timeout if got else first))
        except TimeoutError:
            return got


def send(port, dest, bodies, headers=None):
    p = connected(port)
    for b in bodies:
        h = {"destination": dest}
        h.update(headers or {})
        p.send("SEND", h, b)
    p.receipt("DISCONNECT", {}, "sent")


# ------------------------------------------------------------------ prefetch

def test_prefetch_bounds_unacked(broker):
    send(broker.port, "/queue/pf", [b"%d" % i for i in range(10)])
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/pf", "ack": "client-individual",
                         "activemq.prefetchSize": "3"})
    got = drain(c)
    assert len(got) == 3
    c.send("ACK", {"id": got[0]["ack"]})
    more = drain(c)
    assert [m.body for m in more] == [b"3"]


def test_prefetch_count_rabbitmq_spelling(broker):
    send(broker.port, "/queue/pc", [b"%d" % i for i in range(5)])
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/pc", "ack": "client", "prefetch-count": "2"})
    assert len(drain(c)) == 2


@pytest.mark.parametrize("prefetch, held", [("1", 1), ("3", 3), (None, 10)])
def test_prefetch_bounds_what_a_stuck_consumer_holds(broker, prefetch, held):
    # a never acks; with a prefetch of N it holds N and b, acking each,
    # gets the rest. With the default prefetch (1000) round robin hands a
    # every other message: the bound is what keeps them from a.
    q = "/queue/stuck%s" % (prefetch or "d")
    a, b = connected(broker.port), connected(broker.port)
    h = {"id": "a", "destination": q, "ack": "client"}
    if prefetch:
        h["activemq.prefetchSize"] = prefetch
    a.receipt("SUBSCRIBE", h, "s")
    b.receipt("SUBSCRIBE", {"id": "b", "destination": q, "ack": "client-individual"}, "s")
    send(broker.port, q, [b"%d" % i for i in range(20)])
    got_b = 0
    while got_b < 20 - held:
        m = b.recv(timeout=10)
        got_b += 1
        b.send("ACK", {"id": m["ack"]})
    b.expect_nothing(0.5)
    got_a = drain(a)
    assert len(got_a) == held


def test_auto_ack_ignores_prefetch(broker):
    send(broker.port, "/queue/autopf", [b"%d" % i for i in range(20)])
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/autopf", "activemq.prefetchSize": "2"})
    assert len(drain(c)) == 20


# ------------------------------------------------------------------ redelivery, DLQ

def test_nack_until_dead_letter(broker_factory):
    b = broker_factory({"broker.max_redeliveries": "2"})
    send(b.port, "/queue/poison", [b"bad"], {"x-app": "1"})
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/poison", "ack": "client-individual"})
    counts = []
    for _ in range(3):
        m = c.recv()
        counts.append(m.get("redelivery-count"))
        c.send("NACK", {"id": m["ack"]})
    assert counts == [None, "1", "2"]
    c.expect_nothing()
    d = connected(b.port)
    d.send("SUBSCRIBE", {"id": "d", "destination": "/queue/ActiveMQ.DLQ"})
    m = d.recv()
    assert m.body == b"bad" and m["original-destination"] == "/queue/poison"
    assert m["x-app"] == "1" and "redeliveries" in m["dlqDeliveryFailureCause"]


def test_zero_redeliveries_first_nack_dead_letters(broker_factory):
    b = broker_factory({"broker.max_redeliveries": "0"})
    send(b.port, "/queue/z", [b"once"])
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/z", "ack": "client-individual"})
    c.send("NACK", {"id": c.recv()["ack"]})
    c.expect_nothing()
    d = connected(b.port)
    d.send("SUBSCRIBE", {"id": "d", "destination": "/queue/ActiveMQ.DLQ"})
    assert d.recv().body == b"once"


def test_non_persistent_dead_letters_stop_at_the_dead_letter_queues_limit(broker_factory):
    """A non-persistent message dead-lettered stays in the dead-letter
    queue's memory (a persistent one pages): one client NACKing everything,
    and nobody reading the DLQ, filled broker.memory_limit and paused every
    producer (helper-99). At the DLQ's limit they are discarded, and
    counted, as ActiveMQ discards non-persistent dead letters; persistent
    ones still go."""
    b = broker_factory({"broker.max_redeliveries": "0", "broker.dest_memory_limit": "64KiB",
                        "broker.memory_limit": "1MiB"})
    p = connected(b.port)
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/nacked", "ack": "client-individual"})
    for i in range(300):   # 300 KB through a 64 KiB DLQ
        p.receipt("SEND", {"destination": "/queue/nacked"}, "s%d" % i, b"x" * 1000)
        c.send("NACK", {"id": c.recv()["ack"]})
    p.receipt("SEND", {"destination": "/queue/nacked", "persistent": "true"}, "last", b"kept")
    c.receipt("NACK", {"id": c.recv()["ack"]}, "n")
    st, _, data = http_request(b.http_port, "GET", "/metrics")
    text = data.decode()

    def sample(name):
        return int(float(re.search(r"^%s (\S+)$" % re.escape(name), text, re.M).group(1)))
    dlq_mem = sample('stompd_destination_memory_bytes{destination="/queue/ActiveMQ.DLQ",type="queue"}')
    assert dlq_mem <= (64 << 10) + 2000, dlq_mem
    assert sample("stompd_dead_letters_discarded_total") >= 200
    assert sample("stompd_memory_full") == 0
    # the persistent one is there, after what was kept
    d = connected(b.port)
    d.send("SUBSCRIBE", {"id": "d", "destination": "/queue/ActiveMQ.DLQ"})
    got = []
    while not got or got[-1].body != b"kept":
        got.append(d.recv())
    assert 30 <= len(got) - 1 <= 66, len(got)   # 64 KiB of about 1.3 KB each (body and headers)


def test_consumer_loss_counts_as_redelivery(broker_factory):
    b = broker_factory({"broker.max_redeliveries": "1"})
    send(b.port, "/queue/loss", [b"x"])
    for i in range(2):
        c = connected(b.port)
        c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/loss", "ack": "client"})
        m = c.recv()
        assert (m.get("redelivered") == "true") == (i == 1)
        c.close()
    time.sleep(0.2)
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/loss"})
    c.expect_nothing()
    d = connected(b.port)
    d.send("SUBSCRIBE", {"id": "d", "destination": "/queue/ActiveMQ.DLQ"})
    assert d.recv().body == b"x"


@pytest.mark.parametrize("how", ["stop", "kill"])
@pytest.mark.parametrize("kind", ["queue", "durable"])
def test_a_broker_that_stops_does_not_dead_letter_what_consumers_held(broker_factory, kind, how):
    """A clean stop (SIGTERM) or a crash (kill -9) gives back what connected
    consumers held, as redeliveries, but never dead-letters it: a broker
    going away is not a consumer failing. Found by helper-36:
    with the limit at 1, two restarts dead-lettered every message a
    healthy consumer was holding, on queues and durable subscriptions."""
    b = broker_factory({"broker.max_redeliveries": "1", "store.sync": "local_disk"})
    if kind == "queue":
        dest, sub = "/queue/held", {"id": "1", "destination": "/queue/held", "ack": "client-individual"}
    else:
        dest = "/topic/held"
        sub = {"id": "1", "destination": dest, "ack": "client-individual", "activemq.subscriptionName": "held"}

    def consumer():
        c = connected(b.port, headers={"client-id": "held-client"})
        c.receipt("SUBSCRIBE", sub, "s")
        return c
    c = consumer()
    p = connected(b.port)
    for i in range(3):
        p.receipt("SEND", {"destination": dest, "persistent": "true"}, "r%d" % i, b"job%d" % i)
    p.close()
    for restart in range(4):
        got = [c.recv(timeout=15) for _ in range(3)]
        assert [m.body for m in got] == [b"job0", b"job1", b"job2"], (restart, got)
        assert all((m.get("redelivered") == "true") == (restart > 0) for m in got), (restart, got)
        if how == "stop":
            assert b.stop() == 0      # SIGTERM while the consumer holds them, unacked
        else:
            b.kill()
        c.close()
        b.restart()
        c = consumer()
    dlq = connected(b.port)
    dlq.receipt("SUBSCRIBE", {"id": "d", "destination": "/queue/ActiveMQ.DLQ"}, "d")
    dlq.expect_nothing()
    got = [c.recv(timeout=15) for _ in range(3)]
    assert [m.body for m in got] == [b"job0", b"job1", b"job2"]
    for m in got:
        c.send("ACK", {"id": m["ack"]})
    c.receipt("UNSUBSCRIBE", {"id": "1"}, "u")


def test_per_destination_dlq(broker_factory):
    b = broker_factory({"broker.max_redeliveries": "0", "broker.per_destination_dlq": "true"})
    send(b.port, "/queue/orders", [b"o"])
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/orders", "ack": "client-individual"})
    c.send("NACK", {"id": c.recv()["ack"]})
    d = connected(b.port)
    d.send("SUBSCRIBE", {"id": "d", "destination": "/queue/ActiveMQ.DLQ.Queue.orders"})
    assert d.recv()["original-destination"] == "/queue/orders"
    # a queue whose own dead-letter queue's name would pass 1024 bytes:
    # the shared one (the message was dropped, helper-66)
    long = "/queue/" + "l" * 1010
    p = connected(b.port)
    p.receipt("SEND", {"destination": long, "persistent": "true"}, "r", b"long")
    c.send("SUBSCRIBE", {"id": "2", "destination": long, "ack": "client-individual"})
    c.send("NACK", {"id": c.recv()["ack"]})
    d.send("SUBSCRIBE", {"id": "shared", "destination": "/queue/ActiveMQ.DLQ"})
    m = d.recv()
    assert m.body == b"long" and m["original-destination"] == long, m


def test_dlq_messages_are_not_dead_lettered_again(broker_factory):
    b = broker_factory({"broker.max_redeliveries": "0"})
    send(b.port, "/queue/once", [b"p"])
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/once", "ack": "client-individual"})
    c.send("NACK", {"id": c.recv()["ack"]})
    d = connected(b.port)
    d.send("SUBSCRIBE", {"id": "d", "destination": "/queue/ActiveMQ.DLQ", "ack": "client-individual"})
    m = d.recv()
    d.send("NACK", {"id": m["ack"]})
    again = d.recv()
    assert again.body == b"p" and again["redelivered"] == "true"


# ------------------------------------------------------------------ expiry

def test_expired_at_dispatch(broker):
    now = int(time.time() * 1000)
    send(broker.port, "/queue/exp", [b"old"], {"expires": str(now - 1000)})
    send(broker.port, "/queue/exp", [b"fresh"], {"expires": str(now + 60000)})
    send(broker.port, "/queue/exp", [b"never"], {"expires": "0"})
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/exp"})
    got = drain(c)
    assert [m.body for m in got] == [b"fresh", b"never"]
    assert got[0]["expires"] == str(now + 60000)


def test_expiry_sweep_dead_letters_persistent_drops_others(broker_factory):
    b = broker_factory({"broker.expiry_check_interval": "100ms"})
    soon = int(time.time() * 1000) + 300
    send(b.port, "/queue/sweep", [b"p"], {"expires": str(soon), "persistent": "true"})
    send(b.port, "/queue/sweep", [b"np"], {"expires": str(soon)})
    time.sleep(0.8)   # no consumer: only the sweep can see them expire
    d = connected(b.port)
    d.send("SUBSCRIBE", {"id": "d", "destination": "/queue/ActiveMQ.DLQ"})
    got = drain(d)
    assert [m.body for m in got] == [b"p"]
    assert got[0]["dlqDeliveryFailureCause"] == "expired"
    assert got[0]["expires"] == "0"      # a dead letter does not expire again
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/sweep"})
    c.expect_nothing()


# ------------------------------------------------------------------ selectors

def test_selector_on_queue(broker):
    c = connected(broker.port)
    c.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/sel",
                            "selector": "color = 'red' AND weight > 10"}, "s")
    other = connected(broker.port)
    other.receipt("SUBSCRIBE", {"id": "2", "destination": "/queue/sel", "selector": "color <> 'red'"}, "s")
    p = connected(broker.port)
    for color, w in [("red", 5), ("red", 20), ("blue", 50), ("red", 11)]:
        p.send("SEND", {"destination": "/queue/sel", "color": color, "weight": str(w)}, b"%s-%d" % (color.encode(), w))
    assert [m.body for m in drain(c)] == [b"red-20", b"red-11"]
    assert [m.body for m in drain(other)] == [b"blue-50"]
    # red-5 matches nobody: it waits for a consumer that wants it
    any_c = connected(broker.port)
    any_c.send("SUBSCRIBE", {"id": "3", "destination": "/queue/sel"})
    assert [m.body for m in drain(any_c)] == [b"red-5"]


def test_selector_on_topic_and_jms_fields(broker):
    c = connected(broker.port)
    c.receipt("SUBSCRIBE", {"id": "1", "destination": "/topic/sel",
                            "selector": "JMSPriority > 5 OR type LIKE 'ord%'"}, "s")
    p = connected(broker.port)
    p.send("SEND", {"destination": "/topic/sel", "priority": "7"}, b"urgent")
    p.send("SEND", {"destination": "/topic/sel", "type": "order"}, b"order")
    p.send("SEND", {"destination": "/topic/sel", "type": "quote"}, b"quote")
    assert sorted(m.body for m in drain(c)) == [b"order", b"urgent"]


# ------------------------------------------------------------------ temporary destinations

def test_temp_queue_reply_to(broker):
    requester = connected(broker.port)
    requester.receipt("SUBSCRIBE", {"id": "r", "destination": "/temp-queue/replies"}, "s")
    server = connected(broker.port)
    server.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/requests"}, "s")
    requester.send("SEND", {"destination": "/queue/requests", "reply-to": "/temp-queue/replies"}, b"ping")
    req = server.recv()
    reply_to = req["reply-to"]
    assert reply_to.startswith("/remote-temp-queue/")
    server.send("SEND", {"destination": reply_to, "correlation-id": "1"}, b"pong")
    pong = requester.recv()
    # under the name the requester gave it (as ActiveMQ does), not its broker-wide one
    assert pong.body == b"pong" and pong["destination"] == "/temp-queue/replies", pong
    # another connection's /temp-queue/replies is a different queue
    other = connected(broker.port)
    other.receipt("SEND", {"destination": "/temp-queue/replies"}, "r", b"mine")
    requester.expect_nothing()
    # nobody else may consume it
    thief = connected(broker.port)
    thief.send("SUBSCRIBE", {"id": "t", "destination": reply_to})
    thief.expect_error("temporary")
    # it goes away with its connection
    requester.close()
    wait_for(lambda: reply_to not in [q["name"] for q in http_json(broker.http_port, "/api/queues")],
             what="the temporary queue gone with its connection")


def test_a_reply_to_a_closed_temporary_queue_goes_nowhere(broker):
    """A reply to a requester that has gone is dropped with its RECEIPT, and
    the replying service keeps its connection (an ERROR closed it, and its
    unacked requests came back redelivered); a copy to a destination still
    there goes out. A temporary name this broker never gave out is still
    an ERROR."""
    requester = connected(broker.port)
    requester.receipt("SUBSCRIBE", {"id": "r", "destination": "/temp-queue/replies"}, "s")
    service = connected(broker.port)
    service.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/tmpreq", "ack": "client-individual"}, "s")
    requester.send("SEND", {"destination": "/queue/tmpreq", "reply-to": "/temp-queue/replies"}, b"ping")
    req = service.recv()
    reply_to = req["reply-to"]
    audit = connected(broker.port)
    audit.receipt("SUBSCRIBE", {"id": "a", "destination": "/queue/tmpaudit"}, "s")
    requester.close()
    wait_for(lambda: reply_to not in [q["name"] for q in http_json(broker.http_port, "/api/queues")],
             what="the temporary queue gone with its connection")
    before = http_json(broker.http_port, "/api/counters")["closed_temp_dropped"]
    for persistent in ("false", "true"):
        service.receipt("SEND", {"destination": reply_to, "persistent": persistent}, "reply-" + persistent, b"pong")
    service.receipt("SEND", {"destination": reply_to + ",/queue/tmpaudit"}, "both", b"pong and audit")
    service.receipt("ACK", {"id": req["ack"]}, "acked")
    assert audit.recv().body == b"pong and audit"
    assert http_json(broker.http_port, "/api/counters")["closed_temp_dropped"] == before + 3
    # the request was acked on the same connection: it does not come again
    again = connected(broker.port)
    again.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/tmpreq"}, "s")
    again.expect_nothing(0.5)
    # nothing queued anywhere for the reply
    assert reply_to not in [q["name"] for q in http_json(broker.http_port, "/api/queues")]
    # a name never given out, and a wrong one of a connection still open,
    # are still ERRORs (a mistake, not a requester that went away)
    live = connected(broker.port)
    live.receipt("SUBSCRIBE", {"id": "r", "destination": "/temp-queue/replies"}, "s")
    live.send("SEND", {"destination": "/queue/tmpaudit", "reply-to": "/temp-queue/replies"}, b"ping")
    live_reply_to = audit.recv()["reply-to"]
    assert live_reply_to != reply_to
    for bad in (reply_to.replace("/remote-temp-queue/", "/remote-temp-queue/not-"), live_reply_to + "x"):
        c = connected(broker.port)
        c.send("SEND", {"destination": bad, "receipt": "bad"}, b"typo")
        f = c.expect_error("no such temporary destination")
        assert "names no temporary destination" in f.body.decode(), f.body
    assert http_json(broker.http_port, "/api/counters")["closed_temp_dropped"] == before + 3
    # its own connection browses it under the name it gave, to the end marker
    live.receipt("SEND", {"destination": "/temp-queue/b"}, "own-b", b"kept")
    live.send("SUBSCRIBE", {"id": "b", "destination": "/temp-queue/b", "browser": "true"})
    assert [(f.body, f["destination"]) for f in (live.recv(), live.recv())] == \
        [(b"kept", "/temp-queue/b"), (b"", "/temp-queue/b")]


def test_a_reply_to_from_before_a_restart_reaches_nobody(broker):
    """Connection ids start again with each process: a reply-to given out
    before a restart (or a failover) must not reach the connection that has
    its id now and made a temporary queue of the same name."""
    a = connected(broker.port)
    a.receipt("SUBSCRIBE", {"id": "r", "destination": "/temp-queue/replies"}, "s")
    service = connected(broker.port)
    service.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/tmprestart"}, "s")
    a.send("SEND", {"destination": "/queue/tmprestart", "reply-to": "/temp-queue/replies"}, b"ping")
    reply_to = service.recv()["reply-to"]
    a.close()
    service.close()
    assert broker.stop() == 0
    broker.restart()
    b = connected(broker.port)  # the same connection id as a had
    b.receipt("SUBSCRIBE", {"id": "r", "destination": "/temp-queue/replies"}, "s")
    connected(broker.port).receipt("SEND", {"destination": reply_to}, "late", b"meant for a")
    b.expect_nothing(0.5)
    assert http_json(broker.http_port, "/api/counters")["closed_temp_dropped"] == 1


def test_temp_topic(broker):
    c = connected(broker.port)
    c.receipt("SUBSCRIBE", {"id": "1", "destination": "/temp-topic/events"}, "s")
    c.send("SEND", {"destination": "/topic/x", "reply-to": "/temp-topic/events"}, b"")
    c.send("SEND", {"destination": "/temp-topic/events"}, b"to myself")
    m = c.recv()
    assert m.body == b"to myself"
    # its own connection gets it under the name it gave (as ActiveMQ does)
    assert m["destination"] == "/temp-topic/events", m


# ------------------------------------------------------------------ durable subscriptions

@pytest.mark.parametrize("name", ["activemq.subscriptionName", "durable-subscription-name", "durable-subscriber-name"])
def test_durable_subscription_keeps_messages_while_away(broker, name):
    """ActiveMQ 5's header, and Artemis's (and its name before 2.0)."""
    s = connected(broker.port, headers={"client-id": "sub-app"})
    s.receipt("SUBSCRIBE", {"id": "1", "destination": "/topic/news", name: "n"}, "s")
    s.receipt("UNSUBSCRIBE", {"id": "1"}, "u")      # deactivate only
    s.send("DISCONNECT", {"receipt": "d"})
    s.recv()
    send(broker.port, "/topic/news", [b"while away 1", b"while away 2"])
    s = connected(broker.port, headers={"client-id": "sub-app"})
    s.send("SUBSCRIBE", {"id": "1", "destination": "/topic/news", name: "n"})
    assert [m.body for m in drain(s)] == [b"while away 1", b"while away 2"]
    s.receipt("UNSUBSCRIBE", {"id": "1", name: "n"}, "destroy")
    send(broker.port, "/topic/news", [b"after destroy"])
    s.send("SUBSCRIBE", {"id": "2", "destination": "/topic/news", name: "n"})
    s.expect_nothing()


def test_durable_subscription_errors(broker):
    c = connected(broker.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/topic/t", "activemq.subscriptionName": "x"})
    c.expect_error("client-id")
    c = connected(broker.port, headers={"client-id": "q"})
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/q", "activemq.subscriptionName": "x"})
    c.expect_error("topic")
    c = connected(broker.port, headers={"client-id": "twice"})
    c.send("SUBSCRIBE", {"id": "1", "destination": "/topic/t", "activemq.subscriptionName": "x"})
    c.send("SUBSCRIBE", {"id": "2", "destination": "/topic/t", "activemq.subscriptionName": "x"})
    c.expect_error("already")
    c = connected(broker.port, headers={"client-id": "two-names"})
    c.send("SUBSCRIBE", {"id": "1", "destination": "/topic/t", "activemq.subscriptionName": "x",
                         "durable-subscription-name": "y"})
    c.expect_error("conflicting durable subscription names")


def test_unsubscribe_names_the_durable_subscription_it_removes(broker):
    """UNSUBSCRIBE with a durable name removes that subscription or none:
    before, an id attached to another durable subscription removed the
    id's one, its backlog with it."""
    p = connected(broker.port)
    c = connected(broker.port, headers={"client-id": "un"})
    c.receipt("SUBSCRIBE", {"id": "sa", "destination": "/topic/una", "activemq.subscriptionName": "A",
                            "ack": "client-individual"}, "a")
    c.receipt("SUBSCRIBE", {"id": "sb", "destination": "/topic/unb", "activemq.subscriptionName": "B"}, "b")
    p.receipt("SEND", {"destination": "/topic/una", "persistent": "true"}, "p", b"kept")
    assert c.recv().body == b"kept"  # unacked on A
    c.send("UNSUBSCRIBE", {"id": "sa", "activemq.subscriptionName": "B", "receipt": "u"})
    f = c.expect_error("wrong durable subscription")
    assert "'sa' is durable subscription 'A', not 'B'" in f.body.decode()
    # a name that names none is removed already (a failover client's resend)
    c = connected(broker.port, headers={"client-id": "un"})
    c.receipt("UNSUBSCRIBE", {"activemq.subscriptionName": "nonexistent"}, "u")
    # both subscriptions are still there, A with its unacked message
    c.send("SUBSCRIBE", {"id": "sa", "destination": "/topic/una", "activemq.subscriptionName": "A"})
    again = c.recv()
    assert again.body == b"kept" and again["redelivered"] == "true"
    p.receipt("SEND", {"destination": "/topic/unb"}, "p2", b"to B")
    c.receipt("UNSUBSCRIBE", {"activemq.subscriptionName": "B"}, "removed")  # by name alone
    c.send("SUBSCRIBE", {"id": "sb", "destination": "/topic/unb", "activemq.subscriptionName": "B"})
    c.expect_nothing()  # B and its backlog went; A is untouched
    c.receipt("UNSUBSCRIBE", {"id": "sa", "activemq.subscriptionName": "A"}, "ua")


def test_durable_names_are_bounded(broker):
    """A client-id or a durable name over 512 bytes is refused where it
    arrives: longer ones went into store keys that a restart did not read
    back (a receipted message to such a subscription was lost)."""
    c = Client(broker.port)
    c.send("CONNECT", {"accept-version": "1.2", "host": "x", "client-id": "c" * 513})
    f = c.expect_error("client-id too long")
    assert "512 bytes" in f.body.decode()
    c = connected(broker.port, headers={"client-id": "c" * 512})
    c.send("SUBSCRIBE", {"id": "1", "destination": "/topic/long", "activemq.subscriptionName": "n" * 513})
    f = c.expect_error("durable subscription name too long")
    assert "activemq.subscriptionName may be 512 bytes at most" in f.body.decode()
    c = connected(broker.port, headers={"client-id": "c" * 512})
    c.receipt("SUBSCRIBE", {"id": "1", "destination": "/topic/long", "activemq.subscriptionName": "n" * 512}, "s")


def test_an_empty_selector_selects_everything(broker):
    """JMS: an empty selector is no selector (ActiveMQ's clients send one)."""
    for sel in ("", "  "):
        c = connected(broker.port)
        c.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/emptysel", "selector": sel}, "s")
        send(broker.port, "/queue/emptysel", [b"any"])
        assert c.recv().body == b"any"
        c.close()


def test_durable_and_plain_subscribers_each_get_a_copy(broker):
    d = connected(broker.port, headers={"client-id": "d"})
    d.receipt("SUBSCRIBE", {"id": "1", "destination": "/topic/both", "activemq.subscriptionName": "n",
                            "ack": "client-individual"}, "s")
    plain = connected(broker.port)
    plain.receipt("SUBSCRIBE", {"id": "1", "destination": "/topic/both"}, "s")
    send(broker.port, "/topic/both", [b"hi"])
    assert plain.recv().body == b"hi"
    m = d.recv()
    assert m.body == b"hi"
    d.close()                 # unacked: kept for the durable subscriber
    time.sleep(0.2)
    d = connected(broker.port, headers={"client-id": "d"})
    d.send("SUBSCRIBE", {"id": "1", "destination": "/topic/both", "activemq.subscriptionName": "n"})
    again = d.recv()
    assert again.body == b"hi" and again["redelivered"] == "true"


# ------------------------------------------------------------------ exclusive consumers, groups

def test_exclusive_consumer_takes_everything(broker):
    a, b = connected(broker.port), connected(broker.port)
    a.receipt("SUBSCRIBE", {"id": "a", "destination": "/queue/ex", "activemq.exclusive": "true"}, "s")
    b.receipt("SUBSCRIBE", {"id": "b", "destination": "/queue/ex"}, "s")
    send(broker.port, "/queue/ex", [b"%d" % i for i in range(10)])
    assert len(drain(a)) == 10
    b.expect_nothing()
    a.close()      # b takes over
    send(broker.port, "/queue/ex", [b"after"])
    assert b.recv().body == b"after"


def test_consumer_priority_prefers_the_highest_with_room(broker):
    """ActiveMQ's consumer priority (SUBSCRIBE activemq.priority): a queue
    offers each message to its highest-priority consumers first (round
    robin among equals); a lower one gets what they have no room for, or
    what their selector refuses. Before, the header was ignored."""
    low = connected(broker.port)
    low.receipt("SUBSCRIBE", {"id": "l", "destination": "/queue/cprio", "ack": "client-individual",
                              "activemq.prefetchSize": "10"}, "s")
    highs = [connected(broker.port) for _ in range(2)]
    for i, h in enumerate(highs):
        h.receipt("SUBSCRIBE", {"id": "h", "destination": "/queue/cprio", "ack": "client-individual",
                                "activemq.prefetchSize": "2", "activemq.priority": "9",
                                "selector": "kind IS NULL OR kind <> 'cold'"}, "s")
    send(broker.port, "/queue/cprio", [b"m%d" % i for i in range(5)])
    got = [h.recv_all(2) for h in highs]
    # round robin among the two of priority 9, each to its prefetch
    assert sorted(m.body for g in got for m in g) == [b"m0", b"m1", b"m2", b"m3"]
    assert [m.body for m in got[0]] in ([b"m0", b"m2"], [b"m1", b"m3"]), got
    assert low.recv().body == b"m4"  # no room left above
    # room again above: it goes there, not to the low one with room
    highs[0].receipt("ACK", {"id": got[0][0]["ack"]}, "a")
    send(broker.port, "/queue/cprio", [b"m5"])
    assert highs[0].recv().body == b"m5"
    low.expect_nothing(0.3)
    # what the high ones' selector refuses goes to the low one
    highs[1].receipt("ACK", {"id": got[1][0]["ack"]}, "a")
    send(broker.port, "/queue/cprio", [b"cold"], {"kind": "cold"})
    assert low.recv().body == b"cold"
    highs[1].expect_nothing(0.3)
    # the high ones gone, the low one takes what they left unacked
    for h in highs:
        h.close()
    left = sorted([got[0][1].body, b"m5", got[1][1].body])
    back = low.recv_all(3)
    assert sorted(m.body for m in back) == left and all(m["redelivered"] == "true" for m in back), back


def test_the_exclusive_consumer_is_the_highest_priority_one(broker):
    first, higher = connected(broker.port), connected(broker.port)
    first.receipt("SUBSCRIBE", {"id": "a", "destination": "/queue/exprio", "activemq.exclusive": "true"}, "s")
    higher.receipt("SUBSCRIBE", {"id": "b", "destination": "/queue/exprio", "activemq.exclusive": "true",
                                 "activemq.priority": "5"}, "s")
    send(broker.port, "/queue/exprio", [b"%d" % i for i in range(4)])
    assert [m.body for m in higher.recv_all(4)] == [b"0", b"1", b"2", b"3"]
    first.expect_nothing(0.3)


def test_consumer_priority_must_be_0_to_127(broker):
    for bad in ("-1", "128", "high", ""):
        c = connected(broker.port)
        c.send("SUBSCRIBE", {"id": "x", "destination": "/queue/cprio-bad", "activemq.priority": bad})
        assert "0 (the default) to 127" in c.expect_error("invalid activemq.priority header").body.decode()


def by_group(msgs):
    """Bodies per JMSXGroupID, in arrival order."""
    out = {}
    for m in msgs:
        out.setdefault(m["JMSXGroupID"], []).append(m.body)
    return out


def test_message_groups_stick_to_one_consumer(broker):
    # Runs of one group in a row: round robin alone would split them.
    a, b = connected(broker.port), connected(broker.port)
    a.receipt("SUBSCRIBE", {"id": "a", "destination": "/queue/grp"}, "s")
    b.receipt("SUBSCRIBE", {"id": "b", "destination": "/queue/grp"}, "s")
    p = connected(broker.port)
    order = ["g", "g", "g", "h", "h", "g", "h", "g", "g", "h"]
    for i, g in enumerate(order):
        p.send("SEND", {"destination": "/queue/grp", "JMSXGroupID": g}, b"%s-%d" % (g.encode(), i))
    p.receipt("DISCONNECT", {}, "d")
    ga, gb = by_group(drain(a)), by_group(drain(b))
    assert not (set(ga) & set(gb)), (ga, gb)
    got = dict(ga, **gb)
    # every message of a group arrived, on one consumer, in send order
    for g in ("g", "h"):
        assert got[g] == [b"%s-%d" % (g.encode(), i) for i, x in enumerate(order) if x == g], got


def test_a_queue_forgets_its_least_recently_used_group_beyond_the_bound(broker_factory):
    """broker.max_message_groups: before, every group stayed pinned for as
    long as its consumer stayed (memory grew with every new group id)."""
    b = broker_factory({"broker.max_message_groups": "2"})
    a = connected(b.port)
    a.receipt("SUBSCRIBE", {"id": "a", "destination": "/queue/lru", "ack": "client-individual",
                            "activemq.prefetchSize": "3"}, "s")
    for g in ("g1", "g2", "g3"):
        send(b.port, "/queue/lru", [g.encode()], {"JMSXGroupID": g})
    assert [m.body for m in a.recv_all(3)] == [b"g1", b"g2", b"g3"]  # a is full now
    other = connected(b.port)
    other.receipt("SUBSCRIBE", {"id": "b", "destination": "/queue/lru"}, "s")
    # g1, the least recently used, was forgotten when g3 came: another takes it
    for g in ("g1", "g3"):
        send(b.port, "/queue/lru", [b"%s again" % g.encode()], {"JMSXGroupID": g})
    assert other.recv().body == b"g1 again"
    other.expect_nothing(0.5)  # g3 is still a's: it waits for a's room


def group_started_then_second_consumer(broker, dest):
    """Consumer a gets group g's first message (and so owns g); then b
    subscribes too. Returns (a, b)."""
    a = connected(broker.port)
    a.receipt("SUBSCRIBE", {"id": "a", "destination": dest}, "s")
    send(broker.port, dest, [b"1"], {"JMSXGroupID": "g"})
    assert a.recv().body == b"1"
    b = connected(broker.port)
    b.receipt("SUBSCRIBE", {"id": "b", "destination": dest}, "s")
    return a, b


def test_group_stays_with_its_consumer_when_others_join(broker):
    a, b = group_started_then_second_consumer(broker, "/queue/grp2")
    send(broker.port, "/queue/grp2", [b"2", b"3", b"4", b"5"], {"JMSXGroupID": "g"})
    assert [m.body for m in drain(a)] == [b"2", b"3", b"4", b"5"]
    b.expect_nothing()


def test_a_group_waiting_for_its_full_owner_lets_other_messages_by(broker):
    """Group g's owner is full: g's messages wait for it, in order, while
    the messages behind them go to whichever other consumer has room, and
    none of g's go elsewhere. (Found by review: deciding this scanned every
    consumer for every waiting message, and a backlog of 100,000 waiting
    over 1,000 full consumers held every client's receipt for a second;
    contrib/bench's message-group scenario measures it.)"""
    dest = "/queue/grp-wait"
    ci = {"ack": "client-individual", "activemq.prefetchSize": "1"}
    a = connected(broker.port)
    a.receipt("SUBSCRIBE", dict(ci, id="a", destination=dest), "s")
    send(broker.port, dest, [b"g-1"], {"JMSXGroupID": "g"})
    g1 = a.recv()
    assert g1.body == b"g-1"  # a owns g, and is full
    send(broker.port, dest, [b"g-2", b"g-3"], {"JMSXGroupID": "g"})
    b, c = connected(broker.port), connected(broker.port)
    b.receipt("SUBSCRIBE", dict(ci, id="b", destination=dest), "s")
    c.receipt("SUBSCRIBE", dict(ci, id="c", destination=dest), "s")
    p = connected(broker.port)
    for body, group in [(b"u-1", None), (b"g-4", "g"), (b"u-2", None), (b"u-3", None)]:
        h = {"destination": dest}
        if group:
            h["JMSXGroupID"] = group
        p.receipt("SEND", h, "r-" + body.decode(), body)
    mb, mc = b.recv(), c.recv()
    assert sorted([mb.body, mc.body]) == [b"u-1", b"u-2"]
    b.expect_nothing(0.3)
    c.expect_nothing(0.3)
    b.send("ACK", {"id": mb["ack"]})
    assert b.recv().body == b"u-3"
    a.send("ACK", {"id": g1["ack"]})
    for want in (b"g-2", b"g-3", b"g-4"):
        m = a.recv()
        assert m.body == want
        a.send("ACK", {"id": m["ack"]})
    a.expect_nothing(0.3)
    b.expect_nothing(0.3)
    c.expect_nothing(0.3)


def test_group_moves_when_its_consumer_leaves_and_stays_moved(broker):
    a, b = group_started_then_second_consumer(broker, "/queue/grp3")
    a.receipt("DISCONNECT", {}, "bye")
    a.close()
    send(broker.port, "/queue/grp3", [b"2"], {"JMSXGroupID": "g"})
    assert b.recv().body == b"2"
    # b now owns the group: a newcomer gets none of it
    c = connected(broker.port)
    c.receipt("SUBSCRIBE", {"id": "c", "destination": "/queue/grp3"}, "s")
    send(broker.port, "/queue/grp3", [b"3", b"4", b"5", b"6"], {"JMSXGroupID": "g"})
    assert [m.body for m in drain(b)] == [b"3", b"4", b"5", b"6"]
    c.expect_nothing()


def owner_took_the_first(broker, d):
    """Group A's first two messages on d, another consumer ready all along
    that takes neither, and the group's owner (prefetch 1) that has acked
    the first: the second passed while the owner was full. Returns the
    producer and the owner."""
    x = connected(broker.port)
    x.receipt("SUBSCRIBE", {"id": "x", "destination": d, "selector": "kind = 'x'"}, "rx")
    p = connected(broker.port)
    for i in (1, 2):
        p.send("SEND", {"destination": d, "JMSXGroupID": "A"}, b"A%d" % i)
    p.receipt("SEND", {"destination": "/topic/sync"}, "rp", b"")
    y = connected(broker.port)
    y.receipt("SUBSCRIBE", {"id": "y", "destination": d, "ack": "client-individual",
                            "activemq.prefetchSize": "1"}, "ry")
    f = y.recv(timeout=5)
    assert f.body == b"A1"
    y.receipt("ACK", {"id": f["ack"]}, "acked")
    return p, y, x


def test_group_message_stranded_when_owner_was_full(broker):
    """A group's owner full (prefetch 1) when the group's next message
    passed was not marked as having missed it: the sweeps after its ACK
    went past it, for good (helper-107)."""
    p, y, x = owner_took_the_first(broker, "/queue/grp-strand")
    f = y.recv(timeout=5)
    assert f.body == b"A2"


def test_group_order_broken_by_stranded_message(broker):
    """The same, then A3: the owner got A3 while A2 stayed (helper-107)."""
    p, y, x = owner_took_the_first(broker, "/queue/grp-order")
    p.receipt("SEND", {"destination": "/queue/grp-order", "JMSXGroupID": "A"}, "rp3", b"A3")
    f = y.recv(timeout=5)
    assert f.body == b"A2", f.body
    y.send("ACK", {"id": f["ack"]})
    assert y.recv(timeout=5).body == b"A3"


def test_group_message_stranded_when_owner_output_full(broker):
    """An owner whose output is full (a reader that stops reading) missed
    the group's next messages the same way (helper-107)."""
    d = "/queue/grp-out"
    x = connected(broker.port)
    x.receipt("SUBSCRIBE", {"id": "x", "destination": d, "selector": "kind = 'x'"}, "rx")
    p = connected(broker.port)
    big = b"z" * (256 * 1024)
    n = 64
    for i in range(n):
        p.send("SEND", {"destination": d, "JMSXGroupID": "A", "n": str(i)}, big)
    p.receipt("SEND", {"destination": "/topic/sync"}, "rp", b"")
    y = Client(broker.port, rcvbuf=4096)
    y.connect()
    y.receipt("SUBSCRIBE", {"id": "y", "destination": d}, "ry")
    time.sleep(1.0)  # y reads nothing meanwhile: its output fills (any wait will do: it is the same with none)
    got = []
    deadline = time.time() + 20
    while len(got) < n and time.time() < deadline:
        try:
            f = y.recv(timeout=3)
        except TimeoutError:
            break
        got.append(int(f["n"]))
    assert got == list(range(n)), (len(got), got[-3:] if got else got)


def group_owner_and_other(b):
    a = connected(b.port)
    a.receipt("SUBSCRIBE", {"id": "a", "destination": "/queue/g", "selector": "type = 'a'",
                            "ack": "client-individual", "activemq.prefetchSize": "100"}, "sa")
    bb = connected(b.port)
    bb.receipt("SUBSCRIBE", {"id": "b", "destination": "/queue/g", "selector": "type = 'b'"}, "sb")
    p = connected(b.port)
    p.receipt("SEND", {"destination": "/queue/g", "type": "a", "JMSXGroupID": "G"}, "r1", b"g1")
    f = a.recv(timeout=10)
    assert f.body == b"g1"
    return a, bb, p


def freed_group_message_reaches_the_other(b, a, bb, p, acks):
    for ack in acks:               # a's ACKs: from-the-top sweeps
        a.send("ACK", {"id": ack})
    p.receipt("SEND", {"destination": "/queue/g", "type": "b"}, "r9", b"later")
    got = [bb.recv(timeout=10).body]
    try:
        got.append(bb.recv(timeout=5).body)
    except TimeoutError:
        pass
    if b"x2" not in got:
        c = connected(b.port)    # any change of consumers resets seen_to
        c.receipt("SUBSCRIBE", {"id": "c", "destination": "/queue/g", "selector": "type = 'zzz'"}, "sc")
        try:
            late = bb.recv(timeout=5).body
        except TimeoutError:
            late = None
        raise AssertionError("x2 (type b) never reached b (got %r); after a new consumer came: %r" % (got, late))


def test_a_group_message_freed_by_its_groups_close_reaches_a_matching_consumer(broker_factory):
    """A group closed (JMSXGroupSeq -1) during a dispatch pass sends its
    waiting messages back to everyone, but the pass went on counting what
    it offered as seen by all: a message of the group its owner refused
    never reached the consumer that matches it (helper-110)."""
    b = broker_factory()
    a, bb, p = group_owner_and_other(b)
    # in one transaction: a group message the owner refuses, the group's
    # close, and a message nobody takes
    p.send("BEGIN", {"transaction": "t"})
    p.send("SEND", {"destination": "/queue/g", "type": "b", "JMSXGroupID": "G", "transaction": "t"}, b"x2")
    p.send("SEND", {"destination": "/queue/g", "type": "a", "JMSXGroupID": "G", "JMSXGroupSeq": "-1",
                    "transaction": "t"}, b"x3")
    p.send("SEND", {"destination": "/queue/g", "type": "c", "transaction": "t"}, b"x4")
    p.receipt("COMMIT", {"transaction": "t"}, "c")
    f = a.recv(timeout=10)
    assert f.body == b"x3"
    freed_group_message_reaches_the_other(b, a, bb, p, [f["ack"]])


def test_a_group_message_freed_by_its_group_forgotten_reaches_a_matching_consumer(broker_factory):
    """The same with a group forgotten for a new one
    (broker.max_message_groups) (helper-110)."""
    b = broker_factory({"broker.max_message_groups": "1"})
    a, bb, p = group_owner_and_other(b)
    p.send("BEGIN", {"transaction": "t"})
    p.send("SEND", {"destination": "/queue/g", "type": "b", "JMSXGroupID": "G", "transaction": "t"}, b"x2")
    # a second group: G is forgotten when it gets its owner
    p.send("SEND", {"destination": "/queue/g", "type": "a", "JMSXGroupID": "H", "transaction": "t"}, b"x3")
    p.send("SEND", {"destination": "/queue/g", "type": "c", "transaction": "t"}, b"x4")
    p.receipt("COMMIT", {"transaction": "t"}, "c")
    f = a.recv(timeout=10)
    assert f.body == b"x3"
    freed_group_message_reaches_the_other(b, a, bb, p, [f["ack"]])
