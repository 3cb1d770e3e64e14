/* libstompc's sockets: the session's connection (reading and parsing
 * frames, writing the output buffer, heart-beats both ways) and the
 * connection attempts (TCP connect, the TLS handshake for ssl:// brokers,
 * CONNECT, waiting for CONNECTED), all non-blocking and registered in one
 * epoll instance, so that the caller's event loop (or the library's own
 * wait, for the blocking calls) watches a single descriptor whatever the
 * client has open. Over TLS a read may wait for the socket to be writable
 * and a write for it to be readable (ctls.c says which); the registration
 * follows. Nothing here waits. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"

#define READ_CHUNK 65536
#define READ_ROUNDS 16         /* bound one read so timers and the caller still run */
#define TAG_SESSION UINT64_MAX /* epoll data of the session's socket; attempts carry their broker index */
#define TAG_INTR (UINT64_MAX - 1) /* ... and of the eventfd stompc_interrupt writes to */

static const char *broker_text(const struct stompc *c)
{
    return c->uri.brokers[c->broker].text;
}

/* "host:port" (the text after tcp:// or ssl://), for "connect to ..."
 * messages. */
static const char *hostport(const struct uri_broker *b)
{
    return strstr(b->text, "://") + 3;
}

int cbuf_reserve(struct buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    if (b->off > 0 && b->cap - buf_used(b) >= extra && b->off >= buf_used(b)) {
        memmove(b->data, b->data + b->off, buf_used(b));
        b->len -= b->off;
        b->off = 0;
        return 0;
    }
    size_t need = b->len + extra;
    if (need < extra)
        return STOMPC_ENOMEM;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2)
            return STOMPC_ENOMEM;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        return STOMPC_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

static void parser_setup(const struct stompc *c, struct frame_parser *p)
{
    struct frame_limits lim = {
        .max_frame = c->max_frame,
        .max_headers = 10000,
        .max_header_line = c->max_frame,
        .max_command_line = 256,
    };
    frame_parser_init(p, &lim);
}

/* ------------------------------------------------------------- epoll */

int net_init(struct stompc *c)
{
    c->intr_fd = -1;
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (c->epfd < 0)
        return -errno;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_INTR};
    if ((c->intr_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
        epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->intr_fd, &ev) != 0) {
        int e = errno;
        net_fini(c);
        return -e;
    }
    return 0;
}

void net_fini(struct stompc *c)
{
    if (c->epfd >= 0)
        close(c->epfd);
    if (c->intr_fd >= 0)
        close(c->intr_fd);
    c->epfd = c->intr_fd = -1;
}

void net_interrupt(struct stompc *c)
{
    uint64_t one = 1;
    ssize_t n = write(c->intr_fd, &one, sizeof one); /* async-signal-safe */
    (void)n;
}

/* Register fd for want (0: nothing) under tag. 0 or -errno. */
static int ep_update(struct stompc *c, int fd, uint32_t *have, uint32_t want, uint64_t tag)
{
    if (*have == want)
        return 0;
    struct epoll_event ev = {.events = want, .data.u64 = tag};
    int op = *have == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(c->epfd, op, fd, &ev) != 0)
        return -errno;
    *have = want;
    return 0;
}

void net_interest(struct stompc *c)
{
    if (c->fd < 0)
        return;
    uint32_t want = EPOLLIN | ((buf_used(&c->out) && !c->wr_wants_rd) || c->rd_wants_wr ? EPOLLOUT : 0);
    /* MOD of a registered socket cannot fail for want of memory; if it
     * ever did, the next read or write would still find out. */
    (void)ep_update(c, c->fd, &c->ev, want, TAG_SESSION);
}

/* ------------------------------------------------------------ session */

void net_close(struct stompc *c)
{
    ctls_close(c->ssl, true);
    c->ssl = NULL;
    c->rd_wants_wr = c->wr_wants_rd = false;
    if (c->fd >= 0)
        close(c->fd); /* leaves the epoll set with it */
    c->fd = -1;
    c->ev = 0;
    buf_free(&c->in);
    buf_free(&c->out);
    /* The counters go on across connections (stompc.c compares them
     * around a loss); unsent bytes are dropped with the buffer. */
    c->out_queued = c->out_written;
    c->hb_rx_ms = c->hb_tx_ms = 0;
}

void net_describe_error(const struct frame *f, char *out, size_t outlen)
{
    const char *msg = frame_get(f, "message");
    size_t bl = f->body_len;
    const char *nl = memchr(f->body, '\n', bl);
    if (nl)
        bl = (size_t)(nl - f->body);
    if (bl > 400)
        bl = 400;
    if (msg && bl && strncmp(msg, f->body, bl))
        snprintf(out, outlen, "broker ERROR: %s: %.*s", msg, (int)bl, f->body);
    else if (msg)
        snprintf(out, outlen, "broker ERROR: %s", msg);
    else
        snprintf(out, outlen, "broker ERROR: %.*s", (int)bl, f->body);
}

/* Read what the socket has (bounded). > 0 bytes, 0 nothing, < 0 lost. */
static int read_some(struct stompc *c)
{
    size_t total = 0;
    c->rd_wants_wr = false;
    for (int i = 0; i < READ_ROUNDS; i++) {
        if (cbuf_reserve(&c->in, READ_CHUNK) != 0)
            return client_lost(c, STOMPC_ENOMEM, "out of memory reading from %s", broker_text(c));
        ssize_t n;
        if (c->ssl) {
            char why[300];
            n = ctls_read(c->ssl, c->in.data + c->in.len, c->in.cap - c->in.len, why, sizeof why);
            if (n == CTLS_WANT_WRITE)
                c->rd_wants_wr = true;
            if (n == CTLS_WANT_READ || n == CTLS_WANT_WRITE)
                break;
            if (n == CTLS_ERROR) {
                if (total)
                    break; /* handle what came first; the error comes again */
                return client_lost(c, STOMPC_EIO, "connection to %s: %s", broker_text(c), why);
            }
        } else {
            n = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, MSG_DONTWAIT);
        }
        if (n > 0) {
            c->in.len += (size_t)n;
            total += (size_t)n;
            continue;
        }
        if (n == 0) {
            if (total)
                break; /* handle what came first; EOF is seen next time */
            return client_lost(c, STOMPC_EIO, "connection to %s closed by the broker", broker_text(c));
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        if (total)
            break;
        return client_lost(c, STOMPC_EIO, "connection to %s: %s", broker_text(c), strerror(errno));
    }
    if (total)
        c->last_rx = client_now();
    if (buf_used(&c->in) == 0)
        buf_free(&c->in); /* an idle client holds no buffer */
    return total ? 1 : 0;
}

/* Handle every complete frame in the input. > 0 frames handled, 0 none,
 * < 0 the connection was dropped (ERROR or a bad frame). */
static int process_input(struct stompc *c)
{
    int handled = 0;
    while (buf_used(&c->in)) {
        struct frame f;
        size_t used;
        const char *err;
        enum frame_status st = frame_parse(&c->parser, buf_head(&c->in), buf_used(&c->in), &used, &f, &err);
        /* The frame owns its memory: consume first, so that handling it
         * may close the connection (and free the buffer) safely. */
        buf_consume(&c->in, used);
        if (st == FRAME_NEED_MORE)
            break;
        if (st == FRAME_ERROR) {
            if (!strcmp(err, "out of memory"))
                return client_lost(c, STOMPC_ENOMEM, "out of memory reading a frame from %s", broker_text(c));
            return client_lost(c, STOMPC_EPROTO, "bad frame from %s: %s", broker_text(c), err);
        }
        handled++;
        int rc = client_on_frame(c, &f);
        if (rc < 0)
            return rc;
    }
    return handled;
}

/* Hand what the kernel takes. 0 (maybe partial), < 0 lost. */
static int write_some(struct stompc *c)
{
    c->wr_wants_rd = false;
    while (buf_used(&c->out)) {
        ssize_t n;
        if (c->ssl) {
            char why[300];
            n = ctls_write(c->ssl, buf_head(&c->out), buf_used(&c->out), why, sizeof why);
            if (n == CTLS_WANT_READ)
                c->wr_wants_rd = true;
            if (n == CTLS_WANT_READ || n == CTLS_WANT_WRITE)
                return 0;
            if (n == CTLS_ERROR)
                return client_lost(c, STOMPC_EIO, "connection to %s: %s", broker_text(c), why);
        } else {
            n = send(c->fd, buf_head(&c->out), buf_used(&c->out), MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            c->out_written += (uint64_t)n;
            c->last_tx = client_now();
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return client_lost(c, STOMPC_EIO, "connection to %s: %s", broker_text(c),
                           n < 0 ? strerror(errno) : "write returned 0");
    }
    return 0;
}

int net_write(struct stompc *c)
{
    int rc = write_some(c);
    if (rc < 0)
        return rc;
    net_interest(c);
    return 0;
}

int net_io(struct stompc *c, uint32_t events)
{
    int rc;
    if (((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) || (c->wr_wants_rd && (events & EPOLLIN))) &&
        buf_used(&c->out)) {
        if ((rc = write_some(c)) < 0)
            return rc;
    }
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) || (c->rd_wants_wr && (events & EPOLLOUT))) {
        if ((rc = read_some(c)) < 0)
            return rc;
        if ((rc = process_input(c)) < 0)
            return rc;
    }
    net_interest(c);
    return 0;
}

int net_timers(struct stompc *c, int64_t now, int64_t *next)
{
    *next = -1;
    if (ctls_pending(c->ssl)) {
        /* TLS decoded more than the last read took: no readiness will
         * come for it */
        int r = read_some(c);
        if (r < 0 || (r = process_input(c)) < 0)
            return r;
        if (c->state != CS_CONNECTED)
            return 0;
        net_interest(c);
    }
    if (c->hb_rx_ms) {
        int64_t limit = c->last_rx + c->hb_rx_ms * 3 / 2; /* 1.5x grace */
        if (now >= limit) {
            /* Data may be waiting unread if the caller was away: look first. */
            int r = read_some(c);
            if (r < 0)
                return r;
            if (r == 0)
                return client_lost(c, STOMPC_EIO, "no heart-beat from %s for %lld ms", broker_text(c),
                                   (long long)(now - c->last_rx));
            if ((r = process_input(c)) < 0)
                return r;
            if (c->state != CS_CONNECTED)
                return 0;
            limit = c->last_rx + c->hb_rx_ms * 3 / 2;
        }
        *next = limit;
    }
    if (c->hb_tx_ms) {
        int64_t due = c->last_tx + c->hb_tx_ms;
        if (now >= due && buf_used(&c->out) == 0) {
            if (cbuf_reserve(&c->out, 1) != 0)
                return client_lost(c, STOMPC_ENOMEM, "out of memory sending a heart-beat to %s", broker_text(c));
            buf_putc(&c->out, '\n');
            c->out_queued++;
            int r = net_write(c);
            if (r < 0)
                return r;
            due = now + c->hb_tx_ms;
        }
        /* a pending write is woken by the socket, not by this timer */
        if (buf_used(&c->out) == 0 && (*next < 0 || due < *next))
            *next = due;
    }
    return 0;
}

/* Bytes net_put writes for one header, at most. */
static size_t header_room(enum stomp_version v, bool esc, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    return (esc ? frame_escaped_len(v, name, nl) + frame_escaped_len(v, value, vl) : nl + vl) + 2;
}

int net_put(struct stompc *c, const struct ofr *o, bool with_receipt)
{
    bool esc = frame_cmd_escapes(o->cmd);
    /* Room for the whole frame first: the writers below then never grow
     * the buffer (they would abort when memory runs out). */
    size_t room = strlen(frame_cmd_name(o->cmd)) + 1 + 48 + o->body_len + 2;
    for (uint32_t i = 0; i < o->nh; i++)
        room += header_room(c->version, esc, o->h[i].name, o->h[i].value);
    if (with_receipt && o->receipt)
        room += header_room(c->version, esc, "receipt", o->receipt);
    if (cbuf_reserve(&c->out, room) != 0)
        return STOMPC_ENOMEM;
    size_t before = c->out.len - c->out.off;
    frame_write_command(&c->out, frame_cmd_name(o->cmd));
    for (uint32_t i = 0; i < o->nh; i++)
        frame_write_header_str(&c->out, c->version, esc, o->h[i].name, o->h[i].value);
    if (with_receipt && o->receipt)
        frame_write_header_str(&c->out, c->version, esc, "receipt", o->receipt);
    if (o->cmd == CMD_SEND || o->body_len) {
        char len[24];
        snprintf(len, sizeof len, "%zu", o->body_len);
        frame_write_header_str(&c->out, c->version, false, "content-length", len);
    }
    frame_write_body(&c->out, o->body, o->body_len);
    c->out_queued += buf_used(&c->out) - before;
    return 0;
}

/* ----------------------------------------------------------- attempts */

static int64_t attempt_timeout(const struct stompc *c, size_t i)
{
    if (c->uri.brokers[i].connect_timeout > 0)
        return c->uri.brokers[i].connect_timeout;
    if (c->uri.connect_timeout > 0)
        return c->uri.connect_timeout;
    return c->connect_timeout_opt > 0 ? c->connect_timeout_opt : 10000;
}

/* Record why an attempt failed; returns status. */
static int attempt_fail(struct stompc *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int attempt_fail(struct stompc *c, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->connect_err, sizeof c->connect_err, fmt, ap);
    va_end(ap);
    c->connect_status = status;
    c->refused_for_good = false;
    return status;
}

static void attempt_release(struct attempt *a)
{
    ctls_close(a->ssl, false);
    a->ssl = NULL;
    a->tls_up = a->tls_want_write = false;
    if (a->fd >= 0)
        close(a->fd);
    a->fd = -1;
    a->ev = 0;
    a->handshake = false;
    if (a->res)
        freeaddrinfo(a->res);
    a->res = a->cur = NULL;
    buf_free(&a->in);
    buf_free(&a->out);
    free(a->members);
    a->members = NULL;
}

static size_t connect_room(const char *name, const char *value)
{
    return value ? strlen(name) + strlen(value) + 2 : 0;
}

/* CONNECT into a->out. 0 or STOMPC_ENOMEM. */
static int put_connect(struct stompc *c, struct attempt *a, const struct uri_broker *b)
{
    char hb[48];
    const char *host = c->host ? c->host : b->host;
    snprintf(hb, sizeof hb, "%d,%d", c->hb_cx, c->hb_cy);
    size_t room = 16 + connect_room("accept-version", c->accept_version) + connect_room("host", host) +
                  connect_room("login", c->login) + connect_room("passcode", c->passcode) +
                  connect_room("client-id", c->client_id) + connect_room("heart-beat", hb);
    for (size_t i = 0; i < c->ncheaders; i++)
        room += connect_room(c->cheaders[i].name, c->cheaders[i].value);
    if (cbuf_reserve(&a->out, room) != 0)
        return STOMPC_ENOMEM;
    /* CONNECT is never escaped; stompc_connect refused values that need it. */
    struct buf *o = &a->out;
    frame_write_command(o, "CONNECT");
    frame_write_header_str(o, STOMP_10, false, "accept-version", c->accept_version);
    frame_write_header_str(o, STOMP_10, false, "host", host);
    if (c->login)
        frame_write_header_str(o, STOMP_10, false, "login", c->login);
    if (c->passcode)
        frame_write_header_str(o, STOMP_10, false, "passcode", c->passcode);
    if (c->client_id)
        frame_write_header_str(o, STOMP_10, false, "client-id", c->client_id);
    frame_write_header_str(o, STOMP_10, false, "heart-beat", hb);
    for (size_t i = 0; i < c->ncheaders; i++)
        frame_write_header_str(o, STOMP_10, false, c->cheaders[i].name, c->cheaders[i].value);
    frame_write_body(o, NULL, 0);
    return 0;
}

/* Is v one of the versions we offered? */
static bool offered(const struct stompc *c, const char *v)
{
    const char *p = c->accept_version;
    size_t vl = strlen(v);
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t l = comma ? (size_t)(comma - p) : strlen(p);
        if (l == vl && !strncmp(p, v, l))
            return true;
        if (!comma)
            break;
        p = comma + 1;
    }
    return false;
}

/* Would the same CONNECT meet this ERROR again? A refused login, as
 * stompd ("authentication failed"), ActiveMQ ("User name [x] or password
 * is invalid.") and RabbitMQ ("Access refused for user 'x'") say it, and
 * stompd's refusals of what the CONNECT itself says. Not a busy broker
 * ("too many logins in progress"), nor a client-id still held by the
 * session being replaced ("client-id already in use"). */
static bool refused_for_good(const struct frame *f)
{
    static const char *const says[] = {"authentication failed", "password is invalid", "access refused",
                                       "header not utf-8",      "invalid client-id",   "client-id too long",
                                       "unsupported protocol version", "invalid heart-beat"};
    const char *msg = frame_get(f, "message");
    char text[512];
    snprintf(text, sizeof text, "%s %.*s", msg ? msg : "", (int)(f->body_len < 400 ? f->body_len : 400), f->body);
    for (size_t i = 0; i < sizeof says / sizeof says[0]; i++)
        if (strcasestr(text, says[i]))
            return true;
    return false;
}

/* The broker's answer to CONNECT: what it settles, kept in the attempt. */
static int handshake_reply(struct stompc *c, struct attempt *a, const char *hp, struct frame *f)
{
    if (f->cmd == CMD_ERROR) {
        char why[600];
        net_describe_error(f, why, sizeof why);
        int rc = attempt_fail(c, STOMPC_EBROKER, "connect to %s: %s", hp, why);
        c->refused_for_good = refused_for_good(f);
        return rc;
    }
    if (f->cmd != CMD_CONNECTED)
        return attempt_fail(c, STOMPC_EPROTO, "connect to %s: expected CONNECTED, got %s", hp, f->command);
    const char *v = frame_get(f, "version");
    if (!v)
        v = "1.0"; /* a 1.0 broker does not say */
    if (strcmp(v, "1.0") && strcmp(v, "1.1") && strcmp(v, "1.2"))
        return attempt_fail(c, STOMPC_EPROTO, "connect to %s: unknown version '%.32s'", hp, v);
    if (!offered(c, v))
        return attempt_fail(c, STOMPC_EPROTO, "connect to %s: broker chose version '%.32s', not one of %s", hp, v,
                            c->accept_version);
    a->version = !strcmp(v, "1.2") ? STOMP_12 : !strcmp(v, "1.1") ? STOMP_11 : STOMP_10;
    long sx = 0, sy = 0;
    const char *hb = frame_get(f, "heart-beat");
    if (hb && a->version >= STOMP_11) {
        char *end;
        /* at most 2^31-1 ms: a beat is added to the clock */
        errno = 0;
        sx = strtol(hb, &end, 10);
        if (end == hb || *end != ',' || sx < 0 || sx > INT32_MAX || errno)
            return attempt_fail(c, STOMPC_EPROTO, "connect to %s: bad heart-beat '%.32s'", hp, hb);
        const char *q = end + 1;
        sy = strtol(q, &end, 10);
        if (end == q || *end || sy < 0 || sy > INT32_MAX || errno)
            return attempt_fail(c, STOMPC_EPROTO, "connect to %s: bad heart-beat '%.32s'", hp, hb);
    }
    /* The specification's rule: max of what one side offers and the other
     * wants, nothing when either says 0. */
    a->hb_tx_ms = (c->hb_cx && sy) ? (c->hb_cx > sy ? c->hb_cx : sy) : 0;
    a->hb_rx_ms = (sx && c->hb_cy) ? (sx > c->hb_cy ? sx : c->hb_cy) : 0;
    const char *members = frame_get(f, "cluster-members");
    /* out of memory: the client just learns nothing */
    a->members = members && c->uri.failover && c->uri.update_uris_supported ? strdup(members) : NULL;
    return 0;
}

/* The TLS handshake goes on as far as it can; once done, CONNECT. */
static int attempt_tls(struct stompc *c, size_t i)
{
    struct attempt *a = &c->bs[i].a;
    const struct uri_broker *b = &c->uri.brokers[i];
    char why[400];
    int r = ctls_handshake(a->ssl, why, sizeof why);
    if (r == CTLS_ERROR)
        return attempt_fail(c, STOMPC_ECONNECT, "connect to %s: %s", hostport(b), why);
    a->tls_want_write = r == CTLS_WANT_WRITE;
    if (r != 1)
        return 0;
    a->tls_up = true;
    if (put_connect(c, a, b) != 0)
        return attempt_fail(c, STOMPC_ENOMEM, "connect to %s: out of memory", hostport(b));
    return 0;
}

/* TCP is up: send CONNECT (over TLS once its handshake is done). */
static int attempt_tcp_up(struct stompc *c, size_t i)
{
    struct attempt *a = &c->bs[i].a;
    const struct uri_broker *b = &c->uri.brokers[i];
    int one = 1;
    (void)setsockopt(a->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    a->handshake = true;
    if (b->tls) {
        char why[400];
        a->ssl = ctls_new(c, a->fd, b->host, why, sizeof why);
        if (!a->ssl)
            return attempt_fail(c, STOMPC_ECONNECT, "connect to %s: %s", hostport(b), why);
        return attempt_tls(c, i);
    }
    if (put_connect(c, a, b) != 0)
        return attempt_fail(c, STOMPC_ENOMEM, "connect to %s: out of memory", hostport(b));
    return 0;
}

/* Bytes of the attempt to the broker: > 0 taken, 0 not now (*want_read:
 * not before the socket is readable), < 0 failed (why). */
static ssize_t attempt_send(struct attempt *a, const void *p, size_t n, bool *want_read, char *why, size_t whylen)
{
    *want_read = false;
    if (a->ssl) {
        ssize_t r = ctls_write(a->ssl, p, n, why, whylen);
        if (r == CTLS_WANT_READ || r == CTLS_WANT_WRITE) {
            *want_read = r == CTLS_WANT_READ;
            return 0;
        }
        return r > 0 ? r : -1;
    }
    for (;;) {
        ssize_t r = send(a->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r > 0)
            return r;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        snprintf(why, whylen, "%s", r < 0 ? strerror(errno) : "write returned 0");
        return -1;
    }
}

/* Write what the attempt has to say, and register what it waits for. */
static int attempt_flush(struct stompc *c, size_t i)
{
    struct attempt *a = &c->bs[i].a;
    const struct uri_broker *b = &c->uri.brokers[i];
    bool want_read = false;
    while (buf_used(&a->out) && (!a->ssl || a->tls_up)) {
        char why[400];
        ssize_t n = attempt_send(a, buf_head(&a->out), buf_used(&a->out), &want_read, why, sizeof why);
        if (n > 0) {
            buf_consume(&a->out, (size_t)n);
            continue;
        }
        if (n == 0)
            break;
        return attempt_fail(c, STOMPC_ECONNECT, "connect to %s: %s", hostport(b), why);
    }
    uint32_t want;
    if (!a->handshake)
        want = EPOLLOUT; /* TCP connecting */
    else if (a->ssl && !a->tls_up)
        want = a->tls_want_write ? EPOLLOUT : EPOLLIN; /* the TLS handshake */
    else
        want = EPOLLIN | (buf_used(&a->out) && !want_read ? EPOLLOUT : 0);
    int rc = ep_update(c, a->fd, &a->ev, want, i);
    if (rc < 0)
        return attempt_fail(c, rc == -ENOMEM ? STOMPC_ENOMEM : STOMPC_ECONNECT, "connect to %s: epoll: %s",
                            hostport(b), strerror(-rc));
    return 0;
}

/* Connect to the attempt's current address, or the next ones. 0 under
 * way (or up), < 0 none left. */
static int attempt_connect(struct stompc *c, size_t i)
{
    struct attempt *a = &c->bs[i].a;
    const struct uri_broker *b = &c->uri.brokers[i];
    int err = ECONNREFUSED;
    for (; a->cur; a->cur = a->cur->ai_next) {
        struct addrinfo *ai = a->cur;
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        a->fd = fd;
        a->ev = 0;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            int rc = attempt_tcp_up(c, i);
            return rc ? rc : attempt_flush(c, i);
        }
        err = errno;
        if (err == EINPROGRESS)
            return attempt_flush(c, i); /* registers for EPOLLOUT */
        close(fd);
        a->fd = -1;
    }
    return attempt_fail(c, err == ENOMEM || err == ENOBUFS ? STOMPC_ENOMEM : STOMPC_ECONNECT, "connect to %s: %s",
                        hostport(b), strerror(err));
}

int net_attempt_start(struct stompc *c, size_t i, int64_t now)
{
    struct attempt *a = &c->bs[i].a;
    const struct uri_broker *b = &c->uri.brokers[i];
    attempt_release(a);
    char port[16];
    snprintf(port, sizeof port, "%d", b->port);
    /* A host name is resolved here, and that may block: event loops that
     * must never wait give numeric addresses. */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    int gai = getaddrinfo(b->host, port, &hints, &a->res);
    if (gai != 0) {
        a->res = NULL;
        return attempt_fail(c, gai == EAI_MEMORY ? STOMPC_ENOMEM : STOMPC_ECONNECT, "connect to %s: %s", hostport(b),
                            gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
    }
    a->cur = a->res;
    a->deadline = now + attempt_timeout(c, i);
    a->version = STOMP_10;
    parser_setup(c, &a->parser);
    int rc = attempt_connect(c, i);
    if (rc < 0)
        attempt_release(a);
    return rc;
}

/* The attempt's socket has something: TCP result, or the broker's bytes. */
static int attempt_ready(struct stompc *c, size_t i, uint32_t events, bool *costly)
{
    struct attempt *a = &c->bs[i].a;
    const struct uri_broker *b = &c->uri.brokers[i];
    if (!a->handshake) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err == 0) {
            struct sockaddr_storage peer;
            socklen_t pl = sizeof peer;
            if (getpeername(a->fd, (struct sockaddr *)&peer, &pl) != 0)
                return 0; /* a stale wake-up: still connecting */
            int rc = attempt_tcp_up(c, i);
            return rc ? rc : attempt_flush(c, i);
        }
        close(a->fd);
        a->fd = -1;
        a->ev = 0;
        a->cur = a->cur->ai_next;
        if (!a->cur)
            return attempt_fail(c, STOMPC_ECONNECT, "connect to %s: %s", hostport(b), strerror(err));
        return attempt_connect(c, i); /* the host's next address */
    }
    *costly = true; /* from here on the broker has been reached */
    if (a->ssl && !a->tls_up) {
        int rc = attempt_tls(c, i);
        if (rc < 0)
            return rc;
        return attempt_flush(c, i); /* CONNECT, once the handshake is done; or wait */
    }
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLIN)) && buf_used(&a->out)) {
        int rc = attempt_flush(c, i);
        if (rc < 0)
            return rc;
    }
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return 0;
    bool eof = false;
    int rerr = 0;
    char terr[400] = "";
    for (int round = 0; round < READ_ROUNDS; round++) {
        if (cbuf_reserve(&a->in, 4096) != 0)
            return attempt_fail(c, STOMPC_ENOMEM, "connect to %s: out of memory", hostport(b));
        ssize_t n;
        if (a->ssl) {
            n = ctls_read(a->ssl, a->in.data + a->in.len, a->in.cap - a->in.len, terr, sizeof terr);
            if (n == CTLS_WANT_READ || n == CTLS_WANT_WRITE)
                break;
            if (n == CTLS_ERROR) {
                rerr = EPROTO;
                break;
            }
        } else {
            n = recv(a->fd, a->in.data + a->in.len, a->in.cap - a->in.len, MSG_DONTWAIT);
        }
        if (n > 0) {
            a->in.len += (size_t)n;
            continue;
        }
        if (n == 0)
            eof = true;
        else if (errno == EINTR)
            continue;
        else if (errno != EAGAIN && errno != EWOULDBLOCK)
            rerr = errno;
        break;
    }
    /* What came first counts: an ERROR before the close, say. */
    struct frame f;
    size_t used = 0;
    const char *err;
    enum frame_status st = FRAME_NEED_MORE;
    if (buf_used(&a->in)) {
        st = frame_parse(&a->parser, buf_head(&a->in), buf_used(&a->in), &used, &f, &err);
        buf_consume(&a->in, used);
    }
    if (st == FRAME_ERROR)
        return attempt_fail(c, !strcmp(err, "out of memory") ? STOMPC_ENOMEM : STOMPC_EPROTO,
                            "connect to %s: bad frame: %s", hostport(b), err);
    if (st == FRAME_OK) {
        int rc = handshake_reply(c, a, hostport(b), &f);
        frame_free(&f);
        return rc < 0 ? rc : 1;
    }
    if (eof)
        return attempt_fail(c, STOMPC_ECONNECT, "connect to %s: closed by the broker before CONNECTED", hostport(b));
    if (rerr)
        return attempt_fail(c, STOMPC_ECONNECT, "connect to %s: %s", hostport(b), terr[0] ? terr : strerror(rerr));
    return 0;
}

int net_attempt_io(struct stompc *c, size_t i, uint32_t events, int64_t now, bool *costly)
{
    struct attempt *a = &c->bs[i].a;
    const struct uri_broker *b = &c->uri.brokers[i];
    *costly = a->handshake;
    int rc;
    if (events) {
        rc = attempt_ready(c, i, events, costly);
    } else if (now >= a->deadline) {
        rc = a->ssl && !a->tls_up
                 ? attempt_fail(c, STOMPC_ECONNECT, "connect to %s: TLS handshake not finished in time", hostport(b))
             : a->handshake
                 ? attempt_fail(c, STOMPC_ECONNECT, "connect to %s: no CONNECTED frame in time", hostport(b))
                 : attempt_fail(c, STOMPC_ECONNECT, "connect to %s: %s", hostport(b), strerror(ETIMEDOUT));
    } else {
        rc = 0;
    }
    if (rc < 0)
        attempt_release(a);
    return rc;
}

void net_attempt_close(struct stompc *c, size_t i, bool polite)
{
    struct attempt *a = &c->bs[i].a;
    if (a->fd >= 0 && polite && a->handshake && (!a->ssl || a->tls_up) && buf_used(&a->out) == 0) {
        /* The broker read (or will read) our CONNECT: say goodbye, and
         * read what it sent so the close is a FIN, not a reset. */
        static const char bye[] = "DISCONNECT\n\n";
        bool wr;
        char why[64];
        (void)attempt_send(a, bye, sizeof bye, &wr, why, sizeof why); /* with the NUL */
        char sink[4096];
        for (int k = 0; k < 4 && (a->ssl ? ctls_read(a->ssl, sink, sizeof sink, why, sizeof why)
                                         : recv(a->fd, sink, sizeof sink, MSG_DONTWAIT)) > 0; k++)
            ;
        ctls_close(a->ssl, true);
        a->ssl = NULL;
    }
    attempt_release(a);
}

void net_attempt_adopt(struct stompc *c, size_t i)
{
    struct attempt *a = &c->bs[i].a;
    net_close(c);
    c->fd = a->fd;
    c->ev = a->ev;
    c->broker = i;
    c->version = a->version;
    c->parser = a->parser;
    c->parser.version = a->version;
    c->hb_tx_ms = a->hb_tx_ms;
    c->hb_rx_ms = a->hb_rx_ms;
    c->in = a->in; /* whatever followed CONNECTED */
    memset(&a->in, 0, sizeof a->in);
    c->ssl = a->ssl; /* (TLS may hold more of it decoded: net_timers reads it) */
    a->ssl = NULL;
    a->tls_up = false;
    a->fd = -1;
    a->ev = 0;
    int64_t now = client_now();
    c->last_rx = c->last_tx = now;
    /* the same socket, now the session's: its wake-ups say so */
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_SESSION};
    if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->ev = EPOLLIN;
    char *members = a->members;
    a->members = NULL;
    attempt_release(a);
    a->members = members; /* for failover.c to learn from, then free */
}

int net_dispatch(struct stompc *c, uint64_t tag, uint32_t events, int64_t now)
{
    if (tag == TAG_INTR) {
        uint64_t v;
        ssize_t n = read(c->intr_fd, &v, sizeof v); /* woken: the wait looks at c->interrupted */
        (void)n;
        return 0;
    }
    if (tag == TAG_SESSION) {
        if (c->state != CS_CONNECTED || c->fd < 0)
            return 0; /* a wake-up for a connection closed meanwhile */
        int rc = net_io(c, events);
        return rc < 0 && c->state != CS_LOST ? rc : 0;
    }
    if (tag >= c->uri.nbrokers || c->bs[tag].a.fd < 0)
        return 0;
    return failover_attempt_event(c, (size_t)tag, events, now);
}

bool net_any_open(const struct stompc *c)
{
    if (c->fd >= 0)
        return true;
    for (size_t i = 0; c->bs && i < c->uri.nbrokers; i++)
        if (c->bs[i].a.fd >= 0)
            return true;
    return false;
}

int64_t net_next_timer(const struct stompc *c)
{
    int64_t next = -1;
    if (c->state == CS_CONNECTED && c->fd >= 0 && ctls_pending(c->ssl))
        return client_now();
    if (c->state == CS_CONNECTED && c->fd >= 0) {
        if (c->hb_rx_ms)
            next = c->last_rx + c->hb_rx_ms * 3 / 2;
        if (c->hb_tx_ms && buf_used(&c->out) == 0) {
            int64_t due = c->last_tx + c->hb_tx_ms;
            if (next < 0 || due < next)
                next = due;
        }
    }
    return next;
}
