/* broker_publish: every producer's way in (see publish.h). A persistent
 * message is journaled and becomes visible only once its entry commits;
 * the op that waits for it carries the message (charged to the memory
 * limit meanwhile) and the producer's answer. A full destination makes
 * the producer wait for room, however the message came. A message for
 * several destinations is published to each as a transaction of its own
 * would be (one journal entry, one answer); a scheduled one goes to the
 * scheduler, journaled, and comes back here when it fires. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "stompd/commit.h"
#include "stompd/dest.h"
#include "stompd/dup.h"
#include "stompd/log.h"
#include "stompd/msg.h"
#include "stompd/persist.h"
#include "stompd/publish.h"
#include "stompd/queue.h"
#include "stompd/route.h"
#include "stompd/sched.h"
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

static int publish_one(struct dest *d, struct msg *m, const struct publish *p, struct op **waiting, const char **why)
{
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
            else if (persist_store_wait())
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
        else if (persist_store_wait())
            op_wait_store(op); /* accepted; the producer waits for room in the store */
        return submit(op, p, waiting);
    }
    if (p->dup_id)
        dup_remember(p->dup_id, 0, false);
    if (p->batch) {
        /* seen with the batch's other messages, in their order, once all
         * of them are journaled: a transaction is visible whole or not */
        op_add_reserved_msg(p->batch, m);
        if (dest_is_full(d))
            op_wait_room(p->batch, d);
        return PUBLISH_DONE;
    }
    dest_deliver(d, m);
    if (!dest_is_full(d))
        return PUBLISH_DONE;
    return submit(op_room(p->conn, p->receipt, d), p, waiting);
}

/* A resend of something already accepted: dropped, but answered only once
 * the original is durable. Returns -1 when it is not a duplicate. */
static int duplicate(const struct publish *p, struct op **waiting)
{
    uint64_t dup_lsn = 0;
    if (!p->dup_id || !dup_seen(p->dup_id, &dup_lsn))
        return -1;
    srv.st.duplicates++;
    log_debug("duplicate %s dropped", p->dup_id);
    if (!p->batch && dup_lsn > commit_lsn() && (p->receipt || p->done))
        return submit(op_commit(p->conn, p->receipt, dup_lsn), p, waiting);
    return PUBLISH_DUPLICATE;
}

/* Kept by the scheduler until due: a persistent one is journaled now
 * (its receipt waits for that entry), delivered when it fires. */
static int publish_scheduled(struct msg *m, int64_t due, const struct publish *p, struct op **waiting,
                             const char **why)
{
    if (m->persistent && persist_enabled() && persist_failed()) {
        *why = "The broker's store has failed; persistent messages are refused.";
        return -EIO;
    }
    int rc = duplicate(p, waiting);
    if (rc >= 0)
        return rc;
    uint64_t lsn;
    /* a COMMIT's (the batch) bytes were admitted when its SEND came */
    rc = sched_add(m, due, p->dup_id, p->batch != NULL, &lsn, why);
    if (rc < 0)
        return rc;
    if (!lsn) {
        if (p->dup_id)
            dup_remember(p->dup_id, 0, false);
        return PUBLISH_DONE;
    }
    if (p->batch) {
        if (p->dup_id)
            op_add_dup(p->batch, p->dup_id);
        if (persist_store_wait())
            op_wait_store(p->batch);
        return PUBLISH_DONE;
    }
    if (p->dup_id)
        dup_remember(p->dup_id, lsn, true);
    struct op *op = op_commit(p->conn, p->receipt, lsn);
    if (persist_store_wait())
        op_wait_store(op);
    return submit(op, p, waiting);
}

/* The copy of m that goes to d: its own destination header (and, through
 * a virtual topic, the topic in original-destination, as ActiveMQ), seq
 * and message-id (but the first keeps m's). */
static struct msg *copy_for(struct msg *m, struct dest *d, const struct dest *via, bool first)
{
    uint32_t n = 0;
    struct stomp_header hs[m->nheaders + 1];
    if (via)
        hs[n++] = (struct stomp_header){"original-destination", via->name, 20, (uint32_t)strlen(via->name)};
    for (uint32_t i = 0; i < m->nheaders; i++)
        if (!via || strcmp(m->headers[i].name, "original-destination"))
            hs[n++] = m->headers[i];
    char id[128];
    if (!first)
        server_next_msg_id(id, sizeof id);
    return msg_new_sharing(d->name, first ? m->id : id, first ? m->seq : server_next_seq(), m->timestamp,
                           m->persistent, m->priority, m->expires, hs, n, m);
}

/* One copy per destination, published as a transaction's SENDs are: every
 * persistent copy in one journal entry (a crash keeps all or none), one
 * answer once it commits. Inside a batch (a COMMIT, a scheduler firing),
 * that batch's entry. */
static int publish_many(const struct route *r, struct msg *m, const struct publish *p, struct op **waiting,
                        const char **why)
{
    if (m->persistent && persist_enabled() && persist_failed()) {
        *why = "The broker's store has failed; persistent messages are refused.";
        return -EIO;
    }
    int rc = duplicate(p, waiting);
    if (rc >= 0)
        return rc;
    struct op *op = p->batch;
    bool own = !op;
    if (own) {
        op = op_batch(p->conn, p->receipt);
        persist_batch_begin();
    }
    for (uint32_t i = 0; i < r->n; i++) {
        struct msg *c = copy_for(m, r->v[i], r->via ? r->via[i] : NULL, i == 0);
        struct publish one = {.conn = p->conn, .batch = op, .fired = p->fired, .dup_id = i == 0 ? p->dup_id : NULL};
        if (publish_one(r->v[i], c, &one, NULL, why) < 0)
            log_warn("message %s not published to %s: %s", c->id, r->v[i]->name, *why);
        msg_unref(c);
    }
    if (!own)
        return PUBLISH_DONE;
    op_batch_close(op, persist_batch_end());
    return submit(op, p, waiting);
}

int broker_publish(const struct route *r, struct msg *m, const struct publish *p, struct op **waiting,
                   const char **why)
{
    if (waiting)
        *waiting = NULL;
    srv.st.closed_temp_dropped += r->gone;
    if (r->n == 0) {
        log_debug("message %s dropped: the temporary destinations it was sent to have closed with their "
                  "connections", m->id);
        return PUBLISH_DONE; /* nobody can ever consume it (a scheduled one neither) */
    }
    if (p->moved_from)
        return publish_move(r->v[0], m, p, waiting);
    if (!p->fired) {
        int64_t due;
        int rc = sched_check(m, server_now_ms(), &due, why);
        if (rc < 0)
            return rc;
        if (rc > 0)
            return publish_scheduled(m, due, p, waiting, why);
    }
    if (r->n == 1)
        return publish_one(r->v[0], m, p, waiting, why);
    return publish_many(r, m, p, waiting, why);
}
