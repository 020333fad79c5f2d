package io.psiskv.client;

import static com.google.common.truth.Truth.assertThat;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.Test;

/**
 * {@link CallTimer} on its own: the action runs for an arming past its deadline, again while that
 * arming stays (a call between sockets when its deadline passed has its next socket closed too),
 * and not for an arming that was replaced.
 */
class CallTimerTest {
  private static final long TIMEOUT_NANOS = TimeUnit.MILLISECONDS.toNanos(50);
  private static final long BOUND_NANOS = TimeUnit.SECONDS.toNanos(10);
  private final List<Long> runs = new CopyOnWriteArrayList<>();

  @Test
  void anArmingPastItsDeadlineRunsAgainUntilItIsReplaced() {
    CallTimer timer = new CallTimer(TIMEOUT_NANOS, runs::add);
    try {
      timer.arm(7, System.nanoTime());
      await(() -> runs.size() >= 3);
      assertThat(runs).containsNoneIn(List.of(0L, 8L));
      timer.arm(8, System.nanoTime()); // the next call, also past its deadline
      await(() -> runs.contains(8L));
      // One timer thread: once it has run for 8, 7 is no longer armed and never runs again.
      int first8 = runs.indexOf(8L);
      await(() -> runs.size() >= first8 + 3);
      assertThat(runs.subList(first8, runs.size())).containsExactlyElementsIn(
          java.util.Collections.nCopies(runs.size() - first8, 8L));
    } finally {
      timer.stop();
    }
  }

  @Test
  void aDisarmedTimerRunsNothing() {
    CallTimer timer = new CallTimer(TIMEOUT_NANOS, runs::add);
    try {
      timer.arm(3, System.nanoTime() + BOUND_NANOS);
      timer.disarm();
      timer.arm(4, System.nanoTime());
      await(() -> runs.contains(4L));
      assertThat(runs).doesNotContain(3L);
    } finally {
      timer.stop();
    }
  }

  private static void await(BooleanSupplier condition) {
    long deadline = System.nanoTime() + BOUND_NANOS;
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() - deadline > 0) {
        throw new AssertionError("timed out");
      }
      LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(1));
    }
  }
}
