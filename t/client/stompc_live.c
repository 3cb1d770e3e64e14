/* The client integration tests' driver: `stompc_live URL SCENARIO [ARG...]`
 * runs one scenario of libstompc calls against a real stompd (or the fake
 * broker of t/client/fakebroker.py), asserting as it goes. Exit 0 and "ok"
 * on success; exit 1 with "FAIL: line N: ..." otherwise. Where the test
 * must act (kill or restart a broker) the driver prints "SYNC <name>" and
 * waits for a line on stdin. Result values are printed as "key=value". */
#include "config.h"

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stompc.h"

static const char *url;

static void die(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

static void die(int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL: line %d: ", line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    _exit(1); /* no leak report for a run that already failed */
}

#define CHECK(cond) \
    do { \
        if (!(cond)) \
            die(__LINE__, "%s", #cond); \
    } while (0)
#define CHECKF(cond, ...) \
    do { \
        if (!(cond)) \
            die(__LINE__, __VA_ARGS__); \
    } while (0)
/* A call on client c that must succeed. */
#define OK(c, call) \
    do { \
        int rc_ = (call); \
        if (rc_ != 0) \
            die(__LINE__, "%s = %d (%s): %s", #call, rc_, stompc_strerror(rc_), stompc_error(c)); \
    } while (0)
/* A call that must fail with status st and an error mentioning text. */
#define FAILS(c, call, st, text) \
    do { \
        int rc_ = (call); \
        if (rc_ != (st)) \
            die(__LINE__, "%s = %d (%s), want %d; error: %s", #call, rc_, stompc_strerror(rc_), (st), \
                stompc_error(c)); \
        if (!strstr(stompc_error(c), (text))) \
            die(__LINE__, "%s: error '%s' lacks '%s'", #call, stompc_error(c), (text)); \
    } while (0)

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Let the test act: it answers with one line. */
static void sync_point(const char *name)
{
    char line[64];
    printf("SYNC %s\n", name);
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        die(__LINE__, "no answer to SYNC %s", name);
}

static struct stompc *open_client(const char *u, const struct stompc_options *o)
{
    struct stompc *c = stompc_new();
    CHECK(c);
    OK(c, stompc_connect(c, u, o));
    return c;
}

static void close_client(struct stompc *c)
{
    OK(c, stompc_disconnect(c, 5000));
    stompc_free(c);
}

static struct stompc_msg *recv_msg(struct stompc *c, int timeout)
{
    struct stompc_msg *m = NULL;
    OK(c, stompc_receive(c, &m, timeout));
    CHECK(m);
    return m;
}

static void expect_nothing(struct stompc *c, int wait)
{
    struct stompc_msg *m = NULL;
    int rc = stompc_receive(c, &m, wait);
    CHECKF(rc == STOMPC_ETIMEDOUT && !m, "expected no message, got rc %d body '%.40s'", rc, m ? m->body : "");
}

static void send_text(struct stompc *c, const char *dest, const char *text, const struct stompc_send_opts *o)
{
    OK(c, stompc_send(c, dest, text, strlen(text), o));
}

static void body_is(const struct stompc_msg *m, const char *text)
{
    CHECKF(m->body_len == strlen(text) && !memcmp(m->body, text, m->body_len), "body '%.*s', want '%s'",
           (int)m->body_len, m->body, text);
}

/* The next message's body is text (and the message is done with). */
static void recv_body(struct stompc *c, int timeout, const char *text)
{
    struct stompc_msg *m = recv_msg(c, timeout);
    body_is(m, text);
    stompc_msg_free(m);
}

static struct stompc_stats stats(const struct stompc *c)
{
    struct stompc_stats st;
    CHECK(stompc_get_stats(c, &st) == 0);
    return st;
}

static void print_stats(const char *who, const struct stompc *c)
{
    struct stompc_stats st = stats(c);
    printf("%s: broker=%s version=%d connects=%llu reconnects=%llu resent=%llu resubscribed=%llu "
           "failed_frames=%llu failed_transactions=%llu stale_acks=%llu\n",
           who, st.broker ? st.broker : "-", st.version, (unsigned long long)st.connects,
           (unsigned long long)st.reconnects, (unsigned long long)st.resent, (unsigned long long)st.resubscribed,
           (unsigned long long)st.failed_frames, (unsigned long long)st.failed_transactions,
           (unsigned long long)st.stale_acks);
}

/* ------------------------------------------------------------ scenarios */

static void sc_connect(void)
{
    struct stompc *c = open_client(url, NULL);
    struct stompc_stats st = stats(c);
    CHECK(st.version == 12);
    CHECK(st.broker && !strncmp(st.broker, "tcp://", 6));
    CHECK(st.connects == 1 && st.reconnects == 0);
    OK(c, stompc_disconnect(c, 5000));
    st = stats(c);
    CHECK(st.version == 0 && st.broker == NULL);
    FAILS(c, stompc_send(c, "/queue/x", "x", 1, NULL), STOMPC_ECLOSED, "not connected");
    FAILS(c, stompc_connect(c, "tcp://127.0.0.1:1:2", NULL), STOMPC_EINVAL, "bad URI 'tcp://127.0.0.1:1:2'");
    /* connect again on the same object */
    OK(c, stompc_connect(c, url, NULL));
    FAILS(c, stompc_connect(c, url, NULL), STOMPC_EINVAL, "already connected");
    close_client(c);
    /* free without disconnect is allowed too */
    c = open_client(url, NULL);
    stompc_free(c);
}

/* Offer only `offer`; check the version used and that ACK/NACK carry the
 * headers that version wants (the broker refuses anything else). */
static void sc_version(const char *offer, int want)
{
    struct stompc_options o = {.accept_version = offer};
    struct stompc *c = open_client(url, &o);
    CHECKF(stats(c).version == want, "version %d, want %d", stats(c).version, want);
    char dest[64];
    snprintf(dest, sizeof dest, "/queue/version-%d", want);
    struct stompc_sub_opts so = {.ack = STOMPC_ACK_CLIENT_INDIVIDUAL, .id = "s1"};
    OK(c, stompc_subscribe(c, dest, &so));
    send_text(c, dest, "one", NULL);
    send_text(c, dest, "two", NULL);
    struct stompc_msg *m1 = recv_msg(c, 5000);
    struct stompc_msg *m2 = recv_msg(c, 5000);
    body_is(m1, "one");
    CHECK(!strcmp(m1->subscription, "s1"));
    CHECK((want == 12) == (m1->ack_id != NULL));
    OK(c, stompc_ack(c, m1, NULL, STOMPC_WAIT));
    if (want == 10) {
        FAILS(c, stompc_nack(c, m2, NULL, 0), STOMPC_EINVAL, "NACK needs STOMP 1.1");
        OK(c, stompc_ack(c, m2, NULL, STOMPC_WAIT));
    } else {
        OK(c, stompc_nack(c, m2, NULL, STOMPC_WAIT));
        struct stompc_msg *again = recv_msg(c, 5000);
        body_is(again, "two");
        CHECK(again->redelivered);
        OK(c, stompc_ack(c, again, NULL, STOMPC_WAIT));
        stompc_msg_free(again);
    }
    stompc_msg_free(m1);
    stompc_msg_free(m2);
    close_client(c);
    printf("version=%d\n", want);
}

static void sc_versions(void)
{
    sc_version("1.0", 10);
    sc_version("1.1", 11);
    sc_version("1.2", 12);
    sc_version("1.0,1.1", 11);
    sc_version("1.0,1.1,1.2", 12);
}

/* Against the fake broker: it says `arg`; we must use it. */
static void sc_expect_version(const char *arg)
{
    struct stompc_options o = {.login = "alice", .passcode = "s3cret", .host = "vhost1", .client_id = "cid-1",
                               .heart_beat_tx = 5000, .heart_beat_rx = 7000};
    struct stompc_header extra[] = {{"x-custom", "yes"}};
    o.headers = extra;
    o.nheaders = 1;
    struct stompc *c = open_client(url, &o);
    int want = atoi(arg);
    CHECKF(stats(c).version == want, "version %d, want %d", stats(c).version, want);
    close_client(c);
}

struct receipts {
    int n;
    char last[64];
};

static void on_receipt_count(struct stompc *c, const char *id, void *ud)
{
    struct receipts *r = ud;
    r->n++;
    snprintf(r->last, sizeof r->last, "%s", id);
}

static void sc_send(void)
{
    struct stompc *c = open_client(url, NULL);
    struct receipts r = {0};
    struct stompc_callbacks cb = {.on_receipt = on_receipt_count};
    OK(c, stompc_set_callbacks(c, &cb, &r));
    OK(c, stompc_subscribe(c, "/queue/send", NULL));

    /* without receipt, with one reported to on_receipt, with one waited for */
    send_text(c, "/queue/send", "plain", NULL);
    struct stompc_send_opts so = {.receipt = "my-receipt-1"};
    send_text(c, "/queue/send", "receipted", &so);
    struct stompc_send_opts sw = {.wait = true, .persistent = true, .content_type = "text/plain"};
    send_text(c, "/queue/send", "waited", &sw);
    CHECK(stats(c).unreceipted == 0);

    /* binary body with NULs, 200 KB, and extra headers needing escapes */
    size_t big = 200 * 1024;
    char *bin = malloc(big);
    CHECK(bin);
    for (size_t i = 0; i < big; i++)
        bin[i] = (char)(i % 7 == 0 ? 0 : i * 31);
    struct stompc_header hs[] = {{"x-colon", "a:b"}, {"x-line", "one\ntwo"}, {"x-slash", "back\\slash"}};
    struct stompc_send_opts sb = {.headers = hs, .nheaders = 3, .wait = true};
    OK(c, stompc_send(c, "/queue/send", bin, big, &sb));

    /* the library's own headers cannot be given as extra ones */
    struct stompc_header bad[] = {{"content-length", "3"}};
    struct stompc_send_opts sbad = {.headers = bad, .nheaders = 1};
    FAILS(c, stompc_send(c, "/queue/send", "x", 1, &sbad), STOMPC_EINVAL, "content-length");
    FAILS(c, stompc_send(c, NULL, "x", 1, NULL), STOMPC_EINVAL, "no destination");
    /* a count of extra headers without their array (helper-97: a crash) */
    struct stompc_send_opts snull = {.headers = NULL, .nheaders = 2};
    FAILS(c, stompc_send(c, "/queue/send", "x", 1, &snull), STOMPC_EINVAL, "headers is NULL");
    FAILS(c, stompc_subscribe(c, "/queue/send-null", &(struct stompc_sub_opts){.nheaders = 1}), STOMPC_EINVAL,
          "headers is NULL");

    struct stompc_msg *m = recv_msg(c, 5000);
    body_is(m, "plain");
    CHECK(stompc_msg_header(m, "persistent") == NULL);
    CHECK(!strcmp(m->destination, "/queue/send") && m->message_id && !m->redelivered);
    stompc_msg_free(m);
    recv_body(c, 5000, "receipted");
    m = recv_msg(c, 5000);
    body_is(m, "waited");
    CHECK(!strcmp(stompc_msg_header(m, "persistent"), "true"));
    CHECK(!strcmp(stompc_msg_header(m, "content-type"), "text/plain"));
    CHECK(stompc_msg_header(m, "_AMQ_DUPL_ID") && strlen(stompc_msg_header(m, "_AMQ_DUPL_ID")) > 32);
    stompc_msg_free(m);
    m = recv_msg(c, 5000);
    CHECKF(m->body_len == big && !memcmp(m->body, bin, big), "binary body of %zu bytes differs", m->body_len);
    CHECK(!strcmp(stompc_msg_header(m, "x-colon"), "a:b"));
    CHECK(!strcmp(stompc_msg_header(m, "x-line"), "one\ntwo"));
    CHECK(!strcmp(stompc_msg_header(m, "x-slash"), "back\\slash"));
    CHECK(stompc_msg_header(m, "no-such") == NULL);
    stompc_msg_free(m);
    free(bin);

    /* on_receipt runs from dispatch/run/receive, for the id we chose only */
    OK(c, stompc_flush(c, 5000));
    CHECK(stompc_dispatch(c) >= 0);
    CHECKF(r.n == 1 && !strcmp(r.last, "my-receipt-1"), "receipts %d last '%s'", r.n, r.last);
    CHECK(stats(c).messages_sent == 4 && stats(c).messages_received == 4);
    close_client(c);
}

/* Receipt waits keep the MESSAGEs that come meanwhile. */
static void sc_receipt_keeps_messages(void)
{
    struct stompc *c = open_client(url, NULL);
    OK(c, stompc_subscribe(c, "/queue/keep", NULL));
    for (int i = 0; i < 20; i++) {
        char b[16];
        snprintf(b, sizeof b, "m%d", i);
        send_text(c, "/queue/keep", b, NULL);
    }
    struct stompc_send_opts sw = {.wait = true};
    send_text(c, "/queue/other", "sync", &sw); /* reads the 20 MESSAGEs on the way */
    OK(c, stompc_subscribe(c, "/queue/other2", NULL));
    for (int i = 0; i < 20; i++) {
        char b[16];
        snprintf(b, sizeof b, "m%d", i);
        struct stompc_msg *m = recv_msg(c, 0); /* already here: no waiting */
        body_is(m, b);
        stompc_msg_free(m);
    }
    expect_nothing(c, 0);
    close_client(c);
}

static void sc_ack_modes(void)
{
    struct stompc *c = open_client(url, NULL);
    /* auto: nothing to ack */
    OK(c, stompc_subscribe(c, "/queue/auto", NULL));
    send_text(c, "/queue/auto", "a", NULL);
    struct stompc_msg *m = recv_msg(c, 5000);
    CHECK(m->ack_id == NULL);
    FAILS(c, stompc_ack(c, m, NULL, 0), STOMPC_EINVAL, "no ack header");
    stompc_msg_free(m);

    /* client: cumulative */
    struct stompc_sub_opts cl = {.id = "cl", .ack = STOMPC_ACK_CLIENT};
    OK(c, stompc_subscribe(c, "/queue/client", &cl));
    for (int i = 0; i < 3; i++)
        send_text(c, "/queue/client", "c", NULL);
    struct stompc_msg *ms[3];
    for (int i = 0; i < 3; i++)
        ms[i] = recv_msg(c, 5000);
    OK(c, stompc_ack(c, ms[2], NULL, STOMPC_WAIT)); /* all three */
    for (int i = 0; i < 3; i++)
        stompc_msg_free(ms[i]);

    /* client-individual: ack 1 and 3, leave 2 */
    struct stompc_sub_opts ci = {.id = "ci", .ack = STOMPC_ACK_CLIENT_INDIVIDUAL};
    OK(c, stompc_subscribe(c, "/queue/indiv", &ci));
    send_text(c, "/queue/indiv", "i1", NULL);
    send_text(c, "/queue/indiv", "i2", NULL);
    send_text(c, "/queue/indiv", "i3", NULL);
    for (int i = 0; i < 3; i++)
        ms[i] = recv_msg(c, 5000);
    OK(c, stompc_ack(c, ms[0], NULL, 0));
    OK(c, stompc_ack(c, ms[2], NULL, STOMPC_WAIT));
    for (int i = 0; i < 3; i++)
        stompc_msg_free(ms[i]);
    OK(c, stompc_unsubscribe(c, "ci", STOMPC_WAIT));
    FAILS(c, stompc_unsubscribe(c, "ci", 0), STOMPC_EINVAL, "no subscription 'ci'");
    close_client(c);

    /* a new connection: client's three are gone, indiv's second comes back */
    c = open_client(url, NULL);
    struct stompc_sub_opts ci2 = {.ack = STOMPC_ACK_CLIENT_INDIVIDUAL};
    OK(c, stompc_subscribe(c, "/queue/client", &ci2));
    OK(c, stompc_subscribe(c, "/queue/indiv", &ci2));
    m = recv_msg(c, 5000);
    body_is(m, "i2");
    CHECK(m->redelivered);
    CHECK(!strcmp(m->subscription, "/queue/indiv")); /* the default id */
    OK(c, stompc_ack(c, m, NULL, STOMPC_WAIT));
    stompc_msg_free(m);
    expect_nothing(c, 300);
    close_client(c);
}

static void sc_transactions(void)
{
    struct stompc *c = open_client(url, NULL);
    OK(c, stompc_subscribe(c, "/queue/tx", NULL));
    OK(c, stompc_begin(c, "t1"));
    FAILS(c, stompc_begin(c, "t1"), STOMPC_EINVAL, "already open");
    struct stompc_send_opts st = {.transaction = "t1"};
    send_text(c, "/queue/tx", "tx-1", &st);
    send_text(c, "/queue/tx", "tx-2", &st);
    expect_nothing(c, 300); /* nothing before COMMIT */
    OK(c, stompc_commit(c, "t1"));
    recv_body(c, 5000, "tx-1");
    recv_body(c, 5000, "tx-2");

    OK(c, stompc_begin(c, "t2"));
    struct stompc_send_opts st2 = {.transaction = "t2"};
    send_text(c, "/queue/tx", "aborted", &st2);
    OK(c, stompc_abort(c, "t2"));
    expect_nothing(c, 300);
    FAILS(c, stompc_commit(c, "t2"), STOMPC_EINVAL, "was not begun");
    FAILS(c, stompc_send(c, "/queue/tx", "x", 1, &st2), STOMPC_EINVAL, "was not begun");

    /* an ACK inside a transaction takes effect at COMMIT */
    struct stompc_sub_opts ci = {.id = "txack", .ack = STOMPC_ACK_CLIENT_INDIVIDUAL};
    OK(c, stompc_subscribe(c, "/queue/txack", &ci));
    send_text(c, "/queue/txack", "to-ack", NULL);
    struct stompc_msg *m = recv_msg(c, 5000);
    OK(c, stompc_begin(c, "t3"));
    OK(c, stompc_ack(c, m, "t3", 0));
    OK(c, stompc_commit(c, "t3"));
    stompc_msg_free(m);
    close_client(c);

    c = open_client(url, NULL);
    OK(c, stompc_subscribe(c, "/queue/txack", NULL));
    expect_nothing(c, 300); /* it was acked */
    close_client(c);
}

static void sc_heartbeats(void)
{
    /* 400 ms: each side has 200 ms of grace (a loaded machine's late
     * wake-ups), still a few beats each way in the idle time below */
    struct stompc_options o = {.heart_beat_tx = 400, .heart_beat_rx = 400};
    struct stompc *c = open_client(url, &o);
    /* idle inside the library for 3 s: beats go out and come in */
    int64_t end = now_ms() + 3000;
    while (now_ms() < end)
        CHECK(stompc_run(c, 100) >= 0);
    struct stompc_send_opts sw = {.wait = true};
    send_text(c, "/queue/hb", "alive", &sw);
    CHECK(stats(c).connects == 1);
    /* poll-style idling keeps it alive too */
    expect_nothing(c, 1500);
    send_text(c, "/queue/hb", "alive", &sw);
    close_client(c);
}

/* The fake broker answers CONNECTED with heart-beats and then says nothing. */
/* The fake broker answers the SUBSCRIBE with a MESSAGE lacking `missing`:
 * a protocol error, not a message with a NULL field handed out. */
static void sc_bad_message(const char *missing)
{
    struct stompc *c = open_client(url, NULL);
    OK(c, stompc_subscribe(c, "/queue/x", NULL));
    struct stompc_msg *m = NULL;
    char want[96];
    snprintf(want, sizeof want, "MESSAGE without a %s header", missing);
    FAILS(c, stompc_receive(c, &m, 5000), STOMPC_EPROTO, want);
    CHECK(m == NULL);
    stompc_free(c);
}

static void sc_silent_broker(void)
{
    struct stompc_options o = {.heart_beat_rx = 100};
    struct stompc *c = open_client(url, &o);
    int64_t t0 = now_ms();
    struct stompc_msg *m = NULL;
    int rc = stompc_receive(c, &m, 5000);
    int64_t took = now_ms() - t0;
    CHECKF(rc == STOMPC_EIO, "rc %d: %s", rc, stompc_error(c));
    CHECKF(strstr(stompc_error(c), "no heart-beat from"), "error: %s", stompc_error(c));
    /* 1.5 x 100 ms, with a margin for a loaded machine */
    CHECKF(took >= 140 && took < 1500, "detected after %lld ms", (long long)took);
    FAILS(c, stompc_send(c, "/queue/x", "x", 1, NULL), STOMPC_ECLOSED, "no heart-beat from");
    printf("detected_ms=%lld\n", (long long)took);
    stompc_free(c);
}

static int cb_messages;
static char cb_order[64];

static void on_message_collect(struct stompc *c, struct stompc_msg *m, void *ud)
{
    (void)ud;
    size_t l = strlen(cb_order);
    if (l + 2 < sizeof cb_order) {
        cb_order[l] = m->body[0];
        cb_order[l + 1] = '\0';
    }
    cb_messages++;
    /* calls from a callback: acking and sending are fine, run is not */
    if (m->ack_id)
        OK(c, stompc_ack(c, m, NULL, 0));
    CHECK(stompc_run(c, 0) == STOMPC_EBUSY);
    CHECK(stompc_receive(c, &(struct stompc_msg *){NULL}, 0) == STOMPC_EBUSY);
    stompc_msg_free(m);
}

static void sc_receive_styles(void)
{
    struct stompc *c = open_client(url, NULL);
    /* poll style with timeouts */
    OK(c, stompc_subscribe(c, "/queue/styles", NULL));
    int64_t t0 = now_ms();
    expect_nothing(c, 0);
    CHECK(now_ms() - t0 < 100);
    t0 = now_ms();
    expect_nothing(c, 300);
    int64_t took = now_ms() - t0;
    CHECKF(took >= 290 && took < 1500, "receive(300) took %lld ms", (long long)took);
    FAILS(c, stompc_receive(c, &(struct stompc_msg *){NULL}, 50), STOMPC_ETIMEDOUT, "no message within 50 ms");

    /* callback style: in order, with acks from inside the callback */
    struct stompc_callbacks cb = {.on_message = on_message_collect};
    OK(c, stompc_set_callbacks(c, &cb, NULL));
    struct stompc_sub_opts ci = {.id = "cb", .ack = STOMPC_ACK_CLIENT_INDIVIDUAL};
    OK(c, stompc_subscribe(c, "/queue/cb", &ci));
    const char *bodies[] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++)
        send_text(c, "/queue/cb", bodies[i], NULL);
    int64_t end = now_ms() + 5000;
    while (cb_messages < 5 && now_ms() < end)
        CHECK(stompc_run(c, 200) >= 0);
    CHECKF(cb_messages == 5 && !strcmp(cb_order, "abcde"), "got %d: %s", cb_messages, cb_order);
    CHECK(stompc_run(c, 100) == 0); /* nothing more: timed out */
    CHECK(stompc_dispatch(c) == 0);

    /* without on_message, messages wait for stompc_receive */
    OK(c, stompc_set_callbacks(c, NULL, NULL));
    send_text(c, "/queue/cb", "z", &(struct stompc_send_opts){.wait = true});
    CHECK(stompc_run(c, 100) == 0);
    struct stompc_msg *m = recv_msg(c, 1000);
    body_is(m, "z");
    OK(c, stompc_ack(c, m, NULL, STOMPC_WAIT));
    stompc_msg_free(m);
    close_client(c);
}

/* Frames sent with more stay in the client until a write or a flush,
 * then arrive complete and in order; a large run goes out as the buffer
 * fills; a poll receiver works through a backlog it did not dispatch. */
static void sc_more(void)
{
    struct stompc *p = open_client(url, NULL);
    struct stompc *r = open_client(url, NULL);
    OK(r, stompc_subscribe(r, "/queue/more", NULL));
    /* the subscription is in place before anything is sent */
    send_text(r, "/queue/more-sync", "x", &(struct stompc_send_opts){.wait = true});
    char text[32];
    for (int i = 0; i < 10; i++) {
        snprintf(text, sizeof text, "m%d", i);
        send_text(p, "/queue/more", text, &(struct stompc_send_opts){.more = true});
    }
    expect_nothing(r, 300); /* still buffered in p */
    OK(p, stompc_flush(p, 5000));
    for (int i = 0; i < 10; i++) {
        struct stompc_msg *m = recv_msg(r, 5000);
        snprintf(text, sizeof text, "m%d", i);
        body_is(m, text);
        stompc_msg_free(m);
    }
    /* more, then a frame that waits: the wait writes everything before it */
    send_text(p, "/queue/more", "before", &(struct stompc_send_opts){.more = true});
    send_text(p, "/queue/more", "waited", &(struct stompc_send_opts){.wait = true});
    recv_body(r, 5000, "before");
    recv_body(r, 5000, "waited");
    /* 2,000 x 1 KiB: several times the 64 KiB buffer */
    char body[1024];
    memset(body, 'b', sizeof body);
    for (int i = 0; i < 2000; i++) {
        snprintf(body, sizeof body, "%06d", i);
        body[6] = 'b';
        OK(p, stompc_send(p, "/queue/more", body, sizeof body, &(struct stompc_send_opts){.more = true}));
    }
    OK(p, stompc_flush(p, 10000));
    /* let the backlog pile up in r before taking it poll style */
    int64_t end = now_ms() + 500;
    while (now_ms() < end)
        CHECK(stompc_run(r, 50) >= 0);
    for (int i = 0; i < 2000; i++) {
        struct stompc_msg *m = recv_msg(r, 5000);
        char want[8];
        snprintf(want, sizeof want, "%06d", i);
        CHECKF(m->body_len == sizeof body && !memcmp(m->body, want, 6), "message %d: %.6s", i,
               (const char *)m->body);
        stompc_msg_free(m);
    }
    expect_nothing(r, 100);
    close_client(p);
    close_client(r);
}

/* Errors surface as statuses and readable strings. */
static void sc_errors(const char *closed_port)
{
    char u[128];
    snprintf(u, sizeof u, "tcp://127.0.0.1:%s", closed_port);
    struct stompc *c = stompc_new();
    FAILS(c, stompc_connect(c, u, NULL), STOMPC_ECONNECT, "Connection refused");
    char want[128];
    snprintf(want, sizeof want, "connect to 127.0.0.1:%s: Connection refused", closed_port);
    CHECKF(!strcmp(stompc_error(c), want), "error '%s'", stompc_error(c));
    FAILS(c, stompc_connect(c, "failover:(tcp://h:1)?bogus=1", NULL), STOMPC_EINVAL, "unknown option 'bogus'");
    FAILS(c, stompc_connect(c, "amqp://h:1", NULL), STOMPC_EINVAL, "unknown scheme 'amqp'");
    struct stompc_options bad = {.login = "a\nb"};
    FAILS(c, stompc_connect(c, url, &bad), STOMPC_EINVAL, "line breaks");
    struct stompc_options badv = {.accept_version = "2.0"};
    FAILS(c, stompc_connect(c, url, &badv), STOMPC_EINVAL, "accept_version");
    FAILS(c, stompc_send(c, "/queue/x", "x", 1, NULL), STOMPC_ECLOSED, "not connected");
    stompc_free(c);

    c = open_client(url, NULL);
    FAILS(c, stompc_subscribe(c, "/queue/sel", &(struct stompc_sub_opts){.selector = "color = = 'red'"}),
          STOMPC_EBROKER, "broker ERROR: invalid selector");
    /* tcp://: the ERROR closed the connection, for good */
    FAILS(c, stompc_send(c, "/queue/x", "x", 1, NULL), STOMPC_ECLOSED, "not connected: broker ERROR: invalid selector");
    OK(c, stompc_connect(c, url, NULL));
    FAILS(c, stompc_subscribe(c, "/topic/d", &(struct stompc_sub_opts){.durable_name = "d"}), STOMPC_EINVAL,
          "client_id");
    FAILS(c, stompc_send(c, "/bogus/x", "x", 1, &(struct stompc_send_opts){.wait = true}), STOMPC_EBROKER,
          "broker ERROR: invalid destination");
    printf("error=%s\n", stompc_error(c));
    stompc_free(c);

    /* a client-id can be connected once */
    struct stompc_options o = {.client_id = "only-once"};
    struct stompc *a = open_client(url, &o);
    c = stompc_new();
    FAILS(c, stompc_connect(c, url, &o), STOMPC_EBROKER, "client-id already in use");
    stompc_free(c);
    close_client(a);
    CHECK(!strcmp(stompc_strerror(STOMPC_ETXFAILED), "transaction failed"));
}

static void sc_durable(void)
{
    struct stompc_options o = {.client_id = "durable-client"};
    struct stompc *c = open_client(url, &o);
    struct stompc_sub_opts so = {.id = "d1", .durable_name = "keep", .ack = STOMPC_ACK_CLIENT_INDIVIDUAL};
    OK(c, stompc_subscribe(c, "/topic/news", &so));
    OK(c, stompc_unsubscribe(c, "d1", STOMPC_WAIT)); /* detach, keep the durable */
    send_text(c, "/topic/news", "while away", &(struct stompc_send_opts){.wait = true, .persistent = true});
    OK(c, stompc_subscribe(c, "/topic/news", &so));
    struct stompc_msg *m = recv_msg(c, 5000);
    body_is(m, "while away");
    OK(c, stompc_ack(c, m, NULL, STOMPC_WAIT));
    stompc_msg_free(m);
    OK(c, stompc_unsubscribe(c, "d1", STOMPC_REMOVE_DURABLE | STOMPC_WAIT));
    send_text(c, "/topic/news", "nobody", &(struct stompc_send_opts){.wait = true});
    OK(c, stompc_subscribe(c, "/topic/news", &so)); /* a new durable: nothing kept */
    expect_nothing(c, 300);
    OK(c, stompc_unsubscribe(c, "d1", STOMPC_REMOVE_DURABLE | STOMPC_WAIT));
    close_client(c);
}

static void sc_selector_prefetch(void)
{
    struct stompc *c = open_client(url, NULL);
    struct stompc_sub_opts so = {.id = "red", .selector = "color = 'red'"};
    OK(c, stompc_subscribe(c, "/queue/colors", &so));
    struct stompc_header blue[] = {{"color", "blue"}}, red[] = {{"color", "red"}};
    send_text(c, "/queue/colors", "blue", &(struct stompc_send_opts){.headers = blue, .nheaders = 1});
    send_text(c, "/queue/colors", "red", &(struct stompc_send_opts){.headers = red, .nheaders = 1});
    recv_body(c, 5000, "red");
    expect_nothing(c, 300);

    struct stompc_sub_opts pf = {.id = "pf", .prefetch = 1, .ack = STOMPC_ACK_CLIENT_INDIVIDUAL};
    OK(c, stompc_subscribe(c, "/queue/prefetch", &pf));
    for (int i = 0; i < 3; i++)
        send_text(c, "/queue/prefetch", "p", NULL);
    for (int i = 0; i < 3; i++) {
        struct stompc_msg *m = recv_msg(c, 5000);
        expect_nothing(c, 200); /* one at a time */
        OK(c, stompc_ack(c, m, NULL, 0));
        stompc_msg_free(m);
    }
    close_client(c);
}

/* One client per thread, all at once: nothing is shared between them. */
static void *thread_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    char dest[64];
    snprintf(dest, sizeof dest, "/queue/thread-%d", id);
    struct stompc *c = open_client(url, NULL);
    OK(c, stompc_subscribe(c, dest, &(struct stompc_sub_opts){.ack = STOMPC_ACK_CLIENT_INDIVIDUAL}));
    for (int i = 0; i < 200; i++) {
        char b[32];
        snprintf(b, sizeof b, "%d-%d", id, i);
        send_text(c, dest, b, &(struct stompc_send_opts){.persistent = true, .receipt = b});
    }
    OK(c, stompc_flush(c, 10000));
    for (int i = 0; i < 200; i++) {
        char b[32];
        snprintf(b, sizeof b, "%d-%d", id, i);
        struct stompc_msg *m = recv_msg(c, 5000);
        body_is(m, b);
        OK(c, stompc_ack(c, m, NULL, 0));
        stompc_msg_free(m);
    }
    close_client(c);
    return NULL;
}

static void sc_threads(void)
{
    pthread_t t[6];
    for (int i = 0; i < 6; i++)
        CHECK(pthread_create(&t[i], NULL, thread_main, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < 6; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
}

/* ------------------------------------------------------------- failover */

static int reconnect_notices, error_notices;

static void on_reconnect_print(struct stompc *c, const char *broker, const struct stompc_stats *st, void *ud)
{
    (void)c;
    (void)ud;
    reconnect_notices++;
    printf("reconnected to %s reconnects=%llu resent=%llu\n", broker, (unsigned long long)st->reconnects,
           (unsigned long long)st->resent);
}

static void on_error_print(struct stompc *c, int status, const char *msg, const char *rid, void *ud)
{
    (void)c;
    (void)ud;
    error_notices++;
    printf("error status=%d receipt=%s: %s\n", status, rid ? rid : "-", msg);
}

static const struct stompc_callbacks print_cb = {.on_reconnect = on_reconnect_print, .on_error = on_error_print};

/* With the fake broker: it receipts the SUBSCRIBE, swallows five SENDs,
 * drops the connection, then receipts everything. */
static void sc_resend(void)
{
    struct stompc *c = open_client(url, NULL);
    OK(c, stompc_set_callbacks(c, &print_cb, NULL));
    struct stompc_sub_opts so = {.id = "sub-r", .ack = STOMPC_ACK_CLIENT, .selector = "a = 1", .prefetch = 5};
    OK(c, stompc_subscribe(c, "/queue/resend", &so));
    for (int i = 1; i <= 5; i++) {
        char b[16];
        snprintf(b, sizeof b, "seq=%d", i);
        send_text(c, "/queue/resend", b, &(struct stompc_send_opts){.persistent = true});
    }
    send_text(c, "/queue/resend", "seq=6", &(struct stompc_send_opts){.receipt = "mine-6"});
    send_text(c, "/queue/resend", "fire-and-forget", NULL);
    CHECK(stats(c).unreceipted == 6);
    OK(c, stompc_flush(c, 10000));
    struct stompc_stats st = stats(c);
    CHECKF(st.reconnects == 1 && st.resent == 6 && st.resubscribed == 1, "reconnects %llu resent %llu",
           (unsigned long long)st.reconnects, (unsigned long long)st.resent);
    CHECK(stompc_dispatch(c) >= 0);
    CHECK(reconnect_notices == 1 && error_notices == 1); /* the loss, the reconnect */
    print_stats("resend", c);
    close_client(c);
}

/* Two real brokers: the first goes away, the client moves to the second. */
static void sc_move(void)
{
    struct stompc *c = open_client(url, NULL);
    OK(c, stompc_set_callbacks(c, &print_cb, NULL));
    struct stompc_stats st = stats(c);
    char first[128];
    snprintf(first, sizeof first, "%s", st.broker);
    printf("first=%s\n", first);
    OK(c, stompc_subscribe(c, "/queue/move", &(struct stompc_sub_opts){.ack = STOMPC_ACK_CLIENT_INDIVIDUAL}));
    sync_point("kill-first");
    /* the send notices the loss (or the next call does) and goes on */
    send_text(c, "/queue/move", "after", &(struct stompc_send_opts){.persistent = true, .wait = true});
    st = stats(c);
    CHECKF(st.broker && strcmp(st.broker, first), "still on %s", st.broker ? st.broker : "-");
    CHECK(st.reconnects == 1 && st.resubscribed == 1);
    struct stompc_msg *m = recv_msg(c, 5000); /* re-subscribed on the second broker */
    body_is(m, "after");
    OK(c, stompc_ack(c, m, NULL, STOMPC_WAIT));
    stompc_msg_free(m);
    printf("second=%s\n", st.broker);
    CHECK(stompc_dispatch(c) >= 0);
    CHECK(reconnect_notices == 1);
    close_client(c);
}

static void sc_startup_attempts(void)
{
    struct stompc *c = stompc_new();
    int64_t t0 = now_ms();
    FAILS(c, stompc_connect(c, url, NULL), STOMPC_ECONNECT, "gave up after 3 round(s)");
    int64_t took = now_ms() - t0;
    CHECKF(strstr(stompc_error(c), "Connection refused"), "error %s", stompc_error(c));
    printf("took_ms=%lld\nerror=%s\n", (long long)took, stompc_error(c));
    FAILS(c, stompc_send(c, "/queue/x", "x", 1, NULL), STOMPC_ECLOSED, "not connected");
    stompc_free(c);
}

/* timeout=N: without a broker, a send fails after about N ms. */
static void sc_timeout(void)
{
    struct stompc *c = open_client(url, NULL);
    sync_point("kill");
    int64_t t0 = now_ms();
    int rc = 0;
    /* the first send may still reach the dead socket's buffer */
    for (int i = 0; i < 50 && rc == 0; i++)
        rc = stompc_send(c, "/queue/t", "x", 1, &(struct stompc_send_opts){.persistent = true});
    int64_t took = now_ms() - t0;
    CHECKF(rc == STOMPC_ETIMEDOUT, "rc %d: %s", rc, stompc_error(c));
    CHECKF(strstr(stompc_error(c), "no broker connection within the time limit; last error: connect to") &&
               strstr(stompc_error(c), "Connection refused"),
           "error: %s", stompc_error(c));
    printf("took_ms=%lld\nerror=%s\n", (long long)took, stompc_error(c));
    CHECK(stats(c).broker == NULL);
    sync_point("restart");
    /* the broker is back: the same client carries on */
    send_text(c, "/queue/t", "back", &(struct stompc_send_opts){.wait = true});
    CHECK(stats(c).reconnects == 1);
    close_client(c);
}

static void sc_tx_failover(void)
{
    struct stompc *c = open_client(url, NULL);
    OK(c, stompc_begin(c, "tx-a"));
    send_text(c, "/queue/txf", "in-tx", &(struct stompc_send_opts){.transaction = "tx-a"});
    OK(c, stompc_begin(c, "tx-b"));
    sync_point("restart");
    /* The COMMIT meets the dead connection (or the next one): either way
     * tx-a did not happen. */
    FAILS(c, stompc_commit(c, "tx-a"), STOMPC_ETXFAILED, "transaction 'tx-a'");
    FAILS(c, stompc_send(c, "/queue/txf", "x", 1, &(struct stompc_send_opts){.transaction = "tx-b"}),
          STOMPC_ETXFAILED, "transaction 'tx-b' was lost by a failover");
    OK(c, stompc_abort(c, "tx-b"));
    CHECK(stats(c).failed_transactions == 2);

    /* A transaction open when the client notices the failover. */
    OK(c, stompc_begin(c, "tx-d"));
    send_text(c, "/queue/txf", "in-tx-d", &(struct stompc_send_opts){.transaction = "tx-d"});
    sync_point("restart");
    expect_nothing(c, 500); /* sees the loss and reconnects */
    CHECK(stats(c).reconnects == 2);
    FAILS(c, stompc_commit(c, "tx-d"), STOMPC_ETXFAILED, "transaction 'tx-d' was lost by a failover");
    FAILS(c, stompc_commit(c, "tx-d"), STOMPC_EINVAL, "was not begun"); /* forgotten */

    /* a new transaction works on the new connection */
    OK(c, stompc_begin(c, "tx-c"));
    send_text(c, "/queue/txf", "committed", &(struct stompc_send_opts){.transaction = "tx-c"});
    OK(c, stompc_commit(c, "tx-c"));
    OK(c, stompc_subscribe(c, "/queue/txf", NULL));
    recv_body(c, 5000, "committed");
    expect_nothing(c, 300);
    close_client(c);
}

/* A frame the broker refuses is reported, not resent for ever. */
static void sc_refused_not_resent(void)
{
    struct stompc *c = open_client(url, NULL);
    OK(c, stompc_set_callbacks(c, &print_cb, NULL));
    OK(c, stompc_subscribe(c, "/queue/good", NULL));
    send_text(c, "/bogus/dest", "refused", &(struct stompc_send_opts){.persistent = true});
    send_text(c, "/queue/good", "fine", &(struct stompc_send_opts){.persistent = true});
    FAILS(c, stompc_flush(c, 10000), STOMPC_EBROKER, "invalid destination");
    OK(c, stompc_flush(c, 10000)); /* reported once */
    recv_body(c, 5000, "fine");
    struct stompc_stats st = stats(c);
    CHECKF(st.failed_frames == 1 && st.reconnects == 1, "failed %llu reconnects %llu",
           (unsigned long long)st.failed_frames, (unsigned long long)st.reconnects);
    expect_nothing(c, 300);
    CHECK(reconnect_notices == 1 && error_notices == 1); /* the ERROR, the reconnect */
    close_client(c);
}

static void sc_stale_ack(void)
{
    struct stompc *c = open_client(url, NULL);
    OK(c, stompc_subscribe(c, "/queue/stale", &(struct stompc_sub_opts){.ack = STOMPC_ACK_CLIENT_INDIVIDUAL}));
    send_text(c, "/queue/stale", "old", NULL);
    struct stompc_msg *m = recv_msg(c, 5000);
    sync_point("restart");
    expect_nothing(c, 500); /* sees the loss, reconnects, re-subscribes */
    CHECK(stats(c).reconnects == 1);
    OK(c, stompc_ack(c, m, NULL, STOMPC_WAIT)); /* nothing to ack on the new broker */
    stompc_msg_free(m);
    send_text(c, "/queue/stale", "new", &(struct stompc_send_opts){.wait = true});
    struct stompc_stats st = stats(c);
    CHECKF(st.stale_acks == 1 && st.reconnects == 1 && st.failed_frames == 0, "stale %llu",
           (unsigned long long)st.stale_acks);
    m = recv_msg(c, 5000);
    body_is(m, "new");
    OK(c, stompc_ack(c, m, NULL, STOMPC_WAIT));
    stompc_msg_free(m);
    close_client(c);
}

/* The fake broker goes silent after CONNECTED; the second connection works. */
static void sc_hb_failover(void)
{
    struct stompc_options o = {.heart_beat_rx = 100};
    struct stompc *c = open_client(url, &o);
    OK(c, stompc_set_callbacks(c, &print_cb, NULL));
    int64_t end = now_ms() + 5000;
    while (stats(c).reconnects == 0 && now_ms() < end)
        CHECK(stompc_run(c, 100) >= 0);
    CHECK(stats(c).reconnects == 1 && reconnect_notices == 1);
    send_text(c, "/queue/hb", "after", &(struct stompc_send_opts){.wait = true});
    close_client(c);
}

/* A cluster's master given alone (failover:(tcp://master)): CONNECTED
 * names the other members, and the client moves to one of them when the
 * master is killed. With arg "off" (updateURIsSupported=false in the URL),
 * it must not: the send fails when the URL's timeout passes. */
static void sc_learn(const char *arg)
{
    bool off = !strcmp(arg, "off");
    struct stompc_options o = {.receipt_timeout = off ? 3000 : 0};
    struct stompc *c = open_client(url, &o);
    OK(c, stompc_set_callbacks(c, &print_cb, NULL));
    char first[128];
    snprintf(first, sizeof first, "%s", stats(c).broker);
    printf("first=%s\n", first);
    OK(c, stompc_subscribe(c, "/queue/learn", &(struct stompc_sub_opts){.ack = STOMPC_ACK_CLIENT_INDIVIDUAL}));
    send_text(c, "/queue/learn", "before", &(struct stompc_send_opts){.persistent = true, .wait = true});
    struct stompc_msg *m = recv_msg(c, 10000);
    body_is(m, "before");
    OK(c, stompc_ack(c, m, NULL, STOMPC_WAIT));
    stompc_msg_free(m);
    sync_point("kill-master");
    int rc = stompc_send(c, "/queue/learn", "after", 5, &(struct stompc_send_opts){.persistent = true, .wait = true});
    if (off) {
        CHECKF(rc == STOMPC_ETIMEDOUT, "rc %d: %s", rc, stompc_error(c));
        CHECKF(stats(c).broker == NULL && stats(c).reconnects == 0, "moved to %s", stats(c).broker);
        printf("error=%s\n", stompc_error(c));
        stompc_free(c);
        return;
    }
    CHECKF(rc == 0, "send after the kill: %d %s", rc, stompc_error(c));
    struct stompc_stats st = stats(c);
    CHECKF(st.broker && strcmp(st.broker, first), "still on %s", st.broker ? st.broker : "-");
    CHECK(st.reconnects == 1 && st.resubscribed == 1);
    printf("second=%s\n", st.broker);
    recv_body(c, 10000, "after");
    close_client(c);
}

/* How long connecting takes (a paused broker first in the list). */
static void sc_connect_time(void)
{
    int64_t t0 = now_ms();
    struct stompc *c = open_client(url, NULL);
    printf("took_ms=%lld\nbroker=%s\n", (long long)(now_ms() - t0), stats(c).broker);
    send_text(c, "/queue/ct", "x", &(struct stompc_send_opts){.wait = true});
    close_client(c);
}

/* The broker goes away for arg ms and comes back: how long after it is
 * back does the client take to reconnect? */
static void sc_outage(const char *arg)
{
    struct stompc *c = open_client(url, NULL);
    sync_point("kill");
    int64_t end = now_ms() + atoi(arg);
    while (now_ms() < end) {
        int rc = stompc_run(c, 100);
        CHECKF(rc >= 0, "run: %d %s", rc, stompc_error(c));
    }
    CHECK(stats(c).broker == NULL);
    sync_point("restart");
    int64_t t0 = now_ms();
    while (stats(c).broker == NULL && now_ms() < t0 + 60000)
        CHECK(stompc_run(c, 20) >= 0);
    printf("reconnect_ms=%lld\n", (long long)(now_ms() - t0));
    CHECK(stats(c).reconnects == 1);
    send_text(c, "/queue/outage", "back", &(struct stompc_send_opts){.wait = true});
    close_client(c);
}

/* priorityBackup: the first broker (the priority one) is down at first;
 * once it is up the client moves to it by itself, subscription and all. */
static void sc_priority(void)
{
    struct stompc *c = open_client(url, NULL);
    OK(c, stompc_set_callbacks(c, &print_cb, NULL));
    char first[128];
    snprintf(first, sizeof first, "%s", stats(c).broker);
    printf("first=%s\n", first);
    OK(c, stompc_subscribe(c, "/queue/prio", &(struct stompc_sub_opts){.ack = STOMPC_ACK_CLIENT_INDIVIDUAL}));
    sync_point("start-priority");
    int64_t end = now_ms() + 30000;
    while (!strcmp(stats(c).broker ? stats(c).broker : "", first) && now_ms() < end)
        CHECK(stompc_run(c, 100) >= 0);
    struct stompc_stats st = stats(c);
    CHECKF(st.broker && strcmp(st.broker, first), "still on %s", st.broker ? st.broker : "-");
    printf("second=%s\n", st.broker);
    CHECK(st.reconnects == 1 && st.resubscribed == 1 && reconnect_notices == 1);
    CHECK(error_notices == 0); /* a move, not a loss */
    send_text(c, "/queue/prio", "on the priority broker", &(struct stompc_send_opts){.wait = true});
    recv_body(c, 5000, "on the priority broker");
    /* and it stays there */
    end = now_ms() + 1000;
    while (now_ms() < end)
        CHECK(stompc_run(c, 100) >= 0);
    CHECK(stats(c).reconnects == 1);
    close_client(c);
}

/* trackMessages: non-persistent SENDs without a receipt are kept and
 * resent after a failover too (the fake broker swallows the first three
 * and drops the connection). Prints the stats for the test to compare. */
static void sc_track(void)
{
    struct stompc *c = open_client(url, NULL);
    for (int i = 1; i <= 3; i++) {
        char b[16];
        snprintf(b, sizeof b, "np-%d", i);
        send_text(c, "/queue/track", b, NULL);
    }
    OK(c, stompc_flush(c, 10000));
    print_stats("track", c);
    close_client(c);
}

/* maxCacheSize (bytes of tracked bodies) and max_unreceipted, in
 * non-blocking mode: STOMPC_EAGAIN instead of a wait. The fake broker
 * never receipts SENDs. */
static void sc_cache(void)
{
    struct stompc_options o = {.max_unreceipted = 5};
    struct stompc *c = stompc_new();
    CHECK(c);
    OK(c, stompc_set_nonblocking(c, true));
    OK(c, stompc_connect(c, url, &o));
    char body[100];
    memset(body, 'c', sizeof body);
    struct stompc_send_opts so = {.persistent = true};
    OK(c, stompc_send(c, "/queue/cache", body, sizeof body, &so));
    OK(c, stompc_send(c, "/queue/cache", body, sizeof body, &so)); /* 200 bytes kept: fine */
    FAILS(c, stompc_send(c, "/queue/cache", body, sizeof body, &so), STOMPC_EAGAIN, "maxCacheSize");
    OK(c, stompc_send(c, "/queue/cache", body, 10, &so)); /* a small one still fits */
    OK(c, stompc_send(c, "/queue/cache", body, 0, &so));
    OK(c, stompc_send(c, "/queue/cache", body, 0, &so));
    FAILS(c, stompc_send(c, "/queue/cache", body, 0, &so), STOMPC_EAGAIN, "max_unreceipted");
    CHECK(stats(c).unreceipted == 5);
    stompc_free(c);
}

/* ------------------------------------------------------ non-blocking */

static int nb_receipts;

static void on_receipt_nb(struct stompc *c, const char *id, void *ud)
{
    (void)c;
    (void)ud;
    nb_receipts++;
    printf("receipt %s\n", id);
}

/* The event loop the non-blocking API is for, in its plainest form:
 * poll stompc_fd() for stompc_events() up to stompc_timeout(), then
 * stompc_step(), taking messages poll style, until want messages came (or
 * ms passed). Returns how many came; their bodies go to got[]. */
static int nb_loop(struct stompc *c, int want, char got[][32], int ms, int receipts)
{
    int n = 0;
    int64_t end = now_ms() + ms;
    while ((n < want || nb_receipts < receipts) && now_ms() < end) {
        int t = stompc_timeout(c);
        if (t < 0 || t > 100)
            t = 100;
        struct pollfd p = {.fd = stompc_fd(c), .events = (short)stompc_events(c)};
        CHECK(poll(&p, 1, t) >= 0);
        int rc = stompc_step(c);
        CHECKF(rc >= 0, "step: %d %s", rc, stompc_error(c));
        struct stompc_msg *m;
        while (stompc_receive(c, &m, 0) == 0) {
            if (n < want)
                snprintf(got[n], 32, "%.*s", (int)m->body_len, m->body);
            n++;
            OK(c, stompc_ack(c, m, NULL, 0));
            stompc_msg_free(m);
        }
    }
    return n;
}

/* Non-blocking mode against a broker that is not there yet, then killed
 * and restarted: nothing waits, everything queued goes out in order once
 * connected, and the descriptor stays the same. */
static void sc_nonblocking(void)
{
    struct stompc *c = stompc_new();
    CHECK(c);
    OK(c, stompc_set_nonblocking(c, true));
    OK(c, stompc_set_callbacks(c, &(struct stompc_callbacks){.on_receipt = on_receipt_nb, .on_error = on_error_print,
                                                             .on_reconnect = on_reconnect_print},
                               NULL));
    int fd = stompc_fd(c);
    CHECK(fd >= 0);
    int64_t t0 = now_ms();
    OK(c, stompc_connect(c, url, NULL)); /* nothing listens: returns at once all the same */
    CHECKF(now_ms() - t0 < 1000, "connect took %lld ms", (long long)(now_ms() - t0));
    CHECK(stats(c).broker == NULL && stats(c).connects == 0);
    FAILS(c, stompc_begin(c, "t"), STOMPC_EAGAIN, "not connected");
    FAILS(c, stompc_send(c, "/queue/nb", "x", 1, &(struct stompc_send_opts){.wait = true}), STOMPC_EINVAL, "wait");
    OK(c, stompc_subscribe(c, "/queue/nb", &(struct stompc_sub_opts){.ack = STOMPC_ACK_CLIENT_INDIVIDUAL}));
    const char *want[] = {"nb-1", "nb-2", "nb-3", "plain"};
    /* not persistent, so the broker keeps their order (it delivers a
     * persistent message once stored) */
    for (int i = 0; i < 3; i++)
        send_text(c, "/queue/nb", want[i], &(struct stompc_send_opts){.receipt = want[i]});
    send_text(c, "/queue/nb", "plain", NULL); /* no receipt: queued all the same */
    CHECK(stats(c).unreceipted == 4 && stats(c).messages_sent == 4);
    char got[8][32];
    CHECK(nb_loop(c, 1, got, 500, 0) == 0); /* refused, refused...: the timer drives it */
    CHECK(stats(c).connects == 0);
    CHECK(stompc_timeout(c) >= 0);
    sync_point("start");
    int n = nb_loop(c, 4, got, 20000, 3);
    CHECKF(n == 4 && nb_receipts == 3, "%d messages, %d receipts", n, nb_receipts);
    for (int i = 0; i < 4; i++)
        CHECKF(!strcmp(got[i], want[i]), "message %d: '%s', want '%s'", i, got[i], want[i]);
    CHECK(stompc_events(c) == POLLIN && stompc_fd(c) == fd);
    OK(c, stompc_begin(c, "t")); /* connected now */
    OK(c, stompc_abort(c, "t"));

    sync_point("restart");
    nb_receipts = 0;
    int64_t end = now_ms() + 20000;
    while (stats(c).reconnects == 0 && now_ms() < end)
        (void)nb_loop(c, 1, got, 100, 0);
    CHECKF(stats(c).reconnects == 1, "reconnects %llu", (unsigned long long)stats(c).reconnects);
    CHECK(stompc_fd(c) == fd); /* registered once, good for the client's life */
    send_text(c, "/queue/nb", "after", &(struct stompc_send_opts){.persistent = true, .receipt = "after"});
    n = nb_loop(c, 1, got, 20000, 1);
    CHECKF(n == 1 && !strcmp(got[0], "after") && nb_receipts == 1, "%d: %s", n, n ? got[0] : "-");
    close_client(c);
}

/* Non-blocking, no broker up yet: a durable subscription removed, then
 * made again. Once a broker answers, the session goes out in the order it
 * was made: the UNSUBSCRIBE first, so the subscription is there (the
 * subscriptions went first, and the UNSUBSCRIBE removed the new one). */
static void sc_nb_durable_order(void)
{
    struct stompc *c = stompc_new();
    CHECK(c);
    OK(c, stompc_set_nonblocking(c, true));
    OK(c, stompc_set_callbacks(c, &(struct stompc_callbacks){.on_receipt = on_receipt_nb, .on_error = on_error_print},
                               NULL));
    OK(c, stompc_connect(c, url, &(struct stompc_options){.client_id = "nb-order"}));
    OK(c, stompc_unsubscribe(c, "d", STOMPC_REMOVE_DURABLE));
    OK(c, stompc_subscribe(c, "/topic/nborder", &(struct stompc_sub_opts){.id = "d", .durable_name = "d",
                                                                      .ack = STOMPC_ACK_CLIENT_INDIVIDUAL}));
    /* a broker handles a connection's frames in order: once this one's
     * RECEIPT is back, the two before it were handled */
    send_text(c, "/queue/nborder-sync", "sync", &(struct stompc_send_opts){.receipt = "sync"});
    sync_point("start");
    char got[8][32];
    nb_receipts = 0;
    (void)nb_loop(c, 0, got, 20000, 1);
    CHECKF(nb_receipts == 1 && stats(c).connects == 1, "receipts %d", nb_receipts);
    struct stompc *p = open_client(url, NULL);
    send_text(p, "/topic/nborder", "kept", &(struct stompc_send_opts){.wait = true});
    close_client(p);
    int n = nb_loop(c, 1, got, 10000, 0);
    CHECKF(n == 1 && !strcmp(got[0], "kept"), "%d messages: the durable subscription was removed after it was made",
           n);
    close_client(c);
}

/* Non-blocking, no broker: frames without receipt queue until 4 MiB of
 * them wait, then EAGAIN (they queued without bound: 10,000 of 64 KiB,
 * helper-67). */
static void sc_nb_bytes(void)
{
    struct stompc *c = stompc_new();
    CHECK(c);
    OK(c, stompc_set_nonblocking(c, true));
    OK(c, stompc_connect(c, url, NULL));
    static char body[64 << 10];
    memset(body, 'x', sizeof body);
    int n = 0, rc;
    while ((rc = stompc_send(c, "/queue/nb-bytes", body, sizeof body, NULL)) == 0 && n < 1000)
        n++;
    CHECKF(rc == STOMPC_EAGAIN && n == 64, "%d sends of 64 KiB queued, then %d", n, rc);
    printf("queued=%d\n", n);
    stompc_free(c);
}

static const struct {
    const char *name;
    void (*fn)(void);
    void (*fn_arg)(const char *);
} scenarios[] = {
    {"connect", sc_connect, NULL},
    {"versions", sc_versions, NULL},
    {"expect-version", NULL, sc_expect_version},
    {"send", sc_send, NULL},
    {"receipt-keeps-messages", sc_receipt_keeps_messages, NULL},
    {"ack-modes", sc_ack_modes, NULL},
    {"transactions", sc_transactions, NULL},
    {"heartbeats", sc_heartbeats, NULL},
    {"silent-broker", sc_silent_broker, NULL},
    {"receive-styles", sc_receive_styles, NULL},
    {"more", sc_more, NULL},
    {"errors", NULL, sc_errors},
    {"bad-message", NULL, sc_bad_message},
    {"durable", sc_durable, NULL},
    {"selector-prefetch", sc_selector_prefetch, NULL},
    {"threads", sc_threads, NULL},
    {"resend", sc_resend, NULL},
    {"move", sc_move, NULL},
    {"startup-attempts", sc_startup_attempts, NULL},
    {"timeout", sc_timeout, NULL},
    {"tx-failover", sc_tx_failover, NULL},
    {"refused-not-resent", sc_refused_not_resent, NULL},
    {"stale-ack", sc_stale_ack, NULL},
    {"hb-failover", sc_hb_failover, NULL},
    {"learn", NULL, sc_learn},
    {"connect-time", sc_connect_time, NULL},
    {"outage", NULL, sc_outage},
    {"nonblocking", sc_nonblocking, NULL},
    {"nb-durable-order", sc_nb_durable_order, NULL},
    {"nb-bytes", sc_nb_bytes, NULL},
    {"priority", sc_priority, NULL},
    {"track", sc_track, NULL},
    {"cache", sc_cache, NULL},
};

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s URL SCENARIO [ARG]\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    url = argv[1];
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        if (strcmp(scenarios[i].name, argv[2]))
            continue;
        if (scenarios[i].fn_arg) {
            if (argc < 4) {
                fprintf(stderr, "%s needs an argument\n", argv[2]);
                return 2;
            }
            scenarios[i].fn_arg(argv[3]);
        } else {
            scenarios[i].fn();
        }
        printf("ok\n");
        return 0;
    }
    fprintf(stderr, "unknown scenario '%s'\n", argv[2]);
    return 2;
}
