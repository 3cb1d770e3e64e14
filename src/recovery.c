/* Recovery: rebuilding the broker from the store, at the start of a
 * standalone node and whenever a node becomes master. Destinations,
 * durable subscriptions, each queue's message count, the number of
 * scheduled messages and the duplicate-detection window come back as the
 * store holds them; the messages themselves stay in the store and are
 * paged in as consumers (or the scheduler's clock) need them, so this
 * costs the same whatever the backlog. Nothing here is journaled again. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include <unistd.h>

#include "stompd/dest.h"
#include "stompd/dup.h"
#include "stompd/durable.h"
#include "stompd/journal.h"
#include "stompd/log.h"
#include "stompd/msg.h"
#include "stompd/notify.h"
#include "stompd/persist.h"
#include "stompd/queue.h"
#include "stompd/recovery.h"
#include "stompd/sched.h"
#include "stompd/selector.h"
#include "stompd/store.h"

struct recovery {
    uint64_t messages;
    uint64_t scheduled;
    uint64_t bad;
    uint64_t keys;
};

/* Each key read: a rebuild under way is no stuck loop (notify_alive). */
static void progress(struct recovery *rc)
{
    if (++rc->keys % 4096 == 0)
        notify_alive();
}

/* A destination kept while idle (a virtual topic's consumer queue). */
static int scan_n(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    struct recovery *rc = ctx;
    progress(rc);
    char name[1100];
    if (kl < 2 || kl - 1 >= sizeof name) {
        rc->bad++;
        return 0;
    }
    memcpy(name, k + 1, kl - 1);
    name[kl - 1] = '\0';
    const char *err;
    struct dest *d = dest_get(name, NULL, &err);
    if (!d) {
        log_warn("store: destination %s cannot be restored: %s", name, err);
        rc->bad++;
        return 0;
    }
    d->kept = true;
    return 0;
}

static uint32_t be32(const char *p)
{
    const uint8_t *u = (const uint8_t *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static int scan_s(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    struct recovery *rc = ctx;
    progress(rc);
    const char *cid = k + 1;
    const char *nul = memchr(cid, '\0', kl - 1);
    if (!nul || vl < 8) {
        rc->bad++;
        return 0;
    }
    char *client_id = strndup(cid, (size_t)(nul - cid));
    char *name = strndup(nul + 1, kl - 1 - (size_t)(nul - cid) - 1);
    /* value: u32 length + topic, u32 length + selector, and since
     * JOP_SUB_SET u32 length + reader */
    uint32_t l1 = be32(v);
    if (4 + (size_t)l1 + 4 > vl) {
        rc->bad++;
        goto out;
    }
    char *topic = strndup(v + 4, l1);
    uint32_t l2 = be32(v + 4 + l1);
    size_t end = 8 + (size_t)l1 + l2, l3 = 0;
    if (end + 4 <= vl) {
        l3 = be32(v + end);
        end += 4 + l3;
    }
    if (end != vl) {
        rc->bad++;
        free(topic);
        goto out;
    }
    char *seltext = l2 ? strndup(v + 8 + l1, l2) : NULL;
    char *reader = l3 ? strndup(v + 12 + l1 + l2, l3) : NULL;
    struct selector *sel = NULL;
    char err[256];
    const char *derr;
    struct dest *d = dest_get(topic, NULL, &derr);
    if (!d || (seltext && selector_compile(seltext, &sel, err, sizeof err) != 0)) {
        log_warn("store: durable subscription %s/%s on %s cannot be restored", client_id, name, topic);
        rc->bad++;
    } else {
        durable_restore(d, client_id, name, seltext, sel, reader);
    }
    free(reader);
    free(seltext);
    free(topic);
out:
    free(client_id);
    free(name);
    return 0;
}

/* A queue's counter: how many messages the store holds for it. They
 * stay there: the queue reads them back as consumers need them. */
static int scan_c(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    struct recovery *rc = ctx;
    progress(rc);
    if (kl == 2 && k[1] == KEY_W && vl == 16) {
        /* scheduled messages: they stay in the store, read back by due
         * time as they near it */
        rc->scheduled = jkey_get_be64(v);
        sched_restore(rc->scheduled);
        return 0;
    }
    if (vl != 16 || kl < 3 || k[kl - 1] != '\0') {
        rc->bad++;
        return 0;
    }
    uint64_t n = jkey_get_be64(v);
    const char *p = k + 1;
    size_t pl = kl - 1;
    struct queue *q = NULL;
    if (p[0] == KEY_Q) {
        char name[1100];
        if (pl - 2 >= sizeof name) {
            rc->bad++;
            return 0;
        }
        memcpy(name, p + 1, pl - 2);
        name[pl - 2] = '\0';
        const char *err;
        struct dest *d = dest_get(name, NULL, &err);
        if (d && dest_is_queue(d))
            q = &d->q;
    } else if (p[0] == KEY_T) {
        const char *cid = p + 1;
        const char *n1 = memchr(cid, '\0', pl - 1);
        if (n1 && (size_t)(n1 - p) < pl - 1) {
            char *c = strndup(cid, (size_t)(n1 - cid));
            char *nm = strndup(n1 + 1, (size_t)(p + pl - 1 - (n1 + 1)));
            struct durable *du = durable_find(c, nm);
            free(c);
            free(nm);
            if (du)
                q = &du->q;
        }
    }
    if (!q) {
        log_warn("store: messages of an unknown queue or subscription cannot be restored");
        rc->bad++;
        return 0;
    }
    queue_restore(q, n);
    rc->messages += n;
    return 0;
}

static int scan_d(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    progress(ctx);
    if (vl == 8)
        dup_restore(k + 1, kl - 1, jkey_get_be64(v));
    return 0;
}

int recovery_rebuild(uint64_t *max_seq, char *err, size_t errlen)
{
    /* Fault injection for the cluster tests: a rebuild from a big store,
     * which blocks the loop for this long, without having to fill one. */
    const char *slow = getenv("STOMPD_TEST_SLOW_REBUILD_MS");
    for (int ms = slow ? atoi(slow) : 0; ms > 0; ms -= 50) {
        usleep((useconds_t)(ms < 50 ? ms : 50) * 1000);
        notify_alive(); /* as a real rebuild's keys do */
    }
    struct recovery rc = {0};
    char p = KEY_N;
    int r = store_scan(&p, 1, scan_n, &rc);
    p = KEY_S;
    r |= store_scan(&p, 1, scan_s, &rc);
    p = KEY_C;
    r |= store_scan(&p, 1, scan_c, &rc);
    p = KEY_D;
    r |= store_scan(&p, 1, scan_d, &rc);
    if (r) {
        snprintf(err, errlen, "cannot read the store during recovery");
        return -EIO;
    }
    dup_restored();
    *max_seq = store_max_seq();
    if (rc.bad)
        log_warn("store: %" PRIu64 " records could not be restored (see above)", rc.bad);
    log_info("store: recovered %" PRIu64 " messages, %zu destinations, %zu durable subscriptions, %" PRIu64
             " scheduled messages (journal at lsn %" PRIu64 ")",
             rc.messages, dest_count(), durable_count(), rc.scheduled, persist_last_lsn());
    return 0;
}
