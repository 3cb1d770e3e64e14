"""The chaos suite's short version (contrib/chaos/chaos.py --quick): a
local cluster of three ZooKeeper servers and three nodes, contrib's
failover producer and consumer running throughout one round of the main
faults (kill -9, SIGTERM and SIGSTOP of the master, kill -9 of a slave
during a 20,000-message burst, the master cut off from ZooKeeper and its
slaves by silent proxies). Nothing receipted may be lost, a second copy
may only come marked redelivered, and no two nodes may ever answer as
master. The failover times it prints are figures, not assertions."""
import os
import sys

from stompd_test import BUILDDIR, SRCDIR

sys.path.insert(0, os.path.join(SRCDIR, "contrib", "chaos"))
import chaos  # noqa: E402


def test_one_round_of_the_main_faults():
    assert chaos.main(["--quick", "--build", BUILDDIR]) == 0
