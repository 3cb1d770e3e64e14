/* Readiness for systemd (Type=notify): READY=1 once the node serves STOMP
 * clients (standalone, master) or has joined its cluster (registered in
 * ZooKeeper, whatever role the election gives it; a slave by configuration
 * once its replication runs), STATUS= with the role whenever that changes,
 * RELOADING=1 around a SIGHUP, STOPPING=1 at the clean stop, and
 * WATCHDOG=1 at half the unit's WatchdogSec= from a timer on the loop: a
 * loop that stops turning (a deadlock, a blocking call gone wrong) gets the
 * node killed and restarted. That matters most for a master, whose
 * ZooKeeper session its client's own thread keeps alive while the loop is
 * stuck, so no other node would take over. The state is
 * read from the modules' query functions before the loop sleeps (an
 * ev_prepare watcher comparing a few fields), so no role change anywhere has
 * to remember to tell us. Without libsystemd every function is empty and
 * the installed unit is Type=simple. */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "stompd/cluster.h"
#include "stompd/config.h"
#include "stompd/log.h"
#include "stompd/node.h"
#include "stompd/notify.h"
#include "stompd/repl.h"
#include "stompd/server.h"
#include "stompd/stream.h"

#ifdef HAVE_LIBSYSTEMD

/* What the status line is made of: a change of any field is a new line. */
struct state {
    int role;
    bool serving, streaming, registered, zk;
    char master[128];          /* a slave's master (its replication address) */
};

static struct {
    struct ev_loop *loop;
    ev_prepare watch;
    ev_timer dog;               /* WATCHDOG=1, when systemd asks for it */
    ev_tstamp dog_every;        /* its interval (0: no watchdog) */
    ev_tstamp dog_last;         /* when WATCHDOG=1 was said last (ev_time) */
    bool on, ready, reloading;
    struct state last;
    char status[300];
} N;

static struct state current(void)
{
    struct state s = {
        .role = (int)node_role(),
        .serving = listener_running(&srv.stomp),
        .streaming = node_role() == NODE_SLAVE && repl_slave_connected(),
        .registered = cluster_registered(),
        .zk = cluster_enabled(),
    };
    if (node_role() == NODE_SLAVE)
        snprintf(s.master, sizeof s.master, "%s", repl_slave_master());
    return s;
}

static bool is_ready(const struct state *s)
{
    if (s->zk)
        return s->registered;
    return s->serving || s->role == NODE_SLAVE;
}

static void describe(const struct state *s, char *out, size_t len)
{
    const char *master = s->master;
    switch ((enum node_role)s->role) {
    case NODE_STARTING:
    case NODE__ROLES:
        snprintf(out, len, "starting");
        break;
    case NODE_STEPPING_DOWN:
        snprintf(out, len, "stepping down as master");
        break;
    case NODE_STOPPED:
        snprintf(out, len, "stopped");
        break;
    case NODE_STANDALONE:
        snprintf(out, len, "standalone, %s %s", s->serving ? "serving STOMP on" : "starting,", config.stomp_listen);
        break;
    case NODE_MASTER:
        snprintf(out, len, "master, %s STOMP on %s", s->serving ? "serving" : "not yet serving", config.stomp_listen);
        break;
    case NODE_SLAVE:
        snprintf(out, len, "slave of %s, %s", *master ? master : "(no master yet)",
                 s->streaming ? "replicating" : "connecting");
        break;
    case NODE_ELECTING:
        snprintf(out, len, "electing: %s", !s->zk ? "no ZooKeeper"
                                           : s->registered ? "registered in ZooKeeper, waiting for a master"
                                           : "joining ZooKeeper");
        break;
    }
}

static void send_state(bool force)
{
    struct state s = current();
    if (!force && s.role == N.last.role && s.serving == N.last.serving && s.streaming == N.last.streaming &&
        s.registered == N.last.registered && s.zk == N.last.zk && !strcmp(s.master, N.last.master))
        return;
    N.last = s;
    describe(&s, N.status, sizeof N.status);
    bool ready = !N.ready && is_ready(&s);
    if (ready)
        N.ready = true;
    int rc = sd_notifyf(0, "%sSTATUS=%s", ready ? "READY=1\n" : "", N.status);
    if (rc < 0)
        log_warn("sd_notify: %s", strerror(-rc));
    else if (ready)
        log_debug("told systemd: ready (%s)", N.status);
}

static void watch_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    if (!N.reloading)
        send_state(false);
}

static void ping(ev_tstamp now)
{
    N.dog_last = now;
    (void)sd_notify(0, "WATCHDOG=1");
}

static void dog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    ping(ev_time());
}

void notify_alive(void)
{
    if (!N.on || !N.dog_every)
        return;
    ev_tstamp now = ev_time();
    if (now - N.dog_last >= N.dog_every)
        ping(now);
}

void notify_start(struct ev_loop *loop)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    if (!sock || !*sock)
        return;
    memset(&N, 0, sizeof N);
    N.last.role = -1;
    N.loop = loop;
    N.on = true;
    ev_prepare_init(&N.watch, watch_cb);
    ev_prepare_start(loop, &N.watch);
    /* systemd watches from READY=1 on; the start (the store's recovery)
     * runs before the loop, and needs no pings */
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        ev_tstamp every = (ev_tstamp)usec / 2e6;
        N.dog_every = every;
        N.dog_last = ev_time();
        ev_timer_init(&N.dog, dog_cb, every, every);
        ev_timer_start(loop, &N.dog);
        log_info("systemd watchdog: telling it every %.3g s that the loop turns", every);
    }
    /* the role is known once the store is open and the loop runs */
    (void)sd_notifyf(0, "STATUS=starting: opening the store in %s", config.data_dir);
}

void notify_stop(void)
{
    if (N.on) {
        ev_prepare_stop(N.loop, &N.watch);
        ev_timer_stop(N.loop, &N.dog);
        N.on = false;
    }
}

void notify_reloading(void)
{
    if (!N.on)
        return;
    N.reloading = true;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    (void)sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the configuration",
                     (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
}

void notify_reloaded(void)
{
    if (!N.on)
        return;
    N.reloading = false;
    /* READY=1 ends the reload; said only if we were ready before */
    describe(&N.last, N.status, sizeof N.status);
    (void)sd_notifyf(0, "%sSTATUS=%s", N.ready ? "READY=1\n" : "", N.status);
}

void notify_stopping(void)
{
    if (!N.on)
        return;
    ev_prepare_stop(N.loop, &N.watch);
    ev_timer_stop(N.loop, &N.dog);
    N.dog_every = 0;
    (void)sd_notify(0, "STOPPING=1\nSTATUS=stopping");
    N.on = false;
}

#else /* !HAVE_LIBSYSTEMD */

void notify_start(struct ev_loop *loop)
{
    (void)loop;
}

void notify_stop(void)
{
}

void notify_reloading(void)
{
}

void notify_reloaded(void)
{
}

void notify_stopping(void)
{
}

void notify_alive(void)
{
}

#endif
