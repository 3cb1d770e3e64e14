/* /metrics in the Prometheus text format (version 0.0.4): the node's
 * families, then one family per destination statistic. A family is one
 * line in metrics.c's table (name, type, help, collect function); the
 * collect function writes its samples with metric_begin / metric_label /
 * metric_u64 or metric_f64, reading state through each module's query
 * functions. Every node answers with the same families (a slave's are
 * mostly zero), so scraping all nodes works. */
#ifndef STOMPD_METRICS_H
#define STOMPD_METRICS_H

#include <stdint.h>

#include "stompd/buf.h"

/* The page being written. */
struct metrics_out;

/* One sample of the family being collected: its name (plus suffix, e.g.
 * "_bucket" for a histogram, or NULL), labels (values escaped here), then
 * the value, which ends the line. */
void metric_begin(struct metrics_out *m, const char *suffix);
void metric_label(struct metrics_out *m, const char *name, const char *value);
void metric_u64(struct metrics_out *m, uint64_t v);
void metric_i64(struct metrics_out *m, int64_t v);
void metric_f64(struct metrics_out *m, double v);
/* The page itself, for a collect function that prints whole samples (a
 * histogram's buckets, _sum and _count) with a helper of its own; the
 * family's HELP and TYPE lines are written already. */
struct buf *metric_buf(struct metrics_out *m);

/* The whole page. */
void metrics_render(struct buf *out);

#endif
