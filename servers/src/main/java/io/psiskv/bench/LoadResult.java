package io.psiskv.bench;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The result line of a load generator (C or Java): space-separated {@code key=value} pairs, e.g.
 * {@code backend=psiskv threads=16 ... ops_per_sec=34567.1 p99_us=812.3 ...}. Missing numbers read
 * as NaN.
 */
final class LoadResult {
  private final Map<String, String> fields;

  private LoadResult(Map<String, String> fields) {
    this.fields = fields;
  }

  /** Parses a result line; null if it has no {@code ops=} or {@code preload_seconds=} field. */
  static LoadResult parse(String line) {
    Map<String, String> fields = new LinkedHashMap<>();
    for (String word : line.trim().split("\\s+")) {
      int eq = word.indexOf('=');
      if (eq > 0) {
        fields.put(word.substring(0, eq), word.substring(eq + 1));
      }
    }
    if (!fields.containsKey("ops") && !fields.containsKey("preload_seconds")) {
      return null;
    }
    return new LoadResult(fields);
  }

  double number(String key) {
    String v = fields.get(key);
    if (v == null) {
      return Double.NaN;
    }
    try {
      return Double.parseDouble(v);
    } catch (NumberFormatException e) {
      return Double.NaN;
    }
  }

  double opsPerSecond() {
    return number("ops_per_sec");
  }

  double p50() {
    return number("p50_us");
  }

  double p99() {
    return number("p99_us");
  }

  double p999() {
    return number("p999_us");
  }

  double max() {
    return number("max_us");
  }

  double clientCpuPerOp() {
    return number("client_cpu_us_per_op");
  }

  double serverCpuPerOp() {
    return number("server_cpu_us_per_op");
  }

  long errors() {
    double e = number("errors");
    return Double.isNaN(e) ? 0 : (long) e;
  }

  long misses() {
    double m = number("misses");
    return Double.isNaN(m) ? 0 : (long) m;
  }
}
