package io.psiskv.server;

import static io.psiskv.protocol.Protocol.HEADER_BYTES;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Rules;
import io.psiskv.protocol.Status;
import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.BindException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The Front Server process (process 1, the jar's Main-Class): starts the Data Server as a second
 * OS process, redirects clients to it (HELLO), and owns the console and the orderly stop of both.
 *
 * <p><b>Start.</b> Open the control listener (127.0.0.1, ephemeral port); launch the Data Server
 * (same java binary and classpath, no shell, {@code --control-port}); wait up to {@value
 * ServerConfig#DATA_START_TIMEOUT_MILLIS} ms for its INIT, accepted only from the launched pid;
 * answer INIT OK; then bind the client port ({@code --port}, or the first free one of the next
 * {@value ServerConfig#PORT_SEARCH_ATTEMPTS}) and print {@code psiskv front server listening on
 * ADDR:PORT}. A failure or timeout kills the child and exits 1.
 *
 * <p><b>Threads</b> (all but main are daemons):
 *
 * <ul>
 *   <li>{@code main}: starts everything, waits for {@code quit}, stops, exits.
 *   <li>{@code front-acceptor}: accepts client connections and starts one {@code front-conn-N}
 *       thread per connection (at most {@value ServerConfig#MAX_FRONT_CONNECTIONS}; more are
 *       refused); each reads with a {@value ServerConfig#FRONT_READ_TIMEOUT_MILLIS} ms timeout,
 *       so a silent client costs one thread for a bounded time and blocks no one else.
 *   <li>{@code console}: reads stdin lines; end of stdin ends only the console.
 *   <li>{@code control-reader} and {@code heartbeat}: the control connection ({@link
 *       ControlLink}); a JDK thread reports the Data Server process's exit.
 *   <li>the JVM's shutdown hook thread on SIGINT and SIGTERM.
 * </ul>
 *
 * <p><b>Shared state.</b> {@code endpoint} (volatile, immutable record) is where HELLO sends
 * clients; null means UNAVAILABLE. {@code lifecycleLock} guards {@code stopping}, {@code
 * dataProcess} and {@code control}, so that a stop can never miss a child launched concurrently.
 *
 * <p><b>Stop</b> ({@link #stop}, idempotent, race-free between {@code quit} and a signal: the
 * first caller does the work, later ones wait for it): redirect no one, close the listeners, send
 * SHUTDOWN, wait up to {@value ServerConfig#SHUTDOWN_TIMEOUT_MILLIS} ms for the Data Server
 * process to exit, else kill it (and exit 1), delete the pid file, exit 0. Ctrl-C reaches both
 * processes; each stops in order on its own and the SHUTDOWN is then merely redundant.
 */
public final class FrontServer {
  /** Where HELLO redirects clients; immutable, replaced as a whole. */
  private static final class DataEndpoint {
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
  private final long startNanos = System.nanoTime();
  /** The HELLO answer's address: 0 ("the host you reached me at") for the wildcard bind. */
  private final int helloAddress;
  private final Object lifecycleLock = new Object();
  /** Guarded by lifecycleLock. */
  private boolean stopping;
  /** Guarded by lifecycleLock. */
  private Process dataProcess;
  /** Guarded by lifecycleLock. */
  private ControlLink control;
  private volatile DataEndpoint endpoint;
  private volatile ServerSocket controlListener;
  private volatile ServerSocket clientListener;
  private final CountDownLatch stopRequested = new CountDownLatch(1);
  private volatile String stopReason = "";
  private final CountDownLatch stopped = new CountDownLatch(1);
  private volatile int exitCode = ServerConfig.EXIT_OK;
  private final Semaphore frontSlots = new Semaphore(ServerConfig.MAX_FRONT_CONNECTIONS);
  private final AtomicInteger connectionNumbers = new AtomicInteger();

  private FrontServer(ServerConfig config) {
    this.config = config;
    this.helloAddress = config.bindAddress.isAnyLocalAddress()
        ? 0 : Header.getU32(config.bindAddress.getAddress(), 0);
  }

  public static void main(String[] args) {
    ServerConfig config = ServerConfig.parseOrExit(ServerConfig.Role.FRONT, args);
    Log.init(ServerConfig.Role.FRONT.logName);
    FrontServer server = new FrontServer(config);
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
        awaitQuietly(server.stopped);
        System.exit(server.exitCode);
      }
      Log.info("start failed: " + (e instanceof StartException ? e.getMessage() : e.toString()));
      server.exitCode = ServerConfig.EXIT_FAILURE;
      server.killDataServer();
      server.stop("start failed");
      System.exit(server.exitCode);
    }
    awaitQuietly(server.stopRequested);
    server.stop(server.stopReason);
    System.exit(server.exitCode);
  }

  private void start() throws IOException {
    try {
      Files.createDirectories(config.dataDir);
    } catch (IOException e) {
      throw new StartException("cannot create data directory " + config.dataDir + ": " + e);
    }
    for (String name : new String[] {PidFile.FRONT, PidFile.DATA}) {
      Optional<ProcessHandle> other = PidFile.livePeer(config.dataDir, name);
      if (other.isPresent()) {
        throw new StartException("another psiskv server (pid " + other.get().pid() + ", "
            + name + ") uses data directory " + config.dataDir
            + "; stop it first (build-scripts/psiskv-stop --data-dir " + config.dataDir + ")");
      }
    }
    PidFile.write(config.dataDir, PidFile.FRONT);
    Log.info("starting (" + config + ")");

    ServerSocket controlServer =
        new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
    controlListener = controlServer;
    Process process = launchDataServer(controlServer.getLocalPort());
    if (process == null) {
      return; // Stopping already.
    }
    process.onExit().thenRun(() -> {
      if (endpoint == null) {
        Wire.closeQuietly(controlServer); // Wakes awaitInit: the child died during start.
      }
    });
    int dataPort = awaitInit(process, controlServer);
    ServerSocket clients = bindClientPort();
    clientListener = clients;
    synchronized (lifecycleLock) {
      if (stopping) {
        Wire.closeQuietly(clients);
        return;
      }
      endpoint = new DataEndpoint(process.pid(), dataPort);
    }
    process.onExit().thenAccept(p -> {
      if (!isStopping()) {
        endpoint = null;
        Log.info("data server (pid " + p.pid() + ") exited with code " + p.exitValue()
            + "; clients get UNAVAILABLE");
      }
    });
    Thread acceptor = new Thread(() -> acceptClients(clients), "front-acceptor");
    acceptor.setDaemon(true);
    acceptor.start();

    String bind = config.bindAddress.getHostAddress();
    System.out.println("data server pid " + process.pid() + " port " + dataPort);
    System.out.println("psiskv front server listening on " + bind + ":" + clients.getLocalPort());
    System.out.flush();
    Log.info("listening on " + bind + ":" + clients.getLocalPort() + "; data server pid "
        + process.pid() + " on port " + dataPort);

    Thread console = new Thread(this::runConsole, "console");
    console.setDaemon(true);
    console.start();
  }

  /** Launches the Data Server process; null if the stop began first. */
  private Process launchDataServer(int controlPort) throws IOException {
    List<String> command = new ArrayList<>();
    command.add(javaBinary());
    command.add("-cp");
    command.add(absoluteClassPath());
    command.add(DataServer.class.getName());
    command.addAll(config.dataServerArgs(controlPort));
    ProcessBuilder builder = new ProcessBuilder(command)
        .redirectInput(ProcessBuilder.Redirect.PIPE)
        .redirectOutput(ProcessBuilder.Redirect.INHERIT)
        .redirectError(ProcessBuilder.Redirect.INHERIT);
    synchronized (lifecycleLock) {
      if (stopping) {
        return null;
      }
      Process process = builder.start();
      process.getOutputStream().close(); // The console is ours; the child reads no stdin.
      dataProcess = process;
      Log.info("launched data server pid " + process.pid());
      return process;
    }
  }

  /**
   * Waits for INIT from the launched process on the control listener; returns the Data Server's
   * client port. Connections that are not the child's INIT are closed and ignored.
   */
  private int awaitInit(Process process, ServerSocket controlServer) throws IOException {
    long deadline =
        System.nanoTime() + ServerConfig.DATA_START_TIMEOUT_MILLIS * 1_000_000L;
    while (true) {
      long remaining = Wire.remainingMillis(deadline);
      if (remaining == 0) {
        throw new StartException("the data server (pid " + process.pid()
            + ") did not report ready (INIT) within " + ServerConfig.DATA_START_TIMEOUT_MILLIS
            + " ms");
      }
      Socket socket;
      try {
        controlServer.setSoTimeout((int) Math.min(Integer.MAX_VALUE, remaining));
        socket = controlServer.accept();
      } catch (SocketTimeoutException e) {
        continue; // The deadline check above reports it.
      } catch (IOException e) {
        if (isStopping()) {
          throw new StartException("stopped during start");
        }
        if (!process.isAlive()) {
          throw new StartException("the data server exited during start with code "
              + process.exitValue() + " (see its log lines above)");
        }
        throw e;
      }
      ControlLink link = new ControlLink(socket, "data server");
      try {
        link.setReadTimeoutMillis(ServerConfig.INIT_REPLY_TIMEOUT_MILLIS);
        Header h = link.read();
        if (!ControlLink.isRequest(h, Opcode.INIT)) {
          throw new IOException("expected INIT, got " + h);
        }
        int port = Header.getU16(link.body(), HEADER_BYTES);
        long pid = Header.getU64(link.body(), HEADER_BYTES + 2);
        if (pid != process.pid()) {
          throw new IOException("INIT from pid " + pid + ", expected " + process.pid());
        }
        link.sendInitOk(h.requestId, ProcessHandle.current().pid());
        link.setReadTimeoutMillis(0);
        synchronized (lifecycleLock) {
          if (stopping) {
            link.close();
            throw new StartException("stopped during start");
          }
          control = link;
        }
        link.startHeartbeats(null);
        Thread reader = new Thread(() -> readControl(link), "control-reader");
        reader.setDaemon(true);
        reader.start();
        return port;
      } catch (StartException e) {
        throw e;
      } catch (IOException e) {
        Log.info("control connection from " + Wire.peer(socket) + " rejected: "
            + e.getMessage());
        link.close();
      }
    }
  }

  /** The configured port, else the first free one above it; port 0 means any free port. */
  private ServerSocket bindClientPort() throws IOException {
    if (config.port == 0) {
      return bind(0);
    }
    int last = Math.min(65535, config.port + ServerConfig.PORT_SEARCH_ATTEMPTS - 1);
    for (int port = config.port; port <= last; port++) {
      try {
        ServerSocket s = bind(port);
        if (port != config.port) {
          Log.info("port " + config.port + " is taken; using " + port);
        }
        return s;
      } catch (BindException e) {
        // Taken: try the next one.
      }
    }
    throw new StartException("no free port from " + config.port + " to " + last + " on "
        + config.bindAddress.getHostAddress());
  }

  private ServerSocket bind(int port) throws IOException {
    ServerSocket s = new ServerSocket();
    try {
      s.setReuseAddress(true);
      s.bind(new InetSocketAddress(config.bindAddress, port), ServerConfig.FRONT_LISTEN_BACKLOG);
      return s;
    } catch (IOException e) {
      s.close();
      throw e;
    }
  }

  private void acceptClients(ServerSocket server) {
    while (true) {
      Socket socket;
      try {
        socket = server.accept();
      } catch (IOException e) {
        if (!isStopping()) {
          Log.info("accept failed, no more front connections: " + e.getMessage());
        }
        return;
      }
      if (!frontSlots.tryAcquire()) {
        Log.info("front connection " + Wire.peer(socket) + " refused: "
            + ServerConfig.MAX_FRONT_CONNECTIONS + " already open");
        Wire.closeQuietly(socket);
        continue;
      }
      Thread t = new Thread(() -> {
        try {
          serveFront(socket);
        } finally {
          frontSlots.release();
        }
      }, "front-conn-" + connectionNumbers.incrementAndGet());
      t.setDaemon(true);
      t.start();
    }
  }

  /** One front connection: HELLO and PING until the client closes (PROTOCOL.md §6.1, §6.3). */
  private void serveFront(Socket socket) {
    byte[] buf = new byte[Messages.MAX_FIXED_BYTES];
    Header h = new Header();
    try {
      socket.setTcpNoDelay(true);
      socket.setSoTimeout(ServerConfig.FRONT_READ_TIMEOUT_MILLIS);
      InputStream in = socket.getInputStream();
      OutputStream out = socket.getOutputStream();
      while (true) {
        int n = Wire.readFully(in, buf, 0, HEADER_BYTES);
        if (n == 0) {
          return;
        }
        if (n < HEADER_BYTES) {
          frontProblem(socket, "closed the connection mid-header (" + n + " of " + HEADER_BYTES
              + " bytes)");
          return;
        }
        h.decode(buf, 0);
        Status broken = Rules.checkRequest(h, config.maxValueBytes);
        String reason = broken == null ? null
            : Wire.describeRejection(h, broken, config.maxValueBytes);
        Opcode op = Opcode.of(h.opcode);
        if (broken == null && op != Opcode.HELLO && op != Opcode.PING) {
          broken = Status.BAD_REQUEST;
          reason = op + " is not a front-connection request";
        }
        if (broken != null) {
          frontProblem(socket, reason + "; answered " + broken + ", closing");
          out.write(buf, 0, Messages.status(buf, h.opcode, broken, h.key, h.requestId));
          Wire.lingerAndClose(socket, new byte[4096]);
          return;
        }
        if (op == Opcode.PING) {
          out.write(buf, 0, Messages.status(buf, h.opcode, Status.OK, 0, h.requestId));
          continue;
        }
        DataEndpoint e = endpoint;
        int len = e == null
            ? Messages.status(buf, h.opcode, Status.UNAVAILABLE, 0, h.requestId)
            : Messages.helloOk(buf, h.requestId, helloAddress, e.port);
        out.write(buf, 0, len);
      }
    } catch (SocketTimeoutException e) {
      frontProblem(socket, "sent nothing for " + ServerConfig.FRONT_READ_TIMEOUT_MILLIS
          + " ms; closing");
    } catch (IOException e) {
      if (!socket.isClosed()) {
        frontProblem(socket, "connection failed: " + e.getMessage());
      }
    } finally {
      Wire.closeQuietly(socket);
    }
  }

  private static void frontProblem(Socket socket, String message) {
    Log.info("front connection " + Wire.peer(socket) + ": " + message);
  }

  private void readControl(ControlLink link) {
    try {
      while (true) {
        Header h = link.read();
        if (ControlLink.isRequest(h, Opcode.HEARTBEAT)) {
          continue;
        }
        if (h.magic == Protocol.RESPONSE_MAGIC && h.opcode == Opcode.SHUTDOWN.code()) {
          Log.info("data server acknowledged SHUTDOWN");
          continue;
        }
        throw new IOException("unexpected control message " + h);
      }
    } catch (IOException e) {
      if (!isStopping()) {
        endpoint = null;
        Log.info("control connection to the data server lost (" + e.getMessage()
            + "); clients get UNAVAILABLE");
        link.close();
      }
    }
  }

  private void runConsole() {
    BufferedReader reader =
        new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    try {
      String line;
      while ((line = reader.readLine()) != null) {
        String command = line.trim();
        switch (command) {
          case "":
            break;
          case "quit":
            requestStop("quit on the console");
            return;
          case "help":
            System.out.println("commands: status (pids, ports, uptime), help, quit (stop both"
                + " servers)");
            break;
          case "status":
            printStatus();
            break;
          default:
            System.out.println("unknown command '" + command + "'; type help");
        }
        System.out.flush();
      }
      Log.info("console: end of stdin; the server keeps running (stop it with SIGTERM or"
          + " build-scripts/psiskv-stop)");
    } catch (IOException e) {
      Log.info("console: stdin failed (" + e.getMessage() + "); the server keeps running");
    }
  }

  private void printStatus() {
    Duration up = Duration.ofNanos(System.nanoTime() - startNanos);
    ServerSocket clients = clientListener;
    DataEndpoint e = endpoint;
    System.out.printf("front server: pid %d, listening on %s:%d, up %dh%02dm%02ds%n",
        ProcessHandle.current().pid(), config.bindAddress.getHostAddress(),
        clients == null ? -1 : clients.getLocalPort(), up.toHours(), up.toMinutesPart(),
        up.toSecondsPart());
    if (e == null) {
      System.out.println("data server: not available");
    } else {
      System.out.printf("data server: pid %d, port %d, threads %s, max value %d bytes%n",
          e.pid, e.port, config.threadsDescription(), config.maxValueBytes);
    }
    System.out.println("data dir: " + config.dataDir);
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

  /** Start failure: the child is killed at once rather than asked. */
  private void killDataServer() {
    Process p;
    synchronized (lifecycleLock) {
      p = dataProcess;
    }
    if (p != null && p.isAlive()) {
      p.destroyForcibly();
    }
  }

  /** The orderly stop of both processes; see the class comment. */
  private void stop(String reason) {
    boolean first;
    Process process;
    ControlLink link;
    synchronized (lifecycleLock) {
      first = !stopping;
      stopping = true;
      process = dataProcess;
      link = control;
    }
    if (!first) {
      awaitQuietly(stopped);
      return;
    }
    try {
      Log.info("stopping: " + reason);
      endpoint = null;
      Wire.closeQuietly(clientListener);
      Wire.closeQuietly(controlListener);
      if (process != null) {
        stopDataServer(process, link);
      }
      if (link != null) {
        link.close();
      }
      PidFile.deleteIfOurs(config.dataDir, PidFile.FRONT);
      Log.info("stopped");
    } finally {
      stopped.countDown();
    }
  }

  private void stopDataServer(Process process, ControlLink link) {
    if (!process.isAlive()) {
      return; // Its exit was logged when it happened.
    }
    boolean asked = false;
    if (link != null) {
      try {
        link.sendShutdown();
        asked = true;
      } catch (IOException e) {
        Log.info("could not send SHUTDOWN (" + e.getMessage() + "); sending SIGTERM");
      }
    }
    if (!asked) {
      process.destroy(); // SIGTERM: the Data Server's shutdown hook stops it in order.
    }
    boolean exited = waitFor(process, ServerConfig.SHUTDOWN_TIMEOUT_MILLIS);
    if (!exited) {
      Log.info("data server (pid " + process.pid() + ") did not exit within "
          + ServerConfig.SHUTDOWN_TIMEOUT_MILLIS + " ms; killing it");
      process.destroyForcibly();
      waitFor(process, ServerConfig.SHUTDOWN_TIMEOUT_MILLIS);
      exitCode = ServerConfig.EXIT_FAILURE;
    }
    if (!process.isAlive()) {
      Log.info("data server (pid " + process.pid() + ") exited with code "
          + process.exitValue());
    }
  }

  private static boolean waitFor(Process process, long millis) {
    boolean interrupted = false;
    long deadline = System.nanoTime() + millis * 1_000_000L;
    try {
      while (true) {
        try {
          return process.waitFor(Wire.remainingMillis(deadline), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
          interrupted = true;
        }
      }
    } finally {
      if (interrupted) {
        Thread.currentThread().interrupt();
      }
    }
  }

  private static void awaitQuietly(CountDownLatch latch) {
    boolean interrupted = false;
    while (true) {
      try {
        latch.await();
        break;
      } catch (InterruptedException e) {
        interrupted = true;
      }
    }
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
  }

  /** The running JVM's own java launcher: the Data Server runs on the same Java. */
  private static String javaBinary() {
    Path java = Path.of(System.getProperty("java.home"), "bin", "java");
    if (Files.isExecutable(java)) {
      return java.toString();
    }
    return ProcessHandle.current().info().command().orElse("java");
  }

  /** This JVM's classpath with absolute entries, so the child does not depend on our cwd. */
  private static String absoluteClassPath() {
    List<String> entries = new ArrayList<>();
    for (String entry : System.getProperty("java.class.path").split(File.pathSeparator)) {
      if (!entry.isEmpty()) {
        entries.add(Path.of(entry).toAbsolutePath().toString());
      }
    }
    return String.join(File.pathSeparator, entries);
  }
}
