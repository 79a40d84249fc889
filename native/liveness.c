/*
 * Whether an idle backend connection is still fit to hand out, without a round trip (see
 * src/backend/liveness.ts): one non-blocking MSG_PEEK of a byte on its descriptor. Nothing to
 * read (EAGAIN) is a quiet, open connection; a byte is something the backend said while idle (a
 * FATAL as it was terminated, say); 0 is its close. Nothing is consumed either way.
 */
#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <node_api.h>

/* peekIdle(fd): 0 quiet and open, 1 bytes are waiting, 2 closed by the peer, 3 failed (errno). */
static napi_value peek_idle(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "peekIdle: expected a descriptor");
    return NULL;
  }
  char byte;
  ssize_t n;
  do n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  int32_t state = n > 0 ? 1 : n == 0 ? 2 : (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : 3;
  napi_value out;
  napi_create_int32(env, state, &out);
  return out;
}

void pgward_liveness_register(napi_env env, napi_value exports) {
  napi_value f;
  napi_create_function(env, "peekIdle", NAPI_AUTO_LENGTH, peek_idle, NULL, &f);
  napi_set_named_property(env, exports, "peekIdle", f);
}
