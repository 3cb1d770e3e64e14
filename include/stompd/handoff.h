/* A hand-off queue between threads (DESIGN §1): producers append nodes
 * under a mutex and wake the consumer at most once per batch; the
 * consumer takes everything queued at once. The consumer is either the
 * loop thread (woken through an ev_async) or a thread of its own (woken
 * through a condition variable, and only when it sleeps). Used for
 * ZooKeeper's events into the loop and for journal entries into the
 * store's writer. */
#ifndef STOMPD_HANDOFF_H
#define STOMPD_HANDOFF_H

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>

/* Embed as the first member of what is queued. */
struct handoff_node {
    struct handoff_node *next;
};

struct handoff {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct handoff_node *head, *tail;
    bool sleeping;      /* the consumer thread waits on cv */
    bool busy;          /* the consumer holds nodes it took (handoff_done clears) */
    bool closed;
    struct ev_loop *loop;
    ev_async *async;    /* the loop is the consumer */
};

void handoff_init(struct handoff *h);
/* The consumer is the loop: pushes wake it through w. */
void handoff_to_loop(struct handoff *h, struct ev_loop *loop, ev_async *w);
void handoff_destroy(struct handoff *h);

/* Append one node, or a chain first..last (already linked), and wake the
 * consumer. */
void handoff_push(struct handoff *h, struct handoff_node *n);
void handoff_push_chain(struct handoff *h, struct handoff_node *first, struct handoff_node *last);

/* Everything queued, oldest first (NULL when empty). */
struct handoff_node *handoff_take(struct handoff *h);
/* A consumer thread: wait until something is queued or the queue is
 * closed; returns what was queued (marking the consumer busy until
 * handoff_done), or NULL once closed and empty. */
struct handoff_node *handoff_wait(struct handoff *h);
/* The same, giving up after timeout seconds (*timed_out says so). */
struct handoff_node *handoff_wait_for(struct handoff *h, double timeout, bool *timed_out);
void handoff_done(struct handoff *h);
/* Nothing queued and nothing being worked on. */
bool handoff_idle(struct handoff *h);
/* No more pushes: a waiting consumer gets what is left, then NULL. */
void handoff_close(struct handoff *h);

#endif
