/* Unit tests for the quorum tracker: parsing sync modes, and the committed
 * lsn for each mode over tables of positions. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stompd/quorum.h"

static void test_parse(void **state)
{
    unsigned m;
    char err[256];
    assert_int_equal(quorum_parse_modes("quorum_mem", &m, err, sizeof err), 0);
    assert_int_equal(m, SYNC_QUORUM_MEM);
    assert_int_equal(quorum_parse_modes("local_disk,remote_mem", &m, err, sizeof err), 0);
    assert_int_equal(m, SYNC_LOCAL_DISK | SYNC_REMOTE_MEM);
    assert_int_equal(quorum_parse_modes(" local_mem , quorum_disk ", &m, err, sizeof err), 0);
    assert_int_equal(m, SYNC_LOCAL_MEM | SYNC_QUORUM_DISK);
    assert_int_not_equal(quorum_parse_modes("quorum_mem,fast", &m, err, sizeof err), 0);
    assert_non_null(strstr(err, "'fast'"));
    assert_int_not_equal(quorum_parse_modes("", &m, err, sizeof err), 0);
    assert_int_not_equal(quorum_parse_modes("quorum", &m, err, sizeof err), 0);
    char out[128];
    quorum_format_modes(SYNC_LOCAL_DISK | SYNC_QUORUM_MEM, out, sizeof out);
    assert_string_equal(out, "local_disk,quorum_mem");
    assert_true(quorum_slaves_sync(SYNC_QUORUM_DISK));
    assert_false(quorum_slaves_sync(SYNC_QUORUM_MEM | SYNC_LOCAL_DISK));
    assert_true(quorum_master_sync(SYNC_LOCAL_DISK));
    assert_false(quorum_master_sync(SYNC_REMOTE_DISK));
    assert_true(quorum_slaves_report(SYNC_QUORUM_MEM | SYNC_LOCAL_DISK));
    assert_true(quorum_slaves_report(SYNC_REMOTE_MEM));
    assert_false(quorum_slaves_report(SYNC_LOCAL_MEM | SYNC_LOCAL_DISK));
}

struct row {
    const char *modes;
    uint32_t replicas;
    uint64_t local_mem, local_disk;
    uint32_t nslaves;
    uint64_t received[3], durable[3];
    uint64_t want;
};

static const struct row rows[] = {
    /* quorum_mem, 3 replicas: master + 1 slave; a slave's copy counts once
     * its store wrote it (durable), not when it arrived (received) */
    {"quorum_mem", 3, 10, 10, 0, {0}, {0}, 0},                 /* no slave: nothing commits */
    {"quorum_mem", 3, 10, 10, 1, {7}, {7}, 7},
    {"quorum_mem", 3, 10, 10, 1, {9}, {0}, 0},                 /* received, not written: no */
    {"quorum_mem", 3, 10, 10, 2, {7, 9}, {7, 9}, 9},
    {"quorum_mem", 3, 10, 10, 2, {10, 10}, {7, 4}, 7},
    {"quorum_mem", 3, 5, 5, 2, {7, 9}, {7, 9}, 7},             /* master behind its slaves */
    {"quorum_mem", 3, 0, 0, 2, {12, 12}, {12, 3}, 3},          /* the master's own write counts too */
    {"quorum_mem", 3, 10, 0, 2, {12, 3}, {12, 3}, 10},
    /* quorum_disk counts durable positions (the slaves fsync) */
    {"quorum_disk", 3, 10, 10, 2, {9, 9}, {4, 6}, 6},
    {"quorum_disk", 3, 10, 2, 2, {9, 9}, {4, 6}, 4},
    /* 5 replicas: master + 2 slaves */
    {"quorum_mem", 5, 10, 10, 1, {10}, {10}, 0},
    {"quorum_mem", 5, 10, 10, 2, {10, 8}, {10, 8}, 8},
    {"quorum_mem", 5, 10, 10, 3, {10, 8, 9}, {10, 8, 9}, 9},
    /* 1 replica: the master alone */
    {"quorum_mem", 1, 10, 10, 0, {0}, {0}, 10},
    {"quorum_disk", 1, 10, 7, 0, {0}, {0}, 7},
    /* single conditions */
    {"local_mem", 3, 10, 4, 0, {0}, {0}, 10},
    {"local_disk", 3, 10, 4, 0, {0}, {0}, 4},
    {"remote_mem", 3, 10, 10, 2, {3, 8}, {3, 8}, 8},
    {"remote_mem", 3, 10, 10, 2, {3, 8}, {1, 1}, 1},
    {"remote_mem", 3, 10, 10, 0, {0}, {0}, 0},
    {"remote_disk", 3, 10, 10, 2, {3, 8}, {2, 5}, 5},
    /* combinations: every condition must hold */
    {"local_disk,quorum_mem", 3, 10, 6, 1, {9}, {9}, 6},
    {"local_disk,quorum_mem", 3, 10, 10, 1, {9}, {9}, 9},
    {"local_mem,remote_disk", 3, 10, 0, 2, {10, 10}, {3, 0}, 3},
};

static void test_table(void **state)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct row *r = &rows[i];
        unsigned modes;
        char err[128];
        assert_int_equal(quorum_parse_modes(r->modes, &modes, err, sizeof err), 0);
        struct quorum q;
        quorum_init(&q, r->replicas, modes, 0);
        quorum_local(&q, r->local_mem, r->local_disk);
        for (uint32_t s = 0; s < r->nslaves; s++) {
            assert_int_equal(quorum_add_slave(&q, 100 + s), 0);
            quorum_slave_ack(&q, 100 + s, r->received[s], r->durable[s]);
        }
        uint64_t got = quorum_committed(&q);
        if (got != r->want)
            fail_msg("row %zu (%s): committed %llu, want %llu", i, r->modes, (unsigned long long)got,
                     (unsigned long long)r->want);
    }
}

static void test_monotonic_and_slave_loss(void **state)
{
    struct quorum q;
    quorum_init(&q, 3, SYNC_QUORUM_MEM, 5);
    assert_int_equal(quorum_committed(&q), 5);
    assert_int_equal(quorum_add_slave(&q, 1), 0);
    assert_int_equal(quorum_add_slave(&q, 1), -EEXIST);
    quorum_local(&q, 20, 20);
    quorum_slave_ack(&q, 1, 15, 15);
    assert_int_equal(quorum_committed(&q), 15);
    assert_int_equal(quorum_in_sync(&q, 15), 1);
    assert_int_equal(quorum_in_sync(&q, 16), 0);
    /* acks never go backwards, and losing the slave does not un-commit */
    quorum_slave_ack(&q, 1, 3, 3);
    quorum_remove_slave(&q, 1);
    assert_int_equal(quorum_committed(&q), 15);
    quorum_local(&q, 30, 30);
    assert_int_equal(quorum_committed(&q), 15); /* no quorum now */
    assert_int_equal(quorum_add_slave(&q, 2), 0);
    quorum_slave_ack(&q, 2, 25, 0);
    assert_int_equal(quorum_committed(&q), 15); /* received, not yet written */
    quorum_slave_ack(&q, 2, 25, 25);
    assert_int_equal(quorum_committed(&q), 25);
    assert_int_equal(quorum_min_received(&q), 25);
    quorum_slave_ack(&q, 99, 1000, 1000); /* unknown slave: ignored */
    assert_int_equal(quorum_committed(&q), 25);
}

/* In sync means the copy the modes count: written where the master waits
 * for slaves' reports, received where it waits only for its own store. */
static void test_in_sync_counts_what_the_modes_count(void **state)
{
    (void)state;
    static const unsigned reported[] = {SYNC_QUORUM_MEM, SYNC_QUORUM_DISK, SYNC_REMOTE_MEM, SYNC_REMOTE_DISK};
    for (size_t i = 0; i < sizeof reported / sizeof reported[0]; i++) {
        struct quorum q;
        quorum_init(&q, 3, reported[i], 0);
        assert_int_equal(quorum_add_slave(&q, 1), 0);
        quorum_slave_ack(&q, 1, 20, 15);
        assert_int_equal(quorum_in_sync(&q, 15), 1);
        assert_int_equal(quorum_in_sync(&q, 20), 0);
        assert_true(quorum_master_counts_self(reported[i]) == (i < 2));
    }
    struct quorum q;
    quorum_init(&q, 3, SYNC_LOCAL_DISK, 0);
    assert_true(quorum_master_counts_self(SYNC_LOCAL_DISK) && quorum_master_counts_self(SYNC_LOCAL_MEM));
    assert_int_equal(quorum_add_slave(&q, 1), 0);
    quorum_slave_ack(&q, 1, 20, 0);
    assert_int_equal(quorum_in_sync(&q, 20), 1);
}

/* Shipped: what as many slaves as the modes wait for were sent whole (or
 * acknowledged), so a new master would have it. */
static void test_shipped_counts_the_slaves_the_modes_wait_for(void **state)
{
    (void)state;
    struct quorum q;
    /* 5 replicas, quorum: 2 slaves of 4 */
    quorum_init(&q, 5, SYNC_QUORUM_MEM, 0);
    assert_int_equal(quorum_slaves_waited(&q), 2);
    assert_int_equal(quorum_shipped(&q), 0);
    for (uint64_t id = 1; id <= 3; id++)
        assert_int_equal(quorum_add_slave(&q, id), 0);
    quorum_slave_shipped(&q, 1, 40);
    assert_int_equal(quorum_shipped(&q), 0); /* one slave has it */
    quorum_slave_ack(&q, 2, 30, 0);          /* received counts as shipped */
    assert_int_equal(quorum_shipped(&q), 30);
    quorum_slave_shipped(&q, 3, 35);
    assert_int_equal(quorum_shipped(&q), 35);
    quorum_slave_shipped(&q, 1, 10); /* never backwards */
    assert_int_equal(quorum_shipped(&q), 35);
    quorum_remove_slave(&q, 1);
    assert_int_equal(quorum_shipped(&q), 30);
    /* a remote mode waits for one slave; the local ones for none */
    quorum_init(&q, 3, SYNC_LOCAL_DISK | SYNC_REMOTE_MEM, 0);
    assert_int_equal(quorum_slaves_waited(&q), 1);
    assert_int_equal(quorum_add_slave(&q, 1), 0);
    assert_int_equal(quorum_add_slave(&q, 2), 0);
    quorum_slave_shipped(&q, 2, 7);
    assert_int_equal(quorum_shipped(&q), 7);
    quorum_init(&q, 3, SYNC_LOCAL_DISK, 0);
    assert_int_equal(quorum_slaves_waited(&q), 0);
    assert_true(quorum_shipped(&q) == UINT64_MAX);
    /* a cluster of one: the quorum is the master alone */
    quorum_init(&q, 1, SYNC_QUORUM_DISK, 0);
    assert_int_equal(quorum_slaves_waited(&q), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_monotonic_and_slave_loss),
        cmocka_unit_test(test_in_sync_counts_what_the_modes_count),
        cmocka_unit_test(test_shipped_counts_the_slaves_the_modes_wait_for),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
