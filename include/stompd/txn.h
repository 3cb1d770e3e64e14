/* Transactions: frames held between BEGIN and COMMIT (or ABORT). A
 * connection that closes with a transaction open aborts it. */
#ifndef STOMPD_TXN_H
#define STOMPD_TXN_H

#include <stdint.h>
#include <uthash.h>

#include "stompd/frame.h"

struct conn;

struct txn {
    char *id;
    struct frame *frames;
    uint32_t nframes, cap;
    uint64_t legs;          /* what COMMIT publishes: a SEND once per destination */
    int64_t bytes;          /* held, charged to broker.memory_limit once per leg */
    UT_hash_handle hh;
};

int txn_begin(struct conn *c, const char *id) __attribute__((warn_unused_result));
struct txn *txn_find(struct conn *c, const char *id);
/* Move f into the transaction (f is left empty). legs: the destinations a
 * SEND goes to at COMMIT (a composite names several), 1 for an ACK or NACK;
 * stomp.max_tx_frames and broker.memory_limit count each of them, as
 * COMMIT publishes a copy to each. */
int txn_hold(struct conn *c, const char *id, struct frame *f, uint32_t legs) __attribute__((warn_unused_result));
void txn_end(struct conn *c, struct txn *t);
void txn_abort_all(struct conn *c);

#endif
