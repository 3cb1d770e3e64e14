"""stompd-bench against a real stompd: short queue, topic, persistent
synchronous and idle-connection runs account for every message (exit 0,
the right counts), and runs that lose messages on purpose -- a thief
consumer on the same queue, a selector that matches nothing -- exit 1 and
name what is missing. Counts only: tests never assert speed."""
import json
import os
import re
import subprocess
import threading

from stompd_test import BUILDDIR, SRCDIR, connected

BENCH = os.path.join(BUILDDIR, "contrib", "stompd-bench")


def bench(broker, *args, timeout=60):
    cmd = [BENCH, "--url", "tcp://127.0.0.1:%d" % broker.port, "-q"] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def bench_json(broker, *args):
    r = bench(broker, "--json", *args)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    assert len(lines) == 1, (r.returncode, r.stdout, r.stderr)
    return r, json.loads(lines[0])


def test_queue_every_message_once(broker):
    r, res = bench_json(broker, "--dest", "/queue/b1", "-p", 2, "-c", 2, "-n", 3000, "-s", 100)
    assert r.returncode == 0, r.stderr
    assert res["ok"] is True
    assert res["sent"] == res["measured_sent"] == 3000
    assert res["expected"] == res["measured_received"] == 3000
    assert res["missing"] == 0 and res["duplicates"] == 0 and res["foreign"] == 0
    assert res["recv_rate"] > 0 and res["latency_us"]["p50"] > 0
    assert res["receipt_rtt_us"] is None


def test_batched_sends_every_message_once(broker):
    r, res = bench_json(broker, "--dest", "/queue/b1b", "-p", 2, "-c", 1, "-n", 5001, "--batch")
    assert r.returncode == 0, r.stderr
    assert res["batch"] is True
    assert res["sent"] == res["expected"] == res["measured_received"] == 5001
    assert res["missing"] == 0 and res["duplicates"] == 0


def test_text_report_and_client_ack_modes(broker):
    r = bench(broker, "--dest", "/queue/b2", "-n", 1000, "--ack", "client", "--prefetch", 50)
    assert r.returncode == 0, r.stderr
    assert "ok: 1000 deliveries, each exactly once" in r.stdout
    assert "latency     p50" in r.stdout
    r, res = bench_json(broker, "--dest", "/queue/b2", "-n", 500, "--ack", "client-individual",
                        "--receive", "poll")
    assert r.returncode == 0, r.stderr
    assert res["measured_received"] == 500 and res["ack"] == "client-individual"


def test_topic_every_subscriber_gets_every_message(broker):
    r, res = bench_json(broker, "--dest", "/topic/b3", "-p", 1, "-c", 3, "-n", 1000)
    assert r.returncode == 0, r.stderr
    assert res["sent"] == 1000
    assert res["expected"] == res["measured_received"] == 3000  # deliveries


def test_persistent_synchronous_sends_report_receipts(broker):
    r, res = bench_json(broker, "--dest", "/queue/b4", "-p", 2, "-n", 200, "-s", 1024, "--persistent",
                        "--receipt-every", 1)
    assert r.returncode == 0, r.stderr
    assert res["persistent"] is True and res["measured_received"] == 200
    assert res["receipt_rtt_us"]["count"] == 200
    assert res["receipt_rtt_us"]["p50"] > 0
    # every K-th: 200 sends in 2 producers of 100, one receipt per 10
    r, res = bench_json(broker, "--dest", "/queue/b4", "-p", 2, "-n", 200, "--persistent",
                        "--receipt-every", 10)
    assert r.returncode == 0, r.stderr
    assert res["receipt_rtt_us"]["count"] == 20


def test_warmup_and_duration(broker):
    r, res = bench_json(broker, "--dest", "/queue/b5", "--warmup", "0.2", "--duration", "0.3",
                        "--rate", 500)
    assert r.returncode == 0, r.stderr
    # warmup messages are sent and checked, but not in the measured figures
    assert res["sent"] > res["measured_sent"] > 0
    assert res["expected"] == res["sent"]
    assert res["measured_received"] == res["measured_sent"]


def test_idle_connections_with_broker_memory(broker):
    r, res = bench_json(broker, "-p", 0, "-c", 0, "--idle", 50, "--pid", broker.proc.pid,
                        "--idle-settle", "0.2")
    assert r.returncode == 0, r.stderr
    idle = res["idle"]
    assert idle["connections"] == 50
    assert idle["rss_before_kib"] > 0 and idle["rss_after_kib"] > 0
    assert "bytes_per_connection" in idle
    r = bench(broker, "-p", 0, "-c", 0, "--idle", 20, "--pid", broker.proc.pid, "--idle-settle", "0")
    assert r.returncode == 0, r.stderr
    assert "idle        20 connections open" in r.stdout and "bytes per connection" in r.stdout


def test_idle_connections_beyond_the_broker_limit_fail(broker_factory):
    b = broker_factory({"broker.max_connections": "10"})
    r = bench(b, "-p", 0, "-c", 0, "--idle", 30)
    assert r.returncode == 1
    assert "idle connection 11:" in r.stderr


def test_messages_taken_by_another_consumer_are_named_missing(broker):
    # A consumer that is not the benchmark's takes its round-robin share.
    thief = connected(broker.port)
    thief.send("SUBSCRIBE", {"id": "t", "destination": "/queue/b6", "receipt": "s"})
    assert thief.recv().command == "RECEIPT"
    stolen = []

    def steal():
        while True:
            try:
                stolen.append(thief.recv(timeout=1.5))
            except (TimeoutError, ConnectionError, OSError):
                return

    t = threading.Thread(target=steal, daemon=True)
    t.start()
    r, res = bench_json(broker, "--dest", "/queue/b6", "-n", 200, "--drain-timeout", 300)
    t.join(timeout=10)
    thief.close()
    assert r.returncode == 1
    assert res["ok"] is False
    assert res["missing"] == len(stolen) > 0
    assert "missing: from producer 0 seq" in r.stderr
    assert "FAILED: %d missing, 0 duplicated" % len(stolen) in r.stderr


def test_selector_matching_nothing_misses_everything(broker):
    r = bench(broker, "--dest", "/queue/b7", "-n", 100, "--selector", "nosuch = 'x'", "--drain-timeout", 200)
    assert r.returncode == 1
    assert "missing: from producer 0 seq 0-99 (100)" in r.stderr
    assert "FAILED: 100 missing" in r.stdout


def test_bad_usage_and_unreachable_broker(broker):
    assert bench(broker, "--dest", "/nowhere/x").returncode == 2
    assert bench(broker, "--ack", "sometimes").returncode == 2
    assert bench(broker, "-s", 8).returncode == 2          # below the 32-byte stamp
    assert bench(broker, "-p", 0, "-c", 1).returncode == 2
    r = bench(broker, "--batch", "--rate", 100)
    assert r.returncode == 2 and "--rate" in r.stderr
    r = subprocess.run([BENCH, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--receipt-every" in r.stdout
    broker.stop()
    r = bench(broker, "-n", 10)
    assert r.returncode == 1 and "connect to 127.0.0.1" in r.stderr


def test_producer_held_by_flow_control_is_reported(broker_factory):
    # Nobody consumes and the queue is full: the broker stops reading the
    # producer, whose SEND never completes; the watchdog says so.
    b = broker_factory({"broker.dest_memory_limit": "64KiB"})
    r = bench(b, "--dest", "/queue/b8", "-c", 0, "-n", 100000, "--stall-timeout", 1, timeout=30)
    assert r.returncode == 1
    assert "producer 0: no SEND completed for 1 s" in r.stderr


def test_catchup_script_streams_and_snapshots(tmp_path):
    """contrib/bench/catchup --quick: an empty slave catches a master's
    store up both ways (the script checks which way it went), and the
    table has a row for each."""
    r = subprocess.run(["/usr/bin/python3", os.path.join(SRCDIR, "contrib", "bench", "catchup"), "--builddir",
                        BUILDDIR, "--quick", "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    for mode in ("stream", "snapshot"):
        assert re.search(r"^%s +\d+ +\d+ +[0-9.]+ +\d+" % mode, r.stdout, re.M), r.stdout
    assert os.listdir(str(tmp_path)) == []


def test_durable_script_prints_each_figure_and_its_floor(tmp_path):
    """contrib/bench/durable --quick (no ActiveMQ): one run of each stompd
    scenario, the disk's probes, and a table with every figure, its ratio
    and, where it has one, its floor on this machine; it removes its
    brokers' stores."""
    r = subprocess.run(["/usr/bin/python3", os.path.join(SRCDIR, "contrib", "bench", "durable"), "--builddir",
                        BUILDDIR, "--quick", "--no-activemq", "--runs", "1"],
                       capture_output=True, text=True, timeout=600, env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert r.returncode == 0, r.stdout + r.stderr
    for row in (r"fdatasync of a 1 KiB append, p50 +\d+ us",
                r"2 of 3 concurrent fdatasyncs, p50 +\d+ us +x fdatasync +[0-9.]+",
                r"local_disk, 1 producer, receipt RTT p50 +\d+ us +x fdatasync +[0-9.]+ +<= 1.3",
                r"local_disk 1 producer over its floor +x floor +[0-9.]+",
                r"local_disk, 32 producers +\d+ msgs/s +msgs per fdatasync p50 +[0-9.]+ +>= 12",
                r"local_disk 32 producers over non-persistent +x rate +[0-9.]+",
                r"3 nodes quorum_mem, 1 producer, RTT p50 +\d+ us +x non-persistent RTT +[0-9.]+ +<= 3",
                r"quorum_disk 1 producer over its floor +x floor +[0-9.]+"):
        assert re.search(row, r.stdout), row + "\n" + r.stdout
    assert os.listdir(str(tmp_path)) == []
