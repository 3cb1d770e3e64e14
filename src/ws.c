/* STOMP over WebSocket (see ws.h): the stream filter of a WebSocket
 * listener's connections. The only file that includes wslay.h and nettle.
 *
 * Input: the socket's bytes go first to the handshake (the request head is
 * kept in the stream's input buffer until it is whole), then to wslay,
 * whose payload chunks (unmasked) go to the STOMP connection's input. What
 * the STOMP parser leaves (a frame not yet whole, or frames it did not
 * take while paused) waits in `dec`, so frames may span messages; while
 * the connection is paused wslay is given no more bytes, so `dec` stays
 * bounded by one read plus one frame.
 * Output: the connection writes STOMP into s->out as for TCP; encode
 * frames it into s->wire one STOMP frame per message (text when it is
 * UTF-8, binary otherwise), a bounded batch at a time, and adds wslay's
 * control frames (pongs, close) even while deliveries are held. */
#include "config.h"

#include <arpa/inet.h>
#include <nettle/base64.h>
#include <nettle/sha1.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <wslay/wslay.h>

#include "stompd/buf.h"
#include "stompd/config.h"
#include "stompd/http_head.h"
#include "stompd/log.h"
#include "stompd/stream.h"
#include "stompd/utf8.h"
#include "stompd/ws.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WIRE_BATCH 65536      /* framed output prepared per flush step */
#define CLOSE_LINGER 5.0      /* seconds a refused handshake has to read its answer */
/* A message may carry one frame of stomp.max_frame_size plus its NUL and
 * EOLs (or several smaller frames). */
#define MESSAGE_SLACK 1024

enum ws_phase {
    WS_HTTP,     /* reading the upgrade request */
    WS_OPEN,     /* 101 sent: WebSocket frames both ways */
    WS_REFUSED,  /* answered 4xx: nothing more is read or written */
};

struct ws {
    struct stream *s;
    uint64_t conn_id;
    enum ws_phase phase;
    wslay_event_context_ptr ctx;
    struct buf dec;          /* payload the STOMP parser has not taken yet */
    const char *raw;         /* the bytes being offered to wslay */
    size_t raw_n, raw_used;
    uint64_t frame_left;     /* bytes of the frame being handed to wslay (0: a header comes next) */
    uint64_t msg_len;        /* payload bytes of the data message being received */
    bool data_frame;         /* the frame being received is text, binary or continuation */
    bool close_queued;       /* our closing frame is queued (or sent) */
    bool failed;             /* a close for an error is queued: close the socket once it is out */
    uint16_t raw_close;      /* a close wslay could not queue with a code (see after_recv) */
    bool refused_answered;
};

static struct ws_stats S;

const struct ws_stats *ws_stats(void)
{
    return &S;
}

void ws_count_refused(void)
{
    S.refused++;
}

#define wlog_info(w, fmt, ...)                                                                                      \
    log_info("conn %llu %s: websocket: " fmt, (unsigned long long)(w)->conn_id, (w)->s->peer, ##__VA_ARGS__)
#define wlog_debug(w, fmt, ...)                                                                                     \
    log_debug("conn %llu %s: websocket: " fmt, (unsigned long long)(w)->conn_id, (w)->s->peer, ##__VA_ARGS__)

/* Lines about refused and failed connections: anyone who reaches the
 * port sets them off as fast as it connects (600 in a second, helper-90):
 * log.flood_lines. The metrics count them all. */
static bool ws_may_log(void)
{
    static struct log_limit limit;
    return log_enabled(LOG_INFO) && log_limited(&limit, (unsigned)config.log_flood_lines, LOG_FLOOD_EVERY, "websocket",
                                                "refused or failed connections (stompd_ws_refused_total and "
                                                "stompd_ws_failed_total count them)");
}

/* ------------------------------------------------------------ pure parts */

void ws_accept_key(const char *key, char out[29])
{
    struct sha1_ctx sha;
    uint8_t digest[SHA1_DIGEST_SIZE];
    sha1_init(&sha);
    sha1_update(&sha, strlen(key), (const uint8_t *)key);
    sha1_update(&sha, sizeof WS_GUID - 1, (const uint8_t *)WS_GUID);
    sha1_digest(&sha, sizeof digest, digest);
    base64_encode_raw(out, sizeof digest, digest);
    out[BASE64_ENCODE_RAW_LENGTH(SHA1_DIGEST_SIZE)] = '\0';
}

/* A Sec-WebSocket-Key is the base64 of 16 bytes (RFC 6455 4.2.1). */
static bool key_valid(const char *key)
{
    size_t n = strlen(key);
    if (n != 24)
        return false;
    uint8_t out[BASE64_DECODE_LENGTH(24)];
    size_t outlen = sizeof out;
    struct base64_decode_ctx d;
    base64_decode_init(&d);
    return base64_decode_update(&d, &outlen, out, n, key) && base64_decode_final(&d) && outlen == 16;
}

/* Does the comma-separated list (of one or more header fields) hold this
 * token, case-insensitively? */
/* Does a field (any of that name) list token? Connection and Upgrade
 * tokens are case-insensitive; subprotocol names are not (exact): a
 * browser checks the server names one it offered, as it spelled it. */
static bool has_token(const struct http_head *h, const char *field, const char *token, bool exact)
{
    size_t tl = strlen(token);
    for (size_t i = 0; i < h->nfields; i++) {
        if (strcasecmp(h->fields[i].name, field))
            continue;
        const char *p = h->fields[i].value;
        while (*p) {
            while (*p == ' ' || *p == '\t' || *p == ',')
                p++;
            const char *e = p;
            while (*e && *e != ',')
                e++;
            const char *t = e;
            while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
                t--;
            if ((size_t)(t - p) == tl && !(exact ? strncmp(p, token, tl) : strncasecmp(p, token, tl)))
                return true;
            p = e;
        }
    }
    return false;
}

/* Origin "scheme://host[:port]": the host[:port] part. */
static const char *origin_authority(const char *origin)
{
    const char *p = strstr(origin, "://");
    return p ? p + 3 : NULL;
}

bool ws_origin_allowed(const char *origin, const char *host, bool host_named, const char *origins)
{
    if (!origin)
        return true; /* not a browser: it could send any Origin it liked */
    const char *auth = origin_authority(origin);
    if (auth && host && host_named && !strcasecmp(auth, host))
        return true;
    const char *p = origins ? origins : "";
    size_t ol = strlen(origin);
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && t[-1] == ' ')
            t--;
        if ((t - p == 1 && *p == '*') || ((size_t)(t - p) == ol && !strncasecmp(p, origin, ol)))
            return true;
        p = e;
    }
    return false;
}

static void refuse_with(struct ws_handshake *out, int status, const char *extra, const char *reason,
                        const char *arg)
{
    out->status = status;
    out->extra_headers = extra;
    snprintf(out->reason, sizeof out->reason, "%s%s%s", reason, arg ? ": " : "", arg ? arg : "");
}

void ws_handshake_check(const struct http_head *h, const char *origins, const char *const names[],
                        struct ws_handshake *out)
{
    static const char upgrade_hdrs[] = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
    memset(out, 0, sizeof *out);
    out->extra_headers = "";
    if (h->http_major < 1 || (h->http_major == 1 && h->http_minor < 1))
        return refuse_with(out, 400, "", "a WebSocket upgrade needs HTTP/1.1", NULL);
    if (strcmp(h->method, "GET"))
        return refuse_with(out, 405, "Allow: GET\r\n", "a WebSocket upgrade is a GET, not", h->method);
    if (!has_token(h, "Upgrade", "websocket", false))
        return refuse_with(out, 426, upgrade_hdrs,
                           "this port speaks STOMP over WebSocket only: send a WebSocket upgrade request "
                           "(RFC 6455)", NULL);
    if (!has_token(h, "Connection", "Upgrade", false))
        return refuse_with(out, 400, "", "the Connection header must include Upgrade", NULL);
    /* one value each: which of two would a proxy have checked? */
    static const char *const once[] = {"Host", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Origin"};
    for (size_t i = 0; i < sizeof once / sizeof once[0]; i++)
        if (http_head_count(h, once[i]) > 1)
            return refuse_with(out, 400, "", "a header that may come once came twice", once[i]);
    /* what follows the head is WebSocket frames, never a body */
    const char *cl = http_head_get(h, "Content-Length");
    if (http_head_get(h, "Transfer-Encoding") || (cl && strcmp(cl, "0")))
        return refuse_with(out, 400, "", "a WebSocket upgrade request has no body", NULL);
    const char *host = http_head_get(h, "Host");
    if (!host || !*host)
        return refuse_with(out, 400, "", "the Host header is missing", NULL);
    const char *version = http_head_get(h, "Sec-WebSocket-Version");
    if (!version || strcmp(version, "13"))
        return refuse_with(out, 426, upgrade_hdrs, "unsupported Sec-WebSocket-Version (13 is supported)",
                           version ? version : "none");
    const char *key = http_head_get(h, "Sec-WebSocket-Key");
    if (!key || !key_valid(key))
        return refuse_with(out, 400, "", "Sec-WebSocket-Key must be the base64 of 16 bytes", NULL);
    const char *origin = http_head_get(h, "Origin");
    if (!ws_origin_allowed(origin, host, host && http_host_named(host, names), origins))
        return refuse_with(out, 403, "",
                           "this origin may not connect (clients that send no Origin always may, and pages "
                           "from the host and port they connect to, if it is an IP address, localhost, this "
                           "machine's name or in http.hosts; stomp.ws_origins lists others)", origin);
    if (http_head_get(h, "Sec-WebSocket-Protocol")) {
        static const char *const mine[] = {"v12.stomp", "v11.stomp", "v10.stomp"};
        for (size_t i = 0; i < 3 && !out->protocol; i++)
            if (has_token(h, "Sec-WebSocket-Protocol", mine[i], true))
                out->protocol = mine[i];
        if (!out->protocol)
            return refuse_with(out, 400, "",
                               "no STOMP subprotocol offered: this server speaks v12.stomp, v11.stomp and "
                               "v10.stomp (or STOMP with no subprotocol)", NULL);
    }
    ws_accept_key(key, out->accept);
    out->status = 101;
}

size_t ws_next_unit(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && (p[i] == '\n' || p[i] == '\r'))
        i++;
    if (i > 0)
        return i; /* heart-beats */
    int64_t clen = -1;
    size_t line = 0, body = 0;
    for (bool first = true;; first = false) {
        const char *nl = memchr(p + line, '\n', n - line);
        if (!nl)
            return 0;
        size_t end = (size_t)(nl - p);
        size_t len = end - line;
        if (len && p[end - 1] == '\r')
            len--;
        if (!first && len == 0) {
            body = end + 1;
            break;
        }
        if (!first && clen < 0 && len > 15 && !memcmp(p + line, "content-length:", 15)) {
            clen = 0;
            for (size_t k = line + 15; k < line + len && p[k] >= '0' && p[k] <= '9'; k++)
                clen = clen * 10 + (p[k] - '0');
        }
        line = end + 1;
    }
    size_t nul;
    if (clen >= 0 && (uint64_t)clen < n - body && p[body + (size_t)clen] == '\0') {
        nul = body + (size_t)clen;
    } else if (clen >= 0 && (uint64_t)clen >= n - body) {
        return 0;
    } else {
        const char *z = memchr(p + body, '\0', n - body);
        if (!z)
            return 0;
        nul = (size_t)(z - p);
    }
    size_t u = nul + 1;
    while (u < n && (p[u] == '\n' || p[u] == '\r'))
        u++;
    return u;
}

/* ------------------------------------------------------------ wslay callbacks */

/* How many of the n bytes at p (at most len) wslay may have now. A
 * control frame goes to it whole, in one read, never split: wslay 1.1.1
 * checks a close frame's reason for UTF-8 a chunk at a time, so a valid
 * reason split inside a character was refused (1007) and an invalid one
 * trickled a byte at a time was echoed back. Frames are followed by
 * their headers; a header is handed only whole (at most 14 bytes wait
 * for the rest of it). */
static uint64_t message_limit(void);
static void too_big(struct ws *w);

static size_t whole_control_frames(struct ws *w, const uint8_t *p, size_t n, size_t len)
{
    uint64_t left = w->frame_left;
    size_t give = 0;
    while (give < n && give < len) {
        if (left == 0) {
            const uint8_t *h = p + give;
            size_t have = n - give;
            if (have < 2)
                break;
            size_t len7 = h[1] & 0x7fu, hlen = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (h[1] & 0x80u ? 4 : 0);
            if (have < hlen)
                break;
            uint64_t plen = len7;
            if (len7 == 126)
                plen = (uint64_t)h[2] << 8 | h[3];
            else if (len7 == 127)
                for (int i = 0; i < 8; i++)
                    plen = plen << 8 | h[2 + i];
            left = hlen + plen;
            if (left < plen)
                left = UINT64_MAX; /* wslay refuses such a length */
            /* a control frame (its payload at most 125 bytes, or wslay
             * refuses it anyway): all of it, or not yet */
            if ((h[0] & 0x08u) && plen <= 125 && (have < left || len - give < left))
                break;
            /* a data frame too big: refused now, not once its payload
             * begins (helper-103: 2^40 bytes announced, then silence) */
            if (!(h[0] & 0x08u) && plen > message_limit()) {
                too_big(w);
                break;
            }
        }
        size_t k = n - give < len - give ? n - give : len - give;
        if ((uint64_t)k > left)
            k = (size_t)left;
        give += k;
        left -= k;
        w->frame_left = left;
    }
    return give;
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    struct ws *w = user;
    struct stream *s = w->s;
    /* a client that sends pings and reads no pongs is read no more (the
     * stream resumes it once its output drains) */
    if (s->state == STREAM_OPEN && stream_pending(s) + wslay_event_get_queued_msg_length(ctx) >= s->out_limit) {
        s->blocked = true;
        stream_pause(s, STREAM_PAUSE_FILTER);
    }
    /* a paused connection takes nothing more (it is read again on resume) */
    bool stop = s->state == STREAM_DEAD || (s->state == STREAM_OPEN && s->paused);
    size_t n = stop ? 0 : whole_control_frames(w, (const uint8_t *)w->raw + w->raw_used, w->raw_n - w->raw_used, len);
    if (n == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    memcpy(buf, w->raw + w->raw_used, n);
    w->raw_used += n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
    struct ws *w = user;
    if (w->s->state == STREAM_DEAD) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    buf_append(&w->s->wire, data, len);
    return (ssize_t)len;
}

static void fail(struct ws *w, uint16_t code, const char *reason)
{
    if (w->failed)
        return;
    w->failed = true;
    S.failed++;
    if (ws_may_log())
        wlog_info(w, "failing the connection with close %u: %s", code, reason);
    int rc = wslay_event_queue_close(w->ctx, code, (const uint8_t *)reason, strlen(reason));
    if (rc != 0 && !w->close_queued)
        w->raw_close = code;
    w->close_queued = true;
    wslay_event_shutdown_read(w->ctx);
}

static uint64_t message_limit(void)
{
    return (uint64_t)config.max_frame_size + MESSAGE_SLACK;
}

static void too_big(struct ws *w)
{
    char why[120];
    snprintf(why, sizeof why, "message larger than %llu bytes (stomp.max_frame_size + 1KiB)",
             (unsigned long long)message_limit());
    fail(w, WS_CLOSE_TOO_BIG, why);
}

static void on_frame_start(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_start_arg *arg,
                           void *user)
{
    struct ws *w = user;
    w->data_frame = arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME ||
                    arg->opcode == WSLAY_CONTINUATION_FRAME;
    /* wslay reads a 1-byte close payload as "no code" and echoes an empty
     * close; RFC 6455 5.5.1 makes it a protocol error */
    if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->payload_length == 1)
        fail(w, WS_CLOSE_PROTOCOL, "a close frame's payload is a 2-byte status code and an optional reason");
    if (!w->data_frame)
        return;
    if (arg->opcode != WSLAY_CONTINUATION_FRAME)
        w->msg_len = 0;
    w->msg_len += arg->payload_length;
    if (w->msg_len > message_limit())
        too_big(w);
}

/* Payload for the STOMP connection. */
static void offer_dec(struct ws *w)
{
    struct stream *s = w->s;
    size_t used = s->ops->input(s, buf_head(&w->dec), buf_used(&w->dec));
    if (s->state == STREAM_OPEN)
        buf_consume(&w->dec, used);
    else
        buf_free(&w->dec);
}

static void on_chunk(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_chunk_arg *arg, void *user)
{
    struct ws *w = user;
    struct stream *s = w->s;
    /* a closing connection reads only for the peer's close: data is dropped */
    if (!w->data_frame || w->failed || s->state != STREAM_OPEN || arg->data_length == 0)
        return;
    const char *p = (const char *)arg->data;
    size_t n = arg->data_length;
    if (buf_used(&w->dec) == 0 && s->paused == 0) {
        size_t used = s->ops->input(s, p, n);
        if (s->state == STREAM_OPEN && used < n)
            buf_append(&w->dec, p + used, n - used);
        return;
    }
    buf_append(&w->dec, p, n);
    if (s->paused == 0)
        offer_dec(w);
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    struct ws *w = user;
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME)
        S.messages_in++;
    else if (arg->opcode == WSLAY_CONNECTION_CLOSE)
        wlog_debug(w, "close %u received", arg->status_code);
}

static const struct wslay_event_callbacks callbacks = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_frame_recv_start_callback = on_frame_start,
    .on_frame_recv_chunk_callback = on_chunk,
    .on_msg_recv_callback = on_msg,
};

/* ------------------------------------------------------------ the filter */

static const char *status_text(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

static void answer_http(struct ws *w, int status, const char *extra, const char *reason)
{
    buf_printf(&w->s->wire,
               "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n"
               "%s\n",
               status, status_text(status), strlen(reason) + 1, extra, reason);
    w->refused_answered = true;
}

static void refuse(struct ws *w, int status, const char *extra, const char *reason)
{
    S.refused++;
    if (ws_may_log())
        wlog_info(w, "upgrade refused: %d %s", status, reason);
    answer_http(w, status, extra, reason);
    w->phase = WS_REFUSED;
    stream_close_after_flush(w->s, CLOSE_LINGER, "WebSocket upgrade refused");
}

static size_t ws_input(struct stream *s, const char *p, size_t n);

/* The upgrade request: kept in the stream's input until its head is whole. */
static size_t handshake(struct ws *w, const char *p, size_t n)
{
    size_t limit = (size_t)config.http_max_request;
    size_t end = http_head_end(p, n);
    if ((!end && n > limit) || end > limit) {
        refuse(w, 431, "", "request head larger than http.max_request");
        return n;
    }
    if (!end && !stream_unproven_fits(w->s, n, (size_t)config.max_input_buffers)) {
        /* partial requests of many strangers would take the room the
         * logged-in clients' frames need */
        refuse(w, 503, "Retry-After: 5\r\n",
               "too many unfinished requests of clients not logged in (a quarter of stomp.max_input_buffers)");
        return n;
    }
    if (!end)
        return 0;
    struct http_head h;
    char err[160];
    int rc = http_head_parse(&h, p, end, err, sizeof err);
    if (rc != 0) {
        refuse(w, rc == -2 ? 431 : 400, "", err);
        return n;
    }
    struct ws_handshake hs;
    const char *const names[] = {config.http_hosts, config.ws_listen, config.wss_listen, NULL};
    ws_handshake_check(&h, config.ws_origins, names, &hs);
    if (hs.status != 101) {
        refuse(w, hs.status, hs.extra_headers, hs.reason);
        http_head_free(&h);
        return n;
    }
    if (wslay_event_context_server_init(&w->ctx, &callbacks, w) != 0) {
        refuse(w, 500, "", "out of memory");
        http_head_free(&h);
        return n;
    }
    /* payload is streamed to the STOMP parser, never gathered; the message
     * size limit is on_frame_start's (wslay's own closes without a reason) */
    wslay_event_config_set_no_buffering(w->ctx, 1);
    /* wslay's own bound (2^31 - 1 by default) would answer 1009 before
     * on_frame_start could give the reason */
    wslay_event_config_set_max_recv_msg_length(w->ctx, UINT64_MAX);
    buf_printf(&w->s->wire,
               "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
               hs.accept, hs.protocol ? "Sec-WebSocket-Protocol: " : "", hs.protocol ? hs.protocol : "",
               hs.protocol ? "\r\n" : "");
    wlog_info(w, "upgraded (%s %s, subprotocol %s, origin %s)", h.method, h.url, hs.protocol ? hs.protocol : "none",
              http_head_get(&h, "Origin") ? http_head_get(&h, "Origin") : "none");
    http_head_free(&h);
    w->phase = WS_OPEN;
    S.upgrades++;
    S.open++;
    stream_want_flush(w->s);
    /* a client may send its first frames right behind the request */
    return end + (end < n ? ws_input(w->s, p + end, n - end) : 0);
}

/* After wslay read: a framing error, or the peer's close, ends the
 * connection now (after a last attempt to write our close frame). */
static void after_recv(struct ws *w, int rc)
{
    struct stream *s = w->s;
    bool peer_closed = wslay_event_get_close_received(w->ctx);
    if (!peer_closed && !w->failed) {
        if (rc == WSLAY_ERR_NOMEM) {
            fail(w, WS_CLOSE_INTERNAL, "out of memory");
        } else if (rc != 0) {
            /* wslay's frame reader refused the frame (a control frame over
             * 125 bytes or fragmented, a length not in its shortest form)
             * and queued a close without a code: send 1002 in its place */
            w->failed = true;
            S.failed++;
            if (!w->close_queued)
                w->raw_close = WS_CLOSE_PROTOCOL;
            w->close_queued = true;
        } else if (!wslay_event_get_read_enabled(w->ctx)) {
            /* wslay failed it and queued the close with its code: 1002
             * (unmasked or reserved bits, bad opcode or sequence, bad close
             * code), 1007 (not UTF-8), 1009 (too big) */
            w->failed = true;
            S.failed++;
            w->close_queued = true;
        } else {
            return;
        }
    }
    uint16_t raw = w->raw_close;
    stream_flush(s);
    if (s->state == STREAM_DEAD)
        return;
    char why[96];
    if (peer_closed && s->state == STREAM_CLOSING && s->close_why)
        snprintf(why, sizeof why, "%s", s->close_why);
    else if (peer_closed)
        snprintf(why, sizeof why, "peer closed the WebSocket (%u)", wslay_event_get_status_code_received(w->ctx));
    else
        snprintf(why, sizeof why, "WebSocket failed (close %u)", raw ? raw : wslay_event_get_status_code_sent(w->ctx));
    if (!peer_closed && ws_may_log())
        wlog_info(w, "%s", why);
    stream_close(s, why);
}

static size_t ws_input(struct stream *s, const char *p, size_t n)
{
    struct ws *w = s->filter_data;
    if (w->phase == WS_HTTP)
        /* a connection that timed out waiting for its request (408) is
         * only drained */
        return s->state == STREAM_OPEN ? handshake(w, p, n) : n;
    if (w->phase == WS_REFUSED || wslay_event_get_close_received(w->ctx) || w->failed)
        return n;
    /* payload the connection did not take before it paused */
    if (buf_used(&w->dec) && s->state == STREAM_OPEN && s->paused == 0)
        offer_dec(w);
    if (s->state == STREAM_DEAD)
        return n;
    w->raw = p;
    w->raw_n = n;
    w->raw_used = 0;
    int rc = wslay_event_recv(w->ctx);
    size_t used = w->raw_used;
    w->raw = NULL;
    w->raw_n = w->raw_used = 0;
    if (s->state == STREAM_DEAD)
        return n;
    if (wslay_event_get_queued_msg_count(w->ctx) > 0)
        stream_want_flush(s); /* pongs, a close */
    after_recv(w, rc);
    return s->state == STREAM_DEAD ? n : used;
}

static size_t ws_held(const struct stream *s)
{
    const struct ws *w = s->filter_data;
    return buf_used(&w->dec);
}

static const char *close_reason(uint16_t code)
{
    switch (code) {
    case WS_CLOSE_NORMAL: return "bye";
    case WS_CLOSE_GOING_AWAY: return "going away";
    case WS_CLOSE_POLICY: return "STOMP ERROR";
    default: return "";
    }
}

static void ws_encode(struct stream *s, size_t allowed)
{
    struct ws *w = s->filter_data;
    if (w->phase != WS_OPEN) {
        /* nothing STOMP can go out before the upgrade, or after a refusal;
         * a connection that times out waiting for its request hears 408 */
        stream_out_consume(s, buf_used(&s->out));
        if (w->phase == WS_HTTP && s->state == STREAM_CLOSING && !w->refused_answered) {
            answer_http(w, 408, "", "no WebSocket upgrade request within stomp.connect_timeout");
            S.refused++;
        }
        return;
    }
    bool closing = s->state == STREAM_CLOSING;
    if (allowed > 0 && !w->close_queued) {
        while (buf_used(&s->wire) < WIRE_BATCH && buf_used(&s->out) > 0) {
            size_t u = ws_next_unit(buf_head(&s->out), buf_used(&s->out));
            if (u == 0)
                u = buf_used(&s->out); /* never a partial frame in practice: send what there is */
            if (u > allowed)
                break; /* a mark of the protocol's is at a frame's start: held from there */
            allowed -= u;
            struct wslay_event_msg m = {
                .opcode = utf8_valid(buf_head(&s->out), u) ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME,
                .msg = (const uint8_t *)buf_head(&s->out),
                .msg_length = u,
            };
            int rc = wslay_event_queue_msg(w->ctx, &m);
            stream_out_consume(s, u);
            if (rc != 0)
                break;
            S.messages_out++;
            wslay_event_send(w->ctx);
        }
    }
    if (closing && buf_used(&s->out) == 0 && !w->close_queued) {
        uint16_t code = s->close_code ? s->close_code : WS_CLOSE_NORMAL;
        const char *reason = close_reason(code);
        wslay_event_queue_close(w->ctx, code, (const uint8_t *)reason, strlen(reason));
        w->close_queued = true;
    }
    if (w->raw_close) {
        /* 1002 with no reason: a close frame is two bytes of header and the code */
        uint8_t f[4] = {0x88, 2, (uint8_t)(w->raw_close >> 8), (uint8_t)w->raw_close};
        buf_append(&s->wire, f, sizeof f);
        w->raw_close = 0;
        return;
    }
    wslay_event_send(w->ctx);
}

/* The stream closes at once (the broker stops, a client went silent):
 * a close frame first, written if the socket takes it, so a browser
 * hears why (1001) rather than an abnormal end (1006). */
static void ws_farewell(struct stream *s)
{
    struct ws *w = s->filter_data;
    if (w->phase != WS_OPEN || w->close_queued || w->failed || wslay_event_get_close_received(w->ctx))
        return;
    uint16_t code = s->close_code ? s->close_code : WS_CLOSE_GOING_AWAY;
    const char *reason = close_reason(code);
    if (wslay_event_queue_close(w->ctx, code, (const uint8_t *)reason, strlen(reason)) == 0) {
        w->close_queued = true;
        wslay_event_send(w->ctx);
    }
}

static bool ws_may_close(struct stream *s)
{
    struct ws *w = s->filter_data;
    /* after our close frame, wait (within the linger) for the peer's */
    return w->phase != WS_OPEN || w->failed || wslay_event_get_close_received(w->ctx);
}

static void ws_release(struct stream *s)
{
    struct ws *w = s->filter_data;
    if (w->phase == WS_OPEN)
        S.open--;
    if (w->ctx)
        wslay_event_context_free(w->ctx);
    buf_free(&w->dec);
    free(w);
    s->filter_data = NULL;
}

static const struct stream_filter ws_filter = {
    .name = WS_TRANSPORT,
    .input = ws_input,
    .held = ws_held,
    .encode = ws_encode,
    .may_close = ws_may_close,
    .farewell = ws_farewell,
    .release = ws_release,
};

void ws_attach(struct stream *s, uint64_t conn_id)
{
    struct ws *w = calloc(1, sizeof *w);
    if (!w)
        abort();
    w->s = s;
    w->conn_id = conn_id;
    w->phase = WS_HTTP;
    s->filter = &ws_filter;
    s->filter_data = w;
}
