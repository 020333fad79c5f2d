package io.psiskv.server.data;

import io.psiskv.server.ServerConfig;
import io.psiskv.server.ServerLog;
import io.psiskv.server.ServerLogProblems;
import io.psiskv.server.Sockets;
import io.psiskv.server.store.Engine;
import io.psiskv.server.store.ServerStats;
import java.io.IOException;
import java.io.InputStream;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

/**
 * One data connection served by one thread from its first byte to its close, for the {@code
 * on-demand} and {@code pool:N} policies ({@link BlockingTransport}): blocking reads into the
 * thread's own buffer, the shared {@link RequestHandler} for the protocol, and a blocking wait for
 * durability before the answers are written ({@link Engine#awaitDurable}, which commits itself
 * when no other thread is committing).
 *
 * <p><b>Timeouts</b> (ServerConfig): a request must arrive whole within the request timeout of its
 * first byte, and a connection without a session is closed after the idle timeout; under {@code
 * pool:N} a connection with a session is closed after the pool idle timeout, which frees its
 * thread (the client reconnects and resumes on its next call).
 *
 * <p><b>Stop coordination</b>, the only state shared with another thread: {@code activity} is
 * IDLE while the thread waits for a request with nothing of one received, BUSY otherwise, and STOP
 * once the server asked the connection to stop ({@link #requestStop}). An idle connection is
 * closed at once (its blocked read fails); a busy one finishes its request, sees STOP when it
 * tries to become idle again, and closes. Either the server's STOP or the thread's IDLE-to-BUSY
 * wins the atomic swap, so a request is either finished or never started.
 */
final class BlockingConnection implements Runnable {
  private static final int IDLE = 0;
  private static final int BUSY = 1;
  private static final int STOP = 2;

  private final SocketChannel channel;
  private final Engine engine;
  private final ServerConfig config;
  private final BodyBudget budget;
  private final ConnectionLimit limit;
  private final ServerLogProblems problems;
  private final Consumer<BlockingConnection> onClosed;
  private final AtomicInteger activity = new AtomicInteger(BUSY);

  BlockingConnection(SocketChannel channel, Engine engine, ServerConfig config, BodyBudget budget,
      ConnectionLimit limit, ServerLogProblems problems, Consumer<BlockingConnection> onClosed) {
    this.channel = channel;
    this.engine = engine;
    this.config = config;
    this.budget = budget;
    this.limit = limit;
    this.problems = problems;
    this.onClosed = onClosed;
  }

  /** Asks the connection to close after its current request (now, if it has none). */
  void requestStop() {
    if (activity.getAndSet(STOP) == IDLE) {
      Sockets.closeQuietly(channel);
    }
  }

  /**
   * Closes the connection now, even in the middle of a request: the stop's last resort, and a
   * resume of this connection's session on another one (any thread).
   */
  void forceClose() {
    activity.set(STOP);
    Sockets.closeQuietly(channel);
  }

  @Override
  public void run() {
    String peer = Sockets.peer(channel.socket());
    ByteArrayPool pool = new ByteArrayPool(ServerConfig.CONNECTION_BUFFER_BYTES, 1);
    // Per connection: this thread's counters, added to the server's totals when it ends.
    ServerStats.Counters counters = engine.stats().register();
    RequestHandler handler =
        new RequestHandler(engine, config.maxValueBytes, budget, new ReplyQueue(pool), peer,
            problems, this::forceClose, counters);
    try {
      channel.socket().setTcpNoDelay(true);
      serve(handler);
    } catch (IdleTimeout e) {
      if (!handler.hasSession()) {
        limit.closedIdle(); // A pool thread freeing itself from an idle session is no problem.
      }
    } catch (SocketTimeoutException e) {
      limit.closedStalled();
    } catch (IOException e) {
      if (activity.get() != STOP) {
        handler.problem(ServerLogProblems.Kind.FAILED, "connection failed: " + ServerLog.describe(e));
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (RuntimeException e) {
      handler.problem(ServerLogProblems.Kind.FAILED, "internal error, closing: " + ServerLog.describe(e));
    } finally {
      handler.close();
      engine.stats().retire(counters);
      Sockets.closeQuietly(channel);
      onClosed.accept(this);
    }
  }

  private void serve(RequestHandler handler) throws IOException, InterruptedException {
    InputStream input = channel.socket().getInputStream();
    byte[] inArray = new byte[ServerConfig.CONNECTION_BUFFER_BYTES];
    ByteBuffer in = ByteBuffer.wrap(inArray).limit(0);
    while (true) {
      RequestHandler.Outcome o = handler.feed(in, System.nanoTime());
      flush(handler);
      switch (o) {
        case CLOSE:
          Sockets.lingerAndClose(channel.socket(), inArray);
          return;
        case OUTPUT_FULL:
          continue;
        case NEED_BUDGET:
          if (!handler.awaitBudget(deadline(handler))) {
            throw new SocketTimeoutException("request deadline");
          }
          continue;
        default:
          break;
      }
      in.compact();
      boolean partial = in.position() > 0 || handler.partialSinceNanos() != 0;
      if (!partial && !activity.compareAndSet(BUSY, IDLE)) {
        return; // The server is stopping; no request was started.
      }
      int n = read(input, handler, inArray, in.position(), partial);
      if (!partial && !activity.compareAndSet(IDLE, BUSY)) {
        return;
      }
      if (n < 0) {
        String broken = handler.describePartial(in.position());
        if (broken != null) {
          handler.problem(ServerLogProblems.Kind.BROKEN_OFF, "closed the connection " + broken);
        }
        return;
      }
      in.position(in.position() + n).flip();
    }
  }

  /** Reads what arrives, up to the deadline that applies now; -1 at end of stream. */
  private int read(InputStream input, RequestHandler handler, byte[] into, int off,
      boolean partial) throws IOException {
    long timeoutMillis = 0;
    if (partial) {
      timeoutMillis = Math.max(1, (deadline(handler) - System.nanoTime()) / 1_000_000L);
    } else if (!handler.hasSession()) {
      timeoutMillis = config.idleTimeoutMillis;
    } else if (config.threads.kind() == ServerConfig.ThreadPolicy.Kind.POOL) {
      timeoutMillis = config.poolIdleTimeoutMillis;
    }
    channel.socket().setSoTimeout((int) Math.min(Integer.MAX_VALUE, timeoutMillis));
    try {
      return input.read(into, off, into.length - off);
    } catch (SocketTimeoutException e) {
      if (partial) {
        throw e; // Past the request deadline.
      }
      throw new IdleTimeout(); // Idle without a session, or a pool thread's idle timeout.
    }
  }

  /** The deadline of the request now partly received. */
  private long deadline(RequestHandler handler) {
    long since = handler.partialSinceNanos();
    return (since != 0 ? since : System.nanoTime())
        + config.requestTimeoutMillis * 1_000_000L;
  }

  /** An idle connection's timeout passed: closed quietly, counted for the log summary. */
  private static final class IdleTimeout extends IOException {
    private static final long serialVersionUID = 1L;
  }

  /** Waits until the queued answers' records are settled, then writes them all. */
  private void flush(RequestHandler handler) throws IOException {
    ReplyQueue replies = handler.replies();
    if (replies.isEmpty()) {
      return;
    }
    if (replies.needSeq() != 0) {
      engine.awaitDurable(replies.needSeq()); // The record is on disk before the client hears OK.
      replies.settle(engine);
    }
    replies.writeTo(channel);
  }
}
