"""STOMP over WebSocket on the wire (RFC 6455), byte for byte with a raw
client (t/lib/wsclient.py): the upgrade and its refusals (4xx), the
subprotocols, frames split over messages and several frames per message,
splits at every byte, masking and the other framing rules, the message
size limit, ping/pong, the close handshake both ways with its codes,
binary bodies and heart-beats."""
import os
import signal
import socket
import struct
import threading
import time

import pytest

from stompd_test import connected, encode_frame, free_port
from wsclient import (BINARY, CLOSE, CONT, PING, PONG, TEXT, WS, accept_for, frame, read_http_response,
                      upgrade_request, ws_connected)


@pytest.fixture
def wsb(broker_factory):
    """A broker with a WebSocket listener; .ws_port is its port."""
    def make(settings=None):
        port = free_port()
        s = {"stomp.ws_listen": "127.0.0.1:%d" % port}
        s.update(settings or {})
        b = broker_factory(s)
        b.ws_port = port
        assert b.wait_log(r"accepting STOMP over WebSocket on ws://127\.0\.0\.1:%d/" % port)
        return b
    return make


def test_stomp_through_the_upgrade_both_ways_with_tcp_clients(wsb):
    b = wsb()
    w = WS(b.ws_port, protocols="v10.stomp, v11.stomp, v12.stomp")
    assert w.protocol == "v12.stomp"          # the highest offered
    f = w.connect_stomp()
    assert f["version"] == "1.2"
    w.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/ws"}, "s")
    t = connected(b.port)
    t.send("SEND", {"destination": "/queue/ws"}, b"from tcp")
    m = w.recv_stomp()
    assert m.command == "MESSAGE" and m.body == b"from tcp" and m["destination"] == "/queue/ws"
    # one STOMP frame per message, as text
    assert w.messages[-1][0] == TEXT and w.messages[-1][1].startswith(b"MESSAGE\n")
    assert w.messages[-1][1].rstrip(b"\n").endswith(b"from tcp\0")
    t.receipt("SUBSCRIBE", {"id": "2", "destination": "/topic/back"}, "s2")
    w.send_stomp("SEND", {"destination": "/topic/back"}, b"from ws")
    m = t.recv()
    assert m.command == "MESSAGE" and m.body == b"from ws"
    w.drop()
    t.close()


@pytest.mark.parametrize("offer,chosen", [("v10.stomp", "v10.stomp"), ("v11.stomp", "v11.stomp"),
                                          ("v11.stomp, v10.stomp", "v11.stomp"), (None, None)])
def test_subprotocols_and_none(wsb, offer, chosen):
    b = wsb()
    w = WS(b.ws_port, protocols=offer)
    assert w.protocol == chosen
    # no subprotocol is STOMP all the same; the version is CONNECT's business
    f = w.connect_stomp("1.0,1.1,1.2")
    assert f["version"] == "1.2"
    w.drop()


def raw_upgrade(port, data, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    status, headers, body = read_http_response(s, timeout)
    # the answer is the last thing on the connection
    s.settimeout(timeout)
    while True:
        d = s.recv(65536)
        if not d:
            break
        body += d
    s.close()
    return status, headers, body.decode("utf-8", "replace")


def test_bad_upgrade_requests_get_4xx_and_the_broker_serves_on(wsb):
    b = wsb({"http.max_request": "4KiB"})
    p = b.ws_port
    good, _ = upgrade_request(p)
    cases = [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426, "upgrade request"),
        (good.replace(b"GET", b"POST", 1), 405, "GET"),
        (good.replace(b"HTTP/1.1", b"HTTP/1.0", 1), 400, "HTTP/1.1"),
        (upgrade_request(p, version="8")[0], 426, "Sec-WebSocket-Version"),
        (upgrade_request(p, key="c2hvcnQ=")[0], 400, "Sec-WebSocket-Key"),
        (good.replace(b"Connection: Upgrade", b"Connection: close"), 400, "Connection"),
        (good.replace(b"Host: 127.0.0.1:%d\r\n" % p, b""), 400, "Host"),
        (upgrade_request(p, protocols="mqtt")[0], 400, "v12.stomp"),
        (upgrade_request(p, origin="http://evil.example")[0], 403, "stomp.ws_origins"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 400, "malformed"),
        (good[:-2] + b"X-Big: " + b"a" * 5000 + b"\r\n\r\n", 431, "http.max_request"),
    ]
    for data, status, words in cases:
        st, headers, body = raw_upgrade(p, data)
        assert st == status, (data[:60], st, body)
        assert words in body, (status, body)
        assert headers.get("connection") == "close"
        if status == 426:
            assert headers.get("sec-websocket-version") == "13"
            assert headers.get("upgrade") == "websocket"
    # a head that never ends is cut at the limit
    s = socket.create_connection(("127.0.0.1", p), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 1000)
    st, _, body = read_http_response(s)
    assert st == 431
    s.close()
    ws_connected(p).drop()
    assert b.wait_log(r"websocket: upgrade refused: 403")


def test_origins(wsb):
    b = wsb({"stomp.ws_origins": "http://app.example:8080, https://other.example"})
    WS(b.ws_port, origin="http://app.example:8080").drop()
    WS(b.ws_port, origin="https://other.example").drop()
    # same origin: the Origin's host:port is the request's Host
    WS(b.ws_port, origin="http://127.0.0.1:%d" % b.ws_port).drop()
    st, _, body = raw_upgrade(b.ws_port, upgrade_request(b.ws_port, origin="http://app.example:8081")[0])
    assert st == 403
    # the same origin under a name that is not this node's: a DNS
    # rebinding (a page of rebind.example, whose name now resolves to this
    # address), refused; a name listed in http.hosts is this node's
    rebound = "rebind.example:%d" % b.ws_port
    st, _, body = raw_upgrade(b.ws_port, upgrade_request(b.ws_port, origin="http://" + rebound, host=rebound)[0])
    assert st == 403 and "http.hosts" in body, body

    def upgraded_as(b, name):
        """Whether an upgrade to b as Host name, from an Origin of that name, gets 101."""
        host = "%s:%d" % (name, b.ws_port)
        s = socket.create_connection(("127.0.0.1", b.ws_port), timeout=10)
        s.sendall(upgrade_request(b.ws_port, origin="http://" + host, host=host)[0])
        status = read_http_response(s)[0]
        s.close()
        return status == 101
    b3 = wsb({"http.hosts": "rebind.example"})
    assert upgraded_as(b3, "rebind.example")
    # a host longer than any DNS name, against a *. name: refused (it was
    # read past the end of its 256-byte copy, helper-69)
    b4 = wsb({"http.hosts": "*.example.com"})
    assert upgraded_as(b4, "a.example.com")
    for n in (258, 1000):  # read from just past the copy (ASan's red zone), and far
        long = "a" * n + ".example.com"
        st, _, body = raw_upgrade(b4.ws_port, upgrade_request(b4.ws_port, origin="http://" + long, host=long)[0])
        assert st == 403 and "http.hosts" in body, body
        assert b4.running()
    b2 = wsb({"stomp.ws_origins": "*"})
    WS(b2.ws_port, origin="http://anything.example").drop()


def test_ws_origins_is_applied_on_sighup(broker_factory):
    port = free_port()
    conf = "[stomp]\nws_listen = 127.0.0.1:%d\nws_origins = %%s\n" % port
    b = broker_factory(config_text=conf % "http://a.example")
    assert b.wait_log("accepting STOMP over WebSocket")
    WS(port, origin="http://a.example").drop()
    assert raw_upgrade(port, upgrade_request(port, origin="http://b.example")[0])[0] == 403
    b.config_text = conf % "http://b.example"
    b.command()                               # rewrites the file
    b.proc.send_signal(signal.SIGHUP)
    assert b.wait_log(r"reload: stomp.ws_origins applied", timeout=30)
    WS(port, origin="http://b.example").drop()
    assert raw_upgrade(port, upgrade_request(port, origin="http://a.example")[0])[0] == 403


def test_connect_timeout_before_the_upgrade_is_408(wsb):
    b = wsb({"stomp.connect_timeout": "300ms"})
    s = socket.create_connection(("127.0.0.1", b.ws_port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\n")        # and nothing more
    st, _, body = read_http_response(s)
    assert st == 408 and b"stomp.connect_timeout" in body
    assert s.recv(100) == b""
    s.close()


def test_frame_split_over_messages_and_fragments(wsb):
    b = wsb()
    w = ws_connected(b.ws_port)
    w.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/split"}, "s")
    data = encode_frame("SEND", {"destination": "/queue/split", "receipt": "r1"}, b"x" * 3000 + b"END")
    # three messages, the middle one binary, the last in two fragments
    w.send_frame(TEXT, data[:10])
    w.send_frame(BINARY, data[10:2000])
    w.send_frame(TEXT, data[2000:2500], fin=False)
    w.send_frame(CONT, data[2500:])
    got = {f.command: f for f in (w.recv_stomp(), w.recv_stomp())}
    assert got["RECEIPT"]["receipt-id"] == "r1"
    assert got["MESSAGE"].body == b"x" * 3000 + b"END"
    w.drop()


def test_several_frames_in_one_message(wsb):
    b = wsb()
    w = ws_connected(b.ws_port)
    w.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/many"}, "s")
    data = b"".join(encode_frame("SEND", {"destination": "/queue/many", "receipt": "r%d" % i}, b"m%d" % i)
                    + b"\n" for i in range(5))
    w.send_frame(TEXT, data)
    got = [w.recv_stomp() for _ in range(10)]
    assert sorted(f["receipt-id"] for f in got if f.command == "RECEIPT") == ["r%d" % i for i in range(5)]
    assert [f.body for f in got if f.command == "MESSAGE"] == [b"m%d" % i for i in range(5)]
    # each went out in its own message
    assert len([m for op, m in w.messages if m.startswith(b"MESSAGE")]) == 5
    w.drop()


def test_split_at_every_byte(wsb):
    """Every byte its own message, then every byte of the socket stream
    its own write (WebSocket headers, masks and payload cut anywhere)."""
    b = wsb()
    w = WS(b.ws_port)
    stream = encode_frame("CONNECT", {"accept-version": "1.2", "host": "x"}) + \
        encode_frame("SUBSCRIBE", {"id": "1", "destination": "/queue/bytes"}) + \
        encode_frame("SEND", {"destination": "/queue/bytes", "receipt": "r"}, "héllo")
    for i in range(len(stream)):
        # binary: a text message may not end inside a UTF-8 sequence (é)
        w.send_frame(BINARY, stream[i:i + 1])
    got = {w.recv_stomp().command for _ in range(3)}
    assert got == {"CONNECTED", "RECEIPT", "MESSAGE"}
    w.drop()
    # the raw socket stream, one byte per write, with a ping in the middle
    w = WS(b.ws_port)
    wire = frame(TEXT, encode_frame("CONNECT", {"accept-version": "1.2", "host": "x"})[:20], fin=False) + \
        frame(PING, b"p1") + \
        frame(CONT, encode_frame("CONNECT", {"accept-version": "1.2", "host": "x"})[20:]) + \
        frame(BINARY, encode_frame("SEND", {"destination": "/queue/bytes", "receipt": "r2"}, b"\x00\x01",
                                   content_length=True))
    w.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(wire)):
        w.send_raw(wire[i:i + 1])
    assert w.recv_stomp().command == "CONNECTED"
    assert w.recv_stomp()["receipt-id"] == "r2"
    assert w.pongs == [b"p1"]
    w.drop()
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/bytes"})
    assert c.recv().body == b"\x00\x01"       # (héllo went to the first connection's subscription)


def test_ping_pong(wsb):
    b = wsb()
    w = ws_connected(b.ws_port)
    w.send_frame(PING, b"hello?")
    w.send_frame(PONG, b"unsolicited")           # ignored
    w.send_frame(PING, b"")
    w.receipt("SEND", {"destination": "/queue/p"}, "r")
    assert w.pongs == [b"hello?", b""]
    w.drop()


def test_close_handshake_started_by_the_client(wsb):
    b = wsb()
    w = ws_connected(b.ws_port)
    w.close(1000, b"done")
    op, payload = w.recv_message()
    assert op == CLOSE and w.close_code == 1000     # its code echoed
    w.expect_eof()
    assert b.wait_log(r"peer closed the WebSocket \(1000\)")


@pytest.mark.parametrize("reason,splits,code", [
    ("\u00e9t\u00e9".encode(), [], 1000),
    ("\u00e9t\u00e9".encode(), [3], 1000),          # inside the first character
    (b"\xff\xfe", [], 1007),
    (b"\xff\xfe", [1, 2, 3], 1007),                   # a byte per read
])
def test_a_close_reason_is_judged_whole_however_it_arrives(wsb, reason, splits, code):
    """wslay checks a close frame's reason for UTF-8 a chunk at a time: a
    valid reason split inside a character was answered 1007, and an
    invalid one trickled a byte at a time was echoed back (helper-74).
    Control frames now reach it whole."""
    b = wsb()
    w = ws_connected(b.ws_port)
    payload = struct.pack(">H", 1000) + reason
    wire = frame(CLOSE, payload)
    hdr = len(wire) - len(payload)
    pos = 0
    for cut in splits + [len(payload)]:
        w.sock.sendall(wire[pos:hdr + cut])
        pos = hdr + cut
        time.sleep(0.1)   # apart, so that the broker reads them apart
    op, got = w.recv_message()
    assert op == CLOSE and w.close_code == code, (w.close_code, w.close_reason)
    if code == 1000:
        assert w.close_reason == reason


def test_close_handshake_after_disconnect_waits_for_the_client(wsb):
    b = wsb()
    w = ws_connected(b.ws_port)
    w.send_stomp("DISCONNECT", {"receipt": "bye"})
    assert w.recv_stomp()["receipt-id"] == "bye"
    w.expect_close(1000)
    # the server waits for our close frame (within its linger) before it
    # closes the TCP connection
    w.sock.settimeout(0.3)
    with pytest.raises(socket.timeout):
        w.sock.recv(10)
    w.close(1000)
    w.expect_eof()
    assert b.wait_log(r"closing: closed after DISCONNECT")


def test_stomp_error_closes_with_1008(wsb):
    b = wsb()
    w = ws_connected(b.ws_port)
    w.send_stomp("SEND", {"receipt": "r9"}, b"no destination")
    f = w.recv_stomp()
    assert f.command == "ERROR" and f["receipt-id"] == "r9"
    assert w.expect_close(1008) == b"STOMP ERROR"
    w.close(1000)
    w.expect_eof()


def test_a_client_that_never_answers_the_close_is_closed_after_the_linger(wsb):
    b = wsb()
    w = ws_connected(b.ws_port)
    w.send_stomp("DISCONNECT", {})
    w.expect_close(1000)
    w.expect_eof(timeout=30)


@pytest.mark.parametrize("wire,code", [
    (frame(TEXT, b"\n", mask=False), 1002),                       # client frames must be masked
    (frame(TEXT, b"\n", rsv=4), 1002),                            # no extension: RSV1 must be 0
    (frame(0x3, b"\n"), 1002),                                    # reserved opcode
    (frame(CONT, b"\n"), 1002),                                   # continuation without a start
    (frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), 1002),     # a new message inside a fragmented one
    (frame(PING, b"x" * 126), 1002),                              # control frame over 125 bytes
    (frame(PING, b"x", fin=False), 1002),                         # fragmented control frame
    (frame(TEXT, b"\xff\xfe"), 1007),                             # a text message that is not UTF-8
    (frame(TEXT, b"\xc3", fin=False) + frame(CONT, b"("), 1007),  # ... also across fragments
    (frame(CLOSE, struct.pack(">H", 1005)), 1002),                # a close code that may not be sent
    (frame(CLOSE, b"\x03"), 1002),                                # a close payload of one byte
])
def test_framing_rules_fail_the_connection(wsb, wire, code):
    b = wsb()
    w = ws_connected(b.ws_port)
    w.send_raw(wire)
    w.expect_close(code)
    w.expect_eof()
    # only that connection
    ws_connected(b.ws_port).drop()


def test_message_size_limit(wsb):
    b = wsb({"stomp.max_frame_size": "4KiB"})
    limit = 4096 + 1024
    # a message exactly at the limit passes (and its STOMP frame is then
    # too large for STOMP: an ERROR)
    w = ws_connected(b.ws_port)
    w.send_frame(BINARY, b"\n" * limit)
    w.receipt("SEND", {"destination": "/queue/l"}, "ok")
    w.drop()
    # one frame announcing more: refused once its header is whole, before
    # any payload (it waited for a byte of payload, helper-103)
    w = ws_connected(b.ws_port)
    w.send_raw(frame(BINARY, b"", length=limit + 1)[:8])
    assert w.expect_close(1009).startswith(b"message larger than 5120 bytes")
    w.expect_eof()
    # ... however large (wslay's own bound, 2^31 bytes, answered without a reason)
    w = ws_connected(b.ws_port)
    w.send_raw(frame(BINARY, b"", length=1 << 40)[:14])
    assert w.expect_close(1009).startswith(b"message larger than 5120 bytes")
    w.expect_eof()
    # fragments adding up to more
    w = ws_connected(b.ws_port)
    w.send_frame(TEXT, b"\n" * 3000, fin=False)
    w.send_frame(CONT, b"\n" * 3000)
    w.expect_close(1009)
    w.expect_eof()
    # a STOMP frame over stomp.max_frame_size in small messages: STOMP's ERROR
    w = ws_connected(b.ws_port)
    data = encode_frame("SEND", {"destination": "/queue/l"}, b"y" * 6000)
    for i in range(0, len(data), 1000):
        w.send_frame(TEXT, data[i:i + 1000])
    f = w.recv_stomp()
    assert f.command == "ERROR" and f["message"] == "frame too large"
    w.expect_close(1008)


def test_held_delivery_keeps_its_place_in_the_output(broker_factory):
    """A client-ack delivery of a persistent message waits for its delivery
    mark's entry (here every store write waits STOMPD_TEST_WRITE_DELAY_MS);
    a frame written to the same connection after it waits behind it, and
    each still goes as a WebSocket message of its own."""
    port = free_port()
    b = broker_factory({"stomp.ws_listen": "127.0.0.1:%d" % port}, start=False)
    b.env = dict(os.environ, STOMPD_TEST_WRITE_DELAY_MS="300")
    b.start()
    w = WS(port)
    w.connect_stomp()
    w.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/wsheld", "ack": "client-individual"}, "s1")
    w.receipt("SUBSCRIBE", {"id": "2", "destination": "/queue/wsafter"}, "s2")
    t = connected(b.port)
    t.receipt("SEND", {"destination": "/queue/wsheld", "persistent": "true"}, "r", b"held")
    t.send("SEND", {"destination": "/queue/wsafter"}, b"after")
    first, second = w.recv_stomp(timeout=30), w.recv_stomp(timeout=30)
    assert (first.body, second.body) == (b"held", b"after"), (first, second)
    assert [op for op, _ in w.messages[-2:]] == [TEXT, TEXT]
    assert w.messages[-2][1].startswith(b"MESSAGE\n") and w.messages[-2][1].endswith(b"held\0")
    w.send_stomp("ACK", {"id": first["ack"]})
    w.drop()
    t.close()


def test_binary_bodies_go_out_as_binary_messages(wsb):
    b = wsb()
    w = ws_connected(b.ws_port)
    w.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/bin"}, "s")
    body = bytes(range(256))
    w.send_stomp("SEND", {"destination": "/queue/bin"}, body, opcode=BINARY, content_length=True)
    m = w.recv_stomp()
    assert m.body == body
    assert w.messages[-1][0] == BINARY
    w.send_stomp("SEND", {"destination": "/queue/bin"}, "naïve €")
    m = w.recv_stomp()
    assert m.body.decode() == "naïve €" and w.messages[-1][0] == TEXT
    w.drop()


def test_heartbeats_inside_messages(wsb):
    b = wsb()
    w = WS(b.ws_port)
    w.send_stomp("CONNECT", {"accept-version": "1.2", "host": "x", "heart-beat": "300,300"})
    f = w.recv_stomp()
    assert f["heart-beat"] == "300,300"
    # the broker's beats arrive as messages holding an EOL; ours keep it open
    stop = threading.Event()

    def beat():
        while not stop.wait(0.1):
            try:
                w.send_frame(TEXT, b"\n")
            except OSError:
                return
    t = threading.Thread(target=beat)
    t.start()
    beats = 0
    deadline = time.time() + 30
    while beats < 5 and time.time() < deadline:
        op, payload = w.recv_message()
        assert op == TEXT
        if payload.strip(b"\r\n") == b"":
            beats += 1
    stop.set()
    t.join()
    assert beats == 5
    w.receipt("SEND", {"destination": "/queue/hb"}, "alive")
    # silent from now on: the broker gives up on us
    w.expect_eof(timeout=30)
    assert b.wait_log(r"no heart-beat or frame for")


def test_ws_listener_off_by_default(broker_factory):
    b = broker_factory()
    assert not b.wait_log("WebSocket", timeout=0.5)


def test_ws_listen_that_cannot_bind_stops_the_start(broker_factory):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    b = broker_factory({"stomp.ws_listen": "127.0.0.1:%d" % port}, start=False)
    b.start(wait=False)
    assert b.proc.wait(timeout=60) != 0
    assert "stomp.ws_listen" in b.log()
    assert "cannot listen on 127.0.0.1:%d" % port in b.log()
    taken.close()


def test_a_close_at_once_says_going_away(wsb):
    """The broker closes a WebSocket at once, not after an answer: a client
    that promised heart-beats went silent, or the broker stops. A close
    frame 1001 goes first, so a browser hears why; before, the TCP
    connection just ended (an abnormal 1006 to the page)."""
    b = wsb()
    silent = WS(b.ws_port)
    silent.connect_stomp("1.2", headers={"heart-beat": "200,0"})
    assert silent.expect_close(1001, timeout=10) == b"going away"
    w = WS(b.ws_port)
    w.connect_stomp("1.2")
    b.stop()
    assert w.expect_close(1001, timeout=10) == b"going away"
