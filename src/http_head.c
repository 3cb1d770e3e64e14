/* A request head parsed whole (see http_head.h). With http.c, the only
 * file that includes http_parser.h: the console's transport parses
 * incrementally as requests stream in; the WebSocket handshake waits for
 * the whole (small, bounded) head and parses it once here. */
#include "config.h"

#include <arpa/inet.h>
#include <http_parser.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "stompd/http_head.h"

struct head_parse {
    struct http_head *h;
    char *w;           /* next free byte in h->mem */
    bool in_value;
    bool too_many;
    char *cur;         /* the string being appended to */
};

/* http-parser hands a string in pieces only across calls: the whole head
 * goes in one call, so each callback starts a new string (a value, in
 * case of doubt, is appended to). */
static void start_string(struct head_parse *x)
{
    x->cur = x->w;
    *x->w = '\0';
}

static void append(struct head_parse *x, const char *at, size_t len)
{
    memcpy(x->w, at, len);
    x->w += len;
    *x->w = '\0';
}

static void end_string(struct head_parse *x)
{
    if (x->cur)
        x->w++; /* past the NUL */
    x->cur = NULL;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct head_parse *x = p->data;
    if (!x->cur) {
        start_string(x);
        x->h->url = x->cur;
    }
    append(x, at, len);
    return 0;
}

static int on_field(http_parser *p, const char *at, size_t len)
{
    struct head_parse *x = p->data;
    struct http_head *h = x->h;
    end_string(x);
    if (h->nfields == HTTP_HEAD_MAX_FIELDS) {
        x->too_many = true;
        return -1;
    }
    start_string(x);
    h->fields[h->nfields].name = x->cur;
    h->fields[h->nfields].value = "";
    h->nfields++;
    x->in_value = false;
    append(x, at, len);
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
    struct head_parse *x = p->data;
    if (!x->in_value) {
        end_string(x);
        start_string(x);
        x->h->fields[x->h->nfields - 1].value = x->cur;
        x->in_value = true;
    }
    append(x, at, len);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct head_parse *x = p->data;
    end_string(x);
    return 1; /* no body is read here: what follows belongs to the caller */
}

size_t http_head_end(const char *p, size_t n)
{
    /* the blank line: CRLF CRLF (a bare LF is tolerated, as http-parser does) */
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] != '\n')
            continue;
        if (p[i + 1] == '\n')
            return i + 2;
        if (p[i + 1] == '\r' && i + 2 < n && p[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static void trim(const char **v)
{
    const char *s = *v;
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = (char *)s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        *--e = '\0';
    *v = s;
}

int http_head_parse(struct http_head *h, const char *p, size_t n, char *err, size_t errlen)
{
    memset(h, 0, sizeof *h);
    /* every string is a piece of the input plus its NUL: 2n bounds them */
    h->mem = malloc(2 * n + 2);
    if (!h->mem) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    struct head_parse x = {.h = h, .w = h->mem};
    http_parser parser;
    http_parser_init(&parser, HTTP_REQUEST);
    parser.data = &x;
    http_parser_settings settings = {
        .on_url = on_url,
        .on_header_field = on_field,
        .on_header_value = on_value,
        .on_headers_complete = on_headers_complete,
    };
    size_t used = http_parser_execute(&parser, &settings, p, n);
    enum http_errno e = HTTP_PARSER_ERRNO(&parser);
    if (x.too_many) {
        snprintf(err, errlen, "more than %d header fields", HTTP_HEAD_MAX_FIELDS);
        http_head_free(h);
        return -2;
    }
    /* a head with an Upgrade stops the parser where the new protocol
     * would begin; any other head stops at its end (no body is read) */
    if ((e != HPE_OK && e != HPE_CB_headers_complete) || (used < n && !parser.upgrade && e == HPE_OK) ||
        !h->url) {
        snprintf(err, errlen, "malformed HTTP request: %s",
                 e != HPE_OK ? http_errno_description(e) : "incomplete head");
        http_head_free(h);
        return -1;
    }
    h->method = http_method_str((enum http_method)parser.method);
    h->http_major = parser.http_major;
    h->http_minor = parser.http_minor;
    for (size_t i = 0; i < h->nfields; i++)
        trim(&h->fields[i].value);
    return 0;
}

void http_head_free(struct http_head *h)
{
    free(h->mem);
    h->mem = NULL;
    h->nfields = 0;
}

const char *http_head_get(const struct http_head *h, const char *name)
{
    for (size_t i = 0; i < h->nfields; i++)
        if (!strcasecmp(h->fields[i].name, name))
            return h->fields[i].value;
    return NULL;
}

size_t http_head_count(const struct http_head *h, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < h->nfields; i++)
        n += !strcasecmp(h->fields[i].name, name);
    return n;
}

void http_head_limits(size_t max_request)
{
    /* http-parser's own cap on a head (80 KiB unless set) is one process-
     * wide setting; above http.max_request plus a URL, so the console's
     * finer checks (414, 431) and the WebSocket handshake's come first. */
    size_t cap = max_request + HTTP_MAX_URL + 1024;
    http_parser_set_max_header_size(cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap);
}

static bool host_matches(const char *host, size_t hl, const char *name, size_t nl)
{
    if (nl == 1 && name[0] == '*')
        return true;
    if (nl > 2 && name[0] == '*' && name[1] == '.') /* *.example.com: its subdomains */
        return hl > nl - 1 && !strncasecmp(host + hl - (nl - 1), name + 1, nl - 1);
    return hl == nl && !strncasecmp(host, name, hl);
}

/* Whether host[0..hl) is one of names ("a, b:port, *.c, *"). */
static bool listed(const char *host, size_t hl, const char *names)
{
    for (const char *p = names; *p;) {
        p += strspn(p, " ,");
        size_t n = strcspn(p, " ,");
        /* a host:port address names its host (a bare * is any name) */
        size_t name_len = n > 1 ? strcspn(p, ":") : n;
        if (n && host_matches(host, hl, p, name_len < n ? name_len : n))
            return true;
        p += n;
    }
    return false;
}

bool http_host_named(const char *hdr, const char *const names[])
{
    static char machine[256];
    static bool looked;
    if (!looked) {
        looked = true;
        if (gethostname(machine, sizeof machine - 1) != 0)
            machine[0] = '\0';
    }
    if (!hdr[0] || hdr[0] == '[')
        return true; /* no name, or an IPv6 address */
    size_t hl = strcspn(hdr, ":");
    char host[256];
    if (hl >= sizeof host)
        return false; /* longer than any DNS name (253) */
    snprintf(host, sizeof host, "%.*s", (int)hl, hdr);
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) == 1 || host_matches(host, hl, "localhost", 9) ||
        (machine[0] && host_matches(host, hl, machine, strlen(machine))))
        return true;
    for (size_t i = 0; names[i]; i++)
        if (listed(host, hl, names[i]))
            return true;
    return false;
}

bool http_host_listed(const char *hdr, const char *names)
{
    if (hdr[0] == '[')
        return false; /* an IPv6 address: no name */
    size_t hl = strcspn(hdr, ":");
    return hl < 256 && listed(hdr, hl, names);
}
