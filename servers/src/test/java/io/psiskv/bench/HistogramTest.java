package io.psiskv.bench;

import static com.google.common.truth.Truth.assertThat;

import org.junit.jupiter.api.Test;

class HistogramTest {
  /** The histogram's promise: within 1/64 of the exact value (plus rounding of the middle). */
  private static void assertNear(double got, double want) {
    assertThat(got).isWithin(want / 64 + 1).of(want);
  }

  @Test
  void bucketsTileTheNumberLine() {
    for (long v = 1; v < (1L << 50); v = v * 3 + 1) {
      int i = Histogram.index(v);
      assertThat(Histogram.lowest(i)).isAtMost(v);
      assertThat(v).isLessThan(Histogram.lowest(i) + Histogram.width(i));
      assertThat(Histogram.lowest(i + 1)).isEqualTo(Histogram.lowest(i) + Histogram.width(i));
    }
    assertThat(Histogram.index(Long.MAX_VALUE)).isAtLeast(0);
  }

  @Test
  void percentilesOfAKnownSpread() {
    Histogram h = new Histogram();
    assertThat(h.percentile(50)).isEqualTo(0.0);
    for (long v = 1; v <= 100_000; v++) {
      h.record(v);
    }
    assertThat(h.count()).isEqualTo(100_000);
    assertThat(h.max()).isEqualTo(100_000);
    assertNear(h.percentile(50), 50_000);
    assertNear(h.percentile(99), 99_000);
    assertNear(h.percentile(99.9), 99_900);
    assertThat(h.percentile(100)).isAtMost(100_000.0);
    assertThat(h.mean()).isWithin(0.001).of(50_000.5);
  }

  @Test
  void oneValueIsEveryPercentile() {
    Histogram h = new Histogram();
    h.record(123_456);
    assertThat(h.percentile(50)).isEqualTo(123_456.0);
    assertThat(h.percentile(99.9)).isEqualTo(123_456.0);
  }

  @Test
  void mergedHistogramsKeepTheirTail() {
    Histogram fast = new Histogram();
    Histogram slow = new Histogram();
    for (int i = 0; i < 900; i++) {
      fast.record(1_000);
    }
    for (int i = 0; i < 100; i++) {
      slow.record(1_000_000);
    }
    fast.add(slow);
    assertThat(fast.count()).isEqualTo(1_000);
    assertNear(fast.percentile(50), 1_000);
    assertNear(fast.percentile(90), 1_000);
    assertNear(fast.percentile(91), 1_000_000);
    assertThat(fast.max()).isEqualTo(1_000_000);
  }
}
