/* One thread for work off the loop (see offload.h). */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/log.h"
#include "stompd/offload.h"

static struct {
    bool running;
    pthread_t th;
    struct handoff in, out;     /* jobs to the thread, and back to the loop */
    ev_async back;
    struct ev_loop *loop;
    unsigned pending;
    void (*_Atomic idle)(void);
} O;

#define IDLE_AFTER 1.0 /* s without a job before the idle hook runs */

static void *thread_main(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    bool worked = false; /* since the idle hook last ran */
    for (;;) {
        bool timed_out = false;
        struct handoff_node *n = worked ? handoff_wait_for(&O.in, IDLE_AFTER, &timed_out) : handoff_wait(&O.in);
        if (!n && !timed_out)
            break; /* closed, and every job done */
        if (!n) {
            void (*idle)(void) = O.idle;
            if (idle)
                idle();
            worked = false;
            continue;
        }
        worked = true;
        while (n) {
            struct handoff_node *next = n->next; /* the push below relinks n */
            struct offload_job *j = (struct offload_job *)n;
            j->run(j);
            handoff_push(&O.out, &j->node);
            n = next;
        }
        handoff_done(&O.in);
    }
    return NULL;
}

static void deliver(void)
{
    struct handoff_node *n = handoff_take(&O.out);
    while (n) {
        struct handoff_node *next = n->next;
        struct offload_job *j = (struct offload_job *)n;
        O.pending--;
        j->done(j);
        n = next;
    }
}

static void back_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    deliver();
}

void offload_submit(struct ev_loop *loop, struct offload_job *j)
{
    if (!O.running) {
        handoff_init(&O.in);
        handoff_init(&O.out);
        O.loop = loop;
        ev_async_init(&O.back, back_cb);
        ev_async_start(loop, &O.back);
        handoff_to_loop(&O.out, loop, &O.back);
        int rc = pthread_create(&O.th, NULL, thread_main, NULL);
        if (rc) {
            log_err("cannot start a thread for work off the loop: %s", strerror(rc));
            abort();
        }
        O.running = true;
    }
    O.pending++;
    handoff_push(&O.in, &j->node);
}

void offload_stop(void)
{
    if (!O.running)
        return;
    handoff_close(&O.in);
    pthread_join(O.th, NULL);
    ev_async_stop(O.loop, &O.back);
    deliver();
    handoff_destroy(&O.in);
    handoff_destroy(&O.out);
    O.running = false;
}

void offload_set_idle(void (*fn)(void))
{
    O.idle = fn;
}

unsigned offload_pending(void)
{
    return O.pending;
}
