/* Authentication: the users file (auth.users, crypt(3) hashes and
 * groups), who may connect without a password (auth.anonymous and the
 * protected-mode rule), the password check and the console's logins.
 *
 * A crypt(3) check costs milliseconds (yescrypt: tens of them), so it
 * never runs on the loop thread: it goes to auth.hash_threads worker
 * threads and the answer comes back through an ev_async. Identical
 * checks in flight are done once (a hundred clients reconnecting with the
 * same credentials after a failover cost one crypt), and a successful one
 * is remembered (auth.cache) as HMAC-SHA-256(random key, user, password,
 * hash): the same login next time is answered at once, on the loop,
 * without the password ever being kept. */
#ifndef STOMPD_AUTH_H
#define STOMPD_AUTH_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "stompd/principal.h"

struct config;

/* Check what the configuration says about authentication without
 * changing anything: the users file loads, and the protected-mode rule
 * holds for the client listeners of `listeners` (the running ones at a
 * reload) with the auth keys of `cfg`. */
int auth_check_config(const struct config *listeners, const struct config *cfg, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* The same, then make cfg's users and settings the current ones (start,
 * and the SIGHUP hook). On error nothing changes. */
int auth_configure(const struct config *listeners, const struct config *cfg, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Start the worker threads on loop (after auth_configure). */
int auth_start(struct ev_loop *loop, char *err, size_t errlen) __attribute__((warn_unused_result));
/* Stop the workers, drop every pending check and the users. */
void auth_stop(void);

/* The protected-mode rule alone: 0, or -EPERM with err naming the keys.
 * anonymous is "auto", "true" or "false". */
int auth_exposure_check(const struct config *listeners, const char *users, const char *anonymous, char *err,
                        size_t errlen) __attribute__((warn_unused_result));
/* Does host:port bind loopback addresses only? (An empty host is every
 * interface.) */
bool auth_addr_is_loopback(const char *addr);

/* May a client CONNECT without credentials now? Its principal (borrowed:
 * take a reference to keep it). */
bool auth_anonymous_allowed(void);
struct principal *auth_anonymous(void);
/* Is a users file loaded? */
bool auth_has_users(void);
/* The principal of a user of auth.users (borrowed), NULL when none. */
struct principal *auth_user(const char *name);

enum auth_result {
    AUTH_OK = 0,      /* *who is set (a reference for the caller) */
    AUTH_PENDING = 1, /* done(arg, who) will be called later, unless cancelled */
    AUTH_FAILED = 2,
    AUTH_BUSY = 3,    /* the peer has auth.max_checks_per_peer checks waiting: try later */
};
/* who is a reference the callee owns, or NULL when the check failed. */
typedef void (*auth_done_fn)(void *arg, struct principal *who);
struct auth_wait;

/* Check user's password against the users file. peer ("host:port", NULL:
 * no limit) is whose checks are counted against auth.max_checks_per_peer. */
int auth_login(const char *user, const char *password, const char *peer, auth_done_fn done, void *arg,
               struct principal **who, struct auth_wait **wait) __attribute__((warn_unused_result));
/* The console's login: a user of the users file (the caller checks its
 * group, http.admin_group), else http.admin_user with
 * http.admin_password (plain or a crypt(3) hash), whose principal is in
 * http.admin_group. The fallback is off while auth.users is set and the
 * password is still the built-in "admin". */
int auth_console_login(const char *user, const char *password, const char *peer, auth_done_fn done, void *arg,
                       struct principal **who, struct auth_wait **wait) __attribute__((warn_unused_result));
/* The waiter goes away (its connection closed): done is never called. A
 * check nobody waits for any more is not run (nor counted to its peer). */
void auth_cancel(struct auth_wait *w);

/* A failed login: counted, and logged with the peer's address at most
 * once a second (the next line, or a summary a second later, says how
 * many were not logged). where is "STOMP" or "console". */
void auth_note_failure(const char *where, const char *peer, const char *user);

struct auth_stats {
    uint64_t stomp_failures;    /* CONNECTs refused */
    uint64_t console_failures;  /* console requests refused (401 and 403) */
    uint64_t checks;            /* crypt(3) checks run on the workers */
    uint64_t cache_hits;        /* logins answered from the cache */
    uint64_t coalesced;         /* logins that joined an identical check in flight */
    uint64_t busy;              /* logins refused: their peer had auth.max_checks_per_peer in flight */
    uint64_t abandoned;         /* checks dropped before they ran: nobody waited any more */
    uint64_t pending;           /* checks waiting for a worker or running, for someone */
};
void auth_get_stats(struct auth_stats *out);

/* stompd --hash-password[=METHOD]: read a password from in (prompting
 * twice without echo when in is a terminal), print its crypt(3) hash on
 * out. METHOD is NULL or "yescrypt" (the default) or "sha512". Returns the
 * process's exit status; errors go to errout. */
int auth_hash_password(const char *method, FILE *in, FILE *out, FILE *errout);

/* SIGHUP (src/reload.c): read the users file and the auth keys of next
 * again. An invalid file keeps the old users. */
int auth_reload(const struct config *next, char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
