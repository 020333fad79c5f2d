package io.psiskv.server.data;

import io.psiskv.server.Deadlines;
import io.psiskv.server.ServerConfig;
import io.psiskv.server.ServerLog;
import io.psiskv.server.ServerLogProblems;
import io.psiskv.server.Sockets;
import io.psiskv.server.store.Engine;
import java.io.IOException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The two thread-per-connection policies, each connection a {@link BlockingConnection}:
 *
 * <ul>
 *   <li>{@code on-demand}: one {@code data-acceptor} thread blocks in {@code accept()} and starts
 *       one {@code data-conn-N} thread per accepted connection. As many threads as connections
 *       (at most {@code --max-connections}).
 *   <li>{@code pool:N}: N {@code data-pool-I} threads created at start, each blocking in {@code
 *       accept()}, serving the connection it got until it closes, then accepting again. At most N
 *       clients are served at once; further ones wait in the listen backlog.
 * </ul>
 *
 * <p>{@code lock} guards {@code stopping} and the registration of connections, so that no
 * connection can join the live set after the stop has looked at it; the set itself is concurrent.
 */
public final class BlockingTransport implements DataTransport {
  private final Engine engine;
  private final ServerConfig config;
  private final BodyBudget budget;
  private final ConnectionLimit limit;
  private final ServerLogProblems problems;
  private final Object lock = new Object();
  /** Guarded by lock. */
  private boolean stopping;
  private final Set<BlockingConnection> live = ConcurrentHashMap.newKeySet();
  private final AtomicInteger connectionNumbers = new AtomicInteger();
  private final List<Thread> threads = new ArrayList<>();

  public BlockingTransport(Engine engine, ServerConfig config, BodyBudget budget,
      ConnectionLimit limit, ServerLogProblems problems) {
    this.engine = engine;
    this.config = config;
    this.budget = budget;
    this.limit = limit;
    this.problems = problems;
  }

  @Override
  public void start(ServerSocketChannel listener) {
    if (config.threads.kind() == ServerConfig.ThreadPolicy.Kind.POOL) {
      for (int i = 0; i < config.threads.count(); i++) {
        threads.add(new Thread(() -> servePooled(listener), "data-pool-" + i));
      }
    } else {
      threads.add(new Thread(() -> acceptOnDemand(listener), "data-acceptor"));
    }
    for (Thread t : threads) {
      t.setDaemon(true);
      t.start();
    }
  }

  @Override
  public int openConnections() {
    return live.size();
  }

  /** The on-demand acceptor: a new thread per connection. */
  private void acceptOnDemand(ServerSocketChannel listener) {
    for (BlockingConnection c; (c = acceptNext(listener, "no more connections")) != null; ) {
      Thread t = new Thread(c, "data-conn-" + connectionNumbers.incrementAndGet());
      t.setDaemon(true);
      t.start();
    }
  }

  /** A pool thread: accept, serve that connection to its end, accept again. */
  private void servePooled(ServerSocketChannel listener) {
    for (BlockingConnection c; (c = acceptNext(listener, "pool thread ends")) != null; ) {
      c.run();
    }
  }

  /** The next registered connection, or null once the listener is closed or the stop began. */
  private BlockingConnection acceptNext(ServerSocketChannel listener, String consequence) {
    while (true) {
      SocketChannel channel;
      try {
        channel = listener.accept();
      } catch (IOException e) {
        if (!isStopping()) {
          ServerLog.info("accept failed, " + consequence + ": " + ServerLog.describe(e));
        }
        return null;
      }
      if (!limit.tryOpen(channel)) {
        continue; // Refused with UNAVAILABLE by the limit's refuser.
      }
      BlockingConnection c = new BlockingConnection(channel, engine, config, budget, limit,
          problems, this::closed);
      synchronized (lock) {
        if (!stopping) {
          live.add(c);
          return c;
        }
      }
      limit.closed();
      Sockets.closeQuietly(channel);
      return null;
    }
  }

  private void closed(BlockingConnection c) {
    live.remove(c);
    limit.closed();
    synchronized (lock) {
      lock.notifyAll();
    }
  }

  private boolean isStopping() {
    synchronized (lock) {
      return stopping;
    }
  }

  @Override
  public void stop(long drainMillis) throws InterruptedException {
    synchronized (lock) {
      stopping = true;
    }
    for (BlockingConnection c : live) {
      c.requestStop();
    }
    long deadline = System.nanoTime() + drainMillis * 1_000_000L;
    synchronized (lock) {
      while (!live.isEmpty() && Deadlines.remainingMillis(deadline) > 0) {
        lock.wait(Deadlines.remainingMillis(deadline));
      }
    }
    if (!live.isEmpty()) {
      ServerLog.info("closing " + live.size() + " connection(s) still busy after " + drainMillis
          + " ms");
      for (BlockingConnection c : live) {
        c.forceClose();
      }
    }
  }
}
