"""Nodes cut off from ZooKeeper by a silent partition (no reset, no error:
the bytes just stop). A slave cut off past the session timeout finds its
session expired when the partition heals, registers again from scratch
and follows the master. A master cut off must stop serving before the
others can elect a new master; when the partition heals it rejoins as a
slave, and can be elected at the next failover."""
import re
import time
from datetime import datetime

from stompd_test import Blackhole, ZkCluster, connected


def log_time(b, pattern):
    """The timestamp of the first log line of b matching pattern."""
    for line in b.log_since_start().splitlines():
        if re.search(pattern, line):
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()
    raise AssertionError("%s never logged %r:\n%s" % (b.name, pattern, b.log()[-3000:]))


def node_id(b):
    return re.search(r"registered as \S+/(m-\d+)", b.log()).group(1)


def test_silently_isolated_master_steps_down_before_it_is_replaced(broker_factory, zk_ensemble):
    c = ZkCluster(broker_factory, zk_ensemble)
    holes = []
    try:
        for node in c.nodes:
            mine = [Blackhole(p) for p in zk_ensemble.client]
            holes.append(mine)
            node.settings["zookeeper.address"] = ",".join("127.0.0.1:%d" % h.port for h in mine)
        m = c.start_all()
        old = c.nodes[m]
        p = connected(old.port)
        p.receipt("SEND", {"destination": "/queue/isolated", "persistent": "true"}, "r1", b"before")

        # A slave's session expires behind a partition (its replication
        # link to the master, not through the partition, stays up).
        sl = c.nodes[(m + 1) % 3]
        for h in holes[(m + 1) % 3]:
            h.block()
        # the others see its member znode go: the session has expired
        assert old.wait_log(r"cluster: member %s left" % node_id(sl), timeout=15), old.log()[-3000:]
        mark = len(sl.log())
        for h in holes[(m + 1) % 3]:
            h.unblock()
        deadline = time.time() + 20
        expired = r"session expired: registering again[\s\S]*registered as"
        while time.time() < deadline and not re.search(expired, sl.log()[mark:]):
            time.sleep(0.05)
        assert re.search(expired, sl.log()[mark:]), sl.log()[-3000:]
        assert old.wait_log(r"cluster: member \S+ joined", timeout=10)
        assert c.masters() == [m]
        p.receipt("SEND", {"destination": "/queue/isolated", "persistent": "true"}, "r2", b"between")
        p.close()

        for h in holes[m]:
            h.block()
        t_block = time.time()
        # Never two masters at once, and the old one gives up first.
        deadline = time.time() + 20
        new = None
        while time.time() < deadline and new is None:
            serving = c.masters()
            assert len(serving) <= 1, "two nodes accept clients: %s" % serving
            if serving and serving[0] != m:
                new = serving[0]
            time.sleep(0.02)
        assert new is not None, "no new master:\n" + "\n".join(n.log()[-1500:] for n in c.nodes)
        down = log_time(old, r"stepping down as master: ZooKeeper has not answered")
        up = log_time(c.nodes[new], r"this node is master in epoch")
        assert down < up, "old master stepped down at %.3f, new one was master at %.3f" % (down, up)
        # and before its session could possibly have expired (the server
        # heard from it until the partition, at the earliest)
        assert down - t_block < 2.0, "stepped down %.2f s after the partition" % (down - t_block)
        assert not ZkCluster.serving(old)

        # The partition heals: the node registers again (with a new
        # session: the one it had names it master) and follows the new
        # master.
        mark = len(old.log())
        for h in holes[m]:
            h.unblock()
        deadline = time.time() + 20
        while time.time() < deadline and not re.search(r"registered as[\s\S]*following master", old.log()[mark:]):
            time.sleep(0.05)
        assert re.search(r"registered as[\s\S]*following master", old.log()[mark:]), old.log()[-3000:]

        # It is a full member again: kill the new master, and the two left
        # (the healed node among them) elect one that has the message.
        c.nodes[new].kill()
        last = c.wait_master(timeout=30, exclude=new)
        s = connected(c.nodes[last].port)
        s.send("SUBSCRIBE", {"id": "1", "destination": "/queue/isolated"})
        assert [s.recv(timeout=10).body for _ in range(2)] == [b"before", b"between"]
        s.close()
    finally:
        # Stop the nodes while their way to ZooKeeper is still open, and
        # undisturbed (a node stopped while it cannot reach ZooKeeper has
        # requests the client library never completes, which
        # LeakSanitizer reports), then the proxies.
        stopped = []
        for n in c.nodes:
            if n.running():
                stopped.append((n.name, n.stop()))
        for mine in holes:
            for h in mine:
                h.close()
    assert all(rc == 0 for _, rc in stopped), stopped
