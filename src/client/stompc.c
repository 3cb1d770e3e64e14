/* libstompc's public calls and the session bookkeeping behind them: frames
 * kept until their RECEIPT, subscriptions and transactions to carry over a
 * failover, and the event queue that hands MESSAGEs and notices to the
 * caller (stompc_receive) or to its callbacks (stompc_run). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

#define DUPL_HEADER "_AMQ_DUPL_ID" /* Artemis' name; the broker drops repeats */

/* ------------------------------------------------------------- helpers */

int64_t client_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t client_deadline(int64_t timeout_ms)
{
    return timeout_ms < 0 ? -1 : client_now() + timeout_ms;
}

int client_left(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - client_now();
    if (left <= 0)
        return 0;
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

static void random_bytes(void *p, size_t n)
{
    if (getrandom(p, n, GRND_NONBLOCK) == (ssize_t)n)
        return;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, p, n);
        close(fd);
        if (r == (ssize_t)n)
            return;
    }
    /* Last resort: still distinct per process, time and object. */
    uint64_t seed = (uint64_t)client_now() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)p;
    for (size_t i = 0; i < n; i++)
        ((unsigned char *)p)[i] = (unsigned char)(uri_rand(&seed) >> 56);
}

int client_fail(struct stompc *c, int status, const char *fmt, ...)
{
    char msg[sizeof c->err]; /* the arguments may point into c->err */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(c->err, msg, sizeof msg);
    return status;
}

/* client_fail with the current error appended as the cause: "msg (cause)". */
static int client_fail_cause(struct stompc *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int client_fail_cause(struct stompc *c, int status, const char *fmt, ...)
{
    char cause[sizeof c->err], msg[sizeof c->err];
    snprintf(cause, sizeof cause, "%s", c->err);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return client_fail(c, status, "%s (%s)", msg, cause);
}

const char *stompc_strerror(int status)
{
    switch (status) {
    case STOMPC_OK: return "success";
    case STOMPC_EINVAL: return "invalid argument";
    case STOMPC_ECONNECT: return "could not connect";
    case STOMPC_EIO: return "connection lost";
    case STOMPC_ETIMEDOUT: return "timed out";
    case STOMPC_EBROKER: return "broker error";
    case STOMPC_EPROTO: return "protocol error";
    case STOMPC_ETXFAILED: return "transaction failed";
    case STOMPC_ECLOSED: return "not connected";
    case STOMPC_EBUSY: return "not allowed in a callback";
    case STOMPC_ENOMEM: return "out of memory";
    case STOMPC_EAGAIN: return "would wait";
    case STOMPC_EINTR: return "interrupted";
    default: return "unknown status";
    }
}

const char *stompc_error(const struct stompc *c)
{
    return c ? c->err : "no client";
}

/* ---------------------------------------------------------------- ofr */

struct ofr *ofr_new(struct stompc *c, enum stomp_cmd cmd)
{
    struct ofr *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->cmd = cmd;
    o->seq = ++c->next_seq;
    return o;
}

void ofr_add(struct ofr *o, const char *name, const char *value)
{
    if (o->oom)
        return;
    if (o->nh == o->cap) {
        uint32_t cap = o->cap ? o->cap * 2 : 8;
        struct ofr_header *h = realloc(o->h, cap * sizeof *o->h);
        if (!h) {
            o->oom = true;
            return;
        }
        o->h = h;
        o->cap = cap;
    }
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        o->oom = true;
        return;
    }
    o->h[o->nh].name = n;
    o->h[o->nh].value = v;
    if (!strcmp(name, "transaction") && !o->tx)
        o->tx = v;
    o->nh++;
}

const char *ofr_get(const struct ofr *o, const char *name)
{
    for (uint32_t i = 0; i < o->nh; i++)
        if (!strcmp(o->h[i].name, name))
            return o->h[i].value;
    return NULL;
}

void ofr_set_body(struct ofr *o, const void *body, size_t len)
{
    free(o->body);
    o->body = NULL;
    o->body_len = 0;
    if (len) {
        o->body = malloc(len);
        if (!o->body) {
            o->oom = true;
            return;
        }
        memcpy(o->body, body, len);
        o->body_len = len;
    }
}

void ofr_set_receipt(struct ofr *o, const char *receipt)
{
    free(o->receipt);
    o->receipt = NULL;
    if (receipt && !(o->receipt = strdup(receipt)))
        o->oom = true;
}

void ofr_free(struct ofr *o)
{
    if (!o)
        return;
    for (uint32_t i = 0; i < o->nh; i++) {
        free(o->h[i].name);
        free(o->h[i].value);
    }
    free(o->h);
    free(o->body);
    free(o->receipt);
    free(o);
}

static void auto_receipt(struct ofr *o)
{
    char id[48];
    snprintf(id, sizeof id, "_stompc-%llu", (unsigned long long)o->seq);
    ofr_set_receipt(o, id);
}

/* ------------------------------------------------------------- events */

static void cmsg_free(struct cmsg *m)
{
    frame_free(&m->f);
    free(m->hdrs);
    free(m);
}

void stompc_msg_free(struct stompc_msg *m)
{
    if (m)
        cmsg_free(container_of(m, struct cmsg, pub));
}

const char *stompc_msg_header(const struct stompc_msg *m, const char *name)
{
    if (!m || !name)
        return NULL;
    for (size_t i = 0; i < m->nheaders; i++)
        if (!strcmp(m->headers[i].name, name))
            return m->headers[i].value;
    return NULL;
}

static void cev_free(struct cev *e)
{
    if (e->msg)
        cmsg_free(e->msg);
    free(e->text);
    free(e->receipt);
    free(e);
}

/* A notice, not yet queued; NULL when out of memory. */
static struct cev *cev_new(enum cev_kind kind, int status, const char *text, const char *receipt)
{
    struct cev *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->kind = kind;
    e->status = status;
    if ((text && !(e->text = strdup(text))) || (receipt && !(e->receipt = strdup(receipt)))) {
        cev_free(e);
        return NULL;
    }
    return e;
}

static void cev_push(struct stompc *c, struct cev *e)
{
    TAILQ_INSERT_TAIL(&c->events, e, link);
    c->nevents++;
}

static void cev_remove(struct stompc *c, struct cev *e)
{
    TAILQ_REMOVE(&c->events, e, link);
    c->nevents--;
}

static bool wanted(const struct stompc *c, enum cev_kind kind)
{
    /* Notices nobody listens to would only pile up. */
    return !((kind == CEV_RECEIPT && !c->cb.on_receipt) || (kind == CEV_ERROR && !c->cb.on_error) ||
             (kind == CEV_RECONNECT && !c->cb.on_reconnect));
}

bool client_event(struct stompc *c, enum cev_kind kind, int status, const char *text, const char *receipt)
{
    if (!wanted(c, kind))
        return true;
    struct cev *e = cev_new(kind, status, text, receipt);
    if (!e)
        return false; /* the notice is lost; what it tells is in c->err too */
    cev_push(c, e);
    return true;
}

/* Takes f over, also on failure (false: out of memory). */
static bool queue_message(struct stompc *c, struct frame *f)
{
    struct cmsg *m = calloc(1, sizeof *m);
    struct cev *e = cev_new(CEV_MESSAGE, 0, NULL, NULL);
    struct stompc_header *hdrs = calloc(f->nheaders ? f->nheaders : 1, sizeof *hdrs);
    if (!m || !e || !hdrs) {
        free(m);
        if (e)
            cev_free(e);
        free(hdrs);
        frame_free(f);
        return false;
    }
    m->f = *f;
    m->gen = c->gen;
    m->owner = c;
    m->hdrs = hdrs;
    for (uint32_t i = 0; i < f->nheaders; i++) {
        m->hdrs[i].name = f->headers[i].name;
        m->hdrs[i].value = f->headers[i].value;
    }
    struct stompc_msg *p = &m->pub;
    p->headers = m->hdrs;
    p->nheaders = f->nheaders;
    p->destination = frame_get(f, "destination");
    p->message_id = frame_get(f, "message-id");
    p->subscription = frame_get(f, "subscription");
    p->ack_id = frame_get(f, "ack");
    const char *r = frame_get(f, "redelivered");
    p->redelivered = r && !strcmp(r, "true");
    p->body = f->body;
    p->body_len = f->body_len;
    e->msg = m;
    cev_push(c, e);
    c->nmessages++;
    c->st.messages_received++;
    return true;
}

/* --------------------------------------------------- receipted frames */

static void pending_add(struct stompc *c, struct ofr *o)
{
    o->pending = true;
    TAILQ_INSERT_TAIL(&c->pending, o, link);
    c->npending++;
    c->pending_bytes += o->body_len;
}

void client_pending_remove(struct stompc *c, struct ofr *o)
{
    if (!o->pending)
        return;
    TAILQ_REMOVE(&c->pending, o, link);
    o->pending = false;
    c->npending--;
    c->pending_bytes -= o->body_len;
}

/* Frames without receipt made while no connection is up (non-blocking
 * mode): written once one is. */
static void backlog_add(struct stompc *c, struct ofr *o)
{
    TAILQ_INSERT_TAIL(&c->backlog, o, link);
    c->nbacklog++;
    c->backlog_bytes += o->body_len;
}

static void backlog_clear(struct stompc *c)
{
    struct ofr *o;
    while ((o = TAILQ_FIRST(&c->backlog))) {
        TAILQ_REMOVE(&c->backlog, o, link);
        ofr_free(o);
    }
    c->nbacklog = 0;
    c->backlog_bytes = 0;
}

static struct ofr *pending_by_receipt(struct stompc *c, const char *id)
{
    struct ofr *o;
    /* RECEIPTs come back in order: the first is nearly always it. */
    TAILQ_FOREACH(o, &c->pending, link)
        if (!strcmp(o->receipt, id))
            return o;
    return NULL;
}

static struct ofr *pending_by_seq(struct stompc *c, uint64_t seq)
{
    struct ofr *o;
    TAILQ_FOREACH_REVERSE(o, &c->pending, ofr_list, link)
        if (o->seq == seq)
            return o;
    return NULL;
}

static struct csub *sub_find(struct stompc *c, const char *id)
{
    struct csub *s;
    TAILQ_FOREACH(s, &c->subs, link)
        if (!strcmp(s->id, id))
            return s;
    return NULL;
}

static void sub_free(struct stompc *c, struct csub *s)
{
    TAILQ_REMOVE(&c->subs, s, link);
    client_pending_remove(c, s->frame);
    ofr_free(s->frame);
    free(s->id);
    free(s);
}

/* Forget a frame: off the pending list and freed, with its subscription
 * when it is a SUBSCRIBE. */
static void drop_frame(struct stompc *c, struct ofr *o)
{
    client_pending_remove(c, o);
    if (o->owned_by_sub) {
        struct csub *s;
        TAILQ_FOREACH(s, &c->subs, link)
            if (s->frame == o) {
                sub_free(c, s);
                return;
            }
    }
    ofr_free(o);
}

static bool is_waited(const struct stompc *c, const struct ofr *o)
{
    return c->wait_id && o->receipt && !strcmp(c->wait_id, o->receipt);
}

/* The frame's RECEIPT came (or, for frames a failover makes moot, it is as
 * good as come). */
static void frame_done(struct stompc *c, struct ofr *o)
{
    if (is_waited(c, o))
        c->wait_status = 0;
    if (o->user_receipt)
        (void)client_event(c, CEV_RECEIPT, 0, NULL, o->receipt);
    client_pending_remove(c, o);
    if (!o->owned_by_sub)
        ofr_free(o);
}

/* The frame will never be receipted. */
static void frame_failed(struct stompc *c, struct ofr *o, int status, const char *why)
{
    if (is_waited(c, o)) {
        c->wait_status = status;
        snprintf(c->wait_err, sizeof c->wait_err, "%s", why);
    } else {
        c->flush_failures++;
        c->flush_status = status;
        snprintf(c->flush_err, sizeof c->flush_err, "%s", why);
    }
    drop_frame(c, o);
}

static struct ctx *tx_find(struct stompc *c, const char *name)
{
    struct ctx *t;
    TAILQ_FOREACH(t, &c->txs, link)
        if (!strcmp(t->name, name))
            return t;
    return NULL;
}

static void tx_free(struct stompc *c, struct ctx *t)
{
    TAILQ_REMOVE(&c->txs, t, link);
    free(t->name);
    free(t);
}

/* End the session: every frame still waiting fails, subscriptions and
 * transactions are gone. Queued messages stay. */
static void session_reset(struct stompc *c, int status, const char *why)
{
    struct ofr *o;
    while ((o = TAILQ_FIRST(&c->pending)))
        frame_failed(c, o, status, why);
    while (!TAILQ_EMPTY(&c->subs))
        sub_free(c, TAILQ_FIRST(&c->subs));
    while (!TAILQ_EMPTY(&c->txs))
        tx_free(c, TAILQ_FIRST(&c->txs));
    backlog_clear(c);
}

/* In failover mode: what the lost connection leaves behind. SENDs and
 * SUBSCRIBEs wait for the next connection; transactions died with it. */
static void settle_for_failover(struct stompc *c, const char *why)
{
    struct ctx *t;
    TAILQ_FOREACH(t, &c->txs, link)
        if (!t->failed) {
            t->failed = true;
            c->st.failed_transactions++;
        }
    struct ofr *o, *next;
    char msg[1200];
    for (o = TAILQ_FIRST(&c->pending); o; o = next) {
        next = TAILQ_NEXT(o, link);
        if (o->cmd == CMD_COMMIT) {
            snprintf(msg, sizeof msg, "transaction '%s': the connection was lost before the COMMIT was "
                     "confirmed, it may or may not have been applied (%s)", o->tx ? o->tx : "?", why);
            frame_failed(c, o, STOMPC_ETXFAILED, msg);
        } else if (o->tx) {
            snprintf(msg, sizeof msg, "transaction '%s' was lost by a failover (%s)", o->tx, why);
            frame_failed(c, o, STOMPC_ETXFAILED, msg);
        } else if (o->cmd == CMD_ACK || o->cmd == CMD_NACK) {
            snprintf(msg, sizeof msg, "the connection was lost before the broker confirmed the %s; "
                     "the message will be redelivered (%s)", frame_cmd_name(o->cmd), why);
            frame_failed(c, o, STOMPC_EIO, msg);
        } else if (o->cmd == CMD_UNSUBSCRIBE && !ofr_get(o, "activemq.subscriptionName")) {
            frame_done(c, o); /* the subscription is not carried over: done */
        } else if (o->cmd != CMD_SEND && o->cmd != CMD_SUBSCRIBE && o->cmd != CMD_UNSUBSCRIBE) {
            snprintf(msg, sizeof msg, "the connection was lost before the %s was confirmed (%s)",
                     frame_cmd_name(o->cmd), why);
            frame_failed(c, o, STOMPC_EIO, msg);
        }
    }
}

int client_lost(struct stompc *c, int status, const char *fmt, ...)
{
    char why[sizeof c->err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    net_close(c);
    c->gen++; /* what arrived on that connection cannot be acked any more */
    c->last_status = status;
    if (c->uri.failover && !c->disconnecting) {
        c->state = CS_LOST;
        c->last_failed = c->broker;
        if (failover_lost(c, why) != 0)
            return c->last_status; /* given up: it failed as soon as it answered, too often */
        settle_for_failover(c, why);
        if (status != STOMPC_EBROKER) /* an ERROR was reported as such */
            (void)client_event(c, CEV_ERROR, status, why, NULL);
    } else {
        c->state = CS_DEAD;
        snprintf(c->closed_why, sizeof c->closed_why, "%s", why);
        session_reset(c, status, why);
    }
    snprintf(c->err, sizeof c->err, "%s", why);
    return status;
}

void client_settle(struct stompc *c, const char *why)
{
    if (c->fd >= 0 && buf_used(&c->out) == 0) {
        static const char bye[] = "DISCONNECT\n\n"; /* and its NUL */
        (void)send(c->fd, bye, sizeof bye, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    net_close(c);
    c->gen++;
    settle_for_failover(c, why);
}

void client_gave_up(struct stompc *c, int status, const char *why)
{
    net_close(c);
    snprintf(c->closed_why, sizeof c->closed_why, "%s", why);
    c->state = c->ever_connected ? CS_DEAD : CS_IDLE;
    c->last_status = status;
    session_reset(c, STOMPC_ECONNECT, why);
    snprintf(c->err, sizeof c->err, "%s", why);
}

/* ------------------------------------------------------ broker frames */

int client_on_frame(struct stompc *c, struct frame *f)
{
    switch (f->cmd) {
    case CMD_MESSAGE: {
        /* what STOMP says a MESSAGE carries (subscription since 1.1), so
         * the message handed out has them */
        const char *missing = !frame_get(f, "destination") ? "destination"
                              : !frame_get(f, "message-id") ? "message-id"
                              : c->version >= STOMP_11 && !frame_get(f, "subscription") ? "subscription"
                                                                                        : NULL;
        if (missing) {
            frame_free(f);
            return client_lost(c, STOMPC_EPROTO, "MESSAGE without a %s header from %s", missing,
                               c->uri.brokers[c->broker].text);
        }
        if (!queue_message(c, f)) /* takes the frame */
            return client_lost(c, STOMPC_ENOMEM, "out of memory taking a MESSAGE from %s (it will be redelivered "
                               "unless its subscription was ack:auto)", c->uri.brokers[c->broker].text);
        return 0;
    }
    case CMD_RECEIPT: {
        const char *id = frame_get(f, "receipt-id");
        struct ofr *o = id ? pending_by_receipt(c, id) : NULL;
        if (o && o->user_receipt && wanted(c, CEV_RECEIPT)) {
            /* The notice first: without it the frame stays unconfirmed,
             * and is resent after the reconnect rather than forgotten. */
            struct cev *e = cev_new(CEV_RECEIPT, 0, NULL, o->receipt);
            if (!e) {
                frame_free(f);
                return client_lost(c, STOMPC_ENOMEM, "out of memory taking a RECEIPT from %s",
                                   c->uri.brokers[c->broker].text);
            }
            cev_push(c, e);
            o->user_receipt = false;
        }
        if (o)
            frame_done(c, o);
        else if (id && c->wait_id && !strcmp(id, c->wait_id))
            c->wait_status = 0; /* DISCONNECT's, which is not kept */
        frame_free(f);
        return 0;
    }
    case CMD_ERROR: {
        char why[800];
        net_describe_error(f, why, sizeof why);
        const char *rid = frame_get(f, "receipt-id");
        struct ofr *o = rid ? pending_by_receipt(c, rid) : NULL;
        if (o) {
            /* It names one of our frames: that one is refused, and is
             * not resent (it would only be refused again). */
            c->st.failed_frames++;
            frame_failed(c, o, STOMPC_EBROKER, why);
        } else if (rid && c->wait_id && !strcmp(rid, c->wait_id)) {
            c->wait_status = STOMPC_EBROKER;
            snprintf(c->wait_err, sizeof c->wait_err, "%s", why);
        }
        (void)client_event(c, CEV_ERROR, STOMPC_EBROKER, why, rid);
        frame_free(f);
        /* ERROR means the broker closes: do not wait to read the EOF. */
        return client_lost(c, STOMPC_EBROKER, "%s", why);
    }
    default: {
        char cmd[sizeof f->command];
        memcpy(cmd, f->command, sizeof cmd);
        frame_free(f);
        return client_lost(c, STOMPC_EPROTO, "unexpected %s frame from %s", cmd, c->uri.brokers[c->broker].text);
    }
    }
}

/* -------------------------------------------------------- the engine */

/* One pass of the engine, the only place that waits: up to wait_ms (0:
 * not at all, -1: until something happens) for any socket of the client,
 * then the I/O that is ready, the heart-beats, and the connection attempts
 * that are due. Returns how many sockets were ready, or < 0 when the
 * client stopped for good (a tcp:// connection lost, attempts exhausted). */
static int engine_run(struct stompc *c, int wait_ms)
{
    struct epoll_event evs[16];
    int n = epoll_wait(c->epfd, evs, (int)(sizeof evs / sizeof evs[0]), wait_ms);
    if (n < 0)
        n = 0; /* EINTR: the caller looks at its state and comes back */
    int64_t now = client_now();
    int rc;
    for (int k = 0; k < n; k++)
        if ((rc = net_dispatch(c, evs[k].data.u64, evs[k].events, now)) < 0)
            return rc;
    int64_t next;
    if (c->state == CS_CONNECTED && (rc = net_timers(c, now, &next)) < 0 && c->state != CS_LOST)
        return rc;
    if ((rc = failover_schedule(c, now, &next)) < 0)
        return rc;
    return n;
}

/* When the engine has work to do without I/O (monotonic ms, -1: never). */
static int64_t engine_next(const struct stompc *c, int64_t now)
{
    int64_t a = net_next_timer(c), b = failover_next_timer(c, now);
    return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

/* One step of progress before deadline. 1 progress (maybe), 0 deadline
 * passed, < 0 the client stopped (c->err says why). */
/* stompc_interrupt was called: the wait ends (once per call). */
static int interrupted(struct stompc *c)
{
    if (!c->interrupted)
        return 0;
    c->interrupted = 0;
    return client_fail(c, STOMPC_EINTR, "interrupted (stompc_interrupt) while waiting");
}

static int pump(struct stompc *c, int64_t deadline)
{
    int rc = interrupted(c);
    if (rc)
        return rc;
    int64_t now = client_now();
    int64_t t = engine_next(c, now);
    int wait = client_left(deadline);
    if (t >= 0) {
        int64_t in = t > now ? t - now : 0;
        if (wait < 0 || in < wait)
            wait = in > INT32_MAX ? INT32_MAX : (int)in;
    }
    int n = engine_run(c, wait);
    if (n < 0)
        return n;
    if ((rc = interrupted(c)))
        return rc;
    if (n == 0 && deadline >= 0 && client_now() >= deadline)
        return 0;
    return 1;
}

static int64_t conn_deadline(const struct stompc *c)
{
    return client_deadline(c->uri.failover ? c->uri.timeout : -1);
}

static int check(struct stompc *c);

/* Wait (blocking mode) until connected, before deadline. */
static int ensure_connected(struct stompc *c, int64_t deadline)
{
    while (c->state == CS_LOST) {
        int rc = pump(c, deadline);
        if (rc < 0)
            return rc;
        if (rc == 0 && c->state == CS_LOST)
            return client_fail(c, STOMPC_ETIMEDOUT, "no broker connection within the time limit; last error: %s",
                               c->connect_err[0] ? c->connect_err : "(still trying)");
    }
    return check(c);
}

/* Wait (blocking mode) until the output buffer is written up to `end`,
 * or the connection of generation gen is gone. 0, or < 0 when the client
 * stopped. */
/* Until what was queued up to end is written (or the connection changes),
 * before deadline (-1: none; a SEND waits as long as the broker's flow
 * control holds it, and stompc_interrupt ends that). */
static int drain(struct stompc *c, uint64_t gen, uint64_t end, int64_t deadline)
{
    while (c->gen == gen && c->state == CS_CONNECTED && c->out_written < end) {
        int rc = pump(c, deadline);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return client_fail(c, STOMPC_ETIMEDOUT, "%llu byte(s) not written in time: the broker does not "
                               "read them (its flow control holds this client?)",
                               (unsigned long long)(end - c->out_written));
    }
    return 0;
}

static int wait_receipt(struct stompc *c, const char *what)
{
    int64_t deadline = client_deadline(c->receipt_timeout);
    int rc = 0;
    while (c->wait_status == 1) {
        rc = pump(c, deadline);
        if (rc < 0)
            break;
        if (rc == 0 && c->wait_status == 1) {
            rc = client_fail(c, STOMPC_ETIMEDOUT, "no RECEIPT for the %s within %d ms", what, c->receipt_timeout);
            break;
        }
        rc = 0;
    }
    if (c->wait_status < 0) {
        rc = c->wait_status;
        snprintf(c->err, sizeof c->err, "%s", c->wait_err);
    } else if (c->wait_status == 0) {
        rc = 0;
    }
    free(c->wait_id);
    c->wait_id = NULL;
    c->wait_status = 0;
    return rc;
}

enum { TX_WAIT = 1, TX_BOUND = 2, TX_MORE = 4 };

#define MORE_BUFFER (64u << 10)
#define NB_OUT_LIMIT (4u << 20) /* non-blocking: bytes waiting to be written before EAGAIN */

/* Would one more tracked frame of len bytes exceed what may be kept? */
static bool keep_full(const struct stompc *c, size_t len)
{
    if (c->npending + c->nbacklog >= c->max_unreceipted)
        return true;
    return c->uri.max_cache_size > 0 && c->pending_bytes > 0 &&
           c->pending_bytes + len > (uint64_t)c->uri.max_cache_size;
}

/* Send a frame, taking it over. Frames with a receipt are kept on the
 * pending list until it comes, and so are resent by a failover; bound
 * frames (ACKs, transactions) belong to the current connection and are
 * never carried to the next one. In blocking mode the call returns once
 * the frame is written (with TX_WAIT, once receipted); in non-blocking
 * mode once it is queued. */
/* Give up a frame that is not pending (yet): freed, with its
 * subscription when it is one's SUBSCRIBE. */
static void discard(struct stompc *c, struct ofr *o)
{
    if (o->owned_by_sub)
        drop_frame(c, o);
    else
        ofr_free(o);
}

static int transmit(struct stompc *c, struct ofr *o, int flags)
{
    const char *what = frame_cmd_name(o->cmd);
    if (o->oom) {
        discard(c, o);
        return client_fail(c, STOMPC_ENOMEM, "out of memory making a %s frame", what);
    }
    bool nb = c->nonblocking;
    if (nb)
        flags &= ~TX_WAIT; /* its RECEIPT comes all the same */
    bool tracked = o->receipt != NULL;
    bool bound = flags & TX_BOUND;
    uint64_t seq = o->seq;
    int64_t deadline = conn_deadline(c);
    int rc;

    if (tracked) {
        /* Bound the memory kept for resending. */
        while (keep_full(c, o->body_len)) {
            if (nb) {
                discard(c, o);
                return client_fail(c, STOMPC_EAGAIN, "%zu frame(s) (%zu bytes) still without RECEIPT "
                                   "(max_unreceipted, maxCacheSize)", c->npending, c->pending_bytes);
            }
            rc = pump(c, deadline);
            if (rc <= 0) {
                discard(c, o);
                return rc < 0 ? rc
                              : client_fail(c, STOMPC_ETIMEDOUT, "%zu frames still without RECEIPT after %lld ms "
                                            "(max_unreceipted)", c->npending, (long long)c->uri.timeout);
            }
        }
        if (flags & TX_WAIT) {
            free(c->wait_id);
            if (!(c->wait_id = strdup(o->receipt))) {
                discard(c, o);
                return client_fail(c, STOMPC_ENOMEM, "out of memory sending a %s", what);
            }
            c->wait_status = 1;
        }
        pending_add(c, o);
    } else if (nb && (buf_used(&c->out) + c->backlog_bytes >= NB_OUT_LIMIT ||
                      (c->state == CS_LOST && c->npending + c->nbacklog >= c->max_unreceipted))) {
        ofr_free(o);
        return client_fail(c, STOMPC_EAGAIN, "%s: too much is waiting to be written", what);
    }
    bool replayed = false;
    for (;;) {
        if (c->state != CS_CONNECTED) {
            if (bound)
                rc = STOMPC_EIO;
            else if (nb && c->state == CS_LOST)
                rc = 0;
            else if (nb)
                rc = check(c);
            else
                rc = ensure_connected(c, deadline);
            if (rc < 0) {
                if (tracked) {
                    struct ofr *p = pending_by_seq(c, seq);
                    if (p)
                        drop_frame(c, p);
                    free(c->wait_id);
                    c->wait_id = NULL;
                    c->wait_status = 0;
                } else {
                    ofr_free(o);
                }
                if (bound)
                    return client_fail(c, STOMPC_EIO, "the connection this %s belongs to is gone", what);
                return rc;
            }
            if (tracked) {
                replayed = true; /* the (re)connection sends it */
                break;
            }
            if (c->state != CS_CONNECTED) { /* non-blocking, still connecting */
                backlog_add(c, o);
                return 0;
            }
        }
        uint64_t gen = c->gen;
        if ((rc = net_put(c, o, true)) < 0) {
            if (tracked) {
                struct ofr *p = pending_by_seq(c, seq);
                if (p)
                    drop_frame(c, p);
                free(c->wait_id);
                c->wait_id = NULL;
                c->wait_status = 0;
            } else {
                ofr_free(o);
            }
            return client_fail(c, rc, "out of memory sending a %s", what);
        }
        if (tracked)
            o->sent = true; /* o is the pending list's: RECEIPTs may free it from here on */
        uint64_t end = c->out_queued;
        if ((flags & TX_MORE) && buf_used(&c->out) < MORE_BUFFER) {
            /* written with what follows: one send for many frames */
            if (!tracked)
                ofr_free(o);
            return 0;
        }
        rc = net_write(c);
        if (rc == 0 && !nb)
            rc = drain(c, gen, end, -1);
        if (nb || (c->gen == gen && c->state == CS_CONNECTED))
            break; /* written (or, non-blocking, on its way) */
        if (rc < 0 && c->state != CS_LOST) {
            /* stopped for good. A tracked frame was settled by the loss. */
            if (!tracked)
                ofr_free(o);
            if (tracked && (flags & TX_WAIT))
                return wait_receipt(c, what);
            return rc;
        }
        if (!c->uri.failover || bound) {
            if (!tracked)
                ofr_free(o);
            if (tracked && (flags & TX_WAIT))
                return wait_receipt(c, what);
            return client_fail(c, c->last_status ? c->last_status : STOMPC_EIO, "%s", c->err);
        }
        if (tracked)
            continue; /* the reconnect resends it */
        if (c->out_written >= end) {
            ofr_free(o); /* in the kernel before the loss: fire-and-forget */
            return 0;
        }
        /* Not even written out whole: the broker cannot have it. Again. */
    }
    if (!tracked)
        ofr_free(o);
    if (replayed && !nb && c->state == CS_CONNECTED) {
        /* written with the replay: wait for that as for any write */
        uint64_t gen = c->gen;
        if ((rc = drain(c, gen, c->out_queued, -1)) < 0)
            return rc;
    }
    if (tracked && (flags & TX_WAIT))
        return wait_receipt(c, what);
    return 0;
}

/* ------------------------------------------------------------ the API */

static int check(struct stompc *c)
{
    if (!c)
        return STOMPC_EINVAL;
    if (c->state == CS_IDLE)
        return client_fail(c, STOMPC_ECLOSED, "not connected");
    if (c->state == CS_DEAD)
        return client_fail(c, STOMPC_ECLOSED, "not connected: %s", c->closed_why);
    return 0;
}

struct stompc *stompc_new(void)
{
    struct stompc *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = -1;
    c->state = CS_IDLE;
    c->last_failed = SIZE_MAX;
    TAILQ_INIT(&c->subs);
    TAILQ_INIT(&c->pending);
    TAILQ_INIT(&c->backlog);
    TAILQ_INIT(&c->txs);
    TAILQ_INIT(&c->events);
    if (net_init(c) != 0) {
        free(c);
        return NULL;
    }
    unsigned char r[16];
    random_bytes(r, sizeof r);
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(c->dupl_prefix + 2 * i, 3, "%02x", r[i]);
    random_bytes(&c->rng, sizeof c->rng);
    return c;
}

static void free_settings(struct stompc *c)
{
    free(c->login);
    free(c->passcode);
    free(c->host);
    free(c->client_id);
    free(c->accept_version);
    free(c->tls_ca);
    free(c->tls_cert);
    free(c->tls_key);
    c->tls_ca = c->tls_cert = c->tls_key = NULL;
    for (size_t i = 0; c->cheaders && i < c->ncheaders; i++) {
        free((char *)c->cheaders[i].name);
        free((char *)c->cheaders[i].value);
    }
    free(c->cheaders);
    c->login = c->passcode = c->host = c->client_id = c->accept_version = NULL;
    c->cheaders = NULL;
    c->ncheaders = 0;
}

/* Close every socket: the session's and the attempts'. */
static void client_stop(struct stompc *c)
{
    failover_abort_attempts(c);
    net_close(c);
}

static void destroy(struct stompc *c)
{
    client_stop(c);
    session_reset(c, STOMPC_ECLOSED, "client freed");
    struct cev *e;
    while ((e = TAILQ_FIRST(&c->events))) {
        cev_remove(c, e);
        cev_free(e);
    }
    free(c->wait_id);
    free_settings(c);
    failover_fini(c);
    uri_free(&c->uri);
    ctls_free(c);
    net_fini(c);
    free(c);
}

void stompc_free(struct stompc *c)
{
    if (!c)
        return;
    if (c->in_callback) {
        c->free_deferred = true; /* freed when the callback returns */
        return;
    }
    destroy(c);
}

/* CONNECT is never escaped, so its values cannot hold line breaks. */
static bool connect_value_ok(const char *v)
{
    return v && !strpbrk(v, "\r\n");
}

static bool versions_ok(const char *list)
{
    const char *p = list;
    if (!*p)
        return false;
    for (;;) {
        if (strncmp(p, "1.0", 3) && strncmp(p, "1.1", 3) && strncmp(p, "1.2", 3))
            return false;
        p += 3;
        if (!*p)
            return true;
        if (*p++ != ',')
            return false;
    }
}

/* *dst = a copy of s (NULL stays NULL); false when out of memory. */
static bool dup_opt(char **dst, const char *s)
{
    *dst = s ? strdup(s) : NULL;
    return !s || *dst;
}

static int take_settings(struct stompc *c, const struct stompc_options *opts)
{
    free_settings(c);
    bool ok = dup_opt(&c->login, opts->login) && dup_opt(&c->passcode, opts->passcode) &&
              dup_opt(&c->host, opts->host) &&
              dup_opt(&c->client_id, opts->client_id && *opts->client_id ? opts->client_id : NULL) &&
              dup_opt(&c->accept_version, opts->accept_version ? opts->accept_version : "1.0,1.1,1.2") &&
              dup_opt(&c->tls_ca, opts->tls_ca_file) && dup_opt(&c->tls_cert, opts->tls_cert_file) &&
              dup_opt(&c->tls_key, opts->tls_key_file);
    if (ok && opts->nheaders) {
        c->cheaders = calloc(opts->nheaders, sizeof *c->cheaders);
        ok = c->cheaders != NULL;
        for (size_t i = 0; ok && i < opts->nheaders; i++) {
            c->ncheaders = i + 1;
            char *n = strdup(opts->headers[i].name), *v = strdup(opts->headers[i].value);
            c->cheaders[i].name = n;
            c->cheaders[i].value = v;
            ok = n && v;
        }
    }
    if (!ok) {
        free_settings(c);
        return client_fail(c, STOMPC_ENOMEM, "out of memory");
    }
    return 0;
}

int stompc_connect_sized(struct stompc *c, const char *uri, const struct stompc_options *opts, size_t opts_size)
{
    static const struct stompc_options none;
    struct stompc_options given;
    if (c && opts) {
        if (abi_in(&given, sizeof given, opts, opts_size) != 0)
            return client_fail(c, STOMPC_EINVAL, "connect: the options set fields this libstompc (%s) does not know",
                               stompc_version());
        opts = &given;
    }
    if (!c)
        return STOMPC_EINVAL;
    if (c->in_callback)
        return client_fail(c, STOMPC_EBUSY, "stompc_connect cannot be called from a callback");
    if (c->state == CS_CONNECTED || c->state == CS_LOST)
        return client_fail(c, STOMPC_EINVAL, "already connected (stompc_disconnect first)");
    if (!opts)
        opts = &none;
    char err[512];
    failover_fini(c);
    uri_free(&c->uri);
    int prc = uri_parse(uri, &c->uri, err, sizeof err);
    if (prc == -ENOMEM)
        return client_fail(c, STOMPC_ENOMEM, "out of memory");
    if (prc != 0)
        return client_fail(c, STOMPC_EINVAL, "bad URI '%s': %s", uri ? uri : "(null)", err);

    const char *strs[] = {opts->login, opts->passcode, opts->host, opts->client_id};
    const char *names[] = {"login", "passcode", "host", "client_id"};
    for (size_t i = 0; i < 4; i++)
        if (strs[i] && !connect_value_ok(strs[i]))
            return client_fail(c, STOMPC_EINVAL, "option %s: line breaks are not allowed in CONNECT headers", names[i]);
    if (opts->accept_version && !versions_ok(opts->accept_version))
        return client_fail(c, STOMPC_EINVAL, "option accept_version: '%s' is not a list of 1.0, 1.1, 1.2",
                           opts->accept_version);
    if (opts->heart_beat_tx < 0 || opts->heart_beat_rx < 0)
        return client_fail(c, STOMPC_EINVAL, "heart-beat intervals must be >= 0 ms");
    for (size_t i = 0; i < opts->nheaders; i++) {
        const struct stompc_header *h = &opts->headers[i];
        if (!h->name || !*h->name || strpbrk(h->name, ":\r\n") || !connect_value_ok(h->value))
            return client_fail(c, STOMPC_EINVAL, "extra CONNECT header %zu: empty name, ':' or a line break", i);
    }
    int rc = take_settings(c, opts);
    if (rc < 0)
        return rc;
    if ((rc = ctls_setup(c, err, sizeof err)) < 0)
        return client_fail(c, rc, "%s", err);
    if (failover_init(c) != 0)
        return client_fail(c, STOMPC_ENOMEM, "out of memory");
    c->hb_cx = opts->heart_beat_tx;
    c->hb_cy = opts->heart_beat_rx;
    c->connect_timeout_opt = opts->connect_timeout > 0 ? opts->connect_timeout : 0;
    c->receipt_timeout = opts->receipt_timeout ? (opts->receipt_timeout < 0 ? -1 : opts->receipt_timeout) : 30000;
    c->max_frame = opts->max_frame ? opts->max_frame : 64u << 20;
    c->max_unreceipted = opts->max_unreceipted ? opts->max_unreceipted : 10000;

    session_reset(c, STOMPC_ECLOSED, "reconnected");
    c->ever_connected = false;
    c->flush_failures = 0;
    c->disconnecting = false;
    c->last_status = 0;
    failover_begin(c);
    c->state = CS_LOST; /* "to connect": the engine takes it from here */
    if (c->nonblocking) {
        rc = engine_run(c, 0);
        return rc < 0 ? rc : 0;
    }
    rc = ensure_connected(c, conn_deadline(c));
    if (rc < 0 && c->state != CS_CONNECTED) {
        client_stop(c);
        c->state = CS_IDLE;
    }
    return rc;
}

int stompc_disconnect(struct stompc *c, int timeout_ms)
{
    if (!c)
        return STOMPC_EINVAL;
    if (c->in_callback)
        return client_fail(c, STOMPC_EBUSY, "stompc_disconnect cannot be called from a callback");
    if (c->state == CS_IDLE)
        return 0;
    int64_t deadline = client_deadline(timeout_ms);
    int rc = 0;
    if (c->state != CS_DEAD) {
        /* Everything receipted (and written) first: a DISCONNECT would not
         * wait for a reconnect to resend them. */
        while (c->npending || c->nbacklog || (c->state == CS_CONNECTED && buf_used(&c->out))) {
            if (c->state == CS_CONNECTED && buf_used(&c->out) && net_write(c) < 0 && c->state != CS_LOST)
                break;
            int r = pump(c, deadline);
            if (r <= 0) {
                rc = r < 0 ? r
                           : client_fail(c, STOMPC_ETIMEDOUT, "disconnect: %zu frame(s) still without RECEIPT",
                                         c->npending + c->nbacklog);
                break;
            }
        }
    }
    struct ofr *o = c->state == CS_CONNECTED ? ofr_new(c, CMD_DISCONNECT) : NULL;
    if (o) {
        char id[48];
        snprintf(id, sizeof id, "_stompc-bye-%llu", (unsigned long long)o->seq);
        ofr_set_receipt(o, id);
        free(c->wait_id);
        c->wait_id = o->oom ? NULL : strdup(id);
        /* (out of memory: just close; the broker sees the end as well) */
        if (c->wait_id && net_put(c, o, true) == 0) {
            c->wait_status = 1;
            /* a connection lost now is not to be reconnected */
            c->disconnecting = true;
            int r = net_write(c);
            while (r >= 0 && c->state == CS_CONNECTED && c->wait_status == 1) {
                r = pump(c, deadline);
                if (r == 0) {
                    if (!rc)
                        rc = client_fail(c, STOMPC_ETIMEDOUT, "disconnect: no RECEIPT within %d ms", timeout_ms);
                    break;
                }
            }
        }
        ofr_free(o);
        free(c->wait_id);
        c->wait_id = NULL;
        c->wait_status = 0;
    }
    client_stop(c);
    session_reset(c, STOMPC_ECLOSED, "disconnected before its RECEIPT");
    c->gen++;
    c->state = CS_IDLE;
    c->disconnecting = false;
    return rc;
}

static const char *const reserved_send[] = {"destination", "content-length", "receipt", "transaction", NULL};
static const char *const reserved_sub[] = {"destination", "id", "ack", "receipt", NULL};

static int add_extra(struct stompc *c, struct ofr *o, const struct stompc_header *h, size_t n,
                     const char *const *reserved)
{
    if (n && !h)
        return client_fail(c, STOMPC_EINVAL, "%zu extra headers, and no array of them (headers is NULL)", n);
    for (size_t i = 0; i < n; i++) {
        if (!h[i].name || !*h[i].name || !h[i].value)
            return client_fail(c, STOMPC_EINVAL, "extra header %zu has no name or no value", i);
        for (const char *const *r = reserved; *r; r++)
            if (!strcmp(h[i].name, *r))
                return client_fail(c, STOMPC_EINVAL, "header '%s' is set by the library, not as an extra header",
                                   *r);
        ofr_add(o, h[i].name, h[i].value);
    }
    return 0;
}

/* Calls that need the connection itself (transactions, acks): in
 * blocking mode wait for it; in non-blocking mode STOMPC_EAGAIN while the
 * client is (re)connecting. */
static int need_connection(struct stompc *c)
{
    if (c->state == CS_CONNECTED)
        return 0;
    if (!c->nonblocking)
        return ensure_connected(c, conn_deadline(c));
    if (c->state == CS_LOST)
        return client_fail(c, STOMPC_EAGAIN, "not connected right now (connecting)");
    return check(c);
}

/* Before a frame in a transaction: is it still alive? */
static int tx_check(struct stompc *c, const char *tx)
{
    struct ctx *t = tx_find(c, tx);
    if (!t)
        return client_fail(c, STOMPC_EINVAL, "transaction '%s' was not begun", tx);
    if (t->failed)
        return client_fail(c, STOMPC_ETXFAILED, "transaction '%s' was lost by a failover; abort it", tx);
    return 0;
}

int stompc_send_sized(struct stompc *c, const char *destination, const void *body, size_t len,
                      const struct stompc_send_opts *opts, size_t opts_size)
{
    static const struct stompc_send_opts none;
    struct stompc_send_opts given;
    if (c && opts) {
        if (abi_in(&given, sizeof given, opts, opts_size) != 0)
            return client_fail(c, STOMPC_EINVAL, "send: the options set fields this libstompc (%s) does not know",
                               stompc_version());
        opts = &given;
    }
    int rc = check(c);
    if (rc)
        return rc;
    if (!opts)
        opts = &none;
    if (!destination || !*destination)
        return client_fail(c, STOMPC_EINVAL, "send: no destination");
    if (len && !body)
        return client_fail(c, STOMPC_EINVAL, "send: no body for %zu bytes", len);
    if (opts->wait && c->nonblocking)
        return client_fail(c, STOMPC_EINVAL, "send: wait is not for non-blocking mode (ask for a receipt)");
    const char *tx = opts->transaction;
    if (tx) {
        /* a transaction lost by a failover says so, connected or not */
        if ((rc = tx_check(c, tx)) < 0 || (rc = need_connection(c)) < 0 || (rc = tx_check(c, tx)) < 0)
            return rc;
    }
    struct ofr *o = ofr_new(c, CMD_SEND);
    if (!o)
        return client_fail(c, STOMPC_ENOMEM, "out of memory");
    ofr_add(o, "destination", destination);
    if (opts->persistent) {
        char id[64];
        ofr_add(o, "persistent", "true");
        snprintf(id, sizeof id, "%s-%llu", c->dupl_prefix, (unsigned long long)++c->dupl_counter);
        ofr_add(o, DUPL_HEADER, id);
    }
    if (tx)
        ofr_add(o, "transaction", tx);
    if (opts->content_type)
        ofr_add(o, "content-type", opts->content_type);
    if ((rc = add_extra(c, o, opts->headers, opts->nheaders, reserved_send)) < 0) {
        ofr_free(o);
        return rc;
    }
    ofr_set_body(o, body, len);
    if (opts->receipt) {
        ofr_set_receipt(o, opts->receipt);
        o->user_receipt = true;
    } else if (opts->wait || (c->uri.failover && (opts->persistent || c->uri.track_messages) && !tx)) {
        auto_receipt(o);
    }
    uint64_t gen = c->gen;
    rc = transmit(c, o, (opts->wait ? TX_WAIT : 0) | (tx ? TX_BOUND : 0) | (opts->more && !opts->wait ? TX_MORE : 0));
    if (rc == 0)
        c->st.messages_sent++;
    else if (tx && c->uri.failover && c->gen != gen && rc != STOMPC_ETXFAILED)
        rc = client_fail_cause(c, STOMPC_ETXFAILED, "transaction '%s' was lost by a failover", tx);
    return rc;
}

/* The ack header's values, by enum stompc_ack. */
static const char *const ack_modes[] = {"auto", "client", "client-individual"};

int stompc_ack_mode(const char *name, enum stompc_ack *out)
{
    for (size_t i = 0; i < sizeof ack_modes / sizeof ack_modes[0]; i++) {
        if (name && !strcmp(name, ack_modes[i])) {
            *out = (enum stompc_ack)i;
            return 0;
        }
    }
    return STOMPC_EINVAL;
}

int stompc_subscribe_sized(struct stompc *c, const char *destination, const struct stompc_sub_opts *opts,
                           size_t opts_size)
{
    static const struct stompc_sub_opts none;
    struct stompc_sub_opts given;
    if (c && opts) {
        if (abi_in(&given, sizeof given, opts, opts_size) != 0)
            return client_fail(c, STOMPC_EINVAL, "subscribe: the options set fields this libstompc (%s) does not know",
                               stompc_version());
        opts = &given;
    }
    int rc = check(c);
    if (rc)
        return rc;
    if (!opts)
        opts = &none;
    if (!destination || !*destination)
        return client_fail(c, STOMPC_EINVAL, "subscribe: no destination");
    const char *id = opts->id && *opts->id ? opts->id : destination;
    if (sub_find(c, id))
        return client_fail(c, STOMPC_EINVAL, "subscribe: id '%s' is already in use", id);
    if (opts->durable_name && !c->client_id)
        return client_fail(c, STOMPC_EINVAL, "subscribe: a durable subscription needs a client_id (stompc_options)");
    if ((unsigned)opts->ack > STOMPC_ACK_CLIENT_INDIVIDUAL)
        return client_fail(c, STOMPC_EINVAL, "subscribe: bad ack mode %d", (int)opts->ack);
    if (opts->prefetch < 0)
        return client_fail(c, STOMPC_EINVAL, "subscribe: prefetch must be >= 0");

    struct ofr *o = ofr_new(c, CMD_SUBSCRIBE);
    if (!o)
        return client_fail(c, STOMPC_ENOMEM, "out of memory");
    ofr_add(o, "id", id);
    ofr_add(o, "destination", destination);
    ofr_add(o, "ack", ack_modes[opts->ack]);
    if (opts->selector)
        ofr_add(o, "selector", opts->selector);
    if (opts->prefetch) {
        char n[24];
        snprintf(n, sizeof n, "%d", opts->prefetch);
        ofr_add(o, "activemq.prefetchSize", n);
    }
    if (opts->durable_name)
        ofr_add(o, "activemq.subscriptionName", opts->durable_name);
    if ((rc = add_extra(c, o, opts->headers, opts->nheaders, reserved_sub)) < 0) {
        ofr_free(o);
        return rc;
    }
    /* Always receipted: a refused subscription fails here rather than being
     * re-sent (and refused) after every reconnect. */
    auto_receipt(o);
    struct csub *s = calloc(1, sizeof *s);
    if (!s || !(s->id = strdup(id)) || o->oom) {
        if (s)
            free(s->id);
        free(s);
        ofr_free(o);
        return client_fail(c, STOMPC_ENOMEM, "out of memory");
    }
    o->owned_by_sub = true;
    s->frame = o;
    TAILQ_INSERT_TAIL(&c->subs, s, link);
    return transmit(c, o, TX_WAIT);
}

int stompc_unsubscribe(struct stompc *c, const char *id, unsigned flags)
{
    int rc = check(c);
    if (rc)
        return rc;
    if (!id || !*id)
        return client_fail(c, STOMPC_EINVAL, "unsubscribe: no id");
    struct csub *s = sub_find(c, id);
    const char *durable = NULL;
    if (s)
        durable = ofr_get(s->frame, "activemq.subscriptionName");
    else if (flags & STOMPC_REMOVE_DURABLE)
        durable = id; /* an inactive durable subscription, named by id */
    else
        return client_fail(c, STOMPC_EINVAL, "unsubscribe: no subscription '%s'", id);
    if ((flags & STOMPC_REMOVE_DURABLE) && !durable)
        return client_fail(c, STOMPC_EINVAL, "unsubscribe: '%s' is not a durable subscription", id);
    if ((flags & STOMPC_REMOVE_DURABLE) && !c->client_id)
        return client_fail(c, STOMPC_EINVAL, "unsubscribe: removing a durable subscription needs a client_id");

    if (c->state != CS_CONNECTED && !(flags & STOMPC_REMOVE_DURABLE) && c->uri.failover) {
        /* (re)connecting: the subscription is simply not carried over */
        if (s)
            sub_free(c, s);
        return 0;
    }
    struct ofr *o = ofr_new(c, CMD_UNSUBSCRIBE);
    if (!o)
        return client_fail(c, STOMPC_ENOMEM, "out of memory");
    ofr_add(o, "id", id);
    if (flags & STOMPC_REMOVE_DURABLE)
        ofr_add(o, "activemq.subscriptionName", durable);
    if (o->oom) {
        ofr_free(o);
        return client_fail(c, STOMPC_ENOMEM, "out of memory");
    }
    if (s)
        sub_free(c, s);
    /* Removing a durable subscription must survive a failover: tracked. */
    if ((flags & STOMPC_WAIT) || ((flags & STOMPC_REMOVE_DURABLE) && c->uri.failover))
        auto_receipt(o);
    return transmit(c, o, (flags & STOMPC_WAIT) ? TX_WAIT : 0);
}

static int ack_or_nack(struct stompc *c, enum stomp_cmd cmd, const struct stompc_msg *m, const char *tx,
                       unsigned flags)
{
    int rc = check(c);
    if (rc)
        return rc;
    if (!m)
        return client_fail(c, STOMPC_EINVAL, "%s: no message", frame_cmd_name(cmd));
    const struct cmsg *cm = container_of(m, const struct cmsg, pub);
    if (cm->owner != c)
        return client_fail(c, STOMPC_EINVAL, "%s: the message came from another client", frame_cmd_name(cmd));
    if (!(c->nonblocking && c->state == CS_LOST) && (rc = need_connection(c)) < 0)
        return rc;
    if (cm->gen != c->gen) {
        /* Delivered on a connection that is gone: the broker gives the
         * message to someone again; there is nothing to acknowledge. */
        c->st.stale_acks++;
        return 0;
    }
    if (cmd == CMD_NACK && c->version == STOMP_10)
        return client_fail(c, STOMPC_EINVAL, "NACK needs STOMP 1.1 or later (connected with 1.0)");
    if (tx && (rc = tx_check(c, tx)) < 0)
        return rc;
    struct ofr *o = ofr_new(c, cmd);
    if (!o)
        return client_fail(c, STOMPC_ENOMEM, "out of memory");
    if (c->version >= STOMP_12) {
        if (!m->ack_id) {
            ofr_free(o);
            return client_fail(c, STOMPC_EINVAL, "%s: message '%s' has no ack header (from an ack:auto subscription?)",
                               frame_cmd_name(cmd), m->message_id ? m->message_id : "?");
        }
        ofr_add(o, "id", m->ack_id);
    } else {
        if (!m->message_id) {
            ofr_free(o);
            return client_fail(c, STOMPC_EINVAL, "%s: message has no message-id", frame_cmd_name(cmd));
        }
        ofr_add(o, "message-id", m->message_id);
        if (c->version == STOMP_11 && m->subscription)
            ofr_add(o, "subscription", m->subscription);
    }
    if (tx)
        ofr_add(o, "transaction", tx);
    if (flags & STOMPC_WAIT)
        auto_receipt(o);
    uint64_t gen = c->gen;
    rc = transmit(c, o, TX_BOUND | ((flags & STOMPC_WAIT) ? TX_WAIT : 0));
    if (rc == STOMPC_EIO && c->uri.failover && c->gen != gen && !tx) {
        c->st.stale_acks++; /* lost with its connection; redelivered */
        return (flags & STOMPC_WAIT) ? rc : 0;
    }
    if (rc < 0 && tx && c->uri.failover && c->gen != gen)
        return client_fail_cause(c, STOMPC_ETXFAILED, "transaction '%s' was lost by a failover", tx);
    return rc;
}

int stompc_ack(struct stompc *c, const struct stompc_msg *m, const char *transaction, unsigned flags)
{
    return ack_or_nack(c, CMD_ACK, m, transaction, flags);
}

int stompc_nack(struct stompc *c, const struct stompc_msg *m, const char *transaction, unsigned flags)
{
    return ack_or_nack(c, CMD_NACK, m, transaction, flags);
}

int stompc_begin(struct stompc *c, const char *transaction)
{
    int rc = check(c);
    if (rc)
        return rc;
    if (!transaction || !*transaction)
        return client_fail(c, STOMPC_EINVAL, "begin: no transaction name");
    if (tx_find(c, transaction))
        return client_fail(c, STOMPC_EINVAL, "begin: transaction '%s' is already open", transaction);
    if ((rc = need_connection(c)) < 0)
        return rc;
    struct ctx *t = calloc(1, sizeof *t);
    struct ofr *o = ofr_new(c, CMD_BEGIN);
    if (o)
        ofr_add(o, "transaction", transaction);
    if (!t || !(t->name = strdup(transaction)) || !o || o->oom) {
        free(t);
        ofr_free(o);
        return client_fail(c, STOMPC_ENOMEM, "out of memory");
    }
    TAILQ_INSERT_TAIL(&c->txs, t, link);
    rc = transmit(c, o, TX_BOUND);
    if (rc < 0 && (t = tx_find(c, transaction)))
        tx_free(c, t);
    return rc;
}

/* COMMIT or ABORT: the transaction ends either way. */
static int tx_end(struct stompc *c, enum stomp_cmd cmd, const char *transaction)
{
    int rc = check(c);
    if (rc)
        return rc;
    if (!transaction)
        return client_fail(c, STOMPC_EINVAL, "%s: no transaction name", frame_cmd_name(cmd));
    struct ctx *t = tx_find(c, transaction);
    if (!t)
        return client_fail(c, STOMPC_EINVAL, "%s: transaction '%s' was not begun", frame_cmd_name(cmd), transaction);
    if (!t->failed && (rc = need_connection(c)) < 0)
        return rc;
    if (t->failed) {
        tx_free(c, t);
        if (cmd == CMD_ABORT)
            return 0; /* the broker dropped it with the connection */
        return client_fail(c, STOMPC_ETXFAILED,
                           "transaction '%s' was lost by a failover: nothing of it was committed", transaction);
    }
    struct ofr *o = ofr_new(c, cmd);
    if (!o)
        return client_fail(c, STOMPC_ENOMEM, "out of memory");
    ofr_add(o, "transaction", transaction);
    if (cmd == CMD_COMMIT)
        auto_receipt(o);
    rc = transmit(c, o, TX_BOUND | (cmd == CMD_COMMIT ? TX_WAIT : 0));
    if ((t = tx_find(c, transaction)))
        tx_free(c, t);
    if (rc == STOMPC_EIO && c->uri.failover) {
        if (cmd == CMD_ABORT)
            return 0; /* the broker drops it with the connection anyway */
        rc = STOMPC_ETXFAILED;
    }
    return rc;
}

int stompc_commit(struct stompc *c, const char *transaction)
{
    return tx_end(c, CMD_COMMIT, transaction);
}

int stompc_abort(struct stompc *c, const char *transaction)
{
    return tx_end(c, CMD_ABORT, transaction);
}

int stompc_flush(struct stompc *c, int timeout_ms)
{
    int rc = check(c);
    if (rc && !(c && c->state == CS_DEAD && c->flush_failures))
        return rc; /* (a dead client still tells what it failed to deliver) */
    int64_t deadline = client_deadline(timeout_ms);
    if (c->state == CS_CONNECTED && buf_used(&c->out)) {
        /* frames sent with more and no receipt are only buffered */
        rc = net_write(c);
        if (rc == 0 && !c->nonblocking)
            rc = drain(c, c->gen, c->out_queued, deadline); /* helper-97: it waited for ever */
        if (rc < 0 && c->state != CS_LOST)
            return rc;
    }
    while (c->npending || c->nbacklog || (c->state == CS_CONNECTED && buf_used(&c->out))) {
        rc = pump(c, deadline);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return client_fail(c, STOMPC_ETIMEDOUT, "flush: %zu frame(s) still without RECEIPT after %d ms",
                               c->npending + c->nbacklog, timeout_ms);
    }
    if (c->flush_failures) {
        unsigned n = c->flush_failures;
        c->flush_failures = 0;
        return client_fail(c, c->flush_status, "%u frame(s) failed since the last flush; the last: %s", n,
                           c->flush_err);
    }
    return 0;
}

/* ------------------------------------------------------------ receive */

int stompc_set_callbacks_sized(struct stompc *c, const struct stompc_callbacks *cb, void *ud, size_t cb_size)
{
    if (!c)
        return STOMPC_EINVAL;
    if (cb) {
        if (abi_in(&c->cb, sizeof c->cb, cb, cb_size) != 0) {
            memset(&c->cb, 0, sizeof c->cb);
            return client_fail(c, STOMPC_EINVAL, "set_callbacks: callbacks this libstompc (%s) does not know",
                               stompc_version());
        }
    } else
        memset(&c->cb, 0, sizeof c->cb);
    c->ud = ud;
    return 0;
}

static void deliver(struct stompc *c, struct cev *e)
{
    c->in_callback = true;
    switch (e->kind) {
    case CEV_MESSAGE: {
        struct cmsg *m = e->msg;
        e->msg = NULL;
        c->nmessages--;
        c->cb.on_message(c, &m->pub, c->ud);
        break;
    }
    case CEV_RECEIPT:
        if (c->cb.on_receipt)
            c->cb.on_receipt(c, e->receipt, c->ud);
        break;
    case CEV_ERROR:
        if (c->cb.on_error)
            c->cb.on_error(c, e->status, e->text, e->receipt, c->ud);
        break;
    case CEV_RECONNECT:
        if (c->cb.on_reconnect) {
            struct stompc_stats st;
            stompc_get_stats(c, &st);
            c->cb.on_reconnect(c, e->text, &st, c->ud);
        }
        break;
    }
    c->in_callback = false;
}

/* Dispatch the events queued now (not those the callbacks cause, so a
 * busy callback cannot keep us here). Messages only with on_message. */
static int dispatch_ready(struct stompc *c, bool messages)
{
    bool take_messages = messages && c->cb.on_message;
    /* Only messages queued and they are not for callbacks: nothing to do
     * (without this a poll-style receiver walked its whole backlog on
     * every call). */
    if (!take_messages && c->nevents == c->nmessages)
        return 0;
    size_t budget = c->nevents;
    struct cev *e, *next;
    int n = 0;
    for (e = TAILQ_FIRST(&c->events); e && budget; e = next, budget--) {
        next = TAILQ_NEXT(e, link);
        if (e->kind == CEV_MESSAGE && !take_messages)
            continue;
        cev_remove(c, e);
        deliver(c, e);
        cev_free(e);
        n++;
        if (c->free_deferred)
            break;
    }
    return n;
}

int stompc_receive(struct stompc *c, struct stompc_msg **out, int timeout_ms)
{
    if (out)
        *out = NULL;
    if (!c || !out)
        return STOMPC_EINVAL;
    if (c->in_callback)
        return client_fail(c, STOMPC_EBUSY, "stompc_receive cannot be called from a callback");
    int64_t deadline = client_deadline(timeout_ms);
    for (;;) {
        dispatch_ready(c, false);
        if (c->free_deferred) {
            destroy(c);
            return STOMPC_ECLOSED;
        }
        struct cev *e;
        TAILQ_FOREACH(e, &c->events, link)
            if (e->kind == CEV_MESSAGE)
                break;
        if (e) {
            cev_remove(c, e);
            *out = &e->msg->pub;
            e->msg = NULL;
            c->nmessages--;
            cev_free(e);
            return 0;
        }
        int rc = check(c);
        if (rc)
            return rc;
        rc = pump(c, deadline);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            if (c->state == CS_LOST)
                return client_fail_cause(c, STOMPC_ETIMEDOUT, "no message within %d ms, reconnecting", timeout_ms);
            return client_fail(c, STOMPC_ETIMEDOUT, "no message within %d ms", timeout_ms);
        }
    }
}

int stompc_run(struct stompc *c, int timeout_ms)
{
    if (!c)
        return STOMPC_EINVAL;
    if (c->in_callback)
        return client_fail(c, STOMPC_EBUSY, "stompc_run cannot be called from a callback");
    int64_t deadline = client_deadline(timeout_ms);
    for (;;) {
        int n = dispatch_ready(c, true);
        if (c->free_deferred) {
            destroy(c);
            return n;
        }
        if (n > 0)
            return n;
        int rc = check(c);
        if (rc)
            return rc;
        rc = pump(c, deadline);
        if (rc <= 0)
            return rc;
    }
}

int stompc_dispatch(struct stompc *c)
{
    return stompc_run(c, 0);
}

/* ------------------------------------------------------- event loops */

int stompc_set_nonblocking(struct stompc *c, bool on)
{
    if (!c)
        return STOMPC_EINVAL;
    if (c->in_callback)
        return client_fail(c, STOMPC_EBUSY, "stompc_set_nonblocking cannot be called from a callback");
    c->nonblocking = on;
    return 0;
}

int stompc_interrupt(struct stompc *c)
{
    if (!c)
        return STOMPC_EINVAL;
    c->interrupted = 1;
    net_interrupt(c);
    return 0;
}

int stompc_fd(const struct stompc *c)
{
    return c ? c->epfd : -1;
}

int stompc_events(const struct stompc *c)
{
    return c && net_any_open(c) ? POLLIN : 0;
}

/* Are callbacks waiting to run? */
static bool dispatchable(const struct stompc *c)
{
    return c->nevents > (c->cb.on_message ? 0 : c->nmessages);
}

int stompc_timeout(const struct stompc *c)
{
    if (!c)
        return -1;
    if (dispatchable(c))
        return 0;
    if (c->state == CS_CONNECTED && buf_used(&c->out) && !(c->ev & EPOLLOUT))
        return 0; /* frames sent with more, to write */
    int64_t now = client_now();
    int64_t t = engine_next(c, now);
    if (t < 0)
        return -1;
    t -= now;
    return t <= 0 ? 0 : t > INT32_MAX ? INT32_MAX : (int)t;
}

int stompc_step(struct stompc *c)
{
    if (!c)
        return STOMPC_EINVAL;
    if (c->in_callback)
        return client_fail(c, STOMPC_EBUSY, "stompc_step cannot be called from a callback");
    int rc = 0;
    if (c->state == CS_CONNECTED && buf_used(&c->out))
        (void)net_write(c); /* frames sent with more */
    if (c->state == CS_CONNECTED || c->state == CS_LOST)
        rc = engine_run(c, 0);
    int n = dispatch_ready(c, true);
    if (c->free_deferred) {
        destroy(c);
        return n;
    }
    if (rc < 0)
        return rc;
    if (n > 0)
        return n;
    rc = check(c);
    return rc < 0 ? rc : 0;
}

int stompc_get_stats_sized(const struct stompc *c, struct stompc_stats *out, size_t out_size)
{
    if (!c || !out)
        return STOMPC_EINVAL;
    struct stompc_stats st = c->st;
    bool up = c->state == CS_CONNECTED;
    st.broker = up ? c->uri.brokers[c->broker].text : NULL;
    st.version = !up ? 0 : c->version == STOMP_12 ? 12 : c->version == STOMP_11 ? 11 : 10;
    st.unreceipted = c->npending;
    abi_out(out, out_size, &st, sizeof st);
    return 0;
}
