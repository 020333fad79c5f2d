package io.psiskv.client;

import java.net.Socket;
import java.net.SocketException;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Closing a client, the only state its threads share without the client's lock. {@link #close}
 * sets the closed flag, counts a latch down (which ends a back-off wait, {@link #await}, at once),
 * and closes the {@link #live} socket (which ends a blocking connect, read or write of the lock
 * holder with an IOException). The lock holder publishes every new socket with {@link #publish}
 * before it uses it, and that checks the flag, so either close() sees the socket or the holder
 * sees the flag: no socket escapes a close.
 *
 * <p>Thread safety: every method may be called from any thread.
 */
final class Closing {
  private volatile boolean closed;
  private final CountDownLatch latch = new CountDownLatch(1);
  private volatile Socket live;

  /** Whether {@link #close} has been called. */
  boolean isClosed() {
    return closed;
  }

  /** Idempotent: sets the flag, ends {@link #await} and closes the live socket. */
  void close() {
    closed = true;
    latch.countDown();
    Connection.closeQuietly(live);
  }

  /**
   * Makes {@code s} the socket {@link #close} closes; called before {@code s} is connected.
   *
   * @throws SocketException if the client is closed already (the caller closes {@code s})
   */
  void publish(Socket s) throws SocketException {
    live = s;
    if (closed) {
      throw new SocketException("client is closed");
    }
  }

  /** The socket last published, or null. */
  Socket live() {
    return live;
  }

  /**
   * Waits {@code millis}, or less if {@link #close} comes first.
   *
   * @return true if the client is closed
   */
  boolean await(long millis) throws InterruptedException {
    return latch.await(millis, TimeUnit.MILLISECONDS);
  }
}
