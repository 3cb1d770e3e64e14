/* The console's HTTP transport: with http_head.c (a request head parsed
 * whole, for the WebSocket handshake), the only file that includes
 * http_parser.h.
 * Each console connection is a stream; requests are parsed incrementally
 * with bounded sizes, matched against the site's route table (method,
 * authentication, whether this node serves), and answered one at a time:
 * after each request the parser pauses until its answer is written, so
 * pipelined requests wait in the stream's input buffer. Nothing here
 * blocks the loop. */
#include "config.h"

#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stompd/auth.h"
#include "stompd/config.h"
#include "stompd/http.h"
#include "stompd/http_head.h"
#include "stompd/log.h"
#include "stompd/stream.h"
#include "stompd/tls.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define IDLE_TIMEOUT 30.0  /* seconds a kept-alive connection may stay silent */
#define CLOSE_LINGER 5.0   /* seconds a closing connection has to read its answer */

enum {
    PAUSE_ANSWER = 1, /* an answer is pending: read nothing more */
    PAUSE_OUTPUT = 2, /* the answers fill the output: read on once the client takes them */
};
enum { CAP_NONE, CAP_AUTH, CAP_CTYPE, CAP_HOST, CAP_TE, CAP_ORIGIN, CAP_EXPECT };

struct http_req {
    struct stream st;
    http_parser parser;
    char url[HTTP_MAX_URL];
    size_t url_len;
    bool url_too_long;
    char field[64];
    size_t field_len;
    bool field_done;
    int capture;            /* which header value is being captured */
    bool in_trailer;        /* past the head: fields now are a chunked body's trailer */
    bool auth_too_long;
    char auth[512];
    char ctype[128];
    char host[256];
    char te[64];            /* Transfer-Encoding (capped) */
    char origin[300];       /* Origin (capped) */
    char expect[32];        /* Expect (capped) */
    unsigned nauth, nhost;  /* how many of each header the request had */
    size_t header_bytes;
    bool in_request;        /* its first byte came, its last not yet */
    unsigned begun, done;   /* requests begun and finished (for the timers) */
    bool proven;            /* it has made an authenticated request */
    const struct http_route *route; /* what the request asked for */
    struct principal *who;  /* who it authenticated as (NULL: nobody, or http.auth = false) */
    struct auth_wait *login;        /* its password is being checked */
    char user[256];                 /* the name it gave, for the log */
    struct buf body;
    bool too_large;
    bool answered;          /* this request has its answer */
    bool close_after;       /* close once the answer is written */
    bool deferred;          /* the answer comes later */
    bool head;              /* a HEAD: the answer's headers without its body */
    void (*gone)(void *arg);
    void *gone_arg;
    TAILQ_ENTRY(http_req) link;
};

static struct {
    const struct http_site *site;
    struct listener listener;
    TAILQ_HEAD(, http_req) conns;
    http_parser_settings settings;
    uint64_t requests;
    size_t unproven;        /* connections that have not authenticated yet */
    struct http_counters counters;
} H = {.conns = TAILQ_HEAD_INITIALIZER(H.conns)};

uint64_t http_requests(void)
{
    return H.requests;
}

const struct http_counters *http_counters(void)
{
    return &H.counters;
}

const char *http_req_peer(const struct http_req *r)
{
    return r->st.peer;
}

const struct principal *http_req_principal(const struct http_req *r)
{
    return r->who;
}

const char *http_req_content_type(const struct http_req *r)
{
    return r->ctype;
}

/* application/json exactly, in any case, with parameters after a ';' at
 * most: not application/jsonp, not text/json. */
bool http_req_is_json(const struct http_req *r)
{
    static const char want[] = "application/json";
    if (strncasecmp(r->ctype, want, sizeof want - 1) != 0)
        return false;
    const char *p = r->ctype + sizeof want - 1;
    while (*p == ' ' || *p == '\t')
        p++;
    return *p == '\0' || *p == ';';
}

const char *http_req_body(const struct http_req *r, size_t *len)
{
    *len = buf_used(&r->body);
    return r->body.data ? buf_head(&r->body) : "";
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode [p, p + n) into out ('+' is a space); -EINVAL for a bad
 * escape or a NUL, -E2BIG when out is too small. */
static int url_decode(const char *p, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)p[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 2 < n ? hexval((unsigned char)p[i + 1]) : -1;
            int lo = i + 2 < n ? hexval((unsigned char)p[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -EINVAL;
            c = hi * 16 + lo;
            i += 2;
        }
        if (c == 0)
            return -EINVAL;
        if (o + 1 >= outlen)
            return -E2BIG;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return (int)o;
}

int http_req_query(const struct http_req *r, const char *name, char *out, size_t outlen)
{
    const char *q = strchr(r->url, '?');
    size_t nl = strlen(name);
    while (q) {
        q++;
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        size_t kl = eq ? (size_t)(eq - q) : len;
        char key[64];
        int k = url_decode(q, kl, key, sizeof key);
        if (k == (int)nl && !memcmp(key, name, nl)) {
            if (!eq) {
                if (outlen)
                    out[0] = '\0';
                return 0;
            }
            return url_decode(eq + 1, len - kl - 1, out, outlen);
        }
        q = q[len] ? q + len : NULL;
    }
    return -ENOENT;
}

/* ------------------------------------------------------------ answers */

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 421: return "Misdirected Request";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

void http_respond(struct http_req *r, int status, const char *ctype, const char *body, size_t len,
                  const char *extra_headers)
{
    if (r->st.state != STREAM_OPEN || r->answered)
        return;
    bool keep = !r->close_after && http_should_keep_alive(&r->parser) && status < 500 && status != 400 &&
                status != 408 && status != 413 && status != 431 && status != 414;
    buf_printf(&r->st.out,
               "HTTP/1.1 %d %s\r\nServer: %s/%s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n%s%s\r\n",
               status, reason(status), PACKAGE_NAME, PACKAGE_VERSION, ctype, len, extra_headers ? extra_headers : "",
               keep ? "" : "Connection: close\r\n");
    if (!r->head)
        buf_append(&r->st.out, body, len);
    r->answered = true;
    if (!keep)
        r->close_after = true;
    stream_want_flush(&r->st);
    if (r->deferred) {
        /* the answer that was waiting: the next request may go */
        r->deferred = false;
        r->gone = NULL;
        if (r->close_after)
            stream_close_after_flush(&r->st, CLOSE_LINGER, "closed after its answer");
        else
            stream_resume(&r->st, PAUSE_ANSWER);
    }
}

void http_respond_json(struct http_req *r, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t)
        abort();
    t[n] = '\n';
    http_respond(r, status, "application/json", t, n + 1, NULL);
    free(t);
}

void http_respond_error(struct http_req *r, int status, const char *msg, const char *extra)
{
    json_t *j = json_pack("{s:i, s:s}", "status", status, "error", msg);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    http_respond(r, status, "application/json", s, strlen(s), extra);
    free(s);
}

void http_defer(struct http_req *r, void (*gone)(void *arg), void *arg)
{
    r->deferred = true;
    r->gone = gone;
    r->gone_arg = arg;
    stream_pause(&r->st, PAUSE_ANSWER);
}

/* ------------------------------------------------------------ routing */

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Basic credentials are a few dozen bytes of base64 (RFC 4648, padded):
 * decoded here rather than pulling a crypto library in for it. Anything
 * else after "Basic " (a second token, bad padding, trailing bytes) is
 * refused: -1. */
static int b64_decode_strict(const char *in, char *out, size_t cap)
{
    size_t n = strlen(in);
    if (n == 0 || n % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            int c = (unsigned char)in[i + k];
            if (c == '=' && i + 4 == n && k >= 2 && (k == 3 || in[i + 3] == '=')) {
                v[k] = 0;
                pad++;
            } else if ((v[k] = b64val(c)) < 0 || pad) {
                return -1;
            }
        }
        unsigned acc = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
        if (o + 3 - (size_t)pad >= cap)
            return -1;
        out[o++] = (char)(acc >> 16);
        if (pad < 2)
            out[o++] = (char)(acc >> 8 & 0xff);
        if (pad < 1)
            out[o++] = (char)(acc & 0xff);
    }
    out[o] = '\0';
    return (int)o;
}

/* "user:password" of a Basic Authorization header into out, the colon
 * replaced by a NUL; *password points after it. */
static bool basic_credentials(const struct http_req *r, char *out, size_t len, const char **password)
{
    if (strncasecmp(r->auth, "Basic ", 6) != 0)
        return false;
    int got = b64_decode_strict(r->auth + 6, out, len);
    if (got < 0)
        return false;
    size_t o = (size_t)got;
    char *colon = memchr(out, ':', o);
    if (!colon || memchr(out, '\0', o))
        return false;
    *colon = '\0';
    *password = colon + 1;
    return true;
}

/* A connection that authenticated keeps its slot: it no longer counts
 * among those the oldest of which makes room for a newcomer. */
static void mark_proven(struct http_req *r)
{
    if (r->proven)
        return;
    r->proven = true;
    H.unproven--;
}

/* The Host header names this console (http_host_named): an IP address,
 * localhost, this machine, the host of http.listen, or one of
 * http.hosts. */
static bool host_allowed(const char *hdr)
{
    const char *const names[] = {config.http_hosts, config.http_listen, NULL};
    return http_host_named(hdr, names);
}

static void unauthorized(struct http_req *r)
{
    char msg[256];
    snprintf(msg, sizeof msg, "authentication required (a user of group %s in auth.users, or http.admin_user)",
             config.admin_group);
    http_respond_error(r, 401, msg, "WWW-Authenticate: Basic realm=\"stompd\"\r\n");
}

/* Authenticated (or no authentication needed): answer. */
static void serve(struct http_req *r)
{
    const struct http_route *rt = r->route;
    if (!(rt && (rt->flags & ROUTE_ANY_ROLE)) && !H.site->serving()) {
        H.site->not_serving(r);
        return;
    }
    if (!rt) {
        http_respond_error(r, 404, "no such page (see / and /api/overview)", NULL);
        return;
    }
    /* HEAD: what GET would answer, without the body (RFC 9110 9.3.2) */
    bool get = !strcmp(rt->method, "GET");
    if (!(r->head && get) && strcmp(http_method_str((enum http_method)r->parser.method), rt->method) != 0) {
        char hdr[96];
        snprintf(hdr, sizeof hdr, "Allow: %s\r\n", get ? "GET, HEAD" : rt->method);
        http_respond_error(r, 405, "method not allowed here", hdr);
        return;
    }
    rt->handle(r);
}

/* A login's answer: a user of the console's group is served. */
static void logged_in(struct http_req *r, struct principal *who)
{
    if (!who) {
        auth_note_failure("console", r->st.peer, r->user);
        unauthorized(r);
        return;
    }
    if (!principal_in_group(who, config.admin_group)) {
        auth_note_failure("console", r->st.peer, r->user);
        char msg[400];
        snprintf(msg, sizeof msg, "user '%.128s' is not in group '%.64s' (http.admin_group)", who->name,
                 config.admin_group);
        principal_unref(who);
        http_respond_error(r, 403, msg, NULL);
        return;
    }
    principal_unref(r->who);
    r->who = who;
    mark_proven(r);
    serve(r);
}

static void login_done(void *arg, struct principal *who)
{
    struct http_req *r = arg;
    r->login = NULL;
    logged_in(r, who);
    buf_free(&r->body);
}

static void login_gone(void *arg)
{
    struct http_req *r = arg;
    auth_cancel(r->login);
    r->login = NULL;
}

/* s, without the spaces and tabs around it, against t (case-blind). */
static int strcasecmp_trimmed(const char *s, const char *t)
{
    s += strspn(s, " \t");
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    return n == strlen(t) && !strncasecmp(s, t, n) ? 0 : 1;
}

/* Origin names this console: the host and port the request is sent to,
 * or a name of http.hosts (a proxy in front may speak https for it, and
 * name it otherwise). No other address passes, nor "null" (a sandboxed
 * or local file's page). */
static bool origin_allowed(const struct http_req *r)
{
    const char *o = r->origin;
    if (!strncasecmp(o, "http://", 7))
        o += 7;
    else if (!strncasecmp(o, "https://", 8))
        o += 8;
    else
        return false;
    return !strcasecmp(o, r->host) || http_host_listed(o, config.http_hosts);
}

static void route(struct http_req *r)
{
    H.requests++;
    r->head = r->parser.method == HTTP_HEAD; /* every answer to it goes without its body */
    if (r->nhost > 1 || r->nauth > 1) {
        http_respond_error(r, 400, r->nhost > 1 ? "more than one Host header" : "more than one Authorization header",
                           NULL);
        r->close_after = true;
        return;
    }
    /* HTTP/1.x only: what http-parser reads as another version is not
     * served as 1.1 (helper-81) */
    if (r->parser.http_major != 1) {
        http_respond_error(r, 505, "this console speaks HTTP/1.0 and HTTP/1.1 only", NULL);
        r->close_after = true;
        return;
    }
    /* chunked is the one transfer coding it decodes: a body in another
     * (gzip, chunked) would be taken as plain (RFC 9112 section 6.1) */
    if (r->te[0] && strspn(r->te, " \t") != strlen(r->te) && strcasecmp_trimmed(r->te, "chunked") != 0) {
        http_respond_error(r, 501, "only the chunked transfer coding is implemented", NULL);
        r->close_after = true;
        return;
    }
    if (r->nhost == 0 && r->parser.http_major == 1 && r->parser.http_minor >= 1) {
        http_respond_error(r, 400, "an HTTP/1.1 request needs a Host header (RFC 9112 section 3.2)", NULL);
        r->close_after = true;
        return;
    }
    if (!host_allowed(r->host)) {
        H.counters.misdirected++;
        char msg[400];
        snprintf(msg, sizeof msg, "this console does not answer to the name '%.200s' (add it to http.hosts)", r->host);
        http_respond_error(r, 421, msg, NULL);
        return;
    }
    /* An action a page of another site makes a browser send (with the
     * Basic credentials it keeps) says that site's Origin: refused. Only
     * application/json bodies are taken, which such a page cannot send
     * without asking first; this holds even if that ever changes. */
    if (r->parser.method != HTTP_GET && r->parser.method != HTTP_HEAD && r->origin[0] && !origin_allowed(r)) {
        char msg[400];
        snprintf(msg, sizeof msg, "a request from another site (Origin %.200s) is refused (a name of this console "
                 "behind a proxy that rewrites Host: list it in http.hosts)", r->origin);
        http_respond_error(r, 403, msg, NULL);
        return;
    }
    char path[HTTP_MAX_URL];
    size_t pl = strcspn(r->url, "?");
    snprintf(path, sizeof path, "%.*s", (int)pl, r->url);
    r->route = NULL;
    for (size_t i = 0; i < H.site->nroutes && !r->route; i++)
        if (!strcmp(path, H.site->routes[i].path))
            r->route = &H.site->routes[i];
    if (r->route && (r->route->flags & ROUTE_PUBLIC)) {
        serve(r);
        return;
    }
    if (!config.http_auth) {
        mark_proven(r);
        serve(r);
        return;
    }
    if (r->auth_too_long) {
        char msg[120];
        snprintf(msg, sizeof msg, "Authorization header longer than %zu bytes", sizeof r->auth - 1);
        http_respond_error(r, 431, msg, NULL);
        return;
    }
    char creds[400];
    const char *password;
    if (!basic_credentials(r, creds, sizeof creds, &password)) {
        if (r->auth[0])
            auth_note_failure("console", r->st.peer, NULL);
        unauthorized(r);
        return;
    }
    snprintf(r->user, sizeof r->user, "%.255s", creds);
    struct principal *who;
    int rc = auth_console_login(creds, password, r->st.peer, login_done, r, &who, &r->login);
    explicit_bzero(creds, sizeof creds);
    if (rc == AUTH_BUSY)
        http_respond_error(r, 429, "too many logins in progress from this address (auth.max_checks_per_peer)",
                           "Retry-After: 1\r\n");
    else if (rc == AUTH_PENDING)
        http_defer(r, login_gone, r); /* login_done answers */
    else
        logged_in(r, rc == AUTH_OK ? who : NULL);
}

/* ------------------------------------------------------------ parsing */

static int on_message_begin(http_parser *p)
{
    struct http_req *r = p->data;
    r->url_len = 0;
    r->url[0] = '\0';
    r->url_too_long = false;
    r->auth[0] = r->ctype[0] = r->host[0] = r->te[0] = r->origin[0] = r->expect[0] = '\0';
    r->nauth = r->nhost = 0;
    r->in_request = true;
    r->begun++;
    r->field_len = 0;
    r->field_done = false;
    r->capture = CAP_NONE;
    r->in_trailer = false;
    r->auth_too_long = false;
    r->header_bytes = 0;
    r->too_large = false;
    r->answered = false;
    r->head = false;
    r->route = NULL;
    r->user[0] = '\0';
    principal_unref(r->who);
    r->who = NULL;
    buf_free(&r->body);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct http_req *r = p->data;
    if (r->url_len + len >= HTTP_MAX_URL) {
        r->url_too_long = true;
        return 0;
    }
    memcpy(r->url + r->url_len, at, len);
    r->url_len += len;
    r->url[r->url_len] = '\0';
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http_req *r = p->data;
    r->header_bytes += len;
    if (r->field_done) {
        r->field_len = 0;
        r->field_done = false;
    }
    size_t n = len < sizeof r->field - 1 - r->field_len ? len : sizeof r->field - 1 - r->field_len;
    memcpy(r->field + r->field_len, at, n);
    r->field_len += n;
    r->field[r->field_len] = '\0';
    return 0;
}

static void append_capped(char *dst, size_t cap, const char *at, size_t len)
{
    size_t have = strlen(dst);
    size_t n = len < cap - 1 - have ? len : cap - 1 - have;
    memcpy(dst + have, at, n);
    dst[have + n] = '\0';
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http_req *r = p->data;
    r->header_bytes += len;
    if (r->header_bytes > (size_t)config.http_max_request)
        return -1; /* answered 431 by the caller */
    if (!r->field_done) {
        r->field_done = true;
        /* a trailer's fields are not the request's: never its Host,
         * credentials or type (RFC 9110 section 6.5.1) */
        r->capture = r->in_trailer ? CAP_NONE
                     : !strcasecmp(r->field, "Authorization") ? CAP_AUTH
                     : !strcasecmp(r->field, "Content-Type") ? CAP_CTYPE
                     : !strcasecmp(r->field, "Host")         ? CAP_HOST
                     : !strcasecmp(r->field, "Transfer-Encoding") ? CAP_TE
                     : !strcasecmp(r->field, "Origin")       ? CAP_ORIGIN
                     : !strcasecmp(r->field, "Expect")       ? CAP_EXPECT
                                                             : CAP_NONE;
        if (r->capture == CAP_AUTH)
            r->nauth++;
        else if (r->capture == CAP_HOST)
            r->nhost++;
    }
    if (r->capture == CAP_AUTH) {
        if (strlen(r->auth) + len >= sizeof r->auth)
            r->auth_too_long = true;
        append_capped(r->auth, sizeof r->auth, at, len);
    } else if (r->capture == CAP_CTYPE)
        append_capped(r->ctype, sizeof r->ctype, at, len);
    else if (r->capture == CAP_HOST)
        append_capped(r->host, sizeof r->host, at, len);
    else if (r->capture == CAP_ORIGIN)
        append_capped(r->origin, sizeof r->origin, at, len);
    else if (r->capture == CAP_EXPECT)
        append_capped(r->expect, sizeof r->expect, at, len);
    else if (r->capture == CAP_TE) {
        if (r->te[0])
            append_capped(r->te, sizeof r->te, ",", 1); /* a second field: its list goes on */
        append_capped(r->te, sizeof r->te, at, len);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct http_req *r = p->data;
    if (buf_used(&r->body) + len > (size_t)config.http_max_request) {
        r->too_large = true;
        return -1;
    }
    buf_append(&r->body, at, len);
    return 0;
}

/* A chunk announced larger than the body may be is refused at its size
 * line, not once http.max_request of it has come */
static int on_chunk_header(http_parser *p)
{
    struct http_req *r = p->data;
    if (p->content_length > (uint64_t)config.http_max_request - buf_used(&r->body)) {
        r->too_large = true;
        return -1;
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct http_req *r = p->data;
    r->in_trailer = true;
    if (p->content_length != ULLONG_MAX && p->content_length > (uint64_t)config.http_max_request) {
        r->too_large = true;
        return -1;
    }
    /* A client that asks before it sends a body (curl does, for more than
     * 1 KiB) waited a second for an answer that never came, then sent it
     * anyway (RFC 9110 10.1.1): it may go on */
    bool body = (p->flags & F_CHUNKED) || (p->content_length != ULLONG_MAX && p->content_length > 0);
    if (body && !strcasecmp(r->expect, "100-continue") && p->http_major == 1 && p->http_minor >= 1 &&
        r->st.state == STREAM_OPEN) {
        buf_append_str(&r->st.out, "HTTP/1.1 100 Continue\r\n\r\n");
        stream_want_flush(&r->st);
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct http_req *r = p->data;
    r->in_request = false;
    r->done++;
    /* Upgrade (or CONNECT): this console speaks nothing else, so the
     * request is answered as plain HTTP and the connection closed;
     * http-parser reads nothing more after such a request */
    if (p->upgrade)
        r->close_after = true;
    if (r->url_too_long)
        http_respond_error(r, 414, "URL too long", NULL);
    else
        route(r);
    if (!r->login)
        buf_free(&r->body); /* kept for the handler while the login is checked */
    if (!r->answered && !r->deferred)
        http_respond_error(r, 500, "no answer", NULL);
    /* answers go out in request order: a pipelined request waits while
     * this one's answer is deferred, and none is read after a close */
    if (r->deferred || r->close_after) {
        http_parser_pause(p, 1);
    } else if (stream_full(&r->st)) {
        /* pipelined requests of a client that does not read its answers
         * wait in the socket, not as answers in the broker's memory */
        stream_pause(&r->st, PAUSE_OUTPUT);
        http_parser_pause(p, 1);
    }
    return 0;
}

static size_t http_input(struct stream *s, const char *data, size_t len)
{
    struct http_req *r = container_of(s, struct http_req, st);
    unsigned begun = r->begun, done = r->done;
    size_t n = http_parser_execute(&r->parser, &H.settings, data, len);
    /* A request has http.request_timeout from its first byte to its last,
     * however slowly they come; between requests the idle timer runs from
     * the last answer, not from the last byte (blank lines do not keep a
     * connection). */
    if (r->in_request && r->begun != begun)
        stream_set_timer(&r->st, (double)config.http_request_timeout / 1000.);
    else if (!r->in_request && r->done != done)
        stream_set_timer(&r->st, IDLE_TIMEOUT);
    enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
    if (e == HPE_PAUSED) {
        http_parser_pause(&r->parser, 0);
    } else if (e != HPE_OK) {
        /* a chunk size too large for http-parser to read is reported as
         * a bad content-length */
        if (r->too_large || (e == HPE_INVALID_CONTENT_LENGTH && (r->parser.flags & F_CHUNKED)))
            http_respond_error(r, 413, "request body larger than http.max_request", NULL);
        else if (r->header_bytes > (size_t)config.http_max_request ||
                 (e == HPE_HEADER_OVERFLOW && !r->url_too_long))
            http_respond_error(r, 431, "request headers larger than http.max_request", NULL);
        else if (e == HPE_HEADER_OVERFLOW)
            http_respond_error(r, 414, "URL too long", NULL);
        else {
            char msg[160];
            snprintf(msg, sizeof msg, "malformed HTTP request: %s", http_errno_description(e));
            http_respond_error(r, 400, msg, NULL);
        }
        r->close_after = true;
        n = len;
    }
    if (r->deferred)
        return n;
    if (r->close_after)
        stream_close_after_flush(&r->st, CLOSE_LINGER, "closed after its answer");
    return n;
}

static void http_drained(struct stream *s)
{
    stream_resume(s, PAUSE_OUTPUT);
}

static void http_timeout(struct stream *s)
{
    struct http_req *r = container_of(s, struct http_req, st);
    if (r->deferred) {
        /* an action waits for the journal: its answer will come */
        stream_set_timer(s, IDLE_TIMEOUT);
        return;
    }
    if (r->in_request && !r->answered) {
        H.counters.request_timeouts++;
        http_respond_error(r, 408, "the request did not arrive whole within http.request_timeout", NULL);
        stream_close_after_flush(s, CLOSE_LINGER, "request timeout");
        return;
    }
    stream_close(s, "idle");
}

/* The client closed its side (a script that pipelines its requests and
 * shuts its end, nc -N). Reading was not paused, so every request it
 * sent has been read and answered (one cut off by the close cannot be):
 * close once the answers are written, not at once with some of them
 * still queued. A connection paused for an answer (a password check, a
 * journal entry) reads nothing, so its close is seen only after: a FIN
 * does not tell a client that left from one that waits for its answers. */
static bool http_eof(struct stream *s)
{
    if (stream_pending(s) == 0)
        return false; /* nothing left to say: closed now */
    stream_close_after_flush(s, CLOSE_LINGER, "peer closed the connection");
    return true;
}

static void http_closed(struct stream *s, const char *why)
{
    struct http_req *r = container_of(s, struct http_req, st);
    if (r->deferred && r->gone)
        r->gone(r->gone_arg);
    r->deferred = false;
    r->gone = NULL;
    buf_free(&r->body);
    if (!r->proven)
        H.unproven--;
    principal_unref(r->who);
    r->who = NULL;
    TAILQ_REMOVE(&H.conns, r, link);
}

static void http_release(struct stream *s)
{
    free(container_of(s, struct http_req, st));
}

static const struct stream_ops http_ops = {
    .kind = "http",
    .input = http_input,
    .drained = http_drained,
    .timeout = http_timeout,
    .eof = http_eof,
    .closed = http_closed,
    .release = http_release,
};

static void refuse(struct listener *l, int fd)
{
    static const char body[] = "too many console connections (http.max_connections)\n";
    char busy[256];
    int n = snprintf(busy, sizeof busy, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", sizeof body - 1, body);
    listener_say(fd, busy, (size_t)n);
}

/* The oldest connection that has not authenticated (but keep) goes. */
static bool evict_unproven(const struct http_req *keep)
{
    struct http_req *old;
    TAILQ_FOREACH(old, &H.conns, link)
        if (!old->proven && old != keep && old->st.state == STREAM_OPEN)
            break;
    if (!old)
        return false;
    H.counters.evicted++;
    stream_close(&old->st, "evicted: unauthenticated connections hold the console's open slots");
    return true;
}

static void accept_http(struct listener *l, int fd, const char *peer)
{
    struct http_req *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
    stream_init(&r->st, fd, peer, &http_ops, false);
    listener_attach(l, &r->st);
    stream_set_timer(&r->st, IDLE_TIMEOUT);
    TAILQ_INSERT_TAIL(&H.conns, r, link);
    /* The last http.reserved_connections slots are for connections that
     * have authenticated: beyond the rest, the oldest connection that has
     * not makes room (a client holding slots with slow requests cannot
     * lock the administrator out). */
    int64_t reserve = config.http_reserved_connections < config.http_max_connections / 4
                          ? config.http_reserved_connections
                          : config.http_max_connections / 4;
    int64_t open_to_all = config.http_max_connections - reserve;
    if (++H.unproven > (size_t)(open_to_all > 1 ? open_to_all : 1))
        evict_unproven(r);
}

/* At http.max_connections: one that has not authenticated makes room,
 * if more than the reserve have not (helper-106: the slots left over by
 * those that have were all a stranger's). */
static bool make_room(struct listener *l, const char *peer)
{
    (void)l;
    (void)peer;
    return H.unproven > (size_t)config.http_reserved_connections && evict_unproven(NULL);
}

int http_start(const struct http_site *site, char *err, size_t errlen)
{
    if (!config.http_listen[0])
        return 0;
    H.site = site;
    memset(&H.settings, 0, sizeof H.settings);
    H.settings.on_message_begin = on_message_begin;
    H.settings.on_url = on_url;
    H.settings.on_header_field = on_header_field;
    H.settings.on_header_value = on_header_value;
    H.settings.on_headers_complete = on_headers_complete;
    H.settings.on_body = on_body;
    H.settings.on_chunk_header = on_chunk_header;
    H.settings.on_message_complete = on_message_complete;
    H.listener.name = "console";
    H.listener.service = true;
    H.listener.addr_key = "http.listen";
    H.listener.limit_key = "http.max_connections";
    H.listener.max_conns = (uint32_t)config.http_max_connections;
    H.listener.accept = accept_http;
    H.listener.make_room = make_room;
    /* over TLS, a plain-text 503 would be noise to the client */
    H.listener.refuse = config.http_tls ? NULL : refuse;
    H.listener.secure = config.http_tls ? tls_accept_client : NULL;
    if (listener_start(&H.listener, config.http_listen, err, errlen) != 0)
        return -EADDRINUSE;
    log_info("console on %s://%s/", config.http_tls ? "https" : "http", config.http_listen);
    if (config.http_auth && !strcmp(config.admin_user, "admin") && !strcmp(config.admin_password, "admin") &&
        !auth_has_users())
        log_warn("console: the default credentials admin/admin are in use; set http.admin_password");
    if (!config.http_auth)
        log_warn("console: http.auth = false: anyone who reaches %s can purge and delete destinations",
                 config.http_listen);
    return 0;
}

void http_stop(void)
{
    listener_stop(&H.listener);
    struct http_req *r;
    while ((r = TAILQ_FIRST(&H.conns)))
        stream_close(&r->st, "console stopping");
}
