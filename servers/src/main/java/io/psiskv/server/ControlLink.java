package io.psiskv.server;

import static io.psiskv.protocol.Protocol.HEADER_BYTES;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Rules;
import io.psiskv.protocol.Status;
import java.io.Closeable;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.ProtocolException;
import java.net.Socket;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * One end of the control connection between the Data Server and the Front Server (PROTOCOL.md
 * §7): message framing, heartbeats and the silence watchdog, used by both processes.
 *
 * <p><b>Supervision protocol.</b> Each side sends HEARTBEAT every {@value
 * ServerConfig#HEARTBEAT_INTERVAL_MILLIS} ms. A side that has read nothing from its peer for
 * {@value ServerConfig#MISSED_HEARTBEATS_BEFORE_HUNG} intervals logs the peer as hung and calls
 * its {@code onHung} action (today: nothing more; the relaunch comes later). End of stream means
 * the peer died; the owner's reader thread sees it in {@link #read} and reacts.
 *
 * <p><b>Threads.</b> Exactly one thread (the owner's reader) calls {@link #read}; it owns the
 * read buffer. Any thread may send: sends are 20- to 30-byte messages serialized by {@code
 * writeLock}, which guards only the write buffer and the stream. One "heartbeat" thread per link
 * (started by {@link #startHeartbeats}) sends heartbeats and checks the silence.
 */
final class ControlLink implements Closeable {
  /** Longest control message body (INIT's 10 bytes); longer claims are a protocol error. */
  private static final int MAX_BODY_BYTES = 16;

  private final Socket socket;
  private final String peerName;
  private final InputStream in;
  private final OutputStream out;
  private final AtomicLong requestIds = new AtomicLong();

  // Owned by the reader thread.
  private final byte[] readBuf = new byte[HEADER_BYTES + MAX_BODY_BYTES];
  private final Header header = new Header();

  private final Object writeLock = new Object();
  /** Guarded by writeLock. */
  private final byte[] writeBuf = new byte[Messages.MAX_FIXED_BYTES];

  private volatile long lastReadNanos = System.nanoTime();
  private ScheduledExecutorService heartbeat;
  /** Heartbeat thread only. */
  private boolean peerSilent;
  /** Heartbeat thread only. */
  private long lastTickNanos;

  ControlLink(Socket socket, String peerName) throws IOException {
    this.socket = socket;
    this.peerName = peerName;
    socket.setTcpNoDelay(true);
    in = socket.getInputStream();
    out = socket.getOutputStream();
  }

  /**
   * Reads one message (reader thread only). The header is returned (a reused holder); the body,
   * if any, is in {@link #body()} from offset {@link io.psiskv.protocol.Protocol#HEADER_BYTES}.
   *
   * @throws EOFException at the end of the stream (the peer closed or died)
   */
  Header read() throws IOException {
    int n = Wire.readFully(in, readBuf, 0, HEADER_BYTES);
    if (n < HEADER_BYTES) {
      throw new EOFException(n == 0 ? "end of stream" : "end of stream mid-message");
    }
    header.decode(readBuf, 0);
    if (header.bodyLength > MAX_BODY_BYTES) {
      throw new ProtocolException("control message with a body of " + header.bodyLength
          + " bytes: " + header);
    }
    int len = (int) header.bodyLength;
    if (Wire.readFully(in, readBuf, HEADER_BYTES, len) < len) {
      throw new EOFException("end of stream mid-message");
    }
    lastReadNanos = System.nanoTime();
    return header;
  }

  /** The buffer of the last message read; its body starts at {@code HEADER_BYTES}. */
  byte[] body() {
    return readBuf;
  }

  /** Whether {@code h} is a request of opcode {@code op} that obeys PROTOCOL.md. */
  static boolean isRequest(Header h, Opcode op) {
    return h.opcode == op.code() && Rules.checkRequest(h, 0) == null;
  }

  /** Whether {@code h} is an OK response to request {@code requestId} of opcode {@code op}. */
  static boolean isOkResponse(Header h, Opcode op, long requestId) {
    return Rules.checkResponse(h, op, requestId) == null && h.flagsOrStatus == Status.OK.code();
  }

  /** Sets the read timeout (0 = none); used only around the INIT handshake. */
  void setReadTimeoutMillis(int millis) throws IOException {
    socket.setSoTimeout(millis);
  }

  long sendInit(int clientPort, long pid) throws IOException {
    long id = requestIds.incrementAndGet();
    synchronized (writeLock) {
      out.write(writeBuf, 0, Messages.init(writeBuf, id, clientPort, pid));
    }
    return id;
  }

  void sendInitOk(long requestId, long pid) throws IOException {
    synchronized (writeLock) {
      out.write(writeBuf, 0, Messages.initOk(writeBuf, requestId, pid));
    }
  }

  long sendShutdown() throws IOException {
    long id = requestIds.incrementAndGet();
    synchronized (writeLock) {
      out.write(writeBuf, 0, Messages.shutdown(writeBuf, id));
    }
    return id;
  }

  void sendOk(Opcode op, long requestId) throws IOException {
    synchronized (writeLock) {
      out.write(writeBuf, 0, Messages.status(writeBuf, op.code(), Status.OK, 0, requestId));
    }
  }

  void sendHeartbeat() throws IOException {
    long id = requestIds.incrementAndGet();
    synchronized (writeLock) {
      out.write(writeBuf, 0, Messages.heartbeat(writeBuf, id));
    }
  }

  /** Starts the heartbeat thread; {@code onHung} runs on it once per silence (may be null). */
  void startHeartbeats(Runnable onHung) {
    lastReadNanos = System.nanoTime();
    lastTickNanos = lastReadNanos;
    heartbeat = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "heartbeat");
      t.setDaemon(true);
      return t;
    });
    // Fixed delay, not fixed rate: after a pause of this process no burst of missed ticks.
    heartbeat.scheduleWithFixedDelay(() -> tick(onHung), 0,
        ServerConfig.HEARTBEAT_INTERVAL_MILLIS, TimeUnit.MILLISECONDS);
  }

  private void tick(Runnable onHung) {
    try {
      sendHeartbeat();
    } catch (IOException e) {
      // The reader thread sees the broken connection and reacts; nothing to do here.
    }
    long now = System.nanoTime();
    long sinceLastTickMillis = (now - lastTickNanos) / 1_000_000L;
    lastTickNanos = now;
    if (sinceLastTickMillis > 2 * ServerConfig.HEARTBEAT_INTERVAL_MILLIS) {
      // This process itself did not run for a while (suspended, starved): the peer's
      // heartbeats may be waiting unread in the socket. Judge it at the next tick.
      return;
    }
    long silentMillis = (now - lastReadNanos) / 1_000_000L;
    long limitMillis =
        ServerConfig.HEARTBEAT_INTERVAL_MILLIS * ServerConfig.MISSED_HEARTBEATS_BEFORE_HUNG;
    if (silentMillis > limitMillis && !peerSilent) {
      peerSilent = true;
      Log.info(peerName + " silent for " + silentMillis + " ms ("
          + ServerConfig.MISSED_HEARTBEATS_BEFORE_HUNG + " heartbeats missed): it looks hung");
      if (onHung != null) {
        try {
          onHung.run();
        } catch (RuntimeException e) {
          Log.info("reaction to a hung " + peerName + " failed: " + e);
        }
      }
    } else if (silentMillis <= limitMillis && peerSilent) {
      peerSilent = false;
      Log.info(peerName + " is sending again");
    }
  }

  @Override
  public void close() {
    if (heartbeat != null) {
      heartbeat.shutdownNow();
    }
    Wire.closeQuietly(socket);
  }
}
