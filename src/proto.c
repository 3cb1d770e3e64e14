/* The command table: which frames are legal in which state, and the single
 * path from a handler's failure to ERROR (with receipt-id when asked) and
 * close-after-flush of that connection alone. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "stompd/commit.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/log.h"
#include "stompd/persist.h"
#include "stompd/principal.h"
#include "stompd/proto.h"
#include "stompd/server.h"
#include "stompd/utf8.h"

typedef int (*handler_fn)(struct conn *c, struct frame *f, uint64_t *lsn);

static const struct command {
    handler_fn fn;
    bool before_connect; /* allowed before CONNECT */
} commands[CMD__COUNT] = {
    [CMD_CONNECT] = {handle_connect, true},
    [CMD_STOMP] = {handle_connect, true},
    [CMD_SEND] = {handle_send, false},
    [CMD_SUBSCRIBE] = {handle_subscribe, false},
    [CMD_UNSUBSCRIBE] = {handle_unsubscribe, false},
    [CMD_ACK] = {handle_ack, false},
    [CMD_NACK] = {handle_nack, false},
    [CMD_BEGIN] = {handle_begin, false},
    [CMD_COMMIT] = {handle_commit, false},
    [CMD_ABORT] = {handle_abort, false},
    [CMD_DISCONNECT] = {handle_disconnect, false},
};

static char fail_message[256];
static char fail_detail[1024];

int proto_fail(const char *message, const char *detail_fmt, ...)
{
    snprintf(fail_message, sizeof fail_message, "%s", message);
    fail_detail[0] = '\0';
    if (detail_fmt) {
        va_list ap;
        va_start(ap, detail_fmt);
        vsnprintf(fail_detail, sizeof fail_detail, detail_fmt, ap);
        va_end(ap);
    }
    return -EPROTO;
}

static void proto_dispatch(struct conn *c, struct frame *f, const char *receipt);

void proto_error(struct conn *c, const char *receipt)
{
    conn_error(c, fail_message[0] ? fail_message : "request failed", receipt, fail_detail[0] ? fail_detail : NULL);
}

void proto_receipt(struct conn *c, const char *receipt)
{
    if (!receipt)
        return;
    if (TAILQ_EMPTY(&c->ops)) {
        conn_send_receipt(c, receipt);
        return;
    }
    op_submit(op_receipt(c, receipt));
}

void proto_handle(struct conn *c, struct frame *f)
{
    /* Handlers may take the frame's memory (a SEND becomes a message that
     * can be delivered and freed at once), so keep our own receipt id. */
    char small[128];
    char *receipt = NULL;
    const char *r = frame_get(f, "receipt");
    if (r) {
        size_t rl = strlen(r);
        receipt = rl < sizeof small ? memcpy(small, r, rl + 1) : strdup(r);
        if (!receipt)
            abort();
    }
    proto_dispatch(c, f, receipt);
    if (receipt && receipt != small)
        free(receipt);
}

/* Values an earlier release kept without asking for UTF-8: their
 * handlers refuse new names and take the stored ones, so that what they
 * hold can still be reached (a queue drained, a durable subscription
 * removed, or resumed: that needs its selector as it was, helper-104). */
static bool checked_where_used(const struct stomp_header *h)
{
    static const char *const names[] = {"destination", "client-id", "activemq.subscriptionName",
                                        "durable-subscription-name", "durable-subscriber-name", "selector"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(h->name, names[i]))
            return true;
    return false;
}

/* The first header whose name or value is not UTF-8, or NULL. */
static const struct stomp_header *not_utf8(const struct frame *f)
{
    /* nearly always all of them are: one look at them all first */
    if (f->strings_len && utf8_valid(f->headers[0].name, f->strings_len))
        return NULL;
    for (size_t i = 0; i < f->nheaders; i++) {
        const struct stomp_header *h = &f->headers[i];
        if (!utf8_valid(h->name, h->name_len))
            return h;
        if (!utf8_valid(h->value, h->value_len) && !checked_where_used(h))
            return h;
    }
    return NULL;
}

static void proto_dispatch(struct conn *c, struct frame *f, const char *receipt)
{
    const struct command *cmd = f->cmd < CMD__COUNT ? &commands[f->cmd] : NULL;
    if (!cmd || !cmd->fn) {
        char detail[96];
        snprintf(detail, sizeof detail, "'%s' is not a STOMP client command.", f->command);
        conn_refuse(c, "unknown command", receipt, detail);
        return;
    }
    if (c->state == CONN_HANDSHAKE && !cmd->before_connect) {
        char detail[128];
        snprintf(detail, sizeof detail, "Got %s before CONNECT; send CONNECT (or STOMP) first.", f->command);
        conn_refuse(c, "not connected", receipt, detail);
        return;
    }
    const struct stomp_header *bad = not_utf8(f);
    if (bad) {
        /* passed on, it would reach consumers whose STOMP library cannot
         * decode it (stomp.py raises on such a MESSAGE) */
        char detail[300];
        bool name_ok = utf8_valid(bad->name, bad->name_len);
        snprintf(detail, sizeof detail, "The %s of header '%.*s' is not valid UTF-8; STOMP's headers are UTF-8 text.",
                 name_ok ? "value" : "name", name_ok ? utf8_cut(bad->name, 64) : 1, name_ok ? bad->name : "?");
        conn_refuse(c, "header not UTF-8", receipt && utf8_valid(receipt, strlen(receipt)) ? receipt : NULL, detail);
        return;
    }
    fail_message[0] = '\0';
    fail_detail[0] = '\0';
    uint64_t lsn = 0;
    int rc = cmd->fn(c, f, &lsn);
    if (rc < 0) {
        conn_refuse(c, fail_message[0] ? fail_message : "request failed", receipt,
                    fail_detail[0] ? fail_detail : NULL);
        return;
    }
    if (rc != 0 || !receipt || f->cmd == CMD_CONNECT || f->cmd == CMD_STOMP)
        return;
    /* A receipt says the frame's effect is durable: when the frame
     * journaled something (an ACK of a persistent message, a durable
     * subscription), the receipt waits for that entry. */
    if (lsn > commit_lsn()) {
        op_submit(op_commit(c, receipt, lsn));
        return;
    }
    proto_receipt(c, receipt);
}

uint64_t proto_journaled(const struct frame *f)
{
    /* coalesced ops (acks) get their entry now, so the receipt can wait for it */
    return frame_get(f, "receipt") ? persist_flush() : 0;
}

/* --------------------------------------------------------------- client-ids */

struct client_id {
    char *id;
    struct conn *conn;
    UT_hash_handle hh;
};

static struct client_id *client_ids;

/* Only the user who holds a client-id may take it over: another user
 * could otherwise close its connections (and reach its durable
 * subscriptions, which hang on the client-id). */
static bool same_user(const struct principal *a, const struct principal *b)
{
    if (!a || !b)
        return a == b;
    return a->anonymous == b->anonymous && !strcmp(a->name, b->name);
}

int proto_claim_client_id(struct conn *c, const char *id)
{
    struct client_id *e;
    HASH_FIND_STR(client_ids, id, e);
    if (e && config.client_id_takeover && same_user(e->conn->who, c->who)) {
        /* the newcomer wins (ActiveMQ's allowLinkStealing): the old
         * connection is most likely a dead one not yet noticed */
        clog_info(e->conn, "client-id '%s' taken over by connection %llu", id, (unsigned long long)c->id);
        conn_error(e->conn, "client-id taken over", NULL,
                   "A new connection with the same client-id replaced this one (stomp.client_id_takeover).");
        HASH_FIND_STR(client_ids, id, e);
    }
    if (e)
        return -EEXIST;
    e = calloc(1, sizeof *e);
    if (!e || !(e->id = strdup(id)))
        abort();
    e->conn = c;
    HASH_ADD_KEYPTR(hh, client_ids, e->id, strlen(e->id), e);
    return 0;
}

void proto_conn_closed(struct conn *c)
{
    if (!c->client_id)
        return;
    struct client_id *e;
    HASH_FIND_STR(client_ids, c->client_id, e);
    if (e && e->conn == c) {
        HASH_DEL(client_ids, e);
        free(e->id);
        free(e);
    }
}
