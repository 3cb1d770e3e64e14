/* UTF-8 validation (utf8.c). */
#ifndef STOMPD_UTF8_H
#define STOMPD_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Whether p[0..n) is well-formed UTF-8: no overlong form, no surrogate,
 * nothing beyond U+10FFFF (NUL is allowed). */
bool utf8_valid(const char *p, size_t n);
/* Whether the NUL-terminated s may name something shown and named back
 * (a destination, a client-id, a durable subscription): UTF-8 with no
 * control character (C0 or DEL). If not, *why is "is not valid UTF-8"
 * or "has a control character". */
bool utf8_name_ok(const char *s, const char **why);
/* How much of the NUL-terminated s to print with %.*s to show at most max
 * bytes without cutting a character in two. */
int utf8_cut(const char *s, size_t max);

#endif
