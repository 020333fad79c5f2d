package io.psiskv.cli;

import io.psiskv.client.KvClient;
import io.psiskv.client.KvException;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Status;
import io.psiskv.server.ServerConfig;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ScopeType;
import picocli.CommandLine.Spec;
import picocli.CommandLine;

/**
 * {@code psiskv-cli}: get, put, delete and status from the shell, on {@link KvClient}. The
 * subcommands are {@link PutCommand}, {@link GetCommand}, {@link DelCommand} and {@link
 * StatusCommand}; this class owns what they share: the connection options, the exit codes and
 * the one-line error report.
 *
 * <p><b>Exit codes</b> (also in {@code --help} and the README):
 *
 * <ul>
 *   <li>{@value #EXIT_OK}: done, or the key was found;
 *   <li>{@value #EXIT_NO}: no such key ({@code get}, {@code del}), or the key exists ({@code put
 *       --if-absent});
 *   <li>{@value #EXIT_USAGE}: the command line is wrong (an unknown option, a missing argument, a
 *       key that is not an unsigned 32-bit number, a port out of range): decided before anything
 *       is read or sent;
 *   <li>{@value #EXIT_ERROR}: any other error: the server cannot be reached, it refused the
 *       request (a value too large, a server error), a file or stdin cannot be read. One line on
 *       stderr says what, never a Java exception or a stack trace.
 * </ul>
 */
@Command(name = "psiskv-cli", mixinStandardHelpOptions = true,
    versionProvider = PsiskvCli.Version.class,
    subcommands = {PutCommand.class, GetCommand.class, DelCommand.class, StatusCommand.class},
    synopsisSubcommandLabel = "COMMAND",
    description = {"Reads and writes a psiskv server from the shell.",
        "Keys are unsigned 32-bit numbers, decimal (42) or hex (0x2a).", ""},
    commandListHeading = "%nCommands:%n",
    exitCodeListHeading = "%nExit codes:%n",
    exitCodeList = {
        "0:done, or the key was found",
        "1:no such key (get, del), or the key exists (put --if-absent)",
        PsiskvCli.EXIT_2_LINE,
        PsiskvCli.EXIT_3_LINE},
    footerHeading = "%nExamples:%n",
    footer = {"  psiskv-cli put 42 hello", "  psiskv-cli get 42",
        "  psiskv-cli put --file photo.jpg 0x10", "  psiskv-cli get --raw 0x10 > copy.jpg",
        "  psiskv-cli --port 10000 status --json"})
public final class PsiskvCli implements Runnable {
  static final int EXIT_OK = 0;
  static final int EXIT_NO = 1;
  static final int EXIT_USAGE = 2;
  static final int EXIT_ERROR = 3;
  /** The lines of {@code --help} for codes 2 and 3, which every command shares. */
  static final String EXIT_2_LINE = "2:usage: a bad option, argument or key";
  static final String EXIT_3_LINE =
      "3:any other error (server unreachable, request refused, file unreadable)";

  /** The defaults of {@code --host} and {@code --port}: the Front Server of the quick start. */
  static final String DEFAULT_HOST = "127.0.0.1";

  @Spec CommandSpec spec;

  @Option(names = {"-H", "--host"}, scope = ScopeType.INHERIT, paramLabel = "HOST",
      description = "Front Server address (default: ${DEFAULT-VALUE})",
      defaultValue = DEFAULT_HOST)
  String host;

  @Option(names = {"-p", "--port"}, scope = ScopeType.INHERIT, paramLabel = "PORT",
      description = "Front Server port, 1-65535 (default: ${DEFAULT-VALUE})",
      defaultValue = "" + Protocol.DEFAULT_FRONT_PORT)
  int port;

  /** The streams of this run: the process's, or a test's. */
  private final InputStream stdin;
  private final PrintStream stdout;

  PsiskvCli(InputStream stdin, PrintStream stdout) {
    this.stdin = stdin;
    this.stdout = stdout;
  }

  /** Without a command: the usage, and exit code 2. */
  @Override
  public void run() {
    throw new CommandLine.ParameterException(spec.commandLine(), "a command is required");
  }

  public static void main(String[] args) {
    int code = execute(args, System.in, System.out, System.err);
    System.out.flush();
    System.exit(code);
  }

  /**
   * Runs one command line with the given streams and returns its exit code; never throws and
   * never exits. {@code stdout} carries only the command's output (a value, the status), so that
   * {@code get --raw} can be redirected to a file; everything else goes to {@code stderr}.
   */
  static int execute(String[] args, InputStream stdin, PrintStream stdout, PrintStream stderr) {
    CommandLine cl = new CommandLine(new PsiskvCli(stdin, stdout));
    PrintWriter err = new PrintWriter(stderr, true, StandardCharsets.UTF_8);
    cl.setOut(new PrintWriter(stdout, true, StandardCharsets.UTF_8));
    cl.setErr(err);
    cl.setParameterExceptionHandler((ex, a) -> {
      CommandLine c = ex.getCommandLine();
      c.getErr().println("psiskv-cli: " + ex.getMessage());
      c.getErr().println("Try '" + c.getCommandSpec().qualifiedName() + " --help'.");
      return EXIT_USAGE;
    });
    cl.setExecutionExceptionHandler((ex, c, parsed) -> {
      c.getErr().println("psiskv-cli: " + describe(ex));
      return EXIT_ERROR;
    });
    return cl.execute(args);
  }

  /** Validates the connection options; usage errors, like a malformed key. */
  void checkConnectionOptions(CommandLine cl) {
    if (port < 1 || port > 65535) {
      throw new CommandLine.ParameterException(cl,
          "--port " + port + " is not a port number (1-65535)");
    }
    if (host.isBlank()) {
      throw new CommandLine.ParameterException(cl, "--host is empty");
    }
  }

  /** Connects to the Front Server of {@code --host} and {@code --port}. */
  KvClient connect() {
    try {
      return KvClient.connect(host, port);
    } catch (KvException e) {
      throw new Failure("cannot connect to psiskv at " + host + ":" + port + ": "
          + reason(e), e);
    }
  }

  InputStream stdin() {
    return stdin;
  }

  PrintStream stdout() {
    return stdout;
  }

  /** An error whose message is the whole line the user sees (exit code 3). */
  static final class Failure extends RuntimeException {
    private static final long serialVersionUID = 1L;

    Failure(String message) {
      super(message);
    }

    Failure(String message, Throwable cause) {
      super(message, cause);
    }
  }

  /** What went wrong, in words: our own messages as they are, the JDK's without class names. */
  static String describe(Throwable e) {
    if (e instanceof Failure) {
      return e.getMessage();
    }
    if (e instanceof KvException) {
      return reason((KvException) e);
    }
    if (e instanceof UncheckedIOException || e instanceof IOException) {
      return "input/output error: " + rootMessage(e);
    }
    return "internal error: " + rootMessage(e);
  }

  /**
   * A failed call's reason. A server's answer (TOO_LARGE, SERVER_ERROR, ...) is said by its
   * status; a connection that could not be made or broke by the deepest cause's own message
   * ("Connection refused"), which the JDK's exceptions carry without their class name.
   */
  static String reason(KvException e) {
    Status s = e.status();
    if (s != Status.IO_ERROR) {
      return s + ": " + s.message();
    }
    Throwable root = root(e);
    if (root == e) {
      return e.getMessage();
    }
    String m = root.getMessage();
    if (root instanceof java.net.UnknownHostException
        || root instanceof java.nio.channels.UnresolvedAddressException) {
      return "unknown host"; // The line names the host already.
    }
    if (root instanceof java.net.SocketTimeoutException) {
      return "timed out" + (m == null ? "" : " (" + m + ")");
    }
    return m == null || m.isBlank() ? "connection failed" : m;
  }

  /** The last cause in {@code e}'s chain. */
  private static Throwable root(Throwable e) {
    Throwable root = e;
    while (root.getCause() != null && root.getCause() != root) {
      root = root.getCause();
    }
    return root;
  }

  private static String rootMessage(Throwable e) {
    String m = root(e).getMessage();
    return m == null || m.isBlank() ? "unexpected failure" : m;
  }

  /** {@code --version}: the build's version, and the protocol version it speaks. */
  static final class Version implements CommandLine.IVersionProvider {
    @Override
    public String[] getVersion() {
      return new String[] {"psiskv-cli " + ServerConfig.version() + " (protocol " + Protocol.VERSION + ")"};
    }
  }
}
