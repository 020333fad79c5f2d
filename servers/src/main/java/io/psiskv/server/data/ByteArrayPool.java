package io.psiskv.server.data;

import java.nio.ByteBuffer;
import java.util.ArrayDeque;

/**
 * Equal-sized heap buffers (a byte array and its {@link ByteBuffer} view, lent together so that
 * lending allocates nothing) lent to connections while they have bytes in flight, so that an idle
 * connection holds no buffer and a busy one allocates none per request (memcached's per-thread
 * read-buffer cache). At most {@code maxPooled} arrays are kept; a surplus returned array is left
 * to the collector.
 *
 * <p>Not thread-safe: each event loop, and each blocking connection thread, has its own pool.
 */
final class ByteArrayPool {
  private final int arrayBytes;
  private final int maxPooled;
  private final ArrayDeque<ByteBuffer> free = new ArrayDeque<>();

  ByteArrayPool(int arrayBytes, int maxPooled) {
    this.arrayBytes = arrayBytes;
    this.maxPooled = maxPooled;
  }

  /** The capacity of every buffer of this pool. */
  int arrayBytes() {
    return arrayBytes;
  }

  /**
   * A cleared heap buffer of {@link #arrayBytes} bytes (use its {@code array()} directly or the
   * buffer); its content is undefined.
   */
  ByteBuffer take() {
    ByteBuffer b = free.pollFirst();
    return b != null ? b.clear() : ByteBuffer.allocate(arrayBytes);
  }

  /** Returns a buffer taken from this pool; the caller must not use it afterwards. */
  void give(ByteBuffer b) {
    if (free.size() < maxPooled) {
      free.addFirst(b);
    }
  }

  /** Buffers kept for reuse now (for tests and figures). */
  int pooled() {
    return free.size();
  }
}
