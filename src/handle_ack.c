/* ACK and NACK: find the delivery (by ack id in 1.2, by message-id and
 * subscription before) and settle it per the subscription's ack mode.
 * Inside a transaction the frame is held until COMMIT. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/conn.h"
#include "stompd/persist.h"
#include "stompd/proto.h"
#include "stompd/sub.h"
#include "stompd/txn.h"

static struct qentry *find_anywhere(struct conn *c, const char *mid)
{
    struct sub *s, *tmp;
    struct qentry *e;
    HASH_ITER(hh, c->subs, s, tmp)
        if ((e = sub_find_delivery(s, mid)))
            return e;
    return NULL;
}

/* The subscription header, when the frame has one, must name the
 * subscription that holds the delivery (e; NULL when no subscription
 * holds the message): an ERROR says which part is wrong. */
static bool subscription_holds(struct conn *c, struct frame *f, struct qentry *e, const char *what, bool quiet)
{
    const char *sid = frame_get(f, "subscription");
    if (!sid)
        return true;
    struct sub *s;
    HASH_FIND_STR(c->subs, sid, s);
    if (!s) {
        if (!quiet)
            proto_fail("unknown subscription", "%s names subscription '%.128s', which does not exist on this connection.",
                       f->command, sid);
        return false;
    }
    if (!e || e->sub != s) {
        /* e is NULL only when no named subscription exists (refused above) */
        if (!quiet)
            proto_fail("wrong subscription", "%s was delivered to subscription '%.128s', not to '%.128s'.", what,
                       e ? e->sub->id : "?", sid);
        return false;
    }
    return true;
}

static struct qentry *find_entry(struct conn *c, struct frame *f, bool quiet)
{
    char what[200];
    if (c->version >= STOMP_12) {
        const char *id = frame_get(f, "id");
        if (!id) {
            if (!quiet)
                proto_fail("missing id header", "%s in STOMP 1.2 names the message by its ack header in id.", f->command);
            return NULL;
        }
        char *end;
        errno = 0;
        unsigned long long tag = strtoull(id, &end, 10);
        struct qentry *e = NULL;
        if (end != id && !*end && !errno)
            HASH_FIND(hh, c->inflight, &tag, sizeof(uint64_t), e);
        if (!e) {
            if (!quiet && find_anywhere(c, id))
                proto_fail("unknown ack id",
                           "'%.64s' is a message-id: in STOMP 1.2, %s's id is the MESSAGE's ack header.", id,
                           f->command);
            else if (!quiet)
                proto_fail("unknown ack id", "No unacknowledged message has ack id '%.64s' on this connection.", id);
            return NULL;
        }
        snprintf(what, sizeof what, "The message with ack id '%.64s'", id);
        return subscription_holds(c, f, e, what, quiet) ? e : NULL;
    }
    const char *mid = frame_get(f, "message-id");
    if (!mid) {
        if (!quiet)
            proto_fail("missing message-id header", "%s requires message-id before STOMP 1.2.", f->command);
        return NULL;
    }
    /* One message can be unacked on two subscriptions (a topic's): the one
     * named comes first. */
    const char *sid = frame_get(f, "subscription");
    struct sub *named = NULL;
    struct qentry *e;
    if (sid) {
        HASH_FIND_STR(c->subs, sid, named);
        if (named && (e = sub_find_delivery(named, mid)))
            return e;
    }
    e = find_anywhere(c, mid);
    if (!e && (!sid || named)) {
        if (!quiet)
            proto_fail("unknown message-id",
                       "No unacknowledged message '%.128s' on this connection (never delivered here, or acknowledged "
                       "already).", mid);
        return NULL;
    }
    snprintf(what, sizeof what, "Message '%.128s'", mid);
    return subscription_holds(c, f, e, what, quiet) ? e : NULL;
}

int ack_message(struct conn *c, struct frame *f, bool nack, bool lenient)
{
    struct qentry *e = find_entry(c, f, lenient);
    if (!e)
        return lenient ? 0 : -EPROTO;
    return (nack ? sub_nack(e->sub, e) : sub_ack(e->sub, e)) ? 1 : 0;
}

static int ack_or_hold(struct conn *c, struct frame *f, bool nack, uint64_t *lsn)
{
    const char *tx = frame_get(f, "transaction");
    if (tx) {
        struct qentry *e = find_entry(c, f, false);
        if (!e)
            return -EPROTO;
        struct sub *t = sub_top(e->sub);
        int rc = txn_hold(c, tx, f, 1, false);
        if (rc != 0)
            return rc;
        /* what it covers: a cumulative (client) one, every delivery before
         * too, back to one the transaction covered already (what it
         * covers is a prefix of the subscription's deliveries) */
        struct txn *x = txn_find(c, tx);
        for (struct qentry *it = e; it; it = TAILQ_PREV(it, qentry_list, link))
            if (!txn_cover(c, x, it) || t->ack != ACK_CLIENT)
                break;
        return 0;
    }
    int rc = ack_message(c, f, nack, false);
    if (rc > 0) {
        c->acked_lsn = persist_journaled_by(); /* a DISCONNECT's receipt waits for it */
        *lsn = proto_journaled(f);
    }
    return rc < 0 ? rc : 0;
}

int handle_ack(struct conn *c, struct frame *f, uint64_t *lsn)
{
    return ack_or_hold(c, f, false, lsn);
}

int handle_nack(struct conn *c, struct frame *f, uint64_t *lsn)
{
    if (c->version == STOMP_10) /* as ActiveMQ: 1.0 has no NACK */
        return proto_fail("unknown command", "NACK is not a STOMP 1.0 command (it came with 1.1); this connection "
                                             "negotiated 1.0.");
    return ack_or_hold(c, f, true, lsn);
}
