/* The replication wire: frame codec with bounds-checked reads, and the
 * peer object (non-blocking socket, input framing, output buffer) that
 * the master's sessions and the slave's link share. */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stompd/log.h"
#include "stompd/repl.h"
#include "stompd/server.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define OUT_LOW_WATER (256u << 10)

static const char *const type_names[] = {
    "?", "HELLO", "WELCOME", "REFUSE", "SNAPSHOT_BEGIN", "SNAPSHOT_CHUNK", "SNAPSHOT_END",
    "ENTRIES", "ACK", "PING", "PONG",
};

const char *repl_type_name(uint8_t t)
{
    return t < sizeof type_names / sizeof type_names[0] ? type_names[t] : "?";
}

/* ------------------------------------------------------------ codec */

/* A read that does not fit sets bad and moves nothing; once bad, every
 * read returns 0 (or "") and moves nothing, so the fields read after a
 * failure never come from the wrong offset. */
uint8_t repl_get_u8(struct repl_reader *r)
{
    if (r->bad || r->left < 1) {
        r->bad = true;
        return 0;
    }
    r->left--;
    return (uint8_t)*r->p++;
}

uint32_t repl_get_u32(struct repl_reader *r)
{
    if (r->bad || r->left < 4) {
        r->bad = true;
        return 0;
    }
    const uint8_t *u = (const uint8_t *)r->p;
    r->p += 4;
    r->left -= 4;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

uint64_t repl_get_u64(struct repl_reader *r)
{
    if (r->bad || r->left < 8) {
        r->bad = true;
        return 0;
    }
    uint64_t hi = repl_get_u32(r);
    return hi << 32 | repl_get_u32(r);
}

const char *repl_get_str(struct repl_reader *r, uint32_t *len)
{
    *len = 0;
    if (r->bad || r->left < 4) {
        r->bad = true;
        return "";
    }
    const uint8_t *u = (const uint8_t *)r->p;
    uint32_t n = (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
    if (n > r->left - 4) {
        r->bad = true;
        return "";
    }
    const char *s = r->p + 4;
    r->p += 4 + (size_t)n;
    r->left -= 4 + (size_t)n;
    *len = n;
    return s;
}

void repl_put_u8(struct buf *b, uint8_t v)
{
    buf_putc(b, (char)v);
}

void repl_put_u32(struct buf *b, uint32_t v)
{
    char x[4] = {(char)(v >> 24), (char)(v >> 16), (char)(v >> 8), (char)v};
    buf_append(b, x, 4);
}

void repl_put_u64(struct buf *b, uint64_t v)
{
    repl_put_u32(b, (uint32_t)(v >> 32));
    repl_put_u32(b, (uint32_t)v);
}

void repl_put_str(struct buf *b, const char *s, size_t len)
{
    repl_put_u32(b, (uint32_t)len);
    buf_append(b, s, len);
}

size_t repl_frame_begin(struct buf *b, uint8_t type)
{
    size_t start = b->len;
    repl_put_u32(b, 0);
    repl_put_u8(b, type);
    return start;
}

void repl_frame_end(struct buf *b, size_t start)
{
    uint32_t len = (uint32_t)(b->len - start - 4);
    char *p = b->data + start;
    p[0] = (char)(len >> 24);
    p[1] = (char)(len >> 16);
    p[2] = (char)(len >> 8);
    p[3] = (char)len;
}

/* ------------------------------------------------------------ peers */

static struct repl_peer *dead_peers;

static void peer_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void peer_write_cb(struct ev_loop *loop, ev_io *w, int revents);

struct repl_peer *repl_peer_new(int fd, const char *name, bool connecting, const struct repl_peer_ops *ops,
                                void *owner)
{
    struct repl_peer *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    p->fd = fd;
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ops = ops;
    p->owner = owner;
    p->connecting = connecting;
    p->last_rx = ev_now(srv.loop);
    ev_io_init(&p->rd, peer_read_cb, fd, EV_READ);
    ev_io_init(&p->wr, peer_write_cb, fd, EV_WRITE);
    ev_io_start(srv.loop, &p->rd);
    if (connecting) {
        ev_io_start(srv.loop, &p->wr);
        p->writing = true;
    }
    return p;
}

size_t repl_peer_pending(const struct repl_peer *p)
{
    return buf_used(&p->out);
}

void repl_peer_close(struct repl_peer *p, const char *why)
{
    if (p->dead)
        return;
    p->dead = true;
    ev_io_stop(srv.loop, &p->rd);
    ev_io_stop(srv.loop, &p->wr);
    close(p->fd);
    p->fd = -1;
    buf_free(&p->in);
    buf_free(&p->out);
    if (p->ops->closed)
        p->ops->closed(p, why);
}

void repl_peer_free(struct repl_peer *p)
{
    if (!p)
        return;
    if (!p->dead) {
        const struct repl_peer_ops *ops = p->ops;
        static const struct repl_peer_ops quiet = {0};
        p->ops = &quiet;
        repl_peer_close(p, "freed");
        p->ops = ops;
    }
    p->next_dead = dead_peers;
    dead_peers = p;
}

void repl_peer_gc(void)
{
    while (dead_peers) {
        struct repl_peer *p = dead_peers;
        dead_peers = p->next_dead;
        free(p);
    }
}

void repl_peer_flush(struct repl_peer *p)
{
    if (p->dead || p->connecting)
        return;
    while (buf_used(&p->out) > 0) {
        ssize_t n = send(p->fd, buf_head(&p->out), buf_used(&p->out), MSG_NOSIGNAL);
        if (n > 0) {
            buf_consume(&p->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!p->writing) {
                ev_io_start(srv.loop, &p->wr);
                p->writing = true;
            }
            return;
        }
        char why[128];
        snprintf(why, sizeof why, "write failed: %s", n < 0 ? strerror(errno) : "closed");
        repl_peer_close(p, why);
        return;
    }
    if (p->writing) {
        ev_io_stop(srv.loop, &p->wr);
        p->writing = false;
    }
}

static void peer_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct repl_peer *p = container_of(w, struct repl_peer, wr);
    if (p->connecting) {
        int err = 0;
        socklen_t sl = sizeof err;
        getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
        if (err) {
            char why[128];
            snprintf(why, sizeof why, "connect failed: %s", strerror(err));
            repl_peer_close(p, why);
            return;
        }
        p->connecting = false;
    }
    repl_peer_flush(p);
    if (!p->dead && buf_used(&p->out) < OUT_LOW_WATER && p->ops->writable)
        p->ops->writable(p);
}

static void peer_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct repl_peer *p = container_of(w, struct repl_peer, rd);
    buf_reserve(&p->in, 65536);
    ssize_t n = recv(p->fd, p->in.data + p->in.len, p->in.cap - p->in.len, 0);
    if (n == 0) {
        repl_peer_close(p, "closed by peer");
        return;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        char why[128];
        snprintf(why, sizeof why, "read failed: %s", strerror(errno));
        repl_peer_close(p, why);
        return;
    }
    p->in.len += (size_t)n;
    p->last_rx = ev_now(loop);
    while (!p->dead && buf_used(&p->in) >= 5) {
        const uint8_t *h = (const uint8_t *)buf_head(&p->in);
        uint32_t len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
        if (len == 0 || len > REPL_MAX_FRAME) {
            char why[96];
            snprintf(why, sizeof why, "protocol error: frame length %u", len);
            repl_peer_close(p, why);
            return;
        }
        if (buf_used(&p->in) < 4 + (size_t)len)
            break;
        uint8_t type = h[4];
        struct repl_reader r = {buf_head(&p->in) + 5, len - 1, false};
        int rc = p->ops->frame(p, type, &r);
        if (p->dead)
            return;
        if (rc) {
            repl_peer_close(p, "protocol error");
            return;
        }
        buf_consume(&p->in, 4 + (size_t)len);
    }
}
