/* The one way a message enters the broker, whoever produces it: a STOMP
 * SEND, a SEND replayed by COMMIT, the console, a move (dead-lettering,
 * the console's moves and retries), a scheduled message firing. Every rule applies here, to every producer:
 * the failed-store guard, the duplicate window (_AMQ_DUPL_ID),
 * scheduling (AMQ_SCHEDULED_*, sched.h), journaling, "visible only once
 * committed", the memory charge while a message waits, and producer flow
 * control on a full destination. A message routed to several
 * destinations (a composite list, a virtual topic: route.h) goes to each
 * as its own copy, all journaled in one entry and answered once.
 * Authorization (acl.h) is route.c's, applied to every destination the
 * route holds before it gets here (route_send: write on each, admin to
 * create one; the console's send and moves too, for the console's
 * user): broker_publish itself checks nothing twice. */
#ifndef STOMPD_PUBLISH_H
#define STOMPD_PUBLISH_H

#include <stdbool.h>

struct conn;
struct dest;
struct msg;
struct op;
struct qentry;
struct route;

struct publish {
    struct conn *conn;          /* the producer's connection, or NULL */
    bool fired;                 /* a scheduled message firing: delivered now, never scheduled again */
    const char *receipt;        /* answered once the message is accepted */
    const char *dup_id;         /* duplicate-detection id, or NULL */
    struct op *batch;           /* COMMIT replay: join the transaction's entry */
    struct qentry *moved_from;  /* a move (r: its one queue): the entry leaves its
                                 * queue in the same journal entry; a move
                                 * never waits for room */
    /* Producers without a connection (the console): told once the
     * message is accepted (ok) or refused by the store. */
    void (*done)(void *arg, bool ok);
    void *arg;
};

enum publish_result {
    PUBLISH_DONE = 0,       /* accepted now: answer now */
    PUBLISH_DUPLICATE = 1,  /* a resend of an accepted message, dropped: answer now */
    PUBLISH_WAITING = 2,    /* accepted; the answer comes later (receipt or done) */
};

/* Publish m to the destinations of r (m->dest is r->spec: several names
 * for a composite). Returns a publish_result, or a negative errno with
 * *why saying why nothing was published (-EIO: the store failed;
 * -EINVAL: a bad scheduling header; -ENOMEM: no memory for a
 * non-persistent scheduled message). When PUBLISH_WAITING and p->done is
 * set, *waiting (if not NULL) is the op to cancel should the producer go
 * away (op_cancel_notify). The caller keeps its reference to m. */
int broker_publish(const struct route *r, struct msg *m, const struct publish *p, struct op **waiting,
                   const char **why) __attribute__((warn_unused_result));

#endif
