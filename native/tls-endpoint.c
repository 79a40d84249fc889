/*
 * The N-API face of the native TLS layer (src/transport/native-tls.ts): contexts, and endpoints
 * that drive one TLS connection from a uv_poll on Node's loop — the handshake, plaintext handed
 * to a JavaScript callback while JavaScript reads, plaintext from JavaScript written with partial
 * writes queued — and that native code can borrow (tls_endpoint_lend, see tls.h).
 *
 * An endpoint works on a duplicate of the socket's descriptor: Node's own socket stays open,
 * unread and unwritten, until JavaScript destroys both.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "tls-endpoint.h"
#include "fd-io.h"

const napi_type_tag ENDPOINT_TAG = {0x7067776172645f74ULL, 0x6c735f656e647074ULL};
static napi_async_context async_context;
static uint8_t scratch[READ_CHUNK];
int64_t live_endpoints;

static void on_poll(uv_poll_t *handle, int status, int events);

/* ---- lifetime ---- */

static void release(endpoint_t *ep) {
  if (--ep->refs > 0) return;
  live_endpoints--;
  free(ep->queue);
  free(ep);
}

static void on_closed(uv_handle_t *handle) {
  endpoint_t *ep = handle->data;
  tls_conn_free(ep->conn);
  ep->conn = NULL;
  release(ep);
}

static void drop_callback(endpoint_t *ep) {
  /* The callback holds the socket's objects: a reference from here is a GC root. */
  if (ep->callback) napi_delete_reference(ep->env, ep->callback);
  ep->callback = NULL;
}

/* Stops for good: a close_notify if the connection is sound, then the descriptor is closed. */
static void close_now(endpoint_t *ep) {
  if (ep->state == EP_CLOSED) return;
  if (ep->state == EP_OPEN && !ep->ended) tls_shutdown(ep->conn);
  ep->state = EP_CLOSED;
  /* uv_close stops the poll itself: a uv_poll_stop first asked epoll to drop the descriptor twice. */
  uv_close((uv_handle_t *)&ep->poll, on_closed);
  drop_callback(ep);
}

/* ---- JavaScript callbacks ---- */

static void emit(endpoint_t *ep, int event, const uint8_t *data, size_t len, const char *text) {
  napi_env env = ep->env;
  napi_handle_scope scope;
  if (!ep->callback || napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value callback, recv, argv[2], result;
  napi_get_reference_value(env, ep->callback, &callback);
  napi_get_global(env, &recv);
  napi_create_int32(env, event, &argv[0]);
  void *copy;
  if (data) napi_create_buffer_copy(env, len, data, &copy, &argv[1]);
  else if (text) napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &argv[1]);
  else napi_get_undefined(env, &argv[1]);
  if (napi_make_callback(env, async_context, recv, callback, 2, argv, &result) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

static void fail(endpoint_t *ep, const char *why) {
  ep->state = EP_FAILED;
  emit(ep, EV_ERROR, NULL, 0, why);
}

/* ---- polling ---- */

static void update_poll(endpoint_t *ep) {
  /* Lent: the borrower polls through the handle (tls_endpoint_poll), or it polls nothing. */
  if (ep->state == EP_LENT) return;
  int events = 0;
  if (ep->state == EP_HANDSHAKE) {
    events = tls_poll_events(ep->conn, 0, 0);
  } else if (ep->state == EP_OPEN) {
    events = tls_poll_events(ep->conn, ep->reading && !ep->eof && !ep->kick, ep->qlen > 0);
    /* A socket is nearly always writable: the next loop iteration reads what OpenSSL holds. */
    if (ep->kick && ep->reading) events |= UV_WRITABLE;
  }
  if (events == ep->events) return;
  ep->events = events;
  if (events) uv_poll_start(&ep->poll, events, on_poll);
  else uv_poll_stop(&ep->poll);
}

/* Writes plaintext, queueing what OpenSSL cannot take yet; -1 on a failed write. */
static int write_plain(endpoint_t *ep, const uint8_t *p, size_t n) {
  while (ep->qlen == 0 && n > 0) {
    ssize_t w = tls_write(ep->conn, p, n);
    if (w == TLS_AGAIN) break;
    if (w < 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  if (n == 0) return 0;
  uint8_t *grown = realloc(ep->qhead > 0 ? NULL : ep->queue, ep->qlen + n);
  if (!grown) return -1;
  if (ep->qhead > 0) {
    memcpy(grown, ep->queue + ep->qhead, ep->qlen);
    free(ep->queue);
    ep->qhead = 0;
  }
  memcpy(grown + ep->qlen, p, n);
  ep->queue = grown;
  ep->qlen += n;
  return 0;
}

/* close_notify, then a FIN; 1 when done, 0 when it waits for the socket, -1 on an error. */
static int finish_end(endpoint_t *ep) {
  int r = tls_shutdown(ep->conn);
  if (r == TLS_AGAIN) return 0;
  shutdown(tls_fd(ep->conn), SHUT_WR);
  ep->ended = 1;
  return r < 0 ? -1 : 1;
}

static void flush(endpoint_t *ep) {
  while (ep->qlen > 0) {
    ssize_t w = tls_write(ep->conn, ep->queue + ep->qhead, ep->qlen);
    if (w == TLS_AGAIN) return;
    if (w < 0) return fail(ep, tls_error(ep->conn));
    ep->qhead += (size_t)w;
    ep->qlen -= (size_t)w;
  }
  free(ep->queue);
  ep->queue = NULL;
  ep->qhead = 0;
  if (!ep->ending) return emit(ep, EV_DRAIN, NULL, 0, NULL);
  if (!ep->ended && finish_end(ep) != 0) emit(ep, EV_FINISHED, NULL, 0, NULL);
}

static void pump(endpoint_t *ep) {
  ep->kick = 0;
  while (ep->state == EP_OPEN && ep->reading && !ep->eof) {
    ssize_t n = tls_read(ep->conn, scratch, sizeof scratch);
    if (n == TLS_AGAIN) return;
    if (n < 0) return fail(ep, tls_error(ep->conn));
    if (n == 0) {
      ep->eof = 1;
      return emit(ep, EV_EOF, NULL, 0, NULL);
    }
    emit(ep, EV_DATA, scratch, (size_t)n, NULL);
    if (!tls_pending(ep->conn)) return;
  }
  if (ep->state == EP_OPEN && !ep->eof && tls_pending(ep->conn)) ep->kick = 1;
}

/* Why polling failed: the socket's own error first ("Connection reset by peer", not libuv's
 * "bad file descriptor" for POLLERR). */
static const char *poll_failure(endpoint_t *ep, int status) {
  int err = status == UV_EBADF ? fd_pending_error(tls_fd(ep->conn)) : 0;
  return err ? strerror(err) : uv_strerror(status);
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  endpoint_t *ep = handle->data;
  /* Lent with its poll: the borrower's event (it may give the endpoint back, or close it, inside). */
  if (ep->state == EP_LENT) {
    if (ep->borrower_cb) ep->borrower_cb(ep->borrower, status, events);
    return;
  }
  if (ep->state != EP_HANDSHAKE && ep->state != EP_OPEN) return;
  ep->busy = 1;
  if (status < 0) {
    fail(ep, poll_failure(ep, status));
  } else if (ep->state == EP_HANDSHAKE) {
    int r = tls_handshake(ep->conn);
    if (r == 1) {
      ep->state = EP_OPEN;
      /* The peer's first records often come with its last handshake message: OpenSSL read them already. */
      if (tls_pending(ep->conn)) ep->kick = 1;
      emit(ep, EV_SECURE, NULL, 0, NULL);
      /*
       * JavaScript, told, is reading by now (a session asks for its startup packet at once): what
       * OpenSSL holds is read here, not a loop turn later through a poll for writability, which
       * cost four epoll_ctl per TLS login (to writable and back) and a wake-up.
       */
      if (ep->state == EP_OPEN && ep->kick && ep->reading && !ep->close_due) pump(ep);
    } else if (r == TLS_ERROR) {
      fail(ep, tls_error(ep->conn));
    }
  } else {
    int ready = tls_ready(ep->conn, events);
    if (ready & (TLS_READY_WRITE | TLS_READY_OTHER)) {
      if (ep->qlen > 0) flush(ep);
      else if (ep->ending && !ep->ended && finish_end(ep) != 0) emit(ep, EV_FINISHED, NULL, 0, NULL);
    }
    if (ep->state == EP_OPEN && ((ready & TLS_READY_READ) || ep->kick)) pump(ep);
  }
  ep->busy = 0;
  if (ep->close_due) close_now(ep);
  else update_poll(ep);
}

/* ---- lending to native code (tls.h) ---- */

endpoint_t *endpoint_of(napi_env env, napi_value v) {
  bool tagged = false;
  void *data = NULL;
  if (napi_check_object_type_tag(env, v, &ENDPOINT_TAG, &tagged) != napi_ok || !tagged) return NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok) return NULL;
  return data;
}

/*
 * Also from inside one of this endpoint's callbacks (a login that completes on the backend's last
 * message starts the relay there): on_poll then sees the state change and stops touching it.
 */
tls_conn_t *tls_endpoint_lend(napi_env env, napi_value handle, int keep_polling) {
  endpoint_t *ep = endpoint_of(env, handle);
  if (!ep || ep->state != EP_OPEN || ep->qlen > 0 || ep->ending) return NULL;
  if (!keep_polling) {
    uv_poll_stop(&ep->poll);
    ep->events = 0;
  }
  ep->state = EP_LENT;
  ep->refs++;
  return ep->conn;
}

int tls_endpoint_watch(tls_conn_t *conn, void (*cb)(void *data, int status, int events), void *data) {
  endpoint_t *ep = tls_owner(conn);
  ep->borrower_cb = cb;
  ep->borrower = data;
  return ep->events;
}

void tls_endpoint_poll(tls_conn_t *conn, int events) {
  endpoint_t *ep = tls_owner(conn);
  if (events == ep->events) return;
  ep->events = events;
  if (events) uv_poll_start(&ep->poll, events, on_poll);
  else uv_poll_stop(&ep->poll);
}

void tls_endpoint_give_back(tls_conn_t *conn) {
  endpoint_t *ep = tls_owner(conn);
  ep->borrower_cb = NULL;
  ep->borrower = NULL;
  ep->state = EP_OPEN;
  if (tls_pending(conn)) ep->kick = 1;
  /* Inside on_poll, its end closes or polls. */
  if (!ep->busy) {
    if (ep->close_due) close_now(ep);
    else update_poll(ep);
  }
  release(ep);
}


/* ---- operations for JavaScript (tls-binding.c) ---- */

/* An endpoint over `conn` (which it owns from here); NULL with `err` set (the connection is freed). */
static endpoint_t *endpoint_over(napi_env env, tls_conn_t *conn, napi_value callback, char *err, size_t errlen) {
  uv_loop_t *loop;
  endpoint_t *ep = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) snprintf(err, errlen, "no event loop");
  else if (!(ep = calloc(1, sizeof *ep))) snprintf(err, errlen, "out of memory");
  if (!ep) {
    tls_conn_free(conn);
    return NULL;
  }
  if (!async_context) {
    napi_value name;
    napi_create_string_utf8(env, "pgward.tls", NAPI_AUTO_LENGTH, &name);
    napi_async_init(env, NULL, name, &async_context);
  }
  int uv_err = uv_poll_init(loop, &ep->poll, tls_fd(conn));
  if (uv_err) {
    snprintf(err, errlen, "%s", uv_strerror(uv_err));
    tls_conn_free(conn);
    free(ep);
    return NULL;
  }
  live_endpoints++;
  ep->poll.data = ep;
  ep->conn = conn;
  ep->env = env;
  ep->refs = 2;
  /* A plain connection has no handshake: it is open, and polls nothing until JavaScript reads or writes. */
  ep->state = tls_is_plain(conn) ? EP_OPEN : EP_HANDSHAKE;
  tls_set_owner(conn, ep);
  napi_create_reference(env, callback, 1, &ep->callback);
  update_poll(ep);
  return ep;
}

endpoint_t *endpoint_open(napi_env env, tls_ctx_t *ctx, int fd, const tls_conn_options_t *o, napi_value callback, char *err, size_t errlen) {
  tls_conn_t *conn = tls_conn_new(ctx, fd, o, err, errlen);
  return conn ? endpoint_over(env, conn, callback, err, errlen) : NULL;
}

endpoint_t *endpoint_open_plain(napi_env env, int fd, napi_value callback, char *err, size_t errlen) {
  tls_conn_t *conn = tls_plain_conn_new(fd);
  if (!conn) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  return endpoint_over(env, conn, callback, err, errlen);
}

void endpoint_set_reading(endpoint_t *ep, int reading) {
  ep->reading = reading;
  if (ep->state != EP_OPEN) return;
  if (reading && tls_pending(ep->conn)) ep->kick = 1;
  if (!ep->busy) update_poll(ep);
}

int endpoint_write(endpoint_t *ep, const uint8_t *p, size_t n) {
  if (ep->state != EP_OPEN || ep->ending) {
    errno = EPIPE;
    return -1;
  }
  if (write_plain(ep, p, n) < 0) {
    ep->state = EP_FAILED;
    return -1;
  }
  if (!ep->busy) update_poll(ep);
  return ep->qlen == 0 ? 1 : 0;
}

int endpoint_end(endpoint_t *ep) {
  if (ep->ending) return ep->ended ? 1 : 0;
  ep->ending = 1;
  if (ep->state != EP_OPEN) return -1;
  int r = ep->qlen > 0 ? 0 : finish_end(ep);
  if (!ep->busy) update_poll(ep);
  return r;
}

void endpoint_close(endpoint_t *ep) {
  if (ep->busy || ep->state == EP_LENT) ep->close_due = 1;
  else close_now(ep);
}

void endpoint_finalize(endpoint_t *ep) {
  /* Normally closed by JavaScript already; otherwise the descriptor must not outlive the handle. */
  endpoint_close(ep);
  release(ep);
}
