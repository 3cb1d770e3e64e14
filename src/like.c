/* LIKE patterns as automata. The pattern becomes a list of ops (a literal
 * byte, '_' = one character, '%' = any characters); their NFA runs over
 * the value's bytes, its state sets held as bit vectors over pattern
 * positions, and compiling builds the DFA of those sets once, so matching
 * costs one table lookup per byte. Which patterns match which values is
 * exactly what the former backtracking matcher computed whenever the
 * pattern or the value is valid UTF-8 (see prune()). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/like.h"

enum { L_BYTE, L_ONE, L_ANY };

/* Byte roles for reading characters: a lead byte says how long its
 * character is (continuation bytes that follow are taken up to that
 * length); a continuation byte on its own is a character of one byte. */
enum { R_ONE, R_CONT, R_LEAD2, R_LEAD3, R_LEAD4 };

#define NVEC 4               /* B, M1, M2, M3: see step() */
#define MAX_STATES 65535     /* state ids are uint16_t */
#define HARD_WORK (8u << 20) /* unlimited compiles keep the bit-parallel matcher past this */

#define F_ACCEPT 1
#define F_DECIDED 2          /* no byte that follows can change the outcome */

struct like {
    size_t m;                /* ops; positions are 0..m */
    size_t nw;               /* 64-bit words per position vector */
    uint64_t *any, *one;     /* positions whose op is '%' / '_' */
    uint64_t *lit;           /* per literal byte: positions whose op is that byte */
    uint64_t *init;          /* the start set (NVEC vectors) */
    unsigned char cls[256];  /* byte -> class */
    uint32_t nc;             /* classes: bytes no op tells apart share one */
    unsigned char crole[256];
    int16_t clit[256];       /* class -> literal index, -1: none */
    /* the automaton; next == NULL when kept as a bit-parallel matcher */
    uint32_t nstates, start;
    uint16_t *next;          /* nstates x nc */
    uint8_t *flags;
};

static int role_of(unsigned char b)
{
    if (b >= 0x80 && b <= 0xBF)
        return R_CONT;
    if (b >= 0xC0 && b <= 0xDF)
        return R_LEAD2;
    if (b >= 0xE0 && b <= 0xEF)
        return R_LEAD3;
    if (b >= 0xF0 && b <= 0xF7)
        return R_LEAD4;
    return R_ONE;
}

/* Bytes in the character that starts at s (as the selector's lexer reads
 * them), tolerating malformed input. */
static size_t unitlen(const unsigned char *s, size_t n)
{
    size_t want = 1;
    if (s[0] >= 0xC0 && s[0] <= 0xDF)
        want = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        want = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF7)
        want = 4;
    size_t i = 1;
    while (i < want && i < n && (s[i] & 0xC0) == 0x80)
        i++;
    return i;
}

/* ------------------------------------------------------------ bit vectors */

static void vzero(uint64_t *v, size_t nw)
{
    memset(v, 0, nw * sizeof *v);
}

static void vset(uint64_t *v, size_t p)
{
    v[p / 64] |= (uint64_t)1 << (p % 64);
}

static bool vtest(const uint64_t *v, size_t p)
{
    return (v[p / 64] >> (p % 64)) & 1;
}

/* d |= (a & b) << 1 */
static void vor_and_shl(uint64_t *d, const uint64_t *a, const uint64_t *b, size_t nw)
{
    uint64_t carry = 0;
    for (size_t i = 0; i < nw; i++) {
        uint64_t x = a[i] & b[i];
        d[i] |= (x << 1) | carry;
        carry = x >> 63;
    }
}

/* Finishing a character in op p: '_' moves on to p + 1, '%' stays at p.
 * d |= complete(x). */
static void complete_or(const struct like *l, uint64_t *d, const uint64_t *x)
{
    vor_and_shl(d, x, l->one, l->nw);
    for (size_t i = 0; i < l->nw; i++)
        d[i] |= x[i] & l->any[i];
}

/* '%' may match nothing: being at a '%' is also being past it. Ops never
 * hold two '%' in a row, so one pass is the whole closure. */
static void closure(const struct like *l, uint64_t *b)
{
    vor_and_shl(b, b, l->any, l->nw);
}

/* Keep only what follows the last '%' reached. The former matcher only
 * ever retried from its latest '%' (a later '%' can absorb whatever an
 * earlier one would have); dropping the older attempts keeps the sets,
 * and so the automaton, small, and reproduces that matcher's answers
 * (they can differ from "some split exists" only when both pattern and
 * value hold malformed UTF-8). */
static void prune(const struct like *l, uint64_t *s)
{
    size_t nw = l->nw;
    for (size_t i = nw; i-- > 0;) {
        uint64_t x = (s[i] | s[nw + i] | s[2 * nw + i] | s[3 * nw + i]) & l->any[i];
        if (!x)
            continue;
        unsigned hi = 63u - (unsigned)__builtin_clzll(x);
        uint64_t keep = ~(((uint64_t)1 << hi) - 1);
        for (int k = 0; k < NVEC; k++) {
            uint64_t *v = s + (size_t)k * nw;
            memset(v, 0, i * sizeof *v);
            v[i] &= keep;
        }
        return;
    }
}

/* One byte of class c. A set is NVEC vectors over positions: B holds the
 * ops the next byte may start (at a character boundary); Mk holds '_' and
 * '%' ops in the middle of a character that may take k more continuation
 * bytes. A continuation byte feeds those characters; any other byte ends
 * them first. tmp: 2 vectors of scratch. */
static void step(const struct like *l, const uint64_t *s, unsigned c, uint64_t *n, uint64_t *tmp)
{
    size_t nw = l->nw;
    const uint64_t *sb = s, *m1 = s + nw, *m2 = s + 2 * nw, *m3 = s + 3 * nw;
    uint64_t *nb = n, *nm1 = n + nw;
    uint64_t *bound = tmp, *x = tmp + nw;
    int r = l->crole[c];
    vzero(n, NVEC * nw);
    memcpy(bound, sb, nw * sizeof *bound);
    if (r == R_CONT) {
        complete_or(l, nb, m1);
        memcpy(nm1, m2, nw * sizeof *nm1);
        memcpy(n + 2 * nw, m3, nw * sizeof *n);
    } else {
        for (size_t i = 0; i < nw; i++)
            x[i] = m1[i] | m2[i] | m3[i];
        complete_or(l, bound, x);
    }
    closure(l, bound);
    if (l->clit[c] >= 0)
        vor_and_shl(nb, bound, l->lit + (size_t)l->clit[c] * nw, nw);
    for (size_t i = 0; i < nw; i++)
        x[i] = bound[i] & (l->one[i] | l->any[i]);
    if (r == R_ONE || r == R_CONT) {
        complete_or(l, nb, x);
    } else {
        uint64_t *mk = n + (size_t)(r - R_LEAD2 + 1) * nw; /* lead of 2 bytes: 1 more */
        for (size_t i = 0; i < nw; i++)
            mk[i] |= x[i];
    }
    closure(l, nb);
    prune(l, n);
}

/* The value ends here: characters being read end too. */
static bool accepts(const struct like *l, const uint64_t *s, uint64_t *tmp)
{
    size_t nw = l->nw;
    uint64_t *b = tmp, *x = tmp + nw;
    memcpy(b, s, nw * sizeof *b);
    for (size_t i = 0; i < nw; i++)
        x[i] = s[nw + i] | s[2 * nw + i] | s[3 * nw + i];
    complete_or(l, b, x);
    closure(l, b);
    return vtest(b, l->m);
}

static bool vempty(const uint64_t *v, size_t nwords)
{
    for (size_t i = 0; i < nwords; i++)
        if (v[i])
            return false;
    return true;
}

/* ---------------------------------------------------------------- compile */

static int parse_ops(const unsigned char *s, size_t n, const unsigned char *e, size_t elen,
                     unsigned char *kind, unsigned char *byte, size_t *m)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        /* As in ActiveMQ: the escape makes whatever character follows it
         * literal, and a trailing escape stands for itself. */
        if (elen && n - i >= elen && !memcmp(s + i, e, elen)) {
            size_t take = elen;
            if (i + elen < n) {
                i += elen;
                take = unitlen(s + i, n - i);
            }
            for (size_t j = 0; j < take; j++) {
                kind[k] = L_BYTE;
                byte[k++] = s[i + j];
            }
            i += take;
        } else if (s[i] == '%') {
            if (k == 0 || kind[k - 1] != L_ANY)
                kind[k++] = L_ANY;
            i++;
        } else if (s[i] == '_') {
            kind[k++] = L_ONE;
            i++;
        } else {
            kind[k] = L_BYTE;
            byte[k++] = s[i++];
        }
    }
    *m = k;
    return 0;
}

struct builder {
    struct like *l;
    size_t setw;        /* words per set */
    uint64_t *sets;     /* nstates x setw */
    uint32_t cap;
    uint32_t *tab;      /* hash: state + 1, 0 = empty */
    uint32_t tabcap;
};

static uint64_t set_hash(const uint64_t *s, size_t nw)
{
    /* Each word is mixed in whole and the sum finished with a full
     * avalanche (splitmix64's finalizer): the table indexes by the low
     * bits, and a multiply alone carries a word's high bits only upward,
     * so sets that differ in their last positions used to share one
     * probe chain (a 50-op pattern took seconds to compile). */
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < nw; i++) {
        h ^= s[i];
        h ^= h >> 30;
        h *= 0xbf58476d1ce4e5b9ull;
        h ^= h >> 27;
        h *= 0x94d049bb133111ebull;
        h ^= h >> 31;
    }
    return h;
}

static int tab_grow(struct builder *b)
{
    uint32_t ncap = b->tabcap ? b->tabcap * 2 : 64;
    uint32_t *t = calloc(ncap, sizeof *t);
    if (!t)
        return -ENOMEM;
    for (uint32_t i = 0; i < b->l->nstates; i++) {
        uint64_t h = set_hash(b->sets + (size_t)i * b->setw, b->setw);
        uint32_t j = (uint32_t)h & (ncap - 1);
        while (t[j])
            j = (j + 1) & (ncap - 1);
        t[j] = i + 1;
    }
    free(b->tab);
    b->tab = t;
    b->tabcap = ncap;
    return 0;
}

/* The state holding set s, added when new; -1 when out of room. */
static int64_t state_of(struct builder *b, const uint64_t *s)
{
    struct like *l = b->l;
    uint64_t h = set_hash(s, b->setw);
    uint32_t j = (uint32_t)h & (b->tabcap - 1);
    while (b->tab[j]) {
        uint32_t i = b->tab[j] - 1;
        if (!memcmp(b->sets + (size_t)i * b->setw, s, b->setw * sizeof *s))
            return i;
        j = (j + 1) & (b->tabcap - 1);
    }
    if (l->nstates >= MAX_STATES)
        return -1;
    if (l->nstates == b->cap) {
        uint32_t ncap = b->cap * 2;
        uint64_t *ns = realloc(b->sets, (size_t)ncap * b->setw * sizeof *ns);
        if (!ns)
            return -2;
        b->sets = ns;
        uint16_t *nn = realloc(l->next, (size_t)ncap * l->nc * sizeof *nn);
        if (!nn)
            return -2;
        l->next = nn;
        b->cap = ncap;
    }
    uint32_t id = l->nstates++;
    memcpy(b->sets + (size_t)id * b->setw, s, b->setw * sizeof *s);
    b->tab[j] = id + 1;
    if (l->nstates * 2 > b->tabcap && tab_grow(b) != 0)
        return -2;
    return id;
}

/* Mark states from which some value ending accepts (want = true) or
 * rejects (want = false): a walk back along the transitions from the
 * states that do so right away. */
static int reach_back(const struct like *l, bool want, uint8_t *mark)
{
    size_t cells = (size_t)l->nstates * l->nc;
    uint32_t *cnt = calloc((size_t)l->nstates + 1, sizeof *cnt);
    uint32_t *from = malloc(cells * sizeof *from);
    uint32_t *todo = malloc((size_t)l->nstates * sizeof *todo);
    if (!cnt || !from || !todo) {
        free(cnt);
        free(from);
        free(todo);
        return -ENOMEM;
    }
    for (size_t i = 0; i < cells; i++)
        cnt[l->next[i] + 1]++;
    for (uint32_t s = 0; s < l->nstates; s++)
        cnt[s + 1] += cnt[s];
    for (size_t i = 0; i < cells; i++)
        from[cnt[l->next[i]]++] = (uint32_t)(i / l->nc);
    /* cnt[t] now ends t's sources; they start where t - 1's end */
    size_t nt = 0;
    for (uint32_t s = 0; s < l->nstates; s++) {
        mark[s] = ((l->flags[s] & F_ACCEPT) != 0) == want;
        if (mark[s])
            todo[nt++] = s;
    }
    while (nt) {
        uint32_t t = todo[--nt];
        for (uint32_t k = t ? cnt[t - 1] : 0; k < cnt[t]; k++) {
            uint32_t s = from[k];
            if (!mark[s]) {
                mark[s] = 1;
                todo[nt++] = s;
            }
        }
    }
    free(cnt);
    free(from);
    free(todo);
    return 0;
}

/* Build the automaton; -ERANGE past limit, -ENOMEM. */
static int build(struct like *l, uint64_t limit, uint64_t *work)
{
    struct builder b = {.l = l, .setw = NVEC * l->nw, .cap = 16};
    const uint64_t row = (uint64_t)l->nc * (1 + b.setw);
    int rc = 0;
    uint64_t *scratch = malloc((b.setw + 2 * l->nw) * sizeof *scratch);
    b.sets = malloc((size_t)b.cap * b.setw * sizeof *b.sets);
    l->next = malloc((size_t)b.cap * l->nc * sizeof *l->next);
    if (!scratch || !b.sets || !l->next || tab_grow(&b) != 0) {
        rc = -ENOMEM;
        goto out;
    }
    uint64_t *dead = scratch; /* all zero */
    vzero(dead, b.setw);
    if (state_of(&b, dead) != 0 || state_of(&b, l->init) != 1) {
        rc = -ENOMEM;
        goto out;
    }
    l->start = 1;
    for (size_t c = 0; c < l->nc; c++)
        l->next[c] = 0;
    for (uint32_t i = 1; i < l->nstates; i++) {
        if (*work + row > limit) {
            rc = -ERANGE;
            goto out;
        }
        *work += row;
        for (uint32_t c = 0; c < l->nc; c++) {
            /* sets may move as they grow: step from a copy */
            uint64_t *next = scratch;
            step(l, b.sets + (size_t)i * b.setw, c, next, scratch + b.setw);
            int64_t t = state_of(&b, next);
            if (t < 0) {
                rc = t == -1 ? -ERANGE : -ENOMEM;
                goto out;
            }
            l->next[(size_t)i * l->nc + c] = (uint16_t)t;
        }
    }
    l->flags = calloc(l->nstates, 1);
    uint8_t *can_accept = malloc(l->nstates), *can_reject = malloc(l->nstates);
    if (!l->flags || !can_accept || !can_reject) {
        free(can_accept);
        free(can_reject);
        rc = -ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < l->nstates; i++)
        if (accepts(l, b.sets + (size_t)i * b.setw, scratch))
            l->flags[i] = F_ACCEPT;
    if ((rc = reach_back(l, true, can_accept)) == 0 && (rc = reach_back(l, false, can_reject)) == 0) {
        for (uint32_t i = 0; i < l->nstates; i++)
            if (!can_accept[i] || !can_reject[i])
                l->flags[i] |= F_DECIDED;
    }
    free(can_accept);
    free(can_reject);
out:
    free(scratch);
    free(b.sets);
    free(b.tab);
    if (rc) {
        free(l->next);
        free(l->flags);
        l->next = NULL;
        l->flags = NULL;
        l->nstates = 0;
    }
    return rc;
}

void like_free(struct like *l)
{
    if (!l)
        return;
    free(l->any);
    free(l->next);
    free(l->flags);
    free(l);
}

int like_compile(const char *pat, size_t n, const char *esc, size_t elen, uint64_t limit, uint64_t *work,
                 struct like **out)
{
    *out = NULL;
    const unsigned char *s = (const unsigned char *)pat;
    struct like *l = calloc(1, sizeof *l);
    unsigned char *kind = malloc(n + 1), *byte = malloc(n + 1);
    if (!l || !kind || !byte) {
        free(l);
        free(kind);
        free(byte);
        return -ENOMEM;
    }
    parse_ops(s, n, (const unsigned char *)esc, esc ? elen : 0, kind, byte, &l->m);

    /* Byte classes: the role, and which literal (if any) the byte is. */
    int16_t litof[256];
    size_t nlit = 0;
    for (int i = 0; i < 256; i++)
        litof[i] = -1;
    for (size_t k = 0; k < l->m; k++)
        if (kind[k] == L_BYTE && litof[byte[k]] < 0)
            litof[byte[k]] = (int16_t)nlit++;
    int16_t cls_of_role[5] = {-1, -1, -1, -1, -1};
    for (int b = 0; b < 256; b++) {
        int r = role_of((unsigned char)b);
        if (litof[b] >= 0 || cls_of_role[r] < 0) {
            l->crole[l->nc] = (unsigned char)r;
            l->clit[l->nc] = litof[b];
            if (litof[b] < 0)
                cls_of_role[r] = (int16_t)l->nc;
            l->cls[b] = (unsigned char)l->nc++;
        } else {
            l->cls[b] = (unsigned char)cls_of_role[r];
        }
    }

    l->nw = (l->m + 1 + 63) / 64;
    size_t nw = l->nw;
    /* any, one, nlit literal masks, the start set: one allocation */
    l->any = calloc((2 + nlit + NVEC) * nw, sizeof *l->any);
    if (!l->any) {
        free(kind);
        free(byte);
        like_free(l);
        return -ENOMEM;
    }
    l->one = l->any + nw;
    l->lit = l->any + 2 * nw;
    l->init = l->lit + nlit * nw;
    for (size_t k = 0; k < l->m; k++) {
        if (kind[k] == L_ANY)
            vset(l->any, k);
        else if (kind[k] == L_ONE)
            vset(l->one, k);
        else
            vset(l->lit + (size_t)litof[byte[k]] * nw, k);
    }
    free(kind);
    free(byte);
    vset(l->init, 0);
    closure(l, l->init);
    prune(l, l->init);

    uint64_t w = *work;
    int rc = limit == LIKE_BIT_PARALLEL ? -ERANGE : build(l, limit ? limit : HARD_WORK, &w);
    if (limit == LIKE_BIT_PARALLEL)
        limit = 0;
    if (rc == 0 || (rc == -ERANGE && !limit)) {
        /* unlimited and past the cap: the bit-parallel matcher instead */
        *work = rc == 0 ? w : *work + (uint64_t)l->nc * (1 + NVEC * nw);
        *out = l;
        return 0;
    }
    like_free(l);
    return rc;
}

size_t like_states(const struct like *l)
{
    return l->next ? l->nstates : 0;
}

/* The bit-parallel matcher: the automaton's steps, computed per byte. */
static int simulate(const struct like *l, const unsigned char *s, size_t n, int64_t *left)
{
    size_t nw = l->nw, setw = NVEC * nw;
    int64_t per = 1 + (int64_t)setw;
    uint64_t *a = malloc((2 * setw + 2 * nw) * sizeof *a);
    if (!a) {
        *left = 0;
        return -1;
    }
    uint64_t *b = a + setw, *tmp = b + setw;
    memcpy(a, l->init, setw * sizeof *a);
    int rc = -2;
    for (size_t i = 0; i < n; i++) {
        if ((*left -= per) < 0) {
            rc = -1;
            break;
        }
        step(l, a, l->cls[s[i]], b, tmp);
        uint64_t *t = a;
        a = b;
        b = t;
        if (vempty(a, setw)) {
            rc = 0;
            break;
        }
    }
    if (rc == -2)
        rc = accepts(l, a, tmp) ? 1 : 0;
    free(a < b ? a : b);
    return rc;
}

int like_run(const struct like *l, const char *str, size_t n, int64_t *left)
{
    const unsigned char *s = (const unsigned char *)str;
    if (!l->next)
        return simulate(l, s, n, left);
    uint32_t st = l->start;
    const uint16_t *next = l->next;
    const uint32_t nc = l->nc;
    /* A decided state only leads to decided states with the same answer,
     * so looking at the flags once per block of 16 bytes is as good as
     * every byte. The charge is whole blocks read, whatever the budget,
     * so an evaluation costs the same with any budget that covers it. */
    size_t i = 0;
    while (i < n && !(l->flags[st] & F_DECIDED)) {
        size_t end = n - i > 16 ? i + 16 : n;
        if ((int64_t)(end - i) > *left) {
            *left = 0;
            return -1;
        }
        *left -= (int64_t)(end - i);
        for (; i < end; i++)
            st = next[st * nc + l->cls[s[i]]];
    }
    return (l->flags[st] & F_ACCEPT) ? 1 : 0;
}

bool like_match(const struct like *l, const char *s, size_t n)
{
    int64_t left = INT64_MAX;
    return like_run(l, s, n, &left) == 1;
}
