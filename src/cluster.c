/* ZooKeeper membership and election (DESIGN §6): the only file that
 * includes zookeeper.h. Every ZooKeeper callback runs on the client
 * library's threads; each one copies what it got into an event and wakes
 * the loop through ev_async. All decisions happen on the loop thread, in
 * evaluate(): follow the master znode's node, or elect one when there is
 * none, and step down at once when this node can no longer be sure it
 * leads. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <jansson.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

#include "stompd/cluster.h"
#include "stompd/config.h"
#include "stompd/election.h"
#include "stompd/handoff.h"
#include "stompd/log.h"
#include "stompd/node.h"
#include "stompd/persist.h"
#include "stompd/repl.h"
#include "stompd/server.h"
#include "stompd/store.h"
#include "stompd/stream.h"

#define MAX_MEMBERS 64
/* A node that failed to start as master (become_master_now) */
#define UNFIT_TIME 60.0       /* seconds ranked below the members as up to date */
#define UNFIT_FIRST_WAIT 1.0  /* seconds before it claims again, doubling with each failure in a row */
#define UNFIT_MAX_WAIT 30.0

enum zop {
    OP_CREATE_PATH,
    OP_CREATE_MEMBER,
    OP_SET_MEMBER,
    OP_CHILDREN,
    OP_MEMBER_DATA,
    OP_MASTER_EXISTS,
    OP_MASTER_DATA,
    OP_EPOCH,
    OP_CLAIM,
    OP_AUTH,
    OP_PROBE,
    OP_ACL,
};

enum ev_kind { EV_SESSION, EV_WATCH, EV_DONE };

struct zev {
    struct handoff_node node; /* first: queued from ZooKeeper's threads */
    enum ev_kind kind;
    uint64_t gen;          /* session generation it belongs to */
    enum zop op;
    int rc;
    int type, state;       /* watcher events */
    char *path;            /* watch path, or the op's path */
    char *value;
    int vlen;
    int32_t version;
    int64_t owner;         /* data_done: the session that created the znode (0: not ephemeral) */
    char **children;
    int nchildren;
    struct zctx *claim;    /* OP_CLAIM: its multi arrays, freed with the event */
    ev_tstamp sent;        /* EV_DONE: when its request was sent */
};

/* Context handed to the library: which op, which session, which path. */
struct zctx {
    struct zctx *prev, *next; /* requests in flight, until they complete */
    enum zop op;
    uint64_t gen;
    ev_tstamp sent;        /* loop time the request was handed over */
    char path[640];
    zoo_op_t *mops;
    zoo_op_result_t *mres;
    char *mbuf;
};

/* Requests handed to the library whose completion has not run yet:
 * counted, and listed so that those the library never completes (it can
 * drop requests it had not sent when it is closed while the server is out
 * of reach) are freed by cluster_stop rather than leaked. */
static int inflight;
static pthread_mutex_t ctx_mu = PTHREAD_MUTEX_INITIALIZER;
static struct zctx *ctx_live;

static void ctx_settled(struct zctx *c)
{
    pthread_mutex_lock(&ctx_mu);
    if (c->prev)
        c->prev->next = c->next;
    else if (ctx_live == c)
        ctx_live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    inflight--;
    pthread_mutex_unlock(&ctx_mu);
}

static void ctx_free(struct zctx *c)
{
    free(c->mops);
    free(c->mres);
    free(c->mbuf);
    free(c);
}


/* A master refused this node's store.security_token: "id/epoch" of that
 * master's term. A node keeps the last few. */
#define MAX_REFUSALS 4
#define REFUSAL_LEN (40 + 1 + 20)

struct mem {
    char name[64];
    bool have_data;
    struct member m;
    char role[16];
    char broker[128];
    char stomp[128], repl[128], http[128];
    char refused_by[MAX_REFUSALS][REFUSAL_LEN + 1];
    int nrefused;
    uint64_t refused_in;         /* it stepped down as refused in this epoch (0: no) */
    int64_t replicas;            /* its store.replicas (0: not said, an older node) */
    int tls;                     /* its store.tls (-1: not said) */
};

static struct {
    bool running;
    zhandle_t *zh;
    uint64_t gen;
    bool connected;
    bool registered;
    bool auth_failed;
    bool expired;          /* the last session expired; no new one connected yet */
    char root[400], members_path[450], master_path[450], epoch_path[450];
    char my_path[640];
    uint64_t my_seq;
    char my_id[40];
    char stomp_addr[300], repl_addr[300], http_addr[300];
    struct mem members[MAX_MEMBERS];
    int nmembers;
    bool have_members;
    bool master_known;     /* we know whether the master znode exists */
    bool master_exists;
    char master_id[40];
    char master_repl[300];
    char master_stomp[300];
    char master_http[300];
    uint64_t master_epoch;
    int64_t master_owner;  /* the session that created the master znode */
    int64_t stale_owner;   /* a master znode of ours left by an earlier session: said once */
    bool claiming;
    uint64_t pending_epoch; /* won a claim; waiting for the store to catch up */
    ev_tstamp unfit_until;  /* failed to start as master: ranked below the members as up to date until then */
    ev_tstamp claim_after;  /* and claims again no sooner than this */
    int failed_starts;      /* in a row: the wait before the next claim doubles */
    bool led;               /* this node was master in this session */
    char refused_by[MAX_REFUSALS][REFUSAL_LEN + 1]; /* masters' terms that refused our token, oldest first */
    int nrefused;
    uint64_t refused_in;    /* stepped down as refused (STEPDOWN_REFUSED) in this epoch; 0: no */
    ev_tstamp disconnected_since;
    ev_tstamp last_heard;  /* latest sending time of a request the server answered */
    ev_tstamp probe_sent;
    ev_tstamp grace_until; /* after the loop's own long work: wait for a probe */
    bool probing;
    char *published;        /* the member data last set */
    /* events from ZooKeeper's threads */
    struct handoff events;
    ev_async async;
    ev_timer tick;
    ev_prepare before_poll;
    ev_check after_poll;
    ev_tstamp poll_started;
    bool fatal;
    bool checked;          /* this process's start-up checks ran */
} Z;

static void evaluate(void);
static void publish(bool force);
static void start_session(void);
static bool paused_check(void);

/* ------------------------------------------------------------ events in */

static void push(struct zev *e)
{
    handoff_push(&Z.events, &e->node);
}

static struct zev *new_ev(enum ev_kind kind, const struct zctx *c, int rc)
{
    if (c)
        ctx_settled((struct zctx *)c);
    struct zev *e = calloc(1, sizeof *e);
    if (!e)
        abort();
    e->kind = kind;
    e->rc = rc;
    if (c) {
        e->op = c->op;
        e->gen = c->gen;
        e->sent = c->sent;
        e->path = strdup(c->path);
    }
    return e;
}

static void session_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    struct zev *e = new_ev(EV_SESSION, NULL, 0);
    e->gen = (uint64_t)(uintptr_t)ctx;
    e->type = type;
    e->state = state;
    e->path = strdup(path ? path : "");
    push(e);
}

static void node_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    struct zev *e = new_ev(EV_WATCH, NULL, 0);
    e->gen = (uint64_t)(uintptr_t)ctx;
    e->type = type;
    e->state = state;
    e->path = strdup(path ? path : "");
    push(e);
}

static void string_done(int rc, const char *value, const void *data)
{
    const struct zctx *c = data;
    struct zev *e = new_ev(EV_DONE, c, rc);
    if (rc == ZOK && value)
        e->value = strdup(value);
    push(e);
    free((void *)c);
}

static void stat_done(int rc, const struct Stat *stat, const void *data)
{
    const struct zctx *c = data;
    struct zev *e = new_ev(EV_DONE, c, rc);
    if (rc == ZOK && stat)
        e->version = stat->version;
    push(e);
    free((void *)c);
}

static void data_done(int rc, const char *value, int len, const struct Stat *stat, const void *data)
{
    const struct zctx *c = data;
    struct zev *e = new_ev(EV_DONE, c, rc);
    if (rc == ZOK) {
        e->value = malloc((size_t)(len > 0 ? len : 0) + 1);
        if (!e->value)
            abort();
        if (len > 0)
            memcpy(e->value, value, (size_t)len);
        e->value[len > 0 ? len : 0] = '\0';
        e->vlen = len > 0 ? len : 0;
        e->version = stat ? stat->version : 0;
        e->owner = stat ? stat->ephemeralOwner : 0;
    }
    push(e);
    free((void *)c);
}

static void strings_done(int rc, const struct String_vector *sv, const void *data)
{
    const struct zctx *c = data;
    struct zev *e = new_ev(EV_DONE, c, rc);
    if (rc == ZOK && sv) {
        e->children = calloc((size_t)sv->count + 1, sizeof *e->children);
        for (int i = 0; i < sv->count; i++)
            e->children[i] = strdup(sv->data[i]);
        e->nchildren = sv->count;
    }
    push(e);
    free((void *)c);
}

/* Only whether the world can write there matters: value is "1" then. */
static void acl_done(int rc, struct ACL_vector *acl, struct Stat *stat, const void *data)
{
    const struct zctx *c = data;
    struct zev *e = new_ev(EV_DONE, c, rc);
    (void)stat;
    for (int i = 0; rc == ZOK && acl && i < acl->count; i++)
        if (!strcmp(acl->data[i].id.scheme, "world") && (acl->data[i].perms & ZOO_PERM_WRITE) && !e->value)
            e->value = strdup("1");
    push(e);
    free((void *)c);
}

static void void_done(int rc, const void *data)
{
    const struct zctx *c = data;
    struct zev *e = new_ev(EV_DONE, c, rc);
    /* a multi's arrays are freed with its event on the loop thread */
    if (c->op == OP_CLAIM)
        e->claim = (struct zctx *)c;
    else
        free((void *)c);
    push(e);
}

static struct zctx *ctx(enum zop op, const char *path)
{
    struct zctx *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->op = op;
    c->gen = Z.gen;
    c->sent = ev_now(srv.loop);
    snprintf(c->path, sizeof c->path, "%s", path ? path : "");
    pthread_mutex_lock(&ctx_mu);
    c->next = ctx_live;
    if (ctx_live)
        ctx_live->prev = c;
    ctx_live = c;
    inflight++;
    pthread_mutex_unlock(&ctx_mu);
    return c;
}

static const struct ACL_vector *acl(void)
{
    return config.zk_password[0] ? &ZOO_CREATOR_ALL_ACL : &ZOO_OPEN_ACL_UNSAFE;
}

/* A request the library refused never completes: its context is ours. */
static void check_req(int rc, const char *what, struct zctx *c)
{
    if (rc == ZOK)
        return;
    log_warn("zookeeper: %s: %s", what, zerror(rc));
    ctx_settled(c);
    ctx_free(c);
}
#define check(rc, what) check_req((rc), (what), c)

/* ------------------------------------------------------------ requests */

static void req_children(void)
{
    struct zctx *c = ctx(OP_CHILDREN, Z.members_path);
    check(zoo_awget_children(Z.zh, Z.members_path, node_watcher, (void *)(uintptr_t)Z.gen, strings_done, c),
          "get members");
}

static void req_member(const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", Z.members_path, name);
    struct zctx *c = ctx(OP_MEMBER_DATA, path);
    check(zoo_awget(Z.zh, path, node_watcher, (void *)(uintptr_t)Z.gen, data_done, c), "get member");
}

static void req_master(void)
{
    struct zctx *c = ctx(OP_MASTER_EXISTS, Z.master_path);
    check(zoo_awexists(Z.zh, Z.master_path, node_watcher, (void *)(uintptr_t)Z.gen, stat_done, c), "watch master");
}

static void req_master_data(void)
{
    struct zctx *c = ctx(OP_MASTER_DATA, Z.master_path);
    check(zoo_awget(Z.zh, Z.master_path, node_watcher, (void *)(uintptr_t)Z.gen, data_done, c), "get master");
}

static void create_path(const char *path, const char *value, bool shared_root)
{
    struct zctx *c = ctx(OP_CREATE_PATH, path);
    check(zoo_acreate(Z.zh, path, value, value ? (int)strlen(value) : -1,
                      shared_root ? &ZOO_OPEN_ACL_UNSAFE : acl(), ZOO_PERSISTENT, string_done, c),
          "create path");
}

/* ------------------------------------------------------------ our member znode */

static char *member_json(void)
{
    uint64_t e;
    uint64_t lsn = persist_position(&e);
    const char *role = node_role() == NODE_MASTER ? "master"
                       : node_role() == NODE_SLAVE ? "slave"
                                                   : "electing";
    json_t *refused = json_array();
    for (int i = 0; i < Z.nrefused; i++)
        json_array_append_new(refused, json_string(Z.refused_by[i]));
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:b, s:o, s:I, s:I, s:b}", "id", Z.my_id,
                          "broker", config.broker_name, "stomp", Z.stomp_addr, "repl", Z.repl_addr, "http",
                          Z.http_addr, "epoch", (json_int_t)e, "lsn", (json_int_t)lsn, "weight",
                          (json_int_t)config.weight, "role", role, "unfit", ev_now(srv.loop) < Z.unfit_until,
                          "refused_by", refused, "refused_in", (json_int_t)Z.refused_in, "replicas",
                          (json_int_t)config.replicas, "tls", config.store_tls);
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return s;
}

static void publish(bool force)
{
    if (!Z.registered || !Z.connected)
        return;
    char *s = member_json();
    if (!force && Z.published && !strcmp(s, Z.published)) {
        free(s);
        return;
    }
    struct zctx *c = ctx(OP_SET_MEMBER, Z.my_path);
    check(zoo_aset(Z.zh, Z.my_path, s, (int)strlen(s), -1, stat_done, c), "publish member");
    free(Z.published);
    Z.published = s;
}

static void register_member(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/m-", Z.members_path);
    char *s = member_json();
    struct zctx *c = ctx(OP_CREATE_MEMBER, path);
    check(zoo_acreate(Z.zh, path, s, (int)strlen(s), acl(), ZOO_EPHEMERAL_SEQUENTIAL, string_done, c),
          "register member");
    free(Z.published);
    Z.published = s;
}

/* ------------------------------------------------------------ parsing */

static struct mem *find_member(const char *name)
{
    for (int i = 0; i < Z.nmembers; i++)
        if (!strcmp(Z.members[i].name, name))
            return &Z.members[i];
    return NULL;
}

static void parse_member(struct mem *m, const char *value)
{
    json_error_t jerr;
    json_t *j = json_loads(value, 0, &jerr);
    const char *id = "", *role = "", *broker = "", *stomp = "", *repl = "", *http = "";
    json_int_t epoch = 0, lsn = 0, weight = 1, refused_in = 0, replicas = 0;
    int unfit = 0, tls = -1;
    json_t *refused = NULL;
    if (!j || json_unpack(j, "{s?s, s?s, s?s, s?s, s?s, s?s, s?I, s?I, s?I, s?b, s?o, s?I, s?I, s?b}", "id", &id,
                          "role", &role, "broker", &broker, "stomp", &stomp, "repl", &repl, "http", &http, "epoch",
                          &epoch, "lsn", &lsn, "weight", &weight, "unfit", &unfit, "refused_by", &refused,
                          "refused_in", &refused_in, "replicas", &replicas, "tls", &tls) != 0) {
        log_warn("zookeeper: member %s has unreadable data", m->name);
        json_decref(j);
        return;
    }
    snprintf(m->m.id, sizeof m->m.id, "%s", id);
    snprintf(m->role, sizeof m->role, "%s", role);
    snprintf(m->broker, sizeof m->broker, "%s", broker);
    snprintf(m->stomp, sizeof m->stomp, "%s", stomp);
    snprintf(m->repl, sizeof m->repl, "%s", repl);
    snprintf(m->http, sizeof m->http, "%s", http);
    m->m.epoch = (uint64_t)epoch;
    m->m.lsn = (uint64_t)lsn;
    m->m.weight = weight;
    m->m.unfit = unfit != 0;
    m->m.ready = !strcmp(role, "electing");
    m->refused_in = (uint64_t)refused_in;
    m->replicas = replicas;
    m->tls = tls;
    m->nrefused = 0;
    size_t k;
    json_t *v;
    json_array_foreach(refused, k, v) {
        if (json_is_string(v) && m->nrefused < MAX_REFUSALS)
            snprintf(m->refused_by[m->nrefused++], sizeof m->refused_by[0], "%s", json_string_value(v));
    }
    m->have_data = true;
    json_decref(j);
}

static void parse_master(const char *value)
{
    json_error_t jerr;
    json_t *j = json_loads(value, 0, &jerr);
    const char *id = "", *repl = "", *stomp = "", *http = "";
    json_int_t epoch = 0;
    if (!j || json_unpack(j, "{s:s, s:s, s?s, s?s, s:I}", "id", &id, "repl", &repl, "stomp", &stomp, "http", &http,
                          "epoch", &epoch) != 0) {
        log_warn("zookeeper: the master znode has unreadable data");
        Z.master_id[0] = '\0';
    } else {
        snprintf(Z.master_id, sizeof Z.master_id, "%s", id);
        snprintf(Z.master_repl, sizeof Z.master_repl, "%s", repl);
        snprintf(Z.master_stomp, sizeof Z.master_stomp, "%s", stomp);
        snprintf(Z.master_http, sizeof Z.master_http, "%s", http);
        Z.master_epoch = (uint64_t)epoch;
    }
    json_decref(j);
}

/* ------------------------------------------------------------ decisions */

/* The current session's id (0 before it first connected). */
static int64_t session_id(void)
{
    const clientid_t *id = Z.zh ? zoo_client_id(Z.zh) : NULL;
    return id ? id->client_id : 0;
}

static void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fatal(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_err("cluster: %s", msg);
    Z.fatal = true;
    srv.exit_code = 1;
    node_step_down(msg);
    server_stop();
}

static void step_down(const char *why)
{
    node_step_down(why);
    Z.pending_epoch = 0;
}

static int live_members(void);
static double session_s(void);
static uint32_t refusers_of(const char *id, uint64_t epoch);

/* The step-down rule (election.c's stepdown_decide) on what this node
 * knows now; acts on it. Returns true when it stepped down. */
static bool check_leadership(bool session_lost)
{
    if (node_role() != NODE_MASTER)
        return false;
    ev_tstamp now = ev_now(srv.loop);
    struct stepdown_facts f = {
        .session_lost = session_lost,
        .loop_gap = Z.poll_started > 0 ? ev_time() - Z.poll_started : 0,
        .since_heard = Z.last_heard > 0 ? now - Z.last_heard : -1,
        .session_s = session_s(),
        .zk_connected = Z.connected,
        .in_grace = now < Z.grace_until,
        .view_complete = Z.registered && Z.have_members && Z.master_known && !Z.fatal,
        .live_members = (uint32_t)live_members(),
        .quorum = (uint32_t)config.replicas / 2 + 1,
        .master = !Z.master_known ? MASTER_ZNODE_UNKNOWN
                  : !Z.master_exists ? MASTER_ZNODE_NONE
                  : !strcmp(Z.master_id, Z.my_id) ? MASTER_ZNODE_SELF
                  : Z.master_id[0] ? MASTER_ZNODE_OTHER : MASTER_ZNODE_UNKNOWN,
        .claim_pending = Z.pending_epoch != 0,
        .refusers = Z.master_epoch ? refusers_of(Z.my_id, Z.master_epoch) : 0,
        .replicas = (uint32_t)config.replicas,
    };
    enum stepdown d = stepdown_decide(&f);
    if (d == STAY_MASTER)
        return false;
    if (d == STEPDOWN_REFUSED)
        Z.refused_in = Z.master_epoch; /* said in the znode of the session below */
    char why[200];
    stepdown_explain(d, &f, why, sizeof why);
    step_down(why);
    if (d == STEPDOWN_PAUSED || d == STEPDOWN_REFUSED) {
        /* its session may live on, and its master znode with it: a new
         * session drops both (refusals name the term, not the session) */
        Z.registered = false;
        start_session();
        Z.poll_started = ev_time();
    }
    return true;
}

static void become_master_now(void)
{
    char err[256];
    int rc = node_become_master(Z.pending_epoch, err, sizeof err);
    if (rc == -EAGAIN)
        return; /* the tick tries again once the store has caught up */
    uint64_t e = Z.pending_epoch;
    Z.pending_epoch = 0;
    ev_tstamp now = ev_now(srv.loop);
    if (rc) {
        /* It would most likely fail again (a port another process holds):
         * ranked below the members as up to date for a while, so one of
         * them is elected, and claiming again only after a wait that
         * doubles, so a node that alone has every committed entry tries
         * now and then rather than ten times a second. */
        double wait = UNFIT_FIRST_WAIT * (double)(1u << (Z.failed_starts < 5 ? Z.failed_starts : 5));
        if (wait > UNFIT_MAX_WAIT)
            wait = UNFIT_MAX_WAIT;
        Z.failed_starts++;
        Z.claim_after = now + wait;
        Z.unfit_until = now + UNFIT_TIME;
        log_err("cluster: cannot start as master: %s; another member as up to date goes first for %.0f s, and "
                "this node claims again in %.0f s at the earliest",
                err, UNFIT_TIME, wait);
        /* give the mastership up: close the session, its znodes go */
        Z.registered = false;
        start_session();
        return;
    }
    Z.failed_starts = 0;
    Z.led = true;
    Z.refused_in = 0; /* elected: it stands, whatever happened in an earlier term */
    log_info("cluster: this node is master in epoch %" PRIu64, e);
    cluster_busy_done(); /* rebuilding from the store may have taken a while */
    publish(true);
}

static void claim(void)
{
    if (Z.claiming)
        return;
    Z.claiming = true;
    struct zctx *c = ctx(OP_EPOCH, Z.epoch_path);
    int rc = zoo_aget(Z.zh, Z.epoch_path, 0, data_done, c);
    if (rc != ZOK)
        Z.claiming = false;
    check(rc, "read epoch");
}

static void claim_with(int32_t version, uint64_t epoch)
{
    struct zctx *c = ctx(OP_CLAIM, Z.master_path);
    c->mops = calloc(3, sizeof *c->mops);
    c->mres = calloc(3, sizeof *c->mres);
    c->mbuf = malloc(1024);
    if (!c->mops || !c->mres || !c->mbuf)
        abort();
    char *next = c->mbuf;
    snprintf(next, 32, "%" PRIu64, epoch + 1);
    json_t *j = json_pack("{s:s, s:I, s:s, s:s, s:s}", "id", Z.my_id, "epoch", (json_int_t)(epoch + 1), "repl",
                          Z.repl_addr, "stomp", Z.stomp_addr, "http", Z.http_addr);
    char *mj = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    snprintf(c->mbuf + 32, 1024 - 32, "%s", mj);
    free(mj);
    zoo_check_op_init(&c->mops[0], Z.epoch_path, version);
    zoo_set_op_init(&c->mops[1], Z.epoch_path, next, (int)strlen(next), version, NULL);
    zoo_create_op_init(&c->mops[2], Z.master_path, c->mbuf + 32, (int)strlen(c->mbuf + 32), acl(), ZOO_EPHEMERAL,
                       NULL, 0);
    Z.pending_epoch = epoch + 1;
    int rc = zoo_amulti(Z.zh, 3, c->mops, c->mres, void_done, c);
    if (rc != ZOK) {
        log_warn("zookeeper: claim: %s", zerror(rc));
        ctx_settled(c);
        ctx_free(c);
        Z.claiming = false;
        Z.pending_epoch = 0;
    }
}

/* A node killed and restarted at once is registered twice until its old
 * session expires: only its newest znode counts. */
static bool superseded(const struct mem *m)
{
    if (!m->have_data)
        return false;
    for (int i = 0; i < Z.nmembers; i++) {
        const struct mem *o = &Z.members[i];
        if (o != m && o->have_data && !strcmp(o->m.id, m->m.id) && o->m.seq > m->m.seq)
            return true;
    }
    return false;
}

/* How many registered members say the master with this id refused
 * them in this epoch (their store.security_token, or a TLS certificate:
 * verdict) (election_refused decides
 * what that means). A member that leaves or restarts takes its word
 * with it. */
static uint32_t refusers_of(const char *id, uint64_t epoch)
{
    char key[REFUSAL_LEN + 1];
    snprintf(key, sizeof key, "%s/%" PRIu64, id, epoch);
    uint32_t n = 0;
    for (int i = 0; i < Z.nmembers; i++) {
        const struct mem *o = &Z.members[i];
        if (!o->have_data || superseded(o) || !strcmp(o->m.id, id))
            continue;
        for (int k = 0; k < o->nrefused; k++)
            if (!strcmp(o->refused_by[k], key)) {
                n++;
                break;
            }
    }
    return n;
}

/* Out of elections: it stepped down as refused, and the members that
 * refused it then are still enough to say so. */
static bool member_refused(const struct mem *m)
{
    uint64_t e = m->m.seq == Z.my_seq ? Z.refused_in : m->refused_in;
    return e && election_refused(refusers_of(m->m.id, e), (uint32_t)config.replicas);
}

/* What the master this node follows made of it (repl_slave): it refused
 * our proof of the token, or proved its own (REPL_PROVED), or the TLS
 * handshake failed on a certificate, its or ours. A refusal is said in
 * our member znode, naming the master's term: when enough members say it
 * of one term, that master gives way (election_refused). Which of the
 * two nodes is wrong, one refusal cannot tell; a quorum's worth can. A
 * refusal comes before the master proves anything, so only one from the
 * address and id the master znode names counts; whoever else answers
 * there (the master gone, its port free) can name only that term, which
 * is over. */
static void verdict(const char *master_id, enum repl_verdict v)
{
    if (v == REPL_PROVED) {
        /* our token is this master's: what we held against that node in
         * an earlier term no longer holds, and this node, if it stepped
         * down as refused, has the token a master has */
        int k = 0;
        size_t idlen = strlen(master_id);
        for (int i = 0; i < Z.nrefused; i++)
            if (strncmp(Z.refused_by[i], master_id, idlen) || Z.refused_by[i][idlen] != '/')
                memmove(Z.refused_by[k++], Z.refused_by[i], sizeof Z.refused_by[0]);
        bool changed = k != Z.nrefused || Z.refused_in;
        Z.nrefused = k;
        if (Z.refused_in)
            log_info("cluster: master %s proved this node's store.security_token: this node stands in elections "
                     "again", master_id);
        Z.refused_in = 0;
        if (changed)
            publish(false);
        return;
    }
    if (!Z.master_exists || !Z.master_epoch || node_role() != NODE_SLAVE)
        return;
    if (v == REPL_REFUSED_TLS) {
        if (strcmp(repl_slave_master(), Z.master_repl))
            return; /* the master moved meanwhile */
        master_id = Z.master_id;
    } else if (strcmp(master_id, Z.master_id)) {
        return;
    }
    char key[REFUSAL_LEN + 1];
    snprintf(key, sizeof key, "%s/%" PRIu64, master_id, Z.master_epoch);
    for (int i = 0; i < Z.nrefused; i++)
        if (!strcmp(Z.refused_by[i], key))
            return;
    if (Z.nrefused == MAX_REFUSALS) {
        memmove(Z.refused_by[0], Z.refused_by[1], sizeof Z.refused_by[0] * (MAX_REFUSALS - 1));
        Z.nrefused--;
    }
    snprintf(Z.refused_by[Z.nrefused++], sizeof Z.refused_by[0], "%s", key);
    if (v == REPL_REFUSED_TOKEN)
        log_warn("cluster: master %s refused this node's store.security_token: one of the two differs from the "
                 "other members'; a master that a quorum's worth of members cannot prove the token to gives way",
                 master_id);
    else
        log_warn("cluster: the TLS handshake with master %s failed on a certificate (its, or this node's): a "
                 "master that a quorum's worth of members cannot follow gives way", master_id);
    publish(false);
}

static int live_members(void)
{
    int live = 0;
    for (int i = 0; i < Z.nmembers; i++)
        if (!superseded(&Z.members[i]))
            live++;
    return live;
}

/* Misconfiguration stops the node that starts with it; the nodes already
 * running only say so (once for each problem). Settings every node must
 * share: broker.name, store.replicas (a node counting a smaller quorum
 * would answer what a quorum of the others does not hold: lost when it
 * fails) and store.tls (no slave could reach a master speaking the other
 * way). Returns false when this node must stop. */
static bool startup_checks(void)
{
    static char told[1200];
    for (int i = 0; i < Z.nmembers; i++)
        if (!Z.members[i].have_data)
            return true; /* not yet: wait for everyone's data */
    int distinct = 0;
    for (int i = 0; i < Z.nmembers; i++)
        if (!superseded(&Z.members[i]))
            distinct++;
    char problem[1200] = "";
    if (distinct > config.replicas)
        snprintf(problem, sizeof problem, "%d nodes are registered under %s but store.replicas is %lld: fix "
                 "store.replicas or the nodes' zookeeper.path", distinct, Z.root, (long long)config.replicas);
    for (int i = 0; i < Z.nmembers && !problem[0]; i++) {
        struct mem *m = &Z.members[i];
        if (m->m.seq == Z.my_seq || superseded(m))
            continue;
        if (m->broker[0] && strcmp(m->broker, config.broker_name))
            snprintf(problem, sizeof problem, "member %s under %s has broker.name '%s', this node '%s': one "
                     "zookeeper.path per broker name", m->name, Z.root, m->broker, config.broker_name);
        else if (m->replicas && m->replicas != config.replicas)
            snprintf(problem, sizeof problem, "member %s (%s) has store.replicas %lld, this node %lld: every "
                     "node of a cluster has the same (to change it, stop every node first)", m->name, m->m.id,
                     (long long)m->replicas, (long long)config.replicas);
        else if (m->tls >= 0 && (m->tls != 0) != config.store_tls)
            snprintf(problem, sizeof problem, "member %s (%s) has store.tls %s, this node %s: every node of a "
                     "cluster has the same (to change it, stop every node first)", m->name, m->m.id,
                     m->tls ? "true" : "false", config.store_tls ? "true" : "false");
    }
    bool first = !Z.checked;
    Z.checked = true;
    if (!problem[0]) {
        told[0] = '\0';
        return true;
    }
    if (first) {
        fatal("%s", problem);
        return false;
    }
    if (strcmp(problem, told)) {
        log_warn("cluster: %s", problem);
        snprintf(told, sizeof told, "%s", problem);
    }
    return true;
}

/* Out of touch with ZooKeeper for half the session timeout: what this
 * node last heard of the master may no longer hold (its session may be
 * expiring, another node about to be elected). A slave stops following
 * it (tick_cb) until it hears from ZooKeeper again. */
static bool zk_out_of_touch(void)
{
    return !Z.connected && Z.disconnected_since > 0 && ev_now(srv.loop) - Z.disconnected_since > session_s() / 2;
}

static void evaluate(void)
{
    if (Z.fatal || !Z.registered || !Z.have_members || !Z.master_known)
        return;
    if (!startup_checks())
        return;
    check_leadership(false);
    if (Z.master_exists) {
        if (!strcmp(Z.master_id, Z.my_id)) {
            if (node_role() != NODE_MASTER && !Z.pending_epoch) {
                /* A master znode naming this node, which is not serving
                 * (it stepped down, or a claim's answer was lost): nobody
                 * else can be elected until it goes, and only the end of
                 * the session that created it removes it. */
                if (Z.master_owner != session_id()) {
                    /* An earlier session of ours made it, one given up
                     * while no server could hear its close (a step-down
                     * while ZooKeeper was out of reach, a restart): the
                     * server removes it when that session expires, within
                     * the timeout. Every new session would find it again,
                     * so re-registering only churned sessions (one every
                     * tick) until then: wait for its deletion instead. */
                    if (Z.stale_owner != Z.master_owner) {
                        log_info("cluster: the master znode names this node but an earlier session (0x%llx) "
                                 "holds it: waiting for that session to expire",
                                 (unsigned long long)Z.master_owner);
                        Z.stale_owner = Z.master_owner;
                    }
                } else if (Z.connected) {
                    /* this session's own: closing it while a server
                     * hears the close drops the znode at once */
                    log_warn("cluster: a master znode names this node but it is not serving: re-registering");
                    Z.registered = false;
                    start_session();
                }
                /* Disconnected: a session closed now would keep the znode
                 * (and the others waiting) for its whole timeout. Keep it:
                 * it either comes back (and is closed then) or expires. */
            }
            return;
        } else if (Z.master_id[0] && !zk_out_of_touch()) {
            /* (out of touch, the slave left it: following it again from
             * what it last heard would flip the role every tick) */
            if (node_role() != NODE_SLAVE || strcmp(repl_slave_master(), Z.master_repl)) {
                log_info("cluster: following master %s (epoch %" PRIu64 ") at %s", Z.master_id, Z.master_epoch,
                         Z.master_repl);
                node_follow(Z.master_repl);
                publish(false);
            }
        }
        return;
    }

    /* no master */
    if (node_role() == NODE_SLAVE) {
        log_info("cluster: master %s is gone: electing", Z.master_id);
        node_follow(NULL);
    }
    publish(false);
    if (Z.claiming || Z.pending_epoch)
        return;
    struct member cand[MAX_MEMBERS];
    int n = 0, me = -1;
    for (int i = 0; i < Z.nmembers; i++) {
        struct mem *m = &Z.members[i];
        if (!m->have_data)
            return; /* wait for everyone's data */
        if (superseded(m))
            continue;
        cand[n] = m->m;
        cand[n].seq = m->m.seq;
        cand[n].refused = member_refused(m);
        if (m->m.seq == Z.my_seq) {
            /* our own view of ourselves is the freshest */
            uint64_t e;
            cand[n].lsn = persist_position(&e);
            cand[n].epoch = e;
            cand[n].ready = true;
            me = n;
        }
        n++;
    }
    if (me < 0)
        return;
    size_t w;
    switch (election_decide(cand, (size_t)n, (uint32_t)config.replicas, &w)) {
    case ELECT_NO_QUORUM:
        log_debug("cluster: %d of %lld members registered: no quorum, nobody serves", n, (long long)config.replicas);
        return;
    case ELECT_WAITING:
        return;
    case ELECT_CANDIDATE:
        if ((int)w == me) {
            if (ev_now(srv.loop) < Z.claim_after)
                return; /* it failed to start as master: waiting (become_master_now) */
            log_info("cluster: this node has the most up-to-date log (epoch %" PRIu64 ", lsn %" PRIu64
                     "): claiming mastership", cand[me].epoch, cand[me].lsn);
            claim();
        }
        return;
    }
}

/* ------------------------------------------------------------ event handling */

static void on_children(struct zev *e)
{
    struct mem old[MAX_MEMBERS];
    int nold = Z.nmembers;
    memcpy(old, Z.members, sizeof old);
    Z.nmembers = 0;
    for (int i = 0; i < e->nchildren && Z.nmembers < MAX_MEMBERS; i++) {
        const char *name = e->children[i];
        if (strncmp(name, "m-", 2))
            continue;
        struct mem *m = &Z.members[Z.nmembers++];
        memset(m, 0, sizeof *m);
        snprintf(m->name, sizeof m->name, "%s", name);
        m->m.seq = strtoull(name + 2, NULL, 10);
        bool known = false;
        for (int k = 0; k < nold; k++) {
            if (!strcmp(old[k].name, name)) {
                *m = old[k];
                known = true;
            }
        }
        if (!known) {
            if (Z.have_members)
                log_info("cluster: member %s joined", name);
            req_member(name);
        }
    }
    for (int k = 0; k < nold; k++)
        if (!find_member(old[k].name))
            log_info("cluster: member %s left (%s)", old[k].name, old[k].m.id[0] ? old[k].m.id : "unknown id");
    Z.have_members = true;
}

/* Whether rc is an answer from a server (as opposed to the library giving
 * up on the connection or the session). */
static bool answered(int rc)
{
    return rc == ZOK || (rc <= ZAPIERROR && rc != ZSESSIONEXPIRED && rc != ZCLOSING && rc != ZSESSIONMOVED &&
                         rc != ZINVALIDSTATE);
}

/* The server had our request of time t in hand: the session was alive
 * then, and the server cannot expire it before t + the session timeout. */
static void heard(ev_tstamp t)
{
    if (t > Z.last_heard)
        Z.last_heard = t;
}

/* The session timeout the server granted (it may cap what we asked), s. */
static double session_s(void)
{
    int ms = Z.zh ? zoo_recv_timeout(Z.zh) : 0;
    return (ms > 0 ? ms : (double)config.zk_session_timeout) / 1000.0;
}

/* A sync() goes through the ZooKeeper leader, so its answer shows that
 * the server we talk to was in touch with the leader (which expires
 * sessions) when it came, not only that it is up: a follower cut off from
 * the leader still answers reads for a while. */
static void probe(void)
{
    if (!Z.connected || !Z.zh)
        return;
    struct zctx *c = ctx(OP_PROBE, Z.root);
    Z.probe_sent = ev_now(srv.loop);
    Z.probing = zoo_async(Z.zh, Z.root, string_done, c) == ZOK;
    if (!Z.probing) {
        ctx_settled(c);
        ctx_free(c);
    }
}

static void on_done(struct zev *e)
{
    if (answered(e->rc))
        heard(e->sent);
    switch (e->op) {
    case OP_PROBE:
        Z.probing = false;
        break;
    case OP_AUTH:
        if (e->rc != ZOK) {
            log_err("zookeeper: authentication failed: %s", zerror(e->rc));
            Z.auth_failed = true;
        }
        break;
    case OP_ACL:
        if (e->rc == ZOK && e->value)
            log_warn("zookeeper: the znodes under %s are open to every ZooKeeper client (created without "
                     "zookeeper.password): the password protects nothing there until its ACLs are set or the "
                     "cluster moves to a new zookeeper.path", Z.root);
        break;
    case OP_CREATE_PATH:
        if (e->rc != ZOK && e->rc != ZNODEEXISTS) {
            if (e->rc == ZNOAUTH)
                fatal("zookeeper: no permission to create %s: another cluster with another zookeeper.password "
                      "owns it", e->path);
            else
                log_warn("zookeeper: cannot create %s: %s", e->path, zerror(e->rc));
        }
        break;
    case OP_CREATE_MEMBER:
        if (e->rc != ZOK) {
            log_err("zookeeper: cannot register this node: %s", zerror(e->rc));
            if (e->rc == ZNOAUTH)
                fatal("no permission under %s (zookeeper.password differs?)", Z.root);
            break;
        }
        snprintf(Z.my_path, sizeof Z.my_path, "%s", e->value);
        Z.my_seq = strtoull(strrchr(Z.my_path, '-') + 1, NULL, 10);
        Z.registered = true;
        log_info("zookeeper: registered as %s", Z.my_path);
        break;
    case OP_SET_MEMBER: {
        /* writes queued on a connection already dead fail together (up to
         * 7 lines in a millisecond, helper-92); a reconnect publishes again */
        static struct log_limit limit;
        if (e->rc != ZOK && log_limited(&limit, 1, 5.0, "zookeeper", "failed publications of this node's state"))
            log_warn("zookeeper: cannot publish this node's state: %s", zerror(e->rc));
        break;
    }
    case OP_CHILDREN:
        if (e->rc == ZOK)
            on_children(e);
        break;
    case OP_MEMBER_DATA: {
        const char *name = strrchr(e->path, '/');
        struct mem *m = name ? find_member(name + 1) : NULL;
        if (m && e->rc == ZOK)
            parse_member(m, e->value);
        else if (m && e->rc != ZNONODE)
            log_debug("zookeeper: member %s: %s: its watch is gone until the next connection reads it again",
                      m->name, zerror(e->rc));
        break;
    }
    case OP_MASTER_EXISTS:
        /* who the master is is known only once its data is read */
        if (e->rc == ZOK) {
            req_master_data();
        } else if (e->rc == ZNONODE) {
            Z.master_known = true;
            Z.master_exists = false;
            Z.master_id[0] = '\0';
        }
        break;
    case OP_MASTER_DATA:
        if (e->rc == ZOK) {
            Z.master_known = Z.master_exists = true;
            Z.master_owner = e->owner;
            parse_master(e->value);
        } else if (e->rc == ZNONODE) {
            Z.master_exists = false;
            Z.master_id[0] = '\0';
            req_master(); /* watch for its creation */
        }
        break;
    case OP_EPOCH:
        if (e->rc != ZOK) {
            log_warn("zookeeper: cannot read the epoch: %s", zerror(e->rc));
            Z.claiming = false;
            break;
        }
        {
            /* The new epoch must be above every epoch any node has seen,
             * or their stores would refuse it as stale: the counter's, and
             * (after a stint in manual mode, whose epochs come from the
             * clock) the members' and our own. */
            uint64_t top = strtoull(e->value, NULL, 10);
            if (persist_epoch() > top)
                top = persist_epoch();
            for (int i = 0; i < Z.nmembers; i++)
                if (Z.members[i].have_data && Z.members[i].m.epoch > top)
                    top = Z.members[i].m.epoch;
            claim_with(e->version, top);
        }
        break;
    case OP_CLAIM:
        Z.claiming = false;
        if (e->rc == ZOK) {
            /* we made the master znode: no need to wait for its watch */
            Z.master_known = Z.master_exists = true;
            Z.master_owner = session_id();
            snprintf(Z.master_id, sizeof Z.master_id, "%s", Z.my_id);
            snprintf(Z.master_repl, sizeof Z.master_repl, "%s", Z.repl_addr);
            snprintf(Z.master_stomp, sizeof Z.master_stomp, "%s", Z.stomp_addr);
            snprintf(Z.master_http, sizeof Z.master_http, "%s", Z.http_addr);
            Z.master_epoch = Z.pending_epoch;
            become_master_now();
        } else {
            log_info("cluster: claim lost (%s): another node was faster", zerror(e->rc));
            Z.pending_epoch = 0;
        }
        break;
    }
}

static void on_watch(struct zev *e)
{
    if (e->type == ZOO_SESSION_EVENT)
        return;
    if (!strcmp(e->path, Z.members_path)) {
        req_children();
    } else if (!strcmp(e->path, Z.master_path)) {
        if (e->type == ZOO_DELETED_EVENT) {
            Z.master_exists = false;
            log_info("zookeeper: the master znode was deleted");
        }
        req_master();
    } else if (!strncmp(e->path, Z.members_path, strlen(Z.members_path))) {
        const char *name = strrchr(e->path, '/');
        if (name && find_member(name + 1) && e->type != ZOO_DELETED_EVENT)
            req_member(name + 1);
    }
}

static void on_session(struct zev *e)
{
    if (e->state == ZOO_CONNECTED_STATE) {
        if (!Z.connected)
            log_info("zookeeper: connected (session 0x%llx)", (unsigned long long)zoo_client_id(Z.zh)->client_id);
        Z.connected = true;
        Z.expired = false;
        Z.disconnected_since = 0;
        heard(ev_now(srv.loop));
        if (!Z.registered && !Z.my_path[0]) {
            /* a new session: build everything from scratch */
            if (config.zk_password[0]) {
                char cert[300];
                snprintf(cert, sizeof cert, "stompd:%s", config.zk_password);
                struct zctx *c = ctx(OP_AUTH, "");
                check(zoo_add_auth(Z.zh, "digest", cert, (int)strlen(cert), void_done, c), "add auth");
            }
            char part[400];
            const char *slash = Z.root;
            /* every parent of the root, then the root and its children, in
             * order: ZooKeeper runs one session's requests in order */
            while ((slash = strchr(slash + 1, '/'))) {
                snprintf(part, sizeof part, "%.*s", (int)(slash - Z.root), Z.root);
                create_path(part, NULL, true);
            }
            create_path(Z.root, NULL, false);
            create_path(Z.members_path, NULL, false);
            create_path(Z.epoch_path, "0", false);
            if (config.zk_password[0]) {
                struct zctx *c = ctx(OP_ACL, Z.members_path);
                check(zoo_aget_acl(Z.zh, Z.members_path, acl_done, c), "read ACL");
            }
            register_member();
            req_children();
            req_master();
        } else {
            /* The same session on a new connection: the watches that were
             * set are still set, but a request that failed with the old
             * connection never set its watch and its answer never came.
             * Ask again for everything the election reads (a watch set
             * twice fires once). */
            publish(true);
            req_children();
            req_master();
        }
        /* Either way, the data of every member already known is read
         * again, not only of those never read: a member's data changes
         * often (its lsn), so a read of it is often in flight when a
         * connection breaks, and that member's watch is then gone with
         * nothing to ask again. Its later changes went unseen for the rest
         * of the session: the election waited forever for it to say
         * "electing", or took a stale position for its last one. So each
         * counts as unread until its answer comes, and the election waits
         * for it. (A brand-new session knows no members yet.) */
        for (int i = 0; i < Z.nmembers; i++) {
            Z.members[i].have_data = false;
            req_member(Z.members[i].name);
        }
    } else if (e->state == ZOO_CONNECTING_STATE || e->state == ZOO_ASSOCIATING_STATE) {
        if (Z.connected) {
            log_warn("zookeeper: disconnected; reconnecting");
            Z.disconnected_since = ev_now(srv.loop);
        }
        Z.connected = false;
    } else if (e->state == ZOO_EXPIRED_SESSION_STATE || e->state == ZOO_AUTH_FAILED_STATE) {
        log_warn("zookeeper: session %s: registering again", e->state == ZOO_EXPIRED_SESSION_STATE
                                                                   ? "expired" : "authentication failed");
        check_leadership(true);
        Z.pending_epoch = 0;
        Z.expired = e->state == ZOO_EXPIRED_SESSION_STATE;
        start_session();
    }
}

static void free_ev(struct zev *e)
{
    if (e->claim) {
        free(e->claim->mops);
        free(e->claim->mres);
        free(e->claim->mbuf);
        free(e->claim);
    }
    free(e->path);
    free(e->value);
    for (int i = 0; i < e->nchildren; i++)
        free(e->children[i]);
    free(e->children);
    free(e);
}

static void async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    /* events of a session we just dropped are ignored (generation) */
    paused_check();
    struct handoff_node *list = handoff_take(&Z.events);
    while (list) {
        struct zev *e = (struct zev *)list;
        list = list->next;
        if (e->gen == Z.gen && Z.running) {
            switch (e->kind) {
            case EV_SESSION:
                on_session(e);
                break;
            case EV_WATCH:
                on_watch(e);
                break;
            case EV_DONE:
                on_done(e);
                break;
            }
        }
        free_ev(e);
    }
    if (Z.running)
        evaluate();
}

/* ------------------------------------------------------------ the session */

/* The ZooKeeper client's own lines (written by its threads) go through
 * our log: to log.file or journald, at their level, not to stderr. While
 * ZooKeeper is down the client writes one every session_timeout/60 or so:
 * ZK_LOG_BURST every ZK_LOG_EVERY seconds at most, then a count. */
#define ZK_LOG_BURST 10
#define ZK_LOG_EVERY 60.0

static void zk_log(const char *line)
{
    /* "<time>:<pid>(<thread>):ZOO_<LEVEL>@<function>@<line>: <message>" */
    static const struct {
        const char *tag;
        enum log_level level;
    } levels[] = {{":ZOO_ERROR@", LOG_ERR}, {":ZOO_WARN@", LOG_WARN}, {":ZOO_INFO@", LOG_INFO},
                  {":ZOO_DEBUG@", LOG_DEBUG}};
    enum log_level level = LOG_WARN;
    const char *what = line;
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        const char *at = strstr(line, levels[i].tag);
        if (at) {
            level = levels[i].level;
            const char *msg = strstr(at, ": ");
            what = msg ? msg + 2 : at + strlen(levels[i].tag);
            break;
        }
    }
    if (!log_enabled(level))
        return;
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static struct log_limit limit;
    uint64_t held = 0;
    pthread_mutex_lock(&lock);
    bool ok = log_limit_take(&limit, ZK_LOG_BURST, ZK_LOG_EVERY, &held);
    pthread_mutex_unlock(&lock);
    if (!ok)
        return;
    if (held)
        log_write(level, "zookeeper client: %s (%llu of its lines before this one not logged: at most %d every %.0f s)",
                  what, (unsigned long long)held, ZK_LOG_BURST, ZK_LOG_EVERY);
    else
        log_write(level, "zookeeper client: %s", what);
}

void cluster_log_level_changed(void)
{
    zoo_set_debug_level(log_enabled(LOG_DEBUG) ? ZOO_LOG_LEVEL_INFO : ZOO_LOG_LEVEL_ERROR);
}

static void start_session(void)
{
    if (Z.zh) {
        zhandle_t *old = Z.zh;
        Z.zh = NULL;
        zookeeper_close(old);
    }
    Z.gen++;
    Z.connected = Z.registered = Z.have_members = Z.master_known = Z.master_exists = Z.led = false;
    Z.claiming = false;
    Z.probing = false;
    Z.last_heard = 0;
    Z.pending_epoch = 0;
    Z.my_path[0] = '\0';
    Z.master_id[0] = '\0';
    Z.master_epoch = 0;
    Z.master_owner = 0;
    Z.nmembers = 0;
    free(Z.published);
    Z.published = NULL;
    Z.disconnected_since = ev_now(srv.loop);
    Z.zh = zookeeper_init2(config.zk_address, session_watcher, (int)config.zk_session_timeout, NULL,
                           (void *)(uintptr_t)Z.gen, 0, zk_log);
    if (!Z.zh)
        log_err("zookeeper: cannot create a session for %s: %s", config.zk_address, strerror(errno));
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    if (paused_check())
        return;
    if (!Z.zh) {
        start_session();
        return;
    }
    /* A master must stop serving before its session can expire and
     * another node be elected. The server expires a session no sooner
     * than the timeout after the last request it received; the library
     * notices a silent connection only after two thirds of it. So the
     * master times from the sending of the last request the server
     * answered (a probe, a sync through the leader, goes every sixth of
     * the timeout) and steps down
     * once two thirds have passed without one: a third of the timeout
     * before the earliest expiry, whether the connection broke, went
     * silent, or ZooKeeper itself stalled. */
    double t = session_s(), now = ev_now(loop);
    if (!Z.connected && Z.disconnected_since > 0 && now - Z.disconnected_since > (Z.led ? 10 : 2) * t) {
        /* No server has taken the session for twice its timeout: up, they
         * have expired it. And an ensemble that lost its data (restarted
         * from an empty dataDir) refuses for ever a client that saw newer
         * state than it has ("Host is down"): a new session starts from
         * nothing. A node that was master in this session waits longer:
         * its session may hold the master znode, and closed where no
         * server hears it (the ensemble still down), the znode would stay
         * until the session expires once the ensemble is back, holding up
         * the election; kept, it is closed where a server hears it. */
        log_warn("zookeeper: no server of %s has taken this session for %.0f s: starting a new one",
                 config.zk_address, now - Z.disconnected_since);
        start_session();
        return;
    }
    if (!Z.probing && now - Z.probe_sent >= t / 6)
        probe();
    check_leadership(false);
    if (zk_out_of_touch() && node_role() == NODE_SLAVE)
        node_follow(NULL);
    if (Z.pending_epoch && !Z.claiming)
        become_master_now();
    publish(false);
    evaluate();
}

/* A master that was not running for a while (SIGSTOP, a stall, a
 * suspended VM) cannot know whether it still leads: its session may have
 * expired and another node may be master. The tick makes the loop go round
 * at least every 200 ms, so when more than a safe fraction of the session
 * timeout has passed since the loop last went to sleep, the process was
 * stopped somewhere in between. Checked right after poll() (check watchers
 * run before the callbacks of what it returned) and at the start of every
 * ZooKeeper callback, so a resumed master steps down before it acts on
 * anything. */
/* Z.poll_started is the last moment the loop was seen running: set before
 * it sleeps and again when it wakes, so every stretch between two marks is
 * either one poll (at most 200 ms) or one round of callbacks. */
static void before_poll_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    paused_check();
    Z.poll_started = ev_time();
}

void cluster_busy_done(void)
{
    Z.poll_started = ev_time();
    if (node_role() != NODE_MASTER || !Z.zh)
        return;
    /* The loop was busy with work of its own (rebuilding from the store):
     * ZooKeeper's thread kept the session alive meanwhile, but no answer
     * could be timed. The library drops a connection after two thirds of
     * the timeout without a word from the server, so while it is still
     * connected the session has at least a third of the timeout left: ask
     * now, and give the answer a sixth of it (ended early by a disconnect)
     * before the step-down rule applies again. */
    ev_now_update(srv.loop);
    Z.grace_until = ev_now(srv.loop) + session_s() / 6;
    Z.probing = false;
    probe();
}

static bool paused_check(void)
{
    return check_leadership(false);
}

static void after_poll_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    paused_check();
    Z.poll_started = ev_time();
}

/* The advertised host must be one of this machine's addresses. -EAGAIN
 * when it is not, or does not resolve: at boot the network (DNS, an
 * address from DHCP, a virtual IP) may not be up yet, so this is no
 * configuration error the service manager should give up on (helper-98). */
static int check_hostname(const char *host, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *r;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc) {
        snprintf(err, errlen, "store.hostname '%s' does not resolve: %s", host, gai_strerror(rc));
        return -EAGAIN;
    }
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) != 0) {
        /* (it needs AF_NETLINK, which a sandbox may deny) */
        log_warn("store.hostname '%s' not checked against this machine's addresses: cannot list them: %s", host,
                 strerror(errno));
        freeaddrinfo(res);
        return 0;
    }
    bool local = false;
    for (r = res; r && !local; r = r->ai_next) {
        for (struct ifaddrs *i = ifs; i && !local; i = i->ifa_next) {
            if (!i->ifa_addr || i->ifa_addr->sa_family != r->ai_family)
                continue;
            if (r->ai_family == AF_INET)
                local = ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr ==
                        ((struct sockaddr_in *)r->ai_addr)->sin_addr.s_addr;
            else if (r->ai_family == AF_INET6)
                local = !memcmp(&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr,
                                &((struct sockaddr_in6 *)r->ai_addr)->sin6_addr, 16);
        }
    }
    freeifaddrs(ifs);
    freeaddrinfo(res);
    if (!local) {
        snprintf(err, errlen, "store.hostname '%s' does not resolve to an address of this machine; other nodes "
                              "would not reach this one", host);
        return -EAGAIN;
    }
    return 0;
}

static void advertised(const char *listen, char *out, size_t len)
{
    char host[256];
    int port = 0;
    if (!listen || !listen[0] || config_split_hostport(listen, host, sizeof host, &port) != 0) {
        out[0] = '\0';
        return;
    }
    snprintf(out, len, "%s:%d", config.store_hostname[0] ? config.store_hostname : host, port);
}

/* Is every server of the ensemble (host:port,host:port[/chroot]) on
 * loopback? */
static bool ensemble_on_loopback(const char *list)
{
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", list);
    copy[strcspn(copy, "/")] = '\0';
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ')
            item++;
        if (!stream_addr_loopback(item))
            return false;
    }
    return true;
}

/* The cluster's znode: zookeeper.path, or one per broker.name. */
static void root_path(char *out, size_t len)
{
    if (config.zk_path[0])
        snprintf(out, len, "%s", config.zk_path);
    else
        snprintf(out, len, "/stompd/%s", config.broker_name);
}

/* What the start would refuse, judged from the configuration and this
 * machine's addresses alone (also by --check-config): the address the
 * other nodes reach this one at, and the znode path. */
int cluster_check_config(char *err, size_t errlen)
{
    if (!config.zk_address[0])
        return 0;
    char host[256];
    int port;
    if (config_split_hostport(config.store_bind, host, sizeof host, &port) != 0) {
        snprintf(err, errlen, "store.bind '%s' is not host:port", config.store_bind);
        return -EINVAL;
    }
    const char *adv = config.store_hostname[0] ? config.store_hostname : host;
    if (!adv[0] || !strcmp(adv, "0.0.0.0") || !strcmp(adv, "::")) {
        snprintf(err, errlen, "store.bind %s listens on every address: set store.hostname to the address other "
                              "nodes reach this one at", config.store_bind);
        return -EINVAL;
    }
    char ah[256];
    int ap;
    if (config.store_advertise[0] &&
        (config_split_hostport(config.store_advertise, ah, sizeof ah, &ap) != 0 || !ah[0])) {
        snprintf(err, errlen, "store.advertise '%s' is not host:port", config.store_advertise);
        return -EINVAL;
    }
    char root[sizeof Z.root];
    root_path(root, sizeof root);
    if (root[0] != '/' || root[strlen(root) - 1] == '/') {
        snprintf(err, errlen, "zookeeper.path '%s' must start with / and not end with /", root);
        return -EINVAL;
    }
    /* last: the errors above are the configuration's for sure */
    return check_hostname(adv, err, errlen);
}

int cluster_start(char *err, size_t errlen)
{
    if (!config.zk_address[0])
        return 0;
    int rc = cluster_check_config(err, errlen);
    if (rc)
        return rc;
    if (!config.zk_password[0] && !ensemble_on_loopback(config.zk_address))
        log_warn("zookeeper: %s is not on loopback and zookeeper.password is empty: anyone who reaches "
                 "ZooKeeper can rewrite this cluster's membership (and stop it, or have it elect another master); "
                 "set zookeeper.password, the same on every node, so the cluster's znodes carry a digest ACL "
                 "(README: Securing stompd)",
                 config.zk_address);
    snprintf(Z.my_id, sizeof Z.my_id, "%s", store_info()->node_id);
    advertised(config.stomp_listen, Z.stomp_addr, sizeof Z.stomp_addr);
    if (config.store_advertise[0]) /* a proxy or NAT in front of store.bind: the others go through it */
        snprintf(Z.repl_addr, sizeof Z.repl_addr, "%s", config.store_advertise);
    else
        advertised(config.store_bind, Z.repl_addr, sizeof Z.repl_addr);
    advertised(config.http_listen, Z.http_addr, sizeof Z.http_addr);
    root_path(Z.root, sizeof Z.root);
    snprintf(Z.members_path, sizeof Z.members_path, "%s/members", Z.root);
    snprintf(Z.master_path, sizeof Z.master_path, "%s/master", Z.root);
    snprintf(Z.epoch_path, sizeof Z.epoch_path, "%s/epoch", Z.root);
    cluster_log_level_changed();
    handoff_init(&Z.events);
    handoff_to_loop(&Z.events, srv.loop, &Z.async);
    ev_async_init(&Z.async, async_cb);
    ev_async_start(srv.loop, &Z.async);
    ev_timer_init(&Z.tick, tick_cb, 0.2, 0.2);
    ev_timer_start(srv.loop, &Z.tick);
    ev_prepare_init(&Z.before_poll, before_poll_cb);
    ev_prepare_start(srv.loop, &Z.before_poll);
    ev_check_init(&Z.after_poll, after_poll_cb);
    ev_check_start(srv.loop, &Z.after_poll);
    repl_slave_on_verdict(verdict);
    Z.running = true;
    start_session();
    log_info("cluster: ZooKeeper %s, path %s, session timeout %lld ms", config.zk_address, Z.root,
             (long long)config.zk_session_timeout);
    return 0;
}

void cluster_stop(void)
{
    if (!Z.running)
        return;
    Z.running = false;
    ev_timer_stop(srv.loop, &Z.tick);
    ev_prepare_stop(srv.loop, &Z.before_poll);
    ev_check_stop(srv.loop, &Z.after_poll);
    /* let answers to what is in flight arrive: closing with requests
     * outstanding leaks them in the client library */
    for (int i = 0; i < 200 && __atomic_load_n(&inflight, __ATOMIC_RELAXED) > 0 && Z.connected; i++)
        usleep(10000);
    if (Z.zh) {
        zookeeper_close(Z.zh);
        Z.zh = NULL;
    }
    free(Z.published);
    Z.published = NULL;
    /* the library's threads are gone: what it never completed is ours */
    int dropped = 0;
    while (ctx_live) {
        struct zctx *c = ctx_live;
        ctx_settled(c);
        ctx_free(c);
        dropped++;
    }
    if (dropped)
        log_debug("zookeeper: %d requests never completed", dropped);
    ev_async_stop(srv.loop, &Z.async);
    struct handoff_node *list = handoff_take(&Z.events);
    while (list) {
        struct zev *e = (struct zev *)list;
        list = list->next;
        free_ev(e);
    }
}

bool cluster_enabled(void)
{
    return Z.running;
}

size_t cluster_members(struct cluster_member *out, size_t max)
{
    size_t n = 0;
    for (int i = 0; i < Z.nmembers && n < max; i++) {
        struct mem *m = &Z.members[i];
        struct cluster_member *o = &out[n++];
        memset(o, 0, sizeof *o);
        snprintf(o->znode, sizeof o->znode, "%s", m->name);
        snprintf(o->id, sizeof o->id, "%s", m->m.id);
        snprintf(o->role, sizeof o->role, "%s", !strcmp(m->m.id, Z.master_id) && Z.master_exists ? "master" : m->role);
        snprintf(o->stomp, sizeof o->stomp, "%s", m->stomp);
        snprintf(o->http, sizeof o->http, "%s", m->http);
        o->epoch = m->m.epoch;
        o->lsn = m->m.lsn;
        o->weight = m->m.weight;
        o->self = m->m.seq == Z.my_seq;
        o->refused = member_refused(m);
    }
    return n;
}

const char *cluster_master_id(void)
{
    return Z.master_exists ? Z.master_id : NULL;
}

const char *cluster_master_http(void)
{
    return Z.master_exists ? Z.master_http : NULL;
}

const char *cluster_master_stomp(void)
{
    return Z.master_exists ? Z.master_stomp : NULL;
}

bool cluster_connected(void)
{
    return Z.connected;
}

const char *cluster_session_state(void)
{
    if (!Z.running)
        return "none";
    return Z.connected ? "connected" : Z.expired ? "expired" : "connecting";
}

bool cluster_registered(void)
{
    return Z.running && Z.registered;
}
