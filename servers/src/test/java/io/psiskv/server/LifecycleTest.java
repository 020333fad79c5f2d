package io.psiskv.server;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;
import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Status;
import io.psiskv.server.testkit.Poll;
import io.psiskv.server.testkit.RawClient;
import io.psiskv.server.testkit.ServerFixture;
import java.io.DataInputStream;
import java.io.File;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Start and stop of the pair: quit, SIGTERM, SIGINT, end of stdin, a killed Data Server, the port
 * rule, the stop script, the console, option errors. Each test gets its own pair. The relaunches
 * themselves are {@code SupervisionTest}'s.
 */
@Tag("process")
@Tag("server-pair")
class LifecycleTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(30);

  @RegisterExtension final ServerFixture server = ServerFixture.builder().build();

  private void assertPidFilesGone() {
    assertThat(Files.exists(server.dataDir().resolve(PidFile.FRONT))).isFalse();
    assertThat(Files.exists(server.dataDir().resolve(PidFile.DATA))).isFalse();
  }

  @Test
  void pidFilesNameBothProcessesWhileRunning() throws IOException {
    assertThat(Files.readString(server.dataDir().resolve(PidFile.FRONT)).trim())
        .isEqualTo(Long.toString(server.frontPid()));
    assertThat(Files.readString(server.dataDir().resolve(PidFile.DATA)).trim())
        .isEqualTo(Long.toString(server.dataPid()));
    assertThat(server.dataPid()).isNotEqualTo(server.frontPid());
  }

  @Test
  void quitOnTheConsoleStopsBothWithExitZero() {
    assertThat(server.stop()).isEqualTo(0); // Asserts the Data Server is gone too.
    assertPidFilesGone();
    server.awaitLog("stopping: SHUTDOWN from the front server", TIMEOUT);
  }

  @Test
  void sigtermToTheFrontStopsBoth() {
    server.frontProcess().destroy(); // SIGTERM
    assertThat(server.awaitExit(TIMEOUT)).isEqualTo(0);
    server.assertDataServerGone(TIMEOUT);
    assertPidFilesGone();
  }

  @Test
  void sigintToBothProcessesStopsThemLikeCtrlC() throws Exception {
    // A shell started without job control ignores SIGINT for its children, and the JVM keeps
    // an ignored SIGINT ignored; reset it to the default as a terminal would have it.
    assumeTrue(new File("/usr/bin/python3").canExecute(), "needs python3 to reset SIGINT");
    ServerFixture pair = ServerFixture.builder()
        .commandPrefix("/usr/bin/python3", "-c",
            "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL);"
                + " os.execv(sys.argv[1], sys.argv[1:])")
        .build();
    try {
      pair.start();
      // Ctrl-C reaches the whole foreground process group: both processes.
      kill("-INT", pair.frontPid());
      kill("-INT", pair.dataPid());
      assertThat(pair.awaitExit(TIMEOUT)).isEqualTo(0);
      pair.assertDataServerGone(TIMEOUT);
      assertThat(Files.exists(pair.dataDir().resolve(PidFile.FRONT))).isFalse();
    } finally {
      pair.killBoth();
    }
  }

  @Test
  void stopLetsTheRequestInFlightFinishAndClosesIdleConnectionsAtOnce() throws Exception {
    byte[] big = new byte[32 * 1024 * 1024]; // More than the socket buffers hold.
    new Random(3).nextBytes(big);
    try (RawClient writer = RawClient.session(server)) {
      assertThat(writer.put(9, big, false)).isEqualTo(Status.OK);
    }
    try (RawClient idle = RawClient.session(server);
        RawClient busy = RawClient.session(server)) {
      // Start a GET of the big value and read only its first bytes: the server's connection
      // thread is now inside the request, blocked writing the rest.
      byte[] buf = new byte[Messages.MAX_FIXED_BYTES];
      busy.send(Arrays.copyOf(buf, Messages.get(buf, 9, 5, -1)));
      DataInputStream in = busy.rawInput();
      byte[] head = new byte[Protocol.HEADER_BYTES + Protocol.GET_RESPONSE_PREFIX_BYTES];
      in.readFully(head);

      server.console("quit");
      server.awaitLog("stopping: SHUTDOWN from the front server", TIMEOUT);
      assertThat(idle.closedByPeer()).isTrue(); // Idle: closed without waiting.

      byte[] rest = new byte[big.length];
      in.readFully(rest); // The request in flight is answered completely...
      assertThat(rest).isEqualTo(big);
      assertThat(busy.closedByPeer()).isTrue(); // ...and then its connection closes.
    }
    assertThat(server.awaitExit(TIMEOUT)).isEqualTo(0);
    server.assertDataServerGone(TIMEOUT);
  }

  @Test
  void dataServerFailingAtStartMakesTheFrontExitOne() throws IOException {
    server.stop();
    // A directory where the Data Server writes its pid file: its start fails.
    Path blocker = server.dataDir().resolve(PidFile.DATA);
    Files.createDirectories(blocker.resolve("occupied"));
    IOException e = assertThrows(IOException.class, server::start);
    assertThat(e.getMessage()).contains("the data server exited during start with code 1");
    assertThat(server.process().exitValue()).isEqualTo(ServerConfig.EXIT_FAILURE);
  }

  @Test
  void endOfStdinDoesNotStopTheServer() throws IOException {
    server.closeStdin();
    server.awaitLog("console: end of stdin; the server keeps running", TIMEOUT);
    try (RawClient c = RawClient.session(server)) {
      assertThat(c.put(1, new byte[] {1}, false)).isEqualTo(Status.OK);
    }
    assertThat(server.frontProcess().isAlive()).isTrue();
    server.frontProcess().destroy();
    assertThat(server.awaitExit(TIMEOUT)).isEqualTo(0);
    server.assertDataServerGone(TIMEOUT);
  }

  @Test
  void killedDataServerMakesHelloAnswerUnavailableOrOkUntilItsSuccessorIsReady() {
    long old = server.dataPid();
    server.dataProcess().destroyForcibly();
    // During the relaunch HELLO answers UNAVAILABLE (no Data Server) or OK (the new one):
    // never anything else, and OK in the end.
    Poll.require(TIMEOUT, () -> {
      Status s = helloStatus();
      assertThat(s).isAnyOf(Status.UNAVAILABLE, Status.OK);
      return s == Status.OK && server.dataPid() != old;
    }, () -> "HELLO answers " + helloStatus() + ", data pid " + server.dataPid());
    server.awaitLog("data server relaunched", TIMEOUT);
    assertThat(server.stop()).isEqualTo(0);
  }

  private Status helloStatus() {
    try (RawClient front = RawClient.front(server)) {
      return front.hello().status();
    } catch (IOException e) {
      return Status.IO_ERROR;
    }
  }

  @Test
  void takenPortMovesTheFrontServerToTheNextFreeOne() throws IOException {
    try (ServerSocket taken = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      int port = taken.getLocalPort();
      assumeTrue(port + ServerConfig.PORT_SEARCH_ATTEMPTS <= 65535, "ephemeral port too high");
      ServerFixture pair = ServerFixture.builder().port(port).build();
      try {
        pair.start();
        assertThat(pair.port()).isGreaterThan(port);
        assertThat(pair.port()).isLessThan(port + ServerConfig.PORT_SEARCH_ATTEMPTS);
        pair.awaitLog("port " + port + " is taken; using " + pair.port(), TIMEOUT);
        try (RawClient c = RawClient.session(pair)) {
          assertThat(c.ping().status()).isEqualTo(Status.OK);
        }
        pair.stop();
      } finally {
        pair.killBoth();
      }
    }
  }

  @Test
  void stopScriptStopsThePair() throws Exception {
    Path script = Path.of(System.getProperty("user.dir")).getParent()
        .resolve("build-scripts/psiskv-stop");
    assumeTrue(Files.isExecutable(script), "build-scripts/psiskv-stop not found at " + script);
    ProcessBuilder stopCommand = new ProcessBuilder(script.toString(), "--data-dir",
        server.dataDir().toString()).redirectErrorStream(true);
    // The script runs these classes, not a jar that the build has not made yet.
    stopCommand.environment().put("PSISKV_CLASSPATH", System.getProperty("java.class.path"));
    Process stop = stopCommand.start();
    String output = new String(stop.getInputStream().readAllBytes(), UTF_8);
    assertThat(stop.waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertWithMessage("psiskv-stop output: %s", output).that(stop.exitValue()).isEqualTo(0);
    assertThat(output).contains("stopped (front pid " + server.frontPid());
    assertThat(server.awaitExit(TIMEOUT)).isEqualTo(0);
    server.assertDataServerGone(TIMEOUT);
    assertPidFilesGone();

    Process again = stopCommand.start();
    String second = new String(again.getInputStream().readAllBytes(), UTF_8);
    assertThat(again.waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(again.exitValue()).isEqualTo(1);
    assertThat(second).contains("no running psiskv server");
  }

  @Test
  void consoleAnswersStatusHelpAndUnknownCommands() {
    server.console("status");
    Poll.require(TIMEOUT, () -> server.stdoutLines().stream().anyMatch(
        l -> l.startsWith("data server: pid " + server.dataPid() + ", port "
            + server.dataPort())), () -> "status output: " + server.stdoutLines());
    assertThat(server.stdoutLines().stream().anyMatch(
        l -> l.startsWith("front server: pid " + server.frontPid()))).isTrue();
    server.console("help");
    server.console("frobnicate");
    Poll.require(TIMEOUT, () -> server.stdoutLines().contains(
        "unknown command 'frobnicate'; type help"), () -> "output: " + server.stdoutLines());
    assertThat(server.stdoutLines().stream().anyMatch(l -> l.startsWith("commands:"))).isTrue();
    // The listening line appears exactly once.
    assertThat(server.stdoutLines().stream()
        .filter(l -> l.startsWith("psiskv front server listening on")).count()).isEqualTo(1);
    server.stop();
  }

  @Test
  void secondPairOnTheSameDataDirectoryIsRefused() {
    ServerFixture second = ServerFixture.builder().dataDir(server.dataDir()).build();
    try {
      IOException e = assertThrows(IOException.class, second::start);
      assertThat(e.getMessage()).contains("another psiskv server (pid " + server.frontPid());
      assertThat(second.process().exitValue()).isEqualTo(ServerConfig.EXIT_FAILURE);
    } finally {
      second.killBoth();
    }
    // The first pair is untouched, its pid files too.
    assertThat(helloStatus()).isEqualTo(Status.OK);
    server.stop();
    assertPidFilesGone();
  }

  @Test
  void badOptionsExitTwoWithAMessageAndHelpExitsZero() throws Exception {
    Result bad = runJava(FrontServer.class, "--threads", "bogus");
    assertThat(bad.exit).isEqualTo(ServerConfig.EXIT_BAD_OPTION);
    assertThat(bad.output)
        .contains("--threads must be event-loop[:N], on-demand or pool:N, not 'bogus'");

    Result port = runJava(FrontServer.class, "--port", "70000");
    assertThat(port.exit).isEqualTo(ServerConfig.EXIT_BAD_OPTION);
    assertThat(port.output).contains("--port must be an integer from 0 to 65535");

    Result help = runJava(FrontServer.class, "--help");
    assertThat(help.exit).isEqualTo(0);
    assertThat(help.output).contains("usage: psiskv-server");

    Result alone = runJava(DataServer.class);
    assertThat(alone.exit).isEqualTo(ServerConfig.EXIT_BAD_OPTION);
    assertThat(alone.output).contains("--control-port is required");

    // Started by hand with the options a Front Server would give, but without the pair secret on
    // its stdin (PROTOCOL.md §7.1): it refuses to start and says who starts it.
    Result noSecret = runJava(DataServer.class, "--control-port", "1", "--front-port", "1",
        "--data-dir", server.dataDir().resolve("never-created").toString());
    assertThat(noSecret.exit).isEqualTo(ServerConfig.EXIT_FAILURE);
    assertThat(noSecret.output).contains("no pair secret on standard input");
    assertThat(Files.exists(server.dataDir().resolve("never-created"))).isFalse();
    server.stop();
  }

  private static final class Result {
    final int exit;
    final String output;

    Result(int exit, String output) {
      this.exit = exit;
      this.output = output;
    }
  }

  private static Result runJava(Class<?> main, String... args) throws Exception {
    List<String> command = new ArrayList<>();
    command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    command.add("-cp");
    command.add(System.getProperty("java.class.path"));
    command.add(main.getName());
    command.addAll(List.of(args));
    Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
    p.getOutputStream().close(); // Empty stdin: no pair secret for a Data Server.
    try {
      String output = new String(p.getInputStream().readAllBytes(), UTF_8);
      assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
      return new Result(p.exitValue(), output);
    } finally {
      p.destroyForcibly();
    }
  }

  private static void kill(String signal, long pid) throws Exception {
    Process k = new ProcessBuilder("kill", signal, Long.toString(pid)).inheritIO().start();
    assertThat(k.waitFor(30, TimeUnit.SECONDS)).isTrue();
    assertThat(k.exitValue()).isEqualTo(0);
  }
}
