/* The pattern trie: it finds exactly the registrations dname_match
 * accepts (checked against it on random names and patterns), each once,
 * and removing every registration leaves only the root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stompd/dname.h"
#include "stompd/trie.h"

struct hits {
    int n[64];
    size_t calls;
};

static void count(void *item, void *arg)
{
    struct hits *h = arg;
    h->n[(intptr_t)item]++;
    h->calls++;
}

static void test_rules(void **state)
{
    (void)state;
    static const char *const patterns[] = {
        "prices", "prices.*", "prices.>", "*.eu", "*.*.fx", ">", "*", "a.>.ignored", "a..b", "a.*.b", "prices.eu",
    };
    static const char *const names[] = {
        "prices", "prices.eu", "prices.eu.fx", "pricesx.eu", "prices.us", "x", "x.y", "a.b.c", "a..b", "a.bc", "a",
    };
    struct trie t;
    trie_init(&t);
    size_t np = sizeof patterns / sizeof patterns[0];
    for (size_t i = 0; i < np; i++)
        trie_add(&t, patterns[i], (void *)(intptr_t)i);
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        struct hits h = {{0}, 0};
        size_t calls = trie_match(&t, names[k], count, &h);
        assert_int_equal(calls, h.calls);
        for (size_t i = 0; i < np; i++) {
            int want = dname_match(patterns[i], names[k]) ? 1 : 0;
            if (h.n[i] != want)
                fail_msg("pattern %s, name %s: %d calls, dname_match says %d", patterns[i], names[k], h.n[i], want);
        }
    }
    trie_free(&t);
}

static void test_specific_cases(void **state)
{
    (void)state;
    struct trie t;
    trie_init(&t);
    trie_add(&t, "prices.>", (void *)(intptr_t)0);
    trie_add(&t, "prices.*", (void *)(intptr_t)1);
    struct hits h = {{0}, 0};
    /* ">" matches zero segments too; "*" exactly one */
    trie_match(&t, "prices", count, &h);
    assert_int_equal(h.n[0], 1);
    assert_int_equal(h.n[1], 0);
    memset(&h, 0, sizeof h);
    trie_match(&t, "prices.eu.fx", count, &h);
    assert_int_equal(h.n[0], 1);
    assert_int_equal(h.n[1], 0);
    memset(&h, 0, sizeof h);
    trie_match(&t, "prices.eu", count, &h);
    assert_int_equal(h.n[0], 1);
    assert_int_equal(h.n[1], 1);
    trie_free(&t);
}

/* Registrations are counted: the same item twice under one pattern is
 * matched twice and must be removed twice. */
static void test_duplicates_and_remove(void **state)
{
    (void)state;
    struct trie t;
    trie_init(&t);
    trie_add(&t, "a.*", (void *)(intptr_t)3);
    trie_add(&t, "a.*", (void *)(intptr_t)3);
    trie_add(&t, "a.>", (void *)(intptr_t)4);
    struct hits h = {{0}, 0};
    trie_match(&t, "a.b", count, &h);
    assert_int_equal(h.n[3], 2);
    assert_int_equal(h.n[4], 1);
    assert_true(trie_remove(&t, "a.*", (void *)(intptr_t)3));
    assert_false(trie_remove(&t, "a.*", (void *)(intptr_t)4));
    assert_false(trie_remove(&t, "b.*", (void *)(intptr_t)3));
    memset(&h, 0, sizeof h);
    trie_match(&t, "a.b", count, &h);
    assert_int_equal(h.n[3], 1);
    assert_true(trie_remove(&t, "a.*", (void *)(intptr_t)3));
    assert_true(trie_remove(&t, "a.>.whatever", (void *)(intptr_t)4)); /* the same node as a.> */
    assert_int_equal(t.nitems, 0);
    assert_int_equal(t.nnodes, 1);
    memset(&h, 0, sizeof h);
    assert_int_equal(trie_match(&t, "a.b", count, &h), 0);
    trie_free(&t);
}

static uint32_t rnd_state = 12345;

static uint32_t rnd(uint32_t n)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 8) % n;
}

static void random_name(char *out, bool pattern)
{
    static const char *const segs[] = {"a", "b", "c", "", "ab"};
    int k = 1 + (int)rnd(4);
    out[0] = '\0';
    for (int i = 0; i < k; i++) {
        if (i)
            strcat(out, ".");
        uint32_t r = rnd(pattern ? 8 : 5);
        strcat(out, r < 5 ? segs[r] : r < 7 ? "*" : ">");
    }
}

/* Random patterns and names, checked against dname_match; then every
 * registration removed in random order, with the trie still right after
 * each removal, down to the bare root. */
static void test_random_against_dname(void **state)
{
    (void)state;
    enum { NP = 64, NN = 300 };
    char patterns[NP][32], names[NN][32];
    bool live[NP];
    struct trie t;
    trie_init(&t);
    for (int i = 0; i < NP; i++) {
        random_name(patterns[i], true);
        trie_add(&t, patterns[i], (void *)(intptr_t)i);
        live[i] = true;
    }
    for (int k = 0; k < NN; k++)
        random_name(names[k], false);
    for (int round = 0; round <= NP; round++) {
        for (int k = 0; k < NN; k++) {
            struct hits h = {{0}, 0};
            trie_match(&t, names[k], count, &h);
            for (int i = 0; i < NP; i++) {
                int want = live[i] && dname_match(patterns[i], names[k]) ? 1 : 0;
                if (h.n[i] != want)
                    fail_msg("round %d: pattern '%s' vs name '%s': %d, want %d", round, patterns[i], names[k],
                             h.n[i], want);
            }
        }
        if (round == NP)
            break;
        int i;
        do
            i = (int)rnd(NP);
        while (!live[i]);
        assert_true(trie_remove(&t, patterns[i], (void *)(intptr_t)i));
        live[i] = false;
    }
    assert_int_equal(t.nitems, 0);
    assert_int_equal(t.nnodes, 1);
    trie_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_specific_cases),
        cmocka_unit_test(test_duplicates_and_remove),
        cmocka_unit_test(test_random_against_dname),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
