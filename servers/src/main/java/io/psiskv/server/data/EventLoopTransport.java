package io.psiskv.server.data;

import io.psiskv.server.Deadlines;
import io.psiskv.server.ServerConfig;
import io.psiskv.server.ServerLog;
import io.psiskv.server.ServerLogProblems;
import io.psiskv.server.backup.FsyncPolicy;
import io.psiskv.server.store.CommitPolicy;
import io.psiskv.server.store.Engine;
import java.io.IOException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;

/**
 * The event-loop policy ({@code --threads event-loop:N}, the default, N = the number of
 * processors): one {@code data-acceptor} thread accepts connections, counts them against the
 * {@link ConnectionLimit} and hands each to the next of N {@link EventLoop}s in turn (memcached's
 * {@code dispatch_conn_new}); each loop serves its connections for their whole life. The thread
 * count does not grow with the connections.
 */
public final class EventLoopTransport implements DataTransport {
  private final ConnectionLimit limit;
  private final EventLoop[] loops;
  private final Thread[] loopThreads;
  private volatile boolean stopping;

  public EventLoopTransport(Engine engine, ServerConfig config, BodyBudget budget,
      ConnectionLimit limit, ServerLogProblems problems) throws IOException {
    this.limit = limit;
    int n = config.threads.count();
    this.loops = new EventLoop[n];
    this.loopThreads = new Thread[n];
    CommitPolicy commitPolicy = new CommitPolicy(config.fsync == FsyncPolicy.ALWAYS);
    for (int i = 0; i < n; i++) {
      loops[i] = new EventLoop(engine, config, budget, limit, problems, commitPolicy);
      loopThreads[i] = new Thread(loops[i], "data-loop-" + i);
      loopThreads[i].setDaemon(true);
    }
  }

  @Override
  public void start(ServerSocketChannel listener) {
    for (Thread t : loopThreads) {
      t.start();
    }
    Thread acceptor = new Thread(() -> accept(listener), "data-acceptor");
    acceptor.setDaemon(true);
    acceptor.start();
  }

  private void accept(ServerSocketChannel listener) {
    int next = 0;
    while (true) {
      SocketChannel channel;
      try {
        channel = listener.accept();
      } catch (IOException e) {
        // A listener closed by the stop (before the transport's own stop) is no failure.
        if (!stopping && listener.isOpen()) {
          ServerLog.error("accept failed, no more connections: " + ServerLog.describe(e));
        }
        return;
      }
      if (limit.tryOpen(channel)) {
        loops[next].add(channel);
        next = (next + 1) % loops.length;
      }
    }
  }

  @Override
  public int openConnections() {
    int n = 0;
    for (EventLoop l : loops) {
      n += l.openConnections();
    }
    return n;
  }

  @Override
  public void stop(long drainMillis) throws InterruptedException {
    stopping = true;
    long deadline = System.nanoTime() + drainMillis * 1_000_000L;
    for (EventLoop l : loops) {
      l.stop(deadline);
    }
    for (Thread t : loopThreads) {
      t.join(Math.max(1, Deadlines.remainingMillis(deadline)) + ServerConfig.DRAIN_TIMEOUT_MILLIS);
    }
  }
}
