/*
 * What the native carrier's N-API functions share (binding.c, binding-report.c): reading their
 * arguments and making the values they return.
 */
#ifndef PGWARD_BINDING_H
#define PGWARD_BINDING_H

#include <stdbool.h>
#include <stdint.h>
#include <node_api.h>

#include "carrier.h"

#define ARGS(n)                                                         \
  size_t argc = (n);                                                    \
  napi_value argv[(n) > 0 ? (n) : 1];                                   \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);                 \
  if (argc < (n)) {                                                     \
    napi_throw_type_error(env, NULL, "pgward carrier: missing arguments"); \
    return NULL;                                                        \
  }

static inline carrier_t *handle_of(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || !data) {
    napi_throw_type_error(env, NULL, "expected a native carrier handle");
    return NULL;
  }
  return (carrier_t *)data;
}

static inline int32_t int_arg(napi_env env, napi_value v) {
  int32_t out = 0;
  napi_get_value_int32(env, v, &out);
  return out;
}

static inline bool bool_arg(napi_env env, napi_value v) {
  bool out = false;
  napi_get_value_bool(env, v, &out);
  return out;
}

static inline uint8_t *bytes_arg(napi_env env, napi_value v, size_t *len) {
  void *data = NULL;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, v, &type, len, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "expected a Uint8Array");
    return NULL;
  }
  return (uint8_t *)data;
}

static inline napi_value number(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

static inline napi_value boolean(napi_env env, int v) {
  napi_value out;
  napi_get_boolean(env, v != 0, &out);
  return out;
}

static inline void set(napi_env env, napi_value obj, const char *name, napi_value v) { napi_set_named_property(env, obj, name, v); }

/* The functions of binding-report.c: what a carrier tells JavaScript of its session. */
/* Slots of report()'s Float64Array (see binding-report.c). */
#define REPORT_SLOTS 13
napi_value report_names(napi_env env);
napi_value carrier_report(napi_env env, napi_callback_info info);
napi_value carrier_ended(napi_env env, napi_callback_info info);
napi_value carrier_timings(napi_env env, napi_callback_info info);
napi_value carrier_live(napi_env env, napi_callback_info info);

#endif
