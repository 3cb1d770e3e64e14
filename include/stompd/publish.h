/* The one way a message enters the broker, whoever produces it: a STOMP
 * SEND, a SEND replayed by COMMIT, the console, a dead-letter move.
 * Every rule applies here, to every producer: the failed-store guard, the
 * duplicate window (_AMQ_DUPL_ID), journaling, "visible only once
 * committed", the memory charge while a message waits, and producer flow
 * control on a full destination, and authorization: a producer with a
 * principal needs write permission on the destination (acl.h). */
#ifndef STOMPD_PUBLISH_H
#define STOMPD_PUBLISH_H

#include <stdbool.h>

struct conn;
struct dest;
struct msg;
struct op;
struct principal;
struct qentry;

struct publish {
    struct conn *conn;          /* the producer's connection, or NULL */
    const struct principal *who; /* on whose behalf: needs write on the
                                 * destination; NULL = the broker itself */
    const char *receipt;        /* answered once the message is accepted */
    const char *dup_id;         /* duplicate-detection id, or NULL */
    struct op *batch;           /* COMMIT replay: join the transaction's entry */
    struct qentry *moved_from;  /* a dead-letter move: the entry leaves its
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

/* Publish m to d. Returns a publish_result, or a negative errno with *why
 * saying why nothing was published (-EACCES: who may not write to d; *why
 * is then the detail and publish_denied() the message). When PUBLISH_WAITING and p->done is
 * set, *waiting (if not NULL) is the op to cancel should the producer go
 * away (op_cancel_notify). The caller keeps its reference to m. */
int broker_publish(struct dest *d, struct msg *m, const struct publish *p, struct op **waiting,
                   const char **why) __attribute__((warn_unused_result));

/* After -EACCES: the ERROR's message (names the permission and the
 * destination). */
const char *publish_denied(void);

#endif
