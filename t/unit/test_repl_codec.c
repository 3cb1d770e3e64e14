/* Unit tests for the replication wire codec (repl_get_* / repl_put_*):
 * round trips, and reads that do not fit: bad is set, nothing moves, and
 * every read after it returns 0 and moves nothing (found by
 * fuzz/fuzz_repl: a u32 too long for what was left set bad, and the u8
 * read after it still consumed a byte). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stompd/buf.h"
#include "stompd/repl.h"
#include "stompd/server.h"

/* repl_proto.c's peer code refers to the server's loop; not used here. */
struct server srv;

static void test_round_trip(void **state)
{
    struct buf b = {0};
    size_t f = repl_frame_begin(&b, R_HELLO);
    repl_put_u32(&b, REPL_VERSION);
    repl_put_str(&b, "token", 5);
    repl_put_str(&b, "", 0);
    repl_put_u64(&b, 0x0102030405060708ull);
    repl_put_u8(&b, 0xfe);
    repl_frame_end(&b, f);
    const uint8_t *h = (const uint8_t *)b.data;
    uint32_t len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    assert_int_equal(len, b.len - 4);
    assert_int_equal(h[4], R_HELLO);
    struct repl_reader r = {b.data + 5, len - 1, false};
    uint32_t sl;
    assert_int_equal(repl_get_u32(&r), REPL_VERSION);
    const char *s = repl_get_str(&r, &sl);
    assert_int_equal(sl, 5);
    assert_memory_equal(s, "token", 5);
    repl_get_str(&r, &sl);
    assert_int_equal(sl, 0);
    assert_true(repl_get_u64(&r) == 0x0102030405060708ull);
    assert_int_equal(repl_get_u8(&r), 0xfe);
    assert_false(r.bad);
    assert_int_equal(r.left, 0);
    buf_free(&b);
}

static void test_bad_is_sticky(void **state)
{
    const char data[] = {0, 0, 0, 9, 'a', 'b', 'c', 1, 2, 3};
    uint32_t sl;
    /* a string longer than what is left: bad, and its length not consumed */
    struct repl_reader r = {data, sizeof data, false};
    const char *s = repl_get_str(&r, &sl);
    assert_true(r.bad);
    assert_string_equal(s, "");
    assert_int_equal(sl, 0);
    assert_ptr_equal(r.p, data);
    assert_int_equal(r.left, sizeof data);
    /* after bad, reads that would fit read nothing */
    assert_int_equal(repl_get_u8(&r), 0);
    assert_int_equal(repl_get_u32(&r), 0);
    assert_true(repl_get_u64(&r) == 0);
    assert_ptr_equal(r.p, data);
    assert_int_equal(r.left, sizeof data);
    /* a u64 with only 6 bytes left moves nothing either */
    struct repl_reader q = {data + 4, 6, false};
    assert_true(repl_get_u64(&q) == 0);
    assert_true(q.bad);
    assert_ptr_equal(q.p, data + 4);
    assert_int_equal(q.left, 6);
    /* a u32 that does not fit, then a u8 that would */
    struct repl_reader t = {data + 7, 3, false};
    assert_int_equal(repl_get_u32(&t), 0);
    assert_int_equal(repl_get_u8(&t), 0);
    assert_true(t.bad);
    assert_int_equal(t.left, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_bad_is_sticky),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
