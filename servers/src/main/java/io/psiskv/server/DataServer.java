package io.psiskv.server;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.server.backup.BackupLog;
import io.psiskv.server.control.ControlAuth;
import io.psiskv.server.control.ControlLink;
import io.psiskv.server.control.FrontServerLauncher;
import io.psiskv.server.control.PeerLinkHandler;
import io.psiskv.server.control.Supervisor;
import io.psiskv.server.data.BlockingTransport;
import io.psiskv.server.data.BodyBudget;
import io.psiskv.server.data.ConnectionLimit;
import io.psiskv.server.data.DataTransport;
import io.psiskv.server.data.EventLoopTransport;
import io.psiskv.server.front.Console;
import io.psiskv.server.store.Engine;
import io.psiskv.server.store.ServerStats;
import io.psiskv.server.store.Store;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ProtocolException;
import java.net.Socket;
import java.nio.channels.ServerSocketChannel;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicReference;

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
 * the old client port and {@code --adopt-data <our pid>}, the pair secret on its stdin ({@link
 * FrontServerLauncher}, which says where its output goes); then the same INIT handshake as at
 * start. Data connections keep being served meanwhile; only new clients wait (they cannot reach
 * a front).
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
 *   <li>{@code front-server-supervisor}: the relaunch loop, which runs the launches ({@link
 *       FrontServerLauncher}); {@code front-stdout}: copies a relaunched front's stdout into its
 *       log file.
 *   <li>{@code data-maintenance}: compaction trigger, session expiry, the problem log's
 *       summary lines.
 *   <li>the JVM's shutdown hook thread on SIGINT and SIGTERM.
 * </ul>
 *
 * <p><b>Shared state.</b> The {@link Store} locks per stripe; {@link Engine} and {@link BackupLog}
 * say the rest. The {@link Lifecycle} orders the stop against the start of the serving threads
 * and the linking of a front's control connection.
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
  private final Lifecycle lifecycle = new Lifecycle();
  private final Supervisor supervisor;
  private volatile ServerSocketChannel listener;
  private volatile ConnectionLimit connectionLimit;
  /** Set under the lifecycle's lock once serving starts; null before. */
  private volatile DataTransport transport;
  private volatile int exitCode = ServerConfig.EXIT_OK;
  /** Data connections' problem lines, rate-limited. */
  private final ServerLogProblems problems = ServerLogProblems.forDataServer();
  /** The pair secret (PROTOCOL.md §7.1), from the launching Front Server on our stdin. */
  private volatile ControlAuth auth;
  /** Relaunches the Front Server for the supervisor; set at start, before the supervisor runs. */
  private volatile FrontServerLauncher frontLauncher;

  private DataServer(ServerConfig config) {
    this.config = config;
    this.supervisor = new Supervisor("front server", this::launchFrontServer, () -> {},
        config.hangTimeoutMillis);
  }

  public static void main(String[] args) {
    ServerConfig config = ServerOptions.parseOrExit(ServerConfig.Role.DATA, args);
    ServerLog.init(ServerConfig.Role.DATA.logName);
    try {
      ServerLog.configure(config.logLevel, config.logFile);
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
      // A start that a signal's stop interrupted is not a failure.
      if (!server.lifecycle.isStopping()) {
        ServerLog.error("start failed: " + ServerLog.describe(e));
        ServerLog.debugTrace("start failure", e);
        server.exitCode = ServerConfig.EXIT_FAILURE;
        server.stop("start failed", NO_REPLY, false);
      }
    }
    server.lifecycle.awaitStopped();
    System.exit(server.exitCode);
  }

  private void start() throws IOException {
    auth = ControlAuth.readFrom(System.in);
    frontLauncher = new FrontServerLauncher(this, config, supervisor, auth);
    PrivateFiles.directory(config.dataDir);
    // Only one Data Server may own a data directory (PROTOCOL.md §11.6): a second one, or a
    // relaunch racing a slow death, stops here with the holder's pid in the message.
    dataDirLock = DataDirLock.acquire(config.dataDir);
    if (!lifecycle.unlessStopping(() -> PidFile.write(config.dataDir, PidFile.DATA))) {
      return;
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
    ServerLog.info("loaded " + engine.store().size() + " keys and " + engine.sessions().size()
        + " sessions from " + engine.log().path() + " in "
        + (System.nanoTime() - loadStart) / 1_000_000 + " ms");

    ControlLink link = handshakeRetrying(config.controlPort, -1);
    long frontPid = Header.getU64(link.body(), Protocol.HEADER_BYTES);
    Optional<ProcessHandle> front = ProcessHandle.of(frontPid);
    // Serving, adopting the front and linking it are one step: a stop finds all three or none.
    AtomicReference<Supervisor.Peer> adopted = new AtomicReference<>();
    boolean started = lifecycle.unlessStopping(() -> {
      startServing(server);
      ServerLog.info("serving on " + config.bindAddress.getHostAddress() + ":" + clientPort + " ("
          + config + ", max connections " + connectionLimit.max() + "); front server pid "
          + frontPid);
      if (front.isPresent()) {
        adopted.set(supervisor.adopt(front.get()));
        adopted.get().linked(link);
      }
    });
    if (!started) {
      link.close();
      return;
    }
    Supervisor.Peer peer = adopted.get();
    startMaintenance();
    if (peer == null) {
      link.close();
      supervisor.startLoop(null, "the front server (pid " + frontPid + ") is gone");
      return;
    }
    link.start(frontLinkHandler(peer));
    // From here on its heartbeats and this side's watchdog run (tests wait for this line).
    ServerLog.info("watching the front server (pid " + frontPid + ") on the control link");
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
      while (!lifecycle.isStopping()) {
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
  public ControlLink handshakeRetrying(int controlPort, long expectedPid) throws IOException {
    for (int attempt = 1; ; attempt++) {
      try {
        return handshake(controlPort, expectedPid);
      } catch (IOException e) {
        if (attempt >= ServerConfig.CONTROL_HANDSHAKE_ATTEMPTS) {
          throw e;
        }
        ServerLog.warn(ServerLog.describe(e) + "; trying again (attempt " + (attempt + 1) + " of "
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
      Sockets.closeQuietly(socket);
      throw new IOException("control connection to the front server on port "
          + controlPort + " failed: " + e.getMessage(), e);
    }
  }

  /** The Data Server's reactions to its front's control connection. */
  public ControlLink.Handler frontLinkHandler(Supervisor.Peer peer) {
    return new PeerLinkHandler(supervisor, peer, lifecycle::isStopping, (h, buf) -> {
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

  /**
   * Under the lifecycle's lock ({@link Lifecycle#unlessStopping}): starts the serving threads of
   * the {@code --threads} policy.
   */
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

  /** The supervisor's launcher ({@link FrontServerLauncher#launch}); runs after the start set it. */
  private Supervisor.Peer launchFrontServer() throws IOException {
    return frontLauncher.launch();
  }

  /** The stop state the launches check ({@link FrontServerLauncher}). */
  public Lifecycle lifecycle() {
    return lifecycle;
  }

  /**
   * The orderly stop; idempotent and safe from any thread except a connection's own. Returns
   * when the stop has finished (also to callers that came second).
   *
   * @param shutdownRequestId the SHUTDOWN to answer OK when done, or {@link #NO_REPLY}
   * @param onPurpose this process decided to stop (a signal): tell the front, which stops too
   */
  private void stop(String reason, long shutdownRequestId, boolean onPurpose) {
    if (!lifecycle.beginStop()) {
      return;
    }
    try {
      ServerLog.info("stopping: " + reason);
      Supervisor.Peer front = supervisor.stop(); // Nothing is relaunched from here on.
      ControlLink link = front == null ? null : front.link();
      if (onPurpose && front != null) {
        tellFront(front, link);
      }
      Sockets.closeQuietly(listener);
      // Serving starts under the lifecycle's lock, which beginStop took: it has started or never
      // will.
      DataTransport t = transport;
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
          ServerLog.error("closing the backup file failed: " + ServerLog.describe(ex));
        }
      }
      DataDirLock lock = dataDirLock;
      if (lock != null) {
        try {
          lock.close();
        } catch (IOException ex) {
          ServerLog.error("releasing the data directory lock failed: " + ServerLog.describe(ex));
        }
      }
      if (link != null) {
        if (shutdownRequestId != NO_REPLY) {
          try {
            link.sendOk(Opcode.SHUTDOWN, shutdownRequestId);
          } catch (IOException e) {
            ServerLog.warn("could not answer SHUTDOWN: " + ServerLog.describe(e));
          }
        }
        link.close();
      }
      problems.flush();
      PidFile.deleteIfOurs(config.dataDir, PidFile.DATA);
      ServerLog.info("stopped");
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } finally {
      lifecycle.stopped();
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
        ServerLog.info("told the front server (pid " + front.pid() + ") that this stop is on"
            + " purpose");
        return;
      } catch (IOException e) {
        ServerLog.warn("could not send SHUTDOWN to the front server: " + ServerLog.describe(e));
      }
    }
    if (front.process != null) {
      front.handle.destroy(); // SIGTERM to the front we launched: it stops in order.
    }
  }
}
