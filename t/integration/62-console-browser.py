"""The console in a real browser (Debian's headless Chromium, driven over
its DevTools pipe): the charts are drawn (checked in screenshots, pixel by
pixel), the page's own script sends, retries dead letters, purges and
closes connections, hostile message content runs nothing, and a slave's
page names its master with a working link. Screenshots are saved in the
test's temporary folder; their paths are listed in
$STOMPD_BUILDDIR/console-screenshots.txt."""
import json
import os
import time

import pytest

from stompd_test import (BUILDDIR, Browser, connected, free_port, http_json, http_request, png_find, png_pixels,
                         png_size, replicated, wait_for)

IN = (0x2a, 0x7d, 0x2a)      # html.c's COLOR_IN
OUT = (0x2a, 0x5d, 0x9d)     # COLOR_OUT, also the slave badge


@pytest.fixture
def browser():
    b = Browser()
    yield b
    b.close()


def shot(browser, tmp_path, name, selector=None):
    """A screenshot of the page (or of one element of it), saved and listed."""
    clip = rect(browser, selector) if selector else None
    path = browser.screenshot(str(tmp_path / name), clip=clip)
    with open(os.path.join(BUILDDIR, "console-screenshots.txt"), "a") as f:
        f.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), path))
    return path


def rect(browser, selector):
    r = browser.eval("(function(){var r=document.querySelector(%s).getBoundingClientRect();"
                     "return [r.left, r.top, r.right, r.bottom];})()" % json.dumps(selector))
    return tuple(int(round(v)) for v in r)



def test_charts_are_drawn(broker_factory, browser, tmp_path):
    b = broker_factory({"http.rate_interval": "1s"})
    consumer = connected(b.port)
    consumer.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/live"}, "s")
    p = connected(b.port)
    # twelve seconds of traffic whose rate changes every second
    sent = 0
    for k in (5, 40, 10, 60, 20, 80, 15, 50, 30, 70, 25, 45):
        for i in range(k):
            p.send("SEND", {"destination": "/queue/live"}, b"x")
            p.send("SEND", {"destination": "/queue/backlog"}, b"y")
        sent += k
        p.receipt("SEND", {"destination": "/queue/live"}, "r%d" % sent, b"x")
        sent += 1
        time.sleep(1)
    for _ in range(sent):
        consumer.recv()
    wait_for(lambda: sum(http_json(b.http_port, "/api/overview")["rates"]["out"]) == sent, what="the rates")
    browser.load("http://127.0.0.1:%d/" % b.http_port)
    full = shot(browser, tmp_path, "console-main.png")
    assert png_size(full) == (1280, 1000)
    x0, y0, x1, y1 = rect(browser, "#chart-node")
    assert x1 - x0 == 760 and y1 - y0 == 210
    chart = shot(browser, tmp_path, "console-main-chart.png", "#chart-node")
    for colour, name in ((IN, "in"), (OUT, "out")):
        px = png_find(chart, colour)
        cols = {x for x, y in px}
        rows = {y for x, y in px}
        # a line across most of the chart (samples over more than ten
        # intervals), that goes up and down with the traffic
        assert len(cols) > 0.6 * (x1 - x0), "%s line covers %d columns of %d" % (name, len(cols), x1 - x0)
        assert max(rows) - min(rows) > 40, "%s line is flat: rows %s..%s" % (name, min(rows), max(rows))
    # each queue with traffic has its small chart in its row
    for dest in ("live", "backlog"):
        row = 'tr:has(a[href="/destination?name=/queue/%s"])' % dest
        assert abs(rect(browser, row + " svg.spark")[1] - rect(browser, row + " td.name")[1]) < 40
        spark = shot(browser, tmp_path, "console-spark-%s.png" % dest, row + " svg.spark")
        assert len({x for x, y in png_find(spark, IN)}) > 40, dest
        if dest == "backlog":
            # nobody consumes it: its out line lies on its zero line
            out_rows = {y for x, y in png_find(spark, OUT)}
            assert out_rows and max(out_rows) - min(out_rows) <= 3, out_rows
    # the destination's own page
    browser.load("http://127.0.0.1:%d/destination?name=/queue/live" % b.http_port)
    shot(browser, tmp_path, "console-destination.png")
    chart = shot(browser, tmp_path, "console-destination-chart.png", "#chart-dest")
    assert len({x for x, y in png_find(chart, IN)}) > 0.6 * 760


def test_the_page_script_sends_retries_purges_and_closes(broker_factory, browser, tmp_path):
    b = broker_factory({"broker.max_redeliveries": "0"})
    base = "http://127.0.0.1:%d" % b.http_port
    p = connected(b.port)
    for i in range(3):
        p.receipt("SEND", {"destination": "/queue/work", "persistent": "true", "n": str(i)}, "r%d" % i, b"w%d" % i)
    c = connected(b.port)
    c.send("SUBSCRIBE", {"id": "1", "destination": "/queue/work", "ack": "client-individual"})
    for _ in range(3):
        c.send("NACK", {"id": c.recv()["ack"]})
    c.receipt("UNSUBSCRIBE", {"id": "1"}, "u")
    wait_for(lambda: {q["name"]: q for q in http_json(b.http_port, "/api/queues")}
             .get("/queue/ActiveMQ.DLQ", {}).get("pending") == 3, what="three dead letters")
    # the dead-letter queue's page: select all, retry
    browser.load(base + "/destination?name=/queue/ActiveMQ.DLQ")
    assert browser.eval("document.querySelectorAll('tr.msg').length") == 3
    shot(browser, tmp_path, "console-dlq.png")
    browser.eval("document.getElementById('select-all').click()")
    browser.eval("document.querySelector('#move-form button[value=retry]').click()")
    assert browser.wait("document.getElementById('move-status').textContent") == "moved 3"
    c.send("SUBSCRIBE", {"id": "2", "destination": "/queue/work"})
    assert sorted(c.recv().body for _ in range(3)) == [b"w0", b"w1", b"w2"]
    # the send form of /queue/work's page
    browser.load(base + "/destination?name=/queue/work")
    browser.eval("""(function(){var f=document.getElementById('send-form').elements;
        document.getElementById('send').open=true;
        f.body.value='from the browser <b>';f.headers.value='x-a: 1\\nx-b: two words';
        f.priority.value='7';f.persistent.checked=true;
        f.body.form.querySelector('button[type=submit]').click();})()""")
    assert browser.wait("document.getElementById('send-status').textContent") == "sent (durable)"
    m = c.recv()
    assert m.body == b"from the browser <b>" and m["x-a"] == "1" and m["x-b"] == "two words"
    assert m["priority"] == "7" and m["persistent"] == "true"
    # a header line without a colon is refused by the page itself
    browser.eval("""(function(){var f=document.getElementById('send-form').elements;
        f.headers.value='nocolon';f.body.form.querySelector('button[type=submit]').click();})()""")
    assert "name: value" in browser.wait("document.getElementById('send-status').textContent.indexOf('header')"
                                         " >= 0 && document.getElementById('send-status').textContent")
    # the overview: purge a queue, close a connection
    p.receipt("SEND", {"destination": "/queue/full-of-it"}, "f", b"x")
    browser.load(base + "/")
    browser.eval("document.querySelector('button[data-act=purge][data-dest=\"/queue/full-of-it\"]').click()")
    wait_for(lambda: {q["name"]: q for q in http_json(b.http_port, "/api/queues")}["/queue/full-of-it"]["pending"]
             == 0, what="the purge")
    browser.load(base + "/")
    cid = [x["id"] for x in http_json(b.http_port, "/api/connections") if x["subscriptions"]][0]
    # the confirm() runs inside the click: read what it asked in the same
    # evaluation (the page may reload itself, http.refresh, before a later one)
    alerts = browser.eval("(function(){document.querySelector('button[data-act=close][data-id=\"%d\"]').click();"
                          "return window.__alerts;})()" % cid)
    c.expect_error("closed by an administrator", timeout=10)
    assert alerts == ["confirm: Close connection %d?" % cid], alerts
    # delete a queue someone consumes: refused (409), then confirmed again
    # and forced, which closes the consumer's connection with an ERROR
    d = connected(b.port)
    d.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/doomed"}, "s")
    browser.load(base + "/")
    alerts = browser.eval("(function(){document.querySelector('button[data-act=delete][data-dest=\"/queue/doomed\"]')"
                          ".click();return window.__alerts;})()")
    assert alerts == ["confirm: delete /queue/doomed?"], alerts
    d.expect_error("destination /queue/doomed deleted by an administrator", timeout=10)
    wait_for(lambda: "/queue/doomed" not in [q["name"] for q in http_json(b.http_port, "/api/queues")],
             what="the forced delete")


HOSTILE_DEST = "/queue/<img src=x onerror=\"window.__pwned=1;alert('d')\">"


def test_hostile_content_runs_nothing(broker_factory, browser, tmp_path):
    b = broker_factory()
    p = connected(b.port)
    p.receipt("SEND", {"destination": HOSTILE_DEST, "persistent": "true",
                       "x-s": "<script>window.__pwned=2;alert('h')</script>",
                       "x-i": "\"><img src=x onerror=\"window.__pwned=3;alert('i')\">",
                       "<svg onload=alert('n')>": "v"}, "r",
              b"</pre></td><script>window.__pwned=4;alert('b')</script><svg onload=\"alert('s')\">")
    base = "http://127.0.0.1:%d" % b.http_port
    import urllib.parse
    for url in (base + "/", base + "/destination?name=" + urllib.parse.quote(HOSTILE_DEST, safe=""),
                base + "/?filter=" + urllib.parse.quote("<script>alert('f')</script>", safe="")):
        browser.load(url)
        time.sleep(0.3)  # any onerror/onload would have fired
        state = browser.eval("({alerts: window.__alerts, csp: window.__csp, pwned: window.__pwned || 0,"
                             " scripts: document.scripts.length, imgs: document.images.length,"
                             " svgs: [].filter.call(document.querySelectorAll('svg'),"
                             "   function(s){return s.getAttribute('onload')}).length,"
                             " text: document.body.textContent})")
        assert state["alerts"] == [] and state["pwned"] == 0, (url, state["alerts"])
        # escaped, not blocked: nothing even tried to run
        assert state["csp"] == [] and state["scripts"] == 1 and state["imgs"] == 0 and state["svgs"] == 0, state
    # what was sent is shown, as text
    browser.load(base + "/destination?name=" + urllib.parse.quote(HOSTILE_DEST, safe=""))
    text = browser.eval("document.body.textContent")
    for part in ("<script>window.__pwned=2;alert('h')</script>", "\"><img src=x onerror=\"window.__pwned=3",
                 "<svg onload=alert('n')>", "</pre></td><script>window.__pwned=4", HOSTILE_DEST):
        assert part in text, part
    shot(browser, tmp_path, "console-hostile.png")


def test_a_slaves_page(broker_factory, browser, tmp_path):
    rp = [free_port(), free_port()]
    master = broker_factory(replicated("m", rp[0], "master"))
    slave = broker_factory(replicated("s", rp[1], "slave", rp[0]), start=False)
    slave.start(wait="following master")
    p = connected(master.port)
    for i in range(5):
        p.receipt("SEND", {"destination": "/queue/r", "persistent": "true"}, "r%d" % i, b"x")
    master_id = http_json(master.http_port, "/api/status")["node_id"]
    wait_for(lambda: http_json(slave.http_port, "/api/status")["lag"] == 0, what="the slave to catch up")
    browser.load("http://127.0.0.1:%d/" % slave.http_port)
    shot(browser, tmp_path, "console-slave.png")
    page = browser.eval("({role: document.getElementById('role').textContent,"
                        " master: document.getElementById('master-id').textContent,"
                        " link: document.getElementById('master-link').href,"
                        " lag: document.getElementById('lag-entries').textContent,"
                        " connected: document.getElementById('follower-connected').textContent})")
    assert page == {"role": "slave", "master": master_id, "link": "http://127.0.0.1:%d/" % master.http_port,
                    "lag": "0", "connected": "yes"}, page
    # the badge is drawn in the slave's colour
    badge = shot(browser, tmp_path, "console-slave-badge.png", "#role")
    w, h, _, _ = png_pixels(badge)
    assert len(png_find(badge, OUT)) > 0.5 * w * h
    # the link leads to the master's page
    browser.eval("document.getElementById('master-link').click()")
    browser.wait("document.getElementById('role') && document.getElementById('role').textContent === 'master'")
    assert browser.eval("document.getElementById('node').textContent") == master_id
    shot(browser, tmp_path, "console-master.png")
