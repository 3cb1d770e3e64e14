"""Every node of a quorum_mem cluster killed -9 at once, while a failover
producer sends persistent messages with receipts. The nodes come back one
by one, the old master first: the first two elect a master, the third
follows it, and every message receipted before the kill is there.

The writers here are slow (STOMPD_TEST_WRITE_DELAY_MS: each group waits
that long before its write, as on a loaded machine or a slow disk), so
entries spend that long in a process's memory only. A quorum_mem master
used to count its own copy when it appended an entry and each slave's when
it arrived: with every process gone, the last receipted messages were on
no node's disk, nor in any OS's page cache (5 of 9 runs of a chaos test
without the delay lost one). A copy counts now once its store wrote it.
Without the delay the loops write small groups themselves (write_inline),
the path a quiet cluster takes."""
import os
import time

import pytest

from stompd_test import FailoverConsumer, FailoverProducer, ZkCluster


@pytest.mark.parametrize("delay", ["100", None], ids=["slow-writers", "loop-writes"])
def test_all_nodes_killed_at_once_lose_no_receipted_message(broker_factory, zk_ensemble, delay):
    c = ZkCluster(broker_factory, zk_ensemble, store__sync="quorum_mem")
    if delay:
        # the writer thread writes every group, late
        for b in c.nodes:
            b.env = dict(os.environ, STOMPD_TEST_WRITE_DELAY_MS=delay)
    m = c.start_all()
    producer = FailoverProducer(c.ports, "/queue/kill-all").start(interval=0.002)
    deadline = time.time() + 60
    while time.time() < deadline and len(producer.receipted) < 30:
        time.sleep(0.05)
    assert len(producer.receipted) >= 30, "receipts came too slowly: %d" % len(producer.receipted)
    for b in c.nodes:
        b.kill()
    producer.finish()
    receipted = list(producer.receipted)

    # back with writers at full speed, in the order that lost messages:
    # the old master and one slave elect, the other slave follows
    order = [m] + [i for i in range(3) if i != m]
    for b in c.nodes:
        b.env = None
    c.start(order[0])
    c.start(order[1])
    new = c.wait_master(timeout=60)
    c.start(order[2])
    assert c.nodes[order[2]].wait_log("following master", since_start=True, timeout=60), \
        c.nodes[order[2]].log_since_start()[-3000:]
    assert c.masters() == [new]

    consumer = FailoverConsumer([c.nodes[new].port], "/queue/kill-all").start()
    missing = consumer.wait_for(receipted, timeout=60)
    consumer.finish()
    assert not missing, "%d of %d receipted messages lost, e.g. %s" % (
        len(missing), len(receipted), sorted(missing)[:5])
    assert consumer.unmarked == 0, "duplicates not marked redelivered: %d" % consumer.unmarked
