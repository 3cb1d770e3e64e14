"""contrib/stompd-cluster: start (idempotent), status (ports, consoles, logs;
exit status as LSB's: 0 running, 1 partly, 3 stopped), kill-master and
stop, on free ports under a private base folder."""
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request

from stompd_test import SRCDIR, STOMPD, connected, free_port, port_open

SCRIPT = os.path.join(SRCDIR, "contrib", "stompd-cluster")


def test_cluster_script():
    base = tempfile.mkdtemp(prefix="stompd-cluster-test-")
    ports = {k: [free_port() for _ in range(3)] for k in
             ("ZK_CLIENT_PORTS", "ZK_QUORUM_PORTS", "ZK_ELECTION_PORTS", "STOMP_PORTS", "HTTP_PORTS",
              "REPL_PORTS")}
    env = dict(os.environ, STOMPD_CLUSTER_DIR=base, STOMPD_BIN=STOMPD,
               **{k: " ".join(map(str, v)) for k, v in ports.items()})

    def run(*args):
        return subprocess.run([SCRIPT] + list(args), env=env, capture_output=True, text=True, timeout=120)

    try:
        r = run("--help")
        assert r.returncode == 0 and "STOMP_PORTS" in r.stdout and "kill-master" in r.stdout
        r = run("status")
        assert r.returncode == 3 and r.stdout.count("stopped") == 6, r.stdout
        r = run("start")
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.count("started ZooKeeper") == 3 and r.stdout.count("started node") == 3
        m = int(re.search(r"master: node (\d)", r.stdout).group(1))
        port = ports["STOMP_PORTS"][m - 1]
        p = connected(port)
        p.receipt("SEND", {"destination": "/queue/script", "persistent": "true"}, "r", b"kept")
        p.close()
        # every port was taken from the environment: the consoles too
        for hp in ports["HTTP_PORTS"]:
            with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % hp, timeout=5) as f:
                assert f.status == 200
        for i, rp in enumerate(ports["REPL_PORTS"]):
            assert port_open(rp) == (i == m - 1)
        # idempotent: nothing to start
        r = run("start")
        assert r.returncode == 0 and "started" not in r.stdout
        r = run("status")
        assert r.returncode == 0, r.stdout
        assert r.stdout.count("running") == 6 and "master: node %d" % m in r.stdout
        for i, hp in enumerate(ports["HTTP_PORTS"]):
            log = os.path.join(base, "node%d" % (i + 1), "stompd.log")
            assert "console http://127.0.0.1:%d/" % hp in r.stdout and "log " + log in r.stdout
            assert "accepting STOMP clients" in open(log).read() or i != m - 1
        for i in range(3):
            zlog = os.path.join(base, "zk%d" % (i + 1), "zookeeper.log")
            assert "log " + zlog in r.stdout and os.path.isfile(zlog)
        r = run("kill-master")
        assert r.returncode == 0, r.stderr
        got = re.search(r"master: node (\d) .* after (\d+) ms", r.stdout)
        assert got and int(got.group(1)) != m
        assert int(got.group(2)) < 10000
        new = int(got.group(1))
        r = run("status")       # one node died: its PID file is left
        assert r.returncode == 1 and r.stdout.count("running") == 5, r.stdout
        # start brings the killed node back, as a slave
        r = run("start")
        assert "started node %d" % m in r.stdout and "master: node %d" % new in r.stdout
        r = run("status")
        assert r.returncode == 0 and "master: node %d" % new in r.stdout
        c = connected(ports["STOMP_PORTS"][new - 1])
        c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/script"})
        assert c.recv().body == b"kept"
        c.close()
        r = run("stop")
        assert r.stdout.count("stopped") == 6
        r = run("status")
        assert r.returncode == 3 and r.stdout.count("stopped") == 6 and "master: none" in r.stdout
    finally:
        run("stop")
        shutil.rmtree(base, ignore_errors=True)
