/* trie-bench: what matching a published topic against the broker's
 * wildcard subscriptions costs, with stompd's trie (src/trie.c, the index
 * topic_publish walks) and with a scan over every pattern (dname_match),
 * at 10,000 topics x 1,000 wildcard subscriptions by default. Prints the
 * figures; checks that both find the same subscriptions.
 *
 *   contrib/trie-bench [--topics N] [--subs N] [--rounds N] */
#include "config.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stompd/dname.h"
#include "stompd/trie.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct count {
    uint64_t matches;
    uint64_t sum; /* of item numbers: compared between the two ways */
};

static void hit(void *item, void *arg)
{
    struct count *c = arg;
    c->matches++;
    c->sum += (uint64_t)(uintptr_t)item;
}

/* Subscription k's pattern: a mix of what wildcard subscribers write,
 * most of which match a few of the topics and many none. Topics are
 * bench.g<G>.t<T>, G and T below `side`. */
static void pattern(char *out, size_t len, long k, long side)
{
    long a = k % side, b = (k / 7) % side;
    switch (k % 10) {
    case 0: snprintf(out, len, "bench.g%ld.*", a); break;          /* a group: side topics */
    case 1: snprintf(out, len, "bench.*.t%ld", a); break;          /* a column: side topics */
    case 2: snprintf(out, len, "bench.g%ld.>", a); break;          /* the group, '>' */
    case 3: snprintf(out, len, "*.g%ld.t%ld", a, b); break;        /* one topic, '*' first */
    case 4: snprintf(out, len, "*.g%ld.>", b); break;              /* a group, '*' first */
    case 5: snprintf(out, len, "other%ld.>", k); break;            /* another tree: never */
    case 6: snprintf(out, len, "bench.g%ld.t%ld.*", a, b); break;  /* one segment too deep: never */
    case 7: snprintf(out, len, "bench.x%ld.*", k); break;          /* no such group: never */
    case 8: snprintf(out, len, "*.*.t%ld", b); break;              /* a column, two '*' */
    default: snprintf(out, len, "bench.g%ld.t%ld", a, b); break;  /* no wildcard: one topic */
    }
}

int main(int argc, char **argv)
{
    long topics = 10000, subs = 1000, rounds = 20;
    static const struct option opts[] = {
        {"topics", required_argument, NULL, 't'},
        {"subs", required_argument, NULL, 's'},
        {"rounds", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "t:s:r:h", opts, NULL)) != -1) {
        switch (o) {
        case 't': topics = atol(optarg); break;
        case 's': subs = atol(optarg); break;
        case 'r': rounds = atol(optarg); break;
        default:
            fprintf(stderr, "usage: trie-bench [--topics N] [--subs N] [--rounds N]\n");
            return o == 'h' ? 0 : 2;
        }
    }
    if (topics < 1 || subs < 1 || rounds < 1) {
        fprintf(stderr, "trie-bench: --topics, --subs and --rounds must be at least 1\n");
        return 2;
    }
    long side = 1;
    while (side * side < topics)
        side++;
    char (*names)[64] = calloc((size_t)topics, sizeof *names);
    char (*pats)[96] = calloc((size_t)subs, sizeof *pats);
    if (!names || !pats)
        return 1;
    for (long i = 0; i < topics; i++)
        snprintf(names[i], sizeof names[i], "bench.g%ld.t%ld", i / side, i % side);
    for (long k = 0; k < subs; k++)
        pattern(pats[k], sizeof pats[k], k, side);

    struct trie t;
    trie_init(&t);
    double t0 = now_s();
    for (long k = 0; k < subs; k++)
        trie_add(&t, pats[k], (void *)(uintptr_t)(k + 1));
    double build = now_s() - t0;

    /* the trie, as topic_publish walks it */
    struct count tc = {0, 0};
    t0 = now_s();
    for (long r = 0; r < rounds; r++)
        for (long i = 0; i < topics; i++)
            trie_match(&t, names[i], hit, &tc);
    double trie_s = now_s() - t0;

    /* a scan over every subscription's pattern */
    struct count sc = {0, 0};
    long scan_rounds = rounds / 10 > 0 ? rounds / 10 : 1;
    t0 = now_s();
    for (long r = 0; r < scan_rounds; r++)
        for (long i = 0; i < topics; i++)
            for (long k = 0; k < subs; k++)
                if (dname_match(pats[k], names[i]))
                    hit((void *)(uintptr_t)(k + 1), &sc);
    double scan_s = now_s() - t0;

    double n_trie = (double)topics * (double)rounds, n_scan = (double)topics * (double)scan_rounds;
    bool same = tc.matches / (uint64_t)rounds == sc.matches / (uint64_t)scan_rounds &&
                tc.sum / (uint64_t)rounds == sc.sum / (uint64_t)scan_rounds;
    printf("trie-bench: %ld topics x %ld wildcard subscriptions\n", topics, subs);
    printf("  index:  %ld patterns added in %.3f ms, %zu trie nodes\n", subs, build * 1e3, t.nnodes);
    printf("  trie:   %.3f us per publish (%.0f publishes/s), %.2f matching subscriptions per publish\n",
           trie_s / n_trie * 1e6, n_trie / trie_s, (double)tc.matches / n_trie);
    printf("  scan:   %.3f us per publish (%.0f publishes/s) with dname_match over every pattern\n",
           scan_s / n_scan * 1e6, n_scan / scan_s);
    printf("  speedup %.0fx; same subscriptions found: %s\n", (scan_s / n_scan) / (trie_s / n_trie),
           same ? "yes" : "NO");
    t0 = now_s();
    for (long k = 0; k < subs; k++)
        if (!trie_remove(&t, pats[k], (void *)(uintptr_t)(k + 1)))
            same = false;
    printf("  remove: %ld patterns in %.3f ms, %zu nodes left\n", subs, (now_s() - t0) * 1e3, t.nnodes);
    trie_free(&t);
    free(names);
    free(pats);
    return same ? 0 : 1;
}
