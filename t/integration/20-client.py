"""libstompc against one real stompd: every API call, through the scenario
driver t/client/stompc_live, plus the fake broker of t/client/fakebroker.py
where a real stompd cannot be made to misbehave (older versions, silence)."""
import os
import re
import signal
import subprocess
import sys

from stompd_test import BUILDDIR, SRCDIR, free_port, http_request, write_users

sys.path.insert(0, os.path.join(SRCDIR, "t", "client"))
from clienttest import CONSUMER, PRODUCER, Tool, failover, live, tcp, value  # noqa: E402
from fakebroker import Behaviour, FakeBroker  # noqa: E402


def test_connect_disconnect_reconnect(broker):
    live(tcp(broker), "connect")


def test_version_negotiation_and_ack_headers_per_version(broker):
    out = live(tcp(broker), "versions")
    assert re.findall(r"version=(\d+)", out) == ["10", "11", "12", "11", "12"]


def test_version_fallback_to_what_the_broker_says():
    for says, want in [("1.1", "11"), (None, "10"), ("1.2", "12")]:
        fb = FakeBroker(Behaviour(version=says))
        try:
            live(fb.url(), "expect-version", want)
            frames = fb.connections[0]
        finally:
            fb.close()
        connect = frames[0]
        assert connect.command == "CONNECT"
        assert connect.headers == [("accept-version", "1.0,1.1,1.2"), ("host", "vhost1"), ("login", "alice"),
                                   ("passcode", "s3cret"), ("client-id", "cid-1"), ("heart-beat", "5000,7000"),
                                   ("x-custom", "yes")]
        assert frames[-1].command == "DISCONNECT" and frames[-1].get("receipt")


def test_a_message_without_its_required_headers_is_a_protocol_error():
    """A MESSAGE lacking destination, message-id or (from 1.1 on)
    subscription was handed out with that field NULL, which stompc.h did
    not say could be (helper-81): a protocol error now."""
    full = [("destination", "/queue/x"), ("message-id", "m-1"), ("subscription", "{id}")]
    for missing in ("destination", "message-id", "subscription"):
        fb = FakeBroker(Behaviour(message=[h for h in full if h[0] != missing]))
        try:
            live(fb.url(), "bad-message", missing)
        finally:
            fb.close()


def test_send_with_and_without_receipt_binary_bodies_and_headers(broker):
    live(tcp(broker), "send")


def test_receipt_wait_keeps_messages_for_the_next_receive(broker):
    live(tcp(broker), "receipt-keeps-messages")


def test_subscribe_in_every_ack_mode_with_ack_and_nack(broker):
    live(tcp(broker), "ack-modes")


def test_selector_and_prefetch(broker):
    live(tcp(broker), "selector-prefetch")


def test_durable_subscription(broker):
    live(tcp(broker), "durable")


def test_transactions_commit_and_abort(broker):
    live(tcp(broker), "transactions")


def test_heart_beats_keep_an_idle_client_connected(broker_factory):
    b = broker_factory({"stomp.heartbeat_min": "50ms"})
    live(tcp(b), "heartbeats")
    assert "no heart-beat" not in b.log()


def test_silent_broker_is_detected_within_one_and_a_half_intervals():
    fb = FakeBroker(Behaviour(heart_beat="100,0", silent=True))
    try:
        out = live(fb.url(), "silent-broker")
    finally:
        fb.close()
    assert 140 <= int(value(out, "detected_ms")) < 1500


def test_poll_and_callback_receive(broker):
    live(tcp(broker), "receive-styles")


def test_batched_sends_wait_for_a_write_or_a_flush(broker):
    live(tcp(broker), "more")


def test_one_client_per_thread(broker):
    live(failover(broker), "threads")


def test_errors_surface_as_readable_strings(broker):
    out = live(tcp(broker), "errors", free_port())
    assert "error=broker ERROR: invalid destination: '/bogus/x'" in out


def test_contrib_tools_help_and_usage():
    for tool in (PRODUCER, CONSUMER):
        r = subprocess.run([tool, "--help"], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0
        for opt in ("--url", "--dest", "--count", "--heart-beat", "--connect-timeout", "--timestamps"):
            assert opt in r.stdout, (tool, opt)
        r = subprocess.run([tool, "--dest", "/queue/x"], capture_output=True, text=True, timeout=20)
        assert r.returncode == 2 and "usage:" in r.stderr
        r = subprocess.run([tool, "--url", "tcp://x:1", "--dest", "/queue/x", "--count", "many"],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 2 and "--count" in r.stderr
    r = subprocess.run([PRODUCER, "--help"], capture_output=True, text=True, timeout=20)
    assert "--persistent" in r.stdout and "--interval" in r.stdout and "sent=N receipted=N resent=N" in r.stdout
    r = subprocess.run([CONSUMER, "--help"], capture_output=True, text=True, timeout=20)
    assert "--ack" in r.stdout and "--idle-exit" in r.stdout and "received=N duplicates=N unmarked=N" in r.stdout
    r = subprocess.run([CONSUMER, "--url", "tcp://x:1", "--dest", "/queue/x", "--ack", "sometimes"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "--ack must be auto, client or client-individual" in r.stderr


def test_contrib_tools_report_a_bad_url_and_a_dead_broker():
    # a bad --url, --heart-beat or option value is bad usage: 2, as the manual pages say (helper-97)
    r = subprocess.run([PRODUCER, "--url", "failover:(tcp://h:1)?nope=1", "--dest", "/queue/x"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "unknown option 'nope'" in r.stderr
    for tool in (PRODUCER, CONSUMER):
        for hb in ("1000,5abc", "-5,-5", "99999999999,1", "1000"):
            r = subprocess.run([tool, "--url", "tcp://127.0.0.1:1", "--dest", "/queue/x", "--heart-beat", hb],
                               capture_output=True, text=True, timeout=20)
            assert r.returncode == 2 and "--heart-beat wants CX,CY" in r.stderr, (tool, hb, r.stderr)
        r = subprocess.run([tool, "--url", "tcp://127.0.0.1:1", "--dest", "/queue/x", "--connect-timeout",
                            "99999999999"], capture_output=True, text=True, timeout=20)
        assert r.returncode == 2 and "from 1 to 2147483647" in r.stderr, r.stderr
        # a TLS file that is not there says so (it said "system lib")
        r = subprocess.run([tool, "--url", "ssl://127.0.0.1:1", "--dest", "/queue/x", "--ca", "/nonexistent/ca.pem"],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 2 and "cannot load /nonexistent/ca.pem: No such file or directory" in r.stderr, \
            r.stderr
    port = free_port()
    r = subprocess.run([CONSUMER, "--url", "tcp://127.0.0.1:%d" % port, "--dest", "/queue/x"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and "connect to 127.0.0.1:%d: Connection refused" % port in r.stderr


def test_a_refused_login_ends_the_first_connection_and_is_reported_after_it(broker_factory, tmp_path):
    """A failover client whose login the broker refused retried for ever
    without a word (helper-97). Before its first connection it now stops
    at once with the broker's words; once connected, it tries on and
    reports each refusal."""
    users = str(tmp_path / "users")
    write_users(users, {"alice": ("right", [])})
    b = broker_factory({"auth.users": users})
    url = failover(b, free_port())  # a second broker that is not there changes nothing
    for tool in (PRODUCER, CONSUMER):
        r = subprocess.run([tool, "--url", url, "--dest", "/queue/x", "--count", "1", "--login", "alice",
                            "--passcode", "wrong"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, (tool, r.stdout, r.stderr)
        assert "connect to 127.0.0.1:%d: broker ERROR: authentication failed" % b.port in r.stderr, r.stderr

    cons = Tool(CONSUMER, "--url", url, "--dest", "/queue/x", "--count", 1, "--login", "alice",
                "--passcode", "right")
    try:
        assert cons.wait_line("^connected to"), cons.output()
        write_users(users, {"bob": ("b", [])})
        b.proc.send_signal(signal.SIGHUP)  # alice is logged out, and refused when she comes back
        assert cons.wait_line("^error: .*logged out"), cons.output()
        assert cons.wait_line("^error: connect to .*authentication failed", count=2), cons.output()
        write_users(users, {"alice": ("right", [])})
        b.proc.send_signal(signal.SIGHUP)
        assert cons.wait_line("^reconnected to"), cons.output()
        r = subprocess.run([PRODUCER, "--url", tcp(b), "--dest", "/queue/x", "--count", "1", "--login", "alice",
                            "--passcode", "right"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert cons.finish() == 0, cons.output()
    finally:
        cons.kill()


def test_a_refusal_by_one_broker_tries_the_others_first(broker_factory, tmp_path):
    """A rolling change of passwords: one broker still has the old one. A
    refusal ended the attempts before the broker that takes the new
    password was tried (helper-104); a refusal of the CONNECT's own
    headers ('header not UTF-8') retried for ever, silently."""
    u_old, u_new = str(tmp_path / "users-old"), str(tmp_path / "users-new")
    write_users(u_old, {"alice": ("old", [])})
    write_users(u_new, {"alice": ("new", [])})
    old = broker_factory({"auth.users": u_old}, name="old")
    new = broker_factory({"auth.users": u_new}, name="new")
    r = subprocess.run([PRODUCER, "--url", failover(old, new), "--dest", "/queue/x", "--count", "1", "--login",
                        "alice", "--passcode", "new"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    r = subprocess.run([PRODUCER.encode(), b"--url", failover(new).encode(), b"--dest", b"/queue/x", b"--count",
                        b"1", b"--login", b"alice", b"--passcode", b"caf\xe9"], capture_output=True, timeout=60)
    assert r.returncode == 1 and b"header not UTF-8" in r.stderr, r


def test_contrib_tools_connect_timeout_and_timestamps(broker_factory):
    paused = broker_factory(name="paused")
    paused.kill(signal.SIGSTOP)  # its kernel still completes TCP handshakes
    try:
        for tool in (PRODUCER, CONSUMER):
            r = subprocess.run([tool, "--url", tcp(paused), "--dest", "/queue/x", "--connect-timeout", "300"],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 1, r.stdout + r.stderr
            assert "connect to 127.0.0.1:%d: no CONNECTED frame in time" % paused.port in r.stderr
        r = subprocess.run([PRODUCER, "--url", "tcp://x:1", "--dest", "/queue/x", "--connect-timeout", "0"],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 2 and "--connect-timeout" in r.stderr
    finally:
        paused.kill(signal.SIGCONT)
    b = broker_factory(name="live")
    r = subprocess.run([PRODUCER, "--url", tcp(b), "--dest", "/queue/ts", "--count", "3", "--timestamps"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines and all(re.match(r"^\d{10}\.\d{3} ", line) for line in lines), lines
    assert lines[-1].endswith(" sent=3 receipted=3 resent=0")


def test_producer_and_consumer_on_one_broker(broker):
    cons = Tool(CONSUMER, "--url", tcp(broker), "--dest", "/queue/pc", "--count", 200, "--ack", "client")
    try:
        assert cons.wait_line("^connected to"), cons.output()
        prod = Tool(PRODUCER, "--url", failover(broker), "--dest", "/queue/pc", "--count", 200,
                    "--size", 1000, "--persistent")
        assert prod.finish() == 0, prod.output()
        assert cons.finish() == 0, cons.output()
    finally:
        cons.kill()
    out = prod.output()
    assert "sent=200 receipted=200 resent=0" in out
    assert len(re.findall(r"^send seq=\d+$", out, re.M)) == 200
    assert len(re.findall(r"^receipt seq=\d+$", out, re.M)) == 200
    got = [int(n) for n in re.findall(r"^received seq=(\d+)$", cons.output(), re.M)]
    assert got == list(range(1, 201))          # one producer, one queue: in order
    assert "received=200 duplicates=0" in cons.output()


def test_consumer_takes_a_huge_seq_as_no_seq(broker):
    """A body claiming seq=2^64-1 made the consumer allocate a bitmap that
    large and die, and the unacked message came back to kill it again
    (helper-67): past 2^28 it is a message without a number."""
    from stompd_test import connected
    cons = Tool(CONSUMER, "--url", tcp(broker), "--dest", "/queue/hugeseq", "--count", 3, "--ack", "client")
    try:
        assert cons.wait_line("^connected to"), cons.output()
        p = connected(broker.port)
        for body in (b"seq=18446744073709551615", b"seq=268435457 x", b"seq=7"):
            p.receipt("SEND", {"destination": "/queue/hugeseq"}, "r", body)
        assert cons.finish() == 0, cons.output()
    finally:
        cons.kill()
    out = cons.output()
    assert out.count("received (no seq)") == 2 and "received seq=7" in out, out


def catches(pid, sig):
    """Whether process pid has a handler for sig (/proc's SigCgt mask)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (int(sig) - 1) & 1)
    return False


def test_tools_end_on_a_signal_while_no_broker_answers():
    """The tools' blocking calls loop while no broker answers: SIGINT and
    SIGTERM only set a flag, so only kill -9 ended them (helper-67). Their
    handlers now interrupt the call (stompc_interrupt)."""
    import time
    url = failover(free_port())
    for tool, sig, want in ((CONSUMER, signal.SIGTERM, 0), (CONSUMER, signal.SIGINT, 0),
                            (PRODUCER, signal.SIGTERM, 1)):
        t = Tool(tool, "--url", url, "--dest", "/queue/nobody")
        try:
            # once it catches the signal (its handler installed), a signal
            # ends it wherever it is
            deadline = time.time() + 30
            while not catches(t.p.pid, sig):
                assert time.time() < deadline and t.p.poll() is None, t.output()
                time.sleep(0.02)
            t.p.send_signal(sig)
            assert t.finish(15) == want, (tool, sig, t.output())
        finally:
            t.kill()


def test_producer_waits_for_its_receipts_after_a_signal():
    """SIGINT or SIGTERM stops the producer's sending, and it still waits for
    the receipts of what it sent: the chaos run stops it so and counts every
    RECEIPT. Interrupting the call at the first signal (stop 45) gave up on
    them, so a RECEIPT still on its way was missing (CI, 40-chaos). A second
    signal ends the wait at once."""
    import threading
    import time
    for second in (False, True):
        release = threading.Event()
        fb = FakeBroker(Behaviour(hold=release))
        t = Tool(PRODUCER, "--url", failover(fb.port), "--dest", "/queue/held", "--count", 100000,
                 "--interval", 20)
        try:
            deadline = time.time() + 30
            while not (fb.connections and any(f.command == "SEND" for f in fb.connections[0])):
                assert time.time() < deadline and t.p.poll() is None, t.output()
                time.sleep(0.02)
            t.p.send_signal(signal.SIGINT)
            if second:  # (a second SIGINT could merge with the first while pending)
                t.p.send_signal(signal.SIGTERM)
                assert t.finish(15) == 1, t.output()
                assert re.search(r"sent=[1-9]\d* receipted=0 ", t.output()), t.output()
                continue
            # it waits: no DISCONNECT while receipts are out
            time.sleep(1)
            assert t.p.poll() is None, t.output()
            assert all(f.command != "DISCONNECT" for f in fb.connections[0]), fb.connections[0]
            release.set()
            assert t.finish(15) == 1, t.output()  # 1: it did not send --count
            m = re.search(r"sent=(\d+) receipted=(\d+) ", t.output())
            assert m and m.group(1) == m.group(2) and int(m.group(1)) > 0, t.output()
            assert fb.connections[0][-1].command == "DISCONNECT"
        finally:
            t.kill()
            fb.close()


def test_a_producer_held_by_flow_control_stops_at_the_first_signal(broker_factory):
    """A producer whose SEND the broker's flow control held (its
    destination full, nobody consuming) went on after SIGTERM: that wait
    for the write had no end, and the first signal did not interrupt it;
    nor did --timeout bound the wait for receipts that followed, whose
    flush waited for the write too (helper-97). Now the signal ends it, and
    the program stops within --timeout."""
    import re
    import time
    b = broker_factory({"broker.dest_memory_limit": "1MiB"})
    t = Tool(PRODUCER, "--url", tcp(b), "--dest", "/queue/full", "--count", 50000, "--size", 1000,
             "--quiet", "--timeout", 2000)
    try:
        deadline = time.time() + 60
        while True:   # held: the queue is full
            st, _, data = http_request(b.http_port, "GET", "/metrics")
            if re.search(r'^stompd_destination_full\{[^}]*"/queue/full"[^}]*\} 1$', data.decode(), re.M):
                break
            assert time.time() < deadline and t.p.poll() is None, t.output()
            time.sleep(0.1)
        t.p.send_signal(signal.SIGTERM)
        assert t.finish(30) == 1, t.output()   # 1: not every message was sent (nor receipted)
        assert "still without RECEIPT after 2000 ms" in t.output(), t.output()
    finally:
        t.kill()


def test_consumer_idle_exit(broker):
    cons = Tool(CONSUMER, "--url", tcp(broker), "--dest", "/queue/idle", "--idle-exit", 300, "--ack", "auto")
    assert cons.finish(30) == 0, cons.output()
    assert "received=0 duplicates=0" in cons.output()
    cons = Tool(CONSUMER, "--url", tcp(broker), "--dest", "/queue/idle", "--idle-exit", 300, "--count", 5)
    assert cons.finish(30) == 1, cons.output()           # --count not reached


def test_library_exports_only_stompc_symbols():
    lib = os.path.join(BUILDDIR, "src", "client", ".libs", "libstompc.so")
    r = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    names = [line.split()[-1] for line in r.stdout.splitlines() if line.split()[1] in "TDBRW"]
    assert "stompc_connect" in names and "stompc_receive" in names
    assert [n for n in names if not n.startswith("stompc_")] == []   # no frame_*, buf_*, uri_*
    with open(os.path.join(BUILDDIR, "stompc.pc")) as f:
        pc = f.read()
    assert "-lstompc" in pc and "Name: stompc" in pc
