/* Message rates for the console (DESIGN §9): messages in and out of the
 * node and of each destination, per interval (http.rate_interval), over
 * the last 15 minutes. One timer samples the counters the broker keeps
 * anyway (no cost on the message path); each series is a ring of counts.
 * A destination costs a small record, plus a ring of 8 bytes per interval
 * (1,440 bytes at 5 s) while it had traffic in the last 15 minutes. */
#ifndef STOMPD_RATES_H
#define STOMPD_RATES_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#define RATES_WINDOW_MS (15 * 60 * 1000)

/* Start sampling every interval_ms (the ring holds 15 minutes of them). */
void rates_start(struct ev_loop *loop, int64_t interval_ms);
void rates_stop(void);

/* The interval, in seconds. */
double rates_interval(void);
/* The most recent samples (at most max), oldest first: when each interval
 * ended (ms since the epoch), its length (ms), and the messages in and out
 * during it. dest NULL: the node. Returns how many (0 for a destination
 * without traffic in the window). */
size_t rates_series(const char *dest, int64_t *end_ms, int64_t *len_ms, uint32_t *in, uint32_t *out, size_t max);
/* Messages per second in and out during the last interval. */
void rates_now(const char *dest, double *in_per_s, double *out_per_s);
/* Samples a series can hold (15 minutes of intervals). */
size_t rates_slots(void);
/* Bytes the rates take, and how many destinations have a ring now. */
size_t rates_memory(size_t *rings);

#endif
