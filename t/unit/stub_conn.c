/* Recording stubs of what commit.c calls above it (connections,
 * destinations, the duplicate window): every call appends a line to a
 * transcript the test compares with what it expects. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/dup.h"
#include "stompd/msg.h"
#include "stompd/queue.h"
#include "stompd/server.h"
#include "stompd/stream.h"
#include "stub_conn.h"
#include "transcript.h"

struct config config;
struct server srv;
void conn_send_receipt(struct conn *c, const char *receipt)
{
    say("c%llu RECEIPT %s", (unsigned long long)c->id, receipt);
}

void conn_error(struct conn *c, const char *message, const char *receipt, const char *detail)
{
    say("c%llu ERROR %s (%s)", (unsigned long long)c->id, message, receipt ? receipt : "-");
    c->state = CONN_CLOSING;
}

void conn_close_after_flush(struct conn *c)
{
    say("c%llu close", (unsigned long long)c->id);
    c->state = CONN_CLOSING;
}

void conn_output_lost(struct conn *c, const char *why)
{
    say("c%llu output lost (%s)", (unsigned long long)c->id, why);
}

void stream_pause(struct stream *s, uint8_t reason)
{
    if (!(s->paused & reason))
        say("pause %u", reason);
    s->paused |= reason;
}

void stream_resume(struct stream *s, uint8_t reason)
{
    if (s->paused & reason)
        say("resume %u", reason);
    s->paused &= (uint8_t)~reason;
}

void stream_want_flush(struct stream *s)
{
}

void conn_watch_peer(struct conn *c)
{
    (void)c; /* conn_timeout's check, not the ops' business */
}

static struct dest dests[4];

struct dest *stub_dest(int i)
{
    struct dest *d = &dests[i];
    if (!d->name) {
        static char names[4][16];
        snprintf(names[i], sizeof names[i], "/queue/q%d", i);
        d->name = names[i];
        d->kind = DEST_QUEUE;
        TAILQ_INIT(&d->blocked);
    }
    return d;
}

struct dest *dest_find(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (dests[i].name && !strcmp(dests[i].name, name))
            return &dests[i];
    return NULL;
}

int dest_kind_of(const char *name, enum dest_kind *kind, const char **err)
{
    *kind = DEST_QUEUE;
    return 0;
}

struct dest *dest_get(const char *name, struct conn *conn, const char **err)
{
    return dest_find(name);
}

void dest_deliver(struct dest *d, struct msg *m)
{
    say("deliver %s to %s", m->id, d->name);
}

void dest_reserve(int64_t bytes)
{
    stub_reserved += bytes;
}

int64_t stub_reserved;

void dest_note_blocked(struct dest *d)
{
}

void dup_remember(const char *id, uint64_t lsn, bool journaled)
{
    if (lsn != UINT64_MAX)
        say("dup %s at %llu", id, (unsigned long long)lsn);
}

void dup_set_lsn(const char *id, uint64_t lsn)
{
    say("dup %s at %llu", id, (unsigned long long)lsn);
}

/* Auto-ack deliveries held with their output (commit_hold_unsent): these
 * tests make none, so none is forgotten or given back. */
struct unsent *queue_unsent_new(struct qentry *e, uint64_t pos)
{
    (void)e;
    (void)pos;
    abort();
}

void queue_unsent_free(struct unsent *u)
{
    (void)u;
    abort();
}

void queue_unsent_return(struct unsent *u)
{
    (void)u;
    abort();
}
