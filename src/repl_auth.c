/* Replication handshake proofs: HMAC-SHA256 over a length-prefixed
 * transcript (label, slave nonce, master nonce, slave id, master id),
 * keyed with the shared token. Length prefixes keep fields from sliding
 * into each other ("ab"+"c" is not "a"+"bc"). */
#include "config.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "stompd/repl_auth.h"

static const char *const labels[] = {
    [REPL_AUTH_SLAVE] = "stompd replication 4: slave proof",
    [REPL_AUTH_MASTER] = "stompd replication 4: master proof",
};

static size_t put(uint8_t *b, size_t at, const void *p, size_t n)
{
    b[at] = (uint8_t)(n >> 24);
    b[at + 1] = (uint8_t)(n >> 16);
    b[at + 2] = (uint8_t)(n >> 8);
    b[at + 3] = (uint8_t)n;
    memcpy(b + at + 4, p, n);
    return at + 4 + n;
}

void repl_auth_proof(enum repl_auth_dir dir, const struct repl_auth_input *in, uint8_t out[REPL_PROOF_LEN])
{
    /* ids longer than the wire allows never get here; bounded anyway */
    uint8_t msg[64 + 2 * REPL_NONCE_LEN + 2 * 256 + 5 * 4];
    size_t sl = in->slave_id_len < 256 ? in->slave_id_len : 256;
    size_t ml = in->master_id_len < 256 ? in->master_id_len : 256;
    size_t n = put(msg, 0, labels[dir], strlen(labels[dir]));
    n = put(msg, n, in->slave_nonce, REPL_NONCE_LEN);
    n = put(msg, n, in->master_nonce, REPL_NONCE_LEN);
    n = put(msg, n, in->slave_id, sl);
    n = put(msg, n, in->master_id, ml);
    unsigned int outlen = REPL_PROOF_LEN;
    /* an empty token is a key of no bytes: HMAC needs a non-NULL pointer */
    static const char none = 0;
    if (!HMAC(EVP_sha256(), in->token_len ? in->token : &none, (int)in->token_len, msg, n, out, &outlen))
        memset(out, 0, REPL_PROOF_LEN); /* matches no proof that was computed */
}

bool repl_auth_check(enum repl_auth_dir dir, const struct repl_auth_input *in, const void *proof, size_t len)
{
    uint8_t want[REPL_PROOF_LEN];
    repl_auth_proof(dir, in, want);
    bool ok = len == REPL_PROOF_LEN && CRYPTO_memcmp(want, proof, REPL_PROOF_LEN) == 0;
    OPENSSL_cleanse(want, sizeof want);
    return ok;
}

int repl_auth_nonce(uint8_t out[REPL_NONCE_LEN])
{
    return RAND_bytes(out, REPL_NONCE_LEN) == 1 ? 0 : -EIO;
}

bool repl_node_id_ok(const char *id, size_t len)
{
    if (len == 0 || len > REPL_NODE_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == ':' || c == '-'))
            return false;
    }
    return true;
}

void repl_printable(const char *p, size_t n, char *out, size_t outlen)
{
    if (!outlen)
        return;
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < outlen; i++) {
        unsigned char c = (unsigned char)p[i];
        out[k++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[k] = '\0';
}
