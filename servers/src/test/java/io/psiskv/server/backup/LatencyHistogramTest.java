package io.psiskv.server.backup;

import static com.google.common.truth.Truth.assertThat;

import org.junit.jupiter.api.Test;

/** The fsync latency histogram of STATS: its buckets and percentiles (within 12.5 %). */
class LatencyHistogramTest {
  @Test
  void emptyHistogramReportsZero() {
    LatencyHistogram h = new LatencyHistogram();
    assertThat(h.count()).isEqualTo(0);
    assertThat(h.percentileMicros(50)).isEqualTo(0);
  }

  @Test
  void everyValueFallsInABucketWhoseBoundIsWithinAnEighthAboveIt() {
    for (long v : new long[] {0, 1, 7, 8, 9, 15, 16, 17, 100, 999, 1000, 1023, 1024, 123_456,
        1L << 40, Long.MAX_VALUE / 1000}) {
      int b = LatencyHistogram.bucket(v);
      long upper = LatencyHistogram.upperBound(b);
      assertThat(upper).isAtLeast(v);
      assertThat((double) upper).isAtMost(v + v / 8.0 + 1);
      if (b > 0) {
        assertThat(LatencyHistogram.upperBound(b - 1)).isLessThan(v);
      }
    }
  }

  @Test
  void percentilesOfAKnownSpread() {
    LatencyHistogram h = new LatencyHistogram();
    for (int i = 1; i <= 100; i++) {
      h.record(i * 1_000_000L); // i ms
    }
    assertThat(h.count()).isEqualTo(100);
    long p50 = h.percentileMicros(50);
    long p99 = h.percentileMicros(99);
    assertThat(p50).isAtLeast(50_000);
    assertThat((double) p50).isAtMost(50_000 * 1.125);
    assertThat(p99).isAtLeast(99_000);
    assertThat((double) p99).isAtMost(99_000 * 1.125);
  }
}
