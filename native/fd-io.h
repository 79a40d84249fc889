/*
 * A socket descriptor's read and send, tried again when a signal interrupts them: the one byte path
 * under plain carrier endpoints (io.c), plain native endpoints and the TLS socket BIO (tls.c).
 * Inline, as each is a call per read or write on the relay's path. And why polling one failed.
 */
#ifndef PGWARD_FD_IO_H
#define PGWARD_FD_IO_H

#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

/* Up to `len` bytes: how many, 0 at EOF, or -1 with errno set. */
static inline ssize_t fd_read(int fd, void *buf, size_t len) {
  ssize_t n;
  do n = read(fd, buf, len);
  while (n < 0 && errno == EINTR);
  return n;
}

/* Up to `len` bytes, without SIGPIPE when the peer has gone: how many, or -1 with errno set. */
static inline ssize_t fd_send(int fd, const void *buf, size_t len) {
  ssize_t n;
  do n = send(fd, buf, len, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n;
}

/* Whether the call that just failed only found nothing to read, or no room to write. */
static inline int fd_would_block(void) { return errno == EAGAIN || errno == EWOULDBLOCK; }

/*
 * The socket's pending error (ECONNRESET, say), 0 when none or no descriptor. libuv reports a
 * socket error seen by polling (POLLERR) as UV_EBADF: this is what actually happened.
 */
static inline int fd_pending_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return 0;
  return err;
}

#endif
