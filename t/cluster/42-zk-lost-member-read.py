"""A member's data read that dies with its ZooKeeper connection. The
client library sets a read's watch only when its answer arrives, so a
node whose read of another member's data was in flight when the
connection broke (members publish their lsn as it moves, so such reads
are frequent) had no watch on that member any more, and nothing asked
again: it kept the member's old data for the rest of its session. At the
next election it waited forever for that member to say "electing" (the
chaos suite's zk-rolling then zk-all: every node "electing", nobody
claiming). The node must read every member again on reconnecting.

Made deterministic with a proxy in front of one node's ZooKeeper servers
that, once armed, passes one change notification about a given member and
then drops everything the server sends on that connection: the node's
read goes unanswered, the library gives the connection up and reconnects
(same session) elsewhere."""
import base64
import json
import socket
import struct
import threading
import time
import urllib.request

from stompd_test import ZkCluster, connected, wait_for

ZOO_CHANGED_EVENT = 3


class NotificationCutter:
    """A TCP forwarder to one ZooKeeper server that parses what the server
    sends (length-prefixed frames; the first answers the handshake, then
    each starts with a reply header whose xid is -1 for a watch
    notification). Once armed with a znode path, the first connection that
    carries a data-change notification for it forwards that notification,
    then goes deaf: the client's bytes still reach the server (its session
    stays alive) but nothing comes back."""

    fired = threading.Event()   # shared by a node's cutters: it fires once
    target = None

    def __init__(self, server_port):
        self.server_port = server_port
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.socks = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @classmethod
    def arm(cls, path):
        cls.target = path.encode()

    def close(self):
        self.closed = True
        for s in [self.lsock] + self.socks:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.lsock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.server_port), timeout=2)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            self.socks += [client, server]
            threading.Thread(target=self._up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client), daemon=True).start()

    @staticmethod
    def _up(client, server):
        try:
            while True:
                d = client.recv(65536)
                if not d:
                    break
                server.sendall(d)
        except OSError:
            pass
        for s in (client, server):
            try:
                s.close()
            except OSError:
                pass

    def _down(self, server, client):
        buf = b""
        first = True
        deaf = False
        try:
            while True:
                d = server.recv(65536)
                if not d:
                    break
                if deaf:
                    continue
                buf += d
                while len(buf) >= 4:
                    n = struct.unpack(">i", buf[:4])[0]
                    if len(buf) < 4 + n:
                        break
                    frame, buf = buf[:4 + n], buf[4 + n:]
                    client.sendall(frame)
                    if first:
                        first = False
                        continue
                    xid = struct.unpack(">i", frame[4:8])[0]
                    if xid != -1 or self.target is None or self.fired.is_set():
                        continue
                    # reply header (xid, zxid, err), then type, state, path
                    etype = struct.unpack(">i", frame[20:24])[0]
                    plen = struct.unpack(">i", frame[28:32])[0]
                    if etype == ZOO_CHANGED_EVENT and frame[32:32 + plen] == self.target:
                        self.fired.set()
                        deaf = True
                        break
        except OSError:
            pass
        for s in (client, server):
            try:
                s.close()
            except OSError:
                pass


def status(b):
    req = urllib.request.Request("http://127.0.0.1:%d/api/status" % b.http_port)
    req.add_header("Authorization", "Basic " + base64.b64encode(b"admin:admin").decode())
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read().decode())



def test_member_read_lost_with_its_connection_is_read_again(broker_factory, zk_ensemble):
    c = ZkCluster(broker_factory, zk_ensemble)
    a = 2  # the node whose read is cut off
    cutters = [NotificationCutter(p) for p in zk_ensemble.client]
    node_a = c.nodes[a]
    node_a.settings["zookeeper.address"] = ",".join("127.0.0.1:%d" % x.port for x in cutters)
    # it will be the next election's candidate: equal logs, greater weight
    node_a.settings["store.weight"] = "10"
    try:
        # two nodes elect a master; the heavy one joins as a slave
        c.start(0)
        c.start(1)
        m = c.wait_master(timeout=60)
        b = 1 - m
        c.start(a)
        assert node_a.wait_log(r"replication: following master", timeout=30), node_a.log()[-3000:]
        session = node_a.log().split("zookeeper: connected (session ")[-1].split(")")[0]

        # the next change of b's member data (its lsn) cuts a's connection
        # right after telling a about it
        path = c.nodes[b].log().split("zookeeper: registered as ")[-1].split()[0]
        NotificationCutter.arm(path)
        p = connected(c.nodes[m].port)
        n = 0
        deadline = time.time() + 60
        while not NotificationCutter.fired.is_set() and time.time() < deadline:
            p.receipt("SEND", {"destination": "/queue/lost-read", "persistent": "true"}, "r%d" % n, b"m%d" % n)
            n += 1
            NotificationCutter.fired.wait(0.3)
        p.close()
        assert NotificationCutter.fired.is_set(), "no change of %s reached %s" % (path, node_a.name)
        # a gives that connection up and gets its session back elsewhere
        mark = len(node_a.log())
        wait_for(lambda: "zookeeper: connected (session %s)" % session in node_a.log()[mark:], 30,
                 "%s to reconnect" % node_a.name)
        assert "session expired" not in node_a.log()[mark:]

        # every store at the same position: a is the candidate
        wait_for(lambda: len({status(c.nodes[i])["lsn"] for i in range(3)}) == 1, 30, "the slaves to catch up")

        # The master dies. Its session expires, b says "electing"; a must
        # see it (it waited for b forever) and claim.
        c.nodes[m].kill()
        new = c.wait_master(timeout=60, exclude=m)
        assert new == a, "node %d is master, expected the heavier n%d:\n%s" % (new, a, node_a.log()[-3000:])
        s = connected(node_a.port)
        s.send("SUBSCRIBE", {"id": "1", "destination": "/queue/lost-read"})
        assert [s.recv(timeout=10).body for _ in range(n)] == [b"m%d" % i for i in range(n)]
        s.close()
    finally:
        # stop the nodes while ZooKeeper is reachable (what the library
        # never completes would be reported as leaks), then the proxies
        stopped = [(x.name, x.stop()) for x in c.nodes if x.running()]
        for x in cutters:
            x.close()
    assert all(rc == 0 for _, rc in stopped), stopped
