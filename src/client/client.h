/* libstompc internals shared by its files: the client object, the frames it
 * keeps for replay, the event queue, and the functions each file offers the
 * others (net_ for the socket, failover_ for (re)connecting, client_ for
 * bookkeeping in stompc.c). Nothing here is exported from the library. */
#ifndef STOMPC_CLIENT_H
#define STOMPC_CLIENT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

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
    char *receipt;             /* NULL: none */
    const char *tx;            /* the transaction header's value, if any */
    uint32_t nh, cap;
    struct ofr_header { char *name, *value; } *h;
    char *body;
    size_t body_len;
};
TAILQ_HEAD(ofr_list, ofr);

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
    CS_LOST,       /* failover: to reconnect at the next occasion */
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
    int connect_timeout, receipt_timeout;
    size_t max_frame;
    unsigned max_unreceipted;

    /* the connection */
    int fd;
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
    unsigned failures;         /* failed rounds since the last connection */
    bool ever_connected;       /* since stompc_connect: startup limits apply until then */
    int64_t next_round_at;     /* monotonic ms; 0: now */
    size_t last_failed;        /* broker that failed last, SIZE_MAX: none */
    char connect_err[1024];    /* why the last round failed */
    uint64_t rng;

    /* session state replayed after a reconnect */
    struct csub_list subs;
    struct ofr_list pending;
    size_t npending;
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
void client_event(struct stompc *c, enum cev_kind kind, int status, const char *text, const char *receipt);
void client_pending_remove(struct stompc *c, struct ofr *o);
/* Failover gave up (or a tcp:// connect failed): end the session. */
void client_gave_up(struct stompc *c, const char *why);

/* --------------------------------------------------------------- net.c */
/* TCP connect, then CONNECT/CONNECTED; each step bounded by deadline. */
int net_open(struct stompc *c, size_t broker, int64_t deadline);
void net_close(struct stompc *c);
/* "broker ERROR: <message>: <first line of the body>" */
void net_describe_error(const struct frame *f, char *out, size_t outlen);
/* Encode a frame into the output buffer (no I/O). */
void net_put(struct stompc *c, const struct ofr *o, bool with_receipt);
/* Write the output buffer out, reading (and handling) what arrives
 * meanwhile. 0, or < 0 after client_lost. */
int net_flush(struct stompc *c);
/* Wait until deadline for input (or output room), then read and handle it
 * and the heart-beats. 1: something happened, 0: deadline passed, < 0:
 * connection lost (client_lost was called). */
int net_pump(struct stompc *c, int64_t deadline);

/* ---------------------------------------------------------- failover.c */
/* Connect (or reconnect and replay) before deadline: 0, or < 0 with
 * c->err set (STOMPC_ETIMEDOUT, STOMPC_ECONNECT...). */
int failover_connect(struct stompc *c, int64_t deadline);
/* Make sure the client is connected, reconnecting when failover allows. */
int failover_ensure(struct stompc *c, int64_t deadline);

/* ---------------------------------------------------------------- ofr */
struct ofr *ofr_new(struct stompc *c, enum stomp_cmd cmd);
void ofr_add(struct ofr *o, const char *name, const char *value);
const char *ofr_get(const struct ofr *o, const char *name);
void ofr_set_body(struct ofr *o, const void *body, size_t len);
void ofr_set_receipt(struct ofr *o, const char *receipt);
void ofr_free(struct ofr *o);

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
char *xstrdup(const char *s);

#endif
