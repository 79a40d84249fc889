/*
 * The native carrier's life on the loop: polling both endpoints, reading into the region every
 * session shares, writing and queueing what a destination does not take at once, stopping and
 * ending. See carrier.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "carrier.h"
#include "fd-io.h"

globals_t g;

/* ---- held bytes ---- */

int bytes_append(bytes_t *b, const uint8_t *p, size_t n) {
  if (n == 0) return 0;
  if (b->head > 0 && b->head + b->len + n > b->cap) {
    memmove(b->data, b->data + b->head, b->len);
    b->head = 0;
  }
  if (b->head + b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n) cap *= 2;
    uint8_t *grown = realloc(b->data, cap);
    if (!grown) return -1;
    b->data = grown;
    b->cap = cap;
  }
  memcpy(b->data + b->head + b->len, p, n);
  b->len += n;
  return 0;
}

void bytes_free(bytes_t *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

/* ---- calls into JavaScript ---- */

static void call(carrier_t *c, napi_ref fn_ref, size_t argc, napi_value *argv) {
  napi_env env = c->env;
  napi_value fn, recv, result;
  napi_get_reference_value(env, fn_ref, &fn);
  napi_get_global(env, &recv);
  napi_status status = c->in_js ? napi_call_function(env, recv, fn, argc, argv, &result)
                                : napi_make_callback(env, g.async, recv, fn, argc, argv, &result);
  if (status == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
}

void emit(carrier_t *c, int event) {
  /* Whatever the carrier read before this event reaches JavaScript before it (timings need no order, and come mid-framing). */
  if (event != EV_TIMINGS_FULL) hand_batches(c->in_js);
  napi_handle_scope scope;
  if (!c->self || !g.event_fn || napi_open_handle_scope(c->env, &scope) != napi_ok) return;
  napi_value argv[2];
  napi_get_reference_value(c->env, c->self, &argv[0]);
  napi_create_int32(c->env, event, &argv[1]);
  call(c, g.event_fn, 2, argv);
  napi_close_handle_scope(c->env, scope);
}

/* ---- reading and writing ---- */

void send_bytes(carrier_t *c, int d, const uint8_t *p, size_t n) {
  direction_t *dir = &c->dir[d];
  if (n == 0 || dir->write_error || c->state != R_RUNNING) return;
  if (dir->queue.len == 0) {
    io_t *io = &c->ep[dst_of(d)].io;
    while (n > 0) {
      ssize_t w = io->ops->write(io, p, n);
      if (w == IO_AGAIN) break;
      if (w < 0) {
        dir->write_error = errno ? errno : EIO;
        return;
      }
      dir->bytes += (double)w;
      p += w;
      n -= (size_t)w;
    }
  }
  if (n > 0 && bytes_append(&dir->queue, p, n) < 0) dir->write_error = ENOMEM;
}

static void flush_queue(carrier_t *c, int d) {
  direction_t *dir = &c->dir[d];
  io_t *io = &c->ep[dst_of(d)].io;
  while (dir->queue.len > 0 && !dir->write_error) {
    ssize_t w = io->ops->write(io, dir->queue.data + dir->queue.head, dir->queue.len);
    if (w == IO_AGAIN) return;
    if (w < 0) {
      dir->write_error = errno ? errno : EIO;
      return;
    }
    dir->bytes += (double)w;
    dir->queue.head += (size_t)w;
    dir->queue.len -= (size_t)w;
  }
  /* Drained: per-session memory only while something waits. */
  bytes_free(&dir->queue);
}

/*
 * Forwards what was read, nothing of it being held for JavaScript; the tape keeps only the
 * observed entries (already forwarded), for JavaScript to see later. Their bytes stay where
 * they are in the region until then.
 */
static void forward_read(carrier_t *c, int d) {
  uint32_t *t = g.tape + 3 * (g.tape_base + 1);
  uint32_t kept = 0, run = 0, run_end = 0;
  for (uint32_t e = 0; e < g.tape_len; e++) {
    uint32_t kind = t[3 * e] >> 8, offset = t[3 * e + 1], length = t[3 * e + 2];
    /* Adjacent ranges go in one write. An assembled entry went on in pieces, as its bytes came. */
    if (kind != T_OBSERVE_ASSEMBLED) {
      if (offset != run_end) {
        if (run_end > run) carrier_put(c, d, g.slab + run, run_end - run, 1);
        run = offset;
      }
      run_end = offset + length;
    }
    if (kind == T_FORWARD) continue;
    if (kept != e) memcpy(t + 3 * kept, t + 3 * e, 3 * sizeof *t);
    kept++;
  }
  if (run_end > run) carrier_put(c, d, g.slab + run, run_end - run, 1);
  g.tape_len = kept;
}

/* Frames what was read and forwards it, or hands it to JavaScript with what it must see. */
void process_read(carrier_t *c, int d, uint8_t *buf, size_t n) {
  int delivers = 0, observes = 0;
  g.tape_len = 0;
  if (frame_input(c, d, buf, n, &delivers, &observes) < 0) {
    free(g.assembled);
    g.assembled = NULL;
    end(c, d == TO_BACKEND ? R_CLIENT_VIOLATION : R_BACKEND_VIOLATION, 0);
    return;
  }
  /* Nothing held for JavaScript, and nothing of this direction waiting for it: forwarded now. */
  int observed_only = !delivers && !c->dir[d].queued;
  if (observed_only) {
    forward_read(c, d);
    /* Nothing to show either: the region is reused by the next read, whoever's it is. */
    if (!observes) return;
  }
  /* JavaScript may keep views of these bytes: they are never read over. */
  g.slab_used = (size_t)(buf + n - g.slab);
  /* Fed from JavaScript (bytes read before the carrier started): handed over at once, as before. */
  if (c->in_js) return feed_batch(c, d, observed_only);
  queue_batch(c, d, observed_only);
  /* The next read must find a slot and a read's worth of room on the tape (a feed's too, see feed_batch). */
  if (g.queued == MAX_QUEUED || TAPE_TOTAL - g.tape_base < TAPE_ENTRIES + 1 || g.observed_assembled > OBSERVED_PENDING_MAX) hand_batches(0);
}

static int wants_read(const carrier_t *c, int d);

static void pump(carrier_t *c, int d) {
  direction_t *dir = &c->dir[d];
  size_t want = READ_MAX;
  if (c->stopping) {
    /* Read no further than the end of the message in flight, so nothing is read past the boundary. */
    if (at_boundary(&dir->in)) return;
    size_t rest = dir->in.hlen > 0 ? (size_t)(5 - dir->in.hlen) : dir->in.body_left;
    if (rest < want) want = rest;
  }
  if (g.queued > 0 && region_changes(want)) {
    /* JavaScript runs here (the queued batches are views of the region): it may pause or stop this side. */
    hand_batches(0);
    if (!wants_read(c, d)) return;
    return pump(c, d);
  }
  size_t room;
  uint8_t *buf = read_region(want, &room);
  if (!buf) return end(c, d == TO_BACKEND ? R_CLIENT_ERROR : R_BACKEND_ERROR, ENOMEM);
  io_t *io = &c->ep[src_of(d)].io;
  ssize_t n = io->ops->read(io, buf, room);
  if (n == IO_AGAIN) return;
  if (n < 0) return end(c, d == TO_BACKEND ? R_CLIENT_ERROR : R_BACKEND_ERROR, errno);
  if (n == 0) {
    if (d == TO_BACKEND && reusable(c) && !c->dir[TO_BACKEND].queued) return end(c, R_RELEASED, 0);
    return end(c, d == TO_BACKEND ? R_CLIENT_EOF : R_BACKEND_EOF, 0);
  }
  process_read(c, d, buf, (size_t)n);
}

/* ---- polling ---- */

/* Polled through a handle its io lends (a TLS endpoint's), not one of the carrier's own. */
static int borrowed(const endpoint_t *ep) { return ep->io.ops->watch != NULL; }

static int wants_read(const carrier_t *c, int d) {
  const direction_t *dir = &c->dir[d];
  if (c->state != R_RUNNING || c->release_due || c->abort_due || c->ep[src_of(d)].paused || dir->queue.len > 0) return 0;
  return !(c->stopping && at_boundary(&dir->in));
}

static int wants_write(const carrier_t *c, int d) {
  return c->state == R_RUNNING && (c->dir[d].queue.len > 0 || c->dir[d].write_error);
}

static void on_poll(uv_poll_t *handle, int status, int events);

void update_polls(carrier_t *c) {
  for (int e = 0; e < 2; e++) {
    endpoint_t *ep = &c->ep[e];
    int reader = e == CLIENT ? TO_BACKEND : TO_CLIENT;
    int writer = e == CLIENT ? TO_CLIENT : TO_BACKEND;
    int events = ep->io.ops->poll_events(&ep->io, wants_read(c, reader), wants_write(c, writer));
    if (events == ep->events) continue;
    ep->events = events;
    if (borrowed(ep)) ep->io.ops->poll(&ep->io, events);
    else if (events) uv_poll_start(&ep->poll, events, on_poll);
    else uv_poll_stop(&ep->poll);
  }
}

static void on_closed(uv_handle_t *handle) { release_carrier(((endpoint_t *)handle->data)->c); }

/* Stops polling for good and lets go of the endpoints: Node's sockets take over from here. */
void halt(carrier_t *c, int state) {
  c->state = state;
  for (int e = 0; e < 2; e++) {
    /* Closing the handle takes the descriptor out of epoll at once (the callback comes later): only then is it closed. */
    c->ep[e].events = 0;
    /* A borrowed poll handle goes back with the io (its events as they are: the lender polls on). */
    if (!borrowed(&c->ep[e])) uv_close((uv_handle_t *)&c->ep[e].poll, on_closed);
    c->ep[e].io.ops->release(&c->ep[e].io);
  }
  /* Whole messages that waited for a stream to finish a message can follow it no more. */
  for (int d = 0; d < 2; d++) bytes_free(&c->dir[d].deferred);
  bytes_free(&c->dir[TO_BACKEND].assembling);
  bytes_free(&c->dir[TO_CLIENT].assembling);
}

/* The callbacks hold the session's objects: they must not outlive the carrier (a reference from here is a GC root). */
static void drop_self(carrier_t *c) {
  if (c->self) napi_delete_reference(c->env, c->self);
  c->self = NULL;
}

void end(carrier_t *c, int state, int error) {
  if (c->state != R_RUNNING) return;
  /* What was read before the end reaches JavaScript while the carrier still writes (see batches.c). */
  if (c->dir[TO_BACKEND].queued || c->dir[TO_CLIENT].queued || observed_waiting(c)) {
    hand_batches(c->in_js);
    if (c->state != R_RUNNING) return;
  }
  c->error = error;
  halt(c, state);
  emit(c, EV_END);
  drop_self(c);
}

/* Halts for a JavaScript call that learns of the end from its own result, with no event. */
void halt_quietly(carrier_t *c, int state, int error) {
  c->error = error;
  halt(c, state);
  drop_self(c);
}

int stop_settled(const carrier_t *c) {
  /* A batch not handed over yet may still write: the stop settles after it (see handed in batches.c). */
  if (!c->stopping || c->dir[TO_BACKEND].queued || c->dir[TO_CLIENT].queued) return 0;
  for (int d = 0; d < 2; d++) {
    const direction_t *dir = &c->dir[d];
    if (!at_boundary(&dir->in) || dir->queue.len > 0 || dir->deferred.len > 0) return 0;
  }
  return 1;
}

/* After a read, a write or a stop request: ends what must end, tells what must be told, polls for the rest. */
void settle(carrier_t *c) {
  if (c->state != R_RUNNING) return;
  if (c->abort_due) {
    for (int d = 0; d < 2; d++) bytes_free(&c->dir[d].queue);
    return end(c, R_STOPPED, 0);
  }
  for (int d = 0; d < 2; d++) {
    int err = c->dir[d].write_error;
    if (err) return end(c, d == TO_CLIENT ? R_CLIENT_ERROR : R_BACKEND_ERROR, err);
  }
  if (c->release_due) return end(c, R_RELEASED, 0);
  if (stop_settled(c)) return end(c, R_STOPPED, 0);
  if (c->idle_due) {
    c->idle_due = 0;
    emit(c, EV_IDLE);
    if (c->state != R_RUNNING) return;
  }
  update_polls(c);
}

static void on_event(void *data, int status, int events) {
  endpoint_t *ep = data;
  carrier_t *c = ep->c;
  int e = ep == &c->ep[CLIENT] ? CLIENT : BACKEND;
  if (c->state != R_RUNNING) return;
  napi_handle_scope scope;
  if (napi_open_handle_scope(c->env, &scope) != napi_ok) return;
  c->busy = 1;
  if (status < 0) {
    int err = status == UV_EBADF ? fd_pending_error(ep->io.fd) : 0;
    end(c, e == CLIENT ? R_CLIENT_ERROR : R_BACKEND_ERROR, err ? err : -status);
  } else {
    int ready = ep->io.ops->ready(&ep->io, events);
    if (ready & IO_READY_WRITE) flush_queue(c, e == CLIENT ? TO_CLIENT : TO_BACKEND);
    int d = e == CLIENT ? TO_BACKEND : TO_CLIENT;
    if ((ready & IO_READY_READ) && wants_read(c, d)) pump(c, d);
  }
  c->busy = 0;
  settle(c);
  napi_close_handle_scope(c->env, scope);
}

static void on_poll(uv_poll_t *handle, int status, int events) { on_event(handle->data, status, events); }

void release_carrier(carrier_t *c) {
  if (--c->refs > 0) return;
  g.live--;
  for (int d = 0; d < 2; d++) {
    bytes_free(&c->dir[d].queue);
    bytes_free(&c->dir[d].deferred);
    bytes_free(&c->dir[d].assembling);
  }
  if (c->starts != c->starts_inline) free(c->starts);
  free(c->capture);
  free(c->timings);
  free(c);
}

/* libuv refused a poll handle: the endpoints are released, and a handle already made is closed (its close frees the carrier). */
static carrier_t *open_failed(carrier_t *c, int err, int *uv_error) {
  *uv_error = err;
  for (int e = 0; e < 2; e++) c->ep[e].io.ops->release(&c->ep[e].io);
  /* JavaScript's reference, never handed out. */
  if (--c->refs == 0) {
    free(c);
    return NULL;
  }
  g.live++;
  uv_close((uv_handle_t *)&c->ep[0].poll, on_closed);
  return NULL;
}

/* Starts polling two endpoints (which the carrier now owns); NULL when libuv refuses (the endpoints are released). */
carrier_t *carrier_open(napi_env env, const io_t ios[2], int *uv_error) {
  uv_loop_t *loop;
  carrier_t *c = napi_get_uv_event_loop(env, &loop) == napi_ok ? calloc(1, sizeof *c) : NULL;
  if (!c) {
    for (int e = 0; e < 2; e++) ios[e].ops->release((io_t *)&ios[e]);
    return NULL;
  }
  c->env = env;
  c->tx_status = 'I';
  c->starts = c->starts_inline;
  c->starts_cap = INLINE_STARTS;
  /* References: JavaScript's handle, and each poll handle of the carrier's own until it is closed. */
  c->refs = 1;
  for (int e = 0; e < 2; e++) {
    c->ep[e].c = c;
    c->ep[e].io = ios[e];
  }
  for (int e = 0; e < 2; e++) {
    endpoint_t *ep = &c->ep[e];
    /* A borrowed handle polls for the carrier as it was polling (most often: readable). */
    if (borrowed(ep)) {
      ep->events = ep->io.ops->watch(&ep->io, on_event, ep);
      continue;
    }
    int err = uv_poll_init(loop, &ep->poll, ep->io.fd);
    if (err) return open_failed(c, err, uv_error);
    ep->poll.data = ep;
    c->refs++;
  }
  g.live++;
  return c;
}
