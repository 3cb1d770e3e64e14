/* libFuzzer harness: HTTP request heads as the WebSocket listener reads
 * them (http_head.c over http-parser). Where the head ends must not depend
 * on how much of the stream has arrived (a prefix shorter than the head
 * has no end; the head itself ends where it did); a head that parses has a
 * method and a URL, at most HTTP_HEAD_MAX_FIELDS fields, every string
 * inside the one allocation, values trimmed, and every field found again
 * by its name; one that does not says why and holds no memory. A broken
 * rule aborts (libFuzzer reports it as a crash). */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stompd/http_head.h"

static void check_string(const struct http_head *h, const char *s, size_t n)
{
    if (!s)
        abort();
    if (s[0] == '\0')
        return; /* may be a literal "" */
    if (s < h->mem || s + strlen(s) >= h->mem + 2 * n + 2)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    size_t end = http_head_end(p, size);
    if (end > size)
        abort();
    if (end) {
        if (http_head_end(p, end) != end || http_head_end(p, end - 1) != 0)
            abort();
    }
    size_t n = end ? end : size;
    struct http_head h;
    char err[256] = "";
    int rc = http_head_parse(&h, p, n, err, sizeof err);
    if (rc != 0) {
        if ((rc != -1 && rc != -2) || !err[0] || h.mem)
            abort();
        return 0;
    }
    if (!h.method || !h.url || h.nfields > HTTP_HEAD_MAX_FIELDS)
        abort();
    check_string(&h, h.url, n);
    for (size_t i = 0; i < h.nfields; i++) {
        const struct http_head_field *f = &h.fields[i];
        check_string(&h, f->name, n);
        check_string(&h, f->value, n);
        size_t vl = strlen(f->value);
        if (vl && (f->value[0] == ' ' || f->value[0] == '\t' || f->value[vl - 1] == ' ' || f->value[vl - 1] == '\t'))
            abort();
        const char *got = http_head_get(&h, f->name);
        if (!got)
            abort();
        /* the first field of that name */
        for (size_t k = 0; k < i; k++)
            if (!strcasecmp(h.fields[k].name, f->name)) {
                if (got != h.fields[k].value)
                    abort();
                break;
            }
    }
    http_head_free(&h);
    if (h.mem || h.nfields)
        abort();
    return 0;
}
