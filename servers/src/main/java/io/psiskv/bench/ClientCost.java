package io.psiskv.bench;

import io.psiskv.client.KvClient;
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CyclicBarrier;

/**
 * What one operation costs the client: CPU time and wall time per operation of {@link KvClient}
 * under a fixed mix, for the figures of DESIGN.md §9 (the Java twin of {@code
 * c-test-app/client_cost.c}). Not a test: it prints figures, and exits 1 only if a call fails.
 *
 * <pre>
 * java -cp servers/target/psiskv-server.jar io.psiskv.bench.ClientCost \
 *     HOST PORT [operations [threads [value-bytes [read-percent [keys [warm-up-operations]]]]]]
 * defaults:       200000      1        100           90             1000   200000
 * </pre>
 *
 * <p>Each thread has its own client and its own block of keys. It writes every key of its block
 * once (the preload), runs its share of the warm-up operations (so that the JIT has compiled the
 * call path), waits for the others, then runs its share of the measured operations: read-percent
 * {@code read} of a random key of its block into a buffer of value-bytes, the rest {@code put} of
 * value-bytes. The CPU time of the whole JVM process (every thread: the callers, and also the JIT
 * compiler and the garbage collector, as {@code getrusage} of the process would count them) is
 * taken around the measured phase only.
 */
final class ClientCost {
  private static final int KEY_BASE = 0x6D000000;
  /** {@code -Dpsiskv.callTimeoutMs=N}: the clients' call timeout (what the watchdog costs); none. */
  private static final java.time.Duration CALL_TIMEOUT =
      java.time.Duration.ofMillis(Long.getLong("psiskv.callTimeoutMs", 0));

  private ClientCost() {}

  public static void main(String[] args) throws Exception {
    if (args.length < 2) {
      System.err.println("usage: ClientCost host port [operations [threads [value-bytes "
          + "[read-percent [keys [warm-up-operations]]]]]]");
      System.exit(2);
    }
    String host = args[0];
    int port = Integer.parseInt(args[1]);
    long operations = arg(args, 2, 200_000);
    int threads = (int) arg(args, 3, 1);
    int valueBytes = (int) arg(args, 4, 100);
    int readPercent = (int) arg(args, 5, 90);
    int keys = (int) arg(args, 6, 1000);
    long warmUp = arg(args, 7, 200_000);
    com.sun.management.OperatingSystemMXBean os =
        (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
    CyclicBarrier warm = new CyclicBarrier(threads + 1);
    CyclicBarrier done = new CyclicBarrier(threads + 1);
    boolean[] failed = new boolean[threads];
    List<Thread> workers = new ArrayList<>();
    for (int t = 0; t < threads; t++) {
      int index = t;
      long share = operations / threads + (t < operations % threads ? 1 : 0);
      long warmShare = warmUp / threads;
      Thread w = new Thread(() -> {
        try (KvClient kv = KvClient.builder(host, port).callTimeout(CALL_TIMEOUT).connect()) {
          int firstKey = KEY_BASE + index * keys;
          byte[] value = new byte[valueBytes];
          Arrays.fill(value, (byte) 'v');
          byte[] buf = new byte[valueBytes];
          for (int k = 0; k < keys; k++) {
            kv.put(firstKey + k, value);
          }
          long[] random = {0x9E3779B97F4A7C15L ^ (index + 1)};
          run(kv, warmShare, firstKey, keys, readPercent, value, buf, random);
          warm.await();
          run(kv, share, firstKey, keys, readPercent, value, buf, random);
          done.await();
        } catch (Exception | Error e) {
          failed[index] = true;
          System.err.println("ClientCost: thread " + index + ": " + e);
          warm.reset();
          done.reset();
        }
      }, "client-cost-" + t);
      w.start();
      workers.add(w);
    }
    warm.await();
    long cpuBefore = os.getProcessCpuTime();
    long wallBefore = System.nanoTime();
    done.await();
    long wall = System.nanoTime() - wallBefore;
    long cpu = os.getProcessCpuTime() - cpuBefore;
    for (Thread w : workers) {
      w.join();
    }
    for (boolean f : failed) {
      if (f) {
        System.exit(1);
      }
    }
    if (operations > 0) {
      System.out.printf("ClientCost: %d operations, %d threads, %d-byte values, %d%% reads: "
          + "%.2f us CPU per operation, %.0f operations/s%n", operations, threads, valueBytes,
          readPercent, cpu / 1e3 / operations, operations * 1e9 / wall);
    }
  }

  private static void run(KvClient kv, long n, int firstKey, int keys, int readPercent,
      byte[] value, byte[] buf, long[] random) {
    for (long i = 0; i < n; i++) {
      long r = next(random);
      int key = firstKey + (int) Long.remainderUnsigned(r, keys);
      if (Long.remainderUnsigned(r >>> 32, 100) < readPercent) {
        int stored = kv.read(key, buf);
        if (stored != value.length) {
          throw new IllegalStateException("read of key " + key + " returned " + stored);
        }
      } else {
        kv.put(key, value);
      }
    }
  }

  /** xorshift64: cheap, and no state shared between the threads. */
  private static long next(long[] state) {
    long x = state[0];
    x ^= x << 13;
    x ^= x >>> 7;
    x ^= x << 17;
    state[0] = x;
    return x;
  }

  private static long arg(String[] args, int i, long fallback) {
    return args.length > i ? Long.parseLong(args[i]) : fallback;
  }
}
