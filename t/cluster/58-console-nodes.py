"""Every node of a ZooKeeper cluster answers /metrics (a scraper takes
them all: clean for promtool, one master among them, lag on the slaves,
ZooKeeper's session state), and a slave's page, in a real browser, names
the master and links to its console, also after a failover. Screenshots
are saved in the test's temporary folder and listed in
$STOMPD_BUILDDIR/console-screenshots.txt."""
import os
import time

from stompd_test import (BUILDDIR, Browser, ZkCluster, ZkEnsemble, connected, http_json, http_request,
                         metric_families, png_find, png_pixels, promtool_check)

SLAVE_BLUE = (0x2a, 0x5d, 0x9d)


def scrape(b):
    s, h, data = http_request(b.http_port, "GET", "/metrics")
    assert s == 200, (b.name, s, data[:300])
    text = data.decode()
    assert promtool_check(text) == "", (b.name, promtool_check(text))
    return metric_families(text)


def one(fam, name, labels=""):
    return fam[name][1].get(name + labels)


def wait_for(pred, timeout=30, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = pred()
        except AssertionError as e:
            last = None
            err = e
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError("no %s within %s s%s" % (what, timeout, "" if last is not None else ": %s" % err))


def shot(browser, tmp_path, name, clip=None):
    path = browser.screenshot(str(tmp_path / name), clip=clip)
    with open(os.path.join(BUILDDIR, "console-screenshots.txt"), "a") as f:
        f.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), path))
    return path


def test_scrape_every_node_and_follow_the_master(broker_factory, zk_ensemble, tmp_path):
    c = ZkCluster(broker_factory, zk_ensemble)
    m = c.start_all()
    p = connected(c.nodes[m].port)
    for i in range(10):
        p.receipt("SEND", {"destination": "/queue/scraped", "persistent": "true"}, "r%d" % i, b"x")
    master_id = http_json(c.nodes[m].http_port, "/api/status")["node_id"]
    slaves = [i for i in range(3) if i != m]
    slave_ids = {i: http_json(c.nodes[i].http_port, "/api/status")["node_id"] for i in slaves}

    def settled():
        # the master is scraped first: a slave that connects after that
        # scrape would be caught up in its own and missing in the master's
        fams = [scrape(n) for n in c.nodes]
        ok = all(one(fams[i], "stompd_follower_lag") == 0 and
                 one(fams[m], "stompd_repl_lag", '{node="%s"}' % slave_ids[i]) is not None for i in slaves)
        return fams if ok else None

    fams = wait_for(settled, what="the slaves to catch up")
    assert [f.keys() for f in fams][0] == fams[1].keys() == fams[2].keys()
    roles = [[r for r in ("master", "slave", "electing") if one(f, "stompd_role", '{role="%s"}' % r) == 1]
             for f in fams]
    assert sorted(r[0] for r in roles) == ["master", "slave", "slave"] and roles[m] == ["master"]
    for f in fams:
        assert one(f, "stompd_zookeeper_session_state", '{state="connected"}') == 1
        assert one(f, "stompd_zookeeper_registered") == 1
    for i in slaves:
        assert one(fams[i], "stompd_follower_connected") == 1
        # each slave's acknowledgement latency, a histogram per slave
        label = '{node="%s"}' % slave_ids[i]
        assert fams[m]["stompd_repl_ack_seconds"][0] == "histogram"
        assert fams[m]["stompd_repl_ack_seconds"][1].get("stompd_repl_ack_seconds_count" + label) is not None
    assert one(fams[m], "stompd_destination_pending", '{destination="/queue/scraped",type="queue"}') == 10

    browser = Browser(width=1000, height=700)
    try:
        s = slaves[0]
        browser.load("http://127.0.0.1:%d/" % c.nodes[s].http_port)
        page = browser.eval("({role: document.getElementById('role').textContent,"
                            " master: document.getElementById('master-id').textContent,"
                            " link: document.getElementById('master-link').href,"
                            " stomp: document.querySelectorAll('#follower td')[2].textContent,"
                            " zk: document.getElementById('zookeeper').textContent,"
                            " members: document.querySelectorAll('#members tr').length})")
        assert page == {"role": "slave", "master": master_id,
                        "link": "http://127.0.0.1:%d/" % c.nodes[m].http_port,
                        "stomp": "127.0.0.1:%d" % c.nodes[m].port, "zk": "connected", "members": 4}, page
        shot(browser, tmp_path, "cluster-slave.png")
        r = browser.eval("(function(){var r=document.getElementById('role').getBoundingClientRect();"
                         "return [r.left, r.top, r.right, r.bottom];})()")
        badge = shot(browser, tmp_path, "cluster-slave-badge.png", clip=r)
        w, h, _, _ = png_pixels(badge)
        assert len(png_find(badge, SLAVE_BLUE)) > 0.5 * w * h
        browser.eval("document.getElementById('master-link').click()")
        browser.wait("document.getElementById('role') && document.getElementById('role').textContent === 'master'")
        # the master's page: each slave's acknowledgement latency (10 receipted
        # persistent sends: at least one acknowledgement measured per slave)
        acks = browser.eval("Array.prototype.map.call(document.querySelectorAll('#replicas td.ack'),"
                            " function(td){return td.textContent;})")
        assert len(acks) == 2 and all(a.startswith("p50 \u2264 ") and ", p99 \u2264 " in a for a in acks), acks

        # the master dies: the slaves' pages and metrics follow the new one
        c.nodes[m].kill()
        new = c.wait_master(timeout=30, exclude=m)
        other = [i for i in slaves if i != new][0]
        new_id = http_json(c.nodes[new].http_port, "/api/status")["node_id"]

        def follows_new():
            browser.load("http://127.0.0.1:%d/" % c.nodes[other].http_port)
            return browser.eval("document.getElementById('master-id') &&"
                                " document.getElementById('master-id').textContent === %r &&"
                                " document.getElementById('master-link').href" % new_id)

        link = wait_for(follows_new, what="the slave's page to name the new master")
        assert link == "http://127.0.0.1:%d/" % c.nodes[new].http_port
        shot(browser, tmp_path, "cluster-slave-after-failover.png")
        f = scrape(c.nodes[new])
        assert one(f, "stompd_role", '{role="master"}') == 1
        assert one(f, "stompd_destination_pending", '{destination="/queue/scraped",type="queue"}') == 10
    finally:
        browser.close()


def test_zookeeper_session_state_in_metrics(broker_factory):
    zk = ZkEnsemble(3).start()
    try:
        c = ZkCluster(broker_factory, zk)
        c.start_all()
        n = c.nodes[0]
        assert one(scrape(n), "stompd_zookeeper_session_state", '{state="connected"}') == 1
        for i in range(3):
            zk.stop(i)
        f = wait_for(lambda: (lambda f: f if one(f, "stompd_zookeeper_session_state", '{state="connected"}') == 0
                              else None)(scrape(n)), what="the session to be lost")
        states = {k: v for k, v in f["stompd_zookeeper_session_state"][1].items() if v == 1}
        assert list(states) in (['stompd_zookeeper_session_state{state="connecting"}'],
                                ['stompd_zookeeper_session_state{state="expired"}']), states
        # its page says so too (a node without ZooKeeper serves nobody)
        wait_for(lambda: (lambda d: b'<td id="zookeeper">connecting</td>' in d or
                          b'<td id="zookeeper">expired</td>' in d)(http_request(n.http_port, "GET", "/")[2]),
                 what="the page to show the lost session")
        for i in range(3):
            zk.start(i, wait=False)
        zk.wait_serving(timeout=60)
        wait_for(lambda: one(scrape(n), "stompd_zookeeper_session_state", '{state="connected"}') == 1,
                 timeout=60, what="the session back")
        c.wait_master(timeout=60)
    finally:
        zk.cleanup()
