/* libstompc's TLS (ssl:// brokers): the library's only file that includes
 * OpenSSL. One context per client, made when stompc_connect is given a
 * list with an ssl:// broker (the CA, certificate and key of the options),
 * and one session per connection, on the connection's non-blocking socket
 * through a BIO that writes with MSG_NOSIGNAL (a library must not let a
 * closed socket raise SIGPIPE in its caller). The broker is verified: its
 * chain against the CA, and the URI's host against its certificate.
 * Nothing here waits: a handshake, a read or a write that cannot go on
 * says which way the socket must be ready first.
 *
 * Copyright (c) 2026 the stompd authors. SPDX-License-Identifier: MIT */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "client.h"

/* ------------------------------------------------------------ the socket BIO */

static int bio_write(BIO *b, const char *p, int n)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t r = send(fd, p, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)r;
}

static int bio_read(BIO *b, char *p, int n)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t r = recv(fd, p, (size_t)n, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
    return (int)r;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *method;
static pthread_once_t method_once = PTHREAD_ONCE_INIT;

static void make_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "stompc socket");
    if (m && BIO_meth_set_write(m, bio_write) && BIO_meth_set_read(m, bio_read) && BIO_meth_set_ctrl(m, bio_ctrl) &&
        BIO_meth_set_create(m, bio_create))
        method = m;
    else
        BIO_meth_free(m);
}

/* ------------------------------------------------------------ errors */

static void ssl_reason(char *out, size_t len)
{
    /* the last error says what failed; a system call's failure (a missing
     * --ca file) says its errno, not OpenSSL 3's "system lib" (helper-97) */
    unsigned long e, last = 0, sys = 0;
    while ((e = ERR_get_error()) != 0) {
        if (ERR_GET_LIB(e) == ERR_LIB_SYS && !sys)
            sys = e;
        last = e;
    }
    const char *r = last ? ERR_reason_error_string(last) : NULL;
    if (sys)
        snprintf(out, len, "%s", strerror(ERR_GET_REASON(sys)));
    else if (r)
        snprintf(out, len, "%s", r);
    else if (last)
        ERR_error_string_n(last, out, len);
    else
        snprintf(out, len, "%s", errno ? strerror(errno) : "unknown error");
}

/* ------------------------------------------------------------ context */

int ctls_setup(struct stompc *c, char *err, size_t errlen)
{
    ctls_free(c);
    if (!uri_has_tls(&c->uri))
        return 0;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "out of memory");
        return STOMPC_ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    char why[256];
    errno = 0;
    int ok = c->tls_ca ? SSL_CTX_load_verify_locations(ctx, c->tls_ca, NULL) : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        ssl_reason(why, sizeof why);
        snprintf(err, errlen, "option tls_ca_file: cannot load %s: %s", c->tls_ca ? c->tls_ca : "the system's CAs",
                 why);
        SSL_CTX_free(ctx);
        return STOMPC_EINVAL;
    }
    if (c->tls_cert) {
        errno = 0;
        if (SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert) != 1) {
            ssl_reason(why, sizeof why);
            snprintf(err, errlen, "option tls_cert_file: cannot load %s: %s", c->tls_cert, why);
            SSL_CTX_free(ctx);
            return STOMPC_EINVAL;
        }
        const char *key = c->tls_key ? c->tls_key : c->tls_cert;
        errno = 0;
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
            ssl_reason(why, sizeof why);
            snprintf(err, errlen, "option tls_key_file: cannot use %s: %s", key, why);
            SSL_CTX_free(ctx);
            return STOMPC_EINVAL;
        }
    } else if (c->tls_key) {
        snprintf(err, errlen, "option tls_key_file needs tls_cert_file");
        SSL_CTX_free(ctx);
        return STOMPC_EINVAL;
    }
    ERR_clear_error();
    c->tls_ctx = ctx;
    return 0;
}

void ctls_free(struct stompc *c)
{
    SSL_CTX_free(c->tls_ctx);
    c->tls_ctx = NULL;
}

/* ------------------------------------------------------------ sessions */

struct ssl_st *ctls_new(struct stompc *c, int fd, const char *host, char *err, size_t errlen)
{
    pthread_once(&method_once, make_method);
    if (!c->tls_ctx || !method) {
        snprintf(err, errlen, "TLS is not set up");
        return NULL;
    }
    SSL *ssl = SSL_new(c->tls_ctx);
    BIO *bio = ssl ? BIO_new(method) : NULL;
    if (!bio) {
        SSL_free(ssl);
        ERR_clear_error();
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    BIO_set_data(bio, (void *)(intptr_t)fd);
    SSL_set_bio(ssl, bio, bio);
    SSL_set_connect_state(ssl);
    /* the certificate must name the host the URI names: an address as an
     * IP address entry, a name as a DNS entry (and SNI) */
    unsigned char ip[16];
    bool literal = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    int ok = literal ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
                     : SSL_set1_host(ssl, host) && SSL_set_tlsext_host_name(ssl, host);
    if (ok != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        snprintf(err, errlen, "cannot verify against host '%s'", host);
        return NULL;
    }
    return ssl;
}

/* What a failed SSL call means. */
static ssize_t outcome(SSL *ssl, int r, bool reading, char *err, size_t errlen)
{
    int saved = errno;
    int e = SSL_get_error(ssl, r);
    char why[256];
    switch (e) {
    case SSL_ERROR_WANT_READ:
        ERR_clear_error();
        return CTLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        ERR_clear_error();
        return CTLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        if (reading)
            return 0;
        snprintf(err, errlen, "the broker closed the TLS session");
        return CTLS_ERROR;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) {
            if (saved == 0 && reading)
                return 0;
            snprintf(err, errlen, "%s", saved ? strerror(saved) : "closed by the broker");
            return CTLS_ERROR;
        }
        break;
    default:
        break;
    }
    ssl_reason(why, sizeof why);
    long v = SSL_get_verify_result(ssl);
    if (!SSL_is_init_finished(ssl) && v != X509_V_OK)
        snprintf(err, errlen, "TLS handshake: %s (%s)", why, X509_verify_cert_error_string(v));
    else
        snprintf(err, errlen, "TLS%s: %s", SSL_is_init_finished(ssl) ? "" : " handshake", why);
    return CTLS_ERROR;
}

int ctls_handshake(struct ssl_st *ssl, char *err, size_t errlen)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(ssl);
    if (r == 1)
        return 1;
    ssize_t o = outcome(ssl, r, false, err, errlen);
    return o == CTLS_WANT_READ || o == CTLS_WANT_WRITE ? (int)o : CTLS_ERROR;
}

ssize_t ctls_read(struct ssl_st *ssl, void *p, size_t n, char *err, size_t errlen)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_read(ssl, p, n > INT_MAX ? INT_MAX : (int)n);
    return r > 0 ? r : outcome(ssl, r, true, err, errlen);
}

ssize_t ctls_write(struct ssl_st *ssl, const void *p, size_t n, char *err, size_t errlen)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_write(ssl, p, n > INT_MAX ? INT_MAX : (int)n);
    return r > 0 ? r : outcome(ssl, r, false, err, errlen);
}

bool ctls_pending(const struct ssl_st *ssl)
{
    return ssl && SSL_pending(ssl) > 0;
}

const char *ctls_version(const struct ssl_st *ssl)
{
    return ssl ? SSL_get_version(ssl) : "";
}

void ctls_close(struct ssl_st *ssl, bool notify)
{
    if (!ssl)
        return;
    if (notify && SSL_is_init_finished(ssl)) {
        ERR_clear_error();
        (void)SSL_shutdown(ssl); /* close_notify, if the socket takes it now */
    }
    SSL_free(ssl);
    ERR_clear_error();
}
