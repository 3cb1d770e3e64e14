/* SHA-256 and HMAC-SHA-256 (FIPS 180-4, RFC 2104), small and
 * self-contained: the authentication cache keys successful logins by a
 * keyed hash of the password, never the password itself. */
#ifndef STOMPD_SHA256_H
#define STOMPD_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32
#define SHA256_BLOCK 64

struct sha256 {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t block[SHA256_BLOCK];
    size_t fill;
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *p, size_t n);
void sha256_final(struct sha256 *s, uint8_t out[SHA256_LEN]);
void sha256(const void *p, size_t n, uint8_t out[SHA256_LEN]);

/* HMAC over the concatenation of parts[0..nparts) (lens[i] bytes each). */
void hmac_sha256(const uint8_t *key, size_t keylen, const void *const *parts, const size_t *lens, size_t nparts,
                 uint8_t out[SHA256_LEN]);

#endif
