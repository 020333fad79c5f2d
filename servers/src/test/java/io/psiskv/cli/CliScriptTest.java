package io.psiskv.cli;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;
import static java.nio.charset.StandardCharsets.UTF_8;

import io.psiskv.server.testkit.ServerFixture;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The real {@code build-scripts/psiskv-cli} as a user runs it: a process, its jar built by this
 * module's package phase, against a real server pair. Binary bytes through stdin and stdout, the
 * exit codes seen by the shell, and a refused connection's one line.
 */
@Tag("process")
class CliScriptTest {
  private static final long PROCESS_TIMEOUT_SECONDS = 60;

  @RegisterExtension static final ServerFixture server = ServerFixture.builder().build();

  private static Path script;

  @BeforeAll
  static void findScript() {
    script = Path.of(System.getProperty("user.dir")).getParent()
        .resolve("build-scripts/psiskv-cli");
    assertThat(Files.isExecutable(script)).isTrue();
  }

  @AfterAll
  static void stopsCleanly() {
    server.stop();
  }

  record Run(int code, byte[] stdout, String stderr) {}

  private static Run run(byte[] stdin, String... args) throws Exception {
    List<String> command = new ArrayList<>(List.of(script.toString()));
    command.addAll(Arrays.asList(args));
    ProcessBuilder b = new ProcessBuilder(command);
    // The script runs these classes, not a jar the build has not made yet (as for psiskv-check).
    b.environment().put("PSISKV_CLASSPATH", System.getProperty("java.class.path"));
    Process p = b.start();
    CompletableFuture<byte[]> out =
        CompletableFuture.supplyAsync(() -> readAll(p.getInputStream()));
    CompletableFuture<byte[]> err =
        CompletableFuture.supplyAsync(() -> readAll(p.getErrorStream()));
    try (OutputStream in = p.getOutputStream()) {
      in.write(stdin);
    }
    assertWithMessage("%s finished", command)
        .that(p.waitFor(PROCESS_TIMEOUT_SECONDS, TimeUnit.SECONDS)).isTrue();
    return new Run(p.exitValue(), out.get(), new String(err.get(), UTF_8));
  }

  private static byte[] readAll(InputStream in) {
    try {
      return in.readAllBytes();
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  private static String port() {
    return Integer.toString(server.port());
  }

  @Test
  void binaryBytesGoInThroughStdinAndOutWithRaw() throws Exception {
    byte[] value = new byte[256 * 3];
    for (int i = 0; i < value.length; i++) {
      value[i] = (byte) i;
    }
    Run put = run(value, "--port", port(), "put", "0xfeedf00d", "-");
    assertWithMessage(put.stderr()).that(put.code()).isEqualTo(0);
    Run get = run(new byte[0], "--port", port(), "get", "--raw", "4277006349");
    assertWithMessage(get.stderr()).that(get.code()).isEqualTo(0);
    assertThat(get.stdout()).isEqualTo(value);
    assertThat(get.stderr()).isEmpty();
  }

  @Test
  void exitCodesReachTheShell() throws Exception {
    assertThat(run(new byte[0], "--port", port(), "put", "--if-absent", "7", "seven").code())
        .isEqualTo(0);
    Run exists = run(new byte[0], "--port", port(), "put", "--if-absent", "7", "eight");
    assertThat(exists.code()).isEqualTo(1);
    assertThat(exists.stderr()).isEqualTo("psiskv-cli: key 7 exists; nothing changed\n");
    assertThat(run(new byte[0], "--port", port(), "del", "8").code()).isEqualTo(1);
    Run usage = run(new byte[0], "get", "0x1ffffffff");
    assertThat(usage.code()).isEqualTo(2);
    assertThat(usage.stderr()).doesNotContain("Exception");
    Run status = run(new byte[0], "--port", port(), "status", "--json");
    assertWithMessage(status.stderr()).that(status.code()).isEqualTo(0);
    String json = new String(status.stdout(), UTF_8);
    assertThat(json).contains("\"pid\": " + server.dataPid() + ",");
    assertThat(run(new byte[0], "--help").code()).isEqualTo(0);
    Run version = run(new byte[0], "--version");
    assertThat(version.code()).isEqualTo(0);
    // version.txt carries the build's version.
    assertThat(new String(version.stdout(), UTF_8)).startsWith("psiskv-cli 0.");
  }

  @Test
  void aRefusedConnectionIsOneLineAndExitThree() throws Exception {
    int dead;
    try (ServerSocket s = new ServerSocket(0)) {
      dead = s.getLocalPort();
    }
    Run r = run(new byte[0], "--port", "" + dead, "get", "1");
    assertThat(r.code()).isEqualTo(3);
    assertThat(r.stdout()).isEmpty();
    assertThat(r.stderr()).isEqualTo(
        "psiskv-cli: cannot connect to psiskv at 127.0.0.1:" + dead + ": Connection refused\n");
  }
}
