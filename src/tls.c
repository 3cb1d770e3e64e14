/* TLS for streams: the broker's only file that includes OpenSSL's ssl.h.
 * Two contexts built from tls.*: the server's (every TLS listener) and
 * the client's (a slave's link to its master), swapped whole on SIGHUP.
 * A TLS stream is a stream transport (stream.h): SSL_read reads the
 * non-blocking socket, and SSL writes whole records into a buffer of the
 * connection's (a BIO of ours) that the stream drains to the socket.
 * OpenSSL cannot answer a key update (or write any record) while one is
 * half written to a socket ("bad length"), so none ever is; SSL_write is
 * called only once the buffer is empty, with WRITE_MAX bytes at most, and
 * the buffer is freed whenever it empties (an idle connection holds none).
 * A write may still need the socket readable (a handshake under way); the
 * stream watches what it asks for. The handshake has its own deadline,
 * apart from the protocol's timers. Renegotiation, compression and
 * session tickets are off: a handshake is the one at the start. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "stompd/buf.h"
#include "stompd/config.h"
#include "stompd/log.h"
#include "stompd/server.h"
#include "stompd/tls.h"

#define FAIL_LOG_EVERY 1.0 /* seconds between lines about failed handshakes */
#define WRITE_MAX (32 * 1024) /* plaintext an SSL_write takes: two records */
/* Records reading may leave unsent (key update answers) before it waits
 * for the socket: a peer asking for key updates and reading nothing
 * grew the buffer without end. */
#define READ_OUT_MAX (64 * 1024)

struct tls_conn {
    SSL *ssl;
    struct buf out;     /* records SSL wrote, for the socket */
    struct stream *s;
    ev_timer deadline;
    const char *what;   /* "STOMP", "console", "replication": for logs */
    bool done;          /* the handshake finished */
    bool kick;          /* a client whose handshake has not started */
    bool eof_behind;    /* the peer's close_notify came in the read that took its last data */
    bool failed;        /* a fatal error: no more SSL calls, no close_notify */
    char err[192];      /* ...and what it was */
};

static struct {
    SSL_CTX *server, *client;
    bool verify_clients, mutual;
    double handshake_timeout;
    struct tls_stats st;
    ev_tstamp fail_logged;
    uint64_t fail_quiet;
} T;

bool tls_enabled(void)
{
    return T.server != NULL;
}

void tls_get_stats(struct tls_stats *out)
{
    *out = T.st;
}

/* ------------------------------------------------------------ contexts */

/* The last OpenSSL error, as words. */
static const char *ssl_error(char *buf, size_t len)
{
    /* the first error is the cause ("no start line" under "PEM lib"); a
     * system call's failure (a missing certificate file) says its errno */
    unsigned long e, first = 0, sys = 0;
    while ((e = ERR_get_error()) != 0) {
        if (ERR_GET_LIB(e) == ERR_LIB_SYS && !sys)
            sys = e;
        if (!first)
            first = e;
    }
    e = first;
    if (sys) {
        snprintf(buf, len, "%s", strerror(ERR_GET_REASON(sys)));
    } else if (!e) {
        snprintf(buf, len, "%s", errno ? strerror(errno) : "unknown error");
    } else {
        const char *r = ERR_reason_error_string(e);
        if (r)
            snprintf(buf, len, "%s", r);
        else
            ERR_error_string_n(e, buf, len);
    }
    ERR_clear_error();
    return buf;
}

static void ctx_fail(SSL_CTX *ctx, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* err = what fmt says, then OpenSSL's reason; ctx is freed. */
static void ctx_fail(SSL_CTX *ctx, char *err, size_t errlen, const char *fmt, ...)
{
    char why[256];
    char head[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s: %s", head, ssl_error(why, sizeof why));
    SSL_CTX_free(ctx);
}

/* A key with a pass phrase: OpenSSL would ask for it on the terminal,
 * blocking the loop (at a SIGHUP too). None is given; the error says so
 * (asked: set while ctx_new loads the key, NULL after). */
static int no_pass_phrase(char *buf, int size, int rwflag, void *asked)
{
    (void)buf, (void)size, (void)rwflag;
    if (asked)
        *(bool *)asked = true;
    return 0;
}

/* One context from c's tls.* (server or client side). */

static SSL_CTX *ctx_new(const struct config *c, bool server, char *err, size_t errlen)
{
    ERR_clear_error();
    errno = 0;
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx) {
        ctx_fail(NULL, err, errlen, "cannot create a TLS context");
        return NULL;
    }
    int min = !strcmp(c->tls_min_version, "1.3") ? TLS1_3_VERSION : TLS1_2_VERSION;
    SSL_CTX_set_min_proto_version(ctx, min);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET |
                                 (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* a peer gone without close_notify has closed, as on a plain socket:
     * every protocol here delimits its own messages */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    /* the stream retries a write with its buffer's head, which may have
     * moved and grown; an idle connection keeps no record buffers */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (server)
        SSL_CTX_set_num_tickets(ctx, 0);
    if (SSL_CTX_set_cipher_list(ctx, c->tls_ciphers) != 1) {
        ctx_fail(ctx, err, errlen, "tls.ciphers: '%s' names no cipher this OpenSSL knows", c->tls_ciphers);
        return NULL;
    }
    bool asked = false;
    SSL_CTX_set_default_passwd_cb(ctx, no_pass_phrase);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, &asked);
    errno = 0;
    if (SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert) != 1) {
        ctx_fail(ctx, err, errlen, "tls.cert: cannot load the certificate %s", c->tls_cert);
        return NULL;
    }
    errno = 0;
    if (SSL_CTX_use_PrivateKey_file(ctx, c->tls_key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            ctx_fail(ctx, err, errlen, "tls.key: %s is not the key of tls.cert %s", c->tls_key, c->tls_cert);
        else if (asked)
            ctx_fail(ctx, err, errlen, "tls.key: %s is encrypted with a pass phrase, which stompd cannot be given: "
                     "decrypt it (openssl pkey -in KEY -out PLAIN), mode 0600", c->tls_key);
        else if (ERR_GET_LIB(ERR_peek_error()) == ERR_LIB_OSSL_DECODER)
            ctx_fail(ctx, err, errlen, "tls.key: %s holds no private key OpenSSL can read (a PEM PRIVATE KEY "
                     "block is expected)", c->tls_key);
        else
            ctx_fail(ctx, err, errlen, "tls.key: cannot load the private key %s", c->tls_key);
        return NULL;
    }
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ctx_fail(ctx, err, errlen, "tls.key: %s is not the key of tls.cert", c->tls_key);
        return NULL;
    }
    if (c->tls_ca[0]) {
        errno = 0;
        if (SSL_CTX_load_verify_locations(ctx, c->tls_ca, NULL) != 1) {
            ctx_fail(ctx, err, errlen, "tls.ca: cannot load the CA certificates %s", c->tls_ca);
            return NULL;
        }
        if (server) {
            /* tell clients which CAs their certificate must come from */
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(c->tls_ca);
            if (names)
                SSL_CTX_set_client_CA_list(ctx, names);
        }
    }
    /* the client side verifies its master when there is a CA to do it
     * with; a server's choice is per connection (tls_accept_*) */
    SSL_CTX_set_verify(ctx, !server && c->tls_ca[0] ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    ERR_clear_error();
    return ctx;
}

/* Both contexts from c, or neither. */
static int load(const struct config *c, SSL_CTX **server, SSL_CTX **client, char *err, size_t errlen)
{
    if (!c->tls_cert[0] || !c->tls_key[0]) {
        snprintf(err, errlen, "%s: tls.cert and tls.key must name this node's PEM certificate and key",
                 c->stomp_tls_listen[0] ? "stomp.tls_listen is set" : c->wss_listen[0] ? "stomp.wss_listen is set"
                 : c->http_tls ? "http.tls is set"
                 : c->store_tls ? "store.tls is set" : "TLS is in use");
        return -EINVAL;
    }
    if (c->tls_verify_clients && !c->tls_ca[0]) {
        snprintf(err, errlen, "tls.verify_clients needs tls.ca (the CA client certificates must be signed by)");
        return -EINVAL;
    }
    *server = ctx_new(c, true, err, errlen);
    if (!*server)
        return -EINVAL;
    *client = ctx_new(c, false, err, errlen);
    if (!*client) {
        SSL_CTX_free(*server);
        *server = NULL;
        return -EINVAL;
    }
    return 0;
}

static bool wanted(const struct config *c)
{
    return c->stomp_tls_listen[0] || c->wss_listen[0] || c->http_tls || c->store_tls;
}

static void use(const struct config *c, SSL_CTX *server, SSL_CTX *client)
{
    /* connections under way keep the context they were made with (each
     * SSL holds a reference) */
    SSL_CTX_free(T.server);
    SSL_CTX_free(T.client);
    T.server = server;
    T.client = client;
    T.verify_clients = c->tls_verify_clients;
    T.mutual = c->tls_ca[0] != '\0';
    T.handshake_timeout = (double)c->tls_handshake_timeout / 1000.0;
}

int tls_start(char *err, size_t errlen)
{
    if (!wanted(&config))
        return 0;
    SSL_CTX *server, *client;
    int rc = load(&config, &server, &client, err, errlen);
    if (rc)
        return rc;
    use(&config, server, client);
    log_info("TLS: certificate %s loaded (TLS %s and later)%s", config.tls_cert, config.tls_min_version,
             config.tls_ca[0] ? "; peers verified against tls.ca" : "");
    if (config.store_tls && !config.tls_ca[0])
        log_warn("TLS: store.tls without tls.ca: replication is encrypted but neither end verifies the other's "
                 "certificate (a man in the middle would not be noticed); set tls.ca for mutual verification");
    return 0;
}

void tls_stop(void)
{
    SSL_CTX_free(T.server);
    SSL_CTX_free(T.client);
    T.server = T.client = NULL;
}

int tls_reload(const struct config *next, char *err, size_t errlen)
{
    if (!tls_enabled())
        return 0; /* nothing uses TLS: the keys take effect with the listeners, at a restart */
    SSL_CTX *server, *client;
    int rc = load(next, &server, &client, err, errlen);
    if (rc)
        return rc;
    use(next, server, client);
    T.st.reloads++;
    log_info("TLS: certificate %s loaded for new connections", next->tls_cert);
    return 0;
}

/* ------------------------------------------------------------ one connection */

static void note_failure(struct tls_conn *t, const char *why)
{
    if (t->done)
        return;
    T.st.failed++;
    ev_tstamp now = ev_now(srv.loop);
    if (now - T.fail_logged < FAIL_LOG_EVERY) {
        T.fail_quiet++;
        return;
    }
    log_warn("TLS: handshake with %s (%s) failed: %s%s", t->s->peer, t->what, why,
             T.fail_quiet ? " (and more failures not logged)" : "");
    T.fail_logged = now;
    T.fail_quiet = 0;
}

static void note_progress(struct tls_conn *t)
{
    if (t->done || !SSL_is_init_finished(t->ssl))
        return;
    t->done = true;
    ev_timer_stop(srv.loop, &t->deadline);
    T.st.handshakes++;
    log_debug("TLS: %s (%s): %s, %s", t->s->peer, t->what, SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl));
}

/* Did the handshake fail on a certificate: the peer's, which this end
 * could not verify, or this end's, which the peer's alert refused? Not a
 * reset, a timeout or a protocol mismatch: what a replication link
 * counts as its master refused (repl_slave). Asked before the error
 * queue is read. */
static bool certificate_refused(const struct tls_conn *t)
{
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return false;
    int reason = ERR_GET_REASON(e);
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED)
        return SSL_get_verify_result(t->ssl) != X509_V_OK;
    switch (reason - SSL_AD_REASON_OFFSET) { /* an alert received */
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_CERTIFICATE_REQUIRED:
        return true;
    default:
        return false;
    }
}

/* What SSL_read or SSL_write's r <= 0 means to the stream. */
static ssize_t outcome(struct tls_conn *t, int r, bool reading, char *why, size_t whylen)
{
    int saved = errno;
    int e = SSL_get_error(t->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        ERR_clear_error();
        return STREAM_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        ERR_clear_error();
        return STREAM_IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        /* the peer's close_notify */
        ERR_clear_error();
        if (reading)
            return 0;
        snprintf(t->err, sizeof t->err, "the peer closed the TLS session");
        break;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && saved == 0) {
            if (reading)
                return 0; /* closed without close_notify */
            snprintf(t->err, sizeof t->err, "the peer closed the connection");
        } else if (ERR_peek_error() == 0) {
            snprintf(t->err, sizeof t->err, "TLS: %s", strerror(saved));
        } else {
            char r2[160];
            snprintf(t->err, sizeof t->err, "TLS: %s", ssl_error(r2, sizeof r2));
        }
        break;
    default: {
        char r2[160];
        t->s->cert_refused = certificate_refused(t);
        ssl_error(r2, sizeof r2);
        long v = SSL_get_verify_result(t->ssl);
        if (!t->done && v != X509_V_OK)
            snprintf(t->err, sizeof t->err, "TLS handshake: %s (%s)", r2, X509_verify_cert_error_string(v));
        else if (!t->done)
            snprintf(t->err, sizeof t->err, "TLS handshake: %s", r2);
        else
            snprintf(t->err, sizeof t->err, "TLS: %s", r2);
        break;
    }
    }
    ERR_clear_error();
    t->failed = true;
    note_failure(t, t->err);
    snprintf(why, whylen, "%s", t->err);
    return STREAM_IO_ERROR;
}

/* SSL's write side: records appended to the connection's buffer. */
static int out_write(BIO *b, const char *data, int len)
{
    buf_append(BIO_get_data(b), data, (size_t)len);
    return len;
}

static long out_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH; /* nothing else applies to a buffer */
}

static int out_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *out_method(void)
{
    static BIO_METHOD *m;
    if (!m && (!(m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "stompd records")) ||
               !BIO_meth_set_write(m, out_write) || !BIO_meth_set_ctrl(m, out_ctrl) ||
               !BIO_meth_set_create(m, out_create)))
        abort();
    return m;
}

/* Records SSL wrote, to the socket: 0 when all went, or STREAM_IO_*. */
static ssize_t tls_drain(struct stream *s, char *why, size_t whylen)
{
    struct tls_conn *t = s->tr_ctx;
    ssize_t rc = 0;
    while (buf_used(&t->out)) {
        ssize_t w = send(s->fd, buf_head(&t->out), buf_used(&t->out), MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            rc = STREAM_IO_WANT_WRITE;
            break;
        }
        if (w <= 0) {
            snprintf(why, whylen, "write error: %s", w < 0 ? strerror(errno) : "zero write");
            rc = STREAM_IO_ERROR;
            break;
        }
        buf_consume(&t->out, (size_t)w); /* freed once empty */
    }
    s->tr_out = buf_used(&t->out);
    return rc;
}

/* After a read: what SSL wrote meanwhile goes out with the next flush. */
static void written(struct stream *s)
{
    struct tls_conn *t = s->tr_ctx;
    s->tr_out = buf_used(&t->out);
    if (s->tr_out)
        stream_want_flush(s);
}

static ssize_t tls_read(struct stream *s, void *p, size_t n, char *why, size_t whylen)
{
    struct tls_conn *t = s->tr_ctx;
    if (t->failed) {
        snprintf(why, whylen, "%s", t->err);
        return STREAM_IO_ERROR;
    }
    t->kick = false;
    t->eof_behind = false;
    errno = 0;
    /* as many records as fit: one SSL_read gives at most one */
    size_t got = 0;
    int r = 0;
    while (got < n) {
        if (buf_used(&t->out) > READ_OUT_MAX) {
            /* what reading wrote waits for the socket first */
            ssize_t d = tls_drain(s, why, whylen);
            if (d == STREAM_IO_ERROR)
                return got ? (ssize_t)got : d;
            if (buf_used(&t->out) > READ_OUT_MAX) {
                if (got)
                    break;
                return STREAM_IO_WANT_WRITE;
            }
        }
        size_t want = n - got;
        r = SSL_read(t->ssl, (char *)p + got, want > INT_MAX ? INT_MAX : (int)want);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    note_progress(t);
    written(s); /* the handshake's records, a key update's answer, an alert */
    if (got > 0) {
        /* what stopped the loop comes again at the next call. A
         * close_notify read with the data has no readiness of its own to
         * bring that call (a peer waiting for ours keeps its socket open):
         * pending says there is more to read. */
        t->eof_behind = r == 0 && SSL_get_error(t->ssl, r) == SSL_ERROR_ZERO_RETURN;
        ERR_clear_error();
        return (ssize_t)got;
    }
    return outcome(t, r, true, why, whylen);
}

static ssize_t tls_write(struct stream *s, const void *p, size_t n, char *why, size_t whylen)
{
    struct tls_conn *t = s->tr_ctx;
    if (t->failed) {
        snprintf(why, whylen, "%s", t->err);
        return STREAM_IO_ERROR;
    }
    t->kick = false;
    /* into an empty buffer only: the socket takes what is there first */
    ssize_t d = tls_drain(s, why, whylen);
    if (d < 0)
        return d;
    errno = 0;
    int r = SSL_write(t->ssl, p, n > WRITE_MAX ? WRITE_MAX : (int)n);
    note_progress(t);
    s->tr_out = buf_used(&t->out); /* the flush that called drains it */
    if (r > 0)
        return r;
    ssize_t o = outcome(t, r, false, why, whylen);
    if (o == STREAM_IO_WANT_READ && s->tr_out) {
        /* a write before the handshake finished ran it: its records go
         * now, the peer waits for them before it says anything more */
        d = tls_drain(s, why, whylen);
        if (d < 0)
            return d;
    }
    return o;
}

static bool tls_pending(const struct stream *s)
{
    const struct tls_conn *t = s->tr_ctx;
    return !t->failed && (t->kick || t->eof_behind || SSL_pending(t->ssl) > 0);
}

static void tls_close(struct stream *s)
{
    struct tls_conn *t = s->tr_ctx;
    ev_timer_stop(srv.loop, &t->deadline);
    if (t->done && !t->failed) {
        /* close_notify, if the socket takes it now; no waiting for the
         * peer's */
        ERR_clear_error();
        (void)SSL_shutdown(t->ssl);
    }
    /* the close_notify, or a failed handshake's alert, if the socket
     * takes it now */
    char ignored[64];
    (void)tls_drain(s, ignored, sizeof ignored);
    SSL_free(t->ssl);
    buf_free(&t->out);
    ERR_clear_error();
    free(t);
}

static const struct stream_transport tls_transport = {
    .name = "tls",
    .read = tls_read,
    .write = tls_write,
    .pending = tls_pending,
    .close = tls_close,
    .drain = tls_drain,
};

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct tls_conn *t = (struct tls_conn *)((char *)w - offsetof(struct tls_conn, deadline));
    char why[160];
    T.st.timed_out++;
    snprintf(why, sizeof why, "TLS handshake not finished within %.1f s (tls.handshake_timeout)",
             T.handshake_timeout);
    snprintf(t->err, sizeof t->err, "%s", why);
    note_failure(t, why);
    t->failed = true; /* no close_notify in the middle of a handshake */
    /* frees t (the stream itself goes on the dead list): nothing after */
    stream_close(t->s, why);
}

static void attach(struct stream *s, SSL_CTX *ctx, bool server, int verify, const char *what)
{
    struct tls_conn *t = calloc(1, sizeof *t);
    if (!t)
        abort();
    t->ssl = SSL_new(ctx);
    BIO *rbio = BIO_new_socket(s->fd, BIO_NOCLOSE), *wbio = BIO_new(out_method());
    if (!t->ssl || !rbio || !wbio)
        abort(); /* out of memory, as everywhere else */
    BIO_set_data(wbio, &t->out);
    SSL_set_bio(t->ssl, rbio, wbio);
    if (server)
        SSL_set_accept_state(t->ssl);
    else
        SSL_set_connect_state(t->ssl);
    if (server)
        SSL_set_verify(t->ssl, verify, NULL);
    t->s = s;
    t->what = what;
    t->kick = !server;
    ev_timer_init(&t->deadline, deadline_cb, T.handshake_timeout, 0.);
    ev_timer_start(srv.loop, &t->deadline);
    stream_set_transport(s, &tls_transport, t);
}

void tls_accept_client(struct listener *l, struct stream *s)
{
    attach(s, T.server, true, T.verify_clients ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_NONE,
           l->name);
}

void tls_accept_peer(struct listener *l, struct stream *s)
{
    attach(s, T.server, true, T.mutual ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_NONE,
           l->name);
}

void tls_connect_peer(struct stream *s)
{
    attach(s, T.client, false, 0, "replication link");
}
