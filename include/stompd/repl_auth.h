/* The replication handshake's proofs (DESIGN §12): master and slave each
 * prove they know store.security_token without sending it, by an
 * HMAC-SHA256 keyed with the token over a direction label, a fresh nonce
 * from each side and both node ids. A recorded handshake proves nothing
 * on another connection (the other side's nonce is new), and one side's
 * proof is never the other's (the label). Also what a node id from the
 * wire may look like, and how wire text is made safe to log. Pure
 * functions (OpenSSL's libcrypto), unit-tested alone. */
#ifndef STOMPD_REPL_AUTH_H
#define STOMPD_REPL_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REPL_NONCE_LEN 32
#define REPL_PROOF_LEN 32
/* Longest node id accepted from the wire (store.c makes 16 hex digits). */
#define REPL_NODE_ID_MAX 39

enum repl_auth_dir {
    REPL_AUTH_SLAVE,  /* the slave proves, in PROOF */
    REPL_AUTH_MASTER, /* the master proves, in WELCOME */
};

struct repl_auth_input {
    const char *token;
    size_t token_len;
    const uint8_t *slave_nonce, *master_nonce; /* REPL_NONCE_LEN bytes each */
    const char *slave_id;
    size_t slave_id_len;
    const char *master_id;
    size_t master_id_len;
};

/* The proof of one direction. */
void repl_auth_proof(enum repl_auth_dir dir, const struct repl_auth_input *in, uint8_t out[REPL_PROOF_LEN]);
/* Is proof (len bytes, from the wire) that proof? Constant time. */
bool repl_auth_check(enum repl_auth_dir dir, const struct repl_auth_input *in, const void *proof, size_t len);
/* REPL_NONCE_LEN random bytes from the operating system's generator:
 * 0, or -EIO when it has none to give. */
int repl_auth_nonce(uint8_t out[REPL_NONCE_LEN]) __attribute__((warn_unused_result));

/* A node id from the wire: 1..REPL_NODE_ID_MAX characters of
 * [A-Za-z0-9._:-], so it can be logged and shown as it is. */
bool repl_node_id_ok(const char *id, size_t len);
/* Text from the wire (a REFUSE reason) as a C string fit for a log line:
 * at most outlen - 1 bytes, anything but printable ASCII as '?'. */
void repl_printable(const char *p, size_t n, char *out, size_t outlen);

#endif
