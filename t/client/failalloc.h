/* Allocation failure on demand, for t/client/stompc_oom: compiled into a
 * test copy of libstompc with -include, this turns the library's malloc,
 * calloc, realloc, strdup and strndup into wrappers of which the n-th
 * call after failalloc_arm(n) fails (returns NULL with ENOMEM). */
#ifndef FAILALLOC_H
#define FAILALLOC_H

#include "config.h" /* first: it chooses the C library's features */

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* The n-th wrapped allocation from now fails (0: none). */
void failalloc_arm(unsigned long n);
/* Has the armed failure happened? */
bool failalloc_fired(void);
/* Wrapped allocations since the last arm. */
unsigned long failalloc_count(void);

void *failalloc_malloc(size_t n);
void *failalloc_calloc(size_t n, size_t size);
void *failalloc_realloc(void *p, size_t n);
char *failalloc_strdup(const char *s);
char *failalloc_strndup(const char *s, size_t n);

#define malloc(n) failalloc_malloc(n)
#define calloc(n, s) failalloc_calloc(n, s)
#define realloc(p, n) failalloc_realloc(p, n)
#define strdup(s) failalloc_strdup(s)
#define strndup(s, n) failalloc_strndup(s, n)

#endif
