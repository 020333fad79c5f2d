package io.psiskv.server.front;

/** Where HELLO redirects clients; immutable, replaced as a whole. */
public final class DataEndpoint {
  public final long pid;
  public final int port;

  DataEndpoint(long pid, int port) {
    this.pid = pid;
    this.port = port;
  }
}
