"""The README's stomp.py failover recipe, as printed (ports aside), keeps
producing and consuming across master kills without losing anything."""
import os
import re
import threading
import time

from stompd_test import SRCDIR, ZkCluster

README = open(os.path.join(SRCDIR, "README.md")).read()


def recipe(ports):
    i = README.index("<!-- stomp.py failover recipe -->")
    code = re.compile(r"```python\n(.*?)```", re.S).search(README, i).group(1)
    for old, new in zip(("61613", "61614", "61615"), ports):
        code = code.replace(old, str(new))
    ns = {}
    exec(compile(code, "README recipe", "exec"), ns)
    return ns


def test_readme_stomp_py_failover_recipe(broker_factory, zk_ensemble):
    c = ZkCluster(broker_factory, zk_ensemble)
    c.start_all()
    ns = recipe(c.ports)
    got = []

    class Got(ns["stomp"].ConnectionListener):
        def on_message(self, frame):
            got.append(frame.body)
            consumer.conn.ack(frame.headers["ack"])

    consumer = ns["Failover"](ns["BROKERS"], on_connect=lambda conn: conn.subscribe(
        "/queue/recipe", id=1, ack="client-individual"))
    consumer.conn.set_listener("got", Got())
    producer = ns["Failover"](ns["BROKERS"])
    receipts = ns["Receipts"]()
    producer.conn.set_listener("receipts", receipts)
    sent = []

    def produce():
        for i in range(300):
            ns["send_persistent"](producer.conn, receipts, "/queue/recipe", "m%d" % i)
            sent.append("m%d" % i)
            time.sleep(0.005)

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    for _ in range(2):
        time.sleep(1.0)
        m = c.wait_master()
        c.nodes[m].kill()
        c.wait_master(timeout=20, exclude=m)
        c.start(m)
    t.join(timeout=120)
    assert len(sent) == 300
    deadline = time.time() + 30
    while time.time() < deadline and not set(sent) <= set(got):
        time.sleep(0.1)
    assert set(sent) - set(got) == set()
    producer.conn.disconnect()
    consumer.conn.disconnect()
