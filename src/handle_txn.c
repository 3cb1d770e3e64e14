/* BEGIN, COMMIT, ABORT. COMMIT replays the held frames in order through
 * the same code as outside a transaction, with every persistent effect in
 * one journal entry, so a crash keeps all of a transaction or none. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/commit.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/log.h"
#include "stompd/proto.h"
#include "stompd/persist.h"
#include "stompd/txn.h"

static const char *tx_header(struct frame *f)
{
    const char *tx = frame_get(f, "transaction");
    if (!tx)
        proto_fail("missing transaction header", "%s requires a transaction header.", f->command);
    return tx;
}

int handle_begin(struct conn *c, struct frame *f, uint64_t *lsn)
{
    const char *tx = tx_header(f);
    if (!tx)
        return -EPROTO;
    return txn_begin(c, tx);
}

/* COMMIT applies all of a transaction or none: what a held SEND needs that
 * can have changed since it arrived is checked before anything is applied
 * (send_check_held), and so is every held ACK's message, which must not
 * have gone back to its queue (its subscription ended, a NACK outside the
 * transaction): its consumer would otherwise get it again while the
 * transaction's SENDs, the work done for it, went out. A failure that
 * still comes while applying (memory filled meanwhile) answers an ERROR,
 * not the RECEIPT. A held ACK whose message was acknowledged outside the
 * transaction meanwhile is skipped: what it asked for is done. */
int handle_commit(struct conn *c, struct frame *f, uint64_t *lsn)
{
    const char *tx = tx_header(f);
    if (!tx)
        return -EPROTO;
    struct txn *t = txn_find(c, tx);
    if (!t)
        return proto_fail("unknown transaction", "Transaction '%.128s' was not begun (or already ended).", tx);
    if (t->spoiled) {
        proto_fail("transaction not committed", "Transaction '%.128s' cannot be applied: %s; nothing of the "
                   "transaction was applied.", tx, t->spoiled);
        txn_end(c, t);
        return -EPROTO;
    }
    for (uint32_t i = 0; i < t->nframes; i++) {
        const char *why = t->frames[i].cmd == CMD_SEND ? send_check_held(c, &t->frames[i]) : NULL;
        if (why) {
            proto_fail("transaction not committed",
                       "Frame %u of transaction '%.128s' (a SEND to '%.200s') cannot be applied (%s); nothing of "
                       "the transaction was applied.",
                       i + 1, tx, frame_get(&t->frames[i], "destination"), why);
            txn_end(c, t);
            return -EPROTO;
        }
    }
    /* what the transaction reserved goes back before its messages take it */
    dest_reserve(-t->bytes);
    t->bytes = 0;
    struct op *op = op_batch(c, NULL);
    persist_batch_begin();
    uint32_t failed = 0;
    char first[160] = "";
    for (uint32_t i = 0; i < t->nframes; i++) {
        struct frame *h = &t->frames[i];
        int rc = 0;
        switch (h->cmd) {
        case CMD_SEND:
            rc = send_message(c, h, op);
            break;
        case CMD_ACK:
        case CMD_NACK:
            rc = ack_message(c, h, h->cmd == CMD_NACK, true); /* in the batch's entry */
            break;
        default:
            break;
        }
        if (rc < 0 && failed++ == 0)
            snprintf(first, sizeof first, "%s %u", h->command, i + 1);
    }
    op_batch_close(op, persist_batch_end());
    txn_end(c, t);
    const char *receipt = frame_get(f, "receipt");
    if (!failed && receipt && !(op->receipt = strdup(receipt)))
        abort();
    op_submit(op);
    if (failed) {
        clog_warn(c, "transaction %s: %u held frames could not be applied at COMMIT (the first: %s)", tx, failed,
                  first);
        return proto_fail("transaction partly applied",
                          "%u frames of transaction '%.128s' could not be applied at COMMIT (the first: %s); the "
                          "others were.",
                          failed, tx, first);
    }
    return PROTO_RECEIPT_TAKEN;
}

int handle_abort(struct conn *c, struct frame *f, uint64_t *lsn)
{
    const char *tx = tx_header(f);
    if (!tx)
        return -EPROTO;
    struct txn *t = txn_find(c, tx);
    if (!t)
        return proto_fail("unknown transaction", "Transaction '%.128s' was not begun (or already ended).", tx);
    txn_end(c, t);
    return 0;
}
