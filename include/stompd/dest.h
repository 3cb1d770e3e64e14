/* Destinations: the registry of queues and topics by name, their kinds,
 * memory accounting against the configured limits, and the producers
 * paused while a destination is full. */
#ifndef STOMPD_DEST_H
#define STOMPD_DEST_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <uthash.h>

#include "stompd/queue.h"

enum dest_kind { DEST_QUEUE, DEST_TOPIC, DEST_TEMP_QUEUE, DEST_TEMP_TOPIC };

struct conn;
struct op;
struct principal;
struct durable;

struct dest_stats {
    uint64_t enqueued;    /* messages accepted */
    uint64_t dequeued;    /* messages acked (or auto-acked) */
    uint64_t dispatched;  /* deliveries, redeliveries included */
    uint64_t redelivered;
    uint64_t expired;
    uint64_t dead_lettered;
    uint64_t dropped;
};

struct dest {
    char *name;
    enum dest_kind kind;
    bool pattern;                       /* a wildcard topic (/topic/a.*): holds subscriptions to
                                         * every topic it matches, takes no SEND (route.h) */
    bool kept;                          /* exists until deleted, across restarts, even when idle
                                         * (a virtual topic's consumer queue, journaled) */
    UT_hash_handle hh;
    struct queue q;                     /* queue kinds */
    TAILQ_HEAD(, sub) subscribers;      /* topic kinds: active subscriptions */
    uint32_t nsubscribers;
    TAILQ_HEAD(, durable) durables;     /* topic kinds: durable subscriptions */
    uint32_t ndurables;
    struct conn *owner;                 /* temporary destinations */
    char *local_name;                   /* a temporary one: the name its connection gave it
                                         * (/temp-queue/NAME), which its MESSAGEs carry */
    TAILQ_ENTRY(dest) owner_link;
    int64_t mem;                        /* bytes of messages held */
    TAILQ_HEAD(, op) blocked;           /* producers waiting for room */
    struct dest_stats st;
    bool reclaim;                       /* idle, deleted before the loop sleeps (dest_reclaim) */
    bool idle_seen;                     /* idle at the last sweep ... */
    uint64_t idle_enqueued;             /* ... with this many messages accepted */
    ev_tstamp idle_since;               /* ... since then */
};
TAILQ_HEAD(dest_list, dest);

static inline bool dest_is_queue(const struct dest *d) { return d->kind == DEST_QUEUE || d->kind == DEST_TEMP_QUEUE; }
static inline bool dest_is_temp(const struct dest *d) { return d->kind == DEST_TEMP_QUEUE || d->kind == DEST_TEMP_TOPIC; }
/* The name after its /queue/ or /topic/ prefix: the '.'-separated
 * segments wildcards match (dname.h). */
const char *dest_short_name(const char *name);

/* Classify a name; returns -EINVAL with a message for an unknown prefix or
 * an empty name. */
int dest_kind_of(const char *name, enum dest_kind *kind, const char **err) __attribute__((warn_unused_result));
struct dest *dest_find(const char *name);
/* A connection's own /temp-queue/NAME and /temp-topic/NAME map to a
 * broker-wide /remote-temp-queue/... name other clients can send to (the
 * reply-to rewrite). Other names come back unchanged. */
const char *dest_resolve_temp(const struct conn *c, const char *name, char *buf, size_t len);
/* Whether a broker-wide temporary name (one not held now) was given out
 * to a connection that has closed since, in this process or a former one
 * (before a restart or failover), rather than never given out, or held by
 * a connection still open that never made it. */
bool dest_temp_closed(const char *name);
/* Find or create. For temporary destinations `conn` becomes the owner on
 * creation. Returns NULL with *err set when the name is invalid. */
struct dest *dest_get(const char *name, struct conn *conn, const char **err);
/* Find or create on behalf of a client (or the console): like dest_get(),
 * but creating one past broker.max_destinations is refused with -ENOSPC,
 * an invalid name with -EINVAL, and creating one who has no admin
 * permission on (acl.h) with -EACCES; *err says why (for -EACCES the
 * ERROR's detail, dest_denied() its message). The broker's own creations
 * (dead-letter queues, recovery) use dest_get() and are never refused. */
int dest_open(const char *name, struct conn *conn, const struct principal *who, struct dest **out, const char **err)
    __attribute__((warn_unused_result));
const char *dest_denied(void);
/* Remove a destination: its messages are dropped, its consumers are told
 * nothing (callers close or unsubscribe them first). */
void dest_delete(struct dest *d);
void dest_free_all(void);
/* Remove destinations found idle at two visits of the sweep in a row
 * with nothing sent to them in between: no message held anywhere, no
 * consumer, subscriber, durable subscription or paused producer. Each
 * call visits at most 1024 destinations, going on from where the last
 * stopped; *more: the sweep has not come round to the first yet (the
 * caller calls again soon, so that every sweep visits them all).
 * Temporary ones go with their connection instead. Returns how many
 * went. */
size_t dest_collect_idle(bool *more);
/* Delete the idle destinations that made room at broker.max_destinations
 * (still idle), before the loop sleeps. Returns how many went. */
size_t dest_reclaim(void);

/* Iterate all destinations (sorted by name for stable output). */
size_t dest_count(void);
void dest_foreach(void (*fn)(struct dest *d, void *arg), void *arg);
/* Of v's n destinations, keeps the max with the most messages waiting,
 * then the most memory, in v by name. Returns how many it kept. What
 * /metrics and /api/overview list one by one (http.max_listed_destinations). */
size_t dest_top(struct dest **v, size_t n, size_t max);

/* Memory accounting; releasing may wake paused producers. */
void dest_mem_add(struct dest *d, int64_t bytes);
bool dest_is_full(const struct dest *d);
/* A producer is about to wait for room in d (commit.c's op_wait_room):
 * a drain of the broker's memory wakes it too. */
void dest_note_blocked(struct dest *d);

int64_t dest_total_mem(void);
/* Memory held for no destination yet (transactions, messages waiting for
 * the journal), charged to broker.memory_limit. */
void dest_reserve(int64_t bytes);

/* A message enters the destination: queued, or published to subscribers. */
void dest_deliver(struct dest *d, struct msg *m);

#endif
