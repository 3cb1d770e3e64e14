"""contrib's failover producer and consumer (C, on libstompc) through five
master kills: every message the producer counted as receipted is consumed,
and the consumer sees each exactly once (a copy redelivered after a
failover is recognised and counted as a duplicate, never consumed twice)."""
import os
import re
import subprocess
import time

from stompd_test import BUILDDIR, ZkCluster

PRODUCER = os.path.join(BUILDDIR, "contrib", "stompd-failover-producer")
CONSUMER = os.path.join(BUILDDIR, "contrib", "stompd-failover-consumer")


def test_tools_through_five_master_kills(broker_factory, zk_ensemble):
    c = ZkCluster(broker_factory, zk_ensemble)
    c.start_all()
    url = "failover:(%s)?initialReconnectDelay=10&maxReconnectDelay=500&randomize=false" % ",".join(
        "tcp://127.0.0.1:%d" % p for p in c.ports)
    n = 1500
    consumer = subprocess.Popen([CONSUMER, "--url", url, "--dest", "/queue/tools", "--count", str(n), "--quiet",
                                 "--idle-exit", "60000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    producer = subprocess.Popen([PRODUCER, "--url", url, "--dest", "/queue/tools", "--count", str(n), "--persistent",
                                 "--interval", "5", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    try:
        for _ in range(5):
            time.sleep(1.0)
            m = c.wait_master()
            c.nodes[m].kill()
            c.wait_master(timeout=20, exclude=m)
            c.start(m)
        pout, _ = producer.communicate(timeout=180)
        cout, _ = consumer.communicate(timeout=120)
    finally:
        for p in (producer, consumer):
            if p.poll() is None:
                p.kill()
    assert producer.returncode == 0, pout[-3000:]
    summary = re.search(r"sent=(\d+) receipted=(\d+) resent=(\d+)", pout)
    assert summary and int(summary.group(2)) == n, pout[-3000:]
    assert pout.count("reconnected to") >= 5, pout[-3000:]
    assert consumer.returncode == 0, cout[-3000:]
    got = re.search(r"received=(\d+) duplicates=(\d+) unmarked=(\d+)", cout)
    assert got and int(got.group(1)) == n, cout[-3000:]
    # a copy is only ever a redelivery the broker marked as such: resent
    # SENDs it had stored were dropped by the replicated duplicate window,
    # and every delivery it made was committed before it went out
    assert int(got.group(3)) == 0, cout[-3000:]
    print("producer: %s; consumer: %s" % (summary.group(0), got.group(0)))
