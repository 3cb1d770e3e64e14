/* The log's segments (segment.c) on real files: an iterator that read a
 * segment ahead sees the records the writer appends after it, in order,
 * none skipped. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "stompd/segment.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/stompd-test-segment-%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    char err[256];
    assert_int_equal(seglog_open(dir, err, sizeof err), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    seglog_close();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* n records of size bytes, named tag0, tag1, ...; sync: fdatasynced, so
 * zeros are written ahead of them. */
static void write_records(const char *tag, int n, size_t size, bool sync, uint64_t roll)
{
    static char bodies[8][4096];
    struct seg_batch b = {0};
    for (int i = 0; i < n; i++) {
        memset(bodies[i], 'x', size);
        snprintf(bodies[i], size, "%s%d", tag, i);
        seg_batch_add(&b, REC_ENTRY, bodies[i], size);
    }
    char err[256];
    struct seg_pos at;
    assert_int_equal(seglog_write(&b, roll, sync, &at, err, sizeof err), 0);
    if (sync)
        assert_int_equal(seglog_sync(err, sizeof err), 0);
    seg_batch_free(&b);
}

static void expect(struct seg_iter *it, const char *name)
{
    assert_int_equal(seg_iter_next(it), 1);
    assert_string_equal(it->data, name);
}

/* The iterator reads A0 with what follows it into its buffer: A1, A2 and
 * the zeros written ahead. The writer then replaces those zeros with B0
 * and B1 and starts a new segment for C0 to C2. The zeros the buffer
 * holds are not the end of the first segment any more. */
static void test_appended_after_read_ahead(void **state)
{
    (void)state;
    const uint64_t roll = 8192;
    write_records("A", 3, 100, true, roll);
    struct seg_iter it;
    seg_iter_init(&it, (struct seg_pos){seglog_current(), 0});
    expect(&it, "A0");
    write_records("B", 2, 100, false, roll);
    write_records("C", 3, 3000, false, roll); /* past roll: a new segment */
    const char *rest[] = {"A1", "A2", "B0", "B1", "C0", "C1", "C2"};
    for (size_t i = 0; i < sizeof rest / sizeof *rest; i++)
        expect(&it, rest[i]);
    assert_int_equal(seg_iter_next(&it), 0);
    assert_false(it.torn);
    seg_iter_free(&it);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_appended_after_read_ahead, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
