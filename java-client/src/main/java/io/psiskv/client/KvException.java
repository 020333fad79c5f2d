package io.psiskv.client;

import io.psiskv.protocol.Status;

/**
 * The one exception type of {@link KvClient}: a call that could not produce its result. It carries
 * the {@link Status} that explains why: an error status answered by the server (for example
 * {@link Status#TOO_LARGE}, {@link Status#SERVER_ERROR}), or {@link Status#IO_ERROR} when the
 * server could not be reached, the connection stayed broken past the retry deadline (PROTOCOL.md
 * §12), the server broke the protocol, or the client was closed. {@link Status#UNAVAILABLE} is
 * retried and reaches the caller only when reconnection is disabled. It corresponds to the C API's
 * {@code -1}.
 *
 * <p>Unchecked, like the exceptions of {@link java.util.Map}: results a caller must handle (key
 * absent, key exists) are return values, never exceptions.
 */
public final class KvException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final transient Status status;

  KvException(Status status, String message) {
    super(message);
    this.status = status;
  }

  KvException(Status status, String message, Throwable cause) {
    super(message, cause);
    this.status = status;
  }

  /** Why the call failed; never {@link Status#OK}, {@link Status#KEY_EXISTS} or {@link Status#NOT_FOUND}. */
  public Status status() {
    return status;
  }
}
