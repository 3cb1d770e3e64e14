"""A three-node cluster (a real ZooKeeper ensemble) with everything on
TLS: replication with mutual certificate verification reaches its quorum
(persistent SENDs are receipted), libstompc's failover moves across a
list mixing ssl:// and tcp:// through master kills without losing a
message, a node whose certificate is not of the cluster's CA (or which
speaks no TLS) is dropped in the handshake while the quorum goes on, a
master whose certificate its slaves refuse gives way, and
ZooKeeper off loopback without a password is warned about at start."""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from stompd_test import BUILDDIR, FakeSlave, ZkCluster, connected, free_port, http_json, replicated, wait_until
from tlscerts import Certs

PRODUCER = os.path.join(BUILDDIR, "contrib", "stompd-failover-producer")
CONSUMER = os.path.join(BUILDDIR, "contrib", "stompd-failover-consumer")
FOLLOWING = "following master|snapshot installed"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(str(tmp_path_factory.mktemp("certs")))


def tls_cluster(factory, zk, certs):
    c = ZkCluster(factory, zk, store__tls="true", **{k.replace(".", "__"): v for k, v in certs.settings().items()})
    c.tls_ports = []
    for n in c.nodes:
        port = free_port()
        n.settings["stomp.tls_listen"] = "127.0.0.1:%d" % port
        c.tls_ports.append(port)
    return c



def slaves_following(c, m):
    return all(re.search(FOLLOWING, b.log_since_start()) for i, b in enumerate(c.nodes) if i != m)


def test_tls_cluster_quorum_and_mixed_failover(broker_factory, zk_ensemble, certs):
    c = tls_cluster(broker_factory, zk_ensemble, certs)
    m = c.start_all()
    assert wait_until(lambda: slaves_following(c, m))
    master = c.nodes[m]
    # the slaves' links are TLS, both ends verified
    assert master.wait_log(r"TLS: 127\.0\.0\.1:\d+ \(replication\): TLSv1\.3")
    for i, b in enumerate(c.nodes):
        if i != m:
            assert b.wait_log(r"TLS: [\d.:]+ \(replication link\): TLSv1\.3")
    assert "replication: refusing" not in master.log()
    # quorum: a persistent SEND is receipted once a slave has it
    p = connected(master.port)
    p.receipt("SEND", {"destination": "/queue/q", "persistent": "true"}, "r", b"x")

    # failover across a list mixing ssl:// and tcp://, two master kills
    brokers = ["ssl://127.0.0.1:%d" % c.tls_ports[0], "tcp://127.0.0.1:%d" % c.ports[1],
               "ssl://127.0.0.1:%d" % c.tls_ports[2]]
    url = "failover:(%s)?initialReconnectDelay=10&maxReconnectDelay=500&randomize=false" % ",".join(brokers)
    curl = "failover:(%s)?initialReconnectDelay=10&maxReconnectDelay=500" % ",".join(
        "ssl://127.0.0.1:%d" % port for port in c.tls_ports)
    n = 600
    consumer = subprocess.Popen([CONSUMER, "--url", curl, "--ca", certs.ca, "--dest", "/queue/tls-tools",
                                 "--count", str(n), "--quiet", "--idle-exit", "60000"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    producer = subprocess.Popen([PRODUCER, "--url", url, "--ca", certs.ca, "--dest", "/queue/tls-tools",
                                 "--count", str(n), "--persistent", "--interval", "5", "--quiet"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(2):
            time.sleep(1.0)
            m = c.wait_master()
            c.nodes[m].kill()
            c.wait_master(timeout=30, exclude=m)
            c.start(m)
        pout, _ = producer.communicate(timeout=180)
        cout, _ = consumer.communicate(timeout=120)
    finally:
        for proc in (producer, consumer):
            if proc.poll() is None:
                proc.kill()
    assert producer.returncode == 0, pout[-3000:]
    summary = re.search(r"sent=(\d+) receipted=(\d+) resent=(\d+)", pout)
    assert summary and int(summary.group(2)) == n, pout[-3000:]
    assert pout.count("reconnected to") >= 2, pout[-3000:]
    assert consumer.returncode == 0, cout[-3000:]
    got = re.search(r"received=(\d+) duplicates=(\d+) unmarked=(\d+)", cout)
    assert got and int(got.group(1)) == n and int(got.group(3)) == 0, cout[-3000:]
    assert re.search(r"reconnected to ssl://", cout) or "connected to ssl://" in cout, cout[-3000:]


def test_a_node_without_a_good_certificate_is_dropped(broker_factory, zk_ensemble, certs):
    """A node with a certificate of another CA (the right token
    notwithstanding), and a peer that speaks no TLS, get nothing from the
    master; the cluster's quorum goes on."""
    c = tls_cluster(broker_factory, zk_ensemble, certs)
    m = c.start_all()
    assert wait_until(lambda: slaves_following(c, m))
    master = c.nodes[m]
    repl_port = int(master.settings["store.bind"].rsplit(":", 1)[1])
    rogue = broker_factory(replicated("rogue", free_port(), "slave", repl_port, store__tls="true",
                                      tls__cert=certs.rogue_cert, tls__key=certs.rogue_key, tls__ca=certs.ca),
                           start=False, name="rogue")
    rogue.start(wait=r"role: slave of")
    assert master.wait_log(r"TLS: handshake with 127\.0\.0\.1:\d+ \(replication\) failed: TLS handshake: .*certificate")
    assert rogue.wait_log(r"link to master .* lost: (TLS|the peer closed|peer closed)")
    plain = FakeSlave(repl_port, 0, 0, 0, node=b"plain-peer", ack_entries=True)
    plain.start()
    plain.join(20)
    assert plain.seen == [] and not plain.entries
    assert not re.search(FOLLOWING, rogue.log())
    p = connected(master.port)
    p.receipt("SEND", {"destination": "/queue/q", "persistent": "true"}, "r", b"still receipted")
    rogue.stop()


def refused_by_port(c, i):
    """Node i's view of which members stand out of elections as refused,
    by STOMP port."""
    return {int(x["stomp"].rsplit(":", 1)[1]): x["refused"]
            for x in http_json(c.nodes[i].http_port, "/api/cluster")["members"] if ":" in (x.get("stomp") or "")}


def test_a_master_whose_certificate_the_others_refuse_gives_way(broker_factory, zk_ensemble, certs, tmp_path):
    """The heaviest node's certificate is of another CA. It is elected
    first, but neither slave can verify it: both say so in their member
    znodes, as of a master that refuses their store.security_token, and it
    steps down and stays out of elections while they hold to it; one of
    the two serves with the other as its slave. Before, it stayed master
    with no quorum: no persistent SEND was receipted however long the
    others ran. Its certificate put right and reloaded (SIGHUP), it
    follows and stands again."""
    c = tls_cluster(broker_factory, zk_ensemble, certs)
    cert, key = str(tmp_path / "n0.pem"), str(tmp_path / "n0.key")
    shutil.copy(certs.rogue_cert, cert)
    shutil.copy(certs.rogue_key, key)
    n0 = c.nodes[0]
    n0.settings.update({"tls.cert": cert, "tls.key": key, "store.weight": "100"})
    for i in range(3):
        c.start(i)
    assert n0.wait_log("this node is master in epoch", timeout=30, since_start=True)
    m = c.wait_master(timeout=60, exclude=0)
    assert n0.wait_log("stepping down as master: 2 of the 3 members refused this node as their master",
                       since_start=True)
    assert c.nodes[m].wait_log("the TLS handshake with master .* failed on a certificate", since_start=True)
    p = connected(c.nodes[m].port)
    for i in range(5):
        p.receipt("SEND", {"destination": "/queue/cert", "persistent": "true"}, "r%d" % i, b"c%d" % i)
    p.close()
    refused = refused_by_port(c, m)
    assert refused.pop(n0.port) is True
    assert list(refused.values()) == [False, False]

    # put right: the next handshake with the master succeeds, and the
    # node stands in elections again
    shutil.copy(certs.cert, cert)
    shutil.copy(certs.key, key)
    mark = len(n0.log())
    n0.kill(signal.SIGHUP)
    assert wait_until(lambda: "following master" in n0.log()[mark:], 60), n0.log()[mark:][-3000:]
    assert wait_until(lambda: refused_by_port(c, m).get(n0.port) is False, 30)
    assert n0.log_since_start().count("this node is master in epoch") == 1
    assert c.hand_over(m, "/queue/cert") == [b"c%d" % i for i in range(5)]


def test_zookeeper_off_loopback_without_password_is_warned_about(broker_factory, zk_ensemble):
    """0.0.0.0 reaches the local ensemble but is no loopback address: the
    node warns; with zookeeper.password it does not."""
    address = zk_ensemble.address.replace("127.0.0.1", "0.0.0.0")
    for password, warned in (("", True), ("pw", False)):
        s = replicated("z", free_port(), "auto", zookeeper__address=address, zookeeper__session_timeout="2s",
                       store__replicas="1", zookeeper__password=password)
        s["zookeeper.path"] = "/stompd-test/warn-%s" % os.urandom(6).hex()
        b = broker_factory(s, start=False, name="zk-warn-%d" % warned)
        b.start(wait="registered as")
        said = "is not on loopback and zookeeper.password is empty: anyone who reaches ZooKeeper can rewrite" \
            in b.log()
        assert said == warned, b.log()[-2000:]
        b.stop()
