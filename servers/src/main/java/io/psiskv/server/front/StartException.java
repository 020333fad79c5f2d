package io.psiskv.server.front;

import java.io.IOException;

/** A start failure with a message for the user. */
public final class StartException extends IOException {
  private static final long serialVersionUID = 1L;

  public StartException(String message) {
    super(message);
  }
}
