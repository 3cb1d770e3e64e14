/* Queues: pending messages in dispatch order in a balanced tree, the
 * dispatch loop that hands them to ready consumers in round-robin order,
 * and paging: a persistent queue keeps broker.queue_window bytes of its
 * pending messages in memory and reads the rest back from the store's
 * index, in order, as consumers take messages (see queue.h for the
 * invariant). Exclusive consumers take everything while present;
 * JMSXGroupID pins a group to the consumer that got its first message
 * until it goes away or the group is closed (JMSXGroupSeq = -1), or the
 * queue forgets it, being the least recently used of more than
 * broker.max_message_groups. Selector
 * work is budgeted (see sub.h): dispatch that runs out stops at a message
 * and goes on from its key in the next loop iteration, so nothing is
 * dropped and no one waits long. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stompd/commit.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/dlq.h"
#include "stompd/durable.h"
#include "stompd/journal.h"
#include "stompd/log.h"
#include "stompd/persist.h"
#include "stompd/queue.h"
#include "stompd/server.h"
#include "stompd/store.h"
#include "stompd/sub.h"

#define PAGE_BATCH 1000      /* messages read back from the store at most per page-in */
#define SHRINK_STEPS 4096    /* entries looked at per shrink */

struct group {
    char *name;
    struct sub *sub;
    UT_hash_handle hh;
    TAILQ_ENTRY(group) lru;     /* in q->group_lru, the least recently used first */
};

static void group_free(struct queue *q, struct group *g)
{
    HASH_DEL(q->groups, g);
    TAILQ_REMOVE(&q->group_lru, g, lru);
    free(g->name);
    free(g);
}

/* A message removed from memory whose removal the store has not indexed
 * yet: paging must not read it back meanwhile. */
struct gone {
    uint64_t seq;
    uint64_t lsn;               /* the entry removing it is at or below; 0: not flushed yet */
    struct queue *q;
    UT_hash_handle hh;          /* q->gone by seq */
    TAILQ_ENTRY(gone) link;
};

static TAILQ_HEAD(, gone) gone_unflushed = TAILQ_HEAD_INITIALIZER(gone_unflushed);
static TAILQ_HEAD(, gone) gone_flushed = TAILQ_HEAD_INITIALIZER(gone_flushed);
static TAILQ_HEAD(, queue) over_window = TAILQ_HEAD_INITIALIZER(over_window);
/* Queues whose paging could not read a message for now (out of file
 * descriptors): they try again each READ_RETRY s, and read nothing
 * meanwhile (helper-117: the loop spun at 100% until then). */
static TAILQ_HEAD(, queue) read_retry = TAILQ_HEAD_INITIALIZER(read_retry);
static ev_timer read_retry_timer;
#define READ_RETRY 1.0
static uint64_t indexed_upto; /* what the store has indexed, as last told */

/* ------------------------------------------------------------ keys and the tree */

static struct qkey key_of(const struct msg *m)
{
    return (struct qkey){(uint8_t)(MSG_PRIORITIES - 1 - m->priority), m->seq};
}

static int key_cmp(struct qkey a, struct qkey b)
{
    if (a.rprio != b.rprio)
        return a.rprio < b.rprio ? -1 : 1;
    return a.seq < b.seq ? -1 : a.seq > b.seq;
}

static int entry_cmp(struct qentry *a, struct qentry *b)
{
    return key_cmp(key_of(a->msg), key_of(b->msg));
}

/* (libbsd's RB_GENERATE_STATIC needs a __unused it leaves undefined: the
 * tree's functions are external, named qtree_RB_*) */
RB_PROTOTYPE(qtree, qentry, node, entry_cmp)
RB_GENERATE(qtree, qentry, node, entry_cmp)

/* ------------------------------------------------------------ the expiry heap */

static struct qentry **heap;
static uint32_t nheap, capheap;

static void heap_set(uint32_t i, struct qentry *e)
{
    heap[i] = e;
    e->heap = i + 1;
}

static void heap_up(uint32_t i)
{
    struct qentry *e = heap[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (heap[p]->msg->expires <= e->msg->expires)
            break;
        heap_set(i, heap[p]);
        i = p;
    }
    heap_set(i, e);
}

static void heap_down(uint32_t i)
{
    struct qentry *e = heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= nheap)
            break;
        if (c + 1 < nheap && heap[c + 1]->msg->expires < heap[c]->msg->expires)
            c++;
        if (heap[c]->msg->expires >= e->msg->expires)
            break;
        heap_set(i, heap[c]);
        i = c;
    }
    heap_set(i, e);
}

static void heap_push(struct qentry *e)
{
    if (nheap == capheap) {
        capheap = capheap ? capheap * 2 : 256;
        heap = realloc(heap, capheap * sizeof *heap);
        if (!heap)
            abort();
    }
    heap_set(nheap, e);
    heap_up(nheap++);
}

static void heap_remove(struct qentry *e)
{
    if (!e->heap)
        return;
    uint32_t i = e->heap - 1;
    e->heap = 0;
    struct qentry *last = heap[--nheap];
    if (i == nheap)
        return;
    heap_set(i, last);
    heap_up(i);
    heap_down(last->heap - 1);
}

/* ------------------------------------------------------------ entries */

void queue_init(struct queue *q, struct dest *d)
{
    memset(q, 0, sizeof *q);
    RB_INIT(&q->pending);
    TAILQ_INIT(&q->consumers);
    TAILQ_INIT(&q->group_lru);
    TAILQ_INIT(&q->unsent);
    q->dest = d;
}

void queue_set_prefix(struct queue *q, const char *prefix, size_t len)
{
    buf_free(&q->kprefix);
    buf_append(&q->kprefix, prefix, len);
}

static bool pages(const struct queue *q)
{
    return buf_used(&q->kprefix) > 0;
}

static struct qentry *entry_new(struct queue *q, struct msg *m)
{
    struct qentry *e = calloc(1, sizeof *e);
    if (!e)
        abort();
    e->msg = msg_ref(m);
    e->q = q;
    e->purges = q->purges;
    if (pages(q))
        HASH_ADD(rh, q->held, msg->seq, sizeof(uint64_t), e);
    /* One message in memory, charged once to a destination whatever number
     * of its queues hold it (helper-109: 16 offline durable subscriptions
     * charged 64 MiB for 27 MB held, and stalled the topic for good) */
    int64_t charge = (int64_t)m->size;
    if (!m->charged_to)
        m->charged_to = q->dest;
    if (m->charged_to == q->dest) {
        e->shares_charge = true;
        if (m->charged_entries++ > 0)
            charge = 0;
    }
    dest_mem_add(q->dest, charge);
    return e;
}

/* Whether the window counts it: pending persistent messages the store has. */
static bool windowed(const struct qentry *e)
{
    return e->msg->journaled && e->msg->persistent;
}

/* An entry put among the pending ones while dispatch is stopped: if it
 * goes ahead of the stop, the sweep going on from there will not see it. */
static void note_ahead(struct queue *q, const struct qentry *e)
{
    if (q->resuming && key_cmp(key_of(e->msg), q->resume) < 0)
        q->rescan = true;
}

static void tree_insert(struct queue *q, struct qentry *e)
{
    note_ahead(q, e);
    RB_INSERT(qtree, &q->pending, e);
    e->pending = true;
    q->nresident++;
    if (windowed(e))
        q->window_bytes += (int64_t)e->msg->size;
    if (e->msg->expires)
        heap_push(e);
}

static void tree_remove(struct queue *q, struct qentry *e)
{
    RB_REMOVE(qtree, &q->pending, e);
    e->pending = false;
    q->nresident--;
    if (windowed(e))
        q->window_bytes -= (int64_t)e->msg->size;
    heap_remove(e);
}

/* Leaves memory (not the queue: the store has it). */
static void entry_free(struct qentry *e)
{
    struct queue *q = e->q;
    if (pages(q))
        HASH_DELETE(rh, q->held, e);
    struct msg *m = e->msg;
    int64_t size = (int64_t)m->size;
    if (e->shares_charge && --m->charged_entries > 0)
        size = 0;
    else if (e->shares_charge)
        m->charged_to = NULL;
    msg_unref(m);
    free(e);
    dest_mem_add(q->dest, -size);
}

void queue_entry_done(struct qentry *e)
{
    struct queue *q = e->q;
    if (pages(q) && e->msg->journaled) {
        /* until its removal is indexed, the store still lists it */
        struct gone *g = calloc(1, sizeof *g);
        if (!g)
            abort();
        g->seq = e->msg->seq;
        g->q = q;
        HASH_ADD(hh, q->gone, seq, sizeof(uint64_t), g);
        TAILQ_INSERT_TAIL(&gone_unflushed, g, link);
    }
    entry_free(e);
}

static void gone_free(struct gone *g, bool flushed)
{
    HASH_DEL(g->q->gone, g);
    if (flushed)
        TAILQ_REMOVE(&gone_flushed, g, link);
    else
        TAILQ_REMOVE(&gone_unflushed, g, link);
    free(g);
}

static void gone_free_queue(struct queue *q)
{
    struct gone *g, *tmp;
    HASH_ITER(hh, q->gone, g, tmp)
        gone_free(g, g->lsn != 0);
}

void queue_journal_flushed(uint64_t lsn)
{
    struct gone *g;
    while ((g = TAILQ_FIRST(&gone_unflushed))) {
        TAILQ_REMOVE(&gone_unflushed, g, link);
        g->lsn = lsn;
        TAILQ_INSERT_TAIL(&gone_flushed, g, link);
    }
}

static void groups_free(struct queue *q)
{
    struct group *g, *tmp;
    HASH_ITER(hh, q->groups, g, tmp)
        group_free(q, g);
}

void queue_destroy(struct queue *q)
{
    struct qentry *e, *next;
    for (e = RB_MIN(qtree, &q->pending); e; e = next) {
        next = RB_NEXT(qtree, &q->pending, e);
        tree_remove(q, e);
        entry_free(e);
    }
    q->npending = 0;
    struct unsent *u;
    while ((u = TAILQ_FIRST(&q->unsent))) {
        TAILQ_REMOVE(&q->unsent, u, q_link);
        u->q = NULL; /* its connection's record outlives the queue; it has nowhere to come back to */
    }
    groups_free(q);
    gone_free_queue(q);
    buf_free(&q->kprefix);
    if (q->over_window) {
        TAILQ_REMOVE(&over_window, q, over_link);
        q->over_window = false;
    }
    if (q->read_retry) {
        TAILQ_REMOVE(&read_retry, q, retry_link);
        q->read_retry = false;
    }
    if (q->dirty) {
        TAILQ_REMOVE(&srv.dirty, q, dirty_link);
        q->dirty = false;
    }
    q->resuming = false;
    q->scan_end = NULL;
    for (uint32_t i = 0; i < q->nbands; i++)
        free(q->bands[i]); /* none: their consumers have gone */
    free(q->bands);
    q->bands = NULL;
    q->nbands = 0;
}

/* Dispatch again (this module's reasons: a message came, a stop, room in
 * the window). */
static void mark_dirty(struct queue *q)
{
    if (q->dirty)
        return;
    q->dirty = true;
    TAILQ_INSERT_TAIL(&srv.dirty, q, dirty_link);
}

void queue_mark_dirty(struct queue *q)
{
    /* a consumer ready again (or come, or gone) may take what the sweep
     * before the stop offered in vain */
    if (q->resuming)
        q->rescan = true;
    mark_dirty(q);
}

/* ------------------------------------------------------------ selectors on backlogs */

/* The selector a backlog's unfiltered entries must pass. */
static const struct selector *backlog_selector(const struct queue *q)
{
    if (q->durable)
        return q->durable->sel;
    return q->owner ? sub_sel(q->owner) : NULL;
}

/* An unfiltered pending entry meets its selector now. SUB_NO: it was
 * never this backlog's, and is gone (from the store too). */
static enum sub_verdict filter(struct queue *q, struct qentry *e)
{
    enum sub_verdict v = SUB_YES;
    /* A durable wildcard subscription's copy kept while who would read it
     * was not known (a store of an older release), of a topic its
     * subscriber may not read (durable_may_read), was not its own either;
     * nor is one a wildcard subscriber may no longer read (a reload took
     * it away since, sub_may_read). */
    if ((q->durable && !durable_may_read(q->durable, e->msg->dest)) ||
        (q->owner && !sub_may_read(q->owner, e->msg->dest)))
        v = SUB_NO;
    else if (!e->unfiltered)
        return SUB_YES;
    else
        v = sub_select(backlog_selector(q), e->msg);
    if (v == SUB_YES) {
        e->unfiltered = false;
    } else if (v == SUB_NO) {
        tree_remove(q, e);
        q->npending--;
        persist_dequeue(e);
        queue_entry_done(e);
    }
    return v;
}

/* ------------------------------------------------------------ paging */

static const struct qkey KEY_END = {UINT8_MAX, UINT64_MAX};

/* Memory pressure: from half of broker.memory_limit held, a queue (and a
 * durable subscription's backlog) keeps PRESSED_WINDOW of its backlog in
 * memory, not broker.queue_window: what the store has need not take the
 * memory that producers are paused for (as ActiveMQ's store cursor stops
 * caching). Without it, 256 deep queues' windows filled the default 1 GiB
 * and every persistent producer waited with everything on disk
 * (helper-70). It ends below 40% and PRESSED_HOLD_MS after it began: the
 * shrink itself brings memory down, and windows that grow back at once
 * would start it again (helper-72 saw 18 turns in one fill). */
#define PRESSED_WINDOW (256 * 1024)
#define PRESSED_HOLD_MS 10000
static bool pressed;
static int64_t pressed_since;

static int64_t window(void)
{
    return pressed && config.queue_window > PRESSED_WINDOW ? PRESSED_WINDOW : config.queue_window;
}

static void over_window_note(struct queue *q)
{
    bool over = q->window_bytes > window();
    if (over && !q->over_window) {
        q->over_window = true;
        TAILQ_INSERT_TAIL(&over_window, q, over_link);
    } else if (!over && q->over_window) {
        q->over_window = false;
        TAILQ_REMOVE(&over_window, q, over_link);
    }
}

/* What leaves memory is read back from the index: its message, and the
 * count of its deliveries, which its last delivery mark holds (a NACKed
 * message read back before its mark is indexed would come back as never
 * delivered). */
static bool evictable(const struct qentry *e)
{
    /* (a given-back message's key is its give-back's, which paging reads
     * only once committed: page_one) */
    return e->pending && windowed(e) && e->msg->lsn <= indexed_upto && e->marked_lsn <= indexed_upto &&
           e->marked_lsn <= commit_lsn();
}

/* Keep at most the window in memory: the last pending messages (in
 * dispatch order) that the store has indexed leave memory. What the store
 * has not indexed yet stays until it has (queue_indexed tries again). */
static void shrink(struct queue *q)
{
    int64_t keep = window();
    struct qentry *e = RB_MAX(qtree, &q->pending), *prev;
    for (int steps = 0; e && q->window_bytes > keep && steps < SHRINK_STEPS; steps++, e = prev) {
        prev = RB_PREV(qtree, &q->pending, e);
        if (!evictable(e))
            continue;
        struct qkey k = key_of(e->msg);
        if (!q->paged || key_cmp(k, q->limit) < 0)
            q->limit = k;
        q->paged = true;
        tree_remove(q, e);
        entry_free(e);
    }
    q->shrink_stuck = q->window_bytes > keep ? indexed_upto + 1 : 0;
    over_window_note(q);
}

static void shrink_pressed_one(struct queue *q)
{
    if (pages(q) && q->window_bytes > window())
        shrink(q); /* what the store has not indexed yet goes once it has (queue_indexed) */
}

static void shrink_pressed(struct dest *d, void *arg)
{
    (void)arg;
    if (dest_is_queue(d)) {
        shrink_pressed_one(&d->q);
        return;
    }
    struct durable *du;
    TAILQ_FOREACH(du, &d->durables, topic_link)
        shrink_pressed_one(&du->q);
}

/* A monotonic clock: a wall clock set back would hold the pressure. */
static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Once per loop iteration: two compares, the clock read only while the
 * pressure may end. */
static void pressure_check(void)
{
    int64_t held = dest_total_mem(), limit = config.memory_limit;
    bool now = pressed ? held * 10 >= limit * 4 || mono_ms() - pressed_since < PRESSED_HOLD_MS : held * 2 >= limit;
    if (now == pressed)
        return;
    pressed = now;
    if (pressed) {
        pressed_since = mono_ms();
        log_info("memory: %lld of %lld bytes (broker.memory_limit) held: queues keep %d bytes of their backlogs "
                 "in memory until below 40%%",
                 (long long)held, (long long)limit, PRESSED_WINDOW);
        dest_foreach(shrink_pressed, NULL);
    } else {
        log_info("memory: below 40%% of broker.memory_limit: queues keep broker.queue_window in memory again");
    }
}

void queue_indexed(uint64_t lsn)
{
    indexed_upto = lsn;
    struct gone *g;
    while ((g = TAILQ_FIRST(&gone_flushed)) && g->lsn <= lsn)
        gone_free(g, true);
    struct queue *q, *next;
    for (q = TAILQ_FIRST(&over_window); q; q = next) {
        next = TAILQ_NEXT(q, over_link);
        shrink(q);
        if (q->nconsumers)
            mark_dirty(q);
    }
}

bool queue_waits_for_index(void)
{
    return !TAILQ_EMPTY(&over_window);
}

bool queue_follows_index(void)
{
    return !TAILQ_EMPTY(&gone_flushed);
}

struct page_ctx {
    struct queue *q;
    int64_t budget;
    int n;
    bool stopped;
    int64_t now;
};

static void expire(struct qentry *e);

static void read_retry_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
    struct queue *q;
    while ((q = TAILQ_FIRST(&read_retry))) {
        TAILQ_REMOVE(&read_retry, q, retry_link);
        q->read_retry = false;
        queue_mark_dirty(q);
    }
}

/* q's paging stopped at a message it may read later: it tries again. */
static void read_later(struct queue *q)
{
    if (q->read_retry)
        return;
    q->read_retry = true;
    TAILQ_INSERT_TAIL(&read_retry, q, retry_link);
    if (!ev_is_active(&read_retry_timer)) {
        ev_timer_init(&read_retry_timer, read_retry_cb, READ_RETRY, 0.);
        ev_timer_start(srv.loop, &read_retry_timer);
    }
}

static int page_one(void *arg, const struct store_msgref *r)
{
    struct page_ctx *x = arg;
    struct queue *q = x->q;
    struct qkey k = {(uint8_t)(MSG_PRIORITIES - 1 - jkey_msg_priority(r->key, r->klen)),
                     jkey_msg_seq(r->key, r->klen)};
    if (x->n >= PAGE_BATCH || x->budget <= 0) {
        x->stopped = true;
        return 1;
    }
    q->limit = (struct qkey){k.rprio, k.seq + 1};
    struct qentry *e;
    struct gone *g;
    HASH_FIND(rh, q->held, &k.seq, sizeof(uint64_t), e);
    HASH_FIND(hh, q->gone, &k.seq, sizeof(uint64_t), g);
    if (e || g)
        return 0; /* in memory (in flight, or not indexed when it came), or removed */
    if (r->lsn > commit_lsn())
        return 0; /* indexed before it is committed: the commit puts it in memory */
    struct msg *m;
    int rc = store_read_msg(r, &m);
    if (rc) {
        /* logged: this page ends. A damaged message (it does not match
         * its checksum, an I/O error) is not delivered, and stays in the
         * store: the next page goes on after it (q->limit is past it).
         * One that may be read later (out of file descriptors) is read
         * again in a moment, the rest waiting behind it: skipped, a
         * broker at its limit passed over its whole paged backlog, to
         * be delivered only after a restart. */
        x->stopped = true;
        if (rc != -EBADMSG) {
            q->limit = k;
            read_later(q);
        }
        return 1;
    }
    m->journaled = true;
    int64_t size = (int64_t)m->size;
    bool expired = m->expires && m->expires <= x->now;
    e = entry_new(q, m);
    msg_unref(m);
    e->redeliveries = r->deliveries;
    /* A durable subscription's message may be in the store before its
     * selector ran (sub_matches() keeps what the budget cannot judge yet),
     * and what left memory forgets its verdict: judged again before
     * delivery, and before it can expire into the dead-letter queue. */
    e->unfiltered = q->durable && q->durable->sel;
    tree_insert(q, e);
    if (expired && !e->unfiltered) {
        tree_remove(q, e);
        q->npending--;
        expire(e);
    }
    x->n++;
    x->budget -= size;
    return 0;
}

/* The window is full, but paging must read what lies below messages held
 * beyond the limit (arrived or returned after paging began): those leave
 * memory first (read again in their turn), what the store has not
 * indexed yet once it has. */
static void trim_beyond_limit(struct queue *q)
{
    struct qentry *e = RB_MAX(qtree, &q->pending), *prev;
    for (int steps = 0; e && steps < SHRINK_STEPS && key_cmp(key_of(e->msg), q->limit) >= 0; steps++, e = prev) {
        prev = RB_PREV(qtree, &q->pending, e);
        if (!evictable(e))
            continue;
        tree_remove(q, e);
        entry_free(e);
    }
    over_window_note(q);
}

/* Read the next messages of a paged queue back from the store, up to the
 * window; returns whether anything was read. */
static bool page_in(struct queue *q)
{
    if (!q->paged || !pages(q) || key_cmp(q->limit, KEY_END) == 0 || q->read_retry)
        return false;
    if (q->window_bytes >= window())
        trim_beyond_limit(q);
    struct page_ctx x = {q, window() - q->window_bytes, 0, false, server_now_ms()};
    if (x.budget <= 0)
        return false;
    struct buf from = {0};
    buf_append(&from, buf_head(&q->kprefix), buf_used(&q->kprefix));
    jkey_msg_suffix(&from, (uint8_t)(MSG_PRIORITIES - 1 - q->limit.rprio), q->limit.seq);
    struct qkey before = q->limit;
    int rc = store_page(buf_head(&q->kprefix), buf_used(&q->kprefix), buf_head(&from), buf_used(&from), page_one, &x);
    buf_free(&from);
    if (rc == 0 && !x.stopped) {
        /* read to the end: every pending message is in memory, or was
         * skipped */
        if (q->skipping)
            q->limit = KEY_END;
        else
            q->paged = false;
    }
    return x.n > 0 || key_cmp(before, q->limit) != 0 || !q->paged;
}

/* The consumers changed: what they skipped may be for the new ones. */
static void skip_reset(struct queue *q)
{
    q->seen_to = (struct qkey){0, 0}; /* and what they refused */
    q->resets++;
    if (!q->skipping)
        return;
    q->skipping = false;
    if (key_cmp(q->skip_from, q->limit) < 0)
        q->limit = q->skip_from;
    q->paged = true;
}

/* Every message in memory below the limit was offered to consumers that
 * all had credit, and none took it: they leave memory (what the store has
 * indexed) so that paging can move on. Returns whether room was made. */
static bool skip_window(struct queue *q)
{
    struct sub *s;
    TAILQ_FOREACH(s, &q->consumers, q_link)
        if (!sub_ready(s))
            return false;
    int64_t before = q->window_bytes;
    struct qentry *e = RB_MIN(qtree, &q->pending), *next;
    for (int steps = 0; e && steps < SHRINK_STEPS && key_cmp(key_of(e->msg), q->limit) < 0; steps++, e = next) {
        next = RB_NEXT(qtree, &q->pending, e);
        if (!evictable(e))
            continue;
        struct qkey k = key_of(e->msg);
        if (!q->skipping || key_cmp(k, q->skip_from) < 0)
            q->skip_from = k;
        q->skipping = true;
        tree_remove(q, e);
        entry_free(e);
    }
    return q->window_bytes < before;
}

void queue_restore(struct queue *q, uint64_t n)
{
    q->npending += n;
    if (n && pages(q)) {
        q->paged = true;
        q->limit = (struct qkey){0, 0};
    }
}

/* ------------------------------------------------------------ consumers and dispatch */

static struct band *band_of(const struct queue *q, uint8_t prio)
{
    for (uint32_t i = 0; i < q->nbands; i++)
        if (q->bands[i]->prio == prio)
            return q->bands[i];
    return NULL;
}

/* The one after s in its band's ring, wrapping round (NULL: s is alone). */
static struct sub *ring_next(struct band *b, struct sub *s)
{
    struct sub *n = TAILQ_NEXT(s, ring_link);
    if (!n)
        n = TAILQ_FIRST(&b->ring);
    return n == s ? NULL : n;
}

/* s leaves the ring: the cursor, and the end of a stopped scan, move on
 * to the one after it (a scan that then starts where it ends goes all the
 * way round: it may look at some twice, never misses one). */
static void ring_out(struct queue *q, struct sub *s)
{
    struct band *b = band_of(q, s->priority);
    struct sub *n = ring_next(b, s);
    if (b->rr == s)
        b->rr = n;
    if (q->scan_end == s)
        q->scan_end = n;
    TAILQ_REMOVE(&b->ring, s, ring_link);
}

/* s is not offered m, nor what comes after it until a sweep goes past
 * it again. Below seen_to, it was offered what lies below where it may
 * have missed some (helper-107's test: a full consumer found again at
 * the top was made to go over everything it had refused). */
static void miss(struct queue *q, struct sub *s, const struct msg *m)
{
    struct qkey k = key_of(m);
    if (key_cmp(k, q->seen_to) < 0 && key_cmp(s->missed_from, k) > 0)
        k = key_cmp(s->missed_from, q->seen_to) < 0 ? s->missed_from : q->seen_to;
    if (key_cmp(k, s->missed_from) < 0)
        s->missed_from = k;
}

/* s is not offered m (full) */
static void park(struct queue *q, struct sub *s, const struct msg *m)
{
    ring_out(q, s);
    s->parked = true;
    miss(q, s, m); /* what goes by meanwhile is not offered to it */
    q->nparked++;
}

/* Below seen_to, was s offered m already? (It refused it then.) */
static bool offered(const struct queue *q, const struct sub *s, const struct msg *m)
{
    return q->only_missed && key_cmp(s->missed_from, key_of(m)) > 0;
}

void queue_unpark(struct queue *q, struct sub *s)
{
    if (!s->parked)
        return;
    s->parked = false;
    q->nparked--;
    /* next in turn: a scan stopped by the budget looks at it too */
    struct band *b = band_of(q, s->priority);
    struct sub *rr = b->rr;
    if (rr) {
        TAILQ_INSERT_BEFORE(rr, s, ring_link);
        if (q->scan_end == rr)
            q->scan_end = s; /* it went all the way round; it still does */
    } else {
        TAILQ_INSERT_TAIL(&b->ring, s, ring_link);
    }
    b->rr = s;
}

/* A sweep from the top: every consumer back, in the order they came. An
 * unpark missed would cost a wait until then, never a message. */
static void unpark_all(struct queue *q)
{
    if (q->nparked == 0)
        return;
    for (uint32_t i = 0; i < q->nbands; i++)
        TAILQ_INIT(&q->bands[i]->ring);
    struct sub *s;
    TAILQ_FOREACH(s, &q->consumers, q_link) {
        s->parked = false;
        TAILQ_INSERT_TAIL(&band_of(q, s->priority)->ring, s, ring_link);
    }
    q->nparked = 0;
}

/* The band of s's priority, made if it is the first of it. */
static struct band *band_join(struct queue *q, const struct sub *s)
{
    struct band *b = band_of(q, s->priority);
    if (b)
        return b;
    if (!(b = calloc(1, sizeof *b)))
        abort();
    b->prio = s->priority;
    TAILQ_INIT(&b->ring);
    struct band **v = realloc(q->bands, (q->nbands + 1) * sizeof *v);
    if (!v)
        abort();
    q->bands = v;
    uint32_t i = q->nbands++;
    for (; i > 0 && v[i - 1]->prio < b->prio; i--)
        v[i] = v[i - 1];
    v[i] = b;
    return b;
}

void queue_add_consumer(struct queue *q, struct sub *s)
{
    struct band *b = band_join(q, s);
    /* behind those of its priority, ahead of lower ones */
    struct sub *after = TAILQ_LAST(&q->consumers, sub_list);
    while (after && after->priority < s->priority)
        after = TAILQ_PREV(after, sub_list, q_link);
    if (after)
        TAILQ_INSERT_AFTER(&q->consumers, after, s, q_link);
    else
        TAILQ_INSERT_HEAD(&q->consumers, s, q_link);
    TAILQ_INSERT_TAIL(&b->ring, s, ring_link);
    b->n++;
    s->parked = false;
    s->missed_from = (struct qkey){0, 0};
    q->nconsumers++;
    q->nexclusive += s->exclusive;
    skip_reset(q);
    queue_mark_dirty(q);
}

void queue_remove_consumer(struct queue *q, struct sub *s)
{
    if (s->parked) {
        s->parked = false;
        q->nparked--;
    } else {
        ring_out(q, s);
    }
    struct band *b = band_of(q, s->priority);
    if (--b->n == 0) {
        uint32_t i = 0;
        while (q->bands[i] != b)
            i++;
        memmove(q->bands + i, q->bands + i + 1, (q->nbands - i - 1) * sizeof *q->bands);
        q->nbands--;
        free(b);
    }
    TAILQ_REMOVE(&q->consumers, s, q_link);
    q->nconsumers--;
    q->nexclusive -= s->exclusive;
    skip_reset(q);
    struct group *g, *tmp;
    HASH_ITER(hh, q->groups, g, tmp) {
        if (g->sub == s)
            group_free(q, g);
    }
    /* Backup exclusive consumers and other group owners may now take over. */
    queue_mark_dirty(q);
}

/* PICK_LATER: the selector budget ran out before a consumer was found. */
enum pick { PICK_NONE_READY, PICK_NO_MATCH, PICK_OK, PICK_LATER };

static struct sub *first_exclusive(struct queue *q)
{
    if (q->nexclusive == 0)
        return NULL;
    struct sub *s;
    TAILQ_FOREACH(s, &q->consumers, q_link)
        if (s->exclusive)
            return s;
    return NULL;
}

/* Can any consumer take a message now? */
static bool any_ready(struct queue *q, const struct msg *m)
{
    for (uint32_t i = 0; i < q->nbands; i++) {
        struct sub *s;
        while ((s = TAILQ_FIRST(&q->bands[i]->ring)) && !sub_ready(s))
            park(q, s, m);
        if (s)
            return true;
    }
    return false;
}

/* A band's turn at m: round robin from its cursor, all the way round (or,
 * resumed, on to where the stopped scan would have ended). *any: a
 * consumer with room was seen. */
static enum pick pick_in(struct queue *q, struct band *b, struct msg *m, bool resumed, bool *any,
                         struct sub **out)
{
    struct sub *start = b->rr ? b->rr : TAILQ_FIRST(&b->ring);
    struct sub *end = resumed ? q->scan_end : start;
    /* from start round to end; all the way round when they are one */
    bool round = true;
    for (struct sub *s = start, *next; s && (round || s != end); s = next) {
        round = false;
        next = ring_next(b, s);
        if (!sub_ready(s)) {
            park(q, s, m);
            if (s == end) {
                end = next;
                round = true;
            }
            continue;
        }
        if (offered(q, s, m))
            continue; /* it refused this one already */
        *any = true;
        enum sub_verdict v = sub_select(sub_sel(s), m);
        if (v == SUB_LATER) {
            b->rr = s;
            q->scan_end = end;
            q->scan_prio = b->prio;
            q->scan_ready = *any;
            return PICK_LATER;
        }
        if (v == SUB_YES) {
            b->rr = next ? next : s;
            if (m->group && m->group_seq != -1) {
                /* bounded: the least recently used group is forgotten,
                 * as a closed one is */
                if (HASH_COUNT(q->groups) >= (unsigned)config.max_message_groups) {
                    group_free(q, TAILQ_FIRST(&q->group_lru));
                    skip_reset(q);
                }
                struct group *g = calloc(1, sizeof *g);
                if (!g || !(g->name = strdup(m->group)))
                    abort();
                g->sub = s;
                HASH_ADD_KEYPTR(hh, q->groups, g->name, strlen(g->name), g);
                TAILQ_INSERT_TAIL(&q->group_lru, g, lru);
            }
            *out = s;
            return PICK_OK;
        }
    }
    return PICK_NO_MATCH; /* the caller tells "none ready" by *any */
}

/* resumed: this message's consumer scan was stopped by the budget; it goes
 * on from q->rr to where it would have ended. */
static enum pick pick(struct queue *q, struct msg *m, bool resumed, struct sub **out)
{
    if (q->owner) {
        /* A topic subscription's private backlog: the selector already
         * ran (when the message was published, or filter()). */
        if (!sub_ready(q->owner))
            return PICK_NONE_READY;
        *out = q->owner;
        return PICK_OK;
    }
    struct sub *ex = first_exclusive(q);
    if (ex) {
        if (!sub_ready(ex))
            return PICK_NONE_READY;
        if (offered(q, ex, m))
            return PICK_NO_MATCH;
        enum sub_verdict v = sub_select(sub_sel(ex), m);
        if (v != SUB_YES)
            return v == SUB_LATER ? PICK_LATER : PICK_NO_MATCH;
        *out = ex;
        return PICK_OK;
    }
    struct group *g = NULL;
    if (m->group) {
        HASH_FIND_STR(q->groups, m->group, g);
        if (g) {
            if (sub_ready(g->sub) && !offered(q, g->sub, m)) {
                enum sub_verdict v = sub_select(sub_sel(g->sub), m);
                if (v == SUB_LATER)
                    return PICK_LATER;
                if (v == SUB_YES) {
                    TAILQ_REMOVE(&q->group_lru, g, lru); /* used: the last to be forgotten */
                    TAILQ_INSERT_TAIL(&q->group_lru, g, lru);
                    *out = g->sub;
                    return PICK_OK;
                }
            }
            /* The group waits for its owner; others may still take other
             * messages, so report "no match" rather than "none ready". An
             * owner not ready missed it (helper-107: not parked here, it
             * was never offered it again, and got the next first). */
            if (!sub_ready(g->sub))
                miss(q, g->sub, m);
            return any_ready(q, m) ? PICK_NO_MATCH : PICK_NONE_READY;
        }
    }
    /* the highest band first; a scan the budget stopped goes on in its band */
    bool any = false;
    uint32_t i = 0;
    bool resume = resumed && q->scan_end;
    if (resume) {
        any = q->scan_ready;
        while (i < q->nbands && q->bands[i]->prio > q->scan_prio)
            i++;
        resume = i < q->nbands && q->bands[i]->prio == q->scan_prio;
    }
    for (; i < q->nbands; i++, resume = false) {
        enum pick r = pick_in(q, q->bands[i], m, resume, &any, out);
        if (r == PICK_OK || r == PICK_LATER)
            return r;
    }
    return any ? PICK_NO_MATCH : PICK_NONE_READY;
}

static void group_closed(struct queue *q, struct msg *m)
{
    if (!m->group || m->group_seq != -1)
        return;
    struct group *g;
    HASH_FIND_STR(q->groups, m->group, g);
    if (g) {
        group_free(q, g);
        skip_reset(q); /* its messages may go to anyone now */
    }
}

static void deliver(struct queue *q, struct sub *s, struct qentry *e)
{
    group_closed(q, e->msg);
    sub_deliver(s, e);
}

/* An expired message leaves the queue: persistent ones are dead-lettered,
 * non-persistent ones dropped; both are counted. e is in no list. */
static void expire(struct qentry *e)
{
    struct dest *d = e->q->dest;
    d->st.expired++;
    srv.st.expired++;
    if (e->msg->persistent && !dlq_is_dlq(d)) {
        dlq_move(e, "expired");
        return;
    }
    persist_dequeue(e);
    queue_entry_done(e);
}

/* Which consumers were ready when dispatch stopped: one ready after it
 * makes the next pass start from the top. A wake (queue_mark_dirty) does
 * not come for each: a consumer's output back under its limit but not yet
 * at its low water is ready without one, in turn (helper-110) or parked
 * (helper-112: a window skipped as refused by all had never been offered
 * to it). Within a pass a consumer only fills: one parked was not ready. */
static void note_ready(struct queue *q)
{
    struct sub *s;
    TAILQ_FOREACH(s, &q->consumers, q_link)
        s->ready_at_stop = sub_ready(s);
}

static bool readied(struct queue *q)
{
    struct sub *s;
    TAILQ_FOREACH(s, &q->consumers, q_link)
        if (!s->ready_at_stop && sub_ready(s))
            return true;
    return false;
}

/* Over the window, a push shrinks the queue, unless the last shrink found
 * nothing more to take out and the store has indexed nothing since: a
 * COMMIT of 100,000 persistent messages (none indexed yet) walked 4,096
 * entries for each, and held the loop 6 s (helper-96). queue_indexed
 * shrinks it once the store has. */
static void add_pending(struct queue *q, struct qentry *e)
{
    /* nobody was offered it yet (a higher priority, a message put back);
     * one paged back in was, if it is below */
    if (key_cmp(key_of(e->msg), q->seen_to) < 0)
        q->seen_to = key_of(e->msg);
    tree_insert(q, e);
    if (q->window_bytes > window() && pages(q)) {
        if (q->shrink_stuck != indexed_upto + 1)
            shrink(q);
        else
            over_window_note(q);
    }
}

void queue_push(struct queue *q, struct msg *m)
{
    if (m->journaled && m->lsn && m->lsn <= q->purged_lsn)
        return; /* journaled before a purge that came first here: the store has it no more */
    struct qentry *e = entry_new(q, m);
    if (q->npending == 0 && q->nconsumers > 0 && server_delivers()) {
        struct sub *s;
        if (m->expires && m->expires <= server_now_ms()) {
            expire(e);
            return;
        }
        /* choosing a consumer is this message's routing: its own budget */
        struct sub_pass pass;
        sub_pass_begin(&pass);
        enum pick r = pick(q, m, false, &s);
        sub_pass_end(&pass);
        if (r == PICK_OK) {
            deliver(q, s, e);
            return;
        }
        if (r == PICK_LATER) {
            /* dispatch goes on with the scan, in a later pass */
            q->npending++;
            add_pending(q, e);
            q->resuming = true;
            q->resume = key_of(m);
            q->rescan = false;
            note_ready(q);
            mark_dirty(q);
            return;
        }
    }
    q->npending++;
    add_pending(q, e);
    if (q->nconsumers > 0)
        mark_dirty(q);
}

void queue_push_unfiltered(struct queue *q, struct msg *m)
{
    struct qentry *e = entry_new(q, m);
    e->unfiltered = true;
    q->npending++;
    add_pending(q, e);
    if (q->nconsumers > 0)
        mark_dirty(q);
}

struct unsent *queue_unsent_new(struct qentry *e, uint64_t pos)
{
    struct unsent *u = calloc(1, sizeof *u);
    if (!u)
        abort();
    u->q = e->q;
    u->msg = msg_ref(e->msg);
    u->pos = pos;
    u->redeliveries = e->redeliveries;
    u->purges = e->purges;
    TAILQ_INSERT_TAIL(&e->q->unsent, u, q_link);
    return u;
}

void queue_unsent_free(struct unsent *u)
{
    if (u->q)
        TAILQ_REMOVE(&u->q->unsent, u, q_link);
    msg_unref(u->msg);
    free(u);
}

void queue_unsent_return(struct unsent *u)
{
    struct queue *q = u->q;
    log_debug("%s: message %s never left, given back", q ? q->dest->name : "(gone)", u->msg->id);
    if (q && u->purges == q->purges) {
        if (q->dest->st.dequeued)
            q->dest->st.dequeued--; /* not consumed after all */
        uint64_t lsn = persist_given_back(q, u->msg, u->redeliveries);
        if (pages(q)) {
            /* in memory again: its removal is undone, and paging must
             * not skip it if it leaves memory once more */
            struct gone *g;
            HASH_FIND(hh, q->gone, &u->msg->seq, sizeof(uint64_t), g);
            if (g)
                gone_free(g, g->lsn != 0);
        }
        struct qentry *e = entry_new(q, u->msg);
        e->redeliveries = u->redeliveries;
        e->marked_lsn = lsn; /* read back from the store only once it has it again */
        q->npending++;
        add_pending(q, e);
        mark_dirty(q);
    }
    queue_unsent_free(u);
}

bool queue_return(struct qentry *e, enum return_why why)
{
    struct queue *q = e->q;
    e->sub = NULL;
    e->tag = 0;
    e->in_txn_ack = false;
    if (e->purges != q->purges) {
        /* purged while in flight: it goes with the rest, as ActiveMQ's
         * purge takes dispatched messages too (the store has no copy) */
        queue_entry_done(e);
        return false;
    }
    e->marked_lsn = persist_journaled_by();
    e->redeliveries++;
    q->dest->st.redelivered++;
    /* A NACK past the limit dead-letters (0: the first NACK does). A
     * consumer that went away counts too, against poison messages that
     * kill their consumers, but never on its first loss: restarting a
     * consumer must not dead-letter what it held. A broker that stops is
     * no consumer's fault: a rolling restart must not dead-letter what
     * consumers held (as a kill -9 does not). */
    int64_t limit = config.max_redeliveries;
    if (why == RETURN_LOST && limit == 0)
        limit = 1;
    if (why != RETURN_STOPPED && limit >= 0 && e->redeliveries > (uint64_t)limit && !dlq_is_dlq(q->dest))
        return dlq_move(e, why == RETURN_NACK ? "max redeliveries exceeded" : "max redeliveries exceeded (consumer lost)");
    /* back to its place: an O(log n) insert, whatever the backlog */
    q->npending++;
    add_pending(q, e);
    mark_dirty(q);
    return false;
}

/* Stopped by the budget at e: the next pass (a later loop iteration, once
 * the budget is refilled) goes on from its key. */
static void stop(struct queue *q, const struct qentry *e, const struct sub_pass *pass)
{
    q->resuming = true;
    q->resume = key_of(e->msg);
    q->starved = pass->done == 0;
    note_ready(q);
    mark_dirty(q);
}

/* The first message a ready consumer may have missed (KEY_END: none). */
static struct qkey first_missed(struct queue *q)
{
    struct qkey first = KEY_END;
    struct sub *s;
    TAILQ_FOREACH(s, &q->consumers, q_link)
        if (!s->parked && sub_ready(s) && key_cmp(s->missed_from, first) < 0)
            first = s->missed_from;
    return first;
}

/* This sweep offered every message before k to each consumer ready now:
 * from where it may have missed some, it has seen them (KEY_END: all
 * below seen_to). Within a pass a consumer only fills: ready now, it was
 * all along; one ready since a stop makes the next pass start from the top
 * (rescan, readied), so a sweep going on from a stop holds this too. */
static void missed_upto(struct queue *q, struct qkey k)
{
    struct sub *s;
    TAILQ_FOREACH(s, &q->consumers, q_link)
        if (!s->parked && sub_ready(s) && key_cmp(s->missed_from, k) < 0)
            s->missed_from = k;
}

static struct qkey key_after(struct qkey k)
{
    return (struct qkey){k.rprio, k.seq + 1};
}

static void dispatch(struct queue *q, const struct sub_pass *pass)
{
    bool from = q->resuming;
    struct qkey fk = q->resume;
    q->resuming = false;
    /* Something ahead of the stop may be taken now (a consumer ready
     * again, or come; a message put back ahead of it): from the top, or a
     * consumer would get what lies beyond the stop before what lies ahead
     * of it (helper-102: a plain consumer that came while a selector's
     * scan was stopped deep in a paged backlog got it out of order). */
    if (from && (q->rescan || readied(q)))
        from = false;
    /* What this pass offers it offers to every consumer in turn, from
     * seen_to on: seen_to follows it (a sweep from the top, or one going
     * on from where the last one stopped) */
    bool contiguous = !from || key_cmp(fk, q->seen_to) == 0, crossed = false;
    /* this pass and the ones before it since the top offer everything from
     * below seen_to on to each consumer ready now (see missed_upto) */
    bool whole = !from || key_cmp(fk, q->seen_to) <= 0;
    /* seen_to back at the start during the pass (a group closed or
     * forgotten): what the pass offered before is for others now, and
     * seen_to, missed_from, stay where the reset left them (helper-110) */
    uint32_t resets = q->resets;
    if (!from) {
        q->rescan = false; /* a sweep from the top sees everything */
        unpark_all(q);
    }
    page_in(q);
    int64_t now = server_now_ms();
    bool skipped = false;
    struct qentry *e;
    if (from) {
        struct qentry probe;
        struct msg pm = {.priority = (uint8_t)(MSG_PRIORITIES - 1 - fk.rprio), .seq = fk.seq};
        probe.msg = &pm;
        e = RB_NFIND(qtree, &q->pending, &probe);
    } else {
        e = RB_MIN(qtree, &q->pending);
    }
    while (e || (q->paged && !skipped)) {
        if (q->paged && (!e || key_cmp(key_of(e->msg), q->limit) >= 0)) {
            /* everything below the limit was offered: read more first */
            struct qentry probe;
            struct msg pm = {.priority = (uint8_t)(MSG_PRIORITIES - 1 - q->limit.rprio), .seq = q->limit.seq};
            probe.msg = &pm;
            if (!page_in(q)) {
                /* a full window nobody takes from: skip it, once per
                 * round (the next round goes on). Only when every message
                 * in it was refused (a sweep that goes on from a stop
                 * does so only while nothing ahead of it may be taken). */
                if (skipped || !skip_window(q))
                    break;
                skipped = true;
                mark_dirty(q);
                if (!page_in(q))
                    break;
            }
            e = RB_NFIND(qtree, &q->pending, &probe);
            continue;
        }
        /* Below seen_to, only consumers that may have missed it may
         * take it (helper-105: going through again from the top for a
         * consumer ready again made a selector consumer evaluate, at every
         * ack of another, what it had refused, and never get further;
         * helper-107: so did one full once, until a sweep crossed seen_to
         * unstopped) */
        struct qkey k = key_of(e->msg);
        bool below = key_cmp(k, q->seen_to) < 0;
        if (!below && !crossed && whole && q->resets == resets) {
            crossed = true;
            missed_upto(q, KEY_END);
        }
        if (below) {
            struct qkey first = first_missed(q);
            if (key_cmp(first, k) > 0) {
                /* on to the first one a ready consumer may have missed */
                if (key_cmp(q->seen_to, first) < 0)
                    first = q->seen_to;
                struct qentry probe;
                struct msg pm = {.priority = (uint8_t)(MSG_PRIORITIES - 1 - first.rprio), .seq = first.seq};
                probe.msg = &pm;
                e = RB_NFIND(qtree, &q->pending, &probe);
                continue;
            }
        }
        /* offered to every consumer in turn: seen_to moves past it */
        bool advance = contiguous && !below && q->resets == resets;
        struct qentry *next = RB_NEXT(qtree, &q->pending, e);
        enum sub_verdict v = filter(q, e);
        if (v == SUB_LATER) {
            q->scan_end = NULL;
            if (advance)
                q->seen_to = k;
            if (q->resets == resets)
                missed_upto(q, k);
            stop(q, e, pass);
            return;
        }
        if (v == SUB_NO) {
            if (advance)
                q->seen_to = key_after(k);
            e = next;
            continue;
        }
        if (e->msg->expires && e->msg->expires <= now) {
            tree_remove(q, e);
            q->npending--;
            expire(e);
            if (advance)
                q->seen_to = key_after(k);
            e = next;
            continue;
        }
        struct sub *s;
        q->only_missed = below;
        enum pick r = pick(q, e->msg, from && key_cmp(k, fk) == 0, &s);
        q->only_missed = false;
        advance = advance && q->resets == resets; /* a group forgotten to make room for one */
        if (r == PICK_LATER) {
            if (advance)
                q->seen_to = k;
            if (q->resets == resets)
                missed_upto(q, k);
            stop(q, e, pass);
            return;
        }
        q->scan_end = NULL;
        if (r == PICK_NONE_READY)
            break;
        if (advance)
            q->seen_to = key_after(k);
        if (r == PICK_NO_MATCH) {
            e = next;
            continue;
        }
        tree_remove(q, e);
        q->npending--;
        deliver(q, s, e);
        if (q->nconsumers == 0)
            break;
        e = next;
    }
    /* to the end, all in memory: each consumer ready was offered all */
    if (!e && !q->paged && whole && q->resets == resets)
        missed_upto(q, KEY_END);
    q->rescan = false;
    /* room in the window again: the next round reads more */
    if (q->paged && key_cmp(q->limit, KEY_END) != 0 && q->nconsumers && q->window_bytes < window() / 2 &&
        !q->read_retry)
        mark_dirty(q);
}

void queue_dispatch(struct queue *q)
{
    if (q->npending == 0 || q->nconsumers == 0)
        return;
    struct sub_pass pass;
    sub_pass_begin_dispatch(&pass);
    q->starved = false;
    dispatch(q, &pass);
    sub_pass_end(&pass);
}

bool queue_dispatch_dirty(void)
{
    bool any = false;
    pressure_check();
    /* Queues stopped by the selector budget wait here for the next loop
     * iteration's budget, still dirty. */
    struct queue_list later = TAILQ_HEAD_INITIALIZER(later);
    /* Dispatching can mark other queues dirty (dead letters); bound the
     * rounds so one busy queue cannot starve the loop. */
    for (int round = 0; round < 8 && !TAILQ_EMPTY(&srv.dirty); round++) {
        struct queue_list todo = TAILQ_HEAD_INITIALIZER(todo);
        struct queue_list first = TAILQ_HEAD_INITIALIZER(first);
        struct queue *q, *nq;
        TAILQ_CONCAT(&todo, &srv.dirty, dirty_link);
        /* Queues the selector budget left nothing for last time go first,
         * so one busy queue cannot take every iteration's budget. */
        for (q = TAILQ_FIRST(&todo); q; q = nq) {
            nq = TAILQ_NEXT(q, dirty_link);
            if (q->starved) {
                TAILQ_REMOVE(&todo, q, dirty_link);
                TAILQ_INSERT_TAIL(&first, q, dirty_link);
            }
        }
        TAILQ_CONCAT(&first, &todo, dirty_link);
        while ((q = TAILQ_FIRST(&first))) {
            TAILQ_REMOVE(&first, q, dirty_link);
            if (q->resuming && sub_dispatch_budget_spent()) {
                TAILQ_INSERT_TAIL(&later, q, dirty_link);
                continue;
            }
            q->dirty = false;
            queue_dispatch(q);
            any = true;
        }
    }
    TAILQ_CONCAT(&srv.dirty, &later, dirty_link);
    return any;
}

/* Queues deleted while messages journaled before the deletion may still
 * come (their SEND or COMMIT waits for its entry to be durable): a queue
 * made again under the name meanwhile drops them too. Forgotten once the
 * journal is durable past the deletion (what came before has come). */
struct deleted {
    char *name;
    uint64_t lsn;
    UT_hash_handle hh;
};
static struct deleted *deleted;

static void deleted_prune(bool all)
{
    struct deleted *x, *tmp;
    HASH_ITER(hh, deleted, x, tmp)
        if (all || x->lsn <= commit_lsn()) {
            HASH_DEL(deleted, x);
            free(x->name);
            free(x);
        }
}

void queue_deleted(const char *name, uint64_t lsn)
{
    deleted_prune(false);
    if (!lsn || lsn <= commit_lsn())
        return;
    struct deleted *x;
    HASH_FIND_STR(deleted, name, x);
    if (!x) {
        if (!(x = calloc(1, sizeof *x)) || !(x->name = strdup(name)))
            abort();
        HASH_ADD_KEYPTR(hh, deleted, x->name, strlen(x->name), x);
    }
    if (lsn > x->lsn)
        x->lsn = lsn;
}

void queue_made(struct queue *q)
{
    deleted_prune(false);
    struct deleted *x;
    HASH_FIND_STR(deleted, q->dest->name, x);
    if (x)
        q->purged_lsn = x->lsn;
}

void queue_forget_deleted(void)
{
    deleted_prune(true);
}

uint64_t queue_purge(struct queue *q, uint64_t lsn, uint64_t *held)
{
    if (lsn > q->purged_lsn)
        q->purged_lsn = lsn;
    uint64_t n = q->npending;
    struct qentry *e, *next;
    for (e = RB_MIN(qtree, &q->pending); e; e = next) {
        next = RB_NEXT(qtree, &q->pending, e);
        tree_remove(q, e);
        entry_free(e);
    }
    /* the purge removes the in-flight ones' keys from the store too: if
     * they come back, they are in memory only */
    HASH_ITER(rh, q->held, e, next)
        e->msg->journaled = false;
    /* what consumers hold and no earlier purge took (q->held has every
     * entry in memory only when the queue pages: walk the consumers; a
     * wildcard or composite subscription's leg keeps its deliveries on
     * its root's list, with those of its other queues) */
    *held = 0;
    struct sub *s;
    TAILQ_FOREACH(s, &q->consumers, q_link)
        TAILQ_FOREACH(e, &sub_top(s)->unacked, link)
            if (e->q == q && e->purges == q->purges)
                ++*held;
    q->purges++; /* and whatever of them comes back goes (queue_return) */
    q->npending = 0;
    q->paged = false;
    q->skipping = false;
    q->resuming = false;
    return n + *held;
}

static bool expired_at(const struct msg *m, int64_t now)
{
    return m->expires && m->expires <= now;
}

enum drop_result queue_drop_oldest(struct queue *q, struct dest **origin)
{
    /* the last entry has the lowest priority; the first of that priority
     * is the oldest of it */
    struct qentry *last = RB_MAX(qtree, &q->pending);
    if (!last)
        return DROP_NONE;
    struct qentry probe;
    struct msg pm = {.priority = last->msg->priority, .seq = 0};
    probe.msg = &pm;
    struct qentry *e = RB_NFIND(qtree, &q->pending, &probe);
    struct qentry *first = RB_MIN(qtree, &q->pending);
    /* What the selector has not judged yet is judged first (as expiry and
     * dispatch do): one it refuses was never this backlog's. One that has
     * expired makes the room instead, as expiry has it (counted, a
     * persistent one dead-lettered); not one still unjudged, which may
     * not be this subscription's at all. */
    int64_t now = server_now_ms();
    struct qentry *cand[2] = {e, first != e ? first : NULL};
    for (int i = 0; i < 2; i++) {
        struct qentry *c = cand[i];
        if (!c || !expired_at(c->msg, now))
            continue;
        enum sub_verdict v = filter(q, c);
        if (v == SUB_NO)
            return DROP_REFUSED;
        if (v == SUB_YES) {
            tree_remove(q, c);
            q->npending--;
            expire(c);
            return DROP_EXPIRED;
        }
    }
    enum sub_verdict v = filter(q, e);
    if (v == SUB_LATER) {
        /* the pass's budget is spent (a publish's, on other selectors):
         * judged on a whole budget of its own, once (its verdict stays),
         * as a drop must not count what was never this backlog's */
        struct sub_pass own;
        sub_pass_begin(&own);
        v = filter(q, e);
        sub_pass_end(&own);
    }
    if (v == SUB_NO)
        return DROP_REFUSED;
    *origin = dest_find(e->msg->dest);
    tree_remove(q, e);
    q->npending--;
    queue_entry_done(e);
    return DROP_DROPPED;
}

uint64_t queue_expire_due(int64_t now_ms)
{
    uint64_t n = 0;
    /* A backlog's copy its selector refuses was never the backlog's (it
     * leaves without going to the dead-letter queue); one the budget
     * cannot judge now waits out of the heap until the end, for the next
     * sweep. */
    struct sub_pass pass;
    sub_pass_begin(&pass);
    struct qentry **later = NULL;
    size_t nlater = 0, caplater = 0;
    while (nheap > 0 && heap[0]->msg->expires <= now_ms) {
        struct qentry *e = heap[0];
        struct queue *q = e->q;
        enum sub_verdict v = filter(q, e);
        if (v == SUB_NO)
            continue;
        if (v == SUB_LATER) {
            if (nlater == caplater) {
                caplater = caplater ? 2 * caplater : 16;
                later = realloc(later, caplater * sizeof *later);
                if (!later)
                    abort();
            }
            heap_remove(e);
            later[nlater++] = e;
            continue;
        }
        tree_remove(q, e);
        q->npending--;
        expire(e);
        n++;
    }
    for (size_t i = 0; i < nlater; i++)
        heap_push(later[i]);
    free(later);
    sub_pass_end(&pass);
    return n;
}

/* Index entries a sweep looks at, over all queues, for expired messages
 * that are in the store only (a message is read only when expired): the
 * loop spends milliseconds on it, however many deep queues there are. It
 * reads expiry_bytes() of them at most (at least one message; helper-73:
 * 300 expired messages of 256 KiB were read at once, 390 MB). The next
 * sweep goes on from the queue, and the place in it, where the last
 * stopped. */
#define EXPIRY_SCAN 20000

struct expiry_scan {
    struct queue *q;
    uint64_t serial;    /* q's place in its destination: 0 a queue, else its durable subscription's serial */
    int64_t now;
    size_t seen;        /* over all queues this sweep */
    int64_t bytes;      /* of expired messages read */
    uint64_t expired;
    bool stopped;
    bool wrapped;       /* the second pass: names before the one the last sweep stopped at */
};

/* Where the last sweep stopped ("" none): a destination's name, and in a
 * topic the serial of the durable subscription's backlog. */
static char expiry_resume[1200];
static uint64_t expiry_resume_serial;

/* Bytes of expired messages a sweep reads: a window, or a 32nd of
 * broker.memory_limit if more (32 MiB of the default 1 GiB). */
static int64_t expiry_bytes(void)
{
    int64_t share = config.memory_limit / 32;
    return share > window() ? share : window();
}

/* Where the pending messages the store alone may hold begin (the
 * invariant in queue.h): the skipped range, or the limit. */
static struct qkey store_only_from(const struct queue *q)
{
    return q->skipping && key_cmp(q->skip_from, q->limit) < 0 ? q->skip_from : q->limit;
}

static int stop_sweep(struct expiry_scan *x, struct qkey k)
{
    x->q->expiry_from = k;
    x->stopped = true;
    snprintf(expiry_resume, sizeof expiry_resume, "%s", x->q->dest->name);
    expiry_resume_serial = x->serial;
    return 1;
}

static int expire_stored(void *arg, const struct store_msgref *r)
{
    struct expiry_scan *x = arg;
    struct queue *q = x->q;
    struct qkey k = {(uint8_t)(MSG_PRIORITIES - 1 - jkey_msg_priority(r->key, r->klen)),
                     jkey_msg_seq(r->key, r->klen)};
    bool expired = r->expires && r->expires <= x->now && r->lsn <= commit_lsn();
    if (x->seen++ >= EXPIRY_SCAN || (expired && x->expired && x->bytes + (int64_t)r->len > expiry_bytes()))
        return stop_sweep(x, k);
    if (!expired)
        return 0;
    struct qentry *e;
    struct gone *g;
    HASH_FIND(rh, q->held, &k.seq, sizeof(uint64_t), e);
    HASH_FIND(hh, q->gone, &k.seq, sizeof(uint64_t), g);
    if (e || g)
        return 0; /* in memory (the heap's), or removed */
    struct msg *m = store_load_msg(r);
    if (!m)
        return 0; /* logged; paging meets it again */
    /* A durable subscription's backlog may hold a copy its selector has
     * not judged (or whose verdict left memory with it): judged now, as
     * queue_expire_due does (with its reader's right to the topic,
     * durable_may_read). One it refuses was never the backlog's and
     * leaves without going to the dead-letter queue; one the sweep's
     * budget cannot judge stops the sweep here, for the next. */
    enum sub_verdict v = !q->durable                              ? SUB_YES
                         : !durable_may_read(q->durable, m->dest) ? SUB_NO
                                                                  : sub_select(q->durable->sel, m);
    if (v == SUB_LATER) {
        msg_unref(m);
        return stop_sweep(x, k);
    }
    x->bytes += (int64_t)r->len;
    m->journaled = true;
    e = entry_new(q, m);
    msg_unref(m);
    e->redeliveries = r->deliveries;
    /* never in the tree: it goes from the store as paging would have
     * expired it (q->gone keeps paging from reading it back meanwhile) */
    q->npending--;
    if (v == SUB_NO) {
        persist_dequeue(e);
        queue_entry_done(e);
        return 0;
    }
    expire(e);
    x->expired++;
    return 0;
}

/* The store-only part of one queue or backlog, from where the last sweep
 * stopped in it: from the skipped range (messages consumers passed over
 * left memory) or the limit on. */
static void expire_paged_queue(struct expiry_scan *x, struct queue *q, uint64_t serial)
{
    if (x->stopped || !pages(q) || !q->paged)
        return;
    /* the first pass goes from where the last sweep stopped, the second
     * (wrapped) up to it */
    int c = strcmp(q->dest->name, expiry_resume);
    bool before = c < 0 || (c == 0 && serial < expiry_resume_serial);
    if (before != x->wrapped)
        return;
    struct qkey lo = store_only_from(q);
    if (key_cmp(lo, KEY_END) == 0)
        return;
    struct qkey start = key_cmp(q->expiry_from, lo) > 0 ? q->expiry_from : lo;
    struct buf from = {0};
    buf_append(&from, buf_head(&q->kprefix), buf_used(&q->kprefix));
    jkey_msg_suffix(&from, (uint8_t)(MSG_PRIORITIES - 1 - start.rprio), start.seq);
    x->q = q;
    x->serial = serial;
    int rc = store_page(buf_head(&q->kprefix), buf_used(&q->kprefix), buf_head(&from), buf_used(&from),
                        expire_stored, x);
    buf_free(&from);
    if (rc != 0 || !x->stopped)
        q->expiry_from = lo; /* to the end: from the start next time */
}

static void expire_paged_one(struct dest *d, void *arg)
{
    struct expiry_scan *x = arg;
    if (dest_is_queue(d)) {
        expire_paged_queue(x, &d->q, 0);
        return;
    }
    /* a topic: its durable subscriptions' backlogs, in serial order */
    struct durable *du;
    TAILQ_FOREACH(du, &d->durables, topic_link)
        expire_paged_queue(x, &du->q, du->serial);
}

uint64_t queue_expire_paged(int64_t now_ms)
{
    struct expiry_scan x = {.now = now_ms};
    struct sub_pass pass; /* the selectors of durable subscriptions' backlogs */
    sub_pass_begin(&pass);
    dest_foreach(expire_paged_one, &x); /* from where the last sweep stopped */
    x.wrapped = true;
    dest_foreach(expire_paged_one, &x); /* then the places before it */
    sub_pass_end(&pass);
    if (!x.stopped) {
        expiry_resume[0] = '\0';
        expiry_resume_serial = 0;
    }
    return x.expired;
}

/* ------------------------------------------------------------ browsing and taking (the console) */

/* Whether a pending message at k may be in the store only (the invariant
 * in queue.h): at or beyond the limit, or in the skipped range. */
static bool maybe_store_only(const struct queue *q, struct qkey k)
{
    return pages(q) && q->paged && key_cmp(k, store_only_from(q)) >= 0;
}

struct browse_ref {
    struct qkey k;
    struct store_msgref r;      /* its key pointer cleared: valid in the scan only */
};

struct browse_ctx {
    struct queue *q;
    struct browse_ref *refs;
    size_t n, max;
    size_t examined, cap;
    bool capped;
    bool has_after;
    struct qkey after, last;
    int64_t now;
};

static struct qkey ref_key(const struct store_msgref *r)
{
    return (struct qkey){(uint8_t)(MSG_PRIORITIES - 1 - jkey_msg_priority(r->key, r->klen)),
                         jkey_msg_seq(r->key, r->klen)};
}

static int browse_one(void *arg, const struct store_msgref *r)
{
    struct browse_ctx *x = arg;
    struct qkey k = ref_key(r);
    if (x->has_after && key_cmp(k, x->after) <= 0)
        return 0;
    if (x->n >= x->max)
        return 1;
    if (x->examined++ >= x->cap) {
        x->capped = true;
        return 1;
    }
    x->last = k;
    struct qentry *e;
    struct gone *g;
    HASH_FIND(rh, x->q->held, &k.seq, sizeof(uint64_t), e);
    HASH_FIND(hh, x->q->gone, &k.seq, sizeof(uint64_t), g);
    if (e || g || (r->expires && r->expires <= x->now))
        return 0; /* in memory (from the tree, or in flight), removed, or expired */
    x->refs[x->n].k = k;
    x->refs[x->n].r = *r;
    x->refs[x->n].r.key = NULL;
    x->refs[x->n].r.klen = 0;
    x->n++;
    return 0;
}

size_t queue_browse(struct queue *q, const struct qkey *after, size_t max, size_t max_bytes,
                    struct queue_browsed *out, struct qkey *next, bool *more)
{
    int64_t now = server_now_ms();
    *more = false;
    if (max == 0)
        return 0;
    /* the store's side: pending messages it alone holds, from where they
     * may be (the limit, or the skipped range) */
    struct browse_ctx x = {.q = q, .max = max + 1, .now = now, .has_after = after != NULL};
    if (after)
        x.after = *after;
    if (q->paged && pages(q)) {
        struct qkey start = store_only_from(q);
        if (after && key_cmp(*after, start) >= 0)
            start = *after;
        if (key_cmp(start, KEY_END) != 0) {
            x.refs = calloc(x.max, sizeof *x.refs);
            if (!x.refs)
                abort();
            /* what can be passed over: messages in memory, removals not
             * indexed yet, and (bounded) expired ones */
            x.cap = x.max + HASH_CNT(rh, q->held) + HASH_COUNT(q->gone) + 10000;
            struct buf from = {0};
            buf_append(&from, buf_head(&q->kprefix), buf_used(&q->kprefix));
            jkey_msg_suffix(&from, (uint8_t)(MSG_PRIORITIES - 1 - start.rprio), start.seq);
            if (store_page(buf_head(&q->kprefix), buf_used(&q->kprefix), buf_head(&from), buf_used(&from),
                           browse_one, &x) != 0)
                x.capped = true; /* logged; what was read is shown */
            buf_free(&from);
        }
    }
    /* the memory's side: the pending tree from after on */
    struct qentry *e;
    if (after) {
        struct msg pm = {.priority = (uint8_t)(MSG_PRIORITIES - 1 - after->rprio), .seq = after->seq};
        struct qentry probe = {.msg = &pm};
        e = RB_NFIND(qtree, &q->pending, &probe);
        if (e && key_cmp(key_of(e->msg), *after) == 0)
            e = RB_NEXT(qtree, &q->pending, e);
    } else {
        e = RB_MIN(qtree, &q->pending);
    }
    size_t n = 0, i = 0, bytes = 0;
    while (n < max) {
        while (e && e->msg->expires && e->msg->expires <= now)
            e = RB_NEXT(qtree, &q->pending, e);
        if (!e && i >= x.n)
            break;
        if (bytes >= max_bytes && n > 0) {
            *more = true;
            break;
        }
        if (e && (i >= x.n || key_cmp(key_of(e->msg), x.refs[i].k) < 0)) {
            out[n++] = (struct queue_browsed){msg_ref(e->msg), e->redeliveries, true};
            bytes += e->msg->size;
            *next = key_of(e->msg);
            e = RB_NEXT(qtree, &q->pending, e);
            continue;
        }
        struct msg *m = store_load_msg(&x.refs[i].r);
        *next = x.refs[i].k;
        if (m) {
            m->journaled = true;
            out[n++] = (struct queue_browsed){m, x.refs[i].r.deliveries, false};
            bytes += x.refs[i].r.len;
        }
        i++;
    }
    while (e && e->msg->expires && e->msg->expires <= now)
        e = RB_NEXT(qtree, &q->pending, e);
    if (e || i < x.n || x.capped)
        *more = true;
    if (x.capped && n == 0)
        *next = x.last; /* nothing to show in what was scanned: go on after it */
    free(x.refs);
    return n;
}

struct take_ctx {
    struct qkey k;
    struct msg *m;
    uint32_t deliveries;
    bool found;
};

static int take_one(void *arg, const struct store_msgref *r)
{
    struct take_ctx *x = arg;
    if (key_cmp(ref_key(r), x->k) == 0) {
        x->found = true;
        x->m = store_load_msg(r);
        x->deliveries = r->deliveries;
    }
    return 1;
}

int queue_take(struct queue *q, struct qkey k, struct qentry **out)
{
    struct qentry *e = NULL;
    struct msg pm = {.priority = (uint8_t)(MSG_PRIORITIES - 1 - k.rprio), .seq = k.seq};
    struct qentry probe = {.msg = &pm};
    if (pages(q)) {
        HASH_FIND(rh, q->held, &k.seq, sizeof(uint64_t), e);
        if (e && key_cmp(key_of(e->msg), k) != 0)
            return -ENOENT;
        if (e && !e->pending)
            return -EBUSY; /* delivered, not acknowledged */
    } else {
        e = RB_FIND(qtree, &q->pending, &probe);
    }
    if (e) {
        tree_remove(q, e);
        q->npending--;
        *out = e;
        return 0;
    }
    struct gone *g;
    HASH_FIND(hh, q->gone, &k.seq, sizeof(uint64_t), g);
    if (g || !maybe_store_only(q, k))
        return -ENOENT;
    struct take_ctx x = {.k = k};
    struct buf key = {0};
    buf_append(&key, buf_head(&q->kprefix), buf_used(&q->kprefix));
    jkey_msg_suffix(&key, pm.priority, k.seq);
    int rc = store_page(buf_head(&q->kprefix), buf_used(&q->kprefix), buf_head(&key), buf_used(&key), take_one, &x);
    buf_free(&key);
    if (rc != 0 || !x.found)
        return rc != 0 ? rc : -ENOENT;
    if (!x.m)
        return -EIO;
    x.m->journaled = true;
    e = entry_new(q, x.m);
    msg_unref(x.m);
    e->redeliveries = x.deliveries;
    q->npending--;
    *out = e;
    return 0;
}

void queue_put_back(struct qentry *e)
{
    struct queue *q = e->q;
    q->npending++;
    add_pending(q, e);
    if (q->nconsumers)
        queue_mark_dirty(q);
}
