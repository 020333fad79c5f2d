package io.psiskv.server.testkit;

import static io.psiskv.protocol.Protocol.HEADER_BYTES;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Rules;
import io.psiskv.protocol.Status;
import java.io.Closeable;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketException;

/**
 * A bare protocol client for server tests, built on the codec ({@link Messages}, {@link Header}):
 * typed calls that check each response against its request, and raw byte access for hostile
 * input. Not the product client (that is {@code KvClient}); it does no retries and hides nothing.
 * Every read has a timeout, so a server that fails to answer fails the test instead of hanging it.
 */
public final class RawClient implements Closeable {
  public static final int READ_TIMEOUT_MILLIS = 30_000;
  /** Largest response body this client accepts (more than any test stores). */
  private static final long MAX_BODY_BYTES = 256L * 1024 * 1024;

  /** A response: its header and its body. */
  public static final class Response {
    public final Header header;
    public final byte[] body;

    Response(Header header, byte[] body) {
      this.header = header;
      this.body = body;
    }

    public Status status() {
      return Status.of(header.flagsOrStatus);
    }

    @Override
    public String toString() {
      return header + " status=" + status();
    }
  }

  private final Socket socket;
  private final DataInputStream in;
  private final OutputStream out;
  private final byte[] buf = new byte[Messages.MAX_FIXED_BYTES];
  private long nextId = 1;
  private long sessionId;
  private byte[] sessionSecret;
  private int maxValueBytes = -1;

  private RawClient(Socket socket) throws IOException {
    this.socket = socket;
    socket.setTcpNoDelay(true);
    socket.setSoTimeout(READ_TIMEOUT_MILLIS);
    in = new DataInputStream(socket.getInputStream());
    out = socket.getOutputStream();
  }

  public static RawClient connect(String host, int port) throws IOException {
    Socket s = new Socket();
    try {
      s.connect(new InetSocketAddress(host, port), READ_TIMEOUT_MILLIS);
      return new RawClient(s);
    } catch (IOException e) {
      s.close();
      throw e;
    }
  }

  /** A connection to the Front Server. */
  public static RawClient front(ServerFixture server) throws IOException {
    return connect(server.host(), server.port());
  }

  /** HELLO on a fresh front connection: the Data Server's address (PROTOCOL.md §6.1). */
  public static InetSocketAddress redirect(ServerFixture server) throws IOException {
    try (RawClient front = front(server)) {
      Response r = front.hello();
      if (r.status() != Status.OK) {
        throw new IOException("HELLO answered " + r.status());
      }
      int ip = Header.getU32(r.body, 0);
      int port = Header.getU16(r.body, 4);
      if (ip == 0) {
        return new InetSocketAddress(server.host(), port); // "The host you reached me at".
      }
      byte[] a = new byte[4];
      Header.putU32(a, 0, ip);
      return new InetSocketAddress(InetAddress.getByAddress(a).getHostAddress(), port);
    }
  }

  /** A data connection without a session yet. */
  public static RawClient data(ServerFixture server) throws IOException {
    InetSocketAddress a = redirect(server);
    return connect(a.getHostString(), a.getPort());
  }

  /** A data connection with a new session: ready for PUT, GET, DELETE. */
  public static RawClient session(ServerFixture server) throws IOException {
    RawClient c = data(server);
    try {
      c.newSession();
      return c;
    } catch (IOException | RuntimeException e) {
      c.close();
      throw e;
    }
  }

  /** Whether a new session works end to end: HELLO, connect, SESSION, GET (false on any error). */
  public static boolean servesClients(ServerFixture server) {
    try (RawClient c = session(server)) {
      c.getValue(0);
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  // --- Typed requests. ---

  public Response hello() throws IOException {
    long id = nextId++;
    out.write(buf, 0, Messages.hello(buf, id));
    return readChecked(Opcode.HELLO, id);
  }

  public Response ping() throws IOException {
    long id = nextId++;
    out.write(buf, 0, Messages.ping(buf, id));
    return readChecked(Opcode.PING, id);
  }

  /** SESSION for a new session; returns its id (fails unless OK). */
  public long newSession() throws IOException {
    return resume(0, null);
  }

  /** SESSION with an id and secret (both 0/null: a new one); returns the id (fails unless OK). */
  public long resume(long requested, byte[] secret) throws IOException {
    Response r = sessionResponse(requested, secret);
    if (r.status() != Status.OK) {
      throw new IOException("SESSION answered " + r.status());
    }
    sessionId = Header.getU64(r.body, 0);
    sessionSecret = Messages.sessionSecret(r.body, 0);
    maxValueBytes = Messages.sessionMaxValueBytes(r.body, 0);
    return sessionId;
  }

  public Response sessionResponse(long requested, byte[] secret) throws IOException {
    long id = nextId++;
    out.write(buf, 0, Messages.session(buf, id, requested, secret));
    return readChecked(Opcode.SESSION, id);
  }

  /** The id of the next request: a resumed session's writes must go on above its last one. */
  public void nextRequestId(long id) {
    nextId = id;
  }

  public long sessionId() {
    return sessionId;
  }

  /** The secret SESSION handed out (a copy), null before. */
  public byte[] sessionSecret() {
    return sessionSecret == null ? null : sessionSecret.clone();
  }

  /** The maximum value length the SESSION response announced. */
  public int maxValueBytes() {
    return maxValueBytes;
  }

  public Status put(int key, byte[] value, boolean overwrite) throws IOException {
    long id = nextId++;
    out.write(buf, 0, Messages.putHeader(buf, key, id, overwrite, value.length));
    out.write(value);
    return readChecked(Opcode.PUT, id).status();
  }

  public Response get(int key, long capacity) throws IOException {
    long id = nextId++;
    out.write(buf, 0, Messages.get(buf, key, id, (int) capacity));
    return readChecked(Opcode.GET, id);
  }

  /** The whole value, or null for NOT_FOUND; fails on any other status. */
  public byte[] getValue(int key) throws IOException {
    Response r = get(key, 0xFFFF_FFFFL);
    if (r.status() == Status.NOT_FOUND) {
      return null;
    }
    if (r.status() != Status.OK) {
      throw new IOException("GET answered " + r.status());
    }
    int stored = Header.getU32(r.body, 0);
    byte[] v = new byte[r.body.length - 4];
    System.arraycopy(r.body, 4, v, 0, v.length);
    if (v.length != stored) {
      throw new IOException("GET sent " + v.length + " of " + stored + " bytes");
    }
    return v;
  }

  public Status delete(int key) throws IOException {
    long id = nextId++;
    out.write(buf, 0, Messages.delete(buf, key, id));
    return readChecked(Opcode.DELETE, id).status();
  }

  // --- Raw access. ---

  /** A request header with every field chosen by the caller (may break every rule). */
  public static byte[] header(int magic, int version, int opcode, int flags, int key, long id,
      long bodyLength) {
    byte[] h = new byte[HEADER_BYTES];
    h[Protocol.OFF_MAGIC] = (byte) magic;
    h[Protocol.OFF_VERSION] = (byte) version;
    h[Protocol.OFF_OPCODE] = (byte) opcode;
    h[Protocol.OFF_FLAGS_OR_STATUS] = (byte) flags;
    Header.putU32(h, Protocol.OFF_KEY, key);
    Header.putU64(h, Protocol.OFF_REQUEST_ID, id);
    Header.putU32(h, Protocol.OFF_BODY_LENGTH, (int) bodyLength);
    return h;
  }

  /** A well-formed request header for {@code op}. */
  public static byte[] header(Opcode op, int flags, int key, long id, long bodyLength) {
    return header(Protocol.REQUEST_MAGIC, Protocol.VERSION, op.code(), flags, key, id,
        bodyLength);
  }

  public void send(byte[] bytes) throws IOException {
    out.write(bytes);
    out.flush();
  }

  /**
   * Whether the server closed the connection: true at end of stream (after any bytes it sent
   * before), false if it is still open after the read timeout. A reset counts as closed.
   */
  public boolean readEndOfStream() throws IOException {
    try {
      while (in.read() >= 0) {
        // Drain what came before the close.
      }
      return true;
    } catch (java.net.SocketTimeoutException e) {
      return false;
    } catch (java.net.SocketException e) {
      return true; // Reset: closed too.
    }
  }

  /** {@link #readEndOfStream} for polling: waits at most 100 ms, false on any other error. */
  public boolean readEndOfStreamQuietly() {
    try {
      socket.setSoTimeout(100);
      return readEndOfStream();
    } catch (IOException e) {
      return false;
    }
  }

  /** Reads one response of any kind (checks only that it is a response header). */
  public Response read() throws IOException {
    byte[] hb = new byte[HEADER_BYTES];
    in.readFully(hb);
    Header h = new Header().decode(hb, 0);
    if (h.magic != Protocol.RESPONSE_MAGIC) {
      throw new IOException("not a response: " + h);
    }
    if (h.bodyLength > MAX_BODY_BYTES) {
      throw new IOException("response body too long for a test: " + h);
    }
    byte[] body = new byte[(int) h.bodyLength];
    in.readFully(body);
    return new Response(h, body);
  }

  /** Reads the response to request {@code id} of {@code op} and checks it echoes the request. */
  public Response readChecked(Opcode op, long id) throws IOException {
    Response r = read();
    // The raw client does not track keys: it checks everything but the echoed key.
    String mismatch = Rules.checkResponse(r.header, op, r.header.key, id);
    if (mismatch != null) {
      throw new IOException(mismatch);
    }
    return r;
  }

  /**
   * True if the server closed the connection: the next read meets end of stream or a reset
   * (within the read timeout). False if data arrived instead.
   */
  public boolean closedByPeer() throws IOException {
    try {
      return in.read() < 0;
    } catch (EOFException e) {
      return true;
    } catch (SocketException e) {
      return true; // Connection reset: closed as well.
    }
  }

  /** The input stream, for tests that read a response piece by piece. */
  public DataInputStream rawInput() {
    return in;
  }

  /** Sets the read timeout (tests that expect no answer use a short one). */
  public void setReadTimeoutMillis(int millis) throws IOException {
    socket.setSoTimeout(millis);
  }

  /** {@code address:port} of this end, as the server's log lines name the peer. */
  public String localAddress() {
    return socket.getLocalAddress().getHostAddress() + ":" + socket.getLocalPort();
  }

  @Override
  public void close() throws IOException {
    socket.close();
  }
}
