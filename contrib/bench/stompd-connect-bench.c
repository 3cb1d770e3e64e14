/* stompd-connect-bench: how many STOMP connections a broker takes per
 * second, each a TCP connect, a CONNECT (with a login and passcode, or
 * without), the CONNECTED read back and a close. Threads loop for a
 * fixed time; the report is connections per second and the latency of
 * the CONNECT -> CONNECTED exchange. An ERROR (a refused login) counts as
 * a failure and fails the run unless --expect-error says it is the point.
 * Plain sockets, no client library: the cost measured is the broker's. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"

#define PROG "stompd-connect-bench"

static const char usage[] =
    "usage: " PROG " [options]\n"
    "\n"
    "Open STOMP connections one after another (CONNECT, wait for CONNECTED,\n"
    "close) from several threads and report connections per second.\n"
    "\n"
    "  --host HOST        broker address (default 127.0.0.1)\n"
    "  --port PORT        broker port (default 61613)\n"
    "  -t, --threads N    client threads (default 4)\n"
    "  -d, --duration S   seconds to run (default 5)\n"
    "  --login USER       send login: (default: none, an anonymous CONNECT)\n"
    "  --passcode PASS    send passcode:\n"
    "  --users N          log in as USER0 .. USER(N-1) in turn (each with PASS)\n"
    "  --expect-error     every CONNECT is expected to be refused (ERROR)\n"
    "  --json             one JSON object instead of the text report\n";

static struct {
    struct addrinfo *addr;
    int threads;
    double duration;
    const char *login, *passcode;
    int users;
    bool expect_error, json;
    atomic_bool stop;
} O = {.threads = 4, .duration = 5};

struct worker {
    pthread_t t;
    int index;
    uint64_t ok, refused, failed;
    struct hist h;
    char why[160];
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 1: CONNECTED, 0: ERROR, -1: anything else (why says what). */
static int one(struct worker *w, uint64_t n, uint64_t *ns)
{
    char frame[1024];
    int len;
    if (O.login && O.users > 0)
        len = snprintf(frame, sizeof frame, "CONNECT\naccept-version:1.2\nhost:bench\nlogin:%s%llu\npasscode:%s\n\n",
                       O.login, (unsigned long long)(n % (uint64_t)O.users), O.passcode ? O.passcode : "");
    else if (O.login)
        len = snprintf(frame, sizeof frame, "CONNECT\naccept-version:1.2\nhost:bench\nlogin:%s\npasscode:%s\n\n",
                       O.login, O.passcode ? O.passcode : "");
    else
        len = snprintf(frame, sizeof frame, "CONNECT\naccept-version:1.2\nhost:bench\n\n");
    frame[len++] = '\0';
    int fd = socket(O.addr->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(w->why, sizeof w->why, "socket: %s", strerror(errno));
        return -1;
    }
    int one_ = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one_, sizeof one_);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int rc = -1;
    if (connect(fd, O.addr->ai_addr, O.addr->ai_addrlen) != 0) {
        snprintf(w->why, sizeof w->why, "connect: %s", strerror(errno));
        goto out;
    }
    double t0 = now();
    if (write(fd, frame, (size_t)len) != len) {
        snprintf(w->why, sizeof w->why, "write: %s", strerror(errno));
        goto out;
    }
    char in[2048];
    size_t got = 0;
    while (got < sizeof in && !memchr(in, '\0', got)) {
        ssize_t r = read(fd, in + got, sizeof in - got);
        if (r <= 0) {
            snprintf(w->why, sizeof w->why, "read: %s", r ? strerror(errno) : "closed before an answer");
            goto out;
        }
        got += (size_t)r;
    }
    *ns = (uint64_t)((now() - t0) * 1e9);
    if (got >= 10 && !memcmp(in, "CONNECTED\n", 10))
        rc = 1;
    else if (got >= 6 && !memcmp(in, "ERROR\n", 6))
        rc = 0;
    else
        snprintf(w->why, sizeof w->why, "unexpected answer: %.40s", in);
out:
    close(fd);
    return rc;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    uint64_t n = (uint64_t)w->index;
    while (!atomic_load(&O.stop)) {
        uint64_t ns = 0;
        int rc = one(w, n, &ns);
        n += (uint64_t)O.threads;
        if (rc < 0) {
            w->failed++;
            continue;
        }
        hist_add(&w->h, ns);
        if (rc == 1)
            w->ok++;
        else
            w->refused++;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},  {"port", required_argument, NULL, 'P'},
        {"threads", required_argument, NULL, 't'}, {"duration", required_argument, NULL, 'd'},
        {"login", required_argument, NULL, 'l'}, {"passcode", required_argument, NULL, 'w'},
        {"users", required_argument, NULL, 'u'}, {"expect-error", no_argument, NULL, 'e'},
        {"json", no_argument, NULL, 'j'},        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *host = "127.0.0.1", *port = "61613";
    int opt;
    while ((opt = getopt_long(argc, argv, "t:d:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'H': host = optarg; break;
        case 'P': port = optarg; break;
        case 't': O.threads = atoi(optarg); break;
        case 'd': O.duration = atof(optarg); break;
        case 'l': O.login = optarg; break;
        case 'w': O.passcode = optarg; break;
        case 'u': O.users = atoi(optarg); break;
        case 'e': O.expect_error = true; break;
        case 'j': O.json = true; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (O.threads < 1 || O.threads > 1024 || O.duration <= 0) {
        fprintf(stderr, PROG ": --threads 1..1024 and a positive --duration\n");
        return 2;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = getaddrinfo(host, port, &hints, &O.addr);
    if (rc != 0) {
        fprintf(stderr, PROG ": %s:%s: %s\n", host, port, gai_strerror(rc));
        return 2;
    }
    struct worker *ws = calloc((size_t)O.threads, sizeof *ws);
    if (!ws)
        return 1;
    double t0 = now();
    for (int i = 0; i < O.threads; i++) {
        ws[i].index = i;
        pthread_create(&ws[i].t, NULL, run, &ws[i]);
    }
    struct timespec d = {(time_t)O.duration, (long)((O.duration - (double)(time_t)O.duration) * 1e9)};
    while (nanosleep(&d, &d) != 0 && errno == EINTR)
        ;
    atomic_store(&O.stop, true);
    struct hist *all = calloc(1, sizeof *all);
    uint64_t ok = 0, refused = 0, failed = 0;
    const char *why = NULL;
    for (int i = 0; i < O.threads; i++) {
        pthread_join(ws[i].t, NULL);
        ok += ws[i].ok;
        refused += ws[i].refused;
        failed += ws[i].failed;
        hist_merge(all, &ws[i].h);
        if (ws[i].failed && !why)
            why = ws[i].why;
    }
    double secs = now() - t0;
    uint64_t answered = ok + refused;
    double p50 = (double)hist_quantile(all, 0.5) / 1e6, p99 = (double)hist_quantile(all, 0.99) / 1e6;
    if (O.json)
        printf("{\"threads\": %d, \"seconds\": %.3f, \"connected\": %llu, \"refused\": %llu, \"failed\": %llu, "
               "\"per_second\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f}\n",
               O.threads, secs, (unsigned long long)ok, (unsigned long long)refused, (unsigned long long)failed,
               (double)answered / secs, p50, p99);
    else
        printf("%llu CONNECTs answered in %.2f s from %d threads: %.0f/s (%llu CONNECTED, %llu ERROR, %llu failed); "
               "CONNECT->answer p50 %.3f ms, p99 %.3f ms\n",
               (unsigned long long)answered, secs, O.threads, (double)answered / secs, (unsigned long long)ok,
               (unsigned long long)refused, (unsigned long long)failed, p50, p99);
    if (why)
        fprintf(stderr, PROG ": a failure: %s\n", why);
    freeaddrinfo(O.addr);
    free(all);
    free(ws);
    bool bad = failed || (O.expect_error ? ok != 0 : refused != 0) || answered == 0;
    return bad ? 1 : 0;
}
