"""A real browser (Debian's headless Chromium) loads the console page of a
broker with a queue and a subscriber; the test checks what it rendered
and saves a screenshot under the build folder."""
import os
import re
import shutil
import subprocess
import tempfile

from stompd_test import BUILDDIR, connected

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]


def chromium(args, profile):
    r = subprocess.run([CHROMIUM] + FLAGS + ["--user-data-dir=" + profile] + args, capture_output=True,
                       timeout=120)
    return r


def test_browser_renders_the_console(broker_factory):
    assert os.path.exists(CHROMIUM), "chromium is missing: run contrib/setup"
    b = broker_factory({"http.auth": "false"})
    p = connected(b.port)
    for i in range(7):
        p.receipt("SEND", {"destination": "/queue/invoices", "persistent": "true"}, "r%d" % i, b"%d" % i)
    sub = connected(b.port)
    sub.receipt("SUBSCRIBE", {"id": "1", "destination": "/topic/prices"}, "s")
    url = "http://127.0.0.1:%d/" % b.http_port
    profile = tempfile.mkdtemp(prefix="stompd-chromium-")
    try:
        dom = chromium(["--dump-dom", url], profile)
        assert dom.returncode == 0, dom.stderr.decode()[-2000:]
        html = dom.stdout.decode()
        # what the browser built from the page: names and counts in their cells
        row = re.search(r'<tr><td class="name"><a href="/destination\?name=/queue/invoices">/queue/invoices</a></td>'
                        r'(.*?)</tr>', html, re.S)
        assert row, html[:2000]
        cells = re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))
        assert cells[0] == "7"          # pending
        assert cells[2] == "0"          # consumers
        assert cells[3] == "7"          # enqueued
        topic = re.search(r'<tr><td class="name"><a [^>]*>/topic/prices</a></td><td class="num subscribers">(\d+)</td>',
                          html)
        assert topic and topic.group(1) == "1"
        assert 'id="role" class="role standalone"' in html
        assert "Connections (2)" in html
        shot = os.path.join(BUILDDIR, "console-screenshot.png")
        if os.path.exists(shot):
            os.unlink(shot)
        r = chromium(["--screenshot=" + shot, "--window-size=1280,900", url], profile)
        assert r.returncode == 0 and os.path.getsize(shot) > 5000, r.stderr.decode()[-2000:]
        with open(shot, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    finally:
        shutil.rmtree(profile, ignore_errors=True)
