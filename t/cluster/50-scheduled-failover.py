"""Scheduled messages in a replicated cluster (ActiveMQ's replicated
LevelDB lost them on failover: its scheduler store was not replicated):
a persistent scheduled message receipted by the master is delivered by
the next master after a kill -9, at its time (never early; late by at
most the failover), a repeating one goes on where it was, and a cancelled
one stays cancelled. Composite sends, wildcard durable subscriptions and
virtual topic queues come through a failover whole too."""
import base64
import http.client
import json
import time

from stompd_test import ZkCluster, connected


def master_client(c, exclude=None, timeout=30):
    m = c.wait_master(timeout=timeout, exclude=exclude) if exclude is not None else c.start_all()
    return m, connected(c.nodes[m].port)


def scheduler(b):
    conn = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=5)
    conn.request("GET", "/api/scheduler",
                 headers={"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    assert r.status == 200, data
    return json.loads(data)


def cancel(b, job):
    conn = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=5)
    conn.request("POST", "/api/scheduler/cancel", body=json.dumps({"id": job}),
                 headers={"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode(),
                          "Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    conn.close()
    return r.status


def test_scheduled_messages_survive_a_failover(broker_factory, zk_ensemble):
    c = ZkCluster(broker_factory, zk_ensemble)
    m, p = master_client(c)
    t0 = time.time()
    p.receipt("SEND", {"destination": "/queue/sched", "persistent": "true", "AMQ_SCHEDULED_DELAY": "6000"}, "r1",
              b"once")
    p.receipt("SEND", {"destination": "/queue/sched", "persistent": "true", "AMQ_SCHEDULED_DELAY": "500",
                       "AMQ_SCHEDULED_PERIOD": "1500", "AMQ_SCHEDULED_REPEAT": "5"}, "r2", b"tick")
    p.receipt("SEND", {"destination": "/queue/sched", "persistent": "true", "AMQ_SCHEDULED_DELAY": "4000"}, "r3",
              b"cancelled")
    jobs = {j["id"]: j for j in scheduler(c.nodes[m])["jobs"]}
    cancelled = [j for j in jobs.values() if j["due_ms"] >= t0 * 1000 + 4000 and j["delay"] == "4000"][0]
    assert cancel(c.nodes[m], cancelled["id"]) == 200
    # a consumer on the first master sees the first ticks
    cons = connected(c.nodes[m].port)
    cons.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/sched", "ack": "client-individual"}, "s")
    f = cons.recv(timeout=10)
    assert f.body == b"tick"
    cons.receipt("ACK", {"id": f["ack"]}, "a")
    t_kill = time.time()
    c.nodes[m].kill()
    m2 = c.wait_master(timeout=30, exclude=m)
    failover = time.time() - t_kill
    cons = connected(c.nodes[m2].port)
    cons.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/sched", "ack": "client-individual"}, "s")
    # everything the schedule holds is due by t0 + 8 s, or, after a slow
    # failover, within four periods of now (a repeat late for the failover
    # fires at once and its next period runs from then): collect until well
    # after
    ticks, once = 1, []
    until = max(t0 + 8.0, time.time() + 4 * 1.5) + 5.0
    while time.time() < until:
        try:
            f = cons.recv(timeout=0.5)
        except TimeoutError:
            continue
        assert f.body in (b"tick", b"once"), "a cancelled message came back: %r" % f
        if f.body == b"once":
            once.append(time.time())
        else:
            ticks += 1
        cons.send("ACK", {"id": f["ack"]})
    assert len(once) == 1, "the scheduled message came %d times" % len(once)
    once = once[0]
    assert once >= t0 + 6.0, "early by %.3f s" % (t0 + 6.0 - once)
    # late by at most the failover time plus slack for a busy machine
    assert once <= t0 + 6.0 + failover + 10, "late by %.1f s (failover took %.1f s)" % (once - t0 - 6.0, failover)
    # repeat 5: six deliveries, one more at most if a firing's entry was
    # not committed when the master died (at least once)
    assert 6 <= ticks <= 7, "the repeating message was delivered %d times" % ticks
    # the killed node rejoins and the schedule is empty everywhere
    c.start(m)
    assert c.nodes[m].wait_log("following master", since_start=True, timeout=30)
    assert scheduler(c.nodes[m2])["scheduled"] == 0


def test_destinations_come_through_a_failover(broker_factory, zk_ensemble):
    c = ZkCluster(broker_factory, zk_ensemble)
    m, p = master_client(c)
    d = connected(c.nodes[m].port, headers={"client-id": "wild"})
    d.receipt("SUBSCRIBE", {"id": "d", "destination": "/topic/fx.>", "activemq.subscriptionName": "all"}, "s")
    d.receipt("DISCONNECT", {}, "bye")
    v = connected(c.nodes[m].port)
    v.receipt("SUBSCRIBE", {"id": "v", "destination": "/queue/Consumer.G.VirtualTopic.trades"}, "s")
    v.receipt("DISCONNECT", {}, "bye")
    for i in range(20):
        p.receipt("SEND", {"destination": "/queue/c1,/queue/c2,/topic/fx.eur.usd", "persistent": "true"},
                  "r%d" % i, b"c%d" % i)
    p.receipt("SEND", {"destination": "/topic/VirtualTopic.trades", "persistent": "true"}, "vt", b"trade")
    c.nodes[m].kill()
    m2, p2 = master_client(c, exclude=m)

    def drain(dest, headers=None):
        cl = connected(c.nodes[m2].port, headers=headers)
        h = {"id": "x", "destination": dest}
        h.update({"activemq.subscriptionName": "all"} if headers else {})
        cl.receipt("SUBSCRIBE", h, "s")
        got = []
        while True:
            try:
                got.append(cl.recv(timeout=1.5))
            except TimeoutError:
                return got

    want = sorted(b"c%d" % i for i in range(20))
    assert sorted(f.body for f in drain("/queue/c1")) == want
    assert sorted(f.body for f in drain("/queue/c2")) == want
    fx = drain("/topic/fx.>", headers={"client-id": "wild"})
    assert sorted(f.body for f in fx) == want and fx[0]["destination"] == "/topic/fx.eur.usd"
    assert [f.body for f in drain("/queue/Consumer.G.VirtualTopic.trades")] == [b"trade"]
    # the group's queue is still kept on the new master
    p2.receipt("SEND", {"destination": "/topic/VirtualTopic.trades", "persistent": "true"}, "vt2", b"trade2")
    assert [f.body for f in drain("/queue/Consumer.G.VirtualTopic.trades")] == [b"trade2"]
