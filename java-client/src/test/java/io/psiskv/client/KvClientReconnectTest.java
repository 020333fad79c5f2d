package io.psiskv.client;

import static com.google.common.truth.Truth.assertThat;
import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.psiskv.client.FakeServer.Request;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Status;
import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * PROTOCOL.md §12 from the client's side, against {@link FakeServer}: a broken data connection or
 * an UNAVAILABLE answer is ridden through by reconnecting, resuming the same session and resending
 * the interrupted request with the same request id; the retry deadline, a disabled retry and
 * close() end it. No test asserts how long anything took.
 */
class KvClientReconnectTest {
  /** Long enough never to expire in a test that expects success, even on a loaded machine. */
  private static final Duration PATIENT = Duration.ofSeconds(30);
  /**
   * A retry deadline for tests that expect to give up: short, yet long enough for the broken
   * attempt and two reconnection attempts (at about 50 and 150 ms) on a loaded machine.
   */
  private static final Duration SHORT = Duration.ofMillis(500);
  /** Bound on waiting for a condition or for a thread that should end promptly. */
  private static final Duration WAIT = Duration.ofSeconds(10);

  private final Map<Integer, byte[]> map = new ConcurrentHashMap<>();
  private FakeServer server;

  @BeforeEach
  void start() throws IOException {
    server = new FakeServer(1000, FakeServer.correct(map));
  }

  @AfterEach
  void stop() throws IOException {
    server.close();
  }

  private KvClient connect(Duration retryTimeout) {
    return KvClient.builder("127.0.0.1", server.port()).retryTimeout(retryTimeout).connect();
  }

  @Test
  void putInterruptedAfterItWasAppliedIsResentWithTheSameIdOnTheResumedSessionAndAppliedOnce() {
    server.setScript(FakeServer.dropFirst(1, true, FakeServer.correct(map)));
    try (KvClient kv = connect(PATIENT)) {
      // The fake applied the first attempt and lost its answer; the retry must be recognised as
      // the same write (same session, same id) and answered OK, not KEY_EXISTS.
      assertThat(kv.putIfAbsent(7, "seven".getBytes(UTF_8))).isTrue();
      List<Request> puts = server.seen(Opcode.PUT);
      assertThat(puts).hasSize(2);
      assertThat(puts.get(1).requestId()).isEqualTo(puts.get(0).requestId());
      assertThat(puts.get(0).sessionId()).isEqualTo(FakeServer.SESSION_ID);
      assertThat(puts.get(1).sessionId()).isEqualTo(FakeServer.SESSION_ID);
      assertThat(puts.get(1).connection()).isEqualTo(2);
      assertResumedOnce();
      assertThat(new String(map.get(7), UTF_8)).isEqualTo("seven");
    }
  }

  @Test
  void putInterruptedBeforeItWasAppliedIsResentAndApplied() {
    server.setScript(FakeServer.dropFirst(1, false, FakeServer.correct(map)));
    try (KvClient kv = connect(PATIENT)) {
      kv.put(8, "eight".getBytes(UTF_8));
      List<Request> puts = server.seen(Opcode.PUT);
      assertThat(puts).hasSize(2);
      assertThat(puts.get(1).requestId()).isEqualTo(puts.get(0).requestId());
      assertThat(new String(map.get(8), UTF_8)).isEqualTo("eight");
    }
  }

  @Test
  void removeInterruptedAfterItWasAppliedStillReportsTheKeyExisted() {
    map.put(9, new byte[] {9});
    server.setScript(FakeServer.dropFirst(1, true, FakeServer.correct(map)));
    try (KvClient kv = connect(PATIENT)) {
      assertThat(kv.remove(9)).isTrue();
      List<Request> deletes = server.seen(Opcode.DELETE);
      assertThat(deletes).hasSize(2);
      assertThat(deletes.get(1).requestId()).isEqualTo(deletes.get(0).requestId());
      assertThat(map).doesNotContainKey(9);
    }
  }

  @Test
  void getInterruptedIsResentWithTheSameIdOnTheResumedSession() {
    map.put(5, "five".getBytes(UTF_8));
    server.setScript(FakeServer.dropFirst(1, false, FakeServer.correct(map)));
    try (KvClient kv = connect(PATIENT)) {
      assertThat(new String(kv.get(5).orElseThrow(), UTF_8)).isEqualTo("five");
      List<Request> gets = server.seen(Opcode.GET);
      assertThat(gets).hasSize(2);
      assertThat(gets.get(1).requestId()).isEqualTo(gets.get(0).requestId());
      assertThat(gets.get(1).sessionId()).isEqualTo(FakeServer.SESSION_ID);
      assertResumedOnce();
    }
  }

  @Test
  void readInterruptedMidValueIsResentAndFillsTheBuffer() {
    map.put(5, "abcdef".getBytes(UTF_8));
    FakeServer.Script correct = FakeServer.correct(map);
    AtomicBoolean cut = new AtomicBoolean();
    server.setScript((r, out) -> {
      if (cut.compareAndSet(false, true)) {
        // Header, stored length and half the value, then the "crash".
        byte[] b = new byte[24];
        Messages.getOkPrefix(b, r.key(), r.requestId(), 6, 6);
        out.write(b);
        out.write("abc".getBytes(UTF_8));
        out.flush();
        throw new IOException("dropped mid value");
      }
      correct.answer(r, out);
    });
    try (KvClient kv = connect(PATIENT)) {
      byte[] buffer = new byte[10];
      assertThat(kv.read(5, buffer)).isEqualTo(6);
      assertThat(new String(buffer, 0, 6, UTF_8)).isEqualTo("abcdef");
      assertThat(server.seen(Opcode.GET)).hasSize(2);
    }
  }

  @Test
  void clientKeepsWorkingAfterReconnectingAndRequestIdsOnlyRepeatForRetries() {
    server.setScript(FakeServer.dropFirst(1, true, FakeServer.correct(map)));
    try (KvClient kv = connect(PATIENT)) {
      kv.put(1, "a".getBytes(UTF_8));
      server.dropConnections(); // a crash between two calls: the next call finds it broken
      assertThat(kv.putIfAbsent(2, "b".getBytes(UTF_8))).isTrue();
      assertThat(kv.putIfAbsent(2, "c".getBytes(UTF_8))).isFalse();
      assertThat(new String(kv.get(1).orElseThrow(), UTF_8)).isEqualTo("a");
      assertThat(kv.remove(1)).isTrue();
      assertThat(kv.get(1)).isEmpty();

      long previousId = 0;
      int previousConnection = 0;
      for (Request r : server.seen()) {
        if (r.op() == Opcode.SESSION) {
          assertThat(r.sessionId()).isEqualTo(r.connection() == 1 ? 0 : FakeServer.SESSION_ID);
          continue;
        }
        assertThat(r.sessionId()).isEqualTo(FakeServer.SESSION_ID);
        if (r.requestId() == previousId) {
          // Only a retry repeats an id, and only on a new connection.
          assertThat(r.connection()).isGreaterThan(previousConnection);
        } else {
          assertThat(r.requestId()).isGreaterThan(previousId);
        }
        previousId = r.requestId();
        previousConnection = r.connection();
      }
      assertThat(server.dataConnections()).isEqualTo(3);
    }
  }

  @Test
  void frontAnsweringUnavailableAFewTimesIsRiddenThrough() {
    try (KvClient kv = connect(PATIENT)) {
      kv.put(1, "a".getBytes(UTF_8));
      server.answerUnavailableToHellos(3);
      server.dropConnections();
      assertThat(new String(kv.get(1).orElseThrow(), UTF_8)).isEqualTo("a");
      assertThat(server.hellos()).isEqualTo(1 + 4);
      assertThat(server.dataConnections()).isEqualTo(2);
    }
  }

  @Test
  void connectRetriesWhileTheFrontAnswersUnavailable() {
    server.answerUnavailableToHellos(3);
    try (KvClient kv = connect(PATIENT)) {
      kv.put(1, "a".getBytes(UTF_8));
      assertThat(server.hellos()).isEqualTo(4);
      assertThat(server.dataConnections()).isEqualTo(1);
    }
  }

  @Test
  void dataRequestAnsweredUnavailableIsRetried() {
    server.setScript(FakeServer.unavailableFirst(2, FakeServer.correct(map)));
    try (KvClient kv = connect(PATIENT)) {
      assertThat(kv.putIfAbsent(3, "c".getBytes(UTF_8))).isTrue();
      List<Request> puts = server.seen(Opcode.PUT);
      assertThat(puts).hasSize(3);
      assertThat(puts.get(2).requestId()).isEqualTo(puts.get(0).requestId());
      assertThat(server.dataConnections()).isEqualTo(3);
    }
  }

  @Test
  void dataServerRelaunchedOnAnotherPortIsFoundWhileTheCallWaits() throws Exception {
    try (KvClient kv = connect(PATIENT)) {
      int hellosBefore = server.hellos();
      server.stopData(); // crash: refused, and the front answers UNAVAILABLE meanwhile
      Call<Boolean> put = Call.start(() -> kv.putIfAbsent(4, "d".getBytes(UTF_8)));
      awaitTrue(() -> server.hellos() >= hellosBefore + 2); // the call is retrying
      server.startData();
      assertThat(put.result()).isTrue();
      assertThat(new String(map.get(4), UTF_8)).isEqualTo("d");
      assertThat(server.seen(Opcode.SESSION).get(1).sessionId()).isEqualTo(FakeServer.SESSION_ID);
    }
  }

  @Test
  void maxValueBytesFollowsTheResumedSession() {
    try (KvClient kv = connect(PATIENT)) {
      assertThat(kv.maxValueBytes()).isEqualTo(1000);
      server.setMaxValueBytes(500);
      server.dropConnections();
      kv.put(1, new byte[1]);
      assertThat(kv.maxValueBytes()).isEqualTo(500);
      assertThat(assertThrows(KvException.class, () -> kv.put(1, new byte[501])).status())
          .isEqualTo(Status.TOO_LARGE);
    }
  }

  @Test
  void withNoServerComingBackTheCallFailsAfterTheDeadlineHavingRetried() throws IOException {
    try (KvClient kv = connect(SHORT)) {
      int hellosBefore = server.hellos();
      server.stopData(); // the front answers UNAVAILABLE from now on
      KvException e = assertThrows(KvException.class, () -> kv.get(1));
      assertThat(e.status()).isEqualTo(Status.IO_ERROR);
      assertThat(e).hasMessageThat().contains("gave up after");
      assertThat(e).hasMessageThat().contains("last cause");
      assertThat(e).hasMessageThat().contains("UNAVAILABLE");
      assertThat(server.hellos() - hellosBefore).isAtLeast(2);
    }
  }

  @Test
  void withNothingListeningTheCallFailsAfterTheDeadlineHavingRetried() throws IOException {
    try (KvClient kv = connect(SHORT)) {
      server.stopFront();
      server.stopData();
      KvException e = assertThrows(KvException.class, () -> kv.get(1));
      assertThat(e.status()).isEqualTo(Status.IO_ERROR);
      // The message counts the attempts: the broken one plus at least two reconnections.
      assertThat(e).hasMessageThat().containsMatch(" and ([3-9]|[1-9][0-9]+) attempts");
      assertThat(e).hasMessageThat().contains("cannot reach the Front Server");
    }
  }

  @Test
  void aFailedCallDoesNotPoisonTheClient() throws IOException {
    try (KvClient kv = connect(SHORT)) {
      server.stopData();
      assertThat(assertThrows(KvException.class, () -> kv.get(1)).status())
          .isEqualTo(Status.IO_ERROR);
      server.startData();
      kv.put(1, "back".getBytes(UTF_8));
      assertThat(new String(kv.get(1).orElseThrow(), UTF_8)).isEqualTo("back");
      assertThat(server.seen(Opcode.SESSION).get(1).sessionId()).isEqualTo(FakeServer.SESSION_ID);
    }
  }

  @Test
  void retryTimeoutZeroFailsAtOnceAndForGood() {
    server.setScript(FakeServer.dropFirst(1, false, FakeServer.correct(map)));
    try (KvClient kv = connect(Duration.ZERO)) {
      KvException e = assertThrows(KvException.class, () -> kv.put(1, new byte[1]));
      assertThat(e.status()).isEqualTo(Status.IO_ERROR);
      assertThrows(KvException.class, () -> kv.get(1));
      assertThat(server.hellos()).isEqualTo(1);
      assertThat(server.dataConnections()).isEqualTo(1);
    }
  }

  @Test
  void retryTimeoutZeroReportsUnavailableAsSuch() {
    server.setScript(FakeServer.unavailableFirst(1, FakeServer.correct(map)));
    try (KvClient kv = connect(Duration.ZERO)) {
      KvException e = assertThrows(KvException.class, () -> kv.put(1, new byte[1]));
      assertThat(e.status()).isEqualTo(Status.UNAVAILABLE);
      assertThat(server.dataConnections()).isEqualTo(1);
    }
    server.answerUnavailableToHellos(1);
    KvException e = assertThrows(KvException.class, () -> connect(Duration.ZERO));
    assertThat(e.status()).isEqualTo(Status.UNAVAILABLE);
  }

  @Test
  void closeFromAnotherThreadEndsAWaitBetweenAttemptsPromptly() throws Exception {
    KvClient kv = connect(PATIENT);
    int hellosBefore = server.hellos();
    server.stopData();
    Call<Optional<byte[]>> get = Call.start(() -> kv.get(1));
    awaitTrue(() -> server.hellos() >= hellosBefore + 3); // retrying, with back-off waits
    kv.close();
    KvException e = get.failure();
    assertThat(e.status()).isEqualTo(Status.IO_ERROR);
    assertThat(e).hasMessageThat().isEqualTo("client is closed");
  }

  @Test
  void closeFromAnotherThreadEndsABlockedReconnectPromptly() throws Exception {
    KvClient kv = KvClient.builder("127.0.0.1", server.port())
        .connectTimeout(Duration.ofSeconds(60)).retryTimeout(Duration.ofSeconds(60)).connect();
    int hellosBefore = server.hellos();
    server.hangHellos(true); // HELLO is never answered: the retry blocks reading it
    server.dropConnections();
    Call<Optional<byte[]>> get = Call.start(() -> kv.get(1));
    awaitTrue(() -> server.hellos() > hellosBefore);
    kv.close();
    KvException e = get.failure();
    assertThat(e.status()).isEqualTo(Status.IO_ERROR);
    assertThat(e).hasMessageThat().isEqualTo("client is closed");
  }

  @Test
  void protocolViolationIsNotRetriedButTheNextCallConnectsAgain() {
    server.setScript((r, out) -> FakeServer.answerStatus(r, out, Status.NOT_FOUND)); // to a PUT
    try (KvClient kv = connect(PATIENT)) {
      KvException e = assertThrows(KvException.class, () -> kv.put(1, new byte[1]));
      assertThat(e.status()).isEqualTo(Status.IO_ERROR);
      assertThat(e).hasMessageThat().contains("protocol error");
      assertThat(server.dataConnections()).isEqualTo(1);
      assertThat(server.hellos()).isEqualTo(1);
      server.setScript(FakeServer.correct(map));
      kv.put(1, new byte[1]);
      assertThat(server.dataConnections()).isEqualTo(2);
    }
  }

  @Test
  void resumeAnsweredWithAnotherSessionIdIsAProtocolViolation() {
    try (KvClient kv = connect(PATIENT)) {
      server.setSessionIdOverride(0x42);
      server.dropConnections();
      KvException e = assertThrows(KvException.class, () -> kv.get(1));
      assertThat(e.status()).isEqualTo(Status.IO_ERROR);
      assertThat(e).hasMessageThat().contains("answered session 42");
      assertThat(server.dataConnections()).isEqualTo(2);
      // The first attempt met the closed connection; the retry was not sent on the wrong session.
      assertThat(server.seen(Opcode.GET)).isEmpty();
    }
  }

  @Test
  void retryTimeoutComesFromTheEnvironmentVariableWhenSet() {
    assertThat(KvClient.retryTimeoutFromEnv(null)).isEqualTo(KvClient.DEFAULT_RETRY_TIMEOUT);
    assertThat(KvClient.retryTimeoutFromEnv("")).isEqualTo(KvClient.DEFAULT_RETRY_TIMEOUT);
    assertThat(KvClient.retryTimeoutFromEnv("0")).isEqualTo(Duration.ZERO);
    assertThat(KvClient.retryTimeoutFromEnv(" 250 ")).isEqualTo(Duration.ofMillis(250));
    for (String bad : new String[] {"-1", "1s", "abc"}) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> KvClient.retryTimeoutFromEnv(bad));
      assertThat(e).hasMessageThat().contains("PSISKV_RETRY_TIMEOUT_MS");
    }
  }

  @Test
  void builderRejectsBadOptions() {
    KvClient.Builder b = KvClient.builder("127.0.0.1", server.port());
    assertThrows(IllegalArgumentException.class, () -> b.retryTimeout(Duration.ofMillis(-1)));
    assertThrows(IllegalArgumentException.class, () -> b.connectTimeout(Duration.ZERO));
    assertThrows(IllegalArgumentException.class, () -> KvClient.builder("127.0.0.1", 65536));
  }

  @Test
  void reconnectsAreCountedAndToldToTheListenerOutsideTheLock() throws Exception {
    List<String> told = new java.util.concurrent.CopyOnWriteArrayList<>();
    KvClient[] client = new KvClient[1];
    try (KvClient kv = KvClient.builder("127.0.0.1", server.port()).retryTimeout(PATIENT)
        .onReconnect(c -> {
          // Another thread's call gets the lock at once: the listener does not hold it.
          Call<Optional<byte[]>> other = Call.start(() -> c.get(9));
          try {
            other.result();
          } catch (InterruptedException e) {
            throw new AssertionError(e);
          }
          told.add(c.reconnects() + " " + (c == client[0]));
        }).connect()) {
      client[0] = kv;
      assertThat(kv.reconnects()).isEqualTo(0);
      kv.put(1, new byte[] {1});
      assertThat(told).isEmpty();
      server.setScript(FakeServer.dropFirst(1, false, FakeServer.correct(map)));
      kv.put(2, new byte[] {2}); // rides through one broken connection
      assertThat(kv.reconnects()).isEqualTo(1);
      assertThat(told).containsExactly("1 true");
      server.dropConnections();
      assertThat(kv.get(2)).isPresent();
      assertThat(kv.reconnects()).isEqualTo(2);
      assertThat(told).containsExactly("1 true", "2 true").inOrder();
    }
  }

  @Test
  void aListenerThatThrowsDoesNotChangeTheCallsResult() throws Exception {
    AtomicReference<Throwable> uncaught = new AtomicReference<>();
    Call<Boolean> call = Call.start(() -> {
      Thread.currentThread().setUncaughtExceptionHandler((t, e) -> uncaught.set(e));
      try (KvClient kv = KvClient.builder("127.0.0.1", server.port()).retryTimeout(PATIENT)
          .onReconnect(c -> {
            throw new IllegalStateException("listener failed");
          }).connect()) {
        server.dropConnections();
        return kv.putIfAbsent(5, new byte[] {5});
      }
    });
    assertThat(call.result()).isTrue();
    assertThat(uncaught.get()).hasMessageThat().isEqualTo("listener failed");
  }

  /** The first SESSION opened the session; exactly one later SESSION resumed it. */
  private void assertResumedOnce() {
    List<Request> sessions = server.seen(Opcode.SESSION);
    assertThat(sessions).hasSize(2);
    assertThat(sessions.get(0).sessionId()).isEqualTo(0);
    assertThat(sessions.get(1).sessionId()).isEqualTo(FakeServer.SESSION_ID);
  }

  private static void awaitTrue(BooleanSupplier condition) {
    long deadline = System.nanoTime() + WAIT.toNanos();
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() - deadline > 0) {
        throw new AssertionError("condition not met within " + WAIT);
      }
      LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(1));
    }
  }

  /** A client call running in its own thread, so the test can act while it retries. */
  private static final class Call<T> {
    private final Thread thread;
    private final AtomicReference<T> value = new AtomicReference<>();
    private final AtomicReference<RuntimeException> error = new AtomicReference<>();

    private Call(Supplier<T> body) {
      thread = new Thread(() -> {
        try {
          value.set(body.get());
        } catch (RuntimeException e) {
          error.set(e);
        }
      }, "client-call");
      thread.setDaemon(true);
    }

    static <T> Call<T> start(Supplier<T> body) {
      Call<T> c = new Call<>(body);
      c.thread.start();
      return c;
    }

    /** Waits (bounded) for the call to end and returns its result. */
    T result() throws InterruptedException {
      join();
      if (error.get() != null) {
        throw new AssertionError("the call failed", error.get());
      }
      return value.get();
    }

    /** Waits (bounded) for the call to end and returns the KvException it threw. */
    KvException failure() throws InterruptedException {
      join();
      assertThat(error.get()).isInstanceOf(KvException.class);
      return (KvException) error.get();
    }

    private void join() throws InterruptedException {
      thread.join(WAIT.toMillis());
      assertThat(thread.isAlive()).isFalse();
    }
  }
}
