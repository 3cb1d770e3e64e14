/* Transaction bookkeeping: each open transaction owns the frames it holds,
 * bounded by stomp.max_tx_frames, until COMMIT replays or ABORT drops them. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/proto.h"
#include "stompd/sub.h"
#include "stompd/txn.h"

int txn_begin(struct conn *c, const char *id)
{
    struct txn *t;
    HASH_FIND_STR(c->txns, id, t);
    if (t)
        return proto_fail("transaction already open", "Transaction '%.128s' was already begun.", id);
    if (c->ntxns >= (uint32_t)config.max_transactions)
        return proto_fail("too many transactions", "A connection may hold %lld open transactions (stomp.max_transactions).",
                          (long long)config.max_transactions);
    t = calloc(1, sizeof *t);
    if (!t || !(t->id = strdup(id)))
        abort();
    HASH_ADD_KEYPTR(hh, c->txns, t->id, strlen(t->id), t);
    c->ntxns++;
    return 0;
}

struct txn *txn_find(struct conn *c, const char *id)
{
    struct txn *t;
    HASH_FIND_STR(c->txns, id, t);
    return t;
}

int txn_hold(struct conn *c, const char *id, struct frame *f, uint32_t legs, uint64_t tag)
{
    struct txn *t = txn_find(c, id);
    if (!t)
        return proto_fail("unknown transaction", "Transaction '%.128s' was not begun (or already ended).", id);
    /* COMMIT publishes every leg in one loop turn and may hold them all
     * in memory: both bounds count legs, not frames */
    if (t->legs + legs > (uint64_t)config.max_tx_frames)
        return proto_fail("transaction too large",
                          "A transaction may hold %lld frames (stomp.max_tx_frames); a SEND to a composite "
                          "destination counts once for each destination it names.",
                          (long long)config.max_tx_frames);
    int64_t bytes = (int64_t)f->body_len + 64;
    for (uint32_t i = 0; i < f->nheaders; i++)
        bytes += f->headers[i].name_len + f->headers[i].value_len + 2;
    bytes *= legs;
    if (dest_total_mem() + bytes > config.memory_limit)
        return proto_fail("broker memory full", "The broker holds broker.memory_limit bytes of messages; a "
                          "transaction cannot hold more. Commit smaller transactions.");
    t->legs += legs;
    t->bytes += bytes;
    dest_reserve(bytes);
    if (t->nframes == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->frames = realloc(t->frames, t->cap * sizeof *t->frames);
        t->tags = realloc(t->tags, t->cap * sizeof *t->tags);
        if (!t->frames || !t->tags)
            abort();
    }
    t->tags[t->nframes] = tag;
    t->frames[t->nframes++] = *f;
    memset(f, 0, sizeof *f);
    return 0;
}

void txn_give_room(struct txn *t, struct sub *s, uint32_t n, bool cumulative)
{
    struct txn_room *r = NULL;
    for (uint32_t i = 0; i < t->nroom && !r; i++)
        if (t->room[i].sub == s)
            r = &t->room[i];
    if (!r) {
        struct txn_room *v = realloc(t->room, (t->nroom + 1) * sizeof *v);
        if (!v)
            abort();
        t->room = v;
        r = &v[t->nroom++];
        *r = (struct txn_room){s, 0};
    }
    uint32_t more = !cumulative ? n : n > r->n ? n - r->n : 0;
    r->n += more;
    if (more)
        sub_txn_room(s, more);
}

void txn_sub_gone(struct conn *c, struct sub *s)
{
    struct txn *t, *tmp;
    HASH_ITER(hh, c->txns, t, tmp)
        for (uint32_t i = 0; i < t->nroom; i++)
            if (t->room[i].sub == s)
                t->room[i].sub = NULL;
}

void txn_end(struct conn *c, struct txn *t)
{
    for (uint32_t i = 0; i < t->nroom; i++)
        if (t->room[i].sub)
            sub_txn_room(t->room[i].sub, -(int64_t)t->room[i].n);
    free(t->room);
    dest_reserve(-t->bytes);
    for (uint32_t i = 0; i < t->nframes; i++)
        frame_free(&t->frames[i]);
    free(t->frames);
    free(t->tags);
    free(t->spoiled);
    HASH_DEL(c->txns, t);
    c->ntxns--;
    free(t->id);
    free(t);
}

void txn_delivery_returned(struct conn *c, uint64_t tag, const char *mid, const char *why)
{
    struct txn *t, *tmp;
    HASH_ITER(hh, c->txns, t, tmp) {
        for (uint32_t i = 0; i < t->nframes && !t->spoiled; i++) {
            if (t->tags[i] != tag)
                continue;
            char reason[400];
            snprintf(reason, sizeof reason, "frame %u (%s of message '%.128s'): the message went back to its "
                     "queue before the COMMIT (%s)", i + 1, t->frames[i].command, mid, why);
            if (!(t->spoiled = strdup(reason)))
                abort();
        }
    }
}

void txn_abort_all(struct conn *c)
{
    struct txn *t, *tmp;
    HASH_ITER(hh, c->txns, t, tmp)
        txn_end(c, t);
}
