/*
 * Handing the native carrier's batches to JavaScript: once per turn of the loop for every session
 * read in it, not once per read. See carrier.h.
 */
#include <stdlib.h>
#include <string.h>

#include "carrier.h"

static void free_assembled(napi_env env, void *data, void *hint) { free(data); }

/*
 * Batches are handed to JavaScript once per turn of the loop, not once per read: every session's
 * batch read in one poll goes in one call (a check handle runs right after the poll), so the
 * call into JavaScript, and the log lines a batch writes (see src/pipeline/carrier.ts,
 * `nativeBatchHooks`), are paid once for all of them. Until its batch is handed over, nothing
 * read from the same direction is forwarded from C, and any event of the carrier's waits for it.
 */
void queue_batch(carrier_t *c, int d) {
  uint32_t *h = g.tape + 3 * g.tape_base;
  h[0] = (uint32_t)T_BATCH << 8 | (uint32_t)d;
  h[1] = g.tape_len;
  h[2] = 0;
  g.queue[g.queued].c = c;
  g.queue[g.queued].assembled = g.assembled;
  g.queue[g.queued].assembled_len = g.assembled_len;
  g.queue[g.queued].at = g.tape_base;
  g.queue[g.queued].d = d;
  g.queued++;
  g.assembled = NULL;
  g.tape_base += 1 + g.tape_len;
  g.tape_len = 0;
  c->refs++;
  c->dir[d].queued++;
}

/*
 * One call into JavaScript with the first `n` batches queued: (region, n, then per batch its
 * carrier, undefined once that has ended, and its assembled message or undefined). Arguments,
 * not an array: setting an array's elements through N-API costs more than the call.
 */
static void hand(napi_env env, uint32_t n, int plain) {
  napi_value argv[2 + 2 * MAX_QUEUED], fn, recv, result, undefined;
  napi_get_undefined(env, &undefined);
  napi_get_reference_value(env, g.slab_ref, &argv[0]);
  napi_create_uint32(env, n, &argv[1]);
  for (uint32_t i = 0; i < n; i++) {
    carrier_t *c = g.queue[i].c;
    napi_value *v = argv + 2 + 2 * i;
    v[0] = v[1] = undefined;
    if (c->self) napi_get_reference_value(env, c->self, &v[0]);
    uint8_t *a = g.queue[i].assembled;
    if (a && napi_create_external_arraybuffer(env, a, g.queue[i].assembled_len, free_assembled, NULL, &v[1]) != napi_ok) {
      free(a);
      v[1] = undefined;
    }
  }
  napi_get_reference_value(env, g.batch_fn, &fn);
  napi_get_global(env, &recv);
  size_t argc = 2 + 2 * (size_t)n;
  napi_status status = plain ? napi_call_function(env, recv, fn, argc, argv, &result)
                             : napi_make_callback(env, g.async, recv, fn, argc, argv, &result);
  if (status == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
}

/*
 * Hands every queued batch to JavaScript, in the order read; `plain` from inside JavaScript. A
 * batch queued while JavaScript runs (bytes fed to a carrier it starts) goes in the next call,
 * right after, its entries moved to the tape's start.
 */
void hand_batches(int plain) {
  if (g.queued == 0 || g.handing) return;
  napi_env env = g.env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  g.handing = 1;
  while (g.queued > 0) {
    uint32_t n = g.queued;
    hand(env, n, plain);
    for (uint32_t i = 0; i < n; i++) {
      carrier_t *c = g.queue[i].c;
      c->dir[g.queue[i].d].queued--;
      release_carrier(c);
    }
    uint32_t rest = g.queued - n, from = rest ? g.queue[n].at : g.tape_base;
    memmove(g.tape, g.tape + 3 * from, 3 * sizeof *g.tape * (g.tape_base - from));
    for (uint32_t i = 0; i < rest; i++) {
      g.queue[i] = g.queue[n + i];
      g.queue[i].at -= from;
    }
    g.tape_base -= from;
    g.queued = rest;
  }
  g.handing = 0;
  napi_close_handle_scope(env, scope);
}

static void on_check(uv_check_t *handle) { hand_batches(0); }

/* The check handle that hands batches over after each poll; it keeps no loop alive. */
int batches_init(napi_env env) {
  if (g.check_ready) return 0;
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return -1;
  int err = uv_check_init(loop, &g.check);
  if (err) return err;
  uv_check_start(&g.check, on_check);
  uv_unref((uv_handle_t *)&g.check);
  g.check_ready = 1;
  return 0;
}

