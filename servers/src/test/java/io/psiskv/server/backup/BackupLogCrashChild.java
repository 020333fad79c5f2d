package io.psiskv.server.backup;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A child process for the crash tests: a miniature Data Server (striped map, append then apply
 * inside the stripe lock, awaitDurable outside it) whose writer threads print one line per
 * acknowledged write, after awaitDurable returned:
 *
 * <pre>
 *   P key version     overwrite key (owned by one thread) now holds valueFor(key, version)
 *   U key             unique key written with valueFor(key, 0)
 *   D key             that unique key deleted
 *   COMPACTED n       the n-th compaction finished
 *   HALT point        about to halt at a compaction crash point
 * </pre>
 *
 * Usage: {@code BackupLogCrashChild <dir> write|compact <threads>}; with {@code
 * -Dpsiskv.test.haltAt=<point>} the process halts (status {@link #HALT_STATUS}, no shutdown
 * hooks, like a crash) when a compaction reaches that point. It runs until killed.
 */
final class BackupLogCrashChild {
  static final int HALT_STATUS = 86;
  static final int STRIPES = 64;
  static final int KEYS_PER_THREAD = 50;
  static final int UNIQUE_KEY_BASE = 1_000_000;
  /** Compactions start once this many writes were acknowledged (so there is data to rewrite). */
  static final int ACKS_BEFORE_COMPACTING = 300;

  private BackupLogCrashChild() {}

  /** The value of an overwrite key at a version: exact bytes the parent can recompute. */
  static byte[] valueFor(int key, int version) {
    int length = 8 + ((key * 31 + version * 17) & 0xFF);
    ByteBuffer b = ByteBuffer.allocate(length).putInt(key).putInt(version);
    for (int i = 8; i < length; i++) {
      b.put((byte) (key ^ version * 7 ^ i * 13));
    }
    return b.array();
  }

  static int versionOf(byte[] value) {
    return ByteBuffer.wrap(value).getInt(4);
  }

  private final Object[] locks = new Object[STRIPES];
  @SuppressWarnings({"unchecked", "rawtypes"})
  private final Map<Integer, byte[]>[] maps = new Map[STRIPES];
  private final Map<Long, long[]> sessions = new ConcurrentHashMap<>();
  private final AtomicLong acks = new AtomicLong();
  private BackupLog log;

  private BackupLogCrashChild init() {
    for (int i = 0; i < STRIPES; i++) {
      locks[i] = new Object();
      maps[i] = new HashMap<>();
    }
    return this;
  }

  private int stripe(int key) {
    return Math.floorMod(key, STRIPES);
  }

  private void put(int key, byte[] value, long session, long request) throws IOException {
    int s = stripe(key);
    long seq;
    synchronized (locks[s]) {
      seq = log.appendPut(key, value, session, request, 0);
      maps[s].put(key, value);
      sessions.put(session, new long[] {request, 0});
    }
    log.awaitDurable(seq);
  }

  private void delete(int key, long session, long request) throws IOException {
    int s = stripe(key);
    long seq;
    synchronized (locks[s]) {
      seq = log.appendDelete(key, session, request, 0);
      maps[s].remove(key);
      sessions.put(session, new long[] {request, 0});
    }
    log.awaitDurable(seq);
  }

  private void writer(int t) {
    int[] versions = new int[KEYS_PER_THREAD];
    long session = t + 1;
    long request = 0;
    try {
      for (int i = 0; ; i++) {
        if (i % 10 == 9) {
          int key = UNIQUE_KEY_BASE + t * 100_000 + i / 10;
          put(key, valueFor(key, 0), session, ++request);
          ack("U " + key);
          delete(key, session, ++request);
          ack("D " + key);
        } else {
          int slot = i % KEYS_PER_THREAD;
          int key = t * 1000 + slot;
          int v = ++versions[slot];
          put(key, valueFor(key, v), session, ++request);
          ack("P " + key + " " + v);
        }
      }
    } catch (IOException e) {
      System.err.println("writer " + t + " stops: " + e);
    }
  }

  private void ack(String line) {
    System.out.println(line); // autoflush: printed only after awaitDurable returned
    acks.incrementAndGet();
  }

  private final BackupLog.LiveData live = new BackupLog.LiveData() {
    @Override
    public long keyCount() {
      long n = 0;
      for (int s = 0; s < STRIPES; s++) {
        synchronized (locks[s]) {
          n += maps[s].size();
        }
      }
      return n;
    }

    @Override
    public long valueBytes() {
      return 0;
    }

    @Override
    public void forEach(BackupLog.SnapshotSink sink) throws IOException {
      for (int s = 0; s < STRIPES; s++) {
        synchronized (locks[s]) {
          for (Map.Entry<Integer, byte[]> e : maps[s].entrySet()) {
            sink.put(e.getKey(), e.getValue());
          }
        }
      }
      for (Map.Entry<Long, long[]> e : sessions.entrySet()) {
        sink.session(e.getKey(), e.getValue()[0], (int) e.getValue()[1], LogFormat.encodeSessionValue(new byte[16], 0, 0, 0, 0));
      }
    }
  };

  public static void main(String[] args) throws Exception {
    new BackupLogCrashChild().init().run(Path.of(args[0]), args[1], Integer.parseInt(args[2]));
  }

  private void run(Path dir, String mode, int threads) throws Exception {
    String haltAt = System.getProperty("psiskv.test.haltAt", "");
    BackupLog.OpenOptions opts = BackupLog.OpenOptions.defaults();
    opts.crashPoint = name -> {
      if (name.equals(haltAt)) {
        System.out.println("HALT " + name);
        Runtime.getRuntime().halt(HALT_STATUS);
      }
    };
    log = BackupLog.open(dir, FsyncPolicy.ALWAYS, new BackupLog.Replay() {
      @Override
      public void put(int key, byte[] value, long session, long requestId, int result) {
        maps[stripe(key)].put(key, value);
      }

      @Override
      public void delete(int key, long session, long requestId, int result) {
        maps[stripe(key)].remove(key);
      }

      @Override
      public void session(long session, long requestId, int result, byte[] info) {}
    }, opts);
    List<Thread> writers = new ArrayList<>();
    for (int t = 0; t < threads; t++) {
      int id = t;
      Thread w = new Thread(() -> writer(id), "writer-" + t);
      w.start();
      writers.add(w);
    }
    if (mode.equals("compact")) {
      while (acks.get() < ACKS_BEFORE_COMPACTING) {
        Thread.sleep(1); // pacing only: the condition above decides
      }
      for (int n = 1; ; n++) {
        log.compact(live);
        System.out.println("COMPACTED " + n);
      }
    }
    for (Thread w : writers) {
      w.join();
    }
  }
}
