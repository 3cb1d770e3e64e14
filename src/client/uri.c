/* Parsing of tcp://, ssl:// and failover: URIs with ActiveMQ's option
 * names and defaults, and the back-off schedule. Strict on purpose: a typo in an
 * option name would otherwise silently mean "the default". */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "uri.h"

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int oom(char *err, size_t errlen)
{
    if (err && errlen)
        snprintf(err, errlen, "out of memory");
    return -ENOMEM;
}

/* s[0..*n) without leading and trailing blanks. */
static const char *trim(const char *s, size_t *n)
{
    while (*n && isspace((unsigned char)s[0])) {
        s++;
        (*n)--;
    }
    while (*n && isspace((unsigned char)s[*n - 1]))
        (*n)--;
    return s;
}

static bool prefix_ci(const char *s, size_t n, const char *prefix)
{
    size_t pl = strlen(prefix);
    return n >= pl && strncasecmp(s, prefix, pl) == 0;
}

/* Options of ActiveMQ's tcp:// transport (and its wire format) that real
 * configurations carry in their broker lists: they tune what this client
 * does its own way (or Java's socket), so they are accepted and ignored.
 * A name ending in '.' is a prefix. Anything else is a mistake. */
static const char *const tcp_ignored[] = {
    "wireFormat.", "transport.", "socket.", "trace", "soTimeout", "soWriteTimeout", "connectionTimeout",
    "keepAlive", "tcpNoDelay", "socketBufferSize", "ioBufferSize", "daemon", "useLocalHost", "closeAsync",
    "useInactivityMonitor", "useKeepAlive", "dynamicManagement", "startLogging", "jmxPort", "minmumWireFormatVersion",
    "logWriterName", "diffServ", "typeOfService", "threadName", "maximumConnections", "allowLinkStealing",
};

static int parse_i64(const char *v, int64_t min, int64_t *out);

/* Every number of the URI is at most this (2^31-1): a time in ms is added
 * to the clock, a count compared with one. */
#define OPT_MAX INT32_MAX

/* The options of one tcp:// URI: connectTimeout is this client's (the
 * per-attempt limit for TCP and CONNECTED), the rest ActiveMQ's. */
static int check_tcp_query(const char *q, size_t n, const char *uri, size_t ul, struct uri_broker *b, char *err,
                           size_t errlen)
{
    while (n) {
        const char *amp = memchr(q, '&', n);
        size_t l = amp ? (size_t)(amp - q) : n;
        const char *eq = memchr(q, '=', l);
        if (l && (!eq || eq == q))
            return fail(err, errlen, "'%.*s': option '%.*s' is not name=value", (int)ul, uri, (int)l, q);
        size_t nl = l ? (size_t)(eq - q) : 0;
        if (nl == strlen("connectTimeout") && !strncmp(q, "connectTimeout", nl)) {
            char v[32];
            size_t vl = l - nl - 1;
            int64_t ms;
            snprintf(v, sizeof v, "%.*s", (int)(vl < sizeof v ? vl : sizeof v - 1), eq + 1);
            if (vl >= sizeof v || parse_i64(v, 1, &ms) != 0)
                return fail(err, errlen, "'%.*s': option connectTimeout: '%.*s' is not a number of milliseconds (1 to 2147483647)",
                            (int)ul, uri, (int)vl, eq + 1);
            b->connect_timeout = ms;
        }
        bool known = !l || (nl == strlen("connectTimeout") && !strncmp(q, "connectTimeout", nl));
        for (size_t i = 0; !known && i < sizeof tcp_ignored / sizeof tcp_ignored[0]; i++) {
            size_t il = strlen(tcp_ignored[i]);
            known = tcp_ignored[i][il - 1] == '.' ? nl > il && !strncmp(q, tcp_ignored[i], il)
                                                 : nl == il && !strncmp(q, tcp_ignored[i], il);
        }
        if (!known)
            return fail(err, errlen, "'%.*s': unknown tcp:// option '%.*s'", (int)ul, uri, (int)nl, q);
        q += l;
        n -= l;
        if (n) {
            q++;
            n--;
        }
    }
    return 0;
}

/* One tcp://host[:port][?transport options] (or stomp://; ssl:// and
 * stomp+ssl:// for TLS), s[0..n). */
static int parse_broker(const char *s, size_t n, struct uri_broker *b, char *err, size_t errlen)
{
    const char *start = s;
    size_t total = n;
    const char *colon = memchr(s, ':', n);
    if (!colon || (size_t)(colon - s) + 3 > n || colon[1] != '/' || colon[2] != '/') {
        if (n == 0)
            return fail(err, errlen, "empty broker URI");
        return fail(err, errlen, "'%.*s' is not a URI (expected tcp://host:port)", (int)total, start);
    }
    size_t sl = (size_t)(colon - s);
    bool tls = (sl == 3 && !strncasecmp(s, "ssl", 3)) || (sl == 9 && !strncasecmp(s, "stomp+ssl", 9));
    if (!tls && !((sl == 3 && !strncasecmp(s, "tcp", 3)) || (sl == 5 && !strncasecmp(s, "stomp", 5))))
        return fail(err, errlen, "'%.*s': unknown scheme '%.*s' (use tcp://, ssl:// or failover:)", (int)total,
                    start, (int)sl, s);
    s = colon + 3;
    n -= sl + 3;
    memset(b, 0, sizeof *b);
    b->connect_timeout = -1;
    b->tls = tls;
    const char *qm = memchr(s, '?', n);
    if (qm) {
        int rc = check_tcp_query(qm + 1, n - (size_t)(qm + 1 - s), start, total, b, err, errlen);
        if (rc)
            return rc;
        n = (size_t)(qm - s);
    }
    if (n && s[n - 1] == '/') /* "tcp://h:1/" is common enough */
        n--;

    const char *host;
    size_t hl;
    const char *rest;
    if (n && s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        if (!rb)
            return fail(err, errlen, "'%.*s': missing ']' after the IPv6 address", (int)total, start);
        host = s + 1;
        hl = (size_t)(rb - s - 1);
        rest = rb + 1;
    } else {
        host = s;
        const char *c = memchr(s, ':', n);
        hl = c ? (size_t)(c - s) : n;
        rest = s + hl;
    }
    size_t rl = (size_t)(s + n - rest);
    if (hl == 0)
        return fail(err, errlen, "'%.*s': missing host", (int)total, start);
    for (size_t i = 0; i < hl; i++)
        if (isspace((unsigned char)host[i]) || host[i] == '/' || host[i] == '@' || host[i] == '[' ||
            host[i] == ']' || host[i] == ',' || host[i] == '(' || host[i] == ')')
            return fail(err, errlen, "'%.*s': bad host '%.*s'", (int)total, start, (int)hl, host);
    long port = URI_DEFAULT_PORT;
    if (rl) {
        if (rest[0] != ':')
            return fail(err, errlen, "'%.*s': unexpected '%.*s' after the host", (int)total, start, (int)rl, rest);
        const char *p = rest + 1;
        size_t pl = rl - 1;
        port = 0;
        bool ok = pl > 0 && pl <= 5;
        for (size_t i = 0; ok && i < pl; i++) {
            if (!isdigit((unsigned char)p[i]))
                ok = false;
            else
                port = port * 10 + (p[i] - '0');
        }
        if (!ok || port < 1 || port > 65535)
            return fail(err, errlen, "'%.*s': bad port '%.*s' (1-65535)", (int)total, start, (int)pl, p);
    }
    b->host = strndup(host, hl);
    b->port = (int)port;
    size_t tl = hl + 32;
    b->text = malloc(tl);
    if (!b->host || !b->text) {
        free(b->host);
        free(b->text);
        b->host = b->text = NULL;
        return oom(err, errlen);
    }
    bool v6 = memchr(host, ':', hl) != NULL;
    snprintf(b->text, tl, "%s://%s%s%s:%d", tls ? "ssl" : "tcp", v6 ? "[" : "", b->host, v6 ? "]" : "", b->port);
    return 0;
}

static void broker_free(struct uri_broker *b)
{
    free(b->host);
    free(b->text);
}

/* Takes b over (frees it on failure). */
static int add_broker(struct uri *u, struct uri_broker *b, char *err, size_t errlen)
{
    struct uri_broker *nb = realloc(u->brokers, (u->nbrokers + 1) * sizeof *nb);
    if (!nb) {
        broker_free(b);
        return oom(err, errlen);
    }
    u->brokers = nb;
    u->brokers[u->nbrokers++] = *b;
    return 0;
}

static ssize_t find_broker(const struct uri *u, const struct uri_broker *b)
{
    for (size_t i = 0; i < u->nbrokers; i++)
        if (u->brokers[i].port == b->port && u->brokers[i].tls == b->tls && !strcasecmp(u->brokers[i].host, b->host))
            return (ssize_t)i;
    return -1;
}

static int parse_i64(const char *v, int64_t min, int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno || x < min || x > OPT_MAX)
        return -1;
    *out = x;
    return 0;
}

static int parse_bool(const char *v, bool *out)
{
    if (!strcasecmp(v, "true")) {
        *out = true;
        return 0;
    }
    if (!strcasecmp(v, "false")) {
        *out = false;
        return 0;
    }
    return -1;
}

enum opt_type { OPT_MS, OPT_ATTEMPTS, OPT_BOOL, OPT_EXPONENT, OPT_TIMEOUT, OPT_POSITIVE, OPT_COUNT, OPT_PRIORITY };

static const struct option {
    const char *name;
    enum opt_type type;
    size_t off;
} options[] = {
    {"initialReconnectDelay", OPT_MS, offsetof(struct uri, initial_reconnect_delay)},
    {"maxReconnectDelay", OPT_MS, offsetof(struct uri, max_reconnect_delay)},
    {"useExponentialBackOff", OPT_BOOL, offsetof(struct uri, use_exponential_backoff)},
    {"reconnectDelayExponent", OPT_EXPONENT, offsetof(struct uri, reconnect_delay_exponent)},
    {"maxReconnectAttempts", OPT_ATTEMPTS, offsetof(struct uri, max_reconnect_attempts)},
    {"startupMaxReconnectAttempts", OPT_ATTEMPTS, offsetof(struct uri, startup_max_reconnect_attempts)},
    {"randomize", OPT_BOOL, offsetof(struct uri, randomize)},
    {"timeout", OPT_TIMEOUT, offsetof(struct uri, timeout)},
    {"backup", OPT_BOOL, offsetof(struct uri, backup)},
    {"backupPoolSize", OPT_COUNT, offsetof(struct uri, backup_pool_size)},
    {"priorityBackup", OPT_BOOL, offsetof(struct uri, priority_backup)},
    {"priorityURIs", OPT_PRIORITY, 0},
    {"trackMessages", OPT_BOOL, offsetof(struct uri, track_messages)},
    {"maxCacheSize", OPT_POSITIVE, offsetof(struct uri, max_cache_size)},
    {"updateURIsSupported", OPT_BOOL, offsetof(struct uri, update_uris_supported)},
    {"connectTimeout", OPT_POSITIVE, offsetof(struct uri, connect_timeout)},
    {"connectAttemptDelay", OPT_MS, offsetof(struct uri, connect_attempt_delay)},
    {"maxRefusedReconnectDelay", OPT_MS, offsetof(struct uri, max_refused_reconnect_delay)},
};

/* FailoverTransport options this client knows of but does not implement:
 * named as such rather than as typos. */
static const char *const unsupported[] = {
    "trackTransactionProducers", "maxPullCacheSize", "updateURIsURL", "rebalanceUpdateURIs",
    "reconnectSupported", "nested.", "warnAfterReconnectAttempts",
};

/* priorityURIs=uri1,uri2: each must be one of the list's brokers. */
static int set_priority(struct uri *u, const char *value, char *err, size_t errlen)
{
    for (size_t i = 0; i < u->nbrokers; i++)
        u->brokers[i].priority = false;
    const char *p = value;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t l = comma ? (size_t)(comma - p) : strlen(p);
        const char *item = trim(p, &l);
        struct uri_broker b;
        char why[256];
        int rc = l ? parse_broker(item, l, &b, why, sizeof why) : fail(why, sizeof why, "empty entry");
        if (rc == -ENOMEM)
            return oom(err, errlen);
        if (rc)
            return fail(err, errlen, "option priorityURIs: %s", why);
        ssize_t at = find_broker(u, &b);
        broker_free(&b);
        if (at < 0)
            return fail(err, errlen, "option priorityURIs: '%.*s' is not in the broker list", (int)l, item);
        u->brokers[at].priority = true;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

static int set_option(struct uri *u, const char *name, const char *value, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
        const struct option *o = &options[i];
        if (strcmp(o->name, name))
            continue;
        void *slot = (char *)u + o->off;
        int64_t n;
        switch (o->type) {
        case OPT_MS:
            if (parse_i64(value, 0, &n) != 0)
                return fail(err, errlen, "option %s: '%s' is not a number of milliseconds (0 to 2147483647)", name, value);
            *(int64_t *)slot = n;
            return 0;
        case OPT_POSITIVE:
            if (parse_i64(value, 1, &n) != 0)
                return fail(err, errlen, "option %s: '%s' is not a number from 1 to 2147483647", name, value);
            *(int64_t *)slot = n;
            return 0;
        case OPT_COUNT:
            if (parse_i64(value, 0, &n) != 0)
                return fail(err, errlen, "option %s: '%s' is not a count (0 to 2147483647)", name, value);
            *(int64_t *)slot = n;
            return 0;
        case OPT_ATTEMPTS:
            if (parse_i64(value, -1, &n) != 0)
                return fail(err, errlen, "option %s: '%s' is not a count (-1 for unlimited, or 0 to 2147483647)", name, value);
            *(int64_t *)slot = n;
            return 0;
        case OPT_TIMEOUT:
            if (parse_i64(value, -1, &n) != 0)
                return fail(err, errlen, "option %s: '%s' is not a number of milliseconds (-1 or 0 for none, or up to "
                            "2147483647)",
                            name, value);
            *(int64_t *)slot = n == 0 ? -1 : n; /* as ActiveMQ: only a timeout > 0 limits */
            return 0;
        case OPT_BOOL:
            if (parse_bool(value, slot) != 0)
                return fail(err, errlen, "option %s: '%s' is not true or false", name, value);
            return 0;
        case OPT_PRIORITY:
            return set_priority(u, value, err, errlen);
        case OPT_EXPONENT: {
            char *end;
            errno = 0;
            double d = strtod(value, &end);
            if (end == value || *end || errno || !isfinite(d) || d < 1.0)
                return fail(err, errlen, "option %s: '%s' is not a number >= 1", name, value);
            *(double *)slot = d;
            return 0;
        }
        }
    }
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        size_t l = strlen(unsupported[i]);
        if (unsupported[i][l - 1] == '.' ? !strncmp(name, unsupported[i], l) : !strcmp(name, unsupported[i]))
            return fail(err, errlen, "option %s is an ActiveMQ failover option this client does not support", name);
    }
    return fail(err, errlen, "unknown option '%s'", name);
}

static int parse_query(struct uri *u, const char *q, char *err, size_t errlen)
{
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t l = amp ? (size_t)(amp - q) : strlen(q);
        if (l) {
            const char *eq = memchr(q, '=', l);
            if (!eq)
                return fail(err, errlen, "option '%.*s' has no value (name=value)", (int)l, q);
            if (eq == q)
                return fail(err, errlen, "option '%.*s' has no name", (int)l, q);
            char name[64], value[2048]; /* priorityURIs holds a list */
            size_t nl = (size_t)(eq - q), vl = l - nl - 1;
            if (nl >= sizeof name)
                return fail(err, errlen, "unknown option '%.*s'", (int)nl, q);
            if (vl >= sizeof value)
                return fail(err, errlen, "option %.*s: value too long", (int)nl, q);
            memcpy(name, q, nl);
            name[nl] = '\0';
            memcpy(value, eq + 1, vl);
            value[vl] = '\0';
            int rc = set_option(u, name, value, err, errlen);
            if (rc)
                return rc;
        }
        if (!amp)
            break;
        q = amp + 1;
    }
    return 0;
}

static void defaults(struct uri *u)
{
    memset(u, 0, sizeof *u);
    u->initial_reconnect_delay = 10;
    u->max_reconnect_delay = 30000;
    u->use_exponential_backoff = true;
    u->reconnect_delay_exponent = 2.0;
    u->max_reconnect_attempts = -1;
    u->startup_max_reconnect_attempts = -1;
    u->randomize = true;
    u->timeout = -1;
    u->backup_pool_size = 1;
    u->max_cache_size = -1;
    u->update_uris_supported = true;
    u->connect_timeout = -1;
    u->connect_attempt_delay = 250;
    u->max_refused_reconnect_delay = 500;
}

/* The list: tcp://... entries separated by commas, list[0..ll). */
static int parse_list(struct uri *u, const char *list, size_t ll, char *err, size_t errlen)
{
    const char *p = list;
    const char *end = list + ll;
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t il = comma ? (size_t)(comma - p) : (size_t)(end - p);
        const char *item = trim(p, &il);
        if (il == 0)
            return fail(err, errlen, "empty entry in the broker list");
        struct uri_broker b;
        int rc = parse_broker(item, il, &b, err, errlen);
        if (rc)
            return rc;
        if ((rc = add_broker(u, &b, err, errlen)))
            return rc;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

static int parse_failover(struct uri *u, const char *s, size_t n, char *err, size_t errlen)
{
    u->failover = true;
    if (n >= 2 && s[0] == '/' && s[1] == '/') {
        s += 2;
        n -= 2;
    }
    s = trim(s, &n);
    const char *list, *query = NULL;
    size_t ll, ql = 0;
    if (n && s[0] == '(') {
        const char *close = NULL;
        for (size_t i = n; i-- > 0;)
            if (s[i] == ')') {
                close = s + i;
                break;
            }
        if (!close)
            return fail(err, errlen, "missing ')' after the broker list");
        list = s + 1;
        ll = (size_t)(close - list);
        const char *tail = close + 1;
        size_t tl = (size_t)(s + n - tail);
        tail = trim(tail, &tl);
        if (tl && tail[0] != '?')
            return fail(err, errlen, "unexpected '%.*s' after the broker list", (int)tl, tail);
        if (tl) {
            query = tail + 1;
            ql = tl - 1;
        }
    } else {
        /* ActiveMQ's second form, failover:uri1,uri2; a trailing ?query
         * can only mean failover options, since tcp:// takes none here. */
        list = s;
        const char *q = memchr(s, '?', n);
        ll = q ? (size_t)(q - s) : n;
        if (q) {
            query = q + 1;
            ql = n - ll - 1;
        }
    }
    for (size_t i = 0; i < ll; i++)
        if (prefix_ci(list + i, ll - i, "failover:"))
            return fail(err, errlen, "nested failover: URIs are not supported");
    if (memchr(list, '(', ll) || memchr(list, ')', ll))
        return fail(err, errlen, "unbalanced parentheses in the broker list");
    list = trim(list, &ll);
    if (ll == 0)
        return fail(err, errlen, "empty broker list");
    int rc = parse_list(u, list, ll, err, errlen);
    if (rc)
        return rc;
    u->brokers[0].priority = true; /* ActiveMQ's default: the first */
    if (query) {
        char *qs = strndup(query, ql);
        if (!qs)
            return oom(err, errlen);
        rc = parse_query(u, qs, err, errlen);
        free(qs);
        if (rc)
            return rc;
    }
    return 0;
}

int uri_parse(const char *text, struct uri *u, char *err, size_t errlen)
{
    defaults(u);
    if (err && errlen)
        err[0] = '\0';
    if (!text)
        return fail(err, errlen, "no URI");
    size_t n = strlen(text);
    const char *s = trim(text, &n);
    if (n == 0)
        return fail(err, errlen, "empty URI");
    if (prefix_ci(s, n, "failover:"))
        return parse_failover(u, s + 9, n - 9, err, errlen);
    struct uri_broker b;
    int rc = parse_broker(s, n, &b, err, errlen);
    if (rc)
        return rc;
    return add_broker(u, &b, err, errlen);
}

bool uri_has_tls(const struct uri *u)
{
    for (size_t i = 0; i < u->nbrokers; i++)
        if (u->brokers[i].tls)
            return true;
    return false;
}

void uri_free(struct uri *u)
{
    for (size_t i = 0; i < u->nbrokers; i++)
        broker_free(&u->brokers[i]);
    free(u->brokers);
    u->brokers = NULL;
    u->nbrokers = u->nlearned = 0;
}

int uri_learn(struct uri *u, const char *text, size_t len)
{
    char err[160], buf[320];
    const char *s = text;
    size_t n = len;
    s = trim(s, &n);
    if (n == 0)
        return -EINVAL;
    if (!memmem(s, n, "://", 3)) {
        /* host:port, as ZooKeeper members publish it */
        if (n + 7 > sizeof buf)
            return -EINVAL;
        snprintf(buf, sizeof buf, "tcp://%.*s", (int)n, s);
        s = buf;
        n = strlen(buf);
    }
    struct uri_broker b;
    int rc = parse_broker(s, n, &b, err, sizeof err);
    if (rc)
        return rc == -ENOMEM ? -ENOMEM : -EINVAL;
    if (memchr(s, '?', n) || find_broker(u, &b) >= 0 || u->nlearned >= URI_MAX_LEARNED ||
        (uri_has_tls(u) && !b.tls)) {
        broker_free(&b);
        return 0;
    }
    b.learned = true;
    if ((rc = add_broker(u, &b, err, sizeof err)))
        return rc;
    u->nlearned++;
    return 1;
}

int64_t uri_reconnect_delay(const struct uri *u, unsigned failures)
{
    int64_t initial = u->initial_reconnect_delay;
    if (!u->failover)
        return 0;
    if (failures <= 1 || !u->use_exponential_backoff)
        return initial;
    /* In doubles, so a long outage cannot overflow before the cap. */
    double d = (double)initial;
    for (unsigned i = 1; i < failures && d > 0 && d < (double)u->max_reconnect_delay; i++)
        d *= u->reconnect_delay_exponent;
    if (d > (double)u->max_reconnect_delay)
        return u->max_reconnect_delay;
    return (int64_t)d;
}

int64_t uri_refused_delay(const struct uri *u, unsigned refusals)
{
    int64_t d = uri_reconnect_delay(u, refusals);
    return d > u->max_refused_reconnect_delay ? u->max_refused_reconnect_delay : d;
}

bool uri_give_up(const struct uri *u, unsigned failures, bool startup)
{
    if (!u->failover)
        return true;
    int64_t limit = u->max_reconnect_attempts;
    if (startup && u->startup_max_reconnect_attempts != -1)
        limit = u->startup_max_reconnect_attempts;
    if (limit < 0)
        return false;
    return (int64_t)failures >= limit;
}

uint64_t uri_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void shuffle(size_t *a, size_t n, uint64_t *rng)
{
    for (size_t i = n; i-- > 1;) {
        size_t j = (size_t)(uri_rand(rng) % (i + 1));
        size_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

void uri_connect_order(const struct uri *u, size_t last_failed, uint64_t *rng, size_t *order)
{
    /* priority brokers (with priorityBackup) first, then the others; each
     * group shuffled when randomize is set; the one that failed last */
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t from = n;
        for (size_t i = 0; i < u->nbrokers; i++) {
            bool first = u->priority_backup && u->brokers[i].priority;
            if (i != last_failed && first == (pass == 0))
                order[n++] = i;
        }
        if (u->randomize)
            shuffle(order + from, n - from, rng);
    }
    if (last_failed < u->nbrokers)
        order[n++] = last_failed;
}
