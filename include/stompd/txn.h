/* Transactions: frames held between BEGIN and COMMIT (or ABORT). A
 * connection that closes with a transaction open aborts it. */
#ifndef STOMPD_TXN_H
#define STOMPD_TXN_H

#include <stdint.h>
#include <uthash.h>

#include "stompd/frame.h"

struct conn;
struct sub;

/* Room a transaction's held ACKs gave a subscription (sub_txn_room), given
 * back when it ends. */
struct txn_room {
    struct sub *sub;        /* a top subscription; NULL once it ended */
    uint32_t n;
};

struct txn {
    char *id;
    struct frame *frames;
    uint64_t *tags;         /* per frame: a held ACK's or NACK's delivery tag, 0 for a SEND */
    uint32_t nframes, cap;
    char *spoiled;          /* why COMMIT must fail: a message it acks went back meanwhile */
    struct txn_room *room;
    uint32_t nroom;
    uint64_t legs;          /* what COMMIT publishes: a SEND once per destination */
    int64_t bytes;          /* held, charged to broker.memory_limit once per leg */
    UT_hash_handle hh;
};

int txn_begin(struct conn *c, const char *id) __attribute__((warn_unused_result));
struct txn *txn_find(struct conn *c, const char *id);
/* Move f into the transaction (f is left empty). legs: the destinations a
 * SEND goes to at COMMIT (a composite names several), 1 for an ACK or NACK;
 * stomp.max_tx_frames and broker.memory_limit count each of them, as
 * COMMIT publishes a copy to each. tag: the delivery an ACK or NACK names
 * (0 for a SEND). */
int txn_hold(struct conn *c, const char *id, struct frame *f, uint32_t legs, uint64_t tag)
    __attribute__((warn_unused_result));
/* The delivery tag of c went back to its queue unacked (why: what sent it
 * back; mid: its message-id): every open transaction of c that holds an
 * ACK or NACK of it can no longer commit whole. */
void txn_delivery_returned(struct conn *c, uint64_t tag, const char *mid, const char *why);
/* The ACK just held in t covers n of top subscription s's deliveries
 * (cumulative: the first n in flight, however many earlier ACKs of t
 * covered already): s gets room for them until t ends. */
void txn_give_room(struct txn *t, struct sub *s, uint32_t n, bool cumulative);
/* Subscription s of c ends: its transactions no longer give it room. */
void txn_sub_gone(struct conn *c, struct sub *s);
void txn_end(struct conn *c, struct txn *t);
void txn_abort_all(struct conn *c);

#endif
