/*
 * pgward's native TLS layer: one TLS endpoint per socket descriptor, with the OpenSSL that Node
 * itself contains (Node exports its OpenSSL symbols to addons; nothing else is linked).
 *
 * Two parts:
 *  - tls.c: contexts (a server's chain and key; a client's sslmode rules) and connections —
 *    handshake, reads and writes of plaintext on a non-blocking descriptor, close_notify, the
 *    negotiated version and cipher, the peer certificate. No libuv and no N-API here: a caller
 *    polls `tls_fd` for what `tls_poll_events` says and calls again.
 *  - tls-endpoint.c: the N-API face (src/transport/native-tls.ts) — an endpoint that drives its
 *    connection from a uv_poll and hands plaintext to JavaScript during the login phases, and
 *    that native code (the carrier) can borrow for the relay and give back.
 */
#ifndef PGWARD_TLS_H
#define PGWARD_TLS_H

#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Returned by tls_read, tls_write, tls_handshake and tls_shutdown besides a count (the same values as io.h's IO_AGAIN/IO_ERROR). */
enum { TLS_AGAIN = -1, TLS_ERROR = -2 };

/* tls_poll_events answers with libuv's UV_READABLE / UV_WRITABLE bits. */

typedef struct tls_ctx tls_ctx_t;
typedef struct tls_conn tls_conn_t;

typedef struct {
  /* PEM: the certificate chain (leaf first) and its key; required for a server, optional for a client (sslcert/sslkey). */
  const char *cert_pem;
  size_t cert_len;
  const char *key_pem;
  size_t key_len;
  /* Decrypts an encrypted key (sslpassword); NULL when the key is not encrypted. */
  const char *passphrase;
  /* Client: PEM roots the server's chain must verify against; NULL: no verification (sslmode require). */
  const char *ca_pem;
  size_t ca_len;
  /* OpenSSL cipher names, TLS 1.3 suites and TLS 1.2 ciphers in one ':' list; NULL: OpenSSL's defaults. */
  const char *ciphers;
} tls_ctx_options_t;

/* A context, or NULL with the reason in `err`. TLS 1.2 and 1.3 only, no renegotiation, no tickets. */
tls_ctx_t *tls_server_ctx(const tls_ctx_options_t *o, char *err, size_t errlen);
tls_ctx_t *tls_client_ctx(const tls_ctx_options_t *o, char *err, size_t errlen);
void tls_ctx_ref(tls_ctx_t *ctx);
/* Each connection holds a reference: a context replaced on reload lives as long as its sessions. */
void tls_ctx_unref(tls_ctx_t *ctx);

typedef struct {
  int server;
  /* Client: the SNI host name (NULL for an IP address, as libpq). */
  const char *servername;
  /* Client, sslmode verify-full: the host name or IP address the certificate must name (libpq's rules). */
  const char *verify_host;
  /* Server, direct TLS: bytes of the ClientHello read already, replayed before the descriptor. */
  const uint8_t *prefix;
  size_t prefix_len;
  /* Server: refuse a client that does not negotiate ALPN "postgresql" (direct TLS, as PostgreSQL 17). */
  int require_alpn;
} tls_conn_options_t;

/* A connection over `fd` (non-blocking; the connection owns it from here — closes it when freed, or at once when this fails). */
tls_conn_t *tls_conn_new(tls_ctx_t *ctx, int fd, const tls_conn_options_t *o, char *err, size_t errlen);
void tls_conn_free(tls_conn_t *c);
/*
 * A connection over `fd` without TLS: every call below goes straight to the descriptor (no
 * handshake, no close_notify, no certificate), so a plain TCP socket is an endpoint too and the
 * carrier can borrow it with its poll handle kept. NULL when out of memory (`fd` is closed then).
 */
tls_conn_t *tls_plain_conn_new(int fd);
int tls_is_plain(const tls_conn_t *c);

/* Drives the handshake: 1 done, TLS_AGAIN (poll and call again), TLS_ERROR (tls_error says why). */
int tls_handshake(tls_conn_t *c);
int tls_established(const tls_conn_t *c);
/*
 * Plaintext: up to `len` bytes into `buf` — a count, 0 at the peer's close_notify or EOF,
 * TLS_AGAIN, TLS_ERROR. A read takes every whole record OpenSSL already holds, as room allows.
 */
ssize_t tls_read(tls_conn_t *c, uint8_t *buf, size_t len);
/*
 * Plaintext out: how many bytes of `buf` were taken (at most one record's worth per call),
 * TLS_AGAIN, TLS_ERROR. After TLS_AGAIN call again with the same bytes first (they may have
 * moved, and more may follow them), as OpenSSL requires.
 */
ssize_t tls_write(tls_conn_t *c, const uint8_t *buf, size_t len);
/* Sends close_notify (once): 1 sent, TLS_AGAIN, TLS_ERROR. Does not wait for the peer's. */
int tls_shutdown(tls_conn_t *c);
/* Records already read from the socket wait inside OpenSSL: a read can go on without the socket being readable. */
int tls_pending(const tls_conn_t *c);
/*
 * The descriptor events to wait for, given what the caller wants to do next (read, write). A
 * read can need the socket writable and a write readable; after an event, retry whichever
 * operation waits for it (tls_ready).
 */
int tls_poll_events(const tls_conn_t *c, int want_read, int want_write);
/* Which operations the descriptor events `events` unblock: reads, writes, the handshake or a close_notify. */
enum { TLS_READY_READ = 1, TLS_READY_WRITE = 2, TLS_READY_OTHER = 4 };
int tls_ready(const tls_conn_t *c, int events);
int tls_fd(const tls_conn_t *c);

/* Why the last operation failed: OpenSSL's reason, a verification result, or libpq's host-name wording. */
const char *tls_error(const tls_conn_t *c);
/* After the handshake: "TLSv1.3", "TLS_AES_256_GCM_SHA384", the ALPN protocol ("" if none). */
const char *tls_version(const tls_conn_t *c);
const char *tls_cipher(const tls_conn_t *c);
const char *tls_alpn(const tls_conn_t *c);
/* The peer's certificate (DER, OPENSSL_malloc'd, for tls-server-end-point): its length, 0 when none. */
int tls_peer_cert_der(const tls_conn_t *c, uint8_t **der);

/* Who owns a connection lent out (tls-endpoint.c). */
void tls_set_owner(tls_conn_t *c, void *owner);
void *tls_owner(const tls_conn_t *c);

/*
 * Lending an established endpoint to native code (the carrier): `handle` is the endpoint handle
 * JavaScript holds (NativeTlsSocket#nativeHandle). Returns its connection, or NULL when the
 * handle is not an open endpoint or has plaintext queued to write. While lent JavaScript neither
 * reads nor writes it. With `keep_polling` 0 the endpoint polls nothing: the borrower polls
 * tls_fd(conn) itself. With 1 its poll handle stays in epoll for the borrower, who must call
 * tls_endpoint_watch before the loop next polls. The borrower must not close the descriptor, and
 * calls tls_endpoint_give_back(conn) when done (the endpoint then reads, writes or closes for
 * JavaScript again, and closes if JavaScript destroyed it meanwhile).
 */
tls_conn_t *tls_endpoint_lend(napi_env env, napi_value handle, int keep_polling);
void tls_endpoint_give_back(tls_conn_t *conn);
/* Lent with keep_polling: the poll handle's events go to `cb(data, status, events)`; returns the UV_* events polled for now. */
int tls_endpoint_watch(tls_conn_t *conn, void (*cb)(void *data, int status, int events), void *data);
/* Lent with keep_polling: poll for these UV_* events (0: none) until given back. */
void tls_endpoint_poll(tls_conn_t *conn, int events);

/* Adds the TLS functions to the addon's exports (called from the module's init). */
void pgward_tls_register(napi_env env, napi_value exports);

#endif
