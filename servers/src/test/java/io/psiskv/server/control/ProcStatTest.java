package io.psiskv.server.control;

import static com.google.common.truth.Truth.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.psiskv.server.control.HangJudge.Sample;
import io.psiskv.server.testkit.Poll;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * {@link ProcStat}: the stat line's fields, and what it says about real processes (a sleeping,
 * a spinning, a stopped and a gone one). Linux only.
 */
@Tag("process")
class ProcStatTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(30);

  // --- Parsing, no I/O. ---

  @Test
  void fieldsAreCountedAfterTheLastParenthesisOfTheCommandName() {
    String line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 123 45 0 0 20 0 17 0 99"
        + " 5000000 300 18446744073709551615 1 1 0 0 0 0 0 4096 17922 0 0 0 17 1 0 0 0 0 0\n";
    ProcStat.Stat s = ProcStat.parse(line);
    assertThat(s.state()).isEqualTo('S');
    assertThat(s.cpuTicks()).isEqualTo(123 + 45);
  }

  @Test
  void statesAreClassified() {
    assertThat(new ProcStat.Stat('T', 0).stopped()).isTrue();
    assertThat(new ProcStat.Stat('t', 0).stopped()).isTrue();
    assertThat(new ProcStat.Stat('Z', 0).ended()).isTrue();
    assertThat(new ProcStat.Stat('X', 0).ended()).isTrue();
    assertThat(new ProcStat.Stat('R', 0).active()).isTrue();
    assertThat(new ProcStat.Stat('D', 0).active()).isTrue();
    for (char c : new char[] {'S', 'I'}) {
      ProcStat.Stat s = new ProcStat.Stat(c, 0);
      assertThat(s.active() || s.stopped() || s.ended()).isFalse();
    }
  }

  @Test
  void whatIsNotAStatLineIsNull() {
    assertThat(ProcStat.parse("")).isNull();
    assertThat(ProcStat.parse("4242 (java")).isNull();
    assertThat(ProcStat.parse("4242 (java) S 1 2 3")).isNull();
    assertThat(ProcStat.parse("4242 (java) S 1 2 3 4 5 6 7 8 9 10 x 12 13")).isNull();
  }

  // --- Real processes. ---

  private static void assumeLinux() {
    assumeTrue(Files.isRegularFile(Path.of("/proc/self/stat")), "needs Linux /proc");
  }

  private static void signal(String signal, long pid) throws Exception {
    Process k = new ProcessBuilder("kill", signal, Long.toString(pid)).inheritIO().start();
    assertThat(k.waitFor(30, TimeUnit.SECONDS)).isTrue();
    assertThat(k.exitValue()).isEqualTo(0);
  }

  @Test
  void thisProcessIsLiveWithCpuTimeAndThisThreadRunning() {
    assumeLinux();
    Sample s = ProcStat.sample(ProcessHandle.current().pid());
    assertThat(s.condition()).isEqualTo(Sample.Condition.LIVE);
    assertThat(s.cpuMillis()).isGreaterThan(0);
    assertThat(s.activeThreads()).isAtLeast(1); // The thread reading its own stat runs.
    assertThat(ProcStat.ended(ProcessHandle.current().pid())).isFalse();
  }

  @Test
  void aSleepingProcessIsLiveAndIdleAStoppedOneStoppedAGoneOneGone() throws Exception {
    assumeLinux();
    Process sleeper = new ProcessBuilder("sleep", "600").start();
    try {
      long pid = sleeper.pid();
      Poll.require(TIMEOUT, () -> {
        Sample s = ProcStat.sample(pid);
        return s.condition() == Sample.Condition.LIVE && s.activeThreads() == 0;
      }, () -> "sleep never looked idle: " + ProcStat.sample(pid));
      assertThat(ProcStat.sample(pid).cpuMillis()).isLessThan(HangJudge.MIN_CPU_MILLIS);
      signal("-STOP", pid);
      Poll.require(TIMEOUT, () -> ProcStat.sample(pid).condition() == Sample.Condition.STOPPED,
          () -> "never stopped: " + ProcStat.sample(pid));
      assertThat(ProcStat.ended(pid)).isFalse();
      signal("-CONT", pid);
      Poll.require(TIMEOUT, () -> ProcStat.sample(pid).condition() == Sample.Condition.LIVE,
          () -> "never continued: " + ProcStat.sample(pid));
      sleeper.destroyForcibly();
      assertThat(sleeper.waitFor(30, TimeUnit.SECONDS)).isTrue(); // Reaped: no entry left.
      assertThat(ProcStat.sample(pid).condition()).isEqualTo(Sample.Condition.GONE);
      assertThat(ProcStat.ended(pid)).isTrue();
    } finally {
      sleeper.destroyForcibly();
    }
  }

  @Test
  void aSpinningProcessGainsCpuTimeAndShowsARunningThread() throws Exception {
    assumeLinux();
    Process spinner = new ProcessBuilder("sh", "-c", "while :; do :; done").start();
    try {
      long pid = spinner.pid();
      long before = ProcStat.sample(pid).cpuMillis();
      Poll.require(TIMEOUT, () -> ProcStat.sample(pid).activeThreads() > 0,
          () -> "no running thread: " + ProcStat.sample(pid));
      Poll.require(TIMEOUT,
          () -> ProcStat.sample(pid).cpuMillis() - before >= HangJudge.MIN_CPU_MILLIS,
          () -> "no CPU time gained: " + ProcStat.sample(pid));
    } finally {
      spinner.destroyForcibly();
      spinner.waitFor(30, TimeUnit.SECONDS);
    }
  }
}
