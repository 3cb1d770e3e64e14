/* Unit test of recovery.c alone: a store written through the real store
 * and journal code is read back, and what recovery asks of the broker
 * (destinations, durable subscriptions, each queue's message count, the
 * duplicate window) is recorded by the stubs in stub_broker.c and checked
 * here. */
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

#include "stompd/dest.h"
#include "stompd/journal.h"
#include "stompd/log.h"
#include "stompd/msg.h"
#include "stompd/recovery.h"
#include "stompd/store.h"
#include "stub_broker.h"

static char dir[128], storedir[160];
static uint64_t lsn, durable;

static void on_done(uint64_t l)
{
    durable = l;
}

static void on_fail(uint64_t l, const char *why)
{
    fail_msg("store failed at %llu: %s", (unsigned long long)l, why);
}

static void append(struct journal_builder *jb)
{
    size_t len;
    char *e = jb_finish(jb, 3, ++lsn, &len);
    store_append(lsn, e, len, true);
}

static void put_msg_q(const char *dest, uint64_t seq, uint8_t prio, const char *body)
{
    struct journal_builder jb;
    jb_init(&jb);
    struct msg *m = msg_new(dest, body, seq, 1000 + (int64_t)seq, true, prio, 0, NULL, 0, body, strlen(body));
    jb_enqueue(&jb, dest, NULL, 0, seq == 5 ? "producer-1:5" : NULL, m);
    msg_unref(m);
    append(&jb);
}

/* A store written the way a broker writes it: entries through the
 * store's writer. */
static void build_store(void)
{
    char cmd[512], err[512];
    snprintf(dir, sizeof dir, "/tmp/stompd-test-recovery-%d", (int)getpid());
    snprintf(storedir, sizeof storedir, "%s/store", dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    assert_int_equal(system(cmd), 0);
    struct store_limits lim = {0};
    assert_int_equal(store_open(storedir, &lim, err, sizeof err), 0);
    struct ev_loop *loop = ev_default_loop(0);
    assert_int_equal(store_start(loop, false, on_done, on_fail, err, sizeof err), 0);
    lsn = 0;
    /* /queue/a: seq 3 (prio 4), 5 (prio 9), 8 (prio 4), 12 (prio 0) */
    put_msg_q("/queue/a", 3, 4, "a3");
    put_msg_q("/queue/a", 5, 9, "a5");
    put_msg_q("/queue/a", 8, 4, "a8");
    put_msg_q("/queue/a", 12, 0, "a12");
    put_msg_q("/queue/b", 100, 4, "b100");
    /* a3 was delivered twice and never acked */
    struct journal_builder jb;
    jb_init(&jb);
    jb_delivered(&jb, KEY_Q, "/queue/a", "", 4, 3, 2);
    append(&jb);
    /* durable subscription c1/s1 on /topic/t with a selector, two waiting */
    jb_init(&jb);
    jb_sub_create(&jb, "c1", "s1", "/topic/t", "color = 'red'", "Ualice");
    append(&jb);
    const char *targets[] = {"c1", "s1"};
    for (uint64_t seq = 20; seq <= 21; seq++) {
        jb_init(&jb);
        struct msg *m = msg_new("/topic/t", "t", seq, 1, true, 4, 0, NULL, 0, "t", 1);
        jb_enqueue(&jb, "/topic/t", targets, 1, NULL, m);
        msg_unref(m);
        append(&jb);
    }
    /* three scheduled messages, one cancelled: two left */
    for (uint64_t seq = 30; seq <= 32; seq++) {
        jb_init(&jb);
        char id[16];
        snprintf(id, sizeof id, "job-%llu", (unsigned long long)seq);
        struct msg *m = msg_new("/queue/later", id, seq, 1, true, 4, 0, NULL, 0, "s", 1);
        jb_sched_add(&jb, id, 5000 + (int64_t)seq, NULL, m);
        msg_unref(m);
        append(&jb);
    }
    jb_init(&jb);
    jb_sched_del(&jb, "job-31", 5031, 4, 31);
    append(&jb);
    /* a virtual topic's consumer queue kept while empty */
    jb_init(&jb);
    jb_dest_keep(&jb, "/queue/Consumer.A.VirtualTopic.x");
    append(&jb);
    store_kick();
    for (int i = 0; i < 5000 && (durable < lsn || store_indexed_lsn() < lsn); i++)
        ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT), usleep(1000);
    assert_int_equal(store_indexed_lsn(), lsn);
    store_close();
}

static void test_recover_a_written_store(void **state)
{
    char err[512];
    build_store();
    log_set_level(LOG_WARN);
    stub_broker_reset();
    struct store_limits lim = {0};
    assert_int_equal(store_open(storedir, &lim, err, sizeof err), 0);
    assert_int_equal(store_info()->applied_lsn, 14);
    uint64_t max_seq = 0;
    if (recovery_rebuild(&max_seq, err, sizeof err) != 0)
        fail_msg("recovery_rebuild: %s", err);
    assert_int_equal(max_seq, 100);
    /* scheduled messages: only their number (they stay in the store) */
    assert_int_equal(stub_sched_restored, 2);
    /* the kept queue exists, marked kept */
    struct dest *kept = stub_find_dest("/queue/Consumer.A.VirtualTopic.x");
    assert_non_null(kept);
    assert_true(kept->kept);

    /* every queue's count, from its counter: the messages stay in the
     * store (a queue reads them back as consumers need them) */
    assert_int_equal(stub_nrestored, 3);
    assert_string_equal(stub_restored[0].dest, "/queue/a");
    assert_int_equal(stub_restored[0].n, 4);
    assert_string_equal(stub_restored[1].dest, "/queue/b");
    assert_int_equal(stub_restored[1].n, 1);
    assert_string_equal(stub_restored[2].dest, "/topic/t");
    assert_true(stub_restored[2].durable);
    assert_int_equal(stub_restored[2].n, 2);
    /* the durable subscription, with its selector compiled, holds its two */
    assert_int_equal(stub_ndurables, 1);
    assert_string_equal(stub_durables[0].client_id, "c1");
    assert_string_equal(stub_durables[0].name, "s1");
    assert_string_equal(stub_durables[0].topic, "/topic/t");
    assert_string_equal(stub_durables[0].selector, "color = 'red'");
    assert_true(stub_durables[0].compiled);
    assert_string_equal(stub_durables[0].reader, "Ualice");
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
        cmocka_unit_test(test_recover_a_written_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
