/* libstompc in a plain poll(2) loop: the client in non-blocking mode; the
 * loop waits on stompc_fd() for stompc_events(), at most until the
 * earlier of stompc_timeout() and the application's own next send, then
 * calls stompc_step(). It sends a numbered message every INTERVAL ms,
 * receives them back (poll style, stompc_receive with timeout 0, acking
 * each) and stops when COUNT were sent, receipted and received.
 *
 *   stompc-poll URL DEST COUNT INTERVAL_MS
 *
 * Output as stompc-libev's. Built in the build tree as
 * contrib/eventloop/stompc-poll. */
#include "config.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stompc.h"

static long receipted;

static void on_receipt(struct stompc *c, const char *id, void *ud)
{
    (void)c;
    (void)ud;
    long seq;
    if (sscanf(id, "seq-%ld", &seq) == 1) {
        receipted++;
        printf("receipt seq=%ld\n", seq);
    }
}

static void on_reconnect(struct stompc *c, const char *broker, const struct stompc_stats *st, void *ud)
{
    (void)c;
    (void)st;
    (void)ud;
    printf("reconnected to %s\n", broker);
}

static void on_error(struct stompc *c, int status, const char *msg, const char *rid, void *ud)
{
    (void)c;
    (void)ud;
    printf("error: %s%s%s (%s)\n", msg, rid ? ", receipt " : "", rid ? rid : "", stompc_strerror(status));
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: stompc-poll URL DEST COUNT INTERVAL_MS\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *dest = argv[2];
    long count = atol(argv[3]), interval = atol(argv[4]);
    char *seen = count > 0 ? calloc((size_t)count + 1, 1) : NULL;
    struct stompc *c = seen ? stompc_new() : NULL;
    if (!c) {
        fprintf(stderr, "stompc-poll: bad COUNT, or out of memory\n");
        free(seen);
        return 2;
    }
    /* no on_message: messages wait for stompc_receive */
    struct stompc_callbacks cb = {.on_receipt = on_receipt, .on_reconnect = on_reconnect, .on_error = on_error};
    int rc = stompc_set_callbacks(c, &cb, NULL);
    if (rc == 0)
        rc = stompc_set_nonblocking(c, true);
    struct stompc_options o = {.heart_beat_tx = 1000, .heart_beat_rx = 1000};
    if (rc == 0)
        rc = stompc_connect(c, argv[1], &o);
    struct stompc_sub_opts so = {.id = "s", .ack = STOMPC_ACK_CLIENT_INDIVIDUAL};
    if (rc == 0)
        rc = stompc_subscribe(c, dest, &so);
    if (rc < 0) {
        fprintf(stderr, "stompc-poll: %s\n", stompc_error(c));
        stompc_free(c);
        free(seen);
        return 1;
    }
    long sent = 0, received = 0, duplicates = 0;
    long long next_send = now_ms();
    int status = 1;
    for (;;) {
        /* the application's work that is due */
        while (sent < count && now_ms() >= next_send) {
            char body[64], receipt[32];
            snprintf(body, sizeof body, "seq=%ld", sent + 1);
            snprintf(receipt, sizeof receipt, "seq-%ld", sent + 1);
            struct stompc_send_opts sopts = {.persistent = true, .receipt = receipt};
            rc = stompc_send(c, dest, body, strlen(body), &sopts);
            if (rc == STOMPC_EAGAIN)
                break; /* too much unconfirmed: after the next step */
            if (rc < 0) {
                fprintf(stderr, "stompc-poll: send: %s\n", stompc_error(c));
                goto out;
            }
            sent++;
            next_send += interval;
        }
        struct stompc_msg *m;
        while (stompc_receive(c, &m, 0) == 0) {
            long seq;
            if (sscanf(m->body, "seq=%ld", &seq) == 1 && seq >= 1 && seq <= count) {
                if (seen[seq]) {
                    duplicates++;
                    printf("duplicate seq=%ld%s\n", seq, m->redelivered ? " (redelivered)" : "");
                } else {
                    seen[seq] = 1;
                    received++;
                    printf("received seq=%ld\n", seq);
                }
            }
            if (stompc_ack(c, m, NULL, 0) < 0)
                printf("error: ack: %s\n", stompc_error(c));
            stompc_msg_free(m);
        }
        if (sent == count && receipted == count && received == count) {
            status = 0;
            break;
        }
        /* wait for the client's socket, its timer, or our next send */
        int wait = stompc_timeout(c);
        if (sent < count) {
            long long until = next_send - now_ms();
            int mine = until < 0 ? 0 : (int)until;
            if (wait < 0 || mine < wait)
                wait = mine;
        }
        struct pollfd p = {.fd = stompc_fd(c), .events = (short)stompc_events(c)};
        if (poll(&p, 1, wait) < 0)
            continue; /* EINTR */
        rc = stompc_step(c);
        if (rc < 0) {
            fprintf(stderr, "stompc-poll: %s\n", stompc_error(c));
            goto out;
        }
    }
out:;
    struct stompc_stats st;
    stompc_get_stats(c, &st);
    if (stompc_disconnect(c, 5000) != 0)
        fprintf(stderr, "stompc-poll: disconnect: %s\n", stompc_error(c));
    printf("sent=%ld receipted=%ld received=%ld duplicates=%ld reconnects=%llu\n", sent, receipted, received,
           duplicates, (unsigned long long)st.reconnects);
    stompc_free(c);
    free(seen);
    return status;
}
