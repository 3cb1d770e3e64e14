/* Log-linear histogram (see hist.h). Values below 2 * HIST_SUB have their
 * own bucket; above, a bucket spans 1/HIST_SUB of its power of two. */
#include "config.h"

#include "hist.h"

static unsigned bucket_of(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - 6; /* v >> shift lands in [64, 127] */
    return HIST_SUB * (shift + 1) + (unsigned)((v >> shift) - HIST_SUB);
}

/* Midpoint of a bucket's range, the value reported for it. */
static uint64_t value_of(unsigned idx)
{
    if (idx < 2 * HIST_SUB)
        return idx;
    unsigned shift = idx / HIST_SUB - 1;
    uint64_t lower = (uint64_t)(idx % HIST_SUB + HIST_SUB) << shift;
    return lower + ((uint64_t)1 << shift) / 2;
}

void hist_add(struct hist *h, uint64_t v)
{
    h->b[bucket_of(v)]++;
    h->count++;
    if (v > h->max)
        h->max = v;
}

void hist_merge(struct hist *into, const struct hist *from)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->b[i] += from->b[i];
    into->count += from->count;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = value_of(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}
