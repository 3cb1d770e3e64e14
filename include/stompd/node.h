/* The node's role (DESIGN §2, §6): standalone, electing, master, slave,
 * stepping down. This module is the only one that changes it: every
 * change goes through one checked transition that logs it once and runs
 * the exit actions of the old role and the entry actions of the new one
 * (open or close the STOMP listener, start or stop following a master,
 * rebuild the broker from the store, start or stop journaling and
 * replication). ZooKeeper (cluster.c) decides; configuration decides
 * without it. */
#ifndef STOMPD_NODE_H
#define STOMPD_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum node_role {
    NODE_STARTING,      /* before node_start */
    NODE_STANDALONE,    /* serves clients, no replication */
    NODE_ELECTING,      /* replicated, following nobody: an election decides */
    NODE_MASTER,        /* serves clients, journals, ships to slaves */
    NODE_SLAVE,         /* follows a master's journal; no clients */
    NODE_STEPPING_DOWN, /* a master letting go: clients closed, broker dropped */
    NODE_STOPPED,
    NODE__ROLES
};

enum node_role node_role(void);
const char *node_role_name(enum node_role r);
/* Master or standalone: clients are served. */
bool node_serving(void);
/* Is the change from -> to one the node makes? (The transition table.) */
bool node_transition_allowed(enum node_role from, enum node_role to);

/* The rules --check-config can judge before anything opens (main applies
 * them before node_start too): a replication port open beyond loopback
 * without a token; in a cluster, cluster_check_config's. */
int node_check_config(char *err, size_t errlen);

/* Open the store and take the role the configuration gives: standalone
 * (store.type leveldb or memory), electing (replicated, store.role auto),
 * or master or slave by configuration. */
int node_start(char *err, size_t errlen) __attribute__((warn_unused_result));
/* Take over as master of new_epoch (the election was won). -EAGAIN while
 * the store has not applied everything received (call again later);
 * another error when serving could not start (the node is electing then). */
int node_become_master(uint64_t new_epoch, char *err, size_t errlen) __attribute__((warn_unused_result));
/* A master stops serving at once: clients closed, nothing more committed,
 * the in-memory broker dropped (the store keeps it all); it is electing
 * afterwards. No-op for any other role. */
void node_step_down(const char *why);
/* Follow the master at this replication address (NULL: nobody, electing). */
void node_follow(const char *master_repl);
/* Stop for good (clean shutdown). */
void node_stop(void);

#endif
