/* Ops: frames whose effect or answer waits. Each connection keeps its ops
 * in frame order and answers them in that order; ops that wait for the
 * journal are also kept in lsn order so commits release messages in the
 * order they were sent, whether or not their connection is still open. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "stompd/commit.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/dup.h"
#include "stompd/log.h"
#include "stompd/msg.h"
#include "stompd/queue.h"
#include "stompd/server.h"

static struct op_list commit_q = TAILQ_HEAD_INITIALIZER(commit_q);
static uint64_t committed;
static size_t ncommit_q;
/* the highest lsn an op or a held output waits for: entries above it have
 * no waiter yet (a slave may hold its ACK of them) */
static uint64_t wanted;

static void want(uint64_t lsn)
{
    if (lsn > wanted)
        wanted = lsn;
}

static struct op_list store_waiters = TAILQ_HEAD_INITIALIZER(store_waiters);
static void op_free(struct op *op);

/* Waits for room, in a destination or in the store. */
static bool waits(const struct op *op)
{
    return op->room || op->store_wait;
}

static void room_leave(struct op *op)
{
    if (waits(op) && op->conn)
        op->conn->nops_waiting_room--;
    if (op->room) {
        TAILQ_REMOVE(&op->room->blocked, op, dest_link);
        op->room = NULL;
    } else if (op->store_wait) {
        TAILQ_REMOVE(&store_waiters, op, dest_link);
        op->store_wait = false;
    }
}

void op_wait_store(struct op *op)
{
    if (op->room || op->store_wait)
        return;
    op->store_wait = true;
    if (op->conn)
        op->conn->nops_waiting_room++;
    TAILQ_INSERT_TAIL(&store_waiters, op, dest_link);
}

/* An op waiting for room (in a destination or the store) has it: its
 * connection goes on, or one without a connection is done with. */
static void woken(struct op *op)
{
    room_leave(op);
    if (op->conn)
        op_drain_conn(op->conn);
    else if ((op->kind != OP_COMMIT || op->done) && op->submitted)
        op_free(op); /* one not yet submitted (a batch being closed) is op_submit's to free */
}

void op_store_free(void)
{
    struct op *op;
    while ((op = TAILQ_FIRST(&store_waiters))) {
        woken(op);
    }
}

static struct op *op_new(enum op_kind kind, struct conn *c, const char *receipt)
{
    struct op *op = calloc(1, sizeof *op);
    if (!op)
        abort();
    op->kind = kind;
    op->conn = c;
    if (receipt && !(op->receipt = strdup(receipt)))
        abort();
    return op;
}

struct op *op_receipt(struct conn *c, const char *receipt)
{
    return op_new(OP_RECEIPT, c, receipt);
}

struct op *op_commit(struct conn *c, const char *receipt, uint64_t lsn)
{
    struct op *op = op_new(OP_COMMIT, c, receipt);
    op->lsn = lsn;
    return op;
}

struct op *op_room(struct conn *c, const char *receipt, struct dest *d)
{
    struct op *op = op_new(OP_ROOM, c, receipt);
    op_wait_room(op, d);
    return op;
}

struct op *op_disconnect(struct conn *c, const char *receipt, uint64_t lsn)
{
    struct op *op = lsn ? op_commit(c, receipt, lsn) : op_receipt(c, receipt);
    op->closes = true;
    return op;
}

struct op *op_refusal(struct conn *c, const char *message, const char *receipt, const char *detail)
{
    struct op *op = op_new(OP_RECEIPT, c, receipt);
    if (!(op->error = strdup(message)) || (detail && !(op->error_detail = strdup(detail))))
        abort();
    op->closes = true;
    return op;
}

static void release(struct op *op);

struct op *op_batch(struct conn *c, const char *receipt)
{
    return op_new(OP_BATCH, c, receipt);
}

void op_batch_close(struct op *op, uint64_t lsn)
{
    for (uint32_t i = 0; i < op->ndups; i++)
        dup_set_lsn(op->dups[i], lsn);
    if (lsn) {
        op->kind = OP_COMMIT;
        op->lsn = lsn;
        for (uint32_t i = 0; i < op->nmsgs; i++)
            if (op->msgs[i]->journaled)
                op->msgs[i]->lsn = lsn; /* its messages are in that entry */
    } else {
        /* nothing to wait for: its messages (none journaled) go at once */
        op->kind = OP_RECEIPT;
        op->done = true;
        release(op);
    }
}

void op_wait_room(struct op *op, struct dest *d)
{
    if (waits(op))
        return;
    dest_note_blocked(d);
    op->room = d;
    if (op->conn)
        op->conn->nops_waiting_room++;
    TAILQ_INSERT_TAIL(&d->blocked, op, dest_link);
    log_debug("destination %s full (%lld bytes): producer paused", d->name, (long long)d->mem);
}

void op_notify(struct op *op, void (*fn)(void *arg, bool ok), void *arg)
{
    op->notify = fn;
    op->notify_arg = arg;
}

void op_cancel_notify(struct op *op)
{
    op->notify = NULL;
    op->notify_arg = NULL;
}

/* v (n elements of size bytes) with room for one more: the array
 * doubles, 4 to begin with, so a COMMIT of 100,000 SENDs makes 15
 * reallocs, not 100,000 (helper-96: quadratic under ASan). */
static void *room_for(void *v, size_t n, size_t size)
{
    if (n < 4 ? n != 0 : (n & (n - 1)) != 0)
        return v;
    void *grown = realloc(v, (n < 4 ? 4 : 2 * n) * size);
    if (!grown)
        abort();
    return grown;
}

void op_add_msg(struct op *op, struct msg *m)
{
    op->msgs = room_for(op->msgs, op->nmsgs, sizeof *op->msgs);
    op->msgs[op->nmsgs++] = msg_ref(m);
}

void op_add_reserved_msg(struct op *op, struct msg *m)
{
    op_add_msg(op, m);
    op->reserved += (int64_t)m->size;
    dest_reserve((int64_t)m->size);
}

void op_add_dup(struct op *op, const char *dup_id)
{
    /* seen at once, by the batch's later frames too; the lsn comes at
     * op_batch_close */
    dup_remember(dup_id, UINT64_MAX, true);
    op->dups = room_for(op->dups, op->ndups, sizeof *op->dups);
    if (!(op->dups[op->ndups] = strdup(dup_id)))
        abort();
    op->ndups++;
}

static void unreserve(struct op *op)
{
    if (op->reserved) {
        int64_t r = op->reserved;
        op->reserved = 0; /* first: the drain below may come back to this op */
        dest_reserve(-r);
    }
}

static void op_free(struct op *op)
{
    room_leave(op);
    unreserve(op);
    for (uint32_t i = 0; i < op->ndups; i++)
        free(op->dups[i]);
    free(op->dups);
    if (op->notify) {
        void (*fn)(void *, bool) = op->notify;
        op->notify = NULL;
        fn(op->notify_arg, !op->failed);
    }
    for (uint32_t i = 0; i < op->nmsgs; i++)
        msg_unref(op->msgs[i]);
    free(op->msgs);
    free(op->receipt);
    free(op->error);
    free(op->error_detail);
    free(op);
}

static bool op_ready(const struct op *op)
{
    if (op->kind == OP_COMMIT && !op->done)
        return false;
    return !waits(op);
}

/* Deliver the messages of a committed op to their destinations. A
 * temporary destination whose owner has gone takes nothing. */
static void release(struct op *op)
{
    unreserve(op);
    for (uint32_t i = 0; i < op->nmsgs; i++) {
        struct msg *m = op->msgs[i];
        if (!op->failed) {
            const char *err;
            enum dest_kind kind;
            struct dest *d = dest_find(m->dest);
            if (!d && dest_kind_of(m->dest, &kind, &err) == 0 &&
                kind != DEST_TEMP_QUEUE && kind != DEST_TEMP_TOPIC)
                d = dest_get(m->dest, NULL, &err);
            if (d)
                dest_deliver(d, m);
        }
        msg_unref(m);
    }
    free(op->msgs);
    op->msgs = NULL;
    op->nmsgs = 0;
}

void op_submit(struct op *op)
{
    struct conn *c = op->conn;
    op->submitted = true;
    op->t = ev_now(srv.loop);
    if (op->kind == OP_COMMIT) {
        if (op->lsn <= committed) {
            op->done = true;
            release(op);
        } else {
            TAILQ_INSERT_TAIL(&commit_q, op, commit_link);
            ncommit_q++;
            want(op->lsn);
        }
    }
    if (!c) {
        /* no connection to answer: done now, or when committed and
         * there is room */
        if ((op->kind != OP_COMMIT || op->done) && !waits(op))
            op_free(op);
        return;
    }
    TAILQ_INSERT_TAIL(&c->ops, op, conn_link);
    c->nops++;
    if (c->nops >= (uint32_t)config.pending_limit)
        conn_pause(c, PAUSE_PENDING);
    if (waits(op)) {
        conn_pause(c, PAUSE_ROOM);
        conn_watch_peer(c);
    }
    op_drain_conn(c);
}

void op_drain_conn(struct conn *c)
{
    struct op *op;
    while ((op = TAILQ_FIRST(&c->ops)) && op_ready(op)) {
        TAILQ_REMOVE(&c->ops, op, conn_link);
        c->nops--;
        if (c->state == CONN_OPEN || c->state == CONN_HANDSHAKE) {
            if (op->failed) {
                conn_error(c, "message not stored", op->receipt,
                           op->closes ? "The broker could not make the acknowledgements sent before DISCONNECT "
                                        "durable; the messages will be delivered again."
                                      : "The broker could not make a persistent message durable; it was not accepted.");
            } else if (op->error) {
                conn_error(c, op->error, op->receipt, op->error_detail);
            } else {
                if (op->receipt)
                    conn_send_receipt(c, op->receipt);
                if (op->closes)
                    conn_close_after_flush(c);
            }
        }
        op_free(op);
    }
    if (c->state != CONN_OPEN)
        return;
    if (c->nops < (uint32_t)config.pending_limit / 2 + 1)
        conn_resume(c, PAUSE_PENDING);
    if (!op_conn_waits_room(c))
        conn_resume(c, PAUSE_ROOM);
}

bool op_conn_waits_room(const struct conn *c)
{
    /* counted: a walk of the connection's ops at each drain was a third
     * of the loop with pipelined persistent sends (stop 53's profile) */
    return c->nops_waiting_room > 0;
}

/* ------------------------------------------------------------ held output
 * Deliveries of persistent messages to client-ack subscribers leave only
 * once their delivery mark is durable, so a crash cannot hide that they
 * were delivered (they come back with redelivered:true). An auto-ack
 * delivery's dequeue is held to its store's copy the same way on a
 * standalone node; on a master, until it is in the kernel's hands for as
 * many slaves as the sync modes wait for (shipped), so a new master has
 * it without a round trip more per delivery.
 *
 * A hold is a mark in the connection's output: the bytes before the
 * first mark not yet released go (earlier deliveries, receipts), the rest
 * waits. A mark not yet assigned its entry (the journal ops coalesce
 * until the round's end) takes the holds that come after it: they go in
 * the same entry. */

struct hold_mark {
    uint64_t pos;   /* where the held delivery starts (stream_out_pos) */
    uint64_t lsn;   /* its entry, once assigned */
    uint8_t kinds;  /* HOLD_COMMIT, HOLD_SHIPPED */
    bool assigned;
};

/* Connections whose output waits for the journal, and those about to. */
static struct conn_list held = TAILQ_HEAD_INITIALIZER(held);
static struct conn **hold_new;
static size_t nhold_new, cap_hold_new;
static uint64_t shipped;

void commit_hold(struct conn *c, uint64_t pos, enum hold_kind kind)
{
    if (kind == HOLD_NONE)
        return;
    if (c->nholds > c->hold_head && !c->holds[c->nholds - 1].assigned) {
        c->holds[c->nholds - 1].kinds |= (uint8_t)kind; /* already held from there */
        return;
    }
    if (c->nholds == c->cap_holds) {
        c->cap_holds = c->cap_holds ? c->cap_holds * 2 : 4;
        c->holds = realloc(c->holds, c->cap_holds * sizeof *c->holds);
        if (!c->holds)
            abort();
    }
    c->holds[c->nholds++] = (struct hold_mark){pos, 0, (uint8_t)kind, false};
    if (nhold_new == cap_hold_new) {
        cap_hold_new = cap_hold_new ? cap_hold_new * 2 : 64;
        hold_new = realloc(hold_new, cap_hold_new * sizeof *hold_new);
        if (!hold_new)
            abort();
    }
    hold_new[nhold_new++] = c;
}

void commit_hold_unsent(struct conn *c, struct qentry *e, uint64_t pos)
{
    struct unsent *u = queue_unsent_new(e, pos);
    TAILQ_INSERT_TAIL(&c->unsent, u, c_link);
}

/* Where c's output stops for a mark not released (UINT64_MAX: nowhere). */
static uint64_t held_from(const struct conn *c)
{
    return c->hold_head < c->nholds ? c->holds[c->hold_head].pos : UINT64_MAX;
}

/* The auto-ack deliveries before the first mark not released may go:
 * forgotten. */
static void unsent_settle(struct conn *c)
{
    uint64_t from = held_from(c);
    struct unsent *u;
    while ((u = TAILQ_FIRST(&c->unsent)) && u->pos < from) {
        TAILQ_REMOVE(&c->unsent, u, c_link);
        queue_unsent_free(u);
    }
}

/* Those from pos on will never go: back to their queues. */
static void unsent_return_from(struct conn *c, uint64_t pos)
{
    struct unsent *u;
    while ((u = TAILQ_LAST(&c->unsent, unsent_list)) && u->pos >= pos) {
        TAILQ_REMOVE(&c->unsent, u, c_link);
        queue_unsent_return(u);
    }
}

static void marks_pop(struct conn *c);

unsigned commit_hold_assign(uint64_t lsn)
{
    unsigned kinds = 0;
    for (size_t i = 0; i < nhold_new; i++) {
        struct conn *c = hold_new[i];
        if (!c || c->nholds == c->hold_head || c->holds[c->nholds - 1].assigned)
            continue; /* forgotten, or listed twice */
        struct hold_mark *m = &c->holds[c->nholds - 1];
        m->lsn = lsn;
        m->assigned = true;
        kinds |= m->kinds;
        if (m->kinds & HOLD_COMMIT)
            want(lsn);
        if (!c->in_held && c->state != CONN_DEAD) {
            c->in_held = true;
            TAILQ_INSERT_TAIL(&held, c, held_link);
        }
        marks_pop(c); /* an entry dropped (0), or one already there */
    }
    nhold_new = 0;
    return kinds;
}

/* c holds nothing more: off the held list, its marks emptied. */
static void marks_clear(struct conn *c)
{
    c->hold_head = c->nholds = 0;
    if (c->in_held) {
        TAILQ_REMOVE(&held, c, held_link);
        c->in_held = false;
    }
}

static bool mark_released(const struct hold_mark *m)
{
    if (!m->assigned)
        return false;
    if (m->lsn <= committed)
        return true; /* the stronger: the copies the sync modes count, written */
    return !(m->kinds & HOLD_COMMIT) && m->lsn <= shipped;
}

/* Drop c's released marks from the front; what they held may go. */
static void marks_pop(struct conn *c)
{
    uint32_t head = c->hold_head;
    while (c->hold_head < c->nholds && mark_released(&c->holds[c->hold_head]))
        c->hold_head++;
    if (c->hold_head == head)
        return;
    if (c->hold_head == c->nholds)
        marks_clear(c);
    unsent_settle(c);
    conn_want_flush(c);
}

static void hold_release(void)
{
    struct conn *c, *next;
    for (c = TAILQ_FIRST(&held); c; c = next) {
        next = TAILQ_NEXT(c, held_link);
        marks_pop(c);
    }
}

void commit_shipped(uint64_t lsn)
{
    if (lsn <= shipped)
        return;
    shipped = lsn;
    hold_release();
}

bool commit_holds_unassigned(void)
{
    return nhold_new > 0;
}

bool commit_holds_any(void)
{
    return !TAILQ_EMPTY(&held) || nhold_new > 0;
}

void commit_hold_release_upto(uint64_t lsn)
{
    bool all = lsn == UINT64_MAX;
    struct conn *c, *next;
    for (c = TAILQ_FIRST(&held); c; c = next) {
        next = TAILQ_NEXT(c, held_link);
        uint32_t head = c->hold_head;
        const struct hold_mark *m;
        while (c->hold_head < c->nholds &&
               (all || mark_released(m = &c->holds[c->hold_head]) || (m->assigned && m->lsn <= lsn)))
            c->hold_head++; /* a connection's marks follow its entries' order */
        if (c->hold_head == head)
            continue;
        if (c->hold_head == c->nholds)
            marks_clear(c);
        unsent_settle(c);
        conn_want_flush(c);
    }
    if (!all)
        return;
    /* and holds whose entry is not appended yet */
    for (size_t i = 0; i < nhold_new; i++)
        if ((c = hold_new[i])) {
            marks_clear(c);
            unsent_settle(c);
            conn_want_flush(c);
        }
    nhold_new = 0;
}

/* Marks released since the last pop go too: their output may leave. */
static void pop_released(struct conn *c)
{
    while (c->hold_head < c->nholds && mark_released(&c->holds[c->hold_head]))
        c->hold_head++;
    unsent_settle(c);
}

/* c holds nothing more, and what it held never goes. */
static void marks_drop(struct conn *c)
{
    pop_released(c);
    unsent_return_from(c, 0);
    for (size_t i = 0; i < nhold_new; i++)
        if (hold_new[i] == c)
            hold_new[i] = NULL;
    marks_clear(c);
}

/* Nothing c holds leaves: what is given back must not be sent too. */
static void give_back(struct conn *c)
{
    stream_out_cut(&c->st, held_from(c));
    marks_drop(c);
}

void commit_holds_closing(struct conn *c)
{
    pop_released(c);
    if (!TAILQ_EMPTY(&c->unsent) && c->answered_to <= held_from(c))
        give_back(c);
}

void commit_holds_give_back(bool answered_too)
{
    struct conn *c, *next;
    for (c = TAILQ_FIRST(&srv.conns); c; c = next) {
        next = TAILQ_NEXT(c, link);
        if (!answered_too) {
            commit_holds_closing(c);
            continue;
        }
        pop_released(c);
        if (!TAILQ_EMPTY(&c->unsent))
            give_back(c);
    }
}

void commit_hold_forget(struct conn *c)
{
    marks_drop(c);
    free(c->holds);
    c->holds = NULL;
    c->cap_holds = 0;
}

size_t commit_output_allowed(const struct conn *c)
{
    uint32_t i = c->hold_head;
    while (i < c->nholds && mark_released(&c->holds[i]))
        i++; /* released since the last pop */
    if (i == c->nholds)
        return SIZE_MAX;
    uint64_t pos = c->holds[i].pos;
    return pos > c->st.out_done ? (size_t)(pos - c->st.out_done) : 0;
}

static void finish_commit(struct op *op)
{
    TAILQ_REMOVE(&commit_q, op, commit_link);
    ncommit_q--;
    op->done = true;
    release(op);
    if (op->conn)
        op_drain_conn(op->conn);
    else if (!waits(op))
        op_free(op);
}

void commit_advance(uint64_t lsn)
{
    if (lsn <= committed)
        return;
    committed = lsn;
    hold_release();
    struct op *op;
    while ((op = TAILQ_FIRST(&commit_q)) && op->lsn <= lsn)
        finish_commit(op);
}

/* c's output held from the first mark not released whose entry is lsn
 * or later (or not appended yet) is dropped. */
static void holds_cut(struct conn *c, uint64_t lsn, const char *why)
{
    uint32_t i = c->hold_head;
    while (i < c->nholds && (mark_released(&c->holds[i]) || (c->holds[i].assigned && c->holds[i].lsn < lsn)))
        i++;
    if (i == c->nholds)
        return;
    stream_out_cut(&c->st, c->holds[i].pos);
    unsent_return_from(c, c->holds[i].pos); /* in memory: the store failed */
    c->nholds = i;
    marks_pop(c);
    if (c->hold_head == c->nholds)
        marks_clear(c);
    conn_output_lost(c, why);
}

void commit_holds_fail_from(uint64_t lsn, const char *why)
{
    struct conn *c, *next;
    for (c = TAILQ_FIRST(&held); c; c = next) {
        next = TAILQ_NEXT(c, held_link);
        holds_cut(c, lsn, why);
    }
    for (size_t i = 0; i < nhold_new; i++)
        if (hold_new[i])
            holds_cut(hold_new[i], lsn, why);
    nhold_new = 0; /* each one's mark not assigned yet, its last, is cut */
}

void commit_fail_from(uint64_t lsn, const char *why)
{
    struct op *op, *next;
    for (op = TAILQ_FIRST(&commit_q); op; op = next) {
        next = TAILQ_NEXT(op, commit_link);
        if (op->lsn >= lsn) {
            log_err("journal entry %llu not stored: %s", (unsigned long long)op->lsn, why);
            op->failed = true;
            finish_commit(op);
        }
    }
}

void commit_expire(double before, const char *why)
{
    struct op *op;
    TAILQ_FOREACH(op, &commit_q, commit_link) {
        if (op->t >= before)
            break;
        if (op->conn && op->conn->state == CONN_OPEN) {
            clog_warn(op->conn, "journal entry %llu not committed in time", (unsigned long long)op->lsn);
            conn_error(op->conn, "not replicated in time", op->receipt,
                       op->closes ? "The acknowledgements sent before DISCONNECT were not replicated to a quorum "
                                    "within store.quorum_timeout; their messages may be delivered again."
                                  : why);
        }
    }
}

void op_orphan_conn(struct conn *c)
{
    struct op *op;
    while ((op = TAILQ_FIRST(&c->ops))) {
        TAILQ_REMOVE(&c->ops, op, conn_link);
        c->nops--;
        room_leave(op);
        op->conn = NULL;
        /* Ops still waiting for the journal stay in commit order and
         * release their messages when committed. */
        if (op->kind != OP_COMMIT || op->done)
            op_free(op);
    }
}

void op_room_free(struct dest *d)
{
    struct op *op;
    while ((op = TAILQ_FIRST(&d->blocked))) {
        woken(op);
    }
}

uint64_t commit_lsn(void)
{
    return committed;
}

uint64_t commit_wanted(void)
{
    return wanted;
}

void commit_reset(uint64_t lsn)
{
    committed = shipped = lsn;
}

double commit_oldest(void)
{
    struct op *op = TAILQ_FIRST(&commit_q);
    return op ? op->t : 0;
}

size_t commit_waiting(void)
{
    return ncommit_q;
}

void commit_free_all(void)
{
    struct op *op;
    while ((op = TAILQ_FIRST(&commit_q))) {
        TAILQ_REMOVE(&commit_q, op, commit_link);
        ncommit_q--;
        /* never committed: whoever waits hears it failed */
        op->failed = true;
        if (!op->conn)
            op_free(op);
    }
}
