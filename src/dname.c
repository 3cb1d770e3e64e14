/* Destination name patterns (see dname.h): segment by segment, linear in
 * the two names. */
#include "config.h"

#include <string.h>

#include "stompd/dname.h"

bool dname_next_segment(const char **p, const char **seg, size_t *len)
{
    const char *s = *p;
    if (!s)
        return false;
    const char *dot = strchr(s, '.');
    *seg = s;
    *len = dot ? (size_t)(dot - s) : strlen(s);
    *p = dot ? dot + 1 : NULL;
    return true;
}

static bool is(const char *seg, size_t len, char c)
{
    return len == 1 && seg[0] == c;
}

bool dname_is_pattern(const char *name)
{
    const char *p = name, *seg;
    size_t len;
    while (dname_next_segment(&p, &seg, &len))
        if (is(seg, len, '*') || is(seg, len, '>'))
            return true;
    return false;
}

bool dname_match(const char *pattern, const char *name)
{
    const char *pp = pattern, *np = name, *ps, *ns;
    size_t pl, nl;
    for (;;) {
        bool more_p = dname_next_segment(&pp, &ps, &pl);
        if (more_p && is(ps, pl, '>'))
            return true; /* the rest, zero or more segments */
        bool more_n = dname_next_segment(&np, &ns, &nl);
        if (!more_p || !more_n)
            return more_p == more_n;
        if (is(ps, pl, '*'))
            continue;
        if (pl != nl || memcmp(ps, ns, pl) != 0)
            return false;
    }
}

long dname_specificity(const char *pattern)
{
    long literal = 0, stars = 0, rest = 0;
    const char *p = pattern, *seg;
    size_t len;
    while (dname_next_segment(&p, &seg, &len)) {
        if (is(seg, len, '>')) {
            rest = 1;
            break;
        }
        if (is(seg, len, '*'))
            stars++;
        else
            literal++;
    }
    /* literal segments first, then no '>', then fewer '*' */
    return literal * 8192 + (rest ? 0 : 4096) + (2047 - (stars > 2047 ? 2047 : stars));
}
