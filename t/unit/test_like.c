/* Unit tests for LIKE automata: the same answers as the backtracking
 * matcher they replaced (kept here as the reference), linear work on the
 * patterns that made that matcher quadratic, the build limit, and the
 * bit-parallel matcher kept past the cap. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stompd/like.h"
#include "like_reference.h"

static struct like *compile(const char *pat, const char *esc)
{
    struct like *l = NULL;
    uint64_t work = 0;
    assert_int_equal(like_compile(pat, strlen(pat), esc, esc ? strlen(esc) : 0, 0, &work, &l), 0);
    assert_non_null(l);
    return l;
}

static bool match(const char *pat, const char *esc, const char *v)
{
    struct like *l = compile(pat, esc);
    bool m = like_match(l, v, strlen(v));
    like_free(l);
    return m;
}

static void test_basics(void **state)
{
    assert_true(match("hello", NULL, "hello"));
    assert_false(match("hello", NULL, "hell"));
    assert_false(match("hello", NULL, "helloo"));
    assert_true(match("h%", NULL, "hello"));
    assert_true(match("%o", NULL, "hello"));
    assert_true(match("%ell%", NULL, "hello"));
    assert_true(match("h_llo", NULL, "hello"));
    assert_true(match("h_llo", NULL, "h\xc3\xa9llo"));    /* one character, two bytes */
    assert_false(match("h__llo", NULL, "h\xc3\xa9llo"));
    assert_true(match("%", NULL, ""));
    assert_true(match("", NULL, ""));
    assert_false(match("", NULL, "x"));
    assert_false(match("_", NULL, ""));
    assert_true(match("%\xe2\x82\xac", NULL, "price \xe2\x82\xac"));
    assert_true(match("50\\%", "\\", "50%"));
    assert_false(match("50\\%", "\\", "500"));
    assert_true(match("a!_b", "!", "a_b"));
    assert_false(match("a!_b", "!", "axb"));
    assert_true(match("x\\", "\\", "x\\"));                /* a trailing escape is itself */
    assert_true(match("a\xc3\xa9%", "\xc3\xa9", "a%"));     /* a two-byte escape */
    assert_true(match("a\\\xc3\xa9", "\\", "a\xc3\xa9"));   /* escaping a two-byte character */
    assert_true(match("%a%b%a", NULL, "xaxbxbxa"));
    assert_false(match("%a%b%a", NULL, "xaxbxbx"));
}

static uint64_t rng(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t len = s[i] < 0x80 ? 1 : s[i] >= 0xC2 && s[i] <= 0xDF ? 2 : s[i] >= 0xE0 && s[i] <= 0xEF ? 3
                   : s[i] >= 0xF0 && s[i] <= 0xF4 ? 4 : 0;
        if (!len || i + len > n)
            return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        i += len;
    }
    return true;
}

/* Pieces patterns and values are built from: characters of 1 to 4 bytes,
 * the wildcards and an escape, and bytes that are not UTF-8 on their own. */
static const char *const pieces[] = {
    "a", "b", "%", "_", "!", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9d\x84\x9e", "\xc3", "\x80", "\xe2\x82",
    "\xf0", "\xff",
};

static size_t build(uint64_t *seed, char *out, int maxp, bool values)
{
    size_t n = 0;
    int k = (int)(rng(seed) % (uint64_t)(maxp + 1));
    for (int i = 0; i < k; i++) {
        const char *p = pieces[rng(seed) % (sizeof pieces / sizeof pieces[0])];
        if (values && (p[0] == '%' || p[0] == '_') && rng(seed) % 2)
            p = "a";
        size_t pl = strlen(p);
        memcpy(out + n, p, pl);
        n += pl;
    }
    out[n] = '\0';
    return n;
}

/* The automaton and the old matcher agree whenever the pattern or the
 * value is valid UTF-8; with both malformed they may not (the old matcher
 * gave up on a value after one failed attempt at its end; prune() says
 * more), and the automaton must still answer without harm. */
static void test_same_as_reference(void **state)
{
    uint64_t seed = 0x2545F4914F6CDD1Dull;
    char pat[64], val[64];
    long compared = 0, both_bad = 0, differ = 0;
    for (int round = 0; round < 150000; round++) {
        size_t pn = build(&seed, pat, 7, false);
        size_t vn = build(&seed, val, 8, true);
        const char *esc = round % 4 == 0 ? "!" : NULL;
        struct like *l = NULL;
        uint64_t work = 0;
        assert_int_equal(like_compile(pat, pn, esc, esc ? 1 : 0, 0, &work, &l), 0);
        bool got = like_match(l, val, vn);
        bool want = like_reference(pat, pn, esc, esc ? 1 : 0, val, vn);
        /* the bit-parallel matcher is the automaton's steps one at a time */
        struct like *bp = NULL;
        assert_int_equal(like_compile(pat, pn, esc, esc ? 1 : 0, LIKE_BIT_PARALLEL, &work, &bp), 0);
        assert_int_equal(like_states(bp), 0);
        assert_int_equal(like_match(bp, val, vn), got);
        like_free(bp);
        if (valid_utf8((const unsigned char *)pat, pn) || valid_utf8((const unsigned char *)val, vn)) {
            if (got != want) {
                print_error("pattern '%s' value '%s' escape %s: automaton %d, reference %d\n", pat, val,
                            esc ? esc : "none", got, want);
                differ++;
            }
            compared++;
        } else {
            both_bad++;
        }
        like_free(l);
    }
    print_message("%ld compared, %ld with both sides malformed\n", compared, both_bad);
    assert_int_equal(differ, 0);
}

/* Work is one step per value byte at most, however the pattern is made. */
static void test_linear_on_adversarial_patterns(void **state)
{
    const size_t vn = 10 * 1024;
    char *v = malloc(vn + 1);
    assert_non_null(v);
    memset(v, 'a', vn);
    v[vn] = '\0';
    char *p = malloc(4096);
    assert_non_null(p);
    struct {
        const char *prefix, *unit, *suffix;
        int n;
        bool want;
    } cases[] = {
        {"%", "a", "b", 1000, false},      /* the quadratic case of the old matcher */
        {"%", "a", "", 1000, true},
        {"", "%a", "%b", 200, false},
        {"", "%a", "", 300, true},
        {"", "%_", "%b%", 200, false},
        {"%", "a_", "b", 100, false},
        {"", "_", "%", 2000, true},
        {"%", "ab", "", 500, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        strcpy(p, cases[i].prefix);
        for (int k = 0; k < cases[i].n; k++)
            strcat(p, cases[i].unit);
        strcat(p, cases[i].suffix);
        struct like *l = compile(p, NULL);
        int64_t left = (int64_t)vn;
        assert_int_equal(like_run(l, v, vn, &left), cases[i].want);
        assert_true(left >= 0);
        assert_int_equal(like_reference(p, strlen(p), NULL, 0, v, vn), cases[i].want);
        like_free(l);
    }
    free(p);
    free(v);
}

/* The budget: one step per byte read, in blocks of 16, -1 when short;
 * once the answer is certain the rest of the value is not read. What a
 * match costs does not depend on the budget. */
static void test_budget(void **state)
{
    char v[1001];
    memset(v, 'd', 1000);
    memcpy(v, "abc", 3);
    v[1000] = '\0';
    struct like *l = compile("abc%", NULL);
    int64_t left = 2000;
    assert_int_equal(like_run(l, v, 1000, &left), 1);
    assert_int_equal(left, 2000 - 16);   /* decided after "abc", in the first block */
    left = 2;
    assert_int_equal(like_run(l, v, 1000, &left), -1);
    assert_true(left <= 0);
    left = 15;
    assert_int_equal(like_run(l, v, 1000, &left), -1);
    left = 16;
    assert_int_equal(like_run(l, v, 1000, &left), 1);
    assert_int_equal(left, 0);
    v[0] = 'x';
    left = 2000;
    assert_int_equal(like_run(l, v, 1000, &left), 0);
    assert_int_equal(left, 2000 - 16);   /* no match possible after 'x' */
    like_free(l);
    l = compile("%z", NULL);
    v[999] = 'z';
    left = 500;
    assert_int_equal(like_run(l, v, 1000, &left), -1);
    left = 1000;
    assert_int_equal(like_run(l, v, 1000, &left), 1);
    assert_int_equal(left, 0);           /* every byte read, no more */
    like_free(l);
}

/* A limit refuses what would cost more to build, and allocates nothing;
 * without one, past the internal cap, the bit-parallel matcher answers
 * the same. */
static void test_build_limit_and_fallback(void **state)
{
    char p[64] = "%a";
    for (int i = 0; i < 18; i++)
        strcat(p, "_");                  /* about 2^18 states */
    strcat(p, "b");
    struct like *l = NULL;
    uint64_t work = 0;
    assert_int_equal(like_compile(p, strlen(p), NULL, 0, 100000, &work, &l), -ERANGE);
    assert_null(l);
    assert_true(work <= 100000);
    work = 0;
    assert_int_equal(like_compile(p, strlen(p), NULL, 0, 0, &work, &l), 0);
    assert_int_equal(like_states(l), 0);  /* kept bit-parallel */
    uint64_t seed = 77;
    char v[40];
    for (int round = 0; round < 20000; round++) {
        size_t n = 0, k = rng(&seed) % 30;
        for (size_t i = 0; i < k; i++)
            v[n++] = "ab"[rng(&seed) % 2];
        v[n] = '\0';
        assert_int_equal(like_match(l, v, n), like_reference(p, strlen(p), NULL, 0, v, n));
    }
    int64_t left = 3;
    assert_int_equal(like_run(l, "aaaaaaaaaaaaaaaaaaaaab", 22, &left), -1);
    like_free(l);
    /* ordinary patterns stay small */
    work = 0;
    assert_int_equal(like_compile("%foo%", 5, NULL, 0, 100000, &work, &l), 0);
    assert_true(like_states(l) > 0 && like_states(l) < 16);
    assert_true(work < 1000);
    like_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics),
        cmocka_unit_test(test_same_as_reference),
        cmocka_unit_test(test_linear_on_adversarial_patterns),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_build_limit_and_fallback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
