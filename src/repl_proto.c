/* Replication peers: a stream carrying the length-prefixed frames of
 * repl_codec.c, shared by the master's sessions and the slave's link. */
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

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* ------------------------------------------------------------ peers */

#define OUT_HIGH_WATER (1u << 20)

static size_t peer_input(struct stream *s, const char *data, size_t len)
{
    struct repl_peer *p = container_of(s, struct repl_peer, st);
    size_t off = 0;
    /* a paused peer (a slave whose store is behind) keeps the rest */
    while (s->state == STREAM_OPEN && s->paused == 0) {
        uint8_t type;
        struct repl_reader r;
        size_t flen = 0;
        int got = repl_frame_split(data + off, len - off, &type, &r, &flen);
        if (flen > (size_t)p->max_frame + 4) {
            /* before the handshake is done, only small frames */
            char why[160];
            const uint8_t *b = (const uint8_t *)data + off;
            if (b[0] >= 0x14 && b[0] <= 0x17 && b[1] == 0x03)
                /* a TLS record (a ClientHello, an alert) read as a length */
                snprintf(why, sizeof why, "the peer speaks TLS and this node does not: store.tls differs between "
                         "them");
            else
                snprintf(why, sizeof why, "protocol error: a frame of %zu bytes before authentication", flen - 4);
            stream_close(s, why);
            return len;
        }
        if (got == 0)
            break;
        if (got < 0) {
            char why[96];
            snprintf(why, sizeof why, "protocol error: frame length %zu", flen - 4);
            stream_close(s, why);
            return len;
        }
        int rc = p->ops->frame(p, type, &r);
        if (s->state != STREAM_OPEN)
            return len;
        if (rc) {
            stream_close(s, "protocol error");
            return len;
        }
        off += flen;
    }
    return off;
}

static void peer_drained(struct stream *s)
{
    struct repl_peer *p = container_of(s, struct repl_peer, st);
    if (p->ops->writable)
        p->ops->writable(p);
}

static void peer_closed(struct stream *s, const char *why)
{
    struct repl_peer *p = container_of(s, struct repl_peer, st);
    if (p->ops->closed)
        p->ops->closed(p, why);
}

static void peer_release(struct stream *s)
{
    free(container_of(s, struct repl_peer, st));
}

static const struct stream_ops peer_stream_ops = {
    .kind = "repl",
    .input = peer_input,
    .drained = peer_drained,
    .closed = peer_closed,
    .release = peer_release,
};

struct repl_peer *repl_peer_new(int fd, const char *name, bool connecting, const struct repl_peer_ops *ops,
                                void *owner)
{
    struct repl_peer *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    p->ops = ops;
    p->owner = owner;
    p->max_frame = REPL_MAX_UNAUTH_FRAME;
    p->st.out_limit = OUT_HIGH_WATER;
    p->st.low_water = OUT_HIGH_WATER / 4;
    stream_init(&p->st, fd, name, &peer_stream_ops, connecting);
    return p;
}

size_t repl_peer_pending(const struct repl_peer *p)
{
    return stream_pending(&p->st);
}

void repl_peer_flush(struct repl_peer *p)
{
    stream_flush(&p->st);
}

void repl_peer_pong(struct repl_peer *p, uint64_t t)
{
    if (stream_pending(&p->st) >= OUT_HIGH_WATER)
        return;
    size_t f = repl_frame_begin(repl_peer_out(p), R_PONG);
    repl_put_u64(repl_peer_out(p), t);
    repl_frame_end(repl_peer_out(p), f);
    stream_flush(&p->st);
}

void repl_peer_close(struct repl_peer *p, const char *why)
{
    stream_close(&p->st, why);
}

void repl_peer_free(struct repl_peer *p)
{
    if (!p)
        return;
    static const struct repl_peer_ops quiet = {0};
    p->ops = &quiet;
    stream_close(&p->st, "let go");
}
