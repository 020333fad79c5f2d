package io.psiskv.clients;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;
import static java.nio.charset.StandardCharsets.UTF_8;

import io.psiskv.server.testkit.FrontLog;
import io.psiskv.server.testkit.Poll;
import io.psiskv.server.testkit.ServerFixture;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Optional;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Slow HELLOs keep no client out (the regression: 256 connections dripping one byte every 3 s
 * made every new {@code kv_connect} fail while they lasted). 300 connections drip a HELLO one
 * byte every {@value #TICK_MILLIS} ms, each closed one replaced at once, for {@value
 * #FLOOD_MILLIS} ms; meanwhile new clients of both kinds ({@code libpsiskv.so} through JNA and
 * {@code KvClient}) connect and write and read. Every one must succeed; every dripping connection
 * must be closed past the front's request deadline (default limits) with an orderly end of
 * stream; the closes must be counted in summary lines, not logged one line each; and the front
 * must not grow a thread per connection.
 */
@Tag("process")
class FrontFloodTest {
  private static final int DRIPPERS = 300;
  /** Faster than the idle timeout (1,000 ms), so that only the request deadline closes them. */
  private static final int TICK_MILLIS = 250;
  private static final long FLOOD_MILLIS = 5_000;
  /** Time between two rounds of new clients (one of each kind). */
  private static final long CLIENT_PACE_MILLIS = 100;
  private static final int DEADLINE_MILLIS = FrontLog.DEFAULT_REQUEST_DEADLINE_MILLIS;
  /** How late after its deadline a close may be seen here, on a loaded 2-core machine. */
  private static final long CLOSE_SLACK_MILLIS = 1_500;
  /** The thread-per-connection front served at most this many front connections. */
  private static final int OLD_CAP = 256;
  /** Threads the front may start meanwhile for reasons of its own (JIT compiler threads). */
  private static final int THREAD_SLACK = 10;
  private static final Duration TIMEOUT = Duration.ofSeconds(30);
  private static final Pattern PER_CONNECTION_LINE =
      Pattern.compile("front connection \\d+\\.\\d+\\.\\d+\\.\\d+:\\d+: ");

  @RegisterExtension
  final ServerFixture server =
      ServerFixture.builder().jvmArgs(FrontLog.summaryIntervalArg(1_000)).build();

  @Test
  void newClientsOfBothKindsAreServedWhile300ConnectionsDripAHello() throws Exception {
    long frontPid = server.frontPid();
    long threadsBefore = ProcStatus.field(frontPid, "Threads");
    long rssBefore = ProcStatus.field(frontPid, "VmRSS");
    DripFlood flood = new DripFlood(server.host(), server.port(), DRIPPERS, TICK_MILLIS,
        TIMEOUT.toMillis());
    Thread dripper = new Thread(flood, "drip-flood");
    dripper.start();
    List<Long> connectMicros = new ArrayList<>();
    int minOpen = Integer.MAX_VALUE;
    long maxThreads = 0;
    long maxRss = 0;
    try {
      Poll.require(TIMEOUT, () -> flood.opened() >= DRIPPERS || flood.failure() != null,
          () -> "only " + flood.opened() + " dripping connections opened");
      long end = System.nanoTime() + FLOOD_MILLIS * 1_000_000L;
      for (int round = 0; System.nanoTime() - end < 0; round++) {
        for (Client kind : Client.values()) {
          minOpen = Math.min(minOpen, flood.open());
          int key = round * 2 + kind.ordinal();
          long t0 = System.nanoTime();
          Optional<KvApi> kv = kind.connect(server.host(), server.port());
          connectMicros.add((System.nanoTime() - t0) / 1_000);
          assertWithMessage("%s connect in round %s, %s connections dripping", kind, round,
              flood.open()).that(kv.isPresent()).isTrue();
          try (KvApi api = kv.get()) {
            byte[] value = ("during the flood " + key).getBytes(UTF_8);
            assertThat(api.write(key, value, true)).isEqualTo(0);
            byte[] buf = new byte[64];
            assertThat(api.read(key, buf, buf.length)).isEqualTo(value.length);
            assertThat(Arrays.copyOf(buf, value.length)).isEqualTo(value);
          }
        }
        maxThreads = Math.max(maxThreads, ProcStatus.field(frontPid, "Threads"));
        maxRss = Math.max(maxRss, ProcStatus.field(frontPid, "VmRSS"));
        Thread.sleep(CLIENT_PACE_MILLIS); // The clients' pace, not a synchronisation.
      }
    } finally {
      flood.stopReplacing();
      dripper.join(TIMEOUT.toMillis());
    }
    assertThat(dripper.isAlive()).isFalse();
    assertWithMessage("flood failure").that(flood.failure()).isNull();

    Collections.sort(connectMicros);
    System.out.printf("FrontFloodTest: %d clients connected while %d..%d connections dripped"
            + " (%d in all); connect median %.2f ms, max %.2f ms; front threads %d before, at most"
            + " %d during; VmRSS %d kB before, at most %d kB during%n",
        connectMicros.size(), minOpen, DRIPPERS, flood.opened(),
        connectMicros.get(connectMicros.size() / 2) / 1000.0,
        connectMicros.get(connectMicros.size() - 1) / 1000.0, threadsBefore, maxThreads,
        rssBefore, maxRss);
    assertWithMessage("connections dripping at each new client (the old front's cap was %s)",
        OLD_CAP).that(minOpen).isGreaterThan(OLD_CAP);
    assertWithMessage("front threads during the flood (%s before)", threadsBefore)
        .that(maxThreads).isAtMost(threadsBefore + THREAD_SLACK);

    List<DripFlood.Result> results = flood.results();
    assertThat(results).hasSize(flood.opened());
    for (DripFlood.Result r : results) {
      assertWithMessage("how a dripping connection ended").that(r.end())
          .isEqualTo(DripFlood.End.END_OF_STREAM);
      assertWithMessage("lifetime of a dripping connection, ns").that(r.lifetimeNanos())
          .isAtLeast(DEADLINE_MILLIS * 1_000_000L);
      assertWithMessage("lifetime of a dripping connection, ns").that(r.lifetimeNanos())
          .isAtMost((DEADLINE_MILLIS + CLOSE_SLACK_MILLIS) * 1_000_000L);
    }

    // Every close is counted once in the summary lines, and no line names a connection.
    long expected = results.size();
    String deadline = "closed past the " + DEADLINE_MILLIS + " ms request deadline";
    Poll.require(TIMEOUT, () -> FrontLog.total(server.log(), deadline) == expected,
        () -> "expected " + expected + " '" + deadline + "'; summary lines: "
            + FrontLog.summaries(server.log()));
    String log = server.log();
    assertThat(FrontLog.total(log, "idle")).isEqualTo(0);
    assertThat(FrontLog.total(log, "evicted")).isEqualTo(0);
    assertThat(log.lines().filter(l -> PER_CONNECTION_LINE.matcher(l).find()).count())
        .isEqualTo(0);
    assertWithMessage("summary lines for %s closes", expected)
        .that(FrontLog.summaries(log).size()).isAtMost(1 + (int) (FLOOD_MILLIS / 1_000) + 3);
  }
}
