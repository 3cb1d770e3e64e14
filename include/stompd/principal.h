/* Who is asking: a user (from auth.users, or the console's fallback
 * admin) with its groups, or the anonymous client. Refcounted: a reload
 * of the users file makes new principals, and open connections move to
 * their user's new one (access.h). The broker's own producers
 * (dead-letter moves, recovery) have no principal (NULL) and are never
 * refused. */
#ifndef STOMPD_PRINCIPAL_H
#define STOMPD_PRINCIPAL_H

#include <stdbool.h>
#include <stddef.h>

struct principal {
    unsigned refs;
    bool anonymous;  /* not authenticated: `*` in an ACL does not cover it */
    char *name;
    size_t ngroups;
    char **groups;
};

/* A new principal (one reference) with copies of name and groups. */
struct principal *principal_new(const char *name, const char *const *groups, size_t ngroups, bool anonymous);
struct principal *principal_ref(struct principal *p);
/* NULL is ignored. */
void principal_unref(struct principal *p);
bool principal_in_group(const struct principal *p, const char *group);

#endif
