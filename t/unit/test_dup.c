/* Unit tests of dup.c alone: the duplicate-detection window keeps the
 * last broker.dup_window ids, evicts the oldest first, journals the
 * eviction of journaled ids only (so every replica's window stays the
 * same), tells a duplicate's receipt which entry to wait for, and comes
 * back from the store in its original order. persist_dup_forget is a
 * recording stub. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "stompd/config.h"
#include "stompd/dup.h"
#include "stompd/persist.h"

struct config config;
static char forgotten[512];

void persist_dup_forget(const char *dup_id)
{
    size_t n = strlen(forgotten);
    snprintf(forgotten + n, sizeof forgotten - n, "%s;", dup_id);
}

static int setup(void **state)
{
    config.dup_window = 3;
    forgotten[0] = '\0';
    return 0;
}

static int teardown(void **state)
{
    dup_free_all();
    return 0;
}

/* "id:lsn" for each id seen (lsn 0: nothing to wait for), "id:-" if not */
static void expect_window(const char *const ids[], const char *want)
{
    char got[256] = "";
    for (size_t i = 0; ids[i]; i++) {
        uint64_t lsn = 99;
        size_t n = strlen(got);
        if (dup_seen(ids[i], &lsn))
            snprintf(got + n, sizeof got - n, "%s:%llu ", ids[i], (unsigned long long)lsn);
        else
            snprintf(got + n, sizeof got - n, "%s:- ", ids[i]);
    }
    if (strcmp(got, want))
        fail_msg("window\n  got:  %s\n  want: %s", got, want);
}

static void test_window_evicts_oldest_and_journals_only_journaled(void **state)
{
    static const char *const all[] = {"a", "b", "c", "d", "e", NULL};
    dup_remember("a", 11, true);
    dup_remember("b", 0, false); /* a non-persistent send: nothing to wait for */
    dup_remember("c", 13, true);
    expect_window(all, "a:11 b:0 c:13 d:- e:- ");
    assert_string_equal(forgotten, "");
    dup_remember("d", 14, true);
    expect_window(all, "a:- b:0 c:13 d:14 e:- ");
    assert_string_equal(forgotten, "a;");
    dup_remember("e", 0, false);
    expect_window(all, "a:- b:- c:13 d:14 e:0 ");
    /* b was never journaled: its eviction is not either */
    assert_string_equal(forgotten, "a;");
    assert_int_equal(dup_count(), 3);
}

static void test_window_off(void **state)
{
    config.dup_window = 0;
    dup_remember("a", 1, true);
    assert_false(dup_seen("a", NULL));
    assert_int_equal(dup_count(), 0);
}

static void test_restored_in_order_and_durable(void **state)
{
    /* read from the store in key order, which is not arrival order */
    dup_restore("zeta", 4, 1);
    dup_restore("alpha", 5, 3);
    dup_restore("mid", 3, 2);
    dup_restored();
    static const char *const ids[] = {"zeta", "mid", "alpha", NULL};
    /* durable already: a duplicate of any of them is answered at once */
    expect_window(ids, "zeta:0 mid:0 alpha:0 ");
    /* the oldest by arrival goes first */
    dup_remember("new", 20, true);
    static const char *const after[] = {"zeta", "mid", "alpha", "new", NULL};
    expect_window(after, "zeta:- mid:0 alpha:0 new:20 ");
    assert_string_equal(forgotten, "zeta;");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_window_evicts_oldest_and_journals_only_journaled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restored_in_order_and_durable, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
