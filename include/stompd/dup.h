/* Duplicate detection for resent SENDs: the last broker.dup_window ids
 * (the _AMQ_DUPL_ID header a failover client stamps on each send), with
 * the lsn of the entry that journaled each, so a duplicate's RECEIPT waits
 * for the original to be durable. Journaled ids are part of the store and
 * so of the replicated state. */
#ifndef STOMPD_DUP_H
#define STOMPD_DUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DUP_HEADER "_AMQ_DUPL_ID"

/* Seen within the window? *lsn is the entry to wait for (0: none). */
bool dup_seen(const char *id, uint64_t *lsn);
/* Remember an id (evicting the oldest beyond the window). */
void dup_remember(const char *id, uint64_t lsn, bool journaled);
/* A batch's id (remembered at UINT64_MAX while its entry is built) is in
 * entry lsn. */
void dup_set_lsn(const char *id, uint64_t lsn);
/* Recovery: ids read from the store, in any order; call dup_restored after. */
void dup_restore(const char *id, size_t len, uint64_t seq);
void dup_restored(void);
size_t dup_count(void);
void dup_free_all(void);

#endif
