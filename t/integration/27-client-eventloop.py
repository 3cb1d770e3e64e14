"""libstompc in the caller's event loop: the non-blocking API (stompc_fd,
stompc_events, stompc_timeout, stompc_step) driven by the scenario driver
against a broker that is not up yet and then restarted, and the two
examples in contrib/eventloop (libev, plain poll) against a real stompd,
also through a broker kill (SIGKILL) and restart on the same data."""
import os
import re
import sys
import time

from stompd_test import BUILDDIR, SRCDIR, free_port

sys.path.insert(0, os.path.join(SRCDIR, "t", "client"))
from clienttest import Tool, failover, live, tcp  # noqa: E402

EXAMPLES = [os.path.join(BUILDDIR, "contrib", "eventloop", n) for n in ("stompc-libev", "stompc-poll")]


def test_non_blocking_calls_queue_until_connected(broker_factory):
    port = free_port()
    brokers = []

    def start():
        brokers.append(broker_factory({"stomp.listen": "127.0.0.1:%d" % port}))

    def restart():
        b = brokers[-1]
        b.kill()
        b.restart()

    url = failover(port, options="initialReconnectDelay=10&maxReconnectDelay=100&randomize=false")
    out = live(url, "nonblocking", actions={"start": start, "restart": restart})
    assert "reconnected to tcp://127.0.0.1:%d" % port in out


def test_a_durable_subscription_removed_and_made_again_offline_is_there(broker_factory):
    """Non-blocking, while no broker is up: UNSUBSCRIBE removing durable
    subscription d, then SUBSCRIBE making it again. Replayed in that order
    once a broker answers (the subscriptions went first, so the UNSUBSCRIBE
    removed the new one: helper-67)."""
    port = free_port()
    url = failover(port, options="initialReconnectDelay=10&maxReconnectDelay=100&randomize=false")
    live(url, "nb-durable-order", actions={"start": lambda: broker_factory({"stomp.listen": "127.0.0.1:%d" % port})})


def test_frames_queued_offline_are_bounded_in_bytes():
    live(failover(free_port()), "nb-bytes")


def summary(out):
    m = re.search(r"^sent=(\d+) receipted=(\d+) received=(\d+) duplicates=(\d+) reconnects=(\d+)$", out, re.M)
    assert m, out[-2000:]
    return [int(x) for x in m.groups()]


def test_examples_on_one_broker(broker):
    for ex in EXAMPLES:
        t = Tool(ex, tcp(broker), "/queue/ev-%s" % os.path.basename(ex), 200, 2)
        rc = t.finish(120)
        out = t.output()
        assert rc == 0, out[-2000:]
        assert summary(out) == [200, 200, 200, 0, 0]
        got = [int(n) for n in re.findall(r"^received seq=(\d+)$", out, re.M)]
        assert got == list(range(1, 201)), got[:20]


def test_examples_through_a_broker_kill(broker_factory):
    for ex in EXAMPLES:
        b = broker_factory()
        url = failover(b, options="initialReconnectDelay=10&maxReconnectDelay=200")
        n = 400
        t = Tool(ex, url, "/queue/evk", n, 5)
        try:
            assert t.wait_line(r"^received seq=\d+$", 100, timeout=60), t.output()[-2000:]
            b.kill()
            time.sleep(0.3)  # the outage: the loop keeps running, reconnecting
            b.restart()
            rc = t.finish(180)
        finally:
            t.kill()
        out = t.output()
        assert rc == 0, out[-3000:]
        sent, receipted, received, dups, reconnects = summary(out)
        assert sent == receipted == received == n and reconnects >= 1, out[-2000:]
        assert "reconnected to tcp://127.0.0.1:%d" % b.port in out
        # a second copy only as a redelivery
        assert not re.findall(r"^duplicate seq=\d+$", out, re.M), out[-2000:]
        b.stop()
