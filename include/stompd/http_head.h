/* One HTTP/1.x request head (request line and header fields, through the
 * blank line) parsed whole with http-parser: the WebSocket handshake
 * (ws.c) reads its upgrade request with it and answers it itself. Pure
 * code, no I/O. */
#ifndef STOMPD_HTTP_HEAD_H
#define STOMPD_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_HEAD_MAX_FIELDS 100

struct http_head_field {
    const char *name;  /* NUL-terminated, as received */
    const char *value; /* NUL-terminated, surrounding blanks removed */
};

struct http_head {
    const char *method; /* "GET", ... */
    const char *url;
    unsigned short http_major, http_minor;
    size_t nfields;
    struct http_head_field fields[HTTP_HEAD_MAX_FIELDS];
    char *mem; /* one allocation holding the strings */
};

/* Where the head in p[0..n) ends (just past its blank line), or 0 while
 * it is incomplete. */
size_t http_head_end(const char *p, size_t n);

/* Parse the head p[0..n) (n from http_head_end). 0, or -1 with err
 * naming what is wrong (a 400; -2: more than HTTP_HEAD_MAX_FIELDS fields,
 * a 431). */
int http_head_parse(struct http_head *h, const char *p, size_t n, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void http_head_free(struct http_head *h);

/* The first field of that name (case-insensitive), or NULL. */
const char *http_head_get(const struct http_head *h, const char *name);
/* How many fields have that name. */
size_t http_head_count(const struct http_head *h, const char *name);

#define HTTP_MAX_URL 4096 /* the longest request target the console reads */

/* Set http-parser's cap on a request head from http.max_request (once, at
 * start: it is process-wide). */
void http_head_limits(size_t max_request);

/* Does a Host header name this node: an IP address, localhost, this
 * machine's name, or a host in one of names (a NULL-ended list of comma
 * or space lists of names or host:port addresses; *.example.com matches
 * its subdomains, * any name)? A page served under any other name could
 * be a DNS rebinding: a site whose name now resolves to this address,
 * scripting this node from a browser. An empty header is not refused
 * here (HTTP/1.0). */
bool http_host_named(const char *hdr, const char *const names[]);
/* Whether the host of hdr ("host[:port]") is one of names, by name only:
 * no address or machine name passes unlisted. */
bool http_host_listed(const char *hdr, const char *names);

#endif
