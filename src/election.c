/* The election decision: only with a quorum of members registered, only
 * once each has published where its journal ends, and then the one with
 * the most up-to-date log, so the new master holds every committed entry
 * (a committed entry is on a quorum, and any quorum of members overlaps
 * it). */
#include "config.h"

#include <stdio.h>

#include "stompd/election.h"

bool election_better(const struct member *a, const struct member *b)
{
    if (a->epoch != b->epoch)
        return a->epoch > b->epoch;
    if (a->lsn != b->lsn)
        return a->lsn > b->lsn;
    /* one whose start as master failed would fail again (its port taken,
     * say): another as up to date goes first. One further ahead still
     * wins: only it has every committed entry. */
    if (a->unfit != b->unfit)
        return !a->unfit;
    if (a->refused != b->refused)
        return !a->refused;
    if (a->weight != b->weight)
        return a->weight > b->weight;
    return a->seq < b->seq;
}

enum election_result election_decide(const struct member *m, size_t n, uint32_t replicas, size_t *winner)
{
    uint32_t quorum = replicas / 2 + 1;
    size_t unrefused = 0;
    for (size_t i = 0; i < n; i++)
        unrefused += !m[i].refused;
    /* Refusals that leave fewer than a quorum standing cannot help (a
     * REFUSE is not authenticated: whoever answered at a master's address
     * may have sent it): then every member stands, as without them. */
    bool heed = unrefused >= quorum;
    if ((heed ? unrefused : n) < quorum)
        return ELECT_NO_QUORUM;
    size_t best = n;
    for (size_t i = 0; i < n; i++) {
        if (heed && m[i].refused)
            continue;
        if (!m[i].ready)
            return ELECT_WAITING;
        if (best == n || election_better(&m[i], &m[best]))
            best = i;
    }
    *winner = best;
    return ELECT_CANDIDATE;
}

bool election_refused(uint32_t refusers, uint32_t replicas)
{
    uint32_t quorum = replicas / 2 + 1;
    return refusers > 0 && refusers >= replicas - quorum + 1;
}

enum stepdown stepdown_decide(const struct stepdown_facts *f)
{
    if (f->session_lost)
        return STEPDOWN_SESSION_LOST;
    /* a paused process cannot know whether it still leads: its session
     * may have expired and another node been elected meanwhile */
    double pause_limit = f->session_s / 2 < 1.0 ? 1.0 : f->session_s / 2;
    if (f->loop_gap > pause_limit)
        return STEPDOWN_PAUSED;
    /* after a long rebuild of its own the loop could time no answer: it
     * gets a grace for a fresh one, ended early by a disconnect */
    if (f->since_heard >= 0 && f->since_heard > f->session_s * 2 / 3 && (!f->in_grace || !f->zk_connected))
        return STEPDOWN_ZK_SILENT;
    if (!f->view_complete)
        return STAY_MASTER;
    if (f->live_members < f->quorum)
        return STEPDOWN_NO_QUORUM;
    if (election_refused(f->refusers, f->replicas))
        return STEPDOWN_REFUSED;
    if (f->master == MASTER_ZNODE_OTHER)
        return STEPDOWN_OTHER_MASTER;
    if (f->master == MASTER_ZNODE_NONE && !f->claim_pending)
        return STEPDOWN_MASTER_GONE;
    return STAY_MASTER;
}

void stepdown_explain(enum stepdown d, const struct stepdown_facts *f, char *out, size_t len)
{
    switch (d) {
    case STAY_MASTER:
        snprintf(out, len, "still master");
        break;
    case STEPDOWN_SESSION_LOST:
        snprintf(out, len, "ZooKeeper session lost");
        break;
    case STEPDOWN_PAUSED:
        snprintf(out, len, "this process did not run for %.1f s; its mastership may have passed on", f->loop_gap);
        break;
    case STEPDOWN_ZK_SILENT:
        snprintf(out, len, "ZooKeeper has not answered for %.1f s (session timeout %.1f s)", f->since_heard,
                 f->session_s);
        break;
    case STEPDOWN_NO_QUORUM:
        snprintf(out, len, "fewer than a quorum of members remain registered (%u of %u needed)", f->live_members,
                 f->quorum);
        break;
    case STEPDOWN_OTHER_MASTER:
        snprintf(out, len, "another node holds the master znode");
        break;
    case STEPDOWN_MASTER_GONE:
        snprintf(out, len, "the master znode is gone");
        break;
    case STEPDOWN_REFUSED:
        snprintf(out, len,
                 "%u of the %u members refused this node as their master (its store.security_token or its TLS "
                 "certificate): it cannot gather a quorum, and stays out of elections while they hold to theirs",
                 f->refusers, f->replicas);
        break;
    }
}
