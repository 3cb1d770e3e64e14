/* HTTP transport and routing for the console (DESIGN §9): one listener,
 * requests parsed incrementally with bounded sizes on the loop thread, a
 * route table with per-route access rules, basic authentication, and
 * answers written through the connection's stream. What each page says
 * lives in console.c. */
#ifndef STOMPD_HTTP_H
#define STOMPD_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One request (and the connection it came on: requests on a connection
 * are answered one at a time, in order). */
struct http_req;

enum http_route_flags {
    ROUTE_PUBLIC = 1,   /* no authentication (health checks) */
    ROUTE_ANY_ROLE = 2, /* answered by a node that does not serve clients too */
};

struct http_route {
    const char *path;
    const char *method;  /* "GET" or "POST" */
    unsigned flags;
    void (*handle)(struct http_req *r);
};

struct http_site {
    const struct http_route *routes;
    size_t nroutes;
    /* Does this node serve its full console now? When not, every path
     * without ROUTE_ANY_ROLE (known or not: it cannot tell what the
     * serving node's console has) gets not_serving's answer. */
    bool (*serving)(void);
    void (*not_serving)(struct http_req *r);
};

int http_start(const struct http_site *site, char *err, size_t errlen) __attribute__((warn_unused_result));
void http_stop(void);
uint64_t http_requests(void);

const char *http_req_peer(const struct http_req *r);
/* Who the request authenticated as: a user of http.admin_group, or NULL
 * when http.auth = false (the console then acts as the broker itself). */
struct principal;
const struct principal *http_req_principal(const struct http_req *r);
const char *http_req_content_type(const struct http_req *r);
bool http_req_is_json(const struct http_req *r);

/* What the console's transport turned away. */
struct http_counters {
    uint64_t request_timeouts; /* 408: a request not whole within http.request_timeout */
    uint64_t evicted;          /* unauthenticated connections closed to make room */
    uint64_t misdirected;      /* 421: a Host this console does not answer to */
};
const struct http_counters *http_counters(void);
const char *http_req_body(const struct http_req *r, size_t *len);
/* Query parameter `name` of the request's URL, percent-decoded ('+' is a
 * space), in out: its length, -ENOENT when absent, -EINVAL when malformed
 * (a bad escape, a NUL), -E2BIG when longer than outlen - 1. */
int http_req_query(const struct http_req *r, const char *name, char *out, size_t outlen)
    __attribute__((warn_unused_result));

void http_respond(struct http_req *r, int status, const char *ctype, const char *body, size_t len,
                  const char *extra_headers);
/* j is taken (decref'd). */
void http_respond_json(struct http_req *r, int status, json_t *j);
void http_respond_error(struct http_req *r, int status, const char *msg, const char *extra_headers);

/* The answer comes later (an action waits for the journal): nothing more
 * is read from the connection until http_respond. Should the connection
 * close first, gone(arg) is called. */
void http_defer(struct http_req *r, void (*gone)(void *arg), void *arg);

#endif
