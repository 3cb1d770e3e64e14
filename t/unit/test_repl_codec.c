/* Unit tests of the replication wire codec (repl_codec.c alone): what is
 * written reads back the same, frames are split exactly at their length,
 * and every read past the end of a frame marks the reader bad instead of
 * reading on; once bad, a reader reads nothing more (found by
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

static void test_roundtrip(void **state)
{
    struct buf b = {0};
    size_t f = repl_frame_begin(&b, R_HELLO);
    repl_put_u32(&b, REPL_VERSION);
    repl_put_str(&b, "token", 5);
    repl_put_u64(&b, 0x0102030405060708ULL);
    repl_put_u8(&b, 0xfe);
    repl_put_str(&b, "", 0);
    repl_frame_end(&b, f);
    /* length prefix: everything after it (type + payload) */
    assert_int_equal(b.len, 4 + 1 + 4 + 4 + 5 + 8 + 1 + 4);
    assert_memory_equal(b.data, "\0\0\0\x1b", 4);

    uint8_t type;
    struct repl_reader r;
    size_t flen;
    assert_int_equal(repl_frame_split(b.data, b.len, &type, &r, &flen), 1);
    assert_int_equal(type, R_HELLO);
    assert_int_equal(flen, b.len);
    assert_int_equal(repl_get_u32(&r), REPL_VERSION);
    uint32_t sl;
    const char *s = repl_get_str(&r, &sl);
    assert_int_equal(sl, 5);
    assert_memory_equal(s, "token", 5);
    assert_true(repl_get_u64(&r) == 0x0102030405060708ULL);
    assert_int_equal(repl_get_u8(&r), 0xfe);
    repl_get_str(&r, &sl);
    assert_int_equal(sl, 0);
    assert_false(r.bad);
    assert_int_equal(r.left, 0);
    /* one byte too many is a bad read, and stays bad */
    assert_int_equal(repl_get_u8(&r), 0);
    assert_true(r.bad);
    buf_free(&b);
}

struct split_row {
    const char *what;
    const char *bytes;
    size_t len;
    int want;        /* repl_frame_split's answer */
    size_t frame_len;
};

static const struct split_row split_rows[] = {
    {"nothing yet", "", 0, 0, 0},
    {"length only", "\0\0\0\x02", 4, 0, 0},
    {"header, payload missing", "\0\0\0\x02\x09", 5, 0, 6},
    {"whole frame", "\0\0\0\x02\x09x", 6, 1, 6},
    {"whole frame and the start of the next", "\0\0\0\x01\x0a\0\0", 7, 1, 5},
    {"zero length", "\0\0\0\0\x09", 5, -1, 4},
    {"longer than REPL_MAX_FRAME", "\x04\0\0\x01\x09", 5, -1, 4 + (64u << 20) + 1},
};

/* A frame built in a stream's output buffer whose front was partly sent:
 * appending its payload slides the unsent bytes to the front of the
 * buffer (buf_reserve), and the frame's length still lands in its own
 * header. (It once went to where the header had been, leaving a frame of
 * length 0 that made the slave drop the link mid-snapshot.) */
static void test_frame_in_a_partly_sent_buffer(void **state)
{
    struct buf b = {0};
    char junk[200];
    memset(junk, 'j', sizeof junk);
    buf_append(&b, junk, sizeof junk);
    buf_consume(&b, 150); /* sent: 50 bytes left, far from the front */
    size_t cap = b.cap;
    size_t f = repl_frame_begin(&b, R_ENTRIES);
    size_t count_at = buf_mark(&b);
    repl_put_u32(&b, 0);
    char body[100];
    memset(body, 'b', sizeof body);
    repl_put_str(&b, body, sizeof body);
    assert_int_equal(b.cap, cap); /* made room by sliding, not growing */
    assert_int_equal(b.off, 0);
    char *c = buf_at(&b, count_at);
    c[3] = 1;
    repl_frame_end(&b, f);
    assert_int_equal(buf_used(&b), 50 + 4 + 1 + 4 + 4 + 100);
    assert_memory_equal(buf_head(&b), junk, 50);
    uint8_t type;
    struct repl_reader r;
    size_t flen;
    assert_int_equal(repl_frame_split(buf_head(&b) + 50, buf_used(&b) - 50, &type, &r, &flen), 1);
    assert_int_equal(type, R_ENTRIES);
    assert_int_equal(flen, 4 + 1 + 4 + 4 + 100);
    assert_int_equal(repl_get_u32(&r), 1);
    uint32_t len;
    const char *got = repl_get_str(&r, &len);
    assert_int_equal(len, sizeof body);
    assert_memory_equal(got, body, sizeof body);
    assert_false(r.bad);
    /* and one dropped again leaves what was there */
    size_t g = repl_frame_begin(&b, R_PING);
    repl_put_str(&b, body, sizeof body);
    buf_cut(&b, g);
    assert_int_equal(buf_used(&b), 50 + 4 + 1 + 4 + 4 + 100);
    buf_free(&b);
}

static void test_split(void **state)
{
    for (size_t i = 0; i < sizeof split_rows / sizeof split_rows[0]; i++) {
        const struct split_row *row = &split_rows[i];
        uint8_t type = 0;
        struct repl_reader r;
        size_t flen = 0;
        int got = repl_frame_split(row->bytes, row->len, &type, &r, &flen);
        if (got != row->want)
            fail_msg("%s: %d, want %d", row->what, got, row->want);
        if (row->frame_len && flen != row->frame_len)
            fail_msg("%s: frame length %zu, want %zu", row->what, flen, row->frame_len);
    }
}

struct read_row {
    const char *what;
    const char *payload;
    size_t len;
    const char *reads; /* '1' u8, '4' u32, '8' u64, 's' string */
    bool bad;
};

static const struct read_row read_rows[] = {
    {"u32 from 3 bytes", "\0\0\x01", 3, "4", true},
    {"u64 from 7 bytes", "\0\0\0\0\0\0\x01", 7, "8", true},
    {"string longer than the frame", "\0\0\0\x09" "abc", 7, "s", true},
    {"string length near 4 GiB", "\xff\xff\xff\xff" "abc", 7, "s", true},
    {"exact string", "\0\0\0\x03" "abc", 7, "s", false},
    {"u8 then u32", "\x05\0\0\0\x01", 5, "14", false},
    {"read after the end", "\x05", 1, "11", true},
};

static void test_bounded_reads(void **state)
{
    for (size_t i = 0; i < sizeof read_rows / sizeof read_rows[0]; i++) {
        const struct read_row *row = &read_rows[i];
        struct repl_reader r = {row->payload, row->len, false};
        for (const char *op = row->reads; *op; op++) {
            uint32_t sl;
            switch (*op) {
            case '1': repl_get_u8(&r); break;
            case '4': repl_get_u32(&r); break;
            case '8': repl_get_u64(&r); break;
            case 's': repl_get_str(&r, &sl); break;
            }
        }
        if (r.bad != row->bad)
            fail_msg("%s: bad %d, want %d", row->what, r.bad, row->bad);
        assert_true(r.left <= row->len);
    }
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

static void test_type_names(void **state)
{
    assert_string_equal(repl_type_name(R_ENTRIES), "ENTRIES");
    assert_string_equal(repl_type_name(200), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_frame_in_a_partly_sent_buffer),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_bounded_reads),
        cmocka_unit_test(test_bad_is_sticky),
        cmocka_unit_test(test_type_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
