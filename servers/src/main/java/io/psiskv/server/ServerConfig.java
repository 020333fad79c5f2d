package io.psiskv.server;

import io.psiskv.protocol.Protocol;
import io.psiskv.server.backup.FsyncPolicy;
import io.psiskv.server.control.HangJudge;
import io.psiskv.server.control.Supervisor;
import io.psiskv.server.data.BodyBudget;
import io.psiskv.server.front.Console;
import io.psiskv.server.store.ValueArena;
import java.net.InetAddress;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The configuration of both server processes: every tunable, in one place.
 *
 * <p>Options come from the command line, are read once at start by {@link ServerOptions#parse}
 * and checked there. The Front Server passes its settings on to the Data Server it starts ({@link
 * #dataServerArgs}), so both processes parse the same options. Everything else is a named
 * constant with its unit in its name. Instances are immutable and safe to share between threads.
 */
public final class ServerConfig {
  // --- Command-line defaults. ---

  /** Front Server client port when {@code --port} is not given (README). */
  static final int DEFAULT_PORT = Protocol.DEFAULT_FRONT_PORT;
  /** If the requested front port is taken, this many ports from it upwards are tried. */
  static final int PORT_SEARCH_ATTEMPTS = 100;
  /** Loopback by default: the store has no authentication. */
  static final String DEFAULT_BIND = "127.0.0.1";
  /** Relative to the working directory of the user who starts the server. */
  static final String DEFAULT_DATA_DIR = "data";
  /** Largest N accepted in {@code --threads pool:N}. */
  static final int MAX_POOL_THREADS = 10_000;
  /** Largest N accepted in {@code --threads event-loop:N}. */
  static final int MAX_EVENT_LOOPS = 256;

  // --- Control connection (PROTOCOL.md §7). Supervision's numbers are in Supervisor. ---

  /** Front Server: how long it waits for the Data Server's INIT after launching it at start. */
  public static final long DATA_START_TIMEOUT_MILLIS = 60_000;
  /** Data Server: how long it waits for CHALLENGE, and for INIT OK after sending INIT. */
  static final int INIT_REPLY_TIMEOUT_MILLIS = 10_000;
  /**
   * Front Server: a control connection must complete the handshake (CHALLENGE, INIT, PROTOCOL.md
   * §7.1) within this long from its accept, else it is closed. The real child needs milliseconds.
   */
  public static final long CONTROL_HANDSHAKE_TIMEOUT_MILLIS = 2_000;
  /** Data Server: control handshakes it tries before giving up (and being relaunched). */
  static final int CONTROL_HANDSHAKE_ATTEMPTS = 3;
  /** Data Server: the pause between two of those attempts. */
  static final long CONTROL_HANDSHAKE_RETRY_MILLIS = 100;
  /**
   * Front Server: control handshakes in progress at once, each on its own thread. Accepting one
   * more closes the oldest, so silent connections cannot keep the real child out.
   */
  public static final int MAX_CONTROL_HANDSHAKES = 32;
  /** Front Server: pending-connection queue of the control listener (accepted at once anyway). */
  public static final int CONTROL_LISTEN_BACKLOG = 64;
  /** Front Server: how long it waits for a STATUS answer for the console. */
  public static final long STATUS_TIMEOUT_MILLIS = 2_000;
  /**
   * Front Server: how often the wait for INIT wakes up to notice a launched Data Server that died
   * before it connected, or a stop (accept has no other way to be woken).
   */
  public static final int INIT_ACCEPT_POLL_MILLIS = 100;
  /** A Front Server started by the Data Server writes its log here, in the data directory. */
  public static final String FRONT_LOG_FILE = "front.log";
  /** Front Server: how long it waits for the Data Server to exit after SHUTDOWN before killing. */
  static final long SHUTDOWN_TIMEOUT_MILLIS = 15_000;
  /** Data Server: how long a stop waits for in-flight requests before closing them by force. */
  public static final long DRAIN_TIMEOUT_MILLIS = 5_000;
  /**
   * {@code --hang-timeout-ms}: a silent peer that is still running (collecting garbage, busy,
   * waiting for a CPU) is waited for until its silence lasts this long, then killed anyway
   * ({@link HangJudge}); a stopped or idle one is killed at once. Far above the longest
   * collection measured, so that only a peer that is wedged while it runs reaches it (DESIGN.md
   * §8). At least {@link Supervisor#HUNG_AFTER_MILLIS}, which makes every silence past that
   * limit a hang.
   */
  static final int DEFAULT_HANG_TIMEOUT_MILLIS = 10_000;

  // --- Client connections. ---

  // Front connections, all served by one FrontListener loop (DESIGN.md §10). Tests override the
  // first three and the summary interval with the system properties FrontLimits names.

  /**
   * Front connection: from accept, or from the moment the previous answer was written, the next
   * request must be complete and answered within this time, however often the peer sends.
   */
  public static final int FRONT_REQUEST_DEADLINE_MILLIS = 2_000;
  /**
   * Front connection: closed when nothing has arrived for this long (since accept, the last byte
   * or the previous answer). Shorter than the request deadline, so a silent peer goes first.
   */
  public static final int FRONT_IDLE_TIMEOUT_MILLIS = 1_000;
  /**
   * Front connections open at once. Accepting one more closes the oldest incomplete one (the one
   * nearest its request deadline), so a flood delays no new client; lowered at start to what the
   * process's open-file limit allows.
   */
  public static final int MAX_FRONT_CONNECTIONS = 4_096;
  /** Pending-connection queue of the Front Server listener (the kernel caps it at somaxconn). */
  static final int FRONT_LISTEN_BACKLOG = 1_024;
  /** File descriptors the Front Server keeps for itself below its open-file limit. */
  public static final int FRONT_RESERVED_FILES = 64;
  /** Connections the front's loop accepts per wake-up before it serves the ready ones. */
  public static final int FRONT_ACCEPTS_PER_WAKEUP = 64;
  /** After a failed accept with nothing to close, the front's loop retries after this long. */
  public static final int FRONT_ACCEPT_RETRY_MILLIS = 100;
  /** Timeouts, evictions, failures: one summary line per subject at most this often. */
  public static final long LOG_SUMMARY_INTERVAL_MILLIS = 10_000;
  /** Protocol violations logged one line each per summary interval; the rest are counted. */
  public static final int LOG_PROBLEM_LINES_PER_INTERVAL = 20;

  // Data connections (DESIGN.md §4, §10), served by the --threads policy's DataTransport.

  /**
   * {@code --max-connections}: data connections open at once. One more is refused with
   * UNAVAILABLE (the client retries through the Front Server). Also capped below the process's
   * file-descriptor limit less {@link #RESERVED_FILE_DESCRIPTORS}.
   */
  static final int DEFAULT_MAX_CONNECTIONS = 16_384;
  /** File descriptors kept for the log, the listeners, the control link and the JVM. */
  public static final int RESERVED_FILE_DESCRIPTORS = 128;
  /**
   * Connections over the limit being refused at once: each gets UNAVAILABLE for its first request
   * within {@link #REFUSAL_TIMEOUT_MILLIS}; more are closed without an answer.
   */
  public static final int MAX_REFUSING_CONNECTIONS = 256;
  public static final int REFUSAL_TIMEOUT_MILLIS = 1_000;
  /**
   * {@code --request-timeout-ms}: the deadline for a whole request, from its first byte to its
   * last, and for a peer to take its answers; past it the connection is closed. Not restarted by
   * each byte, so a peer dripping bytes is closed too.
   */
  static final int DEFAULT_REQUEST_TIMEOUT_MILLIS = 30_000;
  /**
   * {@code --idle-timeout-ms}: a data connection that has no session and sends no request for
   * this long is closed. A connection with a session has no idle timeout (clients keep theirs for
   * life), except under {@code pool:N} ({@link #DEFAULT_POOL_IDLE_TIMEOUT_MILLIS}).
   */
  static final int DEFAULT_IDLE_TIMEOUT_MILLIS = 10_000;
  /**
   * {@code --pool-idle-timeout-ms}, {@code pool:N} only: a connection idle between requests for
   * this long is closed, so that N idle clients cannot lock the others out; its client
   * reconnects and resumes its session on its next call.
   */
  static final int DEFAULT_POOL_IDLE_TIMEOUT_MILLIS = 5_000;
  /**
   * {@code --body-budget-bytes}: PUT value bytes being accumulated at once, server-wide (see
   * {@link BodyBudget}). Past it, connections that need more are not read from until bytes are
   * released.
   */
  static final long DEFAULT_BODY_BUDGET_BYTES = 256L << 20;
  /**
   * After an error response the server stops writing and reads (and discards) what the peer is
   * still sending for at most this long and this many bytes before it closes, so that the close
   * does not turn into a TCP reset that could destroy the error response in flight.
   */
  public static final int ERROR_LINGER_MILLIS = 250;
  public static final int ERROR_LINGER_MAX_BYTES = 256 * 1024;
  /**
   * Bytes read from one connection per system call, and the size of the arrays lent to a
   * connection for the partial request it left unread and for the answers it is owed: the only
   * per-connection buffers, held only while bytes are in flight.
   */
  public static final int CONNECTION_BUFFER_BYTES = 16 * 1024;
  /** Event loop: connection buffers each loop keeps for reuse. */
  public static final int POOLED_BUFFERS_PER_LOOP = 256;
  /** Event loop: how often a loop checks its connections' deadlines. */
  public static final int DEADLINE_CHECK_INTERVAL_MILLIS = 100;
  /** Pending-connection queue of the Data Server listener (pool:N clients wait here). */
  static final int DATA_LISTEN_BACKLOG = 1024;
  // --- Backup file and sessions (PROTOCOL.md §11, §12). ---

  /** The durability of an acknowledged write when {@code --fsync} is not given (PROTOCOL.md §11.4). */
  static final FsyncPolicy DEFAULT_FSYNC = FsyncPolicy.ALWAYS;
  /**
   * Exactly-once table: a session with no connection for this long is forgotten (PROTOCOL.md
   * §12.6). Far longer than any client's retry deadline (10 s by default).
   */
  public static final long SESSION_IDLE_EXPIRY_MILLIS = 10 * 60_000;
  /**
   * {@code --max-sessions}: sessions the exactly-once table holds at once (each about 200 bytes).
   * A new one beyond it takes the place of the session idle longest, if that one has been idle
   * for at least {@link #SESSION_EVICT_MIN_IDLE_MILLIS}; else it is answered UNAVAILABLE.
   */
  static final int DEFAULT_MAX_SESSIONS = 65_536;
  /**
   * A session idle for less than this is never forgotten to make room (PROTOCOL.md §12.6): it is
   * the clients' default retry deadline, so a client retrying a write finds its session.
   */
  public static final long SESSION_EVICT_MIN_IDLE_MILLIS = 10_000;
  /** Data Server: how often the maintenance thread checks compaction and expires sessions. */
  static final long MAINTENANCE_INTERVAL_MILLIS = 1_000;

  /**
   * The Data Server's JVM options, chosen by measurement (DESIGN.md §3, §11): small values live
   * off the heap ({@link ValueArena}), so the heap holds only the tables and short-lived request
   * garbage, and G1 is told to keep it close to its live size (free between 5% and 10% after a
   * collection, 1 MiB regions) and to collect and give memory back after half a second without
   * a collection (after a load or a flood of connections; measured idle cost with 1,000,000 keys:
   * 1% of a core). Temporary direct buffers of the JDK's
   * socket I/O are cached only up to 256 KiB per thread. Direct memory may grow to the machine's
   * RAM: it holds the values. Options given to the first JVM come after these and win.
   */
  public static List<String> dataServerJvmOptions() {
    List<String> options = new ArrayList<>(List.of("-XX:+UseG1GC", "-XX:MinHeapFreeRatio=5",
        "-XX:MaxHeapFreeRatio=10", "-XX:G1HeapRegionSize=1m", "-XX:G1PeriodicGCInterval=500",
        "-Djdk.nio.maxCachedBufferSize=262144"));
    java.lang.management.OperatingSystemMXBean os =
        java.lang.management.ManagementFactory.getOperatingSystemMXBean();
    if (os instanceof com.sun.management.OperatingSystemMXBean) {
      long ram = ((com.sun.management.OperatingSystemMXBean) os).getTotalMemorySize();
      options.add("-XX:MaxDirectMemorySize=" + ram);
    }
    return options;
  }

  /** Process exit codes. */
  static final int EXIT_OK = 0;
  static final int EXIT_FAILURE = 1;
  static final int EXIT_BAD_OPTION = 2;

  /** The log level when {@code --log-level} is not given. */
  static final ServerLog.Level DEFAULT_LOG_LEVEL = ServerLog.Level.INFO;

  /** Which process is parsing: some options belong to one of them only. */
  enum Role {
    FRONT("front"),
    DATA("data");

    final String logName;

    Role(String logName) {
      this.logName = logName;
    }
  }

  final Role role;
  /** Front Server client port; 0 = ephemeral. */
  final int port;
  /** IPv4 address both servers listen on for clients. */
  public final InetAddress bindAddress;
  /** Absolute, normalized data directory (created at start if missing, not by parsing). */
  public final Path dataDir;
  /** How data connections are served ({@code --threads}). */
  public final ThreadPolicy threads;
  /** Largest value accepted by PUT (PROTOCOL.md §9). */
  public final int maxValueBytes;
  /** Data Server only: the Front Server's control port on 127.0.0.1; -1 for the Front Server. */
  final int controlPort;
  /**
   * Data Server only: the Front Server's client port, which a Front Server it relaunches binds
   * again; -1 for the Front Server.
   */
  final int frontPort;
  /**
   * Front Server only: 0 normally; else the pid of a running Data Server that relaunched this
   * Front Server and that it adopts instead of launching one (no console, exact port).
   */
  final long adoptDataPid;
  /** When a write is acknowledged relative to the disk (PROTOCOL.md §11.4). */
  public final FsyncPolicy fsync;
  /** Start even if the backup file is damaged before its tail, salvaging up to the damage. */
  final boolean salvage;
  /** Data connections open at once; see {@link #DEFAULT_MAX_CONNECTIONS}. */
  public final int maxConnections;
  /** See {@link #DEFAULT_REQUEST_TIMEOUT_MILLIS}. */
  public final int requestTimeoutMillis;
  /** See {@link #DEFAULT_IDLE_TIMEOUT_MILLIS}. */
  public final int idleTimeoutMillis;
  /** See {@link #DEFAULT_POOL_IDLE_TIMEOUT_MILLIS}. */
  public final int poolIdleTimeoutMillis;
  /** See {@link #DEFAULT_BODY_BUDGET_BYTES}. */
  final long bodyBudgetBytes;
  /** See {@link #DEFAULT_MAX_SESSIONS}. */
  final int maxSessions;
  /** See {@link #DEFAULT_HANG_TIMEOUT_MILLIS}. */
  final int hangTimeoutMillis;
  /** Front Server: whether it reads the console ({@code --console}, {@code --no-console}). */
  final Console.Mode console;
  /** Absolute path of {@code --log-file}; null: the log goes to stderr. */
  final Path logFile;
  /** {@code --log-level}. */
  final ServerLog.Level logLevel;
  /** {@code --version} was given: print the version and exit; the other fields are defaults. */
  final boolean versionRequested;

  /**
   * {@code --threads}: how the Data Server serves its connections (DESIGN.md §4 says when each
   * fits). {@code count} is the number of event loops or pool threads, 0 for on-demand.
   */
  public record ThreadPolicy(Kind kind, int count) {
    public enum Kind {
      /** A few selector threads serve every connection (the default). */
      EVENT_LOOP,
      /** One thread per connection, created when it connects. */
      ON_DEMAND,
      /** N threads created at start; at most N connections served at once. */
      POOL
    }

    /** The default: one event loop per available processor. */
    static ThreadPolicy defaults() {
      return new ThreadPolicy(Kind.EVENT_LOOP, Runtime.getRuntime().availableProcessors());
    }

    /** As on the command line: {@code event-loop:N}, {@code on-demand} or {@code pool:N}. */
    @Override
    public String toString() {
      switch (kind) {
        case EVENT_LOOP:
          return "event-loop:" + count;
        case POOL:
          return "pool:" + count;
        default:
          return "on-demand";
      }
    }
  }

  /** Made by {@link ServerOptions#parse}, which has checked every value. */
  ServerConfig(
      Role role, int port, InetAddress bindAddress, Path dataDir, ThreadPolicy threads,
      int maxValueBytes, int controlPort, int frontPort, long adoptDataPid, FsyncPolicy fsync,
      boolean salvage, int maxConnections, int requestTimeoutMillis, int idleTimeoutMillis,
      int poolIdleTimeoutMillis, long bodyBudgetBytes, int maxSessions, int hangTimeoutMillis,
      Console.Mode console, Path logFile, ServerLog.Level logLevel, boolean versionRequested) {
    this.role = role;
    this.port = port;
    this.bindAddress = bindAddress;
    this.dataDir = dataDir;
    this.threads = threads;
    this.maxValueBytes = maxValueBytes;
    this.controlPort = controlPort;
    this.frontPort = frontPort;
    this.adoptDataPid = adoptDataPid;
    this.fsync = fsync;
    this.salvage = salvage;
    this.maxConnections = maxConnections;
    this.requestTimeoutMillis = requestTimeoutMillis;
    this.idleTimeoutMillis = idleTimeoutMillis;
    this.poolIdleTimeoutMillis = poolIdleTimeoutMillis;
    this.bodyBudgetBytes = bodyBudgetBytes;
    this.maxSessions = maxSessions;
    this.hangTimeoutMillis = hangTimeoutMillis;
    this.console = console;
    this.logFile = logFile;
    this.logLevel = logLevel;
    this.versionRequested = versionRequested;
  }

  /**
   * The servers' version ({@code servers/pom.xml}'s, written into the resource {@code
   * version.txt} by the build), or "unknown" when the classes were not built by Maven.
   */
  public static String version() {
    try (java.io.InputStream in = ServerConfig.class.getResourceAsStream("version.txt")) {
      if (in != null) {
        String v = new String(in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8).trim();
        if (!v.isEmpty() && !v.startsWith("${")) {
          return v;
        }
      }
    } catch (java.io.IOException e) {
      // Reported as unknown below.
    }
    return "unknown";
  }

  /** The options the Front Server passes to the Data Server it launches. */
  public List<String> dataServerArgs(int controlPort, int frontPort) {
    List<String> args = sharedArgs();
    args.add("--control-port");
    args.add(Integer.toString(controlPort));
    args.add("--front-port");
    args.add(Integer.toString(frontPort));
    return args;
  }

  /**
   * The options the Data Server passes to the Front Server it relaunches: the same settings, the
   * front's client port exactly, and {@code --adopt-data} with the Data Server's pid.
   */
  public List<String> frontServerArgs(long dataPid) {
    List<String> args = sharedArgs();
    args.add("--port");
    args.add(Integer.toString(frontPort));
    args.add("--adopt-data");
    args.add(Long.toString(dataPid));
    return args;
  }

  /** The settings both processes share, as options. */
  private List<String> sharedArgs() {
    List<String> args = new ArrayList<>();
    args.add("--bind");
    args.add(bindAddress.getHostAddress());
    args.add("--data-dir");
    args.add(dataDir.toString());
    args.add("--threads");
    args.add(threads.toString());
    args.add("--max-connections");
    args.add(Integer.toString(maxConnections));
    args.add("--request-timeout-ms");
    args.add(Integer.toString(requestTimeoutMillis));
    args.add("--idle-timeout-ms");
    args.add(Integer.toString(idleTimeoutMillis));
    args.add("--pool-idle-timeout-ms");
    args.add(Integer.toString(poolIdleTimeoutMillis));
    args.add("--body-budget-bytes");
    args.add(Long.toString(bodyBudgetBytes));
    args.add("--max-sessions");
    args.add(Integer.toString(maxSessions));
    args.add("--max-value-bytes");
    args.add(Integer.toString(maxValueBytes));
    args.add("--hang-timeout-ms");
    args.add(Integer.toString(hangTimeoutMillis));
    args.add("--fsync");
    args.add(fsync.optionName());
    if (salvage) {
      args.add("--salvage");
    }
    if (logFile != null) {
      args.add("--log-file");
      args.add(logFile.toString());
    }
    args.add("--log-level");
    args.add(logLevel.optionName());
    return args;
  }

  @Override
  public String toString() {
    return "bind " + bindAddress.getHostAddress() + ", data dir " + dataDir + ", threads "
        + threads + ", max value " + maxValueBytes + " bytes, fsync "
        + fsync.optionName();
  }
}
