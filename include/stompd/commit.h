/* Completion of client frames in order. A frame whose effect must wait (a
 * persistent SEND until its journal entry is committed, a SEND to a full
 * destination until there is room) becomes an op; ops finish in frame order
 * per connection, so RECEIPTs come back in order and a DISCONNECT receipt
 * means everything before it is done. An op whose connection closed still
 * releases its messages when committed: what is durable must be delivered. */
#ifndef STOMPD_COMMIT_H
#define STOMPD_COMMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct conn;
struct dest;
struct msg;
struct qentry;
struct queue;

enum op_kind {
    OP_RECEIPT,     /* answer a receipt once earlier ops are done */
    OP_COMMIT,      /* wait for a journal lsn, then release messages */
    OP_ROOM,        /* wait for room in a destination */
    OP_BATCH,       /* a COMMIT being replayed: becomes OP_COMMIT or OP_RECEIPT */
};

struct op {
    enum op_kind kind;
    uint64_t lsn;           /* OP_COMMIT: journal position to wait for */
    bool done;
    bool submitted;         /* op_submit has it: only then may the room path free it */
    bool closes;            /* then the connection closes (a DISCONNECT) */
    double t;               /* when it was submitted (ev_now) */
    bool failed;            /* the store refused it: ERROR instead of RECEIPT */
    struct conn *conn;      /* NULL once the connection is gone */
    char *receipt;          /* receipt id to answer, or NULL */
    char *error, *error_detail; /* an ERROR to answer instead (op_refusal), or NULL */
    struct msg **msgs;      /* messages released on commit */
    uint32_t nmsgs;
    int64_t reserved;       /* bytes of its messages charged to the memory limit */
    char **dups;            /* duplicate-detection ids recorded once its lsn is known */
    uint32_t ndups;
    struct dest *room;      /* waits for room in this destination */
    bool store_wait;        /* waits for room in the store (broker.store_limit) */
    void (*notify)(void *arg, bool ok);
    void *notify_arg;
    TAILQ_ENTRY(op) conn_link;
    TAILQ_ENTRY(op) commit_link;
    TAILQ_ENTRY(op) dest_link;  /* in room->blocked, or the store's waiters */
};
TAILQ_HEAD(op_list, op);

/* Constructors: an op is made by one of these, filled with op_add_* and
 * handed over with op_submit; nothing outside this module touches its
 * fields. */
/* Answer a receipt once the connection's earlier ops are done. */
struct op *op_receipt(struct conn *c, const char *receipt);
/* Wait for journal entry lsn, then release the op's messages. */
struct op *op_commit(struct conn *c, const char *receipt, uint64_t lsn);
/* Wait for room in d (the producer's frame was accepted; its receipt and
 * its next frames wait). */
struct op *op_room(struct conn *c, const char *receipt, struct dest *d);
/* One of c's ops waits for room (a full destination, broker.store_limit):
 * for as long as consumers take, unlike a wait for the store. */
bool op_conn_waits_room(const struct conn *c);
/* ERROR (message, the refused frame's receipt, detail) once the
 * connection's earlier ops are answered, then the close. */
struct op *op_refusal(struct conn *c, const char *message, const char *receipt, const char *detail);
/* A receipt (optional) once journal entry lsn is committed (0: at once),
 * and then the close. */
struct op *op_disconnect(struct conn *c, const char *receipt, uint64_t lsn);
/* A transaction's COMMIT: collects messages (op_add_reserved_msg) and
 * duplicate ids while its frames are replayed, then op_batch_close says
 * which journal entry holds them (0: none; nothing to wait for). */
struct op *op_batch(struct conn *c, const char *receipt);
void op_batch_close(struct op *op, uint64_t lsn);
void op_add_msg(struct op *op, struct msg *m);
/* Also charge the message to the broker's memory until it is released. */
void op_add_reserved_msg(struct op *op, struct msg *m);
/* A duplicate-detection id of the batch: remembered now (the batch's
 * later frames see it), at the batch's entry once closed. */
void op_add_dup(struct op *op, const char *dup_id);
/* The op also waits for room in d (a batch whose destination filled up). */
void op_wait_room(struct op *op, struct dest *d);
/* The op also waits for the store to be below broker.store_limit again. */
void op_wait_store(struct op *op);
/* The store has room again: every op waiting for it goes on. */
void op_store_free(void);
/* An op without a connection (the console's sends) may ask to be told
 * when it is done: ok is false when the store refused it. */
void op_notify(struct op *op, void (*fn)(void *arg, bool ok), void *arg);
/* Whoever asked is gone: no call (the op still releases its messages). */
void op_cancel_notify(struct op *op);
/* Queue op behind the connection's earlier ops (and in the commit order
 * when it has an lsn). */
void op_submit(struct op *op);
/* Finish whatever can finish on this connection, in order. */
void op_drain_conn(struct conn *c);
/* d has room again: every op waiting for it goes on. */
void op_room_free(struct dest *d);
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
/* What a delivery's output waits for: its entry committed (a delivery
 * mark), or shipped (an auto-ack dequeue: in the kernel's hands where a
 * restart or a new master reads it: enough slaves' sockets on a master
 * that waits for slaves, else the local log). */
enum hold_kind { HOLD_NONE = 0, HOLD_COMMIT = 1, HOLD_SHIPPED = 2 };
/* c's output from pos (stream_out_pos before the delivery was written)
 * waits for the entry that will carry the journal ops coalesced so far
 * (commit_hold_assign). */
void commit_hold(struct conn *c, uint64_t pos, enum hold_kind kind);
/* An auto-ack delivery whose MESSAGE waits in its connection's output
 * for its dequeue (HOLD_SHIPPED). Should the connection go first, the
 * message was never delivered, yet its dequeue is journaled: it goes back
 * to its queue, in the journal too (queue_unsent_return), or a quorum that
 * came back would commit the dequeue of a receipted message nobody got
 * (helper-113). The record goes once its hold is released. */
struct unsent {
    TAILQ_ENTRY(unsent) c_link; /* its connection's, in output order */
    TAILQ_ENTRY(unsent) q_link; /* its queue's, while the queue lives (q) */
    struct queue *q;            /* NULL once the queue is gone */
    struct msg *msg;
    uint64_t pos;               /* where its MESSAGE starts in the output */
    uint32_t redeliveries;      /* its entry's, before this delivery */
    uint32_t purges;            /* its queue's when it left: purged since, it stays gone */
};
TAILQ_HEAD(unsent_list, unsent);
/* e (delivered to c from pos, auto-ack, its output held) waits with it;
 * call before e is done. */
void commit_hold_unsent(struct conn *c, struct qentry *e, uint64_t pos);
/* Every held auto-ack delivery goes back (in the journal, and to the
 * slaves that may have its dequeue), and the output held is dropped, so
 * nothing given back is sent as well: a master letting go (answered_too:
 * its connections close at once, their output unsent), or a stopping one,
 * except where an answer follows them (commit_holds_closing). */
void commit_holds_give_back(bool answered_too);
/* c closes (DISCONNECT, or its peer closed its side): auto-ack deliveries
 * held with no answer after them (a RECEIPT the peer waits for, reading
 * until it comes) are given back rather than written once released to a
 * peer that most likely reads no more (helper-113's quorum came back
 * while the closed consumer lingered, and its messages went nowhere). */
void commit_holds_closing(struct conn *c);
/* Entries up to lsn are shipped (see HOLD_SHIPPED). */
void commit_shipped(uint64_t lsn);
/* The coalesced journal ops were appended as entry lsn (0: dropped).
 * Returns the kinds of holds that now wait for it. */
unsigned commit_hold_assign(uint64_t lsn);
/* Holds wait for the coalesced ops' entry (commit_hold_assign to come). */
bool commit_holds_unassigned(void);
/* The local log failed at lsn and no slave has lsn (see on_fail): the
 * output held for lsn or later, or for an entry not appended yet, would
 * never go. It is dropped with all that follows it (a delivery in it was
 * never dequeued in the store), so what the connection is told next, its
 * failed sends' ERROR, is not held behind it until the broker stops
 * (conn_output_lost). */
void commit_holds_fail_from(uint64_t lsn, const char *why);
/* The output held for entries up to lsn goes; UINT64_MAX: every held
 * output, appended yet or not (the broker stops, its journal written). */
void commit_hold_release_upto(uint64_t lsn);
/* Some output waits for the journal. */
bool commit_holds_any(void);
/* How many bytes of c's output may go now (SIZE_MAX: all). */
size_t commit_output_allowed(const struct conn *c);
void commit_hold_forget(struct conn *c);
uint64_t commit_lsn(void);
/* The highest lsn anything has waited for (an op, a held output): an
 * entry above it has no waiter yet. */
uint64_t commit_wanted(void);
void commit_reset(uint64_t lsn);
size_t commit_waiting(void);
/* When the oldest op still waiting for the journal was submitted (ev_now);
 * 0 when none waits. */
double commit_oldest(void);
void commit_free_all(void);

#endif
