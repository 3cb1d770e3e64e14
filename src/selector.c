/* JMS message selectors: a lexer and recursive-descent parser turn the text
 * into a tree held in one arena, which the evaluator then only reads, so one
 * compiled selector can be matched from any number of threads at once.
 * Selectors arrive from the network and run on the loop thread: compiling
 * is bounded (length, depth, complexity), LIKE patterns become automata
 * (like.c), and evaluation can be given a budget of steps. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stompd/like.h"
#include "stompd/selector.h"

/* Selectors arrive from the network; these bound the memory and the stack
 * one hostile SUBSCRIBE can make us spend (the caller's limits are at most
 * as generous). */
#define SEL_MAX_LEN SELECTOR_MAX_LENGTH
#define SEL_MAX_DEPTH 100

/* ------------------------------------------------------------------ arena */

/* Every node, name and string of a compiled selector lives in these chunks,
 * so freeing it needs neither a tree walk nor recursion. */
struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[];
};

static void *arena_alloc(struct chunk **head, size_t n)
{
    const size_t al = _Alignof(max_align_t);
    n = (n + al - 1) & ~(al - 1);
    struct chunk *c = *head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->next = *head;
        c->used = 0;
        c->cap = cap;
        *head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

static void arena_free(struct chunk *c)
{
    while (c) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
}

/* ----------------------------------------------------------------- values */

enum vtype {
    V_NULL,   /* unknown: a missing header, or an undefined operation */
    V_BOOL,
    V_INT,
    V_DBL,
    V_STR,    /* a string literal from the selector */
    V_RAW,    /* a header value: a string that may still read as a number or boolean */
};

struct val {
    enum vtype t;
    union {
        bool b;
        long long i;
        double d;
        struct {
            const char *p;
            size_t n;
        } s;
    } u;
};

enum tri { TRI_FALSE, TRI_TRUE, TRI_UNKNOWN };

/* ------------------------------------------------------------------ tokens */

enum tk {
    TK_EOF,
    TK_IDENT,
    TK_STR,
    TK_INT,
    TK_DBL,
    TK_LP,
    TK_RP,
    TK_COMMA,
    TK_EQ,
    TK_NE,
    TK_LT,
    TK_LE,
    TK_GT,
    TK_GE,
    TK_PLUS,
    TK_MINUS,
    TK_STAR,
    TK_SLASH,
    TK_NOT,
    TK_AND,
    TK_OR,
    TK_BETWEEN,
    TK_LIKE,
    TK_ESCAPE,
    TK_IN,
    TK_IS,
    TK_NULL,
    TK_TRUE,
    TK_FALSE,
};

static const struct {
    const char *word;
    enum tk kind;
} keywords[] = {
    {"NOT", TK_NOT},         {"AND", TK_AND},   {"OR", TK_OR},
    {"BETWEEN", TK_BETWEEN}, {"LIKE", TK_LIKE}, {"ESCAPE", TK_ESCAPE},
    {"IN", TK_IN},           {"IS", TK_IS},     {"NULL", TK_NULL},
    {"TRUE", TK_TRUE},       {"FALSE", TK_FALSE},
};

struct tok {
    enum tk kind;
    size_t pos, len;          /* span in the text */
    bool big;                 /* TK_INT above LLONG_MAX; legal only as -2^63 */
    unsigned long long u;     /* TK_INT */
    double d;                 /* TK_DBL */
    const char *s;            /* TK_STR decoded, TK_IDENT NUL-terminated, in the arena */
    size_t slen;
};

/* ------------------------------------------------------------------- tree */

enum nkind {
    N_LIT,
    N_IDENT,
    N_NEG,
    N_POS,
    N_ARITH,    /* kids chained by next; each kid's link joins it to the value so far */
    N_CMP,
    N_AND,
    N_OR,
    N_NOT,
    N_BETWEEN,
    N_LIKE,
    N_IN,
    N_ISNULL,
};

/* What the compiler can tell about an expression's type; identifiers stay
 * ANY because a header's meaning depends on what it is compared with. */
enum stype { ST_ANY, ST_BOOL, ST_NUM, ST_STR };

struct strlit {
    const char *p;
    size_t n;
    struct strlit *next;
};

struct node {
    enum nkind kind;
    enum stype type;
    size_t pos;
    struct node *next;     /* following kid of an AND, OR or arithmetic chain */
    enum tk link;          /* arithmetic chain: operator joining this kid to the ones before */
    enum tk op;            /* N_CMP */
    bool negate;
    uint32_t slot;         /* N_IDENT: its name's index, for the per-evaluation cache */
    union {
        struct val lit;
        const char *name;
        struct node *kid;
        struct {
            struct node *l, *r;
        } bin;
        struct {
            struct node *x, *lo, *hi;
        } between;
        struct {
            struct node *x;
            const struct like *pat;
        } like;
        struct {
            struct node *x;
            const struct strlit *items;
        } in;
    } u;
};

/* The automata live outside the arena; this list frees them. */
struct like_ref {
    struct like *l;
    struct like_ref *next;
};

struct selector {
    struct chunk *arena;
    const char *text;
    const struct node *root;
    struct like_ref *likes;
    uint32_t nidents;      /* distinct identifier names */
    uint64_t complexity;
};

/* ----------------------------------------------------------------- parser */

struct parser {
    const char *text;
    size_t len;
    struct chunk **arena;
    struct selector *sel;
    struct tok *toks;
    size_t ntoks, cur;
    int depth;
    int rc;
    char *err;
    size_t errlen;
    uint64_t work, max_work; /* complexity so far, and its limit (0: none) */
    /* identifier names seen, by hash: index + 1, 0 = empty */
    const char **names;
    uint32_t *ntab;
    uint32_t ntabcap;
};

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Bytes from 0x80 up are let in so UTF-8 names work, as Java allows
 * non-ASCII letters in identifiers. */
static bool ident_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$' || c >= 0x80;
}

static bool ident_part(unsigned char c)
{
    return ident_start(c) || is_digit(c) || c == '.';
}

/* Length of the UTF-8 character at s, tolerating malformed input by
 * treating a stray byte as a character of its own. */
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

/* Columns count characters, not bytes, so they match what a person sees. */
static size_t column(const char *text, size_t pos)
{
    size_t col = 1;
    for (size_t i = 0; i < pos && text[i]; i++)
        if (((unsigned char)text[i] & 0xC0) != 0x80)
            col++;
    return col;
}

static int fail(struct parser *p, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, size_t pos, const char *fmt, ...)
{
    if (p->rc)
        return p->rc;
    p->rc = -EINVAL;
    if (p->err && p->errlen) {
        char what[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        snprintf(p->err, p->errlen, "selector: %s at column %zu", what, column(p->text, pos));
    }
    return p->rc;
}

/* A limit of the caller's was passed: a distinct code, so the caller can
 * name the setting. */
static int fail_limit(struct parser *p, int code, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_limit(struct parser *p, int code, size_t pos, const char *fmt, ...)
{
    if (p->rc)
        return p->rc;
    if (p->err && p->errlen) {
        char what[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        snprintf(p->err, p->errlen, "selector: %s at column %zu", what, column(p->text, pos));
    }
    p->rc = code;
    return p->rc;
}

static int oom(struct parser *p)
{
    if (p->rc)
        return p->rc;
    p->rc = -ENOMEM;
    if (p->err && p->errlen)
        snprintf(p->err, p->errlen, "selector: out of memory");
    return p->rc;
}

/* Quotes source text for an error message; control and non-ASCII bytes are
 * escaped so a hostile selector cannot put raw bytes into our logs. */
static void quote_span(const char *s, size_t n, char *buf, size_t cap)
{
    size_t o = 0, shown = n > 24 ? 24 : n;
    buf[o++] = '\'';
    for (size_t i = 0; i < shown && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f)
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
    }
    if (shown < n && o + 5 < cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '\'';
    buf[o] = '\0';
}

static void describe(const struct parser *p, const struct tok *t, char *buf, size_t cap)
{
    if (t->kind == TK_EOF) {
        snprintf(buf, cap, "end of selector");
        return;
    }
    char q[128];
    if (t->kind == TK_STR) {
        quote_span(p->text + t->pos + 1, t->len - 2, q, sizeof q);
        snprintf(buf, cap, "string %s", q);
    } else {
        quote_span(p->text + t->pos, t->len, q, sizeof q);
        snprintf(buf, cap, "%s", q);
    }
}

static int lex_string(struct parser *p, size_t *i, struct tok *t)
{
    const char *s = p->text;
    size_t start = *i, j = start + 1, n = 0;
    for (;;) {
        if (s[j] == '\0')
            return fail(p, start, "unterminated string");
        if (s[j] == '\'') {
            if (s[j + 1] != '\'')
                break;
            j++;
        }
        j++;
        n++;
    }
    char *d = arena_alloc(p->arena, n + 1);
    if (!d)
        return oom(p);
    size_t k = 0;
    for (size_t r = start + 1; r < j; r++) {
        d[k++] = s[r];
        if (s[r] == '\'')
            r++;
    }
    d[k] = '\0';
    t->kind = TK_STR;
    t->s = d;
    t->slen = n;
    *i = j + 1;
    return 0;
}

static int lex_number(struct parser *p, size_t *i, struct tok *t)
{
    const char *s = p->text;
    size_t j = *i;
    bool approx = false;
    while (is_digit((unsigned char)s[j]))
        j++;
    if (s[j] == '.') {
        approx = true;
        j++;
        while (is_digit((unsigned char)s[j]))
            j++;
    }
    if (s[j] == 'e' || s[j] == 'E') {
        size_t k = j + 1;
        if (s[k] == '+' || s[k] == '-')
            k++;
        if (is_digit((unsigned char)s[k])) {
            approx = true;
            j = k;
            while (is_digit((unsigned char)s[j]))
                j++;
        }
    }
    size_t len = j - *i;
    if (approx) {
        /* strtod on the text itself would also read hex, "inf" and more. */
        char small[64];
        char *buf = len < sizeof small ? small : malloc(len + 1);
        if (!buf)
            return oom(p);
        memcpy(buf, s + *i, len);
        buf[len] = '\0';
        t->d = strtod(buf, NULL);
        if (buf != small)
            free(buf);
        if (!isfinite(t->d))
            return fail(p, *i, "number %.*s out of range", (int)(len > 40 ? 40 : len), s + *i);
        t->kind = TK_DBL;
    } else {
        /* ActiveMQ reads a leading zero as octal; refusing it beats
         * silently disagreeing about what 010 means. */
        if (s[*i] == '0' && (s[j] == 'x' || s[j] == 'X'))
            return fail(p, *i, "hexadecimal literals are not supported");
        if (len > 1 && s[*i] == '0')
            return fail(p, *i, "octal literal %.*s is not supported", (int)(len > 40 ? 40 : len),
                        s + *i);
        const unsigned long long lim = (unsigned long long)LLONG_MAX + 1;
        unsigned long long u = 0;
        for (size_t k = *i; k < j; k++) {
            unsigned d = (unsigned)(s[k] - '0');
            if (u > (lim - d) / 10) {
                u = lim + 1;
                break;
            }
            u = u * 10 + d;
        }
        if (u > lim)
            return fail(p, *i, "integer %.*s out of range", (int)(len > 40 ? 40 : len), s + *i);
        t->big = u == lim;
        t->u = u;
        t->kind = TK_INT;
    }
    *i = j;
    return 0;
}

static int lex_ident(struct parser *p, size_t *i, struct tok *t)
{
    const char *s = p->text;
    size_t j = *i;
    while (ident_part((unsigned char)s[j]))
        j++;
    size_t len = j - *i;
    for (size_t k = 0; k < sizeof keywords / sizeof keywords[0]; k++) {
        if (strlen(keywords[k].word) == len && !strncasecmp(keywords[k].word, s + *i, len)) {
            t->kind = keywords[k].kind;
            *i = j;
            return 0;
        }
    }
    char *name = arena_alloc(p->arena, len + 1);
    if (!name)
        return oom(p);
    memcpy(name, s + *i, len);
    name[len] = '\0';
    t->kind = TK_IDENT;
    t->s = name;
    t->slen = len;
    *i = j;
    return 0;
}

static int lex(struct parser *p)
{
    const char *s = p->text;
    /* Every token takes at least one byte, plus one for the end. */
    p->toks = calloc(p->len + 1, sizeof *p->toks);
    if (!p->toks)
        return oom(p);
    size_t i = 0;
    for (;;) {
        while (is_space((unsigned char)s[i]))
            i++;
        struct tok *t = &p->toks[p->ntoks++];
        t->pos = i;
        unsigned char c = (unsigned char)s[i];
        int rc = 0;
        if (c == '\0') {
            t->kind = TK_EOF;
            return 0;
        } else if (c == '\'') {
            rc = lex_string(p, &i, t);
        } else if (is_digit(c) || (c == '.' && is_digit((unsigned char)s[i + 1]))) {
            rc = lex_number(p, &i, t);
        } else if (ident_start(c)) {
            rc = lex_ident(p, &i, t);
        } else {
            i++;
            switch (c) {
            case '(': t->kind = TK_LP; break;
            case ')': t->kind = TK_RP; break;
            case ',': t->kind = TK_COMMA; break;
            case '=': t->kind = TK_EQ; break;
            case '+': t->kind = TK_PLUS; break;
            case '-': t->kind = TK_MINUS; break;
            case '*': t->kind = TK_STAR; break;
            case '/': t->kind = TK_SLASH; break;
            case '<':
                t->kind = TK_LT;
                if (s[i] == '=') {
                    t->kind = TK_LE;
                    i++;
                } else if (s[i] == '>') {
                    t->kind = TK_NE;
                    i++;
                }
                break;
            case '>':
                t->kind = TK_GT;
                if (s[i] == '=') {
                    t->kind = TK_GE;
                    i++;
                }
                break;
            default: {
                char q[16];
                quote_span(s + t->pos, 1, q, sizeof q);
                return fail(p, t->pos, "unexpected character %s", q);
            }
            }
        }
        if (rc)
            return rc;
        t->len = i - t->pos;
    }
}

static const struct tok *peek(const struct parser *p)
{
    return &p->toks[p->cur];
}

static const struct tok *advance(struct parser *p)
{
    const struct tok *t = &p->toks[p->cur];
    if (t->kind != TK_EOF)
        p->cur++;
    return t;
}

static int unexpected(struct parser *p, const struct tok *t)
{
    char d[160];
    describe(p, t, d, sizeof d);
    if (t->kind == TK_NULL)
        return fail(p, t->pos, "unexpected %s (NULL is only allowed in IS [NOT] NULL)", d);
    return fail(p, t->pos, "unexpected %s", d);
}

static int enter(struct parser *p)
{
    if (++p->depth > SEL_MAX_DEPTH)
        return fail(p, peek(p)->pos, "selector nested too deeply (more than %d levels)",
                    SEL_MAX_DEPTH);
    return 0;
}

/* Complexity: one unit per node and IN item, plus what building each LIKE
 * automaton costs (like.c counts it). */
static int spend(struct parser *p, uint64_t units, size_t pos)
{
    p->work += units;
    if (p->max_work && p->work > p->max_work)
        return fail_limit(p, SELECTOR_TOO_COMPLEX, pos, "too complex (compiled size over %llu)",
                          (unsigned long long)p->max_work);
    return 0;
}

static int new_node(struct parser *p, enum nkind kind, enum stype type, size_t pos,
                    struct node **out)
{
    int rc = spend(p, 1, pos);
    if (rc)
        return rc;
    struct node *n = arena_alloc(p->arena, sizeof *n);
    if (!n)
        return oom(p);
    n->kind = kind;
    n->type = type;
    n->pos = pos;
    *out = n;
    return 0;
}

static const char *type_name(enum stype t)
{
    switch (t) {
    case ST_BOOL: return "a boolean";
    case ST_NUM: return "a number";
    case ST_STR: return "a string";
    default: return "an identifier";
    }
}

static int want_bool(struct parser *p, const struct node *n, const char *what)
{
    if (n->type == ST_NUM || n->type == ST_STR)
        return fail(p, n->pos, "%s must be a boolean expression; found %s", what,
                    type_name(n->type));
    return 0;
}

static int want_num(struct parser *p, const struct node *n, const char *what)
{
    if (n->type == ST_BOOL || n->type == ST_STR)
        return fail(p, n->pos, "%s must be numeric; found %s", what, type_name(n->type));
    return 0;
}

static int want_str(struct parser *p, const struct node *n, const char *what)
{
    if (n->type == ST_BOOL || n->type == ST_NUM)
        return fail(p, n->pos, "%s must be a string; found %s", what, type_name(n->type));
    return 0;
}

static int parse_expr(struct parser *p, struct node **out);
static int parse_unary(struct parser *p, struct node **out);

static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The same name always gets the same slot, so an evaluation looks each
 * header up once however often the selector names it. The table has room
 * for every token, so it never fills. */
static uint32_t intern(struct parser *p, const char *name)
{
    uint32_t j = (uint32_t)name_hash(name) & (p->ntabcap - 1);
    while (p->ntab[j]) {
        uint32_t k = p->ntab[j] - 1;
        if (!strcmp(p->names[k], name))
            return k;
        j = (j + 1) & (p->ntabcap - 1);
    }
    uint32_t k = p->sel->nidents++;
    p->names[k] = name;
    p->ntab[j] = k + 1;
    return k;
}

static int parse_primary(struct parser *p, struct node **out)
{
    const struct tok *t = advance(p);
    struct node *n;
    int rc;
    switch (t->kind) {
    case TK_INT:
        if (t->big)
            return fail(p, t->pos, "integer %.*s out of range", (int)t->len, p->text + t->pos);
        if ((rc = new_node(p, N_LIT, ST_NUM, t->pos, &n)))
            return rc;
        n->u.lit.t = V_INT;
        n->u.lit.u.i = (long long)t->u;
        break;
    case TK_DBL:
        if ((rc = new_node(p, N_LIT, ST_NUM, t->pos, &n)))
            return rc;
        n->u.lit.t = V_DBL;
        n->u.lit.u.d = t->d;
        break;
    case TK_STR:
        if ((rc = new_node(p, N_LIT, ST_STR, t->pos, &n)))
            return rc;
        n->u.lit.t = V_STR;
        n->u.lit.u.s.p = t->s;
        n->u.lit.u.s.n = t->slen;
        break;
    case TK_TRUE:
    case TK_FALSE:
        if ((rc = new_node(p, N_LIT, ST_BOOL, t->pos, &n)))
            return rc;
        n->u.lit.t = V_BOOL;
        n->u.lit.u.b = t->kind == TK_TRUE;
        break;
    case TK_IDENT:
        if ((rc = new_node(p, N_IDENT, ST_ANY, t->pos, &n)))
            return rc;
        n->u.name = t->s;
        n->slot = intern(p, t->s);
        break;
    case TK_LP:
        if ((rc = parse_expr(p, &n)))
            return rc;
        if (peek(p)->kind != TK_RP)
            return fail(p, peek(p)->pos, "expected ')'");
        advance(p);
        break;
    default:
        return unexpected(p, t);
    }
    *out = n;
    return 0;
}

static int parse_unary(struct parser *p, struct node **out)
{
    const struct tok *t = peek(p);
    if (t->kind != TK_PLUS && t->kind != TK_MINUS)
        return parse_primary(p, out);
    advance(p);
    int rc = enter(p);
    if (rc)
        return rc;
    struct node *kid, *n;
    const struct tok *lit = peek(p);
    /* 9223372036854775808 exists only as the magnitude of LLONG_MIN. */
    if (t->kind == TK_MINUS && lit->kind == TK_INT && lit->big) {
        advance(p);
        if ((rc = new_node(p, N_LIT, ST_NUM, t->pos, &n)))
            return rc;
        n->u.lit.t = V_INT;
        n->u.lit.u.i = LLONG_MIN;
        p->depth--;
        *out = n;
        return 0;
    }
    if ((rc = parse_unary(p, &kid)))
        return rc;
    const char *what = t->kind == TK_MINUS ? "operand of unary '-'" : "operand of unary '+'";
    if ((rc = want_num(p, kid, what)))
        return rc;
    if (kid->kind == N_LIT && t->kind == TK_PLUS) {
        n = kid;
    } else if (kid->kind == N_LIT && kid->u.lit.t == V_DBL) {
        n = kid;
        n->u.lit.u.d = -n->u.lit.u.d;
    } else if (kid->kind == N_LIT && kid->u.lit.t == V_INT && kid->u.lit.u.i != LLONG_MIN) {
        n = kid;
        n->u.lit.u.i = -n->u.lit.u.i;
    } else {
        if ((rc = new_node(p, t->kind == TK_MINUS ? N_NEG : N_POS, ST_NUM, t->pos, &n)))
            return rc;
        n->u.kid = kid;
    }
    n->pos = t->pos;
    p->depth--;
    *out = n;
    return 0;
}

/* Chains are kept flat rather than as nested binary nodes so that a long
 * "a OR b OR c ..." does not make a deep tree to recurse through. */
static int parse_arith(struct parser *p, enum tk op1, enum tk op2,
                       int (*sub)(struct parser *, struct node **), struct node **out)
{
    struct node *first, *last, *n;
    int rc = sub(p, &first);
    if (rc)
        return rc;
    enum tk k = peek(p)->kind;
    if (k != op1 && k != op2) {
        *out = first;
        return 0;
    }
    const char *names[] = {[TK_PLUS] = "operand of '+'", [TK_MINUS] = "operand of '-'",
                           [TK_STAR] = "operand of '*'", [TK_SLASH] = "operand of '/'"};
    if ((rc = want_num(p, first, names[k])))
        return rc;
    last = first;
    while ((k = peek(p)->kind) == op1 || k == op2) {
        advance(p);
        if ((rc = sub(p, &n)))
            return rc;
        if ((rc = want_num(p, n, names[k])))
            return rc;
        n->link = k;
        last->next = n;
        last = n;
    }
    if ((rc = new_node(p, N_ARITH, ST_NUM, first->pos, &n)))
        return rc;
    n->u.kid = first;
    *out = n;
    return 0;
}

static int parse_mul(struct parser *p, struct node **out)
{
    return parse_arith(p, TK_STAR, TK_SLASH, parse_unary, out);
}

static int parse_add(struct parser *p, struct node **out)
{
    return parse_arith(p, TK_PLUS, TK_MINUS, parse_mul, out);
}

/* The pattern becomes an automaton now, once, whatever it costs to match
 * later; building it counts toward the selector's complexity. */
static int pattern_compile(struct parser *p, const struct tok *pat, const struct tok *esc,
                           const struct like **out)
{
    struct like_ref *ref = arena_alloc(p->arena, sizeof *ref);
    if (!ref)
        return oom(p);
    struct like *l;
    int rc = like_compile(pat->s, pat->slen, esc ? esc->s : NULL, esc ? esc->slen : 0, p->max_work,
                          &p->work, &l);
    if (rc == -ERANGE)
        return fail_limit(p, SELECTOR_TOO_COMPLEX, pat->pos,
                          "too complex (compiled size over %llu; this LIKE pattern's automaton would pass it)",
                          (unsigned long long)p->max_work);
    if (rc)
        return oom(p);
    ref->l = l;
    ref->next = p->sel->likes;
    p->sel->likes = ref;
    *out = l;
    return 0;
}

static int parse_like(struct parser *p, struct node *x, bool negate, size_t pos,
                      struct node **out)
{
    int rc = want_str(p, x, "operand of LIKE");
    if (rc)
        return rc;
    const struct tok *pat = advance(p), *esc = NULL;
    if (pat->kind != TK_STR)
        return fail(p, pat->pos, "LIKE pattern must be a string literal");
    if (peek(p)->kind == TK_ESCAPE) {
        advance(p);
        esc = advance(p);
        if (esc->kind != TK_STR)
            return fail(p, esc->pos, "ESCAPE must be followed by a string literal");
        if (esc->slen == 0 ||
            unitlen((const unsigned char *)esc->s, esc->slen) != esc->slen)
            return fail(p, esc->pos, "ESCAPE must be a single character");
    }
    struct node *n;
    if ((rc = new_node(p, N_LIKE, ST_BOOL, pos, &n)))
        return rc;
    n->negate = negate;
    n->u.like.x = x;
    if ((rc = pattern_compile(p, pat, esc, &n->u.like.pat)))
        return rc;
    *out = n;
    return 0;
}

static int parse_in(struct parser *p, struct node *x, bool negate, size_t pos, struct node **out)
{
    int rc = want_str(p, x, "operand of IN");
    if (rc)
        return rc;
    const struct tok *t = advance(p);
    if (t->kind != TK_LP)
        return fail(p, t->pos, "expected '(' after IN");
    if (peek(p)->kind == TK_RP)
        return fail(p, peek(p)->pos, "IN list must not be empty");
    struct strlit *head = NULL, **tail = &head;
    for (;;) {
        t = advance(p);
        if (t->kind != TK_STR) {
            char d[160];
            describe(p, t, d, sizeof d);
            return fail(p, t->pos, "IN list takes only string literals; found %s", d);
        }
        if ((rc = spend(p, 1, t->pos)))
            return rc;
        struct strlit *item = arena_alloc(p->arena, sizeof *item);
        if (!item)
            return oom(p);
        item->p = t->s;
        item->n = t->slen;
        *tail = item;
        tail = &item->next;
        t = advance(p);
        if (t->kind == TK_RP)
            break;
        if (t->kind != TK_COMMA)
            return fail(p, t->pos, "expected ',' or ')' in IN list");
    }
    struct node *n;
    if ((rc = new_node(p, N_IN, ST_BOOL, pos, &n)))
        return rc;
    n->negate = negate;
    n->u.in.x = x;
    n->u.in.items = head;
    *out = n;
    return 0;
}

static int parse_between(struct parser *p, struct node *x, bool negate, size_t pos,
                         struct node **out)
{
    struct node *lo, *hi, *n;
    int rc = want_num(p, x, "operand of BETWEEN");
    if (rc)
        return rc;
    if ((rc = parse_add(p, &lo)) || (rc = want_num(p, lo, "lower bound of BETWEEN")))
        return rc;
    if (peek(p)->kind != TK_AND)
        return fail(p, peek(p)->pos, "expected AND in BETWEEN");
    advance(p);
    if ((rc = parse_add(p, &hi)) || (rc = want_num(p, hi, "upper bound of BETWEEN")))
        return rc;
    if ((rc = new_node(p, N_BETWEEN, ST_BOOL, pos, &n)))
        return rc;
    n->negate = negate;
    n->u.between.x = x;
    n->u.between.lo = lo;
    n->u.between.hi = hi;
    *out = n;
    return 0;
}

static int parse_cmp(struct parser *p, struct node **out)
{
    struct node *x, *r, *n;
    int rc = parse_add(p, &x);
    if (rc)
        return rc;
    const struct tok *t = peek(p);
    bool negate = false;
    switch (t->kind) {
    case TK_EQ:
    case TK_NE:
    case TK_LT:
    case TK_LE:
    case TK_GT:
    case TK_GE:
        advance(p);
        if ((rc = parse_add(p, &r)))
            return rc;
        if ((rc = new_node(p, N_CMP, ST_BOOL, x->pos, &n)))
            return rc;
        n->op = t->kind;
        n->u.bin.l = x;
        n->u.bin.r = r;
        *out = n;
        return 0;
    case TK_IS:
        advance(p);
        if (peek(p)->kind == TK_NOT) {
            advance(p);
            negate = true;
        }
        if (peek(p)->kind != TK_NULL)
            return fail(p, peek(p)->pos, "expected NULL after IS");
        advance(p);
        if ((rc = new_node(p, N_ISNULL, ST_BOOL, x->pos, &n)))
            return rc;
        n->negate = negate;
        n->u.kid = x;
        *out = n;
        return 0;
    case TK_NOT:
        advance(p);
        negate = true;
        t = peek(p);
        if (t->kind != TK_BETWEEN && t->kind != TK_LIKE && t->kind != TK_IN)
            return fail(p, t->pos, "expected BETWEEN, LIKE or IN after NOT");
        break;
    case TK_BETWEEN:
    case TK_LIKE:
    case TK_IN:
        break;
    default:
        *out = x;
        return 0;
    }
    advance(p);
    if (t->kind == TK_BETWEEN)
        return parse_between(p, x, negate, x->pos, out);
    if (t->kind == TK_LIKE)
        return parse_like(p, x, negate, x->pos, out);
    return parse_in(p, x, negate, x->pos, out);
}

static int parse_not(struct parser *p, struct node **out)
{
    const struct tok *t = peek(p);
    if (t->kind != TK_NOT)
        return parse_cmp(p, out);
    advance(p);
    struct node *kid, *n;
    int rc;
    if ((rc = enter(p)) || (rc = parse_not(p, &kid)) || (rc = want_bool(p, kid, "operand of NOT")))
        return rc;
    if ((rc = new_node(p, N_NOT, ST_BOOL, t->pos, &n)))
        return rc;
    n->u.kid = kid;
    p->depth--;
    *out = n;
    return 0;
}

static int parse_logic(struct parser *p, enum tk op, enum nkind kind,
                       int (*sub)(struct parser *, struct node **), struct node **out)
{
    const char *what = op == TK_AND ? "operand of AND" : "operand of OR";
    struct node *first, *last, *n;
    int rc = sub(p, &first);
    if (rc)
        return rc;
    if (peek(p)->kind != op) {
        *out = first;
        return 0;
    }
    if ((rc = want_bool(p, first, what)))
        return rc;
    last = first;
    while (peek(p)->kind == op) {
        advance(p);
        if ((rc = sub(p, &n)) || (rc = want_bool(p, n, what)))
            return rc;
        last->next = n;
        last = n;
    }
    if ((rc = new_node(p, kind, ST_BOOL, first->pos, &n)))
        return rc;
    n->u.kid = first;
    *out = n;
    return 0;
}

static int parse_and(struct parser *p, struct node **out)
{
    return parse_logic(p, TK_AND, N_AND, parse_not, out);
}

static int parse_expr(struct parser *p, struct node **out)
{
    int rc;
    if ((rc = enter(p)) || (rc = parse_logic(p, TK_OR, N_OR, parse_and, out)))
        return rc;
    p->depth--;
    return 0;
}

int selector_compile_limited(const char *text, const struct selector_limits *lim, struct selector **out,
                             char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    size_t max_len = lim && lim->max_length && lim->max_length < SEL_MAX_LEN ? lim->max_length : SEL_MAX_LEN;
    struct selector *sel = calloc(1, sizeof *sel);
    struct parser p = {.text = text ? text : "", .err = err, .errlen = errlen, .sel = sel,
                       .max_work = lim ? lim->max_complexity : 0};
    if (!sel)
        return oom(&p);
    p.arena = &sel->arena;
    p.len = strnlen(p.text, max_len + 1);
    struct node *root = NULL;
    int rc;
    if (p.len > max_len) {
        rc = fail_limit(&p, SELECTOR_TOO_LONG, max_len, "selector longer than %zu bytes", max_len);
        goto out;
    }
    char *copy = arena_alloc(p.arena, p.len + 1);
    if (!copy) {
        rc = oom(&p);
        goto out;
    }
    memcpy(copy, p.text, p.len + 1);
    p.text = sel->text = copy;
    if ((rc = lex(&p)))
        goto out;
    if (p.toks[0].kind == TK_EOF) {
        rc = fail(&p, p.len, "empty selector");
        goto out;
    }
    /* Every identifier is a token: room for all of them, half full at most. */
    p.ntabcap = 16;
    while (p.ntabcap < 2 * p.ntoks)
        p.ntabcap *= 2;
    p.ntab = calloc(p.ntabcap, sizeof *p.ntab);
    p.names = malloc(p.ntoks * sizeof *p.names);
    if (!p.ntab || !p.names) {
        rc = oom(&p);
        goto out;
    }
    if ((rc = parse_expr(&p, &root)))
        goto out;
    if (peek(&p)->kind != TK_EOF) {
        rc = unexpected(&p, peek(&p));
        goto out;
    }
    if (root->type == ST_NUM || root->type == ST_STR) {
        rc = fail(&p, root->pos, "selector must be a boolean expression; found %s",
                  type_name(root->type));
        goto out;
    }
    sel->root = root;
    sel->complexity = p.work;
out:
    free(p.toks);
    free(p.ntab);
    free(p.names);
    if (rc) {
        selector_free(sel);
        return rc;
    }
    *out = sel;
    return 0;
}

int selector_compile(const char *text, struct selector **out, char *err, size_t errlen)
{
    return selector_compile_limited(text, NULL, out, err, errlen);
}

uint64_t selector_complexity(const struct selector *s)
{
    return s ? s->complexity : 0;
}

/* ------------------------------------------------------------- evaluation */

/* A header's value, looked up at most once per evaluation. */
struct cached {
    const char *p;
    size_t n;
    bool done;
};

struct env {
    selector_lookup_fn lookup;
    void *ctx;
    int64_t *left;     /* the budget; negative once spent */
    bool over;         /* spent: the evaluation unwinds, its result void */
    struct cached *cache;
};

/* Charge n steps; false (and the evaluation is over) once past the budget. */
static bool charge(struct env *e, size_t n)
{
    if (e->over)
        return false;
    *e->left -= (int64_t)n;
    if (*e->left < 0) {
        e->over = true;
        return false;
    }
    return true;
}

/* Comparing, converting or searching a string reads it: its bytes count. */
static bool reading(struct env *e, struct val v)
{
    return (v.t != V_RAW && v.t != V_STR) || charge(e, v.u.s.n);
}

static struct val tri_val(enum tri t)
{
    struct val v = {.t = V_NULL};
    if (t != TRI_UNKNOWN) {
        v.t = V_BOOL;
        v.u.b = t == TRI_TRUE;
    }
    return v;
}

static bool raw_bool(struct val v, bool *b)
{
    if (v.u.s.n == 4 && !strncasecmp(v.u.s.p, "true", 4))
        *b = true;
    else if (v.u.s.n == 5 && !strncasecmp(v.u.s.p, "false", 5))
        *b = false;
    else
        return false;
    return true;
}

static enum tri to_tri(struct val v)
{
    bool b;
    if (v.t == V_BOOL)
        return v.u.b ? TRI_TRUE : TRI_FALSE;
    if (v.t == V_RAW && raw_bool(v, &b))
        return b ? TRI_TRUE : TRI_FALSE;
    return TRI_UNKNOWN;
}

/* A header reads as a number only when all of it is one in the selector
 * literal syntax; strtod alone would also take " 5", "inf" or "0x10". */
static bool raw_number(struct val v, struct val *out)
{
    const char *s = v.u.s.p;
    size_t n = v.u.s.n, i = 0, digits = 0;
    bool approx = false;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    while (i < n && is_digit((unsigned char)s[i]))
        i++, digits++;
    if (i < n && s[i] == '.') {
        approx = true;
        i++;
        while (i < n && is_digit((unsigned char)s[i]))
            i++, digits++;
    }
    if (digits == 0)
        return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        approx = true;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t ed = 0;
        while (i < n && is_digit((unsigned char)s[i]))
            i++, ed++;
        if (ed == 0)
            return false;
    }
    if (i != n)
        return false;
    /* Header values are NUL-terminated, so the parsers stop at n. Matching
     * should not disturb the caller's errno. */
    int saved = errno;
    if (!approx) {
        errno = 0;
        long long x = strtoll(s, NULL, 10);
        bool range = errno == ERANGE;
        errno = saved;
        if (!range) {
            out->t = V_INT;
            out->u.i = x;
            return true;
        }
    }
    double d = strtod(s, NULL);
    errno = saved;
    if (!isfinite(d))
        return false;
    out->t = V_DBL;
    out->u.d = d;
    return true;
}

static bool to_num(struct val v, struct val *out)
{
    if (v.t == V_INT || v.t == V_DBL) {
        *out = v;
        return true;
    }
    if (v.t == V_RAW)
        return raw_number(v, out);
    return false;
}

static double as_dbl(struct val v)
{
    return v.t == V_INT ? (double)v.u.i : v.u.d;
}

static bool arith(enum tk op, struct val a, struct val b, struct val *out)
{
    if (a.t == V_INT && b.t == V_INT) {
        long long r;
        bool overflow;
        switch (op) {
        case TK_PLUS: overflow = __builtin_add_overflow(a.u.i, b.u.i, &r); break;
        case TK_MINUS: overflow = __builtin_sub_overflow(a.u.i, b.u.i, &r); break;
        case TK_STAR: overflow = __builtin_mul_overflow(a.u.i, b.u.i, &r); break;
        default:
            if (b.u.i == 0)
                return false;
            overflow = a.u.i == LLONG_MIN && b.u.i == -1;
            r = overflow ? 0 : a.u.i / b.u.i;
            break;
        }
        /* Rather than wrap as Java does, an overflowing result carries on
         * as a double, which is at least close to the true value. */
        if (!overflow) {
            out->t = V_INT;
            out->u.i = r;
            return true;
        }
    }
    double x = as_dbl(a), y = as_dbl(b), r;
    switch (op) {
    case TK_PLUS: r = x + y; break;
    case TK_MINUS: r = x - y; break;
    case TK_STAR: r = x * y; break;
    default:
        if (y == 0)
            return false;
        r = x / y;
        break;
    }
    /* Infinities and NaN would make comparisons lie; call them unknown. */
    if (!isfinite(r))
        return false;
    out->t = V_DBL;
    out->u.d = r;
    return true;
}

static enum tri order(enum tk op, int c)
{
    bool r;
    switch (op) {
    case TK_EQ: r = c == 0; break;
    case TK_NE: r = c != 0; break;
    case TK_LT: r = c < 0; break;
    case TK_LE: r = c <= 0; break;
    case TK_GT: r = c > 0; break;
    default: r = c >= 0; break;
    }
    return r ? TRI_TRUE : TRI_FALSE;
}

static bool is_str(struct val v)
{
    return v.t == V_STR || v.t == V_RAW;
}

static bool is_num(struct val v)
{
    return v.t == V_INT || v.t == V_DBL;
}

static enum tri compare(enum tk op, struct val a, struct val b)
{
    if (a.t == V_NULL || b.t == V_NULL)
        return TRI_UNKNOWN;
    bool equality = op == TK_EQ || op == TK_NE;
    if (is_str(a) && is_str(b)) {
        /* JMS defines only = and <> on strings. Two headers under an
         * ordering operator can only mean numbers, since every STOMP
         * header is a string; a literal string is a string for sure. */
        if (!equality) {
            if (a.t != V_RAW || b.t != V_RAW || !to_num(a, &a) || !to_num(b, &b))
                return TRI_UNKNOWN;
            return compare(op, a, b);
        }
        bool eq = a.u.s.n == b.u.s.n && !memcmp(a.u.s.p, b.u.s.p, a.u.s.n);
        return order(op, eq ? 0 : 1);
    }
    if ((is_num(a) && b.t == V_RAW) || (a.t == V_RAW && is_num(b))) {
        if (!to_num(a, &a) || !to_num(b, &b))
            return TRI_UNKNOWN;
    }
    if (is_num(a) && is_num(b)) {
        if (a.t == V_INT && b.t == V_INT)
            return order(op, (a.u.i > b.u.i) - (a.u.i < b.u.i));
        double x = as_dbl(a), y = as_dbl(b);
        return order(op, (x > y) - (x < y));
    }
    bool ab, bb;
    if (a.t == V_BOOL || b.t == V_BOOL) {
        if (!equality)
            return TRI_UNKNOWN;
        if (a.t == V_BOOL)
            ab = a.u.b;
        else if (a.t != V_RAW || !raw_bool(a, &ab))
            return TRI_UNKNOWN;
        if (b.t == V_BOOL)
            bb = b.u.b;
        else if (b.t != V_RAW || !raw_bool(b, &bb))
            return TRI_UNKNOWN;
        return order(op, ab == bb ? 0 : 1);
    }
    /* A string literal against a number: JMS leaves no common type. */
    return TRI_UNKNOWN;
}

static enum tri negate_if(bool neg, enum tri t)
{
    if (!neg || t == TRI_UNKNOWN)
        return t;
    return t == TRI_TRUE ? TRI_FALSE : TRI_TRUE;
}

static enum tri and3(enum tri a, enum tri b)
{
    if (a == TRI_FALSE || b == TRI_FALSE)
        return TRI_FALSE;
    if (a == TRI_UNKNOWN || b == TRI_UNKNOWN)
        return TRI_UNKNOWN;
    return TRI_TRUE;
}

/* Recursion here follows the tree, whose height the parser's depth limit
 * bounds, so it is as safe as the parse was. */
static struct val lookup_ident(const struct node *n, struct env *e)
{
    struct val v = {.t = V_NULL};
    struct cached once = {0};
    struct cached *c = e->cache ? &e->cache[n->slot] : &once;
    if (!c->done) {
        const char *s = e->lookup ? e->lookup(e->ctx, n->u.name) : NULL;
        /* the lookup may charge for its own search; strlen reads the value */
        size_t len = s ? strlen(s) : 0;
        if (!charge(e, len))
            return v;
        c->p = s;
        c->n = len;
        c->done = true;
    }
    if (c->p) {
        v.t = V_RAW;
        v.u.s.p = c->p;
        v.u.s.n = c->n;
    }
    return v;
}

static struct val eval(const struct node *n, struct env *e)
{
    struct val v = {.t = V_NULL}, w;
    enum tri t;
    /* one step per node; a spent budget unwinds the whole evaluation */
    if (!charge(e, 1))
        return v;
    switch (n->kind) {
    case N_LIT:
        return n->u.lit;
    case N_IDENT:
        return lookup_ident(n, e);
    case N_POS:
        if (!reading(e, w = eval(n->u.kid, e)) || !to_num(w, &w))
            return v;
        return w;
    case N_NEG:
        if (!reading(e, w = eval(n->u.kid, e)) || !to_num(w, &w))
            return v;
        if (w.t == V_INT && w.u.i != LLONG_MIN) {
            w.u.i = -w.u.i;
        } else if (w.t == V_INT) {
            w.t = V_DBL;
            w.u.d = -(double)LLONG_MIN;
        } else {
            w.u.d = -w.u.d;
        }
        return w;
    case N_ARITH: {
        struct val acc;
        const struct node *k = n->u.kid;
        if (!reading(e, acc = eval(k, e)) || !to_num(acc, &acc))
            return v;
        for (k = k->next; k; k = k->next) {
            if (!reading(e, w = eval(k, e)) || !to_num(w, &w) || !arith(k->link, acc, w, &acc))
                return v;
        }
        return acc;
    }
    case N_CMP: {
        struct val l = eval(n->u.bin.l, e), r = eval(n->u.bin.r, e);
        if (!reading(e, l) || !reading(e, r))
            return v;
        return tri_val(compare(n->op, l, r));
    }
    case N_AND:
    case N_OR: {
        /* FALSE decides an AND and TRUE an OR, whatever else is unknown. */
        enum tri decisive = n->kind == N_AND ? TRI_FALSE : TRI_TRUE;
        enum tri res = n->kind == N_AND ? TRI_TRUE : TRI_FALSE;
        for (const struct node *k = n->u.kid; k; k = k->next) {
            t = to_tri(eval(k, e));
            if (t == decisive)
                return tri_val(t);
            if (t == TRI_UNKNOWN)
                res = TRI_UNKNOWN;
        }
        return tri_val(res);
    }
    case N_NOT:
        return tri_val(negate_if(true, to_tri(eval(n->u.kid, e))));
    case N_BETWEEN: {
        /* BETWEEN is arithmetic only, so headers in it are read as numbers
         * even when no operand is a number literal. */
        struct val x = eval(n->u.between.x, e), lo = eval(n->u.between.lo, e),
                   hi = eval(n->u.between.hi, e);
        if (!reading(e, x) || !reading(e, lo) || !reading(e, hi))
            return v;
        if (!to_num(x, &x))
            x.t = V_NULL;
        if (!to_num(lo, &lo))
            lo.t = V_NULL;
        if (!to_num(hi, &hi))
            hi.t = V_NULL;
        t = and3(compare(TK_LE, lo, x), compare(TK_LE, x, hi));
        return tri_val(negate_if(n->negate, t));
    }
    case N_LIKE: {
        struct val x = eval(n->u.like.x, e);
        if (e->over || !is_str(x))
            return v;
        int r = like_run(n->u.like.pat, x.u.s.p, x.u.s.n, e->left);
        if (r < 0) {
            e->over = true;
            return v;
        }
        return tri_val(negate_if(n->negate, r ? TRI_TRUE : TRI_FALSE));
    }
    case N_IN: {
        struct val x = eval(n->u.in.x, e);
        if (e->over || !is_str(x))
            return v;
        t = TRI_FALSE;
        for (const struct strlit *it = n->u.in.items; it; it = it->next) {
            if (!charge(e, 1 + (it->n == x.u.s.n ? it->n : 0)))
                return v;
            if (it->n == x.u.s.n && !memcmp(it->p, x.u.s.p, it->n)) {
                t = TRI_TRUE;
                break;
            }
        }
        return tri_val(negate_if(n->negate, t));
    }
    case N_ISNULL:
        t = eval(n->u.kid, e).t == V_NULL ? TRI_TRUE : TRI_FALSE;
        return tri_val(negate_if(n->negate, t));
    }
    return v;
}

int selector_eval(const struct selector *s, selector_lookup_fn lookup, void *ctx, int64_t *budget)
{
    if (!s || !s->root)
        return 0;
    struct cached small[16];
    struct cached *cache = small;
    if (s->nidents > sizeof small / sizeof small[0])
        cache = calloc(s->nidents, sizeof *cache); /* NULL: no cache, still correct */
    else
        memset(small, 0, sizeof small);
    struct env e = {.lookup = lookup, .ctx = ctx, .left = budget, .cache = cache};
    enum tri t = to_tri(eval(s->root, &e));
    if (cache != small)
        free(cache);
    if (e.over) {
        if (*budget > 0)
            *budget = 0;
        return -1;
    }
    return t == TRI_TRUE ? 1 : 0;
}

bool selector_match(const struct selector *s, selector_lookup_fn lookup, void *ctx)
{
    int64_t unlimited = INT64_MAX;
    return selector_eval(s, lookup, ctx, &unlimited) == 1;
}

const char *selector_text(const struct selector *s)
{
    return s ? s->text : NULL;
}

void selector_free(struct selector *s)
{
    if (!s)
        return;
    for (struct like_ref *r = s->likes; r; r = r->next)
        like_free(r->l);
    arena_free(s->arena);
    free(s);
}
