package io.psiskv.client;

import static com.google.common.truth.Truth.assertThat;
import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.psiskv.client.FakeServer.Request;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Status;
import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/**
 * The call timeout ({@link KvClient.Builder#callTimeout}) and the exception classes against
 * {@link FakeServer}: a server that accepts a request and never answers it makes the call fail
 * with {@link KvTimeoutException} within a bound; the connection is dropped, the request is not
 * sent again, and the next call reconnects and resumes the session. Each test takes well under a
 * second unless the client is broken; the upper bounds are generous for a loaded machine.
 */
class KvClientTimeoutTest {
  private static final Duration TIMEOUT = Duration.ofMillis(300);
  /** A call that times out must have ended within this (the timeout and a loaded machine's lag). */
  private static final Duration BOUND = Duration.ofSeconds(5);
  private static final Duration PATIENT = Duration.ofSeconds(30);

  private final Map<Integer, byte[]> map = new ConcurrentHashMap<>();
  /** Released at the end of each test: a hung script then returns and its connection closes. */
  private final CountDownLatch release = new CountDownLatch(1);
  private FakeServer server;

  @BeforeEach
  void start() throws IOException {
    server = new FakeServer(1000, FakeServer.correct(map));
  }

  @AfterEach
  void stop() throws IOException {
    release.countDown();
    server.close();
  }

  /** Accepts every request and never answers it (until the test ends). */
  private FakeServer.Script hang() {
    return (r, out) -> {
      try {
        release.await();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      throw new IOException("released");
    };
  }

  /** The first request hangs, every later one is answered correctly. */
  private FakeServer.Script hangFirst() {
    FakeServer.Script correct = FakeServer.correct(map);
    FakeServer.Script hang = hang();
    AtomicBoolean first = new AtomicBoolean();
    return (r, out) -> (first.compareAndSet(false, true) ? hang : correct).answer(r, out);
  }

  private KvClient connect(Duration callTimeout) {
    return KvClient.builder("127.0.0.1", server.port())
        .retryTimeout(PATIENT).callTimeout(callTimeout).connect();
  }

  @Test
  void getThatIsNeverAnsweredTimesOutWithinTheBound() {
    server.setScript(hang());
    try (KvClient kv = connect(TIMEOUT)) {
      KvTimeoutException e = timesOut(() -> kv.get(1));
      assertThat(e.status()).isEqualTo(Status.IO_ERROR);
      assertThat(e).hasMessageThat()
          .isEqualTo("GET of key 1 timed out after 300 ms waiting for its answer");
    }
  }

  @Test
  void timedOutWriteIsAbandonedAndTheNextCallReconnectsAndResumes() {
    server.setScript(hangFirst());
    try (KvClient kv = connect(TIMEOUT)) {
      timesOut(() -> kv.putIfAbsent(7, "first".getBytes(UTF_8)));
      assertThat(kv.putIfAbsent(7, "second".getBytes(UTF_8))).isTrue();
      List<Request> puts = server.seen(Opcode.PUT);
      assertThat(puts).hasSize(2); // the timed-out one was never sent again
      assertThat(Long.compareUnsigned(puts.get(1).requestId(), puts.get(0).requestId()))
          .isGreaterThan(0);
      assertThat(puts.get(0).connection()).isEqualTo(1);
      assertThat(puts.get(1).connection()).isEqualTo(2);
      List<Request> sessions = server.seen(Opcode.SESSION);
      assertThat(sessions).hasSize(2);
      assertThat(sessions.get(1).sessionId()).isEqualTo(FakeServer.SESSION_ID); // resumed
      assertThat(new String(map.get(7), UTF_8)).isEqualTo("second");
    }
  }

  @Test
  void timeoutBoundsReconnectionThatWouldOutlastIt() {
    try (KvClient kv = KvClient.builder("127.0.0.1", server.port())
        .connectTimeout(Duration.ofSeconds(60)).retryTimeout(Duration.ofSeconds(60))
        .callTimeout(TIMEOUT).connect()) {
      server.hangHellos(true); // a reconnection blocks reading HELLO's answer
      server.dropConnections();
      KvTimeoutException e = timesOut(() -> kv.get(1));
      assertThat(e).hasMessageThat().startsWith("GET of key 1 timed out after 300 ms");
    }
  }

  @Test
  void timeoutCountsTheWaitForAnotherThreadsCall() throws Exception {
    server.setScript(hang());
    try (KvClient kv = connect(TIMEOUT)) {
      Thread other = new Thread(() -> assertThrows(KvTimeoutException.class, () -> kv.get(1)));
      other.start();
      while (server.seen(Opcode.GET).isEmpty()) { // the other call holds the lock, hung
        assertThat(other.isAlive()).isTrue();
        java.util.concurrent.locks.LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(1));
      }
      KvTimeoutException e = timesOut(() -> kv.get(2));
      assertThat(e).hasMessageThat().isAnyOf(
          "GET of key 2 timed out after 300 ms waiting for this client's other calls",
          "GET of key 2 timed out after 300 ms waiting for its answer");
      other.join(BOUND.toMillis());
      assertThat(other.isAlive()).isFalse();
    }
  }

  @Test
  void withoutACallTimeoutNoTimerThreadIsStarted() {
    List<Thread> before = timerThreads();
    try (KvClient kv = connect(Duration.ZERO)) {
      kv.put(1, new byte[] {1});
      assertThat(kv.get(1).get()).isEqualTo(new byte[] {1});
      assertThat(before).containsAtLeastElementsIn(timerThreads());
    }
  }

  @Test
  void closeEndsTheTimerThread() throws Exception {
    List<Thread> before = timerThreads();
    KvClient kv = connect(TIMEOUT);
    List<Thread> started = new java.util.ArrayList<>(timerThreads());
    started.removeAll(before);
    assertThat(started).hasSize(1);
    kv.close();
    started.get(0).join(BOUND.toMillis());
    assertThat(started.get(0).isAlive()).isFalse();
  }

  @Test
  void aHugeCallTimeoutDoesNotOverflowIntoAnExpiredDeadline() {
    try (KvClient kv = connect(Duration.ofSeconds(Long.MAX_VALUE))) {
      kv.put(1, new byte[] {1});
      assertThat(kv.get(1)).isPresent();
    }
  }

  @Test
  void builderRejectsBadCallTimeouts() {
    KvClient.Builder b = KvClient.builder("127.0.0.1", server.port());
    assertThrows(IllegalArgumentException.class, () -> b.callTimeout(Duration.ofMillis(-1)));
    assertThrows(IllegalArgumentException.class, () -> b.callTimeout(Duration.ofNanos(1)));
  }

  // The exception classes.

  @Test
  void valueOverTheMaximumIsRejectedBeforeSending() {
    try (KvClient kv = connect(Duration.ZERO)) {
      KvException e = assertThrows(KvException.class, () -> kv.put(1, new byte[1001]));
      assertThat(e).isInstanceOf(KvRejectedException.class);
      assertThat(e.status()).isEqualTo(Status.TOO_LARGE);
    }
  }

  @Test
  void errorStatusAnsweredByTheServerIsARejection() {
    for (Status status : new Status[] {Status.BAD_REQUEST, Status.FORBIDDEN, Status.SERVER_ERROR}) {
      server.setScript((r, out) -> FakeServer.answerStatus(r, out, status));
      try (KvClient kv = connect(Duration.ZERO)) {
        KvException e = assertThrows(KvException.class, () -> kv.remove(3));
        assertThat(e).isInstanceOf(KvRejectedException.class);
        assertThat(e.status()).isEqualTo(status);
      }
    }
  }

  @Test
  void unreachableServerAndClosedClientAreConnectionFailures() throws IOException {
    int port = server.port();
    server.close();
    // Fails fast on a refused connect; the short retry timeout bounds the test should another
    // process take the freed port meanwhile (the outcome is a connection failure either way).
    KvException e = assertThrows(KvException.class, () -> KvClient.builder("127.0.0.1", port)
        .retryTimeout(Duration.ofMillis(500)).connect());
    assertThat(e).isInstanceOf(KvConnectionException.class);
    assertThat(e.status()).isEqualTo(Status.IO_ERROR);

    server = new FakeServer(1000, FakeServer.correct(map));
    KvClient kv = connect(Duration.ZERO);
    kv.close();
    e = assertThrows(KvException.class, () -> kv.get(1));
    assertThat(e).isInstanceOf(KvConnectionException.class);
    assertThat(e).hasMessageThat().isEqualTo("client is closed");
  }

  @Test
  void connectionBrokenWithReconnectionDisabledIsAConnectionFailureForGood() {
    try (KvClient kv = KvClient.builder("127.0.0.1", server.port())
        .retryTimeout(Duration.ZERO).connect()) {
      server.dropConnections();
      KvException first = assertThrows(KvException.class, () -> kv.get(1));
      assertThat(first).isInstanceOf(KvConnectionException.class);
      KvException later = assertThrows(KvException.class, () -> kv.get(1));
      assertThat(later).isInstanceOf(KvConnectionException.class);
      assertThat(later).hasCauseThat().isSameInstanceAs(first);
    }
  }

  /** Runs {@code call}, which must fail with a timeout no sooner than TIMEOUT and within BOUND. */
  private static KvTimeoutException timesOut(Executable call) {
    long start = System.nanoTime();
    KvTimeoutException e = assertThrows(KvTimeoutException.class, call);
    long tookNanos = System.nanoTime() - start;
    assertThat(tookNanos).isAtLeast(TIMEOUT.toNanos() - TimeUnit.MILLISECONDS.toNanos(1));
    assertThat(tookNanos).isLessThan(BOUND.toNanos());
    return e;
  }

  private static List<Thread> timerThreads() {
    return Thread.getAllStackTraces().keySet().stream()
        .filter(t -> t.getName().equals("psiskv-call-timer") && t.isAlive()).toList();
  }
}
