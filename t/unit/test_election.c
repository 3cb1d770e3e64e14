/* Unit tests for the election decision (a table of member sets and who
 * must win, or why nobody may) and for the step-down rule (a table of
 * what a master knows and whether it must let go), and for the table of
 * the node's role changes (role.c). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stompd/election.h"
#include "stompd/node.h"

#define M(s, e, l, w) {.seq = s, .id = #s, .epoch = e, .lsn = l, .weight = w, .ready = true}
#define NOT_READY(s, e, l) {.seq = s, .id = #s, .epoch = e, .lsn = l, .weight = 1, .ready = false}
/* failed to start as master lately */
#define UNFIT(s, e, l, w) {.seq = s, .id = #s, .epoch = e, .lsn = l, .weight = w, .unfit = true, .ready = true}
/* enough members refused its store.security_token */
#define REFUSED(s, e, l, w) {.seq = s, .id = #s, .epoch = e, .lsn = l, .weight = w, .refused = true, .ready = true}

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
    {"equal logs: one that failed to start as master goes last, whatever its weight", 3, 3,
     {UNFIT(1, 2, 10, 100), M(2, 2, 10, 1), M(3, 2, 10, 2)}, ELECT_CANDIDATE, 3},
    {"a longer log still wins though it failed to start", 3, 3, {UNFIT(1, 2, 11, 1), M(2, 2, 10, 1), M(3, 2, 10, 1)},
     ELECT_CANDIDATE, 1},
    {"all failed to start: weight decides", 3, 3, {UNFIT(1, 2, 10, 1), UNFIT(2, 2, 10, 3), UNFIT(3, 2, 10, 2)},
     ELECT_CANDIDATE, 2},
    {"a refused member does not stand, even with a newer epoch", 3, 3,
     {REFUSED(1, 3, 11, 100), M(2, 2, 10, 1), M(3, 2, 9, 1)}, ELECT_CANDIDATE, 2},
    {"refusals that leave no quorum standing are not heeded: the refused goes last at equal logs", 3, 2,
     {REFUSED(1, 2, 10, 5), M(2, 2, 10, 1)}, ELECT_CANDIDATE, 2},
    {"nor when the refused one has the longer log", 3, 2, {REFUSED(1, 2, 11, 1), M(2, 2, 10, 1)}, ELECT_CANDIDATE, 1},
    {"all refused: every member stands", 3, 3, {REFUSED(1, 2, 10, 1), REFUSED(2, 2, 12, 1), REFUSED(3, 2, 11, 1)},
     ELECT_CANDIDATE, 2},
    {"nor does the election wait for it", 3, 3,
     {{.seq = 1, .id = "1", .epoch = 2, .lsn = 10, .weight = 1, .refused = true, .ready = false}, M(2, 2, 10, 1),
      M(3, 2, 10, 1)},
     ELECT_CANDIDATE, 2},
    {"three of five stand without the refused two", 5, 5,
     {REFUSED(1, 4, 1, 1), REFUSED(2, 4, 2, 1), M(3, 2, 10, 1), M(4, 2, 12, 1), M(5, 2, 11, 1)}, ELECT_CANDIDATE, 4},
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

/* Refused by as many members as leave fewer than a quorum without them:
 * 2 of 3, 3 of 5; never by none (a single-node cluster). */
static void test_refused_threshold(void **state)
{
    assert_false(election_refused(1, 3));
    assert_true(election_refused(2, 3));
    assert_false(election_refused(2, 5));
    assert_true(election_refused(3, 5));
    assert_false(election_refused(0, 1));
    assert_true(election_refused(1, 2));
}

static void test_better_is_a_strict_order(void **state)
{
    struct member a = M(1, 2, 10, 1), b = M(2, 2, 10, 1);
    assert_true(election_better(&a, &b));
    assert_false(election_better(&b, &a));
    assert_false(election_better(&a, &a));
}

/* ------------------------------------------------------------ step down */

/* Each row states its one change after the defaults, in one initializer:
 * overriding a field is the point here. */
#pragma GCC diagnostic ignored "-Woverride-init"

/* A master that knows everything is fine: 2 s session, heard 0.1 s ago,
 * all three members, its own master znode. Each row changes one fact. */
#define OK_FACTS .loop_gap = 0.01, .since_heard = 0.1, .session_s = 2.0, .zk_connected = true, \
                 .view_complete = true, .live_members = 3, .quorum = 2, .master = MASTER_ZNODE_SELF, .replicas = 3

struct sd_row {
    const char *what;
    struct stepdown_facts f;
    enum stepdown want;
};

static const struct sd_row sd_rows[] = {
    {"all is well", {OK_FACTS}, STAY_MASTER},
    {"session expired", {OK_FACTS, .session_lost = true}, STEPDOWN_SESSION_LOST},
    {"session lost beats everything else", {OK_FACTS, .session_lost = true, .loop_gap = 9, .live_members = 1},
     STEPDOWN_SESSION_LOST},
    {"paused for half the session (1.1 s of 2 s)", {OK_FACTS, .loop_gap = 1.1}, STEPDOWN_PAUSED},
    {"a 0.9 s stall is not a pause", {OK_FACTS, .loop_gap = 0.9}, STAY_MASTER},
    {"short sessions: at least 1 s counts as paused", {OK_FACTS, .session_s = 1.0, .loop_gap = 0.8}, STAY_MASTER},
    {"short sessions: 1.2 s is paused", {OK_FACTS, .session_s = 1.0, .loop_gap = 1.2}, STEPDOWN_PAUSED},
    {"ZooKeeper silent for 2/3 of the session", {OK_FACTS, .since_heard = 1.4}, STEPDOWN_ZK_SILENT},
    {"ZooKeeper silent for just under 2/3", {OK_FACTS, .since_heard = 1.3}, STAY_MASTER},
    {"never heard yet: no verdict on silence", {OK_FACTS, .since_heard = -1}, STAY_MASTER},
    {"silent during the post-rebuild grace, still connected", {OK_FACTS, .since_heard = 1.5, .in_grace = true},
     STAY_MASTER},
    {"silent during the grace but disconnected", {OK_FACTS, .since_heard = 1.5, .in_grace = true,
                                                  .zk_connected = false}, STEPDOWN_ZK_SILENT},
    {"disconnected but heard recently", {OK_FACTS, .zk_connected = false}, STAY_MASTER},
    {"two of three members left", {OK_FACTS, .live_members = 2}, STAY_MASTER},
    {"one of three members left", {OK_FACTS, .live_members = 1}, STEPDOWN_NO_QUORUM},
    {"another node holds the master znode", {OK_FACTS, .master = MASTER_ZNODE_OTHER}, STEPDOWN_OTHER_MASTER},
    {"the master znode is gone", {OK_FACTS, .master = MASTER_ZNODE_NONE}, STEPDOWN_MASTER_GONE},
    {"no master znode yet while its own claim completes", {OK_FACTS, .master = MASTER_ZNODE_NONE,
                                                           .claim_pending = true}, STAY_MASTER},
    {"view incomplete: no verdict on members or master", {OK_FACTS, .view_complete = false, .live_members = 0,
                                                          .master = MASTER_ZNODE_UNKNOWN}, STAY_MASTER},
    {"view incomplete: silence still counts", {OK_FACTS, .view_complete = false, .since_heard = 1.9},
     STEPDOWN_ZK_SILENT},
    {"quorum lost beats another master", {OK_FACTS, .live_members = 1, .master = MASTER_ZNODE_OTHER},
     STEPDOWN_NO_QUORUM},
    {"one of three members refused its token", {OK_FACTS, .refusers = 1}, STAY_MASTER},
    {"two of three members refused its token", {OK_FACTS, .refusers = 2}, STEPDOWN_REFUSED},
    {"view incomplete: no verdict on refusals", {OK_FACTS, .view_complete = false, .refusers = 2}, STAY_MASTER},
};

static void test_stepdown_table(void **state)
{
    for (size_t i = 0; i < sizeof sd_rows / sizeof sd_rows[0]; i++) {
        const struct sd_row *r = &sd_rows[i];
        enum stepdown got = stepdown_decide(&r->f);
        if (got != r->want)
            fail_msg("%s: %d, want %d", r->what, got, r->want);
        char why[200];
        stepdown_explain(got, &r->f, why, sizeof why);
        assert_true(why[0] != '\0');
    }
}

/* The node's role changes (role.c), the whole table: a row per role, in
 * enum order, 1 where the node may go from that role to the column's. */
static void test_role_transitions(void **state)
{
    static const char *const table[NODE__ROLES] = {
        /*                    st sa el ma sl sd so */
        [NODE_STARTING] =      "0111101",
        [NODE_STANDALONE] =    "0000001",
        [NODE_ELECTING] =      "0001101",
        [NODE_MASTER] =        "0000011",
        [NODE_SLAVE] =         "0010101",
        [NODE_STEPPING_DOWN] = "0010001",
        [NODE_STOPPED] =       "0000000",
    };
    for (int f = 0; f < NODE__ROLES; f++)
        for (int t = 0; t < NODE__ROLES; t++)
            if (node_transition_allowed((enum node_role)f, (enum node_role)t) != (table[f][t] == '1'))
                fail_msg("%s -> %s", node_role_name((enum node_role)f), node_role_name((enum node_role)t));
    assert_false(node_transition_allowed(NODE__ROLES, NODE_STOPPED));
    assert_false(node_transition_allowed(NODE_STARTING, NODE__ROLES));
    assert_string_equal(node_role_name(NODE_STEPPING_DOWN), "stepping-down");
    assert_string_equal(node_role_name(NODE__ROLES), "?");
    /* what the table is for: a master becomes a slave only by stepping
     * down and electing (its broker goes before it follows anyone), and
     * only an election (or the configuration, at start) makes a master */
    bool seen[NODE__ROLES] = {false};
    enum node_role todo[NODE__ROLES];
    int n = 0;
    todo[n++] = NODE_MASTER;
    seen[NODE_MASTER] = true;
    while (n > 0) {
        enum node_role r = todo[--n];
        for (int t = 0; t < NODE__ROLES; t++)
            if (t != NODE_STEPPING_DOWN && !seen[t] && node_transition_allowed(r, (enum node_role)t)) {
                seen[t] = true;
                todo[n++] = (enum node_role)t;
            }
    }
    assert_false(seen[NODE_SLAVE]);
    assert_false(seen[NODE_ELECTING]);
    for (int f = 0; f < NODE__ROLES; f++)
        if (f != NODE_ELECTING && f != NODE_STARTING && f != NODE_MASTER)
            assert_false(node_transition_allowed((enum node_role)f, NODE_MASTER));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_refused_threshold),
        cmocka_unit_test(test_better_is_a_strict_order),
        cmocka_unit_test(test_stepdown_table),
        cmocka_unit_test(test_role_transitions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
