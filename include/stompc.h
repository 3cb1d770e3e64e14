/* libstompc: a failover-aware STOMP 1.0/1.1/1.2 client, the library behind
 * contrib's failover producer and consumer. One client object is driven by
 * one thread at a time; different objects may live in different threads.
 *
 * The model, in short:
 *   - every call that can fail returns an int: 0 (or a count) on success, a
 *     negative STOMPC_E* status on failure, and stompc_error() then tells
 *     what happened in words ("connect to 127.0.0.1:61613: Connection
 *     refused", "broker ERROR: invalid destination: ...");
 *   - there are no threads inside: I/O happens only inside library calls,
 *     on non-blocking sockets. Heart-beats are sent and checked from inside
 *     those calls too, so a client with heart-beats must call into the
 *     library (stompc_run, stompc_receive, stompc_step...) at least once per
 *     heart-beat interval;
 *   - the calls wait (blocking style) by default; stompc_set_nonblocking()
 *     makes them return at once, and the client then runs in the caller's
 *     event loop: wait for stompc_fd() to become readable or for
 *     stompc_timeout() to pass, then call stompc_step() (see "Event loops"
 *     below). The waiting calls are that same engine plus a wait;
 *   - a URI of the form failover:(tcp://h1:p1,tcp://h2:p2)?options, written
 *     as ActiveMQ users write it, makes the client reconnect by itself when
 *     the connection is lost, re-subscribe, and resend what the broker had
 *     not confirmed (see stompc_connect);
 *   - MESSAGE frames are queued in arrival order and handed out either by
 *     stompc_receive() (poll style) or to an on_message callback from
 *     stompc_run()/stompc_dispatch() (callback style). Calls that wait for a
 *     RECEIPT keep the messages that arrive meanwhile queued: none is lost.
 *     The queue has no bound of its own: what bounds it is what the broker
 *     may send before you acknowledge (a client or client-individual
 *     subscription's prefetch, activemq.prefetchSize). An ack:auto
 *     subscription has none: every call that reads (stompc_receive and
 *     stompc_run too, not only one waiting for a RECEIPT) takes all the
 *     broker sends, so a consumer slower than its destination's producers
 *     grows the queue with the backlog. Subscribe with client or
 *     client-individual ack and a prefetch to bound it.
 *
 * Allocation failure aborts the process, as everywhere in stompd.
 *
 * Copyright (c) 2026 the stompd authors. SPDX-License-Identifier: MIT */
#ifndef STOMPC_H
#define STOMPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define STOMPC_MUST_CHECK __attribute__((warn_unused_result))
#else
#define STOMPC_MUST_CHECK
#endif

/* -------------------------------------------------------------- version */

/* The version of this header; stompc_version() says the library's, which
 * may be newer than the header a program was built with. */
#define STOMPC_VERSION_MAJOR 0
#define STOMPC_VERSION_MINOR 1
#define STOMPC_VERSION_PATCH 0
#define STOMPC_VERSION "0.1.0"
/* One number to compare: 0x000100 for 0.1.0. */
#define STOMPC_VERSION_NUMBER ((STOMPC_VERSION_MAJOR << 16) | (STOMPC_VERSION_MINOR << 8) | STOMPC_VERSION_PATCH)

const char *stompc_version(void);

/* ------------------------------------------------------------------ ABI */

/* The option, callback and stats structs below may grow in later versions
 * (new fields at their end only). Every call that takes one also passes
 * the size the program was compiled with: stompc_connect, stompc_send,
 * stompc_subscribe, stompc_set_callbacks and stompc_get_stats are macros
 * that add sizeof() for you, so programs are written as before (the macros
 * are variadic: a compound literal with several designated initializers is
 * one argument to them, as to a function). A newer
 * library then reads only the fields an older program knows (the others
 * count as zero) and writes only as much as the program has room for; an
 * older library refuses (STOMPC_EINVAL) a newer program's struct only when
 * a field it does not know is set. Zero-initialise the structs you pass
 * (= {0} or designated initializers). The plain functions (their address:
 * (stompc_connect)) take the 0.1 layouts. */

/* ------------------------------------------------------------- statuses */

enum stompc_status {
    STOMPC_OK = 0,
    STOMPC_EINVAL = -1,    /* bad argument, bad URI, call not valid now */
    STOMPC_ECONNECT = -2,  /* no broker accepted (attempts exhausted) */
    STOMPC_EIO = -3,       /* connection lost (plain tcp:// URI) */
    STOMPC_ETIMEDOUT = -4, /* the call's time limit passed */
    STOMPC_EBROKER = -5,   /* the broker answered ERROR */
    STOMPC_EPROTO = -6,    /* the broker sent something that is not STOMP */
    STOMPC_ETXFAILED = -7, /* the transaction was lost by a failover */
    STOMPC_ECLOSED = -8,   /* not connected */
    STOMPC_EBUSY = -9,     /* not allowed from inside a callback */
    STOMPC_ENOMEM = -10,   /* out of memory */
    STOMPC_EAGAIN = -11,   /* non-blocking mode: not possible without waiting
                              (not connected, or too much unconfirmed); try
                              again after a stompc_step() */
    STOMPC_EINTR = -12,    /* a wait ended by stompc_interrupt() */
};

/* A fixed text for a status ("connection lost", ...). */
const char *stompc_strerror(int status);

/* ---------------------------------------------------------------- types */

struct stompc; /* opaque */

/* A header, for extra headers you pass in and headers you receive. */
struct stompc_header {
    const char *name;
    const char *value;
};

/* A received MESSAGE. Every message handed to you (by stompc_receive or
 * on_message) is yours: free it with stompc_msg_free. destination and
 * message_id are never NULL, nor subscription from STOMP 1.1 on: a
 * MESSAGE without them is a protocol error (STOMPC_EPROTO), as STOMP
 * says a broker sends them. */
struct stompc_msg {
    const char *destination;
    const char *message_id;
    const char *subscription; /* NULL only with STOMP 1.0 and a SUBSCRIBE without id */
    const char *ack_id;       /* STOMP 1.2 "ack" header; NULL otherwise */
    bool redelivered;
    const char *body;         /* body_len bytes (binary-safe), then a NUL */
    size_t body_len;
    const struct stompc_header *headers; /* all of them, as received */
    size_t nheaders;
};

/* First occurrence of a header, or NULL. */
const char *stompc_msg_header(const struct stompc_msg *m, const char *name);
void stompc_msg_free(struct stompc_msg *m);

/* Connection settings. Zero-initialise and set what you need:
 *   struct stompc_options o = {.login = "guest", .heart_beat_tx = 1000}; */
struct stompc_options {
    const char *login;
    const char *passcode;
    const char *host;          /* CONNECT host header; default: the URI's host */
    const char *client_id;     /* needed for durable subscriptions */
    int heart_beat_tx;         /* cx: we can send beats every cx ms (0: none) */
    int heart_beat_rx;         /* cy: we want the broker's every cy ms (0: none) */
    const char *accept_version; /* default "1.0,1.1,1.2": the highest the broker takes */
    int connect_timeout;       /* ms per attempt (TCP + CONNECTED); 0: 10000.
                                  The URI's connectTimeout wins over it */
    int receipt_timeout;       /* ms a waiting call waits for its RECEIPT; 0: 30000, -1: forever */
    size_t max_frame;          /* largest frame accepted from the broker; 0: 64 MiB */
    unsigned max_unreceipted;  /* receipted frames in flight before stompc_send waits; 0: 10000 */
    const struct stompc_header *headers; /* extra CONNECT headers */
    size_t nheaders;
    /* Since 0.1.0's second ABI (a library without them refuses a struct
     * that sets them): ssl:// brokers. The broker's certificate must chain
     * to a CA of tls_ca_file (PEM; NULL: the system's CAs) and name the
     * host of its URI (DNS name or IP address), or the connection fails
     * before CONNECT is sent. tls_cert_file and tls_key_file (PEM; the key
     * may be in the certificate's file) are presented to a broker that asks
     * for a client certificate (stompd's tls.verify_clients). */
    const char *tls_ca_file;
    const char *tls_cert_file;
    const char *tls_key_file;
};

/* Negotiated protocol version, as in stompc_stats.version. */
enum stompc_version { STOMPC_V10 = 10, STOMPC_V11 = 11, STOMPC_V12 = 12 };

struct stompc_stats {
    const char *broker;        /* URI of the broker now connected; NULL when none.
                                  Valid until the next call on the client. */
    int version;               /* 10, 11 or 12 while connected, 0 otherwise */
    uint64_t connects;         /* successful connections, the first included */
    uint64_t reconnects;       /* of those, made by failover */
    uint64_t resent;           /* frames sent again after a reconnect */
    uint64_t resubscribed;     /* SUBSCRIBEs sent again after a reconnect */
    uint64_t unreceipted;      /* receipted frames still waiting for their RECEIPT */
    uint64_t failed_frames;    /* receipted frames the broker refused with ERROR */
    uint64_t failed_transactions; /* transactions lost by a failover */
    uint64_t stale_acks;       /* ACK/NACKs dropped: their message came before a failover */
    uint64_t messages_sent;
    uint64_t messages_received;
};

/* ------------------------------------------------------------ lifecycle */

/* A new, unconnected client; NULL only when out of memory. */
struct stompc *stompc_new(void);
/* Closes the socket without DISCONNECT and frees everything, queued
 * messages included. Not allowed from inside a callback (the free is then
 * deferred until the callback returns to stompc_run/dispatch/receive). */
void stompc_free(struct stompc *c);
/* The last error in words; "" when there was none. */
const char *stompc_error(const struct stompc *c);

/* Connect.
 *
 * uri is one of:
 *   tcp://host:port             one broker; a lost connection is an error
 *                               (STOMPC_EIO) and the client must be
 *                               connected again. [v6addr] works; the port
 *                               defaults to 61613. stomp:// is an alias.
 *                               ActiveMQ's tcp transport options
 *                               (?wireFormat.*, soTimeout, keepAlive, ...)
 *                               are accepted and ignored; others are an
 *                               error.
 *   ssl://host:port             the same over TLS (1.2 or later), the
 *                               broker's certificate verified (see
 *                               tls_ca_file); stomp+ssl:// is an alias.
 *                               A failover list may mix tcp:// and ssl://.
 *   failover:(tcp://h1:p1,tcp://h2:p2)?option=value&...
 *   failover:tcp://h1:p1,tcp://h2:p2?option=value&...
 * with ActiveMQ's failover options and defaults:
 *   initialReconnectDelay=10        ms before the second round of attempts
 *   maxReconnectDelay=30000         cap for the delay
 *   useExponentialBackOff=true      multiply the delay after each round...
 *   reconnectDelayExponent=2.0      ...by this
 *   maxReconnectAttempts=-1         rounds before giving up once connected
 *                                   (-1: forever; 0: try one round only)
 *   startupMaxReconnectAttempts=-1  the same for the first connection
 *                                   (-1: as maxReconnectAttempts)
 *   randomize=true                  shuffle the list on every round
 *   timeout=-1                      ms a call waits for a connection before
 *                                   failing with STOMPC_ETIMEDOUT (-1: forever)
 *   trackMessages=false             true: every SEND outside a transaction is
 *                                   kept until receipted and resent after a
 *                                   failover, not only persistent ones
 *   maxCacheSize                    bytes of message bodies kept for resending
 *                                   before a send waits (no bound unless given;
 *                                   max_unreceipted bounds their number)
 *   priorityBackup=false            true: prefer the priority brokers: try them
 *                                   first, and while connected to another one
 *                                   keep trying them in the background and move
 *                                   to one that answers (not while a
 *                                   transaction is open)
 *   priorityURIs=uri1,uri2          the priority brokers (default: the first)
 *   updateURIsSupported=true        add the brokers a broker names in
 *                                   CONNECTED's cluster-members header (a
 *                                   stompd cluster's master names every
 *                                   member) to the list, up to 32; a list
 *                                   with an ssl:// broker adds only ssl://
 *                                   ones (a broker cannot move the client
 *                                   to plain TCP)
 *   backup=false, backupPoolSize=1  accepted, and nothing more: ActiveMQ holds
 *                                   spare connections to other brokers, but in
 *                                   a stompd cluster only the master accepts
 *                                   connections (slaves keep their port
 *                                   closed), so there is never a second broker
 *                                   to hold one to; the parallel attempts
 *                                   below give the fast failover it is for
 * and this client's own:
 *   connectTimeout=10000            ms one attempt may take (TCP and the
 *                                   CONNECTED frame); also a tcp:// option,
 *                                   for that broker alone
 *   connectAttemptDelay=250         ms an attempt waits for CONNECTED before
 *                                   the next broker is tried alongside
 *   maxRefusedReconnectDelay=500    cap of the delay after refused connections
 *
 * How the client connects: brokers are tried in the round's order (the one
 * that failed last at the end); an attempt that has no CONNECTED after
 * connectAttemptDelay ms does not hold the others up: the next broker is
 * tried alongside it (happy eyeballs), and the first CONNECTED wins (the
 * other attempts are closed, with a DISCONNECT where CONNECT was sent). A
 * paused broker, whose kernel completes the TCP handshake but which never
 * answers, so costs connectAttemptDelay, not connectTimeout. After a failed
 * attempt a broker is tried again once its delay has passed: a refused
 * connection (nobody listening: a stompd slave, a node being restarted)
 * costs no broker anything, so its delay follows the reconnect schedule
 * but never exceeds maxRefusedReconnectDelay; a broker that was reached and
 * failed (ERROR, no CONNECTED in time, closed) backs off exponentially
 * (initialReconnectDelay ... maxReconnectDelay). Any CONNECTED, or a
 * refusal from that broker, resets its back-off. A round ends when every
 * broker has failed once; maxReconnectAttempts and
 * startupMaxReconnectAttempts count rounds.
 *
 * In failover mode the client, on connection loss (EOF, socket error,
 * heart-beat timeout, an ERROR frame), reconnects with that schedule, sends
 * the same CONNECT (same login, client-id, ...), re-subscribes every
 * subscription with its id and headers, and resends every frame whose
 * RECEIPT had not arrived, in the original order. To make that cover
 * persistent messages, every persistent SEND outside a transaction asks for
 * a receipt (an automatic id when you gave none) and is kept until the
 * RECEIPT arrives. Persistent SENDs also carry a unique _AMQ_DUPL_ID header,
 * unchanged when resent, so the broker can drop a copy it already has.
 * Non-persistent SENDs without a receipt are fire-and-forget: one written
 * to the socket just before a failure may be lost. A transaction open when
 * the connection fails is lost: its later calls and its COMMIT return
 * STOMPC_ETXFAILED (ActiveMQ does the same). Messages delivered before a
 * failover cannot be acknowledged any more: the broker redelivers them, and
 * stompc_ack() on them does nothing (counted in stats.stale_acks).
 *
 * Before the first connection, a round of attempts in which a broker
 * refused the CONNECT for good and none accepted it ends the attempts
 * (STOMPC_EBROKER, the broker's words in stompc_error), as ActiveMQ's
 * createConnection throws its JMSSecurityException: the same CONNECT
 * would be refused for ever. "For good" is an ERROR answering CONNECT
 * that says "authentication failed", "password is invalid", "access
 * refused" (stompd, ActiveMQ, RabbitMQ), or one of stompd's refusals of
 * the CONNECT's own headers (invalid client-id, header not UTF-8, ...);
 * not "too many logins in progress" nor "client-id already in use". After
 * a connection such a refusal is retried on the schedule (a broker's
 * users file may be mid-change), each one reported to on_error.
 *
 * Waits up to the failover timeout (forever by default) for the first
 * connection; fails with STOMPC_ECONNECT when the attempts are exhausted.
 * In non-blocking mode it returns 0 once the attempts are under way; the
 * calls below queue their frames until the connection is up, and
 * stompc_step() returns STOMPC_ECONNECT if it never comes. */
int stompc_connect(struct stompc *c, const char *uri, const struct stompc_options *opts) STOMPC_MUST_CHECK;
int stompc_connect_sized(struct stompc *c, const char *uri, const struct stompc_options *opts,
                         size_t opts_size) STOMPC_MUST_CHECK;
#define stompc_connect(...) stompc_connect_sized(__VA_ARGS__, sizeof(struct stompc_options))

/* Waits (up to timeout_ms, -1: forever) for every outstanding receipt,
 * sends DISCONNECT with a receipt, waits for it and closes. Subscriptions
 * and transactions end; messages already queued stay receivable. Returns
 * the first error met, after closing in any case. */
int stompc_disconnect(struct stompc *c, int timeout_ms);

/* --------------------------------------------------------------- frames */

/* Flags for calls that can wait for the broker. */
#define STOMPC_WAIT 0x1u            /* ask for a RECEIPT and wait for it */
#define STOMPC_REMOVE_DURABLE 0x2u  /* stompc_unsubscribe: also destroy the
                                       durable subscription */

struct stompc_send_opts {
    bool persistent;           /* persistent:true (and tracked, in failover mode) */
    const char *receipt;       /* ask for this receipt; reported to on_receipt */
    bool wait;                 /* wait for the RECEIPT (an id is made if none given) */
    const char *transaction;
    const char *content_type;
    const struct stompc_header *headers; /* extra headers; the library sets
                                            destination, content-length,
                                            receipt and transaction itself */
    size_t nheaders;
    bool more;                 /* more frames follow at once: keep this one
                                  buffered (up to 64 KiB) and write them
                                  together with the next call that writes,
                                  stompc_flush or stompc_step. Not with wait. */
};

/* Send len bytes of body (any bytes; content-length is always sent).
 * opts may be NULL. Returns once the frame is written (and, with
 * opts->wait, receipted): while the broker's flow control holds this
 * producer (a full destination), it waits, for as long as that lasts, as
 * an ActiveMQ producer does; stompc_interrupt ends the wait (the frame
 * stays the client's). Without a connection, failover mode reconnects
 * first, waiting up to the URI's timeout option. With opts->wait,
 * STOMPC_ETIMEDOUT after receipt_timeout means only that: a failover
 * client still keeps the frame and resends it until it is receipted. */
int stompc_send(struct stompc *c, const char *destination, const void *body, size_t len,
                const struct stompc_send_opts *opts) STOMPC_MUST_CHECK;
int stompc_send_sized(struct stompc *c, const char *destination, const void *body, size_t len,
                      const struct stompc_send_opts *opts, size_t opts_size) STOMPC_MUST_CHECK;
#define stompc_send(...) stompc_send_sized(__VA_ARGS__, sizeof(struct stompc_send_opts))

enum stompc_ack { STOMPC_ACK_AUTO = 0, STOMPC_ACK_CLIENT, STOMPC_ACK_CLIENT_INDIVIDUAL };
/* The mode named as in the ack header ("auto", "client",
 * "client-individual"); STOMPC_EINVAL for anything else. */
int stompc_ack_mode(const char *name, enum stompc_ack *out);

struct stompc_sub_opts {
    const char *id;            /* default: the destination */
    enum stompc_ack ack;
    const char *selector;
    int prefetch;              /* activemq.prefetchSize; 0: the broker's default */
    const char *durable_name;  /* activemq.subscriptionName (needs a client_id) */
    const struct stompc_header *headers; /* extra headers */
    size_t nheaders;
};

/* Subscribe and wait for the broker's RECEIPT, so a bad subscription fails
 * here (STOMPC_EBROKER) and a good one is active when this returns (in
 * non-blocking mode: see stompc_set_nonblocking). After
 * STOMPC_ETIMEDOUT the subscription is kept (the broker may have it):
 * unsubscribe to drop it. Failover re-subscribes every subscription. */
int stompc_subscribe(struct stompc *c, const char *destination,
                     const struct stompc_sub_opts *opts) STOMPC_MUST_CHECK;
int stompc_subscribe_sized(struct stompc *c, const char *destination, const struct stompc_sub_opts *opts,
                           size_t opts_size) STOMPC_MUST_CHECK;
#define stompc_subscribe(...) stompc_subscribe_sized(__VA_ARGS__, sizeof(struct stompc_sub_opts))
/* flags: STOMPC_WAIT, STOMPC_REMOVE_DURABLE (without an active subscription
 * of that id, id is taken as the durable subscription's name). */
int stompc_unsubscribe(struct stompc *c, const char *id, unsigned flags) STOMPC_MUST_CHECK;

/* Acknowledge one message (cumulatively for ack:client subscriptions) with
 * the headers the negotiated version wants: 1.2 id = the MESSAGE's ack
 * header; 1.1 message-id + subscription; 1.0 message-id. transaction may be
 * NULL. NACK needs STOMP 1.1. */
int stompc_ack(struct stompc *c, const struct stompc_msg *m, const char *transaction,
               unsigned flags) STOMPC_MUST_CHECK;
int stompc_nack(struct stompc *c, const struct stompc_msg *m, const char *transaction,
                unsigned flags) STOMPC_MUST_CHECK;

int stompc_begin(struct stompc *c, const char *transaction) STOMPC_MUST_CHECK;
/* Waits for the COMMIT's RECEIPT: 0 means the broker applied it. */
int stompc_commit(struct stompc *c, const char *transaction) STOMPC_MUST_CHECK;
int stompc_abort(struct stompc *c, const char *transaction) STOMPC_MUST_CHECK;

/* Wait until what was sent is written and every receipted frame has its
 * RECEIPT (reconnecting and resending as needed), timeout_ms at most (-1:
 * no limit): STOMPC_ETIMEDOUT then. STOMPC_EBROKER when the broker refused
 * one of them since the last flush. */
int stompc_flush(struct stompc *c, int timeout_ms) STOMPC_MUST_CHECK;

/* ------------------------------------------------------------ receiving */

/* Poll style: the next MESSAGE, waiting up to timeout_ms (0: only what has
 * arrived, -1: forever). 0 and *out set, or STOMPC_ETIMEDOUT (or another
 * error) and *out = NULL. Runs the callbacks other than on_message. */
int stompc_receive(struct stompc *c, struct stompc_msg **out, int timeout_ms) STOMPC_MUST_CHECK;

/* Callback style. Callbacks run only inside stompc_run, stompc_dispatch and
 * stompc_receive, never inside the other calls, so a callback may send,
 * ack, subscribe... on its client (but not run/dispatch/receive). Notices
 * for registered callbacks wait in the queue until then: a client that
 * registers them should dispatch now and then. */
struct stompc_callbacks {
    /* The message is yours: free it with stompc_msg_free. Without
     * on_message, messages stay queued for stompc_receive. */
    void (*on_message)(struct stompc *c, struct stompc_msg *m, void *ud);
    /* A RECEIPT for a receipt id you asked for. */
    void (*on_receipt)(struct stompc *c, const char *receipt_id, void *ud);
    /* An ERROR from the broker (receipt_id set when it names a frame of
     * yours, which is then not resent), or a lost connection (STOMPC_EIO)
     * the client is about to recover from. */
    void (*on_error)(struct stompc *c, int status, const char *message, const char *receipt_id,
                     void *ud);
    /* Failover connected again, to broker_uri. */
    void (*on_reconnect)(struct stompc *c, const char *broker_uri, const struct stompc_stats *st,
                         void *ud);
};

int stompc_set_callbacks(struct stompc *c, const struct stompc_callbacks *cb, void *ud);
int stompc_set_callbacks_sized(struct stompc *c, const struct stompc_callbacks *cb, void *ud, size_t cb_size);
#define stompc_set_callbacks(...) stompc_set_callbacks_sized(__VA_ARGS__, sizeof(struct stompc_callbacks))

/* Wait up to timeout_ms (-1: forever) until there is something to
 * dispatch, dispatch everything ready, and return how many events were
 * dispatched (0 when the time ran out). */
int stompc_run(struct stompc *c, int timeout_ms) STOMPC_MUST_CHECK;
/* Dispatch what has already arrived, without waiting. */
int stompc_dispatch(struct stompc *c) STOMPC_MUST_CHECK;

/* ---------------------------------------------------------- event loops */

/* Non-blocking mode (on = true): no call waits for the broker any more.
 *   - stompc_connect starts connecting and returns;
 *   - stompc_send, stompc_subscribe, stompc_unsubscribe, stompc_ack/nack,
 *     stompc_commit and stompc_abort queue their frame and return 0 (it goes
 *     out as soon as the connection takes it); the RECEIPTs they would have
 *     waited for still come, and a refusal or a failover arrives as on_error
 *     (with the receipt id: "_stompc-N" for the automatic ones). Frames
 *     without receipt that are queued while no connection is up are written
 *     once one is;
 *   - STOMPC_EAGAIN instead of a wait: stompc_send when max_unreceipted
 *     (or maxCacheSize) frames are unconfirmed or 4 MiB of frames wait to be
 *     written (those queued while no connection is up included),
 *     stompc_begin and a transaction's frames while not connected;
 *   - opts->wait is refused (STOMPC_EINVAL): ask for a receipt instead.
 * stompc_receive/run/flush with timeout 0 and stompc_dispatch never wait;
 * with another timeout, and stompc_disconnect, they still wait (at most
 * that long). May be switched at any time but from a callback. */
int stompc_set_nonblocking(struct stompc *c, bool on);

/* End the wait of the blocking call in progress on c (or of the next one)
 * at once: it returns STOMPC_EINTR, and the client stays as it was (what
 * it was waiting for goes on with the next call). Async-signal-safe: for a
 * program's SIGINT/SIGTERM handler, so a call waiting for a broker that
 * does not answer does not hold the program up. */
int stompc_interrupt(struct stompc *c);

/* The descriptor to watch: an epoll instance holding every socket the
 * client has open, so it stays the same for the client's life (register
 * it once), connections and reconnections included. -1 for NULL. */
int stompc_fd(const struct stompc *c);
/* The poll(2) events to wait for on stompc_fd(): POLLIN while the client
 * has sockets open, 0 when only stompc_timeout() matters (waiting to
 * reconnect). */
int stompc_events(const struct stompc *c);
/* ms until stompc_step() must run even if stompc_fd() stays quiet
 * (heart-beats, connection attempts, reconnect delays; 0 when callbacks are
 * waiting to run); -1: no timer. */
int stompc_timeout(const struct stompc *c);
/* Do the work that is ready, without waiting: write what the sockets take,
 * read and handle what arrived, heart-beats, connection attempts and
 * reconnects, then run the callbacks (as stompc_dispatch). Returns how many
 * callbacks ran, or < 0 when the client has stopped for good: attempts
 * exhausted (STOMPC_ECONNECT), a tcp:// connection lost (STOMPC_EIO...),
 * then STOMPC_ECLOSED. Not from a callback (STOMPC_EBUSY). Works in
 * blocking mode too. */
int stompc_step(struct stompc *c);

/* ---------------------------------------------------------------- stats */

int stompc_get_stats(const struct stompc *c, struct stompc_stats *out);
int stompc_get_stats_sized(const struct stompc *c, struct stompc_stats *out, size_t out_size);
#define stompc_get_stats(...) stompc_get_stats_sized(__VA_ARGS__, sizeof(struct stompc_stats))

#ifdef __cplusplus
}
#endif

#endif
