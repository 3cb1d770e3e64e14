/* Replication, slave side: connect to the master (over TLS with
 * store.tls), prove the token and have the master prove it too (a node
 * that cannot is not followed: nothing it says is acted on), say where
 * this store stands, install a snapshot when the master says so, apply the
 * entry stream through the same store writer the master uses, and
 * acknowledge received and durable positions. Refuses any master older
 * than the highest epoch seen (fencing), and reconnects with backoff. */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stompd/config.h"
#include "stompd/journal.h"
#include "stompd/log.h"
#include "stompd/repl.h"
#include "stompd/repl_auth.h"
#include "stompd/server.h"
#include "stompd/store.h"
#include "stompd/tls.h"

/* Waiting for the master's CHALLENGE, then for its WELCOME (neither side
 * proven yet), then installing a snapshot or streaming. */
enum link_state { L_IDLE, L_WAIT_CHALLENGE, L_WAIT_WELCOME, L_SNAPSHOT, L_STREAM };

static struct {
    bool running;
    char master[256];
    char master_id[40];
    char master_http[300];    /* the master's console, from WELCOME */
    uint64_t master_head;     /* the master's last lsn, as last heard */
    struct repl_peer *peer;
    enum link_state state;
    ev_timer retry;
    ev_timer watch;
    ev_timer ack_hold;        /* an ACK held back for entries nothing waits for */
    bool master_waits;        /* the master waits for our durable position (WELCOME) */
    uint64_t waited;          /* last entry received that something waits for */
    double backoff;
    uint64_t received;        /* last lsn handed to the store */
    uint64_t received_epoch;  /* epoch of that entry */
    struct journal_tip received_tip; /* and its checksum */
    uint64_t durable;
    uint64_t max_epoch;
    uint64_t sent_received, sent_durable;
    uint64_t snap_lsn;
    uint64_t store_waits;     /* times reading stopped for the store (hold_back) */
    bool refused_logged;
    uint8_t nonce_s[REPL_NONCE_LEN], nonce_m[REPL_NONCE_LEN];
    char claimed_master[40];  /* the id the master's CHALLENGE gave (checked) */
    void (*verdict_cb)(const char *master_id, enum repl_verdict v);
} L;

static void schedule_retry(void);

static const char *const link_names[] = {"idle", "wait-challenge", "wait-welcome", "snapshot", "stream"};

/* Every link state change goes through here. A link ends (idle) from any
 * state; otherwise it only moves forward. */
static void link_set_state(enum link_state to)
{
    static const unsigned ok[] = {
        [L_IDLE] = 1u << L_WAIT_CHALLENGE | 1u << L_IDLE,
        [L_WAIT_CHALLENGE] = 1u << L_WAIT_WELCOME | 1u << L_IDLE,
        [L_WAIT_WELCOME] = 1u << L_SNAPSHOT | 1u << L_STREAM | 1u << L_IDLE,
        [L_SNAPSHOT] = 1u << L_STREAM | 1u << L_IDLE,
        [L_STREAM] = 1u << L_IDLE,
    };
    if (!(ok[L.state] & (1u << to))) {
        log_err("replication: illegal link state change %s -> %s", link_names[L.state], link_names[to]);
        assert(!"illegal replication link state change");
        return;
    }
    if (L.state != to)
        log_debug("replication: link %s -> %s", link_names[L.state], link_names[to]);
    L.state = to;
}

static void send_ack(void)
{
    ev_timer_stop(srv.loop, &L.ack_hold);
    if (!L.peer || repl_peer_dead(L.peer) || L.state < L_SNAPSHOT)
        return;
    if (L.durable > L.received)
        L.durable = L.received; /* never more than this master sent */
    if (L.received == L.sent_received && L.durable == L.sent_durable)
        return;
    size_t f = repl_frame_begin(repl_peer_out(L.peer), R_ACK);
    repl_put_u64(repl_peer_out(L.peer), L.received);
    repl_put_u64(repl_peer_out(L.peer), L.durable);
    repl_frame_end(repl_peer_out(L.peer), f);
    L.sent_received = L.received;
    L.sent_durable = L.durable;
    /* sent before the loop sleeps: one send however many ENTRIES frames
     * one read brought */
    stream_want_flush(&L.peer->st);
}

static void ack_hold_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    send_ack();
}

/* Entries the master sent UNWAITED (nothing waits for them): the ACK
 * waits up to store.ack_delay for the next entry to carry it. With an
 * auto-ack consumer that is one send per message fewer here, and two
 * reads fewer on the master. */
static void hold_ack(void)
{
    if (config.ack_delay <= 0) {
        send_ack();
        return;
    }
    if (!ev_is_active(&L.ack_hold)) {
        ev_timer_set(&L.ack_hold, (double)config.ack_delay / 1000.0, 0.);
        ev_timer_start(srv.loop, &L.ack_hold);
    }
}

void repl_slave_store_done(uint64_t lsn)
{
    L.durable = lsn;
    if (L.master_waits) {
        /* the master counts our copy of an entry it waits for once our
         * store wrote it: that goes at once; entries nothing waits for
         * (UNWAITED) go with the next ACK, within store.ack_delay */
        uint64_t due = L.waited < lsn ? L.waited : lsn;
        if (L.sent_durable < due)
            send_ack();
        else
            hold_ack();
        return;
    }
    /* a master that does not wait for our store hears of it with the held
     * ACK: a report on its own would send that ACK early */
    if (ev_is_active(&L.ack_hold))
        return;
    send_ack();
}

static bool fenced(uint64_t epoch, const char *what)
{
    if (epoch >= L.max_epoch)
        return false;
    log_err("replication: %s from %s carries epoch %" PRIu64 ", older than epoch %" PRIu64
            " this node has seen: refused (a former master?)", what, L.master, epoch, L.max_epoch);
    return true;
}

static void see_epoch(uint64_t epoch)
{
    if (epoch > L.max_epoch) {
        L.max_epoch = epoch;
        store_set_max_epoch(epoch);
    }
}

/* What this link's proofs are computed over. */
static struct repl_auth_input auth_input(void)
{
    const char *me = store_info()->node_id;
    return (struct repl_auth_input){config.security_token, strlen(config.security_token), L.nonce_s, L.nonce_m,
                                    me, strlen(me), L.claimed_master, strlen(L.claimed_master)};
}

/* The master's CHALLENGE: prove the token over both nonces, and say where
 * this journal stands. */
static int on_challenge(struct repl_peer *p, struct repl_reader *r)
{
    uint32_t il, nl;
    const char *id = repl_get_str(r, &il);
    const char *nonce = repl_get_str(r, &nl);
    if (r->bad || r->left || nl != REPL_NONCE_LEN || !repl_node_id_ok(id, il)) {
        log_err("replication: malformed CHALLENGE from %s", L.master);
        return -1;
    }
    memcpy(L.claimed_master, id, il);
    L.claimed_master[il] = '\0';
    memcpy(L.nonce_m, nonce, REPL_NONCE_LEN);
    struct repl_auth_input in = auth_input();
    uint8_t proof[REPL_PROOF_LEN];
    repl_auth_proof(REPL_AUTH_SLAVE, &in, proof);
    size_t f = repl_frame_begin(repl_peer_out(p), R_PROOF);
    repl_put_str(repl_peer_out(p), (const char *)proof, sizeof proof);
    repl_put_u64(repl_peer_out(p), L.received_epoch);
    repl_put_u64(repl_peer_out(p), L.received);
    repl_put_u64(repl_peer_out(p), L.max_epoch);
    repl_put_u64(repl_peer_out(p), journal_tip_sum(&L.received_tip));
    repl_frame_end(repl_peer_out(p), f);
    link_set_state(L_WAIT_WELCOME);
    repl_peer_flush(p);
    return 0;
}

static int on_welcome(struct repl_peer *p, struct repl_reader *r)
{
    /* nothing the master says counts before it proves the token: a node
     * that cannot might make this one wipe its store for a "snapshot" */
    uint32_t pl;
    const char *proof = repl_get_str(r, &pl);
    struct repl_auth_input in = auth_input();
    if (r->bad || !repl_auth_check(REPL_AUTH_MASTER, &in, proof, pl)) {
        if (!L.refused_logged)
            log_err("replication: %s (node %s) did not prove it knows store.security_token: not following it",
                    L.master, L.claimed_master);
        L.refused_logged = true;
        return -1;
    }
    repl_peer_trust(p);
    if (L.verdict_cb)
        L.verdict_cb(L.claimed_master, REPL_PROVED);
    uint64_t epoch = repl_get_u64(r);
    uint32_t il;
    const char *id = repl_get_str(r, &il);
    uint8_t wants = repl_get_u8(r); /* REPL_SLAVE_* */
    uint8_t snapshot = repl_get_u8(r);
    uint64_t next = repl_get_u64(r);
    uint32_t hl;
    const char *http = repl_get_str(r, &hl);
    uint64_t head = repl_get_u64(r);
    if (r->bad || fenced(epoch, "WELCOME"))
        return -1;
    if (il != strlen(L.claimed_master) || memcmp(id, L.claimed_master, il) != 0) {
        log_err("replication: %s welcomed this node as another node than it challenged it", L.master);
        return -1;
    }
    snprintf(L.master_http, sizeof L.master_http, "%.*s", (int)(hl < sizeof L.master_http ? hl : sizeof L.master_http - 1), http);
    L.master_head = head;
    see_epoch(epoch);
    snprintf(L.master_id, sizeof L.master_id, "%.*s", (int)(il < 39 ? il : 39), id);
    store_set_sync((wants & REPL_SLAVE_SYNC) != 0);
    /* a master that does not count our copies needs our durable position
     * only now and then (ACKs of what we received go at once) */
    store_set_lazy_reports(wants == 0);
    L.master_waits = wants != 0;
    /* what we hold past our durable position the master sent waited
     * (catch-up, or uncommitted when the link broke): its report goes
     * at once */
    L.waited = L.received;
    L.backoff = 0;
    L.refused_logged = false;
    if (snapshot) {
        /* what this store holds is about to be replaced: it holds nothing
         * the master may count on. Wiped now, not at SNAPSHOT_BEGIN: were
         * the link to break in between, the next HELLO would say "empty"
         * (lsn 0) over a store still holding the old state. */
        store_wipe();
        L.received = L.durable = 0;
        L.received_epoch = 0;
        journal_tip_reset(&L.received_tip, 0);
        link_set_state(L_SNAPSHOT);
        log_info("replication: master %s (%s, epoch %" PRIu64 ") sends a snapshot", L.master_id, L.master, epoch);
    } else {
        if (next != L.received + 1) {
            log_err("replication: master offers lsn %" PRIu64 ", this node is at %" PRIu64, next, L.received);
            return -1;
        }
        if (L.received == 0)
            /* a stream from the start onto an empty store (perhaps one an
             * interrupted snapshot left marked): it is complete as it is */
            store_snapshot_installed(0, 0, 0);
        link_set_state(L_STREAM);
        log_info("replication: following master %s (%s, epoch %" PRIu64 ") from lsn %" PRIu64, L.master_id,
                 L.master, epoch, next);
    }
    /* the master knows our position from HELLO; say it as an ACK too */
    L.sent_received = L.sent_durable = UINT64_MAX;
    send_ack();
    return 0;
}

static int on_entries(struct repl_reader *r)
{
    uint64_t epoch = repl_get_u64(r);
    uint32_t n = repl_get_u32(r);
    if (r->bad || fenced(epoch, "ENTRIES"))
        return -1;
    if (L.state != L_STREAM) {
        log_err("replication: ENTRIES before the stream started");
        return -1;
    }
    bool waited = false;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len;
        uint8_t flags = repl_get_u8(r);
        bool sync = (flags & REPL_ENTRY_SYNC) != 0;
        if (!(flags & REPL_ENTRY_UNWAITED))
            waited = true;
        const char *e = repl_get_str(r, &len);
        struct journal_entry je;
        if (r->bad || journal_decode(e, len, &je) != 0) {
            log_err("replication: malformed entry from the master");
            return -1;
        }
        if (je.lsn != L.received + 1) {
            log_err("replication: got entry %" PRIu64 ", expected %" PRIu64, je.lsn, L.received + 1);
            return -1;
        }
        char *copy = malloc(len);
        if (!copy)
            abort();
        memcpy(copy, e, len);
        store_append(je.lsn, copy, len, sync);
        L.received = je.lsn;
        L.received_epoch = je.epoch;
        journal_tip_set(&L.received_tip, e, len);
        if (!(flags & REPL_ENTRY_UNWAITED))
            L.waited = je.lsn;
    }
    /* a master that counts our copies hears of these once our store has
     * written them (repl_slave_store_done); one that does not, now */
    if (waited && !L.master_waits)
        send_ack();
    else if (!waited)
        hold_ack();
    return 0;
}

/* The link reads again: the store wrote half of what it held. The master
 * was not silent meanwhile, this side was not reading. */
static void store_room(void)
{
    if (!L.peer || !(L.peer->st.paused & REPL_PAUSE_STORE))
        return;
    L.peer->st.last_rx = ev_now(srv.loop);
    stream_resume(&L.peer->st, REPL_PAUSE_STORE);
}

/* Entries and snapshot pairs arrive as fast as the link carries them
 * (the master's window counts them acknowledged on receipt, or once
 * written where the master counts our copies). Once the store
 * holds store.repl_window bytes not yet written, reading stops (TCP
 * carries the wait back to the master) until half of them are: a slave
 * whose disk is slower than the link holds that much in memory, not the
 * whole catch-up. */
static void hold_back(void)
{
    uint64_t limit = (uint64_t)config.repl_window;
    if (!L.peer || store_queued() < limit)
        return;
    L.store_waits++;
    stream_pause(&L.peer->st, REPL_PAUSE_STORE);
    if (store_wait_room(limit / 2, store_room))
        store_room();
}

static int link_frame(struct repl_peer *p, uint8_t type, struct repl_reader *r)
{
    if (L.state < L_SNAPSHOT && type != R_CHALLENGE && type != R_WELCOME && type != R_REFUSE) {
        log_warn("replication: %s sent %s during the handshake", L.master, repl_type_name(type));
        return -1;
    }
    switch (type) {
    case R_CHALLENGE:
        if (L.state != L_WAIT_CHALLENGE)
            return -1;
        return on_challenge(p, r);
    case R_WELCOME:
        if (L.state != L_WAIT_WELCOME)
            return -1;
        return on_welcome(p, r);
    case R_REFUSE: {
        uint32_t len;
        const char *why = repl_get_str(r, &len);
        char text[256];
        repl_printable(why, len, text, sizeof text);
        uint8_t kind = r->left ? repl_get_u8(r) : REPL_REFUSE_OTHER;
        if (!L.refused_logged)
            log_err("replication: master %s refused this node: %s", L.master, text);
        L.refused_logged = true;
        /* only the answer to our PROOF says the tokens differ */
        if (kind == REPL_REFUSE_TOKEN && L.state == L_WAIT_WELCOME && L.verdict_cb)
            L.verdict_cb(L.claimed_master, REPL_REFUSED_TOKEN);
        repl_peer_close(p, "refused by the master");
        return 0;
    }
    case R_SNAPSHOT_BEGIN: {
        uint64_t epoch = repl_get_u64(r), lsn = repl_get_u64(r);
        if (r->bad || L.state != L_SNAPSHOT || fenced(epoch, "SNAPSHOT_BEGIN"))
            return -1;
        L.snap_lsn = lsn;
        return 0;
    }
    case R_SNAPSHOT_CHUNK: {
        uint32_t n = repl_get_u32(r);
        if (r->bad || L.state != L_SNAPSHOT)
            return -1;
        (void)n;
        store_put_raw(r->p, r->left);
        hold_back();
        return 0;
    }
    case R_SNAPSHOT_END: {
        uint64_t lsn = repl_get_u64(r), epoch = repl_get_u64(r), sum = repl_get_u64(r);
        if (r->bad || L.state != L_SNAPSHOT)
            return -1;
        store_snapshot_installed(lsn, epoch, sum);
        L.received = L.waited = lsn;
        L.received_epoch = epoch;
        journal_tip_reset(&L.received_tip, sum);
        link_set_state(L_STREAM);
        log_info("replication: snapshot installed at lsn %" PRIu64, lsn);
        send_ack();
        return 0;
    }
    case R_ENTRIES: {
        int rc = on_entries(r);
        if (rc == 0)
            hold_back();
        return rc;
    }
    case R_PING: {
        uint64_t t = repl_get_u64(r);
        uint64_t head = repl_get_u64(r);
        if (!r->bad && head > L.master_head)
            L.master_head = head;
        repl_peer_pong(p, t);
        return 0;
    }
    case R_PONG:
        return 0;
    default:
        log_warn("replication: unexpected %s frame from the master", repl_type_name(type));
        return -1;
    }
}

/* The link ends (lost, or dropped by us). A snapshot it was installing is
 * incomplete: wipe what arrived (the store keeps its "snapshot" mark), so
 * the next HELLO's "empty" is true, whatever the master then sends. */
static void link_ended(void)
{
    if (L.state == L_SNAPSHOT) {
        log_warn("replication: snapshot from %s interrupted: discarding what arrived", L.master);
        store_wipe();
        L.received = L.durable = 0;
        L.received_epoch = 0;
        journal_tip_reset(&L.received_tip, 0);
    }
    ev_timer_stop(srv.loop, &L.ack_hold);
    link_set_state(L_IDLE);
}

static void link_closed(struct repl_peer *p, const char *why)
{
    if (L.state != L_IDLE && !L.refused_logged)
        log_warn("replication: link to master %s lost: %s", L.master, why);
    /* a certificate refused before the master said a word: as a REFUSE
     * of the token, this node cannot follow it */
    bool tls_refused = L.state == L_WAIT_CHALLENGE && p->st.cert_refused;
    link_ended();
    if (tls_refused && L.verdict_cb)
        L.verdict_cb(NULL, REPL_REFUSED_TLS);
    repl_peer_free(p);
    L.peer = NULL;
    schedule_retry();
}

static const struct repl_peer_ops link_ops = {link_frame, NULL, link_closed};

static void connect_master(void)
{
    char err[300];
    if (!L.master[0])
        return;
    int fd = stream_connect_socket(L.master, err, sizeof err);
    if (fd < 0) {
        log_warn("replication: master %s: %s", L.master, err);
        schedule_retry();
        return;
    }
    if (repl_auth_nonce(L.nonce_s) != 0) {
        log_err("replication: no random bytes for a handshake nonce");
        close(fd);
        schedule_retry();
        return;
    }
    L.peer = repl_peer_new(fd, L.master, true, &link_ops, NULL);
    if (config.store_tls)
        tls_connect_peer(&L.peer->st);
    link_set_state(L_WAIT_CHALLENGE);
    L.claimed_master[0] = '\0';
    const struct store_info *si = store_info();
    size_t f = repl_frame_begin(repl_peer_out(L.peer), R_HELLO);
    repl_put_u32(repl_peer_out(L.peer), REPL_VERSION);
    repl_put_str(repl_peer_out(L.peer), si->node_id, strlen(si->node_id));
    repl_put_str(repl_peer_out(L.peer), (const char *)L.nonce_s, REPL_NONCE_LEN);
    repl_frame_end(repl_peer_out(L.peer), f);
    log_debug("replication: connecting to master %s at lsn %" PRIu64, L.master, L.received);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    if (L.running && !L.peer)
        connect_master();
}

static void schedule_retry(void)
{
    if (!L.running)
        return;
    L.backoff = L.backoff == 0 ? 0.1 : L.backoff * 2;
    if (L.backoff > 2.0)
        L.backoff = 2.0;
    ev_timer_stop(srv.loop, &L.retry);
    ev_timer_set(&L.retry, L.backoff, 0.);
    ev_timer_start(srv.loop, &L.retry);
}

static void watch_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    if (!L.peer || repl_peer_dead(L.peer) || (L.peer->st.state == STREAM_CONNECTING))
        return;
    if (L.peer->st.paused & REPL_PAUSE_STORE) {
        /* not reading: the master's pings wait in the socket. An ACK
         * tells the master this side is alive meanwhile. */
        L.sent_received = UINT64_MAX;
        send_ack();
        return;
    }
    double idle = ev_now(loop) - L.peer->st.last_rx;
    if (idle > (double)config.repl_timeout / 1000.0) {
        char why[96];
        snprintf(why, sizeof why, "master silent for %.1f s (store.repl_timeout)", idle);
        repl_peer_close(L.peer, why);
    }
}

void repl_slave_on_verdict(void (*cb)(const char *master_id, enum repl_verdict v))
{
    L.verdict_cb = cb;
}

void repl_slave_init(uint64_t lsn, uint64_t epoch, uint64_t sum)
{
    if (L.running)
        repl_slave_stop();
    L.received = L.durable = lsn;
    L.received_epoch = epoch;
    journal_tip_reset(&L.received_tip, sum);
    L.max_epoch = store_info()->max_epoch;
    L.master[0] = '\0';
    L.master_id[0] = '\0';
    L.master_http[0] = '\0';
    L.master_head = 0;
    L.running = true;
    L.backoff = 0;
    ev_init(&L.retry, retry_cb);
    ev_init(&L.ack_hold, ack_hold_cb);
    double iv = (double)config.repl_timeout / 3000.0;
    ev_timer_init(&L.watch, watch_cb, iv, iv);
    ev_timer_start(srv.loop, &L.watch);
}

int repl_slave_start(const char *master_addr, char *err, size_t errlen)
{
    const struct store_info *si = store_info();
    repl_slave_init(si->applied_lsn, si->epoch, si->tip_sum);
    repl_slave_set_master(master_addr);
    return 0;
}

uint64_t repl_slave_position(uint64_t *epoch)
{
    if (epoch)
        *epoch = L.received_epoch;
    return L.received;
}

uint64_t repl_slave_tip_sum(void)
{
    return journal_tip_sum(&L.received_tip);
}

bool repl_slave_running(void)
{
    return L.running;
}

void repl_slave_set_master(const char *master_addr)
{
    if (master_addr && !strcmp(master_addr, L.master) && L.peer)
        return;
    if (L.peer) {
        struct repl_peer *p = L.peer;
        L.peer = NULL;
        link_ended();
        repl_peer_free(p);
    }
    snprintf(L.master, sizeof L.master, "%s", master_addr ? master_addr : "");
    L.master_id[0] = '\0';
    L.master_http[0] = '\0';
    L.master_head = 0;
    L.backoff = 0;
    if (L.master[0] && L.running)
        connect_master();
}

void repl_slave_stop(void)
{
    if (!L.running)
        return;
    L.running = false;
    store_set_lazy_reports(false);
    ev_timer_stop(srv.loop, &L.retry);
    ev_timer_stop(srv.loop, &L.watch);
    if (L.peer) {
        repl_peer_free(L.peer);
        L.peer = NULL;
    }
    link_ended();
    journal_tip_reset(&L.received_tip, journal_tip_sum(&L.received_tip)); /* settled, the copy freed */
}

bool repl_slave_connected(void)
{
    return L.peer && L.state == L_STREAM;
}

uint64_t repl_slave_store_waits(void)
{
    return L.store_waits;
}

uint64_t repl_slave_received(void)
{
    return L.received;
}

const char *repl_slave_master(void)
{
    return L.master;
}

const char *repl_slave_master_id(void)
{
    return L.master_id;
}

const char *repl_slave_master_http(void)
{
    return L.master_http;
}

uint64_t repl_slave_master_head(void)
{
    if (!L.master_head)
        return 0;
    /* entries that arrived since the last PING are the master's too */
    return L.master_head > L.received ? L.master_head : L.received;
}

uint64_t repl_slave_max_epoch(void)
{
    return L.max_epoch;
}
