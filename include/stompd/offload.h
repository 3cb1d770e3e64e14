/* Work off the loop (DESIGN §1): one thread runs the jobs the loop hands
 * it, in order, and hands each back to the loop when it is done. The
 * master's replication uses it to read what a slave catching up needs
 * (snapshot pairs, journal entries from the log), so its loop never waits
 * for the disk while clients wait for it. */
#ifndef STOMPD_OFFLOAD_H
#define STOMPD_OFFLOAD_H

#include <ev.h>

#include "stompd/handoff.h"

struct offload_job {
    struct handoff_node node;               /* first */
    void (*run)(struct offload_job *j);     /* on the thread: touches only what the job owns */
    void (*done)(struct offload_job *j);    /* then on the loop (it may free the job) */
};

/* Hand j to the thread (started at the first job). */
void offload_submit(struct ev_loop *loop, struct offload_job *j);
/* Every job handed over runs and gets its done call (here, on the loop),
 * then the thread ends: nothing runs off the loop after this returns. */
void offload_stop(void);
/* fn runs on the thread once it has had no job for a second after some
 * work (to let go of what it holds between bursts of work). */
void offload_set_idle(void (*fn)(void));
/* Jobs handed over and not yet back. */
unsigned offload_pending(void);

#endif
