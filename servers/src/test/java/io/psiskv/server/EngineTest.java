package io.psiskv.server;

import static com.google.common.truth.Truth.assertThat;

import io.psiskv.protocol.Status;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link Engine} in process: a write is one exactly-once step whose answer waits for its record,
 * a retry gets the stored result without a second effect, a stale id is refused, racing
 * putIfAbsent writers of one key have exactly one winner, and the state replays after a reopen.
 */
class EngineTest {
  @TempDir Path dir;
  private Engine engine;

  @BeforeEach
  void open() throws IOException {
    engine = Engine.open(dir, FsyncPolicy.ALWAYS, false);
  }

  @AfterEach
  void close() throws IOException {
    engine.close();
  }

  private static byte[] v(String s) {
    return s.getBytes(java.nio.charset.StandardCharsets.UTF_8);
  }

  @Test
  void aWriteReturnsItsResultAndTheSequenceItsAnswerWaitsFor() {
    Sessions.Session s = engine.openSession(0);
    Engine.WriteResult w = engine.put(s, 1, 10, v("a"), false);
    assertThat(w.status()).isEqualTo(Status.OK);
    assertThat(w.durableSeq()).isGreaterThan(0L);
    assertThat(engine.durability(w.durableSeq())).isEqualTo(Engine.Durability.PENDING);
    assertThat(engine.get(10)).isEqualTo(v("a")); // Applied in memory at once.
    assertThat(engine.awaitDurable(w.durableSeq())).isTrue();
    assertThat(engine.durability(w.durableSeq())).isEqualTo(Engine.Durability.DURABLE);
    // A write that changes nothing appends nothing and waits for nothing.
    Engine.WriteResult exists = engine.put(s, 2, 10, v("b"), false);
    assertThat(exists).isEqualTo(new Engine.WriteResult(Status.KEY_EXISTS, 0));
    assertThat(engine.delete(s, 3, 99)).isEqualTo(new Engine.WriteResult(Status.NOT_FOUND, 0));
  }

  @Test
  void aRetryGetsTheStoredResultAndChangesNothing() {
    Sessions.Session s = engine.openSession(0);
    Engine.WriteResult first = engine.put(s, 5, 20, v("first"), false);
    engine.put(engine.openSession(0), 1, 21, v("other session"), true);
    Engine.WriteResult retry = engine.put(s, 5, 20, v("first"), false);
    assertThat(retry).isEqualTo(first); // OK again, not KEY_EXISTS; same record to await.
    Engine.WriteResult del = engine.delete(s, 6, 20);
    assertThat(engine.delete(s, 6, 20)).isEqualTo(del); // OK again, not NOT_FOUND.
    assertThat(engine.get(20)).isNull();
    assertThat(engine.put(s, 4, 20, v("stale"), true).status()).isEqualTo(Status.BAD_REQUEST);
    assertThat(engine.get(20)).isNull();
  }

  /** Found by RequestHandlerFuzzTest: ids with the top bit set were compared as negative. */
  @Test
  void requestIdsAreComparedAsUnsigned64BitNumbers() {
    Sessions.Session s = engine.openSession(0);
    long high = 0xFFFF_FF00_0000_0005L; // Above every id with the top bit clear.
    assertThat(engine.put(s, high, 30, v("first"), true).status()).isEqualTo(Status.OK);
    assertThat(engine.put(s, high + 1, 30, v("second"), true).status()).isEqualTo(Status.OK);
    assertThat(engine.put(s, 7, 30, v("stale"), true).status()).isEqualTo(Status.BAD_REQUEST);
    assertThat(engine.get(30)).isEqualTo(v("second"));
    Sessions.Session fresh = engine.openSession(0);
    assertThat(engine.delete(fresh, Long.MIN_VALUE, 30).status()).isEqualTo(Status.OK);
  }

  @Test
  void racingPutIfAbsentWritersOfOneKeyHaveExactlyOneWinner() throws Exception {
    int writers = 16;
    ExecutorService pool = Executors.newFixedThreadPool(writers);
    CountDownLatch go = new CountDownLatch(1);
    AtomicInteger winners = new AtomicInteger();
    try {
      List<Future<?>> done = new ArrayList<>();
      for (int i = 0; i < writers; i++) {
        int n = i;
        done.add(pool.submit(() -> {
          Sessions.Session s = engine.openSession(0);
          go.await();
          Engine.WriteResult w = engine.put(s, 1, 77, v("writer " + n), false);
          if (w.status() == Status.OK) {
            winners.incrementAndGet();
          }
          return engine.awaitDurable(w.durableSeq());
        }));
      }
      go.countDown();
      for (Future<?> f : done) {
        assertThat(f.get(30, TimeUnit.SECONDS)).isEqualTo(true);
      }
    } finally {
      pool.shutdownNow();
    }
    assertThat(winners.get()).isEqualTo(1);
  }

  @Test
  void stateAndExactlyOnceTableComeBackAfterAReopen() throws IOException {
    Sessions.Session s = engine.openSession(0);
    long session = s.id;
    Engine.WriteResult w = engine.put(s, 9, 30, v("kept"), false);
    engine.awaitDurable(w.durableSeq());
    engine.close();
    engine = Engine.open(dir, FsyncPolicy.ALWAYS, false);
    Sessions.Session resumed = engine.openSession(session);
    assertThat(engine.get(30)).isEqualTo(v("kept"));
    assertThat(engine.put(resumed, 9, 30, v("kept"), false).status()).isEqualTo(Status.OK);
    assertThat(engine.put(resumed, 8, 30, v("kept"), false).status())
        .isEqualTo(Status.BAD_REQUEST);
  }

  @Test
  void aCommitCoversEveryWriteAppendedBeforeIt() {
    Sessions.Session s = engine.openSession(0);
    long last = 0;
    for (int i = 1; i <= 50; i++) {
      last = engine.put(s, i, i, v("v" + i), true).durableSeq();
    }
    assertThat(engine.hasUncommitted()).isTrue();
    assertThat(engine.commit(false)).isTrue();
    assertThat(engine.hasUncommitted()).isFalse();
    assertThat(engine.durability(last)).isEqualTo(Engine.Durability.DURABLE);
    assertThat(engine.log().stats().batches()).isEqualTo(1);
  }
}
