"""A master znode that names this node but belongs to an earlier session
of its own: here the master is killed (kill -9) and started again before
its old session expires. Only that expiry removes the znode; a new session
cannot. The node used to take the znode for its current session's and
re-register, and every new session found it again: a new session every
200 ms until the old one expired. It now waits for the expiry, with one
session, and the cluster then elects a master that has every receipted
message."""
import re

from stompd_test import ZkCluster, connected


def test_restarted_master_waits_for_its_old_session_to_expire(broker_factory, zk_ensemble):
    c = ZkCluster(broker_factory, zk_ensemble)
    for b in c.nodes:
        # long enough that the restart surely comes before the old
        # session's expiry (the ensemble allows up to 10 s)
        b.settings["zookeeper.session_timeout"] = "6s"
    try:
        m = c.start_all()
        old = c.nodes[m]
        p = connected(old.port)
        for i in range(20):
            p.receipt("SEND", {"destination": "/queue/stale", "persistent": "true"}, "r%d" % i, b"m%d" % i)
        p.close()

        old.kill()
        c.start(m)
        new = c.wait_master(timeout=60)
        since = old.log_since_start()
        assert "re-registering" not in since, since[-5000:]
        assert len(re.findall(r"zookeeper: registered as", since)) == 1, since[-5000:]
        assert re.search(r"the master znode names this node but an earlier session \(0x[0-9a-f]+\) holds it: "
                         r"waiting for that session to expire", since), since[-5000:]
        s = connected(c.nodes[new].port)
        s.send("SUBSCRIBE", {"id": "1", "destination": "/queue/stale"})
        assert [s.recv(timeout=10).body for _ in range(20)] == [b"m%d" % i for i in range(20)]
        s.close()
        assert c.masters() == [new]
    finally:
        stopped = [(b.name, b.stop()) for b in c.nodes if b.running()]
    assert all(rc == 0 for _, rc in stopped), stopped
