/* Broker URIs as ActiveMQ users write them (tcp://h:p, ssl://h:p and
 * failover:(...)?options) and the reconnect schedule they imply. Pure
 * functions, no I/O: unit-tested alone by t/unit/test_uri.c. */
#ifndef STOMPC_URI_H
#define STOMPC_URI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define URI_DEFAULT_PORT 61613
/* Brokers a client learns from CONNECTED's cluster-members header, at
 * most: a broker that lists many cannot make the client's list grow
 * without bound. */
#define URI_MAX_LEARNED 32

struct uri_broker {
    char *host;   /* without brackets for IPv6 */
    int port;
    char *text;   /* "tcp://host:port" or "ssl://host:port", for messages and stats */
    bool tls;     /* ssl:// (or stomp+ssl://): STOMP over TLS */
    int64_t connect_timeout; /* ms; -1: the URI's (or the options') */
    bool priority;           /* named by priorityURIs (or first, by default) */
    bool learned;            /* added from a broker's cluster-members header */
};

struct uri {
    bool failover;               /* false: one tcp:// broker, no reconnect */
    size_t nbrokers;
    size_t nlearned;
    struct uri_broker *brokers;
    /* ActiveMQ's FailoverTransport options, with its defaults */
    int64_t initial_reconnect_delay;     /* ms, 10 */
    int64_t max_reconnect_delay;         /* ms, 30000 */
    bool use_exponential_backoff;        /* true */
    double reconnect_delay_exponent;     /* 2.0 */
    int64_t max_reconnect_attempts;      /* -1: forever */
    int64_t startup_max_reconnect_attempts; /* -1: as max_reconnect_attempts */
    bool randomize;                      /* true */
    int64_t timeout;                     /* ms, -1: wait forever for a connection */
    bool backup;                         /* accepted; see stompc.h */
    int64_t backup_pool_size;            /* accepted; see stompc.h */
    bool priority_backup;                /* false */
    bool track_messages;                 /* false */
    int64_t max_cache_size;              /* bytes; -1: not given (no byte bound) */
    bool update_uris_supported;          /* true: learn brokers from CONNECTED */
    /* this client's own (stompd) options */
    int64_t connect_timeout;             /* ms per attempt; -1: not given */
    int64_t connect_attempt_delay;       /* ms before a parallel attempt, 250 */
    int64_t max_refused_reconnect_delay; /* ms, cap after refused connects, 500 */
};

/* Parse text into u (freed with uri_free, also after a failure). On
 * failure returns -EINVAL (or -ENOMEM) and writes why into err. */
int uri_parse(const char *text, struct uri *u, char *err, size_t errlen) __attribute__((warn_unused_result));
/* Does the list name an ssl:// broker? */
bool uri_has_tls(const struct uri *u);
void uri_free(struct uri *u);

/* Add a broker named by a broker ("tcp://host:port" or "host:port", len
 * bytes) unless the list has it already or URI_MAX_LEARNED were learned:
 * 1 added, 0 not, -EINVAL not a broker address, -ENOMEM. A list with an
 * ssl:// broker learns nothing that is not ssl:// (no quiet move to
 * plain TCP). */
int uri_learn(struct uri *u, const char *text, size_t len) __attribute__((warn_unused_result));

/* The wait after `failures` (>= 1) failed rounds, in ms: the initial delay
 * after the first, then (exponential back-off) multiplied by the exponent
 * each round and capped at the maximum, as ActiveMQ does. */
int64_t uri_reconnect_delay(const struct uri *u, unsigned failures);

/* The wait after a broker refused `refusals` (>= 1) connections in a row:
 * the same schedule, capped at maxRefusedReconnectDelay (a refused TCP
 * connection costs no broker anything, so there is no reason to wait
 * long for the next, and every reason to come back soon). */
int64_t uri_refused_delay(const struct uri *u, unsigned refusals);

/* After `failures` (>= 1) failed rounds, stop trying? `startup` is true
 * until the client has connected once. A limit of 0 or 1 allows one round. */
bool uri_give_up(const struct uri *u, unsigned failures, bool startup);

/* Fill order[0..nbrokers) with the broker indexes to try in one round:
 * with priorityBackup the priority brokers first; list order, or shuffled
 * with *rng when randomize is set; the broker that just failed
 * (last_failed, or SIZE_MAX for none) goes last. */
void uri_connect_order(const struct uri *u, size_t last_failed, uint64_t *rng, size_t *order);

/* A small PRNG (splitmix64) whose state lives with its user. */
uint64_t uri_rand(uint64_t *state);

#endif
