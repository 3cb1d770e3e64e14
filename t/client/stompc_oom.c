/* libstompc when memory runs out: `stompc_oom URL` runs one session
 * (connect, subscribe, send persistent with and without a waited
 * receipt, receive, ack, flush, disconnect) over and over against a real
 * stompd, the n-th allocation of the library failing in run n, until a
 * run meets no failure. Every call must succeed or fail with an error
 * that says "out of memory" (directly, or as the cause of a lost
 * connection); nothing may crash, and nothing may leak (ASan or valgrind
 * check the exit). With a failover: URL a failure inside the engine
 * costs a reconnect, never a message. Prints "runs=N allocations=N", then
 * "ok". To look at one run: OOM_RUN=n (and OOM_DEBUG=1 for every call's
 * status). */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "failalloc.h"
#include "stompc.h"

static int run_no;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL: run %d (allocation %d fails): ", run_no, run_no);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    _exit(1);
}

/* A call's status: 0, or a failure that traces back to memory. */
static bool fine(struct stompc *c, int rc, const char *what)
{
    if (getenv("OOM_DEBUG"))
        fprintf(stderr, "  %s: %d %s\n", what, rc, rc ? stompc_error(c) : "");
    if (rc == 0)
        return true;
    if (rc < 0 && strstr(stompc_error(c), "out of memory") && failalloc_fired())
        return false;
    die("%s = %d (%s): %s", what, rc, stompc_strerror(rc), stompc_error(c));
}

static int receipts;

static void on_receipt(struct stompc *c, const char *id, void *ud)
{
    (void)c;
    (void)ud;
    if (!strcmp(id, "mine"))
        receipts++;
}

static void session(const char *url)
{
    struct stompc *c = stompc_new();
    if (!c) {
        if (!failalloc_fired())
            die("stompc_new failed");
        return;
    }
    char dest[64];
    snprintf(dest, sizeof dest, "/queue/oom-%ld-%d", (long)getpid(), run_no);
    receipts = 0;
    struct stompc_callbacks cb = {.on_receipt = on_receipt};
    struct stompc_options o = {.login = "u", .heart_beat_tx = 5000, .heart_beat_rx = 5000,
                               .headers = &(struct stompc_header){"x-extra", "1"}, .nheaders = 1};
    if (!fine(c, stompc_set_callbacks(c, &cb, NULL), "set_callbacks") || !fine(c, stompc_connect(c, url, &o), "connect"))
        goto out;
    struct stompc_sub_opts so = {.ack = STOMPC_ACK_CLIENT_INDIVIDUAL, .selector = "x IS NULL"};
    if (!fine(c, stompc_subscribe(c, dest, &so), "subscribe"))
        goto out;
    struct stompc_header h = {"x-header", "a:b\nc"};
    struct stompc_send_opts sw = {.persistent = true, .wait = true, .headers = &h, .nheaders = 1};
    if (!fine(c, stompc_send(c, dest, "first", 5, &sw), "send (wait)"))
        goto out;
    struct stompc_send_opts sr = {.persistent = true, .receipt = "mine"};
    if (!fine(c, stompc_send(c, dest, "second", 6, &sr), "send (receipt)"))
        goto out;
    if (!fine(c, stompc_flush(c, 10000), "flush"))
        goto out;
    const char *want[] = {"first", "second"};
    for (int i = 0; i < 2; i++) {
        struct stompc_msg *m = NULL;
        /* a failure taking a MESSAGE costs a reconnect: it comes again */
        int rc = stompc_receive(c, &m, 10000);
        if (!fine(c, rc, "receive"))
            goto out;
        if (m->body_len != strlen(want[i]) || memcmp(m->body, want[i], m->body_len)) {
            /* after a reconnect the broker may redeliver the first again */
            if (m->redelivered && i == 1 && m->body_len == 5 && !memcmp(m->body, "first", 5)) {
                i--;
            } else {
                die("message %d: '%.*s'", i, (int)m->body_len, m->body);
            }
        }
        rc = stompc_ack(c, m, NULL, STOMPC_WAIT);
        stompc_msg_free(m);
        if (!fine(c, rc, "ack"))
            goto out;
    }
    if (!fine(c, stompc_dispatch(c) < 0 ? -1 : 0, "dispatch"))
        goto out;
    if (receipts != 1 && !failalloc_fired())
        die("%d receipts for 'mine'", receipts);
    (void)fine(c, stompc_disconnect(c, 5000), "disconnect");
out:
    stompc_free(c);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s URL\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    unsigned long allocations = 0;
    if (getenv("OOM_DEBUG")) {
        failalloc_arm(0);
        session(argv[1]);
        fprintf(stderr, "full session: %lu allocations\n", failalloc_count());
    }
    if (getenv("OOM_RUN")) {
        run_no = atoi(getenv("OOM_RUN"));
        failalloc_arm((unsigned long)run_no);
        session(argv[1]);
        printf("fired=%d\n", failalloc_fired());
        return 0;
    }
    for (run_no = 1;; run_no++) {
        failalloc_arm((unsigned long)run_no);
        session(argv[1]);
        bool fired = failalloc_fired();
        unsigned long n = failalloc_count();
        failalloc_arm(0);
        if (getenv("OOM_DEBUG"))
            fprintf(stderr, "run %d fired %d count %lu\n", run_no, fired, n);
        if (!fired) {
            allocations = n;
            break;
        }
        if (run_no > 100000)
            die("no end");
    }
    printf("runs=%d allocations=%lu\nok\n", run_no, allocations);
    return 0;
}
