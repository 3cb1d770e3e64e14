/* /metrics (see metrics.h): the table of families and their collect
 * functions. Names follow Prometheus' conventions: counters end in
 * _total, units are base units in the name (_bytes, _seconds), the
 * process_* families are those every client library exports, and no two
 * families collide once a parser strips a counter's _total (there is
 * stompd_connections_open, not stompd_connections beside
 * stompd_connections_total). To add a family: one line in `families`
 * (or `dest_families`) and, for the node's, a collect function. */
#include "config.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "stompd/acl.h"
#include "stompd/auth.h"
#include "stompd/cluster.h"
#include "stompd/commit.h"
#include "stompd/config.h"
#include "stompd/console.h"
#include "stompd/dest.h"
#include "stompd/http.h"
#include "stompd/metrics.h"
#include "stompd/node.h"
#include "stompd/persist.h"
#include "stompd/rates.h"
#include "stompd/reload.h"
#include "stompd/repl.h"
#include "stompd/sched.h"
#include "stompd/server.h"
#include "stompd/stats.h"
#include "stompd/store.h"
#include "stompd/stream.h"
#include "stompd/sub.h"
#include "stompd/tls.h"
#include "stompd/ws.h"

struct metrics_out {
    struct buf *b;
    const char *family;
    bool labels_open;
};

/* ------------------------------------------------------------ writing samples */

void metric_begin(struct metrics_out *m, const char *suffix)
{
    buf_append_str(m->b, m->family);
    if (suffix)
        buf_append_str(m->b, suffix);
    m->labels_open = false;
}

/* name="value", the value escaped; the exposition is UTF-8: a client's
 * bytes that are not become U+FFFD */
static void label_pair(struct buf *b, const char *name, const char *value)
{
    buf_printf(b, "%s=\"", name);
    struct buf t = {0};
    size_t n = value ? strlen(value) : 0;
    console_text(&t, value ? value : "", n, n, false);
    buf_putc(&t, '\0');
    for (const char *v = t.data; *v; v++) {
        if (*v == '\\' || *v == '"')
            buf_putc(b, '\\');
        if (*v == '\n') {
            buf_append_str(b, "\\n");
            continue;
        }
        buf_putc(b, *v);
    }
    buf_free(&t);
    buf_putc(b, '"');
}

void metric_label(struct metrics_out *m, const char *name, const char *value)
{
    buf_append_str(m->b, m->labels_open ? "," : "{");
    m->labels_open = true;
    label_pair(m->b, name, value);
}

static void end_labels(struct metrics_out *m)
{
    if (m->labels_open)
        buf_putc(m->b, '}');
    m->labels_open = false;
    buf_putc(m->b, ' ');
}

void metric_u64(struct metrics_out *m, uint64_t v)
{
    end_labels(m);
    buf_printf(m->b, "%llu\n", (unsigned long long)v);
}

void metric_i64(struct metrics_out *m, int64_t v)
{
    end_labels(m);
    buf_printf(m->b, "%lld\n", (long long)v);
}

void metric_f64(struct metrics_out *m, double v)
{
    end_labels(m);
    if (isnan(v))
        buf_append_str(m->b, "NaN\n");
    else if (isinf(v))
        buf_append_str(m->b, v > 0 ? "+Inf\n" : "-Inf\n");
    else
        buf_printf(m->b, "%.17g\n", v);
}

struct buf *metric_buf(struct metrics_out *m)
{
    return m->b;
}

static void one_u64(struct metrics_out *m, uint64_t v)
{
    metric_begin(m, NULL);
    metric_u64(m, v);
}

/* ------------------------------------------------------------ the node */

static void c_build_info(struct metrics_out *m)
{
    metric_begin(m, NULL);
    metric_label(m, "version", PACKAGE_VERSION);
#ifdef HAVE_LIBSYSTEMD
    metric_label(m, "systemd", "yes");
#else
    metric_label(m, "systemd", "no");
#endif
    metric_u64(m, 1);
}

static void c_role(struct metrics_out *m)
{
    for (int r = NODE_STARTING; r < NODE__ROLES; r++) {
        metric_begin(m, NULL);
        metric_label(m, "role", node_role_name((enum node_role)r));
        metric_u64(m, node_role() == (enum node_role)r);
    }
}

/* /proc/self/statm: sizes in pages (size resident ...). */
static bool statm(unsigned long long *vsz, unsigned long long *rss)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return false;
    bool ok = fscanf(f, "%llu %llu", vsz, rss) == 2;
    fclose(f);
    return ok;
}

static void c_rss(struct metrics_out *m)
{
    unsigned long long vsz, rss;
    if (statm(&vsz, &rss))
        one_u64(m, rss * (uint64_t)sysconf(_SC_PAGESIZE));
}

static void c_vsz(struct metrics_out *m)
{
    unsigned long long vsz, rss;
    if (statm(&vsz, &rss))
        one_u64(m, vsz * (uint64_t)sysconf(_SC_PAGESIZE));
}

static void c_open_fds(struct metrics_out *m)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    one_u64(m, n > 0 ? n - 1 : 0); /* not the one reading the folder */
}

static void c_max_fds(struct metrics_out *m)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        one_u64(m, rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur);
}

static void c_cpu(struct metrics_out *m)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return;
    metric_begin(m, NULL);
    metric_f64(m, (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                      ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6);
}

static void c_start_time(struct metrics_out *m)
{
    metric_begin(m, NULL);
    metric_f64(m, (double)srv.started_ms / 1000.0);
}

static void c_conns_open(struct metrics_out *m) { one_u64(m, srv.nconns); }
static void c_lingering(struct metrics_out *m) { one_u64(m, stream_lingering()); }
static void c_conns_total(struct metrics_out *m) { one_u64(m, srv.st.connections_total); }
static void c_conns_refused(struct metrics_out *m) { one_u64(m, srv.st.connections_refused); }
static void c_conns_evicted(struct metrics_out *m) { one_u64(m, srv.st.connections_evicted); }
static void c_frames_in(struct metrics_out *m) { one_u64(m, srv.st.frames_in); }
static void c_frames_out(struct metrics_out *m) { one_u64(m, srv.st.frames_out); }
static void c_msgs_in(struct metrics_out *m) { one_u64(m, srv.st.messages_in); }
static void c_msgs_out(struct metrics_out *m) { one_u64(m, srv.st.messages_out); }
static void c_proto_errors(struct metrics_out *m) { one_u64(m, srv.st.protocol_errors); }
static void c_expired(struct metrics_out *m) { one_u64(m, srv.st.expired); }
static void c_dropped(struct metrics_out *m) { one_u64(m, srv.st.dropped); }
static void c_dead_lettered(struct metrics_out *m) { one_u64(m, srv.st.dead_lettered); }
static void c_dead_letters_discarded(struct metrics_out *m) { one_u64(m, srv.st.dead_letters_discarded); }
static void c_duplicates(struct metrics_out *m) { one_u64(m, srv.st.duplicates); }
static void c_closed_temp(struct metrics_out *m) { one_u64(m, srv.st.closed_temp_dropped); }
static void c_memory(struct metrics_out *m) { one_u64(m, (uint64_t)dest_total_mem()); }
static void c_memory_full(struct metrics_out *m) { one_u64(m, dest_total_mem() >= config.memory_limit); }
static void c_waiting(struct metrics_out *m) { one_u64(m, commit_waiting()); }
static void c_input_held(struct metrics_out *m) { one_u64(m, stream_input_held()); }
static void c_input_unproven(struct metrics_out *m) { one_u64(m, stream_unproven_input_held()); }
static void c_output_held(struct metrics_out *m) { one_u64(m, stream_output_held()); }

static void c_store_bytes(struct metrics_out *m)
{
    if (persist_has_store())
        one_u64(m, store_bytes());
}

static void c_store_full(struct metrics_out *m)
{
    one_u64(m, persist_has_store() && persist_store_full());
}

static void c_journal_lsn(struct metrics_out *m)
{
    uint64_t epoch;
    one_u64(m, persist_position(&epoch));
}

static void c_committed_lsn(struct metrics_out *m) { one_u64(m, commit_lsn()); }

static void c_epoch(struct metrics_out *m)
{
    uint64_t epoch;
    persist_position(&epoch);
    one_u64(m, node_role() == NODE_MASTER ? persist_epoch() : epoch);
}

/* The configured limits an alert compares a gauge with. */
static const struct {
    const char *key;
    const int64_t *value;
    bool bytes;
} limits[] = {
    {"broker.memory_limit", &config.memory_limit, true},
    {"broker.dest_memory_limit", &config.dest_memory_limit, true},
    {"broker.queue_window", &config.queue_window, true},
    {"broker.store_limit", &config.store_limit, true},
    {"stomp.max_frame_size", &config.max_frame_size, true},
    {"stomp.output_limit", &config.output_limit, true},
    {"stomp.max_output_buffers", &config.max_output_buffers, true},
    {"store.repl_window", &config.repl_window, true},
    {"broker.max_connections", &config.max_connections, false},
    {"broker.max_destinations", &config.max_destinations, false},
    {"broker.max_queue_depth", &config.max_queue_depth, false},
    {"stomp.max_subscriptions", &config.max_subscriptions, false},
    {"stomp.max_consumers", &config.max_consumers, false},
    {"broker.max_consumers", &config.broker_max_consumers, false},
    {"stomp.pending_limit", &config.pending_limit, false},
    {"http.max_connections", &config.http_max_connections, false},
    {"broker.topic_pending_limit", &config.topic_pending_limit, false},
};

static void limits_of(struct metrics_out *m, bool bytes)
{
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        if (limits[i].bytes != bytes)
            continue;
        metric_begin(m, NULL);
        metric_label(m, "key", limits[i].key);
        metric_i64(m, *limits[i].value);
    }
}

static void c_limit_bytes(struct metrics_out *m) { limits_of(m, true); }
static void c_limit(struct metrics_out *m) { limits_of(m, false); }

static void c_zk_state(struct metrics_out *m)
{
    static const char *const states[] = {"none", "connecting", "connected", "expired"};
    const char *now = cluster_session_state();
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        metric_begin(m, NULL);
        metric_label(m, "state", states[i]);
        metric_u64(m, !strcmp(now, states[i]));
    }
}

static void c_zk_registered(struct metrics_out *m)
{
    if (cluster_enabled())
        one_u64(m, cluster_registered());
}

/* A follower (slave, or electing after having followed): how far its
 * durable store is behind the master's head as last heard. */
static void c_follower_lag(struct metrics_out *m)
{
    int64_t lag = console_follower_lag();
    if (lag >= 0)
        one_u64(m, (uint64_t)lag);
}

static void c_follower_connected(struct metrics_out *m)
{
    if (repl_slave_running())
        one_u64(m, repl_slave_connected());
}

static void c_repl_window(struct metrics_out *m)
{
    if (repl_master_running())
        one_u64(m, (uint64_t)config.repl_window);
}

/* The master's view of each slave: which value of repl_slave_info. */
enum slave_field { SF_LAG, SF_UNACKED, SF_QUEUED, SF_RECEIVED, SF_PAUSED };

static void slaves(struct metrics_out *m, enum slave_field f)
{
    if (!repl_master_running())
        return;
    struct repl_slave_info si[32];
    size_t ns = repl_master_slaves(si, 32);
    uint64_t last = persist_last_lsn();
    for (size_t i = 0; i < ns; i++) {
        uint64_t v = f == SF_LAG ? (last > si[i].received ? last - si[i].received : 0)
                     : f == SF_UNACKED ? si[i].unacked
                     : f == SF_QUEUED ? si[i].queued
                     : f == SF_RECEIVED ? si[i].received
                                        : (uint64_t)(si[i].paused != NULL);
        metric_begin(m, NULL);
        metric_label(m, "node", si[i].node_id);
        metric_u64(m, v);
    }
}

static void c_repl_lag(struct metrics_out *m) { slaves(m, SF_LAG); }
static void c_repl_unacked(struct metrics_out *m) { slaves(m, SF_UNACKED); }
static void c_repl_queued(struct metrics_out *m) { slaves(m, SF_QUEUED); }
static void c_repl_received(struct metrics_out *m) { slaves(m, SF_RECEIVED); }
static void c_repl_paused(struct metrics_out *m) { slaves(m, SF_PAUSED); }

/* The durable path (stats.h histograms): the store's fdatasync latency
 * and group commit size, each slave's acknowledgement latency. */
static void c_fdatasync(struct metrics_out *m)
{
    if (persist_has_store())
        hist_prom(metric_buf(m), m->family, "", &store_stats()->fdatasync_us, 1e-6);
}

static void c_group_commit(struct metrics_out *m)
{
    if (persist_has_store())
        hist_prom(metric_buf(m), m->family, "", &store_stats()->group_entries, 1);
}

static void c_index_skipped(struct metrics_out *m)
{
    if (persist_has_store())
        one_u64(m, store_stats()->index_skipped);
}

static void c_inline_writes(struct metrics_out *m)
{
    if (persist_has_store())
        one_u64(m, store_stats()->inline_writes);
}

static void c_store_queued(struct metrics_out *m)
{
    if (persist_has_store())
        one_u64(m, store_queued());
}

static void c_producer_store_waits(struct metrics_out *m)
{
    if (persist_has_store())
        one_u64(m, persist_writer_waits());
}

static void c_repl_store_waits(struct metrics_out *m)
{
    if (repl_slave_running())
        one_u64(m, repl_slave_store_waits());
}

static void slave_hists(struct metrics_out *m, bool durable)
{
    if (!repl_master_running())
        return;
    struct repl_slave_info si[32];
    size_t ns = repl_master_slaves(si, 32);
    for (size_t i = 0; i < ns; i++) {
        struct buf l = {0};
        label_pair(&l, "node", si[i].node_id);
        buf_putc(&l, '\0');
        hist_prom(metric_buf(m), m->family, l.data, durable ? si[i].durable_us : si[i].ack_us, 1e-6);
        buf_free(&l);
    }
}

static void c_repl_ack(struct metrics_out *m) { slave_hists(m, false); }
static void c_repl_durable_ack(struct metrics_out *m) { slave_hists(m, true); }

/* Each listener's accepted and refused connections, and how often it ran
 * out of file descriptors. */
enum listener_field { LF_ACCEPTED, LF_REFUSED, LF_FD_EXHAUSTED };

static void listeners(struct metrics_out *m, enum listener_field f)
{
    const struct listener *ls[16];
    size_t n = listener_list(ls, 16);
    for (size_t i = 0; i < n; i++) {
        metric_begin(m, NULL);
        metric_label(m, "listener", ls[i]->name);
        metric_u64(m, f == LF_ACCEPTED ? ls[i]->accepted : f == LF_REFUSED ? ls[i]->refused : ls[i]->fd_exhausted);
    }
}

static void c_listener_accepted(struct metrics_out *m) { listeners(m, LF_ACCEPTED); }
static void c_listener_refused(struct metrics_out *m) { listeners(m, LF_REFUSED); }
static void c_listener_fd_exhausted(struct metrics_out *m) { listeners(m, LF_FD_EXHAUSTED); }

static void c_destinations(struct metrics_out *m) { one_u64(m, dest_count()); }

/* authentication and the ACL */
static struct auth_stats auth_now(void)
{
    struct auth_stats as;
    auth_get_stats(&as);
    return as;
}
static void c_reloads(struct metrics_out *m)
{
    struct reload_stats r = reload_stats();
    metric_begin(m, NULL);
    metric_label(m, "result", "applied");
    metric_u64(m, r.applied);
    metric_begin(m, NULL);
    metric_label(m, "result", "failed");
    metric_u64(m, r.failed);
}
static void c_reload_ok(struct metrics_out *m) { one_u64(m, reload_stats().last_ok); }
static void c_auth_failures(struct metrics_out *m) { one_u64(m, auth_now().stomp_failures); }
static void c_console_auth_failures(struct metrics_out *m) { one_u64(m, auth_now().console_failures); }
static void c_access_denied(struct metrics_out *m) { one_u64(m, acl_denials()); }
static void c_wildcard_refused(struct metrics_out *m) { one_u64(m, sub_legs_refused()); }
static void c_consumers(struct metrics_out *m) { one_u64(m, sub_consumers()); }
static void c_auth_checks(struct metrics_out *m) { one_u64(m, auth_now().checks); }
static void c_auth_pending(struct metrics_out *m) { one_u64(m, auth_now().pending); }
static void c_auth_cache_hits(struct metrics_out *m) { one_u64(m, auth_now().cache_hits); }
static void c_auth_coalesced(struct metrics_out *m) { one_u64(m, auth_now().coalesced); }
static void c_auth_busy(struct metrics_out *m) { one_u64(m, auth_now().busy); }
static void c_auth_abandoned(struct metrics_out *m) { one_u64(m, auth_now().abandoned); }

/* WebSocket */
static void c_ws_open(struct metrics_out *m) { one_u64(m, ws_stats()->open); }
static void c_ws_upgrades(struct metrics_out *m) { one_u64(m, ws_stats()->upgrades); }
static void c_ws_refused(struct metrics_out *m) { one_u64(m, ws_stats()->refused); }
static void c_ws_failed(struct metrics_out *m) { one_u64(m, ws_stats()->failed); }
static void c_ws_in(struct metrics_out *m) { one_u64(m, ws_stats()->messages_in); }
static void c_ws_out(struct metrics_out *m) { one_u64(m, ws_stats()->messages_out); }

/* TLS and the replication port's authentication */
static struct tls_stats tls_now(void)
{
    struct tls_stats ts;
    tls_get_stats(&ts);
    return ts;
}
static void c_tls_handshakes(struct metrics_out *m) { one_u64(m, tls_now().handshakes); }
static void c_tls_failed(struct metrics_out *m) { one_u64(m, tls_now().failed); }
static void c_tls_timed_out(struct metrics_out *m) { one_u64(m, tls_now().timed_out); }
static void c_repl_auth_failures(struct metrics_out *m) { one_u64(m, repl_master_auth_failures()); }
static void c_repl_evicted(struct metrics_out *m) { one_u64(m, repl_master_handshakes_evicted()); }

/* selectors */
static struct sub_selector_stats sel_now(void)
{
    struct sub_selector_stats sel;
    sub_selector_stats(&sel);
    return sel;
}
static void c_sel_evaluated(struct metrics_out *m) { one_u64(m, sel_now().evaluated); }
static void c_sel_deferred(struct metrics_out *m) { one_u64(m, sel_now().deferred); }
static void c_sel_over_budget(struct metrics_out *m) { one_u64(m, sel_now().over_budget); }

/* the console's own transport */
static void c_http_timeouts(struct metrics_out *m) { one_u64(m, http_counters()->request_timeouts); }
static void c_http_evicted(struct metrics_out *m) { one_u64(m, http_counters()->evicted); }
static void c_http_misdirected(struct metrics_out *m) { one_u64(m, http_counters()->misdirected); }

/* the scheduler (AMQ_SCHEDULED_*) */
static struct sched_info sched_now(void)
{
    struct sched_info si;
    sched_info(&si);
    return si;
}
static void c_sched_waiting(struct metrics_out *m) { one_u64(m, sched_now().scheduled); }
static void c_sched_in_memory(struct metrics_out *m) { one_u64(m, sched_now().in_memory); }
static void c_sched_fired(struct metrics_out *m) { one_u64(m, sched_now().fired); }
static void c_sched_cancelled(struct metrics_out *m) { one_u64(m, sched_now().cancelled); }

static void c_rates_bytes(struct metrics_out *m)
{
    one_u64(m, rates_memory(NULL));
}

struct family {
    const char *name, *type, *help;
    void (*collect)(struct metrics_out *m);
};

static const struct family families[] = {
    {"stompd_build_info", "gauge", "1, labelled with this build's version", c_build_info},
    {"stompd_role", "gauge", "1 for this node's current role, 0 for the others", c_role},
    {"process_resident_memory_bytes", "gauge", "Resident memory size in bytes", c_rss},
    {"process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes", c_vsz},
    {"process_open_fds", "gauge", "Open file descriptors", c_open_fds},
    {"process_max_fds", "gauge", "Limit of open file descriptors", c_max_fds},
    {"process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds", c_cpu},
    {"process_start_time_seconds", "gauge", "Start time of the process since the epoch, in seconds", c_start_time},
    {"stompd_limit_bytes", "gauge", "A configured limit in bytes (key names it)", c_limit_bytes},
    {"stompd_limit", "gauge", "A configured limit, a count (key names it; 0 = none where the key allows it)",
     c_limit},
    {"stompd_connections_open", "gauge", "Client connections open", c_conns_open},
    {"stompd_connections_total", "counter", "Client connections accepted", c_conns_total},
    {"stompd_connections_refused_total", "counter", "Client connections refused at the limit", c_conns_refused},
    {"stompd_connections_evicted_total", "counter",
     "Client connections not logged in closed to make room for a newcomer (broker.reserved_connections)",
     c_conns_evicted},
    {"stompd_lingering_sockets", "gauge",
     "Sockets closed after their last answer that still drain what their peer sends (at most 256, 10 s each)",
     c_lingering},
    {"stompd_listener_accepted_total", "counter", "Connections a listener accepted", c_listener_accepted},
    {"stompd_listener_refused_total", "counter",
     "Connections a listener refused (at its limit, or out of descriptors)", c_listener_refused},
    {"stompd_listener_fd_exhausted_total", "counter", "Times a listener could not accept for lack of file descriptors",
     c_listener_fd_exhausted},
    {"stompd_frames_in_total", "counter", "STOMP frames received", c_frames_in},
    {"stompd_frames_out_total", "counter", "STOMP frames sent (every kind: CONNECTED, MESSAGE, RECEIPT, ERROR)",
     c_frames_out},
    {"stompd_messages_in_total", "counter", "Messages accepted", c_msgs_in},
    {"stompd_messages_out_total", "counter", "Message deliveries", c_msgs_out},
    {"stompd_protocol_errors_total", "counter", "Connections closed for a protocol error", c_proto_errors},
    {"stompd_expired_total", "counter", "Messages expired", c_expired},
    {"stompd_dropped_total", "counter",
     "Messages discarded from non-durable topic subscriptions that read too slowly (broker.topic_pending_limit)",
     c_dropped},
    {"stompd_dead_lettered_total", "counter", "Messages moved to a dead-letter queue", c_dead_lettered},
    {"stompd_dead_letters_discarded_total", "counter",
     "Non-persistent messages discarded instead of dead-lettered: their dead-letter queue was full",
     c_dead_letters_discarded},
    {"stompd_duplicates_total", "counter", "Resent duplicates dropped", c_duplicates},
    {"stompd_closed_temp_dropped_total", "counter",
     "Message copies sent to a temporary destination whose connection had closed (nobody can consume them)",
     c_closed_temp},
    {"stompd_destinations", "gauge", "Destinations held (queues and topics)", c_destinations},
    {"stompd_config_reloads_total", "counter",
     "Configuration reloads (SIGHUP): applied whole, or failed (the file refused, or a part kept its settings)",
     c_reloads},
    {"stompd_config_last_reload_successful", "gauge", "1 when the last reload was applied whole (or none was made)",
     c_reload_ok},
    {"stompd_auth_failures_total", "counter", "CONNECTs refused for their credentials", c_auth_failures},
    {"stompd_console_auth_failures_total", "counter", "Console requests refused for their credentials or group",
     c_console_auth_failures},
    {"stompd_access_denied_total", "counter", "Frames and console actions refused by auth.acl", c_access_denied},
    {"stompd_consumers", "gauge",
     "Destinations all subscriptions take from: one per plain subscription, one per destination of a composite or "
     "wildcard one (broker.max_consumers)",
     c_consumers},
    {"stompd_wildcard_matches_refused_total", "counter",
     "Queues created after a wildcard SUBSCRIBE that had no room to take from (stomp.max_consumers, "
     "broker.max_consumers)",
     c_wildcard_refused},
    {"stompd_auth_checks_total", "counter", "Password checks run (crypt(3) on the auth.hash_threads)",
     c_auth_checks},
    {"stompd_auth_cache_hits_total", "counter", "Logins answered from the login cache (auth.cache)",
     c_auth_cache_hits},
    {"stompd_auth_coalesced_total", "counter", "Logins that joined an identical password check in flight",
     c_auth_coalesced},
    {"stompd_auth_busy_total", "counter",
     "Logins refused at once: their address had auth.max_checks_per_peer password checks waiting", c_auth_busy},
    {"stompd_auth_abandoned_total", "counter",
     "Password checks dropped before they ran: every connection waiting for them had closed", c_auth_abandoned},
    {"stompd_auth_checks_pending", "gauge",
     "Password checks waiting for a worker or running, for a login still waiting", c_auth_pending},
    {"stompd_memory_bytes", "gauge", "Bytes of messages held", c_memory},
    {"stompd_memory_full", "gauge", "1 while the messages held reach broker.memory_limit (producers wait)",
     c_memory_full},
    {"stompd_waiting_for_store", "gauge", "Frames waiting for the journal", c_waiting},
    {"stompd_input_buffered_bytes", "gauge",
     "Bytes of input held: frames not yet whole and input read before a pause (stomp.max_input_buffers)",
     c_input_held},
    {"stompd_input_buffered_unproven_bytes", "gauge",
     "Of those, held by connections not logged in (a quarter of stomp.max_input_buffers at most)",
     c_input_unproven},
    {"stompd_output_buffered_bytes", "gauge",
     "Bytes of output not yet written, all connections together (stomp.max_output_buffers)", c_output_held},
    {"stompd_store_bytes", "gauge", "Bytes the store takes on disk", c_store_bytes},
    {"stompd_store_fdatasync_seconds", "histogram", "Time of each fdatasync of the store's log", c_fdatasync},
    {"stompd_store_group_commit_entries", "histogram", "Journal entries made durable by one fdatasync",
     c_group_commit},
    {"stompd_store_inline_writes_total", "counter",
     "Groups of journal entries the event loop wrote to the log itself (nothing to fsync, the writer idle)",
     c_inline_writes},
    {"stompd_store_index_skipped_total", "counter",
     "Persistent messages acknowledged before their index write, so never written to LevelDB", c_index_skipped},
    {"stompd_store_queued_bytes", "gauge", "Journal bytes in memory, appended and not yet written by the store",
     c_store_queued},
    {"stompd_store_producer_waits_total", "counter",
     "Times persistent producers began to wait for the store's writer (store.repl_window bytes not yet written)",
     c_producer_store_waits},
    {"stompd_repl_store_waits_total", "counter",
     "Times this slave stopped reading from its master until its store caught up (store.repl_window)",
     c_repl_store_waits},
    {"stompd_store_full", "gauge", "1 while the store is above broker.store_limit (persistent producers wait)",
     c_store_full},
    {"stompd_journal_lsn", "gauge", "Journal position", c_journal_lsn},
    {"stompd_committed_lsn", "gauge", "Committed journal position", c_committed_lsn},
    {"stompd_ws_connections", "gauge", "WebSocket connections open", c_ws_open},
    {"stompd_ws_upgrades_total", "counter", "WebSocket upgrade requests accepted", c_ws_upgrades},
    {"stompd_ws_refused_total", "counter", "WebSocket connection attempts refused (HTTP 4xx, 503 at the limit)",
     c_ws_refused},
    {"stompd_ws_failed_total", "counter",
     "WebSocket connections failed for breaking a framing rule (close 1002, 1007, 1009)", c_ws_failed},
    {"stompd_ws_messages_in_total", "counter", "WebSocket messages received", c_ws_in},
    {"stompd_ws_messages_out_total", "counter", "WebSocket messages sent", c_ws_out},
    {"stompd_epoch", "gauge", "Epoch", c_epoch},
    {"stompd_scheduled_messages", "gauge", "Scheduled messages waiting (AMQ_SCHEDULED_*)", c_sched_waiting},
    {"stompd_scheduled_in_memory", "gauge", "Scheduled messages held in memory", c_sched_in_memory},
    {"stompd_scheduled_fired_total", "counter", "Scheduled deliveries made", c_sched_fired},
    {"stompd_scheduled_cancelled_total", "counter", "Scheduled messages cancelled", c_sched_cancelled},
    {"stompd_tls_handshakes_total", "counter", "TLS handshakes finished", c_tls_handshakes},
    {"stompd_tls_handshake_failures_total", "counter", "TLS handshakes failed (no TLS, bad certificate, timed out)",
     c_tls_failed},
    {"stompd_tls_handshake_timeouts_total", "counter", "TLS handshakes not finished within tls.handshake_timeout",
     c_tls_timed_out},
    {"stompd_repl_auth_failures_total", "counter", "Replication peers refused: no proof of store.security_token",
     c_repl_auth_failures},
    {"stompd_repl_handshakes_evicted_total", "counter",
     "Replication peers closed unauthenticated to make room (store.max_unauthenticated)", c_repl_evicted},
    {"stompd_selector_evaluations_total", "counter",
     "Selector evaluations that reached a verdict (a message offered to a subscription with a selector)",
     c_sel_evaluated},
    {"stompd_selector_deferred_total", "counter",
     "Selector verdicts put off to a later loop iteration by stomp.selector_budget", c_sel_deferred},
    {"stompd_selector_over_budget_total", "counter",
     "Selector evaluations a whole stomp.selector_budget could not finish (taken as not matching)",
     c_sel_over_budget},
    {"stompd_zookeeper_session_state", "gauge", "1 for the ZooKeeper session's current state (none: no ZooKeeper)",
     c_zk_state},
    {"stompd_zookeeper_registered", "gauge", "1 while this node's member znode exists", c_zk_registered},
    {"stompd_follower_lag", "gauge",
     "Journal entries this follower's durable store is behind its master's head, as last heard (while cut off, as "
     "ZooKeeper last had it, if later)",
     c_follower_lag},
    {"stompd_follower_connected", "gauge", "1 while this follower is connected to its master",
     c_follower_connected},
    {"stompd_repl_window_bytes", "gauge", "Journal bytes in flight to one slave at most (store.repl_window)",
     c_repl_window},
    {"stompd_repl_lag", "gauge", "Journal entries the master has that a slave has not acknowledged", c_repl_lag},
    {"stompd_repl_unacked_bytes", "gauge", "Journal bytes sent to a slave and not acknowledged", c_repl_unacked},
    {"stompd_repl_queued_bytes", "gauge", "Bytes for a slave not yet taken by its socket", c_repl_queued},
    {"stompd_repl_received_lsn", "gauge", "Last journal position a slave acknowledged", c_repl_received},
    {"stompd_repl_ack_seconds", "histogram",
     "From a journal entry's append to a slave's acknowledgement that it has it", c_repl_ack},
    {"stompd_repl_durable_ack_seconds", "histogram",
     "From a journal entry's append to a slave's acknowledgement that it has it on disk", c_repl_durable_ack},
    {"stompd_repl_paused", "gauge", "1 while nothing more can be sent to a slave (window or socket full)",
     c_repl_paused},
    {"stompd_console_rates_bytes", "gauge", "Memory the console's message rates take", c_rates_bytes},
    {"stompd_http_request_timeouts_total", "counter",
     "Console requests not whole within http.request_timeout (answered 408)", c_http_timeouts},
    {"stompd_http_evicted_total", "counter",
     "Unauthenticated console connections closed to make room (http.reserved_connections)", c_http_evicted},
    {"stompd_http_misdirected_total", "counter", "Console requests naming a Host it does not answer to (421)",
     c_http_misdirected},
};

/* ------------------------------------------------------------ destinations */

struct dest_family {
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
static uint64_t f_drop(const struct dest *d) { return d->st.dropped; }
static uint64_t f_mem(const struct dest *d) { return (uint64_t)d->mem; }
static uint64_t f_full(const struct dest *d) { return dest_is_full(d); }
static uint64_t f_pend(const struct dest *d) { return d->q.npending; }
static uint64_t f_pmem(const struct dest *d) { return d->q.nresident; }
static uint64_t f_pdisk(const struct dest *d) { return d->q.npending - d->q.nresident; }
static uint64_t f_infl(const struct dest *d) { return d->q.ninflight; }
static uint64_t f_cons(const struct dest *d) { return d->q.nconsumers; }
static uint64_t f_subs(const struct dest *d) { return d->nsubscribers; }
static uint64_t f_durs(const struct dest *d) { return d->ndurables; }

static const struct dest_family dest_families[] = {
    {"enqueued_total", "counter", "Messages accepted", 0, f_enq},
    {"dequeued_total", "counter", "Messages acknowledged", 0, f_deq},
    {"dispatched_total", "counter", "Deliveries, redeliveries included", 0, f_disp},
    {"redelivered_total", "counter", "Redeliveries", 0, f_redel},
    {"expired_total", "counter", "Messages expired", 0, f_exp},
    {"dead_lettered_total", "counter", "Messages moved to a dead-letter queue", 0, f_dlq},
    {"dropped_total", "counter",
     "Messages discarded from subscriptions that read too slowly (broker.topic_pending_limit)", 2, f_drop},
    {"memory_bytes", "gauge", "Bytes of messages held", 0, f_mem},
    {"full", "gauge", "1 while the destination is full (its producers wait: flow control)", 0, f_full},
    {"pending", "gauge", "Messages waiting in a queue", 1, f_pend},
    {"pending_in_memory", "gauge", "Of the messages waiting in a queue, those held in memory", 1, f_pmem},
    {"pending_on_disk", "gauge", "Of the messages waiting in a queue, those only in the store (paged out)", 1, f_pdisk},
    {"inflight", "gauge", "Messages delivered and not yet acknowledged", 1, f_infl},
    {"consumers", "gauge", "Subscriptions consuming from a queue", 1, f_cons},
    {"subscribers", "gauge", "Active subscriptions of a topic", 2, f_subs},
    {"durable_subscriptions", "gauge", "Durable subscriptions of a topic", 2, f_durs},
};

struct dest_vec {
    struct dest **v;
    size_t n, cap;
};

static void gather(struct dest *d, void *arg)
{
    struct dest_vec *l = arg;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v)
            abort();
    }
    l->v[l->n++] = d;
}

static void header(struct buf *b, const char *name, const char *type, const char *help)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_render(struct buf *out)
{
    struct metrics_out m = {.b = out};
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        header(out, families[i].name, families[i].type, families[i].help);
        m.family = families[i].name;
        families[i].collect(&m);
    }
    /* by name, once for every family; at most http.max_listed_destinations
     * of them (helper-102: 50,000 queues made 52 MB, and held the loop 3 s) */
    struct dest_vec l = {0};
    dest_foreach(gather, &l);
    size_t kept = dest_top(l.v, l.n, (size_t)config.http_max_listed_destinations), omitted = l.n - kept;
    l.n = kept;
    header(out, "stompd_metrics_destinations_omitted", "gauge",
           "Destinations left out of the stompd_destination_* series (http.max_listed_destinations)");
    m.family = "stompd_metrics_destinations_omitted";
    one_u64(&m, omitted);
    char name[128];
    for (size_t i = 0; i < sizeof dest_families / sizeof dest_families[0]; i++) {
        const struct dest_family *f = &dest_families[i];
        snprintf(name, sizeof name, "stompd_destination_%s", f->name);
        header(out, name, f->type, f->help);
        m.family = name;
        for (size_t k = 0; k < l.n; k++) {
            struct dest *d = l.v[k];
            if ((f->applies == 1 && !dest_is_queue(d)) || (f->applies == 2 && dest_is_queue(d)))
                continue;
            metric_begin(&m, NULL);
            metric_label(&m, "destination", d->name);
            metric_label(&m, "type", dest_is_queue(d) ? "queue" : "topic");
            metric_u64(&m, f->get(d));
        }
    }
    free(l.v);
}
