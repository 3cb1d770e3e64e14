/* Durable topic subscriptions (CONNECT client-id + SUBSCRIBE
 * activemq.subscriptionName): a backlog queue per subscription that keeps
 * receiving while its subscriber is away. UNSUBSCRIBE with the name
 * destroys it; a plain UNSUBSCRIBE or a disconnect only deactivates it. */
#ifndef STOMPD_DURABLE_H
#define STOMPD_DURABLE_H

#include <stdbool.h>
#include <sys/queue.h>
#include <uthash.h>

#include "stompd/queue.h"

struct dest;
struct principal;
struct sub;
struct selector;

/* A client-id and a durable subscription's name are each at most this
 * many bytes: both go into the store's keys of the subscription's
 * backlog, which then stay as short as a queue's (names up to 1024). */
#define DURABLE_NAME_MAX 512

struct durable {
    char *key;          /* client-id NUL name: the store key suffix */
    size_t keylen;
    const char *client_id;
    const char *name;
    struct dest *dest;  /* the topic */
    char *selector;     /* text, or NULL */
    struct selector *sel;
    struct queue q;     /* messages waiting for the subscriber */
    struct sub *active;
    struct principal *reader; /* who subscribed last (a reference; NULL: nobody, or a store older than
                               * the reader's record) */
    char *reader_key;   /* the reader as the store keeps it (durable_reader_key) */
    uint64_t serial;    /* creation order, ascending along the topic's list */
    UT_hash_handle hh;
    TAILQ_ENTRY(durable) topic_link;
};

struct durable *durable_find(const char *client_id, const char *name);
/* Whether any durable subscription is kept for client_id. */
bool durable_client_known(const char *client_id);
/* Create (journaled) or reuse for who, its reader from now on; a changed
 * topic or selector replaces the old subscription, as JMS specifies.
 * *journaled says whether it journaled (a new reader is journaled too: a
 * wildcard subscription takes only the topics its reader may read, after a
 * restart as before). */
struct durable *durable_get(struct dest *topic, struct principal *who, const char *client_id, const char *name,
                            const char *selector, struct selector *sel, bool *journaled);
/* Recreate from the store at start (not journaled). reader: as stored
 * (durable_reader_key), NULL or "" for nobody. */
struct durable *durable_restore(struct dest *topic, const char *client_id, const char *name,
                                const char *selector, struct selector *sel, const char *reader);
/* A reader as the store keeps it (malloc'd): "U" and the name of a user of
 * auth.users, "A" for an anonymous client, "" for nobody. */
char *durable_reader_key(const struct principal *who);
void durable_attach(struct durable *d, struct sub *s);
void durable_detach(struct durable *d, struct sub *s);
/* What d's subscriber holds goes with d, not back to its backlog, when
 * its subscription is destroyed next (durable_destroy does it too). */
void durable_dropping(struct durable *d);
/* Destroy (journaled) with its backlog; true when journaled. */
bool durable_destroy(struct durable *d);
void durable_dest_deleted(struct dest *topic);
/* m, published to origin, reaches the durable subscriptions of topic
 * (origin itself, or a wildcard topic matching it). */
void durable_publish(struct dest *topic, const struct dest *origin, struct msg *m);
/* May d's subscriber read a message published to the topic named origin?
 * A wildcard one reads only the topics its user may (the ACL), as a
 * wildcard subscription does; a plain one was checked at SUBSCRIBE. Not
 * known for one restored from a store older than JOP_SUB_SET until someone
 * subscribes: true, and its backlog is checked again at delivery. */
bool durable_may_read(const struct durable *d, const char *origin);
/* After a reload of the users file: each reader as the file has it now. */
void durable_readers_refresh(void);
void durable_foreach(void (*fn)(struct durable *d, void *arg), void *arg);
size_t durable_count(void);
void durable_free_all(void);

#endif
