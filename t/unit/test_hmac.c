/* Unit tests of repl_auth.c alone: the replication handshake's proofs
 * against values computed independently (Python's hmac over the transcript
 * as DESIGN and repl_auth.h describe it), a proof that changes with every
 * field it covers and with the direction, a check that takes exactly the
 * right proof, nonces that differ, and the node id and log text rules. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "stompd/repl_auth.h"

static uint8_t sn[REPL_NONCE_LEN], mn[REPL_NONCE_LEN];

static struct repl_auth_input input(const char *token)
{
    for (int i = 0; i < REPL_NONCE_LEN; i++) {
        sn[i] = (uint8_t)i;
        mn[i] = (uint8_t)(32 + i);
    }
    return (struct repl_auth_input){token, strlen(token), sn, mn, "slave-a", 7, "master-b", 8};
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

/* python3: hmac.new(token, b"".join(pack(">I", len(f)) + f for f in
 * (label, sn, mn, b"slave-a", b"master-b")), sha256) */
static void test_known_answers(void **state)
{
    uint8_t p[REPL_PROOF_LEN];
    char h[2 * REPL_PROOF_LEN + 1];
    struct repl_auth_input in = input("s3cret");
    repl_auth_proof(REPL_AUTH_SLAVE, &in, p);
    hex(p, sizeof p, h);
    assert_string_equal(h, "b1fd3f6de0e3a993fa658b4550ae8e55e287b43bdfdae2175e192dfb3d130848");
    repl_auth_proof(REPL_AUTH_MASTER, &in, p);
    hex(p, sizeof p, h);
    assert_string_equal(h, "04579aaeeb35a132f981c9f179dd51d012e642268883db22fc92d5ebf19b6f87");
    /* an empty token is still a key (loopback clusters may leave it empty) */
    in = input("");
    repl_auth_proof(REPL_AUTH_SLAVE, &in, p);
    hex(p, sizeof p, h);
    assert_string_equal(h, "379d84eef3c84f5f80ef07b995ed85596b39f5fd9b3c994d880c377beb86b4bc");
}

static void test_every_field_counts(void **state)
{
    uint8_t base[REPL_PROOF_LEN], p[REPL_PROOF_LEN];
    struct repl_auth_input in = input("s3cret");
    repl_auth_proof(REPL_AUTH_SLAVE, &in, base);

    struct repl_auth_input x = in;
    x.token = "s3cres";
    repl_auth_proof(REPL_AUTH_SLAVE, &x, p);
    assert_memory_not_equal(base, p, sizeof p);

    uint8_t other[REPL_NONCE_LEN];
    memcpy(other, sn, sizeof other);
    other[31] ^= 1;
    x = in;
    x.slave_nonce = other;
    repl_auth_proof(REPL_AUTH_SLAVE, &x, p);
    assert_memory_not_equal(base, p, sizeof p);
    x = in;
    x.master_nonce = other;
    repl_auth_proof(REPL_AUTH_SLAVE, &x, p);
    assert_memory_not_equal(base, p, sizeof p);

    x = in;
    x.slave_id = "slave-b";
    repl_auth_proof(REPL_AUTH_SLAVE, &x, p);
    assert_memory_not_equal(base, p, sizeof p);
    x = in;
    x.master_id = "master-c";
    repl_auth_proof(REPL_AUTH_SLAVE, &x, p);
    assert_memory_not_equal(base, p, sizeof p);

    /* the boundary between the ids is part of the transcript */
    x = in;
    x.slave_id = "slave-am";
    x.slave_id_len = 8;
    x.master_id = "aster-b";
    x.master_id_len = 7;
    repl_auth_proof(REPL_AUTH_SLAVE, &x, p);
    assert_memory_not_equal(base, p, sizeof p);

    /* the master's proof is never the slave's (no reflection) */
    repl_auth_proof(REPL_AUTH_MASTER, &in, p);
    assert_memory_not_equal(base, p, sizeof p);
}

static void test_check(void **state)
{
    uint8_t p[REPL_PROOF_LEN];
    struct repl_auth_input in = input("s3cret");
    repl_auth_proof(REPL_AUTH_SLAVE, &in, p);
    assert_true(repl_auth_check(REPL_AUTH_SLAVE, &in, p, sizeof p));
    assert_false(repl_auth_check(REPL_AUTH_MASTER, &in, p, sizeof p));
    assert_false(repl_auth_check(REPL_AUTH_SLAVE, &in, p, sizeof p - 1));
    assert_false(repl_auth_check(REPL_AUTH_SLAVE, &in, "", 0));
    uint8_t longer[REPL_PROOF_LEN + 1];
    memcpy(longer, p, sizeof p);
    longer[REPL_PROOF_LEN] = 0;
    assert_false(repl_auth_check(REPL_AUTH_SLAVE, &in, longer, sizeof longer));
    for (size_t i = 0; i < sizeof p; i++) {
        p[i] ^= 0x80;
        assert_false(repl_auth_check(REPL_AUTH_SLAVE, &in, p, sizeof p));
        p[i] ^= 0x80;
    }
    struct repl_auth_input wrong = input("guess");
    assert_false(repl_auth_check(REPL_AUTH_SLAVE, &wrong, p, sizeof p));
}

static void test_nonces_differ(void **state)
{
    uint8_t a[REPL_NONCE_LEN], b[REPL_NONCE_LEN];
    assert_int_equal(repl_auth_nonce(a), 0);
    assert_int_equal(repl_auth_nonce(b), 0);
    assert_memory_not_equal(a, b, sizeof a);
}

static void test_node_ids(void **state)
{
    assert_true(repl_node_id_ok("0123456789abcdef", 16));
    assert_true(repl_node_id_ok("fake-quorum", 11));
    assert_true(repl_node_id_ok("n1.example.org:a_b", 18));
    assert_true(repl_node_id_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 39));
    assert_false(repl_node_id_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 40));
    assert_false(repl_node_id_ok("", 0));
    assert_false(repl_node_id_ok("a b", 3));
    assert_false(repl_node_id_ok("a\nb", 3));
    assert_false(repl_node_id_ok("a\0b", 3));
    assert_false(repl_node_id_ok("\x1b[31mred", 8));
    assert_false(repl_node_id_ok("caf\xc3\xa9", 5));
    assert_false(repl_node_id_ok("a/b", 3));
}

static void test_printable(void **state)
{
    char out[8];
    repl_printable("ok\n\x1b[x\0y", 8, out, sizeof out);
    assert_string_equal(out, "ok??[x?");
    repl_printable("abc", 3, out, 3);
    assert_string_equal(out, "ab");
    repl_printable("", 0, out, sizeof out);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers), cmocka_unit_test(test_every_field_counts),
        cmocka_unit_test(test_check),         cmocka_unit_test(test_nonces_differ),
        cmocka_unit_test(test_node_ids),      cmocka_unit_test(test_printable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
