/* Open sessions against the users file and the ACL after a reload
 * (access.h). ActiveMQ checks a consumer once, when it is added, so a
 * permission taken away keeps flowing to those already subscribed; here
 * taking it away takes effect at the SIGHUP. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "stompd/access.h"
#include "stompd/acl.h"
#include "stompd/auth.h"
#include "stompd/browse.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/dname.h"
#include "stompd/durable.h"
#include "stompd/log.h"
#include "stompd/principal.h"
#include "stompd/route.h"
#include "stompd/server.h"
#include "stompd/sub.h"
#include "stompd/utf8.h"

/* Is c's login still good? Then c->who is its user as the file has it
 * now. Else why not. */
static const char *login_gone(struct conn *c)
{
    if (c->who->anonymous)
        return auth_has_users() && !auth_anonymous_allowed()
                   ? "anonymous clients are no longer accepted (auth.anonymous, reloaded)"
                   : NULL;
    struct principal *now = auth_user(c->who->name);
    if (!now)
        return "the user is no longer in the users file (auth.users, reloaded)";
    if (now != c->who) {
        principal_unref(c->who);
        c->who = principal_ref(now);
    }
    return NULL;
}

/* Did a pattern of root's take q (not one the SUBSCRIBE named)? */
static bool taken_by_pattern(const struct sub *root, const struct dest *q)
{
    if (q->kind != DEST_QUEUE)
        return false; /* its patterns are queue patterns */
    for (uint32_t i = 0; i < root->nqpatterns; i++)
        if (dname_match(root->qpatterns[i], dest_short_name(q->name)))
            return true;
    return false;
}

/* The destination one of c's subscriptions may no longer read, or NULL;
 * wildcard queue legs on such queues are let go of (counted in *legs). */
static const struct sub *unreadable(struct conn *c, unsigned *legs)
{
    struct sub *s, *tmp;
    HASH_ITER(hh, c->subs, s, tmp) {
        if (!sub_has_legs(s)) {
            if (!s->dest->pattern && !route_allowed_quiet(c->who, s->dest, ROUTE_READ))
                return s;
            continue;
        }
        struct sub *l, *next;
        for (l = TAILQ_FIRST(&s->legs); l; l = next) {
            next = TAILQ_NEXT(l, leg_link);
            if (route_allowed_quiet(c->who, l->dest, ROUTE_READ))
                continue;
            if (!taken_by_pattern(s, l->dest))
                return l;
            sub_destroy(l);
            (*legs)++;
        }
    }
    return NULL;
}

/* Closes c with an ERROR saying why, if its login or a subscription's
 * read is gone; wildcard legs it may no longer read are let go of. */
static bool revoked(struct conn *c, bool close, unsigned *legs)
{
    const char *why = login_gone(c);
    const struct sub *s = why ? NULL : unreadable(c, legs);
    const char *queue = NULL, *browse = why || s ? NULL : browse_unreadable(c, &queue);
    if (!close || (!why && !s && !browse))
        return why || s || browse;
    char message[256], detail[1400];
    if (why) {
        snprintf(message, sizeof message, "logged out: %s", why);
        snprintf(detail, sizeof detail, "User '%.*s': %s.", utf8_cut(c->who->name, 128), c->who->name, why);
    } else {
        const char *id = browse ? browse : (s->root ? s->root : s)->id;
        acl_explain(c->who, browse ? queue : s->dest->name, ACL_READ, message, sizeof message, detail,
                    sizeof detail);
        size_t n = strlen(detail);
        snprintf(detail + n, sizeof detail - n, " The ACL changed (reloaded); subscription '%.*s' ends with the "
                 "connection.", utf8_cut(id, 128), id);
    }
    conn_kick(c, message, detail);
    return true;
}

void access_recheck(void)
{
    /* Every connection is judged before any is closed: what a closed one
     * held goes back to its queues at once, and must reach only consumers
     * that may read it now. */
    unsigned legs = 0;
    size_t n = 0, cap = 0;
    struct conn **out = NULL, *c;
    TAILQ_FOREACH(c, &srv.conns, link) {
        /* not logged in yet: its login is checked against the file as it
         * is when its check ends (auth.c) */
        if (c->state >= CONN_CLOSING || !c->who || !revoked(c, false, &legs))
            continue;
        if (n == cap && !(out = realloc(out, (cap = cap ? 2 * cap : 16) * sizeof *out)))
            abort();
        out[n++] = c;
    }
    /* closing one never frees another here: streams close from the loop */
    for (size_t i = 0; i < n; i++)
        revoked(out[i], true, &legs);
    free(out);
    durable_readers_refresh();
    if (n || legs)
        log_info("reload: %zu connection%s closed (user gone or access revoked); wildcard subscriptions let go of "
                 "%u queue%s they may no longer read", n, n == 1 ? "" : "s", legs, legs == 1 ? "" : "s");
}
