package io.psiskv.server;

import io.psiskv.protocol.Header;
import io.psiskv.server.control.ControlAcceptor;
import io.psiskv.server.control.ControlAuth;
import io.psiskv.server.control.ControlLink;
import io.psiskv.server.control.Supervisor;
import io.psiskv.server.front.Console;
import io.psiskv.server.front.DataEndpoint;
import io.psiskv.server.front.DataServerLauncher;
import io.psiskv.server.front.FrontConsole;
import io.psiskv.server.front.FrontLimits;
import io.psiskv.server.front.FrontListener;
import io.psiskv.server.front.StartException;
import java.io.IOException;
import java.net.BindException;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.nio.channels.ServerSocketChannel;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;

/**
 * The Front Server process (process 1, the jar's Main-Class): starts the Data Server as a second
 * OS process, redirects clients to it (HELLO), supervises it (relaunches it when it dies or hangs,
 * see {@link Supervisor}), and owns the console and the orderly stop of both.
 *
 * <p><b>Start.</b> Bind the client port ({@code --port}, or the first free one of the next {@value
 * ServerConfig#PORT_SEARCH_ATTEMPTS}); open the control listener (127.0.0.1, ephemeral port);
 * launch the Data Server (same java binary and classpath, no shell, {@code --control-port} and
 * {@code --front-port}); wait up to {@value ServerConfig#DATA_START_TIMEOUT_MILLIS} ms for its
 * INIT, accepted only from the launched pid; answer INIT OK; then accept clients and print {@code
 * data server pid P port Q} and {@code psiskv front server listening on ADDR:PORT}. A failure or
 * timeout kills the child and exits 1. Clients that connect before INIT wait in the backlog.
 *
 * <p><b>Adopted start</b> ({@code --adopt-data PID}: this process was relaunched by the Data Server
 * PID after the previous Front Server died). Bind exactly {@code --port} (no search), open the
 * control listener, print {@code control port N} as the first stdout line (the Data Server reads
 * it from the pipe), wait for INIT from PID, then serve as usual. There is no console (stdin is
 * /dev/null); stdout and stderr end up in {@value ServerConfig#FRONT_LOG_FILE} in the data
 * directory. If PID dies before its INIT, this process launches a new Data Server at once.
 *
 * <p><b>Supervision of the Data Server.</b> While it is down HELLO answers UNAVAILABLE; the
 * relaunched one replays the backup file before its INIT, and HELLO redirects to it from its
 * INIT on. A Data Server that sends SHUTDOWN (it got SIGINT or SIGTERM) is stopping on purpose:
 * this process stops too and relaunches nothing.
 *
 * <p><b>Threads</b> (all but main are daemons):
 *
 * <ul>
 *   <li>{@code main}: starts everything, waits for a stop request, stops, exits.
 *   <li>{@code front-listener}: every client connection, in one non-blocking selector loop
 *       ({@link FrontListener}: HELLO, PING, the request deadline, idle timeout and connection
 *       cap); no thread per connection.
 *   <li>{@code console}: reads commands from stdin when {@link Console#decide} allows it (never
 *       a terminal of a background job: SIGTTIN would stop both servers) and runs them ({@link
 *       FrontConsole}); end of stdin ends only the console.
 *   <li>{@code control-acceptor} and at most {@value ServerConfig#MAX_CONTROL_HANDSHAKES} {@code
 *       control-handshake} threads: the control listener and its handshakes ({@link
 *       ControlAcceptor}).
 *   <li>{@code data-server-supervisor}: the relaunch loop ({@link Supervisor}), which also runs
 *       the launches and INIT waits after the first ({@link DataServerLauncher}).
 *   <li>{@code control-reader}, {@code heartbeat}, {@code control-watchdog}: the control
 *       connection ({@link ControlLink}); a JDK thread reports the Data Server process's exit.
 *   <li>the JVM's shutdown hook thread on SIGINT and SIGTERM.
 * </ul>
 *
 * <p><b>Shared state.</b> {@code endpoint} (volatile, immutable record) is where HELLO sends
 * clients; null means UNAVAILABLE; the listener's loop reads it for every HELLO. It is set and
 * cleared under the supervisor's lock ({@link Supervisor#ifUp}, the supervisor's down hook), so a
 * Data Server found down is never advertised afterwards. The {@link Lifecycle} orders the stop
 * against the linking of a new Data Server's control connection, so that a stop either sees the
 * link (and sends SHUTDOWN) or the launch sees the stop (and leaves the Data Server to the stop's
 * SIGTERM).
 *
 * <p><b>Stop</b> ({@link #stop}, idempotent, race-free between {@code quit} and a signal: the
 * first caller does the work, later ones wait for it): stop supervising (nothing is relaunched
 * from then on), redirect no one, close the listeners, send SHUTDOWN (SIGTERM to a Data Server
 * that has not sent INIT yet), wait up to {@value ServerConfig#SHUTDOWN_TIMEOUT_MILLIS} ms for
 * the Data Server process to exit, else kill it (and exit 1), delete the pid file, exit 0. Ctrl-C
 * reaches both processes; each stops in order on its own and the SHUTDOWNs are then merely
 * redundant.
 */
public final class FrontServer {
  /** First stdout line of an adopted start, followed by the control port (the Data Server reads it). */
  public static final String CONTROL_PORT_LINE = "control port ";

  private final ServerConfig config;
  private final FrontLimits frontLimits;
  /** Started by the Data Server to replace a dead Front Server ({@code --adopt-data}). */
  private final boolean adopted;
  private final long startNanos = System.nanoTime();
  /** The HELLO answer's address: 0 ("the host you reached me at") for the wildcard bind. */
  private final int helloAddress;
  private final Lifecycle lifecycle = new Lifecycle();
  private volatile DataEndpoint endpoint;
  private final Supervisor supervisor;
  /** The control listener and its handshakes; set at start. */
  private volatile ControlAcceptor controlAcceptor;
  /** Launches Data Servers for the supervisor; set at start, before the supervisor runs. */
  private volatile DataServerLauncher launcher;
  /** The client port's listener: bound at start, accepting once the Data Server is ready. */
  private volatile FrontListener clientListener;
  /** An adopted start that failed leaves the adopted Data Server alone (it relaunches us). */
  private volatile boolean leaveDataServer;
  private final CountDownLatch stopRequested = new CountDownLatch(1);
  private volatile String stopReason = "";
  private volatile int exitCode = ServerConfig.EXIT_OK;

  private FrontServer(ServerConfig config, FrontLimits frontLimits) {
    this.config = config;
    this.frontLimits = frontLimits;
    this.adopted = config.adoptDataPid != 0;
    this.helloAddress = config.bindAddress.isAnyLocalAddress()
        ? 0 : Header.getU32(config.bindAddress.getAddress(), 0);
    this.supervisor = new Supervisor("data server", this::launchDataServer,
        () -> endpoint = null, config.hangTimeoutMillis);
  }

  public static void main(String[] args) {
    ServerConfig config = ServerOptions.parseOrExit(ServerConfig.Role.FRONT, args);
    FrontLimits frontLimits;
    try {
      frontLimits = FrontLimits.fromSystemProperties();
    } catch (IllegalArgumentException e) {
      System.err.println("psiskv-server: " + e.getMessage());
      System.exit(ServerConfig.EXIT_BAD_OPTION);
      return;
    }
    ServerLog.init(ServerConfig.Role.FRONT.logName);
    try {
      ServerLog.configure(config.logLevel, config.logFile);
    } catch (IOException e) {
      System.err.println("psiskv-server: " + e.getMessage());
      System.exit(ServerConfig.EXIT_FAILURE);
      return;
    }
    Console.ignoreTerminalStops();
    FrontServer server = new FrontServer(config, frontLimits);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      server.stop("signal");
      // A signal makes the JVM exit with 128 + signal; an orderly stop exits with our code.
      Runtime.getRuntime().halt(server.exitCode);
    }, "front-shutdown-hook"));
    try {
      server.start();
    } catch (IOException | RuntimeException e) {
      if (server.lifecycle.isStopping()) {
        // A signal's stop interrupted the start; the shutdown hook finishes it and exits.
        server.lifecycle.awaitStopped();
        System.exit(server.exitCode);
      }
      ServerLog.error("start failed: " + ServerLog.describe(e));
      ServerLog.debugTrace("start failure", e);
      server.exitCode = ServerConfig.EXIT_FAILURE;
      // A launched Data Server was killed by its launch; an adopted one relaunches us.
      server.leaveDataServer = server.adopted;
      server.stop("start failed");
      System.exit(server.exitCode);
    }
    Uninterruptibles.await(server.stopRequested);
    server.stop(server.stopReason);
    System.exit(server.exitCode);
  }

  private void start() throws IOException {
    // A user's start makes the pair secret; a relaunch gets it from the Data Server (§7.1).
    ControlAuth auth = adopted ? ControlAuth.readFrom(System.in) : ControlAuth.generate();
    try {
      PrivateFiles.directory(config.dataDir);
    } catch (IOException e) {
      throw new StartException("cannot create data directory " + config.dataDir + ": "
          + ServerLog.describe(e));
    }
    for (String name : new String[] {PidFile.FRONT, PidFile.DATA}) {
      Optional<ProcessHandle> other = PidFile.livePeer(config.dataDir, name);
      if (other.isPresent() && !(adopted && other.get().pid() == config.adoptDataPid)) {
        throw new StartException("another psiskv server (pid " + other.get().pid() + ", "
            + name + ") uses data directory " + config.dataDir
            + "; stop it first (build-scripts/psiskv-stop --data-dir " + config.dataDir + ")");
      }
    }
    PidFile.write(config.dataDir, PidFile.FRONT);
    ServerLog.info("starting (" + config + ")" + (adopted ? "; relaunched by the data server (pid "
        + config.adoptDataPid + ") after the previous front server died" : ""));

    // Bound before the Data Server starts: it must know the port, to bind it again should it
    // ever relaunch this process. Clients connecting before INIT wait in the backlog.
    ServerSocketChannel channel;
    try {
      channel = adopted ? bind(config.port) : bindClientPort();
    } catch (BindException e) {
      throw new StartException(
          ServerLog.describeBind(e, config.bindAddress.getHostAddress(), config.port));
    }
    FrontListener clients;
    try {
      clients = new FrontListener(channel, frontLimits, helloAddress, config.maxValueBytes,
          () -> endpoint);
    } catch (IOException e) {
      Sockets.closeQuietly(channel);
      throw e;
    }
    clientListener = clients;
    ControlAcceptor acceptor = new ControlAcceptor(auth);
    controlAcceptor = acceptor;
    acceptor.start();
    DataServerLauncher dataLauncher =
        new DataServerLauncher(this, config, supervisor, auth, acceptor, clients.localPort());
    launcher = dataLauncher;

    Supervisor.Peer first;
    String noPeerReason = null;
    if (adopted) {
      // The Data Server that launched us reads this line from our stdout, then connects.
      System.out.println(CONTROL_PORT_LINE + acceptor.port());
      System.out.flush();
      Optional<ProcessHandle> data = ProcessHandle.of(config.adoptDataPid);
      if (data.isEmpty()) {
        first = null;
        noPeerReason = "the adopted data server (pid " + config.adoptDataPid + ") is gone";
      } else {
        first = supervisor.adopt(data.get());
        Supervisor.Peer adoptedPeer = first;
        // Not our child: the JDK polls its exit; the control connection usually tells first.
        adoptedPeer.handle.onExit().thenRun(
            () -> supervisor.peerDown(adoptedPeer, "its process exited"));
        try {
          dataLauncher.awaitInit(first);
        } catch (IOException e) {
          if (lifecycle.isStopping()) {
            throw new StartException("stopped during start");
          }
          ServerLog.warn("no INIT from the adopted data server (pid " + first.pid() + "): "
              + ServerLog.describe(e));
          supervisor.peerDown(first, "it sent no INIT to the relaunched front server");
        }
      }
    } else {
      first = dataLauncher.launch();
    }

    clients.start();

    String bind = config.bindAddress.getHostAddress();
    DataEndpoint e = endpoint;
    if (e != null) {
      System.out.println("data server pid " + e.pid + " port " + e.port);
    }
    System.out.println("psiskv front server listening on " + bind + ":" + clients.localPort());
    System.out.flush();
    ServerLog.info("listening on " + bind + ":" + clients.localPort() + (e == null
        ? "; no data server yet" : "; data server pid " + e.pid + " on port " + e.port));
    supervisor.startLoop(first, noPeerReason);

    if (adopted) {
      ServerLog.info("console off (started by the data server): stop with SIGTERM or"
          + " build-scripts/psiskv-stop");
    } else {
      FrontConsole commands = new FrontConsole(config, startNanos, clients, supervisor,
          () -> endpoint, this::requestStop);
      Console console = Console.forStdin(config.console, commands.commands());
      Thread t = new Thread(console::run, "console");
      t.setDaemon(true);
      t.start();
    }
  }

  /** The configured port, else the first free one above it; port 0 means any free port. */
  private ServerSocketChannel bindClientPort() throws IOException {
    if (config.port == 0) {
      return bind(0);
    }
    int last = Math.min(65535, config.port + ServerConfig.PORT_SEARCH_ATTEMPTS - 1);
    for (int port = config.port; port <= last; port++) {
      try {
        ServerSocketChannel s = bind(port);
        if (port != config.port) {
          ServerLog.warn("port " + config.port + " is taken; using " + port);
        }
        return s;
      } catch (BindException e) {
        if (!ServerLog.portInUse(e)) {
          throw new StartException(
              ServerLog.describeBind(e, config.bindAddress.getHostAddress(), port));
        }
        // Taken: try the next one.
      }
    }
    throw new StartException("no free port from " + config.port + " to " + last + " on "
        + config.bindAddress.getHostAddress());
  }

  private ServerSocketChannel bind(int port) throws IOException {
    ServerSocketChannel s = ServerSocketChannel.open();
    try {
      s.setOption(StandardSocketOptions.SO_REUSEADDR, true);
      s.bind(new InetSocketAddress(config.bindAddress, port), ServerConfig.FRONT_LISTEN_BACKLOG);
      return s;
    } catch (IOException e) {
      s.close();
      throw e;
    }
  }

  /** The supervisor's launcher ({@link DataServerLauncher#launch}); runs after the start set it. */
  private Supervisor.Peer launchDataServer() throws IOException {
    return launcher.launch();
  }

  /** Where HELLO sends clients from now on; null: UNAVAILABLE. */
  public void setEndpoint(DataEndpoint e) {
    endpoint = e;
  }

  /** The stop state the launches check ({@link DataServerLauncher}). */
  public Lifecycle lifecycle() {
    return lifecycle;
  }

  /** Wakes {@code main} to stop both processes ({@code quit}, the Data Server's SHUTDOWN). */
  public void requestStop(String reason) {
    stopReason = reason;
    stopRequested.countDown();
  }

  /** The orderly stop of both processes; see the class comment. */
  private void stop(String reason) {
    if (!lifecycle.beginStop()) {
      return;
    }
    try {
      ServerLog.info("stopping: " + reason);
      Supervisor.Peer peer = supervisor.stop(); // Nothing is relaunched from here on.
      endpoint = null;
      FrontListener clients = clientListener;
      if (clients != null) {
        clients.close();
      }
      Sockets.closeQuietly(controlAcceptor);
      if (peer != null && !leaveDataServer) {
        stopDataServer(peer);
      }
      PidFile.deleteIfOurs(config.dataDir, PidFile.FRONT);
      ServerLog.info("stopped");
    } finally {
      lifecycle.stopped();
    }
  }

  private void stopDataServer(Supervisor.Peer peer) {
    ControlLink link = peer.link();
    try {
      if (peer.isGone()) {
        return; // Its exit was logged when it happened.
      }
      boolean asked = false;
      if (link != null && !link.isClosed()) {
        try {
          link.sendShutdown();
          asked = true;
        } catch (IOException e) {
          ServerLog.warn("could not send SHUTDOWN (" + ServerLog.describe(e) + "); sending SIGTERM");
        }
      }
      if (!asked) {
        peer.handle.destroy(); // SIGTERM: the Data Server's shutdown hook stops it in order.
      }
      if (!Supervisor.awaitGone(peer, ServerConfig.SHUTDOWN_TIMEOUT_MILLIS)) {
        ServerLog.error("data server (pid " + peer.pid() + ") did not exit within "
            + ServerConfig.SHUTDOWN_TIMEOUT_MILLIS + " ms; killing it");
        peer.handle.destroyForcibly();
        Supervisor.awaitGone(peer, Supervisor.PEER_KILL_WAIT_MILLIS);
        exitCode = ServerConfig.EXIT_FAILURE;
      }
      if (peer.isGone()) {
        ServerLog.info("data server (pid " + peer.pid() + ") " + peer.exitDescription());
      }
    } finally {
      if (link != null) {
        link.close();
      }
    }
  }
}
