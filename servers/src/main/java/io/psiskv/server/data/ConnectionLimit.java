package io.psiskv.server.data;

import static io.psiskv.protocol.Protocol.HEADER_BYTES;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Status;
import io.psiskv.server.ServerConfig;
import io.psiskv.server.ServerLog;
import io.psiskv.server.ServerLogSummary;
import io.psiskv.server.Sockets;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.lang.management.OperatingSystemMXBean;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.util.Iterator;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The cap on open data connections ({@code --max-connections}, and below the process's file
 * descriptor limit), shared by every thread policy, and the polite refusal of connections over
 * it: each gets UNAVAILABLE for its first request (PROTOCOL.md §5: "try again"; both clients then
 * retry through the Front Server with back-off), answered by one {@code data-refuser} thread with
 * a selector, so refusing costs no thread per connection. At most {@link
 * ServerConfig#MAX_REFUSING_CONNECTIONS} are being refused at once, each for at most {@link
 * ServerConfig#REFUSAL_TIMEOUT_MILLIS}; beyond that a connection is closed without an answer.
 * Refusals, and the closes of connections that pass a deadline, are logged as one line per
 * interval ({@link ServerLogSummary}) whatever the policy.
 *
 * <p>Thread-safe: {@link #tryOpen} and {@link #closed} are atomic; the refuser's selector and
 * buffers belong to its thread.
 */
public final class ConnectionLimit implements AutoCloseable {
  private final int max;
  private final AtomicInteger open = new AtomicInteger();
  private final AtomicInteger refusing = new AtomicInteger();
  /** Since start, for STATS: connections counted in, and refused at the limit. */
  private final AtomicLong accepted = new AtomicLong();
  private final AtomicLong refused = new AtomicLong();
  private final ConcurrentLinkedQueue<SocketChannel> toRefuse = new ConcurrentLinkedQueue<>();
  private final ServerLogSummary summary;
  private final ServerLogSummary.Kind refusals;
  private final ServerLogSummary.Kind idleClosed;
  private final ServerLogSummary.Kind stalledClosed;
  private final String refusedLine;
  private final String idleLine;
  private final String stalledLine;
  private final Selector selector;
  private final Thread thread;
  private volatile boolean stopped;

  public ConnectionLimit(ServerConfig config) throws IOException {
    this.max = effectiveMax(config.maxConnections);
    // The first of each kind per interval gets a line at once; the rest are counted.
    this.summary = new ServerLogSummary("data connections", ServerConfig.LOG_SUMMARY_INTERVAL_MILLIS,
        ServerLog::info);
    String refused = "refused with UNAVAILABLE at the limit of " + max + " open connections";
    String idle = "closed after " + config.idleTimeoutMillis + " ms without a session";
    String stalled = "closed for not completing a request or taking its answer within "
        + config.requestTimeoutMillis + " ms";
    this.refusals = summary.detailedKind("more " + refused, 1);
    this.idleClosed = summary.detailedKind("more " + idle, 1);
    this.stalledClosed = summary.detailedKind("more " + stalled, 1);
    this.refusedLine = "data connection " + refused + "; more in the next "
        + ServerConfig.LOG_SUMMARY_INTERVAL_MILLIS / 1000 + " s are counted";
    this.idleLine = "data connection " + idle + "; more are counted";
    this.stalledLine = "data connection " + stalled + "; more are counted";
    this.selector = Selector.open();
    this.thread = new Thread(this::runRefuser, "data-refuser");
    thread.setDaemon(true);
    thread.start();
  }

  /** The configured maximum, lowered below the process's file descriptor limit if need be. */
  static int effectiveMax(int configured) {
    OperatingSystemMXBean os = ManagementFactory.getOperatingSystemMXBean();
    if (os instanceof com.sun.management.UnixOperatingSystemMXBean) {
      long fds = ((com.sun.management.UnixOperatingSystemMXBean) os).getMaxFileDescriptorCount();
      long usable = fds - ServerConfig.RESERVED_FILE_DESCRIPTORS;
      if (usable > 0 && usable < configured) {
        ServerLog.info("max connections lowered from " + configured + " to " + usable
            + " by the file descriptor limit of " + fds);
        return (int) usable;
      }
    }
    return configured;
  }

  public int max() {
    return max;
  }

  /** Connections open now. */
  public int open() {
    return open.get();
  }

  /**
   * Counts a new connection in if there is room (true); else hands it to the refuser, which
   * answers and closes it (false: the caller forgets it).
   */
  boolean tryOpen(SocketChannel channel) {
    while (true) {
      int n = open.get();
      if (n >= max) {
        refused.incrementAndGet();
        refuse(channel);
        return false;
      }
      if (open.compareAndSet(n, n + 1)) {
        accepted.incrementAndGet();
        return true;
      }
    }
  }

  /** Connections {@link #tryOpen} counted in since start. */
  public long accepted() {
    return accepted.get();
  }

  /** Connections {@link #tryOpen} refused since start. */
  public long refused() {
    return refused.get();
  }

  /** A connection counted by {@link #tryOpen} closed. */
  void closed() {
    open.decrementAndGet();
  }

  /** A connection without a session was closed after the idle timeout (for the log). */
  void closedIdle() {
    note(idleClosed, idleLine);
  }

  /** A connection was closed past its request deadline (for the log). */
  void closedStalled() {
    note(stalledClosed, stalledLine);
  }

  private void note(ServerLogSummary.Kind kind, String line) {
    if (summary.record(kind)) {
      ServerLog.info(line);
    }
  }

  /** Writes the summary line if its interval has passed; the refuser thread calls it. */
  void flushLog(long nowNanos) {
    summary.flushIfDue(nowNanos);
  }

  private void refuse(SocketChannel channel) {
    note(refusals, refusedLine);
    if (stopped || refusing.incrementAndGet() > ServerConfig.MAX_REFUSING_CONNECTIONS) {
      refusing.decrementAndGet();
      Sockets.closeQuietly(channel);
      return;
    }
    toRefuse.add(channel);
    selector.wakeup();
  }

  /** One connection being refused: its first header, then the answer, then a short linger. */
  private static final class Refusal {
    final ByteBuffer in = ByteBuffer.allocate(HEADER_BYTES);
    ByteBuffer out;
    final long deadlineNanos =
        System.nanoTime() + ServerConfig.REFUSAL_TIMEOUT_MILLIS * 1_000_000L;
  }

  private void runRefuser() {
    ByteBuffer discard = ByteBuffer.allocate(4096);
    try {
      while (!stopped) {
        selector.select(ServerConfig.DEADLINE_CHECK_INTERVAL_MILLIS);
        for (SocketChannel c; (c = toRefuse.poll()) != null; ) {
          try {
            c.configureBlocking(false);
            c.register(selector, SelectionKey.OP_READ, new Refusal());
          } catch (IOException e) {
            done(c, null);
          }
        }
        long now = System.nanoTime();
        for (Iterator<SelectionKey> it = selector.keys().iterator(); it.hasNext(); ) {
          SelectionKey k = it.next();
          Refusal r = (Refusal) k.attachment();
          if (!k.isValid()) {
            continue;
          }
          try {
            if (now - r.deadlineNanos >= 0 || !step(k, r, discard)) {
              done((SocketChannel) k.channel(), k);
            }
          } catch (IOException e) {
            done((SocketChannel) k.channel(), k);
          }
        }
        selector.selectedKeys().clear();
        flushLog(now);
      }
    } catch (IOException | RuntimeException e) {
      ServerLog.error("data-refuser stopped: " + ServerLog.describe(e));
    }
  }

  /** Advances one refusal; false once it is finished. */
  private static boolean step(SelectionKey k, Refusal r, ByteBuffer discard) throws IOException {
    SocketChannel c = (SocketChannel) k.channel();
    if (r.out == null) {
      if (c.read(r.in) < 0) {
        return false;
      }
      if (r.in.hasRemaining()) {
        return true;
      }
      Header h = new Header().decode(r.in.array(), 0);
      byte[] answer = new byte[HEADER_BYTES];
      Messages.status(answer, h.opcode, Status.UNAVAILABLE, h.key, h.requestId);
      r.out = ByteBuffer.wrap(answer);
    }
    if (r.out.hasRemaining()) {
      c.write(r.out);
      if (r.out.hasRemaining()) {
        k.interestOps(SelectionKey.OP_READ | SelectionKey.OP_WRITE);
        return true;
      }
      c.shutdownOutput();
      k.interestOps(SelectionKey.OP_READ);
    }
    // Linger: read what the peer still sends until it closes, so the answer is not reset.
    discard.clear();
    return c.read(discard) >= 0;
  }

  private void done(SocketChannel c, SelectionKey k) {
    if (k != null) {
      k.cancel();
    }
    Sockets.closeQuietly(c);
    refusing.decrementAndGet();
  }

  @Override
  public void close() {
    stopped = true;
    selector.wakeup();
    try {
      thread.join(ServerConfig.REFUSAL_TIMEOUT_MILLIS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    for (SelectionKey k : selector.keys()) {
      Sockets.closeQuietly(k.channel());
    }
    for (SocketChannel c; (c = toRefuse.poll()) != null; ) {
      Sockets.closeQuietly(c);
    }
    Sockets.closeQuietly(selector);
    summary.flush(System.nanoTime());
  }
}
