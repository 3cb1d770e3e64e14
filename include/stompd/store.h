/* What the broker asks of the store, from the loop thread. With
 * store.type = memory every call is a no-op and nothing waits. With a
 * journal, each call appends an entry (or adds an operation to the batch
 * that is open), and store_batch_end() says which lsn to wait for. */
#ifndef STOMPD_STORE_H
#define STOMPD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dest;
struct msg;
struct qentry;
struct durable;

int store_open(char *err, size_t errlen) __attribute__((warn_unused_result));
void store_close(void);
/* Persistent messages are journaled (false for store.type = memory). */
bool store_persistent(void);
const char *store_describe(void);

/* Group several operations into one atomic journal entry (a transaction
 * commit). Without an open batch every operation is its own entry. */
void store_batch_begin(void);
uint64_t store_batch_end(void);
/* The lsn of the last entry appended. */
uint64_t store_last_lsn(void);

/* Journal a persistent message entering a queue, or a topic's durable
 * subscriptions. Returns false when nothing needed journaling. */
bool store_enqueue(struct dest *d, struct msg *m);
void store_dequeue(struct qentry *e);
void store_delivered(struct qentry *e);
void store_durable_created(struct durable *d);
void store_durable_deleted(struct durable *d);
void store_dlq_move(struct qentry *e, struct msg *copy);
void store_purge(struct dest *d);
void store_dest_deleted(struct dest *d);

#endif
