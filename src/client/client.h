/* libstompc internals shared by its files: the client object, the frames it
 * keeps for replay, the event queue, and the functions each file offers the
 * others (net_ for the socket, failover_ for (re)connecting, client_ for
 * bookkeeping in stompc.c). Nothing here is exported from the library. */
#ifndef STOMPC_CLIENT_H
#define STOMPC_CLIENT_H

#include <netdb.h>
#include <stdarg.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "stompc.h"
#include "stompd/buf.h"
#include "stompd/frame.h"
#include "uri.h"

/* The public structs as the caller compiled them (abi.c, see stompc.h):
 * abi_in copies given_size bytes of a caller's struct into this library's
 * (mine_size), zeroing what the caller does not have; -1 when the caller's
 * is larger and sets a byte past ours. abi_out copies ours out, as much as
 * the caller has room for, zeroing the rest of a larger one. */
int abi_in(void *mine, size_t mine_size, const void *given, size_t given_size);
void abi_out(void *given, size_t given_size, const void *mine, size_t mine_size);

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* An outgoing frame in logical form (not bytes): kept to be resent, and
 * re-encoded then, since the next broker may speak another version. */
struct ofr {
    TAILQ_ENTRY(ofr) link;     /* c->pending while its RECEIPT is awaited */
    uint64_t seq;              /* creation order, to find it again safely */
    enum stomp_cmd cmd;
    bool pending;              /* on c->pending */
    bool user_receipt;         /* the caller asked for the receipt: report it */
    bool owned_by_sub;         /* a subscription's SUBSCRIBE frame */
    bool oom;                  /* an allocation failed while building it */
    bool sent;                 /* written on some connection already */
    char *receipt;             /* NULL: none */
    const char *tx;            /* the transaction header's value, if any */
    uint32_t nh, cap;
    struct ofr_header { char *name, *value; } *h;
    char *body;
    size_t body_len;
};
TAILQ_HEAD(ofr_list, ofr);

/* One connection attempt to one broker (happy eyeballs: several may be
 * under way at once; the first CONNECTED wins). */
struct ssl_st;
struct ssl_ctx_st;

struct attempt {
    int fd;                    /* -1: none under way */
    bool handshake;            /* TCP is up: (TLS, then) CONNECT sent or being sent */
    struct ssl_st *ssl;        /* ssl:// brokers: the TLS session */
    bool tls_up;               /* its handshake is done: CONNECT may go */
    bool tls_want_write;       /* the handshake waits for the socket to be writable */
    uint32_t ev;               /* epoll events registered for fd */
    struct addrinfo *res, *cur; /* the host's addresses; cur is being tried */
    int64_t deadline;          /* monotonic ms */
    struct buf out, in;
    struct frame_parser parser;
    /* from its CONNECTED, applied when it wins */
    enum stomp_version version;
    int64_t hb_tx_ms, hb_rx_ms;
    char *members;             /* the cluster-members header, if any */
};

/* What the failover schedule knows of one broker of the list. */
struct bstate {
    struct attempt a;
    int64_t next_at;           /* no attempt before this (monotonic ms) */
    unsigned refusals;         /* connects refused in a row: short delays */
    unsigned costly;           /* failures after reaching it in a row: back-off */
    bool failed_this_round;
};

struct csub {
    TAILQ_ENTRY(csub) link;
    char *id;
    struct ofr *frame;         /* its SUBSCRIBE, without receipt */
};
TAILQ_HEAD(csub_list, csub);

struct ctx {
    TAILQ_ENTRY(ctx) link;
    char *name;
    bool failed;               /* lost by a failover */
};
TAILQ_HEAD(ctx_list, ctx);

/* A received MESSAGE: the public struct first, then what backs it. */
struct cmsg {
    struct stompc_msg pub;
    struct frame f;
    struct stompc_header *hdrs;
    uint64_t gen;              /* connection generation it arrived on */
    const struct stompc *owner;
};

enum cev_kind { CEV_MESSAGE, CEV_RECEIPT, CEV_ERROR, CEV_RECONNECT };

struct cev {
    TAILQ_ENTRY(cev) link;
    enum cev_kind kind;
    struct cmsg *msg;
    int status;
    char *text;                /* error message, or broker URI */
    char *receipt;
};
TAILQ_HEAD(cev_list, cev);

enum client_state {
    CS_IDLE,       /* never connected, or disconnected by the caller */
    CS_CONNECTED,
    CS_LOST,       /* connecting (first time, or failover reconnecting) */
    CS_DEAD,       /* failed for good (plain tcp:// loss, attempts exhausted) */
};

struct stompc {
    enum client_state state;
    char err[1024];
    char closed_why[1024];     /* why CS_DEAD (or the last failed connect) */

    /* what stompc_connect was given, kept for every reconnect */
    struct uri uri;
    char *login, *passcode, *host, *client_id, *accept_version;
    struct stompc_header *cheaders; /* extra CONNECT headers, owned */
    size_t ncheaders;
    int hb_cx, hb_cy;
    char *tls_ca, *tls_cert, *tls_key; /* files, for ssl:// brokers */
    struct ssl_ctx_st *tls_ctx; /* made from them when the URI names an ssl:// broker */
    int receipt_timeout;
    size_t max_frame;
    unsigned max_unreceipted;

    bool nonblocking;          /* calls never wait (stompc_set_nonblocking) */
    int epfd;                  /* stompc_fd(): every socket of the client */
    int last_status;           /* why the client stopped, for stompc_step */

    /* the connection */
    int fd;
    uint32_t ev;               /* epoll events registered for fd */
    struct ssl_st *ssl;        /* over TLS: its session (NULL: plain TCP) */
    bool rd_wants_wr;          /* TLS: a read waits for the socket to be writable */
    bool wr_wants_rd;          /* TLS: a write waits for it to be readable */
    bool disconnecting;        /* stompc_disconnect: a loss is not recovered */
    size_t broker;             /* index into uri.brokers */
    enum stomp_version version;
    struct frame_parser parser;
    struct buf in, out;
    uint64_t out_written;      /* bytes of out ever handed to the kernel */
    uint64_t out_queued;       /* bytes ever appended to out */
    int64_t last_rx, last_tx;  /* monotonic ms */
    int64_t hb_tx_ms, hb_rx_ms; /* negotiated; 0: none */
    uint64_t gen;              /* bumped by every connection */

    /* failover */
    struct bstate *bs;         /* one per broker of uri.brokers */
    size_t *order;             /* this round's order of brokers */
    unsigned failures;         /* failed rounds (and connections lost at once) since the last
                                * connection that held */
    int64_t adopted_at;        /* when the session's connection answered CONNECTED */
    unsigned round_failed;     /* brokers failed in this round */
    bool ever_connected;       /* since stompc_connect: startup limits apply until then */
    size_t last_failed;        /* broker that failed last, SIZE_MAX: none */
    size_t last_started;       /* the attempt started last, SIZE_MAX: none */
    int64_t last_started_at;
    int64_t connect_timeout_opt; /* stompc_options.connect_timeout (0: default) */
    char connect_err[1024];    /* why the last attempt failed */
    int connect_status;        /* ...and its status */
    bool refused_for_good;     /* ...an ERROR the same CONNECT would meet again (net.c) */
    char round_refusal[1024];  /* the last such ERROR in this round of attempts ("": none) */
    uint64_t rng;

    /* session state replayed after a reconnect */
    struct csub_list subs;
    struct ofr_list pending;
    size_t npending;
    size_t pending_bytes;      /* bodies of the pending frames */
    struct ofr_list backlog;   /* unreceipted frames waiting for a connection */
    volatile sig_atomic_t interrupted; /* stompc_interrupt, not yet taken by a wait */
    int intr_fd;               /* an eventfd in epfd, so the interrupt wakes the wait */
    size_t nbacklog;
    size_t backlog_bytes;      /* bodies of the backlog's frames */
    struct ctx_list txs;
    uint64_t next_seq;         /* ofr seq and automatic receipt ids */
    char dupl_prefix[33];      /* random 128 bits, hex */
    uint64_t dupl_counter;
    unsigned flush_failures;   /* receipted frames failed since the last flush */
    int flush_status;          /* ...the status of the last one */
    char flush_err[1024];      /* ...and why */

    /* a synchronous call waiting for one receipt */
    char *wait_id;
    int wait_status;           /* 1 waiting, 0 done, < 0 failed */
    char wait_err[1024];       /* why it failed */

    /* events and callbacks */
    struct cev_list events;
    size_t nmessages;          /* CEV_MESSAGE entries queued */
    size_t nevents;            /* all entries queued */
    struct stompc_callbacks cb;
    void *ud;
    bool in_callback;
    bool free_deferred;

    struct stompc_stats st;
};

/* ---------------------------------------------------------------- time */
int64_t client_now(void);
/* Absolute deadline for a timeout in ms (< 0: none, returned as -1). */
int64_t client_deadline(int64_t timeout_ms);
/* ms left before deadline for poll(): -1 for none, 0 when past. */
int client_left(int64_t deadline);

/* ------------------------------------------------------------ stompc.c */
int client_fail(struct stompc *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A frame from the broker after the handshake; takes f over. Returns < 0
 * when the connection must be dropped (an ERROR). */
int client_on_frame(struct stompc *c, struct frame *f);
/* The connection is gone: close it and settle the session (see stompc.c). */
int client_lost(struct stompc *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Queue a notice for the callbacks; false when out of memory. */
bool client_event(struct stompc *c, enum cev_kind kind, int status, const char *text, const char *receipt);
void client_pending_remove(struct stompc *c, struct ofr *o);
/* Failover gave up (or a tcp:// connect failed): end the session. */
void client_gave_up(struct stompc *c, int status, const char *why);
/* Before a voluntary switch of broker (priorityBackup): what a loss does
 * to the session, without reporting an error. */
void client_settle(struct stompc *c, const char *why);

/* --------------------------------------------------------------- net.c */
/* The epoll instance behind stompc_fd(). 0 or -errno. */
int net_init(struct stompc *c);
void net_fini(struct stompc *c);
/* Wake the engine's wait (stompc_interrupt; async-signal-safe). */
void net_interrupt(struct stompc *c);
/* Close the session's connection (it stays in the counters). */
void net_close(struct stompc *c);
/* "broker ERROR: <message>: <first line of the body>" */
void net_describe_error(const struct frame *f, char *out, size_t outlen);
/* Encode a frame into the output buffer (no I/O). 0 or STOMPC_ENOMEM. */
int net_put(struct stompc *c, const struct ofr *o, bool with_receipt) __attribute__((warn_unused_result));
/* Write what the kernel takes now. 0, or < 0 after client_lost. */
int net_write(struct stompc *c);
/* Readiness of the session's socket: write, read, handle frames. 0, or
 * < 0 after client_lost. */
int net_io(struct stompc *c, uint32_t events);
/* Heart-beat duties now; the next time they are due (monotonic ms, -1:
 * none) in *next. 0, or < 0 after client_lost. */
int net_timers(struct stompc *c, int64_t now, int64_t *next);
/* Update the session socket's epoll registration to what it needs now. */
void net_interest(struct stompc *c);
/* The event loop's entry: readiness (epoll events) of what tag names. 0,
 * or < 0 when the client stopped for good (a tcp:// loss, given up). */
int net_dispatch(struct stompc *c, uint64_t tag, uint32_t events, int64_t now);
/* Has the client a socket open (session or attempt)? */
bool net_any_open(const struct stompc *c);
/* When the heart-beats are next due (monotonic ms, -1: none). */
int64_t net_next_timer(const struct stompc *c);

/* Start an attempt on broker i: 0 under way, < 0 failed at once
 * (c->connect_err says why; *costly false). */
int net_attempt_start(struct stompc *c, size_t i, int64_t now);
/* Readiness (events) or the deadline (events 0) of attempt i: 1 it has
 * its CONNECTED, 0 still going, < 0 failed (*costly: it had reached the
 * broker). */
int net_attempt_io(struct stompc *c, size_t i, uint32_t events, int64_t now, bool *costly);
/* Give up attempt i; polite: tell a broker that may have answered. */
void net_attempt_close(struct stompc *c, size_t i, bool polite);
/* Attempt i becomes the session's connection. */
void net_attempt_adopt(struct stompc *c, size_t i);

/* --------------------------------------------------------------- ctls.c */
enum { CTLS_WANT_READ = -1, CTLS_WANT_WRITE = -2, CTLS_ERROR = -3 };
/* The client's TLS context when the URI names an ssl:// broker (from
 * tls_ca, tls_cert, tls_key): 0, or STOMPC_EINVAL / STOMPC_ENOMEM with err. */
int ctls_setup(struct stompc *c, char *err, size_t errlen);
void ctls_free(struct stompc *c);
/* A client session on fd verifying host; NULL with err. */
struct ssl_st *ctls_new(struct stompc *c, int fd, const char *host, char *err, size_t errlen);
/* 1 done, CTLS_WANT_* not yet, CTLS_ERROR (err). */
int ctls_handshake(struct ssl_st *ssl, char *err, size_t errlen);
/* > 0 bytes, 0 closed (read), CTLS_WANT_*, CTLS_ERROR (err). */
ssize_t ctls_read(struct ssl_st *ssl, void *p, size_t n, char *err, size_t errlen);
ssize_t ctls_write(struct ssl_st *ssl, const void *p, size_t n, char *err, size_t errlen);
/* Decoded input waiting (no readiness will say so). */
bool ctls_pending(const struct ssl_st *ssl);
const char *ctls_version(const struct ssl_st *ssl);
/* Free the session; notify: send close_notify if the socket takes it. */
void ctls_close(struct ssl_st *ssl, bool notify);

/* ---------------------------------------------------------- failover.c */
/* bs[] and order[] for uri.brokers and the brokers it may learn. 0 or
 * STOMPC_ENOMEM. */
int failover_init(struct stompc *c);
void failover_fini(struct stompc *c);
/* Start connecting (stompc_connect): the first round. */
void failover_begin(struct stompc *c);
/* An attempt event (events 0: its deadline passed). 0, or < 0 when the
 * client gave up (status). */
int failover_attempt_event(struct stompc *c, size_t i, uint32_t events, int64_t now);
/* Start the attempts that are due; the next time one is (monotonic ms,
 * -1: none) in *next. 0, or < 0 when the client gave up. */
int failover_schedule(struct stompc *c, int64_t now, int64_t *next);
/* When failover_schedule has something to do next (monotonic ms, -1:
 * nothing; now when due). No side effects. */
int64_t failover_next_timer(const struct stompc *c, int64_t now);
/* The session's connection was lost: a new round, starting at once. */
/* The session's connection was lost (why): try again. Nonzero when the
 * client gave up instead (it was lost as soon as it answered, once too
 * often: maxReconnectAttempts). */
int failover_lost(struct stompc *c, const char *why);
/* Close every attempt under way. */
void failover_abort_attempts(struct stompc *c);

/* ---------------------------------------------------------------- ofr */
/* NULL when out of memory. The other calls mark o->oom instead of failing:
 * check it once the frame is built. */
struct ofr *ofr_new(struct stompc *c, enum stomp_cmd cmd);
void ofr_add(struct ofr *o, const char *name, const char *value);
const char *ofr_get(const struct ofr *o, const char *name);
void ofr_set_body(struct ofr *o, const void *body, size_t len);
void ofr_set_receipt(struct ofr *o, const char *receipt);
void ofr_free(struct ofr *o);

/* Room for extra more bytes in b, without abort: 0 or STOMPC_ENOMEM. */
int cbuf_reserve(struct buf *b, size_t extra) __attribute__((warn_unused_result));

#endif
