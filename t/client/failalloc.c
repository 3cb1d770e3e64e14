/* See failalloc.h. One client at a time in the driver: a plain counter.
 * This file is compiled with the others (so with the -include): the real
 * functions are wanted here. */
#include "config.h"

#include <errno.h>

#include "failalloc.h"

#undef malloc
#undef calloc
#undef realloc
#undef strdup
#undef strndup

static unsigned long armed, count;
static bool fired;

void failalloc_arm(unsigned long n)
{
    armed = n;
    count = 0;
    fired = false;
}

bool failalloc_fired(void)
{
    return fired;
}

unsigned long failalloc_count(void)
{
    return count;
}

static bool fail_now(void)
{
    count++;
    if (armed && count == armed) {
        fired = true;
        errno = ENOMEM;
        return true;
    }
    return false;
}

void *failalloc_malloc(size_t n)
{
    return fail_now() ? NULL : malloc(n);
}

void *failalloc_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : calloc(n, size);
}

void *failalloc_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : realloc(p, n);
}

char *failalloc_strdup(const char *s)
{
    return fail_now() ? NULL : strdup(s);
}

char *failalloc_strndup(const char *s, size_t n)
{
    return fail_now() ? NULL : strndup(s, n);
}
