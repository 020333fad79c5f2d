package io.psiskv.server.backup;

import java.util.concurrent.atomic.AtomicLongArray;

/**
 * Durations in microseconds, counted in log-linear buckets so that a percentile costs a walk of a
 * fixed array and no sample is kept: values 0..7 have a bucket each, and every power-of-two range
 * above is split into {@value #SUB_BUCKETS} equal buckets, so a reported percentile (the upper
 * bound of its bucket) is at most 12.5 % above the true value. Counts since creation, never
 * reset.
 *
 * <p>Thread-safe: {@link #record} is one atomic increment (the backup log calls it once per
 * force, under its file lock); {@link #percentileMicros} reads without locking, so a percentile
 * taken while forces are recorded is exact for some mix of the counts around that instant.
 */
final class LatencyHistogram {
  /** Buckets per power of two (3 bits of precision). */
  static final int SUB_BUCKETS = 8;
  private static final int SUB_BITS = 3;
  /** Values below this have one bucket each. */
  private static final int LINEAR = SUB_BUCKETS;
  /** Enough buckets for any non-negative long. */
  private static final int BUCKETS = LINEAR + (63 - SUB_BITS) * SUB_BUCKETS;

  private final AtomicLongArray counts = new AtomicLongArray(BUCKETS);

  /** Counts one duration of {@code nanos} (negative counts as 0). */
  void record(long nanos) {
    counts.incrementAndGet(bucket(Math.max(0, nanos) / 1000));
  }

  /** Durations recorded. */
  long count() {
    long n = 0;
    for (int i = 0; i < BUCKETS; i++) {
      n += counts.get(i);
    }
    return n;
  }

  /**
   * The smallest bucket bound, in microseconds, that at least {@code percent} % of the recorded
   * durations do not exceed; 0 if none was recorded.
   */
  long percentileMicros(double percent) {
    long[] snapshot = new long[BUCKETS];
    long total = 0;
    for (int i = 0; i < BUCKETS; i++) {
      snapshot[i] = counts.get(i);
      total += snapshot[i];
    }
    if (total == 0) {
      return 0;
    }
    long rank = Math.max(1, (long) Math.ceil(total * percent / 100.0));
    long seen = 0;
    for (int i = 0; i < BUCKETS; i++) {
      seen += snapshot[i];
      if (seen >= rank) {
        return upperBound(i);
      }
    }
    return upperBound(BUCKETS - 1);
  }

  static int bucket(long micros) {
    if (micros < LINEAR) {
      return (int) micros;
    }
    int exponent = 63 - Long.numberOfLeadingZeros(micros); // >= SUB_BITS
    int sub = (int) (micros >>> (exponent - SUB_BITS)) & (SUB_BUCKETS - 1);
    return LINEAR + (exponent - SUB_BITS) * SUB_BUCKETS + sub;
  }

  /** The largest value of bucket {@code i}. */
  static long upperBound(int i) {
    if (i < LINEAR) {
      return i;
    }
    int exponent = (i - LINEAR) / SUB_BUCKETS + SUB_BITS;
    int sub = (i - LINEAR) % SUB_BUCKETS;
    long width = 1L << (exponent - SUB_BITS);
    long lower = (long) (SUB_BUCKETS + sub) << (exponent - SUB_BITS);
    return lower + width - 1;
  }
}
