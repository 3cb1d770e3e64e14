"""What this branch adds to the store, replicated (master and slaves set
by configuration, as in t/integration/15-replication.py): scheduled
messages (W and w keys), a virtual topic's kept queue (N key), wildcard
durable subscriptions and composite sends reach every replica, by
streaming and by snapshot, byte for byte as --dump-store shows them; a
slave promoted to master schedules and fires what the old master had
scheduled, and knows the cancelled one is gone."""
import base64
import http.client
import json
import subprocess
import time

from stompd_test import STOMPD, connected, free_port, replicated, wait_for

SLAVE_UP = "following master|snapshot installed"
AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()}


def call(b, method, path, body=None):
    h = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=10)
    hd = dict(AUTH)
    if body is not None:
        hd["Content-Type"] = "application/json"
        body = json.dumps(body)
    h.request(method, path, body=body, headers=hd)
    r = h.getresponse()
    data = r.read()
    h.close()
    assert r.status == 200, (path, r.status, data)
    return json.loads(data)



def dump(b):
    r = subprocess.run([STOMPD, "--dump-store", b.settings["broker.data_dir"]], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def keys(d, prefix):
    return [line.split("\t")[0] for line in d.splitlines() if line.startswith(prefix)]


def test_replicas_hold_the_same_schedule_and_destinations(broker_factory):
    repl = [free_port() for _ in range(3)]
    nodes = [broker_factory(replicated("n%d" % i, repl[i], "master" if i == 0 else "slave",
                                       repl[0] if i else None, store__retention="200",
                                       store__segment_size="64KiB"), start=False, name="n%d" % i)
             for i in range(3)]
    nodes[0].start()
    for b in nodes[1:]:
        b.start(wait=SLAVE_UP, timeout=60)
    m = nodes[0]
    head = call(m, "GET", "/api/status")["lsn"]
    wait_for(lambda: call(nodes[2], "GET", "/api/status")["lsn"] >= head)
    assert nodes[2].stop() == 0   # it comes back to a snapshot
    t0 = time.time()
    p = connected(m.port)
    for i in range(30):
        p.receipt("SEND", {"destination": "/queue/later,/topic/fx.eur", "persistent": "true",
                           "AMQ_SCHEDULED_DELAY": str(12000 if i == 0 else 600000 + i)}, "s%d" % i, b"j%d" % i)
    jobs = call(m, "GET", "/api/scheduler?limit=100")["jobs"]
    assert len(jobs) == 30
    call(m, "POST", "/api/scheduler/cancel", {"id": jobs[-1]["id"]})
    v = connected(m.port)
    v.receipt("SUBSCRIBE", {"id": "v", "destination": "/queue/Consumer.G.VirtualTopic.x"}, "s")
    v.close()
    d = connected(m.port, headers={"client-id": "wild"})
    d.receipt("SUBSCRIBE", {"id": "d", "destination": "/topic/fx.>", "activemq.subscriptionName": "all"}, "s")
    d.close()
    p.receipt("SEND", {"destination": "/queue/a,/topic/fx.usd,/topic/VirtualTopic.x", "persistent": "true"}, "c",
              b"composite")
    # enough traffic for the master to prune the log n2 stopped in
    behind = call(m, "GET", "/api/status")["lsn"]
    for i in range(400):
        p.send("SEND", {"destination": "/queue/bulk", "persistent": "true"}, b"x" * 1000)
    p.receipt("SEND", {"destination": "/queue/bulk"}, "bulk", b"")
    c = connected(m.port)
    c.receipt("SUBSCRIBE", {"id": "b", "destination": "/queue/bulk"}, "s")
    for _ in range(401):
        c.recv(timeout=10)
    c.close()

    def pruned():
        p.receipt("SEND", {"destination": "/queue/tick", "persistent": "true"}, "t", b"t")
        return call(m, "GET", "/api/status")["log_first_lsn"] > behind
    wait_for(pruned)
    nodes[2].start(wait=SLAVE_UP, timeout=60)
    assert nodes[2].wait_log("snapshot installed", since_start=True)
    head = call(m, "GET", "/api/status")["lsn"]
    for b in nodes[1:]:
        wait_for(lambda b=b: call(b, "GET", "/api/status")["durable_lsn"] >= head)
    p.close()
    for b in nodes:
        assert b.stop() == 0
    d0, d1, d2 = dump(nodes[0]), dump(nodes[1]), dump(nodes[2])
    assert d0 == d1 == d2
    assert len(keys(d0, "W")) == 29 and len(keys(d0, "w")) == 29
    assert keys(d0, "N") == ["N/queue/Consumer.G.VirtualTopic.x"]
    assert len(keys(d0, "Twild")) == 1  # the composite's copy for the wildcard durable
    # n2 (the snapshot) becomes master, n1 its slave
    nodes[2].settings["store.role"] = "master"
    nodes[2].settings.pop("store.master", None)
    nodes[1].settings["store.master"] = "127.0.0.1:%d" % repl[2]
    nodes[2].start()
    nodes[1].start(wait=SLAVE_UP, timeout=60)
    n2 = nodes[2]
    st = call(n2, "GET", "/api/scheduler?limit=100")
    assert st["scheduled"] == 29
    assert sorted(j["id"] for j in st["jobs"]) == sorted(j["id"] for j in jobs[:-1])
    # the first one fires there, never early
    q = connected(n2.port)
    q.receipt("SUBSCRIBE", {"id": "q", "destination": "/queue/later"}, "s")
    f = q.recv(timeout=60)
    assert f.body == b"j0" and time.time() >= t0 + 12
    w = connected(n2.port, headers={"client-id": "wild"})
    w.receipt("SUBSCRIBE", {"id": "d", "destination": "/topic/fx.>", "activemq.subscriptionName": "all"}, "s")
    got = sorted((w.recv(timeout=10)["destination"], ) for _ in range(2))
    assert got == [("/topic/fx.eur",), ("/topic/fx.usd",)]
    g = connected(n2.port)
    g.receipt("SUBSCRIBE", {"id": "g", "destination": "/queue/Consumer.G.VirtualTopic.x"}, "s")
    assert g.recv(timeout=10).body == b"composite"
