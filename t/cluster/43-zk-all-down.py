"""Every ZooKeeper server down for longer than the session timeout, then
back (the chaos suite's zk-all). The master steps down while ZooKeeper is
out of reach; its master znode stays until its session ends. It used to
drop that session at once, while no server could hear the close: the
znode then stayed until the abandoned session expired, and each new
session found it, took it for its own, and was dropped again (a new
session every 200 ms). Now the node keeps its session until it is back,
closes it where a server hears it (the znode goes at once), or finds it
expired: either way it re-registers once, and the cluster elects a master
that has every receipted message."""
import os
import re
import shutil
import time

from stompd_test import ZkCluster, ZkEnsemble, connected


def wait_log_after(b, mark, pattern, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if re.search(pattern, b.log()[mark:]):
            return True
        time.sleep(0.05)
    return False


def test_all_zookeeper_servers_down_then_back(broker_factory, zk_ensemble):
    c = ZkCluster(broker_factory, zk_ensemble)
    try:
        m = c.start_all()
        old = c.nodes[m]
        p = connected(old.port)
        for i in range(20):
            p.receipt("SEND", {"destination": "/queue/zk-all", "persistent": "true"}, "r%d" % i, b"m%d" % i)
        p.close()
        marks = [len(b.log()) for b in c.nodes]

        zk_ensemble.stop()
        # a master that cannot reach ZooKeeper cannot know that it leads
        assert wait_log_after(old, marks[m], r"stepping down as master", 30), old.log()[marks[m]:][-3000:]
        assert c.masters() == []
        # the fault's length (as zk-all's): twice the session timeout
        # without any server, so that every session would have expired
        # had the servers kept counting
        time.sleep(4.0)
        # a slave out of touch stops following the master it last heard
        # of, once: it used to follow it again from that stale news on the
        # next tick, flipping its role (and reconnecting) every 200 ms
        for i, b in enumerate(c.nodes):
            if i != m:
                flips = re.findall(r"role: electing -> slave", b.log()[marks[i]:])
                assert len(flips) <= 1, "%d flips:\n%s" % (len(flips), b.log()[marks[i]:][-3000:])
        zk_ensemble.start()

        new = c.wait_master(timeout=60)
        since = old.log()[marks[m]:]
        # one new session at most (none when the old one expired meanwhile)
        assert len(re.findall(r"not serving: re-registering", since)) <= 1, since[-5000:]
        assert len(re.findall(r"zookeeper: registered as", since)) <= 1, since[-5000:]
        # the others follow the new master, the old master among them
        epoch = re.findall(r"this node is master in epoch (\d+)", c.nodes[new].log())[-1]
        for i, b in enumerate(c.nodes):
            if i != new:
                assert wait_log_after(b, marks[i], r"replication: following master \S+ \(\S+, epoch %s\)" % epoch,
                                      30), b.log()[marks[i]:][-3000:]
        s = connected(c.nodes[new].port)
        s.send("SUBSCRIBE", {"id": "1", "destination": "/queue/zk-all"})
        assert [s.recv(timeout=10).body for _ in range(20)] == [b"m%d" % i for i in range(20)]
        s.close()
        assert c.masters() == [new]
    finally:
        if not all(zk_ensemble.serving(k) for k in range(zk_ensemble.n)):
            zk_ensemble.start()  # nodes stop cleanly only with ZooKeeper up
        stopped = [(b.name, b.stop()) for b in c.nodes if b.running()]
    assert all(rc == 0 for _, rc in stopped), stopped


def test_an_ensemble_that_lost_its_data(broker_factory):
    """ZooKeeper restarted from an empty dataDir refuses for ever a client
    session that saw newer state ("Host is down"): the nodes used to retry
    that session for ever, electing nobody. Now a node whose session no
    server takes for twice its timeout starts a new one (a node that was
    master waits longer): they register again and elect, losing nothing
    receipted, and the old master comes back as a slave."""
    zk = ZkEnsemble(1).start()
    c = ZkCluster(broker_factory, zk)
    try:
        m = c.start_all()
        p = connected(c.nodes[m].port)
        for i in range(20):
            p.receipt("SEND", {"destination": "/queue/zk-lost", "persistent": "true"}, "r%d" % i, b"m%d" % i)
        p.close()
        marks = [len(b.log()) for b in c.nodes]
        zk.stop()
        assert wait_log_after(c.nodes[m], marks[m], r"stepping down as master", 30)
        shutil.rmtree(os.path.join(zk.dir, "zk1", "version-2"))
        zk.start()
        new = c.wait_master(timeout=90)
        for i, b in enumerate(c.nodes):
            assert wait_log_after(b, marks[i], r"starting a new one", 60), b.log()[marks[i]:][-3000:]
        s = connected(c.nodes[new].port)
        s.send("SUBSCRIBE", {"id": "1", "destination": "/queue/zk-lost"})
        assert [s.recv(timeout=10).body for _ in range(20)] == [b"m%d" % i for i in range(20)]
        s.close()
        # the old master too is back, as a slave
        for i, b in enumerate(c.nodes):
            if i != new:
                assert wait_log_after(b, marks[i], r"replication: following master", 60), b.log()[marks[i]:][-3000:]
    finally:
        stopped = [(b.name, b.stop()) for b in c.nodes if b.running()]
        zk.cleanup()
    assert all(rc == 0 for _, rc in stopped), stopped
