package io.psiskv.server.data;

import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Status;
import io.psiskv.server.store.Engine;
import io.psiskv.server.store.Store;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.GatheringByteChannel;
import java.util.Arrays;

/**
 * The answers a data connection owes its peer, in request order, until they are written: the
 * encoded bytes in one buffer lent by a {@link ByteArrayPool}, large GET values as references to
 * the stored arrays (values are immutable, {@link Store}), and, for each write, the log sequence
 * its answer waits for. No socket I/O but {@link #writeTo}, which the transport calls.
 *
 * <p><b>Life cycle.</b> The handler appends answers ({@link #claim}, {@link #value}, {@link
 * #awaitRecord}) while the queue has room; the transport checks {@link #needSeq}, settles the
 * answers once every record they wait for is durable or failed ({@link #settle}), and writes. The
 * queue is append-only until it is empty again: then it returns its buffer to the pool and starts
 * at offset 0. A transport reads no more requests from a connection while its queue is not empty
 * (backpressure), so a peer that does not read its answers holds at most one buffer.
 *
 * <p>Owned by one thread at a time (the connection's loop or thread); not thread-safe.
 */
final class ReplyQueue {
  /**
   * At most this many bytes go to one write call: the JDK copies a heap buffer into a temporary
   * direct buffer of the same size for each write, so a 64 MiB value is written in slices.
   */
  static final int WRITE_MAX_BYTES = 256 * 1024;

  private final ByteArrayPool pool;
  /** The pool's buffer and its array; null while the queue is empty. */
  private ByteBuffer bufView;
  private byte[] buf;
  /** Bytes of {@code buf} holding answers. */
  private int tail;
  /** Bytes queued in all: {@code tail} plus the referenced values. */
  private long total;
  /** Bytes of the queue already written. */
  private long sent;

  /** Referenced values, each sent right after {@code buf[0..valueAt[i])}. */
  private byte[][] values = new byte[2][];
  private int[] valueAt = new int[2];
  private int[] valueLen = new int[2];
  private int valueCount;

  /** Write answers waiting for a record: the answer's offset in {@code buf}, its sequence. */
  private int[] markAt = new int[4];
  private long[] markSeq = new long[4];
  private int markCount;
  private long needSeq;

  private ByteBuffer[] segments = new ByteBuffer[4];

  ReplyQueue(ByteArrayPool pool) {
    this.pool = pool;
  }

  /** Whether nothing is left to write. */
  boolean isEmpty() {
    return sent == total;
  }

  /** Whether an answer of {@code bytes} more bytes fits in the buffer. */
  boolean hasRoom(int bytes) {
    return capacity() - tail >= bytes;
  }

  /** The buffer's size: the most bytes of answers one batch of requests can queue. */
  int capacity() {
    return pool.arrayBytes();
  }

  /**
   * Reserves {@code bytes} for an answer the caller encodes at the returned offset of {@link
   * #buffer}. The caller has checked {@link #hasRoom}.
   */
  int claim(int bytes) {
    if (buf == null) {
      bufView = pool.take();
      buf = bufView.array();
    }
    int at = tail;
    tail += bytes;
    total += bytes;
    return at;
  }

  /** Bytes queued since the queue was last empty (grows with every answer until {@link #reset}). */
  long queuedBytes() {
    return total;
  }

  /** The buffer answers are encoded into; valid until the queue is empty again. */
  byte[] buffer() {
    return buf;
  }

  /** Queues {@code len} bytes of a stored value after the answers claimed so far, uncopied. */
  void value(byte[] value, int len) {
    if (valueCount == values.length) {
      int n = valueCount * 2;
      values = Arrays.copyOf(values, n);
      valueAt = Arrays.copyOf(valueAt, n);
      valueLen = Arrays.copyOf(valueLen, n);
    }
    values[valueCount] = value;
    valueAt[valueCount] = tail;
    valueLen[valueCount] = len;
    valueCount++;
    total += len;
  }

  /**
   * The answer at {@code at} waits for the log record {@code seq}: it may be written only once the
   * record is durable, and it becomes SERVER_ERROR if the record fails. {@code seq} 0 waits for
   * nothing.
   */
  void awaitRecord(int at, long seq) {
    if (seq == 0) {
      return;
    }
    if (markCount == markAt.length) {
      markAt = Arrays.copyOf(markAt, markCount * 2);
      markSeq = Arrays.copyOf(markSeq, markCount * 2);
    }
    markAt[markCount] = at;
    markSeq[markCount] = seq;
    markCount++;
    needSeq = Math.max(needSeq, seq);
  }

  /** The highest log sequence a queued answer waits for; 0 if none waits. */
  long needSeq() {
    return needSeq;
  }

  /**
   * Settles the waiting answers once none of their records is pending any more: each stays as
   * encoded if its record is durable and becomes SERVER_ERROR if it failed. Returns false (and
   * changes nothing) while some record is still pending.
   */
  boolean settle(Engine engine) {
    if (needSeq == 0) {
      return true;
    }
    Engine.Durability d = engine.durability(needSeq);
    if (d == Engine.Durability.PENDING) {
      return false;
    }
    if (d == Engine.Durability.FAILED) {
      for (int i = 0; i < markCount; i++) {
        if (engine.durability(markSeq[i]) != Engine.Durability.DURABLE) {
          Messages.setStatus(buf, markAt[i], Status.SERVER_ERROR);
        }
      }
    }
    markCount = 0;
    needSeq = 0;
    return true;
  }

  /**
   * Writes as much of the settled queue as {@code channel} takes (all of it, for a blocking
   * channel, up to {@link #WRITE_MAX_BYTES} per call); returns true once the queue is empty. The
   * caller has settled the queue.
   */
  boolean writeTo(GatheringByteChannel channel) throws IOException {
    if (needSeq != 0) {
      throw new IllegalStateException("answers wait for log records: settle first");
    }
    while (!isEmpty()) {
      long n;
      if (valueCount == 0) {
        bufView.limit(tail).position((int) sent);
        n = channel.write(bufView);
      } else {
        int count = fillSegments(); // First: it may replace the segments array.
        n = channel.write(segments, 0, count);
      }
      if (n == 0) {
        return false; // The peer's window is full: wait until the channel is writable.
      }
      sent += n;
    }
    reset();
    return true;
  }

  /** Fills {@code segments} with the unsent rest (at most WRITE_MAX_BYTES); returns how many. */
  private int fillSegments() {
    int count = 0;
    long budget = WRITE_MAX_BYTES;
    long pos = 0; // Start of the current region in the queue.
    int from = 0; // Start of the current buffer region.
    for (int i = 0; i <= valueCount && budget > 0; i++) {
      int to = i < valueCount ? valueAt[i] : tail;
      count = addSegment(count, pos, to - from, budget, buf, from);
      budget -= remainingIn(pos, to - from, budget);
      pos += to - from;
      from = to;
      if (i < valueCount && budget > 0) {
        count = addSegment(count, pos, valueLen[i], budget, values[i], 0);
        budget -= remainingIn(pos, valueLen[i], budget);
        pos += valueLen[i];
      }
    }
    return count;
  }

  /** Unsent bytes of the region [pos, pos + len) that fit in {@code budget}. */
  private long remainingIn(long pos, int len, long budget) {
    long start = Math.max(pos, sent);
    long end = pos + len;
    return start >= end ? 0 : Math.min(end - start, budget);
  }

  private int addSegment(int count, long pos, int len, long budget, byte[] array, int arrayOff) {
    long n = remainingIn(pos, len, budget);
    if (n == 0) {
      return count;
    }
    int skip = (int) (Math.max(pos, sent) - pos);
    if (count == segments.length) {
      segments = Arrays.copyOf(segments, count * 2);
    }
    segments[count] = ByteBuffer.wrap(array, arrayOff + skip, (int) n);
    return count + 1;
  }

  /** Forgets everything and returns the buffer: the queue is empty, or the connection closed. */
  void reset() {
    if (buf != null) {
      pool.give(bufView);
      buf = null;
      bufView = null;
    }
    Arrays.fill(values, 0, valueCount, null);
    Arrays.fill(segments, null);
    tail = 0;
    total = 0;
    sent = 0;
    valueCount = 0;
    markCount = 0;
    needSeq = 0;
  }
}
