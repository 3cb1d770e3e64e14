/* Streams: the one layer under every kind of connection (STOMP clients,
 * console requests, replication peers). A stream is a non-blocking socket
 * with an input and an output buffer, its read and write watchers, one
 * deadline timer, reading paused and resumed by reason, output flushed
 * before the loop sleeps (or at once), and one close path: closing runs
 * the protocol's `closed` callback at once and puts the stream on a dead
 * list; the object that embeds it is freed before the loop sleeps, never
 * inside one of its own callbacks. Listeners (the accept helper with its
 * per-listener connection limit and file-descriptor exhaustion handling)
 * live here too. */
#ifndef STOMPD_STREAM_H
#define STOMPD_STREAM_H

#include <assert.h>
#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "stompd/buf.h"

struct stream;
struct listener;

/* A pause reason reserved for the framing layer (the protocol's are lower
 * bits): its own output (pongs) is at the limit. Lifted when the output
 * drains. */
enum { STREAM_PAUSE_FILTER = 0x80 };
/* ------------------------------------------------------------ transports */

/* What a transport's read or write returns instead of a byte count. */
enum {
    STREAM_IO_WANT_READ = -1,  /* nothing now: again once the socket is readable */
    STREAM_IO_WANT_WRITE = -2, /* nothing now: again once the socket is writable */
    STREAM_IO_ERROR = -3,      /* the connection failed (why says how) */
};

/* The bytes of a stream pass through a transport: the plain socket, or
 * TLS (tls.c); the protocol above sees the same input and output either
 * way. A read may need the socket writable (a TLS handshake, or a key
 * update answered) and a write may need it readable (a handshake under
 * way): the stream then watches that direction and calls again. */
struct stream_transport {
    const char *name;
    /* Up to n bytes into p: > 0 bytes read, 0 the peer closed, or STREAM_IO_*. */
    ssize_t (*read)(struct stream *s, void *p, size_t n, char *why, size_t whylen);
    /* Up to n bytes of p: > 0 bytes taken, or STREAM_IO_* (never 0). */
    ssize_t (*write)(struct stream *s, const void *p, size_t n, char *why, size_t whylen);
    /* Optional: must be read although the socket may stay quiet (input
     * decoded and waiting, or a handshake to start)? */
    bool (*pending)(const struct stream *s);
    /* Optional: the stream is closing: say goodbye if the socket takes it
     * at once (TLS close_notify) and free the transport's state. */
    void (*close)(struct stream *s);
    /* Optional: write what the transport took and holds (s->tr_out bytes:
     * TLS records) to the socket: 0 all of it, STREAM_IO_WANT_WRITE the
     * socket is full, or STREAM_IO_ERROR. A transport that holds output
     * after a read asks for a flush (stream_want_flush). */
    ssize_t (*drain)(struct stream *s, char *why, size_t whylen);
};

enum stream_state {
    STREAM_CONNECTING, /* outgoing connect in progress */
    STREAM_OPEN,
    STREAM_CLOSING,    /* no more input; closed once output is flushed */
    STREAM_DEAD,       /* closed; its object is freed before the loop sleeps */
};

struct stream_ops {
    const char *kind; /* "stomp", "http", "repl": for logs */
    /* Input arrived: consume what can be used of p[0..n) and return how
     * many bytes were used. Whatever is not used stays buffered and is
     * offered again with the next input or when reading resumes. The
     * callback may pause, close or close-after-flush the stream. */
    size_t (*input)(struct stream *s, const char *p, size_t n);
    /* Optional: the output was at its limit (or the socket was full) and
     * drained below the low-water mark. */
    void (*drained)(struct stream *s);
    /* Optional: how many bytes of s->out may be written now (SIZE_MAX:
     * all, 0: none)? A STOMP connection holds a delivery, and what it
     * wrote after it, until the delivery's journal entry is committed;
     * what it wrote before goes meanwhile. Never less than it said before
     * for bytes already there. */
    size_t (*may_write)(const struct stream *s);
    /* Optional: the deadline set with stream_set_timer passed. */
    void (*timeout)(struct stream *s);
    /* Optional: the peer closed its side (a read returned 0). Returning
     * true keeps the stream to answer what was read before: the callback
     * has paused it (nothing more is read), and closes it once answered.
     * False, or no callback: closed now. */
    bool (*eof)(struct stream *s);
    /* Optional: an outgoing connect completed. */
    void (*connected)(struct stream *s);
    /* Optional: the stream was closed (by either side): release what the
     * protocol holds. Runs once, before the stream goes on the dead list. */
    void (*closed)(struct stream *s, const char *why);
    /* Free the object embedding the stream (before the loop sleeps). */
    void (*release)(struct stream *s);
};

/* A framing layer between the socket and the protocol (WebSocket, ws.c):
 * the socket's bytes go to the layer, which hands the protocol its
 * payload through ops->input; the protocol writes s->out as usual and the
 * layer frames it into s->wire, which is what reaches the socket. A TLS
 * layer sits below it, on the socket's reads and writes. */
struct stream_filter {
    const char *name; /* the transport, for the console: "ws" */
    /* Bytes from the socket: return how many were used (the rest stays
     * buffered, as for ops->input). */
    size_t (*input)(struct stream *s, const char *p, size_t n);
    /* Bytes of decoded input waiting for the protocol (offered when
     * reading resumes; they count with s->in toward the input total). */
    size_t (*held)(const struct stream *s);
    /* Move output into s->wire: control frames always, and up to allowed
     * bytes of s->out (taken with stream_out_consume: what may_write
     * allows). When the stream is closing and s->out is empty the layer
     * also adds its closing frame. */
    void (*encode)(struct stream *s, size_t allowed);
    /* A closing stream wrote everything: may the socket close now? (No:
     * it keeps reading until the peer's closing frame, or the linger.) */
    bool (*may_close)(struct stream *s);
    /* Optional: the stream closes at once, not after a flush: add a last
     * closing frame to s->wire (written if the socket takes it now). */
    void (*farewell)(struct stream *s);
    /* Free the layer's state (with the stream, before the loop sleeps). */
    void (*release)(struct stream *s);
};

struct stream {
    int fd;
    enum stream_state state;
    const struct stream_ops *ops;
    struct listener *listener;  /* counted against its connection limit */
    char peer[64];
    ev_io rd, wr;
    ev_timer timer;
    struct buf in, out;
    uint64_t out_done;          /* bytes of out written (or taken by the layer) so far */
    const struct stream_filter *filter; /* NULL: the protocol's bytes go to the socket as they are */
    void *filter_data;
    struct buf wire;            /* with a filter: framed output not yet written */
    size_t tr_out;              /* output the transport took and has not written (its drain) */
    uint16_t close_code;        /* why the protocol closes, for a layer that says it (WebSocket: 1008) */
    bool cert_refused;          /* the TLS handshake failed on a certificate: the peer's, or ours refused by it */
    ev_tstamp last_rx, last_tx;
    size_t out_limit;           /* "full" at this many unsent bytes */
    size_t low_water;           /* drained below this */
    uint8_t paused;             /* reasons reading is stopped (bits, the protocol's own) */
    bool writing;               /* EV_WRITE armed */
    bool blocked;               /* output was full: tell `drained` when it is not */
    bool in_flush, in_resume;
    size_t in_counted;          /* of `in`, what the layer's total counts */
    bool peer_closed;           /* a read returned 0 and `eof` kept the stream: no linger at its close */
    bool unproven;              /* its peer has not logged in: its input counts in strangers' total too */
    const char *close_why;      /* STREAM_CLOSING: the reason logged at the close */
    const struct stream_transport *tr; /* the plain socket unless set */
    void *tr_ctx;               /* the transport's state (TLS session) */
    bool rd_wants_wr;           /* the transport's read waits for the socket to be writable */
    bool wr_wants_rd;           /* its write waits for the socket to be readable */
    size_t out_counted;         /* of stream_pending, what the layer's output total counts */
    bool out_waiting;           /* refused more for the total's sake: told `drained` when there is room */
    TAILQ_ENTRY(stream) flush_link, resume_link, dead_link, room_link;
};

/* The loop every stream and listener runs on (set once at start). */
void stream_layer_init(struct ev_loop *loop);

/* Take over a connected (or, with connecting, connecting) socket. The
 * stream starts reading at once. */
void stream_init(struct stream *s, int fd, const char *peer, const struct stream_ops *ops, bool connecting);
/* Carry the stream's bytes through t (ctx is its state; a stream starts
 * on the plain socket). Set before any byte is read or written. */
void stream_set_transport(struct stream *s, const struct stream_transport *t, void *ctx);
/* Start a non-blocking connect to host:port; returns the socket or -1. */
int stream_connect_socket(const char *addr, char *err, size_t errlen);

/* Queue output: appended to s->out (or written with buf_* directly),
 * then flushed before the loop sleeps. */
void stream_write(struct stream *s, const void *p, size_t n);
void stream_want_flush(struct stream *s);
/* Write what the socket takes now; returns -1 when the stream closed. */
int stream_flush(struct stream *s);
static inline size_t stream_pending(const struct stream *s)
{
    return buf_used(&s->out) + buf_used(&s->wire) + s->tr_out;
}
/* Where the next byte written to s->out will be, counted from the stream's
 * first: a protocol's mark for may_write. */
static inline uint64_t stream_out_pos(const struct stream *s) { return s->out_done + buf_used(&s->out); }
/* Forget what was written to s->out from pos on (pos: a stream_out_pos
 * none of whose bytes has gone yet, as a protocol's may_write held it). */
static inline void stream_out_cut(struct stream *s, uint64_t pos)
{
    assert(pos >= s->out_done && pos <= s->out_done + buf_used(&s->out));
    buf_cut(&s->out, (size_t)(pos - s->out_done));
}
/* n bytes of s->out are written (or framed into s->wire). */
void stream_out_consume(struct stream *s, size_t n);
static inline bool stream_full(const struct stream *s) { return stream_pending(s) >= s->out_limit; }
/* Bytes of output all streams hold, not yet written (kept current at each
 * stream_want_flush and flush). */
size_t stream_output_held(void);
/* May s be given more output, all streams holding together at most limit?
 * Yes while the total is under it, or while what s may write now (not
 * what its protocol holds back) is under 4 KiB: every stream still moves,
 * a few small messages or one large one at a time. If not, s is told
 * `drained` once that much is written or the total falls to three
 * quarters of limit. */
bool stream_output_room(struct stream *s, size_t limit);
/* "tcp", or the framing layer's name ("ws"). */
static inline const char *stream_transport(const struct stream *s) { return s->filter ? s->filter->name : "tcp"; }

/* Bytes all streams hold in their input buffers (partial frames and the
 * like, a framing layer's decoded bytes too), and that total less what s
 * holds: a protocol bounds the sum. */
size_t stream_input_held(void);
size_t stream_input_held_by_others(const struct stream *s);
/* The same over unproven streams (peers that have not logged in: partial
 * CONNECT frames, WebSocket upgrade requests), less what s holds, so that
 * a protocol can keep strangers to a share of the total. */
size_t stream_unproven_input_held_by_others(const struct stream *s);
size_t stream_unproven_input_held(void);
/* Unproven streams share a quarter of a protocol's input limit: would s,
 * holding n bytes, stay within it? */
bool stream_unproven_fits(const struct stream *s, size_t n, size_t limit);
/* Its peer logged in: its input no longer counts as a stranger's. */
void stream_set_proven(struct stream *s);

/* Reading stops while any reason bit is set. Resuming with input already
 * buffered offers it to the protocol before the loop sleeps. */
void stream_pause(struct stream *s, uint8_t reason);
void stream_resume(struct stream *s, uint8_t reason);

/* One deadline per stream (0 stops it); STREAM_CLOSING uses it for the
 * linger, the protocol's `timeout` otherwise. */
void stream_set_timer(struct stream *s, double after);
/* The same, unless the timer is already due within that time. */
void stream_set_timer_within(struct stream *s, double after);
/* Seconds until the timer fires; -1 when it is not running. */
double stream_timer_remaining(const struct stream *s);

/* Stop reading; close once the output is flushed, or after linger
 * seconds if the peer does not read it. (A framing layer may keep reading
 * for the peer's closing frame, within the same linger.) */
void stream_close_after_flush(struct stream *s, double linger, const char *why);
/* Close now. (A stream that closes after flushing its last answer shuts
 * its write side and reads and drops what the peer still sends, for a
 * moment, before its socket closes: no reset costs the peer the answer.) */
void stream_close(struct stream *s, const char *why);
/* At shutdown: close the sockets that still linger so. At most this many
 * linger at once (descriptors beyond the connection limits). */
#define STREAM_LINGER_MAX 256
void stream_layer_stop(void);
/* How many linger now. */
unsigned stream_lingering(void);

/* The before-sleep work of the layer: offer buffered input of resumed
 * streams (returns true when there was any), flush every stream that
 * asked, free dead ones. */
bool stream_run_resumed(void);
void stream_flush_all(void);
void stream_free_dead(void);
bool stream_flush_pending(void);

/* ------------------------------------------------------------ listeners */

struct listener {
    const char *name;           /* "STOMP", "console", "replication" */
    const char *addr_key;       /* config key of its address, named in errors */
    const char *limit_key;      /* config key of its connection limit */
    uint32_t max_conns;         /* 0: no limit */
    uint32_t nconns;
    struct listener *pool;      /* optional: count and limit connections with this listener's */
    /* Optional: counts against this listener's limit instead (two
     * listeners, one limit: STOMP and STOMP over TLS). */
    struct listener *limit_with;
    /* Optional: called for each stream it accepts, when it is attached
     * (TLS: set the stream's transport). */
    void (*secure)(struct listener *l, struct stream *s);
    bool nodelay;               /* TCP_NODELAY on accepted sockets */
    /* The broker's own (replication, the console): may take half of the
     * descriptors kept from clients, so that a slave and an operator get
     * in when clients hold all they may (helper-118). */
    bool service;
    int fd;
    bool running;
    ev_io io;
    ev_timer pause;             /* accepting paused after running out of descriptors */
    uint64_t accepted, refused, fd_exhausted;
    ev_tstamp fd_logged;
    /* A new connection: the callback makes a stream of it (with
     * stream_init and listener_attach). */
    void (*accept)(struct listener *l, int fd, const char *peer);
    /* Optional: write a protocol-level "too many connections" answer to a
     * refused socket before it is closed. */
    void (*refuse)(struct listener *l, int fd);
    /* Optional: at the limit, close a connection that has not logged in
     * to make room for a newcomer from peer ("host:port"); true if it did
     * (the newcomer is then accepted). */
    bool (*make_room)(struct listener *l, const char *peer);
};

/* Bind and listen on host:port and start accepting; -1 with err filled
 * (naming addr_key). */
int listener_start(struct listener *l, const char *addr, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void listener_stop(struct listener *l);
bool listener_running(const struct listener *l);
/* Every listener started so far (running or not), for their counters. */
size_t listener_list(const struct listener **out, size_t max);
/* The stream counts against l's connection limit (or its pool's) until
 * it closes. */
void listener_attach(struct listener *l, struct stream *s);

/* For a listener's refuse callback: write msg (len bytes) to a socket
 * about to be closed, as far as it takes it at once. */
void listener_say(int fd, const char *msg, size_t len);

/* Is addr ("host:port", host a name or an address) on loopback only?
 * False for every interface (0.0.0.0, ::, no host) and for a name that
 * resolves to any other address. */
bool stream_addr_loopback(const char *addr);

/* A non-blocking listening socket on host:port; -1 with err filled. */
int stream_listen_socket(const char *addr, char *err, size_t errlen);
struct sockaddr_storage;
void stream_peer_name(const struct sockaddr_storage *ss, char *out, size_t len);

#endif
