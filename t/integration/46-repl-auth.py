"""The replication port (no ZooKeeper: roles by configuration), over real
sockets: the token is proven both ways and never sent; a peer without it
(or on TLS without a certificate of tls.ca, or not speaking TLS) gets
nothing, not even the master's position, and counts for nothing toward
the quorum; a recorded handshake replayed on a new connection proves
nothing, either way; node ids from the wire are checked before they are
logged; frames before authentication are small, and at most
store.max_unauthenticated connections may be in their handshake; a replicated node off
loopback will not start without a token; different protocol versions
refuse each other saying so."""
import os
import re
import socket
import struct
import time

import pytest

from stompd_test import (CONFIG_ERROR, R_CHALLENGE, R_HELLO, R_PROOF, R_REFUSE, R_WELCOME, REPL_VERSION, STOMPD, Broker,
                         FakeSlave, connected, free_port, read_repl_frame, repl_frame, repl_master_handshake,
                         repl_proof, repl_str, replicated, wait_until)
from tlscerts import Certs

R_ENTRIES, R_ACK, R_PING = 7, 8, 9


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(str(tmp_path_factory.mktemp("certs")))



def master(factory, **extra):
    repl = free_port()
    b = factory(replicated("m", repl, "master", **extra))
    b.repl = repl
    return b


def hello(node, nonce):
    return repl_frame(R_HELLO, struct.pack(">I", REPL_VERSION) + repl_str(node) + repl_str(nonce))


def read_all(s, timeout=10.0):
    """Frames until the peer closes (or timeout): their types and payloads."""
    s.settimeout(timeout)
    out = []
    try:
        while True:
            out.append(read_repl_frame(s))
    except (AssertionError, ConnectionResetError, socket.timeout):
        pass
    return out


def test_wrong_token_gets_nothing_and_counts_for_nothing(broker_factory):
    """replicas = 2: every persistent SEND waits for one slave. A peer with
    the wrong token gets a CHALLENGE, then REFUSE: no WELCOME, no entry, no
    PING; one that skips its proof and ACKs is dropped; neither makes a SEND
    receipted. A slave with the token does."""
    m = master(broker_factory, store__replicas="2", store__repl_timeout="2s")
    wrong = FakeSlave(m.repl, 0, 0, 0, node=b"intruder", token=b"guess", ack_entries=True)
    wrong.start()
    wrong.join(20)
    assert wrong.seen == [R_CHALLENGE, R_REFUSE], wrong.seen
    assert "authentication failed" in wrong.refused
    assert wrong.welcome is None and not wrong.entries
    # skips the proof, ACKs at once
    s = socket.create_connection(("127.0.0.1", m.repl), timeout=10)
    s.sendall(hello(b"acker", os.urandom(32)))
    assert read_repl_frame(s)[0] == R_CHALLENGE
    s.sendall(repl_frame(R_ACK, struct.pack(">QQ", 10 ** 9, 10 ** 9)))
    assert [t for t, _ in read_all(s)] == []
    assert m.wait_log("127.0.0.1:\\d+ sent ACK instead of its PROOF")
    # the SEND waits for a quorum none of them is part of
    p = connected(m.port)
    p.send("SEND", {"destination": "/queue/q", "persistent": "true", "receipt": "r1"}, b"one")
    p.expect_nothing(1.5)
    st = m.log()
    assert re.search(r"refusing 127\.0\.0\.1:\d+ \(node intruder\): authentication failed", st)
    good = FakeSlave(m.repl, 0, 0, 0, node=b"rightful", ack_entries=True)
    good.start()
    f = p.recv(timeout=20)
    assert f.command == "RECEIPT" and f["receipt-id"] == "r1"
    assert good.master_proved is True
    assert good.welcome is not None and 1 in good.entries
    good.close()


def test_a_replayed_handshake_proves_nothing(broker_factory):
    """A recorded HELLO and PROOF, sent again on a new connection, meet a
    new CHALLENGE nonce: refused, nothing sent."""
    m = master(broker_factory)
    s = socket.create_connection(("127.0.0.1", m.repl), timeout=10)
    nonce = os.urandom(32)
    h = hello(b"recorded", nonce)
    s.sendall(h)
    t, ch = read_repl_frame(s)
    assert t == R_CHALLENGE
    il = struct.unpack(">I", ch[:4])[0]
    mid, mnonce = ch[4:4 + il], ch[8 + il:]
    proof = repl_frame(R_PROOF, repl_str(repl_proof(b"s3cret", b"slave", nonce, mnonce, b"recorded", mid)) +
                       struct.pack(">QQQQ", 0, 0, 0, 0))
    s.sendall(proof)
    t, w = read_repl_frame(s)
    assert t == R_WELCOME
    assert w[:36] == repl_str(repl_proof(b"s3cret", b"master", nonce, mnonce, b"recorded", mid))
    s.close()
    # the same bytes again
    s = socket.create_connection(("127.0.0.1", m.repl), timeout=10)
    s.sendall(h)
    t, ch2 = read_repl_frame(s)
    assert t == R_CHALLENGE and ch2[8 + il:] != mnonce
    s.sendall(proof)
    frames = read_all(s)
    assert [t for t, _ in frames] == [R_REFUSE], frames
    assert b"authentication failed" in frames[0][1]
    assert m.wait_log(r"refusing .*\(node recorded\): authentication failed")


def test_a_replayed_welcome_is_not_followed(broker_factory):
    """A slave acts on nothing from a master that cannot prove the token:
    a WELCOME recorded from an earlier session (one asking for a snapshot,
    which would wipe the slave's store) is refused."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    lsock.settimeout(20)
    port = lsock.getsockname()[1]

    def welcome(proof, snapshot, nxt):
        return repl_frame(R_WELCOME, proof + struct.pack(">Q", 7) + repl_str(b"fake-master") +
                          struct.pack(">BBQ", 0, snapshot, nxt) + repl_str(b"") + struct.pack(">Q", 0))

    try:
        sl = broker_factory(replicated("s", free_port(), "slave", master_port=port), start=False)
        sl.start(wait=r"role: slave of")
        conn, _ = lsock.accept()
        _, _, ok, proof = repl_master_handshake(conn)
        assert ok
        recorded = welcome(proof, 1, 0)
        conn.sendall(welcome(proof, 0, 1))
        assert sl.wait_log("following master fake-master .* from lsn 1")
        conn.close()
        mark = len(sl.log())
        conn, _ = lsock.accept()
        _, _, ok, _ = repl_master_handshake(conn)   # a fresh challenge...
        assert ok
        conn.sendall(recorded)                       # ...answered with the old WELCOME
        assert sl.wait_log(r"127\.0\.0\.1:%d \(node fake-master\) did not prove it knows store\.security_token: not "
                           r"following it" % port)
        assert "sends a snapshot" not in sl.log()[mark:]
        conn.close()
        # and a CHALLENGE with a node id that cannot be shown as it is
        conn, _ = lsock.accept()
        assert read_repl_frame(conn)[0] == R_HELLO
        conn.sendall(repl_frame(R_CHALLENGE, repl_str(b"evil\n\x1b[31mid") + repl_str(os.urandom(32))))
        conn.settimeout(10)
        assert conn.recv(100) == b""                 # no PROOF: the link is dropped
        assert sl.wait_log("malformed CHALLENGE from 127.0.0.1:%d" % port)
        assert "\x1b[31m" not in sl.log()
        conn.close()
    finally:
        lsock.close()


def test_node_ids_and_frame_sizes_before_authentication(broker_factory):
    """A HELLO whose node id is not 1-39 plain characters is refused, and
    the id is never logged; a frame announced larger than 4 KiB before the
    handshake is done closes the connection at once (nothing buffered);
    a peer that stops after CHALLENGE gets no PING and is dropped at
    store.repl_timeout."""
    m = master(broker_factory, store__repl_timeout="1s")
    for node in (b"evil\n\x1b[31mred", b"x" * 40, b"", "caf\u00e9".encode()):
        s = socket.create_connection(("127.0.0.1", m.repl), timeout=10)
        s.sendall(hello(node, os.urandom(32)))
        frames = read_all(s)
        assert [t for t, _ in frames] == [R_REFUSE], (node, frames)
        assert b"malformed HELLO: a node id is 1 to 39" in frames[0][1]
    assert "\x1b[31m" not in m.log() and "evil" not in m.log()
    s = socket.create_connection(("127.0.0.1", m.repl), timeout=10)
    s.sendall(struct.pack(">IB", 10 * 1024 * 1024, R_HELLO) + b"\0" * 1000)
    t0 = time.time()
    assert read_all(s) == []
    assert time.time() - t0 < 5
    assert m.wait_log("a frame of 10485760 bytes before authentication")
    s = socket.create_connection(("127.0.0.1", m.repl), timeout=10)
    s.sendall(hello(b"silent-one", os.urandom(32)))
    t0 = time.time()
    frames = read_all(s, timeout=20)
    assert [t for t, _ in frames] == [R_CHALLENGE], frames
    assert time.time() - t0 >= 0.9
    assert m.wait_log(r"connection 127\.0\.0\.1:\d+ closed: handshake not finished within store\.repl_timeout")


def metric(b, name):
    import http.client
    h = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=10)
    h.request("GET", "/metrics", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    text = h.getresponse().read().decode()
    h.close()
    m = re.search(r"^stompd_%s (\d+)$" % name, text, re.M)
    assert m, name
    return int(m.group(1))


def closed_by_peer(s, timeout=20.0):
    """Has the other end closed s (EOF or reset) within timeout?"""
    s.settimeout(timeout)
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_connections_in_their_handshake_are_capped(broker_factory):
    """store.max_unauthenticated = 4 (and a long store.repl_timeout, so the
    deadline plays no part): strangers that never prove the token hold at
    most 4 places; each one more closes the oldest, while the newer ones
    stay. A real slave connecting in the middle of the flood still gets in,
    and once it has proven itself it no longer counts among them (nor is
    it closed for a newer stranger)."""
    m = master(broker_factory, store__max_unauthenticated="4", store__repl_timeout="60s")
    strangers = []
    for i in range(4):
        s = socket.create_connection(("127.0.0.1", m.repl), timeout=10)
        s.sendall(hello(b"stranger%d" % i, os.urandom(32)))
        assert read_repl_frame(s)[0] == R_CHALLENGE
        strangers.append(s)
    good = FakeSlave(m.repl, 0, 0, 0, node=b"rightful", ack_entries=True)
    good.start()
    assert wait_until(lambda: good.welcome is not None)
    # the slave's connection closed the oldest stranger; the others stay
    assert closed_by_peer(strangers[0])
    for s in strangers[1:]:
        assert not closed_by_peer(s, timeout=0.3)
    assert m.wait_log(r"more than 4 connections without a proof of the token \(store\.max_unauthenticated\): "
                      r"closing the oldest \(127\.0\.0\.1:\d+\)")
    # the slave, authenticated, no longer counts: 3 strangers left, so one
    # more fits, and the next one closes the oldest again
    for i in range(2):
        s = socket.create_connection(("127.0.0.1", m.repl), timeout=10)
        s.sendall(hello(b"late%d" % i, os.urandom(32)))
        assert read_repl_frame(s)[0] == R_CHALLENGE
        strangers.append(s)
    assert closed_by_peer(strangers[1])
    for s in strangers[2:]:
        assert not closed_by_peer(s, timeout=0.3)
    assert metric(m, "repl_handshakes_evicted_total") == 2
    p = connected(m.port)
    p.send("SEND", {"destination": "/queue/c", "persistent": "true", "receipt": "r"}, b"x")
    f = p.recv(timeout=20)
    assert f.command == "RECEIPT"
    assert wait_until(lambda: any(e for e in good.entries.values()))
    assert good.is_alive()
    for s in strangers:
        s.close()
    good.close()


def test_tls_replication_port(broker_factory, certs):
    """store.tls with tls.ca: a peer that does not speak TLS, or has no
    certificate, or one of another CA, is dropped in the handshake and gets
    nothing; one with a certificate of tls.ca and the token is a slave whose
    ACKs count (replicas = 2: the SEND is receipted)."""
    m = master(broker_factory, store__replicas="2", store__tls="true", **{k.replace(".", "__"): v for k, v in
                                                                          certs.settings().items()})
    plain = FakeSlave(m.repl, 0, 0, 0, node=b"plain-peer", ack_entries=True)
    plain.start()
    plain.join(20)
    assert plain.seen == [] and not plain.entries
    for cert, key in ((None, None), (certs.rogue_cert, certs.rogue_key)):
        ctx = certs.client_context(cert=cert, key=key)
        try:
            fs = FakeSlave(m.repl, 0, 0, 0, node=b"no-good-cert", ack_entries=True, tls=ctx)
        except OSError:
            continue  # refused during the handshake (TLS 1.2 says so at once)
        fs.start()
        fs.join(20)
        assert fs.seen == [] and fs.welcome is None
    assert m.wait_log(r"TLS: handshake with 127\.0\.0\.1:\d+ \(replication\) failed")
    p = connected(m.port)
    p.send("SEND", {"destination": "/queue/t", "persistent": "true", "receipt": "r"}, b"x")
    p.expect_nothing(1.0)
    ctx = certs.client_context(cert=certs.client_cert, key=certs.client_key)
    good = FakeSlave(m.repl, 0, 0, 0, node=b"tls-slave", ack_entries=True, tls=ctx)
    good.start()
    f = p.recv(timeout=20)
    assert f.command == "RECEIPT" and good.master_proved
    good.close()


def test_empty_token_off_loopback_refuses_to_start(tmp_path):
    """A replicated node whose store.bind is not on loopback needs a token
    (it refuses before opening anything); on loopback it may go without."""
    import subprocess
    base = ["--set", "broker.data_dir=%s" % (tmp_path / "d"), "--set", "http.listen=",
            "--set", "stomp.listen=127.0.0.1:%d" % free_port(), "--set", "store.type=replicated-leveldb",
            "--set", "store.role=master", "--set", "store.security_token="]
    for bind in ("0.0.0.0:%d" % free_port(), "[::]:%d" % free_port()):
        r = subprocess.run([STOMPD] + base + ["--set", "store.bind=" + bind], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == CONFIG_ERROR, r.stderr
        assert "store.security_token is empty and store.bind (%s) is not a loopback address" % bind in r.stderr


def test_empty_token_on_loopback_is_allowed(broker_factory):
    m = master(broker_factory, store__security_token="")
    fs = FakeSlave(m.repl, 0, 0, 0, node=b"loopback-slave", token=b"")
    fs.start()
    assert wait_until(lambda: fs.welcome is not None)
    assert fs.master_proved
    fs.close()


def test_an_older_master_says_which_versions_met(broker_factory):
    """What a slave of this release logs when a master of the previous one
    refuses its HELLO (as that master does: it reads the version first)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    lsock.settimeout(20)
    port = lsock.getsockname()[1]
    try:
        sl = broker_factory(replicated("s", free_port(), "slave", master_port=port), start=False)
        sl.start(wait=r"role: slave of")
        conn, _ = lsock.accept()
        t, h = read_repl_frame(conn)
        assert t == R_HELLO
        version = struct.unpack(">I", h[:4])[0]
        assert version == REPL_VERSION == 5
        why = (b"replication protocol version %d; this master speaks version 4 (run the same stompd release on "
               b"every node)" % version)
        conn.sendall(repl_frame(R_REFUSE, repl_str(why)))
        assert sl.wait_log("master 127.0.0.1:%d refused this node: replication protocol version 5; this master "
                           "speaks version 4" % port)
        conn.close()
    finally:
        lsock.close()


def authenticated(m, node, rcvbuf=None):
    """A peer through the handshake with the token, by hand: its socket,
    WELCOME read. rcvbuf: set before it connects (shrunk after, the
    kernel drops what the peer sent into the window it had offered, and
    both sides stall)."""
    s = socket.socket()
    s.settimeout(10)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", m.repl))
    nonce = os.urandom(32)
    s.sendall(hello(node, nonce))
    t, ch = read_repl_frame(s)
    assert t == R_CHALLENGE
    il = struct.unpack(">I", ch[:4])[0]
    mid, mnonce = ch[4:4 + il], ch[8 + il:]
    s.sendall(repl_frame(R_PROOF, repl_str(repl_proof(b"s3cret", b"slave", nonce, mnonce, node, mid)) +
                         struct.pack(">QQQQ", 0, 0, 0, 0)))
    assert read_repl_frame(s)[0] == R_WELCOME
    return s


def test_a_peer_that_pings_and_never_reads_gets_no_unbounded_answers(broker_factory):
    """Each PING was answered with a PONG however much output waited: a
    peer with the token that sent PINGs and never read grew the master's
    memory without bound (287 MB in 25 s, helper-89), and slowed every
    receipt. A PING finding a megabyte unread gets no answer now."""
    m = master(broker_factory, store__repl_timeout="30s", store__replicas="1")
    s = authenticated(m, b"pinger", rcvbuf=4096)
    s.settimeout(300)  # a sanitizer build on a loaded machine reads them slowly
    batch = repl_frame(R_PING, struct.pack(">Q", 1)) * 100000  # 1.4 MB of PINGs
    for _ in range(10):  # 14 MB of PONGs, were each answered (the kernel holds a few)
        s.sendall(batch)

    def queued():
        import http.client
        h = http.client.HTTPConnection("127.0.0.1", m.http_port, timeout=10)
        h.request("GET", "/metrics", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
        text = h.getresponse().read().decode()
        h.close()
        v = re.findall(r'^stompd_repl_queued_bytes\{node="pinger"\} (\d+)$', text, re.M)
        assert v, text[:2000]
        return int(v[0])
    # once the master has read them all (what the kernel holds included),
    # what waits for the peer stops growing
    last = [-1]

    def settled():
        q, last[0] = last[0], queued()
        time.sleep(0.5)
        return q == last[0]
    assert wait_until(settled, timeout=120)
    assert 0 < last[0] < 2 * 1024 * 1024, last[0]
    # and clients are served
    p = connected(m.port)
    p.receipt("SEND", {"destination": "/queue/after", "persistent": "true"}, "r", b"x")
    s.close()


def test_lines_about_strangers_are_limited(broker_factory):
    """Each connection that never proved the token wrote a line or two
    (what it sent, then its close): anyone reaching the port wrote over
    1000 a second (helper-89). log.flood_lines (here 20) every 10 s now;
    the next says how many were not. A slave with the token is logged as
    ever."""
    m = master(broker_factory, log__flood_lines="20")
    for i in range(200):
        s = socket.create_connection(("127.0.0.1", m.repl), timeout=10)
        s.sendall(repl_frame(R_ACK, struct.pack(">QQ", 1, 1)))
        assert closed_by_peer(s)
        s.close()
    assert len(re.findall(r"127\.0\.0\.1:\d+ sent ACK before HELLO", m.log())) <= 20
    good = FakeSlave(m.repl, 0, 0, 0, node=b"rightful", ack_entries=True)
    good.start()
    assert m.wait_log(r"slave rightful \(127\.0\.0\.1:\d+\) connected")

    def one_more():
        s = socket.create_connection(("127.0.0.1", m.repl), timeout=10)
        s.sendall(repl_frame(R_ACK, struct.pack(">QQ", 1, 1)))
        closed_by_peer(s)
        s.close()
        return re.search(r"replication: (\d+) lines about connections that did not prove the token were not logged",
                         m.log())
    assert wait_until(one_more, timeout=30)
    assert int(one_more().group(1)) >= 150
    good.close()
