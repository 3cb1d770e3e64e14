/* Power-of-two histograms (see stats.h). */
#include "config.h"

#include <stdio.h>

#include "stompd/stats.h"

void hist_add(struct hist *h, uint64_t v)
{
    unsigned i = 0;
    while (i < HIST_BUCKETS - 1 && v >= ((uint64_t)1 << i))
        i++;
    atomic_fetch_add_explicit(&h->b[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

uint64_t hist_count(const struct hist *h)
{
    return atomic_load_explicit(&h->count, memory_order_relaxed);
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    uint64_t n[HIST_BUCKETS], total = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        total += n[i] = atomic_load_explicit(&h->b[i], memory_order_relaxed);
    if (!total)
        return 0;
    uint64_t want = (uint64_t)(q * (double)total), seen = 0;
    if (want >= total)
        want = total - 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += n[i];
        if (seen > want)
            return (uint64_t)1 << i;
    }
    return (uint64_t)1 << (HIST_BUCKETS - 1);
}

void hist_prom_header(struct buf *out, const char *name, const char *help)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
}

void hist_prom(struct buf *out, const char *name, const char *labels, const struct hist *h, double scale)
{
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (unsigned i = 0; i < HIST_BUCKETS - 1; i++) {
        cum += atomic_load_explicit(&h->b[i], memory_order_relaxed);
        buf_printf(out, "%s_bucket{%s%sle=\"%.9g\"} %llu\n", name, labels, sep, (double)((uint64_t)1 << i) * scale,
                   (unsigned long long)cum);
    }
    cum += atomic_load_explicit(&h->b[HIST_BUCKETS - 1], memory_order_relaxed);
    buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    buf_printf(out, "%s_sum%s%s%s %.9g\n", name, open, labels, close,
               (double)atomic_load_explicit(&h->sum, memory_order_relaxed) * scale);
    buf_printf(out, "%s_count%s%s%s %llu\n", name, open, labels, close, (unsigned long long)cum);
}
