/* libstompc's socket: TCP connect and the CONNECT/CONNECTED handshake, and
 * the one place that waits (poll) on the socket, reads and parses frames,
 * writes the output buffer and keeps heart-beats both ways. A non-blocking
 * socket, so a write the broker does not take never stops us reading. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"

#define READ_CHUNK 65536
#define READ_ROUNDS 16         /* bound one pump's reading so timers still run */

static const char *broker_text(const struct stompc *c)
{
    return c->uri.brokers[c->broker].text;
}

/* "host:port" (the text after tcp://), for "connect to ..." messages. */
static const char *hostport(const struct uri_broker *b)
{
    return b->text + strlen("tcp://");
}

static void parser_setup(struct stompc *c)
{
    struct frame_limits lim = {
        .max_frame = c->max_frame,
        .max_headers = 10000,
        .max_header_line = c->max_frame,
        .max_command_line = 256,
    };
    frame_parser_init(&c->parser, &lim);
}

void net_close(struct stompc *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    buf_free(&c->in);
    buf_free(&c->out);
    /* The counters go on across connections (stompc.c compares them
     * around a loss); unsent bytes are dropped with the buffer. */
    c->out_queued = c->out_written;
    c->hb_rx_ms = c->hb_tx_ms = 0;
}

/* TCP connection to one broker; c->fd set on success. */
static int tcp_connect(struct stompc *c, const struct uri_broker *b, int64_t deadline)
{
    char port[16];
    snprintf(port, sizeof port, "%d", b->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(b->host, port, &hints, &res);
    if (gai != 0)
        return client_fail(c, STOMPC_ECONNECT, "connect to %s: %s", hostport(b),
                           gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
    int err = ECONNREFUSED;
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        err = errno;
        if (err == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int n;
            do
                n = poll(&p, 1, client_left(deadline));
            while (n < 0 && errno == EINTR);
            if (n == 0) {
                err = ETIMEDOUT;
            } else {
                socklen_t len = sizeof err;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                    err = errno;
                if (err == 0)
                    break;
            }
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return client_fail(c, STOMPC_ECONNECT, "connect to %s: %s", hostport(b), strerror(err));
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    return 0;
}

static void put_connect_header(struct buf *b, const char *name, const char *value)
{
    /* CONNECT is never escaped; stompc_connect refused values that need it. */
    frame_write_header_str(b, STOMP_10, false, name, value);
}

static void put_connect(struct stompc *c, const struct uri_broker *b)
{
    char hb[48];
    frame_write_command(&c->out, "CONNECT");
    put_connect_header(&c->out, "accept-version", c->accept_version);
    put_connect_header(&c->out, "host", c->host ? c->host : b->host);
    if (c->login)
        put_connect_header(&c->out, "login", c->login);
    if (c->passcode)
        put_connect_header(&c->out, "passcode", c->passcode);
    if (c->client_id)
        put_connect_header(&c->out, "client-id", c->client_id);
    snprintf(hb, sizeof hb, "%d,%d", c->hb_cx, c->hb_cy);
    put_connect_header(&c->out, "heart-beat", hb);
    for (size_t i = 0; i < c->ncheaders; i++)
        put_connect_header(&c->out, c->cheaders[i].name, c->cheaders[i].value);
    frame_write_body(&c->out, NULL, 0);
    c->out_queued += buf_used(&c->out);
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

static int handshake_reply(struct stompc *c, struct frame *f)
{
    const char *hp = hostport(&c->uri.brokers[c->broker]);
    if (f->cmd == CMD_ERROR) {
        char why[600];
        net_describe_error(f, why, sizeof why);
        return client_fail(c, STOMPC_EBROKER, "connect to %s: %s", hp, why);
    }
    if (f->cmd != CMD_CONNECTED)
        return client_fail(c, STOMPC_EPROTO, "connect to %s: expected CONNECTED, got %s", hp,
                           f->command);
    const char *v = frame_get(f, "version");
    if (!v)
        v = "1.0"; /* a 1.0 broker does not say */
    if (strcmp(v, "1.0") && strcmp(v, "1.1") && strcmp(v, "1.2"))
        return client_fail(c, STOMPC_EPROTO, "connect to %s: unknown version '%.32s'", hp, v);
    if (!offered(c, v))
        return client_fail(c, STOMPC_EPROTO, "connect to %s: broker chose version '%.32s', not one of %s",
                           hp, v, c->accept_version);
    c->version = !strcmp(v, "1.2") ? STOMP_12 : !strcmp(v, "1.1") ? STOMP_11 : STOMP_10;
    c->parser.version = c->version;
    long sx = 0, sy = 0;
    const char *hb = frame_get(f, "heart-beat");
    if (hb && c->version >= STOMP_11) {
        char *end;
        sx = strtol(hb, &end, 10);
        if (end == hb || *end != ',' || sx < 0)
            return client_fail(c, STOMPC_EPROTO, "connect to %s: bad heart-beat '%.32s'", hp, hb);
        const char *q = end + 1;
        sy = strtol(q, &end, 10);
        if (end == q || *end || sy < 0)
            return client_fail(c, STOMPC_EPROTO, "connect to %s: bad heart-beat '%.32s'", hp, hb);
    }
    /* The specification's rule: max of what one side offers and the other
     * wants, nothing when either says 0. */
    c->hb_tx_ms = (c->hb_cx && sy) ? (c->hb_cx > sy ? c->hb_cx : sy) : 0;
    c->hb_rx_ms = (sx && c->hb_cy) ? (sx > c->hb_cy ? sx : c->hb_cy) : 0;
    return 0;
}

/* Read what the socket has (bounded). > 0 bytes, 0 nothing, < 0 lost. */
static int read_some(struct stompc *c)
{
    size_t total = 0;
    for (int i = 0; i < READ_ROUNDS; i++) {
        buf_reserve(&c->in, READ_CHUNK);
        ssize_t n = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, MSG_DONTWAIT);
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
        if (st == FRAME_ERROR)
            return client_lost(c, STOMPC_EPROTO, "bad frame from %s: %s", broker_text(c), err);
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
    while (buf_used(&c->out)) {
        ssize_t n = send(c->fd, buf_head(&c->out), buf_used(&c->out), MSG_NOSIGNAL | MSG_DONTWAIT);
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

/* Heart-beat duties; returns ms until the next one is due (INT32_MAX: none)
 * or < 0 when the broker has been silent too long. */
static int64_t heartbeats(struct stompc *c, int *rc)
{
    int64_t now = client_now();
    int64_t next = INT32_MAX;
    *rc = 0;
    if (c->hb_rx_ms) {
        int64_t limit = c->last_rx + c->hb_rx_ms * 3 / 2; /* 1.5x grace */
        if (now >= limit) {
            /* Data may be waiting unread if the caller was away: look first. */
            int r = read_some(c);
            if (r < 0) {
                *rc = r;
                return -1;
            }
            if (r == 0) {
                *rc = client_lost(c, STOMPC_EIO, "no heart-beat from %s for %lld ms", broker_text(c),
                                  (long long)(now - c->last_rx));
                return -1;
            }
            limit = c->last_rx + c->hb_rx_ms * 3 / 2;
        }
        if (limit - now < next)
            next = limit - now;
    }
    if (c->hb_tx_ms) {
        int64_t due = c->last_tx + c->hb_tx_ms;
        if (now >= due && buf_used(&c->out) == 0) {
            buf_putc(&c->out, '\n');
            c->out_queued++;
            int r = write_some(c);
            if (r < 0) {
                *rc = r;
                return -1;
            }
            due = now + c->hb_tx_ms;
        }
        if (due - now < next)
            next = due - now;
    }
    return next < 0 ? 0 : next;
}

int net_pump(struct stompc *c, int64_t deadline)
{
    /* Frames already buffered go first (read along with an earlier one). */
    int rc = process_input(c);
    if (rc != 0)
        return rc < 0 ? rc : 1;
    for (;;) {
        int hrc;
        int64_t hb = heartbeats(c, &hrc);
        if (hrc < 0)
            return hrc;
        if (buf_used(&c->in)) {
            /* heartbeats() may have read */
            rc = process_input(c);
            if (rc != 0)
                return rc < 0 ? rc : 1;
        }
        int wait = client_left(deadline);
        bool capped = false;
        if (hb < INT32_MAX && (wait < 0 || hb < wait)) {
            wait = (int)hb;
            capped = true;
        }
        struct pollfd p = {.fd = c->fd, .events = POLLIN | (buf_used(&c->out) ? POLLOUT : 0)};
        int n = poll(&p, 1, wait);
        if (n < 0) {
            if (errno == EINTR)
                return 1; /* let the caller look at its own state */
            return client_lost(c, STOMPC_EIO, "poll: %s", strerror(errno));
        }
        if (n > 0) {
            if (p.revents & POLLOUT) {
                rc = write_some(c);
                if (rc < 0)
                    return rc;
            }
            if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
                rc = read_some(c);
                if (rc < 0)
                    return rc;
                rc = process_input(c);
                if (rc < 0)
                    return rc;
                return 1;
            }
            continue;
        }
        if (!capped)
            return 0;
        if (deadline >= 0 && client_now() >= deadline)
            return 0;
    }
}

int net_flush(struct stompc *c)
{
    for (;;) {
        int rc = write_some(c);
        if (rc < 0)
            return rc;
        if (buf_used(&c->out) == 0)
            return 0;
        /* The broker is not taking our bytes: keep reading (its RECEIPTs,
         * MESSAGEs, heart-beats) so neither side waits on the other. */
        int hrc;
        int64_t hb = heartbeats(c, &hrc);
        if (hrc < 0)
            return hrc;
        struct pollfd p = {.fd = c->fd, .events = POLLIN | POLLOUT};
        int n = poll(&p, 1, hb >= INT32_MAX ? -1 : (int)hb);
        if (n < 0 && errno != EINTR)
            return client_lost(c, STOMPC_EIO, "poll: %s", strerror(errno));
        if (n > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) && !(p.revents & POLLOUT)) {
            rc = read_some(c);
            if (rc < 0)
                return rc;
            rc = process_input(c);
            if (rc < 0)
                return rc;
        }
    }
}

void net_put(struct stompc *c, const struct ofr *o, bool with_receipt)
{
    bool esc = frame_cmd_escapes(o->cmd);
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
}

int net_open(struct stompc *c, size_t broker, int64_t deadline)
{
    const struct uri_broker *b = &c->uri.brokers[broker];
    net_close(c);
    c->broker = broker;
    c->version = STOMP_10;
    parser_setup(c);
    int rc = tcp_connect(c, b, deadline);
    if (rc)
        return rc;
    put_connect(c, b);
    /* The handshake has its own small loop: client_lost() and the frame
     * handlers belong to an established session. */
    int64_t now = client_now();
    c->last_rx = c->last_tx = now;
    while (buf_used(&c->out)) {
        ssize_t n = send(c->fd, buf_head(&c->out), buf_used(&c->out), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            c->out_written += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = c->fd, .events = POLLOUT};
            if (poll(&p, 1, client_left(deadline)) == 0) {
                net_close(c);
                return client_fail(c, STOMPC_ECONNECT, "connect to %s: timed out sending CONNECT", hostport(b));
            }
            continue;
        }
        int e = errno;
        net_close(c);
        return client_fail(c, STOMPC_ECONNECT, "connect to %s: %s", hostport(b), strerror(e));
    }
    for (;;) {
        struct frame f;
        size_t used = 0;
        const char *err;
        enum frame_status st = FRAME_NEED_MORE;
        if (buf_used(&c->in)) {
            st = frame_parse(&c->parser, buf_head(&c->in), buf_used(&c->in), &used, &f, &err);
            buf_consume(&c->in, used);
        }
        if (st == FRAME_ERROR) {
            net_close(c);
            return client_fail(c, STOMPC_EPROTO, "connect to %s: bad frame: %s", hostport(b), err);
        }
        if (st == FRAME_OK) {
            rc = handshake_reply(c, &f);
            frame_free(&f);
            if (rc) {
                net_close(c);
                return rc;
            }
            now = client_now();
            c->last_rx = c->last_tx = now;
            return 0;
        }
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int n = poll(&p, 1, client_left(deadline));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            net_close(c);
            return client_fail(c, STOMPC_ECONNECT, "connect to %s: no CONNECTED frame in time", hostport(b));
        }
        buf_reserve(&c->in, READ_CHUNK);
        ssize_t r = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, MSG_DONTWAIT);
        if (r > 0) {
            c->in.len += (size_t)r;
            continue;
        }
        if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        int e = errno;
        net_close(c);
        if (r == 0)
            return client_fail(c, STOMPC_ECONNECT, "connect to %s: closed by the broker before CONNECTED",
                               hostport(b));
        return client_fail(c, STOMPC_ECONNECT, "connect to %s: %s", hostport(b), strerror(e));
    }
}
