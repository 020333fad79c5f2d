package io.psiskv.server;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Waits that an interrupt does not cut short: for a stop that must finish, a thread that must end,
 * whatever else the waiting thread is asked. Each one waits on, remembers the interrupt and sets
 * the thread's interrupt status again before it returns, so the caller's caller still sees it.
 */
public final class Uninterruptibles {
  private Uninterruptibles() {}

  /** Waits until {@code latch} reaches zero. */
  static void await(CountDownLatch latch) {
    boolean interrupted = false;
    while (true) {
      try {
        latch.await();
        break;
      } catch (InterruptedException e) {
        interrupted = true;
      }
    }
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
  }

  /**
   * Waits until {@code latch} reaches zero or {@code timeoutMillis} have passed, whichever comes
   * first; an interrupt does not move the deadline. True if the latch reached zero.
   */
  static boolean await(CountDownLatch latch, long timeoutMillis) {
    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMillis);
    boolean interrupted = false;
    try {
      while (true) {
        try {
          return latch.await(deadline - System.nanoTime(), TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
          interrupted = true;
        }
      }
    } finally {
      if (interrupted) {
        Thread.currentThread().interrupt();
      }
    }
  }

  /** Waits until {@code thread} has ended. */
  public static void join(Thread thread) {
    boolean interrupted = false;
    while (true) {
      try {
        thread.join();
        break;
      } catch (InterruptedException e) {
        interrupted = true;
      }
    }
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
  }
}
