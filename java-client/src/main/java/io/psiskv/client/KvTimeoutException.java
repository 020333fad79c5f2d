package io.psiskv.client;

import io.psiskv.protocol.Status;

/**
 * A call did not finish within the client's call timeout ({@link KvClient.Builder#callTimeout}).
 * Its {@link #status()} is {@link Status#IO_ERROR}. The connection the call was using has been
 * dropped; the next call connects again. A write that timed out may or may not have been applied,
 * and the client does not send it again (see {@link KvClient}, "Call timeout").
 */
public final class KvTimeoutException extends KvException {
  private static final long serialVersionUID = 1L;

  KvTimeoutException(String message) {
    super(Status.IO_ERROR, message);
  }

  KvTimeoutException(String message, Throwable cause) {
    super(Status.IO_ERROR, message, cause);
  }
}
