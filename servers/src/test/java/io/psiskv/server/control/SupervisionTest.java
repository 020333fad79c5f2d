package io.psiskv.server.control;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;
import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.psiskv.protocol.Status;
import io.psiskv.server.DataDirLock;
import io.psiskv.server.PidFile;
import io.psiskv.server.ServerConfig;
import io.psiskv.server.backup.BackupLog;
import io.psiskv.server.testkit.Poll;
import io.psiskv.server.testkit.RawClient;
import io.psiskv.server.testkit.ServerFixture;
import java.io.File;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The two servers relaunch each other. Real processes, real signals (SIGKILL, SIGSTOP,
 * SIGTERM, SIGINT to the process group); every wait is a condition with a deadline. Each test
 * gets its own pair; the fixture kills whatever is left, relaunched processes included.
 *
 * <p>The recovery times are measured and printed (grep the test output for {@code measured:}),
 * never asserted beyond a generous bound.
 */
@Tag("process")
@Tag("server-pair")
class SupervisionTest {
  /** Generous bound for any recovery; the measured figures are around a second. */
  private static final Duration RECOVERY = Duration.ofSeconds(30);
  private static final Duration TIMEOUT = Duration.ofSeconds(30);
  /** Extra time a loaded machine may take beyond a stated bound (DESIGN.md §8). */
  private static final long SLACK_MILLIS = 3_000;
  /**
   * A stopped peer is killed at the first check past the silence limit (DESIGN.md §8): at most
   * that long after its last heartbeat, so after the SIGSTOP. Well below the hang timeout, which
   * a peer taken for paused would wait out.
   */
  private static final Duration STOPPED_KILLED_WITHIN = Duration.ofMillis(
      Supervisor.HUNG_AFTER_MILLIS + Supervisor.WATCHDOG_CHECK_MILLIS + SLACK_MILLIS);
  /** ... and its successor serves within the relaunch (a JVM start, the back-off) after that. */
  private static final Duration STOPPED_REPLACED_WITHIN =
      STOPPED_KILLED_WITHIN.plusMillis(2_000);

  @RegisterExtension final ServerFixture server = ServerFixture.builder().build();

  // --- Helpers. ---

  private static byte[] value(int key) {
    return ("value of " + key).getBytes(UTF_8);
  }

  /** HELLO on a fresh front connection: its status, IO_ERROR if the front cannot be reached. */
  private static Status helloStatus(ServerFixture pair) {
    try (RawClient front = RawClient.front(pair)) {
      return front.hello().status();
    } catch (IOException e) {
      return Status.IO_ERROR;
    }
  }

  private static void writeKeys(ServerFixture pair, int from, int to) throws IOException {
    try (RawClient c = RawClient.session(pair)) {
      for (int k = from; k < to; k++) {
        assertThat(c.put(k, value(k), true)).isEqualTo(Status.OK);
      }
    }
  }

  private static void assertKeys(ServerFixture pair, int from, int to) throws IOException {
    try (RawClient c = RawClient.session(pair)) {
      for (int k = from; k < to; k++) {
        assertWithMessage("key %s", k).that(c.getValue(k)).isEqualTo(value(k));
      }
    }
  }

  private static void kill(String signal, long pid) throws Exception {
    Process k = new ProcessBuilder("kill", signal, Long.toString(pid)).inheritIO().start();
    assertThat(k.waitFor(30, TimeUnit.SECONDS)).isTrue();
    assertThat(k.exitValue()).isEqualTo(0);
  }

  /** Waits until the data.pid names a live Data Server other than {@code old} that serves. */
  private long awaitNewDataServer(long old) {
    return awaitNewDataServer(old, RECOVERY);
  }

  private long awaitNewDataServer(long old, Duration within) {
    Poll.require(within, () -> {
      long now = server.dataPid();
      return now != old && !ServerFixture.isGone(server.dataProcess())
          && RawClient.servesClients(server);
    }, () -> "no new data server after pid " + old + "; log " + server.logFile());
    return server.dataPid();
  }

  private static void measured(String what, long startNanos) {
    System.out.printf("measured: %s: %d ms%n", what, (System.nanoTime() - startNanos) / 1_000_000);
  }

  // --- The Data Server dies or hangs: the Front Server relaunches it. ---

  @Test
  void killedDataServerIsRelaunchedAgainAndAgainWithItsDataReloaded() throws Exception {
    writeKeys(server, 1, 21);
    List<Long> victims = new ArrayList<>();
    for (int round = 1; round <= 3; round++) {
      long old = server.dataPid();
      victims.add(old);
      ProcessHandle victim = server.dataProcess();
      long t0 = System.nanoTime();
      victim.destroyForcibly(); // SIGKILL
      // While it is down HELLO says UNAVAILABLE (or already OK with the new one): never an error.
      Poll.require(RECOVERY, () -> {
        Status s = helloStatus(server);
        assertWithMessage("HELLO during the relaunch").that(s)
            .isAnyOf(Status.OK, Status.UNAVAILABLE);
        return s == Status.OK && server.dataPid() != old && RawClient.servesClients(server);
      }, () -> "HELLO never led to a new data server; log " + server.logFile());
      measured("data server SIGKILL -> clients served by its successor (round " + round + ")",
          t0);
      long now = awaitNewDataServer(old);
      assertThat(ServerFixture.isGone(victim)).isTrue();
      InetSocketAddress redirect = RawClient.redirect(server);
      assertThat(redirect.getPort()).isNotEqualTo(0);
      assertKeys(server, 1, 21 + round - 1); // Everything written before the kill is back.
      writeKeys(server, 20 + round, 21 + round);
      server.awaitLog("data server relaunched: pid " + now, TIMEOUT);
      server.awaitLog("(relaunch " + round + ")", TIMEOUT);
    }
    for (long victim : victims) {
      // One line per relaunch, with the reason: whichever event came first, and the exit code.
      assertThat(server.log()).containsMatch("data server \\(pid " + victim + "\\) is down: .*"
          + "exited with code 137 \\(signal 9\\), after running \\d+ ms; relaunch \\d");
    }
    server.console("status");
    Poll.require(TIMEOUT, () -> server.stdoutLines().stream()
            .anyMatch(l -> l.startsWith("front server:") && l.endsWith("data server relaunches 3")),
        () -> "status output: " + server.stdoutLines());
    server.stop();
  }

  @Test
  void suspendedDataServerIsKilledAndReplaced() throws Exception {
    writeKeys(server, 1, 4);
    ProcessHandle hung = server.dataProcess();
    long t0 = System.nanoTime();
    kill("-STOP", hung.pid());
    try {
      server.awaitLog("killing the hung data server (pid " + hung.pid() + ") with SIGKILL: it is"
          + " stopped", STOPPED_KILLED_WITHIN);
      measured("data server SIGSTOP -> found hung and killed", t0);
      long now = awaitNewDataServer(hung.pid(),
          STOPPED_REPLACED_WITHIN.minusNanos(System.nanoTime() - t0));
      measured("data server SIGSTOP -> successor serving", t0);
      assertThat(now).isNotEqualTo(hung.pid());
      // SIGKILL ends a stopped process too: the hung one is gone, not merely replaced.
      Poll.require(TIMEOUT, () -> ServerFixture.isGone(hung), () -> "pid " + hung.pid() + " lives");
    } finally {
      if (!ServerFixture.isGone(hung)) {
        kill("-CONT", hung.pid());
      }
    }
    assertKeys(server, 1, 4);
    server.stop();
  }

  @Test
  void aRelaunchRefusedByTheDataDirectoryLockIsRetriedWithBackOff() throws Exception {
    writeKeys(server, 1, 4);
    ProcessHandle front = server.frontProcess();
    ProcessHandle data = server.dataProcess();
    // Hold the front still so that the test can take the lock between the death and the relaunch.
    kill("-STOP", front.pid());
    DataDirLock lock;
    try {
      data.destroyForcibly();
      Poll.require(TIMEOUT, () -> ServerFixture.isGone(data), () -> "data server still alive");
      lock = DataDirLock.acquire(server.dataDir()); // Now no Data Server can start.
    } finally {
      kill("-CONT", front.pid());
    }
    try {
      server.awaitLog("relaunch 1 of the data server failed: the data server exited during start"
          + " with code 1", RECOVERY);
      server.awaitLog("relaunch 2 of the data server failed", RECOVERY);
      assertThat(server.log()).contains("in use by another psiskv Data Server");
      assertThat(server.log()).contains("back-off: early death 2 in a row");
      assertThat(helloStatus(server)).isEqualTo(Status.UNAVAILABLE);
    } finally {
      lock.close();
    }
    awaitNewDataServer(data.pid());
    assertKeys(server, 1, 4);
    server.stop();
  }

  // --- The Front Server dies or hangs: the Data Server relaunches it. ---

  @Test
  void killedFrontServerIsRelaunchedOnTheSamePortAndDataConnectionsCarryOn() throws Exception {
    int port = server.port();
    writeKeys(server, 1, 4);
    try (RawClient open = RawClient.session(server)) {
      assertThat(open.put(100, value(100), false)).isEqualTo(Status.OK);
      ProcessHandle old = server.frontProcess();
      long t0 = System.nanoTime();
      old.destroyForcibly(); // SIGKILL
      assertThat(server.awaitExit(TIMEOUT)).isEqualTo(137);
      // The data connection opened before is served while there is no front.
      assertThat(open.put(101, value(101), false)).isEqualTo(Status.OK);
      assertThat(open.getValue(100)).isEqualTo(value(100));
      Poll.require(RECOVERY, () -> helloStatus(server) == Status.OK,
          () -> "port " + port + " never answered HELLO again; log " + server.logFile());
      measured("front server SIGKILL -> same port answers HELLO OK", t0);
      assertThat(server.port()).isEqualTo(port);
      long newFront = server.frontPid();
      assertThat(newFront).isNotEqualTo(old.pid());
      assertThat(ServerFixture.isGone(server.frontProcess())).isFalse();
      // The old data connection still works, and new clients connect.
      assertThat(open.getValue(101)).isEqualTo(value(101));
      assertKeys(server, 1, 4);
      writeKeys(server, 4, 6);
      server.awaitLog("front server relaunched: pid " + newFront, TIMEOUT);
      assertThat(Files.readString(server.dataDir().resolve(ServerConfig.FRONT_LOG_FILE)))
          .contains("relaunched by the data server");
    }
    // build-scripts/psiskv-stop finds the relaunched front through front.pid.
    Path script = Path.of(System.getProperty("user.dir")).getParent()
        .resolve("build-scripts/psiskv-stop");
    assumeTrue(Files.isExecutable(script), "build-scripts/psiskv-stop not found at " + script);
    long front = server.frontPid();
    long data = server.dataPid();
    ProcessBuilder stopCommand = new ProcessBuilder(script.toString(), "--data-dir",
        server.dataDir().toString()).redirectErrorStream(true);
    // The script runs these classes, not a jar that the build has not made yet.
    stopCommand.environment().put("PSISKV_CLASSPATH", System.getProperty("java.class.path"));
    Process stop = stopCommand.start();
    String output = new String(stop.getInputStream().readAllBytes(), UTF_8);
    assertThat(stop.waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertWithMessage("psiskv-stop output: %s", output).that(stop.exitValue()).isEqualTo(0);
    assertThat(output).contains("stopped (front pid " + front + ", data pid " + data + ")");
    server.assertAllGone(TIMEOUT);
    assertPidFilesGone(server);
    assertThat(server.log()).doesNotContain("relaunch 2");

    server.start(); // Same data directory: everything is back.
    assertKeys(server, 1, 6);
    assertKeys(server, 100, 102);
    server.stop();
  }

  @Test
  void suspendedFrontServerIsKilledAndReplacedAndSigtermToTheRelaunchedOneStopsBoth()
      throws Exception {
    writeKeys(server, 1, 4);
    int port = server.port();
    ProcessHandle hung = server.frontProcess();
    long t0 = System.nanoTime();
    kill("-STOP", hung.pid());
    // SIGKILL ends a stopped process: our child exits with 128 + 9.
    assertThat(server.awaitExit(STOPPED_KILLED_WITHIN)).isEqualTo(137);
    measured("front server SIGSTOP -> found hung and killed", t0);
    server.awaitLog("killing the hung front server (pid " + hung.pid() + ")", TIMEOUT);
    Poll.require(RECOVERY, () -> helloStatus(server) == Status.OK,
        () -> "port " + port + " never answered HELLO again; log " + server.logFile());
    measured("front server SIGSTOP -> same port answers HELLO OK", t0);
    assertThat(server.frontPid()).isNotEqualTo(hung.pid());
    assertKeys(server, 1, 4);

    // SIGTERM to the relaunched front (not our child): both stop in order, pid files removed.
    long data = server.dataPid();
    server.frontProcess().destroy();
    server.assertAllGone(TIMEOUT);
    assertPidFilesGone(server);
    assertThat(server.log()).contains("data " + data + " stopping: SHUTDOWN from the front server");
    assertThat(server.log()).doesNotContain("relaunch 2");

    server.start();
    assertKeys(server, 1, 4);
    server.stop();
  }

  @Test
  void aPauseOfBothProcessesIsNoHang() throws Exception {
    // Ctrl-Z (SIGTSTP to the foreground group), a debugger or a suspended machine stops both
    // processes at once. Resumed, each finds its own pause and does not take the peer's silence
    // for a hang: nobody is killed.
    writeKeys(server, 1, 4);
    ProcessHandle front = server.frontProcess();
    ProcessHandle data = server.dataProcess();
    // The Data Server's watchdog starts after it serves (its serving threads, its maintenance):
    // a pause before that is no pause to it, so wait until it says it watches.
    server.awaitLog("data " + data.pid() + " watching the front server", TIMEOUT);
    Process stop = new ProcessBuilder("kill", "-STOP", Long.toString(front.pid()),
        Long.toString(data.pid())).inheritIO().start();
    assertThat(stop.waitFor(30, TimeUnit.SECONDS)).isTrue();
    try {
      // The pause under test, longer than the hung limit: a duration, not a synchronisation.
      Thread.sleep(Supervisor.HUNG_AFTER_MILLIS + 1_000);
    } finally {
      Process cont = new ProcessBuilder("kill", "-CONT", Long.toString(front.pid()),
          Long.toString(data.pid())).inheritIO().start();
      assertThat(cont.waitFor(30, TimeUnit.SECONDS)).isTrue();
    }
    // Each side logs its verdict on the peer at its first check after its own pause.
    server.awaitLog("front " + front.pid() + " this process did not run for", TIMEOUT);
    server.awaitLog("data " + data.pid() + " this process did not run for", TIMEOUT);
    assertThat(server.log()).doesNotContain("killing");
    assertThat(server.log()).doesNotContain("is down");
    assertThat(server.frontPid()).isEqualTo(front.pid());
    assertThat(server.dataPid()).isEqualTo(data.pid());
    assertKeys(server, 1, 4);
    server.stop();
  }

  // --- Orderly stops: both stop, exit 0, nothing is relaunched, no orphan. ---

  @Test
  void sigtermToTheDataServerStopsBothAndNothingIsRelaunched() throws Exception {
    writeKeys(server, 1, 4);
    long data = server.dataPid();
    server.dataProcess().destroy(); // SIGTERM
    assertThat(server.awaitExit(TIMEOUT)).isEqualTo(0);
    server.assertAllGone(TIMEOUT);
    assertPidFilesGone(server);
    server.awaitLog("data server (pid " + data + ") is stopping on purpose; the front server"
        + " stops too", TIMEOUT);
    assertThat(server.log()).doesNotContain("relaunch");

    server.start();
    assertKeys(server, 1, 4);
    server.stop();
  }

  @Test
  void ctrlCToTheProcessGroupStopsBothWithExitZeroAndNothingIsRelaunched() throws Exception {
    // A shell started without job control ignores SIGINT for its children, and the JVM keeps an
    // ignored SIGINT ignored: reset it to the default as a terminal would have it, and give the
    // pair its own process group, as a terminal's foreground job has.
    assumeTrue(new File("/usr/bin/python3").canExecute(), "needs python3 to reset SIGINT");
    ServerFixture pair = ServerFixture.builder()
        .commandPrefix("/usr/bin/python3", "-c",
            "import os, signal, sys; os.setpgid(0, 0);"
                + " signal.signal(signal.SIGINT, signal.SIG_DFL);"
                + " os.execv(sys.argv[1], sys.argv[1:])")
        .build();
    try {
      pair.start();
      writeKeys(pair, 1, 4);
      long front = pair.frontPid();
      long data = pair.dataPid();
      // Ctrl-C: SIGINT to every process of the foreground group at once.
      Process k = new ProcessBuilder("kill", "-INT", "--", "-" + front).inheritIO().start();
      assertThat(k.waitFor(30, TimeUnit.SECONDS)).isTrue();
      assertThat(k.exitValue()).isEqualTo(0);
      assertThat(pair.awaitExit(TIMEOUT)).isEqualTo(0);
      pair.assertAllGone(TIMEOUT);
      assertPidFilesGone(pair);
      String log = pair.log();
      assertThat(log).contains("front " + front + " stopped");
      assertThat(log).contains("data " + data + " stopped");
      assertThat(log).doesNotContain("relaunch");
      assertThat(log).doesNotContain("killing");

      pair.start();
      assertKeys(pair, 1, 4);
      pair.stop();
    } finally {
      pair.killBoth();
    }
  }

  @Test
  void quitStopsBothAndTheNextStartReloadsAllData() throws Exception {
    writeKeys(server, 1, 11);
    try (RawClient c = RawClient.session(server)) {
      assertThat(c.delete(5)).isEqualTo(Status.OK);
    }
    assertThat(server.stop()).isEqualTo(0);
    server.assertAllGone(TIMEOUT);
    assertPidFilesGone(server);
    server.start();
    assertKeys(server, 1, 5);
    assertKeys(server, 6, 11);
    try (RawClient c = RawClient.session(server)) {
      assertThat(c.getValue(5)).isNull();
    }
    server.stop();
  }

  // --- The console. ---

  private static final Pattern STORE_LINE = Pattern.compile(
      "^store: (\\d+) keys, (\\d+) value bytes, (\\d+) sessions, (\\d+) connected clients$");
  private static final Pattern DATA_LINE = Pattern.compile(
      "^data server: pid (\\d+), port (\\d+), up \\d+h\\d\\dm\\d\\ds, threads \\S+, max value"
          + " \\d+ bytes, front server relaunches (\\d+)$");
  private static final Pattern BACKUP_LINE = Pattern.compile(
      "^backup file: (\\S+), (\\d+) bytes, last sync (\\S+), fsync (\\S+)$");

  private Matcher awaitLine(Pattern p, int after) {
    Poll.require(TIMEOUT, () -> server.stdoutLines().stream().skip(after)
        .anyMatch(l -> p.matcher(l).matches()), () -> "status output: " + server.stdoutLines());
    String line = server.stdoutLines().stream().skip(after)
        .filter(l -> p.matcher(l).matches()).findFirst().orElseThrow();
    Matcher m = p.matcher(line);
    assertThat(m.matches()).isTrue();
    return m;
  }

  @Test
  void statusPrintsBothServersFiguresFromTheDataServer() throws Exception {
    try (RawClient open = RawClient.session(server)) {
      assertThat(open.put(1, new byte[10], false)).isEqualTo(Status.OK);
      assertThat(open.put(2, new byte[20], false)).isEqualTo(Status.OK);
      assertThat(open.put(3, new byte[30], false)).isEqualTo(Status.OK);
      int before = server.stdoutLines().size();
      server.console("status");
      Matcher store = awaitLine(STORE_LINE, before);
      assertThat(Long.parseLong(store.group(1))).isEqualTo(3);
      assertThat(Long.parseLong(store.group(2))).isEqualTo(60);
      assertThat(Long.parseLong(store.group(3))).isAtLeast(1);
      assertThat(Long.parseLong(store.group(4))).isEqualTo(1); // This open connection.
      Matcher data = awaitLine(DATA_LINE, before);
      assertThat(Long.parseLong(data.group(1))).isEqualTo(server.dataPid());
      assertThat(Integer.parseInt(data.group(2))).isEqualTo(server.dataPort());
      assertThat(Long.parseLong(data.group(3))).isEqualTo(0);
      Matcher backup = awaitLine(BACKUP_LINE, before);
      assertThat(backup.group(1))
          .isEqualTo(server.dataDir().resolve(BackupLog.FILE_NAME).toString());
      assertThat(Long.parseLong(backup.group(2)))
          .isEqualTo(Files.size(server.dataDir().resolve(BackupLog.FILE_NAME)));
      assertThat(backup.group(3)).isNotEqualTo("never"); // fsync always: synced at each PUT.
      assertThat(backup.group(4)).isEqualTo("always");
      assertThat(server.stdoutLines().stream().skip(before).anyMatch(l -> l.startsWith(
          "front server: pid " + server.frontPid() + ", listening on 127.0.0.1:" + server.port()
              + ", up ") && l.endsWith("data server relaunches 0"))).isTrue();
    }
    server.stop();
  }

  private static void assertPidFilesGone(ServerFixture pair) {
    assertThat(Files.exists(pair.dataDir().resolve(PidFile.FRONT))).isFalse();
    assertThat(Files.exists(pair.dataDir().resolve(PidFile.DATA))).isFalse();
  }
}
