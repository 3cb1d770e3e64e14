/* What the broker journals, from the loop thread. While this node does not
 * journal (store.type = memory, or not master) every call is a no-op and
 * nothing waits. Otherwise each durable change
 * becomes a journal op: sends, subscription changes and purges get their
 * own entry at once; acks and delivery marks, which nobody waits for, are
 * coalesced into one entry per loop iteration (or per receipt). An open
 * batch (a transaction's COMMIT) collects everything into one entry. */
#ifndef STOMPD_PERSIST_H
#define STOMPD_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stompd/commit.h"

struct dest;
struct msg;
struct qentry;
struct queue;
struct durable;

/* Parse store.type and store.sync and open the store (none for
 * store.type = memory). Journals nothing yet. */
int persist_open(char *err, size_t errlen) __attribute__((warn_unused_result));
/* The broker stops: everything journaled so far goes to the log now (and
 * to the slaves, as far as their sockets take it), and the deliveries held
 * for it go out before the clients close, unless the store failed. */
void persist_settle(void);
/* A stopping master may go without leaving a slave behind once every
 * entry it journaled is committed (each RECEIPT released) and no delivery
 * waits for its entry (an auto-ack MESSAGE for its dequeue); so may a node
 * with nothing to wait for: no store, a failed one, sync modes that wait
 * for no slave (persist_settle writes its log), too few slaves connected
 * for a quorum. Returns why it may go, NULL while it should wait. */
const char *persist_handed_over(void);
void persist_close(void);
/* A store is open (false for store.type = memory). */
bool persist_has_store(void);
/* The effective store.sync as SYNC_* bits. */
unsigned persist_modes(void);
/* Start the store's writer; sync: fsync its groups. */
int persist_start_store(bool sync, char *err, size_t errlen) __attribute__((warn_unused_result));
/* This node writes the journal now (standalone, or master of epoch e),
 * from the position the store (or persist_set_position) gave. */
void persist_begin(uint64_t epoch);
/* A follower about to write: its journal ends at lsn, an entry of
 * lsn_epoch with checksum sum. */
void persist_set_position(uint64_t lsn, uint64_t lsn_epoch, uint64_t sum);
/* Stop journaling (stepping down): what was not appended is dropped. */
void persist_end(void);
/* The store takes broker.store_limit or more: producers of persistent
 * messages wait (op_wait_store). Checked after each indexed group. */
bool persist_store_full(void);
/* A persistent message was just journaled: must its producer wait for
 * room (op_wait_store)? At broker.store_limit, or while store.repl_window
 * bytes wait for the store's writer (until half are written). */
bool persist_store_wait(void);
/* Times producers began to wait for the writer. */
uint64_t persist_writer_waits(void);
/* Look at the store's size again; when it is below 90% of the limit the
 * waiting producers go on. */
void persist_check_store_room(void);
/* Persistent messages are journaled now. */
bool persist_enabled(void);
/* The store failed: nothing more can be made durable. */
bool persist_failed(void);
const char *persist_describe(void);
/* The effective store.sync (with its default filled in). */
const char *persist_sync_modes(void);
bool persist_replicated(void);
uint64_t persist_epoch(void);
/* Where this node's journal ends (written, or received as a follower),
 * the epoch of that entry, and its checksum. */
uint64_t persist_position(uint64_t *epoch);
uint64_t persist_position_sum(void);

void persist_batch_begin(void);
/* Close the batch; returns the lsn to wait for, 0 when nothing was journaled. */
uint64_t persist_batch_end(void);
/* The lsn of the last entry appended. */
uint64_t persist_last_lsn(void);
/* Append coalesced ops now, to be fsynced (a receipt waits for them);
 * returns the last lsn appended. */
uint64_t persist_flush(void);
/* An lsn at or above the entry that will carry every op journaled so far. */
uint64_t persist_journaled_by(void);
/* The loop's round: append the coalesced ops without asking for an fsync,
 * once something waits for them or they have waited long enough (until
 * then they ride with the next entry). Returns false while they wait. */
bool persist_flush_coalesced(void);

/* A persistent message entering a queue, or a topic's durable
 * subscriptions. Returns false when nothing needed journaling (memory
 * store, temporary destination, topic without durable subscriptions). */
bool persist_enqueue(struct dest *d, struct msg *m, const char *dup_id);
/* Returns true when an ack was journaled (coalesced: persist_flush gives
 * its entry an lsn). */
bool persist_dequeue(struct qentry *e);
/* An auto-ack delivery: its dequeue is journaled, whatever
 * store.ack_delay says. Returns what the MESSAGE must wait for (commit_hold)
 * so that neither a failover nor a restart delivers it again unmarked. */
enum hold_kind persist_auto_acked(struct qentry *e);
/* That delivery's MESSAGE never left (queue_unsent_return): the message
 * is journaled into q again, after the dequeue, with the deliveries it
 * had before. Returns an entry that has it, or a later one (0: none). */
uint64_t persist_given_back(struct queue *q, struct msg *m, uint32_t redeliveries);
/* Returns true when a delivery mark was journaled. */
bool persist_delivered(struct qentry *e);
bool persist_durable_created(struct durable *d);
bool persist_durable_deleted(struct durable *d);
/* Journal a dead-letter move in its own entry (never in a transaction's
 * batch); returns its lsn, 0 when nothing was journaled. */
uint64_t persist_dlq_move(struct qentry *e, struct msg *copy);
void persist_purge(struct dest *d);
/* A destination kept while idle (a virtual topic's consumer queue), and
 * no longer. Returns whether it journaled. */
bool persist_dest_kept(struct dest *d);
void persist_dest_forgotten(struct dest *d);
/* A scheduled message in the store (its job id, its due time), and its
 * removal. Return the entry's lsn: UINT64_MAX inside an open batch (its
 * lsn comes when the batch closes), 0 when nothing was journaled. */
uint64_t persist_sched_add(const char *id, int64_t due, const char *dup_id, struct msg *m);
uint64_t persist_sched_del(const char *id, int64_t due, uint8_t prio, uint64_t seq);
void persist_dup_forget(const char *dup_id);

#endif
