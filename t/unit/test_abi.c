/* libstompc's binary interface (stompc.h, "ABI"): a program compiled with
 * smaller (older) structs has the fields it lacks read as zero and gets
 * only as many stats bytes as it has; a program with larger (newer)
 * structs is refused only when it sets a field this library lacks; the
 * 0.1 function names still work; the version macros, stompc_version() and
 * configure's version agree. The CONNECT the library sends is read back
 * from a real listening socket that never answers. */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "stompc.h"

/* A listener on a free loopback port: the kernel completes the handshake
 * and keeps what the client writes, nobody answers CONNECTED. */
static int listener(char *uri, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    snprintf(uri, len, "tcp://127.0.0.1:%d", ntohs(a.sin_port));
    return fd;
}

/* What the client wrote on the connection the listener holds. */
static void sent(int lfd, char *out, size_t len)
{
    int c = accept(lfd, NULL, NULL);
    assert_true(c >= 0);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < len && (r = read(c, out + n, len - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(c);
}

static const struct stompc_header future_hdr[] = {{"x-future", "1"}};

/* Connect with opts of the given size; returns what was sent. */
static int connect_sized(const struct stompc_options *o, size_t size, char *got, size_t gotlen)
{
    char uri[64];
    int lfd = listener(uri, sizeof uri);
    struct stompc *c = stompc_new();
    int rc = stompc_connect_sized(c, uri, o, size);
    got[0] = '\0';
    if (rc == STOMPC_ECONNECT)
        sent(lfd, got, gotlen);
    stompc_free(c);
    close(lfd);
    return rc;
}

static void test_older_caller_fields_are_zero(void **state)
{
    (void)state;
    char got[4096];
    struct stompc_options o = {.login = "alice", .connect_timeout = 200, .headers = future_hdr, .nheaders = 1};
    /* the whole struct: the extra header goes out */
    assert_int_equal(connect_sized(&o, sizeof o, got, sizeof got), STOMPC_ECONNECT);
    assert_non_null(strstr(got, "login:alice"));
    assert_non_null(strstr(got, "x-future:1"));
    /* a caller whose struct ends before headers: they are not read */
    assert_int_equal(connect_sized(&o, offsetof(struct stompc_options, headers), got, sizeof got), STOMPC_ECONNECT);
    assert_non_null(strstr(got, "login:alice"));
    assert_null(strstr(got, "x-future"));
    /* even garbage there is never touched */
    o.headers = (const struct stompc_header *)(uintptr_t)8;
    o.nheaders = 1000;
    assert_int_equal(connect_sized(&o, offsetof(struct stompc_options, headers), got, sizeof got), STOMPC_ECONNECT);
}

/* A 0.1 caller's options end before the TLS files: whatever lies there is
 * never read (the system's CAs are used), and the ssl:// attempt goes as
 * far as the TLS handshake with a listener that never answers. The
 * current size reads them, and a file that does not load fails the
 * connect, naming the option. */
static void test_tls_files_are_new_fields(void **state)
{
    (void)state;
    char uri[64];
    int lfd = listener(uri, sizeof uri);
    char ssl_uri[64];
    snprintf(ssl_uri, sizeof ssl_uri, "ssl://%s", uri + strlen("tcp://"));
    struct stompc_options o = {.connect_timeout = 200, .tls_ca_file = (const char *)(uintptr_t)8};
    struct stompc *c = stompc_new();
    int rc = stompc_connect_sized(c, ssl_uri, &o, offsetof(struct stompc_options, tls_ca_file));
    assert_int_equal(rc, STOMPC_ECONNECT);
    assert_non_null(strstr(stompc_error(c), "TLS handshake not finished in time"));
    o.tls_ca_file = "/nonexistent/ca.pem";
    assert_int_equal(stompc_connect(c, ssl_uri, &o), STOMPC_EINVAL);
    assert_non_null(strstr(stompc_error(c), "tls_ca_file"));
    assert_non_null(strstr(stompc_error(c), "/nonexistent/ca.pem"));
    o.tls_ca_file = NULL;
    o.tls_key_file = "/nonexistent/key.pem";
    assert_int_equal(stompc_connect(c, ssl_uri, &o), STOMPC_EINVAL);
    assert_non_null(strstr(stompc_error(c), "tls_key_file needs tls_cert_file"));
    /* tcp:// needs no TLS files: they are not even loaded */
    o.tls_key_file = NULL;
    o.tls_ca_file = "/nonexistent/ca.pem";
    assert_int_equal(stompc_connect(c, uri, &o), STOMPC_ECONNECT);
    stompc_free(c);
    close(lfd);
}

static void test_newer_caller_refused_only_when_it_sets_unknown_fields(void **state)
{
    (void)state;
    char got[4096];
    struct {
        struct stompc_options o;
        uint64_t later_field;
    } newer;
    memset(&newer, 0, sizeof newer);
    newer.o.connect_timeout = 200;
    newer.o.login = "bob";
    assert_int_equal(connect_sized(&newer.o, sizeof newer, got, sizeof got), STOMPC_ECONNECT);
    assert_non_null(strstr(got, "login:bob"));
    newer.later_field = 1;
    struct stompc *c = stompc_new();
    assert_int_equal(stompc_connect_sized(c, "tcp://127.0.0.1:1", &newer.o, sizeof newer), STOMPC_EINVAL);
    assert_non_null(strstr(stompc_error(c), "does not know"));

    struct {
        struct stompc_send_opts o;
        uint32_t later_field;
    } send = {.later_field = 7};
    assert_int_equal(stompc_send_sized(c, "/queue/a", "x", 1, &send.o, sizeof send), STOMPC_EINVAL);
    send.later_field = 0;
    int rc = stompc_send_sized(c, "/queue/a", "x", 1, &send.o, sizeof send);
    assert_true(rc != STOMPC_EINVAL && rc < 0); /* not connected, but the options were fine */

    struct {
        struct stompc_sub_opts o;
        uint32_t later_field;
    } sub = {.later_field = 7};
    assert_int_equal(stompc_subscribe_sized(c, "/queue/a", &sub.o, sizeof sub), STOMPC_EINVAL);

    struct {
        struct stompc_callbacks cb;
        void (*later)(void);
    } cbs = {.later = (void (*)(void))abort};
    assert_int_equal(stompc_set_callbacks_sized(c, &cbs.cb, NULL, sizeof cbs), STOMPC_EINVAL);
    cbs.later = NULL;
    assert_int_equal(stompc_set_callbacks_sized(c, &cbs.cb, NULL, sizeof cbs), 0);
    /* the macros take compound literals whose initializers hold commas */
    assert_int_equal(stompc_set_callbacks(c, &(struct stompc_callbacks){.on_message = NULL, .on_receipt = NULL}, NULL),
                     0);
    stompc_free(c);
}

static void test_stats_fill_only_the_callers_size(void **state)
{
    (void)state;
    struct stompc *c = stompc_new();
    unsigned char buf[sizeof(struct stompc_stats) + 16];
    size_t old = offsetof(struct stompc_stats, messages_sent);
    memset(buf, 0xab, sizeof buf);
    assert_int_equal(stompc_get_stats_sized(c, (struct stompc_stats *)(void *)buf, old), 0);
    for (size_t i = old; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0xab);
    assert_int_equal(((struct stompc_stats *)(void *)buf)->connects, 0);
    /* a newer, larger struct: what this library does not have is zero */
    memset(buf, 0xab, sizeof buf);
    assert_int_equal(stompc_get_stats_sized(c, (struct stompc_stats *)(void *)buf, sizeof buf), 0);
    for (size_t i = sizeof(struct stompc_stats); i < sizeof buf; i++)
        assert_int_equal(buf[i], 0);
    stompc_free(c);
}

static void test_plain_names_still_work(void **state)
{
    (void)state;
    char uri[64], got[4096];
    int lfd = listener(uri, sizeof uri);
    struct stompc *c = stompc_new();
    struct stompc_options o = {.login = "carol", .connect_timeout = 200};
    struct stompc_callbacks cb = {0};
    struct stompc_stats st;
    assert_int_equal((stompc_set_callbacks)(c, &cb, NULL), 0);
    assert_int_equal((stompc_connect)(c, uri, &o), STOMPC_ECONNECT);
    sent(lfd, got, sizeof got);
    assert_non_null(strstr(got, "login:carol"));
    assert_int_equal((stompc_get_stats)(c, &st), 0);
    assert_int_equal(st.version, 0);
    assert_true((stompc_send)(c, "/queue/a", "x", 1, NULL) < 0);
    assert_true((stompc_subscribe)(c, "/queue/a", NULL) < 0);
    stompc_free(c);
    close(lfd);
}

static void test_version(void **state)
{
    (void)state;
    char num[32];
    assert_string_equal(stompc_version(), STOMPC_VERSION);
    assert_string_equal(STOMPC_VERSION, PACKAGE_VERSION);
    snprintf(num, sizeof num, "%d.%d.%d", STOMPC_VERSION_MAJOR, STOMPC_VERSION_MINOR, STOMPC_VERSION_PATCH);
    assert_string_equal(num, STOMPC_VERSION);
    assert_int_equal(STOMPC_VERSION_NUMBER,
                     (STOMPC_VERSION_MAJOR << 16) | (STOMPC_VERSION_MINOR << 8) | STOMPC_VERSION_PATCH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_older_caller_fields_are_zero),
        cmocka_unit_test(test_tls_files_are_new_fields),
        cmocka_unit_test(test_newer_caller_refused_only_when_it_sets_unknown_fields),
        cmocka_unit_test(test_stats_fill_only_the_callers_size),
        cmocka_unit_test(test_plain_names_still_work),
        cmocka_unit_test(test_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
