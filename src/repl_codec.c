/* The replication wire format: frames of u32 length | u8 type | payload,
 * integers big-endian, strings u32 length + bytes; bounds-checked reads
 * that mark the reader bad instead of reading past the frame. Pure: no
 * I/O (repl_proto.c carries the frames over streams). */
#include "config.h"

#include <stdio.h>

#include "stompd/buf.h"
#include "stompd/repl.h"

static const char *const type_names[] = {
    "?", "HELLO", "WELCOME", "REFUSE", "SNAPSHOT_BEGIN", "SNAPSHOT_CHUNK", "SNAPSHOT_END",
    "ENTRIES", "ACK", "PING", "PONG", "CHALLENGE", "PROOF",
};

const char *repl_type_name(uint8_t t)
{
    return t < sizeof type_names / sizeof type_names[0] ? type_names[t] : "?";
}

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
    size_t start = buf_mark(b);
    repl_put_u32(b, 0);
    repl_put_u8(b, type);
    return start;
}

void repl_put_u32_at(struct buf *b, size_t at, uint32_t v)
{
    char *p = buf_at(b, at);
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

void repl_frame_end(struct buf *b, size_t start)
{
    repl_put_u32_at(b, start, (uint32_t)(buf_mark(b) - start - 4));
}


int repl_frame_split(const char *data, size_t len, uint8_t *type, struct repl_reader *r, size_t *frame_len)
{
    if (len < 5)
        return 0;
    const uint8_t *h = (const uint8_t *)data;
    uint32_t flen = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    *frame_len = 4 + (size_t)flen;
    if (flen == 0 || flen > REPL_MAX_FRAME)
        return -1;
    if (len < 4 + (size_t)flen)
        return 0;
    *type = h[4];
    *r = (struct repl_reader){data + 5, flen - 1, false};
    return 1;
}
