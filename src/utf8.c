/* UTF-8 validation: what a WebSocket text frame must hold (RFC 6455) and
 * what a destination name must be (STOMP's headers are UTF-8). */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "stompd/utf8.h"

bool utf8_valid(const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p;
    size_t i = 0;
    while (i < n) {
        /* ASCII (STOMP's headers, most bodies) eight bytes at a time */
        uint64_t v;
        while (n - i >= 8 && (memcpy(&v, s + i, 8), (v & 0x8080808080808080ULL) == 0))
            i += 8;
        if (i == n)
            break;
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        /* overlong forms, surrogates, beyond U+10FFFF */
        if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

bool utf8_name_ok(const char *s, const char **why)
{
    size_t n = strlen(s);
    if (!utf8_valid(s, n)) {
        *why = "is not valid UTF-8";
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            *why = "has a control character";
            return false;
        }
    return true;
}

int utf8_cut(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n > max) {
        n = max;
        while (n && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--; /* s[n] goes on a character begun before it */
    }
    return (int)n;
}
