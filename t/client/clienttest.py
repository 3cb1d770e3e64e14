"""Helpers of the client library's integration tests (t/integration/2x-*.py).

Runs the scenario driver t/client/stompc_live and the contrib producer and
consumer from the build tree, answering the driver's "SYNC <name>" lines
with the test's actions (kill a broker, start it again). With
STOMPD_VALGRIND=1 the driver runs under valgrind too (leaks fail it);
STOMPC_VALGRIND=1 does that for the driver alone, brokers at full speed.
"""
import os
import re
import subprocess
import threading

from stompd_test import BUILDDIR

DRIVER = os.path.join(BUILDDIR, "t", "client", "stompc_live")
PRODUCER = os.path.join(BUILDDIR, "contrib", "stompd-failover-producer")
CONSUMER = os.path.join(BUILDDIR, "contrib", "stompd-failover-consumer")
VALGRIND = os.environ.get("STOMPD_VALGRIND") == "1" or os.environ.get("STOMPC_VALGRIND") == "1"


def tcp(broker):
    return "tcp://127.0.0.1:%d" % broker.port


def failover(*brokers, options="initialReconnectDelay=10&maxReconnectDelay=100&randomize=false"):
    ports = [b if isinstance(b, int) else b.port for b in brokers]
    return "failover:(%s)?%s" % (",".join("tcp://127.0.0.1:%d" % p for p in ports), options)


def _command(url, scenario, args):
    cmd = [DRIVER, url, scenario] + [str(a) for a in args]
    if VALGRIND:
        cmd = ["valgrind", "--quiet", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect",
               "--error-exitcode=99"] + cmd
    return cmd


def live(url, scenario, *args, actions=None, timeout=90):
    """Run one driver scenario; returns its output. Fails the test unless
    the scenario passed. actions: {"name": callable} for SYNC points."""
    actions = actions or {}
    p = subprocess.Popen(_command(url, scenario, args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    killer = threading.Timer(timeout, p.kill)
    killer.start()
    out = []
    try:
        for line in p.stdout:
            out.append(line)
            m = re.match(r"SYNC (\S+)", line)
            if m:
                actions[m.group(1)]()
                p.stdin.write("\n")
                p.stdin.flush()
        rc = p.wait()
    finally:
        killer.cancel()
        if p.poll() is None:
            p.kill()
            p.wait()
    text = "".join(out)
    assert rc == 0 and text.rstrip().endswith("ok"), \
        "stompc_live %s %s exited %s:\n%s" % (url, scenario, rc, text[-6000:])
    return text


def value(text, key):
    """The value of a "key=value" line (or word) in a driver's output."""
    m = re.search(r"(?:^|\s)%s=(\S+)" % re.escape(key), text, re.M)
    assert m, "no %s= in:\n%s" % (key, text)
    return m.group(1)


class Tool:
    """A contrib program running in the background, its output collected."""

    def __init__(self, path, *args):
        self.p = subprocess.Popen([path] + [str(a) for a in args], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.p.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait_line(self, pattern, count=1, timeout=30):
        """Wait until `count` lines match; returns whether they did."""
        rx = re.compile(pattern)
        with self.cond:
            return self.cond.wait_for(lambda: sum(1 for l in self.lines if rx.search(l)) >= count, timeout)

    def finish(self, timeout=120):
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            rc = "killed after %ss" % timeout
        self.reader.join(10)
        return rc

    def output(self):
        with self.cond:
            return "\n".join(self.lines)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
