/* JMS message selectors (a SQL-92 conditional-expression subset) over
 * message headers. Pure: compile a string into a tree once, evaluate it
 * against any message through a lookup callback. Three-valued logic as the
 * JMS specification defines it: a selector matches only when it is TRUE. */
#ifndef STOMPD_SELECTOR_H
#define STOMPD_SELECTOR_H

#include <stdbool.h>
#include <stddef.h>

struct selector;

/* Returns the value of identifier `name` (NUL-terminated, case-sensitive)
 * for the message being evaluated as a NUL-terminated string, or NULL when
 * the message has no such header (the identifier is then NULL/unknown). */
typedef const char *(*selector_lookup_fn)(void *ctx, const char *name);

/* Compile. On error returns a negative errno-style code and writes a
 * message a person can act on into err (e.g. "selector: expected ')' at
 * column 14"). The empty or all-blank string is an error too. */
int selector_compile(const char *text, struct selector **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* True only when the selector evaluates to TRUE for this message. */
bool selector_match(const struct selector *s, selector_lookup_fn lookup, void *ctx);

/* The text it was compiled from. */
const char *selector_text(const struct selector *s);

void selector_free(struct selector *s);

#endif
