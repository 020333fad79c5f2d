package io.psiskv.server;

import static com.google.common.truth.Truth.assertThat;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** {@link ServerLogSummary} on a clock the test drives: one line per interval, counts, detail lines. */
class ServerLogSummaryTest {
  private static final long MS = 1_000_000L;
  /** An arbitrary nanoTime origin, negative to catch comparisons that ignore overflow. */
  private static final long T0 = Long.MIN_VALUE + 5 * MS;

  private final List<String> lines = new ArrayList<>();
  private final ServerLogSummary summary = new ServerLogSummary("front connections", 10_000, lines::add);
  private final ServerLogSummary.Kind deadline = summary.kind("closed past the 2000 ms request deadline");
  private final ServerLogSummary.Kind evicted = summary.kind("evicted at the cap of 4096");

  @Test
  void manyEventsInOneIntervalAreOneLineWithTheirCounts() {
    for (int i = 0; i < 300; i++) {
      assertThat(summary.record(deadline, T0 + i * MS)).isFalse();
    }
    for (int i = 0; i < 12; i++) {
      summary.record(evicted, T0 + 500 * MS);
    }
    summary.flushIfDue(T0 + 9_999 * MS);
    assertThat(lines).isEmpty(); // Not due before the interval has passed.
    assertThat(summary.nanosUntilDue(T0 + 9_999 * MS)).isEqualTo(MS);

    summary.flushIfDue(T0 + 10_000 * MS);
    assertThat(lines).containsExactly("front connections: 300 closed past the 2000 ms request"
        + " deadline, 12 evicted at the cap of 4096, in the last 10 s");
    summary.flushIfDue(T0 + 30_000 * MS);
    assertThat(lines).hasSize(1); // Nothing new, nothing logged.
    assertThat(summary.nanosUntilDue(T0 + 30_000 * MS)).isEqualTo(Long.MAX_VALUE);
  }

  @Test
  void kindsWithoutEventsAreLeftOutAndCountsStartAgainAfterALine() {
    summary.record(evicted, T0);
    summary.flushIfDue(T0 + 10_000 * MS);
    summary.record(evicted, T0 + 11_000 * MS);
    summary.record(evicted, T0 + 12_000 * MS);
    summary.flushIfDue(T0 + 21_000 * MS);
    assertThat(lines).containsExactly(
        "front connections: 1 evicted at the cap of 4096, in the last 10 s",
        "front connections: 2 evicted at the cap of 4096, in the last 10 s").inOrder();
  }

  @Test
  void aLateEventLogsTheDueLineFirstSoCodeWithoutATimerGetsItsLines() {
    summary.record(deadline, T0);
    summary.record(deadline, T0 + 1_000 * MS);
    summary.record(evicted, T0 + 25_000 * MS); // No flush in between: this one logs the line.
    assertThat(lines).containsExactly(
        "front connections: 2 closed past the 2000 ms request deadline, in the last 25 s");
    summary.flushIfDue(T0 + 35_000 * MS);
    assertThat(lines).hasSize(2);
    assertThat(lines.get(1)).isEqualTo(
        "front connections: 1 evicted at the cap of 4096, in the last 10 s");
  }

  @Test
  void aDetailedKindAllowsSomeLinesPerIntervalAndCountsTheRest() {
    ServerLogSummary.Kind bad = summary.detailedKind("more broke the protocol", 3);
    List<Boolean> answers = new ArrayList<>();
    for (int i = 0; i < 5; i++) {
      answers.add(summary.record(bad, T0 + i * MS));
    }
    assertThat(answers).containsExactly(true, true, true, false, false).inOrder();
    summary.flushIfDue(T0 + 10_000 * MS);
    assertThat(lines).containsExactly(
        "front connections: 2 more broke the protocol, in the last 10 s");
    // A new interval: a new allowance.
    assertThat(summary.record(bad, T0 + 10_001 * MS)).isTrue();
  }

  @Test
  void detailLinesWithinTheAllowanceNeedNoSummary() {
    ServerLogSummary.Kind bad = summary.detailedKind("more broke the protocol", 3);
    assertThat(summary.record(bad, T0)).isTrue();
    assertThat(summary.nanosUntilDue(T0)).isEqualTo(Long.MAX_VALUE);
    summary.flushIfDue(T0 + 60_000 * MS);
    assertThat(lines).isEmpty();
  }

  @Test
  void aStopFlushesTheLastWindowBeforeItIsDue() {
    summary.record(evicted, T0);
    summary.flush(T0 + 3_000 * MS);
    summary.flush(T0 + 4_000 * MS); // Nothing left.
    assertThat(lines).containsExactly(
        "front connections: 1 evicted at the cap of 4096, in the last 3 s");
  }

  @Test
  void shortWindowsAreShownInMillisecondsAndTheIntervalMustBePositive() {
    List<String> out = new ArrayList<>();
    ServerLogSummary fast = new ServerLogSummary("s", 250, out::add);
    ServerLogSummary.Kind k = fast.kind("things");
    fast.record(k, T0);
    fast.flushIfDue(T0 + 250 * MS);
    assertThat(out).containsExactly("s: 1 things, in the last 250 ms");
    assertThrows(IllegalArgumentException.class, () -> new ServerLogSummary("s", 0, out::add));
  }
}
