package io.psiskv.cli;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;
import static java.nio.charset.StandardCharsets.UTF_8;

import io.psiskv.client.KvClient;
import io.psiskv.server.testkit.ServerFixture;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * psiskv-cli in this JVM (picocli's execute with captured streams) against a real server pair:
 * every subcommand, every exit code, the key forms and the messages a user sees. Each test uses
 * its own keys on the shared pair. {@link CliScriptTest} runs the real script as a process.
 */
@Tag("process")
class CliTest {
  /** A small maximum, so that a value past it is cheap to send. */
  static final int MAX_VALUE_BYTES = 100_000;

  @RegisterExtension static final ServerFixture server =
      ServerFixture.builder().maxValueBytes(MAX_VALUE_BYTES).build();

  @TempDir Path tmp;

  @AfterAll
  static void stopsCleanly() {
    server.stop();
  }

  /** One run's exit code and output. */
  record Run(int code, byte[] stdout, String stderr) {
    String out() {
      return new String(stdout, UTF_8);
    }
  }

  private static Run cli(byte[] stdin, String... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int code = PsiskvCli.execute(args, new ByteArrayInputStream(stdin),
        new PrintStream(out, true, UTF_8), new PrintStream(err, true, UTF_8));
    return new Run(code, out.toByteArray(), err.toString(UTF_8));
  }

  /** The command against the fixture's pair (its port, which is not 9999). */
  private static Run kv(String... args) {
    return kvIn(new byte[0], args);
  }

  private static Run kvIn(byte[] stdin, String... args) {
    List<String> a = new ArrayList<>(List.of("--port", Integer.toString(server.port())));
    a.addAll(Arrays.asList(args));
    return cli(stdin, a.toArray(new String[0]));
  }

  /** No Java exception names, no stack trace, one line. */
  private static void assertOneCleanLine(Run r) {
    assertWithMessage("stderr").that(r.stderr()).doesNotContain("Exception");
    assertWithMessage("stderr").that(r.stderr()).doesNotContain("\tat ");
    assertWithMessage("stderr").that(r.stderr().strip().lines().count()).isEqualTo(1);
    assertWithMessage("stderr").that(r.stderr()).startsWith("psiskv-cli: ");
  }

  @Test
  void putGetDelRoundTripWithExitCodes() {
    Run put = kv("put", "101", "hello world");
    assertWithMessage(put.stderr()).that(put.code()).isEqualTo(0);
    assertThat(put.out()).isEmpty();
    Run get = kv("get", "101");
    assertThat(get.code()).isEqualTo(0);
    assertThat(get.out()).isEqualTo("hello world\n");
    Run del = kv("del", "101");
    assertThat(del.code()).isEqualTo(0);
    Run again = kv("del", "101");
    assertThat(again.code()).isEqualTo(1);
    assertThat(again.stderr()).isEqualTo("psiskv-cli: no such key 101\n");
    Run missing = kv("get", "101");
    assertThat(missing.code()).isEqualTo(1);
    assertThat(missing.out()).isEmpty();
    assertThat(missing.stderr()).isEqualTo("psiskv-cli: no such key 101\n");
  }

  @Test
  void putIfAbsentSaysWhenTheKeyExists() {
    assertThat(kv("put", "--if-absent", "102", "first").code()).isEqualTo(0);
    Run second = kv("put", "--if-absent", "102", "second");
    assertThat(second.code()).isEqualTo(1);
    assertThat(second.stderr()).isEqualTo("psiskv-cli: key 102 exists; nothing changed\n");
    assertThat(kv("get", "102").out()).isEqualTo("first\n");
    assertThat(kv("put", "102", "second").code()).isEqualTo(0); // Without it: replaced.
    assertThat(kv("get", "102").out()).isEqualTo("second\n");
  }

  @Test
  void binaryValuesFromStdinAndFilesComeBackExactlyWithRaw() throws IOException {
    byte[] binary = new byte[70_000];
    for (int i = 0; i < binary.length; i++) {
      binary[i] = (byte) (i * 31);
    }
    assertThat(kvIn(binary, "put", "103", "-").code()).isEqualTo(0);
    Run raw = kv("get", "--raw", "103");
    assertThat(raw.code()).isEqualTo(0);
    assertThat(raw.stdout()).isEqualTo(binary);

    Path file = tmp.resolve("value.bin");
    Files.write(file, new byte[] {0, 1, 2, '\\', 0x1b, (byte) 0xff, 'A'});
    assertThat(kv("put", "--file", file.toString(), "104").code()).isEqualTo(0);
    assertThat(kv("get", "--raw", "104").stdout())
        .isEqualTo(new byte[] {0, 1, 2, '\\', 0x1b, (byte) 0xff, 'A'});
    // As text: no byte reaches the terminal as a control code.
    assertThat(kv("get", "104").out()).isEqualTo("\\x00\\x01\\x02\\\\\\x1b\\xffA\n");
    // Printable UTF-8 text is shown as it is.
    assertThat(kvIn("grüße\tök".getBytes(UTF_8), "put", "105", "-").code()).isEqualTo(0);
    assertThat(kv("get", "105").out()).isEqualTo("grüße\tök\n");
    // An empty value is a value.
    assertThat(kv("put", "106", "").code()).isEqualTo(0);
    Run empty = kv("get", "106");
    assertThat(empty.code()).isEqualTo(0);
    assertThat(empty.out()).isEqualTo("\n");
    assertThat(kv("get", "--raw", "106").stdout()).isEmpty();
  }

  @Test
  void keysAreUnsigned32BitDecimalOrHex() {
    assertThat(kv("put", "0x10", "sixteen").code()).isEqualTo(0);
    assertThat(kv("get", "16").out()).isEqualTo("sixteen\n");
    assertThat(kv("put", "4294967295", "max").code()).isEqualTo(0);
    assertThat(kv("get", "0xFFFFFFFF").out()).isEqualTo("max\n");
    try (KvClient c = KvClient.connect(server.host(), server.port())) {
      assertThat(new String(c.get(-1).orElseThrow(), UTF_8)).isEqualTo("max");
    }
    for (String bad : new String[] {"4294967296", "-1", "+1", "abc", "0x", "0x100000000",
        "1e3", " 7", "0x-1", "٣"}) {
      Run r = kv("get", bad);
      assertWithMessage("key %s", bad).that(r.code()).isEqualTo(2);
      assertWithMessage("key %s", bad).that(r.stderr()).contains("is not a key");
      assertWithMessage("key %s", bad).that(r.stderr()).doesNotContain("Exception");
    }
  }

  @Test
  void statusPrintsTheServersCountersAsTextAndAsJson() {
    assertThat(kv("put", "107", "x").code()).isEqualTo(0);
    Run json = kv("status", "--json");
    assertWithMessage(json.stderr()).that(json.code()).isEqualTo(0);
    String j = json.out();
    assertThat(j).startsWith("{\n  \"version\": \"");
    assertThat(j).endsWith("\n}\n");
    assertThat(j).contains("\n  \"pid\": " + server.dataPid() + ",\n");
    assertThat(j).contains("\n  \"front_pid\": " + server.frontPid() + ",\n");
    assertThat(j).containsMatch("\n  \"ops_put\": [1-9][0-9]*,\n");
    assertThat(j).containsMatch("\n  \"fsync\": \"always\",\n");
    // Every member is one line "name": value; the last has no comma.
    List<String> members = j.lines().skip(1).limit(j.lines().count() - 2).toList();
    for (int i = 0; i < members.size(); i++) {
      assertThat(members.get(i)).matches(
          "  \"[a-z0-9_]+\": (\"[^\"\\\\]*\"|[0-9]+)" + (i < members.size() - 1 ? "," : ""));
    }
    Run human = kv("status");
    assertThat(human.code()).isEqualTo(0);
    assertThat(human.out()).startsWith("psiskv at 127.0.0.1:" + server.port() + "\n");
    assertThat(human.out()).containsMatch("\n  pid +" + server.dataPid() + "\n");
    assertThat(human.out())
        .containsMatch("\n  uptime_ms +[0-9]+ \\([0-9]+h[0-9]{2}m[0-9]{2}s\\)\n");
    assertThat(human.out()).containsMatch("\n  records_per_fsync +[0-9]+\\.[0-9]{2}\n");
  }

  @Test
  void hostAndPortGoBeforeOrAfterTheCommand() {
    assertThat(cli(new byte[0], "put", "108", "v", "--port", "" + server.port()).code())
        .isEqualTo(0);
    assertThat(cli(new byte[0], "-H", "127.0.0.1", "-p", "" + server.port(), "get", "108")
        .out()).isEqualTo("v\n");
    assertThat(cli(new byte[0], "get", "--host", "localhost", "108", "--port",
        "" + server.port()).out()).isEqualTo("v\n");
  }

  @Test
  void helpAndVersionExitZero() {
    Run help = cli(new byte[0], "--help");
    assertThat(help.code()).isEqualTo(0);
    assertThat(help.out()).contains("Usage: psiskv-cli");
    assertThat(help.out()).contains("Exit codes:");
    assertThat(help.out()).contains("3   any other error");
    for (String cmd : new String[] {"put", "get", "del", "status"}) {
      assertThat(help.out()).contains("  " + cmd + " ");
      Run sub = cli(new byte[0], cmd, "--help");
      assertWithMessage(cmd).that(sub.code()).isEqualTo(0);
      assertWithMessage(cmd).that(sub.out()).contains("Usage: psiskv-cli " + cmd);
      assertWithMessage(cmd).that(sub.out()).contains("Exit codes:");
      assertWithMessage(cmd).that(sub.out()).contains("2   usage");
    }
    Run version = cli(new byte[0], "--version");
    assertThat(version.code()).isEqualTo(0);
    assertThat(version.out()).matches("psiskv-cli \\S+ \\(protocol 2\\)\n");
  }

  @Test
  void usageErrorsExitTwoWithOneClearLineAndAHint() {
    String[][] usage = {
        {}, {"frobnicate"}, {"get"}, {"get", "1", "2"}, {"put", "1"}, {"put", "--bogus", "1", "v"},
        {"put", "1", "v", "--file", "f"}, {"--port", "70000", "get", "1"},
        {"--port", "0", "del", "1"},
        {"--port", "x", "get", "1"}, {"status", "--yaml"}};
    for (String[] args : usage) {
      Run r = cli(new byte[0], args);
      String what = String.join(" ", args);
      assertWithMessage("'%s': %s", what, r.stderr()).that(r.code()).isEqualTo(2);
      assertWithMessage(what).that(r.out()).isEmpty();
      assertWithMessage(what).that(r.stderr()).startsWith("psiskv-cli: ");
      assertWithMessage(what).that(r.stderr()).contains("--help'.");
      assertWithMessage(what).that(r.stderr()).doesNotContain("Exception");
      assertWithMessage(what).that(r.stderr().strip().lines().count()).isEqualTo(2);
    }
  }

  @Test
  void aServerThatIsNotThereIsExitThreeWithOneLine() throws IOException {
    int dead;
    try (ServerSocket s = new ServerSocket(0)) {
      dead = s.getLocalPort(); // Closed at once: nothing listens there.
    }
    for (String[] args : new String[][] {{"get", "1"}, {"put", "1", "v"}, {"del", "1"},
        {"status"}}) {
      List<String> a = new ArrayList<>(List.of("--port", "" + dead));
      a.addAll(Arrays.asList(args));
      Run r = cli(new byte[0], a.toArray(new String[0]));
      assertWithMessage(a.toString()).that(r.code()).isEqualTo(3);
      assertOneCleanLine(r);
      assertThat(r.stderr()).isEqualTo("psiskv-cli: cannot connect to psiskv at 127.0.0.1:"
          + dead + ": Connection refused\n");
    }
    Run unknown = cli(new byte[0], "--host", "no-such-host.invalid", "get", "1");
    assertThat(unknown.code()).isEqualTo(3);
    assertOneCleanLine(unknown);
    assertThat(unknown.stderr()).isEqualTo(
        "psiskv-cli: cannot connect to psiskv at no-such-host.invalid:9999: unknown host\n");
  }

  @Test
  void anUnreadableFileAndAnOversizedValueAreExitThree() {
    Run missing = kv("put", "--file", tmp.resolve("absent").toString(), "109");
    assertThat(missing.code()).isEqualTo(3);
    assertOneCleanLine(missing);
    assertThat(missing.stderr()).contains("no such file");
    Run dir = kv("put", "--file", tmp.toString(), "109");
    assertThat(dir.code()).isEqualTo(3);
    assertOneCleanLine(dir);
    Run stdin = kvIn(new byte[MAX_VALUE_BYTES + 1], "put", "109", "-");
    assertThat(stdin.code()).isEqualTo(3);
    assertOneCleanLine(stdin);
    assertThat(stdin.stderr()).isEqualTo("psiskv-cli: the value from stdin is longer than the"
        + " server's maximum of " + MAX_VALUE_BYTES + " bytes\n");
    Run arg = kv("put", "109", "x".repeat(MAX_VALUE_BYTES + 1));
    assertThat(arg.code()).isEqualTo(3);
    assertOneCleanLine(arg);
    assertThat(kv("get", "109").code()).isEqualTo(1); // Nothing was stored.
    assertThat(kvIn(new byte[MAX_VALUE_BYTES], "put", "109", "-").code()).isEqualTo(0);
  }
}
