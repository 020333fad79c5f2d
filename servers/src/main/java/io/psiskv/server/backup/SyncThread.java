package io.psiskv.server.backup;

import io.psiskv.server.ServerLog;
import io.psiskv.server.Uninterruptibles;
import java.io.IOException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;

/**
 * The backup log's background thread, {@code psiskv-log-sync}: the commits callers hand it
 * ({@link #requestCommit}), the periodic force of EVERYSEC and the retries after a disk failure,
 * each under the writer's {@code fileLock}. Its schedule (a requested commit, the next periodic
 * check, the next retry) is guarded by the append buffer's {@code appendLock}, on whose condition
 * it sleeps; a {@code do*} method expects that lock held.
 */
final class SyncThread {
  private final LogWriter writer;
  private final AppendBuffer buffer;
  private final FsyncPolicy policy;
  private final long retryIntervalMillis;
  private final Thread thread;

  // ---- Guarded by the buffer's appendLock.
  /** The sync thread sleeps here; signalled on a request, a failure and at close. */
  private final Condition syncWake;
  /** A caller asked the sync thread to commit ({@link #requestCommit}); volatile for its check. */
  private volatile boolean commitRequested;
  /** EVERYSEC: when the sync thread looks for unforced writes next. */
  private long nextPeriodicNanos =
      System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(BackupLog.EVERYSEC_SYNC_INTERVAL_MILLIS);
  /**
   * Failed state: when the next retry is due. Written under both {@code fileLock} and {@code
   * appendLock}, so read under either.
   */
  private long nextRetryNanos;

  SyncThread(LogWriter writer, AppendBuffer buffer, FsyncPolicy policy,
      long retryIntervalMillis) {
    this.writer = writer;
    this.buffer = buffer;
    this.policy = policy;
    this.retryIntervalMillis = retryIntervalMillis;
    this.syncWake = buffer.appendLock.newCondition();
    this.thread = new Thread(this::run, "psiskv-log-sync");
    thread.setDaemon(true);
  }

  void start() {
    thread.start();
  }

  /**
   * Asks the sync thread to commit what is pending, for a caller that must not block on the disk
   * (an event loop that hands its commit off); the commit listeners hear when it is done. Cheap
   * when a request is already pending.
   */
  void requestCommit() {
    if (commitRequested) {
      return;
    }
    buffer.appendLock.lock();
    try {
      commitRequested = true;
      syncWake.signal();
    } finally {
      buffer.appendLock.unlock();
    }
  }

  /** Wakes the thread to re-check its state (a failure, the close). */
  void doWake() {
    syncWake.signal();
  }

  /** Failed state: the next retry is due one retry interval from now. */
  void doScheduleRetry() {
    nextRetryNanos = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(retryIntervalMillis);
  }

  /** {@link #doScheduleRetry}, taking {@code appendLock}. */
  void scheduleRetry() {
    buffer.appendLock.lock();
    try {
      doScheduleRetry();
    } finally {
      buffer.appendLock.unlock();
    }
  }

  /** Waits for the thread to end (after the buffer is closing and the thread woken). */
  void join() {
    Uninterruptibles.join(thread);
  }

  /** What the sync thread was woken for. */
  private enum SyncWork { COMMIT, PERIODIC, CLOSE }

  private void run() {
    try {
      for (SyncWork w; (w = awaitSyncWork()) != SyncWork.CLOSE; ) {
        writer.fileLock.lock();
        try {
          if (buffer.failure() != null) {
            if (System.nanoTime() - nextRetryNanos >= 0) {
              writer.doRetryAfterFailure();
            }
          } else if (w == SyncWork.COMMIT) {
            writer.doCommit();
          } else if (policy == FsyncPolicy.EVERYSEC) {
            writer.doPeriodicSync();
          }
        } finally {
          writer.fileLock.unlock();
        }
        writer.committed();
      }
    } catch (Throwable t) {
      // A bug, not a disk error: fail loudly rather than leave waiters hanging.
      ServerLog.error("backup log sync thread died: " + ServerLog.describe(t));
      buffer.fail(new IOException("backup log sync thread died: " + ServerLog.describe(t), t));
      writer.committed();
    }
  }

  /**
   * Sleeps until a commit is asked for, the next retry is due (failed), the next periodic check
   * is due (EVERYSEC), or the log closes.
   */
  private SyncWork awaitSyncWork() {
    buffer.appendLock.lock();
    try {
      while (!buffer.isClosing()) {
        long now = System.nanoTime();
        if (commitRequested) {
          commitRequested = false;
          if (buffer.failure() == null && buffer.doHasPending()) {
            return SyncWork.COMMIT;
          }
        }
        long due;
        if (buffer.failure() != null) {
          due = nextRetryNanos;
        } else if (policy == FsyncPolicy.EVERYSEC) {
          due = nextPeriodicNanos;
        } else {
          syncWake.awaitUninterruptibly();
          continue;
        }
        if (now - due >= 0) {
          nextPeriodicNanos =
              now + TimeUnit.MILLISECONDS.toNanos(BackupLog.EVERYSEC_SYNC_INTERVAL_MILLIS);
          return SyncWork.PERIODIC;
        }
        try {
          syncWake.awaitNanos(due - now);
        } catch (InterruptedException e) {
          // Nobody interrupts this private thread; the loop re-checks its state anyway.
        }
      }
      return SyncWork.CLOSE;
    } finally {
      buffer.appendLock.unlock();
    }
  }
}
