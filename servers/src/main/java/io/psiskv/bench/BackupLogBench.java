package io.psiskv.bench;

import io.psiskv.server.backup.BackupLog;
import io.psiskv.server.backup.FsyncPolicy;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Measures the backup log on this machine's disk. Not a test: {@code build-scripts/psiskv-bench-log
 * [scratch-dir]} runs it from psiskv-server.jar; its figures are in DESIGN.md §11.
 *
 * Prints: raw fsync latency (write 100 bytes + force), single-writer durable append latency,
 * group-commit throughput with 1, 16 and 64 writer threads (writes/s and syncs/s), and the time
 * to reload a log of 1,000,000 keys with 100-byte values into a HashMap, and to compact it.
 */
final class BackupLogBench {
  static final int FSYNC_ROUNDS = 1000;
  static final int LATENCY_ROUNDS = 2000;
  static final long THROUGHPUT_MILLIS = 3000;
  static final int RELOAD_KEYS = 1_000_000;
  static final int VALUE_BYTES = 100;

  private BackupLogBench() {}

  public static void main(String[] args) throws Exception {
    Path root = args.length > 0 ? Path.of(args[0]) : Files.createTempDirectory("psiskv-bench");
    Files.createDirectories(root);
    System.out.printf("scratch directory: %s%n", root.toAbsolutePath());
    System.out.printf("java %s, %d cpus%n", System.getProperty("java.version"),
        Runtime.getRuntime().availableProcessors());
    rawFsync(root.resolve("raw-fsync"), false);
    rawFsync(root.resolve("raw-fsync-meta"), true);
    durableLatency(root.resolve("latency"));
    for (int threads : new int[] {1, 16, 64}) {
      throughput(root.resolve("throughput-" + threads), threads);
    }
    reload(root.resolve("reload"));
    compaction(root.resolve("reload"));
  }

  private static void rawFsync(Path file, boolean metaData) throws IOException {
    Files.deleteIfExists(file);
    long[] nanos = new long[FSYNC_ROUNDS];
    ByteBuffer b = ByteBuffer.allocate(100);
    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE_NEW,
        StandardOpenOption.WRITE)) {
      long pos = 0;
      for (int i = 0; i < FSYNC_ROUNDS; i++) {
        long t0 = System.nanoTime();
        b.clear();
        pos += ch.write(b, pos);
        ch.force(metaData);
        nanos[i] = System.nanoTime() - t0;
      }
    }
    Files.delete(file);
    System.out.printf("raw append 100 B + force(%s): %s%n", metaData, percentiles(nanos));
  }

  private static void durableLatency(Path dir) throws IOException {
    long[] nanos = new long[LATENCY_ROUNDS];
    byte[] value = new byte[VALUE_BYTES];
    try (BackupLog log = BackupLog.open(dir, FsyncPolicy.ALWAYS, new NullReplay(),
        BackupLog.OpenOptions.defaults())) {
      for (int i = 0; i < LATENCY_ROUNDS; i++) {
        long t0 = System.nanoTime();
        log.awaitDurable(log.appendPut(i, value, 1, i + 1, 0));
        nanos[i] = System.nanoTime() - t0;
      }
    }
    System.out.printf("single writer, ALWAYS, append 100 B + awaitDurable: %s%n",
        percentiles(nanos));
  }

  private static void throughput(Path dir, int threads) throws Exception {
    byte[] value = new byte[VALUE_BYTES];
    try (BackupLog log = BackupLog.open(dir, FsyncPolicy.ALWAYS, new NullReplay(),
        BackupLog.OpenOptions.defaults())) {
      AtomicBoolean stop = new AtomicBoolean();
      AtomicLong writes = new AtomicLong();
      CountDownLatch done = new CountDownLatch(threads);
      List<Thread> ts = new ArrayList<>();
      for (int t = 0; t < threads; t++) {
        int id = t;
        Thread th = new Thread(() -> {
          try {
            for (int i = 0; !stop.get(); i++) {
              log.awaitDurable(log.appendPut(id * 10_000_000 + i, value, id + 1, i + 1, 0));
              writes.incrementAndGet();
            }
          } catch (IOException e) {
            e.printStackTrace();
          } finally {
            done.countDown();
          }
        });
        ts.add(th);
      }
      BackupLog.Stats s0 = log.stats();
      long t0 = System.nanoTime();
      ts.forEach(Thread::start);
      Thread.sleep(THROUGHPUT_MILLIS); // the measured interval, not synchronisation
      stop.set(true);
      done.await(60, TimeUnit.SECONDS);
      double secs = (System.nanoTime() - t0) / 1e9;
      BackupLog.Stats s1 = log.stats();
      long syncs = s1.syncs() - s0.syncs();
      System.out.printf("group commit, ALWAYS, %2d writers: %8.0f writes/s, %6.0f syncs/s, "
          + "%.1f writes per sync%n", threads, writes.get() / secs, syncs / secs,
          (double) writes.get() / Math.max(1, syncs));
    }
  }

  private static void reload(Path dir) throws IOException {
    byte[] value = new byte[VALUE_BYTES];
    try (BackupLog log = BackupLog.open(dir, FsyncPolicy.NO, new NullReplay(),
        BackupLog.OpenOptions.defaults())) {
      long seq = 0;
      for (int k = 0; k < RELOAD_KEYS; k++) {
        value[0] = (byte) k;
        seq = log.appendPut(k, value.clone(), 0, 0, 0);
        if ((k & 1023) == 0) {
          log.awaitDurable(seq); // keeps the pending batch bounded
        }
      }
      log.awaitDurable(seq);
    }
    long size = Files.size(dir.resolve(BackupLog.FILE_NAME));
    for (int run = 1; run <= 3; run++) {
      Map<Integer, byte[]> map = new HashMap<>(2 * RELOAD_KEYS);
      long t0 = System.nanoTime();
      try (BackupLog log = BackupLog.open(dir, FsyncPolicy.ALWAYS, new BackupLog.Replay() {
        @Override
        public void put(int key, byte[] v, long session, long requestId, int result) {
          map.put(key, v);
        }

        @Override
        public void delete(int key, long session, long requestId, int result) {
          map.remove(key);
        }

        @Override
        public void session(long session, long requestId, int result, byte[] info) {}
      }, BackupLog.OpenOptions.defaults())) {
        long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
        System.out.printf("reload run %d: %d keys of %d B, file %d bytes (%.1f MiB): %d ms "
            + "(open + replay into a HashMap)%n", run, map.size(), VALUE_BYTES, size,
            size / 1048576.0, ms);
      }
    }
  }

  /** Compaction of the reload log (1,000,000 live keys, no garbage): the cost of a rewrite. */
  private static void compaction(Path dir) throws IOException {
    Map<Integer, byte[]> map = new HashMap<>(2 * RELOAD_KEYS);
    try (BackupLog log = BackupLog.open(dir, FsyncPolicy.ALWAYS, new BackupLog.Replay() {
      @Override
      public void put(int key, byte[] v, long session, long requestId, int result) {
        map.put(key, v);
      }

      @Override
      public void delete(int key, long session, long requestId, int result) {
        map.remove(key);
      }

      @Override
      public void session(long session, long requestId, int result, byte[] info) {}
    }, BackupLog.OpenOptions.defaults())) {
      long t0 = System.nanoTime();
      log.compact(new BackupLog.LiveData() {
        @Override
        public long keyCount() {
          return map.size();
        }

        @Override
        public long valueBytes() {
          return (long) map.size() * VALUE_BYTES;
        }

        @Override
        public void forEach(BackupLog.SnapshotSink sink) throws IOException {
          for (Map.Entry<Integer, byte[]> e : map.entrySet()) {
            sink.put(e.getKey(), e.getValue());
          }
        }
      });
      long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
      System.out.printf("compaction of %d live keys: %d ms, new file %d bytes%n", map.size(), ms,
          log.stats().fileBytes());
    }
  }

  private static String percentiles(long[] nanos) {
    long[] s = nanos.clone();
    Arrays.sort(s);
    return String.format("median %.3f ms, p99 %.3f ms, max %.3f ms (n=%d)",
        s[s.length / 2] / 1e6, s[(int) (s.length * 0.99)] / 1e6, s[s.length - 1] / 1e6,
        s.length);
  }

  private static final class NullReplay implements BackupLog.Replay {
    @Override
    public void put(int key, byte[] value, long session, long requestId, int result) {}

    @Override
    public void delete(int key, long session, long requestId, int result) {}

    @Override
    public void session(long session, long requestId, int result, byte[] info) {}
  }
}
