/* stompd-failover-consumer: receives the producer's numbered messages
 * through libstompc, counting duplicates, and shows failover at work: one
 * line per message and reconnect, then "received=N duplicates=N unmarked=N". Poll
 * style (stompc_receive), which also runs the reconnect/error callbacks. */
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

#define PROG "stompd-failover-consumer"

static const char usage[] =
    "usage: stompd-failover-consumer --url URL --dest DEST [options]\n"
    "\n"
    "Subscribe to DEST and print every message received. A message whose body\n"
    "starts with \"seq=N\" (as stompd-failover-producer sends them) counts once\n"
    "per N (up to 268435456): a second copy of the same N is a duplicate.\n"
    "\n"
    "  --url URL          tcp://host:port, ssl://host:port (TLS) or\n"
    "                     failover:(tcp://h1:p1,ssl://h2:p2,...)?options\n"
    "  --ca FILE          ssl:// brokers: the PEM CA their certificate must chain\n"
    "                     to (default: the system's CAs); the certificate must\n"
    "                     name the URL's host\n"
    "  --cert FILE, --key FILE\n"
    "                     ssl:// brokers that want a client certificate: it and\n"
    "                     its key (PEM)\n"
    "  --dest DEST        destination, e.g. /queue/orders\n"
    "  --count N          stop after N distinct messages (default: no limit)\n"
    "  --ack MODE         auto, client or client-individual (default)\n"
    "  --idle-exit MS     stop after MS ms without a message. Default: never;\n"
    "                     with neither --count nor --idle-exit the consumer\n"
    "                     runs until SIGINT/SIGTERM\n"
    "  --prefetch N       activemq.prefetchSize (default: the broker's)\n"
    "  --heart-beat CX,CY heart-beats to offer, in ms (default 0,0); with\n"
    "                     heart-beats a paused (not dead) broker is noticed\n"
    "  --connect-timeout MS\n"
    "                     ms one connection attempt may take (TCP and\n"
    "                     CONNECTED; default 10000; the URL's connectTimeout wins)\n"
    "  --timestamps       start every line with the wall-clock time (s.ms)\n"
    "  --login USER, --passcode PASS, --client-id ID\n"
    "  --quiet            only reconnects, errors and the summary\n"
    "  --version          the version of the program and of libstompc\n"
    "  --help             this text\n"
    "\n"
    "Output: \"received seq=N\" or \"duplicate seq=N\" per message (\"received\n"
    "(no seq)\" for other bodies), \"reconnected to URI ...\", then\n"
    "\"received=N duplicates=N unmarked=N\" (N distinct messages, N extra copies,\n"
    "N of those copies not marked redelivered: a broker that lost track). Exit\n"
    "status 0 when --count distinct messages came (or, without --count, on\n"
    "--idle-exit or a signal), 1 otherwise, 2 on bad usage. Installed as\n"
    "stompd-failover-consumer; contrib/stompd-failover-consumer in the build tree.\n";

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

static volatile sig_atomic_t stop, subscribed;
static struct stompc *volatile running; /* what a signal interrupts */

/* Once subscribed, the receive loop sees the flag within its short wait
 * and the DISCONNECT goes out with the last ACKs. A signal while it
 * connects, or a second one, ends the call waiting for a broker at once
 * (STOMPC_EINTR). */
static void on_signal(int sig)
{
    (void)sig;
    if ((stop || !subscribed) && running)
        (void)stompc_interrupt(running);
    stop = 1;
}

static void on_reconnect(struct stompc *c, const char *broker, const struct stompc_stats *st, void *ud)
{
    (void)c;
    (void)ud;
    out("reconnected to %s (reconnects=%llu resubscribed=%llu)\n", broker, (unsigned long long)st->reconnects,
           (unsigned long long)st->resubscribed);
}

static void on_error(struct stompc *c, int status, const char *msg, const char *rid, void *ud)
{
    (void)c;
    (void)ud;
    (void)rid;
    out("error: %s (%s)\n", msg, stompc_strerror(status));
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sequence numbers seen, as a growable bitmap. */
struct seen {
    unsigned char *bits;
    size_t nbytes;
};

#define SEQ_MAX (1ul << 28) /* a 32 MiB bitmap at most */

static bool seen_test_set(struct seen *s, unsigned long seq)
{
    size_t byte = seq / 8;
    if (byte >= s->nbytes) {
        size_t n = s->nbytes ? s->nbytes : 64;
        while (n <= byte)
            n *= 2;
        unsigned char *b = realloc(s->bits, n);
        if (!b) {
            fprintf(stderr, "stompd-failover-consumer: out of memory\n");
            exit(1);
        }
        memset(b + s->nbytes, 0, n - s->nbytes);
        s->bits = b;
        s->nbytes = n;
    }
    unsigned char mask = (unsigned char)(1u << (seq % 8));
    bool was = s->bits[byte] & mask;
    s->bits[byte] |= mask;
    return was;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},       {"dest", required_argument, NULL, 'd'},
        {"count", required_argument, NULL, 'n'},     {"ack", required_argument, NULL, 'a'},
        {"idle-exit", required_argument, NULL, 'e'}, {"prefetch", required_argument, NULL, 'f'},
        {"heart-beat", required_argument, NULL, 'b'},
        {"connect-timeout", required_argument, NULL, 'T'}, {"timestamps", no_argument, NULL, 'S'}, {"login", required_argument, NULL, 'l'},
        {"passcode", required_argument, NULL, 'w'},  {"client-id", required_argument, NULL, 'c'},
        {"quiet", no_argument, NULL, 'q'},           {"help", no_argument, NULL, 'h'},
        {"ca", required_argument, NULL, 'A'},        {"cert", required_argument, NULL, 'C'},
        {"key", required_argument, NULL, 'K'},       {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *url = NULL, *dest = NULL;
    long count = 0, idle_exit = -1;
    bool quiet = false;
    struct stompc_options o = {0};
    struct stompc_sub_opts so = {.ack = STOMPC_ACK_CLIENT_INDIVIDUAL};
    int opt;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'u': url = optarg; break;
        case 'd': dest = optarg; break;
        case 'n': count = tool_number(PROG, "--count", optarg, 1, LONG_MAX); break;
        case 'e': idle_exit = tool_number(PROG, "--idle-exit", optarg, 0, LONG_MAX); break;
        case 'f': so.prefetch = (int)tool_number(PROG, "--prefetch", optarg, 1, INT_MAX); break;
        case 'l': o.login = optarg; break;
        case 'w': o.passcode = optarg; break;
        case 'c': o.client_id = optarg; break;
        case 'q': quiet = true; break;
        case 'a':
            if (stompc_ack_mode(optarg, &so.ack) != 0) {
                fprintf(stderr, "stompd-failover-consumer: --ack must be auto, client or client-individual\n");
                return 2;
            }
            break;
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
            printf("stompd-failover-consumer %s (libstompc %s)\n", PACKAGE_VERSION, stompc_version());
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

    struct stompc *c = stompc_new();
    if (!c) {
        fprintf(stderr, "stompd-failover-consumer: out of memory\n");
        return 1;
    }
    running = c;
    if (stop) /* a signal before running was set: its interrupt is made here */
        (void)stompc_interrupt(c);
    struct stompc_callbacks cb = {.on_reconnect = on_reconnect, .on_error = on_error};
    (void)stompc_set_callbacks(c, &cb, NULL);
    int rc = stompc_connect(c, url, &o);
    if (rc == 0)
        rc = stompc_subscribe(c, dest, &so);
    if (rc) {
        bool signalled = stop && rc == STOMPC_EINTR;
        if (!signalled)
            fprintf(stderr, "stompd-failover-consumer: %s\n", stompc_error(c));
        running = NULL;
        stompc_free(c);
        return signalled ? 0 : rc == STOMPC_EINVAL ? 2 : 1; /* 2: a bad --url (usage) */
    }
    subscribed = 1;
    struct stompc_stats st;
    stompc_get_stats(c, &st);
    out("connected to %s, subscribed to %s\n", st.broker, dest);

    struct seen seen = {0};
    long received = 0, duplicates = 0, unmarked = 0;
    int status = 0;
    int64_t last = now_ms();
    while (!stop && (count == 0 || received < count)) {
        int wait = 200; /* short, to notice signals */
        if (idle_exit >= 0) {
            int64_t left = last + idle_exit - now_ms();
            if (left <= 0)
                break;
            if (left < wait)
                wait = (int)left;
        }
        struct stompc_msg *m;
        rc = stompc_receive(c, &m, wait);
        if (rc == STOMPC_ETIMEDOUT || (rc == STOMPC_EINTR && stop))
            continue;
        if (rc) {
            fprintf(stderr, "stompd-failover-consumer: %s\n", stompc_error(c));
            status = 1;
            break;
        }
        last = now_ms();
        unsigned long seq;
        /* a bit per seq: a number past SEQ_MAX (any body may claim one)
         * is counted as a message without one */
        bool numbered = m->body_len > 4 && !strncmp(m->body, "seq=", 4) && m->body[4] >= '0' && m->body[4] <= '9' &&
                        sscanf(m->body + 4, "%lu", &seq) == 1 && seq <= SEQ_MAX;
        if (numbered && seen_test_set(&seen, seq)) {
            duplicates++;
            if (!m->redelivered)
                unmarked++;
            if (!quiet)
                out("duplicate seq=%lu%s\n", seq, m->redelivered ? " (redelivered)" : "");
        } else {
            received++;
            if (!quiet) {
                if (numbered)
                    out("received seq=%lu%s\n", seq, m->redelivered ? " (redelivered)" : "");
                else
                    out("received (no seq)\n");
            }
        }
        if (so.ack != STOMPC_ACK_AUTO && stompc_ack(c, m, NULL, 0) != 0)
            out("error: ack: %s\n", stompc_error(c));
        stompc_msg_free(m);
    }
    if (stompc_disconnect(c, 5000) != 0)
        fprintf(stderr, "stompd-failover-consumer: disconnect: %s\n", stompc_error(c));
    out("received=%ld duplicates=%ld unmarked=%ld\n", received, duplicates, unmarked);
    if (count && received < count && !stop)
        status = 1;
    running = NULL;
    stompc_free(c);
    free(seen.bits);
    return status;
}
