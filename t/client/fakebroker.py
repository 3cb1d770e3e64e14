"""A scripted STOMP broker for the client library's tests.

It plays what a real stompd will not do on demand: answer CONNECTED with an
older version, go silent after CONNECTED, swallow SENDs and drop the
connection. It records every frame of every connection so a test can check
what the client sent, byte for byte. One listening socket on a free
loopback port; connections are served one after the other, the n-th by
the n-th behaviour (the last one repeats).
"""
import socket
import threading
import time

from stompd_test import parse_frame


def parse_frames(buf, version):
    """Complete frames at the start of buf; returns (frames, rest)."""
    frames = []
    while True:
        frame, buf = parse_frame(buf, version)
        if frame is None:
            return frames, buf
        frames.append(frame)


def encode(command, headers, body=b""):
    head = command + "\n" + "".join("%s:%s\n" % (k, v) for k, v in headers) + "\n"
    return head.encode() + body + b"\0"


class Behaviour:
    """How to serve one connection.

    version:     CONNECTED's version header (None: leave it out, as 1.0 does)
    heart_beat:  CONNECTED's heart-beat header (None: leave it out)
    silent:      after CONNECTED, answer nothing more (and send no beats)
    receipt_sends: answer SEND receipts (other frames are always receipted)
    close_after_sends: drop the connection after this many SENDs
    mute:        never answer anything, CONNECT included (a paused broker
                 whose kernel still accepts)
    close_after_subscribe: drop the connection this many seconds after a
                 SUBSCRIBE is answered
    refuse:      answer the first frame after CONNECTED with an ERROR of this
                 message, then close (a broker refusing what a session replays)
    hold:        a threading.Event: SEND receipts wait until it is set (a
                 slow quorum), then go out in order
    message:     after a SUBSCRIBE, send a MESSAGE with these headers (a
                 list of pairs; "{id}" in a value is the subscription's id)
    """

    def __init__(self, version="1.2", heart_beat=None, silent=False, receipt_sends=True,
                 close_after_sends=None, mute=False, close_after_subscribe=None, refuse=None, hold=None,
                 message=None):
        self.message = message
        self.hold = hold
        self.close_after_subscribe = close_after_subscribe
        self.refuse = refuse
        self.version = version
        self.heart_beat = heart_beat
        self.silent = silent
        self.receipt_sends = receipt_sends
        self.close_after_sends = close_after_sends
        self.mute = mute


class FakeBroker:
    def __init__(self, *behaviours):
        self.behaviours = list(behaviours) or [Behaviour()]
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = []       # one list of received frames per connection
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def url(self):
        return "tcp://127.0.0.1:%d" % self.port

    def _serve(self):
        self.sock.settimeout(0.1)
        n = 0
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            b = self.behaviours[min(n, len(self.behaviours) - 1)]
            n += 1
            frames = []
            self.connections.append(frames)
            try:
                self._session(conn, b, frames)
            except OSError:
                pass
            finally:
                conn.close()

    def _session(self, conn, b, frames):
        conn.settimeout(0.1)
        buf = b""
        version = "1.0"
        sends = 0
        held = []
        while not self.stopping:
            if held and b.hold.is_set():
                for rid in held:
                    conn.sendall(encode("RECEIPT", [("receipt-id", rid)]))
                held = []
            try:
                data = conn.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return
            buf += data
            got, buf = parse_frames(buf, version)
            for f in got:
                frames.append(f)
                if b.mute:
                    if f.command == "DISCONNECT":
                        return
                    continue
                if f.command in ("CONNECT", "STOMP"):
                    h = [("server", "fakebroker/1"), ("session", "1")]
                    if b.version:
                        h.insert(0, ("version", b.version))
                        version = b.version
                    if b.heart_beat:
                        h.append(("heart-beat", b.heart_beat))
                    conn.sendall(encode("CONNECTED", h))
                    continue
                if b.silent:
                    continue
                if b.refuse:
                    conn.sendall(encode("ERROR", [("message", b.refuse)]))
                    return
                if f.command == "SEND":
                    sends += 1
                    if not b.receipt_sends:
                        if b.close_after_sends and sends >= b.close_after_sends:
                            return
                        continue
                rid = f.get("receipt")
                if rid is not None and f.command == "SEND" and b.hold and (held or not b.hold.is_set()):
                    held.append(rid)
                elif rid is not None:
                    conn.sendall(encode("RECEIPT", [("receipt-id", rid)]))
                if f.command == "SUBSCRIBE" and b.message is not None:
                    conn.sendall(encode("MESSAGE", [(k, v.replace("{id}", f.get("id") or ""))
                                                    for k, v in b.message], b"x"))
                if f.command == "SUBSCRIBE" and b.close_after_subscribe is not None:
                    time.sleep(b.close_after_subscribe)
                    return
                if f.command == "DISCONNECT":
                    return
                if b.close_after_sends and sends >= b.close_after_sends:
                    return

    def wait_connections(self, n, timeout=10.0):
        deadline = time.time() + timeout
        while len(self.connections) < n and time.time() < deadline:
            time.sleep(0.02)
        return len(self.connections) >= n

    def close(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        self.thread.join(timeout=5)
