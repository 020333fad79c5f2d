package io.psiskv.bench;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * What the benchmark reads about a process from Linux's /proc: CPU time ({@code /proc/PID/stat}
 * fields 14 and 15, utime and stime, in clock ticks), resident memory ({@code VmRSS:}) and thread
 * count ({@code Threads:}) from {@code /proc/PID/status}. Both files cover every thread of the
 * process.
 */
final class Proc {
  private Proc() {}

  /**
   * Clock ticks per second of the stat file's times: Linux's USER_HZ, 100 on every architecture
   * the project runs on (the C load generator asks sysconf(_SC_CLK_TCK)).
   */
  static final long CLOCK_TICKS_PER_SECOND = 100;

  /** User plus system CPU time of the process so far, in microseconds. */
  static long cpuMicros(long pid) throws IOException {
    return cpuTicks(read(pid, "stat")) * 1_000_000 / CLOCK_TICKS_PER_SECOND;
  }

  /** Resident set size in bytes. */
  static long rssBytes(long pid) throws IOException {
    return statusField(read(pid, "status"), "VmRSS") * 1024;
  }

  /** The number of threads of the process. */
  static int threads(long pid) throws IOException {
    return (int) statusField(read(pid, "status"), "Threads");
  }

  static boolean alive(long pid) {
    return Files.exists(Path.of("/proc", Long.toString(pid), "stat"));
  }

  /**
   * utime + stime of a stat line. The command name (field 2, in parentheses) may hold spaces and
   * parentheses, so fields are counted from the last ')'.
   */
  static long cpuTicks(String stat) throws IOException {
    int close = stat.lastIndexOf(')');
    String[] fields = close < 0 ? new String[0] : stat.substring(close + 2).trim().split(" +");
    // fields[0] is field 3 (state); utime is field 14.
    if (fields.length < 13) {
      throw new IOException("unexpected /proc stat line: " + stat);
    }
    try {
      return Long.parseLong(fields[11]) + Long.parseLong(fields[12]);
    } catch (NumberFormatException e) {
      throw new IOException("unexpected /proc stat line: " + stat, e);
    }
  }

  /** The number of a "Name:   123 kB" line of a status file (kB as written). */
  static long statusField(String status, String name) throws IOException {
    for (String line : status.split("\n")) {
      if (line.startsWith(name + ":")) {
        String[] words = line.substring(name.length() + 1).trim().split("\\s+");
        try {
          return Long.parseLong(words[0]);
        } catch (NumberFormatException e) {
          throw new IOException("unexpected /proc status line: " + line, e);
        }
      }
    }
    throw new IOException("no " + name + ": line in /proc status");
  }

  private static String read(long pid, String file) throws IOException {
    return Files.readString(Path.of("/proc", Long.toString(pid), file), StandardCharsets.UTF_8);
  }
}
