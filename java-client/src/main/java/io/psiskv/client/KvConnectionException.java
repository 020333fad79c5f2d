package io.psiskv.client;

import io.psiskv.protocol.Status;

/**
 * A call failed because there was no working connection: the Front Server could not be reached,
 * the data connection broke and stayed broken past the retry deadline (or reconnection is
 * disabled), an asynchronous request's connection broke before its answer came, or the client was
 * closed. Its {@link #status()} is {@link Status#IO_ERROR}, or {@link Status#UNAVAILABLE} when the
 * server said it cannot serve now and the call was not retried. A write that fails this way may or
 * may not have been applied.
 */
public final class KvConnectionException extends KvException {
  private static final long serialVersionUID = 1L;

  KvConnectionException(Status status, String message) {
    super(status, message);
  }

  KvConnectionException(Status status, String message, Throwable cause) {
    super(status, message, cause);
  }
}
