/* The node's role: the one place it changes (see node.h). Transitions
 * follow a table; an illegal one is logged and, in builds without NDEBUG,
 * an assertion failure. Entry and exit actions live next to each other,
 * so what "becoming master" or "stepping down" does is read in one place.
 * (Models: memcached's conn_set_state, pgbouncer's change_server_state,
 * Redis's replicationSetMaster.) */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "stompd/cluster.h"
#include "stompd/commit.h"
#include "stompd/config.h"
#include "stompd/dest.h"
#include "stompd/dup.h"
#include "stompd/durable.h"
#include "stompd/log.h"
#include "stompd/node.h"
#include "stompd/persist.h"
#include "stompd/queue.h"
#include "stompd/quorum.h"
#include "stompd/recovery.h"
#include "stompd/repl.h"
#include "stompd/sched.h"
#include "stompd/server.h"
#include "stompd/store.h"
#include "stompd/stream.h"

static enum node_role role = NODE_STARTING;

enum node_role node_role(void)
{
    return role;
}

bool node_serving(void)
{
    return role == NODE_MASTER || role == NODE_STANDALONE;
}

/* What a transition needs to know beyond its target. */
struct entry {
    uint64_t epoch;             /* MASTER: the epoch it leads */
    uint64_t lsn, lsn_epoch, sum; /* MASTER after following: where the journal ends */
    const char *master;         /* SLAVE: the master's replication address */
};

/* ------------------------------------------------------------ actions */

/* A master lets go: nothing more is journaled or shipped, every client
 * connection closes, the in-memory broker goes (the store keeps it all). */
static void leave_master(const char *why)
{
    /* An auto-ack MESSAGE still held for its dequeue never goes: the
     * message goes back, journaled after the dequeue and shipped as far
     * as the slaves' sockets take it, so whichever log has the dequeue
     * and is elected, this one or a slave's, has the message too
     * (helper-113: a master that lost its quorum stepped down and, elected
     * again, had lost what its auto-ack consumers were never sent) */
    commit_holds_give_back(true);
    repl_master_flush();
    persist_end();
    repl_master_stop(why);
    server_close_clients(why);
    sched_stop();
    durable_free_all();
    dest_free_all();
    commit_free_all();
    dup_free_all();
    commit_hold_assign(0);
}

/* Serve clients as the writer of the journal: rebuild the broker from the
 * store, then open the listeners. */
static int start_serving(uint64_t epoch, char *err, size_t errlen)
{
    persist_begin(epoch);
    if (persist_has_store()) {
        uint64_t max_seq = 0;
        int rc = recovery_rebuild(&max_seq, err, errlen);
        if (rc)
            return rc;
        server_seq_at_least(max_seq);
        queue_indexed(store_indexed_lsn());
        sched_indexed(store_indexed_lsn());
    }
    sched_start();
    if (role == NODE_MASTER) {
        int rc = repl_master_start(epoch, err, errlen);
        if (rc)
            return rc;
    }
    if (server_listen_clients() != 0) {
        snprintf(err, errlen, "cannot open the client listeners (stomp.listen %s%s%s%s%s%s%s)", config.stomp_listen,
                 config.ws_listen[0] ? ", stomp.ws_listen " : "", config.ws_listen,
                 config.wss_listen[0] ? ", stomp.wss_listen " : "", config.wss_listen,
                 config.stomp_tls_listen[0] ? ", stomp.tls_listen " : "", config.stomp_tls_listen);
        return -EADDRINUSE;
    }
    return 0;
}

/* A master by configuration (store.role = master) has no ZooKeeper to
 * hand it a fresh epoch, and "highest epoch seen + 1" gave two nodes that
 * had seen the same history the same number: two different journals under
 * one epoch, which (epoch, lsn) comparisons cannot tell apart. A manual
 * epoch is therefore the later of (highest seen + 1) and the wall clock in
 * milliseconds: two nodes made master at different times get different
 * epochs, and the one configured last gets the higher one, so the other
 * nodes (which may have seen either) follow it rather than fence it, as
 * the operator who configured it intends. (Tagging epochs with the node
 * id instead would make them unique too, but would order two masters of
 * one term by their ids: the slaves of the later one could refuse it.)
 * Two promotions in the same millisecond, or a clock far behind, can still
 * share an epoch: the entry checksum in HELLO catches a divergent tip then.
 * Epochs stay increasing, so fencing is unchanged. ZooKeeper mode keeps its
 * own counter, and a claim there takes an epoch above both the counter
 * and every epoch a member publishes, so a cluster moved from manual mode
 * to ZooKeeper mode goes on with increasing epochs. */
static uint64_t manual_epoch(uint64_t seen)
{
    int64_t now = server_now_ms();
    return now > 0 && (uint64_t)now > seen ? (uint64_t)now : seen + 1;
}

/* The store indexed more: paging may read it, and the store may have
 * room again. */
static void indexed(uint64_t lsn)
{
    queue_indexed(lsn);
    sched_indexed(lsn);
    persist_check_store_room();
}

static int start_store(bool sync, char *err, size_t errlen)
{
    store_on_indexed(indexed);
    return persist_start_store(sync, err, errlen);
}

static int arrive(enum node_role from, const struct entry *e, char *err, size_t errlen)
{
    unsigned modes = persist_modes();
    switch (role) {
    case NODE_STANDALONE: {
        int rc = persist_has_store() ? start_store(quorum_master_sync(modes), err, errlen) : 0;
        return rc ? rc : start_serving(store_info()->epoch, err, errlen);
    }
    case NODE_MASTER: {
        uint64_t epoch = e->epoch;
        if (from == NODE_STARTING) {
            /* by configuration */
            const struct store_info *si = store_info();
            epoch = manual_epoch(si->max_epoch > si->epoch ? si->max_epoch : si->epoch);
            store_set_max_epoch(epoch);
            int rc = start_store(quorum_master_sync(modes), err, errlen);
            if (rc)
                return rc;
        } else {
            /* elected: the journal ends where following left it */
            persist_set_position(e->lsn, e->lsn_epoch, e->sum);
            store_set_max_epoch(epoch);
            store_set_sync(quorum_master_sync(modes));
        }
        return start_serving(epoch, err, errlen);
    }
    case NODE_SLAVE:
        if (from == NODE_STARTING) {
            int rc = start_store(quorum_slaves_sync(modes), err, errlen);
            return rc ? rc : repl_slave_start(e->master, err, errlen);
        }
        if (!repl_slave_running()) {
            uint64_t le;
            uint64_t lsn = persist_position(&le);
            repl_slave_init(lsn, le, persist_position_sum());
        }
        repl_slave_set_master(e->master);
        return 0;
    case NODE_ELECTING:
        if (from == NODE_STARTING) {
            int rc = start_store(quorum_slaves_sync(modes), err, errlen);
            if (rc)
                return rc;
        } else if (from == NODE_STEPPING_DOWN) {
            store_set_sync(quorum_slaves_sync(modes));
        }
        if (!repl_slave_running()) {
            uint64_t le;
            uint64_t lsn = persist_position(&le);
            repl_slave_init(lsn, le, persist_position_sum());
        }
        repl_slave_set_master(NULL);
        return 0;
    case NODE_STEPPING_DOWN:
    case NODE_STOPPED:
    case NODE_STARTING:
    case NODE__ROLES:
        break;
    }
    return 0;
}

/* The one place the role changes. */
static int transition(enum node_role to, const char *why, const struct entry *e, char *err, size_t errlen)
{
    enum node_role from = role;
    if (!node_transition_allowed(from, to)) {
        log_err("node: illegal role change %s -> %s (%s)", node_role_name(from), node_role_name(to), why);
        assert(!"illegal node role change");
        snprintf(err, errlen, "illegal role change %s -> %s", node_role_name(from), node_role_name(to));
        return -EINVAL;
    }
    if (from == NODE_MASTER && to == NODE_STEPPING_DOWN)
        log_warn("stepping down as master: %s", why);
    else if (from != to)
        log_info("role: %s -> %s: %s", node_role_name(from), node_role_name(to), why);
    else
        log_debug("role: %s again: %s", node_role_name(to), why);
    if (from == NODE_MASTER && to != NODE_STOPPED)
        leave_master(why);
    role = to;
    return arrive(from, e, err, errlen);
}

/* ------------------------------------------------------------ entry points */

int node_check_config(char *err, size_t errlen)
{
    /* the replication port hands a slave every persistent message: off
     * loopback, only to a node that proves the shared token */
    if (!strcmp(config.store_type, "replicated-leveldb") && !config.security_token[0] &&
        !stream_addr_loopback(config.store_bind)) {
        snprintf(err, errlen, "store.security_token is empty and store.bind (%s) is not a loopback address: anyone "
                              "who reaches it could follow this node and read every persistent message; set "
                              "store.security_token to a long random secret, the same on every node",
                 config.store_bind);
        return -EINVAL;
    }
    if (!strcmp(config.store_type, "replicated-leveldb"))
        return cluster_check_config(err, errlen);
    return 0;
}

int node_start(char *err, size_t errlen)
{
    char e2[512] = "";
    int rc = persist_open(e2, sizeof e2);
    if (rc) {
        snprintf(err, errlen, "cannot open the store: %s", e2);
        return rc;
    }
    log_info("store: %s", persist_describe());
    struct entry e = {0};
    if (!persist_replicated())
        return transition(NODE_STANDALONE, persist_has_store() ? "store.type = leveldb" : "store.type = memory",
                          &e, err, errlen);
    /* config_validate made sure auto has ZooKeeper and slave a master */
    if (!strcmp(config.store_role, "auto"))
        /* ZooKeeper decides: follow nobody until told */
        return transition(NODE_ELECTING, "store.role = auto: ZooKeeper elects the master", &e, err, errlen);
    if (!strcmp(config.store_role, "slave")) {
        e.master = config.store_master;
        return transition(NODE_SLAVE, "store.role = slave", &e, err, errlen);
    }
    return transition(NODE_MASTER, "store.role = master", &e, err, errlen);
}

int node_become_master(uint64_t new_epoch, char *err, size_t errlen)
{
    /* Stop following first: a snapshot cut short is wiped (and the
     * position drops to 0) before anything is read from the store. */
    bool was_following = repl_slave_running();
    repl_slave_stop();
    uint64_t e;
    uint64_t lsn = repl_slave_position(&e);
    if (was_following && lsn == 0)
        /* an empty store, perhaps marked by an unfinished snapshot: it is
         * whole as it is (queued after the wipe, if there is one) */
        store_snapshot_installed(0, 0, 0);
    if (store_durable_lsn() < lsn || !store_drained()) {
        /* the caller tries again; the rebuild must read what was written */
        snprintf(err, errlen, "the store has not applied every received entry yet");
        return -EAGAIN;
    }
    struct entry en = {.epoch = new_epoch, .lsn = lsn, .lsn_epoch = e, .sum = repl_slave_tip_sum()};
    char why[64];
    snprintf(why, sizeof why, "elected in epoch %" PRIu64, new_epoch);
    int rc = transition(NODE_MASTER, why, &en, err, errlen);
    if (rc)
        node_step_down("could not start serving as master");
    return rc;
}

void node_step_down(const char *why)
{
    if (role != NODE_MASTER)
        return;
    char err[256];
    struct entry e = {0};
    if (transition(NODE_STEPPING_DOWN, why, &e, err, sizeof err) == 0 &&
        transition(NODE_ELECTING, why, &e, err, sizeof err) != 0)
        log_err("node: %s", err);
}

void node_follow(const char *master_repl)
{
    char err[256];
    struct entry e = {.master = master_repl};
    if (role == NODE_MASTER)
        node_step_down("another node is master");
    if (master_repl) {
        char why[320];
        snprintf(why, sizeof why, "following the master at %s", master_repl);
        if (transition(NODE_SLAVE, why, &e, err, sizeof err) != 0)
            log_err("node: %s", err);
    } else if (role == NODE_SLAVE) {
        if (transition(NODE_ELECTING, "no master", &e, err, sizeof err) != 0)
            log_err("node: %s", err);
    }
}

void node_stop(void)
{
    char err[64];
    struct entry e = {0};
    persist_flush();
    /* what that appended (acks waiting for store.ack_delay, the last
     * round's) goes to the slaves too, as far as their sockets take it: a
     * master whose own log ends past theirs would be resynchronised from
     * scratch when it rejoins under another master */
    repl_master_flush();
    stream_flush_all();
    repl_master_stop("broker stopping");
    repl_slave_stop();
    if (role != NODE_STOPPED && transition(NODE_STOPPED, "broker stopping", &e, err, sizeof err) != 0)
        log_err("node: %s", err);
    persist_close();
}
