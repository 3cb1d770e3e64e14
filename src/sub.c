/* Subscriptions: delivery of one message to one subscriber (writing the
 * MESSAGE frame into the connection's output), the unacked list in
 * delivery order, and acks and nacks per the subscription's ack mode.
 * Also the selector verdicts, within the budgets (passes) that keep one
 * message's routing from holding the loop. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/acl.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/config.h"
#include "stompd/durable.h"
#include "stompd/log.h"
#include "stompd/selector.h"
#include "stompd/server.h"
#include "stompd/persist.h"
#include "stompd/route.h"
#include "stompd/sub.h"
#include "stompd/txn.h"

/* t (a top subscription) has as many deliveries in flight as it may */
/* Full at its prefetch, or once what it holds unacked reaches
 * broker.dest_memory_limit: one with a prefetch of a million that never
 * acked had the store read for it until it held 6 times that, and every
 * producer paused at broker.memory_limit (helper-99). Held back per
 * subscription, the others on its queue still get the rest (a first
 * version held the queue's paging back, helper-100, helper-101). */
static bool full(const struct sub *t)
{
    return (int64_t)t->inflight - t->txn_room >= t->prefetch || t->held_bytes >= config.dest_memory_limit;
}

bool sub_ready(const struct sub *s)
{
    const struct sub *t = s->root ? s->root : s;
    struct conn *c = s->conn;
    if (c->state != CONN_OPEN || (c->st.paused & PAUSE_CLOSING))
        return false; /* a DISCONNECT waiting for its receipt takes no more */
    if (conn_output_full(c))
        return false;
    return t->ack == ACK_AUTO || !full(t);
}

struct lookup_ctx {
    const struct msg *m;
    int64_t *left;
    char num[4][32];
};

/* JMS names for the message's own fields, then its headers. */
static const char *lookup(void *arg, const char *name)
{
    struct lookup_ctx *x = arg;
    const struct msg *m = x->m;
    /* msg_get walks the headers: a message with many makes lookups dear */
    *x->left -= 1 + (int64_t)m->nheaders;
    if (name[0] == 'J' && name[1] == 'M' && name[2] == 'S') {
        const char *n = name + 3;
        if (!strcmp(n, "MessageID"))
            return m->id;
        if (!strcmp(n, "Priority")) {
            snprintf(x->num[0], sizeof x->num[0], "%d", m->priority);
            return x->num[0];
        }
        if (!strcmp(n, "Timestamp")) {
            snprintf(x->num[1], sizeof x->num[1], "%" PRId64, m->timestamp);
            return x->num[1];
        }
        if (!strcmp(n, "Expiration")) {
            snprintf(x->num[2], sizeof x->num[2], "%" PRId64, m->expires);
            return x->num[2];
        }
        if (!strcmp(n, "DeliveryMode"))
            return m->persistent ? "PERSISTENT" : "NON_PERSISTENT";
        if (!strcmp(n, "Type"))
            return msg_get(m, "type");
        if (!strcmp(n, "CorrelationID"))
            return msg_get(m, "correlation-id");
        if (!strcmp(n, "ReplyTo"))
            return msg_get(m, "reply-to");
        if (!strcmp(n, "Destination"))
            return m->dest;
    }
    return msg_get(m, name);
}

/* ------------------------------------------------------------ budgets */

static struct sub_pass *pass;          /* innermost explicit pass */
static struct {
    int64_t left;
    unsigned iter;
    bool set;
} dispatching;                         /* this loop iteration's dispatch budget */
static struct {
    int64_t left;
    unsigned iter;
    const struct msg *m;
} ambient;                             /* a message routed outside any pass */
static struct sub_selector_stats stats;
static double last_warn;
static uint64_t unwarned;

static unsigned iteration(void)
{
    return srv.loop ? ev_iteration(srv.loop) : 0;
}

void sub_pass_begin(struct sub_pass *p)
{
    p->left = config.selector_budget;
    p->done = 0;
    p->dispatch = false;
    p->outer = pass;
    pass = p;
}

void sub_pass_begin_dispatch(struct sub_pass *p)
{
    unsigned it = iteration();
    if (!dispatching.set || dispatching.iter != it) {
        dispatching.left = config.selector_budget;
        dispatching.iter = it;
        dispatching.set = true;
    }
    p->left = dispatching.left;
    p->done = 0;
    p->dispatch = true;
    p->outer = pass;
    pass = p;
}

bool sub_dispatch_budget_spent(void)
{
    return dispatching.set && dispatching.iter == iteration() && dispatching.left <= 0;
}

void sub_pass_end(struct sub_pass *p)
{
    if (p->dispatch)
        dispatching.left = p->left;
    pass = p->outer;
}

static int64_t *budget_for(const struct msg *m)
{
    if (pass)
        return &pass->left;
    unsigned it = iteration();
    if (ambient.m != m || ambient.iter != it) {
        ambient.m = m;
        ambient.iter = it;
        ambient.left = config.selector_budget;
    }
    return &ambient.left;
}

static void warn_over_budget(const struct selector *sel, const struct msg *m)
{
    stats.over_budget++;
    double now = srv.loop ? ev_now(srv.loop) : 0;
    if (last_warn && now - last_warn < 10) {
        unwarned++;
        return;
    }
    /* the text is a client's: no control characters into the log */
    const char *text = selector_text(sel);
    char shown[81];
    size_t n = 0;
    for (; n < sizeof shown - 1 && text[n]; n++)
        shown[n] = (unsigned char)text[n] < 0x20 || text[n] == 0x7f ? '?' : text[n];
    shown[n] = '\0';
    log_warn("selector \"%s%s\" could not be evaluated on message %s within stomp.selector_budget "
             "(%lld steps): taken as not matching%s",
             shown, text[n] ? "..." : "", m->id, (long long)config.selector_budget,
             unwarned ? " (more such cases since the last warning)" : "");
    last_warn = now ? now : 1;
    unwarned = 0;
}

enum sub_verdict sub_select(const struct selector *sel, const struct msg *m)
{
    if (!sel)
        return SUB_YES;
    int64_t *left = budget_for(m);
    if (*left <= 0) {
        stats.deferred++;
        return SUB_LATER;
    }
    /* with the whole budget and still not done: it never will be */
    bool whole = *left >= config.selector_budget;
    struct lookup_ctx x = {.m = m, .left = left};
    int r = selector_eval(sel, lookup, &x, left);
    if (r >= 0 || whole) {
        stats.evaluated++;
        if (pass)
            pass->done++;
    }
    if (r >= 0)
        return r ? SUB_YES : SUB_NO;
    if (!whole) {
        stats.deferred++;
        return SUB_LATER;
    }
    warn_over_budget(sel, m);
    return SUB_NO;
}

bool sub_matches(const struct sub *s, const struct msg *m)
{
    return sub_select(sub_sel(s), m) != SUB_NO;
}

void sub_selector_stats(struct sub_selector_stats *out)
{
    *out = stats;
}

/* Before STOMP 1.2 an ACK names its message by message-id: each top
 * subscription of such a connection keeps its unacked deliveries by it,
 * or one client holding 30,000 made every ACK a walk of 30,000 (helper-96:
 * 100,000 ACKs in a transaction held the loop 49 s). One message can be
 * held twice on one subscription (through two of its destinations): then
 * the list decides which comes first. */
struct sub_mid {
    UT_hash_handle hh;
    struct qentry *only;        /* the delivery, when there is one (n == 1) */
    uint32_t n;
    char id[];
};

static bool by_mid(const struct sub *t)
{
    return t->conn && t->conn->version < STOMP_12;
}

static void mid_add(struct sub *t, struct qentry *e)
{
    if (!by_mid(t))
        return;
    struct sub_mid *m;
    HASH_FIND_STR(t->by_mid, e->msg->id, m);
    if (m) {
        m->n++;
        m->only = NULL;
        return;
    }
    size_t len = strlen(e->msg->id);
    if (!(m = malloc(sizeof *m + len + 1)))
        abort();
    memcpy(m->id, e->msg->id, len + 1);
    m->only = e;
    m->n = 1;
    HASH_ADD(hh, t->by_mid, id, len, m);
}

static void mid_del(struct sub *t, struct qentry *e)
{
    struct sub_mid *m;
    if (!t->by_mid)
        return;
    HASH_FIND_STR(t->by_mid, e->msg->id, m);
    if (m && --m->n == 0) {
        HASH_DEL(t->by_mid, m);
        free(m);
    }
}

static void mid_free_all(struct sub *t)
{
    struct sub_mid *m, *tmp;
    HASH_ITER(hh, t->by_mid, m, tmp) {
        HASH_DEL(t->by_mid, m);
        free(m);
    }
}

struct qentry *sub_find_delivery(struct sub *t, const char *mid)
{
    struct qentry *e;
    if (by_mid(t)) {
        struct sub_mid *m;
        HASH_FIND_STR(t->by_mid, mid, m);
        if (!m)
            return NULL;
        if (m->only)
            return m->only;
    }
    TAILQ_FOREACH(e, &t->unacked, link)
        if (!strcmp(e->msg->id, mid))
            return e;
    return NULL;
}

void sub_deliver(struct sub *s, struct qentry *e)
{
    struct conn *c = s->conn;
    struct queue *q = e->q;
    struct sub *t = sub_top(s);
    bool redelivered = e->redeliveries > 0;
    q->dest->st.dispatched++;
    srv.st.messages_out++;
    t->delivered++;
    uint64_t at = stream_out_pos(&c->st); /* where a hold starts */
    if (t->ack == ACK_AUTO) {
        msg_write_frame(e->msg, &c->st.out, c->version, q->dest->local_name, t->id, NULL, redelivered, e->redeliveries);
        q->dest->st.dequeued++;
        enum hold_kind held = persist_auto_acked(e);
        if (held != HOLD_NONE) {
            commit_hold(c, at, held);
            commit_hold_unsent(c, e, at);
        }
        queue_entry_done(e);
    } else {
        char ack[24];
        e->sub = s;
        e->tag = ++c->next_tag;
        HASH_ADD(hh, c->inflight, tag, sizeof e->tag, e);
        TAILQ_INSERT_TAIL(&t->unacked, e, link);
        mid_add(t, e);
        t->inflight++;
        t->held_bytes += (int64_t)e->msg->size;
        q->ninflight++;
        fmt_u64(ack, e->tag);
        msg_write_frame(e->msg, &c->st.out, c->version, q->dest->local_name, t->id, c->version >= STOMP_12 ? ack : NULL,
                        redelivered, e->redeliveries);
        if (persist_delivered(e))
            commit_hold(c, at, HOLD_COMMIT);
    }
    conn_frame_sent(c);
    conn_want_flush(c);
}

/* t is the entry's subscription's top (the one holding the unacked list) */
/* t has room again: its consumers go back into their queues' rounds. */
static void room_back(struct sub *t)
{
    if (!sub_has_legs(t)) {
        if (t->q)
            queue_unpark(t->q, t);
        return;
    }
    struct sub *l;
    TAILQ_FOREACH(l, &t->legs, leg_link)
        queue_unpark(l->q, l);
}

static void detach(struct sub *t, struct qentry *e)
{
    TAILQ_REMOVE(&t->unacked, e, link);
    HASH_DEL(t->conn->inflight, e);
    mid_del(t, e);
    bool was_full = full(t);
    t->inflight--;
    t->held_bytes -= (int64_t)e->msg->size;
    if (e->in_txn_ack)
        t->txn_room--; /* out of flight: the room it left goes with it */
    if (was_full && !full(t))
        room_back(t);
    e->q->ninflight--;
}

static bool ack_one(struct sub *t, struct qentry *e)
{
    struct queue *q = e->q;
    detach(t, e);
    q->dest->st.dequeued++;
    bool journaled = persist_dequeue(e);
    queue_entry_done(e);
    queue_mark_dirty(q);
    return journaled;
}

void sub_wake(struct sub *s)
{
    room_back(s);
    if (!sub_has_legs(s)) {
        queue_mark_dirty(s->q);
        return;
    }
    struct sub *l;
    TAILQ_FOREACH(l, &s->legs, leg_link)
        if (l->q->npending)
            queue_mark_dirty(l->q);
}

void sub_txn_room(struct sub *t, int64_t n)
{
    bool was_full = full(t);
    t->txn_room = (uint32_t)((int64_t)t->txn_room + n);
    if (was_full && !full(t))
        sub_wake(t);
}

/* Credit came back to t: when it had none, every leg's queue may have
 * something for it now (the acked entries' own queues are marked). */
static void credit_back(struct sub *t, bool was_full)
{
    if (was_full && sub_has_legs(t))
        sub_wake(t);
}

bool sub_ack(struct sub *s, struct qentry *e)
{
    struct sub *t = sub_top(s);
    bool journaled = false, was_full = full(t);
    if (t->ack == ACK_CLIENT) {
        struct qentry *it;
        while ((it = TAILQ_FIRST(&t->unacked)) != e)
            journaled |= ack_one(t, it);
    }
    journaled |= ack_one(t, e);
    credit_back(t, was_full);
    return journaled;
}

/* e, detached from t, goes back to its queue unacked: a transaction of
 * t's connection that holds an ACK of it can no longer commit whole. One
 * purged in flight (its queue purged, its durable subscription removed or
 * replaced) goes for good instead, as if acknowledged meanwhile: the
 * COMMIT applies the rest (it failed saying the message went back, and
 * its SENDs were lost with the connection: helper-96). */
static bool give_back(struct sub *t, struct qentry *e, enum return_why why)
{
    if (e->in_txn_ack && e->purges == e->q->purges)
        txn_delivery_returned(t->conn, e->tag, e->msg->id,
                              why == RETURN_NACK ? "NACKed" : "its subscription ended");
    return queue_return(e, why);
}

bool sub_nack(struct sub *s, struct qentry *e)
{
    struct sub *t = sub_top(s);
    bool journaled = false, was_full = full(t);
    struct qentry *it;
    if (t->ack == ACK_CLIENT) {
        while ((it = TAILQ_FIRST(&t->unacked)) != e) {
            struct queue *q = it->q;
            detach(t, it);
            journaled |= give_back(t, it, RETURN_NACK);
            queue_mark_dirty(q);
        }
    }
    struct queue *q = e->q;
    detach(t, e);
    journaled |= give_back(t, e, RETURN_NACK);
    queue_mark_dirty(q);
    credit_back(t, was_full);
    return journaled;
}

bool sub_release_all(struct sub *s)
{
    struct sub *t = sub_top(s);
    bool journaled = false;
    struct qentry *e, *next;
    for (e = TAILQ_FIRST(&t->unacked); e; e = next) {
        next = TAILQ_NEXT(e, link);
        /* a leg gives back what it delivered; a root (or a plain
         * subscription) everything */
        if (s != t && e->sub != s)
            continue;
        detach(t, e);
        journaled |= give_back(t, e, srv.stopping ? RETURN_STOPPED : RETURN_LOST);
    }
    return journaled;
}

/* A non-durable subscriber that reads slower than its topic is published
 * to (broker.topic_pending_limit): its oldest waiting messages of the
 * lowest priority waiting make room for `incoming` more, so its backlog
 * cannot fill the topic and pause the producers, and with them every
 * other subscriber. Drops count on the topic each was published to (a
 * wildcard subscription's backlog is the pattern's). */
static void make_room(struct sub *s, uint64_t incoming, int64_t limit)
{
    if (!limit || s->q != &s->own)
        return;
    /* one that can take more gets its backlog before the loop sleeps
     * (messages whose selector has not run yet wait there too) */
    while (s->own.npending + incoming > (uint64_t)limit && !sub_ready(s)) {
        struct dest *topic = NULL;
        enum drop_result r = queue_drop_oldest(&s->own, &topic);
        if (r == DROP_NONE)
            return;
        if (r != DROP_DROPPED)
            continue;
        if (!topic)
            topic = s->dest;
        struct sub *t = sub_top(s);
        if (t->dropped++ == 0)
            clog_warn(t->conn,
                      "subscription %s reads slower than %s is published to: its oldest waiting messages are "
                      "discarded beyond broker.topic_pending_limit (%lld)",
                      t->id, topic->name, (long long)limit);
        topic->st.dropped++;
        srv.st.dropped++;
    }
}

static void trim_topic(struct dest *d, void *arg)
{
    const int64_t *limit = arg;
    struct sub *s;
    if (!dest_is_queue(d))
        TAILQ_FOREACH(s, &d->subscribers, topic_link)
            make_room(s, 0, *limit);
}

void sub_trim_backlogs(int64_t limit)
{
    /* (a master handing over takes no new work: it stops soon) */
    if (limit && !srv.handing_over)
        dest_foreach(trim_topic, &limit);
}

void sub_publish(struct sub *s, struct msg *m)
{
    switch (sub_select(sub_sel(s), m)) {
    case SUB_YES:
        make_room(s, 1, config.topic_pending_limit);
        queue_push(s->q, m);
        break;
    case SUB_LATER:
        make_room(s, 1, config.topic_pending_limit);
        queue_push_unfiltered(s->q, m);
        break;
    case SUB_NO:
        break;
    }
}

/* Take from d: a consumer of its queue, or a private backlog of the
 * topic (the selector runs on publish). */
static void attach(struct sub *s, struct dest *d)
{
    s->dest = d;
    if (dest_is_queue(d)) {
        s->q = &d->q;
        queue_add_consumer(&d->q, s);
        return;
    }
    queue_init(&s->own, d);
    s->own.owner = s;
    s->q = &s->own;
    TAILQ_INSERT_TAIL(&d->subscribers, s, topic_link);
    d->nsubscribers++;
    queue_add_consumer(&s->own, s);
}

void sub_attach(struct sub *s, struct dest *d)
{
    attach(s, d);
}

bool sub_may_read(const struct sub *s, const char *origin)
{
    if (!s->dest->pattern || !acl_active() || !s->conn->who || strncmp(origin, "/topic/", 7) != 0)
        return true;
    return acl_allows(s->conn->who, ACL_TOPIC, origin + 7, ACL_READ);
}

struct sub *sub_leg_on(struct sub *root, struct dest *d)
{
    struct sub *l;
    HASH_FIND(lh, root->leg_by_dest, &d, sizeof d, l);
    return l;
}

static uint64_t legs_refused;
static uint64_t consumers; /* every connection's (broker.max_consumers) */

void sub_consumer_add(struct conn *c)
{
    c->nconsumers++;
    consumers++;
}

void sub_consumer_del(struct conn *c)
{
    c->nconsumers--;
    consumers--;
}

uint64_t sub_consumers(void) { return consumers; }

const char *sub_consumer_limit(const struct conn *c)
{
    if (c->nconsumers >= (uint64_t)config.max_consumers)
        return "stomp.max_consumers";
    if (consumers >= (uint64_t)config.broker_max_consumers)
        return "broker.max_consumers";
    return NULL;
}

bool sub_leg_allowed(const struct sub *root) { return !sub_consumer_limit(root->conn); }

void sub_count_refused_leg(struct sub *root, const struct dest *d)
{
    legs_refused++;
    /* once per subscription: a pattern may match many new queues */
    if (root->cap_logged)
        return;
    root->cap_logged = true;
    const char *key = sub_consumer_limit(root->conn);
    bool mine = key && !strcmp(key, "stomp.max_consumers");
    clog_warn(root->conn, "subscription '%s' (%s) does not take from %s: %s already take%s from %lld destinations "
              "(%s); later ones are not logged",
              root->id, root->spec, d->name, mine ? "the connection" : "the broker's subscriptions", mine ? "s" : "",
              (long long)(mine ? config.max_consumers : config.broker_max_consumers),
              key ? key : "stomp.max_consumers");
}

uint64_t sub_legs_refused(void) { return legs_refused; }

struct sub *sub_add_leg(struct sub *root, struct dest *d)
{
    struct sub *l = calloc(1, sizeof *l);
    if (!l)
        abort();
    l->root = root;
    l->id = root->id;
    l->conn = root->conn;
    l->ack = root->ack;
    l->prefetch = root->prefetch;
    l->exclusive = root->exclusive;
    l->priority = root->priority;
    l->no_local = root->no_local;
    TAILQ_INIT(&l->unacked);
    TAILQ_INIT(&l->legs);
    TAILQ_INSERT_TAIL(&root->legs, l, leg_link);
    root->nlegs++;
    sub_consumer_add(root->conn);
    l->dest = d; /* the hash key */
    HASH_ADD(lh, root->leg_by_dest, dest, sizeof l->dest, l);
    attach(l, d);
    clog_debug(l->conn, "subscription '%s' takes from %s too", root->id, d->name);
    return l;
}

/* Stop taking from the destination (what it delivered goes back). */
static bool detach_dest(struct sub *s)
{
    bool journaled = sub_release_all(s);
    queue_remove_consumer(s->q, s);
    if (s->durable) {
        durable_detach(s->durable, s);
    } else if (!dest_is_queue(s->dest)) {
        TAILQ_REMOVE(&s->dest->subscribers, s, topic_link);
        s->dest->nsubscribers--;
        queue_destroy(&s->own);
    }
    return journaled;
}

bool sub_destroy(struct sub *s)
{
    if (s->root) {
        /* one leg: its destination goes away, the subscription stays */
        struct sub *root = s->root;
        bool journaled = detach_dest(s);
        TAILQ_REMOVE(&root->legs, s, leg_link);
        HASH_DELETE(lh, root->leg_by_dest, s);
        root->nlegs--;
        sub_consumer_del(root->conn);
        free(s);
        return journaled;
    }
    struct conn *c = s->conn;
    bool journaled = false;
    if (sub_has_legs(s)) {
        for (uint32_t i = 0; i < s->nqpatterns; i++) {
            route_unwatch_queues(s, s->qpatterns[i]);
            free(s->qpatterns[i]);
        }
        free(s->qpatterns);
        /* everything it holds goes back in one walk, before the legs go:
         * each leg's own walk skipped the others' (legs x held: 9,000
         * queues of 10 held the loop 3 s, helper-99) */
        journaled |= sub_release_all(s);
        struct sub *l;
        while ((l = TAILQ_FIRST(&s->legs)))
            journaled |= sub_destroy(l);
        free(s->spec);
    } else {
        journaled = detach_dest(s);
        sub_consumer_del(c);
    }
    HASH_DEL(c->subs, s);
    c->nsubs--;
    mid_free_all(s);
    selector_free(s->sel);
    free(s->id);
    free(s);
    return journaled;
}
