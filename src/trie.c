/* The pattern trie (see trie.h): literal children in a hash by segment,
 * "*" and ">" children apart, items in a small array per node; a node
 * with no item and no child is removed on the way back up. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "stompd/dname.h"
#include "stompd/trie.h"

struct trie_node {
    char *seg;                  /* this node's literal segment (NULL for root, "*", ">") */
    size_t seglen;
    struct trie_node *parent;
    struct trie_node *children; /* literal children, by segment */
    struct trie_node *star;     /* "*": exactly one segment */
    struct trie_node *rest;     /* ">": zero or more segments */
    void **items;
    size_t nitems, capitems;
    UT_hash_handle hh;          /* in parent->children */
};

static struct trie_node *node_new(struct trie *t, struct trie_node *parent, const char *seg, size_t len)
{
    struct trie_node *n = calloc(1, sizeof *n);
    if (!n)
        abort();
    n->parent = parent;
    if (seg) {
        n->seg = malloc(len + 1);
        if (!n->seg)
            abort();
        memcpy(n->seg, seg, len);
        n->seg[len] = '\0';
        n->seglen = len;
    }
    t->nnodes++;
    return n;
}

void trie_init(struct trie *t)
{
    memset(t, 0, sizeof *t);
    t->root = node_new(t, NULL, NULL, 0);
}

static void node_free(struct trie_node *n)
{
    struct trie_node *c, *tmp;
    HASH_ITER(hh, n->children, c, tmp) {
        HASH_DEL(n->children, c);
        node_free(c);
    }
    if (n->star)
        node_free(n->star);
    if (n->rest)
        node_free(n->rest);
    free(n->items);
    free(n->seg);
    free(n);
}

void trie_free(struct trie *t)
{
    if (t->root)
        node_free(t->root);
    memset(t, 0, sizeof *t);
}

static bool is1(const char *seg, size_t len, char c)
{
    return len == 1 && seg[0] == c;
}

/* The node for pattern, created on the way when create is set. */
static struct trie_node *find(struct trie *t, const char *pattern, bool create)
{
    struct trie_node *n = t->root;
    const char *p = pattern, *seg;
    size_t len;
    while (n && dname_next_segment(&p, &seg, &len)) {
        struct trie_node **slot = NULL, *c = NULL;
        bool rest = is1(seg, len, '>');
        if (rest) {
            slot = &n->rest;
            c = n->rest;
        } else if (is1(seg, len, '*')) {
            slot = &n->star;
            c = n->star;
        } else {
            HASH_FIND(hh, n->children, seg, len, c);
        }
        if (!c && create) {
            c = node_new(t, n, slot ? NULL : seg, len);
            if (slot)
                *slot = c;
            else
                HASH_ADD_KEYPTR(hh, n->children, c->seg, c->seglen, c);
        }
        n = c;
        if (rest)
            break; /* what follows ">" does not count */
    }
    return n;
}

void trie_add(struct trie *t, const char *pattern, void *item)
{
    struct trie_node *n = find(t, pattern, true);
    if (n->nitems == n->capitems) {
        n->capitems = n->capitems ? n->capitems * 2 : 2;
        n->items = realloc(n->items, n->capitems * sizeof *n->items);
        if (!n->items)
            abort();
    }
    n->items[n->nitems++] = item;
    t->nitems++;
}

static bool node_empty(const struct trie_node *n)
{
    return n->nitems == 0 && !n->children && !n->star && !n->rest;
}

bool trie_remove(struct trie *t, const char *pattern, void *item)
{
    struct trie_node *n = find(t, pattern, false);
    if (!n)
        return false;
    size_t i;
    for (i = 0; i < n->nitems && n->items[i] != item; i++)
        ;
    if (i == n->nitems)
        return false;
    n->items[i] = n->items[--n->nitems];
    t->nitems--;
    /* prune what is left empty, up to (not including) the root */
    while (n->parent && node_empty(n)) {
        struct trie_node *p = n->parent;
        if (p->star == n)
            p->star = NULL;
        else if (p->rest == n)
            p->rest = NULL;
        else
            HASH_DEL(p->children, n);
        free(n->items);
        free(n->seg);
        free(n);
        t->nnodes--;
        n = p;
    }
    if (n->nitems == 0 && n->capitems) {
        free(n->items);
        n->items = NULL;
        n->capitems = 0;
    }
    return true;
}

static size_t emit(const struct trie_node *n, trie_fn fn, void *arg)
{
    for (size_t i = 0; i < n->nitems; i++)
        fn(n->items[i], arg);
    return n->nitems;
}

/* p: the rest of the name, NULL once every segment is consumed. */
static size_t walk(const struct trie_node *n, const char *p, trie_fn fn, void *arg)
{
    size_t calls = 0;
    if (n->rest)
        calls += emit(n->rest, fn, arg); /* ">" takes the rest, zero segments included */
    const char *seg;
    size_t len;
    if (!dname_next_segment(&p, &seg, &len))
        return calls + emit(n, fn, arg);
    struct trie_node *c;
    HASH_FIND(hh, n->children, seg, len, c);
    if (c)
        calls += walk(c, p, fn, arg);
    if (n->star)
        calls += walk(n->star, p, fn, arg);
    return calls;
}

size_t trie_match(const struct trie *t, const char *name, trie_fn fn, void *arg)
{
    if (!t->root || t->nitems == 0)
        return 0;
    return walk(t->root, name, fn, arg);
}
