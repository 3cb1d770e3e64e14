/* What the broker journals, from the loop thread. With store.type = memory
 * every call is a no-op and nothing waits. Otherwise each durable change
 * becomes a journal op: sends, subscription changes and purges get their
 * own entry at once; acks and delivery marks, which nobody waits for, are
 * coalesced into one entry per loop iteration (or per receipt). An open
 * batch (a transaction's COMMIT) collects everything into one entry. */
#ifndef STOMPD_PERSIST_H
#define STOMPD_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dest;
struct msg;
struct qentry;
struct durable;

int persist_open(char *err, size_t errlen) __attribute__((warn_unused_result));
void persist_close(void);
/* Persistent messages are journaled (false for store.type = memory). */
bool persist_enabled(void);
/* The store failed: nothing more can be made durable. */
bool persist_failed(void);
const char *persist_describe(void);
/* The effective store.sync (with its default filled in). */
const char *persist_sync_modes(void);
bool persist_replicated(void);
uint64_t persist_epoch(void);

/* Role changes under ZooKeeper (loop thread). */
/* Where this node's journal ends, and the epoch of that entry. */
uint64_t persist_position(uint64_t *epoch);
/* Take over as master of new_epoch: the store must have applied all it
 * received (-EAGAIN otherwise: call again later). Rebuilds the broker from
 * the store, then opens the replication and client listeners. */
int persist_become_master(uint64_t new_epoch, char *err, size_t errlen) __attribute__((warn_unused_result));
/* A master steps down: every client connection closed at once, nothing
 * more committed, the in-memory broker dropped (the store keeps it all). */
void persist_stop_serving(const char *why);
/* Follow the master at this replication address (NULL: nobody). */
void persist_follow(const char *master_repl);

void persist_batch_begin(void);
/* Close the batch; returns the lsn to wait for, 0 when nothing was journaled. */
uint64_t persist_batch_end(void);
/* The lsn of the last entry appended. */
uint64_t persist_last_lsn(void);
/* Append coalesced ops now, to be fsynced (a receipt waits for them);
 * returns the last lsn appended. */
uint64_t persist_flush(void);
/* Append coalesced ops without asking for an fsync (the loop's round). */
void persist_flush_coalesced(void);
/* Bumped by every op recorded: tells whether a frame journaled anything. */
uint64_t persist_generation(void);

/* A persistent message entering a queue, or a topic's durable
 * subscriptions. Returns false when nothing needed journaling (memory
 * store, temporary destination, topic without durable subscriptions). */
bool persist_enqueue(struct dest *d, struct msg *m, const char *dup_id);
void persist_dequeue(struct qentry *e);
/* Returns true when a delivery mark was journaled. */
bool persist_delivered(struct qentry *e);
void persist_durable_created(struct durable *d);
void persist_durable_deleted(struct durable *d);
/* Journal a dead-letter move in its own entry (never in a transaction's
 * batch); returns its lsn, 0 when nothing was journaled. */
uint64_t persist_dlq_move(struct qentry *e, struct msg *copy);
void persist_purge(struct dest *d);
void persist_dup_forget(const char *dup_id);

#endif
