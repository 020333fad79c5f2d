package io.psiskv.client;

import static com.google.common.truth.Truth.assertThat;
import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.psiskv.client.FakeServer.Request;
import io.psiskv.protocol.Opcode;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The asynchronous calls against {@link FakeServer}: several requests in flight on one
 * connection, answers matched in order by request id, the in-flight bound, and what a broken or
 * timed-out connection does to the requests in flight (they fail, are not resent, and the next
 * call reconnects). Every wait is bounded; nothing sleeps.
 */
@Timeout(60) // a hang is a failure, not a stuck build
class KvClientAsyncTest {
  private static final Duration WAIT = Duration.ofSeconds(10);
  private static final Duration PATIENT = Duration.ofSeconds(30);

  private final Map<Integer, byte[]> map = new ConcurrentHashMap<>();
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

  private KvClient connect() {
    return KvClient.builder("127.0.0.1", server.port()).retryTimeout(PATIENT).connect();
  }

  /**
   * Answers correctly, but holds the answers back until {@code n} requests have arrived and then
   * sends them all in one write: a client that waited for each answer before sending the next
   * request would wait forever.
   */
  private FakeServer.Script answersInBatchesOf(int n) {
    FakeServer.Script correct = FakeServer.correct(map);
    ByteArrayOutputStream held = new ByteArrayOutputStream();
    AtomicInteger count = new AtomicInteger();
    return (r, out) -> {
      correct.answer(r, held);
      if (count.incrementAndGet() % n == 0) {
        out.write(held.toByteArray());
        held.reset();
      }
    };
  }

  @Test
  void requestsInFlightTogetherOnOneConnectionGetTheirOwnAnswers() throws Exception {
    map.put(1, bytes("one"));
    map.put(2, bytes("two"));
    server.setScript(answersInBatchesOf(5));
    try (KvClient kv = connect()) {
      CompletableFuture<Optional<byte[]>> get1 = kv.getAsync(1);
      CompletableFuture<Optional<byte[]>> get3 = kv.getAsync(3);
      CompletableFuture<Boolean> absent = kv.putIfAbsentAsync(2, bytes("not stored"));
      CompletableFuture<Void> put = kv.putAsync(4, bytes("four"));
      CompletableFuture<Boolean> removed = kv.removeAsync(1);
      assertThat(new String(get1.get(WAIT.toSeconds(), TimeUnit.SECONDS).get(), UTF_8))
          .isEqualTo("one");
      assertThat(get3.get(WAIT.toSeconds(), TimeUnit.SECONDS)).isEmpty();
      assertThat(absent.get(WAIT.toSeconds(), TimeUnit.SECONDS)).isFalse();
      assertThat(put.get(WAIT.toSeconds(), TimeUnit.SECONDS)).isNull();
      assertThat(removed.get(WAIT.toSeconds(), TimeUnit.SECONDS)).isTrue();
      assertThat(new String(map.get(4), UTF_8)).isEqualTo("four");
      List<Request> seen = server.seen();
      assertThat(seen).hasSize(6); // SESSION and the five, all on the first connection
      for (Request r : seen) {
        assertThat(r.connection()).isEqualTo(1);
      }
      // A synchronous call after them uses the same connection.
      server.setScript(FakeServer.correct(map));
      assertThat(kv.putIfAbsent(5, bytes("five"))).isTrue();
      assertThat(kv.reconnects()).isEqualTo(0);
    }
  }

  @Test
  void futuresCompleteOffTheReaderThreadSoAStageMayCallTheClient() throws Exception {
    server.setScript(answersInBatchesOf(1));
    try (KvClient kv = connect()) {
      CompletableFuture<Boolean> chained = kv.putAsync(1, bytes("a"))
          .thenApply(ignored -> {
            assertThat(Thread.currentThread().getName()).isNotEqualTo("psiskv-async-reader");
            return kv.get(1).isPresent(); // a synchronous call inside a stage
          });
      assertThat(chained.get(WAIT.toSeconds(), TimeUnit.SECONDS)).isTrue();
    }
  }

  @Test
  void aStageOnTheReaderThreadThatWouldWaitForAnswersFailsInsteadOfDeadlocking() throws Exception {
    server.setScript(answersInBatchesOf(2));
    try (KvClient kv = KvClient.builder("127.0.0.1", server.port()).retryTimeout(PATIENT)
        .asyncExecutor(Runnable::run).connect()) {
      CompletableFuture<Boolean> stage = kv.putAsync(1, bytes("a"))
          .thenApply(ignored -> kv.get(1).isPresent()); // on the reader, the GET below in flight
      CompletableFuture<Optional<byte[]>> get = kv.getAsync(1);
      ExecutionException e = assertThrows(ExecutionException.class,
          () -> stage.get(WAIT.toSeconds(), TimeUnit.SECONDS));
      assertThat(e).hasCauseThat().isInstanceOf(IllegalStateException.class);
      assertThat(get.get(WAIT.toSeconds(), TimeUnit.SECONDS)).isPresent();
      server.setScript(FakeServer.correct(map));
      assertThat(kv.get(1)).isPresent(); // the client is unharmed
    }
  }

  @Test
  void answersOutOfOrderAreAProtocolViolationThatFailsEveryRequestInFlight() throws Exception {
    FakeServer.Script correct = FakeServer.correct(map);
    List<byte[]> held = new ArrayList<>();
    server.setScript((r, out) -> {
      ByteArrayOutputStream answer = new ByteArrayOutputStream();
      correct.answer(r, answer);
      held.add(answer.toByteArray());
      if (held.size() == 3) { // the second answer first: a server that breaks §2
        out.write(held.get(1));
        out.write(held.get(0));
        out.write(held.get(2));
      }
    });
    try (KvClient kv = connect()) {
      CompletableFuture<Optional<byte[]>> a = kv.getAsync(1);
      CompletableFuture<Optional<byte[]>> b = kv.getAsync(2);
      CompletableFuture<Optional<byte[]>> c = kv.getAsync(3);
      KvException ea = failure(a);
      assertThat(ea.getClass()).isEqualTo(KvException.class);
      assertThat(ea).hasMessageThat().startsWith("protocol error:");
      assertThat(failure(b)).isInstanceOf(KvConnectionException.class);
      assertThat(failure(c)).isInstanceOf(KvConnectionException.class);
      server.setScript(correct);
      assertThat(kv.get(1)).isEmpty(); // the next call connects again
      assertThat(kv.reconnects()).isEqualTo(1);
    }
  }

  @Test
  void brokenConnectionFailsTheRequestsInFlightWithoutResendingThem() throws Exception {
    AtomicInteger count = new AtomicInteger();
    server.setScript((r, out) -> {
      if (count.incrementAndGet() == 3) {
        throw new IOException("crash"); // closes the connection with three unanswered
      }
    });
    try (KvClient kv = connect()) {
      List<CompletableFuture<Void>> puts = new ArrayList<>();
      for (int i = 0; i < 3; i++) {
        puts.add(kv.putAsync(i, bytes("v" + i)));
      }
      for (CompletableFuture<Void> put : puts) {
        KvException e = failure(put);
        assertThat(e).isInstanceOf(KvConnectionException.class);
        assertThat(e).hasMessageThat().contains("failed");
      }
      assertThat(server.seen(Opcode.PUT)).hasSize(3); // none was resent
      server.setScript(FakeServer.correct(map));
      kv.putAsync(9, bytes("nine")).get(WAIT.toSeconds(), TimeUnit.SECONDS);
      assertThat(kv.reconnects()).isEqualTo(1);
      List<Request> sessions = server.seen(Opcode.SESSION);
      assertThat(sessions.get(sessions.size() - 1).sessionId()).isEqualTo(FakeServer.SESSION_ID);
    }
  }

  @Test
  void aCallBeyondTheInFlightBoundWaitsForRoom() throws Exception {
    FakeServer.Script correct = FakeServer.correct(map);
    ByteArrayOutputStream held = new ByteArrayOutputStream();
    AtomicInteger count = new AtomicInteger();
    server.setScript((r, out) -> {
      correct.answer(r, held);
      if (count.incrementAndGet() == KvClient.MAX_IN_FLIGHT) {
        try {
          release.await(); // all the bound's requests arrived, none answered
        } catch (InterruptedException e) {
          throw new IOException(e);
        }
        out.write(held.toByteArray());
        held.reset();
        server.setScript(correct);
      }
    });
    try (KvClient kv = connect()) {
      List<CompletableFuture<Optional<byte[]>>> gets = new ArrayList<>();
      for (int i = 0; i < KvClient.MAX_IN_FLIGHT; i++) {
        gets.add(kv.getAsync(i));
      }
      List<CompletableFuture<Optional<byte[]>>> extra = new ArrayList<>();
      Thread caller = new Thread(() -> extra.add(kv.getAsync(-1)), "over-the-bound");
      caller.start();
      awaitTrue(() -> caller.getState() == Thread.State.WAITING
          && server.seen(Opcode.GET).size() == KvClient.MAX_IN_FLIGHT);
      assertThat(server.seen(Opcode.GET)).hasSize(KvClient.MAX_IN_FLIGHT); // not sent yet
      release.countDown();
      caller.join(WAIT.toMillis());
      assertThat(caller.isAlive()).isFalse();
      assertThat(extra.get(0).get(WAIT.toSeconds(), TimeUnit.SECONDS)).isEmpty();
      for (CompletableFuture<Optional<byte[]>> g : gets) {
        assertThat(g.get(WAIT.toSeconds(), TimeUnit.SECONDS)).isEmpty();
      }
    }
  }

  @Test
  void asyncRequestNeverAnsweredTimesOutAndTheOnesBehindItAreDropped() throws Exception {
    server.setScript((r, out) -> {
      if (r.key() == 2) {
        try {
          release.await();
        } catch (InterruptedException e) {
          throw new IOException(e);
        }
      }
    });
    try (KvClient kv = KvClient.builder("127.0.0.1", server.port()).retryTimeout(PATIENT)
        .callTimeout(Duration.ofMillis(300)).connect()) {
      long start = System.nanoTime();
      CompletableFuture<Optional<byte[]>> first = kv.getAsync(2);
      CompletableFuture<Optional<byte[]>> second = kv.getAsync(3);
      KvException e = failure(first);
      assertThat(e).isInstanceOf(KvTimeoutException.class);
      assertThat(System.nanoTime() - start).isAtLeast(TimeUnit.MILLISECONDS.toNanos(299));
      assertThat(failure(second)).isInstanceOf(KvConnectionException.class);
      server.setScript(FakeServer.correct(map));
      assertThat(kv.getAsync(3).get(WAIT.toSeconds(), TimeUnit.SECONDS)).isEmpty();
      assertThat(kv.reconnects()).isEqualTo(1);
    }
  }

  @Test
  void timeoutEndsASendBlockedOnAServerThatStoppedReading() throws Exception {
    server.close();
    server = new FakeServer(64 << 20, (r, out) -> {
      try {
        release.await(); // the fake stops reading: the client's large write fills the buffers
      } catch (InterruptedException e) {
        throw new IOException(e);
      }
    });
    try (KvClient kv = KvClient.builder("127.0.0.1", server.port()).retryTimeout(PATIENT)
        .callTimeout(Duration.ofMillis(300)).connect()) {
      CompletableFuture<Optional<byte[]>> get = kv.getAsync(1);
      // More than loopback's socket buffers hold: this call blocks in its write until the GET's
      // deadline closes the connection.
      long start = System.nanoTime();
      CompletableFuture<Void> put = kv.putAsync(2, new byte[48 << 20]);
      assertThat(System.nanoTime() - start).isAtLeast(TimeUnit.MILLISECONDS.toNanos(200));
      assertThat(failure(get)).isInstanceOf(KvTimeoutException.class);
      assertThat(failure(put)).isInstanceOf(KvConnectionException.class);
    }
  }

  @Test
  void closeFailsTheRequestsInFlightAndLaterCalls() throws Exception {
    server.setScript((r, out) -> { }); // never answers
    KvClient kv = connect();
    CompletableFuture<Optional<byte[]>> pending = kv.getAsync(1);
    awaitTrue(() -> !server.seen(Opcode.GET).isEmpty());
    kv.close();
    assertThat(failure(pending)).hasMessageThat().isEqualTo("client is closed");
    assertThat(failure(kv.getAsync(1))).hasMessageThat().isEqualTo("client is closed");
  }

  @Test
  void valueOverTheMaximumFailsTheFutureNotTheCall() throws Exception {
    try (KvClient kv = connect()) {
      KvException e = failure(kv.putAsync(1, new byte[1001]));
      assertThat(e).isInstanceOf(KvRejectedException.class);
      assertThrows(NullPointerException.class, () -> kv.putAsync(1, null));
    }
  }

  /** The KvException a future fails with, within WAIT. */
  private static KvException failure(CompletableFuture<?> f) throws Exception {
    try {
      f.get(WAIT.toSeconds(), TimeUnit.SECONDS);
    } catch (ExecutionException e) {
      assertThat(e.getCause()).isInstanceOf(KvException.class);
      return (KvException) e.getCause();
    } catch (TimeoutException e) {
      throw new AssertionError("the future did not complete within " + WAIT, e);
    }
    throw new AssertionError("the future succeeded");
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

  private static byte[] bytes(String s) {
    return s.getBytes(UTF_8);
  }
}
