/* A growable byte buffer with a read offset: appended at the end,
 * consumed from the front, compacted only when that saves a realloc. */
#ifndef STOMPD_BUF_H
#define STOMPD_BUF_H

#include <stddef.h>
#include <string.h>

struct buf {
    char *data;
    size_t off;  /* first unconsumed byte */
    size_t len;  /* end of valid data */
    size_t cap;
};

static inline size_t buf_used(const struct buf *b) { return b->len - b->off; }
static inline char *buf_head(const struct buf *b) { return b->data + b->off; }

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_consume(struct buf *b, size_t n);
void buf_free(struct buf *b);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline void buf_append_str(struct buf *b, const char *s) { buf_append(b, s, strlen(s)); }
static inline void buf_putc(struct buf *b, char c)
{
    if (b->len == b->cap)
        buf_reserve(b, 1);
    b->data[b->len++] = c;
}

#endif
