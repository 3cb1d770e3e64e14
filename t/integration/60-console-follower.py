"""A slave's console (manual replication, no ZooKeeper): its page is HTML
that says what it is, names its master with a link to the master's
console and shows its replication lag; its /metrics answers 200 (role,
lag, the same families as every node) so a scraper can take every node;
what only the master has stays a 503 naming the master's console."""
import json
import re
import time

from stompd_test import (connected, free_port, http_json, http_request, metric_families, promtool_check, replicated,
                         wait_for)



def metrics(b):
    s, h, data = http_request(b.http_port, "GET", "/metrics")
    assert s == 200 and h["Content-Type"].startswith("text/plain; version=0.0.4"), (s, data[:300])
    text = data.decode()
    assert promtool_check(text) == ""
    return metric_families(text)


def value(fam, name, labels=""):
    return fam[name][1].get(name + labels)


def test_slave_page_and_metrics(broker_factory):
    rp = [free_port(), free_port()]
    master = broker_factory(replicated("m", rp[0], "master"))
    slave = broker_factory(replicated("s", rp[1], "slave", rp[0]), start=False)
    slave.start(wait="following master")
    p = connected(master.port)
    for i in range(25):
        p.receipt("SEND", {"destination": "/queue/r", "persistent": "true"}, "r%d" % i, b"x%d" % i)
    head = http_json(master.http_port, "/api/status")["lsn"]
    master_id = http_json(master.http_port, "/api/status")["node_id"]
    wait_for(lambda: http_json(slave.http_port, "/api/status")["lag"] == 0, what="the slave to catch up")

    s, h, data = http_request(slave.http_port, "GET", "/")
    page = data.decode()
    assert s == 200 and h["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in h["Content-Security-Policy"]
    assert '<span id="role" class="role slave">slave</span>' in page
    assert '<td id="master-id">%s</td>' % master_id in page
    console = "127.0.0.1:%d" % master.http_port
    assert '<a id="master-link" href="http://%s/">http://%s/</a>' % (console, console) in page
    assert '<a id="master-console" href="http://%s/">' % console in page
    lag = re.search(r'<b id="lag-entries">(\d+)</b> journal entries behind \(master at lsn (\d+), durable here '
                    r'(\d+)\)', page)
    assert lag and int(lag.group(1)) == int(lag.group(2)) - int(lag.group(3)) == 0 and int(lag.group(2)) == head
    assert '<td id="follower-connected">yes</td>' in page and '<td id="zookeeper">none</td>' in page
    assert 'data-refresh="5000"' in page
    # every JSON page its footer links answers here (the master's own
    # pages, 503 on a slave, are reached through the master's console)
    footer = page[page.index('<p class="meta">JSON:'):]
    links = re.findall(r'href="(/[^"]*)"', footer)
    assert "/api/status" in links and "/api/overview" not in links, links
    for link in links:
        assert http_request(slave.http_port, "GET", link)[0] == 200, link
    # its stylesheet and script are served to it too
    assert http_request(slave.http_port, "GET", "/console.css")[0] == 200
    assert http_request(slave.http_port, "GET", "/console.js")[0] == 200
    # still authenticated like the rest
    assert http_request(slave.http_port, "GET", "/", auth=None)[0] == 401
    assert http_request(slave.http_port, "GET", "/metrics", auth=None)[0] == 401

    fam = metrics(slave)
    assert value(fam, "stompd_role", '{role="slave"}') == 1 and value(fam, "stompd_role", '{role="master"}') == 0
    assert value(fam, "stompd_follower_lag") == 0 and value(fam, "stompd_follower_connected") == 1
    assert value(fam, "stompd_journal_lsn") == head
    mfam = metrics(master)
    assert set(mfam) == set(fam), "every node has the same families"
    assert value(mfam, "stompd_role", '{role="master"}') == 1
    assert mfam["stompd_follower_lag"][1] == {}
    slave_id = http_json(slave.http_port, "/api/status")["node_id"]
    assert value(mfam, "stompd_repl_lag", '{node="%s"}' % slave_id) == 0

    # the master's console pages answer 503 naming it
    for path in ("/destination?name=/queue/r", "/api/messages?destination=/queue/r", "/api/overview"):
        s, h, data = http_request(slave.http_port, "GET", path)
        assert s == 503 and json.loads(data)["master_console"] == console, path
    s, h, data = http_request(slave.http_port, "POST", "/api/messages/move",
                              {"destination": "/queue/r", "messages": ["4:1"], "to": "/queue/x"})
    assert s == 503


def test_slave_without_its_master(broker_factory):
    """Nobody at the master's address: the page says so, /metrics has no lag
    to report (and says the follower is not connected)."""
    nobody = free_port()
    slave = broker_factory(replicated("s", free_port(), "slave", nobody), start=False)
    slave.start(wait="slave of")
    s, h, data = http_request(slave.http_port, "GET", "/")
    page = data.decode()
    assert s == 200 and 'class="role slave"' in page
    assert "<i>none known right now</i>" in page and "<i>no master heard from yet</i>" in page
    assert '<td id="follower-connected">no</td>' in page and 'id="master-link"' not in page
    fam = metrics(slave)
    assert fam["stompd_follower_lag"][1] == {}
    assert value(fam, "stompd_follower_connected") == 0
