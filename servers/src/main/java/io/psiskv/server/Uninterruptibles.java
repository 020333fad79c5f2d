package io.psiskv.server;

import java.util.concurrent.CountDownLatch;

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
