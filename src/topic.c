/* Topic fan-out: the one refcounted message goes to each subscription's
 * backlog, which delivers at once when the subscriber is ready: the
 * topic's own subscriptions, then those of every wildcard topic that
 * matches it, found in one walk of the pattern trie. A subscription that
 * takes from several of them (a composite SUBSCRIBE) gets the message
 * once. Selectors the message's budget does not reach are run later, on
 * the backlog. */
#include "config.h"

#include <stdlib.h>

#include "stompd/acl.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/durable.h"
#include "stompd/msg.h"
#include "stompd/route.h"
#include "stompd/sub.h"
#include "stompd/topic.h"

static uint64_t fanout; /* one number per publish */

/* origin: the topic published to, when d is a wildcard topic matching it */
static void to_subscribers(struct dest *d, const struct dest *origin, struct msg *m)
{
    bool check = origin && acl_active();
    struct sub *s, *next;
    for (s = TAILQ_FIRST(&d->subscribers); s; s = next) {
        next = TAILQ_NEXT(s, topic_link);
        struct sub *t = sub_top(s);
        if (t->fanout == fanout)
            continue;
        /* a wildcard subscription reads only the topics it may read */
        if (check && !route_allowed_quiet(t->conn->who, origin, ROUTE_READ))
            continue;
        t->fanout = fanout;
        sub_publish(s, m);
    }
}

struct pattern_ctx {
    struct dest *origin;
    struct msg *m;
};

static void to_pattern(struct dest *p, void *arg)
{
    struct pattern_ctx *x = arg;
    to_subscribers(p, x->origin, x->m);
    durable_publish(p, x->origin, x->m);
}

void topic_publish(struct dest *d, struct msg *m)
{
    /* One budget for every selector this message meets (see sub.h). */
    struct sub_pass pass;
    sub_pass_begin(&pass);
    fanout++;
    to_subscribers(d, NULL, m);
    durable_publish(d, d, m);
    struct pattern_ctx x = {d, m};
    route_topic_patterns(d, to_pattern, &x);
    sub_pass_end(&pass);
    /* the journal entry's durable targets (persist_enqueue) are followed
     * for the topic and every wildcard topic: forgotten only now */
    free(m->jdurables);
    m->jdurables = NULL;
    m->njdurables = 0;
    m->jdurables_judged = false;
}

struct durables_ctx {
    void (*fn)(struct durable *du, void *arg);
    void *arg;
};

static void durables_of(struct dest *d, void *arg)
{
    struct durables_ctx *x = arg;
    struct durable *du;
    TAILQ_FOREACH(du, &d->durables, topic_link)
        x->fn(du, x->arg);
}

void topic_foreach_durable(struct dest *d, void (*fn)(struct durable *du, void *arg), void *arg)
{
    struct durables_ctx x = {fn, arg};
    durables_of(d, &x);
    route_topic_patterns(d, durables_of, &x);
}
