/*
 * TLS endpoints for the native carrier (see io.h): plaintext through a connection borrowed from
 * the native TLS layer (tls.h), polled through the endpoint's own poll handle while it is lent.
 */
#include <errno.h>
#include <uv.h>

#include "io.h"
#include "tls.h"

_Static_assert((int)TLS_AGAIN == (int)IO_AGAIN && (int)TLS_ERROR == (int)IO_ERROR, "tls.h and io.h share their return codes");

/*
 * A read that stops short of its room took every whole record OpenSSL held (tls_read reads on
 * while any waits); one that fills its room may have left some. OpenSSL's own "pending" also
 * counts half a record, which only the socket can complete, so it is not asked.
 */
static ssize_t tls_io_read(io_t *io, uint8_t *buf, size_t len) {
  errno = 0;
  ssize_t n = tls_read(io->tls, buf, len);
  if (n == TLS_ERROR && errno == 0) errno = EPROTO;
  io->more = n > 0 && (size_t)n == len;
  return n;
}

static ssize_t tls_io_write(io_t *io, const uint8_t *buf, size_t len) {
  errno = 0;
  ssize_t n = tls_write(io->tls, buf, len);
  if (n == TLS_ERROR && errno == 0) errno = EPROTO;
  return n;
}

/*
 * Records OpenSSL read ahead wait inside it, and the descriptor will not say so: a socket is
 * nearly always writable, so asking for that brings the carrier back at once to read them.
 */
static int tls_io_poll_events(io_t *io, int want_read, int want_write) {
  int events = tls_poll_events(io->tls, want_read, want_write);
  if (want_read && io->more) events |= UV_WRITABLE;
  return events;
}

static int tls_io_ready(io_t *io, int events) {
  int ready = tls_ready(io->tls, events);
  int out = (ready & TLS_READY_READ ? IO_READY_READ : 0) | (ready & TLS_READY_WRITE ? IO_READY_WRITE : 0);
  if (io->more) out |= IO_READY_READ;
  return out;
}

/* The descriptor and its poll handle are the endpoint's: they stay, for the endpoint to go on with. */
void io_lent_release(io_t *io) {
  if (io->tls) tls_endpoint_give_back(io->tls);
  io->tls = NULL;
  io->fd = -1;
}

int io_lent_watch(io_t *io, io_event_cb cb, void *data) { return tls_endpoint_watch(io->tls, cb, data); }

void io_lent_poll(io_t *io, int events) { tls_endpoint_poll(io->tls, events); }

static const io_ops_t tls_ops = {tls_io_read, tls_io_write, tls_io_poll_events, tls_io_ready, io_lent_release, io_lent_watch, io_lent_poll};

void io_tls(io_t *io, struct tls_conn *conn) {
  io->ops = &tls_ops;
  io->fd = tls_fd(conn);
  io->tls = conn;
  /*
   * Records the endpoint read and JavaScript had not asked for yet wait in OpenSSL, where the
   * descriptor will not tell of them: then the first read looks at once. Otherwise the carrier
   * polls for reading only (asking for writability too cost two epoll_ctl and a wake-up per
   * endpoint and session, for a read that found nothing).
   */
  io->more = tls_pending(conn) != 0;
}
