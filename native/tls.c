/*
 * TLS connections on non-blocking descriptors (see tls.h), with Node's own OpenSSL; contexts and
 * certificate checks are in tls-context.c.
 *
 * OpenSSL's error queue is shared with Node's crypto code on this thread: every entry point
 * clears it first and leaves it empty, so no stale error reaches Node.
 */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "fd-io.h"
#include "tls-internal.h"

/* ---- the socket BIO: reads and writes the descriptor, after replaying a prefix ---- */

static BIO_METHOD *socket_method;

static int socket_read(BIO *b, char *out, int len) {
  tls_conn_t *c = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (len <= 0) return 0;
  if (c->prefix) {
    size_t n = c->prefix_len - c->prefix_off;
    if (n > (size_t)len) n = (size_t)len;
    memcpy(out, c->prefix + c->prefix_off, n);
    c->prefix_off += n;
    if (c->prefix_off == c->prefix_len) {
      free(c->prefix);
      c->prefix = NULL;
    }
    return (int)n;
  }
  ssize_t n = fd_read(c->fd, out, (size_t)len);
  if (n >= 0) return (int)n;
  if (fd_would_block()) BIO_set_retry_read(b);
  else c->sys_errno = errno;
  return -1;
}

static int socket_write(BIO *b, const char *in, int len) {
  tls_conn_t *c = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  ssize_t n = fd_send(c->fd, in, (size_t)len);
  if (n >= 0) return (int)n;
  if (fd_would_block()) BIO_set_retry_write(b);
  else c->sys_errno = errno;
  return -1;
}

static long socket_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)b;
  (void)num;
  (void)ptr;
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int socket_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

BIO_METHOD *tls_socket_method(void) {
  if (socket_method) return socket_method;
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "pgward socket");
  if (!m) return NULL;
  BIO_meth_set_read(m, socket_read);
  BIO_meth_set_write(m, socket_write);
  BIO_meth_set_ctrl(m, socket_ctrl);
  BIO_meth_set_create(m, socket_create);
  socket_method = m;
  return m;
}

/* ---- errors ---- */

void tls_set_error(char *err, size_t errlen, const char *what) {
  unsigned long e = ERR_peek_last_error();
  const char *reason = e ? ERR_reason_error_string(e) : NULL;
  if (reason) snprintf(err, errlen, "%s: %s", what, reason);
  else snprintf(err, errlen, "%s", what);
  ERR_clear_error();
}

/* Why the handshake or a transfer failed, in `c->error`. */
static void describe_failure(tls_conn_t *c) {
  if (c->host_mismatch) {
    ERR_clear_error();
    return;
  }
  unsigned long e = ERR_peek_error();
  long verify = SSL_get_verify_result(c->ssl);
  if (ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED && verify != X509_V_OK) {
    snprintf(c->error, sizeof c->error, "certificate verify failed: %s", X509_verify_cert_error_string(verify));
  } else if (e) {
    const char *reason = ERR_reason_error_string(e);
    if (reason) snprintf(c->error, sizeof c->error, "%s", reason);
    else snprintf(c->error, sizeof c->error, "TLS error %lu", e);
  } else {
    snprintf(c->error, sizeof c->error, "TLS protocol error");
  }
  ERR_clear_error();
}

/* Classifies a failed SSL call: TLS_AGAIN (and what it waits for), 0 for the peer's EOF, or TLS_ERROR. */
static int failed(tls_conn_t *c, int r, int op) {
  switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
      c->need[op] = UV_READABLE;
      ERR_clear_error();
      return TLS_AGAIN;
    case SSL_ERROR_WANT_WRITE:
      c->need[op] = UV_WRITABLE;
      ERR_clear_error();
      return TLS_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
      ERR_clear_error();
      return 0;
    case SSL_ERROR_SYSCALL:
      if (c->sys_errno) {
        snprintf(c->error, sizeof c->error, "%s", strerror(c->sys_errno));
        errno = c->sys_errno;
        c->fatal = 1;
        ERR_clear_error();
        return TLS_ERROR;
      }
      /* No socket error and no reason queued: the peer closed the connection. */
      if (ERR_peek_error() == 0) return 0;
      break;
    default:
      break;
  }
  describe_failure(c);
  errno = EPROTO;
  c->fatal = 1;
  return TLS_ERROR;
}

/* ---- connections ---- */

tls_conn_t *tls_conn_new(tls_ctx_t *ctx, int fd, const tls_conn_options_t *o, char *err, size_t errlen) {
  ERR_clear_error();
  tls_conn_t *c = calloc(1, sizeof *c);
  SSL *ssl = c ? SSL_new(ctx->ssl_ctx) : NULL;
  BIO *bio = ssl ? BIO_new(tls_socket_method()) : NULL;
  if (!bio) {
    tls_set_error(err, errlen, "cannot create a TLS connection");
    SSL_free(ssl);
    free(c);
    close(fd);
    return NULL;
  }
  c->ssl = ssl;
  c->ctx = ctx;
  tls_ctx_ref(ctx);
  c->fd = fd;
  c->deferred = 1;
  c->need[OP_READ] = UV_READABLE;
  c->need[OP_WRITE] = UV_WRITABLE;
  /* A client speaks first (its ClientHello), a server listens first — unless it holds the ClientHello already. */
  c->need[OP_OTHER] = o->server && o->prefix_len == 0 ? UV_READABLE : UV_WRITABLE;
  BIO_set_data(bio, c);
  SSL_set_bio(ssl, bio, bio);
  SSL_set_app_data(ssl, c);
  int ok = 1;
  if (o->prefix_len > 0) {
    ok = (c->prefix = malloc(o->prefix_len)) != NULL;
    if (ok) memcpy(c->prefix, o->prefix, o->prefix_len);
    c->prefix_len = o->prefix_len;
  }
  if (ok && o->verify_host) ok = (c->verify_host = strdup(o->verify_host)) != NULL;
  if (ok && o->servername) ok = SSL_set_tlsext_host_name(ssl, o->servername) == 1;
  if (!ok) {
    tls_set_error(err, errlen, "cannot set up the TLS connection");
    tls_conn_free(c);
    return NULL;
  }
  if (o->server) SSL_set_accept_state(ssl);
  else SSL_set_connect_state(ssl);
  return c;
}

/*
 * A connection without TLS (tls.h, tls_plain_conn_new): the same endpoint, lending and carrier
 * code serves a plain TCP socket, each call going straight to the descriptor.
 */
tls_conn_t *tls_plain_conn_new(int fd) {
  tls_conn_t *c = calloc(1, sizeof *c);
  if (!c) {
    close(fd);
    return NULL;
  }
  c->fd = fd;
  /* What tls_poll_events answers; a plain connection never waits for anything else. */
  c->need[OP_READ] = UV_READABLE;
  c->need[OP_WRITE] = UV_WRITABLE;
  return c;
}

int tls_is_plain(const tls_conn_t *c) { return c->ssl == NULL; }

/* A failed read or write on a plain connection: TLS_AGAIN, or TLS_ERROR with the reason kept. */
static ssize_t plain_failed(tls_conn_t *c) {
  if (fd_would_block()) return TLS_AGAIN;
  int e = errno;
  snprintf(c->error, sizeof c->error, "%s", strerror(e));
  c->fatal = 1;
  errno = e;
  return TLS_ERROR;
}

static ssize_t plain_read(tls_conn_t *c, uint8_t *buf, size_t len) {
  if (c->fatal) return TLS_ERROR;
  ssize_t n = fd_read(c->fd, buf, len);
  return n >= 0 ? n : plain_failed(c);
}

static ssize_t plain_write(tls_conn_t *c, const uint8_t *buf, size_t len) {
  if (c->fatal) return TLS_ERROR;
  if (len == 0) return 0;
  ssize_t n = fd_send(c->fd, buf, len);
  return n >= 0 ? n : plain_failed(c);
}

void tls_conn_free(tls_conn_t *c) {
  if (!c) return;
  SSL_free(c->ssl);
  if (c->ctx) tls_ctx_unref(c->ctx);
  if (c->fd >= 0) close(c->fd);
  free(c->prefix);
  free(c->verify_host);
  free(c);
  ERR_clear_error();
}

int tls_handshake(tls_conn_t *c) {
  if (c->fatal) return TLS_ERROR;
  if (!c->ssl) return 1;
  ERR_clear_error();
  c->sys_errno = 0;
  int r = SSL_do_handshake(c->ssl);
  if (r == 1) {
    const unsigned char *p;
    unsigned int n;
    SSL_get0_alpn_selected(c->ssl, &p, &n);
    snprintf(c->alpn, sizeof c->alpn, "%.*s", (int)n, p ? (const char *)p : "");
    return 1;
  }
  int k = failed(c, r, OP_OTHER);
  if (k != 0) return k;
  snprintf(c->error, sizeof c->error, "the peer closed the connection during the TLS handshake");
  c->fatal = 1;
  return TLS_ERROR;
}

int tls_established(const tls_conn_t *c) { return !c->ssl || SSL_is_init_finished(c->ssl); }

ssize_t tls_read(tls_conn_t *c, uint8_t *buf, size_t len) {
  if (!c->ssl) return plain_read(c, buf, len);
  if (c->deferred != 1) {
    int d = c->deferred;
    return d == 0 ? 0 : TLS_ERROR;
  }
  if (c->fatal) return TLS_ERROR;
  ERR_clear_error();
  c->sys_errno = 0;
  size_t total = 0;
  while (total < len) {
    size_t n = 0;
    int r = SSL_read_ex(c->ssl, buf + total, len - total, &n);
    if (r == 1) {
      total += n;
      c->need[OP_READ] = UV_READABLE;
      /* Whole records already read (read-ahead) would otherwise wait for a readiness that never comes. */
      if (!SSL_has_pending(c->ssl)) break;
      continue;
    }
    int k = failed(c, r, OP_READ);
    if (total == 0) return k;
    if (k != TLS_AGAIN) c->deferred = k;
    break;
  }
  return (ssize_t)total;
}

ssize_t tls_write(tls_conn_t *c, const uint8_t *buf, size_t len) {
  if (!c->ssl) return plain_write(c, buf, len);
  if (c->fatal) return TLS_ERROR;
  if (len == 0) return 0;
  ERR_clear_error();
  c->sys_errno = 0;
  size_t n = 0;
  int r = SSL_write_ex(c->ssl, buf, len, &n);
  if (r == 1) {
    c->need[OP_WRITE] = UV_WRITABLE;
    return (ssize_t)n;
  }
  int k = failed(c, r, OP_WRITE);
  if (k == 0) {
    snprintf(c->error, sizeof c->error, "the peer closed the connection");
    errno = EPIPE;
    return TLS_ERROR;
  }
  return k;
}

int tls_shutdown(tls_conn_t *c) {
  if (c->shut_sent) return 1;
  /* After a fatal error OpenSSL forbids SSL_shutdown; before the handshake there is nothing to close politely. */
  if (c->fatal || !c->ssl || !SSL_is_init_finished(c->ssl)) {
    c->shut_sent = 1;
    return 1;
  }
  ERR_clear_error();
  c->sys_errno = 0;
  int r = SSL_shutdown(c->ssl);
  c->shut_blocked = 0;
  if (r >= 0) {
    c->shut_sent = 1;
    return 1;
  }
  int k = failed(c, r, OP_OTHER);
  if (k == TLS_AGAIN) {
    c->shut_blocked = 1;
    return k;
  }
  c->shut_sent = 1;
  return k == 0 ? 1 : TLS_ERROR;
}

int tls_pending(const tls_conn_t *c) { return c->ssl && (c->deferred != 1 || c->prefix != NULL || SSL_has_pending(c->ssl)); }

int tls_poll_events(const tls_conn_t *c, int want_read, int want_write) {
  if (c->ssl && !SSL_is_init_finished(c->ssl)) return c->need[OP_OTHER];
  return (want_read ? c->need[OP_READ] : 0) | (want_write ? c->need[OP_WRITE] : 0) | (c->shut_blocked ? c->need[OP_OTHER] : 0);
}

int tls_ready(const tls_conn_t *c, int events) {
  if (c->ssl && !SSL_is_init_finished(c->ssl)) return (events & c->need[OP_OTHER]) ? TLS_READY_OTHER : 0;
  return ((events & c->need[OP_READ]) ? TLS_READY_READ : 0) | ((events & c->need[OP_WRITE]) ? TLS_READY_WRITE : 0) |
         (c->shut_blocked && (events & c->need[OP_OTHER]) ? TLS_READY_OTHER : 0);
}

int tls_fd(const tls_conn_t *c) { return c->fd; }
const char *tls_error(const tls_conn_t *c) { return c->error[0] ? c->error : "TLS error"; }
const char *tls_version(const tls_conn_t *c) { return c->ssl ? SSL_get_version(c->ssl) : ""; }

const char *tls_cipher(const tls_conn_t *c) {
  const SSL_CIPHER *cipher = c->ssl ? SSL_get_current_cipher(c->ssl) : NULL;
  return cipher ? SSL_CIPHER_get_name(cipher) : "";
}

const char *tls_alpn(const tls_conn_t *c) { return c->alpn; }

int tls_peer_cert_der(const tls_conn_t *c, uint8_t **der) {
  X509 *peer = c->ssl ? SSL_get0_peer_certificate(c->ssl) : NULL;
  *der = NULL;
  if (!peer) return 0;
  int n = i2d_X509(peer, der);
  ERR_clear_error();
  return n > 0 ? n : 0;
}

void tls_set_owner(tls_conn_t *c, void *owner) { c->owner = owner; }
void *tls_owner(const tls_conn_t *c) { return c->owner; }
