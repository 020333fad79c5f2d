package io.psiskv.client;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.ConnectException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ProtocolFamily;
import java.net.Socket;
import java.net.SocketAddress;
import java.net.SocketException;
import java.net.SocketImpl;
import java.net.SocketOption;
import java.nio.ByteBuffer;
import java.nio.channels.DatagramChannel;
import java.nio.channels.Pipe;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.channels.spi.AbstractSelector;
import java.nio.channels.spi.SelectorProvider;
import java.util.Set;

/**
 * A {@link SelectorProvider} whose socket channels reach no network: a connect is handed to the
 * {@link Connector} the test installed, and the connection's bytes go to and come from the {@link
 * Peer} it returns, in the caller's own thread. {@link KvClient} opens every socket with {@code
 * SocketChannel.open()}, which asks the JVM's one provider, so in a JVM started with {@code
 * -Djava.nio.channels.spi.SelectorProvider=io.psiskv.client.MemorySockets} a real client runs
 * with no socket, no thread and no timing: deterministic, and fast enough to be fuzzed (the
 * fuzz-response-decoding execution of java-client/pom.xml). Only socket channels are served, and
 * of those only what KvClient uses (its socket's streams); every other channel kind throws.
 */
public final class MemorySockets extends SelectorProvider {
  /** The far end of one connection. Called in the client's thread. */
  interface Peer {
    /** The client wrote {@code b[off..off+len)}. */
    void received(byte[] b, int off, int len) throws IOException;

    /**
     * Hands the client at most {@code len} bytes into {@code b[off..)}; returns how many, or -1 for
     * the end of the stream (the peer has nothing more to send: in memory nobody sends later).
     */
    int send(byte[] b, int off, int len) throws IOException;
  }

  /** Decides where a connect leads. */
  interface Connector {
    /** The peer of a new connection to {@code address}; throw (ConnectException) to refuse it. */
    Peer connect(InetSocketAddress address) throws IOException;
  }

  private static volatile Connector connector;

  /** Public, no arguments: the JDK instantiates the provider named by the system property. */
  public MemorySockets() {}

  /** Whether this JVM's sockets are in memory (the system property named this class). */
  static boolean installed() {
    return SelectorProvider.provider() instanceof MemorySockets;
  }

  /** Where the connections made from now on lead. */
  static void connector(Connector c) {
    connector = c;
  }

  @Override
  public SocketChannel openSocketChannel() throws IOException {
    return new MemoryChannel(this);
  }

  @Override
  public DatagramChannel openDatagramChannel() {
    throw unsupported();
  }

  @Override
  public DatagramChannel openDatagramChannel(ProtocolFamily family) {
    throw unsupported();
  }

  @Override
  public Pipe openPipe() {
    throw unsupported();
  }

  @Override
  public AbstractSelector openSelector() {
    throw unsupported();
  }

  @Override
  public ServerSocketChannel openServerSocketChannel() {
    throw unsupported();
  }

  private static UnsupportedOperationException unsupported() {
    return new UnsupportedOperationException("MemorySockets serves socket channels only");
  }

  /** A socket whose streams are a {@link Peer}'s. */
  private static final class MemorySocket extends Socket {
    private Peer peer;
    private InetSocketAddress remote;
    private boolean closed;

    MemorySocket() throws SocketException {
      super((SocketImpl) null); // No implementation: every method KvClient calls is overridden.
    }

    @Override
    public void connect(SocketAddress endpoint) throws IOException {
      connect(endpoint, 0);
    }

    @Override
    public void connect(SocketAddress endpoint, int timeoutMillis) throws IOException {
      if (closed) {
        throw new SocketException("Socket is closed");
      }
      Connector c = connector;
      if (c == null) {
        throw new ConnectException("no MemorySockets connector installed");
      }
      remote = (InetSocketAddress) endpoint;
      peer = c.connect(remote);
    }

    @Override
    public InputStream getInputStream() throws IOException {
      checkOpen();
      return new InputStream() {
        @Override
        public int read() throws IOException {
          byte[] one = new byte[1];
          int n = read(one, 0, 1);
          return n < 0 ? -1 : one[0] & 0xFF;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
          checkOpen();
          return len == 0 ? 0 : peer.send(b, off, len);
        }
      };
    }

    @Override
    public OutputStream getOutputStream() throws IOException {
      checkOpen();
      return new OutputStream() {
        @Override
        public void write(int b) throws IOException {
          write(new byte[] {(byte) b}, 0, 1);
        }

        @Override
        public void write(byte[] b, int off, int len) throws IOException {
          checkOpen();
          peer.received(b, off, len);
        }
      };
    }

    private void checkOpen() throws SocketException {
      if (closed) {
        throw new SocketException("Socket is closed");
      }
      if (peer == null) {
        throw new SocketException("Socket is not connected");
      }
    }

    @Override
    public void setTcpNoDelay(boolean on) {}

    @Override
    public boolean getTcpNoDelay() {
      return true;
    }

    @Override
    public void setSoTimeout(int timeoutMillis) {}

    @Override
    public int getSoTimeout() {
      return 0;
    }

    @Override
    public InetAddress getInetAddress() {
      return remote == null ? null : remote.getAddress();
    }

    @Override
    public int getPort() {
      return remote == null ? 0 : remote.getPort();
    }

    @Override
    public boolean isConnected() {
      return peer != null;
    }

    @Override
    public boolean isClosed() {
      return closed;
    }

    @Override
    public void close() {
      closed = true;
    }
  }

  /** The channel is only the socket's holder: KvClient uses the socket. */
  private static final class MemoryChannel extends SocketChannel {
    private final MemorySocket socket;

    MemoryChannel(SelectorProvider provider) throws SocketException {
      super(provider);
      this.socket = new MemorySocket();
    }

    @Override
    public Socket socket() {
      return socket;
    }

    @Override
    public boolean isConnected() {
      return socket.isConnected();
    }

    @Override
    public boolean isConnectionPending() {
      return false;
    }

    @Override
    public SocketAddress getRemoteAddress() {
      return socket.remote;
    }

    @Override
    public SocketAddress getLocalAddress() {
      return null;
    }

    @Override
    public SocketChannel bind(SocketAddress local) {
      throw unsupported();
    }

    @Override
    public <T> SocketChannel setOption(SocketOption<T> name, T value) {
      return this;
    }

    @Override
    public <T> T getOption(SocketOption<T> name) {
      return null;
    }

    @Override
    public Set<SocketOption<?>> supportedOptions() {
      return Set.of();
    }

    @Override
    public SocketChannel shutdownInput() {
      return this;
    }

    @Override
    public SocketChannel shutdownOutput() {
      return this;
    }

    @Override
    public boolean connect(SocketAddress remote) throws IOException {
      socket.connect(remote);
      return true;
    }

    @Override
    public boolean finishConnect() {
      return socket.isConnected();
    }

    @Override
    public int read(ByteBuffer dst) {
      throw unsupported();
    }

    @Override
    public long read(ByteBuffer[] dsts, int offset, int length) {
      throw unsupported();
    }

    @Override
    public int write(ByteBuffer src) {
      throw unsupported();
    }

    @Override
    public long write(ByteBuffer[] srcs, int offset, int length) {
      throw unsupported();
    }

    @Override
    protected void implCloseSelectableChannel() {
      socket.close();
    }

    @Override
    protected void implConfigureBlocking(boolean block) {}
  }
}
