/*
 * The native TLS layer's N-API functions, under the addon's `tls` export (see
 * src/transport/native-tls.ts): contexts, endpoints, and a count for leak checks.
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tls-endpoint.h"

static const napi_type_tag CONTEXT_TAG = {0x7067776172645f74ULL, 0x6c735f636f6e7478ULL};

#define ARGS(n)                                                       \
  size_t argc = (n);                                                  \
  napi_value argv[(n) > 0 ? (n) : 1];                                 \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);               \
  if (argc < (n)) {                                                   \
    napi_throw_type_error(env, NULL, "pgward tls: missing arguments"); \
    return NULL;                                                      \
  }

/* A Buffer or Uint8Array argument's bytes; NULL (len 0) for null or undefined. */
static const uint8_t *bytes_arg(napi_env env, napi_value v, size_t *len) {
  void *data = NULL;
  napi_typedarray_type type;
  *len = 0;
  if (napi_get_typedarray_info(env, v, &type, len, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    *len = 0;
    return NULL;
  }
  return data;
}

/* A string argument, malloc'd (the caller frees it); NULL for anything else. */
static char *string_arg(napi_env env, napi_value v) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (s) napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

static napi_value string_value(napi_env env, const char *s) {
  napi_value out;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &out);
  return out;
}

static napi_value int_value(napi_env env, int64_t v) {
  napi_value out;
  napi_create_int64(env, v, &out);
  return out;
}

static endpoint_t *endpoint_arg(napi_env env, napi_value v) {
  endpoint_t *ep = endpoint_of(env, v);
  if (!ep) napi_throw_type_error(env, NULL, "expected a native TLS endpoint handle");
  return ep;
}

static void finalize_context(napi_env env, void *data, void *hint) { tls_ctx_unref(data); }

static napi_value context_value(napi_env env, tls_ctx_t *ctx, const char *err) {
  napi_value out;
  if (!ctx) {
    napi_throw_error(env, NULL, err);
    return NULL;
  }
  napi_create_external(env, ctx, finalize_context, NULL, &out);
  napi_type_tag_object(env, out, &CONTEXT_TAG);
  return out;
}

/* serverContext(chainPem, keyPem, ciphers | null) → context */
static napi_value server_context(napi_env env, napi_callback_info info) {
  ARGS(3);
  tls_ctx_options_t o = {0};
  o.cert_pem = (const char *)bytes_arg(env, argv[0], &o.cert_len);
  o.key_pem = (const char *)bytes_arg(env, argv[1], &o.key_len);
  char *ciphers = string_arg(env, argv[2]);
  o.ciphers = ciphers;
  char err[256] = "";
  tls_ctx_t *ctx = tls_server_ctx(&o, err, sizeof err);
  free(ciphers);
  return context_value(env, ctx, err);
}

/* clientContext(rootsPem | null, chainPem | null, keyPem | null, passphrase | null, ciphers | null) → context */
static napi_value client_context(napi_env env, napi_callback_info info) {
  ARGS(5);
  tls_ctx_options_t o = {0};
  o.ca_pem = (const char *)bytes_arg(env, argv[0], &o.ca_len);
  o.cert_pem = (const char *)bytes_arg(env, argv[1], &o.cert_len);
  o.key_pem = (const char *)bytes_arg(env, argv[2], &o.key_len);
  char *passphrase = string_arg(env, argv[3]), *ciphers = string_arg(env, argv[4]);
  o.passphrase = passphrase;
  o.ciphers = ciphers;
  char err[256] = "";
  tls_ctx_t *ctx = tls_client_ctx(&o, err, sizeof err);
  if (passphrase) {
    memset(passphrase, 0, strlen(passphrase));
    free(passphrase);
  }
  free(ciphers);
  return context_value(env, ctx, err);
}

static void finalize_endpoint(napi_env env, void *data, void *hint) { endpoint_finalize(data); }

/* The JavaScript handle of a new endpoint, or a thrown Error saying why there is none. */
static napi_value endpoint_value(napi_env env, endpoint_t *ep, const char *err) {
  if (!ep) {
    napi_throw_error(env, NULL, err);
    return NULL;
  }
  napi_value handle;
  napi_create_external(env, ep, finalize_endpoint, NULL, &handle);
  napi_type_tag_object(env, handle, &ENDPOINT_TAG);
  return handle;
}

/* open(context, fd, server, servername | null, verifyHost | null, prefix | null, callback) → endpoint */
static napi_value open_endpoint(napi_env env, napi_callback_info info) {
  ARGS(7);
  bool tagged = false, server = false;
  void *ctx = NULL;
  if (napi_check_object_type_tag(env, argv[0], &CONTEXT_TAG, &tagged) != napi_ok || !tagged || napi_get_value_external(env, argv[0], &ctx) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a native TLS context");
    return NULL;
  }
  int32_t fd = -1;
  napi_get_value_int32(env, argv[1], &fd);
  napi_get_value_bool(env, argv[2], &server);
  tls_conn_options_t o = {0};
  o.server = server;
  char *servername = string_arg(env, argv[3]), *verify_host = string_arg(env, argv[4]);
  o.servername = servername;
  o.verify_host = verify_host;
  o.prefix = bytes_arg(env, argv[5], &o.prefix_len);
  char err[256] = "";
  int own = dup(fd);
  endpoint_t *ep = NULL;
  if (own < 0) snprintf(err, sizeof err, "dup: %s", strerror(errno));
  else ep = endpoint_open(env, ctx, own, &o, argv[6], err, sizeof err);
  free(servername);
  free(verify_host);
  return endpoint_value(env, ep, err);
}

/* openPlain(fd, callback) → endpoint: a plain TCP socket as an endpoint (no TLS), open at once */
static napi_value open_plain_endpoint(napi_env env, napi_callback_info info) {
  ARGS(2);
  int32_t fd = -1;
  napi_get_value_int32(env, argv[0], &fd);
  char err[256] = "";
  int own = fd >= 0 ? dup(fd) : -1;
  endpoint_t *ep = NULL;
  if (own < 0) snprintf(err, sizeof err, "dup: %s", strerror(fd >= 0 ? errno : EBADF));
  else ep = endpoint_open_plain(env, own, argv[1], err, sizeof err);
  return endpoint_value(env, ep, err);
}

/* setReading(endpoint, on) */
static napi_value set_reading(napi_env env, napi_callback_info info) {
  ARGS(2);
  endpoint_t *ep = endpoint_arg(env, argv[0]);
  bool on = false;
  napi_get_value_bool(env, argv[1], &on);
  if (ep) endpoint_set_reading(ep, on);
  return NULL;
}

/* write(endpoint, bytes) → 1 written, 0 queued (a drain event follows), -1 failed (see error()) */
static napi_value write_plain(napi_env env, napi_callback_info info) {
  ARGS(2);
  endpoint_t *ep = endpoint_arg(env, argv[0]);
  size_t len;
  const uint8_t *p = bytes_arg(env, argv[1], &len);
  return ep ? int_value(env, endpoint_write(ep, p, len)) : NULL;
}

/* end(endpoint) → 1 close_notify and FIN sent, 0 a finished event follows, -1 failed */
static napi_value end_endpoint(napi_env env, napi_callback_info info) {
  ARGS(1);
  endpoint_t *ep = endpoint_arg(env, argv[0]);
  return ep ? int_value(env, endpoint_end(ep)) : NULL;
}

/* close(endpoint): now, or when native code gives a lent endpoint back */
static napi_value close_endpoint(napi_env env, napi_callback_info info) {
  ARGS(1);
  endpoint_t *ep = endpoint_arg(env, argv[0]);
  if (ep) endpoint_close(ep);
  return NULL;
}

/* info(endpoint) → { version, cipher, alpn } */
static napi_value endpoint_info(napi_env env, napi_callback_info info) {
  ARGS(1);
  endpoint_t *ep = endpoint_arg(env, argv[0]);
  if (!ep) return NULL;
  napi_value out;
  napi_create_object(env, &out);
  if (ep->conn && ep->state != EP_HANDSHAKE) {
    napi_set_named_property(env, out, "version", string_value(env, tls_version(ep->conn)));
    napi_set_named_property(env, out, "cipher", string_value(env, tls_cipher(ep->conn)));
    napi_set_named_property(env, out, "alpn", string_value(env, tls_alpn(ep->conn)));
  }
  return out;
}

/* peerCertificate(endpoint) → the peer's certificate (DER), or undefined */
static napi_value peer_certificate(napi_env env, napi_callback_info info) {
  ARGS(1);
  endpoint_t *ep = endpoint_arg(env, argv[0]);
  if (!ep || !ep->conn) return NULL;
  uint8_t *der = NULL;
  int n = tls_peer_cert_der(ep->conn, &der);
  if (n <= 0) return NULL;
  napi_value out;
  void *copy;
  napi_create_buffer_copy(env, (size_t)n, der, &copy, &out);
  OPENSSL_free(der);
  return out;
}

/* error(endpoint) → why the last operation failed */
static napi_value endpoint_error(napi_env env, napi_callback_info info) {
  ARGS(1);
  endpoint_t *ep = endpoint_arg(env, argv[0]);
  if (!ep) return NULL;
  return string_value(env, ep->conn ? tls_error(ep->conn) : "closed");
}

/*
 * The lending contract of tls.h, as native code (the carrier) uses it, for JavaScript's tests of
 * it: lend(endpoint) → loan | undefined; loanRead(loan) → Buffer, or 0 at EOF, TLS_AGAIN,
 * TLS_ERROR; loanWrite(loan, bytes) → bytes taken, TLS_AGAIN, TLS_ERROR; loanEvents(loan,
 * wantRead, wantWrite) → the UV_* events to poll for; giveBack(loan).
 */
typedef struct {
  tls_conn_t *conn;
} loan_t;

static const napi_type_tag LOAN_TAG = {0x7067776172645f74ULL, 0x6c735f6c6f616e73ULL};

static void finalize_loan(napi_env env, void *data, void *hint) {
  loan_t *loan = data;
  /* Collected without giveBack: the endpoint would stay lent for good. */
  if (loan->conn) tls_endpoint_give_back(loan->conn);
  free(loan);
}

static loan_t *loan_arg(napi_env env, napi_value v) {
  bool tagged = false;
  void *data = NULL;
  if (napi_check_object_type_tag(env, v, &LOAN_TAG, &tagged) != napi_ok || !tagged || napi_get_value_external(env, v, &data) != napi_ok ||
      !((loan_t *)data)->conn) {
    napi_throw_type_error(env, NULL, "expected a TLS loan not given back");
    return NULL;
  }
  return data;
}

static napi_value lend(napi_env env, napi_callback_info info) {
  ARGS(1);
  tls_conn_t *conn = tls_endpoint_lend(env, argv[0], 0);
  loan_t *loan = conn ? malloc(sizeof *loan) : NULL;
  if (!loan) {
    if (conn) tls_endpoint_give_back(conn);
    return NULL;
  }
  loan->conn = conn;
  napi_value out;
  napi_create_external(env, loan, finalize_loan, NULL, &out);
  napi_type_tag_object(env, out, &LOAN_TAG);
  return out;
}

static napi_value loan_read(napi_env env, napi_callback_info info) {
  ARGS(1);
  loan_t *loan = loan_arg(env, argv[0]);
  if (!loan) return NULL;
  uint8_t buf[16 * 1024];
  ssize_t n = tls_read(loan->conn, buf, sizeof buf);
  if (n <= 0) return int_value(env, n);
  napi_value out;
  void *copy;
  napi_create_buffer_copy(env, (size_t)n, buf, &copy, &out);
  return out;
}

static napi_value loan_write(napi_env env, napi_callback_info info) {
  ARGS(2);
  loan_t *loan = loan_arg(env, argv[0]);
  size_t len;
  const uint8_t *p = bytes_arg(env, argv[1], &len);
  return loan ? int_value(env, tls_write(loan->conn, p, len)) : NULL;
}

static napi_value loan_events(napi_env env, napi_callback_info info) {
  ARGS(3);
  loan_t *loan = loan_arg(env, argv[0]);
  bool want_read = false, want_write = false;
  napi_get_value_bool(env, argv[1], &want_read);
  napi_get_value_bool(env, argv[2], &want_write);
  return loan ? int_value(env, tls_poll_events(loan->conn, want_read, want_write)) : NULL;
}

static napi_value give_back(napi_env env, napi_callback_info info) {
  ARGS(1);
  loan_t *loan = loan_arg(env, argv[0]);
  if (!loan) return NULL;
  tls_conn_t *conn = loan->conn;
  loan->conn = NULL;
  tls_endpoint_give_back(conn);
  return NULL;
}

/* live() → endpoints allocated (open, or closed and not yet collected) */
static napi_value live(napi_env env, napi_callback_info info) { return int_value(env, live_endpoints); }

void pgward_tls_register(napi_env env, napi_value exports) {
  const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {{"serverContext", server_context}, {"clientContext", client_context}, {"open", open_endpoint}, {"openPlain", open_plain_endpoint}, {"setReading", set_reading},
             {"write", write_plain},            {"end", end_endpoint},            {"close", close_endpoint}, {"info", endpoint_info},
             {"peerCertificate", peer_certificate}, {"error", endpoint_error}, {"live", live},
             {"lend", lend}, {"loanRead", loan_read}, {"loanWrite", loan_write}, {"loanEvents", loan_events}, {"giveBack", give_back}};
  napi_value tls;
  napi_create_object(env, &tls);
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, tls, fns[i].name, f);
  }
  napi_value version;
  napi_create_string_utf8(env, OPENSSL_VERSION_TEXT, NAPI_AUTO_LENGTH, &version);
  napi_set_named_property(env, tls, "openssl", version);
  napi_set_named_property(env, exports, "tls", tls);
}
