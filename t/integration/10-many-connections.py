"""Many concurrent connections, and the connection limit."""
import socket
import time

from stompd_test import Client, connected, http_json, read_to_the_end, write_users


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


def silent(port, source="127.0.0.1"):
    """A socket that connects and never says a word."""
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def closed(s):
    s.settimeout(10)
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True


def test_sockets_that_never_log_in_cannot_lock_clients_out(broker_factory):
    """Twenty sockets that never spoke held every slot of
    broker.max_connections=20 until stomp.connect_timeout, and a stranger
    who opened them again at once kept every client out (helper-103).
    The last broker.reserved_connections slots (a quarter at most: 5) are
    for clients that log in: a newcomer closes a connection that has not,
    the oldest from its own address, else the oldest."""
    b = broker_factory({"broker.max_connections": "20"})
    stranger = [silent(b.port) for _ in range(20)]
    # 15 may wait; each one beyond closed the stranger's oldest
    assert all(closed(s) for s in stranger[:5])
    # a client gets in, in place of the stranger's oldest
    c = Client(b.port)
    c.connect()
    assert closed(stranger[5])
    # a client that has not logged in yet is not closed by the stranger's
    # newcomers: each of those closes the stranger's own oldest
    late = socket.create_connection(("127.0.0.1", b.port), timeout=10, source_address=("127.0.0.2", 0))
    more = [silent(b.port) for _ in range(30)]
    assert all(closed(s) for s in stranger[6:] + more[:15])
    late.sendall(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0")
    assert late.recv(4096).startswith(b"CONNECTED\n")
    st = http_json(b.http_port, "/api/counters")
    assert st["connections_evicted"] >= 5 + 1 + 30 and st["connections_refused"] == 0, st
    c.receipt("SEND", {"destination": "/queue/l"}, "ok", b"x")


def wait_accepted(b, n):
    """Until the broker has accepted n connections in all (the harness's
    own check that it listens is one)."""
    deadline = time.time() + 30
    while True:
        st = http_json(b.http_port, "/api/counters")
        if st["connections_total"] >= n:
            return
        assert time.time() < deadline, (n, {k: v for k, v in st.items() if k.startswith("conn")})
        time.sleep(0.05)


def test_silent_sockets_cannot_take_the_slots_logged_in_clients_left(broker_factory):
    """Ten clients logged in, and a stranger's ten silent sockets in the
    other ten slots of broker.max_connections=20: the listener refused
    every newcomer at the limit, before the reserve was looked at
    (helper-106). At the limit a newcomer closes one of them."""
    b = broker_factory({"broker.max_connections": "20"})
    clients = [connected(b.port) for _ in range(10)]
    stranger = [silent(b.port, "127.0.0.2") for _ in range(10)]
    wait_accepted(b, 1 + 10 + 10)
    late = socket.create_connection(("127.0.0.1", b.port), timeout=10, source_address=("127.0.0.3", 0))
    late.sendall(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0")
    assert late.recv(4096).startswith(b"CONNECTED\n")
    assert closed(stranger[0])
    # a broker full of clients that log in refuses, as before: a login in
    # progress is not traded for the next newcomer
    stranger = None
    clients[0].receipt("SEND", {"destination": "/queue/l"}, "ok", b"x")


def test_clients_behind_one_address_do_not_close_each_other(broker_factory, tmp_path):
    """A stranger holds the fifteen slots open to all; three clients behind
    one address log in at once (yescrypt: their checks take a while). Each
    closed the one before it, from its own address, while the stranger
    kept his (helper-106). The address with the most waiting gives way."""
    users = str(tmp_path / "users")
    write_users(users, {"alice": ("secret", []), "admin": ("admin", ["admins"])}, method=None)
    b = broker_factory({"broker.max_connections": "20", "auth.users": users, "auth.cache": "false"})
    stranger = [silent(b.port, "127.0.0.2") for _ in range(15)]
    wait_accepted(b, 1 + 15)
    legit = []
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", b.port), timeout=30, source_address=("127.0.0.3", 0))
        s.sendall(b"CONNECT\naccept-version:1.2\nhost:x\nlogin:alice\npasscode:secret\n\n\0")
        legit.append(s)
    for s in legit:
        assert s.recv(4096).startswith(b"CONNECTED\n")
    assert sum(closed(s) for s in stranger[:3]) == 3
