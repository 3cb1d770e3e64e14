#!/usr/bin/env python3
"""The stompd chaos suite: a local cluster (three ZooKeeper servers and
three stompd nodes on free loopback ports), a failover producer and
consumer (contrib's tools, on libstompc) running all along, and faults
injected one after the other:

  kill9-master     kill -9 the master, restart it (it comes back a slave)
  term-master      SIGTERM the master (a planned stop), restart it
  pause-master     SIGSTOP the master longer than the session timeout, SIGCONT
  kill9-slave      kill -9 a slave while a burst of 20,000 persistent
                   messages builds a backlog, restart it, wait until caught up
  kill-two         kill -9 two of the three nodes, restart them after 3 s
  zk-rolling       restart the ZooKeeper servers one at a time
  zk-all           stop every ZooKeeper server for 6 s, start them again
  isolate-master   cut the master off from ZooKeeper and from its slaves
                   (TCP proxies on loopback that go silent), clients still
                   reach it; heal after the new master serves

Then everything is drained and checked: every message the producer got a
RECEIPT for was consumed, a second copy only ever came with
redelivered:true, and no two nodes ever answered as master (every console's
/api/status is polled all along: a node claiming master with an older epoch
after another claimed a newer one is a split brain). It prints a table of
failover times per fault: from the fault to the producer's first RECEIPT
from the new master, and how long that came after the new master opened its
client port.

  contrib/chaos/chaos.py                     # ten rounds of every fault, about 10 minutes
  contrib/chaos/chaos.py --quick             # one round of the main faults
  contrib/chaos/chaos.py --faults pause-master,zk-all --rounds 5
  contrib/chaos/chaos.py --soak 600 --session-timeout 1s   # no faults: count
                                             # false step-downs under load

Run from a built tree (--build, or $STOMPD_BUILDDIR; default: the source
tree, then build/dev); needs what contrib/setup installs (ZooKeeper, Java,
python3-pytest for the shared test helpers). Exit status 0 when every check
passed. Processes it starts are stopped by PID; --keep leaves the logs.
"""
import argparse
import base64
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.abspath(os.path.join(HERE, "..", ".."))

FAULTS = ["kill9-master", "term-master", "pause-master", "kill9-slave", "kill-two", "zk-rolling", "zk-all",
          "isolate-master"]
MAIN_FAULTS = ["kill9-master", "term-master", "pause-master", "kill9-slave", "isolate-master"]


def find_build(given):
    for d in [given, os.environ.get("STOMPD_BUILDDIR"), SRCDIR, os.path.join(SRCDIR, "build", "dev")]:
        if d and os.path.exists(os.path.join(d, "src", "stompd")) and \
                os.path.exists(os.path.join(d, "contrib", "stompd-failover-producer")):
            return os.path.abspath(d)
    sys.exit("chaos: no built tree found (src/stompd and contrib/stompd-failover-producer): give --build DIR")


def setup_helpers(build):
    os.environ.setdefault("STOMPD", os.path.join(build, "src", "stompd"))
    os.environ.setdefault("STOMPD_SRCDIR", SRCDIR)
    os.environ.setdefault("STOMPD_BUILDDIR", build)
    sys.path.insert(0, os.path.join(SRCDIR, "t", "lib"))
    import stompd_test  # noqa: E402 (Broker, ZkEnsemble, Blackhole, free_port)
    return stompd_test


T = None  # the test helpers module, once set up


def log(msg):
    print("%s %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def wait_for(cond, timeout, what, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise Failure("timed out after %ss waiting for %s" % (timeout, what))


class Failure(Exception):
    pass


def log_time(line):
    """The wall-clock time of a stompd log line ("2026-01-02 13:04:19.005 ...")."""
    return time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000.0


# ------------------------------------------------------------------ cluster

class Node:
    """One stompd node of the cluster, with the proxies that stand between
    it and each ZooKeeper server, and the one in front of its replication
    listener (what the other nodes connect to: store.advertise)."""

    def __init__(self, i, workdir, zk, session_ms, log_level):
        self.i = i
        self.zk_holes = [T.Blackhole(p) for p in zk.client]
        repl = T.free_port()
        self.repl_hole = T.Blackhole(repl)
        d = os.path.join(workdir, "n%d" % i)
        os.makedirs(d, exist_ok=True)
        self.b = T.Broker({
            "store.type": "replicated-leveldb",
            "store.role": "auto",
            "store.bind": "127.0.0.1:%d" % repl,
            "store.advertise": "127.0.0.1:%d" % self.repl_hole.port,
            "store.security_token": "chaos",
            "store.replicas": "3",
            "broker.name": "chaos",
            "zookeeper.address": ",".join("127.0.0.1:%d" % h.port for h in self.zk_holes),
            "zookeeper.session_timeout": "%dms" % session_ms,
            "zookeeper.path": "/stompd-chaos",
            "log.level": log_level,
        }, workdir=d, name="n%d" % i)
        self.starts = 0

    @property
    def url(self):
        return "tcp://127.0.0.1:%d" % self.b.port

    def start(self):
        self.b.start(wait="registered as", timeout=60)
        self.starts += 1

    def status(self):
        """The console's /api/status, or None when it does not answer."""
        req = urllib.request.Request("http://127.0.0.1:%d/api/status" % self.b.http_port)
        req.add_header("Authorization", "Basic " + base64.b64encode(b"admin:admin").decode())
        try:
            with urllib.request.urlopen(req, timeout=1.0) as r:
                return json.loads(r.read().decode())
        except Exception:
            return None

    def isolate(self, on):
        for h in self.zk_holes + [self.repl_hole]:
            if on:
                h.block()
            else:
                h.unblock()

    def close(self):
        for h in self.zk_holes + [self.repl_hole]:
            h.close()


class Cluster:
    def __init__(self, workdir, session_ms, log_level="info"):
        self.workdir = workdir
        self.session_ms = session_ms
        self.zk = T.ZkEnsemble(3, tick_ms=500, workdir=os.path.join(workdir, "zk"))
        self.nodes = [Node(i, workdir, self.zk, session_ms, log_level) for i in range(3)]

    def start(self):
        log("starting ZooKeeper (3 servers)")
        self.zk.start()
        log("starting 3 stompd nodes")
        for n in self.nodes:
            n.start()

    def roles(self):
        return {n.i: (n.status() or {}).get("role") for n in self.nodes if n.b.running()}

    def master(self):
        """The one node answering as master, or None."""
        m = [i for i, r in self.roles().items() if r == "master"]
        return m[0] if len(m) == 1 else None

    def wait_master(self, timeout=90, exclude=None):
        found = []

        def ok():
            m = self.master()
            if m is not None and m != exclude:
                found.append(m)
                return True
            return False
        wait_for(ok, timeout, "a master" + (" other than n%d" % exclude if exclude is not None else ""))
        return found[-1]

    def wait_healthy(self, timeout=120):
        """Every node running, one master, two slaves following it."""
        found = []

        def ok():
            r = self.roles()
            if len(r) == 3 and sorted(map(str, r.values())) == ["master", "slave", "slave"]:
                found.append([i for i, role in r.items() if role == "master"][0])
                return True
            return False
        wait_for(ok, timeout, "one master and two slaves", step=0.1)
        return found[-1]

    def stop(self):
        # nodes first, while their way to ZooKeeper is open (see 37-zk-isolation)
        for n in self.nodes:
            n.isolate(False)
        for n in self.nodes:
            if n.b.proc is not None and n.b.proc.poll() is None:
                try:
                    n.b.kill(signal.SIGCONT)
                    n.b.stop(timeout=60)
                except Exception as e:  # a test of the suite's own, not the system's
                    log("stopping %s: %s" % (n.b.name, e))
                    n.b.kill()
        for n in self.nodes:
            n.close()
        self.zk.stop()


# ------------------------------------------------------------------ watching

class Monitor(threading.Thread):
    """Polls every console's /api/status. A node that claims master with an
    epoch older than one another node already claimed, in a request sent
    after that claim came back, answered as master next to a newer one."""

    def __init__(self, cluster, period=0.1):
        super().__init__(daemon=True)
        self.c = cluster
        self.period = period
        self.stop_ev = threading.Event()
        self.first_claim = {}     # epoch -> (time the answer came, node)
        self.violations = []
        self.transitions = []     # (time, node, old role, new role)
        self.roles = {}
        self.lock = threading.Lock()

    def run(self):
        while not self.stop_ev.is_set():
            for n in self.c.nodes:
                sent = time.time()
                st = n.status() if n.b.running() else None
                got = time.time()
                role = (st or {}).get("role")
                with self.lock:
                    if role and role != self.roles.get(n.i):
                        self.transitions.append((got, n.i, self.roles.get(n.i), role))
                    if role:
                        self.roles[n.i] = role
                    if role != "master":
                        continue
                    epoch = int(st.get("epoch", 0))
                    self.first_claim.setdefault(epoch, (got, n.i))
                    for e, (t, who) in self.first_claim.items():
                        if e > epoch and who != n.i and sent > t:
                            self.violations.append("n%d answered as master (epoch %d) at %.3f, after n%d had "
                                                   "answered as master of epoch %d at %.3f" %
                                                   (n.i, epoch, sent, who, e, t))
            self.stop_ev.wait(self.period)

    def step_downs(self, since=0.0, until=None):
        with self.lock:
            return [t for t in self.transitions if t[2] == "master" and t[0] >= since and
                    (until is None or t[0] <= until)]

    def finish(self):
        self.stop_ev.set()
        self.join(10)


class Tool:
    """A contrib tool run with --timestamps; its lines kept with their times
    (and written to NAME.out in the work directory)."""

    def __init__(self, path, args, name, workdir):
        self.name = name
        self.out = open(os.path.join(workdir, name + ".out"), "a")
        self.p = subprocess.Popen([path] + [str(a) for a in args], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        self.lines = []           # (time, text)
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        rx = re.compile(r"^(\d+\.\d{3}) (.*)$")
        for line in self.p.stdout:
            line = line.rstrip("\n")
            m = rx.match(line)
            t, text = (float(m.group(1)), m.group(2)) if m else (time.time(), line)
            with self.cond:
                self.lines.append((t, text))
                self.cond.notify_all()
            self.out.write(line + "\n")
        self.out.flush()

    def snapshot(self):
        with self.cond:
            return list(self.lines)

    def wait_line(self, pattern, since=0.0, timeout=60):
        rx = re.compile(pattern)
        with self.cond:
            ok = self.cond.wait_for(lambda: any(t >= since and rx.search(x) for t, x in self.lines), timeout)
        if not ok:
            raise Failure("%s printed no line matching %r within %ss:\n%s" %
                          (self.name, pattern, timeout, "\n".join(x for _, x in self.lines[-30:])))

    def signal(self, sig):
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def finish(self, timeout):
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            rc = "killed after %ss" % timeout
        self.reader.join(10)
        self.out.close()
        return rc


# ------------------------------------------------------------------ the run

class Chaos:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.session_ms = args.session_timeout
        self.cluster = Cluster(workdir, self.session_ms, args.log_level)
        self.results = []         # dicts, one per fault injected
        self.problems = []
        self.backlog_sent = 0
        self.tools = []
        self.producer = self.consumer = None
        self.monitor = None
        urls = ",".join(n.url for n in self.cluster.nodes)
        self.url = "failover:(%s)%s" % (urls, args.url_options)

    def tool(self, name):
        return os.path.join(self.args.tools or self.args.build, "contrib", name)

    def stamps(self):
        """--timestamps, when the tools have it (older ones are timed as
        their lines are read)."""
        r = subprocess.run([self.tool("stompd-failover-producer"), "--help"], capture_output=True, text=True)
        return ["--timestamps"] if "--timestamps" in r.stdout else []

    def start(self):
        self.cluster.start()
        m = self.cluster.wait_healthy()
        log("master: n%d" % m)
        self.monitor = Monitor(self.cluster)
        self.monitor.start()
        hb = ["--heart-beat", "1000,1000"] + self.stamps()
        self.consumer = Tool(self.tool("stompd-failover-consumer"),
                             ["--url", self.url, "--dest", "/queue/chaos", "--ack", "client-individual"] + hb,
                             "consumer", self.workdir)
        self.consumer.wait_line(r"^connected to")
        self.producer = Tool(self.tool("stompd-failover-producer"),
                             ["--url", self.url, "--dest", "/queue/chaos", "--count", 100000000, "--persistent",
                              "--interval", self.args.interval, "--size", 200, "--timeout", 120000] + hb,
                             "producer", self.workdir)
        self.producer.wait_line(r"^receipt seq=\d+", timeout=60)
        self.tools = [self.consumer, self.producer]

    # ---------------------------------------------------------- recovery

    def recovered(self, since, timeout=120):
        """One master, two slaves, and the producer receipted after it."""
        m = self.cluster.wait_healthy(timeout)
        t = time.time()
        self.producer.wait_line(r"^receipt seq=\d+", since=max(since, t), timeout=timeout)
        return m

    def repair(self):
        """Restart every node, one after the other (kill -9, start)."""
        for i in range(3):
            log("repair: restarting n%d" % i)
            self.restart(i)
        self.cluster.zk.start(wait=False)
        self.cluster.zk.wait_serving(timeout=90)

    def restart(self, i):
        n = self.cluster.nodes[i]
        if n.b.proc is not None and n.b.proc.poll() is None:
            n.b.kill()
        n.b.proc = None
        n.start()

    # ---------------------------------------------------------- faults

    def fault(self, name):
        c = self.cluster
        m = c.wait_healthy()
        slaves = [i for i in range(3) if i != m]
        r = {"fault": name, "old": m}
        t0 = time.time()
        r["t"] = t0
        if name == "kill9-master":
            c.nodes[m].b.kill()
            c.wait_master(exclude=m)
            self.restart(m)
        elif name == "term-master":
            rc = c.nodes[m].b.stop()  # SIGTERM, and the clean exit waited for
            if rc != 0:
                raise Failure("n%d exited %s on SIGTERM" % (m, rc))
            c.wait_master(exclude=m)
            self.restart(m)
        elif name == "pause-master":
            c.nodes[m].b.kill(signal.SIGSTOP)
            try:
                c.wait_master(exclude=m)
                pause = self.args.pause or max(3 * self.session_ms / 1000.0, 6.0)
                time.sleep(max(0.0, t0 + pause - time.time()))
            finally:
                c.nodes[m].b.kill(signal.SIGCONT)
        elif name == "kill9-slave":
            s = slaves[0]
            burst = Tool(self.tool("stompd-failover-producer"),
                         ["--url", self.url, "--dest", "/queue/chaos-backlog", "--count", self.args.backlog,
                          "--persistent", "--quiet", "--timeout", 300000], "burst", self.workdir)
            self.tools.append(burst)
            wait_for(lambda: burst.p.poll() is not None or self.queue_depth(m, "/queue/chaos-backlog") >=
                     self.args.backlog // 4, 120, "a backlog")
            r["t"] = t0 = time.time()
            c.nodes[s].b.kill()
            time.sleep(1.0)  # the fault's length: the node is down while the backlog grows
            self.restart(s)
            rc = burst.finish(600)
            out = "\n".join(x for _, x in burst.snapshot())
            got = re.search(r"sent=(\d+) receipted=(\d+)", out)
            if rc != 0 or not got or got.group(1) != got.group(2):
                raise Failure("the backlog producer failed (%s):\n%s" % (rc, out[-2000:]))
            self.backlog_sent = int(got.group(2))
        elif name == "kill-two":
            victims = [m, slaves[0]]
            for v in victims:
                c.nodes[v].b.kill()
            time.sleep(self.args.outage or 3.0)
            r["repair"] = time.time()
            for v in victims:
                self.restart(v)
        elif name == "zk-rolling":
            for k in range(3):
                c.zk.stop(k)
                time.sleep(1.0)
                c.zk.start(k, wait=False)
                wait_for(lambda: c.zk.serving(k), 90, "ZooKeeper server %d serving again" % (k + 1), step=0.2)
        elif name == "zk-all":
            c.zk.stop()
            time.sleep(self.args.outage or 6.0)
            r["repair"] = time.time()
            for k in range(3):
                c.zk.start(k, wait=False)
            c.zk.wait_serving(timeout=90)
        elif name == "isolate-master":
            c.nodes[m].isolate(True)
            try:
                c.wait_master(exclude=m)
                time.sleep(2.0)  # the partition lasts past the new master's start
            finally:
                c.nodes[m].isolate(False)
        else:
            raise Failure("unknown fault %r" % name)
        try:
            r["new"] = self.recovered(t0)
        except Failure as e:
            # a finding, not the end of the run: say so, repair, go on
            msg = "%s (round at %s): the cluster did not recover: %s" % (name, time.strftime(
                "%H:%M:%S", time.localtime(t0)), e)
            log("PROBLEM: " + msg)
            self.problems.append(msg)
            self.repair()
            r["new"] = self.recovered(t0)
            r["repaired"] = True
        r["done"] = time.time()
        self.measure(r)
        if self.backlog_sent:
            # the backlog goes, so that it does not weigh on later faults
            # (a new master rebuilds its queues from the store)
            self.problems += self.drain_backlog()
            self.backlog_sent = 0
        self.results.append(r)
        log("%-14s n%d -> n%d  failover %s  connected %s and first RECEIPT %s after the new master opened  "
            "receipt gap %.2fs" % (name, r["old"], r["new"], fmt(r.get("failover")), fmt(r.get("connect")),
                                    fmt(r.get("lag")), r["gap"]))
        time.sleep(self.args.settle)

    def queue_depth(self, m, dest):
        req = urllib.request.Request("http://127.0.0.1:%d/api/queues" % self.cluster.nodes[m].b.http_port)
        req.add_header("Authorization", "Basic " + base64.b64encode(b"admin:admin").decode())
        try:
            with urllib.request.urlopen(req, timeout=2.0) as resp:
                data = json.loads(resp.read().decode())
        except Exception:
            return 0
        for q in data if isinstance(data, list) else []:
            if dest.endswith(q.get("name", "?")):
                return int(q.get("pending", 0))
        return 0

    def measure(self, r):
        """Failover: from the fault to the producer's first RECEIPT from
        the node that is master afterwards, through a reconnect made after
        the fault. Connect and lag: the producer's reconnect to that node,
        and that RECEIPT, after the node opened its client port (the
        RECEIPT also waits for a slave in sync). Gap: the longest the
        producer went without a RECEIPT from the fault to the recovery."""
        lines = self.producer.snapshot()
        t0, new = r["t"], r["new"]
        target = self.cluster.nodes[new].url
        rec = next((t for t, x in lines if t >= t0 and x.startswith("reconnected to " + target)), None)
        first = None
        if rec is not None:
            first = next((t for t, x in lines if t >= rec and x.startswith("receipt seq=")), None)
        r["failover"] = first - t0 if first is not None else None
        opened = None
        for line in self.cluster.nodes[new].b.log().splitlines():
            if "accepting STOMP clients" in line:
                try:
                    t = log_time(line)
                except ValueError:
                    continue
                if t >= t0 - 0.5:
                    opened = t
                    break
        r["opened"] = opened - t0 if opened is not None else None
        r["lag"] = first - opened if first is not None and opened is not None else None
        r["connect"] = rec - opened if rec is not None and opened is not None else None
        receipts = [t for t, x in lines if x.startswith("receipt seq=") and t0 <= t <= r["done"]]
        gaps = [b - a for a, b in zip([t0] + receipts, receipts)]
        r["gap"] = max(gaps) if gaps else r["done"] - t0
        r["step_downs"] = len(self.monitor.step_downs(t0, r["done"]))

    # ---------------------------------------------------------- checks

    def drain_and_check(self):
        problems = list(self.monitor.violations)
        log("stopping the producer (it waits for its last RECEIPTs)")
        self.producer.signal(signal.SIGINT)
        prc = self.producer.finish(300)
        plines = [x for _, x in self.producer.snapshot()]
        receipted = set()
        for x in plines:
            mm = re.match(r"receipt seq=(\d+)$", x)
            if mm:
                receipted.add(int(mm.group(1)))
        summary = next((x for x in reversed(plines) if x.startswith("sent=")), "")
        counts = re.match(r"sent=(\d+) receipted=(\d+)", summary)
        # (interrupted, it exits 1 for not reaching its --count)
        if not counts or counts.group(1) != counts.group(2):
            problems.append("producer (exit %s) did not get every RECEIPT: %s" %
                            (prc, summary or "\n".join(plines[-10:])))
        log("producer: %s; %d receipted" % (summary, len(receipted)))
        want = max(receipted) if receipted else 0

        def consumed():
            got = set()
            for _, x in self.consumer.snapshot():
                mm = re.match(r"(?:received|duplicate) seq=(\d+)", x)
                if mm:
                    got.add(int(mm.group(1)))
            return got
        try:
            wait_for(lambda: receipted <= consumed(), 180, "the consumer to catch up", step=0.5)
        except Failure:
            pass
        self.consumer.signal(signal.SIGINT)
        crc = self.consumer.finish(120)
        clines = [x for _, x in self.consumer.snapshot()]
        got = consumed()
        missing = sorted(receipted - got)
        if missing:
            problems.append("%d receipted messages never consumed: %s" % (len(missing), missing[:30]))
        unmarked = [x for x in clines if x.startswith("duplicate seq=") and "(redelivered)" not in x]
        if unmarked:
            problems.append("%d duplicates without redelivered:true: %s" % (len(unmarked), unmarked[:10]))
        dups = sum(1 for x in clines if x.startswith("duplicate seq="))
        csum = next((x for x in reversed(clines) if x.startswith("received=")), "")
        if crc != 0:
            problems.append("consumer exited %s" % crc)
        log("consumer: %s (highest receipted seq %d)" % (csum, want))
        problems += self.problems
        return problems, {"receipted": len(receipted), "consumed": len(got), "duplicates": dups}

    def drain_backlog(self):
        m = self.cluster.wait_healthy()
        log("draining /queue/chaos-backlog (%d receipted)" % self.backlog_sent)
        d = Tool(self.tool("stompd-failover-consumer"),
                 ["--url", self.url, "--dest", "/queue/chaos-backlog", "--quiet", "--idle-exit", 30000,
                  "--count", self.backlog_sent, "--prefetch", 1000], "backlog-drain", self.workdir)
        rc = d.finish(900)
        out = "\n".join(x for _, x in d.snapshot())
        mm = re.search(r"received=(\d+) duplicates=(\d+) unmarked=(\d+)", out)
        if not mm:
            return ["backlog drain printed no summary on n%d:\n%s" % (m, out[-2000:])]
        problems = []
        if rc != 0 or int(mm.group(1)) != self.backlog_sent:
            problems.append("backlog: %s of %d receipted messages consumed" % (mm.group(1), self.backlog_sent))
        if int(mm.group(3)):
            problems.append("backlog: %s duplicates without redelivered:true" % mm.group(3))
        log("backlog drain: %s" % mm.group(0))
        return problems

    def stop(self):
        for t in self.tools:
            t.signal(signal.SIGKILL)
            t.finish(10)
        if self.monitor:
            self.monitor.finish()
        self.cluster.stop()


def fmt(v):
    return "-" if v is None else "%.2fs" % v


def stats(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    return "%5.2f %5.2f %5.2f" % (min(vals), statistics.median(vals), max(vals))


def table(results):
    out = ["", "failover times in seconds (min median max) per fault",
           "  failover: from the fault to the producer's first RECEIPT from the new master",
           "  connect:  from the new master opening its client port to the producer's reconnect",
           "  receipt:  ... to that first RECEIPT (it also waits for a slave in sync)",
           "  gap:      the longest the producer went without a RECEIPT",
           "",
           "%-15s %3s  %-17s  %-17s  %-17s  %-17s  %s" % ("fault", "n", "failover", "connect", "receipt", "gap",
                                                         "step-downs"),
           "-" * 104]
    by = {}
    for r in results:
        by.setdefault(r["fault"], []).append(r)
    for name in FAULTS:
        rs = by.get(name)
        if not rs:
            continue
        stuck = sum(1 for r in rs if r.get("repaired"))
        rs = [r for r in rs if not r.get("repaired")]  # their times say nothing
        if stuck:
            out.append("%-15s %3d  did not recover by itself (restarted the nodes)" % (name, stuck))
        if not rs:
            continue
        out.append("%-15s %3d  %-17s  %-17s  %-17s  %-17s  %d" % (
            name, len(rs), stats(r.get("failover") for r in rs), stats(r.get("connect") for r in rs),
            stats(r.get("lag") for r in rs), stats(r["gap"] for r in rs), sum(r["step_downs"] for r in rs)))
    return "\n".join(out)


def parse_ms(s):
    m = re.fullmatch(r"(\d+)(ms|s)?", s)
    if not m:
        raise argparse.ArgumentTypeError("a duration like 2s or 1500ms")
    return int(m.group(1)) * (1 if m.group(2) == "ms" else 1000)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", help="the built tree (default: $STOMPD_BUILDDIR, the source tree, build/dev)")
    ap.add_argument("--faults", default=",".join(FAULTS), help="comma list (default: all): " + ", ".join(FAULTS))
    ap.add_argument("--quick", action="store_true", help="one round of " + ", ".join(MAIN_FAULTS))
    ap.add_argument("--rounds", type=int, default=10, help="rounds of the fault list (default 10, about 10 minutes)")
    ap.add_argument("--soak", type=int, metavar="SECONDS",
                    help="no faults: run the workload this long and count step-downs")
    ap.add_argument("--session-timeout", type=parse_ms, default=parse_ms("2s"),
                    help="zookeeper.session_timeout of the nodes (default 2s)")
    ap.add_argument("--interval", type=int, default=10, help="ms between the producer's sends (default 10)")
    ap.add_argument("--backlog", type=int, default=20000, help="messages of the kill9-slave burst (default 20000)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds between faults (default 2)")
    ap.add_argument("--pause", type=float, help="seconds pause-master pauses (default: 3 session timeouts, "
                    "at least 6)")
    ap.add_argument("--outage", type=float, help="seconds kill-two and zk-all leave the cluster without a "
                    "quorum (default 3 and 6)")
    ap.add_argument("--tools", help="take the failover producer and consumer from this built tree instead "
                    "(to compare client versions against the same brokers)")
    ap.add_argument("--url-options", default="",
                    help="appended to the clients' failover URL, e.g. '?maxReconnectDelay=1000'")
    ap.add_argument("--log-level", default="info", help="the nodes' log.level (default info)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args(argv)
    args.build = find_build(args.build)
    global T
    T = setup_helpers(args.build)
    faults = MAIN_FAULTS if args.quick else [f.strip() for f in args.faults.split(",") if f.strip()]
    rounds = 1 if args.quick else args.rounds
    for f in faults:
        if f not in FAULTS:
            ap.error("unknown fault %r" % f)
    workdir = tempfile.mkdtemp(prefix="stompd-chaos-")
    log("work directory %s; session timeout %d ms" % (workdir, args.session_timeout))
    ch = Chaos(args, workdir)
    problems = []
    extra = {}
    started = time.time()
    load_start = os.getloadavg()[0]
    try:
        ch.start()
        if args.soak:
            log("soak: %d s of traffic, no faults" % args.soak)
            t0 = time.time()
            end = t0 + args.soak
            while time.time() < end:
                time.sleep(min(5.0, max(0.0, end - time.time())))
            downs = ch.monitor.step_downs(t0)
            extra["soak_seconds"] = args.soak
            extra["step_downs"] = len(downs)
            logs = sum(n.b.log().count("stepping down as master") for n in ch.cluster.nodes)
            extra["step_down_log_lines"] = logs
            log("soak: %d step-down(s) seen on the consoles, %d 'stepping down' log lines" % (len(downs), logs))
        else:
            for rnd in range(rounds):
                log("round %d of %d" % (rnd + 1, rounds))
                for f in faults:
                    ch.fault(f)
        p, counts = ch.drain_and_check()
        problems += p
        extra.update(counts)
    except Failure as e:
        problems.append("suite: %s" % e)
    except KeyboardInterrupt:
        problems.append("interrupted")
    finally:
        ch.stop()
    elapsed = time.time() - started
    extra["load"] = "%.1f..%.1f" % (load_start, os.getloadavg()[0])
    if ch.results:
        print(table(ch.results))
    print("\nsession timeout %d ms, %d faults, %.0f s, %s" % (args.session_timeout, len(ch.results), elapsed,
                                                              ", ".join("%s=%s" % kv for kv in extra.items())))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"session_timeout_ms": args.session_timeout, "results": ch.results, "problems": problems,
                       "elapsed": elapsed, **extra}, f, indent=1)
    if problems:
        print("\nPROBLEMS:\n  " + "\n  ".join(problems))
        print("logs kept in %s" % workdir)
        return 1
    print("\nall checks passed: every receipted message consumed, duplicates only redelivered, "
          "never two masters")
    if args.keep:
        print("logs kept in %s" % workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
