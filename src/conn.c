/* Client connections: non-blocking reads parsed frame by frame, output
 * batched and flushed before the loop sleeps, heart-beats and the connect
 * timeout on one timer, and the state machine every transition goes
 * through. An idle connection holds no buffers. */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/log.h"
#include "stompd/proto.h"
#include "stompd/server.h"
#include "stompd/sub.h"
#include "stompd/txn.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#define READ_CHUNK 65536
#define CLOSE_LINGER 5.0 /* seconds an erroring client gets to read the ERROR */

static char scratch[READ_CHUNK];
/* Connections whose reading resumed with frames already buffered. */
static struct conn_list resumed = TAILQ_HEAD_INITIALIZER(resumed);
/* Connections whose output waits for the journal, and those about to. */
static struct conn_list held = TAILQ_HEAD_INITIALIZER(held);
static struct conn **hold_new;
static size_t nhold_new, cap_hold_new;

static void read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

static const char *const state_names[] = {"handshake", "open", "closing", "dead"};

const char *conn_state_name(enum conn_state s)
{
    return state_names[s];
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
}

static void arm_timer(struct conn *c, double after)
{
    ev_timer_stop(srv.loop, &c->timer);
    ev_timer_set(&c->timer, after > 0.001 ? after : 0.001, 0.);
    ev_timer_start(srv.loop, &c->timer);
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
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->fd = fd;
    c->state = CONN_HANDSHAKE;
    c->version = STOMP_10;
    struct frame_limits lim;
    conn_frame_limits(&lim);
    frame_parser_init(&c->parser, &lim);
    TAILQ_INIT(&c->ops);
    TAILQ_INIT(&c->temps);
    ev_io_init(&c->rd, read_cb, fd, EV_READ);
    ev_io_init(&c->wr, write_cb, fd, EV_WRITE);
    ev_init(&c->timer, timer_cb);
    ev_io_start(srv.loop, &c->rd);
    c->last_rx = c->last_tx = ev_now(srv.loop);
    arm_timer(c, (double)config.connect_timeout / 1000.0);
    TAILQ_INSERT_TAIL(&srv.conns, c, link);
    srv.nconns++;
    srv.st.connections_total++;
    clog_debug(c, "accepted");
    return c;
}

bool conn_output_full(const struct conn *c)
{
    return buf_used(&c->out) >= (size_t)config.output_limit;
}

void conn_want_flush(struct conn *c)
{
    if (c->in_flush || c->state == CONN_DEAD)
        return;
    c->in_flush = true;
    TAILQ_INSERT_TAIL(&srv.flush, c, flush_link);
}

void conn_pause(struct conn *c, uint8_t reason)
{
    if (c->paused == 0 && c->state <= CONN_OPEN)
        ev_io_stop(srv.loop, &c->rd);
    c->paused |= reason;
}

void conn_resume(struct conn *c, uint8_t reason)
{
    if (!(c->paused & reason))
        return;
    c->paused &= (uint8_t)~reason;
    if (c->paused || c->state > CONN_OPEN)
        return;
    ev_io_start(srv.loop, &c->rd);
    /* Its silence while we did not read is ours: time it afresh. */
    c->last_rx = ev_now(srv.loop);
    /* Frames read before the pause are parsed before the loop sleeps. */
    if (buf_used(&c->in) > 0 && !c->in_resume) {
        c->in_resume = true;
        TAILQ_INSERT_TAIL(&resumed, c, resume_link);
    }
}

/* Parse and handle every whole frame in data[0..len); returns bytes used. */
static size_t process(struct conn *c, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len && c->state <= CONN_OPEN && c->paused == 0) {
        struct frame f;
        size_t used;
        const char *err;
        enum frame_status st = frame_parse(&c->parser, data + off, len - off, &used, &f, &err);
        off += used;
        if (st == FRAME_NEED_MORE)
            break;
        if (st == FRAME_ERROR) {
            /* the bad frame's receipt, if its line was seen whole */
            char *receipt = frame_error_receipt(&c->parser, data + off);
            char detail[160];
            conn_error(c, err, receipt, limit_detail(err, detail, sizeof detail));
            free(receipt);
            break;
        }
        c->frames_in++;
        srv.st.frames_in++;
        proto_handle(c, &f);
        frame_free(&f);
        /* A client that sends but never reads cannot grow our output
         * without bound (receipts, errors): stop reading it. */
        if (buf_used(&c->out) > 4 * (size_t)config.output_limit)
            conn_pause(c, PAUSE_OUTPUT);
    }
    return off;
}

static void process_buffered(struct conn *c)
{
    size_t used = process(c, buf_head(&c->in), buf_used(&c->in));
    if (c->state <= CONN_OPEN)
        buf_consume(&c->in, used);
}

bool conn_run_resumed(void)
{
    bool any = false;
    struct conn *c;
    while ((c = TAILQ_FIRST(&resumed))) {
        TAILQ_REMOVE(&resumed, c, resume_link);
        c->in_resume = false;
        if (c->state <= CONN_OPEN && c->paused == 0) {
            process_buffered(c);
            any = true;
        }
    }
    return any;
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = container_of(w, struct conn, rd);
    ssize_t n;
    if (buf_used(&c->in) == 0) {
        n = read(c->fd, scratch, sizeof scratch);
        if (n > 0) {
            c->last_rx = ev_now(loop);
            size_t used = process(c, scratch, (size_t)n);
            if (c->state <= CONN_OPEN && used < (size_t)n)
                buf_append(&c->in, scratch + used, (size_t)n - used);
            return;
        }
    } else {
        buf_reserve(&c->in, READ_CHUNK);
        n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
        if (n > 0) {
            c->last_rx = ev_now(loop);
            c->in.len += (size_t)n;
            process_buffered(c);
            return;
        }
    }
    if (n == 0) {
        conn_close(c, "peer closed the connection");
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        char why[128];
        snprintf(why, sizeof why, "read error: %s", strerror(errno));
        conn_close(c, why);
    }
}

void conn_hold_output(struct conn *c)
{
    if (c->hold_pending)
        return;
    c->hold_pending = true;
    if (nhold_new == cap_hold_new) {
        cap_hold_new = cap_hold_new ? cap_hold_new * 2 : 64;
        hold_new = realloc(hold_new, cap_hold_new * sizeof *hold_new);
        if (!hold_new)
            abort();
    }
    hold_new[nhold_new++] = c;
}

void conn_hold_assign(uint64_t lsn)
{
    for (size_t i = 0; i < nhold_new; i++) {
        struct conn *c = hold_new[i];
        if (!c)
            continue;
        c->hold_pending = false;
        c->hold_lsn = lsn;
        if (!c->in_held && c->state != CONN_DEAD) {
            c->in_held = true;
            TAILQ_INSERT_TAIL(&held, c, held_link);
        }
    }
    nhold_new = 0;
}

void conn_hold_release(uint64_t lsn)
{
    struct conn *c, *next;
    for (c = TAILQ_FIRST(&held); c; c = next) {
        next = TAILQ_NEXT(c, held_link);
        if (c->hold_lsn <= lsn) {
            TAILQ_REMOVE(&held, c, held_link);
            c->in_held = false;
            conn_want_flush(c);
        }
    }
}

static void hold_forget(struct conn *c)
{
    for (size_t i = 0; i < nhold_new; i++)
        if (hold_new[i] == c)
            hold_new[i] = NULL;
    c->hold_pending = false;
    if (c->in_held) {
        TAILQ_REMOVE(&held, c, held_link);
        c->in_held = false;
    }
}

int conn_flush(struct conn *c)
{
    if ((c->hold_pending || c->hold_lsn > commit_lsn()) && c->state == CONN_OPEN)
        return 0; /* released by conn_hold_release */
    /* Remember that dispatch saw this output full, however many flushes
     * it then takes to drain it. */
    if (conn_output_full(c))
        c->out_was_full = true;
    while (buf_used(&c->out) > 0) {
        ssize_t n = write(c->fd, buf_head(&c->out), buf_used(&c->out));
        if (n > 0) {
            c->last_tx = ev_now(srv.loop);
            buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->writing) {
                ev_io_start(srv.loop, &c->wr);
                c->writing = true;
            }
            break;
        }
        if (n < 0 && errno == EINTR)
            continue;
        char why[128];
        snprintf(why, sizeof why, "write error: %s", n < 0 ? strerror(errno) : "zero write");
        conn_close(c, why);
        return -1;
    }
    if (buf_used(&c->out) == 0) {
        if (c->writing) {
            ev_io_stop(srv.loop, &c->wr);
            c->writing = false;
        }
        if (c->state == CONN_CLOSING) {
            conn_close(c, c->error_sent ? "closed after ERROR" : "closed after DISCONNECT");
            return -1;
        }
    }
    if (buf_used(&c->out) < (size_t)config.output_limit / 2) {
        conn_resume(c, PAUSE_OUTPUT);
        if (c->out_was_full) {
            c->out_was_full = false;
            conn_output_drained(c);
        }
    }
    return 0;
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = container_of(w, struct conn, wr);
    conn_flush(c);
}

void conn_output_drained(struct conn *c)
{
    struct sub *s, *tmp;
    HASH_ITER(hh, c->subs, s, tmp)
        queue_mark_dirty(s->q);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct conn *c = container_of(w, struct conn, timer);
    ev_tstamp now = ev_now(loop);
    switch (c->state) {
    case CONN_HANDSHAKE: {
        char detail[96];
        snprintf(detail, sizeof detail, "No CONNECT frame within %lld ms.", (long long)config.connect_timeout);
        conn_error(c, "connect timeout", NULL, detail);
        return;
    }
    case CONN_CLOSING:
        conn_close(c, "peer did not read its ERROR in time");
        return;
    case CONN_DEAD:
        return;
    case CONN_OPEN:
        break;
    }
    double next = 3600;
    if (c->paused) {
        /* We stopped reading it (flow control): its beats wait in the
         * socket, unread. Bytes waiting there mean it is alive. */
        int waiting = 0;
        if (buf_used(&c->in) > 0 || (ioctl(c->fd, FIONREAD, &waiting) == 0 && waiting > 0))
            c->last_rx = now;
    }
    if (c->hb_rx_ms) {
        double limit = c->hb_rx_ms / 1000.0 * (double)config.heartbeat_grace_pct / 100.0;
        double idle = now - c->last_rx;
        int waiting = 0;
        if (idle >= limit && ioctl(c->fd, FIONREAD, &waiting) == 0 && waiting > 0) {
            /* Bytes not read yet (this timer ran before the read in the
             * same loop iteration, or reading just resumed): it is alive. */
            c->last_rx = now;
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
        double idle = now - c->last_tx;
        if (idle >= iv * 0.95 && buf_used(&c->out) == 0) {
            buf_putc(&c->out, '\n');
            conn_want_flush(c);
            idle = 0;
        }
        if (iv - idle < next)
            next = iv - idle;
    }
    arm_timer(c, next);
}

void conn_start_heartbeats(struct conn *c, uint32_t rx_ms, uint32_t tx_ms)
{
    c->hb_rx_ms = rx_ms;
    c->hb_tx_ms = tx_ms;
    ev_timer_stop(srv.loop, &c->timer);
    if (rx_ms || tx_ms) {
        double first = 3600;
        if (rx_ms)
            first = rx_ms / 1000.0;
        if (tx_ms && tx_ms / 1000.0 < first)
            first = tx_ms / 1000.0;
        arm_timer(c, first);
    }
}

void conn_send_receipt(struct conn *c, const char *receipt)
{
    frame_write_command(&c->out, "RECEIPT");
    frame_write_header_str(&c->out, c->version, true, "receipt-id", receipt);
    frame_write_body(&c->out, NULL, 0);
    c->frames_out++;
    srv.st.frames_out++;
    conn_want_flush(c);
}

void conn_error(struct conn *c, const char *message, const char *receipt, const char *detail)
{
    conn_error_hdr(c, message, receipt, detail, NULL, NULL);
}

void conn_error_hdr(struct conn *c, const char *message, const char *receipt, const char *detail,
                    const char *hname, const char *hvalue)
{
    if (c->state >= CONN_CLOSING)
        return;
    srv.st.protocol_errors++;
    clog_info(c, "ERROR: %s%s%s", message, detail ? ": " : "", detail ? detail : "");
    frame_write_command(&c->out, "ERROR");
    frame_write_header_str(&c->out, c->version, true, "message", message);
    if (receipt)
        frame_write_header_str(&c->out, c->version, true, "receipt-id", receipt);
    if (hname)
        frame_write_header_str(&c->out, c->version, true, hname, hvalue);
    const char *body = detail ? detail : message;
    char len[24];
    snprintf(len, sizeof len, "%zu", strlen(body) + 1);
    frame_write_header_str(&c->out, c->version, false, "content-type", "text/plain");
    frame_write_header_str(&c->out, c->version, false, "content-length", len);
    buf_putc(&c->out, '\n');
    buf_append_str(&c->out, body);
    buf_putc(&c->out, '\n');
    buf_putc(&c->out, '\0');
    c->error_sent = true;
    c->frames_out++;
    conn_close_after_flush(c);
}

/* Undo everything the connection holds in the broker: subscriptions give
 * their unacked messages back, transactions abort, temporary destinations
 * go away, waiting ops are orphaned (commits still release). */
static void release_broker_state(struct conn *c)
{
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
    ev_io_stop(srv.loop, &c->rd);
    buf_free(&c->in);
    release_broker_state(c);
    arm_timer(c, CLOSE_LINGER);
    conn_want_flush(c);
}

void conn_close(struct conn *c, const char *why)
{
    if (c->state == CONN_DEAD)
        return;
    clog_debug(c, "closing: %s", why);
    if (c->state != CONN_CLOSING)
        release_broker_state(c);
    conn_set_state(c, CONN_DEAD);
    ev_io_stop(srv.loop, &c->rd);
    ev_io_stop(srv.loop, &c->wr);
    ev_timer_stop(srv.loop, &c->timer);
    close(c->fd);
    c->fd = -1;
    buf_free(&c->in);
    buf_free(&c->out);
    if (c->in_flush) {
        TAILQ_REMOVE(&srv.flush, c, flush_link);
        c->in_flush = false;
    }
    if (c->in_resume) {
        TAILQ_REMOVE(&resumed, c, resume_link);
        c->in_resume = false;
    }
    hold_forget(c);
    TAILQ_REMOVE(&srv.conns, c, link);
    srv.nconns--;
    TAILQ_INSERT_TAIL(&srv.dead, c, link);
}

void conn_free(struct conn *c)
{
    free(c->client_id);
    free(c->login);
    free(c);
}
