package io.psiskv.server;

import io.psiskv.server.control.ControlLink;
import io.psiskv.server.control.Supervisor;
import java.io.IOException;
import java.util.concurrent.CountDownLatch;

/**
 * A server process's stop, and the steps that must not happen once it has begun. The same on both
 * processes.
 *
 * <p>A step that must not run after the stop began (writing the pid file, starting to serve,
 * linking a relaunched peer's control connection) runs under this object's lock together with the
 * check ({@link #unlessStopping}), and the stop sets its flag under the same lock ({@link
 * #beginStop}). So the stop either sees the step's effect and undoes it, or the step sees the stop
 * and does nothing: an atomic check-then-act, with no window between the two.
 */
public final class Lifecycle {
  /** A step that may fail with an I/O error. */
  interface Step {
    void run() throws IOException;
  }

  private final Object lock = new Object();
  /** Guarded by lock. */
  private boolean stopping;
  private final CountDownLatch stopped = new CountDownLatch(1);

  /** Whether the stop has begun. */
  public boolean isStopping() {
    synchronized (lock) {
      return stopping;
    }
  }

  /**
   * Runs {@code step} under the lock unless the stop has begun.
   *
   * @return whether it ran
   */
  boolean unlessStopping(Step step) throws IOException {
    synchronized (lock) {
      if (stopping) {
        return false;
      }
      step.run();
      return true;
    }
  }

  /**
   * Links a launched peer's control connection ({@link Supervisor.Peer#linked}) unless the stop
   * has begun; else closes the connection. The stop either finds the link (and tells the peer) or
   * the launch finds the stop.
   *
   * @return whether it linked
   */
  public boolean linkUnlessStopping(Supervisor.Peer peer, ControlLink link) {
    synchronized (lock) {
      if (stopping) {
        link.close();
        return false;
      }
      peer.linked(link);
      return true;
    }
  }

  /**
   * Begins the stop. The first caller gets true and runs the stop, then calls {@link #stopped};
   * every later caller waits until that has happened and gets false. A step under {@link
   * #unlessStopping} that ran has finished, and none runs from now on.
   */
  boolean beginStop() {
    boolean first;
    synchronized (lock) {
      first = !stopping;
      stopping = true;
    }
    if (!first) {
      awaitStopped();
    }
    return first;
  }

  /** The stop has finished: wakes {@link #awaitStopped} and the later callers of beginStop. */
  void stopped() {
    stopped.countDown();
  }

  /** Waits, uninterruptibly, until the stop has finished. */
  void awaitStopped() {
    Uninterruptibles.await(stopped);
  }
}
