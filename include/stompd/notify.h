/* Readiness and status for systemd's Type=notify (sd_notify). Every call
 * does nothing without libsystemd or outside systemd (no NOTIFY_SOCKET). */
#ifndef STOMPD_NOTIFY_H
#define STOMPD_NOTIFY_H

#include <ev.h>

/* Watch the node's state from loop: READY=1 once it serves clients
 * (standalone, master) or has joined its cluster (registered in
 * ZooKeeper; a slave by configuration once it runs), STATUS= with the
 * role whenever that changes. */
void notify_start(struct ev_loop *loop);
void notify_stop(void);
/* RELOADING=1 (SIGHUP); notify_reloaded() says READY=1 again. */
void notify_reloading(void);
void notify_reloaded(void);
/* STOPPING=1, for the clean stop. */
void notify_stopping(void);
/* Long work on the loop that makes progress (the rebuild of a node
 * elected master) calls this as it goes: WATCHDOG=1 when one is due, so
 * the watchdog, there for a loop that is stuck, leaves it be. */
void notify_alive(void);

#endif
