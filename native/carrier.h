/*
 * The native carrier: moves one session's bytes between its client and backend sockets inside
 * libuv's loop. It frames every message in both directions, forwards the ones no middleware asked
 * for straight from C, and hands the ones asked for to JavaScript in one batch per read, the
 * batches of one turn of the loop in one call (batches.c; see
 * src/pipeline/native-carrier.ts); what JavaScript writes back comes in through `carrier_write`.
 *
 * Files: io.c and io-tls.c (an endpoint's reads and writes, plain or TLS), framing.c (what crosses in each direction: input
 * framing, output framing, the session's bookkeeping), carrier.c (polling, queues, the shared read
 * region, ends), batches.c (handing the batches of one turn of the loop to JavaScript in one
 * call), binding.c (the N-API functions).
 */
#ifndef PGWARD_CARRIER_H
#define PGWARD_CARRIER_H

#include <node_api.h>
#include <stdint.h>
#include <uv.h>

#include "io.h"
#include "pg-protocol.h"

/* Most bytes one read takes. */
#define READ_MAX (64 * 1024)
/*
 * The read region shared by every session, and the least room a read gets before a new one is
 * made. A message JavaScript keeps keeps its region alive: small regions bound what that costs.
 */
#define SLAB_SIZE (64 * 1024)
#define READ_MIN (8 * 1024)
/* A batch never has more entries than this: one per message at most, plus the forwarded runs between. */
#define TAPE_ENTRIES (2 * (READ_MAX / 5) + 4)
/*
 * The tape holds the batches of several reads (each after a header entry), handed to JavaScript
 * in one call once the loop has polled (see queue_batch in carrier.c); it is handed over early
 * when a read's worth of room or a slot for its batch is left no more.
 */
#define TAPE_TOTAL (2 * TAPE_ENTRIES + 2)
#define MAX_QUEUED 1024
/* An ErrorResponse's severity is read from at most its first bytes. */
#define ERROR_HEAD 256
/* Statement durations kept until JavaScript takes them (at a scrape, or when this many wait). */
#define TIMINGS_SIZE 64
/* Statements in flight at once beyond this are not timed (a pipeline that deep is rare). */
#define MAX_IN_FLIGHT 65536
#define INLINE_STARTS 4
/*
 * Batches of observed messages only (forwarded from C already) wait this long for JavaScript, so
 * many reads share one hand-over; a held batch, an event, a stop or a full region hands them over
 * sooner. Assembled observed messages waiting past OBSERVED_PENDING_MAX bytes are handed over at once.
 * 16 ms rather than 2: JavaScript's work per statement costs less in fewer, bigger hand-overs
 * (query-log at 32 clients, builds in turn: 33.9 µs of CPU per transaction with 2 ms, 27.8 with 16).
 */
#define HAND_OVER_MS 16
#define OBSERVED_PENDING_MAX (256 * 1024)

/* Directions, and the endpoints they read from. */
enum { TO_BACKEND = 0, TO_CLIENT = 1 };
enum { CLIENT = 0, BACKEND = 1 };

/* What ended or stopped a carrier; named for JavaScript in binding.c. */
enum {
  R_RUNNING = 0,
  R_STOPPED,
  R_RELEASED,
  R_CLIENT_EOF,
  R_BACKEND_EOF,
  R_CLIENT_ERROR,
  R_BACKEND_ERROR,
  R_CLIENT_VIOLATION,
  R_BACKEND_VIOLATION,
};

/* Why a length was refused: impossible or over the type's limit, or too long to hold whole. */
enum { V_INVALID_LENGTH = 1, V_TOO_LONG = 2 };

/*
 * Batch entries on the tape: three uint32 each, (kind << 8 | type byte, offset, length). An
 * observed message (T_OBSERVE in the region, T_OBSERVE_ASSEMBLED copied whole) is forwarded by C
 * in an observed-only batch, by JavaScript in a held one; an assembled one was forwarded in pieces.
 * A batch's header: (T_BATCH << 8 | direction | B_OBSERVED_ONLY, entries, read time in µs mod 2^32).
 */
enum { T_FORWARD = 1, T_DELIVER = 2, T_DELIVER_ASSEMBLED = 3, T_BATCH = 4, T_OBSERVE = 5, T_OBSERVE_ASSEMBLED = 6 };
#define B_OBSERVED_ONLY (1u << 16)

/* Events passed to JavaScript's event callback. */
enum { EV_END = 1, EV_IDLE = 2, EV_TIMINGS_FULL = 3 };

/* Flags `carrier_write` returns. */
enum { W_IDLE = 1, W_ENDED = 2 };

/* Where one stream of messages is: between messages, in a header, or in a body. */
typedef struct {
  uint8_t hdr[5];
  uint8_t hlen;      /* bytes of a header split across reads, collected so far */
  uint8_t code;      /* type of the message in flight */
  uint8_t marked;    /* in: the message goes to JavaScript; out: the message is dropped */
  uint8_t observed;  /* in: the message is forwarded and a copy goes to JavaScript */
  uint32_t body_left;
  uint32_t body_seen;
} framing_t;

/* Bytes held for later, allocated only while there are any. */
typedef struct {
  uint8_t *data;
  size_t head, len, cap; /* [head, head + len) waiting */
} bytes_t;

typedef struct {
  framing_t in;        /* what is read from the source */
  framing_t out;       /* what is written to the destination */
  bytes_t assembling;  /* a message for JavaScript arriving over several reads: its whole frame */
  bytes_t queue;       /* for the destination, not taken by it yet */
  bytes_t deferred;    /* whole messages from JavaScript waiting for `out` to finish a message */
  uint8_t wants[32];   /* a bit per type byte: hand it to JavaScript */
  uint8_t observes[32]; /* a bit per type byte: forward it, and show it to JavaScript later */
  double bytes;        /* taken by the destination */
  uint32_t max_assembled;
  uint32_t queued;     /* batches from this direction waiting for JavaScript: what C forwards waits behind them */
  uint32_t observed;   /* observed-only batches from this direction waiting for JavaScript (nothing waits behind them) */
  int write_error;     /* errno of a failed write, reported from the loop */
} direction_t;

typedef struct carrier carrier_t;

typedef struct {
  uv_poll_t poll; /* unused when the io lends its own (io.ops->watch) */
  io_t io;
  int events;
  int paused;
  carrier_t *c;
} endpoint_t;

struct carrier {
  endpoint_t ep[2];
  direction_t dir[2];
  napi_env env;
  napi_ref self;       /* the JavaScript carrier, handed to every callback; dropped at the end */
  int refs;            /* the JavaScript handle and the two poll handles */
  int state;
  int stopping;
  int busy;            /* inside on_poll or a feed: JavaScript may ask to stop or end, but not halt it there */
  int abort_due;       /* aborted while busy: it halts, dropping what is unsent, as soon as it is not */
  int in_js;           /* called from JavaScript: callbacks are plain calls, not make_callback */
  int release_due;
  int error;
  uint32_t violation_length;
  uint8_t violation_code, violation_kind;
  char tx_status;
  uint8_t terminated, backend_said_fatal, batch_open, keep_backend, watch_idle, idle_due;
  uint32_t unanswered;
  /* the head of an ErrorResponse from the backend that arrives over several reads */
  uint8_t *capture;
  uint32_t capture_len;
  /* statement timing, when asked for: start times (uv_hrtime) of statements sent, oldest first */
  int timing;
  uint64_t *starts;
  uint32_t starts_cap, starts_head, starts_len;
  uint64_t starts_inline[INLINE_STARTS];
  /* finished: seconds for a success, -1 - seconds for an error */
  double *timings;
  uint32_t timings_len;
};

/* What all carriers share (the loop is single-threaded). */
typedef struct {
  napi_env env;
  napi_ref batch_fn, event_fn;
  napi_async_context async;
  /* The read region: reads land at `slab_used`; a read JavaScript saw moves it on for good. */
  napi_ref slab_ref;
  uint8_t *slab;
  size_t slab_size, slab_used;
  /* The batch tape, a Uint32Array JavaScript reads: the read being framed writes at `tape_base`. */
  napi_ref tape_ref;
  uint32_t *tape;
  uint32_t tape_len, tape_base;
  /* A message assembled over several reads, handed over with the batch that completes it. */
  uint8_t *assembled;
  uint32_t assembled_len;
  /* Batches waiting for JavaScript, in the order read (each holds a reference to its carrier). */
  struct {
    carrier_t *c;
    uint8_t *assembled;
    uint32_t assembled_len;
    uint32_t at; /* its header's entry on the tape */
    int d;
    int observed_only;
  } queue[MAX_QUEUED + 1]; /* one more for a batch fed while the others are being handed over */
  uint32_t queued;
  uint32_t held;  /* of them, batches that hold their direction (not observed-only): handed over at the check */
  size_t observed_assembled; /* bytes of assembled observed messages waiting */
  uv_timer_t timer; /* hands observed-only batches over HAND_OVER_MS after the first */
  int timer_armed;
  int handing; /* inside hand_batches: what is queued meanwhile waits for the next hand-over */
  uv_check_t check;
  int check_ready;
  int64_t live;
} globals_t;

extern globals_t g;

void queue_batch(carrier_t *c, int d, int observed_only);
void hand_batches(int plain);
void feed_batch(carrier_t *c, int d, int observed_only);
int observed_waiting(const carrier_t *c);
int batches_init(napi_env env);

static inline int src_of(int d) { return d == TO_BACKEND ? CLIENT : BACKEND; }
static inline int dst_of(int d) { return d == TO_BACKEND ? BACKEND : CLIENT; }
static inline int at_boundary(const framing_t *f) { return f->hlen == 0 && f->body_left == 0; }
static inline int wanted(const direction_t *dir, uint8_t code) { return (dir->wants[code >> 3] >> (code & 7)) & 1; }
static inline int observed(const direction_t *dir, uint8_t code) { return (dir->observes[code >> 3] >> (code & 7)) & 1; }

/* framing.c */
int frame_input(carrier_t *c, int d, const uint8_t *buf, size_t n, int *delivers, int *observes);
void carrier_put(carrier_t *c, int d, const uint8_t *p, size_t n, int continues);
int reusable(const carrier_t *c);
void statements_reset(carrier_t *c);

/* carrier.c */
void send_bytes(carrier_t *c, int d, const uint8_t *p, size_t n);
int bytes_append(bytes_t *b, const uint8_t *p, size_t n);
void bytes_free(bytes_t *b);
void emit(carrier_t *c, int event);
void end(carrier_t *c, int state, int error);
void halt(carrier_t *c, int state);
void halt_quietly(carrier_t *c, int state, int error);
int stop_settled(const carrier_t *c);
carrier_t *carrier_open(napi_env env, const io_t ios[2], int *uv_error);
void update_polls(carrier_t *c);
void settle(carrier_t *c);
void process_read(carrier_t *c, int d, uint8_t *buf, size_t n);
int region_changes(size_t want);
uint8_t *read_region(size_t want, size_t *room);
void release_carrier(carrier_t *c);

#endif
