/* Unit tests for the election decision: a table of member sets and who
 * must win (or why nobody may). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stompd/election.h"

#define M(seq, epoch, lsn, weight) {seq, #seq, epoch, lsn, weight, true}
#define NOT_READY(seq, epoch, lsn) {seq, #seq, epoch, lsn, 1, false}

struct row {
    const char *what;
    uint32_t replicas;
    size_t n;
    struct member m[5];
    enum election_result want;
    uint64_t winner_seq;
};

static const struct row rows[] = {
    {"longest log wins", 3, 3, {M(1, 2, 10, 1), M(2, 2, 12, 1), M(3, 2, 11, 1)}, ELECT_CANDIDATE, 2},
    {"newer epoch beats longer log", 3, 3, {M(1, 2, 50, 1), M(2, 3, 12, 1), M(3, 1, 99, 1)}, ELECT_CANDIDATE, 2},
    {"equal logs: weight", 3, 3, {M(1, 2, 10, 1), M(2, 2, 10, 5), M(3, 2, 10, 2)}, ELECT_CANDIDATE, 2},
    {"equal logs and weights: lowest sequence", 3, 3, {M(7, 2, 10, 1), M(4, 2, 10, 1), M(9, 2, 10, 1)},
     ELECT_CANDIDATE, 4},
    {"weight does not beat a longer log", 3, 2, {M(1, 2, 10, 100), M(2, 2, 11, 1)}, ELECT_CANDIDATE, 2},
    {"two of three is a quorum", 3, 2, {M(1, 1, 5, 1), M(2, 1, 4, 1)}, ELECT_CANDIDATE, 1},
    {"one of three is not", 3, 1, {M(1, 1, 5, 1)}, ELECT_NO_QUORUM, 0},
    {"nobody", 3, 0, {{0}}, ELECT_NO_QUORUM, 0},
    {"three of five is a quorum", 5, 3, {M(1, 1, 5, 1), M(2, 1, 6, 1), M(3, 1, 2, 1)}, ELECT_CANDIDATE, 2},
    {"two of five is not", 5, 2, {M(1, 1, 5, 1), M(2, 1, 6, 1)}, ELECT_NO_QUORUM, 0},
    {"a single-node cluster", 1, 1, {M(3, 0, 0, 1)}, ELECT_CANDIDATE, 3},
    {"wait for every member to publish", 3, 3, {M(1, 2, 10, 1), NOT_READY(2, 2, 12), M(3, 2, 11, 1)},
     ELECT_WAITING, 0},
    {"fresh cluster: all empty", 3, 3, {M(3, 0, 0, 1), M(1, 0, 0, 1), M(2, 0, 0, 1)}, ELECT_CANDIDATE, 1},
};

static void test_table(void **state)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct row *r = &rows[i];
        size_t w = 99;
        enum election_result got = election_decide(r->m, r->n, r->replicas, &w);
        if (got != r->want)
            fail_msg("%s: result %d, want %d", r->what, got, r->want);
        if (got == ELECT_CANDIDATE && r->m[w].seq != r->winner_seq)
            fail_msg("%s: winner seq %llu, want %llu", r->what, (unsigned long long)r->m[w].seq,
                     (unsigned long long)r->winner_seq);
    }
}

static void test_better_is_a_strict_order(void **state)
{
    struct member a = M(1, 2, 10, 1), b = M(2, 2, 10, 1);
    assert_true(election_better(&a, &b));
    assert_false(election_better(&b, &a));
    assert_false(election_better(&a, &a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_better_is_a_strict_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
