/* Destination name patterns: ActiveMQ's wildcard rules, and which of
 * several patterns is the most specific. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "stompd/dname.h"

static void test_match(void **state)
{
    (void)state;
    static const struct {
        const char *pattern, *name;
        bool match;
    } cases[] = {
        {"prices", "prices", true},
        {"prices", "prices.eu", false},
        {"prices.eu", "prices", false},
        {"prices.*", "prices.eu", true},
        {"prices.*", "prices", false},          /* * is exactly one segment */
        {"prices.*", "prices.eu.fx", false},
        {"prices.>", "prices", true},           /* > is zero or more */
        {"prices.>", "prices.eu", true},
        {"prices.>", "prices.eu.fx", true},
        {"prices.>", "pricesx.eu", false},
        {"*.eu", "prices.eu", true},
        {"*.eu", "prices.us", false},
        {"*.*.fx", "prices.eu.fx", true},
        {"*.*.fx", "prices.fx", false},
        {">", "anything.at.all", true},
        {">", "x", true},
        {"*", "x", true},
        {"*", "x.y", false},
        {"a.>.ignored", "a.b.c", true},
        {"a..b", "a..b", true},                 /* empty segments are literal */
        {"a.*.b", "a..b", true},
        {"a.b", "a.bc", false},
        {"ab", "a", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (dname_match(cases[i].pattern, cases[i].name) != cases[i].match)
            fail_msg("%s vs %s: expected %d", cases[i].pattern, cases[i].name, cases[i].match);
    }
}

static void test_is_pattern(void **state)
{
    (void)state;
    assert_true(dname_is_pattern("prices.>"));
    assert_true(dname_is_pattern("*.eu"));
    assert_true(dname_is_pattern(">"));
    assert_false(dname_is_pattern("prices.eu"));
    assert_false(dname_is_pattern("a*b.c>"));   /* only whole segments are wildcards */
    assert_false(dname_is_pattern(""));
}

static void test_specificity(void **state)
{
    (void)state;
    /* the exact name beats every pattern; more literal segments win; at
     * equal literals one without '>' wins, then fewer stars */
    assert_true(dname_specificity("orders.eu") > dname_specificity("orders.*"));
    assert_true(dname_specificity("orders.*") > dname_specificity("orders.>"));
    assert_true(dname_specificity("orders.>") > dname_specificity(">"));
    assert_true(dname_specificity("orders.*.fx") > dname_specificity("orders.eu.>"));
    assert_true(dname_specificity("orders.eu.>") > dname_specificity("orders.*"));
    assert_true(dname_specificity("orders.*.fx") > dname_specificity("orders.*.*"));
    assert_true(dname_specificity("a.*") > dname_specificity("*.*"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_is_pattern),
        cmocka_unit_test(test_specificity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
