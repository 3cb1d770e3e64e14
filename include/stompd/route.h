/* Routing: which concrete destinations a frame names, and which wildcard
 * subscriptions a destination reaches (DESIGN §11's "wildcard/composite
 * router").
 *
 * - A SEND (or any producer's) destination header is a list,
 *   "/queue/a,/topic/b" (ActiveMQ's composite destinations): one copy
 *   goes to each. A wildcard name there is an error. A topic named
 *   VirtualTopic.> also reaches every queue Consumer.<group>.<topic>
 *   (ActiveMQ's virtual topics, default naming): each consumer group
 *   gets every message, shared among the group's consumers.
 * - A SUBSCRIBE header is a list too; each element is a destination or a
 *   pattern ('*' one segment, '>' the rest, dname.h). A topic pattern is
 *   a destination of its own that every matching topic publishes to
 *   (found through a trie, trie.h); a queue pattern makes the
 *   subscription consume from every matching queue, existing and future.
 *
 * Per-destination authorization (auth.acl, acl.h) happens here only:
 * route_allowed() for every destination a producer names (write) and
 * every destination or pattern a subscriber names (read);
 * route_allowed_quiet() for every queue a virtual topic adds (write) or a
 * wildcard consumer takes on (read), and (topic.c) every topic a wildcard
 * topic subscription receives from (read). */
#ifndef STOMPD_ROUTE_H
#define STOMPD_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "stompd/dest.h"

struct conn;
struct sub;

struct principal;

enum route_perm { ROUTE_READ, ROUTE_WRITE };

/* May who (NULL: the broker itself) read or write destination name (a
 * full name, or a pattern, checked as named) under auth.acl (acl.h)? A
 * refusal is counted as a refused frame. */
bool route_allowed(const struct principal *who, const char *name, enum route_perm perm);
/* The same for a concrete destination a pattern or a virtual topic adds
 * (acl_allows on it), not counted: a wildcard subscription reads only the
 * destinations it matches and may read, a virtual topic's copy goes only
 * to the consumer queues the producer may write to. */
bool route_allowed_quiet(const struct principal *who, const struct dest *d, enum route_perm perm);
/* After -EACCES from route_send/route_subscribe: the ERROR's message
 * (names the permission and the destination); *err was its detail. */
const char *route_denied(void);

/* The concrete destinations of a SEND. */
struct route {
    struct dest **v;    /* the named ones first (in order, without repeats), then virtual topics' queues */
    struct dest **via;  /* for each, the virtual topic that added it, or NULL (NULL: none was) */
    uint32_t n, cap;
    uint32_t nnamed;
    uint32_t gone;      /* elements left out: temporary destinations whose connection has closed */
    char *spec;         /* the list as resolved (temporary names as the broker knows them): what a
                         * scheduled message keeps to be routed again when it fires */
};

/* Resolve a SEND's destination header. admitted: the frame was accepted
 * before (a transaction's SEND at COMMIT, a scheduled message firing):
 * nothing is refused for broker.max_destinations. An element naming
 * another connection's temporary destination that has closed with it is
 * left out and counted in gone (the route may then be empty: the message
 * goes nowhere, as a reply to a requester that went away). c is NULL for
 * producers without a connection; who is on whose behalf (write on each
 * element, admin to create one; NULL: the broker itself). Returns 0, or
 * -EINVAL (a bad name), -ENOSPC (too many destinations), -EACCES (not
 * allowed), -ENOENT (a temporary name this broker never gave out) with
 * *err saying why; route_free in every case. */
int route_send(struct conn *c, const struct principal *who, const char *names, bool admitted, struct route *out,
               const char **err)
    __attribute__((warn_unused_result));
/* A route of one destination (dead-letter moves). */
void route_single(struct route *r, struct dest *d);
void route_free(struct route *r);

/* What a SUBSCRIBE names. */
struct route_sub {
    struct route_sub_target {
        struct dest *d;     /* a queue, a topic or a topic pattern */
        char *qpattern;     /* or else a queue pattern (the name after /queue/) */
    } *v;
    uint32_t n;
};
int route_subscribe(struct conn *c, const char *names, struct route_sub *out, const char **err)
    __attribute__((warn_unused_result));
void route_sub_free(struct route_sub *r);

/* A subscription consumes from every queue matching pattern (the name
 * after /queue/): those that exist get a leg now, later ones when
 * created. */
void route_watch_queues(struct sub *root, const char *pattern);
void route_unwatch_queues(struct sub *root, const char *pattern);

/* Every wildcard topic (pattern destination) that matches topic d. */
void route_topic_patterns(const struct dest *d, void (*fn)(struct dest *pattern, void *arg), void *arg);

/* A virtual topic's consumer queue (Consumer.<group>.VirtualTopic.<x>)? */
bool route_is_virtual_queue(const struct dest *d);
/* A subscriber arrives at d: a virtual topic's consumer queue is kept
 * from now on (journaled). Returns whether something was journaled. */
bool route_keep(struct dest *d);

/* dest.c tells: a destination was created / is being deleted. */
void route_dest_created(struct dest *d);
void route_dest_deleted(struct dest *d);

/* Wildcard indexes, for the console and benchmarks. */
struct route_stats {
    uint64_t topic_patterns, queue_watchers, virtual_topics, trie_nodes;
};
void route_stats(struct route_stats *st);

#endif
