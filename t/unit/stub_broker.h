/* Stubs of the broker core for unit tests of the modules under it
 * (recovery): every call is recorded for the test to check, and the
 * objects handed back are plain structures, no queues, no dispatch. */
#ifndef STUB_BROKER_H
#define STUB_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A queue told how many messages the store holds for it. */
struct stub_restore {
    char dest[64];
    uint64_t n;
    bool durable;   /* a durable subscription's backlog */
};
struct stub_durable {
    char client_id[32], name[32], topic[64], selector[64], reader[32];
    bool compiled;
};

extern struct stub_restore stub_restored[16];
extern size_t stub_nrestored;
extern struct stub_durable stub_durables[8];
extern size_t stub_ndurables;
extern char stub_dups[8][64];
extern size_t stub_ndups;
extern bool stub_dups_restored;
/* What sched_restore was told (-1: not called). */
extern int64_t stub_sched_restored;

void stub_broker_reset(void);
struct dest *stub_find_dest(const char *name);

#endif
