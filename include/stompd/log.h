/* Logging: leveled, to stderr (or a file), one line per event.
 * log_* skip formatting below the current level; clog_* prefix the
 * connection's id and peer so every line can be traced to a client.
 * Lines to journald carry <N> priorities instead of timestamps. */
#ifndef STOMPD_LOG_H
#define STOMPD_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERR, LOG_NONE };

extern enum log_level log_level_current;

int log_level_parse(const char *name, enum log_level *out) __attribute__((warn_unused_result));
void log_set_level(enum log_level level);
/* Log to path (appending), replacing the current file, if any: also how
 * a rotated log is reopened. Thread-safe. */
int log_open_file(const char *path) __attribute__((warn_unused_result));
void log_set_prefix(const char *prefix);
/* Close the file: stderr from now on. */
void log_close(void);
/* Lines go to stderr and stderr is the journal (JOURNAL_STREAM). */
bool log_to_journal(void);

/* Lines of one kind that peers can set off at will (a client's protocol
 * error, a stranger on the replication port) are limited: at most burst
 * every `every` seconds (of the monotonic clock; burst 0: no limit). log_limit_take says whether this one may be
 * written; when it may, *held is how many were held back since the last
 * one written, for the line to say so. One thread's (the loop's). */
struct log_limit {
    double start;
    unsigned n;
    uint64_t held;
};
/* The window of log.flood_lines (config.h). */
#define LOG_FLOOD_EVERY 10.0
bool log_limit_take(struct log_limit *l, unsigned burst, double every, uint64_t *held);
/* log_limit_take for lines of one kind (area: "replication"; what: "connections
 * that did not prove the token"), the count of those held back said in
 * a line of its own, at warn, before the next one written. */
bool log_limited(struct log_limit *l, unsigned burst, double every, const char *area, const char *what);

void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vwrite(enum log_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define log_enabled(lvl) ((lvl) >= log_level_current)
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_write(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  do { if (log_enabled(LOG_INFO))  log_write(LOG_INFO,  __VA_ARGS__); } while (0)
#define log_warn(...)  do { if (log_enabled(LOG_WARN))  log_write(LOG_WARN,  __VA_ARGS__); } while (0)
#define log_err(...)   do { if (log_enabled(LOG_ERR))   log_write(LOG_ERR,   __VA_ARGS__); } while (0)

/* Connection-scoped variants: conn must have `id` and a stream `st`. */
#define clog_debug(c, fmt, ...) log_debug("conn %llu %s: " fmt, (unsigned long long)(c)->id, (c)->st.peer, ##__VA_ARGS__)
#define clog_info(c, fmt, ...)  log_info("conn %llu %s: " fmt, (unsigned long long)(c)->id, (c)->st.peer, ##__VA_ARGS__)
#define clog_warn(c, fmt, ...)  log_warn("conn %llu %s: " fmt, (unsigned long long)(c)->id, (c)->st.peer, ##__VA_ARGS__)
#define clog_err(c, fmt, ...)   log_err("conn %llu %s: " fmt, (unsigned long long)(c)->id, (c)->st.peer, ##__VA_ARGS__)

#endif
