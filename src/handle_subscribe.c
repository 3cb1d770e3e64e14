/* SUBSCRIBE and UNSUBSCRIBE: ack modes, prefetch, selectors, exclusive
 * consumers and durable topic subscriptions, each header validated with a
 * clear ERROR when it is wrong. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/acl.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/durable.h"
#include "stompd/log.h"
#include "stompd/proto.h"
#include "stompd/selector.h"
#include "stompd/server.h"
#include "stompd/sub.h"

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

static int parse_prefetch(const struct frame *f, const struct dest *d, bool durable, uint32_t *out)
{
    const char *names[] = {"activemq.prefetchSize", "prefetch-count"};
    for (int i = 0; i < 2; i++) {
        const char *v = frame_get(f, names[i]);
        if (!v)
            continue;
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (end == v || *end || errno || n < 1 || n > 1000000)
            return proto_fail("invalid prefetch", "%s must be an integer from 1 to 1000000, got '%.32s'.", names[i], v);
        *out = (uint32_t)n;
        return 0;
    }
    *out = (uint32_t)(dest_is_queue(d) ? config.prefetch_queue
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
    if (s)
        return proto_fail("duplicate subscription id", "Subscription id '%.128s' is already in use on this connection.", id);
    if (c->nsubs >= (uint32_t)config.max_subscriptions)
        return proto_fail("too many subscriptions", "A connection may hold %lld subscriptions (stomp.max_subscriptions).",
                          (long long)config.max_subscriptions);

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

    char buf[1200];
    const char *err;
    enum dest_kind kind;
    const char *resolved = dest_resolve_temp(c, name, buf, sizeof buf);
    if (dest_kind_of(resolved, &kind, &err) != 0)
        return proto_fail("invalid destination", "'%.200s': %s.", name, err);
    struct dest *d = dest_find(resolved);
    if ((kind == DEST_TEMP_QUEUE || kind == DEST_TEMP_TOPIC) && resolved == name &&
        (!d || d->owner != c))
        return proto_fail("cannot subscribe to another connection's temporary destination",
                          "Only the connection that created '%.200s' may consume from it.", name);

    /* read, for a durable subscription too; temporary ones have their owner */
    if (!acl_allows_dest(c->who, resolved, ACL_READ)) {
        char message[256], detail[1200];
        acl_explain(c->who, resolved, ACL_READ, message, sizeof message, detail, sizeof detail);
        return proto_fail(message, "%s", detail);
    }

    const char *dname = frame_get(f, "activemq.subscriptionName");
    if (dname && !*dname)
        dname = NULL;
    if (dname) {
        if (kind != DEST_TOPIC)
            return proto_fail("durable subscription needs a topic",
                              "activemq.subscriptionName is for /topic/ destinations, not '%.200s'.", name);
        if (!c->client_id)
            return proto_fail("durable subscription needs a client-id",
                              "Send client-id on CONNECT to use activemq.subscriptionName.");
    }

    struct selector *sel = NULL;
    const char *seltext = frame_get(f, "selector");
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
    if (!d) {
        int rc = dest_open(resolved, c, c->who, &d, &err);
        if (rc != 0) {
            selector_free(sel);
            if (rc == -EACCES)
                return proto_fail(dest_denied(), "%s", err);
            return proto_fail(rc == -ENOSPC ? "too many destinations" : "invalid destination", "'%.200s': %s.",
                              name, err);
        }
    }

    uint32_t prefetch = 0;
    if (parse_prefetch(f, d, dname != NULL, &prefetch) != 0) {
        selector_free(sel);
        return -EPROTO;
    }

    struct durable *dur = NULL;
    if (dname) {
        dur = durable_find(c->client_id, dname);
        if (dur && dur->active) {
            selector_free(sel);
            return proto_fail("durable subscription already active",
                              "Durable subscription '%.128s' of client-id '%.128s' already has a subscriber.", dname, c->client_id);
        }
        /* another topic replaces it: that destroys its backlog, which
         * needs read on the topic it has now */
        if (dur && dur->dest != d && !acl_allows_dest(c->who, dur->dest->name, ACL_READ)) {
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
    s->dest = d;
    s->ack = ack;
    s->prefetch = prefetch;
    s->exclusive = exclusive;
    TAILQ_INIT(&s->unacked);
    HASH_ADD_KEYPTR(hh, c->subs, s->id, strlen(s->id), s);
    c->nsubs++;

    if (dname) {
        /* The durable keeps the selector; the subscriber evaluates none
         * (its backlog holds only matching messages). */
        bool journaled = false;
        dur = durable_get(d, c->client_id, dname, seltext, sel, &journaled);
        durable_attach(dur, s);
        if (journaled)
            *lsn = proto_journaled(f);
    } else if (dest_is_queue(d)) {
        s->sel = sel;
        s->q = &d->q;
        queue_add_consumer(&d->q, s);
    } else {
        queue_init(&s->own, d);
        s->own.owner = s;
        s->q = &s->own;
        TAILQ_INSERT_TAIL(&d->subscribers, s, topic_link);
        d->nsubscribers++;
        s->sel = sel;
        /* The backlog is private: the selector was applied on publish. */
        queue_add_consumer(&s->own, s);
    }
    clog_debug(c, "subscribed '%s' to %s (ack %s, prefetch %u%s%s)", s->id, d->name,
               ack == ACK_AUTO ? "auto" : ack == ACK_CLIENT ? "client" : "client-individual", prefetch,
               dname ? ", durable " : "", dname ? dname : "");
    return 0;
}

int handle_unsubscribe(struct conn *c, struct frame *f, uint64_t *lsn)
{
    const char *id = frame_get(f, "id");
    const char *dname = frame_get(f, "activemq.subscriptionName");
    if (dname && !*dname)
        dname = NULL;
    if (!id && c->version < STOMP_11)
        id = frame_get(f, "destination");
    if (!id && !dname)
        return proto_fail("missing id header", "UNSUBSCRIBE requires the id of the subscription.");
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
        if (!dur)
            dur = durable_find(c->client_id, dname);
        /* removing one (and its backlog) needs read on its topic */
        if (dur && !acl_allows_dest(c->who, dur->dest->name, ACL_READ)) {
            char message[256], detail[1200];
            acl_explain(c->who, dur->dest->name, ACL_READ, message, sizeof message, detail, sizeof detail);
            return proto_fail(message, "%s", detail);
        }
    }
    bool journaled = s && sub_destroy(s);
    if (dname && dur)
        journaled |= durable_destroy(dur);
    if (journaled)
        *lsn = proto_journaled(f);
    return 0;
}
