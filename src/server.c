/* The node: the STOMP listener, the accept path with its connection limit,
 * the before-sleep hook (resume paused readers, dispatch dirty queues,
 * flush output, free closed connections), the expiry sweep (which also
 * removes idle destinations) and signals. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "stompd/browse.h"
#include "stompd/commit.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/durable.h"
#include "stompd/log.h"
#include "stompd/notify.h"
#include "stompd/server.h"
#include "stompd/persist.h"
#include "stompd/repl.h"
#include "stompd/sched.h"
#include "stompd/store.h"
#include "stompd/stream.h"
#include "stompd/sub.h"
#include "stompd/ws.h"
#include "stompd/tls.h"

struct server srv;

int64_t server_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void server_next_msg_id(char *out, size_t len)
{
    char digits[21];
    size_t pl = strlen(srv.msg_id_prefix), dl = fmt_u64(digits, ++srv.msg_id_counter);
    if (pl + dl >= len) {
        snprintf(out, len, "%s%s", srv.msg_id_prefix, digits);
        return;
    }
    memcpy(out, srv.msg_id_prefix, pl);
    memcpy(out + pl, digits, dl + 1);
}

uint64_t server_next_seq(void)
{
    return ++srv.next_msg_seq;
}

void server_seq_at_least(uint64_t seq)
{
    if (seq > srv.next_msg_seq)
        srv.next_msg_seq = seq;
}

static void refuse(struct listener *l, int fd)
{
#define REFUSED_BODY "The broker is at broker.max_connections.\n"
    /* content-length as on every ERROR */
    static const char msg[] =
        "ERROR\nmessage:too many connections\ncontent-type:text/plain\ncontent-length:41\n\n" REFUSED_BODY;
    _Static_assert(sizeof REFUSED_BODY - 1 == 41, "the content-length above");
#undef REFUSED_BODY
    listener_say(fd, msg, sizeof msg); /* includes the NUL terminator */
    srv.st.connections_refused++;
}

static void accept_client(struct listener *l, int fd, const char *peer)
{
    struct conn *c = conn_new(fd, peer);
    listener_attach(l, &c->st);
}

/* A WebSocket client at the limit has not sent its upgrade request yet:
 * it hears HTTP. */
static void refuse_ws(struct listener *l, int fd)
{
    static const char body[] = "too many connections: the broker is at broker.max_connections\n";
    char msg[256];
    int n = snprintf(msg, sizeof msg, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", sizeof body - 1, body);
    listener_say(fd, msg, (size_t)n);
    srv.st.connections_refused++;
    ws_count_refused();
}

/* A STOMP connection whose stream speaks WebSocket below the parser. */
static void accept_ws(struct listener *l, int fd, const char *peer)
{
    struct conn *c = conn_new(fd, peer);
    ws_attach(&c->st, c->id);
    listener_attach(l, &c->st);
}

static int listen_ws(void)
{
    char err[512];
    if (!config.ws_listen[0] || listener_running(&srv.ws))
        return 0;
    srv.ws.name = "WebSocket";
    srv.ws.addr_key = "stomp.ws_listen";
    srv.ws.limit_key = "broker.max_connections";
    srv.ws.limit_with = &srv.stomp; /* one limit for every client connection */
    srv.ws.nodelay = true;
    srv.ws.make_room = conn_make_room;
    srv.ws.accept = accept_ws;
    srv.ws.refuse = refuse_ws;
    if (listener_start(&srv.ws, config.ws_listen, err, sizeof err) != 0) {
        log_err("WebSocket listener: %s", err);
        return -1;
    }
    log_info("accepting STOMP over WebSocket on ws://%s/", config.ws_listen);
    return 0;
}

/* stomp.wss_listen: WebSocket over TLS (a browser on an https:// page),
 * the TLS transport under the WebSocket layer. Refused without a word, as
 * for STOMP over TLS. */
static int listen_wss(void)
{
    char err[512];
    if (!config.wss_listen[0] || listener_running(&srv.wss))
        return 0;
    srv.wss.name = "WebSocket over TLS";
    srv.wss.addr_key = "stomp.wss_listen";
    srv.wss.limit_key = "broker.max_connections";
    srv.wss.limit_with = &srv.stomp;
    srv.wss.nodelay = true;
    srv.wss.make_room = conn_make_room;
    srv.wss.accept = accept_ws;
    srv.wss.secure = tls_accept_client;
    if (listener_start(&srv.wss, config.wss_listen, err, sizeof err) != 0) {
        log_err("WebSocket over TLS listener: %s", err);
        return -1;
    }
    log_info("accepting STOMP over WebSocket over TLS on wss://%s/", config.wss_listen);
    return 0;
}

/* stomp.tls_listen: STOMP over TLS (ActiveMQ's stomp+ssl), the same
 * clients and the same connection limit as the plain listener. A refused
 * TLS client gets no STOMP ERROR: it could not read one. */
static int listen_tls_clients(void)
{
    char err[512];
    if (!config.stomp_tls_listen[0] || listener_running(&srv.stomp_tls))
        return 0;
    srv.stomp_tls.name = "STOMP over TLS";
    srv.stomp_tls.addr_key = "stomp.tls_listen";
    srv.stomp_tls.limit_key = "broker.max_connections";
    srv.stomp_tls.limit_with = &srv.stomp;
    srv.stomp_tls.nodelay = true;
    srv.stomp_tls.make_room = conn_make_room;
    srv.stomp_tls.accept = accept_client;
    srv.stomp_tls.secure = tls_accept_client;
    if (listener_start(&srv.stomp_tls, config.stomp_tls_listen, err, sizeof err) != 0) {
        log_err("STOMP over TLS listener: %s", err);
        return -1;
    }
    log_info("accepting STOMP over TLS on %s", config.stomp_tls_listen);
    return 0;
}

/* The listeners beside stomp.listen, sharing its connection limit. */
static int listen_others(void)
{
    return listen_ws() == 0 && listen_wss() == 0 && listen_tls_clients() == 0 ? 0 : -1;
}

int server_listen_clients(void)
{
    char err[512];
    if (listener_running(&srv.stomp))
        return listen_others();
    srv.stomp.name = "STOMP";
    srv.stomp.addr_key = "stomp.listen";
    srv.stomp.limit_key = "broker.max_connections";
    srv.stomp.max_conns = (uint32_t)config.max_connections;
    srv.stomp.nodelay = true;
    srv.stomp.make_room = conn_make_room;
    srv.stomp.accept = accept_client;
    srv.stomp.refuse = refuse;
    if (listener_start(&srv.stomp, config.stomp_listen, err, sizeof err) != 0) {
        log_err("STOMP listener: %s", err);
        return -1;
    }
    log_info("accepting STOMP clients on %s", config.stomp_listen);
    return listen_others();
}

static void listeners_close(const char *why)
{
    if (listener_running(&srv.stomp)) {
        listener_stop(&srv.stomp);
        log_info("STOMP listener closed: %s", why);
    }
    if (listener_running(&srv.ws)) {
        listener_stop(&srv.ws);
        log_info("WebSocket listener closed: %s", why);
    }
    if (listener_running(&srv.wss)) {
        listener_stop(&srv.wss);
        log_info("WebSocket over TLS listener closed: %s", why);
    }
    if (listener_running(&srv.stomp_tls)) {
        listener_stop(&srv.stomp_tls);
        log_info("STOMP over TLS listener closed: %s", why);
    }
}

void server_close_clients(const char *why)
{
    listeners_close(why);
    struct conn *c, *next;
    for (c = TAILQ_FIRST(&srv.conns); c; c = next) {
        next = TAILQ_NEXT(c, link);
        conn_close(c, why);
    }
}

static void stop_now(void)
{
    if (ev_is_active(&srv.stop_wait))
        ev_timer_stop(srv.loop, &srv.stop_wait);
    srv.stopping = true;
    ev_break(srv.loop, EVBREAK_ALL);
}

/* Queues have deliveries to make (and may make them). */
static bool dirty(void)
{
    return server_delivers() && (!TAILQ_EMPTY(&srv.dirty) || browse_waiting());
}

/* Everything the loop owes before it sleeps. Bounded rounds: work left
 * over keeps the loop spinning (ev_idle) instead of sleeping. */
static void before_sleep(struct ev_loop *loop, ev_prepare *w, int revents)
{
    bool reported = false; /* the loop wrote to the store itself: its report runs next */
    for (int round = 0; round < 4; round++) {
        bool work = stream_run_resumed();
        if (server_delivers()) { /* e.g. no new work while the slaves catch up */
            work |= queue_dispatch_dirty();
            work |= browse_run();
        }
        /* acks and delivery marks: one journal entry once something waits
         * for them; then everything appended goes to the slaves in one
         * frame each */
        if (persist_flush_coalesced())
            queue_journal_flushed(persist_last_lsn());
        repl_master_flush();
        /* what this round journaled, to the store's writer (at once, unless
         * lazy), or written here (its report is an event now pending) */
        reported |= store_kick_lazy();
        store_poll(); /* durability reports the writer did not wake the loop for */
        bool need = queue_waits_for_index() || sched_waits_for_index();
        if (need || queue_follows_index() || sched_follows_index())
            store_poll_indexed(need);
        /* the clients' output only now: an auto-ack MESSAGE has no
         * delivery mark, so on a master its dequeue (persist_auto_acked)
         * must reach the slaves before the MESSAGE leaves (a standalone
         * node holds the output until the store wrote it); sending
         * output earlier in the round was measured faster and is wrong
         * (docs/performance.md, stop 36) */
        stream_flush_all();
        if (!work && !dirty())
            break;
    }
    stream_free_dead();
    size_t reclaimed = dest_reclaim(); /* nothing holds them now */
    if (reclaimed)
        log_debug("%zu idle destinations removed to make room (broker.max_destinations)", reclaimed);
    const char *why;
    if (srv.handing_over && (why = persist_handed_over())) {
        log_info("stopping: %s", why);
        stop_now();
    }
    if (dirty() || stream_flush_pending() || store_chain_waiting() || reported)
        ev_idle_start(loop, &srv.spin);
    else
        ev_idle_stop(loop, &srv.spin);
}

static void spin_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    /* Nothing: its only job is to keep the loop from blocking. */
}

static void collect_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    if (srv.handing_over)
        return; /* no new work */
    /* a heap of the messages in memory: the cost is what expires */
    queue_expire_due(server_now_ms());
    queue_expire_paged(server_now_ms()); /* and what is in the store only */
    collect_cb(loop, &srv.sweep_more, 0);
}

/* The idle destinations, a bounded step a turn until the sweep has
 * visited them all. */
static void collect_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    bool more;
    size_t n = dest_collect_idle(&more);
    if (n)
        log_debug("%zu idle destinations removed", n);
    if (more && !srv.handing_over) {
        ev_timer_stop(loop, w);
        ev_timer_set(w, 0., 0.);
        ev_timer_start(loop, w);
    }
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    log_info("signal %d: stopping", w->signum);
    server_stop();
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            log_warn("cannot raise the open-files limit: %s", strerror(errno));
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (int64_t)rl.rlim_cur < config.max_connections + 64 + STREAM_LINGER_MAX)
        log_warn("open-files limit %llu is below broker.max_connections (%lld): raise it (ulimit -n)",
                 (unsigned long long)rl.rlim_cur, (long long)config.max_connections);
}

int server_init(struct ev_loop *loop)
{
    memset(&srv, 0, sizeof srv);
    srv.loop = loop;
    stream_layer_init(loop);
    TAILQ_INIT(&srv.conns);
    TAILQ_INIT(&srv.dirty);
    srv.started_ms = server_now_ms();
    snprintf(srv.msg_id_prefix, sizeof srv.msg_id_prefix, "ID-%.60s-%lld-", config.broker_name,
             (long long)srv.started_ms);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a file size limit is a write error, reported */
    raise_fd_limit();
    ev_prepare_init(&srv.before_sleep, before_sleep);
    ev_prepare_start(loop, &srv.before_sleep);
    ev_idle_init(&srv.spin, spin_cb);
    ev_signal_init(&srv.sigterm, signal_cb, SIGTERM);
    ev_signal_start(loop, &srv.sigterm);
    ev_signal_init(&srv.sigint, signal_cb, SIGINT);
    ev_signal_start(loop, &srv.sigint);
    double sweep = (double)config.expiry_check_interval / 1000.0;
    ev_timer_init(&srv.sweep, sweep_cb, sweep, sweep);
    ev_timer_start(loop, &srv.sweep);
    ev_timer_init(&srv.sweep_more, collect_cb, 0., 0.);
    return 0;
}

int server_run(void)
{
    ev_run(srv.loop, 0);
    return 0;
}

static void stop_wait_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    log_warn("stopping without the slaves in step: committed up to lsn %" PRIu64 " of %" PRIu64
             " within store.stop_wait; a new master may deliver again, unmarked, what this one just delivered",
             commit_lsn(), persist_last_lsn());
    stop_now();
}

/* A master killed leaves its slaves what their sockets took; one stopped
 * leaves them everything: it takes no new work (no client, no input, no
 * delivery, no scheduled or expired message, no console action), and the
 * loop runs on, shipping what was journaled (every entry marked waited
 * for: slaves ACK it at once) and sending what waited for it, until the
 * slaves have all of it. What then happens to the clients is what a
 * crash does, less the doubt: every RECEIPT sent is for a message the
 * next master has, and no auto-ack delivery comes again unmarked. */
void server_stop(void)
{
    /* the acks coalesced so far are journaled too (and waited for) */
    persist_flush();
    if (srv.handing_over || config.stop_wait <= 0 || persist_handed_over()) {
        stop_now();
        return;
    }
    srv.handing_over = true;
    notify_stopping(); /* systemd: the stop has begun */
    log_info("stopping once the slaves have every entry journaled (at most store.stop_wait, %.3g s; a second "
             "signal stops at once)",
             (double)config.stop_wait / 1000.0);
    listeners_close("broker stopping");
    struct conn *c;
    TAILQ_FOREACH(c, &srv.conns, link)
    {
        conn_pause(c, PAUSE_STOPPING);
    }
    ev_timer_init(&srv.stop_wait, stop_wait_cb, (double)config.stop_wait / 1000.0, 0);
    ev_timer_start(srv.loop, &srv.stop_wait);
}

/* Clean stop: no new clients, best-effort flush of what is queued for the
 * ones we have, then every broker structure freed. */
void server_shutdown(void)
{
    /* The loop has ended: a signal has nothing left to stop, and its
     * default action would kill the stop part way. Ignored for every
     * thread; the watchers stay started, as stopping them would restore
     * the default. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    srv.stopping = true; /* what consumers held goes back without counting against them */
    listener_stop(&srv.stomp);
    listener_stop(&srv.ws);
    listener_stop(&srv.wss);
    listener_stop(&srv.stomp_tls);
    /* an auto-ack MESSAGE held for its dequeue goes once the log has it:
     * dropped with its connection, its message would be lost */
    persist_settle();
    stream_flush_all();
    struct conn *c;
    while ((c = TAILQ_FIRST(&srv.conns)))
        conn_close(c, "broker stopping");
    stream_free_dead();
    sched_stop();
    durable_free_all();
    dest_free_all();
    commit_free_all();
    ev_timer_stop(srv.loop, &srv.sweep);
    ev_timer_stop(srv.loop, &srv.sweep_more);
    ev_prepare_stop(srv.loop, &srv.before_sleep);
    ev_idle_stop(srv.loop, &srv.spin);
}
