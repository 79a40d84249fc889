/*
 * TLS contexts (a server's chain and key; a client's sslmode rules) and the host-name check of
 * verify-full, as libpq makes it (see tls.h).
 */
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls-internal.h"

/* ---- contexts ---- */

static int passphrase_cb(char *buf, int size, int rwflag, void *u) {
  (void)rwflag;
  const char *pass = u;
  /* No passphrase: fail at once rather than let OpenSSL prompt on a terminal. */
  if (!pass) return -1;
  size_t n = strlen(pass);
  if (n > (size_t)size) n = (size_t)size;
  memcpy(buf, pass, n);
  return (int)n;
}

static int load_chain(SSL_CTX *ctx, const tls_ctx_options_t *o, char *err, size_t errlen) {
  BIO *bio = BIO_new_mem_buf(o->cert_pem, (int)o->cert_len);
  X509 *leaf = bio ? PEM_read_bio_X509_AUX(bio, NULL, passphrase_cb, NULL) : NULL;
  if (!leaf || SSL_CTX_use_certificate(ctx, leaf) != 1) {
    X509_free(leaf);
    BIO_free(bio);
    tls_set_error(err, errlen, "cannot use the certificate");
    return 0;
  }
  X509_free(leaf);
  X509 *ca;
  while ((ca = PEM_read_bio_X509(bio, NULL, passphrase_cb, NULL))) {
    if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
      X509_free(ca);
      BIO_free(bio);
      tls_set_error(err, errlen, "cannot use a chain certificate");
      return 0;
    }
  }
  /* The loop ends on "no start line" at the end of the text: not an error. */
  ERR_clear_error();
  BIO_free(bio);
  bio = BIO_new_mem_buf(o->key_pem, (int)o->key_len);
  EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, passphrase_cb, (void *)o->passphrase) : NULL;
  BIO_free(bio);
  if (!key) {
    tls_set_error(err, errlen, "cannot read the private key");
    return 0;
  }
  int ok = SSL_CTX_use_PrivateKey(ctx, key) == 1 && SSL_CTX_check_private_key(ctx) == 1;
  EVP_PKEY_free(key);
  if (!ok) tls_set_error(err, errlen, "the private key does not match the certificate");
  return ok;
}

static int load_roots(SSL_CTX *ctx, const char *pem, size_t len, char *err, size_t errlen) {
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  STACK_OF(X509_INFO) *infos = bio ? PEM_X509_INFO_read_bio(bio, NULL, passphrase_cb, NULL) : NULL;
  BIO_free(bio);
  if (!infos) {
    tls_set_error(err, errlen, "cannot read the root certificates");
    return 0;
  }
  X509_STORE *store = SSL_CTX_get_cert_store(ctx);
  int added = 0;
  for (int i = 0; i < sk_X509_INFO_num(infos); i++) {
    X509_INFO *info = sk_X509_INFO_value(infos, i);
    if (info->x509 && X509_STORE_add_cert(store, info->x509) == 1) added++;
  }
  sk_X509_INFO_pop_free(infos, X509_INFO_free);
  ERR_clear_error();
  if (!added) snprintf(err, errlen, "no certificate in the root certificates");
  return added > 0;
}

/* Node-style one list: TLS 1.3 suites (TLS_…) and TLS 1.2 ciphers apart, as OpenSSL wants them. */
static int set_ciphers(SSL_CTX *ctx, const char *list, char *err, size_t errlen) {
  size_t n = strlen(list);
  char *suites = calloc(1, n + 1), *ciphers = calloc(1, n + 1), *copy = strdup(list);
  int ok = suites && ciphers && copy;
  for (char *save = NULL, *name = ok ? strtok_r(copy, ":", &save) : NULL; name; name = strtok_r(NULL, ":", &save)) {
    char *into = strncmp(name, "TLS_", 4) == 0 ? suites : ciphers;
    if (*into) strcat(into, ":");
    strcat(into, name);
  }
  if (ok && *suites) ok = SSL_CTX_set_ciphersuites(ctx, suites) == 1;
  if (ok && *ciphers) ok = SSL_CTX_set_cipher_list(ctx, ciphers) == 1;
  free(suites);
  free(ciphers);
  free(copy);
  if (!ok) tls_set_error(err, errlen, "invalid cipher list");
  return ok;
}

static const unsigned char ALPN_POSTGRESQL[] = {10, 'p', 'o', 's', 't', 'g', 'r', 'e', 's', 'q', 'l'};

/* PostgreSQL 17's rule: "postgresql" when offered; any other offer is refused with no_application_protocol. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl;
  (void)arg;
  unsigned char *selected = NULL;
  int r = SSL_select_next_proto(&selected, outlen, ALPN_POSTGRESQL, sizeof ALPN_POSTGRESQL, in, inlen);
  if (r != OPENSSL_NPN_NEGOTIATED) return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

static tls_ctx_t *new_ctx(int server, const tls_ctx_options_t *o, char *err, size_t errlen) {
  ERR_clear_error();
  if (!tls_socket_method()) {
    tls_set_error(err, errlen, "cannot create the socket BIO");
    return NULL;
  }
  SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!ctx) {
    tls_set_error(err, errlen, "cannot create a TLS context");
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  /* No renegotiation (a read never needs a write for it), no tickets or session cache (nobody resumes; no memory per session for them). */
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF |
                               (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (server) SSL_CTX_set_num_tickets(ctx, 0);
  /* Buffers only while a record is in flight: an idle session holds none. */
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  /* One read takes as many records as the socket has (tls_read drains what OpenSSL holds). */
  SSL_CTX_set_read_ahead(ctx, 1);
  int ok = !o->ciphers || set_ciphers(ctx, o->ciphers, err, errlen);
  if (ok && o->cert_pem) ok = load_chain(ctx, o, err, errlen);
  else if (ok && server) {
    snprintf(err, errlen, "a server needs a certificate and a key");
    ok = 0;
  }
  if (ok && server) SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
  if (ok && !server) {
    ok = SSL_CTX_set_alpn_protos(ctx, ALPN_POSTGRESQL, sizeof ALPN_POSTGRESQL) == 0;
    if (!ok) tls_set_error(err, errlen, "cannot set ALPN");
  }
  if (ok && !server && o->ca_pem) {
    ok = load_roots(ctx, o->ca_pem, o->ca_len, err, errlen);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, tls_host_check);
  }
  tls_ctx_t *t = ok ? calloc(1, sizeof *t) : NULL;
  if (!t) {
    if (ok) snprintf(err, errlen, "out of memory");
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
  }
  t->ssl_ctx = ctx;
  t->refs = 1;
  return t;
}

tls_ctx_t *tls_server_ctx(const tls_ctx_options_t *o, char *err, size_t errlen) { return new_ctx(1, o, err, errlen); }
tls_ctx_t *tls_client_ctx(const tls_ctx_options_t *o, char *err, size_t errlen) { return new_ctx(0, o, err, errlen); }

void tls_ctx_ref(tls_ctx_t *ctx) { ctx->refs++; }

void tls_ctx_unref(tls_ctx_t *ctx) {
  if (--ctx->refs > 0) return;
  SSL_CTX_free(ctx->ssl_ctx);
  free(ctx);
}

/* ---- host names, as libpq checks them for verify-full ---- */

static int has_san_of_type(X509 *cert, int type) {
  GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  int found = 0;
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names) && !found; i++) found = sk_GENERAL_NAME_value(names, i)->type == type;
  GENERAL_NAMES_free(names);
  return found;
}

/* An IP literal's bytes (4 or 16) in `addr`; 0 when `host` is a name. */
static int ip_literal(const char *host, unsigned char *addr) {
  if (inet_pton(AF_INET, host, addr) == 1) return 4;
  if (inet_pton(AF_INET6, host, addr) == 1) return 16;
  return 0;
}

/*
 * libpq's rules: a host name must match a dNSName (a wildcard only as the whole leftmost label),
 * or the CN when there is no dNSName; an IP address must match an iPAddress, or a dNSName spelled
 * as it, or the CN when there is no iPAddress.
 */
static int host_matches(X509 *cert, const char *host) {
  unsigned char addr[16];
  int len = ip_literal(host, addr);
  unsigned flags = X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS;
  if (!len) return X509_check_host(cert, host, 0, flags, NULL) == 1;
  if (X509_check_ip(cert, addr, (size_t)len, 0) == 1) return 1;
  flags |= has_san_of_type(cert, GEN_IPADD) ? X509_CHECK_FLAG_NEVER_CHECK_SUBJECT : X509_CHECK_FLAG_ALWAYS_CHECK_SUBJECT;
  return X509_check_host(cert, host, 0, flags, NULL) == 1;
}

/* One name of a certificate, printable: a dNSName, an iPAddress or the CN. */
static void name_text(const GENERAL_NAME *n, char *out, size_t outlen) {
  if (n->type == GEN_DNS) {
    snprintf(out, outlen, "%.*s", ASN1_STRING_length(n->d.dNSName), (const char *)ASN1_STRING_get0_data(n->d.dNSName));
  } else {
    int len = ASN1_STRING_length(n->d.iPAddress);
    const unsigned char *p = ASN1_STRING_get0_data(n->d.iPAddress);
    if (!(len == 4 || len == 16) || !inet_ntop(len == 4 ? AF_INET : AF_INET6, p, out, (socklen_t)outlen)) snprintf(out, outlen, "?");
  }
}

/* libpq's wording for a certificate that does not name the host. */
static void describe_mismatch(tls_conn_t *c, X509 *cert) {
  char first[256] = "";
  int names = 0;
  unsigned char addr[16];
  int host_type = ip_literal(c->verify_host, addr) ? GEN_IPADD : GEN_DNS, check_cn = 1;
  GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
    const GENERAL_NAME *n = sk_GENERAL_NAME_value(sans, i);
    if (n->type != GEN_DNS && n->type != GEN_IPADD) continue;
    if (n->type == host_type) check_cn = 0;
    if (names++ == 0) name_text(n, first, sizeof first);
  }
  GENERAL_NAMES_free(sans);
  X509_NAME *subject = X509_get_subject_name(cert);
  int cn = check_cn && subject ? X509_NAME_get_index_by_NID(subject, NID_commonName, -1) : -1;
  if (cn >= 0) {
    ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, cn));
    if (names++ == 0) snprintf(first, sizeof first, "%.*s", ASN1_STRING_length(s), (const char *)ASN1_STRING_get0_data(s));
  }
  if (names == 0) snprintf(c->error, sizeof c->error, "could not get server's host name from server certificate");
  else if (names == 1) snprintf(c->error, sizeof c->error, "server certificate for \"%s\" does not match host name \"%s\"", first, c->verify_host);
  else
    snprintf(c->error, sizeof c->error, "server certificate for \"%s\" (and %d other name%s) does not match host name \"%s\"", first, names - 1,
             names == 2 ? "" : "s", c->verify_host);
  c->host_mismatch = 1;
}

/* The chain verified: the leaf must also name the host (verify-full), checked before the handshake goes on. */
int tls_host_check(int ok, X509_STORE_CTX *store) {
  if (!ok || X509_STORE_CTX_get_error_depth(store) != 0) return ok;
  SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
  tls_conn_t *c = ssl ? SSL_get_app_data(ssl) : NULL;
  if (!c || !c->verify_host) return ok;
  X509 *cert = X509_STORE_CTX_get_current_cert(store);
  if (host_matches(cert, c->verify_host)) return 1;
  describe_mismatch(c, cert);
  X509_STORE_CTX_set_error(store, X509_V_ERR_HOSTNAME_MISMATCH);
  return 0;
}
