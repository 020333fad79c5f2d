package io.psiskv.server;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The Data Server process (process 2): holds the pairs and serves PUT, GET and DELETE to clients
 * the Front Server redirected to it. Started by the Front Server only ({@code --control-port}).
 *
 * <p><b>Start.</b> Bind the client listener (the configured address, an ephemeral port); [load
 * the backup file]; connect to the Front Server's control port on 127.0.0.1, send INIT (client
 * port, pid), read INIT OK (the front's pid); only then start serving.
 *
 * <p><b>Threads</b> (all but main are daemons; none holds a lock across socket I/O):
 *
 * <ul>
 *   <li>{@code main}: starts everything, waits until the stop has finished, exits.
 *   <li>Policy {@code on-demand} (default): one {@code data-acceptor} blocks in {@code accept()}
 *       and starts one {@code data-conn-N} thread per accepted connection; that thread owns the
 *       socket and its buffers until the connection closes. As many threads as clients.
 *   <li>Policy {@code pool:N}: N {@code data-pool-I} threads created at start, each blocking in
 *       {@code accept()}, serving the connection it got until it closes, then accepting again. At
 *       most N clients are served at once; further ones wait in the listen backlog.
 *   <li>{@code control-reader}: reads the control connection; SHUTDOWN or end of stream starts
 *       the stop. {@code heartbeat}: see {@link ControlLink}.
 *   <li>{@code data-stop}: started when the Front Server's process exits (watched through {@code
 *       ProcessHandle.onExit}); the JVM's shutdown hook thread on SIGINT and SIGTERM.
 * </ul>
 *
 * <p><b>Shared state.</b> The {@link Store} locks per stripe. {@code lifecycleLock} guards {@code
 * stopping} and the registration of connections, so that no connection can join the live set
 * after the stop has looked at it; the live set itself is concurrent.
 *
 * <p><b>Stop</b> ({@link #stop}, idempotent; the first caller does the work, others wait): close
 * the listener; ask every connection to stop (idle ones close at once, busy ones after their
 * request); wait for them up to {@value ServerConfig#DRAIN_TIMEOUT_MILLIS} ms, then close the rest
 * by force; [close the backup file]; answer SHUTDOWN if that started it; close the control
 * connection; delete the pid file. Triggers: SHUTDOWN from the front, end of the control stream,
 * exit of the front's process (no Data Server outlives its Front Server), SIGINT/SIGTERM.
 */
public final class DataServer {
  private static final long NO_REPLY = -1;

  private final ServerConfig config;
  /** Set by start() before any connection is accepted. */
  private volatile Engine engine;
  private volatile DataDirLock dataDirLock;
  private final Object lifecycleLock = new Object();
  /** Guarded by lifecycleLock. */
  private boolean stopping;
  private final Set<DataConnection> live = ConcurrentHashMap.newKeySet();
  private final CountDownLatch stopped = new CountDownLatch(1);
  private final AtomicInteger connectionNumbers = new AtomicInteger();
  private volatile ServerSocket listener;
  private volatile ControlLink control;
  private volatile int exitCode = ServerConfig.EXIT_OK;

  private DataServer(ServerConfig config) {
    this.config = config;
  }

  public static void main(String[] args) {
    ServerConfig config = ServerConfig.parseOrExit(ServerConfig.Role.DATA, args);
    Log.init(ServerConfig.Role.DATA.logName);
    DataServer server = new DataServer(config);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      server.stop("signal", NO_REPLY);
      // A signal makes the JVM exit with 128 + signal; an orderly stop exits with our code.
      Runtime.getRuntime().halt(server.exitCode);
    }, "data-shutdown-hook"));
    try {
      server.start();
    } catch (IOException | RuntimeException e) {
      if (!server.isStopping()) { // Else a signal's stop interrupted the start: not a failure.
        Log.info("start failed: " + e);
        server.exitCode = ServerConfig.EXIT_FAILURE;
        server.stop("start failed", NO_REPLY);
      }
    }
    server.awaitStopped();
    System.exit(server.exitCode);
  }

  private void start() throws IOException {
    Files.createDirectories(config.dataDir);
    // Only one Data Server may own a data directory (PROTOCOL.md §11.6): a second one, or a
    // relaunch racing a slow death, stops here with the holder's pid in the message.
    dataDirLock = DataDirLock.acquire(config.dataDir);
    synchronized (lifecycleLock) {
      if (stopping) {
        return;
      }
      PidFile.write(config.dataDir, PidFile.DATA);
    }
    ServerSocket server = new ServerSocket();
    server.setReuseAddress(true);
    if (ServerConfig.SOCKET_BUFFER_BYTES > 0) {
      server.setReceiveBufferSize(ServerConfig.SOCKET_BUFFER_BYTES);
    }
    server.bind(new InetSocketAddress(config.bindAddress, 0), ServerConfig.DATA_LISTEN_BACKLOG);
    listener = server;

    // Replay the backup file before INIT: the Front Server redirects no client until INIT
    // (PROTOCOL.md §7.1), so no client ever sees a half-loaded store.
    long loadStart = System.nanoTime();
    engine = Engine.open(config.dataDir, config.fsync, config.salvage);
    Log.info("loaded " + engine.store().size() + " keys and " + engine.sessions().size()
        + " sessions from " + engine.log().path() + " in "
        + (System.nanoTime() - loadStart) / 1_000_000 + " ms");

    long frontPid = handshake(server.getLocalPort());
    synchronized (lifecycleLock) {
      if (stopping) {
        return;
      }
      startServingThreads(server);
      Log.info("serving on " + config.bindAddress.getHostAddress() + ":"
          + server.getLocalPort() + " (" + config + "); front server pid " + frontPid);
    }
    startMaintenance();
    ControlLink link = control;
    link.startHeartbeats(null);
    Thread reader = new Thread(() -> readControl(link), "control-reader");
    reader.setDaemon(true);
    reader.start();
    Optional<ProcessHandle> front = ProcessHandle.of(frontPid);
    if (front.isEmpty()) {
      stopAsync("front server process " + frontPid + " is gone");
    } else {
      front.get().onExit().thenRun(() -> stopAsync("front server process exited"));
    }
  }

  /**
   * The {@code data-maintenance} thread: every {@value ServerConfig#MAINTENANCE_INTERVAL_MILLIS}
   * ms, starts a compaction of the backup log when it has outgrown the live data (the compaction
   * runs on its own thread), and forgets idle sessions.
   */
  private void startMaintenance() {
    Engine e = engine;
    BackupLog.LiveData live = e.liveData();
    Thread t = new Thread(() -> {
      while (!isStopping()) {
        try {
          Thread.sleep(ServerConfig.MAINTENANCE_INTERVAL_MILLIS); // A period, not a synchronisation.
        } catch (InterruptedException ie) {
          return;
        }
        e.log().maybeCompact(live);
        e.sessions().expireIdle(System.currentTimeMillis());
      }
    }, "data-maintenance");
    t.setDaemon(true);
    t.start();
  }

  /** Connects to the front's control port and does INIT; returns the front's pid. */
  private long handshake(int clientPort) throws IOException {
    Socket socket = new Socket();
    try {
      socket.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), config.controlPort),
          ServerConfig.INIT_REPLY_TIMEOUT_MILLIS);
      ControlLink link = new ControlLink(socket, "front server");
      control = link;
      link.setReadTimeoutMillis(ServerConfig.INIT_REPLY_TIMEOUT_MILLIS);
      long id = link.sendInit(clientPort, ProcessHandle.current().pid());
      Header h = link.read();
      if (!ControlLink.isOkResponse(h, Opcode.INIT, id) || h.bodyLength != 8) {
        throw new IOException("unexpected answer to INIT: " + h);
      }
      link.setReadTimeoutMillis(0);
      return Header.getU64(link.body(), Protocol.HEADER_BYTES);
    } catch (IOException e) {
      Wire.closeQuietly(socket);
      throw new IOException("control connection to the front server on port "
          + config.controlPort + " failed: " + e.getMessage(), e);
    }
  }

  /** Caller holds lifecycleLock. */
  private void startServingThreads(ServerSocket server) {
    List<Thread> threads = new ArrayList<>();
    if (config.poolThreads == 0) {
      threads.add(new Thread(() -> acceptOnDemand(server), "data-acceptor"));
    } else {
      for (int i = 0; i < config.poolThreads; i++) {
        threads.add(new Thread(() -> servePooled(server), "data-pool-" + i));
      }
    }
    for (Thread t : threads) {
      t.setDaemon(true);
      t.start();
    }
  }

  /** The on-demand acceptor: a new thread per connection. */
  private void acceptOnDemand(ServerSocket server) {
    while (true) {
      Socket socket;
      try {
        socket = server.accept();
      } catch (IOException e) {
        if (!isStopping()) {
          Log.info("accept failed, no more connections: " + e.getMessage());
        }
        return;
      }
      DataConnection conn = register(socket);
      if (conn != null) {
        Thread t = new Thread(conn, "data-conn-" + connectionNumbers.incrementAndGet());
        t.setDaemon(true);
        t.start();
      }
    }
  }

  /** A pool thread: accept, serve that connection to its end, accept again. */
  private void servePooled(ServerSocket server) {
    while (true) {
      Socket socket;
      try {
        socket = server.accept();
      } catch (IOException e) {
        if (!isStopping()) {
          Log.info("accept failed, pool thread ends: " + e.getMessage());
        }
        return;
      }
      DataConnection conn = register(socket);
      if (conn == null) {
        return;
      }
      conn.run();
    }
  }

  /** Adds a connection to the live set, or closes it if the server is stopping (null). */
  private DataConnection register(Socket socket) {
    DataConnection conn = new DataConnection(socket, engine, config.maxValueBytes, this::closed);
    synchronized (lifecycleLock) {
      if (!stopping) {
        live.add(conn);
        return conn;
      }
    }
    Wire.closeQuietly(socket);
    return null;
  }

  private void closed(DataConnection conn) {
    live.remove(conn);
    synchronized (lifecycleLock) {
      lifecycleLock.notifyAll();
    }
  }

  private void readControl(ControlLink link) {
    try {
      while (true) {
        Header h = link.read();
        if (ControlLink.isRequest(h, Opcode.HEARTBEAT)) {
          continue;
        }
        if (ControlLink.isRequest(h, Opcode.SHUTDOWN)) {
          stop("SHUTDOWN from the front server", h.requestId);
          return;
        }
        stop("unexpected control message from the front server: " + h, NO_REPLY);
        return;
      }
    } catch (IOException e) {
      if (!isStopping()) {
        stop("control connection lost (" + e.getMessage() + "): the front server is gone",
            NO_REPLY);
      }
    }
  }

  private boolean isStopping() {
    synchronized (lifecycleLock) {
      return stopping;
    }
  }

  private void stopAsync(String reason) {
    Thread t = new Thread(() -> stop(reason, NO_REPLY), "data-stop");
    t.setDaemon(true);
    t.start();
  }

  /**
   * The orderly stop; idempotent and safe from any thread except a connection's own. Returns
   * when the stop has finished (also to callers that came second).
   *
   * @param shutdownRequestId the SHUTDOWN to answer OK when done, or {@link #NO_REPLY}
   */
  private void stop(String reason, long shutdownRequestId) {
    boolean first;
    synchronized (lifecycleLock) {
      first = !stopping;
      stopping = true;
    }
    if (!first) {
      awaitStopped();
      return;
    }
    try {
      Log.info("stopping: " + reason);
      Wire.closeQuietly(listener);
      for (DataConnection conn : live) {
        conn.requestStop();
      }
      long deadline = System.nanoTime() + ServerConfig.DRAIN_TIMEOUT_MILLIS * 1_000_000L;
      synchronized (lifecycleLock) {
        while (!live.isEmpty() && Wire.remainingMillis(deadline) > 0) {
          lifecycleLock.wait(Wire.remainingMillis(deadline));
        }
      }
      if (!live.isEmpty()) {
        Log.info("closing " + live.size() + " connection(s) still busy after "
            + ServerConfig.DRAIN_TIMEOUT_MILLIS + " ms");
        for (DataConnection conn : live) {
          conn.forceClose();
        }
      }
      // Every answered write has been answered after its record was durable; closing syncs
      // whatever the weaker fsync modes left, and ends the log's writer thread.
      Engine current = engine;
      if (current != null) {
        try {
          current.close();
        } catch (IOException ex) {
          Log.info("closing the backup file failed: " + ex.getMessage());
        }
      }
      DataDirLock lock = dataDirLock;
      if (lock != null) {
        try {
          lock.close();
        } catch (IOException ex) {
          Log.info("releasing the data directory lock failed: " + ex.getMessage());
        }
      }
      ControlLink link = control;
      if (link != null) {
        if (shutdownRequestId != NO_REPLY) {
          try {
            link.sendOk(Opcode.SHUTDOWN, shutdownRequestId);
          } catch (IOException e) {
            Log.info("could not answer SHUTDOWN: " + e.getMessage());
          }
        }
        link.close();
      }
      PidFile.deleteIfOurs(config.dataDir, PidFile.DATA);
      Log.info("stopped");
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } finally {
      stopped.countDown();
    }
  }

  private void awaitStopped() {
    boolean interrupted = false;
    while (true) {
      try {
        stopped.await();
        break;
      } catch (InterruptedException e) {
        interrupted = true;
      }
    }
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
  }
}
