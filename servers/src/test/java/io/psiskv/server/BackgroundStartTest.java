package io.psiskv.server;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;
import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.psiskv.client.KvClient;
import io.psiskv.server.front.Console;
import io.psiskv.server.testkit.Poll;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The server as a service and as a background job, for real: {@code build-scripts/psiskv-server
 * &} typed into a job-control shell on a pseudo-terminal ({@code script(1)} makes one) keeps
 * serving and is stopped by {@code psiskv-stop}, where before it stopped itself and its Data
 * Server on SIGTTIN; in the foreground of that terminal it reads the console with a prompt; with
 * {@code --no-console} and stdin closed it serves until {@code psiskv-stop}.
 */
@Tag("process")
class BackgroundStartTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(60);
  private static final Pattern LISTENING =
      Pattern.compile("psiskv front server listening on [0-9.]+:(\\d+)");
  /** The repository: the tests run in servers/. */
  private static final Path ROOT = Path.of(System.getProperty("user.dir")).getParent();

  @TempDir Path dir;
  private final List<Process> started = new ArrayList<>();
  private final List<String> output = new CopyOnWriteArrayList<>();

  @AfterEach
  void killLeftovers() throws Exception {
    Path data = dir.resolve("data");
    for (String name : new String[] {PidFile.FRONT, PidFile.DATA}) {
      PidFile.livePeer(data, name).ifPresent(ProcessHandle::destroyForcibly);
    }
    for (Process p : started) {
      p.descendants().forEach(ProcessHandle::destroyForcibly);
      p.destroyForcibly();
    }
  }

  @Test
  void startedWithAmpersandOnATerminalKeepsServingAndPsiskvStopStopsIt() throws Exception {
    assumeScript();
    // As a user types it: build-scripts/psiskv-server & (on the test's classes, no build).
    String user = "PSISKV_CLASSPATH=" + quote(System.getProperty("java.class.path")) + " "
        + quote(ROOT.resolve("build-scripts/psiskv-server").toString()) + " --port 0 --data-dir "
        + quote(dir.resolve("data").toString());
    Process p = start(List.of("script", "-qec",
        "bash -c " + quote("set -m; " + user + " & wait"), "/dev/null"));
    int port = awaitListening();
    // Before the fix the console's read of the terminal stopped both JVMs here (SIGTTIN).
    try (KvClient c = KvClient.builder("127.0.0.1", port).retryTimeout(Duration.ofSeconds(10))
        .connect()) {
      c.put(1, "background".getBytes(UTF_8));
      assertThat(new String(c.get(1).orElseThrow(), UTF_8)).isEqualTo("background");
    }
    for (String name : new String[] {PidFile.FRONT, PidFile.DATA}) {
      long pid = PidFile.livePeer(dir.resolve("data"), name).orElseThrow().pid();
      assertWithMessage(name + " state").that(state(pid)).isNotEqualTo('T');
    }
    Poll.require(TIMEOUT, () -> joined().contains("console off: stdin is a terminal and this"
        + " process runs in the background"), this::joined);
    assertStoppedByPsiskvStop(p);
  }

  @Test
  void inTheForegroundOfATerminalTheConsolePromptsEditsRecallsAndTakesAnyCase() throws Exception {
    assumeScript();
    // script(1) copies its stdin's window size, and a pipe has none: give the terminal one.
    Process p = start(List.of("script", "-qec", "stty cols 100 rows 30; exec " + serverCommand(),
        "/dev/null"));
    awaitListening();
    OutputStream in = p.getOutputStream();
    type(in, "STATUS\r");
    Poll.require(TIMEOUT, () -> count("front server: pid") == 1, this::joined);
    assertThat(joined()).contains(Console.PROMPT);
    // Line editing: "staux", Backspace, "s", two Left arrows, "t": "status". Keys as a terminal
    // in keypad mode (which the line editor turns on) sends them.
    type(in, "staux\u007fs" + LEFT + LEFT + "t\r");
    Poll.require(TIMEOUT, () -> count("front server: pid") == 2, this::joined);
    // History: Up recalls the last command.
    type(in, UP + "\r");
    Poll.require(TIMEOUT, () -> count("front server: pid") == 3, this::joined);
    assertThat(joined()).doesNotContain("unknown command");
    type(in, " Exit \r");
    assertWithMessage(joined()).that(p.waitFor(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS))
        .isTrue();
    assertThat(p.exitValue()).isEqualTo(0);
    assertThat(Files.exists(dir.resolve("data").resolve(PidFile.FRONT))).isFalse();
  }

  @Test
  void noConsoleWithStdinClosedServesUntilPsiskvStop() throws Exception {
    List<String> command = new ArrayList<>(javaCommand());
    command.add("--no-console");
    Process p = start(command);
    p.getOutputStream().close(); // No terminal, and nothing to read.
    int port = awaitListening();
    Poll.require(TIMEOUT, () -> joined().contains("console off (--no-console)"), this::joined);
    try (KvClient c = KvClient.builder("127.0.0.1", port).connect()) {
      c.put(2, "service".getBytes(UTF_8));
      assertThat(c.get(2)).isPresent();
    }
    assertThat(joined()).doesNotContain("end of stdin");
    assertThat(p.isAlive()).isTrue();
    assertStoppedByPsiskvStop(p);
  }

  // --- Helpers. ---

  private static final String LEFT = "\u001bOD";
  private static final String UP = "\u001bOA";

  private static void type(OutputStream in, String keys) throws IOException {
    in.write(keys.getBytes(UTF_8));
    in.flush();
  }

  private int count(String fragment) {
    return joined().split(java.util.regex.Pattern.quote(fragment), -1).length - 1;
  }

  private static void assumeScript() {
    assumeTrue(Files.isExecutable(Path.of("/usr/bin/script")), "needs script(1) (util-linux)");
  }

  private List<String> javaCommand() {
    return new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java")
        .toString(), "-cp", System.getProperty("java.class.path"),
        FrontServer.class.getName(), "--port", "0", "--data-dir",
        dir.resolve("data").toString()));
  }

  private String serverCommand() {
    StringBuilder b = new StringBuilder();
    for (String arg : javaCommand()) {
      b.append(b.length() == 0 ? "" : " ").append(quote(arg));
    }
    return b.toString();
  }

  private static String quote(String s) {
    return "'" + s.replace("'", "'\\''") + "'";
  }

  /** Starts {@code command} with stdout and stderr gathered line by line in {@link #output}. */
  private Process start(List<String> command) throws IOException {
    ProcessBuilder b = new ProcessBuilder(command).redirectErrorStream(true);
    b.environment().put("TERM", "xterm"); // A terminal type the line editor knows.
    Process p = b.start();
    started.add(p);
    Thread pump = new Thread(() -> {
      try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(),
          UTF_8))) {
        String line;
        while ((line = r.readLine()) != null) {
          output.add(line.replace("\r", ""));
        }
      } catch (IOException e) {
        // The process is gone.
      }
    }, "background-start-output");
    pump.setDaemon(true);
    pump.start();
    return p;
  }

  private String joined() {
    return String.join("\n", output);
  }

  private int awaitListening() {
    Poll.require(TIMEOUT, () -> LISTENING.matcher(joined()).find(), this::joined);
    Matcher m = LISTENING.matcher(joined());
    assertThat(m.find()).isTrue();
    return Integer.parseInt(m.group(1));
  }

  /** A process's state letter (proc(5) field 3). */
  private static char state(long pid) throws IOException {
    String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
    return stat.charAt(stat.lastIndexOf(')') + 2);
  }

  private void assertStoppedByPsiskvStop(Process p) throws Exception {
    Optional<ProcessHandle> data = PidFile.livePeer(dir.resolve("data"), PidFile.DATA);
    ProcessBuilder stopCommand = new ProcessBuilder(
        ROOT.resolve("build-scripts/psiskv-stop").toString(), "--data-dir",
        dir.resolve("data").toString()).redirectErrorStream(true);
    // The script runs these classes, not a jar that the build has not made yet.
    stopCommand.environment().put("PSISKV_CLASSPATH", System.getProperty("java.class.path"));
    Process stop = stopCommand.start();
    String said = new String(stop.getInputStream().readAllBytes(), UTF_8);
    assertWithMessage(said).that(stop.waitFor(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS))
        .isTrue();
    assertWithMessage(said + "\n" + joined()).that(stop.exitValue()).isEqualTo(0);
    assertThat(said).contains("psiskv-stop: stopped");
    assertWithMessage(joined()).that(p.waitFor(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS))
        .isTrue();
    assertThat(data.map(ProcessHandle::isAlive).orElse(false)).isFalse();
  }
}
