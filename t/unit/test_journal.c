/* Unit tests for journal entries: every op round-trips, apply is
 * deterministic and asks for exactly the keys of DESIGN §4, message keys
 * sort in dispatch order, truncated or garbled entries are refused. */
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

static void r_putmsg(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    struct rec *r = ctx;
    buf_append_str(&r->log, "putmsg ");
    hex(&r->log, k, kl);
    buf_printf(&r->log, " (%zu bytes, %016llx)\n", vl, (unsigned long long)value_hash(v, vl));
}

static void r_delmsg(void *ctx, const char *k, size_t kl)
{
    struct rec *r = ctx;
    buf_append_str(&r->log, "delmsg ");
    hex(&r->log, k, kl);
    buf_putc(&r->log, '\n');
}

static void r_delmsgs(void *ctx, const char *p, size_t pl)
{
    struct rec *r = ctx;
    buf_append_str(&r->log, "delmsgs ");
    hex(&r->log, p, pl);
    buf_putc(&r->log, '\n');
}

#define RECORDER(r) {r_put, r_del, r_putmsg, r_delmsg, r_delmsgs, &(r)}

static char *apply_log(const char *e, size_t len)
{
    struct rec r = {{0}};
    struct journal_sink s = RECORDER(r);
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
    jb_dequeue(&jb, "/queue/a", 4, 3);
    jb_dequeue_sub(&jb, "client-1", "sub-a", 9, 4);
    jb_delivered(&jb, KEY_Q, "/queue/a", "", 0, 5, 2);
    jb_delivered(&jb, KEY_T, "client-2", "sub-b", 7, 6, 1);
    jb_sub_create(&jb, "client-1", "sub-a", "/topic/t", "color = 'blue'", "Ualice");
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
    buf_printf(b, "%d:%.*s:%.*s:%.*s:%.*s:%u:%llu:%u:%u;", op->type, (int)op->a.len, op->a.p, (int)op->b.len,
               op->b.p, (int)op->c.len, op->c.p, (int)op->d.len, op->d.p, op->prio, (unsigned long long)op->seq,
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
                        "1:/queue/a:::dup-1:0:0:0:0;"
                        "1:/topic/t::::0:0:0:2;"
                        "2:/queue/a::::4:3:0:0;"
                        "3:client-1:sub-a:::9:4:0:0;"
                        "4:/queue/a::::0:5:2:0;"
                        "4:client-2:sub-b:::7:6:1:0;"
                        "13:client-1:sub-a:/topic/t:color = 'blue':0:0:0:0;"
                        "6:client-2:sub-b:::0:0:0:0;"
                        "7:/queue/b::::0:0:0:0;"
                        "8:dup-0::::0:0:0:0;");
    buf_free(&b);
    free(e);
}

/* A durable subscription's record: JOP_SUB_SET keeps its reader (S key:
 * topic, selector, reader); a JOP_SUB_CREATE of an older journal still
 * applies, without one (topic, selector). */
static void test_sub_set_keeps_the_reader_and_old_creates_apply(void **state)
{
    (void)state;
    struct journal_builder jb;
    jb_init(&jb);
    jb_sub_create(&jb, "c", "s", "/topic/t", "", "Ualice");
    size_t len;
    char *e = jb_finish(&jb, 1, 1, &len);
    struct journal_entry je;
    assert_int_equal(journal_decode(e, len, &je), 0);
    struct buf b = {0};
    assert_int_equal(journal_foreach_op(&je, collect, &b), 0);
    buf_putc(&b, '\0');
    assert_string_equal(b.data, "13:c:s:/topic/t::0:0:0:0;");
    buf_free(&b);
    char *log = apply_log(e, len);
    /* 4 + 8 (the topic), 4 (no selector), 4 + 6 (the reader) */
    assert_non_null(strstr(log, "put Sc\\x00s (26 bytes, "));
    free(log);
    /* the same as an older release wrote it: op 5, no reader */
    e[JOURNAL_HEADER_LEN] = JOP_SUB_CREATE;
    len -= 4 + 6;
    assert_int_equal(journal_decode(e, len, &je), 0);
    log = apply_log(e, len);
    assert_non_null(strstr(log, "put Sc\\x00s (16 bytes, "));
    free(log);
    /* op 5 with the reader's bytes left over is no entry */
    assert_int_not_equal(journal_decode(e, len + 10, &je), 0);
    free(e);
}

static void test_apply_keys(void **state)
{
    size_t len;
    char *e = build_all(77, &len);
    char *log = apply_log(e, len);
    /* the keys of DESIGN §4, in op order: a message key ends with
     * (9 - priority) and the seq (the sample message: priority 7, seq 9) */
    const char *expect[] = {
        "putmsg Q/queue/a\\x00\\x02\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x09 (",
        "put Ddup-1 (8 bytes, ",
        "putmsg Tclient-1\\x00sub-a\\x00\\x02\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x09 (",
        "putmsg Tclient-2\\x00sub-b\\x00\\x02\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x09 (",
        "delmsg Q/queue/a\\x00\\x05\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x03\n",
        "delmsg Tclient-1\\x00sub-a\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x04\n",
        "put RQ/queue/a\\x00\\x09\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x05 (4 bytes, ",
        "put RTclient-2\\x00sub-b\\x00\\x02\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x06 (4 bytes, ",
        "put Sclient-1\\x00sub-a (",
        "del Sclient-2\\x00sub-b\n",
        "delmsgs Tclient-2\\x00sub-b\\x00\n",
        "delmsgs Q/queue/b\\x00\n",
        "del Ddup-0\n",
    };
    const char *p = log;
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        const char *at = strstr(p, expect[i]);
        if (!at)
            fail_msg("missing or out of order: %s\nin:\n%s", expect[i], log);
        p = at + strlen(expect[i]);
    }
    /* nothing else: the log and the position are the store's business */
    assert_null(strstr(log, "put L"));
    assert_null(strstr(log, "!meta"));
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

/* journal_tip: the checksum of whatever entry was set last, computed
 * when asked; a reset sets it outright. */
static void test_tip_checksum_on_demand(void **state)
{
    size_t l1, l3;
    char *e1 = build_all(5, &l1);
    char *e3 = build_all_body(5, "bo\0dY", &l3);
    struct journal_tip t = {0};
    assert_int_equal(journal_tip_sum(&t), 0);
    journal_tip_set(&t, e1, l1);
    journal_tip_set(&t, e3, l3);
    memset(e3, 0, l3); /* the tip holds its own copy */
    free(e3);
    e3 = build_all_body(5, "bo\0dY", &l3);
    assert_int_equal(journal_tip_sum(&t), journal_checksum(e3, l3));
    assert_int_equal(journal_tip_sum(&t), journal_checksum(e3, l3));
    journal_tip_set(&t, e1, l1);
    journal_tip_reset(&t, 42);
    assert_int_equal(journal_tip_sum(&t), 42);
    journal_tip_set(&t, e1, l1);
    assert_int_equal(journal_tip_sum(&t), journal_checksum(e1, l1));
    journal_tip_reset(&t, 0);
    free(e1);
    free(e3);
}

static void test_malformed_entries(void **state)
{
    size_t len;
    char *e = build_all(1, &len);
    struct journal_entry je;
    struct rec r = {{0}};
    struct journal_sink s = RECORDER(r);
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

static void test_keys_sort_in_dispatch_order(void **state)
{
    /* within a queue: higher priority first, then arrival (seq) */
    struct buf k[4] = {{0}};
    jkey_q(&k[0], "/queue/x", 8, 9, 500);
    jkey_q(&k[1], "/queue/x", 8, 4, 255);
    jkey_q(&k[2], "/queue/x", 8, 4, 256);
    jkey_q(&k[3], "/queue/x", 8, 0, 1);
    for (int i = 0; i < 3; i++) {
        size_t m = k[i].len < k[i + 1].len ? k[i].len : k[i + 1].len;
        assert_true(memcmp(k[i].data, k[i + 1].data, m) < 0);
    }
    assert_int_equal(jkey_msg_priority(k[1].data, k[1].len), 4);
    assert_int_equal(jkey_msg_seq(k[2].data, k[2].len), 256);
    /* a queue's keys all start with its prefix, and no other queue's do */
    struct buf p = {0}, q = {0};
    jkey_q_prefix(&p, "/queue/x", 8);
    jkey_q(&q, "/queue/xy", 9, 4, 1);
    assert_memory_equal(k[0].data, p.data, p.len);
    assert_true(q.len < p.len || memcmp(q.data, p.data, p.len) != 0);
    for (int i = 0; i < 4; i++)
        buf_free(&k[i]);
    buf_free(&p);
    buf_free(&q);
}

static void test_message_fields_without_decoding(void **state)
{
    struct msg *m = sample_msg(42);
    struct buf b = {0};
    journal_encode_msg(&b, m);
    assert_int_equal(journal_msg_seq(b.data, b.len), 42);
    assert_int_equal(journal_msg_priority(b.data, b.len), 7);
    assert_int_equal(journal_msg_expires(b.data, b.len), 1800000000000);
    assert_int_equal(journal_msg_seq(b.data, 7), 0);
    msg_unref(m);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_round_trip),
        cmocka_unit_test(test_msg_decode_is_strict),
        cmocka_unit_test(test_entry_round_trip),
        cmocka_unit_test(test_sub_set_keeps_the_reader_and_old_creates_apply),
        cmocka_unit_test(test_apply_keys),
        cmocka_unit_test(test_apply_is_deterministic),
        cmocka_unit_test(test_tip_checksum_on_demand),
        cmocka_unit_test(test_malformed_entries),
        cmocka_unit_test(test_keys_sort_in_dispatch_order),
        cmocka_unit_test(test_message_fields_without_decoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
