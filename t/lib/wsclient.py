"""A raw WebSocket client (RFC 6455) for the WebSocket tests: it writes
the upgrade request and every frame byte for byte (masked or not, split
or not, as a test asks) and reads the server's frames back, checking the
rules a server must keep (server frames unmasked, no reserved bits)."""
import base64
import hashlib
import os
import socket
import struct
import time

from stompd_test import encode_frame, parse_frame

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
    """One frame's bytes; length overrides the length field (lies)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if mask:
        key = os.urandom(4)
        head += key
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + payload


def upgrade_request(port, path="/", protocols=None, origin=None, key=None, extra=None, version="13",
                    host=None):
    key = key or base64.b64encode(os.urandom(16)).decode()
    lines = ["GET %s HTTP/1.1" % path, "Host: %s" % (host or "127.0.0.1:%d" % port), "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: %s" % key, "Sec-WebSocket-Version: %s" % version]
    if protocols:
        lines.append("Sec-WebSocket-Protocol: %s" % protocols)
    if origin:
        lines.append("Origin: %s" % origin)
    lines += extra or []
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


def read_http_response(sock, timeout=10.0):
    """(status, {header: value}, body bytes so far, bytes after the head)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        d = sock.recv(65536)
        if not d:
            break
        data += d
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest


class WS:
    """A WebSocket connection to stompd, speaking STOMP in messages."""

    def __init__(self, port, protocols="v12.stomp", origin=None, timeout=10.0, rcvbuf=None, connect=True):
        self.port = port
        self.timeout = timeout
        if rcvbuf:
            self.sock = socket.socket()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect(("127.0.0.1", port))
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""        # raw bytes not parsed into frames yet
        self.stomp = b""      # payload of data messages not parsed into STOMP frames yet
        self.version = "1.2"
        self.messages = []    # (opcode, payload) of every data message read
        self.pongs = []
        self.close_code = None
        self.close_reason = None
        if connect:
            req, key = upgrade_request(port, protocols=protocols, origin=origin)
            self.sock.sendall(req)
            status, headers, rest = read_http_response(self.sock, timeout)
            assert status == 101, (status, headers, rest)
            assert headers.get("sec-websocket-accept") == accept_for(key), headers
            assert headers.get("upgrade", "").lower() == "websocket", headers
            self.protocol = headers.get("sec-websocket-protocol")
            self.buf = rest

    # ---------------------------------------------------------------- out
    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(frame(opcode, payload, **kw))

    def send_text(self, payload):
        self.send_frame(TEXT, payload)

    def send_stomp(self, command, headers=None, body=b"", opcode=TEXT, content_length=None):
        self.send_frame(opcode, encode_frame(command, headers, body, self.version, content_length))

    def close(self, code=1000, reason=b""):
        self.send_frame(CLOSE, struct.pack(">H", code) + reason)

    # ---------------------------------------------------------------- in
    def _fill(self, deadline):
        remaining = deadline - time.time()
        if remaining <= 0:
            raise TimeoutError("nothing within the timeout; have %r / %r" % (self.buf[:100], self.stomp[:200]))
        self.sock.settimeout(remaining)
        d = self.sock.recv(65536)
        if not d:
            raise ConnectionError("connection closed; have %r" % self.buf[:100])
        self.buf += d

    def recv_frame(self, timeout=None):
        """The next frame: (fin, opcode, payload)."""
        deadline = time.time() + (timeout if timeout is not None else self.timeout)
        while True:
            b = self.buf
            if len(b) >= 2:
                assert b[0] & 0x70 == 0, "reserved bits set by the server"
                assert b[1] & 0x80 == 0, "the server masked a frame"
                n, off = b[1] & 0x7F, 2
                if n == 126 and len(b) >= 4:
                    n, off = struct.unpack(">H", b[2:4])[0], 4
                elif n == 127 and len(b) >= 10:
                    n, off = struct.unpack(">Q", b[2:10])[0], 10
                if (b[1] & 0x7F) < 126 or off > 2:
                    if len(b) >= off + n:
                        self.buf = b[off + n:]
                        return bool(b[0] & 0x80), b[0] & 0x0F, b[off:off + n]
            self._fill(deadline)

    def recv_message(self, timeout=None):
        """The next data or close message: (opcode, payload). Pongs are
        recorded in .pongs; a close sets .close_code."""
        opcode, parts = None, []
        while True:
            fin, op, payload = self.recv_frame(timeout)
            if op == PONG:
                self.pongs.append(payload)
                continue
            if op == PING:
                continue
            if op == CLOSE:
                self.close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                self.close_reason = payload[2:]
                return CLOSE, payload
            if op != CONT:
                opcode = op
            parts.append(payload)
            if fin:
                msg = b"".join(parts)
                self.messages.append((opcode, msg))
                return opcode, msg

    def recv_stomp(self, timeout=None):
        """The next STOMP frame (heart-beat EOLs skipped); each data message
        must hold whole frames."""
        while True:
            f, self.stomp = parse_frame(self.stomp, self.version)
            if f is not None:
                return f
            op, payload = self.recv_message(timeout)
            if op == CLOSE:
                raise ConnectionError("close %s %r before a frame" % (self.close_code, self.close_reason))
            self.stomp += payload

    def connect_stomp(self, version="1.2", headers=None):
        h = {"accept-version": version, "host": "localhost"}
        h.update(headers or {})
        self.send_stomp("CONNECT", h)
        f = self.recv_stomp()
        assert f.command == "CONNECTED", f
        self.version = f.get("version", "1.0")
        return f

    def receipt(self, command, headers, rid, body=b""):
        h = dict(headers)
        h["receipt"] = rid
        self.send_stomp(command, h, body)
        f = self.recv_stomp()
        assert f.command == "RECEIPT" and f["receipt-id"] == rid, f
        return f

    def expect_close(self, code, timeout=None):
        """The server's close frame with this code (data before it is
        skipped); returns its reason."""
        while True:
            op, payload = self.recv_message(timeout)
            if op == CLOSE:
                assert self.close_code == code, (self.close_code, self.close_reason)
                return self.close_reason

    def expect_eof(self, timeout=10.0):
        """The server closes the TCP connection (bytes before are kept)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.time()))
            try:
                d = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return
            except socket.timeout:
                break
            if not d:
                return
            self.buf += d
        raise AssertionError("connection still open; buffered %r" % self.buf[:200])

    def drop(self):
        try:
            self.sock.close()
        except OSError:
            pass


def ws_connected(port, version="1.2", **kw):
    w = WS(port, **kw)
    w.connect_stomp(version)
    return w
