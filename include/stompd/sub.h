/* Subscriptions: one per SUBSCRIBE on a connection. A queue subscription
 * consumes from its destination's queue; a topic subscription owns a
 * private backlog (or a durable subscription's). Tracks what was delivered
 * and not yet acked, per the ack mode, bounded by the prefetch. */
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
    struct qentry_list unacked;  /* in delivery order */
    struct selector *sel;
    struct durable *durable;
    bool exclusive;
    bool no_local;
    uint64_t delivered;
    TAILQ_ENTRY(sub) q_link;     /* in q->consumers */
    TAILQ_ENTRY(sub) topic_link; /* in dest->subscribers */
    UT_hash_handle hh;           /* conn->subs by id */
};

/* Can this subscription take one more message now? */
bool sub_ready(const struct sub *s);
/* Does the subscription's selector accept the message? */
bool sub_matches(const struct sub *s, const struct msg *m);
/* Write the MESSAGE and track the entry (or finish it, for auto ack). */
void sub_deliver(struct sub *s, struct qentry *e);
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
/* A topic subscription receives a published message. */
void sub_publish(struct sub *s, struct msg *m);

#endif
