{
  "targets": [
    {
      "target_name": "pgward_relay",
      "sources": ["binding.c", "carrier.c", "framing.c", "io.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
