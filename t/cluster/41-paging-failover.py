"""Deep backlogs across failover: with a tiny broker.queue_window the
master holds a few messages of a 3000-message queue in memory and pages
the rest from its store; kill -9 it in the middle of a drain, and the new
master (a slave that kept the store current) serves at once, reading the
backlog from its own store in order: every message not acknowledged is
there, once, and those delivered before the kill come back marked."""
from stompd_test import ZkCluster, connected


def test_kill9_of_the_master_in_the_middle_of_a_paged_drain(broker_factory, zk_ensemble):
    c = ZkCluster(broker_factory, zk_ensemble, broker__queue_window="4KiB")
    m = c.start_all()
    p = connected(c.nodes[m].port)
    for i in range(3000):
        p.send("SEND", {"destination": "/queue/deep", "persistent": "true", "n": str(i)}, b"d" * 200)
    p.receipt("SEND", {"destination": "/queue/marker", "persistent": "true"}, "filled", b"")
    p.close()
    s = connected(c.nodes[m].port)
    s.send("SUBSCRIBE", {"id": "1", "destination": "/queue/deep", "ack": "client-individual",
                         "activemq.prefetchSize": "300"})
    got = [s.recv(timeout=10) for _ in range(300)]
    assert [int(f["n"]) for f in got] == list(range(300))
    # the first 200 acknowledged (the last with a receipt: the quorum has
    # all of them), 100 delivered and not acknowledged
    for f in got[:199]:
        s.send("ACK", {"id": f["ack"]})
    s.send("ACK", {"id": got[199]["ack"], "receipt": "acked"})
    while True:
        f = s.recv(timeout=10)
        if f.command == "RECEIPT":
            break
        got.append(f)
    delivered = {int(f["n"]) for f in got[200:]}
    c.nodes[m].kill()
    new = c.wait_master(timeout=20, exclude=m)
    d = connected(c.nodes[new].port)
    d.send("SUBSCRIBE", {"id": "1", "destination": "/queue/deep"})
    rest = [d.recv(timeout=10) for _ in range(2800)]
    assert [int(f["n"]) for f in rest] == list(range(200, 3000))
    assert {int(f["n"]) for f in rest if f.get("redelivered") == "true"} == delivered
    d.expect_nothing(0.5)
