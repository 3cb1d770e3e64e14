/* Unit tests for dispatch order: priorities (higher first, FIFO within a
 * priority), returned messages keeping their place, round robin,
 * prefetch, exclusive consumers, message groups and selectors. Consumers
 * are subscriptions on connection objects without sockets: what a
 * consumer received is read back from its output buffer. */
#include "config.h"

#include <ev.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/log.h"
#include "stompd/msg.h"
#include "stompd/queue.h"
#include "stompd/selector.h"
#include "stompd/server.h"
#include "stompd/sub.h"

static uint64_t seq;
/* Fake connections still open: a failed assertion skips a test's own
 * cleanup, and server_shutdown() must not flush these socketless ones. */
static struct conn *live[8];
static int nlive;
static void free_conn(struct conn *c);

static int setup(void **state)
{
    char err[256];
    config_init_defaults();
    log_set_level(LOG_ERR);
    assert_int_equal(config_set_key("store.type", "memory", err, sizeof err), 0);
    assert_int_equal(server_init(ev_default_loop(0)), 0);
    seq = 0;
    return 0;
}

static struct ev_loop *ticker, *real_loop;
static void stop_ticking(void);

static int teardown(void **state)
{
    if (ticker)
        stop_ticking();
    while (nlive > 0)
        free_conn(live[nlive - 1]);
    server_shutdown();
    config_free();
    return 0;
}

static void fake_release(struct stream *s)
{
}

/* A stream without a socket: never flushed, closed only by free_conn. */
static const struct stream_ops fake_ops = {.kind = "test", .release = fake_release};

static struct conn *fake_conn(void)
{
    struct conn *c = calloc(1, sizeof *c);
    c->state = CONN_OPEN;
    c->version = STOMP_12;
    c->st.fd = -1;
    c->st.state = STREAM_OPEN;
    c->st.ops = &fake_ops;
    c->st.out_limit = (size_t)config.output_limit;
    TAILQ_INIT(&c->ops);
    TAILQ_INIT(&c->temps);
    assert_true(nlive < (int)(sizeof live / sizeof live[0]));
    live[nlive++] = c;
    return c;
}

static void free_conn(struct conn *c)
{
    struct sub *s, *tmp;
    HASH_ITER(hh, c->subs, s, tmp)
        sub_destroy(s);
    /* off the flush list it may be on, without a socket to flush to */
    stream_close(&c->st, "test over");
    stream_free_dead();
    for (int i = 0; i < nlive; i++) {
        if (live[i] == c) {
            live[i] = live[--nlive];
            break;
        }
    }
    free(c);
}

static struct sub *consumer(struct conn *c, struct dest *d, enum ack_mode ack, uint32_t prefetch,
                            const char *selector)
{
    struct sub *s = calloc(1, sizeof *s);
    char id[16];
    snprintf(id, sizeof id, "s%u", c->nsubs);
    s->id = strdup(id);
    s->conn = c;
    s->dest = d;
    s->ack = ack;
    s->prefetch = prefetch;
    s->q = &d->q;
    TAILQ_INIT(&s->unacked);
    if (selector) {
        char err[128];
        assert_int_equal(selector_compile(selector, &s->sel, err, sizeof err), 0);
    }
    HASH_ADD_KEYPTR(hh, c->subs, s->id, strlen(s->id), s);
    c->nsubs++;
    queue_add_consumer(&d->q, s);
    return s;
}

static void push(struct dest *d, const char *body, int prio, const char *hname, const char *hval)
{
    struct stomp_header h = {hname, hval, hname ? (uint32_t)strlen(hname) : 0, hval ? (uint32_t)strlen(hval) : 0};
    struct msg *m = msg_new(d->name, body, ++seq, 0, false, (uint8_t)prio, 0, &h, hname ? 1 : 0, body,
                            strlen(body));
    queue_push(&d->q, m);
    msg_unref(m);
}

/* Bodies received by a connection so far, space separated; consumes them. */
static char *received(struct conn *c)
{
    static char out[4096];
    out[0] = '\0';
    struct frame_limits lim = {1 << 20, 100, 4096, 64};
    struct frame_parser p;
    frame_parser_init(&p, &lim);
    p.version = STOMP_12;
    size_t off = 0;
    for (;;) {
        struct frame f;
        size_t used;
        const char *err;
        enum frame_status st = frame_parse(&p, buf_head(&c->st.out) + off, buf_used(&c->st.out) - off, &used, &f, &err);
        off += used;
        if (st != FRAME_OK)
            break;
        if (out[0])
            strcat(out, " ");
        strncat(out, f.body, f.body_len);
        frame_free(&f);
    }
    buf_free(&c->st.out);
    return out;
}

static struct dest *queue_named(const char *n)
{
    const char *err;
    struct dest *d = dest_get(n, NULL, &err);
    assert_non_null(d);
    return d;
}

static void test_priority_then_fifo(void **state)
{
    struct dest *d = queue_named("/queue/p");
    int prios[] = {4, 9, 4, 1, 9, 0, 5, 4};
    const char *names[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    for (int i = 0; i < 8; i++)
        push(d, names[i], prios[i], NULL, NULL);
    struct conn *c = fake_conn();
    consumer(c, d, ACK_AUTO, 1000, NULL);
    queue_dispatch_dirty();
    assert_string_equal(received(c), "b e g a c h d f");
    free_conn(c);
}

static void test_returned_keep_their_place(void **state)
{
    struct dest *d = queue_named("/queue/r");
    struct conn *c = fake_conn();
    struct sub *s = consumer(c, d, ACK_CLIENT_INDIVIDUAL, 2, NULL);
    for (int i = 0; i < 5; i++) {
        char b[4];
        snprintf(b, sizeof b, "m%d", i);
        push(d, b, 4, NULL, NULL);
    }
    queue_dispatch_dirty();
    assert_string_equal(received(c), "m0 m1");
    /* m1 acked, m0 goes back: it is first again, ahead of m2 */
    sub_ack(s, TAILQ_LAST(&s->unacked, qentry_list));
    sub_nack(s, TAILQ_FIRST(&s->unacked));
    queue_dispatch_dirty();
    assert_string_equal(received(c), "m0 m2");
    free_conn(c);
}

static void test_round_robin(void **state)
{
    struct dest *d = queue_named("/queue/rr");
    struct conn *a = fake_conn(), *b = fake_conn();
    consumer(a, d, ACK_AUTO, 1, NULL);
    consumer(b, d, ACK_AUTO, 1, NULL);
    for (int i = 0; i < 6; i++) {
        char x[4];
        snprintf(x, sizeof x, "%d", i);
        push(d, x, 4, NULL, NULL);
    }
    queue_dispatch_dirty();
    assert_string_equal(received(a), "0 2 4");
    assert_string_equal(received(b), "1 3 5");
    free_conn(a);
    free_conn(b);
}

static void test_prefetch_limits_inflight(void **state)
{
    struct dest *d = queue_named("/queue/pf");
    struct conn *a = fake_conn(), *b = fake_conn();
    consumer(a, d, ACK_CLIENT, 1, NULL);
    consumer(b, d, ACK_CLIENT, 3, NULL);
    for (int i = 0; i < 6; i++) {
        char x[4];
        snprintf(x, sizeof x, "%d", i);
        push(d, x, 4, NULL, NULL);
    }
    queue_dispatch_dirty();
    assert_string_equal(received(a), "0");
    assert_string_equal(received(b), "1 2 3");
    assert_int_equal(d->q.npending, 2);
    free_conn(a);
    free_conn(b);
    /* their unacked messages came back, in order */
    assert_int_equal(d->q.npending, 6);
}

static void test_exclusive(void **state)
{
    struct dest *d = queue_named("/queue/ex");
    struct conn *a = fake_conn(), *b = fake_conn();
    consumer(a, d, ACK_AUTO, 1000, NULL);
    struct sub *x = consumer(b, d, ACK_AUTO, 1000, NULL);
    /* SUBSCRIBE marks it before it joins the queue, which counts it */
    queue_remove_consumer(&d->q, x);
    x->exclusive = true;
    queue_add_consumer(&d->q, x);
    assert_int_equal(d->q.nexclusive, 1);
    push(d, "1", 4, NULL, NULL);
    push(d, "2", 4, NULL, NULL);
    queue_dispatch_dirty();
    assert_string_equal(received(a), "");
    assert_string_equal(received(b), "1 2");
    free_conn(a);
    free_conn(b);
}

static void push_group(struct dest *d, const char *body)
{
    char g[2] = {body[0], '\0'}; /* the body's first letter names its group */
    push(d, body, 4, "JMSXGroupID", g);
}

static void test_groups(void **state)
{
    struct dest *d = queue_named("/queue/g");
    struct conn *a = fake_conn(), *b = fake_conn(), *c = fake_conn();
    consumer(a, d, ACK_AUTO, 1000, NULL);
    consumer(b, d, ACK_AUTO, 1000, NULL);
    /* runs of one group: round robin alone would split every run */
    const char *first[] = {"x1", "x2", "x3", "y1", "y2", "x4", "y3", "x5"};
    for (size_t i = 0; i < sizeof first / sizeof first[0]; i++)
        push_group(d, first[i]);
    queue_dispatch_dirty();
    assert_string_equal(received(a), "x1 x2 x3 x4 x5");
    assert_string_equal(received(b), "y1 y2 y3");
    /* a newcomer takes no part of a group already owned */
    consumer(c, d, ACK_AUTO, 1000, NULL);
    push_group(d, "x6");
    push_group(d, "y4");
    push_group(d, "x7");
    push_group(d, "y5");
    queue_dispatch_dirty();
    assert_string_equal(received(a), "x6 x7");
    assert_string_equal(received(b), "y4 y5");
    assert_string_equal(received(c), "");
    /* the owner leaves: x moves to one of the others, all of it, and
     * stays there */
    free_conn(a);
    push_group(d, "x8");
    push_group(d, "x9");
    push_group(d, "xa");
    push_group(d, "xb");
    queue_dispatch_dirty();
    char gb[64], gc[64];
    snprintf(gb, sizeof gb, "%s", received(b));
    snprintf(gc, sizeof gc, "%s", received(c));
    assert_true((!strcmp(gb, "x8 x9 xa xb") && !strcmp(gc, "")) ||
                (!strcmp(gc, "x8 x9 xa xb") && !strcmp(gb, "")));
    free_conn(b);
    free_conn(c);
}

static void test_selectors(void **state)
{
    struct dest *d = queue_named("/queue/s");
    struct conn *c = fake_conn();
    /* a selector consumer only takes what matches; the rest waits */
    consumer(c, d, ACK_AUTO, 1000, "kind = 'k'");
    push(d, "plain", 4, "kind", "other");
    push(d, "match", 4, "kind", "k");
    queue_dispatch_dirty();
    assert_string_equal(received(c), "match");
    assert_int_equal(d->q.npending, 1);
    free_conn(c);
}

/* ------------------------------------------------------ selector budget */

/* The budget is per loop iteration of srv.loop: an empty loop stands in
 * for it, run once per "iteration" (the server's own loop would flush
 * these socketless connections). */
static void ticking(void)
{
    real_loop = srv.loop;
    ticker = ev_loop_new(EVFLAG_AUTO);
    srv.loop = ticker;
}

static void next_iteration(void)
{
    ev_run(ticker, EVRUN_NOWAIT);
}

static void stop_ticking(void)
{
    srv.loop = real_loop;
    ev_loop_destroy(ticker);
    ticker = NULL;
}

/* Subscription ids (sub:body) of what a connection received; consumes. */
static char *received_subs(struct conn *c)
{
    static char out[4096];
    out[0] = '\0';
    struct frame_limits lim = {1 << 20, 100, 4096, 64};
    struct frame_parser p;
    frame_parser_init(&p, &lim);
    p.version = STOMP_12;
    size_t off = 0;
    for (;;) {
        struct frame f;
        size_t used;
        const char *err;
        enum frame_status st = frame_parse(&p, buf_head(&c->st.out) + off, buf_used(&c->st.out) - off, &used, &f, &err);
        off += used;
        if (st != FRAME_OK)
            break;
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s:%.*s", out[0] ? " " : "",
                 frame_get(&f, "subscription"), (int)f.body_len, f.body);
        frame_free(&f);
    }
    buf_free(&c->st.out);
    return out;
}

static struct msg *long_header_msg(const char *dest, const char *body, char last)
{
    static char v[1001];
    memset(v, 'a', 1000);
    v[999] = last;
    v[1000] = '\0';
    struct stomp_header h = {"v", v, 1, 1000};
    return msg_new(dest, body, ++seq, 0, false, 4, 0, &h, 1, body, strlen(body));
}

static void set_budget(const char *v)
{
    char err[128];
    assert_int_equal(config_set_key("stomp.selector_budget", v, err, sizeof err), 0);
}

/* A queue message whose consumer scan the budget cannot finish waits, and
 * the scan goes on over the next iterations from where it stopped: the one
 * consumer that matches gets it, once, the others never. */
static void test_budget_queue_scan_resumes(void **state)
{
    set_budget("4500"); /* two evaluations (strlen + automaton: 2000 steps each) */
    ticking();
    struct dest *d = queue_named("/queue/budget");
    struct conn *many = fake_conn(), *one = fake_conn();
    for (int i = 0; i < 40; i++)
        consumer(many, d, ACK_AUTO, 1000, "v LIKE '%b'");
    consumer(one, d, ACK_AUTO, 1000, "v LIKE '%z'");
    struct sub_selector_stats before, after;
    sub_selector_stats(&before);
    /* m0 matches no one; m1 only the last consumer */
    struct msg *m = long_header_msg(d->name, "m0", 'y');
    dest_deliver(d, m);
    msg_unref(m);
    m = long_header_msg(d->name, "m1", 'z');
    dest_deliver(d, m);
    msg_unref(m);
    assert_int_equal(d->q.npending, 2);
    int iterations = 0;
    while (d->q.npending > 1 && iterations < 200) {
        next_iteration();
        queue_dispatch_dirty();
        iterations++;
    }
    print_message("delivered after %d iterations\n", iterations);
    assert_string_equal(received_subs(one), "s0:m1");
    assert_string_equal(received(many), "");
    /* about two evaluations per iteration, 41 for m0's whole scan, 41 at
     * most for m1's: each scan went on where it stopped, neither was redone */
    assert_true(iterations >= 15 && iterations <= 45);
    sub_selector_stats(&after);
    assert_true(after.deferred > before.deferred);
    assert_int_equal(after.over_budget, before.over_budget);
    free_conn(many);
    free_conn(one);
    stop_ticking();
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A topic message reaches, inline, the subscriptions the budget covers;
 * the others get it unfiltered and their selectors run on their backlogs
 * later: in the end exactly the matching ones have it. */
static void test_budget_topic_filters_later(void **state)
{
    set_budget("2500");
    ticking();
    struct dest *t = queue_named("/topic/budget");
    struct conn *c = fake_conn();
    for (int i = 0; i < 30; i++) {
        struct sub *s = calloc(1, sizeof *s);
        char id[16];
        snprintf(id, sizeof id, "t%02d", i);
        s->id = strdup(id);
        s->conn = c;
        s->dest = t;
        s->ack = ACK_AUTO;
        s->prefetch = 1000;
        TAILQ_INIT(&s->unacked);
        char err[128];
        assert_int_equal(selector_compile(i % 3 == 0 ? "v LIKE '%z'" : "v LIKE '%b'", &s->sel, err, sizeof err), 0);
        HASH_ADD_KEYPTR(hh, c->subs, s->id, strlen(s->id), s);
        c->nsubs++;
        queue_init(&s->own, t);
        s->own.owner = s;
        s->q = &s->own;
        TAILQ_INSERT_TAIL(&t->subscribers, s, topic_link);
        t->nsubscribers++;
        queue_add_consumer(&s->own, s);
    }
    struct msg *m = long_header_msg(t->name, "news", 'z');
    dest_deliver(t, m);
    msg_unref(m);
    char first[4096];
    snprintf(first, sizeof first, "%s", received_subs(c));
    assert_string_equal(first, "t00:news");   /* what one budget covered */
    char all[4096];
    snprintf(all, sizeof all, "%s", first);
    for (int i = 0; i < 40; i++) {
        next_iteration();
        queue_dispatch_dirty();
        const char *got = received_subs(c);
        if (*got)
            snprintf(all + strlen(all), sizeof all - strlen(all), " %s", got);
    }
    /* which subscription gets its copy first is no promise: compare as sets */
    char *words[64];
    int nw = 0;
    for (char *w = strtok(all, " "); w && nw < 64; w = strtok(NULL, " "))
        words[nw++] = w;
    qsort(words, (size_t)nw, sizeof words[0], cmp_str);
    char sorted[4096] = "";
    for (int i = 0; i < nw; i++)
        snprintf(sorted + strlen(sorted), sizeof sorted - strlen(sorted), "%s%s", i ? " " : "", words[i]);
    assert_string_equal(sorted, "t00:news t03:news t06:news t09:news t12:news t15:news t18:news t21:news t24:news t27:news");
    struct sub *s, *tmp;
    HASH_ITER(hh, c->subs, s, tmp)
        assert_int_equal(s->own.npending, 0); /* the refused copies are gone */
    free_conn(c);
    stop_ticking();
}

/* A selector that cannot finish even with a whole budget is UNKNOWN for
 * that message: the message stays for other consumers, counted. */
static void test_budget_whole_budget_not_enough(void **state)
{
    set_budget("2500");
    ticking();
    struct dest *d = queue_named("/queue/dear");
    struct conn *dear = fake_conn(), *cheap = fake_conn();
    consumer(dear, d, ACK_AUTO, 1000, "v LIKE '%b' OR v LIKE '%c' OR v LIKE '%z'");
    struct sub_selector_stats before, after;
    sub_selector_stats(&before);
    struct msg *m = long_header_msg(d->name, "m", 'z');
    dest_deliver(d, m);
    msg_unref(m);
    for (int i = 0; i < 5; i++) {
        next_iteration();
        queue_dispatch_dirty();
    }
    assert_string_equal(received(dear), "");
    assert_int_equal(d->q.npending, 1);
    sub_selector_stats(&after);
    assert_true(after.over_budget > before.over_budget);
    consumer(cheap, d, ACK_AUTO, 1000, "v IS NOT NULL");
    /* the dear one still spends a whole budget first, then it is cheap's turn */
    for (int i = 0; i < 2; i++) {
        next_iteration();
        queue_dispatch_dirty();
    }
    assert_string_equal(received(cheap), "m");
    free_conn(dear);
    free_conn(cheap);
    stop_ticking();
}

/* A message no consumer can take stays pending without dispatch spinning
 * on it: once the sweeps are done, the queue is left alone (a sweep going
 * on from a stop used to ask for one more from the top every time, and
 * that one stopped again: a loop spending the budget on the same message
 * every iteration). */
static void test_budget_no_spinning_on_a_message_none_takes(void **state)
{
    set_budget("2500");
    ticking();
    struct dest *d = queue_named("/queue/stuck");
    struct conn *dear = fake_conn();
    consumer(dear, d, ACK_AUTO, 1000, "v LIKE '%b' OR v LIKE '%c' OR v LIKE '%z'");
    struct msg *m = long_header_msg(d->name, "big", 'z');
    dest_deliver(d, m);           /* a whole budget is not enough: stays */
    msg_unref(m);
    struct stomp_header h = {"v", "z", 1, 1};
    m = msg_new(d->name, "small", ++seq, 0, false, 4, 0, &h, 1, "small", 5);
    dest_deliver(d, m);
    msg_unref(m);
    for (int i = 0; i < 6; i++) {
        next_iteration();
        queue_dispatch_dirty();
    }
    assert_string_equal(received(dear), "small");
    assert_int_equal(d->q.npending, 1);
    struct sub_selector_stats before, after;
    sub_selector_stats(&before);
    for (int i = 0; i < 10; i++) {
        next_iteration();
        queue_dispatch_dirty();
    }
    sub_selector_stats(&after);
    assert_false(d->q.dirty);
    assert_int_equal(after.over_budget, before.over_budget);
    free_conn(dear);
    stop_ticking();
}

/* One queue whose dispatch takes every iteration's budget does not hold
 * another back: a queue left with nothing goes first next time. */
static void test_budget_queues_take_turns(void **state)
{
    set_budget("2500");
    ticking();
    struct dest *busy = queue_named("/queue/busy"), *other = queue_named("/queue/other");
    struct conn *a = fake_conn(), *b = fake_conn();
    for (int i = 0; i < 20; i++)
        consumer(a, busy, ACK_AUTO, 1000, "v LIKE '%b'");
    for (int i = 0; i < 20; i++) {
        struct msg *m = long_header_msg(busy->name, "never", 'z');
        dest_deliver(busy, m);
        msg_unref(m);
    }
    struct msg *m = long_header_msg(other->name, "soon", 'z');
    dest_deliver(other, m);      /* no consumer yet: waits */
    msg_unref(m);
    next_iteration();
    queue_dispatch_dirty();      /* busy takes this iteration's budget */
    consumer(b, other, ACK_AUTO, 1000, "v LIKE '%z'");
    int n = 0;
    while (!*received(b) && n < 4) {
        next_iteration();
        queue_dispatch_dirty();
        n++;
    }
    assert_true(n <= 3);
    assert_true(busy->q.npending > 0);  /* still at it */
    free_conn(a);
    free_conn(b);
    stop_ticking();
}

/* A consumer found full is set aside from the round robin, also by a scan
 * the budget stopped; with room again (an ACK) it comes back as the next in
 * turn, so the scan, going on, offers it the message at once instead of
 * first asking every other consumer. */
static void test_budget_scan_over_a_full_consumer(void **state)
{
    ticking();
    struct dest *d = queue_named("/queue/parked");
    struct conn *one = fake_conn(), *many = fake_conn();
    struct sub *s = consumer(one, d, ACK_CLIENT_INDIVIDUAL, 1, "v LIKE '%z'");
    struct msg *m = long_header_msg(d->name, "m0", 'z');
    dest_deliver(d, m);
    msg_unref(m);
    assert_string_equal(received_subs(one), "s0:m0");
    for (int i = 0; i < 40; i++)
        consumer(many, d, ACK_AUTO, 1000, "v LIKE '%b'");
    set_budget("4500"); /* two evaluations per iteration */
    m = long_header_msg(d->name, "m1", 'z');
    dest_deliver(d, m);
    msg_unref(m);
    assert_true(s->parked);
    assert_int_equal(d->q.nparked, 1);
    for (int i = 0; i < 5; i++) {
        next_iteration();
        queue_dispatch_dirty();
    }
    assert_int_equal(d->q.npending, 1);
    assert_true(d->q.resuming); /* the scan is still going over the 40 */
    sub_ack(s, TAILQ_FIRST(&s->unacked));
    assert_false(s->parked);
    int n = 0;
    while (d->q.npending && n < 10) {
        next_iteration();
        queue_dispatch_dirty();
        n++;
    }
    assert_true(n <= 2);
    assert_string_equal(received_subs(one), "s0:m1");
    assert_string_equal(received(many), "");
    free_conn(one);
    free_conn(many);
    stop_ticking();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_priority_then_fifo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_returned_keep_their_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_robin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefetch_limits_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exclusive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_selectors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_queue_scan_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_topic_filters_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_whole_budget_not_enough, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_queues_take_turns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_no_spinning_on_a_message_none_takes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_scan_over_a_full_consumer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
