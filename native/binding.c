/*
 * The native carrier's N-API functions (see src/pipeline/native-carrier.ts). Every function but
 * setup and live takes the carrier's handle first. Status crosses by name.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "binding.h"
#include "carrier.h"
#include "tls.h"

/* setup(batch, event, tape): the callbacks every carrier calls, and the tape batches are written on. */
static napi_value setup(napi_env env, napi_callback_info info) {
  ARGS(3);
  size_t len;
  void *data = NULL;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, argv[2], &type, &len, &data, NULL, NULL) != napi_ok || type != napi_uint32_array ||
      len < 3 * TAPE_TOTAL) {
    napi_throw_type_error(env, NULL, "expected a Uint32Array of 3 * tapeEntries");
    return NULL;
  }
  if (g.env && g.env != env) {
    napi_throw_error(env, NULL, "the native carrier serves one JavaScript environment");
    return NULL;
  }
  if (g.batch_fn) {
    napi_delete_reference(env, g.batch_fn);
    napi_delete_reference(env, g.event_fn);
    napi_delete_reference(env, g.tape_ref);
  }
  g.env = env;
  napi_create_reference(env, argv[0], 1, &g.batch_fn);
  napi_create_reference(env, argv[1], 1, &g.event_fn);
  napi_create_reference(env, argv[2], 1, &g.tape_ref);
  g.tape = (uint32_t *)data;
  if (batches_init(env) != 0) {
    napi_throw_error(env, NULL, "setup: libuv refused the check handle");
    return NULL;
  }
  if (!g.async) {
    napi_value name;
    napi_create_string_utf8(env, "pgward.carrier", NAPI_AUTO_LENGTH, &name);
    napi_async_init(env, NULL, name, &g.async);
  }
  return NULL;
}

static void finalize(napi_env env, void *data, void *hint) {
  carrier_t *c = (carrier_t *)data;
  if (c->self) napi_delete_reference(env, c->self);
  c->self = NULL;
  release_carrier(c);
}

/*
 * An endpoint from JavaScript: a plain socket's descriptor (a number), or a native endpoint's
 * handle, TLS or plain (its connection is borrowed until the carrier halts). A plain socket is
 * polled through a duplicate descriptor of the carrier's own: Node's socket may close its
 * descriptor whenever it likes. A native endpoint is polled through its own poll handle, which
 * stays in epoll across the loan (see io.h, watch): no dup, no second handle and no epoll removal
 * and re-adding per endpoint and session; a plain one is then read and written as plain TCP
 * (io_plain_lent). -1 with `msg` set when it cannot be carried.
 */
static int endpoint_arg(napi_env env, napi_value v, io_t *io, char *msg, size_t msglen) {
  napi_valuetype type;
  napi_typeof(env, v, &type);
  if (type != napi_number) {
    tls_conn_t *conn = tls_endpoint_lend(env, v, 1);
    if (!conn) {
      snprintf(msg, msglen, "the TLS endpoint cannot be carried (closed, or plaintext waiting to be written)");
      return -1;
    }
    if (tls_is_plain(conn)) io_plain_lent(io, conn);
    else io_tls(io, conn);
    return 0;
  }
  int own = dup(int_arg(env, v));
  if (own < 0) {
    snprintf(msg, msglen, "dup: %s", strerror(errno));
    return -1;
  }
  io_plain(io, own);
  return 0;
}

/*
 * start(self, client, backend, wants, clientMaxAssembled, backendMaxAssembled, timing, keepBackend)
 * → handle. client, backend: see endpoint_arg. `wants`: 128 bytes, a bit per type byte, frontend types then backend
 * types, first those held for JavaScript, then those only observed.
 */
static napi_value start(napi_env env, napi_callback_info info) {
  ARGS(8);
  if (!g.batch_fn) {
    napi_throw_error(env, NULL, "setup() first");
    return NULL;
  }
  size_t wants_len;
  uint8_t *wants = bytes_arg(env, argv[3], &wants_len);
  if (!wants) return NULL;
  if (wants_len < 128) {
    napi_throw_type_error(env, NULL, "wants: 128 bytes");
    return NULL;
  }
  io_t ios[2];
  for (int e = 0; e < 2; e++) {
    char msg[160];
    if (endpoint_arg(env, argv[1 + e], &ios[e], msg, sizeof msg) < 0) {
      if (e == 1) ios[0].ops->release(&ios[0]);
      napi_throw_error(env, NULL, msg);
      return NULL;
    }
  }
  int uv_error = 0;
  carrier_t *c = carrier_open(env, ios, &uv_error);
  if (!c) {
    napi_throw_error(env, NULL, uv_error ? uv_strerror(uv_error) : "out of memory");
    return NULL;
  }
  memcpy(c->dir[TO_BACKEND].wants, wants, 32);
  memcpy(c->dir[TO_CLIENT].wants, wants + 32, 32);
  memcpy(c->dir[TO_BACKEND].observes, wants + 64, 32);
  memcpy(c->dir[TO_CLIENT].observes, wants + 96, 32);
  c->dir[TO_BACKEND].max_assembled = (uint32_t)int_arg(env, argv[4]);
  c->dir[TO_CLIENT].max_assembled = (uint32_t)int_arg(env, argv[5]);
  c->timing = bool_arg(env, argv[6]);
  c->keep_backend = bool_arg(env, argv[7]);
  if (c->timing) c->timings = malloc(TIMINGS_SIZE * sizeof(double));
  if (c->timing && !c->timings) c->timing = 0;
  napi_create_reference(env, argv[0], 1, &c->self);
  napi_value handle;
  napi_create_external(env, c, finalize, NULL, &handle);
  update_polls(c);
  return handle;
}

/*
 * Before JavaScript stops a carrier, or a write of its ends it: what it observed and JavaScript
 * has not seen yet is handed over (with every other session's queued batches, by a plain call),
 * so nothing observed is lost. Inside a hand-over that cannot be: there JavaScript shows what is
 * left of the hand-over itself (src/pipeline/native-hand-over.ts).
 */
static void observed_first(carrier_t *c) {
  if (c->state == R_RUNNING && !c->busy && observed_waiting(c) && !g.handing) hand_batches(1);
}

/* What JavaScript's call may have made due, now that nothing of the carrier is on the stack. */
static int after_js(carrier_t *c) {
  int flags = 0;
  if (c->idle_due) {
    c->idle_due = 0;
    flags |= W_IDLE;
  }
  if (c->busy || c->state != R_RUNNING) return flags;
  for (int d = 0; d < 2; d++) {
    int err = c->dir[d].write_error;
    if (err) {
      observed_first(c);
      /* JavaScript, shown what was observed, may have ended it otherwise (and knows it). */
      if (c->state != R_RUNNING) return flags;
      halt_quietly(c, d == TO_CLIENT ? R_CLIENT_ERROR : R_BACKEND_ERROR, err);
      return flags | W_ENDED;
    }
  }
  if (c->release_due) {
    observed_first(c);
    if (c->state != R_RUNNING) return flags;
    halt_quietly(c, R_RELEASED, 0);
    return flags | W_ENDED;
  }
  update_polls(c);
  return flags;
}

/* write(handle, direction, bytes, offset, length, continues) → W_* flags: see carrier_put. */
static napi_value write_bytes(napi_env env, napi_callback_info info) {
  ARGS(6);
  carrier_t *c = handle_of(env, argv[0]);
  size_t len;
  uint8_t *data = c ? bytes_arg(env, argv[2], &len) : NULL;
  if (!data) return NULL;
  int d = int_arg(env, argv[1]) == TO_CLIENT ? TO_CLIENT : TO_BACKEND;
  uint32_t offset = (uint32_t)int_arg(env, argv[3]), length = (uint32_t)int_arg(env, argv[4]);
  if ((size_t)offset + length > len) {
    napi_throw_range_error(env, NULL, "write: range outside the buffer");
    return NULL;
  }
  if (c->state == R_RUNNING) carrier_put(c, d, data + offset, length, bool_arg(env, argv[5]));
  napi_value out;
  napi_create_int32(env, after_js(c), &out);
  return out;
}

/* feed(handle, direction, bytes): bytes read before the carrier started, taken as if just read (a read's worth at a time). */
static napi_value feed(napi_env env, napi_callback_info info) {
  ARGS(3);
  carrier_t *c = handle_of(env, argv[0]);
  size_t len;
  uint8_t *data = c ? bytes_arg(env, argv[2], &len) : NULL;
  if (!data) return NULL;
  int d = int_arg(env, argv[1]) == TO_CLIENT ? TO_CLIENT : TO_BACKEND;
  c->in_js = 1;
  /* Batches other carriers queued in this poll go first, by a plain call: this is JavaScript. */
  hand_batches(1);
  while (len > 0 && c->state == R_RUNNING && !c->abort_due) {
    size_t room;
    uint8_t *buf = read_region(len < READ_MAX ? len : READ_MAX, &room);
    if (!buf) {
      c->in_js = 0;
      napi_throw_error(env, NULL, "feed: out of memory");
      return NULL;
    }
    memcpy(buf, data, room);
    c->busy = 1;
    process_read(c, d, buf, room);
    c->busy = 0;
    data += room;
    len -= room;
  }
  settle(c);
  c->in_js = 0;
  return NULL;
}

/* stop(handle) → true when it stopped at once; otherwise an end event (stopped, or whatever came first) follows. */
static napi_value stop(napi_env env, napi_callback_info info) {
  ARGS(1);
  carrier_t *c = handle_of(env, argv[0]);
  if (!c) return NULL;
  observed_first(c);
  int now = 0;
  if (c->state == R_RUNNING) {
    c->stopping = 1;
    if (!c->busy) {
      now = stop_settled(c);
      if (now) halt_quietly(c, R_STOPPED, 0);
      else update_polls(c);
    }
  }
  return boolean(env, now);
}

/*
 * abort(handle) → true when it stopped now, wherever each direction is. Asked while the carrier
 * is busy (from a message a feed handed up), it halts as soon as it returns, with EV_END.
 */
static napi_value abort_carrier(napi_env env, napi_callback_info info) {
  ARGS(1);
  carrier_t *c = handle_of(env, argv[0]);
  if (!c) return NULL;
  observed_first(c);
  if (c->state != R_RUNNING) return boolean(env, 0);
  if (c->busy) {
    c->abort_due = 1;
    return boolean(env, 0);
  }
  for (int d = 0; d < 2; d++) bytes_free(&c->dir[d].queue);
  halt_quietly(c, R_STOPPED, 0);
  return boolean(env, 1);
}

/* pause(handle, side, paused): stop or go on reading one side (0 client, 1 backend). */
static napi_value pause_side(napi_env env, napi_callback_info info) {
  ARGS(3);
  carrier_t *c = handle_of(env, argv[0]);
  if (!c) return NULL;
  c->ep[int_arg(env, argv[1]) == BACKEND ? BACKEND : CLIENT].paused = bool_arg(env, argv[2]);
  if (c->state == R_RUNNING && !c->busy) update_polls(c);
  return NULL;
}

/* watchIdle(handle): the next ReadyForQuery that leaves the session idle raises EV_IDLE (or W_IDLE). */
static napi_value watch_idle(napi_env env, napi_callback_info info) {
  ARGS(1);
  carrier_t *c = handle_of(env, argv[0]);
  if (c) c->watch_idle = 1;
  return NULL;
}

void pgward_liveness_register(napi_env env, napi_value exports); /* liveness.c */
NAPI_MODULE_INIT() {
  const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"setup", setup},       {"start", start},   {"write", write_bytes}, {"feed", feed},
      {"stop", stop},         {"abort", abort_carrier}, {"pause", pause_side}, {"watchIdle", watch_idle},
      {"report", carrier_report}, {"ended", carrier_ended}, {"timings", carrier_timings}, {"live", carrier_live},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  napi_value entries;
  napi_create_uint32(env, TAPE_TOTAL, &entries);
  napi_set_named_property(env, exports, "tapeEntries", entries);
  napi_set_named_property(env, exports, "reportNames", report_names(env));
  /* The native TLS layer lives in the same addon (tls*.c). */
  pgward_tls_register(env, exports);
  pgward_liveness_register(env, exports);
  return exports;
}
