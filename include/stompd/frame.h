/* STOMP frames: a resumable, bounded, binary-safe parser and the writer.
 * Pure code, no I/O: the caller hands in the unconsumed bytes it has, the
 * parser remembers how far it has looked so a frame arriving one byte at a
 * time costs linear work. Used by the broker and by libstompc. */
#ifndef STOMPD_FRAME_H
#define STOMPD_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stompd/buf.h"

enum stomp_cmd {
    CMD_UNKNOWN = 0,
    CMD_CONNECT,
    CMD_STOMP,
    CMD_SEND,
    CMD_SUBSCRIBE,
    CMD_UNSUBSCRIBE,
    CMD_ACK,
    CMD_NACK,
    CMD_BEGIN,
    CMD_COMMIT,
    CMD_ABORT,
    CMD_DISCONNECT,
    CMD_CONNECTED,
    CMD_MESSAGE,
    CMD_RECEIPT,
    CMD_ERROR,
    CMD__COUNT
};

enum stomp_version { STOMP_10 = 0, STOMP_11 = 1, STOMP_12 = 2 };

struct stomp_header {
    const char *name;  /* NUL-terminated, decoded */
    const char *value; /* NUL-terminated, decoded */
    uint32_t name_len;
    uint32_t value_len;
};

struct frame {
    enum stomp_cmd cmd;
    char command[32]; /* the command as received (truncated), for error messages */
    uint32_t nheaders;
    struct stomp_header *headers;
    size_t strings_len; /* frame_parse: every name and value lie together from headers[0].name, this
                         * long with a NUL after each (0: not known) */
    char *body;       /* body_len bytes plus a NUL; may contain NULs */
    size_t body_len;
    void *mem;        /* one allocation owning headers, strings and body */
};

struct frame_limits {
    size_t max_frame;   /* headers + body */
    size_t max_headers;
    size_t max_header_line;
    size_t max_command_line;
};

struct frame_parser {
    struct frame_limits lim;
    enum stomp_version version; /* governs header unescaping */
    /* resume state for the frame being read (offsets from the frame start) */
    size_t scan;        /* start of the first header line not yet seen whole */
    uint32_t lines;     /* lines seen (command included) */
    size_t hdr_end;     /* offset just past the blank line, 0 while unknown */
    int64_t content_length; /* -1: none */
    size_t body_scan;   /* NUL search resumes here */
    size_t receipt_at;  /* value of the first whole receipt line, raw; 0: none */
    uint32_t receipt_len;
};

enum frame_status { FRAME_NEED_MORE = 0, FRAME_OK = 1, FRAME_ERROR = -1 };

void frame_parser_init(struct frame_parser *p, const struct frame_limits *lim);
void frame_parser_reset(struct frame_parser *p);

/* Parse at most one frame from data[0..len). *consumed is set to the bytes
 * the caller may drop (leading EOLs/heart-beats, plus the frame on
 * FRAME_OK). On FRAME_ERROR, *err names the problem for an ERROR frame. */
enum frame_status frame_parse(struct frame_parser *p, const char *data, size_t len,
                              size_t *consumed, struct frame *out, const char **err);

void frame_free(struct frame *f);

/* After FRAME_ERROR, the decoded value of the failed frame's first
 * receipt header, for the ERROR's receipt-id: malloc'd, NUL-terminated,
 * never longer than lim.max_header_line. NULL when no receipt line was
 * seen whole before the error (one that was itself too long, or not yet
 * received), or when its value does not decode. frame points at the failed
 * frame: the failing call's data advanced by *consumed. The parser keeps
 * this until frame_parser_reset(). */
char *frame_error_receipt(const struct frame_parser *p, const char *frame);
/* Whether FRAME_ERROR's *err says the bytes were an HTTP request line. */
bool frame_error_is_http(const char *err);

/* The parser's checks for a frame that does not arrive as bytes (the
 * console's send): would command with headers hs[0..n) and a body of
 * body_len bytes, written for version v, be read back the same and within
 * lim? 0 if so; else -1, *err in the parser's words and *bad the index of
 * the offending header (n when the problem is the frame as a whole). */
int frame_check_headers(const struct frame_limits *lim, enum stomp_version v, const char *command,
                        const struct stomp_header *hs, size_t n, size_t body_len, size_t *bad,
                        const char **err) __attribute__((warn_unused_result));

/* Which limit of struct frame_limits a FRAME_ERROR's (or
 * frame_check_headers') *err is about, so the caller can name its own
 * setting; FRAME_LIMIT_NONE for every other error. */
enum frame_limit {
    FRAME_LIMIT_NONE,
    FRAME_LIMIT_FRAME,        /* max_frame */
    FRAME_LIMIT_HEADERS,      /* max_headers */
    FRAME_LIMIT_HEADER_LINE,  /* max_header_line */
    FRAME_LIMIT_COMMAND_LINE, /* max_command_line */
};
enum frame_limit frame_error_limit(const char *err);

enum stomp_cmd frame_cmd_from_name(const char *s, size_t len);
const char *frame_cmd_name(enum stomp_cmd cmd);

/* First occurrence wins, as the specification says. */
const struct stomp_header *frame_header(const struct frame *f, const char *name);
const char *frame_get(const struct frame *f, const char *name);

/* Writer. Escaping follows the version; CONNECT, STOMP and CONNECTED
 * frames are never escaped. */
bool frame_cmd_escapes(enum stomp_cmd cmd);
void frame_write_command(struct buf *b, const char *cmd);
void frame_write_header(struct buf *b, enum stomp_version v, bool escape,
                        const char *name, size_t nlen, const char *value, size_t vlen);
void frame_write_header_str(struct buf *b, enum stomp_version v, bool escape,
                            const char *name, const char *value);
/* Ends the headers, writes the body and the NUL terminator. */
void frame_write_body(struct buf *b, const char *body, size_t len);
/* Bytes needed to write s escaped for version v. */
size_t frame_escaped_len(enum stomp_version v, const char *s, size_t len);
void frame_escape_into(char *dst, enum stomp_version v, const char *s, size_t len);

#endif
