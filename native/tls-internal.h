/* What tls.c and tls-context.c share; not for other files (they use tls.h). */
#ifndef PGWARD_TLS_INTERNAL_H
#define PGWARD_TLS_INTERNAL_H

#include <openssl/ssl.h>

#include "tls.h"

struct tls_ctx {
  SSL_CTX *ssl_ctx;
  int refs;
};

/* What an operation that returned TLS_AGAIN waits for. */
enum { OP_READ = 0, OP_WRITE = 1, OP_OTHER = 2 };

struct tls_conn {
  SSL *ssl;
  tls_ctx_t *ctx;
  int fd;
  /* direct TLS: the ClientHello bytes read before the connection existed, replayed first */
  uint8_t *prefix;
  size_t prefix_len, prefix_off;
  /* errno of the socket call that failed in the BIO */
  int sys_errno;
  int need[3];
  /* An EOF (0) or error met after a read had already returned data, reported by the next read (1: none). */
  int deferred;
  int fatal;
  int shut_sent;
  /* close_notify could not be written yet */
  int shut_blocked;
  /* set by the verify callback: `error` already says why the certificate was refused */
  int host_mismatch;
  char *verify_host;
  void *owner;
  char alpn[32];
  char error[256];
};

/* Writes `what` and OpenSSL's last reason into `err`, and empties the error queue. */
void tls_set_error(char *err, size_t errlen, const char *what);
/* The BIO that reads and writes a connection's descriptor (made once). */
BIO_METHOD *tls_socket_method(void);
/* SSL_CTX verify callback: the chain verified, the leaf must also name the host (verify-full). */
int tls_host_check(int ok, X509_STORE_CTX *store);

#endif
