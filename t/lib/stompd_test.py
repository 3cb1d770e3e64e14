"""Helpers shared by the integration and cluster tests.

Starts real stompd processes on free loopback ports with generated
configuration, talks raw STOMP over real sockets, and stops every process
it started, by PID. Set STOMPD_VALGRIND=1 to run brokers under valgrind
(the stop then fails on any leak or memory error).
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

STOMPD = os.environ.get("STOMPD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "src", "stompd")
SRCDIR = os.environ.get("STOMPD_SRCDIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILDDIR = os.environ.get("STOMPD_BUILDDIR") or SRCDIR
VALGRIND = os.environ.get("STOMPD_VALGRIND") == "1"
# the exit status of a start or --check-config the configuration stops (sysexits.h EX_CONFIG)
CONFIG_ERROR = 78


_given_ports = {}  # port -> the descriptor whose flock reserves it


def _reserve(port):
    """Reserve port against the other test processes on this host (make check
    runs several files at once, each picking at random): an exclusive flock on
    a file named after it, held until this process exits, when the kernel drops
    it. Without it a port free while its broker restarts (a slave stopped and
    started again) could be given to another file's broker in between."""
    import fcntl
    if not _given_ports:
        # one descriptor per port for the life of the process: a file with
        # many clusters gives out a few hundred
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    d = os.path.join(tempfile.gettempdir(), "stompd-test-ports")
    os.makedirs(d, exist_ok=True)
    fd = os.open(os.path.join(d, str(port)), os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _given_ports[port] = fd
    return True


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on right now and no other test
    process has reserved. Taken at random below the kernel's ephemeral range
    (32768 and up by default): a port from that range can be taken, before our
    broker binds it, by the local end of any outgoing connection of the tests
    running alongside."""
    import random
    for _ in range(1000):
        port = random.randint(10000, 32000)
        if port in _given_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if _reserve(port):
            return port
    raise RuntimeError("no free port in 10000-32000 after 1000 tries")


def wait_port(port, timeout=10.0, host="127.0.0.1"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def port_listening(port):
    """Whether some socket listens on this TCP port, read from /proc/net
    (no connection made: a server that counts or limits its connections
    sees nothing)."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    local, state = line.split()[1], line.split()[3]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


def wait_listening(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if port_listening(port):
            return True
        time.sleep(0.02)
    return False


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Broker:
    """One stompd process with its own directory, port and log."""

    def __init__(self, settings=None, workdir=None, name="stompd", config_text=None):
        self.owns_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="stompd-test-")
        self.name = name
        self.port = free_port()
        self.http_port = free_port()
        self.settings = {
            "stomp.listen": "127.0.0.1:%d" % self.port,
            "http.listen": "127.0.0.1:%d" % self.http_port,
            "broker.data_dir": os.path.join(self.dir, "data"),
            "log.level": "debug",
        }
        if settings:
            self.settings.update(settings)
        # listeners whose port we picked: another process may bind one
        # between the pick and our start (tests run side by side); a first
        # start then picks again
        self.picked = {k: v for k, v in self.settings.items()
                       if k in ("stomp.listen", "http.listen") and not (settings and k in settings)}
        self.started = False
        m = re.search(r":(\d+)$", self.settings["stomp.listen"])
        self.port = int(m.group(1))
        m = re.search(r":(\d+)$", self.settings.get("http.listen", ""))
        self.http_port = int(m.group(1)) if m else None
        self.config_text = config_text
        self.env = None              # the process's environment (None: ours)
        self.proc = None
        self.log_path = os.path.join(self.dir, name + ".log")
        self.vg_log = os.path.join(self.dir, name + ".valgrind")

    def command(self):
        cmd = [STOMPD]
        if self.config_text is not None:
            path = os.path.join(self.dir, self.name + ".conf")
            with open(path, "w") as f:
                f.write(self.config_text)
            cmd += ["-c", path]
        for k, v in self.settings.items():
            cmd += ["--set", "%s=%s" % (k, v)]
        if VALGRIND:
            cmd = ["valgrind", "--quiet", "--leak-check=full", "--show-leak-kinds=definite,indirect",
                   "--suppressions=" + os.path.join(SRCDIR, "t", "valgrind.supp"),
                   "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99",
                   "--log-file=" + self.vg_log] + cmd
        return cmd

    def start(self, wait=True, timeout=None):
        """Start; wait=True waits for the STOMP port, a string waits for that
        regular expression in the log (a slave does not listen)."""
        for attempt in range(5):
            try:
                self._start(wait, timeout)
                self.started = True
                return self
            except RuntimeError:
                if attempt == 4 or not self._pick_again():
                    raise

    def _pick_again(self):
        """Our pick of a port was taken by another process before we
        started: pick another (a first start only; a restart keeps its)."""
        if self.started or (self.config_text is not None and "listen" in self.config_text):
            return False  # (a port the file names stays)
        m = re.search(r"cannot listen on 127\.0\.0\.1:(\d+): Address already in use", self.log_since_start())
        if not m:
            return False
        for key, addr in self.picked.items():
            if addr.endswith(":" + m.group(1)):
                port = free_port()
                self.settings[key] = self.picked[key] = "127.0.0.1:%d" % port
                if key == "stomp.listen":
                    self.port = port
                else:
                    self.http_port = port
                return True
        return False

    def _start(self, wait, timeout):
        self.logf = open(self.log_path, "ab")
        self.log_mark = os.path.getsize(self.log_path)
        self.proc = subprocess.Popen(self.command(), stdout=self.logf, stderr=subprocess.STDOUT,
                                     cwd=self.dir, env=self.env)
        t = timeout or (60 if VALGRIND else 10)
        if wait is True:
            if not wait_port(self.port, t):
                self.kill()
                raise RuntimeError("stompd did not start listening on %d:\n%s" % (self.port, self.log()))
            # the console listens a moment after the STOMP port (under
            # valgrind long enough for a test's first request to be refused);
            # no connection to wait for it: tests count and limit those
            if self.http_port and not wait_listening(self.http_port, t):
                self.kill()
                raise RuntimeError("stompd's console did not listen on %d:\n%s" % (self.http_port, self.log()))
            if not self.running():
                # what answered on its ports was another process's
                self.kill()
                raise RuntimeError("stompd exited at start:\n%s" % self.log())
        elif isinstance(wait, str):
            if not self.wait_log(wait, t, since_start=True):
                self.kill()
                raise RuntimeError("stompd did not log %r:\n%s" % (wait, self.log()))
        return self

    def restart(self, wait=True):
        """Start again on the same port and data directory (after stop/kill)."""
        assert not self.running()
        return self.start(wait=wait)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_since_start(self):
        return self.log()[getattr(self, "log_mark", 0):]

    def wait_log(self, pattern, timeout=10.0, since_start=False):
        deadline = time.time() + timeout
        rx = re.compile(pattern)
        while time.time() < deadline:
            if rx.search(self.log_since_start() if since_start else self.log()):
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout * (4 if VALGRIND else 1))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("stompd did not stop on SIGTERM:\n" + self.log()[-3000:])
        rc = self.proc.returncode
        self.proc = None
        self.logf.close()
        if VALGRIND and rc == 99:
            with open(self.vg_log) as f:
                raise AssertionError("valgrind found errors:\n" + f.read())
        return rc

    def kill(self, sig=signal.SIGKILL):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                self.proc.wait()
        if sig in (signal.SIGKILL,) and self.proc is not None:
            self.proc = None
            self.logf.close()

    def cleanup(self):
        if self.proc is not None:
            self.kill()
        if self.owns_dir and not os.environ.get("STOMPD_KEEP_TEST_DIRS"):
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def broker_factory(request):
    made = []

    def make(settings=None, start=True, **kw):
        b = Broker(settings, **kw)
        made.append(b)
        if start:
            b.start()
        return b

    yield make
    # Every broker still running must stop cleanly on SIGTERM: exit 0, and
    # under ASan or valgrind that also means no leak and no memory error.
    problems = []
    for b in made:
        failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
        if failed:
            print("---- %s log ----\n%s" % (b.name, b.log()[-5000:]))
        try:
            if b.running():
                rc = b.stop()
                if rc != 0:
                    problems.append("%s exited %s on SIGTERM:\n%s" % (b.name, rc, b.log()[-4000:]))
        except AssertionError as e:
            problems.append(str(e))
        finally:
            b.cleanup()
    if problems:
        raise AssertionError("\n".join(problems))


# --------------------------------------------------------------- systemd

def built_with_sd_notify():
    """The broker was built with libsystemd (sd_notify; the unit is Type=notify)."""
    with open(os.path.join(BUILDDIR, "config.h")) as f:
        return "#define HAVE_LIBSYSTEMD 1" in f.read()


class NotifySocket:
    """What systemd listens on for sd_notify: a datagram socket whose path a
    broker gets as NOTIFY_SOCKET. Each datagram is a dict of its
    KEY=VALUE lines, kept in arrival order in .got."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.got = []

    def env(self):
        return dict(os.environ, NOTIFY_SOCKET=self.path)

    def wait(self, pred, timeout=30.0):
        """Read datagrams until pred(message) holds for one; return the
        messages read by this call (the matching one last)."""
        new = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            msg = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            self.got.append(msg)
            new.append(msg)
            if pred(msg):
                return new
        raise AssertionError("no such notification within %s s; got %s" % (timeout, self.got))

    def close(self):
        self.sock.close()


# --------------------------------------------------------------- ZooKeeper

ZK_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"


def zk_command(port, cmd="srvr", timeout=1.0):
    """A ZooKeeper four-letter command; None when the server does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(cmd.encode())
            out = b""
            while True:
                d = s.recv(4096)
                if not d:
                    break
                out += d
            return out.decode("utf-8", "replace")
    except OSError:
        return None


class ZkEnsemble:
    """A real ZooKeeper ensemble (Debian's package) on free loopback ports,
    one JVM per server, stopped by PID."""

    def __init__(self, n=3, tick_ms=500, workdir=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="stompd-zk-")
        self.n = n
        self.client = [free_port() for _ in range(n)]
        self.peer = [free_port() for _ in range(n)]
        self.elect = [free_port() for _ in range(n)]
        self.procs = [None] * n
        for i in range(n):
            d = os.path.join(self.dir, "zk%d" % (i + 1))
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "myid"), "w") as f:
                f.write("%d\n" % (i + 1))
            lines = ["tickTime=%d" % tick_ms, "initLimit=20", "syncLimit=10", "dataDir=%s" % d,
                     "clientPort=%d" % self.client[i], "clientPortAddress=127.0.0.1",
                     "admin.enableServer=false", "4lw.commands.whitelist=srvr,ruok,stat",
                     "maxSessionTimeout=%d" % (tick_ms * 20), "minSessionTimeout=%d" % (tick_ms * 2)]
            if n > 1:
                for j in range(n):
                    lines.append("server.%d=127.0.0.1:%d:%d" % (j + 1, self.peer[j], self.elect[j]))
            with open(os.path.join(self.dir, "zoo%d.cfg" % (i + 1)), "w") as f:
                f.write("\n".join(lines) + "\n")

    @property
    def address(self):
        return ",".join("127.0.0.1:%d" % p for p in self.client)

    def start(self, i=None, wait=True):
        for k in ([i] if i is not None else range(self.n)):
            if self.procs[k] is None or self.procs[k].poll() is not None:
                log = open(os.path.join(self.dir, "zk%d.log" % (k + 1)), "ab")
                self.procs[k] = subprocess.Popen(
                    ["java", "-Xmx64m", "-XX:+UseSerialGC", "-cp", ZK_CLASSPATH,
                     "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                     os.path.join(self.dir, "zoo%d.cfg" % (k + 1))],
                    stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
                log.close()
        if wait:
            self.wait_serving()
        return self

    def serving(self, k):
        out = zk_command(self.client[k])
        return bool(out) and ("Mode: leader" in out or "Mode: follower" in out or "Mode: standalone" in out)

    def wait_serving(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            up = [k for k in range(self.n) if self.procs[k] is not None and self.procs[k].poll() is None]
            if up and all(self.serving(k) for k in up) and len(up) > self.n // 2:
                return
            time.sleep(0.2)
        raise RuntimeError("ZooKeeper ensemble did not start serving")

    def stop(self, i=None):
        for k in ([i] if i is not None else range(self.n)):
            p = self.procs[k]
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
            self.procs[k] = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def zk_ensemble():
    z = ZkEnsemble(3).start()
    yield z
    z.cleanup()


def replicated(name, repl_port, role, master_port=None, **extra):
    """Settings for one node of a configured (manual-mode) replicated store."""
    s = {
        "store.type": "replicated-leveldb",
        "store.role": role,
        "store.bind": "127.0.0.1:%d" % repl_port,
        "store.security_token": "s3cret",
        "store.repl_timeout": "2s",
        "broker.name": "repl",
    }
    if master_port:
        s["store.master"] = "127.0.0.1:%d" % master_port
    s.update({k.replace("__", "."): v for k, v in extra.items()})
    return s


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


# --------------------------------------------------------------- raw STOMP

class Frame:
    def __init__(self, command, headers, body):
        self.command = command
        self.headers = headers          # list of (name, value), decoded
        self.body = body

    def get(self, name, default=None):
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def __getitem__(self, name):
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def __repr__(self):
        return "Frame(%s, %r, %r)" % (self.command, self.headers, self.body[:80])


def escape(s, version="1.2"):
    if version == "1.0":
        return s
    s = s.replace("\\", "\\\\").replace(":", "\\c").replace("\n", "\\n")
    if version == "1.2":
        s = s.replace("\r", "\\r")
    return s


def unescape(s, version):
    if version == "1.0":
        return s
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            n = s[i + 1]
            out.append({"\\": "\\", "c": ":", "n": "\n", "r": "\r"}[n])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


# Frames whose headers are never escaped (STOMP 1.2: CONNECT and CONNECTED;
# STOMP is CONNECT under another name).
NO_ESCAPE = ("CONNECT", "STOMP", "CONNECTED")


def parse_frame(buf, version):
    """The first complete frame of buf (bytes), after any heart-beat EOLs:
    (Frame, rest of buf), or (None, buf) while it is not all there. Used by
    both sides: the raw test client and the client library's fake broker."""
    buf = buf.lstrip(b"\r\n")
    end = buf.find(b"\n\n")
    if end < 0:
        return None, buf
    lines = buf[:end].decode().split("\n")
    command = lines[0].rstrip("\r")
    esc = "1.0" if command in NO_ESCAPE else version
    headers = []
    for line in lines[1:]:
        k, _, v = line.rstrip("\r").partition(":")
        headers.append((unescape(k, esc), unescape(v, esc)))
    start = end + 2
    cl = next((int(v) for k, v in headers if k == "content-length"), None)
    if cl is not None:
        if len(buf) < start + cl + 1:
            return None, buf
        assert buf[start + cl:start + cl + 1] == b"\0", "no NUL after body"
        return Frame(command, headers, buf[start:start + cl]), buf[start + cl + 1:]
    nul = buf.find(b"\0", start)
    if nul < 0:
        return None, buf
    return Frame(command, headers, buf[start:nul]), buf[nul + 1:]


def encode_frame(command, headers=None, body=b"", version="1.2", content_length=None):
    if isinstance(body, str):
        body = body.encode()
    esc = command not in ("CONNECT", "STOMP", "CONNECTED")
    lines = [command]
    for k, v in (headers or {}).items() if isinstance(headers, dict) else (headers or []):
        lines.append("%s:%s" % (escape(k, version) if esc else k, escape(str(v), version) if esc else v))
    if content_length:
        lines.append("content-length:%d" % len(body))
    return ("\n".join(lines) + "\n\n").encode() + body + b"\0"


class Client:
    """A raw STOMP client over a real socket, frame-exact."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, rcvbuf=None):
        if rcvbuf:
            # before connect, or the window is already open wide
            self.sock = socket.socket()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.version = "1.0"
        self.timeout = timeout

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, command, headers=None, body=b"", content_length=None):
        self.sock.sendall(encode_frame(command, headers, body, self.version, content_length))

    def connect(self, version="1.2", headers=None, expect="CONNECTED"):
        h = {"accept-version": version, "host": "localhost"} if version else {}
        h.update(headers or {})
        self.send("CONNECT", h)
        f = self.recv()
        assert f.command == expect, f
        if f.command == "CONNECTED":
            self.version = f.get("version", "1.0")
        return f

    def _fill(self, deadline):
        while True:
            remaining = deadline - time.time()
            if remaining <= 0:
                raise TimeoutError("no frame within timeout; have %r" % self.buf[:200])
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed by broker; have %r" % self.buf[:200])
            self.buf += data
            return

    def recv(self, timeout=None, heartbeats=False):
        """Next frame (skipping heart-beat EOLs)."""
        deadline = time.time() + (timeout if timeout is not None else self.timeout)
        while True:
            frame, self.buf = parse_frame(self.buf, self.version)
            if frame is not None:
                return frame
            self._fill(deadline)

    def recv_all(self, n, timeout=None):
        return [self.recv(timeout) for _ in range(n)]

    def expect_nothing(self, wait=0.3):
        """No frame arrives within `wait` seconds."""
        try:
            f = self.recv(timeout=wait)
        except TimeoutError:
            return
        raise AssertionError("unexpected frame %r" % f)

    def expect_error(self, message_part=None, timeout=None):
        f = self.recv(timeout)
        assert f.command == "ERROR", f
        if message_part:
            assert message_part in f.get("message", "") + f.body.decode("utf-8", "replace"), f
        self.expect_closed()
        return f

    def expect_closed(self, timeout=5.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.sock.settimeout(deadline - time.time())
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return
            except socket.timeout:
                break
            if not data:
                return
            self.buf += data
        raise AssertionError("connection still open; buffered %r" % self.buf[:200])

    def receipt(self, command, headers, rid, body=b""):
        h = dict(headers) if isinstance(headers, dict) else dict(headers)
        h["receipt"] = rid
        self.send(command, h, body)
        f = self.recv()
        assert f.command == "RECEIPT" and f["receipt-id"] == rid, f
        return f

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def read_to_the_end(sock, timeout=10.0):
    """All the peer sends until its end of stream; a reset raises (a broker
    that closes after its answer must not cost the client that answer)."""
    sock.settimeout(timeout)
    out = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return out
        out += data


def under_64_descriptors(b, reserve=None):
    """Run broker b (not started) under `prlimit --nofile=64`; with
    reserve, keep that many descriptors from clients instead of the
    broker's own reserve (0: clients may take them all)."""
    plain = b.command
    env = ["env", "STOMPD_TEST_FD_RESERVE=%d" % reserve] if reserve is not None else []
    b.command = lambda: env + ["prlimit", "--nofile=64:64"] + plain()
    return b


def clients_until_refused(port, most=80):
    """Clients connected to port until one is refused (the broker is out
    of descriptors, or at its ceiling): those that got in."""
    held = []
    for _ in range(most):
        try:
            c = Client(port, timeout=5)
            c.connect()
            held.append(c)
        except (OSError, AssertionError, ConnectionError, TimeoutError):
            break
    return held


def connected(port, version="1.2", headers=None):
    c = Client(port)
    c.connect(version, headers)
    return c


def produce_pipelined(port, dest, producers, each, body):
    """`producers` connections at once, each sending `each` persistent
    messages (header n = "producer-i") with a receipt on every one, all
    before reading any receipt; then each reads its receipts, in order.
    Returns what went wrong, per producer: empty when every receipt came."""
    errors = []

    def produce(k):
        try:
            p = connected(port)
            for i in range(each):
                p.send("SEND", {"destination": dest, "persistent": "true", "receipt": "r%d" % i,
                                "n": "%d-%d" % (k, i)}, body)
            for i in range(each):
                f = p.recv(timeout=60.0)
                assert f["receipt-id"] == "r%d" % i, (i, f)
            p.close()
        except Exception as e:  # noqa: BLE001 -- returned, with the producer
            errors.append((k, repr(e)))
    threads = [threading.Thread(target=produce, args=(k,)) for k in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
        if t.is_alive():
            errors.append(("thread", "still running after 180 s"))
    return errors


def consume_own_until_error(port, dest, size, n=10 ** 7):
    """One connection, an auto-ack consumer of dest, sends persistent
    messages ("i:" and size bytes) with a receipt each, from a thread,
    until the broker answers ERROR or closes it (or n are sent). Returns
    the numbers receipted, the numbers delivered, the ERROR (None: the
    connection closed without one; 30 s without a frame raises
    TimeoutError) and the sending thread, to join. A broker that stops right after its ERROR may reset the
    connection before the client reads it (the sends it has not read):
    give it time (STOMPD_TEST_FAIL_STOP_MS)."""
    x = connected(port)
    x.receipt("SUBSCRIBE", {"id": "own", "destination": dest, "ack": "auto"}, "s")

    def produce():
        try:
            for i in range(n):
                x.send("SEND", {"destination": dest, "persistent": "true", "receipt": "r%d" % i},
                       b"%d:" % i + b"z" * size)
        except OSError:
            pass  # closed by the broker
    t = threading.Thread(target=produce, daemon=True)
    t.start()
    receipted, delivered, err = set(), set(), None
    try:
        while err is None:
            f = x.recv(timeout=30)
            if f.command == "RECEIPT":
                receipted.add(int(f["receipt-id"][1:]))
            elif f.command == "MESSAGE":
                delivered.add(int(f.body.split(b":")[0]))
            else:
                err = f
    except ConnectionError:
        pass
    return receipted, delivered, err, t


def the_failed_send(err, receipted, delivered):
    """The number of the send err (from consume_own_until_error) answered
    "not stored"; none after it was receipted."""
    assert err is not None and err.command == "ERROR", \
        "no ERROR after %d receipts and %d messages" % (len(receipted), len(delivered))
    assert "not stored" in err["message"], err
    failed = int(err["receipt-id"][1:])
    assert receipted <= set(range(failed))
    return failed


def exited_with_1(b):
    """b stops by itself, exit status 1: its log since the start."""
    assert b.proc.wait(timeout=20) == 1
    log = b.log_since_start()
    b.proc = None
    b.logf.close()
    return log


def pytest_configure(config):
    # the log says why a test was skipped
    if "s" not in config.option.reportchars and "a" not in config.option.reportchars:
        config.option.reportchars += "s"


def pytest_sessionfinish(session, exitstatus):
    # a file whose every test was skipped is a SKIP (77) for make check,
    # not a PASS
    rep = session.config.pluginmanager.get_plugin("terminalreporter")
    if exitstatus == 0 and rep is not None and rep.stats.get("skipped") and \
            not rep.stats.get("passed") and not rep.stats.get("failed") and not rep.stats.get("error"):
        session.exitstatus = 77


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


# --------------------------------------------------------------- clusters

def socket_owner(peer_port, pids):
    """The pid (of pids) owning the local TCP socket bound to peer_port."""
    inode = None
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if int(parts[1].split(":")[1], 16) == peer_port:
                        inode = parts[9]
                        break
        except OSError:
            pass
        if inode:
            break
    if not inode:
        return None
    target = "socket:[%s]" % inode
    for pid in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == target:
                        return pid
                except OSError:
                    pass
        except OSError:
            pass
    return None


class ZkCluster:
    """Three (or n) stompd nodes electing their master through ZooKeeper."""

    def __init__(self, factory, zk, n=3, **extra):
        import uuid
        self.zk = zk
        self.tag = uuid.uuid4().hex[:12]
        self.nodes = []
        for i in range(n):
            s = replicated("n%d" % i, free_port(), "auto", zookeeper__address=zk.address,
                           zookeeper__session_timeout="2s", store__replicas=str(n), **extra)
            # unique per cluster: id(self) is reused once an earlier
            # cluster of the same module is gone, and its znodes (and
            # their ACLs) are still in the module's ensemble
            s["zookeeper.path"] = "/stompd-test/c%s" % self.tag
            self.nodes.append(factory(s, start=False, name="n%d" % i))

    def start(self, i):
        self.nodes[i].start(wait="registered as")

    def start_all(self):
        for i in range(len(self.nodes)):
            self.start(i)
        return self.wait_master()

    @staticmethod
    def serving(b):
        """Our node listens (its log says so) and the port answers. The log
        check matters: while a node is not master its port is free, and a
        broker of another test running in parallel may have taken it."""
        if not b.running():
            return False
        log = b.log_since_start()
        opened = log.rfind("accepting STOMP clients")
        return opened >= 0 and opened > log.rfind("STOMP listener closed") and port_open(b.port)

    def masters(self):
        return [i for i, b in enumerate(self.nodes) if self.serving(b)]

    def wait_master(self, timeout=30, exclude=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = [i for i in self.masters() if i != exclude]
            if len(m) == 1:
                return m[0]
            assert len(m) <= 1, "two nodes accept clients: %s" % m
            time.sleep(0.05)
        raise AssertionError("no master within %s s" % timeout)

    def hand_over(self, m, dest):
        """Stop master m cleanly (it hands over to a slave in sync) and
        return the bodies the new master gives a consumer of dest."""
        self.nodes[m].stop()
        m2 = self.wait_master(timeout=60, exclude=m)
        c = connected(self.nodes[m2].port)
        c.send("SUBSCRIBE", {"id": "1", "destination": dest})
        got = [c.recv(timeout=30).body]
        while True:
            try:
                got.append(c.recv(timeout=2).body)   # until quiet
            except TimeoutError:
                break
        c.close()
        return got

    @property
    def ports(self):
        return [b.port for b in self.nodes]


class FailoverProducer:
    """Sends persistent messages with receipts to whichever node is master,
    resending what was not receipted (same _AMQ_DUPL_ID) after a failover."""

    def __init__(self, ports, dest, prefix="p"):
        self.ports, self.dest, self.prefix = ports, dest, prefix
        self.c = None
        self.receipted = {}       # body -> time of its receipt
        self.receipted_by = {}    # body -> the port of the node that receipted it
        self.resent = 0
        self.reconnects = 0
        self.stop = threading.Event()
        self.n = 0

    def _connect(self, deadline):
        while time.time() < deadline and not self.stop.is_set():
            for p in self.ports:
                try:
                    c = Client(p, timeout=2)
                    c.connect("1.2")
                    c.port = p
                    self.c = c
                    return True
                except (OSError, ConnectionError, AssertionError, TimeoutError):
                    continue
            time.sleep(0.05)
        return False

    def _send_one(self, body, dupid):
        deadline = time.time() + 60
        first = True
        while time.time() < deadline and not self.stop.is_set():
            if self.c is None:
                if not self._connect(deadline):
                    return False
                self.reconnects += 1
            try:
                if not first:
                    self.resent += 1
                first = False
                self.c.send("SEND", {"destination": self.dest, "persistent": "true", "receipt": dupid,
                                     "_AMQ_DUPL_ID": dupid}, body)
                f = self.c.recv(timeout=5)
                if f.command == "RECEIPT" and f["receipt-id"] == dupid:
                    self.receipted[body] = time.time()
                    self.receipted_by[body] = self.c.port
                    return True
                raise ConnectionError("got %s" % f.command)
            except (OSError, ConnectionError, TimeoutError):
                if self.c:
                    self.c.close()
                self.c = None
        return False

    def run(self, count=None, interval=0.0):
        while not self.stop.is_set() and (count is None or self.n < count):
            body = b"%s-%d" % (self.prefix.encode(), self.n)
            if not self._send_one(body, "%s:%d" % (self.prefix, self.n)):
                break
            self.n += 1
            if interval:
                time.sleep(interval)

    def start(self, **kw):
        self.thread = threading.Thread(target=self.run, kwargs=kw, daemon=True)
        self.thread.start()
        return self

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=90)


class FailoverConsumer:
    """Consumes (client-individual, acking each) from whichever node is
    master, resubscribing after a failover; counts duplicates."""

    def __init__(self, ports, dest):
        self.ports, self.dest = ports, dest
        self.received = []
        self.seen = set()
        self.duplicates = 0
        self.unmarked = 0      # duplicates without redelivered:true
        self.stop = threading.Event()

    def run(self):
        c = None
        while not self.stop.is_set():
            if c is None:
                for p in self.ports:
                    try:
                        c = Client(p, timeout=2)
                        c.connect("1.2")
                        c.send("SUBSCRIBE", {"id": "s", "destination": self.dest, "ack": "client-individual"})
                        break
                    except (OSError, ConnectionError, AssertionError, TimeoutError):
                        c = None
                if c is None:
                    time.sleep(0.05)
                    continue
            try:
                m = c.recv(timeout=0.5)
                if m.command != "MESSAGE":
                    raise ConnectionError(m.command)
                if m.body in self.seen:
                    self.duplicates += 1
                    if m.get("redelivered") != "true":
                        self.unmarked += 1
                else:
                    self.seen.add(m.body)
                self.received.append(m.body)
                c.send("ACK", {"id": m["ack"]})
            except TimeoutError:
                continue
            except (OSError, ConnectionError):
                c.close()
                c = None

    def start(self):
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def wait_for(self, bodies, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline and not set(bodies) <= self.seen:
            time.sleep(0.1)
        return set(bodies) - self.seen

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=10)


# --------------------------------------------------------------- replication peers

REPL_VERSION = 5
R_HELLO, R_WELCOME, R_REFUSE, R_CHALLENGE, R_PROOF = 1, 2, 3, 11, 12


def journal_checksum(entry):
    """src/journal.c's journal_checksum: FNV-1a 64 over the encoded entry."""
    h = 0xcbf29ce484222325
    for c in entry:
        h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h or 1


def repl_frame(t, payload):
    import struct
    return struct.pack(">IB", len(payload) + 1, t) + payload


def repl_str(b):
    import struct
    return struct.pack(">I", len(b)) + b


def repl_proof(token, direction, slave_nonce, master_nonce, slave_id, master_id):
    """src/repl_auth.c's proof, written again from its description: HMAC-
    SHA256 keyed with the token over length-prefixed fields."""
    import hashlib
    import hmac
    import struct
    label = b"stompd replication 4: %s proof" % direction
    msg = b"".join(struct.pack(">I", len(f)) + f for f in (label, slave_nonce, master_nonce, slave_id, master_id))
    return hmac.new(token, msg, hashlib.sha256).digest()


def read_repl_frame(conn):
    """One replication frame from a blocking socket: (type, payload)."""
    import struct
    buf = b""
    while len(buf) < 5 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
        d = conn.recv(1 if len(buf) < 5 else 4 + struct.unpack(">I", buf[:4])[0] - len(buf))
        assert d, "the peer closed the link"
        buf += d
    return buf[4], buf[5:]


def repl_master_handshake(conn, token=b"s3cret", master_id=b"fake-master"):
    """A master's side of the handshake, by hand, on an accepted socket:
    HELLO in, CHALLENGE out, PROOF in. Returns the slave's id, its position
    (last epoch, last lsn, max epoch, last checksum), whether its proof was
    right, and the master's proof, which WELCOME carries first."""
    import struct
    t, hello = read_repl_frame(conn)
    assert t == R_HELLO and struct.unpack(">I", hello[:4])[0] == REPL_VERSION, (t, hello[:4])
    il = struct.unpack(">I", hello[4:8])[0]
    sid, snonce = hello[8:8 + il], hello[12 + il:]
    mnonce = os.urandom(32)
    conn.sendall(repl_frame(R_CHALLENGE, repl_str(master_id) + repl_str(mnonce)))
    t, proof = read_repl_frame(conn)
    assert t == R_PROOF, t
    ok = proof[:36] == repl_str(repl_proof(token, b"slave", snonce, mnonce, sid, master_id))
    position = struct.unpack(">QQQQ", proof[36:68])
    return sid, position, ok, repl_str(repl_proof(token, b"master", snonce, mnonce, sid, master_id))


class FakeSlave(threading.Thread):
    """A replication peer speaking the wire protocol by hand: HELLO, the
    PROOF of the token (at a chosen position) when challenged, the ACK a
    real slave sends on WELCOME (its own position), then ACKs for what it
    receives only while ack_entries is set. It never applies anything: a
    slave that lies, or stalls. With stall_after, once it has received that
    lsn it stops reading and writing altogether, as a hung process (rcvbuf
    keeps the kernel from buffering much for it) until resume(); the
    test may set stall_after once it runs. version other than
    REPL_VERSION sends an older release's HELLO (version 3: the token in
    clear). tls: an ssl.SSLContext to wrap the connection with.
    ack_entries="received": its ACKs say it received each entry but never
    wrote one (a slave whose store is stuck)."""

    def __init__(self, port, last_epoch, last_lsn, max_epoch, node=b"fakeslave0001", ack_entries=False,
                 token=b"s3cret", last_sum=0, version=REPL_VERSION, stall_after=None, rcvbuf=None, tls=None):
        import struct
        super().__init__(daemon=True)
        self.ack_entries = ack_entries
        self.stall_after = stall_after
        self.stalled = threading.Event()
        self.released = threading.Event()
        self.resumed = False
        if rcvbuf:
            self.s = socket.socket()
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.s.connect(("127.0.0.1", port))
        else:
            self.s = socket.create_connection(("127.0.0.1", port))
        if tls is not None:
            self.s = tls.wrap_socket(self.s, server_hostname="localhost")
        self.token, self.node = token, node
        self.position = struct.pack(">QQQQ", last_epoch, last_lsn, max_epoch, last_sum)
        self.nonce = os.urandom(32)
        if version == REPL_VERSION:
            self.s.sendall(repl_frame(R_HELLO, struct.pack(">I", version) + repl_str(node) + repl_str(self.nonce)))
        else:
            self.s.sendall(repl_frame(R_HELLO, struct.pack(">I", version) + repl_str(token) + repl_str(node) +
                                      self.position))
        self.last_lsn = last_lsn
        self.seen = []          # frame types, in order
        self.entries = {}       # lsn -> encoded entry, from ENTRIES frames
        self.challenge = None   # CHALLENGE's (master id, nonce)
        self.welcome = None     # WELCOME's fields, as a dict
        self.master_proved = None  # did WELCOME carry the master's proof?
        self.refused = None     # REFUSE's reason

    def run(self):
        import struct
        buf = b""
        while True:
            try:
                d = self.s.recv(65536)
            except OSError:
                return
            if not d:
                return
            buf += d
            while len(buf) >= 5:
                n, t = struct.unpack(">IB", buf[:5])
                if len(buf) < 4 + n:
                    break
                p = buf[5:4 + n]
                buf = buf[4 + n:]
                try:
                    if t == R_CHALLENGE:  # prove the token
                        il = struct.unpack(">I", p[:4])[0]
                        mid, nonce = p[4:4 + il], p[8 + il:]
                        self.challenge = (mid, nonce)
                        proof = repl_proof(self.token, b"slave", self.nonce, nonce, self.node, mid)
                        self.s.sendall(repl_frame(R_PROOF, repl_str(proof) + self.position))
                    elif t == 2:     # WELCOME: ACK its own position, as a real slave does
                        mid, nonce = self.challenge
                        want = repl_proof(self.token, b"master", self.nonce, nonce, self.node, mid)
                        self.master_proved = p[:36] == repl_str(want)
                        p = p[36:]
                        epoch, il = struct.unpack(">QI", p[:12])
                        must_sync, snapshot, nxt = struct.unpack(">BBQ", p[12 + il:22 + il])
                        self.welcome = {"epoch": epoch, "id": p[12:12 + il], "snapshot": bool(snapshot),
                                        "next": nxt, "rest": p[22 + il:]}
                        self.s.sendall(repl_frame(8, struct.pack(">QQ", self.last_lsn, self.last_lsn)))
                    elif t == 3:   # REFUSE
                        self.refused = p[4:].decode("utf-8", "replace")
                    elif t == 7:
                        count = struct.unpack(">I", p[8:12])[0]
                        off, last = 12, 0
                        for _ in range(count):
                            off += 1          # the entry's sync flag
                            ln = struct.unpack(">I", p[off:off + 4])[0]
                            e = p[off + 4:off + 4 + ln]
                            last = struct.unpack(">Q", e[9:17])[0]
                            self.entries[last] = e
                            off += 4 + ln
                        if self.ack_entries:
                            written = self.last_lsn if self.ack_entries == "received" else last
                            self.s.sendall(repl_frame(8, struct.pack(">QQ", last, written)))
                    elif t == 9:   # PING: the token back
                        self.s.sendall(repl_frame(10, p[:8]))
                except OSError:
                    return
                self.seen.append(t)
                if self.stall_after is not None and self.entries and max(self.entries) >= self.stall_after:
                    self.stalled.set()
                    self.released.wait()
                    if not self.resumed:
                        return
                    self.stall_after = None

    def resume(self):
        """A stalled slave reads (and ACKs) again."""
        self.resumed = True
        self.released.set()

    def close(self):
        """Let a stalled slave go and close its connection."""
        self.released.set()
        try:
            self.s.close()
        except OSError:
            pass


def pending_output(b, port):
    """The console's pending_output of b's client connection from that port."""
    for c in http_json(b.http_port, "/api/connections"):
        if c["peer"].endswith(":%d" % port):
            return c["pending_output"]
    raise AssertionError("no connection from port %d" % port)


def subscribed(b, n, headers):
    """n clients, each subscribed (receipted) with these headers."""
    out = []
    for i in range(n):
        c = connected(b.port)
        c.receipt("SUBSCRIBE", dict(headers, id="s%d" % i), "subscribed")
        out.append(c)
    return out


class SlowReader:
    """A client that stops reading: its socket takes 4 KiB, and a flood of
    13 MB on its own queue fills its output in the broker to limit (its
    stomp.output_limit), so it is not ready. read_some() then reads until
    its output is back under the limit but not under half of it: ready
    again, without the wake that draining to its low water brings."""

    def __init__(self, b, producer, limit, flood="/queue/flood"):
        self.b, self.limit = b, limit
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", b.port))
        self.port = self.sock.getsockname()[1]
        self.got = b""
        self.send("CONNECT", {"accept-version": "1.2", "host": "x"})
        self.send("SUBSCRIBE", {"id": "flood", "destination": flood})
        big = b"f" * 32768
        for i in range(400):
            producer.send("SEND", {"destination": flood}, big)
        producer.receipt("SEND", {"destination": "/topic/sync"}, "flooded", b"")
        wait_for(lambda: self.pending() >= limit, timeout=60, what="the slow reader's output full")

    def send(self, command, headers):
        self.sock.sendall(encode_frame(command, headers))

    def pending(self):
        return pending_output(self.b, self.port)

    def read_some(self):
        """Reads until the output is under the limit; returns what is left."""
        while len(self.got) < 1100000:
            self.got += self.sock.recv(65536)
        deadline = time.time() + 20
        while self.pending() >= self.limit and time.time() < deadline:
            self.got += self.sock.recv(65536)
        return self.pending()

    def read_until(self, tokens, timeout=120):
        """Reads until every body in tokens (b"x1"...) came; returns those
        that did not within the timeout."""
        import re
        token = re.compile(rb"(x\d+)\x00")
        seen = {w.decode() for w in token.findall(self.got)}
        tail = self.got[-16:]
        self.sock.settimeout(1)
        deadline = time.time() + timeout
        while not set(tokens) <= seen and time.time() < deadline:
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            if not data:
                break
            seen |= {w.decode() for w in token.findall(tail + data)}
            tail = (tail + data)[-16:]
        return sorted(set(tokens) - seen, key=lambda t: int(t[1:]))


class Blackhole:
    """A TCP forwarder on a free loopback port that can go silent: block()
    stops passing bytes either way and holds every connection open (as a
    network partition does, without the resets a dead server gives);
    unblock() drops the connections it held, as a healed partition whose
    TCP connections timed out, and forwards again. Given pids_fn (the pids
    that may connect), block(pid) and unblock(pid) do so for one process's
    connections only: a partition between the node behind it and that
    process (helper-111's, for a replication link to one slave)."""

    def __init__(self, target_port, pids_fn=None):
        self.target = target_port
        self.pids_fn = pids_fn
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.blocked = set()       # pids; None: every connection
        self.pairs = []            # [client side, target side, client pid or None]
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def block(self, pid=None):
        with self.lock:
            self.blocked.add(pid)

    def unblock(self, pid=None):
        with self.lock:
            self.blocked.discard(pid)
            held = [p for p in self.pairs if pid is None or p[2] == pid]
            self.pairs = [p for p in self.pairs if p not in held]
        for a, b, _ in held:
            a.close()
            b.close()

    def close(self):
        self.closed = True
        self.unblock()
        self.lsock.close()

    def _stopped(self, pair):
        return None in self.blocked or pair[2] in self.blocked

    def _run(self):
        import select
        while not self.closed:
            with self.lock:
                socks = [self.lsock] + [s for p in self.pairs if not self._stopped(p) for s in p[:2]]
            try:
                r, _, _ = select.select(socks, [], [], 0.05)
            except (OSError, ValueError):
                continue
            for s in r:
                if s is self.lsock:
                    try:
                        a, addr = self.lsock.accept()
                    except OSError:
                        continue
                    owner = socket_owner(addr[1], self.pids_fn()) if self.pids_fn else None
                    try:
                        b = socket.create_connection(("127.0.0.1", self.target), timeout=2)
                    except OSError:
                        a.close()  # nobody behind: the peer sees the end, as with no proxy
                        continue
                    with self.lock:
                        self.pairs.append([a, b, owner])
                    continue
                with self.lock:
                    pair = next((p for p in self.pairs if s in p[:2]), None)
                    if pair is None or self._stopped(pair):
                        continue
                other = pair[1] if s is pair[0] else pair[0]
                try:
                    data = s.recv(262144)
                    if data:
                        other.sendall(data)
                except OSError:
                    data = b""
                if not data:
                    with self.lock:
                        if pair in self.pairs:
                            self.pairs.remove(pair)
                    pair[0].close()
                    pair[1].close()


# --------------------------------------------------------------- the console

def wait_for(pred, timeout=30, what="condition"):
    """Wait for pred() to be true (a slave in sync, a queue gone) rather
    than sleep a guessed time; returns its value. The deadline is generous
    for a loaded machine."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("no %s within %s s" % (what, timeout))


def wait_until(cond, timeout=20.0):
    """wait_for's form for a caller that asserts the outcome itself:
    whether cond() came true within timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


def http_request(port, method, path, body=None, auth=("admin", "admin"), headers=None, timeout=10):
    """One request to a console: (status, headers as a dict, body bytes). A
    dict or list body is sent as JSON."""
    import base64
    import http.client
    import json
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = dict(headers or {})
    if auth:
        h["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode()
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        h.setdefault("Content-Type", "application/json")
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


def http_json(port, path, **kw):
    """GET a console's JSON page; asserts 200."""
    import json
    st, h, data = http_request(port, "GET", path, **kw)
    assert st == 200, (path, st, data[:500])
    return json.loads(data)


PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def promtool_check(text):
    """promtool check metrics (Debian's prometheus package): its complaints,
    empty when the exposition is clean."""
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    out = (r.stdout + r.stderr).decode()
    return "" if r.returncode == 0 else out or "promtool exited %d" % r.returncode


def metric_families(text):
    """Parse the text exposition format: {family: (type, {sample line: value})},
    checking the grammar on the way (HELP and TYPE once each and before the
    samples, every sample named after its family, a number for a value)."""
    families, current, seen = {}, None, set()
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
                        r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)?\})? (\S+)$')
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in seen, "family %s twice" % name
            seen.add(name)
            current = name
            families[name] = [None, {}]
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert name == current and families[name][0] is None, line
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            families[name][0] = kind
        else:
            m = sample.match(line)
            assert m, "not a sample line: %r" % line
            name = m.group(1)
            base = current
            ok = name == base or (families[base][0] in ("histogram", "summary") and
                                  name in (base + "_bucket", base + "_sum", base + "_count"))
            assert ok, "sample %s outside its family %s" % (name, base)
            v = m.group(3)
            assert v in ("NaN", "+Inf", "-Inf") or float(v) == float(v), line
            key = name + (m.group(2) or "")
            assert key not in families[base][1], "sample twice: %s" % key
            families[base][1][key] = float(v)
    return {k: (v[0], v[1]) for k, v in families.items()}


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# Run before any script of every page the Browser opens: dialogs do not
# block (alert is recorded, confirm says yes), and any Content-Security-
# Policy violation is recorded.
BROWSER_PRELUDE = """
window.__alerts = [];
window.__csp = [];
window.alert = function (m) { window.__alerts.push(String(m)); };
window.confirm = function (m) { window.__alerts.push('confirm: ' + String(m)); return true; };
document.addEventListener('securitypolicyviolation', function (e) {
    window.__csp.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


class Browser:
    """Debian's headless Chromium driven over the DevTools protocol on a
    pipe (--remote-debugging-pipe: commands on its fd 3, answers on fd 4,
    NUL-separated JSON), so a test can load a page, run the page's own
    script (click, fill a form), read the DOM and take screenshots. No
    port is opened; the process is stopped by PID."""

    def __init__(self, width=1280, height=1000, auth=("admin", "admin")):
        import fcntl
        self.profile = tempfile.mkdtemp(prefix="stompd-chromium-")
        r_cmd, w_cmd = os.pipe()
        r_out, w_out = os.pipe()

        def child():
            # out of the way first, then onto 3 and 4
            a = fcntl.fcntl(r_cmd, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(w_out, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-pipe",
             "--user-data-dir=" + self.profile, "about:blank"],
            preexec_fn=child, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(r_cmd)
        os.close(w_out)
        self.w, self.r = w_cmd, r_out
        self.buf = b""
        self.next_id = 0
        self.events = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            self.call(domain + ".enable", session=True)
        self.call("Page.addScriptToEvaluateOnNewDocument", {"source": BROWSER_PRELUDE}, session=True)
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                          "deviceScaleFactor": 1, "mobile": False}, session=True)
        if auth:
            import base64
            cred = base64.b64encode(("%s:%s" % auth).encode()).decode()
            self.call("Network.setExtraHTTPHeaders", {"headers": {"Authorization": "Basic " + cred}}, session=True)

    def call(self, method, params=None, session=False, timeout=60):
        import json
        import select
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            while b"\0" not in self.buf:
                left = deadline - time.time()
                r, _, _ = select.select([self.r], [], [], max(0, left))
                if not r:
                    raise TimeoutError("Chromium did not answer %s" % method)
                d = os.read(self.r, 1 << 20)
                if not d:
                    raise EOFError("Chromium went away")
                self.buf += d
            line, self.buf = self.buf.split(b"\0", 1)
            m = json.loads(line)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m["result"]
            self.events.append(m)

    def eval(self, expression):
        """The value of a JavaScript expression in the page (promises awaited)."""
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                      session=True)
        if "exceptionDetails" in r:
            raise RuntimeError("%s: %s" % (expression, r["exceptionDetails"]))
        return r["result"].get("value")

    def wait(self, expression, timeout=30):
        """Until the expression is true in the page; returns its value."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                v = self.eval(expression)
            except RuntimeError:
                v = None
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError("not true within %s s: %s" % (timeout, expression))

    def load(self, url, timeout=30):
        """Navigate and wait until the document and its script are loaded."""
        self.eval("window.__left = true")
        r = self.call("Page.navigate", {"url": url}, session=True)
        if r.get("errorText"):
            raise AssertionError("cannot load %s: %s" % (url, r["errorText"]))
        self.wait("!window.__left && document.readyState === 'complete'", timeout)

    def screenshot(self, path, clip=None):
        """The page as a PNG; clip (x0, y0, x1, y1), in CSS pixels, takes
        only that part (cheap to read back pixel by pixel)."""
        import base64
        params = {"format": "png"}
        if clip:
            x0, y0, x1, y1 = clip
            params["clip"] = {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0, "scale": 1}
        data = self.call("Page.captureScreenshot", params, session=True)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except (OSError, TimeoutError, EOFError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.w)
        os.close(self.r)
        shutil.rmtree(self.profile, ignore_errors=True)


def png_size(path):
    """(width, height) of a PNG, from its header."""
    import struct
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", head[16:24])


def png_pixels(path):
    """A PNG (8-bit RGB or RGBA, not interlaced, as Chromium writes them) as
    (width, height, rows, bytes per pixel), each row a bytes of samples."""
    import struct
    import zlib
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        ft = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ft == 1:
                line[x] = (line[x] + a) & 255
            elif ft == 2:
                line[x] = (line[x] + b) & 255
            elif ft == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif ft == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, [bytes(r) for r in rows], bpp


def png_find(path, rgb, tolerance=40, region=None):
    """The pixels (x, y) of a screenshot within tolerance of the colour rgb
    (sum of the channel differences); region (x0, y0, x1, y1) limits the
    search."""
    w, h, rows, bpp = png_pixels(path)
    x0, y0, x1, y1 = (int(v) for v in (region or (0, 0, w, h)))
    found = []
    for y in range(max(0, y0), min(y1, h)):
        r = rows[y]
        for x in range(max(0, x0), min(x1, w)):
            p = r[x * bpp:x * bpp + 3]
            if abs(p[0] - rgb[0]) + abs(p[1] - rgb[1]) + abs(p[2] - rgb[2]) <= tolerance:
                found.append((x, y))
    return found
# --------------------------------------------------------------- users and permissions

def hash_password(password, method=None):
    """The crypt(3) hash `stompd --hash-password` prints for password."""
    cmd = [STOMPD, "--hash-password" + ("=" + method if method else "")]
    r = subprocess.run(cmd, input=password + "\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def write_users(path, users, method="sha512"):
    """A users file: users maps name -> (password, [groups])."""
    lines = ["# written by the test"]
    for name, (password, groups) in users.items():
        line = "%s:%s" % (name, hash_password(password, method))
        if groups:
            line += ":" + ",".join(groups)
        lines.append(line)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return path


def login_headers(user, password):
    return {"login": user, "passcode": password}
