package io.psiskv.bench;

import static io.psiskv.bench.Bench.DURABLE_LABEL;
import static io.psiskv.bench.Bench.progress;
import static io.psiskv.bench.BenchFormat.cpu;
import static io.psiskv.bench.BenchFormat.mib;
import static io.psiskv.bench.BenchFormat.micros;
import static io.psiskv.bench.BenchFormat.ops;
import static io.psiskv.bench.BenchFormat.ratio;
import static io.psiskv.bench.BenchFormat.seconds;
import static io.psiskv.bench.BenchFormat.workload;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * The benchmark's report: the load table (with the psiskv/peer ratios), the SVG plot and the
 * memory table, from the rows {@link Bench} measured. No process is started here; the plot is the
 * one file it writes.
 */
final class BenchReport {
  private final BenchOptions options;
  private final Path root;

  BenchReport(BenchOptions options, Path root) {
    this.options = options;
    this.root = root;
  }

  String load(List<Bench.Row> rows) {
    List<Bench.Row> sorted = new ArrayList<>(rows);
    List<String> serverOrder = new ArrayList<>();
    rows.forEach(r -> {
      if (!serverOrder.contains(r.server())) {
        serverOrder.add(r.server());
      }
    });
    sorted.sort(Comparator
        .comparingInt((Bench.Row r) -> options.readPercents.indexOf(r.readPercent()))
        .thenComparingInt(r -> options.threads.indexOf(r.threads()))
        .thenComparingInt(r -> serverOrder.indexOf(r.server()))
        .thenComparingInt(r -> r.client().ordinal()));
    boolean anyPeer = rows.stream().anyMatch(r -> r.kind() != BenchServer.Kind.PSISKV);
    boolean anyNote = rows.stream().anyMatch(r -> note(r) != null);
    List<String> headers = new ArrayList<>(List.of("workload", "threads", "server", "client",
        "ops/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs"));
    if (anyPeer) {
      headers.addAll(List.of("psiskv/peer ops/s", "psiskv/peer p99"));
    }
    headers.addAll(List.of("server CPU µs/op", "client CPU µs/op"));
    if (anyNote) {
      headers.add("notes");
    }
    MarkdownTable table = new MarkdownTable(headers.toArray(new String[0]));
    table.right(1, 4, 5, 6, 7, 8, 9, 10);
    if (anyPeer) {
      table.right(11, 12);
    }
    for (Bench.Row r : sorted) {
      List<String> cells = new ArrayList<>(List.of(workload(r.readPercent()),
          Integer.toString(r.threads()), r.server(), r.client().label));
      LoadResult x = r.result();
      if (x == null) {
        cells.addAll(List.of("failed", "", "", "", ""));
      } else {
        cells.addAll(List.of(ops(x.opsPerSecond()), micros(x.p50()), micros(x.p99()),
            micros(x.p999()), micros(x.max())));
      }
      if (anyPeer) {
        Bench.Row ref = reference(rows, r);
        boolean ratio = r.kind() != BenchServer.Kind.PSISKV && ref != null && x != null;
        cells.add(ratio ? ratio(ref.result().opsPerSecond(), x.opsPerSecond()) : "");
        cells.add(ratio ? ratio(ref.result().p99(), x.p99()) : "");
      }
      cells.add(x == null ? "" : cpu(x.serverCpuPerOp()));
      cells.add(x == null ? "" : cpu(x.clientCpuPerOp()));
      if (anyNote) {
        String note = note(r);
        cells.add(note == null ? "" : note);
      }
      table.add(cells.toArray(new String[0]));
    }
    StringBuilder out = new StringBuilder("## Load\n\n");
    out.append(String.format(Locale.ROOT, "%s keys of %d B preloaded per server; each point: %s s"
        + " warm-up, then %s s measured; N client threads with one blocking connection each, in"
        + " one load-generator process on the same machine; keys uniform.%n%n",
        ops(options.keys), options.valueBytes, seconds(options.warmupSeconds),
        seconds(options.seconds)));
    out.append(table.render());
    out.append('\n');
    if (anyPeer) {
      out.append("psiskv/peer: psiskv as started by default (durable: fsync always) divided by"
          + " the row's store, same client language, threads and workload. Above 1 in ops/s,"
          + " psiskv is faster; below 1 in p99, psiskv's p99 is lower.\n");
    }
    out.append("CPU µs/op: CPU time (user + system) over the measured interval divided by its"
        + " operations; server: the server process from /proc/PID/stat (psiskv: the Data"
        + " Server); client: the load-generator process (C: getrusage; Java: the JVM's process"
        + " CPU time, JIT and GC included).\n");
    return out.toString();
  }

  /** The psiskv (default) row of the same client language, threads and workload. */
  private static Bench.Row reference(List<Bench.Row> rows, Bench.Row r) {
    for (Bench.Row ref : rows) {
      if (ref.server().equals(DURABLE_LABEL) && ref.client().java == r.client().java
          && ref.threads() == r.threads() && ref.readPercent() == r.readPercent()
          && ref.result() != null) {
        return ref;
      }
    }
    return null;
  }

  private static String note(Bench.Row r) {
    if (r.result() == null) {
      return r.failure();
    }
    List<String> notes = new ArrayList<>();
    if (r.result().errors() > 0) {
      notes.add(r.result().errors() + " errors");
    }
    if (r.result().misses() > 0) {
      notes.add(r.result().misses() + " reads found no key");
    }
    return notes.isEmpty() ? null : String.join(", ", notes);
  }

  String plot(List<Bench.Row> rows) {
    List<SvgPlot.Panel> panels = new ArrayList<>();
    for (int readPercent : options.readPercents) {
      Map<String, List<SvgPlot.Point>> throughput = new LinkedHashMap<>();
      Map<String, List<SvgPlot.Point>> p99 = new LinkedHashMap<>();
      for (Bench.Row r : rows) {
        if (r.readPercent() != readPercent || r.result() == null) {
          continue;
        }
        String name = r.server() + " (" + r.client().label + ")";
        throughput.computeIfAbsent(name, k -> new ArrayList<>())
            .add(new SvgPlot.Point(r.threads(), r.result().opsPerSecond()));
        p99.computeIfAbsent(name, k -> new ArrayList<>())
            .add(new SvgPlot.Point(r.threads(), r.result().p99()));
      }
      panels.add(new SvgPlot.Panel("throughput, " + workload(readPercent), "client threads",
          "ops/s", false, series(throughput)));
      panels.add(new SvgPlot.Panel("p99 latency, " + workload(readPercent), "client threads",
          "p99 latency, µs (log scale)", true, series(p99)));
    }
    String svg = SvgPlot.render(String.format(Locale.ROOT, "psiskv-bench: %s keys × %d B, %s s"
        + " per point", ops(options.keys), options.valueBytes, seconds(options.seconds)), panels,
        2);
    Path file = plotFile();
    try {
      Files.writeString(file, svg, StandardCharsets.UTF_8);
    } catch (IOException e) {
      progress("cannot write the plot to " + file + ": " + e);
      return "\nPlot: not written (" + e + ")\n";
    }
    progress("plot written to " + file);
    return "\nPlot: " + file + "\n";
  }

  Path plotFile() {
    return (options.plot != null ? options.plot : root.resolve(BenchOptions.DEFAULT_PLOT))
        .toAbsolutePath();
  }

  private static List<SvgPlot.Series> series(Map<String, List<SvgPlot.Point>> points) {
    List<SvgPlot.Series> series = new ArrayList<>();
    points.forEach((name, list) -> series.add(new SvgPlot.Series(name, list)));
    return series;
  }

  String memory(List<Bench.MemoryRow> rows) {
    MarkdownTable table = new MarkdownTable("server", "keys", "value B", "RSS before MiB",
        "RSS after MiB", "RSS per key B", "load rate keys/s").right(1, 2, 3, 4, 5, 6);
    for (Bench.MemoryRow m : rows) {
      table.add(m.server(), ops(m.keys()), Integer.toString(m.valueBytes()), mib(m.before()),
          mib(m.after()), String.format(Locale.ROOT, "%.0f", (m.after() - m.before())
              / (double) m.keys()), ops(m.keysPerSecond()));
    }
    return "## Memory\n\n" + table.render() + "\nRSS per key: (VmRSS after - VmRSS before) / keys,"
        + " VmRSS from /proc/PID/status of a fresh server (psiskv: the Data Server) 1 s after it"
        + " started and 1 s after the last key was written (by " + options.preloadThreads
        + " connections). A JVM's RSS also holds heap that garbage collection has not"
        + " reclaimed or returned.\n";
  }

  /** The machine and the versions of what runs, for the report's "Run:" line. */
  String machine() {
    String cpu = "";
    try (Stream<String> lines = Files.lines(Path.of("/proc/cpuinfo"))) {
      cpu = lines.filter(l -> l.startsWith("model name")).findFirst()
          .map(l -> l.substring(l.indexOf(':') + 1).trim()).orElse("");
    } catch (IOException | UncheckedIOException e) {
      // Left out.
    }
    StringBuilder out = new StringBuilder();
    out.append(Runtime.getRuntime().availableProcessors()).append(" CPUs");
    if (!cpu.isEmpty()) {
      out.append(" (").append(cpu).append(')');
    }
    out.append(", ").append(System.getProperty("os.name")).append(' ')
        .append(System.getProperty("os.version")).append(", Java ")
        .append(System.getProperty("java.version"));
    if (options.compare && (options.load || options.memory)) {
      out.append(", ").append(firstLine("redis-server", "--version")).append(", ")
          .append(firstLine("memcached", "-V"));
    }
    return out.toString();
  }

  private static String firstLine(String... cmd) {
    try {
      Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
      String line = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8)
          .lines().findFirst().orElse(cmd[0]);
      p.waitFor(5, TimeUnit.SECONDS);
      return line.replaceAll(" sha=\\S+| malloc=\\S+| bits=\\S+| build=\\S+", "").trim();
    } catch (IOException e) {
      return cmd[0] + " (version unknown)";
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return cmd[0];
    }
  }

  /** /proc/loadavg's three figures, as a sign of other work on the machine. */
  static String loadAverage() {
    try {
      String[] f = Files.readString(Path.of("/proc/loadavg")).trim().split(" ");
      return f[0] + " " + f[1] + " " + f[2];
    } catch (IOException e) {
      return "unknown";
    }
  }
}
