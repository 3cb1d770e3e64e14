/* A queue of messages waiting for consumers: ten FIFO lists by priority,
 * each kept in arrival (seq) order so redelivered messages return to their
 * place. Used for /queue/ destinations, for each topic subscription's
 * private backlog and for durable subscriptions. Dispatch is round-robin
 * over ready consumers, honouring selectors, exclusive consumers and
 * message groups. */
#ifndef STOMPD_QUEUE_H
#define STOMPD_QUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <uthash.h>

#include "stompd/msg.h"

struct dest;
struct sub;
struct durable;

struct qentry {
    TAILQ_ENTRY(qentry) link;   /* in a pending list, or its sub's unacked list */
    struct msg *msg;
    struct queue *q;
    struct sub *sub;            /* set while delivered and unacked */
    uint64_t tag;               /* delivery tag while in flight */
    uint32_t redeliveries;
    bool in_txn_ack;            /* acked inside an open transaction */
    bool unfiltered;            /* a backlog's entry whose selector has not run yet */
    UT_hash_handle hh;          /* conn->inflight, keyed by tag */
};
TAILQ_HEAD(qentry_list, qentry);

struct group;

struct queue {
    struct dest *dest;          /* charged for memory; named in logs */
    struct durable *durable;    /* non-NULL: the backlog of a durable subscription */
    struct sub *owner;          /* non-NULL: private backlog of one topic subscription */
    struct qentry_list pending[MSG_PRIORITIES];
    uint64_t npending;
    uint64_t ninflight;
    TAILQ_HEAD(, sub) consumers;
    uint32_t nconsumers;
    struct sub *rr;             /* round-robin cursor */
    struct group *groups;
    bool dirty;
    TAILQ_ENTRY(queue) dirty_link;
    /* Dispatch stopped by the selector budget goes on from here in a later
     * pass: this pending entry, its consumer scan ending at scan_end. */
    struct qentry *resume;
    struct sub *scan_end;
    bool scan_ready;            /* the scan so far saw a ready consumer */
    bool rescan;                /* something was put ahead of resume meanwhile */
    bool starved;               /* stopped with no budget at all: goes first next time */
};
TAILQ_HEAD(queue_list, queue);

void queue_init(struct queue *q, struct dest *d);
/* Frees every pending entry; the queue must have no consumers left. */
void queue_destroy(struct queue *q);

/* A new message arrives: appended, dispatched at once when it can be. */
void queue_push(struct queue *q, struct msg *m);
/* A topic message for a backlog (a subscription's or a durable one's)
 * whose selector could not run within the publish's budget: appended,
 * filtered by that selector when dispatch reaches it. */
void queue_push_unfiltered(struct queue *q, struct msg *m);
/* A message restored from the store at start (not journaled again). */
void queue_push_recovered(struct queue *q, struct msg *m, uint32_t redeliveries);
/* Put an entry back (NACK, consumer gone, transaction rolled back) in
 * arrival order, counted as a redelivery; a message past the redelivery
 * limit goes to the dead-letter queue instead. */
enum return_why { RETURN_NACK, RETURN_LOST };
void queue_return(struct qentry *e, enum return_why why);
/* Remove an entry for good (acked, expired, purged, moved). */
void queue_entry_done(struct qentry *e);

void queue_add_consumer(struct queue *q, struct sub *s);
void queue_remove_consumer(struct queue *q, struct sub *s);

void queue_mark_dirty(struct queue *q);
/* Dispatch everything that can go now. Called from the before-sleep hook. */
void queue_dispatch(struct queue *q);
/* Run every queue marked dirty; returns true when one was dispatched. */
bool queue_dispatch_dirty(void);

/* Drop every pending message; returns how many. */
uint64_t queue_purge(struct queue *q);

/* Drop expired pending messages now (the periodic sweep). */
uint64_t queue_expire_sweep(struct queue *q, int64_t now_ms);

#endif
