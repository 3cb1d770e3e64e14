"""A cluster node under systemd (a real NOTIFY_SOCKET): READY=1 once it has
joined the cluster (registered in ZooKeeper), even while no master can be
elected yet, so a node started before its peers does not hang its unit's
start; STATUS= then follows its role."""
import os
import re

import pytest

from stompd_test import NotifySocket, ZkCluster, built_with_sd_notify


@pytest.mark.skipif(not built_with_sd_notify(), reason="built without libsystemd: the unit is Type=simple")
def test_cluster_node_ready_once_joined_and_status_follows_the_role(broker_factory, zk_ensemble, tmp_path):
    c = ZkCluster(broker_factory, zk_ensemble)
    socks = []
    try:
        for i, node in enumerate(c.nodes):
            socks.append(NotifySocket(str(tmp_path / ("notify%d" % i))))
            node.env = socks[i].env()
        # alone, the first node cannot be elected (no quorum of 3), but it has joined
        c.start(0)
        got = socks[0].wait(lambda m: "READY" in m)
        assert got[0]["STATUS"].startswith("starting: opening the store in "), got
        assert got[-1]["STATUS"] == "electing: registered in ZooKeeper, waiting for a master", got
        assert c.masters() == []
        c.start(1)
        c.start(2)
        m = c.wait_master()
        repl = {i: re.search(r":(\d+)$", n.settings["store.bind"]).group(1) for i, n in enumerate(c.nodes)}
        for i, node in enumerate(c.nodes):
            if i == m:
                want = "master, serving STOMP on 127.0.0.1:%d" % node.port
            else:
                want = "slave of 127.0.0.1:%s, replicating" % repl[m]
            socks[i].wait(lambda msg: msg.get("STATUS") == want)
            assert sum(1 for msg in socks[i].got if msg.get("READY") == "1") == 1, socks[i].got
        # the master stops: a slave takes over and says so
        ready_before = {i: len(socks[i].got) for i in range(3)}
        c.nodes[m].stop()
        new = c.wait_master(exclude=m)
        socks[new].wait(lambda msg: msg.get("STATUS") == "master, serving STOMP on 127.0.0.1:%d" % c.nodes[new].port)
        assert not any(msg.get("READY") for msg in socks[new].got[ready_before[new]:])
        socks[m].wait(lambda msg: "STOPPING" in msg)
    finally:
        for s in socks:
            s.close()
