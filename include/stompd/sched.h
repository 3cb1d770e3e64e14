/* Scheduled delivery, with ActiveMQ's headers: AMQ_SCHEDULED_DELAY (ms),
 * AMQ_SCHEDULED_PERIOD (ms between deliveries), AMQ_SCHEDULED_REPEAT
 * (deliveries after the first; -1 = for ever) and AMQ_SCHEDULED_CRON (a
 * cron expression, cron.h: at each match the message is delivered, or,
 * with a delay or repeats, a series of those starts, as ActiveMQ does).
 *
 * A scheduled message is a job whose id is its message-id; its record is
 * the message itself, whose AMQ_SCHEDULED_* headers say what is left of
 * its schedule. A persistent job is journaled (SCHED_ADD) and replicated
 * like any entry, and indexed in the store by due time; each firing is one
 * journal entry that removes (or moves) the job and enqueues what it
 * delivers, so a crash or a failover delivers it at least once and never
 * loses it. The loop keeps only the jobs due first in memory
 * (broker.scheduler_window bytes) in a tree ordered by due time, and
 * reads more from the store's index as they fire (as queue.c pages
 * queues): a million jobs cost neither memory nor start-up time. A
 * non-persistent job lives in memory only.
 *
 * Delivered copies go through broker_publish to the destinations the SEND
 * named (routed again at each firing), without the AMQ_SCHEDULED_*
 * headers and with scheduledJobId; a repeating or cron job's copies get
 * fresh message-ids. Never early: a job fires once the wall clock has
 * reached its time. */
#ifndef STOMPD_SCHED_H
#define STOMPD_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct msg;

/* Is m to be scheduled rather than delivered now? 1 with *due set (ms
 * since the epoch), 0 when not, -EINVAL with *why for a bad header. */
int sched_check(const struct msg *m, int64_t now_ms, int64_t *due, const char **why)
    __attribute__((warn_unused_result));
/* What broker.memory_limit bounds when a message is taken in: the
 * messages destinations hold and the non-persistent scheduled ones. */
int64_t sched_memory_held(void);
/* Keep m (its destination list in m->dest) until due. A persistent one is
 * journaled (*lsn: its entry; UINT64_MAX inside an open batch), a
 * non-persistent one (or any, without a store) is kept in memory (*lsn
 * 0): -ENOMEM with *why when the broker's memory is full, unless its
 * bytes were admitted already (admitted: a transaction's SEND). */
int sched_add(struct msg *m, int64_t due, const char *dup_id, bool admitted, uint64_t *lsn, const char **why)
    __attribute__((warn_unused_result));

/* Life cycle: the store holds n persistent jobs (recovery); start firing
 * (serving); stop and drop what is in memory (stepping down, stopping). */
void sched_restore(uint64_t n);
void sched_start(void);
void sched_stop(void);
/* The store has indexed up to lsn: the window may shrink. */
void sched_indexed(uint64_t lsn);
/* As queue_waits_for_index and queue_follows_index. */
bool sched_waits_for_index(void);
bool sched_follows_index(void);
/* An open batch's entry got its lsn (persist.c). */
void sched_batch_closed(uint64_t lsn);

/* The console's view. */
struct sched_info {
    uint64_t scheduled;     /* jobs, persistent and not */
    uint64_t in_memory;     /* of them, held in memory */
    uint64_t volatile_jobs; /* non-persistent ones (memory only) */
    int64_t volatile_bytes; /* ...and their messages' bytes */
    uint64_t fired, cancelled;
    uint64_t holds;         /* times firing waited for a full destination (or store) */
    bool waiting_for_room;  /* it waits now (for one destination at least) */
    uint64_t waiting_jobs;  /* due jobs waiting for room in their destination */
    int64_t next_due;       /* ms since the epoch; -1: none */
};
void sched_info(struct sched_info *out);
struct sched_job_view {
    const char *id;
    int64_t due;
    const struct msg *m;    /* the record: destination, headers (what is left of the schedule), body */
    bool persistent;
    char cursor[64];        /* list from after this job */
};
/* Up to max jobs in due order, after cursor (NULL or "": from the first);
 * *more says whether others follow. -EINVAL for a bad cursor, -EIO when
 * the store cannot be read. */
int sched_list(const char *after, size_t max, void (*fn)(void *arg, const struct sched_job_view *j), void *arg,
               bool *more) __attribute__((warn_unused_result));
/* Cancel job id (journaled): 0 with *lsn the entry to wait for (0: none),
 * -ENOENT when there is no such job. */
int sched_cancel(const char *id, uint64_t *lsn) __attribute__((warn_unused_result));

#endif
