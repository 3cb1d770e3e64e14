/* The console's routes, JSON views and actions (DESIGN §9): the broker's
 * live state as JSON under /api/ (the HTML pages of html.c are drawn from
 * the same views, /metrics is metrics.c's), and the actions: send, move
 * messages (out of a dead-letter queue, or on to another queue) through
 * broker_publish, purge, delete, close a connection, list and cancel
 * scheduled messages. Every destination a send or a move puts a message
 * in is resolved (and its write permission checked, once) by route.c's
 * route_send, as for a STOMP SEND. A node that does not
 * serve answers its own page, /metrics, /healthz and /api/status, and 503
 * naming the master's console otherwise. The transport is http.c. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "stompd/acl.h"
#include "stompd/auth.h"
#include "stompd/cluster.h"
#include "stompd/commit.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/console.h"
#include "stompd/dest.h"
#include "stompd/dlq.h"
#include "stompd/dup.h"
#include "stompd/durable.h"
#include "stompd/html.h"
#include "stompd/http.h"
#include "stompd/log.h"
#include "stompd/metrics.h"
#include "stompd/msg.h"
#include "stompd/node.h"
#include "stompd/persist.h"
#include "stompd/publish.h"
#include "stompd/queue.h"
#include "stompd/rates.h"
#include "stompd/repl.h"
#include "stompd/route.h"
#include "stompd/sched.h"
#include "stompd/server.h"
#include "stompd/store.h"
#include "stompd/stream.h"
#include "stompd/sub.h"
#include "stompd/tls.h"
#include "stompd/utf8.h"
#include "stompd/ws.h"

/* ------------------------------------------------------------ the broker's state, as JSON */

static const char *role_name(void)
{
    return node_role_name(node_role());
}

/* The master's console: ZooKeeper's master znode says it; in manual mode
 * the master itself says it in the replication handshake. */
const char *console_master_http(void)
{
    const char *mh = cluster_master_http();
    if (mh && *mh)
        return mh;
    mh = repl_slave_running() ? repl_slave_master_http() : NULL;
    return mh && *mh ? mh : NULL;
}

/* How far this follower's durable store is behind the master's head, as
 * last heard from the master (-1: no master heard from). */
uint64_t console_follower_master_lsn(void)
{
    if (!repl_slave_running())
        return 0;
    uint64_t head = repl_slave_master_head();
    if (!repl_slave_connected()) {
        /* cut off, the master's head as last heard stays put while the
         * master goes on: a slave far behind showed lag 0 (helper-111).
         * The master's position in ZooKeeper, if later, bounds it. */
        struct cluster_member m[16];
        size_t n = cluster_members(m, sizeof m / sizeof m[0]);
        for (size_t i = 0; i < n; i++)
            if (!strcmp(m[i].role, "master") && m[i].lsn > head)
                head = m[i].lsn;
    }
    return head;
}

int64_t console_follower_lag(void)
{
    uint64_t head = console_follower_master_lsn();
    uint64_t durable = store_durable_lsn();
    if (!head)
        return -1;
    return head > durable ? (json_int_t)(head - durable) : 0;
}

static void add_lag(json_t *j)
{
    json_int_t lag = console_follower_lag();
    json_object_set_new(j, "lag", lag < 0 ? json_null() : json_integer(lag));
    uint64_t head = console_follower_master_lsn();
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

json_t *console_status_json(void)
{
    uint64_t log_epoch;
    uint64_t lsn = persist_position(&log_epoch);
    /* epoch: the master's term (a follower's: the highest it has seen, its
     * master's once welcomed); log_epoch: that of the last entry here */
    bool following = node_role() != NODE_MASTER && repl_slave_running();
    uint64_t epoch = node_role() == NODE_MASTER ? persist_epoch() : log_epoch;
    if (following && repl_slave_max_epoch() > epoch)
        epoch = repl_slave_max_epoch();
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:f, s:s}", "role", role_name(), "broker",
                          config.broker_name, "version", PACKAGE_VERSION, "node_id",
                          persist_enabled() || node_role() != NODE_STANDALONE ? store_info()->node_id : "",
                          "epoch", (json_int_t)epoch, "log_epoch", (json_int_t)log_epoch, "lsn", (json_int_t)lsn,
                          "uptime_s", (double)(server_now_ms() - srv.started_ms) / 1000.0, "store",
                          persist_describe());
    /* what this node committed; a follower commits nothing (what it last
     * committed as a master would be stale) */
    if (!following)
        json_object_set_new(j, "committed_lsn", json_integer((json_int_t)commit_lsn()));
    if (persist_has_store()) {
        json_object_set_new(j, "durable_lsn", json_integer((json_int_t)store_durable_lsn()));
        json_object_set_new(j, "indexed_lsn", json_integer((json_int_t)store_indexed_lsn()));
        json_object_set_new(j, "log_first_lsn", json_integer((json_int_t)store_first_lsn()));
        json_object_set_new(j, "store_bytes", json_integer((json_int_t)store_bytes()));
        json_object_set_new(j, "fdatasync_us", hist_json(&store_stats()->fdatasync_us));
        json_object_set_new(j, "group_commit_entries", hist_json(&store_stats()->group_entries));
        json_object_set_new(j, "index_skipped", json_integer((json_int_t)store_stats()->index_skipped));
        json_object_set_new(j, "inline_writes", json_integer((json_int_t)store_stats()->inline_writes));
        json_object_set_new(j, "store_queued_bytes", json_integer((json_int_t)store_queued()));
        json_object_set_new(j, "store_queued_peak_bytes", json_integer((json_int_t)store_stats()->queued_peak));
        json_object_set_new(j, "store_producer_waits", json_integer((json_int_t)persist_writer_waits()));
    }
    json_object_set_new(j, "stomp", json_string(node_serving()
                                                    ? config.stomp_listen : ""));
    const char *why = repl_master_running() ? repl_master_waiting() : NULL;
    json_object_set_new(j, "waiting", why ? json_string(why) : json_null());
    if (node_role() == NODE_SLAVE || node_role() == NODE_ELECTING) {
        json_t *m = json_object();
        const char *mid = cluster_master_id();
        json_object_set_new(m, "id", json_string(mid ? mid : repl_slave_master_id()));
        const char *mh = console_master_http();
        json_object_set_new(m, "http", mh ? json_string(mh) : json_null());
        const char *ms = cluster_master_stomp();
        json_object_set_new(m, "stomp", ms && *ms ? json_string(ms) : json_null());
        json_object_set_new(m, "replication", json_string(repl_slave_master()));
        json_object_set_new(m, "connected", json_boolean(repl_slave_connected()));
        json_object_set_new(m, "store_waits", json_integer((json_int_t)repl_slave_store_waits()));
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

/* ------------------------------------------------------------ client text, as JSON */

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if none. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    if (p[0] < 0x80)
        return 1;
    size_t len = p[0] >= 0xc2 && p[0] <= 0xdf ? 2 : p[0] >= 0xe0 && p[0] <= 0xef ? 3
                 : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : 0;
    if (!len || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    /* no overlong forms, no surrogates, nothing past U+10FFFF */
    if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) || (p[0] == 0xf0 && p[1] < 0x90) ||
        (p[0] == 0xf4 && p[1] > 0x8f))
        return 0;
    return len;
}

size_t console_text(struct buf *out, const char *s, size_t n, size_t max, bool show_bytes)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n && i < max) {
        size_t k = utf8_seq(p + i, n - i);
        if (k && i + k > max)
            break; /* cut on a character boundary */
        if (k == 1 && (p[i] >= 0x20 || p[i] == '\n' || p[i] == '\t' || p[i] == '\r') && p[i] != 0x7f) {
            buf_putc(out, (char)p[i]);
        } else if (k > 1) {
            buf_append(out, p + i, k);
        } else if (show_bytes) {
            buf_printf(out, "\\x%02x", p[i]);
            k = 1;
        } else {
            buf_append_str(out, "\xef\xbf\xbd"); /* U+FFFD */
            k = k ? k : 1;
        }
        i += k;
    }
    return i;
}

json_t *console_jstr(const char *s)
{
    if (!s)
        return json_null();
    struct buf b = {0};
    size_t n = strlen(s);
    console_text(&b, s, n, n, false);
    json_t *j = json_stringn(b.data ? b.data : "", buf_used(&b));
    buf_free(&b);
    return j ? j : json_string("");
}

/* ------------------------------------------------------------ destinations and connections */

static json_t *dest_stats_json(const struct dest *d)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "enqueued", (json_int_t)d->st.enqueued, "dequeued",
                     (json_int_t)d->st.dequeued, "dispatched", (json_int_t)d->st.dispatched, "redelivered",
                     (json_int_t)d->st.redelivered, "expired", (json_int_t)d->st.expired, "dead_lettered",
                     (json_int_t)d->st.dead_lettered, "dropped", (json_int_t)d->st.dropped);
}

json_t *console_dest_json(const struct dest *d)
{
    json_t *o = json_pack("{s:o, s:b, s:I}", "name", console_jstr(d->name), "temporary", dest_is_temp(d),
                          "memory_bytes", (json_int_t)d->mem);
    json_object_set_new(o, "stats", dest_stats_json(d));
    double rin, rout;
    rates_now(d->name, &rin, &rout);
    json_object_set_new(o, "rates", json_pack("{s:f, s:f}", "in_per_s", rin, "out_per_s", rout));
    json_object_set_new(o, "full", json_boolean(dest_is_full(d)));
    if (dest_is_queue(d)) {
        json_object_set_new(o, "pending", json_integer((json_int_t)d->q.npending));
        /* a deep backlog stays in the store: what is in memory, what only on disk */
        json_object_set_new(o, "pending_in_memory", json_integer((json_int_t)d->q.nresident));
        json_object_set_new(o, "pending_on_disk", json_integer((json_int_t)(d->q.npending - d->q.nresident)));
        json_object_set_new(o, "inflight", json_integer((json_int_t)d->q.ninflight));
        json_object_set_new(o, "consumers", json_integer((json_int_t)d->q.nconsumers));
        json_object_set_new(o, "dead_letter_queue", json_boolean(dlq_is_dlq(d)));
    } else {
        /* a wildcard topic (/topic/a.>): its subscribers get every matching topic's messages */
        json_object_set_new(o, "wildcard", json_boolean(d->pattern));
        json_object_set_new(o, "subscribers", json_integer((json_int_t)d->nsubscribers));
        json_t *ds = json_array();
        struct durable *du;
        TAILQ_FOREACH(du, &d->durables, topic_link) {
            json_array_append_new(ds, json_pack("{s:o, s:o, s:o, s:I, s:I, s:b}", "client_id",
                                                console_jstr(du->client_id), "name", console_jstr(du->name),
                                                "selector", console_jstr(du->selector), "pending",
                                                (json_int_t)du->q.npending, "inflight", (json_int_t)du->q.ninflight,
                                                "active", du->active != NULL));
        }
        json_object_set_new(o, "durable_subscriptions", ds);
    }
    return o;
}

json_t *console_conn_json(const struct conn *c)
{
    json_t *subs = json_array();
    struct sub *s, *tmp;
    HASH_ITER(hh, c->subs, s, tmp) {
        json_array_append_new(subs, json_pack("{s:o, s:o, s:s, s:I, s:I, s:I, s:I}", "id", console_jstr(s->id),
                                              "destination", console_jstr(sub_has_legs(s) ? s->spec : s->dest->name), "ack",
                                              s->ack == ACK_AUTO ? "auto"
                                              : s->ack == ACK_CLIENT ? "client" : "client-individual",
                                              "prefetch", (json_int_t)s->prefetch, "inflight",
                                              (json_int_t)s->inflight, "delivered", (json_int_t)s->delivered,
                                              "dropped", (json_int_t)s->dropped));
    }
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:o, s:I, s:I, s:I, s:o}", "id", (json_int_t)c->id, "peer",
                     c->st.peer, "transport", stream_transport(&c->st), "state", conn_state_name(c->state), "version",
                     c->version == STOMP_12 ? "1.2" : c->version == STOMP_11 ? "1.1" : "1.0", "client_id",
                     console_jstr(c->client_id), "user", c->who ? console_jstr(c->who->name) : json_null(),
                     "frames_in", (json_int_t)c->frames_in, "frames_out", (json_int_t)c->frames_out,
                     "pending_output", (json_int_t)stream_pending(&c->st), "subscriptions", subs);
}

/* Case-insensitive substring; an empty filter matches everything. */
static bool matches(const char *s, const char *filter)
{
    return !filter || !*filter || (s && strcasestr(s, filter));
}

struct gather {
    int kind;                   /* 1 queues, 2 topics */
    const char *filter;
    struct dest **v;
    size_t n, cap, total;
};

static void gather_dest(struct dest *d, void *arg)
{
    struct gather *g = arg;
    if ((g->kind == 1) != dest_is_queue(d))
        return;
    g->total++;
    if (!matches(d->name, g->filter))
        return;
    if (g->n == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 64;
        g->v = realloc(g->v, g->cap * sizeof *g->v);
        if (!g->v)
            abort();
    }
    g->v[g->n++] = d;
}

size_t console_dests(bool queues, const char *filter, size_t offset, size_t limit, struct dest **out,
                     size_t *matching, size_t *total)
{
    struct gather g = {.kind = queues ? 1 : 2, .filter = filter};
    dest_foreach(gather_dest, &g);
    size_t n = 0;
    for (size_t i = offset; i < g.n && n < limit; i++)
        out[n++] = g.v[i];
    *matching = g.n;
    *total = g.total;
    free(g.v);
    return n;
}

static bool conn_matches(const struct conn *c, const char *filter)
{
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)c->id);
    return matches(c->st.peer, filter) || matches(c->client_id, filter) || matches(c->login, filter) ||
           !strcmp(id, filter ? filter : "");
}

size_t console_conns(const char *filter, size_t offset, size_t limit, struct conn **out, size_t *matching)
{
    size_t n = 0, k = 0;
    struct conn *c;
    TAILQ_FOREACH(c, &srv.conns, link) {
        if (!conn_matches(c, filter))
            continue;
        if (k++ >= offset && n < limit)
            out[n++] = c;
    }
    *matching = k;
    return n;
}

static json_t *connections_json(void)
{
    json_t *a = json_array();
    struct conn *c;
    TAILQ_FOREACH(c, &srv.conns, link)
        json_array_append_new(a, console_conn_json(c));
    return a;
}

/* ------------------------------------------------------------ rates */

json_t *console_rates_json(const char *dest)
{
    size_t max = rates_slots();
    int64_t *end = malloc((max + 1) * sizeof *end), *len = malloc((max + 1) * sizeof *len);
    uint32_t *in = malloc((max + 1) * sizeof *in), *out = malloc((max + 1) * sizeof *out);
    if (!end || !len || !in || !out)
        abort();
    size_t n = rates_series(dest, end, len, in, out, max);
    json_t *t = json_array(), *ji = json_array(), *jo = json_array(), *jl = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(t, json_integer(end[i]));
        json_array_append_new(jl, json_integer(len[i]));
        json_array_append_new(ji, json_integer(in[i]));
        json_array_append_new(jo, json_integer(out[i]));
    }
    free(end);
    free(len);
    free(in);
    free(out);
    double rin, rout;
    rates_now(dest, &rin, &rout);
    return json_pack("{s:f, s:i, s:o, s:o, s:o, s:o, s:f, s:f}", "interval_s", rates_interval(), "window_s",
                     RATES_WINDOW_MS / 1000, "end_ms", t, "length_ms", jl, "in", ji, "out", jo, "in_per_s", rin,
                     "out_per_s", rout);
}

/* ------------------------------------------------------------ the node */

json_t *console_counters_json(void)
{
    json_t *c = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "connections",
                     (json_int_t)srv.nconns, "connections_total", (json_int_t)srv.st.connections_total,
                     "connections_refused", (json_int_t)srv.st.connections_refused, "connections_evicted",
                     (json_int_t)srv.st.connections_evicted, "frames_in",
                     (json_int_t)srv.st.frames_in, "frames_out", (json_int_t)srv.st.frames_out, "messages_in",
                     (json_int_t)srv.st.messages_in, "messages_out", (json_int_t)srv.st.messages_out,
                     "protocol_errors", (json_int_t)srv.st.protocol_errors, "expired", (json_int_t)srv.st.expired,
                     "dead_lettered", (json_int_t)srv.st.dead_lettered, "duplicates", (json_int_t)srv.st.duplicates,
                     "memory_bytes", (json_int_t)dest_total_mem(), "waiting_for_store",
                     (json_int_t)commit_waiting());
    json_object_set_new(c, "dropped", json_integer((json_int_t)srv.st.dropped));
    json_object_set_new(c, "closed_temp_dropped", json_integer((json_int_t)srv.st.closed_temp_dropped));
    json_object_set_new(c, "memory_limit", json_integer((json_int_t)config.memory_limit));
    /* closed after their last answer, still draining what the peer sends */
    json_object_set_new(c, "lingering_sockets", json_integer((json_int_t)stream_lingering()));
    json_object_set_new(c, "destinations", json_integer((json_int_t)dest_count()));
    struct auth_stats as;
    auth_get_stats(&as);
    json_object_set_new(c, "auth_failures", json_integer((json_int_t)as.stomp_failures));
    json_object_set_new(c, "console_auth_failures", json_integer((json_int_t)as.console_failures));
    json_object_set_new(c, "auth_busy", json_integer((json_int_t)as.busy));
    json_object_set_new(c, "access_denied", json_integer((json_int_t)acl_denials()));
    /* what all subscriptions take from (broker.max_consumers), and queues
     * created after a wildcard SUBSCRIBE that had no room to take from */
    json_object_set_new(c, "consumers", json_integer((json_int_t)sub_consumers()));
    json_object_set_new(c, "max_consumers", json_integer((json_int_t)config.broker_max_consumers));
    json_object_set_new(c, "wildcard_matches_refused", json_integer((json_int_t)sub_legs_refused()));
    if (persist_has_store()) {
        json_object_set_new(c, "store_bytes", json_integer((json_int_t)store_bytes()));
        json_object_set_new(c, "store_limit", json_integer((json_int_t)config.store_limit));
        json_object_set_new(c, "store_full", json_boolean(persist_store_full()));
    }
    return c;
}

json_t *console_cluster_json(void)
{
    json_t *o = json_object();
    json_t *members = json_array();
    struct cluster_member m[64];
    size_t n = cluster_members(m, 64);
    /* behind the master, as ZooKeeper has them: they write there at
     * different times, and a slave a tick ahead of the master's entry made
     * the master look behind (helper-111) */
    uint64_t head = 0, top = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(m[i].role, "master"))
            head = m[i].lsn;
        if (m[i].lsn > top)
            top = m[i].lsn;
    }
    if (!head)
        head = top; /* no master: behind the most up to date */
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(members, json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:b, s:b}", "znode",
                                                 m[i].znode, "id", m[i].id, "role", m[i].role, "stomp", m[i].stomp,
                                                 "http", m[i].http, "epoch", (json_int_t)m[i].epoch, "lsn",
                                                 (json_int_t)m[i].lsn, "lag", (json_int_t)(head > m[i].lsn ? head - m[i].lsn : 0),
                                                 "weight", (json_int_t)m[i].weight, "self", m[i].self, "refused",
                                                 m[i].refused));
    }
    json_object_set_new(o, "members", members);
    json_object_set_new(o, "replicas", replicas_json());
    json_object_set_new(o, "last_dropped", repl_master_running() ? dropped_json() : json_array());
    json_object_set_new(o, "replicas_expected",
                        json_integer(persist_replicated() ? (json_int_t)config.replicas - 1 : 0));
    return o;
}

/* Queues or topics, at most http.max_listed_destinations of them (the
 * weightiest, by name; helper-102: 50,000 queues made 27 MB, and held the
 * loop 0.8 s); *omitted counts the others. */
static json_t *all_dests(bool queues, size_t *omitted)
{
    json_t *a = json_array();
    size_t n = dest_count(), matching, total;
    struct dest **v = malloc((n + 1) * sizeof *v);
    if (!v)
        abort();
    n = console_dests(queues, NULL, 0, n, v, &matching, &total);
    size_t kept = dest_top(v, n, (size_t)config.http_max_listed_destinations);
    *omitted = n - kept;
    for (size_t i = 0; i < kept; i++)
        json_array_append_new(a, console_dest_json(v[i]));
    free(v);
    return a;
}

/* ------------------------------------------------------------ the scheduler */

static json_t *time_json(int64_t ms)
{
    if (ms < 0)
        return json_null();
    char iso[80]; /* room for any int the format may print */
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(iso, sizeof iso, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return json_string(iso);
}

json_t *console_scheduler_json(void)
{
    struct sched_info si;
    sched_info(&si);
    json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I}", "scheduled", (json_int_t)si.scheduled, "in_memory",
                          (json_int_t)si.in_memory, "non_persistent", (json_int_t)si.volatile_jobs, "fired",
                          (json_int_t)si.fired, "cancelled", (json_int_t)si.cancelled);
    json_object_set_new(j, "non_persistent_bytes", json_integer((json_int_t)si.volatile_bytes));
    json_object_set_new(j, "waits_for_room", json_boolean(si.waiting_for_room));
    json_object_set_new(j, "room_waits", json_integer((json_int_t)si.holds));
    json_object_set_new(j, "jobs_waiting_for_room", json_integer((json_int_t)si.waiting_jobs));
    json_object_set_new(j, "next_due_ms", si.next_due < 0 ? json_null() : json_integer((json_int_t)si.next_due));
    json_object_set_new(j, "next_due", time_json(si.next_due));
    return j;
}

static void add_job(void *arg, const struct sched_job_view *v)
{
    json_t *a = arg;
    const struct msg *m = v->m;
    json_t *o = json_pack("{s:o, s:I, s:o, s:o, s:b, s:I, s:I, s:o}", "id", console_jstr(v->id), "due_ms",
                          (json_int_t)v->due, "due", time_json(v->due), "destination", console_jstr(m->dest),
                          "persistent", v->persistent, "priority", (json_int_t)m->priority, "body_bytes",
                          (json_int_t)m->body_len, "cursor", console_jstr(v->cursor));
    static const char *const sched[][2] = {{"AMQ_SCHEDULED_DELAY", "delay"}, {"AMQ_SCHEDULED_PERIOD", "period"},
                                           {"AMQ_SCHEDULED_REPEAT", "repeat"}, {"AMQ_SCHEDULED_CRON", "cron"}};
    for (size_t i = 0; i < sizeof sched / sizeof sched[0]; i++)
        json_object_set_new(o, sched[i][1], console_jstr(msg_get(m, sched[i][0])));
    json_array_append_new(a, o);
}

json_t *console_jobs_json(const char *after, size_t limit, int *rc)
{
    json_t *jobs = json_array();
    bool more = false;
    *rc = sched_list(after, limit, add_job, jobs, &more);
    json_t *j = console_scheduler_json();
    json_object_set_new(j, "jobs", jobs);
    size_t n = json_array_size(jobs);
    json_object_set_new(j, "next", more && n ? json_incref(json_object_get(json_array_get(jobs, n - 1), "cursor"))
                                             : json_null());
    return j;
}

static json_t *overview_json(void)
{
    json_t *j = json_object();
    json_object_set_new(j, "status", console_status_json());
    json_object_set_new(j, "counters", console_counters_json());
    json_object_set_new(j, "rates", console_rates_json(NULL));
    size_t omitted;
    json_object_set_new(j, "queues", all_dests(true, &omitted));
    json_object_set_new(j, "queues_omitted", json_integer((json_int_t)omitted));
    json_object_set_new(j, "topics", all_dests(false, &omitted));
    json_object_set_new(j, "topics_omitted", json_integer((json_int_t)omitted));
    json_object_set_new(j, "connections", connections_json());
    json_object_set_new(j, "cluster", console_cluster_json());
    json_object_set_new(j, "scheduler", console_scheduler_json());
    return j;
}

/* ------------------------------------------------------------ browsing */

#define BROWSE_BYTES_MIN (1024 * 1024)

void console_key_str(struct qkey k, char *out, size_t n)
{
    snprintf(out, n, "%u:%llu", (unsigned)(MSG_PRIORITIES - 1 - k.rprio), (unsigned long long)k.seq);
}

int console_key_parse(const char *s, struct qkey *k)
{
    char *end;
    if (s[0] < '0' || s[0] > '9' || s[1] != ':' || s[2] < '0' || s[2] > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long seq = strtoull(s + 2, &end, 10);
    if (*end || errno)
        return -EINVAL;
    *k = (struct qkey){(uint8_t)(MSG_PRIORITIES - 1 - (s[0] - '0')), (uint64_t)seq};
    return 0;
}

/* Client text as a JSON string: at most max bytes of it (cut on a
 * character), bytes that are not UTF-8 or are control characters shown
 * as \xNN; *cut says whether some was left out. */
static json_t *text_json(const char *s, size_t n, size_t max, bool *cut)
{
    struct buf b = {0};
    size_t used = console_text(&b, s, n, max, true);
    if (cut)
        *cut = used < n;
    json_t *j = json_stringn(b.data ? b.data : "", buf_used(&b));
    buf_free(&b);
    return j ? j : json_string("");
}

static json_t *message_json(const struct queue_browsed *b)
{
    const struct msg *m = b->msg;
    size_t max = (size_t)config.http_body_preview;
    char key[32];
    console_key_str((struct qkey){(uint8_t)(MSG_PRIORITIES - 1 - m->priority), m->seq}, key, sizeof key);
    json_t *hs = json_array();
    for (uint32_t i = 0; i < m->nheaders; i++) {
        bool cut;
        json_t *v = text_json(m->headers[i].value, m->headers[i].value_len, max, &cut);
        json_array_append_new(hs, json_pack("[o, o, b]", text_json(m->headers[i].name, m->headers[i].name_len,
                                                                   max, NULL),
                                            v, cut));
    }
    bool cut;
    json_t *body = text_json(m->body, m->body_len, max, &cut);
    json_t *j = json_pack("{s:s, s:o, s:o, s:i, s:I, s:I, s:b, s:I, s:b}", "key", key, "message_id",
                          text_json(m->id, strlen(m->id), 1024, NULL), "destination",
                          text_json(m->dest, strlen(m->dest), 1024, NULL), "priority", (int)m->priority, "timestamp",
                          (json_int_t)m->timestamp, "expires", (json_int_t)m->expires, "persistent", m->persistent,
                          "redeliveries", (json_int_t)b->redeliveries, "in_memory", b->in_memory);
    json_object_set_new(j, "headers", hs);
    json_object_set_new(j, "body_size", json_integer((json_int_t)m->body_len));
    json_object_set_new(j, "body_preview", body);
    json_object_set_new(j, "body_truncated", json_boolean(cut));
    return j;
}

json_t *console_browse_json(struct dest *d, const struct qkey *after, size_t limit)
{
    struct queue_browsed *v = calloc(limit ? limit : 1, sizeof *v);
    if (!v)
        abort();
    struct qkey next;
    bool more;
    /* a page reads at most about a queue's window of messages (1 MiB at
     * least), whatever their number */
    size_t budget = config.queue_window > BROWSE_BYTES_MIN ? (size_t)config.queue_window : BROWSE_BYTES_MIN;
    size_t n = queue_browse(&d->q, after, limit, budget, v, &next, &more);
    json_t *msgs = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(msgs, message_json(&v[i]));
        msg_unref(v[i].msg);
    }
    free(v);
    char key[32];
    console_key_str(next, key, sizeof key);
    json_t *j = json_pack("{s:o, s:I, s:o}", "destination", console_jstr(d->name), "pending",
                          (json_int_t)d->q.npending, "messages", msgs);
    json_object_set_new(j, "next", more ? json_string(key) : json_null());
    return j;
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
    json_t *j = json_loadb(body, blen, JSON_REJECT_DUPLICATES, &jerr);
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

/* The console acts for its user (main's auth): a permission of the ACL on
 * d, or 403 naming what is missing. */
static bool may(struct http_req *h, const char *name, enum acl_perm perm)
{
    const struct principal *who = http_req_principal(h);
    if (acl_allows_dest(who, name, perm))
        return true;
    char message[256], detail[1200];
    acl_explain(who, name, perm, message, sizeof message, detail, sizeof detail);
    http_respond_error(h, 403, message, NULL);
    return false;
}

/* admin on d to purge or delete it, to move messages out of it, ... */
static bool may_admin(struct http_req *h, const struct dest *d)
{
    return may(h, d->name, ACL_ADMIN);
}

/* The scheduler's actions are broker-wide (a job may be for any
 * destination, and one only in the store is not read to find out which):
 * admin on every queue and topic (ACL entries queue:> and topic:>). */
static bool may_admin_scheduler(struct http_req *h)
{
    return may(h, "/queue/>", ACL_ADMIN) && may(h, "/topic/>", ACL_ADMIN);
}

/* "user (peer)" for the log */
static const char *actor(struct http_req *h)
{
    static char buf[400];
    const struct principal *who = http_req_principal(h);
    snprintf(buf, sizeof buf, "%.128s (%s)", who ? who->name : "anyone, http.auth = false", http_req_peer(h));
    return buf;
}

/* An action's answer waiting for the journal entry that made it. */
struct pending_answer {
    struct http_req *h;
    struct op *op;
    json_t *answer;
};

static void answer_done(void *arg, bool ok)
{
    struct pending_answer *pa = arg;
    if (ok) {
        http_respond_json(pa->h, 200, pa->answer);
    } else {
        json_decref(pa->answer);
        http_respond_error(pa->h, 500, "the store could not make the change durable", NULL);
    }
    free(pa);
}

/* The console connection closed first: what the action did stands. */
static void answer_gone(void *arg)
{
    struct pending_answer *pa = arg;
    if (pa->op)
        op_cancel_notify(pa->op);
    json_decref(pa->answer);
    free(pa);
}

/* Answer 200 with answer (taken over) once journal entry lsn (0: none) is
 * durable, as a RECEIPT is: a crash after the answer cannot undo it. */
static void answer_when_durable(struct http_req *h, uint64_t lsn, json_t *answer)
{
    if (!lsn || lsn <= commit_lsn()) {
        http_respond_json(h, 200, answer);
        return;
    }
    struct pending_answer *pa = calloc(1, sizeof *pa);
    if (!pa)
        abort();
    pa->h = h;
    pa->answer = answer;
    http_defer(h, answer_gone, pa);
    pa->op = op_commit(NULL, NULL, lsn);
    op_notify(pa->op, answer_done, pa);
    op_submit(pa->op); /* may finish (and answer) at once */
}

/* The journal entry the actions before it made (0: none kept). */
static uint64_t journaled_lsn(void)
{
    return persist_enabled() ? persist_last_lsn() : 0;
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
        uint64_t held, lsn = journaled_lsn();
        uint64_t n = queue_purge(&d->q, lsn, &held);
        char of_them[64] = "";
        if (held)
            snprintf(of_them, sizeof of_them, ", %llu of them held by consumers", (unsigned long long)held);
        log_info("console: %s purged (%llu messages%s) by %s", d->name, (unsigned long long)n, of_them, actor(h));
        answer_when_durable(h, lsn,
                            json_pack("{s:s, s:I, s:I}", "purged", d->name, "messages", (json_int_t)n, "held",
                                      (json_int_t)held));
    }
    json_decref(j);
}

/* Closing a connection ends its subscriptions and gives their
 * unacknowledged messages back: admin on each destination it subscribes
 * to (the console's group is required of every request), or 403. */
static bool may_close(struct http_req *h, const struct conn *c)
{
    struct sub *s, *tmp;
    HASH_ITER(hh, c->subs, s, tmp)
        if (!may_admin(h, s->dest))
            return false;
    return true;
}

static int by_address(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (struct conn *const *)a, y = (uintptr_t) * (struct conn *const *)b;
    return (x > y) - (x < y);
}

/* Deleting a destination ends its subscriptions, and STOMP can tell a
 * client that only by an ERROR, which closes its connection: without
 * "force" a destination with subscribers is refused (409, as ActiveMQ
 * refuses one still subscribed to); with it, each subscriber's
 * connection is closed with an ERROR naming it (a subscription ended in
 * silence left its client waiting for ever). Returns the connections
 * closed, or -1 (answered). */
static int delete_subscribed(struct http_req *h, struct dest *d, bool force)
{
    uint32_t n = d->q.nconsumers + d->nsubscribers;
    struct durable *du;
    TAILQ_FOREACH(du, &d->durables, topic_link)
        n += du->active != NULL;
    if (n == 0)
        return 0;
    if (!force) {
        char why[1300];
        snprintf(why, sizeof why,
                 "%s has %u active subscriptions: close them first, or send \"force\": true to delete it and "
                 "close their connections",
                 d->name, n);
        http_respond_json(h, 409, json_pack("{s:s, s:I}", "error", why, "subscriptions", (json_int_t)n));
        return -1;
    }
    /* each connection once, kicked after the lists are read: a kick may
     * release the connection (and its subscriptions) at once */
    struct conn **v = malloc(n * sizeof *v);
    if (!v)
        abort();
    uint32_t k = 0;
    struct sub *s;
    TAILQ_FOREACH(s, &d->q.consumers, q_link)
        v[k++] = s->conn;
    TAILQ_FOREACH(s, &d->subscribers, topic_link)
        v[k++] = s->conn;
    TAILQ_FOREACH(du, &d->durables, topic_link)
        if (du->active)
            v[k++] = du->active->conn;
    qsort(v, k, sizeof *v, by_address);
    for (uint32_t i = 0; i < k; i++) {
        if (!may_close(h, v[i])) { /* it closes them, as /api/connections/close would */
            free(v);
            return -1;
        }
    }
    char reason[1200];
    snprintf(reason, sizeof reason, "destination %.1100s deleted by an administrator (console)", d->name);
    int closed = 0;
    for (uint32_t i = 0; i < k; i++) {
        if ((i > 0 && v[i] == v[i - 1]) || v[i]->state >= CONN_CLOSING)
            continue;
        conn_kick(v[i], reason, NULL);
        closed++;
    }
    free(v);
    return closed;
}

static void action_delete(struct http_req *h)
{
    json_t *j = parse_body(h);
    if (!j)
        return;
    struct dest *d = body_dest(h, j);
    json_t *force = json_object_get(j, "force");
    if (d && force && !json_is_boolean(force)) {
        http_respond_error(h, 400, "\"force\" must be true or false", NULL);
        d = NULL;
    }
    int closed = 0;
    if (d && may_admin(h, d) && (closed = delete_subscribed(h, d, json_is_true(force))) >= 0) {
        char name[1100];
        snprintf(name, sizeof name, "%s", d->name);
        persist_purge(d);
        if (dest_is_queue(d))
            queue_deleted(d->name, journaled_lsn());
        if (d->kept)
            persist_dest_forgotten(d); /* a virtual topic's queue: gone for good */
        dest_delete(d);
        log_info("console: %s deleted by %s (%d connections subscribed to it closed)", name, actor(h), closed);
        answer_when_durable(h, journaled_lsn(),
                            json_pack("{s:s, s:i}", "deleted", name, "connections_closed", closed));
    }
    json_decref(j);
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
        int nl = utf8_cut(hs[bad].name, 64);
        snprintf(msg, sizeof msg, "header \"%.*s%s\": %s%s", nl, hs[bad].name,
                 (size_t)nl < hs[bad].name_len ? "..." : "", err, limit);
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
         * no write (or admin, to create) on one of its destinations,
         * refused before anything is created for it */
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
    struct pending_answer *pa = calloc(1, sizeof *pa);
    if (!pa)
        abort();
    pa->h = h;
    pa->answer = json_pack("{s:b, s:b}", "sent", 1, "durable", persistent && persist_enabled());
    /* deferred first: publishing may finish (and answer) at once; the
     * message still goes if the console connection closes first */
    http_defer(h, answer_gone, pa);
    const char *why = NULL;
    int rc = broker_publish(&r, m, &(struct publish){.dup_id = dup_id, .done = answer_done, .arg = pa}, &pa->op, &why);
    msg_unref(m);
    route_free(&r);
    json_decref(j);
    if (rc == PUBLISH_WAITING)
        return; /* answer_done answers (perhaps already has) */
    json_decref(pa->answer);
    free(pa);
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

/* A console move waiting for its journal entries: answered once every
 * move it made is committed. */
struct move_wait {
    struct pending_move *pm;
    struct op *op;
    bool done;
};

struct pending_move {
    struct http_req *h;
    json_t *moved, *failed;
    struct move_wait *w;
    size_t nw;
    size_t waiting;             /* moves not committed yet, +1 while moving */
};

static void move_finish(struct pending_move *pm)
{
    json_t *res = json_pack("{s:o, s:o}", "moved", pm->moved, "failed", pm->failed);
    http_respond_json(pm->h, json_array_size(json_object_get(res, "moved")) || !json_array_size(pm->failed)
                                 ? 200 : 409, res);
    free(pm->w);
    free(pm);
}

static void move_done(void *arg, bool ok)
{
    struct move_wait *w = arg;
    struct pending_move *pm = w->pm;
    w->done = true;
    if (!ok)
        json_array_append_new(pm->failed, json_pack("{s:s}", "error", "the store could not make a move durable"));
    if (--pm->waiting == 0)
        move_finish(pm);
}

/* The console connection closed first: the moves still happen. */
static void move_gone(void *arg)
{
    struct pending_move *pm = arg;
    for (size_t i = 0; i < pm->nw; i++)
        if (!pm->w[i].done && pm->w[i].op)
            op_cancel_notify(pm->w[i].op);
    json_decref(pm->moved);
    json_decref(pm->failed);
    free(pm->w);
    free(pm);
}

/* The queue a message may be moved to: an existing or new queue (not a
 * temporary one, not the one it is in), resolved by route_send for the
 * console's user as a SEND to it would be (write on it, admin to create
 * it). 0 with *r its route (one queue), or -1 with *status and *err. */
static int move_target(struct http_req *h, const char *name, const struct dest *from, struct route *r, int *status,
                       const char **err)
{
    enum dest_kind kind;
    memset(r, 0, sizeof *r);
    *status = 400;
    if (strchr(name, ',')) {
        *err = "messages can be moved to one queue only";
        return -1;
    }
    if (dest_kind_of(name, &kind, err) != 0)
        return -1;
    if (kind != DEST_QUEUE) {
        *err = "messages can be moved to a queue only";
        return -1;
    }
    if (!strcmp(name, from->name)) {
        *err = "the message is in that queue already";
        return -1;
    }
    int rc = route_send(NULL, http_req_principal(h), name, false, r, err);
    if (rc == 0 && (r->n != 1 || r->v[0] == from)) {
        rc = -EINVAL;
        *err = "the message is in that queue already";
    }
    if (rc != 0) {
        route_free(r);
        *status = rc == -EACCES ? 403 : rc == -ENOSPC ? 409 : 400;
        if (rc == -EACCES)
            *err = route_denied();
        return -1;
    }
    return 0;
}

/* The copy a move publishes: the same message in its new queue; out of a
 * dead-letter queue it loses what dead-lettering added. */
static struct msg *move_copy(const struct msg *m, const struct dest *from, const struct dest *to)
{
    struct stomp_header *hs = malloc((m->nheaders + 1) * sizeof *hs);
    if (!hs)
        abort();
    uint32_t k = 0;
    bool from_dlq = dlq_is_dlq(from);
    for (uint32_t i = 0; i < m->nheaders; i++) {
        if (from_dlq && (!strcmp(m->headers[i].name, "original-destination") ||
                         !strcmp(m->headers[i].name, "dlqDeliveryFailureCause")))
            continue;
        hs[k++] = m->headers[i];
    }
    struct msg *c = msg_new(to->name, m->id, server_next_seq(), m->timestamp, m->persistent, m->priority, m->expires,
                            hs, k, m->body, m->body_len);
    free(hs);
    return c;
}

/* POST /api/messages/move {"destination": queue, "messages": [key, ...],
 * "to": queue}: each message leaves its queue and enters "to" (without
 * "to": the queue its original-destination header names: a dead letter's
 * retry) in one journal entry, through broker_publish; answered once
 * every move is committed, with what moved and what did not and why. */
static void action_move(struct http_req *h)
{
    json_t *j = parse_body(h);
    if (!j)
        return;
    struct dest *from = body_dest(h, j);
    json_t *keys = json_object_get(j, "messages"), *tj = json_object_get(j, "to");
    const char *err = NULL;
    /* taking messages out of a queue (a dead-letter queue's retry too)
     * is admin on it, as purging is; putting them in is write on theirs */
    if (!from || !may_admin(h, from)) {
        json_decref(j);
        return;
    }
    if (!dest_is_queue(from) || dest_is_temp(from))
        err = "messages can be moved out of a queue only";
    else if (!json_is_array(keys) || !json_array_size(keys))
        err = "\"messages\" (an array of message keys, as /api/messages gives them) is required";
    else if (json_array_size(keys) > (size_t)config.http_browse_limit)
        err = "too many messages for one request (http.browse_limit)";
    else if (tj && !json_is_string(tj))
        err = "\"to\" must be a queue name";
    int status = 400;
    struct route to = {0};
    if (!err && tj)
        move_target(h, json_string_value(tj), from, &to, &status, &err);
    if (err) {
        http_respond_error(h, status, err, NULL);
        json_decref(j);
        return;
    }
    struct pending_move *pm = calloc(1, sizeof *pm);
    if (!pm || !(pm->w = calloc(json_array_size(keys), sizeof *pm->w)))
        abort();
    pm->h = h;
    pm->moved = json_array();
    pm->failed = json_array();
    pm->waiting = 1;
    /* deferred first: a move may commit (and answer) at once */
    http_defer(h, move_gone, pm);
    size_t i;
    json_t *kj;
    json_array_foreach(keys, i, kj) {
        const char *ks = json_string_value(kj);
        struct qkey k;
        struct qentry *e = NULL;
        struct route one = {0};
        const struct route *target = tj ? &to : NULL;
        err = NULL;
        int rc;
        if (!ks || console_key_parse(ks, &k) != 0)
            err = "not a message key (priority:seq)";
        else if ((rc = queue_take(&from->q, k, &e)) != 0)
            err = rc == -EBUSY ? "delivered to a consumer and not acknowledged" : rc == -ENOENT
                      ? "no such message pending in this queue" : "cannot read the message from the store";
        if (!err && !target) {
            const char *orig = msg_get(e->msg, "original-destination");
            if (!orig)
                err = "no original-destination header: choose a queue (\"to\")";
            else if (move_target(h, orig, from, &one, &status, &err) == 0)
                target = &one;
        }
        if (err) {
            if (e)
                queue_put_back(e);
            json_array_append_new(pm->failed, json_pack("{s:o, s:s}", "message", ks ? json_string(ks) : json_null(),
                                                        "error", err));
            continue;
        }
        struct msg *copy = move_copy(e->msg, from, target->v[0]);
        struct move_wait *w = &pm->w[pm->nw++];
        w->pm = pm;
        const char *why = NULL;
        json_array_append_new(pm->moved, json_pack("{s:s, s:o}", "message", ks, "to", console_jstr(target->v[0]->name)));
        rc = broker_publish(target, copy, &(struct publish){.moved_from = e, .done = move_done, .arg = w}, &w->op,
                            &why);
        msg_unref(copy);
        route_free(&one);
        if (rc == PUBLISH_WAITING && !w->done)
            pm->waiting++;
        else
            w->done = true;
    }
    log_info("console: %zu message(s) moved out of %s by %s (%zu refused)", json_array_size(pm->moved), from->name,
             actor(h), json_array_size(pm->failed));
    route_free(&to);
    json_decref(j);
    if (--pm->waiting == 0)
        move_finish(pm);
}

/* POST /api/connections/close {"id": n}: the client gets an ERROR saying
 * so, and its connection closes (its unacknowledged messages go back). */
static void action_close(struct http_req *h)
{
    json_t *j = parse_body(h);
    if (!j)
        return;
    json_t *id = json_object_get(j, "id");
    if (!json_is_integer(id)) {
        http_respond_error(h, 400, "\"id\" (a connection id, as /api/connections gives them) is required", NULL);
        json_decref(j);
        return;
    }
    struct conn *c = json_integer_value(id) > 0 ? conn_find((uint64_t)json_integer_value(id)) : NULL;
    if (!c) {
        http_respond_error(h, 404, "no such connection", NULL);
        json_decref(j);
        return;
    }
    if (may_close(h, c)) {
        log_info("console: connection %llu (%s) closed by %s", (unsigned long long)c->id, c->st.peer, actor(h));
        conn_kick(c, "connection closed by an administrator (console)", NULL);
        http_respond_json(h, 200, json_pack("{s:I}", "closed", (json_int_t)c->id));
    }
    json_decref(j);
}

#define MAX_JOB_ID 160 /* longer than any job id the scheduler gives (a message id) */

/* POST /api/scheduler/cancel {"id"}: ActiveMQ's removeJob. Journaled;
 * answered once durable. */
static void action_sched_cancel(struct http_req *h)
{
    json_t *j = parse_body(h);
    if (!j)
        return;
    const char *id = json_string_value(json_object_get(j, "id"));
    if (!id || !*id || strlen(id) >= MAX_JOB_ID) {
        http_respond_error(h, 400,
                           id && *id ? "\"id\" is longer than any scheduled message's job id"
                                     : "\"id\" (a scheduled message's job id) is required",
                           NULL);
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
    } else {
        log_info("console: scheduled message %s cancelled by %s", id, actor(h));
        answer_when_durable(h, lsn, json_pack("{s:o}", "cancelled", console_jstr(id)));
    }
    json_decref(j);
}

/* ------------------------------------------------------------ the site */

static void not_master(struct http_req *h)
{
    const char *mh = console_master_http();
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
    return node_serving() && !srv.handing_over; /* a master handing over takes no new work */
}

static void page_healthz(struct http_req *h)
{
    bool ok = !persist_failed();
    http_respond_json(h, ok ? 200 : 503, json_pack("{s:s, s:s}", "status", ok ? "ok" : "store failed", "role",
                                                   role_name()));
}

static void page_status(struct http_req *h)
{
    http_respond_json(h, 200, console_status_json());
}

static void page_overview(struct http_req *h)
{
    http_respond_json(h, 200, overview_json());
}

int console_param_size(struct http_req *h, const char *name, size_t def, size_t min, size_t max, size_t *out)
{
    char v[32];
    int n = http_req_query(h, name, v, sizeof v);
    *out = def;
    if (n == -ENOENT)
        return 0;
    char *end = v; /* not a digit first: left at v, refused below */
    errno = 0;
    unsigned long long x = n > 0 && v[0] >= '0' && v[0] <= '9' ? strtoull(v, &end, 10) : 0;
    if (n <= 0 || *end || errno || x < min || x > max) {
        char msg[160];
        snprintf(msg, sizeof msg, "parameter \"%s\" must be a whole number from %zu to %zu", name, min, max);
        http_respond_error(h, 400, msg, NULL);
        return -EINVAL;
    }
    *out = (size_t)x;
    return 0;
}

int console_param_str(struct http_req *h, const char *name, char *out, size_t outlen)
{
    int n = http_req_query(h, name, out, outlen);
    if (n == -ENOENT) {
        out[0] = '\0';
        return 0;
    }
    if (n < 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "parameter \"%s\" is malformed or too long", name);
        http_respond_error(h, 400, msg, NULL);
        return n;
    }
    return 0;
}

/* GET /api/queues, /api/topics, /api/connections: every item, or with
 * "page" (from 1) one page of "page_size" (100; at most 500) in an object
 * that counts them (as RabbitMQ's API pages); "name" keeps the items
 * whose name (a connection's peer, client-id or id) contains it, in any
 * case. */
static void page_list(struct http_req *h, int what)
{
    char filter[1200];
    size_t page, size;
    if (console_param_str(h, "name", filter, sizeof filter) != 0 ||
        console_param_size(h, "page", 0, 1, SIZE_MAX / 1000, &page) != 0 ||
        console_param_size(h, "page_size", 100, 1, 500, &size) != 0)
        return;
    size_t offset = page ? (page - 1) * size : 0, limit = page ? size : SIZE_MAX;
    size_t n, matching, total;
    json_t *items = json_array();
    if (what == 2) {
        size_t all = srv.nconns;
        struct conn **v = malloc((all + 1) * sizeof *v);
        if (!v)
            abort();
        n = console_conns(filter, offset, limit < all ? limit : all, v, &matching);
        total = all;
        for (size_t i = 0; i < n; i++)
            json_array_append_new(items, console_conn_json(v[i]));
        free(v);
    } else {
        size_t all = dest_count();
        struct dest **v = malloc((all + 1) * sizeof *v);
        if (!v)
            abort();
        n = console_dests(what == 0, filter, offset, limit < all ? limit : all, v, &matching, &total);
        for (size_t i = 0; i < n; i++)
            json_array_append_new(items, console_dest_json(v[i]));
        free(v);
    }
    if (!page) {
        http_respond_json(h, 200, items);
        return;
    }
    http_respond_json(h, 200, json_pack("{s:o, s:I, s:I, s:I, s:I, s:I, s:I}", "items", items, "page",
                                        (json_int_t)page, "page_size", (json_int_t)size, "page_count",
                                        (json_int_t)((matching + size - 1) / size), "item_count", (json_int_t)n,
                                        "filtered_count", (json_int_t)matching, "total_count", (json_int_t)total));
}

static void page_queues(struct http_req *h)
{
    page_list(h, 0);
}

static void page_topics(struct http_req *h)
{
    page_list(h, 1);
}

static void page_connections(struct http_req *h)
{
    page_list(h, 2);
}

static void page_cluster(struct http_req *h)
{
    http_respond_json(h, 200, console_cluster_json());
}

static void page_counters(struct http_req *h)
{
    http_respond_json(h, 200, console_counters_json());
}

struct dest *console_param_dest(struct http_req *h, const char *param)
{
    char name[1200];
    if (console_param_str(h, param, name, sizeof name) != 0)
        return NULL;
    struct dest *d = name[0] ? dest_find(name) : NULL;
    if (!name[0]) {
        char msg[96];
        snprintf(msg, sizeof msg, "parameter \"%s\" (a destination name) is required", param);
        http_respond_error(h, 400, msg, NULL);
    } else if (!d) {
        http_respond_error(h, 404, "no such destination", NULL);
    }
    return d;
}

/* GET /api/destination?name=D: its state and its rates over the window. */
static void page_destination(struct http_req *h)
{
    struct dest *d = console_param_dest(h, "name");
    if (!d)
        return;
    json_t *j = console_dest_json(d);
    json_object_set_new(j, "rates", console_rates_json(d->name));
    http_respond_json(h, 200, j);
}

/* GET /api/messages?destination=Q&limit=N&after=KEY: the first N pending
 * messages of a queue in dispatch order (after KEY: the page after), read
 * without taking them; "next" is the key to ask the following page with. */
static void page_messages(struct http_req *h)
{
    char after_s[40];
    size_t limit;
    struct qkey after;
    if (console_param_str(h, "after", after_s, sizeof after_s) != 0 ||
        console_param_size(h, "limit", 20 < config.http_browse_limit ? 20 : (size_t)config.http_browse_limit, 1,
                           (size_t)config.http_browse_limit, &limit) != 0)
        return;
    if (after_s[0] && console_key_parse(after_s, &after) != 0) {
        http_respond_error(h, 400, "parameter \"after\" must be a message key (priority:seq)", NULL);
        return;
    }
    struct dest *d = console_param_dest(h, "destination");
    if (!d)
        return;
    if (!dest_is_queue(d)) {
        http_respond_error(h, 400, "only queues can be browsed", NULL);
        return;
    }
    if (!may(h, d->name, ACL_READ))
        return;
    http_respond_json(h, 200, console_browse_json(d, after_s[0] ? &after : NULL, limit));
}

/* GET /api/scheduler?after=CURSOR&limit=N: the count, the next due time
 * and one page of jobs in due order ("next" is the cursor of the next
 * page, null at the end). */
static void page_scheduler(struct http_req *h)
{
    char after[80];
    size_t limit;
    if (console_param_size(h, "limit", 100, 1, 10000, &limit) != 0 ||
        console_param_str(h, "after", after, sizeof after) != 0)
        return;
    int rc;
    json_t *j = console_jobs_json(after, limit, &rc);
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

static void page_metrics(struct http_req *h)
{
    struct buf b = {0};
    metrics_render(&b);
    http_respond(h, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len, NULL);
    buf_free(&b);
}

/* The page: the broker's on a node that serves, the follower's elsewhere. */
static void page_main(struct http_req *h)
{
    if (node_serving())
        html_main(h);
    else
        html_follower(h);
}

static const struct http_route routes[] = {
    {"/healthz", "GET", ROUTE_PUBLIC | ROUTE_ANY_ROLE, page_healthz},
    {"/api/status", "GET", ROUTE_ANY_ROLE, page_status},
    {"/", "GET", ROUTE_ANY_ROLE, page_main},
    {"/index.html", "GET", ROUTE_ANY_ROLE, page_main},
    {"/console.css", "GET", ROUTE_ANY_ROLE, html_css},
    {"/console.js", "GET", ROUTE_ANY_ROLE, html_js},
    {"/metrics", "GET", ROUTE_ANY_ROLE, page_metrics},
    {"/destination", "GET", 0, html_destination},
    {"/api/overview", "GET", 0, page_overview},
    {"/api/queues", "GET", 0, page_queues},
    {"/api/topics", "GET", 0, page_topics},
    {"/api/connections", "GET", 0, page_connections},
    {"/api/cluster", "GET", 0, page_cluster},
    {"/api/counters", "GET", 0, page_counters},
    {"/api/destination", "GET", 0, page_destination},
    {"/api/messages", "GET", 0, page_messages},
    {"/api/scheduler", "GET", 0, page_scheduler},
    {"/api/scheduler/cancel", "POST", 0, action_sched_cancel},
    {"/api/send", "POST", 0, action_send},
    {"/api/messages/move", "POST", 0, action_move},
    {"/api/connections/close", "POST", 0, action_close},
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
    int rc = http_start(&site, err, errlen);
    if (rc == 0 && config.http_listen[0])
        rates_start(srv.loop, config.http_rate_interval);
    return rc;
}

void console_stop(void)
{
    rates_stop();
    http_stop();
}
