/* Recovery: rebuilding the broker from the store, at the start of a
 * standalone node and whenever a node becomes master. Destinations,
 * durable subscriptions, queued messages (with their delivery counts) and
 * the duplicate-detection window come back as the store holds them;
 * nothing here is journaled again. */
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
#include "stompd/persist.h"
#include "stompd/queue.h"
#include "stompd/recovery.h"
#include "stompd/selector.h"
#include "stompd/store.h"

struct redelivery {
    char *key;
    size_t len;
    uint32_t count;
    UT_hash_handle hh;
};

struct recovery {
    struct redelivery *r;
    uint64_t max_seq;
    uint64_t messages;
    uint64_t bad;
};

static uint32_t redeliveries_of(struct recovery *rc, const char *k, size_t kl)
{
    struct redelivery *r;
    HASH_FIND(hh, rc->r, k, kl, r);
    return r ? r->count : 0;
}

static int scan_r(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    struct recovery *rc = ctx;
    if (vl != 4)
        return 0;
    struct redelivery *r = calloc(1, sizeof *r);
    if (!r || !(r->key = malloc(kl - 1)))
        abort();
    memcpy(r->key, k + 1, kl - 1);
    r->len = kl - 1;
    const uint8_t *u = (const uint8_t *)v;
    r->count = (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
    HASH_ADD_KEYPTR(hh, rc->r, r->key, r->len, r);
    return 0;
}

static int scan_s(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    struct recovery *rc = ctx;
    const char *cid = k + 1;
    const char *nul = memchr(cid, '\0', kl - 1);
    if (!nul || vl < 8) {
        rc->bad++;
        return 0;
    }
    char *client_id = strndup(cid, (size_t)(nul - cid));
    char *name = strndup(nul + 1, kl - 1 - (size_t)(nul - cid) - 1);
    /* value: u32 length + topic, u32 length + selector */
    const uint8_t *u = (const uint8_t *)v;
    uint32_t l1 = (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
    if (4 + (size_t)l1 + 4 > vl) {
        rc->bad++;
        goto out;
    }
    char *topic = strndup(v + 4, l1);
    u = (const uint8_t *)v + 4 + l1;
    uint32_t l2 = (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
    if (8 + (size_t)l1 + l2 != vl) {
        rc->bad++;
        free(topic);
        goto out;
    }
    char *seltext = l2 ? strndup(v + 8 + l1, l2) : NULL;
    struct selector *sel = NULL;
    char err[256];
    const char *derr;
    struct dest *d = dest_get(topic, NULL, &derr);
    if (!d || (seltext && selector_compile(seltext, &sel, err, sizeof err) != 0)) {
        log_warn("store: durable subscription %s/%s on %s cannot be restored", client_id, name, topic);
        rc->bad++;
    } else {
        durable_restore(d, client_id, name, seltext, sel);
    }
    free(seltext);
    free(topic);
out:
    free(client_id);
    free(name);
    return 0;
}

static void restore(struct recovery *rc, struct queue *q, struct msg *m, const char *k, size_t kl)
{
    m->journaled = true;
    if (m->seq > rc->max_seq)
        rc->max_seq = m->seq;
    queue_push_recovered(q, m, redeliveries_of(rc, k, kl));
    msg_unref(m);
    rc->messages++;
}

static int scan_q(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    struct recovery *rc = ctx;
    struct msg *m = journal_decode_msg(v, vl);
    const char *err;
    struct dest *d = m ? dest_get(m->dest, NULL, &err) : NULL;
    if (!m || !d || !dest_is_queue(d)) {
        rc->bad++;
        msg_unref(m);
        return 0;
    }
    restore(rc, &d->q, m, k, kl);
    return 0;
}

static int scan_t(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    struct recovery *rc = ctx;
    const char *cid = k + 1;
    const char *n1 = memchr(cid, '\0', kl - 1);
    const char *name = n1 ? n1 + 1 : NULL;
    const char *n2 = name ? memchr(name, '\0', (size_t)(k + kl - name)) : NULL;
    struct msg *m = journal_decode_msg(v, vl);
    if (!n2 || !m) {
        rc->bad++;
        msg_unref(m);
        return 0;
    }
    char *c = strndup(cid, (size_t)(n1 - cid)), *nm = strndup(name, (size_t)(n2 - name));
    struct durable *du = durable_find(c, nm);
    free(c);
    free(nm);
    if (!du) {
        rc->bad++;
        msg_unref(m);
        return 0;
    }
    restore(rc, &du->q, m, k, kl);
    return 0;
}

static int scan_d(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    if (vl == 8)
        dup_restore(k + 1, kl - 1, jkey_get_be64(v));
    return 0;
}

int recovery_rebuild(uint64_t *max_seq, char *err, size_t errlen)
{
    /* Fault injection for the cluster tests: a rebuild from a big store,
     * which blocks the loop for this long, without having to fill one. */
    const char *slow = getenv("STOMPD_TEST_SLOW_REBUILD_MS");
    if (slow && atoi(slow) > 0)
        usleep((useconds_t)atoi(slow) * 1000);
    struct recovery rc = {0};
    char p;
    int r = 0;
    p = KEY_R;
    r |= store_scan(&p, 1, scan_r, &rc);
    p = KEY_S;
    r |= store_scan(&p, 1, scan_s, &rc);
    p = KEY_Q;
    r |= store_scan(&p, 1, scan_q, &rc);
    p = KEY_T;
    r |= store_scan(&p, 1, scan_t, &rc);
    p = KEY_D;
    r |= store_scan(&p, 1, scan_d, &rc);
    struct redelivery *x, *tmp;
    HASH_ITER(hh, rc.r, x, tmp) {
        HASH_DEL(rc.r, x);
        free(x->key);
        free(x);
    }
    if (r) {
        snprintf(err, errlen, "cannot read the store during recovery");
        return -EIO;
    }
    dup_restored();
    *max_seq = rc.max_seq;
    if (rc.bad)
        log_warn("store: %" PRIu64 " records could not be restored (see above)", rc.bad);
    log_info("store: recovered %" PRIu64 " messages, %zu destinations, %zu durable subscriptions (journal at lsn %" PRIu64 ")",
             rc.messages, dest_count(), durable_count(), persist_last_lsn());
    return 0;
}
