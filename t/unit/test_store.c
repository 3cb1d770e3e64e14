/* Unit tests for the LevelDB store: entries written by the writer thread
 * in groups land as the journal says, range deletes see keys from the
 * same group, reopening gives the same position, the journal is pruned,
 * and a locked, foreign, mis-formatted or corrupt store is refused. */
#include "config.h"

#include <dirent.h>
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

static void open_start(struct ev_loop *loop)
{
    char err[512];
    int rc = store_open(dir, err, sizeof err);
    if (rc)
        fail_msg("open: %s", err);
    store_set_keep_journal(true);
    assert_int_equal(store_start(loop, true, on_done, on_fail, err, sizeof err), 0);
}

static void wait_durable(struct ev_loop *loop, uint64_t lsn)
{
    for (int i = 0; i < 2000 && durable < lsn && !failed_at; i++)
        ev_run(loop, EVRUN_ONCE);
    assert_int_equal(failed_at, 0);
    assert_true(durable >= lsn);
}

static uint64_t lsn;

static void append(struct journal_builder *jb)
{
    size_t len;
    lsn++;
    char *e = jb_finish(jb, 1, lsn, &len);
    store_append(lsn, e, len, true);
}

static void enqueue(const char *dest, uint64_t seq)
{
    struct journal_builder jb;
    jb_init(&jb);
    struct msg *m = msg_new(dest, "id", seq, 1, true, 4, 0, NULL, 0, "x", 1);
    jb_enqueue(&jb, dest, NULL, 0, NULL, m);
    msg_unref(m);
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
    jb_dequeue(&jb, "/queue/a", 1);
    jb_delivered(&jb, KEY_Q, "/queue/a", "", 3, 1);
    append(&jb);
    wait_durable(loop, lsn);
    assert_int_equal(count("Q/queue/a", 9), 99);
    assert_int_equal(count("Q/queue/b", 9), 100);
    assert_int_equal(count("R", 1), 1);
    assert_int_equal(count("L", 1), 201);
    store_close();

    char err[512];
    if (store_open(dir, err, sizeof err) != 0)
        fail_msg("reopen: %s", err);
    assert_false(store_info()->created);
    assert_int_equal(store_info()->applied_lsn, 201);
    assert_int_equal(store_info()->epoch, 1);
    assert_int_equal(store_info()->first_lsn, 1);
    assert_string_equal(store_info()->node_id, node);
    assert_int_equal(count("Q", 1), 199);
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
    jb_delivered(&jb, KEY_Q, "/queue/p", "", 2, 1);
    append(&jb);
    jb_init(&jb);
    jb_purge(&jb, "/queue/p");
    append(&jb);
    enqueue("/queue/p", 4);
    wait_durable(loop, lsn);
    assert_int_equal(count("Q/queue/p\0", 10), 1);
    assert_int_equal(count("Q/queue/pp\0", 11), 1);
    assert_int_equal(count("R", 1), 0);
}

static void test_durable_subscription_delete(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    lsn = 0;
    open_start(loop);
    struct journal_builder jb;
    jb_init(&jb);
    jb_sub_create(&jb, "c1", "s1", "/topic/t", NULL);
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
}

static void test_retention(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    lsn = 0;
    open_start(loop);
    store_set_retention(50);
    for (uint64_t i = 1; i <= 120; i++) {
        enqueue("/queue/r", i);
        if (i % 10 == 0)
            wait_durable(loop, lsn);
    }
    wait_durable(loop, lsn);
    assert_int_equal(count("L", 1), 50);
    /* a floor keeps what a replica still needs */
    store_set_prune_floor(100);
    for (uint64_t i = 121; i <= 160; i++)
        enqueue("/queue/r", i);
    wait_durable(loop, lsn);
    assert_int_equal(count("L", 1), 61); /* 100..160 */
    assert_int_equal(count("Q", 1), 160);
}

static void test_second_open_refused(void **state)
{
    char err[512];
    assert_int_equal(store_open(dir, err, sizeof err), 0);
    /* LevelDB's lock is per process too: a second open fails the same way
     * as a second stompd would */
    char *lerr = NULL;
    leveldb_options_t *o = leveldb_options_create();
    leveldb_t *db = leveldb_open(o, dir, &lerr);
    assert_null(db);
    assert_non_null(lerr);
    assert_non_null(strstr(lerr, "lock"));
    leveldb_free(lerr);
    leveldb_options_destroy(o);
}

static void put_raw(const char *k, const char *v)
{
    char *lerr = NULL;
    leveldb_options_t *o = leveldb_options_create();
    leveldb_options_set_create_if_missing(o, 1);
    leveldb_t *db = leveldb_open(o, dir, &lerr);
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
    assert_int_equal(store_open(dir, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "not a stompd store"));
    store_close();
    rm_rf(dir);
    put_raw("!meta/format", "stompd-99");
    assert_int_equal(store_open(dir, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "stompd-99"));
}

static void test_corrupt_store_refused(void **state)
{
    char err[512];
    assert_int_equal(store_open(dir, err, sizeof err), 0);
    store_close();
    /* garble the MANIFEST the CURRENT file points to */
    char path[512], name[256] = "";
    snprintf(path, sizeof path, "%s/CURRENT", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(name, sizeof name, f));
    fclose(f);
    name[strcspn(name, "\n")] = '\0';
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "r+");
    assert_non_null(f);
    fputs("this is not a manifest at all, not at all, not at all", f);
    fclose(f);
    int rc = store_open(dir, err, sizeof err);
    assert_true(rc < 0);
    assert_non_null(strstr(err, dir));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_delete_sees_same_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_durable_subscription_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_open_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_and_wrong_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_store_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
