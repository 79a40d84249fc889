/*
 * Handing the native carrier's batches to JavaScript: once per turn of the loop for every session
 * read in it, not once per read; and the read region they are views of. See carrier.h.
 */
#include <stdlib.h>
#include <string.h>

#include "carrier.h"

static void free_assembled(napi_env env, void *data, void *hint) { free(data); }

/* ---- the shared read region, whose bytes the batches are views of ---- */

static size_t region_left(void) { return g.slab ? g.slab_size - g.slab_used : 0; }

/* Whether a read of up to `want` bytes needs a new region. */
int region_changes(size_t want) { return region_left() < (want < READ_MIN ? want : READ_MIN); }

/* Room for a read of up to `want` bytes in the shared region (a new region when too little is left). */
uint8_t *read_region(size_t want, size_t *room) {
  size_t left = region_left();
  if (region_changes(want)) {
    /* The batches queued are views of this region: JavaScript has them before it changes. */
    hand_batches(0);
    size_t size = want > SLAB_SIZE ? want : SLAB_SIZE;
    napi_value buffer;
    void *data = NULL;
    if (napi_create_arraybuffer(g.env, size, &data, &buffer) != napi_ok) return NULL;
    /* The old region lives on as long as JavaScript holds a view of it. */
    if (g.slab_ref) napi_delete_reference(g.env, g.slab_ref);
    napi_create_reference(g.env, buffer, 1, &g.slab_ref);
    g.slab = data;
    g.slab_size = size;
    g.slab_used = 0;
    left = size;
  }
  *room = left < want ? left : want;
  return g.slab + g.slab_used;
}

/*
 * Batches are handed to JavaScript once per turn of the loop, not once per read: every session's
 * batch read in one poll goes in one call (a check handle runs right after the poll), so the
 * call into JavaScript, and the log lines a batch writes (see src/pipeline/carrier.ts,
 * `nativeBatchHooks`), are paid once for all of them. Until its batch is handed over, nothing
 * read from the same direction is forwarded from C, and any event of the carrier's waits for it.
 * Observed-only batches (forwarded already) hold nothing back: they wait for this timer, or go
 * sooner with a held batch, an event, the end, or a full tape or region.
 */
static void on_timer(uv_timer_t *handle) {
  g.timer_armed = 0;
  hand_batches(0);
}

void queue_batch(carrier_t *c, int d, int observed_only) {
  uint32_t *h = g.tape + 3 * g.tape_base;
  h[0] = (uint32_t)T_BATCH << 8 | (uint32_t)d | (observed_only ? B_OBSERVED_ONLY : 0);
  h[1] = g.tape_len;
  /* When it was read: durations measured in JavaScript start here, not at the hand-over. */
  h[2] = (uint32_t)(uv_hrtime() / 1000);
  g.queue[g.queued].c = c;
  g.queue[g.queued].assembled = g.assembled;
  g.queue[g.queued].assembled_len = g.assembled ? g.assembled_len : 0;
  g.queue[g.queued].at = g.tape_base;
  g.queue[g.queued].d = d;
  g.queue[g.queued].observed_only = observed_only;
  g.queued++;
  g.observed_assembled += g.assembled ? g.assembled_len : 0;
  g.assembled = NULL;
  g.tape_base += 1 + g.tape_len;
  g.tape_len = 0;
  c->refs++;
  if (!observed_only) {
    c->dir[d].queued++;
    g.held++;
  } else {
    c->dir[d].observed++;
    if (!g.timer_armed && g.check_ready && !g.handing) {
      uv_timer_start(&g.timer, on_timer, HAND_OVER_MS, 0);
      g.timer_armed = 1;
    }
  }
}

/* Observed messages of this carrier's that JavaScript has not seen yet. */
int observed_waiting(const carrier_t *c) { return c->dir[TO_BACKEND].observed || c->dir[TO_CLIENT].observed; }

/*
 * One call into JavaScript with `n` batches queued from `first`: (region, n, then per batch its
 * carrier, undefined once that has ended, and its assembled message or undefined). Arguments,
 * not an array: setting an array's elements through N-API costs more than the call.
 */
static void hand(napi_env env, uint32_t first, uint32_t n, int plain) {
  napi_value argv[2 + 2 * MAX_QUEUED], fn, recv, result, undefined;
  napi_get_undefined(env, &undefined);
  napi_get_reference_value(env, g.slab_ref, &argv[0]);
  napi_create_uint32(env, n, &argv[1]);
  for (uint32_t i = 0; i < n; i++) {
    carrier_t *c = g.queue[first + i].c;
    napi_value *v = argv + 2 + 2 * i;
    v[0] = v[1] = undefined;
    if (c->self) napi_get_reference_value(env, c->self, &v[0]);
    uint8_t *a = g.queue[first + i].assembled;
    if (a && napi_create_external_arraybuffer(env, a, g.queue[first + i].assembled_len, free_assembled, NULL, &v[1]) != napi_ok) {
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
 * The batches from `first` on were handed over: each carrier settles what its batch made due (a
 * stop that waited for it, a failed write) unless a poll callback of its own will, and is let
 * go; the queue and the tape shrink back.
 */
static void handed(uint32_t first) {
  uint32_t last = g.queued, base = first < last ? g.queue[first].at : g.tape_base;
  for (uint32_t i = first; i < last; i++) {
    carrier_t *c = g.queue[i].c;
    g.observed_assembled -= g.queue[i].assembled_len;
    if (g.queue[i].observed_only) {
      c->dir[g.queue[i].d].observed--;
    } else {
      c->dir[g.queue[i].d].queued--;
      g.held--;
      if (!c->busy) settle(c);
    }
    release_carrier(c);
  }
  g.tape_base = base;
  g.queued = first;
}

/*
 * Hands every queued batch to JavaScript, in the order read; `plain` from inside JavaScript.
 * Nothing is queued while JavaScript runs: bytes fed to a carrier then are handed over at once
 * (feed_batch).
 */
void hand_batches(int plain) {
  if (g.queued == 0 || g.handing) return;
  if (g.timer_armed) {
    uv_timer_stop(&g.timer);
    g.timer_armed = 0;
  }
  napi_env env = g.env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  g.handing = 1;
  hand(env, 0, g.queued, plain);
  handed(0);
  g.handing = 0;
  napi_close_handle_scope(env, scope);
}

/*
 * The batch just framed, for a carrier fed from JavaScript: queued with the others and handed
 * over at once, or — JavaScript being in the middle of a hand-over — handed over alone, its
 * entries after those JavaScript is reading (framing always leaves a read's worth of room there).
 */
void feed_batch(carrier_t *c, int d, int observed_only) {
  if (!g.handing) {
    queue_batch(c, d, observed_only);
    hand_batches(1);
    return;
  }
  napi_handle_scope scope;
  uint32_t first = g.queued;
  queue_batch(c, d, observed_only);
  if (napi_open_handle_scope(g.env, &scope) == napi_ok) {
    hand(g.env, first, 1, 1);
    napi_close_handle_scope(g.env, scope);
  }
  handed(first);
}

/* After each poll: batches that hold their direction go now; observed-only ones wait for the timer. */
static void on_check(uv_check_t *handle) {
  if (g.held > 0) hand_batches(0);
}

/* The check handle that hands batches over after each poll; it keeps no loop alive. */
int batches_init(napi_env env) {
  if (g.check_ready) return 0;
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return -1;
  int err = uv_check_init(loop, &g.check);
  if (err) return err;
  uv_check_start(&g.check, on_check);
  uv_unref((uv_handle_t *)&g.check);
  err = uv_timer_init(loop, &g.timer);
  if (err) return err;
  uv_unref((uv_handle_t *)&g.timer);
  g.check_ready = 1;
  return 0;
}

