/* CONNECT / STOMP and DISCONNECT: version negotiation, heart-beats,
 * client-id, the cluster's members for failover clients, and an orderly
 * goodbye whose receipt means every frame before it has been processed. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/cluster.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/log.h"
#include "stompd/proto.h"
#include "stompd/server.h"

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
    if (cid && *cid) {
        if (proto_claim_client_id(c, cid) != 0)
            return proto_fail("client-id already in use",
                              "Another connection is using client-id '%.128s'; each client-id may be connected once.", cid);
        c->client_id = strdup(cid);
    }
    const char *login = frame_get(f, "login");
    if (login)
        c->login = strdup(login);

    c->version = (enum stomp_version)v;
    c->parser.version = c->version;
    conn_set_state(c, CONN_OPEN);

    uint32_t sx = at_least_min(cy), sy = at_least_min(cx);
    char session[32], beats[32];
    snprintf(session, sizeof session, "%llu", (unsigned long long)c->id);
    frame_write_command(&c->st.out, "CONNECTED");
    if (av)
        frame_write_header_str(&c->st.out, c->version, false, "version",
                               v == STOMP_12 ? "1.2" : v == STOMP_11 ? "1.1" : "1.0");
    frame_write_header_str(&c->st.out, c->version, false, "server", PACKAGE_NAME "/" PACKAGE_VERSION);
    frame_write_header_str(&c->st.out, c->version, false, "session", session);
    if (v >= STOMP_11) {
        snprintf(beats, sizeof beats, "%u,%u", sx, sy);
        frame_write_header_str(&c->st.out, c->version, false, "heart-beat", beats);
    }
    put_cluster_members(&c->st.out, c->version);
    frame_write_body(&c->st.out, NULL, 0);
    conn_frame_sent(c);
    conn_want_flush(c);
    /* Effective intervals per the specification: max of both sides. */
    conn_start_heartbeats(c, sy, sx);
    clog_debug(c, "connected with STOMP %s, heart-beat rx %u tx %u ms%s%s", v == STOMP_12 ? "1.2" : v == STOMP_11 ? "1.1" : "1.0",
               sy, sx, c->client_id ? ", client-id " : "", c->client_id ? c->client_id : "");
    return 0;
}

int handle_disconnect(struct conn *c, struct frame *f, uint64_t *lsn)
{
    conn_pause(c, PAUSE_CLOSING);
    op_submit(op_disconnect(c, frame_get(f, "receipt")));
    return PROTO_RECEIPT_TAKEN;
}
