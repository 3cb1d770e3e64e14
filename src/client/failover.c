/* Connecting and reconnecting: which broker to try when, and what happens
 * when one answers. Attempts run in parallel, happy-eyeballs style: the
 * next broker of the round is tried once the last attempt has failed or
 * has waited connectAttemptDelay for its CONNECTED, and the first
 * CONNECTED wins. Each broker keeps its own schedule: a refused connection
 * (nobody listening, which costs no broker anything) is tried again after
 * a short capped delay, a broker reached and failing (ERROR, no CONNECTED)
 * backs off exponentially, and so does one whose connection is lost as
 * soon as it answered (it refused what the session replayed, say). Once a
 * broker answers, the new connection continues the old session: its
 * subscriptions, every frame still waiting for its RECEIPT and every frame
 * queued meanwhile, in the original order. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

int failover_init(struct stompc *c)
{
    failover_fini(c);
    size_t cap = c->uri.nbrokers + (c->uri.failover ? URI_MAX_LEARNED : 0);
    c->bs = calloc(cap, sizeof *c->bs);
    c->order = calloc(cap, sizeof *c->order);
    if (!c->bs || !c->order) {
        failover_fini(c);
        return STOMPC_ENOMEM;
    }
    for (size_t i = 0; i < cap; i++)
        c->bs[i].a.fd = -1;
    return 0;
}

void failover_fini(struct stompc *c)
{
    if (c->bs) {
        failover_abort_attempts(c);
        for (size_t i = 0; i < c->uri.nbrokers; i++)
            free(c->bs[i].a.members);
    }
    free(c->bs);
    free(c->order);
    c->bs = NULL;
    c->order = NULL;
}

void failover_abort_attempts(struct stompc *c)
{
    for (size_t i = 0; c->bs && i < c->uri.nbrokers; i++)
        net_attempt_close(c, i, true);
}

static void new_round(struct stompc *c)
{
    uri_connect_order(&c->uri, c->last_failed, &c->rng, c->order);
    c->round_failed = 0;
    c->round_refusal[0] = '\0';
    for (size_t i = 0; i < c->uri.nbrokers; i++)
        c->bs[i].failed_this_round = false;
}

void failover_begin(struct stompc *c)
{
    for (size_t i = 0; i < c->uri.nbrokers; i++) {
        struct bstate *b = &c->bs[i];
        b->next_at = 0;
        b->refusals = b->costly = 0;
    }
    c->failures = 0;
    c->last_failed = SIZE_MAX;
    c->last_started = SIZE_MAX;
    c->connect_err[0] = '\0';
    c->connect_status = STOMPC_ECONNECT;
    new_round(c);
}

static int give_up(struct stompc *c);

/* A connection lost sooner than this after its CONNECTED did not hold (a
 * broker that refuses what the session replays answers CONNECTED, then
 * ERROR): its broker backs off as one that failed to connect. */
#define HELD_MS 1000

int failover_lost(struct stompc *c, const char *why)
{
    int64_t now = client_now();
    if (now - c->adopted_at >= HELD_MS) {
        /* it held: ActiveMQ tries again at once, then backs off */
        for (size_t i = 0; i < c->uri.nbrokers; i++) {
            struct bstate *b = &c->bs[i];
            b->next_at = 0;
            b->refusals = b->costly = 0;
        }
        c->failures = 0;
    } else {
        struct bstate *b = &c->bs[c->broker];
        b->costly++;
        b->refusals = 0;
        b->next_at = now + uri_reconnect_delay(&c->uri, b->costly);
        snprintf(c->connect_err, sizeof c->connect_err, "%s lost as soon as it answered: %.900s",
                 c->uri.brokers[c->broker].text, why);
        c->connect_status = STOMPC_ECONNECT;
        if (uri_give_up(&c->uri, ++c->failures, false))
            return give_up(c);
    }
    c->last_started = SIZE_MAX;
    new_round(c);
    return 0;
}

/* Once a broker answers: subscriptions, the frames still waiting for a
 * RECEIPT and those queued while no connection was up, all in the order
 * they were made (an UNSUBSCRIBE that removes a durable subscription
 * before a SUBSCRIBE that makes it again). */
static int replay(struct stompc *c)
{
    struct csub *s = TAILQ_FIRST(&c->subs);
    struct ofr *p = TAILQ_FIRST(&c->pending), *q = TAILQ_FIRST(&c->backlog);
    for (;;) {
        while (p && p->owned_by_sub)
            p = TAILQ_NEXT(p, link); /* sent as its subscription's */
        if (!s && !p && !q)
            return 0;
        if (s && (!p || s->frame->seq < p->seq) && (!q || s->frame->seq < q->seq)) {
            /* with its receipt while stompc_subscribe still waits for it */
            if (net_put(c, s->frame, s->frame->pending) != 0)
                return STOMPC_ENOMEM;
            if (s->frame->sent)
                c->st.resubscribed++;
            s->frame->sent = true;
            s = TAILQ_NEXT(s, link);
        } else if (p && (!q || p->seq < q->seq)) {
            if (net_put(c, p, true) != 0)
                return STOMPC_ENOMEM;
            if (p->sent)
                c->st.resent++;
            p->sent = true;
            p = TAILQ_NEXT(p, link);
        } else {
            if (net_put(c, q, true) != 0)
                return STOMPC_ENOMEM;
            struct ofr *next = TAILQ_NEXT(q, link);
            TAILQ_REMOVE(&c->backlog, q, link);
            c->nbacklog--;
            c->backlog_bytes -= q->body_len;
            ofr_free(q);
            q = next;
        }
    }
}

/* Brokers the new master names (CONNECTED's cluster-members header):
 * "tcp://h1:p1,tcp://h2:p2". */
static void learn(struct stompc *c, const char *members)
{
    const char *p = members;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t l = comma ? (size_t)(comma - p) : strlen(p);
        size_t before = c->uri.nbrokers;
        if (uri_learn(&c->uri, p, l) == 1) {
            /* bs[] has room for every broker that can be learned */
            struct bstate *b = &c->bs[before];
            memset(b, 0, sizeof *b);
            b->a.fd = -1;
        }
        if (!comma)
            return;
        p = comma + 1;
    }
}

/* A broker answered CONNECTED: make it the session's connection. */
static int adopt(struct stompc *c, size_t i)
{
    bool again = c->ever_connected;
    for (size_t k = 0; k < c->uri.nbrokers; k++)
        if (k != i)
            net_attempt_close(c, k, true);
    net_attempt_adopt(c, i);
    char *members = c->bs[i].a.members;
    c->bs[i].a.members = NULL;
    if (members) {
        learn(c, members);
        free(members);
    }
    c->state = CS_CONNECTED;
    c->gen++;
    c->ever_connected = true;
    c->st.connects++;
    c->adopted_at = client_now(); /* back-offs end once it has held (failover_lost) */
    c->last_failed = SIZE_MAX;
    if (again)
        c->st.reconnects++;
    if (replay(c) != 0) {
        int rc = client_lost(c, STOMPC_ENOMEM, "out of memory replaying the session on %s", c->uri.brokers[i].text);
        return c->state == CS_LOST ? 0 : rc;
    }
    if (again)
        (void)client_event(c, CEV_RECONNECT, 0, c->uri.brokers[i].text, NULL);
    (void)net_write(c); /* a loss now is handled like any other */
    return 0;
}

static int give_up(struct stompc *c)
{
    char why[sizeof c->err];
    int status = c->connect_status;
    if (!c->uri.failover) {
        snprintf(why, sizeof why, "%s", c->connect_err); /* tcp://: the connect error as it is */
    } else {
        snprintf(why, sizeof why, "gave up after %u round(s) of connection attempts to %zu broker(s); last error: %.900s",
                 c->failures, c->uri.nbrokers, c->connect_err);
        status = STOMPC_ECONNECT;
    }
    failover_abort_attempts(c);
    client_gave_up(c, status, why);
    return status;
}

/* A connected client probes the priority brokers (priorityBackup): is
 * that what it should be doing now? */
static bool probing(const struct stompc *c)
{
    return c->state == CS_CONNECTED && c->uri.priority_backup && !c->disconnecting &&
           !c->uri.brokers[c->broker].priority && TAILQ_EMPTY(&c->txs);
}

static int attempt_failed(struct stompc *c, size_t i, bool costly, int64_t now)
{
    struct bstate *b = &c->bs[i];
    if (c->state == CS_LOST && c->refused_for_good) {
        snprintf(c->round_refusal, sizeof c->round_refusal, "%s", c->connect_err);
        if (c->ever_connected) /* tried on (below), and said */
            (void)client_event(c, CEV_ERROR, STOMPC_EBROKER, c->connect_err, NULL);
    }
    if (costly) {
        b->costly++;
        b->refusals = 0;
        b->next_at = now + uri_reconnect_delay(&c->uri, b->costly);
    } else {
        b->refusals++;
        b->costly = 0; /* nobody there now: a new life when it listens again */
        b->next_at = now + uri_refused_delay(&c->uri, b->refusals);
    }
    if (c->state != CS_LOST)
        return 0; /* a priority probe */
    c->last_failed = i;
    if (!b->failed_this_round) {
        b->failed_this_round = true;
        c->round_failed++;
    }
    if (c->round_failed < c->uri.nbrokers)
        return 0;
    if (c->round_refusal[0] && !c->ever_connected) {
        /* Before the first connection, a round in which a broker refused
         * the CONNECT for good and none took it ends the attempts: the
         * same CONNECT would only be refused again, for ever (ActiveMQ's
         * createConnection throws its JMSSecurityException; helper-97).
         * Once connected, a broker's users file may be mid-change: it
         * tries on, each refusal reported. Another broker may take what
         * one refuses (a rolling change of passwords, helper-104): the
         * round ends first. */
        failover_abort_attempts(c);
        client_gave_up(c, STOMPC_EBROKER, c->round_refusal);
        return STOMPC_EBROKER;
    }
    c->failures++;
    if (uri_give_up(&c->uri, c->failures, !c->ever_connected))
        return give_up(c);
    new_round(c);
    return 0;
}

int failover_attempt_event(struct stompc *c, size_t i, uint32_t events, int64_t now)
{
    bool costly = false;
    int rc = net_attempt_io(c, i, events, now, &costly);
    if (rc == 0)
        return 0;
    if (rc < 0)
        return attempt_failed(c, i, costly, now);
    if (c->state == CS_LOST)
        return adopt(c, i);
    /* A priority broker answered while we are connected elsewhere: move,
     * unless that could send something twice (a RECEIPT outstanding, a
     * transaction open). Then the next probe tries again. */
    if (!probing(c) || c->npending || c->nbacklog) {
        net_attempt_close(c, i, true);
        c->bs[i].next_at = now + uri_refused_delay(&c->uri, 1);
        return 0;
    }
    char why[200];
    snprintf(why, sizeof why, "moved from %s to the priority broker %s", c->uri.brokers[c->broker].text,
             c->uri.brokers[i].text);
    client_settle(c, why);
    return adopt(c, i);
}

/* The next broker of the round to try now: idle and due. */
static size_t pick(const struct stompc *c, int64_t now)
{
    for (size_t k = 0; k < c->uri.nbrokers; k++) {
        size_t i = c->order[k];
        const struct bstate *b = &c->bs[i];
        if (b->a.fd < 0 && b->next_at <= now)
            return i;
    }
    return SIZE_MAX;
}

/* Is the attempt started last still waiting out its head start? */
static bool staggered(const struct stompc *c, int64_t now)
{
    return c->last_started != SIZE_MAX && c->bs[c->last_started].a.fd >= 0 &&
           now < c->last_started_at + c->uri.connect_attempt_delay;
}

static void take_min(int64_t *next, int64_t t)
{
    if (t >= 0 && (*next < 0 || t < *next))
        *next = t;
}

int failover_schedule(struct stompc *c, int64_t now, int64_t *next)
{
    *next = -1;
    if (c->disconnecting || (c->state != CS_LOST && !probing(c)))
        return 0;
    /* attempts past their deadline fail first */
    for (size_t i = 0; i < c->uri.nbrokers; i++) {
        if (c->bs[i].a.fd >= 0 && now >= c->bs[i].a.deadline) {
            int rc = failover_attempt_event(c, i, 0, now);
            if (rc < 0)
                return rc;
            if (c->state != CS_LOST && !probing(c))
                return 0;
        }
    }
    if (c->state == CS_LOST) {
        while (!staggered(c, now)) {
            size_t i = pick(c, now);
            if (i == SIZE_MAX)
                break;
            int rc = net_attempt_start(c, i, now);
            if (rc < 0) {
                /* failed at once (refused on this host, say): no head start */
                if ((rc = attempt_failed(c, i, false, now)) < 0)
                    return rc;
                if (c->state != CS_LOST)
                    return 0;
                continue;
            }
            c->last_started = i;
            c->last_started_at = now;
        }
    } else {
        for (size_t i = 0; i < c->uri.nbrokers; i++) {
            struct bstate *b = &c->bs[i];
            if (i == c->broker || !c->uri.brokers[i].priority || b->a.fd >= 0 || b->next_at > now)
                continue;
            if (net_attempt_start(c, i, now) < 0)
                (void)attempt_failed(c, i, false, now);
        }
    }
    *next = failover_next_timer(c, now);
    return 0;
}

int64_t failover_next_timer(const struct stompc *c, int64_t now)
{
    int64_t next = -1;
    if (c->disconnecting || !c->bs || (c->state != CS_LOST && !probing(c)))
        return -1;
    for (size_t i = 0; i < c->uri.nbrokers; i++) {
        const struct bstate *b = &c->bs[i];
        if (b->a.fd >= 0) {
            take_min(&next, b->a.deadline);
        } else if (c->state == CS_LOST || (i != c->broker && c->uri.brokers[i].priority)) {
            int64_t at = b->next_at;
            if (c->state == CS_LOST && staggered(c, now) && at < c->last_started_at + c->uri.connect_attempt_delay)
                at = c->last_started_at + c->uri.connect_attempt_delay;
            take_min(&next, at < now ? now : at);
        }
    }
    return next;
}
