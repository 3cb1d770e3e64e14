/* Journaling broker changes and rebuilding the broker from the store at
 * start. Entries get their lsn here, in the order the loop makes them;
 * the store thread makes them durable in that order and reports back,
 * which releases the ops waiting in commit.c. */
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
#include "stompd/selector.h"
#include "stompd/server.h"
#include "stompd/store.h"
#include "stompd/sub.h"

static bool enabled;
static bool failed;
static bool opened;
static uint64_t last_lsn;
static uint64_t epoch;
static uint64_t generation;
static struct journal_builder lazy, batch, imm_jb;
static bool in_batch;
static bool replicated;
static char describe[4500] = "memory";
static char sync_modes[128];
static unsigned modes;
static uint64_t last_epoch; /* epoch of the entry at last_lsn */
static uint64_t last_sum;   /* and its journal_checksum (0: unknown) */

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

uint64_t persist_generation(void)
{
    return generation;
}

/* sync: a producer, a receipt or a waiting op needs this entry on disk. */
static uint64_t append(struct journal_builder *jb, bool sync)
{
    size_t len;
    uint64_t lsn = ++last_lsn;
    last_epoch = epoch;
    char *data = jb_finish(jb, epoch, lsn, &len);
    last_sum = journal_checksum(data, len);
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

uint64_t persist_flush(void)
{
    persist_flush_lazy(true);
    conn_hold_assign(last_lsn);
    return last_lsn;
}

void persist_flush_coalesced(void)
{
    /* acks and delivery marks: written with the next group, fsynced by the
     * next entry that must be (they survive a broker crash at once) */
    persist_flush_lazy(false);
    conn_hold_assign(last_lsn);
}

/* Ops that need their own entry now: coalesced ones go first so entries
 * stay in the order the broker made the changes. */
static struct journal_builder *imm_begin(void)
{
    generation++;
    if (in_batch)
        return &batch;
    persist_flush_lazy(false);
    return &imm_jb;
}

static void imm_end(struct journal_builder *jb)
{
    if (jb == &imm_jb)
        append(jb, true);
}

static struct journal_builder *coalesced(void)
{
    generation++;
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
    conn_hold_assign(lsn);
    return lsn;
}

static bool msg_journaled(const struct qentry *e)
{
    return enabled && e->msg->journaled;
}

bool persist_enqueue(struct dest *d, struct msg *m, const char *dup_id)
{
    if (!enabled || dest_is_temp(d))
        return false;
    const char **targets = NULL;
    uint32_t n = 0;
    if (!dest_is_queue(d)) {
        if (d->ndurables == 0)
            return false;
        targets = malloc(2 * d->ndurables * sizeof *targets);
        if (!targets)
            abort();
        struct durable *du;
        TAILQ_FOREACH(du, &d->durables, topic_link) {
            if (du->sel) {
                struct sub probe = {.sel = du->sel};
                if (!sub_matches(&probe, m))
                    continue;
            }
            targets[2 * n] = du->client_id;
            targets[2 * n + 1] = du->name;
            n++;
        }
        if (n == 0) {
            free(targets);
            return false;
        }
    }
    struct journal_builder *jb = imm_begin();
    jb_enqueue(jb, d->name, targets, n, dup_id, m);
    imm_end(jb);
    free(targets);
    m->journaled = true;
    return true;
}

void persist_dequeue(struct qentry *e)
{
    if (!msg_journaled(e))
        return;
    if (e->q->durable)
        jb_dequeue_sub(coalesced(), e->q->durable->client_id, e->q->durable->name, e->msg->seq);
    else if (dest_is_queue(e->q->dest))
        jb_dequeue(coalesced(), e->q->dest->name, e->msg->seq);
}

bool persist_delivered(struct qentry *e)
{
    if (!msg_journaled(e))
        return false;
    if (e->q->durable)
        jb_delivered(coalesced(), KEY_T, e->q->durable->client_id, e->q->durable->name, e->msg->seq,
                     e->redeliveries + 1);
    else if (dest_is_queue(e->q->dest))
        jb_delivered(coalesced(), KEY_Q, e->q->dest->name, "", e->msg->seq, e->redeliveries + 1);
    else
        return false;
    return true;
}

void persist_durable_created(struct durable *d)
{
    if (!enabled)
        return;
    struct journal_builder *jb = imm_begin();
    jb_sub_create(jb, d->client_id, d->name, d->dest->name, d->selector);
    imm_end(jb);
}

void persist_durable_deleted(struct durable *d)
{
    if (!enabled)
        return;
    struct journal_builder *jb = imm_begin();
    jb_sub_delete(jb, d->client_id, d->name);
    imm_end(jb);
}

uint64_t persist_dlq_move(struct qentry *e, struct msg *copy)
{
    if (!enabled || (!copy->persistent && !e->msg->journaled))
        return 0;
    generation++;
    persist_flush_lazy(false);
    struct journal_builder *jb = &imm_jb;
    if (e->msg->journaled) {
        if (e->q->durable)
            jb_dequeue_sub(jb, e->q->durable->client_id, e->q->durable->name, e->msg->seq);
        else if (dest_is_queue(e->q->dest))
            jb_dequeue(jb, e->q->dest->name, e->msg->seq);
    }
    if (copy->persistent) {
        jb_enqueue(jb, copy->dest, NULL, 0, NULL, copy);
        copy->journaled = true;
    }
    return append(jb, false);
}

void persist_purge(struct dest *d)
{
    if (!enabled || !dest_is_queue(d) || dest_is_temp(d))
        return;
    struct journal_builder *jb = imm_begin();
    jb_purge(jb, d->name);
    imm_end(jb);
}

void persist_dup_forget(const char *dup_id)
{
    if (enabled)
        jb_dup_forget(coalesced(), dup_id);
}

/* ------------------------------------------------------------ store events */

static void on_durable(uint64_t lsn)
{
    switch (srv.role) {
    case ROLE_MASTER:
        repl_master_local_done(lsn);
        break;
    case ROLE_SLAVE:
    case ROLE_ELECTING:
        repl_slave_store_done(lsn);
        break;
    case ROLE_STANDALONE:
        commit_advance(lsn);
        break;
    }
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
    srv.exit_code = 1;
    commit_fail_from(lsn, why);
    /* Give the producers' ERROR frames a moment to leave, then stop. */
    ev_timer_init(&stop_timer, stop_cb, 0.5, 0.);
    ev_timer_start(srv.loop, &stop_timer);
}

/* ------------------------------------------------------------ recovery */

struct redelivery {
    char *key;
    size_t len;
    uint32_t count;
    UT_hash_handle hh;
};

struct recovery {
    struct redelivery *r;
    uint64_t max_seq;
    uint64_t messages;
    uint64_t bad;
};

static uint32_t redeliveries_of(struct recovery *rc, const char *k, size_t kl)
{
    struct redelivery *r;
    HASH_FIND(hh, rc->r, k, kl, r);
    return r ? r->count : 0;
}

static int scan_r(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    struct recovery *rc = ctx;
    if (vl != 4)
        return 0;
    struct redelivery *r = calloc(1, sizeof *r);
    if (!r || !(r->key = malloc(kl - 1)))
        abort();
    memcpy(r->key, k + 1, kl - 1);
    r->len = kl - 1;
    const uint8_t *u = (const uint8_t *)v;
    r->count = (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
    HASH_ADD_KEYPTR(hh, rc->r, r->key, r->len, r);
    return 0;
}

static int scan_s(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    struct recovery *rc = ctx;
    const char *cid = k + 1;
    const char *nul = memchr(cid, '\0', kl - 1);
    if (!nul || vl < 8) {
        rc->bad++;
        return 0;
    }
    char *client_id = strndup(cid, (size_t)(nul - cid));
    char *name = strndup(nul + 1, kl - 1 - (size_t)(nul - cid) - 1);
    /* value: u32 length + topic, u32 length + selector */
    const uint8_t *u = (const uint8_t *)v;
    uint32_t l1 = (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
    if (4 + (size_t)l1 + 4 > vl) {
        rc->bad++;
        goto out;
    }
    char *topic = strndup(v + 4, l1);
    u = (const uint8_t *)v + 4 + l1;
    uint32_t l2 = (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
    if (8 + (size_t)l1 + l2 != vl) {
        rc->bad++;
        free(topic);
        goto out;
    }
    char *seltext = l2 ? strndup(v + 8 + l1, l2) : NULL;
    struct selector *sel = NULL;
    char err[256];
    const char *derr;
    struct dest *d = dest_get(topic, NULL, &derr);
    if (!d || (seltext && selector_compile(seltext, &sel, err, sizeof err) != 0)) {
        log_warn("store: durable subscription %s/%s on %s cannot be restored", client_id, name, topic);
        rc->bad++;
    } else {
        durable_restore(d, client_id, name, seltext, sel);
    }
    free(seltext);
    free(topic);
out:
    free(client_id);
    free(name);
    return 0;
}

static void restore(struct recovery *rc, struct queue *q, struct msg *m, const char *k, size_t kl)
{
    m->journaled = true;
    if (m->seq > rc->max_seq)
        rc->max_seq = m->seq;
    queue_push_recovered(q, m, redeliveries_of(rc, k, kl));
    msg_unref(m);
    rc->messages++;
}

static int scan_q(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    struct recovery *rc = ctx;
    struct msg *m = journal_decode_msg(v, vl);
    const char *err;
    struct dest *d = m ? dest_get(m->dest, NULL, &err) : NULL;
    if (!m || !d || !dest_is_queue(d)) {
        rc->bad++;
        msg_unref(m);
        return 0;
    }
    restore(rc, &d->q, m, k, kl);
    return 0;
}

static int scan_t(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    struct recovery *rc = ctx;
    const char *cid = k + 1;
    const char *n1 = memchr(cid, '\0', kl - 1);
    const char *name = n1 ? n1 + 1 : NULL;
    const char *n2 = name ? memchr(name, '\0', (size_t)(k + kl - name)) : NULL;
    struct msg *m = journal_decode_msg(v, vl);
    if (!n2 || !m) {
        rc->bad++;
        msg_unref(m);
        return 0;
    }
    char *c = strndup(cid, (size_t)(n1 - cid)), *nm = strndup(name, (size_t)(n2 - name));
    struct durable *du = durable_find(c, nm);
    free(c);
    free(nm);
    if (!du) {
        rc->bad++;
        msg_unref(m);
        return 0;
    }
    restore(rc, &du->q, m, k, kl);
    return 0;
}

static int scan_d(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    if (vl == 8)
        dup_restore(k + 1, kl - 1, jkey_get_be64(v));
    return 0;
}

static int recover(char *err, size_t errlen)
{
    struct recovery rc = {0};
    char p;
    int r = 0;
    p = KEY_R;
    r |= store_scan(&p, 1, scan_r, &rc);
    p = KEY_S;
    r |= store_scan(&p, 1, scan_s, &rc);
    p = KEY_Q;
    r |= store_scan(&p, 1, scan_q, &rc);
    p = KEY_T;
    r |= store_scan(&p, 1, scan_t, &rc);
    p = KEY_D;
    r |= store_scan(&p, 1, scan_d, &rc);
    struct redelivery *x, *tmp;
    HASH_ITER(hh, rc.r, x, tmp) {
        HASH_DEL(rc.r, x);
        free(x->key);
        free(x);
    }
    if (r) {
        snprintf(err, errlen, "cannot read the store during recovery");
        return -EIO;
    }
    dup_restored();
    if (rc.max_seq > srv.next_msg_seq)
        srv.next_msg_seq = rc.max_seq;
    if (rc.bad)
        log_warn("store: %" PRIu64 " records could not be restored (see above)", rc.bad);
    log_info("store: recovered %" PRIu64 " messages, %zu destinations, %zu durable subscriptions (journal at lsn %" PRIu64 ")",
             rc.messages, dest_count(), durable_count(), last_lsn);
    return 0;
}

/* ------------------------------------------------------------ open/close */

static int open_store(char *err, size_t errlen)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/store", config.data_dir);
    int rc = store_open(dir, err, errlen);
    if (rc)
        return rc;
    opened = true;
    const struct store_info *si = store_info();
    last_lsn = si->applied_lsn;
    epoch = last_epoch = si->epoch;
    last_sum = si->tip_sum;
    commit_reset(last_lsn);
    store_set_retention((uint64_t)config.store_retention);
    store_set_keep_journal(strcmp(config.store_type, "replicated-leveldb") == 0);
    snprintf(describe, sizeof describe, "%s %s (sync %s)", config.store_type, dir, sync_modes);
    return 0;
}

/* Rebuild the broker from the store and start journaling as the one who
 * writes: standalone, or master of epoch new_epoch. */
static int start_writing(char *err, size_t errlen)
{
    enabled = true;
    /* Fault injection for the cluster tests: a rebuild from a big store,
     * which blocks the loop for this long, without having to fill one. */
    const char *slow = getenv("STOMPD_TEST_SLOW_REBUILD_MS");
    if (slow && atoi(slow) > 0)
        usleep((useconds_t)atoi(slow) * 1000);
    return recover(err, errlen);
}

/* A master by configuration (store.role = master) has no ZooKeeper to
 * hand it a fresh epoch, and "highest epoch seen + 1" gave two nodes that
 * had seen the same history the same number: two different journals under
 * one epoch, which (epoch, lsn) comparisons cannot tell apart. A manual
 * epoch is therefore the later of (highest seen + 1) and the wall clock in
 * milliseconds: two nodes made master at different times get different
 * epochs, and the one configured last gets the higher one, so the other
 * nodes (which may have seen either) follow it rather than fence it, as
 * the operator who configured it intends. (Tagging epochs with the node
 * id instead would make them unique too, but would order two masters of
 * one term by their ids: the slaves of the later one could refuse it.)
 * Two promotions in the same millisecond, or a clock far behind, can still
 * share an epoch: the entry checksum in HELLO catches a divergent tip then.
 * Epochs stay increasing, so fencing is unchanged. ZooKeeper mode keeps its
 * own counter, and a claim there takes an epoch above both the counter
 * and every epoch a member publishes, so a cluster moved from manual mode
 * to ZooKeeper mode goes on with increasing epochs. */
static uint64_t manual_epoch(uint64_t seen)
{
    int64_t now = server_now_ms();
    return now > 0 && (uint64_t)now > seen ? (uint64_t)now : seen + 1;
}

int persist_open(char *err, size_t errlen)
{
    jb_init(&lazy);
    jb_init(&batch);
    jb_init(&imm_jb);
    srv.role = ROLE_STANDALONE;
    if (strcmp(config.store_type, "memory") == 0) {
        log_warn("store.type = memory: persistent messages are kept in memory only and lost when the broker stops");
        snprintf(describe, sizeof describe, "memory");
        return 0;
    }
    replicated = strcmp(config.store_type, "replicated-leveldb") == 0;
    snprintf(sync_modes, sizeof sync_modes, "%s",
             config.store_sync[0] ? config.store_sync : replicated ? "quorum_mem" : "local_disk");
    char e2[256];
    if (quorum_parse_modes(sync_modes, &modes, e2, sizeof e2) != 0) {
        snprintf(err, errlen, "store.sync: %s", e2);
        return -EINVAL;
    }
    if (!replicated && (modes & ~(unsigned)(SYNC_LOCAL_MEM | SYNC_LOCAL_DISK))) {
        snprintf(err, errlen, "store.sync = %s needs store.type = replicated-leveldb (a standalone store has only "
                              "local_mem and local_disk)", sync_modes);
        return -EINVAL;
    }
    if (!replicated) {
        int rc = open_store(err, errlen);
        if (rc == 0)
            rc = start_writing(err, errlen);
        if (rc == 0)
            rc = store_start(srv.loop, quorum_master_sync(modes), on_durable, on_fail, err, errlen);
        return rc;
    }

    if (!strcmp(config.store_role, "auto")) {
        /* ZooKeeper decides: follow nobody until told */
        if (!config.zk_address[0]) {
            snprintf(err, errlen, "store.role = auto needs [zookeeper] address; without ZooKeeper set store.role "
                                  "to master or slave");
            return -EINVAL;
        }
        int rc = open_store(err, errlen);
        if (rc)
            return rc;
        srv.role = ROLE_ELECTING;
        rc = store_start(srv.loop, quorum_slaves_sync(modes), on_durable, on_fail, err, errlen);
        if (rc == 0)
            repl_slave_init(last_lsn, last_epoch, last_sum);
        return rc;
    }
    /* replicated-leveldb, role chosen by configuration (manual mode) */
    if (!strcmp(config.store_role, "slave") && !config.store_master[0]) {
        snprintf(err, errlen, "store.role = slave needs store.master = host:port (the master's store.bind)");
        return -EINVAL;
    }
    int rc = open_store(err, errlen);
    if (rc)
        return rc;
    if (!strcmp(config.store_role, "slave")) {
        srv.role = ROLE_SLAVE;
        rc = store_start(srv.loop, quorum_slaves_sync(modes), on_durable, on_fail, err, errlen);
        if (rc == 0)
            rc = repl_slave_start(config.store_master, err, errlen);
        return rc;
    }
    srv.role = ROLE_MASTER;
    const struct store_info *si = store_info();
    epoch = manual_epoch(si->max_epoch > si->epoch ? si->max_epoch : si->epoch);
    store_set_max_epoch(epoch);
    rc = start_writing(err, errlen);
    if (rc == 0)
        rc = store_start(srv.loop, quorum_master_sync(modes), on_durable, on_fail, err, errlen);
    if (rc == 0)
        rc = repl_master_start(epoch, err, errlen);
    return rc;
}

/* ------------------------------------------------------------ role changes (ZooKeeper mode) */

uint64_t persist_position(uint64_t *e)
{
    if (srv.role == ROLE_MASTER || srv.role == ROLE_STANDALONE) {
        if (e)
            *e = last_epoch;
        return last_lsn;
    }
    return repl_slave_position(e);
}

static uint64_t position_sum(void)
{
    return srv.role == ROLE_MASTER || srv.role == ROLE_STANDALONE ? last_sum : repl_slave_tip_sum();
}

int persist_become_master(uint64_t new_epoch, char *err, size_t errlen)
{
    /* Stop following first: a snapshot cut short is wiped (and the
     * position drops to 0) before anything is read from the store. */
    bool was_following = repl_slave_running();
    repl_slave_stop();
    uint64_t e;
    uint64_t lsn = repl_slave_position(&e);
    if (was_following && lsn == 0)
        /* an empty store, perhaps marked by an unfinished snapshot: it is
         * whole as it is (queued after the wipe, if there is one) */
        store_snapshot_installed(0, 0, 0);
    if (store_durable_lsn() < lsn || !store_drained()) {
        /* the tick tries again; recover() must read what was written */
        snprintf(err, errlen, "the store has not applied every received entry yet");
        return -EAGAIN;
    }
    uint64_t sum = repl_slave_tip_sum();
    last_lsn = lsn;
    last_epoch = e;
    last_sum = sum;
    epoch = new_epoch;
    store_set_max_epoch(new_epoch);
    commit_reset(lsn);
    store_set_sync(quorum_master_sync(modes));
    srv.role = ROLE_MASTER;
    int rc = start_writing(err, errlen);
    if (rc == 0)
        rc = repl_master_start(new_epoch, err, errlen);
    if (rc == 0)
        rc = server_listen_clients() == 0 ? 0 : -EADDRINUSE;
    if (rc)
        persist_stop_serving("could not start serving as master");
    return rc;
}

void persist_stop_serving(const char *why)
{
    if (srv.role != ROLE_MASTER)
        return;
    log_warn("stepping down as master: %s", why);
    /* Nothing more is journaled or shipped from here on, not even what
     * closing the clients would record (returned messages, dead letters). */
    enabled = false;
    repl_master_stop(why);
    jb_free(&lazy);
    jb_free(&batch);
    in_batch = false;
    server_close_clients(why);
    durable_free_all();
    dest_free_all();
    commit_free_all();
    dup_free_all();
    conn_hold_assign(0);
    srv.role = ROLE_ELECTING;
    store_set_sync(quorum_slaves_sync(modes));
    repl_slave_init(last_lsn, last_epoch, last_sum);
}

void persist_follow(const char *master_repl)
{
    if (srv.role == ROLE_MASTER)
        persist_stop_serving("another node is master");
    if (!repl_slave_running()) {
        uint64_t e;
        uint64_t lsn = persist_position(&e);
        repl_slave_init(lsn, e, position_sum());
    }
    srv.role = master_repl ? ROLE_SLAVE : ROLE_ELECTING;
    repl_slave_set_master(master_repl);
}

void persist_close(void)
{
    persist_flush();
    repl_master_stop("broker stopping");
    repl_slave_stop();
    if (opened) {
        store_close();
        opened = false;
    }
    enabled = false;
    jb_free(&lazy);
    jb_free(&batch);
    jb_free(&imm_jb);
}
