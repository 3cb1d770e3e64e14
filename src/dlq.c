/* Dead-letter queues: one shared (broker.dlq, /queue/ActiveMQ.DLQ by
 * default) or one per destination (broker.per_destination_dlq), named as
 * ActiveMQ's individual strategy names them. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "stompd/config.h"
#include "stompd/dest.h"
#include "stompd/dlq.h"
#include "stompd/log.h"
#include "stompd/msg.h"
#include "stompd/server.h"
#include "stompd/persist.h"
#include "stompd/publish.h"
#include "stompd/queue.h"
#include "stompd/route.h"

#define DLQ_INDIVIDUAL_PREFIX "/queue/ActiveMQ.DLQ."

bool dlq_is_dlq(const struct dest *d)
{
    return strcmp(d->name, config.dlq) == 0 ||
           strncmp(d->name, DLQ_INDIVIDUAL_PREFIX, strlen(DLQ_INDIVIDUAL_PREFIX)) == 0;
}

void dlq_name_for(const struct dest *d, char *out, size_t len)
{
    if (!config.per_destination_dlq) {
        snprintf(out, len, "%s", config.dlq);
        return;
    }
    const char *slash = strchr(d->name + 1, '/');
    snprintf(out, len, DLQ_INDIVIDUAL_PREFIX "%s.%s", dest_is_queue(d) ? "Queue" : "Topic",
             slash ? slash + 1 : d->name);
}

bool dlq_move(struct qentry *e, const char *reason)
{
    struct dest *from = e->q->dest;
    struct msg *m = e->msg;
    char name[1200];
    const char *err;
    struct dest *named = from;
    if (from->pattern)
        /* a wildcard subscription's backlog: the topic the message went
         * to names it (the shared DLQ if that topic has gone) */
        named = dest_find(m->dest);
    if (named)
        dlq_name_for(named, name, sizeof name);
    else
        snprintf(name, sizeof name, "%s", config.dlq);
    struct dest *dlq = dest_get(name, NULL, &err);
    if (!dlq && strcmp(name, config.dlq)) {
        /* its own dead-letter queue cannot be (its name would be over
         * 1024 bytes): the shared one rather than nowhere */
        log_warn("dead-lettering %s from %s to %s: %s: %s", m->id, from->name, config.dlq, name, err);
        snprintf(name, sizeof name, "%s", config.dlq);
        dlq = dest_get(name, NULL, &err);
    }
    /* A non-persistent message would stay in the dead-letter queue's
     * memory (a persistent one pages): with nobody reading it, one client
     * NACKing everything filled broker.memory_limit and paused every
     * producer (helper-99). At its limits it goes, as ActiveMQ discards
     * every non-persistent dead letter (processNonPersistent=false). */
    bool discard = dlq && !m->persistent && dest_is_full(dlq);
    if (!dlq) {
        log_err("cannot dead-letter %s from %s: %s", m->id, from->name, err);
    } else if (discard) {
        srv.st.dead_letters_discarded++;
        log_debug("message %s from %s discarded: its dead-letter queue %s is full (%s)", m->id, from->name,
                  dlq->name, reason);
    }
    if (!dlq || discard) {
        bool journaled = persist_dequeue(e);
        queue_entry_done(e);
        return journaled;
    }
    uint32_t n = m->nheaders + 2;
    struct stomp_header hs[n];
    hs[0] = (struct stomp_header){"original-destination", m->dest, 20, (uint32_t)strlen(m->dest)};
    hs[1] = (struct stomp_header){"dlqDeliveryFailureCause", reason, 23, (uint32_t)strlen(reason)};
    uint32_t k = 2;
    for (uint32_t i = 0; i < m->nheaders; i++) {
        if (!strcmp(m->headers[i].name, "original-destination") ||
            !strcmp(m->headers[i].name, "dlqDeliveryFailureCause"))
            continue;
        hs[k++] = m->headers[i];
    }
    struct msg *copy = msg_new(dlq->name, m->id, server_next_seq(), m->timestamp, m->persistent,
                               m->priority, 0, hs, k, m->body, m->body_len);
    from->st.dead_lettered++;
    srv.st.dead_lettered++;
    log_debug("message %s from %s dead-lettered to %s: %s", m->id, from->name, dlq->name, reason);
    bool journaled = e->msg->journaled || copy->persistent;
    const char *why;
    /* like any persistent message: visible only once committed */
    struct route r;
    route_single(&r, dlq);
    int rc = broker_publish(&r, copy, &(struct publish){.moved_from = e}, NULL, &why);
    route_free(&r);
    msg_unref(copy);
    return rc >= 0 && journaled && persist_enabled();
}
