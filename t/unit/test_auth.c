/* Authentication with real crypt(3), real worker threads and a real
 * libev loop: the users file (every error names file:line), logins
 * answered on the loop, the login cache (a repeated login is answered at
 * once, a changed password no longer matches), identical checks in flight
 * run once, the console's fallback login, the protected-mode rule and
 * stompd --hash-password. */
#include "config.h"

#include <crypt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "stompd/auth.h"
#include "stompd/config.h"

static char path[64];

static void write_users(const char *text)
{
    if (!path[0]) {
        strcpy(path, "/tmp/stompd-test-users-XXXXXX");
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
    }
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static char *hash_of(const char *password, const char *prefix)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data cd;
    memset(&cd, 0, sizeof cd);
    assert_non_null(crypt_gensalt_rn(prefix, 0, NULL, 0, setting, sizeof setting));
    const char *h = crypt_rn(password, setting, &cd, sizeof cd);
    assert_non_null(h);
    return strdup(h);
}

static void set(const char *kv)
{
    char err[256];
    if (config_set(kv, err, sizeof err) != 0)
        fail_msg("%s", err);
}

static void expect_error(const char *text, int line, const char *part)
{
    char err[600] = "", want[128];
    write_users(text);
    set("auth.users=/nonexistent"); /* replaced below */
    free(config.auth_users);
    config.auth_users = strdup(path);
    assert_int_not_equal(auth_check_config(&config, &config, err, sizeof err), 0);
    snprintf(want, sizeof want, "%s:%d: ", path, line);
    if (!strstr(err, want) || !strstr(err, part))
        fail_msg("error '%s' should name %s and say '%s'", err, want, part);
}

static void test_users_file_errors(void **state)
{
    (void)state;
    char *y = hash_of("pw", NULL);
    char text[1024];
    expect_error("# users\n\nalice\n", 3, "expected name:HASH");
    expect_error("alice:\n", 1, "expected name:HASH");
    expect_error("alice:secret\n", 1, "not a crypt(3) hash");
    expect_error("alice:$1$abcdefgh$7Jm0Pr8xR2UfyUM/bN6IQ/\n", 1, "weak legacy method");
    snprintf(text, sizeof text, "alice:%.*s\n", (int)strlen(y) - 3, y);
    expect_error(text, 1, "cut short");
    snprintf(text, sizeof text, "alice:%s\nbob:%s:a:b\n", y, y);
    expect_error(text, 2, "too many ':'");
    snprintf(text, sizeof text, "alice:%s\n  alice:%s\n", y, y);
    expect_error(text, 2, "user 'alice' is listed twice");
    snprintf(text, sizeof text, "alice:%s:ops,,dev\n", y);
    expect_error(text, 1, "empty group name");
    snprintf(text, sizeof text, "alice:%s:ops,*\n", y);
    expect_error(text, 1, "group '*'");
    snprintf(text, sizeof text, "al\001ce:%s\n", y);
    expect_error(text, 1, "control character");
    char err[600];
    set("auth.users=/nonexistent/users");
    assert_int_not_equal(auth_check_config(&config, &config, err, sizeof err), 0);
    assert_non_null(strstr(err, "cannot open the users file /nonexistent/users (auth.users)"));
    /* comments, blank lines, spaces around a line and CRLF are fine */
    snprintf(text, sizeof text, "# the users\n\n  alice:%s:ops,dev  \r\nbob:%s\n", y, y);
    write_users(text);
    free(config.auth_users);
    config.auth_users = strdup(path);
    assert_int_equal(auth_check_config(&config, &config, err, sizeof err), 0);
    free(y);
}

/* ------------------------------------------------------------ logins on the loop */

struct answer {
    bool called;
    int order; /* of the answers so far */
    struct principal *who;
};

static void done(void *arg, struct principal *who)
{
    static int answers;
    struct answer *a = arg;
    a->called = true;
    a->order = ++answers;
    a->who = who;
}

static void wait_for(struct answer *a)
{
    while (!a->called)
        ev_run(ev_default_loop(0), EVRUN_ONCE);
}

static struct principal *login(const char *user, const char *password, int *how)
{
    struct answer a = {0};
    struct principal *who = NULL;
    struct auth_wait *w = NULL;
    *how = auth_login(user, password, NULL, done, &a, &who, &w);
    if (*how == AUTH_PENDING) {
        wait_for(&a);
        return a.who;
    }
    assert_false(a.called);
    return *how == AUTH_OK ? who : NULL;
}

static char *yes_hash, *sha_hash;

static int start(void **state)
{
    (void)state;
    char err[600], text[1024];
    if (!yes_hash) {
        yes_hash = hash_of("alice's secret", NULL);
        sha_hash = hash_of("bob:pass", "$6$");
    }
    config_init_defaults();
    snprintf(text, sizeof text, "alice:%s:ops,dev\nbob:%s\n", yes_hash, sha_hash);
    write_users(text);
    free(config.auth_users);
    config.auth_users = strdup(path);
    if (auth_configure(&config, &config, err, sizeof err) != 0 || auth_start(ev_default_loop(0), err, sizeof err) != 0)
        fail_msg("%s", err);
    return 0;
}

static int stop(void **state)
{
    (void)state;
    auth_stop();
    return 0;
}

static void test_login(void **state)
{
    (void)state;
    struct auth_stats st0, st;
    auth_get_stats(&st0);
    int how;
    struct principal *p = login("alice", "alice's secret", &how);
    assert_int_equal(how, AUTH_PENDING);
    assert_non_null(p);
    assert_string_equal(p->name, "alice");
    assert_false(p->anonymous);
    assert_true(principal_in_group(p, "ops") && principal_in_group(p, "dev") && !principal_in_group(p, "admins"));
    principal_unref(p);
    /* the same login again: from the cache, at once */
    p = login("alice", "alice's secret", &how);
    assert_int_equal(how, AUTH_OK);
    assert_string_equal(p->name, "alice");
    principal_unref(p);
    /* SHA-512, and a password with a colon */
    p = login("bob", "bob:pass", &how);
    assert_int_equal(how, AUTH_PENDING);
    assert_non_null(p);
    assert_int_equal(p->ngroups, 0);
    principal_unref(p);
    /* wrong password, unknown user, no password: refused, never cached */
    assert_null(login("alice", "alice's secreT", &how));
    assert_int_equal(how, AUTH_PENDING);
    assert_null(login("alice", "alice's secreT", &how));
    assert_int_equal(how, AUTH_PENDING);
    assert_null(login("mallory", "alice's secret", &how));
    assert_int_equal(how, AUTH_PENDING);
    assert_null(login("alice", "", &how));
    assert_null(login(NULL, "x", &how));
    assert_int_equal(how, AUTH_FAILED);
    auth_get_stats(&st);
    assert_int_equal(st.cache_hits - st0.cache_hits, 1);
    assert_int_equal(st.checks - st0.checks, 6);
    assert_false(auth_anonymous_allowed()); /* auto, with a users file */
}

static void test_identical_checks_run_once(void **state)
{
    (void)state;
    struct auth_stats st0, st;
    auth_get_stats(&st0);
    struct answer a[3] = {{0}};
    struct auth_wait *w[3];
    struct principal *who;
    for (int i = 0; i < 3; i++)
        assert_int_equal(auth_login("bob", "bob:pass", NULL, done, &a[i], &who, &w[i]), AUTH_PENDING);
    auth_cancel(w[1]); /* its connection went away */
    wait_for(&a[0]);
    wait_for(&a[2]);
    assert_false(a[1].called);
    assert_non_null(a[0].who);
    assert_non_null(a[2].who);
    principal_unref(a[0].who);
    principal_unref(a[2].who);
    auth_get_stats(&st);
    assert_int_equal(st.checks - st0.checks, 1);
    assert_int_equal(st.coalesced - st0.coalesced, 2);
}

/* One address may have auth.max_checks_per_peer checks waiting; a check
 * whose waiters all went away is not run and frees its place (helper-69:
 * closed console connections left their crypt(3) work queued, and correct
 * logins waited behind thousands of them). */
static void test_checks_per_peer_and_abandoned_checks(void **state)
{
    (void)state;
    config.auth_max_checks_per_peer = 2;
    struct auth_stats st0, st;
    auth_get_stats(&st0);
    struct answer a[60] = {{0}};
    struct auth_wait *w[60];
    struct principal *who;
    char pw[32];
    /* two from 10.0.0.1 (any port), the third refused; another address and
     * the same credentials (joining a check) are not */
    assert_int_equal(auth_login("alice", "wrong 1", "10.0.0.1:1000", done, &a[0], &who, &w[0]), AUTH_PENDING);
    assert_int_equal(auth_login("alice", "wrong 2", "10.0.0.1:1001", done, &a[1], &who, &w[1]), AUTH_PENDING);
    assert_int_equal(auth_login("alice", "wrong 3", "10.0.0.1:1002", done, &a[2], &who, &w[2]), AUTH_BUSY);
    assert_int_equal(auth_login("alice", "wrong 1", "10.0.0.1:1003", done, &a[3], &who, &w[3]), AUTH_PENDING);
    assert_int_equal(auth_login("alice", "wrong 3", "[::1]:1000", done, &a[4], &who, &w[4]), AUTH_PENDING);
    assert_int_equal(auth_login("alice", "wrong 4", "[::1]:1001", done, &a[5], &who, &w[5]), AUTH_PENDING);
    assert_int_equal(auth_login("alice", "wrong 5", "[::1]:1002", done, &a[6], &who, &w[6]), AUTH_BUSY);
    /* the one that waits alone goes away: its place is free at once */
    auth_cancel(w[1]);
    assert_int_equal(auth_login("alice", "wrong 6", "10.0.0.1:1004", done, &a[7], &who, &w[7]), AUTH_PENDING);
    for (int i = 0; i < 8; i++)
        if (i != 1 && i != 2 && i != 6) {
            wait_for(&a[i]);
            assert_null(a[i].who);
        }
    assert_false(a[1].called || a[2].called || a[6].called);
    auth_get_stats(&st);
    assert_int_equal(st.busy - st0.busy, 2);
    /* done: the address may check again */
    assert_int_equal(auth_login("alice", "wrong 7", "10.0.0.1:1005", done, &a[8], &who, &w[8]), AUTH_PENDING);
    wait_for(&a[8]);
    /* fifty checks from as many connections that close at once are not
     * run: the next login does not wait for them */
    config.auth_max_checks_per_peer = 100;
    auth_get_stats(&st0);
    for (int i = 9; i < 59; i++) {
        snprintf(pw, sizeof pw, "guess %d", i);
        assert_int_equal(auth_login("alice", pw, "10.0.0.9:1", done, &a[i], &who, &w[i]), AUTH_PENDING);
    }
    for (int i = 9; i < 59; i++)
        auth_cancel(w[i]);
    assert_int_equal(auth_login("alice", "alice's secret", "10.0.0.8:1", done, &a[59], &who, &w[59]), AUTH_PENDING);
    wait_for(&a[59]);
    assert_non_null(a[59].who);
    principal_unref(a[59].who);
    auth_get_stats(&st);
    assert_int_equal(st.abandoned - st0.abandoned, 50);
    /* only those the workers had before the cancels (two a worker), and alice's */
    assert_true(st.checks - st0.checks <= 3);
    /* addresses take turns: one login from a second address waits for
     * two checks of the first (the worker's) and one more, not twenty */
    for (int i = 9; i < 29; i++) {
        snprintf(pw, sizeof pw, "guess %d", i);
        assert_int_equal(auth_login("alice", pw, "10.0.0.9:1", done, &a[i], &who, &w[i]), AUTH_PENDING);
    }
    struct answer other = {0};
    struct auth_wait *ow;
    assert_int_equal(auth_login("bob", "bob:pass", "10.0.0.7:1", done, &other, &who, &ow), AUTH_PENDING);
    wait_for(&other);
    assert_non_null(other.who);
    principal_unref(other.who);
    int before = 0;
    for (int i = 9; i < 29; i++)
        before += a[i].called && a[i].order < other.order;
    assert_true(before <= 3);
    for (int i = 9; i < 29; i++)
        wait_for(&a[i]);
    config.auth_max_checks_per_peer = 64;
}

/* An answer that cancels another waiter of the same check (a console
 * request closing the connection whose login waits on it too): the other
 * is not answered, and nothing is freed twice (helper-71: a heap
 * use-after-free in finish). Under ASan in the sanitizer build. */
struct canceller {
    struct answer a;
    struct auth_wait **other;
};

static void done_cancelling(void *arg, struct principal *who)
{
    struct canceller *c = arg;
    done(&c->a, who);
    auth_cancel(*c->other);
}

static void test_an_answer_may_cancel_another_waiter(void **state)
{
    (void)state;
    struct answer first = {0};
    struct auth_wait *wfirst, *wsecond;
    struct canceller second = {.other = &wfirst};
    struct principal *who;
    /* the last to join is answered first */
    assert_int_equal(auth_login("bob", "bob:pass", "10.0.0.1:1", done, &first, &who, &wfirst), AUTH_PENDING);
    assert_int_equal(auth_login("bob", "bob:pass", "10.0.0.1:2", done_cancelling, &second, &who, &wsecond),
                     AUTH_PENDING);
    wait_for(&second.a);
    assert_non_null(second.a.who);
    principal_unref(second.a.who);
    assert_false(first.called);
}

static void test_reload(void **state)
{
    (void)state;
    char err[600], text[1024];
    int how;
    principal_unref(login("alice", "alice's secret", &how));
    principal_unref(login("alice", "alice's secret", &how));
    assert_int_equal(how, AUTH_OK);
    /* an invalid file keeps the users there were */
    write_users("alice:nothash\n");
    assert_int_not_equal(auth_reload(&config, err, sizeof err), 0);
    assert_non_null(strstr(err, ":1: "));
    struct principal *p = login("alice", "alice's secret", &how);
    assert_int_equal(how, AUTH_OK);
    principal_unref(p);
    /* a new password, new groups: the old password no longer logs in */
    char *h = hash_of("new one", "$6$");
    snprintf(text, sizeof text, "alice:%s:dev\n", h);
    write_users(text);
    assert_int_equal(auth_reload(&config, err, sizeof err), 0);
    assert_null(login("alice", "alice's secret", &how));
    assert_int_equal(how, AUTH_PENDING);
    p = login("alice", "new one", &how);
    assert_non_null(p);
    assert_false(principal_in_group(p, "ops"));
    principal_unref(p);
    assert_null(login("bob", "bob:pass", &how)); /* gone */
    /* the cache can be off: every login is checked */
    set("auth.cache=false");
    assert_int_equal(auth_reload(&config, err, sizeof err), 0);
    principal_unref(login("alice", "new one", &how));
    principal_unref(login("alice", "new one", &how));
    assert_int_equal(how, AUTH_PENDING);
    free(h);
}

static void test_console_login(void **state)
{
    (void)state;
    char err[600];
    struct principal *who;
    struct auth_wait *w;
    struct answer a = {0};
    /* a users file and the default admin password: no fallback */
    assert_int_equal(auth_console_login("admin", "admin", NULL, done, &a, &who, &w), AUTH_PENDING);
    wait_for(&a);
    assert_null(a.who);
    /* a chosen password: the fallback, in http.admin_group */
    set("http.admin_password=s3cret");
    set("http.admin_group=operators");
    assert_int_equal(auth_reload(&config, err, sizeof err), 0);
    assert_int_equal(auth_console_login("admin", "s3cret", NULL, done, &a, &who, &w), AUTH_OK);
    assert_string_equal(who->name, "admin");
    assert_true(principal_in_group(who, "operators"));
    principal_unref(who);
    assert_int_equal(auth_console_login("admin", "s3cre", NULL, done, &a, &who, &w), AUTH_FAILED);
    /* ... or a crypt(3) hash of it */
    char *h = hash_of("hashed", "$6$"), kv[300];
    snprintf(kv, sizeof kv, "http.admin_password=%s", h);
    set(kv);
    assert_int_equal(auth_reload(&config, err, sizeof err), 0);
    memset(&a, 0, sizeof a);
    assert_int_equal(auth_console_login("admin", "hashed", NULL, done, &a, &who, &w), AUTH_PENDING);
    wait_for(&a);
    assert_non_null(a.who);
    principal_unref(a.who);
    memset(&a, 0, sizeof a);
    assert_int_equal(auth_console_login("admin", h, NULL, done, &a, &who, &w), AUTH_PENDING);
    wait_for(&a);
    assert_null(a.who); /* the hash itself is not the password */
    /* a user of the file logs in as itself (its group is the console's to check) */
    memset(&a, 0, sizeof a);
    assert_int_equal(auth_console_login("bob", "bob:pass", NULL, done, &a, &who, &w), AUTH_PENDING);
    wait_for(&a);
    assert_non_null(a.who);
    assert_string_equal(a.who->name, "bob");
    principal_unref(a.who);
    set("http.admin_password=$6$not a hash");
    assert_int_not_equal(auth_reload(&config, err, sizeof err), 0);
    assert_non_null(strstr(err, "http.admin_password"));
    set("http.admin_password=admin");
    set("http.admin_group=admins");
    free(h);
}

/* ------------------------------------------------------------ protected mode */

static void test_exposure_rule(void **state)
{
    (void)state;
    static const struct {
        const char *listen, *users, *anonymous;
        bool ok;
    } cases[] = {
        {"127.0.0.1:61613", "", "auto", true},
        {"127.9.8.7:61613", "", "auto", true},
        {"[::1]:61613", "", "auto", true},
        {"localhost:61613", "", "auto", true},
        {"", "", "auto", true},                 /* no listener */
        {"0.0.0.0:61613", "", "auto", false},
        {"[::]:61613", "", "auto", false},
        {":61613", "", "auto", false},          /* every interface */
        {"10.1.2.3:61613", "", "auto", false},
        {"0.0.0.0:61613", "/etc/stompd/users", "auto", true},
        {"0.0.0.0:61613", "", "true", true},    /* on purpose */
        {"127.0.0.1:61613", "", "false", false}, /* nobody could connect */
        {"0.0.0.0:61613", "/etc/stompd/users", "false", true},
    };
    struct config c;
    char err[600];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&c, 0, sizeof c);
        c.stomp_listen = (char *)cases[i].listen;
        err[0] = '\0';
        int rc = auth_exposure_check(&c, cases[i].users, cases[i].anonymous, err, sizeof err);
        if ((rc == 0) != cases[i].ok)
            fail_msg("case %zu (%s, users '%s', anonymous %s): rc %d %s", i, cases[i].listen, cases[i].users,
                     cases[i].anonymous, rc, err);
        if (rc != 0 && strcmp(cases[i].anonymous, "false"))
            assert_true(strstr(err, "stomp.listen") && strstr(err, "auth.users") && strstr(err, "auth.anonymous"));
        else if (rc != 0)
            assert_true(strstr(err, "auth.users") && strstr(err, "auth.anonymous"));
    }
    /* the WebSocket listener is a client listener too */
    memset(&c, 0, sizeof c);
    c.stomp_listen = (char *)"127.0.0.1:61613";
    c.ws_listen = (char *)"0.0.0.0:61614";
    assert_int_not_equal(auth_exposure_check(&c, "", "auto", err, sizeof err), 0);
    assert_non_null(strstr(err, "stomp.ws_listen = 0.0.0.0:61614 is not a loopback address"));
    assert_int_equal(auth_exposure_check(&c, "/etc/stompd/users", "auto", err, sizeof err), 0);
    c.ws_listen = (char *)"127.0.0.1:61614";
    assert_int_equal(auth_exposure_check(&c, "", "auto", err, sizeof err), 0);
}

/* ------------------------------------------------------------ --hash-password */

static int hash_password(const char *method, const char *input, char *out, size_t outlen, char *errs, size_t errlen)
{
    FILE *in = fmemopen((void *)input, strlen(input), "r");
    FILE *o = fmemopen(out, outlen, "w"), *e = fmemopen(errs, errlen, "w");
    int rc = auth_hash_password(method, in, o, e);
    fclose(in);
    fclose(o);
    fclose(e);
    return rc;
}

static void check_round_trip(const char *method, const char *input, const char *password, const char *prefix)
{
    char out[512] = "", errs[512] = "";
    assert_int_equal(hash_password(method, input, out, sizeof out, errs, sizeof errs), 0);
    size_t n = strlen(out);
    assert_true(n > 1 && out[n - 1] == '\n');
    out[n - 1] = '\0';
    assert_int_equal(strncmp(out, prefix, strlen(prefix)), 0);
    struct crypt_data cd;
    memset(&cd, 0, sizeof cd);
    assert_string_equal(crypt_rn(password, out, &cd, sizeof cd), out);
    memset(&cd, 0, sizeof cd);
    assert_string_not_equal(crypt_rn("other", out, &cd, sizeof cd), out);
}

static void test_hash_password(void **state)
{
    (void)state;
    check_round_trip(NULL, "correct horse\n", "correct horse", "$y$");
    check_round_trip("yescrypt", "with spaces and: colon\r\n", "with spaces and: colon", "$y$");
    check_round_trip("sha512", "no newline", "no newline", "$6$");
    char out[512] = "", errs[512] = "";
    assert_int_equal(hash_password(NULL, "\n", out, sizeof out, errs, sizeof errs), 1);
    assert_non_null(strstr(errs, "empty"));
    assert_int_equal(hash_password(NULL, "", out, sizeof out, errs, sizeof errs), 1);
    assert_int_equal(hash_password("md5", "x\n", out, sizeof out, errs, sizeof errs), 2);
    assert_non_null(strstr(errs, "yescrypt"));
}

int main(void)
{
    config_init_defaults();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_users_file_errors),
        cmocka_unit_test(test_exposure_rule),
        cmocka_unit_test(test_hash_password),
        cmocka_unit_test_setup_teardown(test_login, start, stop),
        cmocka_unit_test_setup_teardown(test_identical_checks_run_once, start, stop),
        cmocka_unit_test_setup_teardown(test_checks_per_peer_and_abandoned_checks, start, stop),
        cmocka_unit_test_setup_teardown(test_an_answer_may_cancel_another_waiter, start, stop),
        cmocka_unit_test_setup_teardown(test_reload, start, stop),
        cmocka_unit_test_setup_teardown(test_console_login, start, stop),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(path);
    free(yes_hash);
    free(sha_hash);
    config_free();
    return rc;
}
