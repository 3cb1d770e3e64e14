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
#include "stompd/queue.h"
#include "stompd/sched.h"
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

int txn_hold(struct conn *c, const char *id, struct frame *f, uint32_t legs, bool to_scheduler)
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
    /* the reservation is given back at COMMIT, where a non-persistent
     * scheduled message is charged to the scheduler: for such a SEND its
     * bytes count here, as for one outside a transaction (sched_add), or
     * transactions could hold them without bound (helper-80); for any
     * other, only what destinations hold, as for a plain SEND */
    if ((to_scheduler ? sched_memory_held() : dest_total_mem()) + bytes > config.memory_limit)
        return proto_fail("broker memory full", "The broker holds broker.memory_limit bytes of messages%s; a "
                          "transaction cannot hold more. Commit smaller transactions.",
                          to_scheduler ? " and non-persistent scheduled messages" : "");
    t->legs += legs;
    t->bytes += bytes;
    dest_reserve(bytes);
    if (t->nframes == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->frames = realloc(t->frames, t->cap * sizeof *t->frames);
        if (!t->frames)
            abort();
    }
    t->frames[t->nframes++] = *f;
    memset(f, 0, sizeof *f);
    return 0;
}

bool txn_cover(struct conn *c, struct txn *t, struct qentry *e)
{
    struct txn_ack *a;
    HASH_FIND(hh, c->txn_acks, &e->tag, sizeof e->tag, a);
    if (!a) {
        if (!(a = calloc(1, sizeof *a)))
            abort();
        a->tag = e->tag;
        HASH_ADD(hh, c->txn_acks, tag, sizeof a->tag, a);
        e->in_txn_ack = true;
        sub_txn_room(sub_top(e->sub), 1); /* once, whatever covers it */
    }
    for (uint32_t i = 0; i < a->n; i++)
        if (a->ts[i] == t)
            return false;
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 2;
        if (!(a->ts = realloc(a->ts, a->cap * sizeof *a->ts)))
            abort();
    }
    a->ts[a->n++] = t;
    if (t->ncovered == t->covered_cap) {
        t->covered_cap = t->covered_cap ? t->covered_cap * 2 : 8;
        if (!(t->covered = realloc(t->covered, t->covered_cap * sizeof *t->covered)))
            abort();
    }
    t->covered[t->ncovered++] = e->tag;
    return true;
}

void txn_end(struct conn *c, struct txn *t)
{
    /* a delivery no other transaction covers is covered no more (its room
     * goes; an ACK the COMMIT applied took it out of flight already) */
    for (uint32_t i = 0; i < t->ncovered; i++) {
        struct txn_ack *a;
        HASH_FIND(hh, c->txn_acks, &t->covered[i], sizeof(uint64_t), a);
        for (uint32_t k = 0; a && k < a->n; k++)
            if (a->ts[k] == t)
                a->ts[k] = a->ts[--a->n];
        if (!a || a->n)
            continue;
        HASH_DEL(c->txn_acks, a);
        free(a->ts);
        free(a);
        struct qentry *e;
        HASH_FIND(hh, c->inflight, &t->covered[i], sizeof(uint64_t), e);
        if (e && e->in_txn_ack) {
            e->in_txn_ack = false;
            sub_txn_room(sub_top(e->sub), -1);
        }
    }
    free(t->covered);
    dest_reserve(-t->bytes);
    for (uint32_t i = 0; i < t->nframes; i++)
        frame_free(&t->frames[i]);
    free(t->frames);
    free(t->spoiled);
    HASH_DEL(c->txns, t);
    c->ntxns--;
    free(t->id);
    free(t);
}

void txn_delivery_returned(struct conn *c, uint64_t tag, const char *mid, const char *why)
{
    struct txn_ack *a;
    HASH_FIND(hh, c->txn_acks, &tag, sizeof tag, a);
    for (uint32_t i = 0; a && i < a->n; i++) {
        struct txn *t = a->ts[i];
        if (t->spoiled)
            continue;
        char reason[400];
        snprintf(reason, sizeof reason, "message '%.128s', which an ACK or NACK of it covers, went back to its "
                 "queue before the COMMIT (%s)", mid, why);
        if (!(t->spoiled = strdup(reason)))
            abort();
    }
}

void txn_abort_all(struct conn *c)
{
    struct txn *t, *tmp;
    HASH_ITER(hh, c->txns, t, tmp)
        txn_end(c, t);
}
