/* libFuzzer harness: selectors and LIKE automata.
 *
 * Input byte 0 chooses what to fuzz:
 *   even: a selector, then its headers. The text up to the first NUL is
 *         the selector; after it, "name=value" lines are the message's
 *         headers. Compiled with and without limits (what the limits
 *         accept must compile without them, to the same size), then
 *         evaluated: unbudgeted, with exactly the budget it needs (same
 *         answer, budget spent to 0) and with one step less (-1).
 *   odd:  a LIKE pattern, an escape and a value, separated by NULs; the
 *         automaton, the bit-parallel matcher and the matcher the automata
 *         replaced (t/unit/like_reference.h) must agree whenever the
 *         pattern or the value is valid UTF-8, and the automaton must not
 *         read more value bytes than there are. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompd/like.h"
#include "stompd/selector.h"
#include "../t/unit/like_reference.h"

struct hdrs {
    int n;
    const char *name[32];
    const char *value[32];
};

static const char *lookup(void *ctx, const char *name)
{
    const struct hdrs *h = ctx;
    for (int i = 0; i < h->n; i++)
        if (!strcmp(h->name[i], name))
            return h->value[i];
    return NULL;
}

static void parse_headers(char *s, struct hdrs *h)
{
    h->n = 0;
    while (*s && h->n < 32) {
        char *nl = strchr(s, '\n');
        if (nl)
            *nl = '\0';
        char *eq = strchr(s, '=');
        if (eq) {
            *eq = '\0';
            h->name[h->n] = s;
            h->value[h->n++] = eq + 1;
        }
        if (!nl)
            break;
        s = nl + 1;
    }
}

static void fuzz_selector(const char *data, size_t size)
{
    char *copy = malloc(size + 1);
    if (!copy)
        abort();
    memcpy(copy, data, size);
    copy[size] = '\0';
    size_t tl = strlen(copy);
    struct hdrs h;
    parse_headers(tl < size ? copy + tl + 1 : copy + size, &h);

    char err[256], lerr[256];
    struct selector *s = NULL, *lim_s = NULL;
    const struct selector_limits lim = {.max_length = 512, .max_complexity = 20000};
    int rc = selector_compile(copy, &s, err, sizeof err);
    int lrc = selector_compile_limited(copy, &lim, &lim_s, lerr, sizeof lerr);
    if ((rc == 0) != (s != NULL) || (lrc == 0) != (lim_s != NULL))
        abort();
    /* limits only refuse more, and what they accept is the same selector */
    if (lrc == 0 && (rc != 0 || selector_complexity(lim_s) != selector_complexity(s)))
        abort();
    if (rc != 0 && rc != -EINVAL)
        abort();
    if (lrc != 0 && lrc != -EINVAL && lrc != SELECTOR_TOO_LONG && lrc != SELECTOR_TOO_COMPLEX)
        abort();
    /* every refusal explains itself */
    if ((rc != 0 && (strncmp(err, "selector: ", 10) || !strstr(err, " at column "))) ||
        (lrc != 0 && (strncmp(lerr, "selector: ", 10) || !strstr(lerr, " at column "))))
        abort();
    if (s) {
        if (strcmp(selector_text(s), copy))
            abort();
        bool m = selector_match(s, lookup, &h);
        int64_t budget = INT64_MAX / 2;
        int r = selector_eval(s, lookup, &h, &budget);
        if (r != (m ? 1 : 0))
            abort();
        int64_t cost = INT64_MAX / 2 - budget;
        int64_t exact = cost;
        if (selector_eval(s, lookup, &h, &exact) != r || exact != 0)
            abort();
        int64_t less = cost - 1;
        if (cost > 0 && (selector_eval(s, lookup, &h, &less) != -1 || less > 0))
            abort();
    }
    selector_free(s);
    selector_free(lim_s);
    free(copy);
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t len = s[i] < 0x80 ? 1 : s[i] >= 0xC2 && s[i] <= 0xDF ? 2 : s[i] >= 0xE0 && s[i] <= 0xEF ? 3
                   : s[i] >= 0xF0 && s[i] <= 0xF4 ? 4 : 0;
        if (!len || i + len > n)
            return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        i += len;
    }
    return true;
}

static void fuzz_like(const char *data, size_t size)
{
    const char *pat = data, *end = data + size;
    const char *z1 = memchr(pat, '\0', size);
    if (!z1)
        return;
    const char *esc = z1 + 1;
    const char *z2 = memchr(esc, '\0', (size_t)(end - esc));
    if (!z2)
        return;
    const char *val = z2 + 1;
    size_t pn = (size_t)(z1 - pat), en = (size_t)(z2 - esc), vn = (size_t)(end - val);
    if (en > 4)
        en = 4;
    struct like *dfa = NULL, *bp = NULL;
    uint64_t work = 0;
    if (like_compile(pat, pn, en ? esc : NULL, en, 200000, &work, &dfa) != 0)
        dfa = NULL;
    if (work > 200000)
        abort();
    work = 0;
    if (like_compile(pat, pn, en ? esc : NULL, en, LIKE_BIT_PARALLEL, &work, &bp) != 0)
        abort();
    bool want = like_reference(pat, pn, en ? esc : NULL, en, val, vn);
    int64_t left = (int64_t)vn;
    int got = like_run(bp, val, vn, &left);
    if (got < 0)
        got = like_match(bp, val, vn);
    if (dfa) {
        int64_t dl = (int64_t)vn;
        int d = like_run(dfa, val, vn, &dl);
        if (d < 0 || dl < 0 || d != got)
            abort(); /* an automaton never reads past the value */
    }
    if (got != want && (valid_utf8((const unsigned char *)pat, pn) || valid_utf8((const unsigned char *)val, vn))) {
        fprintf(stderr, "LIKE differs from the reference: got %d\n", got);
        abort();
    }
    like_free(dfa);
    like_free(bp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return 0;
    if (data[0] % 2 == 0)
        fuzz_selector((const char *)data + 1, size - 1);
    else
        fuzz_like((const char *)data + 1, size - 1);
    return 0;
}
