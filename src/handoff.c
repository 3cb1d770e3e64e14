/* Hand-off queues between threads (see handoff.h). */
#include "config.h"

#include <time.h>

#include "stompd/handoff.h"

void handoff_init(struct handoff *h)
{
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->head = h->tail = NULL;
    h->sleeping = h->busy = h->closed = false;
    h->loop = NULL;
    h->async = NULL;
}

void handoff_to_loop(struct handoff *h, struct ev_loop *loop, ev_async *w)
{
    h->loop = loop;
    h->async = w;
}

void handoff_destroy(struct handoff *h)
{
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
}

void handoff_push_chain(struct handoff *h, struct handoff_node *first, struct handoff_node *last)
{
    last->next = NULL;
    pthread_mutex_lock(&h->mu);
    if (h->tail)
        h->tail->next = first;
    else
        h->head = first;
    h->tail = last;
    bool wake = h->sleeping;
    h->sleeping = false;
    pthread_mutex_unlock(&h->mu);
    if (wake)
        pthread_cond_signal(&h->cv);
    if (h->async)
        ev_async_send(h->loop, h->async);
}

void handoff_push(struct handoff *h, struct handoff_node *n)
{
    handoff_push_chain(h, n, n);
}

struct handoff_node *handoff_take(struct handoff *h)
{
    pthread_mutex_lock(&h->mu);
    struct handoff_node *list = h->head;
    h->head = h->tail = NULL;
    pthread_mutex_unlock(&h->mu);
    return list;
}

struct handoff_node *handoff_wait(struct handoff *h)
{
    pthread_mutex_lock(&h->mu);
    while (!h->head && !h->closed) {
        h->sleeping = true;
        pthread_cond_wait(&h->cv, &h->mu);
    }
    h->sleeping = false;
    struct handoff_node *list = h->head;
    h->head = h->tail = NULL;
    h->busy = list != NULL;
    pthread_mutex_unlock(&h->mu);
    return list;
}

struct handoff_node *handoff_wait_for(struct handoff *h, double timeout, bool *timed_out)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long ns = until.tv_nsec + (long)((timeout - (double)(long)timeout) * 1e9);
    until.tv_sec += (time_t)timeout + ns / 1000000000L;
    until.tv_nsec = ns % 1000000000L;
    *timed_out = false;
    pthread_mutex_lock(&h->mu);
    while (!h->head && !h->closed) {
        h->sleeping = true;
        if (pthread_cond_timedwait(&h->cv, &h->mu, &until) != 0) {
            *timed_out = !h->head;
            break;
        }
    }
    h->sleeping = false;
    struct handoff_node *list = h->head;
    h->head = h->tail = NULL;
    h->busy = list != NULL;
    pthread_mutex_unlock(&h->mu);
    return list;
}

void handoff_done(struct handoff *h)
{
    pthread_mutex_lock(&h->mu);
    h->busy = false;
    pthread_mutex_unlock(&h->mu);
}

bool handoff_idle(struct handoff *h)
{
    pthread_mutex_lock(&h->mu);
    bool idle = !h->head && !h->busy;
    pthread_mutex_unlock(&h->mu);
    return idle;
}

void handoff_close(struct handoff *h)
{
    pthread_mutex_lock(&h->mu);
    h->closed = true;
    pthread_mutex_unlock(&h->mu);
    pthread_cond_signal(&h->cv);
}
