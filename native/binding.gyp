{
  "targets": [
    {
      "target_name": "pgward_relay",
      "sources": ["binding.c", "binding-report.c", "carrier.c", "batches.c", "framing.c", "io.c", "io-tls.c", "tls.c", "tls-context.c", "tls-endpoint.c", "tls-binding.c", "liveness.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
