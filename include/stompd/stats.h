/* Latency and size histograms that one thread fills and another reads
 * (the store's writer records, the loop renders): power-of-two buckets,
 * relaxed atomic counters, no locks. Rendered as Prometheus histograms
 * and summarized (count, mean, approximate quantiles) for the console. */
#ifndef STOMPD_STATS_H
#define STOMPD_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "stompd/buf.h"

/* bucket i holds values below 2^i (units: microseconds for latencies,
 * items for sizes); the last bucket holds everything above */
#define HIST_BUCKETS 28

struct hist {
    _Atomic uint64_t b[HIST_BUCKETS];
    _Atomic uint64_t count, sum;
};

void hist_add(struct hist *h, uint64_t v);
/* Approximate q-quantile (0..1): the upper bound of the bucket it falls
 * in (0 when empty). */
uint64_t hist_quantile(const struct hist *h, double q);
uint64_t hist_count(const struct hist *h);
/* A Prometheus histogram family's header: "# HELP name help\n# TYPE name
 * histogram\n". */
void hist_prom_header(struct buf *out, const char *name, const char *help);
/* Its samples; labels is "" or 'k="v"' (already escaped); scale converts
 * the recorded unit to the metric's (1e-6 for microseconds to seconds,
 * 1 for counts). */
void hist_prom(struct buf *out, const char *name, const char *labels, const struct hist *h, double scale);

#endif
