/* The duplicate-detection window: a hash of ids and a FIFO ring giving
 * eviction order. Evicting a journaled id journals its removal so every
 * replica's window stays the same. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "stompd/config.h"
#include "stompd/dup.h"
#include "stompd/persist.h"

struct dup {
    char *id;
    uint64_t lsn;   /* entry that journaled it, or the order key while restoring */
    bool journaled;
    UT_hash_handle hh;
};

static struct dup *ids;
static struct dup **ring;
static size_t ring_cap, ring_head, ring_len;

static void ring_init(void)
{
    if (ring)
        return;
    ring_cap = (size_t)config.dup_window;
    ring = calloc(ring_cap, sizeof *ring);
    if (!ring)
        abort();
}

static void drop(struct dup *d, bool journal)
{
    HASH_DEL(ids, d);
    if (journal && d->journaled)
        persist_dup_forget(d->id);
    free(d->id);
    free(d);
}

bool dup_seen(const char *id, uint64_t *lsn)
{
    struct dup *d;
    HASH_FIND_STR(ids, id, d);
    if (d && lsn)
        *lsn = d->journaled ? d->lsn : 0;
    return d != NULL;
}

static void push(struct dup *d, bool journal)
{
    ring_init();
    if (ring_len == ring_cap) {
        drop(ring[ring_head], journal);
        ring_head = (ring_head + 1) % ring_cap;
        ring_len--;
    }
    ring[(ring_head + ring_len) % ring_cap] = d;
    ring_len++;
}

void dup_remember(const char *id, uint64_t lsn, bool journaled)
{
    if (config.dup_window == 0)
        return;
    struct dup *d = calloc(1, sizeof *d);
    if (!d || !(d->id = strdup(id)))
        abort();
    d->lsn = lsn;
    d->journaled = journaled;
    HASH_ADD_KEYPTR(hh, ids, d->id, strlen(d->id), d);
    push(d, true);
}

void dup_set_lsn(const char *id, uint64_t lsn)
{
    struct dup *d;
    HASH_FIND_STR(ids, id, d);
    if (d)
        d->lsn = lsn;
}

void dup_restore(const char *id, size_t len, uint64_t seq)
{
    struct dup *d = calloc(1, sizeof *d);
    if (!d || !(d->id = strndup(id, len)))
        abort();
    d->lsn = seq;
    d->journaled = true;
    HASH_ADD_KEYPTR(hh, ids, d->id, strlen(d->id), d);
}

static int by_order(const void *a, const void *b)
{
    const struct dup *x = *(struct dup *const *)a, *y = *(struct dup *const *)b;
    return x->lsn < y->lsn ? -1 : x->lsn > y->lsn;
}

void dup_restored(void)
{
    size_t n = HASH_COUNT(ids), i = 0;
    if (n == 0)
        return;
    struct dup **v = malloc(n * sizeof *v), *d, *tmp;
    if (!v)
        abort();
    HASH_ITER(hh, ids, d, tmp)
        v[i++] = d;
    qsort(v, n, sizeof *v, by_order);
    for (i = 0; i < n; i++) {
        v[i]->lsn = 0; /* durable already */
        push(v[i], true);
    }
    free(v);
}

size_t dup_count(void)
{
    return HASH_COUNT(ids);
}

void dup_free_all(void)
{
    struct dup *d, *tmp;
    HASH_ITER(hh, ids, d, tmp)
        drop(d, false);
    free(ring);
    ring = NULL;
    ring_cap = ring_head = ring_len = 0;
}
