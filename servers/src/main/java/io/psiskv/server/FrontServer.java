package io.psiskv.server;

import static io.psiskv.protocol.Protocol.HEADER_BYTES;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import java.io.IOException;
import java.net.BindException;
import java.net.ProtocolException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.net.StandardSocketOptions;
import java.nio.channels.ServerSocketChannel;
import java.nio.file.Files;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.ArrayDeque;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

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
 *       a terminal of a background job: SIGTTIN would stop both servers); end of stdin ends
 *       only the console.
 *   <li>{@code data-server-supervisor}: the relaunch loop ({@link Supervisor}), which also runs
 *       the launches and INIT handshakes after the first.
 *   <li>{@code control-reader}, {@code heartbeat}, {@code control-watchdog}: the control
 *       connection ({@link ControlLink}); a JDK thread reports the Data Server process's exit.
 *   <li>the JVM's shutdown hook thread on SIGINT and SIGTERM.
 * </ul>
 *
 * <p><b>Shared state.</b> {@code endpoint} (volatile, immutable record) is where HELLO sends
 * clients; null means UNAVAILABLE; the listener's loop reads it for every HELLO. It is set and
 * cleared under the supervisor's lock ({@link Supervisor#ifUp}, the supervisor's down hook), so a
 * Data Server found down is never advertised afterwards. {@code lifecycleLock} guards {@code
 * stopping} and the linking of a new Data Server's control connection, so that a stop either sees
 * the link (and sends SHUTDOWN) or the launch sees the stop (and leaves the Data Server to the
 * stop's SIGTERM).
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
  static final String CONTROL_PORT_LINE = "control port ";

  /** Where HELLO redirects clients; immutable, replaced as a whole. */
  static final class DataEndpoint {
    final long pid;
    final int port;

    DataEndpoint(long pid, int port) {
      this.pid = pid;
      this.port = port;
    }
  }

  /** A start failure with a message for the user. */
  private static final class StartException extends IOException {
    private static final long serialVersionUID = 1L;

    StartException(String message) {
      super(message);
    }
  }

  private final ServerConfig config;
  private final FrontListener.Limits frontLimits;
  /** Started by the Data Server to replace a dead Front Server ({@code --adopt-data}). */
  private final boolean adopted;
  private final long startNanos = System.nanoTime();
  /** The HELLO answer's address: 0 ("the host you reached me at") for the wildcard bind. */
  private final int helloAddress;
  private final Object lifecycleLock = new Object();
  /** Guarded by lifecycleLock. */
  private boolean stopping;
  private volatile DataEndpoint endpoint;
  private final Supervisor supervisor;
  /** The pair secret (PROTOCOL.md §7.1): made here, or handed over by the adopting Data Server. */
  private volatile ControlAuth auth;
  private final LogSummary controlLog = new LogSummary("control connections",
      ServerConfig.LOG_SUMMARY_INTERVAL_MILLIS, Log::info);
  private final LogSummary.Kind controlRejections = controlLog.detailedKind(
      "more rejected", ServerConfig.LOG_PROBLEM_LINES_PER_INTERVAL);
  private volatile ServerSocket controlListener;
  /** The Data Server whose INIT is awaited ({@link #awaitInit}), or null. */
  private volatile Awaited awaited;
  /** The client port's listener: bound at start, accepting once the Data Server is ready. */
  private volatile FrontListener clientListener;
  /** An adopted start that failed leaves the adopted Data Server alone (it relaunches us). */
  private volatile boolean leaveDataServer;
  private final CountDownLatch stopRequested = new CountDownLatch(1);
  private volatile String stopReason = "";
  private final CountDownLatch stopped = new CountDownLatch(1);
  private volatile int exitCode = ServerConfig.EXIT_OK;

  private FrontServer(ServerConfig config, FrontListener.Limits frontLimits) {
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
    FrontListener.Limits frontLimits;
    try {
      frontLimits = FrontListener.Limits.fromSystemProperties();
    } catch (IllegalArgumentException e) {
      System.err.println("psiskv-server: " + e.getMessage());
      System.exit(ServerConfig.EXIT_BAD_OPTION);
      return;
    }
    Log.init(ServerConfig.Role.FRONT.logName);
    try {
      Log.configure(config.logLevel, config.logFile);
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
      if (server.isStopping()) {
        // A signal's stop interrupted the start; the shutdown hook finishes it and exits.
        Uninterruptibles.await(server.stopped);
        System.exit(server.exitCode);
      }
      Log.error("start failed: " + Log.describe(e));
      Log.debugTrace("start failure", e);
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
    auth = adopted ? ControlAuth.readFrom(System.in) : ControlAuth.generate();
    try {
      PrivateFiles.directory(config.dataDir);
    } catch (IOException e) {
      throw new StartException("cannot create data directory " + config.dataDir + ": "
          + Log.describe(e));
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
    Log.info("starting (" + config + ")" + (adopted ? "; relaunched by the data server (pid "
        + config.adoptDataPid + ") after the previous front server died" : ""));

    // Bound before the Data Server starts: it must know the port, to bind it again should it
    // ever relaunch this process. Clients connecting before INIT wait in the backlog.
    ServerSocketChannel channel;
    try {
      channel = adopted ? bind(config.port) : bindClientPort();
    } catch (BindException e) {
      throw new StartException(
          Log.describeBind(e, config.bindAddress.getHostAddress(), config.port));
    }
    FrontListener clients;
    try {
      clients = new FrontListener(channel, frontLimits, helloAddress, config.maxValueBytes,
          () -> endpoint);
    } catch (IOException e) {
      Wire.closeQuietly(channel);
      throw e;
    }
    clientListener = clients;
    ServerSocket controlServer = new ServerSocket(0, ServerConfig.CONTROL_LISTEN_BACKLOG,
        InetAddress.getLoopbackAddress());
    controlListener = controlServer;
    Thread controlAcceptor = new Thread(() -> acceptControl(controlServer), "control-acceptor");
    controlAcceptor.setDaemon(true);
    controlAcceptor.start();

    Supervisor.Peer first;
    String noPeerReason = null;
    if (adopted) {
      // The Data Server that launched us reads this line from our stdout, then connects.
      System.out.println(CONTROL_PORT_LINE + controlServer.getLocalPort());
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
          awaitInit(first);
        } catch (IOException e) {
          if (isStopping()) {
            throw new StartException("stopped during start");
          }
          Log.warn("no INIT from the adopted data server (pid " + first.pid() + "): "
              + Log.describe(e));
          supervisor.peerDown(first, "it sent no INIT to the relaunched front server");
        }
      }
    } else {
      first = launchDataServer();
    }

    clients.start();

    String bind = config.bindAddress.getHostAddress();
    DataEndpoint e = endpoint;
    if (e != null) {
      System.out.println("data server pid " + e.pid + " port " + e.port);
    }
    System.out.println("psiskv front server listening on " + bind + ":" + clients.localPort());
    System.out.flush();
    Log.info("listening on " + bind + ":" + clients.localPort() + (e == null
        ? "; no data server yet" : "; data server pid " + e.pid + " on port " + e.port));
    supervisor.startLoop(first, noPeerReason);

    if (adopted) {
      Log.info("console off (started by the data server): stop with SIGTERM or"
          + " build-scripts/psiskv-stop");
    } else {
      Console console = Console.forStdin(config.console, consoleCommands());
      Thread t = new Thread(console::run, "console");
      t.setDaemon(true);
      t.start();
    }
  }

  /**
   * Launches a Data Server and waits for its INIT ({@link Supervisor.Launcher}): at start on the
   * main thread, later on the supervisor's. On failure the process is killed, unless a stop began
   * (the stop then deals with it).
   */
  private Supervisor.Peer launchDataServer() throws IOException {
    List<String> command = Supervisor.javaCommand(DataServer.class,
        ServerConfig.dataServerJvmOptions(),
        config.dataServerArgs(controlListener.getLocalPort(), clientListener.localPort()));
    ProcessBuilder builder = new ProcessBuilder(command)
        .redirectInput(ProcessBuilder.Redirect.PIPE)
        .redirectOutput(ProcessBuilder.Redirect.INHERIT)
        .redirectError(ProcessBuilder.Redirect.INHERIT);
    Supervisor.Peer peer;
    try {
      peer = supervisor.track(builder);
    } catch (IOException e) {
      throw isStopping() ? new StartException("stopped during start") : e;
    }
    auth.writeTo(peer.process.getOutputStream()); // Its stdin: the pair secret, then closed.
    Log.info("launched data server pid " + peer.pid());
    try {
      awaitInit(peer);
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
   * Waits for an authenticated INIT from {@code peer} (PROTOCOL.md §7.1), starts the link and
   * makes the peer the endpoint. The {@code control-acceptor} ({@link #acceptControl}) runs the
   * handshakes; this only names the peer it waits for and waits, waking every {@value
   * ServerConfig#INIT_ACCEPT_POLL_MILLIS} ms to notice a peer that died before it connected, or
   * a stop.
   */
  private void awaitInit(Supervisor.Peer peer) throws IOException {
    long deadline =
        System.nanoTime() + ServerConfig.DATA_START_TIMEOUT_MILLIS * 1_000_000L;
    Awaited w = new Awaited(peer);
    awaited = w;
    Handshake hs = null;
    try {
      while (hs == null) {
        if (isStopping() || supervisor.isStopped()) {
          throw new StartException("stopped during start");
        }
        if (peer.isGone()) {
          throw new StartException(peer.process != null
              ? "the data server exited during start with code " + peer.process.exitValue()
                  + " (see its log lines above)"
              : "the data server (pid " + peer.pid() + ") is gone");
        }
        long remaining = Wire.remainingMillis(deadline);
        if (remaining == 0) {
          throw new StartException("the data server (pid " + peer.pid()
              + ") did not report ready (INIT) within " + ServerConfig.DATA_START_TIMEOUT_MILLIS
              + " ms");
        }
        try {
          hs = w.won.get(Math.min(ServerConfig.INIT_ACCEPT_POLL_MILLIS, remaining),
              TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
          // The checks above run again.
        } catch (ExecutionException e) {
          throw new IllegalStateException("a handshake future never fails", e);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new StartException("interrupted during start");
        }
      }
    } finally {
      awaited = null;
      // A handshake that completes from now on finds the future done and closes its link.
      if (!w.won.complete(null) && hs == null) {
        Handshake late = w.won.getNow(null);
        if (late != null) {
          late.link.close();
        }
      }
    }
    synchronized (lifecycleLock) {
      if (stopping) {
        // The stop found no link and sends SIGTERM; the Data Server stops on that.
        hs.link.close();
        throw new StartException("stopped during start");
      }
      peer.linked(hs.link);
    }
    Handshake done = hs;
    hs.link.start(dataLinkHandler(peer));
    supervisor.ifUp(peer, () -> endpoint = new DataEndpoint(peer.pid(), done.clientPort));
  }

  /** The peer {@link #awaitInit} waits for, and where its handshake is handed over. */
  private static final class Awaited {
    final Supervisor.Peer peer;
    final CompletableFuture<Handshake> won = new CompletableFuture<>();

    Awaited(Supervisor.Peer peer) {
      this.peer = peer;
    }
  }

  /**
   * The {@code control-acceptor} thread, for the Front Server's life: accepts every control
   * connection at once (so the listen backlog never fills, however many connect) and gives each
   * its own short-lived {@code control-handshake} thread ({@link #handshake}). A connection is
   * closed {@value ServerConfig#CONTROL_HANDSHAKE_TIMEOUT_MILLIS} ms after its accept unless its
   * handshake completed; at most {@value ServerConfig#MAX_CONTROL_HANDSHAKES} are in progress at
   * once, and one more closes the oldest. So no number of silent or forged connections delays
   * the real child, which completes its handshake within milliseconds of connecting. Ends when
   * the listener is closed (the stop).
   */
  private void acceptControl(ServerSocket server) {
    ArrayDeque<Attempt> attempts = new ArrayDeque<>(); // Oldest first; guarded by itself.
    while (true) {
      Socket socket;
      try {
        socket = server.accept();
      } catch (IOException e) {
        if (server.isClosed()) {
          return;
        }
        Log.warn("control accept failed, retrying in " + ServerConfig.FRONT_ACCEPT_RETRY_MILLIS
            + " ms: " + Log.describe(e));
        try {
          Thread.sleep(ServerConfig.FRONT_ACCEPT_RETRY_MILLIS); // A back-off, not a synchronisation.
        } catch (InterruptedException ie) {
          return;
        }
        continue;
      }
      Attempt attempt = new Attempt(socket);
      synchronized (attempts) {
        if (attempts.size() >= ServerConfig.MAX_CONTROL_HANDSHAKES) {
          attempts.pollFirst().end("closed for a newer one: "
              + ServerConfig.MAX_CONTROL_HANDSHAKES + " control handshakes at once");
        }
        attempts.addLast(attempt);
      }
      CompletableFuture.delayedExecutor(
              ServerConfig.CONTROL_HANDSHAKE_TIMEOUT_MILLIS, TimeUnit.MILLISECONDS)
          .execute(() -> attempt.end("no handshake within "
              + ServerConfig.CONTROL_HANDSHAKE_TIMEOUT_MILLIS + " ms"));
      Thread t = new Thread(() -> {
        try {
          handshake(attempt);
        } finally {
          synchronized (attempts) {
            attempts.remove(attempt);
          }
        }
      }, "control-handshake");
      t.setDaemon(true);
      t.start();
    }
  }

  /** A control connection that proved it is {@code peer}'s, with the client port it announced. */
  private static final class Handshake {
    final ControlLink link;
    final int clientPort;

    Handshake(ControlLink link, int clientPort) {
      this.link = link;
      this.clientPort = clientPort;
    }
  }

  /**
   * One accepted control connection until its handshake ends: completed ({@link #succeed}), or
   * ended by its deadline, an eviction or a failure ({@link #end}), whichever comes first; the
   * other then does nothing. One log line (rate-limited) says why a connection was rejected.
   */
  private final class Attempt {
    final Socket socket;
    private final AtomicBoolean ended = new AtomicBoolean();

    Attempt(Socket socket) {
      this.socket = socket;
    }

    /** The handshake completed: the deadline and evictions no longer apply. False if too late. */
    boolean succeed() {
      return ended.compareAndSet(false, true);
    }

    /** Rejects the connection and closes it, unless its handshake already ended. */
    void end(String why) {
      if (ended.compareAndSet(false, true)) {
        controlRejected(socket, why);
        Wire.closeQuietly(socket);
      }
    }
  }

  /**
   * One control connection's handshake (its own thread): CHALLENGE, then an INIT whose MAC proves
   * the pair secret and whose pid is that of the peer {@link #awaitInit} waits for, then INIT OK
   * with this side's proof. The attempt's deadline closes the socket, which ends a read in
   * progress.
   */
  private void handshake(Attempt attempt) {
    ControlLink link = null;
    try {
      link = new ControlLink(attempt.socket, "data server");
      byte[] n1 = ControlAuth.nonce();
      link.sendChallenge(n1);
      Header h = link.read();
      if (!ControlLink.isRequest(h, Opcode.INIT)) {
        throw new IOException("expected INIT, got " + h);
      }
      int port = Header.getU16(link.body(), HEADER_BYTES);
      long pid = Header.getU64(link.body(), HEADER_BYTES + 2);
      byte[] n2 = link.bodyBytes(10, Protocol.NONCE_BYTES);
      byte[] mac = link.bodyBytes(10 + Protocol.NONCE_BYTES, Protocol.MAC_BYTES);
      if (!ControlAuth.matches(auth.initMac(n1, port, pid, n2), mac)) {
        throw new IOException("INIT with a wrong MAC (not the pair's process)");
      }
      Awaited w = awaited;
      if (w == null || pid != w.peer.pid()) {
        throw new IOException("INIT from pid " + pid + ", expected " + (w == null
            ? "none (no data server is starting)" : w.peer.pid()));
      }
      long self = ProcessHandle.current().pid();
      link.sendInitOk(h.requestId, self, auth.initOkMac(n2, self, n1));
      if (!attempt.succeed()) {
        throw new IOException("handshake completed after its deadline");
      }
      if (!w.won.complete(new Handshake(link, port))) {
        link.close(); // A second valid INIT from the same child: the first one stands.
      }
    } catch (IOException | RuntimeException e) {
      attempt.end(Log.describe(e));
      if (link != null) {
        link.close();
      }
    }
  }

  private void controlRejected(Socket socket, String why) {
    if (controlLog.record(controlRejections)) {
      Log.warn("control connection from " + Wire.peer(socket) + " rejected: " + why);
    }
  }

  /** The Front Server's reactions to its Data Server's control connection. */
  private ControlLink.Handler dataLinkHandler(Supervisor.Peer peer) {
    return new PeerLinkHandler(supervisor, peer, this::isStopping, (h, buf) -> {
      if (ControlLink.isRequest(h, Opcode.SHUTDOWN)) {
        // PROTOCOL.md §7.3: the Data Server got SIGINT/SIGTERM and stops in order; its end is
        // no crash. Both stop.
        peer.stoppingOnPurpose = true;
        endpoint = null;
        Log.info("data server (pid " + peer.pid() + ") is stopping on purpose; the front"
            + " server stops too");
        requestStop("the data server is stopping on purpose");
        return;
      }
      if (h.magic == Protocol.RESPONSE_MAGIC && h.opcode == Opcode.SHUTDOWN.code()) {
        Log.info("data server acknowledged SHUTDOWN");
        return;
      }
      throw new ProtocolException("unexpected control message " + h);
    });
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
          Log.warn("port " + config.port + " is taken; using " + port);
        }
        return s;
      } catch (BindException e) {
        if (!Log.portInUse(e)) {
          throw new StartException(
              Log.describeBind(e, config.bindAddress.getHostAddress(), port));
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

  /** The console's commands by name ({@link Console} matches them ignoring case). */
  private java.util.Map<String, Console.Command> consoleCommands() {
    Console.Command quit = () -> {
      requestStop("quit on the console");
      return false;
    };
    return java.util.Map.of(
        "quit", quit,
        "exit", quit,
        "help", () -> {
          System.out.println("commands: status (pids, ports, uptime, keys, connections,"
              + " requests, backup file and fsync, memory, relaunches), help, quit or exit (stop"
              + " both servers)");
          return true;
        },
        "status", () -> {
          printStatus();
          return true;
        });
  }

  /**
   * The console's {@code status}: this process's figures, and the Data Server's from a STATUS
   * control request (PROTOCOL.md §7.4). One {@code name: fields} line per subject.
   */
  private void printStatus() {
    FrontListener clients = clientListener;
    DataEndpoint e = endpoint;
    System.out.printf("front server: pid %d, listening on %s:%d, up %s, data server relaunches"
            + " %d%n", ProcessHandle.current().pid(), config.bindAddress.getHostAddress(),
        clients == null ? -1 : clients.localPort(),
        formatDuration(System.nanoTime() - startNanos), supervisor.relaunches());
    Supervisor.Peer peer = currentLinkedPeer();
    if (e == null || peer == null) {
      System.out.println("data server: not available (being started or relaunched)");
    } else {
      Map<String, Object> st;
      try {
        st = peer.link().requestStatus(ServerConfig.STATUS_TIMEOUT_MILLIS);
      } catch (IOException ex) {
        System.out.printf("data server: pid %d, port %d, no status (%s)%n", e.pid, e.port,
            Log.describe(ex));
        st = null;
      }
      if (st != null) {
        printDataStatus(st, e.port);
      }
    }
    System.out.println("data dir: " + config.dataDir);
  }

  /**
   * The Data Server's lines of {@code status}, from its counters (the STATS body, PROTOCOL.md
   * §6.7, which {@code psiskv-cli status} prints too). A counter the Data Server left out shows
   * as {@code ?}.
   */
  private void printDataStatus(Map<String, Object> st, int port) {
    long lastSync = number(st, "log_last_sync_ms");
    long fsyncs = number(st, "fsyncs");
    System.out.printf("data server: pid %s, port %d, up %s, threads %s, max value %d bytes,"
            + " front server relaunches %s%n",
        figure(st, "pid"), port, formatDuration(number(st, "uptime_ms") * 1_000_000L),
        config.threads, config.maxValueBytes, figure(st, "front_relaunches"));
    System.out.printf("store: %s keys, %s value bytes, %s sessions, %s connected clients%n",
        figure(st, "keys"), figure(st, "value_bytes"), figure(st, "sessions"),
        figure(st, "connections"));
    System.out.printf("connections: %s accepted, %s refused at the limit%n",
        figure(st, "connections_total"), figure(st, "connections_refused"));
    System.out.printf("requests: %s get (%s hits, %s misses), %s put, %s put-if-absent,"
            + " %s delete, %s stats; %s bytes in, %s bytes out%n",
        figure(st, "ops_get"), figure(st, "get_hits"), figure(st, "get_misses"),
        figure(st, "ops_put"), figure(st, "ops_put_if_absent"), figure(st, "ops_delete"),
        figure(st, "ops_stats"), figure(st, "bytes_in"), figure(st, "bytes_out"));
    System.out.printf("backup file: %s, %s bytes, last sync %s, fsync %s%s%n",
        config.dataDir.resolve(BackupLog.FILE_NAME), figure(st, "log_file_bytes"),
        lastSync == 0 ? "never" : Instant.ofEpochMilli(lastSync).toString(), figure(st, "fsync"),
        number(st, "log_failed") != 0 ? ", FAILED: writes are refused until it recovers" : "");
    System.out.printf("fsync: %d commits, %s records per fsync, latency p50 %s us, p99 %s us%n",
        fsyncs, fsyncs == 0 ? "-"
            : String.format("%.1f", (double) number(st, "fsync_records") / fsyncs),
        figure(st, "fsync_p50_us"), figure(st, "fsync_p99_us"));
    System.out.printf("process: version %s, heap %s bytes used of %s committed, rss %s bytes%n",
        figure(st, "version"), figure(st, "heap_used_bytes"), figure(st, "heap_committed_bytes"),
        figure(st, "rss_bytes"));
  }

  /** A counter as the console shows it: unsigned decimal, the string, or ? if absent. */
  private static String figure(Map<String, Object> st, String name) {
    Object v = st.get(name);
    return v == null ? "?" : v instanceof Long ? Long.toUnsignedString((Long) v) : v.toString();
  }

  /** A u64 counter, 0 if absent or not a number. */
  private static long number(Map<String, Object> st, String name) {
    Object v = st.get(name);
    return v instanceof Long ? (Long) v : 0;
  }

  /** The Data Server being served to clients, if its control link is up. */
  private Supervisor.Peer currentLinkedPeer() {
    Supervisor.Peer p = supervisor.current();
    return p != null && p.link() != null && !p.link().isClosed() ? p : null;
  }

  private static String formatDuration(long nanos) {
    Duration d = Duration.ofNanos(nanos);
    return String.format("%dh%02dm%02ds", d.toHours(), d.toMinutesPart(), d.toSecondsPart());
  }

  private void requestStop(String reason) {
    stopReason = reason;
    stopRequested.countDown();
  }

  private boolean isStopping() {
    synchronized (lifecycleLock) {
      return stopping;
    }
  }

  /** The orderly stop of both processes; see the class comment. */
  private void stop(String reason) {
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
      Supervisor.Peer peer = supervisor.stop(); // Nothing is relaunched from here on.
      endpoint = null;
      FrontListener clients = clientListener;
      if (clients != null) {
        clients.close();
      }
      Wire.closeQuietly(controlListener);
      if (peer != null && !leaveDataServer) {
        stopDataServer(peer);
      }
      PidFile.deleteIfOurs(config.dataDir, PidFile.FRONT);
      Log.info("stopped");
    } finally {
      stopped.countDown();
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
          Log.warn("could not send SHUTDOWN (" + Log.describe(e) + "); sending SIGTERM");
        }
      }
      if (!asked) {
        peer.handle.destroy(); // SIGTERM: the Data Server's shutdown hook stops it in order.
      }
      if (!Supervisor.awaitGone(peer, ServerConfig.SHUTDOWN_TIMEOUT_MILLIS)) {
        Log.error("data server (pid " + peer.pid() + ") did not exit within "
            + ServerConfig.SHUTDOWN_TIMEOUT_MILLIS + " ms; killing it");
        peer.handle.destroyForcibly();
        Supervisor.awaitGone(peer, Supervisor.PEER_KILL_WAIT_MILLIS);
        exitCode = ServerConfig.EXIT_FAILURE;
      }
      if (peer.isGone()) {
        Log.info("data server (pid " + peer.pid() + ") " + peer.exitDescription());
      }
    } finally {
      if (link != null) {
        link.close();
      }
    }
  }
}
