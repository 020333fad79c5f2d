package io.psiskv.client;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.util.Arrays;

/**
 * The receive buffer of one connection, so that a response arrives with as few reads as its bytes
 * allow: a server sends a small response (header, GET stored length and value) at once, and one
 * read of up to the buffer's capacity takes all of it instead of one read per field. {@link
 * ResponseCheck} parses what it is handed with the codec ({@code io.psiskv.protocol}, which does no
 * I/O) and decides what a response must be; this class only moves bytes. The C library's twin is
 * {@code psiskv_net_reader} in {@code native/src/main/c/psiskv_net.h}.
 *
 * <p>Contract. Bytes enter the buffer only in {@link #take}, whose read asks for all the room the
 * buffer has: it cannot know where a response ends before the caller has parsed its header, so it
 * may take bytes that follow the response. For a client with one request in flight those are bytes
 * the server had no reason to send; the caller checks {@link #unread} once a response is complete.
 * {@link #readFully} hands buffered bytes over first and then reads the rest straight into the
 * destination, asking for no more than that rest (and at most {@link
 * Connection#TRANSFER_MAX_BYTES} per read): a large value does not pass through the buffer, and no
 * byte beyond the requested length is read.
 *
 * <p>Not thread-safe: one per connection, used by one thread at a time: the holder of the client's
 * lock, or the client's reader thread while asynchronous requests are in flight (a synchronous
 * call waits until none is).
 */
final class ResponseReader {
  /**
   * The first array of a value {@link #readValue} reads: values up to this size get one array of
   * their exact size; a longer one doubles as its bytes arrive.
   */
  static final int VALUE_INITIAL_BYTES = 1 << 20;

  private final InputStream in;
  private final byte[] bytes;
  /** The first unread byte. */
  private int pos;
  /** The end of the bytes read; {@code pos <= fill <= bytes.length}. */
  private int fill;

  ResponseReader(InputStream in, int capacity) {
    this.in = in;
    this.bytes = new byte[capacity];
  }

  /** The buffer that {@link #take}'s offsets point into. */
  byte[] bytes() {
    return bytes;
  }

  /** Bytes read from the stream and not yet taken or copied. */
  int unread() {
    return fill - pos;
  }

  /**
   * The next {@code n} bytes of the stream ({@code n <= capacity}), read as far as the buffer lacks
   * them, and consumed. Returns their offset in {@link #bytes()}; they stay there until the next
   * call.
   *
   * @throws EOFException if the stream ends first (whatever was read stays unread)
   * @throws IOException as the stream's read
   */
  int take(int n) throws IOException {
    if (fill - pos < n && pos + n > bytes.length) {
      // Too little room behind the unread bytes for the rest of n: move them to the front.
      System.arraycopy(bytes, pos, bytes, 0, fill - pos);
      fill -= pos;
      pos = 0;
    }
    // Loops because a read may return fewer bytes than the buffer has room for.
    while (fill - pos < n) {
      int got = in.read(bytes, fill, bytes.length - fill);
      if (got < 0) {
        throw new EOFException("connection closed by the server");
      }
      fill += got;
    }
    int at = pos;
    consume(n);
    return at;
  }

  /**
   * Copies the next {@code len} bytes of the stream into {@code dst[off..off+len)}: the buffered
   * ones, then the rest read from the stream straight into {@code dst}.
   *
   * @throws EOFException if the stream ends first ({@code dst} then holds a part of them)
   * @throws IOException as the stream's read
   */
  void readFully(byte[] dst, int off, int len) throws IOException {
    int buffered = Math.min(fill - pos, len);
    System.arraycopy(bytes, pos, dst, off, buffered);
    consume(buffered);
    off += buffered;
    len -= buffered;
    while (len > 0) {
      int got = in.read(dst, off, Math.min(len, Connection.TRANSFER_MAX_BYTES));
      if (got < 0) {
        throw new EOFException("connection closed by the server");
      }
      off += got;
      len -= got;
    }
  }

  /**
   * The next {@code len} bytes of the stream in a new array, which grows with the bytes that have
   * arrived rather than with {@code len}: it starts at {@link #VALUE_INITIAL_BYTES} (or {@code len}
   * if smaller) and doubles, each part read by {@link #readFully}. So a server that announces more
   * than it sends costs the client at most twice what it sent, plus the first array, never the
   * length it announced (up to 2 GiB); a value that does arrive costs one copy per doubling.
   *
   * @throws EOFException if the stream ends first
   * @throws IOException as the stream's read
   */
  byte[] readValue(int len) throws IOException {
    byte[] value = new byte[Math.min(len, VALUE_INITIAL_BYTES)];
    int filled = 0;
    while (true) {
      readFully(value, filled, value.length - filled);
      filled = value.length;
      if (filled == len) {
        return value;
      }
      value = Arrays.copyOf(value, (int) Math.min(len, 2L * filled));
    }
  }

  /**
   * Consumes {@code n} buffered bytes; an emptied buffer starts again at its beginning, so that the
   * next read has all of its room.
   */
  private void consume(int n) {
    pos += n;
    if (pos == fill) {
      pos = 0;
      fill = 0;
    }
  }
}
