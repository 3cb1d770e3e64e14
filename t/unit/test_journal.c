/* Unit tests for journal entries: every op round-trips, apply is
 * deterministic and writes exactly the keys of DESIGN §4, truncated or
 * garbled entries are refused. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stompd/journal.h"
#include "stompd/msg.h"

/* A sink that records every call as one line of text: keys in full,
 * values by length and a hash of their bytes, so two applies that write
 * different values log differently. */
struct rec {
    struct buf log;
};

/* FNV-1a, 64 bits: plenty to tell test values apart. */
static uint64_t value_hash(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void hex(struct buf *b, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '|')
            buf_putc(b, (char)c);
        else
            buf_printf(b, "\\x%02x", c);
    }
}

static void r_put(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    struct rec *r = ctx;
    buf_append_str(&r->log, "put ");
    hex(&r->log, k, kl);
    buf_printf(&r->log, " (%zu bytes, %016llx)\n", vl, (unsigned long long)value_hash(v, vl));
}

static void r_del(void *ctx, const char *k, size_t kl)
{
    struct rec *r = ctx;
    buf_append_str(&r->log, "del ");
    hex(&r->log, k, kl);
    buf_putc(&r->log, '\n');
}

static void r_delp(void *ctx, const char *p, size_t pl)
{
    struct rec *r = ctx;
    buf_append_str(&r->log, "delprefix ");
    hex(&r->log, p, pl);
    buf_putc(&r->log, '\n');
}

static char *apply_log(const char *e, size_t len)
{
    struct rec r = {{0}};
    struct journal_sink s = {r_put, r_del, r_delp, &r, false};
    assert_int_equal(journal_apply(e, len, &s), 0);
    buf_putc(&r.log, '\0');
    return r.log.data;
}

static struct msg *sample_msg_body(uint64_t seq, const char *body)
{
    struct stomp_header hs[2] = {
        {"color", "blue", 5, 4},
        {"weird:name", "line\nbreak", 10, 10},
    };
    return msg_new("/queue/a", "ID-x-1", seq, 1700000000123, true, 7, 1800000000000, hs, 2, body, 5);
}

static struct msg *sample_msg(uint64_t seq)
{
    return sample_msg_body(seq, "bo\0dy");
}

static void test_msg_round_trip(void **state)
{
    struct msg *m = sample_msg(42);
    struct buf b = {0};
    journal_encode_msg(&b, m);
    struct msg *d = journal_decode_msg(b.data, b.len);
    assert_non_null(d);
    assert_int_equal(d->seq, 42);
    assert_int_equal(d->timestamp, 1700000000123);
    assert_int_equal(d->expires, 1800000000000);
    assert_int_equal(d->priority, 7);
    assert_true(d->persistent);
    assert_string_equal(d->id, "ID-x-1");
    assert_string_equal(d->dest, "/queue/a");
    assert_int_equal(d->nheaders, 2);
    assert_string_equal(d->headers[1].name, "weird:name");
    assert_string_equal(d->headers[1].value, "line\nbreak");
    assert_int_equal(d->body_len, 5);
    assert_memory_equal(d->body, "bo\0dy", 5);
    /* every truncation is refused */
    for (size_t n = 0; n < b.len; n++)
        assert_null(journal_decode_msg(b.data, n));
    msg_unref(d);
    msg_unref(m);
    buf_free(&b);
}

/* Only what journal_encode_msg writes decodes: a persistent flag of 0 or
 * 1, no NUL in the id, the destination or a header (found by
 * fuzz/fuzz_journal: a flag of 0x2f decoded as true and the message no
 * longer encoded back to its bytes; a NUL in a header would end the
 * MESSAGE frame it is written into). */
static void test_msg_decode_is_strict(void **state)
{
    struct msg *m = sample_msg(42);
    struct buf b = {0};
    journal_encode_msg(&b, m);
    size_t flag = 8 + 8 + 8 + 1;     /* after seq, timestamp, expires, priority */
    assert_int_equal(b.data[flag], 1);
    b.data[flag] = 0x2f;
    assert_null(journal_decode_msg(b.data, b.len));
    b.data[flag] = 0;
    struct msg *d = journal_decode_msg(b.data, b.len);
    assert_non_null(d);
    assert_false(d->persistent);
    msg_unref(d);
    b.data[flag] = 1;
    /* "ID-x-1" starts after the flag and its u32 length */
    size_t id = flag + 1 + 4;
    assert_memory_equal(b.data + id, "ID-x-1", 6);
    b.data[id + 2] = '\0';
    assert_null(journal_decode_msg(b.data, b.len));
    b.data[id + 2] = 'x';
    size_t dest = id + 6 + 4;
    assert_memory_equal(b.data + dest, "/queue/a", 8);
    b.data[dest + 1] = '\0';
    assert_null(journal_decode_msg(b.data, b.len));
    b.data[dest + 1] = 'q';
    char *hv = memmem(b.data, b.len, "line\nbreak", 10);
    assert_non_null(hv);
    hv[4] = '\0';
    assert_null(journal_decode_msg(b.data, b.len));
    hv[4] = '\n';
    /* and what decodes encodes back to the same bytes */
    d = journal_decode_msg(b.data, b.len);
    assert_non_null(d);
    struct buf again = {0};
    journal_encode_msg(&again, d);
    assert_int_equal(again.len, b.len);
    assert_memory_equal(again.data, b.data, b.len);
    buf_free(&again);
    msg_unref(d);
    msg_unref(m);
    buf_free(&b);
}

/* Every op; body is the messages' 5-byte body. */
static char *build_all_body(uint64_t lsn, const char *body, size_t *len)
{
    struct journal_builder jb;
    jb_init(&jb);
    struct msg *m = sample_msg_body(9, body);
    const char *targets[] = {"client-1", "sub-a", "client-2", "sub-b"};
    jb_enqueue(&jb, "/queue/a", NULL, 0, "dup-1", m);
    jb_enqueue(&jb, "/topic/t", targets, 2, NULL, m);
    jb_dequeue(&jb, "/queue/a", 3);
    jb_dequeue_sub(&jb, "client-1", "sub-a", 4);
    jb_delivered(&jb, KEY_Q, "/queue/a", "", 5, 2);
    jb_delivered(&jb, KEY_T, "client-2", "sub-b", 6, 1);
    jb_sub_create(&jb, "client-1", "sub-a", "/topic/t", "color = 'blue'");
    jb_sub_delete(&jb, "client-2", "sub-b");
    jb_purge(&jb, "/queue/b");
    jb_dup_forget(&jb, "dup-0");
    msg_unref(m);
    return jb_finish(&jb, 3, lsn, len);
}

static char *build_all(uint64_t lsn, size_t *len)
{
    return build_all_body(lsn, "bo\0dy", len);
}

static int collect(void *ctx, const struct journal_op_view *op)
{
    struct buf *b = ctx;
    buf_printf(b, "%d:%.*s:%.*s:%.*s:%.*s:%llu:%u:%u;", op->type, (int)op->a.len, op->a.p, (int)op->b.len,
               op->b.p, (int)op->c.len, op->c.p, (int)op->d.len, op->d.p, (unsigned long long)op->seq,
               op->count, op->ntargets);
    return 0;
}

static void test_entry_round_trip(void **state)
{
    size_t len;
    char *e = build_all(77, &len);
    struct journal_entry je;
    assert_int_equal(journal_decode(e, len, &je), 0);
    assert_int_equal(je.epoch, 3);
    assert_int_equal(je.lsn, 77);
    assert_int_equal(je.nops, 10);
    struct buf b = {0};
    assert_int_equal(journal_foreach_op(&je, collect, &b), 0);
    buf_putc(&b, '\0');
    assert_string_equal(b.data,
                        "1:/queue/a:::dup-1:0:0:0;"
                        "1:/topic/t::::0:0:2;"
                        "2:/queue/a::::3:0:0;"
                        "3:client-1:sub-a:::4:0:0;"
                        "4:/queue/a::::5:2:0;"
                        "4:client-2:sub-b:::6:1:0;"
                        "5:client-1:sub-a:/topic/t:color = 'blue':0:0:0;"
                        "6:client-2:sub-b:::0:0:0;"
                        "7:/queue/b::::0:0:0;"
                        "8:dup-0::::0:0:0;");
    buf_free(&b);
    free(e);
}

static void test_apply_keys(void **state)
{
    size_t len;
    char *e = build_all(77, &len);
    char *log = apply_log(e, len);
    const char *want =
        "put L\\x00\\x00\\x00\\x00\\x00\\x00\\x00M";
    assert_memory_equal(log, want, strlen(want));
    /* the keys of DESIGN §4, in op order, then the meta keys */
    const char *expect[] = {
        "put Q/queue/a\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x09 (",
        "put Ddup-1 (8 bytes, ",
        "put Tclient-1\\x00sub-a\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x09 (",
        "put Tclient-2\\x00sub-b\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x09 (",
        "del Q/queue/a\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x03\n",
        "del RQ/queue/a\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x03\n",
        "del Tclient-1\\x00sub-a\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x04\n",
        "put RQ/queue/a\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x05 (4 bytes, ",
        "put RTclient-2\\x00sub-b\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x06 (4 bytes, ",
        "put Sclient-1\\x00sub-a (",
        "del Sclient-2\\x00sub-b\n",
        "delprefix Tclient-2\\x00sub-b\\x00\n",
        "delprefix RTclient-2\\x00sub-b\\x00\n",
        "delprefix Q/queue/b\\x00\n",
        "delprefix RQ/queue/b\\x00\n",
        "del Ddup-0\n",
        "put !meta/applied_lsn (8 bytes, ",
        "put !meta/epoch (8 bytes, ",
        "put !meta/tip_sum (8 bytes, ",
    };
    const char *p = log;
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        const char *at = strstr(p, expect[i]);
        if (!at)
            fail_msg("missing or out of order: %s\nin:\n%s", expect[i], log);
        p = at + strlen(expect[i]);
    }
    free(log);
    free(e);
}

static void test_apply_is_deterministic(void **state)
{
    size_t l1, l2;
    char *e1 = build_all(5, &l1);
    char *e2 = build_all(5, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(e1, e2, l1);
    char *a = apply_log(e1, l1);
    char *b = apply_log(e1, l1);
    char *c = apply_log(e2, l2);
    assert_string_equal(a, b);
    assert_string_equal(a, c);
    /* same keys, same lengths, one byte of a body differs: the log (and
     * so this test) must tell */
    size_t l3;
    char *e3 = build_all_body(5, "bo\0dY", &l3);
    assert_int_equal(l1, l3);
    char *d = apply_log(e3, l3);
    assert_string_not_equal(a, d);
    /* the entry checksum replicas compare at a slave's position */
    assert_int_equal(journal_checksum(e1, l1), journal_checksum(e2, l2));
    assert_int_not_equal(journal_checksum(e1, l1), journal_checksum(e3, l3));
    assert_int_not_equal(journal_checksum(e1, l1), 0);
    free(a);
    free(b);
    free(c);
    free(d);
    free(e1);
    free(e2);
    free(e3);
}

static void test_malformed_entries(void **state)
{
    size_t len;
    char *e = build_all(1, &len);
    struct journal_entry je;
    struct rec r = {{0}};
    struct journal_sink s = {r_put, r_del, r_delp, &r, false};
    for (size_t n = 0; n < len; n++) {
        assert_int_equal(journal_decode(e, n, &je), -EINVAL);
        assert_int_equal(journal_apply(e, n, &s), -EINVAL);
    }
    assert_int_equal(r.log.len, 0); /* a refused entry writes nothing */
    char *g = malloc(len + 1);
    memcpy(g, e, len);
    g[len] = 'x';
    assert_int_equal(journal_decode(g, len + 1, &je), -EINVAL); /* trailing garbage */
    g[0] = 9;
    assert_int_equal(journal_decode(g, len, &je), -EINVAL); /* unknown format */
    memcpy(g, e, len);
    g[JOURNAL_HEADER_LEN] = 99; /* unknown op */
    assert_int_equal(journal_decode(g, len, &je), -EINVAL);
    free(g);
    free(e);
    buf_free(&r.log);
}

static void test_no_journal_keys_for_a_standalone_store(void **state)
{
    size_t len;
    char *e = build_all(9, &len);
    struct rec r = {{0}};
    struct journal_sink s = {r_put, r_del, r_delp, &r, true};
    assert_int_equal(journal_apply(e, len, &s), 0);
    buf_putc(&r.log, '\0');
    assert_null(strstr(r.log.data, "put L"));
    assert_non_null(strstr(r.log.data, "put Q/queue/a"));
    assert_non_null(strstr(r.log.data, "put !meta/applied_lsn"));
    buf_free(&r.log);
    free(e);
}

static void test_keys_sort_by_seq(void **state)
{
    struct buf a = {0}, b = {0};
    jkey_q(&a, "/queue/x", 8, 255);
    jkey_q(&b, "/queue/x", 8, 256);
    assert_int_equal(a.len, b.len);
    assert_true(memcmp(a.data, b.data, a.len) < 0);
    char l1[9], l2[9];
    jkey_l(l1, 0xff);
    jkey_l(l2, 0x100);
    assert_true(memcmp(l1, l2, 9) < 0);
    assert_int_equal(jkey_get_be64(l2 + 1), 0x100);
    buf_free(&a);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_round_trip),
        cmocka_unit_test(test_msg_decode_is_strict),
        cmocka_unit_test(test_entry_round_trip),
        cmocka_unit_test(test_apply_keys),
        cmocka_unit_test(test_apply_is_deterministic),
        cmocka_unit_test(test_malformed_entries),
        cmocka_unit_test(test_no_journal_keys_for_a_standalone_store),
        cmocka_unit_test(test_keys_sort_by_seq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
