/* stompd-bench: a load generator for STOMP brokers on libstompc, as
 * redis-benchmark is to Redis. Producer and consumer threads (one client
 * object each) stamp every body with (run, producer, sequence, send time),
 * so the consumers measure end-to-end latency and account for every
 * message: a missing or duplicated one makes the run fail, by name. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"
#include "stompc.h"

#define PROG "stompd-bench"
#define STAMP_MAGIC 0x53424e43u /* "CNBS" little-endian: ours */
#define FLAG_WARMUP 1u
#define RECV_SLICE_MS 100       /* consumers look at the clock this often when idle */

static const char usage[] =
    "usage: " PROG " [options]\n"
    "\n"
    "Load a STOMP broker with producer and consumer threads and report rates,\n"
    "end-to-end latency and whether every message arrived exactly once.\n"
    "\n"
    "  --url URL            tcp://host:port, ssl://host:port (TLS) or\n"
    "                       failover:(tcp://h1:p1,...)?options (default\n"
    "                       tcp://127.0.0.1:61613)\n"
    "  --ca FILE            ssl:// brokers: the PEM CA their certificate must\n"
    "                       chain to (default: the system's CAs)\n"
    "  --dest DEST          /queue/NAME or /topic/NAME (default /queue/bench)\n"
    "  -p, --producers N    producer threads (default 1)\n"
    "  -c, --consumers N    consumer threads (default 1); for a topic each is a\n"
    "                       subscriber and gets every message. 0: send only\n"
    "                       (nothing is checked)\n"
    "  -n, --count N        messages to send in all, split over the producers\n"
    "                       (default 100000)\n"
    "  --duration SEC       send for SEC seconds instead of --count messages\n"
    "  -s, --size BYTES     body size (default 256, at least 32: the stamp)\n"
    "  --persistent         send persistent:true\n"
    "  --receipt-every K    every K-th SEND asks for a RECEIPT and the producer\n"
    "                       waits for it: 1 = synchronous sends, 0 = never\n"
    "                       (default 0: pipelined)\n"
    "  --batch              pipelined sends write many frames per system call\n"
    "                       (libstompc's more flag, up to 64 KiB): a client\n"
    "                       that batches; not with --rate\n"
    "  --ack MODE           auto, client or client-individual (default auto);\n"
    "                       client acks cumulatively every min(prefetch/2, 500)\n"
    "  --selector SQL       subscribe with this JMS selector\n"
    "  --topics N           producers send round-robin over N destinations,\n"
    "                       DEST.0 to DEST.N-1 (consumers then need --sub-dest)\n"
    "  --sub-dest DEST      consumers subscribe to DEST (e.g. a wildcard,\n"
    "                       /topic/bench.*) instead of --dest\n"
    "  --wildcard-subs N    one more connection holds N wildcard subscriptions\n"
    "                       that match none of the destinations sent to\n"
    "                       (DEST.*.xK and DEST.xK.*, alternately): the\n"
    "                       broker's wildcard index holds them all\n"
    "  --header NAME:VALUE  add this header to every SEND (repeatable, up to 16;\n"
    "                       e.g. AMQ_SCHEDULED_DELAY:60000)\n"
    "  --prefetch N         activemq.prefetchSize and prefetch-count (default:\n"
    "                       the broker's)\n"
    "  --rate N             messages/s per producer (default: as fast as possible)\n"
    "  --warmup SEC         send (and check) for SEC seconds first, outside the\n"
    "                       figures (default 0)\n"
    "  --stall-timeout SEC  give up (exit 1) when a producer has completed no\n"
    "                       SEND for SEC seconds: the broker's flow control\n"
    "                       holds it, e.g. a queue nobody consumes is full\n"
    "                       (default 60; 0: wait for ever)\n"
    "  --drain-timeout MS   after the producers finish, how long consumers wait\n"
    "                       without a message before declaring the rest missing\n"
    "                       (default 5000)\n"
    "  --idle N             first open N connections that CONNECT and sit idle\n"
    "                       (held until the end of the run)\n"
    "  --pid PID            the broker's process: report its RSS (VmRSS) before\n"
    "                       and after the idle connections, and bytes per one\n"
    "  --idle-settle SEC    wait this long before reading the RSS again (default 2)\n"
    "  --receive MODE       callback (stompc_run, default) or poll (stompc_receive)\n"
    "  --host HOST          CONNECT's host header (default: the URL's host;\n"
    "                       RabbitMQ takes it as the virtual host: --host /)\n"
    "  --login USER, --passcode PASS\n"
    "  --json               print one JSON object instead of the text report\n"
    "  -q, --quiet          no progress notes on standard error\n"
    "  -V, --version        the version of the program and of libstompc\n"
    "  -h, --help           this text\n"
    "\n"
    "Each body starts with a 32-byte stamp (magic, run id, producer, flags,\n"
    "sequence, CLOCK_MONOTONIC send time in ns) padded with 'x' to --size;\n"
    "messages of another run are counted as foreign and otherwise ignored.\n"
    "Rates: sent = measured messages / time from the first measured send to the\n"
    "last; received = measured deliveries (messages x subscribers for a topic)\n"
    "/ time from the first measured send to the last delivery; MB = 10^6 bytes\n"
    "of body. Latency is end to end (consumer callback minus the body's send\n"
    "time); with --receipt-every K > 0 the receipt round trip is reported too.\n"
    "\n"
    "Exit status: 0 when every message sent was received exactly once (or,\n"
    "with --ack client or client-individual, again only as a redelivery), 1\n"
    "when some are missing or duplicated (named on standard error) or a\n"
    "client failed, 2 on bad usage.\n";

/* ---------------------------------------------------------------- setup */

struct config {
    const char *url, *dest;
    const char *login, *passcode, *host;
    const char *ca;
    int producers, consumers;
    long long count;
    double duration;      /* > 0: time mode */
    size_t size;
    bool persistent;
    long receipt_every;
    bool batch;
    enum stompc_ack ack;
    int prefetch;
    const char *selector;
    double rate;
    double warmup;
    int drain_timeout_ms;
    double stall_timeout;
    long idle;
    long pid;
    double idle_settle;
    bool poll_receive;
    bool json, quiet;
    bool topic;
    uint32_t run;
    long topics;
    const char *sub_dest;
    long wildcard_subs;
    struct stompc_header headers[16];
    size_t nheaders;
};

static struct config cfg = {
    .url = "tcp://127.0.0.1:61613",
    .dest = "/queue/bench",
    .producers = 1,
    .consumers = 1,
    .count = 100000,
    .size = 256,
    .drain_timeout_ms = 5000,
    .stall_timeout = 60,
    .idle_settle = 2.0,
    .pid = -1,
};

/* The stamp at the start of every body (native byte order: the consumer
 * runs on the same machine, and so does the clock it is compared with). */
struct stamp {
    uint32_t magic;
    uint32_t run;
    uint32_t producer;
    uint32_t flags;
    uint64_t seq;
    uint64_t sent_ns;
};
_Static_assert(sizeof(struct stamp) == 32, "the stamp is 32 bytes");

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until_ns(uint64_t t)
{
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u), .tv_nsec = (long)(t % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void note(const char *fmt, ...)
{
    if (cfg.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs(PROG ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ------------------------------------------------------------- bitmaps */

/* Which sequence numbers of one producer a consumer has seen. Owned by one
 * thread, grown on demand (a time-mode run does not know its count). */
struct bitmap {
    uint64_t *w;
    size_t nwords;
};

static void bitmap_grow(struct bitmap *b, uint64_t bit)
{
    size_t need = (size_t)(bit / 64) + 1;
    if (need <= b->nwords)
        return;
    size_t n = b->nwords ? b->nwords : 1024;
    while (n < need)
        n *= 2;
    uint64_t *w = realloc(b->w, n * sizeof *w);
    if (!w) {
        fprintf(stderr, PROG ": out of memory\n");
        abort();
    }
    memset(w + b->nwords, 0, (n - b->nwords) * sizeof *w);
    b->w = w;
    b->nwords = n;
}

/* Set a bit; true when it was already set. */
static bool bitmap_test_set(struct bitmap *b, uint64_t bit)
{
    bitmap_grow(b, bit);
    uint64_t mask = (uint64_t)1 << (bit % 64);
    bool was = b->w[bit / 64] & mask;
    b->w[bit / 64] |= mask;
    return was;
}

static bool bitmap_get(const struct bitmap *b, uint64_t bit)
{
    return bit / 64 < b->nwords && (b->w[bit / 64] >> (bit % 64)) & 1;
}

/* ------------------------------------------------------------ the run */

struct producer {
    int id;
    pthread_t th;
    uint64_t sent;          /* all, warmup included: the sequences 0..sent-1 */
    uint64_t measured;      /* outside the warmup */
    uint64_t first_ns, last_ns; /* first and last measured send */
    _Atomic uint64_t progress_ns; /* last SEND completed, for the stall watchdog */
    _Atomic bool sending_done;  /* out of the send loop (then bounded waits only) */
    struct hist rtt;        /* receipt round trips, ns */
    char err[512];
};

struct seqref {
    uint32_t producer;
    uint64_t seq;
};

struct consumer {
    int id;
    pthread_t th;
    struct stompc *c;
    struct bitmap *seen;    /* per producer */
    struct bitmap *redelivered; /* per producer, only where a redelivery came */
    uint64_t deliveries;    /* valid deliveries, warmup and duplicates included */
    uint64_t measured;      /* deliveries outside the warmup */
    uint64_t bytes;         /* body bytes of measured deliveries */
    uint64_t dup_allowed, dup_bad; /* second copies this consumer saw itself */
    struct seqref dup_sample[10]; /* the first bad ones */
    uint64_t foreign;       /* bodies not stamped by this run */
    uint64_t last_ns;       /* last measured delivery */
    _Atomic uint64_t progress; /* deliveries so far, for the others to read */
    _Atomic uint64_t last_rx_ns;
    struct hist lat;
    unsigned unacked;       /* ack:client: deliveries since the last ACK */
    struct stompc_msg *last; /* ack:client: the newest, kept for the next ACK */
    char err[512];
};

static struct producer *prods;
static struct consumer *cons;

/* Start line: consumers subscribe, then the producers start together. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int nready;          /* clients connected (and subscribed) */
static bool go;             /* producers may send */
static bool abort_run;      /* a client failed to start */
static uint64_t start_ns;   /* when the producers started */

static _Atomic int producers_done;
static _Atomic uint64_t total_sent;

static void ready(bool ok)
{
    pthread_mutex_lock(&mu);
    nready++;
    if (!ok)
        abort_run = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* Producers wait here for the start; false when the run was called off. */
static bool wait_go(void)
{
    pthread_mutex_lock(&mu);
    while (!go && !abort_run)
        pthread_cond_wait(&cv, &mu);
    bool ok = go && !abort_run;
    pthread_mutex_unlock(&mu);
    return ok;
}

static struct stompc *client_open(char *err, size_t errlen)
{
    struct stompc *c = stompc_new();
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    struct stompc_options o = {.login = cfg.login, .passcode = cfg.passcode, .host = cfg.host, .tls_ca_file = cfg.ca};
    if (stompc_connect(c, cfg.url, &o) != 0) {
        snprintf(err, errlen, "%s", stompc_error(c));
        stompc_free(c);
        return NULL;
    }
    return c;
}

/* Thread names show in top -H and perf report --sort comm. */
static void name_thread(const char *role, int id)
{
    char name[16];
    snprintf(name, sizeof name, "%s-%d", role, id);
    pthread_setname_np(pthread_self(), name);
}

/* ------------------------------------------------------------ producer */

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    name_thread("producer", p->id);
    struct stompc *c = client_open(p->err, sizeof p->err);
    ready(c != NULL);
    if (!c || !wait_go())
        goto out;

    char *body = malloc(cfg.size);
    if (!body) {
        snprintf(p->err, sizeof p->err, "out of memory");
        goto out;
    }
    memset(body, 'x', cfg.size);
    struct stamp st = {.magic = STAMP_MAGIC, .run = cfg.run, .producer = (uint32_t)p->id};

    /* This producer's share of --count; time mode ends on the clock. */
    long long share = cfg.count / cfg.producers + (p->id < cfg.count % cfg.producers ? 1 : 0);
    uint64_t warm_end = start_ns + (uint64_t)(cfg.warmup * 1e9);
    uint64_t end = cfg.duration > 0 ? warm_end + (uint64_t)(cfg.duration * 1e9) : 0;
    double gap_ns = cfg.rate > 0 ? 1e9 / cfg.rate : 0;
    uint64_t since_receipt = 0;

    for (uint64_t n = 0;; n++) {
        if (interrupted)
            break;
        uint64_t t = now_ns();
        if (gap_ns > 0) {
            uint64_t due = start_ns + (uint64_t)(gap_ns * (double)n);
            if (due > t) {
                sleep_until_ns(due);
                t = now_ns();
            }
        }
        bool warm = t < warm_end;
        if (!warm) {
            if (end ? t >= end : p->measured >= (uint64_t)share)
                break;
        }
        st.flags = warm ? FLAG_WARMUP : 0;
        st.seq = n;
        st.sent_ns = t;
        memcpy(body, &st, sizeof st);
        struct stompc_send_opts so = {.persistent = cfg.persistent, .more = cfg.batch, .headers = cfg.headers,
                                      .nheaders = cfg.nheaders};
        if (cfg.receipt_every > 0 && ++since_receipt == (uint64_t)cfg.receipt_every) {
            so.wait = true;
            since_receipt = 0;
        }
        const char *dest = cfg.dest;
        char many[1100];
        if (cfg.topics > 0) {
            snprintf(many, sizeof many, "%s.%ld", cfg.dest, (long)((n + (uint64_t)p->id) % (uint64_t)cfg.topics));
            dest = many;
        }
        int rc = stompc_send(c, dest, body, cfg.size, &so);
        if (rc != 0) {
            /* Sequence n is not counted as sent: should it have reached
             * the broker all the same, its arrival is accepted, not
             * expected. */
            snprintf(p->err, sizeof p->err, "send #%" PRIu64 ": %s", n, stompc_error(c));
            break;
        }
        uint64_t done = now_ns();
        atomic_store_explicit(&p->progress_ns, done, memory_order_relaxed);
        p->sent = n + 1;
        if (so.wait)
            hist_add(&p->rtt, done - t);
        if (!warm) {
            if (p->measured++ == 0)
                p->first_ns = t;
            p->last_ns = done;
        }
    }
    free(body);
    atomic_store(&p->sending_done, true);
    if (!p->err[0]) {
        /* Receipts still owed (failover: tracked persistent sends). */
        if (stompc_flush(c, 60000) != 0)
            snprintf(p->err, sizeof p->err, "flush: %s", stompc_error(c));
        else if (stompc_disconnect(c, 10000) != 0)
            /* Everything is sent and receipted: a broker slow to answer
             * the DISCONNECT (still draining a backlog, its flow control
             * holding us) changes nothing in the figures. */
            note("producer %d: %s", p->id, stompc_error(c));
    }
out:
    atomic_store(&p->sending_done, true);
    atomic_fetch_add(&total_sent, p->sent);
    atomic_fetch_add(&producers_done, 1);
    stompc_free(c);
    return NULL;
}

/* ------------------------------------------------------------ consumer */

static unsigned ack_batch(void)
{
    unsigned b = cfg.prefetch > 0 ? (unsigned)cfg.prefetch / 2 : 500;
    if (b > 500)
        b = 500;
    return b ? b : 1;
}

/* ACK what ack:client has kept back (cumulative: the newest covers all). */
static int consumer_ack_pending(struct consumer *k)
{
    if (!k->last)
        return 0;
    int rc = stompc_ack(k->c, k->last, NULL, 0);
    stompc_msg_free(k->last);
    k->last = NULL;
    k->unacked = 0;
    return rc;
}

static void consumer_account(struct consumer *k, const struct stompc_msg *m, uint64_t now)
{
    struct stamp st;
    if (m->body_len < sizeof st) {
        k->foreign++;
        return;
    }
    memcpy(&st, m->body, sizeof st);
    if (st.magic != STAMP_MAGIC || st.run != cfg.run || st.producer >= (uint32_t)cfg.producers) {
        k->foreign++;
        return;
    }
    k->deliveries++;
    if (bitmap_test_set(&k->seen[st.producer], st.seq)) {
        if (m->redelivered && cfg.ack != STOMPC_ACK_AUTO)
            k->dup_allowed++;
        else if (k->dup_bad++ < sizeof k->dup_sample / sizeof k->dup_sample[0])
            k->dup_sample[k->dup_bad - 1] = (struct seqref){st.producer, st.seq};
    }
    if (m->redelivered)
        bitmap_test_set(&k->redelivered[st.producer], st.seq);
    if (!(st.flags & FLAG_WARMUP)) {
        k->measured++;
        k->bytes += m->body_len;
        k->last_ns = now;
        hist_add(&k->lat, now > st.sent_ns ? now - st.sent_ns : 0);
    }
    atomic_store_explicit(&k->progress, k->deliveries, memory_order_relaxed);
    atomic_store_explicit(&k->last_rx_ns, now, memory_order_relaxed);
}

/* One delivery: account, acknowledge as the mode wants, free. */
static void consumer_take(struct consumer *k, struct stompc_msg *m)
{
    consumer_account(k, m, now_ns());
    int rc = 0;
    switch (cfg.ack) {
    case STOMPC_ACK_AUTO:
        stompc_msg_free(m);
        break;
    case STOMPC_ACK_CLIENT_INDIVIDUAL:
        rc = stompc_ack(k->c, m, NULL, 0);
        stompc_msg_free(m);
        break;
    case STOMPC_ACK_CLIENT:
        stompc_msg_free(k->last);
        k->last = m;
        if (++k->unacked >= ack_batch())
            rc = consumer_ack_pending(k);
        break;
    }
    if (rc != 0 && !k->err[0])
        snprintf(k->err, sizeof k->err, "ack: %s", stompc_error(k->c));
}

static void on_message(struct stompc *c, struct stompc_msg *m, void *ud)
{
    (void)c;
    consumer_take(ud, m);
}

static void on_error(struct stompc *c, int status, const char *message, const char *receipt_id, void *ud)
{
    (void)c;
    (void)receipt_id;
    struct consumer *k = ud;
    note("consumer %d: %s (%s)", k ? k->id : -1, message, stompc_strerror(status));
}

/* Has this consumer seen all it should? Queue consumers share the work, so
 * they look at everyone's progress; a topic subscriber only at its own. */
static bool consumer_finished(struct consumer *k)
{
    if (atomic_load(&producers_done) < cfg.producers)
        return false;
    uint64_t expected = atomic_load(&total_sent);
    uint64_t got = 0, last_rx = 0;
    if (cfg.topic) {
        got = atomic_load_explicit(&k->progress, memory_order_relaxed);
        last_rx = atomic_load_explicit(&k->last_rx_ns, memory_order_relaxed);
    } else {
        for (int i = 0; i < cfg.consumers; i++) {
            got += atomic_load_explicit(&cons[i].progress, memory_order_relaxed);
            uint64_t t = atomic_load_explicit(&cons[i].last_rx_ns, memory_order_relaxed);
            if (t > last_rx)
                last_rx = t;
        }
    }
    if (got >= expected)
        return true;
    /* Short: wait for stragglers, but not for ever. */
    static _Atomic uint64_t all_sent_ns;
    uint64_t zero = 0;
    atomic_compare_exchange_strong(&all_sent_ns, &zero, now_ns());
    uint64_t since = atomic_load(&all_sent_ns);
    if (last_rx > since)
        since = last_rx;
    return now_ns() - since > (uint64_t)cfg.drain_timeout_ms * 1000000u;
}

static void *consumer_main(void *arg)
{
    struct consumer *k = arg;
    name_thread("consumer", k->id);
    k->c = client_open(k->err, sizeof k->err);
    if (!k->c) {
        ready(false);
        return NULL;
    }
    struct stompc_callbacks cb = {.on_error = on_error};
    if (!cfg.poll_receive)
        cb.on_message = on_message;
    (void)stompc_set_callbacks(k->c, &cb, k);
    char id[32], pf[24];
    snprintf(id, sizeof id, "bench-%d", k->id);
    snprintf(pf, sizeof pf, "%d", cfg.prefetch);
    /* RabbitMQ's name for the prefetch window; ActiveMQ and stompd take
     * activemq.prefetchSize (stompd takes either). */
    struct stompc_header extra = {"prefetch-count", pf};
    struct stompc_sub_opts so = {.id = id, .ack = cfg.ack, .prefetch = cfg.prefetch, .selector = cfg.selector};
    if (cfg.prefetch > 0) {
        so.headers = &extra;
        so.nheaders = 1;
    }
    if (stompc_subscribe(k->c, cfg.sub_dest ? cfg.sub_dest : cfg.dest, &so) != 0) {
        snprintf(k->err, sizeof k->err, "subscribe: %s", stompc_error(k->c));
        ready(false);
        goto out;
    }
    ready(true);

    for (;;) {
        int rc;
        if (cfg.poll_receive) {
            struct stompc_msg *m;
            rc = stompc_receive(k->c, &m, RECV_SLICE_MS);
            if (rc == 0)
                consumer_take(k, m);
            else if (rc == STOMPC_ETIMEDOUT)
                rc = 0;
        } else {
            rc = stompc_run(k->c, RECV_SLICE_MS);
        }
        if (rc < 0) {
            if (!k->err[0])
                snprintf(k->err, sizeof k->err, "receive: %s", stompc_error(k->c));
            break;
        }
        if (k->err[0])
            break;
        if (cfg.ack == STOMPC_ACK_CLIENT && k->last && rc == 0 && consumer_ack_pending(k) != 0) {
            snprintf(k->err, sizeof k->err, "ack: %s", stompc_error(k->c));
            break;
        }
        if (consumer_finished(k) || (interrupted && atomic_load(&producers_done) == cfg.producers))
            break;
    }
    if (consumer_ack_pending(k) != 0 && !k->err[0])
        snprintf(k->err, sizeof k->err, "ack: %s", stompc_error(k->c));
    /* Messages the broker pushed meanwhile (a topic, or a queue's prefetch
     * beyond what was needed) are dropped with the client: they are
     * foreign or duplicates and were not waited for. */
    if (stompc_disconnect(k->c, 10000) != 0 && !k->err[0])
        snprintf(k->err, sizeof k->err, "disconnect: %s", stompc_error(k->c));
out:
    stompc_free(k->c);
    k->c = NULL;
    return NULL;
}

/* ------------------------------------------------------------- wildcards */

/* One connection holding cfg.wildcard_subs subscriptions to patterns that
 * match nothing sent: what the broker's wildcard matching must look past
 * on every publish. */
static struct stompc *wildcards_open(char *err, size_t errlen)
{
    struct stompc *c = client_open(err, errlen);
    if (!c)
        return NULL;
    for (long k = 0; k < cfg.wildcard_subs && !interrupted; k++) {
        char pattern[1100], id[32];
        if (k % 2)
            snprintf(pattern, sizeof pattern, "%s.*.x%ld", cfg.dest, k);
        else
            snprintf(pattern, sizeof pattern, "%s.x%ld.*", cfg.dest, k);
        snprintf(id, sizeof id, "wild-%ld", k);
        struct stompc_sub_opts so = {.id = id};
        if (stompc_subscribe(c, pattern, &so) != 0) {
            snprintf(err, errlen, "wildcard subscription %ld (%.200s): %.300s", k, pattern, stompc_error(c));
            stompc_free(c);
            return NULL;
        }
    }
    return c;
}

/* ------------------------------------------------------------- idle */

static long rss_kib(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

struct idle {
    struct stompc **c;
    int *fds;                   /* plain tcp:// ones: a socket each, no library */
    long n;
    long rss_before, rss_after; /* KiB, -1: unknown */
    double secs;
    char err[640];
};

/* An idle connection to a plain tcp://host:port: a socket that CONNECTs
 * and then sits, one descriptor (a libstompc connection holds two, its
 * socket and the epoll set behind stompc_fd(), and 10,000 of those do not
 * fit under a 20,000 descriptor limit). -2: not a plain tcp:// URL. */
static int raw_idle_open(char *err, size_t errlen)
{
    if (strncmp(cfg.url, "tcp://", 6) != 0 || cfg.ca)
        return -2;
    char host[256];
    const char *hp = cfg.url + 6, *colon = strrchr(hp, ':');
    if (!colon || (size_t)(colon - hp) >= sizeof host || strchr(hp, ',') || strchr(hp, '?'))
        return -2;
    snprintf(host, sizeof host, "%.*s", (int)(colon - hp), hp);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
        return -2;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        snprintf(err, errlen, "connect to %s: %s", cfg.url, strerror(errno));
        freeaddrinfo(res);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    freeaddrinfo(res);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char frame[1024];
    int n = snprintf(frame, sizeof frame, "CONNECT\naccept-version:1.2\nhost:%s\n%s%s%s%s%s%s\n", cfg.host ? cfg.host : host,
                     cfg.login ? "login:" : "", cfg.login ? cfg.login : "", cfg.login ? "\n" : "",
                     cfg.passcode ? "passcode:" : "", cfg.passcode ? cfg.passcode : "", cfg.passcode ? "\n" : "");
    if (n < 0 || (size_t)n + 1 > sizeof frame || send(fd, frame, (size_t)n + 1, MSG_NOSIGNAL) != n + 1) {
        snprintf(err, errlen, "CONNECT to %s: %s", cfg.url, strerror(errno));
        close(fd);
        return -1;
    }
    char in[2048];
    size_t got = 0;
    while (got < sizeof in && !memchr(in, '\0', got)) {
        ssize_t r = recv(fd, in + got, sizeof in - got, 0);
        if (r <= 0) {
            snprintf(err, errlen, "CONNECT to %s: %s", cfg.url, r == 0 ? "closed" : strerror(errno));
            close(fd);
            return -1;
        }
        got += (size_t)r;
    }
    if (got < 10 || memcmp(in, "CONNECTED\n", 10) != 0) {
        snprintf(err, errlen, "CONNECT to %s: no CONNECTED: %.*s", cfg.url, (int)(got < 200 ? got : 200), in);
        close(fd);
        return -1;
    }
    return fd;
}

/* Open cfg.idle connections; they stay open (silent, no heart-beats)
 * until idle_close. A failure stops the opening and is reported. */
static int idle_open(struct idle *d)
{
    /* A libstompc connection holds two descriptors: its socket and the
     * epoll set behind stompc_fd(). Ask for room for all of them (root may
     * raise the hard limit too), else take the hard limit. */
    struct rlimit rl;
    rlim_t want = (rlim_t)cfg.idle * 2 + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
        struct rlimit more = {want, want > rl.rlim_max ? want : rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &more) != 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            (void)setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    d->c = calloc((size_t)cfg.idle, sizeof *d->c);
    d->fds = calloc((size_t)cfg.idle, sizeof *d->fds);
    if (!d->c || !d->fds) {
        snprintf(d->err, sizeof d->err, "out of memory");
        return -1;
    }
    d->rss_before = cfg.pid > 0 ? rss_kib(cfg.pid) : -1;
    uint64_t t0 = now_ns();
    for (long i = 0; i < cfg.idle && !interrupted; i++) {
        char err[512];
        int fd = raw_idle_open(err, sizeof err);
        d->fds[i] = fd;
        if (fd == -1) {
            snprintf(d->err, sizeof d->err, "idle connection %ld: %s", i + 1, err);
            return -1;
        }
        if (fd >= 0) {
            d->n++;
            continue;
        }
        d->c[i] = client_open(err, sizeof err);
        if (!d->c[i]) {
            snprintf(d->err, sizeof d->err, "idle connection %ld: %s", i + 1, err);
            return -1;
        }
        d->n++;
    }
    d->secs = (double)(now_ns() - t0) / 1e9;
    if (cfg.pid > 0) {
        sleep_until_ns(now_ns() + (uint64_t)(cfg.idle_settle * 1e9));
        d->rss_after = rss_kib(cfg.pid);
    }
    return interrupted ? -1 : 0;
}

static void idle_close(struct idle *d)
{
    for (long i = 0; i < d->n; i++) {
        if (d->fds[i] >= 0)
            close(d->fds[i]);
        else
            stompc_free(d->c[i]); /* a plain close: quicker than N DISCONNECTs */
    }
    free(d->c);
    free(d->fds);
    d->c = NULL;
    d->fds = NULL;
}

/* ------------------------------------------------------------ results */

struct range_printer {
    FILE *out;
    const char *what;
    int shown;
    uint64_t total;
};

#define MAX_RANGES 10

/* Report runs of consecutive sequence numbers ("producer 1 seq 5-9"). */
static void range_note(struct range_printer *rp, const char *who, uint64_t a, uint64_t b)
{
    rp->total += b - a + 1;
    if (rp->shown++ >= MAX_RANGES)
        return;
    if (a == b)
        fprintf(rp->out, "  %s %s seq %" PRIu64 "\n", rp->what, who, a);
    else
        fprintf(rp->out, "  %s %s seq %" PRIu64 "-%" PRIu64 " (%" PRIu64 ")\n", rp->what, who, a, b,
                b - a + 1);
}

/* A run of sequence numbers with some property, noted when it ends: feed
 * it every s in order, and one past the last to close an open run. */
struct run {
    bool in;
    uint64_t start;
};

static void run_step(struct run *r, bool now, uint64_t s, struct range_printer *rp, const char *who)
{
    if (now && !r->in) {
        r->start = s;
        r->in = true;
    } else if (!now && r->in) {
        range_note(rp, who, r->start, s - 1);
        r->in = false;
    }
}

struct verdict {
    uint64_t expected;      /* deliveries that should have come */
    uint64_t missing;
    uint64_t dup_bad, dup_allowed;
    uint64_t foreign;
};

/* Count, per producer sequence, how often it arrived, and print the
 * missing and duplicated ones (a sample) on standard error. */
static void check(struct verdict *v)
{
    struct range_printer miss = {stderr, "missing:", 0, 0};
    struct range_printer dups = {stderr, "duplicate:", 0, 0};
    for (int k = 0; k < cfg.consumers; k++) {
        const struct consumer *c = &cons[k];
        v->dup_bad += c->dup_bad;
        v->dup_allowed += c->dup_allowed;
        v->foreign += c->foreign;
        size_t n = sizeof c->dup_sample / sizeof c->dup_sample[0];
        for (size_t i = 0; i < c->dup_bad && i < n; i++)
            fprintf(stderr, "  duplicate: from producer %u seq %" PRIu64 " again at consumer %d\n",
                    c->dup_sample[i].producer, c->dup_sample[i].seq, k);
    }
    for (int p = 0; p < cfg.producers; p++) {
        uint64_t sent = prods[p].sent;
        if (cfg.topic) {
            /* Every subscriber gets every message. */
            for (int k = 0; k < cfg.consumers; k++) {
                char who[64];
                snprintf(who, sizeof who, "from producer %d at consumer %d", p, k);
                struct run gaps = {0};
                for (uint64_t s = 0; s <= sent; s++)
                    run_step(&gaps, s < sent && !bitmap_get(&cons[k].seen[p], s), s, &miss, who);
                v->expected += sent;
            }
            continue;
        }
        /* A queue: each message to exactly one consumer. */
        char who[64];
        snprintf(who, sizeof who, "from producer %d", p);
        struct run gaps = {0}, bad_dups = {0};
        for (uint64_t s = 0; s <= sent; s++) {
            int copies = 0;
            bool redelivered = false;
            if (s < sent) {
                for (int k = 0; k < cfg.consumers; k++) {
                    copies += bitmap_get(&cons[k].seen[p], s);
                    redelivered |= bitmap_get(&cons[k].redelivered[p], s);
                }
            }
            bool gap = s < sent && copies == 0;
            /* Copies across consumers (one per consumer at most here). */
            bool dup = s < sent && copies > 1;
            if (dup) {
                if (redelivered && cfg.ack != STOMPC_ACK_AUTO)
                    v->dup_allowed += (uint64_t)copies - 1;
                else
                    v->dup_bad += (uint64_t)copies - 1;
            }
            run_step(&gaps, gap, s, &miss, who);
            run_step(&bad_dups, dup && !(redelivered && cfg.ack != STOMPC_ACK_AUTO), s, &dups, who);
        }
        v->expected += sent;
    }
    v->missing = miss.total;
    if (miss.shown > MAX_RANGES)
        fprintf(stderr, "  ... and %d more missing ranges\n", miss.shown - MAX_RANGES);
    if (dups.shown > MAX_RANGES)
        fprintf(stderr, "  ... and %d more duplicated ranges\n", dups.shown - MAX_RANGES);
}

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static const char *ack_name(enum stompc_ack a)
{
    return a == STOMPC_ACK_AUTO ? "auto" : a == STOMPC_ACK_CLIENT ? "client" : "client-individual";
}

/* A JSON string (the URL and destination come from the command line). */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* Wait for the producers to finish. A SEND the broker does not take
 * (flow control with nobody consuming) would block its producer for ever,
 * and no call of libstompc can be cut short from another thread: after
 * --stall-timeout without progress, say so and end the process. */
static void watch_producers(void)
{
    while (atomic_load(&producers_done) < cfg.producers) {
        sleep_until_ns(now_ns() + 100000000u);
        if (cfg.stall_timeout <= 0)
            continue;
        uint64_t now = now_ns(), limit = (uint64_t)(cfg.stall_timeout * 1e9);
        for (int i = 0; i < cfg.producers; i++) {
            uint64_t t = atomic_load_explicit(&prods[i].progress_ns, memory_order_relaxed);
            if (t == 0)
                t = start_ns;
            if (!atomic_load(&prods[i].sending_done) && now > t + limit) {
                fprintf(stderr,
                        PROG ": producer %d: no SEND completed for %.0f s (after %" PRIu64 " sent): the "
                        "broker is holding it (flow control?); giving up\n",
                        i, cfg.stall_timeout, prods[i].sent);
                fflush(stdout);
                _exit(1);
            }
        }
    }
}

/* ---------------------------------------------------------------- main */

static long long number(const char *opt, const char *v, long long min, long long max)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end || errno || n < min || n > max) {
        fprintf(stderr, PROG ": %s: '%s' is not a number in [%lld, %lld]\n", opt, v, min, max);
        exit(2);
    }
    return n;
}

static double seconds(const char *opt, const char *v)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end || errno || d < 0 || d > 86400) {
        fprintf(stderr, PROG ": %s: '%s' is not a number of seconds in [0, 86400]\n", opt, v);
        exit(2);
    }
    return d;
}

static void parse_args(int argc, char **argv)
{
    enum { O_URL = 256, O_DEST, O_DURATION, O_PERSISTENT, O_RECEIPT, O_ACK, O_PREFETCH, O_RATE, O_WARMUP,
           O_DRAIN, O_STALL, O_IDLE, O_PID, O_SETTLE, O_RECEIVE, O_SELECTOR, O_HOST, O_LOGIN, O_PASSCODE, O_JSON, O_BATCH,
           O_TOPICS, O_SUBDEST, O_WILDSUBS, O_HEADER, O_CA };
    static const struct option longopts[] = {
        {"url", required_argument, NULL, O_URL},
        {"ca", required_argument, NULL, O_CA},
        {"dest", required_argument, NULL, O_DEST},
        {"producers", required_argument, NULL, 'p'},
        {"consumers", required_argument, NULL, 'c'},
        {"count", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, O_DURATION},
        {"size", required_argument, NULL, 's'},
        {"persistent", no_argument, NULL, O_PERSISTENT},
        {"receipt-every", required_argument, NULL, O_RECEIPT},
        {"batch", no_argument, NULL, O_BATCH},
        {"ack", required_argument, NULL, O_ACK},
        {"prefetch", required_argument, NULL, O_PREFETCH},
        {"rate", required_argument, NULL, O_RATE},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"drain-timeout", required_argument, NULL, O_DRAIN},
        {"stall-timeout", required_argument, NULL, O_STALL},
        {"idle", required_argument, NULL, O_IDLE},
        {"pid", required_argument, NULL, O_PID},
        {"idle-settle", required_argument, NULL, O_SETTLE},
        {"receive", required_argument, NULL, O_RECEIVE},
        {"selector", required_argument, NULL, O_SELECTOR},
        {"topics", required_argument, NULL, O_TOPICS},
        {"sub-dest", required_argument, NULL, O_SUBDEST},
        {"wildcard-subs", required_argument, NULL, O_WILDSUBS},
        {"header", required_argument, NULL, O_HEADER},
        {"host", required_argument, NULL, O_HOST},
        {"login", required_argument, NULL, O_LOGIN},
        {"passcode", required_argument, NULL, O_PASSCODE},
        {"json", no_argument, NULL, O_JSON},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "p:c:n:s:qhV", longopts, NULL)) != -1) {
        switch (opt) {
        case O_URL: cfg.url = optarg; break;
        case O_DEST: cfg.dest = optarg; break;
        case 'p': cfg.producers = (int)number("--producers", optarg, 0, 10000); break;
        case 'c': cfg.consumers = (int)number("--consumers", optarg, 0, 10000); break;
        case 'n': cfg.count = number("--count", optarg, 0, (long long)1 << 40); break;
        case O_DURATION: cfg.duration = seconds("--duration", optarg); break;
        case 's': cfg.size = (size_t)number("--size", optarg, (long long)sizeof(struct stamp), 64 << 20); break;
        case O_PERSISTENT: cfg.persistent = true; break;
        case O_BATCH: cfg.batch = true; break;
        case O_RECEIPT: cfg.receipt_every = (long)number("--receipt-every", optarg, 0, 1 << 30); break;
        case O_ACK:
            if (stompc_ack_mode(optarg, &cfg.ack) != 0) {
                fprintf(stderr, PROG ": --ack: '%s' is not auto, client or client-individual\n", optarg);
                exit(2);
            }
            break;
        case O_PREFETCH: cfg.prefetch = (int)number("--prefetch", optarg, 0, 1 << 20); break;
        case O_RATE: cfg.rate = (double)number("--rate", optarg, 0, 100000000); break;
        case O_WARMUP: cfg.warmup = seconds("--warmup", optarg); break;
        case O_DRAIN: cfg.drain_timeout_ms = (int)number("--drain-timeout", optarg, 0, 3600000); break;
        case O_STALL: cfg.stall_timeout = seconds("--stall-timeout", optarg); break;
        case O_IDLE: cfg.idle = (long)number("--idle", optarg, 0, 1000000); break;
        case O_PID: cfg.pid = (long)number("--pid", optarg, 1, 1L << 30); break;
        case O_SETTLE: cfg.idle_settle = seconds("--idle-settle", optarg); break;
        case O_RECEIVE:
            if (!strcmp(optarg, "poll"))
                cfg.poll_receive = true;
            else if (strcmp(optarg, "callback")) {
                fprintf(stderr, PROG ": --receive: '%s' is not callback or poll\n", optarg);
                exit(2);
            }
            break;
        case O_SELECTOR: cfg.selector = optarg; break;
        case O_TOPICS: cfg.topics = (long)number("--topics", optarg, 1, 100000000); break;
        case O_SUBDEST: cfg.sub_dest = optarg; break;
        case O_WILDSUBS: cfg.wildcard_subs = (long)number("--wildcard-subs", optarg, 0, 1000000); break;
        case O_HEADER: {
            char *colon = strchr(optarg, ':');
            if (!colon || colon == optarg || cfg.nheaders == sizeof cfg.headers / sizeof cfg.headers[0]) {
                fprintf(stderr, PROG ": --header: '%s' is not NAME:VALUE (at most 16)\n", optarg);
                exit(2);
            }
            *colon = '\0';
            cfg.headers[cfg.nheaders++] = (struct stompc_header){optarg, colon + 1};
            break;
        }
        case O_HOST: cfg.host = optarg; break;
        case O_CA: cfg.ca = optarg; break;
        case O_LOGIN: cfg.login = optarg; break;
        case O_PASSCODE: cfg.passcode = optarg; break;
        case O_JSON: cfg.json = true; break;
        case 'q': cfg.quiet = true; break;
        case 'h': fputs(usage, stdout); exit(0);
        case 'V': printf(PROG " %s (libstompc %s)\n", PACKAGE_VERSION, stompc_version()); exit(0);
        default: fputs(usage, stderr); exit(2);
        }
    }
    if (optind != argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        exit(2);
    }
    if (strncmp(cfg.dest, "/queue/", 7) && strncmp(cfg.dest, "/topic/", 7)) {
        fprintf(stderr, PROG ": --dest: '%s' is neither /queue/NAME nor /topic/NAME\n", cfg.dest);
        exit(2);
    }
    cfg.topic = !strncmp(cfg.dest, "/topic/", 7);
    if (cfg.batch && cfg.rate > 0) {
        fprintf(stderr, PROG ": --batch would hold paced sends back: not with --rate\n");
        exit(2);
    }
    if (cfg.producers == 0 && cfg.consumers > 0) {
        fprintf(stderr, PROG ": consumers need producers (-p 0 -c 0 is for --idle only)\n");
        exit(2);
    }
    if (cfg.producers == 0 && cfg.idle == 0) {
        fprintf(stderr, PROG ": nothing to do: no producers, no consumers, no --idle\n");
        exit(2);
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    setvbuf(stderr, NULL, _IOLBF, 0);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    uint64_t seed = now_ns() ^ ((uint64_t)getpid() << 20);
    cfg.run = (uint32_t)(seed ^ (seed >> 32)) | 1u;

    int status = 0;
    struct idle idle = {.rss_before = -1, .rss_after = -1};
    if (cfg.idle > 0) {
        note("opening %ld idle connections", cfg.idle);
        if (idle_open(&idle) != 0) {
            fprintf(stderr, PROG ": %s\n", idle.err[0] ? idle.err : "interrupted");
            status = 1;
        } else {
            note("%ld idle connections open in %.2f s", idle.n, idle.secs);
        }
    }

    struct stompc *wild = NULL;
    if (status == 0 && cfg.wildcard_subs > 0) {
        char err[640];
        uint64_t t0 = now_ns();
        if (!(wild = wildcards_open(err, sizeof err))) {
            fprintf(stderr, PROG ": %s\n", err);
            status = 1;
        } else {
            note("%ld wildcard subscriptions that match nothing, in %.2f s", cfg.wildcard_subs,
                 (double)(now_ns() - t0) / 1e9);
        }
    }

    prods = calloc((size_t)cfg.producers + 1, sizeof *prods);
    cons = calloc((size_t)cfg.consumers + 1, sizeof *cons);
    if (!prods || !cons) {
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }
    bool ran = false;
    if (status == 0 && cfg.producers > 0) {
        ran = true;
        /* Consumers first, each subscribed before any message is sent. */
        for (int i = 0; i < cfg.consumers; i++) {
            struct consumer *k = &cons[i];
            k->id = i;
            k->seen = calloc((size_t)cfg.producers, sizeof *k->seen);
            k->redelivered = calloc((size_t)cfg.producers, sizeof *k->redelivered);
            if (!k->seen || !k->redelivered) {
                fprintf(stderr, PROG ": out of memory\n");
                return 1;
            }
            if (pthread_create(&k->th, NULL, consumer_main, k) != 0) {
                fprintf(stderr, PROG ": pthread_create failed\n");
                return 1;
            }
        }
        for (int i = 0; i < cfg.producers; i++) {
            prods[i].id = i;
            if (pthread_create(&prods[i].th, NULL, producer_main, &prods[i]) != 0) {
                fprintf(stderr, PROG ": pthread_create failed\n");
                return 1;
            }
        }
        pthread_mutex_lock(&mu);
        while (nready < cfg.producers + cfg.consumers)
            pthread_cond_wait(&cv, &mu);
        start_ns = now_ns();
        go = true;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
        if (abort_run) {
            /* Nothing is sent: consumers end on the drain timeout at once. */
            cfg.drain_timeout_ms = 0;
        }
        watch_producers();
        for (int i = 0; i < cfg.producers; i++)
            pthread_join(prods[i].th, NULL);
        for (int i = 0; i < cfg.consumers; i++)
            pthread_join(cons[i].th, NULL);
    }
    if (cfg.idle > 0)
        idle_close(&idle);
    stompc_free(wild);

    /* ---- figures */
    struct hist lat = {0}, rtt = {0};
    uint64_t sent = 0, measured_sent = 0, measured_recv = 0, bytes = 0;
    uint64_t t_first = UINT64_MAX, t_last_send = 0, t_last_recv = 0;
    for (int i = 0; i < cfg.producers; i++) {
        struct producer *p = &prods[i];
        sent += p->sent;
        measured_sent += p->measured;
        if (p->measured) {
            if (p->first_ns < t_first)
                t_first = p->first_ns;
            if (p->last_ns > t_last_send)
                t_last_send = p->last_ns;
        }
        hist_merge(&rtt, &p->rtt);
        if (p->err[0]) {
            fprintf(stderr, PROG ": producer %d: %s\n", i, p->err);
            status = 1;
        }
    }
    for (int i = 0; i < cfg.consumers; i++) {
        struct consumer *k = &cons[i];
        measured_recv += k->measured;
        bytes += k->bytes;
        if (k->last_ns > t_last_recv)
            t_last_recv = k->last_ns;
        hist_merge(&lat, &k->lat);
        if (k->err[0]) {
            fprintf(stderr, PROG ": consumer %d: %s\n", i, k->err);
            status = 1;
        }
    }
    struct verdict v = {0};
    if (ran && cfg.consumers > 0)
        check(&v);
    if (ran && measured_sent == 0 && !interrupted) {
        fprintf(stderr, PROG ": nothing was measured: no SEND completed after the warmup\n");
        status = 1;
    }
    if (v.missing || v.dup_bad)
        status = 1;
    double send_s = t_first < t_last_send ? (double)(t_last_send - t_first) / 1e9 : 0;
    double recv_s = t_first < t_last_recv ? (double)(t_last_recv - t_first) / 1e9 : 0;
    double send_rate = send_s > 0 ? (double)measured_sent / send_s : 0;
    double recv_rate = recv_s > 0 ? (double)measured_recv / recv_s : 0;
    double mbps = recv_s > 0 ? (double)bytes / recv_s / 1e6 : 0;
    double per_conn = -1;
    if (idle.n > 0 && idle.rss_before >= 0 && idle.rss_after >= 0)
        per_conn = (double)(idle.rss_after - idle.rss_before) * 1024.0 / (double)idle.n;

    if (cfg.json) {
        printf("{\"url\":");
        json_str(cfg.url);
        printf(",\"dest\":");
        json_str(cfg.dest);
        printf(",\"producers\":%d,\"consumers\":%d,\"size\":%zu,\"persistent\":%s,\"receipt_every\":%ld,"
               "\"batch\":%s,\"ack\":\"%s\",\"prefetch\":%d,",
               cfg.producers, cfg.consumers, cfg.size, cfg.persistent ? "true" : "false", cfg.receipt_every,
               cfg.batch ? "true" : "false",
               ack_name(cfg.ack), cfg.prefetch);
        printf("\"sent\":%" PRIu64 ",\"measured_sent\":%" PRIu64 ",\"expected\":%" PRIu64
               ",\"measured_received\":%" PRIu64 ",\"missing\":%" PRIu64 ",\"duplicates\":%" PRIu64
               ",\"redelivered_duplicates\":%" PRIu64 ",\"foreign\":%" PRIu64 ",",
               sent, measured_sent, v.expected, measured_recv, v.missing, v.dup_bad, v.dup_allowed, v.foreign);
        printf("\"send_seconds\":%.6f,\"recv_seconds\":%.6f,\"send_rate\":%.1f,\"recv_rate\":%.1f,"
               "\"mb_per_s\":%.3f,",
               send_s, recv_s, send_rate, recv_rate, mbps);
        printf("\"latency_us\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f},", us(hist_quantile(&lat, 0.5)),
               us(hist_quantile(&lat, 0.99)), us(hist_quantile(&lat, 0.999)), us(lat.max));
        if (rtt.count)
            printf("\"receipt_rtt_us\":{\"p50\":%.1f,\"p99\":%.1f,\"count\":%" PRIu64 "},",
                   us(hist_quantile(&rtt, 0.5)), us(hist_quantile(&rtt, 0.99)), rtt.count);
        else
            printf("\"receipt_rtt_us\":null,");
        if (cfg.idle > 0)
            printf("\"idle\":{\"connections\":%ld,\"open_seconds\":%.3f,\"rss_before_kib\":%ld,"
                   "\"rss_after_kib\":%ld,\"bytes_per_connection\":%.0f},",
                   idle.n, idle.secs, idle.rss_before, idle.rss_after, per_conn);
        else
            printf("\"idle\":null,");
        printf("\"ok\":%s}\n", status == 0 ? "true" : "false");
    } else {
        char pf[24] = "broker default";
        if (cfg.prefetch)
            snprintf(pf, sizeof pf, "%d", cfg.prefetch);
        if (ran)
            printf("%s %s: %d producer(s), %d %s, %zu B, %s, receipt-every %ld%s, ack %s, prefetch %s\n", cfg.url,
                   cfg.dest, cfg.producers, cfg.consumers, cfg.topic ? "subscriber(s)" : "consumer(s)", cfg.size,
                   cfg.persistent ? "persistent" : "non-persistent", cfg.receipt_every, cfg.batch ? " (batched)" : "", ack_name(cfg.ack), pf);
        else
            printf("%s: idle connections only\n", cfg.url);
        if (cfg.idle > 0) {
            printf("idle        %ld connections open in %.2f s", idle.n, idle.secs);
            if (per_conn >= 0)
                printf("; broker RSS %ld -> %ld KiB: %.0f bytes per connection", idle.rss_before,
                       idle.rss_after, per_conn);
            printf("\n");
        }
        if (ran) {
            printf("sent        %" PRIu64 " msgs in %.3f s: %.0f msgs/s", measured_sent, send_s, send_rate);
            if (sent > measured_sent)
                printf(" (+%" PRIu64 " warmup)", sent - measured_sent);
            printf("\nreceived    %" PRIu64 " %s in %.3f s: %.0f %s/s, %.1f MB/s\n", measured_recv,
                   cfg.topic ? "deliveries" : "msgs", recv_s, recv_rate, cfg.topic ? "deliveries" : "msgs", mbps);
            printf("latency     p50 %.0f us, p99 %.0f us, p99.9 %.0f us, max %.0f us\n",
                   us(hist_quantile(&lat, 0.5)), us(hist_quantile(&lat, 0.99)), us(hist_quantile(&lat, 0.999)),
                   us(lat.max));
            if (rtt.count)
                printf("receipt rtt p50 %.0f us, p99 %.0f us (%" PRIu64 " receipts)\n", us(hist_quantile(&rtt, 0.5)),
                       us(hist_quantile(&rtt, 0.99)), rtt.count);
            printf("check       ");
            if (cfg.consumers == 0)
                printf("none: no consumers\n");
            else if (v.missing || v.dup_bad)
                printf("FAILED: %" PRIu64 " missing, %" PRIu64 " duplicated of %" PRIu64 " expected deliveries\n",
                       v.missing, v.dup_bad, v.expected);
            else
                printf("ok: %" PRIu64 " deliveries, each exactly once%s\n", v.expected,
                       v.dup_allowed ? " (plus redeliveries)" : "");
            if (v.dup_allowed)
                printf("redelivered %" PRIu64 " duplicate(s) flagged redelivered (allowed by ack %s)\n", v.dup_allowed,
                       ack_name(cfg.ack));
            if (v.foreign)
                printf("foreign     %" PRIu64 " message(s) not from this run, ignored\n", v.foreign);
        }
    }
    if (v.missing || v.dup_bad)
        fprintf(stderr, PROG ": FAILED: %" PRIu64 " missing, %" PRIu64 " duplicated\n", v.missing, v.dup_bad);

    for (int i = 0; i < cfg.consumers; i++) {
        for (int p = 0; p < cfg.producers; p++) {
            free(cons[i].seen[p].w);
            free(cons[i].redelivered[p].w);
        }
        free(cons[i].seen);
        free(cons[i].redelivered);
    }
    free(prods);
    free(cons);
    return status;
}
