package io.psiskv.server.data;

import java.io.IOException;
import java.nio.channels.ServerSocketChannel;

/**
 * How the Data Server's client connections are served: the thread policy of {@code --threads}
 * ({@link EventLoopTransport} for {@code event-loop:N}, {@link BlockingTransport} for {@code
 * on-demand} and {@code pool:N}). Every transport feeds its connections' bytes to a {@link
 * RequestHandler} and sends a write's answer only once its record is durable.
 */
public interface DataTransport {
  /** Starts serving connections accepted from {@code listener} (bound, blocking mode). */
  void start(ServerSocketChannel listener) throws IOException;

  /** Data connections open now. */
  int openConnections();

  /**
   * The orderly stop, after the listener was closed: answers what was received whole, closes idle
   * connections at once and busy ones after their request, closes the rest by force after
   * {@code drainMillis}, and returns once no thread of the transport touches the engine any more.
   */
  void stop(long drainMillis) throws InterruptedException;
}
