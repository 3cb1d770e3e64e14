/* broker_publish: every producer's way in (see publish.h). A persistent
 * message is journaled and becomes visible only once its entry commits;
 * the op that waits for it carries the message (charged to the memory
 * limit meanwhile) and the producer's answer. A full destination makes
 * the producer wait for room, however the message came. */
#include "config.h"

#include <errno.h>

#include "stompd/acl.h"
#include "stompd/commit.h"
#include "stompd/dest.h"
#include "stompd/dup.h"
#include "stompd/log.h"
#include "stompd/msg.h"
#include "stompd/persist.h"
#include "stompd/publish.h"
#include "stompd/queue.h"
#include "stompd/server.h"

static int submit(struct op *op, const struct publish *p, struct op **waiting)
{
    if (!p->conn && p->done) {
        op_notify(op, p->done, p->arg);
        if (waiting)
            *waiting = op;
    }
    op_submit(op); /* may finish (and notify) at once */
    return PUBLISH_WAITING;
}

/* A move (dead-lettering, or the console moving a message on): the
 * dequeue from the old queue and the enqueue of the copy are one journal
 * entry, so a crash keeps one of the two. A producer without a connection
 * (the console) is told once the entry is committed. */
static int publish_move(struct dest *d, struct msg *copy, const struct publish *p, struct op **waiting)
{
    uint64_t lsn = persist_dlq_move(p->moved_from, copy);
    queue_entry_done(p->moved_from);
    if (lsn && (copy->journaled || p->done)) {
        struct op *op = op_commit(NULL, NULL, lsn);
        if (copy->journaled)
            op_add_msg(op, copy);
        else
            dest_deliver(d, copy);
        return submit(op, p, waiting);
    }
    dest_deliver(d, copy);
    return PUBLISH_DONE;
}

static char denied_message[256], denied_detail[1200];

const char *publish_denied(void)
{
    return denied_message;
}

int broker_publish(struct dest *d, struct msg *m, const struct publish *p, struct op **waiting, const char **why)
{
    if (waiting)
        *waiting = NULL;
    if (p->moved_from)
        return publish_move(d, m, p, waiting);
    if (p->who && !acl_allows_dest(p->who, d->name, ACL_WRITE)) {
        acl_explain(p->who, d->name, ACL_WRITE, denied_message, sizeof denied_message, denied_detail,
                    sizeof denied_detail);
        *why = denied_detail;
        return -EACCES;
    }
    /* Temporary destinations die with their connection: never journaled. */
    bool journal = m->persistent && !dest_is_temp(d) && persist_enabled();
    if (journal && persist_failed()) {
        *why = "The broker's store has failed; persistent messages are refused.";
        return -EIO;
    }
    /* A resend of something already accepted: dropped, but answered only
     * once the original is durable. */
    uint64_t dup_lsn = 0;
    if (p->dup_id && dup_seen(p->dup_id, &dup_lsn)) {
        srv.st.duplicates++;
        log_debug("duplicate %s to %s dropped", p->dup_id, d->name);
        if (!p->batch && dup_lsn > commit_lsn() && (p->receipt || p->done))
            return submit(op_commit(p->conn, p->receipt, dup_lsn), p, waiting);
        return PUBLISH_DUPLICATE;
    }
    srv.st.messages_in++;
    if (journal && persist_enqueue(d, m, p->dup_id)) {
        if (p->batch) {
            /* the transaction's entry gets its lsn at COMMIT's end */
            op_add_reserved_msg(p->batch, m);
            if (p->dup_id)
                op_add_dup(p->batch, p->dup_id);
            if (dest_is_full(d))
                op_wait_room(p->batch, d);
            else if (persist_store_full())
                op_wait_store(p->batch);
            return PUBLISH_DONE;
        }
        uint64_t lsn = persist_last_lsn();
        if (p->dup_id)
            dup_remember(p->dup_id, lsn, true);
        struct op *op = op_commit(p->conn, p->receipt, lsn);
        op_add_reserved_msg(op, m);
        if (dest_is_full(d))
            op_wait_room(op, d);
        else if (persist_store_full())
            op_wait_store(op); /* accepted; the producer waits for room in the store */
        return submit(op, p, waiting);
    }
    if (p->dup_id)
        dup_remember(p->dup_id, 0, false);
    dest_deliver(d, m);
    if (!dest_is_full(d))
        return PUBLISH_DONE;
    if (p->batch) {
        op_wait_room(p->batch, d);
        return PUBLISH_DONE;
    }
    return submit(op_room(p->conn, p->receipt, d), p, waiting);
}
