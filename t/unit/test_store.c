/* Unit tests for the store (log segments + LevelDB index): entries
 * written by the writer thread in groups are indexed as the journal says,
 * range removals see keys from the same group and count a key removed
 * twice in one entry once, reopening gives the same
 * position, an index behind its log is caught up from the log and a torn
 * tail is cut, messages removed before their index write never reach
 * LevelDB, a log shorter than its index is refused, segments go once
 * nothing needs them, a queue reads back in dispatch order, a snapshot
 * installs into another store, a format-1 store is converted, and a
 * locked, foreign, mis-formatted or corrupt store is refused. */
#include "config.h"

#include <dirent.h>
#include <sys/stat.h>
#include <errno.h>
#include <leveldb/c.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "stompd/journal.h"
#include "stompd/msg.h"
#include "stompd/segment.h"
#include "stompd/store.h"

static char dir[256];
static uint64_t durable;
static uint64_t failed_at;

static void on_done(uint64_t lsn) { durable = lsn; }
static void on_fail(uint64_t lsn, const char *why) { failed_at = lsn; }

static void rm_rf(const char *path)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/stompd-test-store-%d", (int)getpid());
    rm_rf(dir);
    durable = failed_at = 0;
    return 0;
}

static int teardown(void **state)
{
    store_close();
    rm_rf(dir);
    return 0;
}

static struct store_limits limits = {.segment_bytes = 64u << 20, .retention = 100000, .keep_journal = true};

static void open_store(void)
{
    char err[512];
    int rc = store_open(dir, &limits, err, sizeof err);
    if (rc)
        fail_msg("open: %s", err);
}

static void open_start(struct ev_loop *loop)
{
    char err[512];
    open_store();
    assert_int_equal(store_start(loop, true, on_done, on_fail, err, sizeof err), 0);
}

static void wait_durable(struct ev_loop *loop, uint64_t lsn)
{
    store_kick();
    for (int i = 0; i < 2000 && (durable < lsn || store_indexed_lsn() < lsn) && !failed_at; i++)
        ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT), usleep(1000);
    assert_int_equal(failed_at, 0);
    assert_true(durable >= lsn);
    assert_true(store_indexed_lsn() >= lsn);
}

static uint64_t lsn;
static uint64_t last_sum; /* the journal_checksum of the entry at lsn */

static void append(struct journal_builder *jb)
{
    size_t len;
    lsn++;
    char *e = jb_finish(jb, 1, lsn, &len);
    last_sum = journal_checksum(e, len);
    store_append(lsn, e, len, true);
}

static void enqueue_body(const char *dest, uint64_t seq, uint8_t prio, const char *body, size_t blen)
{
    struct journal_builder jb;
    jb_init(&jb);
    char id[32];
    snprintf(id, sizeof id, "m%llu", (unsigned long long)seq);
    struct msg *m = msg_new(dest, id, seq, 1, true, prio, 0, NULL, 0, body, blen);
    jb_enqueue(&jb, dest, NULL, 0, NULL, m);
    msg_unref(m);
    append(&jb);
}

static void enqueue(const char *dest, uint64_t seq)
{
    enqueue_body(dest, seq, 4, "x", 1);
}

static void dequeue(const char *dest, uint64_t seq)
{
    struct journal_builder jb;
    jb_init(&jb);
    jb_dequeue(&jb, dest, 4, seq);
    append(&jb);
}

static int count_cb(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    (*(int *)ctx)++;
    return 0;
}

static int count(const char *prefix, size_t pl)
{
    int n = 0;
    assert_int_equal(store_scan(prefix, pl, count_cb, &n), 0);
    return n;
}

struct counted {
    uint64_t n, bytes;
};

static int counter_cb(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    struct counted *c = ctx;
    if (vl == 16) {
        c->n = jkey_get_be64(v);
        c->bytes = jkey_get_be64(v + 8);
    }
    return 0;
}

/* The C counter of a queue (messages, bytes). */
static struct counted counter(const char *dest)
{
    struct buf k = {0};
    buf_putc(&k, KEY_C);
    jkey_q_prefix(&k, dest, strlen(dest));
    struct counted c = {0, 0};
    assert_int_equal(store_scan(k.data, k.len, counter_cb, &c), 0);
    buf_free(&k);
    return c;
}

struct seen {
    char ids[64][16];
    uint32_t deliveries[64];
    int n;
    int unreadable;         /* store_load_msg refused them (page_any) */
};

static int page_cb(void *ctx, const struct store_msgref *r)
{
    struct seen *s = ctx;
    struct msg *m = store_load_msg(r);
    if (!m) {
        s->unreadable++;
        return 0;
    }
    if (s->n < 64) {
        snprintf(s->ids[s->n], sizeof s->ids[0], "%s", m->id);
        s->deliveries[s->n] = r->deliveries;
    }
    s->n++;
    msg_unref(m);
    return 0;
}

/* What the store lists for dest, readable or not. */
static void page_any(const char *dest, struct seen *s)
{
    struct buf p = {0};
    jkey_q_prefix(&p, dest, strlen(dest));
    memset(s, 0, sizeof *s);
    assert_int_equal(store_page(p.data, p.len, NULL, 0, page_cb, s), 0);
    buf_free(&p);
}

static void page(const char *dest, struct seen *s)
{
    page_any(dest, s);
    assert_int_equal(s->unreadable, 0);
}
static void test_write_reopen(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    lsn = 0;
    open_start(loop);
    assert_true(store_info()->created);
    assert_int_equal(strlen(store_info()->node_id), 16);
    char node[40];
    strcpy(node, store_info()->node_id);
    for (uint64_t i = 1; i <= 200; i++)
        enqueue(i % 2 ? "/queue/a" : "/queue/b", i);
    struct journal_builder jb;
    jb_init(&jb);
    jb_dequeue(&jb, "/queue/a", 4, 1);
    jb_delivered(&jb, KEY_Q, "/queue/a", "", 4, 3, 1);
    append(&jb);
    wait_durable(loop, lsn);
    assert_int_equal(count("Q/queue/a", 9), 99);
    assert_int_equal(count("Q/queue/b", 9), 100);
    assert_int_equal(count("R", 1), 1);
    assert_int_equal(counter("/queue/a").n, 99);
    assert_int_equal(counter("/queue/b").n, 100);
    store_close();

    open_store();
    assert_false(store_info()->created);
    assert_int_equal(store_info()->applied_lsn, 201);
    assert_int_equal(store_info()->tip_sum, last_sum);
    assert_int_equal(store_info()->epoch, 1);
    assert_int_equal(store_info()->first_lsn, 1);
    assert_string_equal(store_info()->node_id, node);
    assert_int_equal(count("Q", 1), 199);
    /* the entries are in the log for replicas */
    uint64_t e, sum;
    assert_int_equal(store_entry_tip(150, &e, &sum), 0);
    assert_int_equal(e, 1);
    assert_int_not_equal(sum, 0);
}

static void test_queue_reads_back_in_dispatch_order(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    lsn = 0;
    open_start(loop);
    enqueue_body("/queue/o", 1, 4, "a", 1);
    enqueue_body("/queue/o", 2, 9, "b", 1);
    enqueue_body("/queue/o", 3, 0, "c", 1);
    enqueue_body("/queue/o", 4, 9, "d", 1);
    enqueue_body("/queue/other", 5, 9, "e", 1);
    struct journal_builder jb;
    jb_init(&jb);
    jb_delivered(&jb, KEY_Q, "/queue/o", "", 0, 3, 2);
    append(&jb);
    wait_durable(loop, lsn);
    struct seen s;
    page("/queue/o", &s);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.ids[0], "m2");
    assert_string_equal(s.ids[1], "m4");
    assert_string_equal(s.ids[2], "m1");
    assert_string_equal(s.ids[3], "m3");
    assert_int_equal(s.deliveries[3], 2);
    assert_int_equal(s.deliveries[0], 0);
}

static void test_range_delete_sees_same_group(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    lsn = 0;
    open_start(loop);
    enqueue("/queue/p", 1);
    wait_durable(loop, lsn);
    /* these go in one group: enqueue, then purge, then enqueue again */
    enqueue("/queue/p", 2);
    enqueue("/queue/pp", 3); /* a longer name with the same prefix: kept */
    struct journal_builder jb;
    jb_init(&jb);
    jb_delivered(&jb, KEY_Q, "/queue/p", "", 4, 2, 1);
    append(&jb);
    jb_init(&jb);
    jb_purge(&jb, "/queue/p");
    append(&jb);
    enqueue("/queue/p", 4);
    /* and an enqueue and its dequeue in one group */
    enqueue("/queue/q", 5);
    dequeue("/queue/q", 5);
    wait_durable(loop, lsn);
    assert_int_equal(count("Q/queue/p\0", 10), 1);
    assert_int_equal(count("Q/queue/pp\0", 11), 1);
    assert_int_equal(count("Q/queue/q\0", 10), 0);
    assert_int_equal(count("R", 1), 0);
    assert_int_equal(counter("/queue/p").n, 1);
    assert_int_equal(counter("/queue/q").n, 0);
}

static void test_durable_subscription_delete(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    lsn = 0;
    open_start(loop);
    struct journal_builder jb;
    jb_init(&jb);
    jb_sub_create(&jb, "c1", "s1", "/topic/t", NULL, "");
    append(&jb);
    jb_init(&jb);
    const char *targets[] = {"c1", "s1"};
    struct msg *m = msg_new("/topic/t", "id", 5, 1, true, 4, 0, NULL, 0, "x", 1);
    jb_enqueue(&jb, "/topic/t", targets, 1, NULL, m);
    msg_unref(m);
    append(&jb);
    wait_durable(loop, lsn);
    assert_int_equal(count("S", 1), 1);
    assert_int_equal(count("T", 1), 1);
    jb_init(&jb);
    jb_sub_delete(&jb, "c1", "s1");
    append(&jb);
    wait_durable(loop, lsn);
    assert_int_equal(count("S", 1), 0);
    assert_int_equal(count("T", 1), 0);
    assert_int_equal(count("C", 1), 0);
}

/* The live messages the segments count (their refs). */
static int segrefs_cb(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    if (vl == 24 || vl == 32) /* first lsn, last lsn, live messages[, end] */
        *(uint64_t *)ctx += jkey_get_be64(v + 16);
    return 0;
}

static uint64_t live_in_segments(void)
{
    uint64_t n = 0;
    assert_int_equal(store_scan(KEY_SEG, strlen(KEY_SEG), segrefs_cb, &n), 0);
    return n;
}

static void sub_enqueue(uint64_t seq)
{
    struct journal_builder jb;
    jb_init(&jb);
    const char *targets[] = {"c1", "s1"};
    struct msg *m = msg_new("/topic/t", "id", seq, 1, true, 4, 0, NULL, 0, "x", 1);
    jb_enqueue(&jb, "/topic/t", targets, 1, NULL, m);
    msg_unref(m);
    append(&jb);
}

/* After a reopen, the one message left is m1 on /queue/a, and it is the
 * only live message the segments count. */
static void reopened_with_only_m1(void)
{
    store_close();
    open_store();
    assert_int_equal(live_in_segments(), 1);
    struct seen s;
    page("/queue/a", &s);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.ids[0], "m1");
}

static void test_removed_twice_in_one_entry(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    lsn = 0;
    open_start(loop);
    struct journal_builder jb;
    jb_init(&jb);
    jb_sub_create(&jb, "c1", "s1", "/topic/t", NULL, "");
    append(&jb);
    enqueue("/queue/a", 1);
    enqueue("/queue/b", 2);
    enqueue("/queue/b", 3);
    sub_enqueue(4);
    sub_enqueue(5);
    enqueue("/queue/c", 6);
    wait_durable(loop, lsn);
    assert_int_equal(live_in_segments(), 6);
    /* an ack, then a range removal taking the acked message again, in one
     * entry (acks lead the next entry): the message is counted out once */
    jb_init(&jb);
    jb_dequeue(&jb, "/queue/b", 4, 2);
    jb_purge(&jb, "/queue/b");
    append(&jb);
    jb_init(&jb);
    jb_dequeue_sub(&jb, "c1", "s1", 4, 4);
    jb_sub_delete(&jb, "c1", "s1");
    append(&jb);
    /* and the other way round */
    jb_init(&jb);
    jb_purge(&jb, "/queue/c");
    jb_dequeue(&jb, "/queue/c", 4, 6);
    append(&jb);
    wait_durable(loop, lsn);
    assert_int_equal(live_in_segments(), 1);
    assert_int_equal(counter("/queue/a").n, 1);
    assert_int_equal(counter("/queue/b").n, 0);
    assert_int_equal(counter("/queue/c").n, 0);
    assert_int_equal(count("C", 1), 1);
    assert_int_equal(count("Q", 1), 1);
    assert_int_equal(count("T", 1), 0);
    reopened_with_only_m1();
}

/* A purge, then an ack of a message it took, in two entries the writer
 * indexes in one batch; and one message acked in two entries: until the
 * batch is written the index still lists the message, which is counted
 * out once. */
static void test_purged_then_acked_next_entry(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    lsn = 0;
    open_start(loop);
    enqueue("/queue/a", 1);
    enqueue("/queue/b", 2);
    enqueue("/queue/b", 3);
    enqueue("/queue/c", 4);
    wait_durable(loop, lsn);
    assert_int_equal(live_in_segments(), 4);
    struct journal_builder jb;
    jb_init(&jb);
    jb_purge(&jb, "/queue/b");
    append(&jb);
    dequeue("/queue/b", 2);
    dequeue("/queue/c", 4);
    dequeue("/queue/c", 4);
    wait_durable(loop, lsn);
    assert_int_equal(live_in_segments(), 1);
    assert_int_equal(counter("/queue/b").n, 0);
    assert_int_equal(counter("/queue/c").n, 0);
    reopened_with_only_m1();
}

static int count_segments(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/log", dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strstr(de->d_name, ".log") != NULL;
    closedir(d);
    return n;
}

static void test_segments_go_when_nothing_needs_them(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    lsn = 0;
    limits.segment_bytes = 64 << 10;
    limits.retention = 50;
    open_start(loop);
    char body[1024];
    memset(body, 'z', sizeof body);
    for (uint64_t i = 1; i <= 300; i++) {
        enqueue_body("/queue/s", i, 4, body, sizeof body);
        if (i % 20 == 0)
            wait_durable(loop, lsn);
    }
    wait_durable(loop, lsn);
    int full = count_segments();
    assert_true(full >= 4);
    /* one old message pins its segment; the others are acked */
    for (uint64_t i = 2; i <= 300; i++)
        dequeue("/queue/s", i);
    wait_durable(loop, lsn);
    /* segments go once an fsynced index is past them: give it a moment */
    for (int i = 0; i < 30 && count_segments() > 2; i++) {
        usleep(100000);
        enqueue("/queue/tick", 1000 + (uint64_t)i);
        wait_durable(loop, lsn);
    }
    int left = count_segments();
    assert_true(left < full);
    /* the first segment (message 1) stays; entries newer than the
     * retention stay; the rest went */
    struct seen s;
    page("/queue/s", &s);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.ids[0], "m1");
    limits.segment_bytes = 64u << 20;
    limits.retention = 100000;
}

/* An index that lost its last batches (written without fsync, and the
 * machine went down) is caught up from the log at start: the index as it
 * was after entry 4, under a log of 10 entries. */
static void test_index_behind_log_is_replayed(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    lsn = 0;
    open_start(loop);
    for (uint64_t i = 1; i <= 4; i++)
        enqueue("/queue/r", i);
    wait_durable(loop, lsn);
    store_close();
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp -a '%s/index' '%s/index.at4'", dir, dir);
    assert_int_equal(system(cmd), 0);
    durable = 0;
    open_start(loop);
    for (uint64_t i = 5; i <= 10; i++)
        enqueue("/queue/r", i);
    dequeue("/queue/r", 2);
    wait_durable(loop, lsn);
    store_close();
    snprintf(cmd, sizeof cmd, "rm -rf '%s/index' && mv '%s/index.at4' '%s/index'", dir, dir, dir);
    assert_int_equal(system(cmd), 0);

    open_store();
    assert_int_equal(store_info()->applied_lsn, 11);
    /* the tip's checksum is the last replayed entry's, not the index's */
    assert_int_equal(store_info()->tip_sum, last_sum);
    assert_int_equal(count("Q/queue/r\0", 10), 9);
    assert_int_equal(counter("/queue/r").n, 9);
    /* and replaying is idempotent: once more from an index that has the
     * entries already gives the same */
    store_close();
    open_store();
    assert_int_equal(counter("/queue/r").n, 9);
}

static void delivered(const char *dest, uint64_t seq, uint32_t times)
{
    struct journal_builder jb;
    jb_init(&jb);
    jb_delivered(&jb, KEY_Q, dest, "", 4, seq, times);
    append(&jb);
}

/* Messages removed before their index write never reach LevelDB, nor do
 * their delivery counts; what stays is indexed, on the writer's way and
 * when a restart replays the log into an index that has none of it. */
static void test_acked_before_indexed(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    lsn = 0;
    open_start(loop);
    enqueue("/queue/g", 1);
    wait_durable(loop, lsn);
    store_close();
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp -a '%s/index' '%s/index.old'", dir, dir);
    assert_int_equal(system(cmd), 0);

    durable = 0;
    open_start(loop);
    uint64_t skipped = store_stats()->index_skipped;
    /* one group: 50 in and out again (one delivered first), one kept */
    for (uint64_t i = 2; i <= 51; i++)
        enqueue("/queue/f", i);
    delivered("/queue/f", 7, 1);
    for (uint64_t i = 2; i <= 51; i++)
        dequeue("/queue/f", i);
    enqueue("/queue/f", 52);
    delivered("/queue/f", 52, 2);
    wait_durable(loop, lsn);
    assert_int_equal(store_stats()->index_skipped - skipped, 50);
    assert_int_equal(count("Q/queue/f\0", 10), 1);
    assert_int_equal(count("R", 1), 1);
    assert_int_equal(counter("/queue/f").n, 1);
    assert_int_equal(counter("/queue/g").n, 1);
    struct seen s = {0};
    page("/queue/f", &s);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.ids[0], "m52");
    assert_int_equal(s.deliveries[0], 2);
    store_close();

    /* the index as it was before: the log's tail replays into it */
    snprintf(cmd, sizeof cmd, "rm -rf '%s/index' && mv '%s/index.old' '%s/index'", dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    skipped = store_stats()->index_skipped;
    open_store();
    assert_int_equal(store_info()->applied_lsn, lsn);
    assert_int_equal(store_stats()->index_skipped - skipped, 50);
    assert_int_equal(count("Q/queue/f\0", 10), 1);
    assert_int_equal(count("R", 1), 1);
    assert_int_equal(counter("/queue/f").n, 1);
    assert_int_equal(count("Q/queue/g\0", 10), 1);
    memset(&s, 0, sizeof s);
    page("/queue/f", &s);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.deliveries[0], 2);
}

static void last_segment(char *out, size_t len)
{
    uint32_t ids[64];
    size_t n = seglog_ids(ids, 64);
    assert_true(n > 0);
    snprintf(out, len, "%s/log/%08x.log", dir, ids[n - 1]);
}

static void test_torn_tail_cut_and_lost_tail_refused(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    lsn = 0;
    open_start(loop);
    for (uint64_t i = 1; i <= 5; i++)
        enqueue("/queue/t", i);
    wait_durable(loop, lsn);
    char seg[600];
    last_segment(seg, sizeof seg);
    store_close();
    /* a write cut short: half a record at the end */
    FILE *f = fopen(seg, "ab");
    assert_non_null(f);
    fwrite("\0\0\0\x40\x12\x34\x56\x78\x01partial", 1, 16, f);
    fclose(f);
    open_store();
    assert_int_equal(store_info()->applied_lsn, 5);
    store_close();
    struct stat st;
    assert_int_equal(stat(seg, &st), 0);
    /* the log loses what the index had: refused, naming what to do */
    assert_int_equal(truncate(seg, st.st_size - 30), 0);
    char err[512];
    assert_int_equal(store_open(dir, &limits, err, sizeof err), -EIO);
    assert_non_null(strstr(err, "missing part of its log"));
    assert_non_null(strstr(err, "replica"));
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void append_zeros(const char *path, size_t n)
{
    FILE *f = fopen(path, "ab");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(fputc(0, f), 0);
    fclose(f);
}

/* Synced appends go into zeros written ahead (no metadata to commit per
 * fdatasync). The zeros a crash leaves behind end the records: a reopened
 * store appends where its records end, and a finished segment with such a
 * tail is read past to the next one. */
static void test_zeros_written_ahead(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    lsn = 0;
    open_start(loop);
    for (uint64_t i = 1; i <= 50; i++)
        enqueue("/queue/z", i);
    wait_durable(loop, lsn);
    char seg[600];
    last_segment(seg, sizeof seg);
    assert_true(file_size(seg) > 512 << 10); /* zeros ahead of 50 small records */
    store_close();
    off_t records = file_size(seg); /* a clean close cuts them */
    assert_true(records < 16 << 10);
    append_zeros(seg, 300 << 10); /* what a crash leaves */
    durable = 0;
    open_start(loop);
    assert_int_equal(store_info()->applied_lsn, 50);
    for (uint64_t i = 51; i <= 60; i++)
        enqueue("/queue/z", i);
    wait_durable(loop, lsn);
    store_close();
    open_store();
    assert_int_equal(store_info()->applied_lsn, 60);
    struct seen s;
    page("/queue/z", &s);
    assert_int_equal(s.n, 60);
    assert_string_equal(s.ids[59], "m60");
    store_close();

    /* several segments, the first with zeros after its records, and an
     * index rebuilt from the whole log */
    rm_rf(dir);
    lsn = 0;
    durable = 0;
    limits.segment_bytes = 64 << 10;
    open_start(loop);
    char body[1024];
    memset(body, 'z', sizeof body);
    for (uint64_t i = 1; i <= 200; i++) {
        enqueue_body("/queue/y", i, 4, body, sizeof body);
        if (i % 10 == 0)
            wait_durable(loop, lsn);
    }
    wait_durable(loop, lsn);
    store_close();
    limits.segment_bytes = 64u << 20;
    assert_true(count_segments() >= 3);
    char first[600];
    snprintf(first, sizeof first, "%s/log/%08x.log", dir, 1u);
    assert_true(file_size(first) <= 64 << 10); /* a finished segment is cut to its records */
    append_zeros(first, 4096);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/index'", dir);
    assert_int_equal(system(cmd), 0);
    open_store();
    assert_int_equal(store_info()->applied_lsn, 200);
    assert_int_equal(counter("/queue/y").n, 200);
}

/* Message i of test_group_past_iov_max: i % 97 bytes (some empty). */
static size_t gbody(uint64_t seq, char *out)
{
    size_t n = seq % 97;
    memset(out, 'a' + (int)(seq % 26), n);
    return n;
}

static int gbody_cb(void *ctx, const struct store_msgref *r)
{
    int *n = ctx;
    struct msg *m = store_load_msg(r);
    assert_non_null(m);
    char want[97];
    size_t wl = gbody(m->seq, want);
    assert_int_equal(m->body_len, wl);
    assert_memory_equal(m->body, want, wl);
    (*n)++;
    msg_unref(m);
    return 0;
}

/* One group of more records than one pwritev takes (IOV_MAX iovecs, two a
 * record): every record lands whole and in order, its body where the
 * index says, and a rebuild from the log (each record's CRC) finds them. */
static void test_group_past_iov_max(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    lsn = 0;
    open_start(loop);
    const uint64_t n = 1500;
    for (uint64_t i = 1; i <= n; i++) {
        char body[97];
        enqueue_body("/queue/v", i, 4, body, gbody(i, body)); /* no kick: one group */
    }
    wait_durable(loop, lsn);
    assert_int_equal(counter("/queue/v").n, n);
    struct buf p = {0};
    jkey_q_prefix(&p, "/queue/v", strlen("/queue/v"));
    int seen = 0;
    assert_int_equal(store_page(p.data, p.len, NULL, 0, gbody_cb, &seen), 0);
    assert_int_equal(seen, n);
    store_close();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/index'", dir);
    assert_int_equal(system(cmd), 0);
    open_store();
    assert_int_equal(store_info()->applied_lsn, n);
    assert_int_equal(counter("/queue/v").n, n);
    seen = 0;
    assert_int_equal(store_page(p.data, p.len, NULL, 0, gbody_cb, &seen), 0);
    assert_int_equal(seen, n);
    buf_free(&p);
}

struct read_back {
    uint64_t next;          /* the lsn expected next */
    const uint64_t *sums;   /* journal_checksum of each entry, by lsn */
};

static void read_back_cb(void *ctx, uint64_t at, const char *data, size_t len)
{
    struct read_back *r = ctx;
    assert_int_equal(at, r->next);
    assert_int_equal(journal_checksum(data, len), r->sums[at]);
    r->next++;
}

/* Entries read back from the log for a replica (read ahead about what is
 * asked for): every one, whole and in order, whatever the bytes asked for
 * per call, from any lsn, past records larger than a read-ahead. */
static void test_read_entries(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    lsn = 0;
    open_start(loop);
    enum { N = 300 };
    static uint64_t sums[N + 1];
    static char big[3 << 20];
    memset(big, 'b', sizeof big);
    for (uint64_t i = 1; i <= N; i++) {
        char body[97];
        if (i == 150)
            enqueue_body("/queue/r", i, 4, big, 40 << 10);
        else if (i == 200)
            enqueue_body("/queue/r", i, 4, big, sizeof big); /* past SEG_READ_AHEAD */
        else
            enqueue_body("/queue/r", i, 4, body, gbody(i, body));
        sums[i] = last_sum;
        if (i % 50 == 0)
            wait_durable(loop, lsn);
    }
    wait_durable(loop, lsn);
    const size_t asks[] = {1, 5000, 256 << 10, 8 << 20};
    const uint64_t froms[] = {1, 149, 151, 200, 201};
    for (size_t a = 0; a < sizeof asks / sizeof *asks; a++) {
        for (size_t f = 0; f < sizeof froms / sizeof *froms; f++) {
            struct read_back r = {froms[f], sums};
            while (r.next <= N) {
                uint64_t before = r.next;
                size_t got = store_read_entries(r.next, asks[a], read_back_cb, &r);
                assert_true(got > 0);
                assert_int_equal(r.next, before + got);
            }
            assert_int_equal(store_read_entries(N + 1, asks[a], read_back_cb, &r), 0);
        }
    }
}

struct pairs {
    struct buf b;
};

static void test_snapshot_installs_elsewhere(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    lsn = 0;
    open_start(loop);
    for (uint64_t i = 1; i <= 30; i++)
        enqueue_body("/queue/x", i, (uint8_t)(i % 10), "body", 4);
    struct journal_builder jb;
    jb_init(&jb);
    jb_sub_create(&jb, "c", "s", "/topic/t", "a = 1", "");
    append(&jb);
    wait_durable(loop, lsn);
    uint64_t l, e, sum;
    struct store_snapshot *snap = store_snapshot_open(&l, &e, &sum);
    assert_int_equal(l, lsn);
    struct buf all = {0};
    uint32_t n, total = 0;
    bool failed = false;
    while ((n = store_snapshot_next(snap, &all, 256, &failed)) > 0)
        total += n;
    assert_false(failed);
    store_snapshot_close(snap);
    assert_int_equal(total, 31); /* 30 messages and the subscription */
    struct seen before;
    page("/queue/x", &before);
    store_close();
    rm_rf(dir);

    durable = 0;
    open_start(loop);
    store_wipe();
    store_put_raw(all.data, all.len);
    store_snapshot_installed(l, e, sum);
    for (int i = 0; i < 2000 && durable < l && !failed_at; i++)
        ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT), usleep(1000);
    assert_int_equal(durable, l);
    for (int i = 0; i < 2000 && store_indexed_lsn() < l; i++)
        ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT), usleep(1000);
    struct seen after;
    page("/queue/x", &after);
    assert_int_equal(after.n, 30);
    for (int i = 0; i < 30; i++)
        assert_string_equal(after.ids[i], before.ids[i]);
    assert_int_equal(count("S", 1), 1);
    assert_int_equal(counter("/queue/x").n, 30);
    store_close();
    open_store();
    assert_int_equal(store_info()->applied_lsn, l);
    assert_int_equal(store_info()->tip_sum, sum);
    buf_free(&all);
}

/* A format-1 store: one LevelDB in the store directory, messages in their
 * keys' values, keys without the priority. */
static void test_format1_store_converted(void **state)
{
    assert_int_equal(mkdir(dir, 0750), 0);
    char *lerr = NULL;
    leveldb_options_t *o = leveldb_options_create();
    leveldb_options_set_create_if_missing(o, 1);
    leveldb_t *db = leveldb_open(o, dir, &lerr);
    assert_non_null(db);
    leveldb_writeoptions_t *w = leveldb_writeoptions_create();
    leveldb_put(db, w, "!meta/format", 12, "stompd-1", 8, &lerr);
    leveldb_put(db, w, "!meta/node_id", 13, "0123456789abcdef", 16, &lerr);
    char be[8];
    jkey_be64(be, 40);
    leveldb_put(db, w, "!meta/applied_lsn", 17, be, 8, &lerr);
    jkey_be64(be, 3);
    leveldb_put(db, w, "!meta/epoch", 11, be, 8, &lerr);
    static const struct {
        uint64_t seq;
        uint8_t prio;
    } q[] = {{3, 4}, {5, 9}, {8, 4}, {12, 0}};
    for (size_t i = 0; i < 4; i++) {
        struct buf k = {0}, v = {0};
        buf_putc(&k, 'Q');
        buf_append(&k, "/queue/a", 9);
        char sb[8];
        jkey_be64(sb, q[i].seq);
        buf_append(&k, sb, 8);
        char id[8];
        snprintf(id, sizeof id, "a%llu", (unsigned long long)q[i].seq);
        struct msg *m = msg_new("/queue/a", id, q[i].seq, 1, true, q[i].prio, 0, NULL, 0, id, strlen(id));
        journal_encode_msg(&v, m);
        msg_unref(m);
        leveldb_put(db, w, k.data, k.len, v.data, v.len, &lerr);
        if (q[i].seq == 3) {
            /* a3 was delivered twice */
            struct buf r = {0};
            buf_putc(&r, 'R');
            buf_append(&r, k.data, k.len);
            leveldb_put(db, w, r.data, r.len, "\0\0\0\2", 4, &lerr);
            buf_free(&r);
        }
        buf_free(&k);
        buf_free(&v);
    }
    leveldb_put(db, w, "L\0\0\0\0\0\0\0\x28", 9, "an old entry", 12, &lerr);
    assert_null(lerr);
    leveldb_writeoptions_destroy(w);
    leveldb_close(db);
    leveldb_options_destroy(o);

    open_store();
    assert_true(store_info()->migrated);
    assert_string_equal(store_info()->node_id, "0123456789abcdef");
    assert_int_equal(store_info()->applied_lsn, 40);
    assert_int_equal(store_info()->epoch, 3);
    struct seen s;
    page("/queue/a", &s);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.ids[0], "a5");
    assert_string_equal(s.ids[1], "a3");
    assert_int_equal(s.deliveries[1], 2);
    assert_string_equal(s.ids[2], "a8");
    assert_string_equal(s.ids[3], "a12");
    assert_int_equal(counter("/queue/a").n, 4);
    char old[300];
    snprintf(old, sizeof old, "%s.v1", dir);
    struct stat st;
    assert_int_not_equal(stat(old, &st), 0);
    store_close();
    /* and it opens as a format-2 store from now on */
    open_store();
    assert_false(store_info()->migrated);
    assert_int_equal(store_info()->applied_lsn, 40);
}

/* The store's index (closed) at path says it has format want. */
static void assert_index_format(leveldb_options_t *o, leveldb_readoptions_t *ro, const char *path, const char *want)
{
    char *lerr = NULL;
    leveldb_t *db = leveldb_open(o, path, &lerr);
    assert_non_null(db);
    size_t fl;
    char *fmt = leveldb_get(db, ro, "!meta/format", 12, &fl, &lerr);
    assert_non_null(fmt);
    assert_int_equal(fl, strlen(want));
    assert_memory_equal(fmt, want, fl);
    leveldb_free(fmt);
    leveldb_close(db);
}

/* A message is read through the index alone: the log record's checksum,
 * which replay checks, does not cover that read; the index's location
 * carries the message's own (helper-113: a flipped byte was delivered
 * as it was). A format-2 index, whose locations have none, is read as it
 * is and marked format 3. */
static void test_messages_read_are_checked_and_format2_read(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    lsn = 0;
    open_start(loop);
    enqueue_body("/queue/c", 1, 4, "alpha", 5);
    enqueue_body("/queue/c", 2, 4, "bravo", 5);
    enqueue_body("/queue/c", 3, 4, "charlie", 7);
    wait_durable(loop, lsn);
    char seg[512], away[600];
    last_segment(seg, sizeof seg);
    store_close();

    /* as stompd-2 wrote it: 28-byte locations */
    char path[512];
    snprintf(path, sizeof path, "%s/index", dir);
    char *lerr = NULL;
    leveldb_options_t *o = leveldb_options_create();
    leveldb_t *db = leveldb_open(o, path, &lerr);
    assert_non_null(db);
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_writeoptions_t *w = leveldb_writeoptions_create();
    leveldb_writebatch_t *b = leveldb_writebatch_create();
    leveldb_iterator_t *it = leveldb_create_iterator(db, ro);
    int locs = 0;
    for (leveldb_iter_seek(it, "Q", 1); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl);
        const char *v = leveldb_iter_value(it, &vl);
        if (k[0] != 'Q')
            break;
        assert_int_equal(vl, 32);
        leveldb_writebatch_put(b, k, kl, v, 28);
        locs++;
    }
    leveldb_iter_destroy(it);
    assert_int_equal(locs, 3);
    leveldb_writebatch_put(b, "!meta/format", 12, "stompd-2", 8);
    leveldb_write(db, w, b, &lerr);
    assert_null(lerr);
    leveldb_writebatch_destroy(b);
    leveldb_close(db);

    /* a store its checks refuse is not marked: the stompd it came from
     * can still open it once it is mended */
    snprintf(away, sizeof away, "%s.away", seg);
    assert_int_equal(rename(seg, away), 0);
    char err[512];
    assert_int_equal(store_open(dir, &limits, err, sizeof err), -EIO);
    assert_non_null(strstr(err, "missing part of its log"));
    store_close();
    assert_index_format(o, ro, path, "stompd-2");
    assert_int_equal(rename(away, seg), 0);

    open_store();
    struct seen l;
    page("/queue/c", &l);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.ids[1], "m2");
    store_close();
    assert_index_format(o, ro, path, "stompd-3");
    leveldb_readoptions_destroy(ro);
    leveldb_writeoptions_destroy(w);
    leveldb_options_destroy(o);

    /* a new location has a checksum: a damaged body is not read */
    rm_rf(dir);
    lsn = 0;
    open_start(loop);
    enqueue_body("/queue/c", 1, 4, "alpha", 5);
    enqueue_body("/queue/c", 2, 4, "bravo", 5);
    enqueue_body("/queue/c", 3, 4, "charlie", 7);
    wait_durable(loop, lsn);
    last_segment(seg, sizeof seg);
    store_close();
    FILE *f = fopen(seg, "r+b");
    assert_non_null(f);
    static char data[1 << 16];
    size_t n = fread(data, 1, sizeof data, f);
    char *at = memmem(data, n, "bravo", 5);
    assert_non_null(at);
    at[2] ^= 0x40;
    assert_int_equal(fseek(f, at - data, SEEK_SET), 0);
    assert_int_equal(fwrite(at, 1, 5, f), 5);
    fclose(f);
    open_store();
    page_any("/queue/c", &l);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.unreadable, 1);
    assert_string_equal(l.ids[0], "m1");
    assert_string_equal(l.ids[1], "m3");
}

/* More segments than one fixed array held (helper-115: 4,096, and the
 * store, whole, was refused as missing its log's tail). */
static void test_more_than_4096_segments_reopen(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    struct store_limits small = limits;
    small.segment_bytes = 4096;
    lsn = 0;
    char err[512];
    assert_int_equal(store_open(dir, &small, err, sizeof err), 0);
    assert_int_equal(store_start(loop, false, on_done, on_fail, err, sizeof err), 0);
    static char body[3000];
    memset(body, 'b', sizeof body);
    for (uint64_t i = 1; i <= 4200; i++) {
        enqueue_body("/queue/many", i, 4, body, sizeof body);
        store_kick(); /* written before the next: a segment each (a group goes in one) */
        for (int k = 0; k < 100000 && durable < lsn && !failed_at; k++)
            ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT), usleep(50);
    }
    wait_durable(loop, lsn);
    uint32_t ids[1];
    assert_true(seglog_ids(ids, 1) > 4096);
    store_close();
    if (store_open(dir, &small, err, sizeof err) != 0)
        fail_msg("reopen: %s", err);
    assert_int_equal(counter("/queue/many").n, 4200);
}

static void test_second_open_refused(void **state)
{
    open_store();
    /* LevelDB's lock is per process too: a second open fails the same way
     * as a second stompd would */
    char path[512];
    snprintf(path, sizeof path, "%s/index", dir);
    char *lerr = NULL;
    leveldb_options_t *o = leveldb_options_create();
    leveldb_t *db = leveldb_open(o, path, &lerr);
    assert_null(db);
    assert_non_null(lerr);
    assert_non_null(strstr(lerr, "lock"));
    leveldb_free(lerr);
    leveldb_options_destroy(o);
}

static void put_raw(const char *k, const char *v)
{
    char path[512];
    snprintf(path, sizeof path, "%s/index", dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    assert_int_equal(system(cmd), 0);
    char *lerr = NULL;
    leveldb_options_t *o = leveldb_options_create();
    leveldb_options_set_create_if_missing(o, 1);
    leveldb_t *db = leveldb_open(o, path, &lerr);
    assert_non_null(db);
    leveldb_writeoptions_t *w = leveldb_writeoptions_create();
    leveldb_put(db, w, k, strlen(k), v, strlen(v), &lerr);
    assert_null(lerr);
    leveldb_writeoptions_destroy(w);
    leveldb_close(db);
    leveldb_options_destroy(o);
}

static void test_foreign_and_wrong_format(void **state)
{
    char err[512];
    put_raw("hello", "world");
    assert_int_equal(store_open(dir, &limits, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "not a stompd store"));
    store_close();
    rm_rf(dir);
    put_raw("!meta/format", "stompd-99");
    assert_int_equal(store_open(dir, &limits, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "stompd-99"));
}

static void test_corrupt_store_refused(void **state)
{
    char err[512];
    open_store();
    store_close();
    /* garble the MANIFEST the CURRENT file points to */
    char path[512], name[256] = "";
    snprintf(path, sizeof path, "%s/index/CURRENT", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(name, sizeof name, f));
    fclose(f);
    name[strcspn(name, "\n")] = '\0';
    snprintf(path, sizeof path, "%s/index/%s", dir, name);
    f = fopen(path, "r+");
    assert_non_null(f);
    fputs("this is not a manifest at all, not at all, not at all", f);
    fclose(f);
    int rc = store_open(dir, &limits, err, sizeof err);
    assert_true(rc < 0);
    assert_non_null(strstr(err, dir));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_reads_back_in_dispatch_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_delete_sees_same_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_durable_subscription_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_removed_twice_in_one_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purged_then_acked_next_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segments_go_when_nothing_needs_them, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_behind_log_is_replayed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acked_before_indexed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_cut_and_lost_tail_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zeros_written_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_past_iov_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_installs_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_format1_store_converted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_messages_read_are_checked_and_format2_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_more_than_4096_segments_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_open_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_and_wrong_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_store_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
