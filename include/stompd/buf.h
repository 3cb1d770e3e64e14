/* A growable byte buffer with a read offset: appended at the end,
 * consumed from the front, compacted only when that saves a realloc. */
#ifndef STOMPD_BUF_H
#define STOMPD_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct buf {
    char *data;
    size_t off;  /* first unconsumed byte */
    size_t len;  /* end of valid data */
    size_t cap;
};

static inline size_t buf_used(const struct buf *b) { return b->len - b->off; }
static inline char *buf_head(const struct buf *b) { return b->data + b->off; }

/* A place in the unconsumed bytes that stays put while more is appended:
 * an append may slide the bytes to the front (buf_reserve), so an index
 * into data taken before it (b->len) is not one after it. Nothing may be
 * consumed between taking a mark and using it. */
static inline size_t buf_mark(const struct buf *b) { return b->len - b->off; }
static inline char *buf_at(const struct buf *b, size_t mark) { return b->data + b->off + mark; }
/* Drop what was appended since mark. */
static inline void buf_cut(struct buf *b, size_t mark) { b->len = b->off + mark; }

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_consume(struct buf *b, size_t n);
void buf_free(struct buf *b);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline void buf_append_str(struct buf *b, const char *s) { buf_append(b, s, strlen(s)); }

/* v in decimal into out (room for 21 bytes), NUL-terminated; returns its
 * length. snprintf's format machinery was 12% of the loop for the three
 * numbers of every MESSAGE. */
static inline size_t fmt_u64(char *out, uint64_t v)
{
    char t[20];
    size_t n = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = t[n - 1 - i];
    out[n] = '\0';
    return n;
}

static inline size_t fmt_i64(char *out, int64_t v)
{
    if (v >= 0)
        return fmt_u64(out, (uint64_t)v);
    out[0] = '-';
    return 1 + fmt_u64(out + 1, (uint64_t)0 - (uint64_t)v);
}
static inline void buf_putc(struct buf *b, char c)
{
    if (b->len == b->cap)
        buf_reserve(b, 1);
    b->data[b->len++] = c;
}

#endif
