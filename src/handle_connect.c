/* CONNECT / STOMP and DISCONNECT: version negotiation, login (auth.h),
 * heart-beats, client-id, the cluster's members for failover clients, and
 * an orderly goodbye whose receipt means every frame before it has been
 * processed. A password check that is not in the login cache runs on a
 * worker thread: the connection reads nothing more until it is answered,
 * then CONNECT finishes (or fails) here. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/auth.h"
#include "stompd/cluster.h"
#include "stompd/commit.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/durable.h"
#include "stompd/log.h"
#include "stompd/persist.h"
#include "stompd/proto.h"
#include "stompd/server.h"
#include "stompd/utf8.h"

/* Highest version in a comma list we speak; -1 when none. */
static int pick_version(const char *list)
{
    int best = -1;
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len && (*p == ' ')) {
            p++;
            len--;
        }
        while (len && p[len - 1] == ' ')
            len--;
        if (len == 3 && !strncmp(p, "1.0", 3) && best < STOMP_10)
            best = STOMP_10;
        else if (len == 3 && !strncmp(p, "1.1", 3) && best < STOMP_11)
            best = STOMP_11;
        else if (len == 3 && !strncmp(p, "1.2", 3))
            best = STOMP_12;
        if (!comma)
            break;
        p = comma + 1;
    }
    return best;
}

static int parse_heartbeat(const char *s, uint32_t *cx, uint32_t *cy)
{
    char *end;
    unsigned long a = strtoul(s, &end, 10);
    if (end == s || *end != ',' || a > UINT32_MAX)
        return -1;
    const char *q = end + 1;
    unsigned long b = strtoul(q, &end, 10);
    if (end == q || *end || b > UINT32_MAX)
        return -1;
    *cx = (uint32_t)a;
    *cy = (uint32_t)b;
    return 0;
}

static uint32_t at_least_min(uint32_t v)
{
    if (v == 0)
        return 0;
    return v < (uint32_t)config.heartbeat_min ? (uint32_t)config.heartbeat_min : v;
}

/* In a cluster, CONNECTED names the client (STOMP) address of every
 * registered member, "cluster-members:tcp://h1:p1,tcp://h2:p2" (the master
 * included), as ActiveMQ's updateClusterClients does: a failover client
 * configured with one node learns the others. Addresses on every interface
 * (0.0.0.0, ::) name no host a client could reach, and are left out. */
static void put_cluster_members(struct buf *out, enum stomp_version v)
{
    if (!cluster_enabled())
        return;
    static struct cluster_member ms[64]; /* the loop thread's alone */
    size_t n = cluster_members(ms, sizeof ms / sizeof ms[0]);
    char list[4096];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        const char *a = ms[i].stomp;
        const char *colon = strrchr(a, ':');
        if (!colon || colon == a || !colon[1])
            continue;
        int hl = (int)(colon - a);
        if ((hl == 7 && !strncmp(a, "0.0.0.0", 7)) || (hl == 2 && !strncmp(a, "::", 2)) ||
            (hl == 4 && !strncmp(a, "[::]", 4)))
            continue;
        bool six = memchr(a, ':', (size_t)hl) && a[0] != '[';
        int w = snprintf(list + len, sizeof list - len, "%stcp://%s%.*s%s%s", len ? "," : "", six ? "[" : "", hl, a,
                         six ? "]" : "", colon);
        if (w < 0 || (size_t)w >= sizeof list - len) {
            list[len] = '\0'; /* what fits */
            break;
        }
        len += (size_t)w;
    }
    if (len)
        frame_write_header_str(out, v, false, "cluster-members", list);
}

/* What CONNECT asked for, kept while its password is checked. */
struct pending_login {
    struct conn *c;
    struct auth_wait *wait;
    int version;
    bool accept_version;
    uint32_t cx, cy;
    char *client_id, *receipt, *login;
};

static void pending_free(struct pending_login *pl)
{
    free(pl->client_id);
    free(pl->receipt);
    free(pl->login);
    free(pl);
}

static int login_failed(struct conn *c, const char *login)
{
    auth_note_failure("STOMP", c->st.peer, login);
    c->error_quiet = true; /* auth_note_failure logged it, at most once a second */
    return proto_fail("authentication failed", "The login and passcode were not accepted.");
}

/* Logged in as who (a reference, taken over): claim the client-id and
 * answer CONNECTED. */
static int connect_finish(struct conn *c, const struct pending_login *p, struct principal *who)
{
    int v = p->version;
    const char *cid = p->client_id;
    c->who = who; /* before the claim: a takeover needs the same user */
    if (cid && *cid) {
        if (proto_claim_client_id(c, cid) != 0)
            return proto_fail("client-id already in use",
                              "Another connection is using client-id '%.128s'; each client-id may be connected once.", cid);
        c->client_id = strdup(cid);
    }
    if (p->login)
        c->login = strdup(p->login);

    c->version = (enum stomp_version)v;
    c->parser.version = c->version;
    conn_set_state(c, CONN_OPEN);

    uint32_t sx = at_least_min(p->cy), sy = at_least_min(p->cx);
    char session[32], beats[32];
    snprintf(session, sizeof session, "%llu", (unsigned long long)c->id);
    frame_write_command(&c->st.out, "CONNECTED");
    /* Always both, a 1.0 client's too (no accept-version means 1.0): the
     * 1.2 specification says CONNECTED MUST carry version, and a missing
     * heart-beat means 0,0, which is what a 1.0 connection gets. */
    frame_write_header_str(&c->st.out, c->version, false, "version",
                           v == STOMP_12 ? "1.2" : v == STOMP_11 ? "1.1" : "1.0");
    frame_write_header_str(&c->st.out, c->version, false, "server", PACKAGE_NAME "/" PACKAGE_VERSION);
    frame_write_header_str(&c->st.out, c->version, false, "session", session);
    snprintf(beats, sizeof beats, "%u,%u", sx, sy);
    frame_write_header_str(&c->st.out, c->version, false, "heart-beat", beats);
    put_cluster_members(&c->st.out, c->version);
    frame_write_body(&c->st.out, NULL, 0);
    conn_frame_sent(c);
    conn_want_flush(c);
    /* Effective intervals per the specification: max of both sides. */
    conn_start_heartbeats(c, sy, sx);
    clog_debug(c, "connected with STOMP %s, heart-beat rx %u tx %u ms, as %s%s%s",
               v == STOMP_12 ? "1.2" : v == STOMP_11 ? "1.1" : "1.0", sy, sx, who->name,
               c->client_id ? ", client-id " : "", c->client_id ? c->client_id : "");
    return 0;
}

/* The password check came back. */
static void login_done(void *arg, struct principal *who)
{
    struct pending_login *pl = arg;
    struct conn *c = pl->c;
    c->login_wait = NULL;
    int rc = who ? connect_finish(c, pl, who) : login_failed(c, pl->login);
    if (rc < 0)
        proto_error(c, pl->receipt);
    else
        conn_resume(c, PAUSE_AUTH);
    pending_free(pl);
}

void proto_login_cancel(struct conn *c)
{
    struct pending_login *pl = c->login_wait;
    if (!pl)
        return;
    auth_cancel(pl->wait);
    c->login_wait = NULL;
    pending_free(pl);
}

static char *dup_or_null(const char *s)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        abort();
    return d;
}

int handle_connect(struct conn *c, struct frame *f, uint64_t *lsn)
{
    if (c->state != CONN_HANDSHAKE)
        return proto_fail("already connected", "A connection sends CONNECT once.");
    const char *av = frame_get(f, "accept-version");
    int v = STOMP_10;
    if (av) {
        v = pick_version(av);
        if (v < 0) {
            char detail[160];
            snprintf(detail, sizeof detail, "Client accepts '%.64s'; this broker speaks 1.0, 1.1 and 1.2.", av);
            conn_error_hdr(c, "unsupported protocol version", frame_get(f, "receipt"), detail,
                           "version", "1.0,1.1,1.2");
            return PROTO_RECEIPT_TAKEN;
        }
    }
    if (v >= STOMP_11 && config.require_host && !frame_get(f, "host"))
        return proto_fail("missing host header",
                          "STOMP 1.1 and 1.2 require a host header on CONNECT (stomp.require_host); any value is accepted.");
    uint32_t cx = 0, cy = 0;
    const char *hb = frame_get(f, "heart-beat");
    if (hb && v >= STOMP_11 && parse_heartbeat(hb, &cx, &cy) != 0)
        return proto_fail("invalid heart-beat header", "Expected heart-beat:<cx>,<cy> in milliseconds, got '%.64s'.", hb);
    const char *cid = frame_get(f, "client-id");
    if (cid && strlen(cid) > DURABLE_NAME_MAX)
        return proto_fail("client-id too long", "client-id may be %d bytes at most (it names durable "
                          "subscriptions in the store), got %zu.", DURABLE_NAME_MAX, strlen(cid));
    /* A client-id names durable subscriptions, which the console lists:
     * it must be UTF-8, as STOMP's headers are, unless an earlier release
     * kept subscriptions under it (their messages can still be taken). */
    const char *bad;
    if (cid && !utf8_name_ok(cid, &bad) && !durable_client_known(cid))
        return proto_fail("invalid client-id", "The client-id %s: a client-id names durable subscriptions, which "
                          "the console lists by it (a name is UTF-8 text).", bad);
    struct pending_login p = {.c = c, .version = v, .accept_version = av != NULL, .cx = cx, .cy = cy,
                              .client_id = (char *)frame_get(f, "client-id"), .login = (char *)frame_get(f, "login")};
    const char *login = p.login && *p.login ? p.login : NULL;
    const struct stomp_header *pass = frame_header(f, "passcode");

    /* Without a users file every client is anonymous (what it sends as
     * login is its own business); with one, a login is checked and no
     * login is anonymous only where auth.anonymous allows it. */
    struct principal *who = NULL;
    int rc = AUTH_FAILED;
    if (!auth_has_users() || (!login && auth_anonymous_allowed())) {
        who = principal_ref(auth_anonymous());
        rc = AUTH_OK;
    } else if (login) {
        struct pending_login *pl = calloc(1, sizeof *pl);
        if (!pl)
            abort();
        *pl = p;
        pl->client_id = dup_or_null(p.client_id);
        pl->login = dup_or_null(p.login);
        pl->receipt = dup_or_null(frame_get(f, "receipt"));
        rc = auth_login(login, pass ? pass->value : "", c->st.peer, login_done, pl, &who, &pl->wait);
        if (rc == AUTH_PENDING) {
            c->login_wait = pl;
            conn_pause(c, PAUSE_AUTH);
            conn_watch_peer(c); /* (conn_timeout) */
        } else {
            pending_free(pl);
        }
    }
    /* the frame is freed after this; its copy of the password need not wait */
    if (pass)
        explicit_bzero((char *)pass->value, pass->value_len);
    if (rc == AUTH_PENDING)
        return PROTO_RECEIPT_TAKEN;
    if (rc == AUTH_BUSY)
        return proto_fail("too many logins in progress",
                          "This address has auth.max_checks_per_peer password checks waiting; try again shortly.");
    if (rc != AUTH_OK)
        return login_failed(c, login);
    return connect_finish(c, &p, who);
}

int handle_disconnect(struct conn *c, struct frame *f, uint64_t *lsn)
{
    /* nothing after it is read, and nothing more is delivered to it */
    conn_pause(c, PAUSE_CLOSING);
    /* a graceful close (DISCONNECT with a receipt): the acks it sent
     * without receipts go to the store now, not after store.ack_delay,
     * and the receipt says they are durable, as an ACK's own would (a
     * transaction's are: its COMMIT's op goes first) */
    uint64_t acks = 0;
    if (frame_get(f, "receipt") && c->acked_lsn > commit_lsn()) {
        if (c->acked_lsn > persist_last_lsn())
            persist_flush();
        acks = c->acked_lsn;
    }
    op_submit(op_disconnect(c, frame_get(f, "receipt"), acks));
    return PROTO_RECEIPT_TAKEN;
}
