/* Queues: pending messages by priority, FIFO within a priority, and the
 * dispatch loop that hands them to ready consumers in round-robin order.
 * Exclusive consumers take everything while present; JMSXGroupID pins a
 * group to the consumer that got its first message until it goes away or
 * the group is closed (JMSXGroupSeq = -1). Selector work is budgeted (see
 * sub.h): dispatch that runs out stops where it is and goes on from there
 * in the next loop iteration, so nothing is dropped and no one waits long. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/dlq.h"
#include "stompd/durable.h"
#include "stompd/log.h"
#include "stompd/queue.h"
#include "stompd/server.h"
#include "stompd/persist.h"
#include "stompd/sub.h"

struct group {
    char *name;
    struct sub *sub;
    UT_hash_handle hh;
};

void queue_init(struct queue *q, struct dest *d)
{
    memset(q, 0, sizeof *q);
    for (int i = 0; i < MSG_PRIORITIES; i++)
        TAILQ_INIT(&q->pending[i]);
    TAILQ_INIT(&q->consumers);
    q->dest = d;
}

static void groups_free(struct queue *q)
{
    struct group *g, *tmp;
    HASH_ITER(hh, q->groups, g, tmp) {
        HASH_DEL(q->groups, g);
        free(g->name);
        free(g);
    }
}

void queue_destroy(struct queue *q)
{
    queue_purge(q);
    groups_free(q);
    if (q->dirty) {
        TAILQ_REMOVE(&srv.dirty, q, dirty_link);
        q->dirty = false;
    }
}

static struct qentry *entry_new(struct queue *q, struct msg *m)
{
    struct qentry *e = calloc(1, sizeof *e);
    if (!e)
        abort();
    e->msg = msg_ref(m);
    e->q = q;
    dest_mem_add(q->dest, (int64_t)m->size);
    return e;
}

void queue_entry_done(struct qentry *e)
{
    struct dest *d = e->q->dest;
    int64_t size = (int64_t)e->msg->size;
    msg_unref(e->msg);
    free(e);
    dest_mem_add(d, -size);
}

static void pending_remove(struct queue *q, struct qentry *e)
{
    TAILQ_REMOVE(&q->pending[e->msg->priority], e, link);
    q->npending--;
    if (q->resume == e)
        q->resume = NULL;
}

/* The selector a backlog's unfiltered entries must pass. */
static const struct selector *backlog_selector(const struct queue *q)
{
    if (q->durable)
        return q->durable->sel;
    return q->owner ? q->owner->sel : NULL;
}

/* An unfiltered entry meets its selector now. SUB_NO: it is gone. */
static enum sub_verdict filter(struct queue *q, struct qentry *e)
{
    if (!e->unfiltered)
        return SUB_YES;
    enum sub_verdict v = sub_select(backlog_selector(q), e->msg);
    if (v == SUB_YES) {
        e->unfiltered = false;
    } else if (v == SUB_NO) {
        pending_remove(q, e);
        persist_dequeue(e);
        queue_entry_done(e);
    }
    return v;
}

/* An entry put among the pending ones while dispatch is stopped at
 * q->resume: if it goes ahead of that point, the sweep going on from there
 * will not see it. */
static void note_ahead(struct queue *q, const struct qentry *e)
{
    const struct qentry *r = q->resume;
    if (r && r != e &&
        (e->msg->priority > r->msg->priority || (e->msg->priority == r->msg->priority && e->msg->seq < r->msg->seq)))
        q->rescan = true;
}

/* Keep each priority list in arrival order: returned messages go back to
 * where they were, ahead of everything that arrived after them. */
static void pending_insert_sorted(struct queue *q, struct qentry *e)
{
    note_ahead(q, e);
    struct qentry_list *l = &q->pending[e->msg->priority];
    struct qentry *it;
    TAILQ_FOREACH(it, l, link) {
        if (it->msg->seq > e->msg->seq) {
            TAILQ_INSERT_BEFORE(it, e, link);
            q->npending++;
            return;
        }
    }
    TAILQ_INSERT_TAIL(l, e, link);
    q->npending++;
}

void queue_mark_dirty(struct queue *q)
{
    if (q->dirty)
        return;
    q->dirty = true;
    TAILQ_INSERT_TAIL(&srv.dirty, q, dirty_link);
}

void queue_add_consumer(struct queue *q, struct sub *s)
{
    TAILQ_INSERT_TAIL(&q->consumers, s, q_link);
    q->nconsumers++;
    queue_mark_dirty(q);
}

void queue_remove_consumer(struct queue *q, struct sub *s)
{
    if (q->rr == s)
        q->rr = TAILQ_NEXT(s, q_link);
    if (q->scan_end == s)
        q->scan_end = NULL;
    TAILQ_REMOVE(&q->consumers, s, q_link);
    q->nconsumers--;
    struct group *g, *tmp;
    HASH_ITER(hh, q->groups, g, tmp) {
        if (g->sub == s) {
            HASH_DEL(q->groups, g);
            free(g->name);
            free(g);
        }
    }
    /* Backup exclusive consumers and other group owners may now take over. */
    queue_mark_dirty(q);
}

/* PICK_LATER: the selector budget ran out before a consumer was found. */
enum pick { PICK_NONE_READY, PICK_NO_MATCH, PICK_OK, PICK_LATER };

static struct sub *first_exclusive(struct queue *q)
{
    struct sub *s;
    TAILQ_FOREACH(s, &q->consumers, q_link)
        if (s->exclusive)
            return s;
    return NULL;
}

/* resumed: this message's consumer scan was stopped by the budget; it goes
 * on from q->rr to where it would have ended. */
static enum pick pick(struct queue *q, struct msg *m, bool resumed, struct sub **out)
{
    if (q->owner) {
        /* A topic subscription's private backlog: the selector already
         * ran (when the message was published, or filter()). */
        if (!sub_ready(q->owner))
            return PICK_NONE_READY;
        *out = q->owner;
        return PICK_OK;
    }
    struct sub *ex = first_exclusive(q);
    if (ex) {
        if (!sub_ready(ex))
            return PICK_NONE_READY;
        enum sub_verdict v = sub_select(ex->sel, m);
        if (v != SUB_YES)
            return v == SUB_LATER ? PICK_LATER : PICK_NO_MATCH;
        *out = ex;
        return PICK_OK;
    }
    struct group *g = NULL;
    if (m->group) {
        HASH_FIND_STR(q->groups, m->group, g);
        if (g) {
            if (sub_ready(g->sub)) {
                enum sub_verdict v = sub_select(g->sub->sel, m);
                if (v == SUB_LATER)
                    return PICK_LATER;
                if (v == SUB_YES) {
                    *out = g->sub;
                    return PICK_OK;
                }
            }
            /* The group waits for its owner; others may still take other
             * messages, so report "no match" rather than "none ready". */
            struct sub *s;
            TAILQ_FOREACH(s, &q->consumers, q_link)
                if (sub_ready(s))
                    return PICK_NO_MATCH;
            return PICK_NONE_READY;
        }
    }
    struct sub *start = q->rr ? q->rr : TAILQ_FIRST(&q->consumers);
    struct sub *end = start;
    bool any_ready = false;
    if (resumed && q->scan_end) {
        end = q->scan_end;
        any_ready = q->scan_ready;
    }
    struct sub *s = start;
    do {
        if (sub_ready(s)) {
            any_ready = true;
            enum sub_verdict v = sub_select(s->sel, m);
            if (v == SUB_LATER) {
                q->rr = s;
                q->scan_end = end;
                q->scan_ready = any_ready;
                return PICK_LATER;
            }
            if (v == SUB_YES) {
                struct sub *nx = TAILQ_NEXT(s, q_link);
                q->rr = nx ? nx : TAILQ_FIRST(&q->consumers);
                if (m->group && m->group_seq != -1) {
                    g = calloc(1, sizeof *g);
                    if (!g || !(g->name = strdup(m->group)))
                        abort();
                    g->sub = s;
                    HASH_ADD_KEYPTR(hh, q->groups, g->name, strlen(g->name), g);
                }
                *out = s;
                return PICK_OK;
            }
        }
        s = TAILQ_NEXT(s, q_link);
        if (!s)
            s = TAILQ_FIRST(&q->consumers);
    } while (s != end);
    return any_ready ? PICK_NO_MATCH : PICK_NONE_READY;
}

static void group_closed(struct queue *q, struct msg *m)
{
    if (!m->group || m->group_seq != -1)
        return;
    struct group *g;
    HASH_FIND_STR(q->groups, m->group, g);
    if (g) {
        HASH_DEL(q->groups, g);
        free(g->name);
        free(g);
    }
}

static void deliver(struct queue *q, struct sub *s, struct qentry *e)
{
    group_closed(q, e->msg);
    sub_deliver(s, e);
}

/* An expired message leaves the queue: persistent ones are dead-lettered,
 * non-persistent ones dropped; both are counted. */
static void expire(struct qentry *e)
{
    struct dest *d = e->q->dest;
    d->st.expired++;
    srv.st.expired++;
    if (e->msg->persistent && !dlq_is_dlq(d)) {
        dlq_move(e, "expired");
        return;
    }
    persist_dequeue(e);
    queue_entry_done(e);
}

void queue_push(struct queue *q, struct msg *m)
{
    struct qentry *e = entry_new(q, m);
    if (q->npending == 0 && q->nconsumers > 0) {
        struct sub *s;
        if (m->expires && m->expires <= server_now_ms()) {
            expire(e);
            return;
        }
        /* choosing a consumer is this message's routing: its own budget */
        struct sub_pass pass;
        sub_pass_begin(&pass);
        enum pick r = pick(q, m, false, &s);
        sub_pass_end(&pass);
        if (r == PICK_OK) {
            deliver(q, s, e);
            return;
        }
        TAILQ_INSERT_TAIL(&q->pending[m->priority], e, link);
        q->npending++;
        if (r == PICK_LATER) {
            /* dispatch goes on with the scan, in a later pass */
            q->resume = e;
            queue_mark_dirty(q);
        }
        return;
    }
    TAILQ_INSERT_TAIL(&q->pending[m->priority], e, link);
    q->npending++;
    note_ahead(q, e);
    if (q->nconsumers > 0)
        queue_mark_dirty(q);
}

void queue_push_unfiltered(struct queue *q, struct msg *m)
{
    struct qentry *e = entry_new(q, m);
    e->unfiltered = true;
    TAILQ_INSERT_TAIL(&q->pending[m->priority], e, link);
    q->npending++;
    note_ahead(q, e);
    if (q->nconsumers > 0)
        queue_mark_dirty(q);
}

void queue_push_recovered(struct queue *q, struct msg *m, uint32_t redeliveries)
{
    struct qentry *e = entry_new(q, m);
    e->redeliveries = redeliveries;
    /* A durable subscription's entry may have been journaled before its
     * selector ran (sub_matches() keeps what it cannot judge yet): judge
     * it again before delivery. */
    e->unfiltered = q->durable && q->durable->sel;
    pending_insert_sorted(q, e);
}

void queue_return(struct qentry *e, enum return_why why)
{
    struct queue *q = e->q;
    e->sub = NULL;
    e->tag = 0;
    e->in_txn_ack = false;
    e->redeliveries++;
    q->dest->st.redelivered++;
    /* A NACK past the limit dead-letters (0: the first NACK does). A
     * consumer that went away counts too, against poison messages that
     * kill their consumers, but never on its first loss: restarting a
     * consumer must not dead-letter what it held. */
    int64_t limit = config.max_redeliveries;
    if (why == RETURN_LOST && limit == 0)
        limit = 1;
    if (limit >= 0 && e->redeliveries > (uint64_t)limit && !dlq_is_dlq(q->dest)) {
        dlq_move(e, why == RETURN_NACK ? "max redeliveries exceeded" : "max redeliveries exceeded (consumer lost)");
        return;
    }
    pending_insert_sorted(q, e);
    queue_mark_dirty(q);
}

/* Stopped by the budget at e: the next pass (a later loop iteration, once
 * the budget is refilled) goes on from there. */
static void stop(struct queue *q, struct qentry *e, const struct sub_pass *pass)
{
    q->resume = e;
    q->starved = pass->done == 0;
    queue_mark_dirty(q);
}

static void dispatch(struct queue *q, const struct sub_pass *pass)
{
    int64_t now = server_now_ms();
    struct qentry *from = q->resume;
    q->resume = NULL;
    if (!from)
        q->rescan = false;   /* a sweep from the top sees everything */
    int top = from ? from->msg->priority : MSG_PRIORITIES - 1;
    for (int p = top; p >= 0; p--) {
        struct qentry *e, *next;
        for (e = p == top && from ? from : TAILQ_FIRST(&q->pending[p]); e; e = next) {
            next = TAILQ_NEXT(e, link);
            enum sub_verdict v = filter(q, e);
            if (v == SUB_LATER) {
                q->scan_end = NULL;
                stop(q, e, pass);
                return;
            }
            if (v == SUB_NO)
                continue;
            if (e->msg->expires && e->msg->expires <= now) {
                pending_remove(q, e);
                expire(e);
                continue;
            }
            struct sub *s;
            enum pick r = pick(q, e->msg, e == from, &s);
            if (r == PICK_LATER) {
                stop(q, e, pass);
                return;
            }
            q->scan_end = NULL;
            if (r == PICK_NONE_READY)
                return;
            if (r == PICK_NO_MATCH)
                continue;
            pending_remove(q, e);
            deliver(q, s, e);
            if (q->nconsumers == 0)
                return;
        }
    }
    /* A sweep that went on from a stop skipped what was put ahead of that
     * point meanwhile: one more, from the top. */
    if (from && q->rescan)
        queue_mark_dirty(q);
    q->rescan = false;
}

void queue_dispatch(struct queue *q)
{
    if (q->npending == 0 || q->nconsumers == 0)
        return;
    struct sub_pass pass;
    sub_pass_begin_dispatch(&pass);
    q->starved = false;
    dispatch(q, &pass);
    sub_pass_end(&pass);
}

bool queue_dispatch_dirty(void)
{
    bool any = false;
    /* Queues stopped by the selector budget wait here for the next loop
     * iteration's budget, still dirty. */
    struct queue_list later = TAILQ_HEAD_INITIALIZER(later);
    /* Dispatching can mark other queues dirty (dead letters); bound the
     * rounds so one busy queue cannot starve the loop. */
    for (int round = 0; round < 8 && !TAILQ_EMPTY(&srv.dirty); round++) {
        struct queue_list todo = TAILQ_HEAD_INITIALIZER(todo);
        struct queue_list first = TAILQ_HEAD_INITIALIZER(first);
        struct queue *q, *nq;
        TAILQ_CONCAT(&todo, &srv.dirty, dirty_link);
        /* Queues the selector budget left nothing for last time go first,
         * so one busy queue cannot take every iteration's budget. */
        for (q = TAILQ_FIRST(&todo); q; q = nq) {
            nq = TAILQ_NEXT(q, dirty_link);
            if (q->starved) {
                TAILQ_REMOVE(&todo, q, dirty_link);
                TAILQ_INSERT_TAIL(&first, q, dirty_link);
            }
        }
        TAILQ_CONCAT(&first, &todo, dirty_link);
        while ((q = TAILQ_FIRST(&first))) {
            TAILQ_REMOVE(&first, q, dirty_link);
            if (q->resume && sub_dispatch_budget_spent()) {
                TAILQ_INSERT_TAIL(&later, q, dirty_link);
                continue;
            }
            q->dirty = false;
            queue_dispatch(q);
            any = true;
        }
    }
    TAILQ_CONCAT(&srv.dirty, &later, dirty_link);
    return any;
}

uint64_t queue_purge(struct queue *q)
{
    uint64_t n = 0;
    for (int p = 0; p < MSG_PRIORITIES; p++) {
        struct qentry *e;
        while ((e = TAILQ_FIRST(&q->pending[p]))) {
            pending_remove(q, e);
            queue_entry_done(e);
            n++;
        }
    }
    return n;
}

uint64_t queue_expire_sweep(struct queue *q, int64_t now_ms)
{
    uint64_t n = 0;
    for (int p = 0; p < MSG_PRIORITIES; p++) {
        struct qentry *e, *next;
        for (e = TAILQ_FIRST(&q->pending[p]); e; e = next) {
            next = TAILQ_NEXT(e, link);
            if (e->msg->expires && e->msg->expires <= now_ms) {
                /* a copy its selector refuses was never this backlog's;
                 * one not judged yet waits for the next sweep */
                if (filter(q, e) != SUB_YES)
                    continue;
                pending_remove(q, e);
                expire(e);
                n++;
            }
        }
    }
    return n;
}
