"""libstompc's failover: brokers that vanish (SIGKILL) and come back on the
same port, or are replaced by the next in the list, or are paused
(SIGSTOP); what is resent (same _AMQ_DUPL_ID, same order), what is
re-subscribed, what fails (transactions, refused frames, acks of old
deliveries), the back-off and time limits, and the contrib producer and
consumer losing nothing across a broker kill.

The end-to-end test restarts the killed broker on its own data directory:
nothing receipted may be lost, and no resent copy may be delivered."""
import os
import re
import signal
import sys
import time

from stompd_test import SRCDIR, free_port

sys.path.insert(0, os.path.join(SRCDIR, "t", "client"))
from clienttest import CONSUMER, PRODUCER, Tool, failover, live, value  # noqa: E402
from fakebroker import Behaviour, FakeBroker  # noqa: E402


def restart(broker_factory, old):
    """SIGKILL `old` and start a new broker listening where it did."""
    old.kill()
    return broker_factory({"stomp.listen": old.settings["stomp.listen"]})


def test_unreceipted_frames_are_resent_in_order_with_the_same_ids():
    # First connection: SUBSCRIBE receipted, SENDs swallowed, dropped
    # after the seventh; then a broker that receipts everything.
    fb = FakeBroker(Behaviour(receipt_sends=False, close_after_sends=7), Behaviour())
    try:
        out = live(failover(fb.port), "resend")
    finally:
        fb.close()
    assert "reconnected to tcp://127.0.0.1:%d reconnects=1 resent=6" % fb.port in out
    first, second = fb.connections[0], fb.connections[1]
    sends1 = [f for f in first if f.command == "SEND"]
    sends2 = [f for f in second if f.command == "SEND"]
    assert [f.body for f in sends1] == [b"seq=1", b"seq=2", b"seq=3", b"seq=4", b"seq=5", b"seq=6",
                                        b"fire-and-forget"]
    # everything receipted is resent, in order, unchanged; fire-and-forget is not
    assert [(f.headers, f.body) for f in sends2] == [(f.headers, f.body) for f in sends1[:6]]
    ids = [f.get("_AMQ_DUPL_ID") for f in sends2[:5]]
    assert len(set(ids)) == 5 and all(re.match(r"^[0-9a-f]{32}-\d+$", i) for i in ids)
    assert [f.get("receipt") for f in sends2] == ["_stompc-%d" % n for n in range(2, 7)] + ["mine-6"]
    assert sends2[5].get("_AMQ_DUPL_ID") is None and sends2[5].get("persistent") is None
    # the subscription comes back with its id and headers, first
    sub1 = next(f for f in first if f.command == "SUBSCRIBE")
    assert second[0].command == "CONNECT" and second[1].command == "SUBSCRIBE"
    assert second[1].headers == [h for h in sub1.headers if h[0] != "receipt"]
    assert ("selector", "a = 1") in sub1.headers and ("activemq.prefetchSize", "5") in sub1.headers
    assert first[0].headers == second[0].headers          # the same CONNECT
    assert second[-1].command == "DISCONNECT"


def test_moves_to_the_next_broker_when_one_dies(broker_factory):
    a = broker_factory(name="a")
    b = broker_factory(name="b")
    out = live(failover(a, b), "move", actions={"kill-first": a.kill})
    assert value(out, "first") == "tcp://127.0.0.1:%d" % a.port
    assert value(out, "second") == "tcp://127.0.0.1:%d" % b.port
    assert "reconnected to tcp://127.0.0.1:%d" % b.port in out


def test_a_paused_broker_does_not_hold_up_the_next(broker_factory):
    # A SIGSTOPped broker's kernel still completes TCP handshakes: the
    # attempt waits for a CONNECTED that never comes. The next broker is
    # tried alongside it after connectAttemptDelay (250 ms), not after
    # the attempt's connectTimeout (20 s here).
    paused = broker_factory(name="paused")
    live_one = broker_factory(name="live")
    paused.kill(signal.SIGSTOP)
    try:
        out = live(failover(paused, live_one, options="randomize=false&connectTimeout=20000"), "connect-time")
        assert value(out, "broker") == "tcp://127.0.0.1:%d" % live_one.port
        assert int(value(out, "took_ms")) < 10000, out
        # without the parallel attempt it is the timeout that frees the client
        out = live(failover(paused, live_one, options="randomize=false&connectTimeout=1500&connectAttemptDelay=60000"),
                   "connect-time")
        assert value(out, "broker") == "tcp://127.0.0.1:%d" % live_one.port
        assert int(value(out, "took_ms")) >= 1400, out
    finally:
        paused.kill(signal.SIGCONT)


def test_the_losing_attempt_is_closed_with_a_disconnect():
    # the first broker takes CONNECT and never answers; the client goes on
    # with the second, and tells the first it is leaving
    mute = FakeBroker(Behaviour(mute=True))
    fb = FakeBroker(Behaviour())
    try:
        out = live(failover(mute.port, fb.port, options="randomize=false&connectAttemptDelay=100"), "connect-time")
        assert value(out, "broker") == "tcp://127.0.0.1:%d" % fb.port
        assert mute.wait_connections(1)
        deadline = time.time() + 10
        while time.time() < deadline and [f.command for f in mute.connections[0]] != ["CONNECT", "DISCONNECT"]:
            time.sleep(0.05)
        assert [f.command for f in mute.connections[0]] == ["CONNECT", "DISCONNECT"], mute.connections
    finally:
        mute.close()
        fb.close()


def test_back_soon_after_a_long_outage(broker_factory):
    # Refused connections (nobody listening) are retried every
    # maxRefusedReconnectDelay (500 ms) at most, whatever the back-off:
    # with ActiveMQ's schedule alone (1, 2, 4, 8 s...) the client would
    # try again 7 s after the broker came back.
    a = broker_factory()
    state = {}

    def start_again():
        state["b"] = broker_factory({"stomp.listen": a.settings["stomp.listen"]})

    url = failover(a, options="initialReconnectDelay=1000&maxReconnectDelay=30000")
    out = live(url, "outage", 8000, actions={"kill": a.kill, "restart": start_again})
    assert int(value(out, "reconnect_ms")) < 4000, out


def test_priority_backup_moves_to_the_priority_broker_once_it_is_up(broker_factory):
    prio_port = free_port()
    other = broker_factory(name="other")
    started = []

    def start_priority():
        started.append(broker_factory({"stomp.listen": "127.0.0.1:%d" % prio_port}, name="prio"))

    url = failover(prio_port, other, options="priorityBackup=true&randomize=false&initialReconnectDelay=10")
    out = live(url, "priority", actions={"start-priority": start_priority})
    assert value(out, "first") == "tcp://127.0.0.1:%d" % other.port
    assert value(out, "second") == "tcp://127.0.0.1:%d" % prio_port


def test_track_messages_resends_non_persistent_sends():
    # the first connection swallows three SENDs and drops; the second receipts
    for track, resent in (("true", 3), ("false", 0)):
        fb = FakeBroker(Behaviour(receipt_sends=False, close_after_sends=3), Behaviour())
        try:
            out = live(failover(fb.port, options="trackMessages=%s&initialReconnectDelay=10" % track), "track")
        finally:
            fb.close()
        assert "resent=%d " % resent in out, out
        sends = [f.body for f in fb.connections[1] if f.command == "SEND"] if len(fb.connections) > 1 else []
        assert sends == ([b"np-1", b"np-2", b"np-3"] if resent else []), (track, sends)


def test_max_cache_size_bounds_the_bytes_kept():
    fb = FakeBroker(Behaviour(receipt_sends=False))
    try:
        live(failover(fb.port, options="maxCacheSize=250"), "cache")
    finally:
        fb.close()


def test_startup_attempts_are_limited_with_back_off():
    url = failover(free_port(), free_port(), options="startupMaxReconnectAttempts=3&initialReconnectDelay=40")
    out = live(url, "startup-attempts")
    # three rounds over both brokers, 40 ms then 80 ms between them
    assert 115 <= int(value(out, "took_ms")) < 5000, out


def test_a_broker_that_refuses_the_replayed_session_is_backed_off_and_given_up():
    """A broker that answers CONNECTED, then an ERROR for the SUBSCRIBE the
    session replays (its ACL changed meanwhile, say): each such connection
    counts as a failed attempt, backs off and counts toward
    maxReconnectAttempts. Before, any CONNECTED reset every back-off, so
    the consumer reconnected thousands of times a second, for ever."""
    # the first connection holds (over a second), then is lost
    fb = FakeBroker(Behaviour(close_after_subscribe=1.5), Behaviour(refuse="access denied"))
    try:
        t0 = time.time()
        cons = Tool(CONSUMER, "--url", failover(fb.port, options="maxReconnectAttempts=3&initialReconnectDelay=100"),
                    "--dest", "/queue/refused")
        rc = cons.finish(timeout=60)
        took = time.time() - t0
        out = cons.output()
        assert rc == 1, (rc, out)
        assert "gave up after 3" in out and "lost as soon as it answered: broker ERROR: access denied" in out, out
        assert len(fb.connections) == 4, len(fb.connections)  # the first, then three refused
        assert took >= 1.8, took  # 1.5 s, then 100 ms and 200 ms between them
    finally:
        fb.close()


def test_send_times_out_without_a_broker_then_recovers(broker_factory):
    a = broker_factory()
    state = {}

    def start_again():
        state["b"] = broker_factory({"stomp.listen": a.settings["stomp.listen"]})

    url = failover(a, options="timeout=300&initialReconnectDelay=50&maxReconnectDelay=50")
    out = live(url, "timeout", actions={"kill": a.kill, "restart": start_again})
    assert 250 <= int(value(out, "took_ms")) < 3000, out
    assert "Connection refused" in out


def test_open_transactions_fail_after_a_failover(broker_factory):
    brokers = [broker_factory()]

    def again():
        brokers.append(restart(broker_factory, brokers[-1]))

    live(failover(brokers[0]), "tx-failover", actions={"restart": again})


def test_a_refused_frame_is_reported_not_resent_for_ever(broker):
    out = live(failover(broker), "refused-not-resent")
    assert "receipt=_stompc-2: broker ERROR: invalid destination" in out
    assert broker.log().count("'/bogus/dest'") == 1   # sent once, never again


def test_acks_of_messages_from_before_the_failover_are_dropped(broker_factory):
    a = broker_factory()
    live(failover(a), "stale-ack", actions={"restart": lambda: restart(broker_factory, a)})


def test_heart_beat_timeout_triggers_failover():
    fb = FakeBroker(Behaviour(heart_beat="100,0", silent=True), Behaviour())
    try:
        out = live(failover(fb.port), "hb-failover")
    finally:
        fb.close()
    assert "no heart-beat from tcp://127.0.0.1:%d" % fb.port in out
    assert len(fb.connections) == 2


def test_producer_and_consumer_lose_nothing_when_the_broker_is_killed(broker_factory):
    # The broker is killed (SIGKILL) mid-stream and restarted on the same
    # port and data directory: its local_disk store has every message it
    # receipted, the producer resends what it had not receipted (the
    # broker's duplicate window, restored from the store, drops the copies
    # it had already stored), and the consumer, receiving all along, gets
    # every message. A second copy is allowed only as a redelivery: a
    # message delivered before the kill whose ACK the broker never stored.
    a = broker_factory()
    n = 3000
    url = failover(a, options="initialReconnectDelay=20&maxReconnectDelay=200")
    cons = Tool(CONSUMER, "--url", url, "--dest", "/queue/failover", "--count", n, "--idle-exit", 5000)
    prod = None
    try:
        assert cons.wait_line("^connected to"), cons.output()
        prod = Tool(PRODUCER, "--url", url, "--dest", "/queue/failover", "--count", n, "--persistent",
                    "--interval", 1, "--size", 200)
        # Kill mid-send, with traffic in flight, at a moment not tied to a
        # RECEIPT.
        assert prod.wait_line(r"^receipt seq=\d+$", n // 3), prod.output()[-2000:]
        time.sleep(0.0537)
        a.kill()
        a.restart()
        prc = prod.finish(180)
        crc = cons.finish(180)
    finally:
        cons.kill()
        if prod:
            prod.kill()
    pout, cout = prod.output(), cons.output()
    print(pout.splitlines()[-1], "/", cout.splitlines()[-1])
    assert prc == 0, pout[-3000:]
    m = re.search(r"^sent=(\d+) receipted=(\d+) resent=(\d+)$", pout, re.M)
    assert m and m.group(1) == m.group(2) == str(n), pout[-2000:]
    assert "reconnected to tcp://127.0.0.1:%d" % a.port in pout
    assert "reconnected to tcp://127.0.0.1:%d" % a.port in cout

    got = {int(s) for s in re.findall(r"^(?:received|duplicate) seq=(\d+)", cout, re.M)}
    missing = sorted(set(range(1, n + 1)) - got)
    assert not missing, "lost %d: %s\n%s" % (len(missing), missing[:50], cout[-2000:])
    resend_dups = re.findall(r"^duplicate seq=\d+$", cout, re.M)
    assert not resend_dups, "resent copies delivered: %s" % resend_dups[:20]
    assert crc == 0, cout[-3000:]
    mm = re.search(r"^received=(\d+) duplicates=(\d+) unmarked=0$", cout, re.M)
    assert mm and int(mm.group(1)) == n, cout[-2000:]
