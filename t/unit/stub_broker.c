/* Recording stubs of the broker core (see stub_broker.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/dest.h"
#include "stompd/dup.h"
#include "stompd/durable.h"
#include "stompd/msg.h"
#include "stompd/notify.h"
#include "stompd/persist.h"
#include "stompd/queue.h"
#include "stompd/sched.h"
#include "stompd/selector.h"
#include "stub_broker.h"

struct stub_restore stub_restored[16];
size_t stub_nrestored;
struct stub_durable stub_durables[8];
size_t stub_ndurables;
char stub_dups[8][64];
size_t stub_ndups;
bool stub_dups_restored;
int64_t stub_sched_restored = -1;

static struct dest *dests[16];
static size_t ndests;
static struct durable *durs[8];

void stub_broker_reset(void)
{
    for (size_t i = 0; i < ndests; i++) {
        free(dests[i]->name);
        free(dests[i]);
    }
    for (size_t i = 0; i < stub_ndurables; i++) {
        selector_free(durs[i]->sel);
        free(durs[i]);
    }
    ndests = stub_nrestored = stub_ndurables = stub_ndups = 0;
    stub_dups_restored = false;
    stub_sched_restored = -1;
}

struct dest *dest_get(const char *name, struct conn *conn, const char **err)
{
    for (size_t i = 0; i < ndests; i++)
        if (!strcmp(dests[i]->name, name))
            return dests[i];
    enum dest_kind kind;
    if (!strncmp(name, "/queue/", 7))
        kind = DEST_QUEUE;
    else if (!strncmp(name, "/topic/", 7))
        kind = DEST_TOPIC;
    else {
        *err = "not a queue or topic";
        return NULL;
    }
    if (ndests == sizeof dests / sizeof dests[0])
        abort();
    struct dest *d = calloc(1, sizeof *d);
    d->name = strdup(name);
    d->kind = kind;
    d->q.dest = d;
    dests[ndests++] = d;
    return d;
}

size_t dest_count(void)
{
    return ndests;
}

struct durable *durable_restore(struct dest *topic, const char *client_id, const char *name, const char *selector,
                                struct selector *sel, const char *reader)
{
    if (stub_ndurables == sizeof durs / sizeof durs[0])
        abort();
    struct stub_durable *r = &stub_durables[stub_ndurables];
    snprintf(r->client_id, sizeof r->client_id, "%s", client_id);
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->topic, sizeof r->topic, "%s", topic->name);
    snprintf(r->selector, sizeof r->selector, "%s", selector ? selector : "");
    snprintf(r->reader, sizeof r->reader, "%s", reader ? reader : "");
    r->compiled = sel != NULL;
    struct durable *d = calloc(1, sizeof *d);
    d->dest = topic;
    d->sel = sel;
    d->q.dest = topic;
    d->q.durable = d;
    durs[stub_ndurables++] = d;
    return d;
}

struct durable *durable_find(const char *client_id, const char *name)
{
    for (size_t i = 0; i < stub_ndurables; i++)
        if (!strcmp(stub_durables[i].client_id, client_id) && !strcmp(stub_durables[i].name, name))
            return durs[i];
    return NULL;
}

size_t durable_count(void)
{
    return stub_ndurables;
}

void queue_restore(struct queue *q, uint64_t n)
{
    if (stub_nrestored == sizeof stub_restored / sizeof stub_restored[0])
        abort();
    struct stub_restore *r = &stub_restored[stub_nrestored++];
    snprintf(r->dest, sizeof r->dest, "%s", q->dest->name);
    r->n = n;
    r->durable = q->durable != NULL;
}

void dup_restore(const char *id, size_t len, uint64_t seq)
{
    if (stub_ndups < sizeof stub_dups / sizeof stub_dups[0])
        snprintf(stub_dups[stub_ndups++], sizeof stub_dups[0], "%.*s", (int)len, id);
}

void dup_restored(void)
{
    stub_dups_restored = true;
}

uint64_t persist_last_lsn(void)
{
    return 40;
}

void sched_restore(uint64_t n)
{
    stub_sched_restored = (int64_t)n;
}

struct dest *stub_find_dest(const char *name)
{
    for (size_t i = 0; i < ndests; i++)
        if (!strcmp(dests[i]->name, name))
            return dests[i];
    return NULL;
}

/* recovery.c tells the service manager it is alive (notify.c, not linked) */
void notify_alive(void)
{
}
