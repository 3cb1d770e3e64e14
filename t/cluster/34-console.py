"""The console in a ZooKeeper cluster: members with roles and positions;
after the master is killed the new master's console says it is master and
the old one is gone from the member list; slaves point to the master."""
import base64
import json
import time
import urllib.error
import urllib.request

from stompd_test import ZkCluster, connected

AUTH = "Basic " + base64.b64encode(b"admin:admin").decode()


def get(b, path):
    r = urllib.request.Request("http://127.0.0.1:%d%s" % (b.http_port, path), headers={"Authorization": AUTH})
    try:
        with urllib.request.urlopen(r, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_console_follows_failover(broker_factory, zk_ensemble):
    c = ZkCluster(broker_factory, zk_ensemble)
    m = c.start_all()
    p = connected(c.nodes[m].port)
    for i in range(5):
        p.receipt("SEND", {"destination": "/queue/c", "persistent": "true"}, "r%d" % i, b"%d" % i)
    old_id = get(c.nodes[m], "/api/status")[1]["node_id"]
    deadline = time.time() + 10
    while time.time() < deadline:
        members = get(c.nodes[m], "/api/cluster")[1]["members"]
        if len(members) == 3 and all(x["lsn"] >= 5 for x in members):
            break
        time.sleep(0.2)
    roles = sorted(x["role"] for x in members)
    assert roles == ["master", "slave", "slave"], members
    assert all(x["lag"] == 0 for x in members)
    replicas = get(c.nodes[m], "/api/cluster")[1]["replicas"]
    assert len(replicas) == 2
    # each slave's acknowledgement latency is measured, in the JSON and in
    # /metrics (a histogram per slave)
    assert all(r["ack_us"]["count"] >= 1 and r["ack_us"]["p50"] >= 1 for r in replicas), replicas
    r = urllib.request.Request("http://127.0.0.1:%d/metrics" % c.nodes[m].http_port, headers={"Authorization": AUTH})
    with urllib.request.urlopen(r, timeout=5) as resp:
        text = resp.read().decode()
    assert "# TYPE stompd_repl_ack_seconds histogram" in text
    counts = [int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith("stompd_repl_ack_seconds_count{node=")]
    assert len(counts) == 2 and all(n >= 1 for n in counts), text
    # a slave answers its status and names the master's console
    s = [i for i in range(3) if i != m][0]
    st, body = get(c.nodes[s], "/api/status")
    assert st == 200 and body["role"] == "slave" and body["master"]["id"] == old_id
    # its epoch is its master's term; it commits nothing, so it shows no
    # committed position (it used to show what it last committed, if ever)
    mst = get(c.nodes[m], "/api/status")[1]
    assert body["epoch"] == mst["epoch"] and "committed_lsn" not in body, body
    assert mst["committed_lsn"] >= 1
    st, body = get(c.nodes[s], "/api/queues")
    assert st == 503 and body["master_console"] == "127.0.0.1:%d" % c.nodes[m].http_port

    c.nodes[m].kill()
    new = c.wait_master(timeout=20, exclude=m)
    deadline = time.time() + 15
    while time.time() < deadline:
        st, body = get(c.nodes[new], "/api/cluster")
        ids = [x["id"] for x in body["members"]]
        if st == 200 and old_id not in ids:
            break
        time.sleep(0.2)
    assert old_id not in ids
    nst = get(c.nodes[new], "/api/status")[1]
    assert nst["role"] == "master" and nst["epoch"] > mst["epoch"]
    # the other slave follows the new master: its status says the new
    # term before any entry of it reached its log
    other = [i for i in range(3) if i not in (m, new)][0]
    deadline = time.time() + 15
    while time.time() < deadline and get(c.nodes[other], "/api/status")[1]["epoch"] != nst["epoch"]:
        time.sleep(0.1)
    ost = get(c.nodes[other], "/api/status")[1]
    assert ost["epoch"] == nst["epoch"] and "committed_lsn" not in ost, ost
    me = [x for x in body["members"] if x["self"]]
    assert me and me[0]["role"] == "master"
    queues = {q["name"]: q for q in get(c.nodes[new], "/api/queues")[1]}
    assert queues["/queue/c"]["pending"] == 5
