/* Latency histograms for stompd-bench: log-linear buckets (every power of
 * two split in 64), so any value from 1 ns to hours is kept within 1.6%
 * in a fixed 30 KiB, one per thread, merged at the end without locks. */
#ifndef STOMPD_BENCH_HIST_H
#define STOMPD_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB 64
#define HIST_BUCKETS (HIST_SUB * 59)

struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t b[HIST_BUCKETS];
};

void hist_add(struct hist *h, uint64_t v);
void hist_merge(struct hist *into, const struct hist *from);
/* The value at quantile q (0..1] (a bucket's midpoint); 0 when empty. */
uint64_t hist_quantile(const struct hist *h, double q);

#endif
