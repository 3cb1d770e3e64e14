/* The store: an append-only log of journal entries (segment.c), which is
 * the durable record, and a LevelDB index of the state the entries make
 * (each queue's messages in dispatch order pointing into the log,
 * durable subscriptions, delivery counts, the duplicate window, per-queue
 * counters), which is rebuilt from the log's tail at start.
 *
 * The loop thread appends encoded entries; the store's writer thread
 * takes everything appended since it last looked (one hand-off per loop
 * iteration), writes it to the log in one write, fdatasyncs it when asked
 * (group commit), reports it durable, then applies it to the index with
 * one unsynced LevelDB write and reports it indexed. While one group's
 * fdatasync runs, the next one collects. Message bodies are written once,
 * sequentially; LevelDB holds small index records only. A log segment is
 * removed once no message it holds is pending and no replica needs its
 * entries. Reads (paging a queue in, a replica catching up, a snapshot)
 * are loop-thread calls. */
#ifndef STOMPD_STORE_H
#define STOMPD_STORE_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stompd/buf.h"
#include "stompd/segment.h"
#include "stompd/stats.h"

struct msg;

struct store_info {
    uint64_t applied_lsn;   /* last entry in the store */
    uint64_t epoch;         /* epoch of that entry */
    uint64_t tip_sum;       /* its journal_checksum (0: unknown, an empty store) */
    uint64_t max_epoch;     /* highest epoch this node has seen (fencing) */
    uint64_t first_lsn;     /* oldest entry kept in the log (0: none) */
    uint64_t max_seq;       /* highest message seq the store has held */
    char node_id[40];
    bool created;           /* the store was created by this open */
    bool migrated;          /* converted from a format-1 store by this open */
};

typedef void (*store_done_fn)(uint64_t durable_lsn);
typedef void (*store_fail_fn)(uint64_t lsn, const char *why);
typedef void (*store_indexed_fn)(uint64_t indexed_lsn);
typedef void (*store_written_fn)(uint64_t written_lsn);

struct store_limits {
    uint64_t segment_bytes;  /* a new log segment once the current one has this much */
    uint64_t retention;      /* journal entries kept for replicas (replicated stores) */
    bool keep_journal;       /* replicas catch up from the log */
};

/* Open (creating if missing) the store in dir: dir/index (LevelDB) and
 * dir/log (segments). A format-1 store (LevelDB directly in dir) is
 * converted first. Refuses a store in use by another process, a corrupt
 * one, one whose log is shorter than its index says (truncated or lost),
 * or one of another format. */
int store_open(const char *dir, const struct store_limits *lim, char *err, size_t errlen)
    __attribute__((warn_unused_result));
const struct store_info *store_info(void);
/* Start the writer thread. sync: fdatasync the groups entries ask for. */
int store_start(struct ev_loop *loop, bool sync, store_done_fn done, store_fail_fn fail, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Told whenever the index has applied more (paging reads only what is
 * indexed). */
void store_on_indexed(store_indexed_fn fn);
/* Told when entries are in the log (written, the OS holds them; an
 * fdatasync may follow): at once once the loop waits for lsn
 * (store_want_written), else with the durability reports. */
void store_on_written(store_written_fn fn);
/* Block until the writer has written everything appended (stopping). */
void store_drain(void);
/* Hear the writer's reports now (the loop may not run again). */
void store_report_now(void);
/* The loop waits to hear that lsn is written; true when it already is
 * (no report will come for it). */
bool store_want_written(uint64_t lsn);
/* Queue an encoded entry (ownership of data passes to the store). A group
 * is fdatasynced (when the store syncs at all) if any entry in it asks to
 * be: entries nobody waits on (acks, delivery marks) ride along, and the
 * next synced group covers them. */
void store_append(uint64_t lsn, char *data, size_t len, bool sync);
/* Hand what was appended to the writer (once per loop iteration). */
void store_kick(void);
/* The same, unless reports are lazy (store_set_lazy_reports): then the
 * chain goes once it is large, or within a few ms. A small chain of
 * entries no fdatasync waits for, while the writer is idle, the loop
 * writes to the log itself: true then, and its report is a pending event
 * (the done callback runs from the loop, as for the writer's reports):
 * the caller must not let the loop block before it runs. */
bool store_kick_lazy(void);
/* Entries appended and not yet handed on, that go at the next kick. */
bool store_chain_waiting(void);
/* Payload bytes appended (entries, snapshot pairs) and still in memory:
 * not yet written and freed by the writer. */
uint64_t store_queued(void);
/* The loop waits for store_queued() to fall to below: false, and fn is
 * called from the loop once it has (a later call replaces the wait); true
 * if it already has (fn is not called). What is appended goes to the
 * writer at once. */
typedef void (*store_room_fn)(void);
bool store_wait_room(uint64_t below, store_room_fn fn);
/* Never prune past floor_lsn while it is non-zero (a replica needs it). */
void store_set_prune_floor(uint64_t lsn);
uint64_t store_durable_lsn(void);
/* What is indexed; when behind, the writer writes the index batch it
 * holds back (if any) and wakes the loop once it has (the
 * store_on_indexed callback). */
uint64_t store_indexed_lsn(void);
/* The loop follows indexing: call the indexed callback now if the index
 * moved. urgent: the loop waits on it (store_indexed_lsn); otherwise the
 * writer's own pace will do (within tens of ms while entries come). */
void store_poll_indexed(bool urgent);
/* Whether everything handed to the writer has been written (or failed). */
bool store_drained(void);
/* Change whether groups are fdatasynced (a slave follows its master's mode). */
void store_set_sync(bool sync);
/* lazy: nothing waits on the done callback promptly (a master whose own
 * write does not count toward its sync mode, a slave whose master does not
 * wait for its fdatasync): the writer wakes the loop for it at most every
 * few ms, and store_poll() (before the loop sleeps) delivers it sooner
 * when the loop runs anyway; and store_kick_lazy() hands entries to the
 * writer in batches, a few ms apart at most. Default false. */
void store_set_lazy_reports(bool lazy);
void store_poll(void);
/* Stop the writer after it has written everything queued, and close. */
void store_close(void);
/* What the writer measures: each fdatasync of the log, and how many
 * journal entries each synced group carried (group commit). */
struct store_stats {
    struct hist fdatasync_us;
    struct hist group_entries;
    /* messages removed before their index write: never in LevelDB */
    _Atomic uint64_t index_skipped;
    /* the most payload bytes ever queued in memory (store_queued) */
    _Atomic uint64_t queued_peak;
    /* groups the loop wrote to the log itself (no fdatasync waited: the
     * writer was idle; it indexed them) */
    uint64_t inline_writes;
};
const struct store_stats *store_stats(void);
/* The highest message seq in what is indexed (a slave's store moves on
 * after open: a promoted node numbers new messages above it). */
uint64_t store_max_seq(void);
/* Bytes the store takes on disk (log segments and the index). */
uint64_t store_bytes(void);

/* ---------------------------------------------------------------- followers */
/* Everything goes through the writer queue, in order with the entries. */
/* Drop all state (keep the node's identity); marks a snapshot in progress
 * so a crash in the middle leaves a store that reopens empty. */
void store_wipe(void);
/* Pairs as a SNAPSHOT_CHUNK carries them: u32 n, then n times (u32 len,
 * key, u32 len, value); message keys carry the encoded message. */
void store_put_raw(const char *pairs, size_t len);
/* The snapshot is complete at (lsn, epoch, checksum of the master's entry
 * there): reported durable as lsn. */
void store_snapshot_installed(uint64_t lsn, uint64_t epoch, uint64_t sum);
/* Remember the highest epoch seen (written in order, synced). */
void store_set_max_epoch(uint64_t epoch);

/* ---------------------------------------------------------------- master */
struct store_snapshot;
/* A consistent view of the state; *lsn, *epoch and *sum (its checksum) say
 * which entry it ends at. The log segments it points into are kept until
 * it is closed. */
struct store_snapshot *store_snapshot_open(uint64_t *lsn, uint64_t *epoch, uint64_t *sum);
/* Append up to max_bytes of pairs (format of store_put_raw, without the
 * count) to out; returns the number of pairs, 0 at the end. A message
 * that cannot be read is left out (logged); one that cannot be read for
 * now (out of descriptors or memory), or an index that cannot be read,
 * sets *failed instead: the snapshot is not whole, and must not be ended. */
uint32_t store_snapshot_next(struct store_snapshot *s, struct buf *out, size_t max_bytes, bool *failed);
void store_snapshot_close(struct store_snapshot *s);
/* Journal entries from lsn on, up to max_bytes, in order; fn is called per
 * entry. Returns the number of entries read (stops at a gap). */
typedef void (*store_entry_fn)(void *ctx, uint64_t lsn, const char *data, size_t len);
size_t store_read_entries(uint64_t from, size_t max_bytes, store_entry_fn fn, void *ctx);
/* The epoch and checksum of the entry at lsn, from the log; -ENOENT if not
 * kept. */
int store_entry_tip(uint64_t lsn, uint64_t *epoch, uint64_t *sum) __attribute__((warn_unused_result));
uint64_t store_first_lsn(void);

/* ---------------------------------------------------------------- reads */
/* Index keys with a prefix, in order. fn returns non-zero to stop early. */
typedef int (*store_scan_fn)(void *ctx, const char *k, size_t kl, const char *v, size_t vl);
int store_scan(const char *prefix, size_t plen, store_scan_fn fn, void *ctx) __attribute__((warn_unused_result));

/* A message in the index: where it is in the log. */
struct store_msgref {
    const char *key;
    size_t klen;
    struct seg_pos pos;     /* of the encoded message */
    uint32_t len;
    int64_t expires;
    uint64_t lsn;           /* the entry that put it there (0: a snapshot) */
    uint32_t deliveries;    /* its delivery count (R key), 0 if none */
    uint32_t crc;           /* crc32 of the encoded message, if has_crc (indexed by format stompd-3) */
    bool has_crc;
};
typedef int (*store_page_fn)(void *ctx, const struct store_msgref *r);
/* A queue's messages (keys starting with prefix) in dispatch order, from
 * the first key at or after `from` (NULL: from the start); fn returns
 * non-zero to stop. Only what is indexed is seen. Returns 0 or -EIO. */
int store_page(const char *prefix, size_t plen, const char *from, size_t flen, store_page_fn fn, void *ctx)
    __attribute__((warn_unused_result));
/* The message a reference points to, at *out. Returns 0; -EBADMSG when it
 * cannot be read and reading it again will not help (it does not match
 * its checksum or does not decode, an I/O error, its segment is gone);
 * or another -errno when a later read may succeed (out of file
 * descriptors or memory). Failures are logged, those that may pass at
 * most every 10 s. */
int store_read_msg(const struct store_msgref *r, struct msg **out) __attribute__((warn_unused_result));
/* The same, NULL when it cannot be read. */
struct msg *store_load_msg(const struct store_msgref *r);

/* The index key/value pairs, in order, with each message's value replaced
 * by its encoded message (what two replicas can compare). */
int store_dump(store_scan_fn fn, void *ctx) __attribute__((warn_unused_result));

#endif
