/* The node: its loop, listeners, role and the before-sleep hook that
 * dispatches dirty queues, flushes output and frees closed connections. */
#ifndef STOMPD_SERVER_H
#define STOMPD_SERVER_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stompd/conn.h"
#include "stompd/queue.h"
#include "stompd/stream.h"

struct server_stats {
    uint64_t connections_total;
    uint64_t connections_refused;
    uint64_t connections_evicted; /* not logged in, closed for a newcomer (broker.reserved_connections) */
    uint64_t frames_in;
    uint64_t frames_out;
    uint64_t messages_in;
    uint64_t messages_out;
    uint64_t protocol_errors;
    uint64_t expired;
    uint64_t dead_lettered;
    uint64_t dead_letters_discarded; /* non-persistent, their dead-letter queue full (dlq.c) */
    uint64_t dropped;
    uint64_t duplicates;
    uint64_t closed_temp_dropped;  /* copies for a temporary destination whose connection had closed */
};

struct server {
    struct ev_loop *loop;
    struct listener stomp;      /* open while master or standalone */
    struct listener ws;         /* STOMP over WebSocket (stomp.ws_listen), counted with stomp's */
    struct listener stomp_tls;  /* stomp.tls_listen: the same, over TLS */
    struct listener wss;        /* stomp.wss_listen: WebSocket over TLS */
    ev_prepare before_sleep;
    ev_idle spin;               /* keeps the loop from sleeping while work remains */
    ev_signal sigterm, sigint;
    ev_timer sweep;             /* expiry sweep */
    ev_timer sweep_more;        /* ...its idle destinations, a step a turn */
    ev_timer stop_wait;         /* bounds a stopping master's wait for its slaves */
    bool handing_over;          /* stopping, the slaves not yet in step (server_stop) */
    bool store_failed;          /* nothing more can be made durable: stopping */
    struct conn_list conns;
    uint32_t nconns;
    uint64_t next_conn_id;
    uint64_t next_msg_seq;
    uint64_t msg_id_counter;
    char msg_id_prefix[96];
    struct queue_list dirty;
    int64_t started_ms;
    bool stopping;
    int exit_code;
    struct server_stats st;
};

extern struct server srv;

int server_init(struct ev_loop *loop) __attribute__((warn_unused_result));
int server_run(void);
/* Stop: the loop returns. A master whose sync modes wait for slaves first
 * hands over (store.stop_wait): no new work (srv.handing_over), until the
 * slaves have every entry it journaled (persist_handed_over). A second
 * call stops at once. */
void server_stop(void);
void server_shutdown(void);
/* Queues deliver: not while a master hands over (no new work), nor once
 * the store failed (the broker stops; what a delivery journals cannot be
 * written, and its MESSAGE would wait for that for ever). */
static inline bool server_delivers(void) { return !srv.handing_over && !srv.store_failed; }

/* Open/close the STOMP listeners, plain and TLS (master and standalone only). */
int server_listen_clients(void) __attribute__((warn_unused_result));
void server_close_clients(const char *why);


int64_t server_now_ms(void);
/* A fresh message-id ("ID:<broker>-<start>-<n>"). */
void server_next_msg_id(char *out, size_t len);
uint64_t server_next_seq(void);
/* Messages restored from the store go up to seq: new ones come after. */
void server_seq_at_least(uint64_t seq);

#endif
