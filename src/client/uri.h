/* Broker URIs as ActiveMQ users write them (tcp://h:p and
 * failover:(...)?options) and the reconnect schedule they imply. Pure
 * functions, no I/O: unit-tested alone by t/unit/test_uri.c. */
#ifndef STOMPC_URI_H
#define STOMPC_URI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define URI_DEFAULT_PORT 61613

struct uri_broker {
    char *host;   /* without brackets for IPv6 */
    int port;
    char *text;   /* "tcp://host:port", for messages and stats */
};

struct uri {
    bool failover;               /* false: one tcp:// broker, no reconnect */
    size_t nbrokers;
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
};

/* Parse text into u (freed with uri_free, also after a failure). On
 * failure returns -EINVAL and writes why into err. */
int uri_parse(const char *text, struct uri *u, char *err, size_t errlen) __attribute__((warn_unused_result));
void uri_free(struct uri *u);

/* The wait after `failures` (>= 1) failed rounds, in ms: the initial delay
 * after the first, then (exponential back-off) multiplied by the exponent
 * each round and capped at the maximum, as ActiveMQ does. */
int64_t uri_reconnect_delay(const struct uri *u, unsigned failures);

/* After `failures` (>= 1) failed rounds, stop trying? `startup` is true
 * until the client has connected once. A limit of 0 or 1 allows one round. */
bool uri_give_up(const struct uri *u, unsigned failures, bool startup);

/* Fill order[0..nbrokers) with the broker indexes to try in one round:
 * list order, or shuffled with *rng when randomize is set; the broker that
 * just failed (last_failed, or SIZE_MAX for none) goes last. */
void uri_connect_order(const struct uri *u, size_t last_failed, uint64_t *rng, size_t *order);

/* A small PRNG (splitmix64) whose state lives with its user. */
uint64_t uri_rand(uint64_t *state);

#endif
