/* Cron expressions as ActiveMQ's AMQ_SCHEDULED_CRON takes them: five
 * fields, minute (0-59), hour (0-23), day of month (1-31), month (1-12)
 * and day of week (0-7, 0 and 7 are Sunday), each "*", a number, a range
 * "a-b", a step "*\/s", "a-b/s" or "a/s" (from a to the end), or a comma
 * list of those. As in cron(8), when both day fields are restricted a day
 * matching either one matches. Times are the broker's local time, as
 * ActiveMQ's scheduler reads them. Pure functions. */
#ifndef STOMPD_CRON_H
#define STOMPD_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cron {
    uint64_t minutes;   /* bit m: minute m */
    uint32_t hours;     /* bit h */
    uint32_t mdays;     /* bit d, 1-31 */
    uint32_t months;    /* bit m, 1-12 */
    uint32_t wdays;     /* bit d, 0-6 (Sunday 0) */
    bool mday_any, wday_any;
};

/* 0, or -EINVAL with a message in err naming the field. */
int cron_parse(const char *expr, struct cron *out, char *err, size_t errlen) __attribute__((warn_unused_result));
/* The first whole minute strictly after after_ms (ms since the epoch)
 * that the expression matches, in ms; -1 when none does within the next
 * eight years (e.g. "0 0 31 2 *"). */
int64_t cron_next(const struct cron *c, int64_t after_ms);

#endif
