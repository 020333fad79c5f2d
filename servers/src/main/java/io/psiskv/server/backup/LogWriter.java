package io.psiskv.server.backup;

import io.psiskv.server.ServerLog;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The backup log's committer: the file channel and its position, the group commit, the failed
 * state's retained records and their rewrite, the switch to a compacted file, and the final force
 * at close. Whichever thread holds {@link #fileLock} is the committer (a serving thread, the
 * {@link SyncThread}, the compactor at the switch, the closing thread); it takes the pending batch
 * under the buffer's {@code appendLock}, then writes and forces with only {@code fileLock} held,
 * so appends go on during the force and form the next batch. It publishes the durable sequence
 * and the counters (volatile) and wakes the waiters ({@link #committed}).
 *
 * <p>Naming: a {@code do*} method expects {@code fileLock} held by its caller. Lock order: {@code
 * fileLock}, then {@code appendLock}, then {@code durableLock}.
 */
final class LogWriter {
  /**
   * Held by the committer. Guards the channel, the file position and the failure-recovery state
   * below.
   */
  final ReentrantLock fileLock = new ReentrantLock();

  private final Path dir;
  private final Path logPath;
  private final Path compactPath;
  private final FsyncPolicy policy;
  private final BackupLog.OpenOptions opts;
  private final AppendBuffer buffer;
  private final SyncThread syncThread;

  // ---- Guarded by fileLock: the committer's state.
  private FileChannel channel;
  private long filePos;
  private boolean dirty;
  /** EVERYSEC and NO: records written since the last commit force. */
  private long unsyncedRecords;
  /** Failed state: batches not durable, to be rewritten from {@code retainFilePos}. */
  private final ArrayList<AppendBuffer.Batch> retained = new ArrayList<>();
  private long retainFilePos;
  private boolean channelClosed;
  private IOException closeError;

  // ---- Published by the committer.
  /** Records up to this sequence are as durable as the policy promises. */
  private volatile long durableSeq;
  private volatile boolean closed;
  private volatile long fileBytes;
  private volatile long fileRecords;
  private volatile long batches;
  private volatile long syncs;
  private volatile long lastSyncMillis;
  private volatile long compactions;
  private volatile long commitSyncRecords;
  /** Durations of the commit forces (ALWAYS batches, EVERYSEC periodic), for STATS. */
  private final LatencyHistogram commitSyncLatency = new LatencyHistogram();
  /** See {@link BackupLog#isOlderFormat}. */
  private volatile boolean olderFormat;

  private final ReentrantLock durableLock = new ReentrantLock();
  /** Signalled after every commit, failure and close: blocking waiters re-check. */
  private final Condition durableChanged = durableLock.newCondition();
  private final List<Runnable> commitListeners = new CopyOnWriteArrayList<>();

  LogWriter(Path dir, FsyncPolicy policy, BackupLog.OpenOptions opts, AppendBuffer buffer,
      LogRecovery.Recovered file) {
    this.dir = dir;
    this.logPath = dir.resolve(BackupLog.FILE_NAME);
    this.compactPath = dir.resolve(BackupLog.COMPACT_FILE_NAME);
    this.policy = policy;
    this.opts = opts;
    this.buffer = buffer;
    this.channel = file.channel();
    this.filePos = file.fileBytes();
    this.fileBytes = file.fileBytes();
    this.fileRecords = file.records();
    this.olderFormat = file.olderFormat();
    this.syncThread = new SyncThread(this, buffer, policy, opts.failureRetryIntervalMillis);
  }

  SyncThread syncThread() {
    return syncThread;
  }

  // ----------------------------------------------------------------------------------------------
  // The group commit.

  /** See {@link BackupLog#commit}. */
  boolean commit(boolean wait) {
    if (wait) {
      fileLock.lock();
    } else if (!fileLock.tryLock()) {
      return false;
    }
    try {
      doCommit();
    } finally {
      fileLock.unlock();
    }
    committed();
    return true;
  }

  /** Writes (and forces) what is pending, unless failed or closed. */
  void doCommit() {
    AppendBuffer.Batch batch = buffer.takeForCommit(channelClosed);
    if (batch != null) {
      doWriteBatch(batch);
    }
  }

  /**
   * Writes one batch at the end of the file and forces it (ALWAYS): the durability promise of
   * each {@link FsyncPolicy}, kept as {@link BackupLog#commit} states it.
   */
  private void doWriteBatch(AppendBuffer.Batch b) {
    long start = filePos;
    try {
      long end = LogFiles.writeParts(channel, b.parts, start);
      filePos = end;
      if (policy == FsyncPolicy.ALWAYS) {
        long t0 = System.nanoTime();
        channel.force(false);
        doNoteCommitSync(t0, b.records);
      } else {
        dirty = true;
        unsyncedRecords += b.records;
      }
    } catch (IOException e) {
      filePos = start;
      doEnterFailed(e, b, start);
      return;
    }
    fileBytes = filePos;
    fileRecords += b.records;
    batches++;
    durableSeq = b.endSeq;
  }

  /** See {@link BackupLog#isDurable}. */
  boolean isDurable(long seq) {
    return durableSeq >= seq;
  }

  /** See {@link BackupLog#hasFailed}. */
  boolean hasFailed(long seq) {
    return durableSeq < seq && (buffer.failure() != null || closed);
  }

  /** See {@link BackupLog#awaitDurable}. */
  void awaitDurable(long seq) throws IOException {
    if (seq > buffer.appendedSeq()) {
      throw new IllegalArgumentException("no record has sequence " + seq);
    }
    while (durableSeq < seq) {
      checkDurable(seq);
      if (commit(false)) {
        continue;
      }
      durableLock.lock();
      try {
        // The committer signals after it releases the file, under durableLock: either it has
        // not signalled yet (this thread is woken) or the checks below see its work.
        while (durableSeq < seq && fileLock.isLocked() && buffer.failure() == null && !closed) {
          durableChanged.await();
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new InterruptedIOException("interrupted while waiting for the backup log");
      } finally {
        durableLock.unlock();
      }
    }
  }

  /** Throws if the record {@code seq}, not yet durable, will not become so in this state. */
  private void checkDurable(long seq) throws IOException {
    IOException f = buffer.failure();
    if (f != null && durableSeq < seq) {
      throw new IOException("the record did not reach the disk: " + f.getMessage(), f);
    }
    if (closed && durableSeq < seq) {
      throw new IOException("backup log " + logPath
          + " was closed before the record was durable");
    }
  }

  /** See {@link BackupLog#addCommitListener}. */
  void addCommitListener(Runnable listener) {
    commitListeners.add(listener);
  }

  void removeCommitListener(Runnable listener) {
    commitListeners.remove(listener);
  }

  /** After a commit, failure or close, with fileLock released: wake every kind of waiter. */
  void committed() {
    durableLock.lock();
    try {
      durableChanged.signalAll();
    } finally {
      durableLock.unlock();
    }
    for (Runnable listener : commitListeners) {
      listener.run();
    }
  }

  // ----------------------------------------------------------------------------------------------
  // Forces, failure and the retry.

  /** EVERYSEC: the periodic force, if anything was written since the last one. */
  void doPeriodicSync() {
    if (!dirty || channelClosed) {
      return;
    }
    try {
      long t0 = System.nanoTime();
      channel.force(false);
      doNoteCommitSync(t0, unsyncedRecords);
      unsyncedRecords = 0;
    } catch (IOException e) {
      doEnterFailed(e, null, filePos);
    }
  }

  /** A commit force begun at {@code startNanos} made records durable. */
  private void doNoteCommitSync(long startNanos, long records) {
    commitSyncLatency.record(System.nanoTime() - startNanos);
    commitSyncRecords += records;
    doNoteSync();
  }

  private void doNoteSync() {
    syncs++;
    dirty = false;
    lastSyncMillis = System.currentTimeMillis();
  }

  /**
   * Enters the failed state: the failed batch (if any) and everything pending are retained for
   * the retry; waiters of non-durable records are told (by the caller's {@link #committed}); a
   * running compaction is aborted.
   */
  private void doEnterFailed(IOException cause, AppendBuffer.Batch failedBatch,
      long batchFilePos) {
    IOException f =
        new IOException("write to " + logPath + " failed: " + ServerLog.describe(cause), cause);
    Compactor abort;
    buffer.appendLock.lock();
    try {
      if (retained.isEmpty()) {
        retainFilePos = batchFilePos;
      }
      if (failedBatch != null) {
        retained.add(failedBatch);
      }
      if (buffer.doHasPending()) {
        retained.add(buffer.doTakePending());
      }
      buffer.doFail(f);
      syncThread.doScheduleRetry();
      abort = buffer.doDetachCompaction();
      syncThread.doWake();
    } finally {
      buffer.appendLock.unlock();
    }
    if (abort != null) {
      abort.abort(f);
    }
    ServerLog.error(String.format("backup log failed; refusing writes, retrying every %d ms: %s",
        opts.failureRetryIntervalMillis, cause));
  }

  /**
   * One attempt to leave the failed state: reopen, cut the file back to where the retained
   * records start, rewrite them from memory, force the file and the directory.
   */
  void doRetryAfterFailure() {
    long end;
    try {
      LogFiles.closeQuietly(channel);
      channel = opts.channelOpener.open(logPath,
          EnumSet.of(StandardOpenOption.READ, StandardOpenOption.WRITE));
      if (channel.size() < retainFilePos) {
        throw new IOException(logPath + " is shorter (" + channel.size()
            + " bytes) than its durable part (" + retainFilePos + " bytes)");
      }
      channel.truncate(retainFilePos);
      end = retainFilePos;
      for (AppendBuffer.Batch b : retained) {
        end = LogFiles.writeParts(channel, b.parts, end);
      }
      channel.force(true);
      LogFiles.fsyncDirectory(dir);
    } catch (IOException e) {
      syncThread.scheduleRetry();
      ServerLog.error("backup log still failing: " + ServerLog.describe(e));
      return;
    }
    long seq = durableSeq;
    long records = 0;
    for (AppendBuffer.Batch b : retained) {
      seq = b.endSeq;
      records += b.records;
    }
    int rewritten = retained.size();
    retained.clear();
    filePos = end;
    fileBytes = end;
    fileRecords += records;
    doNoteSync();
    durableSeq = seq;
    buffer.clearFailure();
    ServerLog.info(String.format("backup log recovered: rewrote %d records (%d batches) and "
        + "accepts writes again", records, rewritten));
  }

  // ----------------------------------------------------------------------------------------------
  // The compaction switch.

  /**
   * The last step of a compaction, under fileLock so that no batch is written to the file being
   * replaced meanwhile: takes the rest of {@code c}'s rewrite buffer and switches to its file
   * ({@link #doSwitchTo}). The caller calls {@link #committed} afterwards, thrown or not.
   */
  void switchTo(Compactor c) throws IOException {
    fileLock.lock();
    try {
      List<AppendBuffer.Batch> rest = buffer.takeLastRewrite(c);
      doSwitchTo(c, rest);
    } finally {
      fileLock.unlock();
    }
  }

  /**
   * Copies the rest of the rewrite buffer to the new file, forces it, renames it over the log,
   * forces the directory, and writes to it from now on. Appends are not blocked: they collect in
   * the pending batch, which the next commit writes to the new file.
   */
  private void doSwitchTo(Compactor c, List<AppendBuffer.Batch> rest) throws IOException {
    boolean renamed = false;
    try {
      c.writeBatches(rest);
      c.force();
      opts.crashPoint.accept("compact.before-rename");
      Files.move(compactPath, logPath, StandardCopyOption.ATOMIC_MOVE);
      renamed = true;
      olderFormat = false; // The new file has this version's header.
      opts.crashPoint.accept("compact.after-rename");
      LogFiles.fsyncDirectory(dir);
    } catch (IOException e) {
      if (!renamed) {
        // The live log was not touched: the compaction fails, the log goes on.
        c.abort(e);
        throw e;
      }
      // The new file is the log now but its name may not be durable: use it, but fail the log
      // until a retry has forced the directory.
      doAdopt(c);
      doEnterFailed(e, null, filePos);
      c.abort(e);
      throw e;
    }
    doAdopt(c);
    opts.crashPoint.accept("compact.after-switch");
  }

  /** The compacted file becomes the log. */
  private void doAdopt(Compactor c) {
    FileChannel old = channel;
    channel = c.adopt();
    filePos = c.position();
    fileBytes = filePos;
    fileRecords = c.records();
    compactions++;
    doNoteSync();
    LogFiles.closeQuietly(old);
  }

  // ----------------------------------------------------------------------------------------------
  // Stats and close.

  /** Bytes of the current file written by the committers (volatile read). */
  long fileBytes() {
    return fileBytes;
  }

  /** See {@link BackupLog#isOlderFormat}. */
  boolean isOlderFormat() {
    return olderFormat;
  }

  BackupLog.Stats stats() {
    return new BackupLog.Stats(fileBytes, fileRecords, buffer.appends(), batches, syncs,
        lastSyncMillis, compactions, buffer.failure() != null, commitSyncLatency.count(),
        commitSyncRecords, commitSyncLatency.percentileMicros(50),
        commitSyncLatency.percentileMicros(99));
  }

  /** See {@link BackupLog#close}. */
  void close() throws IOException {
    Compactor abort;
    buffer.appendLock.lock();
    try {
      buffer.doClose();
      abort = buffer.doDetachCompaction();
      syncThread.doWake();
    } finally {
      buffer.appendLock.unlock();
    }
    if (abort != null) {
      abort.abort(new IOException("backup log " + logPath + " is closing"));
    }
    syncThread.join();
    fileLock.lock();
    try {
      if (!channelClosed) {
        doCommit();
        doFinishAtClose();
      }
    } finally {
      fileLock.unlock();
    }
    committed();
    if (closeError != null) {
      throw new IOException("backup log " + logPath + " closed with an error: " + closeError,
          closeError);
    }
  }

  /** The final force, then the channel is closed for good. */
  private void doFinishAtClose() {
    IOException err = buffer.failure();
    if (err == null) {
      try {
        channel.force(true);
        doNoteSync();
      } catch (IOException e) {
        err = e;
        buffer.fail(
            new IOException("final force of " + logPath + " failed: " + ServerLog.describe(e), e));
      }
    } else if (!retained.isEmpty()) {
      long lost = 0;
      for (AppendBuffer.Batch b : retained) {
        lost += b.records;
      }
      ServerLog.error("backup log closed while failed: " + lost + " records never reached the disk");
    }
    closeError = err;
    LogFiles.closeQuietly(channel);
    channelClosed = true;
    closed = true;
  }
}
