package io.psiskv.client;

import static io.psiskv.protocol.Protocol.GET_RESPONSE_PREFIX_BYTES;
import static io.psiskv.protocol.Protocol.HEADER_BYTES;
import static io.psiskv.protocol.Protocol.HELLO_RESPONSE_BODY_BYTES;
import static io.psiskv.protocol.Protocol.SESSION_RESPONSE_BODY_BYTES;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Rules;
import io.psiskv.protocol.Status;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.time.Duration;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A connection to a psiskv store: byte-array values under unsigned 32-bit keys.
 *
 * <pre>{@code
 * try (KvClient kv = KvClient.connect("127.0.0.1", 9999)) {
 *   kv.put(42, "hello".getBytes(UTF_8));                 // store, replacing any old value
 *   boolean stored = kv.putIfAbsent(7, new byte[] {1});  // false if key 7 already existed
 *   Optional<byte[]> v = kv.get(42);                     // the value, or empty
 *   boolean existed = kv.remove(42);
 * }
 * }</pre>
 *
 * <p><b>Keys</b> are Java {@code int}s read as <em>unsigned</em> 32-bit numbers: every one of the
 * 2<sup>32</sup> keys is usable, and {@code -1} is key {@code 0xFFFFFFFF} (4294967295). Use {@link
 * Integer#parseUnsignedInt} and {@link Integer#toUnsignedString} to convert.
 *
 * <p><b>Values</b> are byte arrays of 0 bytes up to the server's maximum ({@link
 * #maxValueBytes()}, 64 MiB by default). The client never keeps a reference to an array it is given
 * after the call returns, and every array it returns is the caller's own.
 *
 * <p><b>Errors.</b> Results are return values ({@code putIfAbsent} returns {@code false} when the key
 * exists, {@code get} returns empty when it does not). Everything else, an unreachable server, a
 * broken connection, a value over the maximum, an error answered by the server, throws {@link
 * KvException} with its {@link Status}. After a connection error the client is unusable and every
 * later call throws; close it and connect again.
 *
 * <p><b>Thread safety.</b> A {@code KvClient} is safe for use by several threads: each call holds
 * the client's lock for one request and its response, so calls from different threads are
 * serialised on the one connection. For parallelism, give each thread its own client.
 *
 * <p>The calls map onto the C API one to one; see the table in README.md and PROTOCOL.md §5.1.
 */
public final class KvClient implements AutoCloseable {
  /** Default bound on establishing each TCP connection (Front Server, then Data Server). */
  public static final Duration DEFAULT_CONNECT_TIMEOUT = Duration.ofMillis(3000);

  /** Values up to this size are copied behind the header so the request leaves in one write. */
  private static final int SINGLE_WRITE_MAX_BYTES = 16 * 1024;

  private final ReentrantLock lock = new ReentrantLock();
  private final Socket socket;
  private final InputStream in;
  private final OutputStream out;
  private final long sessionId;
  private final int maxValueBytes;
  /** Guarded by {@link #lock}: the scratch buffer for headers and small values. */
  private final byte[] buf = new byte[HEADER_BYTES + SINGLE_WRITE_MAX_BYTES];
  private final Header header = new Header();
  /** Guarded by {@link #lock}. */
  private long nextRequestId = 1;
  /** Guarded by {@link #lock}: the reason the connection is unusable, or null. */
  private KvException broken;

  private KvClient(Socket socket, long sessionId, int maxValueBytes, long nextRequestId)
      throws IOException {
    this.socket = socket;
    this.in = socket.getInputStream();
    this.out = socket.getOutputStream();
    this.sessionId = sessionId;
    this.maxValueBytes = maxValueBytes;
    this.nextRequestId = nextRequestId;
  }

  /** Connects with {@link #DEFAULT_CONNECT_TIMEOUT}; see {@link #connect(String, int, Duration)}. */
  public static KvClient connect(String host, int port) {
    return connect(host, port, DEFAULT_CONNECT_TIMEOUT);
  }

  /**
   * Connects to the Front Server at {@code host:port}, which redirects this client to the Data
   * Server, and opens a session there (PROTOCOL.md §2).
   *
   * @param host a host name or an IPv4 address
   * @param port the Front Server's port (9999 by default)
   * @param connectTimeout bound on each TCP connect and on each set-up reply
   * @throws KvException with {@link Status#IO_ERROR} if a server cannot be reached, or the status
   *     the Front Server answered (for example {@link Status#UNAVAILABLE})
   */
  public static KvClient connect(String host, int port, Duration connectTimeout) {
    Objects.requireNonNull(host, "host");
    int timeoutMillis = Math.toIntExact(connectTimeout.toMillis());
    byte[] scratch = new byte[Messages.MAX_FIXED_BYTES];
    Header h = new Header();
    InetSocketAddress dataAddress;
    long requestId = 1;
    try (Socket front = open(new InetSocketAddress(host, port), timeoutMillis)) {
      front.getOutputStream().write(scratch, 0, Messages.hello(scratch, requestId));
      readResponse(front.getInputStream(), scratch, h, Opcode.HELLO, 0, requestId++);
      readFully(front.getInputStream(), scratch, HEADER_BYTES, HELLO_RESPONSE_BODY_BYTES);
      int ipv4 = Header.getU32(scratch, HEADER_BYTES);
      int dataPort = Header.getU16(scratch, HEADER_BYTES + 4);
      InetAddress frontAddress = front.getInetAddress();
      dataAddress = new InetSocketAddress(
          ipv4 == 0 ? frontAddress : InetAddress.getByAddress(toBytes(ipv4)), dataPort);
    } catch (IOException e) {
      throw new KvException(Status.IO_ERROR,
          "cannot reach the psiskv Front Server at " + host + ":" + port + ": " + e, e);
    }
    Socket data = null;
    try {
      data = open(dataAddress, timeoutMillis);
      data.getOutputStream().write(scratch, 0, Messages.session(scratch, requestId, 0));
      readResponse(data.getInputStream(), scratch, h, Opcode.SESSION, 0, requestId++);
      readFully(data.getInputStream(), scratch, HEADER_BYTES, SESSION_RESPONSE_BODY_BYTES);
      long session = Header.getU64(scratch, HEADER_BYTES);
      int max = Header.getU32(scratch, HEADER_BYTES + 8);
      data.setSoTimeout(0);
      return new KvClient(data, session, max, requestId);
    } catch (IOException | RuntimeException e) {
      closeQuietly(data);
      if (e instanceof KvException) {
        throw (KvException) e;
      }
      throw new KvException(Status.IO_ERROR,
          "cannot open a session at the psiskv Data Server " + dataAddress + ": " + e, e);
    }
  }

  /**
   * Stores {@code value} under {@code key}, replacing any earlier value ({@code kv_write} with
   * overwrite 1).
   */
  public void put(int key, byte[] value) {
    write(key, value, true);
  }

  /**
   * Stores {@code value} under {@code key} only if the key has no value, as one atomic
   * check-and-insert on the server ({@code kv_write} with overwrite 0).
   *
   * @return {@code true} if stored; {@code false} if the key already had a value (unchanged)
   */
  public boolean putIfAbsent(int key, byte[] value) {
    return write(key, value, false) == Status.OK;
  }

  /** The value stored under {@code key}, or empty if there is none. */
  public Optional<byte[]> get(int key) {
    lock.lock();
    try {
      long id = begin();
      int capacity = maxValueBytes;
      try {
        out.write(buf, 0, Messages.get(buf, key, id, capacity));
        if (readResult(Opcode.GET, key, id) == Status.NOT_FOUND) {
          return Optional.empty();
        }
        int stored = readStoredLength(capacity);
        byte[] value = new byte[stored];
        readFully(in, value, 0, stored);
        return Optional.of(value);
      } catch (IOException e) {
        throw fail(e);
      }
    } finally {
      lock.unlock();
    }
  }

  /**
   * Reads the value of {@code key} into {@code buffer}, like {@code kv_read}: copies at most {@code
   * buffer.length} bytes, and only as many as the server sends, so a short buffer costs only what
   * it holds.
   *
   * @return the stored length, which may exceed {@code buffer.length}; or {@code -1} if there is no
   *     such key
   */
  public int read(int key, byte[] buffer) {
    Objects.requireNonNull(buffer, "buffer");
    lock.lock();
    try {
      long id = begin();
      try {
        out.write(buf, 0, Messages.get(buf, key, id, buffer.length));
        if (readResult(Opcode.GET, key, id) == Status.NOT_FOUND) {
          return -1;
        }
        int stored = readStoredLength(buffer.length);
        readFully(in, buffer, 0, Math.min(stored, buffer.length));
        return stored;
      } catch (IOException e) {
        throw fail(e);
      }
    } finally {
      lock.unlock();
    }
  }

  /**
   * Removes {@code key} and its value.
   *
   * @return {@code true} if the key had a value; {@code false} if there was none
   */
  public boolean remove(int key) {
    lock.lock();
    try {
      long id = begin();
      try {
        out.write(buf, 0, Messages.delete(buf, key, id));
        return readResult(Opcode.DELETE, key, id) == Status.OK;
      } catch (IOException e) {
        throw fail(e);
      }
    } finally {
      lock.unlock();
    }
  }

  /** The server's maximum value length in bytes, learned at connection set-up. */
  public int maxValueBytes() {
    return maxValueBytes;
  }

  /** Closes the connection. Idempotent; later calls throw {@link KvException}. */
  @Override
  public void close() {
    lock.lock();
    try {
      if (broken == null) {
        broken = new KvException(Status.IO_ERROR, "client is closed");
      }
      closeQuietly(socket);
    } finally {
      lock.unlock();
    }
  }

  @Override
  public String toString() {
    return "KvClient[" + socket.getRemoteSocketAddress() + ", session "
        + Long.toHexString(sessionId) + "]";
  }

  private Status write(int key, byte[] value, boolean overwrite) {
    Objects.requireNonNull(value, "value");
    if (value.length > maxValueBytes) {
      throw new KvException(Status.TOO_LARGE, "value of " + value.length
          + " bytes exceeds the server's maximum of " + maxValueBytes);
    }
    lock.lock();
    try {
      long id = begin();
      try {
        int n = Messages.putHeader(buf, key, id, overwrite, value.length);
        if (value.length <= SINGLE_WRITE_MAX_BYTES) {
          System.arraycopy(value, 0, buf, n, value.length);
          out.write(buf, 0, n + value.length);
        } else {
          out.write(buf, 0, n);
          out.write(value);
        }
        return readResult(Opcode.PUT, key, id);
      } catch (IOException e) {
        throw fail(e);
      }
    } finally {
      lock.unlock();
    }
  }

  /** Caller holds {@link #lock}: checks the client is usable and takes the next request id. */
  private long begin() {
    if (broken != null) {
      throw new KvException(broken.status(), broken.getMessage(), broken);
    }
    return nextRequestId++;
  }

  /**
   * Reads a response header; returns OK, KEY_EXISTS or NOT_FOUND (with the body still unread), or
   * throws for an error status. Caller holds {@link #lock}.
   */
  private Status readResult(Opcode op, int key, long id) throws IOException {
    try {
      readResponse(in, buf, header, op, key, id);
    } catch (KvException e) {
      // The server closes the connection after an error status (PROTOCOL.md §8).
      throw breakWith(e);
    }
    return Status.of(header.flagsOrStatus);
  }

  /** Reads the stored-length prefix of a GET OK body and checks the body length against it. */
  private int readStoredLength(int capacity) throws IOException {
    readFully(in, buf, 0, GET_RESPONSE_PREFIX_BYTES);
    int stored = Header.getU32(buf, 0);
    String mismatch = Rules.checkGetOkBody(header.bodyLength, capacity, stored);
    if (mismatch == null && stored < 0) {
      mismatch = "GET stored length " + Integer.toUnsignedString(stored) + " exceeds any value";
    }
    if (mismatch != null) {
      throw new IOException("protocol error: " + mismatch);
    }
    return stored;
  }

  private static void readResponse(
      InputStream in, byte[] scratch, Header h, Opcode op, int key, long id) throws IOException {
    readFully(in, scratch, 0, HEADER_BYTES);
    h.decode(scratch, 0);
    String mismatch = Rules.checkResponse(h, op, key, id);
    if (mismatch != null) {
      throw new IOException("protocol error: " + mismatch);
    }
    Status status = Status.of(h.flagsOrStatus);
    if (status.code() >= Status.BAD_REQUEST.code()) {
      throw new KvException(status, op + " failed: " + status.message());
    }
  }

  /** Loops because a socket read may return fewer bytes than asked for. */
  private static void readFully(InputStream in, byte[] b, int off, int len) throws IOException {
    while (len > 0) {
      int n = in.read(b, off, len);
      if (n < 0) {
        throw new EOFException("connection closed by the server");
      }
      off += n;
      len -= n;
    }
  }

  private KvException fail(IOException e) {
    return breakWith(new KvException(Status.IO_ERROR, "connection to psiskv failed: " + e, e));
  }

  /** Caller holds {@link #lock}: marks the connection unusable and closes it. */
  private KvException breakWith(KvException e) {
    broken = e;
    closeQuietly(socket);
    return e;
  }

  private static Socket open(InetSocketAddress address, int timeoutMillis) throws IOException {
    Socket s = new Socket();
    try {
      s.setTcpNoDelay(true);
      s.connect(address, timeoutMillis);
      s.setSoTimeout(timeoutMillis);
      return s;
    } catch (IOException e) {
      closeQuietly(s);
      throw e;
    }
  }

  private static byte[] toBytes(int ipv4) {
    return new byte[] {(byte) (ipv4 >>> 24), (byte) (ipv4 >>> 16), (byte) (ipv4 >>> 8), (byte) ipv4};
  }

  private static void closeQuietly(Socket s) {
    if (s != null) {
      try {
        s.close();
      } catch (IOException ignored) {
        // Nothing to do: the socket is unusable either way.
      }
    }
  }
}
