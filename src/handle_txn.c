/* BEGIN, COMMIT, ABORT. COMMIT replays the held frames in order through
 * the same code as outside a transaction, with every persistent effect in
 * one journal entry, so a crash keeps all of a transaction or none. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "stompd/commit.h"
#include "stompd/conn.h"
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

int handle_commit(struct conn *c, struct frame *f, uint64_t *lsn)
{
    const char *tx = tx_header(f);
    if (!tx)
        return -EPROTO;
    struct txn *t = txn_find(c, tx);
    if (!t)
        return proto_fail("unknown transaction", "Transaction '%.128s' was not begun (or already ended).", tx);
    struct op *op = op_batch(c, frame_get(f, "receipt"));
    persist_batch_begin();
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
        if (rc < 0)
            clog_warn(c, "transaction %s: a held %s could not be applied at COMMIT", tx, h->command);
    }
    op_batch_close(op, persist_batch_end());
    txn_end(c, t);
    op_submit(op);
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
