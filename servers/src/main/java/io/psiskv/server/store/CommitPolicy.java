package io.psiskv.server.store;

import java.util.concurrent.atomic.AtomicInteger;

/**
 * Decides, for each wake-up of an {@code EventLoop} that applied writes, who makes them durable:
 * the loop itself ({@link Engine#commit}, no thread hand-off: the lowest latency for a lone
 * writer) or the log's sync thread ({@link Engine#requestCommit}: the loop goes on serving while
 * the disk forces, and one force covers what every loop appended meanwhile). A loop commits
 * itself while writes come one at a time; once writers were seen waiting on other connections
 * when a commit ended, it hands commits off for {@link #HANDOFF_HOLD_MILLIS} (renewed while that
 * goes on), because then a loop blocked in a force delays its other connections and batches
 * grow only while the forces run back to back. When the log does not force at each commit
 * (EVERYSEC, NO), a commit is one write to the OS and a loop always commits itself: a hand-off
 * would cost more than it saves.
 *
 * <p>Shared by the loops of one transport; thread-safe (an atomic counter and a volatile time).
 */
public final class CommitPolicy {
  /** After concurrent writers were seen, commits are handed off for at least this long. */
  static final long HANDOFF_HOLD_MILLIS = 100;

  /** Connections (of every loop) whose answers wait for a record. */
  private final AtomicInteger waitingWriters = new AtomicInteger();
  private volatile long handoffUntilNanos = System.nanoTime();
  /** Whether each commit forces the file (FsyncPolicy.ALWAYS). */
  private final boolean commitsForce;

  public CommitPolicy(boolean commitsForce) {
    this.commitsForce = commitsForce;
  }

  /** A connection's answers now wait for a record. */
  public void writerWaits() {
    waitingWriters.incrementAndGet();
  }

  /** A connection's answers no longer wait (settled, or the connection closed). */
  public void writerDone() {
    waitingWriters.decrementAndGet();
  }

  /** Whether the loop should commit itself now rather than hand the commit off. */
  public boolean commitInline(long nowNanos) {
    return !commitsForce || (nowNanos - handoffUntilNanos > 0 && waitingWriters.get() <= 1);
  }

  /** After a loop's commit and its writes: writers still waiting elsewhere mean concurrency. */
  public void afterCommit(long nowNanos) {
    if (waitingWriters.get() > 0) {
      handoffUntilNanos = nowNanos + HANDOFF_HOLD_MILLIS * 1_000_000L;
    }
  }
}
