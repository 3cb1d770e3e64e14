/* LIKE patterns of JMS selectors, compiled once into a small automaton so
 * that matching a value reads each of its bytes once, whatever the pattern:
 * a hostile pattern cannot make matching cost (value length x pattern
 * length). '_' stands for one character and '%' for any run of them, a
 * character being a UTF-8 sequence (a stray byte counts as one); the
 * escape makes the character after it literal. Pure: no I/O, no globals. */
#ifndef STOMPD_LIKE_H
#define STOMPD_LIKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct like;

/* Compile pattern pat[0..n) with the escape esc[0..elen) (elen 0: none).
 * Building the automaton costs work units (about states x byte classes x
 * pattern words), added to *work. With limit > 0, a pattern whose build
 * would take *work past limit is refused: -ERANGE, nothing allocated.
 * With limit 0 there is no refusal: past an internal cap the pattern is
 * kept as a bit-parallel matcher instead (linear in the value too, but a
 * few times slower per byte), so a stored selector always compiles.
 * -ENOMEM when out of memory. */
#define LIKE_BIT_PARALLEL UINT64_MAX /* as limit: build no automaton (tests) */
int like_compile(const char *pat, size_t n, const char *esc, size_t elen, uint64_t limit, uint64_t *work,
                 struct like **out) __attribute__((warn_unused_result));

/* Match s[0..n) against the pattern, spending one unit of *left per byte
 * read (the automaton stops reading as soon as the outcome is certain).
 * Returns 1 (matches), 0 (does not), or -1 when *left ran out first
 * (*left is then negative or zero and the outcome unknown). */
int like_run(const struct like *l, const char *s, size_t n, int64_t *left);

/* Unbudgeted convenience for tests. */
bool like_match(const struct like *l, const char *s, size_t n);

/* Automaton states, or 0 for a pattern kept as a bit-parallel matcher. */
size_t like_states(const struct like *l);

void like_free(struct like *l);

#endif
