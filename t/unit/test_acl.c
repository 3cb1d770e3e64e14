/* The ACL file and its rule: parsing (every error names file:line), the
 * most specific entry wins, "*" is every authenticated user and not the
 * anonymous one, a destination no entry covers is denied, and no ACL (or
 * the broker itself) allows everything. */
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

#include "stompd/acl.h"
#include "stompd/config.h"

static char path[64];

static void write_file(const char *text)
{
    strcpy(path, "/tmp/stompd-test-acl-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static struct acl *load_ok(const char *text)
{
    char err[512] = "";
    struct acl *a = NULL;
    write_file(text);
    int rc = acl_load(path, &a, err, sizeof err);
    unlink(path);
    if (rc != 0)
        fail_msg("unexpected error: %s", err);
    return a;
}

static void expect_error(const char *text, int line, const char *part)
{
    char err[512] = "", want[128];
    struct acl *a = NULL;
    write_file(text);
    assert_int_not_equal(acl_load(path, &a, err, sizeof err), 0);
    assert_null(a);
    snprintf(want, sizeof want, "%s:%d: ", path, line);
    if (!strstr(err, want) || !strstr(err, part))
        fail_msg("error '%s' should name %s and say '%s'", err, want, part);
    unlink(path);
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_error("# fine\nqueue:a read=x\nnonsense\n", 3, "expected queue:PATTERN");
    expect_error("temp-queue:a read=x\n", 1, "not queue or topic");
    expect_error("queue: read=x\n", 1, "has no pattern");
    expect_error("queue:/queue/a.b read=x\n", 1, "queue:a.b");
    expect_error("\n\nqueue:a read=x\nqueue:a write=y\n", 4, "already on line 3");
    expect_error("queue:a read=x read=y\n", 1, "read= appears twice");
    expect_error("queue:a execute=x\n", 1, "'execute' is not read=, write= or admin=");
    expect_error("queue:a read=\n", 1, "names no group");
    expect_error("queue:a read=,,\n", 1, "names no group");
    expect_error("topic:a write=good,b%d\n", 1, "group 'b%d'");
    char err[512];
    struct acl *a;
    assert_int_not_equal(acl_load("/nonexistent/acl", &a, err, sizeof err), 0);
    assert_non_null(strstr(err, "cannot open the ACL file /nonexistent/acl (auth.acl)"));
}

static void test_rules(void **state)
{
    (void)state;
    struct acl *a = load_ok("# orders\n"
                            "queue:>                read=ops write=ops admin=ops\n"
                            "queue:orders.>         read=shop,ops write=shop admin=ops\n"
                            "queue:orders.eu.*      read=eu\n"
                            "queue:orders.eu.audit  read=audit\n"
                            "\n"
                            "  topic:prices.*       read=*   write=feed\n"
                            "topic:secret.>\n"
                            "queue:a.*.c read=first\n"
                            "queue:*.b.c read=second\n");
    assert_int_equal(acl_entries(a), 8);
    const char *shopg[] = {"shop"}, *opsg[] = {"ops"}, *eug[] = {"eu", "shop"}, *feedg[] = {"feed"},
               *auditg[] = {"audit"}, *firstg[] = {"first"}, *secondg[] = {"second"}, *anong[] = {"anonymous"};
    struct principal *shop = principal_new("shop1", shopg, 1, false), *ops = principal_new("root", opsg, 1, false),
                     *eu = principal_new("eu1", eug, 2, false), *feed = principal_new("feeder", feedg, 1, false),
                     *audit = principal_new("aud", auditg, 1, false), *none = principal_new("nobody", NULL, 0, false),
                     *first = principal_new("f", firstg, 1, false), *second = principal_new("s", secondg, 1, false),
                     *anon = principal_new("anonymous", anong, 1, true);
    static const struct {
        int who;
        enum acl_kind kind;
        const char *name;
        enum acl_perm perm;
        bool allowed;
    } cases[] = {
        {0, ACL_QUEUE, "orders", ACL_READ, true},          /* orders.> covers orders itself */
        {0, ACL_QUEUE, "orders.new", ACL_WRITE, true},
        {0, ACL_QUEUE, "orders.new", ACL_ADMIN, false},    /* admin is ops' */
        {1, ACL_QUEUE, "orders.new", ACL_ADMIN, true},
        {0, ACL_QUEUE, "billing", ACL_READ, false},        /* queue:> is ops' only */
        {1, ACL_QUEUE, "billing", ACL_WRITE, true},
        {2, ACL_QUEUE, "orders.eu.x", ACL_READ, true},     /* orders.eu.* is more specific than orders.> */
        {0, ACL_QUEUE, "orders.eu.x", ACL_READ, false},    /* ... and it names eu only */
        {2, ACL_QUEUE, "orders.eu.x", ACL_WRITE, false},   /* ... and grants no write at all */
        {2, ACL_QUEUE, "orders.eu.x.y", ACL_WRITE, true},  /* * is one segment: orders.> decides */
        {4, ACL_QUEUE, "orders.eu.audit", ACL_READ, true}, /* the literal name beats the pattern */
        {2, ACL_QUEUE, "orders.eu.audit", ACL_READ, false},
        {0, ACL_TOPIC, "prices.eu", ACL_READ, true},       /* * = every authenticated user */
        {5, ACL_TOPIC, "prices.eu", ACL_READ, true},       /* ... with no group at all */
        {8, ACL_TOPIC, "prices.eu", ACL_READ, false},      /* ... not the anonymous one */
        {3, ACL_TOPIC, "prices.eu", ACL_WRITE, true},
        {0, ACL_TOPIC, "prices.eu", ACL_WRITE, false},
        {0, ACL_TOPIC, "prices", ACL_READ, false},         /* no topic entry covers it */
        {1, ACL_TOPIC, "news", ACL_READ, false},           /* queue:> is not about topics */
        {1, ACL_TOPIC, "secret.x", ACL_READ, false},       /* an entry without lists: nobody */
        {6, ACL_QUEUE, "a.b.c", ACL_READ, true},           /* equally specific: the earlier line */
        {7, ACL_QUEUE, "a.b.c", ACL_READ, false},
        {7, ACL_QUEUE, "x.b.c", ACL_READ, true},
    };
    struct principal *who[] = {shop, ops, eu, feed, audit, none, first, second, anon};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool got = acl_check(a, who[cases[i].who], cases[i].kind, cases[i].name, cases[i].perm);
        if (got != cases[i].allowed)
            fail_msg("case %zu: %s %s on %s:%s: got %d", i, who[cases[i].who]->name, acl_perm_name(cases[i].perm),
                     cases[i].kind == ACL_QUEUE ? "queue" : "topic", cases[i].name, got);
    }
    /* more names than the memo keeps: it starts again, the answers stay right */
    for (int i = 0; i < 40000; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.n%d", i % 2 ? "orders" : "billing", i);
        if (acl_check(a, shop, ACL_QUEUE, name, ACL_WRITE) != (i % 2 == 1))
            fail_msg("memo: %s", name);
    }
    assert_true(acl_check(a, eu, ACL_QUEUE, "orders.eu.x", ACL_READ));
    assert_false(acl_check(a, shop, ACL_QUEUE, "orders.eu.x", ACL_READ));
    /* the broker itself, and no ACL at all */
    assert_true(acl_check(a, NULL, ACL_QUEUE, "billing", ACL_ADMIN));
    assert_true(acl_check(NULL, none, ACL_QUEUE, "billing", ACL_ADMIN));
    for (size_t i = 0; i < sizeof who / sizeof who[0]; i++)
        principal_unref(who[i]);
    acl_free(a);
}

static void test_running_acl(void **state)
{
    (void)state;
    char err[512];
    const char *g[] = {"shop"};
    struct principal *shop = principal_new("shop1", g, 1, false);
    config.auth_acl = "";
    assert_int_equal(acl_configure(&config, err, sizeof err), 0);
    assert_false(acl_active());
    assert_true(acl_allows_dest(shop, "/queue/anything", ACL_ADMIN));

    write_file("queue:orders write=shop\n");
    config.auth_acl = path;
    assert_int_equal(acl_configure(&config, err, sizeof err), 0);
    assert_true(acl_active());
    uint64_t before = acl_denials();
    assert_true(acl_allows_dest(shop, "/queue/orders", ACL_WRITE));
    assert_false(acl_allows_dest(shop, "/queue/orders", ACL_READ));
    assert_false(acl_allows_dest(shop, "/topic/orders", ACL_WRITE));
    assert_true(acl_allows_dest(shop, "/remote-temp-queue/x-1-q", ACL_READ)); /* temporary: the owner's */
    assert_true(acl_allows_dest(NULL, "/queue/orders", ACL_ADMIN));
    assert_int_equal(acl_denials(), before + 2);
    char message[256], detail[1200];
    acl_explain(shop, "/queue/orders", ACL_READ, message, sizeof message, detail, sizeof detail);
    assert_string_equal(message, "access denied: no read permission on /queue/orders");
    assert_non_null(strstr(detail, "'shop1'"));

    /* an invalid new file keeps the old rules */
    FILE *fp = fopen(path, "w");
    fputs("queue:orders read=shop\nbroken line\n", fp);
    fclose(fp);
    assert_int_not_equal(acl_reload(&config, err, sizeof err), 0);
    assert_non_null(strstr(err, ":2: "));
    assert_true(acl_allows_dest(shop, "/queue/orders", ACL_WRITE));
    assert_false(acl_allows_dest(shop, "/queue/orders", ACL_READ));
    /* a valid one replaces them */
    fp = fopen(path, "w");
    fputs("queue:orders read=shop\n", fp);
    fclose(fp);
    assert_int_equal(acl_reload(&config, err, sizeof err), 0);
    assert_false(acl_allows_dest(shop, "/queue/orders", ACL_WRITE));
    assert_true(acl_allows_dest(shop, "/queue/orders", ACL_READ));
    unlink(path);
    acl_stop();
    assert_false(acl_active());
    principal_unref(shop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_running_acl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
