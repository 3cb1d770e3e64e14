/* Routing (see route.h): composite lists, wildcard patterns and virtual
 * topics resolved into concrete destinations, and the two indexes that
 * keep wildcards cheap: a trie of wildcard topics (publishing to a topic
 * walks it once) and a trie of wildcard queue consumers (a new queue
 * walks it once). Virtual topics keep, per topic name, the consumer
 * queues that exist. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "stompd/acl.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/dname.h"
#include "stompd/log.h"
#include "stompd/persist.h"
#include "stompd/route.h"
#include "stompd/sub.h"
#include "stompd/trie.h"
#include "stompd/utf8.h"

#define VT_CONSUMER "Consumer."
#define VT_TOPIC "VirtualTopic.>"

static struct trie topic_patterns;  /* pattern destinations, by pattern */
static struct trie queue_watchers;  /* root subscriptions, by queue pattern */

/* A virtual topic with consumer queues. */
struct vtopic {
    char *topic;                    /* "/topic/VirtualTopic.x" */
    struct dest **q;
    uint32_t n, cap;
    UT_hash_handle hh;
};
static struct vtopic *vtopics;

static char errbuf[1400];

/* ------------------------------------------------------------ authorization */

static char denied_message[256], denied_detail[1200];

static enum acl_perm acl_perm_of(enum route_perm perm)
{
    return perm == ROUTE_READ ? ACL_READ : ACL_WRITE;
}

bool route_allowed(const struct principal *who, const char *name, enum route_perm perm)
{
    /* the ACL (acl.h): temporary destinations and the broker itself
     * (who NULL) are always allowed; a refusal is counted */
    return acl_allows_dest(who, name, acl_perm_of(perm));
}

/* Quietly (not counted as a refused frame): may who take from or give to
 * the concrete destination d that a pattern or a virtual topic adds? */
bool route_allowed_quiet(const struct principal *who, const struct dest *d, enum route_perm perm)
{
    if (!who || !acl_active() || dest_is_temp(d))
        return true;
    return acl_allows(who, d->kind == DEST_QUEUE ? ACL_QUEUE : ACL_TOPIC, dest_short_name(d->name), acl_perm_of(perm));
}

const char *route_denied(void)
{
    return denied_message;
}

static int deny(const struct principal *who, const char *name, enum route_perm perm, const char **err)
{
    acl_explain(who, name, acl_perm_of(perm), denied_message, sizeof denied_message, denied_detail,
                sizeof denied_detail);
    *err = denied_detail;
    return -EACCES;
}

/* dest_open refused to create a destination (no admin permission) */
static int open_denied(const char *err, const char **out)
{
    snprintf(denied_message, sizeof denied_message, "%s", dest_denied());
    snprintf(denied_detail, sizeof denied_detail, "%s", err);
    *out = denied_detail;
    return -EACCES;
}

/* ------------------------------------------------------------ tries */

static void trie_put(struct trie *t, const char *pattern, void *item)
{
    if (!t->root)
        trie_init(t);
    trie_add(t, pattern, item);
}

static void trie_take(struct trie *t, const char *pattern, void *item)
{
    if (t->root && trie_remove(t, pattern, item) && t->nitems == 0)
        trie_free(t); /* nothing left: not even the root is kept */
}

/* ------------------------------------------------------------ virtual topics */

/* The topic a consumer queue's name points at: "/queue/Consumer.A.VirtualTopic.x"
 * -> "/topic/VirtualTopic.x". */
static bool vt_topic_of(const char *qname, char *out, size_t len)
{
    if (strncmp(qname, "/queue/" VT_CONSUMER, 7 + strlen(VT_CONSUMER)) != 0)
        return false;
    const char *group = qname + 7 + strlen(VT_CONSUMER);
    const char *dot = strchr(group, '.');
    if (!dot || dot == group)
        return false; /* the group is one non-empty segment */
    const char *topic = dot + 1;
    if (!dname_match(VT_TOPIC, topic))
        return false;
    return (size_t)snprintf(out, len, "/topic/%s", topic) < len;
}

bool route_is_virtual_queue(const struct dest *d)
{
    char t[1200];
    return d->kind == DEST_QUEUE && vt_topic_of(d->name, t, sizeof t);
}

static void vt_add(struct dest *q)
{
    char t[1200];
    if (!vt_topic_of(q->name, t, sizeof t))
        return;
    struct vtopic *v;
    HASH_FIND_STR(vtopics, t, v);
    if (!v) {
        v = calloc(1, sizeof *v);
        if (!v || !(v->topic = strdup(t)))
            abort();
        HASH_ADD_KEYPTR(hh, vtopics, v->topic, strlen(v->topic), v);
    }
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 4;
        v->q = realloc(v->q, v->cap * sizeof *v->q);
        if (!v->q)
            abort();
    }
    v->q[v->n++] = q;
    log_debug("virtual topic %s: consumer queue %s", t, q->name);
}

static void vt_remove(struct dest *q)
{
    char t[1200];
    if (!vt_topic_of(q->name, t, sizeof t))
        return;
    struct vtopic *v;
    HASH_FIND_STR(vtopics, t, v);
    if (!v)
        return;
    for (uint32_t i = 0; i < v->n; i++) {
        if (v->q[i] == q) {
            memmove(&v->q[i], &v->q[i + 1], (v->n - i - 1) * sizeof *v->q);
            v->n--;
            break;
        }
    }
    if (v->n == 0) {
        HASH_DEL(vtopics, v);
        free(v->q);
        free(v->topic);
        free(v);
    }
}

bool route_keep(struct dest *d)
{
    if (d->kept || !route_is_virtual_queue(d))
        return false;
    d->kept = true;
    log_info("virtual topic consumer queue %s kept from now on", d->name);
    return persist_dest_kept(d);
}

/* ------------------------------------------------------------ destinations come and go */

struct attach_ctx {
    struct dest *q;
    bool later; /* a queue created after the SUBSCRIBE */
};

static void attach_watcher(void *item, void *arg)
{
    struct sub *root = item;
    struct attach_ctx *x = arg;
    /* a root watching through two patterns takes the queue once */
    if (sub_leg_on(root, x->q))
        return;
    /* a wildcard consumer takes only the queues it may read */
    if (!route_allowed_quiet(root->conn->who, x->q, ROUTE_READ))
        return;
    if (!sub_leg_allowed(root)) {
        if (x->later)
            sub_count_refused_leg(root, x->q);
        else
            root->capped = true; /* the SUBSCRIBE is refused */
        return;
    }
    sub_add_leg(root, x->q);
}

void route_dest_created(struct dest *d)
{
    if (d->pattern) {
        trie_put(&topic_patterns, dest_short_name(d->name), d);
        return;
    }
    if (d->kind != DEST_QUEUE)
        return;
    vt_add(d);
    if (queue_watchers.nitems) {
        struct attach_ctx x = {d, true};
        trie_match(&queue_watchers, dest_short_name(d->name), attach_watcher, &x);
    }
}

void route_dest_deleted(struct dest *d)
{
    if (d->pattern)
        trie_take(&topic_patterns, dest_short_name(d->name), d);
    else if (d->kind == DEST_QUEUE)
        vt_remove(d);
}

struct patterns_ctx {
    void (*fn)(struct dest *pattern, void *arg);
    void *arg;
};

static void pattern_found(void *item, void *arg)
{
    struct patterns_ctx *x = arg;
    x->fn(item, x->arg);
}

void route_topic_patterns(const struct dest *d, void (*fn)(struct dest *pattern, void *arg), void *arg)
{
    if (topic_patterns.nitems == 0 || d->pattern || d->kind != DEST_TOPIC)
        return;
    struct patterns_ctx x = {fn, arg};
    trie_match(&topic_patterns, dest_short_name(d->name), pattern_found, &x);
}

/* ------------------------------------------------------------ wildcard queue consumers */

struct watch_ctx {
    struct sub *root;
    const char *pattern;
};

static void watch_existing(struct dest *d, void *arg)
{
    struct watch_ctx *x = arg;
    if (d->kind != DEST_QUEUE || !dname_match(x->pattern, dest_short_name(d->name)))
        return;
    if (x->root->capped)
        return;
    struct attach_ctx a = {d, false};
    attach_watcher(x->root, &a);
}

void route_watch_queues(struct sub *root, const char *pattern)
{
    trie_put(&queue_watchers, pattern, root);
    /* the queues there are now: once, at subscribe time */
    struct watch_ctx x = {root, pattern};
    dest_foreach(watch_existing, &x);
}

void route_unwatch_queues(struct sub *root, const char *pattern)
{
    trie_take(&queue_watchers, pattern, root);
}

/* ------------------------------------------------------------ resolving */

static int fail(const char **err, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(const char **err, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    *err = errbuf;
    return rc;
}

/* The kind of a destination a client named (resolved: its temporary
 * names made broker-wide). A new name must be UTF-8, as STOMP's headers
 * are: one that is not could be made and listed (the console's JSON
 * shows it with U+FFFD), but never named back to purge or delete it. One
 * that exists (made by an earlier release, its messages in the store)
 * can still be used, so its messages can be taken. */
static int kind_of_named(const char *name, const char *resolved, enum dest_kind *kind, const char **err)
{
    const char *bad;
    if (!utf8_name_ok(name, &bad) && !dest_find(resolved))
        return fail(err, -EINVAL, "a destination name %s (a name is UTF-8 text)", bad);
    const char *why;
    if (dest_kind_of(resolved, kind, &why) != 0)
        return fail(err, -EINVAL, "'%.200s': %s", name, why);
    return 0;
}

static void push(struct route *r, struct dest *d, struct dest *via)
{
    for (uint32_t i = 0; i < r->n; i++)
        if (r->v[i] == d)
            return;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 4;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
        if (!r->v)
            abort();
        if (r->via && !(r->via = realloc(r->via, r->cap * sizeof *r->via)))
            abort();
    }
    if (via && !r->via) {
        r->via = calloc(r->cap, sizeof *r->via);
        if (!r->via)
            abort();
    }
    if (r->via)
        r->via[r->n] = via;
    r->v[r->n++] = d;
}

/* Call fn for each element of a comma-separated list (elem is a
 * NUL-terminated copy). Stops at the first non-zero return. */
static int each_element(const char *names, const char **err, int (*fn)(void *arg, const char *elem),
                        void *arg)
{
    size_t n = 1;
    for (const char *p = names; *p; p++)
        n += *p == ',';
    if (config.max_composite > 0 && n > (size_t)config.max_composite)
        return fail(err, -EINVAL, "a composite destination names %zu destinations; stomp.max_composite allows %lld",
                    n, (long long)config.max_composite);
    const char *p = names;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0)
            return fail(err, -EINVAL, "empty destination in the list '%.200s' (destinations are separated by single "
                                      "commas, each with its /queue/ or /topic/ prefix)", names);
        char elem[1100];
        if (len >= sizeof elem)
            return fail(err, -EINVAL, "destination name longer than 1024 bytes");
        memcpy(elem, p, len);
        elem[len] = '\0';
        int rc = fn(arg, elem);
        if (rc)
            return rc;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

struct send_ctx {
    struct conn *c;
    const struct principal *who;
    bool admitted;
    struct route *r;
    const char **err;
    struct buf spec;
};

static int send_elem(void *arg, const char *name)
{
    struct send_ctx *x = arg;
    char buf[1200];
    const char *err;
    enum dest_kind kind;
    const char *resolved = x->c ? dest_resolve_temp(x->c, name, buf, sizeof buf) : name;
    if (kind_of_named(name, resolved, &kind, x->err) != 0)
        return -EINVAL;
    bool temp = kind == DEST_TEMP_QUEUE || kind == DEST_TEMP_TOPIC;
    if (!temp && dname_is_pattern(dest_short_name(resolved)))
        return fail(x->err, -EINVAL, "'%.200s' is a wildcard pattern: a message goes to named destinations only "
                                     "(wildcards are for SUBSCRIBE)", name);
    if (!route_allowed(x->who, resolved, ROUTE_WRITE))
        return deny(x->who, resolved, ROUTE_WRITE, x->err);
    struct dest *d = dest_find(resolved);
    if (!d && temp && (resolved == name || !x->c)) {
        if (!dest_temp_closed(resolved))
            return fail(x->err, -ENOENT,
                        "'%.200s' names no temporary destination: none of that name was created, or its "
                        "connection deleted it",
                        name);
        x->r->gone++;
        return 0; /* its connection has closed: nobody can consume it, so nothing goes there */
    }
    if (!d) {
        int rc = x->admitted ? ((d = dest_get(resolved, x->c, &err)) ? 0 : -EINVAL)
                             : dest_open(resolved, x->c, x->who, &d, &err);
        if (rc == -EACCES)
            return open_denied(err, x->err);
        if (rc != 0)
            return fail(x->err, rc, "'%.200s': %s", name, err);
    }
    uint32_t before = x->r->n;
    push(x->r, d, NULL);
    if (x->r->n > before) {
        if (buf_used(&x->spec))
            buf_putc(&x->spec, ',');
        buf_append_str(&x->spec, d->name);
    }
    return 0;
}

int route_send(struct conn *c, const struct principal *who, const char *names, bool admitted, struct route *out,
               const char **err)
{
    memset(out, 0, sizeof *out);
    struct send_ctx x = {c, who, admitted, out, err, {0}};
    int rc = each_element(names, err, send_elem, &x);
    if (rc == 0) {
        buf_putc(&x.spec, '\0');
        out->spec = x.spec.data;
        x.spec.data = NULL;
        out->nnamed = out->n;
        /* virtual topics: every consumer group's queue gets a copy */
        for (uint32_t i = 0; i < out->nnamed && vtopics; i++) {
            struct dest *d = out->v[i];
            if (d->kind != DEST_TOPIC)
                continue;
            struct vtopic *v;
            HASH_FIND_STR(vtopics, d->name, v);
            for (uint32_t k = 0; v && k < v->n; k++)
                if (route_allowed_quiet(who, v->q[k], ROUTE_WRITE)) /* consumer queues are queues */
                    push(out, v->q[k], d);
        }
    }
    buf_free(&x.spec);
    return rc;
}

void route_single(struct route *r, struct dest *d)
{
    memset(r, 0, sizeof *r);
    push(r, d, NULL);
    r->nnamed = 1;
}

void route_free(struct route *r)
{
    free(r->v);
    free(r->via);
    free(r->spec);
    memset(r, 0, sizeof *r);
}

struct sub_ctx {
    struct conn *c;
    struct route_sub *r;
    const char **err;
};

static int sub_elem(void *arg, const char *name)
{
    struct sub_ctx *x = arg;
    char buf[1200];
    const char *err;
    enum dest_kind kind;
    const char *resolved = dest_resolve_temp(x->c, name, buf, sizeof buf);
    if (kind_of_named(name, resolved, &kind, x->err) != 0)
        return -EINVAL;
    struct dest *d = dest_find(resolved);
    bool temp = kind == DEST_TEMP_QUEUE || kind == DEST_TEMP_TOPIC;
    if (temp && resolved == name && (!d || d->owner != x->c))
        return fail(x->err, -EPERM, "only the connection that created '%.200s' may consume from it", name);
    /* a pattern is checked as named (an entry covering it covers what it
     * can match); each destination it matches is checked again when it
     * reaches the subscription (route_allowed_quiet) */
    if (!route_allowed(x->c->who, resolved, ROUTE_READ))
        return deny(x->c->who, resolved, ROUTE_READ, x->err);
    struct route_sub *r = x->r;
    struct route_sub_target t = {NULL, NULL};
    if (kind == DEST_QUEUE && dname_is_pattern(dest_short_name(resolved))) {
        if (!(t.qpattern = strdup(dest_short_name(resolved))))
            abort();
        for (uint32_t i = 0; i < r->n; i++) {
            if (r->v[i].qpattern && !strcmp(r->v[i].qpattern, t.qpattern)) {
                free(t.qpattern);
                return 0;
            }
        }
    } else {
        if (!d) {
            int rc = dest_open(resolved, x->c, x->c->who, &d, &err);
            if (rc == -EACCES)
                return open_denied(err, x->err);
            if (rc != 0)
                return fail(x->err, rc, "'%.200s': %s", name, err);
        }
        for (uint32_t i = 0; i < r->n; i++)
            if (r->v[i].d == d)
                return 0;
        t.d = d;
    }
    struct route_sub_target *v = realloc(r->v, (r->n + 1) * sizeof *v);
    if (!v)
        abort();
    r->v = v;
    r->v[r->n++] = t;
    return 0;
}

int route_subscribe(struct conn *c, const char *names, struct route_sub *out, const char **err)
{
    memset(out, 0, sizeof *out);
    struct sub_ctx x = {c, out, err};
    return each_element(names, err, sub_elem, &x);
}

void route_sub_free(struct route_sub *r)
{
    for (uint32_t i = 0; i < r->n; i++)
        free(r->v[i].qpattern);
    free(r->v);
    memset(r, 0, sizeof *r);
}

void route_stats(struct route_stats *st)
{
    st->topic_patterns = topic_patterns.nitems;
    st->queue_watchers = queue_watchers.nitems;
    st->virtual_topics = HASH_COUNT(vtopics);
    st->trie_nodes = topic_patterns.nnodes + queue_watchers.nnodes;
}
