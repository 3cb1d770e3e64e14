/* Unit tests for the configuration table: parsing of sizes, durations and
 * addresses, bounds, unknown keys, files. */
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

#include "stompd/config.h"

static void test_sizes(void **state)
{
    int64_t v;
    assert_int_equal(config_parse_size("10", &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(config_parse_size("10KiB", &v), 0);
    assert_int_equal(v, 10240);
    assert_int_equal(config_parse_size("3 MiB", &v), 0);
    assert_int_equal(v, 3 << 20);
    assert_int_equal(config_parse_size("2g", &v), 0);
    assert_int_equal(v, 2LL << 30);
    assert_int_not_equal(config_parse_size("", &v), 0);
    assert_int_not_equal(config_parse_size("-1", &v), 0);
    assert_int_not_equal(config_parse_size("5 parsecs", &v), 0);
    assert_int_not_equal(config_parse_size("99999999999999G", &v), 0);
}

static void test_durations(void **state)
{
    int64_t v;
    assert_int_equal(config_parse_duration("250", &v), 0);
    assert_int_equal(v, 250);
    assert_int_equal(config_parse_duration("250ms", &v), 0);
    assert_int_equal(v, 250);
    assert_int_equal(config_parse_duration("30s", &v), 0);
    assert_int_equal(v, 30000);
    assert_int_equal(config_parse_duration("2min", &v), 0);
    assert_int_equal(v, 120000);
    assert_int_equal(config_parse_duration("1h", &v), 0);
    assert_int_equal(v, 3600000);
    assert_int_not_equal(config_parse_duration("soon", &v), 0);
    assert_int_not_equal(config_parse_duration("3 fortnights", &v), 0);
}

static void test_hostport(void **state)
{
    char host[64];
    int port;
    assert_int_equal(config_split_hostport("127.0.0.1:61613", host, sizeof host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 61613);
    assert_int_equal(config_split_hostport("[::1]:8161", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 8161);
    assert_int_equal(config_split_hostport(":99", host, sizeof host, &port), 0);
    assert_string_equal(host, "");
    assert_int_not_equal(config_split_hostport("localhost", host, sizeof host, &port), 0);
    assert_int_not_equal(config_split_hostport("h:70000", host, sizeof host, &port), 0);
    assert_int_not_equal(config_split_hostport("h:x", host, sizeof host, &port), 0);
    assert_int_not_equal(config_split_hostport("[::1:5", host, sizeof host, &port), 0);
}

static void test_defaults_and_set(void **state)
{
    char err[256];
    config_init_defaults();
    assert_string_equal(config.stomp_listen, "127.0.0.1:61613");
    assert_int_equal(config.max_frame_size, 10 << 20);
    assert_int_equal(config.max_headers, 1000);
    assert_int_equal(config.connect_timeout, 30000);
    assert_int_equal(config.max_redeliveries, 6);
    assert_false(config.per_destination_dlq);
    assert_int_equal(config_set("stomp.max_headers=12", err, sizeof err), 0);
    assert_int_equal(config.max_headers, 12);
    assert_int_equal(config_set("broker.per_destination_dlq=yes", err, sizeof err), 0);
    assert_true(config.per_destination_dlq);
    assert_int_equal(config_set("stomp.listen=0.0.0.0:1234", err, sizeof err), 0);
    assert_string_equal(config.stomp_listen, "0.0.0.0:1234");
    assert_int_not_equal(config_set("stomp.listen=nowhere", err, sizeof err), 0);
    assert_non_null(strstr(err, "host:port"));
    assert_int_not_equal(config_set("stomp.max_headers=0", err, sizeof err), 0);
    assert_non_null(strstr(err, "out of range"));
    assert_int_not_equal(config_set("nosuch.key=1", err, sizeof err), 0);
    assert_non_null(strstr(err, "unknown configuration key 'nosuch.key'"));
    assert_int_not_equal(config_set("broker.per_destination_dlq=maybe", err, sizeof err), 0);
    assert_int_not_equal(config_set("log.level=chatty", err, sizeof err), 0);
    assert_non_null(strstr(err, "debug|info|warn|error"));
    assert_int_not_equal(config_set("=1", err, sizeof err), 0);
    config_free();
}

static void test_file(void **state)
{
    char path[] = "/tmp/stompd-config-test-XXXXXX";
    char err[256];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("; comment\n[stomp]\nmax_headers = 7\nlisten = 127.0.0.1:7\n\n[broker]\nname = b1\n", f);
    fclose(f);
    config_init_defaults();
    assert_int_equal(config_load_file(path, err, sizeof err), 0);
    assert_int_equal(config.max_headers, 7);
    assert_string_equal(config.broker_name, "b1");
    f = fopen(path, "w");
    fputs("[stomp]\nmax_headers = 7\nbogus = 1\n", f);
    fclose(f);
    assert_int_not_equal(config_load_file(path, err, sizeof err), 0);
    assert_non_null(strstr(err, "stomp.bogus"));
    assert_non_null(strstr(err, path));
    /* a key before any section: a section line missing its ']' */
    f = fopen(path, "w");
    fputs("[stomp\nmax_headers = 7\n", f);
    fclose(f);
    assert_int_not_equal(config_load_file(path, err, sizeof err), 0);
    assert_non_null(strstr(err, "outside any [section]"));
    unlink(path);
    assert_int_not_equal(config_load_file(path, err, sizeof err), 0);
    assert_non_null(strstr(err, "cannot open"));
    /* a directory opens, and reads as nothing: refused, not the defaults */
    assert_int_not_equal(config_load_file("/tmp", err, sizeof err), 0);
    assert_non_null(strstr(err, "is a directory"));
    config_free();
}

/* Rules across keys: each bad combination is refused with a message
 * naming the key; the defaults and sane variations pass. */
static void test_validate(void **state)
{
    (void)state;
    static const struct {
        const char *sets[4];
        const char *refused; /* part of the message, NULL: accepted */
    } cases[] = {
        {{NULL}, NULL},
        {{"broker.dlq=/queue/dead.letters"}, NULL},
        {{"broker.dlq=notaqueue"}, "broker.dlq 'notaqueue' is not a /queue/"},
        {{"broker.dlq=/queue/"}, "names no queue"},
        {{"broker.dlq=/topic/dead"}, "is not a /queue/"},
        {{"broker.dlq=/queue/a,/queue/b"}, "a list of destinations"},
        {{"broker.dlq=/queue/dead.>"}, "wildcard"},
        {{"store.sync=bogus"}, "store.sync"},
        {{"store.sync=quorum_mem"}, "needs store.type = replicated-leveldb"},
        {{"store.type=memory", "store.sync=quorum_mem"}, "needs store.type = replicated-leveldb"},
        {{"store.type=memory", "store.sync=local_mem"}, NULL},
        {{"stomp.listen="}, "stomp.listen is empty"},
        {{"zookeeper.address=127.0.0.1:2181,127.0.0.2:2182/chroot"}, NULL},
        {{"zookeeper.address=nonsense"}, "zookeeper.address: 'nonsense' is not host:port"},
        {{"zookeeper.address=127.0.0.1"}, "is not host:port"},
        {{"zookeeper.address=127.0.0.1:99999"}, "is not host:port"},
        {{"zookeeper.address=127.0.0.1:0"}, "is not host:port"},
        {{"zookeeper.address=127.0.0.1:2181,,h:1"}, "'' is not host:port"},
        {{"store.type=replicated-leveldb", "store.role=auto"}, "store.role = auto needs [zookeeper] address"},
        {{"store.type=replicated-leveldb", "store.role=auto", "zookeeper.address=127.0.0.1:2181"}, NULL},
        {{"store.type=replicated-leveldb", "store.role=slave"}, "store.role = slave needs store.master"},
        {{"store.type=replicated-leveldb", "store.role=master", "store.sync=quorum_disk"}, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512] = "";
        config_free();
        config_init_defaults();
        for (size_t k = 0; k < 4 && cases[i].sets[k]; k++)
            assert_int_equal(config_set(cases[i].sets[k], err, sizeof err), 0);
        int rc = config_validate(&config, err, sizeof err);
        if (!cases[i].refused) {
            if (rc != 0)
                fail_msg("case %zu refused: %s", i, err);
        } else if (rc == 0 || !strstr(err, cases[i].refused)) {
            fail_msg("case %zu: expected '%s', got rc %d '%s'", i, cases[i].refused, rc, err);
        }
    }
    config_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_defaults_and_set),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_validate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
