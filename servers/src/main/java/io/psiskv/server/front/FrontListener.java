package io.psiskv.server.front;

import static io.psiskv.protocol.Protocol.HEADER_BYTES;

import com.sun.management.UnixOperatingSystemMXBean;
import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Rules;
import io.psiskv.protocol.Status;
import io.psiskv.server.ServerConfig;
import io.psiskv.server.ServerLog;
import io.psiskv.server.ServerLogSummary;
import io.psiskv.server.Sockets;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.lang.management.OperatingSystemMXBean;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.ArrayList;
import java.util.function.Supplier;

/**
 * The Front Server's client listener: one thread, {@code front-listener}, runs a selector loop
 * that serves every front connection (PROTOCOL.md §6.1, §6.3): it accepts, reads, answers HELLO
 * and PING, rejects everything else, and closes. Every socket is non-blocking and the loop waits
 * only in {@code select}, so no peer, however slow or silent, delays another.
 *
 * <p><b>A connection's life</b> ({@link State}; the transitions are in this class only):
 *
 * <pre>
 *   accept --> READING --(20 bytes: HELLO or PING)--> WRITING --(answer written)--> READING ...
 *                 |                                      ^  |
 *                 +--(20 bytes break a rule: error)------+  +--(error answer written)--> LINGERING
 *                 |                                                                         |
 *                 +--(end of stream, deadline, idle, eviction, I/O error)--> closed <-------+
 *                                                    (peer's end of stream, 250 ms, 256 KiB)
 * </pre>
 *
 * <p>A request is the 20-byte header: HELLO and PING have no body, and any header that announces
 * one breaks a rule of §6 before its body matters. The connection reads at most the 20 bytes of
 * the current request, and nothing while an answer is being written, so requests are answered
 * in order and pipelined ones wait in the kernel; at most one request per connection is served
 * per wake-up, and all ready connections are served before the wake-up's accepts. An error
 * answer is followed by the non-blocking form of {@link
 * Sockets#lingerAndClose}: output shut down, what the peer still sends discarded for at most
 * {@value ServerConfig#ERROR_LINGER_MILLIS} ms and {@value ServerConfig#ERROR_LINGER_MAX_BYTES}
 * bytes, then close.
 *
 * <p><b>FrontLimits</b> ({@link FrontLimits}; defaults in {@link ServerConfig}):
 *
 * <ul>
 *   <li>Memory: one {@value Messages#MAX_FIXED_BYTES}-byte buffer per connection, used for the
 *       request and then for its answer (at most 26 bytes); one shared drain buffer.
 *   <li>Request deadline: from accept, or from the moment the previous answer was written, the
 *       next request must arrive whole and its answer be written within the deadline, however
 *       often the peer sends; else the connection is closed.
 *   <li>Idle timeout: a connection that has received nothing for that long (since accept, its
 *       last byte or the previous answer) is closed.
 *   <li>Connection cap: at most {@code maxConnections} open, lingering ones included, lowered at
 *       construction to what the open-file limit allows. Accepting one more first closes the
 *       oldest incomplete connection: the one whose request deadline comes first (a lingering one
 *       only when there is none). Why that is safe: a connection is evicted only once it is the
 *       oldest of the cap's worth, so at least that many connections arrived after its clock
 *       started and before its 20 bytes did; and a connection that is not done by its deadline
 *       is closed then anyway. A flood therefore delays no client that
 *       sends its HELLO within the time the flood needs to open the cap's worth of connections
 *       (thousands of connections within the milliseconds a HELLO takes); refusing new
 *       connections at the cap instead would lock every new client out.
 *   <li>A failed accept (no file descriptor left, say) closes the oldest incomplete connection to
 *       make room, or, with none open, pauses accepting for {@value
 *       ServerConfig#FRONT_ACCEPT_RETRY_MILLIS} ms; at most {@value
 *       ServerConfig#FRONT_ACCEPTS_PER_WAKEUP} accepts per wake-up.
 * </ul>
 *
 * The timeouts are kept by the loop itself: each is a {@link TimeoutQueue} (every connection's
 * clock of one kind runs for the same time, so the queues stay in expiry order), checked at
 * every wake-up; the loop sleeps in {@code select} no longer than until the first expiry.
 *
 * <p><b>Logging.</b> A connection that breaks a rule gets one line naming the peer and the rule
 * (at most {@value ServerConfig#LOG_PROBLEM_LINES_PER_INTERVAL} per summary interval; the rest are
 * counted). Timeouts, evictions, peers that vanish mid-request and failed accepts are only
 * counted, and logged as one {@link ServerLogSummary} line per interval. An exception met while
 * serving one connection (a bug) closes that connection only, with one line per interval.
 *
 * <p><b>Threads.</b> The loop thread owns the selector, the listening channel, every connection
 * and its buffer, the queues and the summary. Other threads call only {@link #start}, {@link
 * #close} and {@link #localPort}. The endpoint supplier is called on the loop thread for every
 * HELLO, so it must be a cheap read that never blocks.
 */
public final class FrontListener {
  /** The states of a front connection; see the class comment. */
  private enum State {
    /** Reading a request: in the request and idle queues, interested in reading. */
    READING,
    /** Writing an answer: still in both queues (the deadline covers the answer), writing. */
    WRITING,
    /** After an error answer: output shut down, discarding input; only in the linger queue. */
    LINGERING
  }

  /** One front connection; owned by the loop thread. */
  private static final class Conn {
    final SocketChannel channel;
    SelectionKey key;
    /** The request being read, then its answer: never more than one message. */
    final byte[] bytes = new byte[Messages.MAX_FIXED_BYTES];
    final ByteBuffer buf = ByteBuffer.wrap(bytes, 0, HEADER_BYTES);
    /** In the request-deadline queue (READING, WRITING) or the linger queue (LINGERING). */
    final TimeoutQueue.Node<Conn> byDeadline = new TimeoutQueue.Node<>(this);
    /** In the idle queue (READING, WRITING). */
    final TimeoutQueue.Node<Conn> byActivity = new TimeoutQueue.Node<>(this);
    State state = State.READING;
    /** WRITING an error answer: linger and close once it is written. */
    boolean closeAfterWrite;
    /** LINGERING: bytes discarded so far. */
    int drained;

    Conn(SocketChannel channel) {
      this.channel = channel;
    }
  }

  /** How long {@link #close} waits for the loop to finish (it never blocks but in select). */
  private static final long STOP_JOIN_MILLIS = 1_000;

  private final ServerSocketChannel server;
  private final Selector selector;
  private final SelectionKey serverKey;
  private final FrontLimits limits;
  /** The cap in force: the configured one, or less if the open-file limit says so. */
  private final int maxConnections;
  private final int helloAddress;
  private final int maxValueBytes;
  private final Supplier<DataEndpoint> endpoint;

  // Owned by the loop thread.
  private final TimeoutQueue<Conn> requests;
  private final TimeoutQueue<Conn> idle;
  private final TimeoutQueue<Conn> lingering =
      new TimeoutQueue<>(ServerConfig.ERROR_LINGER_MILLIS);
  private final ByteBuffer drain = ByteBuffer.allocateDirect(4096);
  private final Header header = new Header();
  private boolean acceptPaused;
  /** The listener was ready in this wake-up: accept once the ready connections are served. */
  private boolean acceptReady;
  private long acceptResumeNanos;
  private final ServerLogSummary summary;
  private final ServerLogSummary.Kind pastDeadline;
  private final ServerLogSummary.Kind idleClosed;
  private final ServerLogSummary.Kind evicted;
  private final ServerLogSummary.Kind vanished;
  private final ServerLogSummary.Kind failed;
  private final ServerLogSummary.Kind acceptFailed;
  private final ServerLogSummary.Kind protocolLines;
  private final ServerLogSummary.Kind internalErrors;

  /** Guarded by this. */
  private boolean closed;
  private Thread thread;

  /**
   * Takes over {@code server}, bound and not yet accepting (clients wait in its backlog until
   * {@link #start}); it is closed with this listener.
   *
   * @param helloAddress the HELLO answer's IPv4 address (0: "the host you reached me at")
   * @param endpoint where HELLO redirects: null answers UNAVAILABLE
   */
  public FrontListener(ServerSocketChannel server, FrontLimits limits, int helloAddress,
      int maxValueBytes, Supplier<DataEndpoint> endpoint) throws IOException {
    this.server = server;
    this.limits = limits;
    this.maxConnections = capForOpenFileLimit(limits.maxConnections());
    this.helloAddress = helloAddress;
    this.maxValueBytes = maxValueBytes;
    this.endpoint = endpoint;
    this.requests = new TimeoutQueue<>(limits.requestDeadlineMillis());
    this.idle = new TimeoutQueue<>(limits.idleTimeoutMillis());
    summary = new ServerLogSummary("front connections", limits.summaryIntervalMillis(),
        ServerLog::info);
    pastDeadline = summary.kind(
        "closed past the " + limits.requestDeadlineMillis() + " ms request deadline");
    idleClosed = summary.kind("closed after " + limits.idleTimeoutMillis() + " ms idle");
    evicted = summary.kind("evicted at the cap of " + maxConnections);
    vanished = summary.kind("closed by the peer mid-request");
    failed = summary.kind("failed (reset by the peer or another I/O error)");
    acceptFailed = summary.detailedKind("more accepts failed", 1);
    protocolLines = summary.detailedKind("more broke the protocol (not logged one by one)",
        ServerConfig.LOG_PROBLEM_LINES_PER_INTERVAL);
    internalErrors = summary.detailedKind("more internal errors", 1);
    server.configureBlocking(false);
    selector = Selector.open();
    try {
      serverKey = server.register(selector, SelectionKey.OP_ACCEPT);
    } catch (IOException e) {
      selector.close();
      throw e;
    }
  }

  /** The port clients connect to. */
  public int localPort() {
    return server.socket().getLocalPort();
  }

  /** Starts the loop thread; does nothing after {@link #close}. Called once. */
  public synchronized void start() {
    if (closed) {
      return;
    }
    ServerLog.info("front connections: served by one thread; request deadline "
        + limits.requestDeadlineMillis() + " ms, idle timeout " + limits.idleTimeoutMillis()
        + " ms, at most " + maxConnections + " open"
        + (maxConnections < limits.maxConnections() ? " (not " + limits.maxConnections()
            + ": the open-file limit is too low; raise ulimit -n)" : ""));
    thread = new Thread(this::run, "front-listener");
    thread.setDaemon(true);
    thread.start();
  }

  /**
   * Stops accepting, closes every connection and the listening channel; idempotent, any thread.
   * Waits for the loop thread to finish.
   */
  public void close() {
    Thread t;
    synchronized (this) {
      if (closed) {
        return;
      }
      closed = true;
      t = thread;
    }
    if (t == null) {
      closeAll();
      return;
    }
    selector.wakeup();
    try {
      t.join(STOP_JOIN_MILLIS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private synchronized boolean isClosed() {
    return closed;
  }

  // --- The loop (loop thread only from here on). ---

  private void run() {
    try {
      while (!isClosed()) {
        long now = System.nanoTime();
        expire(now);
        if (acceptPaused && now - acceptResumeNanos >= 0) {
          acceptPaused = false;
          serverKey.interestOps(SelectionKey.OP_ACCEPT);
        }
        summary.flushIfDue(now);
        long wait = nanosUntilNextTimer(now);
        acceptReady = false;
        if (wait == Long.MAX_VALUE) {
          selector.select(this::onReady);
        } else {
          // Rounded up: waking before the first expiry would only loop once more.
          selector.select(this::onReady, Math.max(1, (wait + 999_999) / 1_000_000));
        }
        if (acceptReady) {
          acceptSome(); // After serving: a burst of connects never evicts a request that is in.
        }
      }
    } catch (IOException | RuntimeException e) {
      if (!isClosed()) {
        ServerLog.error("front connections: the listener failed, no more front connections: "
            + ServerLog.describe(e));
      }
    } finally {
      closeAll();
    }
  }

  private long nanosUntilNextTimer(long now) {
    long wait = Math.min(requests.nanosToNextExpiry(now), idle.nanosToNextExpiry(now));
    wait = Math.min(wait, lingering.nanosToNextExpiry(now));
    wait = Math.min(wait, summary.nanosUntilDue(now));
    return acceptPaused ? Math.min(wait, Math.max(0, acceptResumeNanos - now)) : wait;
  }

  /** Closes every connection whose deadline, idle timeout or linger time has passed. */
  private void expire(long now) {
    Conn c;
    while ((c = requests.expired(now)) != null) {
      summary.record(pastDeadline, now);
      close(c);
    }
    while ((c = idle.expired(now)) != null) {
      summary.record(idleClosed, now);
      close(c);
    }
    while ((c = lingering.expired(now)) != null) {
      close(c);
    }
  }

  private void onReady(SelectionKey key) {
    if (key == serverKey) {
      acceptReady = true;
      return;
    }
    if (!key.isValid()) {
      return; // Cancelled: the connection was closed after its readiness was selected.
    }
    Conn c = (Conn) key.attachment();
    long now = System.nanoTime();
    try {
      if (c.state == State.LINGERING) {
        drain(c);
      } else if (c.state == State.WRITING) {
        if (key.isWritable()) {
          write(c, now);
        }
      } else if (key.isReadable()) {
        read(c, now);
      }
    } catch (IOException e) {
      if (c.state != State.LINGERING) {
        summary.record(failed, now);
      }
      close(c);
    } catch (RuntimeException e) {
      // A bug met by one connection ends that connection, not the loop that serves all.
      if (summary.record(internalErrors, now)) {
        ServerLog.error("front connection " + Sockets.peer(c.channel.socket())
            + ": internal error, closing: " + ServerLog.describe(e));
      }
      close(c);
    }
  }

  private void acceptSome() {
    for (int i = 0; i < ServerConfig.FRONT_ACCEPTS_PER_WAKEUP; i++) {
      SocketChannel channel;
      try {
        channel = server.accept();
      } catch (IOException e) {
        acceptFailed(e);
        return;
      }
      if (channel == null) {
        return; // The backlog is empty.
      }
      long now = System.nanoTime();
      if (open() >= maxConnections) {
        summary.record(evicted, now);
        close(oldestIncomplete());
      }
      Conn c = new Conn(channel);
      try {
        channel.configureBlocking(false);
        channel.setOption(StandardSocketOptions.TCP_NODELAY, true);
        c.key = channel.register(selector, SelectionKey.OP_READ, c);
      } catch (IOException e) {
        summary.record(failed, now);
        Sockets.closeQuietly(channel);
        continue;
      }
      requests.restart(c.byDeadline, now);
      idle.restart(c.byActivity, now);
    }
  }

  private void acceptFailed(IOException e) {
    long now = System.nanoTime();
    if (summary.record(acceptFailed, now)) {
      ServerLog.warn("front connections: accept failed (" + ServerLog.describe(e)
          + "); closing the oldest incomplete connection to make room");
    }
    Conn victim = oldestIncomplete();
    if (victim != null) {
      summary.record(evicted, now);
      close(victim);
    } else {
      acceptPaused = true;
      acceptResumeNanos = now + ServerConfig.FRONT_ACCEPT_RETRY_MILLIS * 1_000_000L;
      serverKey.interestOps(0);
    }
  }

  private int open() {
    return requests.size() + lingering.size();
  }

  /** The connection to close to make room: the one nearest its request deadline. */
  private Conn oldestIncomplete() {
    Conn c = requests.oldest();
    return c != null ? c : lingering.oldest();
  }

  /** READING: reads what is there of the request; a complete one is answered. */
  private void read(Conn c, long now) throws IOException {
    int n = c.channel.read(c.buf);
    if (n < 0) {
      if (c.buf.position() > 0) {
        summary.record(vanished, now);
      }
      close(c); // Between requests: the client is done (it closes after HELLO).
      return;
    }
    if (n == 0) {
      return;
    }
    idle.restart(c.byActivity, now);
    if (!c.buf.hasRemaining()) {
      answer(c, now);
    }
  }

  /** A whole request header is in {@code c.bytes}: encodes its answer and starts writing it. */
  private void answer(Conn c, long now) throws IOException {
    Header h = header.decode(c.bytes, 0);
    Rules.Rejection rejection = Rules.checkRequest(h, maxValueBytes);
    Status broken = rejection == null ? null : rejection.status();
    String reason = rejection == null ? null : rejection.reason();
    Opcode op = Opcode.of(h.opcode);
    if (broken == null && op != Opcode.HELLO && op != Opcode.PING) {
      broken = Status.BAD_REQUEST;
      reason = op + " is not a front-connection request";
    }
    int len;
    if (broken != null) {
      if (summary.record(protocolLines, now)) {
        ServerLog.info("front connection " + Sockets.peer(c.channel.socket()) + ": " + reason
            + "; answered " + broken + ", closing");
      }
      len = Messages.status(c.bytes, h.opcode, broken, h.key, h.requestId);
      c.closeAfterWrite = true;
    } else if (op == Opcode.PING) {
      len = Messages.status(c.bytes, h.opcode, Status.OK, 0, h.requestId);
    } else {
      DataEndpoint e = endpoint.get();
      len = e == null
          ? Messages.status(c.bytes, h.opcode, Status.UNAVAILABLE, 0, h.requestId)
          : Messages.helloOk(c.bytes, h.requestId, helloAddress, e.port);
    }
    c.buf.clear().limit(len);
    c.state = State.WRITING;
    write(c, now);
  }

  /** WRITING: writes what the socket takes of the answer; a written one ends the request. */
  private void write(Conn c, long now) throws IOException {
    c.channel.write(c.buf);
    if (c.buf.hasRemaining()) {
      c.key.interestOps(SelectionKey.OP_WRITE);
      return;
    }
    if (c.closeAfterWrite) {
      linger(c, now);
      return;
    }
    c.buf.clear().limit(HEADER_BYTES);
    c.state = State.READING;
    requests.restart(c.byDeadline, now); // The next request's deadline starts now.
    idle.restart(c.byActivity, now);
    c.key.interestOps(SelectionKey.OP_READ);
  }

  /** The error answer is written: shut down output and discard input until the linger ends. */
  private void linger(Conn c, long now) throws IOException {
    c.state = State.LINGERING;
    c.byActivity.detach();
    lingering.restart(c.byDeadline, now);
    c.channel.shutdownOutput();
    c.key.interestOps(SelectionKey.OP_READ);
  }

  /** LINGERING: discards what the peer sends; closes at its end of stream or the byte limit. */
  private void drain(Conn c) throws IOException {
    while (true) {
      drain.clear();
      int n = c.channel.read(drain);
      if (n < 0) {
        close(c);
        return;
      }
      if (n == 0) {
        return;
      }
      c.drained += n;
      if (c.drained >= ServerConfig.ERROR_LINGER_MAX_BYTES) {
        close(c);
        return;
      }
    }
  }

  /**
   * Closes {@code c} and forgets it. The channel is registered, so its close shuts down output
   * at once (the peer reads end of stream) and releases the descriptor at the next select.
   */
  private void close(Conn c) {
    c.byDeadline.detach();
    c.byActivity.detach();
    if (c.key != null) {
      c.key.cancel();
    }
    Sockets.closeQuietly(c.channel);
  }

  /**
   * Closes every connection, the listening channel and the selector, and logs the last summary
   * (the loop thread as it ends, or {@link #close} when no loop ever ran).
   */
  private void closeAll() {
    try {
      for (SelectionKey key : new ArrayList<>(selector.keys())) {
        if (key.attachment() instanceof Conn) {
          close((Conn) key.attachment());
        }
      }
    } catch (RuntimeException e) {
      // The selector is closed already: its channels went with it.
    }
    Sockets.closeQuietly(server);
    Sockets.closeQuietly(selector);
    summary.flush(System.nanoTime());
  }

  /**
   * {@code configured}, or less if the open-file limit leaves less room: every connection is a
   * file descriptor, and an accept that finds none left fails. Besides the reserve, one wake-up's
   * accepts are kept free: a channel closed to make room keeps its descriptor until the next
   * select.
   */
  private static int capForOpenFileLimit(int configured) {
    OperatingSystemMXBean os = ManagementFactory.getOperatingSystemMXBean();
    if (os instanceof UnixOperatingSystemMXBean) {
      UnixOperatingSystemMXBean unix = (UnixOperatingSystemMXBean) os;
      long room = unix.getMaxFileDescriptorCount() - unix.getOpenFileDescriptorCount()
          - ServerConfig.FRONT_RESERVED_FILES - ServerConfig.FRONT_ACCEPTS_PER_WAKEUP;
      if (room < configured) {
        return (int) Math.max(1, room);
      }
    }
    return configured;
  }
}
