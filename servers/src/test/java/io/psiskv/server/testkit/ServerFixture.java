package io.psiskv.server.testkit;

import static com.google.common.truth.Truth.assertWithMessage;
import static java.nio.charset.StandardCharsets.UTF_8;

import io.psiskv.server.FrontServer;
import io.psiskv.server.PidFile;
import io.psiskv.server.control.Supervisor;
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
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
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
 * <p>The pair serves with the thread policy the test chooses ({@link Builder#threads}), else
 * with the one {@value #POLICY_PROPERTY} names, else with the server's default.
 *
 * <p>Each start gets a run directory {@code target/server-fixture/<Class>-<method>-<n>/} holding
 * {@code data/} and {@code server.log} (both processes' stderr and the front's stdout, prefixed
 * {@code [stdout]}); nothing goes to the console. A Front Server relaunched by the Data Server
 * logs to {@code data/front.log} instead; {@link #log()} returns both. A failing test prints the
 * log's path. A JVM shutdown hook kills both processes should the test JVM itself be stopped.
 *
 * <p><b>Relaunches.</b> The servers relaunch each other, so pids change during a test: {@link
 * #frontPid()} and {@link #dataPid()} read the pid files, and every process the fixture has seen
 * (the started front, the printed data server, every pid read from a pid file, and their
 * descendants) is remembered. {@link #killBoth()} first SIGSTOPs all of them, so that none can
 * relaunch another while they are being killed, then SIGKILLs them: no test leaves an orphan.
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
  /** Every server process seen since the first start (handles check the start time on kill). */
  private final Set<ProcessHandle> seen = ConcurrentHashMap.newKeySet();
  /**
   * Whether the pid files name our processes: only once our pair has started. A pair refused on
   * another pair's data directory must not take that pair's processes for its own.
   */
  private volatile boolean ownsPidFiles;
  private Thread killHook;

  /**
   * System property naming the {@code --threads} policy of every pair whose test does not choose
   * one: the build runs the server-pair tests once per policy (servers/pom.xml).
   */
  public static final String POLICY_PROPERTY = "psiskv.test.threads";

  private ServerFixture(Builder b) {
    String policy = System.getProperty(POLICY_PROPERTY, "");
    if (!policy.isEmpty() && !b.serverArgs.contains("--threads")) {
      b.threads(policy);
    }
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

    /** {@code --threads}: {@code event-loop[:N]}, {@code on-demand} or {@code pool:N}. */
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
      String policy = System.getProperty(POLICY_PROPERTY, "");
      runDir = target.resolve(name + (policy.isEmpty() ? "" : "-" + policy.replace(':', '-'))
          + "-" + RUNS.incrementAndGet());
      // A run directory of an earlier build (no clean in between) must not lend its log lines or
      // its data to this run: awaitLog would see old events.
      deleteTree(runDir);
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
    ownsPidFiles = false;
    ProcessBuilder builder = new ProcessBuilder(command)
        .redirectError(ProcessBuilder.Redirect.appendTo(logFile.toFile()))
        .redirectOutput(ProcessBuilder.Redirect.PIPE)
        .redirectInput(ProcessBuilder.Redirect.PIPE);
    front = builder.start();
    seen.add(front.toHandle());
    installKillHook();
    stdin = new OutputStreamWriter(front.getOutputStream(), UTF_8);
    CompletableFuture<Void> ready = new CompletableFuture<>();
    Process process = front;
    Thread pump = new Thread(() -> pumpStdout(process, ready), "fixture-stdout-" + name);
    pump.setDaemon(true);
    pump.start();
    try {
      ready.get(START_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
      ownsPidFiles = true;
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
   * Orderly stop. While the started Front Server runs: writes {@code quit} on its console, waits
   * for it to exit, and asserts exit code 0 and that the Data Server process is gone. After it
   * was relaunched (no console, not our child): SIGTERM to the current front and asserts that
   * every server process disappears and the pid files are removed.
   */
  public synchronized int stop() {
    if (front.isAlive()) {
      console("quit");
      int code = awaitExit(STOP_TIMEOUT);
      assertWithMessage("front server exit code; log %s", logFile).that(code).isEqualTo(0);
      assertDataServerGone(STOP_TIMEOUT);
      return code;
    }
    ProcessHandle current = frontProcess();
    current.destroy(); // SIGTERM
    assertAllGone(STOP_TIMEOUT);
    assertWithMessage("pid files left; log %s", logFile)
        .that(Files.exists(dataDir.resolve(PidFile.FRONT))
            || Files.exists(dataDir.resolve(PidFile.DATA))).isFalse();
    return 0;
  }

  /** Waits for the started Front Server to exit and returns its exit code; kills all on timeout. */
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

  /**
   * Asserts that the Data Server disappears within {@code timeout}: the current one and every
   * server process seen so far other than the started Front Server (relaunched ones included).
   */
  public void assertDataServerGone(Duration timeout) {
    currentData();
    Poll.require(timeout, () -> liveProcesses().stream().allMatch(p -> p.pid() == front.pid()),
        () -> "server processes still alive: " + liveProcesses() + "; log " + logFile);
  }

  /** Asserts that every server process the fixture has seen disappears within {@code timeout}. */
  public void assertAllGone(Duration timeout) {
    Poll.require(timeout, () -> liveProcesses().isEmpty(),
        () -> "server processes still alive: " + liveProcesses() + "; log " + logFile);
  }

  /**
   * Whether a process has ended: not alive, or a zombie (a dead orphan waits for init to reap
   * it, and {@link ProcessHandle#isAlive} still says true for it).
   */
  public static boolean isGone(ProcessHandle p) {
    return Supervisor.isGone(p);
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

  /**
   * Kills every server process at once, relaunched ones included (no orderly stop): SIGSTOP all
   * (so that none relaunches another meanwhile; repeated until no new one appears), then SIGKILL
   * all, then waits until they are gone.
   */
  public void killBoth() {
    Set<ProcessHandle> victims = new HashSet<>();
    for (int round = 0; round < 20; round++) {
      List<ProcessHandle> fresh = new ArrayList<>();
      for (ProcessHandle p : liveProcesses()) {
        if (victims.add(p)) {
          fresh.add(p);
        }
      }
      if (fresh.isEmpty()) {
        break;
      }
      signal("-STOP", fresh);
    }
    for (ProcessHandle p : victims) {
      p.destroyForcibly();
    }
    if (front != null) {
      try {
        front.waitFor(STOP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
    Poll.until(STOP_TIMEOUT, () -> victims.stream().allMatch(ServerFixture::isGone));
  }

  /** Sends a signal with kill(1) (Java has no SIGSTOP); best effort. */
  private static void signal(String signal, List<ProcessHandle> targets) {
    List<String> command = new ArrayList<>(List.of("kill", signal));
    for (ProcessHandle p : targets) {
      command.add(Long.toString(p.pid()));
    }
    try {
      Process k = new ProcessBuilder(command).redirectErrorStream(true)
          .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
      k.waitFor(STOP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
    } catch (IOException e) {
      // kill(1) missing: the SIGKILL below still ends them, with a small relaunch race.
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /**
   * The live server processes: every one seen so far, those the pid files name now, and all
   * their descendants (a relaunched peer is a child of its relauncher).
   */
  public Set<ProcessHandle> liveProcesses() {
    currentFront();
    currentData();
    Set<ProcessHandle> all = new HashSet<>();
    for (ProcessHandle p : seen) {
      if (!isGone(p)) {
        all.add(p);
        p.descendants().filter(d -> !isGone(d)).forEach(all::add);
      }
    }
    seen.addAll(all);
    return all;
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

  /**
   * The current Front Server's pid: the one {@code front.pid} names (a relaunched front writes
   * it), else the started one's.
   */
  public long frontPid() {
    return currentFront().map(ProcessHandle::pid).orElse(front.pid());
  }

  /** The current Data Server's pid: the one {@code data.pid} names, else the printed one's. */
  public long dataPid() {
    return currentData().map(ProcessHandle::pid).orElse(data.pid());
  }

  /** The current Front Server (see {@link #frontPid()}); its handle, for signals. */
  public ProcessHandle frontProcess() {
    return currentFront().orElse(front.toHandle());
  }

  /** The current Data Server (see {@link #dataPid()}); its handle, for signals. */
  public ProcessHandle dataProcess() {
    return currentData().orElse(data);
  }

  /** The live process a pid file names, remembered for the cleanup. */
  private Optional<ProcessHandle> fromPidFile(String name) {
    if (dataDir == null || !ownsPidFiles) {
      return Optional.empty();
    }
    try {
      String text = Files.readString(dataDir.resolve(name), UTF_8).trim();
      Optional<ProcessHandle> p = ProcessHandle.of(Long.parseLong(text));
      p.ifPresent(seen::add);
      return p;
    } catch (IOException | NumberFormatException e) {
      return Optional.empty(); // No file (stopped, not yet written) or mid-rename.
    }
  }

  private Optional<ProcessHandle> currentFront() {
    Optional<ProcessHandle> p = fromPidFile(PidFile.FRONT);
    if (p.isPresent() && front != null && p.get().pid() == front.pid()) {
      return Optional.of(front.toHandle()); // Our child: the same handle as process().
    }
    return p;
  }

  private Optional<ProcessHandle> currentData() {
    return fromPidFile(PidFile.DATA);
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

  /**
   * The whole log so far: {@code server.log}, then the log of Front Servers relaunched by the
   * Data Server ({@code data/front.log}), if any.
   */
  public String log() {
    try {
      String main = Files.exists(logFile) ? Files.readString(logFile, UTF_8) : "";
      Path relaunched = dataDir == null ? null : dataDir.resolve("front.log");
      if (relaunched != null && Files.exists(relaunched)) {
        main += "[fixture] --- " + relaunched + " ---\n" + Files.readString(relaunched, UTF_8);
      }
      return main;
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
          handle.ifPresent(seen::add);
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
    } else if (front != null) {
      // Relaunched front (no console): the orderly stop is SIGTERM.
      currentFront().filter(p -> !isGone(p)).ifPresent(ProcessHandle::destroy);
      Poll.until(STOP_TIMEOUT, () -> liveProcesses().isEmpty());
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
