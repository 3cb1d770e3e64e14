"""WebSocket clients under the same limits as TCP ones: one connection
limit for both listeners (a WebSocket client at the limit hears HTTP
503), output backpressure for a consumer that does not read (dispatch
stops at stomp.output_limit, nothing is lost), a client that floods pings
and reads no pongs is read no more, partial frames count toward
stomp.max_input_buffers with TCP clients' and must finish within
stomp.frame_timeout, and the console and /metrics show WebSocket
connections as such."""
import base64
import json
import re
import socket
import threading
import time
import urllib.request

import pytest

from stompd_test import Client, connected, free_port
from wsclient import BINARY, PING, PONG, WS, frame, read_http_response, upgrade_request, ws_connected


@pytest.fixture
def wsb(broker_factory):
    def make(settings=None):
        port = free_port()
        s = {"stomp.ws_listen": "127.0.0.1:%d" % port}
        s.update(settings or {})
        b = broker_factory(s)
        b.ws_port = port
        assert b.wait_log(r"accepting STOMP over WebSocket")
        return b
    return make


def http_get(b, path):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (b.http_port, path))
    req.add_header("Authorization", "Basic " + base64.b64encode(b"admin:admin").decode())
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def metric(b, name):
    m = re.search(r"^stompd_%s (\d+)$" % re.escape(name), http_get(b, "/metrics").decode(), re.M)
    assert m, name
    return int(m.group(1))


def test_one_connection_limit_for_tcp_and_websocket(wsb):
    b = wsb({"broker.max_connections": "2"})
    t = connected(b.port)
    w = ws_connected(b.ws_port)
    # a third WebSocket client: 503 before any upgrade
    s = socket.create_connection(("127.0.0.1", b.ws_port), timeout=10)
    s.sendall(upgrade_request(b.ws_port)[0])
    status, headers, body = read_http_response(s)
    assert status == 503 and b"broker.max_connections" in body
    s.close()
    # a third TCP client: STOMP's refusal
    c = Client(b.port)
    f = c.recv()
    assert f.command == "ERROR" and "too many connections" in f["message"]
    c.close()
    assert metric(b, "connections_refused_total") == 2
    assert metric(b, "ws_refused_total") == 1
    # the listeners' own counters: the WebSocket one is named as such
    assert metric(b, 'listener_accepted_total{listener="WebSocket"}') == 1
    assert metric(b, 'listener_refused_total{listener="WebSocket"}') == 1
    assert metric(b, 'listener_refused_total{listener="STOMP"}') == 1
    # room again once one goes
    w.drop()
    deadline = time.time() + 30
    while True:
        try:
            ws_connected(b.ws_port).drop()
            break
        except AssertionError:
            assert time.time() < deadline
            time.sleep(0.1)
    t.close()


def test_slow_websocket_reader_is_not_sent_more_than_its_output_limit(wsb):
    b = wsb({"stomp.output_limit": "64KiB"})
    w = WS(b.ws_port, rcvbuf=16384)
    w.connect_stomp()
    w.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/slow"}, "s")
    p = connected(b.port)
    body = b"z" * 10000
    n = 1000                                  # 10 MB: more than the sockets' buffers hold
    for i in range(n):
        p.send("SEND", {"destination": "/queue/slow", "n": str(i)}, body)
    p.receipt("SEND", {"destination": "/queue/other"}, "sent")
    # the broker stops dispatching to it: messages stay queued and its
    # output (STOMP bytes and framed bytes) stays within the limit plus one
    # message
    last, deadline = None, time.time() + 60
    while True:
        pending = {q["name"]: q for q in json.loads(http_get(b, "/api/queues"))}["/queue/slow"]["pending"]
        if pending > 0 and pending == last:
            break
        assert time.time() < deadline, pending
        last = pending
        time.sleep(0.5)
    ws = [c for c in json.loads(http_get(b, "/api/connections")) if c["transport"] == "ws"][0]
    assert 0 < ws["pending_output"] <= 64 * 1024 + 11000, ws
    assert ws["subscriptions"][0]["delivered"] == n - pending
    # it reads: everything arrives, in order
    got = [int(w.recv_stomp(timeout=30)["n"]) for _ in range(n)]
    assert got == list(range(n))
    w.drop()
    p.close()


def test_a_ping_flood_that_reads_no_pongs_is_read_no_more(wsb):
    b = wsb({"stomp.output_limit": "64KiB"})
    w = WS(b.ws_port, rcvbuf=16384)
    w.connect_stomp()
    ping = frame(PING, b"x" * 100)
    batch = ping * 1000
    w.sock.setblocking(False)
    sent = 0
    stalled_at = None
    deadline = time.time() + 60
    # the broker stops reading us once our pongs are at its output limit:
    # our writes then stall, with far less sent than 64 MB
    while time.time() < deadline and sent < 64 << 20:
        try:
            sent += w.sock.send(batch[sent % len(batch):])
            stalled_at = None
        except BlockingIOError:
            if stalled_at is None:
                stalled_at = time.time()
            elif time.time() - stalled_at > 2.0:
                break
            time.sleep(0.05)
    assert stalled_at is not None and sent < 64 << 20, sent
    # reading the pongs lets it go on: every ping answered, and it still
    # speaks STOMP
    w.sock.setblocking(True)
    w.sock.settimeout(30)
    rest = batch[sent % len(batch):] if sent % len(batch) else b""
    t = threading.Thread(target=lambda: w.sock.sendall(rest))
    t.start()
    total = (sent + len(rest)) // len(ping)
    while len(w.pongs) < total:
        fin, op, payload = w.recv_frame(timeout=30)
        assert op == PONG
        w.pongs.append(payload)
    t.join()
    assert all(p == b"x" * 100 for p in w.pongs)
    w.receipt("SEND", {"destination": "/queue/after"}, "still-here")
    w.drop()


def test_console_and_metrics_show_websocket_connections(wsb):
    b = wsb()
    w = ws_connected(b.ws_port)
    t = connected(b.port)
    w.receipt("SUBSCRIBE", {"id": "1", "destination": "/topic/x"}, "s")
    conns = json.loads(http_get(b, "/api/connections"))
    assert sorted(c["transport"] for c in conns) == ["tcp", "ws"]
    page = http_get(b, "/").decode()
    assert '<td class="transport">ws</td>' in page and '<td class="transport">tcp</td>' in page
    assert metric(b, "ws_connections") == 1
    assert metric(b, "ws_upgrades_total") == 1
    assert metric(b, "connections_open") == 2
    assert metric(b, "ws_messages_in_total") >= 2
    assert metric(b, "ws_messages_out_total") >= 2
    w.send_raw(frame(0x1, b"\n", mask=False))
    w.expect_close(1002)
    deadline = time.time() + 30
    while metric(b, "ws_connections") != 0:
        assert time.time() < deadline
        time.sleep(0.05)
    assert metric(b, "ws_failed_total") == 1
    t.close()


KiB = 1024


def held_by_broker(w):
    """A ping after what w sent: its pong means the broker has read (and
    handed to STOMP) everything before it."""
    w.send_frame(PING, b"barrier")
    deadline = time.time() + 30
    while True:
        fin, op, payload = w.recv_frame(timeout=max(0.1, deadline - time.time()))
        if op == PONG and payload == b"barrier":
            return


def test_partial_frames_of_websocket_and_tcp_clients_share_one_limit(wsb):
    b = wsb({"stomp.max_input_buffers": "1MiB"})
    head = b"SEND\ndestination:/queue/big\n\n"
    # a WebSocket client holds 700 KiB of a frame (one message, no NUL)
    w = ws_connected(b.ws_port)
    w.send_frame(BINARY, head + b"w" * (700 * KiB))
    held_by_broker(w)
    # ... so a TCP client's 700 KiB do not fit
    t = Client(b.port, timeout=20)
    t.connect()
    try:
        t.send_raw(head + b"t" * (700 * KiB))
    except OSError:
        pass                 # closed before it read everything
    f = t.recv(timeout=20)
    assert f.command == "ERROR" and "stomp.max_input_buffers" in f.body.decode(), f
    # nor do another WebSocket client's: STOMP ERROR, then close 1008
    w2 = ws_connected(b.ws_port)
    w2.send_frame(BINARY, head + b"v" * (700 * KiB))
    f = w2.recv_stomp(timeout=20)
    assert f.command == "ERROR" and "stomp.max_input_buffers" in f.body.decode(), f
    w2.expect_close(1008)
    # the holder is not disturbed: it finishes its frame, delivered whole
    w.send_frame(BINARY, b"tail\x00")
    w.receipt("DISCONNECT", {}, "bye")
    s = connected(b.port)
    s.send("SUBSCRIBE", {"id": "1", "destination": "/queue/big"})
    m = s.recv(timeout=20)
    assert m.body == b"w" * (700 * KiB) + b"tail"
    # its bytes are no longer counted: a new big frame fits
    w3 = ws_connected(b.ws_port)
    w3.send_frame(BINARY, head + b"x" * (900 * KiB) + b"\x00")
    assert len(s.recv(timeout=20).body) == 900 * KiB


def test_a_websocket_frame_that_never_ends_is_refused_after_frame_timeout(wsb):
    b = wsb({"stomp.frame_timeout": "1s"})
    w = ws_connected(b.ws_port)
    w.send_text(b"SEND\ndestination:/queue/a\n\nthe body, and then nothing")
    t0 = time.time()
    f = w.recv_stomp(timeout=15)
    assert f.command == "ERROR" and f["message"] == "frame not completed in time", f
    assert "stomp.frame_timeout" in f.body.decode()
    assert time.time() - t0 >= 0.9
    w.expect_close(1008)


def test_unfinished_upgrade_requests_hold_the_strangers_share_only(wsb):
    """Upgrade requests without their closing blank line sat in the input
    buffers, counted with every client's frames but never refused: 5,000
    of 60 KB took 300 MB, and logged-in producers' big frames were
    refused (helper-74). They share a quarter of stomp.max_input_buffers
    with unfinished CONNECT frames; beyond, 503 with Retry-After."""
    b = wsb({"stomp.max_input_buffers": "1MiB"})
    part = ("GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % b.ws_port).encode() + b"X-Pad: " + b"a" * (60 * KiB)
    socks, answers = [], []
    for i in range(10):
        s = socket.create_connection(("127.0.0.1", b.ws_port), timeout=20)
        s.sendall(part)
        socks.append(s)
    deadline = time.time() + 30
    for s in socks:
        s.settimeout(0.5)
    while time.time() < deadline and len(answers) < 6:
        for s in socks:
            if s in [a[0] for a in answers]:
                continue
            try:
                data = s.recv(4096)
                answers.append((s, data))
            except socket.timeout:
                pass
    # 256 KiB hold four of them; the others hear 503
    assert len(answers) == 6, [a[1][:60] for a in answers]
    assert all(a[1].startswith(b"HTTP/1.1 503") and b"Retry-After: 5" in a[1] and b"not logged in" in a[1]
               for a in answers), answers
    # a logged-in WebSocket client's 700 KiB frame still fits in the rest
    w = ws_connected(b.ws_port)
    w.send_frame(BINARY, b"SEND\ndestination:/queue/big\nreceipt:r\n\n" + b"w" * (700 * KiB) + b"\x00")
    assert w.recv_stomp(timeout=20).command == "RECEIPT"
    for s in socks:
        s.close()


def test_lines_about_refused_upgrades_are_limited(wsb):
    """Each refused upgrade wrote a log line: anyone reaching the port
    wrote 600 in a second (helper-90). 100 every 10 s; the metric counts
    them all."""
    def refuse(b, n):
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", b.ws_port), timeout=10)
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_http_response(s)[0] in (400, 426)
            s.close()
    b = wsb()
    refuse(b, 300)
    assert b.log().count("websocket: upgrade refused") <= 100   # log.flood_lines' default
    assert metric(b, "ws_refused_total") >= 300
    # log.flood_lines = 0: every one
    b = wsb({"log.flood_lines": "0"})
    refuse(b, 150)
    assert b.log().count("websocket: upgrade refused") == 150
