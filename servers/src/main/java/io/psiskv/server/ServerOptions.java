package io.psiskv.server;

import io.psiskv.server.backup.FsyncPolicy;
import io.psiskv.server.control.Supervisor;
import io.psiskv.server.front.Console;

// The defaults and limits the options are checked against, and the Role and ThreadPolicy types.
import static io.psiskv.server.ServerConfig.*;

import io.psiskv.protocol.Protocol;
import java.io.PrintStream;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;

/**
 * The command line of both server processes: {@link #parse} reads the options once at start into
 * a {@link ServerConfig} and checks them there; a bad option is a {@link ConfigException} whose
 * message says what is wrong, and {@link #parseOrExit} turns it into a one-line error and exit
 * code {@value ServerConfig#EXIT_BAD_OPTION}. {@link #printUsage} is {@code --help}. The Front
 * Server passes its settings on to the Data Server it starts ({@link ServerConfig#dataServerArgs}),
 * so both processes parse the same options with this class.
 */
final class ServerOptions {
  /** The options that take a value ({@code --name V} or {@code --name=V}). */
  private static final java.util.Set<String> OPTIONS_WITH_VALUES = java.util.Set.of("--port",
      "--bind", "--data-dir", "--threads", "--max-connections", "--request-timeout-ms",
      "--idle-timeout-ms", "--pool-idle-timeout-ms", "--body-budget-bytes", "--max-value-bytes",
      "--max-sessions", "--fsync", "--control-port", "--front-port", "--adopt-data",
      "--hang-timeout-ms", "--log-file", "--log-level");

  /** Thrown by {@link #parse} for a bad or unknown option; the message is for the user. */
  static final class ConfigException extends Exception {
    private static final long serialVersionUID = 1L;

    ConfigException(String message) {
      super(message);
    }
  }

  private ServerOptions() {}

  /** Parses and checks the options; {@code null} means {@code --help} was asked for. */
  static ServerConfig parse(Role role, String... args) throws ConfigException {
    int port = DEFAULT_PORT;
    String bind = DEFAULT_BIND;
    String dataDir = DEFAULT_DATA_DIR;
    ThreadPolicy threads = ThreadPolicy.defaults();
    int maxConnections = DEFAULT_MAX_CONNECTIONS;
    int requestTimeoutMillis = DEFAULT_REQUEST_TIMEOUT_MILLIS;
    int idleTimeoutMillis = DEFAULT_IDLE_TIMEOUT_MILLIS;
    int poolIdleTimeoutMillis = DEFAULT_POOL_IDLE_TIMEOUT_MILLIS;
    long bodyBudgetBytes = DEFAULT_BODY_BUDGET_BYTES;
    int maxSessions = DEFAULT_MAX_SESSIONS;
    int hangTimeoutMillis = DEFAULT_HANG_TIMEOUT_MILLIS;
    int maxValueBytes = Protocol.DEFAULT_MAX_VALUE_BYTES;
    int controlPort = -1;
    int frontPort = -1;
    long adoptDataPid = 0;
    FsyncPolicy fsync = DEFAULT_FSYNC;
    boolean salvage = false;
    Console.Mode console = Console.Mode.AUTO;
    String logFile = null;
    ServerLog.Level logLevel = DEFAULT_LOG_LEVEL;
    boolean version = false;
    for (int i = 0; i < args.length; i++) {
      String arg = args[i];
      if (arg.equals("--help") || arg.equals("-h")) {
        return null;
      }
      if (arg.equals("--version")) {
        version = true; // The options before it are still checked; those after it are not.
        break;
      }
      String name = arg;
      String value = null;
      int eq = arg.indexOf('=');
      if (arg.startsWith("--") && eq > 0) {
        name = arg.substring(0, eq);
        value = arg.substring(eq + 1);
      }
      if (value == null && OPTIONS_WITH_VALUES.contains(name)) {
        value = next(args, ++i, name);
      }
      switch (name) {
        case "--port":
          port = parseInt(name, value, 0, 65535);
          break;
        case "--bind":
          bind = value;
          break;
        case "--data-dir":
          dataDir = value;
          break;
        case "--threads":
          threads = parseThreads(value);
          break;
        case "--max-connections":
          maxConnections = parseInt(name, value, 1, Integer.MAX_VALUE);
          break;
        case "--request-timeout-ms":
          requestTimeoutMillis = parseInt(name, value, 1, Integer.MAX_VALUE);
          break;
        case "--idle-timeout-ms":
          idleTimeoutMillis = parseInt(name, value, 1, Integer.MAX_VALUE);
          break;
        case "--pool-idle-timeout-ms":
          poolIdleTimeoutMillis = parseInt(name, value, 1, Integer.MAX_VALUE);
          break;
        case "--body-budget-bytes":
          bodyBudgetBytes = parseLong(name, value, 1, Long.MAX_VALUE);
          break;
        case "--max-sessions":
          maxSessions = parseInt(name, value, 1, Integer.MAX_VALUE);
          break;
        case "--hang-timeout-ms":
          hangTimeoutMillis = parseInt(name, value, (int) Supervisor.HUNG_AFTER_MILLIS,
              Integer.MAX_VALUE);
          break;
        case "--max-value-bytes":
          maxValueBytes = parseInt(name, value, 0, Protocol.MAX_VALUE_BYTES_LIMIT);
          break;
        case "--fsync":
          fsync = parseFsync(value);
          break;
        case "--salvage":
          salvage = true;
          break;
        case "--console":
          console = Console.Mode.ON;
          break;
        case "--no-console":
          console = Console.Mode.OFF;
          break;
        case "--log-file":
          if (value.isEmpty()) {
            throw new ConfigException("--log-file must not be empty");
          }
          logFile = value;
          break;
        case "--log-level":
          logLevel = ServerLog.Level.parse(value);
          if (logLevel == null) {
            throw new ConfigException(
                "--log-level must be error, warn, info or debug, not '" + value + "'");
          }
          break;
        case "--control-port":
          if (role != Role.DATA) {
            throw new ConfigException(
                "--control-port is for the Data Server, which the Front Server starts itself");
          }
          controlPort = parseInt(name, value, 1, 65535);
          break;
        case "--front-port":
          if (role != Role.DATA) {
            throw new ConfigException(
                "--front-port is for the Data Server, which the Front Server starts itself");
          }
          frontPort = parseInt(name, value, 1, 65535);
          break;
        case "--adopt-data":
          if (role != Role.FRONT) {
            throw new ConfigException("--adopt-data is for the Front Server");
          }
          adoptDataPid = parseInt(name, value, 1, Integer.MAX_VALUE);
          break;
        default:
          throw new ConfigException("unknown option '" + arg + "' (try --help)");
      }
    }
    if (!version && role == Role.DATA && controlPort < 0) {
      throw new ConfigException("--control-port is required: the Data Server is started by the"
          + " Front Server (run io.psiskv.server.FrontServer)");
    }
    if (!version && role == Role.DATA && frontPort < 0) {
      throw new ConfigException("--front-port is required: the Data Server is started by the"
          + " Front Server (run io.psiskv.server.FrontServer)");
    }
    if (adoptDataPid != 0 && port == 0) {
      throw new ConfigException("--adopt-data needs the exact --port to bind again, not 0");
    }
    return new ServerConfig(role, port, parseBind(bind), parseDir(dataDir), threads,
        maxValueBytes, controlPort, frontPort, adoptDataPid, fsync, salvage, maxConnections,
        requestTimeoutMillis, idleTimeoutMillis, poolIdleTimeoutMillis, bodyBudgetBytes,
        maxSessions, hangTimeoutMillis, console,
        logFile == null ? null : parsePath("--log-file", logFile), logLevel, version);
  }

  /**
   * Parses the options for {@code main}: prints the usage and exits 0 on {@code --help}, prints
   * the error and exits {@value #EXIT_BAD_OPTION} on a bad option.
   */
  static ServerConfig parseOrExit(Role role, String[] args) {
    try {
      ServerConfig config = parse(role, args);
      if (config == null) {
        printUsage(role, System.out);
        System.exit(EXIT_OK);
      }
      if (config.versionRequested) {
        System.out.println("psiskv " + version());
        System.exit(EXIT_OK);
      }
      return config;
    } catch (ConfigException e) {
      System.err.println("psiskv-server: " + e.getMessage());
      System.exit(EXIT_BAD_OPTION);
      throw new AssertionError("unreachable");
    }
  }

  static void printUsage(Role role, PrintStream out) {
    out.println("usage: psiskv-server [options]");
    out.println("  --port P               client port of the Front Server (default " + DEFAULT_PORT
        + "; if taken, the next free one of " + PORT_SEARCH_ATTEMPTS + "; 0 = any free port)");
    out.println("  --bind ADDR            IPv4 address to listen on (default " + DEFAULT_BIND
        + "; 0.0.0.0 exposes the store, which has no authentication, to the network)");
    out.println("  --data-dir DIR         data directory (default ./" + DEFAULT_DATA_DIR
        + ", created if missing)");
    out.println("  --threads POLICY       event-loop[:N] (N selector threads serve every"
        + " connection; default, N = " + ThreadPolicy.defaults().count() + " here), on-demand"
        + " (a thread per connection) or pool:N (N threads, at most N clients served at once)");
    out.println("  --max-connections N    data connections open at once (default "
        + DEFAULT_MAX_CONNECTIONS + "); one more is answered UNAVAILABLE");
    out.println("  --request-timeout-ms T deadline of a whole request and of taking its answer"
        + " (default " + DEFAULT_REQUEST_TIMEOUT_MILLIS + ")");
    out.println("  --idle-timeout-ms T    a data connection without a session is closed after T"
        + " ms without a request (default " + DEFAULT_IDLE_TIMEOUT_MILLIS + ")");
    out.println("  --pool-idle-timeout-ms T  pool:N only: a connection idle for T ms is closed to"
        + " free its thread; its client reconnects (default " + DEFAULT_POOL_IDLE_TIMEOUT_MILLIS
        + ")");
    out.println("  --body-budget-bytes N  PUT value bytes accumulated at once, server-wide"
        + " (default " + DEFAULT_BODY_BUDGET_BYTES + ")");
    out.println("  --max-sessions N       client sessions kept at once (default "
        + DEFAULT_MAX_SESSIONS + "); a new one replaces the one idle longest, or is answered"
        + " UNAVAILABLE");
    out.println("  --hang-timeout-ms T    a silent server that is still running (a long garbage"
        + " collection) is killed and relaunched by its peer after T ms of silence (default "
        + DEFAULT_HANG_TIMEOUT_MILLIS + "; a stopped or idle one after about 2 s)");
    out.println("  --max-value-bytes N    largest value accepted (default "
        + Protocol.DEFAULT_MAX_VALUE_BYTES + ", at most " + Protocol.MAX_VALUE_BYTES_LIMIT + ")");
    out.println("  --fsync MODE           always (default: a write is on disk before it is"
        + " acknowledged), everysec (synced every second) or no (left to the OS)");
    out.println("  --salvage              start even if the backup file is damaged before its end:"
        + " keep what precedes the damage (the damaged file is copied aside)");
    out.println("  --log-file F           append the log to file F instead of stderr (both"
        + " servers write to it)");
    out.println("  --log-level L          error, warn, info (default) or debug");
    if (role == Role.FRONT) {
      out.println("  --console              read console commands from stdin even when it is a"
          + " terminal of a background job");
      out.println("  --no-console           never read stdin (as a service; stop with SIGTERM or"
          + " build-scripts/psiskv-stop). Default: read stdin unless it is a terminal this"
          + " process is not in the foreground of (started with &)");
    }
    if (role == Role.DATA) {
      out.println("  --control-port P       the Front Server's control port (set by the Front"
          + " Server)");
      out.println("  --front-port P         the Front Server's client port (set by the Front"
          + " Server)");
    } else {
      out.println("  --adopt-data PID       (internal) started by the Data Server PID after the"
          + " Front Server died: adopt it, bind exactly --port, no console");
    }
    out.println("  --version              print the version and exit");
    out.println("  --help                 this text");
    out.println("console commands (any case): status, help, quit or exit");
  }

  private static String next(String[] args, int i, String name) throws ConfigException {
    if (i >= args.length) {
      throw new ConfigException(name + " needs a value (try --help)");
    }
    return args[i];
  }

  private static int parseInt(String name, String value, int min, int max)
      throws ConfigException {
    return (int) parseLong(name, value, min, max);
  }

  private static long parseLong(String name, String value, long min, long max)
      throws ConfigException {
    try {
      long n = Long.parseLong(value.trim());
      if (n >= min && n <= max) {
        return n;
      }
    } catch (NumberFormatException e) {
      // Reported below with the same message as an out-of-range number.
    }
    throw new ConfigException(
        name + " must be an integer from " + min + " to " + max + ", not '" + value + "'");
  }

  private static ThreadPolicy parseThreads(String value) throws ConfigException {
    if (value.equals("on-demand")) {
      return new ThreadPolicy(ThreadPolicy.Kind.ON_DEMAND, 0);
    }
    if (value.equals("event-loop")) {
      return ThreadPolicy.defaults();
    }
    if (value.startsWith("event-loop:")) {
      return new ThreadPolicy(ThreadPolicy.Kind.EVENT_LOOP, parseInt("--threads event-loop:N",
          value.substring("event-loop:".length()), 1, MAX_EVENT_LOOPS));
    }
    if (value.startsWith("pool:")) {
      return new ThreadPolicy(ThreadPolicy.Kind.POOL, parseInt("--threads pool:N",
          value.substring("pool:".length()), 1, MAX_POOL_THREADS));
    }
    throw new ConfigException(
        "--threads must be event-loop[:N], on-demand or pool:N, not '" + value + "'");
  }

  private static FsyncPolicy parseFsync(String value) throws ConfigException {
    try {
      return FsyncPolicy.parse(value);
    } catch (IllegalArgumentException e) {
      throw new ConfigException("--fsync must be always, everysec or no, not '" + value + "'");
    }
  }

  private static InetAddress parseBind(String bind) throws ConfigException {
    try {
      InetAddress address = InetAddress.getByName(bind);
      if (!(address instanceof Inet4Address)) {
        throw new ConfigException("--bind must be an IPv4 address (the protocol carries IPv4"
            + " addresses only), not '" + bind + "'");
      }
      return address;
    } catch (UnknownHostException e) {
      throw new ConfigException("--bind: unknown host '" + bind + "'");
    }
  }

  private static Path parseDir(String dir) throws ConfigException {
    if (dir.isEmpty()) {
      throw new ConfigException("--data-dir must not be empty");
    }
    return parsePath("--data-dir", dir);
  }

  private static Path parsePath(String name, String path) throws ConfigException {
    try {
      return Path.of(path).toAbsolutePath().normalize();
    } catch (InvalidPathException e) {
      throw new ConfigException(name + ": bad path '" + path + "': " + e.getReason());
    }
  }
}
