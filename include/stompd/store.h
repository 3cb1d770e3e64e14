/* The local LevelDB store and its writer thread. The loop thread appends
 * encoded journal entries; the store thread drains everything pending into
 * one WriteBatch and one write (synced when asked: group commit), applies
 * each entry with journal_apply, and reports the highest durable lsn back
 * through an ev_async. Reads (recovery, replication catch-up) are safe
 * from the loop thread while the writer runs. */
#ifndef STOMPD_STORE_H
#define STOMPD_STORE_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stompd/buf.h"

struct store_info {
    uint64_t applied_lsn;   /* last entry applied */
    uint64_t epoch;         /* epoch of that entry */
    uint64_t tip_sum;       /* its journal_checksum (0: unknown, an empty store) */
    uint64_t max_epoch;     /* highest epoch this node has seen (fencing) */
    uint64_t first_lsn;     /* oldest entry kept in the journal (0: none) */
    char node_id[40];
    bool created;           /* the store was created by this open */
};

typedef void (*store_done_fn)(uint64_t durable_lsn);
typedef void (*store_fail_fn)(uint64_t lsn, const char *why);

/* Open (creating if missing) the store in dir. Refuses a store in use by
 * another process, a corrupt one, or one of another format. */
int store_open(const char *dir, char *err, size_t errlen) __attribute__((warn_unused_result));
const struct store_info *store_info(void);
/* Start the writer thread. sync: fsync every batch. */
int store_start(struct ev_loop *loop, bool sync, store_done_fn done, store_fail_fn fail,
                char *err, size_t errlen) __attribute__((warn_unused_result));
/* Queue an encoded entry (ownership of data passes to the store). A batch
 * is fsynced (when the store syncs at all) if any entry in it asks to be:
 * entries nobody waits on (acks, delivery marks) ride along unsynced, and
 * the next synced write, being later in LevelDB's log, covers them. */
void store_append(uint64_t lsn, char *data, size_t len, bool sync);
/* Keep the journal (L keys) for replicas to catch up from; a standalone
 * store has no replicas and keeps only the state. */
void store_set_keep_journal(bool keep);
/* Keep at most this many journal entries (older ones are pruned), never
 * pruning past floor_lsn while it is non-zero (a replica still needs them). */
void store_set_retention(uint64_t entries);
void store_set_prune_floor(uint64_t lsn);
uint64_t store_durable_lsn(void);
/* Whether everything handed to the writer has been written (or failed). */
bool store_drained(void);
/* Change whether batches are fsynced (a slave follows its master's mode). */
void store_set_sync(bool sync);
/* Stop the writer after it has written everything queued, and close. */
void store_close(void);

/* Replication, slave side: everything goes through the writer queue so it
 * stays in order with the entries. */
/* Drop all state (keep the node's identity); marks a snapshot in progress
 * so a crash in the middle leaves a store that reopens empty. */
void store_wipe(void);
/* Raw (key, value) pairs as a SNAPSHOT_CHUNK carries them: u32 n, then
 * n times (u32 len, key, u32 len, value). */
void store_put_raw(const char *pairs, size_t len);
/* The snapshot is complete at (lsn, epoch, checksum of the master's entry
 * there): reported durable as lsn. */
void store_snapshot_installed(uint64_t lsn, uint64_t epoch, uint64_t sum);
/* Remember the highest epoch seen (written in order, synced). */
void store_set_max_epoch(uint64_t epoch);

/* Replication, master side. */
struct store_snapshot;
/* A consistent view of the state; *lsn, *epoch and *sum (its checksum) say
 * which entry it ends at. */
struct store_snapshot *store_snapshot_open(uint64_t *lsn, uint64_t *epoch, uint64_t *sum);
/* Append up to max_bytes of pairs (format of store_put_raw, without the
 * count) to out; returns the number of pairs, 0 at the end. */
uint32_t store_snapshot_next(struct store_snapshot *s, struct buf *out, size_t max_bytes);
void store_snapshot_close(struct store_snapshot *s);
/* Journal entries from lsn on, up to max_bytes, in order; fn is called per
 * entry. Returns the number of entries read (stops at a gap). */
typedef void (*store_entry_fn)(void *ctx, uint64_t lsn, const char *data, size_t len);
size_t store_read_entries(uint64_t from, size_t max_bytes, store_entry_fn fn, void *ctx);
/* The epoch and checksum of the entry at lsn, from the journal; -ENOENT
 * if not kept. */
int store_entry_tip(uint64_t lsn, uint64_t *epoch, uint64_t *sum) __attribute__((warn_unused_result));
uint64_t store_first_lsn(void);

/* Reads. fn returns non-zero to stop early. */
typedef int (*store_scan_fn)(void *ctx, const char *k, size_t kl, const char *v, size_t vl);
int store_scan(const char *prefix, size_t plen, store_scan_fn fn, void *ctx) __attribute__((warn_unused_result));
/* *v is malloc'd (caller frees); -ENOENT when absent. */
int store_get(const char *k, size_t kl, char **v, size_t *vl) __attribute__((warn_unused_result));

#endif
