/* Recovery from a store built by hand, key by key as DESIGN §4 lays it
 * out: the broker comes back with its queues in priority and arrival
 * order, delivered-but-unacked messages marked for redelivery, durable
 * subscriptions with their backlog, and the duplicate window. */
#include "config.h"

#include <ev.h>
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

#include "stompd/config.h"
#include "stompd/dest.h"
#include "stompd/dup.h"
#include "stompd/durable.h"
#include "stompd/journal.h"
#include "stompd/log.h"
#include "stompd/msg.h"
#include "stompd/persist.h"
#include "stompd/server.h"

static char dir[128], storedir[160];
static leveldb_t *db;
static leveldb_writeoptions_t *wo;

static void put(const char *k, size_t kl, const char *v, size_t vl)
{
    char *err = NULL;
    leveldb_put(db, wo, k, kl, v, vl, &err);
    assert_null(err);
}

static void put_msg_q(const char *dest, uint64_t seq, uint8_t prio, const char *body)
{
    struct buf k = {0}, v = {0};
    jkey_q(&k, dest, strlen(dest), seq);
    struct msg *m = msg_new(dest, body, seq, 1000 + (int64_t)seq, true, prio, 0, NULL, 0, body, strlen(body));
    journal_encode_msg(&v, m);
    put(k.data, k.len, v.data, v.len);
    msg_unref(m);
    buf_free(&k);
    buf_free(&v);
}

static void build_store(void)
{
    char cmd[512];
    snprintf(dir, sizeof dir, "/tmp/stompd-test-recovery-%d", (int)getpid());
    snprintf(storedir, sizeof storedir, "%s/store", dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    assert_int_equal(system(cmd), 0);
    leveldb_options_t *o = leveldb_options_create();
    leveldb_options_set_create_if_missing(o, 1);
    char *err = NULL;
    db = leveldb_open(o, storedir, &err);
    assert_non_null(db);
    wo = leveldb_writeoptions_create();
    put("!meta/format", 12, "stompd-1", 8);
    put("!meta/node_id", 13, "0123456789abcdef", 16);
    char be[8];
    jkey_be64(be, 40);
    put("!meta/applied_lsn", 17, be, 8);
    jkey_be64(be, 3);
    put("!meta/epoch", 11, be, 8);
    /* /queue/a: seq 3 (prio 4), 5 (prio 9), 8 (prio 4), 12 (prio 0) */
    put_msg_q("/queue/a", 3, 4, "a3");
    put_msg_q("/queue/a", 5, 9, "a5");
    put_msg_q("/queue/a", 8, 4, "a8");
    put_msg_q("/queue/a", 12, 0, "a12");
    put_msg_q("/queue/b", 100, 4, "b100");
    /* a3 was delivered twice and never acked */
    struct buf k = {0};
    buf_putc(&k, KEY_R);
    jkey_q(&k, "/queue/a", 8, 3);
    put(k.data, k.len, "\0\0\0\2", 4);
    buf_free(&k);
    /* durable subscription c1/s1 on /topic/t with a selector, two waiting */
    struct buf sv = {0};
    const char *topic = "/topic/t", *sel = "color = 'red'";
    char l[4] = {0, 0, 0, (char)strlen(topic)};
    buf_append(&sv, l, 4);
    buf_append_str(&sv, topic);
    l[3] = (char)strlen(sel);
    buf_append(&sv, l, 4);
    buf_append_str(&sv, sel);
    jkey_s(&k, "c1", 2, "s1", 2);
    put(k.data, k.len, sv.data, sv.len);
    buf_free(&k);
    buf_free(&sv);
    for (uint64_t seq = 20; seq <= 21; seq++) {
        struct buf tk = {0}, tv = {0};
        jkey_t(&tk, "c1", 2, "s1", 2, seq);
        struct msg *m = msg_new(topic, "t", seq, 1, true, 4, 0, NULL, 0, "t", 1);
        journal_encode_msg(&tv, m);
        put(tk.data, tk.len, tv.data, tv.len);
        msg_unref(m);
        buf_free(&tk);
        buf_free(&tv);
    }
    /* the duplicate window */
    jkey_be64(be, 5);
    put("Dproducer-1:5", 13, be, 8);
    leveldb_writeoptions_destroy(wo);
    leveldb_close(db);
    leveldb_options_destroy(o);
}

static void test_recover_hand_built_store(void **state)
{
    char err[512];
    build_store();
    config_init_defaults();
    log_set_level(LOG_WARN);
    assert_int_equal(config_set_key("broker.data_dir", dir, err, sizeof err), 0);
    assert_int_equal(config_set_key("store.sync", "local_mem", err, sizeof err), 0);
    struct ev_loop *loop = ev_default_loop(0);
    assert_int_equal(server_init(loop), 0);
    int rc = persist_open(err, sizeof err);
    if (rc)
        fail_msg("persist_open: %s", err);
    assert_true(persist_enabled());
    assert_int_equal(persist_last_lsn(), 40);

    struct dest *a = dest_find("/queue/a");
    assert_non_null(a);
    assert_int_equal(a->q.npending, 4);
    /* priority first, arrival order within a priority */
    const char *order[] = {"a5", "a3", "a8", "a12"};
    int i = 0;
    for (int p = MSG_PRIORITIES - 1; p >= 0; p--) {
        struct qentry *e;
        TAILQ_FOREACH(e, &a->q.pending[p], link) {
            assert_true(i < 4);
            assert_string_equal(e->msg->id, order[i]);
            assert_true(e->msg->journaled);
            assert_int_equal(e->redeliveries, strcmp(e->msg->id, "a3") == 0 ? 2 : 0);
            i++;
        }
    }
    assert_int_equal(i, 4);
    assert_non_null(dest_find("/queue/b"));
    struct durable *d = durable_find("c1", "s1");
    assert_non_null(d);
    assert_string_equal(d->selector, "color = 'red'");
    assert_non_null(d->sel);
    assert_ptr_equal(d->dest, dest_find("/topic/t"));
    assert_int_equal(d->q.npending, 2);
    assert_int_equal(srv.next_msg_seq, 100);
    assert_true(dup_seen("producer-1:5", NULL));
    assert_false(dup_seen("producer-1:6", NULL));

    server_shutdown();
    dup_free_all();
    persist_close();
    config_free();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recover_hand_built_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
