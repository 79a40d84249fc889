/*
 * What a native carrier tells JavaScript of its session, by name: its status while it runs, how
 * it ended (with the bytes a destination had not taken), the timings of finished statements, and
 * how many carriers are alive.
 */
#include <string.h>

#include "binding.h"
#include "carrier.h"

static const char *reason_name(int state) {
  switch (state) {
    case R_RUNNING: return "running";
    case R_STOPPED: return "stopped";
    case R_RELEASED: return "released";
    case R_CLIENT_EOF: return "client-eof";
    case R_BACKEND_EOF: return "backend-eof";
    case R_CLIENT_ERROR: return "client-error";
    case R_BACKEND_ERROR: return "backend-error";
    case R_CLIENT_VIOLATION: return "client-violation";
    default: return "backend-violation";
  }
}

/*
 * report()'s slots. JavaScript never counts positions: it finds each slot by the name given here
 * (the addon's `reportNames`, read once at load), so the order can change on this side alone.
 */
enum {
  S_TX_STATUS,
  S_UNANSWERED,
  S_TERMINATED,
  S_BACKEND_SAID_FATAL,
  S_BYTES_TO_CLIENT,
  S_BYTES_TO_BACKEND,
  S_CLIENT_MID_MESSAGE,
  S_BACKEND_MID_MESSAGE,
  S_REUSABLE,
  S_STATE,
  S_ERRNO,
  S_UNSENT_TO_CLIENT,
  S_UNSENT_TO_BACKEND,
  S_COUNT
};
_Static_assert(S_COUNT == REPORT_SLOTS, "REPORT_SLOTS is the number of slots");

static const char *const slot_names[S_COUNT] = {
    [S_TX_STATUS] = "transactionStatus",
    [S_UNANSWERED] = "unanswered",
    [S_TERMINATED] = "terminated",
    [S_BACKEND_SAID_FATAL] = "backendSaidFatal",
    [S_BYTES_TO_CLIENT] = "bytesToClient",
    [S_BYTES_TO_BACKEND] = "bytesToBackend",
    [S_CLIENT_MID_MESSAGE] = "clientMidMessage",
    [S_BACKEND_MID_MESSAGE] = "backendMidMessage",
    [S_REUSABLE] = "reusable",
    [S_STATE] = "state",
    [S_ERRNO] = "errno",
    [S_UNSENT_TO_CLIENT] = "unsentToClient",
    [S_UNSENT_TO_BACKEND] = "unsentToBackend",
};

#define TEXT_OF_(x) #x
#define TEXT_OF(x) TEXT_OF_(x)

static const char *slot_name(uint32_t i) { return slot_names[i]; }
static const char *state_name(uint32_t i) { return reason_name((int)i); }

/* An array of `count` names, the i-th `name_of(i)`. */
static napi_value names(napi_env env, uint32_t count, const char *(*name_of)(uint32_t)) {
  napi_value array, name;
  napi_create_array_with_length(env, count, &array);
  for (uint32_t i = 0; i < count; i++) {
    napi_create_string_utf8(env, name_of(i), NAPI_AUTO_LENGTH, &name);
    napi_set_element(env, array, i, name);
  }
  return array;
}

/*
 * { slots, reasons }: the name of each of report()'s slots in its order, and of each state (the
 * `state` slot's value) — what JavaScript reads report()'s numbers by.
 */
napi_value report_names(napi_env env) {
  napi_value out;
  napi_create_object(env, &out);
  set(env, out, "slots", names(env, S_COUNT, slot_name));
  set(env, out, "reasons", names(env, R_BACKEND_VIOLATION + 1, state_name));
  return out;
}

/*
 * report(handle, out) → what the carrier knows of the session now (or when it ended), and how it
 * ended, as numbers into `out` (a Float64Array of REPORT_SLOTS) that JavaScript names by
 * `reportNames`: an object built here property by property costs some 2 µs (each name made, each
 * property stored through V8's slow path), once per session. The unsent byte counts are of bytes
 * ended() takes.
 */
napi_value carrier_report(napi_env env, napi_callback_info info) {
  ARGS(2);
  carrier_t *c = handle_of(env, argv[0]);
  if (!c) return NULL;
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  if (napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok || type != napi_float64_array || length < REPORT_SLOTS) {
    napi_throw_type_error(env, NULL, "report: expected a Float64Array of " TEXT_OF(REPORT_SLOTS));
    return NULL;
  }
  const direction_t *tc = &c->dir[TO_CLIENT], *tb = &c->dir[TO_BACKEND];
  double *out = data;
  out[S_TX_STATUS] = (unsigned char)c->tx_status;
  out[S_UNANSWERED] = c->unanswered;
  out[S_TERMINATED] = c->terminated != 0;
  out[S_BACKEND_SAID_FATAL] = c->backend_said_fatal != 0;
  out[S_BYTES_TO_CLIENT] = (double)tc->bytes;
  out[S_BYTES_TO_BACKEND] = (double)tb->bytes;
  out[S_CLIENT_MID_MESSAGE] = !at_boundary(&tc->out);
  out[S_BACKEND_MID_MESSAGE] = !at_boundary(&tb->out);
  out[S_REUSABLE] = reusable(c) != 0;
  out[S_STATE] = c->state;
  out[S_ERRNO] = c->error;
  out[S_UNSENT_TO_CLIENT] = (double)tc->queue.len;
  out[S_UNSENT_TO_BACKEND] = (double)tb->queue.len;
  return NULL;
}

/* Takes the bytes a destination had not taken when the carrier halted (a Buffer, or undefined). */
static napi_value take_unsent(napi_env env, direction_t *dir) {
  napi_value out;
  if (dir->queue.len == 0) {
    napi_get_undefined(env, &out);
  } else {
    void *copy;
    napi_create_buffer_copy(env, dir->queue.len, dir->queue.data + dir->queue.head, &copy, &out);
  }
  bytes_free(&dir->queue);
  return out;
}

/* ended(handle) → how it ended: { reason, errno, violation?, unsentToClient?, unsentToBackend? }. */
napi_value carrier_ended(napi_env env, napi_callback_info info) {
  ARGS(1);
  carrier_t *c = handle_of(env, argv[0]);
  if (!c) return NULL;
  napi_value out, reason;
  napi_create_object(env, &out);
  napi_create_string_utf8(env, reason_name(c->state), NAPI_AUTO_LENGTH, &reason);
  set(env, out, "reason", reason);
  set(env, out, "errno", number(env, c->error));
  if (c->state == R_CLIENT_VIOLATION || c->state == R_BACKEND_VIOLATION) {
    napi_value v, code, kind;
    napi_create_object(env, &v);
    char ch = (char)c->violation_code;
    napi_create_string_latin1(env, &ch, 1, &code);
    napi_create_string_utf8(env, c->violation_kind == V_TOO_LONG ? "too-long" : "invalid-length", NAPI_AUTO_LENGTH, &kind);
    set(env, v, "code", code);
    set(env, v, "length", number(env, c->violation_length));
    set(env, v, "kind", kind);
    set(env, out, "violation", v);
  }
  if (c->state != R_RUNNING) {
    set(env, out, "unsentToClient", take_unsent(env, &c->dir[TO_CLIENT]));
    set(env, out, "unsentToBackend", take_unsent(env, &c->dir[TO_BACKEND]));
  }
  return out;
}

/* timings(handle) → Float64Array of the statements finished since the last call (seconds; -1 - seconds for a failure). */
napi_value carrier_timings(napi_env env, napi_callback_info info) {
  ARGS(1);
  carrier_t *c = handle_of(env, argv[0]);
  if (!c) return NULL;
  napi_value buffer, out;
  void *data = NULL;
  napi_create_arraybuffer(env, c->timings_len * sizeof(double), &data, &buffer);
  napi_create_typedarray(env, napi_float64_array, c->timings_len, buffer, 0, &out);
  if (c->timings_len) memcpy(data, c->timings, c->timings_len * sizeof(double));
  c->timings_len = 0;
  return out;
}

/* live() → carriers allocated (running, or ended and not yet released by JavaScript's GC). */
napi_value carrier_live(napi_env env, napi_callback_info info) {
  napi_value out;
  napi_create_int64(env, g.live, &out);
  return out;
}
