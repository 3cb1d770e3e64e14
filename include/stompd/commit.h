/* Completion of client frames in order. A frame whose effect must wait (a
 * persistent SEND until its journal entry is committed, a SEND to a full
 * destination until there is room) becomes an op; ops finish in frame order
 * per connection, so RECEIPTs come back in order and a DISCONNECT receipt
 * means everything before it is done. An op whose connection closed still
 * releases its messages when committed: what is durable must be delivered. */
#ifndef STOMPD_COMMIT_H
#define STOMPD_COMMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

struct conn;
struct dest;
struct msg;

enum op_kind {
    OP_RECEIPT,     /* answer a receipt once earlier ops are done */
    OP_COMMIT,      /* wait for a journal lsn, then release messages */
    OP_ROOM,        /* wait for room in a destination */
    OP_DISCONNECT,  /* receipt (optional) then close */
};

struct op {
    enum op_kind kind;
    uint64_t lsn;           /* OP_COMMIT: journal position to wait for */
    bool done;
    double t;               /* when it was submitted (ev_now) */
    bool failed;            /* the store refused it: ERROR instead of RECEIPT */
    struct conn *conn;      /* NULL once the connection is gone */
    char *receipt;          /* receipt id to answer, or NULL */
    struct msg **msgs;      /* messages released on commit */
    uint32_t nmsgs;
    int64_t reserved;       /* bytes of its messages charged to the memory limit */
    char **dups;            /* duplicate-detection ids recorded once its lsn is known */
    uint32_t ndups;
    struct dest *room;      /* OP_ROOM */
    /* An op without a connection (the HTTP console's sends) may ask to be
     * told when it is done: ok is false when the store refused it. */
    void (*notify)(void *arg, bool ok);
    void *notify_arg;
    TAILQ_ENTRY(op) conn_link;
    TAILQ_ENTRY(op) commit_link;
    TAILQ_ENTRY(op) dest_link;
};
TAILQ_HEAD(op_list, op);

struct op *op_new(enum op_kind kind, struct conn *c, const char *receipt);
void op_add_msg(struct op *op, struct msg *m);
/* Also charge the message to the broker's memory until it is released. */
void op_add_reserved_msg(struct op *op, struct msg *m);
void op_add_dup(struct op *op, const char *dup_id);
/* Queue op behind the connection's earlier ops (and in the commit order
 * when it has an lsn). */
void op_submit(struct op *op);
/* Finish whatever can finish on this connection, in order. */
void op_drain_conn(struct conn *c);
/* The journal is durable (or quorum-acked) up to lsn: finish what waited. */
void commit_advance(uint64_t lsn);
/* The store failed every entry from lsn on: their ops answer ERROR. */
void commit_fail_from(uint64_t lsn, const char *why);
/* Ops with a receipt waiting for the journal since before `before`:
 * their producers get ERROR (the op itself stays, and still releases its
 * messages if they commit later). */
void commit_expire(double before, const char *why);
/* The connection is closing: detach its ops (commits still release). */
void op_orphan_conn(struct conn *c);
/* A destination has room again. */
void op_room_available(struct op *op);
uint64_t commit_lsn(void);
void commit_reset(uint64_t lsn);
size_t commit_waiting(void);
/* When the oldest op still waiting for the journal was submitted (ev_now);
 * 0 when none waits. */
double commit_oldest(void);
void commit_free_all(void);

#endif
