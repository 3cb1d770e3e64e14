/* Unit tests of proto.c alone: the STOMP command rules (which frames a
 * connection may send before and after CONNECT, what is not a client
 * command), how a handler's result becomes a RECEIPT, a wait for the
 * journal or an ERROR with the receipt-id, and one connection per
 * client-id. Frames are parsed from bytes by the real parser; handlers,
 * connections and ops are recording stubs in this file. */
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

#include "stompd/commit.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/frame.h"
#include "stompd/persist.h"
#include "stompd/proto.h"
#include "transcript.h"

struct config config;
/* what the next handler does */
static int handler_rc;
static uint64_t handler_lsn;
static uint64_t committed;

/* ------------------------------------------------------------ stubs */

#define HANDLER(name)                                                                                        \
    int handle_##name(struct conn *c, struct frame *f, uint64_t *lsn)                                          \
    {                                                                                                      \
        say("handle %s", #name);                                                                           \
        *lsn = handler_lsn;                                                                                \
        return handler_rc == -EPROTO ? proto_fail("bad " #name, "detail of %s", #name) : handler_rc;       \
    }
HANDLER(connect)
HANDLER(disconnect)
HANDLER(send)
HANDLER(subscribe)
HANDLER(unsubscribe)
HANDLER(ack)
HANDLER(nack)
HANDLER(begin)
HANDLER(commit)
HANDLER(abort)

void conn_error(struct conn *c, const char *message, const char *receipt, const char *detail)
{
    say("ERROR %s [%s] (%s)", message, detail ? detail : "", receipt ? receipt : "-");
}

/* the ERROR for a refused frame: conn.c sends it after the answers before
 * it (t/integration/13-persistence.py); here, as conn_error */
void conn_refuse(struct conn *c, const char *message, const char *receipt, const char *detail)
{
    conn_error(c, message, receipt, detail);
}

void conn_send_receipt(struct conn *c, const char *receipt)
{
    say("RECEIPT %s", receipt);
}

/* ops stand in for commit.c's: only what proto asks for is recorded */
static struct op *fake_op(enum op_kind kind, const char *receipt, uint64_t lsn)
{
    struct op *op = calloc(1, sizeof *op);
    op->kind = kind;
    op->receipt = strdup(receipt ? receipt : "-");
    op->lsn = lsn;
    return op;
}

struct op *op_receipt(struct conn *c, const char *receipt)
{
    return fake_op(OP_RECEIPT, receipt, 0);
}

struct op *op_commit(struct conn *c, const char *receipt, uint64_t lsn)
{
    return fake_op(OP_COMMIT, receipt, lsn);
}

void op_submit(struct op *op)
{
    if (op->kind == OP_COMMIT)
        say("queue receipt %s after lsn %llu", op->receipt, (unsigned long long)op->lsn);
    else
        say("queue receipt %s", op->receipt);
    free(op->receipt);
    free(op);
}

uint64_t commit_lsn(void)
{
    return committed;
}

uint64_t persist_flush(void)
{
    return 77;
}

/* ------------------------------------------------------------ driving */

static struct conn conn;

static int setup(void **state)
{
    memset(&conn, 0, sizeof conn);
    conn.id = 1;
    conn.state = CONN_HANDSHAKE;
    TAILQ_INIT(&conn.ops);
    transcript[0] = '\0';
    handler_rc = 0;
    handler_lsn = 0;
    committed = 0;
    return 0;
}

/* Parse one frame from text ("^@" is the NUL) and hand it to proto. */
static void feed(struct conn *c, const char *text)
{
    struct frame_limits lim = {1 << 20, 100, 4096, 256};
    struct frame_parser p;
    frame_parser_init(&p, &lim);
    p.version = STOMP_12;
    size_t len = strlen(text) + 1, used;
    struct frame f;
    const char *err;
    assert_int_equal(frame_parse(&p, text, len, &used, &f, &err), FRAME_OK);
    proto_handle(c, &f);
    frame_free(&f);
}

static void expect(const char *want)
{
    expect_transcript(want);
}

struct rule_row {
    const char *what;
    enum conn_state state;
    const char *frame;
    const char *want;
};

static const struct rule_row rules[] = {
    {"CONNECT first", CONN_HANDSHAKE, "CONNECT\naccept-version:1.2\n\n", "handle connect;"},
    {"STOMP is CONNECT", CONN_HANDSHAKE, "STOMP\naccept-version:1.2\n\n", "handle connect;"},
    {"CONNECT with a receipt: its handler answers", CONN_HANDSHAKE, "CONNECT\nreceipt:c\n\n", "handle connect;"},
    {"SEND before CONNECT", CONN_HANDSHAKE, "SEND\ndestination:/queue/a\nreceipt:r1\n\n",
     "ERROR not connected [Got SEND before CONNECT; send CONNECT (or STOMP) first.] (r1);"},
    {"SUBSCRIBE before CONNECT", CONN_HANDSHAKE, "SUBSCRIBE\nid:1\ndestination:/queue/a\n\n",
     "ERROR not connected [Got SUBSCRIBE before CONNECT; send CONNECT (or STOMP) first.] (-);"},
    {"DISCONNECT before CONNECT", CONN_HANDSHAKE, "DISCONNECT\n\n",
     "ERROR not connected [Got DISCONNECT before CONNECT; send CONNECT (or STOMP) first.] (-);"},
    {"a server frame from a client", CONN_OPEN, "MESSAGE\nreceipt:m\n\n",
     "ERROR unknown command ['MESSAGE' is not a STOMP client command.] (m);"},
    {"no such command", CONN_OPEN, "FROB\n\n", "ERROR unknown command ['FROB' is not a STOMP client command.] (-);"},
    {"SEND after CONNECT", CONN_OPEN, "SEND\ndestination:/queue/a\n\n", "handle send;"},
    {"every client verb reaches its handler", CONN_OPEN, "NACK\nid:1\n\n", "handle nack;"},
    {"BEGIN", CONN_OPEN, "BEGIN\ntransaction:t\n\n", "handle begin;"},
    {"UNSUBSCRIBE", CONN_OPEN, "UNSUBSCRIBE\nid:1\n\n", "handle unsubscribe;"},
};

static void test_command_rules(void **state)
{
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        setup(state);
        conn.state = rules[i].state;
        feed(&conn, rules[i].frame);
        if (strcmp(transcript, rules[i].want))
            fail_msg("%s\n  got:  %s\n  want: %s", rules[i].what, transcript, rules[i].want);
    }
}

struct receipt_row {
    const char *what;
    int rc;
    uint64_t lsn, committed;
    const char *want;
};

static const struct receipt_row receipts[] = {
    {"done: RECEIPT now", 0, 0, 0, "handle ack;RECEIPT r;"},
    {"journaled: waits for its entry", 0, 5, 3, "handle ack;queue receipt r after lsn 5;"},
    {"journaled and already committed: RECEIPT now", 0, 5, 5, "handle ack;RECEIPT r;"},
    {"the handler answers itself", PROTO_RECEIPT_TAKEN, 0, 0, "handle ack;"},
    {"failed: ERROR with the receipt-id, no RECEIPT", -EPROTO, 9, 0, "handle ack;ERROR bad ack [detail of ack] (r);"},
};

static void test_receipts(void **state)
{
    for (size_t i = 0; i < sizeof receipts / sizeof receipts[0]; i++) {
        setup(state);
        conn.state = CONN_OPEN;
        handler_rc = receipts[i].rc;
        handler_lsn = receipts[i].lsn;
        committed = receipts[i].committed;
        feed(&conn, "ACK\nid:1\nreceipt:r\n\n");
        if (strcmp(transcript, receipts[i].want))
            fail_msg("%s\n  got:  %s\n  want: %s", receipts[i].what, transcript, receipts[i].want);
    }
}

static void test_receipt_behind_waiting_ops(void **state)
{
    /* an earlier frame still waits: this receipt queues behind it */
    conn.state = CONN_OPEN;
    struct op dummy;
    TAILQ_INSERT_TAIL(&conn.ops, &dummy, conn_link);
    feed(&conn, "BEGIN\ntransaction:t\nreceipt:b\n\n");
    TAILQ_REMOVE(&conn.ops, &dummy, conn_link);
    expect("handle begin;queue receipt b;");
}

static void test_journaled_ack_asks_for_its_entry(void **state)
{
    struct frame f = {0};
    struct stomp_header h = {"receipt", "x", 7, 1};
    f.headers = &h;
    f.nheaders = 1;
    assert_int_equal(proto_journaled(&f), 77);
    f.nheaders = 0;
    /* no receipt: nobody waits, coalesced acks stay coalesced */
    assert_int_equal(proto_journaled(&f), 0);
}

static void test_one_connection_per_client_id(void **state)
{
    struct conn other = {.id = 2, .state = CONN_OPEN};
    config.client_id_takeover = false;
    assert_int_equal(proto_claim_client_id(&conn, "app"), 0);
    conn.client_id = "app";
    assert_int_equal(proto_claim_client_id(&other, "app"), -EEXIST);
    /* the id is free once its connection closes */
    proto_conn_closed(&conn);
    assert_int_equal(proto_claim_client_id(&other, "app"), 0);
    other.client_id = "app";
    proto_conn_closed(&other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_command_rules),
        cmocka_unit_test(test_receipts),
        cmocka_unit_test_setup(test_receipt_behind_waiting_ops, setup),
        cmocka_unit_test(test_journaled_ack_asks_for_its_entry),
        cmocka_unit_test_setup(test_one_connection_per_client_id, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
