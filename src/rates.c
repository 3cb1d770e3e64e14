/* Message rates (see rates.h): one timer takes a sample of the node's and
 * every destination's message counters per interval and keeps the
 * differences in rings. A destination's ring exists only while it had
 * traffic within the window, so thousands of idle destinations cost a
 * small record each; a destination that goes away loses its record at
 * the next sample. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "stompd/dest.h"
#include "stompd/rates.h"
#include "stompd/server.h"

struct rdest {
    char *name;
    uint64_t last_in, last_out;   /* the counters at the last sample */
    uint64_t active_tick;         /* the last sample with traffic */
    uint64_t gen;                 /* the last sample that saw the destination */
    uint32_t *ring;               /* 2 counts per slot (in, out); NULL while idle */
    UT_hash_handle hh;
};

static struct {
    struct ev_loop *loop;
    ev_timer timer;
    bool running;
    int64_t interval_ms;
    uint32_t nslots;
    uint64_t ticks;               /* samples taken */
    int64_t *end_ms;              /* per slot: when its interval ended */
    int64_t *len_ms;              /* per slot: how long it was */
    int64_t last_ms;              /* the last sample (or the start) */
    uint32_t *node;               /* the node's ring */
    uint64_t node_in, node_out;
    struct rdest *dests;
    size_t nrings;
} R;

static uint32_t clamp32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* A counter that went down belongs to a destination deleted and created
 * again since the last sample: all it has counted is new. */
static uint64_t delta(uint64_t now, uint64_t last)
{
    return now >= last ? now - last : now;
}

static void sample_dest(struct dest *d, void *arg)
{
    uint32_t slot = *(uint32_t *)arg;
    struct rdest *r;
    HASH_FIND_STR(R.dests, d->name, r);
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r || !(r->name = strdup(d->name)))
            abort();
        HASH_ADD_KEYPTR(hh, R.dests, r->name, strlen(r->name), r);
    }
    uint64_t din = delta(d->st.enqueued, r->last_in), dout = delta(d->st.dispatched, r->last_out);
    r->last_in = d->st.enqueued;
    r->last_out = d->st.dispatched;
    r->gen = R.ticks;
    if (din || dout) {
        r->active_tick = R.ticks;
        if (!r->ring) {
            r->ring = calloc(2 * (size_t)R.nslots, sizeof *r->ring);
            if (!r->ring)
                abort();
            R.nrings++;
        }
    }
    if (!r->ring)
        return;
    if (R.ticks - r->active_tick >= R.nslots) {
        /* a whole window without traffic: nothing to draw */
        free(r->ring);
        r->ring = NULL;
        R.nrings--;
        return;
    }
    r->ring[2 * slot] = clamp32(din);
    r->ring[2 * slot + 1] = clamp32(dout);
}

static void rdest_free(struct rdest *r)
{
    HASH_DEL(R.dests, r);
    if (r->ring)
        R.nrings--;
    free(r->ring);
    free(r->name);
    free(r);
}

static void sample(void)
{
    int64_t now = server_now_ms();
    R.ticks++;
    uint32_t slot = (uint32_t)(R.ticks % R.nslots);
    R.end_ms[slot] = now;
    R.len_ms[slot] = now - R.last_ms > 0 ? now - R.last_ms : 1;
    R.last_ms = now;
    R.node[2 * slot] = clamp32(delta(srv.st.messages_in, R.node_in));
    R.node[2 * slot + 1] = clamp32(delta(srv.st.messages_out, R.node_out));
    R.node_in = srv.st.messages_in;
    R.node_out = srv.st.messages_out;
    dest_foreach(sample_dest, &slot);
    struct rdest *r, *tmp;
    HASH_ITER(hh, R.dests, r, tmp)
        if (r->gen != R.ticks)
            rdest_free(r); /* the destination is gone */
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    sample();
}

void rates_start(struct ev_loop *loop, int64_t interval_ms)
{
    if (R.running)
        return;
    R.loop = loop;
    R.interval_ms = interval_ms > 0 ? interval_ms : 5000;
    R.nslots = (uint32_t)((RATES_WINDOW_MS + R.interval_ms - 1) / R.interval_ms);
    R.end_ms = calloc(R.nslots, sizeof *R.end_ms);
    R.len_ms = calloc(R.nslots, sizeof *R.len_ms);
    R.node = calloc(2 * (size_t)R.nslots, sizeof *R.node);
    if (!R.end_ms || !R.len_ms || !R.node)
        abort();
    R.ticks = 0;
    R.last_ms = server_now_ms();
    R.node_in = srv.st.messages_in;
    R.node_out = srv.st.messages_out;
    double s = (double)R.interval_ms / 1000.0;
    ev_timer_init(&R.timer, timer_cb, s, s);
    ev_timer_start(loop, &R.timer);
    R.running = true;
}

void rates_stop(void)
{
    if (!R.running)
        return;
    ev_timer_stop(R.loop, &R.timer);
    struct rdest *r, *tmp;
    HASH_ITER(hh, R.dests, r, tmp)
        rdest_free(r);
    free(R.end_ms);
    free(R.len_ms);
    free(R.node);
    memset(&R, 0, sizeof R);
}

double rates_interval(void)
{
    return (double)(R.interval_ms ? R.interval_ms : 5000) / 1000.0;
}

size_t rates_slots(void)
{
    return R.nslots;
}

static const uint32_t *ring_of(const char *dest)
{
    if (!R.running)
        return NULL;
    if (!dest)
        return R.node;
    struct rdest *r;
    HASH_FIND_STR(R.dests, dest, r);
    return r ? r->ring : NULL;
}

size_t rates_series(const char *dest, int64_t *end_ms, int64_t *len_ms, uint32_t *in, uint32_t *out, size_t max)
{
    const uint32_t *ring = ring_of(dest);
    if (!ring)
        return 0;
    size_t n = R.ticks < R.nslots ? (size_t)R.ticks : R.nslots;
    if (n > max)
        n = max;
    for (size_t i = 0; i < n; i++) {
        uint32_t slot = (uint32_t)((R.ticks - (n - 1 - i)) % R.nslots);
        end_ms[i] = R.end_ms[slot];
        len_ms[i] = R.len_ms[slot];
        in[i] = ring[2 * slot];
        out[i] = ring[2 * slot + 1];
    }
    return n;
}

void rates_now(const char *dest, double *in_per_s, double *out_per_s)
{
    const uint32_t *ring = ring_of(dest);
    *in_per_s = *out_per_s = 0;
    if (!ring || !R.ticks)
        return;
    uint32_t slot = (uint32_t)(R.ticks % R.nslots);
    double s = (double)R.len_ms[slot] / 1000.0;
    *in_per_s = ring[2 * slot] / s;
    *out_per_s = ring[2 * slot + 1] / s;
}

size_t rates_memory(size_t *rings)
{
    size_t bytes = R.nslots * (2 * sizeof(int64_t) + 2 * sizeof(uint32_t));
    struct rdest *r, *tmp;
    HASH_ITER(hh, R.dests, r, tmp) {
        bytes += sizeof *r + strlen(r->name) + 1;
        if (r->ring)
            bytes += 2 * (size_t)R.nslots * sizeof *r->ring;
    }
    if (rings)
        *rings = R.nrings;
    return bytes;
}
