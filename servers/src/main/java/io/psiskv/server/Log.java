package io.psiskv.server;

import java.time.Instant;
import java.time.temporal.ChronoUnit;

/**
 * The servers' log: one line per event on stderr, {@code <iso time> <role> <pid> <message>}.
 *
 * <p>Events are starts, stops, peers that break the protocol, lost peers: never one line per
 * request. Any thread may log; each line is written with one {@code println} call, which {@link
 * java.io.PrintStream} makes atomic, so lines of different threads do not interleave.
 */
final class Log {
  private static final long PID = ProcessHandle.current().pid();
  private static volatile String role = "-";

  private Log() {}

  /** Sets the role shown on every line ({@code front} or {@code data}); call once in main. */
  static void init(String roleName) {
    role = roleName;
  }

  static void info(String message) {
    System.err.println(
        Instant.now().truncatedTo(ChronoUnit.MILLIS) + " " + role + " " + PID + " " + message);
  }
}
