/* The console's pages and actions (DESIGN §9): the broker's live state as
 * an HTML page, JSON under /api/ and Prometheus text under /metrics, and
 * the actions (send through broker_publish, purge, delete). A node that
 * does not serve answers only /healthz and /api/status (503 naming the
 * master's console otherwise). The transport is http.c. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stompd/acl.h"
#include "stompd/auth.h"
#include "stompd/cluster.h"
#include "stompd/commit.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/console.h"
#include "stompd/dest.h"
#include "stompd/dup.h"
#include "stompd/durable.h"
#include "stompd/http.h"
#include "stompd/log.h"
#include "stompd/msg.h"
#include "stompd/node.h"
#include "stompd/persist.h"
#include "stompd/publish.h"
#include "stompd/repl.h"
#include "stompd/route.h"
#include "stompd/sched.h"
#include "stompd/server.h"
#include "stompd/store.h"
#include "stompd/tls.h"
#include "stompd/sub.h"
#include "stompd/ws.h"

/* ------------------------------------------------------------ the broker's state, as JSON */

static const char *role_name(void)
{
    return node_role_name(node_role());
}

/* The master's console: ZooKeeper's master znode says it; in manual mode
 * the master itself says it in the replication handshake. */
static const char *master_console(void)
{
    const char *mh = cluster_master_http();
    if (mh && *mh)
        return mh;
    mh = repl_slave_running() ? repl_slave_master_http() : NULL;
    return mh && *mh ? mh : NULL;
}

/* How far this follower's durable store is behind the master's head, as
 * last heard from the master (-1: no master heard from). */
static json_int_t follower_lag(void)
{
    uint64_t head = repl_slave_running() ? repl_slave_master_head() : 0;
    uint64_t durable = store_durable_lsn();
    if (!head)
        return -1;
    return head > durable ? (json_int_t)(head - durable) : 0;
}

static void add_lag(json_t *j)
{
    json_int_t lag = follower_lag();
    json_object_set_new(j, "lag", lag < 0 ? json_null() : json_integer(lag));
    uint64_t head = repl_slave_running() ? repl_slave_master_head() : 0;
    json_object_set_new(j, "master_lsn", head ? json_integer((json_int_t)head) : json_null());
}

/* A histogram as the console shows it: how many, and the bucket bounds
 * of the median and the 99th percentile. */
static json_t *hist_json(const struct hist *h)
{
    return json_pack("{s:I, s:I, s:I}", "count", (json_int_t)hist_count(h), "p50", (json_int_t)hist_quantile(h, 0.5),
                     "p99", (json_int_t)hist_quantile(h, 0.99));
}

/* The master's slaves, with their send windows. */
static json_t *replicas_json(void)
{
    json_t *slaves = json_array();
    struct repl_slave_info si[32];
    size_t ns = repl_master_running() ? repl_master_slaves(si, 32) : 0;
    uint64_t last = persist_last_lsn();
    for (size_t i = 0; i < ns; i++) {
        json_t *r = json_pack("{s:s, s:s, s:I, s:I, s:I, s:b, s:f}", "id", si[i].node_id, "peer", si[i].peer,
                              "received_lsn", (json_int_t)si[i].received, "durable_lsn", (json_int_t)si[i].durable,
                              "lag", (json_int_t)(last > si[i].received ? last - si[i].received : 0),
                              "snapshotting", si[i].snapshotting, "last_heard_s", si[i].last_rx_ago);
        json_object_set_new(r, "queued_bytes", json_integer((json_int_t)si[i].queued));
        json_object_set_new(r, "unacked_bytes", json_integer((json_int_t)si[i].unacked));
        json_object_set_new(r, "window_bytes", json_integer((json_int_t)si[i].window));
        json_object_set_new(r, "paused", si[i].paused ? json_string(si[i].paused) : json_null());
        json_object_set_new(r, "paused_s", json_real(si[i].paused_s));
        json_object_set_new(r, "ack_us", hist_json(si[i].ack_us));
        json_object_set_new(r, "durable_ack_us", hist_json(si[i].durable_us));
        json_array_append_new(slaves, r);
    }
    return slaves;
}

/* Slaves dropped lately, newest first: why one left the list. */
static json_t *dropped_json(void)
{
    json_t *a = json_array();
    struct repl_drop_info d[REPL_DROPS_KEPT];
    size_t n = repl_master_dropped(d, REPL_DROPS_KEPT);
    int64_t now = server_now_ms();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:I, s:I, s:f}", "id", d[i].node_id, "peer", d[i].peer,
                                           "reason", d[i].reason, "received_lsn", (json_int_t)d[i].received,
                                           "time_ms", (json_int_t)d[i].at_ms, "ago_s",
                                           (double)(now - d[i].at_ms) / 1000.0));
    return a;
}

static json_t *quorum_json(void)
{
    struct repl_quorum_info q;
    repl_master_quorum(&q);
    return json_pack("{s:I, s:I, s:I, s:I, s:s, s:I}", "replicas", (json_int_t)q.replicas, "slaves_needed",
                     (json_int_t)q.needed, "slaves_connected", (json_int_t)q.connected, "slaves_in_sync",
                     (json_int_t)q.in_sync, "state", q.state, "sends_waiting", (json_int_t)commit_waiting());
}

static json_t *status_json(void)
{
    uint64_t epoch;
    uint64_t lsn = persist_position(&epoch);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:f, s:s}", "role", role_name(), "broker",
                          config.broker_name, "version", PACKAGE_VERSION, "node_id",
                          persist_enabled() || node_role() != NODE_STANDALONE ? store_info()->node_id : "",
                          "epoch", (json_int_t)(node_role() == NODE_MASTER ? persist_epoch() : epoch), "lsn",
                          (json_int_t)lsn, "committed_lsn", (json_int_t)commit_lsn(), "uptime_s",
                          (double)(server_now_ms() - srv.started_ms) / 1000.0, "store", persist_describe());
    if (persist_has_store()) {
        json_object_set_new(j, "durable_lsn", json_integer((json_int_t)store_durable_lsn()));
        json_object_set_new(j, "log_first_lsn", json_integer((json_int_t)store_first_lsn()));
        json_object_set_new(j, "store_bytes", json_integer((json_int_t)store_bytes()));
        json_object_set_new(j, "fdatasync_us", hist_json(&store_stats()->fdatasync_us));
        json_object_set_new(j, "group_commit_entries", hist_json(&store_stats()->group_entries));
    }
    json_object_set_new(j, "stomp", json_string(node_serving()
                                                    ? config.stomp_listen : ""));
    const char *why = repl_master_running() ? repl_master_waiting() : NULL;
    json_object_set_new(j, "waiting", why ? json_string(why) : json_null());
    if (node_role() == NODE_SLAVE || node_role() == NODE_ELECTING) {
        json_t *m = json_object();
        const char *mid = cluster_master_id();
        json_object_set_new(m, "id", json_string(mid ? mid : repl_slave_master_id()));
        const char *mh = master_console();
        json_object_set_new(m, "http", mh ? json_string(mh) : json_null());
        const char *ms = cluster_master_stomp();
        json_object_set_new(m, "stomp", ms && *ms ? json_string(ms) : json_null());
        json_object_set_new(m, "replication", json_string(repl_slave_master()));
        json_object_set_new(m, "connected", json_boolean(repl_slave_connected()));
        json_object_set_new(j, "master", m);
        /* lag: the master's head lsn minus this store's durable lsn */
        add_lag(j);
        json_object_set_new(j, "master_console", mh ? json_string(mh) : json_null());
    }
    if (repl_master_running()) {
        json_object_set_new(j, "replicas", replicas_json());
        json_object_set_new(j, "repl_window", json_integer((json_int_t)config.repl_window));
        json_object_set_new(j, "quorum", quorum_json());
        json_object_set_new(j, "last_dropped", dropped_json());
    }
    json_object_set_new(j, "zookeeper", cluster_enabled() ? json_boolean(cluster_connected()) : json_null());
    return j;
}

static json_t *dest_stats_json(const struct dest *d)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "enqueued", (json_int_t)d->st.enqueued, "dequeued",
                     (json_int_t)d->st.dequeued, "dispatched", (json_int_t)d->st.dispatched, "redelivered",
                     (json_int_t)d->st.redelivered, "expired", (json_int_t)d->st.expired, "dead_lettered",
                     (json_int_t)d->st.dead_lettered, "dropped", (json_int_t)d->st.dropped);
}

struct collect {
    json_t *queues, *topics;
};

static void collect_dest(struct dest *d, void *arg)
{
    struct collect *c = arg;
    json_t *o = json_pack("{s:s, s:b, s:I}", "name", d->name, "temporary", dest_is_temp(d), "memory_bytes",
                          (json_int_t)d->mem);
    json_object_set_new(o, "stats", dest_stats_json(d));
    if (dest_is_queue(d)) {
        json_object_set_new(o, "pending", json_integer((json_int_t)d->q.npending));
        /* a deep backlog stays in the store: what is in memory, what only on disk */
        json_object_set_new(o, "pending_in_memory", json_integer((json_int_t)d->q.nresident));
        json_object_set_new(o, "pending_on_disk", json_integer((json_int_t)(d->q.npending - d->q.nresident)));
        json_object_set_new(o, "inflight", json_integer((json_int_t)d->q.ninflight));
        json_object_set_new(o, "consumers", json_integer((json_int_t)d->q.nconsumers));
        json_object_set_new(o, "full", json_boolean(dest_is_full(d)));
        json_array_append_new(c->queues, o);
    } else {
        /* a wildcard topic (/topic/a.>): its subscribers get every matching topic's messages */
        json_object_set_new(o, "wildcard", json_boolean(d->pattern));
        json_object_set_new(o, "subscribers", json_integer((json_int_t)d->nsubscribers));
        json_t *ds = json_array();
        struct durable *du;
        TAILQ_FOREACH(du, &d->durables, topic_link) {
            json_array_append_new(ds, json_pack("{s:s, s:s, s:o, s:I, s:I, s:b}", "client_id", du->client_id,
                                                "name", du->name, "selector",
                                                du->selector ? json_string(du->selector) : json_null(),
                                                "pending", (json_int_t)du->q.npending, "inflight",
                                                (json_int_t)du->q.ninflight, "active", du->active != NULL));
        }
        json_object_set_new(o, "durable_subscriptions", ds);
        json_array_append_new(c->topics, o);
    }
}

static json_t *connections_json(void)
{
    json_t *a = json_array();
    struct conn *c;
    TAILQ_FOREACH(c, &srv.conns, link) {
        json_t *subs = json_array();
        struct sub *s, *tmp;
        HASH_ITER(hh, c->subs, s, tmp) {
            json_array_append_new(subs, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "id", s->id, "destination",
                                                  sub_has_legs(s) ? s->spec : s->dest->name, "ack",
                                                  s->ack == ACK_AUTO ? "auto"
                                                  : s->ack == ACK_CLIENT ? "client" : "client-individual",
                                                  "prefetch", (json_int_t)s->prefetch, "inflight",
                                                  (json_int_t)s->inflight, "delivered", (json_int_t)s->delivered));
        }
        json_array_append_new(a, json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:I, s:I, s:I, s:o}", "id",
                                           (json_int_t)c->id, "peer", c->st.peer, "transport",
                                           stream_transport(&c->st), "state", conn_state_name(c->state), "version",
                                           c->version == STOMP_12 ? "1.2" : c->version == STOMP_11 ? "1.1" : "1.0",
                                           "client_id", c->client_id ? json_string(c->client_id) : json_null(),
                                           "frames_in", (json_int_t)c->frames_in, "frames_out",
                                           (json_int_t)c->frames_out, "pending_output", (json_int_t)stream_pending(&c->st),
                                           "subscriptions", subs));
        json_object_set_new(json_array_get(a, json_array_size(a) - 1), "user",
                            c->who ? json_string(c->who->name) : json_null());
    }
    return a;
}

static json_t *cluster_json(void)
{
    json_t *o = json_object();
    json_t *members = json_array();
    struct cluster_member m[64];
    size_t n = cluster_members(m, 64);
    uint64_t head = 0;
    for (size_t i = 0; i < n; i++)
        if (m[i].lsn > head)
            head = m[i].lsn;
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(members, json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "znode",
                                                 m[i].znode, "id", m[i].id, "role", m[i].role, "stomp", m[i].stomp,
                                                 "http", m[i].http, "epoch", (json_int_t)m[i].epoch, "lsn",
                                                 (json_int_t)m[i].lsn, "lag", (json_int_t)(head - m[i].lsn),
                                                 "weight", (json_int_t)m[i].weight, "self", m[i].self));
    }
    json_object_set_new(o, "members", members);
    json_object_set_new(o, "replicas", replicas_json());
    json_object_set_new(o, "last_dropped", repl_master_running() ? dropped_json() : json_array());
    json_object_set_new(o, "replicas_expected",
                        json_integer(persist_replicated() ? (json_int_t)config.replicas - 1 : 0));
    return o;
}

static json_t *counters_json(void)
{
    json_t *c = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "connections",
                     (json_int_t)srv.nconns, "connections_total", (json_int_t)srv.st.connections_total,
                     "connections_refused", (json_int_t)srv.st.connections_refused, "frames_in",
                     (json_int_t)srv.st.frames_in, "frames_out", (json_int_t)srv.st.frames_out, "messages_in",
                     (json_int_t)srv.st.messages_in, "messages_out", (json_int_t)srv.st.messages_out,
                     "protocol_errors", (json_int_t)srv.st.protocol_errors, "expired", (json_int_t)srv.st.expired,
                     "dead_lettered", (json_int_t)srv.st.dead_lettered, "duplicates", (json_int_t)srv.st.duplicates,
                     "memory_bytes", (json_int_t)dest_total_mem(), "waiting_for_store",
                     (json_int_t)commit_waiting());
    struct auth_stats as;
    auth_get_stats(&as);
    json_object_set_new(c, "auth_failures", json_integer((json_int_t)as.stomp_failures));
    json_object_set_new(c, "console_auth_failures", json_integer((json_int_t)as.console_failures));
    json_object_set_new(c, "access_denied", json_integer((json_int_t)acl_denials()));
    if (persist_has_store()) {
        json_object_set_new(c, "store_bytes", json_integer((json_int_t)store_bytes()));
        json_object_set_new(c, "store_limit", json_integer((json_int_t)config.store_limit));
        json_object_set_new(c, "store_full", json_boolean(persist_store_full()));
    }
    return c;
}

/* ------------------------------------------------------------ the scheduler */

static json_t *time_json(int64_t ms)
{
    if (ms < 0)
        return json_null();
    char iso[40];
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(iso, sizeof iso, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return json_string(iso);
}

/* How many are scheduled and when the next is due (ActiveMQ's scheduler
 * view). */
static json_t *scheduler_json(void)
{
    struct sched_info si;
    sched_info(&si);
    json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I}", "scheduled", (json_int_t)si.scheduled, "in_memory",
                          (json_int_t)si.in_memory, "non_persistent", (json_int_t)si.volatile_jobs, "fired",
                          (json_int_t)si.fired, "cancelled", (json_int_t)si.cancelled);
    json_object_set_new(j, "next_due_ms", si.next_due < 0 ? json_null() : json_integer((json_int_t)si.next_due));
    json_object_set_new(j, "next_due", time_json(si.next_due));
    return j;
}

static void add_job(void *arg, const struct sched_job_view *v)
{
    json_t *a = arg;
    const struct msg *m = v->m;
    json_t *o = json_pack("{s:s, s:I, s:o, s:s, s:b, s:I, s:I, s:s}", "id", v->id, "due_ms", (json_int_t)v->due,
                          "due", time_json(v->due), "destination", m->dest, "persistent", v->persistent, "priority",
                          (json_int_t)m->priority, "body_bytes", (json_int_t)m->body_len, "cursor", v->cursor);
    static const char *const sched[][2] = {{"AMQ_SCHEDULED_DELAY", "delay"}, {"AMQ_SCHEDULED_PERIOD", "period"},
                                           {"AMQ_SCHEDULED_REPEAT", "repeat"}, {"AMQ_SCHEDULED_CRON", "cron"}};
    for (size_t i = 0; i < sizeof sched / sizeof sched[0]; i++) {
        const char *hv = msg_get(m, sched[i][0]);
        json_object_set_new(o, sched[i][1], hv ? json_string(hv) : json_null());
    }
    json_array_append_new(a, o);
}

/* One page of jobs in due order, after a cursor: {"jobs", "next"}. */
static json_t *jobs_json(const char *after, size_t limit, int *rc)
{
    json_t *jobs = json_array();
    bool more = false;
    *rc = sched_list(after, limit, add_job, jobs, &more);
    json_t *j = scheduler_json();
    json_object_set_new(j, "jobs", jobs);
    size_t n = json_array_size(jobs);
    json_object_set_new(j, "next", more && n ? json_incref(json_object_get(json_array_get(jobs, n - 1), "cursor"))
                                             : json_null());
    return j;
}

/* A query parameter, %-decoded, into out; false when absent. */
static bool query_param(struct http_req *h, const char *name, char *out, size_t len)
{
    const char *q = http_req_query(h);
    size_t nl = strlen(name);
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t l = amp ? (size_t)(amp - q) : strlen(q);
        if (l > nl && !strncmp(q, name, nl) && q[nl] == '=') {
            size_t o = 0;
            for (const char *p = q + nl + 1; p < q + l && o + 1 < len; p++) {
                unsigned v;
                if (*p == '%' && p + 2 < q + l + 1 && sscanf(p + 1, "%2x", &v) == 1) {
                    out[o++] = (char)v;
                    p += 2;
                } else {
                    out[o++] = *p == '+' ? ' ' : *p;
                }
            }
            out[o] = '\0';
            return true;
        }
        q += l + (amp ? 1 : 0);
    }
    return false;
}

static json_t *overview_json(void)
{
    struct collect c = {json_array(), json_array()};
    dest_foreach(collect_dest, &c);
    json_t *j = json_object();
    json_object_set_new(j, "status", status_json());
    json_object_set_new(j, "counters", counters_json());
    json_object_set_new(j, "queues", c.queues);
    json_object_set_new(j, "topics", c.topics);
    json_object_set_new(j, "connections", connections_json());
    json_object_set_new(j, "cluster", cluster_json());
    json_object_set_new(j, "scheduler", scheduler_json());
    return j;
}

/* ------------------------------------------------------------ the page */

static void html_esc(struct buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': buf_append_str(b, "&amp;"); break;
        case '<': buf_append_str(b, "&lt;"); break;
        case '>': buf_append_str(b, "&gt;"); break;
        case '"': buf_append_str(b, "&quot;"); break;
        case '\'': buf_append_str(b, "&#39;"); break;
        default: buf_putc(b, *s);
        }
    }
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static long long jint(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static void td_int(struct buf *b, long long v, const char *cls)
{
    buf_printf(b, "<td class=\"num%s%s\">%lld</td>", cls ? " " : "", cls ? cls : "", v);
}

static void render_page(struct http_req *h)
{
    json_t *j = overview_json();
    json_t *st = json_object_get(j, "status"), *ct = json_object_get(j, "counters");
    struct buf b = {0};
    buf_printf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                   "<meta http-equiv=\"refresh\" content=\"%lld\">"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                   "<title>stompd ", (long long)config.http_refresh / 1000);
    html_esc(&b, config.broker_name);
    buf_printf(&b, " (%s)</title><style>"
                   "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}"
                   "h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}"
                   ".role{display:inline-block;padding:.1em .6em;border-radius:.8em;color:#fff;background:#777}"
                   ".role.master,.role.standalone{background:#2a7d2a}.role.slave{background:#2a5d9d}"
                   ".role.electing{background:#a86b00}"
                   "table{border-collapse:collapse;background:#fff;min-width:40%%}"
                   "th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}th{background:#eee}"
                   "td.num{text-align:right;font-variant-numeric:tabular-nums}td.warn{background:#fde2c0}"
                   ".meta{color:#555}.empty{color:#888;font-style:italic}button{font-size:.85em}"
                   ".warnbox{background:#fde2c0;padding:.5em;border:1px solid #d9a}"
                   "</style></head><body>\n",
               role_name());
    buf_append_str(&b, "<h1>stompd <span id=\"broker\">");
    html_esc(&b, config.broker_name);
    buf_printf(&b, "</span> <span id=\"role\" class=\"role %s\">%s</span></h1>\n", role_name(), role_name());
    buf_printf(&b, "<p class=\"meta\">node <b id=\"node\">");
    html_esc(&b, jstr(st, "node_id"));
    buf_printf(&b, "</b> &middot; epoch <b id=\"epoch\">%lld</b> &middot; journal lsn <b id=\"lsn\">%lld</b> "
                   "(committed <b>%lld</b>) &middot; up %.0f s &middot; store ",
               jint(st, "epoch"), jint(st, "lsn"), jint(st, "committed_lsn"),
               json_real_value(json_object_get(st, "uptime_s")));
    html_esc(&b, jstr(st, "store"));
    buf_append_str(&b, "</p>\n");
    const char *waiting = jstr(st, "waiting");
    if (*waiting) {
        buf_append_str(&b, "<p class=\"warnbox\" id=\"waiting\">");
        html_esc(&b, waiting);
        buf_append_str(&b, "</p>\n");
    }
    buf_printf(&b, "<p class=\"meta\" id=\"counters\">%lld connections &middot; %lld messages in &middot; "
                   "%lld messages out &middot; %lld protocol errors &middot; %lld expired &middot; "
                   "%lld dead-lettered &middot; %lld duplicates dropped &middot; %lld bytes of messages held</p>\n",
               jint(ct, "connections"), jint(ct, "messages_in"), jint(ct, "messages_out"),
               jint(ct, "protocol_errors"), jint(ct, "expired"), jint(ct, "dead_lettered"), jint(ct, "duplicates"),
               jint(ct, "memory_bytes"));

    json_t *cl = json_object_get(j, "cluster");
    json_t *members = json_object_get(cl, "members");
    if (json_array_size(members)) {
        buf_append_str(&b, "<h2>Cluster members</h2><table id=\"members\"><tr><th>node</th><th>role</th>"
                           "<th>STOMP</th><th>console</th><th>epoch</th><th>lsn</th><th>lag</th><th>weight</th></tr>\n");
        size_t i;
        json_t *m;
        json_array_foreach(members, i, m) {
            buf_append_str(&b, "<tr><td>");
            html_esc(&b, jstr(m, "id"));
            if (json_is_true(json_object_get(m, "self")))
                buf_append_str(&b, " (this node)");
            buf_append_str(&b, "</td><td>");
            html_esc(&b, jstr(m, "role"));
            buf_append_str(&b, "</td><td>");
            html_esc(&b, jstr(m, "stomp"));
            buf_append_str(&b, "</td><td>");
            html_esc(&b, jstr(m, "http"));
            buf_append_str(&b, "</td>");
            td_int(&b, jint(m, "epoch"), NULL);
            td_int(&b, jint(m, "lsn"), NULL);
            td_int(&b, jint(m, "lag"), jint(m, "lag") > 1000 ? "warn" : NULL);
            td_int(&b, jint(m, "weight"), NULL);
            buf_append_str(&b, "</tr>\n");
        }
        buf_append_str(&b, "</table>\n");
    }
    json_t *replicas = json_object_get(cl, "replicas");
    if (persist_replicated() && node_role() == NODE_MASTER) {
        buf_printf(&b, "<h2>Replicas (%zu of %lld connected)</h2>", json_array_size(replicas),
                   jint(cl, "replicas_expected"));
        buf_append_str(&b, "<table id=\"replicas\"><tr><th>node</th><th>address</th><th>received</th><th>durable</th>"
                           "<th>lag</th><th>state</th><th>last heard</th><th>unacknowledged bytes</th>"
                           "<th>queued bytes</th></tr>\n");
        size_t i;
        json_t *r;
        json_array_foreach(replicas, i, r) {
            buf_append_str(&b, "<tr><td>");
            html_esc(&b, jstr(r, "id"));
            buf_append_str(&b, "</td><td>");
            html_esc(&b, jstr(r, "peer"));
            buf_append_str(&b, "</td>");
            td_int(&b, jint(r, "received_lsn"), NULL);
            td_int(&b, jint(r, "durable_lsn"), NULL);
            td_int(&b, jint(r, "lag"), jint(r, "lag") > 1000 ? "warn" : NULL);
            const char *paused = jstr(r, "paused");
            buf_printf(&b, "<td%s>%s", *paused ? " class=\"warn\"" : "",
                       json_is_true(json_object_get(r, "snapshotting")) ? "snapshot" : "streaming");
            if (*paused) {
                buf_printf(&b, ", paused %.1f s: ", json_real_value(json_object_get(r, "paused_s")));
                html_esc(&b, paused);
            }
            buf_printf(&b, "</td><td class=\"num\">%.1f s ago</td>",
                       json_real_value(json_object_get(r, "last_heard_s")));
            buf_printf(&b, "<td class=\"num\">%lld of %lld</td>", jint(r, "unacked_bytes"), jint(r, "window_bytes"));
            td_int(&b, jint(r, "queued_bytes"), NULL);
            buf_append_str(&b, "</tr>\n");
        }
        buf_append_str(&b, "</table>\n");
        json_t *dropped = json_object_get(cl, "last_dropped");
        if (json_array_size(dropped)) {
            buf_append_str(&b, "<h2>Replicas dropped lately</h2><table id=\"dropped\"><tr><th>node</th>"
                               "<th>address</th><th>when</th><th>at lsn</th><th>why</th></tr>\n");
            json_array_foreach(dropped, i, r) {
                buf_append_str(&b, "<tr><td>");
                html_esc(&b, jstr(r, "id"));
                buf_append_str(&b, "</td><td>");
                html_esc(&b, jstr(r, "peer"));
                buf_printf(&b, "</td><td class=\"num\">%.0f s ago</td>", json_real_value(json_object_get(r, "ago_s")));
                td_int(&b, jint(r, "received_lsn"), NULL);
                buf_append_str(&b, "<td>");
                html_esc(&b, jstr(r, "reason"));
                buf_append_str(&b, "</td></tr>\n");
            }
            buf_append_str(&b, "</table>\n");
        }
    }

    json_t *queues = json_object_get(j, "queues");
    buf_append_str(&b, "<h2>Queues</h2>");
    if (!json_array_size(queues)) {
        buf_append_str(&b, "<p class=\"empty\">no queues</p>\n");
    } else {
        buf_append_str(&b, "<table id=\"queues\"><tr><th>queue</th><th>pending</th><th>in flight</th><th>consumers</th>"
                           "<th>enqueued</th><th>dequeued</th><th>redelivered</th><th>expired</th>"
                           "<th>dead-lettered</th><th>memory</th><th></th></tr>\n");
        size_t i;
        json_t *q;
        json_array_foreach(queues, i, q) {
            json_t *s = json_object_get(q, "stats");
            buf_append_str(&b, "<tr><td class=\"name\">");
            html_esc(&b, jstr(q, "name"));
            buf_append_str(&b, "</td>");
            td_int(&b, jint(q, "pending"), json_is_true(json_object_get(q, "full")) ? "warn pending" : "pending");
            td_int(&b, jint(q, "inflight"), NULL);
            td_int(&b, jint(q, "consumers"), "consumers");
            td_int(&b, jint(s, "enqueued"), "enqueued");
            td_int(&b, jint(s, "dequeued"), "dequeued");
            td_int(&b, jint(s, "redelivered"), NULL);
            td_int(&b, jint(s, "expired"), NULL);
            td_int(&b, jint(s, "dead_lettered"), NULL);
            td_int(&b, jint(q, "memory_bytes"), NULL);
            buf_append_str(&b, "<td><button data-act=\"purge\" data-dest=\"");
            html_esc(&b, jstr(q, "name"));
            buf_append_str(&b, "\">purge</button> <button data-act=\"delete\" data-dest=\"");
            html_esc(&b, jstr(q, "name"));
            buf_append_str(&b, "\">delete</button></td></tr>\n");
        }
        buf_append_str(&b, "</table>\n");
    }
    json_t *topics = json_object_get(j, "topics");
    buf_append_str(&b, "<h2>Topics</h2>");
    if (!json_array_size(topics)) {
        buf_append_str(&b, "<p class=\"empty\">no topics</p>\n");
    } else {
        buf_append_str(&b, "<table id=\"topics\"><tr><th>topic</th><th>subscribers</th><th>durable subscriptions"
                           "</th><th>enqueued</th><th>dispatched</th><th></th></tr>\n");
        size_t i;
        json_t *t;
        json_array_foreach(topics, i, t) {
            json_t *s = json_object_get(t, "stats");
            buf_append_str(&b, "<tr><td class=\"name\">");
            html_esc(&b, jstr(t, "name"));
            buf_append_str(&b, "</td>");
            td_int(&b, jint(t, "subscribers"), "subscribers");
            buf_append_str(&b, "<td>");
            size_t k;
            json_t *d;
            json_array_foreach(json_object_get(t, "durable_subscriptions"), k, d) {
                buf_append_str(&b, k ? "<br>" : "");
                html_esc(&b, jstr(d, "client_id"));
                buf_putc(&b, '/');
                html_esc(&b, jstr(d, "name"));
                buf_printf(&b, " (%lld pending, %s)", jint(d, "pending"),
                           json_is_true(json_object_get(d, "active")) ? "active" : "inactive");
            }
            buf_append_str(&b, "</td>");
            td_int(&b, jint(s, "enqueued"), "enqueued");
            td_int(&b, jint(s, "dispatched"), NULL);
            buf_append_str(&b, "<td><button data-act=\"delete\" data-dest=\"");
            html_esc(&b, jstr(t, "name"));
            buf_append_str(&b, "\">delete</button></td></tr>\n");
        }
        buf_append_str(&b, "</table>\n");
    }
    json_t *sc = json_object_get(j, "scheduler");
    buf_printf(&b, "<h2>Scheduled messages</h2><p class=\"meta\" id=\"scheduler\"><b id=\"scheduled\">%lld</b> "
                   "scheduled (%lld in memory, %lld non-persistent) &middot; next due <b id=\"next-due\">",
               jint(sc, "scheduled"), jint(sc, "in_memory"), jint(sc, "non_persistent"));
    html_esc(&b, json_is_null(json_object_get(sc, "next_due")) ? "-" : jstr(sc, "next_due"));
    buf_printf(&b, "</b> &middot; %lld fired &middot; %lld cancelled &middot; all of them: "
                   "<a href=\"/api/scheduler\">/api/scheduler</a></p>\n",
               jint(sc, "fired"), jint(sc, "cancelled"));
    int lrc;
    json_t *first = jobs_json(NULL, 20, &lrc);
    json_t *jobs = json_object_get(first, "jobs");
    if (json_array_size(jobs)) {
        buf_append_str(&b, "<table id=\"jobs\"><tr><th>job id</th><th>due</th><th>destination</th><th>persistent</th>"
                           "<th>period</th><th>repeat</th><th>cron</th><th></th></tr>\n");
        size_t i;
        json_t *o;
        json_array_foreach(jobs, i, o) {
            buf_append_str(&b, "<tr><td class=\"name\">");
            html_esc(&b, jstr(o, "id"));
            buf_append_str(&b, "</td><td>");
            html_esc(&b, jstr(o, "due"));
            buf_append_str(&b, "</td><td>");
            html_esc(&b, jstr(o, "destination"));
            buf_printf(&b, "</td><td>%s</td><td>", json_is_true(json_object_get(o, "persistent")) ? "yes" : "no");
            html_esc(&b, jstr(o, "period"));
            buf_append_str(&b, "</td><td>");
            html_esc(&b, jstr(o, "repeat"));
            buf_append_str(&b, "</td><td>");
            html_esc(&b, jstr(o, "cron"));
            buf_append_str(&b, "</td><td><button data-act=\"cancel\" data-id=\"");
            html_esc(&b, jstr(o, "id"));
            buf_append_str(&b, "\">cancel</button></td></tr>\n");
        }
        buf_append_str(&b, "</table>\n");
    }
    json_decref(first);
    json_t *conns = json_object_get(j, "connections");
    buf_printf(&b, "<h2>Connections (%zu)</h2>", json_array_size(conns));
    if (json_array_size(conns)) {
        buf_append_str(&b, "<table id=\"connections\"><tr><th>id</th><th>peer</th><th>transport</th><th>STOMP</th>"
                           "<th>client-id</th>"
                           "<th>subscriptions</th><th>frames in</th><th>frames out</th></tr>\n");
        size_t i;
        json_t *c;
        json_array_foreach(conns, i, c) {
            buf_printf(&b, "<tr><td class=\"num\">%lld</td><td>", jint(c, "id"));
            html_esc(&b, jstr(c, "peer"));
            buf_append_str(&b, "</td><td class=\"transport\">");
            html_esc(&b, jstr(c, "transport"));
            buf_append_str(&b, "</td><td>");
            html_esc(&b, jstr(c, "version"));
            buf_append_str(&b, "</td><td>");
            html_esc(&b, jstr(c, "client_id"));
            buf_append_str(&b, "</td><td>");
            size_t k;
            json_t *s;
            json_array_foreach(json_object_get(c, "subscriptions"), k, s) {
                buf_append_str(&b, k ? "<br>" : "");
                html_esc(&b, jstr(s, "destination"));
                buf_printf(&b, " (%s, %lld in flight)", jstr(s, "ack"), jint(s, "inflight"));
            }
            buf_append_str(&b, "</td>");
            td_int(&b, jint(c, "frames_in"), NULL);
            td_int(&b, jint(c, "frames_out"), NULL);
            buf_append_str(&b, "</tr>\n");
        }
        buf_append_str(&b, "</table>\n");
    }
    buf_append_str(&b, "<p class=\"meta\">JSON: <a href=\"/api/overview\">/api/overview</a> &middot; "
                       "<a href=\"/api/scheduler\">/api/scheduler</a> &middot; "
                       "<a href=\"/metrics\">/metrics</a> &middot; <a href=\"/healthz\">/healthz</a></p>\n"
                       "<script>\n"
                       "document.querySelectorAll('button[data-act]').forEach(function(b){\n"
                       "  b.addEventListener('click', function(){\n"
                       "    var d=b.dataset.dest, a=b.dataset.act;\n"
                       "    if(a==='cancel'){\n"
                       "      if(!confirm('cancel scheduled message '+b.dataset.id+'?'))return;\n"
                       "      fetch('/api/scheduler/cancel', {method:'POST', headers:{'Content-Type':'application/json'},"
                       " body:JSON.stringify({id:b.dataset.id})}).then(function(){location.reload();});\n"
                       "      return;\n"
                       "    }\n"
                       "    if(!confirm(a+' '+d+'?'))return;\n"
                       "    fetch('/api/destinations/'+a, {method:'POST', headers:{'Content-Type':'application/json'},"
                       " body:JSON.stringify({destination:d})}).then(function(){location.reload();});\n"
                       "  });\n"
                       "});\n"
                       "</script>\n</body></html>\n");
    json_decref(j);
    http_respond(h, 200, "text/html; charset=utf-8", b.data, b.len, NULL);
    buf_free(&b);
}

/* ------------------------------------------------------------ /metrics */

static void prom_label(struct buf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            buf_putc(b, '\\');
        if (*v == '\n') {
            buf_append_str(b, "\\n");
            continue;
        }
        buf_putc(b, *v);
    }
}

/* One metric family over every destination it applies to. */
struct family {
    const char *name, *type, *help;
    int applies; /* 0 all, 1 queues, 2 topics */
    uint64_t (*get)(const struct dest *d);
};

static uint64_t f_enq(const struct dest *d) { return d->st.enqueued; }
static uint64_t f_deq(const struct dest *d) { return d->st.dequeued; }
static uint64_t f_disp(const struct dest *d) { return d->st.dispatched; }
static uint64_t f_redel(const struct dest *d) { return d->st.redelivered; }
static uint64_t f_exp(const struct dest *d) { return d->st.expired; }
static uint64_t f_dlq(const struct dest *d) { return d->st.dead_lettered; }
static uint64_t f_mem(const struct dest *d) { return (uint64_t)d->mem; }
static uint64_t f_pend(const struct dest *d) { return d->q.npending; }
static uint64_t f_pmem(const struct dest *d) { return d->q.nresident; }
static uint64_t f_pdisk(const struct dest *d) { return d->q.npending - d->q.nresident; }
static uint64_t f_infl(const struct dest *d) { return d->q.ninflight; }
static uint64_t f_cons(const struct dest *d) { return d->q.nconsumers; }
static uint64_t f_subs(const struct dest *d) { return d->nsubscribers; }
static uint64_t f_durs(const struct dest *d) { return d->ndurables; }

static const struct family families[] = {
    {"enqueued_total", "counter", "Messages accepted", 0, f_enq},
    {"dequeued_total", "counter", "Messages acknowledged", 0, f_deq},
    {"dispatched_total", "counter", "Deliveries, redeliveries included", 0, f_disp},
    {"redelivered_total", "counter", "Redeliveries", 0, f_redel},
    {"expired_total", "counter", "Messages expired", 0, f_exp},
    {"dead_lettered_total", "counter", "Messages moved to a dead-letter queue", 0, f_dlq},
    {"memory_bytes", "gauge", "Bytes of messages held", 0, f_mem},
    {"pending", "gauge", "Messages waiting in a queue", 1, f_pend},
    {"pending_in_memory", "gauge", "Of the messages waiting in a queue, those held in memory", 1, f_pmem},
    {"pending_on_disk", "gauge", "Of the messages waiting in a queue, those only in the store (paged out)", 1, f_pdisk},
    {"inflight", "gauge", "Messages delivered and not yet acknowledged", 1, f_infl},
    {"consumers", "gauge", "Subscriptions consuming from a queue", 1, f_cons},
    {"subscribers", "gauge", "Active subscriptions of a topic", 2, f_subs},
    {"durable_subscriptions", "gauge", "Durable subscriptions of a topic", 2, f_durs},
};

struct metric_ctx {
    struct buf *b;
    const struct family *f;
};

static void metric_dest(struct dest *d, void *arg)
{
    struct metric_ctx *x = arg;
    if ((x->f->applies == 1 && !dest_is_queue(d)) || (x->f->applies == 2 && dest_is_queue(d)))
        return;
    buf_printf(x->b, "stompd_destination_%s{destination=\"", x->f->name);
    prom_label(x->b, d->name);
    buf_printf(x->b, "\",type=\"%s\"} %llu\n", dest_is_queue(d) ? "queue" : "topic",
               (unsigned long long)x->f->get(d));
}

/* The durable path: the store's fdatasync latency and group commit size,
 * and each slave's acknowledgement latency. */
static void durable_metrics(struct buf *b)
{
    if (persist_has_store()) {
        const struct store_stats *st = store_stats();
        hist_prom_header(b, "stompd_store_fdatasync_seconds", "Time of each fdatasync of the store's log");
        hist_prom(b, "stompd_store_fdatasync_seconds", "", &st->fdatasync_us, 1e-6);
        hist_prom_header(b, "stompd_store_group_commit_entries", "Journal entries made durable by one fdatasync");
        hist_prom(b, "stompd_store_group_commit_entries", "", &st->group_entries, 1);
    }
    if (!repl_master_running())
        return;
    struct repl_slave_info si[32];
    size_t ns = repl_master_slaves(si, 32);
    static const struct {
        const char *name, *help;
    } hf[] = {
        {"stompd_repl_ack_seconds", "From a journal entry's append to a slave's acknowledgement that it has it"},
        {"stompd_repl_durable_ack_seconds", "From a journal entry's append to a slave's acknowledgement that it "
                                            "has it on disk"},
    };
    for (size_t k = 0; k < 2; k++) {
        hist_prom_header(b, hf[k].name, hf[k].help);
        for (size_t i = 0; i < ns; i++) {
            struct buf l = {0};
            buf_printf(&l, "node=\"");
            prom_label(&l, si[i].node_id);
            buf_printf(&l, "\"");
            buf_putc(&l, '\0');
            hist_prom(b, hf[k].name, l.data, k == 0 ? si[i].ack_us : si[i].durable_us, 1e-6);
            buf_free(&l);
        }
    }
}

/* Each listener's accepted and refused connections, and how often it ran
 * out of file descriptors. */
static void listener_metrics(struct buf *b)
{
    const struct listener *ls[16];
    size_t n = listener_list(ls, 16);
    static const struct {
        const char *name, *help;
    } lf[] = {
        {"stompd_listener_accepted_total", "Connections a listener accepted"},
        {"stompd_listener_refused_total", "Connections a listener refused (at its limit, or out of descriptors)"},
        {"stompd_listener_fd_exhausted_total", "Times a listener could not accept for lack of file descriptors"},
    };
    for (size_t k = 0; k < 3; k++) {
        buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", lf[k].name, lf[k].help, lf[k].name);
        for (size_t i = 0; i < n; i++) {
            uint64_t v = k == 0 ? ls[i]->accepted : k == 1 ? ls[i]->refused : ls[i]->fd_exhausted;
            buf_printf(b, "%s{listener=\"", lf[k].name);
            prom_label(b, ls[i]->name);
            buf_printf(b, "\"} %llu\n", (unsigned long long)v);
        }
    }
}

static void render_metrics(struct http_req *h)
{
    struct buf b = {0};
    uint64_t epoch;
    uint64_t lsn = persist_position(&epoch);
#define M(help, type, name, value)                                                                             \
    buf_printf(&b, "# HELP stompd_" name " " help "\n# TYPE stompd_" name " " type "\nstompd_" name " %llu\n",  \
               (unsigned long long)(value))
    buf_printf(&b, "# HELP stompd_role 1 for this node's current role\n# TYPE stompd_role gauge\n");
    buf_printf(&b, "stompd_role{role=\"%s\"} 1\n", role_name());
    M("Client connections open", "gauge", "connections", srv.nconns);
    M("Client connections accepted", "counter", "connections_total", srv.st.connections_total);
    M("Client connections refused at the limit", "counter", "connections_refused_total", srv.st.connections_refused);
    M("Frames received", "counter", "frames_in_total", srv.st.frames_in);
    M("Frames sent", "counter", "frames_out_total", srv.st.frames_out);
    M("Messages accepted", "counter", "messages_in_total", srv.st.messages_in);
    M("Message deliveries", "counter", "messages_out_total", srv.st.messages_out);
    M("Connections closed for a protocol error", "counter", "protocol_errors_total", srv.st.protocol_errors);
    M("Messages expired", "counter", "expired_total", srv.st.expired);
    M("Messages moved to a dead-letter queue", "counter", "dead_lettered_total", srv.st.dead_lettered);
    M("Resent duplicates dropped", "counter", "duplicates_total", srv.st.duplicates);
    struct auth_stats as;
    auth_get_stats(&as);
    M("CONNECTs refused for their credentials", "counter", "auth_failures_total", as.stomp_failures);
    M("Console requests refused for their credentials or group", "counter", "console_auth_failures_total",
      as.console_failures);
    M("Frames and console actions refused by auth.acl", "counter", "access_denied_total", acl_denials());
    M("Password checks run (crypt(3) on the auth.hash_threads)", "counter", "auth_checks_total", as.checks);
    M("Logins answered from the login cache (auth.cache)", "counter", "auth_cache_hits_total", as.cache_hits);
    M("Logins that joined an identical password check in flight", "counter", "auth_coalesced_total", as.coalesced);
    M("Bytes of messages held", "gauge", "memory_bytes", (unsigned long long)dest_total_mem());
    M("Frames waiting for the journal", "gauge", "waiting_for_store", commit_waiting());
    M("Journal position", "gauge", "journal_lsn", lsn);
    M("Committed journal position", "gauge", "committed_lsn", commit_lsn());
    const struct ws_stats *ws = ws_stats();
    M("WebSocket connections open", "gauge", "ws_connections", ws->open);
    M("WebSocket upgrade requests accepted", "counter", "ws_upgrades_total", ws->upgrades);
    M("WebSocket connection attempts refused (HTTP 4xx, 503 at the limit)", "counter", "ws_refused_total",
      ws->refused);
    M("WebSocket connections failed for breaking a framing rule (close 1002, 1007, 1009)", "counter",
      "ws_failed_total", ws->failed);
    M("WebSocket messages received", "counter", "ws_messages_in_total", ws->messages_in);
    M("WebSocket messages sent", "counter", "ws_messages_out_total", ws->messages_out);
    M("Epoch", "gauge", "epoch", node_role() == NODE_MASTER ? persist_epoch() : epoch);
    struct sched_info sched;
    sched_info(&sched);
    M("Scheduled messages waiting (AMQ_SCHEDULED_*)", "gauge", "scheduled_messages", sched.scheduled);
    M("Scheduled messages held in memory", "gauge", "scheduled_in_memory", sched.in_memory);
    M("Scheduled deliveries made", "counter", "scheduled_fired_total", sched.fired);
    M("Scheduled messages cancelled", "counter", "scheduled_cancelled_total", sched.cancelled);
    struct tls_stats ts;
    tls_get_stats(&ts);
    M("TLS handshakes finished", "counter", "tls_handshakes_total", ts.handshakes);
    M("TLS handshakes failed (no TLS, bad certificate, timed out)", "counter", "tls_handshake_failures_total",
      ts.failed);
    M("TLS handshakes not finished within tls.handshake_timeout", "counter", "tls_handshake_timeouts_total",
      ts.timed_out);
    M("Replication peers refused: no proof of store.security_token", "counter", "repl_auth_failures_total",
      repl_master_auth_failures());
    M("Replication peers closed unauthenticated to make room (store.max_unauthenticated)", "counter",
      "repl_handshakes_evicted_total", repl_master_handshakes_evicted());
    struct sub_selector_stats sel;
    sub_selector_stats(&sel);
    M("Selector verdicts put off to a later loop iteration by stomp.selector_budget", "counter",
      "selector_deferred_total", sel.deferred);
    M("Selector evaluations a whole stomp.selector_budget could not finish (taken as not matching)", "counter",
      "selector_over_budget_total", sel.over_budget);
#undef M
    if (repl_master_running()) {
        struct repl_slave_info si[32];
        size_t ns = repl_master_slaves(si, 32);
        buf_printf(&b, "# HELP stompd_repl_window_bytes Journal bytes in flight to one slave at most "
                       "(store.repl_window)\n# TYPE stompd_repl_window_bytes gauge\nstompd_repl_window_bytes %lld\n",
                   (long long)config.repl_window);
        static const struct {
            const char *name, *help;
        } rf[] = {
            {"repl_unacked_bytes", "Journal bytes sent to a slave and not acknowledged"},
            {"repl_queued_bytes", "Bytes for a slave not yet taken by its socket"},
            {"repl_received_lsn", "Last journal position a slave acknowledged"},
            {"repl_paused", "1 while nothing more can be sent to a slave (window or socket full)"},
        };
        for (size_t k = 0; k < sizeof rf / sizeof rf[0]; k++) {
            buf_printf(&b, "# HELP stompd_%s %s\n# TYPE stompd_%s gauge\n", rf[k].name, rf[k].help, rf[k].name);
            for (size_t i = 0; i < ns; i++) {
                uint64_t v = k == 0 ? si[i].unacked : k == 1 ? si[i].queued : k == 2 ? si[i].received
                                                                            : (uint64_t)(si[i].paused != NULL);
                buf_printf(&b, "stompd_%s{node=\"", rf[k].name);
                prom_label(&b, si[i].node_id);
                buf_printf(&b, "\"} %llu\n", (unsigned long long)v);
            }
        }
    }
    durable_metrics(&b);
    listener_metrics(&b);
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        struct metric_ctx x = {&b, &families[i]};
        buf_printf(&b, "# HELP stompd_destination_%s %s\n# TYPE stompd_destination_%s %s\n", families[i].name,
                   families[i].help, families[i].name, families[i].type);
        dest_foreach(metric_dest, &x);
    }
    http_respond(h, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len, NULL);
    buf_free(&b);
}

/* ------------------------------------------------------------ actions */

static json_t *parse_body(struct http_req *h)
{
    if (!http_req_is_json(h)) {
        http_respond_error(h, 415, "send Content-Type: application/json", NULL);
        return NULL;
    }
    json_error_t jerr;
    size_t blen;
    const char *body = http_req_body(h, &blen);
    json_t *j = json_loadb(body, blen, 0, &jerr);
    if (!j || !json_is_object(j)) {
        char msg[256];
        snprintf(msg, sizeof msg, "the body is not a JSON object: %s", j ? "not an object" : jerr.text);
        json_decref(j);
        http_respond_error(h, 400, msg, NULL);
        return NULL;
    }
    return j;
}

static struct dest *body_dest(struct http_req *h, json_t *j)
{
    const char *name = json_string_value(json_object_get(j, "destination"));
    if (!name) {
        http_respond_error(h, 400, "\"destination\" (a string) is required", NULL);
        return NULL;
    }
    struct dest *d = dest_find(name);
    if (!d)
        http_respond_error(h, 404, "no such destination", NULL);
    return d;
}

/* The console acts for its user: admin on d to purge or delete it. */
static bool may_admin(struct http_req *h, const struct dest *d)
{
    const struct principal *who = http_req_principal(h);
    if (acl_allows_dest(who, d->name, ACL_ADMIN))
        return true;
    char message[256], detail[1200];
    acl_explain(who, d->name, ACL_ADMIN, message, sizeof message, detail, sizeof detail);
    http_respond_error(h, 403, message, NULL);
    return false;
}

/* The scheduler's actions are broker-wide (a job may be for any
 * destination, and one only in the store is not read to find out which):
 * admin on every queue and topic (ACL entries queue:> and topic:>). */
static bool may_admin_scheduler(struct http_req *h)
{
    static const char *const all[] = {"/queue/>", "/topic/>"};
    const struct principal *who = http_req_principal(h);
    for (size_t i = 0; i < 2; i++) {
        if (acl_allows_dest(who, all[i], ACL_ADMIN))
            continue;
        char message[256], detail[1200];
        acl_explain(who, all[i], ACL_ADMIN, message, sizeof message, detail, sizeof detail);
        http_respond_error(h, 403, message, NULL);
        return false;
    }
    return true;
}

/* "user (peer)" for the log */
static const char *actor(struct http_req *h)
{
    static char buf[400];
    const struct principal *who = http_req_principal(h);
    snprintf(buf, sizeof buf, "%.128s (%s)", who ? who->name : "anyone, http.auth = false", http_req_peer(h));
    return buf;
}

static void action_purge(struct http_req *h)
{
    json_t *j = parse_body(h);
    if (!j)
        return;
    struct dest *d = body_dest(h, j);
    if (d && !may_admin(h, d)) {
        d = NULL;
    } else if (d && !dest_is_queue(d)) {
        http_respond_error(h, 400, "only queues can be purged", NULL);
        d = NULL;
    } else if (d) {
        persist_purge(d);
        uint64_t n = queue_purge(&d->q);
        log_info("console: %s purged (%llu messages) by %s", d->name, (unsigned long long)n, actor(h));
        http_respond_json(h, 200, json_pack("{s:s, s:I}", "purged", d->name, "messages", (json_int_t)n));
    }
    json_decref(j);
}

static void action_delete(struct http_req *h)
{
    json_t *j = parse_body(h);
    if (!j)
        return;
    struct dest *d = body_dest(h, j);
    if (d && may_admin(h, d)) {
        char name[1100];
        snprintf(name, sizeof name, "%s", d->name);
        persist_purge(d);
        if (d->kept)
            persist_dest_forgotten(d); /* a virtual topic's queue: gone for good */
        dest_delete(d);
        log_info("console: %s deleted by %s", name, actor(h));
        http_respond_json(h, 200, json_pack("{s:s}", "deleted", name));
    }
    json_decref(j);
}

/* A console send waiting for the journal (or for room). */
struct pending_send {
    struct http_req *h;
    struct op *op;
    bool persistent;
};

static void send_done(void *arg, bool ok)
{
    struct pending_send *ps = arg;
    if (ok)
        http_respond_json(ps->h, 200, json_pack("{s:b, s:b}", "sent", 1, "durable", ps->persistent));
    else
        http_respond_error(ps->h, 500, "the store could not make the message durable", NULL);
    free(ps);
}

/* The console connection closed first: its message still goes. */
static void send_gone(void *arg)
{
    struct pending_send *ps = arg;
    if (ps->op)
        op_cancel_notify(ps->op);
    free(ps);
}

/* A refused console send, in words that name the header and the limit. */
static void send_refused(struct http_req *h, const struct stomp_header *hs, size_t n, size_t bad,
                         const char *err)
{
    static const struct {
        const char *err, *key;
        const int64_t *value;
    } limits[] = {
        {"header line too long", "stomp.max_header_size", &config.max_header_size},
        {"too many headers", "stomp.max_headers", &config.max_headers},
        {"frame too large", "stomp.max_frame_size", &config.max_frame_size},
        {"command line too long", "stomp.max_command_size", &config.max_command_size},
    };
    char limit[96] = "";
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
        if (!strcmp(err, limits[i].err))
            snprintf(limit, sizeof limit, " (%s is %lld)", limits[i].key, (long long)*limits[i].value);
    char msg[400];
    if (bad < n) {
        /* at most 64 bytes of the name, cut on a UTF-8 boundary */
        size_t nl = hs[bad].name_len;
        if (nl > 64) {
            nl = 64;
            while (nl && ((unsigned char)hs[bad].name[nl] & 0xc0) == 0x80)
                nl--;
        }
        snprintf(msg, sizeof msg, "header \"%.*s%s\": %s%s", (int)strnlen(hs[bad].name, nl), hs[bad].name,
                 nl < hs[bad].name_len ? "..." : "", err, limit);
    } else {
        snprintf(msg, sizeof msg, "%s%s", err, limit);
    }
    http_respond_error(h, 400, msg, NULL);
}

/* POST /api/send {"destination", "body", "headers": {...}, "persistent",
 * "priority", "expires"}: the same checks as a STOMP SEND. The request
 * stands for a 1.2 SEND (1.2 can carry any byte but NUL in a header): the
 * frame that SEND would be is checked as the parser checks one, so the
 * console delivers nothing a STOMP producer could not have sent. */
static void action_send(struct http_req *h)
{
    json_t *j = parse_body(h);
    if (!j)
        return;
    const char *name = json_string_value(json_object_get(j, "destination"));
    json_t *bj = json_object_get(j, "body");
    const char *body = json_string_value(bj);
    size_t body_len = body ? json_string_length(bj) : 0;
    json_t *hj = json_object_get(j, "headers");
    json_t *pj = json_object_get(j, "persistent"), *prj = json_object_get(j, "priority");
    json_t *ej = json_object_get(j, "expires");
    const char *err = NULL;
    enum dest_kind kind;
    if (!name)
        err = "\"destination\" (a string) is required";
    else if (!strncmp(name, "/temp-", 6) || !strncmp(name, "/remote-temp-", 13))
        err = "temporary destinations belong to their STOMP connection";
    else if (dest_kind_of(name, &kind, &err) != 0)
        ;
    else if (bj && !body)
        err = "\"body\" must be a string";
    else if (hj && !json_is_object(hj))
        err = "\"headers\" must be an object of strings";
    else if (pj && !json_is_boolean(pj))
        err = "\"persistent\" must be true or false";
    else if (prj && (!json_is_integer(prj) || json_integer_value(prj) < 0 || json_integer_value(prj) > 9))
        err = "\"priority\" must be an integer 0-9";
    else if (ej && (!json_is_integer(ej) || json_integer_value(ej) < 0))
        err = "\"expires\" must be a time in ms since the epoch (0 = never)";
    if (err) {
        http_respond_error(h, 400, err, NULL);
        json_decref(j);
        return;
    }
    /* The headers as the SEND would carry them: the caller's first (those
     * the message keeps are compacted to the front afterwards), then the
     * ones the request gives as fields. */
    size_t nu = hj ? json_object_size(hj) : 0, n = 0;
    struct stomp_header *hs = malloc((nu + 4) * sizeof *hs);
    if (!hs)
        abort();
    if (hj) {
        const char *key;
        json_t *v;
        json_object_foreach(hj, key, v) {
            if (!json_is_string(v)) {
                err = "\"headers\" must be an object of strings";
                break;
            }
            hs[n++] = (struct stomp_header){key, json_string_value(v), (uint32_t)strlen(key),
                                            (uint32_t)json_string_length(v)};
        }
    }
    char prio_s[8], exp[24];
    hs[n++] = (struct stomp_header){"destination", name, 11, (uint32_t)strlen(name)};
    if (pj)
        hs[n++] = (struct stomp_header){"persistent", json_is_true(pj) ? "true" : "false", 10,
                                        json_is_true(pj) ? 4 : 5};
    if (prj) {
        snprintf(prio_s, sizeof prio_s, "%d", (int)json_integer_value(prj));
        hs[n++] = (struct stomp_header){"priority", prio_s, 8, (uint32_t)strlen(prio_s)};
    }
    if (ej) {
        snprintf(exp, sizeof exp, "%lld", (long long)json_integer_value(ej));
        hs[n++] = (struct stomp_header){"expires", exp, 7, (uint32_t)strlen(exp)};
    }
    struct frame_limits lim;
    conn_frame_limits(&lim);
    size_t bad;
    const char *ferr;
    const char *derr;
    struct route r = {0};
    bool routed = false;
    int drc = 0;
    if (err)
        http_respond_error(h, 400, err, NULL);
    else if (frame_check_headers(&lim, STOMP_12, "SEND", hs, n, body_len, &bad, &ferr) != 0)
        send_refused(h, hs, n, bad, ferr);
    else if ((drc = route_send(NULL, http_req_principal(h), name, false, &r, &derr)) != 0)
        /* 409: the request is fine, the broker's state refuses it; 403:
         * no write (or admin, to create) on one of its destinations */
        http_respond_error(h, drc == -ENOSPC ? 409 : drc == -EACCES ? 403 : 400,
                           drc == -EACCES ? route_denied() : derr, NULL);
    else
        routed = true;
    if (!routed) {
        route_free(&r);
        free(hs);
        json_decref(j);
        return;
    }
    /* what a SEND's headers say, the request's fields win */
    bool persistent = false;
    int64_t prio = MSG_PRIORITY_DEFAULT, expires = 0;
    const char *dup_id = NULL;
    for (size_t i = 0; i < n && !err; i++) {
        const char *hn = hs[i].name, *hv = hs[i].value;
        char *end;
        if (!strcmp(hn, "persistent")) {
            if (strcmp(hv, "true") && strcmp(hv, "false"))
                err = "header \"persistent\" must be true or false";
            persistent = !strcmp(hv, "true");
        } else if (!strcmp(hn, "priority")) {
            prio = strtoll(hv, &end, 10);
            if (!*hv || *end || prio < 0 || prio > 9)
                err = "header \"priority\" must be an integer 0-9";
        } else if (!strcmp(hn, "expires")) {
            expires = strtoll(hv, &end, 10);
            if (!*hv || *end || expires < 0)
                err = "header \"expires\" must be a time in ms since the epoch (0 = never)";
        } else if (!strcmp(hn, DUP_HEADER)) {
            dup_id = hv;
        }
    }
    if (err) {
        http_respond_error(h, 400, err, NULL);
        route_free(&r);
        free(hs);
        json_decref(j);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < nu; i++)
        if (!msg_header_is_reserved(hs[i].name, hs[i].name_len))
            hs[k++] = hs[i];
    char id[128];
    server_next_msg_id(id, sizeof id);
    struct msg *m = msg_new(r.spec, id, server_next_seq(), server_now_ms(), persistent, (uint8_t)prio, expires, hs,
                            (uint32_t)k, body ? body : "", body_len);
    free(hs);
    struct pending_send *ps = calloc(1, sizeof *ps);
    if (!ps)
        abort();
    ps->h = h;
    ps->persistent = persistent && persist_enabled();
    /* deferred first: publishing may finish (and answer) at once */
    http_defer(h, send_gone, ps);
    const char *why = NULL;
    int rc = broker_publish(&r, m, &(struct publish){.dup_id = dup_id, .done = send_done, .arg = ps}, &ps->op, &why);
    msg_unref(m);
    route_free(&r);
    json_decref(j);
    if (rc == PUBLISH_WAITING)
        return; /* send_done answers (perhaps already has) */
    free(ps);
    if (rc < 0) {
        /* a bad scheduling header is the request's fault */
        http_respond_error(h, rc == -EINVAL ? 400 : rc == -EEXIST ? 409 : 503, why, NULL);
        return;
    }
    json_t *res = json_pack("{s:b, s:b}", "sent", 1, "durable", persistent && persist_enabled() && rc != PUBLISH_DUPLICATE);
    if (rc == PUBLISH_DUPLICATE)
        json_object_set_new(res, "duplicate", json_true());
    http_respond_json(h, 200, res);
}

/* GET /api/scheduler?after=CURSOR&limit=N: the count, the next due time
 * and one page of jobs in due order ("next" is the cursor of the next
 * page, null at the end). */
static void page_scheduler(struct http_req *h)
{
    char after[80] = "", lim[16];
    long limit = 100;
    if (query_param(h, "limit", lim, sizeof lim)) {
        char *end;
        limit = strtol(lim, &end, 10);
        if (!*lim || *end || limit < 1 || limit > 10000) {
            http_respond_error(h, 400, "limit must be an integer from 1 to 10000", NULL);
            return;
        }
    }
    query_param(h, "after", after, sizeof after);
    int rc;
    json_t *j = jobs_json(after, (size_t)limit, &rc);
    if (rc == -EINVAL) {
        json_decref(j);
        http_respond_error(h, 400, "after: not a cursor from an earlier page", NULL);
        return;
    }
    if (rc) {
        json_decref(j);
        http_respond_error(h, 500, "the store could not be read", NULL);
        return;
    }
    http_respond_json(h, 200, j);
}

/* A cancellation waiting for its journal entry. */
struct pending_cancel {
    struct http_req *h;
    struct op *op;
    char id[160];
};

static void cancel_done(void *arg, bool ok)
{
    struct pending_cancel *pc = arg;
    if (ok)
        http_respond_json(pc->h, 200, json_pack("{s:s}", "cancelled", pc->id));
    else
        http_respond_error(pc->h, 500, "the store could not make the cancellation durable", NULL);
    free(pc);
}

static void cancel_gone(void *arg)
{
    struct pending_cancel *pc = arg;
    if (pc->op)
        op_cancel_notify(pc->op);
    free(pc);
}

/* POST /api/scheduler/cancel {"id"}: ActiveMQ's removeJob. Journaled;
 * answered once durable. */
static void action_sched_cancel(struct http_req *h)
{
    json_t *j = parse_body(h);
    if (!j)
        return;
    const char *id = json_string_value(json_object_get(j, "id"));
    if (!id || !*id || strlen(id) >= sizeof ((struct pending_cancel *)0)->id) {
        http_respond_error(h, 400, "\"id\" (a scheduled message's job id) is required", NULL);
        json_decref(j);
        return;
    }
    if (!may_admin_scheduler(h)) {
        json_decref(j);
        return;
    }
    uint64_t lsn;
    int rc = sched_cancel(id, &lsn);
    if (rc == -ENOENT) {
        http_respond_error(h, 404, "no such scheduled message", NULL);
    } else if (rc) {
        http_respond_error(h, 500, "the store could not be read", NULL);
    } else if (!lsn || lsn <= commit_lsn()) {
        log_info("console: scheduled message %s cancelled by %s", id, actor(h));
        http_respond_json(h, 200, json_pack("{s:s}", "cancelled", id));
    } else {
        log_info("console: scheduled message %s cancelled by %s", id, actor(h));
        struct pending_cancel *pc = calloc(1, sizeof *pc);
        if (!pc)
            abort();
        pc->h = h;
        snprintf(pc->id, sizeof pc->id, "%s", id);
        http_defer(h, cancel_gone, pc);
        struct op *op = op_commit(NULL, NULL, lsn);
        op_notify(op, cancel_done, pc);
        pc->op = op;
        op_submit(op); /* may finish (and answer) at once */
    }
    json_decref(j);
}

/* ------------------------------------------------------------ the site */

static void not_master(struct http_req *h)
{
    const char *mh = master_console();
    char msg[512];
    if (mh)
        snprintf(msg, sizeof msg, "this node is %s; the master's console is http://%s/", role_name(), mh);
    else
        snprintf(msg, sizeof msg, "this node is %s; no master is known right now", role_name());
    json_t *j = json_pack("{s:i, s:s, s:s}", "status", 503, "error", msg, "role", role_name());
    json_object_set_new(j, "master_console", mh ? json_string(mh) : json_null());
    add_lag(j);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    http_respond(h, 503, "application/json", s, strlen(s), "Retry-After: 2\r\n");
    free(s);
}

static bool serving(void)
{
    return node_serving();
}

static void page_healthz(struct http_req *h)
{
    bool ok = !persist_failed();
    http_respond_json(h, ok ? 200 : 503, json_pack("{s:s, s:s}", "status", ok ? "ok" : "store failed", "role",
                                                   role_name()));
}

static void page_status(struct http_req *h)
{
    http_respond_json(h, 200, status_json());
}

static void page_overview(struct http_req *h)
{
    http_respond_json(h, 200, overview_json());
}

static void page_dests(struct http_req *h, bool queues)
{
    struct collect c = {json_array(), json_array()};
    dest_foreach(collect_dest, &c);
    http_respond_json(h, 200, queues ? c.queues : c.topics);
    json_decref(queues ? c.topics : c.queues);
}

static void page_queues(struct http_req *h)
{
    page_dests(h, true);
}

static void page_topics(struct http_req *h)
{
    page_dests(h, false);
}

static void page_connections(struct http_req *h)
{
    http_respond_json(h, 200, connections_json());
}

static void page_cluster(struct http_req *h)
{
    http_respond_json(h, 200, cluster_json());
}

static void page_counters(struct http_req *h)
{
    http_respond_json(h, 200, counters_json());
}

static const struct http_route routes[] = {
    {"/healthz", "GET", ROUTE_PUBLIC | ROUTE_ANY_ROLE, page_healthz},
    {"/api/status", "GET", ROUTE_ANY_ROLE, page_status},
    {"/", "GET", 0, render_page},
    {"/index.html", "GET", 0, render_page},
    {"/metrics", "GET", 0, render_metrics},
    {"/api/overview", "GET", 0, page_overview},
    {"/api/queues", "GET", 0, page_queues},
    {"/api/topics", "GET", 0, page_topics},
    {"/api/connections", "GET", 0, page_connections},
    {"/api/cluster", "GET", 0, page_cluster},
    {"/api/counters", "GET", 0, page_counters},
    {"/api/scheduler", "GET", 0, page_scheduler},
    {"/api/scheduler/cancel", "POST", 0, action_sched_cancel},
    {"/api/send", "POST", 0, action_send},
    {"/api/destinations/purge", "POST", 0, action_purge},
    {"/api/destinations/delete", "POST", 0, action_delete},
};

static const struct http_site site = {
    .routes = routes,
    .nroutes = sizeof routes / sizeof routes[0],
    .serving = serving,
    .not_serving = not_master,
};

int console_start(char *err, size_t errlen)
{
    return http_start(&site, err, errlen);
}

void console_stop(void)
{
    http_stop();
}

