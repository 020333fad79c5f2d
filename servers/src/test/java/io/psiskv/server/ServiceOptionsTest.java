package io.psiskv.server;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;
import static java.nio.charset.StandardCharsets.UTF_8;

import io.psiskv.client.KvClient;
import io.psiskv.server.testkit.ServerFixture;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The options a service needs, on real processes: {@code --version}, {@code --log-file} and
 * {@code --log-level} (both servers' lines in one file, each with a timestamp and a level), and
 * start failures that say their cause in words (no exception class names).
 */
@Tag("process")
class ServiceOptionsTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(60);
  /** {@code <iso time> <LEVEL> <role> <pid> <message>}. */
  private static final Pattern LOG_LINE = Pattern.compile(
      "^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?Z (ERROR|WARN |INFO |DEBUG) (front|data)"
          + " \\d+ \\S.*$");
  /** How a Java exception's class shows when printed: a dotted name ending in Exception. */
  private static final Pattern EXCEPTION_NAME =
      Pattern.compile("\\b[a-z]+(\\.\\w+)+(Exception|Error)\\b");

  @TempDir Path dir;

  @Test
  void versionPrintsTheVersionAndExitsZero() throws Exception {
    Result r = run("--version");
    assertThat(r.exit).isEqualTo(0);
    assertThat(r.stdout).isEqualTo("psiskv " + ServerConfig.version() + "\n");
    assertThat(r.stdout).doesNotContain("unknown");
  }

  @Test
  void logFileGetsBothServersLinesAtTheChosenLevel() throws Exception {
    Path log = dir.resolve("psiskv-server.log");
    ServerFixture pair = ServerFixture.builder().manualStart()
        .args("--log-file", log.toString(), "--log-level", "debug").build();
    startAndStop(pair);
    List<String> lines = Files.readAllLines(log);
    for (String line : lines) {
      assertWithMessage("log line").that(line).matches(LOG_LINE.pattern());
    }
    String all = String.join("\n", lines);
    assertThat(all).contains(" INFO  front ");
    assertThat(all).contains(" INFO  data ");
    assertThat(all).contains("listening on");
    assertThat(all).contains("stopped");
    // Nothing of the log went to stderr (the fixture's server.log has its stdout only).
    assertThat(pair.log()).doesNotContain(" INFO  front ");
  }

  @Test
  void warnLevelDropsTheInfoLines() throws Exception {
    Path log = dir.resolve("quiet.log");
    ServerFixture pair = ServerFixture.builder().manualStart()
        .args("--log-file", log.toString(), "--log-level", "warn").build();
    startAndStop(pair);
    String all = Files.readString(log);
    assertThat(all).doesNotContain(" INFO ");
    assertThat(all).doesNotContain("listening on");
  }

  @Test
  void aBindToAnAddressOfAnotherHostSaysSo() throws Exception {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this host.
    Result r = run("--bind", "192.0.2.1", "--data-dir", dir.resolve("data").toString(),
        "--log-level", "warn");
    assertThat(r.exit).isEqualTo(1);
    assertThat(r.stderr).contains("start failed: address 192.0.2.1 is not available");
    // At warn level the failure is there, as an error, and the info lines are not.
    assertThat(r.stderr).contains(" ERROR front ");
    assertThat(r.stderr).doesNotContain(" INFO ");
    assertThat(EXCEPTION_NAME.matcher(r.stderr).find()).isFalse();
    assertThat(r.stderr).doesNotContain("Exception");
  }

  @Test
  void anUnwritableLogFileSaysWhy() throws Exception {
    Path file = dir.resolve("no-such-dir").resolve("x.log");
    Result r = run("--log-file", file.toString(), "--data-dir", dir.resolve("data").toString());
    assertThat(r.exit).isEqualTo(1);
    assertThat(r.stderr.strip()).isEqualTo("psiskv-server: cannot open log file " + file + ": "
        + file + ": no such file or directory");
  }

  // --- Helpers. ---

  private static void startAndStop(ServerFixture pair) throws Exception {
    pair.start();
    try {
      try (KvClient c = KvClient.builder(pair.host(), pair.port()).connect()) {
        c.put(1, "x".getBytes(UTF_8));
      }
      assertThat(pair.stop()).isEqualTo(0);
    } catch (Throwable t) {
      pair.killBoth();
      throw t;
    }
  }

  private static final class Result {
    final int exit;
    final String stdout;
    final String stderr;

    Result(int exit, String stdout, String stderr) {
      this.exit = exit;
      this.stdout = stdout;
      this.stderr = stderr;
    }
  }

  /** Runs the Front Server with {@code args} to its end, stdin closed. */
  private Result run(String... args) throws IOException, InterruptedException {
    List<String> command = new ArrayList<>(List.of(
        Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
        System.getProperty("java.class.path"), FrontServer.class.getName()));
    command.addAll(List.of(args));
    Path out = dir.resolve("stdout");
    Path err = dir.resolve("stderr");
    Process p = new ProcessBuilder(command).redirectOutput(out.toFile())
        .redirectError(err.toFile()).start();
    p.getOutputStream().close();
    if (!p.waitFor(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
      p.descendants().forEach(ProcessHandle::destroyForcibly);
      p.destroyForcibly();
      throw new AssertionError("did not exit: " + Files.readString(err));
    }
    return new Result(p.exitValue(), Files.readString(out), Files.readString(err));
  }
}
