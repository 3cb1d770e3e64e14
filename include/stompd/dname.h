/* Destination names as ActiveMQ reads them: the part after the /queue/ or
 * /topic/ prefix is a list of '.'-separated segments; in a pattern, a
 * segment "*" matches exactly one segment and a segment ">" matches every
 * remaining segment, zero or more (so "prices.>" matches "prices",
 * "prices.eu" and "prices.eu.fx"; segments after ">" are ignored). Pure
 * functions over the names (no prefix handling), shared by wildcard
 * subscriptions and access control. */
#ifndef STOMPD_DNAME_H
#define STOMPD_DNAME_H

#include <stdbool.h>
#include <stddef.h>

/* Does the name have a wildcard segment ("*" or ">")? */
bool dname_is_pattern(const char *name);
/* Does pattern match name (a name without wildcards)? */
bool dname_match(const char *pattern, const char *name);
/* How specific a pattern is, to pick the most specific of several that
 * match one name: more literal segments first, then one without ">"
 * before one with it, then fewer "*"; a name without wildcards ranks
 * above every pattern that matches it. Greater is more specific. */
long dname_specificity(const char *pattern);

/* Segment iteration: *seg and *len are the next segment of *p, which
 * moves past it and its dot. Returns false at the end. */
bool dname_next_segment(const char **p, const char **seg, size_t *len);

#endif
