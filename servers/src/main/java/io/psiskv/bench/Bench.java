package io.psiskv.bench;

import static io.psiskv.bench.BenchFormat.duration;
import static io.psiskv.bench.BenchFormat.micros;
import static io.psiskv.bench.BenchFormat.ops;
import static io.psiskv.bench.BenchFormat.seconds;
import static io.psiskv.bench.BenchFormat.workload;

import io.psiskv.bench.BenchOptions.UsageException;
import io.psiskv.server.control.JavaCommand;
import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.stream.Stream;

/**
 * The project's benchmark ({@code build-scripts/psiskv-bench}): starts the servers, drives them with
 * the load generators, and prints one Markdown report on stdout (progress goes to stderr).
 *
 * <p><b>Load phase.</b> For each server configuration (psiskv as started by default; with {@code
 * --compare} also psiskv {@code --fsync no}, Redis without persistence, Redis with {@code
 * appendfsync always}, memcached): a fresh process in a temporary directory, every key written
 * once by the C load generator's preload, then for each workload (read percent) and each
 * client-thread count one run of each client that speaks to it: the C load generator
 * (c-test-app/bench: libpsiskv, hiredis, libmemcached) and with {@code --java} {@link JavaLoad}
 * (KvClient, Jedis). Each run is its own process with N threads and one blocking connection each;
 * it prints one result line ({@link LoadResult}) with throughput, latency percentiles, and the CPU
 * time of itself and of the server process over its measured interval.
 *
 * <p><b>Memory phase.</b> For psiskv (and with {@code --compare} Redis and memcached): a fresh
 * process, VmRSS before, {@code --memory-keys} keys loaded, VmRSS after; (after - before) / keys.
 *
 * <p><b>Hostile phase.</b> {@link Hostile}.
 *
 * <p>Every process started is stopped at the end, on an error and on Ctrl-C (a shutdown hook), and
 * the temporary directory is deleted.
 */
public final class Bench {
  /** A load run may take this long beyond its warm-up and measured seconds before it is killed. */
  private static final long LOAD_TIMEOUT_SLACK_MILLIS = 120_000;
  /** A preload may take this long per key (a durable write on a slow disk) plus the slack. */
  private static final long PRELOAD_MICROS_PER_KEY = 2_000;
  /** The memory phase lets a server settle this long before each RSS reading. */
  private static final long SETTLE_MILLIS = 1_000;
  static final String DURABLE_LABEL = "psiskv";
  /** On Ctrl-C or SIGTERM, how long the stop waits for the run to wind down its processes. */
  private static final long STOP_WAIT_MILLIS = 60_000;

  private final BenchOptions options;
  private final Path root;
  private final BenchReport report;
  private final String commandLine;
  private final Path jar;
  private final Path cTarget;
  private final Path work;
  /** Processes and servers to stop if the run ends early (Ctrl-C, an error). */
  private final Set<Object> live = ConcurrentHashMap.newKeySet();
  /** Set by the shutdown hook (Ctrl-C, SIGTERM). */
  private volatile boolean stopping;
  /** Set by main when the run is over and it exits on its own. */
  private volatile boolean finished;

  /** A server configuration: its label and how to make a fresh instance in a directory. */
  record ServerSpec(String label, BenchServer.Kind kind, Function<Path, BenchServer> factory) {}

  /** One measured point. {@code result} is null when the run failed; {@code failure} says why. */
  record Row(String server, BenchServer.Kind kind, BenchClient client, int readPercent, int threads,
      LoadResult result, String failure) {}

  /** One memory measurement. */
  record MemoryRow(String server, int keys, int valueBytes, long before, long after,
      double keysPerSecond) {}

  /** The run cannot go on (a missing program, a server that does not start): one line, exit 1. */
  static final class BenchException extends Exception {
    private static final long serialVersionUID = 1L;

    BenchException(String message) {
      super(message);
    }
  }

  private Bench(BenchOptions options, Path root, String commandLine) throws IOException {
    this.options = options;
    this.root = root;
    this.report = new BenchReport(options, root);
    this.commandLine = commandLine;
    this.jar = root.resolve("servers/target/psiskv-server.jar");
    this.cTarget = root.resolve("c-test-app/target");
    this.work = Files.createTempDirectory("psiskv-bench");
  }

  public static void main(String[] args) {
    BenchOptions options;
    try {
      options = BenchOptions.parse(List.of(args));
    } catch (UsageException e) {
      System.err.println("psiskv-bench: " + e.getMessage() + " (try --help)");
      System.exit(2);
      return;
    }
    if (options.help) {
      System.out.println(BenchOptions.USAGE);
      return;
    }
    if (Boolean.getBoolean("psiskv.bench.checkOptions")) {
      return; // The script checks the options before it builds or installs anything.
    }
    int code;
    Bench bench = null;
    try {
      bench = new Bench(options, root(), BenchFormat.commandLine(args));
      Bench b = bench;
      Thread main = Thread.currentThread();
      // Ctrl-C or SIGTERM: the run stops where it is (every wait is interruptible, and nothing
      // new starts once stopping is set), main stops what it started, and the hook waits for it.
      Thread hook = new Thread(() -> {
        synchronized (b) {
          if (b.finished) {
            return; // main's own System.exit: everything is stopped already.
          }
          b.stopping = true;
        }
        main.interrupt();
        try {
          main.join(STOP_WAIT_MILLIS);
        } catch (InterruptedException e) {
          // Stop what is left below.
        }
        b.stopEverything();
      }, "psiskv-bench-stop");
      Runtime.getRuntime().addShutdownHook(hook);
      bench.run();
      code = 0;
    } catch (BenchException e) {
      System.err.println("psiskv-bench: " + e.getMessage());
      code = 1;
    } catch (IOException | UncheckedIOException e) {
      System.err.println("psiskv-bench: " + e);
      code = 1;
    } catch (InterruptedException e) {
      code = 130;
    } finally {
      if (bench != null) {
        bench.stopEverything();
      }
    }
    if (bench != null) {
      synchronized (bench) {
        if (bench.stopping) {
          System.err.println("psiskv-bench: stopped; every server it started is stopped");
          return; // The JVM is shutting down already: System.exit would wait for the hook.
        }
        bench.finished = true;
      }
    }
    System.exit(code);
  }

  /** Throws once a stop (Ctrl-C, SIGTERM) has begun: nothing new starts after that. */
  private void checkStopping() throws InterruptedException {
    if (stopping || Thread.currentThread().isInterrupted()) {
      throw new InterruptedException("stopping");
    }
  }

  /** The repository: -Dpsiskv.bench.root (the script sets it), else three levels above the jar. */
  private static Path root() throws BenchException {
    String property = System.getProperty("psiskv.bench.root");
    if (property != null) {
      return Path.of(property).toAbsolutePath().normalize();
    }
    try {
      Path code = Path.of(Bench.class.getProtectionDomain().getCodeSource().getLocation().toURI());
      return code.getParent().getParent().getParent().toAbsolutePath().normalize();
    } catch (URISyntaxException | NullPointerException e) {
      throw new BenchException("cannot tell where the repository is; set -Dpsiskv.bench.root");
    }
  }

  private void run() throws BenchException, IOException, InterruptedException {
    checkPrograms();
    String started = ZonedDateTime.now().truncatedTo(ChronoUnit.SECONDS)
        .format(DateTimeFormatter.ISO_OFFSET_DATE_TIME);
    String loadAtStart = BenchReport.loadAverage();
    List<Row> rows = new ArrayList<>();
    List<MemoryRow> memory = new ArrayList<>();
    List<Hostile.Report> hostile = new ArrayList<>();
    Map<String, List<String>> commands = new LinkedHashMap<>();
    BenchException failure = null;
    InterruptedException interrupted = null;
    try {
      if (options.load) {
        runLoad(rows, commands);
      }
      if (options.memory) {
        runMemory(memory, commands);
      }
      if (options.hostile) {
        commands.putIfAbsent(DURABLE_LABEL, new PsiskvServer(DURABLE_LABEL, jar,
            options.serverArgs, work.resolve("hostile")).command());
        hostile.addAll(new Hostile(jar, options.serverArgs, work, live).run());
      }
    } catch (BenchException e) {
      failure = e;
    } catch (InterruptedException e) {
      interrupted = e; // Ctrl-C: report what was measured so far.
      Thread.interrupted(); // The report's file I/O would fail on an interrupted thread.
    }
    StringBuilder out = new StringBuilder();
    out.append("# psiskv-bench\n\n");
    if (interrupted != null || failure != null) {
      out.append("**Incomplete run** (").append(interrupted != null ? "stopped"
          : failure.getMessage().lines().findFirst().orElse("failed")).append(").\n\n");
    }
    out.append("Command: `").append(commandLine).append("`\n\n");
    out.append("Run: ").append(started).append("; ").append(report.machine())
        .append("; load average ").append(loadAtStart).append(" at the start, ")
        .append(BenchReport.loadAverage()).append(" at the end.\n");
    if (!rows.isEmpty()) {
      out.append('\n').append(report.load(rows));
      out.append(report.plot(rows));
    }
    if (!memory.isEmpty()) {
      out.append('\n').append(report.memory(memory));
    }
    if (!hostile.isEmpty()) {
      out.append('\n').append(Hostile.render(hostile));
    }
    if (!commands.isEmpty()) {
      out.append("\nServers (DIR: a fresh temporary directory per instance):\n\n");
      commands.forEach((label, cmd) -> {
        List<String> shown = new ArrayList<>(cmd);
        if (shown.get(0).equals(JavaCommand.javaBinary())) {
          shown.set(0, "java");
        }
        out.append("- ").append(label).append(": `")
            .append(BenchFormat.shell(shown).replace(work.toString(), "DIR")).append("`\n");
      });
    }
    System.out.print(out);
    System.out.flush();
    if (failure != null) {
      throw failure;
    }
    if (interrupted != null) {
      throw interrupted;
    }
  }

  // ---- load phase ------------------------------------------------------------------------------

  private List<ServerSpec> loadServers() {
    List<ServerSpec> specs = new ArrayList<>();
    specs.add(new ServerSpec(DURABLE_LABEL, BenchServer.Kind.PSISKV,
        dir -> new PsiskvServer(DURABLE_LABEL, jar, options.serverArgs, dir)));
    if (options.compare) {
      List<String> fsyncNo = new ArrayList<>(options.serverArgs);
      fsyncNo.addAll(List.of("--fsync", "no"));
      specs.add(new ServerSpec("psiskv --fsync no", BenchServer.Kind.PSISKV,
          dir -> new PsiskvServer("psiskv --fsync no", jar, fsyncNo, dir)));
      specs.add(new ServerSpec("redis", BenchServer.Kind.REDIS, PeerServer::redis));
      specs.add(new ServerSpec("redis AOF always", BenchServer.Kind.REDIS, PeerServer::redisAof));
      specs.add(new ServerSpec("memcached", BenchServer.Kind.MEMCACHED, PeerServer::memcached));
    }
    return specs;
  }

  private List<BenchClient> clientsFor(BenchServer.Kind kind) {
    List<BenchClient> clients = new ArrayList<>();
    for (BenchClient c : BenchClient.values()) {
      if (c.kind == kind && (!c.java || options.java)) {
        clients.add(c);
      }
    }
    return clients;
  }

  private void runLoad(List<Row> rows, Map<String, List<String>> commands)
      throws BenchException, IOException, InterruptedException {
    List<ServerSpec> specs = loadServers();
    int points = 0;
    for (ServerSpec spec : specs) {
      points += clientsFor(spec.kind()).size() * options.threads.size()
          * options.readPercents.size();
    }
    double seconds = points * (options.seconds + options.warmupSeconds + 1) + specs.size() * 5;
    progress(String.format(Locale.ROOT, "%d points on %d server configurations, about %s",
        points, specs.size(), duration(seconds)));
    int done = 0;
    for (ServerSpec spec : specs) {
      try (Running running = start(spec, "load")) {
        BenchServer server = running.server;
        commands.putIfAbsent(spec.label(), server.command());
        preload(server, options.keys);
        for (int readPercent : options.readPercents) {
          for (int threads : options.threads) {
            for (BenchClient client : clientsFor(spec.kind())) {
              done++;
              String what = String.format(Locale.ROOT, "[%d/%d] %s, %s, %d thread%s, %s",
                  done, points, spec.label(), client.label, threads, threads == 1 ? "" : "s",
                  workload(readPercent));
              Row row;
              try {
                LoadResult r = runProcess(loadCommand(client, server, threads, readPercent),
                    loadTimeoutMillis());
                row = new Row(spec.label(), spec.kind(), client, readPercent, threads, r, null);
                progress(what + String.format(Locale.ROOT, ": %s ops/s, p99 %s µs%s",
                    ops(r.opsPerSecond()), micros(r.p99()), r.errors() > 0
                        ? ", " + r.errors() + " errors" : ""));
              } catch (IOException e) {
                row = new Row(spec.label(), spec.kind(), client, readPercent, threads, null,
                    e.getMessage());
                progress(what + ": FAILED: " + e.getMessage());
              }
              rows.add(row);
            }
          }
        }
      }
    }
  }

  private long loadTimeoutMillis() {
    return (long) ((options.seconds + options.warmupSeconds) * 1000) + LOAD_TIMEOUT_SLACK_MILLIS;
  }

  private List<String> loadCommand(BenchClient client, BenchServer server, int threads,
      int readPercent) throws IOException {
    List<String> cmd = new ArrayList<>();
    if (client.java) {
      cmd.addAll(List.of(JavaCommand.javaBinary(), "-cp", javaLoadClassPath(),
          JavaLoad.class.getName(), "--client", client.program));
    } else {
      cmd.addAll(List.of(cTarget.resolve(client.program).toString(), "--no-preload"));
    }
    cmd.addAll(List.of("--host", "127.0.0.1", "--port", Integer.toString(server.port()),
        "--threads", Integer.toString(threads), "--read-percent", Integer.toString(readPercent),
        "--keys", Integer.toString(options.keys), "--value-bytes",
        Integer.toString(options.valueBytes), "--seconds", seconds(options.seconds),
        "--warmup-seconds", seconds(options.warmupSeconds), "--server-pid",
        Long.toString(server.measuredPid())));
    return cmd;
  }

  private String javaLoadClassPath() throws IOException {
    Path file = root.resolve("servers/target/bench-classpath.txt");
    String extra = Files.exists(file) ? Files.readString(file).trim() : "";
    return extra.isEmpty() ? jar.toString() : jar + File.pathSeparator + extra;
  }

  /** Writes every key once with the C load generator (its progress line shows on stderr). */
  private LoadResult preload(BenchServer server, int keys) throws BenchException,
      InterruptedException {
    BenchClient loader = BenchClient.preloaderFor(server.kind);
    List<String> cmd = List.of(cTarget.resolve(loader.program).toString(), "--preload-only",
        "--host", "127.0.0.1", "--port", Integer.toString(server.port()), "--keys",
        Integer.toString(keys), "--value-bytes", Integer.toString(options.valueBytes),
        "--preload-threads", Integer.toString(options.preloadThreads));
    try {
      return runProcess(cmd, keys * PRELOAD_MICROS_PER_KEY / 1000 + LOAD_TIMEOUT_SLACK_MILLIS);
    } catch (IOException e) {
      throw new BenchException("preloading " + server.label + " failed: " + e.getMessage()
          + "\n" + server.logTail());
    }
  }

  /** A started server: closing it stops the process and deletes its directory. */
  private final class Running implements AutoCloseable {
    final BenchServer server;

    Running(BenchServer server) {
      this.server = server;
    }

    @Override
    public void close() {
      server.close();
      live.remove(server);
      deleteTree(server.workDir);
    }
  }

  private Running start(ServerSpec spec, String phase) throws BenchException,
      InterruptedException {
    checkStopping();
    Path dir = work.resolve(phase + "-" + spec.label().replaceAll("[^A-Za-z0-9]+", "-"));
    BenchServer server = spec.factory().apply(dir);
    live.add(server);
    try {
      server.start();
    } catch (IOException e) {
      server.close();
      live.remove(server);
      throw new BenchException("cannot start " + spec.label() + ": " + e.getMessage());
    }
    progress(String.format(Locale.ROOT, "%s started (pid %d, port %d)", spec.label(),
        server.measuredPid(), server.port()));
    return new Running(server);
  }

  /**
   * Runs a load generator: stdout is read for its result line, stderr is the user's (progress,
   * errors). A run that outlasts its deadline is killed.
   */
  private LoadResult runProcess(List<String> cmd, long timeoutMillis) throws IOException,
      InterruptedException {
    checkStopping();
    Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT)
        .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
    live.add(p);
    try {
      List<String> lines = new ArrayList<>();
      Thread reader = new Thread(() -> {
        try (BufferedReader out = new BufferedReader(
            new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
          for (String line; (line = out.readLine()) != null; ) {
            synchronized (lines) {
              lines.add(line);
            }
          }
        } catch (IOException e) {
          // The process was killed.
        }
      }, "load-stdout");
      reader.start();
      if (!p.waitFor(timeoutMillis, TimeUnit.MILLISECONDS)) {
        p.destroyForcibly();
        p.waitFor();
        throw new IOException(new File(cmd.get(0)).getName() + " did not finish within "
            + timeoutMillis / 1000 + " s");
      }
      reader.join();
      if (p.exitValue() != 0) {
        throw new IOException(new File(cmd.get(0)).getName() + " exited with " + p.exitValue());
      }
      synchronized (lines) {
        for (int i = lines.size() - 1; i >= 0; i--) {
          LoadResult r = LoadResult.parse(lines.get(i));
          if (r != null) {
            return r;
          }
        }
      }
      throw new IOException(new File(cmd.get(0)).getName() + " printed no result line");
    } finally {
      if (p.isAlive()) {
        p.destroyForcibly();
      }
      live.remove(p);
    }
  }

  // ---- memory phase ----------------------------------------------------------------------------

  private void runMemory(List<MemoryRow> rows, Map<String, List<String>> commands)
      throws BenchException, IOException, InterruptedException {
    List<ServerSpec> specs = new ArrayList<>();
    specs.add(new ServerSpec(DURABLE_LABEL, BenchServer.Kind.PSISKV,
        dir -> new PsiskvServer(DURABLE_LABEL, jar, options.serverArgs, dir)));
    if (options.compare) {
      specs.add(new ServerSpec("redis", BenchServer.Kind.REDIS, PeerServer::redis));
      specs.add(new ServerSpec("memcached", BenchServer.Kind.MEMCACHED, PeerServer::memcached));
    }
    for (ServerSpec spec : specs) {
      progress("memory: " + spec.label() + ", " + ops(options.memoryKeys) + " keys of "
          + options.valueBytes + " B");
      try (Running running = start(spec, "memory")) {
        BenchServer server = running.server;
        commands.putIfAbsent(spec.label(), server.command());
        Thread.sleep(SETTLE_MILLIS); // Let start-up allocation finish before the first reading.
        long before = Proc.rssBytes(server.measuredPid());
        LoadResult r = preload(server, options.memoryKeys);
        Thread.sleep(SETTLE_MILLIS);
        long after = Proc.rssBytes(server.measuredPid());
        rows.add(new MemoryRow(spec.label(), options.memoryKeys, options.valueBytes, before,
            after, r.number("preload_keys_per_sec")));
      }
    }
  }

  // ---- environment -----------------------------------------------------------------------------

  private void checkPrograms() throws BenchException {
    if (!Files.isRegularFile(jar)) {
      throw new BenchException(jar + " is missing: run build-scripts/psiskv-bench (it builds"
          + " it) or mvn -B -ntp -DskipTests package");
    }
    if (options.load) {
      // Found out now, not after the run: a plot file that cannot be written.
      Path plot = report.plotFile();
      try {
        Files.createDirectories(plot.getParent());
        Files.delete(Files.createTempFile(plot.getParent(), ".psiskv-bench", ".tmp"));
        if (Files.exists(plot) && (Files.isDirectory(plot) || !Files.isWritable(plot))) {
          throw new IOException("not a writable file");
        }
      } catch (IOException e) {
        throw new BenchException("cannot write the plot to " + plot + ": " + e);
      }
    }
    if (!options.load && !options.memory) {
      return;
    }
    if (options.java && options.compare
        && !Files.isRegularFile(root.resolve("servers/target/bench-classpath.txt"))) {
      throw new BenchException("servers/target/bench-classpath.txt (Jedis's classpath) is"
          + " missing: run mvn -B -ntp -DskipTests package");
    }
    List<BenchClient> needed = new ArrayList<>(List.of(BenchClient.LIBPSISKV));
    if (options.compare) {
      needed.addAll(List.of(BenchClient.HIREDIS, BenchClient.LIBMEMCACHED));
      for (String server : List.of("redis-server", "memcached")) {
        if (!onPath(server)) {
          throw new BenchException(server + " is not installed: run"
              + " build-scripts/install-bench-peers (build-scripts/psiskv-bench --compare does)");
        }
      }
    }
    for (BenchClient c : needed) {
      if (!Files.isExecutable(cTarget.resolve(c.program))) {
        throw new BenchException(cTarget.resolve(c.program) + " is missing: run make -C"
            + " c-test-app bench" + (c == BenchClient.LIBPSISKV ? ""
            : " after build-scripts/install-bench-peers"));
      }
    }
  }

  private static boolean onPath(String program) {
    String path = System.getenv().getOrDefault("PATH", "");
    for (String dir : path.split(File.pathSeparator)) {
      if (!dir.isEmpty() && Files.isExecutable(Path.of(dir, program))) {
        return true;
      }
    }
    return false;
  }

  /** Stops whatever is still running and deletes the temporary directory (idempotent). */
  private void stopEverything() {
    for (Object o : List.copyOf(live)) {
      if (o instanceof Process p) {
        p.destroyForcibly();
      } else if (o instanceof AutoCloseable c) {
        try {
          c.close();
        } catch (Exception e) {
          // Best effort.
        }
      }
      live.remove(o);
    }
    deleteTree(work);
  }

  static void deleteTree(Path dir) {
    if (dir == null || !Files.exists(dir)) {
      return;
    }
    try (Stream<Path> paths = Files.walk(dir)) {
      paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException | UncheckedIOException e) {
      // Best effort: a temporary directory.
    }
  }

  // ---- formatting ------------------------------------------------------------------------------

  static void progress(String line) {
    System.err.println("psiskv-bench: " + line);
  }
}
