/* Unit test of recovery.c alone: a LevelDB store built by hand is read
 * back through the real store and journal code, and what recovery asks
 * of the broker (destinations, durable subscriptions, queued messages
 * with their delivery counts, the duplicate window) is recorded by the
 * stubs in stub_broker.c and checked here. */
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

#include "stompd/journal.h"
#include "stompd/log.h"
#include "stompd/msg.h"
#include "stompd/recovery.h"
#include "stompd/store.h"
#include "stub_broker.h"

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
    log_set_level(LOG_WARN);
    stub_broker_reset();
    assert_int_equal(store_open(storedir, err, sizeof err), 0);
    assert_int_equal(store_info()->applied_lsn, 40);
    uint64_t max_seq = 0;
    if (recovery_rebuild(&max_seq, err, sizeof err) != 0)
        fail_msg("recovery_rebuild: %s", err);
    assert_int_equal(max_seq, 100);

    /* every queued message, in key (arrival) order per destination, with
     * the delivery count its R key holds */
    static const struct {
        const char *dest, *id;
        uint32_t redeliveries;
    } want[] = {
        {"/queue/a", "a3", 2}, {"/queue/a", "a5", 0}, {"/queue/a", "a8", 0}, {"/queue/a", "a12", 0},
        {"/queue/b", "b100", 0}, {"/topic/t", "t", 0}, {"/topic/t", "t", 0},
    };
    assert_int_equal(stub_npushed, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < stub_npushed; i++) {
        assert_string_equal(stub_pushed[i].dest, want[i].dest);
        assert_string_equal(stub_pushed[i].id, want[i].id);
        assert_int_equal(stub_pushed[i].redeliveries, want[i].redeliveries);
        assert_true(stub_pushed[i].journaled);
    }
    /* priorities travel with the messages (the queue orders by them) */
    assert_int_equal(stub_pushed[1].priority, 9);
    assert_int_equal(stub_pushed[3].priority, 0);
    /* the durable subscription, with its selector compiled, holds its two */
    assert_int_equal(stub_ndurables, 1);
    assert_string_equal(stub_durables[0].client_id, "c1");
    assert_string_equal(stub_durables[0].name, "s1");
    assert_string_equal(stub_durables[0].topic, "/topic/t");
    assert_string_equal(stub_durables[0].selector, "color = 'red'");
    assert_true(stub_durables[0].compiled);
    assert_true(stub_pushed[5].durable && stub_pushed[6].durable);
    /* the duplicate window */
    assert_int_equal(stub_ndups, 1);
    assert_string_equal(stub_dups[0], "producer-1:5");
    assert_true(stub_dups_restored);

    store_close();
    stub_broker_reset();
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
