/* The store (see store.h): the only file that includes leveldb/c.h. The
 * log (segment.c) is the durable record; the LevelDB index is state that
 * the writer thread derives from it, written without fsync and rebuilt
 * from the log's tail at start:
 *
 *   per group:  log write -> fdatasync (if asked) -> report durable
 *               -> index batch (unsynced) -> report indexed -> prune
 *
 * A message key's value is its place in the log (segment, offset, length)
 * and its expiry; every segment's live messages are counted (!seg/ keys),
 * and a segment with none left, whose entries no replica needs and which
 * an fsynced index no longer needs for replay, is removed. Per-queue
 * counters (C keys) let a node start without reading any queue. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <leveldb/c.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uthash.h>
#include <zlib.h>

#include "stompd/handoff.h"
#include "stompd/journal.h"
#include "stompd/log.h"
#include "stompd/msg.h"
#include "stompd/segment.h"
#include "stompd/store.h"

#define FORMAT_KEY KEY_META "format"
#define FORMAT_VALUE "stompd-3"
#define FORMAT_OLD "stompd-2"   /* read, and marked stompd-3 at once: its locations carry no crc */
#define FORMAT_V1 "stompd-1"
#define LOC_LEN 32            /* u32 seg, u32 off, u32 len, i64 expires, u64 lsn of its entry, u32 crc32 of the message */
#define LOC_LEN_OLD 28        /* format stompd-2's: no crc */
#define CHECKPOINT_EVERY 1.0  /* s between fsynced index writes that let segments go */
#define LAZY_REPORT 0.005     /* s a durability report may wait when no one waits for it */
#define LAZY_KICK_BYTES (256 << 10) /* and entries no one waits on, before the writer gets them */
#define INLINE_MAX_BYTES (128 << 10) /* the most the loop writes to the log itself (write_inline) */
#define DEFER_RECORDS 8192    /* log records the index batch may hold back (defer_index) */
#define DEFER_MAX 0.05        /* s it may hold them */
#define DEFER_IDLE 0.002      /* s without entries before it writes them */

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
    uint64_t at;        /* offset of its record in the group's batch */
    bool written;       /* the loop wrote it to the log (write_inline): the writer indexes it */
    uint32_t wseg;      /* where its record went: segment, */
    uint64_t woff;      /* and offset */
};

static inline struct pending *next_pending(const struct pending *p)
{
    return (struct pending *)p->node.next;
}

/* What the writer knows of each segment (also read by the loop, under
 * S.mu, to find entries for a replica). */
struct segmeta {
    uint32_t id;
    uint64_t first_lsn, last_lsn;   /* entries in it (0: none) */
    uint64_t refs;                  /* message keys pointing into it */
    uint64_t end;                   /* where its last indexed record ends (0: not known, an older index) */
    bool dirty;
};

/* Per-queue counters (C keys), kept by the writer. */
struct counter {
    char *key;
    size_t klen;
    uint64_t count, bytes;
    bool dirty;
    UT_hash_handle hh;
};

/* A prefix of message keys a range removal took (gone_has). */
struct gone_prefix {
    char *p;
    size_t len;
};

/* Message keys put since the last index write. Their put is not in the
 * batch: it goes in when the batch is written, and only for those still
 * there. A message acknowledged before that (a queue with a consumer
 * keeping up) never reaches LevelDB: no memtable insert, no lookup, no
 * delete, no compaction. */
struct fresh {
    char *key;
    size_t klen;
    char loc[LOC_LEN];
    bool has_r;             /* its delivery count was put since */
    UT_hash_handle hh;
};

static struct {
    leveldb_t *db;
    leveldb_options_t *opt;
    leveldb_cache_t *cache;
    leveldb_filterpolicy_t *filter;
    leveldb_readoptions_t *ropt;
    leveldb_writeoptions_t *wsync, *wnosync;
    struct store_info info;
    struct store_limits lim;
    char dir[4096];
    bool opened;
    /* the writer thread */
    pthread_t th;
    bool running;
    struct handoff q;
    pthread_mutex_t mu;     /* guards what the writer and the loop share below */
    bool sync;
    uint64_t done_lsn;      /* durable, reported to the loop */
    uint64_t written_lsn;   /* in the log (the OS holds it), maybe not fsynced yet */
    uint64_t want_written;  /* the loop waits to hear written_lsn reach this */
    uint64_t done_gen;      /* bumped with done_lsn: it may go down after a wipe */
    uint64_t indexed_lsn;
    uint64_t indexed_max_seq;   /* max_seq as of indexed_lsn */
    uint64_t fail_lsn;      /* first lsn that failed, 0 = none */
    char fail_msg[512];
    uint64_t prune_floor;
    uint32_t pin;           /* segments from this id on are kept (0: none pinned) */
    uint32_t npins;
    struct segmeta *segs;   /* ordered by id */
    size_t nsegs, capsegs;
    bool want_indexed;      /* the loop waits for indexing progress */
    bool held;              /* applied records wait in the index batch (defer_index) */
    bool lazy;              /* nothing waits on durability reports (store_set_lazy_reports) */
    bool freed;             /* segments went: the loop may have room again */
    bool room;              /* queued fell to room_below (store_wait_room) */
    /* writer-owned */
    bool replaying;         /* at open: records may already be in the index */
    struct fresh *gone;     /* message keys the unwritten index batch removed (counted out once) */
    struct gone_prefix *gone_pfx;   /* and whole prefixes it removed (range removals) */
    size_t ngone_pfx, capgone_pfx;
    struct seg_batch batch; /* the records of a group, on their way to the log */
    struct seg_batch lbatch; /* the same, for the loop's own writes (write_inline) */
    uint64_t last_lsn;      /* last entry written to the log */
    uint64_t max_seq;       /* highest message seq indexed */
    uint64_t tip_epoch;
    struct journal_tip tip; /* the last entry; its checksum when asked */
    bool report_owed;       /* a lazy report not yet signalled */
    uint64_t written_told;  /* the written position last signalled for want_written */
    double signalled_at;
    struct seg_pos indexed_pos;     /* after the last record applied to the index */
    struct seg_pos checkpoint;      /* indexed_pos as of the last fsynced index write */
    double checkpoint_at;
    struct counter *counters;
    struct fresh *fresh;
    uint32_t nfresh;
    uint32_t deferred;      /* records applied to the batch, not yet written */
    double deferred_at;     /* when the first of them was */
    double index_lag;       /* STOMPD_TEST_INDEX_LAG_MS, in s (index_lag_left) */
    double write_delay;     /* STOMPD_TEST_WRITE_DELAY_MS, in s: before each group's log write */
    long syncs_left;        /* STOMPD_TEST_FAIL_SYNC_AFTER: log fdatasyncs until one fails (-1: none does) */
    leveldb_writebatch_t *wb;
    /* the record being applied: where its payload is */
    uint32_t rec_seg;
    uint64_t rec_base;      /* offset of the payload's first byte in the segment */
    const char *rec_data;   /* the payload in memory */
    uint64_t rec_lsn;       /* its entry's lsn (0: snapshot pairs) */
    /* the loop side */
    struct ev_loop *loop;
    ev_async async;
    store_done_fn done;
    store_fail_fn fail;
    store_indexed_fn indexed;
    uint64_t reported_done, reported_gen, reported_indexed, reported_written;
    store_written_fn written_fn;
    bool reported_fail;
    bool lazy_loop;                         /* the loop's copy of lazy */
    struct pending *chain, *chain_tail;     /* appended, not yet handed to the writer */
    size_t chain_bytes;
    struct pending *written, *written_tail; /* chains the loop wrote itself, not yet handed on to be indexed */
    size_t written_bytes;
    ev_timer kick_timer;                    /* hands a lazy chain over */
    uint64_t last_appended_lsn;
    _Atomic uint64_t unwritten;             /* bytes appended, not yet in the log */
    uint64_t wipes;                         /* store_wipe calls (the loop's count) */
    uint64_t wipes_done;                    /* wipes the writer did (under mu) */
    /* store_wait_room: payload bytes appended and not yet freed by the
     * writer (on the chain, queued, being written), and the level the
     * loop waits for them to fall to (0: it does not wait) */
    _Atomic uint64_t queued;
    _Atomic uint64_t room_below;
    store_room_fn room_fn;
    struct store_stats stats;               /* the writer records, anyone reads */
} S = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* ------------------------------------------------------------ helpers */

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const struct store_stats *store_stats(void)
{
    return &S.stats;
}

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
    /* path and its parent (the store and broker.data_dir) are private;
     * directories above them, made here, are as directories usually are */
    char *parent_end = strrchr(tmp, '/');
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, p == parent_end ? 0750 : 0755) != 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static void be32(char *out, uint32_t v)
{
    out[0] = (char)(v >> 24);
    out[1] = (char)(v >> 16);
    out[2] = (char)(v >> 8);
    out[3] = (char)v;
}

static uint32_t get_be32(const char *p)
{
    const uint8_t *u = (const uint8_t *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

/* A message's place in the log, and its checksum: a message is read
 * from the log alone, so the record's own checksum (which replay checks)
 * does not cover it then (helper-113: one flipped byte was delivered as
 * it was, one in a length skipped the message). */
static void loc_encode(char out[LOC_LEN], uint32_t seg, uint32_t off, const char *msg, uint32_t len, uint64_t lsn)
{
    be32(out, seg);
    be32(out + 4, off);
    be32(out + 8, len);
    jkey_be64(out + 12, (uint64_t)journal_msg_expires(msg, len));
    jkey_be64(out + 20, lsn);
    be32(out + 28, (uint32_t)crc32(0L, (const Bytef *)msg, len));
}

static bool is_loc(size_t vl)
{
    return vl == LOC_LEN || vl == LOC_LEN_OLD;
}

static bool loc_decode(const char *v, size_t vl, struct store_msgref *r)
{
    if (!is_loc(vl))
        return false;
    r->pos.seg = get_be32(v);
    r->pos.off = get_be32(v + 4);
    r->len = get_be32(v + 8);
    r->expires = (int64_t)jkey_get_be64(v + 12);
    r->lsn = jkey_get_be64(v + 20);
    r->has_crc = vl == LOC_LEN;
    r->crc = r->has_crc ? get_be32(v + 28) : 0;
    return true;
}

/* r's message into out (r->len bytes): 0, -errno, or -EBADMSG when it
 * is not what was indexed. */
static int read_msg(const struct store_msgref *r, char *out)
{
    int rc = seglog_read(r->pos, out, r->len);
    if (rc == 0 && r->has_crc && (uint32_t)crc32(0L, (const Bytef *)out, r->len) != r->crc)
        rc = -EBADMSG;
    return rc;
}

static bool is_msg_key(const char *k, size_t kl)
{
    return kl > MSG_KEY_SUFFIX && (k[0] == KEY_Q || k[0] == KEY_T || k[0] == KEY_W);
}

/* *v is malloc'd (caller frees); -ENOENT when absent. */
static int idx_get(const char *k, size_t kl, char **v, size_t *vl)
{
    char *lerr = NULL;
    char *val = leveldb_get(S.db, S.ropt, k, kl, vl, &lerr);
    if (lerr) {
        log_err("store: index read failed: %s", lerr);
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

static uint64_t meta_u64(const char *key)
{
    char *v;
    size_t vl;
    uint64_t n = 0;
    if (idx_get(key, strlen(key), &v, &vl) == 0) {
        if (vl == 8)
            n = jkey_get_be64(v);
        free(v);
    }
    return n;
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
        log_err("store: index scan failed: %s", lerr);
        leveldb_free(lerr);
        rc = -EIO;
    }
    leveldb_iter_destroy(it);
    return rc;
}

/* ------------------------------------------------------------ segment metadata */

static struct segmeta *segmeta(uint32_t id, bool create)
{
    for (size_t i = 0; i < S.nsegs; i++)
        if (S.segs[i].id == id)
            return &S.segs[i];
    if (!create)
        return NULL;
    pthread_mutex_lock(&S.mu);
    if (S.nsegs == S.capsegs) {
        S.capsegs = S.capsegs ? S.capsegs * 2 : 64;
        S.segs = realloc(S.segs, S.capsegs * sizeof *S.segs);
        if (!S.segs)
            abort();
    }
    size_t i = S.nsegs;
    while (i > 0 && S.segs[i - 1].id > id) {
        S.segs[i] = S.segs[i - 1];
        i--;
    }
    S.segs[i] = (struct segmeta){.id = id, .dirty = true};
    S.nsegs++;
    pthread_mutex_unlock(&S.mu);
    return &S.segs[i];
}

static void segmeta_key(char k[9], uint32_t id)
{
    memcpy(k, KEY_SEG, 5);
    be32(k + 5, id);
}

static int load_segmeta(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    if (kl != 9 || (vl != 24 && vl != 32))
        return 0;
    struct segmeta *m = segmeta(get_be32(k + 5), true);
    m->first_lsn = jkey_get_be64(v);
    m->last_lsn = jkey_get_be64(v + 8);
    m->refs = jkey_get_be64(v + 16);
    m->end = vl == 32 ? jkey_get_be64(v + 24) : 0;
    m->dirty = false;
    return 0;
}

/* A record ending at end of segment seg is indexed. */
static void note_end(uint32_t seg, uint64_t end)
{
    struct segmeta *m = segmeta(seg, true);
    pthread_mutex_lock(&S.mu);
    if (end > m->end) {
        m->end = end;
        m->dirty = true;
    }
    pthread_mutex_unlock(&S.mu);
}

static void note_entry(uint32_t seg, uint64_t lsn)
{
    struct segmeta *m = segmeta(seg, true);
    pthread_mutex_lock(&S.mu);
    if (!m->first_lsn)
        m->first_lsn = lsn;
    m->last_lsn = lsn;
    m->dirty = true;
    pthread_mutex_unlock(&S.mu);
}

static void seg_ref(uint32_t seg, int64_t delta)
{
    struct segmeta *m = segmeta(seg, true);
    if (delta < 0 && m->refs < (uint64_t)-delta) {
        log_err("store: segment %08" PRIx32 " would have fewer than no live messages", seg);
        m->refs = 0;
    } else {
        m->refs = (uint64_t)((int64_t)m->refs + delta);
    }
    m->dirty = true;
}

/* ------------------------------------------------------------ counters */

/* Room for a key of len bytes: stack when it fits (keys are bounded by
 * the names they hold, DURABLE_NAME_MAX and destinations' 1024), else the
 * heap (the caller frees what is not stack). */
static char *key_space(char *stack, size_t cap, size_t len)
{
    if (len <= cap)
        return stack;
    char *p = malloc(len);
    if (!p)
        abort();
    return p;
}

static struct counter *counter_for(const char *msgkey, size_t kl)
{
    /* a queue's keys share their prefix; scheduled jobs (W keys, by due
     * time) are counted together */
    size_t pl = msgkey[0] == KEY_W ? 1 : kl - MSG_KEY_SUFFIX;
    char stack[1200];
    char *ck = key_space(stack, sizeof stack, pl + 1);
    ck[0] = KEY_C;
    memcpy(ck + 1, msgkey, pl);
    struct counter *c;
    HASH_FIND(hh, S.counters, ck, pl + 1, c);
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c || !(c->key = malloc(pl + 1)))
            abort();
        memcpy(c->key, ck, pl + 1);
        c->klen = pl + 1;
        char *v;
        size_t vl;
        if (idx_get(c->key, c->klen, &v, &vl) == 0) {
            if (vl == 16) {
                c->count = jkey_get_be64(v);
                c->bytes = jkey_get_be64(v + 8);
            }
            free(v);
        }
        HASH_ADD_KEYPTR(hh, S.counters, c->key, c->klen, c);
    }
    if (ck != stack)
        free(ck);
    return c;
}

static void count(const char *msgkey, size_t kl, int64_t n, int64_t bytes)
{
    struct counter *c = counter_for(msgkey, kl);
    c->count = n < 0 && c->count < (uint64_t)-n ? 0 : (uint64_t)((int64_t)c->count + n);
    c->bytes = bytes < 0 && c->bytes < (uint64_t)-bytes ? 0 : (uint64_t)((int64_t)c->bytes + bytes);
    c->dirty = true;
}

static void counters_free(void)
{
    struct counter *c, *tmp;
    HASH_ITER(hh, S.counters, c, tmp) {
        HASH_DEL(S.counters, c);
        free(c->key);
        free(c);
    }
}

/* ------------------------------------------------------------ applying to the index */

static void fresh_clear(void)
{
    struct fresh *g, *tmp;
    HASH_ITER(hh, S.fresh, g, tmp) {
        HASH_DEL(S.fresh, g);
        free(g->key);
        free(g);
    }
    S.nfresh = 0;
}

/* The index still holds a key removed in the unwritten batch: a second
 * removal of it in the same batch (an ack and a purge in one entry, in
 * either order, or in entries after it) must not count it again. A range
 * removal records its prefix, not each key it took (a purge of a million
 * messages would otherwise hold a million keys until the batch is
 * written); the keys single removals took are recorded one by one. The
 * prefixes are few: a record with a range removal writes the batch first
 * (apply_record). */
static bool gone_has(const char *k, size_t kl)
{
    for (size_t i = 0; i < S.ngone_pfx; i++)
        if (kl >= S.gone_pfx[i].len && memcmp(k, S.gone_pfx[i].p, S.gone_pfx[i].len) == 0)
            return true;
    struct fresh *g = NULL;
    if (S.gone)
        HASH_FIND(hh, S.gone, k, kl, g);
    return g != NULL;
}

static void gone_add(const char *k, size_t kl)
{
    if (gone_has(k, kl))
        return;
    struct fresh *g = calloc(1, sizeof *g);
    if (!g || !(g->key = malloc(kl)))
        abort();
    memcpy(g->key, k, kl);
    g->klen = kl;
    HASH_ADD_KEYPTR(hh, S.gone, g->key, g->klen, g);
}

static void gone_add_prefix(const char *p, size_t pl)
{
    if (S.ngone_pfx == S.capgone_pfx) {
        size_t cap = S.capgone_pfx ? 2 * S.capgone_pfx : 4;
        struct gone_prefix *a = realloc(S.gone_pfx, cap * sizeof *a);
        if (!a)
            abort();
        S.gone_pfx = a;
        S.capgone_pfx = cap;
    }
    char *c = malloc(pl ? pl : 1);
    if (!c)
        abort();
    memcpy(c, p, pl);
    S.gone_pfx[S.ngone_pfx++] = (struct gone_prefix){c, pl};
}

static void gone_clear(void)
{
    struct fresh *g, *tmp;
    HASH_ITER(hh, S.gone, g, tmp) {
        HASH_DEL(S.gone, g);
        free(g->key);
        free(g);
    }
    for (size_t i = 0; i < S.ngone_pfx; i++)
        free(S.gone_pfx[i].p);
    S.ngone_pfx = 0;
}

static void fresh_del(struct fresh *g)
{
    HASH_DEL(S.fresh, g);
    free(g->key);
    free(g);
    S.nfresh--;
}

/* Into the batch, about to be written: the fresh keys still live. */
static void fresh_put_all(void)
{
    struct fresh *g, *tmp;
    HASH_ITER(hh, S.fresh, g, tmp) {
        leveldb_writebatch_put(S.wb, g->key, g->klen, g->loc, LOC_LEN);
    }
}

static void w_put(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    if (kl > 1 && k[0] == KEY_R) {
        struct fresh *g;
        HASH_FIND(hh, S.fresh, k + 1, kl - 1, g);
        if (g)
            g->has_r = true;
    }
    leveldb_writebatch_put(S.wb, k, kl, v, vl);
}

static void w_del(void *ctx, const char *k, size_t kl)
{
    leveldb_writebatch_delete(S.wb, k, kl);
}

/* A message key pointing at msg, which lies inside the record being
 * applied. */
static void w_put_msg(void *ctx, const char *k, size_t kl, const char *msg, size_t ml)
{
    if (S.replaying) {
        /* replaying the log's tail: the index may have this one already
         * (a batch written halfway through a group), unless this batch
         * removed it first (a delivery given back after its dequeue:
         * helper-114, it was lost at a restart) */
        char *v;
        size_t vl;
        if (!gone_has(k, kl) && idx_get(k, kl, &v, &vl) == 0) {
            free(v);
            return;
        }
    }
    uint64_t off = S.rec_base + (uint64_t)(msg - S.rec_data);
    uint64_t seq = journal_msg_seq(msg, ml);
    if (seq > S.max_seq)
        S.max_seq = seq;
    char loc[LOC_LEN];
    loc_encode(loc, S.rec_seg, (uint32_t)off, msg, (uint32_t)ml, S.rec_lsn);
    struct fresh *g;
    HASH_FIND(hh, S.fresh, k, kl, g);
    if (!g) {
        g = calloc(1, sizeof *g);
        if (!g || !(g->key = malloc(kl)))
            abort();
        memcpy(g->key, k, kl);
        g->klen = kl;
        /* a snapshot's pairs come in key order, so a delivery count (R)
         * may come before its message (T) or after it (Q): assume one */
        g->has_r = S.rec_lsn == 0;
        HASH_ADD_KEYPTR(hh, S.fresh, g->key, g->klen, g);
        S.nfresh++;
    } else {
        /* the same key again (a replay): the old place is no longer counted */
        seg_ref(get_be32(g->loc), -1);
        count(k, kl, -1, -(int64_t)get_be32(g->loc + 8));
    }
    memcpy(g->loc, loc, LOC_LEN);
    seg_ref(S.rec_seg, 1);
    count(k, kl, 1, (int64_t)ml);
}

/* Forget message key k whose value is loc: its segment loses a live
 * message, its queue one message. A fresh one (g) never got into the
 * index, nor did its delivery count unless one was put since. */
static void forget_msg(const char *k, size_t kl, const char *loc, const struct fresh *g)
{
    seg_ref(get_be32(loc), -1);
    count(k, kl, -1, -(int64_t)get_be32(loc + 8));
    if (g)
        S.stats.index_skipped++;
    else
        leveldb_writebatch_delete(S.wb, k, kl);
    if (!g || g->has_r) {
        char stack[1300];
        char *rk = key_space(stack, sizeof stack, kl + 1);
        rk[0] = KEY_R;
        memcpy(rk + 1, k, kl);
        leveldb_writebatch_delete(S.wb, rk, kl + 1);
        if (rk != stack)
            free(rk);
    }
}

static void w_del_msg(void *ctx, const char *k, size_t kl)
{
    struct fresh *g;
    HASH_FIND(hh, S.fresh, k, kl, g);
    if (g) {
        forget_msg(k, kl, g->loc, g);
        fresh_del(g);
        return;
    }
    if (gone_has(k, kl))
        return;
    char *v;
    size_t vl;
    if (idx_get(k, kl, &v, &vl) == 0) {
        if (is_loc(vl)) {
            forget_msg(k, kl, v, NULL);
            gone_add(k, kl);    /* the index lists it until the batch is written */
        }
        free(v);
    }
}

struct del_scan {
    const char *p;          /* the message keys' prefix */
    size_t pl;
    leveldb_writebatch_t *dels;
};

/* A delivery count of the prefix put earlier in this batch: deleted too. */
static void ds_put(void *state, const char *k, size_t kl, const char *v, size_t vl)
{
    struct del_scan *s = state;
    if (kl == 0 || k[0] != KEY_R || kl - 1 < s->pl || memcmp(k + 1, s->p, s->pl) != 0)
        return;
    leveldb_writebatch_delete(s->dels, k, kl);
}

/* A message key of the prefix removed earlier in this batch: the index
 * still has it, and it is counted out already. */
static void ds_del(void *state, const char *k, size_t kl)
{
    struct del_scan *s = state;
    if (kl >= s->pl && memcmp(k, s->p, s->pl) == 0)
        gone_add(k, kl);
}

/* Every message key with the prefix (and its delivery count): those in
 * the index and those put earlier in this group. The batch holds only
 * this record's ops (apply_record writes it before a range removal). */
static void w_del_msgs(void *ctx, const char *p, size_t pl)
{
    struct fresh *g, *tmp;
    HASH_ITER(hh, S.fresh, g, tmp) {
        if (g->klen >= pl && memcmp(g->key, p, pl) == 0) {
            forget_msg(g->key, g->klen, g->loc, g);
            fresh_del(g);
        }
    }
    /* delivery counts put earlier in the batch, and message keys removed
     * by it already (an ack before the purge in the same entry) */
    struct del_scan ds = {p, pl, leveldb_writebatch_create()};
    leveldb_writebatch_iterate(S.wb, &ds, ds_put, ds_del);
    leveldb_writebatch_append(S.wb, ds.dels);
    leveldb_writebatch_destroy(ds.dels);
    leveldb_iterator_t *it = leveldb_create_iterator(S.db, S.ropt);
    for (leveldb_iter_seek(it, p, pl); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl);
        if (kl < pl || memcmp(k, p, pl) != 0)
            break;
        const char *v = leveldb_iter_value(it, &vl);
        if (is_loc(vl) && !gone_has(k, kl))
            forget_msg(k, kl, v, NULL);
    }
    leveldb_iter_destroy(it);
    gone_add_prefix(p, pl);
}

static const struct journal_sink sink = {w_put, w_del, w_put_msg, w_del_msg, w_del_msgs, NULL};

/* Pairs of a snapshot or a migration, in a REC_PAIRS record: message keys
 * point at their message inside the record. */
static int apply_pairs(const char *data, size_t len)
{
    const char *q = data, *end = data + len;
    while (end - q >= 8) {
        uint32_t a = get_be32(q);
        if ((size_t)(end - q) < 4 + (size_t)a + 4)
            return -EINVAL;
        const char *k = q + 4;
        uint32_t c = get_be32(k + a);
        const char *v = k + a + 4;
        if ((size_t)(end - v) < c)
            return -EINVAL;
        if (is_msg_key(k, a))
            w_put_msg(NULL, k, a, v, c);
        else if (!(a > 0 && k[0] == KEY_C) && !(a >= 5 && memcmp(k, KEY_SEG, 5) == 0))
            w_put(NULL, k, a, v, c);
        q = v + c;
    }
    return q == end ? 0 : -EINVAL;
}

static void put_meta(const char *key, uint64_t v)
{
    char b[8];
    jkey_be64(b, v);
    leveldb_writebatch_put(S.wb, key, strlen(key), b, 8);
}

/* The group's derived state and position go into its batch. */
static void batch_meta(void)
{
    struct counter *c, *tmp;
    HASH_ITER(hh, S.counters, c, tmp) {
        if (!c->dirty)
            continue;
        if (c->count == 0) {
            leveldb_writebatch_delete(S.wb, c->key, c->klen);
            HASH_DEL(S.counters, c);
            free(c->key);
            free(c);
            continue;
        }
        char v[16];
        jkey_be64(v, c->count);
        jkey_be64(v + 8, c->bytes);
        leveldb_writebatch_put(S.wb, c->key, c->klen, v, 16);
        c->dirty = false;
    }
    for (size_t i = 0; i < S.nsegs; i++) {
        struct segmeta *m = &S.segs[i];
        if (!m->dirty)
            continue;
        char k[9], v[32];
        segmeta_key(k, m->id);
        jkey_be64(v, m->first_lsn);
        jkey_be64(v + 8, m->last_lsn);
        jkey_be64(v + 16, m->refs);
        jkey_be64(v + 24, m->end);
        leveldb_writebatch_put(S.wb, k, 9, v, 32);
        m->dirty = false;
    }
    put_meta(KEY_META "indexed_lsn", S.last_lsn);
    put_meta(KEY_META "max_seq", S.max_seq);
    put_meta(KEY_META "epoch", S.tip_epoch);
    put_meta(KEY_META "tip_sum", journal_tip_sum(&S.tip));
    char pos[8];
    be32(pos, S.indexed_pos.seg);
    be32(pos + 4, S.indexed_pos.off);
    leveldb_writebatch_put(S.wb, KEY_META "indexed_pos", strlen(KEY_META "indexed_pos"), pos, 8);
}

static int batch_write(bool sync, char **lerr)
{
    fresh_put_all();
    batch_meta();
    leveldb_write(S.db, sync ? S.wsync : S.wnosync, S.wb, lerr);
    leveldb_writebatch_clear(S.wb);
    fresh_clear();
    gone_clear();
    S.deferred = 0;
    if (*lerr)
        return -EIO;
    if (sync)
        S.checkpoint = S.indexed_pos;
    return 0;
}

static int has_range_op(void *ctx, const struct journal_op_view *op)
{
    if (op->type == JOP_PURGE || op->type == JOP_SUB_DELETE)
        *(bool *)ctx = true;
    return 0;
}

/* One record of the log into the index batch. The record's payload is at
 * (seg, base) in the log and at data in memory. */
static int apply_record(uint8_t type, uint32_t seg, uint64_t base, const char *data, size_t len, char **lerr)
{
    S.rec_seg = seg;
    S.rec_base = base;
    S.rec_data = data;
    note_end(seg, base + len);
    S.rec_lsn = 0; /* a snapshot's state: committed */
    if (type == REC_PAIRS)
        return apply_pairs(data, len);
    if (type != REC_ENTRY)
        return -EINVAL;
    struct journal_entry e;
    if (journal_decode(data, len, &e) != 0)
        return -EINVAL;
    S.rec_lsn = e.lsn;
    bool range = false;
    if (journal_foreach_op(&e, has_range_op, &range) != 0)
        return -EINVAL;
    if (range && batch_write(false, lerr) != 0)
        /* a range removal reads the index: what this group wrote first */
        return -EIO;
    if (journal_apply(data, len, &sink) != 0)
        return -EINVAL;
    S.last_lsn = e.lsn;
    S.tip_epoch = e.epoch;
    journal_tip_set(&S.tip, data, len);
    note_entry(seg, e.lsn);
    return 0;
}

/* ------------------------------------------------------------ pruning */

/* Remove the segments nothing needs: no live message in them, no entry a
 * replica may still ask for, and an fsynced index past them (so a crash
 * replays nothing from them). Writer thread, or open. */
static void prune(void)
{
    pthread_mutex_lock(&S.mu);
    uint64_t floor = S.prune_floor;
    bool pinned = S.npins > 0;
    bool failed = S.fail_lsn != 0;
    pthread_mutex_unlock(&S.mu);
    /* a failed store may hold half a record in its batch: it writes and
     * removes nothing more */
    if (pinned || failed)
        return;
    uint64_t keep_from = UINT64_MAX;
    if (S.lim.keep_journal) {
        keep_from = S.last_lsn >= S.lim.retention ? S.last_lsn - S.lim.retention + 1 : 1;
        if (floor && floor < keep_from)
            keep_from = floor;
    }
    uint32_t cur = seglog_current();
    bool blocked_by_checkpoint = false;
    for (size_t i = 0; i < S.nsegs;) {
        struct segmeta *m = &S.segs[i];
        if (m->id == cur || m->refs || (m->last_lsn && m->last_lsn >= keep_from)) {
            i++;
            continue;
        }
        if (m->id >= S.checkpoint.seg) {
            blocked_by_checkpoint = true;
            i++;
            continue;
        }
        uint32_t id = m->id;
        int rc = seglog_remove(id);
        pthread_mutex_lock(&S.mu);
        S.freed = true;
        pthread_mutex_unlock(&S.mu);
        if (rc && rc != -ENOENT) {
            log_warn("store: cannot remove log segment %08" PRIx32 ": %s", id, strerror(-rc));
            i++;
            continue;
        }
        char k[9];
        segmeta_key(k, id);
        leveldb_writebatch_delete(S.wb, k, 9);
        pthread_mutex_lock(&S.mu);
        memmove(&S.segs[i], &S.segs[i + 1], (S.nsegs - i - 1) * sizeof *S.segs);
        S.nsegs--;
        pthread_mutex_unlock(&S.mu);
    }
    double now = mono_now();
    if (blocked_by_checkpoint && now - S.checkpoint_at >= CHECKPOINT_EVERY) {
        /* an fsynced index write lets the next round remove them */
        char *lerr = NULL;
        S.checkpoint_at = now;
        if (batch_write(true, &lerr) != 0) {
            log_warn("store: index checkpoint failed: %s", lerr);
            leveldb_free(lerr);
        }
    }
    pthread_mutex_lock(&S.mu);
    bool tell = S.freed;
    pthread_mutex_unlock(&S.mu);
    if (tell && S.loop)
        ev_async_send(S.loop, &S.async);
}

/* ------------------------------------------------------------ the writer */

static void signal_loop(void)
{
    S.report_owed = false;
    S.signalled_at = mono_now();
    if (S.loop)
        ev_async_send(S.loop, &S.async);
}

/* Durable up to done. A lazy report wakes the loop at most once per
 * LAZY_REPORT (the loop also reads it whenever it runs anyway): each
 * wake-up is a context switch, on a machine the producers, the slaves and
 * the other writers share. */
/* Written up to lsn, an fdatasync to come: a loop that waits to hear it
 * (store_want_written) is told now, the others with the durable report. */
static void report_written(uint64_t lsn)
{
    pthread_mutex_lock(&S.mu);
    S.written_lsn = lsn;
    bool tell = S.want_written > S.written_told;
    if (tell)
        S.written_told = lsn;
    pthread_mutex_unlock(&S.mu);
    if (tell && S.loop)
        ev_async_send(S.loop, &S.async);
}

static void report_durable(uint64_t done)
{
    pthread_mutex_lock(&S.mu);
    S.done_lsn = done;
    if (done > S.written_lsn)
        S.written_lsn = done;
    bool want = S.want_written > S.written_told;
    if (want)
        S.written_told = S.written_lsn;
    S.done_gen++;
    bool lazy = S.lazy;
    pthread_mutex_unlock(&S.mu);
    if (!lazy || want || mono_now() - S.signalled_at >= LAZY_REPORT)
        signal_loop();
    else
        S.report_owed = true;
}

static void fail(uint64_t lsn, const char *why)
{
    pthread_mutex_lock(&S.mu);
    if (!S.fail_lsn) {
        S.fail_lsn = lsn ? lsn : S.done_lsn + 1;
        snprintf(S.fail_msg, sizeof S.fail_msg, "%s", why);
    }
    S.held = false; /* the batch held back is never written now */
    pthread_mutex_unlock(&S.mu);
    if (S.loop)
        ev_async_send(S.loop, &S.async);
}

static bool keep_on_wipe(const char *k, size_t kl)
{
    static const char *const keep[] = {KEY_META "format", KEY_META "node_id", KEY_META "max_epoch"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        if (kl == strlen(keep[i]) && memcmp(k, keep[i], kl) == 0)
            return true;
    return false;
}

/* Everything but the node's identity goes, the log included; the mark
 * makes a crash before the snapshot is complete reopen empty. */
static int wipe(char *why, size_t whylen)
{
    char *lerr = NULL;
    leveldb_writebatch_clear(S.wb);
    fresh_clear();
    gone_clear();
    leveldb_iterator_t *it = leveldb_create_iterator(S.db, S.ropt);
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl;
        const char *k = leveldb_iter_key(it, &kl);
        if (!keep_on_wipe(k, kl))
            leveldb_writebatch_delete(S.wb, k, kl);
    }
    leveldb_iter_destroy(it);
    leveldb_writebatch_put(S.wb, KEY_META "snapshot", strlen(KEY_META "snapshot"), "1", 1);
    leveldb_write(S.db, S.wsync, S.wb, &lerr);
    leveldb_writebatch_clear(S.wb);
    if (lerr) {
        snprintf(why, whylen, "index write failed: %s", lerr);
        leveldb_free(lerr);
        return -EIO;
    }
    counters_free();
    pthread_mutex_lock(&S.mu);
    S.nsegs = 0;
    pthread_mutex_unlock(&S.mu);
    int rc = seglog_reset(why, whylen);
    if (rc)
        return rc;
    segmeta(seglog_current(), true);
    S.last_lsn = S.tip_epoch = S.max_seq = 0;
    journal_tip_reset(&S.tip, 0);
    S.indexed_pos = S.checkpoint = (struct seg_pos){seglog_current(), SEG_HEADER_LEN};
    return 0;
}

/* Fault injection for the tests: the index write lags this long behind
 * the group that starts a batch, whoever waits for it, as on a machine
 * too loaded to keep up. What this makes the loop see (an index behind
 * the journal) is what a loaded machine shows now and then. */
static double index_lag_left(void)
{
    return S.deferred && S.index_lag > 0 ? S.deferred_at + S.index_lag - mono_now() : 0;
}

/* One run of the group: records written and synced, reported durable,
 * applied to the index, reported indexed. A wipe ends a run. Returns the
 * item the next run starts with. */
/* Whether the group just applied may wait in the batch for the next
 * groups: while nobody waits to read the index (paging, scheduled jobs),
 * within DEFER_RECORDS and DEFER_MAX (what a crash replays), and while
 * entries keep coming (the writer writes the batch after DEFER_IDLE
 * without any). Messages acknowledged meanwhile never reach LevelDB
 * (struct fresh). */
static bool defer_index(void)
{
    if (index_lag_left() > 0) {
        pthread_mutex_lock(&S.mu);
        S.held = true;
        pthread_mutex_unlock(&S.mu);
        return true;
    }
    if (!S.deferred || S.deferred >= DEFER_RECORDS || mono_now() - S.deferred_at >= DEFER_MAX)
        return false;
    pthread_mutex_lock(&S.mu);
    bool want = S.want_indexed;
    S.held = !want;
    pthread_mutex_unlock(&S.mu);
    return !want;
}

/* The batch into the index; the loop learns how far it got. */
static bool index_write(bool sync)
{
    char *lerr = NULL;
    if (batch_write(sync, &lerr) != 0) {
        char why[512];
        snprintf(why, sizeof why, "index write failed: %s", lerr);
        leveldb_free(lerr);
        fail(0, why);
        return false;
    }
    pthread_mutex_lock(&S.mu);
    S.indexed_lsn = S.last_lsn;
    S.indexed_max_seq = S.max_seq;
    S.held = false;
    bool tell = S.want_indexed;
    S.want_indexed = false;
    pthread_mutex_unlock(&S.mu);
    if (tell && S.loop)
        ev_async_send(S.loop, &S.async);
    prune();
    return true;
}

static struct pending *run(struct pending *first, bool sync)
{
    struct seg_batch *b = &S.batch;
    seg_batch_clear(b);
    bool want_sync = false, index_sync = false, any_done = false;
    uint64_t nentries = 0;
    uint64_t done = 0, first_lsn = 0;
    struct pending *p;
    /* a run is all written by the loop (write_inline) or all not: the
     * loop wrote and reported the first kind, the writer only indexes it */
    bool written = first->written;
    for (p = first; p && p->kind != P_WIPE && p->written == written; p = next_pending(p)) {
        if (written)
            continue;
        switch (p->kind) {
        case P_ENTRY:
        case P_RAW: {
            p->at = seg_batch_add(b, p->kind == P_ENTRY ? REC_ENTRY : REC_PAIRS, p->data, p->len);
            if (p->kind == P_ENTRY) {
                want_sync |= p->sync;
                nentries++;
                done = p->lsn;
                any_done = true;
                if (!first_lsn)
                    first_lsn = p->lsn;
            }
            break;
        }
        case P_INSTALLED:
            done = p->lsn;
            any_done = true;
            index_sync = true;
            break;
        case P_MAX_EPOCH:
            index_sync = true;
            break;
        case P_WIPE:
            break;
        }
    }
    struct pending *stop = p;
    bool wipe_next = stop && stop->kind == P_WIPE;
    char why[512];
    struct seg_pos at = {0, 0};
    bool will_sync = (want_sync && sync) || index_sync;
    if (b->n > 0 && S.write_delay > 0) /* a test's slow disk: the entries sit in memory meanwhile */
        nanosleep(&(struct timespec){(time_t)S.write_delay, (long)((S.write_delay - (time_t)S.write_delay) * 1e9)},
                  NULL);
    if (b->n > 0 && seglog_write(b, S.lim.segment_bytes, will_sync, &at, why, sizeof why) != 0) {
        fail(first_lsn, why);
        return NULL;
    }
    S.unwritten -= b->bytes;
    if (will_sync) {
        if (any_done)
            report_written(done);
        double t0 = mono_now();
        if (S.syncs_left == 0) { /* a test's failing disk */
            snprintf(why, sizeof why, "fdatasync of the log failed: %s (STOMPD_TEST_FAIL_SYNC_AFTER)", strerror(EIO));
            fail(first_lsn, why);
            return NULL;
        }
        if (S.syncs_left > 0)
            S.syncs_left--;
        if (seglog_sync(why, sizeof why) != 0) {
            /* not cut, unlike a failed write: the loop was told the batch
             * is written (report_written) and auto-ack MESSAGEs whose
             * dequeues it holds are gone; what survives is the kernel's */
            fail(first_lsn, why);
            return NULL;
        }
        hist_add(&S.stats.fdatasync_us, (uint64_t)((mono_now() - t0) * 1e6));
        if (nentries)
            hist_add(&S.stats.group_entries, nentries);
    }
    if (any_done)
        report_durable(done);
    for (p = first; p != stop && !written; p = next_pending(p))
        if (p->kind == P_ENTRY || p->kind == P_RAW) {
            p->wseg = at.seg;
            p->woff = (uint64_t)at.off + p->at;
        }
    /* the index */
    char *lerr = NULL;
    if (!S.deferred)
        S.deferred_at = mono_now();
    for (p = first; p != stop; p = next_pending(p)) {
        int rc = 0;
        switch (p->kind) {
        case P_ENTRY:
        case P_RAW: {
            uint64_t base = p->woff + SEG_REC_HEADER;
            rc = apply_record(p->kind == P_ENTRY ? REC_ENTRY : REC_PAIRS, p->wseg, base, p->data, p->len, &lerr);
            S.indexed_pos = (struct seg_pos){p->wseg, (uint32_t)(base + p->len)};
            S.deferred++; /* after apply_record: a range removal writes the batch first */
            break;
        }
        case P_INSTALLED:
            S.last_lsn = p->lsn;
            S.tip_epoch = p->epoch;
            journal_tip_reset(&S.tip, p->sum);
            leveldb_writebatch_delete(S.wb, KEY_META "snapshot", strlen(KEY_META "snapshot"));
            break;
        case P_MAX_EPOCH:
            put_meta(KEY_META "max_epoch", p->epoch);
            break;
        case P_WIPE:
            break;
        }
        if (rc) {
            snprintf(why, sizeof why, "%s", lerr ? lerr : "a journal record is malformed");
            if (lerr)
                leveldb_free(lerr);
            fail(p->lsn ? p->lsn : first_lsn, why);
            return NULL;
        }
    }
    if (!wipe_next && !index_sync && defer_index())
        return stop;
    if (!index_write(index_sync))
        return NULL;
    if (wipe_next) {
        if (wipe(why, sizeof why) != 0) {
            fail(0, why);
            return NULL;
        }
        pthread_mutex_lock(&S.mu);
        S.done_lsn = S.indexed_lsn = S.written_lsn = S.written_told = S.want_written = 0;
        S.wipes_done++;
        S.done_gen++;
        S.freed = true; /* every segment went: the loop closes what it read them with */
        pthread_mutex_unlock(&S.mu);
        return next_pending(stop);
    }
    return stop;
}

/* The writer freed bytes the loop appended: a loop waiting for the queue
 * to fall (store_wait_room) hears of it once it has. The queue's count
 * goes down before the wait is read, and store_wait_room sets the wait
 * before it reads the count, so one of the two sees the other (both
 * sequentially consistent) and exactly one claims the wait. */
static void room_made(uint64_t freed)
{
    uint64_t left = atomic_fetch_sub(&S.queued, freed) - freed;
    uint64_t below = S.room_below;
    if (!below || left > below || !atomic_compare_exchange_strong(&S.room_below, &below, 0))
        return;
    pthread_mutex_lock(&S.mu);
    S.room = true;
    pthread_mutex_unlock(&S.mu);
    if (S.loop)
        ev_async_send(S.loop, &S.async);
}

static void *writer(void *arg)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        bool idle = false;
        double wait = CHECKPOINT_EVERY;
        if (S.report_owed)
            wait = S.signalled_at + LAZY_REPORT - mono_now();
        double lag = index_lag_left();
        if (S.deferred && wait > DEFER_IDLE)
            wait = lag > DEFER_IDLE ? (lag < wait ? lag : wait) : DEFER_IDLE;
        struct pending *list = (struct pending *)handoff_wait_for(&S.q, wait > 0 ? wait : 0, &idle);
        bool lagging = !list && idle && index_lag_left() > 0;
        if (!list && S.deferred && !lagging) {
            /* no more entries for now: the index catches up (a failed
             * store leaves its batch unwritten) */
            pthread_mutex_lock(&S.mu);
            bool failed = S.fail_lsn != 0;
            pthread_mutex_unlock(&S.mu);
            if (!failed)
                index_write(false);
            S.deferred = 0;
        } else if (!list && idle && !S.report_owed && !lagging) {
            /* nothing written for a while: what can go now goes (a
             * segment freed while producers wait for room) */
            prune();
        }
        if (!list && S.report_owed && (!idle || mono_now() - S.signalled_at >= LAZY_REPORT))
            signal_loop();
        if (!list && idle)
            continue;
        if (!list)
            break; /* closed, everything written */
        pthread_mutex_lock(&S.mu);
        bool sync = S.sync;
        bool failed = S.fail_lsn != 0;
        pthread_mutex_unlock(&S.mu);
        for (struct pending *p = list; p && !failed;)
            p = run(p, sync);
        handoff_done(&S.q);
        uint64_t freed = 0;
        while (list) {
            struct pending *n = next_pending(list);
            freed += list->len;
            free(list->data);
            free(list);
            list = n;
        }
        room_made(freed);
    }
    return NULL;
}

/* ------------------------------------------------------------ the loop's side */

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    pthread_mutex_lock(&S.mu);
    uint64_t done = S.done_lsn, gen = S.done_gen, fail_at = S.fail_lsn, indexed = S.indexed_lsn;
    uint64_t written = S.written_lsn;
    bool freed = S.freed, room = S.room;
    /* a report of what the store held before a wipe still on its way
     * (a slave about to install a snapshot) says nothing of what it
     * holds now: the wipe's own report (0) comes next */
    if (S.wipes_done != S.wipes) {
        gen = S.reported_gen;
        written = 0;
    }
    S.freed = S.room = false;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", S.fail_msg);
    pthread_mutex_unlock(&S.mu);
    if (gen != S.reported_gen) {
        S.reported_gen = gen;
        S.reported_done = done;
        if (S.done)
            S.done(done);
    }
    if (written > S.reported_written) {
        S.reported_written = written;
        if (S.written_fn)
            S.written_fn(written);
    }
    if (freed)
        seglog_drop_removed(); /* the loop's paging reads may hold removed segments open */
    if (indexed != S.reported_indexed || freed) {
        S.reported_indexed = indexed;
        if (S.indexed)
            S.indexed(indexed);
    }
    if (fail_at && !S.reported_fail) {
        S.reported_fail = true;
        if (S.fail)
            S.fail(fail_at, msg);
    }
    if (room && S.room_fn)
        S.room_fn();
}

uint64_t store_queued(void)
{
    return S.queued;
}

bool store_wait_room(uint64_t below, store_room_fn fn)
{
    if (below == 0)
        below = 1; /* 0 means "no wait" */
    S.room_fn = fn;
    S.room_below = below;
    uint64_t b = below;
    if (S.queued <= below && atomic_compare_exchange_strong(&S.room_below, &b, 0))
        return true;
    /* the writer needs what is on the chain to free anything */
    store_kick();
    return false;
}

int store_start(struct ev_loop *loop, bool sync, store_done_fn done, store_fail_fn failed, char *err,
                size_t errlen)
{
    S.loop = loop;
    S.sync = sync;
    S.done = done;
    S.fail = failed;
    ev_async_init(&S.async, async_cb);
    ev_async_start(loop, &S.async);
    ev_timer_init(&S.kick_timer, kick_cb, LAZY_REPORT, 0);
    int rc = pthread_create(&S.th, NULL, writer, NULL);
    if (rc) {
        snprintf(err, errlen, "cannot start the store thread: %s", strerror(rc));
        return -rc;
    }
    S.running = true;
    return 0;
}

void store_on_indexed(store_indexed_fn fn)
{
    S.indexed = fn;
}

void store_on_written(store_written_fn fn)
{
    S.written_fn = fn;
}

void store_drain(void)
{
    store_kick();
    while (S.running && !handoff_idle(&S.q))
        nanosleep(&(struct timespec){0, 1000000}, NULL);
}

bool store_want_written(uint64_t lsn)
{
    pthread_mutex_lock(&S.mu);
    bool already = S.written_lsn >= lsn;
    if (!already && lsn > S.want_written)
        S.want_written = lsn;
    pthread_mutex_unlock(&S.mu);
    return already;
}

static void chain(enum pending_kind kind, uint64_t lsn, uint64_t epoch, uint64_t sum, char *data, size_t len,
                  bool sync)
{
    struct pending *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    p->kind = kind;
    p->lsn = lsn;
    p->epoch = epoch;
    p->sum = sum;
    p->data = data;
    p->len = len;
    p->sync = sync;
    if (kind == P_ENTRY || kind == P_RAW)
        S.unwritten += len + SEG_REC_HEADER;
    uint64_t q = atomic_fetch_add(&S.queued, len) + len;
    if (q > S.stats.queued_peak)
        S.stats.queued_peak = q;
    S.chain_bytes += len;
    if (S.chain_tail)
        S.chain_tail->node.next = &p->node;
    else
        S.chain = p;
    S.chain_tail = p;
}

void store_kick(void)
{
    if (S.loop)
        ev_timer_stop(S.loop, &S.kick_timer);
    if (S.written) {
        /* the loop wrote these before the chain's: indexed first */
        struct pending *first = S.written, *last = S.written_tail;
        S.written = S.written_tail = NULL;
        S.written_bytes = 0;
        handoff_push_chain(&S.q, &first->node, &last->node);
    }
    if (!S.chain)
        return;
    struct pending *first = S.chain, *last = S.chain_tail;
    S.chain = S.chain_tail = NULL;
    S.chain_bytes = 0;
    handoff_push_chain(&S.q, &first->node, &last->node);
}

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    store_kick();
}

/* The loop writes the chain to the log itself, when the writer has
 * nothing to do (everything handed to it is written and indexed, so
 * nobody else touches the log's end), the chain is entries only, small
 * (INLINE_MAX_BYTES), fits the current segment, and no fdatasync waits
 * for any of it (local_mem, quorum_mem, a slave of those). One pwritev
 * here saves two thread wake-ups on the way to a RECEIPT (the writer's,
 * and the loop's when the writer reports), which on a busy machine cost
 * more than the write: as Redis writes its AOF in the loop and leaves the
 * fsync to a thread. The writer then only indexes the chain. A failed
 * write leaves it to the writer, which meets the error and fails the
 * store as it would have. */
static bool write_inline(void)
{
    if (!S.running || !S.loop || S.lazy_loop || S.chain_bytes > INLINE_MAX_BYTES || S.write_delay > 0)
        return false;
    pthread_mutex_lock(&S.mu);
    bool sync = S.sync, failed = S.fail_lsn != 0;
    pthread_mutex_unlock(&S.mu);
    /* idle: the writer handed everything back (handoff_done, after its
     * last write and report), and only this thread gives it more */
    if (failed || !handoff_idle(&S.q))
        return false;
    struct seg_batch *b = &S.lbatch;
    seg_batch_clear(b);
    uint64_t last = 0;
    for (struct pending *p = S.chain; p; p = next_pending(p)) {
        /* only plain entries, none an fdatasync waits for: the others
         * are the writer's (the chain is still this thread's, so a
         * record placed here and then left is placed again there) */
        if (p->kind != P_ENTRY || (sync && p->sync))
            return false;
        p->at = seg_batch_add(b, REC_ENTRY, p->data, p->len);
        last = p->lsn;
    }
    if (!seglog_fits(b->bytes, S.lim.segment_bytes))
        return false; /* a new segment fdatasyncs the finished one: the writer's job */
    struct seg_pos at;
    char why[512];
    if (seglog_write(b, S.lim.segment_bytes, false, &at, why, sizeof why) != 0)
        return false;
    for (struct pending *p = S.chain; p; p = next_pending(p)) {
        p->written = true;
        p->wseg = at.seg;
        p->woff = (uint64_t)at.off + p->at;
    }
    S.unwritten -= b->bytes;
    S.stats.inline_writes++;
    pthread_mutex_lock(&S.mu);
    S.done_lsn = S.written_lsn = last;
    S.done_gen++;
    pthread_mutex_unlock(&S.mu);
    return true;
}

bool store_kick_lazy(void)
{
    if (!S.chain)
        return false;
    if (write_inline()) {
        /* the writer indexes them later, in one hand-off per LAZY_REPORT
         * or LAZY_KICK_BYTES: a wake-up of its thread per entry would
         * cost what the write here saved */
        if (S.written_tail)
            S.written_tail->node.next = &S.chain->node;
        else
            S.written = S.chain;
        S.written_tail = S.chain_tail;
        S.written_bytes += S.chain_bytes;
        S.chain = S.chain_tail = NULL;
        S.chain_bytes = 0;
        if (S.written_bytes >= LAZY_KICK_BYTES)
            store_kick();
        else if (!ev_is_active(&S.kick_timer)) {
            ev_timer_set(&S.kick_timer, LAZY_REPORT, 0);
            ev_timer_start(S.loop, &S.kick_timer);
        }
        /* reported as the writer would (its watcher runs before the loop
         * polls; the caller keeps that poll from blocking): commits run
         * where they always do, not inside the caller's before-sleep work */
        ev_feed_event(S.loop, &S.async, EV_ASYNC);
        return true;
    }
    if (!S.lazy_loop || !S.loop || S.chain_bytes >= LAZY_KICK_BYTES)
        store_kick();
    else if (!ev_is_active(&S.kick_timer)) {
        /* set each time: a stopped timer keeps what was left of it */
        ev_timer_set(&S.kick_timer, LAZY_REPORT, 0);
        ev_timer_start(S.loop, &S.kick_timer);
    }
    return false;
}

bool store_chain_waiting(void)
{
    return S.chain && !S.lazy_loop;
}

void store_append(uint64_t lsn, char *data, size_t len, bool sync)
{
    chain(P_ENTRY, lsn, 0, 0, data, len, sync);
    S.last_appended_lsn = lsn;
}

void store_wipe(void)
{
    S.wipes++;
    S.reported_written = 0;
    chain(P_WIPE, 0, 0, 0, NULL, 0, true);
    store_kick();
}

void store_put_raw(const char *pairs, size_t len)
{
    char *copy = malloc(len ? len : 1);
    if (!copy)
        abort();
    memcpy(copy, pairs, len);
    chain(P_RAW, 0, 0, 0, copy, len, false);
}

void store_snapshot_installed(uint64_t lsn, uint64_t epoch, uint64_t sum)
{
    chain(P_INSTALLED, lsn, epoch, sum, NULL, 0, true);
    store_kick();
}

void store_set_max_epoch(uint64_t epoch)
{
    if (epoch > S.info.max_epoch)
        S.info.max_epoch = epoch;
    chain(P_MAX_EPOCH, 0, epoch, 0, NULL, 0, true);
    if (S.running)
        store_kick();
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

static uint64_t indexed_lsn(bool want)
{
    pthread_mutex_lock(&S.mu);
    uint64_t i = S.indexed_lsn;
    if (want && i < S.last_appended_lsn)
        S.want_indexed = true;
    pthread_mutex_unlock(&S.mu);
    return i;
}

uint64_t store_indexed_lsn(void)
{
    uint64_t i = indexed_lsn(true);
    if (i < S.last_appended_lsn && S.written)
        store_kick(); /* someone waits for the index: what the loop wrote goes now */
    return i;
}

uint64_t store_max_seq(void)
{
    pthread_mutex_lock(&S.mu);
    uint64_t seq = S.indexed_max_seq;
    pthread_mutex_unlock(&S.mu);
    return seq;
}

void store_set_lazy_reports(bool lazy)
{
    pthread_mutex_lock(&S.mu);
    S.lazy = lazy;
    pthread_mutex_unlock(&S.mu);
    S.lazy_loop = lazy;
}

void store_poll(void)
{
    if (S.lazy_loop && S.loop)
        async_cb(S.loop, &S.async, 0);
}

void store_report_now(void)
{
    if (S.loop)
        async_cb(S.loop, &S.async, 0);
}

void store_poll_indexed(bool urgent)
{
    uint64_t i = indexed_lsn(urgent); /* urgent: asks the writer to tell when it is behind */
    if (urgent && i < S.last_appended_lsn && S.written)
        store_kick(); /* what the loop wrote, to be indexed now */
    if (i != S.reported_indexed) {
        S.reported_indexed = i;
        if (S.indexed)
            S.indexed(i);
    }
}

bool store_drained(void)
{
    /* the writer sets held before it finishes its item: read it after */
    bool idle = !S.chain && !S.written && handoff_idle(&S.q);
    pthread_mutex_lock(&S.mu);
    bool held = S.held;
    pthread_mutex_unlock(&S.mu);
    return idle && !held;
}

/* The first entry of the log's unbroken tail: a segment kept only for
 * the messages still pending in it, before a gap, holds entries no
 * replica can stream from. */
uint64_t store_first_lsn(void)
{
    uint64_t first = 0, next = 0;
    pthread_mutex_lock(&S.mu);
    for (size_t i = S.nsegs; i-- > 0;) {
        const struct segmeta *m = &S.segs[i];
        if (!m->first_lsn)
            continue;
        if (next && m->last_lsn + 1 != next)
            break;
        first = next = m->first_lsn;
    }
    pthread_mutex_unlock(&S.mu);
    return first;
}

uint64_t store_bytes(void)
{
    uint64_t idx = 0;
    if (S.db) {
        const char *start = "", *limit = "\xff\xff\xff\xff";
        size_t sl = 0, ll = 4;
        leveldb_approximate_sizes(S.db, 1, &start, &sl, &limit, &ll, &idx);
    }
    return seglog_bytes() + idx + S.unwritten;
}

const struct store_info *store_info(void)
{
    return &S.info;
}

/* ------------------------------------------------------------ open, replay, close */

static int any_key(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    *(bool *)ctx = true;
    return 1;
}

/* No index data in dir (or no dir): a new index may be made there. A
 * lock and an info log alone are what a first start cut short leaves. */
static bool index_dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT;
    struct dirent *de;
    bool empty = true;
    while (empty && (de = readdir(d)))
        empty = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strcmp(de->d_name, "LOCK") ||
                !strcmp(de->d_name, "LOG") || !strcmp(de->d_name, "LOG.old");
    closedir(d);
    return empty;
}

static int open_index(const char *dir, char *err, size_t errlen)
{
    S.opt = leveldb_options_create();
    /* only where there is nothing: over a damaged index (its CURRENT
     * lost), LevelDB made a new one and deleted the old tables before the
     * start was refused, and with them what a repair could have saved
     * (helper-113) */
    bool fresh = index_dir_empty(dir);
    char current[4400];
    snprintf(current, sizeof current, "%s/CURRENT", dir);
    if (!fresh && access(current, F_OK) != 0 && errno == ENOENT) {
        /* set aside, whole, for LevelDB's RepairDB; the log rebuilds a
         * new one if it still holds the whole history (else the start is
         * refused below) */
        char aside[4400];
        snprintf(aside, sizeof aside, "%s.lost-%lld", dir, (long long)time(NULL));
        if (rename(dir, aside) != 0) {
            snprintf(err, errlen, "cannot move aside the index %s, which lost its CURRENT file: %s", dir,
                     strerror(errno));
            return -EIO;
        }
        log_warn("store: the index %s lost its CURRENT file: moved to %s as it was (LevelDB's RepairDB can read "
                 "it); a new one is made", dir, aside);
        fresh = true;
    }
    leveldb_options_set_create_if_missing(S.opt, fresh);
    leveldb_options_set_paranoid_checks(S.opt, 1);
    leveldb_options_set_write_buffer_size(S.opt, 16 << 20);
    /* index records are small and short-lived: compressing them costs
     * more than it saves */
    leveldb_options_set_compression(S.opt, leveldb_no_compression);
    S.cache = leveldb_cache_create_lru(32 << 20);
    leveldb_options_set_cache(S.opt, S.cache);
    S.filter = leveldb_filterpolicy_create_bloom(10);
    leveldb_options_set_filter_policy(S.opt, S.filter);
    S.ropt = leveldb_readoptions_create();
    /* a damaged table is an error, not fewer records (helper-113: one
     * flipped bit served a queue without 114 of its 200 messages) */
    leveldb_readoptions_set_verify_checksums(S.ropt, 1);
    S.wsync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(S.wsync, 1);
    S.wnosync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(S.wnosync, 0);
    char *lerr = NULL;
    S.db = leveldb_open(S.opt, dir, &lerr);
    if (S.db)
        return 0;
    if (lerr && strstr(lerr, "lock")) {
        snprintf(err, errlen, "the store %s is in use by another process (is another stompd running with this "
                              "broker.data_dir?): %s", S.dir, lerr);
        leveldb_free(lerr);
        return -EBUSY;
    }
    if (lerr && strstr(lerr, "orruption")) {
        snprintf(err, errlen, "the store %s is corrupt (%s); restore it from a replica or a backup, or move it "
                              "away to start empty", S.dir, lerr);
        leveldb_free(lerr);
        return -EIO;
    }
    return set_err(err, errlen, dir, lerr);
}

/* A new store's identity, written synchronously. */
/* A stompd-2 index (its locations carry no crc) is read as it is, and
 * marked stompd-3 first: an older stompd cannot read the locations
 * written from now on, and refuses the store rather than skip them. */
static int mark_format(char *err, size_t errlen)
{
    char *lerr = NULL;
    leveldb_put(S.db, S.wsync, FORMAT_KEY, strlen(FORMAT_KEY), FORMAT_VALUE, strlen(FORMAT_VALUE), &lerr);
    if (lerr)
        return set_err(err, errlen, "cannot mark the store's format", lerr);
    log_info("store: format %s marked %s: messages indexed from now on carry a checksum (an older stompd refuses "
             "this store)", FORMAT_OLD, FORMAT_VALUE);
    return 0;
}

static int init_identity(char *err, size_t errlen)
{
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
    snprintf(id, sizeof id, "%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5],
             rnd[6], rnd[7]);
    char *lerr = NULL;
    leveldb_writebatch_t *b = leveldb_writebatch_create();
    leveldb_writebatch_put(b, FORMAT_KEY, strlen(FORMAT_KEY), FORMAT_VALUE, strlen(FORMAT_VALUE));
    leveldb_writebatch_put(b, KEY_META "node_id", strlen(KEY_META "node_id"), id, strlen(id));
    leveldb_write(S.db, S.wsync, b, &lerr);
    leveldb_writebatch_destroy(b);
    if (lerr)
        return set_err(err, errlen, "cannot initialise the store", lerr);
    S.info.created = true;
    return 0;
}

/* Apply the log's records past the index's position: those written
 * before a crash but not yet indexed. A torn record at the very end (a
 * write cut short) is cut off; anywhere else it is corruption. */
static int replay(char *err, size_t errlen)
{
    struct seg_iter it;
    seg_iter_init(&it, S.indexed_pos);
    uint64_t n = 0;
    int rc;
    char *lerr = NULL;
    bool failed = false; /* err says why */
    S.replaying = true;
    while ((rc = seg_iter_next(&it)) > 0) {
        if (it.type == REC_ENTRY) {
            struct journal_entry e;
            if (journal_decode(it.data, it.len, &e) != 0 ||
                (S.last_lsn && e.lsn != S.last_lsn + 1)) {
                snprintf(err, errlen, "the store's log has a bad entry at segment %08" PRIx32 " offset %" PRIu32
                                      " (after lsn %" PRIu64 "): restore the store from a replica or a backup",
                         it.at.seg, it.at.off, S.last_lsn);
                rc = -EIO;
                failed = true;
                break;
            }
        }
        uint64_t base = (uint64_t)it.at.off + SEG_REC_HEADER;
        if (apply_record(it.type, it.at.seg, base, it.data, it.len, &lerr) != 0) {
            snprintf(err, errlen, "cannot replay the store's log at segment %08" PRIx32 " offset %" PRIu32 ": %s",
                     it.at.seg, it.at.off, lerr ? lerr : "malformed record");
            if (lerr)
                leveldb_free(lerr);
            rc = -EIO;
            failed = true;
            break;
        }
        S.indexed_pos = it.pos;
        if (++n % 4096 == 0 && batch_write(false, &lerr) != 0) {
            rc = set_err(err, errlen, "index write failed", lerr);
            failed = true;
            break;
        }
    }
    S.replaying = false;
    if (rc < 0 && !failed)
        snprintf(err, errlen, "cannot read the store's log segment %08" PRIx32 " at offset %" PRIu32 ": %s",
                 it.pos.seg, it.pos.off, strerror(-rc));
    if (rc == 0 && it.torn) {
        if (it.pos.seg != seglog_current()) {
            snprintf(err, errlen, "the store's log segment %08" PRIx32 " is damaged at offset %" PRIu32 " (not at "
                                  "the end of the log): restore the store from a replica or a backup",
                     it.pos.seg, it.pos.off);
            rc = -EIO;
        } else {
            log_warn("store: the log ended in a record written only in part (segment %08" PRIx32 ", offset %" PRIu32
                     "): cut off", it.pos.seg, it.pos.off);
            seglog_truncate(it.pos.seg, it.pos.off);
        }
    } else if (rc == 0 && it.pos.seg == seglog_current()) {
        /* where the records end, before zeros written ahead */
        seglog_truncate(it.pos.seg, it.pos.off);
    }
    seg_iter_free(&it);
    if (rc == 0 && n)
        log_info("store: %" PRIu64 " log records applied to the index at start (up to lsn %" PRIu64 ")", n, S.last_lsn);
    if (rc == 0 && batch_write(true, &lerr) != 0)
        rc = set_err(err, errlen, "index write failed", lerr);
    return rc;
}

/* A new index over an existing log is rebuilt from the log when the log
 * still holds the store's whole history: it starts with entry 1, or with
 * a snapshot. A log whose older segments were removed (their messages all
 * acknowledged) no longer says what those entries made (durable
 * subscriptions, delivery counts): refused, rather than serve a store
 * missing them. */
static int check_rebuild(char *err, size_t errlen)
{
    uint32_t ids[1];
    if (seglog_ids(ids, 1) == 0)
        return 0;
    struct seg_iter it;
    seg_iter_init(&it, (struct seg_pos){ids[0], SEG_HEADER_LEN});
    int rc = seg_iter_next(&it);
    bool whole = rc <= 0 || it.type == REC_PAIRS;
    if (rc > 0 && it.type == REC_ENTRY) {
        struct journal_entry e;
        whole = journal_decode(it.data, it.len, &e) == 0 && e.lsn == 1;
    }
    seg_iter_free(&it);
    if (!whole) {
        snprintf(err, errlen, "the store %s has lost its index (%s/index), and its log no longer starts at "
                              "the beginning of its history (older segments were removed): it cannot be rebuilt. "
                              "Restore this node from a replica (move %s away and start it as a slave) or a backup",
                 S.dir, S.dir, S.dir);
        return -EIO;
    }
    if (rc > 0)
        log_warn("store %s: its index was missing: rebuilding it from the log", S.dir);
    return 0;
}


/* After replay, every segment whose messages the index lists must be
 * there and readable: one lost, or that the service cannot read, served
 * its queues without them, an error for each as it was met (helper-113).
 * Gone segments with nothing live (pruned before a crash the index did
 * not see) are forgotten. */
static int check_segments(char *err, size_t errlen)
{
    for (size_t i = 0; i < S.nsegs;) {
        struct segmeta *m = &S.segs[i];
        char path[4200];
        snprintf(path, sizeof path, "%s/log/%08" PRIx32 ".log", S.dir, m->id);
        struct stat st;
        bool present = stat(path, &st) == 0;
        if (present && m->refs && (uint64_t)st.st_size < m->end) {
            snprintf(err, errlen, "the store %s is missing part of its log: log segment %s, which holds %" PRIu64
                                  " messages the index lists, is %lld bytes long, and the index has records in it up "
                                  "to offset %" PRIu64 ". Restore this node from a replica (move %s away and start "
                                  "it as a slave) or a backup", S.dir, path, m->refs, (long long)st.st_size, m->end,
                     S.dir);
            return -EIO;
        }
        if (present && m->refs) {
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                snprintf(err, errlen, "cannot read log segment %s, which holds %" PRIu64 " messages the index "
                                      "lists: %s", path, m->refs, strerror(errno));
                return -errno;
            }
            close(fd);
        }
        if (present) {
            i++;
            continue;
        }
        if (m->refs) {
            snprintf(err, errlen, "the store %s is missing log segment %s, which holds %" PRIu64 " messages the "
                                  "index lists. Restore this node from a replica (move %s away and start it as a "
                                  "slave) or a backup", S.dir, path, m->refs, S.dir);
            return -EIO;
        }
        char k[9];
        segmeta_key(k, m->id);
        leveldb_writebatch_delete(S.wb, k, 9);
        memmove(&S.segs[i], &S.segs[i + 1], (S.nsegs - i - 1) * sizeof *S.segs);
        S.nsegs--;
    }
    return 0;
}

static int open_v2(char *err, size_t errlen)
{
    char path[4200];
    bool fresh_index = false, mark_old = false;
    snprintf(path, sizeof path, "%s/index", S.dir);
    int rc = mkdir_p(path);
    if (rc) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(-rc));
        return rc;
    }
    if ((rc = open_index(path, err, errlen)) != 0)
        return rc;
    char *v;
    size_t vl;
    rc = idx_get(FORMAT_KEY, strlen(FORMAT_KEY), &v, &vl);
    if (rc == 0) {
        bool ok = vl == strlen(FORMAT_VALUE) && memcmp(v, FORMAT_VALUE, vl) == 0;
        bool old = vl == strlen(FORMAT_OLD) && memcmp(v, FORMAT_OLD, vl) == 0;
        if (!ok && !old)
            snprintf(err, errlen, "the store %s has format '%.*s'; this stompd reads '%s' and '%s'", S.dir, (int)vl, v,
                     FORMAT_VALUE, FORMAT_OLD);
        free(v);
        if (!ok && !old)
            return -EINVAL;
        mark_old = old;
    } else if (rc == -ENOENT) {
        bool nonempty = false;
        if (store_scan("", 0, any_key, &nonempty) < 0 || nonempty) {
            snprintf(err, errlen, "%s holds a LevelDB database that is not a stompd store index", path);
            return -EINVAL;
        }
        if ((rc = init_identity(err, errlen)) != 0)
            return rc;
        fresh_index = true;
    } else {
        snprintf(err, errlen, "cannot read the store %s", S.dir);
        return rc;
    }
    if (idx_get(KEY_META "node_id", strlen(KEY_META "node_id"), &v, &vl) == 0) {
        snprintf(S.info.node_id, sizeof S.info.node_id, "%.*s", (int)vl, v);
        free(v);
    }
    S.wb = leveldb_writebatch_create();
    snprintf(path, sizeof path, "%s/log", S.dir);
    if ((rc = seglog_open(path, err, errlen)) != 0)
        return rc;
    bool interrupted = idx_get(KEY_META "snapshot", strlen(KEY_META "snapshot"), &v, &vl) == 0;
    if (interrupted) {
        free(v);
        log_warn("store %s: an interrupted snapshot install left it incomplete; starting empty", S.dir);
        if ((rc = wipe(err, errlen)) != 0)
            return rc;
        char *lerr = NULL;
        leveldb_delete(S.db, S.wsync, KEY_META "snapshot", strlen(KEY_META "snapshot"), &lerr);
        if (lerr)
            return set_err(err, errlen, "cannot write the store", lerr);
    }
    if (fresh_index && (rc = check_rebuild(err, errlen)) != 0)
        return rc;
    if (store_scan(KEY_SEG, strlen(KEY_SEG), load_segmeta, NULL) < 0) {
        snprintf(err, errlen, "cannot read the store %s", S.dir);
        return -EIO;
    }
    /* the segments the log has; metadata of gone ones is dropped once the
     * replay below has brought their live counts up to date */
    size_t nids = seglog_ids(NULL, 0);
    uint32_t *ids = malloc((nids ? nids : 1) * sizeof *ids); /* all of them (helper-115: 4,096 at most, and a
                                                                * log of more was refused as missing its tail) */
    if (!ids)
        abort();
    nids = seglog_ids(ids, nids); /* none comes or goes while the store opens */
    for (size_t j = 0; j < nids; j++)
        segmeta(ids[j], true);
    S.last_lsn = meta_u64(KEY_META "indexed_lsn");
    S.max_seq = meta_u64(KEY_META "max_seq");
    S.tip_epoch = meta_u64(KEY_META "epoch");
    journal_tip_reset(&S.tip, meta_u64(KEY_META "tip_sum"));
    S.indexed_pos = (struct seg_pos){nids ? ids[0] : 1, SEG_HEADER_LEN};
    if (idx_get(KEY_META "indexed_pos", strlen(KEY_META "indexed_pos"), &v, &vl) == 0) {
        if (vl == 8)
            S.indexed_pos = (struct seg_pos){get_be32(v), get_be32(v + 4)};
        free(v);
    }
    /* The index says how far the log reached: a log that ends before that
     * lost its tail (truncated, or a lost file), and serving from it
     * would silently drop acknowledged messages. */
    bool have_seg = false;
    for (size_t j = 0; j < nids; j++)
        have_seg |= ids[j] == S.indexed_pos.seg;
    free(ids);
    char segpath[4200];
    struct stat st;
    snprintf(segpath, sizeof segpath, "%s/log/%08" PRIx32 ".log", S.dir, S.indexed_pos.seg);
    if (S.last_lsn && (!have_seg || stat(segpath, &st) != 0 || (uint64_t)st.st_size < S.indexed_pos.off)) {
        snprintf(err, errlen, "the store %s is missing part of its log: its index has entries up to lsn %" PRIu64
                              " in segment %08" PRIx32 " up to offset %" PRIu32 ", but that segment is %s. Restore "
                              "this node from a replica (move %s away and start it as a slave) or a backup",
                 S.dir, S.last_lsn, S.indexed_pos.seg, S.indexed_pos.off, have_seg ? "shorter" : "gone", S.dir);
        return -EIO;
    }
    S.checkpoint = S.indexed_pos;
    /* marked once the checks that need no replay have passed (a store
     * refused by them stays readable by the stompd it came from), and
     * before the replay indexes anything with a checksum */
    if (mark_old && (rc = mark_format(err, errlen)) != 0)
        return rc;
    if ((rc = replay(err, errlen)) != 0)
        return rc;
    if ((rc = check_segments(err, errlen)) != 0)
        return rc;
    S.info.applied_lsn = S.last_lsn;
    S.info.epoch = S.tip_epoch;
    S.info.tip_sum = journal_tip_sum(&S.tip);
    S.info.max_epoch = meta_u64(KEY_META "max_epoch");
    if (S.info.max_epoch < S.info.epoch)
        S.info.max_epoch = S.info.epoch;
    S.info.first_lsn = store_first_lsn();
    S.info.max_seq = S.max_seq;
    S.done_lsn = S.reported_done = S.indexed_lsn = S.reported_indexed = S.last_lsn;
    S.indexed_max_seq = S.max_seq;
    S.last_appended_lsn = S.last_lsn;
    return 0;
}

static int migrate_v1(const char *v1dir, char *err, size_t errlen);

int store_open(const char *dir, const struct store_limits *lim, char *err, size_t errlen)
{
    memset(&S.info, 0, sizeof S.info);
    S.lim = *lim;
    if (!S.lim.segment_bytes)
        S.lim.segment_bytes = 64u << 20;
    if (!S.lim.retention)
        S.lim.retention = 100000;
    handoff_init(&S.q);
    S.opened = true;
    S.fail_lsn = 0;
    S.fail_msg[0] = '\0';
    S.reported_fail = false;
    S.prune_floor = 0;
    S.npins = 0;
    const char *lag = getenv("STOMPD_TEST_INDEX_LAG_MS");
    S.index_lag = lag ? atoi(lag) / 1000.0 : 0;
    if (S.index_lag > 0)
        log_warn("store: STOMPD_TEST_INDEX_LAG_MS is set: the index lags the journal by %s ms (a test's fault "
                 "injection)", lag);
    const char *delay = getenv("STOMPD_TEST_WRITE_DELAY_MS");
    S.write_delay = delay ? atoi(delay) / 1000.0 : 0;
    if (S.write_delay > 0)
        log_warn("store: STOMPD_TEST_WRITE_DELAY_MS is set: each group is written %s ms late (a test's fault "
                 "injection)", delay);
    const char *fail_sync = getenv("STOMPD_TEST_FAIL_SYNC_AFTER");
    S.syncs_left = fail_sync ? atol(fail_sync) : -1;
    if (S.syncs_left >= 0)
        log_warn("store: STOMPD_TEST_FAIL_SYNC_AFTER is set: the log's fdatasync after %s more fails (a test's "
                 "fault injection)", fail_sync);
    S.nsegs = 0;
    S.done_gen = S.reported_gen = 0;
    S.wipes = S.wipes_done = 0;
    S.checkpoint_at = 0;
    snprintf(S.dir, sizeof S.dir, "%s", dir);
    int rc = mkdir_p(dir);
    if (rc) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(-rc));
        return rc;
    }
    char v1[4200];
    struct stat st;
    snprintf(v1, sizeof v1, "%s/CURRENT", dir);
    if (stat(v1, &st) == 0) {
        /* a format-1 store: LevelDB directly in dir */
        snprintf(v1, sizeof v1, "%s.v1", dir);
        if (rename(dir, v1) != 0 || mkdir_p(dir) != 0) {
            snprintf(err, errlen, "cannot move the format-1 store %s aside to convert it: %s", dir, strerror(errno));
            return -EIO;
        }
    } else {
        snprintf(v1, sizeof v1, "%s.v1/CURRENT", dir);
        if (stat(v1, &st) == 0)
            snprintf(v1, sizeof v1, "%s.v1", dir); /* a conversion was interrupted: again */
        else
            v1[0] = '\0';
    }
    rc = open_v2(err, errlen);
    if (rc == 0 && v1[0])
        rc = migrate_v1(v1, err, errlen);
    return rc;
}

void store_close(void)
{
    store_kick();
    if (S.running) {
        handoff_close(&S.q);
        pthread_join(S.th, NULL);
        S.running = false;
        ev_async_stop(S.loop, &S.async);
        S.loop = NULL;
    }
    struct pending *p = S.opened ? (struct pending *)handoff_take(&S.q) : NULL;
    while (p) {
        struct pending *n = next_pending(p);
        free(p->data);
        free(p);
        p = n;
    }
    S.queued = S.room_below = 0;
    S.room_fn = NULL;
    if (S.wb) {
        leveldb_writebatch_destroy(S.wb);
        S.wb = NULL;
    }
    fresh_clear();
    gone_clear();
    free(S.gone_pfx);
    S.gone_pfx = NULL;
    S.capgone_pfx = 0;
    seg_batch_free(&S.batch);
    seg_batch_free(&S.lbatch);
    counters_free();
    journal_tip_reset(&S.tip, 0);
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
    seglog_close();
    free(S.segs);
    S.segs = NULL;
    S.nsegs = S.capsegs = 0;
    if (S.opened)
        handoff_destroy(&S.q);
    S.opened = false;
}

/* ------------------------------------------------------------ the master's reads */

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
    /* no segment goes while a snapshot reads messages from them */
    pthread_mutex_lock(&S.mu);
    S.npins++;
    pthread_mutex_unlock(&S.mu);
    s->snap = leveldb_create_snapshot(S.db);
    s->ro = leveldb_readoptions_create();
    leveldb_readoptions_set_verify_checksums(s->ro, 1);
    leveldb_readoptions_set_snapshot(s->ro, s->snap);
    leveldb_readoptions_set_fill_cache(s->ro, 0);
    /* the position is written in the batch of the state it describes, so
     * reading it through the snapshot says exactly where it stands */
    *lsn = snap_u64(s->ro, KEY_META "indexed_lsn");
    *epoch = snap_u64(s->ro, KEY_META "epoch");
    *sum = snap_u64(s->ro, KEY_META "tip_sum");
    s->it = leveldb_create_iterator(S.db, s->ro);
    leveldb_iter_seek_to_first(s->it);
    return s;
}

static void put_u32(struct buf *b, uint32_t v)
{
    char x[4];
    be32(x, v);
    buf_append(b, x, 4);
}

/* Only a want of resources passes; an I/O error (a bad sector, a file
 * shorter than the index says) is there at the next read too, and
 * retrying it would hold everything behind it for good (helper-117). */
static bool may_pass(int rc)
{
    return rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM || rc == -EAGAIN || rc == -EINTR;
}

uint32_t store_snapshot_next(struct store_snapshot *s, struct buf *out, size_t max_bytes, bool *failed)
{
    uint32_t n = 0;
    size_t start = buf_used(out);
    while (leveldb_iter_valid(s->it) && buf_used(out) - start < max_bytes) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(s->it, &kl);
        const char *v = leveldb_iter_value(s->it, &vl);
        /* this node's own bookkeeping (meta, segments, counters) is not
         * state: the slave writes its own */
        bool skip = kl == 0 || k[0] == '!' || k[0] == KEY_C;
        struct store_msgref r;
        if (!skip && is_msg_key(k, kl) && loc_decode(v, vl, &r)) {
            /* the message itself goes: the slave keeps it in its own log */
            put_u32(out, (uint32_t)kl);
            buf_append(out, k, kl);
            put_u32(out, r.len);
            buf_reserve(out, r.len);
            int rc = read_msg(&r, out->data + out->len);
            if (rc != 0) {
                log_err("store: snapshot: cannot read the message of a key from log segment %08" PRIx32
                        " offset %" PRIu32 ": %s%s", r.pos.seg, r.pos.off,
                        rc == -EBADMSG ? "checksum mismatch" : strerror(-rc),
                        may_pass(rc) ? " (the snapshot stops; the slave asks again)" : "");
                out->len -= kl + 8;
                if (may_pass(rc)) {
                    /* a slave that lacked it would lose it at a failover */
                    *failed = true;
                    return n;
                }
            } else {
                out->len += r.len;
                n++;
            }
        } else if (!skip) {
            put_u32(out, (uint32_t)kl);
            buf_append(out, k, kl);
            put_u32(out, (uint32_t)vl);
            buf_append(out, v, vl);
            n++;
        }
        leveldb_iter_next(s->it);
    }
    if (!leveldb_iter_valid(s->it)) {
        /* the end, or an index that could not be read (a table not
         * opened, a damaged block): a snapshot cut short there would be
         * installed as whole (helper-118) */
        char *lerr = NULL;
        leveldb_iter_get_error(s->it, &lerr);
        if (lerr) {
            log_err("store: snapshot: cannot read the index: %s (the snapshot stops; the slave asks again)", lerr);
            leveldb_free(lerr);
            *failed = true;
            return n;
        }
    }
    /* an end of chunk with pairs still to come never returns 0 */
    if (n == 0 && leveldb_iter_valid(s->it))
        return store_snapshot_next(s, out, max_bytes, failed);
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
    pthread_mutex_lock(&S.mu);
    S.npins--;
    pthread_mutex_unlock(&S.mu);
}

/* Readers of entries for replicas keep where they stopped, so a slave
 * catching up reads the log sequentially. Two threads read entries: the
 * master's reader (offload.c) and the loop (a slave's handshake,
 * store_entry_tip), hence the lock. */
static struct {
    uint64_t next_lsn;
    struct seg_pos pos;
    uint64_t used;
} cursors[4];
static uint64_t cursor_clock;
static pthread_mutex_t cursors_mu = PTHREAD_MUTEX_INITIALIZER;

/* Where to start reading for lsn: a cursor that stopped there, or the
 * start of the segment holding it. */
static bool entry_start(uint64_t lsn, struct seg_pos *pos)
{
    pthread_mutex_lock(&cursors_mu);
    for (int i = 0; i < 4; i++) {
        if (cursors[i].next_lsn == lsn && lsn) {
            *pos = cursors[i].pos;
            pthread_mutex_unlock(&cursors_mu);
            return true;
        }
    }
    pthread_mutex_unlock(&cursors_mu);
    bool found = false;
    pthread_mutex_lock(&S.mu);
    for (size_t i = S.nsegs; i-- > 0;) {
        if (S.segs[i].first_lsn && S.segs[i].first_lsn <= lsn) {
            found = lsn <= S.segs[i].last_lsn || i + 1 == S.nsegs;
            *pos = (struct seg_pos){S.segs[i].id, SEG_HEADER_LEN};
            break;
        }
    }
    pthread_mutex_unlock(&S.mu);
    return found;
}

size_t store_read_entries(uint64_t from, size_t max_bytes, store_entry_fn fn, void *ctx)
{
    struct seg_pos pos;
    if (!entry_start(from, &pos))
        return 0;
    struct seg_iter it;
    seg_iter_init(&it, pos);
    /* read ahead about what is asked for (a record's header, and the
     * entry past max_bytes, may take a second read) */
    size_t ra = max_bytes + max_bytes / 16 + 4096;
    it.ra_size = ra < SEG_READ_AHEAD ? ra : SEG_READ_AHEAD;
    size_t n = 0, bytes = 0;
    uint64_t want = from;
    struct seg_pos after = pos; /* of the record after the last one passed to fn */
    while (bytes < max_bytes && seg_iter_next(&it) > 0) {
        if (it.type != REC_ENTRY || it.len < JOURNAL_HEADER_LEN)
            continue;
        uint64_t lsn = jkey_get_be64(it.data + 9);
        if (lsn < want)
            continue;
        if (lsn != want)
            break; /* the cursor stays before it: a later call reads it again */
        fn(ctx, lsn, it.data, it.len);
        after = it.pos;
        bytes += it.len;
        n++;
        want++;
    }
    if (n) {
        pthread_mutex_lock(&cursors_mu);
        int oldest = 0;
        for (int i = 1; i < 4; i++)
            if (cursors[i].used < cursors[oldest].used)
                oldest = i;
        cursors[oldest].next_lsn = want;
        cursors[oldest].pos = after;
        cursors[oldest].used = ++cursor_clock;
        pthread_mutex_unlock(&cursors_mu);
    }
    seg_iter_free(&it);
    return n;
}

struct tip {
    uint64_t epoch, sum;
    bool found;
};

static void tip_of(void *ctx, uint64_t lsn, const char *data, size_t len)
{
    struct tip *t = ctx;
    struct journal_entry e;
    if (journal_decode(data, len, &e) == 0) {
        t->epoch = e.epoch;
        t->sum = journal_checksum(data, len);
        t->found = true;
    }
}

int store_entry_tip(uint64_t lsn, uint64_t *epoch, uint64_t *sum)
{
    struct tip t = {0};
    if (store_read_entries(lsn, 1, tip_of, &t) != 1 || !t.found)
        return -ENOENT;
    *epoch = t.epoch;
    *sum = t.sum;
    return 0;
}

/* ------------------------------------------------------------ paging reads */

int store_page(const char *prefix, size_t plen, const char *from, size_t flen, store_page_fn fn, void *ctx)
{
    leveldb_iterator_t *it = leveldb_create_iterator(S.db, S.ropt);
    int rc = 0;
    if (from)
        leveldb_iter_seek(it, from, flen);
    else
        leveldb_iter_seek(it, prefix, plen);
    char stack[1300], *rk = stack;
    for (; leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl);
        if (kl < plen || memcmp(k, prefix, plen) != 0)
            break;
        const char *v = leveldb_iter_value(it, &vl);
        struct store_msgref r = {.key = k, .klen = kl};
        if (!loc_decode(v, vl, &r))
            continue;
        /* its delivery count, looked up by key: a second iterator walked
         * alongside had to seek, and a seek steps over every deletion
         * marker up to the next live key: after a deep durable backlog
         * was dropped, tens of thousands, on the loop, at every page
         * (helper-82: the broker stalled for seconds). A lookup of one
         * key is bounded (the bloom filters answer most). */
        if (rk != stack)
            free(rk);
        rk = key_space(stack, sizeof stack, kl + 1);
        rk[0] = KEY_R;
        memcpy(rk + 1, k, kl);
        char *rv;
        size_t rvl;
        if (idx_get(rk, kl + 1, &rv, &rvl) == 0) {
            if (rvl == 4)
                r.deliveries = get_be32(rv);
            free(rv);
        }
        if ((rc = fn(ctx, &r)) != 0)
            break;
    }
    if (rk != stack)
        free(rk);
    char *lerr = NULL;
    leveldb_iter_get_error(it, &lerr);
    if (lerr) {
        log_err("store: index read failed: %s", lerr);
        leveldb_free(lerr);
        rc = -EIO;
    }
    leveldb_iter_destroy(it);
    return rc < 0 ? rc : 0;
}

int store_read_msg(const struct store_msgref *r, struct msg **out)
{
    static double logged; /* the last failure that may pass */
    char *b = malloc(r->len ? r->len : 1);
    if (!b)
        abort();
    struct msg *m = NULL;
    int rc = read_msg(r, b);
    if (rc == 0 && !(m = journal_decode_msg(b, r->len)))
        rc = -EINVAL;
    free(b);
    *out = m;
    if (rc == 0)
        return 0;
    const char *why = rc == -EBADMSG ? "it does not match its checksum: the log is damaged"
                      : rc == -EINVAL ? "malformed"
                                      : strerror(-rc);
    bool damaged = !may_pass(rc);
    double now = ev_time();
    if (damaged || now - logged >= 10) {
        log_err("store: cannot read a message from log segment %08" PRIx32 " offset %" PRIu32 " (%u bytes): %s%s",
                r->pos.seg, r->pos.off, r->len, why, damaged ? "" : " (tried again in a moment)");
        if (!damaged)
            logged = now;
    }
    return damaged ? -EBADMSG : rc;
}

struct msg *store_load_msg(const struct store_msgref *r)
{
    struct msg *m;
    return store_read_msg(r, &m) == 0 ? m : NULL;
}

int store_dump(store_scan_fn fn, void *ctx)
{
    leveldb_iterator_t *it = leveldb_create_iterator(S.db, S.ropt);
    int rc = 0;
    struct buf b = {0};
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it) && rc == 0; leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl);
        const char *v = leveldb_iter_value(it, &vl);
        struct store_msgref r;
        if (is_msg_key(k, kl) && loc_decode(v, vl, &r)) {
            b.len = b.off = 0;
            buf_reserve(&b, r.len);
            if (read_msg(&r, b.data) != 0)
                rc = -EIO;
            else
                rc = fn(ctx, k, kl, b.data, r.len);
        } else {
            rc = fn(ctx, k, kl, v, vl);
        }
    }
    buf_free(&b);
    leveldb_iter_destroy(it);
    return rc;
}

/* ------------------------------------------------------------ format 1 */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* What a format-1 store (everything in one LevelDB, messages in their
 * keys' values, keys without the priority) holds goes into a new store as
 * one snapshot would: pairs in the log, then "installed" at its position.
 * The old journal is not carried over (a replica behind gets a snapshot). */
static int migrate_v1(const char *v1dir, char *err, size_t errlen)
{
    char *lerr = NULL;
    leveldb_options_t *o = leveldb_options_create();
    leveldb_t *old = leveldb_open(o, v1dir, &lerr);
    leveldb_options_destroy(o);
    if (!old) {
        int rc = set_err(err, errlen, "cannot open the format-1 store to convert it", lerr);
        return rc;
    }
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    size_t vl;
    char *fmt = leveldb_get(old, ro, FORMAT_KEY, strlen(FORMAT_KEY), &vl, &lerr);
    bool ok = fmt && vl == strlen(FORMAT_V1) && memcmp(fmt, FORMAT_V1, vl) == 0;
    if (fmt)
        leveldb_free(fmt);
    if (lerr)
        leveldb_free(lerr);
    lerr = NULL;
    if (!ok) {
        snprintf(err, errlen, "%s is not a format-1 stompd store: left as it is", v1dir);
        leveldb_readoptions_destroy(ro);
        leveldb_close(old);
        return -EINVAL;
    }
    uint64_t meta[4] = {0};
    static const char *const mk[] = {KEY_META "applied_lsn", KEY_META "epoch", KEY_META "tip_sum",
                                     KEY_META "max_epoch"};
    for (int i = 0; i < 4; i++) {
        char *v = leveldb_get(old, ro, mk[i], strlen(mk[i]), &vl, &lerr);
        if (v && vl == 8)
            meta[i] = jkey_get_be64(v);
        if (v)
            leveldb_free(v);
        if (lerr)
            leveldb_free(lerr);
        lerr = NULL;
    }
    char *nid = leveldb_get(old, ro, KEY_META "node_id", strlen(KEY_META "node_id"), &vl, &lerr);
    if (nid) {
        leveldb_put(S.db, S.wsync, KEY_META "node_id", strlen(KEY_META "node_id"), nid, vl, &lerr);
        snprintf(S.info.node_id, sizeof S.info.node_id, "%.*s", (int)vl, nid);
        leveldb_free(nid);
    }
    if (lerr)
        leveldb_free(lerr);
    lerr = NULL;
    struct pending *first = NULL, *last = NULL;
    struct buf pairs = {0}, key = {0};
    uint32_t npairs = 0;
    uint64_t messages = 0;
    leveldb_iterator_t *it = leveldb_create_iterator(old, ro);
    for (leveldb_iter_seek_to_first(it);; leveldb_iter_next(it)) {
        bool valid = leveldb_iter_valid(it);
        if (!valid || buf_used(&pairs) >= (4u << 20)) {
            if (npairs) {
                struct pending *p = calloc(1, sizeof *p);
                if (!p)
                    abort();
                p->kind = P_RAW;
                p->len = buf_used(&pairs);
                p->data = malloc(p->len);
                if (!p->data)
                    abort();
                memcpy(p->data, buf_head(&pairs), buf_used(&pairs));
                S.unwritten += p->len + SEG_REC_HEADER; /* run() takes it off again */
                if (last)
                    last->node.next = &p->node;
                else
                    first = p;
                last = p;
                buf_free(&pairs);
                npairs = 0;
            }
            if (!valid)
                break;
        }
        size_t kl, v2l;
        const char *k = leveldb_iter_key(it, &kl);
        const char *v = leveldb_iter_value(it, &v2l);
        key.len = key.off = 0;
        const char *val = v;
        size_t val_len = v2l;
        char *own = NULL;
        if ((k[0] == KEY_Q || k[0] == KEY_T) && kl > 8) {
            buf_append(&key, k, kl - 8);
            jkey_msg_suffix(&key, journal_msg_priority(v, v2l), jkey_get_be64(k + kl - 8));
            messages++;
        } else if (k[0] == KEY_R && kl > 9) {
            /* the message it counts for says its priority */
            own = leveldb_get(old, ro, k + 1, kl - 1, &val_len, &lerr);
            if (lerr)
                leveldb_free(lerr);
            lerr = NULL;
            if (!own)
                continue;
            buf_putc(&key, KEY_R);
            buf_append(&key, k + 1, kl - 9);
            jkey_msg_suffix(&key, journal_msg_priority(own, val_len), jkey_get_be64(k + kl - 8));
            leveldb_free(own);
            own = NULL;
            val = v;
            val_len = v2l;
        } else if (k[0] == KEY_S || k[0] == KEY_D) {
            buf_append(&key, k, kl);
        } else {
            continue; /* the journal (L) and this node's meta */
        }
        put_u32(&pairs, (uint32_t)buf_used(&key));
        buf_append(&pairs, buf_head(&key), buf_used(&key));
        put_u32(&pairs, (uint32_t)val_len);
        buf_append(&pairs, val, val_len);
        npairs++;
    }
    leveldb_iter_destroy(it);
    leveldb_readoptions_destroy(ro);
    leveldb_close(old);
    buf_free(&key);
    buf_free(&pairs);
    struct pending *inst = calloc(1, sizeof *inst);
    if (!inst)
        abort();
    inst->kind = P_INSTALLED;
    inst->lsn = meta[0];
    inst->epoch = meta[1];
    inst->sum = meta[2];
    if (last)
        last->node.next = &inst->node;
    else
        first = inst;
    for (struct pending *p = first; p;)
        p = run(p, true);
    while (first) {
        struct pending *n = next_pending(first);
        free(first->data);
        free(first);
        first = n;
    }
    if (S.fail_lsn) {
        snprintf(err, errlen, "converting the format-1 store %s failed: %s (it is left as it was)", v1dir, S.fail_msg);
        return -EIO;
    }
    if (meta[3] > S.info.max_epoch) {
        char b8[8];
        jkey_be64(b8, meta[3]);
        leveldb_put(S.db, S.wsync, KEY_META "max_epoch", strlen(KEY_META "max_epoch"), b8, 8, &lerr);
        if (lerr)
            leveldb_free(lerr);
        lerr = NULL;
        S.info.max_epoch = meta[3];
    }
    S.info.applied_lsn = S.last_lsn;
    S.info.epoch = S.tip_epoch;
    S.info.tip_sum = journal_tip_sum(&S.tip);
    S.info.max_seq = S.max_seq;
    if (S.info.max_epoch < S.info.epoch)
        S.info.max_epoch = S.info.epoch;
    S.done_lsn = S.reported_done = S.indexed_lsn = S.reported_indexed = S.last_appended_lsn = S.last_lsn;
    S.info.migrated = true;
    log_warn("store: converted the format-1 store (%" PRIu64 " messages, at lsn %" PRIu64 ") to format 2 in %s; "
             "the old files were %s", messages, S.last_lsn, S.dir, v1dir);
    if (nftw(v1dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        log_warn("store: remove %s yourself: the conversion is complete", v1dir);
    return 0;
}
