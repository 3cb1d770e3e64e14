/* A STOMP client connection: a stream (socket, buffers, deadline) with
 * the parser state, protocol state and heart-beats on top. Closing marks
 * the connection dead; the stream layer frees it before the loop sleeps,
 * so no callback frees the object it runs in. */
#ifndef STOMPD_CONN_H
#define STOMPD_CONN_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "stompd/buf.h"
#include "stompd/commit.h"
#include "stompd/config.h"
#include "stompd/frame.h"
#include "stompd/stream.h"

enum conn_state {
    CONN_HANDSHAKE, /* waiting for CONNECT */
    CONN_OPEN,      /* connected */
    CONN_CLOSING,   /* no more input; close once output is flushed */
    CONN_DEAD,      /* closed; freed before the loop sleeps */
};

/* Why reading is paused (bit set). */
enum {
    PAUSE_OUTPUT = 1,   /* too much unsent output */
    PAUSE_PENDING = 2,  /* too many frames waiting for the store */
    PAUSE_ROOM = 4,     /* a destination is full */
    PAUSE_CLOSING = 8,  /* DISCONNECT received: nothing after it is read */
    PAUSE_AUTH = 16,    /* CONNECT waits for its password check */
    PAUSE_STOPPING = 32, /* the broker stops: a master waits for its slaves (server_stop) */
};

struct sub;
struct txn;
struct txn_ack;
struct browse;
struct qentry;
struct dest;
struct principal;
struct pending_login;

struct conn {
    struct stream st;           /* socket, buffers, deadline timer, pause reasons */
    uint64_t id;
    enum conn_state state;
    enum stomp_version version;
    bool error_sent;
    bool error_quiet;           /* its ERROR is logged elsewhere (failed logins: rate-limited) */
    struct hold_mark *holds;    /* where its output waits for the journal (commit_hold) */
    uint32_t nholds, hold_head, cap_holds;
    struct unsent_list unsent;  /* auto-ack deliveries held with the output (commit.h) */
    uint64_t answered_to;       /* stream_out_pos after its last RECEIPT or ERROR */
    bool in_held;               /* on the held list */
    uint32_t hb_rx_ms;          /* client -> server interval, 0 = none */
    uint32_t hb_tx_ms;          /* server -> client interval, 0 = none */
    ev_tstamp frame_started;    /* a frame's first bytes came then and it is not whole yet (0: none) */
    ev_tstamp answer_by;        /* a deferred ERROR or close (conn_refuse, the peer's half-close) waits for
                                 * the answers before it until then (0: none waits) */
    struct frame_parser parser;
    struct sub *subs;           /* by id */
    uint32_t nsubs;
    uint32_t nconsumers;        /* destinations its subscriptions take from (stomp.max_consumers) */
    struct qentry *inflight;    /* by delivery tag */
    uint64_t next_tag;
    struct txn *txns;
    uint32_t ntxns;
    struct txn_ack *txn_acks;   /* deliveries held ACKs cover, by tag (txn.h) */
    struct browse *browses;     /* browser:true subscriptions (browse.h) */
    uint32_t nbrowses;
    struct op_list ops;
    uint32_t nops;
    uint32_t nops_waiting_room; /* of them, waiting for room (a destination's or the store's) */
    uint64_t acked_lsn;         /* the entry carrying its last journaled ACK or NACK, or a later one */
    char *client_id;
    char *login;
    struct principal *who;      /* who it logged in as (auth.h), from CONNECT on */
    struct pending_login *login_wait; /* CONNECT waiting for its password check */
    TAILQ_HEAD(, dest) temps;   /* temporary destinations it owns */
    uint64_t frames_in, frames_out;
    TAILQ_ENTRY(conn) link;     /* server's list of live connections */
    struct peer_waiting *waiting; /* not logged in yet: its address's list (conn.c) */
    TAILQ_ENTRY(conn) wait_link, addr_link;
    TAILQ_ENTRY(conn) held_link;
};
TAILQ_HEAD(conn_list, conn);

/* The stomp.* limits every frame a client sends is held to. */
void conn_frame_limits(struct frame_limits *lim);
/* A connection on an accepted socket. */
struct conn *conn_new(int fd, const char *peer);
/* A client listener at broker.max_connections: close a connection that
 * has not logged in, for a newcomer from peer, where one address holds
 * several or more than broker.reserved_connections wait (listener.make_room). */
bool conn_make_room(struct listener *l, const char *peer);
void conn_set_state(struct conn *c, enum conn_state to);
const char *conn_state_name(enum conn_state s);

/* Output (c->st.out): flushed before the loop sleeps. */
static inline void conn_want_flush(struct conn *c) { stream_want_flush(&c->st); }
/* No more messages for now: its own output is at stomp.output_limit, or it
 * has some unsent while all connections' reach stomp.max_output_buffers
 * (told `drained` when there is room). */
static inline bool conn_output_full(struct conn *c)
{
    return stream_full(&c->st) || !stream_output_room(&c->st, (size_t)config.max_output_buffers);
}

/* Send ERROR (with receipt-id when given) and close after flushing it. */
void conn_error(struct conn *c, const char *message, const char *receipt, const char *detail);
/* The same with one extra header (e.g. version on a failed negotiation). */
void conn_error_hdr(struct conn *c, const char *message, const char *receipt, const char *detail,
                    const char *hname, const char *hvalue);
/* ERROR for the client's own input (a bad frame, a refused command): sent
 * once the frames read before it are answered (their RECEIPTs wait for the
 * store), nothing after it being read; then the close. */
void conn_refuse(struct conn *c, const char *message, const char *receipt, const char *detail);
/* Send ERROR (its body detail, or message when NULL) and close after
 * flushing it, for a reason that is not the client's fault (the console
 * closed it, a reload revoked its access): not counted as a protocol
 * error. */
void conn_kick(struct conn *c, const char *message, const char *detail);
/* The open connection with this id (not one closing), or NULL. */
struct conn *conn_find(uint64_t id);
/* Its output from a held delivery on was dropped (the local log failed,
 * commit_holds_fail_from): a closing connection is told why instead. */
void conn_output_lost(struct conn *c, const char *why);
/* Close at once (peer gone, timeout, shutdown). */
void conn_close(struct conn *c, const char *why);
/* Stop reading after what was read; close once output is flushed. */
void conn_close_after_flush(struct conn *c);

static inline void conn_pause(struct conn *c, uint8_t reason) { stream_pause(&c->st, reason); }
static inline void conn_resume(struct conn *c, uint8_t reason) { stream_resume(&c->st, reason); }

/* Seconds between checks that a client whose reading is paused while a
 * SEND waits for room is still there (conn_watch_peer). */
#define PEER_WATCH 1.0
/* Has the client closed its side, or gone altogether? Asked of the kernel:
 * it sees the end even behind unread bytes. */
bool conn_peer_gone(const struct conn *c);
/* Reading stopped while a SEND waits for room: check the client is still
 * there every PEER_WATCH seconds (conn_timeout closes it if not). */
void conn_watch_peer(struct conn *c);

/* Heart-beats negotiated on CONNECT. */
void conn_start_heartbeats(struct conn *c, uint32_t rx_ms, uint32_t tx_ms);

/* A frame was written to c's output: counted for the connection and the
 * node (every frame, whoever writes it). */
void conn_frame_sent(struct conn *c);
/* Write a RECEIPT frame now. */
void conn_send_receipt(struct conn *c, const char *receipt);



#endif
