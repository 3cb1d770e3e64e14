"""kill -9 the master while a failover producer sends persistent messages
with receipts and a consumer drains: a new master serves within the
session timeout plus a second, five times in a row, the killed node
rejoins as a slave, and every receipted message is consumed."""
import os
import statistics
import time

from stompd_test import BUILDDIR, FailoverConsumer, FailoverProducer, ZkCluster, connected


def test_five_master_kills(broker_factory, zk_ensemble):
    c = ZkCluster(broker_factory, zk_ensemble)
    c.start_all()
    producer = FailoverProducer(c.ports, "/queue/ha").start(interval=0.002)
    consumer = FailoverConsumer(c.ports, "/queue/ha").start()
    times = []
    for kill in range(5):
        time.sleep(1.0)
        m = c.wait_master()
        t_kill = time.time()
        c.nodes[m].kill()
        new = c.wait_master(timeout=20, exclude=m)
        # failover time: last receipt from the old master to the first from
        # the new (receipts from the old one can still arrive after the kill)
        new_port = c.nodes[new].port

        def from_new():
            return [t for b, t in list(producer.receipted.items())
                    if t > t_kill and producer.receipted_by.get(b) == new_port]

        deadline = time.time() + 20
        while time.time() < deadline and not from_new():
            time.sleep(0.01)
        old_port = c.nodes[m].port
        from_old = [t for b, t in list(producer.receipted.items()) if producer.receipted_by.get(b) == old_port]
        last_old = max(from_old) if from_old else t_kill
        first_new = min(from_new())
        times.append(first_new - last_old)
        # within the session timeout plus a second, measured and reported
        # above; asserted with slack, as the machine may be busy
        assert first_new - t_kill < 2.0 + 1.0 + 5.0, "took %.2f s" % (first_new - t_kill)
        # the killed node comes back as a slave
        c.start(m)
        assert c.nodes[m].wait_log("following master", since_start=True, timeout=20)
        assert c.masters() == [new]
    time.sleep(0.5)
    producer.finish()
    missing = consumer.wait_for(list(producer.receipted))
    consumer.finish()
    figures = ("failover times over %d kills: min %.2f s, median %.2f s, max %.2f s; %d receipted, %d resent, "
               "%d duplicates delivered (%d not marked redelivered), %d lost\n" % (
                   len(times), min(times), statistics.median(times), max(times), len(producer.receipted),
                   producer.resent, consumer.duplicates, consumer.unmarked, len(missing)))
    with open(os.path.join(BUILDDIR, "cluster-failover-figures.txt"), "a") as f:
        f.write(figures)
    print(figures)
    assert not missing, "receipted but never consumed: %s" % sorted(missing)[:10]
    assert len(producer.receipted) > 100
    # the requirement: within the session timeout plus a second (the
    # median: one slow kill on a busy machine is allowed the slack above);
    # ZooKeeper expires sessions on its ticks, so the session ends up to a
    # tick (0.5 s here) after its timeout
    assert statistics.median(times) < 2.0 + 0.5 + 1.0, figures
    assert consumer.unmarked == 0, figures


def test_planned_stops_hand_over(broker_factory, zk_ensemble):
    """SIGTERM the master three times while a failover producer sends
    persistent messages with receipts and a consumer drains: each master
    hands over (its slaves get every entry before it goes, within
    store.stop_wait), so nothing receipted is lost and nothing comes again
    without redelivered:true."""
    c = ZkCluster(broker_factory, zk_ensemble)
    c.start_all()
    producer = FailoverProducer(c.ports, "/queue/planned").start(interval=0.002)
    consumer = FailoverConsumer(c.ports, "/queue/planned").start()
    for stop in range(3):
        time.sleep(1.0)
        m = c.wait_master()
        assert c.nodes[m].stop() == 0
        log = c.nodes[m].log()
        assert "without the slaves in step" not in log, log[-3000:]
        c.wait_master(timeout=20, exclude=m)
        c.start(m)
        assert c.nodes[m].wait_log("following master", since_start=True, timeout=20)
    time.sleep(0.5)
    producer.finish()
    missing = consumer.wait_for(list(producer.receipted))
    consumer.finish()
    figures = "%d receipted, %d resent, %d duplicates (%d not marked redelivered), %d lost" % (
        len(producer.receipted), producer.resent, consumer.duplicates, consumer.unmarked, len(missing))
    print(figures)
    assert not missing, figures
    assert len(producer.receipted) > 100, figures
    assert consumer.unmarked == 0, figures


def test_cluster_survives_loss_of_any_node(broker_factory, zk_ensemble):
    c = ZkCluster(broker_factory, zk_ensemble)
    m = c.start_all()
    for victim in [i for i in range(3) if i != m] + [m]:
        c.nodes[victim].kill()
        c.wait_master(timeout=20, exclude=victim)
        producer = FailoverProducer(c.ports, "/queue/any%d" % victim).start(count=20)
        producer.thread.join(timeout=30)
        assert len(producer.receipted) == 20
        c.start(victim)
        assert c.nodes[victim].wait_log("following master|this node is master", since_start=True, timeout=20)


def test_duplicate_window_holds_across_failover(broker_factory, zk_ensemble):
    # A producer whose receipt was lost with the master resends to the new
    # one: the replicated window drops the copy and still receipts it.
    c = ZkCluster(broker_factory, zk_ensemble)
    m = c.start_all()
    h = {"destination": "/queue/dup-failover", "persistent": "true", "_AMQ_DUPL_ID": "once-only"}
    p = connected(c.nodes[m].port)
    p.receipt("SEND", h, "r1", b"original")
    p.close()
    c.nodes[m].kill()
    new = c.wait_master(timeout=20, exclude=m)
    p = connected(c.nodes[new].port)
    p.receipt("SEND", h, "r2", b"resent")
    p.receipt("SEND", dict(h, **{"_AMQ_DUPL_ID": "another"}), "r3", b"another")
    s = connected(c.nodes[new].port)
    s.send("SUBSCRIBE", {"id": "1", "destination": "/queue/dup-failover"})
    assert [s.recv(timeout=10).body for _ in range(2)] == [b"original", b"another"]
    s.expect_nothing(0.5)


def test_new_master_numbers_messages_after_every_pending_one(broker_factory, zk_ensemble):
    # A slave's store grows after it opened: the node it promotes numbers
    # new messages above every message it holds. (Numbered from what the
    # store had at open, new messages took the index keys of pending ones:
    # those were lost.)
    c = ZkCluster(broker_factory, zk_ensemble)
    m = c.start_all()
    p = connected(c.nodes[m].port)
    for i in range(10):
        p.receipt("SEND", {"destination": "/queue/numbered", "persistent": "true"}, "b%d" % i, b"before %d" % i)
    p.close()
    c.nodes[m].kill()
    new = c.wait_master(timeout=20, exclude=m)
    p = connected(c.nodes[new].port)
    for i in range(10):
        p.receipt("SEND", {"destination": "/queue/numbered", "persistent": "true"}, "a%d" % i, b"after %d" % i)
    s = connected(c.nodes[new].port)
    s.send("SUBSCRIBE", {"id": "1", "destination": "/queue/numbered"})
    got = [s.recv(timeout=10).body for _ in range(20)]
    assert got == [b"before %d" % i for i in range(10)] + [b"after %d" % i for i in range(10)]
    s.expect_nothing(0.5)
