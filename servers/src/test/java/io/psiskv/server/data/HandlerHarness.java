package io.psiskv.server.data;

import io.psiskv.server.ServerConfig;
import io.psiskv.server.ServerLogProblems;
import io.psiskv.server.store.Engine;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.GatheringByteChannel;

/**
 * Drives one {@link RequestHandler} in process the way a transport does, with no socket: chunks
 * of bytes are appended to its input, answers are settled (committing the log when they wait for
 * a record) and written to an in-memory channel. A test feeds a request stream split however it
 * likes and compares the bytes that come out.
 */
final class HandlerHarness {
  final Engine engine;
  final BodyBudget budget;
  final ByteArrayPool pool = new ByteArrayPool(ServerConfig.CONNECTION_BUFFER_BYTES, 4);
  final RequestHandler handler;
  final MemoryChannel out = new MemoryChannel(Integer.MAX_VALUE);
  private ByteBuffer in = ByteBuffer.allocate(1024).flip();
  RequestHandler.Outcome last = RequestHandler.Outcome.NEED_INPUT;
  /** Set when the answers are written but the log commit was left to the test. */
  boolean autoCommit = true;

  /** The handler's problem lines (rate-limited as in a server). */
  final java.util.List<String> logLines =
      java.util.Collections.synchronizedList(new java.util.ArrayList<>());
  /** How often the handler's connection was asked to close (its session taken over). */
  final java.util.concurrent.atomic.AtomicInteger closeRequests =
      new java.util.concurrent.atomic.AtomicInteger();

  HandlerHarness(Engine engine, BodyBudget budget, int maxValueBytes) {
    this(engine, budget, maxValueBytes, null);
  }

  /** With {@code problems} shared by several harnesses (null: one of its own). */
  HandlerHarness(Engine engine, BodyBudget budget, int maxValueBytes, ServerLogProblems problems) {
    this.engine = engine;
    this.budget = budget;
    this.handler = new RequestHandler(engine, maxValueBytes, budget, new ReplyQueue(pool),
        "test-peer", problems != null ? problems
            : new ServerLogProblems(logLines::add, ServerConfig.LOG_SUMMARY_INTERVAL_MILLIS,
                ServerConfig.LOG_PROBLEM_LINES_PER_INTERVAL),
        closeRequests::incrementAndGet, engine.stats().register());
  }

  /** Appends {@code chunk} to the unconsumed input and serves what can be served. */
  RequestHandler.Outcome feed(byte[] chunk) throws IOException {
    ByteBuffer grown = ByteBuffer.allocate(Math.max(in.capacity(), in.remaining() + chunk.length));
    grown.put(in).put(chunk).flip();
    in = grown;
    return serve();
  }

  /** Feeds again what is left (after a budget release, say). */
  RequestHandler.Outcome serve() throws IOException {
    while (true) {
      last = handler.feed(in, System.nanoTime());
      flush();
      if (last != RequestHandler.Outcome.OUTPUT_FULL) {
        return last;
      }
    }
  }

  /** Settles and writes the queued answers; commits the log first if they wait for it. */
  void flush() throws IOException {
    ReplyQueue replies = handler.replies();
    if (replies.isEmpty()) {
      return;
    }
    if (replies.needSeq() != 0 && autoCommit) {
      engine.commit(true);
    }
    if (replies.settle(engine)) {
      replies.writeTo(out);
    }
  }

  /** Input bytes the handler has not consumed. */
  int unconsumed() {
    return in.remaining();
  }

  /** An in-memory channel that takes at most {@code perCall} bytes per write. */
  static final class MemoryChannel implements GatheringByteChannel {
    final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    int perCall;
    int calls;

    MemoryChannel(int perCall) {
      this.perCall = perCall;
    }

    @Override
    public long write(ByteBuffer[] srcs, int offset, int length) {
      calls++;
      long n = 0;
      for (int i = offset; i < offset + length && n < perCall; i++) {
        n += take(srcs[i], (int) (perCall - n));
      }
      return n;
    }

    @Override
    public long write(ByteBuffer[] srcs) {
      return write(srcs, 0, srcs.length);
    }

    @Override
    public int write(ByteBuffer src) {
      calls++;
      return take(src, perCall);
    }

    private int take(ByteBuffer src, int max) {
      int n = Math.min(src.remaining(), max);
      byte[] b = new byte[n];
      src.get(b);
      bytes.write(b, 0, n);
      return n;
    }

    @Override
    public boolean isOpen() {
      return true;
    }

    @Override
    public void close() {}

    byte[] toByteArray() {
      return bytes.toByteArray();
    }
  }
}
