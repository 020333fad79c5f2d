package io.psiskv.client;

import io.psiskv.protocol.Status;

/**
 * A call of {@link KvClient} that could not produce its result. It carries the {@link Status} that
 * explains why, and its class says what kind of failure it is, so a caller can catch the kinds it
 * handles differently and let the rest through:
 *
 * <ul>
 *   <li>{@link KvConnectionException}: the server could not be reached, the connection broke and
 *       stayed broken past the retry deadline (PROTOCOL.md §12), or the client was closed; status
 *       {@link Status#IO_ERROR}, or {@link Status#UNAVAILABLE} when it was not retried.
 *   <li>{@link KvTimeoutException}: the call did not finish within the call timeout ({@link
 *       KvClient.Builder#callTimeout}); status {@link Status#IO_ERROR}.
 *   <li>{@link KvRejectedException}: the server refused the request with an error status (for
 *       example {@link Status#TOO_LARGE}, {@link Status#BAD_REQUEST}, {@link Status#FORBIDDEN},
 *       {@link Status#SERVER_ERROR}), or the client refused it before sending for the same reason
 *       (a value over the maximum).
 *   <li>{@code KvException} itself: the server broke the protocol (an answer that does not match
 *       its request, PROTOCOL.md §8), or the calling thread was interrupted; status {@link
 *       Status#IO_ERROR}.
 * </ul>
 *
 * <p>Every one corresponds to the C API's {@code -1}. Unchecked, like the exceptions of {@link
 * java.util.Map}: results a caller must handle (key absent, key exists) are return values, never
 * exceptions. Only this package creates them.
 */
public class KvException extends RuntimeException {
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

  /**
   * Why the call failed.
   *
   * @return the status; never {@link Status#OK}, {@link Status#KEY_EXISTS} or {@link
   *     Status#NOT_FOUND}
   */
  public Status status() {
    return status;
  }

  /** The same failure again, with this one as its cause, for a call that fails for it later. */
  KvException again() {
    if (this instanceof KvConnectionException) {
      return new KvConnectionException(status, getMessage(), this);
    }
    if (this instanceof KvTimeoutException) {
      return new KvTimeoutException(getMessage(), this);
    }
    if (this instanceof KvRejectedException) {
      return new KvRejectedException(status, getMessage(), this);
    }
    return new KvException(status, getMessage(), this);
  }
}
