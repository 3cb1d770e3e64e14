/* SHA-256 and HMAC-SHA-256 (the login cache's keyed hash) against the
 * FIPS 180-4 examples and RFC 4231's test cases. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stompd/sha256.h"

static void hex(const uint8_t *d, char *out)
{
    for (int i = 0; i < SHA256_LEN; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void check_sha(const void *p, size_t n, const char *want)
{
    uint8_t d[SHA256_LEN];
    char h[2 * SHA256_LEN + 1];
    sha256(p, n, d);
    hex(d, h);
    assert_string_equal(h, want);
}

static void test_sha256(void **state)
{
    (void)state;
    check_sha("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_sha("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56 bytes: padding spills */
    check_sha(two, strlen(two), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* a million 'a', fed in uneven pieces */
    struct sha256 s;
    sha256_init(&s);
    static char a[1000];
    memset(a, 'a', sizeof a);
    size_t left = 1000000, step = 1;
    while (left) {
        size_t n = step < left ? step : left;
        sha256_update(&s, a, n);
        left -= n;
        step = step % 997 + 1;
    }
    uint8_t d[SHA256_LEN];
    char h[2 * SHA256_LEN + 1];
    sha256_final(&s, d);
    hex(d, h);
    assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void check_hmac(const uint8_t *key, size_t kl, const char *msg, const char *want)
{
    uint8_t d[SHA256_LEN];
    char h[2 * SHA256_LEN + 1];
    /* the message split in two parts gives the same MAC */
    size_t half = strlen(msg) / 2;
    const void *parts[] = {msg, msg + half};
    size_t lens[] = {half, strlen(msg) - half};
    hmac_sha256(key, kl, parts, lens, 2, d);
    hex(d, h);
    assert_string_equal(h, want);
}

static void test_hmac_rfc4231(void **state)
{
    (void)state;
    uint8_t k1[20];
    memset(k1, 0x0b, sizeof k1);
    check_hmac(k1, sizeof k1, "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    check_hmac((const uint8_t *)"Jefe", 4, "what do ya want for nothing?",
               "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    uint8_t k6[131]; /* longer than a block: hashed first */
    memset(k6, 0xaa, sizeof k6);
    check_hmac(k6, sizeof k6, "Test Using Larger Than Block-Size Key - Hash Key First",
               "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_hmac_rfc4231),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
