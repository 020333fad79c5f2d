package io.psiskv.server.data;

import static com.google.common.truth.Truth.assertThat;

import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** {@link BodyBudget}: the limit, the oldest body's exemption, releases, waiting, listeners. */
class BodyBudgetTest {
  @Test
  void growthPastTheLimitIsRefusedExceptForTheOldestBody() {
    BodyBudget b = new BodyBudget(100);
    long oldest = b.begin();
    long younger = b.begin();
    assertThat(b.tryGrow(younger, 80)).isTrue();
    assertThat(b.tryGrow(younger, 30)).isFalse();
    assertThat(b.tryGrow(oldest, 1000)).isTrue(); // May always grow: no deadlock.
    assertThat(b.usedBytes()).isEqualTo(1080);
    b.end(oldest, 1000);
    assertThat(b.tryGrow(younger, 20)).isTrue(); // The younger is the oldest now.
    b.end(younger, 100);
    assertThat(b.usedBytes()).isEqualTo(0);
  }

  @Test
  void aWaitingBodyGrowsOnceAnotherEndsAndListenersHearOfIt() throws Exception {
    BodyBudget b = new BodyBudget(100);
    AtomicInteger heard = new AtomicInteger();
    b.addListener(heard::incrementAndGet);
    long first = b.begin();
    long second = b.begin();
    b.tryGrow(first, 100);
    ExecutorService pool = Executors.newSingleThreadExecutor();
    try {
      Future<Boolean> waiting = pool.submit(
          () -> b.grow(second, 50, System.nanoTime() + TimeUnit.SECONDS.toNanos(30)));
      b.end(first, 100);
      assertThat(waiting.get(30, TimeUnit.SECONDS)).isTrue();
    } finally {
      pool.shutdownNow();
    }
    assertThat(heard.get()).isEqualTo(1);
    assertThat(b.usedBytes()).isEqualTo(50);
  }

  @Test
  void aWaitEndsAtItsDeadline() throws Exception {
    BodyBudget b = new BodyBudget(10);
    long first = b.begin();
    long second = b.begin();
    b.tryGrow(first, 10);
    assertThat(b.grow(second, 5, System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(50)))
        .isFalse();
  }
}
