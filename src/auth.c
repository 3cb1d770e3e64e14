/* Authentication (see auth.h): the users file, the protected-mode rule,
 * password checks on worker threads with a keyed cache in front, the
 * console's logins, counting and rate-limited logging of failures, and
 * stompd --hash-password. The only file that includes crypt.h. */
#include "config.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>
#include <uthash.h>

#include "stompd/auth.h"
#include "stompd/config.h"
#include "stompd/handoff.h"
#include "stompd/log.h"

#define SHA256_LEN 32 /* an HMAC-SHA-256 */

#define MAX_GROUPS 64
#define MAX_NAME 256
#define MAX_PASSWORD 4096
#define FAILURE_LOG_EVERY 1.0 /* seconds between two lines about failed logins */

/* ------------------------------------------------------------ the client listeners */

/* Every listener that accepts clients, by its configuration key: the
 * protected-mode rule covers each. A new client listener adds its line. */
static const struct client_listener {
    const char *key;
    size_t offset; /* of its char * in struct config */
} client_listeners[] = {
    {"stomp.listen", offsetof(struct config, stomp_listen)},
    {"stomp.ws_listen", offsetof(struct config, ws_listen)},
    {"stomp.tls_listen", offsetof(struct config, stomp_tls_listen)},
    {"stomp.wss_listen", offsetof(struct config, wss_listen)},
};

#define NLISTENERS (sizeof client_listeners / sizeof client_listeners[0])

static bool ip_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

bool auth_addr_is_loopback(const char *addr)
{
    char host[256];
    int port;
    if (config_split_hostport(addr, host, sizeof host, &port) != 0 || !host[0])
        return false;
    /* resolved as the listener resolves it; every address must be loopback */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return false;
    bool all = res != NULL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        all &= ip_is_loopback(ai->ai_addr);
    freeaddrinfo(res);
    return all;
}

int auth_exposure_check(const struct config *listeners, const char *users, const char *anonymous, char *err,
                        size_t errlen)
{
    bool have_users = users && users[0];
    if (!strcmp(anonymous, "false") && !have_users) {
        snprintf(err, errlen, "auth.anonymous = false and auth.users is not set: no client could ever connect; "
                              "set auth.users to a users file (stompd --hash-password makes its hashes)");
        return -EPERM;
    }
    if (strcmp(anonymous, "auto") || have_users)
        return 0;
    for (size_t i = 0; i < NLISTENERS; i++) {
        const char *addr = *(char *const *)((const char *)listeners + client_listeners[i].offset);
        if (!addr || !addr[0] || auth_addr_is_loopback(addr))
            continue;
        snprintf(err, errlen,
                 "%s = %s is not a loopback address and auth.users is not set: anyone who can reach it could "
                 "connect without a password. Set auth.users to a users file (stompd --hash-password makes its "
                 "hashes), or set auth.anonymous = true to accept anonymous clients there on purpose",
                 client_listeners[i].key, addr);
        return -EPERM;
    }
    return 0;
}

/* The console's protected mode: off loopback it must not take the
 * default admin/admin, which anyone would try first (whoever gets in can
 * purge, delete and send). Turning its login off (http.auth = false) is
 * a choice, warned about at start. */
static int console_exposure_check(const struct config *listeners, const struct config *cfg, char *err, size_t errlen)
{
    const char *addr = listeners->http_listen;
    if (!addr || !addr[0] || !cfg->http_auth || cfg->auth_users[0] || strcmp(cfg->admin_user, "admin") ||
        strcmp(cfg->admin_password, "admin") || auth_addr_is_loopback(addr))
        return 0;
    snprintf(err, errlen,
             "http.listen = %s is not a loopback address and the console's login is the default admin/admin: anyone "
             "who can reach it could purge, delete and send. Set http.admin_password (stompd --hash-password makes a "
             "hash) or auth.users, or listen on loopback",
             addr);
    return -EPERM;
}

/* Anonymous clients on a listener others can reach, by choice: said once. */
static void warn_exposed(const struct config *listeners)
{
    for (size_t i = 0; i < NLISTENERS; i++) {
        const char *addr = *(char *const *)((const char *)listeners + client_listeners[i].offset);
        if (addr && addr[0] && !auth_addr_is_loopback(addr))
            log_warn("auth.anonymous = true: anyone who reaches %s (%s) can connect without a password", addr,
                     client_listeners[i].key);
    }
}

/* ------------------------------------------------------------ the users file */

struct user {
    char *name;
    char *hash;
    struct principal *who;
    UT_hash_handle hh;
};

struct userdb {
    struct user *by_name;
    size_t n;
    char *dummy;  /* a hash an unknown user's password is checked against, for the same cost */
};

static void userdb_free(struct userdb *db)
{
    if (!db)
        return;
    struct user *u, *tmp;
    HASH_ITER(hh, db->by_name, u, tmp) {
        HASH_DEL(db->by_name, u);
        free(u->name);
        free(u->hash);
        principal_unref(u->who);
        free(u);
    }
    free(db->dummy);
    free(db);
}

static bool name_char(unsigned char c)
{
    return c > ' ' && c < 0x7f && c != ':';
}

static bool group_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '-' || c == '.' || c == '@';
}

/* Length of the checksum after the last '$' for the methods whose
 * output size is fixed, so a hash cut short in a copy is refused at load
 * rather than failing every login. 0: not checked. */
static size_t checksum_len(const char *hash)
{
    static const struct {
        const char *prefix;
        size_t len;
    } methods[] = {{"$y$", 43}, {"$gy$", 43}, {"$7$", 43}, {"$6$", 86}, {"$5$", 43}, {"$2b$", 53}, {"$2y$", 53}};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (!strncmp(hash, methods[i].prefix, strlen(methods[i].prefix)))
            return methods[i].len;
    return 0;
}

/* Is hash a crypt(3) hash we accept? NULL if so, else why not. */
static const char *hash_problem(const char *hash)
{
    if (hash[0] != '$')
        return "is not a crypt(3) hash (they start with $; make one with stompd --hash-password)";
    switch (crypt_checksalt(hash)) {
    case CRYPT_SALT_OK:
        break;
    case CRYPT_SALT_METHOD_LEGACY:
        return "uses a weak legacy method: make a new one with stompd --hash-password (yescrypt)";
    case CRYPT_SALT_METHOD_DISABLED:
        return "uses a method this system's libcrypt has disabled: make a new one with stompd --hash-password";
    default:
        return "is not a crypt(3) hash this system's libcrypt knows (make one with stompd --hash-password)";
    }
    size_t want = checksum_len(hash);
    const char *last = strrchr(hash, '$');
    if (want && strlen(last + 1) != want)
        return "is cut short or too long (its method's checksum has a fixed length): copy the whole line "
               "stompd --hash-password printed";
    return NULL;
}

static int parse_user_line(struct userdb *db, char *line, const char *path, int lineno, char *err, size_t errlen)
{
    char *fields[3] = {line, NULL, NULL};
    int nf = 1;
    for (char *p = line; *p; p++) {
        if (*p != ':')
            continue;
        if (nf == 3) {
            snprintf(err, errlen, "%s:%d: too many ':' (expected name:HASH or name:HASH:group,group...)", path,
                     lineno);
            return -EINVAL;
        }
        *p = '\0';
        fields[nf++] = p + 1;
    }
    const char *name = fields[0], *hash = fields[1];
    if (nf < 2 || !name[0] || !hash[0]) {
        snprintf(err, errlen, "%s:%d: expected name:HASH or name:HASH:group,group...", path, lineno);
        return -EINVAL;
    }
    if (strlen(name) > MAX_NAME) {
        snprintf(err, errlen, "%s:%d: the user name is longer than %d bytes", path, lineno, MAX_NAME);
        return -EINVAL;
    }
    for (const char *p = name; *p; p++) {
        if (!name_char((unsigned char)*p)) {
            snprintf(err, errlen, "%s:%d: the user name has a space or control character", path, lineno);
            return -EINVAL;
        }
    }
    const char *why = hash_problem(hash);
    if (why) {
        snprintf(err, errlen, "%s:%d: the hash of user '%s' %s", path, lineno, name, why);
        return -EINVAL;
    }
    struct user *u;
    HASH_FIND_STR(db->by_name, name, u);
    if (u) {
        snprintf(err, errlen, "%s:%d: user '%s' is listed twice", path, lineno, name);
        return -EINVAL;
    }
    const char *groups[MAX_GROUPS];
    size_t ng = 0;
    char *g = fields[2];
    while (g && *g) {
        char *comma = strchr(g, ',');
        if (comma)
            *comma = '\0';
        if (!*g || ng == MAX_GROUPS) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno,
                     *g ? "more than 64 groups" : "an empty group name (groups are separated by single commas)");
            return -EINVAL;
        }
        for (const char *p = g; *p; p++) {
            if (!group_char((unsigned char)*p)) {
                snprintf(err, errlen, "%s:%d: group '%.64s': group names are letters, digits and _ - . @", path,
                         lineno, g);
                return -EINVAL;
            }
        }
        groups[ng++] = g;
        g = comma ? comma + 1 : NULL;
    }
    u = calloc(1, sizeof *u);
    if (!u || !(u->name = strdup(name)) || !(u->hash = strdup(hash)))
        abort();
    u->who = principal_new(name, groups, ng, false);
    HASH_ADD_KEYPTR(hh, db->by_name, u->name, strlen(u->name), u);
    db->n++;
    return 0;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    size_t lead = strspn(s, " \t");
    memmove(s, s + lead, n - lead + 1);
}

/* A hash in the default method, of nothing anyone can type: what an
 * unknown user's password is checked against when no user gives one. */
static char *make_dummy(void)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    if (!crypt_gensalt_rn(NULL, 0, NULL, 0, setting, sizeof setting))
        return NULL;
    return strdup(setting);
}

static int userdb_load(const char *path, struct userdb **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, errlen, "cannot open the users file %s (auth.users): %s", path, strerror(errno));
        return -errno;
    }
    struct userdb *db = calloc(1, sizeof *db);
    if (!db)
        abort();
    char line[8192];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, fp)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(fp)) {
            snprintf(err, errlen, "%s:%d: line longer than %zu bytes", path, lineno, sizeof line - 2);
            rc = -EINVAL;
            break;
        }
        trim(line);
        if (!line[0] || line[0] == '#')
            continue;
        if ((rc = parse_user_line(db, line, path, lineno, err, errlen)) != 0)
            break;
    }
    if (rc == 0 && ferror(fp)) {
        snprintf(err, errlen, "cannot read the users file %s (auth.users): %s", path, strerror(errno));
        rc = -EIO;
    }
    struct stat st;
    bool world = fstat(fileno(fp), &st) == 0 && (st.st_mode & S_IROTH);
    if (rc == 0)
        rc = config_check_rights_file(fileno(fp), path, "auth.users", err, errlen);
    fclose(fp);
    if (rc != 0) {
        explicit_bzero(line, sizeof line);
        userdb_free(db);
        return rc;
    }
    if (world)
        log_warn("the users file %s can be read by every user of this machine: chmod o-r it", path);
    /* an existing user's hash: an unknown name costs what a known one does */
    db->dummy = db->by_name ? strdup(db->by_name->hash) : make_dummy();
    if (!db->dummy) {
        snprintf(err, errlen, "libcrypt cannot make a salt: %s", strerror(errno));
        userdb_free(db);
        return -EIO;
    }
    *out = db;
    return 0;
}

/* ------------------------------------------------------------ state */

struct job;

struct auth_wait {
    struct job *job;
    auth_done_fn done;
    void *arg;
    struct auth_wait *prev, *next;
};

/* One crypt(3) check. The worker reads hash and password and writes ok;
 * everything else belongs to the loop thread. */
struct job {
    struct handoff_node node;           /* first: queued on a worker, then back to the loop */
    uint8_t key[SHA256_LEN];            /* HMAC(user, password, hash): the cache's and the in-flight table's key */
    char *name;
    char *hash;
    char *password;                     /* wiped by the worker */
    size_t worker;
    struct principal *who;              /* NULL: nobody to log in as (unknown user) */
    bool ok;
    atomic_bool abandoned;              /* nobody waits: the worker skips it */
    bool in_table;                      /* in A.inflight (joinable) */
    bool dispatched;                    /* given to a worker (else waiting in its peer's queue) */
    bool finishing;                     /* its waiters are being answered (finish) */
    uint64_t users_gen;                 /* A.users_gen when it began */
    bool fallback;                      /* of the console's http.admin_user (key_of) */
    struct peer_checks *peer;           /* whose queue and count it is in (NULL: none any more) */
    TAILQ_ENTRY(job) peer_link;         /* in peer->waiting, until dispatched */
    struct auth_wait *waiters;
    UT_hash_handle hh;                  /* in flight, by key */
};

/* The checks of one client address: those waiting for a worker, in order,
 * and how many of its checks are not done (auth.max_checks_per_peer).
 * Addresses with checks waiting take turns at the workers. */
struct peer_checks {
    char addr[64];
    size_t n;
    TAILQ_HEAD(, job) waiting;
    TAILQ_ENTRY(peer_checks) turn_link; /* in A.turns while it has checks waiting */
    UT_hash_handle hh;
};

struct worker {
    pthread_t thread;
    struct handoff in;
    size_t queued;                      /* jobs given and not back yet (loop thread) */
    bool running;
};

/* A remembered login: the user's name and the key of its last good check. */
struct cached {
    char *name;
    uint8_t key[SHA256_LEN];
    UT_hash_handle hh;
};

static struct {
    struct userdb *users;
    uint64_t users_gen;                 /* reloads of the users (and fallback) so far */
    bool anonymous;                     /* CONNECT without credentials is allowed */
    struct principal *anon;
    bool cache_on;
    /* the console's fallback login */
    bool fallback;
    bool fallback_hashed;
    char *fallback_user, *fallback_password;
    struct principal *fallback_who;
    char *console_dummy;
    uint8_t hmac_key[32];
    bool key_ready;
    struct ev_loop *loop;
    struct worker *workers;
    size_t nworkers;
    struct handoff done;
    ev_async done_async;
    struct job *inflight;
    struct peer_checks *peers;
    TAILQ_HEAD(, peer_checks) turns;    /* addresses with checks waiting, the next first */
    size_t dispatched;                  /* checks given to the workers and not back */
    struct cached *cache;
    struct auth_stats st;
    /* rate-limited failure log */
    ev_timer flush;
    ev_tstamp last_logged;
    uint64_t unlogged;
} A;

static int ensure_key(char *err, size_t errlen)
{
    if (A.key_ready)
        return 0;
    if (getrandom(A.hmac_key, sizeof A.hmac_key, 0) != (ssize_t)sizeof A.hmac_key) {
        snprintf(err, errlen, "cannot get random bytes for the login cache: %s", strerror(errno));
        return -EIO;
    }
    A.key_ready = true;
    return 0;
}

/* HMAC-SHA-256 (OpenSSL), keyed at start, of a kind byte, then name NUL
 * password NUL hash. fallback (kind 'F'): a check of the console's
 * http.admin_user, which grants another identity than a user of the file
 * by the same name and hash: the two never share a check (helper-95: a
 * STOMP login joined to one would have been the console's admin). */
static void key_of(const char *name, const char *password, const char *hash, bool fallback,
                   uint8_t out[SHA256_LEN])
{
    size_t nl = strlen(name), pl = strlen(password), hl = strlen(hash);
    size_t n = 1 + nl + 1 + pl + 1 + hl;
    char *msg = malloc(n);
    if (!msg)
        abort();
    msg[0] = fallback ? 'F' : 'U';
    memcpy(msg + 1, name, nl + 1);
    memcpy(msg + 1 + nl + 1, password, pl + 1);
    memcpy(msg + 1 + nl + 1 + pl + 1, hash, hl);
    unsigned int len = SHA256_LEN;
    if (!HMAC(EVP_sha256(), A.hmac_key, (int)sizeof A.hmac_key, (const unsigned char *)msg, n, out, &len))
        abort();
    explicit_bzero(msg, n);
    free(msg);
}

static bool same_key(const uint8_t *a, const uint8_t *b)
{
    unsigned diff = 0;
    for (size_t i = 0; i < SHA256_LEN; i++)
        diff |= a[i] ^ b[i];
    return diff == 0;
}

/* Constant time in the length of the longer string. */
static bool same_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), n = la > lb ? la : lb;
    unsigned diff = (unsigned)(la ^ lb);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(i < la ? a[i] : 0) ^ (unsigned char)(i < lb ? b[i] : 0);
    return diff == 0;
}

bool auth_anonymous_allowed(void)
{
    return A.anonymous;
}

struct principal *auth_anonymous(void)
{
    if (!A.anon) {
        const char *g = "anonymous";
        A.anon = principal_new("anonymous", &g, 1, true);
    }
    return A.anon;
}

/* A user of the users file now, or NULL. */
static struct user *find_user(const char *name)
{
    struct user *u = NULL;
    if (A.users)
        HASH_FIND_STR(A.users->by_name, name, u);
    return u;
}

struct principal *auth_user(const char *name)
{
    struct user *u = find_user(name);
    return u ? u->who : NULL;
}

bool auth_has_users(void)
{
    return A.users != NULL;
}

/* crypt(3) runs, counted by the workers */
static atomic_uint_fast64_t checks_run;

void auth_get_stats(struct auth_stats *out)
{
    *out = A.st;
    out->checks = (uint64_t)atomic_load(&checks_run);
}

/* ------------------------------------------------------------ configuration */

static bool is_hash(const char *s)
{
    return s[0] == '$' && crypt_checksalt(s) == CRYPT_SALT_OK;
}

int auth_check_config(const struct config *listeners, const struct config *cfg, char *err, size_t errlen)
{
    int rc = auth_exposure_check(listeners, cfg->auth_users, cfg->auth_anonymous, err, errlen);
    if (rc != 0 || (rc = console_exposure_check(listeners, cfg, err, errlen)) != 0)
        return rc;
    if (cfg->auth_users[0]) {
        struct userdb *db;
        if ((rc = userdb_load(cfg->auth_users, &db, err, errlen)) != 0)
            return rc;
        userdb_free(db);
    }
    if (cfg->admin_password[0] == '$' && !is_hash(cfg->admin_password)) {
        snprintf(err, errlen, "http.admin_password starts with $ but is not a crypt(3) hash this system knows "
                              "(make one with stompd --hash-password)");
        return -EINVAL;
    }
    return 0;
}

static void set_str(char **slot, const char *v)
{
    free(*slot);
    *slot = v ? strdup(v) : NULL;
    if (v && !*slot)
        abort();
}

int auth_configure(const struct config *listeners, const struct config *cfg, char *err, size_t errlen)
{
    int rc = auth_exposure_check(listeners, cfg->auth_users, cfg->auth_anonymous, err, errlen);
    if (rc != 0 || (rc = console_exposure_check(listeners, cfg, err, errlen)) != 0 ||
        (rc = ensure_key(err, errlen)) != 0)
        return rc;
    struct userdb *db = NULL;
    if (cfg->auth_users[0] && (rc = userdb_load(cfg->auth_users, &db, err, errlen)) != 0)
        return rc;
    if (cfg->admin_password[0] == '$' && !is_hash(cfg->admin_password)) {
        snprintf(err, errlen, "http.admin_password starts with $ but is not a crypt(3) hash this system knows "
                              "(make one with stompd --hash-password)");
        userdb_free(db);
        return -EINVAL;
    }
    char *dummy = A.console_dummy ? NULL : make_dummy();
    if (!A.console_dummy && !dummy) {
        snprintf(err, errlen, "libcrypt cannot make a salt: %s", strerror(errno));
        userdb_free(db);
        return -EIO;
    }
    if (dummy)
        A.console_dummy = dummy;
    /* nothing can fail from here on */
    userdb_free(A.users);
    A.users = db;
    A.users_gen++;
    /* a check under way finishes as whom its login was when it began: a
     * CONNECT read from now on meets the new file, so it joins none of
     * them (helper-79: a user taken out of a group kept its permissions
     * by joining a check begun before the reload) */
    struct job *j, *jtmp;
    HASH_ITER(hh, A.inflight, j, jtmp) {
        HASH_DEL(A.inflight, j);
        j->in_table = false;
    }
    A.anonymous = !strcmp(cfg->auth_anonymous, "true") || (!strcmp(cfg->auth_anonymous, "auto") && !db);
    A.cache_on = cfg->auth_cache;
    if (!A.cache_on || !db) {
        struct cached *c, *tmp;
        HASH_ITER(hh, A.cache, c, tmp) {
            HASH_DEL(A.cache, c);
            free(c->name);
            free(c);
        }
    } else {
        /* names no longer listed go; a changed hash no longer matches its key */
        struct cached *c, *tmp;
        HASH_ITER(hh, A.cache, c, tmp) {
            struct user *u;
            HASH_FIND_STR(db->by_name, c->name, u);
            if (!u && strcmp(c->name, cfg->admin_user)) {
                HASH_DEL(A.cache, c);
                free(c->name);
                free(c);
            }
        }
    }
    if (!strcmp(cfg->auth_anonymous, "true"))
        warn_exposed(listeners);
    A.fallback = cfg->http_auth && cfg->admin_user[0] && !(db && !strcmp(cfg->admin_password, "admin"));
    A.fallback_hashed = is_hash(cfg->admin_password);
    set_str(&A.fallback_user, cfg->admin_user);
    set_str(&A.fallback_password, cfg->admin_password);
    principal_unref(A.fallback_who);
    const char *g = cfg->admin_group;
    A.fallback_who = principal_new(cfg->admin_user, &g, 1, false);
    if (db)
        log_info("auth: %zu users from %s; anonymous clients %s", db->n, cfg->auth_users,
                 A.anonymous ? "allowed (auth.anonymous = true)" : "refused");
    if (cfg->http_auth && db && !A.fallback && cfg->admin_user[0])
        log_info("console: http.admin_user '%s' with the default password is not accepted while auth.users is "
                 "set; members of group '%s' may log in", cfg->admin_user, cfg->admin_group);
    return 0;
}

int auth_reload(const struct config *next, char *err, size_t errlen)
{
    /* the listeners that are open now are the ones to protect */
    return auth_configure(&config, next, err, errlen);
}

/* ------------------------------------------------------------ the workers */

/* Set while stopping: what is still queued fails without its crypt(3). */
static atomic_bool stopping;

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct crypt_data *cd = malloc(sizeof *cd);
    if (!cd)
        abort();
    struct handoff_node *n;
    while ((n = handoff_wait(&w->in))) {
        while (n) {
            struct handoff_node *next = n->next;
            struct job *j = (struct job *)n;
            const char *out = NULL;
            if (!atomic_load(&stopping) && !atomic_load(&j->abandoned)) {
                out = crypt_rn(j->password, j->hash, cd, (int)sizeof *cd);
                atomic_fetch_add(&checks_run, 1);
            }
            j->ok = out && out[0] != '*' && same_secret(out, j->hash);
            explicit_bzero(j->password, strlen(j->password));
            explicit_bzero(cd, sizeof *cd);
            handoff_push(&A.done, n);
            n = next;
        }
        handoff_done(&w->in);
    }
    free(cd);
    return NULL;
}

static void job_free(struct job *j)
{
    free(j->name);
    free(j->hash);
    if (j->password) {
        explicit_bzero(j->password, strlen(j->password));
        free(j->password);
    }
    principal_unref(j->who);
    free(j);
}

static void remember(const struct job *j)
{
    struct cached *c;
    HASH_FIND_STR(A.cache, j->name, c);
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c || !(c->name = strdup(j->name)))
            abort();
        HASH_ADD_KEYPTR(hh, A.cache, c->name, strlen(c->name), c);
    }
    memcpy(c->key, j->key, SHA256_LEN);
}

/* The job no longer counts to its peer (nor waits in its queue, nor as
 * pending), and no new login joins it. */
static void retire(struct job *j)
{
    if (j->in_table) {
        HASH_DEL(A.inflight, j);
        j->in_table = false;
    }
    struct peer_checks *p = j->peer;
    if (!p)
        return;
    j->peer = NULL;
    A.st.pending--;
    if (!j->dispatched) {
        TAILQ_REMOVE(&p->waiting, j, peer_link);
        if (TAILQ_EMPTY(&p->waiting))
            TAILQ_REMOVE(&A.turns, p, turn_link);
    }
    if (--p->n == 0) {
        HASH_DEL(A.peers, p);
        free(p);
    }
}

/* Give the workers the next checks, one address after another, a few at
 * a time: an address with a thousand logins waiting delays its own, and
 * another's waits for at most one check of each address ahead of it. */
static void dispatch(void)
{
    struct peer_checks *p;
    while (!atomic_load(&stopping) && A.dispatched < 2 * A.nworkers && (p = TAILQ_FIRST(&A.turns))) {
        struct job *j = TAILQ_FIRST(&p->waiting);
        TAILQ_REMOVE(&p->waiting, j, peer_link);
        TAILQ_REMOVE(&A.turns, p, turn_link);
        if (!TAILQ_EMPTY(&p->waiting))
            TAILQ_INSERT_TAIL(&A.turns, p, turn_link);
        size_t best = 0;
        for (size_t i = 1; i < A.nworkers; i++)
            if (A.workers[i].queued < A.workers[best].queued)
                best = i;
        j->worker = best;
        j->dispatched = true;
        A.workers[best].queued++;
        A.dispatched++;
        handoff_push(&A.workers[best].in, &j->node);
    }
}

/* A check begun before a reload proved the password against the file as
 * it was: the login is whom the file says now, if it still lists the user
 * with the same hash (else it fails, and the client may try again).
 * helper-91: a user removed by a reload during its check got in. */
static void as_now(struct job *j)
{
    if (j->users_gen == A.users_gen || !j->ok)
        return;
    struct principal *now = NULL;
    if (j->fallback) {
        if (A.fallback && A.fallback_hashed && !strcmp(j->name, A.fallback_user) &&
            !strcmp(j->hash, A.fallback_password))
            now = A.fallback_who;
    } else {
        struct user *u = find_user(j->name);
        if (u && !strcmp(u->hash, j->hash))
            now = u->who;
    }
    principal_unref(j->who);
    j->who = now ? principal_ref(now) : NULL;
    j->ok = now != NULL;
}

static void finish(struct job *j)
{
    retire(j);
    if (j->dispatched) {
        A.workers[j->worker].queued--;
        A.dispatched--;
    }
    as_now(j);
    bool ok = j->ok && j->who;
    if (ok && A.cache_on)
        remember(j);
    struct auth_wait *w;
    /* an answer may cancel another waiter of j (a console request
     * closing the connection whose login waits too): the list stays
     * whole while each is answered */
    j->finishing = true;
    while ((w = j->waiters)) {
        j->waiters = w->next;
        if (j->waiters)
            j->waiters->prev = NULL;
        w->done(w->arg, ok ? principal_ref(j->who) : NULL);
        free(w);
    }
    job_free(j);
}

static void done_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    struct handoff_node *n = handoff_take(&A.done);
    while (n) {
        struct handoff_node *next = n->next;
        finish((struct job *)n);
        n = next;
    }
    dispatch();
}

int auth_start(struct ev_loop *loop, char *err, size_t errlen)
{
    atomic_store(&stopping, false);
    A.loop = loop;
    handoff_init(&A.done);
    TAILQ_INIT(&A.turns);
    A.dispatched = 0;
    ev_async_init(&A.done_async, done_cb);
    ev_async_start(loop, &A.done_async);
    handoff_to_loop(&A.done, loop, &A.done_async);
    ev_init(&A.flush, NULL);
    A.nworkers = (size_t)config.auth_hash_threads;
    A.workers = calloc(A.nworkers, sizeof *A.workers);
    if (!A.workers)
        abort();
    (void)err;
    (void)errlen;
    return 0;
}

/* The password-checking threads start with the first password to check:
 * a broker without users (the embedded default) runs none. */
static int start_workers(void)
{
    for (size_t i = 0; i < A.nworkers; i++) {
        struct worker *w = &A.workers[i];
        if (w->running)
            continue;
        handoff_init(&w->in);
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            log_err("cannot start a password-checking thread: %s", strerror(rc));
            if (i == 0)
                return -rc;
            A.nworkers = i; /* the others carry on */
            return 0;
        }
        w->running = true;
    }
    return 0;
}

void auth_stop(void)
{
    atomic_store(&stopping, true);
    /* checks no worker has: they fail now */
    struct peer_checks *p;
    while ((p = TAILQ_FIRST(&A.turns)))
        finish(TAILQ_FIRST(&p->waiting));
    for (size_t i = 0; i < A.nworkers; i++) {
        struct worker *w = &A.workers[i];
        if (!w->running)
            continue;
        handoff_close(&w->in);
        pthread_join(w->thread, NULL);
        handoff_destroy(&w->in);
    }
    if (A.loop) {
        /* checks that came back after the last loop turn */
        struct handoff_node *n = handoff_take(&A.done);
        while (n) {
            struct handoff_node *next = n->next;
            finish((struct job *)n);
            n = next;
        }
        ev_async_stop(A.loop, &A.done_async);
        if (ev_is_active(&A.flush))
            ev_timer_stop(A.loop, &A.flush);
        handoff_destroy(&A.done);
    }
    free(A.workers);
    A.workers = NULL;
    A.nworkers = 0;
    struct cached *c, *tmp;
    HASH_ITER(hh, A.cache, c, tmp) {
        HASH_DEL(A.cache, c);
        free(c->name);
        free(c);
    }
    userdb_free(A.users);
    A.users = NULL;
    principal_unref(A.anon);
    principal_unref(A.fallback_who);
    A.anon = A.fallback_who = NULL;
    free(A.fallback_user);
    if (A.fallback_password)
        explicit_bzero(A.fallback_password, strlen(A.fallback_password));
    free(A.fallback_password);
    free(A.console_dummy);
    A.fallback_user = A.fallback_password = A.console_dummy = NULL;
    explicit_bzero(A.hmac_key, sizeof A.hmac_key);
    A.key_ready = false;
    A.loop = NULL;
    atomic_store(&stopping, false);
}

/* ------------------------------------------------------------ checks */

/* A peer's address without its port ("[::1]:5" -> "::1"). */
static void peer_addr(const char *peer, char *out, size_t len)
{
    const char *end = strrchr(peer, ':');
    size_t n = end ? (size_t)(end - peer) : strlen(peer);
    if (peer[0] == '[' && n >= 2 && peer[n - 1] == ']') {
        peer++;
        n -= 2;
    }
    snprintf(out, len, "%.*s", (int)n, peer);
}

/* Check password against hash for name, as who (NULL: fails whatever the
 * password). */
static int verify(const char *name, const char *password, const char *hash, bool fallback, struct principal *who,
                  const char *peer, auth_done_fn done, void *arg, struct principal **out, struct auth_wait **wait)
{
    uint8_t key[SHA256_LEN];
    key_of(name, password, hash, fallback, key);
    if (who && A.cache_on) {
        struct cached *c;
        HASH_FIND_STR(A.cache, name, c);
        if (c && same_key(c->key, key)) {
            A.st.cache_hits++;
            *out = principal_ref(who);
            return AUTH_OK;
        }
    }
    struct job *j;
    HASH_FIND(hh, A.inflight, key, SHA256_LEN, j);
    if (j) {
        A.st.coalesced++;
    } else {
        /* queued behind its address's other checks (an unknown peer is
         * one address, ""); an address may have so many */
        char addr[sizeof ((struct peer_checks *)0)->addr];
        peer_addr(peer ? peer : "", addr, sizeof addr);
        struct peer_checks *p;
        HASH_FIND_STR(A.peers, addr, p);
        if (peer && p && p->n >= (size_t)config.auth_max_checks_per_peer) {
            A.st.busy++;
            return AUTH_BUSY;
        }
        if (!A.nworkers || start_workers() != 0)
            return AUTH_FAILED; /* not started, or no thread could start */
        if (!p) {
            if (!(p = calloc(1, sizeof *p)))
                abort();
            memcpy(p->addr, addr, sizeof addr);
            TAILQ_INIT(&p->waiting);
            HASH_ADD_STR(A.peers, addr, p);
        }
        j = calloc(1, sizeof *j);
        if (!j || !(j->name = strdup(name)) || !(j->hash = strdup(hash)) || !(j->password = strdup(password)))
            abort();
        A.st.pending++;
        memcpy(j->key, key, SHA256_LEN);
        j->who = principal_ref(who);
        j->users_gen = A.users_gen;
        j->fallback = fallback;
        j->peer = p;
        p->n++;
        if (TAILQ_EMPTY(&p->waiting))
            TAILQ_INSERT_TAIL(&A.turns, p, turn_link);
        TAILQ_INSERT_TAIL(&p->waiting, j, peer_link);
        j->in_table = true;
        HASH_ADD(hh, A.inflight, key, SHA256_LEN, j);
        dispatch();
    }
    struct auth_wait *w = calloc(1, sizeof *w);
    if (!w)
        abort();
    w->job = j;
    w->done = done;
    w->arg = arg;
    w->next = j->waiters;
    if (w->next)
        w->next->prev = w;
    j->waiters = w;
    *wait = w;
    return AUTH_PENDING;
}

int auth_login(const char *user, const char *password, const char *peer, auth_done_fn done, void *arg,
               struct principal **who, struct auth_wait **wait)
{
    *who = NULL;
    *wait = NULL;
    if (!A.users || !user)
        return AUTH_FAILED;
    if (!password)
        password = "";
    struct user *u;
    HASH_FIND_STR(A.users->by_name, user, u);
    /* an unknown user costs what a known one does: nobody learns who exists */
    return verify(user, password, u ? u->hash : A.users->dummy, false, u ? u->who : NULL, peer, done, arg, who, wait);
}

int auth_console_login(const char *user, const char *password, const char *peer, auth_done_fn done, void *arg,
                       struct principal **who, struct auth_wait **wait)
{
    *who = NULL;
    *wait = NULL;
    if (A.users) {
        struct user *u;
        HASH_FIND_STR(A.users->by_name, user, u);
        if (u)
            return auth_login(user, password, peer, done, arg, who, wait);
    }
    if (A.fallback && !strcmp(user, A.fallback_user)) {
        if (A.fallback_hashed)
            return verify(user, password, A.fallback_password, true, A.fallback_who, peer, done, arg, who, wait);
        if (!same_secret(password, A.fallback_password))
            return AUTH_FAILED;
        *who = principal_ref(A.fallback_who);
        return AUTH_OK;
    }
    if (A.users)
        return auth_login(user, password, peer, done, arg, who, wait);
    /* nobody by that name: the same cost as a hashed fallback */
    return A.fallback_hashed ? verify(user, password, A.console_dummy, true, NULL, peer, done, arg, who, wait)
                             : AUTH_FAILED;
}

void auth_cancel(struct auth_wait *w)
{
    if (!w)
        return;
    struct job *j = w->job;
    if (w->prev)
        w->prev->next = w->next;
    else
        j->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    free(w);
    if (!j->waiters && !j->finishing) {
        /* its connection closed (or was evicted): closing connections
         * must not leave crypt(3) work behind for everyone's logins */
        A.st.abandoned++;
        if (!j->dispatched) {
            retire(j);
            job_free(j);
            return;
        }
        atomic_store(&j->abandoned, true);
        retire(j);
    }
}

/* ------------------------------------------------------------ failures */

static void flush_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    if (A.unlogged) {
        log_warn("auth: %llu more failed logins in the last %.0f s were not logged one by one",
                 (unsigned long long)A.unlogged, FAILURE_LOG_EVERY);
        A.unlogged = 0;
        A.last_logged = ev_now(loop);
    }
}

/* At most 64 printable bytes of what a client sent as its name. */
static void printable(char *out, size_t len, const char *s)
{
    size_t o = 0;
    for (; s && *s && o + 5 < len && o < 64; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, len - o, "\\x%02x", c);
    }
    if (s && *s && o + 4 < len) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

void auth_note_failure(const char *where, const char *peer, const char *user)
{
    if (!strcmp(where, "console"))
        A.st.console_failures++;
    else
        A.st.stomp_failures++;
    ev_tstamp now = A.loop ? ev_now(A.loop) : 0;
    if (A.loop && A.last_logged != 0 && now - A.last_logged < FAILURE_LOG_EVERY) {
        A.unlogged++;
        if (!ev_is_active(&A.flush)) {
            ev_timer_init(&A.flush, flush_cb, A.last_logged + FAILURE_LOG_EVERY - now + 0.001, 0.);
            ev_timer_start(A.loop, &A.flush);
        }
        return;
    }
    char name[128];
    printable(name, sizeof name, user);
    if (A.unlogged)
        log_warn("auth: %s login failed for user '%s' from %s (and %llu more failed logins in the last %.0f s "
                 "not logged one by one)", where, user ? name : "(none)", peer, (unsigned long long)A.unlogged,
                 FAILURE_LOG_EVERY);
    else
        log_warn("auth: %s login failed for user '%s' from %s", where, user ? name : "(none)", peer);
    A.unlogged = 0;
    A.last_logged = now;
    if (A.loop && ev_is_active(&A.flush))
        ev_timer_stop(A.loop, &A.flush);
}

/* ------------------------------------------------------------ --hash-password */

static int read_secret(FILE *in, FILE *errout, const char *prompt, char *buf, size_t len)
{
    int fd = fileno(in);
    bool tty = isatty(fd);
    struct termios old, quiet;
    if (tty) {
        fputs(prompt, errout);
        fflush(errout);
        if (tcgetattr(fd, &old) == 0) {
            quiet = old;
            quiet.c_lflag &= ~(tcflag_t)ECHO;
            tcsetattr(fd, TCSAFLUSH, &quiet);
        } else {
            tty = false;
        }
    }
    char *got = fgets(buf, (int)len, in);
    if (tty) {
        tcsetattr(fd, TCSAFLUSH, &old);
        fputc('\n', errout);
    }
    if (!got)
        return -EIO;
    size_t n = strlen(buf);
    if (n == len - 1 && buf[n - 1] != '\n')
        return -E2BIG;
    if (n && buf[n - 1] == '\n')
        buf[--n] = '\0';
    if (n && buf[n - 1] == '\r')
        buf[--n] = '\0';
    return tty ? 1 : 0;
}

int auth_hash_password(const char *method, FILE *in, FILE *out, FILE *errout)
{
    const char *prefix = NULL;
    if (method && !strcmp(method, "sha512"))
        prefix = "$6$";
    else if (method && strcmp(method, "yescrypt")) {
        fprintf(errout, "stompd: --hash-password takes yescrypt (the default) or sha512, not '%s'\n", method);
        return 2;
    }
    static char pw[MAX_PASSWORD + 2], again[MAX_PASSWORD + 2];
    int rc = read_secret(in, errout, "Password: ", pw, sizeof pw);
    int status = 1;
    if (rc == -E2BIG) {
        fprintf(errout, "stompd: the password is longer than %d bytes\n", MAX_PASSWORD);
        goto out;
    }
    if (rc < 0 || !pw[0]) {
        fprintf(errout, "stompd: --hash-password reads the password from standard input: got %s\n",
                rc < 0 ? "nothing" : "an empty line");
        goto out;
    }
    if (rc == 1) {
        if (read_secret(in, errout, "Again: ", again, sizeof again) < 0 || strcmp(pw, again)) {
            fprintf(errout, "stompd: the two passwords differ\n");
            goto out;
        }
    }
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    if (!crypt_gensalt_rn(prefix, 0, NULL, 0, setting, sizeof setting)) {
        fprintf(errout, "stompd: libcrypt cannot make a salt: %s\n", strerror(errno));
        goto out;
    }
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (!cd)
        abort();
    const char *h = crypt_rn(pw, setting, cd, (int)sizeof *cd);
    if (!h || h[0] == '*') {
        fprintf(errout, "stompd: crypt(3) failed: %s\n", strerror(errno));
    } else {
        fprintf(out, "%s\n", h);
        status = 0;
    }
    explicit_bzero(cd, sizeof *cd);
    free(cd);
out:
    explicit_bzero(pw, sizeof pw);
    explicit_bzero(again, sizeof again);
    return status;
}
