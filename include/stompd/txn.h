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
    int64_t bytes;          /* held, charged to broker.memory_limit */
    UT_hash_handle hh;
};

int txn_begin(struct conn *c, const char *id) __attribute__((warn_unused_result));
struct txn *txn_find(struct conn *c, const char *id);
/* Move f into the transaction (f is left empty). */
int txn_hold(struct conn *c, const char *id, struct frame *f) __attribute__((warn_unused_result));
void txn_end(struct conn *c, struct txn *t);
void txn_abort_all(struct conn *c);

#endif
