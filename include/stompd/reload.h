/* SIGHUP: re-read the configuration and apply what a running broker can
 * take without a restart (see the hooks table in src/reload.c). */
#ifndef STOMPD_RELOAD_H
#define STOMPD_RELOAD_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Watch SIGHUP on loop. file and sets (the -c file and the --set
 * assignments, kept by the caller for the process's life) are read again
 * at each reload, in the same order as at start. */
void reload_start(struct ev_loop *loop, const char *file, const char *const *sets, int nsets);
void reload_stop(void);
/* Reload now (what SIGHUP does); 0 when the configuration could be read. */
int reload_now(void) __attribute__((warn_unused_result));
/* Reloads so far: applied whole, or failed (the file refused, or a
 * module kept its settings); whether the last one was applied whole
 * (true before any). */
struct reload_stats {
    uint64_t applied, failed;
    bool last_ok;
};
struct reload_stats reload_stats(void);
/* key takes effect on SIGHUP (every other key needs a restart). */
bool reload_key_is_live(const char *key);

#endif
