"""A paused master, lost brokers, lost ZooKeeper servers: nobody serves
without a quorum, a former master never commits after being replaced,
and the cluster comes back by itself."""
import os
import signal
import socket
import time

import pytest

from stompd_test import (Blackhole, Client, NotifySocket, ZkCluster, ZkEnsemble, built_with_sd_notify, connected,
                         http_json, http_request, metric_families, port_open, wait_for)


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


def test_the_watchdog_hears_a_rebuild_at_election(broker_factory, zk_ensemble, monkeypatch):
    """A cluster node is READY=1 once registered; elected later, it
    rebuilds the broker from the store on the loop. That said no
    WATCHDOG=1 meanwhile, and under the unit's WatchdogSec= a big store
    would have had every node it elected in turn killed (helper-98). A
    rebuild under way says it is alive as it reads."""
    if not built_with_sd_notify():
        pytest.skip("built without libsystemd")
    monkeypatch.setenv("STOMPD_TEST_SLOW_REBUILD_MS", "4000")
    c = ZkCluster(broker_factory, zk_ensemble, n=1)
    b = c.nodes[0]
    ns = NotifySocket(os.path.join(b.dir, "notify"))
    try:
        b.env = dict(ns.env(), WATCHDOG_USEC="1000000")   # every 0.5 s
        b.start(wait=False)
        ns.wait(lambda m: "READY" in m, timeout=60)
        last, gaps = time.time(), []
        deadline = time.time() + 60
        while "accepting STOMP clients" not in b.log() or not gaps:   # the rebuild is over
            assert time.time() < deadline, b.log()[-2000:]
            try:
                data = ns.sock.recv(4096).decode()
            except socket.timeout:
                continue
            if "WATCHDOG=1" in data:
                gaps.append(time.time() - last)
                last = time.time()
        # 4 s of rebuild: without word from it, one gap of 4 s at least
        assert max(gaps) < 2.5, gaps
    finally:
        ns.close()


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


def test_a_slave_cut_off_from_its_master_shows_how_far_behind_it_falls(broker_factory, zk_ensemble):
    """A slave whose replication link is cut (it keeps its ZooKeeper
    session) measured its lag against the master's head as it last heard
    it: 0, in /api/status and /metrics, while it fell 100,000 entries
    behind (helper-111). While cut off, the master's position as ZooKeeper
    has it counts too. Back in touch, it catches up."""
    c = ZkCluster(broker_factory, zk_ensemble)
    proxies = []
    try:
        def pids():
            return [b.proc.pid for b in c.nodes if b.running()]
        for b in c.nodes:
            p = Blackhole(int(b.settings["store.bind"].rsplit(":", 1)[1]), pids)
            proxies.append(p)
            b.settings["store.advertise"] = "127.0.0.1:%d" % p.port
        m = c.start_all()
        a = c.nodes[(m + 1) % 3]
        p = connected(c.nodes[m].port)
        p.receipt("SEND", {"destination": "/queue/behind", "persistent": "true"}, "first", b"x")

        def in_sync():
            st = http_json(a.http_port, "/api/status")
            return st["master"]["connected"] and st["master_lsn"] and st["lag"] == 0
        wait_for(in_sync, timeout=60, what="the slave in sync")
        proxies[m].block(a.proc.pid)
        wait_for(lambda: not http_json(a.http_port, "/api/status")["master"]["connected"], timeout=60,
                 what="the slave cut off")
        # the master goes on with the other slave
        for i in range(3000):
            p.send("SEND", {"destination": "/queue/behind", "persistent": "true"}, b"x")
        p.receipt("SEND", {"destination": "/queue/behind", "persistent": "true"}, "done", b"x")
        head = http_json(c.nodes[m].http_port, "/api/status")["lsn"]
        wait_for(lambda: (http_json(a.http_port, "/api/status")["lag"] or 0) >= 1000, timeout=60,
                 what="the cut-off slave's lag")
        st = http_json(a.http_port, "/api/status")
        assert not st["master"]["connected"] and st["master_lsn"] <= head, st
        lag = metric_families(http_request(a.http_port, "GET", "/metrics")[2].decode())["stompd_follower_lag"][1]
        assert lag["stompd_follower_lag"] >= 1000, lag
        # the members' table: lag behind the master (helper-111: against the
        # most advanced entry in ZooKeeper, the master could look behind)
        aid = http_json(a.http_port, "/api/status")["node_id"]

        def a_row_lag():
            rows = http_json(c.nodes[m].http_port, "/api/cluster")["members"]
            return [x["lag"] for x in rows if x["id"] == aid][0]
        wait_for(lambda: a_row_lag() >= 1000, timeout=60, what="the cut-off slave behind in the members' table")
        rows = http_json(c.nodes[m].http_port, "/api/cluster")["members"]
        assert [x["lag"] for x in rows if x["role"] == "master"] == [0], rows
        proxies[m].unblock(a.proc.pid)
        wait_for(lambda: http_json(a.http_port, "/api/status")["lag"] == 0, timeout=60, what="the slave caught up")
    finally:
        for p in proxies:
            p.close()
        stopped = [(b.name, b.stop()) for b in c.nodes if b.running()]
    assert all(rc == 0 for _, rc in stopped), stopped


def test_a_master_stepping_down_gives_back_what_its_auto_ack_consumers_were_not_sent(broker_factory, zk_ensemble):
    """Its slaves killed, a master holds an auto-ack consumer's MESSAGEs
    until their dequeue reaches a slave, while the slaves' ZooKeeper
    sessions last; then it steps down. Its log has the dequeues: elected
    again once the slaves are back (the longest log), it had lost those
    receipted messages, never sent to anyone (helper-113). Stepping down,
    it gives them back, in its journal too."""
    c = ZkCluster(broker_factory, zk_ensemble)
    for b in c.nodes:
        b.settings["zookeeper.session_timeout"] = "6s" # time to subscribe before the step-down
    m = c.start_all()
    p = connected(c.nodes[m].port)
    for i in range(10):
        p.receipt("SEND", {"destination": "/queue/stepdown", "persistent": "true"}, "r%d" % i, b"m%d" % i)
    p.close()
    slaves = [i for i in range(3) if i != m]
    for i in slaves:
        c.nodes[i].kill()
    wait_for(lambda: http_json(c.nodes[m].http_port, "/api/status")["quorum"]["slaves_connected"] == 0, timeout=10,
             what="the master without its slaves")
    q = connected(c.nodes[m].port)
    q.send("SUBSCRIBE", {"id": "1", "destination": "/queue/stepdown", "ack": "auto"})
    got = []
    try:
        while True:
            got.append(q.recv(timeout=30))  # until the step-down closes it
    except (ConnectionError, TimeoutError, OSError):
        pass
    assert [f.command for f in got if f.command == "MESSAGE"] == [], got
    assert c.nodes[m].wait_log("stepping down as master: fewer than a quorum", timeout=30)
    for i in slaves:
        c.start(i)
    assert c.wait_master(timeout=60) == m  # its log is the longest
    r = connected(c.nodes[m].port)
    r.send("SUBSCRIBE", {"id": "1", "destination": "/queue/stepdown"})
    bodies = [r.recv(timeout=30).body]
    try:
        while True:
            bodies.append(r.recv(timeout=2).body)
    except TimeoutError:
        pass
    assert bodies == [b"m%d" % i for i in range(10)]
