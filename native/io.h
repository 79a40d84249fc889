/*
 * One endpoint's byte I/O for the native carrier: plain TCP (io.c) or a TLS connection borrowed
 * from the native TLS layer (io-tls.c), so the carrier itself never touches a descriptor or
 * OpenSSL.
 */
#ifndef PGWARD_IO_H
#define PGWARD_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Returned by read and write besides a byte count. */
enum { IO_AGAIN = -1, IO_ERROR = -2 };
/* What descriptor events unblock (see `ready`). */
enum { IO_READY_READ = 1, IO_READY_WRITE = 2 };

typedef struct io io_t;

/* An event on a handle the io layer polls for the carrier: libuv's status and UV_* events. */
typedef void (*io_event_cb)(void *data, int status, int events);

typedef struct {
  /* Up to `len` bytes into `buf`: how many, 0 at EOF, IO_AGAIN when none are there, IO_ERROR (errno set). */
  ssize_t (*read)(io_t *io, uint8_t *buf, size_t len);
  /* Up to `len` bytes from `buf`: how many were taken, IO_AGAIN when none fit, IO_ERROR (errno set). */
  ssize_t (*write)(io_t *io, const uint8_t *buf, size_t len);
  /*
   * The descriptor events (UV_READABLE, UV_WRITABLE) to poll for so that a read, a write or both
   * can go on: the same for plain TCP; TLS may need to write to read, or read to write.
   */
  int (*poll_events)(io_t *io, int want_read, int want_write);
  /* Which operations the polled `events` unblock (IO_READY_*); TLS also reports plaintext it holds already. */
  int (*ready)(io_t *io, int events);
  /* Lets go of the endpoint: the connection itself stays, for Node's socket to go on with. */
  void (*release)(io_t *io);
  /*
   * TLS: the lending endpoint's own poll handle serves the carrier until release, its events
   * going to `cb(data, …)`; returns the UV_* events it polls for now. The handle stays in epoll
   * across the loan (no second handle, no probe, no remove and add again per session). The same
   * for a lent plain endpoint (io_plain_lent). NULL for a plain descriptor (io_plain): the carrier
   * polls it with a handle of its own.
   */
  int (*watch)(io_t *io, io_event_cb cb, void *data);
  /* After watch: poll for these UV_* events instead (0: none). */
  void (*poll)(io_t *io, int events);
} io_ops_t;

struct tls_conn;

struct io {
  const io_ops_t *ops;
  /*
   * The descriptor: a plain socket's duplicate, the carrier's own (closed at release), or a lent
   * endpoint's, plain or TLS (given back, not closed; -1 once released). Only a plain socket's is
   * polled by the carrier; an endpoint's poll handle polls its own (see watch).
   */
  int fd;
  /* TLS, and a lent plain endpoint: the connection borrowed from its endpoint (see tls.h), given back at release. */
  struct tls_conn *tls;
  /* TLS: whole records may wait inside OpenSSL (the last read filled its room, or none was made yet). */
  int more;
};

/* A plain TCP endpoint over `fd`, which the io layer owns from here on. */
void io_plain(io_t *io, int fd);
/*
 * A plain endpoint of the native TLS layer (tls_plain_conn_new), lent by tls_endpoint_lend: its
 * descriptor read and written as plain TCP (a read that fills its room needs no second look, as
 * TLS's may), polled through the endpoint's own poll handle; release gives it back.
 */
void io_plain_lent(io_t *io, struct tls_conn *conn);
/*
 * A TLS endpoint: `conn` lent by tls_endpoint_lend (keeping its poll), polled through the
 * endpoint's own poll handle (watch); release gives the connection back.
 */
void io_tls(io_t *io, struct tls_conn *conn);
/* The loan of a native endpoint, TLS or plain (io-tls.c): release, watch and poll of both ops tables. */
void io_lent_release(io_t *io);
int io_lent_watch(io_t *io, io_event_cb cb, void *data);
void io_lent_poll(io_t *io, int events);

#endif
