/* SEND: validate the frame, resolve its destinations (route.h), build the
 * message and hand it to broker_publish (scheduling, journaling,
 * duplicates, flow control live there).
 * Inside a transaction the frame is held until COMMIT. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/dup.h"
#include "stompd/log.h"
#include "stompd/msg.h"
#include "stompd/persist.h"
#include "stompd/proto.h"
#include "stompd/server.h"
#include "stompd/publish.h"
#include "stompd/route.h"
#include "stompd/sched.h"
#include "stompd/txn.h"
#include "stompd/utf8.h"

static int parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno)
        return -1;
    *out = v;
    return 0;
}

/* Resolve and check the destinations of a SEND (route.h: a composite
 * list, virtual topics). A SEND held in a transaction was admitted when it
 * arrived (its destinations created then): at COMMIT it is not refused for
 * broker.max_destinations, even if one was removed as idle meanwhile. */
static int send_route(struct conn *c, const char *name, bool admitted, struct route *r)
{
    const char *err;
    int rc = route_send(c, c->who, name, admitted, r, &err);
    if (rc == 0)
        return 0;
    route_free(r);
    if (rc == -EACCES)
        return proto_fail(route_denied(), "%s", err);
    return proto_fail(rc == -ENOSPC   ? "too many destinations"
                      : rc == -ENOENT ? "no such temporary destination"
                                      : "invalid destination",
                      "%s.", err);
}

/* The scheduling headers of a SEND, checked when it arrives (also inside
 * a transaction, whose SENDs are published at COMMIT): 1 scheduled, 0
 * not, or an error (the ERROR is set). */
static int check_schedule(struct frame *f)
{
    struct msg probe = {.headers = f->headers, .nheaders = f->nheaders};
    int64_t due;
    const char *why;
    int rc = sched_check(&probe, server_now_ms(), &due, &why);
    if (rc < 0)
        return proto_fail("invalid scheduling header", "%s.", why);
    return rc;
}

/* A reply-to naming the sender's own temporary destination creates it
 * (see rewrite_reply_to), so it counts against broker.max_destinations. */
static int reply_to_dest(struct conn *c, const char *rt)
{
    char buf[1200];
    const char *err;
    struct dest *d;
    const char *resolved = dest_resolve_temp(c, rt, buf, sizeof buf);
    if (resolved == rt)
        return 0;
    /* a name no replier could SEND to (route.c's kind_of_named) */
    const char *bad;
    if (!utf8_name_ok(rt, &bad) && !dest_find(resolved))
        return proto_fail("invalid reply-to header", "reply-to names a temporary destination whose name %s "
                          "(a name is UTF-8 text).", bad);
    if (dest_open(resolved, c, c->who, &d, &err) == -ENOSPC)
        return proto_fail("too many destinations", "reply-to '%.200s': %s.", rt, err);
    return 0;
}

/* reply-to naming the sender's own temporary destination is rewritten to
 * the broker-wide name, so whoever replies reaches it. */
static struct msg *rewrite_reply_to(struct conn *c, struct msg *m)
{
    const char *rt = msg_get(m, "reply-to");
    char buf[1200];
    if (!rt)
        return m;
    const char *resolved = dest_resolve_temp(c, rt, buf, sizeof buf);
    if (resolved == rt)
        return m;
    const char *err;
    if (!dest_get(resolved, c, &err))
        return m;
    struct stomp_header hs[m->nheaders];
    for (uint32_t i = 0; i < m->nheaders; i++) {
        hs[i] = m->headers[i];
        if (!strcmp(hs[i].name, "reply-to")) {
            hs[i].value = resolved;
            hs[i].value_len = (uint32_t)strlen(resolved);
        }
    }
    struct msg *n = msg_new(m->dest, m->id, m->seq, m->timestamp, m->persistent, m->priority,
                            m->expires, hs, m->nheaders, m->body, m->body_len);
    msg_unref(m);
    return n;
}

/* The headers the message is built from: checked when the SEND arrives,
 * a transaction's too (else a bad one would fail only at COMMIT, after
 * the frames before it were applied). */
static int send_headers(struct frame *f, bool *persistent, int64_t *prio, int64_t *expires)
{
    *persistent = false;
    *prio = MSG_PRIORITY_DEFAULT;
    *expires = 0;
    const char *p = frame_get(f, "persistent");
    if (p) {
        if (!strcmp(p, "true"))
            *persistent = true;
        else if (strcmp(p, "false"))
            return proto_fail("invalid persistent header", "persistent must be true or false, got '%.32s'.", p);
    }
    p = frame_get(f, "priority");
    if (p && (parse_i64(p, prio) != 0 || *prio < 0 || *prio > 9))
        return proto_fail("invalid priority header", "priority must be an integer 0-9, got '%.32s'.", p);
    p = frame_get(f, "expires");
    if (p && (parse_i64(p, expires) != 0 || *expires < 0))
        return proto_fail("invalid expires header",
                          "expires must be a time in ms since the epoch (0 = never), got '%.32s'.", p);
    return 0;
}

/* What a SEND must have, whether it is published now or held by a
 * transaction: a destination and valid message and scheduling headers
 * (*scheduled: it has a schedule). Returns the destination, or NULL (the
 * ERROR is set). */
static const char *send_checked(struct frame *f, bool *persistent, int64_t *prio, int64_t *expires,
                                bool *scheduled)
{
    const char *name = frame_get(f, "destination");
    if (!name) {
        proto_fail("missing destination header", "SEND requires a destination header.");
        return NULL;
    }
    if (send_headers(f, persistent, prio, expires) != 0)
        return NULL;
    int rc = check_schedule(f);
    *scheduled = rc == 1;
    return rc >= 0 ? name : NULL;
}

int send_message(struct conn *c, struct frame *f, struct op *batch)
{
    bool persistent;
    int64_t prio, expires;
    bool scheduled;
    const char *name = send_checked(f, &persistent, &prio, &expires, &scheduled);
    if (!name)
        return -EPROTO;
    struct route r;
    if (send_route(c, name, batch != NULL, &r) != 0)
        return -EPROTO;
    const char *rt = frame_get(f, "reply-to");
    if (rt && !batch && reply_to_dest(c, rt) != 0) {
        route_free(&r);
        return -EPROTO;
    }

    /* The frame is about to be taken over by the message: keep copies of
     * what publishing still needs from it. */
    char *dupid = NULL, *receipt = NULL;
    const char *v = frame_get(f, DUP_HEADER);
    if (v && !(dupid = strdup(v)))
        abort();
    v = frame_get(f, "receipt");
    if (v && !batch && !(receipt = strdup(v)))
        abort();
    char id[128];
    server_next_msg_id(id, sizeof id);
    struct msg *m = msg_from_frame(f, r.spec, id, server_next_seq(), server_now_ms(), persistent,
                                   (uint8_t)prio, expires);
    m = rewrite_reply_to(c, m);
    const char *why = NULL;
    int rc = broker_publish(&r, m, &(struct publish){.conn = c, .receipt = receipt, .dup_id = dupid, .batch = batch},
                            NULL, &why);
    msg_unref(m);
    route_free(&r);
    free(receipt);
    free(dupid);
    if (rc < 0)
        return proto_fail(rc == -EINVAL   ? "invalid scheduling header"
                          : rc == -ENOMEM ? "broker memory full"
                          : rc == -EEXIST ? "duplicate scheduled message"
                                          : "store unavailable",
                          "%s", why);
    return rc == PUBLISH_WAITING ? PROTO_RECEIPT_TAKEN : 0;
}

/* A SEND a transaction holds, checked again at COMMIT before any of the
 * transaction is applied: what can have changed since it arrived (an
 * ACL reloaded, the store failed). A temporary destination closed since
 * takes nothing, as outside a transaction. Its destinations were created
 * when it arrived; one deleted since (by the console) is created again
 * here, as the COMMIT would, even if a later frame then refuses the
 * COMMIT. Returns why it cannot be applied, or NULL. */
const char *send_check_held(struct conn *c, struct frame *f)
{
    struct route r;
    const char *err;
    if (route_send(c, c->who, frame_get(f, "destination"), true, &r, &err) != 0) {
        route_free(&r);
        return err;
    }
    /* a failed store refuses any copy it would take (publish_one: never
     * a temporary destination's) */
    const char *p = frame_get(f, "persistent");
    bool refused = false;
    if (p && !strcmp(p, "true") && persist_enabled() && persist_failed())
        for (uint32_t i = 0; i < r.n && !refused; i++)
            refused = !dest_is_temp(r.v[i]);
    route_free(&r);
    return refused ? "the broker's store has failed and refuses persistent messages" : NULL;
}

int handle_send(struct conn *c, struct frame *f, uint64_t *lsn)
{
    const char *tx = frame_get(f, "transaction");
    if (tx) {
        /* Check what can be checked now, so errors come with the frame. */
        bool persistent, scheduled;
        int64_t prio, expires;
        const char *name = send_checked(f, &persistent, &prio, &expires, &scheduled);
        if (!name)
            return -EPROTO;
        if (!txn_find(c, tx))
            return proto_fail("unknown transaction", "Transaction '%.128s' was not begun (or already ended).", tx);
        /* The destinations are created now, not at COMMIT, so a full
         * registry refuses this frame rather than losing it then. */
        struct route r;
        if (send_route(c, name, false, &r) != 0)
            return -EPROTO;
        uint32_t legs = r.n ? r.n : 1;
        route_free(&r);
        const char *rt = frame_get(f, "reply-to");
        if (rt && reply_to_dest(c, rt) != 0)
            return -EPROTO;
        /* at COMMIT the scheduler keeps it in memory, charged apart */
        return txn_hold(c, tx, f, legs, scheduled && !(persistent && persist_enabled()));
    }
    return send_message(c, f, NULL);
}
