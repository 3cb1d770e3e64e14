/* The ACL file and the one rule every check goes through (see acl.h). A
 * check walks the entries of the destination's kind and keeps the most
 * specific that matches; which entry decides for a name is remembered
 * (a hash lookup instead of a walk: a SEND pays tens of nanoseconds, not
 * hundreds), per loaded file, so a reload starts afresh. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "stompd/acl.h"
#include "stompd/config.h"
#include "stompd/dname.h"
#include "stompd/log.h"

#define MAX_ACL_GROUPS 64
#define MAX_MEMO 16384 /* names remembered; past it the memo starts again */

struct grouplist {
    char **names;
    size_t n;
    bool everyone; /* "*": every authenticated user */
};

struct acl_entry {
    enum acl_kind kind;
    char *pattern;
    long specificity;
    int line;
    struct grouplist perms[3];
};

/* Which entry decides for one name (NULL: none covers it). */
struct memo {
    char *name;
    const struct acl_entry *e;
    UT_hash_handle hh;
};

struct acl {
    struct acl_entry *entries;
    size_t n, cap;
    char *path;
    struct memo *memo[2];   /* by kind */
    size_t nmemo;
};

static struct {
    struct acl *current;
    uint64_t denials;
} L;

static const char *const perm_names[] = {"read", "write", "admin"};
static const char *const kind_names[] = {"queue", "topic"};

const char *acl_perm_name(enum acl_perm perm)
{
    return perm_names[perm];
}

static void grouplist_free(struct grouplist *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->names[i]);
    free(g->names);
}

static void memo_clear(struct acl *a)
{
    for (int k = 0; k < 2; k++) {
        struct memo *m, *tmp;
        HASH_ITER(hh, a->memo[k], m, tmp) {
            HASH_DEL(a->memo[k], m);
            free(m->name);
            free(m);
        }
    }
    a->nmemo = 0;
}

void acl_free(struct acl *a)
{
    if (!a)
        return;
    memo_clear(a);
    for (size_t i = 0; i < a->n; i++) {
        free(a->entries[i].pattern);
        for (int p = 0; p < 3; p++)
            grouplist_free(&a->entries[i].perms[p]);
    }
    free(a->entries);
    free(a->path);
    free(a);
}

size_t acl_entries(const struct acl *a)
{
    return a ? a->n : 0;
}

static bool group_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '-' || c == '.' || c == '@';
}

/* "G,G,G" into g; 0 or -EINVAL with err. */
static int parse_groups(char *list, struct grouplist *g, const char *where, const char *perm, char *err,
                        size_t errlen)
{
    if (!*list) {
        snprintf(err, errlen, "%s: %s= names no group (leave %s= out to grant it to nobody)", where, perm, perm);
        return -EINVAL;
    }
    char *save = NULL;
    for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        if (!strcmp(name, "*")) {
            g->everyone = true;
            continue;
        }
        for (const char *p = name; *p; p++) {
            if (!group_char((unsigned char)*p)) {
                snprintf(err, errlen, "%s: %s= group '%.64s': group names are letters, digits and _ - . @ (or * "
                                      "for every authenticated user)", where, perm, name);
                return -EINVAL;
            }
        }
        if (g->n == MAX_ACL_GROUPS) {
            snprintf(err, errlen, "%s: %s= names more than %d groups", where, perm, MAX_ACL_GROUPS);
            return -EINVAL;
        }
        char **names = realloc(g->names, (g->n + 1) * sizeof *names);
        if (!names || !(names[g->n] = strdup(name)))
            abort();
        g->names = names;
        g->n++;
    }
    if (!g->n && !g->everyone) {
        snprintf(err, errlen, "%s: %s= names no group", where, perm);
        return -EINVAL;
    }
    return 0;
}

static int parse_line(struct acl *a, char *line, const char *path, int lineno, char *err, size_t errlen)
{
    char where[512];
    snprintf(where, sizeof where, "%s:%d", path, lineno);
    char *save = NULL;
    char *target = strtok_r(line, " \t", &save);
    char *colon = strchr(target, ':');
    enum acl_kind kind;
    if (!colon) {
        snprintf(err, errlen, "%s: expected queue:PATTERN or topic:PATTERN, then read=, write=, admin= lists", where);
        return -EINVAL;
    }
    *colon = '\0';
    if (!strcmp(target, "queue"))
        kind = ACL_QUEUE;
    else if (!strcmp(target, "topic"))
        kind = ACL_TOPIC;
    else {
        snprintf(err, errlen, "%s: '%.32s' is not queue or topic (temporary destinations belong to their "
                              "connection and have no entries)", where, target);
        return -EINVAL;
    }
    const char *pattern = colon + 1;
    if (!*pattern) {
        snprintf(err, errlen, "%s: %s: has no pattern (> is every %s)", where, target, target);
        return -EINVAL;
    }
    if (pattern[0] == '/') {
        snprintf(err, errlen, "%s: write the pattern without its prefix: %s:%s, not %s:%.64s", where, target,
                 strrchr(pattern, '/') + 1, target, pattern);
        return -EINVAL;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (a->entries[i].kind == kind && !strcmp(a->entries[i].pattern, pattern)) {
            snprintf(err, errlen, "%s: %s:%.200s is already on line %d", where, target, pattern, a->entries[i].line);
            return -EINVAL;
        }
    }
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->entries = realloc(a->entries, a->cap * sizeof *a->entries);
        if (!a->entries)
            abort();
    }
    struct acl_entry *e = &a->entries[a->n];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->line = lineno;
    e->specificity = dname_specificity(pattern);
    if (!(e->pattern = strdup(pattern)))
        abort();
    a->n++; /* from here on, acl_free releases it */
    bool seen[3] = {false, false, false};
    for (char *tok = strtok_r(NULL, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        char *eq = strchr(tok, '=');
        int p = -1;
        if (eq) {
            *eq = '\0';
            for (int i = 0; i < 3; i++)
                if (!strcmp(tok, perm_names[i]))
                    p = i;
        }
        if (p < 0) {
            snprintf(err, errlen, "%s: '%.32s' is not read=, write= or admin=", where, tok);
            return -EINVAL;
        }
        if (seen[p]) {
            snprintf(err, errlen, "%s: %s= appears twice", where, perm_names[p]);
            return -EINVAL;
        }
        seen[p] = true;
        int rc = parse_groups(eq + 1, &e->perms[p], where, perm_names[p], err, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int acl_load(const char *path, struct acl **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, errlen, "cannot open the ACL file %s (auth.acl): %s", path, strerror(errno));
        return -errno;
    }
    struct acl *a = calloc(1, sizeof *a);
    if (!a || !(a->path = strdup(path)))
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
        char *p = line + strspn(line, " \t");
        size_t n = strlen(p);
        while (n && isspace((unsigned char)p[n - 1]))
            p[--n] = '\0';
        if (!*p || *p == '#')
            continue;
        if ((rc = parse_line(a, p, path, lineno, err, errlen)) != 0)
            break;
    }
    if (rc == 0 && ferror(fp)) {
        snprintf(err, errlen, "cannot read the ACL file %s (auth.acl): %s", path, strerror(errno));
        rc = -EIO;
    }
    if (rc == 0)
        rc = config_check_rights_file(fileno(fp), path, "auth.acl", err, errlen);
    fclose(fp);
    if (rc != 0) {
        acl_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

static const struct acl_entry *walk(const struct acl *a, enum acl_kind kind, const char *name)
{
    const struct acl_entry *best = NULL;
    for (size_t i = 0; i < a->n; i++) {
        const struct acl_entry *e = &a->entries[i];
        if (e->kind != kind || (best && e->specificity <= best->specificity) || !dname_match(e->pattern, name))
            continue;
        best = e;
    }
    return best;
}

static const struct acl_entry *best_entry(struct acl *a, enum acl_kind kind, const char *name)
{
    struct memo *m;
    HASH_FIND_STR(a->memo[kind], name, m);
    if (m)
        return m->e;
    if (a->nmemo >= MAX_MEMO)
        memo_clear(a);
    m = calloc(1, sizeof *m);
    if (!m || !(m->name = strdup(name)))
        abort();
    m->e = walk(a, kind, name);
    HASH_ADD_KEYPTR(hh, a->memo[kind], m->name, strlen(m->name), m);
    a->nmemo++;
    return m->e;
}

static bool granted(const struct grouplist *g, const struct principal *who)
{
    if (g->everyone && !who->anonymous)
        return true;
    for (size_t i = 0; i < g->n; i++)
        if (principal_in_group(who, g->names[i]))
            return true;
    return false;
}

bool acl_check(struct acl *a, const struct principal *who, enum acl_kind kind, const char *name,
               enum acl_perm perm)
{
    if (!a || !who)
        return true;
    const struct acl_entry *e = best_entry(a, kind, name);
    return e && granted(&e->perms[perm], who);
}

/* ------------------------------------------------------------ the running ACL */

int acl_check_config(const struct config *cfg, char *err, size_t errlen)
{
    if (!cfg->auth_acl[0])
        return 0;
    struct acl *a;
    int rc = acl_load(cfg->auth_acl, &a, err, errlen);
    acl_free(a);
    return rc;
}

int acl_configure(const struct config *cfg, char *err, size_t errlen)
{
    struct acl *a = NULL;
    if (cfg->auth_acl[0]) {
        int rc = acl_load(cfg->auth_acl, &a, err, errlen);
        if (rc != 0)
            return rc;
        log_info("auth: %zu ACL entries from %s; destinations they do not cover are denied", a->n, cfg->auth_acl);
    } else if (L.current) {
        log_info("auth: no ACL (auth.acl is empty): every connected client may use every destination");
    }
    acl_free(L.current);
    L.current = a;
    return 0;
}

int acl_reload(const struct config *next, char *err, size_t errlen)
{
    return acl_configure(next, err, errlen);
}

void acl_stop(void)
{
    acl_free(L.current);
    L.current = NULL;
}

bool acl_active(void)
{
    return L.current != NULL;
}

bool acl_allows(const struct principal *who, enum acl_kind kind, const char *name, enum acl_perm perm)
{
    return acl_check(L.current, who, kind, name, perm);
}

bool acl_allows_dest(const struct principal *who, const char *dest, enum acl_perm perm)
{
    if (!L.current || !who)
        return true;
    enum acl_kind kind;
    const char *name;
    if (!strncmp(dest, "/queue/", 7)) {
        kind = ACL_QUEUE;
        name = dest + 7;
    } else if (!strncmp(dest, "/topic/", 7)) {
        kind = ACL_TOPIC;
        name = dest + 7;
    } else if (!strncmp(dest, "/temp-", 6) || !strncmp(dest, "/remote-temp-", 13)) {
        return true;
    } else {
        L.denials++;
        return false; /* no such kind: nothing to allow */
    }
    const struct acl_entry *e = best_entry(L.current, kind, name);
    if (e && granted(&e->perms[perm], who))
        return true;
    L.denials++;
    if (log_enabled(LOG_DEBUG)) {
        if (e)
            log_debug("auth: %s may not %s %s: %s:%s (%s line %d) grants it to none of the user's groups", who->name,
                      perm_names[perm], dest, kind_names[kind], e->pattern, L.current->path, e->line);
        else
            log_debug("auth: %s may not %s %s: no entry of %s covers it", who->name, perm_names[perm], dest,
                      L.current->path);
    }
    return false;
}

void acl_explain(const struct principal *who, const char *dest, enum acl_perm perm, char *message, size_t mlen,
                 char *detail, size_t dlen)
{
    static const char *const verbs[] = {"read from", "write to", "create or delete"};
    snprintf(message, mlen, "access denied: no %s permission on %.180s", perm_names[perm], dest);
    snprintf(detail, dlen, "User '%.128s' is not authorized to %s %.900s (auth.acl).", who ? who->name : "?",
             verbs[perm], dest);
}

uint64_t acl_denials(void)
{
    return L.denials;
}
