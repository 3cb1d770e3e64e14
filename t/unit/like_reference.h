/* The LIKE matcher stompd had before LIKE patterns became automata, kept
 * verbatim as the reference the automata are checked against (unit test
 * and fuzzer). O(value x pattern): never use it on untrusted input. */
#ifndef STOMPD_LIKE_REFERENCE_H
#define STOMPD_LIKE_REFERENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { REF_BYTE, REF_ONE, REF_ANY };

struct ref_lop {
    unsigned char kind, c;
};

static size_t ref_unitlen(const unsigned char *s, size_t n)
{
    size_t want = 1;
    if (s[0] >= 0xC0 && s[0] <= 0xDF)
        want = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        want = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF7)
        want = 4;
    size_t i = 1;
    while (i < want && i < n && (s[i] & 0xC0) == 0x80)
        i++;
    return i;
}

static size_t ref_compile(const unsigned char *s, size_t n, const char *e, size_t elen, struct ref_lop *op)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (elen && n - i >= elen && !memcmp(s + i, e, elen)) {
            size_t take = elen;
            if (i + elen < n) {
                i += elen;
                take = ref_unitlen(s + i, n - i);
            }
            for (size_t j = 0; j < take; j++)
                op[k++] = (struct ref_lop){REF_BYTE, s[i + j]};
            i += take;
        } else if (s[i] == '%') {
            if (k == 0 || op[k - 1].kind != REF_ANY)
                op[k++] = (struct ref_lop){REF_ANY, 0};
            i++;
        } else if (s[i] == '_') {
            op[k++] = (struct ref_lop){REF_ONE, 0};
            i++;
        } else {
            op[k++] = (struct ref_lop){REF_BYTE, s[i]};
            i++;
        }
    }
    return k;
}

static bool ref_match(const struct ref_lop *op, size_t m, const unsigned char *s, size_t n)
{
    size_t p = 0, i = 0, star = SIZE_MAX, mark = 0;
    while (i < n) {
        if (p < m && op[p].kind == REF_BYTE && op[p].c == s[i]) {
            p++;
            i++;
        } else if (p < m && op[p].kind == REF_ONE) {
            i += ref_unitlen(s + i, n - i);
            p++;
        } else if (p < m && op[p].kind == REF_ANY) {
            star = p++;
            mark = i;
        } else if (star != SIZE_MAX) {
            p = star + 1;
            mark += ref_unitlen(s + mark, n - mark);
            i = mark;
        } else {
            return false;
        }
    }
    while (p < m && op[p].kind == REF_ANY)
        p++;
    return p == m;
}

static inline bool like_reference(const char *pat, size_t pn, const char *esc, size_t elen, const char *v,
                                  size_t vn)
{
    struct ref_lop *op = malloc((pn + 1) * sizeof *op);
    if (!op)
        abort();
    size_t m = ref_compile((const unsigned char *)pat, pn, esc, esc ? elen : 0, op);
    bool r = ref_match(op, m, (const unsigned char *)v, vn);
    free(op);
    return r;
}

#endif
