/* The endpoint shared by tls-endpoint.c (its life on the loop) and tls-binding.c (its N-API functions). */
#ifndef PGWARD_TLS_ENDPOINT_H
#define PGWARD_TLS_ENDPOINT_H

#include <stdint.h>
#include <uv.h>

#include "tls.h"

/* Events passed to an endpoint's JavaScript callback; mirrored in native-tls.ts. */
enum { EV_SECURE = 1, EV_DATA = 2, EV_EOF = 3, EV_ERROR = 4, EV_DRAIN = 5, EV_FINISHED = 6 };

enum { EP_HANDSHAKE, EP_OPEN, EP_LENT, EP_FAILED, EP_CLOSED };

/* Most plaintext one read hands to JavaScript. */
#define READ_CHUNK (64 * 1024)

typedef struct {
  uv_poll_t poll;
  tls_conn_t *conn;
  napi_env env;
  napi_ref callback;
  int refs; /* the JavaScript handle and the poll handle */
  int state;
  int busy; /* inside on_poll: a close asked for by a callback waits for it to return */
  int close_due;
  int events;
  int reading;
  int eof;
  /* records held inside OpenSSL while JavaScript paused: read them without waiting for the socket */
  int kick;
  int ending, ended;
  /* Lent with its poll kept (tls_endpoint_watch): who gets the poll's events meanwhile. */
  void (*borrower_cb)(void *data, int status, int events);
  void *borrower;
  uint8_t *queue; /* plaintext not yet taken by OpenSSL; its head is what a TLS_AGAIN write must retry */
  size_t qhead, qlen;
} endpoint_t;

extern const napi_type_tag ENDPOINT_TAG;
/* Endpoints allocated and not yet freed, for the tests' leak check. */
extern int64_t live_endpoints;

/* A new endpoint over `fd` (which it owns from here), polling for its handshake; NULL with `err` set. */
endpoint_t *endpoint_open(napi_env env, tls_ctx_t *ctx, int fd, const tls_conn_options_t *o, napi_value callback, char *err, size_t errlen);
/* An endpoint over `fd` without TLS (tls_plain_conn_new): open at once, polling nothing until JavaScript reads or writes. */
endpoint_t *endpoint_open_plain(napi_env env, int fd, napi_value callback, char *err, size_t errlen);
endpoint_t *endpoint_of(napi_env env, napi_value v);
void endpoint_set_reading(endpoint_t *ep, int reading);
/* 1 written, 0 queued (EV_DRAIN follows), -1 failed (tls_error says why). */
int endpoint_write(endpoint_t *ep, const uint8_t *p, size_t n);
/* 1 when close_notify and the FIN went out now, 0 when EV_FINISHED follows, -1 on an error. */
int endpoint_end(endpoint_t *ep);
void endpoint_close(endpoint_t *ep);
/* The JavaScript handle was collected. */
void endpoint_finalize(endpoint_t *ep);

#endif
