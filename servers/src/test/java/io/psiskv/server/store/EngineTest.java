package io.psiskv.server.store;

import static com.google.common.truth.Truth.assertThat;

import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Status;
import io.psiskv.server.backup.BackupLog;
import io.psiskv.server.backup.FsyncPolicy;
import io.psiskv.server.backup.LogFormat;
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
    engine = Engine.open(dir, FsyncPolicy.ALWAYS, false, 1_000);
  }

  @AfterEach
  void close() throws IOException {
    engine.close();
  }

  private Sessions.Session newSession() {
    return engine.openSession(0, new byte[Protocol.SESSION_SECRET_BYTES], () -> {}).session();
  }

  private static byte[] v(String s) {
    return s.getBytes(java.nio.charset.StandardCharsets.UTF_8);
  }

  @Test
  void aWriteReturnsItsResultAndTheSequenceItsAnswerWaitsFor() {
    Sessions.Session s = newSession();
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
    Sessions.Session s = newSession();
    Engine.WriteResult first = engine.put(s, 5, 20, v("first"), false);
    engine.put(newSession(), 1, 21, v("other session"), true);
    Engine.WriteResult retry = engine.put(s, 5, 20, v("first"), false);
    assertThat(retry).isEqualTo(first); // OK again, not KEY_EXISTS; same record to await.
    Engine.WriteResult del = engine.delete(s, 6, 20);
    assertThat(engine.delete(s, 6, 20)).isEqualTo(del); // OK again, not NOT_FOUND.
    assertThat(engine.get(20)).isNull();
    assertThat(engine.put(s, 4, 20, v("stale"), true).status()).isEqualTo(Status.BAD_REQUEST);
    assertThat(engine.get(20)).isNull();
  }

  @Test
  void aRequestIdReusedForAnotherRequestIsRefusedAndChangesNothing() {
    // A retry must repeat its request: the same id with another key or operation is refused, not
    // answered OK unapplied (PROTOCOL.md §12).
    Sessions.Session s = newSession();
    assertThat(engine.put(s, 1, 40, v("a"), true).status()).isEqualTo(Status.OK);
    assertThat(engine.put(s, 1, 41, v("a"), true).status()).isEqualTo(Status.BAD_REQUEST);
    assertThat(engine.put(s, 1, 40, v("b"), true).status()).isEqualTo(Status.BAD_REQUEST);
    assertThat(engine.put(s, 1, 40, v("a"), false).status()).isEqualTo(Status.BAD_REQUEST);
    assertThat(engine.delete(s, 1, 40).status()).isEqualTo(Status.BAD_REQUEST);
    assertThat(engine.get(40)).isEqualTo(v("a"));
    assertThat(engine.get(41)).isNull();
    assertThat(engine.delete(s, 2, 40).status()).isEqualTo(Status.OK);
    assertThat(engine.put(s, 2, 40, v("a"), true).status()).isEqualTo(Status.BAD_REQUEST);
    assertThat(engine.get(40)).isNull();
    assertThat(engine.put(s, 2, 40, v("a"), true).status()).isEqualTo(Status.BAD_REQUEST);
    assertThat(engine.delete(s, 2, 40).status()).isEqualTo(Status.OK); // The true retry.
  }

  @Test
  void requestIdsAreComparedUnsigned() {
    // Ids are u64: from 2^63 up they are newer, not stale (compared unsigned, PROTOCOL.md §12).
    Sessions.Session s = newSession();
    assertThat(engine.put(s, 5, 50, v("low"), true).status()).isEqualTo(Status.OK);
    assertThat(engine.put(s, Long.MIN_VALUE, 51, v("2^63"), true).status())
        .isEqualTo(Status.OK);
    assertThat(engine.put(s, -1L, 52, v("2^64-1"), true).status()).isEqualTo(Status.OK);
    assertThat(engine.put(s, Long.MAX_VALUE, 53, v("lower"), true).status())
        .isEqualTo(Status.BAD_REQUEST);
    assertThat(engine.get(51)).isEqualTo(v("2^63"));
    assertThat(engine.get(52)).isEqualTo(v("2^64-1"));
    assertThat(engine.get(53)).isNull();
  }

  @Test
  void aVersion1LogIsReadAndRewrittenAsVersion2WithoutItsSessions() throws IOException {
    engine.close();
    Path log = dir.resolve(BackupLog.FILE_NAME);
    java.io.ByteArrayOutputStream file = new java.io.ByteArrayOutputStream();
    byte[] header = new byte[LogFormat.HEADER_BYTES];
    LogFormat.encodeHeader(header, 0);
    io.psiskv.protocol.Header.putU16(header, LogFormat.OFF_HEADER_VERSION, LogFormat.VERSION_1);
    io.psiskv.protocol.Header.putU32(header, LogFormat.OFF_HEADER_CRC,
        LogFormat.headerCrc(header));
    file.write(header);
    byte[] rec = new byte[LogFormat.RECORD_FIXED_BYTES];
    LogFormat.encodeRecord(rec, 0, LogFormat.OP_PUT, 60, 77, 3, 0, v("old"));
    file.write(rec);
    file.write(v("old"));
    LogFormat.encodeRecord(rec, 0, LogFormat.OP_SESSION, 0, 77, 4, 1, null);
    file.write(rec);
    java.nio.file.Files.write(log, file.toByteArray());

    engine = Engine.open(dir, FsyncPolicy.ALWAYS, false, 1_000);
    assertThat(engine.get(60)).isEqualTo(v("old"));
    assertThat(engine.sessions().size()).isEqualTo(0);
    byte[] now = java.nio.file.Files.readAllBytes(log);
    assertThat(io.psiskv.protocol.Header.getU16(now, LogFormat.OFF_HEADER_VERSION))
        .isEqualTo(LogFormat.VERSION);
    Sessions.Session s = newSession();
    engine.awaitDurable(engine.put(s, 1, 61, v("new"), false).durableSeq());
    engine.close();
    engine = Engine.open(dir, FsyncPolicy.ALWAYS, false, 1_000);
    assertThat(engine.get(60)).isEqualTo(v("old"));
    assertThat(engine.get(61)).isEqualTo(v("new"));
    assertThat(engine.sessions().size()).isEqualTo(1);
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
          Sessions.Session s = newSession();
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
    Sessions.Session s = newSession();
    long session = s.id;
    Engine.WriteResult w = engine.put(s, 9, 30, v("kept"), false);
    engine.awaitDurable(w.durableSeq());
    engine.close();
    engine = Engine.open(dir, FsyncPolicy.ALWAYS, false, 1_000);
    // The secret came back with the session: only its owner resumes it.
    assertThat(engine.openSession(session, new byte[16], () -> {}).refusal())
        .isEqualTo(Status.BAD_REQUEST);
    byte[] wrong = s.secret();
    wrong[0] ^= 1;
    assertThat(engine.openSession(session, wrong, () -> {}).refusal())
        .isEqualTo(Status.FORBIDDEN);
    Sessions.Session resumed = engine.openSession(session, s.secret(), () -> {}).session();
    assertThat(engine.get(30)).isEqualTo(v("kept"));
    assertThat(engine.put(resumed, 9, 30, v("kept"), false).status()).isEqualTo(Status.OK);
    assertThat(engine.put(resumed, 8, 30, v("kept"), false).status())
        .isEqualTo(Status.BAD_REQUEST);
  }

  @Test
  void aCommitCoversEveryWriteAppendedBeforeIt() {
    Sessions.Session s = newSession();
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
