/* The node: the STOMP listener, the accept path with its connection limit,
 * the before-sleep hook (resume paused readers, dispatch dirty queues,
 * flush output, free closed connections), the expiry sweep (which also
 * removes idle destinations) and signals. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "stompd/commit.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/dest.h"
#include "stompd/durable.h"
#include "stompd/log.h"
#include "stompd/server.h"
#include "stompd/persist.h"
#include "stompd/repl.h"
#include "stompd/sub.h"

struct server srv;

int64_t server_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void server_next_msg_id(char *out, size_t len)
{
    snprintf(out, len, "%s%llu", srv.msg_id_prefix, (unsigned long long)++srv.msg_id_counter);
}

uint64_t server_next_seq(void)
{
    return ++srv.next_msg_seq;
}

/* Open a listening TCP socket on host:port. */
static int listen_on(const char *addr, char *err, size_t errlen)
{
    char host[256];
    int port;
    if (config_split_hostport(addr, host, sizeof host, &port) != 0) {
        snprintf(err, errlen, "'%s' is not host:port", addr);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host[0] ? host : NULL, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
        close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    return fd;
}

int server_listen_socket(const char *addr, char *err, size_t errlen)
{
    return listen_on(addr, err, errlen);
}

void server_peer_name(const struct sockaddr_storage *ss, char *out, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    }
    snprintf(out, len, "%s:%d", host, port);
}

static void refuse(int fd)
{
    static const char msg[] =
        "ERROR\nmessage:too many connections\ncontent-type:text/plain\n\n"
        "The broker is at broker.max_connections.\n";
    ssize_t n = write(fd, msg, sizeof msg); /* includes the NUL terminator */
    (void)n;
    close(fd);
    srv.st.connections_refused++;
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(w->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                log_warn("accept: %s", strerror(errno));
            return;
        }
        if (srv.nconns >= (uint32_t)config.max_connections) {
            refuse(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char peer[64];
        server_peer_name(&ss, peer, sizeof peer);
        conn_new(fd, peer);
    }
}

int server_listen_clients(void)
{
    char err[256];
    if (srv.stomp_fd >= 0)
        return 0;
    int fd = listen_on(config.stomp_listen, err, sizeof err);
    if (fd < 0) {
        log_err("STOMP listener: %s (stomp.listen)", err);
        return -1;
    }
    srv.stomp_fd = fd;
    ev_io_init(&srv.stomp_io, accept_cb, fd, EV_READ);
    ev_io_start(srv.loop, &srv.stomp_io);
    log_info("accepting STOMP clients on %s", config.stomp_listen);
    return 0;
}

void server_close_clients(const char *why)
{
    if (srv.stomp_fd >= 0) {
        ev_io_stop(srv.loop, &srv.stomp_io);
        close(srv.stomp_fd);
        srv.stomp_fd = -1;
        log_info("STOMP listener closed: %s", why);
    }
    struct conn *c, *next;
    for (c = TAILQ_FIRST(&srv.conns); c; c = next) {
        next = TAILQ_NEXT(c, link);
        conn_close(c, why);
    }
}

static void flush_all(void)
{
    struct conn *c;
    while ((c = TAILQ_FIRST(&srv.flush))) {
        TAILQ_REMOVE(&srv.flush, c, flush_link);
        c->in_flush = false;
        conn_flush(c);
    }
}

static void free_dead(void)
{
    struct conn *c;
    while ((c = TAILQ_FIRST(&srv.dead))) {
        TAILQ_REMOVE(&srv.dead, c, link);
        conn_free(c);
    }
}

/* Everything the loop owes before it sleeps. Bounded rounds: work left
 * over keeps the loop spinning (ev_idle) instead of sleeping. */
static void before_sleep(struct ev_loop *loop, ev_prepare *w, int revents)
{
    for (int round = 0; round < 4; round++) {
        bool work = conn_run_resumed();
        work |= queue_dispatch_dirty();
        /* acks and delivery marks of this iteration: one journal entry;
         * then everything appended goes to the slaves in one frame each */
        persist_flush_coalesced();
        repl_master_flush();
        flush_all();
        if (!work && TAILQ_EMPTY(&srv.dirty))
            break;
    }
    free_dead();
    repl_peer_gc();
    if (!TAILQ_EMPTY(&srv.dirty) || !TAILQ_EMPTY(&srv.flush))
        ev_idle_start(loop, &srv.spin);
    else
        ev_idle_stop(loop, &srv.spin);
}

static void spin_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    /* Nothing: its only job is to keep the loop from blocking. */
}

static void sweep_one(struct dest *d, void *arg)
{
    int64_t now = *(int64_t *)arg;
    if (dest_is_queue(d)) {
        queue_expire_sweep(&d->q, now);
    } else {
        struct sub *s;
        TAILQ_FOREACH(s, &d->subscribers, topic_link)
            queue_expire_sweep(&s->own, now);
        struct durable *du;
        TAILQ_FOREACH(du, &d->durables, topic_link)
            queue_expire_sweep(&du->q, now);
    }
}

static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    int64_t now = server_now_ms();
    dest_foreach(sweep_one, &now);
    size_t n = dest_collect_idle();
    if (n)
        log_debug("%zu idle destinations removed", n);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    log_info("signal %d: stopping", w->signum);
    server_stop();
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            log_warn("cannot raise the open-files limit: %s", strerror(errno));
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (int64_t)rl.rlim_cur < config.max_connections + 64)
        log_warn("open-files limit %llu is below broker.max_connections (%lld): raise it (ulimit -n)",
                 (unsigned long long)rl.rlim_cur, (long long)config.max_connections);
}

int server_init(struct ev_loop *loop)
{
    memset(&srv, 0, sizeof srv);
    srv.loop = loop;
    srv.stomp_fd = -1;
    TAILQ_INIT(&srv.conns);
    TAILQ_INIT(&srv.dead);
    TAILQ_INIT(&srv.flush);
    TAILQ_INIT(&srv.dirty);
    srv.started_ms = server_now_ms();
    snprintf(srv.msg_id_prefix, sizeof srv.msg_id_prefix, "ID-%.60s-%lld-", config.broker_name,
             (long long)srv.started_ms);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a file size limit is a write error, reported */
    raise_fd_limit();
    ev_prepare_init(&srv.before_sleep, before_sleep);
    ev_prepare_start(loop, &srv.before_sleep);
    ev_idle_init(&srv.spin, spin_cb);
    ev_signal_init(&srv.sigterm, signal_cb, SIGTERM);
    ev_signal_start(loop, &srv.sigterm);
    ev_signal_init(&srv.sigint, signal_cb, SIGINT);
    ev_signal_start(loop, &srv.sigint);
    double sweep = (double)config.expiry_check_interval / 1000.0;
    ev_timer_init(&srv.sweep, sweep_cb, sweep, sweep);
    ev_timer_start(loop, &srv.sweep);
    return 0;
}

int server_run(void)
{
    ev_run(srv.loop, 0);
    return 0;
}

void server_stop(void)
{
    srv.stopping = true;
    ev_break(srv.loop, EVBREAK_ALL);
}

/* Clean stop: no new clients, best-effort flush of what is queued for the
 * ones we have, then every broker structure freed. */
void server_shutdown(void)
{
    if (srv.stomp_fd >= 0) {
        ev_io_stop(srv.loop, &srv.stomp_io);
        close(srv.stomp_fd);
        srv.stomp_fd = -1;
    }
    flush_all();
    struct conn *c;
    while ((c = TAILQ_FIRST(&srv.conns)))
        conn_close(c, "broker stopping");
    free_dead();
    durable_free_all();
    dest_free_all();
    commit_free_all();
    ev_timer_stop(srv.loop, &srv.sweep);
    ev_prepare_stop(srv.loop, &srv.before_sleep);
    ev_idle_stop(srv.loop, &srv.spin);
    ev_signal_stop(srv.loop, &srv.sigterm);
    ev_signal_stop(srv.loop, &srv.sigint);
}
