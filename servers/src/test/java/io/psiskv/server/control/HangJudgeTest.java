package io.psiskv.server.control;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;

import io.psiskv.server.control.HangJudge.Action;
import io.psiskv.server.control.HangJudge.Sample;
import io.psiskv.server.control.HangJudge.Verdict;
import org.junit.jupiter.api.Test;

/**
 * The hang rule case by case ({@link HangJudge}): fed samples as the watchdog feeds them, one per
 * {@value Supervisor#WATCHDOG_CHECK_MILLIS} ms check from the first past the silence limit.
 */
class HangJudgeTest {
  private static final long TIMEOUT = 10_000;
  private static final long FIRST = Supervisor.HUNG_AFTER_MILLIS + 1;
  private static final long CHECK = Supervisor.WATCHDOG_CHECK_MILLIS;
  private static final long WINDOW = HangJudge.WINDOW_MILLIS;

  /** Checks per window: the window closes at the sample this many checks after it opened. */
  private static final int CHECKS_PER_WINDOW = (int) (WINDOW / CHECK);

  /** A live process that has used {@code cpuMillis} of CPU and has {@code active} threads. */
  private static Sample live(long cpuMillis, int active) {
    return Sample.live(cpuMillis, active);
  }

  // --- What the process's state decides at once. ---

  @Test
  void withoutProcTheOldRuleHoldsASilencePastTheLimitIsAHang() {
    Verdict v = new HangJudge(TIMEOUT).judge(Sample.unknown(), FIRST);
    assertThat(v.action()).isEqualTo(Action.HUNG);
    assertThat(v.reason()).contains("without /proc");
  }

  @Test
  void aStoppedProcessIsHungAtTheFirstCheck() {
    Verdict v = new HangJudge(TIMEOUT).judge(Sample.stopped(), FIRST);
    assertThat(v.action()).isEqualTo(Action.HUNG);
    assertThat(v.reason()).contains("stopped");
  }

  @Test
  void aStoppedProcessIsHungEvenAfterItWasSeenRunning() {
    HangJudge j = new HangJudge(TIMEOUT);
    long silent = FIRST;
    long cpu = 0;
    for (int i = 0; i <= 2 * CHECKS_PER_WINDOW; i++, silent += CHECK, cpu += 80) {
      assertThat(j.judge(live(cpu, 2), silent).action()).isNotEqualTo(Action.HUNG);
    }
    assertThat(j.last()).isEqualTo(Action.PAUSED);
    assertThat(j.judge(Sample.stopped(), silent).action()).isEqualTo(Action.HUNG);
  }

  @Test
  void aGoneProcessIsHungAtOnce() {
    Verdict v = new HangJudge(TIMEOUT).judge(Sample.gone(), FIRST);
    assertThat(v.action()).isEqualTo(Action.HUNG);
    assertThat(v.reason()).contains("gone");
  }

  // --- A live process is watched for one window, then judged by its progress. ---

  @Test
  void aLiveProcessIsWatchedUntilTheFirstWindowCloses() {
    HangJudge j = new HangJudge(TIMEOUT);
    assertThat(j.last()).isEqualTo(Action.WATCHING);
    for (int i = 0; i < CHECKS_PER_WINDOW; i++) {
      // Idle: no CPU, no active thread; still no verdict inside the first window.
      assertWithMessage("check %s", i).that(j.judge(live(1_000, 0), FIRST + i * CHECK).action())
          .isEqualTo(Action.WATCHING);
    }
    assertThat(j.judge(live(1_000, 0), FIRST + CHECKS_PER_WINDOW * CHECK).action())
        .isEqualTo(Action.HUNG);
  }

  @Test
  void anIdleProcessIsHungOneWindowAfterTheLimitADeadlock() {
    HangJudge j = new HangJudge(TIMEOUT);
    long silent = FIRST;
    Verdict v;
    do {
      v = j.judge(live(5_000, 0), silent);
      silent += CHECK;
    } while (v.action() == Action.WATCHING);
    assertThat(v.action()).isEqualTo(Action.HUNG);
    assertThat(v.reason()).contains("idle");
    assertThat(silent - CHECK).isEqualTo(FIRST + WINDOW); // 2.0 s after the last message.
  }

  @Test
  void cpuTimeOfATenthOfACoreIsProgressAndLessIsNot() {
    for (long used : new long[] {0, 10, HangJudge.MIN_CPU_MILLIS - 1, HangJudge.MIN_CPU_MILLIS,
        WINDOW, 2 * WINDOW}) {
      HangJudge j = new HangJudge(TIMEOUT);
      j.judge(live(1_000, 0), FIRST);
      Verdict v = j.judge(live(1_000 + used, 0), FIRST + WINDOW);
      assertWithMessage("%s ms of CPU in a window", used).that(v.action())
          .isEqualTo(used >= HangJudge.MIN_CPU_MILLIS ? Action.PAUSED : Action.HUNG);
    }
  }

  @Test
  void activeThreadsInHalfTheLooksAreProgressWithoutCpuTimeAWaitForACpu() {
    for (int activeLooks = 0; activeLooks <= CHECKS_PER_WINDOW; activeLooks++) {
      HangJudge j = new HangJudge(TIMEOUT);
      j.judge(live(0, 0), FIRST);
      Verdict v = null;
      for (int i = 1; i <= CHECKS_PER_WINDOW; i++) {
        v = j.judge(live(0, i <= activeLooks ? 3 : 0), FIRST + i * CHECK);
      }
      boolean progress = 2 * activeLooks >= CHECKS_PER_WINDOW;
      assertWithMessage("active in %s of %s looks", activeLooks, CHECKS_PER_WINDOW)
          .that(v.action()).isEqualTo(progress ? Action.PAUSED : Action.HUNG);
    }
  }

  @Test
  void theFirstLookOnlyOpensTheWindowItsThreadsDoNotCount() {
    HangJudge j = new HangJudge(TIMEOUT);
    j.judge(live(0, 9), FIRST); // Active, but only the baseline.
    Verdict v = null;
    for (int i = 1; i <= CHECKS_PER_WINDOW; i++) {
      v = j.judge(live(0, i == 1 ? 1 : 0), FIRST + i * CHECK);
    }
    assertThat(v.action()).isEqualTo(Action.HUNG);
  }

  @Test
  void aBusyProcessIsWaitedForUntilTheHangTimeoutThenHung() {
    HangJudge j = new HangJudge(TIMEOUT);
    long cpu = 0;
    long silent = FIRST;
    Verdict v;
    int pausedVerdicts = 0;
    while ((v = j.judge(live(cpu, 2), silent)).action() != Action.HUNG) {
      if (v.action() == Action.PAUSED) {
        pausedVerdicts++;
      }
      silent += CHECK;
      cpu += 2 * CHECK; // Two cores, as a collection of both GC workers.
    }
    assertThat(silent).isAtLeast(TIMEOUT); // At the first check past the timeout.
    assertThat(silent).isLessThan(TIMEOUT + CHECK);
    assertThat(v.reason()).contains("hang timeout is " + TIMEOUT + " ms");
    assertThat(pausedVerdicts).isGreaterThan(0);
  }

  @Test
  void aPauseThatEndsItsWorkButStaysSilentIsHungAtTheNextWindow() {
    // A collection that finishes while the heartbeat thread stays stuck: running, then idle.
    HangJudge j = new HangJudge(TIMEOUT);
    long silent = FIRST;
    long cpu = 0;
    j.judge(live(cpu, 2), silent);
    for (int i = 0; i < 3 * CHECKS_PER_WINDOW; i++) {
      silent += CHECK;
      cpu += 100;
      assertThat(j.judge(live(cpu, 2), silent).action()).isNotEqualTo(Action.HUNG);
    }
    assertThat(j.last()).isEqualTo(Action.PAUSED);
    Verdict v;
    int checks = 0;
    do {
      silent += CHECK;
      checks++;
      v = j.judge(live(cpu, 0), silent);
    } while (v.action() == Action.PAUSED);
    assertThat(v.action()).isEqualTo(Action.HUNG);
    assertThat(checks).isAtMost(CHECKS_PER_WINDOW);
  }

  @Test
  void theVerdictInsideAWindowIsTheLastOne() {
    HangJudge j = new HangJudge(TIMEOUT);
    j.judge(live(0, 0), FIRST);
    assertThat(j.judge(live(WINDOW, 1), FIRST + WINDOW).action()).isEqualTo(Action.PAUSED);
    // Inside the next window, even an idle look leaves the verdict PAUSED until it closes.
    assertThat(j.judge(live(WINDOW, 0), FIRST + WINDOW + CHECK).action())
        .isEqualTo(Action.PAUSED);
    assertThat(j.judge(live(WINDOW, 0), FIRST + 2 * WINDOW).action()).isEqualTo(Action.HUNG);
  }

  @Test
  void aLateCheckClosesTheWindowAtOnceAfterAPauseOfThisProcess() {
    // This process was not running for 3 s: the next look closes a 3 s window with one sample.
    HangJudge j = new HangJudge(TIMEOUT);
    j.judge(live(0, 0), FIRST);
    assertThat(j.judge(live(2_000, 0), FIRST + 3_000).action()).isEqualTo(Action.PAUSED);
    HangJudge idle = new HangJudge(TIMEOUT);
    idle.judge(live(0, 0), FIRST);
    assertThat(idle.judge(live(0, 0), FIRST + 3_000).action()).isEqualTo(Action.HUNG);
  }

  @Test
  void aCpuCounterThatGoesBackCountsAsNoCpuTime() {
    HangJudge j = new HangJudge(TIMEOUT);
    j.judge(live(1_000, 0), FIRST);
    assertThat(j.judge(live(0, 0), FIRST + WINDOW).action()).isEqualTo(Action.HUNG);
  }

  // --- The hang timeout. ---

  @Test
  void theHangTimeoutHoldsForAProcessFirstSeenPastIt() {
    Verdict v = new HangJudge(TIMEOUT).judge(live(0, 4), TIMEOUT);
    assertThat(v.action()).isEqualTo(Action.HUNG);
    assertThat(new HangJudge(TIMEOUT).judge(live(0, 4), TIMEOUT - 1).action())
        .isEqualTo(Action.WATCHING);
  }

  @Test
  void aHangTimeoutAtTheSilenceLimitMakesEverySilenceAHangTheRuleBefore() {
    HangJudge j = new HangJudge(Supervisor.HUNG_AFTER_MILLIS);
    assertThat(j.judge(live(0, 8), FIRST).action()).isEqualTo(Action.HUNG);
  }

  @Test
  void everyOutcomeAtEveryCheckOfTheFirstTwoWindows() {
    // Exhaustive over small cases: for each check of the first two windows, every condition.
    for (int at = 0; at <= 2 * CHECKS_PER_WINDOW; at++) {
      for (Sample.Condition c : Sample.Condition.values()) {
        HangJudge j = new HangJudge(TIMEOUT);
        long cpu = 0;
        Verdict v = null;
        for (int i = 0; i <= at; i++) {
          Sample s = i < at ? live(cpu, 2) : c == Sample.Condition.LIVE ? live(cpu, 2)
              : c == Sample.Condition.STOPPED ? Sample.stopped()
              : c == Sample.Condition.GONE ? Sample.gone() : Sample.unknown();
          v = j.judge(s, FIRST + i * CHECK);
          cpu += 200;
        }
        Action expected = c != Sample.Condition.LIVE ? Action.HUNG
            : at < CHECKS_PER_WINDOW ? Action.WATCHING : Action.PAUSED;
        assertWithMessage("%s at check %s", c, at).that(v.action()).isEqualTo(expected);
      }
    }
  }
}
