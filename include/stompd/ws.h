/* STOMP over WebSocket (RFC 6455): a framing layer (struct stream_filter)
 * on a STOMP connection's stream. It answers the HTTP upgrade request,
 * then unframes the client's messages into the STOMP parser's input (a
 * frame may span messages, a message may hold several frames) and frames
 * the connection's output, one STOMP frame per message. Above it the
 * connection is an ordinary STOMP connection: same CONNECT, limits,
 * backpressure and metrics. wslay does the framing rules (masking,
 * fragments, control frames, UTF-8, close codes); this file owns wslay
 * and the handshake's SHA-1 and base64 (nettle). */
#ifndef STOMPD_WS_H
#define STOMPD_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stompd/stream.h"

struct http_head;

/* Close codes (RFC 6455 7.4.1) stompd sends. */
enum {
    WS_CLOSE_NORMAL = 1000,       /* DISCONNECT, or the client's own close */
    WS_CLOSE_GOING_AWAY = 1001,   /* closed at once: the broker stops, or the client went silent */
    WS_CLOSE_PROTOCOL = 1002,     /* a framing rule broken (unmasked frame, bad opcode, ...) */
    WS_CLOSE_BAD_DATA = 1007,     /* a text message that is not UTF-8 */
    WS_CLOSE_POLICY = 1008,       /* the STOMP connection was closed with an ERROR frame */
    WS_CLOSE_TOO_BIG = 1009,      /* a message over the size limit */
    WS_CLOSE_INTERNAL = 1011,     /* out of memory */
};

struct ws_stats {
    uint64_t upgrades;       /* handshakes answered 101 */
    uint64_t refused;        /* handshakes answered 4xx (and 503 at the connection limit) */
    uint64_t failed;         /* connections failed for breaking a framing rule (1002, 1007, 1009) */
    uint64_t messages_in, messages_out;
    uint32_t open;           /* WebSocket connections now */
};

/* The transport layer's name, as the console shows it. */
#define WS_TRANSPORT "ws"

/* Make a fresh STOMP connection's stream speak WebSocket: it answers the
 * upgrade request before anything reaches the STOMP parser. conn_id
 * names it in the log. */
void ws_attach(struct stream *s, uint64_t conn_id);
const struct ws_stats *ws_stats(void);
/* Count a connection refused at the listener's limit. */
void ws_count_refused(void);

/* ------------------------------------------------------------ pure parts */

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key GUID)). */
void ws_accept_key(const char *key, char out[29]);

/* What to answer an upgrade request: status 101 with the subprotocol
 * chosen (NULL: the client offered none), or an error status with why and
 * the extra response headers it needs. origins is stomp.ws_origins; names
 * what http_host_named takes (http.hosts and the listen addresses). */
struct ws_handshake {
    int status;
    const char *protocol;
    char accept[29];
    char reason[400];
    const char *extra_headers; /* "Name: value\r\n"... or "" */
};
void ws_handshake_check(const struct http_head *h, const char *origins, const char *const names[],
                        struct ws_handshake *out);

/* May a page from origin open a connection whose request named host?
 * No origin (not a browser): yes. Otherwise the same origin (origin's
 * host[:port] is host) when host_named (the host is one of this node's
 * names, http_host_named with names: not a DNS rebinding), or one listed
 * in origins (comma-separated, "*" for any). */
bool ws_origin_allowed(const char *origin, const char *host, bool host_named, const char *origins);

/* The first whole unit of STOMP output in p[0..n): a run of EOLs (heart-
 * beats), or a frame through its NUL with the EOLs after it. Its length,
 * or 0 while it is incomplete. */
size_t ws_next_unit(const char *p, size_t n);

#endif
