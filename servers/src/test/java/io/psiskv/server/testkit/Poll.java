package io.psiskv.server.testkit;

import java.time.Duration;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/**
 * Waits for a condition with a deadline: the tests' only way to wait for another process (no
 * sleeping as synchronisation). Polls every {@value #POLL_MILLIS} ms.
 */
public final class Poll {
  static final long POLL_MILLIS = 5;

  private Poll() {}

  /** Returns true as soon as {@code condition} holds, false if it still does not at the deadline. */
  public static boolean until(Duration timeout, BooleanSupplier condition) {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (true) {
      if (condition.getAsBoolean()) {
        return true;
      }
      if (System.nanoTime() - deadline > 0) {
        return false;
      }
      try {
        Thread.sleep(POLL_MILLIS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return false;
      }
    }
  }

  /** Like {@link #until} but fails with {@code message} at the deadline. */
  public static void require(Duration timeout, BooleanSupplier condition, Supplier<String> message) {
    if (!until(timeout, condition)) {
      throw new AssertionError("timed out after " + timeout + ": " + message.get());
    }
  }

  /** Like {@link #until} but fails at the deadline, naming {@code what} it waited for. */
  public static void require(String what, Duration timeout, BooleanSupplier condition) {
    require(timeout, condition, () -> "waiting for " + what);
  }
}
