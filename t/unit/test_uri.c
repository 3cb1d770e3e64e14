/* Unit tests for libstompc's URI parser and reconnect schedule: every
 * failover option and its ActiveMQ default, both list forms, bad URIs with
 * their messages, back-off (exponential, capped, constant), attempt limits
 * and the order brokers are tried in. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "uri.h"

static void parse_ok(const char *text, struct uri *u)
{
    char err[256];
    int rc = uri_parse(text, u, err, sizeof err);
    if (rc != 0)
        fail_msg("'%s' refused: %s", text, err);
}

/* Refused, with a message containing want. */
static void parse_bad(const char *text, const char *want)
{
    struct uri u;
    char err[256];
    int rc = uri_parse(text, &u, err, sizeof err);
    uri_free(&u);
    if (rc == 0)
        fail_msg("'%s' accepted", text ? text : "(null)");
    if (!strstr(err, want))
        fail_msg("'%s': message '%s' lacks '%s'", text ? text : "(null)", err, want);
}

static void test_tcp(void **state)
{
    (void)state;
    struct uri u;
    parse_ok("tcp://127.0.0.1:61613", &u);
    assert_false(u.failover);
    assert_int_equal(u.nbrokers, 1);
    assert_string_equal(u.brokers[0].host, "127.0.0.1");
    assert_int_equal(u.brokers[0].port, 61613);
    assert_string_equal(u.brokers[0].text, "tcp://127.0.0.1:61613");
    uri_free(&u);

    parse_ok("  TCP://broker.example.com:1/ ", &u); /* scheme case, blanks, trailing slash */
    assert_string_equal(u.brokers[0].host, "broker.example.com");
    assert_int_equal(u.brokers[0].port, 1);
    uri_free(&u);

    parse_ok("stomp://h", &u); /* alias; STOMP's port by default */
    assert_int_equal(u.brokers[0].port, URI_DEFAULT_PORT);
    assert_string_equal(u.brokers[0].text, "tcp://h:61613");
    uri_free(&u);

    parse_ok("tcp://[::1]:65535", &u);
    assert_string_equal(u.brokers[0].host, "::1");
    assert_int_equal(u.brokers[0].port, 65535);
    assert_string_equal(u.brokers[0].text, "tcp://[::1]:65535");
    uri_free(&u);
}

static void test_defaults_are_activemqs(void **state)
{
    (void)state;
    struct uri u;
    parse_ok("failover:(tcp://a:1,tcp://b:2)", &u);
    assert_true(u.failover);
    assert_int_equal(u.nbrokers, 2);
    assert_string_equal(u.brokers[0].host, "a");
    assert_int_equal(u.brokers[1].port, 2);
    assert_int_equal(u.initial_reconnect_delay, 10);
    assert_int_equal(u.max_reconnect_delay, 30000);
    assert_true(u.use_exponential_backoff);
    assert_true(u.reconnect_delay_exponent == 2.0);
    assert_int_equal(u.max_reconnect_attempts, -1);
    assert_int_equal(u.startup_max_reconnect_attempts, -1);
    assert_true(u.randomize);
    assert_int_equal(u.timeout, -1);
    uri_free(&u);
}

static void test_tcp_transport_options_are_ignored(void **state)
{
    (void)state;
    struct uri u;
    /* as ActiveMQ configurations write them: accepted, and ignored */
    parse_ok("failover:(tcp://a:1?wireFormat.maxInactivityDuration=0&soTimeout=5000,"
             "tcp://b:2?keepAlive=true&&tcpNoDelay=true)?randomize=false",
             &u);
    assert_int_equal(u.nbrokers, 2);
    assert_string_equal(u.brokers[0].host, "a");
    assert_int_equal(u.brokers[0].port, 1);
    assert_string_equal(u.brokers[0].text, "tcp://a:1");
    assert_string_equal(u.brokers[1].host, "b");
    assert_int_equal(u.brokers[1].port, 2);
    assert_false(u.randomize);
    uri_free(&u);
    parse_ok("tcp://h:61613?transport.useKeepAlive=true", &u);
    assert_int_equal(u.brokers[0].port, 61613);
    uri_free(&u);
}

static void test_every_option(void **state)
{
    (void)state;
    struct uri u;
    parse_ok("failover:(tcp://h1:1,tcp://h2:2)?initialReconnectDelay=100&maxReconnectDelay=5000"
             "&useExponentialBackOff=false&reconnectDelayExponent=1.5&maxReconnectAttempts=7"
             "&startupMaxReconnectAttempts=3&randomize=FALSE&timeout=2500",
             &u);
    assert_int_equal(u.initial_reconnect_delay, 100);
    assert_int_equal(u.max_reconnect_delay, 5000);
    assert_false(u.use_exponential_backoff);
    assert_true(u.reconnect_delay_exponent == 1.5);
    assert_int_equal(u.max_reconnect_attempts, 7);
    assert_int_equal(u.startup_max_reconnect_attempts, 3);
    assert_false(u.randomize);
    assert_int_equal(u.timeout, 2500);
    uri_free(&u);

    /* zero, -1, repeated (the last wins, as in ActiveMQ), empty pairs */
    parse_ok("failover:(tcp://h:1)?initialReconnectDelay=0&maxReconnectAttempts=0&timeout=-1"
             "&&randomize=true&randomize=false&",
             &u);
    assert_int_equal(u.initial_reconnect_delay, 0);
    assert_int_equal(u.max_reconnect_attempts, 0);
    assert_int_equal(u.timeout, -1);
    assert_false(u.randomize);
    uri_free(&u);
}

static void test_list_forms(void **state)
{
    (void)state;
    struct uri u;
    /* without parentheses, as ActiveMQ also accepts */
    parse_ok("failover:tcp://a:1,tcp://b:2", &u);
    assert_int_equal(u.nbrokers, 2);
    assert_string_equal(u.brokers[1].text, "tcp://b:2");
    assert_true(u.randomize);
    uri_free(&u);

    parse_ok("failover:tcp://a:1,tcp://b:2?randomize=false&timeout=10", &u);
    assert_int_equal(u.nbrokers, 2);
    assert_false(u.randomize);
    assert_int_equal(u.timeout, 10);
    uri_free(&u);

    parse_ok("failover:tcp://only:9", &u);
    assert_true(u.failover);
    assert_int_equal(u.nbrokers, 1);
    uri_free(&u);

    /* failover://(...), blanks around entries, an empty query */
    parse_ok("failover://( tcp://a:1 , tcp://[::1]:2 )?", &u);
    assert_int_equal(u.nbrokers, 2);
    assert_string_equal(u.brokers[1].host, "::1");
    uri_free(&u);
}

static void test_bad_uris(void **state)
{
    (void)state;
    parse_bad(NULL, "no URI");
    parse_bad("", "empty URI");
    parse_bad("   ", "empty URI");
    parse_bad("http://h:1", "unknown scheme 'http'");
    parse_bad("ssl://h:1", "TLS");
    parse_bad("localhost:61613", "'localhost:61613' is not a URI");
    parse_bad("localhost", "not a URI");
    parse_bad("tcp://:61613", "missing host");
    parse_bad("tcp://h:", "bad port ''");
    parse_bad("tcp://h:0", "bad port '0'");
    parse_bad("tcp://h:65536", "bad port '65536'");
    parse_bad("tcp://h:12ab", "bad port '12ab'");
    parse_bad("tcp://h:-1", "bad port '-1'");
    parse_bad("tcp://h:1:2", "bad port '1:2'");
    parse_bad("tcp://[::1:1", "missing ']'");
    parse_bad("tcp://[::1]x", "unexpected 'x'");
    parse_bad("tcp://h:1?wireFormat", "option 'wireFormat' is not name=value");
    parse_bad("tcp://h:1?wireFormat.=1", "unknown tcp:// option 'wireFormat.'");
    parse_bad("tcp://h:1?soTimeout=1&bogus=2", "unknown tcp:// option 'bogus'");
    parse_bad("failover:(tcp://a:1?randomize=false)", "unknown tcp:// option 'randomize'");
    parse_bad("tcp://h:1/path", "bad port '1/path'");
    parse_bad("failover:", "empty broker list");
    parse_bad("failover:()", "empty broker list");
    parse_bad("failover:()?timeout=1", "empty broker list");
    parse_bad("failover:(tcp://a:1,)", "empty entry");
    parse_bad("failover:(tcp://a:1,,tcp://b:2)", "empty entry");
    parse_bad("failover:(tcp://a:1", "missing ')'");
    parse_bad("failover:(tcp://a:1)x", "unexpected 'x'");
    parse_bad("failover:((tcp://a:1))", "parentheses");
    parse_bad("failover:(udp://a:1)", "unknown scheme 'udp'");
    parse_bad("failover:(tcp://a:99999)", "bad port '99999'");
    parse_bad("failover:(failover:(tcp://a:1))", "nested");
    parse_bad("failover:(tcp://a:1)?nope=1", "unknown option 'nope'");
    parse_bad("failover:(tcp://a:1)?initialreconnectdelay=1", "unknown option 'initialreconnectdelay'");
    parse_bad("failover:(tcp://a:1)?backup=true", "does not support");
    parse_bad("failover:(tcp://a:1)?trackMessages=true", "does not support");
    parse_bad("failover:(tcp://a:1)?timeout", "has no value");
    parse_bad("failover:(tcp://a:1)?=5", "has no name");
    parse_bad("failover:(tcp://a:1)?initialReconnectDelay=ten", "initialReconnectDelay: 'ten' is not a number");
    parse_bad("failover:(tcp://a:1)?initialReconnectDelay=-5", "initialReconnectDelay");
    parse_bad("failover:(tcp://a:1)?maxReconnectDelay=", "maxReconnectDelay: '' is not a number");
    parse_bad("failover:(tcp://a:1)?maxReconnectAttempts=-2", "maxReconnectAttempts: '-2'");
    parse_bad("failover:(tcp://a:1)?startupMaxReconnectAttempts=1.5", "startupMaxReconnectAttempts");
    parse_bad("failover:(tcp://a:1)?timeout=-3", "timeout: '-3'");
    parse_bad("failover:(tcp://a:1)?randomize=yes", "randomize: 'yes' is not true or false");
    parse_bad("failover:(tcp://a:1)?useExponentialBackOff=1", "useExponentialBackOff");
    parse_bad("failover:(tcp://a:1)?reconnectDelayExponent=0.5", "reconnectDelayExponent: '0.5' is not a number >= 1");
    parse_bad("failover:(tcp://a:1)?reconnectDelayExponent=abc", "reconnectDelayExponent");
    parse_bad("failover:(tcp://a:1)?initialReconnectDelay=99999999999999999999", "initialReconnectDelay");
}

static void test_backoff_exponential_capped(void **state)
{
    (void)state;
    struct uri u;
    parse_ok("failover:(tcp://h:1)", &u); /* 10 ms doubling up to 30 s */
    int64_t want[] = {10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 20480, 30000, 30000};
    for (unsigned i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_int_equal(uri_reconnect_delay(&u, i + 1), want[i]);
    assert_int_equal(uri_reconnect_delay(&u, 1000000), 30000); /* no overflow */
    uri_free(&u);

    parse_ok("failover:(tcp://h:1)?initialReconnectDelay=100&reconnectDelayExponent=1.5&maxReconnectDelay=400", &u);
    assert_int_equal(uri_reconnect_delay(&u, 1), 100);
    assert_int_equal(uri_reconnect_delay(&u, 2), 150);
    assert_int_equal(uri_reconnect_delay(&u, 3), 225);
    assert_int_equal(uri_reconnect_delay(&u, 4), 337);
    assert_int_equal(uri_reconnect_delay(&u, 5), 400);
    uri_free(&u);

    /* ActiveMQ waits the initial delay first even when it exceeds the cap */
    parse_ok("failover:(tcp://h:1)?initialReconnectDelay=500&maxReconnectDelay=200", &u);
    assert_int_equal(uri_reconnect_delay(&u, 1), 500);
    assert_int_equal(uri_reconnect_delay(&u, 2), 200);
    uri_free(&u);

    parse_ok("failover:(tcp://h:1)?initialReconnectDelay=0", &u);
    assert_int_equal(uri_reconnect_delay(&u, 1), 0);
    assert_int_equal(uri_reconnect_delay(&u, 9), 0);
    uri_free(&u);
}

static void test_backoff_constant(void **state)
{
    (void)state;
    struct uri u;
    parse_ok("failover:(tcp://h:1)?useExponentialBackOff=false&initialReconnectDelay=250&maxReconnectDelay=100", &u);
    for (unsigned i = 1; i < 20; i++)
        assert_int_equal(uri_reconnect_delay(&u, i), 250);
    uri_free(&u);
}

static void test_attempt_limits(void **state)
{
    (void)state;
    struct uri u;
    parse_ok("failover:(tcp://h:1)", &u); /* forever, at startup too */
    assert_false(uri_give_up(&u, 1, true));
    assert_false(uri_give_up(&u, 1000000, true));
    assert_false(uri_give_up(&u, 1000000, false));
    uri_free(&u);

    parse_ok("failover:(tcp://h:1)?maxReconnectAttempts=3", &u);
    assert_false(uri_give_up(&u, 1, false));
    assert_false(uri_give_up(&u, 2, false));
    assert_true(uri_give_up(&u, 3, false));
    /* startupMaxReconnectAttempts=-1: the same limit before the first connection */
    assert_false(uri_give_up(&u, 2, true));
    assert_true(uri_give_up(&u, 3, true));
    uri_free(&u);

    parse_ok("failover:(tcp://h:1)?startupMaxReconnectAttempts=2", &u);
    assert_false(uri_give_up(&u, 1, true));
    assert_true(uri_give_up(&u, 2, true));
    assert_false(uri_give_up(&u, 2, false)); /* once connected: maxReconnectAttempts=-1 */
    assert_false(uri_give_up(&u, 500, false));
    uri_free(&u);

    /* 0: one round and no retry */
    parse_ok("failover:(tcp://h:1)?maxReconnectAttempts=0&startupMaxReconnectAttempts=0", &u);
    assert_true(uri_give_up(&u, 1, true));
    assert_true(uri_give_up(&u, 1, false));
    uri_free(&u);

    /* startup unlimited, limited afterwards */
    parse_ok("failover:(tcp://h:1)?maxReconnectAttempts=1&startupMaxReconnectAttempts=-1", &u);
    assert_true(uri_give_up(&u, 1, true));
    uri_free(&u);
    parse_ok("failover:(tcp://h:1)?maxReconnectAttempts=1&startupMaxReconnectAttempts=5", &u);
    assert_false(uri_give_up(&u, 4, true));
    assert_true(uri_give_up(&u, 5, true));
    assert_true(uri_give_up(&u, 1, false));
    uri_free(&u);

    /* a plain tcp:// URI never retries */
    parse_ok("tcp://h:1", &u);
    assert_true(uri_give_up(&u, 1, true));
    assert_true(uri_give_up(&u, 1, false));
    assert_int_equal(uri_reconnect_delay(&u, 1), 0);
    uri_free(&u);
}

static void test_connect_order(void **state)
{
    (void)state;
    struct uri u;
    size_t order[4];
    uint64_t rng = 42;
    parse_ok("failover:(tcp://a:1,tcp://b:2,tcp://c:3,tcp://d:4)?randomize=false", &u);
    uri_connect_order(&u, SIZE_MAX, &rng, order);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(order[i], i);
    /* the broker that just failed goes last */
    uri_connect_order(&u, 1, &rng, order);
    assert_int_equal(order[0], 0);
    assert_int_equal(order[1], 2);
    assert_int_equal(order[2], 3);
    assert_int_equal(order[3], 1);
    uri_free(&u);

    parse_ok("failover:(tcp://a:1,tcp://b:2,tcp://c:3,tcp://d:4)", &u);
    int first_seen[4] = {0};
    for (int round = 0; round < 400; round++) {
        uri_connect_order(&u, round % 2 ? 3 : SIZE_MAX, &rng, order);
        int seen[4] = {0};
        for (size_t i = 0; i < 4; i++) {
            assert_true(order[i] < 4);
            seen[order[i]]++;
        }
        for (size_t i = 0; i < 4; i++)
            assert_int_equal(seen[i], 1); /* a permutation */
        if (round % 2)
            assert_int_equal(order[3], 3);
        first_seen[order[0]]++;
    }
    for (size_t i = 0; i < 4; i++)
        assert_true(first_seen[i] > 20); /* every broker gets to be first */
    uri_free(&u);

    /* same seed, same order: the state is the caller's, nothing global */
    uint64_t r1 = 7, r2 = 7;
    size_t o1[4], o2[4];
    parse_ok("failover:(tcp://a:1,tcp://b:2,tcp://c:3,tcp://d:4)", &u);
    uri_connect_order(&u, SIZE_MAX, &r1, o1);
    uri_connect_order(&u, SIZE_MAX, &r2, o2);
    assert_memory_equal(o1, o2, sizeof o1);
    uri_free(&u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_defaults_are_activemqs),
        cmocka_unit_test(test_every_option),
        cmocka_unit_test(test_tcp_transport_options_are_ignored),
        cmocka_unit_test(test_list_forms),
        cmocka_unit_test(test_bad_uris),
        cmocka_unit_test(test_backoff_exponential_capped),
        cmocka_unit_test(test_backoff_constant),
        cmocka_unit_test(test_attempt_limits),
        cmocka_unit_test(test_connect_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
