/* The WebSocket layer's pure parts: the upgrade request's rules (parsed
 * by the real http-parser), the accept key, the Origin rule, where one
 * STOMP frame of output ends (one frame per message), and UTF-8 (text or
 * binary message). The wire itself is t/integration/55-57. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "stompd/http_head.h"
#include "stompd/utf8.h"
#include "stompd/ws.h"

static void test_accept_key(void **state)
{
    (void)state;
    char out[29];
    /* RFC 6455 section 1.3's example */
    ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#define GOOD_KEY "dGhlIHNhbXBsZSBub25jZQ=="

/* The decision for one request head. */
static int check(const char *head, const char *origins, struct ws_handshake *hs)
{
    struct http_head h;
    char err[160];
    size_t end = http_head_end(head, strlen(head));
    assert_true(end == strlen(head));
    int rc = http_head_parse(&h, head, end, err, sizeof err);
    if (rc != 0)
        return rc;
    const char *const names[] = {"h, app.example", NULL};
    ws_handshake_check(&h, origins, names, hs);
    http_head_free(&h);
    return 0;
}

static void test_handshake(void **state)
{
    (void)state;
    static const struct {
        const char *head, *origins;
        int status;
        const char *protocol;
    } cases[] = {
        {"GET /stomp HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n", "", 101, NULL},
        /* tokens in lists, any case, fields repeated */
        {"GET / HTTP/1.1\r\nHost: h:1\r\nupgrade: WebSocket\r\nConnection: keep-alive, upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\n"
         "Sec-WebSocket-Protocol: v10.stomp, v11.stomp\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n", "", 101,
         "v12.stomp"},
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v10.stomp\r\n\r\n",
         "", 101, "v10.stomp"},
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
         "", 400, NULL},
        /* subprotocol names are exact: a browser accepts only the name it offered, as spelled */
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: WebSocket\r\nConnection: upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: V12.STOMP\r\n\r\n",
         "", 400, NULL},
        /* not an upgrade at all: a plain GET */
        {"GET / HTTP/1.1\r\nHost: h:1\r\n\r\n", "", 426, NULL},
        {"POST / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n", "", 405, NULL},
        {"GET / HTTP/1.0\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n", "", 400, NULL},
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: close\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n", "", 400, NULL},
        {"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n", "", 400, NULL},
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 8\r\n\r\n", "", 426, NULL},
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n", "", 400, NULL},
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n", "", 400, NULL},
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\nSec-WebSocket-Version: 13\r\n\r\n", "", 400, NULL},
        /* helper-103: two of a header that comes once, or a body */
        {"GET / HTTP/1.1\r\nHost: h:1\r\nHost: evil.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n", "", 400, NULL},
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
         "", 400, NULL},
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8\r\n\r\n",
         "", 400, NULL},
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\nOrigin: http://h:1\r\n"
         "Origin: http://evil.example\r\n\r\n", "", 400, NULL},
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\nContent-Length: 5\r\n\r\n", "", 400, NULL},
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\nTransfer-Encoding: chunked\r\n\r\n",
         "", 400, NULL},
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n", "", 101, NULL},
        /* origins: same origin, listed, any, other */
        {"GET / HTTP/1.1\r\nHost: app.example:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\nOrigin: https://app.example:8080\r\n\r\n",
         "", 101, NULL},
        /* same origin, but under a name that is not this node's (DNS rebinding) */
        {"GET / HTTP/1.1\r\nHost: evil.example:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\nOrigin: http://evil.example:1\r\n\r\n",
         "", 403, NULL},
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\nOrigin: http://evil.example\r\n\r\n",
         "", 403, NULL},
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\nOrigin: http://app.example\r\n\r\n",
         "http://other.example, http://APP.example", 101, NULL},
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\nOrigin: null\r\n\r\n", "*", 101, NULL},
        {"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\nOrigin: null\r\n\r\n", "", 403, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct ws_handshake hs;
        assert_int_equal(check(cases[i].head, cases[i].origins, &hs), 0);
        if (hs.status != cases[i].status)
            fail_msg("case %zu: status %d (%s), expected %d", i, hs.status, hs.reason, cases[i].status);
        if (cases[i].protocol)
            assert_string_equal(hs.protocol, cases[i].protocol);
        else if (hs.status == 101)
            assert_null(hs.protocol);
        if (hs.status == 101)
            assert_string_equal(hs.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        else
            assert_true(hs.reason[0] != '\0');
        if (hs.status == 426)
            assert_non_null(strstr(hs.extra_headers, "Sec-WebSocket-Version: 13"));
    }
}

static void test_head_parser(void **state)
{
    (void)state;
    const char *head = "GET /a?b=1 HTTP/1.1\r\nHost:  h:1 \r\nX-Empty:\r\nX-Two: a\r\n\r\n";
    assert_int_equal(http_head_end(head, strlen(head)), strlen(head));
    assert_int_equal(http_head_end(head, strlen(head) - 1), 0);
    assert_int_equal(http_head_end("GET / HTTP/1.1\nHost: x\n\nrest", 29), 24);
    struct http_head h;
    char err[160];
    assert_int_equal(http_head_parse(&h, head, strlen(head), err, sizeof err), 0);
    assert_string_equal(h.method, "GET");
    assert_string_equal(h.url, "/a?b=1");
    assert_int_equal(h.http_major, 1);
    assert_int_equal(h.http_minor, 1);
    assert_string_equal(http_head_get(&h, "host"), "h:1");
    assert_string_equal(http_head_get(&h, "X-Empty"), "");
    assert_string_equal(http_head_get(&h, "x-two"), "a");
    assert_null(http_head_get(&h, "Origin"));
    http_head_free(&h);
    const char *bad = "GARBAGE\r\n\r\n";
    assert_int_equal(http_head_parse(&h, bad, strlen(bad), err, sizeof err), -1);
    /* too many fields */
    char big[8192];
    size_t n = (size_t)snprintf(big, sizeof big, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < HTTP_HEAD_MAX_FIELDS + 1; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "X-%d: v\r\n", i);
    n += (size_t)snprintf(big + n, sizeof big - n, "\r\n");
    assert_int_equal(http_head_parse(&h, big, n, err, sizeof err), -2);
}

static void test_origin(void **state)
{
    (void)state;
    assert_true(ws_origin_allowed(NULL, "h:1", true, ""));
    assert_true(ws_origin_allowed("http://h:1", "h:1", true, ""));
    assert_true(ws_origin_allowed("http://H:1", "h:1", true, ""));
    assert_false(ws_origin_allowed("http://h:2", "h:1", true, ""));
    assert_false(ws_origin_allowed("http://h:1.evil", "h:1", true, ""));
    /* the same origin under a name that is not this node's: DNS rebinding */
    assert_false(ws_origin_allowed("http://evil.example:1", "evil.example:1", false, ""));
    assert_true(ws_origin_allowed("http://a", "h:1", true, "http://b,http://a"));
    assert_false(ws_origin_allowed("http://a", "h:1", true, "http://ab"));
    assert_false(ws_origin_allowed("http://ab", "h:1", true, "http://a"));
    assert_true(ws_origin_allowed("http://x", "h:1", true, "*"));
    assert_true(ws_origin_allowed("http://x", "h:1", true, " http://y , * "));
}

/* A Host header names this node: an IP address, localhost, or one of
 * the names given (lists of names or host:port addresses). */
static void test_host_named(void **state)
{
    (void)state;
    const char *const names[] = {"broker.example, *.corp.example", "10.0.0.5:61614", NULL};
    const char *const none[] = {NULL};
    const char *const any[] = {"*", NULL};
    assert_true(http_host_named("127.0.0.1:61614", none));
    assert_true(http_host_named("localhost:61614", none));
    assert_true(http_host_named("[::1]:61614", none));
    assert_true(http_host_named("", none));
    assert_false(http_host_named("evil.example:61614", none));
    assert_true(http_host_named("evil.example", any));
    assert_true(http_host_named("Broker.Example:61614", names));
    assert_true(http_host_named("a.corp.example", names));
    assert_false(http_host_named("corp.example", names));
    assert_false(http_host_named("broker.example.evil", names));
    assert_false(http_host_named("10", names));
}

static void test_next_unit(void **state)
{
    (void)state;
    static const struct {
        const char *p;
        size_t n;
        size_t unit;
    } cases[] = {
        {"\n", 1, 1},
        {"\r\n\n", 3, 3},
        {"\nRECEIPT\nreceipt-id:1\n\n\0", 24, 1},               /* a heart-beat before a frame */
        {"RECEIPT\nreceipt-id:1\n\n\0", 23, 23},
        {"RECEIPT\nreceipt-id:1\n\n\0\n\n", 25, 25},            /* its EOLs go with it */
        {"RECEIPT\nreceipt-id:1\n\n\0RECEIPT", 30, 23},
        {"RECEIPT\nreceipt-id:1\n\n", 22, 0},                    /* incomplete */
        {"RECEIPT\nreceipt-id:1", 20, 0},
        /* a body with NULs: content-length decides */
        {"MESSAGE\ncontent-length:3\n\na\0b\0", 30, 30},
        {"MESSAGE\ncontent-length:3\n\na\0b", 29, 0},
        {"MESSAGE\r\ncontent-length:3\r\n\r\na\0b\0X", 34, 33},
        /* the first content-length wins; a header value that only looks like one does not count */
        {"MESSAGE\nx:content-length:9\ncontent-length:1\ncontent-length:5\n\na\0", 64, 64},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t u = ws_next_unit(cases[i].p, cases[i].n);
        if (u != cases[i].unit)
            fail_msg("case %zu: unit %zu, expected %zu", i, u, cases[i].unit);
    }
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(utf8_valid("", 0));
    assert_true(utf8_valid("plain ascii\n", 12));
    assert_true(utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
    assert_true(utf8_valid("a\0b", 3));                 /* NUL is UTF-8 */
    assert_false(utf8_valid("\xc3", 1));                /* cut short */
    assert_false(utf8_valid("\xc0\xaf", 2));            /* overlong */
    assert_false(utf8_valid("\xe0\x80\xaf", 3));        /* overlong */
    assert_false(utf8_valid("\xed\xa0\x80", 3));        /* surrogate */
    assert_false(utf8_valid("\xf4\x90\x80\x80", 4));    /* past U+10FFFF */
    assert_false(utf8_valid("\xff", 1));
    assert_false(utf8_valid("ab\x80", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key), cmocka_unit_test(test_handshake), cmocka_unit_test(test_head_parser),
        cmocka_unit_test(test_origin), cmocka_unit_test(test_host_named), cmocka_unit_test(test_next_unit),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
