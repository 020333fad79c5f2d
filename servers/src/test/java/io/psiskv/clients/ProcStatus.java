package io.psiskv.clients;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** A process's figures from Linux's /proc/PID/status, for tests and probes. */
final class ProcStatus {
  private ProcStatus() {}

  /** A number field: {@code Threads}, or {@code VmRSS} (kB). */
  static long field(long pid, String name) throws IOException {
    for (String line : Files.readAllLines(Path.of("/proc", Long.toString(pid), "status"))) {
      if (line.startsWith(name + ":")) {
        return Long.parseLong(line.substring(name.length() + 1).trim().split("\\s+")[0]);
      }
    }
    throw new IOException("no " + name + " in /proc/" + pid + "/status");
  }
}
