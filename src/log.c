/* Logging: a timestamped line per event on stderr or a file. Writes are
 * single fprintf calls on an unbuffered-per-line stream so lines from the
 * store thread and the loop thread never interleave mid-line. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "stompd/log.h"

enum log_level log_level_current = LOG_INFO;
static FILE *log_fp;
static char log_prefix[64];

static const char *const level_names[] = {"debug", "info", "warn", "error", "none"};

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

int log_open_file(const char *path)
{
    FILE *fp = fopen(path, "a");
    if (!fp)
        return -errno;
    setvbuf(fp, NULL, _IOLBF, 0);
    if (log_fp)
        fclose(log_fp);
    log_fp = fp;
    return 0;
}

void log_close(void)
{
    if (log_fp) {
        fclose(log_fp);
        log_fp = NULL;
    }
}

void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
    char msg[2048];
    struct timeval tv;
    struct tm tm;
    char ts[32];

    vsnprintf(msg, sizeof msg, fmt, ap);
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(log_fp ? log_fp : stderr, "%s.%03d %s%s%-5s %s\n", ts, (int)(tv.tv_usec / 1000),
            log_prefix, log_prefix[0] ? " " : "", level_names[level], msg);
}

void log_write(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, fmt, ap);
    va_end(ap);
}
