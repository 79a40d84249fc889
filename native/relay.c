/*
 * pgward's native relay: moves a session's bytes between the client and backend sockets inside
 * libuv's loop, without a JavaScript call per read or write. Used only for sessions whose pipeline
 * looks at no message (see src/pipeline/native-relay.ts); it frames both directions from the
 * 5-byte headers alone, to keep what the session must know (transaction status, unanswered
 * requests, Terminate, ParameterStatus) and to stop at a message boundary when JavaScript takes
 * the session over.
 *
 * It works on duplicates of the sockets' descriptors, so Node's own handles stay open and usable
 * once the relay stops; Node must not read or write them while it runs.
 */
#include <errno.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "tls.h"

#define BUF_SIZE (16 * 1024)
/* A ParameterStatus is captured whole up to this size (a bigger one is not reported); an ErrorResponse only up to ERROR_HEAD, for its severity. */
#define MAX_CAPTURE (64 * 1024)
#define ERROR_HEAD 256
/* Statement durations kept until JavaScript takes them (at a scrape, or when this many wait). */
#define TIMINGS_SIZE 512
/* Statements in flight at once beyond this are not timed (a pipeline that deep is rare). */
#define MAX_IN_FLIGHT 65536

/* Directions, and the endpoints they read from. */
enum { TO_BACKEND = 0, TO_CLIENT = 1 };
enum { CLIENT = 0, BACKEND = 1 };

/* What ended or stopped the relay; mirrored in native-relay.ts. */
enum {
  R_RUNNING = 0,
  R_STOPPED = 1,
  R_CLIENT_EOF = 2,
  R_BACKEND_EOF = 3,
  R_CLIENT_ERROR = 4,
  R_BACKEND_ERROR = 5,
  R_CLIENT_VIOLATION = 6,
  R_BACKEND_VIOLATION = 7,
  /* The client sent Terminate, held back from the backend (the backend connection may be kept). */
  R_CLIENT_TERMINATE = 8,
};

/* Events passed to the JavaScript callback. */
enum { EV_END = 1, EV_PARAMETER_STATUS = 2, EV_TIMINGS_FULL = 3 };

typedef struct relay relay_t;

typedef struct {
  uv_poll_t poll;
  int fd;
  int events;
  relay_t *relay;
} endpoint_t;

typedef struct {
  uint8_t buf[BUF_SIZE];
  size_t head, tail; /* [head, tail) read and not yet written */
  /* framing of the bytes read so far: a header being collected, or a body being skipped */
  uint8_t hdr[5];
  int hlen;
  uint32_t body_left;
  uint32_t body_seen;
  uint8_t code;
  uint32_t max_length;
  int parked;
  double bytes; /* written to the destination */
} direction_t;

struct relay {
  endpoint_t ep[2];
  direction_t dir[2];
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  int refs; /* the JavaScript object and the two poll handles */
  int stopping;
  int busy; /* inside on_poll: a callback into JavaScript may ask to stop, but not stop it there */
  int state;
  int error; /* errno of an I/O failure */
  uint32_t violation_length;
  uint8_t violation_code;
  char tx_status;
  uint32_t unanswered;
  int terminated;
  /* Hold a client's Terminate back from the backend and end with R_CLIENT_TERMINATE instead. */
  int hold_terminate;
  /* The Terminate's header began in an earlier read, part of it already sent: the backend is not clean. */
  int terminate_split;
  /* The Terminate was held: end once what preceded it has been written. */
  int terminate_pending;
  /* An extended-protocol message was sent since the last Query/Sync/FunctionCall: the backend awaits a Sync. */
  int unsynced;
  int backend_said_fatal;
  /* the body of the ParameterStatus or ErrorResponse being read from the backend */
  uint8_t *capture;
  uint32_t capture_cap, capture_len, capture_limit;
  int capture_overflow;
  /* statement timing, when asked for: start times (uv_hrtime) of statements sent, oldest first */
  int timing;
  uint64_t *starts;
  uint32_t starts_cap, starts_head, starts_len;
  /* finished: seconds for a success, -1 - seconds for an error */
  double *timings;
  uint32_t timings_len;
};

static void on_poll(uv_poll_t *handle, int status, int events);
static void emit(relay_t *r, int event, const uint8_t *data, size_t len);

static int src_of(int d) { return d == TO_BACKEND ? CLIENT : BACKEND; }
static int dst_of(int d) { return d == TO_BACKEND ? BACKEND : CLIENT; }

/* Relays allocated and not yet freed, for the tests' leak check. */
static int64_t live_relays;

static void release(relay_t *r) {
  if (--r->refs > 0) return;
  live_relays--;
  free(r->starts);
  free(r->capture);
  free(r->timings);
  free(r);
}

static void on_closed(uv_handle_t *handle) { release(((endpoint_t *)handle->data)->relay); }

static int at_boundary(const direction_t *d) { return d->hlen == 0 && d->body_left == 0; }

static int wants_read(const relay_t *r, int d) {
  const direction_t *dir = &r->dir[d];
  return r->state == R_RUNNING && !dir->parked && dir->head == dir->tail;
}

static int wants_write(const relay_t *r, int d) {
  return r->state == R_RUNNING && r->dir[d].head < r->dir[d].tail;
}

static void update_polls(relay_t *r) {
  for (int e = 0; e < 2; e++) {
    endpoint_t *ep = &r->ep[e];
    int reader = e == CLIENT ? TO_BACKEND : TO_CLIENT;
    int writer = e == CLIENT ? TO_CLIENT : TO_BACKEND;
    int events = (wants_read(r, reader) ? UV_READABLE : 0) | (wants_write(r, writer) ? UV_WRITABLE : 0);
    if (events == ep->events) continue;
    ep->events = events;
    if (events) uv_poll_start(&ep->poll, events, on_poll);
    else uv_poll_stop(&ep->poll);
  }
}

/* Stops polling for good and gives the descriptors back: Node's handles take over from here. */
static void halt(relay_t *r, int state) {
  r->state = state;
  for (int e = 0; e < 2; e++) {
    /* uv_poll_stop removes the descriptor from epoll before it is closed. */
    uv_poll_stop(&r->ep[e].poll);
    r->ep[e].events = 0;
    close(r->ep[e].fd);
    r->ep[e].fd = -1;
    uv_close((uv_handle_t *)&r->ep[e].poll, on_closed);
  }
}

static void emit(relay_t *r, int event, const uint8_t *data, size_t len) {
  napi_env env = r->env;
  napi_handle_scope scope;
  if (!r->callback || napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value callback, recv, argv[2], result;
  napi_get_reference_value(env, r->callback, &callback);
  napi_get_global(env, &recv);
  napi_create_int32(env, event, &argv[0]);
  if (data) {
    void *copy;
    napi_create_buffer_copy(env, len, data, &copy, &argv[1]);
  } else {
    napi_get_undefined(env, &argv[1]);
  }
  if (napi_make_callback(env, r->async, recv, callback, 2, argv, &result) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

/* The callback holds the session's objects: it must not outlive the relay (a reference from here is a GC root). */
static void drop_callback(relay_t *r) {
  if (r->callback) napi_delete_reference(r->env, r->callback);
  if (r->async) napi_async_destroy(r->env, r->async);
  r->callback = NULL;
  r->async = NULL;
}

static void end(relay_t *r, int state, int error) {
  if (r->state != R_RUNNING) return;
  r->error = error;
  halt(r, state);
  emit(r, EV_END, NULL, 0);
  drop_callback(r);
}

/*
 * Parks the directions that are at a message boundary with nothing left to write; true once both
 * are. Only between reads: a direction parked at a boundary reads nothing more.
 */
static int settle_stop(relay_t *r) {
  if (!r->stopping || r->state != R_RUNNING) return 0;
  for (int d = 0; d < 2; d++) {
    direction_t *dir = &r->dir[d];
    if (dir->head == dir->tail && at_boundary(dir)) dir->parked = 1;
  }
  return r->dir[0].parked && r->dir[1].parked;
}

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* ErrorResponse fields: a severity of FATAL or PANIC in 'V' (or 'S', before 9.6) means the backend said why it leaves. */
static int error_is_fatal(const uint8_t *body, uint32_t len) {
  uint32_t i = 0;
  while (i < len && body[i] != 0) {
    uint8_t field = body[i++];
    const uint8_t *value = body + i;
    while (i < len && body[i] != 0) i++;
    size_t vlen = (size_t)(body + i - value);
    i++;
    if (field == 'V' || field == 'S') {
      if ((vlen == 5 && memcmp(value, "FATAL", 5) == 0) || (vlen == 5 && memcmp(value, "PANIC", 5) == 0)) return 1;
      if (field == 'V') return 0;
    }
  }
  return 0;
}

/* A Query or Execute was sent: the statements of the JavaScript observer, timed the same way. */
static void statement_started(relay_t *r) {
  if (r->starts_len == r->starts_cap) {
    if (r->starts_cap >= MAX_IN_FLIGHT) return;
    uint32_t cap = r->starts_cap ? r->starts_cap * 2 : 64;
    uint64_t *grown = malloc(cap * sizeof *grown);
    if (!grown) return;
    for (uint32_t i = 0; i < r->starts_len; i++) grown[i] = r->starts[(r->starts_head + i) % r->starts_cap];
    free(r->starts);
    r->starts = grown;
    r->starts_cap = cap;
    r->starts_head = 0;
  }
  r->starts[(r->starts_head + r->starts_len) % r->starts_cap] = uv_hrtime();
  r->starts_len++;
}

static void statement_done(relay_t *r, int ok) {
  if (r->starts_len == 0) return;
  uint64_t started = r->starts[r->starts_head];
  r->starts_head = (r->starts_head + 1) % r->starts_cap;
  r->starts_len--;
  double seconds = (double)(uv_hrtime() - started) / 1e9;
  r->timings[r->timings_len++] = ok ? seconds : -1 - seconds;
  if (r->timings_len == TIMINGS_SIZE) {
    emit(r, EV_TIMINGS_FULL, NULL, 0);
    /* Taken, or nobody listens: either way there is room again. */
    r->timings_len = 0;
  }
}

static void capture_start(relay_t *r, uint32_t want) {
  r->capture_len = 0;
  r->capture_overflow = 0;
  r->capture_limit = 0;
  if (want > MAX_CAPTURE) {
    r->capture_overflow = 1;
    return;
  }
  if (want > r->capture_cap) {
    uint8_t *grown = realloc(r->capture, want);
    if (!grown) {
      r->capture_overflow = 1;
      return;
    }
    r->capture = grown;
    r->capture_cap = want;
  }
  r->capture_limit = want;
}

static void message_started(relay_t *r, int d, uint8_t code, uint32_t body_len) {
  if (d == TO_BACKEND) {
    if (code == 'Q' || code == 'S' || code == 'F') {
      r->unanswered++;
      r->unsynced = 0;
    } else if (code == 'P' || code == 'B' || code == 'D' || code == 'E' || code == 'C') {
      r->unsynced = 1;
    } else if (code == 'X') {
      r->terminated = 1;
    }
    if (r->timing && (code == 'Q' || code == 'E')) statement_started(r);
    return;
  }
  if (code == 'S') capture_start(r, body_len);
  else if (code == 'E') capture_start(r, body_len < ERROR_HEAD ? body_len : ERROR_HEAD);
  if (!r->timing) return;
  if (code == 'C' || code == 'I' || code == 's') statement_done(r, 1);
  else if (code == 'E') statement_done(r, 0);
  /* Executes skipped after an error never ran: nothing to count. */
  else if (code == 'Z') r->starts_len = 0;
}

static void message_ended(relay_t *r, int d, uint8_t code) {
  if (d != TO_CLIENT) return;
  if (code == 'S' && !r->capture_overflow) {
    emit(r, EV_PARAMETER_STATUS, r->capture, r->capture_len);
  } else if (code == 'E') {
    r->backend_said_fatal = error_is_fatal(r->capture, r->capture_len);
  } else if (code != 'Z' && code != 'N' && code != 'A') {
    r->backend_said_fatal = 0;
  }
}

static void body_bytes(relay_t *r, int d, uint8_t code, const uint8_t *p, size_t n, uint32_t seen) {
  if (d != TO_CLIENT) return;
  if (code == 'Z') {
    if (seen == 0 && n > 0) {
      r->tx_status = (char)p[0];
      if (r->unanswered > 0) r->unanswered--;
    }
  } else if ((code == 'S' || code == 'E') && r->capture_len < r->capture_limit) {
    size_t take = r->capture_limit - r->capture_len;
    if (take > n) take = n;
    memcpy(r->capture + r->capture_len, p, take);
    r->capture_len += (uint32_t)take;
  }
}

/*
 * Frames freshly read bytes; returns -1 on an impossible or oversize length, 1 when a held
 * Terminate was found (its offset in `terminate_at`; nothing after it is framed), else 0.
 */
static int frame(relay_t *r, int d, const uint8_t *p, size_t n, size_t *terminate_at) {
  direction_t *dir = &r->dir[d];
  const uint8_t *start = p;
  while (n > 0) {
    if (dir->body_left == 0) {
      int fresh = dir->hlen == 0;
      size_t header_at = (size_t)(p - start);
      size_t take = 5 - (size_t)dir->hlen;
      if (take > n) take = n;
      memcpy(dir->hdr + dir->hlen, p, take);
      dir->hlen += (int)take;
      p += take;
      n -= take;
      if (dir->hlen < 5) break;
      uint32_t len = be32(dir->hdr + 1);
      if (len < 4 || len > dir->max_length) {
        r->violation_code = dir->hdr[0];
        r->violation_length = len;
        return -1;
      }
      dir->hlen = 0;
      dir->code = dir->hdr[0];
      dir->body_left = len - 4;
      dir->body_seen = 0;
      message_started(r, d, dir->code, dir->body_left);
      if (d == TO_BACKEND && dir->code == 'X' && r->hold_terminate) {
        if (fresh) {
          *terminate_at = header_at;
          dir->body_left = 0;
          return 1;
        }
        r->terminate_split = 1;
      }
      if (dir->body_left == 0) message_ended(r, d, dir->code);
    } else {
      size_t take = dir->body_left < n ? dir->body_left : n;
      body_bytes(r, d, dir->code, p, take, dir->body_seen);
      dir->body_seen += (uint32_t)take;
      dir->body_left -= (uint32_t)take;
      p += take;
      n -= take;
      if (dir->body_left == 0) message_ended(r, d, dir->code);
    }
  }
  return 0;
}

/* Writes what is waiting; returns 0 when all is written or the socket is full, else an errno. */
static int flush(relay_t *r, int d) {
  direction_t *dir = &r->dir[d];
  int fd = r->ep[dst_of(d)].fd;
  while (dir->head < dir->tail) {
    ssize_t n = send(fd, dir->buf + dir->head, dir->tail - dir->head, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return errno;
    }
    dir->head += (size_t)n;
    dir->bytes += (double)n;
  }
  dir->head = dir->tail = 0;
  return 0;
}

static void pump(relay_t *r, int d) {
  direction_t *dir = &r->dir[d];
  size_t want = BUF_SIZE;
  if (r->stopping) {
    /* Read no further than the end of the message in flight, so nothing is read past the boundary. */
    if (at_boundary(dir)) return;
    size_t rest = dir->hlen > 0 ? (size_t)(5 - dir->hlen) : dir->body_left;
    if (rest < want) want = rest;
  }
  ssize_t n = read(r->ep[src_of(d)].fd, dir->buf, want);
  if (n == 0) return end(r, d == TO_BACKEND ? R_CLIENT_EOF : R_BACKEND_EOF, 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    return end(r, d == TO_BACKEND ? R_CLIENT_ERROR : R_BACKEND_ERROR, errno);
  }
  size_t terminate_at = 0;
  int framed = frame(r, d, dir->buf, (size_t)n, &terminate_at);
  if (framed < 0) return end(r, d == TO_BACKEND ? R_CLIENT_VIOLATION : R_BACKEND_VIOLATION, 0);
  if (r->state != R_RUNNING) return;
  dir->head = 0;
  dir->tail = (size_t)n;
  if (framed == 1) {
    /* Whatever preceded the Terminate goes on; the Terminate and anything after it do not. */
    dir->tail = terminate_at;
    dir->parked = 1;
    r->terminate_pending = 1;
  }
  int err = flush(r, d);
  if (err) end(r, d == TO_BACKEND ? R_BACKEND_ERROR : R_CLIENT_ERROR, err);
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  endpoint_t *ep = (endpoint_t *)handle->data;
  relay_t *r = ep->relay;
  int e = ep == &r->ep[CLIENT] ? CLIENT : BACKEND;
  if (r->state != R_RUNNING) return;
  if (status < 0) return end(r, e == CLIENT ? R_CLIENT_ERROR : R_BACKEND_ERROR, -status);
  r->busy = 1;
  if (events & UV_WRITABLE) {
    int d = e == CLIENT ? TO_CLIENT : TO_BACKEND;
    int err = flush(r, d);
    if (err) end(r, e == CLIENT ? R_CLIENT_ERROR : R_BACKEND_ERROR, err);
  }
  if ((events & UV_READABLE) && r->state == R_RUNNING) {
    int d = e == CLIENT ? TO_BACKEND : TO_CLIENT;
    if (wants_read(r, d)) pump(r, d);
  }
  r->busy = 0;
  if (r->state != R_RUNNING) return;
  if (r->terminate_pending && r->dir[TO_BACKEND].head == r->dir[TO_BACKEND].tail) end(r, R_CLIENT_TERMINATE, 0);
  else if (settle_stop(r)) end(r, R_STOPPED, 0);
  else update_polls(r);
}

/* ---- JavaScript interface ---- */

static void finalize(napi_env env, void *data, void *hint) {
  relay_t *r = (relay_t *)data;
  drop_callback(r);
  release(r);
}

/* The relay handle every function but start takes first; `second` receives the next argument, if wanted. */
static relay_t *relay_arg(napi_env env, napi_callback_info info, napi_value *second) {
  size_t argc = 2;
  napi_value argv[2];
  void *data = NULL;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < (second ? 2u : 1u) || napi_get_value_external(env, argv[0], &data) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a native relay handle");
    return NULL;
  }
  if (second) *second = argv[1];
  return (relay_t *)data;
}

static int throw_errno(napi_env env, const char *what) {
  char msg[128];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
  napi_throw_error(env, NULL, msg);
  return 0;
}

/* start(clientFd, backendFd, clientMaxLength, backendMaxLength, callback, timeStatements) → handle */
static napi_value start(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 7) {
    napi_throw_type_error(env, NULL, "start(clientFd, backendFd, clientMaxLength, backendMaxLength, callback, timeStatements, holdTerminate)");
    return NULL;
  }
  bool timing = false, hold = false;
  napi_get_value_bool(env, argv[5], &timing);
  napi_get_value_bool(env, argv[6], &hold);
  int32_t fds[2];
  uint32_t max[2];
  napi_get_value_int32(env, argv[0], &fds[0]);
  napi_get_value_int32(env, argv[1], &fds[1]);
  napi_get_value_uint32(env, argv[2], &max[0]);
  napi_get_value_uint32(env, argv[3], &max[1]);
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return NULL;

  relay_t *r = calloc(1, sizeof(relay_t));
  if (!r) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  live_relays++;
  r->env = env;
  r->tx_status = 'I';
  r->timing = timing;
  r->hold_terminate = hold;
  if (timing && !(r->timings = malloc(TIMINGS_SIZE * sizeof(double)))) {
    live_relays--;
    free(r);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  r->dir[TO_BACKEND].max_length = max[0];
  r->dir[TO_CLIENT].max_length = max[1];
  for (int e = 0; e < 2; e++) {
    r->ep[e].fd = dup(fds[e]);
    if (r->ep[e].fd < 0) {
      throw_errno(env, "dup");
      if (e == 1) close(r->ep[0].fd);
      live_relays--;
      free(r->timings);
      free(r);
      return NULL;
    }
  }
  for (int e = 0; e < 2; e++) {
    endpoint_t *ep = &r->ep[e];
    ep->relay = r;
    int err = uv_poll_init(loop, &ep->poll, ep->fd);
    if (err) {
      /* Only the handles already made need closing; each close releases one reference. */
      close(r->ep[0].fd);
      close(r->ep[1].fd);
      r->refs = e;
      if (e == 1) uv_close((uv_handle_t *)&r->ep[0].poll, on_closed);
      else {
        live_relays--;
        free(r->timings);
        free(r);
      }
      napi_throw_error(env, NULL, uv_strerror(err));
      return NULL;
    }
    ep->poll.data = ep;
  }
  r->refs = 3;
  napi_value name, handle;
  napi_create_reference(env, argv[4], 1, &r->callback);
  napi_create_string_utf8(env, "pgward.relay", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &r->async);
  napi_create_external(env, r, finalize, NULL, &handle);
  update_polls(r);
  return handle;
}

/* stop(handle) → true when stopped at once; otherwise an end event with state STOPPED follows. */
static napi_value stop(napi_env env, napi_callback_info info) {
  napi_value result;
  relay_t *r = relay_arg(env, info, NULL);
  if (!r) return NULL;
  if (r->state == R_RUNNING) {
    r->stopping = 1;
    if (!r->busy) {
      if (settle_stop(r)) {
        halt(r, R_STOPPED);
        drop_callback(r);
        napi_get_boolean(env, 1, &result);
        return result;
      }
      update_polls(r);
    }
  }
  napi_get_boolean(env, 0, &result);
  return result;
}

/* abort(handle) → true when it was running: stops now, wherever each direction is (for a close that cannot wait). */
static napi_value abort_relay(napi_env env, napi_callback_info info) {
  napi_value result;
  relay_t *r = relay_arg(env, info, NULL);
  if (!r) return NULL;
  int running = r->state == R_RUNNING && !r->busy;
  if (running) {
    halt(r, R_STOPPED);
    drop_callback(r);
  }
  napi_get_boolean(env, running, &result);
  return result;
}

/*
 * status(handle) → [state, errno, transaction status, unanswered, terminated, backend said fatal,
 * bytes to client, bytes to backend, client stream mid-message, backend stream mid-message,
 * violation code, violation length, unsynced, terminate split]
 */
static napi_value status(napi_env env, napi_callback_info info) {
  napi_value out;
  relay_t *r = relay_arg(env, info, NULL);
  if (!r) return NULL;
  const direction_t *tc = &r->dir[TO_CLIENT], *tb = &r->dir[TO_BACKEND];
  double values[14] = {
      r->state,
      r->error,
      (double)(unsigned char)r->tx_status,
      r->unanswered,
      r->terminated,
      r->backend_said_fatal,
      tc->bytes,
      tb->bytes,
      !(at_boundary(tc) && tc->head == tc->tail),
      !(at_boundary(tb) && tb->head == tb->tail),
      r->violation_code,
      r->violation_length,
      r->unsynced,
      r->terminate_split,
  };
  napi_create_array_with_length(env, 14, &out);
  for (uint32_t i = 0; i < 14; i++) {
    napi_value v;
    napi_create_double(env, values[i], &v);
    napi_set_element(env, out, i, v);
  }
  return out;
}

/* bytes(handle) → bytes to client + bytes to backend, as two numbers in a reused Float64Array */
static napi_value bytes(napi_env env, napi_callback_info info) {
  napi_value array;
  relay_t *r = relay_arg(env, info, &array);
  if (!r) return NULL;
  void *data;
  size_t length;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, array, &type, &length, &data, NULL, NULL) != napi_ok || type != napi_float64_array ||
      length < 2) {
    napi_throw_type_error(env, NULL, "expected a Float64Array of 2");
    return NULL;
  }
  ((double *)data)[0] = r->dir[TO_CLIENT].bytes;
  ((double *)data)[1] = r->dir[TO_BACKEND].bytes;
  return NULL;
}

/* A new Float64Array of `n` elements in `*out`; returns its storage. */
static double *new_float64_array(napi_env env, size_t n, napi_value *out) {
  napi_value buffer;
  void *data = NULL;
  napi_create_arraybuffer(env, n * sizeof(double), &data, &buffer);
  napi_create_typedarray(env, napi_float64_array, n, buffer, 0, out);
  return (double *)data;
}

/* timings(handle) → Float64Array of the durations finished since the last call (see relay_t.timings) */
static napi_value timings(napi_env env, napi_callback_info info) {
  napi_value out;
  relay_t *r = relay_arg(env, info, NULL);
  if (!r) return NULL;
  memcpy(new_float64_array(env, r->timings_len, &out), r->timings, r->timings_len * sizeof(double));
  r->timings_len = 0;
  return out;
}

/* inFlight(handle) → Float64Array of the ages, in seconds, of the statements sent and not finished */
static napi_value in_flight(napi_env env, napi_callback_info info) {
  napi_value out;
  relay_t *r = relay_arg(env, info, NULL);
  if (!r) return NULL;
  double *ages = new_float64_array(env, r->starts_len, &out);
  uint64_t now = uv_hrtime();
  for (uint32_t i = 0; i < r->starts_len; i++) ages[i] = (double)(now - r->starts[(r->starts_head + i) % r->starts_cap]) / 1e9;
  return out;
}

/* live() → how many relays are allocated (running, or ended and not yet released by JavaScript's GC) */
static napi_value live(napi_env env, napi_callback_info info) {
  napi_value out;
  napi_create_int64(env, live_relays, &out);
  return out;
}

NAPI_MODULE_INIT() {
  const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {{"start", start}, {"stop", stop}, {"abort", abort_relay}, {"status", status}, {"bytes", bytes}, {"timings", timings}, {"inFlight", in_flight}, {"live", live}};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  /* The native TLS layer lives in the same addon (tls*.c). */
  pgward_tls_register(env, exports);
  return exports;
}
