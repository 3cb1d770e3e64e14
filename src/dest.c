/* The destination registry: lookup and creation by name, kinds by prefix,
 * memory accounting against broker.dest_memory_limit / broker.memory_limit
 * / broker.max_queue_depth, and waking producers paused on a full
 * destination once it drains below 90% of its limits. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "stompd/acl.h"
#include "stompd/commit.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/durable.h"
#include "stompd/journal.h"
#include "stompd/dname.h"
#include "stompd/persist.h"
#include "stompd/log.h"
#include "stompd/route.h"
#include "stompd/server.h"
#include "stompd/sub.h"
#include "stompd/topic.h"

static struct dest *dests;
static struct dest *sweep_next; /* where the idle sweep goes on */
/* idle destinations to delete before the loop sleeps (dest_reclaim) */
static struct dest **reclaims;
static size_t nreclaims, cap_reclaims;
static bool reclaim_one(void);
static int64_t total_mem;
/* Destinations with paused producers, so a global drain can wake them. */
static struct dest **blocked_dests;
static size_t nblocked_dests, cap_blocked_dests;

static const struct {
    const char *prefix;
    enum dest_kind kind;
} prefixes[] = {
    {"/queue/", DEST_QUEUE},
    {"/topic/", DEST_TOPIC},
    {"/remote-temp-queue/", DEST_TEMP_QUEUE},
    {"/remote-temp-topic/", DEST_TEMP_TOPIC},
};

int dest_kind_of(const char *name, enum dest_kind *kind, const char **err)
{
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        size_t pl = strlen(prefixes[i].prefix);
        if (strncmp(name, prefixes[i].prefix, pl) == 0) {
            if (name[pl] == '\0') {
                *err = "destination has an empty name after its prefix";
                return -EINVAL;
            }
            *kind = prefixes[i].kind;
            return 0;
        }
    }
    if (!strncmp(name, "/temp-queue/", 12) || !strncmp(name, "/temp-topic/", 12)) {
        /* a connection's own name, which its connection resolves first */
        *err = name[12] ? "a /temp-queue/ or /temp-topic/ name is its own connection's: elsewhere, use the "
                          "/remote-temp-queue/ or /remote-temp-topic/ name its messages carry"
                        : "destination has an empty name after its prefix";
        return -EINVAL;
    }
    *err = "unknown destination type: use /queue/NAME, /topic/NAME, /temp-queue/NAME or /temp-topic/NAME";
    return -EINVAL;
}

/* This process's token in temporary names: connection ids start again at
 * 1 with each process, so a name a former one gave out (before a restart
 * or a failover) must not reach the connection that has its id now. */
static const char *temp_token(void)
{
    static char token[9];
    if (!token[0]) {
        uint32_t r;
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
            r = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16);
        snprintf(token, sizeof token, "%08x", r);
    }
    return token;
}

/* A broker-wide temporary name's parts: <broker.name>-<token>-<connection
 * id>-<local name>. */
static bool temp_parse(const char *name, const char **token, uint64_t *id, const char **local)
{
    const char *p = dest_short_name(name);
    size_t bl = strlen(config.broker_name);
    if (strncmp(p, config.broker_name, bl) || p[bl] != '-')
        return false;
    p += bl + 1;
    *token = p;
    for (int i = 0; i < 8; i++, p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    if (*p++ != '-')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p || *p < '0' || *p > '9' || errno || end[0] != '-' || end[1] == '\0')
        return false;
    *id = v;
    *local = end + 1;
    return true;
}

bool dest_temp_closed(const char *name)
{
    const char *token, *local;
    uint64_t id;
    if (!temp_parse(name, &token, &id, &local))
        return false;
    if (strncmp(token, temp_token(), 8))
        return true; /* a former process gave it out: its connection has gone with it */
    return id > 0 && id <= srv.next_conn_id && !conn_find(id);
}

const char *dest_resolve_temp(const struct conn *c, const char *name, char *buf, size_t len)
{
    const char *kind;
    size_t pl;
    if (!strncmp(name, "/temp-queue/", 12)) {
        kind = "queue";
        pl = 12;
    } else if (!strncmp(name, "/temp-topic/", 12)) {
        kind = "topic";
        pl = 12;
    } else {
        return name;
    }
    if (name[pl] == '\0')
        return name; /* dest_kind_of reports the empty name */
    snprintf(buf, len, "/remote-temp-%s/%s-%s-%llu-%s", kind, config.broker_name, temp_token(),
             (unsigned long long)c->id, name + pl);
    return buf;
}

const char *dest_short_name(const char *name)
{
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        size_t pl = strlen(prefixes[i].prefix);
        if (strncmp(name, prefixes[i].prefix, pl) == 0)
            return name + pl;
    }
    return name;
}

struct dest *dest_find(const char *name)
{
    struct dest *d;
    HASH_FIND_STR(dests, name, d);
    return d;
}

/* The name a temporary destination's connection gave it: the reverse of
 * dest_resolve_temp, NULL if it is not that connection's. */
static char *temp_local_name(const struct dest *d, const struct conn *c)
{
    const char *token, *local;
    uint64_t id;
    if (!temp_parse(d->name, &token, &id, &local) || strncmp(token, temp_token(), 8) || id != c->id)
        return NULL;
    char *s;
    if (asprintf(&s, "/temp-%s/%s", d->kind == DEST_TEMP_QUEUE ? "queue" : "topic", local) < 0)
        abort();
    return s;
}

struct dest *dest_get(const char *name, struct conn *conn, const char **err)
{
    struct dest *d = dest_find(name);
    if (d)
        return d;
    enum dest_kind kind;
    if (dest_kind_of(name, &kind, err) != 0)
        return NULL;
    if (strlen(name) > 1024) {
        *err = "destination name longer than 1024 bytes";
        return NULL;
    }
    d = calloc(1, sizeof *d);
    if (!d || !(d->name = strdup(name)))
        abort();
    d->kind = kind;
    d->pattern = kind == DEST_TOPIC && dname_is_pattern(dest_short_name(name));
    queue_init(&d->q, d);
    if (kind == DEST_QUEUE && persist_has_store()) {
        /* its persistent messages are in the store's index: it may page */
        struct buf p = {0};
        jkey_q_prefix(&p, d->name, strlen(d->name));
        queue_set_prefix(&d->q, p.data, p.len);
        buf_free(&p);
        queue_made(&d->q);
    }
    TAILQ_INIT(&d->subscribers);
    TAILQ_INIT(&d->durables);
    TAILQ_INIT(&d->blocked);
    if (dest_is_temp(d) && conn) {
        d->owner = conn;
        d->local_name = temp_local_name(d, conn);
        TAILQ_INSERT_TAIL(&conn->temps, d, owner_link);
    }
    HASH_ADD_KEYPTR(hh, dests, d->name, strlen(d->name), d);
    log_debug("destination %s created", d->name);
    /* wildcard consumers of matching queues attach, a wildcard topic is
     * indexed, a virtual topic's consumer queue is registered */
    route_dest_created(d);
    return d;
}

static char denied_message[256], denied_detail[1200];

const char *dest_denied(void)
{
    return denied_message;
}

int dest_open(const char *name, struct conn *conn, const struct principal *who, struct dest **out, const char **err)
{
    static char full[160];
    *out = dest_find(name);
    if (*out)
        return 0;
    if (who && !acl_allows_dest(who, name, ACL_ADMIN)) {
        acl_explain(who, name, ACL_ADMIN, denied_message, sizeof denied_message, denied_detail, sizeof denied_detail);
        *err = denied_detail;
        return -EACCES;
    }
    if (config.max_destinations > 0 && (int64_t)(dest_count() - nreclaims) >= config.max_destinations &&
        !reclaim_one()) {
        snprintf(full, sizeof full, "the broker already holds its maximum of %lld destinations (broker.max_destinations)",
                 (long long)config.max_destinations);
        *err = full;
        return -ENOSPC;
    }
    *out = dest_get(name, conn, err);
    return *out ? 0 : -EINVAL;
}

static void unblock_all(struct dest *d)
{
    op_room_free(d);
}

void dest_delete(struct dest *d)
{
    struct sub *s;
    while ((s = TAILQ_FIRST(&d->q.consumers)))
        sub_destroy(s);
    while ((s = TAILQ_FIRST(&d->subscribers)))
        sub_destroy(s);
    durable_dest_deleted(d);
    route_dest_deleted(d);
    unblock_all(d);
    queue_destroy(&d->q);
    if (d->owner)
        TAILQ_REMOVE(&d->owner->temps, d, owner_link);
    for (size_t i = 0; i < nblocked_dests; i++) {
        if (blocked_dests[i] == d) {
            blocked_dests[i] = blocked_dests[--nblocked_dests];
            break;
        }
    }
    if (sweep_next == d)
        sweep_next = d->hh.next;
    if (d->reclaim) {
        for (size_t i = 0; i < nreclaims; i++)
            if (reclaims[i] == d) {
                reclaims[i] = reclaims[--nreclaims];
                break;
            }
    }
    HASH_DEL(dests, d);
    log_debug("destination %s deleted", d->name);
    free(d->name);
    free(d->local_name);
    free(d);
}

void dest_free_all(void)
{
    struct dest *d, *tmp;
    HASH_ITER(hh, dests, d, tmp)
        dest_delete(d);
    queue_forget_deleted();
    free(blocked_dests);
    blocked_dests = NULL;
    nblocked_dests = cap_blocked_dests = 0;
    free(reclaims);
    reclaims = NULL;
    nreclaims = cap_reclaims = 0;
}

/* d->mem counts every message charged to d wherever it waits (its queue,
 * a subscriber's backlog, a consumer's unacked list), so 0 means no entry
 * points at d; subscribers, durables and paused producers are the other
 * holders of a struct dest pointer. Everything else names it. A queue
 * whose removals the store has not indexed yet is not idle: made again
 * by that name, it would read them back from the index (helper-85). */
static bool idle(const struct dest *d)
{
    /* (a delivery still held in a closing connection's output may come
     * back: queue_unsent_return) */
    return !dest_is_temp(d) && !d->kept && d->mem == 0 && d->q.npending == 0 && d->q.nconsumers == 0 &&
           d->nsubscribers == 0 && d->ndurables == 0 && TAILQ_EMPTY(&d->blocked) && !d->q.dirty && !d->q.gone &&
           TAILQ_EMPTY(&d->q.unsent);
}

/* The sweep looks at a bounded number of destinations at a time and goes
 * on from there at the next turn of the loop, so no turn's cost grows
 * with the number of destinations (an idle one goes after two visits);
 * each sweep visits them all (helper-102: 1,024 a sweep took 50,000
 * drained queues 49 minutes to go). */
#define SWEEP_STEP 1024

size_t dest_collect_idle(bool *more)
{
    size_t n = 0;
    struct dest *d = sweep_next ? sweep_next : dests, *next;
    for (int steps = 0; d && steps < SWEEP_STEP; steps++, d = next) {
        next = d->hh.next;
        sweep_next = next;
        if (!idle(d)) {
            d->idle_seen = false;
        } else if (d->idle_seen && d->idle_enqueued == d->st.enqueued) {
            dest_delete(d);
            n++;
        } else {
            d->idle_seen = true;
            d->idle_enqueued = d->st.enqueued;
            d->idle_since = ev_now(srv.loop);
        }
    }
    sweep_next = d; /* NULL: the next sweep starts from the first */
    *more = d != NULL;
    return n;
}

/* At broker.max_destinations, a destination idle for a while makes room
 * for the one asked for: the sweep would take it, but it visits so many
 * at a time, twice, every broker.expiry_check_interval, and a burst of
 * short-lived names held the registry full for minutes after their
 * clients left (helper-83: every new destination refused, temporary
 * queues too). Only one seen idle, with nothing sent to it since, at
 * least RECLAIM_IDLE ago: a topic read through virtual-topic queues or a
 * wildcard is idle between SENDs, and a name whose messages wait
 * elsewhere (a transaction, the scheduler, the journal) is idle until
 * they come (helper-85). Each call goes on where the last stopped,
 * noting what it finds idle. Marked here and deleted before the loop
 * sleeps, if still idle: the caller may hold a pointer to it. */
static double reclaim_idle_s(void)
{
    double sweep = (double)config.expiry_check_interval / 1000.0;
    return sweep < 5.0 ? sweep : 5.0;
}

static bool reclaim_one(void)
{
    ev_tstamp now = ev_now(srv.loop);
    struct dest *d = sweep_next ? sweep_next : dests;
    for (int steps = 0; d && steps < SWEEP_STEP; steps++) {
        struct dest *next = d->hh.next ? d->hh.next : dests;
        sweep_next = d->hh.next;
        if (d->reclaim) {
            /* marked already */
        } else if (!idle(d)) {
            d->idle_seen = false;
        } else if (!d->idle_seen || d->idle_enqueued != d->st.enqueued) {
            d->idle_seen = true;
            d->idle_enqueued = d->st.enqueued;
            d->idle_since = now;
        } else if (now - d->idle_since >= reclaim_idle_s()) {
            if (nreclaims == cap_reclaims) {
                cap_reclaims = cap_reclaims ? cap_reclaims * 2 : 16;
                if (!(reclaims = realloc(reclaims, cap_reclaims * sizeof *reclaims)))
                    abort();
            }
            d->reclaim = true;
            reclaims[nreclaims++] = d;
            return true;
        }
        d = next;
    }
    return false;
}

size_t dest_reclaim(void)
{
    size_t n = 0;
    while (nreclaims > 0) {
        struct dest *d = reclaims[--nreclaims];
        d->reclaim = false;
        if (idle(d)) {
            dest_delete(d);
            n++;
        }
    }
    return n;
}

size_t dest_count(void)
{
    return HASH_COUNT(dests);
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(struct dest *const *)a)->name, (*(struct dest *const *)b)->name);
}

/* The most interesting first: the most waiting, the most memory, by name */
static int by_weight(const void *a, const void *b)
{
    const struct dest *x = *(struct dest *const *)a, *y = *(struct dest *const *)b;
    if (x->q.npending != y->q.npending)
        return x->q.npending > y->q.npending ? -1 : 1;
    if (x->mem != y->mem)
        return x->mem > y->mem ? -1 : 1;
    return strcmp(x->name, y->name);
}

size_t dest_top(struct dest **v, size_t n, size_t max)
{
    if (n <= max)
        return n;
    qsort(v, n, sizeof *v, by_weight);
    qsort(v, max, sizeof *v, by_name);
    return max;
}

void dest_foreach(void (*fn)(struct dest *d, void *arg), void *arg)
{
    size_t n = HASH_COUNT(dests), i = 0;
    if (n == 0)
        return;
    struct dest **v = malloc(n * sizeof *v);
    if (!v)
        abort();
    struct dest *d, *tmp;
    HASH_ITER(hh, dests, d, tmp)
        v[i++] = d;
    qsort(v, n, sizeof *v, by_name);
    for (i = 0; i < n; i++)
        fn(v[i], arg);
    free(v);
}

int64_t dest_total_mem(void)
{
    return total_mem;
}

static bool over(const struct dest *d, int64_t pct)
{
    if (d->mem * 100 >= config.dest_memory_limit * pct)
        return true;
    if (total_mem * 100 >= config.memory_limit * pct)
        return true;
    if (config.max_queue_depth && dest_is_queue(d) && (int64_t)d->q.npending * 100 >= config.max_queue_depth * pct)
        return true;
    return false;
}

bool dest_is_full(const struct dest *d)
{
    return over(d, 100);
}

static void check_room(struct dest *d)
{
    if (!TAILQ_EMPTY(&d->blocked) && !over(d, 90))
        unblock_all(d);
}

static void global_drained(void)
{
    /* once at a time: waking a producer may free memory and come back
     * here, and this pass goes on with what that one would do */
    static bool draining;
    if (draining || total_mem * 100 >= config.memory_limit * 90)
        return;
    draining = true;
    for (size_t i = 0; i < nblocked_dests;) {
        struct dest *b = blocked_dests[i];
        check_room(b);
        /* what a wake-up did to the list meanwhile: b may have left it */
        if (i < nblocked_dests && blocked_dests[i] == b && TAILQ_EMPTY(&b->blocked))
            blocked_dests[i] = blocked_dests[--nblocked_dests];
        else if (i < nblocked_dests && blocked_dests[i] == b)
            i++;
    }
    draining = false;
}

void dest_reserve(int64_t bytes)
{
    total_mem += bytes;
    if (bytes < 0 && nblocked_dests)
        global_drained();
}

void dest_mem_add(struct dest *d, int64_t bytes)
{
    d->mem += bytes;
    total_mem += bytes;
    if (bytes >= 0 || nblocked_dests == 0)
        return;
    check_room(d);
    /* A global drain may free destinations other than this one. */
    global_drained();
    if (TAILQ_EMPTY(&d->blocked)) {
        for (size_t i = 0; i < nblocked_dests; i++) {
            if (blocked_dests[i] == d) {
                blocked_dests[i] = blocked_dests[--nblocked_dests];
                break;
            }
        }
    }
}

/* A destination's producers began to wait: said at most every 10 s,
 * with how many more did meanwhile (helper-109: a topic held by offline
 * durable subscriptions paused its producers without a word) */
static void warn_full(const struct dest *d)
{
    static double last;
    static uint64_t unsaid;
    double now = srv.loop ? ev_now(srv.loop) : 0;
    if (last && now - last < 10) {
        unsaid++;
        return;
    }
    const char *why = d->mem * 100 >= config.dest_memory_limit * 100 ? "broker.dest_memory_limit"
                      : total_mem >= config.memory_limit              ? "broker.memory_limit"
                                                                      : "broker.max_queue_depth";
    char more[64] = "";
    if (unsaid)
        snprintf(more, sizeof more, " (and %" PRIu64 " more since the last warning)", unsaid);
    log_warn("destination %s is full (%s, %lld bytes in memory): its producers wait for room%s", d->name, why,
             (long long)d->mem, more);
    last = now ? now : 1;
    unsaid = 0;
}

void dest_note_blocked(struct dest *d)
{
    if (!TAILQ_EMPTY(&d->blocked))
        return;
    warn_full(d);
    if (nblocked_dests == cap_blocked_dests) {
        cap_blocked_dests = cap_blocked_dests ? cap_blocked_dests * 2 : 16;
        blocked_dests = realloc(blocked_dests, cap_blocked_dests * sizeof *blocked_dests);
        if (!blocked_dests)
            abort();
    }
    blocked_dests[nblocked_dests++] = d;
}

void dest_deliver(struct dest *d, struct msg *m)
{
    d->st.enqueued++;
    if (dest_is_queue(d))
        queue_push(&d->q, m);
    else
        topic_publish(d, m);
}
