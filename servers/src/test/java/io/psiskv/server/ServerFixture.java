package io.psiskv.server;

import static com.google.common.truth.Truth.assertWithMessage;
import static java.nio.charset.StandardCharsets.UTF_8;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.UncheckedIOException;
import java.io.Writer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * A real psiskv server pair for tests: starts the Front Server as an OS process (java from
 * {@code java.home}, the test JVM's classpath, {@code --port 0}, a fresh data directory), which
 * starts the Data Server; parses the listening line; stops or kills both however the test ends.
 *
 * <p>Use with {@code @RegisterExtension}: on a {@code static} field one pair serves the whole test
 * class, on an instance field each test gets its own. Options go through {@link #builder()}:
 *
 * <pre>
 *   &#64;RegisterExtension
 *   static final ServerFixture server = ServerFixture.builder().threads("pool:4").build();
 * </pre>
 *
 * <p>Each start gets a run directory {@code target/server-fixture/<Class>-<method>-<n>/} holding
 * {@code data/} and {@code server.log} (both processes' stderr and the front's stdout, prefixed
 * {@code [stdout]}); nothing goes to the console. A failing test prints the log's path. A JVM
 * shutdown hook kills both processes should the test JVM itself be stopped.
 */
public final class ServerFixture
    implements BeforeAllCallback, AfterAllCallback, BeforeEachCallback, AfterEachCallback {
  public static final Duration START_TIMEOUT = Duration.ofSeconds(60);
  public static final Duration STOP_TIMEOUT = Duration.ofSeconds(30);

  private static final Pattern LISTENING =
      Pattern.compile("^psiskv front server listening on (\\S+):(\\d+)$");
  private static final Pattern DATA_LINE = Pattern.compile("^data server pid (\\d+) port (\\d+)$");
  private static final AtomicInteger RUNS = new AtomicInteger();

  private final List<String> serverArgs;
  private final List<String> jvmArgs;
  private final List<String> commandPrefix;
  private final boolean autoStart;
  private final int requestedPort;

  private boolean classScoped;
  private String name = "manual";
  private Path runDir;
  private Path dataDir;
  private Path logFile;
  private Process front;
  private Writer stdin;
  private volatile ProcessHandle data;
  private String host;
  private int port;
  private int dataPort;
  private final List<String> stdoutLines = new CopyOnWriteArrayList<>();
  private Thread killHook;

  private ServerFixture(Builder b) {
    this.serverArgs = List.copyOf(b.serverArgs);
    this.jvmArgs = List.copyOf(b.jvmArgs);
    this.commandPrefix = List.copyOf(b.commandPrefix);
    this.autoStart = b.autoStart;
    this.requestedPort = b.port;
    this.dataDir = b.dataDir;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** Options of the server pair; every setter returns the builder. */
  public static final class Builder {
    private final List<String> serverArgs = new ArrayList<>();
    private final List<String> jvmArgs = new ArrayList<>();
    private final List<String> commandPrefix = new ArrayList<>();
    private boolean autoStart = true;
    private int port;
    private Path dataDir;

    /** {@code --threads}: {@code on-demand} or {@code pool:N}. */
    public Builder threads(String policy) {
      return args("--threads", policy);
    }

    /** {@code --max-value-bytes}. */
    public Builder maxValueBytes(long bytes) {
      return args("--max-value-bytes", Long.toString(bytes));
    }

    /** {@code --port}; 0 (the default) lets the OS pick a free port. */
    public Builder port(int port) {
      this.port = port;
      return this;
    }

    /** A data directory of the test's choosing instead of a fresh one. */
    public Builder dataDir(Path dir) {
      this.dataDir = dir;
      return this;
    }

    /** Any other server options. */
    public Builder args(String... args) {
      serverArgs.addAll(Arrays.asList(args));
      return this;
    }

    /** Options of the Front Server's JVM. */
    public Builder jvmArgs(String... args) {
      jvmArgs.addAll(Arrays.asList(args));
      return this;
    }

    /**
     * A program that runs before java and execs it (same pid), e.g. to reset a signal
     * disposition; the java command line follows as its arguments.
     */
    public Builder commandPrefix(String... prefix) {
      commandPrefix.addAll(Arrays.asList(prefix));
      return this;
    }

    /** The test calls {@link #start()} itself (the extension still cleans up). */
    public Builder manualStart() {
      autoStart = false;
      return this;
    }

    public ServerFixture build() {
      return new ServerFixture(this);
    }
  }

  // --- JUnit callbacks. ---

  @Override
  public void beforeAll(ExtensionContext context) throws Exception {
    classScoped = true;
    name = context.getRequiredTestClass().getSimpleName();
    if (autoStart) {
      start();
    }
  }

  @Override
  public void afterAll(ExtensionContext context) {
    if (classScoped) {
      teardown(context);
    }
  }

  @Override
  public void beforeEach(ExtensionContext context) throws Exception {
    if (!classScoped) {
      name = context.getRequiredTestClass().getSimpleName() + "-"
          + context.getRequiredTestMethod().getName();
      if (autoStart) {
        start();
      }
    }
  }

  @Override
  public void afterEach(ExtensionContext context) {
    if (!classScoped) {
      teardown(context);
    } else if (context.getExecutionException().isPresent()) {
      System.err.println("ServerFixture: server log of the failed test: " + logFile);
    }
  }

  // --- Control. ---

  /** Starts the pair (again, after a stop: same data directory, log appended). */
  public synchronized void start() throws IOException {
    if (front != null && front.isAlive()) {
      throw new IllegalStateException("already running");
    }
    if (runDir == null) {
      Path target = Path.of(System.getProperty("user.dir"), "target", "server-fixture");
      runDir = target.resolve(name + "-" + RUNS.incrementAndGet());
      Files.createDirectories(runDir);
      logFile = runDir.resolve("server.log");
      if (dataDir == null) {
        dataDir = runDir.resolve("data");
      }
    }
    List<String> command = new ArrayList<>(commandPrefix);
    command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    command.addAll(jvmArgs);
    command.add("-cp");
    command.add(System.getProperty("java.class.path"));
    command.add(FrontServer.class.getName());
    command.add("--port");
    command.add(Integer.toString(requestedPort));
    command.add("--data-dir");
    command.add(dataDir.toString());
    command.addAll(serverArgs);
    appendLog("[fixture] starting: " + String.join(" ", command));

    stdoutLines.clear();
    data = null;
    ProcessBuilder builder = new ProcessBuilder(command)
        .redirectError(ProcessBuilder.Redirect.appendTo(logFile.toFile()))
        .redirectOutput(ProcessBuilder.Redirect.PIPE)
        .redirectInput(ProcessBuilder.Redirect.PIPE);
    front = builder.start();
    installKillHook();
    stdin = new OutputStreamWriter(front.getOutputStream(), UTF_8);
    CompletableFuture<Void> ready = new CompletableFuture<>();
    Process process = front;
    Thread pump = new Thread(() -> pumpStdout(process, ready), "fixture-stdout-" + name);
    pump.setDaemon(true);
    pump.start();
    try {
      ready.get(START_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
    } catch (ExecutionException | TimeoutException e) {
      killBoth();
      throw new IOException("server pair did not start (" + e.getMessage() + "); log "
          + logFile + ":\n" + tail(40), e);
    } catch (InterruptedException e) {
      killBoth();
      Thread.currentThread().interrupt();
      throw new IOException("interrupted while starting", e);
    }
  }

  /**
   * Orderly stop through the console: writes {@code quit}, waits for the Front Server to exit,
   * and asserts exit code 0 and that the Data Server process is gone.
   */
  public synchronized int stop() {
    console("quit");
    int code = awaitExit(STOP_TIMEOUT);
    assertWithMessage("front server exit code; log %s", logFile).that(code).isEqualTo(0);
    assertDataServerGone(STOP_TIMEOUT);
    return code;
  }

  /** Waits for the Front Server to exit and returns its exit code; kills both on timeout. */
  public int awaitExit(Duration timeout) {
    Process p = front;
    try {
      if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
        killBoth();
        throw new AssertionError("front server did not exit within " + timeout + "; log "
            + logFile);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AssertionError("interrupted", e);
    }
    return p.exitValue();
  }

  /** Asserts that the Data Server process disappears within {@code timeout}. */
  public void assertDataServerGone(Duration timeout) {
    ProcessHandle d = data;
    if (d != null) {
      Poll.require(timeout, () -> !d.isAlive(),
          () -> "data server pid " + d.pid() + " still alive; log " + logFile);
    }
  }

  /** Writes one line to the Front Server's console (stdin). */
  public void console(String line) {
    try {
      stdin.write(line + "\n");
      stdin.flush();
    } catch (IOException e) {
      throw new UncheckedIOException("console closed", e);
    }
  }

  /** Closes the Front Server's stdin (end of file on its console). */
  public void closeStdin() throws IOException {
    stdin.close();
  }

  /** Kills both processes at once (no orderly stop). */
  public void killBoth() {
    if (front != null) {
      front.destroyForcibly();
    }
    if (data != null) {
      data.destroyForcibly();
    }
    try {
      if (front != null) {
        front.waitFor(STOP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    if (data != null) {
      Poll.until(STOP_TIMEOUT, () -> !data.isAlive());
    }
  }

  // --- What tests read. ---

  /** The address clients use for the Front Server. */
  public String host() {
    return host;
  }

  /** The Front Server's client port. */
  public int port() {
    return port;
  }

  /** The Data Server's client port (as printed by the Front Server). */
  public int dataPort() {
    return dataPort;
  }

  public Path dataDir() {
    return dataDir;
  }

  public Path logFile() {
    return logFile;
  }

  public long frontPid() {
    return front.pid();
  }

  public long dataPid() {
    return data.pid();
  }

  public ProcessHandle frontProcess() {
    return front.toHandle();
  }

  public ProcessHandle dataProcess() {
    return data;
  }

  /** The Front Server's process, e.g. for its exit value. */
  public Process process() {
    return front;
  }

  public boolean isRunning() {
    return front != null && front.isAlive();
  }

  /** Lines the Front Server printed on stdout since the last start. */
  public List<String> stdoutLines() {
    return List.copyOf(stdoutLines);
  }

  /** The whole log file so far. */
  public String log() {
    try {
      return Files.exists(logFile) ? Files.readString(logFile, UTF_8) : "";
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Waits until the log contains {@code text}; fails at the timeout. */
  public void awaitLog(String text, Duration timeout) {
    Poll.require(timeout, () -> log().contains(text),
        () -> "log " + logFile + " never contained '" + text + "'");
  }

  // --- Internals. ---

  private void pumpStdout(Process process, CompletableFuture<Void> ready) {
    try (BufferedReader reader =
        new BufferedReader(new InputStreamReader(process.getInputStream(), UTF_8))) {
      String line;
      while ((line = reader.readLine()) != null) {
        stdoutLines.add(line);
        appendLog("[stdout] " + line);
        Matcher d = DATA_LINE.matcher(line);
        if (d.matches()) {
          Optional<ProcessHandle> handle = ProcessHandle.of(Long.parseLong(d.group(1)));
          data = handle.orElse(null);
          dataPort = Integer.parseInt(d.group(2));
        }
        Matcher m = LISTENING.matcher(line);
        if (m.matches()) {
          String bound = m.group(1);
          host = bound.equals("0.0.0.0") ? "127.0.0.1" : bound;
          port = Integer.parseInt(m.group(2));
          if (data == null) {
            ready.completeExceptionally(new IOException("listening line before the data line"));
          } else {
            ready.complete(null);
          }
        }
      }
      ready.completeExceptionally(
          new IOException("front server closed stdout before listening (exit code "
              + waitExitCode(process) + ")"));
    } catch (IOException e) {
      ready.completeExceptionally(e);
    }
  }

  private static String waitExitCode(Process p) {
    try {
      return p.waitFor(5, TimeUnit.SECONDS) ? Integer.toString(p.exitValue()) : "still running";
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return "unknown";
    }
  }

  private synchronized void teardown(ExtensionContext context) {
    boolean failed = context.getExecutionException().isPresent();
    if (front != null && front.isAlive()) {
      try {
        console("quit");
        front.waitFor(STOP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
      } catch (RuntimeException e) {
        // stdin closed by the test: fall through to the kill.
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
    killBoth();
    if (killHook != null) {
      try {
        Runtime.getRuntime().removeShutdownHook(killHook);
      } catch (IllegalStateException e) {
        // The JVM is shutting down; the hook runs anyway.
      }
      killHook = null;
    }
    if (failed) {
      System.err.println("ServerFixture: server log of the failed test: " + logFile);
    } else if (runDir != null && dataDir.startsWith(runDir)) {
      deleteTree(dataDir);
    }
  }

  private void installKillHook() {
    if (killHook == null) {
      killHook = new Thread(this::killBoth, "fixture-kill-" + name);
      Runtime.getRuntime().addShutdownHook(killHook);
    }
  }

  private void appendLog(String line) {
    try {
      Files.writeString(logFile, line + "\n", UTF_8, StandardOpenOption.CREATE,
          StandardOpenOption.APPEND);
    } catch (IOException e) {
      // The log is a diagnostic aid; a failure to write it must not fail the test.
    }
  }

  private String tail(int lines) {
    String[] all = log().split("\n");
    return String.join("\n", Arrays.asList(all).subList(Math.max(0, all.length - lines),
        all.length));
  }

  private static void deleteTree(Path dir) {
    if (!Files.exists(dir)) {
      return;
    }
    try (Stream<Path> paths = Files.walk(dir)) {
      paths.sorted(Comparator.reverseOrder()).forEach(p -> {
        try {
          Files.delete(p);
        } catch (IOException e) {
          // Leftovers under target/ are harmless.
        }
      });
    } catch (IOException e) {
      // Same.
    }
  }
}
