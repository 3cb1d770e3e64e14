"""A paused master, lost brokers, lost ZooKeeper servers: nobody serves
without a quorum, a former master never commits after being replaced,
and the cluster comes back by itself."""
import signal
import time

import pytest

from stompd_test import Client, ZkCluster, ZkEnsemble, connected, port_open


def test_paused_master_does_not_commit_after_replacement(broker_factory, zk_ensemble):
    c = ZkCluster(broker_factory, zk_ensemble)
    m = c.start_all()
    old = c.nodes[m]
    old.kill(signal.SIGSTOP)
    try:
        new = c.wait_master(timeout=20, exclude=m)
        # a client reaches the paused master directly (the kernel accepts
        # for it while it is stopped) and tries to send
        direct = Client(old.port, timeout=5)
        direct.send_raw(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0"
                        b"SEND\ndestination:/queue/split\npersistent:true\nreceipt:r\n\nsplit-brain\0")
    finally:
        old.kill(signal.SIGCONT)
    got = []
    try:
        while True:
            got.append(direct.recv(timeout=5))
    except (ConnectionError, TimeoutError, OSError):
        pass
    # it neither accepted the client nor committed its message
    assert not any(f.command in ("CONNECTED", "RECEIPT") for f in got), got
    assert old.wait_log("stepping down as master: this process did not run", timeout=10)
    # nothing of it reached the new master
    p = connected(c.nodes[new].port)
    p.send("SUBSCRIBE", {"id": "1", "destination": "/queue/split"})
    p.expect_nothing(1.0)
    # and the old master follows the new one
    assert old.wait_log("following master", timeout=20)
    assert c.masters() == [new]


def test_two_of_three_brokers_down_nobody_serves(broker_factory, zk_ensemble):
    c = ZkCluster(broker_factory, zk_ensemble)
    m = c.start_all()
    for i in range(3):
        if i != m:
            c.nodes[i].kill()
    # once the two sessions expire, the master alone is not a quorum
    deadline = time.time() + 10
    while time.time() < deadline and ZkCluster.serving(c.nodes[m]):
        time.sleep(0.1)
    assert not ZkCluster.serving(c.nodes[m])
    assert c.nodes[m].wait_log("fewer than a quorum")
    time.sleep(1.0)
    assert c.masters() == []
    # one comes back: a quorum again, and the cluster serves
    survivor = [i for i in range(3) if i != m][0]
    c.start(survivor)
    c.wait_master(timeout=20)


def test_two_of_three_zookeeper_servers_down(broker_factory):
    zk = ZkEnsemble(3).start()
    try:
        c = ZkCluster(broker_factory, zk)
        m = c.start_all()
        zk.stop(0)
        zk.stop(1)
        # ZooKeeper without a quorum: the master steps down, nobody serves
        deadline = time.time() + 15
        while time.time() < deadline and c.masters():
            time.sleep(0.1)
        assert c.masters() == []
        assert c.nodes[m].wait_log("stepping down as master")
        # ZooKeeper comes back: the cluster serves again, no restart needed
        zk.start(0, wait=False)
        zk.start(1, wait=False)
        zk.wait_serving(timeout=60)
        new = c.wait_master(timeout=60)
        p = connected(c.nodes[new].port)
        p.receipt("SEND", {"destination": "/queue/back", "persistent": "true"}, "back", b"x")
        assert all(b.running() for b in c.nodes)
    finally:
        zk.cleanup()


def test_master_keeps_its_place_after_a_long_rebuild(broker_factory, zk_ensemble, monkeypatch):
    # Becoming master rebuilds the broker from the store on the loop
    # thread; with a big store that takes longer than the step-down limit
    # (2/3 of the 2 s session timeout). ZooKeeper's own thread kept the
    # session alive meanwhile: the new master must not give up (and be
    # elected again, and give up again...).
    monkeypatch.setenv("STOMPD_TEST_SLOW_REBUILD_MS", "2500")
    c = ZkCluster(broker_factory, zk_ensemble)
    m = c.start_all()
    time.sleep(3.0)
    assert c.masters() == [m]
    assert "stepping down" not in c.nodes[m].log(), c.nodes[m].log()[-3000:]
    p = connected(c.nodes[m].port)
    p.receipt("SEND", {"destination": "/queue/rebuilt", "persistent": "true"}, "r", b"x")
