/* Plain TCP endpoints for the native carrier (see io.h). */
#include "io.h"
#include "fd-io.h"
#include "tls.h"

#include <unistd.h>
#include <uv.h>

static ssize_t plain_read(io_t *io, uint8_t *buf, size_t len) {
  ssize_t n = fd_read(io->fd, buf, len);
  return n >= 0 ? n : fd_would_block() ? IO_AGAIN : IO_ERROR;
}

static ssize_t plain_write(io_t *io, const uint8_t *buf, size_t len) {
  ssize_t n = fd_send(io->fd, buf, len);
  return n >= 0 ? n : fd_would_block() ? IO_AGAIN : IO_ERROR;
}

static int plain_poll_events(io_t *io, int want_read, int want_write) {
  return (want_read ? UV_READABLE : 0) | (want_write ? UV_WRITABLE : 0);
}

static int plain_ready(io_t *io, int events) {
  return (events & UV_READABLE ? IO_READY_READ : 0) | (events & UV_WRITABLE ? IO_READY_WRITE : 0);
}

static void plain_release(io_t *io) {
  if (io->fd >= 0) close(io->fd);
  io->fd = -1;
}

static const io_ops_t plain_ops = {plain_read, plain_write, plain_poll_events, plain_ready, plain_release, NULL, NULL};

void io_plain(io_t *io, int fd) {
  io->ops = &plain_ops;
  io->fd = fd;
  io->tls = NULL;
  io->more = 0;
}

/* Read and written as plain TCP; lent, watched and polled as every native endpoint (io-tls.c). */
static const io_ops_t lent_plain_ops = {plain_read, plain_write, plain_poll_events, plain_ready, io_lent_release, io_lent_watch, io_lent_poll};

void io_plain_lent(io_t *io, struct tls_conn *conn) {
  io->ops = &lent_plain_ops;
  io->fd = tls_fd(conn);
  io->tls = conn;
  io->more = 0;
}
