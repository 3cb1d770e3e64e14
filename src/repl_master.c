/* Replication, master side: the listener (bound only while master, over
 * TLS with store.tls), one session per slave (the token proven both ways
 * before anything else: HELLO, CHALLENGE, PROOF, WELCOME; then a stream
 * from the slave's position or a snapshot first), a bounded send window
 * per slave so a slow one never holds the others, PING/PONG liveness, and
 * the quorum tracker fed by every ACK and by the master's own store. */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stompd/commit.h"
#include "stompd/config.h"
#include "stompd/journal.h"
#include "stompd/log.h"
#include "stompd/offload.h"
#include "stompd/persist.h"
#include "stompd/quorum.h"
#include "stompd/repl.h"
#include "stompd/repl_auth.h"
#include "stompd/segment.h"
#include "stompd/server.h"
#include "stompd/store.h"
#include "stompd/tls.h"

#define OUT_HIGH_WATER (1u << 20)
#define ENTRIES_FRAME_BYTES (256u << 10)
#define READ_JOB_BYTES (512u << 10) /* snapshot frames one read job builds */
#define RING_MAX_BYTES (64u << 20)
#define MAX_MARKS 4096
/* A slave paused this long (window full, socket not draining) is worth a
 * warning; shorter pauses are the window doing its job under load. */
#define PAUSE_WARN_AFTER 1.0

/* A session: waiting for HELLO, then for the slave's PROOF (neither
 * authenticated: nothing is sent to it but CHALLENGE or REFUSE, and it
 * counts for nothing), sending a snapshot, then streaming. */
enum sess_state { S_HELLO, S_PROOF, S_SNAPSHOT, S_STREAM };

struct session;

/* A read from the store for a session, done off the loop (see "reading off
 * the loop" below). */
struct read_job {
    struct offload_job base;
    struct session *s;          /* NULL once the session is gone (the loop's field) */
    _Atomic bool cancelled;     /* and so it is not worth reading (the reader skips it) */
    bool snapshot;
    struct store_snapshot *snap;
    uint64_t from, epoch;       /* entries from lsn from, this term's epoch */
    uint64_t upto;              /* and none past it (M.last_lsn when submitted) */
    size_t max_bytes;
    /* the reader's result */
    struct buf out;
    uint32_t n;                 /* entries read */
    uint64_t last;              /* lsn of the last */
    bool end;                   /* no more snapshot pairs */
    bool failed;                /* a snapshot message could not be read for now */
};

struct session {
    struct repl_peer *peer;
    uint64_t id;
    char node_id[40];           /* once authenticated */
    char claimed[40];           /* the id its HELLO gave (checked: printable) */
    bool refused;               /* REFUSE sent (and logged): its close needs no line of its own */
    uint8_t nonce_s[REPL_NONCE_LEN], nonce_m[REPL_NONCE_LEN];
    enum sess_state state;
    uint64_t next_lsn;
    uint64_t received, durable;
    bool in_quorum;
    struct store_snapshot *snap;
    uint64_t snap_lsn, snap_epoch, snap_sum;
    struct read_job *job;       /* reading from the store for it, off the loop */
    /* send window: cumulative bytes of ENTRIES frames and the last lsn in
     * each, so an ACK tells how many bytes the slave has taken */
    struct {
        uint64_t lsn, cum;
    } marks[MAX_MARKS];
    uint32_t mhead, mlen;
    uint64_t sent_bytes, acked_bytes;
    /* paused: entries wait to be sent but the window or the socket is full */
    const char *paused;
    ev_tstamp paused_since;
    bool pause_logged;
    ev_timer ping;
    ev_timer more;              /* pump again after the loop's next poll (PUMP_BUDGET) */
    bool pumping, pump_again;   /* in pump; a flush's drained callback asked for more */
    ev_tstamp started;
    /* from an entry's append to the slave's ACK that it has it, and that
     * it has it on disk */
    struct hist ack_us, durable_us;
    struct session *next;
};

struct ring_entry {
    uint64_t lsn;
    char *data;
    size_t len;
    bool sync;      /* someone waits for it on disk: slaves fsync it too */
    ev_tstamp at;   /* appended */
};

static struct {
    bool running;
    struct listener listener;
    ev_timer sweep;
    uint64_t epoch;
    uint64_t next_id;
    struct session *sessions;
    struct quorum q;
    unsigned modes;
    bool master_sync;
    struct ring_entry *ring;
    size_t ring_cap, ring_head, ring_len, ring_bytes;
    uint64_t last_lsn;
    bool frozen;                /* the local log failed: no entry appended since is shipped */
    uint64_t handed;            /* the last entry handed to any slave's connection this term */
    uint64_t local_done;
    char waiting[512];
    enum wait_state { W_NONE, W_FEW_CONNECTED, W_BEHIND } wait_state, warned;
    struct repl_drop_info drops[REPL_DROPS_KEPT];
    uint64_t ndrops;
    uint64_t auth_failures;     /* peers whose PROOF was wrong */
    uint64_t evicted;           /* unauthenticated peers closed for a newer one */
    ev_tstamp evict_logged;
    struct log_limit strangers; /* lines about peers that have not proven the token */
} M;

/* Whether a line about a peer that has not proven the token may be
 * written: anyone who reaches the port can set such lines off, as fast as
 * it connects (over 1000 a second, helper-89): log.flood_lines. */
static bool stranger_may_log(void)
{
    return log_limited(&M.strangers, (unsigned)config.log_flood_lines, LOG_FLOOD_EVERY, "replication",
                       "connections that did not prove the token");
}

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

static void pump(struct session *s);

static const char *const sess_names[] = {"hello", "proof", "snapshot", "stream"};

/* Has the slave proven it knows the token? */
static bool session_authed(const struct session *s)
{
    return s->state >= S_SNAPSHOT;
}

/* Whether a line about s may be written: always once it proved the token. */
static bool may_log_about(const struct session *s)
{
    return session_authed(s) || stranger_may_log();
}

/* Every session state change goes through here: forward only. */
static void session_set_state(struct session *s, enum sess_state to)
{
    static const unsigned ok[] = {
        [S_HELLO] = 1u << S_PROOF,
        [S_PROOF] = 1u << S_SNAPSHOT | 1u << S_STREAM,
        [S_SNAPSHOT] = 1u << S_STREAM,
        [S_STREAM] = 0,
    };
    if (!(ok[s->state] & (1u << to))) {
        log_err("replication: session %s: illegal state change %s -> %s", repl_peer_name(s->peer),
                sess_names[s->state], sess_names[to]);
        assert(!"illegal replication session state change");
        return;
    }
    log_debug("replication: session %s: %s -> %s", repl_peer_name(s->peer), sess_names[s->state], sess_names[to]);
    s->state = to;
}

/* Why nothing more goes to this slave now although it is not up to date,
 * or NULL. */
static const char *session_blocked(const struct session *s)
{
    const struct repl_peer *p = s->peer;
    if (repl_peer_dead(p) || !session_authed(s))
        return NULL;
    if (s->state == S_STREAM) {
        if (s->next_lsn > M.last_lsn && repl_peer_pending(p) == 0)
            return NULL;
        if (s->sent_bytes - s->acked_bytes >= (uint64_t)config.repl_window || s->mlen >= MAX_MARKS)
            return "send window full (store.repl_window): the slave has not acknowledged";
    }
    if (repl_peer_pending(p) > 0)
        return "its socket is full: the slave is not reading";
    return NULL;
}

static const char *session_name(const struct session *s)
{
    return s->node_id[0] ? s->node_id : repl_peer_name(s->peer);
}

/* Track pauses; a long one is logged once, and its end. */
static void session_note_blocked(struct session *s, ev_tstamp now)
{
    const char *why = session_blocked(s);
    if (why) {
        if (!s->paused) {
            s->paused_since = now;
            s->pause_logged = false;
        }
        s->paused = why;
        if (!s->pause_logged && now - s->paused_since >= PAUSE_WARN_AFTER) {
            log_warn("replication: slave %s (%s) paused for %.1f s at lsn %" PRIu64 " of %" PRIu64 ": %s; "
                     "%" PRIu64 " bytes unacknowledged, %zu queued (window %lld); the other slaves go on",
                     session_name(s), repl_peer_name(s->peer), now - s->paused_since, s->received, M.last_lsn, why,
                     s->sent_bytes - s->acked_bytes, repl_peer_pending(s->peer), (long long)config.repl_window);
            s->pause_logged = true;
        }
    } else if (s->paused) {
        if (s->pause_logged)
            log_info("replication: slave %s (%s) resumed after %.1f s paused", session_name(s), repl_peer_name(s->peer),
                     now - s->paused_since);
        s->paused = NULL;
        s->paused_since = 0;
        s->pause_logged = false;
    }
}

/* ------------------------------------------------------------ the ring of recent entries */

static struct ring_entry *ring_at(size_t i)
{
    return &M.ring[(M.ring_head + i) % M.ring_cap];
}

static void ring_evict(void)
{
    /* Entries leave the ring only once the store has them: older ones are
     * read back from the journal. */
    while (M.ring_len > 0) {
        struct ring_entry *e = ring_at(0);
        if (e->lsn > M.local_done || (M.ring_bytes <= RING_MAX_BYTES && M.ring_len < M.ring_cap))
            break;
        M.ring_bytes -= e->len;
        free(e->data);
        M.ring_head = (M.ring_head + 1) % M.ring_cap;
        M.ring_len--;
    }
}

static void ring_push(uint64_t lsn, const char *data, size_t len, bool sync)
{
    if (M.ring_len == M.ring_cap) {
        ring_evict();
        if (M.ring_len == M.ring_cap) {
            size_t ncap = M.ring_cap ? M.ring_cap * 2 : 4096;
            struct ring_entry *n = malloc(ncap * sizeof *n);
            if (!n)
                abort();
            for (size_t i = 0; i < M.ring_len; i++)
                n[i] = *ring_at(i);
            free(M.ring);
            M.ring = n;
            M.ring_cap = ncap;
            M.ring_head = 0;
        }
    }
    struct ring_entry *e = &M.ring[(M.ring_head + M.ring_len) % M.ring_cap];
    e->lsn = lsn;
    e->data = malloc(len);
    if (!e->data)
        abort();
    memcpy(e->data, data, len);
    e->len = len;
    e->sync = sync;
    e->at = ev_time();
    M.ring_len++;
    M.ring_bytes += len;
    ring_evict();
}

/* When entry lsn was appended (0: no longer in memory). */
static ev_tstamp ring_time(uint64_t lsn)
{
    if (M.ring_len == 0)
        return 0;
    uint64_t head = ring_at(0)->lsn;
    if (lsn < head || lsn - head >= M.ring_len)
        return 0;
    return ring_at((size_t)(lsn - head))->at;
}

static const struct ring_entry *ring_find(uint64_t lsn)
{
    /* what the journal has pruned is gone, even if still in memory: a
     * slave that far behind resynchronises from a snapshot */
    uint64_t first = store_first_lsn();
    if (M.ring_len == 0 || (first && lsn < first && lsn <= M.local_done))
        return NULL;
    uint64_t head = ring_at(0)->lsn;
    if (lsn < head || lsn - head >= M.ring_len)
        return NULL;
    return ring_at((size_t)(lsn - head));
}

static void ring_free(void)
{
    while (M.ring_len) {
        free(ring_at(0)->data);
        M.ring_head = (M.ring_head + 1) % M.ring_cap;
        M.ring_len--;
    }
    free(M.ring);
    M.ring = NULL;
    M.ring_cap = M.ring_head = M.ring_bytes = 0;
}

/* ------------------------------------------------------------ quorum */

static void update_floor(void)
{
    uint64_t floor = 0;
    for (struct session *s = M.sessions; s; s = s->next) {
        uint64_t need = s->state == S_SNAPSHOT ? s->snap_lsn + 1 : s->received + 1;
        if (session_authed(s) && (floor == 0 || need < floor))
            floor = need;
    }
    store_set_prune_floor(floor);
}

/* Are durable sends held by the slaves, and why? Logged once per change
 * of state: too few slaves connected is said at once; enough connected but
 * not acknowledging (stalled, paused, installing a snapshot) once a send
 * has waited PAUSE_WARN_AFTER, since every send waits a round trip. */
static void update_waiting(ev_tstamp now)
{
    uint64_t c = M.q.committed;
    /* Only the entries the master's own store has done wait for slaves:
     * the others wait for the local store. */
    if (commit_waiting() == 0 || c >= M.last_lsn || M.local_done <= c) {
        if (M.warned != W_NONE)
            log_info("replication: durable sends proceed: %u of %u slaves connected, %u in sync", M.q.nslaves,
                     M.q.replicas - 1, quorum_in_sync(&M.q, c));
        M.wait_state = M.warned = W_NONE;
        M.waiting[0] = '\0';
        return;
    }
    uint32_t in_sync = quorum_in_sync(&M.q, M.last_lsn);
    M.wait_state = M.q.nslaves + 1 < M.q.need ? W_FEW_CONNECTED : W_BEHIND;
    int n = snprintf(M.waiting, sizeof M.waiting,
                     "durable sends wait: not enough slaves in sync for the store's sync mode: %u of %u slaves "
                     "connected, %u in sync; a quorum of %u needs %u",
                     M.q.nslaves, M.q.replicas - 1, in_sync, M.q.replicas, M.q.need - 1);
    if (M.wait_state == W_BEHIND) {
        const char *sep = "; behind: ";
        for (struct session *s = M.sessions; s && n > 0 && (size_t)n < sizeof M.waiting; s = s->next) {
            uint64_t at = quorum_slave_counted(M.modes, s->received, s->durable);
            if (!session_authed(s) || (s->state == S_STREAM && at > c))
                continue;
            /* just connected with quorum_disk: its log matches up to
             * received, what of it is on disk no ACK has said yet (it
             * read "at lsn 0", as if its store were empty; helper-86) */
            bool unsaid = at == 0 && s->received > 0;
            n += snprintf(M.waiting + n, sizeof M.waiting - (size_t)n, "%s%s at lsn %" PRIu64 "%s%s", sep,
                          session_name(s), unsaid ? s->received : at, unsaid ? ", its durable position not said yet" : "",
                          s->state == S_SNAPSHOT ? " (installing a snapshot)"
                          : s->paused            ? " (paused: not reading or not acknowledging)"
                                                 : " (not acknowledging)");
            sep = ", ";
        }
    }
    if (M.warned != M.wait_state &&
        (M.wait_state == W_FEW_CONNECTED || now - commit_oldest() >= PAUSE_WARN_AFTER)) {
        log_warn("replication: %s", M.waiting);
        M.warned = M.wait_state;
    }
}

static void recompute(void)
{
    commit_advance(quorum_committed(&M.q));
    update_waiting(ev_now(srv.loop));
}

void repl_master_quorum(struct repl_quorum_info *out)
{
    out->replicas = M.q.replicas;
    out->needed = M.q.need - 1;
    out->connected = M.q.nslaves;
    out->in_sync = quorum_in_sync(&M.q, M.last_lsn);
    out->state = M.wait_state == W_FEW_CONNECTED ? "too few slaves connected"
                 : M.wait_state == W_BEHIND      ? "slaves connected but behind"
                                                 : "ok";
}

static void note_drop(const struct session *s, const char *why)
{
    struct repl_drop_info *d = &M.drops[M.ndrops++ % REPL_DROPS_KEPT];
    snprintf(d->node_id, sizeof d->node_id, "%s", s->node_id);
    snprintf(d->peer, sizeof d->peer, "%s", repl_peer_name(s->peer));
    snprintf(d->reason, sizeof d->reason, "%s", why);
    d->received = s->received;
    d->at_ms = server_now_ms();
}

size_t repl_master_dropped(struct repl_drop_info *out, size_t max)
{
    size_t n = 0;
    for (uint64_t i = M.ndrops; i > 0 && n < max && M.ndrops - i < REPL_DROPS_KEPT; i--)
        out[n++] = M.drops[(i - 1) % REPL_DROPS_KEPT];
    return n;
}

void repl_master_local_done(uint64_t lsn)
{
    if (lsn > M.local_done)
        M.local_done = lsn;
    quorum_local(&M.q, lsn, M.master_sync ? lsn : 0);
    ring_evict();
    recompute();
}

const char *repl_master_waiting(void)
{
    return M.waiting[0] ? M.waiting : NULL;
}

/* ------------------------------------------------------------ sessions */

static void session_drop(struct session *s, const char *why)
{
    struct session **pp = &M.sessions;
    while (*pp && *pp != s)
        pp = &(*pp)->next;
    if (*pp)
        *pp = s->next;
    if (s->in_quorum)
        quorum_remove_slave(&M.q, s->id);
    ev_timer_stop(srv.loop, &s->ping);
    ev_timer_stop(srv.loop, &s->more);
    if (s->job) {
        /* the reader has it: the job closes the snapshot when it is back */
        s->job->s = NULL;
        s->job->cancelled = true;
        s->snap = NULL;
    }
    store_snapshot_close(s->snap);
    repl_peer_free(s->peer);
    if (s->node_id[0] && session_authed(s))
        note_drop(s, why);
    if (!s->refused && may_log_about(s)) {
        if (s->node_id[0])
            log_warn("replication: slave %s (%s) dropped: %s", s->node_id, repl_peer_name(s->peer), why);
        else
            log_info("replication: connection %s closed: %s", repl_peer_name(s->peer), why);
    }
    free(s);
    update_floor();
    recompute();
}

static void peer_closed(struct repl_peer *p, const char *why)
{
    session_drop(p->owner, why);
}

/* The console address slaves show their users: http.listen with the
 * advertised store.hostname in place of its host, as ZooKeeper members
 * publish it. */
static void console_addr(char *out, size_t len)
{
    char host[256];
    int port = 0;
    out[0] = '\0';
    if (config.http_listen[0] && config_split_hostport(config.http_listen, host, sizeof host, &port) == 0)
        snprintf(out, len, "%s:%d", config.store_hostname[0] ? config.store_hostname : host, port);
}

static void refuse_as(struct session *s, uint8_t kind, const char *why)
{
    s->refused = true;
    if (may_log_about(s)) {
        if (s->claimed[0])
            log_warn("replication: refusing %s (node %s): %s", repl_peer_name(s->peer), s->claimed, why);
        else
            log_warn("replication: refusing %s: %s", repl_peer_name(s->peer), why);
    }
    size_t f = repl_frame_begin(repl_peer_out(s->peer), R_REFUSE);
    repl_put_str(repl_peer_out(s->peer), why, strlen(why));
    repl_put_u8(repl_peer_out(s->peer), kind);
    repl_frame_end(repl_peer_out(s->peer), f);
    repl_peer_flush(s->peer);
}

static void refuse(struct session *s, const char *why)
{
    refuse_as(s, REPL_REFUSE_OTHER, why);
}

/* What the proofs of this session are computed over. */
static struct repl_auth_input auth_input(const struct session *s)
{
    const char *me = store_info()->node_id;
    return (struct repl_auth_input){config.security_token, strlen(config.security_token), s->nonce_s, s->nonce_m,
                                    s->claimed, strlen(s->claimed), me, strlen(me)};
}

/* The epoch and checksum of our entry at lsn, from the ring or the journal. */
static int our_entry_at(uint64_t lsn, uint64_t *epoch, uint64_t *sum)
{
    const struct ring_entry *e = ring_find(lsn);
    if (e) {
        struct journal_entry je;
        if (journal_decode(e->data, e->len, &je) != 0)
            return -EINVAL;
        *epoch = je.epoch;
        *sum = journal_checksum(e->data, e->len);
        return 0;
    }
    return store_entry_tip(lsn, epoch, sum);
}

static int on_hello(struct session *s, struct repl_reader *r)
{
    uint32_t version = repl_get_u32(r);
    if (!r->bad && version != REPL_VERSION) {
        /* the rest of an other version's HELLO cannot be read: say which
         * versions met, so the operator knows which node to upgrade */
        char why[160];
        snprintf(why, sizeof why, "replication protocol version %u; this master speaks version %u (run the same "
                                  "stompd release on every node)", version, REPL_VERSION);
        refuse(s, why);
        return -1;
    }
    uint32_t nl, cl;
    const char *node = repl_get_str(r, &nl);
    const char *nonce = repl_get_str(r, &cl);
    if (r->bad || cl != REPL_NONCE_LEN || r->left) {
        refuse(s, "malformed HELLO");
        return -1;
    }
    if (!repl_node_id_ok(node, nl)) {
        refuse(s, "malformed HELLO: a node id is 1 to 39 of A-Z a-z 0-9 . _ : -");
        return -1;
    }
    memcpy(s->claimed, node, nl);
    s->claimed[nl] = '\0';
    memcpy(s->nonce_s, nonce, REPL_NONCE_LEN);
    if (repl_auth_nonce(s->nonce_m) != 0) {
        log_err("replication: no random bytes for a handshake nonce");
        refuse(s, "the master cannot make a nonce");
        return -1;
    }
    const char *me = store_info()->node_id;
    size_t f = repl_frame_begin(repl_peer_out(s->peer), R_CHALLENGE);
    repl_put_str(repl_peer_out(s->peer), me, strlen(me));
    repl_put_str(repl_peer_out(s->peer), (const char *)s->nonce_m, REPL_NONCE_LEN);
    repl_frame_end(repl_peer_out(s->peer), f);
    session_set_state(s, S_PROOF);
    repl_peer_flush(s->peer);
    return 0;
}

/* The slave's PROOF: it knows the token (this connection's nonces, so no
 * recorded handshake does), and where its journal stands. Only now is it
 * a slave: it may replace an older session of its node, it is told
 * (WELCOME, with this master's own proof) and sent state, and its ACKs
 * count. */
static int on_proof(struct session *s, struct repl_reader *r)
{
    uint32_t pl;
    const char *proof = repl_get_str(r, &pl);
    uint64_t last_epoch = repl_get_u64(r);
    uint64_t last_lsn = repl_get_u64(r);
    uint64_t max_epoch = repl_get_u64(r);
    uint64_t last_sum = repl_get_u64(r);
    if (r->bad || r->left) {
        refuse(s, "malformed PROOF");
        return -1;
    }
    struct repl_auth_input in = auth_input(s);
    if (!repl_auth_check(REPL_AUTH_SLAVE, &in, proof, pl)) {
        M.auth_failures++;
        refuse_as(s, REPL_REFUSE_TOKEN, "authentication failed: its store.security_token is not this master's");
        return -1;
    }
    repl_peer_trust(s->peer);
    snprintf(s->node_id, sizeof s->node_id, "%s", s->claimed);
    if (max_epoch > M.epoch) {
        char why[160];
        snprintf(why, sizeof why, "this master's epoch %" PRIu64 " is older than epoch %" PRIu64 " the slave has seen",
                 M.epoch, max_epoch);
        refuse(s, why);
        return -1;
    }
    /* one session per node: a reconnecting slave replaces its old session */
    for (struct session *o = M.sessions; o; o = o->next) {
        if (o != s && !strcmp(o->node_id, s->node_id)) {
            session_drop(o, "replaced by a new connection from the same node");
            break;
        }
    }

    /* The slave may stream on only if its last entry is ours: same epoch
     * and same checksum at its lsn. Epochs alone are not enough: two
     * masters can hold the same epoch (manual mode used to hand out
     * max seen + 1 on each node, and two promotions in one millisecond
     * still can: see persist.c) and write different entries under it; the
     * checksum tells them apart at the tip. With one writer per epoch an
     * equal (epoch, lsn) also means an equal history before it, as in
     * Raft's log matching. */
    const char *reason = NULL;
    uint64_t ours, our_sum;
    if (last_lsn > M.last_lsn)
        reason = "its journal is ahead of this master's (a former master's unreplicated tail)";
    else if (last_lsn == 0)
        /* entry 1 may survive in a segment kept for its pending
         * messages (scheduled ones, say) while later entries are gone */
        reason = (M.last_lsn == 0 || (our_entry_at(1, &ours, &our_sum) == 0 && store_first_lsn() <= 1))
                     ? NULL
                     : "it is empty and the journal is pruned";
    else if (our_entry_at(last_lsn, &ours, &our_sum) != 0 ||
             (store_first_lsn() && last_lsn + 1 < store_first_lsn()))
        /* (entries after it are gone, even if an older segment kept for
         * its pending messages still holds the one at its position) */
        reason = "its position is no longer in the journal";
    else if (ours != last_epoch || (last_sum && our_sum != last_sum))
        reason = "its last entry differs from this master's (a divergent tail)";
    else if (!last_sum)
        reason = "its last entry's checksum is unknown (a store from before entry checksums)";

    uint8_t mine[REPL_PROOF_LEN];
    repl_auth_proof(REPL_AUTH_MASTER, &in, mine);
    size_t f = repl_frame_begin(repl_peer_out(s->peer), R_WELCOME);
    repl_put_str(repl_peer_out(s->peer), (const char *)mine, sizeof mine);
    repl_put_u64(repl_peer_out(s->peer), M.epoch);
    const struct store_info *si = store_info();
    repl_put_str(repl_peer_out(s->peer), si->node_id, strlen(si->node_id));
    repl_put_u8(repl_peer_out(s->peer), quorum_slaves_sync(M.modes)     ? REPL_SLAVE_SYNC
                                        : quorum_slaves_report(M.modes) ? REPL_SLAVE_WRITE
                                                                        : 0);
    repl_put_u8(repl_peer_out(s->peer), reason ? 1 : 0);
    repl_put_u64(repl_peer_out(s->peer), reason ? 0 : last_lsn + 1);
    char console[300];
    console_addr(console, sizeof console);
    repl_put_str(repl_peer_out(s->peer), console, strlen(console));
    repl_put_u64(repl_peer_out(s->peer), M.last_lsn);
    repl_frame_end(repl_peer_out(s->peer), f);

    if (quorum_add_slave(&M.q, s->id) == 0)
        s->in_quorum = true;
    if (reason) {
        s->snap = store_snapshot_open(&s->snap_lsn, &s->snap_epoch, &s->snap_sum);
        session_set_state(s, S_SNAPSHOT);
        size_t b = repl_frame_begin(repl_peer_out(s->peer), R_SNAPSHOT_BEGIN);
        repl_put_u64(repl_peer_out(s->peer), M.epoch);
        repl_put_u64(repl_peer_out(s->peer), s->snap_lsn);
        repl_frame_end(repl_peer_out(s->peer), b);
        log_info("replication: slave %s (%s) at lsn %" PRIu64 ": sending a snapshot at lsn %" PRIu64 " because %s",
                 s->node_id, repl_peer_name(s->peer), last_lsn, s->snap_lsn, reason);
    } else {
        session_set_state(s, S_STREAM);
        s->next_lsn = last_lsn + 1;
        /* its journal matches ours up to last_lsn; how much of it is on
         * disk its ACKs will say */
        s->received = last_lsn;
        s->durable = 0;
        quorum_slave_ack(&M.q, s->id, last_lsn, 0);
        log_info("replication: slave %s (%s) connected: streaming from lsn %" PRIu64, s->node_id, repl_peer_name(s->peer),
                 s->next_lsn);
    }
    update_floor();
    pump(s);
    recompute();
    return 0;
}

static int on_ack(struct session *s, struct repl_reader *r)
{
    uint64_t received = repl_get_u64(r), durable = repl_get_u64(r);
    if (r->bad) {
        log_warn("replication: slave %s (%s) sent a malformed ACK", session_name(s), repl_peer_name(s->peer));
        return -1;
    }
    /* A slave only holds what we sent it: an ACK of anything else (its old
     * position, a divergent tail it is about to lose) must never count
     * toward a quorum. While it installs a snapshot it holds nothing yet. */
    if (s->state != S_STREAM)
        return 0;
    uint64_t sent = s->next_lsn - 1;
    if (received > sent)
        received = sent;
    if (durable > received)
        durable = received;
    ev_tstamp now = ev_time();
    if (received > s->received) {
        /* timed from the last entry it covers that something waits for:
         * an ACK held back for entries nothing waits for (UNWAITED) says
         * nothing of the link */
        uint64_t waited = commit_wanted() < received ? commit_wanted() : received;
        ev_tstamp at = waited > s->received ? ring_time(waited) : 0;
        if (at > 0)
            hist_add(&s->ack_us, (uint64_t)((now - at) * 1e6));
        s->received = received;
    }
    if (durable > s->durable) {
        ev_tstamp at = ring_time(durable);
        if (at > 0)
            hist_add(&s->durable_us, (uint64_t)((now - at) * 1e6));
        s->durable = durable;
    }
    while (s->mlen && s->marks[s->mhead].lsn <= s->received) {
        s->acked_bytes = s->marks[s->mhead].cum;
        s->mhead = (s->mhead + 1) % MAX_MARKS;
        s->mlen--;
    }
    quorum_slave_ack(&M.q, s->id, s->received, s->durable);
    update_floor();
    recompute();
    pump(s);
    return 0;
}

static int peer_frame(struct repl_peer *p, uint8_t type, struct repl_reader *r)
{
    struct session *s = p->owner;
    if (s->state == S_HELLO && type != R_HELLO) {
        if (stranger_may_log())
            log_warn("replication: %s sent %s before HELLO", repl_peer_name(p), repl_type_name(type));
        return -1;
    }
    if (s->state == S_PROOF && type != R_PROOF) {
        if (stranger_may_log())
            log_warn("replication: %s sent %s instead of its PROOF", repl_peer_name(p), repl_type_name(type));
        return -1;
    }
    switch (type) {
    case R_HELLO:
        if (s->state != S_HELLO)
            return -1;
        return on_hello(s, r);
    case R_PROOF:
        if (s->state != S_PROOF)
            return -1;
        return on_proof(s, r);
    case R_ACK:
        return on_ack(s, r);
    case R_PING:
        repl_peer_pong(p, repl_get_u64(r));
        return 0;
    case R_PONG:
        return 0;
    default:
        log_warn("replication: %s sent an unexpected %s frame (type %u)", repl_peer_name(p), repl_type_name(type), type);
        return -1;
    }
}

static void peer_writable(struct repl_peer *p)
{
    pump(p->owner);
}

static const struct repl_peer_ops session_ops = {peer_frame, peer_writable, peer_closed};

/* ------------------------------------------------------------ reading off the loop */

/* What a slave catching up needs from the store (snapshot pairs, journal
 * entries older than the ring) is read by offload.c's thread: a cold log
 * costs that thread the disk's time, not the loop (before, a snapshot of a
 * cold store held a client's receipt up to 40 ms at a time). The job
 * builds whole frames in a buffer of its own; back on the loop they are
 * appended to the slave's output. One job at a time per session, so its
 * frames keep their order. */

/* An ENTRIES frame being built: entries_open, put_entry for each,
 * entries_close. */
struct entries_ctx {
    struct buf *out;
    size_t frame, count_at;     /* marks of the frame and of its count */
    uint32_t n;
    uint64_t last;
    uint64_t upto;              /* entries past it are left out (add_entry) */
};

static struct entries_ctx entries_open(struct buf *o, uint64_t epoch)
{
    struct entries_ctx x = {o, repl_frame_begin(o, R_ENTRIES), 0, 0, 0, UINT64_MAX};
    repl_put_u64(o, epoch);
    x.count_at = buf_mark(o);
    repl_put_u32(o, 0);
    return x;
}

/* The frame's bytes; an empty one is dropped (0). */
static size_t entries_close(struct entries_ctx *x)
{
    if (x->n == 0) {
        buf_cut(x->out, x->frame);
        return 0;
    }
    repl_put_u32_at(x->out, x->count_at, x->n);
    repl_frame_end(x->out, x->frame);
    return buf_mark(x->out) - x->frame;
}

/* A frame of entries up to last went out: the window counts its bytes. */
static void entries_sent(struct session *s, size_t bytes, uint64_t last)
{
    s->sent_bytes += bytes;
    s->marks[(s->mhead + s->mlen) % MAX_MARKS].lsn = last;
    s->marks[(s->mhead + s->mlen) % MAX_MARKS].cum = s->sent_bytes;
    s->mlen++;
    s->next_lsn = last + 1;
    if (last > M.handed)
        M.handed = last;
}

static void put_entry(struct entries_ctx *x, uint64_t lsn, const char *data, size_t len, uint8_t flags)
{
    repl_put_u8(x->out, flags);
    repl_put_str(x->out, data, len);
    x->n++;
    x->last = lsn;
}

/* From the journal on disk: whether it was waited for is not kept, so a
 * slave catching up syncs it (where slaves sync), and acknowledges it
 * without holding the ACK back (its ACKs move the window). */
static void add_entry(void *arg, uint64_t lsn, const char *data, size_t len)
{
    struct entries_ctx *x = arg;
    if (lsn <= x->upto)
        put_entry(x, lsn, data, len, REPL_ENTRY_SYNC);
}

/* An entry from the ring, going in a frame that holds framed bytes so
 * far: UNWAITED when nothing waits for it (no op, no held output:
 * commit_wanted) and the slave's window, this frame counted, is under a
 * quarter full, so an ACK held back cannot stall the stream. */
static uint8_t ring_flags(const struct session *s, const struct ring_entry *re, size_t framed)
{
    uint8_t f = re->sync ? REPL_ENTRY_SYNC : 0;
    if (config.ack_delay > 0 && re->lsn > commit_wanted() && !srv.handing_over &&
        s->sent_bytes - s->acked_bytes + framed + re->len < (uint64_t)config.repl_window / 4 &&
        s->mlen < MAX_MARKS / 4)
        f |= REPL_ENTRY_UNWAITED;
    return f;
}

/* On the reader's thread: snapshot chunks up to READ_JOB_BYTES, or one
 * ENTRIES frame from the log. */
static void read_job_run(struct offload_job *base)
{
    struct read_job *j = (struct read_job *)base;
    struct buf *o = &j->out;
    if (j->cancelled)
        return; /* its slave is gone: a master stepping down waits for no read */
    if (j->snapshot) {
        while (buf_used(o) < READ_JOB_BYTES) {
            size_t f = repl_frame_begin(o, R_SNAPSHOT_CHUNK);
            size_t count_at = buf_mark(o);
            repl_put_u32(o, 0);
            uint32_t n = store_snapshot_next(j->snap, o, j->max_bytes, &j->failed);
            if (j->failed) {
                buf_cut(o, f);
                break;
            }
            if (n == 0) {
                buf_cut(o, f); /* drop the empty chunk */
                j->end = true;
                break;
            }
            repl_put_u32_at(o, count_at, n);
            repl_frame_end(o, f);
        }
        return;
    }
    struct entries_ctx x = entries_open(o, j->epoch);
    x.upto = j->upto;
    store_read_entries(j->from, j->max_bytes, add_entry, &x);
    entries_close(&x);
    j->n = x.n;
    j->last = x.last;
}

/* Back on the loop: the frames go to the slave, in order. */
static void read_job_done(struct offload_job *base)
{
    struct read_job *j = (struct read_job *)base;
    struct session *s = j->s;
    if (!s) {
        if (j->snapshot)
            store_snapshot_close(j->snap);
    } else {
        s->job = NULL;
        struct buf *o = repl_peer_out(s->peer);
        if (j->snapshot && j->failed) {
            /* not whole: ended, the slave would lack what was left out */
            repl_peer_close(s->peer, "a message of the snapshot cannot be read for now: the slave will reconnect "
                                     "for another");
            s = NULL;
        } else if (j->snapshot) {
            buf_append(o, buf_head(&j->out), buf_used(&j->out));
            if (j->end) {
                size_t e = repl_frame_begin(o, R_SNAPSHOT_END);
                repl_put_u64(o, s->snap_lsn);
                repl_put_u64(o, s->snap_epoch);
                repl_put_u64(o, s->snap_sum);
                repl_frame_end(o, e);
                store_snapshot_close(s->snap);
                s->snap = NULL;
                session_set_state(s, S_STREAM);
                s->next_lsn = s->snap_lsn + 1;
                log_info("replication: snapshot to slave %s complete at lsn %" PRIu64 "; streaming", s->node_id,
                         s->snap_lsn);
            }
        } else if (j->last > M.last_lsn) {
            /* read before the local log failed (repl_master_freeze): read
             * again, up to the entry no slave may have past */
        } else if (j->n == 0) {
            log_err("replication: entry %" PRIu64 " for slave %s is neither in memory nor in the journal", j->from,
                    s->node_id);
            repl_peer_close(s->peer, "journal entry missing (pruned?): the slave will reconnect for a snapshot");
            s = NULL;
        } else {
            buf_append(o, buf_head(&j->out), buf_used(&j->out));
            entries_sent(s, buf_used(&j->out), j->last);
        }
    }
    buf_free(&j->out);
    free(j);
    if (s)
        pump(s); /* sends it, and asks for more */
}

static void read_submit(struct session *s, bool snapshot, size_t max_bytes)
{
    struct read_job *j = calloc(1, sizeof *j);
    if (!j)
        abort();
    j->base.run = read_job_run;
    j->base.done = read_job_done;
    j->s = s;
    j->snapshot = snapshot;
    j->snap = s->snap;
    j->from = s->next_lsn;
    j->upto = M.last_lsn;
    j->epoch = M.epoch;
    j->max_bytes = max_bytes;
    s->job = j;
    offload_submit(srv.loop, &j->base);
}

/* Fill the output up to the high-water mark from the ring (entries still
 * in memory), or hand the reader what must come from the store; returns
 * whether anything was added. */
static bool fill(struct session *s)
{
    struct repl_peer *p = s->peer;
    struct buf *o = repl_peer_out(p);
    size_t before = o->len - o->off;
    if (s->job)
        return false; /* what it reads goes first */
    if (s->state == S_SNAPSHOT) {
        if (repl_peer_pending(p) < OUT_HIGH_WATER)
            read_submit(s, true, (size_t)config.snapshot_chunk);
        return false;
    }
    if (s->state == S_STREAM) {
        while (s->next_lsn <= M.last_lsn && repl_peer_pending(p) < OUT_HIGH_WATER &&
               s->sent_bytes - s->acked_bytes < (uint64_t)config.repl_window && s->mlen < MAX_MARKS) {
            /* a frame fills what is left of the window (at least one
             * entry): unacknowledged bytes stay within the window plus
             * one entry, however many entries are waiting */
            uint64_t room = (uint64_t)config.repl_window - (s->sent_bytes - s->acked_bytes);
            size_t max_bytes = room < ENTRIES_FRAME_BYTES ? (size_t)room : ENTRIES_FRAME_BYTES;
            const struct ring_entry *re = ring_find(s->next_lsn);
            if (!re) {
                read_submit(s, false, max_bytes);
                break;
            }
            struct entries_ctx x = entries_open(o, M.epoch);
            size_t start = buf_mark(o);
            do
                put_entry(&x, re->lsn, re->data, re->len, ring_flags(s, re, buf_mark(o) - start));
            while (s->next_lsn + x.n <= M.last_lsn && buf_mark(o) - start < max_bytes &&
                   (re = ring_find(s->next_lsn + x.n)));
            entries_sent(s, entries_close(&x), x.last);
        }
    }
    return o->len - o->off != before;
}

/* What one pump queues at most, and how long it runs, before the loop
 * polls again: a slave that reads as fast as the master fills (a snapshot
 * or a catch-up over loopback) would otherwise keep the loop here until
 * it was done, with the other slaves' ACKs and PONGs unread until they
 * count as silent. The time matters as much as the bytes: a snapshot
 * reads message bodies from the log, from the disk when they are cold. */
#define PUMP_BUDGET (4u << 20)
#define PUMP_TIME 0.02

/* Send what the window and the socket allow. When the socket takes it all
 * at once, go on (within the budget, then again after the next poll);
 * otherwise the peer's writable callback brings us back. A flush that
 * drains the socket calls back in here (peer_writable): that nested call
 * only asks this one to go on, so the budget holds for the whole run. */
static void pump(struct session *s)
{
    if (s->pumping) {
        s->pump_again = true;
        return;
    }
    struct repl_peer *p = s->peer;
    s->pumping = true;
    ev_tstamp t0 = ev_time();
    size_t queued = 0;
    while (!repl_peer_dead(p)) {
        s->pump_again = false;
        size_t before = repl_peer_pending(p);
        bool added = fill(s);
        if (repl_peer_dead(p))
            return;
        size_t after = repl_peer_pending(p);
        queued += after > before ? after - before : 0;
        repl_peer_flush(p);
        if (repl_peer_dead(p))
            return; /* and s with it */
        if (!(added || s->pump_again) || (repl_peer_pending(p) > 0 && !s->pump_again))
            break;
        if (queued >= PUMP_BUDGET || ev_time() - t0 >= PUMP_TIME) {
            ev_timer_start(srv.loop, &s->more);
            break;
        }
    }
    s->pumping = false;
    if (repl_peer_dead(p))
        return;
    session_note_blocked(s, ev_now(srv.loop));
    /* every frame whole in the kernel's hands, or acknowledged (on_ack
     * pumps): an auto-ack delivery held for its dequeue may leave
     * (HOLD_SHIPPED; where the modes wait for no slave, the local log's
     * write says so: persist.c) */
    if (s->state == S_STREAM && repl_peer_pending(p) == 0)
        quorum_slave_shipped(&M.q, s->id, s->next_lsn - 1);
    if (quorum_slaves_waited(&M.q) > 0)
        commit_shipped(quorum_shipped(&M.q));
}

static void more_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    pump(container_of(w, struct session, more));
}

void repl_master_append(uint64_t lsn, const char *data, size_t len, bool sync)
{
    if (!M.running || M.frozen)
        return;
    M.last_lsn = lsn;
    /* the master's own copy counts once its writer reports it written
     * (repl_master_local_done), like a slave's: its ring, in this
     * process's memory, would be gone with the process. The write runs
     * alongside the slaves' round trip. */
    ring_push(lsn, data, len, sync);
}

bool repl_master_waits_for_slaves(void)
{
    return M.running && quorum_slaves_waited(&M.q) > 0;
}

/* Before the loop sleeps: everything appended in this round goes to each
 * caught-up slave in one ENTRIES frame and one send. */
void repl_master_flush(void)
{
    if (!M.running)
        return;
    struct session *s, *next;
    for (s = M.sessions; s; s = next) {
        next = s->next; /* pump may drop s when its socket broke */
        if (s->state == S_STREAM && s->next_lsn <= M.last_lsn && repl_peer_pending(s->peer) == 0)
            pump(s);
        else if (s->state == S_STREAM && !repl_peer_dead(s->peer))
            session_note_blocked(s, ev_now(srv.loop));
    }
}

static void ping_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct session *s = container_of(w, struct session, ping);
    double timeout = (double)config.repl_timeout / 1000.0;
    double idle = ev_now(loop) - s->peer->st.last_rx;
    if (!session_authed(s)) {
        /* nothing goes to an unauthenticated peer, pings included */
        if (ev_now(loop) - s->started > timeout)
            repl_peer_close(s->peer, "handshake not finished within store.repl_timeout");
        return;
    }
    if (idle > timeout) {
        char why[96];
        snprintf(why, sizeof why, "silent for %.1f s (store.repl_timeout)", idle);
        repl_peer_close(s->peer, why);
        return;
    }
    /* the head lsn rides along: a slave reports its lag from it */
    size_t f = repl_frame_begin(repl_peer_out(s->peer), R_PING);
    repl_put_u64(repl_peer_out(s->peer), (uint64_t)(ev_now(loop) * 1000));
    repl_put_u64(repl_peer_out(s->peer), M.last_lsn);
    repl_frame_end(repl_peer_out(s->peer), f);
    repl_peer_flush(s->peer);
}

/* At most store.max_unauthenticated peers in their handshake: one more
 * closes the oldest of them (sessions are kept newest first), so strangers
 * hold little memory, and a real slave, whose handshake takes one round
 * trip, is not kept out by connections that never finish theirs. */
static void cap_unauthenticated(void)
{
    struct session *s, *oldest = NULL;
    int64_t n = 0;
    for (s = M.sessions; s; s = s->next)
        if (!session_authed(s) && !repl_peer_dead(s->peer)) {
            n++;
            oldest = s;
        }
    if (n < config.repl_max_unauth || !oldest)
        return;
    M.evicted++;
    ev_tstamp now = ev_now(srv.loop);
    if (now - M.evict_logged >= 10.0) {
        M.evict_logged = now;
        log_warn("replication: more than %lld connections without a proof of the token (store.max_unauthenticated): "
                 "closing the oldest (%s); %" PRIu64 " so far",
                 (long long)config.repl_max_unauth, repl_peer_name(oldest->peer), M.evicted);
    }
    repl_peer_close(oldest->peer, "too many connections in their handshake (store.max_unauthenticated)");
}

static void accept_slave(struct listener *l, int fd, const char *name)
{
    cap_unauthenticated();
    struct session *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->id = ++M.next_id;
    s->state = S_HELLO;
    s->started = ev_now(srv.loop);
    s->peer = repl_peer_new(fd, name, false, &session_ops, s);
    listener_attach(l, &s->peer->st);
    double iv = (double)config.repl_timeout / 3000.0;
    ev_timer_init(&s->ping, ping_cb, iv, iv);
    ev_timer_start(srv.loop, &s->ping);
    ev_timer_init(&s->more, more_cb, 0, 0);
    s->next = M.sessions;
    M.sessions = s;
    log_debug("replication: connection from %s", name);
}

static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct session *s;
    for (s = M.sessions; s; s = s->next)
        if (!repl_peer_dead(s->peer))
            session_note_blocked(s, ev_now(loop));
    update_waiting(ev_now(loop));
    if (config.quorum_timeout == 0 || commit_waiting() == 0)
        return;
    char why[900];
    snprintf(why, sizeof why, "Not replicated within store.quorum_timeout (%lld ms): %s. The message may still be "
                              "delivered once a quorum is back; resend with the same _AMQ_DUPL_ID to be sure.",
             (long long)config.quorum_timeout, M.waiting[0] ? M.waiting : "no quorum");
    commit_expire(ev_now(loop) - (double)config.quorum_timeout / 1000.0, why);
}

int repl_master_start(uint64_t epoch, char *err, size_t errlen)
{
    if (M.running)
        return 0;
    char e2[256];
    if (quorum_parse_modes(persist_sync_modes(), &M.modes, e2, sizeof e2) != 0) {
        snprintf(err, errlen, "store.sync: %s", e2);
        return -EINVAL;
    }
    M.listener.name = "replication";
    M.listener.service = true;
    M.listener.addr_key = "store.bind";
    M.listener.nodelay = true;
    M.listener.accept = accept_slave;
    M.listener.secure = config.store_tls ? tls_accept_peer : NULL;
    if (listener_start(&M.listener, config.store_bind, err, errlen) != 0)
        return -EADDRINUSE;
    M.epoch = epoch;
    M.master_sync = quorum_master_sync(M.modes);
    /* no mode waits on this node's own write (remote_mem, remote_disk):
     * its writer's reports can come late */
    store_set_lazy_reports(!quorum_master_counts_self(M.modes));
    M.local_done = store_durable_lsn();
    M.last_lsn = persist_last_lsn();
    M.frozen = false;
    M.handed = 0;
    M.wait_state = M.warned = W_NONE;
    M.waiting[0] = '\0';
    quorum_init(&M.q, (uint32_t)config.replicas, M.modes, commit_lsn());
    quorum_local(&M.q, M.local_done, M.local_done);
    /* quorum timeouts, and slaves paused too long */
    ev_timer_init(&M.sweep, sweep_cb, 0.25, 0.25);
    ev_timer_start(srv.loop, &M.sweep);
    /* the reader (read_job) lets go of its segments' descriptors when it
     * idles: a segment removed since frees its space */
    offload_set_idle(seglog_drop_readers);
    M.running = true;
    char modes[128];
    quorum_format_modes(M.modes, modes, sizeof modes);
    log_info("replication: master in epoch %" PRIu64 ", listening on %s (sync %s, replicas %lld)", epoch,
             config.store_bind, modes, (long long)config.replicas);
    return 0;
}

uint64_t repl_master_auth_failures(void)
{
    return M.auth_failures;
}

uint64_t repl_master_handshakes_evicted(void)
{
    return M.evicted;
}

bool repl_master_running(void)
{
    return M.running;
}

void repl_master_freeze(uint64_t keep)
{
    if (!M.running)
        return;
    /* past keep, no slave gets what none was handed (pump and the
     * reader stop at last_lsn; a snapshot carries only what the local
     * log wrote) */
    uint64_t upto = M.handed > keep ? M.handed : keep;
    if (upto < M.last_lsn)
        M.last_lsn = upto;
    M.frozen = true;
}

uint64_t repl_master_handed(void)
{
    return M.running ? M.handed : 0;
}

void repl_master_stop(const char *why)
{
    if (!M.running)
        return;
    store_set_lazy_reports(false);
    listener_stop(&M.listener);
    ev_timer_stop(srv.loop, &M.sweep);
    while (M.sessions) {
        struct session *s = M.sessions;
        log_info("replication: closing session with %s: %s", s->node_id[0] ? s->node_id : repl_peer_name(s->peer), why);
        s->node_id[0] = '\0';
        session_drop(s, why);
    }
    /* the reads in flight end, and their snapshots close, before anything
     * else here (or the store) goes */
    offload_stop();
    ring_free();
    M.running = false;
    log_info("replication: master stopped: %s", why);
}

bool repl_master_quorum_connected(void)
{
    uint32_t n = 0;
    for (struct session *s = M.sessions; s; s = s->next)
        n += session_authed(s);
    return n >= quorum_slaves_waited(&M.q);
}

size_t repl_master_slaves(struct repl_slave_info *out, size_t max)
{
    size_t n = 0;
    for (struct session *s = M.sessions; s && n < max; s = s->next) {
        if (!session_authed(s))
            continue;
        snprintf(out[n].node_id, sizeof out[n].node_id, "%s", s->node_id);
        snprintf(out[n].peer, sizeof out[n].peer, "%s", repl_peer_name(s->peer));
        out[n].received = s->received;
        out[n].durable = s->durable;
        out[n].snapshotting = s->state == S_SNAPSHOT;
        out[n].last_rx_ago = ev_now(srv.loop) - s->peer->st.last_rx;
        out[n].queued = repl_peer_pending(s->peer);
        out[n].unacked = s->sent_bytes - s->acked_bytes;
        out[n].window = (uint64_t)config.repl_window;
        out[n].paused = s->paused;
        out[n].paused_s = s->paused ? ev_now(srv.loop) - s->paused_since : 0;
        out[n].ack_us = &s->ack_us;
        out[n].durable_us = &s->durable_us;
        n++;
    }
    return n;
}
