/* UTF-8 validation (utf8.c). */
#ifndef STOMPD_UTF8_H
#define STOMPD_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Whether p[0..n) is well-formed UTF-8: no overlong form, no surrogate,
 * nothing beyond U+10FFFF (NUL is allowed). */
bool utf8_valid(const char *p, size_t n);

#endif
