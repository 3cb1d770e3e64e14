"""Frame parsing over a real socket: split reads, pipelining, CRLF,
EOLs between frames, binary bodies, escaping per version, repeated headers."""
import time

from stompd_test import Client, connected


def sub_and_get(port, dest, version="1.2"):
    c = connected(port, version)
    c.receipt("SUBSCRIBE", {"id": "s1", "destination": dest}, "sub")
    return c


def test_frame_one_byte_at_a_time(broker):
    rx = sub_and_get(broker.port, "/queue/bytes")
    c = Client(broker.port)
    data = (b"CONNECT\naccept-version:1.2\nhost:x\n\n\0"
            b"SEND\ndestination:/queue/bytes\ncontent-length:5\nk:v\n\nab\0cd\0"
            b"SEND\ndestination:/queue/bytes\nreceipt:r1\n\nsecond\0")
    for i in range(len(data)):
        c.send_raw(data[i:i + 1])
        time.sleep(0.0005)
    assert c.recv().command == "CONNECTED"
    f = c.recv()
    assert f.command == "RECEIPT" and f["receipt-id"] == "r1"
    m1, m2 = rx.recv(), rx.recv()
    assert m1.body == b"ab\0cd" and m1["k"] == "v" and m1["content-length"] == "5"
    assert m2.body == b"second"


def test_pipelined_frames_in_one_write(broker):
    rx = sub_and_get(broker.port, "/queue/pipe")
    c = Client(broker.port)
    frames = b"CONNECT\naccept-version:1.2\nhost:x\n\n\0"
    for i in range(200):
        frames += b"SEND\ndestination:/queue/pipe\n\n%d\0" % i
    frames += b"DISCONNECT\nreceipt:end\n\n\0"
    c.send_raw(frames)
    assert c.recv().command == "CONNECTED"
    assert c.recv()["receipt-id"] == "end"
    got = [rx.recv().body for _ in range(200)]
    assert got == [b"%d" % i for i in range(200)]


def test_crlf_and_eols_between_frames(broker):
    rx = sub_and_get(broker.port, "/queue/crlf")
    c = Client(broker.port)
    c.send_raw(b"\r\n\r\nCONNECT\r\naccept-version:1.2\r\nhost:x\r\n\r\n\0\r\n\n\n"
               b"SEND\r\ndestination:/queue/crlf\r\nreceipt:r\r\nh:val\r\n\r\nbody\0\n\r\n")
    assert c.recv().command == "CONNECTED"
    assert c.recv()["receipt-id"] == "r"
    m = rx.recv()
    assert m.body == b"body" and m["h"] == "val"   # CR is not part of the value


def test_binary_body_with_content_length(broker):
    rx = sub_and_get(broker.port, "/queue/bin")
    body = bytes(range(256)) * 64
    c = connected(broker.port)
    c.send("SEND", {"destination": "/queue/bin", "content-length": str(len(body))}, body)
    m = rx.recv()
    assert m.body == body
    assert m["content-length"] == str(len(body))


def test_message_always_has_content_length(broker):
    rx = sub_and_get(broker.port, "/queue/cl")
    c = connected(broker.port)
    c.send("SEND", {"destination": "/queue/cl"}, b"no length given")
    raw_wait = rx.recv()
    assert raw_wait["content-length"] == "15"


def test_large_body(broker):
    rx = sub_and_get(broker.port, "/queue/big")
    body = b"x" * (3 * 1024 * 1024)
    c = connected(broker.port)
    c.send("SEND", {"destination": "/queue/big"}, body, content_length=True)
    assert rx.recv(timeout=10).body == body


def test_escaping_round_trip_1_2(broker):
    rx = sub_and_get(broker.port, "/queue/esc")
    c = connected(broker.port)
    c.send_raw(b"SEND\ndestination:/queue/esc\nweird\\cname:a\\\\b\\cc\\nd\\re\n\n\0")
    m = rx.recv()
    assert m["weird:name"] == "a\\b:c\nd\re"
    # and on the wire it is escaped again
    assert b"weird\\cname:a\\\\b\\cc\\nd\\re\n" in _raw_message(broker.port, "/queue/esc2",
                                                              b"weird\\cname:a\\\\b\\cc\\nd\\re")


def _raw_message(port, dest, header_line):
    rx = Client(port)
    rx.connect("1.2")
    rx.receipt("SUBSCRIBE", {"id": "s", "destination": dest}, "s")
    c = connected(port)
    c.send_raw(b"SEND\ndestination:" + dest.encode() + b"\n" + header_line + b"\n\n\0")
    time.sleep(0.2)
    rx.sock.settimeout(2)
    return rx.buf + rx.sock.recv(65536)


def test_escaping_1_1_has_no_cr_escape(broker):
    c = connected(broker.port, "1.1")
    c.send_raw(b"SEND\ndestination:/queue/x\nh:a\\rb\n\n\0")
    c.expect_error("escape")


def test_1_0_has_no_escaping(broker):
    rx = sub_and_get(broker.port, "/queue/ten", "1.0")
    c = connected(broker.port, "1.0")
    c.send_raw(b"SEND\ndestination:/queue/ten\nh:a\\cb:c\n\n\0")
    m = rx.recv()
    assert m["h"] == "a\\cb:c"


def test_connect_frame_is_not_unescaped(broker):
    c = Client(broker.port)
    c.send_raw(b"CONNECT\naccept-version:1.2\nhost:x\nlogin:a\\qb\n\n\0")
    assert c.recv().command == "CONNECTED"   # \q would be fatal in any other frame


def test_repeated_header_first_wins_and_is_forwarded(broker):
    rx = sub_and_get(broker.port, "/queue/rep")
    c = connected(broker.port)
    c.send_raw(b"SEND\ndestination:/queue/rep\ndestination:/queue/other\nfoo:1\nfoo:2\n\n\0")
    m = rx.recv()
    assert m["destination"] == "/queue/rep"
    assert [v for k, v in m.headers if k == "foo"] == ["1", "2"]


def test_empty_header_value_kept(broker):
    rx = sub_and_get(broker.port, "/queue/empty")
    c = connected(broker.port)
    c.send_raw(b"SEND\ndestination:/queue/empty\nblank:\nspaced: x \n\n\0")
    m = rx.recv()
    assert m["blank"] == "" and m["spaced"] == " x "
