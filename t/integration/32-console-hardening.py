"""The console cannot be locked out or tricked: a request has a deadline
from its first byte to its last, connections that never authenticate
cannot take the slots kept for those that do, the Host header must name
this console (DNS rebinding), Authorization is parsed strictly and the
Content-Type of an action must be application/json."""
import base64
import http.client
import json
import socket
import time

import pytest

from stompd_test import read_to_the_end

GOOD = "Basic " + base64.b64encode(b"admin:admin").decode()


def ask(b, method="GET", path="/api/status", headers=None, body=None, timeout=10):
    """One request over a raw socket: (status, body)."""
    h = {"Host": "127.0.0.1:%d" % b.http_port, "Authorization": GOOD, "Connection": "close"}
    h.update(headers or {})
    lines = ["%s %s HTTP/1.1" % (method, path)]
    for k, v in h.items():
        if isinstance(v, list):
            lines += ["%s: %s" % (k, x) for x in v]
        elif v is not None:
            lines.append("%s: %s" % (k, v))
    data = (body or "").encode()
    if body is not None:
        lines.append("Content-Length: %d" % len(data))
    s = socket.create_connection(("127.0.0.1", b.http_port), timeout=timeout)
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        out += chunk
    s.close()
    head, _, rest = out.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


def read_until_closed(s, deadline):
    out = b""
    while time.time() < deadline:
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            continue
        if not chunk:
            return out, True
        out += chunk
    return out, False


def test_a_trickled_request_gets_408_at_its_deadline(broker_factory):
    """One byte every 0.3 s would need 30 s for this request; the deadline
    (2 s) ends it, although every byte restarted the old idle timer."""
    b = broker_factory({"http.request_timeout": "2s"})
    req = b"GET /api/status HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", b.http_port), timeout=0.2)
    start = time.time()
    closed = False
    out = b""
    for byte in req:
        try:
            s.sendall(bytes([byte]))
        except OSError:
            closed = True
            break
        more, closed = read_until_closed(s, time.time() + 0.3)
        out += more
        if closed or out:
            break
    if not closed:
        more, closed = read_until_closed(s, time.time() + 20)
        out += more
    took = time.time() - start
    s.close()
    assert out.startswith(b"HTTP/1.1 408"), out
    assert b"http.request_timeout" in out
    assert took < 20, took


def test_a_refused_body_does_not_cost_the_client_its_answer(broker_factory):
    """A client that sends the whole of a body too large reads the 413 and
    then the end of the stream: the console reads and drops the rest before
    it closes, so no reset (which could cost the client the answer) comes."""
    b = broker_factory({"http.max_request": "4KiB"})
    body = b"[" + b" " * (1 << 20) + b"]"
    head = ("POST /api/send HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: %s\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (b.http_port, GOOD, len(body)))
    s = socket.create_connection(("127.0.0.1", b.http_port), timeout=10)
    s.sendall(head.encode() + body)
    out = read_to_the_end(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 413"), out
    assert b"http.max_request" in out


def test_slow_clients_cannot_lock_out_the_administrator(broker_factory):
    """All but the reserved slots held by connections that never finish a
    request: the administrator's request is still answered (the oldest
    unauthenticated connection makes room), and the slots it holds after
    authenticating are not taken from it."""
    b = broker_factory({"http.max_connections": "12", "http.reserved_connections": "4",
                        "http.request_timeout": "60s"})
    holders = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", b.http_port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Trickle: a")
        holders.append(s)
    for _ in range(3):
        status, body = ask(b)
        assert status == 200, body
        assert json.loads(body)["role"] == "standalone"
    # a kept-alive administrator's connection keeps its slot while slow
    # clients keep coming
    c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=10)
    c.request("GET", "/api/status", headers={"Authorization": GOOD})
    r = c.getresponse()
    assert r.status == 200
    r.read()
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", b.http_port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Trickle: a")
        holders.append(s)
    c.request("GET", "/api/status", headers={"Authorization": GOOD})
    r = c.getresponse()
    assert r.status == 200
    r.read()
    c.close()
    for s in holders:
        s.close()
    assert b.running()


@pytest.mark.parametrize("host,want", [
    ("127.0.0.1:{port}", 200), ("localhost:{port}", 200), ("localhost", 200), ("[::1]:{port}", 200),
    ("console.example:{port}", 200), ("a.b.example", 200),
    ("evil.example:{port}", 421), ("example", 421), ("console.example.evil.net", 421),
])
def test_host_must_name_this_console(broker_factory, host, want):
    b = broker_factory({"http.hosts": "console.example, *.b.example"})
    status, body = ask(b, headers={"Host": host.format(port=b.http_port)})
    assert status == want, body
    if want == 421:
        assert b"http.hosts" in body


def test_any_host_when_asked(broker_factory):
    b = broker_factory({"http.hosts": "*"})
    assert ask(b, headers={"Host": "anything.example"})[0] == 200


def test_one_host_and_one_authorization(broker_factory):
    b = broker_factory()
    status, body = ask(b, headers={"Host": ["localhost", "evil.example"]})
    assert status == 400 and b"Host" in body
    status, body = ask(b, headers={"Authorization": [GOOD, "Basic eDp5"]})
    assert status == 400 and b"Authorization" in body
    assert ask(b)[0] == 200


@pytest.mark.parametrize("value", [
    GOOD + "garbage", GOOD + "=", GOOD + " x", GOOD[:-1], "Basic  " + GOOD[6:], "Basic",
    "Basic " + base64.b64encode(b"admin:admin").decode().rstrip("=") + "!", "Bearer " + GOOD[6:],
])
def test_authorization_is_parsed_strictly(broker_factory, value):
    b = broker_factory()
    assert ask(b, headers={"Authorization": value})[0] == 401, value


def test_padding_rules(broker_factory):
    # "admins:pwx" is 10 bytes: two '=' of padding, which must be there
    b = broker_factory({"http.admin_user": "admins", "http.admin_password": "pwx"})
    cred = base64.b64encode(b"admins:pwx").decode()
    assert cred.endswith("==")
    assert ask(b, headers={"Authorization": "Basic " + cred})[0] == 200
    assert ask(b, headers={"Authorization": "basic " + cred})[0] == 200
    assert ask(b, headers={"Authorization": "Basic " + cred.rstrip("=")})[0] == 401


@pytest.mark.parametrize("ctype,want", [
    ("application/json", 200), ("application/json; charset=utf-8", 200), ("Application/JSON", 200),
    ("application/jsonx", 415), ("application/json-patch+json", 415), ("text/json", 415), ("text/plain", 415),
])
def test_content_type_is_matched_exactly(broker_factory, ctype, want):
    b = broker_factory()
    status, body = ask(b, "POST", "/api/send", headers={"Content-Type": ctype},
                       body=json.dumps({"destination": "/queue/x", "body": "hi"}))
    assert status == want, body


def raw(b, data, timeout=10):
    """Bytes to the console, then everything it answers until it closes
    (None if it is still open at the deadline)."""
    s = socket.create_connection(("127.0.0.1", b.http_port), timeout=1)
    s.sendall(data)
    out, closed = read_until_closed(s, time.time() + timeout)
    s.close()
    return out if closed else None


def test_an_upgrade_request_is_answered_and_the_connection_closed(broker_factory):
    """http-parser reads nothing after a request asking for Upgrade (or a
    CONNECT): a request pipelined after one waited for the idle timeout
    (30 s) with no answer (helper-69). The console speaks no other
    protocol: it answers as HTTP and closes."""
    b = broker_factory()
    host = "Host: 127.0.0.1:%d\r\n" % b.http_port
    out = raw(b, ("GET /healthz HTTP/1.1\r\n" + host + "Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                  "GET /healthz HTTP/1.1\r\n" + host + "\r\n").encode())
    assert out is not None, "the connection stayed open"
    assert out.startswith(b"HTTP/1.1 200") and b"Connection: close" in out, out
    out = raw(b, ("CONNECT 127.0.0.1:1 HTTP/1.1\r\n" + host + "\r\n").encode())
    assert out is not None and out.split()[1].startswith(b"4"), out
    assert ask(b)[0] == 200


def test_trailer_fields_are_not_the_requests_headers(broker_factory):
    """A chunked body's trailer named Authorization, Content-Type and Host
    for the request, past a proxy that filters those headers (helper-69)."""
    b = broker_factory()
    body = json.dumps({"destination": "/queue/trailer", "body": "hi"}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n" % (len(body), body)
    head = ("POST /api/send HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n" % b.http_port).encode()
    out = raw(b, head + chunked + ("Authorization: %s\r\nContent-Type: application/json\r\n\r\n" % GOOD).encode())
    assert out is not None and out.startswith(b"HTTP/1.1 401"), out
    head = ("POST /api/send HTTP/1.1\r\nAuthorization: %s\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n\r\n" % GOOD).encode()
    out = raw(b, head + chunked + ("Host: 127.0.0.1:%d\r\n\r\n" % b.http_port).encode())
    assert out is not None and out.startswith(b"HTTP/1.1 400") and b"Host" in out, out
    # headers as headers, and a harmless trailer, still work
    head = ("POST /api/send HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: %s\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n\r\n" % (b.http_port, GOOD)).encode()
    out = raw(b, head + chunked + b"X-Checksum: 1\r\n\r\n")
    assert out is not None and out.startswith(b"HTTP/1.1 200"), out


def test_a_chunk_larger_than_a_body_may_be_is_refused_at_its_size(broker_factory):
    """A chunk announced larger than http.max_request waited for its bytes
    to come before the 413 (helper-103); one too large for http-parser to
    read was "invalid character in content-length header". Both are 413
    at the size line now, and the connection closes."""
    b = broker_factory()
    head = ("POST /api/send HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: %s\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/json\r\n\r\n" % (b.http_port, GOOD)).encode()
    for size in (b"10001", b"10000000", b"FFFFFFFFFFFFFFFFFFFF"):  # 64 KiB + 1 is over the default limit
        out = raw(b, head + size + b"\r\n", timeout=10)
        assert out is not None, size  # answered and closed without the chunk's bytes
        assert out.startswith(b"HTTP/1.1 413 ") and b"larger than http.max_request" in out, (size, out)
    # a chunk within the limit still goes
    body = json.dumps({"destination": "/queue/chunked", "body": "ok"}).encode()
    out = raw(b, head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) + b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
              b"Connection: close\r\n\r\n" % b.http_port)
    assert out is not None and out.startswith(b"HTTP/1.1 200 "), out


def test_other_transfer_codings_and_http_versions_are_refused(broker_factory):
    """A body in gzip then chunked was decoded as plain chunked, and an
    HTTP/2.0 request line was served as HTTP/1.1 (helper-81): 501 and 505
    now, the connection closed; chunked alone, in any case, and HTTP/1.0
    go on."""
    b = broker_factory()
    body = json.dumps({"destination": "/queue/te", "body": "hi"}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)

    def post(te, version="HTTP/1.1"):
        head = ("POST /api/send %s\r\nHost: 127.0.0.1:%d\r\nAuthorization: %s\r\nTransfer-Encoding: %s\r\n"
                "Content-Type: application/json\r\nConnection: close\r\n\r\n" % (version, b.http_port, GOOD, te))
        return raw(b, head.encode() + chunked)

    for te in ("gzip, chunked", "identity, chunked"):
        out = post(te)
        assert out is not None and out.startswith(b"HTTP/1.1 501") and b"chunked" in out, out
    for te in ("chunked", "Chunked", " chunked "):
        out = post(te)
        assert out is not None and out.startswith(b"HTTP/1.1 200"), out
    out = raw(b, ("GET /api/status HTTP/2.0\r\nHost: 127.0.0.1:%d\r\nAuthorization: %s\r\n\r\n"
                  % (b.http_port, GOOD)).encode())
    assert out is not None and out.startswith(b"HTTP/1.1 505"), out
    out = raw(b, ("GET /api/status HTTP/1.0\r\nAuthorization: %s\r\n\r\n" % GOOD).encode())
    assert out is not None and out.startswith(b"HTTP/1.1 200"), out


def test_oversized_heads_get_414_or_431_at_http_max_request(broker_factory):
    """Past http-parser's own 80 KiB cap, a long URL or header was a 400
    'malformed', and an http.max_request above it was not honoured
    (helper-69)."""
    b = broker_factory()
    status, body = ask(b, path="/api/status?" + "a" * 100000)
    assert status == 414, body
    status, body = ask(b, headers={"X-Big": "a" * 100000})
    assert status == 431 and b"http.max_request" in body, body
    big = broker_factory({"http.max_request": "1MiB"})
    status, body = ask(big, headers={"X-Big": "a" * 200000})
    assert status == 200, body
    status, body = ask(big, headers={"X-Big": "a" * 1100000})
    assert status == 431, body


def test_an_authorization_header_too_long_to_read_is_431(broker_factory):
    """It was cut at 511 bytes and then failed as a wrong password."""
    b = broker_factory()
    value = "Basic " + base64.b64encode(b"admin:" + b"p" * 600).decode()
    status, body = ask(b, headers={"Authorization": value})
    assert status == 431 and b"Authorization" in body, body
    assert ask(b)[0] == 200


def test_a_json_body_naming_a_key_twice_is_refused(broker_factory):
    """The last one won: a purge body naming two destinations purged the
    second (helper-69)."""
    b = broker_factory()
    status, body = ask(b, "POST", "/api/send", headers={"Content-Type": "application/json"},
                       body='{"destination": "/queue/one", "destination": "/queue/two", "body": "x"}')
    assert status == 400 and b"duplicate" in body, body


def test_a_client_that_does_not_read_its_answers_is_not_read_either(broker_factory):
    """Pipelined requests were all answered into memory while the client
    read nothing: 16 MB of /healthz requests took 500 MB (helper-69).
    Answers past the connection's output limit stop the reading, so the
    requests wait in the client's socket, and others are served."""
    import re
    b = broker_factory()

    def rss():
        with open("/proc/%d/status" % b.proc.pid) as st:
            return int(re.search(r"VmRSS:\s+(\d+) kB", st.read()).group(1)) * 1024
    before = rss()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", b.http_port))
    s.settimeout(5)
    req = ("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % b.http_port).encode() * 1000
    sent = 0
    try:
        while sent < 16 << 20:
            s.sendall(req)
            sent += len(req)
    except socket.timeout:
        pass
    assert sent < 16 << 20, "the broker read 16 MB of requests whose answers nobody took"
    assert rss() - before < 64 << 20, rss() - before
    assert ask(b, path="/healthz", timeout=10)[0] == 200
    s.close()
    assert b.running()


def test_a_client_that_half_closes_gets_every_answer(broker_factory):
    """A client that pipelines its requests and shuts its side (nc -N, a
    script) lost the answers still queued when the broker read its end:
    the console closed at once (helper-71). It now answers what it read
    and closes once the answers are written. Small receive buffers keep
    answers queued in the broker."""
    import threading
    b = broker_factory()
    n = 30000
    req = ("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % b.http_port).encode()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", b.http_port))
    s.settimeout(30)

    def send():
        s.sendall(req * n)
        s.shutdown(socket.SHUT_WR)
    t = threading.Thread(target=send)
    t.start()
    out, closed = read_until_closed(s, time.time() + 60)
    t.join()
    s.close()
    assert closed
    assert out.count(b"HTTP/1.1 200") == n, out.count(b"HTTP/1.1 200")
    # a deferred answer (a persistent send waits for its journal entry)
    s = socket.create_connection(("127.0.0.1", b.http_port), timeout=30)
    body = json.dumps({"destination": "/queue/halfclose", "body": "x" * 50000, "persistent": True}).encode()
    s.sendall(("POST /api/send HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: %s\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (b.http_port, GOOD, len(body))).encode()
              + body + req * 200)
    s.shutdown(socket.SHUT_WR)
    out, closed = read_until_closed(s, time.time() + 60)
    s.close()
    assert closed and out.startswith(b"HTTP/1.1 200") and out.count(b"HTTP/1.1 200") == 201, out[:300]


@pytest.mark.parametrize("origin,want", [
    (None, 200), ("http://127.0.0.1:{port}", 200), ("https://127.0.0.1:{port}", 200),
    ("http://evil.example", 403), ("null", 403), ("http://127.0.0.1:{port}.evil.example", 403),
    ("http://203.0.113.5", 403), ("http://[2001:db8::1]:{port}", 403), ("http://127.0.0.1:1", 403),
])
def test_an_action_from_another_site_is_refused(broker_factory, origin, want):
    """A page of another site can make a browser send a request with the
    Basic credentials it keeps; only application/json bodies stopped such
    an action (helper-94). An action whose Origin names another host than
    this console's is refused too (behind a proxy that speaks https, the
    console's own host still is)."""
    b = broker_factory()
    h = {"Content-Type": "application/json"}
    if origin:
        h["Origin"] = origin.format(port=b.http_port)
    status, body = ask(b, "POST", "/api/send", headers=h, body=json.dumps({"destination": "/queue/x", "body": "hi"}))
    assert status == want, body
    if want == 403:
        assert b"from another site" in body
    # a GET is answered whatever its Origin (no action, and no CORS headers)
    assert ask(b, headers={"Origin": "http://evil.example"})[0] == 200


def test_one_cache_control_on_every_answer(broker_factory):
    """/console.js and /console.css said both no-store and max-age=0."""
    b = broker_factory()
    for path in ("/console.js", "/console.css", "/", "/api/status"):
        s = socket.create_connection(("127.0.0.1", b.http_port), timeout=10)
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: %s\r\nConnection: close\r\n\r\n"
                   % (path, b.http_port, GOOD)).encode())
        head = read_to_the_end(s).partition(b"\r\n\r\n")[0].decode().lower()
        s.close()
        assert head.count("cache-control:") == 1 and "cache-control: no-store" in head, (path, head)
