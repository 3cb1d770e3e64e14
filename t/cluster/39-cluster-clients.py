"""Cluster-aware clients (ActiveMQ's updateClusterClients): the master's
CONNECTED names every member's client address in a cluster-members
header, and libstompc adds them to its failover list, so a client given
one node's address still fails over when that node is killed (kill -9)."""
import os
import re
import sys
import time

from stompd_test import SRCDIR, Client, ZkCluster

sys.path.insert(0, os.path.join(SRCDIR, "t", "client"))
from clienttest import live, value  # noqa: E402


def test_connected_names_every_member(broker_factory, zk_ensemble):
    c = ZkCluster(broker_factory, zk_ensemble)
    m = c.start_all()
    want = sorted("tcp://127.0.0.1:%d" % p for p in c.ports)
    # every node registers in ZooKeeper on its own time: ask until the
    # master has seen all three (a generous deadline, for loaded machines)
    deadline = time.time() + 30
    while True:
        raw = Client(c.nodes[m].port)
        try:
            got = raw.connect("1.2").get("cluster-members")
        finally:
            raw.close()
        assert got
        if sorted(got.split(",")) == want or time.time() > deadline:
            break
        time.sleep(0.1)
    assert sorted(got.split(",")) == want, got
    # CONNECT and CONNECTED are never escaped: the colons are as they are
    assert re.fullmatch(r"tcp://127\.0\.0\.1:\d+(,tcp://127\.0\.0\.1:\d+)*", got)


def test_standalone_broker_names_no_members(broker):
    raw = Client(broker.port)
    try:
        assert raw.connect("1.2").get("cluster-members") is None
    finally:
        raw.close()


def test_client_given_one_node_fails_over_to_another(broker_factory, zk_ensemble):
    c = ZkCluster(broker_factory, zk_ensemble)
    m = c.start_all()
    url = "failover:(tcp://127.0.0.1:%d)?initialReconnectDelay=10&maxReconnectDelay=200" % c.nodes[m].port
    out = live(url, "learn", "on", actions={"kill-master": c.nodes[m].kill}, timeout=120)
    assert value(out, "first") == "tcp://127.0.0.1:%d" % c.nodes[m].port
    second = value(out, "second")
    assert second in ["tcp://127.0.0.1:%d" % c.nodes[i].port for i in range(3) if i != m], out
    assert "reconnected to %s" % second in out


def test_without_update_uris_a_one_node_client_stays_stranded(broker_factory, zk_ensemble):
    # the same client told not to learn (updateURIsSupported=false) has no
    # other node to go to: its send gets no RECEIPT (the driver checks it
    # never reconnected), though the cluster has a new master
    c = ZkCluster(broker_factory, zk_ensemble)
    m = c.start_all()
    url = ("failover:(tcp://127.0.0.1:%d)?initialReconnectDelay=10&maxReconnectDelay=200"
           "&updateURIsSupported=false" % c.nodes[m].port)

    def kill():
        c.nodes[m].kill()
        c.wait_master(timeout=30, exclude=m)

    out = live(url, "learn", "off", actions={"kill-master": kill}, timeout=120)
    assert "no RECEIPT for the SEND within 3000 ms" in out, out
