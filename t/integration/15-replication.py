"""The replicated LevelDB store with the master chosen by configuration:
three real stompd on loopback. Nothing receipted is lost when the master
dies and a slave is promoted; slaves catch up from their position or from a
snapshot; a former master's divergent tail is dropped; the quorum holds
receipts until enough nodes have the entry; bad peers disturb nothing."""
import base64
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import time

import pytest

from stompd_test import (CONFIG_ERROR, REPL_VERSION, STOMPD, VALGRIND, FakeSlave, connected, consume_own_until_error,
                         exited_with_1, free_port, http_request, journal_checksum, port_open, produce_pipelined,
                         repl_master_handshake, replicated, the_failed_send, wait_for, wait_until)

SLAVE_UP = "following master|snapshot installed"


class Cluster:
    def __init__(self, factory, **extra):
        self.factory = factory
        self.repl = [free_port() for _ in range(3)]
        self.extra = extra
        self.nodes = []
        for i in range(3):
            role = "master" if i == 0 else "slave"
            b = factory(replicated("n%d" % i, self.repl[i], role, self.repl[0] if i else None, **extra),
                        start=False, name="n%d" % i)
            self.nodes.append(b)

    def start_all(self):
        self.nodes[0].start()
        for b in self.nodes[1:]:
            b.start(wait=SLAVE_UP)

    def reconfigure(self, i, role, master=None):
        s = self.nodes[i].settings
        s["store.role"] = role
        if master is None:
            s.pop("store.master", None)
        else:
            s["store.master"] = "127.0.0.1:%d" % self.repl[master]

    def promote_n1(self):
        """n0 gone: n1 restarted as the master, n2 as its slave."""
        self.nodes[1].stop()
        self.nodes[2].stop()
        self.reconfigure(1, "master")
        self.reconfigure(2, "slave", master=1)
        self.nodes[1].restart()
        self.nodes[2].restart(wait=SLAVE_UP)

    def wait_in_sync(self, master=0):
        """Every node has the master's whole journal, the master too: a
        quorum_mem receipt means only that a quorum has it (two slaves
        without the master, or one slave with it), and a test that then
        promotes one node must not depend on which."""
        def synced():
            st = status(self.nodes[master])
            reps = st.get("replicas") or []
            return (len(reps) == 2 and all(r["received_lsn"] == st["lsn"] for r in reps)
                    and st["durable_lsn"] == st["lsn"])
        wait_for(synced, timeout=20)

    def dump(self, i):
        r = subprocess.run([STOMPD, "--dump-store", self.nodes[i].settings["broker.data_dir"]],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout


def status(b):
    """A node's /api/status (the default admin credentials)."""
    h = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=5)
    h.request("GET", "/api/status", headers={"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()})
    r = h.getresponse()
    data = r.read()
    h.close()
    assert r.status == 200, (r.status, data)
    return json.loads(data)



def stop_all(c):
    for b in c.nodes:
        if b.running():
            assert b.stop() == 0


def send_persistent(port, dest, bodies):
    p = connected(port)
    for i, body in enumerate(bodies):
        p.receipt("SEND", {"destination": dest, "persistent": "true"}, "r%d" % i, body)
    p.close()


def received(port, sub, timeout=1.0, first=None, headers=None):
    """Every MESSAGE one auto-ack subscription (sub: its headers) gives:
    the first may take a while (a node just promoted, under valgrind on a
    loaded machine), then each comes within timeout of the one before."""
    c = connected(port, headers=headers)
    c.send("SUBSCRIBE", dict(sub, id="d", ack="auto"))
    got = []
    while True:
        try:
            got.append(c.recv(timeout=timeout if got else (first or (60.0 if VALGRIND else 15.0))))
        except TimeoutError:
            break
    c.close()
    return got


def drain(port, dest, timeout=1.0, first=None):
    """The bodies of every message the queue gives (received)."""
    return [f.body for f in received(port, {"destination": dest}, timeout, first)]


def test_promote_slave_after_master_kill(broker_factory):
    c = Cluster(broker_factory)
    c.start_all()
    bodies = [b"m%d" % i for i in range(1000)]
    send_persistent(c.nodes[0].port, "/queue/ha", bodies)
    c.wait_in_sync()
    c.nodes[0].kill()
    c.promote_n1()  # by configuration; n2 follows it
    got = drain(c.nodes[1].port, "/queue/ha")
    assert sorted(got) == sorted(bodies) and len(got) == len(set(got))
    assert got == bodies   # order kept too


def test_a_master_whose_log_fails_sends_what_its_slaves_have(broker_factory):
    """A master whose sync modes wait for no slave (local_disk) and whose
    log's fdatasync fails (STOMPD_TEST_FAIL_SYNC_AFTER) under a client
    consuming its own persistent messages (auto-ack: each MESSAGE waits
    for its dequeue): it sends the deliveries whose dequeues its slaves
    were handed, drops the rest, ships nothing more, and stops. A slave
    promoted then still has every stored message that was not delivered:
    nothing is lost. (A dequeue appended but not yet handed when the log
    failed is what a loss needs; three rounds, as a round has one in
    about half the runs.)"""
    for _ in range(3):
        c = Cluster(broker_factory, store__sync="local_disk")
        m = c.nodes[0]
        m.env = dict(os.environ, STOMPD_TEST_FAIL_SYNC_AFTER="20", STOMPD_TEST_FAIL_STOP_MS="5000")
        c.start_all()
        receipted, delivered, err, t = consume_own_until_error(m.port, "/queue/loop", 512)
        t.join()
        failed = the_failed_send(err, receipted, delivered)
        assert "fdatasync of the log failed" in exited_with_1(m)
        c.promote_n1()
        left = {int(body.split(b":")[0]) for body in drain(c.nodes[1].port, "/queue/loop")}
        stored = set(range(failed))
        assert stored <= delivered | left, "stored, lost: %s" % sorted(stored - delivered - left)
        stop_all(c)


def test_slaves_refuse_clients(broker_factory):
    c = Cluster(broker_factory)
    c.start_all()
    assert port_open(c.nodes[0].port)
    assert not port_open(c.nodes[1].port)
    assert not port_open(c.nodes[2].port)


def test_slave_catches_up_from_its_position_then_by_snapshot(broker_factory):
    c = Cluster(broker_factory, store__retention="200", store__segment_size="64KiB")
    c.start_all()
    send_persistent(c.nodes[0].port, "/queue/cu", [b"a%d" % i for i in range(50)])
    # n2 stops once it has everything so far; its position is then on disk
    head = status(c.nodes[0])["lsn"]
    wait_for(lambda: status(c.nodes[2])["lsn"] == head)
    assert c.nodes[2].stop() == 0
    old = head
    # sends while it is down: n0 and n1 still make a quorum
    send_persistent(c.nodes[0].port, "/queue/cu", [b"b%d" % i for i in range(100)])
    head = status(c.nodes[0])["lsn"]
    assert head >= old + 100
    c.nodes[2].restart(wait=SLAVE_UP)
    # it resumes right after its old position, well below the master's head,
    # by streaming the journal: no snapshot
    assert c.nodes[2].wait_log(r"following master .* from lsn (\d+)", since_start=True)
    frm = int(re.search(r"following master .* from lsn (\d+)", c.nodes[2].log_since_start()).group(1))
    assert frm == old + 1 and frm < head
    assert "sends a snapshot" not in c.nodes[2].log_since_start()
    assert "snapshot installed" not in c.nodes[2].log_since_start()
    assert c.nodes[0].wait_log(r"streaming from lsn %d\b" % frm)
    # and it ends with the master's very store
    wait_for(lambda: status(c.nodes[2])["durable_lsn"] == head)
    assert c.nodes[2].stop() == 0
    assert c.nodes[0].stop() == 0
    assert c.dump(2) == c.dump(0)
    assert c.dump(2).count("\nQ/queue/cu") == 150
    c.nodes[0].restart()
    assert c.nodes[1].wait_log(r"following master .* from lsn %d\b" % (head + 1), timeout=15)
    send_persistent(c.nodes[0].port, "/queue/cu", [b"c%d" % i for i in range(10)])
    behind = status(c.nodes[0])["lsn"]
    # far behind: 400 messages come and go while it is down; once no
    # message in them is pending and they are older than the retention,
    # the master's log segments holding its position are removed, so it
    # gets a snapshot
    send_persistent(c.nodes[0].port, "/queue/bulk", [b"d%d" % i + b"." * 1000 for i in range(400)])
    assert len(drain(c.nodes[0].port, "/queue/bulk")) == 400

    def pruned():
        send_persistent(c.nodes[0].port, "/queue/tick", [b"t"])
        return status(c.nodes[0])["log_first_lsn"] > behind
    wait_for(pruned, timeout=30)
    c.nodes[2].restart(wait=SLAVE_UP)
    assert c.nodes[2].wait_log("snapshot installed", since_start=True)
    assert "sends a snapshot" in c.nodes[2].log_since_start()
    # and it keeps streaming after the snapshot
    send_persistent(c.nodes[0].port, "/queue/cu", [b"e%d" % i for i in range(20)])
    time.sleep(0.5)
    stop_all(c)
    d0, d1, d2 = c.dump(0), c.dump(1), c.dump(2)
    assert d0 == d1 == d2
    assert d0.count("\nQ/queue/cu") == 180


@pytest.mark.parametrize("ahead", [True, False], ids=["old-master-ahead", "same-lsn"])
def test_divergent_tail_is_dropped(broker_factory, ahead):
    """A former master's tail that never reached a quorum is dropped when it
    rejoins: whether its last lsn is ahead of the new master's, or the new
    master has passed it (an entry of an older epoch at the same lsn)."""
    c = Cluster(broker_factory)
    c.start_all()
    send_persistent(c.nodes[0].port, "/queue/dv", [b"kept%d" % i for i in range(20)])
    c.wait_in_sync()
    c.nodes[1].stop()
    c.nodes[2].stop()
    # the master journals these but cannot commit them: no quorum
    p = connected(c.nodes[0].port)
    for i in range(30):
        p.send("SEND", {"destination": "/queue/dv", "persistent": "true"}, b"lost%d" % i)
    p.send("SEND", {"destination": "/queue/dv", "persistent": "true", "receipt": "never"}, b"x")
    p.expect_nothing(0.5)
    c.nodes[0].kill()
    c.reconfigure(1, "master")
    c.reconfigure(2, "slave", master=1)
    c.reconfigure(0, "slave", master=1)
    c.nodes[1].restart()
    c.nodes[2].restart(wait=SLAVE_UP)
    new = [b"new%d" % i for i in range(5 if ahead else 50)]
    if not ahead:
        # the new master passes the old one's last lsn before it comes back
        send_persistent(c.nodes[1].port, "/queue/dv", new)
    c.nodes[0].restart(wait=SLAVE_UP)
    assert c.nodes[0].wait_log("snapshot installed", since_start=True)
    if ahead:
        send_persistent(c.nodes[1].port, "/queue/dv", new)
    else:
        assert c.nodes[1].wait_log(r"sending a snapshot .* because its last entry differs from this master's "
                                   r"\(a divergent tail\)")
    got = drain(c.nodes[1].port, "/queue/dv")
    assert got == [b"kept%d" % i for i in range(20)] + new
    time.sleep(0.5)
    stop_all(c)
    d0, d1, d2 = c.dump(0), c.dump(1), c.dump(2)
    assert d0 == d1 == d2


def test_two_manual_masters_of_one_term_do_not_share_a_history(broker_factory):
    """Manual mode: two nodes made master one after the other, each unaware
    of the other's term (both had seen only epoch e), must not be taken for
    one history. Both used to pick epoch e + 1; n1's entries 11-20 and n0's
    entries 11-25 differ, and n1 rejoining n0 at lsn 20 streamed from 21,
    keeping b0-b9 in its store for good. It must get a snapshot."""
    c = Cluster(broker_factory)
    c.start_all()
    send_persistent(c.nodes[0].port, "/queue/tw", [b"a%d" % i for i in range(10)])
    c.wait_in_sync()
    c.nodes[0].kill()
    c.promote_n1()  # n1 is master for a while, n2 its slave
    send_persistent(c.nodes[1].port, "/queue/tw", [b"b%d" % i for i in range(10)])
    assert c.nodes[1].stop() == 0
    assert c.nodes[2].stop() == 0
    # n0 comes back as master, knowing nothing of n1's term; n2 follows it
    c.reconfigure(0, "master")
    c.reconfigure(2, "slave", master=0)
    c.nodes[0].restart()
    c.nodes[2].restart(wait=SLAVE_UP)
    send_persistent(c.nodes[0].port, "/queue/tw", [b"c%d" % i for i in range(15)])
    # the two terms got different epochs
    e0 = re.findall(r"master in epoch (\d+)", c.nodes[0].log_since_start())
    e1 = re.findall(r"master in epoch (\d+)", c.nodes[1].log())
    assert e0 and e1 and e0[-1] != e1[-1]
    # n1, holding b0-b9 at lsn 11-20, rejoins n0 (c0-c14 at lsn 11-25)
    c.reconfigure(1, "slave", master=0)
    c.nodes[1].restart(wait=SLAVE_UP)
    assert c.nodes[1].wait_log("snapshot installed", since_start=True)
    assert "following master" not in c.nodes[1].log_since_start().split("snapshot installed")[0]
    got = drain(c.nodes[0].port, "/queue/tw")
    assert got == [b"a%d" % i for i in range(10)] + [b"c%d" % i for i in range(15)]
    time.sleep(0.5)
    stop_all(c)
    d0, d1, d2 = c.dump(0), c.dump(1), c.dump(2)
    assert d0 == d1 == d2



def test_hello_checksum_decides_stream_or_snapshot(broker_factory):
    """A slave streams on only if its last entry is the master's, by epoch
    and checksum; any other entry at that (epoch, lsn) is a divergent tail.
    A slave of another protocol version is refused, saying both versions."""
    repl = free_port()
    b = broker_factory(replicated("m", repl, "master"))
    f0 = FakeSlave(repl, 0, 0, 0, node=b"fake-quorum", ack_entries=True)
    f0.start()
    send_persistent(b.port, "/queue/hs", [b"x%d" % i for i in range(5)])
    assert wait_until(lambda: 5 in f0.entries)
    e = f0.entries[3]
    epoch = struct.unpack(">Q", e[1:9])[0]
    same = FakeSlave(repl, epoch, 3, epoch, node=b"fake-same", last_sum=journal_checksum(e))
    same.start()
    assert wait_until(lambda: same.welcome is not None)
    assert not same.welcome["snapshot"] and same.welcome["next"] == 4
    other = FakeSlave(repl, epoch, 3, epoch, node=b"fake-other", last_sum=journal_checksum(e) ^ 0x10)
    other.start()
    assert wait_until(lambda: other.welcome is not None)
    assert other.welcome["snapshot"]
    assert b.wait_log(r"fake-other .* at lsn 3: sending a snapshot .* because its last entry differs from this "
                      r"master's \(a divergent tail\)")
    old = FakeSlave(repl, epoch, 3, epoch, node=b"fake-v2", version=2)
    old.start()
    assert wait_until(lambda: old.refused is not None)
    assert "replication protocol version 2; this master speaks version %d" % REPL_VERSION in old.refused
    assert b.wait_log("refusing .*: replication protocol version 2; this master speaks version %d" % REPL_VERSION)


def test_quorum_holds_receipts(broker_factory):
    c = Cluster(broker_factory)
    c.start_all()
    c.nodes[1].stop()
    # one slave down: a quorum of 2 out of 3 still holds
    watcher = connected(c.nodes[0].port)
    watcher.receipt("SUBSCRIBE", {"id": "w", "destination": "/queue/q", "ack": "client-individual"}, "s")
    p = connected(c.nodes[0].port)
    p.receipt("SEND", {"destination": "/queue/q", "persistent": "true"}, "one-down", b"1")
    assert watcher.recv().body == b"1"
    c.nodes[2].stop()
    # both down: no receipt, and the message is not delivered (nor would a
    # delivery leave: its delivery mark cannot be committed either)
    p.send("SEND", {"destination": "/queue/q", "persistent": "true", "receipt": "waits"}, b"2")
    p.expect_nothing(1.0)
    watcher.expect_nothing(0.1)
    # a slave comes back: the receipt and the message arrive
    c.nodes[2].restart(wait=SLAVE_UP)
    f = p.recv(timeout=10)
    assert f.command == "RECEIPT" and f["receipt-id"] == "waits"
    assert watcher.recv(timeout=5).body == b"2"


def test_quorum_timeout_answers_error(broker_factory):
    c = Cluster(broker_factory, store__quorum_timeout="1s")
    c.start_all()
    c.nodes[1].stop()
    c.nodes[2].stop()
    p = connected(c.nodes[0].port)
    t = time.time()
    p.send("SEND", {"destination": "/queue/qt", "persistent": "true", "receipt": "r"}, b"x")
    f = p.recv(timeout=10)
    assert f.command == "ERROR" and f["receipt-id"] == "r"
    assert "not replicated in time" in f["message"]
    assert 0.9 < time.time() - t < 5
    assert "of 2 slaves connected" in f.body.decode()
    assert c.nodes[0].wait_log("durable sends wait")
    # the rest of the broker is fine: non-persistent traffic flows
    q = connected(c.nodes[0].port)
    q.receipt("SEND", {"destination": "/queue/np"}, "np", b"y")


def test_wrong_token_garbage_and_stalled_slave(broker_factory):
    c = Cluster(broker_factory, store__repl_window="256KiB")
    c.start_all()
    # a slave with the wrong token is refused and says so
    intruder = broker_factory(replicated("x", free_port(), "slave", c.repl[0], store__security_token="guess"),
                              start=False, name="intruder")
    intruder.start(wait="refused")
    assert "authentication failed" in intruder.log()
    assert c.nodes[0].wait_log("refusing .*authentication failed")
    # garbage on the replication port
    for junk in (b"\x00\x00\x00\x00", b"GET / HTTP/1.0\r\n\r\n", os.urandom(5000)):
        s = socket.create_connection(("127.0.0.1", c.repl[0]))
        s.sendall(junk)
        time.sleep(0.05)
        s.close()
    # a slave that stops reading: the master goes on with the other one
    c.nodes[2].kill(signal.SIGSTOP)
    try:
        bodies = [b"z" * 2000 + b"%d" % i for i in range(600)]
        send_persistent(c.nodes[0].port, "/queue/stall", bodies)
        assert c.nodes[0].wait_log("dropped: silent", timeout=15)
    finally:
        c.nodes[2].kill(signal.SIGCONT)
    got = drain(c.nodes[0].port, "/queue/stall")
    assert got == bodies
    # the stalled slave catches up once it runs again
    assert c.nodes[2].wait_log("following master", timeout=15)


def page(b, path="/"):
    h = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=5)
    h.request("GET", path, headers={"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()})
    r = h.getresponse()
    data = r.read().decode()
    h.close()
    assert r.status == 200, (r.status, data)
    return data


def replica(st, node):
    """A slave's entry in a master's /api/status, or None."""
    return next((r for r in st.get("replicas", []) if r["id"] == node), None)


def test_stalled_slave_costs_at_most_its_window(broker_factory):
    """A slave that stops reading holds at most store.repl_window of the
    master's output: the master pauses it there (the other slave and the
    producers go on at their pace), says so, and drops it once it has been
    silent for store.repl_timeout. An unbounded output buffer would show
    the whole load as unacknowledged for it."""
    window = 256 * 1024
    c = Cluster(broker_factory, store__repl_window="256KiB", store__repl_timeout="5s")
    m = c.nodes[0]
    m.start()
    c.nodes[1].start(wait=SLAVE_UP)
    send_persistent(m.port, "/queue/sw", [b"warm%d" % i for i in range(5)])
    head = status(m)["lsn"]
    fake = FakeSlave(c.repl[0], 0, 0, 0, node=b"stalled-fake", ack_entries=True, stall_after=head + 3, rcvbuf=4096)
    fake.start()
    try:
        assert wait_until(lambda: (replica(status(m), "stalled-fake") or {}).get("received_lsn") == head)
        st = status(m)
        assert st["repl_window"] == window
        r = replica(st, "stalled-fake")
        assert r["window_bytes"] == window and r["paused"] is None
        # a producer of 3 MB of persistent messages; the fake stops reading
        # after three of them
        p = connected(m.port)
        body = b"s" * 4000
        bodies = [body + b"%d" % i for i in range(800)]
        worst, seen_paused, peak = 0.0, None, 0
        t0 = time.time()
        for i, b in enumerate(bodies):
            t = time.time()
            p.receipt("SEND", {"destination": "/queue/sw", "persistent": "true"}, "s%d" % i, b)
            worst = max(worst, time.time() - t)
            if i % 40 == 39:
                r = replica(status(m), "stalled-fake")
                if r is None:
                    continue   # already dropped: a slow run
                # bounded by the window plus one entry, however much is sent
                assert r["unacked_bytes"] <= window + 8192, r
                assert r["queued_bytes"] <= window + 8192, r
                peak = max(peak, r["unacked_bytes"])
                if r["paused"]:
                    seen_paused = r
        elapsed = time.time() - t0
        assert fake.stalled.is_set()
        # the loop never waited for the stalled slave: a blocked master
        # would hold a receipt until the drop, store.repl_timeout (5 s) later
        assert worst < 4.0, worst
        assert elapsed / len(bodies) < 0.1, elapsed
        # it was paused with its window full, not sent the whole load
        assert seen_paused is not None and "send window full" in seen_paused["paused"], seen_paused
        assert peak >= window - 8192
        r = replica(status(m), "stalled-fake")
        if r is not None:
            assert r["paused"] and "stalled-fake" in page(m)
            assert "paused" in page(m)
            assert re.search(r'stompd_repl_unacked_bytes\{node="stalled-fake"\} \d+', page(m, "/metrics"))
            assert re.search(r'stompd_repl_paused\{node="stalled-fake"\} 1', page(m, "/metrics"))
        # said in the log: paused, then dropped once silent
        assert m.wait_log(r"slave stalled-fake .* paused for .*send window full", timeout=10)
        assert m.wait_log(r"slave stalled-fake .* dropped: silent", timeout=15)
        st = status(m)
        assert replica(st, "stalled-fake") is None and len(st["replicas"]) == 1
        # gone from the list, but not without a word: the console says why
        d = st["last_dropped"][0]
        assert d["id"] == "stalled-fake" and "silent for" in d["reason"], d
        html = page(m)
        assert 'id="dropped"' in html and "stalled-fake" in html and "silent for" in html
        head = st["lsn"]
    finally:
        fake.close()
    # the real slave has it all; nothing lost, nothing twice
    assert wait_until(lambda: status(c.nodes[1])["durable_lsn"] >= head)
    got = drain(m.port, "/queue/sw")
    assert got == [b"warm%d" % i for i in range(5)] + bodies


def conn_info(b, client):
    """The broker's /api/connections entry for one of our clients."""
    port = client.sock.getsockname()[1]
    h = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=5)
    h.request("GET", "/api/connections", headers={"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()})
    conns = json.loads(h.getresponse().read())
    h.close()
    return next(x for x in conns if x["peer"].endswith(":%d" % port))


def test_lost_quorum_holds_sends_and_pauses_their_producers(broker_factory):
    """Both slaves down (replicas = 3): a persistent SEND gets no RECEIPT;
    /api/status and the console say why; the broker stops reading a
    producer once stomp.pending_limit of its frames wait, while a
    non-persistent producer goes on; store.quorum_timeout answers waiting
    SENDs with ERROR; a slave back makes the quorum, and a send still
    waiting is receipted."""
    limit = 8
    c = Cluster(broker_factory, store__quorum_timeout="4s", stomp__pending_limit=str(limit))
    c.start_all()
    m = c.nodes[0]
    st = status(m)
    assert st["waiting"] is None and st["quorum"]["state"] == "ok"
    assert st["quorum"]["slaves_connected"] == 2 and st["quorum"]["slaves_needed"] == 1
    assert 'id="waiting"' not in page(m)
    c.nodes[1].stop()
    c.nodes[2].stop()
    assert wait_until(lambda: status(m)["quorum"]["slaves_connected"] == 0)
    logged = m.log().count("durable sends wait")
    a = connected(m.port)
    t_a = time.time()
    a.send("SEND", {"destination": "/queue/ql", "persistent": "true", "receipt": "a1"}, b"a1")
    a.expect_nothing(0.5)
    st = status(m)
    assert "not enough slaves in sync" in st["waiting"] and "0 of 2 slaves connected" in st["waiting"], st
    assert st["quorum"]["state"] == "too few slaves connected" and st["quorum"]["sends_waiting"] == 1
    html = page(m)
    assert re.search(r'id="waiting">[^<]*not enough slaves in sync', html)
    assert m.wait_log("durable sends wait: not enough slaves in sync.*0 of 2 slaves connected")

    # producer flow control: the broker reads `limit` persistent SENDs,
    # then stops reading that connection
    b = connected(m.port)
    for i in range(3 * limit):
        b.send("SEND", {"destination": "/queue/ql", "persistent": "true"}, b"b%d" % i)
    assert wait_until(lambda: conn_info(m, b)["frames_in"] == 1 + limit)
    time.sleep(0.5)
    assert conn_info(m, b)["frames_in"] == 1 + limit
    assert status(m)["quorum"]["sends_waiting"] == 1 + limit
    # logged once for the state, not once per waiting send
    assert m.log().count("durable sends wait") == logged + 1
    # a non-persistent producer on another connection is not held
    cons = connected(m.port)
    cons.receipt("SUBSCRIBE", {"id": "np", "destination": "/queue/np"}, "sub")
    np_ = connected(m.port)
    np_.receipt("SEND", {"destination": "/queue/np"}, "np1", b"np1")
    # receipted while the persistent sends still wait: only the quorum
    # timeout, which answers them all, could have let a held send go
    # (a clock would measure the machine's load, not the broker)
    st = status(m)
    assert st["quorum"]["sends_waiting"] == 1 + limit, st
    assert cons.recv(timeout=10).body == b"np1"

    # store.quorum_timeout: the receipted send gets ERROR, and the
    # paused producer's waiting sends as well (then both are closed)
    f = a.recv(timeout=10)
    assert f.command == "ERROR" and f["receipt-id"] == "a1" and "not replicated in time" in f["message"], f
    assert 3.5 < time.time() - t_a < 8
    assert "not enough slaves in sync" in f.body.decode()
    a.expect_closed()
    f = b.recv(timeout=10)
    assert f.command == "ERROR" and f.get("receipt-id") is None and "not replicated in time" in f["message"], f
    b.expect_closed()

    # a slave comes back: a send still waiting is receipted, status clears
    d = connected(m.port)
    d.send("SEND", {"destination": "/queue/ql", "persistent": "true", "receipt": "d1"}, b"d1")
    d.expect_nothing(0.3)
    c.nodes[1].restart(wait=SLAVE_UP)
    f = d.recv(timeout=10)
    assert f.command == "RECEIPT" and f["receipt-id"] == "d1", f
    assert wait_until(lambda: status(m)["waiting"] is None)
    st = status(m)
    assert st["quorum"]["state"] == "ok" and st["quorum"]["sends_waiting"] == 0
    assert 'id="waiting"' not in page(m)
    assert m.wait_log("durable sends proceed")
    # the timed-out sends were journaled: committed now, they are delivered
    # (as their ERROR said they might be); B's unread frames never were
    got = drain(m.port, "/queue/ql")
    assert got == [b"a1"] + [b"b%d" % i for i in range(limit)] + [b"d1"]


def test_slave_that_received_but_wrote_nothing_is_behind(broker_factory):
    """In quorum_mem a slave's copy counts once its store wrote it: one
    that ACKs each entry as received but never as written holds durable
    sends, is named behind at the position it wrote, and is not counted
    in sync. Its place says what it received and that its durable
    position was never said (it read "at lsn 0", as of an empty store)."""
    c = Cluster(broker_factory)
    m = c.nodes[0]
    m.start()
    stuck = FakeSlave(c.repl[0], 0, 0, 0, node=b"stuck-fake", ack_entries="received")
    stuck.start()
    assert wait_until(lambda: replica(status(m), "stuck-fake") is not None)
    p = connected(m.port)
    p.send("SEND", {"destination": "/queue/unwritten", "persistent": "true", "receipt": "r0"}, b"x")
    assert wait_until(lambda: stuck.entries)
    assert wait_until(lambda: (replica(status(m), "stuck-fake") or {}).get("received_lsn") == max(stuck.entries))
    p.expect_nothing(1.0)
    assert m.wait_log(r"durable sends wait: .*1 of 2 slaves connected, 0 in sync; a quorum of 3 needs 1; "
                      r"behind: stuck-fake at lsn %d, its durable position not said yet \(not acknowledging\)"
                      % max(stuck.entries))
    st = status(m)
    assert st["quorum"]["slaves_in_sync"] == 0 and st["quorum"]["state"] == "slaves connected but behind", st
    # a real slave joins and writes: the send is receipted, one in sync
    c.nodes[1].start(wait=SLAVE_UP)
    f = p.recv(timeout=10)
    assert f.command == "RECEIPT" and f["receipt-id"] == "r0", f
    assert wait_until(lambda: status(m)["quorum"]["slaves_in_sync"] == 1)
    stuck.close()


def cpu_seconds(pid):
    """The process's user and system CPU time so far, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def held_by_a_stalled_slave(broker_factory, config_text=None, **settings):
    """A master whose only slave (a FakeSlave) stopped reading with the
    master's output to it full, and an auto-ack consumer whose MESSAGE
    waits for its dequeue to be shipped to that slave. Returns the master,
    the slave, the consumer and the dequeue's lsn."""
    # a stalled slave answers no ping: not dropped while the test holds it
    c = Cluster(broker_factory, store__repl_window="256KiB", store__repl_timeout="120s", **settings)
    m = c.nodes[0]
    m.config_text = config_text
    m.start()
    fake = FakeSlave(c.repl[0], 0, 0, 0, node=b"slow-fake", ack_entries=True, rcvbuf=4096)
    fake.start()
    assert wait_until(lambda: replica(status(m), "slow-fake") is not None)
    p = connected(m.port)
    p.receipt("SEND", {"destination": "/queue/held", "persistent": "true"}, "r0", b"once")
    # the slave reads one more entry (a big one), then stops; the next
    # big one fills the window and the sockets behind it
    fake.stall_after = status(m)["lsn"] + 1
    big = b"b" * (1 << 20)
    p.send("SEND", {"destination": "/queue/filler", "persistent": "true"}, big)
    assert fake.stalled.wait(30), "the fake slave did not get the first filler"
    filler = status(m)["lsn"] + 1
    p.send("SEND", {"destination": "/queue/filler", "persistent": "true"}, big)
    assert wait_until(lambda: status(m)["lsn"] == filler, timeout=30)
    consumer = connected(m.port)
    consumer.send("SUBSCRIBE", {"id": "c", "destination": "/queue/held", "ack": "auto"})
    dequeue = filler + 1
    assert wait_until(lambda: status(m)["lsn"] >= dequeue), "the auto-ack delivery's dequeue was not journaled"
    consumer.expect_nothing(1.0)
    assert dequeue not in fake.entries
    return m, fake, consumer, dequeue


def test_auto_ack_delivery_waits_until_its_dequeue_is_shipped(broker_factory):
    """An auto-ack delivery has no delivery mark: its dequeue must be in
    the kernel's hands for the slaves a quorum needs before the MESSAGE
    leaves, or a master killed in between leaves a new master that
    delivers it again unmarked. Here the only slave stops reading with
    the master's output to it full, so the dequeue cannot go: the MESSAGE
    waits, and leaves once the slave reads again."""
    m, fake, consumer, dequeue = held_by_a_stalled_slave(broker_factory)
    try:
        fake.resume()
        f = consumer.recv(timeout=30)
        assert f.command == "MESSAGE" and f.body == b"once" and f.get("redelivered") is None, f
        assert wait_until(lambda: dequeue in fake.entries)
    finally:
        fake.close()


def test_auto_ack_deliveries_held_without_a_quorum_are_given_back(broker_factory):
    """With both slaves down, an auto-ack consumer's MESSAGEs wait for
    their dequeue to reach a slave, but the dequeue is journaled. A
    consumer that went away while they waited made them disappear once a
    slave came back and the dequeue committed: receipted, never delivered
    (helper-113). They go back to their queue, and to the store, whether
    the consumer closes its socket (a queue and a durable subscription
    here) or the master stops under it; back in order, not marked
    redelivered, as they were never sent."""
    c = Cluster(broker_factory)
    c.start_all()
    m = c.nodes[0]
    durable = ({"client-id": "app"}, {"destination": "/topic/held", "activemq.subscriptionName": "keep"})
    s = connected(m.port, headers=durable[0])
    s.receipt("SUBSCRIBE", dict(durable[1], id="d"), "sub")
    s.close()
    p = connected(m.port)
    for i in range(10):
        p.receipt("SEND", {"destination": "/queue/held", "persistent": "true"}, "q%d" % i, b"q%d" % i)
        p.receipt("SEND", {"destination": "/topic/held", "persistent": "true"}, "t%d" % i, b"t%d" % i)
    p.close()
    c.nodes[1].stop()
    c.nodes[2].stop()
    assert wait_until(lambda: status(m)["quorum"]["slaves_connected"] == 0)
    q = connected(m.port)
    q.send("SUBSCRIBE", {"id": "1", "destination": "/queue/held", "ack": "auto"})
    t = connected(m.port, headers=durable[0])
    t.send("SUBSCRIBE", dict(durable[1], id="1", ack="auto"))
    q.expect_nothing(1.0)
    t.expect_nothing(0.1)
    q.close()
    t.close()
    # a slave back: the dequeues commit, and so does what undid them
    c.nodes[1].start(wait=SLAVE_UP)
    got = received(m.port, {"destination": "/queue/held"}, timeout=2.0)
    assert [f.body for f in got] == [b"q%d" % i for i in range(10)], got
    assert not any(f.get("redelivered") for f in got), got
    got = received(m.port, durable[1], timeout=2.0, headers=durable[0])
    assert [f.body for f in got] == [b"t%d" % i for i in range(10)], got
    assert not any(f.get("redelivered") for f in got), got

    # the master stops while an auto-ack consumer's MESSAGEs wait
    p = connected(m.port)
    for i in range(10):
        p.receipt("SEND", {"destination": "/queue/held2", "persistent": "true"}, "r%d" % i, b"r%d" % i)
    p.close()
    c.nodes[1].stop()
    assert wait_until(lambda: status(m)["quorum"]["slaves_connected"] == 0)
    q = connected(m.port)
    q.send("SUBSCRIBE", {"id": "1", "destination": "/queue/held2", "ack": "auto"})
    q.expect_nothing(1.0)
    assert m.stop() == 0
    q.expect_closed()
    c.start_all()
    got = received(m.port, {"destination": "/queue/held2"}, timeout=2.0)
    assert [f.body for f in got] == [b"r%d" % i for i in range(10)], got
    assert not any(f.get("redelivered") for f in got), got


def test_given_back_messages_of_a_paged_queue_are_delivered_in_order(broker_factory):
    """Given back, the messages of a paged queue left memory once their
    give-back was indexed, and paging skipped them while it was not
    committed (it reads only committed keys): counted pending, delivered
    to nobody until a restart (helper-114). They stay in memory until
    their give-back is committed."""
    c = Cluster(broker_factory, broker__queue_window="16KiB")
    c.start_all()
    m = c.nodes[0]
    n = 200
    p = connected(m.port)
    for i in range(n):
        p.receipt("SEND", {"destination": "/queue/pg", "persistent": "true"}, "r%d" % i, b"%04d" % i + b"x" * 1000)
    p.close()
    c.nodes[1].stop()
    c.nodes[2].stop()
    assert wait_until(lambda: status(m)["quorum"]["slaves_connected"] == 0)
    for prefetch in (30, 50):
        q = connected(m.port)
        q.send("SUBSCRIBE", {"id": "1", "destination": "/queue/pg", "ack": "auto",
                             "activemq.prefetchSize": str(prefetch)})
        q.expect_nothing(0.7)  # held: no slave has the dequeues
        q.close()              # given back
    c.nodes[1].start(wait=SLAVE_UP)
    got = [f.body[:4] for f in received(m.port, {"destination": "/queue/pg"}, timeout=3.0)]
    assert got == [b"%04d" % i for i in range(n)], "%d of %d delivered (first %r)" % (len(got), n, got[:3])


def test_a_closing_consumers_held_deliveries_outlive_its_idle_queue(broker_factory):
    """A consumer that ends with DISCONNECT and a receipt while its
    auto-ack MESSAGEs wait for the quorum gets them (before its RECEIPT)
    if the quorum comes back within the linger; when it does not, they go
    back. Meanwhile their queue looked idle (nothing pending, no
    consumer) and could be removed: given back then, they had nowhere to
    go, and were lost."""
    c = Cluster(broker_factory, broker__expiry_check_interval="100ms")
    c.start_all()
    m = c.nodes[0]
    send_persistent(m.port, "/queue/linger", [b"l%d" % i for i in range(5)])
    c.nodes[1].stop()
    c.nodes[2].stop()
    assert wait_until(lambda: status(m)["quorum"]["slaves_connected"] == 0)
    q = connected(m.port)
    q.send("SUBSCRIBE", {"id": "1", "destination": "/queue/linger", "ack": "auto"})
    q.expect_nothing(0.5)
    q.send("DISCONNECT", {"receipt": "bye"})
    q.expect_closed(timeout=30)  # the linger ran out (several idle sweeps)
    c.nodes[1].start(wait=SLAVE_UP)
    got = received(m.port, {"destination": "/queue/linger"}, timeout=2.0)
    assert [f.body for f in got] == [b"l%d" % i for i in range(5)], got


def test_a_stopping_master_waits_for_its_slaves(broker_factory):
    """SIGTERM on a master hands over: no new client and no new work (a
    scheduled message falling due waits; the loop sleeps though a queue has
    a dispatch to make), and the process
    stays until the slaves have every entry it journaled, so the held
    MESSAGE leaves only with its dequeue on the slave (which the next
    master reads); then it stops, exit 0."""
    # a deadline no slow machine reaches before the test lets the slave go
    m, fake, consumer, dequeue = held_by_a_stalled_slave(broker_factory, store__stop_wait="60s")
    try:
        # a consumer that will fall silent: dropped during the handover,
        # it leaves its queue with a dispatch to make, which waits
        silent = connected(m.port, headers={"heart-beat": "1000,0"})
        silent.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/silent"}, "s")
        # work that falls due during the handover waits for the next master
        lsn = status(m)["lsn"]
        p = connected(m.port)
        p.send("SEND", {"destination": "/queue/later", "persistent": "true", "AMQ_SCHEDULED_DELAY": "1000"}, b"l")
        assert wait_until(lambda: status(m)["lsn"] == lsn + 1)
        m.proc.send_signal(signal.SIGTERM)
        assert m.wait_log(r"stopping once the slaves have every entry journaled")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", m.port), timeout=5).close()
        st, _, _ = http_request(m.http_port, "POST", "/api/send", {"destination": "/queue/console", "body": "x"})
        assert st == 503, "the console took new work from a master handing over"
        consumer.expect_nothing(1.0)
        assert m.wait_log(r"no heart-beat or frame for"), "the silent consumer was not dropped"
        # the loop sleeps while it waits, dispatch to make or not (a loop
        # that spins takes a core: far above a quarter of one, even shared)
        cpu, wall = cpu_seconds(m.proc.pid), time.time()
        time.sleep(2)
        used = (cpu_seconds(m.proc.pid) - cpu) / (time.time() - wall)
        assert used < 0.25, "a master handing over spun (%.0f%% of a core)" % (used * 100)
        assert status(m)["lsn"] == lsn + 1, "a master handing over fired a scheduled message"
        assert m.proc.poll() is None, "the master stopped without its slave\n" + m.log()[-2000:]
        fake.resume()
        f = consumer.recv(timeout=30)
        assert f.command == "MESSAGE" and f.body == b"once" and f.get("redelivered") is None, f
        # its commit took the slave's ACK, sent once the slave had it
        assert m.proc.wait(timeout=30 * (4 if VALGRIND else 1)) == 0
        assert dequeue in fake.entries
        assert "stopping: the slaves have every entry journaled" in m.log()
    finally:
        fake.close()


def test_a_master_handing_over_expires_and_trims_nothing(broker_factory):
    """The other two sources of new work stay idle while a master hands
    over: the expiry sweep leaves a message that falls due to the next
    master, and a SIGHUP that lowers broker.topic_pending_limit trims no
    backlog (each would otherwise remove messages, and journal the
    persistent ones, on a node that is handing its log over)."""
    m, fake, consumer, dequeue = held_by_a_stalled_slave(
        broker_factory, config_text="[broker]\ntopic_pending_limit = 0\n",
        store__stop_wait="60s", broker__expiry_check_interval="100ms")
    try:
        p = connected(m.port)
        # a subscriber holding one message, four more in its backlog
        sub = connected(m.port)
        sub.receipt("SUBSCRIBE", {"id": "t", "destination": "/topic/backlog", "ack": "client",
                                  "activemq.prefetchSize": "1"}, "s")
        for i in range(5):
            p.send("SEND", {"destination": "/topic/backlog"}, b"%d" % i)
        assert sub.recv(timeout=10).body == b"0"
        # due once the handover has begun, however slow the steps to it
        due = int(time.time() * 1000) + (12000 if VALGRIND else 3000)
        p.receipt("SEND", {"destination": "/queue/due", "expires": str(due)}, "sent", b"due")
        m.proc.send_signal(signal.SIGTERM)
        assert m.wait_log(r"stopping once the slaves have every entry journaled")
        with open(os.path.join(m.dir, m.name + ".conf"), "w") as f:
            f.write("[broker]\ntopic_pending_limit = 1\n")
        m.proc.send_signal(signal.SIGHUP)
        assert m.wait_log("configuration reloaded")
        # past the message's expiry, and many sweeps after it
        time.sleep(max(0, due / 1000.0 - time.time()) + 1.0)
        # (its /api pages answer 503 now; /metrics answers in any role)
        st, _, text = http_request(m.http_port, "GET", "/metrics")
        assert st == 200, text[:300]
        removed = re.findall(rb"^stompd_(expired|dropped)_total (\d+)$", text, re.M)
        assert sorted(removed) == [(b"dropped", b"0"), (b"expired", b"0")], \
            "a master handing over removed messages: %s" % removed
        assert m.proc.poll() is None, "the master stopped without its slave\n" + m.log()[-2000:]
        fake.resume()
        assert consumer.recv(timeout=30).body == b"once"
        assert m.proc.wait(timeout=30 * (4 if VALGRIND else 1)) == 0
    finally:
        fake.close()


def test_a_stopping_master_waits_at_most_stop_wait(broker_factory):
    """A slave that never catches up holds a stopping master for
    store.stop_wait, no longer; the master says so. The auto-ack MESSAGE
    still held for its dequeue is not sent (it was, before stop 53: at
    worst delivered again, unmarked, after a failover; lost if the
    consumer had gone): the message goes back, in the master's journal
    too, after the dequeue."""
    m, fake, consumer, dequeue = held_by_a_stalled_slave(broker_factory, store__stop_wait="1s")
    try:
        m.proc.send_signal(signal.SIGTERM)
        consumer.expect_closed(timeout=30 * (4 if VALGRIND else 1))
        assert m.proc.wait(timeout=30 * (4 if VALGRIND else 1)) == 0
        assert "stopping without the slaves in step" in m.log()
        assert dequeue not in fake.entries
    finally:
        fake.close()
    assert queued_in_store(m, "/queue/held") == 1


def queued_in_store(b, dest):
    """How many messages of queue dest a stopped node's store holds."""
    r = subprocess.run([STOMPD, "--dump-store", b.settings["broker.data_dir"]], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return len([line for line in r.stdout.splitlines() if line.startswith("Q%s\\x00" % dest)])


def test_a_second_signal_ends_the_handover_at_once(broker_factory):
    """An operator who will not wait: a second SIGTERM during the handover
    stops the master at once (exit 0), as store.stop_wait running out
    would; the auto-ack MESSAGE held for its dequeue goes back, as there."""
    m, fake, consumer, dequeue = held_by_a_stalled_slave(broker_factory, store__stop_wait="60s")
    try:
        m.proc.send_signal(signal.SIGTERM)
        assert m.wait_log(r"stopping once the slaves have every entry journaled")
        m.proc.send_signal(signal.SIGTERM)
        consumer.expect_closed(timeout=30 * (4 if VALGRIND else 1))
        assert m.proc.wait(timeout=30 * (4 if VALGRIND else 1)) == 0
        assert dequeue not in fake.entries
    finally:
        fake.close()
    assert queued_in_store(m, "/queue/held") == 1


def test_slave_behind_is_named_and_dropped_slaves_are_remembered(broker_factory):
    """A slave connected but not acknowledging holds durable sends too:
    logged once for that state, named in /api/status. A dropped slave
    leaves the replica list but stays in last_dropped (newest first, the
    last eight) with its reason."""
    c = Cluster(broker_factory)
    m = c.nodes[0]
    m.start()
    # it answers pings but never acknowledges an entry
    mute = FakeSlave(c.repl[0], 0, 0, 0, node=b"mute-fake")
    mute.start()
    assert wait_until(lambda: replica(status(m), "mute-fake") is not None)
    logged = m.log().count("durable sends wait")
    p = connected(m.port)
    for i in range(5):
        p.send("SEND", {"destination": "/queue/lb", "persistent": "true", "receipt": "r%d" % i}, b"%d" % i)
    p.expect_nothing(1.0)
    assert m.wait_log(r"durable sends wait: not enough slaves in sync.*1 of 2 slaves connected, 0 in sync; "
                      r"a quorum of 3 needs 1; behind: mute-fake at lsn \d+ \(not acknowledging\)")
    st = status(m)
    assert st["quorum"]["state"] == "slaves connected but behind" and st["quorum"]["slaves_connected"] == 1
    assert "behind: mute-fake" in st["waiting"]
    assert "mute-fake" in page(m)
    for i in range(5, 10):
        p.send("SEND", {"destination": "/queue/lb", "persistent": "true", "receipt": "r%d" % i}, b"%d" % i)
    p.expect_nothing(1.5)
    assert m.log().count("durable sends wait") == logged + 1
    # a real slave joins: the sends are receipted, in order
    c.nodes[1].start(wait=SLAVE_UP)
    for i in range(10):
        f = p.recv(timeout=10)
        assert f.command == "RECEIPT" and f["receipt-id"] == "r%d" % i, f
    assert wait_until(lambda: status(m)["waiting"] is None)
    assert m.wait_log("durable sends proceed")
    assert status(m)["last_dropped"] == []

    mute.close()
    assert wait_until(lambda: [d["id"] for d in status(m)["last_dropped"]] == ["mute-fake"])
    d = status(m)["last_dropped"][0]
    assert d["reason"] and d["time_ms"] > 0 and d["ago_s"] < 10
    assert replica(status(m), "mute-fake") is None
    # bounded: the last eight, newest first
    for k in range(9):
        f = FakeSlave(c.repl[0], 0, 0, 0, node=b"churn%d" % k)
        f.start()
        assert wait_until(lambda: f.welcome is not None)
        f.close()
        assert wait_until(lambda: status(m)["last_dropped"][0]["id"] == "churn%d" % k)
    ids = [d["id"] for d in status(m)["last_dropped"]]
    assert ids == ["churn%d" % k for k in range(8, 0, -1)]
    html = page(m)
    assert 'id="dropped"' in html and "churn8" in html and "mute-fake" not in html


def fill(port, dest, n, size=1024):
    """n persistent messages, pipelined: a receipt on the last only."""
    p = connected(port)
    body = b"f" * size
    for i in range(n - 1):
        p.send("SEND", {"destination": dest, "persistent": "true"}, body)
    p.receipt("SEND", {"destination": dest, "persistent": "true"}, "last", body)
    p.close()


@pytest.mark.parametrize("how", ["stream", "snapshot"])
def test_catching_up_slave_holds_at_most_its_window(broker_factory, how):
    """The master counts an entry acknowledged once the slave has it in
    memory, so a slave catching up gets its whole backlog as fast as
    loopback carries it, faster than its store writes it. Once
    store.repl_window bytes wait for its disk it stops reading until half
    are written: what it holds stays under the window plus one frame,
    however far behind it starts, and it still ends with the master's
    whole store (a stream of the log, or a snapshot)."""
    window = 64 << 10
    extra = {"store__repl_window": "64KiB", "store__snapshot_chunk": "16KiB"}
    if how == "snapshot":
        extra.update(store__retention="100", store__segment_size="64KiB")
    c = Cluster(broker_factory, **extra)
    m = c.nodes[0]
    m.start()
    c.nodes[1].start(wait=SLAVE_UP)
    if how == "snapshot":
        # a prefix that goes: consumed, its segments removed
        fill(m.port, "/queue/gone", 300)
        assert len(drain(m.port, "/queue/gone")) == 300
    fill(m.port, "/queue/deep", 2000)
    if how == "snapshot":
        def pruned():
            send_persistent(m.port, "/queue/tick", [b"t"])
            return status(m)["log_first_lsn"] > 1
        wait_for(pruned, timeout=30)
    head = status(m)["lsn"]
    late = c.nodes[2]
    late.start(wait=SLAVE_UP)
    wait_for(lambda: status(late)["durable_lsn"] == head, timeout=120)
    # written (durable_lsn) is not yet freed: what the loop wrote itself
    # goes to the writer to be indexed within 5 ms (write_inline)
    wait_for(lambda: status(late)["store_queued_bytes"] == 0, timeout=30)
    st = status(late)
    # a 1 KiB entry is the largest item in a frame; a frame is at most the
    # window (entries) or the snapshot chunk plus one pair
    assert 0 < st["store_queued_peak_bytes"] < 2 * window + 2048, st
    assert ("sends a snapshot" in late.log_since_start()) == (how == "snapshot")
    stop_all(c)
    assert c.dump(2) == c.dump(0)
    assert c.dump(2).count("\nQ/queue/deep") == 2000


def test_master_producers_wait_for_its_own_writer(broker_factory):
    """quorum_mem answers a SEND once two nodes hold it in memory, however
    slow the master's own disk. Producers faster than the master's writer
    wait once store.repl_window bytes wait for it, until half are written
    (its slaves hold theirs to the same window): the master holds at most
    the window plus one message per producer, every message is receipted,
    and every node ends with the same store."""
    window, producers, each, body = 64 << 10, 6, 60, b"q" * 16000
    c = Cluster(broker_factory, store__repl_window="64KiB")
    c.start_all()
    m = c.nodes[0]
    assert produce_pipelined(m.port, "/queue/mw", producers, each, body) == []
    st = status(m)
    assert st["store_producer_waits"] > 0, st
    assert 0 < st["store_queued_peak_bytes"] < window + producers * (len(body) + 1024), st
    c.wait_in_sync()
    stop_all(c)
    assert c.dump(1) == c.dump(0) == c.dump(2)
    assert c.dump(0).count("\nQ/queue/mw") == producers * each


def test_slave_behind_a_restarted_master_streams_from_its_log(broker_factory):
    """A restarted master holds no entry in memory (its ring starts empty):
    what a slave that was down lacks is read from the master's log (off the
    master's loop, offload.c), several frames of it, and streamed. The slave
    rejoins without a snapshot and ends with the master's very store."""
    c = Cluster(broker_factory)
    c.start_all()
    m, late = c.nodes[0], c.nodes[2]
    send_persistent(m.port, "/queue/lg", [b"a%d" % i for i in range(20)])
    old = status(m)["lsn"]
    wait_for(lambda: status(late)["lsn"] == old)
    assert late.stop() == 0
    fill(m.port, "/queue/lg", 3000)          # about 3 MB: a dozen ENTRIES frames
    head = status(m)["lsn"]
    assert m.stop() == 0
    m.restart()
    late.restart(wait=SLAVE_UP)
    assert late.wait_log(r"following master .* from lsn %d\b" % (old + 1), since_start=True)
    wait_for(lambda: status(late)["durable_lsn"] >= head, timeout=60)
    assert "sends a snapshot" not in late.log_since_start()
    # the master serves clients all along; what they send follows
    send_persistent(m.port, "/queue/lg", [b"z"])
    wait_for(lambda: status(late)["durable_lsn"] == status(m)["lsn"], timeout=30)
    stop_all(c)
    assert c.dump(2) == c.dump(0)
    assert c.dump(2).count("\nQ/queue/lg") == 3021


def deliver_one_client_acked(c, dest):
    """Start the cluster; its master, a client-ack consumer of dest, and the
    one persistent message it was given."""
    c.start_all()
    m = c.nodes[0]
    consumer = connected(m.port)
    consumer.receipt("SUBSCRIBE", {"id": "c", "destination": dest, "ack": "client-individual"}, "sub")
    send_persistent(m.port, dest, [b"one"])
    f = consumer.recv()
    assert f.body == b"one"
    return m, consumer, f


def test_a_stopping_master_ships_its_last_acks(broker_factory):
    """An ACK without a receipt waits for the next entry to carry it
    (store.ack_delay, long here). A clean stop journals it, and ships it
    too: the slaves end with the master's very log, so the master can
    rejoin under another one without a snapshot."""
    c = Cluster(broker_factory, **{"store.ack_delay": "10s"})
    m, consumer, f = deliver_one_client_acked(c, "/queue/last")
    consumer.send("ACK", {"id": f["ack"]})
    # frames are handled in order: this receipt says the ACK was read (a
    # non-persistent SEND journals nothing, so the ACK still waits)
    consumer.receipt("SEND", {"destination": "/queue/other"}, "read", b"x")
    c.wait_in_sync()
    head = status(m)["lsn"]
    assert m.stop() == 0
    for s in c.nodes[1:]:
        wait_for(lambda: status(s)["lsn"] == head + 1, timeout=30)
    stop_all(c)
    assert c.dump(1) == c.dump(0)
    assert "\nQ/queue/last" not in c.dump(0)


def test_a_disconnect_receipt_waits_for_the_acks_before_it(broker_factory):
    """DISCONNECT with a receipt is the graceful close: the ACKs sent before
    it without receipts (which wait up to store.ack_delay, long here, for
    an entry to carry them) are journaled at once, and the receipt says
    they are durable, as an ACK's own receipt would: here, once a quorum
    has them. Meanwhile the closing consumer is given nothing more, and a
    connection that acknowledged nothing is answered at once."""
    c = Cluster(broker_factory, **{"store.ack_delay": "10s", "store.quorum_timeout": "10min"})
    m, consumer, f = deliver_one_client_acked(c, "/queue/bye")
    # no quorum: the entry carrying the ACK cannot commit
    assert c.nodes[1].stop() == 0 and c.nodes[2].stop() == 0
    consumer.send("ACK", {"id": f["ack"]})
    consumer.send("DISCONNECT", {"receipt": "bye"})
    consumer.expect_nothing(1.0)
    # a message now waits for another consumer
    p = connected(m.port)
    p.receipt("SEND", {"destination": "/queue/bye"}, "sent", b"two")
    other = connected(m.port)
    other.receipt("SUBSCRIBE", {"id": "o", "destination": "/topic/idle"}, "sub")
    other.receipt("DISCONNECT", {}, "bye-other")
    consumer.expect_nothing(1.0)
    c.nodes[1].restart(wait=SLAVE_UP)
    r = consumer.recv(timeout=30)
    assert r.command == "RECEIPT" and r["receipt-id"] == "bye"
    consumer.expect_closed()
    rest = connected(m.port)
    rest.receipt("SUBSCRIBE", {"id": "r", "destination": "/queue/bye", "ack": "client-individual"}, "sub")
    g = rest.recv(timeout=10)
    assert g.body == b"two" and g.get("redelivered") is None
    rest.expect_nothing(1.0)


def acked(m):
    """What a master has heard its slaves acknowledge."""
    return [r["received_lsn"] for r in status(m)["replicas"]]


def deliver_one_auto_acked(c, dest):
    """A persistent message to an auto-ack consumer: its dequeue is the
    master's last entry, shipped before the MESSAGE left, and nothing waits
    for it. Returns the consumer and that entry's lsn, once both slaves
    hold the entry and the master has heard them acknowledge the SEND's."""
    m = c.nodes[0]
    consumer = connected(m.port)
    consumer.receipt("SUBSCRIBE", {"id": "c", "destination": dest}, "sub")
    send_persistent(m.port, dest, [b"one"])
    assert consumer.recv().body == b"one"
    head = status(m)["lsn"]
    for s in c.nodes[1:]:
        wait_for(lambda: status(s)["lsn"] == head, timeout=30)
    wait_for(lambda: min(acked(m)) >= head - 1, timeout=30)
    return consumer, head


def test_slaves_hold_their_acks_of_entries_nothing_waits_for(broker_factory):
    """An auto-ack delivery's dequeue is shipped before its MESSAGE leaves,
    but nothing waits for it: the slaves hold their ACK of it (up to
    store.ack_delay, 10 s here) for the next entry to carry. The next
    persistent SEND waits for a quorum: its entry is acknowledged at once,
    and the ACK covers the dequeue."""
    c = Cluster(broker_factory, **{"store.ack_delay": "10s"})
    c.start_all()
    m = c.nodes[0]
    consumer, head = deliver_one_auto_acked(c, "/queue/held")
    # a slave that got the SEND's entry late, with the dequeue in one frame,
    # acknowledges both at once: one slave at least holds its ACK
    assert head - 1 in acked(m), "the slaves acknowledged an entry nothing waits for at once"
    send_persistent(m.port, "/queue/other", [b"two"])  # its receipt: within the client's 5 s, not 10
    wait_for(lambda: acked(m) == [head + 1, head + 1], timeout=30)
    consumer.close()
    stop_all(c)


def test_a_held_slave_ack_goes_within_ack_delay(broker_factory):
    """With nothing more to carry it, a held ACK goes once store.ack_delay
    has passed: the master's view of its slaves catches up."""
    c = Cluster(broker_factory, **{"store.ack_delay": "5s"})
    c.start_all()
    m = c.nodes[0]
    consumer, head = deliver_one_auto_acked(c, "/queue/held")
    assert head - 1 in acked(m), "the slaves acknowledged an entry nothing waits for at once"
    wait_for(lambda: acked(m) == [head, head], timeout=30)
    consumer.close()
    stop_all(c)


def test_bad_sync_mode_stops_the_start(broker_factory):
    b = broker_factory(replicated("b", free_port(), "master", store__sync="quorum_mem,fast"), start=False)
    b.start(wait=False)
    assert b.proc.wait(timeout=20) == CONFIG_ERROR
    assert "unknown sync mode 'fast'" in b.log()
    b.proc = None
    b.logf.close()
    b2 = broker_factory(replicated("c", free_port(), "slave"), start=False)
    b2.start(wait=False)
    assert b2.proc.wait(timeout=20) == CONFIG_ERROR
    assert "store.master" in b2.log()
    b2.proc = None
    b2.logf.close()


def test_interrupted_snapshot_is_discarded(broker_factory):
    """A master (a fake one here) sends part of a snapshot and the link
    breaks. The slave must not keep the part: offered a stream from lsn 1
    next, it starts from an empty store, and that store counts as whole
    (a restart does not wipe it as an unfinished snapshot)."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    lsock.settimeout(10)
    port = lsock.getsockname()[1]

    def frame(t, payload):
        return struct.pack(">IB", len(payload) + 1, t) + payload

    def s(b):
        return struct.pack(">I", len(b)) + b

    def welcome(proof, snapshot, nxt):
        return frame(2, proof + struct.pack(">Q", 7) + s(b"fake-master") + struct.pack(">BBQ", 0, snapshot, nxt) +
                     s(b"") + struct.pack(">Q", 0))

    try:
        sl = broker_factory(replicated("s", free_port(), "slave", master_port=port), start=False)
        sl.start(wait=r"role: slave of")
        conn, _ = lsock.accept()
        _, _, ok, proof = repl_master_handshake(conn)         # HELLO, CHALLENGE, PROOF
        assert ok
        conn.sendall(welcome(proof, 1, 0))
        conn.sendall(frame(4, struct.pack(">QQ", 7, 40)))     # SNAPSHOT_BEGIN at lsn 40
        pair = s(b"Qhalf-a-snapshot") + s(b"x" * 100)
        conn.sendall(frame(5, struct.pack(">I", 1) + pair))   # one CHUNK, then the link breaks
        time.sleep(0.3)
        conn.close()
        assert sl.wait_log("snapshot from .* interrupted", timeout=10), sl.log()[-2000:]

        conn, _ = lsock.accept()
        _, position, ok, proof = repl_master_handshake(conn)
        assert ok
        assert position[:2] == (0, 0)                         # it says it is empty...
        conn.sendall(welcome(proof, 0, 1))                    # ...and is streamed from lsn 1
        assert sl.wait_log("following master fake-master .* from lsn 1", timeout=10), sl.log()[-2000:]
        time.sleep(0.3)
        conn.close()
        assert sl.stop() == 0
        mark = len(sl.log())
        sl.start(wait=r"role: slave of")
        assert "interrupted snapshot install" not in sl.log()[mark:], sl.log()[mark:]
        assert sl.stop() == 0
        dump = subprocess.run([STOMPD, "--dump-store", sl.settings["broker.data_dir"]],
                              capture_output=True, text=True, timeout=30)
        assert dump.returncode == 0 and "half-a-snapshot" not in dump.stdout, dump.stdout
    finally:
        lsock.close()
