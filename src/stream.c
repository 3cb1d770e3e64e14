/* Streams and listeners: the socket layer every connection kind shares
 * (see stream.h). Reads go into a shared scratch buffer when nothing is
 * buffered, so an idle or fully-consumed stream holds no input buffer;
 * output is batched and flushed before the loop sleeps; closed streams are
 * freed there too. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stompd/config.h"
#include "stompd/log.h"
#include "stompd/stream.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#define READ_CHUNK 65536
#define FD_PAUSE 0.1       /* seconds accepting stops after running out of descriptors */
#define FD_LOG_EVERY 10.0  /* seconds between warnings about it */

static struct ev_loop *loop;
static char scratch[READ_CHUNK];
static TAILQ_HEAD(, stream) flushq = TAILQ_HEAD_INITIALIZER(flushq);
static TAILQ_HEAD(, stream) resumed = TAILQ_HEAD_INITIALIZER(resumed);
static TAILQ_HEAD(, stream) dead = TAILQ_HEAD_INITIALIZER(dead);
static TAILQ_HEAD(, stream) room_waiters = TAILQ_HEAD_INITIALIZER(room_waiters);
/* Kept open so that, out of descriptors, a waiting connection can still be
 * accepted and closed at once instead of hanging in the backlog. */
static int spare_fd = -1;

static void read_cb(struct ev_loop *l, ev_io *w, int revents);
static void write_cb(struct ev_loop *l, ev_io *w, int revents);
void stream_set_timer_within(struct stream *s, double after)
{
    double left = stream_timer_remaining(s);
    if (left < 0 || left > after)
        stream_set_timer(s, after);
}

static void timer_cb(struct ev_loop *l, ev_timer *w, int revents);
static void close_stream(struct stream *s, const char *why, bool graceful);

void stream_layer_init(struct ev_loop *l)
{
    loop = l;
}

/* ------------------------------------------------------------ the plain socket */

static ssize_t plain_read(struct stream *s, void *p, size_t n, char *why, size_t whylen)
{
    ssize_t r = recv(s->fd, p, n, 0);
    if (r >= 0)
        return r;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return STREAM_IO_WANT_READ;
    snprintf(why, whylen, "read error: %s", strerror(errno));
    return STREAM_IO_ERROR;
}

static ssize_t plain_write(struct stream *s, const void *p, size_t n, char *why, size_t whylen)
{
    for (;;) {
        ssize_t r = send(s->fd, p, n, MSG_NOSIGNAL);
        if (r > 0)
            return r;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return STREAM_IO_WANT_WRITE;
        snprintf(why, whylen, "write error: %s", r < 0 ? strerror(errno) : "zero write");
        return STREAM_IO_ERROR;
    }
}

static const struct stream_transport plain = {
    .name = "tcp",
    .read = plain_read,
    .write = plain_write,
};

/* A stream's transport (one set up by hand, without stream_init, has
 * none: the plain socket). */
static const struct stream_transport *transport(const struct stream *s)
{
    return s->tr ? s->tr : &plain;
}

static bool tr_pending(const struct stream *s)
{
    return transport(s)->pending && transport(s)->pending(s);
}

/* Watch the socket for what the stream, and its transport, wait for:
 * readable while open and not paused (unless a read waits to write), or
 * while a write waits to read; writable while connecting, while output
 * waits for room, or while a read waits to write. */
static void arm(struct stream *s)
{
    bool rd = (s->state == STREAM_OPEN && s->paused == 0 && !s->rd_wants_wr) ||
              (s->state == STREAM_CLOSING && s->filter && !s->rd_wants_wr) ||
              (s->wr_wants_rd && (s->state == STREAM_OPEN || s->state == STREAM_CLOSING));
    bool wr = s->state == STREAM_CONNECTING ||
              (s->state != STREAM_DEAD && (s->writing || (s->rd_wants_wr && s->state == STREAM_OPEN)));
    if (rd && !ev_is_active(&s->rd))
        ev_io_start(loop, &s->rd);
    else if (!rd && ev_is_active(&s->rd))
        ev_io_stop(loop, &s->rd);
    if (wr && !ev_is_active(&s->wr))
        ev_io_start(loop, &s->wr);
    else if (!wr && ev_is_active(&s->wr))
        ev_io_stop(loop, &s->wr);
}

/* Read again before the loop sleeps, whatever the socket says. */
static void want_read(struct stream *s)
{
    if (!s->in_resume && s->state == STREAM_OPEN) {
        s->in_resume = true;
        TAILQ_INSERT_TAIL(&resumed, s, resume_link);
    }
}

void stream_set_transport(struct stream *s, const struct stream_transport *t, void *ctx)
{
    s->tr = t ? t : &plain;
    s->tr_ctx = ctx;
    if (tr_pending(s))
        want_read(s);
}

void stream_init(struct stream *s, int fd, const char *peer, const struct stream_ops *ops, bool connecting)
{
    s->fd = fd;
    s->ops = ops;
    s->state = connecting ? STREAM_CONNECTING : STREAM_OPEN;
    snprintf(s->peer, sizeof s->peer, "%s", peer);
    s->tr = &plain;
    s->tr_ctx = NULL;
    s->rd_wants_wr = s->wr_wants_rd = false;
    if (!s->out_limit)
        s->out_limit = 1u << 20;
    if (!s->low_water)
        s->low_water = s->out_limit / 2;
    ev_io_init(&s->rd, read_cb, fd, EV_READ);
    ev_io_init(&s->wr, write_cb, fd, EV_WRITE);
    ev_init(&s->timer, timer_cb);
    s->last_rx = s->last_tx = ev_now(loop);
    s->writing = connecting;
    arm(s);
}

/* ------------------------------------------------------------ input */

/* The socket's bytes go to the framing layer when there is one. */
static size_t deliver(struct stream *s, const char *p, size_t n)
{
    return s->filter ? s->filter->input(s, p, n) : s->ops->input(s, p, n);
}

static bool input_waiting(const struct stream *s)
{
    return buf_used(&s->in) > 0 || (s->filter && s->filter->held(s) > 0);
}

/* Is unused input kept? Not once the stream closes (a framing layer reads
 * on while closing, see stream_close_after_flush). */
static bool keeps_input(const struct stream *s)
{
    return s->state <= STREAM_OPEN || (s->state == STREAM_CLOSING && s->filter);
}

/* Bytes every stream holds in its input buffer (partial frames, input
 * read before a pause), kept current after each read. */
static size_t input_held;
static size_t unproven_held; /* of it, what unproven streams hold */

static void account_input(struct stream *s)
{
    size_t now = buf_used(&s->in);
    if (s->filter && s->state != STREAM_DEAD)
        now += s->filter->held(s);
    input_held = input_held - s->in_counted + now;
    if (s->unproven)
        unproven_held = unproven_held - s->in_counted + now;
    s->in_counted = now;
}

size_t stream_input_held_by_others(const struct stream *s)
{
    return input_held - s->in_counted;
}

size_t stream_unproven_input_held_by_others(const struct stream *s)
{
    return unproven_held - (s->unproven ? s->in_counted : 0);
}

size_t stream_unproven_input_held(void)
{
    return unproven_held;
}

bool stream_unproven_fits(const struct stream *s, size_t n, size_t limit)
{
    return stream_unproven_input_held_by_others(s) + n <= limit / 4;
}

void stream_set_proven(struct stream *s)
{
    if (s->unproven)
        unproven_held -= s->in_counted;
    s->unproven = false;
}

size_t stream_input_held(void)
{
    return input_held;
}

static void offer_buffered(struct stream *s)
{
    size_t used = deliver(s, buf_head(&s->in), buf_used(&s->in));
    if (keeps_input(s))
        buf_consume(&s->in, used);
    account_input(s);
}

/* One read through the transport, offered to the protocol. */
static void do_read(struct stream *s)
{
    ssize_t n;
    char why[192];
    if (buf_used(&s->in) == 0) {
        n = transport(s)->read(s, scratch, sizeof scratch, why, sizeof why);
        if (n > 0) {
            s->last_rx = ev_now(loop);
            size_t used = deliver(s, scratch, (size_t)n);
            if (keeps_input(s) && used < (size_t)n)
                buf_append(&s->in, scratch + used, (size_t)n - used);
            account_input(s);
        }
    } else {
        buf_reserve(&s->in, READ_CHUNK);
        n = transport(s)->read(s, s->in.data + s->in.len, s->in.cap - s->in.len, why, sizeof why);
        if (n > 0) {
            s->last_rx = ev_now(loop);
            s->in.len += (size_t)n;
            offer_buffered(s);
        }
    }
    if (n > 0) {
        /* a TLS record holds more than one read took: no readiness will
         * say so */
        if (s->state == STREAM_OPEN && s->paused == 0 && tr_pending(s))
            want_read(s);
    } else if (n == 0) {
        if (s->state == STREAM_OPEN && s->ops->eof && s->ops->eof(s))
            s->peer_closed = true; /* nothing more will come: its close need not linger */
        else
            stream_close(s, "peer closed the connection");
    } else if (n == STREAM_IO_WANT_WRITE) {
        s->rd_wants_wr = true;
        arm(s);
    } else if (n == STREAM_IO_ERROR) {
        stream_close(s, why);
    }
}

static void read_cb(struct ev_loop *l, ev_io *w, int revents)
{
    struct stream *s = container_of(w, struct stream, rd);
    if (s->wr_wants_rd) {
        /* the output waited for this */
        s->wr_wants_rd = false;
        if (stream_flush(s) < 0)
            return;
        arm(s);
        if (s->state != STREAM_OPEN || s->paused || s->rd_wants_wr)
            return;
    }
    do_read(s);
}

void stream_pause(struct stream *s, uint8_t reason)
{
    s->paused |= reason;
    arm(s);
}

void stream_resume(struct stream *s, uint8_t reason)
{
    if (!(s->paused & reason))
        return;
    s->paused &= (uint8_t)~reason;
    if (s->paused || s->state != STREAM_OPEN)
        return;
    arm(s);
    /* input read before the pause (or decoded by the transport) is
     * offered before the loop sleeps */
    if (input_waiting(s) || tr_pending(s))
        want_read(s);
}

bool stream_run_resumed(void)
{
    bool any = false;
    struct stream *s;
    /* the streams queued now: one queued again while this runs (more
     * input decoded) waits for the next call */
    size_t n = 0;
    TAILQ_FOREACH(s, &resumed, resume_link)
        n++;
    while (n-- > 0 && (s = TAILQ_FIRST(&resumed))) {
        TAILQ_REMOVE(&resumed, s, resume_link);
        s->in_resume = false;
        if (s->state != STREAM_OPEN || s->paused != 0)
            continue;
        if (input_waiting(s)) {
            offer_buffered(s);
            any = true;
        }
        if (s->state == STREAM_OPEN && s->paused == 0 && !s->rd_wants_wr && tr_pending(s)) {
            do_read(s);
            any = true;
        }
    }
    return any;
}

/* ------------------------------------------------------------ output */

/* Bytes every stream holds in output not yet written, kept current at
 * each stream_want_flush (every protocol asks for a flush after it
 * writes) and after each flush; streams refused more output for its sake,
 * and the total at which they are told there is room. */
static size_t output_held;
static size_t room_at;
/* A stream with less than this unsent that it may write gets more
 * whatever the total: small messages go a few at a time, not one per
 * flush, for at most this much per stream above the limit. */
#define OUTPUT_FLOOR 4096
static size_t nwaiting;

static void account_output(struct stream *s)
{
    size_t now = s->state == STREAM_DEAD ? 0 : stream_pending(s);
    output_held = output_held - s->out_counted + now;
    s->out_counted = now;
}

size_t stream_output_held(void)
{
    return output_held;
}

static void stop_waiting(struct stream *s)
{
    if (!s->out_waiting)
        return;
    TAILQ_REMOVE(&room_waiters, s, room_link);
    s->out_waiting = false;
    nwaiting--;
}

/* Of s's unsent output, what it may write now: what a protocol holds back
 * (deliveries and receipts waiting for their journal entry, may_write) is
 * not the peer's being slow, and goes once the entry commits (helper-116:
 * a consumer acking with receipts always had a few held bytes, and was
 * served one message per commit). */
static size_t writable_pending(struct stream *s)
{
    size_t out = buf_used(&s->out);
    if (out && (s->state == STREAM_OPEN || s->state == STREAM_CLOSING) && s->ops->may_write) {
        size_t allowed = s->ops->may_write(s);
        if (allowed < out)
            out = allowed;
    }
    return out + buf_used(&s->wire) + s->tr_out;
}

bool stream_output_room(struct stream *s, size_t limit)
{
    account_output(s);
    if (output_held < limit || writable_pending(s) < OUTPUT_FLOOR)
        return true;
    if (!s->out_waiting) {
        s->out_waiting = true;
        TAILQ_INSERT_TAIL(&room_waiters, s, room_link);
        nwaiting++;
    }
    room_at = limit - limit / 4;
    return false;
}

/* The total fell: those refused more are told, each once (a stream that
 * is refused again while told waits at the end of the line). */
static void wake_room_waiters(void)
{
    if (!nwaiting || output_held >= room_at)
        return;
    for (size_t n = nwaiting; n > 0 && !TAILQ_EMPTY(&room_waiters); n--) {
        struct stream *s = TAILQ_FIRST(&room_waiters);
        stop_waiting(s);
        if (s->ops->drained)
            s->ops->drained(s);
    }
}

void stream_write(struct stream *s, const void *p, size_t n)
{
    buf_append(&s->out, p, n);
    stream_want_flush(s);
}

void stream_want_flush(struct stream *s)
{
    if (s->state == STREAM_DEAD)
        return;
    account_output(s);
    if (s->in_flush)
        return;
    s->in_flush = true;
    TAILQ_INSERT_TAIL(&flushq, s, flush_link);
}

void stream_out_consume(struct stream *s, size_t n)
{
    buf_consume(&s->out, n);
    s->out_done += n;
}

/* With a framing layer, what reaches the transport is s->wire, refilled
 * from s->out a bounded amount at a time. Only s->out's bytes before
 * `upto` (a position, stream_out_pos) may go. */
#define WIRE_CHUNK 65536

static struct buf *next_output(struct stream *s, uint64_t upto, size_t *len)
{
    if (!s->filter) {
        uint64_t allowed = upto - s->out_done;
        *len = buf_used(&s->out) < allowed ? buf_used(&s->out) : (size_t)allowed;
        return &s->out;
    }
    if (buf_used(&s->wire) < WIRE_CHUNK && s->state != STREAM_DEAD) {
        uint64_t allowed = upto - s->out_done;
        s->filter->encode(s, allowed > SIZE_MAX ? SIZE_MAX : (size_t)allowed);
    }
    *len = buf_used(&s->wire);
    return &s->wire;
}

int stream_flush(struct stream *s)
{
    if (s->state == STREAM_DEAD || s->state == STREAM_CONNECTING)
        return 0;
    /* Held (all of it, or what follows a mark): whoever holds it asks for
     * a flush when it lets go; a writable socket must not wake the loop
     * meanwhile. A layer's control frames go even while the protocol
     * holds its output. A closing stream waits for it too (its linger
     * bounds the wait). */
    uint64_t upto = UINT64_MAX;
    if ((s->state == STREAM_OPEN || s->state == STREAM_CLOSING) && s->ops->may_write) {
        size_t allowed = s->ops->may_write(s);
        if (allowed != SIZE_MAX)
            upto = s->out_done + allowed;
    }
    /* remember it was full, however many flushes it then takes to drain */
    if (stream_pending(s) >= s->out_limit)
        s->blocked = true;
    struct buf *b;
    size_t len;
    bool full = false, wrote = false; /* the socket took no more; it took some */
    for (;;) {
        char why[192];
        ssize_t n;
        if (s->tr_out && transport(s)->drain) {
            /* what the transport holds goes first */
            n = transport(s)->drain(s, why, sizeof why);
            if (n == STREAM_IO_WANT_WRITE) {
                s->blocked = full = s->writing = true;
                arm(s);
                break;
            }
            if (n == STREAM_IO_ERROR) {
                stream_close(s, why);
                return -1;
            }
        }
        len = 0;
        b = next_output(s, upto, &len);
        if (len == 0)
            break;
        n = transport(s)->write(s, buf_head(b), len, why, sizeof why);
        if (n > 0) {
            s->last_tx = ev_now(loop);
            wrote = true;
            if (b == &s->out)
                stream_out_consume(s, (size_t)n);
            else
                buf_consume(b, (size_t)n);
            continue;
        }
        if (n == STREAM_IO_WANT_WRITE || n == STREAM_IO_WANT_READ) {
            s->blocked = full = true;
            if (n == STREAM_IO_WANT_WRITE)
                s->writing = true;
            else
                s->wr_wants_rd = true;
            arm(s);
            break;
        }
        stream_close(s, why);
        return -1;
    }
    if (s->state == STREAM_DEAD)
        return -1;
    account_output(s);
    if (!full && s->writing && buf_used(&s->wire) == 0) {
        /* the rest is held (a layer's own frames are out): a writable
         * socket is no reason to wake */
        s->writing = false;
        arm(s);     /* a read that waits to write keeps its watcher */
    }
    if (stream_pending(s) == 0) {
        if (s->writing || s->wr_wants_rd) {
            s->writing = s->wr_wants_rd = false;
            arm(s);
        }
        if (s->state == STREAM_CLOSING && (!s->filter || s->filter->may_close(s))) {
            close_stream(s, s->close_why ? s->close_why : "closed after its last answer", !s->peer_closed);
            return -1;
        }
    }
    /* not drained by a flush the socket took nothing of: a protocol that
     * fills and flushes from drained (the replication pump) would call
     * itself again and again while the socket is full */
    if (s->blocked && (wrote || !full) && stream_pending(s) < s->low_water) {
        s->blocked = false;
        stream_resume(s, STREAM_PAUSE_FILTER);
        if (s->ops->drained)
            s->ops->drained(s);
        if (s->state == STREAM_DEAD)
            return -1;
    }
    /* refused more for the total's sake, and its own output is out */
    if (s->out_waiting && writable_pending(s) < OUTPUT_FLOOR) {
        stop_waiting(s);
        if (s->ops->drained)
            s->ops->drained(s);
        if (s->state == STREAM_DEAD)
            return -1;
    }
    return 0;
}

static void write_cb(struct ev_loop *l, ev_io *w, int revents)
{
    struct stream *s = container_of(w, struct stream, wr);
    if (s->state == STREAM_CONNECTING) {
        int err = 0;
        socklen_t sl = sizeof err;
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0)
            err = errno;
        if (err) {
            char why[128];
            snprintf(why, sizeof why, "connect failed: %s", strerror(err));
            stream_close(s, why);
            return;
        }
        s->state = STREAM_OPEN;
        arm(s);
        if (tr_pending(s))
            want_read(s); /* a TLS client speaks first */
        if (s->ops->connected)
            s->ops->connected(s);
        if (s->state != STREAM_OPEN)
            return;
    }
    if (s->rd_wants_wr) {
        /* the input waited for this */
        s->rd_wants_wr = false;
        arm(s);
        if (s->state == STREAM_OPEN && s->paused == 0)
            do_read(s);
        if (s->state == STREAM_DEAD)
            return;
    }
    stream_flush(s);
}

void stream_flush_all(void)
{
    struct stream *s;
    while ((s = TAILQ_FIRST(&flushq))) {
        TAILQ_REMOVE(&flushq, s, flush_link);
        s->in_flush = false;
        stream_flush(s);
    }
    wake_room_waiters();
}

bool stream_flush_pending(void)
{
    return !TAILQ_EMPTY(&flushq);
}

/* ------------------------------------------------------------ deadline, close */

double stream_timer_remaining(const struct stream *s)
{
    return ev_is_active(&s->timer) ? ev_timer_remaining(loop, (ev_timer *)&s->timer) : -1;
}

void stream_set_timer(struct stream *s, double after)
{
    ev_timer_stop(loop, &s->timer);
    if (after <= 0 || s->state == STREAM_DEAD)
        return;
    ev_timer_set(&s->timer, after > 0.001 ? after : 0.001, 0.);
    ev_timer_start(loop, &s->timer);
}

static void timer_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    struct stream *s = container_of(w, struct stream, timer);
    if (s->state == STREAM_CLOSING)
        stream_close(s, "the peer did not read its last answer in time");
    else if (s->state != STREAM_DEAD && s->ops->timeout)
        s->ops->timeout(s);
}

void stream_close_after_flush(struct stream *s, double linger, const char *why)
{
    if (s->state >= STREAM_CLOSING)
        return;
    s->state = STREAM_CLOSING;
    s->close_why = why;
    s->rd_wants_wr = false;
    if (s->in_resume) {
        TAILQ_REMOVE(&resumed, s, resume_link);
        s->in_resume = false;
    }
    if (s->filter) {
        /* the layer reads on, for the peer's answer to its closing frame */
        s->paused = 0;
    } else {
        buf_free(&s->in);
        account_input(s);
    }
    arm(s);
    stream_set_timer(s, linger);
    stream_want_flush(s);
}

/* ------------------------------------------------------------ lingering close */

/* A stream closed after its last answer does not close its socket at once.
 * Input the peer sent behind what we answered (the rest of a body we
 * refused, frames pipelined behind an ERROR, bytes of a request that timed
 * out) would still be unread, and closing a socket with unread input makes
 * the kernel send a reset instead of an end of stream: the peer's next read
 * or write fails, and a stack that drops received data on a reset loses the
 * answer itself (RFC 9112 section 9.6, nginx's lingering_close). So the
 * write side is shut, the peer reads the answer and then the end of the
 * stream, and what still comes is read and dropped until the peer closes
 * too: for LINGER_IDLE seconds after the last byte, LINGER_TIME in all. The
 * stream itself is closed as before (its protocol state freed, its listener
 * slot given back); only the descriptor lingers. At most STREAM_LINGER_MAX
 * linger (the oldest ends to make room), and running out of descriptors
 * ends them all before a connection is refused. */
#define LINGER_IDLE 2.0
#define LINGER_TIME 10.0

struct lingerer {
    ev_io rd;
    ev_timer timer;
    ev_tstamp until;
    TAILQ_ENTRY(lingerer) link;
};

static TAILQ_HEAD(, lingerer) lingering = TAILQ_HEAD_INITIALIZER(lingering);
static unsigned nlingering;

static void linger_end(struct lingerer *g)
{
    ev_io_stop(loop, &g->rd);
    ev_timer_stop(loop, &g->timer);
    close(g->rd.fd);
    TAILQ_REMOVE(&lingering, g, link);
    nlingering--;
    free(g);
}

static void linger_read_cb(struct ev_loop *l, ev_io *w, int revents)
{
    (void)revents;
    struct lingerer *g = container_of(w, struct lingerer, rd);
    ssize_t n = recv(w->fd, scratch, sizeof scratch, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        linger_end(g);
    } else if (n > 0) {
        /* still sending: another LINGER_IDLE, within LINGER_TIME */
        double left = g->until - ev_now(l);
        if (left <= 0) {
            linger_end(g);
            return;
        }
        ev_timer_stop(l, &g->timer);
        ev_timer_set(&g->timer, left < LINGER_IDLE ? left : LINGER_IDLE, 0.);
        ev_timer_start(l, &g->timer);
    }
}

static void linger_timer_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)revents;
    linger_end(container_of(w, struct lingerer, timer));
}

static void close_lingering(int fd)
{
    if (nlingering >= STREAM_LINGER_MAX)
        linger_end(TAILQ_FIRST(&lingering));
    struct lingerer *g = malloc(sizeof *g);
    if (!g || shutdown(fd, SHUT_WR) != 0) {
        free(g);
        close(fd);
        return;
    }
    ev_io_init(&g->rd, linger_read_cb, fd, EV_READ);
    ev_timer_init(&g->timer, linger_timer_cb, LINGER_IDLE, 0.);
    g->until = ev_now(loop) + LINGER_TIME;
    ev_io_start(loop, &g->rd);
    ev_timer_start(loop, &g->timer);
    TAILQ_INSERT_TAIL(&lingering, g, link);
    nlingering++;
}

/* Out of descriptors: the lingering ones go first. */
static bool linger_shed(void)
{
    bool any = nlingering > 0;
    struct lingerer *g;
    while ((g = TAILQ_FIRST(&lingering)))
        linger_end(g);
    return any;
}

unsigned stream_lingering(void)
{
    return nlingering;
}

void stream_layer_stop(void)
{
    linger_shed();
}

/* Close now; with graceful, the answer is all written and the socket
 * lingers (above). */
static void close_stream(struct stream *s, const char *why, bool graceful)
{
    if (s->state == STREAM_DEAD)
        return;
    if (s->state == STREAM_OPEN && s->filter && s->filter->farewell && s->fd >= 0) {
        /* its last words, if the socket takes them now; no waiting */
        s->filter->farewell(s);
        char ignored[64];
        if (buf_used(&s->wire))
            (void)transport(s)->write(s, buf_head(&s->wire), buf_used(&s->wire), ignored, sizeof ignored);
    }
    s->state = STREAM_DEAD;
    ev_io_stop(loop, &s->rd);
    ev_io_stop(loop, &s->wr);
    ev_timer_stop(loop, &s->timer);
    s->writing = s->rd_wants_wr = s->wr_wants_rd = false;
    if (transport(s)->close)
        transport(s)->close(s);
    s->tr_out = 0;
    s->tr = &plain;
    s->tr_ctx = NULL;
    if (s->fd >= 0 && graceful)
        close_lingering(s->fd);
    else if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    buf_free(&s->in);
    account_input(s);
    buf_free(&s->out);
    buf_free(&s->wire);
    account_output(s);
    stop_waiting(s);
    if (s->in_flush) {
        TAILQ_REMOVE(&flushq, s, flush_link);
        s->in_flush = false;
    }
    if (s->in_resume) {
        TAILQ_REMOVE(&resumed, s, resume_link);
        s->in_resume = false;
    }
    if (s->listener) {
        struct listener *l = s->listener->limit_with ? s->listener->limit_with : s->listener;
        l->nconns--;
        s->listener = NULL;
    }
    if (s->ops->closed)
        s->ops->closed(s, why);
    TAILQ_INSERT_TAIL(&dead, s, dead_link);
}

void stream_close(struct stream *s, const char *why)
{
    close_stream(s, why, false);
}

void stream_free_dead(void)
{
    struct stream *s;
    while ((s = TAILQ_FIRST(&dead))) {
        TAILQ_REMOVE(&dead, s, dead_link);
        if (s->filter && s->filter->release)
            s->filter->release(s);
        s->ops->release(s);
    }
}

/* ------------------------------------------------------------ sockets */

void stream_peer_name(const struct sockaddr_storage *ss, char *out, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    }
    snprintf(out, len, "%s:%d", host, port);
}

/* A non-blocking socket for host:port, bound and listening (passive) or
 * connecting; -1 with err filled. */
static int open_socket(const char *addr, bool passive, char *err, size_t errlen)
{
    char host[256];
    int port;
    if (config_split_hostport(addr, host, sizeof host, &port) != 0) {
        snprintf(err, errlen, "'%s' is not host:port", addr);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = passive ? AI_PASSIVE : 0};
    struct addrinfo *res;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host[0] ? host : NULL, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    int one = 1;
    if (passive) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        rc = bind(fd, res->ai_addr, res->ai_addrlen) == 0 && listen(fd, 1024) == 0 ? 0 : -1;
    } else {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        rc = connect(fd, res->ai_addr, res->ai_addrlen) == 0 || errno == EINPROGRESS ? 0 : -1;
    }
    freeaddrinfo(res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot %s %s: %s", passive ? "listen on" : "connect to", addr, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

bool stream_addr_loopback(const char *addr)
{
    char host[256];
    int port;
    if (config_split_hostport(addr, host, sizeof host, &port) != 0 || !host[0])
        return false;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return false;
    bool lo = res != NULL;
    for (const struct addrinfo *ai = res; ai && lo; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)ai->ai_addr;
            lo = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
        } else if (ai->ai_family == AF_INET6) {
            const struct in6_addr *a6 = &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
            lo = IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
        } else {
            lo = false;
        }
    }
    freeaddrinfo(res);
    return lo;
}

int stream_listen_socket(const char *addr, char *err, size_t errlen)
{
    return open_socket(addr, true, err, errlen);
}

int stream_connect_socket(const char *addr, char *err, size_t errlen)
{
    return open_socket(addr, false, err, errlen);
}

/* ------------------------------------------------------------ listeners */

/* Descriptors kept from client connections for the rest of the process:
 * the store's new log segments and LevelDB's files, readers, the log, and
 * half of them for the broker's own listeners (service). A broker whose
 * clients took them all stopped at its next segment (helper-117).
 * Accepted descriptors are numbered lowest first: one at or past the
 * ceiling means fewer than the reserve are left. */
#define FD_RESERVE 64
static long fd_limit, fd_reserve = -1;

static int fd_ceiling(const struct listener *l)
{
    if (fd_reserve < 0) {
        struct rlimit rl;
        fd_limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < INT_MAX ? (long)rl.rlim_cur : INT_MAX;
        fd_reserve = fd_limit / 4 < FD_RESERVE ? fd_limit / 4 : FD_RESERVE;
        const char *t = getenv("STOMPD_TEST_FD_RESERVE"); /* a test that takes every descriptor */
        if (t)
            fd_reserve = atol(t);
    }
    return (int)(fd_limit - (l->service ? fd_reserve / 2 : fd_reserve));
}

static void out_of_descriptors(struct listener *l, int err)
{
    l->fd_exhausted++;
    /* Accept the oldest waiting connection with the spare descriptor and
     * close it at once: its client hears "closed" instead of waiting. */
    if (spare_fd >= 0) {
        close(spare_fd);
        spare_fd = -1;
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            close(fd);
            l->refused++;
        }
        spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    /* The listener stays readable while connections wait: stop watching
     * it for a moment, or the loop spins on accept() (libev's manual,
     * "The special problem of accept()ing when you can't"). */
    ev_io_stop(loop, &l->io);
    ev_timer_stop(loop, &l->pause);
    ev_timer_set(&l->pause, FD_PAUSE, 0.);
    ev_timer_start(loop, &l->pause);
    ev_tstamp now = ev_now(loop);
    if (l->fd_logged == 0 || now - l->fd_logged >= FD_LOG_EVERY) {
        char why[160];
        if (err)
            snprintf(why, sizeof why, "%s", strerror(err));
        else
            snprintf(why, sizeof why, "%ld of the %ld allowed are kept for the store and the broker's own",
                     l->service ? fd_reserve / 2 : fd_reserve, fd_limit);
        log_warn("%s listener: out of file descriptors (%s): new connections are refused (%llu times so far); "
                 "raise the open-files limit (ulimit -n, LimitNOFILE=) or lower %s",
                 l->name, why, (unsigned long long)l->fd_exhausted,
                 l->limit_key ? l->limit_key : "the number of connections");
        l->fd_logged = now;
    }
}

static void pause_cb(struct ev_loop *lp, ev_timer *w, int revents)
{
    struct listener *l = container_of(w, struct listener, pause);
    if (l->running)
        ev_io_start(lp, &l->io);
}

static void accept_cb(struct ev_loop *lp, ev_io *w, int revents)
{
    struct listener *l = container_of(w, struct listener, io);
    for (int i = 0; i < 64 && l->running; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if ((errno == EMFILE || errno == ENFILE) && linger_shed())
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                out_of_descriptors(l, errno);
            else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED &&
                     errno != EPROTO)
                log_warn("%s listener: accept: %s", l->name, strerror(errno));
            return;
        }
        if (fd >= fd_ceiling(l) && !linger_shed()) {
            /* the reserve's turn: refused as when none are left */
            close(fd);
            l->refused++;
            out_of_descriptors(l, 0);
            return;
        }
        char peer[64];
        stream_peer_name(&ss, peer, sizeof peer);
        const struct listener *lim = l->limit_with ? l->limit_with : l;
        if (lim->max_conns && lim->nconns >= lim->max_conns && !(l->make_room && l->make_room(l, peer))) {
            l->refused++;
            if (l->refuse)
                l->refuse(l, fd);
            close_lingering(fd); /* its CONNECT or request may be waiting unread */
            continue;
        }
        if (l->nodelay) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        l->accepted++;
        l->accept(l, fd, peer);
    }
}

/* Every listener ever started (they live as long as the process), for
 * their counters. */
#define MAX_LISTENERS 16
static struct listener *known[MAX_LISTENERS];
static size_t nknown;

size_t listener_list(const struct listener **out, size_t max)
{
    size_t n = 0;
    for (; n < nknown && n < max; n++)
        out[n] = known[n];
    return n;
}

int listener_start(struct listener *l, const char *addr, char *err, size_t errlen)
{
    if (listener_running(l))
        return 0;
    bool seen = false;
    for (size_t i = 0; i < nknown; i++)
        seen |= known[i] == l;
    if (!seen && nknown < MAX_LISTENERS)
        known[nknown++] = l;
    char e2[300];
    int fd = stream_listen_socket(addr, e2, sizeof e2);
    if (fd < 0) {
        snprintf(err, errlen, "%s%s%s", e2, l->addr_key ? " (" : "", l->addr_key ? l->addr_key : "");
        if (l->addr_key)
            snprintf(err + strlen(err), errlen - strlen(err), ")");
        return -1;
    }
    if (spare_fd < 0)
        spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    l->fd = fd;
    l->running = true;
    ev_io_init(&l->io, accept_cb, fd, EV_READ);
    ev_io_start(loop, &l->io);
    ev_init(&l->pause, pause_cb);
    return 0;
}

bool listener_running(const struct listener *l)
{
    return l->running;
}

void listener_stop(struct listener *l)
{
    if (!listener_running(l))
        return;
    ev_io_stop(loop, &l->io);
    ev_timer_stop(loop, &l->pause);
    close(l->fd);
    l->fd = -1;
    l->running = false;
}

void listener_say(int fd, const char *msg, size_t len)
{
    ssize_t n = send(fd, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
}

void listener_attach(struct listener *l, struct stream *s)
{
    s->listener = l;
    (l->limit_with ? l->limit_with : l)->nconns++;
    if (l->secure)
        l->secure(l, s);
}
