/* The console's HTML pages (see html.h). Each page is drawn on the server
 * from console.c's JSON views, charts included (inline SVG: nothing is
 * fetched from elsewhere), so it reads well without its script; the
 * script (/console.js) adds the actions, the send and move forms and the
 * periodic reload. What a client chose (destination names, client ids,
 * message headers and bodies) goes through esc() or an attribute escape,
 * and the pages' Content-Security-Policy runs no inline script at all. */
#include "config.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stompd/acl.h"
#include "stompd/buf.h"
#include "stompd/cluster.h"
#include "stompd/config.h"
#include "stompd/conn.h"
#include "stompd/console.h"
#include "stompd/dest.h"
#include "stompd/dlq.h"
#include "stompd/html.h"
#include "stompd/http.h"
#include "stompd/node.h"
#include "stompd/persist.h"
#include "stompd/rates.h"
#include "stompd/server.h"

#define PAGE_ROWS 50   /* rows per table page */
#define COLOR_IN "#2a7d2a"
#define COLOR_OUT "#2a5d9d"

static const char SECURITY_HEADERS[] =
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'\r\n"
    "X-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n";

/* ------------------------------------------------------------ text */

static void esc_n(struct buf *b, const char *s, size_t n)
{
    for (size_t i = 0; s && i < n; i++) {
        switch (s[i]) {
        case '&': buf_append_str(b, "&amp;"); break;
        case '<': buf_append_str(b, "&lt;"); break;
        case '>': buf_append_str(b, "&gt;"); break;
        case '"': buf_append_str(b, "&quot;"); break;
        case '\'': buf_append_str(b, "&#39;"); break;
        default: buf_putc(b, s[i]);
        }
    }
}

/* A client's string, made valid UTF-8 first. */
static void esc(struct buf *b, const char *s)
{
    if (!s)
        return;
    struct buf t = {0};
    size_t n = strlen(s);
    console_text(&t, s, n, n, false);
    esc_n(b, t.data, buf_used(&t));
    buf_free(&t);
}

/* A query parameter's value. */
static void url_enc(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-_.~/", *p))
            buf_putc(b, (char)*p);
        else
            buf_printf(b, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
    }
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static long long jint(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static double jreal(json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

/* 1536 -> "1.5 KiB" */
static const char *human_bytes(char *out, size_t n, double v)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int u = 0;
    while (fabs(v) >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, n, "%.0f B", v);
    else
        snprintf(out, n, "%.*f %s", fabs(v) < 10 ? 1 : 0, v, units[u]);
    return out;
}

static const char *human_rate(char *out, size_t n, double v)
{
    if (v == 0)
        snprintf(out, n, "0");
    else if (v < 10)
        snprintf(out, n, "%.1f", v);
    else if (v < 100000)
        snprintf(out, n, "%.0f", v);
    else
        snprintf(out, n, "%.0fk", v / 1000);
    return out;
}

static const char *human_duration(char *out, size_t n, double s)
{
    if (s < 120)
        snprintf(out, n, "%.0f s", s);
    else if (s < 7200)
        snprintf(out, n, "%.0f min", s / 60);
    else if (s < 172800)
        snprintf(out, n, "%.1f h", s / 3600);
    else
        snprintf(out, n, "%.1f days", s / 86400);
    return out;
}

/* A latency in microseconds (the durable path's histograms). */
static const char *human_us(char *out, size_t n, double us)
{
    if (us < 1000)
        snprintf(out, n, "%.0f \u00b5s", us);
    else if (us < 10000)
        snprintf(out, n, "%.1f ms", us / 1000);
    else if (us < 1000000)
        snprintf(out, n, "%.0f ms", us / 1000);
    else
        snprintf(out, n, "%.1f s", us / 1000000);
    return out;
}

/* A histogram's summary (console.c hist_json: count, p50, p99 as bucket
 * bounds) as "p50 ≤ x, p99 ≤ y"; "none yet" while empty. */
static void latency(struct buf *b, json_t *h)
{
    char t1[32], t2[32];
    if (jint(h, "count") <= 0) {
        buf_append_str(b, "none yet");
        return;
    }
    buf_printf(b, "p50 \u2264 %s, p99 \u2264 %s", human_us(t1, sizeof t1, (double)jint(h, "p50")),
               human_us(t2, sizeof t2, (double)jint(h, "p99")));
}

static void td_int(struct buf *b, long long v, const char *cls)
{
    buf_printf(b, "<td class=\"num%s%s\">%lld</td>", cls ? " " : "", cls ? cls : "", v);
}

static void td_bytes(struct buf *b, double v, const char *cls)
{
    char t[32];
    buf_printf(b, "<td class=\"num%s%s\" title=\"%.0f bytes\">%s</td>", cls ? " " : "", cls ? cls : "", v,
               human_bytes(t, sizeof t, v));
}

/* ------------------------------------------------------------ page frame */

static void page_begin(struct buf *b, const char *title, long long refresh_ms)
{
    buf_append_str(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>");
    esc(b, title);
    buf_printf(b, "</title><link rel=\"stylesheet\" href=\"/console.css\">"
                  "<script src=\"/console.js\" defer></script></head>\n<body data-refresh=\"%lld\">\n",
               refresh_ms);
}

/* The JSON pages this node answers: a follower serves only its status
 * (the rest answer 503 there), /metrics and /healthz. */
static void page_end(struct http_req *h, struct buf *b, bool follower)
{
    buf_append_str(b, "<p class=\"meta\">JSON: ");
    if (!follower)
        buf_append_str(b, "<a href=\"/api/overview\">/api/overview</a> &middot; ");
    buf_append_str(b, "<a href=\"/api/status\">/api/status</a> &middot; ");
    if (!follower)
        buf_append_str(b, "<a href=\"/api/scheduler\">/api/scheduler</a> &middot; ");
    buf_append_str(b, "<a href=\"/metrics\">/metrics</a> &middot; <a href=\"/healthz\">/healthz</a></p>\n"
                      "</body></html>\n");
    http_respond(h, 200, "text/html; charset=utf-8", b->data, b->len, SECURITY_HEADERS);
    buf_free(b);
}

static void heading(struct buf *b, const char *sub)
{
    const char *role = node_role_name(node_role());
    buf_append_str(b, "<h1><a href=\"/\" class=\"home\">stompd</a> <span id=\"broker\">");
    esc(b, config.broker_name);
    buf_append_str(b, "</span>");
    if (sub) {
        buf_append_str(b, " &rsaquo; <span id=\"dest\">");
        esc(b, sub);
        buf_append_str(b, "</span>");
    }
    buf_printf(b, " <span id=\"role\" class=\"role %s\">%s</span></h1>\n", role, role);
}

static void meta_line(struct buf *b, json_t *st)
{
    char up[32], sz[32];
    buf_append_str(b, "<p class=\"meta\">node <b id=\"node\">");
    esc(b, jstr(st, "node_id"));
    buf_printf(b, "</b> &middot; epoch <b id=\"epoch\">%lld</b> &middot; journal lsn <b id=\"lsn\">%lld</b> ",
               jint(st, "epoch"), jint(st, "lsn"));
    if (json_object_get(st, "committed_lsn"))
        buf_printf(b, "(committed <b>%lld</b>) ", jint(st, "committed_lsn"));
    buf_printf(b, "&middot; up %s &middot; store ", human_duration(up, sizeof up, jreal(st, "uptime_s")));
    esc(b, jstr(st, "store"));
    if (json_object_get(st, "store_bytes"))
        buf_printf(b, " (%s on disk)", human_bytes(sz, sizeof sz, (double)jint(st, "store_bytes")));
    json_t *fs = json_object_get(st, "fdatasync_us");
    if (fs) {
        buf_append_str(b, " &middot; fdatasync <b id=\"fdatasync\">");
        latency(b, fs);
        buf_printf(b, "</b> (%lld)", jint(fs, "count"));
    }
    buf_append_str(b, "</p>\n");
}

/* ------------------------------------------------------------ charts */

struct series {
    size_t n;
    int64_t *end, *len;
    uint32_t *in, *out;
};

static void series_load(struct series *s, const char *dest)
{
    size_t max = rates_slots();
    s->end = malloc((max + 1) * sizeof *s->end);
    s->len = malloc((max + 1) * sizeof *s->len);
    s->in = malloc((max + 1) * sizeof *s->in);
    s->out = malloc((max + 1) * sizeof *s->out);
    if (!s->end || !s->len || !s->in || !s->out)
        abort();
    s->n = rates_series(dest, s->end, s->len, s->in, s->out, max);
}

static void series_free(struct series *s)
{
    free(s->end);
    free(s->len);
    free(s->in);
    free(s->out);
}

static double rate_at(const struct series *s, size_t i, bool in)
{
    return (double)(in ? s->in[i] : s->out[i]) * 1000.0 / (double)(s->len[i] > 0 ? s->len[i] : 1);
}

/* The smallest 1, 2 or 5 times a power of ten at or above v. */
static double nice_ceiling(double v)
{
    if (v <= 1)
        return 1;
    double p = pow(10, floor(log10(v)));
    for (int k = 0; k < 3; k++) {
        double c = p * (k == 0 ? 1 : k == 1 ? 2 : 5);
        if (c >= v)
            return c;
    }
    return p * 10;
}

static void polyline(struct buf *b, const struct series *s, bool in, int64_t t0, double window, double x0,
                     double w, double y0, double h, double ymax, const char *cls, double width)
{
    buf_printf(b, "<polyline class=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" "
                  "stroke-linejoin=\"round\" points=\"",
               cls, in ? COLOR_IN : COLOR_OUT, width);
    for (size_t i = 0; i < s->n; i++) {
        double x = x0 + w * (double)(s->end[i] - t0) / window;
        double y = y0 + h - h * rate_at(s, i, in) / ymax;
        buf_printf(b, "%s%.1f,%.1f", i ? " " : "", x < x0 ? x0 : x, y);
    }
    buf_append_str(b, "\"/>");
}

/* The time a chart spans: the samples there are (ten intervals at
 * least), up to the whole window. */
static double span_ms(const struct series *s, int64_t now)
{
    double least = 10 * rates_interval() * 1000;
    double span = s->n ? (double)(now - (s->end[0] - s->len[0])) : RATES_WINDOW_MS;
    return span < least ? least : span > RATES_WINDOW_MS ? RATES_WINDOW_MS : span;
}

static const char *ago(char *out, size_t n, double ms)
{
    if (ms < 1000)
        snprintf(out, n, "now");
    else if (ms < 120000)
        snprintf(out, n, "-%.0f s", ms / 1000);
    else
        snprintf(out, n, "-%.0f min", ms / 60000);
    return out;
}

/* Messages in and out per second, as an SVG line chart over the last 15
 * minutes (or since the node started, when that is less). */
static void chart(struct buf *b, const char *id, const char *dest)
{
    struct series s;
    series_load(&s, dest);
    const double W = 760, H = 210, L = 56, R = 12, T = 12, B = 26;
    double pw = W - L - R, ph = H - T - B;
    int64_t now = server_now_ms();
    double window = span_ms(&s, now);
    int64_t t0 = now - (int64_t)window;
    double ymax = 0;
    for (size_t i = 0; i < s.n; i++) {
        ymax = fmax(ymax, rate_at(&s, i, true));
        ymax = fmax(ymax, rate_at(&s, i, false));
    }
    ymax = nice_ceiling(ymax);
    buf_printf(b, "<figure class=\"chart\"><svg id=\"%s\" class=\"chart\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" "
                  "height=\"%.0f\" role=\"img\" data-samples=\"%zu\" xmlns=\"http://www.w3.org/2000/svg\">"
                  "<title>Messages per second</title>",
               id, W, H, W, H, s.n);
    buf_printf(b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"#fff\" stroke=\"#ccc\"/>", L, T,
               pw, ph);
    char t[32];
    for (int k = 0; k <= 4; k++) {
        double y = T + ph - ph * k / 4.0;
        buf_printf(b, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>", L, L + pw, y, y);
        buf_printf(b, "<text x=\"%.0f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\" fill=\"#555\">%.3g</text>",
                   L - 6, y + 4, ymax * k / 4.0);
    }
    for (int k = 0; k <= 3; k++) {
        double x = L + pw * k / 3.0;
        buf_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#e4e4e4\"/>", x, x, T, T + ph);
        buf_printf(b, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"middle\" fill=\"#555\">%s</text>",
                   x, H - 8, ago(t, sizeof t, window * (3 - k) / 3.0));
    }
    if (s.n >= 2) {
        polyline(b, &s, false, t0, window, L, pw, T, ph, ymax, "rate-out", 2);
        polyline(b, &s, true, t0, window, L, pw, T, ph, ymax, "rate-in", 2);
    } else {
        buf_printf(b, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"13\" text-anchor=\"middle\" fill=\"#777\">"
                      "collecting: one sample every %.0f s</text>",
                   L + pw / 2, T + ph / 2, rates_interval());
    }
    buf_append_str(b, "</svg>");
    double rin, rout;
    rates_now(dest, &rin, &rout);
    char a[32], c[32];
    buf_printf(b, "<figcaption><span class=\"key in\">&#9644;</span> in <b class=\"rate-in-now\">%s</b>/s &nbsp; "
                  "<span class=\"key out\">&#9644;</span> out <b class=\"rate-out-now\">%s</b>/s "
                  "<span class=\"meta\">(counted per %.0f s, kept 15 minutes)</span></figcaption></figure>\n",
               human_rate(a, sizeof a, rin), human_rate(c, sizeof c, rout), rates_interval());
    series_free(&s);
}

/* A destination's rates in a table cell: 15 minutes in 120 x 22 pixels. */
static void sparkline(struct buf *b, const char *dest)
{
    struct series s;
    series_load(&s, dest);
    if (s.n < 2) {
        buf_append_str(b, "<span class=\"idle\">idle</span>");
        series_free(&s);
        return;
    }
    double ymax = 0;
    for (size_t i = 0; i < s.n; i++)
        ymax = fmax(ymax, fmax(rate_at(&s, i, true), rate_at(&s, i, false)));
    ymax = nice_ceiling(ymax);
    buf_append_str(b, "<svg class=\"spark\" viewBox=\"0 0 120 22\" width=\"120\" height=\"22\" "
                      "xmlns=\"http://www.w3.org/2000/svg\">");
    int64_t now = server_now_ms();
    double window = span_ms(&s, now);
    polyline(b, &s, false, now - (int64_t)window, window, 0, 120, 2, 18, ymax, "rate-out", 2);
    polyline(b, &s, true, now - (int64_t)window, window, 0, 120, 2, 18, ymax, "rate-in", 2);
    buf_append_str(b, "</svg>");
    series_free(&s);
}

/* ------------------------------------------------------------ pages of rows */

struct view {
    char filter[1024];
    size_t qp, tp, cp;  /* pages (from 1) of queues, topics, connections */
};

static void view_url(struct buf *b, const struct view *v, char which, size_t page)
{
    buf_append_str(b, "/?");
    if (v->filter[0]) {
        buf_append_str(b, "filter=");
        url_enc(b, v->filter);
        buf_append_str(b, "&amp;");
    }
    buf_printf(b, "qp=%zu&amp;tp=%zu&amp;cp=%zu", which == 'q' ? page : v->qp, which == 't' ? page : v->tp,
               which == 'c' ? page : v->cp);
}

/* "page 2 of 40 (1,985 match)" with links to the pages around it. */
static void pager(struct buf *b, const struct view *v, char which, size_t page, size_t matching, const char *what)
{
    size_t pages = matching ? (matching + PAGE_ROWS - 1) / PAGE_ROWS : 1;
    if (pages <= 1)
        return;
    buf_printf(b, "<nav class=\"pager\" id=\"pager-%c\">", which);
    if (page > 1) {
        buf_append_str(b, "<a rel=\"prev\" href=\"");
        view_url(b, v, which, page - 1);
        buf_append_str(b, "\">&laquo; previous</a> ");
    }
    buf_printf(b, "page %zu of %zu (%zu %s)", page, pages, matching, what);
    if (page < pages) {
        buf_append_str(b, " <a rel=\"next\" href=\"");
        view_url(b, v, which, page + 1);
        buf_append_str(b, "\">next &raquo;</a>");
    }
    buf_append_str(b, "</nav>\n");
}

static void dest_link(struct buf *b, const char *name)
{
    buf_append_str(b, "<a href=\"/destination?name=");
    url_enc(b, name);
    buf_append_str(b, "\">");
    esc(b, name);
    buf_append_str(b, "</a>");
}

static void queues_table(struct buf *b, const struct view *v)
{
    struct dest *rows[PAGE_ROWS];
    size_t matching, total;
    size_t n = console_dests(true, v->filter, (v->qp - 1) * PAGE_ROWS, PAGE_ROWS, rows, &matching, &total);
    buf_printf(b, "<h2>Queues <span class=\"meta\" id=\"queues-count\">(%zu", total);
    if (v->filter[0])
        buf_printf(b, ", %zu matching", matching);
    buf_append_str(b, ")</span></h2>");
    if (!n) {
        buf_append_str(b, total ? "<p class=\"empty\">no queue matches</p>\n" : "<p class=\"empty\">no queues</p>\n");
        return;
    }
    buf_append_str(b, "<table id=\"queues\"><tr><th>queue</th><th>pending</th><th>in flight</th><th>consumers</th>"
                      "<th>enqueued</th><th>dequeued</th><th>redelivered</th><th>expired</th>"
                      "<th>dead-lettered</th><th>memory</th><th>in/s</th><th>out/s</th><th>last 15 min</th>"
                      "<th></th></tr>\n");
    for (size_t i = 0; i < n; i++) {
        struct dest *d = rows[i];
        char r1[32], r2[32];
        double rin, rout;
        rates_now(d->name, &rin, &rout);
        buf_append_str(b, "<tr><td class=\"name\">");
        dest_link(b, d->name);
        buf_append_str(b, "</td>");
        td_int(b, (long long)d->q.npending, dest_is_full(d) ? "warn pending" : "pending");
        td_int(b, (long long)d->q.ninflight, NULL);
        td_int(b, (long long)d->q.nconsumers, "consumers");
        td_int(b, (long long)d->st.enqueued, "enqueued");
        td_int(b, (long long)d->st.dequeued, "dequeued");
        td_int(b, (long long)d->st.redelivered, NULL);
        td_int(b, (long long)d->st.expired, NULL);
        td_int(b, (long long)d->st.dead_lettered, NULL);
        td_bytes(b, (double)d->mem, "memory");
        buf_printf(b, "<td class=\"num rate-in-now\">%s</td><td class=\"num rate-out-now\">%s</td><td>",
                   human_rate(r1, sizeof r1, rin), human_rate(r2, sizeof r2, rout));
        sparkline(b, d->name);
        buf_append_str(b, "</td><td class=\"acts\"><button data-act=\"purge\" data-dest=\"");
        esc(b, d->name);
        buf_append_str(b, "\">purge</button> <button data-act=\"delete\" data-dest=\"");
        esc(b, d->name);
        buf_append_str(b, "\">delete</button></td></tr>\n");
    }
    buf_append_str(b, "</table>\n");
    pager(b, v, 'q', v->qp, matching, "queues");
}

static void topics_table(struct buf *b, const struct view *v)
{
    struct dest *rows[PAGE_ROWS];
    size_t matching, total;
    size_t n = console_dests(false, v->filter, (v->tp - 1) * PAGE_ROWS, PAGE_ROWS, rows, &matching, &total);
    buf_printf(b, "<h2>Topics <span class=\"meta\" id=\"topics-count\">(%zu", total);
    if (v->filter[0])
        buf_printf(b, ", %zu matching", matching);
    buf_append_str(b, ")</span></h2>");
    if (!n) {
        buf_append_str(b, total ? "<p class=\"empty\">no topic matches</p>\n" : "<p class=\"empty\">no topics</p>\n");
        return;
    }
    buf_append_str(b, "<table id=\"topics\"><tr><th>topic</th><th>subscribers</th><th>durable subscriptions</th>"
                      "<th>enqueued</th><th>dispatched</th><th>dropped</th><th>memory</th><th>in/s</th><th>out/s</th>"
                      "<th>last 15 min</th><th></th></tr>\n");
    for (size_t i = 0; i < n; i++) {
        struct dest *d = rows[i];
        json_t *t = console_dest_json(d);
        char r1[32], r2[32];
        double rin, rout;
        rates_now(d->name, &rin, &rout);
        buf_append_str(b, "<tr><td class=\"name\">");
        dest_link(b, d->name);
        buf_append_str(b, "</td>");
        td_int(b, (long long)d->nsubscribers, "subscribers");
        buf_append_str(b, "<td>");
        size_t k;
        json_t *du;
        json_array_foreach(json_object_get(t, "durable_subscriptions"), k, du) {
            buf_append_str(b, k ? "<br>" : "");
            esc(b, jstr(du, "client_id"));
            buf_putc(b, '/');
            esc(b, jstr(du, "name"));
            buf_printf(b, " (%lld pending, %s)", jint(du, "pending"),
                       json_is_true(json_object_get(du, "active")) ? "active" : "inactive");
        }
        buf_append_str(b, "</td>");
        td_int(b, (long long)d->st.enqueued, "enqueued");
        td_int(b, (long long)d->st.dispatched, NULL);
        td_int(b, (long long)d->st.dropped, d->st.dropped ? "warn dropped" : "dropped");
        td_bytes(b, (double)d->mem, "memory");
        buf_printf(b, "<td class=\"num rate-in-now\">%s</td><td class=\"num rate-out-now\">%s</td><td>",
                   human_rate(r1, sizeof r1, rin), human_rate(r2, sizeof r2, rout));
        sparkline(b, d->name);
        buf_append_str(b, "</td><td class=\"acts\"><button data-act=\"delete\" data-dest=\"");
        esc(b, d->name);
        buf_append_str(b, "\">delete</button></td></tr>\n");
        json_decref(t);
    }
    buf_append_str(b, "</table>\n");
    pager(b, v, 't', v->tp, matching, "topics");
}

/* The scheduler: how many wait, the next due, the first jobs (each with
 * a cancel button); all of them through /api/scheduler. */
static void scheduler_section(struct buf *b)
{
    int rc;
    json_t *sc = console_jobs_json(NULL, 20, &rc);
    buf_printf(b, "<h2>Scheduled messages</h2><p class=\"meta\" id=\"scheduler\"><b id=\"scheduled\">%lld</b> "
                  "scheduled (%lld in memory, %lld non-persistent) &middot; next due <b id=\"next-due\">",
               jint(sc, "scheduled"), jint(sc, "in_memory"), jint(sc, "non_persistent"));
    esc(b, json_is_null(json_object_get(sc, "next_due")) ? "-" : jstr(sc, "next_due"));
    buf_printf(b, "</b> &middot; %lld fired &middot; %lld cancelled", jint(sc, "fired"), jint(sc, "cancelled"));
    if (json_is_true(json_object_get(sc, "waits_for_room")))
        buf_append_str(b, " &middot; <b class=\"warn\" id=\"sched-held\">firing waits: a destination is full</b>");
    buf_append_str(b, " &middot; all of them: <a href=\"/api/scheduler\">/api/scheduler</a></p>\n");
    json_t *jobs = json_object_get(sc, "jobs");
    if (json_array_size(jobs)) {
        buf_append_str(b, "<table id=\"jobs\"><tr><th>job id</th><th>due</th><th>destination</th><th>persistent</th>"
                          "<th>period</th><th>repeat</th><th>cron</th><th></th></tr>\n");
        size_t i;
        json_t *o;
        json_array_foreach(jobs, i, o) {
            buf_append_str(b, "<tr><td class=\"name\">");
            esc(b, jstr(o, "id"));
            buf_append_str(b, "</td><td>");
            esc(b, jstr(o, "due"));
            buf_append_str(b, "</td><td>");
            esc(b, jstr(o, "destination"));
            buf_printf(b, "</td><td>%s</td><td>", json_is_true(json_object_get(o, "persistent")) ? "yes" : "no");
            esc(b, jstr(o, "period"));
            buf_append_str(b, "</td><td>");
            esc(b, jstr(o, "repeat"));
            buf_append_str(b, "</td><td>");
            esc(b, jstr(o, "cron"));
            buf_append_str(b, "</td><td class=\"acts\"><button data-act=\"cancel\" data-id=\"");
            esc(b, jstr(o, "id"));
            buf_append_str(b, "\">cancel</button></td></tr>\n");
        }
        buf_append_str(b, "</table>\n");
    }
    json_decref(sc);
}

static void connections_table(struct buf *b, const struct view *v)
{
    struct conn *rows[PAGE_ROWS];
    size_t matching;
    size_t n = console_conns(v->filter, (v->cp - 1) * PAGE_ROWS, PAGE_ROWS, rows, &matching);
    buf_printf(b, "<h2>Connections (%u)", srv.nconns);
    if (v->filter[0])
        buf_printf(b, " <span class=\"meta\">%zu matching</span>", matching);
    buf_append_str(b, "</h2>");
    if (!n)
        return;
    buf_append_str(b, "<table id=\"connections\"><tr><th>id</th><th>peer</th><th>transport</th><th>user</th>"
                      "<th>STOMP</th><th>client-id</th>"
                      "<th>subscriptions</th><th>frames in</th><th>frames out</th><th>output waiting</th>"
                      "<th></th></tr>\n");
    for (size_t i = 0; i < n; i++) {
        json_t *c = console_conn_json(rows[i]);
        buf_printf(b, "<tr><td class=\"num\">%lld</td><td>", jint(c, "id"));
        esc(b, jstr(c, "peer"));
        buf_append_str(b, "</td><td class=\"transport\">");
        esc(b, jstr(c, "transport"));
        buf_append_str(b, "</td><td class=\"user\">");
        esc(b, jstr(c, "user"));
        buf_append_str(b, "</td><td>");
        esc(b, jstr(c, "version"));
        buf_append_str(b, "</td><td>");
        esc(b, jstr(c, "client_id"));
        buf_append_str(b, "</td><td>");
        size_t k;
        json_t *s;
        json_array_foreach(json_object_get(c, "subscriptions"), k, s) {
            buf_append_str(b, k ? "<br>" : "");
            esc(b, jstr(s, "destination"));
            buf_printf(b, " (%s, %lld in flight)", jstr(s, "ack"), jint(s, "inflight"));
        }
        buf_append_str(b, "</td>");
        td_int(b, jint(c, "frames_in"), NULL);
        td_int(b, jint(c, "frames_out"), NULL);
        td_bytes(b, (double)jint(c, "pending_output"), NULL);
        buf_printf(b, "<td class=\"acts\"><button data-act=\"close\" data-id=\"%lld\">close</button></td></tr>\n",
                   jint(c, "id"));
        json_decref(c);
    }
    buf_append_str(b, "</table>\n");
    pager(b, v, 'c', v->cp, matching, "connections");
}

static void send_form(struct buf *b, const char *dest, bool open)
{
    buf_printf(b, "<details id=\"send\"%s><summary>Send a message</summary>"
                  "<form id=\"send-form\" class=\"box\"><label>destination <input name=\"destination\" required "
                  "size=\"40\" value=\"",
               open ? " open" : "");
    esc(b, dest ? dest : "");
    buf_append_str(b, "\"></label> <label>priority <input name=\"priority\" type=\"number\" min=\"0\" max=\"9\" "
                      "size=\"2\"></label> <label><input name=\"persistent\" type=\"checkbox\"> persistent</label>"
                      "<br><label>headers, one <i>name: value</i> a line<br><textarea name=\"headers\" rows=\"3\" "
                      "cols=\"60\"></textarea></label><br><label>body<br><textarea name=\"body\" rows=\"5\" "
                      "cols=\"60\"></textarea></label><br><button type=\"submit\">send</button> "
                      "<output id=\"send-status\" class=\"status\"></output></form></details>\n");
}

/* ------------------------------------------------------------ the cluster */

static void members_table(struct buf *b, json_t *cl, bool links)
{
    json_t *members = json_object_get(cl, "members");
    if (!json_array_size(members))
        return;
    buf_append_str(b, "<h2>Cluster members</h2><table id=\"members\"><tr><th>node</th><th>role</th>"
                      "<th>STOMP</th><th>console</th><th>epoch</th><th>lsn</th><th>lag</th><th>weight</th></tr>\n");
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m) {
        buf_append_str(b, "<tr><td>");
        esc(b, jstr(m, "id"));
        if (json_is_true(json_object_get(m, "self")))
            buf_append_str(b, " (this node)");
        buf_append_str(b, "</td><td>");
        esc(b, jstr(m, "role"));
        if (json_is_true(json_object_get(m, "refused")))
            buf_append_str(b, " <span class=\"warn\">(its store.security_token refused: out of elections)</span>");
        buf_append_str(b, "</td><td>");
        esc(b, jstr(m, "stomp"));
        buf_append_str(b, "</td><td>");
        if (links && *jstr(m, "http")) {
            buf_append_str(b, "<a href=\"http://");
            esc(b, jstr(m, "http"));
            buf_append_str(b, "/\">");
            esc(b, jstr(m, "http"));
            buf_append_str(b, "</a>");
        } else {
            esc(b, jstr(m, "http"));
        }
        buf_append_str(b, "</td>");
        td_int(b, jint(m, "epoch"), NULL);
        td_int(b, jint(m, "lsn"), NULL);
        td_int(b, jint(m, "lag"), jint(m, "lag") > 1000 ? "warn" : NULL);
        td_int(b, jint(m, "weight"), NULL);
        buf_append_str(b, "</tr>\n");
    }
    buf_append_str(b, "</table>\n");
}

static void replicas_tables(struct buf *b, json_t *cl)
{
    json_t *replicas = json_object_get(cl, "replicas");
    if (!persist_replicated() || node_role() != NODE_MASTER)
        return;
    buf_printf(b, "<h2>Replicas (%zu of %lld connected)</h2>", json_array_size(replicas),
               jint(cl, "replicas_expected"));
    buf_append_str(b, "<table id=\"replicas\"><tr><th>node</th><th>address</th><th>received</th><th>durable</th>"
                      "<th>lag</th><th>state</th><th>last heard</th><th>unacknowledged</th>"
                      "<th>queued</th><th>acknowledged in</th><th>on disk in</th></tr>\n");
    size_t i;
    json_t *r;
    char t1[32], t2[32];
    json_array_foreach(replicas, i, r) {
        buf_append_str(b, "<tr><td>");
        esc(b, jstr(r, "id"));
        buf_append_str(b, "</td><td>");
        esc(b, jstr(r, "peer"));
        buf_append_str(b, "</td>");
        td_int(b, jint(r, "received_lsn"), NULL);
        td_int(b, jint(r, "durable_lsn"), NULL);
        td_int(b, jint(r, "lag"), jint(r, "lag") > 1000 ? "warn" : NULL);
        const char *paused = jstr(r, "paused");
        buf_printf(b, "<td%s>%s", *paused ? " class=\"warn\"" : "",
                   json_is_true(json_object_get(r, "snapshotting")) ? "snapshot" : "streaming");
        if (*paused) {
            buf_printf(b, ", paused %.1f s: ", jreal(r, "paused_s"));
            esc(b, paused);
        }
        buf_printf(b, "</td><td class=\"num\">%.1f s ago</td>", jreal(r, "last_heard_s"));
        buf_printf(b, "<td class=\"num\">%s of %s</td>", human_bytes(t1, sizeof t1, (double)jint(r, "unacked_bytes")),
                   human_bytes(t2, sizeof t2, (double)jint(r, "window_bytes")));
        td_bytes(b, (double)jint(r, "queued_bytes"), NULL);
        buf_append_str(b, "<td class=\"ack\">");
        latency(b, json_object_get(r, "ack_us"));
        buf_append_str(b, "</td><td class=\"durable-ack\">");
        latency(b, json_object_get(r, "durable_ack_us"));
        buf_append_str(b, "</td></tr>\n");
    }
    buf_append_str(b, "</table>\n");
    json_t *dropped = json_object_get(cl, "last_dropped");
    if (json_array_size(dropped)) {
        buf_append_str(b, "<h2>Replicas dropped lately</h2><table id=\"dropped\"><tr><th>node</th>"
                          "<th>address</th><th>when</th><th>at lsn</th><th>why</th></tr>\n");
        json_array_foreach(dropped, i, r) {
            buf_append_str(b, "<tr><td>");
            esc(b, jstr(r, "id"));
            buf_append_str(b, "</td><td>");
            esc(b, jstr(r, "peer"));
            buf_printf(b, "</td><td class=\"num\">%.0f s ago</td>", jreal(r, "ago_s"));
            td_int(b, jint(r, "received_lsn"), NULL);
            buf_append_str(b, "<td>");
            esc(b, jstr(r, "reason"));
            buf_append_str(b, "</td></tr>\n");
        }
        buf_append_str(b, "</table>\n");
    }
}

/* ------------------------------------------------------------ the broker's page */

static int view_params(struct http_req *h, struct view *v)
{
    if (console_param_str(h, "filter", v->filter, sizeof v->filter) != 0 ||
        console_param_size(h, "qp", 1, 1, SIZE_MAX / PAGE_ROWS, &v->qp) != 0 ||
        console_param_size(h, "tp", 1, 1, SIZE_MAX / PAGE_ROWS, &v->tp) != 0 ||
        console_param_size(h, "cp", 1, 1, SIZE_MAX / PAGE_ROWS, &v->cp) != 0)
        return -1;
    return 0;
}

void html_main(struct http_req *h)
{
    struct view v;
    if (view_params(h, &v) != 0)
        return;
    json_t *st = console_status_json(), *ct = console_counters_json(), *cl = console_cluster_json();
    struct buf b = {0};
    char title[300], t1[32], t2[32];
    snprintf(title, sizeof title, "stompd %s (%s)", config.broker_name, node_role_name(node_role()));
    page_begin(&b, title, (long long)config.http_refresh);
    heading(&b, NULL);
    meta_line(&b, st);
    const char *waiting = jstr(st, "waiting");
    if (*waiting) {
        buf_append_str(&b, "<p class=\"warnbox\" id=\"waiting\">");
        esc(&b, waiting);
        buf_append_str(&b, "</p>\n");
    }
    buf_printf(&b, "<p class=\"meta\" id=\"counters\">%lld connections", jint(ct, "connections"));
    if (jint(ct, "lingering_sockets") > 0)
        buf_printf(&b, " (and %lld closed, draining what their peer still sends)", jint(ct, "lingering_sockets"));
    buf_printf(&b, " &middot; <span id=\"consumers\">%lld consumers (limit %lld)</span>", jint(ct, "consumers"),
               jint(ct, "max_consumers"));
    buf_printf(&b, " &middot; %lld messages in &middot; "
                   "%lld messages out &middot; %lld protocol errors &middot; %lld expired &middot; "
                   "%lld dead-lettered &middot; %lld duplicates dropped &middot; %s of messages held (limit %s)",
               jint(ct, "messages_in"), jint(ct, "messages_out"), jint(ct, "protocol_errors"),
               jint(ct, "expired"), jint(ct, "dead_lettered"), jint(ct, "duplicates"),
               human_bytes(t1, sizeof t1, (double)jint(ct, "memory_bytes")),
               human_bytes(t2, sizeof t2, (double)jint(ct, "memory_limit")));
    if (jint(ct, "closed_temp_dropped") > 0)
        buf_printf(&b, " &middot; %lld sent to closed temporary destinations", jint(ct, "closed_temp_dropped"));
    if (json_is_true(json_object_get(ct, "store_full")))
        buf_append_str(&b, " &middot; <b class=\"warn\">store full: persistent producers wait</b>");
    if (jint(ct, "wildcard_matches_refused") > 0)
        buf_printf(&b,
                   " &middot; <b class=\"warn\" id=\"wildcard-refused\">%lld new queues a wildcard subscription "
                   "matched were not taken from (stomp.max_consumers, broker.max_consumers)</b>",
                   jint(ct, "wildcard_matches_refused"));
    buf_append_str(&b, "</p>\n<h2>Messages per second</h2>\n");
    chart(&b, "chart-node", NULL);
    members_table(&b, cl, true);
    replicas_tables(&b, cl);
    buf_append_str(&b, "<form id=\"filter\" method=\"get\" action=\"/\" class=\"filter\"><label>show names "
                       "containing <input name=\"filter\" size=\"30\" value=\"");
    esc(&b, v.filter);
    buf_append_str(&b, "\"></label> <button type=\"submit\">filter</button>");
    if (v.filter[0])
        buf_append_str(&b, " <a href=\"/\">show all</a>");
    buf_append_str(&b, "</form>\n");
    queues_table(&b, &v);
    topics_table(&b, &v);
    scheduler_section(&b);
    connections_table(&b, &v);
    send_form(&b, NULL, false);
    json_decref(st);
    json_decref(ct);
    json_decref(cl);
    page_end(h, &b, false);
}

/* ------------------------------------------------------------ a follower's page */

void html_follower(struct http_req *h)
{
    json_t *st = console_status_json(), *cl = console_cluster_json();
    struct buf b = {0};
    char title[300];
    const char *role = node_role_name(node_role());
    snprintf(title, sizeof title, "stompd %s (%s)", config.broker_name, role);
    page_begin(&b, title, (long long)config.http_refresh);
    heading(&b, NULL);
    meta_line(&b, st);
    json_t *m = json_object_get(st, "master");
    const char *mh = console_master_http();
    buf_printf(&b, "<p class=\"note\" id=\"follower-note\">This node is <b>%s</b>: it does not serve STOMP "
                   "clients; its store follows the master's journal, and it can take over if the master fails.",
               role);
    if (mh) {
        buf_append_str(&b, " Queues, topics and connections are on <a id=\"master-console\" href=\"http://");
        esc(&b, mh);
        buf_append_str(&b, "/\">the master's console</a>.");
    }
    buf_append_str(&b, "</p>\n<table id=\"follower\">");
    buf_append_str(&b, "<tr><th>master</th><td id=\"master-id\">");
    if (m && *jstr(m, "id"))
        esc(&b, jstr(m, "id"));
    else
        buf_append_str(&b, "<i>none known right now</i>");
    buf_append_str(&b, "</td></tr><tr><th>master's console</th><td>");
    if (mh) {
        buf_append_str(&b, "<a id=\"master-link\" href=\"http://");
        esc(&b, mh);
        buf_append_str(&b, "/\">http://");
        esc(&b, mh);
        buf_append_str(&b, "/</a>");
    } else {
        buf_append_str(&b, "<i>unknown</i>");
    }
    buf_append_str(&b, "</td></tr><tr><th>master's STOMP</th><td>");
    if (m && *jstr(m, "stomp"))
        esc(&b, jstr(m, "stomp"));
    else
        buf_append_str(&b, "<i>unknown</i>");
    buf_append_str(&b, "</td></tr><tr><th>replicating from</th><td>");
    esc(&b, m ? jstr(m, "replication") : "");
    buf_printf(&b, "</td></tr><tr><th>connected to it</th><td id=\"follower-connected\">%s</td></tr>",
               m && json_is_true(json_object_get(m, "connected")) ? "yes" : "no");
    int64_t lag = console_follower_lag();
    buf_append_str(&b, "<tr><th>replication lag</th><td id=\"lag\"");
    if (lag < 0)
        buf_append_str(&b, "><i>no master heard from yet</i>");
    else
        buf_printf(&b, " class=\"%s\"><b id=\"lag-entries\">%lld</b> journal entries behind (master at lsn %lld, "
                       "durable here %lld)",
                   lag > 1000 ? "warn" : "ok", (long long)lag, jint(st, "master_lsn"), jint(st, "durable_lsn"));
    buf_printf(&b, "</td></tr><tr><th>ZooKeeper</th><td id=\"zookeeper\">%s</td></tr></table>\n",
               cluster_session_state());
    members_table(&b, cl, true);
    json_decref(st);
    json_decref(cl);
    page_end(h, &b, true);
}

/* ------------------------------------------------------------ a destination's page */

static void fmt_time(char *out, size_t n, int64_t ms)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t k = strftime(out, n, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(out + k, n - k, ".%03dZ", (int)(ms % 1000));
}

static void messages_table(struct buf *b, struct dest *d, const char *after_s, const struct qkey *after,
                           size_t limit)
{
    json_t *page = console_browse_json(d, after, limit);
    json_t *msgs = json_object_get(page, "messages");
    buf_printf(b, "<h2>Messages <span class=\"meta\">(%lld pending; ", jint(page, "pending"));
    if (after)
        buf_printf(b, "after %s, ", after_s);
    buf_printf(b, "up to %zu shown, in the order consumers get them)</span></h2>\n", limit);
    if (!json_array_size(msgs)) {
        buf_append_str(b, "<p class=\"empty\" id=\"no-messages\">no pending messages here</p>\n");
        json_decref(page);
        return;
    }
    bool dlq = dlq_is_dlq(d);
    buf_append_str(b, "<form id=\"move-form\" class=\"box\" data-dest=\"");
    esc(b, d->name);
    buf_append_str(b, "\">");
    if (dlq)
        buf_append_str(b, "<button type=\"submit\" name=\"action\" value=\"retry\">retry selected</button> "
                          "(back to their original destination) or ");
    buf_append_str(b, "<button type=\"submit\" name=\"action\" value=\"move\">move selected</button> to queue "
                      "<input name=\"to\" size=\"30\" placeholder=\"/queue/...\"> "
                      "<output id=\"move-status\" class=\"status\"></output>\n");
    buf_append_str(b, "<table id=\"messages\"><tr><th><input type=\"checkbox\" id=\"select-all\" "
                      "title=\"select all\"></th><th>key</th><th>message-id</th><th>priority</th><th>timestamp</th>"
                      "<th>expires</th><th>persistent</th><th>redelivered</th><th>held</th><th>headers</th>"
                      "<th>body</th></tr>\n");
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        char t[48], sz[32];
        buf_append_str(b, "<tr class=\"msg\"><td><input type=\"checkbox\" name=\"msg\" value=\"");
        esc(b, jstr(m, "key"));
        buf_append_str(b, "\"></td><td class=\"key\">");
        esc(b, jstr(m, "key"));
        buf_append_str(b, "</td><td class=\"mid\">");
        esc_n(b, jstr(m, "message_id"), strlen(jstr(m, "message_id")));
        fmt_time(t, sizeof t, jint(m, "timestamp"));
        buf_printf(b, "</td><td class=\"num\">%lld</td><td>%s</td><td>", jint(m, "priority"), t);
        if (jint(m, "expires")) {
            fmt_time(t, sizeof t, jint(m, "expires"));
            buf_append_str(b, t);
        } else {
            buf_append_str(b, "never");
        }
        buf_printf(b, "</td><td>%s</td><td class=\"num\">%lld</td><td>%s</td><td class=\"headers\">",
                   json_is_true(json_object_get(m, "persistent")) ? "yes" : "no", jint(m, "redeliveries"),
                   json_is_true(json_object_get(m, "in_memory")) ? "memory" : "store");
        size_t k;
        json_t *hd;
        json_array_foreach(json_object_get(m, "headers"), k, hd) {
            const char *hn = json_string_value(json_array_get(hd, 0)), *hv = json_string_value(json_array_get(hd, 1));
            buf_append_str(b, "<div class=\"hdr\"><span class=\"hn\">");
            esc_n(b, hn, strlen(hn));
            buf_append_str(b, "</span>: <span class=\"hv\">");
            esc_n(b, hv, strlen(hv));
            buf_append_str(b, json_is_true(json_array_get(hd, 2)) ? "</span>&hellip;</div>" : "</span></div>");
        }
        const char *body = jstr(m, "body_preview");
        buf_printf(b, "</td><td class=\"body\"><span class=\"size\">%s</span><pre>",
                   human_bytes(sz, sizeof sz, (double)jint(m, "body_size")));
        esc_n(b, body, strlen(body));
        buf_append_str(b, json_is_true(json_object_get(m, "body_truncated")) ? "</pre>&hellip; (cut)</td></tr>\n"
                                                                              : "</pre></td></tr>\n");
    }
    buf_append_str(b, "</table></form>\n<nav class=\"pager\" id=\"pager-m\">");
    if (after) {
        buf_append_str(b, "<a href=\"/destination?name=");
        url_enc(b, d->name);
        buf_printf(b, "&amp;limit=%zu\">&laquo; first messages</a> ", limit);
    }
    const char *next = jstr(page, "next");
    if (*next) {
        buf_append_str(b, "<a rel=\"next\" id=\"next-messages\" href=\"/destination?name=");
        url_enc(b, d->name);
        buf_printf(b, "&amp;limit=%zu&amp;after=", limit);
        url_enc(b, next);
        buf_printf(b, "\">next %zu &raquo;</a>", limit);
    }
    buf_append_str(b, "</nav>\n");
    json_decref(page);
}

void html_destination(struct http_req *h)
{
    char after_s[40];
    size_t limit;
    struct qkey after;
    if (console_param_str(h, "after", after_s, sizeof after_s) != 0 ||
        console_param_size(h, "limit", 20 < config.http_browse_limit ? 20 : (size_t)config.http_browse_limit, 1,
                           (size_t)config.http_browse_limit, &limit) != 0)
        return;
    if (after_s[0] && console_key_parse(after_s, &after) != 0) {
        http_respond_error(h, 400, "parameter \"after\" must be a message key (priority:seq)", NULL);
        return;
    }
    struct dest *d = console_param_dest(h, "name");
    if (!d)
        return;
    json_t *j = console_dest_json(d);
    json_t *s = json_object_get(j, "stats");
    struct buf b = {0};
    char title[1300];
    snprintf(title, sizeof title, "stompd %s: %s", config.broker_name, d->name);
    page_begin(&b, title, 0);
    heading(&b, d->name);
    buf_printf(&b, "<p class=\"meta\"><a href=\"/\">&laquo; overview</a> &middot; %s%s%s &middot; "
                   "<a href=\"\">reload</a></p>\n",
               dest_is_queue(d) ? "queue" : "topic", dest_is_temp(d) ? " (temporary)" : "",
               dlq_is_dlq(d) ? " (a dead-letter queue)" : "");
    buf_append_str(&b, "<table id=\"dest-stats\"><tr>");
    if (dest_is_queue(d))
        buf_append_str(&b, "<th>pending</th><th>in memory</th><th>only in the store</th><th>in flight</th>"
                           "<th>consumers</th>");
    else
        buf_append_str(&b, "<th>subscribers</th><th>durable subscriptions</th><th>dropped (read too slowly)</th>");
    buf_append_str(&b, "<th>enqueued</th><th>dequeued</th><th>dispatched</th><th>redelivered</th><th>expired</th>"
                       "<th>dead-lettered</th><th>memory</th><th>full</th></tr><tr>");
    if (dest_is_queue(d)) {
        td_int(&b, jint(j, "pending"), "pending");
        td_int(&b, jint(j, "pending_in_memory"), NULL);
        td_int(&b, jint(j, "pending_on_disk"), NULL);
        td_int(&b, jint(j, "inflight"), NULL);
        td_int(&b, jint(j, "consumers"), NULL);
    } else {
        td_int(&b, jint(j, "subscribers"), NULL);
        td_int(&b, (long long)json_array_size(json_object_get(j, "durable_subscriptions")), NULL);
        td_int(&b, jint(s, "dropped"), NULL);
    }
    td_int(&b, jint(s, "enqueued"), "enqueued");
    td_int(&b, jint(s, "dequeued"), NULL);
    td_int(&b, jint(s, "dispatched"), NULL);
    td_int(&b, jint(s, "redelivered"), NULL);
    td_int(&b, jint(s, "expired"), NULL);
    td_int(&b, jint(s, "dead_lettered"), NULL);
    td_bytes(&b, (double)jint(j, "memory_bytes"), "memory");
    bool full = json_is_true(json_object_get(j, "full"));
    buf_printf(&b, "<td class=\"%s\">%s</td></tr></table>\n", full ? "warn" : "", full ? "yes: producers wait" : "no");
    buf_append_str(&b, "<p class=\"acts\">");
    if (dest_is_queue(d)) {
        buf_append_str(&b, "<button data-act=\"purge\" data-dest=\"");
        esc(&b, d->name);
        buf_append_str(&b, "\">purge</button> ");
    }
    buf_append_str(&b, "<button data-act=\"delete\" data-back=\"1\" data-dest=\"");
    esc(&b, d->name);
    buf_append_str(&b, "\">delete</button></p>\n<h2>Messages per second</h2>\n");
    chart(&b, "chart-dest", d->name);
    /* browsing is reading the queue (auth.acl) */
    if (dest_is_queue(d) && acl_allows_dest(http_req_principal(h), d->name, ACL_READ))
        messages_table(&b, d, after_s, after_s[0] ? &after : NULL, limit);
    else if (dest_is_queue(d))
        buf_append_str(&b, "<h2>Messages</h2>\n<p class=\"empty\" id=\"no-read\">not shown: no read permission on "
                           "this queue (auth.acl)</p>\n");
    if (!dest_is_temp(d))
        send_form(&b, d->name, false);
    json_decref(j);
    page_end(h, &b, false);
}

/* ------------------------------------------------------------ stylesheet and script */

static const char CSS[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\n"
    "h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}\n"
    "a.home{color:inherit;text-decoration:none}\n"
    ".role{display:inline-block;padding:.1em .6em;border-radius:.8em;color:#fff;background:#777;font-size:.8em}\n"
    ".role.master,.role.standalone{background:#2a7d2a}.role.slave{background:#2a5d9d}\n"
    ".role.electing,.role.stepping-down{background:#a86b00}\n"
    "table{border-collapse:collapse;background:#fff;min-width:40%}\n"
    "th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#eee}\n"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}td.warn,.warn{background:#fde2c0}\n"
    ".meta{color:#555}.empty,.idle{color:#888;font-style:italic}button{font-size:.85em}\n"
    ".warnbox{background:#fde2c0;padding:.5em;border:1px solid #d9a}\n"
    ".note{background:#eef3fa;padding:.6em;border:1px solid #bcd;max-width:60em}\n"
    "figure.chart{margin:.4em 0}figcaption{font-size:.9em}\n"
    ".key.in{color:" COLOR_IN "}.key.out{color:" COLOR_OUT "}\n"
    "svg.spark{display:block}\n"
    ".pager{margin:.4em 0}.filter{margin:1em 0 .2em}.box{background:#fff;border:1px solid #ddd;padding:.6em}\n"
    "td.headers{font-size:.85em;max-width:28em;word-break:break-all}.hn{font-weight:600}\n"
    "td.body pre{margin:0;white-space:pre-wrap;word-break:break-all;max-width:36em;max-height:12em;overflow:auto}\n"
    "td.body .size{color:#777;font-size:.85em}td.mid,td.key{font-family:monospace;font-size:.85em}\n"
    ".status.ok{color:#2a7d2a}.status.bad{color:#b00}details{margin:1em 0}\n";

void html_css(struct http_req *h)
{
    http_respond(h, 200, "text/css; charset=utf-8", CSS, sizeof CSS - 1, NULL); /* (no-store, as every answer) */
}

/* Everything it shows goes through textContent; nothing becomes markup. */
static const char JS[] =
    "(function(){'use strict';\n"
    "var refresh=+document.body.dataset.refresh||0,dirty=false;\n"
    "document.addEventListener('input',function(){dirty=true;});\n"
    "function tick(){var a=document.activeElement;\n"
    " if(dirty||(a&&/^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName))||document.querySelector('details[open]')){\n"
    "  setTimeout(tick,refresh);return;}\n"
    " location.reload();}\n"
    "if(refresh>0)setTimeout(tick,refresh);\n"
    "function post(url,data){return fetch(url,{method:'POST',credentials:'same-origin',\n"
    " headers:{'Content-Type':'application/json'},body:JSON.stringify(data)}).then(function(r){\n"
    " return r.json().then(function(j){if(!r.ok){var e=new Error(j.error||('HTTP '+r.status));e.status=r.status;\n"
    "  throw e;}return j;});});}\n"
    "function say(el,text,bad){if(!el)return;el.textContent=text;el.className='status '+(bad?'bad':'ok');}\n"
    "document.querySelectorAll('button[data-act]').forEach(function(b){\n"
    " b.addEventListener('click',function(){var a=b.dataset.act;\n"
    "  if(a==='close'){if(!confirm('Close connection '+b.dataset.id+'?'))return;\n"
    "   post('/api/connections/close',{id:+b.dataset.id}).then(function(){location.reload();},\n"
    "    function(e){alert(e.message);});return;}\n"
    "  if(a==='cancel'){if(!confirm('Cancel scheduled message '+b.dataset.id+'?'))return;\n"
    "   post('/api/scheduler/cancel',{id:b.dataset.id}).then(function(){location.reload();},\n"
    "    function(e){alert(e.message);});return;}\n"
    "  var d=b.dataset.dest;if(!confirm(a+' '+d+'?'))return;\n"
    "  (function go(force){post('/api/destinations/'+a,force?{destination:d,force:true}:{destination:d}).then(\n"
    "   function(){if(b.dataset.back)location.href='/';else location.reload();},\n"
    "   function(e){if(e.status===409&&!force&&confirm(e.message+'.\\n\\nDelete it anyway?'))go(true);\n"
    "    else alert(e.message);});})(false);});});\n"
    "var send=document.getElementById('send-form');\n"
    "if(send)send.addEventListener('submit',function(ev){ev.preventDefault();\n"
    " var f=send.elements,headers={},bad=null,st=document.getElementById('send-status');\n"
    " f.headers.value.split('\\n').forEach(function(l){if(!l.trim())return;var i=l.indexOf(':');\n"
    "  if(i<1){bad=l;return;}headers[l.slice(0,i).trim()]=l.slice(i+1).trim();});\n"
    " if(bad!==null){say(st,'a header line is \"name: value\": '+bad,true);return;}\n"
    " var m={destination:f.destination.value,body:f.body.value,headers:headers,persistent:f.persistent.checked};\n"
    " if(f.priority.value!=='')m.priority=+f.priority.value;\n"
    " post('/api/send',m).then(function(j){dirty=false;\n"
    "  say(st,j.duplicate?'dropped: a duplicate':'sent'+(j.durable?' (durable)':''),false);},\n"
    "  function(e){say(st,e.message,true);});});\n"
    "var move=document.getElementById('move-form');\n"
    "if(move)move.addEventListener('submit',function(ev){ev.preventDefault();\n"
    " var st=document.getElementById('move-status'),keys=[].map.call(\n"
    "  move.querySelectorAll('input[name=msg]:checked'),function(c){return c.value;});\n"
    " if(!keys.length){say(st,'select messages first',true);return;}\n"
    " var r={destination:move.dataset.dest,messages:keys};\n"
    " if(!(ev.submitter&&ev.submitter.value==='retry')){\n"
    "  if(!move.elements.to.value){say(st,'name the queue to move them to',true);return;}r.to=move.elements.to.value;}\n"
    " post('/api/messages/move',r).then(function(j){\n"
    "  say(st,'moved '+j.moved.length+(j.failed.length?'; not moved: '+j.failed.map(function(x){\n"
    "   return (x.message||'')+' '+x.error;}).join('; '):''),j.failed.length>0);\n"
    "  setTimeout(function(){location.reload();},1500);},function(e){say(st,e.message,true);});});\n"
    "var all=document.getElementById('select-all');\n"
    "if(all)all.addEventListener('change',function(){\n"
    " document.querySelectorAll('input[name=msg]').forEach(function(c){c.checked=all.checked;});});\n"
    "})();\n";

void html_js(struct http_req *h)
{
    http_respond(h, 200, "text/javascript; charset=utf-8", JS, sizeof JS - 1, NULL); /* (no-store, as every answer) */
}
