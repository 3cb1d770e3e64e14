/* libFuzzer harness: the STOMP frame parser. The same bytes are parsed as
 * one buffer, one byte at a time, and in chunks the input chooses, the way
 * a connection feeds them (keep what is not consumed, append, parse until
 * NEED_MORE); every way must give the same frames, the same error after
 * the same frames, and the same receipt-id for that error. A difference
 * aborts (libFuzzer reports it as a crash).
 *
 * Input: byte 0 picks the STOMP version and the limits, byte 1 seeds the
 * chunk sizes, the rest is the stream. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/buf.h"
#include "stompd/frame.h"

/* What a parse produced, flattened so two runs compare with memcmp. */
struct outcome {
    struct buf frames;  /* per frame: cmd, command, headers (name, value), body */
    uint32_t nframes;
    const char *err;
    char *receipt;
    size_t consumed;    /* bytes dropped by the parser, frames included */
};

static void put(struct buf *b, const void *p, size_t n)
{
    uint32_t len = (uint32_t)n;
    buf_append(b, (const char *)&len, sizeof len);
    buf_append(b, p, n);
}

static void record(struct outcome *o, const struct frame *f)
{
    uint32_t cmd = (uint32_t)f->cmd;
    buf_append(&o->frames, (const char *)&cmd, sizeof cmd);
    put(&o->frames, f->command, strlen(f->command));
    put(&o->frames, &f->nheaders, sizeof f->nheaders);
    for (uint32_t i = 0; i < f->nheaders; i++) {
        const struct stomp_header *h = &f->headers[i];
        /* the lengths the parser gives must be the strings' */
        if (strlen(h->name) > h->name_len || h->value[h->value_len] != '\0' || h->name[h->name_len] != '\0')
            abort();
        put(&o->frames, h->name, h->name_len);
        put(&o->frames, h->value, h->value_len);
    }
    if (f->body[f->body_len] != '\0')
        abort();
    put(&o->frames, f->body, f->body_len);
    o->nframes++;
}

/* Feed data in pieces: piece(i) is the size of the i-th one (0 = the rest). */
static void run(const char *data, size_t len, enum stomp_version v, const struct frame_limits *lim,
                size_t (*piece)(void *, size_t), void *arg, struct outcome *o)
{
    memset(o, 0, sizeof *o);
    struct frame_parser p;
    frame_parser_init(&p, lim);
    p.version = v;
    char *buf = malloc(len + 1);
    if (!buf)
        abort();
    size_t have = 0, pos = 0, start = 0;
    for (size_t i = 0; pos < len || i == 0; i++) {
        size_t n = piece(arg, i);
        if (n == 0 || n > len - pos)
            n = len - pos;
        memcpy(buf + have, data + pos, n);
        have += n;
        pos += n;
        for (;;) {
            size_t used;
            struct frame f;
            const char *err;
            enum frame_status st = frame_parse(&p, buf + start, have - start, &used, &f, &err);
            if (used > have - start)
                abort();
            start += used;
            o->consumed += used;
            if (st == FRAME_NEED_MORE)
                break;
            if (st == FRAME_ERROR) {
                if (!err)
                    abort();
                o->err = err;
                o->receipt = frame_error_receipt(&p, buf + start);
                free(buf);
                return;
            }
            if (!err)
                record(o, &f);
            else
                abort(); /* FRAME_OK with an error set */
            frame_free(&f);
        }
        if (pos == len)
            break;
    }
    free(buf);
}

static size_t whole(void *arg, size_t i)
{
    return 0;
}

static size_t one_byte(void *arg, size_t i)
{
    return 1;
}

static size_t chosen(void *arg, size_t i)
{
    uint32_t *x = arg;
    *x = *x * 1103515245u + 12345u;
    return 1 + (*x >> 16) % 97;
}

static void same(const struct outcome *a, const struct outcome *b)
{
    bool eq = a->nframes == b->nframes && a->frames.len == b->frames.len &&
              (!a->frames.len || !memcmp(a->frames.data, b->frames.data, a->frames.len)) &&
              (a->err == b->err || (a->err && b->err && !strcmp(a->err, b->err))) &&
              (a->receipt == b->receipt || (a->receipt && b->receipt && !strcmp(a->receipt, b->receipt)));
    /* without an error every whole frame was consumed the same way; with
     * one, where the parser noticed may differ only in leading EOLs */
    if (eq && !a->err && a->consumed != b->consumed)
        eq = false;
    if (!eq) {
        fprintf(stderr, "parses differ: %u vs %u frames, error '%s' vs '%s', receipt '%s' vs '%s'\n", a->nframes,
                b->nframes, a->err ? a->err : "-", b->err ? b->err : "-", a->receipt ? a->receipt : "-",
                b->receipt ? b->receipt : "-");
        abort();
    }
}

static void outcome_free(struct outcome *o)
{
    buf_free(&o->frames);
    free(o->receipt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    enum stomp_version v = (enum stomp_version)(data[0] % 3);
    /* small limits so that every limit is reachable from small inputs */
    static const struct frame_limits limits[] = {
        {4096, 16, 256, 64},
        {64, 3, 24, 12},
        {1 << 20, 1000, 10240, 1024},
    };
    const struct frame_limits *lim = &limits[(data[0] >> 2) % 3];
    uint32_t seed = data[1];
    const char *stream = (const char *)data + 2;
    size_t len = size - 2;

    struct outcome a, b, c;
    run(stream, len, v, lim, whole, NULL, &a);
    run(stream, len, v, lim, one_byte, NULL, &b);
    run(stream, len, v, lim, chosen, &seed, &c);
    same(&a, &b);
    same(&a, &c);
    outcome_free(&a);
    outcome_free(&b);
    outcome_free(&c);
    return 0;
}
