package io.psiskv.bench;

/**
 * A log-linear latency histogram in nanoseconds, the same layout as the C load generator's
 * ({@code c-test-app/bench/histogram.h}), so the C and the Java loads report percentiles alike.
 *
 * <p>Values below 2<sup>{@value #SUB_BITS}</sup> ns have a bucket each; above, every power of two
 * is split into 2<sup>{@value #SUB_BITS}</sup> equal buckets, so a value is kept to within 1/64
 * (1.6%) of itself. A percentile is the middle of its bucket, never above the largest or below the
 * smallest value recorded. Not thread-safe: one per worker thread, merged at the end with {@link
 * #add}.
 */
final class Histogram {
  static final int SUB_BITS = 6;
  private static final int SUB_COUNT = 1 << SUB_BITS;
  /** Enough buckets for every positive long. */
  private static final int BUCKETS = (64 - SUB_BITS + 1) * SUB_COUNT;

  private final long[] counts = new long[BUCKETS];
  private long total;
  private long min = Long.MAX_VALUE;
  private long max;
  private double sum;

  void record(long nanos) {
    long v = Math.max(0, nanos);
    counts[index(v)]++;
    total++;
    sum += v;
    min = Math.min(min, v);
    max = Math.max(max, v);
  }

  void add(Histogram other) {
    for (int i = 0; i < BUCKETS; i++) {
      counts[i] += other.counts[i];
    }
    total += other.total;
    sum += other.sum;
    min = Math.min(min, other.min);
    max = Math.max(max, other.max);
  }

  long count() {
    return total;
  }

  long max() {
    return max;
  }

  double mean() {
    return total == 0 ? 0 : sum / total;
  }

  /** The value below which {@code p} percent (0 < p <= 100) of the values lie; 0 when empty. */
  double percentile(double p) {
    if (total == 0) {
      return 0;
    }
    long rank = Math.max(1, (long) Math.ceil(total * p / 100.0));
    long seen = 0;
    for (int i = 0; i < BUCKETS; i++) {
      seen += counts[i];
      if (seen >= rank) {
        double mid = lowest(i) + (width(i) - 1) / 2.0;
        return Math.max(min, Math.min(max, mid));
      }
    }
    return max;
  }

  static int index(long v) {
    if (v < SUB_COUNT) {
      return (int) v;
    }
    int msb = 63 - Long.numberOfLeadingZeros(v);
    int shift = msb - SUB_BITS;
    return ((shift + 1) << SUB_BITS) + (int) ((v >>> shift) & (SUB_COUNT - 1));
  }

  /** The smallest value of bucket {@code i}. */
  static long lowest(int i) {
    int bucket = i >>> SUB_BITS;
    long sub = i & (SUB_COUNT - 1);
    return bucket == 0 ? sub : (SUB_COUNT | sub) << (bucket - 1);
  }

  /** How many values bucket {@code i} holds. */
  static long width(int i) {
    int bucket = i >>> SUB_BITS;
    return bucket == 0 ? 1 : 1L << (bucket - 1);
  }
}
