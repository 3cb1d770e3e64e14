/* Logging: one line per event on stderr or a file. When stderr goes to
 * journald (JOURNAL_STREAM names it, as systemd sets it for a service),
 * lines carry a <N> priority prefix and no timestamp, the journal keeping
 * both; otherwise each starts with the local time and its UTC offset.
 * Writers (the loop, store and ZooKeeper threads) and a reopen (SIGHUP)
 * share one mutex: a line never mixes with another and never goes to a
 * file being closed. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

#include "stompd/log.h"

enum log_level log_level_current = LOG_INFO;
static FILE *log_fp;
static char log_prefix[64];
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t journal_once = PTHREAD_ONCE_INIT;
static bool stderr_is_journal;

static const char *const level_names[] = {"debug", "info", "warn", "error", "none"};
/* syslog priorities: debug 7, info 6, warning 4, err 3 */
static const char level_prio[] = {'7', '6', '4', '3', '3'};

int log_level_parse(const char *name, enum log_level *out)
{
    for (int i = LOG_DEBUG; i <= LOG_NONE; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcasecmp(name, "err") == 0 || strcasecmp(name, "warning") == 0) {
        *out = name[0] == 'e' || name[0] == 'E' ? LOG_ERR : LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

void log_set_level(enum log_level level)
{
    log_level_current = level;
}

void log_set_prefix(const char *prefix)
{
    snprintf(log_prefix, sizeof log_prefix, "%s", prefix ? prefix : "");
}

/* systemd passes "device:inode" of the journal stream it connected to
 * stdout/stderr; stderr redirected elsewhere (a file, a pipe) no longer
 * matches, and gets timestamps again. */
static void detect_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    stderr_is_journal = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
                        (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

bool log_to_journal(void)
{
    pthread_once(&journal_once, detect_journal);
    pthread_mutex_lock(&log_lock);
    bool j = !log_fp && stderr_is_journal;
    pthread_mutex_unlock(&log_lock);
    return j;
}

int log_open_file(const char *path)
{
    FILE *fp = fopen(path, "a");
    if (!fp)
        return -errno;
    setvbuf(fp, NULL, _IOLBF, 0);
    pthread_mutex_lock(&log_lock);
    FILE *old = log_fp;
    log_fp = fp;
    pthread_mutex_unlock(&log_lock);
    if (old)
        fclose(old);
    return 0;
}

void log_close(void)
{
    pthread_mutex_lock(&log_lock);
    FILE *old = log_fp;
    log_fp = NULL;
    pthread_mutex_unlock(&log_lock);
    if (old)
        fclose(old);
}

/* A line quotes what peers sent (headers, names, ids): a control
 * character in it would start a forged line (STOMP 1.2's "\n" escape
 * makes a real newline), with a "<N>" priority of its choosing under
 * journald, or move a terminal's cursor. Each is written escaped. */
static void escape_controls(char *out, size_t len, const char *in)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 5 < len; p++) {
        if (*p >= 0x20 && *p != 0x7f) {
            out[o++] = (char)*p;
        } else if (*p == '\n' || *p == '\r' || *p == '\t') {
            out[o++] = '\\';
            out[o++] = *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't';
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
}

void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
    char raw[2048], msg[4096];
    vsnprintf(raw, sizeof raw, fmt, ap);
    escape_controls(msg, sizeof msg, raw);
    pthread_once(&journal_once, detect_journal);
    pthread_mutex_lock(&log_lock);
    if (!log_fp && stderr_is_journal) {
        fprintf(stderr, "<%c>%s%s%s\n", level_prio[level], log_prefix, log_prefix[0] ? " " : "", msg);
    } else {
        struct timeval tv;
        struct tm tm;
        char ts[32], off[8];
        gettimeofday(&tv, NULL);
        localtime_r(&tv.tv_sec, &tm);
        strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
        strftime(off, sizeof off, "%z", &tm);
        fprintf(log_fp ? log_fp : stderr, "%s.%03d%s %s%s%-5s %s\n", ts, (int)(tv.tv_usec / 1000), off,
                log_prefix, log_prefix[0] ? " " : "", level_names[level], msg);
    }
    pthread_mutex_unlock(&log_lock);
}

void log_write(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, fmt, ap);
    va_end(ap);
}

bool log_limit_take(struct log_limit *l, unsigned burst, double every, uint64_t *held)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (burst == 0) {
        *held = 0;
        return true;
    }
    if (now - l->start >= every || now < l->start) {
        l->start = now;
        l->n = 0;
    }
    if (l->n >= burst) {
        l->held++;
        return false;
    }
    l->n++;
    *held = l->held;
    l->held = 0;
    return true;
}

bool log_limited(struct log_limit *l, unsigned burst, double every, const char *area, const char *what)
{
    uint64_t held;
    if (!log_limit_take(l, burst, every, &held))
        return false;
    if (held)
        log_warn("%s: %llu lines about %s were not logged (at most %u every %.0f s)", area, (unsigned long long)held,
                 what, burst, every);
    return true;
}
