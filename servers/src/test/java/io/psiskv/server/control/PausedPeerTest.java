package io.psiskv.server.control;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;
import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.psiskv.protocol.Status;
import io.psiskv.server.testkit.Poll;
import io.psiskv.server.testkit.RawClient;
import io.psiskv.server.testkit.ServerFixture;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * A pause is not a hang: a Data Server that stops sending heartbeats while
 * it runs (as in a long garbage collection) is waited for, up to {@code --hang-timeout-ms}; one
 * that is silent and does nothing (as in a deadlock) is still replaced promptly.
 *
 * <p>Real processes, and real pauses of a real Data Server, with no hook in the server: {@code
 * jcmd GC.heap_dump} stops every Java thread of the JVM at a safepoint for the whole dump, as a
 * stop-the-world collection does. Compressing a few hundred MiB of heap keeps the JVM busy for
 * seconds (here 5-7 s for 384 MiB); dumping into a FIFO that nobody reads freezes it with every
 * thread asleep and no CPU time used, which is what a deadlock looks like from outside.
 *
 * <p>Not tagged {@code server-pair}: the thread policy plays no part in supervision, so the pairs
 * run once, not once per policy.
 */
@Tag("process")
class PausedPeerTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(60);
  /** Extra time a loaded machine may take beyond a stated bound (DESIGN.md §8). */
  private static final long SLACK_MILLIS = 3_000;
  /** On-heap data the busy pause compresses: values over 4 KiB are heap arrays. */
  private static final int BIG_VALUES = 96;
  private static final int BIG_VALUE_BYTES = 4 << 20;

  private static final Pattern IDLE_KILL = Pattern.compile(
      "killing the hung data server \\(pid (\\d+)\\) with SIGKILL: silent for (\\d+) ms and idle");

  /** The key regression: a hang timeout far beyond the pause, so that only the rule decides. */
  @RegisterExtension final ServerFixture patient = pair("--hang-timeout-ms", "60000");
  /** A hang timeout shorter than the pause: the bound holds. */
  @RegisterExtension final ServerFixture impatient = pair("--hang-timeout-ms", "2500");
  /** The default hang timeout. */
  @RegisterExtension final ServerFixture standard = pair();

  private static ServerFixture pair(String... args) {
    // The heap must hold the big values (the JVM option reaches the Data Server too).
    return ServerFixture.builder().manualStart().jvmArgs("-Xmx1g").args("--fsync", "no")
        .args(args).build();
  }

  // --- Helpers. ---

  private static Path jcmd() {
    Path jcmd = Path.of(System.getProperty("java.home"), "bin", "jcmd");
    assumeTrue(Files.isExecutable(jcmd), "needs the JDK's jcmd at " + jcmd);
    assumeTrue(Files.isRegularFile(Path.of("/proc/self/stat")), "needs Linux /proc");
    return jcmd;
  }

  /** Fills the Data Server's heap with {@link #BIG_VALUES} random values (keys 1000 and up). */
  private static void fillHeap(ServerFixture pair) throws IOException {
    Random random = new Random(8);
    byte[] value = new byte[BIG_VALUE_BYTES];
    try (RawClient c = RawClient.session(pair)) {
      for (int i = 0; i < BIG_VALUES; i++) {
        random.nextBytes(value); // Incompressible: compressing it costs the most CPU per byte.
        assertThat(c.put(1000 + i, value, true)).isEqualTo(Status.OK);
      }
    }
  }

  /**
   * A client that keeps reading one key on one connection from another thread, counting the
   * answers and keeping the first failure.
   */
  private static final class Reader implements AutoCloseable {
    final AtomicInteger answers = new AtomicInteger();
    final AtomicReference<Throwable> failure = new AtomicReference<>();
    private final AtomicBoolean stop = new AtomicBoolean();
    private final Thread thread;

    Reader(RawClient client, int key, byte[] expected) {
      thread = new Thread(() -> {
        try {
          while (!stop.get()) {
            assertThat(client.getValue(key)).isEqualTo(expected);
            answers.incrementAndGet();
          }
        } catch (Throwable t) {
          failure.compareAndSet(null, t);
        }
      }, "paused-peer-reader");
      thread.setDaemon(true);
      thread.start();
    }

    @Override
    public void close() throws InterruptedException {
      stop.set(true);
      thread.join(TIMEOUT.toMillis());
    }
  }

  /** Whether a new client is served end to end: HELLO, connect, SESSION, GET of key 1000. */
  private static boolean servesClients(ServerFixture pair) {
    try (RawClient c = RawClient.session(pair)) {
      c.getValue(1000);
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  private static Process start(List<String> command) throws IOException {
    return new ProcessBuilder(command).redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
  }

  /**
   * Starts {@code jcmd PID GC.heap_dump [-gz=1] FILE}: every Java thread of {@code pid} stops at a
   * safepoint until the dump is written, busy while it compresses ({@code gzip}), asleep while
   * {@code file} is a FIFO nobody reads.
   */
  private static Process heapDump(long pid, Path file, boolean gzip) throws IOException {
    List<String> command = new ArrayList<>(List.of(jcmd().toString(), Long.toString(pid),
        "GC.heap_dump", "-overwrite"));
    if (gzip) {
      command.add("-gz=1");
    }
    command.add(file.toString());
    return start(command);
  }

  /** A busy pause of the whole JVM ({@link #heapDump} compressed); waits for its end. */
  private static long busyPauseMillis(ServerFixture pair, long pid) throws Exception {
    Path dump = pair.dataDir().resolveSibling("heap.hprof.gz");
    long t0 = System.nanoTime();
    Process p = heapDump(pid, dump, true);
    try {
      assertWithMessage("jcmd still runs").that(p.waitFor(120, TimeUnit.SECONDS)).isTrue();
      return (System.nanoTime() - t0) / 1_000_000L;
    } finally {
      p.destroyForcibly();
      Files.deleteIfExists(dump);
    }
  }

  private static void measured(String what, long millis) {
    System.out.printf("measured: %s: %d ms%n", what, millis);
  }

  // --- A busy pause. ---

  @Test
  void aDataServerPausedWhileItRunsIsWaitedForAndKeepsItsClients() throws Exception {
    ServerFixture pair = patient;
    pair.start();
    fillHeap(pair);
    ProcessHandle data = pair.dataProcess();
    try (RawClient client = RawClient.session(pair)) {
      byte[] value = "before the pause".getBytes(UTF_8);
      assertThat(client.put(1, value, true)).isEqualTo(Status.OK);
      try (Reader reader = new Reader(client, 1, value)) {
        Poll.require(TIMEOUT, () -> reader.answers.get() > 0, () -> "no answer before");
        long pause = busyPauseMillis(pair, data.pid());
        measured("heap dump of " + BIG_VALUES * (BIG_VALUE_BYTES >> 20) + " MiB (busy pause)",
            pause);
        // Taking the pause for a hang would have killed the server here.
        assertWithMessage("log %s", pair.logFile()).that(pair.log())
            .doesNotContain("killing the hung data server");
        assertWithMessage("the test's premise: a pause (jcmd's run) longer than the silence limit"
            + " and one window").that(pause)
            .isGreaterThan(Supervisor.HUNG_AFTER_MILLIS + HangJudge.WINDOW_MILLIS);
        // The connection open during the pause is served after it, by the same process.
        int after = reader.answers.get();
        Poll.require(TIMEOUT,
            () -> reader.answers.get() > after + 10 || reader.failure.get() != null,
            () -> "the reader got no answer after the pause; log " + pair.logFile());
        assertWithMessage("the reader's connection").that(reader.failure.get()).isNull();
      }
      // The silence went past the limit and the front judged the peer running.
      pair.awaitLog("data server (pid " + data.pid() + ") is paused, not hung", TIMEOUT);
      pair.awaitLog("data server is sending again", TIMEOUT);
      assertThat(pair.log()).doesNotContain("is down");
      assertThat(pair.dataPid()).isEqualTo(data.pid());
      assertThat(ServerFixture.isGone(data)).isFalse();
      // The Data Server, paused too, took its own silence for its pause, not the front's hang.
      pair.awaitLog("data " + data.pid() + " this process did not run for", TIMEOUT);
      assertThat(client.getValue(1)).isEqualTo(value);
    }
    assertThat(pair.log()).doesNotContain("killing");
    pair.stop();
  }

  @Test
  void aDataServerStillPausedAtTheHangTimeoutIsKilledAndReplaced() throws Exception {
    ServerFixture pair = impatient;
    pair.start();
    fillHeap(pair);
    ProcessHandle data = pair.dataProcess();
    Path dump = pair.dataDir().resolveSibling("heap.hprof.gz");
    Process jcmd = heapDump(data.pid(), dump, true);
    try {
      pair.awaitLog("data server silent for", TIMEOUT);
      long seen = System.nanoTime();
      // Killed when its silence reaches the hang timeout, whatever it is doing.
      pair.awaitLog("killing the hung data server (pid " + data.pid() + ") with SIGKILL: silent"
          + " for", Duration.ofMillis(2_500 - Supervisor.HUNG_AFTER_MILLIS
              + Supervisor.WATCHDOG_CHECK_MILLIS + SLACK_MILLIS));
      measured("busy pause: silence reported -> killed at a hang timeout of 2500 ms",
          (System.nanoTime() - seen) / 1_000_000L);
      assertThat(pair.log()).contains("hang timeout is 2500 ms (--hang-timeout-ms)");
      Poll.require(TIMEOUT, () -> ServerFixture.isGone(data), () -> "pid " + data.pid());
      Poll.require(TIMEOUT, () -> pair.dataPid() != data.pid() && servesClients(pair),
          () -> "no successor; log " + pair.logFile());
    } finally {
      jcmd.destroyForcibly();
      Files.deleteIfExists(dump);
    }
    try (RawClient c = RawClient.session(pair)) {
      assertThat(c.getValue(1000)).isNotNull(); // Reloaded from the backup file.
    }
    pair.stop();
  }

  // --- A frozen Data Server: silent, asleep, no CPU, as in a deadlock. ---

  @Test
  void aFrozenDataServerIsKilledOneWindowAfterTheSilenceLimitAndReplaced() throws Exception {
    ServerFixture pair = standard;
    pair.start();
    try (RawClient c = RawClient.session(pair)) {
      assertThat(c.put(1, new byte[] {1}, true)).isEqualTo(Status.OK);
    }
    ProcessHandle data = pair.dataProcess();
    Path fifo = pair.dataDir().resolveSibling("heap.fifo");
    Process mkfifo = start(List.of("mkfifo", fifo.toString()));
    assertThat(mkfifo.waitFor(30, TimeUnit.SECONDS)).isTrue();
    assertThat(mkfifo.exitValue()).isEqualTo(0);
    List<Process> helpers = new ArrayList<>();
    try {
      // A reader that opens the FIFO (so the dump's open succeeds) and never reads from it.
      helpers.add(start(List.of("sh", "-c", "exec sleep 600 < '" + fifo + "'")));
      helpers.add(heapDump(data.pid(), fifo, false));
      // The silence starts when the dump blocks; the front reports it at the limit...
      pair.awaitLog("data server silent for", TIMEOUT);
      long seen = System.nanoTime();
      // ...and kills the frozen peer one window later (DESIGN.md §8: 2.0-2.2 s after its last
      // heartbeat), far sooner than the hang timeout.
      pair.awaitLog("killing the hung data server (pid " + data.pid() + ")",
          Duration.ofMillis(HangJudge.WINDOW_MILLIS + 2 * Supervisor.WATCHDOG_CHECK_MILLIS
              + SLACK_MILLIS));
      measured("frozen data server: silence reported -> killed", (System.nanoTime() - seen)
          / 1_000_000L);
      Matcher m = IDLE_KILL.matcher(pair.log());
      assertWithMessage("kill reason; log %s", pair.logFile()).that(m.find()).isTrue();
      measured("frozen data server: silence when killed", Long.parseLong(m.group(2)));
      Poll.require(TIMEOUT, () -> ServerFixture.isGone(data), () -> "pid " + data.pid());
      Poll.require(TIMEOUT, () -> {
        if (pair.dataPid() == data.pid()) {
          return false;
        }
        try (RawClient c = RawClient.session(pair)) {
          return c.getValue(1) != null;
        } catch (IOException e) {
          return false;
        }
      }, () -> "no successor serving; log " + pair.logFile());
      measured("frozen data server: silence reported -> successor serving",
          (System.nanoTime() - seen) / 1_000_000L);
    } finally {
      for (Process p : helpers) {
        p.destroyForcibly();
      }
      Files.deleteIfExists(fifo);
    }
    pair.stop();
  }
}
