"""A real browser client: headless Chromium (Debian's) loads a small page
served by this test, which uses @stomp/stompjs (installed from the npm
registry by this test into the build tree, never committed) to connect to
stompd over WebSocket, subscribe, send and receive, with heart-beats,
frames split over several messages (stompjs's splitLargeFrames) and a
binary body; a plain TCP client talks to it through the broker. The page
reports what it saw to the test's HTTP server.

Without Chromium, npm or the npm registry the test cannot run: it is
skipped with the reason (make check then reports SKIP), except under
contrib/run-tests (CI), which sets STOMPD_TEST_EVERYTHING=1 after
contrib/setup --test installed both: there a missing piece fails it."""
import base64
import fcntl
import http.server
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

from stompd_test import BUILDDIR, connected, free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]
STOMPJS_VERSION = "7"
NPM_DIR = os.path.join(BUILDDIR, "t", "npm")
BUNDLE = os.path.join(NPM_DIR, "node_modules", "@stomp", "stompjs", "bundles", "stomp.umd.min.js")


def cannot_run(reason):
    """Skip, saying why, unless every test must run (contrib/run-tests)."""
    if os.environ.get("STOMPD_TEST_EVERYTHING") == "1":
        pytest.fail(reason + " (STOMPD_TEST_EVERYTHING=1: contrib/run-tests runs every test)")
    pytest.skip(reason)


def stompjs_bundle():
    """@stomp/stompjs's browser bundle, installed once per build tree with
    npm (the registry is the only source: no copy is vendored)."""
    os.makedirs(NPM_DIR, exist_ok=True)
    with open(os.path.join(NPM_DIR, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(BUNDLE):
            npm = shutil.which("npm")
            if not npm:
                cannot_run("npm is missing: run contrib/setup --test")
            r = subprocess.run([npm, "install", "--prefix", NPM_DIR, "--no-audit", "--no-fund", "--no-package-lock",
                                "--loglevel=error", "@stomp/stompjs@" + STOMPJS_VERSION],
                               capture_output=True, timeout=600)
            if r.returncode != 0 or not os.path.exists(BUNDLE):
                cannot_run("npm could not install @stomp/stompjs (is the npm registry reachable?): " +
                           (r.stdout + r.stderr).decode()[-3000:])
    with open(BUNDLE, "rb") as f:
        return f.read()


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>stompd over WebSocket</title>
<script src="/stomp.umd.min.js"></script></head>
<body><p id="state">starting</p>
<script>
function report(k, v) {
  fetch('/result', {method: 'POST', body: JSON.stringify({k: k, v: v})});
  document.getElementById('state').textContent = k;
}
const client = new StompJs.Client({
  brokerURL: 'ws://127.0.0.1:%(ws_port)d/stomp',
  connectHeaders: {login: 'browser', passcode: 'secret'},
  heartbeatIncoming: 400,
  heartbeatOutgoing: 400,
  splitLargeFrames: true,          // frames over 1 KiB go as several WebSocket messages
  maxWebSocketChunkSize: 1024,
  reconnectDelay: 0,
});
client.onConnect = function (frame) {
  report('connected', {version: frame.headers['version'], heartbeat: frame.headers['heart-beat'],
                       protocol: client.webSocket.protocol});
  client.subscribe('/topic/browser.in', function (msg) {
    if (msg.body === 'quit') { client.deactivate(); return; }
    client.publish({destination: '/queue/browser.out', body: 'echo:' + msg.body,
                    headers: {'x-from': 'browser'}});
  });
  client.subscribe('/queue/browser.self', function (msg) {
    report('large', {length: msg.body.length, head: msg.body.slice(0, 5), tail: msg.body.slice(-3)});
    msg.ack();
  }, {ack: 'client-individual'});
  client.subscribe('/queue/browser.bin', function (msg) {
    report('binary', Array.from(msg.binaryBody));
  });
  client.publish({destination: '/queue/browser.self', body: 'start' + 'L'.repeat(100000) + 'end'});
  client.publish({destination: '/queue/browser.bin', binaryBody: new Uint8Array([0, 1, 2, 255, 0, 10])});
  const receipt = 'ready-1';
  client.watchForReceipt(receipt, function () { report('subscribed', true); });
  client.publish({destination: '/queue/browser.dummy', body: 'x', headers: {receipt: receipt}});
};
client.onStompError = function (f) { report('stomp-error', f.headers['message']); };
client.onWebSocketClose = function (e) { report('closed', {code: e.code, clean: e.wasClean}); };
client.activate();
</script></body></html>
"""


class Page(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/":
            body, ctype = self.server.page, "text/html; charset=utf-8"
        elif self.path == "/stomp.umd.min.js":
            body, ctype = self.server.bundle, "application/javascript"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.results.put(json.loads(data))
        self.send_response(204)
        self.end_headers()


class Results:
    def __init__(self, q):
        self.q = q
        self.seen = {}

    def wait(self, key, timeout=60):
        deadline = time.time() + timeout
        while key not in self.seen:
            remaining = deadline - time.time()
            assert remaining > 0, "the page did not report %r; it reported %r" % (key, self.seen)
            try:
                r = self.q.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen[r["k"]] = r["v"]
        return self.seen[key]


def http_get(b, path):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (b.http_port, path))
    req.add_header("Authorization", "Basic " + base64.b64encode(b"admin:admin").decode())
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def console_connections(b):
    return json.loads(http_get(b, "/api/connections"))


def test_stompjs_in_chromium(broker_factory):
    if not os.access(CHROMIUM, os.X_OK):
        cannot_run("chromium is missing: run contrib/setup --test")
    bundle = stompjs_bundle()
    ws_port, page_port = free_port(), free_port()
    # the browser's 400 ms beats get three periods of grace: a loaded
    # machine's renderer timers fire late
    b = broker_factory({"stomp.ws_listen": "127.0.0.1:%d" % ws_port,
                        "stomp.ws_origins": "http://127.0.0.1:%d" % page_port,
                        "stomp.heartbeat_grace_pct": "300"})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", page_port), Page)
    srv.page = (PAGE % {"ws_port": ws_port}).encode()
    srv.bundle = bundle
    srv.results = queue.Queue()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    results = Results(srv.results)
    tcp = connected(b.port)
    tcp.receipt("SUBSCRIBE", {"id": "out", "destination": "/queue/browser.out"}, "s")
    profile = tempfile.mkdtemp(prefix="stompd-chromium-")
    browser = subprocess.Popen([CHROMIUM] + FLAGS + ["--user-data-dir=" + profile,
                                                     "http://127.0.0.1:%d/" % page_port],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        c = results.wait("connected")
        assert c["version"] == "1.2" and c["protocol"] == "v12.stomp", c
        assert c["heartbeat"] == "400,400", c
        assert results.wait("subscribed") is True
        # a frame of 100 KB sent as 1 KiB messages, back in one piece
        assert results.wait("large") == {"length": 100008, "head": "start", "tail": "end"}
        metrics = http_get(b, "/metrics").decode()
        ws_in = int(re.search(r"^stompd_ws_messages_in_total (\d+)$", metrics, re.M).group(1))
        assert ws_in > 100, metrics     # it did come in pieces
        # a binary body: the broker sends it as a binary message
        assert results.wait("binary") == [0, 1, 2, 255, 0, 10]
        # TCP -> topic -> browser -> queue -> TCP
        tcp.send("SEND", {"destination": "/topic/browser.in"}, "héllo from tcp")
        m = tcp.recv(timeout=30)
        assert m.body.decode() == "echo:héllo from tcp" and m["x-from"] == "browser", m
        # the console tells the browser's connection from the TCP one
        conns = {c["transport"]: c for c in console_connections(b)}
        assert set(conns) == {"ws", "tcp"}, conns
        assert conns["ws"]["version"] == "1.2" and len(conns["ws"]["subscriptions"]) == 3
        # heart-beats both ways keep it open: several beat intervals later it
        # still answers (the pauses are longer than the broker's grace)
        for i in range(3):
            time.sleep(2.0)
            tcp.send("SEND", {"destination": "/topic/browser.in"}, "beat %d" % i)
            assert tcp.recv(timeout=30).body == b"echo:beat %d" % i
        assert "closed" not in results.seen
        # the page disconnects: a clean close handshake
        tcp.send("SEND", {"destination": "/topic/browser.in"}, "quit")
        closed = results.wait("closed")
        assert closed == {"code": 1000, "clean": True}, closed
        assert b.wait_log(r"closing: closed after DISCONNECT|peer closed the WebSocket \(1000\)")
        assert "stomp-error" not in results.seen
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=30)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()
        srv.shutdown()
        srv.server_close()
        shutil.rmtree(profile, ignore_errors=True)
        tcp.close()
