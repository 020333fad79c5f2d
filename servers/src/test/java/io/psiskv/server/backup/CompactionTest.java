package io.psiskv.server.backup;

import static com.google.common.truth.Truth.assertThat;
import static io.psiskv.server.backup.BackupLogTestSupport.hexMap;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.psiskv.server.backup.BackupLogTestSupport.Model;
import io.psiskv.server.store.Store;
import io.psiskv.server.testkit.Poll;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Compaction (PROTOCOL.md §11.5) in process; crashes during it are in BackupLogCrashTest. */
class CompactionTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(30);

  @TempDir Path dir;

  /** A miniature Data Server: striped map, append then apply under the stripe lock. */
  static final class Store implements BackupLog.LiveData {
    static final int STRIPES = 16;
    final Object[] locks = new Object[STRIPES];
    final List<Map<Integer, byte[]>> maps = new ArrayList<>();
    final Map<Long, long[]> sessions = new HashMap<>();
    BackupLog log;

    Store() {
      for (int i = 0; i < STRIPES; i++) {
        locks[i] = new Object();
        maps.add(new HashMap<>());
      }
    }

    void put(int key, byte[] value, long session, long request) throws IOException {
      int s = Math.floorMod(key, STRIPES);
      long seq;
      synchronized (locks[s]) {
        seq = log.appendPut(key, value, session, request, 0);
        maps.get(s).put(key, value);
        synchronized (sessions) {
          sessions.put(session, new long[] {request, 0});
        }
      }
      log.awaitDurable(seq);
    }

    void delete(int key, long session, long request) throws IOException {
      int s = Math.floorMod(key, STRIPES);
      long seq;
      synchronized (locks[s]) {
        seq = log.appendDelete(key, session, request, 0);
        maps.get(s).remove(key);
        synchronized (sessions) {
          sessions.put(session, new long[] {request, 0});
        }
      }
      log.awaitDurable(seq);
    }

    Map<Integer, byte[]> all() {
      Map<Integer, byte[]> all = new HashMap<>();
      for (int s = 0; s < STRIPES; s++) {
        synchronized (locks[s]) {
          all.putAll(maps.get(s));
        }
      }
      return all;
    }

    @Override
    public long keyCount() {
      return all().size();
    }

    @Override
    public long valueBytes() {
      return all().values().stream().mapToLong(v -> v.length).sum();
    }

    @Override
    public void forEach(BackupLog.SnapshotSink sink) throws IOException {
      for (int s = 0; s < STRIPES; s++) {
        synchronized (locks[s]) {
          for (Map.Entry<Integer, byte[]> e : maps.get(s).entrySet()) {
            sink.put(e.getKey(), e.getValue());
          }
        }
      }
      List<Map.Entry<Long, long[]>> copy;
      synchronized (sessions) {
        copy = new ArrayList<>(sessions.entrySet());
      }
      for (Map.Entry<Long, long[]> e : copy) {
        sink.session(e.getKey(), e.getValue()[0], (int) e.getValue()[1],
            LogFormat.encodeSessionValue(new byte[16], 0, 0, 0, 0));
      }
    }
  }

  private static byte[] value(int key, int version) {
    byte[] v = new byte[(key * 7 + version) % 200];
    for (int i = 0; i < v.length; i++) {
      v[i] = (byte) (key + version + i);
    }
    return v;
  }

  private Store openStore(BackupLog.OpenOptions opts) throws IOException {
    Store store = new Store();
    store.log = BackupLog.open(dir, FsyncPolicy.ALWAYS, new Model(), opts);
    return store;
  }

  @Test
  void compactedLogReplaysToTheSameStateAndSessionTable() throws IOException {
    Store store = openStore(BackupLog.OpenOptions.defaults());
    for (int i = 0; i < 2000; i++) {
      int key = i % 100;
      if (i % 13 == 0) {
        store.delete(key, 1 + i % 5, i + 1);
      } else {
        store.put(key, value(key, i), 1 + i % 5, i + 1);
      }
    }
    store.put(0xFFFFFFFF, new byte[0], 9, 1);
    long before = store.log.stats().fileBytes();
    store.log.compact(store);
    BackupLog.Stats s = store.log.stats();
    assertThat(s.compactions()).isEqualTo(1);
    assertThat(s.fileBytes()).isLessThan(before / 5);
    assertThat(s.fileBytes()).isEqualTo(Files.size(dir.resolve(BackupLog.FILE_NAME)));
    assertThat(s.fileRecords()).isEqualTo(store.keyCount() + 6); // + 6 sessions
    assertThat(Files.exists(dir.resolve(BackupLog.COMPACT_FILE_NAME))).isFalse();
    store.put(5, value(5, 99999), 3, 99999); // the writer appends to the new file
    store.delete(6, 3, 100000);
    store.log.close();
    Model m = BackupLogTestSupport.replay(dir);
    assertThat(m.hexMap()).containsExactlyEntriesIn(hexMap(store.all()));
    Map<Long, List<Long>> sessions = new HashMap<>();
    store.sessions.forEach((k, v) -> sessions.put(k, List.of(v[0], v[1])));
    assertThat(m.sessions).containsExactlyEntriesIn(sessions);
    // Snapshot PUTs belong to no session.
    assertThat(m.events.get(0)).endsWith(" 0 0 0");
  }

  @Test
  void writesDuringACompactionAreAllPresentAfterReopen() throws Exception {
    AtomicLong acked = new AtomicLong();
    BackupLog.OpenOptions opts = BackupLog.OpenOptions.defaults();
    // Hold the compaction at two steps until the writers have gone on for a while, so that some
    // records reach the new file by the catch-up rounds and some by the writer's switch.
    opts.crashPoint = name -> {
      if (name.equals("compact.after-snapshot") || name.equals("compact.before-switch")) {
        long target = acked.get() + 300;
        Poll.require("writes during " + name, TIMEOUT, () -> acked.get() >= target);
      }
    };
    Store store = openStore(opts);
    for (int i = 0; i < 500; i++) {
      store.put(i % 50, value(i % 50, i), 1, i + 1);
    }
    AtomicBoolean stop = new AtomicBoolean();
    ExecutorService pool = Executors.newFixedThreadPool(4);
    try {
      List<Future<?>> writers = new ArrayList<>();
      for (int t = 0; t < 4; t++) {
        int id = t;
        writers.add(pool.submit(() -> {
          long request = 0;
          for (int i = 0; !stop.get(); i++) {
            int key = 1000 * (id + 1) + i % 60;
            if (i % 11 == 5) {
              store.delete(key, 10 + id, ++request);
            } else {
              store.put(key, value(key, i), 10 + id, ++request);
            }
            acked.incrementAndGet();
          }
          return null;
        }));
      }
      store.log.compact(store);
      store.log.compact(store); // and a second one over the first one's file
      stop.set(true);
      for (Future<?> f : writers) {
        f.get(TIMEOUT.toSeconds(), TimeUnit.SECONDS);
      }
    } finally {
      stop.set(true);
      pool.shutdownNow();
    }
    assertThat(store.log.stats().compactions()).isEqualTo(2);
    store.log.close();
    assertThat(BackupLogTestSupport.replay(dir).hexMap())
        .containsExactlyEntriesIn(hexMap(store.all()));
  }

  @Test
  void maybeCompactStartsOnlyWhenTheLogOutgrowsTheLiveData() throws IOException {
    BackupLog.OpenOptions opts = BackupLog.OpenOptions.defaults();
    opts.compactMinFileBytes = 64 * 1024;
    Store store = openStore(opts);
    for (int i = 0; i < 100; i++) {
      store.put(i, value(i, 1), 1, i + 1);
    }
    assertThat(store.log.maybeCompact(store)).isFalse(); // under the minimum size
    for (int i = 0; i < 2000; i++) {
      store.put(7, value(7, i), 1, 1000 + i);
    }
    assertThat(store.log.stats().fileBytes()).isAtLeast(opts.compactMinFileBytes);
    assertThat(store.log.maybeCompact(store)).isTrue();
    Poll.require("the background compaction", TIMEOUT, () -> store.log.stats().compactions() == 1);
    assertThat(store.log.maybeCompact(store)).isFalse(); // small again
    store.log.close();
    assertThat(BackupLogTestSupport.replay(dir).hexMap())
        .containsExactlyEntriesIn(hexMap(store.all()));
  }

  @Test
  void failedCompactionLeavesTheLogAsItWas() throws IOException {
    BackupLogTestChannel.Faults faults = new BackupLogTestChannel.Faults();
    faults.onlySuffix = ".compact";
    BackupLog.OpenOptions opts = BackupLog.OpenOptions.defaults();
    opts.channelOpener = faults.opener();
    Store store = openStore(opts);
    for (int i = 0; i < 300; i++) {
      store.put(i % 30, value(i % 30, i), 1, i + 1);
    }
    faults.failWrites = true;
    IOException e = assertThrows(IOException.class, () -> store.log.compact(store));
    assertThat(e).hasMessageThat().contains("injected write failure");
    assertThat(Files.exists(dir.resolve(BackupLog.COMPACT_FILE_NAME))).isFalse();
    assertThat(store.log.stats().failed()).isFalse();
    store.put(1, value(1, 5000), 1, 5000);
    faults.failWrites = false;
    store.log.compact(store); // and a later one works
    store.log.close();
    assertThat(BackupLogTestSupport.replay(dir).hexMap())
        .containsExactlyEntriesIn(hexMap(store.all()));
  }

  @Test
  void closeAbortsARunningCompaction() throws Exception {
    CountDownLatch paused = new CountDownLatch(1);
    CountDownLatch resume = new CountDownLatch(1);
    BackupLog.OpenOptions opts = BackupLog.OpenOptions.defaults();
    opts.crashPoint = name -> {
      if (name.equals("compact.after-snapshot")) {
        paused.countDown();
        try {
          resume.await();
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      }
    };
    Store store = openStore(opts);
    for (int i = 0; i < 100; i++) {
      store.put(i, value(i, 1), 1, i + 1);
    }
    ExecutorService pool = Executors.newSingleThreadExecutor();
    try {
      Future<?> compaction = pool.submit(() -> {
        store.log.compact(store);
        return null;
      });
      assertThat(paused.await(TIMEOUT.toSeconds(), TimeUnit.SECONDS)).isTrue();
      store.log.close();
      resume.countDown();
      java.util.concurrent.ExecutionException e = assertThrows(
          java.util.concurrent.ExecutionException.class,
          () -> compaction.get(TIMEOUT.toSeconds(), TimeUnit.SECONDS));
      assertThat(e).hasCauseThat().hasMessageThat().contains("aborted");
    } finally {
      resume.countDown();
      pool.shutdownNow();
    }
    assertThat(Files.exists(dir.resolve(BackupLog.COMPACT_FILE_NAME))).isFalse();
    assertThat(BackupLogTestSupport.replay(dir).hexMap())
        .containsExactlyEntriesIn(hexMap(store.all()));
  }

  @Test
  void secondConcurrentCompactionIsRefused() throws Exception {
    CountDownLatch paused = new CountDownLatch(1);
    CountDownLatch resume = new CountDownLatch(1);
    BackupLog.OpenOptions opts = BackupLog.OpenOptions.defaults();
    opts.crashPoint = name -> {
      if (name.equals("compact.after-snapshot")) {
        paused.countDown();
        try {
          resume.await();
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      }
    };
    Store store = openStore(opts);
    store.put(1, value(1, 1), 1, 1);
    ExecutorService pool = Executors.newSingleThreadExecutor();
    try {
      Future<?> first = pool.submit(() -> {
        store.log.compact(store);
        return null;
      });
      assertThat(paused.await(TIMEOUT.toSeconds(), TimeUnit.SECONDS)).isTrue();
      IOException e = assertThrows(IOException.class, () -> store.log.compact(store));
      assertThat(e).hasMessageThat().contains("already running");
      resume.countDown();
      first.get(TIMEOUT.toSeconds(), TimeUnit.SECONDS);
    } finally {
      resume.countDown();
      pool.shutdownNow();
    }
    assertThat(store.log.stats().compactions()).isEqualTo(1);
    store.log.close();
  }
}
