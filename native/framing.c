/*
 * What crosses the carrier in each direction. Bytes read from a source are framed once
 * (`frame_input`): each message is either forwarded or marked for JavaScript, and the batch tape
 * says which, in order. Bytes written to a destination, forwarded or from JavaScript, pass
 * `carrier_put`, which frames them again. The session's bookkeeping follows the protocol table
 * (pg-protocol.h): requests are counted as they are read, answers and statements as they are
 * read from the backend, ReadyForQuery and Terminate as they are written.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "carrier.h"

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* ---- statement timing ---- */

static void statement_started(carrier_t *c) {
  if (c->starts_len == c->starts_cap) {
    if (c->starts_cap >= MAX_IN_FLIGHT) return;
    uint32_t cap = c->starts_cap * 2;
    uint64_t *grown = malloc(cap * sizeof *grown);
    if (!grown) return;
    for (uint32_t i = 0; i < c->starts_len; i++) grown[i] = c->starts[(c->starts_head + i) % c->starts_cap];
    if (c->starts != c->starts_inline) free(c->starts);
    c->starts = grown;
    c->starts_cap = cap;
    c->starts_head = 0;
  }
  c->starts[(c->starts_head + c->starts_len) % c->starts_cap] = uv_hrtime();
  c->starts_len++;
}

static void statement_done(carrier_t *c, int ok) {
  if (c->starts_len == 0) return;
  uint64_t started = c->starts[c->starts_head];
  c->starts_head = (c->starts_head + 1) % c->starts_cap;
  c->starts_len--;
  double seconds = (double)(uv_hrtime() - started) / 1e9;
  c->timings[c->timings_len++] = ok ? seconds : -1 - seconds;
  if (c->timings_len == TIMINGS_SIZE) {
    emit(c, EV_TIMINGS_FULL);
    /* Taken, or nobody listens: either way there is room again. */
    c->timings_len = 0;
  }
}

/* Nothing is running any more: a ReadyForQuery came, or the session changes hands. */
void statements_reset(carrier_t *c) {
  c->starts_len = 0;
  c->starts_head = 0;
  if (c->starts != c->starts_inline) {
    free(c->starts);
    c->starts = c->starts_inline;
    c->starts_cap = INLINE_STARTS;
  }
}

/* ---- what an ErrorResponse says ---- */

static int severity_leaves(const uint8_t *value, size_t len) {
  for (int i = 0; i < PGP_LEAVING_SEVERITY_COUNT; i++) {
    const char *s = pgp_leaving_severities[i];
    if (strlen(s) == len && memcmp(s, value, len) == 0) return 1;
  }
  return 0;
}

/* Whether an ErrorResponse body (or its first bytes) says the backend is leaving. */
static int leaving(const uint8_t *body, uint32_t len) {
  int localized = 0;
  uint32_t i = 0;
  while (i < len && body[i] != 0) {
    uint8_t field = body[i++];
    const uint8_t *value = body + i;
    while (i < len && body[i] != 0) i++;
    if (i >= len) break;
    size_t vlen = (size_t)(body + i - value);
    i++;
    if (field == PGP_SEVERITY_FIELD) return severity_leaves(value, vlen);
    if (field == PGP_LOCALIZED_SEVERITY_FIELD) localized = severity_leaves(value, vlen);
  }
  return localized;
}

/* ---- input: bytes read from a source ---- */

static void input_started(carrier_t *c, int d, uint8_t code) {
  if (d == TO_BACKEND) {
    if (pgp_frontend_flags[code] & PGP_FE_AWAITS_READY) c->unanswered++;
    return;
  }
  if (!c->timing) return;
  uint8_t f = pgp_backend_flags[code];
  if (f & PGP_BE_ENDS_OK) statement_done(c, 1);
  else if (f & PGP_BE_ENDS_ERROR) statement_done(c, 0);
  /* Executes skipped after an error never ran: nothing to count. */
  else if (f & PGP_BE_READY) statements_reset(c);
}

/* A message from the backend ended: is its last word that it leaves? `body` holds the first bytes of an ErrorResponse. */
static void input_ended(carrier_t *c, uint8_t code, const uint8_t *body, uint32_t len) {
  uint8_t f = pgp_backend_flags[code];
  if (f & PGP_BE_REPORTS_ERROR) c->backend_said_fatal = (uint8_t)leaving(body, len);
  else if (!(f & PGP_BE_KEEPS_LAST_WORD)) c->backend_said_fatal = 0;
}

static void tape_put(int kind, uint8_t code, uint32_t offset, uint32_t length) {
  uint32_t *t = g.tape + 3 * (g.tape_base + 1 + g.tape_len);
  if (kind == T_FORWARD && g.tape_len > 0 && (t[-3] >> 8) == T_FORWARD && t[-2] + t[-1] == offset) {
    t[-1] += length;
    return;
  }
  t[0] = (uint32_t)kind << 8 | code;
  t[1] = offset;
  t[2] = length;
  g.tape_len++;
}

/* Refuses an impossible length, one over the type's limit, or one too long to hold for JavaScript. */
static int refuse(carrier_t *c, int d, uint8_t code, uint32_t len, int marked) {
  uint32_t max = d == TO_BACKEND ? pgp_frontend_max_length[code] : pgp_backend_max_length[code];
  if (max == 0) max = PGP_MAX_LENGTH;
  int kind = len < 4 || len > max ? V_INVALID_LENGTH : marked && len > c->dir[d].max_assembled ? V_TOO_LONG : 0;
  if (!kind) return 0;
  c->violation_code = code;
  c->violation_length = len;
  c->violation_kind = (uint8_t)kind;
  return 1;
}

/* A message whose header is complete goes on in later reads. */
static int begin_message(carrier_t *c, int d, framing_t *f, uint32_t len) {
  f->body_left = len - 4;
  f->body_seen = 0;
  input_started(c, d, f->code);
  if (f->marked || f->observed) {
    bytes_t *a = &c->dir[d].assembling;
    a->data = malloc((size_t)len + 1);
    if (!a->data) return -1;
    a->cap = (size_t)len + 1;
    a->head = 0;
    a->len = 0;
    bytes_append(a, f->hdr, 5);
  }
  if (d == TO_CLIENT && (pgp_backend_flags[f->code] & PGP_BE_REPORTS_ERROR)) {
    c->capture = malloc(ERROR_HEAD);
    c->capture_len = 0;
  }
  return 0;
}

static void body_bytes(carrier_t *c, int d, framing_t *f, const uint8_t *p, size_t n) {
  if (f->marked || f->observed) bytes_append(&c->dir[d].assembling, p, n);
  if (c->capture && d == TO_CLIENT && c->capture_len < ERROR_HEAD) {
    size_t take = ERROR_HEAD - c->capture_len;
    if (take > n) take = n;
    memcpy(c->capture + c->capture_len, p, take);
    c->capture_len += (uint32_t)take;
  }
}

static void finish_message(carrier_t *c, int d, framing_t *f, int *delivers, int *observes) {
  if (d == TO_CLIENT) {
    input_ended(c, f->code, c->capture ? c->capture : (const uint8_t *)"", c->capture_len);
    free(c->capture);
    c->capture = NULL;
  }
  if (!f->marked && !f->observed) return;
  bytes_t *a = &c->dir[d].assembling;
  /* It completes at the start of this read, so it is the batch's only assembled entry. */
  g.assembled = a->data;
  g.assembled_len = (uint32_t)a->len;
  tape_put(f->marked ? T_DELIVER_ASSEMBLED : T_OBSERVE_ASSEMBLED, f->code, 0, (uint32_t)a->len);
  memset(a, 0, sizeof *a);
  *(f->marked ? delivers : observes) = 1;
}

/*
 * Frames `n` bytes just read for direction `d` (they lie in the shared read region): forwarded
 * runs and messages for JavaScript go on the tape in order. Returns -1 on a refused length.
 */
int frame_input(carrier_t *c, int d, const uint8_t *buf, size_t n, int *delivers, int *observes) {
  direction_t *dir = &c->dir[d];
  framing_t *f = &dir->in;
  uint32_t base = (uint32_t)(buf - g.slab);
  size_t i = 0;
  while (i < n) {
    if (f->hlen > 0) {
      size_t take = 5 - (size_t)f->hlen < n - i ? 5 - (size_t)f->hlen : n - i;
      memcpy(f->hdr + f->hlen, buf + i, take);
      if (!f->marked) tape_put(T_FORWARD, 0, base + (uint32_t)i, (uint32_t)take);
      f->hlen += (uint8_t)take;
      i += take;
      if (f->hlen < 5) break;
      f->hlen = 0;
      uint32_t len = be32(f->hdr + 1);
      if (refuse(c, d, f->code, len, f->marked | f->observed)) return -1;
      if (begin_message(c, d, f, len) < 0) return -1;
      if (f->body_left == 0) finish_message(c, d, f, delivers, observes);
    } else if (f->body_left > 0) {
      size_t take = f->body_left < n - i ? f->body_left : n - i;
      body_bytes(c, d, f, buf + i, take);
      if (!f->marked) tape_put(T_FORWARD, 0, base + (uint32_t)i, (uint32_t)take);
      f->body_left -= (uint32_t)take;
      f->body_seen += (uint32_t)take;
      i += take;
      if (f->body_left == 0) finish_message(c, d, f, delivers, observes);
    } else {
      uint8_t code = buf[i];
      int marked = wanted(dir, code);
      int seen = !marked && observed(dir, code);
      if (n - i < 5) {
        /* A header split across reads: forwarded as it comes, unless JavaScript is to have it. */
        f->code = code;
        f->marked = (uint8_t)marked;
        f->observed = (uint8_t)seen;
        f->hlen = (uint8_t)(n - i);
        memcpy(f->hdr, buf + i, n - i);
        if (!marked) tape_put(T_FORWARD, 0, base + (uint32_t)i, (uint32_t)(n - i));
        break;
      }
      uint32_t len = be32(buf + i + 1);
      if (refuse(c, d, code, len, marked | seen)) return -1;
      size_t total = (size_t)len + 1;
      if (n - i >= total) {
        /* The common case: the whole message is in this read. */
        input_started(c, d, code);
        if (d == TO_CLIENT) input_ended(c, code, buf + i + 5, len - 4);
        if (marked) *delivers = 1;
        if (seen) *observes = 1;
        tape_put(marked ? T_DELIVER : seen ? T_OBSERVE : T_FORWARD, marked | seen ? code : 0, base + (uint32_t)i, (uint32_t)total);
        i += total;
        continue;
      }
      f->code = code;
      f->marked = (uint8_t)marked;
      f->observed = (uint8_t)seen;
      memcpy(f->hdr, buf + i, 5);
      if (begin_message(c, d, f, len) < 0) return -1;
      if (!marked) tape_put(T_FORWARD, 0, base + (uint32_t)i, 5);
      i += 5;
    }
  }
  return 0;
}

/* ---- output: bytes written to a destination ---- */

/* The backend can be given back: idle, nothing unanswered, nothing half-read from it or half-written to it. */
int reusable(const carrier_t *c) {
  const direction_t *tb = &c->dir[TO_BACKEND], *tc = &c->dir[TO_CLIENT];
  return c->keep_backend && c->tx_status == 'I' && c->unanswered == 0 && !c->batch_open && !c->backend_said_fatal &&
         at_boundary(&tc->in) && tc->assembling.data == NULL && at_boundary(&tb->out) && tb->queue.len == 0 &&
         tb->deferred.len == 0 && !tb->write_error;
}

static void output_started(carrier_t *c, int d, framing_t *f) {
  if (d != TO_BACKEND || f->marked) return;
  uint8_t flags = pgp_frontend_flags[f->code];
  if (flags & PGP_FE_TERMINATES) c->terminated = 1;
  if (flags & PGP_FE_EXTENDED) c->batch_open = 1;
  if (flags & PGP_FE_CLOSES_BATCH) c->batch_open = 0;
  if ((flags & PGP_FE_STARTS_STATEMENT) && c->timing) statement_started(c);
}

/* The first body byte of a ReadyForQuery reached the client. */
static void output_ready(carrier_t *c, uint8_t status) {
  c->tx_status = (char)status;
  if (c->unanswered > 0) c->unanswered--;
  if (c->watch_idle && status == 'I' && c->unanswered == 0) {
    c->watch_idle = 0;
    c->idle_due = 1;
  }
}

/* Passes `n` bytes of the output stream through its framing; returns how many it took (one message at most). */
static size_t out_step(carrier_t *c, int d, framing_t *f, const uint8_t *p, size_t n) {
  size_t used = 0;
  if (f->body_left == 0 && f->hlen == 0 && d == TO_BACKEND && (pgp_frontend_flags[p[0]] & PGP_FE_TERMINATES) && reusable(c)) {
    /* The backend goes back to the pool: it sees nothing of this Terminate, and nothing follows it. */
    f->marked = 1;
    c->terminated = 1;
  }
  if (f->body_left == 0) {
    size_t take = 5 - (size_t)f->hlen < n ? 5 - (size_t)f->hlen : n;
    memcpy(f->hdr + f->hlen, p, take);
    f->hlen += (uint8_t)take;
    used = take;
    if (f->hlen < 5) return used;
    f->hlen = 0;
    f->code = f->hdr[0];
    uint32_t len = be32(f->hdr + 1);
    f->body_left = len < 4 ? 0 : len - 4;
    f->body_seen = 0;
    output_started(c, d, f);
  }
  size_t take = f->body_left < n - used ? f->body_left : n - used;
  if (take > 0 && f->body_seen == 0 && d == TO_CLIENT && (pgp_backend_flags[f->code] & PGP_BE_READY)) output_ready(c, p[used]);
  f->body_left -= (uint32_t)take;
  f->body_seen += (uint32_t)take;
  return used + take;
}

static void flush_deferred(carrier_t *c, int d) {
  bytes_t held = c->dir[d].deferred;
  memset(&c->dir[d].deferred, 0, sizeof held);
  carrier_put(c, d, held.data + held.head, held.len, 1);
  free(held.data);
}

/*
 * Writes `n` bytes to direction `d`'s destination, after whatever waits there. `continues`: the
 * bytes carry on the stream where it is (forwarded bytes). Otherwise they are whole messages from
 * JavaScript, which wait while the stream is inside a message and follow as soon as it ends.
 */
void carrier_put(carrier_t *c, int d, const uint8_t *p, size_t n, int continues) {
  direction_t *dir = &c->dir[d];
  framing_t *f = &dir->out;
  if (!continues && (!at_boundary(f) || dir->deferred.len > 0)) {
    if (bytes_append(&dir->deferred, p, n) < 0) dir->write_error = ENOMEM;
    return;
  }
  size_t run = 0, i = 0;
  while (i < n) {
    size_t used = out_step(c, d, f, p + i, n - i);
    if (f->marked) {
      /* A dropped Terminate: what came before it goes, it and anything after it do not. */
      send_bytes(c, d, p + run, i - run);
      if (at_boundary(f)) c->release_due = 1;
      return;
    }
    i += used;
    if (at_boundary(f) && dir->deferred.len > 0) {
      send_bytes(c, d, p + run, i - run);
      run = i;
      flush_deferred(c, d);
    }
  }
  send_bytes(c, d, p + run, n - run);
}
