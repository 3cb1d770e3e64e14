"""Many concurrent connections, and the connection limit."""
import socket

from stompd_test import Client, connected, read_to_the_end


def test_thousand_concurrent_connections(broker):
    rx = connected(broker.port)
    rx.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/many"}, "s")
    socks = []
    for i in range(1000):
        s = socket.create_connection(("127.0.0.1", broker.port))
        s.sendall(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0")
        socks.append(s)
    for i, s in enumerate(socks):
        s.sendall(b"SEND\ndestination:/queue/many\n\n%d\0" % i)
    got = set()
    for _ in range(1000):
        got.add(int(rx.recv(timeout=10).body))
    assert got == set(range(1000))
    for s in socks:
        buf = b""
        while b"\0" not in buf:
            buf += s.recv(4096)
        assert buf.startswith(b"CONNECTED\n")
        s.close()


def test_connection_limit(broker_factory):
    b = broker_factory({"broker.max_connections": "5"})
    held = [connected(b.port) for _ in range(5)]
    extra = Client(b.port)
    f = extra.recv()
    assert f.command == "ERROR" and "too many connections" in f["message"]
    assert int(f["content-length"]) == len(f.body) and b"broker.max_connections" in f.body
    extra.expect_closed()
    held[0].close()
    import time
    time.sleep(0.2)
    again = connected(b.port)
    again.receipt("SEND", {"destination": "/queue/l"}, "ok", b"x")


def test_a_client_refused_at_the_limit_reads_its_error_and_a_clean_end(broker_factory):
    """A refused client that sent its CONNECT at once reads the ERROR and
    then the end of the stream, not a reset: the broker drains the CONNECT
    it will never read before the socket closes."""
    b = broker_factory({"broker.max_connections": "2"})
    held = [connected(b.port) for _ in range(2)]
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", b.port), timeout=10)
        s.sendall(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0" + b"SEND\ndestination:/queue/l\n\n" + b"x" * 65536 + b"\0")
        out = read_to_the_end(s)
        s.close()
        assert out.startswith(b"ERROR\nmessage:too many connections\n"), out
    held[0].receipt("SEND", {"destination": "/queue/l"}, "ok", b"x")
