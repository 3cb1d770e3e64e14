/* TLS as a transport of the stream layer (OpenSSL): a listener's secure
 * hook or the replication link puts a stream on TLS, and the protocol
 * above (STOMP, HTTP, replication, WebSocket later) reads and writes the
 * same bytes as on a plain socket. Handshakes run on the loop without
 * blocking, under a deadline (tls.handshake_timeout); certificates are
 * reread on SIGHUP, a bad new one keeping the old. */
#ifndef STOMPD_TLS_H
#define STOMPD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stompd/stream.h"

struct config;

/* Load the certificates when something uses TLS (stomp.tls_listen,
 * http.tls, store.tls): 0, or an error naming the key at fault. */
int tls_start(char *err, size_t errlen) __attribute__((warn_unused_result));
void tls_stop(void);
/* Is TLS loaded (some listener or the replication uses it)? */
bool tls_enabled(void);
/* SIGHUP (src/reload.c): load tls.* of next and use them for new
 * connections; on failure the running certificates stay. */
int tls_reload(const struct config *next, char *err, size_t errlen) __attribute__((warn_unused_result));

/* A listener's secure hook: STOMP and console clients (a certificate is
 * asked for only with tls.verify_clients). */
void tls_accept_client(struct listener *l, struct stream *s);
/* The replication listener's: with tls.ca, the slave must present a
 * certificate signed by it. */
void tls_accept_peer(struct listener *l, struct stream *s);
/* The slave's link to its master (connecting or connected): this node's
 * certificate is presented, the master's verified against tls.ca. */
void tls_connect_peer(struct stream *s);

struct tls_stats {
    uint64_t handshakes;        /* finished */
    uint64_t failed;            /* failed (bad certificate, not TLS, ...) */
    uint64_t timed_out;         /* not finished within tls.handshake_timeout */
    uint64_t reloads;           /* certificates (re)loaded on SIGHUP */
};
void tls_get_stats(struct tls_stats *out);

#endif
