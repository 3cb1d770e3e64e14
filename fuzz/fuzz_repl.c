/* libFuzzer harness: the replication wire codec (the repl_get_* readers).
 * The input is a byte stream as a peer would send it; it is cut into
 * frames by repl_frame_split, as repl_proto.c's read callback cuts them
 * (u32 length, u8 type, payload; a length of 0 or over REPL_MAX_FRAME ends
 * the stream), and each
 * frame is read field by field the way the master's (HELLO, ACK, PING) or
 * the slave's (WELCOME, REFUSE, SNAPSHOT_*, ENTRIES, PING) frame handler
 * reads it, ENTRIES' entries going through journal_decode as the slave's
 * do. Checked: no read outside the frame (ASan), a failed read sets bad
 * for good and moves nothing, and what was read whole writes back, with
 * repl_put_*, to exactly the bytes it was read from.
 *
 * Only the codec (repl_codec.c): the peer and session code around it
 * needs sockets. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/buf.h"
#include "stompd/journal.h"
#include "stompd/repl.h"

struct reading {
    struct repl_reader r;
    const char *start, *end;
    const char *good;        /* end of the last field read whole */
    struct buf echo;         /* what was read whole, written back */
};

static void check(const struct reading *x, const struct repl_reader *before)
{
    const struct repl_reader *r = &x->r;
    if (r->p < x->start || r->p + r->left != x->end)
        abort();
    if (before->bad && (!r->bad || r->p != before->p || r->left != before->left))
        abort(); /* bad is for good, and nothing moves after it */
}

static uint8_t u8(struct reading *x)
{
    struct repl_reader before = x->r;
    uint8_t v = repl_get_u8(&x->r);
    check(x, &before);
    if (!x->r.bad) {
        repl_put_u8(&x->echo, v);
        x->good = x->r.p;
    }
    else if (v)
        abort();
    return v;
}

static uint32_t u32(struct reading *x)
{
    struct repl_reader before = x->r;
    uint32_t v = repl_get_u32(&x->r);
    check(x, &before);
    if (!x->r.bad) {
        repl_put_u32(&x->echo, v);
        x->good = x->r.p;
    }
    else if (v)
        abort();
    return v;
}

static uint64_t u64(struct reading *x)
{
    struct repl_reader before = x->r;
    bool was_bad = before.bad;
    uint64_t v = repl_get_u64(&x->r);
    check(x, &before);
    if (!x->r.bad) {
        repl_put_u64(&x->echo, v);
        x->good = x->r.p;
    }
    else if (was_bad && v)
        abort();
    return v;
}

static const char *str(struct reading *x, uint32_t *len)
{
    struct repl_reader before = x->r;
    const char *s = repl_get_str(&x->r, len);
    check(x, &before);
    if (!x->r.bad) {
        if (s < x->start || s + *len > x->end)
            abort();
        repl_put_str(&x->echo, s, *len);
        x->good = x->r.p;
    } else if (*len) {
        abort();
    }
    return s;
}

/* The fields of each frame type, in the order the handlers read them. */
static void read_frame(uint8_t type, struct reading *x)
{
    uint32_t len;
    switch (type) {
    case R_HELLO: /* repl_master.c on_hello */
        u32(x);
        str(x, &len);
        str(x, &len);
        u64(x);
        u64(x);
        u64(x);
        u64(x);
        break;
    case R_WELCOME: /* repl_slave.c on_welcome */
        u64(x);
        str(x, &len);
        u8(x);
        u8(x);
        u64(x);
        str(x, &len);
        u64(x);
        break;
    case R_REFUSE: /* repl_slave.c link_frame: the kind byte is optional */
        str(x, &len);
        if (x->r.left)
            u8(x);
        break;
    case R_SNAPSHOT_BEGIN:
        u64(x);
        u64(x);
        break;
    case R_SNAPSHOT_CHUNK:
        u32(x);  /* the rest goes to the store as it is */
        break;
    case R_SNAPSHOT_END:
        u64(x);
        u64(x);
        u64(x);
        break;
    case R_ENTRIES: { /* repl_slave.c on_entries */
        u64(x);
        uint32_t n = u32(x);
        for (uint32_t i = 0; i < n && !x->r.bad; i++) {
            u8(x);
            const char *e = str(x, &len);
            struct journal_entry je;
            if (x->r.bad || journal_decode(e, len, &je) != 0)
                break;
            if (je.ops < e || je.ops + je.ops_len != e + len)
                abort();
            if (journal_checksum(e, len) == 0)
                abort();
        }
        break;
    }
    case R_ACK:
        u64(x);
        u64(x);
        break;
    case R_PING:
        u64(x);
        u64(x);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    size_t left = size;
    for (;;) {
        uint8_t type;
        struct repl_reader fr;
        size_t flen = 0;
        int got = repl_frame_split(p, left, &type, &fr, &flen);
        if (got < 0 && flen - 4 != 0 && flen - 4 <= REPL_MAX_FRAME)
            abort(); /* refused a length a frame may have */
        if (got <= 0)
            break;
        const uint8_t *h = (const uint8_t *)p;
        uint32_t len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
        /* the frame is exactly its length, and the reader is its payload */
        if (flen != 4 + (size_t)len || flen > left || type != h[4] || fr.p != p + 5 || fr.left != len - 1 || fr.bad)
            abort();
        struct reading x = {.r = fr, .start = p + 5, .end = p + 4 + len, .good = p + 5};
        read_frame(h[4], &x);
        /* what was read whole is the frame's bytes, re-encoded */
        size_t read = (size_t)(x.good - x.start);
        if (x.echo.len != read || (read && memcmp(x.echo.data, x.start, read)))
            abort();
        /* and a frame built from it has the same header */
        struct buf out = {0};
        size_t f = repl_frame_begin(&out, h[4]);
        buf_append(&out, x.echo.data, x.echo.len);
        repl_frame_end(&out, f);
        const uint8_t *o = (const uint8_t *)out.data;
        uint32_t olen = (uint32_t)o[0] << 24 | (uint32_t)o[1] << 16 | (uint32_t)o[2] << 8 | o[3];
        if (out.len != 5 + x.echo.len || olen != x.echo.len + 1 || o[4] != h[4])
            abort();
        buf_free(&out);
        buf_free(&x.echo);
        p += 4 + len;
        left -= 4 + len;
    }
    return 0;
}
