package io.psiskv.server;

import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketAddress;
import java.net.SocketTimeoutException;

/**
 * Socket helpers shared by both servers: the read-fully loop, the error close, the peer's name for
 * log lines.
 *
 * <p>Writes need no loop: {@link java.io.OutputStream#write(byte[], int, int)} of a socket blocks
 * until every byte is handed to the kernel. Reads do: TCP is a byte stream and one {@code read}
 * returns whatever has arrived, which may be less than a message.
 */
public final class Sockets {
  private Sockets() {}

  /**
   * Reads exactly {@code len} bytes unless the stream ends first.
   *
   * @return the number of bytes read: {@code len}, or fewer if the peer closed the connection
   */
  public static int readFully(InputStream in, byte[] b, int off, int len) throws IOException {
    int done = 0;
    while (done < len) {
      int n = in.read(b, off + done, len - done);
      if (n < 0) {
        break;
      }
      done += n;
    }
    return done;
  }

  /**
   * Closes a connection after an error response: stops writing (the FIN follows the response),
   * then discards what the peer still sends for a bounded time and size, then closes. Closing a
   * socket with unread input makes the kernel send a reset, which may destroy the response before
   * the peer reads it; the short linger avoids that for well-behaved peers.
   */
  public static void lingerAndClose(Socket socket, byte[] scratch) {
    try {
      socket.shutdownOutput();
      socket.setSoTimeout(ServerConfig.ERROR_LINGER_MILLIS);
      InputStream in = socket.getInputStream();
      long deadline = System.nanoTime() + ServerConfig.ERROR_LINGER_MILLIS * 1_000_000L;
      int drained = 0;
      while (drained < ServerConfig.ERROR_LINGER_MAX_BYTES && System.nanoTime() < deadline) {
        int n = in.read(scratch, 0, scratch.length);
        if (n < 0) {
          break;
        }
        drained += n;
      }
    } catch (SocketTimeoutException e) {
      // The peer kept the connection open without sending: nothing left to drain.
    } catch (IOException e) {
      // The peer is gone already: nothing to protect.
    } finally {
      closeQuietly(socket);
    }
  }

  /** {@code address:port} of the peer, for log lines. */
  public static String peer(Socket socket) {
    SocketAddress a = socket.getRemoteSocketAddress();
    if (a instanceof InetSocketAddress) {
      InetSocketAddress i = (InetSocketAddress) a;
      return (i.getAddress() != null ? i.getAddress().getHostAddress() : i.getHostString()) + ":"
          + i.getPort();
    }
    return String.valueOf(a);
  }

  public static void closeQuietly(Closeable c) {
    if (c == null) {
      return;
    }
    try {
      c.close();
    } catch (IOException e) {
      // Closing is best effort: the descriptor is released either way.
    }
  }
}
