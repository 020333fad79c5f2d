package io.psiskv.server.backup;

import static com.google.common.truth.Truth.assertThat;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.psiskv.server.backup.BackupLogTestSupport.Model;
import io.psiskv.server.testkit.Poll;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Disk failures injected through {@link BackupLogTestChannel}: waiters of records that did not
 * reach the disk get an exception (never OK), appends are refused while failed, and the retry
 * rewrites the retained records exactly once when the disk works again.
 */
class BackupLogFailureTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(30);

  @TempDir Path dir;
  final BackupLogTestChannel.Faults faults = new BackupLogTestChannel.Faults();

  private BackupLog open(FsyncPolicy policy) throws IOException {
    BackupLog.OpenOptions opts = BackupLog.OpenOptions.defaults();
    opts.channelOpener = faults.opener();
    opts.failureRetryIntervalMillis = 10;
    return BackupLog.open(dir, policy, new Model(), opts);
  }

  private static byte[] v(int i) {
    return new byte[] {(byte) i, (byte) (i >> 8), 42};
  }

  @Test
  void failedWriteFailsItsWaiterRefusesAppendsAndIsRewrittenAfterRecovery() throws IOException {
    Path file = dir.resolve(BackupLog.FILE_NAME);
    try (BackupLog log = open(FsyncPolicy.ALWAYS)) {
      log.awaitDurable(log.appendPut(1, v(1), 7, 1, 0));
      long good = Files.size(file);
      faults.failWrites = true;
      faults.writeBytesBeforeFailure = 5; // a full disk takes part of the write
      long b = log.appendPut(2, v(2), 7, 2, 0);
      IOException e = assertThrows(IOException.class, () -> log.awaitDurable(b));
      assertThat(e).hasMessageThat().contains("did not reach the disk");
      assertThat(log.stats().failed()).isTrue();
      IOException refused =
          assertThrows(IOException.class, () -> log.appendPut(3, v(3), 7, 3, 0));
      assertThat(refused).hasMessageThat().contains("refuses writes");
      assertThrows(IOException.class, log::checkWritable);
      assertThat(Files.size(file)).isEqualTo(good + 5);

      faults.failWrites = false;
      Poll.require("recovery", TIMEOUT, () -> !log.stats().failed());
      log.awaitDurable(b); // the errored write did reach the disk in the end
      log.checkWritable();
      log.awaitDurable(log.appendPut(3, v(3), 7, 3, 0));
    }
    Model m = BackupLogTestSupport.replay(dir);
    assertThat(m.events).hasSize(3); // the retry rewrote record 2 once, over the partial write
    assertThat(m.map.keySet()).containsExactly(1, 2, 3);
  }

  @Test
  void failedForceIsRetriedWithoutDuplicatingTheWrittenRecord() throws IOException {
    try (BackupLog log = open(FsyncPolicy.ALWAYS)) {
      log.awaitDurable(log.appendPut(1, v(1), 7, 1, 0));
      faults.failForce = true;
      long b = log.appendPut(2, v(2), 7, 2, 0);
      assertThrows(IOException.class, () -> log.awaitDurable(b));
      assertThat(log.stats().failed()).isTrue();
      faults.failForce = false;
      Poll.require("recovery", TIMEOUT, () -> !log.stats().failed());
      log.awaitDurable(b);
      assertThat(log.stats().fileRecords()).isEqualTo(2);
    }
    Model m = BackupLogTestSupport.replay(dir);
    assertThat(m.events).hasSize(2);
    assertThat(m.map.keySet()).containsExactly(1, 2);
  }

  @Test
  void recordsAppendedWhileTheFailingForceRanAreRetainedToo() throws Exception {
    ExecutorService pool = Executors.newFixedThreadPool(2);
    try (BackupLog log = open(FsyncPolicy.ALWAYS)) {
      log.awaitDurable(log.appendPut(1, v(1), 7, 1, 0));
      int before = faults.forcesEntered.get();
      faults.gated = true;
      long b = log.appendPut(2, v(2), 7, 2, 0);
      Future<?> waitB = pool.submit(() -> {
        log.awaitDurable(b);
        return null;
      });
      Poll.require("the force of record 2", TIMEOUT,
          () -> faults.forcesEntered.get() == before + 1);
      long c = log.appendPut(3, v(3), 7, 3, 0); // pending while the force runs
      Future<?> waitC = pool.submit(() -> {
        log.awaitDurable(c);
        return null;
      });
      faults.failForce = true;
      faults.gated = false;
      faults.gate.release();
      for (Future<?> f : List.of(waitB, waitC)) {
        java.util.concurrent.ExecutionException e = assertThrows(
            java.util.concurrent.ExecutionException.class,
            () -> f.get(TIMEOUT.toSeconds(), TimeUnit.SECONDS));
        assertThat(e).hasCauseThat().isInstanceOf(IOException.class);
      }
      faults.failForce = false;
      Poll.require("recovery", TIMEOUT, () -> !log.stats().failed());
      log.awaitDurable(c);
    } finally {
      pool.shutdownNow();
    }
    assertThat(BackupLogTestSupport.replay(dir).map.keySet()).containsExactly(1, 2, 3);
  }

  @Test
  void persistentFailureThenCloseLosesOnlyTheErroredWrite() throws IOException {
    BackupLog log = open(FsyncPolicy.ALWAYS);
    log.awaitDurable(log.appendPut(1, v(1), 7, 1, 0));
    faults.failWrites = true;
    faults.writeBytesBeforeFailure = 7;
    long b = log.appendPut(2, v(2), 7, 2, 0);
    assertThrows(IOException.class, () -> log.awaitDurable(b));
    IOException e = assertThrows(IOException.class, log::close);
    assertThat(e).hasMessageThat().contains("closed with an error");
    assertThrows(IOException.class, () -> log.awaitDurable(b));
    // The partial write is a torn tail: truncated at the next open.
    Model m = BackupLogTestSupport.replay(dir);
    assertThat(m.map.keySet()).containsExactly(1);
    assertThat(Files.size(dir.resolve(BackupLog.FILE_NAME)))
        .isEqualTo(LogFormat.HEADER_BYTES + LogFormat.RECORD_FIXED_BYTES + 3);
  }

  @Test
  void everysecPeriodicForceFailureRefusesAppendsUntilItWorks() throws IOException {
    try (BackupLog log = open(FsyncPolicy.EVERYSEC)) {
      faults.failForce = true;
      // Acknowledged once written: EVERYSEC promises no more.
      log.awaitDurable(log.appendPut(1, v(1), 7, 1, 0));
      Poll.require("the periodic force to fail", TIMEOUT, () -> log.stats().failed());
      assertThrows(IOException.class, () -> log.appendPut(2, v(2), 7, 2, 0));
      faults.failForce = false;
      Poll.require("recovery", TIMEOUT, () -> !log.stats().failed());
      log.awaitDurable(log.appendPut(2, v(2), 7, 2, 0));
    }
    assertThat(BackupLogTestSupport.replay(dir).map.keySet()).containsExactly(1, 2);
  }
}
