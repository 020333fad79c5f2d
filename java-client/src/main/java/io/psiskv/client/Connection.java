package io.psiskv.client;

import static io.psiskv.client.Failures.protocolError;
import static io.psiskv.protocol.Protocol.GET_RESPONSE_PREFIX_BYTES;
import static io.psiskv.protocol.Protocol.HEADER_BYTES;
import static io.psiskv.protocol.Protocol.HELLO_RESPONSE_BODY_BYTES;
import static io.psiskv.protocol.Protocol.SESSION_RESPONSE_BODY_BYTES;

import io.psiskv.client.Failures.FrontUnreachable;
import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.channels.ClosedByInterruptException;
import java.nio.channels.SocketChannel;
import java.util.Arrays;
import java.util.function.LongSupplier;

/**
 * One data connection of a client, with its session (PROTOCOL.md §2): the socket, its receive
 * buffer ({@link #in}) and its output stream, made by {@link #establish}: HELLO at the Front
 * Server, then SESSION at the Data Server it names. This class owns the sockets and the set-up;
 * what a call sends and how it is retried is {@link Calls}'s, how an answer is checked {@link
 * ResponseCheck}'s.
 *
 * <p>Not thread-safe: used by the holder of the client's lock, and its {@link #in} by the reader
 * thread instead while asynchronous requests are in flight on it (see {@link InFlight}).
 */
final class Connection {
  /** Values up to this size are copied behind the header so the request leaves in one write. */
  static final int SINGLE_WRITE_MAX_BYTES = 16 * 1024;

  /** A client's scratch buffer for requests: headers, set-up messages and small values. */
  static final int SEND_BUFFER_BYTES = HEADER_BYTES + SINGLE_WRITE_MAX_BYTES;

  /**
   * Capacity of a connection's receive buffer ({@link ResponseReader}): a response with a value up
   * to {@link #SINGLE_WRITE_MAX_BYTES} arrives with one read; the rest of a longer value is read
   * straight into the caller's array.
   */
  private static final int RECEIVE_BUFFER_BYTES =
      HEADER_BYTES + GET_RESPONSE_PREFIX_BYTES + SINGLE_WRITE_MAX_BYTES;

  /**
   * Most bytes one read or write of a socket moves between the network and a value's array. A
   * socket here is a {@link SocketChannel}'s (see {@link #open}); the JDK moves a heap array to
   * and from a channel through a temporary direct buffer as large as the transfer and keeps that
   * buffer cached by the thread, so an unbounded transfer of a 64 MiB value would leave a 64 MiB
   * direct buffer behind in every thread that made one. A plain {@link Socket} stops at 128 KiB
   * itself; this is the same bound.
   */
  static final int TRANSFER_MAX_BYTES = 128 * 1024;

  /** The Front Server a client was given at connect time, and the bound on each set-up step. */
  record Endpoint(String host, int port, int connectTimeoutMillis) {}

  /**
   * A session as a SESSION answer granted it (PROTOCOL.md §6.2): its id (0: none yet), its secret
   * (presented to resume it, so that no other client can; null: none yet), and the server's
   * maximum value length (a relaunched server may have another).
   */
  record Session(long id, byte[] secret, int maxValueBytes) {
    static final Session NONE = new Session(0, null, 0);
  }

  final Socket socket;
  /**
   * The receive buffer: empty between synchronous calls' responses (see {@link
   * ResponseCheck#expectEnd}); read by the reader thread instead while asynchronous requests are
   * in flight.
   */
  final ResponseReader in;
  final OutputStream out;
  /** The session the SESSION answer on this connection granted. */
  final Session session;
  /** Whether this connection resumed a session opened on an earlier one (§12.2). */
  final boolean resumed;

  private Connection(Socket socket, ResponseReader in, OutputStream out, Session session,
      boolean resumed) {
    this.socket = socket;
    this.in = in;
    this.out = out;
    this.session = session;
    this.resumed = resumed;
  }

  /**
   * HELLO at the Front Server, then SESSION at the Data Server it names, presenting {@code
   * presented} ({@link Session#NONE} the first time, then the client's session: a resume, §12.2).
   * Caller holds the client's lock; {@code ids} gives each set-up request its id (PROTOCOL.md
   * §3.2), {@code buf} ({@link #SEND_BUFFER_BYTES}) and {@code header} are the caller's scratch.
   *
   * @return the data connection, its timeouts cleared, with the session it was granted
   * @throws FrontUnreachable if the TCP connection to the Front Server cannot be made
   * @throws Failures.Unavailable if a server answers UNAVAILABLE
   * @throws IOException if a connection cannot be made or breaks
   * @throws KvException on any other error status or a protocol violation
   */
  static Connection establish(Endpoint front, Closing closing, LongSupplier ids, byte[] buf,
      Header header, Session presented) throws IOException {
    InetSocketAddress dataAddress;
    Socket frontSocket;
    try {
      frontSocket = open(new InetSocketAddress(front.host(), front.port()),
          front.connectTimeoutMillis(), closing);
    } catch (ClosedByInterruptException e) {
      throw e; // not the Front Server's fault: withRetries ends the call
    } catch (IOException e) {
      throw new FrontUnreachable(e);
    }
    try {
      long id = ids.getAsLong();
      frontSocket.getOutputStream().write(buf, 0, Messages.hello(buf, id));
      ResponseReader frontIn =
          new ResponseReader(frontSocket.getInputStream(), RECEIVE_BUFFER_BYTES);
      ResponseCheck.readResponse(frontIn, header, Opcode.HELLO, 0, id);
      int at = frontIn.take(HELLO_RESPONSE_BODY_BYTES);
      ResponseCheck.expectEnd(frontIn, Opcode.HELLO);
      int ipv4 = Header.getU32(frontIn.bytes(), at);
      int dataPort = Header.getU16(frontIn.bytes(), at + 4);
      // §6.1: 0.0.0.0 means the host this client reached the Front Server at.
      InetAddress dataHost =
          ipv4 == 0 ? frontSocket.getInetAddress() : InetAddress.getByAddress(toBytes(ipv4));
      dataAddress = new InetSocketAddress(dataHost, dataPort);
    } finally {
      closeQuietly(frontSocket);
    }
    Socket data = open(dataAddress, front.connectTimeoutMillis(), closing);
    try {
      long id = ids.getAsLong();
      OutputStream dataOut = data.getOutputStream();
      ResponseReader dataIn = new ResponseReader(data.getInputStream(), RECEIVE_BUFFER_BYTES);
      dataOut.write(buf, 0, Messages.session(buf, id, presented.id(), presented.secret()));
      ResponseCheck.readResponse(dataIn, header, Opcode.SESSION, 0, id);
      int at = dataIn.take(SESSION_RESPONSE_BODY_BYTES);
      ResponseCheck.expectEnd(dataIn, Opcode.SESSION);
      long granted = Header.getU64(dataIn.bytes(), at);
      byte[] secret = Messages.sessionSecret(dataIn.bytes(), at);
      int max = Messages.sessionMaxValueBytes(dataIn.bytes(), at);
      boolean resumed = presented.id() != 0;
      if (granted == 0 || (resumed && (granted != presented.id()
          || !Arrays.equals(secret, presented.secret()))) || max < 0) {
        // §6.2, §12.6: a resumed session keeps its id and secret, even one the server forgot.
        throw protocolError("SESSION " + Long.toHexString(presented.id()) + " answered session "
            + Long.toHexString(granted) + " with maximum " + Integer.toUnsignedString(max)
            + (resumed ? " and another secret" : ""));
      }
      data.setSoTimeout(0);
      return new Connection(data, dataIn, dataOut, new Session(granted, secret, max), resumed);
    } catch (IOException | RuntimeException e) {
      closeQuietly(data);
      throw e;
    }
  }

  /**
   * A socket connected to {@code address} with the set-up timeouts, published in {@code closing}
   * before it connects so that the client's close can end the connect.
   *
   * <p>The socket is a {@link SocketChannel}'s, used through its {@link Socket} adaptor, because
   * that makes a blocking read one system call. A plain {@code Socket} turns its file descriptor
   * non-blocking at its first read with a timeout (the SESSION answer's) and keeps it so; each
   * later read of an answer that has not arrived yet is then a read that fails (EAGAIN), a poll
   * and a second read. A channel's adaptor returns to blocking mode after a timed read, so once
   * the timeout is 0 a read is one blocking read(2), and a write one write(2) (DESIGN.md §9 has
   * the figures). A channel does not cap a transfer as a plain socket does: see {@link
   * #TRANSFER_MAX_BYTES}.
   */
  private static Socket open(InetSocketAddress address, int timeoutMillis, Closing closing)
      throws IOException {
    Socket s = SocketChannel.open().socket();
    try {
      closing.publish(s);
      s.setTcpNoDelay(true);
      s.connect(address, timeoutMillis);
      s.setSoTimeout(timeoutMillis);
      return s;
    } catch (IOException | RuntimeException e) {
      closeQuietly(s);
      throw e;
    }
  }

  /** Sends a PUT request: one write for a small value, else the header and 128 KiB pieces. */
  void sendPut(byte[] buf, int key, long id, boolean overwrite, byte[] value) throws IOException {
    int n = Messages.putHeader(buf, key, id, overwrite, value.length);
    if (value.length <= SINGLE_WRITE_MAX_BYTES) {
      System.arraycopy(value, 0, buf, n, value.length);
      out.write(buf, 0, n + value.length);
    } else {
      out.write(buf, 0, n);
      for (int off = 0; off < value.length; off += TRANSFER_MAX_BYTES) {
        out.write(value, off, Math.min(TRANSFER_MAX_BYTES, value.length - off));
      }
    }
  }

  /** Whether the socket has been closed (by a failure, a timeout or the client's close). */
  boolean isClosed() {
    return socket.isClosed();
  }

  /** Closes the socket; idempotent. */
  void close() {
    closeQuietly(socket);
  }

  static void closeQuietly(Socket s) {
    if (s != null) {
      try {
        s.close();
      } catch (IOException ignored) {
        // Nothing to do: the socket is unusable either way.
      }
    }
  }

  private static byte[] toBytes(int ipv4) {
    return new byte[] {(byte) (ipv4 >>> 24), (byte) (ipv4 >>> 16), (byte) (ipv4 >>> 8), (byte) ipv4};
  }
}
