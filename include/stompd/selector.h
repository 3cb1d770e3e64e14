/* JMS message selectors (a SQL-92 conditional-expression subset) over
 * message headers. Pure: compile a string into a tree once, evaluate it
 * against any message through a lookup callback. Three-valued logic as the
 * JMS specification defines it: a selector matches only when it is TRUE.
 * Selectors come from clients and run on the loop thread, so what one may
 * cost is bounded: its length and compiled size when it is compiled, the
 * steps of each evaluation when the caller gives a budget. */
#ifndef STOMPD_SELECTOR_H
#define STOMPD_SELECTOR_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct selector;

/* The longest selector compiled at all (a configured limit is at most this). */
#define SELECTOR_MAX_LENGTH 65536

/* Returned by selector_compile_limited when a limit was passed (the text
 * itself may be fine): the caller can name its setting. */
#define SELECTOR_TOO_LONG (-E2BIG)
#define SELECTOR_TOO_COMPLEX (-ERANGE)

struct selector_limits {
    size_t max_length;       /* bytes of text; 0 = SELECTOR_MAX_LENGTH */
    /* Compiled size: one unit per operator, operand and IN-list item, plus
     * the work of building each LIKE pattern's automaton (about its states
     * x distinct byte classes x pattern length / 16). Bounds the time and
     * memory one SUBSCRIBE costs. 0 = no limit. */
    uint64_t max_complexity;
};

/* Returns the value of identifier `name` (NUL-terminated, case-sensitive)
 * for the message being evaluated as a NUL-terminated string, or NULL when
 * the message has no such header (the identifier is then NULL/unknown).
 * The string must stay valid until the evaluation returns (each name is
 * looked up once per evaluation). */
typedef const char *(*selector_lookup_fn)(void *ctx, const char *name);

/* Compile. On error returns a negative errno-style code and writes a
 * message a person can act on into err (e.g. "selector: expected ')' at
 * column 14"). The empty or all-blank string is an error too: -EINVAL for
 * anything wrong with the text, SELECTOR_TOO_LONG / SELECTOR_TOO_COMPLEX
 * for a limit passed, -ENOMEM. */
int selector_compile_limited(const char *text, const struct selector_limits *lim, struct selector **out,
                             char *err, size_t errlen) __attribute__((warn_unused_result));

/* No limits but SELECTOR_MAX_LENGTH: for selectors accepted before (a
 * store's durable subscriptions), which must compile whatever the limits
 * are now. */
int selector_compile(const char *text, struct selector **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* The compiled size, in the units of max_complexity. */
uint64_t selector_complexity(const struct selector *s);

/* Evaluate within *budget steps (one per expression node, plus one per
 * byte of a header value read, compared, converted or matched; lookup may
 * charge its own work by lowering *budget through its ctx). Returns 1
 * when the selector is TRUE, 0 when FALSE or UNKNOWN, -1 when the budget
 * ran out first: the outcome is then not known, and *budget is <= 0.
 * Otherwise the steps spent are taken off *budget. */
int selector_eval(const struct selector *s, selector_lookup_fn lookup, void *ctx, int64_t *budget);

/* True only when the selector evaluates to TRUE for this message (no budget). */
bool selector_match(const struct selector *s, selector_lookup_fn lookup, void *ctx);

/* The text it was compiled from. */
const char *selector_text(const struct selector *s);

void selector_free(struct selector *s);

#endif
