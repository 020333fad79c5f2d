package io.psiskv.client;

import io.psiskv.protocol.Status;

/**
 * The request was refused, not applied: the server answered an error status ({@link #status()}:
 * {@link Status#TOO_LARGE}, {@link Status#BAD_REQUEST}, {@link Status#UNKNOWN_OPCODE}, {@link
 * Status#UNSUPPORTED_VERSION}, {@link Status#NO_SESSION}, {@link Status#FORBIDDEN} or {@link
 * Status#SERVER_ERROR}; PROTOCOL.md §5), or the client refused to send it for the reason the server
 * would have given ({@link Status#TOO_LARGE}: a value over {@link KvClient#maxValueBytes()}).
 * Sending the same request again is refused again (except perhaps {@link Status#SERVER_ERROR}, a
 * failure of the server such as its disk).
 */
public final class KvRejectedException extends KvException {
  private static final long serialVersionUID = 1L;

  KvRejectedException(Status status, String message) {
    super(status, message);
  }

  KvRejectedException(Status status, String message, Throwable cause) {
    super(status, message, cause);
  }
}
