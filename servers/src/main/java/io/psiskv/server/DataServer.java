package io.psiskv.server;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ProtocolException;
import java.net.Socket;
import java.nio.channels.ServerSocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The Data Server process (process 2): holds the pairs and serves PUT, GET and DELETE to clients
 * the Front Server redirected to it, and supervises the Front Server (relaunches it when it dies
 * or hangs, see {@link Supervisor}). Started by a Front Server only ({@code --control-port},
 * {@code --front-port}).
 *
 * <p><b>Start.</b> Lock the data directory; bind the client listener (the configured address, an
 * ephemeral port); load the backup file; connect to the Front Server's control port on
 * 127.0.0.1, send INIT (client port, pid), read INIT OK (the front's pid); only then start
 * serving.
 *
 * <p><b>Supervision of the Front Server.</b> When the front is down (its control connection
 * ends, its process exits, or it is silent for more than {@value Supervisor#HUNG_AFTER_MILLIS} ms,
 * found hung ({@link Supervisor}) and SIGKILLed) this process relaunches it: the same java and
 * classpath, {@code io.psiskv.server.FrontServer} with the same settings, {@code --port} exactly
 * the old client port and {@code --adopt-data <our pid>}; stdin /dev/null, stderr appended to
 * {@value ServerConfig#FRONT_LOG_FILE} in the data directory, stdout a pipe: its first line
 * {@code control port N} names the new front's control port, and every line is appended to the
 * same log file ({@code front-stdout} thread). Then the same INIT handshake as at start. Data connections keep
 * being served meanwhile; only new clients wait (they cannot reach a front).
 *
 * <p><b>Threads</b> (all but main are daemons; none holds a lock across socket I/O):
 *
 * <ul>
 *   <li>{@code main}: starts everything, waits until the stop has finished, exits.
 *   <li>The serving threads of the {@code --threads} policy ({@link DataTransport}): {@code
 *       event-loop:N} (default) one {@code data-acceptor} and N {@code data-loop-I} selector
 *       threads ({@link EventLoopTransport}); {@code on-demand} one {@code data-acceptor} and a
 *       {@code data-conn-N} thread per connection; {@code pool:N} N {@code data-pool-I} threads
 *       ({@link BlockingTransport}).
 *   <li>{@code data-refuser}: answers UNAVAILABLE to connections over {@code --max-connections}
 *       ({@link ConnectionLimit}).
 *   <li>{@code psiskv-log-sync}: EVERYSEC's periodic force and the retries after a disk failure
 *       ({@link BackupLog}); commits are made by the serving threads themselves.
 *   <li>{@code control-reader}, {@code heartbeat}, {@code control-watchdog}: the control
 *       connection ({@link ControlLink}): SHUTDOWN starts the stop, STATUS is answered.
 *   <li>{@code front-server-supervisor}: the relaunch loop; {@code front-stdout}: copies a
 *       relaunched front's stdout into its log file.
 *   <li>{@code data-maintenance}: compaction trigger, session expiry, the problem log's
 *       summary lines.
 *   <li>the JVM's shutdown hook thread on SIGINT and SIGTERM.
 * </ul>
 *
 * <p><b>Shared state.</b> The {@link Store} locks per stripe; {@link Engine} and {@link BackupLog}
 * say the rest. {@code lifecycleLock} guards {@code stopping} and the start of the serving threads.
 *
 * <p><b>Stop</b> ({@link #stop}, idempotent; the first caller does the work, others wait): stop
 * supervising (nothing is relaunched from then on); on a signal, tell the front with SHUTDOWN
 * that this stop is on purpose (PROTOCOL.md §7.3: it stops too instead of relaunching us), or
 * SIGTERM a front that is still starting; close the listener; ask every connection to stop (idle
 * ones close at once, busy ones after their request); wait for them up to {@value
 * ServerConfig#DRAIN_TIMEOUT_MILLIS} ms, then close the rest by force; sync and close the backup
 * file; answer SHUTDOWN if that started it; close the control connection; delete the pid file.
 * Triggers: SHUTDOWN from the front, SIGINT/SIGTERM. The front's death is not one: the front is
 * relaunched.
 */
public final class DataServer {
  private static final long NO_REPLY = -1;

  private final ServerConfig config;
  /** The Front Server of the last completed INIT (STATS {@code front_pid}); 0 before any. */
  private volatile long linkedFrontPid;
  /** Set by start() before any connection is accepted. */
  private volatile Engine engine;
  private volatile DataDirLock dataDirLock;
  private final Object lifecycleLock = new Object();
  /** Guarded by lifecycleLock. */
  private boolean stopping;
  private final CountDownLatch stopped = new CountDownLatch(1);
  private final Supervisor supervisor;
  private volatile ServerSocketChannel listener;
  private volatile ConnectionLimit connectionLimit;
  /** Set under lifecycleLock once serving starts; null before. */
  private volatile DataTransport transport;
  private volatile int exitCode = ServerConfig.EXIT_OK;
  /** Data connections' problem lines, rate-limited. */
  private final ProblemLog problems = ProblemLog.forDataServer();
  /** The pair secret (PROTOCOL.md §7.1), from the launching Front Server on our stdin. */
  private volatile ControlAuth auth;

  private DataServer(ServerConfig config) {
    this.config = config;
    this.supervisor = new Supervisor("front server", this::launchFrontServer, () -> {},
        config.hangTimeoutMillis);
  }

  public static void main(String[] args) {
    ServerConfig config = ServerOptions.parseOrExit(ServerConfig.Role.DATA, args);
    Log.init(ServerConfig.Role.DATA.logName);
    try {
      Log.configure(config.logLevel, config.logFile);
    } catch (IOException e) {
      System.err.println("psiskv-server (data): " + e.getMessage());
      System.exit(ServerConfig.EXIT_FAILURE);
      return;
    }
    Console.ignoreTerminalStops(); // It shares the Front Server's process group and terminal.
    DataServer server = new DataServer(config);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      server.stop("signal", NO_REPLY, true);
      // A signal makes the JVM exit with 128 + signal; an orderly stop exits with our code.
      Runtime.getRuntime().halt(server.exitCode);
    }, "data-shutdown-hook"));
    try {
      server.start();
    } catch (IOException | RuntimeException e) {
      if (!server.isStopping()) { // Else a signal's stop interrupted the start: not a failure.
        Log.error("start failed: " + Log.describe(e));
        Log.debugTrace("start failure", e);
        server.exitCode = ServerConfig.EXIT_FAILURE;
        server.stop("start failed", NO_REPLY, false);
      }
    }
    Uninterruptibles.await(server.stopped);
    System.exit(server.exitCode);
  }

  private void start() throws IOException {
    auth = ControlAuth.readFrom(System.in);
    PrivateFiles.directory(config.dataDir);
    // Only one Data Server may own a data directory (PROTOCOL.md §11.6): a second one, or a
    // relaunch racing a slow death, stops here with the holder's pid in the message.
    dataDirLock = DataDirLock.acquire(config.dataDir);
    synchronized (lifecycleLock) {
      if (stopping) {
        return;
      }
      PidFile.write(config.dataDir, PidFile.DATA);
    }
    ServerSocketChannel server = ServerSocketChannel.open();
    server.socket().setReuseAddress(true);
    server.bind(new InetSocketAddress(config.bindAddress, 0), ServerConfig.DATA_LISTEN_BACKLOG);
    listener = server;
    int clientPort = server.socket().getLocalPort();

    // Replay the backup file before INIT: the Front Server redirects no client until INIT
    // (PROTOCOL.md §7.1), so no client ever sees a half-loaded store.
    long loadStart = System.nanoTime();
    engine = Engine.open(config.dataDir, config.fsync, config.salvage, config.maxSessions);
    Log.info("loaded " + engine.store().size() + " keys and " + engine.sessions().size()
        + " sessions from " + engine.log().path() + " in "
        + (System.nanoTime() - loadStart) / 1_000_000 + " ms");

    ControlLink link = handshakeRetrying(config.controlPort, -1);
    long frontPid = Header.getU64(link.body(), Protocol.HEADER_BYTES);
    Optional<ProcessHandle> front = ProcessHandle.of(frontPid);
    Supervisor.Peer peer;
    synchronized (lifecycleLock) {
      if (stopping) {
        link.close();
        return;
      }
      startServing(server);
      Log.info("serving on " + config.bindAddress.getHostAddress() + ":" + clientPort + " ("
          + config + ", max connections " + connectionLimit.max() + "); front server pid "
          + frontPid);
      peer = front.isPresent() ? supervisor.adopt(front.get()) : null;
      if (peer != null) {
        peer.linked(link);
      }
    }
    startMaintenance();
    if (peer == null) {
      link.close();
      supervisor.startLoop(null, "the front server (pid " + frontPid + ") is gone");
      return;
    }
    link.start(frontLinkHandler(peer));
    // Not our child: the JDK polls its exit; the control connection usually tells first.
    peer.handle.onExit().thenRun(() -> supervisor.peerDown(peer, "its process exited"));
    supervisor.startLoop(peer, null);
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
        problems.flushIfDue();
      }
    }, "data-maintenance");
    t.setDaemon(true);
    t.start();
  }

  /**
   * {@link #handshake}, tried up to {@value ServerConfig#CONTROL_HANDSHAKE_ATTEMPTS} times. The
   * front closes a handshake not done within {@value
   * ServerConfig#CONTROL_HANDSHAKE_TIMEOUT_MILLIS} ms of its accept; a starved machine (a load
   * average of 12 in a test run) can make this side miss that, and another attempt on a new
   * connection is cheaper than the front relaunching this process. The last failure is thrown.
   */
  private ControlLink handshakeRetrying(int controlPort, long expectedPid) throws IOException {
    for (int attempt = 1; ; attempt++) {
      try {
        return handshake(controlPort, expectedPid);
      } catch (IOException e) {
        if (attempt >= ServerConfig.CONTROL_HANDSHAKE_ATTEMPTS) {
          throw e;
        }
        Log.warn(Log.describe(e) + "; trying again (attempt " + (attempt + 1) + " of "
            + ServerConfig.CONTROL_HANDSHAKE_ATTEMPTS + ")");
        try {
          // A back-off, not a synchronisation.
          Thread.sleep(ServerConfig.CONTROL_HANDSHAKE_RETRY_MILLIS);
        } catch (InterruptedException ie) {
          Thread.currentThread().interrupt();
          throw e;
        }
      }
    }
  }

  /**
   * Connects to a front's control port and does the handshake (PROTOCOL.md §7.1: CHALLENGE,
   * INIT with our proof of the pair secret, INIT OK with the front's); returns the link, with the
   * INIT OK (the front's pid first) in its {@link ControlLink#body()}. A relaunched front must answer with {@code
   * expectedPid}; -1 accepts any (the front that started us).
   */
  private ControlLink handshake(int controlPort, long expectedPid) throws IOException {
    Socket socket = new Socket();
    try {
      socket.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), controlPort),
          ServerConfig.INIT_REPLY_TIMEOUT_MILLIS);
      ControlLink link = new ControlLink(socket, "front server");
      link.setReadTimeoutMillis(ServerConfig.INIT_REPLY_TIMEOUT_MILLIS);
      Header challenge = link.read();
      if (!ControlLink.isRequest(challenge, Opcode.CHALLENGE)) {
        throw new IOException("expected CHALLENGE, got " + challenge);
      }
      byte[] n1 = link.bodyBytes(0, Protocol.NONCE_BYTES);
      byte[] n2 = ControlAuth.nonce();
      int clientPort = listener.socket().getLocalPort();
      long self = ProcessHandle.current().pid();
      long id = link.sendInit(clientPort, self, n2, auth.initMac(n1, clientPort, self, n2));
      Header h = link.read();
      if (!ControlLink.isOkResponse(h, Opcode.INIT, id)
          || h.bodyLength != Protocol.INIT_RESPONSE_BODY_BYTES) {
        throw new IOException("unexpected answer to INIT: " + h);
      }
      long pid = Header.getU64(link.body(), Protocol.HEADER_BYTES);
      byte[] mac = link.bodyBytes(8, Protocol.MAC_BYTES);
      if (!ControlAuth.matches(auth.initOkMac(n2, pid, n1), mac)) {
        throw new IOException("INIT OK with a wrong MAC (not the pair's front server)");
      }
      if (expectedPid != -1 && pid != expectedPid) {
        throw new IOException("INIT OK from pid " + pid + ", expected " + expectedPid);
      }
      link.setReadTimeoutMillis(0);
      linkedFrontPid = pid;
      return link;
    } catch (IOException e) {
      Wire.closeQuietly(socket);
      throw new IOException("control connection to the front server on port "
          + controlPort + " failed: " + e.getMessage(), e);
    }
  }

  /**
   * Relaunches the Front Server ({@link Supervisor.Launcher}, on the supervisor's thread): see
   * the class comment. On failure the process is killed, unless a stop began.
   */
  private Supervisor.Peer launchFrontServer() throws IOException {
    Path logFile = config.dataDir.resolve(ServerConfig.FRONT_LOG_FILE);
    if (!Files.exists(logFile)) {
      Files.createFile(logFile);
    }
    PrivateFiles.file(logFile);
    List<String> command = Supervisor.javaCommand(FrontServer.class, List.of(),
        config.frontServerArgs(ProcessHandle.current().pid()));
    ProcessBuilder builder = new ProcessBuilder(command)
        .redirectInput(ProcessBuilder.Redirect.PIPE)
        .redirectOutput(ProcessBuilder.Redirect.PIPE)
        .redirectError(ProcessBuilder.Redirect.appendTo(logFile.toFile()));
    Supervisor.Peer peer = supervisor.track(builder);
    try {
      auth.writeTo(peer.process.getOutputStream()); // Its stdin: the pair secret, then closed.
    } catch (IOException e) {
      // It died at once; its exit is seen below as a start that printed no control port.
    }
    Log.info("launched front server pid " + peer.pid() + " (its log: " + logFile + ")");
    CompletableFuture<Integer> controlPort = new CompletableFuture<>();
    Thread pump = new Thread(() -> pumpFrontStdout(peer.process, logFile, controlPort),
        "front-stdout");
    pump.setDaemon(true);
    pump.start();
    try {
      int port;
      try {
        port = controlPort.get(Supervisor.PEER_START_TIMEOUT_MILLIS, TimeUnit.MILLISECONDS);
      } catch (TimeoutException e) {
        throw new IOException("the front server (pid " + peer.pid() + ") did not print its"
            + " control port within " + Supervisor.PEER_START_TIMEOUT_MILLIS + " ms");
      } catch (ExecutionException e) {
        throw new IOException(e.getCause().getMessage(), e.getCause());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted");
      }
      ControlLink link = handshakeRetrying(port, peer.pid());
      synchronized (lifecycleLock) {
        if (stopping) {
          link.close(); // The stop found no link and sends SIGTERM to the front.
          throw new IOException("stopping");
        }
        peer.linked(link);
      }
      link.start(frontLinkHandler(peer));
    } catch (IOException | RuntimeException e) {
      if (!supervisor.isStopped()) {
        peer.handle.destroyForcibly();
        Supervisor.awaitGone(peer, Supervisor.PEER_KILL_WAIT_MILLIS);
      }
      throw e;
    }
    peer.process.onExit().thenRun(() -> supervisor.peerDown(peer, peer.exitDescription()));
    return peer;
  }

  /**
   * The {@code front-stdout} thread: appends a relaunched front's stdout lines to its log file
   * and completes {@code controlPort} with the port of its first line {@code control port N}
   * (exceptionally if the output ends first: the front died during its start).
   */
  private static void pumpFrontStdout(Process front, Path logFile,
      CompletableFuture<Integer> controlPort) {
    try (BufferedReader r = new BufferedReader(
        new InputStreamReader(front.getInputStream(), StandardCharsets.UTF_8))) {
      for (String line; (line = r.readLine()) != null; ) {
        if (!controlPort.isDone() && line.startsWith(FrontServer.CONTROL_PORT_LINE)) {
          try {
            controlPort.complete(
                Integer.parseInt(line.substring(FrontServer.CONTROL_PORT_LINE.length()).trim()));
          } catch (NumberFormatException e) {
            controlPort.completeExceptionally(new IOException("bad control port line: " + line));
          }
        }
        try {
          Files.writeString(logFile, "[stdout] " + line + "\n", StandardCharsets.UTF_8,
              StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        } catch (IOException e) {
          // The log is a diagnostic aid; keep reading so the front never blocks on its stdout.
        }
      }
    } catch (IOException e) {
      // The front is gone; fall through.
    }
    controlPort.completeExceptionally(new IOException("the front server (pid " + front.pid()
        + ") ended its output before it printed its control port (it exited: see "
        + logFile + ")"));
  }

  /** The Data Server's reactions to its front's control connection. */
  private ControlLink.Handler frontLinkHandler(Supervisor.Peer peer) {
    return new PeerLinkHandler(supervisor, peer, this::isStopping, (h, buf) -> {
      if (ControlLink.isRequest(h, Opcode.SHUTDOWN)) {
        stop("SHUTDOWN from the front server", h.requestId, false);
        return;
      }
      if (ControlLink.isRequest(h, Opcode.STATUS)) {
        sendStatus(peer.link(), h.requestId);
        return;
      }
      throw new ProtocolException("unexpected control message " + h);
    });
  }

  /**
   * Answers STATUS (PROTOCOL.md §7.4) with the same counters a client's STATS gets (§6.7): one
   * snapshot ({@link ServerStats}) serves both.
   */
  private void sendStatus(ControlLink link, long requestId) throws IOException {
    link.sendStatusOk(requestId, engine.stats().snapshot());
  }

  /** Caller holds lifecycleLock: starts the serving threads of the {@code --threads} policy. */
  private void startServing(ServerSocketChannel server) throws IOException {
    BodyBudget budget = new BodyBudget(config.bodyBudgetBytes);
    connectionLimit = new ConnectionLimit(config);
    DataTransport t = config.threads.kind() == ServerConfig.ThreadPolicy.Kind.EVENT_LOOP
        ? new EventLoopTransport(engine, config, budget, connectionLimit, problems)
        : new BlockingTransport(engine, config, budget, connectionLimit, problems);
    // Before the first connection is accepted, so that every STATS has these figures.
    ConnectionLimit limit = connectionLimit;
    engine.stats().setProcessFigures(new ServerStats.ProcessFigures() {
      @Override
      public int openConnections() {
        return limit.open();
      }

      @Override
      public long connectionsAccepted() {
        return limit.accepted();
      }

      @Override
      public long connectionsRefused() {
        return limit.refused();
      }

      @Override
      public long frontPid() {
        return linkedFrontPid;
      }

      @Override
      public int frontRelaunches() {
        return supervisor.relaunches();
      }
    });
    t.start(server);
    transport = t;
  }

  private boolean isStopping() {
    synchronized (lifecycleLock) {
      return stopping;
    }
  }

  /**
   * The orderly stop; idempotent and safe from any thread except a connection's own. Returns
   * when the stop has finished (also to callers that came second).
   *
   * @param shutdownRequestId the SHUTDOWN to answer OK when done, or {@link #NO_REPLY}
   * @param onPurpose this process decided to stop (a signal): tell the front, which stops too
   */
  private void stop(String reason, long shutdownRequestId, boolean onPurpose) {
    boolean first;
    synchronized (lifecycleLock) {
      first = !stopping;
      stopping = true;
    }
    if (!first) {
      Uninterruptibles.await(stopped);
      return;
    }
    try {
      Log.info("stopping: " + reason);
      Supervisor.Peer front = supervisor.stop(); // Nothing is relaunched from here on.
      ControlLink link = front == null ? null : front.link();
      if (onPurpose && front != null) {
        tellFront(front, link);
      }
      Wire.closeQuietly(listener);
      DataTransport t;
      synchronized (lifecycleLock) {
        t = transport; // Serving starts under the lock, so it has started or never will.
      }
      if (t != null) {
        t.stop(ServerConfig.DRAIN_TIMEOUT_MILLIS);
      }
      ConnectionLimit limit = connectionLimit;
      if (limit != null) {
        limit.close();
      }
      // Every answered write has been answered after its record was durable; closing syncs
      // whatever the weaker fsync modes left, and ends the log's writer thread.
      Engine current = engine;
      if (current != null) {
        try {
          current.close();
        } catch (IOException ex) {
          Log.error("closing the backup file failed: " + Log.describe(ex));
        }
      }
      DataDirLock lock = dataDirLock;
      if (lock != null) {
        try {
          lock.close();
        } catch (IOException ex) {
          Log.error("releasing the data directory lock failed: " + Log.describe(ex));
        }
      }
      if (link != null) {
        if (shutdownRequestId != NO_REPLY) {
          try {
            link.sendOk(Opcode.SHUTDOWN, shutdownRequestId);
          } catch (IOException e) {
            Log.warn("could not answer SHUTDOWN: " + Log.describe(e));
          }
        }
        link.close();
      }
      problems.flush();
      PidFile.deleteIfOurs(config.dataDir, PidFile.DATA);
      Log.info("stopped");
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } finally {
      stopped.countDown();
    }
  }

  /**
   * This process stops on purpose: the front must stop too, not relaunch us. A linked front gets
   * SHUTDOWN (§7.3); a front still starting gets SIGTERM (its stop then SIGTERMs us: harmless).
   */
  private static void tellFront(Supervisor.Peer front, ControlLink link) {
    if (front.isGone()) {
      return;
    }
    if (link != null && !link.isClosed()) {
      try {
        link.sendShutdown();
        Log.info("told the front server (pid " + front.pid() + ") that this stop is on"
            + " purpose");
        return;
      } catch (IOException e) {
        Log.warn("could not send SHUTDOWN to the front server: " + Log.describe(e));
      }
    }
    if (front.process != null) {
      front.handle.destroy(); // SIGTERM to the front we launched: it stops in order.
    }
  }
}
