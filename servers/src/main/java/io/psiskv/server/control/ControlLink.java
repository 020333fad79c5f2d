package io.psiskv.server.control;

import static io.psiskv.protocol.Protocol.HEADER_BYTES;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Rules;
import io.psiskv.protocol.StatsBody;
import io.psiskv.protocol.Status;
import io.psiskv.server.ServerLog;
import io.psiskv.server.Sockets;
import java.io.Closeable;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.ProtocolException;
import java.net.Socket;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * One end of the control connection between the Data Server and the Front Server (PROTOCOL.md
 * §7): message framing, heartbeats, the silence watchdog and the STATUS request, used by both
 * processes. What a side does about a lost or silent peer is its {@link Handler}'s business (both
 * hand it to their {@link Supervisor}).
 *
 * <p><b>Life.</b> The owner does the INIT handshake with {@link #read} and the send methods on its
 * own thread, then calls {@link #start}, which starts the three threads below. {@link
 * Handler#onClosed} is called exactly once, when the link ends for any reason (end of stream, I/O
 * error, a protocol error, {@link #close}).
 *
 * <p><b>Threads</b> (daemons, started by {@link #start}):
 *
 * <ul>
 *   <li>{@code control-reader}: the only caller of {@link #read} after the handshake; owns the read
 *       buffer. Skips HEARTBEATs, completes pending STATUS requests, passes every other message
 *       to {@link Handler#onMessage}.
 *   <li>{@code heartbeat}: sends one HEARTBEAT every {@value Supervisor#HEARTBEAT_INTERVAL_MILLIS}
 *       ms and does nothing else, so no other work can delay a heartbeat (a write can block only if
 *       the peer stopped reading, which the peer's own watchdog then reports).
 *   <li>{@code control-watchdog}: every {@value Supervisor#WATCHDOG_CHECK_MILLIS} ms, compares the
 *       time since the last message read with {@value Supervisor#MISSED_HEARTBEATS_BEFORE_HUNG}
 *       heartbeat intervals and, while the silence is longer, calls {@link Handler#onSilent} at
 *       each check (the handler judges the peer: {@link Supervisor#silent}). It does no socket
 *       I/O, so a blocked write cannot stop it. After a pause of this very process it waits
 *       before judging again ({@link Supervisor#SELF_PAUSE_MILLIS}).
 * </ul>
 *
 * <p><b>Locks.</b> Any thread may send; sends are whole messages of at most {@link
 * Messages#MAX_CONTROL_BYTES} bytes serialized by {@code writeLock}, which guards only the write
 * buffer and the stream. Pending STATUS requests are in a concurrent map.
 */
public final class ControlLink implements Closeable {
  /** Longest control message body (INIT); longer claims are a protocol error. */
  private static final int MAX_BODY_BYTES = Messages.MAX_CONTROL_BYTES - HEADER_BYTES;

  /** What the owner does with the link's events. */
  public interface Handler {
    /**
     * A message that is neither a HEARTBEAT nor the answer to a STATUS request of this side
     * (reader thread). The body is in {@code buf} from {@link Protocol#HEADER_BYTES}. Throwing
     * ends the link (a protocol error).
     */
    void onMessage(Header h, byte[] buf) throws IOException;

    /** The link ended; called once, from the reader thread or from {@link #close}. */
    void onClosed(String reason);

    /**
     * The peer has sent nothing for {@code silentMillis}, more than {@link
     * Supervisor#HUNG_AFTER_MILLIS} (watchdog thread): called at every check until the peer is
     * heard again or the link ends, {@code first} at the first check of each silence.
     */
    void onSilent(long silentMillis, boolean first);
  }

  private final Socket socket;
  private final String peerName;
  private final InputStream in;
  private final OutputStream out;
  private final AtomicLong requestIds = new AtomicLong();

  // Owned by the reader (the handshake's thread, then control-reader).
  private final byte[] readBuf = new byte[HEADER_BYTES + MAX_BODY_BYTES];
  private final Header header = new Header();

  private final Object writeLock = new Object();
  /** Guarded by writeLock. */
  private final byte[] writeBuf = new byte[Messages.MAX_CONTROL_BYTES];

  private final Map<Long, CompletableFuture<Map<String, Object>>> pendingStatus =
      new ConcurrentHashMap<>();
  private final AtomicBoolean closed = new AtomicBoolean();
  private volatile Handler handler;
  private volatile long lastReadNanos = System.nanoTime();
  private volatile ScheduledExecutorService heartbeat;
  private volatile ScheduledExecutorService watchdog;
  /** Watchdog thread only: the peer is silent past the limit; for how long at the last check. */
  private boolean peerSilent;
  private long peerSilentMillis;
  /** Watchdog thread only. */
  private long lastCheckNanos;
  /** Watchdog thread only: when this process was last found to have been paused. */
  private long resumedNanos;
  /** Watchdog thread only: how long that pause was, until the peer was judged after it. */
  private long pausedMillis;

  public ControlLink(Socket socket, String peerName) throws IOException {
    this.socket = socket;
    this.peerName = peerName;
    socket.setTcpNoDelay(true);
    in = socket.getInputStream();
    out = socket.getOutputStream();
  }

  /**
   * Reads one message (the handshake's thread, or the reader thread after {@link #start}). The
   * header is returned (a reused holder); the body, if any, is in {@link #body()} from offset
   * {@link Protocol#HEADER_BYTES}.
   *
   * @throws EOFException at the end of the stream (the peer closed or died)
   */
  public Header read() throws IOException {
    int n = Sockets.readFully(in, readBuf, 0, HEADER_BYTES);
    if (n < HEADER_BYTES) {
      throw new EOFException(n == 0 ? "end of stream" : "end of stream mid-message");
    }
    header.decode(readBuf, 0);
    if (header.bodyLength > MAX_BODY_BYTES) {
      throw new ProtocolException("control message with a body of " + header.bodyLength
          + " bytes: " + header);
    }
    int len = (int) header.bodyLength;
    if (Sockets.readFully(in, readBuf, HEADER_BYTES, len) < len) {
      throw new EOFException("end of stream mid-message");
    }
    lastReadNanos = System.nanoTime();
    return header;
  }

  /** The buffer of the last message read; its body starts at {@code HEADER_BYTES}. */
  public byte[] body() {
    return readBuf;
  }

  /** Whether {@code h} is a request of opcode {@code op} that obeys PROTOCOL.md. */
  public static boolean isRequest(Header h, Opcode op) {
    return h.opcode == op.code() && Rules.checkRequest(h, 0) == null;
  }

  /** Whether {@code h} is an OK response to request {@code requestId} of opcode {@code op}. */
  public static boolean isOkResponse(Header h, Opcode op, long requestId) {
    return Rules.checkResponse(h, op, 0, requestId) == null && h.flagsOrStatus == Status.OK.code();
  }

  /** Sets the read timeout (0 = none); used only around the INIT handshake. */
  public void setReadTimeoutMillis(int millis) throws IOException {
    socket.setSoTimeout(millis);
  }

  /** CHALLENGE (§7.1), the Front Server's first message on a control connection. */
  void sendChallenge(byte[] nonce) throws IOException {
    long id = requestIds.incrementAndGet();
    synchronized (writeLock) {
      out.write(writeBuf, 0, Messages.challenge(writeBuf, id, nonce));
    }
  }

  public long sendInit(int clientPort, long pid, byte[] nonce, byte[] mac) throws IOException {
    long id = requestIds.incrementAndGet();
    synchronized (writeLock) {
      out.write(writeBuf, 0, Messages.init(writeBuf, id, clientPort, pid, nonce, mac));
    }
    return id;
  }

  void sendInitOk(long requestId, long pid, byte[] mac) throws IOException {
    synchronized (writeLock) {
      out.write(writeBuf, 0, Messages.initOk(writeBuf, requestId, pid, mac));
    }
  }

  /** {@code n} bytes of the last message's body from {@code offset} (for nonces and MACs). */
  public byte[] bodyBytes(int offset, int n) {
    return Arrays.copyOfRange(readBuf, HEADER_BYTES + offset, HEADER_BYTES + offset + n);
  }

  /**
   * SHUTDOWN (§7.3): from the Front Server "stop" (answered OK when the Data Server is done); from
   * the Data Server "I am stopping on purpose, stop too" (not answered).
   */
  public long sendShutdown() throws IOException {
    long id = requestIds.incrementAndGet();
    synchronized (writeLock) {
      out.write(writeBuf, 0, Messages.shutdown(writeBuf, id));
    }
    return id;
  }

  public void sendOk(Opcode op, long requestId) throws IOException {
    synchronized (writeLock) {
      out.write(writeBuf, 0, Messages.status(writeBuf, op.code(), Status.OK, 0, requestId));
    }
  }

  /** The STATUS OK answer (§7.4): the Data Server's counters, the STATS body (§6.7). */
  public void sendStatusOk(long requestId, Map<String, ?> counters) throws IOException {
    synchronized (writeLock) {
      out.write(writeBuf, 0, Messages.statsOk(writeBuf, 0, Opcode.STATUS, requestId, counters));
    }
  }

  private void sendHeartbeat() throws IOException {
    long id = requestIds.incrementAndGet();
    synchronized (writeLock) {
      out.write(writeBuf, 0, Messages.heartbeat(writeBuf, id));
    }
  }

  /**
   * Sends STATUS (§7.4) and waits for its answer; any thread but the reader, after {@link
   * #start}. Returns the Data Server's counters, decoded from the answer's STATS body (§6.7).
   *
   * @throws IOException if the link fails or closes, or no answer comes within the timeout
   */
  public Map<String, Object> requestStatus(long timeoutMillis) throws IOException {
    long id = requestIds.incrementAndGet();
    CompletableFuture<Map<String, Object>> answer = new CompletableFuture<>();
    pendingStatus.put(id, answer);
    try {
      if (closed.get()) {
        throw new IOException("control connection closed");
      }
      synchronized (writeLock) {
        out.write(writeBuf, 0, Messages.statusRequest(writeBuf, id));
      }
      return answer.get(timeoutMillis, TimeUnit.MILLISECONDS);
    } catch (TimeoutException e) {
      throw new IOException("no answer to STATUS within " + timeoutMillis + " ms");
    } catch (ExecutionException e) {
      throw new IOException(e.getCause().getMessage(), e.getCause());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted while waiting for STATUS");
    } finally {
      pendingStatus.remove(id);
    }
  }

  /** Starts the reader, heartbeat and watchdog threads; call once, after the handshake. */
  public void start(Handler handler) throws IOException {
    this.handler = handler;
    setReadTimeoutMillis(0);
    lastReadNanos = System.nanoTime();
    lastCheckNanos = lastReadNanos;
    resumedNanos = lastReadNanos - Supervisor.SELF_PAUSE_MILLIS * 1_000_000L;
    heartbeat = Executors.newSingleThreadScheduledExecutor(r -> daemon(r, "heartbeat"));
    watchdog = Executors.newSingleThreadScheduledExecutor(r -> daemon(r, "control-watchdog"));
    // Fixed delay, not fixed rate: after a pause of this process no burst of missed ticks.
    heartbeat.scheduleWithFixedDelay(this::beat, 0, Supervisor.HEARTBEAT_INTERVAL_MILLIS,
        TimeUnit.MILLISECONDS);
    watchdog.scheduleWithFixedDelay(this::check, Supervisor.WATCHDOG_CHECK_MILLIS,
        Supervisor.WATCHDOG_CHECK_MILLIS, TimeUnit.MILLISECONDS);
    daemon(this::readLoop, "control-reader").start();
  }

  private static Thread daemon(Runnable r, String name) {
    Thread t = new Thread(r, name);
    t.setDaemon(true);
    return t;
  }

  private void readLoop() {
    String reason;
    try {
      while (true) {
        Header h = read();
        if (isRequest(h, Opcode.HEARTBEAT)) {
          continue;
        }
        if (h.magic == Protocol.RESPONSE_MAGIC && h.opcode == Opcode.STATUS.code()) {
          CompletableFuture<Map<String, Object>> answer = pendingStatus.get(h.requestId);
          if (answer == null) {
            continue; // Its requester timed out already.
          }
          if (!isOkResponse(h, Opcode.STATUS, h.requestId)) {
            throw new ProtocolException("bad STATUS answer " + h);
          }
          try {
            answer.complete(StatsBody.decode(readBuf, HEADER_BYTES, (int) h.bodyLength));
          } catch (IllegalArgumentException e) {
            throw new ProtocolException("bad STATUS answer: " + e.getMessage());
          }
          continue;
        }
        handler.onMessage(h, readBuf);
      }
    } catch (EOFException e) {
      reason = e.getMessage();
    } catch (IOException e) {
      reason = closed.get() ? "closed" : e.toString();
    } catch (RuntimeException e) {
      reason = "failed: " + ServerLog.describe(e);
    }
    end(reason);
  }

  private void beat() {
    try {
      sendHeartbeat();
    } catch (IOException e) {
      // The reader thread sees the broken connection and reports it; nothing to do here.
    }
  }

  private void check() {
    long now = System.nanoTime();
    long sinceLastCheckMillis = (now - lastCheckNanos) / 1_000_000L;
    lastCheckNanos = now;
    if (sinceLastCheckMillis > Supervisor.SELF_PAUSE_MILLIS) {
      // This process itself did not run for a while (suspended, starved): the peer's
      // heartbeats may be waiting unread in the socket. Give the reader time to catch up.
      resumedNanos = now;
      pausedMillis = sinceLastCheckMillis;
      return;
    }
    if ((now - resumedNanos) / 1_000_000L < Supervisor.SELF_PAUSE_MILLIS) {
      return;
    }
    long silentMillis = (now - lastReadNanos) / 1_000_000L;
    if (pausedMillis > 0 && silentMillis <= Supervisor.HUNG_AFTER_MILLIS) {
      ServerLog.info("this process did not run for " + pausedMillis + " ms; the " + peerName
          + " is alive (heard " + silentMillis + " ms ago)");
    }
    pausedMillis = 0;
    if (silentMillis > Supervisor.HUNG_AFTER_MILLIS) {
      boolean first = !peerSilent;
      if (first) {
        peerSilent = true;
        ServerLog.info(peerName + " silent for " + silentMillis + " ms ("
            + Supervisor.MISSED_HEARTBEATS_BEFORE_HUNG + " heartbeats missed): is it hung?");
      }
      peerSilentMillis = silentMillis;
      try {
        handler.onSilent(silentMillis, first);
      } catch (RuntimeException e) {
        ServerLog.error("reaction to a silent " + peerName + " failed: " + ServerLog.describe(e));
      }
    } else if (peerSilent) {
      peerSilent = false;
      ServerLog.info(peerName + " is sending again, after a silence of more than " + peerSilentMillis
          + " ms");
    }
  }

  /** Stops the threads, fails pending requests, reports the end once. */
  private void end(String reason) {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    ScheduledExecutorService h = heartbeat;
    if (h != null) {
      h.shutdownNow();
    }
    ScheduledExecutorService w = watchdog;
    if (w != null) {
      w.shutdownNow();
    }
    Sockets.closeQuietly(socket);
    for (CompletableFuture<Map<String, Object>> f : pendingStatus.values()) {
      f.completeExceptionally(new IOException("control connection ended: " + reason));
    }
    Handler owner = handler;
    if (owner != null) {
      owner.onClosed(reason);
    }
  }

  public boolean isClosed() {
    return closed.get();
  }

  @Override
  public void close() {
    end("closed by this side");
  }
}
