/*
 * histogram.h - a log-linear latency histogram (nanoseconds), the same layout as the Java
 * benchmark's io.psiskv.bench.Histogram, so the C and Java loads report percentiles alike.
 *
 * Values below 2^SUB_BITS ns have a bucket each; above, every power of two is split into
 * 2^SUB_BITS equal buckets, so a value is kept to within 1/64 (1.6%) of itself. A percentile is
 * reported as the middle of its bucket (never above the largest value recorded). One histogram per
 * thread, no locking; merged at the end with hist_add.
 */
#ifndef PSISKV_BENCH_HISTOGRAM_H
#define PSISKV_BENCH_HISTOGRAM_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define HIST_SUB_BITS 6
#define HIST_SUB_COUNT (1 << HIST_SUB_BITS)
/* Enough buckets for every positive int64 (bucket index up to 63 - SUB_BITS + 1). */
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB_COUNT)

struct histogram {
  uint64_t counts[HIST_BUCKETS];
  uint64_t total;
  uint64_t min;
  uint64_t max;
  double sum;
};

static inline void hist_init(struct histogram *h) {
  memset(h, 0, sizeof *h);
  h->min = UINT64_MAX;
}

static inline int hist_index(uint64_t v) {
  if (v < HIST_SUB_COUNT) {
    return (int)v;
  }
  int msb = 63 - __builtin_clzll(v);
  int shift = msb - HIST_SUB_BITS;
  return ((shift + 1) << HIST_SUB_BITS) + (int)((v >> shift) & (HIST_SUB_COUNT - 1));
}

/* The smallest value of bucket i, and its width. */
static inline uint64_t hist_lowest(int i) {
  int bucket = i >> HIST_SUB_BITS;
  uint64_t sub = (uint64_t)(i & (HIST_SUB_COUNT - 1));
  if (bucket == 0) {
    return sub;
  }
  return (HIST_SUB_COUNT | sub) << (bucket - 1);
}

static inline uint64_t hist_width(int i) {
  int bucket = i >> HIST_SUB_BITS;
  return bucket == 0 ? 1 : (uint64_t)1 << (bucket - 1);
}

static inline void hist_record(struct histogram *h, uint64_t nanos) {
  h->counts[hist_index(nanos)]++;
  h->total++;
  h->sum += (double)nanos;
  if (nanos < h->min) {
    h->min = nanos;
  }
  if (nanos > h->max) {
    h->max = nanos;
  }
}

static inline void hist_add(struct histogram *into, const struct histogram *from) {
  for (int i = 0; i < HIST_BUCKETS; i++) {
    into->counts[i] += from->counts[i];
  }
  into->total += from->total;
  into->sum += from->sum;
  if (from->min < into->min) {
    into->min = from->min;
  }
  if (from->max > into->max) {
    into->max = from->max;
  }
}

/* The value below which p percent (0 < p <= 100) of the recorded values lie; 0 when empty. */
static inline double hist_percentile(const struct histogram *h, double p) {
  if (h->total == 0) {
    return 0;
  }
  uint64_t rank = (uint64_t)ceil((double)h->total * p / 100.0);
  if (rank < 1) {
    rank = 1;
  }
  uint64_t seen = 0;
  for (int i = 0; i < HIST_BUCKETS; i++) {
    seen += h->counts[i];
    if (seen >= rank) {
      double mid = (double)hist_lowest(i) + (double)(hist_width(i) - 1) / 2.0;
      if (mid > (double)h->max) {
        mid = (double)h->max;
      }
      if (mid < (double)h->min) {
        mid = (double)h->min;
      }
      return mid;
    }
  }
  return (double)h->max;
}

#endif
