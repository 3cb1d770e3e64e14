/* The console (DESIGN §9): pages, JSON API, metrics and actions on
 * http.listen, served through the HTTP transport of http.c. console.c
 * has the routes, the JSON views of the broker's state and the actions;
 * html.c draws the pages from the same JSON views; metrics.c writes
 * /metrics; rates.c keeps the message rates the views show. */
#ifndef STOMPD_CONSOLE_H
#define STOMPD_CONSOLE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stompd/buf.h"
#include "stompd/queue.h"

struct conn;
struct dest;
struct http_req;

int console_start(char *err, size_t errlen) __attribute__((warn_unused_result));
void console_stop(void);

/* ---------------------------------------------------------------- views (for html.c) */
json_t *console_status_json(void);
json_t *console_counters_json(void);
json_t *console_cluster_json(void);
json_t *console_dest_json(const struct dest *d);
json_t *console_conn_json(const struct conn *c);
/* The scheduler (ActiveMQ's scheduler view): how many messages are
 * scheduled, how many in memory, fired, cancelled, and the next due. */
json_t *console_scheduler_json(void);
/* The same with one page of jobs in due order after cursor `after` (NULL
 * or "": from the first), "next" the next page's cursor; *rc is 0, or
 * -EINVAL for a bad cursor, another negative errno when the store failed. */
json_t *console_jobs_json(const char *after, size_t limit, int *rc);
/* A destination's (NULL: the node's) message rates over the window. */
json_t *console_rates_json(const char *dest);
/* Up to limit pending messages of queue d, after `after` (NULL: from the
 * first), with headers and a body preview as safe text. */
json_t *console_browse_json(struct dest *d, const struct qkey *after, size_t limit);
/* The master's console address (host:port), NULL when not known. */
const char *console_master_http(void);
/* How far this follower's durable store is behind its master's head, as
 * last heard (-1: no master heard from). */
/* A slave's master's journal head: as last heard from it, or, while cut
 * off, as ZooKeeper last had it if that is later (0: not known). */
uint64_t console_follower_master_lsn(void);
int64_t console_follower_lag(void);

/* Queues (or topics) by name whose name contains filter (any case; NULL
 * or "": all): up to limit of them from offset; *matching counts those
 * that match, *total those of the kind. */
size_t console_dests(bool queues, const char *filter, size_t offset, size_t limit, struct dest **out,
                     size_t *matching, size_t *total);
/* Connections whose peer, client-id or login contains filter, or whose
 * id is filter. */
size_t console_conns(const char *filter, size_t offset, size_t limit, struct conn **out, size_t *matching);

/* A message's key in its queue, "priority:seq", and back. */
void console_key_str(struct qkey k, char *out, size_t n);
int console_key_parse(const char *s, struct qkey *k) __attribute__((warn_unused_result));

/* Client text (names, headers, bodies) made safe to show: at most max
 * bytes of s, cut on a character, as UTF-8; control characters and bytes
 * that are not UTF-8 become \xNN (show_bytes) or U+FFFD. Returns how many
 * bytes of s were used. */
size_t console_text(struct buf *out, const char *s, size_t n, size_t max, bool show_bytes);
/* A client's string (NUL-terminated) as a JSON string (NULL: null). */
json_t *console_jstr(const char *s);

/* Query parameters: 0, or -EINVAL after answering 400 naming it. */
int console_param_size(struct http_req *h, const char *name, size_t def, size_t min, size_t max, size_t *out)
    __attribute__((warn_unused_result));
int console_param_str(struct http_req *h, const char *name, char *out, size_t outlen)
    __attribute__((warn_unused_result));
/* The destination a parameter names; NULL after answering 400 or 404. */
struct dest *console_param_dest(struct http_req *h, const char *param);

#endif
