/* Durable topic subscriptions: a registry keyed by (client-id, name), each
 * with a backlog queue that collects the topic's messages matching its
 * selector whether or not a subscriber is attached. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "stompd/acl.h"
#include "stompd/auth.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/journal.h"
#include "stompd/durable.h"
#include "stompd/log.h"
#include "stompd/selector.h"
#include "stompd/persist.h"
#include "stompd/principal.h"
#include "stompd/sub.h"

static struct durable *registry;

static char *make_key(const char *client_id, const char *name, size_t *len)
{
    size_t a = strlen(client_id), b = strlen(name);
    char *k = malloc(a + b + 2);
    if (!k)
        abort();
    memcpy(k, client_id, a + 1);
    memcpy(k + a + 1, name, b + 1);
    *len = a + 1 + b;
    return k;
}

struct durable *durable_find(const char *client_id, const char *name)
{
    size_t len;
    char *k = make_key(client_id, name, &len);
    struct durable *d;
    HASH_FIND(hh, registry, k, len, d);
    free(k);
    return d;
}

bool durable_client_known(const char *client_id)
{
    struct durable *d, *tmp;
    HASH_ITER(hh, registry, d, tmp)
        if (strcmp(d->client_id, client_id) == 0)
            return true;
    return false;
}

static struct durable *create(struct dest *topic, const char *client_id, const char *name,
                              const char *selector, struct selector *sel)
{
    struct durable *d = calloc(1, sizeof *d);
    if (!d)
        abort();
    d->key = make_key(client_id, name, &d->keylen);
    d->client_id = d->key;
    d->name = d->key + strlen(client_id) + 1;
    static uint64_t serials;
    d->dest = topic;
    d->serial = ++serials;
    d->selector = selector ? strdup(selector) : NULL;
    d->sel = sel;
    queue_init(&d->q, topic);
    d->q.durable = d;
    if (persist_has_store()) {
        struct buf p = {0};
        jkey_t_prefix(&p, client_id, strlen(client_id), name, strlen(name));
        queue_set_prefix(&d->q, p.data, p.len);
        buf_free(&p);
    }
    HASH_ADD_KEYPTR(hh, registry, d->key, d->keylen, d);
    TAILQ_INSERT_TAIL(&topic->durables, d, topic_link);
    topic->ndurables++;
    return d;
}

char *durable_reader_key(const struct principal *who)
{
    char *k;
    if (!who)
        k = strdup("");
    else if (who->anonymous)
        k = strdup("A");
    else if (asprintf(&k, "U%s", who->name) < 0)
        k = NULL;
    if (!k)
        abort();
    return k;
}

/* Whom a stored reader names now: a user gone from auth.users reads only
 * what `*` grants, as a user in no group. */
static struct principal *reader_of_key(const char *key)
{
    if (!key || !*key)
        return NULL;
    if (!strcmp(key, "A"))
        return principal_ref(auth_anonymous());
    struct principal *who = key[0] == 'U' ? auth_user(key + 1) : NULL;
    return who ? principal_ref(who) : principal_new(key[0] == 'U' ? key + 1 : key, NULL, 0, false);
}

/* who reads d from now on: true when the store must be told */
static bool set_reader(struct durable *d, struct principal *who)
{
    char *k = durable_reader_key(who);
    principal_unref(d->reader);
    d->reader = who ? principal_ref(who) : NULL;
    if (d->reader_key && !strcmp(d->reader_key, k)) {
        free(k);
        return false;
    }
    free(d->reader_key);
    d->reader_key = k;
    return true;
}

void durable_readers_refresh(void)
{
    struct durable *d, *tmp;
    HASH_ITER(hh, registry, d, tmp) {
        if (!d->reader)
            continue; /* not known: found out at the next SUBSCRIBE */
        struct principal *now = reader_of_key(d->reader_key);
        principal_unref(d->reader);
        d->reader = now;
    }
}

struct durable *durable_restore(struct dest *topic, const char *client_id, const char *name,
                                const char *selector, struct selector *sel, const char *reader)
{
    struct durable *d = create(topic, client_id, name, selector, sel);
    d->reader = reader_of_key(reader);
    if (!(d->reader_key = strdup(reader ? reader : "")))
        abort();
    return d;
}

static bool same_selector(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

struct durable *durable_get(struct dest *topic, struct principal *who, const char *client_id, const char *name,
                            const char *selector, struct selector *sel, bool *journaled)
{
    struct durable *d = durable_find(client_id, name);
    if (d && d->dest == topic && same_selector(d->selector, selector)) {
        selector_free(sel);
        if (set_reader(d, who))
            *journaled |= persist_durable_created(d);
        return d;
    }
    if (d) {
        log_info("durable subscription %s/%s changed topic or selector: replaced", client_id, name);
        *journaled |= durable_destroy(d);
    }
    d = create(topic, client_id, name, selector, sel);
    set_reader(d, who);
    *journaled |= persist_durable_created(d);
    log_info("durable subscription %s/%s on %s created", client_id, name, topic->name);
    return d;
}

void durable_attach(struct durable *d, struct sub *s)
{
    d->active = s;
    s->durable = d;
    s->q = &d->q;
    queue_add_consumer(&d->q, s);
}

void durable_detach(struct durable *d, struct sub *s)
{
    if (d->active == s)
        d->active = NULL;
}

void durable_dropping(struct durable *d)
{
    /* as a purge takes them (queue_return): neither given back nor
     * counted as redelivered (helper-82: an UNSUBSCRIBE by name counted
     * the 50 messages its subscriber held as redeliveries) */
    d->q.purges++;
}

static bool destroy(struct durable *d, bool journal)
{
    bool journaled = false;
    durable_dropping(d);
    if (d->active)
        journaled |= sub_destroy(d->active);
    if (journal)
        journaled |= persist_durable_deleted(d);
    queue_destroy(&d->q);
    HASH_DEL(registry, d);
    TAILQ_REMOVE(&d->dest->durables, d, topic_link);
    d->dest->ndurables--;
    selector_free(d->sel);
    principal_unref(d->reader);
    free(d->reader_key);
    free(d->selector);
    free(d->key);
    free(d);
    return journaled;
}

bool durable_destroy(struct durable *d)
{
    log_info("durable subscription %s/%s destroyed", d->client_id, d->name);
    return destroy(d, true);
}

void durable_dest_deleted(struct dest *topic)
{
    struct durable *d;
    while ((d = TAILQ_FIRST(&topic->durables)))
        destroy(d, true);
}

bool durable_may_read(const struct durable *d, const char *origin)
{
    if (!d->dest->pattern || !d->reader || !acl_active() || strncmp(origin, "/topic/", 7) != 0)
        return true;
    /* quietly: a message passed over is no refused frame (acl_allows_dest
     * would count and log each) */
    return acl_allows(d->reader, ACL_TOPIC, origin + 7, ACL_READ);
}

void durable_publish(struct dest *topic, const struct dest *origin, struct msg *m)
{
    struct durable *d;
    if (m->jdurables_judged) {
        /* Journaled: the entry names the backlogs, whatever the budget
         * says now. A copy the store does not name would never be read
         * back once paged out; one it names must be there to be acked.
         * Both lists are in creation order, serials ascending; a
         * subscription created since the entry is not named. */
        uint32_t i = 0;
        TAILQ_FOREACH(d, &topic->durables, topic_link) {
            while (i < m->njdurables && m->jdurables[i] >> 1 < d->serial)
                i++;
            if (i == m->njdurables)
                break;
            if (m->jdurables[i] >> 1 != d->serial)
                continue;
            if (m->jdurables[i] & 1)
                queue_push_unfiltered(&d->q, m);
            else
                queue_push(&d->q, m);
        }
        /* the list also names wildcard topics' durable subscriptions:
         * topic_publish frees it after the last of them */
        return;
    }
    TAILQ_FOREACH(d, &topic->durables, topic_link) {
        if (!durable_may_read(d, origin->name))
            continue;
        switch (sub_select(d->sel, m)) {
        case SUB_YES:
            queue_push(&d->q, m);
            break;
        case SUB_LATER:
            queue_push_unfiltered(&d->q, m);
            break;
        case SUB_NO:
            break;
        }
    }
}

void durable_foreach(void (*fn)(struct durable *d, void *arg), void *arg)
{
    struct durable *d, *tmp;
    HASH_ITER(hh, registry, d, tmp)
        fn(d, arg);
}

size_t durable_count(void)
{
    return HASH_COUNT(registry);
}

void durable_free_all(void)
{
    struct durable *d, *tmp;
    HASH_ITER(hh, registry, d, tmp)
        destroy(d, false);
}
