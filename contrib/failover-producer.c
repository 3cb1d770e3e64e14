/* stompd-failover-producer: sends numbered messages through libstompc and
 * shows failover at work: one line per send, receipt and reconnect, then
 * "sent=N receipted=N resent=N". Callback style (on_receipt, on_reconnect,
 * on_error run from stompc_dispatch/stompc_run). */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tool.h"
#include "stompc.h"

#define PROG "stompd-failover-producer"

static const char usage[] =
    "usage: stompd-failover-producer --url URL --dest DEST [options]\n"
    "\n"
    "Send --count messages to DEST and wait until the broker has receipted\n"
    "every one. Each body starts with \"seq=N \" (N from 1) and is padded with\n"
    "'x' to --size bytes. Every SEND asks for a receipt (id \"seq-N\"), so with a\n"
    "failover: URL every message is kept until receipted and resent after a\n"
    "reconnect; persistent ones also carry _AMQ_DUPL_ID for the broker's\n"
    "duplicate detection.\n"
    "\n"
    "  --url URL          tcp://host:port, ssl://host:port (TLS) or\n"
    "                     failover:(tcp://h1:p1,ssl://h2:p2,...)?options\n"
    "                     (ActiveMQ's failover options; see stompc.h)\n"
    "  --ca FILE          ssl:// brokers: the PEM CA their certificate must chain\n"
    "                     to (default: the system's CAs); the certificate must\n"
    "                     name the URL's host\n"
    "  --cert FILE, --key FILE\n"
    "                     ssl:// brokers that want a client certificate: it and\n"
    "                     its key (PEM)\n"
    "  --dest DEST        destination, e.g. /queue/orders\n"
    "  --count N          messages to send (default 100)\n"
    "  --size BYTES       body size (default 100; never less than \"seq=N \")\n"
    "  --persistent       send persistent:true\n"
    "  --interval MS      pause between sends (default 0)\n"
    "  --heart-beat CX,CY heart-beats to offer, in ms (default 0,0); with\n"
    "                     heart-beats a paused (not dead) broker is noticed\n"
    "  --connect-timeout MS\n"
    "                     ms one connection attempt may take (TCP and\n"
    "                     CONNECTED; default 10000; the URL's connectTimeout wins)\n"
    "  --timestamps       start every line with the wall-clock time (s.ms)\n"
    "  --login USER, --passcode PASS, --client-id ID\n"
    "  --timeout MS       how long to wait for the last receipts (default 60000)\n"
    "  --quiet            only reconnects, errors and the summary\n"
    "  --version          the version of the program and of libstompc\n"
    "  --help             this text\n"
    "\n"
    "Output: \"send seq=N\", \"receipt seq=N\", \"reconnected to URI ...\", then\n"
    "\"sent=N receipted=N resent=N\". Exit status 0 when every message was sent\n"
    "and receipted, 1 otherwise, 2 on bad usage. SIGINT or SIGTERM stops the\n"
    "sending and waits (--timeout) for the receipts of what was sent; a second\n"
    "signal, or one while it connects, ends it at once. Installed as\n"
    "stompd-failover-producer; contrib/stompd-failover-producer in the build tree.\n";

struct producer {
    long count;
    char *receipted;   /* receipted[seq] set once its receipt came */
    long nreceipted;
    bool quiet;
};

static bool stamps;

/* One line of output, after the time when --timestamps asks for it. */
static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void out(const char *fmt, ...)
{
    if (stamps) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        printf("%lld.%03ld ", (long long)ts.tv_sec, ts.tv_nsec / 1000000);
    }
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

static volatile sig_atomic_t stop, connected, sending;
static struct stompc *volatile running; /* what a signal interrupts */

/* Once connected, the first signal stops the sending: the program still
 * waits (--timeout) for the receipts of what it sent, which is what a
 * failover test stopping it counts on. A signal while it connects, or a
 * second one, ends the call waiting for a broker at once (STOMPC_EINTR).
 * So does the first while a SEND waits for the broker to read it (its flow
 * control holds the producer): that wait had no end, and the program did
 * not stop (helper-97). The SEND stays the client's, and its receipt is
 * waited for with the others. */
static void on_signal(int sig)
{
    (void)sig;
    if ((stop || !connected || sending) && running)
        (void)stompc_interrupt(running);
    stop++;
}

static void on_receipt(struct stompc *c, const char *id, void *ud)
{
    struct producer *p = ud;
    (void)c;
    long seq;
    if (sscanf(id, "seq-%ld", &seq) != 1 || seq < 1 || seq > p->count)
        return;
    if (!p->receipted[seq]) {
        p->receipted[seq] = 1;
        p->nreceipted++;
    }
    if (!p->quiet)
        out("receipt seq=%ld\n", seq);
}

static void on_reconnect(struct stompc *c, const char *broker, const struct stompc_stats *st, void *ud)
{
    (void)c;
    (void)ud;
    out("reconnected to %s (reconnects=%llu resent=%llu)\n", broker, (unsigned long long)st->reconnects,
           (unsigned long long)st->resent);
}

static void on_error(struct stompc *c, int status, const char *msg, const char *rid, void *ud)
{
    (void)c;
    (void)ud;
    out("error: %s%s%s (%s)\n", msg, rid ? ", receipt " : "", rid ? rid : "", stompc_strerror(status));
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},      {"dest", required_argument, NULL, 'd'},
        {"count", required_argument, NULL, 'n'},    {"size", required_argument, NULL, 's'},
        {"persistent", no_argument, NULL, 'p'},     {"interval", required_argument, NULL, 'i'},
        {"heart-beat", required_argument, NULL, 'b'},
        {"connect-timeout", required_argument, NULL, 'T'}, {"timestamps", no_argument, NULL, 'S'}, {"login", required_argument, NULL, 'l'},
        {"passcode", required_argument, NULL, 'w'}, {"client-id", required_argument, NULL, 'c'},
        {"timeout", required_argument, NULL, 't'},  {"quiet", no_argument, NULL, 'q'},
        {"ca", required_argument, NULL, 'A'},       {"cert", required_argument, NULL, 'C'},
        {"key", required_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},           {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *url = NULL, *dest = NULL;
    long count = 100, size = 100, interval = 0, timeout = 60000;
    bool persistent = false;
    struct producer p = {0};
    struct stompc_options o = {0};
    int opt;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'u': url = optarg; break;
        case 'd': dest = optarg; break;
        case 'n': count = tool_number(PROG, "--count", optarg, 1, LONG_MAX); break;
        case 's': size = tool_number(PROG, "--size", optarg, 0, INT_MAX); break;
        case 'p': persistent = true; break;
        case 'i': interval = tool_number(PROG, "--interval", optarg, 0, LONG_MAX); break;
        case 't': timeout = tool_number(PROG, "--timeout", optarg, 0, INT_MAX); break;
        case 'l': o.login = optarg; break;
        case 'w': o.passcode = optarg; break;
        case 'c': o.client_id = optarg; break;
        case 'q': p.quiet = true; break;
        case 'T': o.connect_timeout = (int)tool_number(PROG, "--connect-timeout", optarg, 1, INT_MAX); break;
        case 'S': stamps = true; break;
        case 'b':
            tool_heart_beat(PROG, optarg, &o.heart_beat_tx, &o.heart_beat_rx);
            break;
        case 'A': o.tls_ca_file = optarg; break;
        case 'C': o.tls_cert_file = optarg; break;
        case 'K': o.tls_key_file = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        case 'V':
            printf("stompd-failover-producer %s (libstompc %s)\n", PACKAGE_VERSION, stompc_version());
            return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (!url || !dest || optind != argc) {
        fputs(usage, stderr);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    p.count = count;
    p.receipted = calloc((size_t)count + 1, 1);
    char *body = malloc((size_t)size + 32);
    if (!p.receipted || !body) {
        fprintf(stderr, "stompd-failover-producer: out of memory\n");
        return 1;
    }
    struct stompc *c = stompc_new();
    if (!c) {
        fprintf(stderr, "stompd-failover-producer: out of memory\n");
        return 1;
    }
    running = c;
    if (stop) /* a signal before running was set: its interrupt is made here */
        (void)stompc_interrupt(c);
    struct stompc_callbacks cb = {.on_receipt = on_receipt, .on_reconnect = on_reconnect, .on_error = on_error};
    (void)stompc_set_callbacks(c, &cb, &p);
    int rc = stompc_connect(c, url, &o);
    if (rc) {
        fprintf(stderr, "stompd-failover-producer: %s\n", stompc_error(c));
        running = NULL;
        stompc_free(c);
        free(body);
        free(p.receipted);
        return rc == STOMPC_EINVAL ? 2 : 1; /* 2: a bad --url (usage) */
    }
    connected = 1;
    struct stompc_stats st;
    stompc_get_stats(c, &st);
    out("connected to %s\n", st.broker);

    long sent = 0;
    int status = 0;
    for (long seq = 1; seq <= count && !stop; seq++) {
        int n = snprintf(body, (size_t)size + 32, "seq=%ld ", seq);
        size_t len = (size_t)n;
        if ((long)len < size) {
            memset(body + len, 'x', (size_t)size - len);
            len = (size_t)size;
        }
        char receipt[32];
        snprintf(receipt, sizeof receipt, "seq-%ld", seq);
        struct stompc_send_opts so = {.persistent = persistent, .receipt = receipt};
        sending = 1;
        rc = stompc_send(c, dest, body, len, &so);
        sending = 0;
        if (rc == STOMPC_EINTR && stop == 1)
            break; /* stopped while the broker held it: waited for below if it was queued */
        if (rc) {
            fprintf(stderr, "stompd-failover-producer: send seq=%ld: %s\n", seq, stompc_error(c));
            status = 1;
            break;
        }
        sent++;
        if (!p.quiet)
            out("send seq=%ld\n", seq);
        /* Wait inside the library: heart-beats and receipts go on. */
        int64_t until = now_ms() + interval;
        do {
            int64_t left = until - now_ms();
            rc = stompc_run(c, left > 0 ? (int)left : 0); /* never -1: that waits for ever */
            if (rc == STOMPC_EINTR && stop == 1)
                break; /* the interrupt meant for the SEND just done */
            if (rc < 0) {
                fprintf(stderr, "stompd-failover-producer: %s\n", stompc_error(c));
                status = 1;
                break;
            }
        } while (!stop && now_ms() < until);
        if (status)
            break;
    }
    if (!status) {
        int64_t until = now_ms() + timeout;
        /* once more after an interrupt the first signal made for a SEND
         * that had returned (the flag is cleared by the call it ends) */
        while ((rc = stompc_flush(c, (int)(until > now_ms() ? until - now_ms() : 0))) == STOMPC_EINTR && stop == 1)
            ;
        if (rc) {
            fprintf(stderr, "stompd-failover-producer: %s\n", stompc_error(c));
            status = 1;
        }
        if (stompc_dispatch(c) < 0)
            status = 1;
    }
    stompc_get_stats(c, &st);
    if (stompc_disconnect(c, 5000) != 0)
        fprintf(stderr, "stompd-failover-producer: disconnect: %s\n", stompc_error(c));
    out("sent=%ld receipted=%ld resent=%llu\n", sent, p.nreceipted, (unsigned long long)st.resent);
    if (sent != count || p.nreceipted != count)
        status = 1;
    running = NULL;
    stompc_free(c);
    free(body);
    free(p.receipted);
    return status;
}
