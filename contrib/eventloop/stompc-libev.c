/* libstompc in a libev loop: the client in non-blocking mode, one ev_io on
 * stompc_fd() (registered once: it stays the same across reconnects), one
 * ev_timer for stompc_timeout(), re-armed by an ev_prepare just before the
 * loop sleeps, and the application's own timer sending a numbered message
 * every INTERVAL ms. It receives its own messages back (client-individual
 * acks) and stops when COUNT were sent, receipted and received.
 *
 *   stompc-libev URL DEST COUNT INTERVAL_MS
 *
 * Output: "receipt seq=N", "received seq=N", "reconnected to URI", then
 * "sent=N receipted=N received=N duplicates=N"; exit 0 when all COUNT went
 * round. Built in the build tree as contrib/eventloop/stompc-libev. */
#include "config.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompc.h"

struct app {
    struct ev_loop *loop;
    struct stompc *c;
    ev_io io;         /* stompc_fd() readable */
    ev_timer lib;     /* stompc_timeout() */
    ev_prepare prep;  /* re-arms lib before the loop sleeps */
    ev_timer send;    /* the application's own work */
    const char *dest;
    long count, sent, receipted, received, duplicates;
    char *seen;       /* seen[seq]: received once */
    int status;
};

#define container_of(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

static void finish(struct app *a, int status)
{
    a->status = status;
    ev_break(a->loop, EVBREAK_ALL);
}

static void step(struct app *a)
{
    int rc = stompc_step(a->c);
    if (rc < 0) {
        fprintf(stderr, "stompc-libev: %s\n", stompc_error(a->c));
        finish(a, 1);
        return;
    }
    if (a->receipted == a->count && a->received == a->count)
        finish(a, 0);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    step(container_of(w, struct app, io));
}

static void on_lib_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    step(container_of(w, struct app, lib));
}

/* Whatever the callbacks and the application did since, the library's
 * next timer is asked for once, just before the loop sleeps. */
static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    struct app *a = container_of(w, struct app, prep);
    int t = stompc_timeout(a->c);
    ev_timer_stop(loop, &a->lib);
    if (t >= 0) {
        ev_timer_set(&a->lib, t / 1000.0, 0.0);
        ev_timer_start(loop, &a->lib);
    }
}

static void on_send_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct app *a = container_of(w, struct app, send);
    if (a->sent == a->count) {
        ev_timer_stop(loop, w);
        return;
    }
    char body[64], receipt[32];
    long seq = a->sent + 1;
    snprintf(body, sizeof body, "seq=%ld", seq);
    snprintf(receipt, sizeof receipt, "seq-%ld", seq);
    struct stompc_send_opts so = {.persistent = true, .receipt = receipt};
    int rc = stompc_send(a->c, a->dest, body, strlen(body), &so);
    if (rc == STOMPC_EAGAIN)
        return; /* too much unconfirmed: the next tick tries again */
    if (rc < 0) {
        fprintf(stderr, "stompc-libev: send: %s\n", stompc_error(a->c));
        finish(a, 1);
        return;
    }
    a->sent++;
}

static void on_message(struct stompc *c, struct stompc_msg *m, void *ud)
{
    struct app *a = ud;
    long seq;
    if (m->body_len > 4 && sscanf(m->body, "seq=%ld", &seq) == 1 && seq >= 1 && seq <= a->count) {
        if (a->seen[seq]) {
            a->duplicates++;
            printf("duplicate seq=%ld%s\n", seq, m->redelivered ? " (redelivered)" : "");
        } else {
            a->seen[seq] = 1;
            a->received++;
            printf("received seq=%ld\n", seq);
        }
    }
    if (stompc_ack(c, m, NULL, 0) < 0)
        printf("error: ack: %s\n", stompc_error(c));
    stompc_msg_free(m);
}

static void on_receipt(struct stompc *c, const char *id, void *ud)
{
    (void)c;
    struct app *a = ud;
    long seq;
    if (sscanf(id, "seq-%ld", &seq) == 1) {
        a->receipted++;
        printf("receipt seq=%ld\n", seq);
    }
}

static void on_reconnect(struct stompc *c, const char *broker, const struct stompc_stats *st, void *ud)
{
    (void)c;
    (void)st;
    (void)ud;
    printf("reconnected to %s\n", broker);
}

static void on_error(struct stompc *c, int status, const char *msg, const char *rid, void *ud)
{
    (void)c;
    (void)ud;
    printf("error: %s%s%s (%s)\n", msg, rid ? ", receipt " : "", rid ? rid : "", stompc_strerror(status));
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: stompc-libev URL DEST COUNT INTERVAL_MS\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct app a = {.dest = argv[2], .count = atol(argv[3])};
    double interval = atol(argv[4]) / 1000.0;
    if (a.count < 1 || !(a.seen = calloc((size_t)a.count + 1, 1)) || !(a.c = stompc_new())) {
        fprintf(stderr, "stompc-libev: bad COUNT, or out of memory\n");
        return 2;
    }
    struct stompc_callbacks cb = {.on_message = on_message, .on_receipt = on_receipt, .on_reconnect = on_reconnect,
                                  .on_error = on_error};
    int rc = stompc_set_callbacks(a.c, &cb, &a);
    if (rc == 0)
        rc = stompc_set_nonblocking(a.c, true);
    struct stompc_options o = {.heart_beat_tx = 1000, .heart_beat_rx = 1000};
    if (rc == 0)
        rc = stompc_connect(a.c, argv[1], &o); /* returns at once: connecting */
    struct stompc_sub_opts so = {.id = "s", .ack = STOMPC_ACK_CLIENT_INDIVIDUAL};
    if (rc == 0)
        rc = stompc_subscribe(a.c, a.dest, &so); /* queued until connected */
    if (rc < 0) {
        fprintf(stderr, "stompc-libev: %s\n", stompc_error(a.c));
        stompc_free(a.c);
        free(a.seen);
        return 1;
    }
    a.loop = EV_DEFAULT;
    ev_io_init(&a.io, on_io, stompc_fd(a.c), EV_READ);
    ev_io_start(a.loop, &a.io);
    ev_init(&a.lib, on_lib_timer);
    ev_prepare_init(&a.prep, on_prepare);
    ev_prepare_start(a.loop, &a.prep);
    ev_timer_init(&a.send, on_send_timer, interval, interval > 0 ? interval : 0.001);
    ev_timer_start(a.loop, &a.send);
    a.status = 1;
    ev_run(a.loop, 0);

    struct stompc_stats st;
    stompc_get_stats(a.c, &st);
    /* blocking, bounded: the loop is done */
    if (stompc_disconnect(a.c, 5000) != 0)
        fprintf(stderr, "stompc-libev: disconnect: %s\n", stompc_error(a.c));
    printf("sent=%ld receipted=%ld received=%ld duplicates=%ld reconnects=%llu\n", a.sent, a.receipted, a.received,
           a.duplicates, (unsigned long long)st.reconnects);
    stompc_free(a.c);
    free(a.seen);
    ev_loop_destroy(a.loop);
    return a.status;
}
