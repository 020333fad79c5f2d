package io.psiskv.server.backup;

import static io.psiskv.server.backup.LogFormat.HEADER_BYTES;
import static io.psiskv.server.backup.LogFormat.RECORD_FIXED_BYTES;

import io.psiskv.server.ServerLog;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Runs the backup log's compactions (PROTOCOL.md §11.5), at most one at a time: the trigger
 * ({@link #maybeCompact}, on a {@code psiskv-log-compactor} thread), the operator's or the
 * upgrade's {@link #compact} in the caller's thread, and the steps of one compaction from the
 * snapshot to the switch. One {@link Compactor} holds each compaction's file; {@link LogWriter}
 * makes the switch under its {@code fileLock}.
 */
final class CompactionDriver {
  /** Compaction trigger: compact when the file is more than this many times the live data. */
  static final int COMPACT_GROWTH_FACTOR = 2;
  /** Compaction: copy the rewrite buffer in rounds until a round copies less than this. */
  static final long COMPACT_CATCHUP_BYTES = 1L << 20;
  /** Compaction: at most this many catch-up rounds before the switch. */
  static final int COMPACT_CATCHUP_ROUNDS = 8;

  private final Path logPath;
  private final Path compactPath;
  private final BackupLog.OpenOptions opts;
  private final AppendBuffer buffer;
  private final LogWriter writer;
  /** Set while a compaction runs: the one-at-a-time rule. */
  private final AtomicBoolean compactorBusy = new AtomicBoolean();

  CompactionDriver(Path dir, BackupLog.OpenOptions opts, AppendBuffer buffer, LogWriter writer) {
    this.logPath = dir.resolve(BackupLog.FILE_NAME);
    this.compactPath = dir.resolve(BackupLog.COMPACT_FILE_NAME);
    this.opts = opts;
    this.buffer = buffer;
    this.writer = writer;
  }

  /** See {@link BackupLog#maybeCompact}. */
  boolean maybeCompact(BackupLog.LiveData live) {
    long size = writer.fileBytes();
    if (size < opts.compactMinFileBytes || buffer.failure() != null || buffer.isClosing()) {
      return false;
    }
    long liveBytes = HEADER_BYTES + live.keyCount() * RECORD_FIXED_BYTES + live.valueBytes();
    if (size <= COMPACT_GROWTH_FACTOR * liveBytes) {
      return false;
    }
    if (!compactorBusy.compareAndSet(false, true)) {
      return false;
    }
    Thread t = new Thread(() -> {
      try {
        compactOwned(live);
      } catch (IOException | RuntimeException e) {
        ServerLog.warn("background compaction of " + logPath + " failed: " + ServerLog.describe(e));
      } finally {
        compactorBusy.set(false);
      }
    }, "psiskv-log-compactor");
    t.setDaemon(true);
    t.start();
    return true;
  }

  /** See {@link BackupLog#compact}. */
  void compact(BackupLog.LiveData live) throws IOException {
    if (!compactorBusy.compareAndSet(false, true)) {
      throw new IOException("a compaction of " + logPath + " is already running");
    }
    try {
      compactOwned(live);
    } finally {
      compactorBusy.set(false);
    }
  }

  /**
   * The compaction scheme (Redis AOF rewrite), PROTOCOL.md §11.5.
   *
   * <p>Why the result is exact: at start every later batch a commit takes is also kept in the
   * rewrite buffer, so the new file holds a snapshot taken after the start followed by (at least)
   * every record appended after the start, in log order. Take a key k. If some record for k was
   * appended after the start, replay ends with the last of them, which is k's current state,
   * whatever the snapshot held. If none was, k did not change after the start, and the snapshot
   * read k after the start (under k's stripe lock, which orders it with k's appends), so it holds
   * k's current state. Records from just before the start that the buffer may also hold are
   * older than every later record for their key, and replay is ordered and idempotent, so they
   * change nothing. The same argument holds for each session's table entry.
   */
  private void compactOwned(BackupLog.LiveData live) throws IOException {
    Compactor c = new Compactor(compactPath, opts.channelOpener);
    long t0 = System.nanoTime();
    long before = writer.fileBytes();
    try {
      buffer.attachCompaction(c);
      c.create(System.currentTimeMillis());
      c.writeSnapshot(live);
      opts.crashPoint.accept("compact.after-snapshot");
      for (int round = 0; round < COMPACT_CATCHUP_ROUNDS; round++) {
        List<AppendBuffer.Batch> batches;
        buffer.appendLock.lock();
        try {
          batches = c.doTakeRewrite();
        } finally {
          buffer.appendLock.unlock();
        }
        if (c.writeBatches(batches) < COMPACT_CATCHUP_BYTES) {
          break;
        }
      }
      c.force();
      opts.crashPoint.accept("compact.before-switch");
      writer.switchTo(c);
      writer.committed();
    } catch (IOException | RuntimeException | Error e) {
      buffer.detachCompaction(c);
      c.discard();
      writer.committed();
      throw e;
    }
    ServerLog.info(String.format("compacted %s: %d -> %d bytes, %d records, in %d ms", logPath,
        before, c.position(), c.records(),
        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0)));
  }
}
