/* Cron expressions (see cron.h): parsed into one bit set per field; the
 * next match is found field by field, largest first (a month that does
 * not match skips to the next month's first day, and so on down to
 * minutes), in local time through mktime, bounded to eight years. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stompd/cron.h"

static const struct field {
    const char *name;
    int min, max;
} fields[5] = {
    {"minute", 0, 59}, {"hour", 0, 23}, {"day of month", 1, 31}, {"month", 1, 12}, {"day of week", 0, 7},
};

static int number(const char **p, int *out)
{
    if (!isdigit((unsigned char)**p))
        return -1;
    long v = 0;
    while (isdigit((unsigned char)**p)) {
        v = v * 10 + (**p - '0');
        if (v > 1000)
            return -1;
        (*p)++;
    }
    *out = (int)v;
    return 0;
}

/* One field (text from s to end) into a bit set; *any when it is "*". */
static int parse_field(const char *s, const char *end, const struct field *f, uint64_t *bits, bool *any)
{
    *bits = 0;
    *any = end - s == 1 && *s == '*';
    const char *p = s;
    while (p < end) {
        int a, b, step = 1;
        if (*p == '*') {
            a = f->min;
            b = f->max;
            p++;
        } else {
            if (number(&p, &a) != 0)
                return -1;
            b = a;
            if (p < end && *p == '-') {
                p++;
                if (number(&p, &b) != 0)
                    return -1;
            } else if (p < end && *p == '/') {
                b = f->max; /* "a/s": from a to the end */
            }
        }
        if (p < end && *p == '/') {
            p++;
            if (number(&p, &step) != 0 || step < 1)
                return -1;
        }
        if (a < f->min || b > f->max || a > b)
            return -1;
        for (int v = a; v <= b; v += step)
            *bits |= 1ull << v;
        if (p < end) {
            if (*p != ',' || p + 1 == end)
                return -1;
            p++;
        }
    }
    return *bits ? 0 : -1;
}

int cron_parse(const char *expr, struct cron *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *p = expr;
    uint64_t bits[5];
    bool any[5];
    for (int i = 0; i < 5; i++) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *s = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if (p == s) {
            snprintf(err, errlen, "a cron expression has 5 fields (minute hour day-of-month month day-of-week); "
                                  "the %s field is missing", fields[i].name);
            return -EINVAL;
        }
        if (parse_field(s, p, &fields[i], &bits[i], &any[i]) != 0) {
            snprintf(err, errlen, "cron %s field '%.*s' is not valid: use *, a number %d-%d, a range a-b, a step "
                                  "*/s or a-b/s, or a comma list", fields[i].name, (int)(p - s > 32 ? 32 : p - s), s,
                     fields[i].min, fields[i].max);
            return -EINVAL;
        }
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p) {
        snprintf(err, errlen, "a cron expression has 5 fields; extra text '%.32s'", p);
        return -EINVAL;
    }
    out->minutes = bits[0];
    out->hours = (uint32_t)bits[1];
    out->mdays = (uint32_t)bits[2];
    out->months = (uint32_t)bits[3];
    uint32_t w = (uint32_t)bits[4];
    if (w & (1u << 7))
        w = (w | 1u) & ~(1u << 7); /* 7 is Sunday too */
    out->wdays = w;
    out->mday_any = any[2];
    out->wday_any = any[4];
    return 0;
}

static bool day_matches(const struct cron *c, const struct tm *tm)
{
    bool md = c->mdays & (1u << tm->tm_mday), wd = c->wdays & (1u << tm->tm_wday);
    if (c->mday_any && c->wday_any)
        return true;
    if (c->mday_any)
        return wd;
    if (c->wday_any)
        return md;
    return md || wd; /* both restricted: either (cron(8)) */
}

static time_t normalize(struct tm *tm)
{
    tm->tm_isdst = -1;
    time_t t = mktime(tm);
    localtime_r(&t, tm);
    return t;
}

int64_t cron_next(const struct cron *c, int64_t after_ms)
{
    time_t t = (time_t)(after_ms >= 0 ? after_ms / 1000 : (after_ms - 999) / 1000);
    t = t - ((t % 60) + 60) % 60 + 60; /* the next whole minute: strictly after */
    struct tm tm;
    localtime_r(&t, &tm);
    int last_year = tm.tm_year + 8;
    for (int i = 0; i < 10000000 && tm.tm_year <= last_year; i++) {
        if (!(c->months & (1u << (tm.tm_mon + 1)))) {
            tm.tm_mon++;
            tm.tm_mday = 1;
            tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
            t = normalize(&tm);
            continue;
        }
        if (!day_matches(c, &tm)) {
            tm.tm_mday++;
            tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
            t = normalize(&tm);
            continue;
        }
        if (!(c->hours & (1u << tm.tm_hour))) {
            tm.tm_hour++;
            tm.tm_min = tm.tm_sec = 0;
            t = normalize(&tm);
            continue;
        }
        if (!(c->minutes & (1ull << tm.tm_min)) || (int64_t)t * 1000 <= after_ms) {
            tm.tm_min++;
            tm.tm_sec = 0;
            t = normalize(&tm);
            continue;
        }
        return (int64_t)t * 1000;
    }
    return -1;
}
