package io.psiskv.bench;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/** How the benchmark writes its figures: one format per kind of number, for every table. */
final class BenchFormat {
  private BenchFormat() {}

  static String workload(int readPercent) {
    return readPercent == 0 ? "writes only" : readPercent == 100 ? "reads only"
        : readPercent + "% reads";
  }

  static String ops(double v) {
    return Double.isNaN(v) ? "" : String.format(Locale.ROOT, "%,.0f", v);
  }

  static String micros(double v) {
    if (Double.isNaN(v)) {
      return "";
    }
    return String.format(Locale.ROOT, v < 100 ? "%.1f" : "%,.0f", v);
  }

  static String cpu(double v) {
    return Double.isNaN(v) ? "" : String.format(Locale.ROOT, "%.1f", v);
  }

  static String ratio(double psiskv, double peer) {
    return psiskv > 0 && peer > 0 ? String.format(Locale.ROOT, "%.2f", psiskv / peer) : "";
  }

  static String mib(long bytes) {
    return String.format(Locale.ROOT, "%.1f", bytes / 1048576.0);
  }

  static String seconds(double s) {
    return s == Math.rint(s) ? Long.toString((long) s) : Double.toString(s);
  }

  static String duration(double seconds) {
    return seconds < 90 ? Math.round(seconds) + " s" : Math.round(seconds / 60) + " min";
  }

  /** The command as the user typed it (for the report), quoted where a shell needs it. */
  static String commandLine(String[] args) {
    List<String> words = new ArrayList<>(List.of("build-scripts/psiskv-bench"));
    words.addAll(List.of(args));
    return shell(words);
  }

  /** The words as a shell command line, quoted where a shell needs it. */
  static String shell(List<String> words) {
    StringBuilder out = new StringBuilder();
    for (String a : words) {
      if (out.length() > 0) {
        out.append(' ');
      }
      out.append(a.matches("[A-Za-z0-9_@%+=:,./-]+") ? a
          : "'" + a.replace("'", "'\\''") + "'");
    }
    return out.toString();
  }
}
