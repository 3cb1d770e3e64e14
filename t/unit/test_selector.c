/* Unit tests for JMS selectors: a table of selector, headers and expected
 * outcome covering the grammar, coercions and three-valued logic, plus
 * limits and hostile input that a table row cannot express. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stompd/selector.h"

enum expect { MATCH, NO_MATCH, COMPILE_ERROR };

struct row {
    const char *sel;
    const char *hdrs;   /* "k=v;k2=v2"; a key with no '=' is absent, "k=" is empty */
    enum expect want;
    int line;
};

#define ROW(s, h, w) {s, h, w, __LINE__}

/* Common headers; u holds a value that is neither number nor boolean. */
#define H "s=hello;n=5;d=2.5;t=true;f=false;e=;u=maybe;z=0;neg=-3"

#define T_ "(1 = 1)"
#define F_ "(1 = 2)"
#define U_ "(missing = 1)"

static const struct row rows[] = {
    /* literals */
    ROW("TRUE", "", MATCH),
    ROW("FALSE", "", NO_MATCH),
    ROW("true", "", MATCH),
    ROW("TrUe", "", MATCH),
    ROW("fAlSe", "", NO_MATCH),
    ROW("(TRUE)", "", MATCH),
    ROW("1 = 1", "", MATCH),
    ROW("1 = 2", "", NO_MATCH),
    ROW("'a' = 'a'", "", MATCH),
    ROW("'a' = 'b'", "", NO_MATCH),
    ROW("'' = ''", "", MATCH),
    ROW("'it''s' = 'it''s'", "", MATCH),
    ROW("s = 'it''s'", "s=it's", MATCH),
    ROW("s = 'it'", "s=it's", NO_MATCH),
    ROW("s = ''''", "s='", MATCH),
    ROW("s = ''''''", "s=''", MATCH),
    ROW("1.5 = 1.5", "", MATCH),
    ROW("1e3 = 1000", "", MATCH),
    ROW("1E2 = 100", "", MATCH),
    ROW("2.5e+1 = 25", "", MATCH),
    ROW("1.5e-3 = 0.0015", "", MATCH),
    ROW(".5 = 0.5", "", MATCH),
    ROW("7. = 7", "", MATCH),
    ROW("9223372036854775807 > 0", "", MATCH),
    ROW("-9223372036854775808 < 0", "", MATCH),
    ROW("-9223372036854775808 = -9223372036854775807 - 1", "", MATCH),
    ROW("9223372036854775808 > 0", "", COMPILE_ERROR),
    ROW("99999999999999999999 > 0", "", COMPILE_ERROR),
    ROW("1e999 > 0", "", COMPILE_ERROR),
    ROW("010 = 8", "", COMPILE_ERROR),
    ROW("0x1F = 31", "", COMPILE_ERROR),
    ROW("0 = 0", "", MATCH),
    ROW("0.5 > 0", "", MATCH),

    /* comparison operators, numbers */
    ROW("n = 5", H, MATCH),
    ROW("n = 6", H, NO_MATCH),
    ROW("n <> 6", H, MATCH),
    ROW("n <> 5", H, NO_MATCH),
    ROW("n < 6", H, MATCH),
    ROW("n < 5", H, NO_MATCH),
    ROW("n <= 5", H, MATCH),
    ROW("n <= 4", H, NO_MATCH),
    ROW("n > 4", H, MATCH),
    ROW("n > 5", H, NO_MATCH),
    ROW("n >= 5", H, MATCH),
    ROW("n >= 6", H, NO_MATCH),
    ROW("2 > 1", "", MATCH),
    ROW("1 >= 2", "", NO_MATCH),
    ROW("5 = n", H, MATCH),
    ROW("4 < n", H, MATCH),
    ROW("neg < 0", H, MATCH),
    ROW("z = 0", H, MATCH),
    ROW("z = -0", H, MATCH),

    /* int against double */
    ROW("n = 5.0", H, MATCH),
    ROW("1 < 1.5", "", MATCH),
    ROW("2 > 1.5", "", MATCH),
    ROW("2 = 2.0", "", MATCH),
    ROW("d = 2.5", H, MATCH),
    ROW("d > 2", H, MATCH),
    ROW("d < 3", H, MATCH),
    ROW("d = 2", H, NO_MATCH),
    ROW("d BETWEEN 2 AND 3", H, MATCH),
    ROW("n = 5", "n=5.0", MATCH),
    ROW("n = 5", "n=5e0", MATCH),
    ROW("n = 5", "n=+5", MATCH),
    ROW("n = 1000", "n=1e3", MATCH),
    ROW("n = 0.5", "n=.5", MATCH),
    ROW("n = 9223372036854775807", "n=9223372036854775807", MATCH),
    ROW("n > 9223372036854775806", "n=9223372036854775807", MATCH),
    ROW("n > 9223372036854775807", "n=99999999999999999999", MATCH),

    /* coercion failures are UNKNOWN: neither the test nor its negation holds */
    ROW("n = 5", "n=abc", NO_MATCH),
    ROW("NOT (n = 5)", "n=abc", NO_MATCH),
    ROW("n = 5", "n= 5", NO_MATCH),
    ROW("NOT (n = 5)", "n= 5", NO_MATCH),
    ROW("n = 5", "n=5 ", NO_MATCH),
    ROW("NOT (n <> 5)", "n=5x", NO_MATCH),
    ROW("n > 1", "n=", NO_MATCH),
    ROW("NOT (n > 1)", "n=", NO_MATCH),
    ROW("n > 1", "n=inf", NO_MATCH),
    ROW("NOT (n > 1)", "n=nan", NO_MATCH),
    ROW("NOT (n > 1)", "n=1e999", NO_MATCH),
    ROW("n = 16", "n=0x10", NO_MATCH),
    ROW("NOT (n = 16)", "n=0x10", NO_MATCH),
    ROW("n > 0", "n=-", NO_MATCH),
    ROW("n > 0", "n=1e", NO_MATCH),

    /* strings: only = and <> are defined */
    ROW("s = 'hello'", H, MATCH),
    ROW("s <> 'hello'", H, NO_MATCH),
    ROW("s <> 'world'", H, MATCH),
    ROW("s = 'Hello'", H, NO_MATCH),
    ROW("s < 'z'", H, NO_MATCH),
    ROW("NOT (s < 'z')", H, NO_MATCH),
    ROW("s >= 'a'", H, NO_MATCH),
    ROW("'a' < 'b'", "", NO_MATCH),
    ROW("NOT ('a' < 'b')", "", NO_MATCH),
    ROW("n = '5'", H, MATCH),
    ROW("n = '5.0'", H, NO_MATCH),
    ROW("'1' = 1", "", NO_MATCH),
    ROW("NOT ('1' = 1)", "", NO_MATCH),
    ROW("a = b", "a=x;b=x", MATCH),
    ROW("a = b", "a=x;b=y", NO_MATCH),
    ROW("a <> b", "a=x;b=y", MATCH),
    ROW("a < b", "a=1;b=2", MATCH),
    ROW("a >= b", "a=10;b=9", MATCH),
    ROW("a > b", "a=2.5;b=2", MATCH),
    ROW("a < b", "a=x;b=y", NO_MATCH),
    ROW("NOT (a < b)", "a=x;b=y", NO_MATCH),
    ROW("NOT (a < b)", "a=1;b=y", NO_MATCH),
    ROW("a = b", "a=1;b=1.0", NO_MATCH),
    ROW("a + 0 = b", "a=1;b=1.0", MATCH),
    ROW("e = ''", H, MATCH),
    ROW("e <> ''", H, NO_MATCH),

    /* booleans */
    ROW("t = TRUE", H, MATCH),
    ROW("t = true", "t=TRUE", MATCH),
    ROW("t = TRUE", "t=True", MATCH),
    ROW("t = FALSE", H, NO_MATCH),
    ROW("NOT (t = FALSE)", H, MATCH),
    ROW("f = FALSE", H, MATCH),
    ROW("t <> FALSE", H, MATCH),
    ROW("u = TRUE", H, NO_MATCH),
    ROW("NOT (u = TRUE)", H, NO_MATCH),
    ROW("t = TRUE", "t=1", NO_MATCH),
    ROW("TRUE = TRUE", "", MATCH),
    ROW("TRUE <> FALSE", "", MATCH),
    ROW("TRUE > FALSE", "", NO_MATCH),
    ROW("NOT (TRUE > FALSE)", "", NO_MATCH),
    ROW("TRUE = 1", "", NO_MATCH),
    ROW("NOT (TRUE = 1)", "", NO_MATCH),
    ROW("(1 = 1) = TRUE", "", MATCH),
    ROW("(1 = 1) = (2 = 2)", "", MATCH),
    ROW("(1 = 1) <> (1 = 2)", "", MATCH),
    ROW("(n = 5) = t", H, MATCH),
    ROW(U_ " = TRUE", "", NO_MATCH),

    /* a bare identifier as a condition */
    ROW("t", H, MATCH),
    ROW("t", "t=TRUE", MATCH),
    ROW("f", H, NO_MATCH),
    ROW("NOT f", H, MATCH),
    ROW("NOT t", H, NO_MATCH),
    ROW("u", H, NO_MATCH),
    ROW("NOT u", H, NO_MATCH),
    ROW("missing", H, NO_MATCH),
    ROW("NOT missing", H, NO_MATCH),
    ROW("(t)", H, MATCH),
    ROW("t AND NOT f", H, MATCH),
    ROW("n", H, NO_MATCH),

    /* arithmetic */
    ROW("1 + 2 = 3", "", MATCH),
    ROW("5 - 7 = -2", "", MATCH),
    ROW("2 * 3 = 6", "", MATCH),
    ROW("7 / 2 = 3", "", MATCH),
    ROW("7 / 2 = 3.5", "", NO_MATCH),
    ROW("7.0 / 2 = 3.5", "", MATCH),
    ROW("7 / 2.0 = 3.5", "", MATCH),
    ROW("-7 / 2 = -3", "", MATCH),
    ROW("1 / 3 * 3 = 0", "", MATCH),
    ROW("7 / 0 = 0", "", NO_MATCH),
    ROW("NOT (7 / 0 = 0)", "", NO_MATCH),
    ROW("7.0 / 0 = 0", "", NO_MATCH),
    ROW("NOT (7 / 0.0 = 1)", "", NO_MATCH),
    ROW("(1 / 0) IS NULL", "", MATCH),
    ROW("n / z = 1", H, NO_MATCH),
    ROW("NOT (n / z = 1)", H, NO_MATCH),
    ROW("1 + 2 * 3 = 7", "", MATCH),
    ROW("(1 + 2) * 3 = 9", "", MATCH),
    ROW("10 - 2 - 3 = 5", "", MATCH),
    ROW("100 / 10 / 5 = 2", "", MATCH),
    ROW("2 * 3 + 4 * 5 = 26", "", MATCH),
    ROW("2 * 3 / 4 = 1", "", MATCH),
    ROW("-2 * -3 = 6", "", MATCH),
    ROW("- - 2 = 2", "", MATCH),
    ROW("+2 = 2", "", MATCH),
    ROW("1 - -1 = 2", "", MATCH),
    ROW("-(1 + 2) = -3", "", MATCH),
    ROW("1.5 + 1 = 2.5", "", MATCH),
    ROW("n * 2 = 10", H, MATCH),
    ROW("n + 1 = 6", H, MATCH),
    ROW("d * 2 = 5", H, MATCH),
    ROW("n / 2 = 2", H, MATCH),
    ROW("n / 2 = 2.5", "n=5.0", MATCH),
    ROW("-n = -5", H, MATCH),
    ROW("+n = 5", H, MATCH),
    ROW("-neg = 3", H, MATCH),
    ROW("-n = 5", "n=abc", NO_MATCH),
    ROW("NOT (-n = 5)", "n=abc", NO_MATCH),
    ROW("+n = 5", "n=abc", NO_MATCH),
    ROW("n + 1 > 0", "n=abc", NO_MATCH),
    ROW("NOT (n + 1 > 0)", "n=abc", NO_MATCH),
    ROW("9223372036854775807 + 1 = 9223372036854775808.0", "", MATCH),
    ROW("9223372036854775807 * 2 > 1e18", "", MATCH),
    ROW("-9223372036854775808 - 1 < 0", "", MATCH),
    ROW("-9223372036854775808 / -1 > 0", "", MATCH),
    ROW("- -9223372036854775808 > 0", "", MATCH),
    ROW("1e308 * 10 > 0", "", NO_MATCH),
    ROW("a-b = 1", "a=3;b=2", MATCH),

    /* AND truth table */
    ROW(T_ " AND " T_, "", MATCH),
    ROW(T_ " AND " F_, "", NO_MATCH),
    ROW(T_ " AND " U_, "", NO_MATCH),
    ROW(F_ " AND " T_, "", NO_MATCH),
    ROW(F_ " AND " F_, "", NO_MATCH),
    ROW(F_ " AND " U_, "", NO_MATCH),
    ROW(U_ " AND " T_, "", NO_MATCH),
    ROW(U_ " AND " F_, "", NO_MATCH),
    ROW(U_ " AND " U_, "", NO_MATCH),
    /* ... and telling FALSE from UNKNOWN through NOT */
    ROW("NOT (" T_ " AND " F_ ")", "", MATCH),
    ROW("NOT (" T_ " AND " U_ ")", "", NO_MATCH),
    ROW("NOT (" F_ " AND " U_ ")", "", MATCH),
    ROW("NOT (" U_ " AND " T_ ")", "", NO_MATCH),
    ROW("NOT (" U_ " AND " F_ ")", "", MATCH),
    ROW("NOT (" U_ " AND " U_ ")", "", NO_MATCH),

    /* OR truth table */
    ROW(T_ " OR " T_, "", MATCH),
    ROW(T_ " OR " F_, "", MATCH),
    ROW(T_ " OR " U_, "", MATCH),
    ROW(F_ " OR " T_, "", MATCH),
    ROW(F_ " OR " F_, "", NO_MATCH),
    ROW(F_ " OR " U_, "", NO_MATCH),
    ROW(U_ " OR " T_, "", MATCH),
    ROW(U_ " OR " F_, "", NO_MATCH),
    ROW(U_ " OR " U_, "", NO_MATCH),
    ROW("NOT (" F_ " OR " F_ ")", "", MATCH),
    ROW("NOT (" F_ " OR " U_ ")", "", NO_MATCH),
    ROW("NOT (" U_ " OR " F_ ")", "", NO_MATCH),
    ROW("NOT (" U_ " OR " U_ ")", "", NO_MATCH),

    /* NOT truth table */
    ROW("NOT " T_, "", NO_MATCH),
    ROW("NOT " F_, "", MATCH),
    ROW("NOT " U_, "", NO_MATCH),
    ROW("NOT NOT " T_, "", MATCH),
    ROW("NOT NOT " U_, "", NO_MATCH),

    /* the same truth tables through header-valued booleans */
    ROW("t AND f", H, NO_MATCH),
    ROW("t AND u", H, NO_MATCH),
    ROW("NOT (f AND u)", H, MATCH),
    ROW("t OR u", H, MATCH),
    ROW("f OR u", H, NO_MATCH),
    ROW("NOT (f OR u)", H, NO_MATCH),

    /* precedence */
    ROW("TRUE OR TRUE AND FALSE", "", MATCH),
    ROW("FALSE AND FALSE OR TRUE", "", MATCH),
    ROW("FALSE AND (FALSE OR TRUE)", "", NO_MATCH),
    ROW("NOT TRUE AND FALSE", "", NO_MATCH),
    ROW("NOT FALSE AND TRUE", "", MATCH),
    ROW("NOT TRUE OR TRUE", "", MATCH),
    ROW("NOT (TRUE OR TRUE)", "", NO_MATCH),
    ROW("NOT 1 = 2", "", MATCH),
    ROW("NOT n BETWEEN 1 AND 4", H, MATCH),
    ROW("NOT s LIKE 'x%'", H, MATCH),
    ROW("NOT missing IS NULL", H, NO_MATCH),
    ROW("1 + 1 = 2 AND 2 * 2 = 4", "", MATCH),
    ROW("n = 5 AND s = 'hello' OR FALSE", H, MATCH),
    ROW("n = 6 OR s = 'hello' AND t", H, MATCH),
    ROW("(n = 6 OR s = 'hello') AND f", H, NO_MATCH),

    /* BETWEEN */
    ROW("n BETWEEN 1 AND 10", H, MATCH),
    ROW("n BETWEEN 5 AND 5", H, MATCH),
    ROW("n BETWEEN 6 AND 10", H, NO_MATCH),
    ROW("n BETWEEN 10 AND 1", H, NO_MATCH),
    ROW("n NOT BETWEEN 6 AND 10", H, MATCH),
    ROW("n NOT BETWEEN 1 AND 10", H, NO_MATCH),
    ROW("n BETWEEN 4.5 AND 5.5", H, MATCH),
    ROW("n BETWEEN 1 + 1 AND 2 * 3", H, MATCH),
    ROW("n BETWEEN 1 AND 10 AND TRUE", H, MATCH),
    ROW("n BETWEEN 1 AND 10 AND FALSE", H, NO_MATCH),
    ROW("5 BETWEEN 1 AND 10", "", MATCH),
    ROW("-1 BETWEEN -2 AND 0", "", MATCH),
    ROW("missing BETWEEN 1 AND 2", H, NO_MATCH),
    ROW("missing NOT BETWEEN 1 AND 2", H, NO_MATCH),
    ROW("n BETWEEN 1 AND 2", "n=abc", NO_MATCH),
    ROW("n NOT BETWEEN 1 AND 2", "n=abc", NO_MATCH),
    ROW("n BETWEEN lo AND hi", "n=5;lo=1;hi=10", MATCH),
    ROW("n BETWEEN lo AND hi", "n=50;lo=1;hi=10", NO_MATCH),
    ROW("n NOT BETWEEN lo AND hi", "n=50;lo=1;hi=10", MATCH),
    ROW("n BETWEEN lo AND hi", "n=5;lo=x;hi=10", NO_MATCH),
    ROW("n NOT BETWEEN lo AND hi", "n=5;lo=x;hi=10", NO_MATCH),
    ROW("n NOT BETWEEN lo AND hi", "n=5;lo=x;hi=4", MATCH),
    ROW("n BETWEEN missing AND 10", H, NO_MATCH),
    ROW("n NOT BETWEEN missing AND 10", H, NO_MATCH),
    ROW("n NOT BETWEEN missing AND 4", H, MATCH),
    ROW("n between 1 and 10", H, MATCH),
    ROW("n BETWEEN 'a' AND 'z'", H, COMPILE_ERROR),
    ROW("'a' BETWEEN 1 AND 2", H, COMPILE_ERROR),
    ROW("n BETWEEN 1", H, COMPILE_ERROR),
    ROW("n BETWEEN 1 OR 2", H, COMPILE_ERROR),
    ROW("n BETWEEN AND 2", H, COMPILE_ERROR),

    /* LIKE */
    ROW("s LIKE 'hello'", H, MATCH),
    ROW("s LIKE 'h%'", H, MATCH),
    ROW("s LIKE '%o'", H, MATCH),
    ROW("s LIKE '%ell%'", H, MATCH),
    ROW("s LIKE 'h_llo'", H, MATCH),
    ROW("s LIKE 'h_lo'", H, NO_MATCH),
    ROW("s LIKE '_____'", H, MATCH),
    ROW("s LIKE '______'", H, NO_MATCH),
    ROW("s LIKE '____'", H, NO_MATCH),
    ROW("s LIKE '%'", H, MATCH),
    ROW("s LIKE '%%'", H, MATCH),
    ROW("s LIKE 'h%%o'", H, MATCH),
    ROW("s LIKE '%_%'", H, MATCH),
    ROW("s LIKE '%l%l%'", H, MATCH),
    ROW("s LIKE '%l%l%l%'", H, NO_MATCH),
    ROW("s LIKE 'H%'", H, NO_MATCH),
    ROW("s LIKE 'hell'", H, NO_MATCH),
    ROW("s LIKE ''", H, NO_MATCH),
    ROW("s NOT LIKE 'h%'", H, NO_MATCH),
    ROW("s NOT LIKE 'x%'", H, MATCH),
    ROW("e LIKE '%'", H, MATCH),
    ROW("e LIKE '%%'", H, MATCH),
    ROW("e LIKE ''", H, MATCH),
    ROW("e LIKE '_'", H, NO_MATCH),
    ROW("e LIKE '%_%'", H, NO_MATCH),
    ROW("missing LIKE '%'", H, NO_MATCH),
    ROW("missing NOT LIKE '%'", H, NO_MATCH),
    ROW("missing NOT LIKE 'x'", H, NO_MATCH),
    ROW("n LIKE '5'", H, MATCH),
    ROW("'abc' LIKE 'a%'", "", MATCH),
    ROW("pct LIKE '50\\%' ESCAPE '\\'", "pct=50%", MATCH),
    ROW("pct LIKE '50\\%' ESCAPE '\\'", "pct=500", NO_MATCH),
    ROW("pct LIKE '50%'", "pct=500", MATCH),
    ROW("pct LIKE '%\\%' ESCAPE '\\'", "pct=100%", MATCH),
    ROW("v LIKE 'a\\_b' ESCAPE '\\'", "v=a_b", MATCH),
    ROW("v LIKE 'a\\_b' ESCAPE '\\'", "v=axb", NO_MATCH),
    ROW("v LIKE 'a!_b' ESCAPE '!'", "v=a_b", MATCH),
    ROW("v LIKE 'a!%' ESCAPE '!'", "v=a%", MATCH),
    ROW("v LIKE 'a!%' ESCAPE '!'", "v=ab", NO_MATCH),
    ROW("v LIKE 'a\\\\b' ESCAPE '\\'", "v=a\\b", MATCH),
    ROW("v LIKE 'a\\\\b' ESCAPE '\\'", "v=a\\\\b", NO_MATCH),
    ROW("v LIKE '%\\\\' ESCAPE '\\'", "v=x\\", MATCH),
    ROW("v LIKE 'a\\\\%' ESCAPE '\\'", "v=a\\bc", MATCH),
    ROW("v LIKE 'x\\' ESCAPE '\\'", "v=x\\", MATCH),
    ROW("s LIKE '\\hello' ESCAPE '\\'", H, MATCH),
    ROW("v LIKE 'a''b'", "v=a'b", MATCH),
    ROW("v LIKE 'a''%' ESCAPE ''''", "v=a%", MATCH),
    ROW("v LIKE 'a''%' ESCAPE ''''", "v=ab", NO_MATCH),
    ROW("v LIKE 'h.llo'", "v=hello", NO_MATCH),
    ROW("v LIKE 'h.llo'", "v=h.llo", MATCH),
    ROW("v LIKE 'a*b'", "v=a*b", MATCH),
    ROW("v LIKE 'a*b'", "v=aab", NO_MATCH),
    ROW("v LIKE 'a[b]'", "v=a[b]", MATCH),
    ROW("v LIKE 'h_llo'", "v=h\xc3\xa9llo", MATCH),
    ROW("v LIKE 'h__llo'", "v=h\xc3\xa9llo", NO_MATCH),
    ROW("v LIKE '%\xc3\xa9%'", "v=h\xc3\xa9llo", MATCH),
    ROW("v LIKE '%b'", "v=aaaaaaab", MATCH),
    ROW("v LIKE '%a%b%a'", "v=xaxbxbxa", MATCH),
    ROW("v LIKE '%a%b%a'", "v=xaxbxbx", NO_MATCH),
    ROW("v LIKE 'a%a'", "v=a", NO_MATCH),
    ROW("v LIKE '_%_'", "v=ab", MATCH),
    ROW("v LIKE '_%_'", "v=a", NO_MATCH),
    ROW("s Like 'h%'", H, MATCH),
    ROW("s LIKE 'h%' ESCAPE ''", H, COMPILE_ERROR),
    ROW("s LIKE 'h%' ESCAPE 'ab'", H, COMPILE_ERROR),
    ROW("s LIKE 'h%' ESCAPE 1", H, COMPILE_ERROR),
    ROW("s LIKE x", H, COMPILE_ERROR),
    ROW("s LIKE 5", H, COMPILE_ERROR),
    ROW("s LIKE", H, COMPILE_ERROR),
    ROW("5 LIKE '5'", "", COMPILE_ERROR),
    ROW("(n + 1) LIKE '6'", H, COMPILE_ERROR),
    ROW("s LIKE 'h%' ESCAPE", H, COMPILE_ERROR),

    /* IN */
    ROW("s IN ('hello')", H, MATCH),
    ROW("s IN ('a', 'hello', 'b')", H, MATCH),
    ROW("s IN ('a','b')", H, NO_MATCH),
    ROW("s NOT IN ('a', 'b')", H, MATCH),
    ROW("s NOT IN ('hello')", H, NO_MATCH),
    ROW("s IN ('HELLO')", H, NO_MATCH),
    ROW("s IN ('hell')", H, NO_MATCH),
    ROW("missing IN ('a')", H, NO_MATCH),
    ROW("missing NOT IN ('a')", H, NO_MATCH),
    ROW("n IN ('5')", H, MATCH),
    ROW("e IN ('')", H, MATCH),
    ROW("s IN ('it''s')", "s=it's", MATCH),
    ROW("s iN ('hello')", H, MATCH),
    ROW("s nOt In ('x')", H, MATCH),
    ROW("s IN ()", H, COMPILE_ERROR),
    ROW("s IN (1, 2)", H, COMPILE_ERROR),
    ROW("s IN ('a', 1)", H, COMPILE_ERROR),
    ROW("s IN ('a', x)", H, COMPILE_ERROR),
    ROW("s IN 'a'", H, COMPILE_ERROR),
    ROW("s IN ('a'", H, COMPILE_ERROR),
    ROW("s IN ('a',)", H, COMPILE_ERROR),
    ROW("s IN ('a' 'b')", H, COMPILE_ERROR),
    ROW("s IN", H, COMPILE_ERROR),
    ROW("5 IN ('5')", "", COMPILE_ERROR),

    /* IS NULL */
    ROW("missing IS NULL", H, MATCH),
    ROW("missing IS NOT NULL", H, NO_MATCH),
    ROW("s IS NULL", H, NO_MATCH),
    ROW("s IS NOT NULL", H, MATCH),
    ROW("e IS NULL", H, NO_MATCH),
    ROW("e IS NOT NULL", H, MATCH),
    ROW("missing is null", H, MATCH),
    ROW("missing iS nOt NuLl", H, NO_MATCH),
    ROW("missing IS NULL AND s = 'hello'", H, MATCH),
    ROW("(missing + 1) IS NULL", H, MATCH),
    ROW(U_ " IS NULL", "", MATCH),
    ROW("5 IS NOT NULL", "", MATCH),
    ROW("missing = NULL", H, COMPILE_ERROR),
    ROW("NULL IS NULL", H, COMPILE_ERROR),
    ROW("missing IS 5", H, COMPILE_ERROR),
    ROW("missing IS NOT 5", H, COMPILE_ERROR),
    ROW("missing IS", H, COMPILE_ERROR),

    /* NULL (missing header) through every comparison and arithmetic */
    ROW("missing = 1", H, NO_MATCH),
    ROW("NOT (missing = 1)", H, NO_MATCH),
    ROW("missing <> 1", H, NO_MATCH),
    ROW("NOT (missing <> 1)", H, NO_MATCH),
    ROW("missing < 1", H, NO_MATCH),
    ROW("missing <= 1", H, NO_MATCH),
    ROW("missing > 1", H, NO_MATCH),
    ROW("NOT (missing >= 1)", H, NO_MATCH),
    ROW("missing = 'a'", H, NO_MATCH),
    ROW("NOT (missing = 'a')", H, NO_MATCH),
    ROW("missing = missing", H, NO_MATCH),
    ROW("missing <> missing", H, NO_MATCH),
    ROW("missing = TRUE", H, NO_MATCH),
    ROW("missing + 1 > 0", H, NO_MATCH),
    ROW("NOT (missing * 1 > 0)", H, NO_MATCH),
    ROW("-missing < 0", H, NO_MATCH),
    ROW("1 / missing = 0", H, NO_MATCH),

    /* keywords and identifiers */
    ROW("NoT FaLsE", "", MATCH),
    ROW("tRuE oR fAlSe", "", MATCH),
    ROW("n BeTwEeN 1 aNd 10", H, MATCH),
    ROW("S = 'hello'", H, NO_MATCH),
    ROW("$x = 1", "$x=1", MATCH),
    ROW("_a = 1", "_a=1", MATCH),
    ROW("a.b = 1", "a.b=1", MATCH),
    ROW("a1 = 1", "a1=1", MATCH),
    ROW("JMSType = 'car'", "JMSType=car", MATCH),
    ROW("andx = 1", "andx=1", MATCH),
    ROW("notx", "notx=true", MATCH),
    ROW("\xc3\xa9 = 1", "\xc3\xa9=1", MATCH),
    ROW("1a = 1", "", COMPILE_ERROR),
    ROW("and = 1", "", COMPILE_ERROR),
    ROW("or = 1", "", COMPILE_ERROR),
    ROW("between = 1", "", COMPILE_ERROR),
    ROW("like = 1", "", COMPILE_ERROR),
    ROW("escape = 1", "", COMPILE_ERROR),
    ROW("in = 1", "", COMPILE_ERROR),
    ROW("is = 1", "", COMPILE_ERROR),
    ROW("null = 1", "", COMPILE_ERROR),
    ROW("NOT = 1", "", COMPILE_ERROR),

    /* the selector must be boolean */
    ROW("1", "", COMPILE_ERROR),
    ROW("1.5", "", COMPILE_ERROR),
    ROW("'abc'", "", COMPILE_ERROR),
    ROW("1 + 2", "", COMPILE_ERROR),
    ROW("-n", H, COMPILE_ERROR),
    ROW("n + 1", H, COMPILE_ERROR),
    ROW("(n * 2)", H, COMPILE_ERROR),
    ROW("1 AND TRUE", "", COMPILE_ERROR),
    ROW("TRUE AND 'a'", "", COMPILE_ERROR),
    ROW("TRUE OR 2", "", COMPILE_ERROR),
    ROW("NOT 5", "", COMPILE_ERROR),
    ROW("NOT 'a'", "", COMPILE_ERROR),
    ROW("'a' + 1 = 1", "", COMPILE_ERROR),
    ROW("TRUE + 1 = 2", "", COMPILE_ERROR),
    ROW("-'a' = 1", "", COMPILE_ERROR),
    ROW("(1 = 1) * 2 = 2", "", COMPILE_ERROR),

    /* syntax errors */
    ROW("", "", COMPILE_ERROR),
    ROW("   ", "", COMPILE_ERROR),
    ROW("\t\r\n", "", COMPILE_ERROR),
    ROW("'", "", COMPILE_ERROR),
    ROW("'abc", "", COMPILE_ERROR),
    ROW("s = 'abc", H, COMPILE_ERROR),
    ROW("s = 'it''", H, COMPILE_ERROR),
    ROW("(", "", COMPILE_ERROR),
    ROW(")", "", COMPILE_ERROR),
    ROW("()", "", COMPILE_ERROR),
    ROW("(TRUE", "", COMPILE_ERROR),
    ROW("TRUE)", "", COMPILE_ERROR),
    ROW("((TRUE)", "", COMPILE_ERROR),
    ROW("(TRUE))", "", COMPILE_ERROR),
    ROW("TRUE TRUE", "", COMPILE_ERROR),
    ROW("s =", H, COMPILE_ERROR),
    ROW("= 1", "", COMPILE_ERROR),
    ROW("s == 1", H, COMPILE_ERROR),
    ROW("s != 1", H, COMPILE_ERROR),
    ROW("s = 1 AND", H, COMPILE_ERROR),
    ROW("AND", "", COMPILE_ERROR),
    ROW("OR TRUE", "", COMPILE_ERROR),
    ROW("NOT", "", COMPILE_ERROR),
    ROW("s # 1", H, COMPILE_ERROR),
    ROW("a = b = c", "", COMPILE_ERROR),
    ROW("a < b < c", "", COMPILE_ERROR),
    ROW("s NOT = 1", H, COMPILE_ERROR),
    ROW("s NOT NULL", H, COMPILE_ERROR),
    ROW("x = 1,", "", COMPILE_ERROR),
    ROW(",", "", COMPILE_ERROR),
    ROW("x = .", "", COMPILE_ERROR),
    ROW("x = 1 1", "", COMPILE_ERROR),
    ROW("x = 1e", "", COMPILE_ERROR),
    ROW("x = \"a\"", "", COMPILE_ERROR),
    ROW("x = 1 ;", "", COMPILE_ERROR),
    ROW("\x01", "", COMPILE_ERROR),
    ROW("x = \x7f", "", COMPILE_ERROR),
    ROW("x = 1 +", "", COMPILE_ERROR),
    ROW("x = * 1", "", COMPILE_ERROR),
    ROW("ESCAPE", "", COMPILE_ERROR),
    ROW("x LIKE 'a' ESCAPE 'b' ESCAPE 'c'", "", COMPILE_ERROR),
};

/* Headers of one row, split in place. */
struct hdrs {
    char buf[1024];
    const char *key[64];
    const char *val[64];
    int n;
};

static void hdrs_parse(struct hdrs *h, const char *spec)
{
    h->n = 0;
    assert_true(strlen(spec) < sizeof h->buf);
    strcpy(h->buf, spec);
    char *p = h->buf;
    while (*p) {
        char *item = p;
        char *semi = strchr(p, ';');
        if (semi) {
            *semi = '\0';
            p = semi + 1;
        } else {
            p += strlen(p);
        }
        char *eq = strchr(item, '=');
        if (!eq)
            continue;
        *eq = '\0';
        assert_true(h->n < 64);
        h->key[h->n] = item;
        h->val[h->n] = eq + 1;
        h->n++;
    }
}

static const char *hdrs_lookup(void *ctx, const char *name)
{
    const struct hdrs *h = ctx;
    for (int i = 0; i < h->n; i++)
        if (!strcmp(h->key[i], name))
            return h->val[i];
    return NULL;
}

static void test_table(void **state)
{
    size_t nrows = sizeof rows / sizeof rows[0];
    int failures = 0;
    for (size_t i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        struct selector *s = (struct selector *)0x1;
        char err[256] = "";
        int rc = selector_compile(r->sel, &s, err, sizeof err);
        if (r->want == COMPILE_ERROR) {
            if (rc == 0) {
                print_error("line %d: [%s] compiled, expected an error\n", r->line, r->sel);
                selector_free(s);
                failures++;
                continue;
            }
            if (rc != -EINVAL || s != NULL || strncmp(err, "selector: ", 10) ||
                !strstr(err, " at column ")) {
                print_error("line %d: [%s] rc %d, bad error '%s'\n", r->line, r->sel, rc, err);
                failures++;
            }
            continue;
        }
        if (rc != 0) {
            print_error("line %d: [%s] failed to compile: %s\n", r->line, r->sel, err);
            failures++;
            continue;
        }
        assert_string_equal(selector_text(s), r->sel);
        struct hdrs h;
        hdrs_parse(&h, r->hdrs);
        bool got = selector_match(s, hdrs_lookup, &h);
        if (got != (r->want == MATCH)) {
            print_error("line %d: [%s] with {%s}: got %s\n", r->line, r->sel, r->hdrs,
                        got ? "MATCH" : "NO_MATCH");
            failures++;
        }
        selector_free(s);
    }
    print_message("%zu selector rows\n", nrows);
    assert_int_equal(failures, 0);
}

static void expect_error(const char *sel, const char *want)
{
    struct selector *s = NULL;
    char err[256];
    int rc = selector_compile(sel, &s, err, sizeof err);
    assert_int_equal(rc, -EINVAL);
    assert_null(s);
    assert_string_equal(err, want);
}

static void test_error_messages(void **state)
{
    expect_error("a = 1 AND AND b", "selector: unexpected 'AND' at column 11");
    expect_error("NOT AND", "selector: unexpected 'AND' at column 5");
    expect_error("(a = 1", "selector: expected ')' at column 7");
    expect_error("a = 'abc", "selector: unterminated string at column 5");
    expect_error("a = 1 b", "selector: unexpected 'b' at column 7");
    expect_error("a = ", "selector: unexpected end of selector at column 5");
    expect_error("a = 1 'x'", "selector: unexpected string 'x' at column 7");
    expect_error("", "selector: empty selector at column 1");
    expect_error("a # 1", "selector: unexpected character '#' at column 3");
    expect_error("a = \x01", "selector: unexpected character '\\x01' at column 5");
    expect_error("1 + 2",
                 "selector: selector must be a boolean expression; found a number at column 1");
    expect_error("TRUE AND 'x'",
                 "selector: operand of AND must be a boolean expression; found a string at "
                 "column 10");
    expect_error("a LIKE 'x' ESCAPE 'ab'",
                 "selector: ESCAPE must be a single character at column 19");
    expect_error("a IN ()", "selector: IN list must not be empty at column 7");
    expect_error("a IN ('x', 2)",
                 "selector: IN list takes only string literals; found '2' at column 12");
    expect_error("x = 0x1F", "selector: hexadecimal literals are not supported at column 5");
    expect_error("x = 9223372036854775808",
                 "selector: integer 9223372036854775808 out of range at column 5");
    expect_error("a = NULL", "selector: unexpected 'NULL' (NULL is only allowed in IS [NOT] "
                             "NULL) at column 5");
    /* Columns count characters: the two-byte e-acute is one. */
    expect_error("\xc3\xa9 = = 1", "selector: unexpected '=' at column 5");
    /* Long tokens are cut short in the message. */
    expect_error("x = 1 abcdefghijklmnopqrstuvwxyz0123456789",
                 "selector: unexpected 'abcdefghijklmnopqrstuvwx...' at column 7");
}

static void test_error_buffer(void **state)
{
    struct selector *s = NULL;
    /* No buffer at all, or one too small, must still be safe. */
    assert_int_equal(selector_compile("(", &s, NULL, 0), -EINVAL);
    assert_null(s);
    char small[8];
    memset(small, 'x', sizeof small);
    assert_int_equal(selector_compile("(", &s, small, sizeof small), -EINVAL);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_int_equal(selector_compile(NULL, &s, small, sizeof small), -EINVAL);
    /* A successful compile leaves an empty message. */
    char err[64] = "stale";
    assert_int_equal(selector_compile("TRUE", &s, err, sizeof err), 0);
    assert_string_equal(err, "");
    selector_free(s);
}

static void test_free_null(void **state)
{
    selector_free(NULL);
}

static void test_text_and_reuse(void **state)
{
    struct selector *s;
    char err[128];
    char buf[32];
    strcpy(buf, "n > 3 AND s LIKE 'h%'");
    assert_int_equal(selector_compile(buf, &s, err, sizeof err), 0);
    /* The selector keeps its own copy of the text. */
    memset(buf, 0, sizeof buf);
    assert_string_equal(selector_text(s), "n > 3 AND s LIKE 'h%'");
    struct hdrs a, b;
    hdrs_parse(&a, "n=4;s=hi");
    hdrs_parse(&b, "n=2;s=hi");
    for (int i = 0; i < 3; i++) {
        assert_true(selector_match(s, hdrs_lookup, &a));
        assert_false(selector_match(s, hdrs_lookup, &b));
    }
    /* A NULL lookup leaves every identifier unknown. */
    assert_false(selector_match(s, NULL, NULL));
    selector_free(s);
}

static int compile(const char *text)
{
    struct selector *s = NULL;
    char err[256];
    int rc = selector_compile(text, &s, err, sizeof err);
    if (rc == 0) {
        selector_free(s);
    } else {
        assert_non_null(strstr(err, " at column "));
    }
    return rc;
}

static bool compile_match(const char *text, const char *hdrs)
{
    struct selector *s = NULL;
    char err[256];
    int rc = selector_compile(text, &s, err, sizeof err);
    if (rc) {
        print_error("%s\n", err);
        fail();
    }
    struct hdrs h;
    hdrs_parse(&h, hdrs);
    bool m = selector_match(s, hdrs_lookup, &h);
    selector_free(s);
    return m;
}

static char *repeat(const char *pre, const char *unit, int n, const char *mid, const char *close)
{
    size_t len = strlen(pre) + (strlen(unit) + strlen(close)) * (size_t)n + strlen(mid) + 1;
    char *s = malloc(len);
    assert_non_null(s);
    strcpy(s, pre);
    for (int i = 0; i < n; i++)
        strcat(s, unit);
    strcat(s, mid);
    for (int i = 0; i < n; i++)
        strcat(s, close);
    return s;
}

static void test_depth_limit(void **state)
{
    char *s;
    s = repeat("", "(", 50, "TRUE", ")");
    assert_int_equal(compile(s), 0);
    free(s);
    s = repeat("", "(", 98, "TRUE", ")");
    assert_int_equal(compile(s), 0);
    free(s);
    s = repeat("", "(", 150, "TRUE", ")");
    assert_int_equal(compile(s), -EINVAL);
    free(s);
    /* Fits the length limit but is far too deep. */
    s = repeat("", "(", 2000, "x", ")");
    assert_int_equal(compile(s), -EINVAL);
    free(s);
    /* Unbalanced: the depth limit must trip before the missing ')'. */
    s = repeat("", "(", 3000, "", "");
    assert_int_equal(compile(s), -EINVAL);
    free(s);
    s = repeat("", "NOT ", 50, "TRUE", "");
    assert_true(compile_match(s, ""));
    free(s);
    s = repeat("", "NOT ", 500, "TRUE", "");
    assert_int_equal(compile(s), -EINVAL);
    free(s);
    s = repeat("", "- ", 50, "1 = 1", "");
    assert_true(compile_match(s, ""));
    free(s);
    s = repeat("", "-", 1000, "1 = 1", "");
    assert_int_equal(compile(s), -EINVAL);
    free(s);
    s = repeat("", "(NOT -", 200, "x", ")");
    assert_int_equal(compile(s), -EINVAL);
    free(s);
    /* Parentheses and unary minus together, just within the limit. */
    s = repeat("", "(- (x + ", 30, "1", ") * 1)");
    char *t = malloc(strlen(s) + 16);
    sprintf(t, "%s IS NULL", s);
    assert_true(compile_match(t, ""));
    free(t);
    free(s);
}

/* The caller's length limit (stomp.max_selector_length at SUBSCRIBE)
 * refuses with its own code; without one, only SELECTOR_MAX_LENGTH holds,
 * so a selector accepted under a larger setting still compiles (a store's
 * durable subscriptions). */
static void test_length_limit(void **state)
{
    const struct selector_limits lim = {.max_length = 4096};
    char *s = malloc(SELECTOR_MAX_LENGTH + 2);
    assert_non_null(s);
    memset(s, ' ', 4096);
    memcpy(s, "x = 1", 5);
    s[4096] = '\0';
    assert_int_equal(strlen(s), 4096);
    struct selector *sel = NULL;
    char err[128];
    assert_int_equal(selector_compile_limited(s, &lim, &sel, err, sizeof err), 0);
    selector_free(sel);
    assert_true(compile_match(s, "x=1"));
    s[4096] = ' ';
    s[4097] = '\0';
    assert_int_equal(selector_compile_limited(s, &lim, &sel, err, sizeof err), SELECTOR_TOO_LONG);
    assert_null(sel);
    assert_non_null(strstr(err, "4096"));
    assert_non_null(strstr(err, " at column "));
    assert_int_equal(compile(s), 0);
    /* The limit is on the text, not on how much of it is read. */
    memset(s, ' ', 4999);
    s[4999] = '\0';
    assert_int_equal(selector_compile_limited(s, &lim, &sel, err, sizeof err), SELECTOR_TOO_LONG);
    /* The hard limit. */
    memset(s, ' ', SELECTOR_MAX_LENGTH);
    memcpy(s, "x = 1", 5);
    s[SELECTOR_MAX_LENGTH] = '\0';
    assert_true(compile_match(s, "x=1"));
    s[SELECTOR_MAX_LENGTH] = ' ';
    s[SELECTOR_MAX_LENGTH + 1] = '\0';
    assert_int_equal(selector_compile(s, &sel, err, sizeof err), SELECTOR_TOO_LONG);
    assert_non_null(strstr(err, "65536"));
    free(s);
}

/* Long flat chains must compile and evaluate without deep recursion. */
static void test_long_chains(void **state)
{
    char *s = malloc(4200);
    assert_non_null(s);
    size_t len = 0;
    int i;
    for (i = 0; len < 4000; i++)
        len += (size_t)sprintf(s + len, "%sx = %d", i ? " OR " : "", i);
    char hdr[32];
    sprintf(hdr, "x=%d", i - 1);
    assert_true(compile_match(s, hdr));
    assert_false(compile_match(s, "x=-1"));

    len = (size_t)sprintf(s, "x = 0");
    for (i = 0; len < 4000; i++)
        len += (size_t)sprintf(s + len, " + 1");
    sprintf(hdr, "x=%d", i);
    assert_true(compile_match(s, hdr));

    len = 0;
    for (i = 0; len < 4000; i++)
        len += (size_t)sprintf(s + len, "%sx <> '%d'", i ? " AND " : "", i);
    assert_true(compile_match(s, "x=none"));
    assert_false(compile_match(s, "x=7"));

    len = (size_t)sprintf(s, "x IN ('0'");
    for (i = 1; len < 4000; i++)
        len += (size_t)sprintf(s + len, ",'%d'", i);
    sprintf(s + len, ")");
    sprintf(hdr, "x=%d", i - 1);
    assert_true(compile_match(s, hdr));
    assert_false(compile_match(s, "x=a"));
    free(s);
}

struct big {
    const char *value;
};

static const char *big_lookup(void *ctx, const char *name)
{
    const struct big *b = ctx;
    return strcmp(name, "v") ? NULL : b->value;
}

static void test_like_not_exponential(void **state)
{
    char *v = malloc(10 * 1024 + 1);
    assert_non_null(v);
    memset(v, 'a', 10 * 1024);
    v[10 * 1024] = '\0';
    struct big b = {v};
    struct selector *s;
    char err[128];
    assert_int_equal(selector_compile("v LIKE '%a%a%a%a%a%a%a%a%b'", &s, err, sizeof err), 0);
    assert_false(selector_match(s, big_lookup, &b));
    selector_free(s);
    assert_int_equal(selector_compile("v LIKE '%a%a%a%a%a%a%a%a%a'", &s, err, sizeof err), 0);
    assert_true(selector_match(s, big_lookup, &b));
    selector_free(s);
    assert_int_equal(selector_compile("v LIKE '%_%_%_%_%_%_%_%_%b%'", &s, err, sizeof err), 0);
    assert_false(selector_match(s, big_lookup, &b));
    selector_free(s);
    free(v);
}

static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Random bytes and random token soup: whatever happens, no crash, no
 * leak, and every failure explains itself. */
static void test_hostile_input(void **state)
{
    static const char *const frags[] = {
        "(", ")", "'", "''", "'a'", "'%'", "'_'", " ", "AND", "OR", "NOT", "BETWEEN", "LIKE",
        "ESCAPE", "IN", "IS", "NULL", "TRUE", "FALSE", "x", "y", "n", "1", "2.5", ".5", "1e3",
        "=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", ",", "0", "9223372036854775808",
        "\xc3\xa9", "$", "_",
    };
    const size_t nfrags = sizeof frags / sizeof frags[0];
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    struct hdrs h;
    hdrs_parse(&h, "x=a;y=1;n=2.5;\xc3\xa9=true");
    char text[600];
    int compiled = 0;
    for (int round = 0; round < 30000; round++) {
        size_t len = 0;
        int pieces = (int)(rng_next(&seed) % 40);
        bool bytes = round % 3 == 0;
        for (int i = 0; i < pieces; i++) {
            if (bytes) {
                char c = (char)(rng_next(&seed) % 255 + 1);
                text[len++] = c;
            } else {
                const char *f = frags[rng_next(&seed) % nfrags];
                size_t fl = strlen(f);
                memcpy(text + len, f, fl);
                len += fl;
                text[len++] = ' ';
            }
        }
        text[len] = '\0';
        struct selector *s = NULL;
        char err[256] = "";
        int rc = selector_compile(text, &s, err, sizeof err);
        if (rc == 0) {
            compiled++;
            assert_string_equal(selector_text(s), text);
            (void)selector_match(s, hdrs_lookup, &h);
            selector_free(s);
        } else {
            assert_int_equal(rc, -EINVAL);
            assert_null(s);
            assert_memory_equal(err, "selector: ", 10);
            assert_non_null(strstr(err, " at column "));
        }
    }
    print_message("%d of 30000 random selectors compiled\n", compiled);
    const char *fixed[] = {"'", "''''", "'''", "(((", ")))", "((x)", "(x))", "NOT NOT",
                           "x LIKE '\\' ESCAPE '\\'", "x IN (", "x IN ('a',", "- -", "\xff\xfe",
                           "\xc3", "x = '\xc3", "x LIKE '\xc3' ESCAPE '\xc3'"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        struct selector *s = NULL;
        char err[256];
        if (selector_compile(fixed[i], &s, err, sizeof err) == 0) {
            (void)selector_match(s, hdrs_lookup, &h);
            selector_free(s);
        }
    }
}

struct counted {
    struct hdrs h;
    int calls;
    int64_t *budget;    /* when set, each lookup charges 10 steps */
};

static const char *counted_lookup(void *ctx, const char *name)
{
    struct counted *c = ctx;
    c->calls++;
    if (c->budget)
        *c->budget -= 10;
    return hdrs_lookup(&c->h, name);
}

/* A budget bounds an evaluation: exact answers when it suffices, -1 (and
 * nothing else) when it does not, whatever point it runs out at. */
static void test_eval_budget(void **state)
{
    const char *sels[] = {
        "a = 'x' AND b LIKE '%y%' AND n BETWEEN 1 AND 9",
        "a IN ('p', 'q', 'x') OR b LIKE '%zzz'",
        "NOT (n + 1 > 5 * 2) AND b IS NOT NULL",
        "missing = 1 OR a = 'x'",
    };
    for (size_t i = 0; i < sizeof sels / sizeof sels[0]; i++) {
        struct selector *s;
        char err[128];
        assert_int_equal(selector_compile(sels[i], &s, err, sizeof err), 0);
        struct counted c = {.calls = 0};
        hdrs_parse(&c.h, "a=x;b=abcyabcyabcyabcyabcyabcyabcy;n=5");
        int64_t budget = 1000000;
        int want = selector_eval(s, counted_lookup, &c, &budget);
        assert_int_equal(want, selector_match(s, hdrs_lookup, &c.h) ? 1 : 0);
        int64_t cost = 1000000 - budget;
        assert_true(cost > 0);
        for (int64_t b = 0; b <= cost; b++) {
            int64_t left = b;
            int got = selector_eval(s, counted_lookup, &c, &left);
            if (b < cost) {
                assert_int_equal(got, -1);
                assert_true(left <= 0);
            } else {
                assert_int_equal(got, want);
                assert_int_equal(left, 0);
            }
        }
        selector_free(s);
    }
}

/* Each name is looked up once per evaluation, however often it appears;
 * what the lookup charges counts against the budget. */
static void test_eval_lookup_once(void **state)
{
    struct selector *s;
    char err[128];
    assert_int_equal(selector_compile("a LIKE '%1' OR a LIKE '%2' OR a LIKE '%3' OR a = 'z' OR b = 'q'", &s,
                                      err, sizeof err), 0);
    struct counted c = {.calls = 0};
    hdrs_parse(&c.h, "a=xyz;b=q");
    assert_true(selector_match(s, counted_lookup, &c));
    assert_int_equal(c.calls, 2);
    int64_t budget = 1000;
    c.budget = &budget;
    c.calls = 0;
    assert_int_equal(selector_eval(s, counted_lookup, &c, &budget), 1);
    assert_int_equal(c.calls, 2);
    int64_t with = 1000 - budget;
    c.budget = NULL;
    budget = 1000;
    assert_int_equal(selector_eval(s, counted_lookup, &c, &budget), 1);
    assert_int_equal(with - (1000 - budget), 20);
    /* more than 16 names: the cache is allocated, same answers */
    char text[1024] = "";
    char hdr[512] = "";
    for (int i = 0; i < 40; i++) {
        sprintf(text + strlen(text), "%sh%d = 'v' OR h%d = 'w'", i ? " OR " : "", i, i);
        sprintf(hdr + strlen(hdr), "%sh%d=%s", i ? ";" : "", i, i == 39 ? "w" : "u");
    }
    selector_free(s);
    assert_int_equal(selector_compile(text, &s, err, sizeof err), 0);
    hdrs_parse(&c.h, hdr);
    c.calls = 0;
    assert_true(selector_match(s, counted_lookup, &c));
    assert_int_equal(c.calls, 40);
    selector_free(s);
}

/* The complexity limit: node count, IN items and LIKE automata, refused
 * with their own code and a column. */
static void test_complexity_limit(void **state)
{
    struct selector *s = NULL;
    char err[256];
    const struct selector_limits lim = {.max_complexity = 100000};
    assert_int_equal(selector_compile_limited("JMSType = 'car' AND color = 'blue' AND weight > 2500", &lim, &s,
                                              err, sizeof err), 0);
    assert_int_equal(selector_complexity(s), 10);  /* 3 x (name, value, =), AND */
    selector_free(s);
    assert_int_equal(selector_compile_limited("x LIKE 'ORD-____-%'", &lim, &s, err, sizeof err), 0);
    selector_free(s);
    /* '%a' then many '_': an automaton of about 2^k states */
    assert_int_equal(selector_compile_limited("ok = 1 AND x LIKE '%a________________b'", &lim, &s, err,
                                              sizeof err), SELECTOR_TOO_COMPLEX);
    assert_null(s);
    assert_non_null(strstr(err, "too complex"));
    assert_non_null(strstr(err, "at column 19"));
    /* ...which a store's selector still compiles to (no limit) */
    assert_int_equal(selector_compile("ok = 1 AND x LIKE '%a________________b'", &s, err, sizeof err), 0);
    struct hdrs h;
    hdrs_parse(&h, "ok=1;x=zza" "zzzzzzzz" "zzzzzzzz" "b"); /* sixteen between a and b */
    assert_true(selector_match(s, hdrs_lookup, &h));
    hdrs_parse(&h, "ok=1;x=zza" "zzzzzzzz" "zzzzzzz" "b");
    assert_false(selector_match(s, hdrs_lookup, &h));
    selector_free(s);
    /* nodes and IN items count too */
    const struct selector_limits small = {.max_complexity = 50};
    char text[2048] = "x = 0";
    for (int i = 1; i < 40; i++)
        sprintf(text + strlen(text), " OR x = %d", i);
    assert_int_equal(selector_compile_limited(text, &small, &s, err, sizeof err), SELECTOR_TOO_COMPLEX);
    strcpy(text, "x IN ('0'");
    for (int i = 1; i < 60; i++)
        sprintf(text + strlen(text), ", '%d'", i);
    strcat(text, ")");
    assert_int_equal(selector_compile_limited(text, &small, &s, err, sizeof err), SELECTOR_TOO_COMPLEX);
    assert_int_equal(selector_compile(text, &s, err, sizeof err), 0);
    assert_true(selector_complexity(s) > 60);
    selector_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_error_buffer),
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_text_and_reuse),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_length_limit),
        cmocka_unit_test(test_long_chains),
        cmocka_unit_test(test_like_not_exponential),
        cmocka_unit_test(test_hostile_input),
        cmocka_unit_test(test_eval_budget),
        cmocka_unit_test(test_eval_lookup_once),
        cmocka_unit_test(test_complexity_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
