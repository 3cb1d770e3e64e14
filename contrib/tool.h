/* What the contrib programs share: their options, read strictly (a usage
 * error exits 2, as their manual pages say). */
#ifndef STOMPD_CONTRIB_TOOL_H
#define STOMPD_CONTRIB_TOOL_H

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

/* v as a whole number in [min, max]. */
static inline long tool_number(const char *prog, const char *opt, const char *v, long min, long max)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (end == v || *end || errno || n < min || n > max) {
        fprintf(stderr, "%s: %s: '%s' is not a number from %ld to %ld\n", prog, opt, v, min, max);
        exit(2);
    }
    return n;
}

/* --heart-beat CX,CY: two numbers of ms (sscanf's "%d,%d" took
 * "1000,5abc", and overflowed on 99999999999: helper-97). */
static inline void tool_heart_beat(const char *prog, const char *v, int *tx, int *rx)
{
    char *end;
    errno = 0;
    long a = strtol(v, &end, 10);
    if (end != v && *end == ',' && !errno && a >= 0 && a <= INT_MAX) {
        const char *w = end + 1;
        long b = strtol(w, &end, 10);
        if (end != w && !*end && !errno && b >= 0 && b <= INT_MAX) {
            *tx = (int)a;
            *rx = (int)b;
            return;
        }
    }
    fprintf(stderr, "%s: --heart-beat wants CX,CY, two numbers of ms from 0 to %d, not '%s'\n", prog, INT_MAX, v);
    exit(2);
}

#endif
