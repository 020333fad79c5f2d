package io.psiskv.bench;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * A server process the benchmark starts, measures and stops: psiskv ({@link PsiskvServer}) or a
 * peer ({@link PeerServer}: Redis, memcached). Each instance is one fresh process with its own
 * working directory, always on 127.0.0.1.
 */
abstract class BenchServer implements AutoCloseable {
  /** How long a server may take to start listening. */
  static final long START_TIMEOUT_MILLIS = 60_000;
  /** How long an orderly stop may take before the process is killed. */
  static final long STOP_TIMEOUT_MILLIS = 30_000;

  /** The label in the tables: "psiskv", "psiskv --fsync no", "redis", ... */
  final String label;
  /** The kind of store, as the load generators name their backends. */
  final Kind kind;
  /** The directory holding this instance's data and log; deleted by the caller. */
  final Path workDir;

  enum Kind {
    PSISKV, REDIS, MEMCACHED
  }

  BenchServer(String label, Kind kind, Path workDir) {
    this.label = label;
    this.kind = kind;
    this.workDir = workDir;
  }

  /** Starts the process and returns once it accepts connections. */
  abstract void start() throws IOException;

  /** The port clients connect to (for psiskv the Front Server's). */
  abstract int port();

  /** The pid whose CPU and memory are measured (for psiskv the Data Server's). */
  abstract long measuredPid();

  /** The command that started it, for the report. */
  abstract List<String> command();

  /** Stops the process (idempotent). */
  @Override
  public abstract void close();

  /** The last lines of the server's log, for an error message. */
  String logTail() {
    Path log = workDir.resolve("server.log");
    try {
      List<String> lines = Files.readAllLines(log, StandardCharsets.UTF_8);
      return String.join("\n", lines.subList(Math.max(0, lines.size() - 15), lines.size()));
    } catch (IOException e) {
      return "(no log)";
    }
  }
}
