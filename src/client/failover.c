/* Connecting and reconnecting: rounds over the broker list with ActiveMQ's
 * back-off between them, and, once a broker answers, the replay that makes
 * the new connection continue the old session (subscriptions first, then
 * every frame still waiting for its RECEIPT, in the original order). */
#include "config.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

static void sleep_until(int64_t when)
{
    int left;
    while ((left = client_left(when)) > 0)
        poll(NULL, 0, left);
}

static void replay(struct stompc *c)
{
    struct csub *s;
    TAILQ_FOREACH(s, &c->subs, link) {
        /* with its receipt while stompc_subscribe still waits for it */
        net_put(c, s->frame, s->frame->pending);
        c->st.resubscribed++;
    }
    struct ofr *o;
    TAILQ_FOREACH(o, &c->pending, link) {
        if (o->owned_by_sub)
            continue;
        net_put(c, o, true);
        c->st.resent++;
    }
}

/* A broker answered CONNECTED: make it the session's connection. 0, or
 * < 0 when it was lost again while we replayed. */
static int session_start(struct stompc *c)
{
    bool again = c->ever_connected;
    c->state = CS_CONNECTED;
    c->gen++;
    c->ever_connected = true;
    c->st.connects++;
    if (again) {
        c->st.reconnects++;
        replay(c);
        int rc = net_flush(c);
        if (rc < 0)
            return rc;
    }
    c->failures = 0;
    c->next_round_at = 0;
    c->last_failed = SIZE_MAX;
    if (again)
        client_event(c, CEV_RECONNECT, 0, c->uri.brokers[c->broker].text, NULL);
    return 0;
}

int failover_connect(struct stompc *c, int64_t deadline)
{
    if (c->state == CS_CONNECTED)
        return 0;
    size_t n = c->uri.nbrokers;
    size_t *order = xcalloc(n, sizeof *order);
    char last[sizeof c->err];
    last[0] = '\0';
    int rc;
    for (;;) {
        int64_t now = client_now();
        if (c->next_round_at > now) {
            if (deadline >= 0 && deadline < c->next_round_at) {
                /* Not our turn before the caller's deadline: keep the
                 * schedule (and the failure count) for the next call. */
                sleep_until(deadline);
                rc = client_fail(c, STOMPC_ETIMEDOUT, "no broker connection within the time limit; last error: %s",
                                 c->connect_err);
                break;
            }
            sleep_until(c->next_round_at);
        }
        /* A round that is due runs even past the deadline (a refused
         * connection costs nothing): one per call at least. */
        uri_connect_order(&c->uri, c->last_failed, &c->rng, order);
        rc = -1;
        for (size_t i = 0; i < n && rc != 0; i++) {
            int64_t until = client_now() + c->connect_timeout;
            rc = net_open(c, order[i], until);
            if (rc == 0) {
                rc = session_start(c);
                if (rc == 0)
                    break;
            }
            c->last_failed = order[i];
            snprintf(last, sizeof last, "%s", c->err);
        }
        if (rc == 0)
            break;
        c->failures++;
        if (!c->uri.failover) {
            /* tcp://: the connect error as it is */
            client_gave_up(c, last);
            snprintf(c->err, sizeof c->err, "%s", last);
            rc = rc < 0 ? rc : STOMPC_ECONNECT;
            break;
        }
        if (uri_give_up(&c->uri, c->failures, !c->ever_connected)) {
            char why[sizeof c->err];
            snprintf(why, sizeof why, "gave up after %u round(s) of connection attempts to %zu broker(s); "
                     "last error: %s", c->failures, n, last);
            client_gave_up(c, why);
            snprintf(c->err, sizeof c->err, "%s", why);
            rc = STOMPC_ECONNECT;
            break;
        }
        c->state = CS_LOST;
        c->next_round_at = client_now() + uri_reconnect_delay(&c->uri, c->failures);
        snprintf(c->connect_err, sizeof c->connect_err, "%s", last);
        snprintf(c->err, sizeof c->err, "%s", last);
    }
    free(order);
    return rc;
}

int failover_ensure(struct stompc *c, int64_t deadline)
{
    switch (c->state) {
    case CS_CONNECTED:
        return 0;
    case CS_LOST:
        return failover_connect(c, deadline);
    case CS_IDLE:
        return client_fail(c, STOMPC_ECLOSED, "not connected");
    case CS_DEAD:
        break;
    }
    return client_fail(c, STOMPC_ECLOSED, "not connected: %s", c->closed_why);
}
