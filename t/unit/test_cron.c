/* Cron expressions: parsing (every malformed field named) and the next
 * matching minute, in UTC so the figures do not depend on the machine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "stompd/cron.h"

/* ms since the epoch of a UTC date and time */
static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = s};
    return (int64_t)timegm(&tm) * 1000;
}

static int64_t next(const char *expr, int64_t after)
{
    struct cron c;
    char err[256];
    if (cron_parse(expr, &c, err, sizeof err) != 0)
        fail_msg("%s: %s", expr, err);
    return cron_next(&c, after);
}

static void test_next(void **state)
{
    (void)state;
    /* 2024-05-17 is a Friday */
    assert_int_equal(next("*/15 * * * *", utc(2024, 5, 17, 12, 7, 30)), utc(2024, 5, 17, 12, 15, 0));
    /* strictly after: on the minute, the next one */
    assert_int_equal(next("*/15 * * * *", utc(2024, 5, 17, 12, 15, 0)), utc(2024, 5, 17, 12, 30, 0));
    assert_int_equal(next("* * * * *", utc(2024, 5, 17, 12, 15, 0) + 1), utc(2024, 5, 17, 12, 16, 0));
    /* weekdays at 9:00: Friday 10:00 -> Monday */
    assert_int_equal(next("0 9 * * 1-5", utc(2024, 5, 17, 10, 0, 0)), utc(2024, 5, 20, 9, 0, 0));
    /* Sunday as 0 and as 7 */
    assert_int_equal(next("30 8 * * 0", utc(2024, 5, 17, 10, 0, 0)), utc(2024, 5, 19, 8, 30, 0));
    assert_int_equal(next("30 8 * * 7", utc(2024, 5, 17, 10, 0, 0)), utc(2024, 5, 19, 8, 30, 0));
    assert_int_equal(next("0 0 1 1 *", utc(2024, 5, 17, 10, 0, 0)), utc(2025, 1, 1, 0, 0, 0));
    /* a leap day, years ahead */
    assert_int_equal(next("0 0 29 2 *", utc(2023, 3, 1, 0, 0, 0)), utc(2024, 2, 29, 0, 0, 0));
    /* both day fields restricted: the 13th or a Friday, whichever first */
    assert_int_equal(next("0 0 13 * 5", utc(2024, 5, 14, 0, 0, 0)), utc(2024, 5, 17, 0, 0, 0));
    assert_int_equal(next("0 0 13 * 5", utc(2024, 5, 18, 0, 0, 0)), utc(2024, 5, 24, 0, 0, 0));
    /* lists, ranges with steps, "a/s" */
    assert_int_equal(next("5,10-20/5 * * * *", utc(2024, 5, 17, 12, 11, 0)), utc(2024, 5, 17, 12, 15, 0));
    assert_int_equal(next("50/5 * * * *", utc(2024, 5, 17, 12, 51, 0)), utc(2024, 5, 17, 12, 55, 0));
    assert_int_equal(next("0 23 31 12 *", utc(2024, 12, 31, 23, 0, 0)), utc(2025, 12, 31, 23, 0, 0));
    /* never */
    assert_int_equal(next("0 0 31 2 *", utc(2024, 1, 1, 0, 0, 0)), -1);
    assert_int_equal(next("0 0 30 2 *", utc(2024, 1, 1, 0, 0, 0)), -1);
}

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *expr, *says;
    } bad[] = {
        {"", "minute field is missing"},
        {"* * * *", "day of week field is missing"},
        {"* * * * * *", "extra text"},
        {"60 * * * *", "minute field '60'"},
        {"* 24 * * *", "hour field"},
        {"* * 0 * *", "day of month field"},
        {"* * * 13 *", "month field"},
        {"* * * * 8", "day of week field"},
        {"*/0 * * * *", "minute field"},
        {"5-1 * * * *", "minute field"},
        {"a * * * *", "minute field"},
        {"1, * * * *", "minute field"},
        {",1 * * * *", "minute field"},
        {"1-* * * * *", "minute field"},
        {"99999999999 * * * *", "minute field"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cron c;
        char err[256] = "";
        if (cron_parse(bad[i].expr, &c, err, sizeof err) == 0)
            fail_msg("'%s' parsed", bad[i].expr);
        if (!strstr(err, bad[i].says))
            fail_msg("'%s': '%s' does not say '%s'", bad[i].expr, err, bad[i].says);
    }
    struct cron c;
    char err[256];
    assert_int_equal(cron_parse("  0   9\t* * 1-5 ", &c, err, sizeof err), 0);
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next),
        cmocka_unit_test(test_parse_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
