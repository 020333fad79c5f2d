/*
 * test_histogram.c - the load generator's histogram (histogram.h): bucket bounds, percentiles of
 * known data within the promised 1/64, merging. No server needed.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "histogram.h"

static int failures = 0;

#define CHECK(cond)                                                     \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                       \
    }                                                                   \
  } while (0)

static int near(double got, double want) {
  return fabs(got - want) <= want / HIST_SUB_COUNT + 1;
}

int main(void) {
  static struct histogram h, a, b;

  /* Every value falls inside its own bucket, and buckets tile the line without gaps. */
  for (uint64_t v = 1; v < ((uint64_t)1 << 40); v = v * 3 + 1) {
    int i = hist_index(v);
    CHECK(hist_lowest(i) <= v && v < hist_lowest(i) + hist_width(i));
    CHECK(hist_lowest(i + 1) == hist_lowest(i) + hist_width(i));
  }
  CHECK(hist_index(UINT64_MAX) < HIST_BUCKETS);

  /* 1..100000 ns once each: the p-th percentile is p * 1000 ns, within 1/64. */
  hist_init(&h);
  CHECK(hist_percentile(&h, 50) == 0);
  for (uint64_t v = 1; v <= 100000; v++) {
    hist_record(&h, v);
  }
  CHECK(h.total == 100000 && h.min == 1 && h.max == 100000);
  CHECK(near(hist_percentile(&h, 50), 50000));
  CHECK(near(hist_percentile(&h, 99), 99000));
  CHECK(near(hist_percentile(&h, 99.9), 99900));
  CHECK(hist_percentile(&h, 100) <= 100000);

  /* One value: every percentile is that value. */
  hist_init(&a);
  hist_record(&a, 123456);
  CHECK(hist_percentile(&a, 50) == 123456 && hist_percentile(&a, 99.9) == 123456);

  /* Merge: 900 fast and 100 slow operations; p50 is fast, p99 slow. */
  hist_init(&a);
  hist_init(&b);
  for (int i = 0; i < 900; i++) {
    hist_record(&a, 1000);
  }
  for (int i = 0; i < 100; i++) {
    hist_record(&b, 1000000);
  }
  hist_add(&a, &b);
  CHECK(a.total == 1000 && a.min == 1000 && a.max == 1000000);
  CHECK(near(hist_percentile(&a, 50), 1000));
  CHECK(near(hist_percentile(&a, 90), 1000));
  CHECK(near(hist_percentile(&a, 91), 1000000));

  if (failures != 0) {
    fprintf(stderr, "test_histogram: %d checks failed\n", failures);
    return 1;
  }
  printf("test_histogram: all checks passed\n");
  return 0;
}
