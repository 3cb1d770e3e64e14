/* Client connections: non-blocking reads parsed frame by frame, output
 * batched and flushed before the loop sleeps, heart-beats and the connect
 * timeout on one timer, and the state machine every transition goes
 * through. An idle connection holds no buffers. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <uthash.h>

#include "stompd/browse.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/log.h"
#include "stompd/principal.h"
#include "stompd/proto.h"
#include "stompd/server.h"
#include "stompd/sub.h"
#include "stompd/txn.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#define CLOSE_LINGER 5.0 /* seconds an erroring client gets to read the ERROR */


static size_t conn_input(struct stream *s, const char *data, size_t len);
static void conn_drained(struct stream *s);
static size_t conn_may_write(const struct stream *s);
static void conn_timeout(struct stream *s);
static void conn_closed(struct stream *s, const char *why);
static bool conn_eof(struct stream *s);
static void answers_late(struct conn *c);
static void conn_release(struct stream *s);

static const struct stream_ops conn_ops = {
    .kind = "stomp",
    .input = conn_input,
    .drained = conn_drained,
    .may_write = conn_may_write,
    .timeout = conn_timeout,
    .eof = conn_eof,
    .closed = conn_closed,
    .release = conn_release,
};

static const char *const state_names[] = {"handshake", "open", "closing", "dead"};

const char *conn_state_name(enum conn_state s)
{
    return state_names[s];
}

/* ------------------------------------------------------------ slots for clients that log in */

/* Connections not logged in yet, oldest first, overall and by address:
 * the last broker.reserved_connections slots of broker.max_connections
 * are for clients that log in. Beyond the others, and at the limit, a
 * newcomer closes one that has not logged in: the oldest from the address
 * that has the most (one address flooding evicts its own, not the logins
 * of a crowd behind another), else the oldest. As the console's
 * http.reserved_connections (helper-103: twenty sockets that never sent a
 * byte kept every client out; helper-106: at the limit too). */
struct peer_waiting {
    char addr[sizeof ((struct stream *)0)->peer];
    TAILQ_HEAD(, conn) conns;
    uint32_t n;
    UT_hash_handle hh;
};

static TAILQ_HEAD(, conn) not_in = TAILQ_HEAD_INITIALIZER(not_in);
static struct peer_waiting *waiting_by_addr;
static struct peer_waiting *most; /* the address with the most, as last seen (NULL: none stands out) */
static size_t nwaiting;

/* "host:port" or "[v6]:port" -> host */
static void addr_of(const char *peer, char *out, size_t len)
{
    const char *colon = strrchr(peer, ':');
    size_t n = colon ? (size_t)(colon - peer) : strlen(peer);
    snprintf(out, len, "%.*s", (int)n, peer);
}

static struct peer_waiting *waiting_at(const char *peer)
{
    char addr[sizeof ((struct stream *)0)->peer];
    addr_of(peer, addr, sizeof addr);
    struct peer_waiting *pw;
    HASH_FIND_STR(waiting_by_addr, addr, pw);
    return pw;
}

static void wait_begin(struct conn *c)
{
    struct peer_waiting *pw = waiting_at(c->st.peer);
    if (!pw) {
        if (!(pw = calloc(1, sizeof *pw)))
            abort();
        addr_of(c->st.peer, pw->addr, sizeof pw->addr);
        TAILQ_INIT(&pw->conns);
        HASH_ADD_STR(waiting_by_addr, addr, pw);
    }
    TAILQ_INSERT_TAIL(&pw->conns, c, addr_link);
    TAILQ_INSERT_TAIL(&not_in, c, wait_link);
    c->waiting = pw;
    pw->n++;
    nwaiting++;
    if (!most || pw->n > most->n)
        most = pw;
}

static void wait_end(struct conn *c)
{
    struct peer_waiting *pw = c->waiting;
    if (!pw)
        return;
    TAILQ_REMOVE(&pw->conns, c, addr_link);
    TAILQ_REMOVE(&not_in, c, wait_link);
    c->waiting = NULL;
    pw->n--;
    nwaiting--;
    if (pw->n == 0) {
        if (most == pw)
            most = NULL;
        HASH_DEL(waiting_by_addr, pw);
        free(pw);
    }
}

/* Whom a newcomer from peer closes, beyond the share open to all (any) or
 * at the limit (only where one address stands out, or more than the
 * reserve wait: a full broker's one login in progress is not traded for
 * the next); never newcomer itself. */
static struct conn *victim_for(const char *peer, const struct conn *newcomer, bool any)
{
    struct peer_waiting *own = waiting_at(peer), *at = most;
    if (own && (!at || own->n > at->n))
        at = own;
    struct conn *v = NULL;
    if (at && at->n >= 2) {
        v = TAILQ_FIRST(&at->conns);
        if (v == newcomer)
            v = TAILQ_NEXT(v, addr_link);
    }
    if (!v && (any || (int64_t)nwaiting > config.reserved_connections)) {
        v = TAILQ_FIRST(&not_in);
        if (v == newcomer)
            v = TAILQ_NEXT(v, wait_link);
    }
    return v;
}

static void evict(struct conn *victim)
{
    srv.st.connections_evicted++;
    /* a flood's evictions are counted, not logged one by one */
    clog_debug(victim, "closed: not logged in, and clients not logged in hold the open slots "
               "(broker.reserved_connections)");
    conn_close(victim, "evicted for a newcomer (broker.reserved_connections)");
}

static void make_room(struct conn *newcomer)
{
    int64_t max = config.max_connections, reserve = config.reserved_connections;
    if (reserve > max / 4)
        reserve = max / 4;
    if ((int64_t)nwaiting <= (max - reserve > 1 ? max - reserve : 1))
        return;
    struct conn *v = victim_for(newcomer->st.peer, newcomer, true);
    if (v)
        evict(v);
}

bool conn_make_room(struct listener *l, const char *peer)
{
    (void)l;
    struct conn *v = victim_for(peer, NULL, false);
    if (v)
        evict(v);
    return v != NULL;
}

void conn_set_state(struct conn *c, enum conn_state to)
{
    /* Only forward moves: handshake -> open -> closing -> dead. */
    if (to < c->state) {
        clog_err(c, "illegal state change %s -> %s", state_names[c->state], state_names[to]);
        abort();
    }
    if (to != c->state)
        clog_debug(c, "%s -> %s", state_names[c->state], state_names[to]);
    c->state = to;
    if (to == CONN_OPEN) {
        stream_set_proven(&c->st);
        wait_end(c);
    }
}

void conn_frame_limits(struct frame_limits *lim)
{
    *lim = (struct frame_limits){
        .max_frame = (size_t)config.max_frame_size,
        .max_headers = (size_t)config.max_headers,
        .max_header_line = (size_t)config.max_header_size,
        .max_command_line = (size_t)config.max_command_size,
    };
}

/* The reverse of conn_frame_limits(): the ERROR for a frame over a limit
 * names the limit and its setting. NULL when err is not about a limit. */
static const char *limit_detail(const char *err, char *buf, size_t len)
{
    if (frame_error_is_http(err)) {
        snprintf(buf, len, "This port speaks STOMP. WebSocket clients connect to stomp.ws_listen (%s), "
                 "browsers to the console on http.listen (%s).", config.ws_listen[0] ? config.ws_listen : "off",
                 config.http_listen[0] ? config.http_listen : "off");
        return buf;
    }
    switch (frame_error_limit(err)) {
    case FRAME_LIMIT_FRAME:
        snprintf(buf, len, "A frame (headers and body) may be at most %lld bytes (stomp.max_frame_size).",
                 (long long)config.max_frame_size);
        return buf;
    case FRAME_LIMIT_HEADERS:
        snprintf(buf, len, "A frame may carry at most %lld headers (stomp.max_headers).", (long long)config.max_headers);
        return buf;
    case FRAME_LIMIT_HEADER_LINE:
        snprintf(buf, len, "A header line may be at most %lld bytes (stomp.max_header_size).",
                 (long long)config.max_header_size);
        return buf;
    case FRAME_LIMIT_COMMAND_LINE:
        snprintf(buf, len, "A command line may be at most %lld bytes (stomp.max_command_size).",
                 (long long)config.max_command_size);
        return buf;
    case FRAME_LIMIT_NONE:
        break;
    }
    return NULL;
}

struct conn *conn_new(int fd, const char *peer)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->id = ++srv.next_conn_id;
    c->state = CONN_HANDSHAKE;
    c->version = STOMP_10;
    struct frame_limits lim;
    conn_frame_limits(&lim);
    frame_parser_init(&c->parser, &lim);
    TAILQ_INIT(&c->ops);
    TAILQ_INIT(&c->temps);
    TAILQ_INIT(&c->unsent);
    c->st.out_limit = (size_t)config.output_limit;
    c->st.low_water = (size_t)config.output_limit / 2;
    c->st.unproven = true; /* until CONNECTED */
    stream_init(&c->st, fd, peer, &conn_ops, false);
    stream_set_timer(&c->st, (double)config.connect_timeout / 1000.0);
    TAILQ_INSERT_TAIL(&srv.conns, c, link);
    srv.nconns++;
    srv.st.connections_total++;
    clog_debug(c, "accepted");
    wait_begin(c);
    make_room(c);
    return c;
}

/* The largest frame read before CONNECTED: a CONNECT has headers and no
 * body (twice stomp.max_header_size, 64 KiB at least). */
static size_t prelogin_frame_max(void)
{
    size_t twice = 2 * (size_t)config.max_header_size;
    return twice > 64 * 1024 ? twice : 64 * 1024;
}

/* Refuse c: who holds how many bytes of frames, beyond which limit. */
static void input_full(struct conn *c, const char *holders, size_t held, const char *limit)
{
    char detail[240];
    snprintf(detail, sizeof detail, "%s %zu bytes of frames not yet whole, %s; send smaller frames or try again "
             "later.", holders, held, limit);
    conn_error(c, "input buffers full", NULL, detail);
}

/* Connections that have not logged in share a quarter of
 * stomp.max_input_buffers (WebSocket upgrade requests too): strangers
 * cannot take the room logged-in clients' frames need. Refuses c when
 * its held bytes would go beyond; returns whether it did. */
static bool strangers_full(struct conn *c, size_t held)
{
    if (c->state != CONN_HANDSHAKE || stream_unproven_fits(&c->st, held, (size_t)config.max_input_buffers))
        return false;
    input_full(c, "Connections that have not logged in hold", stream_unproven_input_held_by_others(&c->st) + held,
               "their share (a quarter of stomp.max_input_buffers)");
    return true;
}

/* A frame has begun and pending of its bytes are held: it must come whole
 * within stomp.frame_timeout, and all connections' partial frames
 * together stay under stomp.max_input_buffers. Returns true when this
 * connection was refused. */
static bool partial_frame(struct conn *c, size_t pending)
{
    if (c->state == CONN_HANDSHAKE && pending > prelogin_frame_max()) {
        char detail[200];
        snprintf(detail, sizeof detail, "A frame before CONNECTED is at most %zu bytes (a CONNECT has no body; "
                 "twice stomp.max_header_size).", prelogin_frame_max());
        conn_error(c, "frame too large before login", NULL, detail);
        return true;
    }
    if (strangers_full(c, pending))
        return true;
    if (stream_input_held_by_others(&c->st) + pending > (size_t)config.max_input_buffers) {
        input_full(c, "The broker holds", stream_input_held_by_others(&c->st) + pending,
                   "its limit (stomp.max_input_buffers)");
        return true;
    }
    if (c->frame_started == 0 && c->state == CONN_OPEN) {
        c->frame_started = ev_now(srv.loop);
        double limit = (double)config.frame_timeout / 1000.0, left = stream_timer_remaining(&c->st);
        if (left < 0 || left > limit)
            stream_set_timer(&c->st, limit);
    }
    return false;
}

/* Parse and handle every whole frame in data[0..len); returns bytes used. */
static size_t conn_input(struct stream *s, const char *data, size_t len)
{
    struct conn *c = container_of(s, struct conn, st);
    size_t off = 0;
    while (off < len && c->state <= CONN_OPEN && c->st.paused == 0) {
        struct frame f;
        size_t used;
        const char *err;
        enum frame_status st = frame_parse(&c->parser, data + off, len - off, &used, &f, &err);
        off += used;
        if (st == FRAME_NEED_MORE) {
            if (off == len)
                c->frame_started = 0; /* heart-beats only */
            else if (partial_frame(c, len - off))
                return off;
            break;
        }
        c->frame_started = 0;
        if (st == FRAME_ERROR) {
            /* the bad frame's receipt, if its line was seen whole */
            char *receipt = frame_error_receipt(&c->parser, data + off);
            char detail[320];
            conn_refuse(c, err, receipt, limit_detail(err, detail, sizeof detail));
            free(receipt);
            break;
        }
        c->frames_in++;
        srv.st.frames_in++;
        proto_handle(c, &f);
        frame_free(&f);
        /* A client that sends but never reads cannot grow our output
         * without bound (receipts, errors): stop reading it. */
        if (buf_used(&c->st.out) > 4 * (size_t)config.output_limit)
            conn_pause(c, PAUSE_OUTPUT);
    }
    /* Frames behind a CONNECT whose password is checked wait unread (a
     * STOMP 1.0 client pipelines them): the strangers' share holds for
     * them too, or many such connections would go past it. */
    if (c->st.state == STREAM_OPEN && off < len && strangers_full(c, len - off))
        return len;
    return off;
}

static size_t conn_may_write(const struct stream *s)
{
    const struct conn *c = container_of(s, struct conn, st);
    /* held deliveries are released when their entry commits */
    return commit_output_allowed(c);
}

/* The output was full and drained: read again, dispatch again. */
static void conn_drained(struct stream *s)
{
    struct conn *c = container_of(s, struct conn, st);
    conn_resume(c, PAUSE_OUTPUT);
    struct sub *sb, *tmp;
    HASH_ITER(hh, c->subs, sb, tmp)
        sub_wake(sb);
    browse_wake(c);
}

/* Bytes from the client not handled yet: read and kept, or still in the
 * socket. */
static bool unread_input(const struct conn *c)
{
    int waiting = 0;
    return buf_used(&c->st.in) > 0 || (ioctl(c->st.fd, FIONREAD, &waiting) == 0 && waiting > 0);
}

static void conn_timeout(struct stream *s)
{
    struct conn *c = container_of(s, struct conn, st);
    ev_tstamp now = ev_now(srv.loop);
    switch (c->state) {
    case CONN_HANDSHAKE: {
        if (c->login_wait) {
            /* Its CONNECT came and its password is being checked (the
             * hash threads may be busy with others'): no connect timeout.
             * Its socket is not read meanwhile; a client gone away is let
             * go, and its check never run (helper-91: five closed clients
             * held their slots and their checks ran). */
            /* frames behind its CONNECT, then its side shut (printf ... |
             * nc -N): they wait for the check, and are answered */
            if (!unread_input(c) && conn_peer_gone(c)) {
                /* (a client that only shut its side down reads why) */
                proto_login_cancel(c);
                conn_error(c, "login abandoned", NULL,
                           "The client closed its side of the connection while its password was checked; "
                           "the check was not run.");
                return;
            }
            stream_set_timer(&c->st, PEER_WATCH);
            return;
        }
        char detail[96];
        snprintf(detail, sizeof detail, "No CONNECT frame within %lld ms.", (long long)config.connect_timeout);
        conn_error(c, "connect timeout", NULL, detail);
        return;
    }
    case CONN_CLOSING:
    case CONN_DEAD:
        return;
    case CONN_OPEN:
        break;
    }
    double next = 3600;
    if (c->answer_by > 0) {
        if (now >= c->answer_by) {
            answers_late(c);
            return;
        }
        next = c->answer_by - now;
    }
    if (c->frame_started > 0 && !c->st.paused) {
        double limit = (double)config.frame_timeout / 1000.0, took = now - c->frame_started;
        if (took >= limit) {
            char detail[320];
            snprintf(detail, sizeof detail, "A frame must arrive whole within %lld ms (stomp.frame_timeout); "
                     "this one began %.1f s ago.", (long long)config.frame_timeout, took);
            conn_error(c, "frame not completed in time", NULL, detail);
            return;
        }
        next = limit - took;
    }
    if ((c->st.paused & PAUSE_ROOM) && !(c->st.paused & PAUSE_CLOSING)) {
        /* Its SEND waits for room in a full destination, which may take
         * for ever, and its socket is not read meanwhile: a client gone
         * away would hold its slot until then. The kernel knows. */
        if (conn_peer_gone(c)) {
            conn_close(c, "the client went away while its SEND waited for room in a full destination");
            return;
        }
        if (PEER_WATCH < next)
            next = PEER_WATCH;
    }
    if (c->st.paused) {
        /* We stopped reading it (flow control): its beats wait in the
         * socket, unread. Bytes waiting there mean it is alive. */
        if (unread_input(c))
            c->st.last_rx = now;
    }
    if (c->hb_rx_ms) {
        double limit = c->hb_rx_ms / 1000.0 * (double)config.heartbeat_grace_pct / 100.0;
        double idle = now - c->st.last_rx;
        int waiting = 0;
        if (idle >= limit && ioctl(c->st.fd, FIONREAD, &waiting) == 0 && waiting > 0) {
            /* Bytes not read yet (this timer ran before the read in the
             * same loop iteration, or reading just resumed): it is alive. */
            c->st.last_rx = now;
            idle = 0;
        }
        if (idle >= limit) {
            char why[96];
            snprintf(why, sizeof why, "no heart-beat or frame for %.0f ms", idle * 1000);
            conn_close(c, why);
            return;
        }
        if (limit - idle < next)
            next = limit - idle;
    }
    if (c->hb_tx_ms) {
        double iv = c->hb_tx_ms / 1000.0;
        double idle = now - c->st.last_tx;
        if (idle >= iv * 0.95 && buf_used(&c->st.out) == 0) {
            buf_putc(&c->st.out, '\n');
            conn_want_flush(c);
            idle = 0;
        }
        if (iv - idle < next)
            next = iv - idle;
    }
    stream_set_timer(&c->st, next);
}

bool conn_peer_gone(const struct conn *c)
{
    /* POLLRDHUP: its FIN came, however much it sent before is unread */
    struct pollfd p = {.fd = c->st.fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

void conn_watch_peer(struct conn *c)
{
    stream_set_timer_within(&c->st, PEER_WATCH);
}

void conn_start_heartbeats(struct conn *c, uint32_t rx_ms, uint32_t tx_ms)
{
    c->hb_rx_ms = rx_ms;
    c->hb_tx_ms = tx_ms;
    double first = 0;
    if (rx_ms)
        first = rx_ms / 1000.0;
    if (tx_ms && (first == 0 || tx_ms / 1000.0 < first))
        first = tx_ms / 1000.0;
    stream_set_timer(&c->st, first);
}

void conn_frame_sent(struct conn *c)
{
    c->frames_out++;
    srv.st.frames_out++;
}

void conn_send_receipt(struct conn *c, const char *receipt)
{
    frame_write_command(&c->st.out, "RECEIPT");
    frame_write_header_str(&c->st.out, c->version, true, "receipt-id", receipt);
    frame_write_body(&c->st.out, NULL, 0);
    c->answered_to = stream_out_pos(&c->st);
    conn_frame_sent(c);
    conn_want_flush(c);
}

void conn_error(struct conn *c, const char *message, const char *receipt, const char *detail)
{
    conn_error_hdr(c, message, receipt, detail, NULL, NULL);
}

/* ERROR (headers, then a text body) and the close once it is written. */
static void write_error(struct conn *c, const char *message, const char *receipt, const char *detail,
                        const char *hname, const char *hvalue)
{
    frame_write_command(&c->st.out, "ERROR");
    frame_write_header_str(&c->st.out, c->version, true, "message", message);
    if (receipt)
        frame_write_header_str(&c->st.out, c->version, true, "receipt-id", receipt);
    if (hname)
        frame_write_header_str(&c->st.out, c->version, true, hname, hvalue);
    const char *body = detail ? detail : message;
    char len[24];
    snprintf(len, sizeof len, "%zu", strlen(body) + 1);
    frame_write_header_str(&c->st.out, c->version, false, "content-type", "text/plain");
    frame_write_header_str(&c->st.out, c->version, false, "content-length", len);
    buf_putc(&c->st.out, '\n');
    buf_append_str(&c->st.out, body);
    buf_putc(&c->st.out, '\n');
    buf_putc(&c->st.out, '\0');
    c->error_sent = true;
    c->answered_to = stream_out_pos(&c->st);
    conn_frame_sent(c);
    c->st.close_code = 1008; /* WebSocket: policy violation (the ERROR frame says which) */
    conn_close_after_flush(c);
}

void conn_error_hdr(struct conn *c, const char *message, const char *receipt, const char *detail,
                    const char *hname, const char *hvalue)
{
    if (c->state >= CONN_CLOSING)
        return;
    /* one client can make errors as fast as it connects: the log keeps
     * log.flood_lines of them every LOG_FLOOD_EVERY seconds, the metric all */
    static struct log_limit limit;
    uint64_t held = 0;
    if (c->error_quiet) {
        clog_debug(c, "ERROR: %s%s%s", message, detail ? ": " : "", detail ? detail : "");
    } else {
        srv.st.protocol_errors++;
        if (log_enabled(LOG_INFO) && log_limit_take(&limit, (unsigned)config.log_flood_lines, LOG_FLOOD_EVERY, &held)) {
            if (held)
                clog_info(c, "ERROR: %s%s%s (%llu ERRORs before it not logged one by one, over %d in %.0f s; "
                          "stompd_protocol_errors_total counts them all)", message, detail ? ": " : "",
                          detail ? detail : "", (unsigned long long)held, (int)config.log_flood_lines, LOG_FLOOD_EVERY);
            else
                clog_info(c, "ERROR: %s%s%s", message, detail ? ": " : "", detail ? detail : "");
        }
    }
    write_error(c, message, receipt, detail, hname, hvalue);
}

void conn_output_lost(struct conn *c, const char *why)
{
    if (c->state == CONN_CLOSING) {
        /* the frame it was closing with went too: say why it closes */
        char detail[512];
        snprintf(detail, sizeof detail,
                 "The broker could not write its journal (%s): deliveries waiting for it were not sent, and "
                 "their messages stay queued.",
                 why);
        clog_info(c, "ERROR: store failed: %s", why);
        write_error(c, "store failed", NULL, detail, NULL, NULL);
        c->st.close_code = 1011; /* WebSocket: the server met an unexpected condition */
        c->st.close_why = "closed after ERROR";
    }
    conn_want_flush(c);
}

/* A deferred ERROR or close waits for the answers before it no longer
 * than this: a master without its quorum may never answer them. */
static void answer_within(struct conn *c, double seconds)
{
    c->answer_by = ev_now(srv.loop) + seconds;
    double left = stream_timer_remaining(&c->st);
    if (left < 0 || left > seconds)
        stream_set_timer(&c->st, seconds);
}

/* They did not come in time: the ERROR goes now, or the connection
 * closes. The RECEIPTs still waiting are not sent (their messages may
 * still be stored, as for any connection that ends before its RECEIPT). */
static void answers_late(struct conn *c)
{
    const struct op *last = TAILQ_LAST(&c->ops, op_list);
    c->answer_by = 0;
    if (last && last->error) {
        char message[256], receipt[256], detail[1024];
        snprintf(message, sizeof message, "%s", last->error);
        snprintf(receipt, sizeof receipt, "%s", last->receipt ? last->receipt : "");
        snprintf(detail, sizeof detail, "%s", last->error_detail ? last->error_detail : last->error);
        conn_error(c, message, receipt[0] ? receipt : NULL, detail);
    } else {
        conn_close(c, "peer closed its side; the answers it waits for did not come in time");
    }
}

void conn_refuse(struct conn *c, const char *message, const char *receipt, const char *detail)
{
    if (c->state >= CONN_CLOSING)
        return;
    if (TAILQ_EMPTY(&c->ops)) {
        conn_error(c, message, receipt, detail);
        return;
    }
    /* as a DISCONNECT: nothing after it is read, nothing more delivered */
    clog_debug(c, "ERROR %s: after the answers to the %u frames before it", message, c->nops);
    conn_pause(c, PAUSE_CLOSING);
    answer_within(c, CLOSE_LINGER);
    op_submit(op_refusal(c, message, receipt, detail));
}

/* The client closed its side: a client that pipes its frames and ends
 * (nc, a script) still gets the RECEIPTs of those waiting for the store,
 * as if it had sent DISCONNECT (without a receipt). Not those waiting for
 * room: a peer gone altogether looks the same, and room can take for ever. */
static bool conn_eof(struct stream *s)
{
    struct conn *c = container_of(s, struct conn, st);
    if (c->state == CONN_OPEN && TAILQ_EMPTY(&c->ops) && stream_pending(s) > 0) {
        /* answered, not yet written (over TLS, a close_notify read with
         * the frames comes before the loop's flush): written first */
        clog_debug(c, "peer closed its side: closing once its answers are written");
        conn_close_after_flush(c);
        return true;
    }
    if (c->state != CONN_OPEN || TAILQ_EMPTY(&c->ops) || (c->st.paused & PAUSE_CLOSING) || op_conn_waits_room(c))
        return false;
    clog_debug(c, "peer closed its side: closing after the answers to the %u frames waiting", c->nops);
    conn_pause(c, PAUSE_CLOSING);
    answer_within(c, CLOSE_LINGER);
    op_submit(op_disconnect(c, NULL, 0));
    return true;
}

struct conn *conn_find(uint64_t id)
{
    struct conn *c;
    TAILQ_FOREACH(c, &srv.conns, link)
        if (c->id == id)
            return c->state < CONN_CLOSING ? c : NULL;
    return NULL;
}

void conn_kick(struct conn *c, const char *message, const char *detail)
{
    if (c->state >= CONN_CLOSING)
        return;
    clog_info(c, "closed: %s", message);
    write_error(c, message, NULL, detail, NULL, NULL);
}

/* Undo everything the connection holds in the broker: subscriptions give
 * their unacked messages back, transactions abort, temporary destinations
 * go away, waiting ops are orphaned (commits still release). */
static void release_broker_state(struct conn *c)
{
    proto_login_cancel(c);
    browse_conn_gone(c);
    struct sub *s, *tmp;
    HASH_ITER(hh, c->subs, s, tmp)
        sub_destroy(s);
    txn_abort_all(c);
    op_orphan_conn(c);
    struct dest *d;
    while ((d = TAILQ_FIRST(&c->temps)))
        dest_delete(d);
    proto_conn_closed(c);
}

void conn_close_after_flush(struct conn *c)
{
    if (c->state >= CONN_CLOSING)
        return;
    conn_set_state(c, CONN_CLOSING);
    release_broker_state(c);
    commit_holds_closing(c);
    stream_close_after_flush(&c->st, CLOSE_LINGER, c->error_sent ? "closed after ERROR" : "closed after DISCONNECT");
}

void conn_close(struct conn *c, const char *why)
{
    stream_close(&c->st, why);
}

static void conn_closed(struct stream *s, const char *why)
{
    struct conn *c = container_of(s, struct conn, st);
    clog_debug(c, "closing: %s", why);
    if (c->state != CONN_CLOSING)
        release_broker_state(c);
    conn_set_state(c, CONN_DEAD);
    wait_end(c);
    commit_hold_forget(c);
    TAILQ_REMOVE(&srv.conns, c, link);
    srv.nconns--;
}

static void conn_release(struct stream *s)
{
    struct conn *c = container_of(s, struct conn, st);
    free(c->client_id);
    free(c->login);
    principal_unref(c->who);
    free(c);
}
