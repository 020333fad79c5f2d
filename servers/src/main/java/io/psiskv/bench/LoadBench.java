package io.psiskv.bench;

import io.psiskv.client.KvClient;
import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The project's load benchmark: N client threads, each with its own blocking {@link KvClient}
 * connection, doing a read/write mix over a key space, for a fixed time. Prints throughput and
 * latency percentiles. Without {@code --port} it starts its own Front and Data Server (from the
 * same classpath, in a temporary data directory) and stops them afterwards.
 *
 * <pre>
 * build-scripts/psiskv-bench [--threads 64] [--value-bytes 100] [--read-percent 90]
 *     [--keys 100000] [--seconds 10] [--warmup-seconds 3] [--port P [--host H]]
 *     [-- server options, e.g. --threads pool:8]
 * </pre>
 */
public final class LoadBench {
  private LoadBench() {}

  private static final Pattern LISTENING =
      Pattern.compile("psiskv front server listening on (\\S+):(\\d+)");
  private static final long SERVER_START_TIMEOUT_MILLIS = 30_000;

  public static void main(String[] args) throws Exception {
    int threads = 64;
    int valueBytes = 100;
    int readPercent = 90;
    int keys = 100_000;
    int seconds = 10;
    int warmupSeconds = 3;
    String host = "127.0.0.1";
    int port = -1;
    List<String> serverArgs = new ArrayList<>();
    for (int i = 0; i < args.length; i++) {
      String a = args[i];
      if (a.equals("--")) {
        serverArgs.addAll(List.of(args).subList(i + 1, args.length));
        break;
      }
      String v = i + 1 < args.length ? args[++i] : usage("missing value for " + a);
      switch (a) {
        case "--threads": threads = Integer.parseInt(v); break;
        case "--value-bytes": valueBytes = Integer.parseInt(v); break;
        case "--read-percent": readPercent = Integer.parseInt(v); break;
        case "--keys": keys = Integer.parseInt(v); break;
        case "--seconds": seconds = Integer.parseInt(v); break;
        case "--warmup-seconds": warmupSeconds = Integer.parseInt(v); break;
        case "--host": host = v; break;
        case "--port": port = Integer.parseInt(v); break;
        default: usage("unknown option " + a);
      }
    }
    Process server = null;
    Path dataDir = null;
    try {
      if (port < 0) {
        dataDir = Files.createTempDirectory("psiskv-bench");
        server = startServers(dataDir, serverArgs);
        port = waitForPort(server);
      }
      run(host, port, threads, valueBytes, readPercent, keys, seconds, warmupSeconds, serverArgs);
    } finally {
      if (server != null) {
        stopServers(server);
        deleteTree(dataDir);
      }
    }
  }

  private static void run(String host, int port, int threads, int valueBytes, int readPercent,
      int keys, int seconds, int warmupSeconds, List<String> serverArgs) throws Exception {
    byte[] value = new byte[valueBytes];
    new SplittableRandom(1).nextBytes(value);
    try (KvClient loader = KvClient.connect(host, port)) {
      for (int k = 0; k < keys; k++) {
        loader.put(k, value);
      }
    }
    AtomicBoolean measuring = new AtomicBoolean(false);
    AtomicBoolean stop = new AtomicBoolean(false);
    Histogram[] histograms = new Histogram[threads];
    long[] ops = new long[threads];
    CountDownLatch ready = new CountDownLatch(threads);
    List<Thread> workers = new ArrayList<>();
    for (int t = 0; t < threads; t++) {
      final int id = t;
      histograms[t] = new Histogram();
      Thread w = new Thread(() -> {
        SplittableRandom random = new SplittableRandom(id * 7919L + 1);
        byte[] buffer = new byte[valueBytes];
        try (KvClient kv = KvClient.connect(host, port)) {
          ready.countDown();
          long count = 0;
          while (!stop.get()) {
            int key = random.nextInt(keys);
            boolean read = random.nextInt(100) < readPercent;
            long start = System.nanoTime();
            if (read) {
              kv.read(key, buffer);
            } else {
              kv.put(key, value);
            }
            long nanos = System.nanoTime() - start;
            if (measuring.get()) {
              histograms[id].record(nanos);
              count++;
            }
          }
          ops[id] = count;
        }
      }, "bench-" + t);
      workers.add(w);
      w.start();
    }
    ready.await();
    TimeUnit.SECONDS.sleep(warmupSeconds); // Warm-up length, not synchronisation.
    measuring.set(true);
    long start = System.nanoTime();
    TimeUnit.SECONDS.sleep(seconds); // The measured interval itself.
    measuring.set(false);
    long elapsed = System.nanoTime() - start;
    stop.set(true);
    for (Thread w : workers) {
      w.join();
    }
    Histogram all = new Histogram();
    long total = 0;
    for (int t = 0; t < threads; t++) {
      all.add(histograms[t]);
      total += ops[t];
    }
    double opsPerSec = total / (elapsed / 1e9);
    System.out.printf(Locale.ROOT,
        "psiskv-bench threads=%d value=%dB reads=%d%% keys=%d seconds=%d server-args=%s%n",
        threads, valueBytes, readPercent, keys, seconds, serverArgs);
    System.out.printf(Locale.ROOT,
        "throughput %.0f ops/s  latency p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us%n",
        opsPerSec, all.percentile(50) / 1e3, all.percentile(99) / 1e3,
        all.percentile(99.9) / 1e3, all.max() / 1e3);
  }

  private static Process startServers(Path dataDir, List<String> serverArgs) throws IOException {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    List<String> cmd = new ArrayList<>(List.of(java, "-cp", System.getProperty("java.class.path"),
        "io.psiskv.server.FrontServer", "--port", "0", "--data-dir", dataDir.toString()));
    cmd.addAll(serverArgs);
    return new ProcessBuilder(cmd)
        .redirectError(ProcessBuilder.Redirect.appendTo(dataDir.resolve("server.log").toFile()))
        .start();
  }

  private static int waitForPort(Process server) throws IOException {
    long deadline = System.currentTimeMillis() + SERVER_START_TIMEOUT_MILLIS;
    BufferedReader out = new BufferedReader(
        new InputStreamReader(server.getInputStream(), StandardCharsets.UTF_8));
    for (String line; System.currentTimeMillis() < deadline && (line = out.readLine()) != null; ) {
      Matcher m = LISTENING.matcher(line);
      if (m.find()) {
        return Integer.parseInt(m.group(2));
      }
    }
    throw new IOException("the servers did not start; see the server log in the data directory");
  }

  private static void stopServers(Process server) throws InterruptedException {
    try (OutputStream console = server.getOutputStream()) {
      console.write("quit\n".getBytes(StandardCharsets.UTF_8));
    } catch (IOException ignored) {
      // Already gone.
    }
    if (!server.waitFor(30, TimeUnit.SECONDS)) {
      server.descendants().forEach(ProcessHandle::destroyForcibly);
      server.destroyForcibly();
    }
  }

  private static void deleteTree(Path dir) throws IOException {
    if (dir == null) {
      return;
    }
    try (var paths = Files.walk(dir)) {
      paths.sorted((a, b) -> b.getNameCount() - a.getNameCount())
          .map(Path::toFile).forEach(File::delete);
    }
  }

  private static String usage(String problem) {
    System.err.println("psiskv-bench: " + problem);
    System.err.println("usage: psiskv-bench [--threads N] [--value-bytes N] [--read-percent P]"
        + " [--keys N] [--seconds N] [--warmup-seconds N] [--host H --port P] [-- server options]");
    System.exit(2);
    return null;
  }

  /**
   * Log-linear latency histogram in nanoseconds: 64 sub-buckets per power of two, so each value is
   * kept to within about 1.6%. Not thread-safe: one per worker, merged at the end.
   */
  static final class Histogram {
    private static final int SUB_BITS = 6;
    private final long[] counts = new long[64 << SUB_BITS];
    private long total;
    private long max;

    void record(long nanos) {
      counts[index(Math.max(1, nanos))]++;
      total++;
      max = Math.max(max, nanos);
    }

    void add(Histogram other) {
      for (int i = 0; i < counts.length; i++) {
        counts[i] += other.counts[i];
      }
      total += other.total;
      max = Math.max(max, other.max);
    }

    long max() {
      return max;
    }

    long percentile(double p) {
      long rank = (long) Math.ceil(total * p / 100.0);
      long seen = 0;
      for (int i = 0; i < counts.length; i++) {
        seen += counts[i];
        if (seen >= rank && counts[i] > 0) {
          return lowest(i);
        }
      }
      return max;
    }

    private static int index(long v) {
      int msb = 63 - Long.numberOfLeadingZeros(v);
      if (msb < SUB_BITS) {
        return (int) v;
      }
      int shift = msb - SUB_BITS;
      return ((shift + 1) << SUB_BITS) + (int) ((v >>> shift) & ((1 << SUB_BITS) - 1));
    }

    private static long lowest(int index) {
      int bucket = index >>> SUB_BITS;
      int sub = index & ((1 << SUB_BITS) - 1);
      if (bucket == 0) {
        return sub;
      }
      int shift = bucket - 1;
      return ((long) ((1 << SUB_BITS) | sub)) << shift;
    }
  }
}
