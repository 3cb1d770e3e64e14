/* SUBSCRIBE and UNSUBSCRIBE: ack modes, prefetch, selectors, exclusive
 * consumers and durable topic subscriptions, each header validated with a
 * clear ERROR when it is wrong. The destination header may list several
 * destinations and wildcard patterns (route.h): such a subscription takes
 * from each through its legs (sub.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/acl.h"
#include "stompd/browse.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/durable.h"
#include "stompd/log.h"
#include "stompd/proto.h"
#include "stompd/route.h"
#include "stompd/selector.h"
#include "stompd/server.h"
#include "stompd/sub.h"
#include "stompd/utf8.h"

static int parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "true")) {
        *out = true;
        return 0;
    }
    if (!strcmp(s, "false")) {
        *out = false;
        return 0;
    }
    return -1;
}

/* A durable subscription's name: ActiveMQ 5's activemq.subscriptionName,
 * or Artemis's durable-subscription-name (durable-subscriber-name before
 * 2.0), so clients of either keep working. Empty is none. */
static int durable_name(const struct frame *f, const char **out)
{
    static const char *const keys[] = {"activemq.subscriptionName", "durable-subscription-name",
                                       "durable-subscriber-name"};
    size_t from = 0;
    *out = NULL;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = frame_get(f, keys[i]);
        if (!v || !*v)
            continue;
        if (strlen(v) > DURABLE_NAME_MAX)
            return proto_fail("durable subscription name too long",
                              "%s may be %d bytes at most, got %zu.", keys[i], DURABLE_NAME_MAX, strlen(v));
        if (*out && strcmp(*out, v) != 0)
            return proto_fail("conflicting durable subscription names",
                              "%s '%.128s' and %s '%.128s' name different durable subscriptions.", keys[from], *out,
                              keys[i], v);
        if (!*out)
            from = i;
        *out = v;
    }
    return 0;
}

/* key: the limit it would go over (sub_consumer_limit) */
static int too_many_consumers(const char *key, const char *name)
{
    bool broker = key && !strcmp(key, "broker.max_consumers");
    return proto_fail("too many consumers",
                      "%s may take from %lld destinations in all (%s): one for a plain subscription, one per "
                      "destination a composite or wildcard one names or matches; '%.200s' would take %s over.",
                      broker ? "All the broker's subscriptions" : "A connection's subscriptions",
                      (long long)(broker ? config.broker_max_consumers : config.max_consumers),
                      broker ? "broker.max_consumers" : "stomp.max_consumers", name, broker ? "them" : "it");
}

/* A whole number from lo to hi: 0, or -1. */
static int parse_range(const char *v, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end || errno || n < lo || n > hi)
        return -1;
    *out = n;
    return 0;
}

static int parse_prefetch(const struct frame *f, bool queue, bool durable, uint32_t *out)
{
    const char *names[] = {"activemq.prefetchSize", "prefetch-count"};
    for (int i = 0; i < 2; i++) {
        const char *v = frame_get(f, names[i]);
        if (!v)
            continue;
        long long n;
        if (parse_range(v, 1, 1000000, &n) != 0)
            return proto_fail("invalid prefetch", "%s must be an integer from 1 to 1000000, got '%.32s'.", names[i], v);
        *out = (uint32_t)n;
        return 0;
    }
    *out = (uint32_t)(queue         ? config.prefetch_queue
                      : durable     ? config.prefetch_durable
                                    : config.prefetch_topic);
    return 0;
}

int handle_subscribe(struct conn *c, struct frame *f, uint64_t *lsn)
{
    const char *name = frame_get(f, "destination");
    if (!name)
        return proto_fail("missing destination header", "SUBSCRIBE requires a destination header.");
    const char *id = frame_get(f, "id");
    if (!id) {
        if (c->version >= STOMP_11)
            return proto_fail("missing id header", "SUBSCRIBE requires an id header in STOMP 1.1 and 1.2.");
        id = name; /* 1.0: the destination names the subscription */
    }
    struct sub *s;
    HASH_FIND_STR(c->subs, id, s);
    if (s || browse_has(c, id))
        return proto_fail("duplicate subscription id", "Subscription id '%.128s' is already in use on this connection.", id);
    if (c->nsubs + c->nbrowses >= (uint32_t)config.max_subscriptions)
        return proto_fail("too many subscriptions", "A connection may hold %lld subscriptions (stomp.max_subscriptions).",
                          (long long)config.max_subscriptions);
    const char *over = sub_consumer_limit(c);
    if (over)
        return too_many_consumers(over, name);

    enum ack_mode ack = ACK_AUTO;
    const char *a = frame_get(f, "ack");
    if (a) {
        if (!strcmp(a, "auto"))
            ack = ACK_AUTO;
        else if (!strcmp(a, "client"))
            ack = ACK_CLIENT;
        else if (!strcmp(a, "client-individual"))
            ack = ACK_CLIENT_INDIVIDUAL;
        else
            return proto_fail("invalid ack mode", "ack must be auto, client or client-individual, got '%.32s'.", a);
    }
    bool exclusive = false;
    const char *ex = frame_get(f, "activemq.exclusive");
    if (ex && parse_bool(ex, &exclusive) != 0)
        return proto_fail("invalid activemq.exclusive header", "Expected true or false, got '%.32s'.", ex);

    long long priority = 0;
    const char *pr = frame_get(f, "activemq.priority");
    if (pr && parse_range(pr, 0, 127, &priority) != 0)
        return proto_fail("invalid activemq.priority header",
                          "Expected an integer from 0 (the default) to 127, got '%.32s'.", pr);

    bool browser = false;
    const char *br = frame_get(f, "browser");
    if (br && parse_bool(br, &browser) != 0)
        return proto_fail("invalid browser header", "Expected true or false, got '%.32s'.", br);
    const char *dname;
    if (durable_name(f, &dname) != 0)
        return -EPROTO;
    if (dname && !c->client_id)
        return proto_fail("durable subscription needs a client-id",
                          "Send client-id on CONNECT to use activemq.subscriptionName.");
    /* A new name must be UTF-8 (the console lists it); one an earlier
     * release kept can still be used, so its messages can be taken. */
    const char *bad;
    if (dname && !utf8_name_ok(dname, &bad) && !durable_find(c->client_id, dname))
        return proto_fail("invalid durable subscription name",
                          "The durable subscription name %s: the console lists durable subscriptions by name (a "
                          "name is UTF-8 text).", bad);

    struct selector *sel = NULL;
    const char *seltext = frame_get(f, "selector");
    if (seltext && !seltext[strspn(seltext, " \t\r\n")])
        seltext = NULL; /* an empty selector selects everything (JMS; ActiveMQ's clients send one) */
    if (seltext) {
        /* What one SUBSCRIBE may make the broker spend, compiling now and
         * matching every message later, is bounded here. */
        const struct selector_limits lim = {.max_length = (size_t)config.max_selector_length,
                                            .max_complexity = (uint64_t)config.max_selector_complexity};
        char serr[256];
        int rc = selector_compile_limited(seltext, &lim, &sel, serr, sizeof serr);
        if (rc == SELECTOR_TOO_LONG)
            return proto_fail("selector too long", "%s (stomp.max_selector_length is %lld).", serr,
                              (long long)config.max_selector_length);
        if (rc == SELECTOR_TOO_COMPLEX)
            return proto_fail("selector too complex", "%s (stomp.max_selector_complexity is %lld).", serr,
                              (long long)config.max_selector_complexity);
        if (rc != 0)
            return proto_fail("invalid selector", "%s", serr);
    }
    /* the destinations (and patterns) it names, each checked */
    struct route_sub rs;
    const char *err;
    int rc = route_subscribe(c, name, &rs, &err);
    if (rc != 0) {
        route_sub_free(&rs);
        selector_free(sel);
        if (rc == -EACCES)
            return proto_fail(route_denied(), "%s", err);
        return proto_fail(rc == -ENOSPC   ? "too many destinations"
                          : rc == -EPERM  ? "cannot subscribe to another connection's temporary destination"
                                          : "invalid destination",
                          "%s.", err);
    }
    bool legs = rs.n > 1 || rs.v[0].qpattern;
    struct dest *d = rs.v[0].d;
    if (browser) {
        bool one_queue = !legs && d && dest_is_queue(d) && !dname;
        if (one_queue)
            browse_start(c, id, d->name, sel); /* takes the selector */
        else
            selector_free(sel);
        route_sub_free(&rs);
        if (!one_queue)
            return proto_fail("browser needs one queue",
                              "browser:true browses one /queue/ destination (not a topic, a list or a wildcard, "
                              "nor a durable subscription), not '%.200s'.", name);
        return 0;
    }
    if (dname && (legs || d->kind != DEST_TOPIC)) {
        route_sub_free(&rs);
        selector_free(sel);
        if (legs)
            return proto_fail("durable subscription needs one topic",
                              "activemq.subscriptionName takes one /topic/ destination or one topic wildcard, not "
                              "'%.200s'.", name);
        return proto_fail("durable subscription needs a topic",
                          "activemq.subscriptionName is for /topic/ destinations, not '%.200s'.", name);
    }

    uint32_t prefetch = 0;
    if (parse_prefetch(f, d ? dest_is_queue(d) : true, dname != NULL, &prefetch) != 0) {
        route_sub_free(&rs);
        selector_free(sel);
        return -EPROTO;
    }

    struct durable *dur = NULL;
    if (dname) {
        dur = durable_find(c->client_id, dname);
        if (dur && dur->active) {
            route_sub_free(&rs);
            selector_free(sel);
            return proto_fail("durable subscription already active",
                              "Durable subscription '%.128s' of client-id '%.128s' already has a subscriber.", dname, c->client_id);
        }
        /* another topic replaces it: that destroys its backlog, which
         * needs read on the topic it has now */
        if (dur && dur->dest != d && !acl_allows_dest(c->who, dur->dest->name, ACL_READ)) {
            route_sub_free(&rs);
            selector_free(sel);
            char message[256], detail[1200];
            acl_explain(c->who, dur->dest->name, ACL_READ, message, sizeof message, detail, sizeof detail);
            return proto_fail(message, "%s", detail);
        }
    }

    s = calloc(1, sizeof *s);
    if (!s || !(s->id = strdup(id)))
        abort();
    s->conn = c;
    s->ack = ack;
    s->prefetch = prefetch;
    s->exclusive = exclusive;
    s->priority = (uint8_t)priority;
    TAILQ_INIT(&s->unacked);
    TAILQ_INIT(&s->legs);
    HASH_ADD_KEYPTR(hh, c->subs, s->id, strlen(s->id), s);
    c->nsubs++;

    bool journaled = false;
    if (!legs)
        sub_consumer_add(c);
    if (dname) {
        /* The durable keeps the selector; the subscriber evaluates none
         * (its backlog holds only matching messages). */
        s->dest = d;
        dur = durable_get(d, c->who, c->client_id, dname, seltext, sel, &journaled);
        durable_attach(dur, s);
    } else if (!legs) {
        s->sel = sel;
        sub_attach(s, d);
    } else {
        /* one leg per destination, and every queue a pattern matches */
        s->sel = sel;
        if (!(s->spec = strdup(name)))
            abort();
        for (uint32_t i = 0; i < rs.n && !s->capped; i++) {
            if (rs.v[i].d) {
                if (sub_leg_on(s, rs.v[i].d))
                    continue;
                if (sub_leg_allowed(s))
                    sub_add_leg(s, rs.v[i].d);
                else
                    s->capped = true;
                continue;
            }
            char **v = realloc(s->qpatterns, (s->nqpatterns + 1) * sizeof *v);
            if (!v)
                abort();
            s->qpatterns = v;
            v[s->nqpatterns++] = rs.v[i].qpattern;
            rs.v[i].qpattern = NULL;
            route_watch_queues(s, v[s->nqpatterns - 1]);
        }
        if (s->capped) {
            /* nothing was dispatched to it yet: gone without a trace */
            over = sub_consumer_limit(c);
            sub_destroy(s);
            route_sub_free(&rs);
            return too_many_consumers(over, name);
        }
    }
    /* a virtual topic's consumer queue exists from its first consumer on */
    for (uint32_t i = 0; i < rs.n; i++)
        if (rs.v[i].d)
            journaled |= route_keep(rs.v[i].d);
    if (journaled)
        *lsn = proto_journaled(f);
    clog_debug(c, "subscribed '%s' to %s (ack %s, prefetch %u%s%s%s)", s->id, legs ? name : d->name,
               ack == ACK_AUTO ? "auto" : ack == ACK_CLIENT ? "client" : "client-individual", prefetch,
               dname ? ", durable " : "", dname ? dname : "", legs ? ", composite or wildcard" : "");
    route_sub_free(&rs);
    return 0;
}

int handle_unsubscribe(struct conn *c, struct frame *f, uint64_t *lsn)
{
    const char *id = frame_get(f, "id");
    const char *dname;
    if (durable_name(f, &dname) != 0)
        return -EPROTO;
    if (!id && c->version < STOMP_11)
        id = frame_get(f, "destination");
    if (!id && !dname)
        return proto_fail("missing id header", "UNSUBSCRIBE requires the id of the subscription.");
    if (id && browse_stop(c, id))
        return 0;
    struct sub *s = NULL;
    if (id) {
        HASH_FIND_STR(c->subs, id, s);
        if (!s && !dname)
            return proto_fail("no such subscription", "No subscription with id '%.128s' on this connection.", id);
    }
    struct durable *dur = s ? s->durable : NULL;
    if (dname) {
        if (!c->client_id)
            return proto_fail("durable subscription needs a client-id",
                              "Send client-id on CONNECT to remove durable subscription '%.128s'.", dname);
        /* the name says which one goes, with its backlog: one the id's
         * subscription is not would be a guess. A name that names none is
         * answered as removed (ActiveMQ refuses it), so that a client
         * resending its UNSUBSCRIBE after a failover is not told it failed
         * when the first one took effect. */
        struct durable *named = durable_find(c->client_id, dname);
        if (dur && dur != named)
            return proto_fail("wrong durable subscription",
                              "Subscription '%.128s' is durable subscription '%.128s', not '%.128s': nothing was "
                              "removed.", s->id, dur->name, dname);
        dur = named;
        if (!dur)
            clog_info(c, "no durable subscription '%.128s' of client-id '%.128s' to remove", dname, c->client_id);
        /* removing one (and its backlog) needs read on its topic */
        if (dur && !acl_allows_dest(c->who, dur->dest->name, ACL_READ)) {
            char message[256], detail[1200];
            acl_explain(c->who, dur->dest->name, ACL_READ, message, sizeof message, detail, sizeof detail);
            return proto_fail(message, "%s", detail);
        }
    }
    /* removed with its backlog: what the subscription holds goes too */
    if (dname && dur)
        durable_dropping(dur);
    bool journaled = s && sub_destroy(s);
    if (dname && dur)
        journaled |= durable_destroy(dur);
    if (journaled)
        *lsn = proto_journaled(f);
    return 0;
}
