package io.psiskv.client;

import java.util.concurrent.locks.LockSupport;
import java.util.function.LongConsumer;

/**
 * The watchdog of one client's call timeout ({@link KvClient.Builder#callTimeout}): one daemon
 * thread, {@code psiskv-call-timer}, that sleeps until the deadline of what is armed and, if the
 * same arming is still in place then, runs the client's expiry action with the arming's id. The
 * action closes the socket the call is blocked on, so its read, write or connect ends at once.
 *
 * <p>While the same arming stays in place past its deadline the action runs again every {@value
 * #REFIRE_MILLIS} ms. A call between two sockets when its deadline passes (a reconnection: the
 * front connection closed, the data connection not yet published) has no socket to close; the
 * next run closes the one it opens, so the call cannot block past its deadline on a socket the
 * first run never saw.
 *
 * <p>Why a thread rather than a socket read timeout: {@code SO_TIMEOUT} bounds one read, not a
 * write (a PUT of a large value to a server that does not read blocks in write) nor the
 * reconnection loop, and a timed read of a channel costs about four more system calls than the one
 * blocking read of a call without one (blocking mode off and on, a poll; DESIGN.md §9). Arming and
 * disarming are two volatile writes and never a system call in the usual case: while calls come and
 * go the thread wakes about once per timeout, and an arming wakes it ({@link LockSupport#unpark})
 * only if its deadline comes before the thread's next look.
 *
 * <p>Thread safety: {@link #arm} and {@link #disarm} are called by one thread at a time (the
 * client's lock holder); {@link #stop} by any. The action runs on the timer's thread, holding no
 * lock; an arming replaced just as its deadline passes may still see the action run for the
 * replaced id, so the action must tolerate a late or repeated run (the client's does: it closes a
 * socket, and a call it did not mean treats that as a broken connection and retries, exactly
 * once).
 */
final class CallTimer implements Runnable {
  /** How often the action runs again for an arming still in place past its deadline. */
  static final long REFIRE_MILLIS = 10;
  private static final long REFIRE_NANOS = REFIRE_MILLIS * 1_000_000L;

  private final long timeoutNanos;
  private final LongConsumer onExpiry;
  private final Thread thread;

  /** The id of the current arming, 0 when disarmed; written after {@link #deadlineNanos}. */
  private volatile long armedId;
  /** The current arming's deadline ({@link System#nanoTime} scale). */
  private volatile long deadlineNanos;
  /** When the thread looks next; an arming due earlier wakes it. */
  private volatile long wakeAtNanos;
  private volatile boolean stopped;

  CallTimer(long timeoutNanos, LongConsumer onExpiry) {
    this.timeoutNanos = timeoutNanos;
    this.onExpiry = onExpiry;
    this.wakeAtNanos = System.nanoTime() + timeoutNanos;
    this.thread = new Thread(this, "psiskv-call-timer");
    thread.setDaemon(true);
    thread.start();
  }

  /** Arms the timer for {@code id} (non-zero, never reused) until {@code deadline}. */
  void arm(long id, long deadline) {
    deadlineNanos = deadline;
    armedId = id;
    if (deadline - wakeAtNanos < 0) {
      LockSupport.unpark(thread);
    }
  }

  /** Disarms the timer: nothing is armed until the next {@link #arm}. */
  void disarm() {
    armedId = 0;
  }

  /** Ends the thread; the timer is unusable afterwards. */
  void stop() {
    stopped = true;
    LockSupport.unpark(thread);
  }

  @Override
  public void run() {
    long fired = 0;
    long firedAt = 0;
    while (!stopped) {
      long id = armedId;
      long deadline = deadlineNanos;
      long now = System.nanoTime();
      boolean due = id != 0 && deadline - now <= 0
          && (id != fired || now - firedAt >= REFIRE_NANOS);
      if (due) {
        fired = id;
        firedAt = now;
        try {
          onExpiry.accept(id);
        } catch (RuntimeException e) {
          Thread.currentThread().getUncaughtExceptionHandler()
              .uncaughtException(Thread.currentThread(), e);
        }
        continue;
      }
      long wakeAt = id == 0 ? now + timeoutNanos
          : id != fired ? deadline
          : firedAt + REFIRE_NANOS;
      wakeAtNanos = wakeAt;
      // An arming between the reads above and this write would have seen the old wake time:
      // look again before sleeping (arm writes the id, then reads wakeAtNanos; this writes
      // wakeAtNanos, then reads the id: one of the two sees the other).
      if (armedId != id || deadlineNanos != deadline) {
        continue;
      }
      LockSupport.parkNanos(this, wakeAt - now);
    }
  }
}
