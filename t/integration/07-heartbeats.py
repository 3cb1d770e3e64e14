"""Heart-beats both ways, per the specification's negotiation."""
import socket
import time

from stompd_test import Client


def test_server_sends_heart_beats(broker_factory):
    b = broker_factory({"stomp.heartbeat_min": "50ms"})
    c = Client(b.port)
    f = c.connect("1.2", {"heart-beat": "0,100"})
    assert f["heart-beat"] == "100,0"
    c.sock.settimeout(2)
    start = time.time()
    beats = 0
    data = c.buf
    while time.time() - start < 1.0:
        chunk = c.sock.recv(100)
        assert chunk.strip(b"\n") == b"", chunk
        beats += chunk.count(b"\n")
    assert 6 <= beats <= 14, beats   # about one every 100 ms


def test_silent_client_is_dropped(broker_factory):
    b = broker_factory({"stomp.heartbeat_min": "50ms"})
    c = Client(b.port)
    c.connect("1.2", {"heart-beat": "100,0"})
    time.sleep(0.5)   # 150% of 100 ms has long passed
    c.sock.settimeout(1)
    assert c.sock.recv(100) == b""
    assert b.wait_log("no heart-beat")


def test_client_heart_beats_keep_it_alive(broker_factory):
    b = broker_factory({"stomp.heartbeat_min": "50ms"})
    c = Client(b.port)
    c.connect("1.2", {"heart-beat": "400,0"})
    for _ in range(12):      # 1.2 s: three times the interval, beating every 100 ms
        time.sleep(0.1)
        c.send_raw(b"\n")
    c.receipt("SEND", {"destination": "/queue/hb"}, "alive", b"x")


def test_heart_beats_ignored_for_1_0(broker_factory):
    b = broker_factory({"stomp.heartbeat_min": "50ms"})
    c = Client(b.port)
    c.send("CONNECT", {"heart-beat": "100,100"})
    f = c.recv()
    assert f["version"] == "1.0" and f["heart-beat"] == "0,0", f   # none, and CONNECTED says so
    time.sleep(0.4)
    c.version = "1.0"
    c.receipt("SEND", {"destination": "/queue/hb10"}, "alive", b"x")


# The broker drops a client silent for stomp.heartbeat_grace_pct (150%) of
# the negotiated interval. Intervals of 1.5 s keep the margins wide (300 ms
# or more) on a busy machine.

def test_late_heart_beats_within_grace_keep_it_alive(broker_factory):
    b = broker_factory({"stomp.heartbeat_min": "50ms"})
    c = Client(b.port)
    f = c.connect("1.2", {"heart-beat": "1500,0"})
    assert f["heart-beat"] == "0,1500"
    t0 = time.time()
    for k in range(1, 4):          # every 1.95 s: 1.3 times the interval
        time.sleep(max(0, t0 + 1.95 * k - time.time()))
        c.send_raw(b"\n")
    c.receipt("SEND", {"destination": "/queue/late"}, "alive", b"x")
    assert "no heart-beat" not in b.log()


def test_silent_client_is_dropped_after_the_grace(broker_factory):
    b = broker_factory({"stomp.heartbeat_min": "50ms"})
    c = Client(b.port)
    t0 = time.time()
    c.connect("1.2", {"heart-beat": "1500,0"})
    c.sock.settimeout(8)
    assert c.sock.recv(100) == b""
    # never before 150% of 1.5 s; the upper bound only has to be finite
    assert 2.2 <= time.time() - t0 < 8
    assert b.wait_log("no heart-beat")
