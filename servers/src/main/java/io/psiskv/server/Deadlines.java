package io.psiskv.server;

/** Deadline arithmetic on {@code System.nanoTime()} values, for bounded waits. */
public final class Deadlines {
  private Deadlines() {}

  /** Milliseconds left until {@code deadlineNanos} (a {@code System.nanoTime()} value), >= 0. */
  public static long remainingMillis(long deadlineNanos) {
    return Math.max(0, (deadlineNanos - System.nanoTime()) / 1_000_000L);
  }
}
