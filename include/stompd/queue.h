/* A queue of messages waiting for consumers, in dispatch order (higher
 * priority first, then arrival order), used for /queue/ destinations, for
 * each topic subscription's private backlog and for durable
 * subscriptions. Dispatch is round-robin over ready consumers, honouring
 * selectors, exclusive consumers and message groups.
 *
 * Only a window of a persistent queue lives in memory (broker.queue_window
 * bytes of pending persistent messages): the rest stays in the store and
 * is read back in order as consumers take messages (paging). Every
 * operation on one message is O(log n) in the window, never in the
 * backlog: pending entries sit in a balanced tree; a returned message goes
 * back to its place; expiry is a heap over the messages in memory (one on
 * disk expires when it is read back). Invariant while a queue is paged:
 * every pending message whose key is below `limit` is in memory; messages
 * at or beyond it are in the store (and possibly in memory too, until the
 * store has indexed them), or were skipped: when every consumer has
 * credit and none of them takes anything in a full window (selectors that
 * match nothing there), the window's indexed messages leave memory and
 * paging moves on, a bounded step per loop iteration; the skipped range is
 * read again from its start when the consumers change.
 *
 * Selector work is budgeted (see sub.h): a dispatch that runs out stops
 * at a message and goes on from its key in a later loop iteration (a key,
 * not a pointer: paging may take the entry out of memory meanwhile). Only
 * what consumers refused counts as offered: a full window whose dispatch
 * was stopped by the budget is never skipped. */
#ifndef STOMPD_QUEUE_H
#define STOMPD_QUEUE_H

#include <bsd/sys/tree.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <uthash.h>

#include "stompd/buf.h"
#include "stompd/commit.h"
#include "stompd/msg.h"

struct dest;
struct sub;
struct durable;

/* A message's place in its queue: (9 - priority, seq). */
struct qkey {
    uint8_t rprio;
    uint64_t seq;
};

struct qentry {
    RB_ENTRY(qentry) node;      /* in its queue's pending tree */
    TAILQ_ENTRY(qentry) link;   /* in its sub's unacked list while in flight */
    struct msg *msg;
    struct queue *q;
    struct sub *sub;            /* set while delivered and unacked */
    uint64_t tag;               /* delivery tag while in flight */
    uint32_t redeliveries;
    uint32_t heap;              /* position + 1 in the expiry heap, 0 when not in it */
    uint64_t marked_lsn;        /* returned: its last delivery mark's entry, or above */
    bool pending;               /* in the tree */
    bool in_txn_ack;            /* covered by an open transaction's held ACK (txn.h) */
    bool unfiltered;            /* a backlog's entry whose selector has not run yet */
    bool shares_charge;         /* its message is charged once for all its dest's entries (msg.h) */
    uint32_t purges;            /* its queue's purges when it came: fewer than now, it was purged in flight */
    UT_hash_handle hh;          /* conn->inflight, keyed by tag */
    UT_hash_handle rh;          /* queue->held, keyed by seq */
};
TAILQ_HEAD(qentry_list, qentry);
RB_HEAD(qtree, qentry);

struct group;
struct gone;

/* The consumers of one priority. Those not known to be full are in its
 * ring, in round-robin order (rr and a stopped scan's end are in it). A
 * pick that finds one full sets it aside (sub->parked) and skips it from
 * then on; it comes back when it has room again (queue_unpark: an ack,
 * its connection's output drained), and a sweep from the top brings all
 * back. Round robin, and the search for any consumer with room while a
 * group waits for its owner, so cost what the consumers with room cost,
 * not what the full ones do. */
struct band {
    uint8_t prio;
    uint32_t n;                 /* consumers of this priority, parked or not */
    TAILQ_HEAD(, sub) ring;
    struct sub *rr;             /* round-robin cursor */
};

struct queue {
    struct dest *dest;          /* charged for memory; named in logs */
    struct durable *durable;    /* non-NULL: the backlog of a durable subscription */
    struct sub *owner;          /* non-NULL: private backlog of one topic subscription */
    struct qtree pending;       /* pending messages in memory */
    uint64_t npending;          /* pending messages, in memory or in the store only */
    uint64_t nresident;         /* of them, in memory */
    int64_t window_bytes;       /* pending persistent bytes in memory (what the window bounds) */
    uint64_t ninflight;
    struct qentry *held;        /* every entry in memory (pending or in flight), by seq */
    /* paging: only queues whose messages the store indexes */
    struct buf kprefix;         /* the index prefix of its message keys (empty: none) */
    bool paged;                 /* some pending messages are only in the store */
    struct qkey limit;          /* while paged: pending messages below it are all in memory */
    bool skipping;              /* messages from skip_from up to limit may be only in the store */
    struct qkey skip_from;
    struct qkey expiry_from;    /* where the next sweep of the store-only part goes on (queue_expire_paged) */
    struct gone *gone;          /* removed from memory, removal not yet indexed (by seq) */
    bool over_window;           /* on the list of queues to shrink once indexed */
    uint64_t shrink_stuck;      /* the store's indexed lsn + 1 when a shrink last left it over the
                                 * window: pushes do not try again until the store indexes more */
    TAILQ_ENTRY(queue) over_link;
    bool read_retry;            /* paging could not read a message for now: on the list to try again */
    TAILQ_ENTRY(queue) retry_link;
    TAILQ_HEAD(sub_list, sub) consumers; /* the highest activemq.priority first, then in arrival order */
    uint32_t nconsumers;
    uint32_t nexclusive;        /* consumers with activemq.exclusive */
    uint32_t purges;            /* queue_purge calls so far */
    uint64_t purged_lsn;        /* the last purge's journal entry: what was journaled up to it is gone */
    /* The consumers by priority (a band each, the highest first): a
     * message goes to the highest band that takes it. */
    struct band **bands;
    uint32_t nbands;
    uint32_t nparked;
    struct group *groups;
    TAILQ_HEAD(, group) group_lru; /* the least recently used first (broker.max_message_groups) */
    bool dirty;
    TAILQ_ENTRY(queue) dirty_link;
    /* Dispatch stopped by the selector budget goes on in a later pass from
     * the pending message at `resume` (or the next one after it), its
     * consumer scan ending at scan_end. */
    bool resuming;
    struct qkey resume;
    struct sub *scan_end;
    uint8_t scan_prio;          /* in the band of this priority */
    bool scan_ready;            /* the scan so far saw a ready consumer */
    bool rescan;                /* since the stop, something ahead of it may be taken now */
    /* Every pending message below seen_to was offered to each consumer
     * whose missed_from (sub.h) is past it, which refused it (selectors do
     * not change their minds): a sweep from the top offers it only to
     * consumers that may have missed it (queue.c dispatch). */
    struct qkey seen_to;
    uint32_t resets;            /* times seen_to went back to the start (skip_reset) */
    bool only_missed;           /* this message is below seen_to (pick) */
    bool starved;               /* stopped with no budget at all: goes first next time */
    struct unsent_list unsent;  /* its auto-ack deliveries still held in their output (commit.h) */
};
TAILQ_HEAD(queue_list, queue);

void queue_init(struct queue *q, struct dest *d);
/* This queue's persistent messages are indexed under prefix (a /queue/'s
 * Q key prefix, a durable subscription's T key prefix): it may page. */
void queue_set_prefix(struct queue *q, const char *prefix, size_t len);
/* Frees every entry in memory; the queue must have no consumers left. */
void queue_destroy(struct queue *q);

/* A new message arrives: dispatched at once when it can be, else kept. */
void queue_push(struct queue *q, struct msg *m);
/* A topic message for a backlog (a subscription's or a durable one's)
 * whose selector could not run within the publish's budget: kept, and
 * filtered by that selector when dispatch reaches it. */
void queue_push_unfiltered(struct queue *q, struct msg *m);
/* Recovery: the store holds n pending messages of this queue (read back
 * as consumers need them). */
void queue_restore(struct queue *q, uint64_t n);
/* Put an entry back (NACK, consumer gone, transaction rolled back) in its
 * place, counted as a redelivery; a message past the redelivery limit goes
 * to the dead-letter queue instead. Returns true when the entry was
 * dead-lettered in a journal entry. */
enum return_why {
    RETURN_NACK,
    RETURN_LOST,    /* its consumer went away */
    RETURN_STOPPED, /* the broker stops: redelivered, never dead-lettered */
};
bool queue_return(struct qentry *e, enum return_why why);
/* Remove an entry for good (acked, expired, purged, moved). */
void queue_entry_done(struct qentry *e);
/* An auto-ack delivery of e whose MESSAGE, from pos, is held in its
 * connection's output (commit_hold_unsent): noted before e is done. */
struct unsent *queue_unsent_new(struct qentry *e, uint64_t pos);
/* Its MESSAGE may go: forgotten. */
void queue_unsent_free(struct unsent *u);
/* It never went (its connection is gone, or its master let go): the
 * message goes back to its place, not counted as a redelivery, and the
 * store gets it back (the dequeue is journaled). Then forgotten. */
void queue_unsent_return(struct unsent *u);

void queue_add_consumer(struct queue *q, struct sub *s);
void queue_remove_consumer(struct queue *q, struct sub *s);
/* s (a consumer of q) has room again: back into q's round robin. */
void queue_unpark(struct queue *q, struct sub *s);

/* Something changed for the consumers (one is ready again, came, went):
 * dispatch, from the top (a stopped dispatch goes on from its stop, then
 * sweeps from the top once more). */
void queue_mark_dirty(struct queue *q);
/* Dispatch everything that can go now. Called from the before-sleep hook. */
void queue_dispatch(struct queue *q);
/* Run every queue marked dirty; returns true when one was dispatched. */
bool queue_dispatch_dirty(void);

/* Drop every pending message (in memory and in the store's view), and
 * what consumers hold once it comes back; returns how many it took (held
 * ones too, *held of them: not those an earlier purge took).
 * The caller journals the purge, in entry lsn (0: not journaled): a
 * message journaled up to it and released to the queue after it (its
 * SEND or COMMIT waited for the entry to be durable) is gone too. */
uint64_t queue_purge(struct queue *q, uint64_t lsn, uint64_t *held);
/* The queue name was deleted (its messages purged in journal entry lsn):
 * a queue made under it again (queue_made, for a new destination's queue)
 * drops what was journaled up to lsn, as queue_purge's queue does.
 * queue_forget_deleted: at the end of the master's life. */
void queue_deleted(const char *name, uint64_t lsn);
void queue_made(struct queue *q);
void queue_forget_deleted(void);
/* Make room for one message: drop the oldest pending message in memory of
 * the lowest priority there (ActiveMQ's oldest-with-lowest-priority
 * eviction; *origin: the destination it was sent to, if it still exists),
 * or expire it, or the first one, if either has expired; a message the
 * selector refuses goes without either (judged on a budget of its own
 * when the current pass has none left). */
enum drop_result { DROP_NONE, DROP_DROPPED, DROP_EXPIRED, DROP_REFUSED };
struct dest;
enum drop_result queue_drop_oldest(struct queue *q, struct dest **origin);

/* The console's view of a queue: up to max pending messages in dispatch
 * order, after `after` (NULL: from the first), read from memory and, for
 * a paged queue, from the store's index without bringing anything into
 * the queue; at most about max_bytes of messages are read (at least one).
 * Expired messages are passed over. Each message in out is referenced
 * (msg_unref each). *next is where a following page starts (the last key
 * returned, or passed over); *more says whether there may be one. */
struct queue_browsed {
    struct msg *msg;
    uint32_t redeliveries;
    bool in_memory;
};
size_t queue_browse(struct queue *q, const struct qkey *after, size_t max, size_t max_bytes,
                    struct queue_browsed *out, struct qkey *next, bool *more);
/* Take the pending message at key k out of the queue (to move it
 * elsewhere): *out is its entry, in no list, no longer counted pending;
 * hand it to queue_entry_done (broker_publish's moved_from does). Read
 * back from the store when it is there only. -EBUSY when it is delivered
 * and not acknowledged, -ENOENT when it is not pending here. */
int queue_take(struct queue *q, struct qkey k, struct qentry **out) __attribute__((warn_unused_result));
/* An entry taken and not moved after all goes back to its place (not a
 * redelivery). */
void queue_put_back(struct qentry *e);

/* Expire what is due among the messages in memory (the periodic sweep):
 * a heap, not a walk over every queue. Returns how many. */
uint64_t queue_expire_due(int64_t now_ms);
/* And among those of paged queues that are in the store only: a bounded
 * stretch of each queue's index a sweep, going on where the last stopped.
 * Returns how many. */
uint64_t queue_expire_paged(int64_t now_ms);

/* The journal was appended up to lsn with nothing left coalesced: what was
 * removed from memory before now is in an entry at or below it. */
void queue_journal_flushed(uint64_t lsn);
/* The store has indexed up to lsn: forget removals it now knows, and
 * shrink queues over their window. */
void queue_indexed(uint64_t lsn);
/* Whether some queue waits for the store to index more, to shrink to its
 * window; and whether removals wait to be forgotten (that can wait for
 * the writer's next index write). */
bool queue_waits_for_index(void);
bool queue_follows_index(void);

#endif
