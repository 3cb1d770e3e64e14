/* The HTTP console (DESIGN §9): an HTML page, a JSON API under /api/,
 * /metrics for Prometheus and /healthz, on http.listen. */
#ifndef STOMPD_HTTP_H
#define STOMPD_HTTP_H

#include <stddef.h>

int http_start(char *err, size_t errlen) __attribute__((warn_unused_result));
void http_stop(void);

#endif
