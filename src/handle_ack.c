/* ACK and NACK: find the delivery (by ack id in 1.2, by message-id and
 * subscription before) and settle it per the subscription's ack mode.
 * Inside a transaction the frame is held until COMMIT. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/conn.h"
#include "stompd/proto.h"
#include "stompd/sub.h"
#include "stompd/txn.h"

static struct qentry *find_in_sub(struct sub *s, const char *mid)
{
    struct qentry *e;
    TAILQ_FOREACH(e, &s->unacked, link)
        if (!strcmp(e->msg->id, mid))
            return e;
    return NULL;
}

static struct qentry *find_entry(struct conn *c, struct frame *f, bool quiet)
{
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
        if (!e && !quiet)
            proto_fail("unknown ack id", "No unacknowledged message has ack id '%.64s' on this connection.", id);
        return e;
    }
    const char *mid = frame_get(f, "message-id");
    if (!mid) {
        if (!quiet)
            proto_fail("missing message-id header", "%s requires message-id before STOMP 1.2.", f->command);
        return NULL;
    }
    const char *sid = frame_get(f, "subscription");
    struct qentry *e = NULL;
    if (sid) {
        struct sub *s;
        HASH_FIND_STR(c->subs, sid, s);
        if (s)
            e = find_in_sub(s, mid);
    } else {
        struct sub *s, *tmp;
        HASH_ITER(hh, c->subs, s, tmp)
            if ((e = find_in_sub(s, mid)))
                break;
    }
    if (!e && !quiet)
        proto_fail("unknown message-id", "No unacknowledged message '%.128s' on this connection.", mid);
    return e;
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
        if (!find_entry(c, f, false))
            return -EPROTO;
        return txn_hold(c, tx, f);
    }
    int rc = ack_message(c, f, nack, false);
    if (rc > 0)
        *lsn = proto_journaled(f);
    return rc < 0 ? rc : 0;
}

int handle_ack(struct conn *c, struct frame *f, uint64_t *lsn)
{
    return ack_or_hold(c, f, false, lsn);
}

int handle_nack(struct conn *c, struct frame *f, uint64_t *lsn)
{
    return ack_or_hold(c, f, true, lsn);
}
