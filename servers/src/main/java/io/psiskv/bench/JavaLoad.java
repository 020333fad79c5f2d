package io.psiskv.bench;

import com.sun.management.OperatingSystemMXBean;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * The benchmark's Java load, one JVM per run (so its CPU time is its own): the same shape and the
 * same result line as the C load generator (c-test-app/bench/loadgen.c), with a Java client.
 *
 * <pre>
 * java -cp psiskv-server.jar[:jedis classpath] io.psiskv.bench.JavaLoad --client psiskv|jedis
 *     [--host H] --port P [--threads N] [--read-percent P] [--keys K] [--value-bytes V]
 *     [--seconds S] [--warmup-seconds W] [--server-pid PID]
 * </pre>
 *
 * <p>N threads with one blocking connection each ({@link LoadClient}: KvClient on psiskv, Jedis on
 * Redis), all connected before the clock starts; each loops over a uniform key in 0..K-1, a read
 * with probability P% else a write (replace). The keys must be there already (psiskv-bench
 * preloads them with the C load generator). After W seconds of warm-up, each operation that
 * starts inside the S measured seconds is timed into its thread's {@link Histogram}. The JVM's
 * process CPU time (every thread, JIT and GC included) and, with --server-pid, the server's (from
 * /proc) are read at both ends of the interval. Exit 0 done, 1 no connection, 2 a bad option.
 */
public final class JavaLoad {
  private JavaLoad() {}

  private static final int RECONNECT_PAUSE_MILLIS = 10;

  private static final class Worker extends Thread {
    final Histogram histogram = new Histogram();
    final LoadClient.Factory factory;
    final String host;
    final int port;
    final int keys;
    final int readPercent;
    final byte[] value;
    final SplittableRandom random;
    LoadClient client;
    long reads;
    long writes;
    long misses;
    long errors;
    long reconnects;

    Worker(int id, LoadClient client, LoadClient.Factory factory, String host, int port,
        int keys, int readPercent, byte[] value) {
      super("load-" + id);
      this.client = client;
      this.factory = factory;
      this.host = host;
      this.port = port;
      this.keys = keys;
      this.readPercent = readPercent;
      this.value = value;
      this.random = new SplittableRandom(0x5eed0000L + id);
    }

    @Override
    public void run() {
      byte[] buffer = new byte[value.length];
      for (;;) {
        int phase = JavaLoad.phase;
        if (phase == STOP) {
          break;
        }
        if (client == null) {
          try {
            client = factory.connect(host, port);
            reconnects++;
          } catch (RuntimeException e) {
            sleepQuietly(RECONNECT_PAUSE_MILLIS);
            continue;
          }
        }
        int key = random.nextInt(keys);
        boolean read = random.nextInt(100) < readPercent;
        boolean found = true;
        long start = System.nanoTime();
        try {
          if (read) {
            found = client.get(key, buffer);
          } else {
            client.set(key, value);
          }
        } catch (RuntimeException e) {
          if (phase == MEASURE) {
            errors++;
          }
          client.close();
          client = null;
          continue;
        }
        long nanos = System.nanoTime() - start;
        if (phase != MEASURE) {
          continue;
        }
        histogram.record(nanos);
        if (read) {
          reads++;
          misses += found ? 0 : 1;
        } else {
          writes++;
        }
      }
      if (client != null) {
        client.close();
      }
    }
  }

  private static final int WARMUP = 0;
  private static final int MEASURE = 1;
  private static final int STOP = 2;
  private static volatile int phase = WARMUP;

  public static void main(String[] args) throws InterruptedException {
    String clientName = null;
    String host = "127.0.0.1";
    int port = -1;
    int threads = 1;
    int readPercent = 90;
    int keys = 100_000;
    int valueBytes = 100;
    double seconds = 5;
    double warmupSeconds = 2;
    long serverPid = 0;
    try {
      for (int i = 0; i < args.length; i++) {
        String a = args[i];
        if (a.equals("--help")) {
          System.out.println(usage());
          return;
        }
        if (i + 1 >= args.length) {
          throw new IllegalArgumentException(a.startsWith("--") ? a + " needs a value"
              : "unknown option '" + a + "'");
        }
        String v = args[++i];
        switch (a) {
          case "--client": clientName = v; break;
          case "--host": host = v; break;
          case "--port": port = number(a, v, 1, 65535); break;
          case "--threads": threads = number(a, v, 1, BenchOptions.MAX_THREADS); break;
          case "--read-percent": readPercent = number(a, v, 0, 100); break;
          case "--keys": keys = number(a, v, 1, Integer.MAX_VALUE); break;
          case "--value-bytes": valueBytes = number(a, v, 0, BenchOptions.MAX_VALUE_BYTES); break;
          case "--seconds": seconds = Double.parseDouble(v); break;
          case "--warmup-seconds": warmupSeconds = Double.parseDouble(v); break;
          case "--server-pid": serverPid = number(a, v, 1, Integer.MAX_VALUE); break;
          default: throw new IllegalArgumentException("unknown option '" + a + "'");
        }
      }
      if (port < 0) {
        throw new IllegalArgumentException("--port is required");
      }
      if (!(seconds > 0) || !(warmupSeconds >= 0)) {
        throw new IllegalArgumentException("--seconds must be > 0 and --warmup-seconds >= 0");
      }
    } catch (IllegalArgumentException e) {
      System.err.println("JavaLoad: " + e.getMessage());
      System.err.println(usage());
      System.exit(2);
      return;
    }
    LoadClient.Factory factory;
    String backend;
    if ("psiskv".equals(clientName)) {
      factory = LoadClient::psiskv;
      backend = "psiskv";
    } else if ("jedis".equals(clientName)) {
      factory = JedisLoadClient::connect;
      backend = "redis";
    } else {
      System.err.println("JavaLoad: --client wants psiskv or jedis, not '" + clientName + "'");
      System.err.println(usage());
      System.exit(2);
      return;
    }

    byte[] value = new byte[valueBytes];
    SplittableRandom fill = new SplittableRandom(42);
    for (int i = 0; i < valueBytes; i++) {
      value[i] = (byte) ('a' + fill.nextInt(26));
    }
    List<Worker> workers = new ArrayList<>();
    for (int t = 0; t < threads; t++) {
      LoadClient client;
      try {
        client = factory.connect(host, port);
      } catch (RuntimeException e) {
        System.err.printf("JavaLoad: cannot connect to %s:%d (connection %d of %d): %s%n", host,
            port, t + 1, threads, e.getMessage());
        workers.forEach(w -> w.client.close());
        System.exit(1);
        return;
      }
      workers.add(new Worker(t, client, factory, host, port, keys, readPercent, value));
    }
    workers.forEach(Thread::start);

    OperatingSystemMXBean os =
        (OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
    TimeUnit.NANOSECONDS.sleep((long) (warmupSeconds * 1e9)); // The warm-up itself.
    long server0 = serverCpu(serverPid);
    long cpu0 = os.getProcessCpuTime();
    long t0 = System.nanoTime();
    phase = MEASURE;
    TimeUnit.NANOSECONDS.sleep((long) (seconds * 1e9)); // The measured interval itself.
    phase = STOP;
    long t1 = System.nanoTime();
    long cpu1 = os.getProcessCpuTime();
    long server1 = serverCpu(serverPid);
    for (Worker w : workers) {
      w.join();
    }

    Histogram all = new Histogram();
    long reads = 0;
    long writes = 0;
    long misses = 0;
    long errors = 0;
    long reconnects = 0;
    for (Worker w : workers) {
      all.add(w.histogram);
      reads += w.reads;
      writes += w.writes;
      misses += w.misses;
      errors += w.errors;
      reconnects += w.reconnects;
    }
    double elapsed = (t1 - t0) / 1e9;
    long ops = all.count();
    long cpuMicros = (cpu1 - cpu0) / 1000;
    StringBuilder line = new StringBuilder(String.format(Locale.ROOT,
        "backend=%s client=%s threads=%d read_percent=%d keys=%d value_bytes=%d seconds=%.3f"
            + " ops=%d ops_per_sec=%.1f reads=%d writes=%d misses=%d errors=%d reconnects=%d"
            + " p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mean_us=%.1f"
            + " client_cpu_us=%d client_cpu_us_per_op=%.2f",
        backend, clientName, threads, readPercent, keys, valueBytes, elapsed, ops, ops / elapsed,
        reads, writes, misses, errors, reconnects, all.percentile(50) / 1e3,
        all.percentile(99) / 1e3, all.percentile(99.9) / 1e3, all.max() / 1e3, all.mean() / 1e3,
        cpuMicros, ops == 0 ? 0.0 : (double) cpuMicros / ops));
    if (serverPid != 0 && server0 >= 0 && server1 >= 0) {
      line.append(String.format(Locale.ROOT, " server_cpu_us=%d server_cpu_us_per_op=%.2f",
          server1 - server0, ops == 0 ? 0.0 : (double) (server1 - server0) / ops));
    }
    System.out.println(line);
  }

  private static long serverCpu(long pid) {
    if (pid == 0) {
      return -1;
    }
    try {
      return Proc.cpuMicros(pid);
    } catch (IOException e) {
      System.err.println("JavaLoad: cannot read the server's CPU time: " + e.getMessage());
      return -1;
    }
  }

  private static int number(String option, String text, int min, int max) {
    try {
      long v = Long.parseLong(text);
      if (v >= min && v <= max) {
        return (int) v;
      }
    } catch (NumberFormatException e) {
      // Reported below.
    }
    throw new IllegalArgumentException(option + " wants a whole number in " + min + ".." + max
        + ", not '" + text + "'");
  }

  private static void sleepQuietly(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private static String usage() {
    return "usage: JavaLoad --client psiskv|jedis [--host H] --port P [--threads N]"
        + " [--read-percent P] [--keys K] [--value-bytes V] [--seconds S] [--warmup-seconds W]"
        + " [--server-pid PID]";
  }
}
