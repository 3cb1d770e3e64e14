/* Queue browsing over STOMP (see browse.h). A browse keeps its place as
 * the key of the last message it was sent (queue_browse's cursor), so
 * the queue may change under it: what is taken meanwhile is not sent,
 * what arrives behind its place is. It finds its queue again by name for
 * each page, as the queue may be deleted meanwhile (it then ends). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "stompd/acl.h"
#include "stompd/browse.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/frame.h"
#include "stompd/log.h"
#include "stompd/msg.h"
#include "stompd/queue.h"
#include "stompd/selector.h"
#include "stompd/sub.h"

#define PAGE 100                /* messages read per page */
#define PAGE_BYTES (256 * 1024) /* ... unless they take more than this */
#define PAGES_PER_TURN 8        /* then the loop serves others first */

struct browse {
    struct conn *c;
    char *id;
    char *queue;
    struct selector *sel;
    struct qkey after;          /* the last message sent (or passed over) */
    bool started;               /* after is set */
    bool runnable;              /* in the run list */
    bool ended;                 /* browser:end sent: kept until UNSUBSCRIBE, as ActiveMQ does */
    struct browse *next;        /* c's others */
    TAILQ_ENTRY(browse) run_link;
};

static TAILQ_HEAD(browse_list, browse) runq = TAILQ_HEAD_INITIALIZER(runq);

static void run_later(struct browse *b)
{
    if (!b->runnable) {
        b->runnable = true;
        TAILQ_INSERT_TAIL(&runq, b, run_link);
    }
}

static void unlink_browse(struct browse *b)
{
    struct browse **p = &b->c->browses;
    while (*p != b)
        p = &(*p)->next;
    *p = b->next;
    b->c->nbrowses--;
    if (b->runnable)
        TAILQ_REMOVE(&runq, b, run_link);
    selector_free(b->sel);
    free(b->id);
    free(b->queue);
    free(b);
}

static struct browse *find(const struct conn *c, const char *id)
{
    for (struct browse *b = c->browses; b; b = b->next)
        if (!strcmp(b->id, id))
            return b;
    return NULL;
}

void browse_start(struct conn *c, const char *id, const char *queue, struct selector *sel)
{
    struct browse *b = calloc(1, sizeof *b);
    if (!b || !(b->id = strdup(id)) || !(b->queue = strdup(queue)))
        abort();
    b->c = c;
    b->sel = sel;
    b->next = c->browses;
    c->browses = b;
    c->nbrowses++;
    clog_debug(c, "browsing %s for subscription '%s'", queue, id);
    run_later(b);
}

bool browse_has(const struct conn *c, const char *id)
{
    return find(c, id) != NULL;
}

const char *browse_unreadable(const struct conn *c, const char **queue)
{
    for (const struct browse *b = c->browses; b; b = b->next)
        if (!b->ended && !acl_allows_dest(c->who, b->queue, ACL_READ)) {
            *queue = b->queue;
            return b->id;
        }
    return NULL;
}

bool browse_stop(struct conn *c, const char *id)
{
    struct browse *b = find(c, id);
    if (!b)
        return false;
    unlink_browse(b);
    return true;
}

void browse_wake(struct conn *c)
{
    for (struct browse *b = c->browses; b; b = b->next)
        if (!b->ended)
            run_later(b);
}

void browse_conn_gone(struct conn *c)
{
    while (c->browses)
        unlink_browse(c->browses);
}

static bool key_after(struct qkey a, struct qkey b)
{
    return a.rprio != b.rprio ? a.rprio > b.rprio : a.seq > b.seq;
}

/* The end: a MESSAGE with browser:end, as ActiveMQ sends (d: the queue,
 * if it is there). */
static void write_end(struct browse *b, const struct dest *d)
{
    struct buf *out = &b->c->st.out;
    enum stomp_version v = b->c->version;
    frame_write_command(out, "MESSAGE");
    frame_write_header_str(out, v, true, "subscription", b->id);
    frame_write_header_str(out, v, true, "message-id", "0");
    frame_write_header_str(out, v, true, "destination", d && d->local_name ? d->local_name : b->queue);
    frame_write_header_str(out, v, true, "browser", "end");
    frame_write_header_str(out, v, true, "content-length", "0");
    frame_write_body(out, "", 0);
}

/* Send b pages while its connection's output has room (its drain wakes it
 * again) and this turn's share lasts (the run list then keeps it). True
 * when it has ended. */
static bool pump(struct browse *b)
{
    struct conn *c = b->c;
    for (int page = 0; page < PAGES_PER_TURN; page++) {
        if (c->state != CONN_OPEN || conn_output_full(c))
            return false;
        struct dest *d = dest_find(b->queue);
        bool more = false;
        if (d && dest_is_queue(d)) {
            struct queue_browsed v[PAGE];
            struct qkey next = b->after;
            size_t n = queue_browse(&d->q, b->started ? &b->after : NULL, PAGE, PAGE_BYTES, v, &next, &more);
            for (size_t i = 0; i < n; i++) {
                /* each message judged with a whole selector budget of its
                 * own: a verdict is always reached (one the budget cannot
                 * reach is no, as for a consumer) */
                struct sub_pass pass;
                sub_pass_begin(&pass);
                bool yes = sub_select(b->sel, v[i].msg) == SUB_YES;
                sub_pass_end(&pass);
                if (yes)
                    msg_write_frame(v[i].msg, &c->st.out, c->version, d->local_name, b->id, NULL,
                                    v[i].redeliveries > 0, v[i].redeliveries);
                msg_unref(v[i].msg);
            }
            if (n == 0 && more && b->started && !key_after(next, b->after)) {
                /* no step forward (the store could not be read): end here
                 * rather than spin */
                clog_warn(c, "browsing %s for subscription '%s' stopped: the queue's store could not be read",
                          b->queue, b->id);
                more = false;
            } else if (n || more) {
                b->after = next;
                b->started = true;
            }
        }
        conn_want_flush(c);
        if (!more) {
            write_end(b, d);
            clog_debug(c, "browsed %s for subscription '%s'", b->queue, b->id);
            b->ended = true;
            return true;
        }
    }
    run_later(b);
    return false;
}

bool browse_run(void)
{
    /* each browse runnable now gets one turn; those it leaves runnable
     * wait for the next */
    struct browse *last = TAILQ_LAST(&runq, browse_list), *b;
    bool work = false;
    while (last && (b = TAILQ_FIRST(&runq))) {
        bool was_last = b == last;
        TAILQ_REMOVE(&runq, b, run_link);
        b->runnable = false;
        pump(b);
        work = true;
        if (was_last)
            break;
    }
    return work;
}

bool browse_waiting(void)
{
    return !TAILQ_EMPTY(&runq);
}
