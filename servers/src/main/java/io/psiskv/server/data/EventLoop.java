package io.psiskv.server.data;

import io.psiskv.server.ServerConfig;
import io.psiskv.server.ServerLog;
import io.psiskv.server.ServerLogProblems;
import io.psiskv.server.Sockets;
import io.psiskv.server.store.CommitPolicy;
import io.psiskv.server.store.Engine;
import io.psiskv.server.store.ServerStats;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.util.ArrayList;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * One selector thread ({@code data-loop-I}) of the event-loop policy, serving every connection
 * the {@link EventLoopTransport} hands it, as memcached's worker threads each run one libevent
 * loop. A wake-up:
 *
 * <ol>
 *   <li>waits once ({@code select}), then for every ready connection reads what is there (one
 *       read of at most {@link ServerConfig#CONNECTION_BUFFER_BYTES}) and feeds it to the
 *       connection's {@link RequestHandler}, which serves every complete request and queues the
 *       answers;
 *   <li>writes the answers that wait for no record (reads), so a read never waits for a force;
 *   <li>commits, if writes were applied that no commit has taken: their records are written and
 *       forced once for all of them (Redis's "write the AOF before replying", ZooKeeper's
 *       SyncRequestProcessor). The {@link CommitPolicy} says by whom: this thread itself ({@link
 *       Engine#commit}) while writes come one at a time, or the log's sync thread ({@link
 *       Engine#requestCommit}) when writers overlap, so that this loop goes on serving during
 *       the force; that commit's listener then wakes the loop;
 *   <li>writes the answers whose records are now durable (or failed: SERVER_ERROR), each
 *       connection's with one (gathering) write.
 * </ol>
 *
 * <p><b>Backpressure and bounds.</b> A connection with answers not yet written is not read from;
 * a peer that does not read its answers holds one buffer and is closed when its answers have not
 * moved for the request timeout. Buffers are lent per connection only while bytes are in flight
 * ({@link ByteArrayPool}): an idle connection holds none. A connection whose PUT value waits for
 * body budget is parked (not read from) until budget is released. Every {@link
 * ServerConfig#DEADLINE_CHECK_INTERVAL_MILLIS} the loop closes the connections past a deadline:
 * a request not received whole within the request timeout, a connection without a session idle
 * for the idle timeout, an error close's linger.
 *
 * <p><b>Threads.</b> Everything here belongs to the loop's thread, but {@link #add}, {@link
 * #stop}, the two wake-ups (commit and budget listeners) and a connection's close request (a
 * resume of its session elsewhere), which only touch the concurrent queues, volatile flags and
 * {@link Selector#wakeup}.
 */
final class EventLoop implements Runnable {
  private final Engine engine;
  private final ServerConfig config;
  private final BodyBudget budget;
  private final ConnectionLimit limit;
  private final ServerLogProblems problems;
  private final CommitPolicy commitPolicy;
  private final Selector selector;
  private final ByteBuffer readBuf =
      ByteBuffer.allocateDirect(ServerConfig.CONNECTION_BUFFER_BYTES);
  private final ByteArrayPool pool = new ByteArrayPool(ServerConfig.CONNECTION_BUFFER_BYTES,
      ServerConfig.POOLED_BUFFERS_PER_LOOP);
  private final ConcurrentLinkedQueue<SocketChannel> incoming = new ConcurrentLinkedQueue<>();
  /** Connections whose session another connection resumed: closed by the loop (any thread adds). */
  private final ConcurrentLinkedQueue<Conn> takenOver = new ConcurrentLinkedQueue<>();
  /** Connections with answers queued, waiting for the commit and the write of this wake-up. */
  private final ArrayList<Conn> toFlush = new ArrayList<>();
  private final ArrayList<Conn> stillWaiting = new ArrayList<>();
  /** Connections whose PUT value waits for body budget. */
  private final ArrayList<Conn> parkedConns = new ArrayList<>();
  private final Runnable onCommit = this::commitHappened;
  private final Runnable onBudget = this::budgetReleased;

  /** Set before this loop relies on another thread's commit; the commit listener then wakes it. */
  private volatile boolean awaitingCommit;
  /** The last commit attempt found another thread committing: wait for its listener call. */
  private boolean commitDeferred;
  private volatile boolean budgetChanged;
  private volatile boolean stopping;
  private volatile long drainDeadlineNanos;
  private long nextDeadlineCheckNanos;
  /** Written by the loop's thread only; read by others as a figure. */
  private volatile int open;
  /** The requests this loop served, for STATS; registered for the server's life. */
  private final ServerStats.Counters counters;

  EventLoop(Engine engine, ServerConfig config, BodyBudget budget, ConnectionLimit limit,
      ServerLogProblems problems, CommitPolicy commitPolicy) throws IOException {
    this.commitPolicy = commitPolicy;
    this.engine = engine;
    this.config = config;
    this.budget = budget;
    this.limit = limit;
    this.problems = problems;
    this.selector = Selector.open();
    this.counters = engine.stats().register();
  }

  /** Hands a new connection (counted by the limit) to this loop; any thread. */
  void add(SocketChannel channel) {
    incoming.add(channel);
    selector.wakeup();
  }

  /** Connections this loop serves now (read by any thread: a figure, not a synchronisation). */
  int openConnections() {
    return open;
  }

  /**
   * Asks the loop to stop (any thread): from its next wake-up on it closes every connection that
   * owes no answer and has no request half-received, so the others finish their request and are
   * answered first; it ends when none is left, or at {@code deadlineNanos}, closing the rest.
   */
  void stop(long deadlineNanos) {
    drainDeadlineNanos = deadlineNanos;
    stopping = true;
    selector.wakeup();
  }

  private void commitHappened() {
    if (awaitingCommit) {
      selector.wakeup();
    }
  }

  private void budgetReleased() {
    budgetChanged = true;
    if (!parkedConns.isEmpty()) { // A racy read: a stale answer costs one wake-up or one tick.
      selector.wakeup();
    }
  }

  @Override
  public void run() {
    engine.addCommitListener(onCommit);
    budget.addListener(onBudget);
    try {
      while (!(stopping && (open == 0 || System.nanoTime() - drainDeadlineNanos >= 0))) {
        if (!commitDeferred && engine.hasUncommitted()) {
          selector.selectNow(this::ready); // Writes wait for a commit this loop must make.
        } else {
          selector.select(this::ready, ServerConfig.DEADLINE_CHECK_INTERVAL_MILLIS);
        }
        long now = System.nanoTime();
        takeIncoming(now);
        for (Conn c; (c = takenOver.poll()) != null; ) {
          c.close(ServerLogProblems.Kind.TAKEN_OVER, "its session was resumed on another connection");
        }
        if (budgetChanged) {
          budgetChanged = false;
          retryParked(now);
        }
        commitAndFlush();
        if (stopping) {
          closeIdleForStop();
        }
        if (now - nextDeadlineCheckNanos >= 0) {
          checkDeadlines(now);
          nextDeadlineCheckNanos = now + ServerConfig.DEADLINE_CHECK_INTERVAL_MILLIS * 1_000_000L;
        }
      }
    } catch (IOException | RuntimeException e) {
      ServerLog.error(Thread.currentThread().getName() + " failed, closing its connections: "
          + ServerLog.describe(e));
    } finally {
      engine.removeCommitListener(onCommit);
      budget.removeListener(onBudget);
      for (SelectionKey k : selector.keys()) {
        ((Conn) k.attachment()).close(null, null);
      }
      for (SocketChannel c; (c = incoming.poll()) != null; ) {
        limit.closed();
        Sockets.closeQuietly(c);
      }
      Sockets.closeQuietly(selector);
    }
  }

  private void takeIncoming(long now) {
    for (SocketChannel c; (c = incoming.poll()) != null; ) {
      if (stopping) {
        limit.closed();
        Sockets.closeQuietly(c);
        continue;
      }
      try {
        c.configureBlocking(false);
        c.socket().setTcpNoDelay(true);
        Conn conn = new Conn(c, now);
        conn.key = c.register(selector, SelectionKey.OP_READ, conn);
        open++;
      } catch (IOException e) {
        limit.closed();
        Sockets.closeQuietly(c);
      }
    }
  }

  private void ready(SelectionKey k) {
    Conn c = (Conn) k.attachment();
    try {
      if (c.lingerDeadlineNanos != 0) {
        c.drainLinger();
        return;
      }
      if (k.isWritable()) {
        c.writeMore();
      }
      if (k.isValid() && k.isReadable()) {
        if (!c.replies.isEmpty()) {
          // Answers wait (for a commit): read nothing more until they are written. Only now,
          // when the peer sent more, is the interest dropped; a client that sends one request
          // at a time never costs the two epoll_ctl calls.
          k.interestOps(0);
          return;
        }
        c.readAndServe(true);
      }
    } catch (IOException e) {
      c.close(ServerLogProblems.Kind.FAILED, stopping ? null : "connection failed: " + ServerLog.describe(e));
    } catch (RuntimeException e) {
      c.close(ServerLogProblems.Kind.FAILED, "internal error, closing: " + ServerLog.describe(e));
    }
  }

  /**
   * The writes of this wake-up. Answers that wait for no record (reads, and writes whose records
   * are durable) go out first, so a read never waits for a force; then the commit; then the
   * answers it made durable. Answers whose records another thread is committing stay queued, and
   * that thread's commit listener wakes this loop.
   */
  private void commitAndFlush() {
    if (toFlush.isEmpty() && !engine.hasUncommitted()) {
      awaitingCommit = false;
      commitDeferred = false;
      return;
    }
    flushSettled();
    awaitingCommit = true; // Before trying: a commit finishing meanwhile must wake us.
    long now = System.nanoTime();
    if (!engine.hasUncommitted()) {
      commitDeferred = true; // Another thread's commit holds our records: its listener wakes us.
    } else if (commitPolicy.commitInline(now)) {
      commitDeferred = !engine.commit(false);
    } else {
      engine.requestCommit();
      commitDeferred = true;
    }
    flushSettled();
    if (!commitDeferred) {
      commitPolicy.afterCommit(now);
    }
    awaitingCommit = !toFlush.isEmpty() || engine.hasUncommitted();
  }

  /** Writes the answers of every queued connection whose records are settled. */
  private void flushSettled() {
    stillWaiting.clear();
    for (int i = 0; i < toFlush.size(); i++) { // Writing may queue more (a served leftover).
      Conn c = toFlush.get(i);
      if (!c.key.isValid()) {
        continue;
      }
      if (!c.replies.settle(engine)) {
        stillWaiting.add(c);
        continue;
      }
      c.notWaiting();
      try {
        c.writeMore();
      } catch (IOException e) {
        c.close(ServerLogProblems.Kind.FAILED, stopping ? null : "connection failed: " + ServerLog.describe(e));
      } catch (RuntimeException e) {
        c.close(ServerLogProblems.Kind.FAILED, "internal error, closing: " + ServerLog.describe(e));
      }
    }
    toFlush.clear();
    toFlush.addAll(stillWaiting);
  }

  private void retryParked(long now) {
    ArrayList<Conn> retry = new ArrayList<>(parkedConns);
    parkedConns.clear();
    for (Conn c : retry) {
      if (!c.key.isValid()) {
        continue;
      }
      c.isParked = false;
      try {
        c.readAndServe(false);
      } catch (IOException e) {
        c.close(ServerLogProblems.Kind.FAILED, "connection failed: " + ServerLog.describe(e));
      } catch (RuntimeException e) {
        c.close(ServerLogProblems.Kind.FAILED, "internal error, closing: " + ServerLog.describe(e));
      }
    }
  }

  /** During the stop: closes the connections that owe nothing and have nothing half-received. */
  private void closeIdleForStop() {
    for (SelectionKey k : selector.keys()) {
      Conn c = (Conn) k.attachment();
      if (k.isValid() && c.replies.isEmpty() && c.leftoverLength == 0
          && c.handler.partialSinceNanos() == 0) {
        c.close(null, null);
      }
    }
  }

  private void checkDeadlines(long now) {
    long requestNanos = config.requestTimeoutMillis * 1_000_000L;
    long idleNanos = config.idleTimeoutMillis * 1_000_000L;
    for (SelectionKey k : selector.keys()) {
      Conn c = (Conn) k.attachment();
      if (!k.isValid()) {
        continue;
      }
      if (c.lingerDeadlineNanos != 0) {
        if (now - c.lingerDeadlineNanos >= 0) {
          c.close(null, null);
        }
        continue;
      }
      long partial = c.handler.partialSinceNanos();
      if (partial != 0 && now - partial > requestNanos) {
        limit.closedStalled();
        c.close(null, null);
      } else if (!c.replies.isEmpty() && now - c.lastOutputNanos > requestNanos) {
        limit.closedStalled();
        c.close(null, null);
      } else if (!c.handler.hasSession() && partial == 0 && c.replies.isEmpty()
          && now - c.lastInputNanos > idleNanos) {
        limit.closedIdle();
        c.close(null, null);
      }
    }
  }

  /** One connection of this loop; every field belongs to the loop's thread. */
  private final class Conn {
    final SocketChannel channel;
    final ReplyQueue replies = new ReplyQueue(pool);
    final RequestHandler handler;
    SelectionKey key;
    /** Input the handler left unconsumed (a partial request, or requests not yet served). */
    ByteBuffer leftover;
    int leftoverLength;
    /** Why the handler last stopped. */
    RequestHandler.Outcome last = RequestHandler.Outcome.NEED_INPUT;
    boolean inputEnded;
    boolean isParked;
    long lastInputNanos;
    long lastOutputNanos;
    /** Non-zero while lingering after an error answer: the close is due then. */
    long lingerDeadlineNanos;
    int lingerDrained;
    boolean closed;
    /** Counted by the commit policy as a writer waiting for its record. */
    boolean waiting;

    void notWaiting() {
      if (waiting) {
        waiting = false;
        commitPolicy.writerDone();
      }
    }

    Conn(SocketChannel channel, long now) {
      this.channel = channel;
      this.handler = new RequestHandler(engine, config.maxValueBytes, budget, replies,
          Sockets.peer(channel.socket()), problems, () -> {
            takenOver.add(this);
            selector.wakeup();
          }, counters);
      this.lastInputNanos = now;
      this.lastOutputNanos = now;
    }

    /**
     * Puts the unconsumed input and (if {@code fromSocket}) one read's worth of new bytes into the
     * loop's buffer and feeds the handler.
     */
    void readAndServe(boolean fromSocket) throws IOException {
      readBuf.clear();
      if (leftoverLength > 0) {
        readBuf.put(leftover.array(), 0, leftoverLength);
        pool.give(leftover);
        leftover = null;
        leftoverLength = 0;
      }
      long now = System.nanoTime();
      if (fromSocket && !inputEnded) {
        int n = channel.read(readBuf);
        if (n < 0) {
          inputEnded = true;
        } else if (n > 0) {
          lastInputNanos = now;
        }
      }
      readBuf.flip();
      serve(now);
    }

    private void serve(long now) throws IOException {
      last = handler.feed(readBuf, now);
      if (readBuf.hasRemaining()) {
        leftoverLength = readBuf.remaining();
        leftover = pool.take();
        readBuf.get(leftover.array(), 0, leftoverLength);
      }
      if (last == RequestHandler.Outcome.NEED_BUDGET && !isParked) {
        isParked = true;
        parkedConns.add(this);
      }
      if (!replies.isEmpty()) {
        // No more requests until the answers are written (backpressure; see ready()).
        lastOutputNanos = now;
        if (replies.needSeq() != 0 && !waiting) {
          waiting = true;
          commitPolicy.writerWaits();
        }
        toFlush.add(this);
        return;
      }
      afterAnswers();
    }

    /** The queue is empty: linger, serve on, close, park or read on, as the last outcome says. */
    private void afterAnswers() throws IOException {
      if (handler.isClosing()) {
        startLinger();
      } else if (last == RequestHandler.Outcome.OUTPUT_FULL) {
        readAndServe(false); // Whole requests are left in the leftover: serve them now.
      } else if (inputEnded) {
        String broken = handler.describePartial(leftoverLength);
        close(ServerLogProblems.Kind.BROKEN_OFF,
            broken == null ? null : "closed the connection " + broken);
      } else if (isParked) {
        key.interestOps(0);
      } else {
        key.interestOps(SelectionKey.OP_READ);
      }
    }

    /** Writes what the settled queue holds; once it is empty, goes on with the connection. */
    void writeMore() throws IOException {
      if (replies.writeTo(channel)) {
        lastOutputNanos = System.nanoTime();
        afterAnswers();
      } else {
        lastOutputNanos = System.nanoTime();
        key.interestOps(SelectionKey.OP_WRITE);
      }
    }

    /**
     * After an error answer was written: stop writing, discard what the peer still sends for at
     * most {@link ServerConfig#ERROR_LINGER_MILLIS} and {@link ServerConfig#ERROR_LINGER_MAX_BYTES},
     * then close, so that the close does not turn into a reset that destroys the answer.
     */
    private void startLinger() throws IOException {
      channel.shutdownOutput();
      lingerDeadlineNanos = System.nanoTime() + ServerConfig.ERROR_LINGER_MILLIS * 1_000_000L;
      key.interestOps(SelectionKey.OP_READ);
      drainLinger();
    }

    void drainLinger() throws IOException {
      while (true) {
        readBuf.clear();
        int n = channel.read(readBuf);
        if (n < 0 || (lingerDrained += Math.max(n, 0)) >= ServerConfig.ERROR_LINGER_MAX_BYTES) {
          close(null, null);
          return;
        }
        if (n == 0) {
          return;
        }
      }
    }

    /** Closes the connection; logs {@code reason} as a problem of {@code kind} unless null. */
    void close(ServerLogProblems.Kind kind, String reason) {
      if (closed) {
        return;
      }
      closed = true;
      if (reason != null) {
        handler.problem(kind, reason);
      }
      if (key != null) {
        key.cancel();
      }
      Sockets.closeQuietly(channel);
      notWaiting();
      handler.close();
      if (leftover != null) {
        pool.give(leftover);
        leftover = null;
        leftoverLength = 0;
      }
      if (isParked) {
        parkedConns.remove(this);
        isParked = false;
      }
      open--;
      limit.closed();
    }
  }
}
