package io.psiskv.server;

import static io.psiskv.protocol.Protocol.FLAG_OVERWRITE;
import static io.psiskv.protocol.Protocol.GET_REQUEST_BODY_BYTES;
import static io.psiskv.protocol.Protocol.HEADER_BYTES;
import static io.psiskv.protocol.Protocol.SESSION_REQUEST_BODY_BYTES;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Rules;
import io.psiskv.protocol.Status;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

/**
 * One client connection of the Data Server, served by one thread from its first byte to its close
 * (the thread is either its own, on-demand, or a pool thread; see {@link DataServer}).
 *
 * <p><b>Protocol state machine</b> (PROTOCOL.md §6, §8), owned by the serving thread:
 *
 * <pre>
 *   AWAIT_SESSION --SESSION--> SERVING --end of stream / broken rule / stop--> CLOSED
 *   AWAIT_SESSION --end of stream / broken rule / stop-----------------------> CLOSED
 * </pre>
 *
 * PING is answered in both open states; PUT, GET and DELETE in AWAIT_SESSION get NO_SESSION; a
 * broken rule gets its error status; after any error status the connection closes, with one log
 * line naming the peer and the reason. A peer that closes mid-request is closed without a reply
 * and nothing of its partial request is applied.
 *
 * <p><b>Hot path.</b> The input buffer is filled by {@code InputStream.read}, so one system call
 * usually brings a whole request (often several); headers are decoded in place. Small responses
 * are assembled in the output buffer and sent with one write; a GET value that does not fit is
 * sent from the stored array itself after the buffered prefix (values are immutable, see {@link
 * Store}). The only allocation per request is a PUT's value array, made after the length passed
 * the maximum check. No lock is held across socket I/O: {@link Engine} locks one stripe for the
 * map operation only.
 *
 * <p><b>Stop coordination</b>, the only state shared with another thread: {@code activity} is
 * IDLE while the thread waits for a request, BUSY from a complete header until the response is
 * written, and STOP once the server asked the connection to stop ({@link #requestStop}). An idle
 * connection is closed at once (its blocked read fails); a busy one finishes its request, sees
 * STOP when it tries to become idle again, and closes. Either the server's STOP or the thread's
 * IDLE-to-BUSY wins the atomic swap, so a request is either finished or never started.
 */
final class DataConnection implements Runnable {
  enum Phase {
    AWAIT_SESSION,
    SERVING,
    CLOSED
  }

  private static final int IDLE = 0;
  private static final int BUSY = 1;
  private static final int STOP = 2;

  /** Shared by every empty value: values are never modified, so one array serves all. */
  private static final byte[] EMPTY_VALUE = new byte[0];

  private final Socket socket;
  private final Engine engine;
  private final int maxValueBytes;
  private final Consumer<DataConnection> onClosed;
  private final AtomicInteger activity = new AtomicInteger(IDLE);

  // Owned by the serving thread.
  private final byte[] in = new byte[ServerConfig.CONNECTION_IN_BUFFER_BYTES];
  private int inPos;
  private int inLimit;
  private final byte[] out = new byte[ServerConfig.CONNECTION_OUT_BUFFER_BYTES];
  private final Header h = new Header();
  private InputStream input;
  private OutputStream output;
  private Phase phase = Phase.AWAIT_SESSION;
  /** The session this connection serves, from SESSION on (null before). */
  private Sessions.Session session;
  private int soTimeoutMillis;

  DataConnection(Socket socket, Engine engine, int maxValueBytes,
      Consumer<DataConnection> onClosed) {
    this.socket = socket;
    this.engine = engine;
    this.maxValueBytes = maxValueBytes;
    this.onClosed = onClosed;
  }

  /** Asks the connection to close after its current request (now, if it has none). */
  void requestStop() {
    if (activity.getAndSet(STOP) == IDLE) {
      Wire.closeQuietly(socket);
    }
  }

  /** Closes the connection now, even in the middle of a request (the stop's last resort). */
  void forceClose() {
    activity.set(STOP);
    Wire.closeQuietly(socket);
  }

  @Override
  public void run() {
    try {
      socket.setTcpNoDelay(true);
      if (ServerConfig.SOCKET_BUFFER_BYTES > 0) {
        socket.setReceiveBufferSize(ServerConfig.SOCKET_BUFFER_BYTES);
        socket.setSendBufferSize(ServerConfig.SOCKET_BUFFER_BYTES);
      }
      input = socket.getInputStream();
      output = socket.getOutputStream();
      while (serveOne()) {
        // One request per iteration.
      }
    } catch (SocketTimeoutException e) {
      problem("stalled mid-request for " + ServerConfig.REQUEST_STALL_TIMEOUT_MILLIS
          + " ms; closing");
    } catch (IOException e) {
      if (activity.get() != STOP) {
        problem("connection failed: " + e.getMessage());
      }
    } catch (RuntimeException e) {
      problem("internal error, closing: " + e);
    } finally {
      phase = Phase.CLOSED;
      Wire.closeQuietly(socket);
      if (session != null) {
        engine.closeSession(session);
      }
      onClosed.accept(this);
    }
  }

  /** Serves one request; false when the connection must close. */
  private boolean serveOne() throws IOException {
    if (!fill(HEADER_BYTES, false)) {
      int partial = inLimit - inPos;
      if (partial > 0) {
        problem("closed the connection mid-header (" + partial + " of " + HEADER_BYTES
            + " bytes)");
      }
      return false;
    }
    if (!activity.compareAndSet(IDLE, BUSY)) {
      return false; // The server is stopping; this request was not started.
    }
    h.decode(in, inPos);
    inPos += HEADER_BYTES;
    return handle() && activity.compareAndSet(BUSY, IDLE);
  }

  private boolean handle() throws IOException {
    Status broken = Rules.checkRequest(h, maxValueBytes);
    if (broken != null) {
      return reject(broken, Wire.describeRejection(h, broken, maxValueBytes));
    }
    Opcode op = Opcode.of(h.opcode);
    switch (op) {
      case PING:
        return reply(Messages.status(out, h.opcode, Status.OK, 0, h.requestId));
      case SESSION:
        return session();
      case PUT:
      case GET:
      case DELETE:
        if (phase != Phase.SERVING) {
          return reject(Status.NO_SESSION, op + " before SESSION");
        }
        return op == Opcode.PUT ? put() : op == Opcode.GET ? get() : delete();
      default:
        return reject(Status.BAD_REQUEST, op + " is not a data-connection request");
    }
  }

  private boolean session() throws IOException {
    if (phase == Phase.SERVING) {
      return reject(Status.BAD_REQUEST, "second SESSION on one connection");
    }
    if (!fill(SESSION_REQUEST_BODY_BYTES, true)) {
      return closedMidBody(SESSION_REQUEST_BODY_BYTES);
    }
    long requested = Header.getU64(in, inPos);
    inPos += SESSION_REQUEST_BODY_BYTES;
    session = engine.openSession(requested);
    phase = Phase.SERVING;
    return reply(Messages.sessionOk(out, h.requestId, session.id, maxValueBytes));
  }

  private boolean put() throws IOException {
    // Rules.checkRequest has bounded the length by maxValueBytes (<= MAX_VALUE_BYTES_LIMIT), so
    // this is the first point where allocating it is allowed.
    int len = (int) h.bodyLength;
    byte[] value = EMPTY_VALUE;
    if (len > 0) {
      try {
        value = new byte[len];
      } catch (OutOfMemoryError e) {
        return reject(Status.SERVER_ERROR, "no memory for a value of " + len + " bytes");
      }
      int buffered = Math.min(inLimit - inPos, len);
      System.arraycopy(in, inPos, value, 0, buffered);
      inPos += buffered;
      if (buffered < len) {
        // The rest goes straight into the value array: no second copy of large values.
        setSoTimeout(ServerConfig.REQUEST_STALL_TIMEOUT_MILLIS);
        int n = Wire.readFully(input, value, buffered, len - buffered);
        if (n < len - buffered) {
          problem("closed the connection mid-body (" + (buffered + n) + " of " + len
              + " value bytes); nothing applied");
          return false;
        }
      }
    }
    boolean overwrite = (h.flagsOrStatus & FLAG_OVERWRITE) != 0;
    Status result = engine.put(session, h.requestId, h.key, value, overwrite);
    return reply(Messages.status(out, h.opcode, result, h.key, h.requestId));
  }

  private boolean get() throws IOException {
    if (!fill(GET_REQUEST_BODY_BYTES, true)) {
      return closedMidBody(GET_REQUEST_BODY_BYTES);
    }
    long capacity = Header.getU32(in, inPos) & 0xFFFF_FFFFL;
    inPos += GET_REQUEST_BODY_BYTES;
    byte[] value = engine.get(h.key);
    if (value == null) {
      return reply(Messages.status(out, h.opcode, Status.NOT_FOUND, h.key, h.requestId));
    }
    int sent = (int) Math.min(capacity, value.length);
    int prefix = Messages.getOkPrefix(out, h.key, h.requestId, value.length, sent);
    int inline = Math.min(sent, out.length - prefix);
    System.arraycopy(value, 0, out, prefix, inline);
    output.write(out, 0, prefix + inline);
    if (inline < sent) {
      output.write(value, inline, sent - inline);
    }
    return true;
  }

  private boolean delete() throws IOException {
    Status result = engine.delete(session, h.requestId, h.key);
    return reply(Messages.status(out, h.opcode, result, h.key, h.requestId));
  }

  private boolean reply(int length) throws IOException {
    output.write(out, 0, length);
    return true;
  }

  /** Answers an error status (the header was read), logs one line, and closes. */
  private boolean reject(Status status, String reason) {
    problem(reason + "; answered " + status + ", closing");
    try {
      output.write(out, 0, Messages.status(out, h.opcode, status, h.key, h.requestId));
    } catch (IOException e) {
      // The peer is gone; closing is all that is left.
    }
    Wire.lingerAndClose(socket, in);
    return false;
  }

  private boolean closedMidBody(int bodyBytes) {
    problem("closed the connection mid-body (" + (inLimit - inPos) + " of " + bodyBytes
        + " bytes)");
    return false;
  }

  /**
   * Makes at least {@code n} unread bytes available in the input buffer, reading as much as the
   * socket offers per call. Returns false at end of stream. A stall timeout applies once part of
   * a request has arrived; an idle connection waits without one.
   */
  private boolean fill(int n, boolean midRequest) throws IOException {
    int unread = inLimit - inPos;
    if (unread >= n) {
      return true;
    }
    if (inPos > 0) {
      System.arraycopy(in, inPos, in, 0, unread);
      inPos = 0;
      inLimit = unread;
    }
    while (inLimit < n) {
      setSoTimeout(midRequest || inLimit > 0 ? ServerConfig.REQUEST_STALL_TIMEOUT_MILLIS : 0);
      int r = input.read(in, inLimit, in.length - inLimit);
      if (r < 0) {
        return false;
      }
      inLimit += r;
    }
    return true;
  }

  private void setSoTimeout(int millis) throws IOException {
    if (soTimeoutMillis != millis) {
      socket.setSoTimeout(millis);
      soTimeoutMillis = millis;
    }
  }

  private void problem(String message) {
    Log.info("data connection " + Wire.peer(socket) + ": " + message);
  }
}
