/* An index of destination name patterns by segment (see dname.h for the
 * rules), to find every pattern that matches a name without looking at
 * the others: each node has a child per literal segment, one for "*" and
 * one for ">", and holds the items registered under the pattern that ends
 * there. Matching a name of k segments follows, at each level, the
 * literal child and the "*" child, and takes the ">" child's items on the
 * way: the cost is the part of the trie the name can reach, whatever the
 * number of patterns elsewhere. Pure data structure (no broker types):
 * wildcard topic subscriptions and wildcard queue consumers each keep
 * one. */
#ifndef STOMPD_TRIE_H
#define STOMPD_TRIE_H

#include <stdbool.h>
#include <stddef.h>

struct trie_node;

struct trie {
    struct trie_node *root;
    size_t nitems;
    size_t nnodes;
};

void trie_init(struct trie *t);
/* Frees the nodes; the items are the caller's. */
void trie_free(struct trie *t);
/* Register item under pattern (segments after a ">" are ignored, as
 * dname_match ignores them). An item may be registered under several
 * patterns, and twice under one (then it must be removed twice). */
void trie_add(struct trie *t, const char *pattern, void *item);
/* Remove one registration of item under pattern; false when there is
 * none. Nodes left empty go. */
bool trie_remove(struct trie *t, const char *pattern, void *item);
/* Call fn for the item of every registration whose pattern matches name
 * (a name without wildcards): once per registration, in no particular
 * order. fn must not change the trie. Returns how many calls it made. */
typedef void (*trie_fn)(void *item, void *arg);
size_t trie_match(const struct trie *t, const char *name, trie_fn fn, void *arg);

#endif
