/* SIGHUP: read the configuration again (the same -c file, then the same
 * --set overrides) and apply what can change in a running broker. A module
 * that can take new values of some keys has one line in the hooks table
 * below: its keys and a function that switches the module to the values
 * of the freshly loaded copy, or changes nothing and returns an error. Its
 * keys are then copied into the running configuration. Any other key that
 * changed keeps its running value and is logged as needing a restart, so a
 * reload never half-applies a setting nobody planned for. */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "stompd/access.h"
#include "stompd/acl.h"
#include "stompd/auth.h"
#include "stompd/cluster.h"
#include "stompd/config.h"
#include "stompd/log.h"
#include "stompd/notify.h"
#include "stompd/reload.h"
#include "stompd/sub.h"
#include "stompd/tls.h"

struct reload_hook {
    const char *name;
    const char *const *keys;   /* NULL-terminated */
    bool always;               /* run at every reload, changed or not */
    int (*apply)(const struct config *next, char *err, size_t errlen);
};

/* log.file is reopened at every SIGHUP, changed or not: that is how a
 * rotated log (logrotate renames it, then signals) gets a new file. */
static int reload_log(const struct config *next, char *err, size_t errlen)
{
    enum log_level lvl;
    if (log_level_parse(next->log_level, &lvl) != 0) {
        snprintf(err, errlen, "log.level: '%s' is not a level", next->log_level);
        return -EINVAL;
    }
    if (next->log_file[0]) {
        int rc = log_open_file(next->log_file);
        if (rc != 0) {
            snprintf(err, errlen, "cannot open log.file %s: %s", next->log_file, strerror(-rc));
            return rc;
        }
    } else {
        log_close();
    }
    log_set_level(lvl);
    cluster_log_level_changed();
    return 0;
}

static const char *const log_keys[] = {"log.level", "log.file", NULL};
/* Certificates are reread at every SIGHUP, changed names or not: a renewed
 * certificate usually replaces the file in place. New connections get
 * them; a bad one keeps the running ones (tls.c). */
static const char *const tls_keys[] = {"tls.cert", "tls.key", "tls.ca", "tls.ciphers", "tls.min_version",
                                       "tls.verify_clients", "tls.handshake_timeout", NULL};
/* The users file and the ACL file are read again at every SIGHUP, changed
 * path or not: editing them is how users and permissions change. Open
 * connections are then held to them as new ones are (access.h). */
static const char *const users_keys[] = {"auth.users", "auth.anonymous", "auth.cache", "http.admin_user",
                                         "http.admin_password", "http.admin_group", NULL};
static const char *const acl_keys[] = {"auth.acl", NULL};

/* Read where they apply (the console at every request, each WebSocket
 * handshake): copying the new values is enough. */
static int reload_copied(const struct config *next, char *err, size_t errlen)
{
    (void)next;
    (void)err;
    (void)errlen;
    return 0;
}

/* Each publish reads the limit; backlogs already above a new one are
 * trimmed now, or producers paused by them would wait on. */
static int reload_topic_backlogs(const struct config *next, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    sub_trim_backlogs(next->topic_pending_limit);
    return 0;
}

static const char *const console_keys[] = {"http.refresh", "http.browse_limit", "http.body_preview", NULL};
static const char *const ws_keys[] = {"stomp.ws_origins", NULL};
static const char *const topic_keys[] = {"broker.topic_pending_limit", NULL};

/* One line per module that reloads. */
static const struct reload_hook hooks[] = {
    {"log", log_keys, true, reload_log},
    {"console", console_keys, false, reload_copied},
    {"websocket origins", ws_keys, false, reload_copied},
    {"topic backlogs", topic_keys, false, reload_topic_backlogs},
    {"tls", tls_keys, true, tls_reload},
    {"users", users_keys, true, auth_reload},
    {"acl", acl_keys, true, acl_reload},
};

#define NHOOKS (sizeof hooks / sizeof hooks[0])

static struct {
    struct ev_loop *loop;
    ev_signal sighup;
    const char *file;
    const char *const *sets;
    int nsets;
    bool started;
    struct reload_stats st;
} R = {.st.last_ok = true};

struct reload_stats reload_stats(void)
{
    return R.st;
}

static bool hook_has(const struct reload_hook *h, const char *key)
{
    for (const char *const *k = h->keys; *k; k++)
        if (!strcmp(*k, key))
            return true;
    return false;
}

bool reload_key_is_live(const char *key)
{
    for (size_t i = 0; i < NHOOKS; i++)
        if (hook_has(&hooks[i], key))
            return true;
    return false;
}

struct changes {
    const char *names[64];
    size_t n;
};

static void note_change(const char *key, void *ud)
{
    struct changes *c = ud;
    if (c->n < sizeof c->names / sizeof c->names[0])
        c->names[c->n++] = key;
}

static bool changed(const struct changes *c, const char *key)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->names[i], key))
            return true;
    return false;
}

/* A reload that would turn protection off (the users file or the ACL
 * named, now none; the console's password set, now the default) changes
 * nothing: far more often a file read while it was being rewritten in
 * place, or emptied by mistake, than a wish to open the broker
 * (helper-79: an empty file let anonymous clients in, the ACL gone).
 * Turning protection off is a restart's decision. */
static bool opens_the_broker(const struct changes *ch, const struct config *next, char *err, size_t errlen)
{
    const char *key = NULL;
    if (changed(ch, "auth.users") && config.auth_users[0] && !next->auth_users[0])
        key = "auth.users";
    else if (changed(ch, "auth.acl") && config.auth_acl[0] && !next->auth_acl[0])
        key = "auth.acl";
    else if (changed(ch, "http.admin_password") && strcmp(config.admin_password, "admin") &&
             !strcmp(next->admin_password, "admin"))
        key = "http.admin_password";
    if (!key)
        return false;
    snprintf(err, errlen, "%s is set in the running broker and not in the file (was the file read while being "
             "written? write it to another name and rename it over): turning protection off takes a restart",
             key);
    return true;
}

/* A reload that changes nothing still reopens the running log.file:
 * logrotate renamed it and signalled, and the broker must not go on
 * writing to the renamed file (nor say why it refused there). */
static void refused(const char *why)
{
    int rc = config.log_file[0] ? log_open_file(config.log_file) : 0;
    log_err("reload: %s; nothing changed", why);
    if (rc != 0)
        log_err("reload: cannot reopen log.file %s: %s", config.log_file, strerror(-rc));
}

int reload_now(void)
{
    struct config next;
    char err[512];
    int rc = 0;
    bool whole = true; /* every module took its new settings */

    notify_reloading();
    log_info("reloading the configuration%s%s", R.file ? " from " : "", R.file ? R.file : "");
    if (config_load(&next, R.file, R.sets, R.nsets, err, sizeof err) != 0 ||
        config_validate(&next, err, sizeof err) != 0) {
        refused(err);
        rc = -EINVAL;
        goto out;
    }
    struct changes ch = {.n = 0};
    config_diff(&config, &next, note_change, &ch);
    if (opens_the_broker(&ch, &next, err, sizeof err)) {
        refused(err);
        rc = -EINVAL;
        goto out;
    }
    for (size_t i = 0; i < NHOOKS; i++) {
        const struct reload_hook *h = &hooks[i];
        bool touched = h->always;
        for (const char *const *k = h->keys; *k && !touched; k++)
            touched = changed(&ch, *k);
        if (!touched)
            continue;
        if (h->apply(&next, err, sizeof err) != 0) {
            log_err("reload: %s: %s; its settings are unchanged", h->name, err);
            whole = false;
            continue;
        }
        for (const char *const *k = h->keys; *k; k++) {
            if (changed(&ch, *k)) {
                if (config_copy_key(&config, &next, *k) != 0)
                    log_err("reload: cannot copy %s", *k);
                else
                    log_info("reload: %s applied", *k);
            }
        }
    }
    /* the users file and the ACL were read again: open sessions are held
     * to them as new ones are */
    access_recheck();
    for (size_t i = 0; i < ch.n; i++)
        if (!reload_key_is_live(ch.names[i]))
            log_warn("reload: %s changed, but takes effect only at the next restart", ch.names[i]);
    log_info("configuration reloaded");
out:
    /* a module that kept its settings fails the reload for /metrics,
     * not for the caller: the file was read */
    R.st.last_ok = rc == 0 && whole;
    if (R.st.last_ok)
        R.st.applied++;
    else
        R.st.failed++;
    config_release(&next);
    notify_reloaded();
    return rc;
}

static void sighup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    int rc = reload_now();
    (void)rc; /* reported in the log */
}

void reload_start(struct ev_loop *loop, const char *file, const char *const *sets, int nsets)
{
    R.loop = loop;
    R.file = file;
    R.sets = sets;
    R.nsets = nsets;
    ev_signal_init(&R.sighup, sighup_cb, SIGHUP);
    ev_signal_start(loop, &R.sighup);
    R.started = true;
}

void reload_stop(void)
{
    if (R.started) {
        /* no reload once the stop began; ignored rather than the watcher
         * stopped, which would restore the default action (a kill) */
        signal(SIGHUP, SIG_IGN);
        R.started = false;
    }
}
