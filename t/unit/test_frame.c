/* Unit tests for the frame parser and writer: every split point, every
 * limit, every escape rule, malformed input. */
#include "config.h"

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stompd/frame.h"

static const struct frame_limits big = {1 << 20, 100, 4096, 256};

struct result {
    int nframes;
    struct frame frames[16];
    const char *err;
    bool has_receipt; /* on error: what frame_error_receipt() gave */
    size_t receipt_len;
    char receipt[64];
};

static void result_free(struct result *r)
{
    for (int i = 0; i < r->nframes; i++)
        frame_free(&r->frames[i]);
    r->nframes = 0;
}

/* Feed data in chunks of the given sizes the way a connection does: keep
 * unconsumed bytes, append the next chunk, parse until NEED_MORE. */
static void feed(const char *data, size_t len, const size_t *cuts, int ncuts, enum stomp_version v,
                 const struct frame_limits *lim, struct result *r)
{
    struct frame_parser p;
    frame_parser_init(&p, lim);
    p.version = v;
    char *buf = malloc(len + 1);
    size_t have = 0, pos = 0, start = 0;
    memset(r, 0, sizeof *r);
    for (int c = 0; c <= ncuts; c++) {
        size_t upto = c < ncuts ? cuts[c] : len;
        memcpy(buf + have, data + pos, upto - pos);
        have += upto - pos;
        pos = upto;
        for (;;) {
            size_t used;
            struct frame f;
            const char *err;
            enum frame_status st = frame_parse(&p, buf + start, have - start, &used, &f, &err);
            start += used;
            if (st == FRAME_NEED_MORE)
                break;
            if (st == FRAME_ERROR) {
                r->err = err;
                char *rc = frame_error_receipt(&p, buf + start);
                if (rc) {
                    r->has_receipt = true;
                    r->receipt_len = strlen(rc);
                    snprintf(r->receipt, sizeof r->receipt, "%s", rc);
                    free(rc);
                }
                free(buf);
                return;
            }
            assert_true(r->nframes < 16);
            r->frames[r->nframes++] = f;
        }
    }
    free(buf);
}

static void parse_all(const char *data, size_t len, enum stomp_version v, struct result *r)
{
    feed(data, len, NULL, 0, v, &big, r);
}

#define S(lit) lit, sizeof(lit) - 1

static const char stream[] =
    "\n\r\nCONNECT\naccept-version:1.2\nhost:a\\qb\n\n\0"
    "SEND\r\ndestination:/queue/a\r\ncontent-length:5\r\nx:1\r\nx:2\r\n\r\nab\0cd\0\n\n"
    "SEND\ndestination:/queue/b\nesc:a\\cb\\\\c\\nd\\re\n\nbody text\0"
    "\n"
    "DISCONNECT\nreceipt:77\n\n\0";

static void check_stream(struct result *r)
{
    assert_null(r->err);
    assert_int_equal(r->nframes, 4);
    struct frame *f = &r->frames[0];
    assert_int_equal(f->cmd, CMD_CONNECT);
    assert_string_equal(frame_get(f, "host"), "a\\qb"); /* CONNECT is not unescaped */
    f = &r->frames[1];
    assert_int_equal(f->cmd, CMD_SEND);
    assert_string_equal(frame_get(f, "destination"), "/queue/a");
    assert_string_equal(frame_get(f, "x"), "1"); /* first wins */
    assert_int_equal(f->nheaders, 4);
    assert_int_equal(f->body_len, 5);
    assert_memory_equal(f->body, "ab\0cd", 5);
    f = &r->frames[2];
    assert_string_equal(frame_get(f, "esc"), "a:b\\c\nd\re");
    assert_int_equal(f->body_len, 9);
    assert_string_equal(f->body, "body text");
    f = &r->frames[3];
    assert_int_equal(f->cmd, CMD_DISCONNECT);
    assert_string_equal(frame_get(f, "receipt"), "77");
}

static void test_whole_stream(void **state)
{
    struct result r;
    parse_all(S(stream), STOMP_12, &r);
    check_stream(&r);
    result_free(&r);
}

static void test_every_single_split(void **state)
{
    size_t len = sizeof stream - 1;
    for (size_t k = 1; k < len; k++) {
        struct result r;
        feed(stream, len, &k, 1, STOMP_12, &big, &r);
        check_stream(&r);
        result_free(&r);
    }
}

static void test_every_pair_of_splits(void **state)
{
    size_t len = sizeof stream - 1;
    for (size_t a = 1; a < len; a += 3) {
        for (size_t b = a + 1; b < len; b += 5) {
            size_t cuts[2] = {a, b};
            struct result r;
            feed(stream, len, cuts, 2, STOMP_12, &big, &r);
            check_stream(&r);
            result_free(&r);
        }
    }
}

static void test_byte_at_a_time(void **state)
{
    size_t len = sizeof stream - 1;
    size_t *cuts = malloc(len * sizeof *cuts);
    for (size_t i = 0; i < len - 1; i++)
        cuts[i] = i + 1;
    struct result r;
    feed(stream, len, cuts, (int)len - 1, STOMP_12, &big, &r);
    check_stream(&r);
    result_free(&r);
    free(cuts);
}

static void test_heartbeats_only(void **state)
{
    struct frame_parser p;
    frame_parser_init(&p, &big);
    size_t used;
    struct frame f;
    const char *err;
    assert_int_equal(frame_parse(&p, S("\n\n\r\n\n"), &used, &f, &err), FRAME_NEED_MORE);
    assert_int_equal(used, 5);
    /* a lone CR may be the start of CRLF */
    assert_int_equal(frame_parse(&p, S("\r"), &used, &f, &err), FRAME_NEED_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(frame_parse(&p, S("\rX"), &used, &f, &err), FRAME_ERROR);
}

static void test_empty_body_and_no_headers(void **state)
{
    struct result r;
    parse_all(S("CONNECT\n\n\0"), STOMP_10, &r);
    assert_null(r.err);
    assert_int_equal(r.nframes, 1);
    assert_int_equal(r.frames[0].nheaders, 0);
    assert_int_equal(r.frames[0].body_len, 0);
    result_free(&r);
}

static void test_unknown_command_is_reported_not_fatal(void **state)
{
    struct result r;
    parse_all(S("FROB\na:b\n\n\0"), STOMP_12, &r);
    assert_null(r.err);
    assert_int_equal(r.frames[0].cmd, CMD_UNKNOWN);
    assert_string_equal(r.frames[0].command, "FROB");
    result_free(&r);
}

/* An HTTP request line is refused once read: its NUL would never come. */
static void test_an_http_request_line_is_refused_at_once(void **state)
{
    struct frame_parser p;
    frame_parser_init(&p, &big);
    size_t used;
    struct frame f;
    const char *err;
    assert_int_equal(frame_parse(&p, S("GET / HTTP/1.1\r\nHost: x\r\n"), &used, &f, &err), FRAME_ERROR);
    assert_true(frame_error_is_http(err));
    /* not before the line is whole, and not for a STOMP command */
    frame_parser_init(&p, &big);
    assert_int_equal(frame_parse(&p, S("GET / HTTP/1"), &used, &f, &err), FRAME_NEED_MORE);
    frame_parser_init(&p, &big);
    assert_int_equal(frame_parse(&p, S("SEND\ndestination:/queue/ HTTP/1.1\n"), &used, &f, &err), FRAME_NEED_MORE);
    assert_false(frame_error_is_http("unknown command"));
}

struct bad {
    const char *data;
    size_t len;
    enum stomp_version v;
    const char *err;
};

#define BAD(lit, ver, e) {lit, sizeof(lit) - 1, ver, e}

static const struct bad bads[] = {
    BAD("SEND\nh:\\t\n\n\0", STOMP_12, "undefined escape sequence in header value"),
    BAD("SEND\nh\\x:v\n\n\0", STOMP_12, "undefined escape sequence in header name"),
    BAD("SEND\nh:v\\\n\n\0", STOMP_11, "undefined escape sequence in header value"),
    BAD("SEND\nh:a\\rb\n\n\0", STOMP_11, "undefined escape sequence in header value"),
    BAD("SEND\nnocolon\n\n\0", STOMP_12, "malformed header line (no ':')"),
    BAD("SEND\n:v\n\n\0", STOMP_12, "empty header name"),
    BAD("SEND\nh:a\0b\n\n\0", STOMP_12, "NUL in header line"),
    BAD("SE\0ND\n\n\0", STOMP_12, "NUL in command line"),
    BAD("SEND\ncontent-length:x1\n\n\0", STOMP_12, "invalid content-length header"),
    BAD("SEND\ncontent-length:\n\n\0", STOMP_12, "invalid content-length header"),
    BAD("SEND\ncontent-length: 1\n\nx\0", STOMP_12, "invalid content-length header"),
    BAD("SEND\ncontent-length:1\n\nxy\0", STOMP_12, "frame not terminated by NUL after content-length bytes"),
    BAD("SEND\ncontent-length:99999999999\n\n", STOMP_12, "frame too large"),
    BAD("\rSEND\n\n\0", STOMP_12, "stray carriage return before command"),
};

static void test_malformed(void **state)
{
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        struct result r;
        parse_all(bads[i].data, bads[i].len, bads[i].v, &r);
        if (!r.err || strcmp(r.err, bads[i].err) != 0)
            fail_msg("case %zu: expected '%s', got '%s'", i, bads[i].err, r.err ? r.err : "(none)");
        result_free(&r);
    }
}

/* The receipt a failed frame asked for, so its ERROR can carry receipt-id:
 * from any header line seen whole before the error, decoded per version,
 * never from a line that was itself the problem. */
struct bad_receipt {
    const char *data;
    size_t len;
    enum stomp_version v;
    const char *err;
    const char *receipt; /* NULL: none to echo */
};

#define BADR(lit, ver, e, r) {lit, sizeof(lit) - 1, ver, e, r}
#define X30 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

static const struct bad_receipt bad_receipts[] = {
    BADR("SEND\nreceipt:r1\nh:\\t\n\n\0", STOMP_12, "undefined escape sequence in header value", "r1"),
    BADR("SEND\nh:\\t\nreceipt:r1\n\n\0", STOMP_12, "undefined escape sequence in header value", "r1"),
    BADR("SEND\nh\\t:v\nreceipt:r1\n\n\0", STOMP_12, "undefined escape sequence in header name", "r1"),
    BADR("SEND\nh:\\t\n\n\0", STOMP_12, "undefined escape sequence in header value", NULL),
    BADR("SEND\r\nreceipt:r1\r\nh:\\t\r\n\r\n\0", STOMP_12, "undefined escape sequence in header value", "r1"),
    BADR("SEND\nreceipt:one\nreceipt:two\nh:\\t\n\n\0", STOMP_12, "undefined escape sequence in header value",
         "one"),
    BADR("SEND\nreceipt:a\\cb\\\\c\\nd\nh:\\t\n\n\0", STOMP_12, "undefined escape sequence in header value",
         "a:b\\c\nd"),
    /* 1.1 has no \r; 1.0 has no escapes at all; CONNECT is never escaped */
    BADR("SEND\nreceipt:r1\nh:a\\rb\n\n\0", STOMP_11, "undefined escape sequence in header value", "r1"),
    BADR("SEND\nreceipt:a\\rb\nh:v\n\n\0", STOMP_11, "undefined escape sequence in header value", NULL),
    BADR("SEND\nreceipt:a\\rb\nh:\\t\n\n\0", STOMP_12, "undefined escape sequence in header value", "a\rb"),
    BADR("SEND\nreceipt:a\\cb\nnocolon\n\n\0", STOMP_10, "malformed header line (no ':')", "a\\cb"),
    BADR("CONNECT\nreceipt:a\\tb\nnocolon\n\n\0", STOMP_12, "malformed header line (no ':')", "a\\tb"),
    /* a receipt that is itself undecodable has no id to echo */
    BADR("SEND\nreceipt:r\\t1\n\n\0", STOMP_12, "undefined escape sequence in header value", NULL),
    BADR("SEND\nreceipt:r1\\\n\n\0", STOMP_12, "undefined escape sequence in header value", NULL),
    BADR("SEND\nreceipt:r1\n:v\n\n\0", STOMP_12, "empty header name", "r1"),
    BADR("SEND\nreceipt:r1\nh:a\0b\n\n\0", STOMP_12, "NUL in header line", "r1"),
    BADR("SEND\nreceipt:r\0\n\n\0", STOMP_12, "NUL in header line", NULL),
    BADR("SEND\nreceipt:r1\ncontent-length:x\n\n\0", STOMP_12, "invalid content-length header", "r1"),
    BADR("SEND\ncontent-length:x\nreceipt:r1\n\n\0", STOMP_12, "invalid content-length header", NULL),
    BADR("SEND\nreceipt:r1\ncontent-length:1\n\nxy\0", STOMP_12,
         "frame not terminated by NUL after content-length bytes", "r1"),
    BADR("SEND\nreceipt:r1\ncontent-length:999\n\n", STOMP_12, "frame too large", "r1"),
    BADR("SEND\nreceipt:r1\n\n" X30 X30 X30 X30 X30 X30 X30 X30 X30, STOMP_12, "frame too large", "r1"),
    /* limits {256, 4, 24, 16}: a receipt line at the limit is echoed whole;
     * one over it, or after the line that failed, is not */
    BADR("SEND\nreceipt:0123456789abcdef\nh:\\t\n\n\0", STOMP_12, "undefined escape sequence in header value",
         "0123456789abcdef"),
    BADR("SEND\nreceipt:0123456789abcdefg\n\n\0", STOMP_12, "header line too long", NULL),
    BADR("SEND\nreceipt:r1\nh:" X30 "\n\n\0", STOMP_12, "header line too long", "r1"),
    BADR("SEND\nreceipt:r1\nh:" X30, STOMP_12, "header line too long", "r1"),
    BADR("SEND\nh:" X30 "\nreceipt:r1\n\n\0", STOMP_12, "header line too long", NULL),
    BADR("SEND\nreceipt:r1\na:1\nb:2\nc:3\nd:4\n\n\0", STOMP_12, "too many headers", "r1"),
    BADR("SEND\na:1\nb:2\nc:3\nreceipt:r1\nd:4\n\n\0", STOMP_12, "too many headers", "r1"),
    BADR("SEND\na:1\nb:2\nc:3\nd:4\nreceipt:r1\n\n\0", STOMP_12, "too many headers", NULL),
    BADR("SENDSENDSENDSENDSEND\nreceipt:r1\n\n\0", STOMP_12, "command line too long", NULL),
    /* only a header named exactly receipt */
    BADR("SEND\nreceipts:r1\nReceipt:r2\nh:\\t\n\n\0", STOMP_12, "undefined escape sequence in header value",
         NULL),
    /* the frame before was fine: its receipt is not this one's */
    BADR("SEND\nreceipt:old\n\n\0SEND\nh:\\t\n\n\0", STOMP_12, "undefined escape sequence in header value", NULL),
    BADR("SEND\nreceipt:old\n\n\0\n\rX", STOMP_12, "stray carriage return before command", NULL),
};

static void check_bad_receipt(size_t i, const struct result *r, size_t split)
{
    const struct bad_receipt *b = &bad_receipts[i];
    if (!r->err || strcmp(r->err, b->err) != 0)
        fail_msg("case %zu split %zu: expected '%s', got '%s'", i, split, b->err, r->err ? r->err : "(none)");
    if (!b->receipt && r->has_receipt)
        fail_msg("case %zu split %zu: expected no receipt, got '%s'", i, split, r->receipt);
    if (b->receipt && (!r->has_receipt || strcmp(r->receipt, b->receipt) != 0))
        fail_msg("case %zu split %zu: expected receipt '%s', got '%s'", i, split, b->receipt,
                 r->has_receipt ? r->receipt : "(none)");
}

static void test_error_receipt(void **state)
{
    const struct frame_limits lim = {256, 4, 24, 16};
    for (size_t i = 0; i < sizeof bad_receipts / sizeof bad_receipts[0]; i++) {
        const struct bad_receipt *b = &bad_receipts[i];
        /* the same answer however the bytes were split */
        for (size_t k = 0; k < b->len; k++) {
            struct result r;
            feed(b->data, b->len, &k, k ? 1 : 0, b->v, &lim, &r);
            check_bad_receipt(i, &r, k);
            result_free(&r);
        }
    }
}

static void test_error_receipt_bounded_by_header_limit(void **state)
{
    /* the longest receipt that can be echoed is the header limit less "receipt:" */
    struct frame_limits lim = big;
    lim.max_header_line = 40;
    char data[128];
    int n = snprintf(data, sizeof data, "SEND\nreceipt:%s\nh:\\t\n\n", "0123456789012345678901234567890");
    struct result r;
    feed(data, (size_t)n + 1, NULL, 0, STOMP_12, &lim, &r);
    assert_string_equal(r.err, "undefined escape sequence in header value");
    assert_true(r.has_receipt);
    assert_int_equal(r.receipt_len, 31);
    result_free(&r);
    n = snprintf(data, sizeof data, "SEND\nreceipt:%s\nh:\\t\n\n", "01234567890123456789012345678901x");
    feed(data, (size_t)n + 1, NULL, 0, STOMP_12, &lim, &r);
    assert_string_equal(r.err, "header line too long");
    assert_false(r.has_receipt);
    result_free(&r);
}

static void test_1_0_is_never_unescaped(void **state)
{
    struct result r;
    parse_all(S("SEND\nh:a\\tb\\c\n\n\0"), STOMP_10, &r);
    assert_null(r.err);
    assert_string_equal(frame_get(&r.frames[0], "h"), "a\\tb\\c");
    result_free(&r);
}

static void test_value_with_colons(void **state)
{
    struct result r;
    parse_all(S("SEND\nh:a:b:c\n\n\0"), STOMP_10, &r);
    assert_string_equal(frame_get(&r.frames[0], "h"), "a:b:c");
    result_free(&r);
}

static void test_limits(void **state)
{
    struct frame_limits lim = {200, 3, 20, 10};
    struct result r;
    /* exactly at each limit: fine */
    feed(S("DISCONNECT\nh1:12345678901234567\nh2:v\nh3:v\n\n\0"), NULL, 0, STOMP_12, &lim, &r);
    assert_null(r.err);
    assert_int_equal(r.nframes, 1);
    result_free(&r);
    feed(S("DISCONNECTX\n\n\0"), NULL, 0, STOMP_12, &lim, &r);
    assert_string_equal(r.err, "command line too long");
    result_free(&r);
    feed(S("SEND\nh1:1234567890123456789\n\n\0"), NULL, 0, STOMP_12, &lim, &r);
    assert_string_equal(r.err, "header line too long");
    result_free(&r);
    feed(S("SEND\na:1\nb:2\nc:3\nd:4\n\n\0"), NULL, 0, STOMP_12, &lim, &r);
    assert_string_equal(r.err, "too many headers");
    result_free(&r);
    /* a long line is refused before its end arrives */
    feed(S("SEND\nh:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), NULL, 0, STOMP_12, &lim, &r);
    assert_string_equal(r.err, "header line too long");
    result_free(&r);
    feed(S("SENDSENDSENDSEND"), NULL, 0, STOMP_12, &lim, &r);
    assert_string_equal(r.err, "command line too long");
    assert_int_equal(frame_error_limit(r.err), FRAME_LIMIT_COMMAND_LINE);
    result_free(&r);
}

/* A line that passes both its own limit and the frame's before its LF:
 * the error is the limit passed first in the stream, whether the bytes
 * come in one buffer or one at a time (found by fuzz/fuzz_frame: the
 * whole buffer said "header line too long", bytes one at a time "frame
 * too large"). */
static void test_first_limit_passed_wins(void **state)
{
    struct frame_limits lim = {64, 3, 24, 12};
    /* 54 bytes before the selector line; the frame limit falls 11 bytes
     * into it, the line limit 26 */
    const char *first_frame = "SUBSCRIBE\nid:1\ndestination:/id:1\ndestination:/topic/t\nselector:x LIt-indiv&idual\n\n";
    /* here the line limit comes first: 26 bytes into a line starting at 5 */
    const char *first_line = "SEND\nh:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\n";
    struct {
        const char *data;
        const char *want;
    } cases[] = {{first_frame, "frame too large"}, {first_line, "header line too long"}};
    for (size_t i = 0; i < 2; i++) {
        size_t len = strlen(cases[i].data) + 1;
        struct result r;
        feed(cases[i].data, len, NULL, 0, STOMP_12, &lim, &r);
        assert_string_equal(r.err, cases[i].want);
        result_free(&r);
        size_t *cuts = malloc(len * sizeof *cuts);
        for (size_t k = 0; k < len; k++)
            cuts[k] = k + 1;
        feed(cases[i].data, len, cuts, (int)len - 1, STOMP_12, &lim, &r);
        assert_string_equal(r.err, cases[i].want);
        result_free(&r);
        free(cuts);
    }
}

/* Each size-limit error says which limit it is about (the broker names
 * the setting); no other error does. */
static void test_error_limit(void **state)
{
    struct frame_limits lim = {64, 2, 20, 10};
    struct result r;
    struct {
        const char *data;
        enum frame_limit want;
    } cases[] = {
        {"DISCONNECTXX\n\n", FRAME_LIMIT_COMMAND_LINE},
        {"SEND\nh1:1234567890123456789\n\n", FRAME_LIMIT_HEADER_LINE},
        {"SEND\na:1\nb:2\nc:3\n\n", FRAME_LIMIT_HEADERS},
        {"SEND\ncontent-length:60\n\n", FRAME_LIMIT_FRAME},
        {"SEND\nh:\\t\n\n", FRAME_LIMIT_NONE},
        {"SEND\nnocolon\n\n", FRAME_LIMIT_NONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        feed(cases[i].data, strlen(cases[i].data) + 1, NULL, 0, STOMP_12, &lim, &r);
        assert_non_null(r.err);
        assert_int_equal(frame_error_limit(r.err), cases[i].want);
        result_free(&r);
    }
    assert_int_equal(frame_error_limit(NULL), FRAME_LIMIT_NONE);
    /* frame_check_headers speaks the same words */
    struct stomp_header hs[3] = {{"a", "1", 1, 1}, {"b", "2", 1, 1}, {"c", "3", 1, 1}};
    size_t bad;
    const char *err;
    assert_int_equal(frame_check_headers(&lim, STOMP_12, "SEND", hs, 3, 0, &bad, &err), -1);
    assert_int_equal(frame_error_limit(err), FRAME_LIMIT_HEADERS);
}

static void test_frame_size_limit(void **state)
{
    struct frame_limits lim = {64, 10, 100, 20};
    char buf[256];
    struct result r;
    /* headers "SEND\n\n" = 6 bytes: a body of 58 fits, 59 does not */
    memcpy(buf, "SEND\n\n", 6);
    memset(buf + 6, 'b', 58);
    buf[64] = '\0';
    feed(buf, 65, NULL, 0, STOMP_12, &lim, &r);
    assert_null(r.err);
    assert_int_equal(r.frames[0].body_len, 58);
    result_free(&r);
    memset(buf + 6, 'b', 59);
    buf[65] = '\0';
    feed(buf, 66, NULL, 0, STOMP_12, &lim, &r);
    assert_string_equal(r.err, "frame too large");
    result_free(&r);
    /* without a NUL yet: refused as soon as it cannot fit */
    memset(buf + 6, 'b', 100);
    feed(buf, 106, NULL, 0, STOMP_12, &lim, &r);
    assert_string_equal(r.err, "frame too large");
    result_free(&r);
    feed(S("SEND\ncontent-length:60\n\n"), NULL, 0, STOMP_12, &lim, &r);
    assert_string_equal(r.err, "frame too large");
    result_free(&r);
}

static void test_content_length_with_nuls_split(void **state)
{
    static const char d[] = "SEND\ncontent-length:4\n\n\0\0\0\0\0SEND\n\nz\0";
    size_t len = sizeof d - 1;
    for (size_t k = 1; k < len; k++) {
        struct result r;
        feed(d, len, &k, 1, STOMP_12, &big, &r);
        assert_null(r.err);
        assert_int_equal(r.nframes, 2);
        assert_int_equal(r.frames[0].body_len, 4);
        assert_memory_equal(r.frames[0].body, "\0\0\0\0", 4);
        assert_string_equal(r.frames[1].body, "z");
        result_free(&r);
    }
}

/* frame_escaped_len reads eight bytes at a time: it counts as a byte by
 * byte loop does, wherever the bytes to escape fall (a word's first or
 * last byte, several in one word, next to bytes with the high bit set,
 * which the word trick's borrow could confuse) and whatever the length. */
static void test_escaped_len_counts_every_byte(void **state)
{
    (void)state;
    static const char alphabet[] = {'a', '\\', ':', '\n', '\r', (char)0x80, (char)0xff, (char)0xdc,
                                    (char)0x3b, (char)0x5b, (char)0x09, (char)0x0b, '\0'};
    unsigned seed = 12345;
    char s[80];
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(round % 41);
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            /* mostly plain, so that words with one byte to escape come up */
            s[i] = (seed >> 16) % 4 ? 'x' : alphabet[(seed >> 8) % sizeof alphabet];
        }
        for (int v = STOMP_10; v <= STOMP_12; v++) {
            size_t want = len;
            for (size_t i = 0; i < len; i++) {
                char c = s[i];
                want += v == STOMP_10 ? c == '\n'
                                      : c == '\\' || c == ':' || c == '\n' || (v == STOMP_12 && c == '\r');
            }
            assert_int_equal(frame_escaped_len((enum stomp_version)v, s, len), want);
        }
    }
}

/* fmt_u64 and fmt_i64 (the numbers of every MESSAGE) print as printf does */
static void test_numbers_print_as_printf_does(void **state)
{
    (void)state;
    static const int64_t cases[] = {0, 1, 9, 10, 99, 100, 12345, -1, -10, 1765112345678, INT64_MAX, INT64_MIN};
    char want[32], got[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(want, sizeof want, "%" PRId64, cases[i]);
        assert_int_equal(fmt_i64(got, cases[i]), strlen(want));
        assert_string_equal(got, want);
    }
    snprintf(want, sizeof want, "%" PRIu64, UINT64_MAX);
    assert_int_equal(fmt_u64(got, UINT64_MAX), 20);
    assert_string_equal(got, want);
    for (uint64_t v = 1; v < UINT64_MAX / 7; v = v * 7 + 3) {
        snprintf(want, sizeof want, "%" PRIu64, v);
        assert_int_equal(fmt_u64(got, v), strlen(want));
        assert_string_equal(got, want);
    }
}

static void test_writer_escaping(void **state)
{
    struct buf b = {0};
    frame_write_command(&b, "MESSAGE");
    frame_write_header_str(&b, STOMP_12, true, "a:b", "x\\y:z\nw\rv");
    frame_write_header_str(&b, STOMP_11, true, "k", "x\\y:z\nw\rv");
    frame_write_header_str(&b, STOMP_10, true, "k", "x\\y:z\nw");
    frame_write_header_str(&b, STOMP_12, false, "c", "a:b");
    frame_write_body(&b, "hi", 2);
    static const char want[] = "MESSAGE\n"
                               "a\\cb:x\\\\y\\cz\\nw\\rv\n"
                               "k:x\\\\y\\cz\\nw\rv\n"
                               "k:x\\y:z\\nw\n"
                               "c:a:b\n"
                               "\nhi";
    assert_int_equal(b.len, sizeof want); /* + NUL */
    assert_memory_equal(b.data, want, sizeof want);
    buf_free(&b);
}

static void test_write_then_parse_round_trip(void **state)
{
    static const char *const values[] = {"plain", "", "a:b", "back\\slash", "new\nline", "cr\rhere", "\\c\\n"};
    for (int v = STOMP_11; v <= STOMP_12; v++) {
        for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
            if (v == STOMP_11 && strchr(values[i], '\r'))
                continue;
            struct buf b = {0};
            frame_write_command(&b, "SEND");
            frame_write_header_str(&b, (enum stomp_version)v, true, values[i][0] ? values[i] : "e", values[i]);
            frame_write_body(&b, "\0x", 2);
            struct result r;
            parse_all(b.data, b.len, (enum stomp_version)v, &r);
            assert_null(r.err);
            assert_int_equal(r.nframes, 1);
            assert_string_equal(r.frames[0].headers[0].value, values[i]);
            assert_string_equal(r.frames[0].headers[0].name, values[i][0] ? values[i] : "e");
            assert_int_equal(r.frames[0].body_len, 0); /* no content-length: ends at the NUL */
            result_free(&r);
            buf_free(&b);
        }
    }
}

#define H(n, v) {n, v, sizeof(n) - 1, sizeof(v) - 1}

struct check_case {
    const char *command;
    enum stomp_version v;
    struct stomp_header hs[6];
    size_t n;
    size_t body_len;
    const char *err; /* NULL: fine */
    size_t bad;
};

/* limits {128, 4, 24, 16} */
static const struct check_case check_cases[] = {
    {"SEND", STOMP_12, {H("destination", "/queue/a"), H("a:b", "x\\y\nz\r")}, 2, 10, NULL, 2},
    {"SEND", STOMP_12, {H("destination", "/queue/a"), H("", "v")}, 2, 0, "empty header name", 1},
    {"SEND", STOMP_12, {H("destination", "/queue/a"), H("k", "a\0b")}, 2, 0, "NUL in header line", 1},
    {"SEND", STOMP_12, {H("k\0", "v")}, 1, 0, "NUL in header line", 0},
    /* escaping counts: 24 bytes written is the limit */
    {"SEND", STOMP_12, {H("k", "0123456789abcdefghij:")}, 1, 0, NULL, 1},
    {"SEND", STOMP_12, {H("k", "0123456789abcdefghijk:")}, 1, 0, "header line too long", 0},
    {"SEND", STOMP_12, {H("k", "0123456789abcdefghijk\r")}, 1, 0, "header line too long", 0},
    {"SEND", STOMP_11, {H("k", "0123456789abcdef\rghijk")}, 1, 0, NULL, 1},
    {"SEND", STOMP_12, {H("a", "1"), H("b", "2"), H("c", "3"), H("d", "4")}, 4, 0, NULL, 4},
    {"SEND", STOMP_12, {H("a", "1"), H("b", "2"), H("c", "3"), H("d", "4"), H("e", "5")}, 5, 0,
     "too many headers", 5},
    /* "SEND\nk:v\n\n" is 10 bytes: 118 of body fit in 128 */
    {"SEND", STOMP_12, {H("k", "v")}, 1, 118, NULL, 1},
    {"SEND", STOMP_12, {H("k", "v")}, 1, 119, "frame too large", 1},
    {"SEND", STOMP_12, {H("k", "v")}, 1, SIZE_MAX, "frame too large", 1},
    {"SENDSENDSENDSENDS", STOMP_12, {H("k", "v")}, 1, 0, "command line too long", 1},
    /* what the writer cannot encode for older versions */
    {"SEND", STOMP_11, {H("k", "v\r")}, 1, 0, "carriage return at the end", 0},
    {"SEND", STOMP_12, {H("k", "v\r")}, 1, 0, NULL, 1},
    {"SEND", STOMP_11, {H("k:\n", "a:\nb\rc")}, 1, 0, NULL, 1},
    {"SEND", STOMP_10, {H("k", "a\nb")}, 1, 0, "line feed", 0},
    {"SEND", STOMP_10, {H("k:x", "v")}, 1, 0, "colon in a header name", 0},
    {"SEND", STOMP_10, {H("k", "a:b\\c\rd")}, 1, 0, NULL, 1},
    {"CONNECT", STOMP_12, {H("k:x", "v")}, 1, 0, "colon in a header name", 0},
    {"CONNECT", STOMP_12, {H("k", "a\\b")}, 1, 0, NULL, 1},
};

/* frame_check_headers() agrees with the writer and the parser: a frame it
 * passes is written and read back the same within the limits; a frame it
 * refuses for a limit or a NUL the parser refuses in the same words. */
static void test_check_headers(void **state)
{
    const struct frame_limits lim = {128, 4, 24, 16};
    for (size_t i = 0; i < sizeof check_cases / sizeof check_cases[0]; i++) {
        const struct check_case *c = &check_cases[i];
        size_t bad;
        const char *err;
        int rc = frame_check_headers(&lim, c->v, c->command, c->hs, c->n, c->body_len, &bad, &err);
        if (!c->err && rc != 0)
            fail_msg("case %zu: refused: %s (header %zu)", i, err, bad);
        if (c->err && (rc == 0 || !strstr(err, c->err)))
            fail_msg("case %zu: expected '%s', got '%s'", i, c->err, rc ? err : "(accepted)");
        assert_int_equal(bad, c->bad);
        if (c->body_len > 1000)
            continue;
        struct buf b = {0};
        frame_write_command(&b, c->command);
        bool esc = frame_cmd_escapes(frame_cmd_from_name(c->command, strlen(c->command)));
        for (size_t k = 0; k < c->n; k++)
            frame_write_header(&b, c->v, esc, c->hs[k].name, c->hs[k].name_len, c->hs[k].value,
                               c->hs[k].value_len);
        char body[1000];
        memset(body, 'b', c->body_len);
        frame_write_body(&b, body, c->body_len);
        struct result r;
        feed(b.data, b.len, NULL, 0, c->v, &lim, &r);
        if (!c->err) {
            if (r.err)
                fail_msg("case %zu: accepted but the parser says '%s'", i, r.err);
            assert_int_equal(r.frames[0].nheaders, c->n);
            for (size_t k = 0; k < c->n; k++) {
                assert_int_equal(r.frames[0].headers[k].name_len, c->hs[k].name_len);
                assert_memory_equal(r.frames[0].headers[k].name, c->hs[k].name, c->hs[k].name_len);
                assert_int_equal(r.frames[0].headers[k].value_len, c->hs[k].value_len);
                assert_memory_equal(r.frames[0].headers[k].value, c->hs[k].value, c->hs[k].value_len);
            }
            assert_int_equal(r.frames[0].body_len, c->body_len);
        } else if (strstr(err, "cannot")) {
            /* the parser would read something else back */
            bool same = !r.err && r.frames[0].nheaders == c->n;
            for (size_t k = 0; same && k < c->n; k++)
                same = r.frames[0].headers[k].name_len == c->hs[k].name_len &&
                       r.frames[0].headers[k].value_len == c->hs[k].value_len &&
                       !memcmp(r.frames[0].headers[k].name, c->hs[k].name, c->hs[k].name_len) &&
                       !memcmp(r.frames[0].headers[k].value, c->hs[k].value, c->hs[k].value_len);
            if (same)
                fail_msg("case %zu: refused with '%s' but it reads back the same", i, err);
        } else {
            if (!r.err || strcmp(r.err, err) != 0)
                fail_msg("case %zu: refused with '%s' but the parser says '%s'", i, err,
                         r.err ? r.err : "(accepted)");
        }
        result_free(&r);
        buf_free(&b);
    }
}

static void test_cmd_names(void **state)
{
    for (int i = 1; i < CMD__COUNT; i++) {
        const char *n = frame_cmd_name((enum stomp_cmd)i);
        assert_int_equal(frame_cmd_from_name(n, strlen(n)), i);
    }
    assert_int_equal(frame_cmd_from_name("send", 4), CMD_UNKNOWN);
    assert_false(frame_cmd_escapes(CMD_CONNECT));
    assert_false(frame_cmd_escapes(CMD_CONNECTED));
    assert_false(frame_cmd_escapes(CMD_STOMP));
    assert_true(frame_cmd_escapes(CMD_ERROR));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_stream),
        cmocka_unit_test(test_every_single_split),
        cmocka_unit_test(test_every_pair_of_splits),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_heartbeats_only),
        cmocka_unit_test(test_empty_body_and_no_headers),
        cmocka_unit_test(test_unknown_command_is_reported_not_fatal),
        cmocka_unit_test(test_an_http_request_line_is_refused_at_once),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_error_receipt),
        cmocka_unit_test(test_error_receipt_bounded_by_header_limit),
        cmocka_unit_test(test_1_0_is_never_unescaped),
        cmocka_unit_test(test_value_with_colons),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_frame_size_limit),
        cmocka_unit_test(test_error_limit),
        cmocka_unit_test(test_first_limit_passed_wins),
        cmocka_unit_test(test_content_length_with_nuls_split),
        cmocka_unit_test(test_escaped_len_counts_every_byte),
        cmocka_unit_test(test_numbers_print_as_printf_does),
        cmocka_unit_test(test_writer_escaping),
        cmocka_unit_test(test_write_then_parse_round_trip),
        cmocka_unit_test(test_check_headers),
        cmocka_unit_test(test_cmd_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
