/* Replication between nodes (DESIGN §5): one TCP connection per slave to
 * the master's replication address. Frames are u32 length | u8 type |
 * payload, integers big-endian, strings u32 length + bytes. This header
 * has the wire codec and the peer object both sides use, and the master
 * and slave entry points. */
#ifndef STOMPD_REPL_H
#define STOMPD_REPL_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stompd/buf.h"
#include "stompd/stats.h"
#include "stompd/stream.h"

/* 3: HELLO and SNAPSHOT_END carry the checksum of the entry at the
 * position they name (a divergent tail is found even at an equal epoch).
 * 4: the token is never sent: HELLO, CHALLENGE, PROOF, WELCOME prove it
 * both ways (repl_auth.h); the version stays the first field of HELLO, so
 * nodes of different versions refuse each other saying both versions.
 * 5: entries may hold JOP_SUB_SET, which a node of 4 cannot read. */
#define REPL_VERSION 5
#define REPL_MAX_FRAME (64u << 20)
/* Largest frame either side takes before the other has proven itself:
 * an unauthenticated peer can make a node hold no more than this. */
#define REPL_MAX_UNAUTH_FRAME 4096u
/* Why a peer stops reading: a slave's store holds store.repl_window bytes
 * not yet written */
enum { REPL_PAUSE_STORE = 1 };

/* The handshake:
 *   slave  -> master  HELLO      version, slave id, slave nonce
 *   master -> slave   CHALLENGE  master id, master nonce
 *   slave  -> master  PROOF      slave proof, and where its journal stands
 *   master -> slave   WELCOME    master proof, then what the stream starts with
 * A master sends no state (and counts nothing toward a quorum) before a
 * good PROOF; a slave acts on nothing from a master before a good WELCOME.
 * Either side answers a failed proof by closing (the master says REFUSE). */
enum repl_type {
    R_HELLO = 1,          /* s->m: version, node id, nonce */
    R_WELCOME = 2,        /* m->s: master proof, epoch, master id, u8 REPL_SLAVE_*, snapshot?, next lsn,
                           *       master's console (host:port, "" = none), master's head lsn */
    R_REFUSE = 3,         /* m->s: reason, u8 REPL_REFUSE_*, then close */
    R_SNAPSHOT_BEGIN = 4, /* m->s: epoch, lsn */
    R_SNAPSHOT_CHUNK = 5, /* m->s: u32 n, n (key, value) pairs */
    R_SNAPSHOT_END = 6,   /* m->s: lsn, epoch and checksum of its entry */
    R_ENTRIES = 7,        /* m->s: u64 epoch, u32 n, n times (u8 flags REPL_ENTRY_*, entry) */
    R_ACK = 8,            /* s->m: received lsn, durable lsn */
    R_PING = 9,           /* both: u64 token; from the master also u64 head lsn */
    R_PONG = 10,          /* both: the token back */
    R_CHALLENGE = 11,     /* m->s: master id, nonce */
    R_PROOF = 12,         /* s->m: slave proof, last epoch, last lsn, max epoch seen,
                           *       checksum of the last entry (0: none / unknown) */
};

/* Why a master refused (the byte after REFUSE's reason). TOKEN: the
 * slave's proof failed, so the two nodes' store.security_token differ;
 * in a cluster the slave says so in its member znode (cluster.c). A
 * slave of the previous release reads the reason alone; one reading a
 * REFUSE without the byte takes it as OTHER. */
enum { REPL_REFUSE_OTHER = 0, REPL_REFUSE_TOKEN = 1 };

/* An entry's flags in ENTRIES. SYNC: someone waits for it on disk, a
 * slave that writes for the master fsyncs it. UNWAITED: nothing waits for
 * it (an auto-ack dequeue, acks that ran out their delay): the slave may
 * hold its ACK up to store.ack_delay for the next entry to carry it.
 * Whatever waits for an entry (a receipt, a commit, a held delivery) is
 * made in the same callback that appends it, before the entry can ship,
 * so the flag is known when it does; a waiter made later would wait at
 * most that delay. A slave of the previous release reads any non-zero
 * byte as SYNC (an fsync more, in quorum_disk): the bit needs no new
 * protocol version. */
#define REPL_ENTRY_SYNC 1u
#define REPL_ENTRY_UNWAITED 2u

/* What WELCOME asks of the slave's store. SYNC: fsync what the master
 * flags SYNC and report it at once (remote_disk, quorum_disk). WRITE:
 * report what the store wrote at once, no fsync (remote_mem, quorum_mem:
 * the master counts a copy once the slave's OS holds it). 0: the master
 * waits for no report (they may come late). A slave of an earlier release
 * reads any non-zero byte as SYNC: an fsync more, never a copy counted
 * too early. */
#define REPL_SLAVE_SYNC 1u
#define REPL_SLAVE_WRITE 2u

const char *repl_type_name(uint8_t t);

/* ------------------------------------------------------------ codec */

struct repl_reader {
    const char *p;
    size_t left;
    bool bad;
};

/* Bounds-checked reads: one that does not fit sets bad and moves nothing,
 * and once bad every read returns 0 ("" for strings) and moves nothing. */
uint8_t repl_get_u8(struct repl_reader *r);
uint32_t repl_get_u32(struct repl_reader *r);
uint64_t repl_get_u64(struct repl_reader *r);
/* Pointer into the frame (not NUL-terminated) and its length. */
const char *repl_get_str(struct repl_reader *r, uint32_t *len);

/* The frame at the start of data[0..len): 1 with its type, a reader
 * over its payload and its whole length; 0 when it is not all there yet
 * (*frame_len says how long it will be once the length is known); -1 for
 * a length no frame may have (0, or above REPL_MAX_FRAME). */
int repl_frame_split(const char *data, size_t len, uint8_t *type, struct repl_reader *r, size_t *frame_len);

/* Frames are built in place in an output buffer. */
size_t repl_frame_begin(struct buf *b, uint8_t type);
void repl_frame_end(struct buf *b, size_t start);
void repl_put_u8(struct buf *b, uint8_t v);
void repl_put_u32(struct buf *b, uint32_t v);
/* Fill in a u32 reserved earlier at mark at (buf_mark): a count known
 * only once what it counts is written. */
void repl_put_u32_at(struct buf *b, size_t at, uint32_t v);
void repl_put_u64(struct buf *b, uint64_t v);
void repl_put_str(struct buf *b, const char *s, size_t len);

/* ------------------------------------------------------------ peers */

struct repl_peer;
struct repl_peer_ops {
    /* A whole frame arrived. Returning non-zero closes the peer (with the
     * reason the callback logged). */
    int (*frame)(struct repl_peer *p, uint8_t type, struct repl_reader *r);
    /* Output drained below the low-water mark: send more. */
    void (*writable)(struct repl_peer *p);
    /* The connection is gone (closed by either side); the owner forgets
     * the peer (the stream layer frees it before the loop sleeps). */
    void (*closed)(struct repl_peer *p, const char *why);
};

/* A replication connection: a stream carrying length-prefixed frames. */
struct repl_peer {
    struct stream st;
    const struct repl_peer_ops *ops;
    void *owner;
    uint32_t max_frame;   /* REPL_MAX_UNAUTH_FRAME until the other side has proven itself */
};

/* fd is connected, or connecting (an outgoing connect in progress). */
struct repl_peer *repl_peer_new(int fd, const char *name, bool connecting, const struct repl_peer_ops *ops,
                                void *owner);
static inline struct buf *repl_peer_out(struct repl_peer *p) { return &p->st.out; }
static inline bool repl_peer_dead(const struct repl_peer *p) { return p->st.state == STREAM_DEAD; }
static inline const char *repl_peer_name(const struct repl_peer *p) { return p->st.peer; }
/* The other side has proven itself: frames up to REPL_MAX_FRAME. */
static inline void repl_peer_trust(struct repl_peer *p) { p->max_frame = REPL_MAX_FRAME; }
/* Write queued output now, as far as the socket takes it. */
void repl_peer_flush(struct repl_peer *p);
size_t repl_peer_pending(const struct repl_peer *p);
/* Answer a PING with its PONG, unless the peer has not read what was
 * written to it already (a peer that sends PINGs and never reads would
 * otherwise grow our output without bound): what it has not read shows
 * we are alive as well, once it reads. */
void repl_peer_pong(struct repl_peer *p, uint64_t t);
void repl_peer_close(struct repl_peer *p, const char *why);
/* Close without telling the owner (it is letting go of the peer). */
void repl_peer_free(struct repl_peer *p);

/* ------------------------------------------------------------ master */

int repl_master_start(uint64_t epoch, char *err, size_t errlen) __attribute__((warn_unused_result));
void repl_master_stop(const char *why);
bool repl_master_running(void);
/* The local log failed after entry keep: no entry past keep, or past
 * the last one handed to a slave's connection, is handed to one. */
void repl_master_freeze(uint64_t keep);
/* The last entry handed to any slave's connection this term (0: none):
 * the most a slave, and so a new master, may have. */
uint64_t repl_master_handed(void);
/* A new journal entry: streamed to the slaves that are caught up. */
void repl_master_append(uint64_t lsn, const char *data, size_t len, bool sync);
/* Ship what was appended this round (called before the loop sleeps). */
void repl_master_flush(void);
/* Running, with sync modes that wait for at least one slave's copy. */
bool repl_master_waits_for_slaves(void);
/* Enough slaves are connected (and authenticated) for the quorum its
 * sync modes wait for. */
bool repl_master_quorum_connected(void);
/* The master's own store made entries durable up to lsn. */
void repl_master_local_done(uint64_t lsn);

struct repl_slave_info {
    char node_id[40];
    char peer[96];
    uint64_t received, durable;
    bool snapshotting;
    double last_rx_ago;
    /* the send window: bytes still in this master's output buffer (not yet
     * taken by the socket), and bytes sent but not acknowledged (those
     * included), which store.repl_window bounds */
    uint64_t queued, unacked, window;
    /* nothing more is sent until the slave acknowledges or reads: why, and
     * for how long (NULL, 0 when it is not paused) */
    const char *paused;
    double paused_s;
    /* from an entry's append to its ACK by this slave (received, on disk) */
    const struct hist *ack_us, *durable_us;
};
/* Fill up to max entries; returns the count. */
size_t repl_master_slaves(struct repl_slave_info *out, size_t max);
/* Peers refused since start because their PROOF was wrong. */
uint64_t repl_master_auth_failures(void);
/* Unauthenticated peers closed to make room (store.max_unauthenticated). */
uint64_t repl_master_handshakes_evicted(void);
/* Why durable sends are waiting, or NULL when they are not. */
const char *repl_master_waiting(void);

struct repl_quorum_info {
    uint32_t replicas, needed;  /* slaves a quorum needs besides the master */
    uint32_t connected, in_sync;
    /* "ok", "too few slaves connected" or "slaves connected but behind" */
    const char *state;
};
void repl_master_quorum(struct repl_quorum_info *out);

/* Slaves dropped lately (timeout, closed, replaced), newest first: the
 * console says why a slave is gone from the list. */
#define REPL_DROPS_KEPT 8
struct repl_drop_info {
    char node_id[40];
    char peer[96];
    char reason[160];
    uint64_t received;
    int64_t at_ms;  /* wall clock */
};
size_t repl_master_dropped(struct repl_drop_info *out, size_t max);

/* ------------------------------------------------------------ slave */

int repl_slave_start(const char *master_addr, char *err, size_t errlen) __attribute__((warn_unused_result));
/* Become a (masterless) follower whose store ends at (lsn, epoch), the
 * entry there having checksum sum (journal_checksum; 0 = unknown). */
void repl_slave_init(uint64_t lsn, uint64_t epoch, uint64_t sum);
/* Where this follower's journal ends: entries handed to the store. */
uint64_t repl_slave_position(uint64_t *epoch);
/* The checksum of the entry at that position. */
uint64_t repl_slave_tip_sum(void);
bool repl_slave_running(void);
void repl_slave_stop(void);
/* Point the slave at another master (or NULL: disconnect and wait). */
void repl_slave_set_master(const char *master_addr);
void repl_slave_store_done(uint64_t lsn);
bool repl_slave_connected(void);
uint64_t repl_slave_received(void);
/* Times the link stopped reading until the store caught up (its writer
 * held store.repl_window bytes). */
uint64_t repl_slave_store_waits(void);
const char *repl_slave_master(void);
const char *repl_slave_master_id(void);
/* The master's console address as it said in WELCOME ("" when unknown). */
const char *repl_slave_master_http(void);
/* The master's last lsn as last heard (WELCOME, PINGs, entries received);
 * 0 when no master has been heard from. */
uint64_t repl_slave_master_head(void);
/* The highest epoch this follower has seen (its master's, once welcomed;
 * what fences older masters). */
uint64_t repl_slave_max_epoch(void);
/* What a master this node connected to made of it. */
enum repl_verdict {
    REPL_PROVED,         /* it proved store.security_token back: the two nodes' tokens are the same */
    REPL_REFUSED_TOKEN,  /* it refused this node's proof of the token */
    REPL_REFUSED_TLS,    /* the TLS handshake failed on a certificate (its, or this node's) */
};
/* Called with each verdict: with the master's node id, or NULL for
 * REPL_REFUSED_TLS (no id is said before the handshake: the master is
 * the one at the address this node follows, repl_slave_master()). */
void repl_slave_on_verdict(void (*cb)(const char *master_id, enum repl_verdict v));

#endif
