/* Unit tests of commit.c alone (the ops that wait for the journal): the
 * order in which receipts go out and messages are released, per
 * connection and across connections, with the connections, destinations
 * and the duplicate window stubbed (stub_conn.c records what commit.c
 * asks of them). Each test is a script of steps, each step followed by
 * the transcript it must produce. */
#include "config.h"

#include <ev.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stompd/commit.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/msg.h"
#include "stompd/server.h"
#include "stub_conn.h"
#include "transcript.h"

static struct conn conns[3];

static struct conn *conn(int i)
{
    return &conns[i];
}

static int setup(void **state)
{
    memset(conns, 0, sizeof conns);
    for (int i = 0; i < 3; i++) {
        conns[i].id = (uint64_t)i + 1;
        conns[i].state = CONN_OPEN;
        TAILQ_INIT(&conns[i].ops);
        TAILQ_INIT(&conns[i].unsent);
    }
    config.pending_limit = 4;
    srv.loop = ev_default_loop(0);
    commit_reset(0);
    transcript[0] = '\0';
    stub_reserved = 0;
    return 0;
}

static int teardown(void **state)
{
    for (int i = 0; i < 3; i++) {
        op_orphan_conn(&conns[i]);
        commit_hold_forget(&conns[i]);
    }
    commit_free_all();
    return 0;
}

static void expect(const char *want)
{
    expect_transcript(want);
}

static struct msg *msg(const char *id, int dest)
{
    return msg_new(stub_dest(dest)->name, id, 1, 0, true, 4, 0, NULL, 0, "x", 1);
}

/* A persistent SEND: waits for lsn, then releases its message. */
static void send_commit(int c, const char *receipt, uint64_t lsn, const char *id, int dest)
{
    struct op *op = op_commit(conn(c), receipt, lsn);
    struct msg *m = msg(id, dest);
    op_add_reserved_msg(op, m);
    msg_unref(m);
    op_submit(op);
}

static void test_receipts_in_frame_order(void **state)
{
    op_submit(op_receipt(conn(0), "r1"));
    expect("c1 RECEIPT r1;");
    send_commit(0, "r2", 5, "m2", 0);
    expect("");
    /* a frame with nothing to wait for still answers after r2 */
    op_submit(op_receipt(conn(0), "r3"));
    send_commit(0, "r4", 6, "m4", 0);
    expect("");
    commit_advance(4);
    expect("");
    commit_advance(5);
    expect("deliver m2 to /queue/q0;c1 RECEIPT r2;c1 RECEIPT r3;");
    commit_advance(6);
    expect("deliver m4 to /queue/q0;c1 RECEIPT r4;");
    assert_int_equal(stub_reserved, 0);
}

static void test_messages_released_in_lsn_order_across_connections(void **state)
{
    send_commit(0, NULL, 1, "a1", 0);
    send_commit(1, "b", 2, "b2", 1);
    send_commit(0, "a", 3, "a3", 0);
    assert_true(stub_reserved > 0);
    commit_advance(3);
    expect("deliver a1 to /queue/q0;deliver b2 to /queue/q1;c2 RECEIPT b;deliver a3 to /queue/q0;c1 RECEIPT a;");
    assert_int_equal(stub_reserved, 0);
}

static void test_already_committed_goes_at_once(void **state)
{
    commit_advance(10);
    send_commit(0, "r", 7, "m", 0);
    expect("deliver m to /queue/q0;c1 RECEIPT r;");
}

static void test_closed_connection_still_releases(void **state)
{
    send_commit(0, "lost", 1, "m1", 0);
    send_commit(1, "kept", 2, "m2", 0);
    op_orphan_conn(conn(0));
    conn(0)->state = CONN_DEAD;
    commit_advance(2);
    /* what is durable must be delivered, answered or not */
    expect("deliver m1 to /queue/q0;deliver m2 to /queue/q0;c2 RECEIPT kept;");
}

static void test_store_failure_answers_error(void **state)
{
    send_commit(0, "ok", 1, "m1", 0);
    send_commit(0, "bad", 2, "m2", 0);
    commit_advance(1);
    expect("deliver m1 to /queue/q0;c1 RECEIPT ok;");
    commit_fail_from(2, "disk full");
    /* a message that was not stored is not delivered */
    expect("c1 ERROR message not stored (bad);");
}

/* A store failure drops the output held for a failed entry, or for one
 * not appended yet, with all that follows it (else the failed sends'
 * ERROR waits behind it until the broker stops); output held for an
 * entry stored before the failure still waits for it. */
static void test_store_failure_drops_output_held_for_it(void **state)
{
    struct conn *c = conn(0), *d = conn(1);
    char bytes[300];
    memset(bytes, 'o', sizeof bytes);
    buf_append(&c->st.out, bytes, 300);
    commit_hold(c, 100, HOLD_COMMIT); /* a client-ack delivery of entry 1 */
    commit_hold_assign(1);
    commit_hold(c, 200, HOLD_SHIPPED); /* an auto-ack one: its dequeue is 2 */
    commit_hold_assign(2);
    send_commit(0, "bad", 3, "m3", 0);
    buf_append(&d->st.out, bytes, 50);
    commit_hold(d, 20, HOLD_SHIPPED); /* coalesced, no entry yet */
    commit_holds_fail_from(2, "disk full");
    commit_fail_from(2, "disk full");
    expect("c1 output lost (disk full);c2 output lost (disk full);c1 ERROR message not stored (bad);");
    assert_int_equal(buf_used(&c->st.out), 200);
    assert_int_equal(commit_output_allowed(c), 100);
    assert_int_equal(buf_used(&d->st.out), 20);
    assert_true(commit_output_allowed(d) == SIZE_MAX);
    commit_advance(1);
    assert_true(commit_output_allowed(c) == SIZE_MAX);
    buf_free(&c->st.out);
    buf_free(&d->st.out);
}

/* Releasing every hold (a stop, or a master's failed local log) takes
 * the ones whose entry is not appended yet too. */
static void test_release_all_takes_unassigned_holds(void **state)
{
    struct conn *c = conn(0), *d = conn(1);
    c->st.out_done = d->st.out_done = 10;
    commit_hold(c, 20, HOLD_SHIPPED);
    commit_hold_assign(3);
    commit_hold(d, 30, HOLD_COMMIT); /* coalesced, no entry yet */
    assert_int_equal(commit_output_allowed(c), 10);
    assert_int_equal(commit_output_allowed(d), 20);
    commit_hold_release_upto(UINT64_MAX);
    assert_true(commit_output_allowed(c) == SIZE_MAX);
    assert_true(commit_output_allowed(d) == SIZE_MAX);
    assert_false(commit_holds_any());
    commit_hold_assign(4); /* nothing waits for it */
    assert_true(commit_output_allowed(d) == SIZE_MAX);
}

/* A master whose local log failed at 4 and whose slaves were handed
 * entries up to 3: what was held for 2 and 3 goes (a slave may have
 * them), what was held for 5, or for an entry not appended yet, is
 * dropped with what follows it. */
static void test_release_upto_then_fail_from(void **state)
{
    struct conn *c = conn(0), *d = conn(1);
    char bytes[300];
    memset(bytes, 'o', sizeof bytes);
    buf_append(&c->st.out, bytes, 300);
    buf_append(&d->st.out, bytes, 50);
    commit_hold(c, 100, HOLD_SHIPPED);
    commit_hold_assign(2);
    commit_hold(c, 150, HOLD_COMMIT);
    commit_hold_assign(3);
    commit_hold(c, 200, HOLD_SHIPPED);
    commit_hold_assign(5);
    commit_hold(d, 20, HOLD_SHIPPED); /* coalesced, no entry yet */
    assert_int_equal(commit_output_allowed(c), 100);
    commit_hold_release_upto(3);
    assert_int_equal(commit_output_allowed(c), 200);
    assert_int_equal(commit_output_allowed(d), 20); /* no slave has what is not appended */
    commit_holds_fail_from(4, "disk full");
    expect("c1 output lost (disk full);c2 output lost (disk full);");
    assert_int_equal(buf_used(&c->st.out), 200);
    assert_int_equal(buf_used(&d->st.out), 20);
    assert_true(commit_output_allowed(c) == SIZE_MAX);
    assert_true(commit_output_allowed(d) == SIZE_MAX);
    assert_false(commit_holds_any());
    buf_free(&c->st.out);
    buf_free(&d->st.out);
}

static void test_quorum_timeout_errors_and_still_releases(void **state)
{
    send_commit(0, "slow", 1, "m1", 0);
    commit_expire(ev_now(srv.loop) + 1, "not replicated in time");
    expect("c1 ERROR not replicated in time (slow);");
    /* the connection closes with the ERROR; the op keeps its message */
    op_orphan_conn(conn(0));
    commit_advance(1);
    expect("deliver m1 to /queue/q0;");
}

static void test_room_wait_pauses_and_resumes(void **state)
{
    struct dest *d = stub_dest(2);
    op_submit(op_room(conn(0), "full", d));
    expect("pause 4;");
    op_submit(op_receipt(conn(0), "after"));
    expect("");
    op_room_free(d);
    expect("c1 RECEIPT full;c1 RECEIPT after;resume 4;");
}

static void test_pending_limit_pauses_reading(void **state)
{
    for (uint64_t i = 1; i <= 4; i++)
        send_commit(0, NULL, i, "m", 0);
    expect("pause 2;");
    /* reading resumes once fewer than half the limit wait */
    commit_advance(2);
    expect("deliver m to /queue/q0;deliver m to /queue/q0;resume 2;");
    commit_advance(4);
    expect("deliver m to /queue/q0;deliver m to /queue/q0;");
}

static void test_disconnect_receipt_then_close(void **state)
{
    send_commit(0, "s", 1, "m", 0);
    op_submit(op_disconnect(conn(0), "bye", 0));
    expect("");
    commit_advance(1);
    expect("deliver m to /queue/q0;c1 RECEIPT s;c1 RECEIPT bye;c1 close;");
}

static void test_disconnect_receipt_waits_for_its_acks(void **state)
{
    /* the entry carrying the acks before it (lsn 3): the receipt and the
     * close wait for its commit, not just for the ops before it */
    op_submit(op_disconnect(conn(0), "bye", 3));
    expect("");
    commit_advance(2);
    expect("");
    commit_advance(3);
    expect("c1 RECEIPT bye;c1 close;");
}

static void test_transaction_batch(void **state)
{
    /* a COMMIT that journaled nothing (its messages went as they were
     * replayed): answered at once */
    struct op *b = op_batch(conn(0), "empty");
    op_batch_close(b, 0);
    op_submit(b);
    expect("c1 RECEIPT empty;");
    /* one that did: dups remembered at its lsn, messages at its commit */
    b = op_batch(conn(0), "tx");
    struct msg *m = msg("t2", 1);
    op_add_reserved_msg(b, m);
    msg_unref(m);
    op_add_dup(b, "p-1");
    op_batch_close(b, 8);
    op_submit(b);
    expect("dup p-1 at 8;");
    commit_advance(8);
    expect("deliver t2 to /queue/q1;c1 RECEIPT tx;");
}

static void notified(void *arg, bool ok)
{
    say("notified %s %s", (const char *)arg, ok ? "ok" : "failed");
}

static void test_connectionless_ops_notify(void **state)
{
    struct op *op = op_commit(NULL, NULL, 3);
    struct msg *m = msg("console", 0);
    op_add_reserved_msg(op, m);
    msg_unref(m);
    op_notify(op, notified, "console-send");
    op_submit(op);
    expect("");
    commit_advance(3);
    expect("deliver console to /queue/q0;notified console-send ok;");
    /* one whose asker went away: released, nobody told */
    op = op_commit(NULL, NULL, 4);
    m = msg("gone", 0);
    op_add_msg(op, m);
    msg_unref(m);
    op_notify(op, notified, "x");
    op_submit(op);
    op_cancel_notify(op);
    commit_advance(4);
    expect("deliver gone to /queue/q0;");
}

/* Held output: the bytes before the first mark not yet released go (a
 * hold starts where its delivery does); holds of one round share their
 * entry's mark; a mark waits for all its kinds, and a committed entry
 * counts as shipped too. */
static void test_held_output_goes_up_to_the_first_mark(void **state)
{
    struct conn *c = conn(0);
    assert_true(commit_output_allowed(c) == SIZE_MAX);
    c->st.out_done = 100;
    commit_hold(c, 150, HOLD_SHIPPED); /* an auto-ack delivery at 150 */
    commit_hold(c, 180, HOLD_COMMIT);  /* a client-ack one, same round */
    assert_int_equal(commit_output_allowed(c), 50);
    assert_int_equal(commit_hold_assign(5), HOLD_SHIPPED | HOLD_COMMIT);
    assert_true(commit_wanted() >= 5);
    commit_hold(c, 200, HOLD_SHIPPED); /* the next round */
    assert_int_equal(commit_hold_assign(6), HOLD_SHIPPED);
    commit_shipped(5); /* shipped, not committed: the first mark waits */
    assert_int_equal(commit_output_allowed(c), 50);
    commit_advance(5);
    assert_int_equal(commit_output_allowed(c), 100);
    c->st.out_done = 200; /* written up to the next mark */
    assert_int_equal(commit_output_allowed(c), 0);
    commit_advance(6); /* committed is shipped too */
    assert_true(commit_output_allowed(c) == SIZE_MAX);
    commit_hold(c, 250, HOLD_SHIPPED);
    commit_hold_assign(7);
    commit_shipped(7);
    assert_true(commit_output_allowed(c) == SIZE_MAX);
    /* an entry dropped (0) holds nothing */
    commit_hold(c, 300, HOLD_COMMIT);
    assert_int_equal(commit_output_allowed(c), 100);
    commit_hold_assign(0);
    assert_true(commit_output_allowed(c) == SIZE_MAX);
    commit_hold(c, 300, HOLD_COMMIT);
    commit_hold_forget(c);
    assert_true(commit_output_allowed(c) == SIZE_MAX);
    commit_hold_assign(8); /* the forgotten connection is not touched */
    assert_true(commit_output_allowed(c) == SIZE_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_receipts_in_frame_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_output_goes_up_to_the_first_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_messages_released_in_lsn_order_across_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_already_committed_goes_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_connection_still_releases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_failure_answers_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_failure_drops_output_held_for_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_all_takes_unassigned_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_upto_then_fail_from, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quorum_timeout_errors_and_still_releases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room_wait_pauses_and_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_limit_pauses_reading, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_receipt_then_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_receipt_waits_for_its_acks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transaction_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connectionless_ops_notify, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
