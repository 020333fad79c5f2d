package io.psiskv.bench;

/** A client program: which store it speaks to and how it is started. */
enum BenchClient {
  LIBPSISKV("libpsiskv", false, BenchServer.Kind.PSISKV, "loadgen-psiskv"),
  HIREDIS("hiredis", false, BenchServer.Kind.REDIS, "loadgen-hiredis"),
  LIBMEMCACHED("libmemcached", false, BenchServer.Kind.MEMCACHED, "loadgen-memcached"),
  KVCLIENT("KvClient", true, BenchServer.Kind.PSISKV, "psiskv"),
  JEDIS("Jedis", true, BenchServer.Kind.REDIS, "jedis");

  final String label;
  final boolean java;
  final BenchServer.Kind kind;
  /** The C binary's name, or JavaLoad's --client value. */
  final String program;

  BenchClient(String label, boolean java, BenchServer.Kind kind, String program) {
    this.label = label;
    this.java = java;
    this.kind = kind;
    this.program = program;
  }

  /** The C load generator that speaks to this kind of store (it also preloads it). */
  static BenchClient preloaderFor(BenchServer.Kind kind) {
    for (BenchClient c : values()) {
      if (!c.java && c.kind == kind) {
        return c;
      }
    }
    throw new AssertionError(kind);
  }
}
