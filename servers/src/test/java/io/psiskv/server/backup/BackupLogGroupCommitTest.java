package io.psiskv.server.backup;

import static com.google.common.truth.Truth.assertThat;

import io.psiskv.server.backup.BackupLogTestSupport.Model;
import io.psiskv.server.testkit.Poll;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Group commit: many writers share forces, and every acknowledged record is in the file. */
class BackupLogGroupCommitTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(30);

  @TempDir Path dir;

  private static byte[] valueOf(int key) {
    return ByteBuffer.allocate(12).putInt(key).putLong(key * 0x9E3779B97F4A7C15L).array();
  }

  @Test
  void concurrentWritersAllCompleteWithFewerSyncsThanWrites() throws Exception {
    int threads = 16;
    int perThread = 200;
    BackupLog.Stats stats;
    try (BackupLog log = BackupLog.open(dir, FsyncPolicy.ALWAYS, new Model(),
        BackupLog.OpenOptions.defaults())) {
      ExecutorService pool = Executors.newFixedThreadPool(threads);
      try {
        List<Future<?>> done = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
          int base = t * perThread;
          done.add(pool.submit(() -> {
            for (int i = 0; i < perThread; i++) {
              int key = base + i;
              log.awaitDurable(log.appendPut(key, valueOf(key), 1 + key / perThread, i + 1, 0));
            }
            return null;
          }));
        }
        for (Future<?> f : done) {
          f.get(TIMEOUT.toSeconds(), TimeUnit.SECONDS);
        }
      } finally {
        pool.shutdownNow();
      }
      stats = log.stats();
    }
    assertThat(stats.appends()).isEqualTo(threads * perThread);
    assertThat(stats.fileRecords()).isEqualTo(threads * perThread);
    // One force per batch in ALWAYS; a batch forms while the previous force runs.
    assertThat(stats.syncs()).isEqualTo(stats.batches());
    assertThat(stats.syncs()).isLessThan(stats.appends());
    Model m = BackupLogTestSupport.replay(dir);
    assertThat(m.map).hasSize(threads * perThread);
    for (int key = 0; key < threads * perThread; key++) {
      assertThat(m.map.get(key)).isEqualTo(valueOf(key));
    }
  }

  @Test
  void recordsAppendedDuringAForceShareTheNextForce() throws Exception {
    BackupLogTestChannel.Faults faults = new BackupLogTestChannel.Faults();
    BackupLog.OpenOptions opts = BackupLog.OpenOptions.defaults();
    opts.channelOpener = faults.opener();
    int followers = 10;
    try (BackupLog log = BackupLog.open(dir, FsyncPolicy.ALWAYS, new Model(), opts)) {
      int forcesBefore = faults.forcesEntered.get();
      faults.gated = true;
      ExecutorService pool = Executors.newFixedThreadPool(followers + 1);
      try {
        List<Future<?>> done = new ArrayList<>();
        done.add(pool.submit(() -> {
          log.awaitDurable(log.appendPut(0, valueOf(0), 1, 1, 0));
          return null;
        }));
        // The writer is now inside the first force, holding nothing the appenders need.
        Poll.require("the first force", TIMEOUT,
            () -> faults.forcesEntered.get() == forcesBefore + 1);
        for (int i = 1; i <= followers; i++) {
          int key = i;
          done.add(pool.submit(() -> {
            log.awaitDurable(log.appendPut(key, valueOf(key), 1, key + 1, 0));
            return null;
          }));
        }
        Poll.require("all appends", TIMEOUT, () -> log.stats().appends() == followers + 1);
        assertThat(log.stats().syncs()).isEqualTo(0);
        faults.gated = false;
        faults.gate.release();
        for (Future<?> f : done) {
          f.get(TIMEOUT.toSeconds(), TimeUnit.SECONDS);
        }
      } finally {
        pool.shutdownNow();
      }
      BackupLog.Stats s = log.stats();
      assertThat(s.appends()).isEqualTo(followers + 1);
      assertThat(s.batches()).isEqualTo(2);
      assertThat(s.syncs()).isEqualTo(2);
    }
    assertThat(BackupLogTestSupport.replay(dir).map).hasSize(followers + 1);
  }
}
