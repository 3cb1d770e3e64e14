/* Subscriptions: one per SUBSCRIBE on a connection. A queue subscription
 * consumes from its destination's queue; a topic subscription owns a
 * private backlog (or a durable subscription's). Tracks what was delivered
 * and not yet acked, per the ack mode, bounded by the prefetch.
 *
 * A SUBSCRIBE that names several destinations (a composite list) or a
 * wildcard queue pattern has legs: one sub per destination it takes from
 * (a consumer of that queue, or a private backlog of that topic), each
 * pointing at the client's subscription, its root, which alone holds what
 * the client sees: the id, the ack mode, the prefetch shared by every
 * leg, the unacked list in delivery order (so a cumulative ACK covers
 * every leg) and the selector. A wildcard topic subscription needs no
 * legs: it subscribes to the pattern's own destination (dest.h). */
#ifndef STOMPD_SUB_H
#define STOMPD_SUB_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <uthash.h>

#include "stompd/queue.h"

struct conn;
struct dest;
struct selector;
struct durable;

enum ack_mode { ACK_AUTO, ACK_CLIENT, ACK_CLIENT_INDIVIDUAL };

struct sub {
    char *id;                    /* the client's subscription id */
    struct conn *conn;
    struct dest *dest;
    struct queue *q;             /* where its messages come from */
    struct queue own;            /* non-durable topic subscriptions */
    enum ack_mode ack;
    uint32_t prefetch;
    uint32_t inflight;
    int64_t held_bytes;          /* of those: full at broker.dest_memory_limit */
    uint32_t txn_room;           /* of those in flight, the ones an open transaction's held ACK
                                  * covers (txn.h): that much more room */
    struct qentry_list unacked;  /* in delivery order */
    struct sub_mid *by_mid;      /* before STOMP 1.2: unacked by message-id (sub_find_delivery) */
    struct selector *sel;
    struct durable *durable;
    bool exclusive;
    uint8_t priority;            /* activemq.priority: a queue offers to the highest first */
    bool no_local;
    uint64_t delivered;
    uint64_t dropped;            /* discarded: it read too slowly (broker.topic_pending_limit) */
    TAILQ_ENTRY(sub) q_link;     /* in q->consumers */
    TAILQ_ENTRY(sub) ring_link;  /* in its band's ring unless parked */
    bool parked;                 /* found full: out of the ring until it has room */
    /* The first pending message below its queue's seen_to it may not have
     * been offered (it was full, or came since): from it on, a sweep below
     * seen_to offers it what it passes. KEY_END: none (queue.c). */
    struct qkey missed_from;
    bool ready_at_stop;          /* it was ready when its queue's dispatch last stopped (queue.c) */
    TAILQ_ENTRY(sub) topic_link; /* in dest->subscribers */
    UT_hash_handle hh;           /* conn->subs by id */
    /* legs (see above) */
    struct sub *root;            /* a leg: the client's subscription (NULL otherwise) */
    TAILQ_HEAD(, sub) legs;      /* a root: its legs */
    TAILQ_ENTRY(sub) leg_link;
    struct sub *leg_by_dest;     /* a root: its legs by destination */
    UT_hash_handle lh;           /* a leg: in root->leg_by_dest */
    uint32_t nlegs;
    char *spec;                  /* a root: the destination header it was given */
    char **qpatterns;            /* a root: queue patterns whose queues it consumes from, */
    uint32_t nqpatterns;         /* existing and future ones */
    uint64_t fanout;             /* the last topic publish that reached it (once per publish) */
    bool capped;                 /* a root: a destination it matched at SUBSCRIBE was not taken
                                  * (stomp.max_consumers): the SUBSCRIBE is refused */
    bool cap_logged;             /* a root: a queue made later was not taken, and that was logged */
};

/* May s take a message published to the topic named origin? A wildcard
 * topic subscription reads only the topics its user may now: a reload may
 * have taken one away since the message reached its backlog (queue.c). */
bool sub_may_read(const struct sub *s, const char *origin);
/* The subscription a delivery counts against: a leg's root, else itself. */
static inline struct sub *sub_top(struct sub *s) { return s->root ? s->root : s; }
static inline bool sub_has_legs(const struct sub *s) { return s->spec != NULL; }
/* The selector that decides for s: a leg's root's. */
static inline const struct selector *sub_sel(const struct sub *s) { return s->root ? s->root->sel : s->sel; }

/* Can this subscription take one more message now? */
bool sub_ready(const struct sub *s);
/* n more (or, n < 0, fewer) of top subscription t's deliveries are
 * covered by an open transaction's held ACK (txn.h), so that a consumer
 * that takes more messages per transaction than its prefetch is not
 * stalled until its COMMIT. */
void sub_txn_room(struct sub *t, int64_t n);

/* Selector work is bounded by stomp.selector_budget steps: each message
 * routed to a destination gets a pass with that budget (a publish pass),
 * and all dispatching in one loop iteration shares one (the dispatch
 * pass). Passes nest (a dead letter routed while dispatching); outside
 * any, each message gets a budget of its own per loop iteration. */
struct sub_pass {
    int64_t left;
    uint32_t done;             /* verdicts reached in this pass */
    bool dispatch;
    struct sub_pass *outer;
};
void sub_pass_begin(struct sub_pass *p);
void sub_pass_begin_dispatch(struct sub_pass *p);
void sub_pass_end(struct sub_pass *p);
/* This loop iteration's dispatch budget is gone. */
bool sub_dispatch_budget_spent(void);

/* A selector's verdict within the current pass: SUB_LATER when the budget
 * ran out before it was known (ask again in a later pass). A selector that
 * cannot be evaluated even with a whole budget is UNKNOWN, so SUB_NO
 * (logged and counted). NULL selects everything. */
enum sub_verdict { SUB_NO, SUB_YES, SUB_LATER };
enum sub_verdict sub_select(const struct selector *sel, const struct msg *m);

/* Does the subscription's selector accept the message? SUB_LATER counts
 * as yes: callers that cannot wait (a journal entry's durable targets)
 * keep the message, and its copy is filtered before delivery. */
bool sub_matches(const struct sub *s, const struct msg *m);

struct sub_selector_stats {
    uint64_t evaluated;    /* selector evaluations that reached a verdict */
    uint64_t deferred;     /* verdicts put off to a later pass */
    uint64_t over_budget;  /* evaluations that could not finish within a whole budget */
};
void sub_selector_stats(struct sub_selector_stats *out);
/* Write the MESSAGE and track the entry (or finish it, for auto ack). */
void sub_deliver(struct sub *s, struct qentry *e);
/* The first delivery of message mid that t (a top subscription) holds
 * unacked, or NULL: a hash lookup on a connection before STOMP 1.2, whose
 * ACKs name messages so (a list walk on a 1.2 one, whose ACKs name the
 * delivery's ack id, on the error path only). */
struct qentry *sub_find_delivery(struct sub *t, const char *mid);
/* The functions below return true when they journaled something (an ack
 * of a persistent message, a dead-letter move): a receipt waits for it. */
/* Acknowledge: cumulative for ACK_CLIENT, one entry otherwise. */
bool sub_ack(struct sub *s, struct qentry *e);
/* Negative ack: the message(s) go back for redelivery (or to the DLQ). */
bool sub_nack(struct sub *s, struct qentry *e);
/* Return every unacked message to its queue (consumer gone). */
bool sub_release_all(struct sub *s);
/* Detach from queue/topic and free (unacked messages go back first). */
bool sub_destroy(struct sub *s);
/* A topic subscription receives a published message (when its selector
 * accepts it; when the pass's budget is spent, unfiltered for now). */
void sub_publish(struct sub *s, struct msg *m);
/* Every non-durable topic subscription that cannot take more keeps at
 * most limit waiting messages (a lowered broker.topic_pending_limit,
 * reloaded): the oldest go, counted as dropped. */
void sub_trim_backlogs(int64_t limit);
/* A plain subscription takes from d (a consumer of its queue, or a
 * private backlog of topic d). */
void sub_attach(struct sub *s, struct dest *d);
/* A root takes from d too: a consumer of d's queue, or a private backlog
 * of topic d. The caller checks it has no leg on d yet (sub_leg_on). */
struct sub *sub_add_leg(struct sub *root, struct dest *d);
struct sub *sub_leg_on(struct sub *root, struct dest *d);
/* May root take from one more destination within its connection's
 * stomp.max_consumers? A SUBSCRIBE that cannot take from every destination
 * it names or matches now is refused; a queue created later that the
 * connection has no room for is left to its other consumers, counted
 * (sub_legs_refused) and logged once per subscription. */
bool sub_leg_allowed(const struct sub *root);
/* Consumers (what subscriptions take from) counted on c and broker-wide;
 * the key of the limit one more would go over (NULL: none). */
void sub_consumer_add(struct conn *c);
void sub_consumer_del(struct conn *c);
uint64_t sub_consumers(void);
const char *sub_consumer_limit(const struct conn *c);
void sub_count_refused_leg(struct sub *root, const struct dest *d);
uint64_t sub_legs_refused(void);
/* The subscription may take more: its queues (every leg's) are looked at
 * again before the loop sleeps. */
void sub_wake(struct sub *s);

#endif
