package io.psiskv.server.control;

import static com.google.common.truth.Truth.assertThat;

import org.junit.jupiter.api.Test;

/** The relaunch delay rule of {@link Supervisor.Backoff}, apart from processes and clocks. */
class SupervisorBackoffTest {
  private static final long EARLY = Supervisor.RELAUNCH_STABLE_MILLIS - 1;
  private static final long HEALTHY = Supervisor.RELAUNCH_STABLE_MILLIS;

  @Test
  void aPeerThatRanLongEnoughIsRelaunchedAtOnce() {
    Supervisor.Backoff b = new Supervisor.Backoff();
    assertThat(b.next(HEALTHY)).isEqualTo(0);
    assertThat(b.next(HEALTHY * 100)).isEqualTo(0);
    assertThat(b.earlyDeaths()).isEqualTo(0);
  }

  @Test
  void earlyDeathsInARowDoubleTheDelayUpToTheMaximum() {
    Supervisor.Backoff b = new Supervisor.Backoff();
    assertThat(b.next(0)).isEqualTo(100);
    assertThat(b.next(EARLY)).isEqualTo(200);
    assertThat(b.next(5)).isEqualTo(400);
    assertThat(b.next(5)).isEqualTo(800);
    assertThat(b.next(5)).isEqualTo(1600);
    assertThat(b.next(5)).isEqualTo(3200);
    assertThat(b.next(5)).isEqualTo(Supervisor.RELAUNCH_MAX_BACKOFF_MILLIS);
    for (int i = 0; i < 100; i++) { // No overflow however long it keeps dying.
      assertThat(b.next(5)).isEqualTo(Supervisor.RELAUNCH_MAX_BACKOFF_MILLIS);
    }
    assertThat(b.earlyDeaths()).isEqualTo(107);
  }

  @Test
  void aHealthyRunResetsTheBackOff() {
    Supervisor.Backoff b = new Supervisor.Backoff();
    b.next(1);
    b.next(1);
    assertThat(b.next(1)).isEqualTo(400);
    assertThat(b.next(HEALTHY)).isEqualTo(0);
    assertThat(b.earlyDeaths()).isEqualTo(0);
    assertThat(b.next(1)).isEqualTo(Supervisor.RELAUNCH_FIRST_BACKOFF_MILLIS);
  }
}
