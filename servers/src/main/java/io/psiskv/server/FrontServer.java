package io.psiskv.server;

/** Placeholder: the Front Server arrives with the servers work of issue 2. */
public final class FrontServer {
  private FrontServer() {}

  public static void main(String[] args) {
    throw new UnsupportedOperationException("not built yet");
  }
}
