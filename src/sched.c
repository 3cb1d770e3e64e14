/* The scheduler (see sched.h). Jobs in memory sit in a tree ordered by
 * (due, 9 - priority, seq), which is also the order of their W keys in
 * the store's index, found by id and by seq through two hashes. Paging
 * follows queue.c: while some persistent jobs are only in the store,
 * every job whose key is below `limit` is in memory (or was removed);
 * those at or beyond it are read back in order as the ones before fire.
 * A job leaves memory only once the store has indexed it, and a removed
 * job is remembered (by seq) until its removal is indexed, so paging
 * never reads a job twice or one that is gone. One ev_timer is armed for
 * the first due job (or the first one still in the store). */
#include "config.h"

#include <bsd/sys/tree.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "stompd/commit.h"
#include "stompd/config.h"
#include "stompd/cron.h"
#include "stompd/dest.h"
#include "stompd/journal.h"
#include "stompd/log.h"
#include "stompd/msg.h"
#include "stompd/persist.h"
#include "stompd/publish.h"
#include "stompd/route.h"
#include "stompd/sched.h"
#include "stompd/server.h"
#include "stompd/store.h"

#define FIRE_BATCH 512      /* jobs fired per loop turn at most (one journal entry) */
#define PAGE_BATCH 1000     /* jobs read back from the store per page-in at most */
#define SHRINK_STEPS 4096   /* jobs looked at per shrink */

#define H_DELAY "AMQ_SCHEDULED_DELAY"
#define H_PERIOD "AMQ_SCHEDULED_PERIOD"
#define H_REPEAT "AMQ_SCHEDULED_REPEAT"
#define H_CRON "AMQ_SCHEDULED_CRON"
#define H_JOB_ID "scheduledJobId"
#define MAX_MS (1LL << 50) /* about 35,000 years: no overflow adding to now */

struct skey {
    int64_t due;
    uint8_t rprio;      /* 9 - priority */
    uint64_t seq;
};

struct job {
    RB_ENTRY(job) node;
    UT_hash_handle hh;  /* by id */
    UT_hash_handle sh;  /* by seq */
    struct skey key;
    struct msg *msg;    /* the record */
    bool stored;        /* journaled, in the store */
    uint64_t lsn;       /* the entry that put this record; UINT64_MAX until its batch closes */
    bool unassigned;    /* on the list of records waiting for their batch's lsn */
    TAILQ_ENTRY(job) ua_link;
    struct park *park;  /* due, and waiting for room in its destination (in S.parked) */
    TAILQ_ENTRY(job) park_link;
};
TAILQ_HEAD(job_list, job);

/* A destination a due job would fire into is full: its jobs wait apart
 * until it has room, and the others fire on. */
struct park {
    struct dest *d;
    struct job_list jobs;   /* in the order they came due */
    struct op *waiter;      /* waits for room in d (commit.c) */
    UT_hash_handle hh;      /* S.parks, by d */
};

/* A job removed from memory whose removal the store has not indexed. */
struct gone {
    uint64_t seq;
    uint64_t lsn;
    UT_hash_handle hh;
    TAILQ_ENTRY(gone) link;
};
TAILQ_HEAD(gone_head, gone);

static int key_cmp(const struct skey *a, const struct skey *b)
{
    if (a->due != b->due)
        return a->due < b->due ? -1 : 1;
    if (a->rprio != b->rprio)
        return a->rprio < b->rprio ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int job_cmp(struct job *a, struct job *b)
{
    return key_cmp(&a->key, &b->key);
}

RB_HEAD(jtree, job);
RB_PROTOTYPE(jtree, job, node, job_cmp)
RB_GENERATE(jtree, job, node, job_cmp)

static struct {
    struct jtree tree;              /* jobs in memory, but those parked */
    struct jtree parked;            /* due jobs waiting for room, in key order too */
    struct park *parks;
    size_t nparked;
    int64_t parked_bytes;           /* of window_bytes, the parked jobs': they cannot leave memory */
    bool parks_full;                /* parked_bytes reached the window: every firing waits */
    struct job *by_id, *by_seq;
    size_t nmem;
    struct gone *gone;
    struct gone_head gone_list;     /* in lsn order */
    uint64_t stored;                /* persistent jobs, in memory or not */
    uint64_t volatiles;             /* memory-only jobs */
    int64_t volatile_bytes;         /* ...their messages: charged apart from the messages held
                                     * (dest_total_mem), which they must not hold up: firing is
                                     * what frees them */
    int64_t window_bytes;           /* persistent jobs' records in memory */
    bool paged;
    struct skey limit;
    int64_t read_again_at;          /* paging could not read a job for now: not before this (ms) */
    uint64_t indexed_upto;
    struct job_list unassigned;     /* records waiting for a batch's lsn */
    bool gone_unassigned;           /* removals wait for a batch's lsn */
    bool running;
    ev_timer timer;
    struct op *held;                /* the last turn's firings, waiting for room in the store */
    uint64_t fired, cancelled, holds;
} S = {.tree = RB_INITIALIZER(&S.tree), .parked = RB_INITIALIZER(&S.parked), .gone_list = TAILQ_HEAD_INITIALIZER(S.gone_list),
       .unassigned = TAILQ_HEAD_INITIALIZER(S.unassigned)};

static void arm(void);

#define READ_AGAIN_MS 1000

/* ------------------------------------------------------------ the schedule in the headers */

struct spec {
    int64_t delay, period, repeat;
    const char *cron;
    bool scheduled;
};

static int int_header(const struct msg *m, const char *name, int64_t min, int64_t *out, const char **why)
{
    static char msg[160];
    const char *v = msg_get(m, name);
    if (!v)
        return 0;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end || errno || n < min || n > MAX_MS) {
        snprintf(msg, sizeof msg, "%s must be an integer%s, got '%.32s'", name,
                 min < 0 ? " (-1: for ever)" : " of 0 or more (ms)", v);
        *why = msg;
        return -EINVAL;
    }
    *out = n;
    return 0;
}

static int read_spec(const struct msg *m, struct spec *s, struct cron *c, const char **why)
{
    static char msg[320];
    memset(s, 0, sizeof *s);
    if (int_header(m, H_DELAY, 0, &s->delay, why) || int_header(m, H_PERIOD, 0, &s->period, why) ||
        int_header(m, H_REPEAT, -1, &s->repeat, why))
        return -EINVAL;
    s->cron = msg_get(m, H_CRON);
    if (s->cron && !*s->cron)
        s->cron = NULL;
    if (s->cron) {
        char err[256];
        if (cron_parse(s->cron, c, err, sizeof err) != 0) {
            snprintf(msg, sizeof msg, "%s: %s", H_CRON, err);
            *why = msg;
            return -EINVAL;
        }
    }
    /* with a CRON too: each time it matches, the series it starts is
     * DELAY, PERIOD and REPEAT's (a series of no period for ever would
     * be dropped at every match, delivering nothing) */
    if (s->repeat < 0 && s->period == 0) {
        *why = H_REPEAT " -1 (for ever) needs " H_PERIOD " above 0";
        return -EINVAL;
    }
    s->scheduled = s->delay > 0 || s->period > 0 || s->repeat != 0 || s->cron;
    return 0;
}

int sched_check(const struct msg *m, int64_t now, int64_t *due, const char **why)
{
    struct spec s;
    struct cron c;
    if (read_spec(m, &s, &c, why) != 0)
        return -EINVAL;
    if (!s.scheduled)
        return 0;
    if (s.cron) {
        *due = cron_next(&c, now);
        if (*due < 0) {
            *why = H_CRON " never matches (in the next eight years)";
            return -EINVAL;
        }
    } else {
        /* now is cut to the millisecond: counting from the next one, a
         * message never comes before its send time + the delay */
        *due = now + 1 + s.delay;
    }
    return 1;
}

/* ------------------------------------------------------------ jobs in memory */

static struct skey key_of(const struct msg *m, int64_t due)
{
    return (struct skey){due, (uint8_t)(MSG_PRIORITIES - 1 - m->priority), m->seq};
}

static void job_insert(struct job *j)
{
    RB_INSERT(jtree, &S.tree, j);
    HASH_ADD_KEYPTR(hh, S.by_id, j->msg->id, strlen(j->msg->id), j);
    HASH_ADD(sh, S.by_seq, key.seq, sizeof(uint64_t), j);
    S.nmem++;
    if (j->stored)
        S.window_bytes += (int64_t)j->msg->size;
}

/* Out of its park, into the tree. */
static void unpark(struct job *j)
{
    RB_REMOVE(jtree, &S.parked, j);
    TAILQ_REMOVE(&j->park->jobs, j, park_link);
    RB_INSERT(jtree, &S.tree, j);
    j->park = NULL;
    S.nparked--;
    if (j->stored)
        S.parked_bytes -= (int64_t)j->msg->size;
}

/* What the window bounds: persistent jobs in memory, but the parked ones
 * (bounded apart: S.parks_full). */
static int64_t tree_bytes(void)
{
    return S.window_bytes - S.parked_bytes;
}

static void job_remove(struct job *j)
{
    if (j->park)
        unpark(j); /* its park stays until its destination has room, perhaps empty */
    RB_REMOVE(jtree, &S.tree, j);
    HASH_DELETE(hh, S.by_id, j);
    HASH_DELETE(sh, S.by_seq, j);
    S.nmem--;
    if (j->stored)
        S.window_bytes -= (int64_t)j->msg->size;
}

/* The record was journaled in an open batch: its lsn comes at the end. */
static void set_lsn(struct job *j, uint64_t lsn)
{
    j->lsn = lsn;
    if (lsn == UINT64_MAX && !j->unassigned) {
        j->unassigned = true;
        TAILQ_INSERT_TAIL(&S.unassigned, j, ua_link);
    }
}

static void job_free(struct job *j)
{
    if (j->unassigned)
        TAILQ_REMOVE(&S.unassigned, j, ua_link);
    if (!j->stored)
        S.volatile_bytes -= (int64_t)j->msg->size;
    msg_unref(j->msg);
    free(j);
}

static struct job *job_new(struct msg *m, int64_t due, bool stored, uint64_t lsn)
{
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        abort();
    j->msg = msg_ref(m);
    j->key = key_of(m, due);
    j->stored = stored;
    set_lsn(j, lsn);
    if (!stored)
        S.volatile_bytes += (int64_t)m->size;
    return j;
}

static void gone_add(uint64_t seq, uint64_t lsn)
{
    struct gone *g;
    HASH_FIND(hh, S.gone, &seq, sizeof seq, g);
    if (g) {
        /* removed again (a later entry): its removal is indexed with that one */
        TAILQ_REMOVE(&S.gone_list, g, link);
    } else {
        g = calloc(1, sizeof *g);
        if (!g)
            abort();
        g->seq = seq;
        HASH_ADD(hh, S.gone, seq, sizeof g->seq, g);
    }
    g->lsn = lsn;
    if (lsn == UINT64_MAX)
        S.gone_unassigned = true;
    TAILQ_INSERT_TAIL(&S.gone_list, g, link);
}

static bool is_gone(uint64_t seq)
{
    struct gone *g;
    HASH_FIND(hh, S.gone, &seq, sizeof seq, g);
    return g != NULL;
}

static void gone_free(struct gone *g)
{
    HASH_DEL(S.gone, g);
    TAILQ_REMOVE(&S.gone_list, g, link);
    free(g);
}

void sched_batch_closed(uint64_t lsn)
{
    struct job *j;
    while ((j = TAILQ_FIRST(&S.unassigned))) {
        TAILQ_REMOVE(&S.unassigned, j, ua_link);
        j->unassigned = false;
        j->lsn = lsn;
    }
    if (!S.gone_unassigned)
        return;
    S.gone_unassigned = false;
    struct gone *g;
    TAILQ_FOREACH_REVERSE(g, &S.gone_list, gone_head, link) {
        if (g->lsn != UINT64_MAX)
            break;
        g->lsn = lsn;
    }
}

/* ------------------------------------------------------------ paging */

static bool evictable(const struct job *j)
{
    return j->stored && j->lsn <= S.indexed_upto;
}

/* Keep at most the window in memory: the jobs due last that the store has
 * indexed leave it (read back in their turn). */
static void shrink(void)
{
    struct job *j = RB_MAX(jtree, &S.tree), *prev;
    for (int steps = 0; j && tree_bytes() > config.scheduler_window && steps < SHRINK_STEPS; steps++, j = prev) {
        prev = RB_PREV(jtree, &S.tree, j);
        if (!evictable(j))
            continue;
        if (!S.paged || key_cmp(&j->key, &S.limit) < 0)
            S.limit = j->key;
        S.paged = true;
        job_remove(j);
        job_free(j);
    }
}

struct page_ctx {
    int64_t budget;
    int n;
    bool stopped;
};

static int page_one(void *arg, const struct store_msgref *r)
{
    struct page_ctx *x = arg;
    if (x->n >= PAGE_BATCH || (x->budget <= 0 && x->n > 0)) {
        x->stopped = true;
        return 1;
    }
    struct skey k = {jkey_w_due(r->key, r->klen),
                     (uint8_t)(MSG_PRIORITIES - 1 - jkey_msg_priority(r->key, r->klen)),
                     jkey_msg_seq(r->key, r->klen)};
    S.limit = (struct skey){k.due, k.rprio, k.seq + 1};
    struct job *held;
    HASH_FIND(sh, S.by_seq, &k.seq, sizeof k.seq, held);
    if (held || is_gone(k.seq))
        return 0; /* in memory already (not indexed when it came), or removed */
    struct msg *m;
    int rc = store_read_msg(r, &m);
    if (rc) {
        /* logged: a damaged job is skipped (it stays in the store); one
         * that may be read later (out of file descriptors) is read again
         * in a moment, the rest waiting behind it (it was skipped too,
         * and never fired) */
        x->stopped = true;
        if (rc != -EBADMSG) {
            S.limit = k;
            S.read_again_at = server_now_ms() + READ_AGAIN_MS;
        }
        return 1;
    }
    struct job *j = job_new(m, k.due, true, 0);
    msg_unref(m);
    j->key = k;
    job_insert(j);
    x->n++;
    x->budget -= (int64_t)j->msg->size;
    return 0;
}

/* Read the next jobs from the store; returns whether paging moved on. */
static bool page_in(void)
{
    if (!S.paged || !persist_has_store())
        return false;
    struct page_ctx x = {config.scheduler_window - tree_bytes(), 0, false};
    struct buf from = {0};
    struct skey before = S.limit;
    jkey_w(&from, S.limit.due, (uint8_t)(MSG_PRIORITIES - 1 - S.limit.rprio), S.limit.seq);
    char prefix = KEY_W;
    int rc = store_page(&prefix, 1, buf_head(&from), buf_used(&from), page_one, &x);
    buf_free(&from);
    if (rc == 0 && !x.stopped)
        S.paged = false; /* read to the end: every job is in memory */
    return x.n > 0 || key_cmp(&before, &S.limit) != 0 || !S.paged;
}

void sched_indexed(uint64_t lsn)
{
    S.indexed_upto = lsn;
    struct gone *g;
    while ((g = TAILQ_FIRST(&S.gone_list)) && g->lsn <= lsn)
        gone_free(g);
    if (tree_bytes() > config.scheduler_window)
        shrink();
}

bool sched_waits_for_index(void)
{
    return tree_bytes() > config.scheduler_window;
}

bool sched_follows_index(void)
{
    return !TAILQ_EMPTY(&S.gone_list);
}

/* ------------------------------------------------------------ adding */

int64_t sched_memory_held(void)
{
    return dest_total_mem() + S.volatile_bytes;
}

int sched_add(struct msg *m, int64_t due, const char *dup_id, bool admitted, uint64_t *lsn, const char **why)
{
    bool stored = m->persistent && persist_enabled();
    *lsn = 0;
    if (!stored && !admitted && sched_memory_held() + (int64_t)m->size > config.memory_limit) {
        *why = "The broker holds broker.memory_limit bytes of messages and non-persistent scheduled messages: another "
               "cannot be kept.";
        return -ENOMEM;
    }
    struct job *old;
    HASH_FIND_STR(S.by_id, m->id, old);
    if (old) {
        *why = "A scheduled message with this message-id exists already.";
        return -EEXIST;
    }
    if (stored) {
        *lsn = persist_sched_add(m->id, due, dup_id, m);
        S.stored++;
    } else {
        S.volatiles++;
    }
    struct job *j = job_new(m, due, stored, *lsn);
    job_insert(j);
    log_debug("message %s to %s scheduled for %" PRId64 " (in %" PRId64 " ms)%s", m->id, m->dest, due,
              due - server_now_ms(), stored ? "" : ", in memory only");
    /* over the window: the jobs due last leave memory once the store has
     * indexed them (sched_indexed), not now */
    arm();
    return 0;
}

/* ------------------------------------------------------------ firing */

static bool sched_header(const char *name, size_t len)
{
    return (len > 14 && !strncmp(name, "AMQ_SCHEDULED_", 14)) ||
           (len == strlen(H_JOB_ID) && !memcmp(name, H_JOB_ID, len));
}

/* What a firing delivers: the record without its schedule, with the job's
 * id; expiry kept as a time to live from now (as ActiveMQ does). */
static struct msg *delivered_copy(const struct msg *m, bool fresh_id, int64_t now)
{
    struct stomp_header hs[m->nheaders + 1];
    uint32_t k = 0;
    for (uint32_t i = 0; i < m->nheaders; i++)
        if (!sched_header(m->headers[i].name, m->headers[i].name_len))
            hs[k++] = m->headers[i];
    hs[k++] = (struct stomp_header){H_JOB_ID, m->id, (uint32_t)strlen(H_JOB_ID), (uint32_t)strlen(m->id)};
    char id[128];
    if (fresh_id)
        server_next_msg_id(id, sizeof id);
    int64_t ts = m->timestamp, exp = m->expires;
    if (exp > 0 && ts > 0) {
        /* the same time to live from now; one beyond the clock's range
         * (expires:9223372036854775807) stays as far as it goes */
        int64_t ttl = exp - ts;
        exp = ttl > INT64_MAX - now ? INT64_MAX : now + ttl;
        ts = now;
    }
    return msg_new(m->dest, fresh_id ? id : m->id, server_next_seq(), ts, m->persistent, m->priority, exp, hs, k,
                   m->body, m->body_len);
}

/* A record with some headers replaced or dropped: value NULL drops. */
static struct msg *record_with(const struct msg *m, const char *id, uint64_t seq, const char *const *names,
                               const char *const *values, int n)
{
    struct stomp_header hs[m->nheaders + (uint32_t)n];
    uint32_t k = 0;
    for (uint32_t i = 0; i < m->nheaders; i++) {
        bool replaced = false;
        for (int x = 0; x < n; x++)
            replaced |= !strcmp(m->headers[i].name, names[x]);
        if (!replaced)
            hs[k++] = m->headers[i];
    }
    for (int x = 0; x < n; x++)
        if (values[x])
            hs[k++] = (struct stomp_header){names[x], values[x], (uint32_t)strlen(names[x]), (uint32_t)strlen(values[x])};
    return msg_new(m->dest, id, seq, m->timestamp, m->persistent, m->priority, m->expires, hs, k, m->body,
                   m->body_len);
}

static void publish_copy(struct msg *copy, struct op *op)
{
    struct route r;
    const char *err, *why;
    if (route_send(NULL, NULL, copy->dest, true, &r, &err) != 0) {
        log_warn("scheduled message %s: not delivered: %s", copy->id, err);
        route_free(&r);
        return;
    }
    int rc = broker_publish(&r, copy, &(struct publish){.batch = op, .fired = true}, NULL, &why);
    if (rc < 0)
        log_warn("scheduled message %s: not delivered: %s", copy->id, why);
    route_free(&r);
}

/* Add a new job (a cron job's series) within the firing's entry. */
static void add_child(struct msg *m, int64_t due, bool stored)
{
    uint64_t lsn = 0;
    if (stored) {
        lsn = persist_sched_add(m->id, due, NULL, m);
        S.stored++;
    } else {
        S.volatiles++;
    }
    job_insert(job_new(m, due, stored, lsn));
}

static void fire(struct job *j, struct op *op, int64_t now)
{
    struct msg *m = j->msg;
    struct spec s;
    struct cron c;
    const char *why;
    job_remove(j);
    S.fired++;
    uint64_t del_lsn = j->stored ? persist_sched_del(m->id, j->key.due, m->priority, m->seq) : 0;
    bool bad = read_spec(m, &s, &c, &why) != 0;
    if (bad) {
        log_warn("scheduled message %s dropped: %s", m->id, why);
        s.cron = NULL;
        s.repeat = 0;
    } else if (s.cron && (s.delay > 0 || s.repeat != 0)) {
        /* a series starts now: a job of its own, as ActiveMQ runs it */
        char id[128];
        server_next_msg_id(id, sizeof id);
        static const char *const names[] = {H_CRON};
        static const char *const values[] = {NULL};
        struct msg *series = record_with(m, id, server_next_seq(), names, values, 1);
        add_child(series, now + s.delay, j->stored);
        msg_unref(series);
    } else {
        struct msg *copy = delivered_copy(m, s.cron || msg_get(m, H_REPEAT), now);
        log_debug("scheduled message %s fires (due %" PRId64 ", %" PRId64 " ms late)", m->id, j->key.due,
                  now - j->key.due);
        publish_copy(copy, op);
        msg_unref(copy);
    }
    int64_t next = -1;
    struct msg *rec = NULL;
    if (s.cron) {
        next = cron_next(&c, now);
        rec = msg_ref(m);
    } else if (s.repeat != 0) {
        next = now + s.period;
        char left[24];
        snprintf(left, sizeof left, "%" PRId64, s.repeat < 0 ? (int64_t)-1 : s.repeat - 1);
        static const char *const names[] = {H_REPEAT, H_DELAY};
        const char *values[] = {left, NULL};
        rec = record_with(m, m->id, m->seq, names, values, 2);
    }
    if (next >= 0) {
        /* the same job (id, seq) at its next time */
        if (j->stored)
            set_lsn(j, persist_sched_add(rec->id, next, NULL, rec));
        else
            S.volatile_bytes += (int64_t)rec->size - (int64_t)m->size;
        msg_unref(j->msg);
        j->msg = rec;
        j->key = key_of(rec, next);
        job_insert(j);
        return;
    }
    if (rec)
        msg_unref(rec);
    if (j->stored) {
        gone_add(m->seq, del_lsn);
        S.stored--;
    } else {
        S.volatiles--;
    }
    job_free(j);
}

/* The scheduler is a producer like any other, and waits for room as one
 * does: a repeating job has nobody to pause, so it would otherwise grow
 * memory without bound and in the end hold up every other producer. It
 * waits per destination: a due job whose destination is full (its
 * broker.dest_memory_limit, or broker.memory_limit for the broker) is
 * parked until that one has room, and the jobs for other destinations
 * fire on (one full destination held every firing, helper-99). A turn
 * whose entry finds the store full (broker.store_limit) holds every
 * firing, as the store is everyone's. */
static void room_again(void *arg, bool ok)
{
    (void)ok;
    struct park *p = arg;
    if (!p) {
        S.held = NULL;
        log_info("scheduler: room in the store again, firing resumes");
    } else {
        struct job *j;
        while ((j = TAILQ_FIRST(&p->jobs)))
            unpark(j);
        log_info("scheduler: room in %s again, its jobs fire", p->d->name);
        HASH_DEL(S.parks, p);
        free(p);
        S.parks_full = false;
    }
    arm();
}

/* Where m must wait: a destination it would fire into whose jobs wait
 * already (behind them: a destination between 90% and full has no room
 * for a job due later, which would pass them, helper-105), or that is
 * full; NULL: nowhere. */
static struct dest *must_wait(const struct msg *m)
{
    struct route r;
    const char *err;
    struct dest *at = NULL;
    if (route_send(NULL, NULL, m->dest, true, &r, &err) == 0) {
        for (uint32_t i = 0; i < r.n && !at; i++) {
            struct park *p;
            HASH_FIND_PTR(S.parks, &r.v[i], p);
            if (p)
                at = r.v[i];
        }
        for (uint32_t i = 0; i < r.n && !at; i++)
            if (dest_is_full(r.v[i]))
                at = r.v[i];
    }
    route_free(&r);
    return at;
}

static void park(struct job *j, struct dest *d)
{
    struct park *p;
    HASH_FIND_PTR(S.parks, &d, p);
    if (!p) {
        if (!(p = calloc(1, sizeof *p)))
            abort();
        p->d = d;
        TAILQ_INIT(&p->jobs);
        HASH_ADD_PTR(S.parks, d, p);
        S.holds++;
        log_info("scheduler: %s is full; its jobs wait for room, the others fire on", d->name);
        p->waiter = op_room(NULL, NULL, d);
        op_notify(p->waiter, room_again, p);
        op_submit(p->waiter); /* kept until d has room (or goes) */
    }
    RB_REMOVE(jtree, &S.tree, j);
    RB_INSERT(jtree, &S.parked, j);
    TAILQ_INSERT_TAIL(&p->jobs, j, park_link);
    j->park = p;
    S.nparked++;
    if (j->stored)
        S.parked_bytes += (int64_t)j->msg->size;
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    if (S.held || S.parks_full || srv.handing_over)
        return; /* room_again arms the timer; a master handing over takes no new work */
    int64_t now = server_now_ms();
    struct op *op = NULL;
    int n = 0;
    while (n < FIRE_BATCH && S.running) {
        struct job *j = RB_MIN(jtree, &S.tree);
        if (S.paged && (!j || key_cmp(&j->key, &S.limit) >= 0)) {
            /* jobs still only in the store come first */
            if (S.limit.due > now || S.read_again_at > now || !page_in())
                break;
            continue;
        }
        if (!j || j->key.due > now)
            break;
        struct dest *full = must_wait(j->msg);
        if (full && j->stored && S.parked_bytes + (int64_t)j->msg->size > config.scheduler_window) {
            /* Parked jobs cannot leave memory: past a window of them, every
             * firing waits for one of their destinations to have room, as
             * before they were parked (helper-105: every due job of a full
             * destination was read in and parked) */
            S.parks_full = true;
            S.holds++;
            log_info("scheduler: scheduled messages waiting for full destinations fill broker.scheduler_window; "
                     "firing waits for room in one of them");
            break;
        }
        if (full) {
            park(j, full);
            n++;
            continue;
        }
        if (!op) {
            /* every firing of this turn: one journal entry, one op */
            op = op_batch(NULL, NULL);
            persist_batch_begin();
        }
        fire(j, op, now);
        n++;
    }
    if (op) {
        uint64_t lsn = persist_batch_end();
        op_batch_close(op, lsn);
        /* a destination this turn filled parks its next jobs (target_full),
         * and this turn's op waits for its room on its own; a full store
         * holds every firing */
        if (op->store_wait) {
            S.held = op;
            S.holds++;
            op_notify(op, room_again, NULL);
            log_info("scheduler: the store is full (broker.store_limit); firing waits for room");
        }
        op_submit(op); /* may free it (and call room_again) at once */
    }
    if (S.held)
        return;
    if (S.paged && tree_bytes() < config.scheduler_window / 2)
        page_in();
    if (n == FIRE_BATCH) {
        /* more are due: go on next turn, after the others' work */
        ev_timer_stop(srv.loop, &S.timer);
        ev_timer_set(&S.timer, 0., 0.);
        ev_timer_start(srv.loop, &S.timer);
        return;
    }
    arm();
}

static void arm(void)
{
    if (!S.running || S.held || S.parks_full)
        return;
    ev_timer_stop(srv.loop, &S.timer);
    struct job *j = RB_MIN(jtree, &S.tree);
    int64_t next = j ? j->key.due : -1;
    if (S.paged && (next < 0 || S.limit.due < next))
        next = S.limit.due > S.read_again_at ? S.limit.due : S.read_again_at;
    if (next < 0)
        return;
    ev_now_update(srv.loop); /* the timer runs from ev_now: make it now */
    int64_t wait = next - server_now_ms();
    /* ev_timer counts on the monotonic clock: a job is checked against the
     * wall clock when the timer fires, and waits on if it is early */
    ev_timer_set(&S.timer, wait > 0 ? (double)wait / 1000.0 : 0., 0.);
    ev_timer_start(srv.loop, &S.timer);
}

/* ------------------------------------------------------------ life cycle */

void sched_restore(uint64_t n)
{
    S.stored += n;
    if (n) {
        S.paged = true;
        S.limit = (struct skey){0, 0, 0};
    }
}

void sched_start(void)
{
    ev_timer_init(&S.timer, timer_cb, 0., 0.);
    S.running = true;
    if (S.paged)
        page_in();
    arm();
    if (S.stored || S.volatiles)
        log_info("scheduler: %" PRIu64 " scheduled messages, %zu in memory", S.stored + S.volatiles, S.nmem);
}

void sched_stop(void)
{
    if (S.running)
        ev_timer_stop(srv.loop, &S.timer);
    S.running = false;
    if (S.held)
        op_cancel_notify(S.held);
    S.held = NULL;
    S.parks_full = false;
    struct job *j, *next;
    while ((j = RB_MIN(jtree, &S.parked))) {
        job_remove(j);
        job_free(j);
    }
    struct park *p, *ptmp;
    HASH_ITER(hh, S.parks, p, ptmp) {
        op_cancel_notify(p->waiter); /* it goes when d has room, or goes */
        HASH_DEL(S.parks, p);
        free(p);
    }
    for (j = RB_MIN(jtree, &S.tree); j; j = next) {
        next = RB_NEXT(jtree, &S.tree, j);
        job_remove(j);
        job_free(j);
    }
    struct gone *g;
    while ((g = TAILQ_FIRST(&S.gone_list)))
        gone_free(g);
    S.stored = S.volatiles = 0;
    S.volatile_bytes = 0;
    S.window_bytes = 0;
    S.paged = false;
    S.gone_unassigned = false;
}

/* ------------------------------------------------------------ the console */

void sched_info(struct sched_info *out)
{
    memset(out, 0, sizeof *out);
    out->scheduled = S.stored + S.volatiles;
    out->in_memory = S.nmem;
    out->volatile_jobs = S.volatiles;
    out->volatile_bytes = S.volatile_bytes;
    out->fired = S.fired;
    out->holds = S.holds;
    out->waiting_for_room = S.held != NULL || S.parks_full || S.parks != NULL;
    out->waiting_jobs = S.nparked;
    out->cancelled = S.cancelled;
    struct job *j = RB_MIN(jtree, &S.tree);
    out->next_due = j ? j->key.due : -1;
    if (S.paged && (out->next_due < 0 || S.limit.due < out->next_due))
        out->next_due = S.limit.due;
}

static void cursor_of(const struct skey *k, char *out, size_t len)
{
    snprintf(out, len, "%" PRId64 ".%u.%" PRIu64, k->due, k->rprio, k->seq);
}

/* Jobs only in the store, from a key on, for a listing. */
struct list_ctx {
    struct job **v;
    size_t n, max;
};

static int list_one(void *arg, const struct store_msgref *r)
{
    struct list_ctx *x = arg;
    if (x->n >= x->max)
        return 1;
    uint64_t seq = jkey_msg_seq(r->key, r->klen);
    struct job *held;
    HASH_FIND(sh, S.by_seq, &seq, sizeof seq, held);
    if (held || is_gone(seq))
        return 0;
    struct msg *m = store_load_msg(r);
    if (!m)
        return 1;
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        abort();
    j->msg = m;
    j->stored = true;
    j->key = (struct skey){jkey_w_due(r->key, r->klen),
                           (uint8_t)(MSG_PRIORITIES - 1 - jkey_msg_priority(r->key, r->klen)), seq};
    x->v[x->n++] = j;
    return 0;
}

static void view(const struct job *j, void (*fn)(void *arg, const struct sched_job_view *v), void *arg)
{
    struct sched_job_view v = {j->msg->id, j->key.due, j->msg, j->stored, ""};
    cursor_of(&j->key, v.cursor, sizeof v.cursor);
    fn(arg, &v);
}

int sched_list(const char *after, size_t max, void (*fn)(void *arg, const struct sched_job_view *j), void *arg,
               bool *more)
{
    struct skey from = {INT64_MIN, 0, 0};
    *more = false;
    if (after && *after) {
        unsigned rp;
        long long due;
        unsigned long long seq;
        char tail;
        if (sscanf(after, "%lld.%u.%llu%c", &due, &rp, &seq, &tail) != 3 || rp >= MSG_PRIORITIES)
            return -EINVAL;
        from = (struct skey){due, (uint8_t)rp, (uint64_t)seq + 1};
    }
    /* the store's jobs beyond the limit (those in memory come from the tree) */
    struct list_ctx x = {calloc(max + 1, sizeof(struct job *)), 0, max + 1};
    if (!x.v)
        abort();
    int rc = 0;
    if (S.paged && persist_has_store()) {
        struct skey start = key_cmp(&from, &S.limit) > 0 ? from : S.limit;
        struct buf b = {0};
        jkey_w(&b, start.due < 0 ? 0 : start.due, (uint8_t)(MSG_PRIORITIES - 1 - start.rprio), start.seq);
        char prefix = KEY_W;
        rc = store_page(&prefix, 1, buf_head(&b), buf_used(&b), list_one, &x);
        buf_free(&b);
    }
    struct job probe = {.key = from};
    struct job *t = RB_NFIND(jtree, &S.tree, &probe), *pk = RB_NFIND(jtree, &S.parked, &probe);
    size_t i = 0, shown = 0;
    while (shown < max && (t || pk || i < x.n)) {
        /* the first of three in key order: in memory, parked, only in the store */
        struct job *first = i < x.n ? x.v[i] : NULL;
        if (t && (!first || key_cmp(&t->key, &first->key) < 0))
            first = t;
        if (pk && (!first || key_cmp(&pk->key, &first->key) < 0))
            first = pk;
        view(first, fn, arg);
        if (first == t)
            t = RB_NEXT(jtree, &S.tree, t);
        else if (first == pk)
            pk = RB_NEXT(jtree, &S.parked, pk);
        else
            i++;
        shown++;
    }
    *more = t || pk || i < x.n;
    for (size_t k = 0; k < x.n; k++) {
        msg_unref(x.v[k]->msg);
        free(x.v[k]);
    }
    free(x.v);
    return rc ? -EIO : 0;
}

struct wid {
    const char *id;
    size_t len;
    bool found;
    struct skey k;
};

static int wid_one(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    struct wid *w = arg;
    if (kl == 1 + w->len && vl == 17) {
        w->found = true;
        w->k = (struct skey){(int64_t)jkey_get_be64(v), (uint8_t)(MSG_PRIORITIES - 1 - (uint8_t)v[8]),
                             jkey_get_be64(v + 9)};
    }
    return 1;
}

int sched_cancel(const char *id, uint64_t *lsn)
{
    *lsn = 0;
    struct job *j;
    HASH_FIND_STR(S.by_id, id, j);
    if (j) {
        job_remove(j);
        if (j->stored) {
            *lsn = persist_sched_del(id, j->key.due, j->msg->priority, j->key.seq);
            gone_add(j->key.seq, *lsn);
            S.stored--;
        } else {
            S.volatiles--;
        }
        job_free(j);
        S.cancelled++;
        log_info("scheduled message %s cancelled", id);
        arm();
        return 0;
    }
    if (!persist_enabled())
        return -ENOENT;
    /* only in the store: its id says where */
    struct buf k = {0};
    buf_putc(&k, KEY_WID);
    buf_append_str(&k, id);
    struct wid w = {id, strlen(id), false, {0, 0, 0}};
    int rc = store_scan(buf_head(&k), buf_used(&k), wid_one, &w);
    buf_free(&k);
    if (rc != 0 && rc != 1)
        return -EIO;
    if (!w.found || is_gone(w.k.seq))
        return -ENOENT;
    *lsn = persist_sched_del(id, w.k.due, (uint8_t)(MSG_PRIORITIES - 1 - w.k.rprio), w.k.seq);
    gone_add(w.k.seq, *lsn);
    S.stored--;
    S.cancelled++;
    log_info("scheduled message %s cancelled", id);
    return 0;
}
