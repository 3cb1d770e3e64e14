/* Unit tests of the TLS transport (tls.c) under the stream layer
 * (stream.c), over real loopback sockets: a stream on a TLS listener
 * against an OpenSSL client driven by hand in the same thread. What is
 * checked is what the stream promises the protocol above: the same bytes
 * in and out whatever the record boundaries, input decoded but not yet
 * taken offered again when reading resumes, a read that must write (the
 * server's first flight into a full socket) waiting for the socket and
 * then going on, TLS 1.3 key updates while output is queued, the
 * handshake deadline, close_notify, and a peer that does not speak TLS.
 * The certificate is made here (self-signed, EC, made big on purpose). */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "stompd/buf.h"
#include "stompd/config.h"
#include "stompd/server.h"
#include "stompd/stream.h"
#include "stompd/tls.h"

struct server srv;

/* ------------------------------------------------------------ the server side */

struct peer {
    struct stream st;
    struct buf got;         /* every byte the protocol was offered and took */
    bool echo;              /* write back what arrives */
    bool pause_each;        /* pause after each input (the test resumes) */
    bool closed;
    char why[256];
};

static struct peer *last;   /* the last accepted */
static struct listener L;
static int port;
static char dir[64];

static size_t peer_input(struct stream *s, const char *p, size_t n)
{
    struct peer *c = (struct peer *)s;
    buf_append(&c->got, p, n);
    if (c->echo)
        stream_write(s, p, n);
    if (c->pause_each)
        stream_pause(s, 1);
    return n;
}

static void peer_closed(struct stream *s, const char *why)
{
    struct peer *c = (struct peer *)s;
    c->closed = true;
    snprintf(c->why, sizeof c->why, "%s", why);
}

static void peer_release(struct stream *s)
{
    struct peer *c = (struct peer *)s;
    buf_free(&c->got);
    if (c == last)
        last = NULL;
    free(c);
}

static const struct stream_ops peer_ops = {
    .kind = "test", .input = peer_input, .closed = peer_closed, .release = peer_release,
};

static int small_sndbuf;

static void accept_peer(struct listener *l, int fd, const char *name)
{
    struct peer *c = calloc(1, sizeof *c);
    assert_non_null(c);
    if (small_sndbuf)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small_sndbuf, sizeof small_sndbuf);
    c->st.out_limit = 64u << 20;
    stream_init(&c->st, fd, name, &peer_ops, false);
    listener_attach(l, &c->st);
    last = c;
}

/* One turn of the loop and what the broker does before it sleeps, but
 * freeing closed streams (keep: not yet, the test looks at them). */
static void turn_keep(void)
{
    ev_run(srv.loop, EVRUN_NOWAIT);
    stream_run_resumed();
    stream_flush_all();
}

static void turn(void)
{
    turn_keep();
    stream_free_dead();
}

/* Loops that wait for the other side: bounded by time, not by turns (a
 * loaded machine, or a delayed ACK, can take a while). */
#define WAIT_S 20.0
static bool waiting(ev_tstamp t0)
{
    usleep(50);
    return ev_time() - t0 < WAIT_S;
}

/* ------------------------------------------------------------ the client side */

struct client {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    struct buf got;
    bool eof;               /* close_notify received */
    bool failed;
};

static struct client *client_new(int rcvbuf)
{
    struct client *k = calloc(1, sizeof *k);
    assert_non_null(k);
    k->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(k->fd >= 0);
    if (rcvbuf)
        setsockopt(k->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(k->fd, (struct sockaddr *)&a, sizeof a), 0);
    int one = 1;
    setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(k->fd, F_SETFL, fcntl(k->fd, F_GETFL) | O_NONBLOCK);
    k->ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_mode(k->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    k->ssl = SSL_new(k->ctx);
    SSL_set_fd(k->ssl, k->fd);
    SSL_set_connect_state(k->ssl);
    /* the server must be there before anything is tried */
    for (ev_tstamp t0 = ev_time(); !last && waiting(t0);)
        turn();
    assert_non_null(last);
    return k;
}

static void client_free(struct client *k)
{
    SSL_free(k->ssl);
    SSL_CTX_free(k->ctx);
    close(k->fd);
    buf_free(&k->got);
    free(k);
}

/* Read what is there (0: nothing more now). */
static void client_read(struct client *k)
{
    char b[65536];
    for (;;) {
        int r = SSL_read(k->ssl, b, sizeof b);
        if (r > 0) {
            buf_append(&k->got, b, (size_t)r);
            continue;
        }
        int e = SSL_get_error(k->ssl, r);
        if (e == SSL_ERROR_ZERO_RETURN)
            k->eof = true;
        else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            k->failed = true;
        ERR_clear_error();
        return;
    }
}

/* Write all of p, turning the loop while the socket is full. */
static void client_write(struct client *k, const char *p, size_t n, bool read_meanwhile)
{
    size_t off = 0;
    for (ev_tstamp t0 = ev_time(); off < n;) {
        assert_true(waiting(t0));
        int r = SSL_write(k->ssl, p + off, (int)(n - off));
        if (r > 0) {
            off += (size_t)r;
            continue;
        }
        int e = SSL_get_error(k->ssl, r);
        ERR_clear_error();
        assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
        if (read_meanwhile)
            client_read(k);
        turn();
    }
}

static void handshake(struct client *k)
{
    for (ev_tstamp t0 = ev_time(); waiting(t0);) {
        int r = SSL_do_handshake(k->ssl);
        if (r == 1)
            return;
        int e = SSL_get_error(k->ssl, r);
        ERR_clear_error();
        assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
        turn();
    }
    fail_msg("no handshake");
}

/* ------------------------------------------------------------ fixtures */

static void make_cert(void)
{
    snprintf(dir, sizeof dir, "/tmp/stompd-test-tls-XXXXXX");
    assert_non_null(mkdtemp(dir));
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pk);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, name);
    /* a big first flight: more than small socket buffers hold */
    static char comment[60000];
    memset(comment, 'c', sizeof comment - 1);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_netscape_comment, comment);
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    char path[128];
    snprintf(path, sizeof path, "%s/cert.pem", dir);
    FILE *f = fopen(path, "w");
    PEM_write_X509(f, x);
    fclose(f);
    assert_int_equal(config_set_key("tls.cert", path, NULL, 0), 0);
    snprintf(path, sizeof path, "%s/key.pem", dir);
    f = fopen(path, "w");
    PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    assert_int_equal(config_set_key("tls.key", path, NULL, 0), 0);
    X509_free(x);
    EVP_PKEY_free(pk);
}

static int setup(void **state)
{
    char err[512];
    config_init_defaults();
    make_cert();
    assert_int_equal(config_set_key("stomp.tls_listen", "127.0.0.1:1", err, sizeof err), 0);
    /* generous: a loaded machine may take a while (the deadline test
     * shortens it) */
    assert_int_equal(config_set_key("tls.handshake_timeout", "60s", err, sizeof err), 0);
    srv.loop = ev_default_loop(0);
    stream_layer_init(srv.loop);
    if (tls_start(err, sizeof err) != 0)
        fail_msg("%s", err);
    L.name = "test";
    L.accept = accept_peer;
    L.secure = tls_accept_client;
    if (listener_start(&L, "127.0.0.1:0", err, sizeof err) != 0)
        fail_msg("%s", err);
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    getsockname(L.fd, (struct sockaddr *)&a, &al);
    port = ntohs(a.sin_port);
    return 0;
}

static int teardown(void **state)
{
    listener_stop(&L);
    if (last)
        stream_close(&last->st, "test over");
    stream_free_dead();
    tls_stop();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return -1;
    config_free();
    return 0;
}

static void reset(void)
{
    if (last)
        stream_close(&last->st, "next test");
    stream_free_dead();
    small_sndbuf = 0;
}

/* ------------------------------------------------------------ tests */

static char *pattern(size_t n)
{
    char *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (i * 7 + i / 977) % 26);
    return p;
}

/* Many records each way; the protocol pauses after every input, so
 * records decoded while it is paused must be offered when it resumes
 * (the socket will not say so again). */
static void test_roundtrip_with_pauses(void **state)
{
    reset();
    struct client *k = client_new(0);
    handshake(k);
    last->echo = true;
    last->pause_each = true;
    size_t n = 1u << 20;
    char *p = pattern(n);
    size_t off = 0;
    for (ev_tstamp t0 = ev_time(); buf_used(&k->got) < n;) {
        assert_true(waiting(t0));
        if (off < n) {
            size_t chunk = n - off < 50000 ? n - off : 50000;
            int r = SSL_write(k->ssl, p + off, (int)chunk);
            if (r > 0)
                off += (size_t)r;
            else
                ERR_clear_error();
        }
        turn();
        if (last->st.paused)
            stream_resume(&last->st, 1);
        client_read(k);
        assert_false(k->failed);
    }
    assert_int_equal(buf_used(&last->got), n);
    assert_memory_equal(buf_head(&last->got), p, n);
    assert_memory_equal(buf_head(&k->got), p, n);
    struct tls_stats ts;
    tls_get_stats(&ts);
    assert_true(ts.handshakes >= 1);
    free(p);
    client_free(k);
}

/* More plaintext than one read takes (64 KiB) arrives at once, then
 * nothing: the rest, decoded and held by TLS, must be read although the
 * socket stays quiet. */
static void test_more_than_one_read(void **state)
{
    reset();
    struct client *k = client_new(0);
    handshake(k);
    size_t n = 70000;
    char *p = pattern(n);
    /* records of 10000 bytes: the 7th straddles the end of the first read */
    for (size_t off = 0; off < n; off += 10000)
        client_write(k, p + off, 10000, false);
    for (ev_tstamp t0 = ev_time(); buf_used(&last->got) < n && waiting(t0);)
        turn();
    assert_int_equal(buf_used(&last->got), n);
    assert_memory_equal(buf_head(&last->got), p, n);
    free(p);
    client_free(k);
}

/* The server's first flight (a certificate of ~60 KB) does not fit in a
 * small socket buffer while the client reads nothing: its records wait in
 * the connection's buffer (tr_out, counted as the stream's output) with
 * the socket watched for room, and go on once the client reads. (SSL
 * writes into that buffer, never half a record into the socket.) */
static void test_a_flight_larger_than_the_socket_waits_for_room(void **state)
{
    reset();
    small_sndbuf = 4096;
    struct client *k = client_new(4096);
    int r = SSL_do_handshake(k->ssl); /* ClientHello */
    assert_int_equal(SSL_get_error(k->ssl, r), SSL_ERROR_WANT_READ);
    ERR_clear_error();
    bool waited = false;
    for (ev_tstamp t0 = ev_time(); !waited && waiting(t0);) {
        turn_keep();
        waited = last->st.tr_out > 0 && last->st.writing;
        if (last->closed)
            fail_msg("closed: %s", last->why);
    }
    assert_true(waited);
    assert_true(ev_is_active(&last->st.wr));
    assert_true(stream_pending(&last->st) >= last->st.tr_out);
    handshake(k);
    for (ev_tstamp t0 = ev_time(); last->st.tr_out && waiting(t0);)
        turn();
    assert_int_equal(last->st.tr_out, 0);
    last->echo = true;
    client_write(k, "hello", 5, true);
    for (ev_tstamp t0 = ev_time(); buf_used(&k->got) < 5 && waiting(t0);) {
        turn();
        client_read(k);
    }
    if (buf_used(&k->got) < 5)
        fail_msg("server got %zu, out %zu, rd %d wr %d rdw %d wrr %d closed %d failed %d", buf_used(&last->got),
                 stream_pending(&last->st), ev_is_active(&last->st.rd), ev_is_active(&last->st.wr),
                 last->st.rd_wants_wr, last->st.wr_wants_rd, last->closed, k->failed);
    assert_memory_equal(buf_head(&k->got), "hello", 5);
    client_free(k);
}

/* TLS 1.3 key updates (no renegotiation) in both directions, asked for
 * while output is queued: data goes on flowing, intact, each way. */
static void test_key_updates(void **state)
{
    reset();
    struct client *k = client_new(0);
    handshake(k);
    assert_int_equal(SSL_version(k->ssl), TLS1_3_VERSION);
    size_t n = 4u << 20;
    char *p = pattern(n);
    stream_write(&last->st, p, n);
    turn();
    assert_int_equal(SSL_key_update(k->ssl, SSL_KEY_UPDATE_REQUESTED), 1);
    client_write(k, "after the key update", 20, true);
    for (ev_tstamp t0 = ev_time(); buf_used(&k->got) < n || buf_used(&last->got) < 20;) {
        assert_true(waiting(t0));
        client_read(k);
        assert_false(k->failed);
        turn_keep();
        if (last->closed)
            fail_msg("closed: %s", last->why);
    }
    assert_memory_equal(buf_head(&k->got), p, n);
    assert_memory_equal(buf_head(&last->got), "after the key update", 20);
    /* and once more, the client's keys only, nothing queued */
    assert_int_equal(SSL_key_update(k->ssl, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    last->echo = true;
    client_write(k, "again", 5, true);
    for (ev_tstamp t0 = ev_time(); buf_used(&k->got) < n + 5 && waiting(t0);) {
        turn();
        client_read(k);
    }
    assert_memory_equal(buf_head(&k->got) + n, "again", 5);
    free(p);
    client_free(k);
}

/* A client that asks for key updates and reads nothing: the answers
 * wait in the record buffer up to a bound, then the server reads no more
 * of it until the socket takes them (the buffer grew without end,
 * 600 KiB a second; helper-78). (Such a client blocks itself: OpenSSL
 * will not let it read before its own key update is written.) */
static void test_key_updates_asked_and_never_read(void **state)
{
    reset();
    small_sndbuf = 4096;
    struct client *k = client_new(4096);
    handshake(k);
    size_t most = 0;
    bool blocked = false;
    /* until the server stops reading, then as many again: the buffer
     * stays at the bound (the client's socket may fill before) */
    int after = -1;
    for (ev_tstamp t0 = ev_time(); !blocked && after != 0 && waiting(t0); after -= after > 0) {
        /* app data between them: OpenSSL refuses 32 key updates in a row */
        if (SSL_key_update(k->ssl, SSL_KEY_UPDATE_REQUESTED) != 1 || SSL_write(k->ssl, "\n", 1) <= 0)
            blocked = true; /* the client's socket is full */
        ERR_clear_error();
        turn_keep();
        if (last->st.tr_out > most)
            most = last->st.tr_out;
        if (after < 0 && last->st.rd_wants_wr)
            after = 3000;
        if (last->closed)
            fail_msg("closed: %s", last->why);
    }
    assert_true(after >= 0);
    assert_true(most >= 64 * 1024 && most <= 64 * 1024 + 4096);
    assert_true(last->st.rd_wants_wr);
    assert_false(ev_is_active(&last->st.rd));
    /* and the client going frees it all */
    client_free(k);
    for (ev_tstamp t0 = ev_time(); !last->closed && waiting(t0);)
        turn_keep();
    assert_true(last->closed);
    turn();
}

/* Connected, never a ClientHello: closed at the deadline. */
static void set_deadline(const char *value)
{
    char err[256];
    assert_int_equal(config_set_key("tls.handshake_timeout", value, err, sizeof err), 0);
    if (tls_reload(&config, err, sizeof err) != 0)
        fail_msg("%s", err);
}

static void test_handshake_deadline(void **state)
{
    reset();
    set_deadline("300ms");
    struct tls_stats before, after;
    tls_get_stats(&before);
    struct client *k = client_new(0);
    struct peer *c = last;
    ev_tstamp t0 = ev_time();
    while (!c->closed && ev_time() - t0 < 10) {
        ev_run(srv.loop, EVRUN_ONCE);
        stream_run_resumed();
        stream_flush_all();
        if (!c->closed)
            stream_free_dead();
    }
    assert_true(c->closed);
    assert_non_null(strstr(c->why, "tls.handshake_timeout"));
    assert_true(ev_time() - t0 >= 0.25);
    stream_free_dead();
    tls_get_stats(&after);
    assert_int_equal(after.timed_out, before.timed_out + 1);
    /* the client sees the connection closed */
    char b[16];
    ssize_t r;
    t0 = ev_time();
    while ((r = recv(k->fd, b, sizeof b, 0)) < 0 && errno == EAGAIN && ev_time() - t0 < 5)
        usleep(1000);
    assert_true(r == 0 || (r < 0 && errno == ECONNRESET));
    client_free(k);
    set_deadline("60s");
}

/* The server closes after its last output: the client reads it all, then
 * the close_notify. */
static void test_close_notify(void **state)
{
    reset();
    struct client *k = client_new(0);
    handshake(k);
    stream_write(&last->st, "bye", 3);
    stream_close_after_flush(&last->st, 5.0, "done");
    for (ev_tstamp t0 = ev_time(); !k->eof && waiting(t0);) {
        turn();
        client_read(k);
    }
    assert_true(k->eof);
    assert_int_equal(buf_used(&k->got), 3);
    assert_true(SSL_get_shutdown(k->ssl) & SSL_RECEIVED_SHUTDOWN);
    client_free(k);
}

/* Plain STOMP on the TLS port: no answer, the connection closed, a
 * failure counted. */
static void test_not_tls(void **state)
{
    reset();
    struct tls_stats before, after;
    tls_get_stats(&before);
    struct client *k = client_new(0);
    struct peer *c = last;
    static const char frame[] = "CONNECT\naccept-version:1.2\n\n";
    assert_int_equal(send(k->fd, frame, sizeof frame, 0), (ssize_t)sizeof frame);
    for (ev_tstamp t0 = ev_time(); !c->closed && waiting(t0);)
        turn_keep();
    assert_true(c->closed);
    assert_non_null(strstr(c->why, "TLS handshake"));
    assert_false(c->st.cert_refused); /* no certificate was refused */
    assert_int_equal(buf_used(&c->got), 0);
    tls_get_stats(&after);
    assert_int_equal(after.failed, before.failed + 1);
    client_free(k);
}

/* A client that cannot verify the server's certificate (self-signed,
 * and it trusts no CA) ends the handshake with an alert: the stream says
 * its certificate was refused (what a replication link counts against
 * its master). */
static void test_a_certificate_refused_by_the_peer(void **state)
{
    reset();
    struct client *k = client_new(0);
    struct peer *c = last;
    SSL_set_verify(k->ssl, SSL_VERIFY_PEER, NULL);
    bool refused = false;
    for (ev_tstamp t0 = ev_time(); !c->closed && waiting(t0);) {
        int r = SSL_do_handshake(k->ssl);
        assert_int_not_equal(r, 1);
        int e = SSL_get_error(k->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            refused = SSL_get_verify_result(k->ssl) != X509_V_OK;
        ERR_clear_error();
        turn_keep();
    }
    assert_true(refused);
    assert_true(c->closed);
    assert_true(c->st.cert_refused);
    assert_non_null(strstr(c->why, "unknown ca"));
    client_free(k);
}

/* ------------------------------------------------------------ the stream alone */

/* "drained" says the output went below its low-water mark: a protocol
 * that fills and flushes again from it (the replication master's pump)
 * must not be called again by a flush the full socket took nothing of,
 * or it calls itself until the stack runs out (a master crashed so,
 * catching a slave up). */
static int drained_calls, drained_depth, drained_max_depth;

static void pump_drained(struct stream *s)
{
    drained_calls++;
    if (++drained_depth > drained_max_depth)
        drained_max_depth = drained_depth;
    if (drained_depth < 50)
        stream_flush(s); /* what the pump does: fill (nothing here) and flush */
    drained_depth--;
}

static const struct stream_ops pump_ops = {
    .kind = "test", .input = peer_input, .closed = peer_closed, .release = peer_release, .drained = pump_drained,
};

static void test_drained_waits_for_the_socket(void **state)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    struct peer *c = calloc(1, sizeof *c);
    assert_non_null(c);
    size_t n = 256u << 10;
    c->st.out_limit = n;
    c->st.low_water = n - 1024; /* any byte the socket takes goes below it */
    stream_init(&c->st, sv[0], "pair", &pump_ops, false);
    char *data = malloc(n);
    assert_non_null(data);
    memset(data, 'd', n);
    drained_calls = drained_max_depth = 0;
    stream_write(&c->st, data, n);
    stream_flush(&c->st);
    assert_true(stream_pending(&c->st) > 0);
    assert_true(stream_pending(&c->st) < n - 1024);
    /* below low water: drained, and the flush it made, into the full
     * socket, did not call it again */
    assert_int_equal(drained_calls, 1);
    assert_int_equal(drained_max_depth, 1);
    /* the peer reads: the rest goes, drained again as it goes, never
     * from within itself */
    size_t got = 0;
    ev_tstamp t0 = ev_time();
    while ((got < n || stream_pending(&c->st) > 0) && waiting(t0)) {
        ssize_t r = read(sv[1], data, n);
        if (r > 0)
            got += (size_t)r;
        turn_keep();
    }
    assert_int_equal(got, n);
    assert_int_equal(stream_pending(&c->st), 0);
    assert_true(drained_calls >= 1);
    assert_int_equal(drained_max_depth, 1);
    stream_close(&c->st, "done");
    turn();
    close(sv[1]);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_with_pauses), cmocka_unit_test(test_more_than_one_read),
        cmocka_unit_test(test_a_flight_larger_than_the_socket_waits_for_room),
        cmocka_unit_test(test_key_updates),
        cmocka_unit_test(test_key_updates_asked_and_never_read),           cmocka_unit_test(test_handshake_deadline),
        cmocka_unit_test(test_close_notify),          cmocka_unit_test(test_not_tls),
        cmocka_unit_test(test_a_certificate_refused_by_the_peer),
        cmocka_unit_test(test_drained_waits_for_the_socket),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
