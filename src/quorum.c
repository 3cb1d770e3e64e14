/* Commit rules of the replicated store (the sync modes ActiveMQ's
 * replicated LevelDB store offers), as one function of the positions.
 * Every listed condition must hold; the committed lsn is the highest lsn
 * satisfying all of them, and it only moves forward. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "stompd/quorum.h"

static const struct {
    const char *name;
    unsigned bit;
} names[] = {
    {"local_mem", SYNC_LOCAL_MEM},   {"local_disk", SYNC_LOCAL_DISK},   {"remote_mem", SYNC_REMOTE_MEM},
    {"remote_disk", SYNC_REMOTE_DISK}, {"quorum_mem", SYNC_QUORUM_MEM}, {"quorum_disk", SYNC_QUORUM_DISK},
};

int quorum_parse_modes(const char *s, unsigned *modes, char *err, size_t errlen)
{
    unsigned m = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, ", ");
        bool found = false;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            if (strlen(names[i].name) == len && strncmp(names[i].name, p, len) == 0) {
                m |= names[i].bit;
                found = true;
            }
        }
        if (!found) {
            snprintf(err, errlen, "unknown sync mode '%.*s' (use local_mem, local_disk, remote_mem, remote_disk, "
                                  "quorum_mem or quorum_disk, or a comma list of them)", (int)len, p);
            return -EINVAL;
        }
        p += len;
    }
    if (m == 0) {
        snprintf(err, errlen, "empty sync mode");
        return -EINVAL;
    }
    *modes = m;
    return 0;
}

void quorum_format_modes(unsigned modes, char *out, size_t len)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (modes & names[i].bit)
            o += (size_t)snprintf(out + o, o < len ? len - o : 0, "%s%s", o ? "," : "", names[i].name);
}

bool quorum_slaves_sync(unsigned modes)
{
    return (modes & (SYNC_REMOTE_DISK | SYNC_QUORUM_DISK)) != 0;
}

bool quorum_slaves_report(unsigned modes)
{
    return (modes & (SYNC_REMOTE_MEM | SYNC_REMOTE_DISK | SYNC_QUORUM_MEM | SYNC_QUORUM_DISK)) != 0;
}

bool quorum_master_sync(unsigned modes)
{
    return (modes & (SYNC_LOCAL_DISK | SYNC_QUORUM_DISK)) != 0;
}

bool quorum_master_counts_self(unsigned modes)
{
    return (modes & (SYNC_LOCAL_MEM | SYNC_LOCAL_DISK | SYNC_QUORUM_MEM | SYNC_QUORUM_DISK)) != 0;
}

uint64_t quorum_slave_counted(unsigned modes, uint64_t received, uint64_t durable)
{
    return quorum_slaves_report(modes) ? durable : received;
}

void quorum_init(struct quorum *q, uint32_t replicas, unsigned modes, uint64_t committed)
{
    memset(q, 0, sizeof *q);
    q->modes = modes;
    q->replicas = replicas ? replicas : 1;
    q->need = q->replicas / 2 + 1;
    q->committed = committed;
    q->local_mem = q->local_disk = committed;
}

static struct quorum_slave *find(struct quorum *q, uint64_t id)
{
    for (uint32_t i = 0; i < q->nslaves; i++)
        if (q->slaves[i].id == id)
            return &q->slaves[i];
    return NULL;
}

int quorum_add_slave(struct quorum *q, uint64_t id)
{
    if (find(q, id))
        return -EEXIST;
    if (q->nslaves == QUORUM_MAX_SLAVES)
        return -ENOSPC;
    q->slaves[q->nslaves++] = (struct quorum_slave){id, 0, 0, 0};
    return 0;
}

void quorum_remove_slave(struct quorum *q, uint64_t id)
{
    struct quorum_slave *s = find(q, id);
    if (s)
        *s = q->slaves[--q->nslaves];
}

void quorum_local(struct quorum *q, uint64_t mem, uint64_t disk)
{
    if (mem > q->local_mem)
        q->local_mem = mem;
    if (disk > q->local_disk)
        q->local_disk = disk;
}

void quorum_slave_ack(struct quorum *q, uint64_t id, uint64_t received, uint64_t durable)
{
    struct quorum_slave *s = find(q, id);
    if (!s)
        return;
    if (received > s->received)
        s->received = received;
    if (durable > s->durable)
        s->durable = durable;
}

void quorum_slave_shipped(struct quorum *q, uint64_t id, uint64_t lsn)
{
    struct quorum_slave *s = find(q, id);
    if (s && lsn > s->shipped)
        s->shipped = lsn;
}

/* The k-th largest of v[0..n) (k >= 1), 0 when n < k. */
static uint64_t kth_largest(uint64_t *v, uint32_t n, uint32_t k)
{
    if (n < k)
        return 0;
    /* partial selection sort: n is tiny */
    for (uint32_t i = 0; i < k; i++) {
        uint32_t best = i;
        for (uint32_t j = i + 1; j < n; j++)
            if (v[j] > v[best])
                best = j;
        uint64_t t = v[i];
        v[i] = v[best];
        v[best] = t;
    }
    return v[k - 1];
}

/* The need-th largest of the master's position and the slaves' durable
 * ones. A slave's copy counts once its store wrote it (and fsynced it,
 * when the master asks its slaves to): one only received, in the slave's
 * memory, is gone if the slave's process is, and a cluster all of whose
 * processes die at once (a kill -9 of all, an OOM killer, a bug that
 * crashes every node) would lose what was receipted on such copies. */
static uint64_t kth(const struct quorum *q, uint64_t master)
{
    uint64_t v[QUORUM_MAX_SLAVES + 1];
    uint32_t n = 0;
    v[n++] = master;
    for (uint32_t i = 0; i < q->nslaves; i++)
        v[n++] = q->slaves[i].durable;
    return kth_largest(v, n, q->need);
}

uint32_t quorum_slaves_waited(const struct quorum *q)
{
    return q->modes & (SYNC_QUORUM_MEM | SYNC_QUORUM_DISK) ? q->need - 1 : quorum_slaves_report(q->modes) ? 1 : 0;
}

uint64_t quorum_shipped(const struct quorum *q)
{
    uint32_t k = quorum_slaves_waited(q);
    if (k == 0)
        return UINT64_MAX;
    uint64_t v[QUORUM_MAX_SLAVES];
    for (uint32_t i = 0; i < q->nslaves; i++)
        v[i] = q->slaves[i].shipped > q->slaves[i].received ? q->slaves[i].shipped : q->slaves[i].received;
    return kth_largest(v, q->nslaves, k);
}

static uint64_t max_slave(const struct quorum *q)
{
    uint64_t m = 0;
    for (uint32_t i = 0; i < q->nslaves; i++)
        if (q->slaves[i].durable > m)
            m = q->slaves[i].durable;
    return m;
}

uint64_t quorum_committed(struct quorum *q)
{
    uint64_t c = UINT64_MAX;
#define LIMIT(bit, value)                                                                                      \
    do {                                                                                                       \
        if (q->modes & (bit)) {                                                                                \
            uint64_t x_ = (value);                                                                             \
            if (x_ < c)                                                                                        \
                c = x_;                                                                                        \
        }                                                                                                      \
    } while (0)
    LIMIT(SYNC_LOCAL_MEM, q->local_mem);
    LIMIT(SYNC_LOCAL_DISK, q->local_disk);
    /* the mem and disk modes differ in what a slave's durable position
     * means (quorum_slaves_sync: written, or written and fsynced) */
    LIMIT(SYNC_REMOTE_MEM, max_slave(q));
    LIMIT(SYNC_REMOTE_DISK, max_slave(q));
    LIMIT(SYNC_QUORUM_MEM, kth(q, q->local_mem));
    LIMIT(SYNC_QUORUM_DISK, kth(q, q->local_disk));
#undef LIMIT
    if (c == UINT64_MAX)
        c = q->local_mem;
    if (c > q->committed)
        q->committed = c;
    return q->committed;
}

uint32_t quorum_in_sync(const struct quorum *q, uint64_t lsn)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < q->nslaves; i++)
        if (quorum_slave_counted(q->modes, q->slaves[i].received, q->slaves[i].durable) >= lsn)
            n++;
    return n;
}

uint64_t quorum_min_received(const struct quorum *q)
{
    uint64_t m = 0;
    for (uint32_t i = 0; i < q->nslaves; i++)
        if (i == 0 || q->slaves[i].received < m)
            m = q->slaves[i].received;
    return m;
}
