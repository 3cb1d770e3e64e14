"""STOMP over WebSocket over TLS (stomp.wss_listen): the WebSocket layer
above the TLS transport, over real sockets with certificates made at test
time: a browser-like client subscribes and receives (small and large
messages), closes cleanly, and a client that does not speak TLS is
dropped without disturbing the others."""
import socket

import pytest

from stompd_test import connected, free_port, wait_port
from tlscerts import Certs
from wsclient import WS, accept_for, read_http_response, upgrade_request


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(str(tmp_path_factory.mktemp("certs")))


def wss_broker(factory, certs, **extra):
    port = free_port()
    s = {"stomp.wss_listen": "127.0.0.1:%d" % port}
    s.update(certs.settings())
    s.update(extra)
    b = factory(s)
    assert wait_port(port)
    b.wss_port = port
    return b


def wss(port, certs, timeout=20.0):
    """A WebSocket client over TLS: the TLS handshake, then the upgrade."""
    w = WS(port, connect=False, timeout=timeout)
    w.sock = certs.client_context().wrap_socket(w.sock, server_hostname="localhost")
    req, key = upgrade_request(port, protocols="v12.stomp")
    w.sock.sendall(req)
    status, headers, rest = read_http_response(w.sock, timeout)
    assert status == 101, (status, headers, rest)
    assert headers.get("sec-websocket-accept") == accept_for(key)
    w.protocol = headers.get("sec-websocket-protocol")
    w.buf = rest
    return w


def test_subscribe_and_receive_over_wss(broker_factory, certs):
    b = wss_broker(broker_factory, certs)
    w = wss(b.wss_port, certs)
    assert w.protocol == "v12.stomp"
    assert w.connect_stomp()["version"] == "1.2"
    w.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/wss"}, "sub")
    p = connected(b.port)
    big = bytes(range(256)) * 4096   # 1 MiB: many TLS records, a binary WebSocket message
    p.receipt("SEND", {"destination": "/queue/wss"}, "r1", b"hello")
    p.receipt("SEND", {"destination": "/queue/wss", "content-type": "application/octet-stream",
                       "content-length": str(len(big))}, "r2", big)
    f = w.recv_stomp()
    assert f.command == "MESSAGE" and f.body == b"hello", f
    f = w.recv_stomp(timeout=60)
    assert f.command == "MESSAGE" and f.body == big
    # the other way: a frame sent over wss reaches a TCP consumer
    p.receipt("SUBSCRIBE", {"id": "t", "destination": "/queue/back"}, "sub2")
    w.receipt("SEND", {"destination": "/queue/back"}, "r3", b"from the browser")
    assert p.recv().body == b"from the browser"
    w.receipt("DISCONNECT", {}, "bye")
    w.expect_close(1000)
    w.close(1000)
    w.expect_eof(timeout=20)


def test_a_client_without_tls_is_dropped_and_others_go_on(broker_factory, certs):
    b = wss_broker(broker_factory, certs)
    good = wss(b.wss_port, certs)
    good.connect_stomp()
    plain = socket.create_connection(("127.0.0.1", b.wss_port), timeout=20)
    req, _ = upgrade_request(b.wss_port)
    plain.sendall(req)
    got = b""
    try:
        while True:
            d = plain.recv(4096)
            if not d:
                break
            got += d
    except (ConnectionResetError, socket.timeout):
        pass
    plain.close()
    assert not got.startswith(b"HTTP/1.1 101")
    good.receipt("SEND", {"destination": "/queue/x"}, "still")
    assert b.running()
