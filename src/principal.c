/* Principals: a name, its groups, a reference count (see principal.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "stompd/principal.h"

static char *dup_or_die(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

struct principal *principal_new(const char *name, const char *const *groups, size_t ngroups, bool anonymous)
{
    struct principal *p = calloc(1, sizeof *p);
    if (!p || (ngroups && !(p->groups = calloc(ngroups, sizeof *p->groups))))
        abort();
    p->refs = 1;
    p->anonymous = anonymous;
    p->name = dup_or_die(name);
    for (size_t i = 0; i < ngroups; i++)
        p->groups[i] = dup_or_die(groups[i]);
    p->ngroups = ngroups;
    return p;
}

struct principal *principal_ref(struct principal *p)
{
    if (p)
        p->refs++;
    return p;
}

void principal_unref(struct principal *p)
{
    if (!p || --p->refs > 0)
        return;
    for (size_t i = 0; i < p->ngroups; i++)
        free(p->groups[i]);
    free(p->groups);
    free(p->name);
    free(p);
}

bool principal_in_group(const struct principal *p, const char *group)
{
    for (size_t i = 0; p && i < p->ngroups; i++)
        if (!strcmp(p->groups[i], group))
            return true;
    return false;
}
