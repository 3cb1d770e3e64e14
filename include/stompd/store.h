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

struct store_info {
    uint64_t applied_lsn;   /* last entry applied */
    uint64_t epoch;         /* epoch of that entry */
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
/* Queue an encoded entry (ownership of data passes to the store). */
void store_append(uint64_t lsn, char *data, size_t len);
/* Keep at most this many journal entries (older ones are pruned), never
 * pruning past floor_lsn while it is non-zero (a replica still needs them). */
void store_set_retention(uint64_t entries);
void store_set_prune_floor(uint64_t lsn);
uint64_t store_durable_lsn(void);
/* Stop the writer after it has written everything queued, and close. */
void store_close(void);

/* Reads. fn returns non-zero to stop early. */
typedef int (*store_scan_fn)(void *ctx, const char *k, size_t kl, const char *v, size_t vl);
int store_scan(const char *prefix, size_t plen, store_scan_fn fn, void *ctx) __attribute__((warn_unused_result));
/* *v is malloc'd (caller frees); -ENOENT when absent. */
int store_get(const char *k, size_t kl, char **v, size_t *vl) __attribute__((warn_unused_result));

#endif
