/* Journaling broker changes. Entries get their lsn here, in the order the
 * loop makes them; the store thread makes them durable in that order and
 * reports back, which releases the ops waiting in commit.c. Whether this
 * node journals at all (it does as master or standalone) is node.c's
 * decision; rebuilding from the store is recovery.c's. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stompd/commit.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/dup.h"
#include "stompd/durable.h"
#include "stompd/journal.h"
#include "stompd/log.h"
#include "stompd/msg.h"
#include "stompd/persist.h"
#include "stompd/queue.h"
#include "stompd/quorum.h"
#include "stompd/repl.h"
#include "stompd/sched.h"
#include "stompd/selector.h"
#include "stompd/server.h"
#include "stompd/store.h"
#include "stompd/sub.h"
#include "stompd/topic.h"

static bool enabled;
static bool failed;
static bool opened;
static uint64_t last_lsn;
static uint64_t epoch;
static struct journal_builder lazy, batch;
static bool in_batch;
static bool replicated;
static char describe[4500] = "memory";
static char sync_modes[128];
static unsigned modes;
static uint64_t last_epoch; /* epoch of the entry at last_lsn */
static struct journal_tip last_tip; /* and its journal_checksum */

const char *persist_sync_modes(void)
{
    return sync_modes;
}

bool persist_replicated(void)
{
    return replicated;
}

uint64_t persist_epoch(void)
{
    return epoch;
}

bool persist_enabled(void)
{
    return enabled;
}

bool persist_failed(void)
{
    return failed;
}

const char *persist_describe(void)
{
    return describe;
}

uint64_t persist_last_lsn(void)
{
    return last_lsn;
}


/* Acks no one waits for (ACK frames without a receipt) wait in the loop
 * up to store.ack_delay, or until this many bytes gather, for an entry
 * that must be written now to carry them: a producer and a client-ack
 * consumer in step then make two entries per message (the SEND's, with
 * the previous ACK at its head, and the delivery mark), not three, and
 * on a replicated store as many ENTRIES frames to each slave and ACKs
 * back. Until they are appended a crash forgets them, as it forgets an
 * ACK the broker has not read yet: the message comes back marked
 * redelivered (its delivery mark was journaled before it left). What a
 * delivery waits for goes in the same round (coalesce_due): its delivery
 * mark, which holds the consumer's output, and an auto-ack delivery's
 * dequeue (persist_auto_acked), which has no mark and must be
 * journaled before the MESSAGE leaves. */
#define COALESCE_BYTES (64 << 10)
static ev_timer coalesce_timer; /* armed while they wait */
static bool coalesce_due;       /* it ran out, or a delivery waits for them */

static void coalesce_reset(void)
{
    coalesce_due = false;
    if (ev_is_active(&coalesce_timer))
        ev_timer_stop(srv.loop, &coalesce_timer);
}

/* The deliveries held for the coalesced ops wait for entry lsn. Where
 * no slave's copy counts, an auto-ack delivery's dequeue is shipped once
 * the local log has it: the writer says so before its fdatasync. */
static void assign_holds(uint64_t lsn)
{
    if ((commit_hold_assign(lsn) & HOLD_SHIPPED) && lsn && !repl_master_waits_for_slaves() &&
        store_want_written(lsn))
        commit_shipped(lsn); /* released before this round's output goes */
}

/* sync: a producer, a receipt or a waiting op needs this entry on disk. */
static uint64_t append(struct journal_builder *jb, bool sync)
{
    size_t len;
    uint64_t lsn = ++last_lsn;
    last_epoch = epoch;
    if (jb == &lazy)
        coalesce_reset(); /* the coalesced ops waiting went with it */
    char *data = jb_finish(jb, epoch, lsn, &len);
    journal_tip_set(&last_tip, data, len);
    /* the replication stream copies it before the store takes it over */
    repl_master_append(lsn, data, len, sync);
    store_append(lsn, data, len, sync);
    return lsn;
}

static void persist_flush_lazy(bool sync)
{
    if (enabled && !jb_empty(&lazy))
        append(&lazy, sync);
}

/* The entry that carries the ops journaled so far, or a later one: the
 * coalesced ops waiting go first in the next entry, a batch's included
 * (persist_batch_end), and the open batch's after them, unless an entry
 * of persist_dlq_move's comes between (a delivery's mark is made in an
 * earlier callback than the one that returns it, so it is not in the
 * batch: a NACK answers a MESSAGE the client has seen). */
uint64_t persist_journaled_by(void)
{
    return last_lsn + (enabled && !jb_empty(&lazy)) + (in_batch && !jb_empty(&batch));
}

uint64_t persist_flush(void)
{
    persist_flush_lazy(true);
    assign_holds(last_lsn);
    return last_lsn;
}

static void coalesce_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    /* the loop's round (persist_flush_coalesced) runs next */
    coalesce_due = true;
}

bool persist_flush_coalesced(void)
{
    /* a delivery held for ops a SEND's entry took (coalesce_reset) learns
     * its entry here, with these */
    if (enabled && !jb_empty(&lazy) && !coalesce_due && config.ack_delay > 0 &&
        buf_used(&lazy.b) < COALESCE_BYTES && !commit_holds_unassigned()) {
        /* a timer, not a timestamp: the monotonic clock, whatever the
         * wall clock does meanwhile */
        if (!ev_is_active(&coalesce_timer)) {
            ev_timer_set(&coalesce_timer, (double)config.ack_delay / 1000.0, 0.);
            ev_timer_start(srv.loop, &coalesce_timer);
        }
        return false;
    }
    /* acks and delivery marks: written with the next group, fsynced by the
     * next entry that must be */
    persist_flush_lazy(false);
    coalesce_reset(); /* also when there was nothing to append */
    assign_holds(last_lsn);
    return true;
}

/* Ops that need an entry now. The coalesced ops waiting (acks, delivery
 * marks) go first in the same entry, so entries stay in the order the
 * broker made the changes and a message sent while consumers ack costs
 * one entry, not two. */
static struct journal_builder *imm_begin(void)
{
    return in_batch ? &batch : &lazy;
}

static void imm_end(struct journal_builder *jb)
{
    if (jb == &lazy)
        append(jb, true);
}

static struct journal_builder *coalesced(void)
{
    return in_batch ? &batch : &lazy;
}

void persist_batch_begin(void)
{
    in_batch = enabled;
}

uint64_t persist_batch_end(void)
{
    if (!in_batch)
        return 0;
    in_batch = false;
    if (jb_empty(&batch))
        return 0;
    persist_flush_lazy(false);
    uint64_t lsn = append(&batch, true);
    /* deliveries marked in the batch wait for the batch */
    assign_holds(lsn);
    /* and scheduled jobs added or removed in it learn their entry */
    sched_batch_closed(lsn);
    return lsn;
}

static bool msg_journaled(const struct qentry *e)
{
    return enabled && e->msg->journaled;
}

static void store_grows(uint64_t bytes);

struct targets {
    struct target {
        uint64_t serial;
        const struct durable *du;
    } *v;
    uint32_t n, cap;
};

static void add_target(struct durable *du, void *arg)
{
    struct targets *t = arg;
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->v = realloc(t->v, t->cap * sizeof *t->v);
        if (!t->v)
            abort();
    }
    t->v[t->n++] = (struct target){du->serial, du};
}

static int by_serial(const void *a, const void *b)
{
    const struct target *x = a, *y = b;
    return x->serial < y->serial ? -1 : x->serial > y->serial;
}

bool persist_enqueue(struct dest *d, struct msg *m, const char *dup_id)
{
    if (!enabled || dest_is_temp(d))
        return false;
    const char **names = NULL;
    uint32_t n = 0;
    if (!dest_is_queue(d)) {
        /* the durable subscriptions it reaches, those of every wildcard
         * topic that matches it included */
        struct targets t = {NULL, 0, 0};
        topic_foreach_durable(d, add_target, &t);
        if (t.n == 0) {
            free(t.v);
            return false;
        }
        /* in creation order, as durable_publish walks each topic's list */
        qsort(t.v, t.n, sizeof *t.v, by_serial);
        names = malloc(2 * t.n * sizeof *names);
        uint64_t *named = malloc(t.n * sizeof *named);
        if (!names || !named)
            abort();
        /* Named: what the selector accepts, and what the budget could
         * not judge yet (judged on the backlog, before delivery). The
         * commit gives the backlogs exactly these (durable_publish). */
        for (uint32_t i = 0; i < t.n; i++) {
            const struct durable *du = t.v[i].du;
            if (!durable_may_read(du, d->name))
                continue;
            enum sub_verdict v = sub_select(du->sel, m);
            if (v == SUB_NO)
                continue;
            names[2 * n] = du->client_id;
            names[2 * n + 1] = du->name;
            named[n] = du->serial << 1 | (v == SUB_LATER);
            n++;
        }
        free(t.v);
        free(m->jdurables);
        m->jdurables = named;
        m->njdurables = n;
        m->jdurables_judged = true;
        if (n == 0) {
            free(names);
            return false;
        }
    }
    struct journal_builder *jb = imm_begin();
    jb_enqueue(jb, d->name, names, n, dup_id, m);
    imm_end(jb);
    free(names);
    m->journaled = true;
    /* in a batch the entry gets its lsn at the end: later than this */
    m->lsn = in_batch ? UINT64_MAX : last_lsn;
    store_grows(m->size);
    return true;
}

bool persist_dequeue(struct qentry *e)
{
    if (!msg_journaled(e))
        return false;
    if (e->q->durable)
        jb_dequeue_sub(coalesced(), e->q->durable->client_id, e->q->durable->name, e->msg->priority, e->msg->seq);
    else if (dest_is_queue(e->q->dest))
        jb_dequeue(coalesced(), e->q->dest->name, e->msg->priority, e->msg->seq);
    else
        return false;
    return true;
}

/* The dequeue is appended in this round, and the MESSAGE waits until it
 * is shipped (assign_holds). A master whose modes wait for slaves ships
 * it to them in the same round, before the clients' output (before_sleep),
 * unless their sockets are full, so a new master has it. A standalone
 * node's log is its only copy (as a master's that waits for no slave),
 * and its writer may be busy with an earlier group: the MESSAGE waits for
 * the store's write (the OS holds it: what a kill -9 cannot take back),
 * not for its fdatasync. */
enum hold_kind persist_auto_acked(struct qentry *e)
{
    if (!persist_dequeue(e))
        return HOLD_NONE;
    coalesce_due = true;
    return HOLD_SHIPPED;
}

uint64_t persist_given_back(struct queue *q, struct msg *m, uint32_t redeliveries)
{
    if (!enabled || failed || !m->journaled)
        return 0;
    struct journal_builder *jb = imm_begin(); /* after its dequeue, coalesced or appended */
    if (q->durable) {
        const char *target[2] = {q->durable->client_id, q->durable->name};
        jb_enqueue(jb, q->dest->name, target, 1, NULL, m);
        if (redeliveries)
            jb_delivered(jb, KEY_T, q->durable->client_id, q->durable->name, m->priority, m->seq, redeliveries);
    } else if (dest_is_queue(q->dest)) {
        jb_enqueue(jb, q->dest->name, NULL, 0, NULL, m);
        if (redeliveries)
            jb_delivered(jb, KEY_Q, q->dest->name, "", m->priority, m->seq, redeliveries);
    } else {
        return 0;
    }
    imm_end(jb);
    store_grows(m->size);
    return persist_journaled_by();
}

bool persist_delivered(struct qentry *e)
{
    if (!msg_journaled(e))
        return false;
    if (e->q->durable)
        jb_delivered(coalesced(), KEY_T, e->q->durable->client_id, e->q->durable->name, e->msg->priority, e->msg->seq,
                     e->redeliveries + 1);
    else if (dest_is_queue(e->q->dest))
        jb_delivered(coalesced(), KEY_Q, e->q->dest->name, "", e->msg->priority, e->msg->seq, e->redeliveries + 1);
    else
        return false;
    coalesce_due = true; /* the consumer's output waits for it (commit_hold) */
    return true;
}

bool persist_durable_created(struct durable *d)
{
    if (!enabled)
        return false;
    struct journal_builder *jb = imm_begin();
    jb_sub_create(jb, d->client_id, d->name, d->dest->name, d->selector, d->reader_key);
    imm_end(jb);
    return true;
}

bool persist_durable_deleted(struct durable *d)
{
    if (!enabled)
        return false;
    struct journal_builder *jb = imm_begin();
    jb_sub_delete(jb, d->client_id, d->name);
    imm_end(jb);
    return true;
}

uint64_t persist_dlq_move(struct qentry *e, struct msg *copy)
{
    if (!enabled || (!copy->persistent && !e->msg->journaled))
        return 0;
    /* one entry, after the coalesced ops waiting */
    struct journal_builder *jb = &lazy;
    if (e->msg->journaled) {
        if (e->q->durable)
            jb_dequeue_sub(jb, e->q->durable->client_id, e->q->durable->name, e->msg->priority, e->msg->seq);
        else if (dest_is_queue(e->q->dest))
            jb_dequeue(jb, e->q->dest->name, e->msg->priority, e->msg->seq);
    }
    if (copy->persistent) {
        jb_enqueue(jb, copy->dest, NULL, 0, NULL, copy);
        copy->journaled = true;
    }
    uint64_t lsn = append(jb, false);
    copy->lsn = lsn;
    return lsn;
}

void persist_purge(struct dest *d)
{
    if (!enabled || !dest_is_queue(d) || dest_is_temp(d))
        return;
    struct journal_builder *jb = imm_begin();
    jb_purge(jb, d->name);
    imm_end(jb);
}

bool persist_dest_kept(struct dest *d)
{
    if (!enabled || dest_is_temp(d))
        return false;
    struct journal_builder *jb = imm_begin();
    jb_dest_keep(jb, d->name);
    imm_end(jb);
    return true;
}

void persist_dest_forgotten(struct dest *d)
{
    if (!enabled || dest_is_temp(d))
        return;
    struct journal_builder *jb = imm_begin();
    jb_dest_forget(jb, d->name);
    imm_end(jb);
}

uint64_t persist_sched_add(const char *id, int64_t due, const char *dup_id, struct msg *m)
{
    if (!enabled)
        return 0;
    struct journal_builder *jb = imm_begin();
    jb_sched_add(jb, id, due, dup_id, m);
    imm_end(jb);
    store_grows(m->size);
    return in_batch ? UINT64_MAX : last_lsn;
}

uint64_t persist_sched_del(const char *id, int64_t due, uint8_t prio, uint64_t seq)
{
    if (!enabled)
        return 0;
    struct journal_builder *jb = imm_begin();
    jb_sched_del(jb, id, due, prio, seq);
    imm_end(jb);
    return in_batch ? UINT64_MAX : last_lsn;
}

void persist_dup_forget(const char *dup_id)
{
    if (enabled)
        jb_dup_forget(coalesced(), dup_id);
}

/* ------------------------------------------------------------ store events */

/* The store made entries durable up to lsn: a master counts it toward
 * its quorum, a standalone node commits, a follower acknowledges. */
static void on_durable(uint64_t lsn)
{
    if (repl_master_running())
        repl_master_local_done(lsn);
    else if (enabled)
        commit_advance(lsn);
    else
        repl_slave_store_done(lsn);
}

/* The local log has entries up to lsn: auto-ack deliveries whose dequeue
 * no slave's copy vouches for may leave (HOLD_SHIPPED). */
static void on_written(uint64_t lsn)
{
    if (enabled && !repl_master_waits_for_slaves())
        commit_shipped(lsn);
}

static void stop_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    server_stop();
}

static ev_timer stop_timer;

static void on_fail(uint64_t lsn, const char *why)
{
    log_err("the store failed at journal entry %" PRIu64 ": %s", lsn, why);
    log_err("nothing more can be made durable: refusing persistent messages and stopping the broker");
    failed = true;
    srv.store_failed = true;
    srv.exit_code = 1;
    /* Output held for the local log would never go. What a slave was
     * handed (shipped before the local write, so a new master reads it)
     * goes: at worst delivered again, unmarked, never lost. No slave gets
     * more of the entries from lsn on, and the rest is dropped: its
     * messages were never dequeued in any store. (Holds for entries
     * before lsn wait as they did: those are written.) */
    repl_master_freeze(lsn ? lsn - 1 : 0);
    uint64_t handed = repl_master_handed();
    commit_hold_release_upto(handed);
    commit_holds_fail_from(handed >= lsn ? handed + 1 : lsn, why);
    commit_fail_from(lsn, why);
    /* Give the producers' ERROR frames a moment to leave, then stop (a
     * test that acts in that moment can make it longer) */
    const char *ms = getenv("STOMPD_TEST_FAIL_STOP_MS");
    ev_timer_init(&stop_timer, stop_cb, ms ? atoi(ms) / 1000.0 : 0.5, 0.);
    ev_timer_start(srv.loop, &stop_timer);
}

/* ------------------------------------------------------------ open/close */

int persist_open(char *err, size_t errlen)
{
    ev_timer_init(&coalesce_timer, coalesce_cb, 0., 0.);
    jb_init(&lazy);
    jb_init(&batch);
    if (strcmp(config.store_type, "memory") == 0) {
        log_warn("store.type = memory: persistent messages are kept in memory only and lost when the broker stops");
        snprintf(describe, sizeof describe, "memory");
        return 0;
    }
    replicated = strcmp(config.store_type, "replicated-leveldb") == 0;
    snprintf(sync_modes, sizeof sync_modes, "%s",
             config.store_sync[0] ? config.store_sync : replicated ? "quorum_mem" : "local_disk");
    char e2[256];
    /* config_validate checked the mode at start */
    if (quorum_parse_modes(sync_modes, &modes, e2, sizeof e2) != 0) {
        snprintf(err, errlen, "store.sync: %s", e2);
        return -EINVAL;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/store", config.data_dir);
    struct store_limits lim = {
        .segment_bytes = (uint64_t)config.segment_size,
        .retention = (uint64_t)config.store_retention,
        .keep_journal = replicated,
    };
    int rc = store_open(dir, &lim, err, errlen);
    if (rc)
        return rc;
    opened = true;
    const struct store_info *si = store_info();
    last_lsn = si->applied_lsn;
    epoch = last_epoch = si->epoch;
    journal_tip_reset(&last_tip, si->tip_sum);
    commit_reset(last_lsn);
    snprintf(describe, sizeof describe, "%s %s (sync %s)", config.store_type, dir, sync_modes);
    return 0;
}

bool persist_has_store(void)
{
    return opened;
}

static bool store_full;
/* What the store will take once it has written what it was handed: its
 * size when last measured plus the messages journaled since, so that a
 * burst of sends stops at the limit, not one writer round past it. */
static uint64_t store_estimate;

bool persist_store_full(void)
{
    return store_full;
}

/* The store's writer may fall behind what is journaled: where receipts do
 * not wait for the local disk (local_mem, quorum_mem), or with enough
 * producers pipelining, a disk slower than they are would otherwise hold
 * every message it has not yet written in memory. Once store.repl_window
 * bytes wait for it, persistent producers wait as they do at
 * broker.store_limit, until half are written (as a slave stops reading
 * its master, repl_slave.c). */
static bool writer_behind;
static uint64_t writer_waits;

static void writer_resume(void)
{
    if (!writer_behind)
        return;
    writer_behind = false;
    if (!store_full)
        op_store_free();
}

/* The writer freed enough when it last wrote; but producers that had not
 * yet heard of the wait may have added a message each since, so look
 * again before everyone goes on (else they all go on from above the
 * window, and the queue reaches twice it). */
static void writer_caught_up(void)
{
    uint64_t below = (uint64_t)config.repl_window / 2;
    if (writer_behind && store_queued() > below && !store_wait_room(below, writer_caught_up))
        return;
    writer_resume();
}

bool persist_store_wait(void)
{
    if (store_full || writer_behind)
        return true;
    uint64_t limit = (uint64_t)config.repl_window;
    if (!opened || store_queued() < limit)
        return false;
    if (store_wait_room(limit / 2, writer_caught_up))
        return false;
    writer_waits++;
    writer_behind = true;
    log_debug("store: %" PRIu64 " bytes wait for the writer (store.repl_window): producers of persistent "
              "messages wait", store_queued());
    return true;
}

uint64_t persist_writer_waits(void)
{
    return writer_waits;
}

static void store_now_full(void)
{
    store_full = true;
    log_warn("store: about %" PRIu64 " bytes on disk, at broker.store_limit (%" PRIu64 "): producers of persistent "
             "messages wait until consumers free room", store_estimate, (uint64_t)config.store_limit);
}

static void store_grows(uint64_t bytes)
{
    store_estimate += bytes;
    if (!store_full && store_estimate >= (uint64_t)config.store_limit)
        store_now_full();
}

void persist_check_store_room(void)
{
    if (!opened)
        return;
    uint64_t bytes = store_bytes(), limit = (uint64_t)config.store_limit;
    store_estimate = bytes;
    if (!store_full && bytes >= limit) {
        store_now_full();
    } else if (store_full && bytes < limit / 10 * 9) {
        store_full = false;
        log_info("store: %" PRIu64 " bytes on disk, below 90%% of broker.store_limit: producers go on", bytes);
        if (!writer_behind)
            op_store_free();
    }
}

unsigned persist_modes(void)
{
    return modes;
}

int persist_start_store(bool sync, char *err, size_t errlen)
{
    store_on_written(on_written);
    return store_start(srv.loop, sync, on_durable, on_fail, err, errlen);
}

void persist_begin(uint64_t new_epoch)
{
    epoch = new_epoch;
    enabled = opened;
}

void persist_set_position(uint64_t lsn, uint64_t lsn_epoch, uint64_t sum)
{
    last_lsn = lsn;
    last_epoch = lsn_epoch;
    journal_tip_reset(&last_tip, sum);
    commit_reset(lsn);
}

void persist_end(void)
{
    /* Nothing more is journaled or shipped from here on, not even what
     * closing the clients would record (returned messages, dead letters). */
    enabled = false;
    jb_free(&lazy);
    jb_free(&batch);
    in_batch = false;
    coalesce_reset();
    /* A slave's own wait will replace this one (repl_slave.c): what
     * waited for the writer goes on now. */
    writer_resume();
}

uint64_t persist_position(uint64_t *e)
{
    if (enabled || !repl_slave_running()) {
        if (e)
            *e = last_epoch;
        return last_lsn;
    }
    return repl_slave_position(e);
}

uint64_t persist_position_sum(void)
{
    return enabled || !repl_slave_running() ? journal_tip_sum(&last_tip) : repl_slave_tip_sum();
}

void persist_settle(void)
{
    if (!enabled)
        return;
    /* An auto-ack delivery held for its dequeue to reach a slave (the
     * handover is over: none will) is not sent now to a connection about
     * to close: given back, in the journal, so no log loses it, nor does a
     * failover send it twice; unless a RECEIPT follows it (a producer's,
     * that must not be lost: helper-114), and it all goes as before. Where
     * the local log is enough, it is written below, and the MESSAGE goes. */
    if (!failed && repl_master_waits_for_slaves())
        commit_holds_give_back(false);
    persist_flush();
    repl_master_flush(); /* the slaves first, as far as their sockets take it */
    store_drain();
    store_report_now(); /* what the writer did: commits, writes, or its failure */
    if (failed) {
        /* what a slave was handed since the failure (the entries the
         * local log wrote before it) goes, as on_fail let go of what was
         * handed before; the rest stays held, and goes with its
         * connection */
        commit_hold_release_upto(repl_master_handed());
        return;
    }
    /* Everything journaled is in the log: the deliveries still held go (a
     * client-ack one's delivery mark not on a quorum: at worst it comes
     * again marked redelivered though never seen; an auto-ack one a
     * RECEIPT follows: at worst it comes again unmarked after a failover) */
    commit_hold_release_upto(UINT64_MAX);
}

const char *persist_handed_over(void)
{
    if (!enabled)
        return "no store";
    if (failed)
        return "the store failed";
    if (!repl_master_waits_for_slaves())
        return "no slave to wait for";
    if (!repl_master_quorum_connected())
        return "too few slaves connected for a quorum";
    if (commit_lsn() >= last_lsn && !commit_holds_any())
        return "the slaves have every entry journaled";
    return NULL;
}

void persist_close(void)
{
    persist_flush();
    if (opened) {
        store_close();
        opened = false;
    }
    enabled = false;
    jb_free(&lazy);
    jb_free(&batch);
    journal_tip_reset(&last_tip, journal_tip_sum(&last_tip)); /* settled, the copy freed */
}
