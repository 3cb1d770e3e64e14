/* LevelDB: the only file that includes leveldb/c.h. Opening and checking
 * the store, reads for recovery, and the writer thread that applies
 * journal entries in groups (one WriteBatch, one write, one fsync for
 * everything pending) and prunes the journal past its retention. */
#include "config.h"

#include <errno.h>
#include <leveldb/c.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stompd/handoff.h"
#include "stompd/journal.h"
#include "stompd/log.h"
#include "stompd/store.h"

#define FORMAT_KEY KEY_META "format"
#define FORMAT_VALUE "stompd-1"
#define MAX_PRUNE_PER_BATCH 4096

enum pending_kind { P_ENTRY, P_WIPE, P_RAW, P_INSTALLED, P_MAX_EPOCH };

struct pending {
    struct handoff_node node; /* first: handed to the writer thread */
    enum pending_kind kind;
    uint64_t lsn;       /* P_ENTRY, P_INSTALLED */
    uint64_t epoch;     /* P_INSTALLED, P_MAX_EPOCH */
    uint64_t sum;       /* P_INSTALLED */
    bool sync;          /* someone waits for this entry to be on disk */
    char *data;
    size_t len;
};

static inline struct pending *next_pending(const struct pending *p)
{
    return (struct pending *)p->node.next;
}

static struct {
    leveldb_t *db;
    leveldb_options_t *opt;
    leveldb_cache_t *cache;
    leveldb_filterpolicy_t *filter;
    leveldb_readoptions_t *ropt;
    leveldb_writeoptions_t *wsync, *wnosync;
    struct store_info info;
    char dir[4096];
    bool opened;            /* the hand-off queue is initialised */
    /* writer thread */
    pthread_t th;
    bool running;
    struct handoff q;       /* entries for the writer */
    pthread_mutex_t mu;     /* guards what the writer and the loop share below */
    bool sync;
    bool keep_journal;
    uint64_t done_lsn;      /* written, reported to the loop */
    uint64_t done_gen;      /* bumped with done_lsn: it may go down after a wipe */
    uint64_t fail_lsn;      /* first lsn that failed, 0 = none */
    char fail_msg[512];
    uint64_t retention;
    uint64_t prune_floor;
    uint64_t first_lsn;     /* writer-owned copy */
    uint64_t last_lsn;
    /* loop side */
    struct ev_loop *loop;
    ev_async async;
    store_done_fn done;
    store_fail_fn fail;
    uint64_t reported_done;
    uint64_t reported_gen;
    bool reported_fail;
    uint64_t first_lsn_shared; /* S.first_lsn as the loop thread may read it */
} S = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int set_err(char *err, size_t errlen, const char *what, char *lerr)
{
    snprintf(err, errlen, "%s: %s", what, lerr ? lerr : "unknown error");
    if (lerr)
        leveldb_free(lerr);
    return -EIO;
}

static int mkdir_p(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int store_get(const char *k, size_t kl, char **v, size_t *vl)
{
    char *lerr = NULL;
    char *val = leveldb_get(S.db, S.ropt, k, kl, vl, &lerr);
    if (lerr) {
        log_err("store read failed: %s", lerr);
        leveldb_free(lerr);
        return -EIO;
    }
    if (!val)
        return -ENOENT;
    *v = malloc(*vl + 1);
    if (!*v)
        abort();
    memcpy(*v, val, *vl);
    (*v)[*vl] = '\0';
    leveldb_free(val);
    return 0;
}

int store_scan(const char *prefix, size_t plen, store_scan_fn fn, void *ctx)
{
    leveldb_iterator_t *it = leveldb_create_iterator(S.db, S.ropt);
    int rc = 0;
    for (leveldb_iter_seek(it, prefix, plen); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl);
        if (kl < plen || memcmp(k, prefix, plen) != 0)
            break;
        const char *v = leveldb_iter_value(it, &vl);
        if ((rc = fn(ctx, k, kl, v, vl)) != 0)
            break;
    }
    char *lerr = NULL;
    leveldb_iter_get_error(it, &lerr);
    if (lerr) {
        log_err("store scan failed: %s", lerr);
        leveldb_free(lerr);
        rc = -EIO;
    }
    leveldb_iter_destroy(it);
    return rc;
}

static uint64_t meta_u64(const char *key)
{
    char *v;
    size_t vl;
    uint64_t n = 0;
    if (store_get(key, strlen(key), &v, &vl) == 0) {
        if (vl == 8)
            n = jkey_get_be64(v);
        free(v);
    }
    return n;
}

static int first_l(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    if (kl == 9)
        *(uint64_t *)ctx = jkey_get_be64(k + 1);
    return 1;
}

/* A wipe keeps the node's identity and the highest epoch it has seen. */
static bool keep_on_wipe(const char *k, size_t kl)
{
    static const char *const keep[] = {KEY_META "format", KEY_META "node_id", KEY_META "max_epoch"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        if (kl == strlen(keep[i]) && memcmp(k, keep[i], kl) == 0)
            return true;
    return false;
}

static int any_key(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    *(bool *)ctx = true;
    return 1;
}

int store_open(const char *dir, char *err, size_t errlen)
{
    memset(&S.info, 0, sizeof S.info);
    if (!S.opened)
        handoff_init(&S.q);
    S.opened = true;
    S.fail_lsn = 0;
    S.fail_msg[0] = '\0';
    S.reported_fail = false;
    S.prune_floor = 0;
    int rc = mkdir_p(dir);
    if (rc) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(-rc));
        return rc;
    }
    snprintf(S.dir, sizeof S.dir, "%s", dir);
    S.opt = leveldb_options_create();
    leveldb_options_set_create_if_missing(S.opt, 1);
    leveldb_options_set_paranoid_checks(S.opt, 1);
    leveldb_options_set_write_buffer_size(S.opt, 16 << 20);
    /* Most values live briefly (a message enqueued, then acked): snappy
     * would spend CPU compressing what compaction throws away. */
    leveldb_options_set_compression(S.opt, leveldb_no_compression);
    S.cache = leveldb_cache_create_lru(32 << 20);
    leveldb_options_set_cache(S.opt, S.cache);
    S.filter = leveldb_filterpolicy_create_bloom(10);
    leveldb_options_set_filter_policy(S.opt, S.filter);
    S.ropt = leveldb_readoptions_create();
    S.wsync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(S.wsync, 1);
    S.wnosync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(S.wnosync, 0);

    char *lerr = NULL;
    S.db = leveldb_open(S.opt, dir, &lerr);
    if (!S.db) {
        if (lerr && strstr(lerr, "lock")) {
            snprintf(err, errlen, "the store %s is in use by another process (is another stompd running "
                                  "with this broker.data_dir?): %s", dir, lerr);
            leveldb_free(lerr);
            return -EBUSY;
        }
        if (lerr && strstr(lerr, "orruption")) {
            snprintf(err, errlen, "the store %s is corrupt (%s); restore it from a replica or a backup, "
                                  "or move it away to start empty", dir, lerr);
            leveldb_free(lerr);
            return -EIO;
        }
        return set_err(err, errlen, dir, lerr);
    }

    char *v;
    size_t vl;
    rc = store_get(FORMAT_KEY, strlen(FORMAT_KEY), &v, &vl);
    if (rc == 0) {
        bool ok = vl == strlen(FORMAT_VALUE) && memcmp(v, FORMAT_VALUE, vl) == 0;
        if (!ok)
            snprintf(err, errlen, "the store %s has format '%.*s'; this stompd reads '%s'", dir, (int)vl, v,
                     FORMAT_VALUE);
        free(v);
        if (!ok)
            return -EINVAL;
    } else if (rc == -ENOENT) {
        bool nonempty = false;
        if (store_scan("", 0, any_key, &nonempty) < 0 || nonempty) {
            snprintf(err, errlen, "%s holds a LevelDB database that is not a stompd store", dir);
            return -EINVAL;
        }
        /* A new store: its identity, written synchronously. */
        char id[40];
        FILE *ur = fopen("/dev/urandom", "r");
        unsigned char rnd[8] = {0};
        if (!ur || fread(rnd, 1, sizeof rnd, ur) != sizeof rnd) {
            if (ur)
                fclose(ur);
            snprintf(err, errlen, "cannot read /dev/urandom for the node id");
            return -EIO;
        }
        fclose(ur);
        snprintf(id, sizeof id, "%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4],
                 rnd[5], rnd[6], rnd[7]);
        leveldb_writebatch_t *b = leveldb_writebatch_create();
        leveldb_writebatch_put(b, FORMAT_KEY, strlen(FORMAT_KEY), FORMAT_VALUE, strlen(FORMAT_VALUE));
        leveldb_writebatch_put(b, KEY_META "node_id", strlen(KEY_META "node_id"), id, strlen(id));
        leveldb_write(S.db, S.wsync, b, &lerr);
        leveldb_writebatch_destroy(b);
        if (lerr)
            return set_err(err, errlen, "cannot initialise the store", lerr);
        S.info.created = true;
    } else {
        snprintf(err, errlen, "cannot read the store %s", dir);
        return rc;
    }
    if (store_get(KEY_META "node_id", strlen(KEY_META "node_id"), &v, &vl) == 0) {
        snprintf(S.info.node_id, sizeof S.info.node_id, "%.*s", (int)vl, v);
        free(v);
    }
    if (store_get(KEY_META "snapshot", strlen(KEY_META "snapshot"), &v, &vl) == 0) {
        /* A snapshot install was interrupted: what is here is incomplete. */
        free(v);
        log_warn("store %s: an interrupted snapshot install left it incomplete; starting empty", dir);
        leveldb_writebatch_t *b = leveldb_writebatch_create();
        leveldb_iterator_t *it = leveldb_create_iterator(S.db, S.ropt);
        for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
            size_t kl;
            const char *k = leveldb_iter_key(it, &kl);
            if (!keep_on_wipe(k, kl))
                leveldb_writebatch_delete(b, k, kl);
        }
        leveldb_iter_destroy(it);
        leveldb_write(S.db, S.wsync, b, &lerr);
        leveldb_writebatch_destroy(b);
        if (lerr)
            return set_err(err, errlen, "cannot reset the store", lerr);
    }
    S.info.applied_lsn = meta_u64(KEY_META "applied_lsn");
    S.info.epoch = meta_u64(KEY_META "epoch");
    S.info.tip_sum = meta_u64(KEY_META "tip_sum");
    if (S.info.applied_lsn && !S.info.tip_sum) {
        /* a store written before the checksum was kept: its journal may
         * still hold the entry; if not, the sum stays unknown and a master
         * sends this node a snapshot rather than trust its position */
        uint64_t e;
        if (store_entry_tip(S.info.applied_lsn, &e, &S.info.tip_sum) != 0 || e != S.info.epoch)
            S.info.tip_sum = 0;
        if (S.info.tip_sum) {
            /* keep it: a snapshot taken before the next entry reads it */
            char sv[8];
            jkey_be64(sv, S.info.tip_sum);
            leveldb_put(S.db, S.wsync, KEY_META "tip_sum", strlen(KEY_META "tip_sum"), sv, 8, &lerr);
            if (lerr)
                return set_err(err, errlen, "cannot write the store", lerr);
        }
    }
    S.info.max_epoch = meta_u64(KEY_META "max_epoch");
    if (S.info.max_epoch < S.info.epoch)
        S.info.max_epoch = S.info.epoch;
    char lp = KEY_L;
    uint64_t first = 0;
    if (store_scan(&lp, 1, first_l, &first) < 0) {
        snprintf(err, errlen, "cannot read the journal in %s", dir);
        return -EIO;
    }
    S.info.first_lsn = first;
    S.first_lsn = first;
    __atomic_store_n(&S.first_lsn_shared, first, __ATOMIC_RELAXED);
    S.last_lsn = S.info.applied_lsn;
    S.done_lsn = S.reported_done = S.info.applied_lsn;
    S.done_gen = S.reported_gen = 0;
    if (S.retention == 0)
        S.retention = 100000;
    return 0;
}

const struct store_info *store_info(void)
{
    return &S.info;
}

void store_set_retention(uint64_t entries)
{
    pthread_mutex_lock(&S.mu);
    S.retention = entries ? entries : 1;
    pthread_mutex_unlock(&S.mu);
}

void store_set_prune_floor(uint64_t lsn)
{
    pthread_mutex_lock(&S.mu);
    S.prune_floor = lsn;
    pthread_mutex_unlock(&S.mu);
}

void store_set_sync(bool sync)
{
    pthread_mutex_lock(&S.mu);
    S.sync = sync;
    pthread_mutex_unlock(&S.mu);
}

uint64_t store_durable_lsn(void)
{
    return S.reported_done;
}

/* ------------------------------------------------------------ the writer */

struct wctx {
    leveldb_writebatch_t *b;
    char *err;
};

static void w_put(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    leveldb_writebatch_put(((struct wctx *)ctx)->b, k, kl, v, vl);
}

static void w_del(void *ctx, const char *k, size_t kl)
{
    leveldb_writebatch_delete(((struct wctx *)ctx)->b, k, kl);
}

struct batch_scan {
    const char *p;
    size_t pl;
    leveldb_writebatch_t *dels;
};

static void bs_put(void *state, const char *k, size_t kl, const char *v, size_t vl)
{
    struct batch_scan *s = state;
    if (kl >= s->pl && memcmp(k, s->p, s->pl) == 0)
        leveldb_writebatch_delete(s->dels, k, kl);
}

static void bs_del(void *state, const char *k, size_t kl)
{
}

/* Every key with the prefix: those already written (the batch was flushed
 * before an entry with a range op) and those this entry put earlier. */
static void w_del_prefix(void *ctx, const char *p, size_t pl)
{
    struct wctx *w = ctx;
    leveldb_iterator_t *it = leveldb_create_iterator(S.db, S.ropt);
    for (leveldb_iter_seek(it, p, pl); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl;
        const char *k = leveldb_iter_key(it, &kl);
        if (kl < pl || memcmp(k, p, pl) != 0)
            break;
        leveldb_writebatch_delete(w->b, k, kl);
    }
    leveldb_iter_destroy(it);
    struct batch_scan bs = {p, pl, leveldb_writebatch_create()};
    leveldb_writebatch_iterate(w->b, &bs, bs_put, bs_del);
    leveldb_writebatch_append(w->b, bs.dels);
    leveldb_writebatch_destroy(bs.dels);
}

static int has_range_op(void *ctx, const struct journal_op_view *op)
{
    if (op->type == JOP_PURGE || op->type == JOP_SUB_DELETE)
        *(bool *)ctx = true;
    return 0;
}

static bool entry_has_range_op(const char *data, size_t len)
{
    struct journal_entry e;
    bool yes = false;
    if (journal_decode(data, len, &e) == 0 && journal_foreach_op(&e, has_range_op, &yes) != 0)
        return false;
    return yes;
}

static void prune(leveldb_writebatch_t *b)
{
    uint64_t keep = S.retention;
    if (S.first_lsn == 0 || S.last_lsn < S.first_lsn || S.last_lsn - S.first_lsn + 1 <= keep)
        return;
    uint64_t upto = S.last_lsn - keep + 1; /* first lsn kept */
    if (S.prune_floor && upto > S.prune_floor)
        upto = S.prune_floor;
    if (upto > S.first_lsn + MAX_PRUNE_PER_BATCH)
        upto = S.first_lsn + MAX_PRUNE_PER_BATCH;
    for (uint64_t l = S.first_lsn; l < upto; l++) {
        char k[9];
        jkey_l(k, l);
        leveldb_writebatch_delete(b, k, sizeof k);
    }
    if (upto > S.first_lsn) {
        S.first_lsn = upto;
        __atomic_store_n(&S.first_lsn_shared, upto, __ATOMIC_RELAXED);
    }
}

/* Apply one non-entry item to the batch; returns the lsn it completes (0 if none). */
static uint64_t apply_special(struct pending *p, leveldb_writebatch_t *b, char **lerr)
{
    switch (p->kind) {
    case P_WIPE: {
        leveldb_write(S.db, S.wnosync, b, lerr); /* what came before the wipe */
        leveldb_writebatch_clear(b);
        if (*lerr)
            return 0;
        leveldb_iterator_t *it = leveldb_create_iterator(S.db, S.ropt);
        for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
            size_t kl;
            const char *k = leveldb_iter_key(it, &kl);
            if (!keep_on_wipe(k, kl))
                leveldb_writebatch_delete(b, k, kl);
        }
        leveldb_iter_destroy(it);
        leveldb_writebatch_put(b, KEY_META "snapshot", strlen(KEY_META "snapshot"), "1", 1);
        S.first_lsn = S.last_lsn = 0;
        __atomic_store_n(&S.first_lsn_shared, 0, __ATOMIC_RELAXED);
        return 0;
    }
    case P_RAW: {
        const char *q = p->data, *end = p->data + p->len;
        while (end - q >= 8) {
            const uint8_t *u = (const uint8_t *)q;
            uint32_t a = (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
            if ((size_t)(end - q) < 4 + (size_t)a + 4)
                break;
            const char *k = q + 4;
            u = (const uint8_t *)(k + a);
            uint32_t c = (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
            if ((size_t)(end - k - a - 4) < c)
                break;
            leveldb_writebatch_put(b, k, a, k + a + 4, c);
            q = k + a + 4 + c;
        }
        return 0;
    }
    case P_INSTALLED: {
        char v[8];
        jkey_be64(v, p->lsn);
        leveldb_writebatch_put(b, KEY_META "applied_lsn", strlen(KEY_META "applied_lsn"), v, 8);
        jkey_be64(v, p->epoch);
        leveldb_writebatch_put(b, KEY_META "epoch", strlen(KEY_META "epoch"), v, 8);
        jkey_be64(v, p->sum);
        leveldb_writebatch_put(b, KEY_META "tip_sum", strlen(KEY_META "tip_sum"), v, 8);
        leveldb_writebatch_delete(b, KEY_META "snapshot", strlen(KEY_META "snapshot"));
        S.last_lsn = p->lsn;
        return p->lsn;
    }
    case P_MAX_EPOCH: {
        char v[8];
        jkey_be64(v, p->epoch);
        leveldb_writebatch_put(b, KEY_META "max_epoch", strlen(KEY_META "max_epoch"), v, 8);
        return 0;
    }
    case P_ENTRY:
        break;
    }
    return 0;
}

static void *writer(void *arg)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        struct pending *list = (struct pending *)handoff_wait(&S.q);
        if (!list)
            break; /* closed, everything written */
        pthread_mutex_lock(&S.mu);
        bool sync = S.sync;
        bool failed = S.fail_lsn != 0;
        pthread_mutex_unlock(&S.mu);

        struct wctx w = {leveldb_writebatch_create(), NULL};
        struct journal_sink sink = {w_put, w_del, w_del_prefix, &w, !S.keep_journal};
        bool want_sync = false;
        for (struct pending *p = list; p; p = next_pending(p))
            want_sync |= p->sync;
        char *lerr = NULL;
        uint64_t first = 0, done = 0;
        bool any_done = false;
        char why[512] = "";
        for (struct pending *p = list; p && !failed && !lerr; p = next_pending(p)) {
            if (p->kind != P_ENTRY) {
                uint64_t l = apply_special(p, w.b, &lerr);
                if (p->kind == P_INSTALLED) {
                    done = l;
                    any_done = true;
                }
                continue;
            }
            if (!first)
                first = p->lsn;
            if (entry_has_range_op(p->data, p->len)) {
                leveldb_write(S.db, S.wnosync, w.b, &lerr);
                leveldb_writebatch_clear(w.b);
                if (lerr)
                    break;
            }
            if (journal_apply(p->data, p->len, &sink) != 0) {
                snprintf(why, sizeof why, "journal entry %llu is malformed", (unsigned long long)p->lsn);
                failed = true;
                break;
            }
            if (S.first_lsn == 0) {
                S.first_lsn = p->lsn;
                __atomic_store_n(&S.first_lsn_shared, p->lsn, __ATOMIC_RELAXED);
            }
            S.last_lsn = done = p->lsn;
            any_done = true;
        }
        if (!lerr && !failed) {
            pthread_mutex_lock(&S.mu);
            prune(w.b);
            pthread_mutex_unlock(&S.mu);
            leveldb_write(S.db, sync && want_sync ? S.wsync : S.wnosync, w.b, &lerr);
        }
        leveldb_writebatch_destroy(w.b);
        if (lerr) {
            snprintf(why, sizeof why, "LevelDB write failed: %s", lerr);
            leveldb_free(lerr);
            failed = true;
        }
        pthread_mutex_lock(&S.mu);
        if (failed) {
            if (!S.fail_lsn) {
                S.fail_lsn = first ? first : S.done_lsn + 1;
                snprintf(S.fail_msg, sizeof S.fail_msg, "%s", why[0] ? why : "the store failed earlier");
            }
        } else if (any_done) {
            S.done_lsn = done;
            S.done_gen++;
        }
        pthread_mutex_unlock(&S.mu);
        handoff_done(&S.q);
        while (list) {
            struct pending *n = next_pending(list);
            free(list->data);
            free(list);
            list = n;
        }
        if (S.loop)
            ev_async_send(S.loop, &S.async);
    }
    return NULL;
}

static void async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    pthread_mutex_lock(&S.mu);
    uint64_t done = S.done_lsn, gen = S.done_gen, fail = S.fail_lsn;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", S.fail_msg);
    pthread_mutex_unlock(&S.mu);
    if (gen != S.reported_gen) {
        S.reported_gen = gen;
        S.reported_done = done;
        if (S.done)
            S.done(done);
    }
    if (fail && !S.reported_fail) {
        S.reported_fail = true;
        if (S.fail)
            S.fail(fail, msg);
    }
}

int store_start(struct ev_loop *loop, bool sync, store_done_fn done, store_fail_fn fail, char *err,
                size_t errlen)
{
    S.loop = loop;
    S.sync = sync;
    S.done = done;
    S.fail = fail;
    ev_async_init(&S.async, async_cb);
    ev_async_start(loop, &S.async);
    int rc = pthread_create(&S.th, NULL, writer, NULL);
    if (rc) {
        snprintf(err, errlen, "cannot start the store thread: %s", strerror(rc));
        return -rc;
    }
    S.running = true;
    return 0;
}

static void enqueue_sum(enum pending_kind kind, uint64_t lsn, uint64_t epoch, uint64_t sum, char *data, size_t len,
                        bool sync)
{
    struct pending *p = malloc(sizeof *p);
    if (!p)
        abort();
    p->sync = sync;
    p->kind = kind;
    p->lsn = lsn;
    p->epoch = epoch;
    p->sum = sum;
    p->data = data;
    p->len = len;
    handoff_push(&S.q, &p->node);
}

static void enqueue(enum pending_kind kind, uint64_t lsn, uint64_t epoch, char *data, size_t len, bool sync)
{
    enqueue_sum(kind, lsn, epoch, 0, data, len, sync);
}

void store_append(uint64_t lsn, char *data, size_t len, bool sync)
{
    enqueue(P_ENTRY, lsn, 0, data, len, sync);
}

void store_set_keep_journal(bool keep)
{
    S.keep_journal = keep;
}

bool store_drained(void)
{
    return handoff_idle(&S.q);
}

void store_wipe(void)
{
    enqueue(P_WIPE, 0, 0, NULL, 0, true);
}

void store_put_raw(const char *pairs, size_t len)
{
    char *copy = malloc(len ? len : 1);
    if (!copy)
        abort();
    memcpy(copy, pairs, len);
    enqueue(P_RAW, 0, 0, copy, len, false);
}

void store_snapshot_installed(uint64_t lsn, uint64_t epoch, uint64_t sum)
{
    enqueue_sum(P_INSTALLED, lsn, epoch, sum, NULL, 0, true);
}

void store_set_max_epoch(uint64_t epoch)
{
    if (epoch > S.info.max_epoch)
        S.info.max_epoch = epoch;
    enqueue(P_MAX_EPOCH, 0, epoch, NULL, 0, true);
}

uint64_t store_first_lsn(void)
{
    return __atomic_load_n(&S.first_lsn_shared, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ master side reads */

struct store_snapshot {
    const leveldb_snapshot_t *snap;
    leveldb_readoptions_t *ro;
    leveldb_iterator_t *it;
};

static uint64_t snap_u64(leveldb_readoptions_t *ro, const char *key)
{
    char *lerr = NULL;
    size_t vl;
    char *v = leveldb_get(S.db, ro, key, strlen(key), &vl, &lerr);
    uint64_t n = 0;
    if (lerr)
        leveldb_free(lerr);
    if (v && vl == 8)
        n = jkey_get_be64(v);
    if (v)
        leveldb_free(v);
    return n;
}

struct store_snapshot *store_snapshot_open(uint64_t *lsn, uint64_t *epoch, uint64_t *sum)
{
    struct store_snapshot *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->snap = leveldb_create_snapshot(S.db);
    s->ro = leveldb_readoptions_create();
    leveldb_readoptions_set_snapshot(s->ro, s->snap);
    leveldb_readoptions_set_fill_cache(s->ro, 0);
    /* meta keys are written in the batch of the entry they describe, so
     * reading them through the snapshot says exactly where it stands */
    *lsn = snap_u64(s->ro, KEY_META "applied_lsn");
    *epoch = snap_u64(s->ro, KEY_META "epoch");
    *sum = snap_u64(s->ro, KEY_META "tip_sum");
    s->it = leveldb_create_iterator(S.db, s->ro);
    leveldb_iter_seek_to_first(s->it);
    return s;
}

static void put_u32(struct buf *b, uint32_t v)
{
    char x[4] = {(char)(v >> 24), (char)(v >> 16), (char)(v >> 8), (char)v};
    buf_append(b, x, 4);
}

uint32_t store_snapshot_next(struct store_snapshot *s, struct buf *out, size_t max_bytes)
{
    uint32_t n = 0;
    size_t start = buf_used(out);
    while (leveldb_iter_valid(s->it) && buf_used(out) - start < max_bytes) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(s->it, &kl);
        const char *v = leveldb_iter_value(s->it, &vl);
        /* the journal and this node's meta are not state: the slave
         * writes its own position when the snapshot is complete */
        bool skip = (kl > 0 && k[0] == KEY_L) || (kl >= strlen(KEY_META) && memcmp(k, KEY_META, strlen(KEY_META)) == 0);
        if (!skip) {
            put_u32(out, (uint32_t)kl);
            buf_append(out, k, kl);
            put_u32(out, (uint32_t)vl);
            buf_append(out, v, vl);
            n++;
        }
        leveldb_iter_next(s->it);
    }
    return n;
}

void store_snapshot_close(struct store_snapshot *s)
{
    if (!s)
        return;
    leveldb_iter_destroy(s->it);
    leveldb_readoptions_destroy(s->ro);
    leveldb_release_snapshot(S.db, s->snap);
    free(s);
}

size_t store_read_entries(uint64_t from, size_t max_bytes, store_entry_fn fn, void *ctx)
{
    char k[9];
    jkey_l(k, from);
    leveldb_iterator_t *it = leveldb_create_iterator(S.db, S.ropt);
    size_t n = 0, bytes = 0;
    uint64_t want = from;
    for (leveldb_iter_seek(it, k, 9); leveldb_iter_valid(it) && bytes < max_bytes; leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *key = leveldb_iter_key(it, &kl);
        if (kl != 9 || key[0] != KEY_L || jkey_get_be64(key + 1) != want)
            break;
        const char *v = leveldb_iter_value(it, &vl);
        fn(ctx, want, v, vl);
        bytes += vl;
        n++;
        want++;
    }
    leveldb_iter_destroy(it);
    return n;
}

int store_entry_tip(uint64_t lsn, uint64_t *epoch, uint64_t *sum)
{
    char k[9], *v;
    size_t vl;
    jkey_l(k, lsn);
    int rc = store_get(k, 9, &v, &vl);
    if (rc)
        return rc;
    struct journal_entry e;
    rc = journal_decode(v, vl, &e);
    if (rc == 0) {
        *epoch = e.epoch;
        *sum = journal_checksum(v, vl);
    }
    free(v);
    return rc;
}

void store_close(void)
{
    if (S.running) {
        handoff_close(&S.q);
        pthread_join(S.th, NULL);
        S.running = false;
        ev_async_stop(S.loop, &S.async);
        S.loop = NULL;
    }
    if (S.db) {
        leveldb_close(S.db);
        S.db = NULL;
    }
    if (S.opt) {
        leveldb_options_destroy(S.opt);
        leveldb_cache_destroy(S.cache);
        leveldb_filterpolicy_destroy(S.filter);
        leveldb_readoptions_destroy(S.ropt);
        leveldb_writeoptions_destroy(S.wsync);
        leveldb_writeoptions_destroy(S.wnosync);
        S.opt = NULL;
    }
    struct pending *p = S.opened ? (struct pending *)handoff_take(&S.q) : NULL;
    while (p) {
        struct pending *n = next_pending(p);
        free(p->data);
        free(p);
        p = n;
    }
    if (S.opened)
        handoff_destroy(&S.q);
    S.opened = false;
}
