package io.psiskv.client;

import static io.psiskv.protocol.Protocol.HEADER_BYTES;
import static io.psiskv.protocol.Protocol.SESSION_REQUEST_BODY_BYTES;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Status;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A scripted in-process stand-in for the two servers, to test the client's side of the protocol
 * (including answers no correct server gives, and crashes) without starting processes.
 *
 * <p>The front answers HELLO with its current data port, or UNAVAILABLE while the data listener is
 * stopped or {@link #answerUnavailableToHellos} asks for it, or not at all while {@link
 * #hangHellos} is set. The data listener answers SESSION itself (0 gets {@link #SESSION_ID}, any
 * other id is resumed, as the real Data Server does) and hands every later request to a {@link
 * Script}. Every request it sees is recorded ({@link #seen}).
 *
 * <p>Threads: one accepting front connections for the fake's life, one accepting data connections
 * per data listener, and one per accepted connection; all daemons, all ended by {@link #close}
 * (which closes every socket). State shared with the test thread is thread-safe.
 */
final class FakeServer implements AutoCloseable {
  static final long SESSION_ID = 0x1122334455667788L;
  /** The secret of every new session the fake grants. */
  static final byte[] SESSION_SECRET =
      "fake-secret-0123".getBytes(java.nio.charset.StandardCharsets.US_ASCII);

  /** Answers one data request. May write anything; throwing closes the connection unanswered. */
  interface Script {
    void answer(Request request, OutputStream out) throws IOException;
  }

  /**
   * One request as the fake saw it. {@code connection} numbers data connections from 1; {@code
   * sessionId} is the connection's session (for a SESSION request: the id it presented).
   */
  record Request(int connection, long sessionId, Opcode op, int flags, int key, long requestId,
      byte[] body) {
    @Override
    public String toString() {
      return "#" + connection + " " + op + " session=" + Long.toHexString(sessionId) + " key="
          + Integer.toUnsignedString(key) + " id=" + requestId;
    }
  }

  private final ServerSocket front;
  private final Set<Socket> open = ConcurrentHashMap.newKeySet();
  private final List<Request> seen = new CopyOnWriteArrayList<>();
  private final AtomicInteger hellos = new AtomicInteger();
  private final AtomicInteger dataConnections = new AtomicInteger();
  private final AtomicInteger unavailableHellos = new AtomicInteger();
  private volatile boolean hangHellos;
  private volatile ServerSocket data;
  private volatile int maxValueBytes;
  /** Non-zero: SESSION is answered with this id whatever was presented (a broken server). */
  private volatile long sessionIdOverride;
  /** Bytes sent after every SESSION answer, in the same write (a broken server). */
  private volatile int sessionTrailingBytes;
  private volatile Script script;
  private volatile boolean closed;

  FakeServer(int maxValueBytes, Script script) throws IOException {
    this.front = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
    this.maxValueBytes = maxValueBytes;
    this.script = script;
    startDaemon("fake-front", this::acceptFront);
    startData();
  }

  int port() {
    return front.getLocalPort();
  }

  void setScript(Script script) {
    this.script = script;
  }

  void setMaxValueBytes(int maxValueBytes) {
    this.maxValueBytes = maxValueBytes;
  }

  void setSessionIdOverride(long sessionId) {
    this.sessionIdOverride = sessionId;
  }

  void setSessionTrailingBytes(int n) {
    this.sessionTrailingBytes = n;
  }

  /** The next {@code n} HELLOs are answered UNAVAILABLE (a Data Server being relaunched). */
  void answerUnavailableToHellos(int n) {
    unavailableHellos.set(n);
  }

  /** While set, front connections are accepted and never answered. */
  void hangHellos(boolean hang) {
    hangHellos = hang;
  }

  /** Front connections accepted so far (one per HELLO the client sent or tried to send). */
  int hellos() {
    return hellos.get();
  }

  /** Data connections accepted so far. */
  int dataConnections() {
    return dataConnections.get();
  }

  /** Every request seen on data connections, SESSION included, in arrival order. */
  List<Request> seen() {
    return List.copyOf(seen);
  }

  /** The requests seen with opcode {@code op}. */
  List<Request> seen(Opcode op) {
    List<Request> result = new ArrayList<>();
    for (Request r : seen) {
      if (r.op() == op) {
        result.add(r);
      }
    }
    return result;
  }

  /** The Data Server "crashes": its listener closes (connections are refused) and so does every
   * open data connection. The front answers UNAVAILABLE until {@link #startData}. */
  synchronized void stopData() throws IOException {
    ServerSocket d = data;
    data = null;
    if (d != null) {
      d.close();
    }
    dropConnections();
  }

  /** The Data Server is (re)launched, on a new ephemeral port as a relaunch may be. */
  synchronized void startData() throws IOException {
    ServerSocket d = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
    data = d;
    startDaemon("fake-data-accept", () -> acceptData(d));
  }

  /** Closes every open connection (front and data) without an answer; listeners stay. */
  void dropConnections() {
    for (Socket s : open) {
      closeQuietly(s);
    }
  }

  /** The front stops listening: connections to it are refused. */
  void stopFront() throws IOException {
    front.close();
  }

  @Override
  public void close() throws IOException {
    closed = true;
    front.close();
    stopData();
    dropConnections();
  }

  private void acceptFront() {
    while (!closed) {
      Socket f;
      try {
        f = front.accept();
      } catch (IOException e) {
        return; // stopFront() or close()
      }
      hellos.incrementAndGet();
      track(f);
      startDaemon("fake-front-conn", () -> serveFront(f));
    }
  }

  private void serveFront(Socket f) {
    try (f) {
      DataInputStream in = new DataInputStream(f.getInputStream());
      byte[] buf = new byte[64];
      in.readFully(buf, 0, HEADER_BYTES);
      Header h = new Header().decode(buf, 0);
      if (hangHellos) {
        in.read(); // blocks until the client or close() ends the connection
        return;
      }
      ServerSocket d = data;
      int n;
      if (d == null || unavailableHellos.getAndUpdate(u -> Math.max(0, u - 1)) > 0) {
        n = Messages.status(buf, h.opcode, Status.UNAVAILABLE, 0, h.requestId);
      } else {
        n = Messages.helloOk(buf, h.requestId, 0, d.getLocalPort());
      }
      f.getOutputStream().write(buf, 0, n);
    } catch (IOException e) {
      // The client went away, or the fake is closing.
    } finally {
      open.remove(f);
    }
  }

  private void acceptData(ServerSocket d) {
    while (true) {
      Socket s;
      try {
        s = d.accept();
      } catch (IOException e) {
        return; // stopData() or close()
      }
      int connection = dataConnections.incrementAndGet();
      track(s);
      try {
        s.setTcpNoDelay(true); // each write of a script leaves as its own segment
      } catch (IOException e) {
        closeQuietly(s);
        continue;
      }
      startDaemon("fake-data-conn", () -> serveData(s, connection));
    }
  }

  private void serveData(Socket s, int connection) {
    try (s) {
      DataInputStream in = new DataInputStream(s.getInputStream());
      OutputStream out = s.getOutputStream();
      byte[] buf = new byte[128];
      in.readFully(buf, 0, HEADER_BYTES + SESSION_REQUEST_BODY_BYTES);
      Header h = new Header().decode(buf, 0);
      long presented = Header.getU64(buf, HEADER_BYTES);
      seen.add(new Request(connection, presented, Opcode.of(h.opcode), h.flagsOrStatus, h.key,
          h.requestId, Arrays.copyOfRange(buf, HEADER_BYTES, HEADER_BYTES + 8)));
      long session = sessionIdOverride != 0 ? sessionIdOverride
          : presented == 0 ? SESSION_ID : presented;
      // A resumed session keeps its secret: the fake echoes the presented one.
      byte[] secret = presented == 0 ? SESSION_SECRET : Messages.sessionSecret(buf, HEADER_BYTES);
      int n = Messages.sessionOk(buf, h.requestId, session, secret, maxValueBytes);
      int trailing = sessionTrailingBytes;
      Arrays.fill(buf, n, n + trailing, (byte) 'x');
      out.write(buf, 0, n + trailing);
      while (true) {
        in.readFully(buf, 0, HEADER_BYTES);
        h.decode(buf, 0);
        if (h.bodyLength > Integer.MAX_VALUE - 8) {
          throw new IOException("the fake takes no body of " + h.bodyLength + " bytes");
        }
        byte[] body = new byte[(int) h.bodyLength];
        in.readFully(body);
        Request r = new Request(connection, session, Opcode.of(h.opcode), h.flagsOrStatus, h.key,
            h.requestId, body);
        seen.add(r);
        script.answer(r, out);
      }
    } catch (IOException endOfClient) {
      // The client closed, the script dropped the connection, or the fake "crashed".
    } finally {
      open.remove(s);
    }
  }

  private void track(Socket s) {
    open.add(s);
    if (closed) {
      closeQuietly(s);
    }
  }

  private static void startDaemon(String name, Runnable r) {
    Thread t = new Thread(r, name);
    t.setDaemon(true);
    t.start();
  }

  private static void closeQuietly(Socket s) {
    try {
      s.close();
    } catch (IOException ignored) {
      // Closing is all that is wanted.
    }
  }

  /**
   * A script that behaves like a correct server over one in-memory map, with the exactly-once
   * table of PROTOCOL.md §12.5: a PUT or DELETE whose (session, request id) equals the session's
   * last applied write is answered its stored result and not applied again.
   */
  static Script correct(Map<Integer, byte[]> map) {
    Map<Long, long[]> lastWrite = new ConcurrentHashMap<>();
    return (r, out) -> {
      byte[] b = new byte[HEADER_BYTES + 4];
      int opcode = r.op().code();
      switch (r.op()) {
        case PUT:
        case DELETE: {
          long[] last = lastWrite.get(r.sessionId());
          Status result;
          if (last != null && last[0] == r.requestId()) {
            result = Status.of((int) last[1]);
          } else if (r.op() == Opcode.PUT) {
            boolean overwrite = r.flags() == 1;
            boolean stored = overwrite || !map.containsKey(r.key());
            if (stored) {
              map.put(r.key(), r.body());
            }
            result = stored ? Status.OK : Status.KEY_EXISTS;
          } else {
            result = map.remove(r.key()) != null ? Status.OK : Status.NOT_FOUND;
          }
          lastWrite.put(r.sessionId(), new long[] {r.requestId(), result.code()});
          out.write(b, 0, Messages.status(b, opcode, result, r.key(), r.requestId()));
          break;
        }
        case GET: {
          byte[] v = map.get(r.key());
          if (v == null) {
            out.write(b, 0, Messages.status(b, opcode, Status.NOT_FOUND, r.key(), r.requestId()));
          } else {
            int cap = Header.getU32(r.body(), 0);
            int sent = (int) Math.min(Integer.toUnsignedLong(cap), v.length);
            out.write(b, 0, Messages.getOkPrefix(b, r.key(), r.requestId(), v.length, sent));
            out.write(Arrays.copyOf(v, sent));
          }
          break;
        }
        default:
          throw new IOException("unexpected " + r.op());
      }
    };
  }

  /**
   * The first {@code n} requests get no answer: the connection closes, as when the Data Server
   * crashes. With {@code applyFirst} each is first handed to {@code then} with its answer lost (a
   * crash after the write was applied), else never applied (a crash before). Later requests go to
   * {@code then}.
   */
  static Script dropFirst(int n, boolean applyFirst, Script then) {
    AtomicInteger left = new AtomicInteger(n);
    return (r, out) -> {
      if (left.getAndDecrement() > 0) {
        if (applyFirst) {
          then.answer(r, OutputStream.nullOutputStream());
        }
        throw new IOException("dropped by the script");
      }
      then.answer(r, out);
    };
  }

  /** The first {@code n} requests are answered UNAVAILABLE and the connection closes (§8). */
  static Script unavailableFirst(int n, Script then) {
    AtomicInteger left = new AtomicInteger(n);
    return (r, out) -> {
      if (left.getAndDecrement() > 0) {
        answerStatus(r, out, Status.UNAVAILABLE);
        throw new IOException("closed after UNAVAILABLE");
      }
      then.answer(r, out);
    };
  }

  /**
   * Answers as {@code then} does, but writes its answer in pieces: the first {@code cuts[0]} bytes,
   * then up to {@code cuts[1]}, ..., then the rest, each piece a write of its own (and, the data
   * sockets having TCP_NODELAY, a segment of its own). {@code oneByteAtATime} writes every byte
   * apart instead.
   */
  static Script inPieces(Script then, boolean oneByteAtATime, int... cuts) {
    return (r, out) -> {
      ByteArrayOutputStream answer = new ByteArrayOutputStream();
      then.answer(r, answer);
      byte[] b = answer.toByteArray();
      int from = 0;
      for (int cut : cuts) {
        int to = Math.min(cut, b.length);
        out.write(b, from, to - from);
        out.flush();
        from = to;
      }
      for (int i = from; oneByteAtATime && i < b.length; i++) {
        out.write(b, i, 1);
        out.flush();
        from = i + 1;
      }
      out.write(b, from, b.length - from);
    };
  }

  /** Answers as {@code then} does, with {@code n} more bytes in the same write. */
  static Script trailing(int n, Script then) {
    return (r, out) -> {
      ByteArrayOutputStream answer = new ByteArrayOutputStream();
      then.answer(r, answer);
      answer.write(new byte[n]);
      out.write(answer.toByteArray());
    };
  }

  /** Writes an empty-bodied response with {@code status} echoing {@code r}. */
  static void answerStatus(Request r, OutputStream out, Status status) throws IOException {
    byte[] b = new byte[HEADER_BYTES];
    out.write(b, 0, Messages.status(b, r.op().code(), status, r.key(), r.requestId()));
  }
}
