"""The scheduler in the console (ActiveMQ's scheduler management): how
many messages are scheduled and when the next is due, a paged list of
them in due order, cancellation (journaled: a kill -9 does not bring a
cancelled one back), also of one that is only in the store; and a cron
job, which is listed with its next minute, fires with a fresh message-id
naming its job, and stays scheduled until cancelled."""
import base64
import http.client
import json
import time

from stompd_test import Client, connected, login_headers, write_users

AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()}


def call(b, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=10)
    h = dict(AUTH)
    if body is not None:
        h["Content-Type"] = "application/json"
        body = json.dumps(body)
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def get(b, path):
    st, data = call(b, "GET", path)
    assert st == 200, (st, data)
    return json.loads(data)


def cancel(b, job):
    st, data = call(b, "POST", "/api/scheduler/cancel", {"id": job})
    return st, json.loads(data)


def schedule(b, n, delay_ms, dest="/queue/later", persistent=True, step=10):
    p = connected(b.port)
    ids = []
    for i in range(n):
        h = {"destination": dest, "AMQ_SCHEDULED_DELAY": str(delay_ms + step * i), "x-i": str(i)}
        if persistent:
            h["persistent"] = "true"
        p.receipt("SEND", h, "r%d" % i, b"m%d" % i)
    p.close()
    jobs = []
    after = ""
    while True:
        page = get(b, "/api/scheduler?limit=7" + ("&after=" + after if after else ""))
        jobs += page["jobs"]
        if not page["next"]:
            break
        after = page["next"]
    return jobs


def test_count_next_due_and_paged_list(broker):
    t0 = int(time.time() * 1000)
    jobs = schedule(broker, 20, 60000)
    st = get(broker, "/api/scheduler")
    assert st["scheduled"] == 20
    assert t0 + 60000 <= st["next_due_ms"] < t0 + 60000 + 10000
    assert st["next_due"].endswith("Z")
    # every job once, in due order, with what is left of its schedule
    assert len(jobs) == 20 and len({j["id"] for j in jobs}) == 20
    assert [j["due_ms"] for j in jobs] == sorted(j["due_ms"] for j in jobs)
    assert jobs[0]["due_ms"] == st["next_due_ms"]
    assert jobs[0]["destination"] == "/queue/later" and jobs[0]["persistent"] is True
    assert jobs[0]["delay"] == "60000" and jobs[0]["cron"] is None
    # the overview, the page and the metrics say it too
    assert get(broker, "/api/overview")["scheduler"]["scheduled"] == 20
    st_, page = call(broker, "GET", "/")
    assert b'id="scheduled">20<' in page and jobs[0]["id"].encode() in page
    st_, metrics = call(broker, "GET", "/metrics")
    assert b"stompd_scheduled_messages 20\n" in metrics
    st_, data = call(broker, "GET", "/api/scheduler?after=nonsense")
    assert st_ == 400
    st_, data = call(broker, "GET", "/api/scheduler?limit=0")
    assert st_ == 400


def test_cancel_is_journaled(broker_factory):
    b = broker_factory()
    c = connected(b.port)
    c.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/later"}, "s")
    jobs = schedule(b, 3, 1500, step=300)
    st, j = cancel(b, jobs[1]["id"])
    assert st == 200 and j["cancelled"] == jobs[1]["id"]
    st, j = cancel(b, jobs[1]["id"])
    assert st == 404
    st, j = cancel(b, "no-such-job")
    assert st == 404
    st, j = cancel(b, "x" * 300)
    assert st == 400 and "longer" in j["error"], j
    b.kill()
    b.restart()
    assert get(b, "/api/scheduler")["scheduled"] == 2
    c = connected(b.port)
    c.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/later"}, "s")
    got = [c.recv(timeout=10).body for _ in range(2)]
    assert got == [b"m0", b"m2"]
    c.expect_nothing(1.0)
    st = get(b, "/api/scheduler")
    assert st["scheduled"] == 0 and st["next_due_ms"] is None


def test_cancel_one_that_is_only_in_the_store(broker_factory):
    # a window of 4 KiB: the jobs due last stay in the store
    b = broker_factory({"broker.scheduler_window": "4KiB"})
    p = connected(b.port)
    for i in range(100):
        p.receipt("SEND", {"destination": "/queue/far", "persistent": "true",
                           "AMQ_SCHEDULED_DELAY": str(600000 + i)}, "r%d" % i, b"y" * 300)
    assert b.stop() == 0
    b.restart()
    st = get(b, "/api/scheduler")
    assert st["scheduled"] == 100 and st["in_memory"] < 50, st
    last = get(b, "/api/scheduler?limit=100")["jobs"][-1]
    st_, j = cancel(b, last["id"])
    assert st_ == 200, j
    assert get(b, "/api/scheduler")["scheduled"] == 99
    b.kill()
    b.restart()
    jobs = get(b, "/api/scheduler?limit=100")["jobs"]
    assert len(jobs) == 99 and last["id"] not in [x["id"] for x in jobs]


def test_cron_job(broker):
    c = connected(broker.port)
    c.receipt("SUBSCRIBE", {"id": "s", "destination": "/queue/cron"}, "s")
    p = connected(broker.port)
    p.receipt("SEND", {"destination": "/queue/cron", "AMQ_SCHEDULED_CRON": "* * * * *", "persistent": "true"}, "r",
              b"every minute")
    jobs = get(broker, "/api/scheduler")["jobs"]
    assert len(jobs) == 1 and jobs[0]["cron"] == "* * * * *"
    due = jobs[0]["due_ms"]
    assert due % 60000 == 0 and 0 < due - time.time() * 1000 <= 60000
    f = c.recv(timeout=75)
    assert time.time() * 1000 >= due
    assert f.body == b"every minute"
    assert f["scheduledJobId"] == jobs[0]["id"] and f["message-id"] != jobs[0]["id"]
    # still scheduled, a minute on
    later = get(broker, "/api/scheduler")["jobs"]
    assert [j["id"] for j in later] == [jobs[0]["id"]] and later[0]["due_ms"] == due + 60000
    st, _ = cancel(broker, jobs[0]["id"])
    assert st == 200
    assert get(broker, "/api/scheduler")["scheduled"] == 0


def test_cancel_needs_admin_everywhere(broker_factory, tmp_path):
    """auth.acl: cancelling a scheduled message is a broker-wide action
    (the job may be for any destination): the console's user needs admin
    on queue:> and topic:>."""
    users = {"root": ("r-pw", ["admins", "ops"]), "op": ("o-pw", ["admins"]), "p": ("p-pw", ["app"])}
    (tmp_path / "acl").write_text("queue:>  read=ops,app write=ops,app admin=ops,app\n"
                                  "topic:>  admin=ops\n")
    b = broker_factory({"auth.users": write_users(str(tmp_path / "users"), users),
                        "auth.acl": str(tmp_path / "acl")})
    p = Client(b.port)
    p.connect(headers=login_headers("p", "p-pw"))
    p.receipt("SEND", {"destination": "/queue/later", "AMQ_SCHEDULED_DELAY": "600000", "persistent": "true"}, "r")

    def post(user, pw, job):
        c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=10)
        c.request("POST", "/api/scheduler/cancel", body=json.dumps({"id": job}),
                  headers={"Authorization": "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode(),
                           "Content-Type": "application/json"})
        r = c.getresponse()
        data = json.loads(r.read())
        c.close()
        return r.status, data

    c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=10)
    c.request("GET", "/api/scheduler", headers={"Authorization": "Basic " + base64.b64encode(b"root:r-pw").decode()})
    jobs = json.loads(c.getresponse().read())["jobs"]
    assert len(jobs) == 1, jobs
    st, data = post("op", "o-pw", jobs[0]["id"])
    assert st == 403 and data["error"] == "access denied: no admin permission on /queue/>", data
    st, data = post("root", "r-pw", jobs[0]["id"])
    assert st == 200 and data["cancelled"] == jobs[0]["id"], data
