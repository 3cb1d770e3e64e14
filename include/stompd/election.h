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
    bool ready;         /* published its final position for this election */
};

enum election_result {
    ELECT_CANDIDATE,    /* *winner is the member that should claim */
    ELECT_NO_QUORUM,    /* fewer members than a quorum: nobody may serve */
    ELECT_WAITING,      /* some member has not published its position yet */
};

/* Most up-to-date (epoch, lsn) first, then the greatest weight, then the
 * lowest sequence number. quorum = replicas / 2 + 1. */
enum election_result election_decide(const struct member *m, size_t n, uint32_t replicas, size_t *winner);

/* Is a better than b as a candidate? */
bool election_better(const struct member *a, const struct member *b);

#endif
