package io.psiskv.client;

import static io.psiskv.client.Failures.closedError;
import static io.psiskv.client.Failures.timeoutError;

import io.psiskv.protocol.Opcode;
import java.net.Socket;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The table of a client's asynchronous requests in flight (sent, answer not yet read), oldest
 * first, and the identity of the reader thread that answers them ({@link Pipeline}). While the
 * table is not empty the call timer ({@link CallTimer}) is armed for its oldest request.
 *
 * <p>Thread safety: {@code queueLock} guards the table and the timer's arming while requests are
 * in flight; it is never held during I/O nor while a future completes. Lock order: the client's
 * lock, then queueLock. The senders (holders of the client's lock) add and wait for room; the
 * reader takes the oldest and removes it once answered.
 */
final class InFlight {
  private final Closing closing;
  /** The call timeout's watchdog; null without a call timeout. */
  private final CallTimer timer;
  /** 0: no call timeout. */
  private final long callTimeoutNanos;

  private final ReentrantLock queueLock = new ReentrantLock();
  /** Signalled whenever {@link #requests} changes and at close. */
  private final Condition queueChanged = queueLock.newCondition();
  /** Guarded by queueLock: the requests sent and not yet answered, oldest first. */
  private final ArrayDeque<Pending> requests = new ArrayDeque<>();
  /** Guarded by the client's lock: the reader thread, started by the first asynchronous call. */
  private Thread reader;

  InFlight(Closing closing, CallTimer timer, long callTimeoutNanos) {
    this.closing = closing;
    this.timer = timer;
    this.callTimeoutNanos = callTimeoutNanos;
  }

  /** Caller holds the client's lock: whether the reader thread has been started. */
  boolean readerStarted() {
    return reader != null;
  }

  /** Caller holds the client's lock: starts the reader thread running {@code loop}, once. */
  void startReader(Runnable loop) {
    if (reader == null) {
      reader = new Thread(loop, "psiskv-async-reader");
      reader.setDaemon(true);
      reader.start();
    }
  }

  /**
   * Caller holds the client's lock: waits until fewer than {@code n} requests are in flight, until
   * the call's deadline ({@code deadline != 0}) at most.
   *
   * @throws KvTimeoutException if the deadline passes first
   * @throws KvException if the client is closed or the thread is interrupted meanwhile
   * @throws IllegalStateException if it would wait on the reader thread (for itself)
   */
  void awaitBelow(int n, Opcode op, int key, long deadline) {
    queueLock.lock();
    try {
      while (requests.size() >= n) {
        if (closing.isClosed()) {
          throw closedError(null);
        }
        if (Thread.currentThread() == reader) {
          // A stage run on the reader (a direct asyncExecutor) would wait for itself.
          throw new IllegalStateException("a call on the psiskv reader thread cannot wait for"
              + " answers: give the client an asyncExecutor that runs stages elsewhere");
        }
        if (deadline == 0) {
          queueChanged.await();
        } else {
          long left = deadline - System.nanoTime();
          if (left <= 0) {
            throw timeoutError(op, key, callTimeoutNanos,
                "earlier asynchronous requests' answers", null);
          }
          queueChanged.awaitNanos(left);
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw Failures.interrupted(op, key, e);
    } finally {
      queueLock.unlock();
    }
  }

  /**
   * Caller holds the client's lock: queues {@code p}, arming the timer if it is the oldest. A
   * request is queued before it is sent: its answer may arrive before the write returns.
   */
  void add(Pending p) {
    queueLock.lock();
    try {
      requests.addLast(p);
      if (requests.size() == 1 && timer != null) {
        timer.arm(p.id, p.deadline);
      }
      queueChanged.signalAll();
    } finally {
      queueLock.unlock();
    }
  }

  /** Reader thread: the oldest request in flight, waiting for one; null once the client closes. */
  Pending awaitOldest() {
    queueLock.lock();
    try {
      while (requests.isEmpty()) {
        if (closing.isClosed()) {
          return null;
        }
        queueChanged.awaitUninterruptibly();
      }
      return requests.peekFirst();
    } finally {
      queueLock.unlock();
    }
  }

  /**
   * Reader thread: removes {@code p}, the oldest, once answered; unless its connection is {@code
   * inStep}, closes that connection and removes and returns the requests sent on it. Re-arms the
   * timer for the new oldest request.
   */
  List<Pending> remove(Pending p, boolean inStep) {
    List<Pending> dropped = List.of(); // nothing allocated for an answer in step
    queueLock.lock();
    try {
      requests.pollFirst();
      if (!inStep) {
        dropped = new ArrayList<>();
        p.conn.close();
        for (Iterator<Pending> it = requests.iterator(); it.hasNext(); ) {
          Pending q = it.next();
          if (q.conn == p.conn) {
            dropped.add(q);
            it.remove();
          }
        }
      }
      Pending next = requests.peekFirst();
      if (timer != null) {
        if (next != null) {
          timer.arm(next.id, next.deadline);
        } else {
          timer.disarm();
        }
      }
      queueChanged.signalAll();
    } finally {
      queueLock.unlock();
    }
    return dropped;
  }

  /** The socket of the oldest request if its id is {@code id}, else null; holds no other lock. */
  Socket socketOfOldest(long id) {
    queueLock.lock();
    try {
      Pending head = requests.peekFirst();
      return head != null && head.id == id ? head.conn.socket : null;
    } finally {
      queueLock.unlock();
    }
  }

  /** At close: the reader and callers waiting for room see the client closed. */
  void wakeAll() {
    queueLock.lock();
    try {
      queueChanged.signalAll();
    } finally {
      queueLock.unlock();
    }
  }

  /** An asynchronous request sent and not yet answered, with the connection it was sent on. */
  static final class Pending {
    final Opcode op;
    final int key;
    final long id;
    final boolean overwrite;
    /** GET: the capacity sent. */
    final int capacity;
    final Connection conn;
    /** The call timeout's deadline, or 0. */
    final long deadline;
    final CompletableFuture<?> future;
    /** Reader thread only: its answer was refused with bytes of it still unread. */
    boolean valueUnread;

    Pending(Opcode op, int key, long id, boolean overwrite, int capacity, Connection conn,
        long deadline, CompletableFuture<?> future) {
      this.op = op;
      this.key = key;
      this.id = id;
      this.overwrite = overwrite;
      this.capacity = capacity;
      this.conn = conn;
      this.deadline = deadline;
      this.future = future;
    }
  }
}
