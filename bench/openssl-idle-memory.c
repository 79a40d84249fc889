/*
 * What OpenSSL itself keeps for an idle TLS connection: the floor under issue 20's memory target.
 *
 * A pgward session with TLS on both hops holds two OpenSSL connections: one as the server (the
 * client's hop) and one as the client (the backend's hop). This program opens N pairs of them
 * over socketpairs in one process, with the settings native/tls-context.c uses (no tickets, no
 * session cache, SSL_MODE_RELEASE_BUFFERS, read-ahead), completes each handshake, sends one small
 * record each way (as a login does), and reads glibc's count of bytes in use before and after.
 * Freeing the client sides then splits the figure between the two roles. Nothing of pgward is in
 * it: it is what any program holding these connections pays.
 *
 *   cc -O2 bench/openssl-idle-memory.c -o /tmp/openssl-idle-memory -lssl -lcrypto
 *   /tmp/openssl-idle-memory CERT_CHAIN.pem KEY.pem [CA.pem] [1.2]
 *
 * With CA.pem the client side verifies the server's chain (sslmode verify-ca/verify-full keep the
 * verified chain); `1.2` caps the version at TLS 1.2. Needs OpenSSL's headers (libssl-dev); use
 * the OpenSSL version Node has (`node -p process.versions.openssl`) for a figure that applies.
 */
#include <malloc.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PAIRS 1000

static size_t bytes_in_use(void) {
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

static SSL_CTX *context(int server, const char *chain, const char *key, const char *ca, int max_version) {
  SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!ctx) return NULL;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, max_version);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (server) SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_read_ahead(ctx, 1);
  if (server && (SSL_CTX_use_certificate_chain_file(ctx, chain) != 1 || SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)) {
    SSL_CTX_free(ctx);
    return NULL;
  }
  if (!server && ca) {
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
      SSL_CTX_free(ctx);
      return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  }
  return ctx;
}

/* Both ends of one connection, handshaken and past one record each way; 0 on failure. */
static int open_pair(SSL_CTX *server_ctx, SSL_CTX *client_ctx, SSL **server, SSL **client) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) != 0) return 0;
  *server = SSL_new(server_ctx);
  *client = SSL_new(client_ctx);
  SSL_set_fd(*server, fds[0]);
  SSL_set_fd(*client, fds[1]);
  SSL_set_accept_state(*server);
  SSL_set_connect_state(*client);
  int done = 0;
  for (int step = 0; step < 50 && !done; step++) done = (SSL_do_handshake(*client) == 1) & (SSL_do_handshake(*server) == 1);
  char buf[64];
  int ok = done && SSL_write(*client, "Q", 1) == 1 && SSL_read(*server, buf, sizeof buf) == 1 &&
           SSL_write(*server, "Z", 1) == 1 && SSL_read(*client, buf, sizeof buf) == 1;
  return ok;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s CERT_CHAIN.pem KEY.pem [CA.pem|-] [1.2]\n", argv[0]);
    return 2;
  }
  const char *ca = argc > 3 && strcmp(argv[3], "-") != 0 ? argv[3] : NULL;
  int max_version = argc > 4 && strcmp(argv[4], "1.2") == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
  SSL_CTX *server_ctx = context(1, argv[1], argv[2], NULL, max_version);
  SSL_CTX *client_ctx = context(0, NULL, NULL, ca, max_version);
  if (!server_ctx || !client_ctx) {
    ERR_print_errors_fp(stderr);
    return 1;
  }
  static SSL *servers[PAIRS], *clients[PAIRS];
  SSL *warm_server, *warm_client;
  /* One pair first, so what is made once per process (provider caches, error strings) is not counted. */
  if (!open_pair(server_ctx, client_ctx, &warm_server, &warm_client)) {
    ERR_print_errors_fp(stderr);
    return 1;
  }
  size_t before = bytes_in_use();
  for (int i = 0; i < PAIRS; i++) {
    if (!open_pair(server_ctx, client_ctx, &servers[i], &clients[i])) {
      ERR_print_errors_fp(stderr);
      return 1;
    }
  }
  size_t both = bytes_in_use();
  for (int i = 0; i < PAIRS; i++) SSL_free(clients[i]);
  size_t servers_only = bytes_in_use();
  printf("OpenSSL %s, %s, client %s: per connection pair %.1f KiB (server side %.1f, client side %.1f), %d pairs\n",
         OpenSSL_version(OPENSSL_VERSION_STRING), SSL_get_version(servers[0]), ca ? "verifying" : "not verifying",
         (double)(both - before) / 1024 / PAIRS, (double)(servers_only - before) / 1024 / PAIRS,
         (double)(both - servers_only) / 1024 / PAIRS, PAIRS);
  return 0;
}
