/* STOMP frame parser and writer. The parser never trusts its input: every
 * line and the whole frame are bounded, NULs in headers are refused, escapes
 * are decoded per version with undefined ones a fatal error, and bodies are
 * bytes (content-length honoured, NULs kept). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/frame.h"

static const char *const cmd_names[CMD__COUNT] = {
    [CMD_UNKNOWN] = "UNKNOWN",   [CMD_CONNECT] = "CONNECT",       [CMD_STOMP] = "STOMP",
    [CMD_SEND] = "SEND",         [CMD_SUBSCRIBE] = "SUBSCRIBE",   [CMD_UNSUBSCRIBE] = "UNSUBSCRIBE",
    [CMD_ACK] = "ACK",           [CMD_NACK] = "NACK",             [CMD_BEGIN] = "BEGIN",
    [CMD_COMMIT] = "COMMIT",     [CMD_ABORT] = "ABORT",           [CMD_DISCONNECT] = "DISCONNECT",
    [CMD_CONNECTED] = "CONNECTED", [CMD_MESSAGE] = "MESSAGE",     [CMD_RECEIPT] = "RECEIPT",
    [CMD_ERROR] = "ERROR",
};

const char *frame_cmd_name(enum stomp_cmd cmd)
{
    return cmd < CMD__COUNT ? cmd_names[cmd] : "UNKNOWN";
}

enum stomp_cmd frame_cmd_from_name(const char *s, size_t len)
{
    for (int i = 1; i < CMD__COUNT; i++)
        if (strlen(cmd_names[i]) == len && memcmp(cmd_names[i], s, len) == 0)
            return (enum stomp_cmd)i;
    return CMD_UNKNOWN;
}

bool frame_cmd_escapes(enum stomp_cmd cmd)
{
    return cmd != CMD_CONNECT && cmd != CMD_STOMP && cmd != CMD_CONNECTED;
}

void frame_parser_init(struct frame_parser *p, const struct frame_limits *lim)
{
    memset(p, 0, sizeof *p);
    p->lim = *lim;
    p->version = STOMP_10;
    frame_parser_reset(p);
}

void frame_parser_reset(struct frame_parser *p)
{
    p->scan = 0;
    p->lines = 0;
    p->hdr_end = 0;
    p->content_length = -1;
    p->body_scan = 0;
    p->receipt_at = 0;
    p->receipt_len = 0;
}

void frame_free(struct frame *f)
{
    free(f->mem);
    f->mem = NULL;
    f->headers = NULL;
    f->body = NULL;
    f->nheaders = 0;
    f->strings_len = 0;
    f->body_len = 0;
}

const struct stomp_header *frame_header(const struct frame *f, const char *name)
{
    size_t nl = strlen(name);
    for (uint32_t i = 0; i < f->nheaders; i++)
        if (f->headers[i].name_len == nl && memcmp(f->headers[i].name, name, nl) == 0)
            return &f->headers[i];
    return NULL;
}

const char *frame_get(const struct frame *f, const char *name)
{
    const struct stomp_header *h = frame_header(f, name);
    return h ? h->value : NULL;
}

/* Decode src[0..len) into dst per version; returns decoded length or -1. */
static ssize_t unescape(char *dst, const char *src, size_t len, enum stomp_version v, bool escapes)
{
    if (!escapes || v == STOMP_10) {
        memcpy(dst, src, len);
        return (ssize_t)len;
    }
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c != '\\') {
            dst[o++] = c;
            continue;
        }
        if (++i == len)
            return -1;
        switch (src[i]) {
        case '\\': dst[o++] = '\\'; break;
        case 'c': dst[o++] = ':'; break;
        case 'n': dst[o++] = '\n'; break;
        case 'r':
            if (v < STOMP_12)
                return -1;
            dst[o++] = '\r';
            break;
        default:
            return -1;
        }
    }
    return (ssize_t)o;
}

static bool parse_content_length(const char *v, size_t len, int64_t *out)
{
    if (len == 0 || len > 18)
        return false;
    int64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        n = n * 10 + (v[i] - '0');
    }
    *out = n;
    return true;
}

/* The size-limit errors, one string each, so frame_error_limit() can tell
 * which limit an error is about. */
static const char err_too_large[] = "frame too large";
static const char err_command_line[] = "command line too long";
static const char err_header_line[] = "header line too long";
static const char err_headers[] = "too many headers";

static const char err_http[] = "HTTP request on a STOMP port";

bool frame_error_is_http(const char *err)
{
    return err && !strcmp(err, err_http);
}

/* "GET /path HTTP/1.1": a STOMP command has no space, so this is no
 * frame; it is refused at once, not when a NUL never comes. */
static bool http_request_line(const char *line, size_t n)
{
    static const char tag[] = " HTTP/";
    if (n < 8 || line[0] < 'A' || line[0] > 'Z')
        return false;
    for (size_t i = 0; i + sizeof tag - 1 <= n; i++)
        if (memcmp(line + i, tag, sizeof tag - 1) == 0)
            return true;
    return false;
}

enum frame_limit frame_error_limit(const char *err)
{
    if (!err)
        return FRAME_LIMIT_NONE;
    if (!strcmp(err, err_too_large))
        return FRAME_LIMIT_FRAME;
    if (!strcmp(err, err_command_line))
        return FRAME_LIMIT_COMMAND_LINE;
    if (!strcmp(err, err_header_line))
        return FRAME_LIMIT_HEADER_LINE;
    if (!strcmp(err, err_headers))
        return FRAME_LIMIT_HEADERS;
    return FRAME_LIMIT_NONE;
}

/* The checks every line gets, whether it arrives as bytes (frame_parse)
 * or is checked before it is written (frame_check_headers). index 0 is
 * the command line. */
static const char *line_problem(const struct frame_limits *lim, size_t index, size_t content, bool nul)
{
    size_t limit = index == 0 ? lim->max_command_line : lim->max_header_line;
    if (content > limit)
        return index == 0 ? err_command_line : err_header_line;
    if (nul)
        return index == 0 ? "NUL in command line" : "NUL in header line";
    return NULL;
}

/* nheaders counts the header about to be added. */
static const char *count_problem(const struct frame_limits *lim, size_t nheaders)
{
    return nheaders > lim->max_headers ? err_headers : NULL;
}

static const char *const empty_name = "empty header name";

static size_t line_content_len(const char *line, size_t ll)
{
    return (ll && line[ll - 1] == '\r') ? ll - 1 : ll;
}

/* Turn the scanned region into a struct frame (one allocation). */
static enum frame_status build(struct frame_parser *p, const char *data, size_t body_len,
                               struct frame *out, const char **err)
{
    uint32_t nh = p->lines - 1;
    size_t strbytes = p->hdr_end + nh * 2; /* decoded never grows; NULs added */
    size_t size = nh * sizeof(struct stomp_header) + strbytes + body_len + 1;
    char *mem = malloc(size);
    if (!mem) {
        *err = "out of memory";
        return FRAME_ERROR;
    }
    struct stomp_header *hs = (struct stomp_header *)mem;
    char *sp = mem + nh * sizeof(struct stomp_header);

    const char *line = data;
    const char *nl = memchr(line, '\n', p->hdr_end);
    size_t cl = line_content_len(line, (size_t)(nl - line));
    out->cmd = frame_cmd_from_name(line, cl);
    size_t cn = cl < sizeof out->command - 1 ? cl : sizeof out->command - 1;
    memcpy(out->command, line, cn);
    out->command[cn] = '\0';
    bool esc = frame_cmd_escapes(out->cmd);

    for (uint32_t i = 0; i < nh; i++) {
        line = nl + 1;
        nl = memchr(line, '\n', (size_t)(data + p->hdr_end - line));
        size_t ll = line_content_len(line, (size_t)(nl - line));
        const char *colon = memchr(line, ':', ll);
        if (!colon) {
            free(mem);
            *err = "malformed header line (no ':')";
            return FRAME_ERROR;
        }
        ssize_t n = unescape(sp, line, (size_t)(colon - line), p->version, esc);
        if (n < 0) {
            free(mem);
            *err = "undefined escape sequence in header name";
            return FRAME_ERROR;
        }
        if (n == 0) {
            free(mem);
            *err = empty_name;
            return FRAME_ERROR;
        }
        hs[i].name = sp;
        hs[i].name_len = (uint32_t)n;
        sp[n] = '\0';
        sp += n + 1;
        n = unescape(sp, colon + 1, (size_t)(line + ll - colon - 1), p->version, esc);
        if (n < 0) {
            free(mem);
            *err = "undefined escape sequence in header value";
            return FRAME_ERROR;
        }
        hs[i].value = sp;
        hs[i].value_len = (uint32_t)n;
        sp[n] = '\0';
        sp += n + 1;
    }
    out->headers = hs;
    out->nheaders = nh;
    out->strings_len = nh ? (size_t)(sp - hs[0].name) : 0;
    out->body = sp;
    memcpy(sp, data + p->hdr_end, body_len);
    sp[body_len] = '\0';
    out->body_len = body_len;
    out->mem = mem;
    return FRAME_OK;
}

/* A line can pass two limits before its LF arrives: its own length and
 * the frame's size. Which is reported must not depend on how the bytes
 * arrived (one buffer, or one byte at a time): it is the one passed at the
 * earlier byte, the line's on a tie. n: bytes of the line seen, LF not
 * included. The last byte seen may be the CR of a CRLF, so a line is too
 * long for sure only at limit + 2 bytes. */
static const char *passed_in_line(const struct frame_parser *p, size_t n)
{
    size_t limit = p->lines == 0 ? p->lim.max_command_line : p->lim.max_header_line;
    size_t at_line = limit + 2;
    size_t at_frame = p->lim.max_frame + 1 - p->scan; /* scan <= max_frame */
    if (at_line <= n && at_line <= at_frame)
        return p->lines == 0 ? err_command_line : err_header_line;
    if (at_frame <= n)
        return err_too_large;
    return NULL;
}

enum frame_status frame_parse(struct frame_parser *p, const char *data, size_t len,
                              size_t *consumed, struct frame *out, const char **err)
{
    size_t skip = 0;
    *consumed = 0;
    *err = NULL;

    if (p->lines == 0 && p->scan == 0) {
        /* EOLs between frames, and heart-beats */
        while (skip < len) {
            if (data[skip] == '\n') {
                skip++;
            } else if (data[skip] == '\r') {
                if (skip + 1 == len)
                    break;
                if (data[skip + 1] != '\n') {
                    *err = "stray carriage return before command";
                    return FRAME_ERROR;
                }
                skip += 2;
            } else {
                break;
            }
        }
        *consumed = skip;
        data += skip;
        len -= skip;
        if (len == 0 || (len == 1 && data[0] == '\r'))
            return FRAME_NEED_MORE;
    }

    while (p->hdr_end == 0) {
        const char *line = data + p->scan;
        size_t avail = len - p->scan;
        const char *nl = memchr(line, '\n', avail);
        if (!nl) {
            if ((*err = passed_in_line(p, avail)))
                return FRAME_ERROR;
            return FRAME_NEED_MORE;
        }
        size_t ll = (size_t)(nl - line);
        if ((*err = passed_in_line(p, ll)))
            return FRAME_ERROR;
        size_t content = line_content_len(line, ll);
        if ((*err = line_problem(&p->lim, p->lines, content, memchr(line, '\0', ll) != NULL)))
            return FRAME_ERROR;
        if (p->lines == 0 && http_request_line(line, content)) {
            *err = err_http;
            return FRAME_ERROR;
        }
        size_t at = p->scan;
        p->scan += ll + 1;
        if (p->scan > p->lim.max_frame) {
            *err = err_too_large;
            return FRAME_ERROR;
        }
        if (p->lines > 0 && content == 0) {
            p->hdr_end = p->scan;
            break;
        }
        if (p->lines > 0 && p->content_length < 0 && content >= 15 &&
            memcmp(line, "content-length:", 15) == 0) {
            int64_t cl;
            if (!parse_content_length(line + 15, content - 15, &cl)) {
                *err = "invalid content-length header";
                return FRAME_ERROR;
            }
            p->content_length = cl;
        }
        if ((*err = count_problem(&p->lim, p->lines++)))
            return FRAME_ERROR;
        /* Kept raw for frame_error_receipt(): only from a line accepted
         * whole, so what an ERROR echoes is within the header limit. */
        if (p->lines > 1 && p->receipt_at == 0 && content >= 8 && memcmp(line, "receipt:", 8) == 0) {
            p->receipt_at = at + 8;
            p->receipt_len = (uint32_t)(content - 8);
        }
    }

    size_t body_len, total;
    if (p->content_length >= 0) {
        if ((uint64_t)p->content_length > p->lim.max_frame - p->hdr_end) {
            *err = err_too_large;
            return FRAME_ERROR;
        }
        body_len = (size_t)p->content_length;
        total = p->hdr_end + body_len + 1;
        if (len < total)
            return FRAME_NEED_MORE;
        if (data[total - 1] != '\0') {
            *err = "frame not terminated by NUL after content-length bytes";
            return FRAME_ERROR;
        }
    } else {
        size_t from = p->body_scan > p->hdr_end ? p->body_scan : p->hdr_end;
        const char *nul = memchr(data + from, '\0', len - from);
        if (!nul) {
            p->body_scan = len;
            if (len - p->hdr_end > p->lim.max_frame - p->hdr_end) {
                *err = err_too_large;
                return FRAME_ERROR;
            }
            return FRAME_NEED_MORE;
        }
        body_len = (size_t)(nul - (data + p->hdr_end));
        total = p->hdr_end + body_len + 1;
        if (total - 1 > p->lim.max_frame) {
            *err = err_too_large;
            return FRAME_ERROR;
        }
    }

    enum frame_status st = build(p, data, body_len, out, err);
    if (st == FRAME_OK) {
        *consumed = skip + total;
        frame_parser_reset(p);
    }
    return st;
}

char *frame_error_receipt(const struct frame_parser *p, const char *frame)
{
    if (p->receipt_at == 0 || p->receipt_len > p->lim.max_header_line)
        return NULL;
    const char *nl = memchr(frame, '\n', p->receipt_at);
    if (!nl)
        return NULL;
    enum stomp_cmd cmd = frame_cmd_from_name(frame, line_content_len(frame, (size_t)(nl - frame)));
    char *out = malloc((size_t)p->receipt_len + 1);
    if (!out)
        return NULL;
    ssize_t n = unescape(out, frame + p->receipt_at, p->receipt_len, p->version, frame_cmd_escapes(cmd));
    if (n < 0) {
        /* an undefined escape in the receipt itself: there is no id to echo */
        free(out);
        return NULL;
    }
    out[n] = '\0';
    return out;
}

/* Would the writer's bytes for this header, read back by a parser of
 * version v, give the same name and value? */
static const char *encode_problem(enum stomp_version v, const struct stomp_header *h)
{
    if (h->name_len == 0)
        return empty_name;
    if (memchr(h->name, '\0', h->name_len) || memchr(h->value, '\0', h->value_len))
        return "NUL in header line";
    if (v == STOMP_12)
        return NULL;
    /* 1.0 and 1.1 do not escape CR: a reader takes a final one for CRLF */
    if (h->value_len && h->value[h->value_len - 1] == '\r')
        return "carriage return at the end of a header value cannot be encoded before STOMP 1.2";
    if (v == STOMP_11)
        return NULL;
    if (memchr(h->name, '\n', h->name_len) || memchr(h->value, '\n', h->value_len))
        return "line feed in a header cannot be encoded in STOMP 1.0";
    if (memchr(h->name, ':', h->name_len))
        return "colon in a header name cannot be encoded in STOMP 1.0";
    return NULL;
}

int frame_check_headers(const struct frame_limits *lim, enum stomp_version v, const char *command,
                        const struct stomp_header *hs, size_t n, size_t body_len, size_t *bad,
                        const char **err)
{
    *bad = n;
    size_t total = strlen(command) + 1;
    if ((*err = line_problem(lim, 0, total - 1, false)) || (*err = count_problem(lim, n)))
        return -1;
    bool esc = frame_cmd_escapes(frame_cmd_from_name(command, total - 1));
    for (size_t i = 0; i < n; i++) {
        *bad = i;
        const struct stomp_header *h = &hs[i];
        if ((*err = encode_problem(esc ? v : STOMP_10, h)))
            return -1;
        size_t line = esc ? frame_escaped_len(v, h->name, h->name_len) + 1 +
                                frame_escaped_len(v, h->value, h->value_len)
                          : (size_t)h->name_len + 1 + h->value_len;
        if ((*err = line_problem(lim, i + 1, line, false)))
            return -1;
        total += line + 1;
    }
    *bad = n;
    total += 1; /* the blank line */
    if (total > lim->max_frame || body_len > lim->max_frame - total) {
        *err = err_too_large;
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ writer */

static inline bool needs_escape(enum stomp_version v, char c)
{
    if (v == STOMP_10)
        return c == '\n';
    return c == '\\' || c == ':' || c == '\n' || (v == STOMP_12 && c == '\r');
}

/* The high bit of each byte of w equal to c (exact as to whether there is
 * one; past the first, a byte may be flagged falsely) */
static inline uint64_t bytes_eq(uint64_t w, unsigned char c)
{
    uint64_t x = w ^ (UINT64_C(0x0101010101010101) * c);
    return (x - UINT64_C(0x0101010101010101)) & ~x & UINT64_C(0x8080808080808080);
}

/* Eight bytes at a time: most values have nothing to escape, and every
 * header of every MESSAGE is measured (9% of the loop, byte by byte) */
size_t frame_escaped_len(enum stomp_version v, const char *s, size_t len)
{
    size_t n = len, i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        uint64_t hit = bytes_eq(w, '\n');
        if (v != STOMP_10)
            hit |= bytes_eq(w, '\\') | bytes_eq(w, ':') | (v == STOMP_12 ? bytes_eq(w, '\r') : 0);
        if (hit)
            for (size_t k = i; k < i + 8; k++)
                n += needs_escape(v, s[k]);
    }
    for (; i < len; i++)
        n += needs_escape(v, s[i]);
    return n;
}

void frame_escape_into(char *dst, enum stomp_version v, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!needs_escape(v, c)) {
            *dst++ = c;
            continue;
        }
        *dst++ = '\\';
        switch (c) {
        case '\\': *dst++ = '\\'; break;
        case ':': *dst++ = 'c'; break;
        case '\n': *dst++ = 'n'; break;
        default: *dst++ = 'r'; break;
        }
    }
}

void frame_write_command(struct buf *b, const char *cmd)
{
    size_t n = strlen(cmd);
    buf_reserve(b, n + 1);
    memcpy(b->data + b->len, cmd, n);
    b->data[b->len + n] = '\n';
    b->len += n + 1;
}

static void put_escaped(struct buf *b, enum stomp_version v, bool escape, const char *s, size_t len)
{
    if (!escape) {
        buf_append(b, s, len);
        return;
    }
    size_t n = frame_escaped_len(v, s, len);
    buf_reserve(b, n);
    if (n == len)
        memcpy(b->data + b->len, s, len);
    else
        frame_escape_into(b->data + b->len, v, s, len);
    b->len += n;
}

void frame_write_header(struct buf *b, enum stomp_version v, bool escape,
                        const char *name, size_t nlen, const char *value, size_t vlen)
{
    put_escaped(b, v, escape, name, nlen);
    buf_putc(b, ':');
    put_escaped(b, v, escape, value, vlen);
    buf_putc(b, '\n');
}

void frame_write_header_str(struct buf *b, enum stomp_version v, bool escape,
                            const char *name, const char *value)
{
    frame_write_header(b, v, escape, name, strlen(name), value, strlen(value));
}

void frame_write_body(struct buf *b, const char *body, size_t len)
{
    buf_reserve(b, len + 2);
    b->data[b->len++] = '\n';
    if (len)
        memcpy(b->data + b->len, body, len);
    b->len += len;
    b->data[b->len++] = '\0';
}
