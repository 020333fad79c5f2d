package io.psiskv.server;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;
import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.psiskv.server.backup.BackupLog;
import io.psiskv.server.backup.BackupLogTestSupport;
import io.psiskv.server.backup.FsyncPolicy;
import io.psiskv.server.front.Console;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The scripts in build-scripts/, run as processes: each one's {@code --help} exits 0 and a bad
 * option gets one line on stderr and exit 2, never a stack trace; {@code psiskv-check}'s exit
 * codes on real backup files; the jar is rebuilt when a source is newer (a stand-in {@code mvn}
 * records the build); the systemd unit's options are ones the server accepts. The Java-backed
 * scripts run on the test's classes ({@code PSISKV_CLASSPATH}), so nothing is built here.
 */
@Tag("process")
class ScriptsTest {
  private static final Path ROOT = Path.of(System.getProperty("user.dir")).getParent();
  private static final Path SCRIPTS = ROOT.resolve("build-scripts");
  private static final long TIMEOUT_SECONDS = 60;

  @TempDir Path dir;

  private static final class Run {
    final int exit;
    final String out;
    final String err;

    Run(int exit, String out, String err) {
      this.exit = exit;
      this.out = out;
      this.err = err;
    }
  }

  private Run run(Map<String, String> env, String... command) throws Exception {
    ProcessBuilder b = new ProcessBuilder(command).directory(dir.toFile())
        .redirectOutput(dir.resolve("out").toFile()).redirectError(dir.resolve("err").toFile());
    b.environment().put("PSISKV_CLASSPATH", System.getProperty("java.class.path"));
    b.environment().putAll(env);
    Process p = b.start();
    p.getOutputStream().close();
    if (!p.waitFor(TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
      p.descendants().forEach(ProcessHandle::destroyForcibly);
      p.destroyForcibly();
      throw new AssertionError(String.join(" ", command) + " did not exit");
    }
    return new Run(p.exitValue(), Files.readString(dir.resolve("out")),
        Files.readString(dir.resolve("err")));
  }

  private Run script(String name, String... args) throws Exception {
    List<String> command = new ArrayList<>();
    command.add(SCRIPTS.resolve(name).toString());
    command.addAll(Arrays.asList(args));
    return run(Map.of(), command.toArray(new String[0]));
  }

  @ParameterizedTest
  @ValueSource(strings = {"psiskv-server", "psiskv-stop", "psiskv-check", "psiskv-bench",
      "psiskv-bench-log", "install-build-deps", "install-bench-peers"})
  void helpExitsZeroAndABadOptionGetsOneLineAndExitTwo(String name) throws Exception {
    Run help = script(name, "--help");
    assertWithMessage(name + " --help: " + help.err).that(help.exit).isEqualTo(0);
    assertWithMessage(name + " --help").that(help.out.strip()).isNotEmpty();
    assertThat(help.err).doesNotContain("Exception");

    Run bad = script(name, "--no-such-option");
    assertWithMessage(name + " bad option: " + bad.out + bad.err).that(bad.exit).isEqualTo(2);
    assertWithMessage(name + " bad option").that(bad.err.lines().count()).isEqualTo(1);
    assertThat(bad.err).contains("--no-such-option");
    assertThat(bad.err).doesNotContain("Exception");
  }

  @Test
  void psiskvCheckExitCodesOnRealFiles() throws Exception {
    Path data = dir.resolve("data");
    try (BackupLog log = BackupLog.open(data, FsyncPolicy.ALWAYS,
        new BackupLogTestSupport.Model(), BackupLog.OpenOptions.defaults())) {
      log.awaitDurable(log.appendPut(1, new byte[10], 1, 1, 0));
    }
    Files.deleteIfExists(data.resolve(DataDirLock.FILE_NAME));
    Run clean = script("psiskv-check", data.toString());
    assertWithMessage(clean.err).that(clean.exit).isEqualTo(0);
    assertThat(clean.out).contains("status: clean");

    Path file = data.resolve(BackupLog.FILE_NAME);
    Files.write(file, new byte[] {1, 2, 3}, java.nio.file.StandardOpenOption.APPEND);
    assertThat(script("psiskv-check", data.toString()).exit).isEqualTo(1);
    Run fixed = script("psiskv-check", "--fix", data.toString());
    assertWithMessage(fixed.err).that(fixed.exit).isEqualTo(0);
    assertThat(Files.exists(data.resolve(DataDirLock.FILE_NAME))).isFalse(); // No stray lock.
    assertThat(script("psiskv-check", file.toString()).exit).isEqualTo(0);

    Run missing = script("psiskv-check", dir.resolve("nowhere").toString());
    assertThat(missing.exit).isEqualTo(2);
    assertThat(missing.err.strip()).isEqualTo(
        "psiskv-check: " + dir.resolve("nowhere") + ": no such file or directory");
  }

  /**
   * A copy of the script library in a fake tree, with a stand-in {@code mvn} that records its
   * call and makes the jar: the library builds exactly when a main source is newer than the jar.
   */
  @Test
  void theJarIsRebuiltWhenAMainSourceIsNewer() throws Exception {
    Path tree = dir.resolve("tree");
    Files.createDirectories(tree.resolve("build-scripts"));
    Files.copy(SCRIPTS.resolve("lib-psiskv-jar.sh"),
        tree.resolve("build-scripts/lib-psiskv-jar.sh"));
    executable(tree.resolve("build-scripts/install-build-deps"), "#!/bin/sh\nexit 0\n");
    Path bin = Files.createDirectories(dir.resolve("bin"));
    executable(bin.resolve("mvn"), "#!/bin/sh\necho \"$*\" >> \"" + dir.resolve("mvn-calls")
        + "\"\nmkdir -p servers/target && touch servers/target/psiskv-server.jar\n");
    Path main = tree.resolve("servers/src/main/java/A.java");
    Path test = tree.resolve("servers/src/test/java/ATest.java");
    Path jar = tree.resolve("servers/target/psiskv-server.jar");
    for (Path p : new Path[] {main, test, jar}) {
      Files.createDirectories(p.getParent());
      Files.writeString(p, "x");
    }
    Instant t = Instant.now().minusSeconds(3600);
    Files.setLastModifiedTime(main, FileTime.from(t));
    Files.setLastModifiedTime(test, FileTime.from(t.plusSeconds(20)));
    Files.setLastModifiedTime(jar, FileTime.from(t.plusSeconds(10)));
    String[] command = {"bash", "-c", ". " + tree.resolve("build-scripts/lib-psiskv-jar.sh")
        + "; psiskv_jar psiskv-server; echo \"$classpath\""};
    Map<String, String> env = Map.of("PATH", bin + ":" + System.getenv("PATH"),
        "PSISKV_CLASSPATH", "");

    Run upToDate = run(env, command); // Only a test source is newer: no build.
    assertWithMessage(upToDate.err).that(upToDate.exit).isEqualTo(0);
    assertThat(upToDate.out.strip()).isEqualTo(jar.toString());
    assertThat(Files.exists(dir.resolve("mvn-calls"))).isFalse();

    Files.setLastModifiedTime(main, FileTime.from(t.plusSeconds(30)));
    Run rebuilt = run(env, command);
    assertWithMessage(rebuilt.err).that(rebuilt.exit).isEqualTo(0);
    assertThat(rebuilt.err).contains(
        "psiskv-server: servers/src/main/java/A.java is newer than the jar; building it");
    assertThat(Files.readAllLines(dir.resolve("mvn-calls"))).hasSize(1);

    Run again = run(env, command); // The build made the jar newer: nothing to do.
    assertThat(again.err).isEmpty();
    assertThat(Files.readAllLines(dir.resolve("mvn-calls"))).hasSize(1);
  }

  @Test
  void theSystemdUnitStartsTheServerWithOptionsItAccepts() throws Exception {
    String unit = Files.readString(SCRIPTS.resolve("psiskv.service"), UTF_8);
    String exec = unit.lines().filter(l -> l.startsWith("ExecStart=")).findFirst().orElseThrow();
    List<String> words = Arrays.asList(exec.substring("ExecStart=".length()).split(" +"));
    int jar = words.indexOf("-jar");
    String[] options = words.subList(jar + 2, words.size()).toArray(new String[0]);
    ServerConfig c = ServerOptions.parse(ServerConfig.Role.FRONT, options);
    assertThat(c.console).isEqualTo(Console.Mode.OFF);
    assertThat(c.dataDir.toString()).isEqualTo("/var/lib/psiskv");
    assertThat(unit).contains("StateDirectory=psiskv");
    assertThat(unit).contains("Type=simple");
    assertThat(unit).contains("Restart=on-failure");
    assertThat(unit.lines().filter(l -> !l.startsWith("#")).filter(l -> l.contains("sudo"))
        .count()).isEqualTo(0);
    Path analyze = Path.of("/usr/bin/systemd-analyze");
    assumeTrue(Files.isExecutable(analyze), "systemd-analyze checks the unit's syntax");
    Run verify = run(Map.of(), analyze.toString(), "verify",
        SCRIPTS.resolve("psiskv.service").toString());
    assertWithMessage(verify.out + verify.err).that(verify.exit).isEqualTo(0);
  }

  /** README's synopsis of psiskv-server names every option the server's --help lists. */
  @Test
  void theReadmeSynopsisListsEveryOption() throws Exception {
    String readme = Files.readString(ROOT.resolve("README.md"), UTF_8);
    int from = readme.indexOf("## Running the servers");
    int open = readme.indexOf("```", from);
    String synopsis = readme.substring(open, readme.indexOf("```", open + 3));
    java.io.ByteArrayOutputStream usage = new java.io.ByteArrayOutputStream();
    ServerOptions.printUsage(ServerConfig.Role.FRONT, new java.io.PrintStream(usage, true, UTF_8));
    java.util.regex.Matcher m = java.util.regex.Pattern.compile("^  (--[a-z-]+)",
        java.util.regex.Pattern.MULTILINE).matcher(usage.toString(UTF_8));
    int options = 0;
    while (m.find()) {
      if (m.group(1).equals("--adopt-data")) {
        continue; // Internal: the Data Server's relaunch of a Front Server.
      }
      options++;
      assertWithMessage("README synopsis").that(synopsis)
          .containsMatch("[\\[ ]" + java.util.regex.Pattern.quote(m.group(1)) + "[ \\]]");
    }
    assertThat(options).isAtLeast(20);
  }

  private static void executable(Path file, String content) throws IOException {
    Files.writeString(file, content);
    Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rwx------"));
  }
}
