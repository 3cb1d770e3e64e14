/* ZooKeeper membership and election (DESIGN §6). With [zookeeper] address
 * set, the node registers itself, follows the master znode's node or takes
 * part in electing one, and changes role through persist.c. */
#ifndef STOMPD_CLUSTER_H
#define STOMPD_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cluster_member {
    char znode[64];
    char id[40];
    char role[16];
    char stomp[128];
    char http[128];
    uint64_t epoch, lsn;
    int64_t weight;
    bool self;
    bool refused;   /* out of elections: too many members refused its store.security_token */
};

/* Start the ZooKeeper session (no-op without zookeeper.address). */
int cluster_start(char *err, size_t errlen) __attribute__((warn_unused_result));
/* What cluster_start would refuse, without starting anything (--check-config
 * too): the address others reach this node at (store.bind, store.hostname,
 * store.advertise) and zookeeper.path. -EAGAIN: store.hostname is not (or
 * not yet: the network may be coming up) an address of this machine. */
int cluster_check_config(char *err, size_t errlen) __attribute__((warn_unused_result));
void cluster_stop(void);
/* log.level changed: the ZooKeeper client's own level follows it. */
void cluster_log_level_changed(void);
bool cluster_enabled(void);
bool cluster_connected(void);
/* The ZooKeeper session, in one word: "none" (no ZooKeeper), "connecting"
 * (not connected; a session may live on), "connected", "expired" (the
 * last session expired; a new one is being set up). */
const char *cluster_session_state(void);
/* This node's member znode exists (it has joined the cluster). */
bool cluster_registered(void);
/* A long piece of work on the loop thread ended: not a pause. */
void cluster_busy_done(void);
size_t cluster_members(struct cluster_member *out, size_t max);
const char *cluster_master_id(void);
const char *cluster_master_http(void);
const char *cluster_master_stomp(void);

#endif
