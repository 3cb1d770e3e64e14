"""Topics: fan-out to current subscribers, late subscribers miss earlier
messages, unsubscribe stops delivery."""
from stompd_test import connected, http_json


def test_fan_out_to_every_subscriber(broker):
    subs = []
    for i in range(4):
        c = connected(broker.port)
        c.receipt("SUBSCRIBE", {"id": "s%d" % i, "destination": "/topic/news"}, "r")
        subs.append(c)
    p = connected(broker.port)
    for i in range(50):
        p.send("SEND", {"destination": "/topic/news"}, b"n%d" % i)
    for c in subs:
        assert [m.body for m in c.recv_all(50)] == [b"n%d" % i for i in range(50)]
        c.expect_nothing(0.1)


def test_late_subscriber_misses_earlier(broker):
    p = connected(broker.port)
    p.receipt("SEND", {"destination": "/topic/late"}, "r", b"early")
    c = connected(broker.port)
    c.receipt("SUBSCRIBE", {"id": "1", "destination": "/topic/late"}, "s")
    p.send("SEND", {"destination": "/topic/late"}, b"later")
    assert c.recv().body == b"later"
    c.expect_nothing()


def test_unsubscribe_stops(broker):
    c = connected(broker.port)
    c.receipt("SUBSCRIBE", {"id": "1", "destination": "/topic/u"}, "s")
    c.receipt("UNSUBSCRIBE", {"id": "1"}, "u")
    p = connected(broker.port)
    p.receipt("SEND", {"destination": "/topic/u"}, "r", b"x")
    c.expect_nothing()


def test_topic_client_ack_and_two_subscriptions_on_one_connection(broker):
    c = connected(broker.port)
    c.receipt("SUBSCRIBE", {"id": "a", "destination": "/topic/two", "ack": "client-individual"}, "1")
    c.receipt("SUBSCRIBE", {"id": "b", "destination": "/topic/two"}, "2")
    p = connected(broker.port)
    p.send("SEND", {"destination": "/topic/two"}, b"hello")
    got = {m["subscription"]: m for m in c.recv_all(2)}
    assert set(got) == {"a", "b"}
    assert got["a"]["message-id"] == got["b"]["message-id"]
    assert got["a"]["ack"] and got["b"].get("ack") is None
    c.receipt("ACK", {"id": got["a"]["ack"]}, "acked")


def test_topic_unacked_not_redelivered_after_unsubscribe(broker):
    c = connected(broker.port)
    c.receipt("SUBSCRIBE", {"id": "a", "destination": "/topic/gone", "ack": "client"}, "1")
    p = connected(broker.port)
    p.send("SEND", {"destination": "/topic/gone"}, b"one")
    c.recv()
    c.receipt("UNSUBSCRIBE", {"id": "a"}, "u")
    c.receipt("SUBSCRIBE", {"id": "b", "destination": "/topic/gone"}, "2")
    c.expect_nothing()


def test_a_durable_subscription_removed_by_name_counts_no_redeliveries(broker):
    """UNSUBSCRIBE naming a durable subscription removes it with its
    backlog: what its subscriber held went back to the backlog first and
    was counted as redelivered (50 such, helper-82), though nothing was
    redelivered and the subscription was gone."""
    c = connected(broker.port, headers={"client-id": "gone-app"})
    c.receipt("SUBSCRIBE", {"id": "1", "destination": "/topic/dgone", "ack": "client-individual",
                            "activemq.subscriptionName": "d", "activemq.prefetchSize": "5"}, "s")
    p = connected(broker.port)
    for i in range(10):
        p.send("SEND", {"destination": "/topic/dgone", "persistent": "true"}, b"%d" % i)
    p.receipt("SEND", {"destination": "/topic/dgone", "persistent": "true"}, "r", b"last")
    held = [c.recv() for _ in range(5)]
    assert [m.body for m in held] == [b"%d" % i for i in range(5)]
    c.receipt("UNSUBSCRIBE", {"id": "1", "activemq.subscriptionName": "d"}, "u")
    t = [x for x in http_json(broker.http_port, "/api/topics") if x["name"] == "/topic/dgone"][0]
    assert t["durable_subscriptions"] == [] and t["stats"]["redelivered"] == 0, t
    # made again, it starts empty
    c.receipt("SUBSCRIBE", {"id": "2", "destination": "/topic/dgone", "activemq.subscriptionName": "d"}, "s2")
    c.expect_nothing()
