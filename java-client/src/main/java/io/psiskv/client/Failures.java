package io.psiskv.client;

import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Status;
import java.io.IOException;
import java.util.concurrent.TimeUnit;

/**
 * The client's failures: the two retryable ones ({@link Unavailable}, {@link FrontUnreachable},
 * both {@link IOException}s so that {@link Calls#withRetries} retries them as a broken connection)
 * and the messages of the {@link KvException}s a call throws. Messages are built only on failure:
 * a call allocates no strings.
 */
final class Failures {
  private Failures() {}

  /** Names a call in an error message. */
  static String what(Opcode op, int key) {
    return op == null ? "connect" : op + " of key " + Integer.toUnsignedString(key);
  }

  /** Our own retryable failures by their message; the JDK's with their class name. */
  static String describe(IOException e) {
    boolean ours = e instanceof Unavailable || e instanceof FrontUnreachable;
    return ours ? e.getMessage() : e.toString();
  }

  static KvException closedError(Throwable cause) {
    return new KvConnectionException(Status.IO_ERROR, "client is closed", cause);
  }

  static KvTimeoutException timeoutError(Opcode op, int key, long callTimeoutNanos,
      String waitingFor, Throwable cause) {
    return new KvTimeoutException(what(op, key) + " timed out after "
        + TimeUnit.NANOSECONDS.toMillis(callTimeoutNanos) + " ms waiting for " + waitingFor, cause);
  }

  static KvException protocolError(String mismatch) {
    return new KvException(Status.IO_ERROR, "protocol error: " + mismatch);
  }

  /** A value to send longer than the server's maximum: refused before it is sent, or null. */
  static KvRejectedException valueTooLarge(byte[] value, int maxValueBytes) {
    return value.length <= maxValueBytes ? null : new KvRejectedException(Status.TOO_LARGE,
        "value of " + value.length + " bytes exceeds the server's maximum of " + maxValueBytes);
  }

  /** A stored value longer than the GET's capacity (its first bytes are still unread). */
  static KvRejectedException storedTooLarge(int key, int stored, int capacity) {
    return new KvRejectedException(Status.TOO_LARGE, "the value of key "
        + Integer.toUnsignedString(key) + " has " + stored
        + " bytes, more than the server's maximum of " + capacity);
  }

  static KvException interrupted(Opcode op, int key, Throwable cause) {
    return new KvException(Status.IO_ERROR, what(op, key) + " interrupted", cause);
  }

  /** The server answered UNAVAILABLE (PROTOCOL.md §12.1): retried like a broken connection. */
  static final class Unavailable extends IOException {
    private static final long serialVersionUID = 1L;

    Unavailable(String message) {
      super(message);
    }
  }

  /** The TCP connection to the Front Server could not be made; the first set-up fails fast on it. */
  static final class FrontUnreachable extends IOException {
    private static final long serialVersionUID = 1L;

    FrontUnreachable(IOException cause) {
      super("cannot reach the Front Server: " + cause, cause);
    }
  }
}
