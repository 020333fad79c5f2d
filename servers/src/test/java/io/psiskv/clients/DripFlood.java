package io.psiskv.clients;

import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Protocol;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A hostile load for tests and probes: {@code size} connections to one address, each sending a
 * HELLO one byte per tick and never more, on one thread with non-blocking sockets. While the
 * flood is {@linkplain #stopReplacing() replacing}, every connection the server closes is
 * replaced, so {@code size} stay open: at once if it lived a tick or more, else at the next tick
 * (a server that refuses connections at once gets at most {@code size} connects per tick).
 * Afterwards the rest are dripped on until the server has closed them all. Records, per
 * connection, how it ended and how long it lived.
 *
 * <p>Threads: {@link #run} on one thread owns every socket; the counters are safe to read from
 * any thread.
 */
final class DripFlood implements Runnable {
  /** How one dripping connection ended. */
  enum End {
    /** The server closed it: end of stream. */
    END_OF_STREAM,
    /** Connection reset (or another error) instead of an orderly end. */
    RESET,
    /** The server answered bytes to a HELLO that never became whole. */
    ANSWERED,
    /** The flood's hard deadline came first. */
    STILL_OPEN
  }

  /** One finished connection. */
  record Result(End end, long lifetimeNanos) {}

  private static final class Dripper {
    final SocketChannel channel;
    final long openedNanos;
    int sent;

    Dripper(SocketChannel channel, long openedNanos) {
      this.channel = channel;
      this.openedNanos = openedNanos;
    }
  }

  private final InetSocketAddress address;
  private final int size;
  private final long tickNanos;
  private final long hardDeadlineNanos;
  private final byte[] hello = new byte[Protocol.HEADER_BYTES];
  private final List<Result> results = new ArrayList<>();
  private final AtomicInteger open = new AtomicInteger();
  private final AtomicInteger opened = new AtomicInteger();
  /** Replacements of connections that lived less than a tick, made at the next tick. */
  private int deferred;
  private volatile boolean replacing = true;
  private volatile IOException failure;

  /**
   * @param tickMillis the time between two bytes of each connection
   * @param hardDeadlineMillis the flood gives up after this long (the connections still open are
   *     {@link End#STILL_OPEN})
   */
  DripFlood(String host, int port, int size, long tickMillis, long hardDeadlineMillis) {
    this.address = new InetSocketAddress(host, port);
    this.size = size;
    this.tickNanos = tickMillis * 1_000_000L;
    this.hardDeadlineNanos = System.nanoTime() + hardDeadlineMillis * 1_000_000L;
    Messages.hello(hello, 1);
  }

  /** Connections open now. */
  int open() {
    return open.get();
  }

  /** Connections opened so far. */
  int opened() {
    return opened.get();
  }

  /** From now on closed connections are not replaced; the flood ends when all are closed. */
  void stopReplacing() {
    replacing = false;
  }

  /** A connect that failed, which ended the flood; null if none did. */
  IOException failure() {
    return failure;
  }

  /** How every connection ended; call after {@link #run} returned. */
  List<Result> results() {
    synchronized (results) {
      return List.copyOf(results);
    }
  }

  @Override
  public void run() {
    ByteBuffer in = ByteBuffer.allocate(64);
    ByteBuffer one = ByteBuffer.allocate(1);
    try (Selector selector = Selector.open()) {
      for (int i = 0; i < size; i++) {
        connect(selector);
      }
      long nextTick = System.nanoTime() + tickNanos;
      while ((open.get() > 0 || (replacing && deferred > 0))
          && System.nanoTime() - hardDeadlineNanos < 0) {
        long wait = Math.max(1, (nextTick - System.nanoTime()) / 1_000_000L);
        selector.select(key -> {
          Dripper d = (Dripper) key.attachment();
          in.clear();
          try {
            int n = d.channel.read(in);
            if (n < 0) {
              finish(selector, key, End.END_OF_STREAM);
            } else if (n > 0) {
              finish(selector, key, End.ANSWERED);
            }
          } catch (IOException e) {
            finish(selector, key, End.RESET);
          }
        }, wait);
        if (System.nanoTime() - nextTick >= 0) {
          nextTick += tickNanos;
          for (; deferred > 0 && replacing; deferred--) {
            connect(selector);
          }
          for (SelectionKey key : new ArrayList<>(selector.keys())) {
            Dripper d = (Dripper) key.attachment();
            if (!key.isValid() || d.sent >= hello.length - 1) {
              continue; // Never the last byte: the HELLO stays incomplete.
            }
            one.clear();
            one.put(hello[d.sent]).flip();
            try {
              d.channel.write(one);
              d.sent++;
            } catch (IOException e) {
              // Closed by the server meanwhile: the read above tells how.
            }
          }
        }
      }
      long now = System.nanoTime();
      for (SelectionKey key : new ArrayList<>(selector.keys())) {
        if (key.isValid()) {
          Dripper d = (Dripper) key.attachment();
          record(End.STILL_OPEN, now - d.openedNanos);
          key.channel().close();
        }
      }
    } catch (IOException e) {
      failure = e;
    }
  }

  private void connect(Selector selector) throws IOException {
    long now = System.nanoTime(); // Before the connect: the server's clock starts later.
    SocketChannel c = SocketChannel.open(address);
    c.configureBlocking(false);
    c.register(selector, SelectionKey.OP_READ, new Dripper(c, now));
    open.incrementAndGet();
    opened.incrementAndGet();
  }

  private void finish(Selector selector, SelectionKey key, End end) {
    Dripper d = (Dripper) key.attachment();
    long lifetime = System.nanoTime() - d.openedNanos;
    record(end, lifetime);
    key.cancel();
    try {
      d.channel.close();
    } catch (IOException e) {
      // Closing a socket the server closed: nothing to do.
    }
    open.decrementAndGet();
    if (replacing && lifetime < tickNanos) {
      deferred++;
    } else if (replacing) {
      try {
        connect(selector);
      } catch (IOException e) {
        failure = e;
        replacing = false;
      }
    }
  }

  private void record(End end, long lifetimeNanos) {
    synchronized (results) {
      results.add(new Result(end, lifetimeNanos));
    }
  }
}
