/* Topic fan-out: the one refcounted message goes to each subscription's
 * backlog, which delivers at once when the subscriber is ready: the
 * topic's own subscriptions, then those of every wildcard topic that
 * matches it, found in one walk of the pattern trie. A subscription that
 * takes from several of them (a composite SUBSCRIBE) gets the message
 * once. */
#include "config.h"

#include "stompd/dest.h"
#include "stompd/durable.h"
#include "stompd/route.h"
#include "stompd/sub.h"
#include "stompd/topic.h"

static uint64_t fanout; /* one number per publish */

static void to_subscribers(struct dest *d, struct msg *m)
{
    struct sub *s, *next;
    for (s = TAILQ_FIRST(&d->subscribers); s; s = next) {
        next = TAILQ_NEXT(s, topic_link);
        struct sub *t = sub_top(s);
        if (t->fanout == fanout)
            continue;
        t->fanout = fanout;
        sub_publish(s, m);
    }
}

static void to_pattern(struct dest *p, void *arg)
{
    struct msg *m = arg;
    to_subscribers(p, m);
    durable_publish(p, m);
}

void topic_publish(struct dest *d, struct msg *m)
{
    fanout++;
    to_subscribers(d, m);
    durable_publish(d, m);
    route_topic_patterns(d, to_pattern, m);
}

struct durables_ctx {
    const struct msg *m;
    void (*fn)(struct durable *du, void *arg);
    void *arg;
};

static void durables_of(struct dest *d, struct durables_ctx *x)
{
    struct durable *du;
    TAILQ_FOREACH(du, &d->durables, topic_link) {
        if (du->sel) {
            struct sub probe = {.sel = du->sel};
            if (!sub_matches(&probe, x->m))
                continue;
        }
        x->fn(du, x->arg);
    }
}

static void durables_of_pattern(struct dest *p, void *arg)
{
    if (p->ndurables)
        durables_of(p, arg);
}

void topic_foreach_durable(struct dest *d, const struct msg *m, void (*fn)(struct durable *du, void *arg), void *arg)
{
    struct durables_ctx x = {m, fn, arg};
    durables_of(d, &x);
    route_topic_patterns(d, durables_of_pattern, &x);
}
