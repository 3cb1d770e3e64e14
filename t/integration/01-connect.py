"""CONNECT/STOMP negotiation, DISCONNECT, connect timeout."""
import socket
import time

from stompd_test import Client, connected


def test_no_accept_version_means_1_0(broker):
    """The 1.2 specification: CONNECTED MUST carry version, 1.0 for a
    client that sent no accept-version; and heart-beat, 0,0 when there are
    none (a 1.0 connection has none)."""
    c = Client(broker.port)
    c.send("CONNECT", {"login": "guest", "passcode": "guest"})
    f = c.recv()
    assert f.command == "CONNECTED"
    assert f["version"] == "1.0"
    assert f["heart-beat"] == "0,0"
    assert f.get("session")


def test_1_0_has_no_heart_beats(broker_factory):
    b = broker_factory({"stomp.heartbeat_min": "200ms"})
    for headers in ({"heart-beat": "1000,1000"}, {"accept-version": "1.0", "heart-beat": "1000,1000"}):
        c = Client(b.port)
        c.send("CONNECT", headers)
        f = c.recv()
        assert f["version"] == "1.0" and f["heart-beat"] == "0,0", f
        c.expect_nothing(1.5)    # no beats sent to it either


def test_highest_common_version(broker):
    for offered, want in [("1.0,1.1,1.2", "1.2"), ("1.1", "1.1"), ("1.0", "1.0"),
                          ("1.2,1.0", "1.2"), ("1.1,2.0", "1.1")]:
        c = Client(broker.port)
        f = c.connect(offered)
        assert f["version"] == want, (offered, f)
        assert f["server"].startswith("stompd/")
        assert f["heart-beat"] == "0,0", f
        c.close()


def test_stomp_command_is_connect(broker):
    c = Client(broker.port)
    c.send("STOMP", {"accept-version": "1.2", "host": "whatever.example"})
    f = c.recv()
    assert f.command == "CONNECTED" and f["version"] == "1.2"


def test_unsupported_version_error_lists_versions(broker):
    c = Client(broker.port)
    c.send("CONNECT", {"accept-version": "2.0,3.1", "host": "x"})
    f = c.expect_error("unsupported protocol version")
    assert f["version"] == "1.0,1.1,1.2"


def test_host_any_value_and_optional_by_default(broker):
    c = Client(broker.port)
    c.send("CONNECT", {"accept-version": "1.1"})      # stomp.py's 1.1 connection does this
    assert c.recv()["version"] == "1.1"
    c = Client(broker.port)
    f = c.connect("1.1", {"host": "my-laptop.local"})
    assert f["version"] == "1.1"


def test_host_required_when_configured(broker_factory):
    b = broker_factory({"stomp.require_host": "true"})
    c = Client(b.port)
    c.send("CONNECT", {"accept-version": "1.2"})
    c.expect_error("host")
    c = Client(b.port)
    c.send("CONNECT", {})                              # 1.0 has no host header
    assert c.recv().command == "CONNECTED"
    c = Client(b.port)
    assert c.connect("1.2", {"host": "anything"})["version"] == "1.2"


def test_frame_before_connect(broker):
    c = Client(broker.port)
    c.send("SEND", {"destination": "/queue/a", "receipt": "r9"}, b"x")
    f = c.expect_error("not connected")
    assert f["receipt-id"] == "r9"


def test_second_connect_is_an_error(broker):
    c = connected(broker.port)
    c.send("CONNECT", {"accept-version": "1.2", "host": "x"})
    c.expect_error("already connected")


def test_disconnect_receipt_then_close(broker):
    c = connected(broker.port)
    c.send("SEND", {"destination": "/queue/d"}, b"before")
    c.send("DISCONNECT", {"receipt": "bye-1"})
    f = c.recv()
    assert f.command == "RECEIPT" and f["receipt-id"] == "bye-1"
    c.expect_closed()
    # the SEND before the DISCONNECT was processed
    d = connected(broker.port)
    d.send("SUBSCRIBE", {"id": "s", "destination": "/queue/d"})
    assert d.recv().body == b"before"


def test_connect_timeout(broker_factory):
    b = broker_factory({"stomp.connect_timeout": "300ms"})
    c = Client(b.port)
    time.sleep(0.6)
    c.expect_error("connect timeout")


def test_heart_beat_negotiation(broker_factory):
    b = broker_factory({"stomp.heartbeat_min": "200ms"})
    c = Client(b.port)
    f = c.connect("1.2", {"heart-beat": "1000,50"})
    sx, sy = map(int, f["heart-beat"].split(","))
    assert sx == 200       # client wants beats every 50ms: raised to the minimum
    assert sy == 1000      # client can beat every 1000ms
    c = Client(b.port)
    f = c.connect("1.2", {"heart-beat": "0,0"})
    assert f["heart-beat"] == "0,0"


def test_bad_heart_beat_header(broker):
    c = Client(broker.port)
    c.send("CONNECT", {"accept-version": "1.2", "host": "x", "heart-beat": "soon"})
    c.expect_error("heart-beat")


def test_client_id_in_use(broker):
    a = connected(broker.port, headers={"client-id": "app-1"})
    b = Client(broker.port)
    b.send("CONNECT", {"accept-version": "1.2", "host": "x", "client-id": "app-1"})
    b.expect_error("client-id")
    # a is undisturbed, and the id is free again once it leaves
    a.receipt("SEND", {"destination": "/queue/x"}, "ok")
    a.send("DISCONNECT", {"receipt": "d"})
    a.recv()
    c = connected(broker.port, headers={"client-id": "app-1"})
    c.close()


def test_client_id_takeover(broker_factory):
    b = broker_factory({"stomp.client_id_takeover": "true"})
    old = connected(b.port, headers={"client-id": "app-2"})
    old.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/own", "ack": "client"}, "s")
    new = connected(b.port, headers={"client-id": "app-2"})
    old.expect_error("client-id taken over")
    new.receipt("SEND", {"destination": "/queue/x"}, "ok", b"x")


def test_peer_vanishing_is_harmless(broker):
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", broker.port))
        s.sendall(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0SUBSCRIBE\nid:1\ndestination:/queue/v\n\n\0")
        s.close()
    c = connected(broker.port)
    c.receipt("SEND", {"destination": "/queue/v"}, "r", b"still here")
