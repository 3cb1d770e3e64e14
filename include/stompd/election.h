/* The election decision (DESIGN §6 step 3) as a pure function: given the
 * registered members and what each has published, who should claim
 * mastership, if anyone. */
#ifndef STOMPD_ELECTION_H
#define STOMPD_ELECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct member {
    uint64_t seq;       /* sequence number of its ephemeral znode */
    char id[40];        /* node id */
    uint64_t epoch;     /* epoch of its last journal entry */
    uint64_t lsn;       /* its last journal entry */
    int64_t weight;
    bool unfit;         /* failed to start as master lately (its listeners would not open) */
    bool refused;       /* enough members refused its store.security_token (election_refused) */
    bool ready;         /* published its final position for this election */
};

enum election_result {
    ELECT_CANDIDATE,    /* *winner is the member that should claim */
    ELECT_NO_QUORUM,    /* fewer members than a quorum: nobody may serve */
    ELECT_WAITING,      /* some member has not published its position yet */
};

/* Most up-to-date (epoch, lsn) first, then one that has not just failed
 * to start as master, then one not refused, then the greatest weight,
 * then the lowest sequence number. quorum = replicas / 2 + 1. A refused
 * member neither stands nor counts toward the quorum: the others must be
 * a quorum by themselves, so they share a member with any quorum that
 * committed an entry, and the most up to date of them has every
 * committed entry. Refusals that would leave fewer than a quorum
 * standing are not heeded (every member stands). */
enum election_result election_decide(const struct member *m, size_t n, uint32_t replicas, size_t *winner);

/* A master whose store.security_token this many members refused in its
 * term (as its slaves: their proofs failed at it) can never gather a
 * quorum: the members left are fewer than a quorum without it. It steps
 * down, and is out of elections while as many of those members still
 * run (cluster.c), or until a master proves the same token to it. */
bool election_refused(uint32_t refusers, uint32_t replicas);

/* Is a better than b as a candidate? */
bool election_better(const struct member *a, const struct member *b);

/* ---------------------------------------------------------------- step down
 * A master must stop serving before another node can be elected (DESIGN
 * §6 step 5). Everything that decides it, as one pure function of what
 * the node knows now; cluster.c gathers the facts and acts on the answer. */

enum master_znode {
    MASTER_ZNODE_UNKNOWN,   /* not read yet (a new session) */
    MASTER_ZNODE_NONE,      /* there is no master znode */
    MASTER_ZNODE_SELF,      /* it names this node */
    MASTER_ZNODE_OTHER,     /* it names another node */
};

struct stepdown_facts {
    bool session_lost;       /* the ZooKeeper session expired (or failed authentication) */
    double loop_gap;         /* seconds this process went without running its loop */
    double since_heard;      /* seconds since the sending time of the last request the
                              * server answered; negative when none was answered yet */
    double session_s;        /* the session timeout the server granted */
    bool zk_connected;
    bool in_grace;           /* right after the loop's own long work (a rebuild) */
    bool view_complete;      /* members and the master znode have been read */
    uint32_t live_members;   /* distinct members registered (newest znode per node) */
    uint32_t quorum;         /* store.replicas / 2 + 1 */
    enum master_znode master;
    bool claim_pending;      /* this node won a claim and is still taking over */
    uint32_t refusers;       /* members its store.security_token failed (election_refused) */
    uint32_t replicas;       /* store.replicas */
};

enum stepdown {
    STAY_MASTER,
    STEPDOWN_SESSION_LOST,   /* its session (and so its master znode) is gone */
    STEPDOWN_PAUSED,         /* the process did not run for half the session timeout */
    STEPDOWN_ZK_SILENT,      /* no answer from ZooKeeper for 2/3 of the session timeout */
    STEPDOWN_NO_QUORUM,      /* fewer than a quorum of members remain registered */
    STEPDOWN_OTHER_MASTER,   /* another node holds the master znode */
    STEPDOWN_MASTER_GONE,    /* the master znode is gone */
    STEPDOWN_REFUSED,        /* too many members refuse its store.security_token to make a quorum */
};

/* What a master must do now. The earliest expiry of its session is the
 * timeout after the sending of the last request the server answered; the
 * client library notices a silent connection only after 2/3 of it, so a
 * master steps down once 2/3 have passed without an answer: a third of
 * the timeout before any other node can be elected. */
enum stepdown stepdown_decide(const struct stepdown_facts *f);
/* The reason in words (for the log and the step-down), with figures. */
void stepdown_explain(enum stepdown d, const struct stepdown_facts *f, char *out, size_t len);

#endif
