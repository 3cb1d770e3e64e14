"""libstompc never aborts when memory runs out: t/client/stompc_oom makes
each allocation of a whole session fail in turn (a test copy of the
library, see t/client/failalloc.h) against a real stompd, checking that
every call succeeds or reports the shortage, that a failover client
recovers without losing a message, and that nothing crashes or leaks."""
import os
import re
import subprocess
import sys

from stompd_test import BUILDDIR, SRCDIR

sys.path.insert(0, os.path.join(SRCDIR, "t", "client"))
from clienttest import VALGRIND, failover, tcp  # noqa: E402

DRIVER = os.path.join(BUILDDIR, "t", "client", "stompc_oom")


def run(url):
    cmd = [DRIVER, url]
    if VALGRIND:
        cmd = ["valgrind", "--quiet", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect",
               "--error-exitcode=99"] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and r.stdout.rstrip().endswith("ok"), out[-5000:]
    m = re.search(r"runs=(\d+) allocations=(\d+)", out)
    assert m and int(m.group(1)) > 50, out[-2000:]   # the session does allocate
    return out


def test_every_allocation_failing_in_turn_tcp(broker):
    run(tcp(broker))


def test_every_allocation_failing_in_turn_failover(broker):
    run(failover(broker, options="initialReconnectDelay=1&maxReconnectDelay=10&randomize=false"))
