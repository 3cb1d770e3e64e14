/* Transactions: frames held between BEGIN and COMMIT (or ABORT). A
 * connection that closes with a transaction open aborts it. */
#ifndef STOMPD_TXN_H
#define STOMPD_TXN_H

#include <stdbool.h>
#include <stdint.h>
#include <uthash.h>

#include "stompd/frame.h"

struct conn;
struct qentry;

/* A delivery held ACKs or NACKs cover (a cumulative one: every delivery
 * before it too), flagged qentry.in_txn_ack: it leaves its subscription
 * room for one more (ActiveMQ's prefetch extension) while any open
 * transaction covers it, and should it go back to its queue before their
 * COMMITs, those COMMITs fail. Found by tag in conn.txn_acks. */
struct txn_ack {
    uint64_t tag;
    struct txn **ts;        /* the open transactions covering it */
    uint32_t n, cap;
    UT_hash_handle hh;
};

struct txn {
    char *id;
    struct frame *frames;
    uint32_t nframes, cap;
    char *spoiled;          /* why COMMIT must fail: a message it acks went back meanwhile */
    uint64_t *covered;      /* tags of the deliveries it covers (struct txn_ack) */
    uint32_t ncovered, covered_cap;
    uint64_t legs;          /* what COMMIT publishes: a SEND once per destination */
    int64_t bytes;          /* held, charged to broker.memory_limit once per leg */
    UT_hash_handle hh;
};

int txn_begin(struct conn *c, const char *id) __attribute__((warn_unused_result));
struct txn *txn_find(struct conn *c, const char *id);
/* Move f into the transaction (f is left empty). legs: the destinations a
 * SEND goes to at COMMIT (a composite names several), 1 for an ACK or NACK;
 * stomp.max_tx_frames and broker.memory_limit count each of them, as
 * COMMIT publishes a copy to each. to_scheduler: a SEND the scheduler will
 * keep in memory (non-persistent, scheduled), checked against what it
 * holds too. */
int txn_hold(struct conn *c, const char *id, struct frame *f, uint32_t legs, bool to_scheduler)
    __attribute__((warn_unused_result));
/* A held ACK or NACK of t covers delivery e (see struct txn_ack); false
 * when t covered it already. */
bool txn_cover(struct conn *c, struct txn *t, struct qentry *e);
/* Covered delivery tag of c went back to its queue unacked (why: what
 * sent it back; mid: its message-id): its transaction can no longer
 * commit whole. */
void txn_delivery_returned(struct conn *c, uint64_t tag, const char *mid, const char *why);
void txn_end(struct conn *c, struct txn *t);
void txn_abort_all(struct conn *c);

#endif
