/* Unit tests for libstompc's URI parser and reconnect schedule: every
 * failover option and its ActiveMQ default, both list forms, bad URIs with
 * their messages, back-off (exponential, capped, constant; short for
 * refused connections), attempt limits, the order brokers are tried in
 * (priority brokers first with priorityBackup), and brokers learned from
 * a cluster-members header. */
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
    assert_false(u.backup);
    assert_int_equal(u.backup_pool_size, 1);
    assert_false(u.priority_backup);
    assert_false(u.track_messages);
    assert_int_equal(u.max_cache_size, -1);
    assert_true(u.update_uris_supported);
    /* ActiveMQ: the first URI is the priority one */
    assert_true(u.brokers[0].priority);
    assert_false(u.brokers[1].priority);
    /* this client's own */
    assert_int_equal(u.connect_timeout, -1);
    assert_int_equal(u.brokers[0].connect_timeout, -1);
    assert_int_equal(u.connect_attempt_delay, 250);
    assert_int_equal(u.max_refused_reconnect_delay, 500);
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
    /* connectTimeout is ours, per broker; ActiveMQ's connectionTimeout is ignored */
    parse_ok("failover:(tcp://a:1?connectTimeout=700&connectionTimeout=5,tcp://b:2)?connectTimeout=3000", &u);
    assert_int_equal(u.brokers[0].connect_timeout, 700);
    assert_int_equal(u.brokers[1].connect_timeout, -1);
    assert_int_equal(u.connect_timeout, 3000);
    assert_string_equal(u.brokers[0].text, "tcp://a:1");
    uri_free(&u);
    parse_ok("tcp://h:1?connectTimeout=1", &u);
    assert_int_equal(u.brokers[0].connect_timeout, 1);
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
    /* timeout=0 is no limit, as in ActiveMQ (only a timeout > 0 limits) */
    parse_ok("failover:(tcp://h1:1)?timeout=0", &u);
    assert_int_equal(u.timeout, -1);
    uri_free(&u);

    /* the ActiveMQ options that were refused before, and this client's own */
    parse_ok("failover:(tcp://h1:1,tcp://h2:2,tcp://h3:3)?backup=true&backupPoolSize=2&priorityBackup=true"
             "&priorityURIs=tcp://h3:3,tcp://H2:2/&trackMessages=true&maxCacheSize=65536&updateURIsSupported=false"
             "&connectTimeout=1500&connectAttemptDelay=100&maxRefusedReconnectDelay=200",
             &u);
    assert_true(u.backup);
    assert_int_equal(u.backup_pool_size, 2);
    assert_true(u.priority_backup);
    assert_false(u.brokers[0].priority); /* priorityURIs replaces the default */
    assert_true(u.brokers[1].priority);
    assert_true(u.brokers[2].priority);
    assert_true(u.track_messages);
    assert_int_equal(u.max_cache_size, 65536);
    assert_false(u.update_uris_supported);
    assert_int_equal(u.connect_timeout, 1500);
    assert_int_equal(u.connect_attempt_delay, 100);
    assert_int_equal(u.max_refused_reconnect_delay, 200);
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
    parse_bad("tls://h:1", "unknown scheme 'tls' (use tcp://, ssl:// or failover:)");
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
    parse_bad("failover:(tcp://a:1)?rebalanceUpdateURIs=true", "does not support");
    parse_bad("failover:(tcp://a:1)?nested.wireFormat.x=1", "does not support");
    parse_bad("failover:(tcp://a:1)?backup=yes", "backup: 'yes' is not true or false");
    parse_bad("failover:(tcp://a:1)?backupPoolSize=-1", "backupPoolSize: '-1' is not a count");
    parse_bad("failover:(tcp://a:1)?trackMessages=1", "trackMessages");
    parse_bad("failover:(tcp://a:1)?maxCacheSize=0", "maxCacheSize: '0' is not a number from 1 to 2147483647");
    parse_bad("failover:(tcp://a:1)?priorityURIs=tcp://b:1", "priorityURIs: 'tcp://b:1' is not in the broker list");
    parse_bad("failover:(tcp://a:1)?priorityURIs=a:1", "priorityURIs: 'a:1' is not a URI");
    parse_bad("failover:(tcp://a:1)?priorityURIs=tcp://a:1,", "priorityURIs: empty entry");
    parse_bad("failover:(tcp://a:1)?connectTimeout=0", "connectTimeout: '0' is not a number from 1 to 2147483647");
    parse_bad("failover:(tcp://a:1)?connectAttemptDelay=-1", "connectAttemptDelay");
    parse_bad("tcp://a:1?connectTimeout=x", "connectTimeout: 'x' is not a number");
    parse_bad("tcp://a:1?connectTimeout=0", "connectTimeout: '0'");
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
    /* each is added to the clock or compared with a count: at most 2^31-1
     * (9223372036854775807 overflowed the deadline, helper-67) */
    parse_bad("failover:(tcp://a:1)?connectTimeout=9223372036854775807", "1 to 2147483647");
    parse_bad("failover:(tcp://a:1)?connectAttemptDelay=2147483648", "0 to 2147483647");
    parse_bad("failover:(tcp://a:1)?timeout=9223372036854775807", "up to 2147483647");
    parse_bad("tcp://a:1?connectTimeout=2147483648", "1 to 2147483647");
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

static void test_refused_delay_is_short(void **state)
{
    (void)state;
    struct uri u;
    parse_ok("failover:(tcp://h:1)", &u); /* the schedule, capped at 500 ms */
    int64_t want[] = {10, 20, 40, 80, 160, 320, 500, 500};
    for (unsigned i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_int_equal(uri_refused_delay(&u, i + 1), want[i]);
    assert_int_equal(uri_refused_delay(&u, 1000000), 500);
    uri_free(&u);
    /* a smaller maxReconnectDelay wins; the option moves the cap */
    parse_ok("failover:(tcp://h:1)?maxReconnectDelay=100", &u);
    assert_int_equal(uri_refused_delay(&u, 20), 100);
    uri_free(&u);
    parse_ok("failover:(tcp://h:1)?maxRefusedReconnectDelay=2000&initialReconnectDelay=1000", &u);
    assert_int_equal(uri_refused_delay(&u, 1), 1000);
    assert_int_equal(uri_refused_delay(&u, 2), 2000);
    assert_int_equal(uri_refused_delay(&u, 9), 2000);
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

static void test_priority_order(void **state)
{
    (void)state;
    struct uri u;
    size_t order[4];
    uint64_t rng = 3;
    /* without priorityBackup, priority changes nothing */
    parse_ok("failover:(tcp://a:1,tcp://b:2,tcp://c:3,tcp://d:4)?randomize=false&priorityURIs=tcp://c:3", &u);
    uri_connect_order(&u, SIZE_MAX, &rng, order);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(order[i], i);
    uri_free(&u);
    /* with it, priority brokers first, in list order, the failed one last */
    parse_ok("failover:(tcp://a:1,tcp://b:2,tcp://c:3,tcp://d:4)?randomize=false&priorityBackup=true"
             "&priorityURIs=tcp://d:4,tcp://b:2",
             &u);
    uri_connect_order(&u, SIZE_MAX, &rng, order);
    size_t want[] = {1, 3, 0, 2};
    assert_memory_equal(order, want, sizeof want);
    uri_connect_order(&u, 1, &rng, order);
    size_t want2[] = {3, 0, 2, 1};
    assert_memory_equal(order, want2, sizeof want2);
    uri_free(&u);
    /* randomized: still the priority ones first */
    parse_ok("failover:(tcp://a:1,tcp://b:2,tcp://c:3,tcp://d:4)?priorityBackup=true&priorityURIs=tcp://c:3,tcp://a:1",
             &u);
    for (int round = 0; round < 100; round++) {
        uri_connect_order(&u, SIZE_MAX, &rng, order);
        assert_true(order[0] == 0 || order[0] == 2);
        assert_true(order[1] == 0 || order[1] == 2);
        assert_true(order[2] == 1 || order[2] == 3);
    }
    uri_free(&u);
}

static void test_ssl(void **state)
{
    (void)state;
    struct uri u;
    parse_ok("ssl://127.0.0.1:61612", &u);
    assert_false(u.failover);
    assert_true(u.brokers[0].tls);
    assert_string_equal(u.brokers[0].text, "ssl://127.0.0.1:61612");
    assert_true(uri_has_tls(&u));
    uri_free(&u);
    parse_ok("STOMP+SSL://[::1]:1?connectTimeout=5", &u); /* ActiveMQ's name too */
    assert_true(u.brokers[0].tls);
    assert_string_equal(u.brokers[0].text, "ssl://[::1]:1");
    assert_int_equal(u.brokers[0].connect_timeout, 5);
    uri_free(&u);
    parse_ok("ssl://h", &u);
    assert_int_equal(u.brokers[0].port, URI_DEFAULT_PORT);
    uri_free(&u);
    /* a failover list may mix them; the same host and port over TCP and
     * over TLS are two brokers */
    parse_ok("failover:(tcp://a:1,ssl://a:1,stomp+ssl://b:2)?priorityURIs=ssl://a:1", &u);
    assert_int_equal(u.nbrokers, 3);
    assert_false(u.brokers[0].tls);
    assert_true(u.brokers[1].tls && u.brokers[2].tls);
    assert_false(u.brokers[0].priority);
    assert_true(u.brokers[1].priority);
    assert_true(uri_has_tls(&u));
    uri_free(&u);
    parse_ok("failover:(tcp://a:1)", &u);
    assert_false(uri_has_tls(&u));
    uri_free(&u);
    parse_bad("ssl://h:1?bogus=1", "unknown tcp:// option 'bogus'");
}

static void test_learn(void **state)
{
    (void)state;
    struct uri u;
    parse_ok("failover:(tcp://127.0.0.1:61613)", &u);
    const char *h = "tcp://127.0.0.1:61613,tcp://127.0.0.1:61614";
    assert_int_equal(uri_learn(&u, h, 21), 0); /* known */
    assert_int_equal(uri_learn(&u, h + 22, strlen(h + 22)), 1);
    assert_int_equal(u.nbrokers, 2);
    assert_true(u.brokers[1].learned);
    assert_false(u.brokers[1].priority);
    assert_string_equal(u.brokers[1].text, "tcp://127.0.0.1:61614");
    assert_int_equal(u.brokers[1].connect_timeout, -1);
    assert_int_equal(uri_learn(&u, h + 22, strlen(h + 22)), 0); /* once */
    /* host:port as ZooKeeper members publish it, IPv6 too */
    assert_int_equal(uri_learn(&u, " [::1]:7 ", 9), 1);
    assert_string_equal(u.brokers[2].text, "tcp://[::1]:7");
    assert_int_equal(uri_learn(&u, "h:8", 3), 1);
    assert_string_equal(u.brokers[3].text, "tcp://h:8");
    /* nonsense is refused, options are not taken from a broker */
    assert_int_equal(uri_learn(&u, "", 0), -EINVAL);
    assert_int_equal(uri_learn(&u, "http://x:1", 10), -EINVAL);
    assert_int_equal(uri_learn(&u, "tcp://x", 7), 1); /* the default port */
    assert_int_equal(uri_learn(&u, "tcp://y:1?connectTimeout=1", 26), 0);
    assert_int_equal(uri_learn(&u, "tcp://z:0", 9), -EINVAL);
    /* at most URI_MAX_LEARNED */
    char t[32];
    size_t before = u.nlearned;
    for (int i = 0; i < 100; i++) {
        snprintf(t, sizeof t, "tcp://n%d:1", i);
        assert_true(uri_learn(&u, t, strlen(t)) >= 0);
    }
    assert_int_equal(u.nlearned, URI_MAX_LEARNED);
    assert_int_equal(u.nbrokers, 1 + URI_MAX_LEARNED);
    assert_true(before < URI_MAX_LEARNED);
    uri_free(&u);

    /* a client that asked for TLS is not moved to plain TCP by what a
     * broker says: it learns ssl:// brokers only */
    parse_ok("failover:(ssl://127.0.0.1:61612,tcp://127.0.0.1:61613)", &u);
    assert_int_equal(uri_learn(&u, "tcp://127.0.0.1:61614", 21), 0);
    assert_int_equal(uri_learn(&u, "127.0.0.1:61615", 15), 0);
    assert_int_equal(uri_learn(&u, "ssl://127.0.0.1:61616", 21), 1);
    assert_int_equal(u.nbrokers, 3);
    assert_true(u.brokers[2].tls && u.brokers[2].learned);
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
        cmocka_unit_test(test_refused_delay_is_short),
        cmocka_unit_test(test_backoff_constant),
        cmocka_unit_test(test_attempt_limits),
        cmocka_unit_test(test_connect_order),
        cmocka_unit_test(test_priority_order),
        cmocka_unit_test(test_ssl),
        cmocka_unit_test(test_learn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
