/* The election decision: only with a quorum of members registered, only
 * once each has published where its journal ends, and then the one with
 * the most up-to-date log, so the new master holds every committed entry
 * (a committed entry is on a quorum, and any quorum of members overlaps
 * it). */
#include "config.h"

#include "stompd/election.h"

bool election_better(const struct member *a, const struct member *b)
{
    if (a->epoch != b->epoch)
        return a->epoch > b->epoch;
    if (a->lsn != b->lsn)
        return a->lsn > b->lsn;
    if (a->weight != b->weight)
        return a->weight > b->weight;
    return a->seq < b->seq;
}

enum election_result election_decide(const struct member *m, size_t n, uint32_t replicas, size_t *winner)
{
    uint32_t quorum = replicas / 2 + 1;
    if (n < quorum)
        return ELECT_NO_QUORUM;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        if (!m[i].ready)
            return ELECT_WAITING;
        if (i && election_better(&m[i], &m[best]))
            best = i;
    }
    *winner = best;
    return ELECT_CANDIDATE;
}
