package io.psiskv.server.control;

import io.psiskv.server.DataServer;
import io.psiskv.server.FrontServer;
import io.psiskv.server.PrivateFiles;
import io.psiskv.server.ServerConfig;
import io.psiskv.server.ServerLog;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The Data Server's launcher of Front Servers ({@link Supervisor.Launcher}, on the supervisor's
 * thread), for a front found dead or hung: the same java and classpath, {@code
 * io.psiskv.server.FrontServer} with the same settings, {@code --port} exactly the old client
 * port and {@code --adopt-data <the Data Server's pid>}. Its stdin is a pipe that carries the
 * pair secret and then closes; its stderr is appended to {@value ServerConfig#FRONT_LOG_FILE} in
 * the data directory; its stdout is a pipe whose first line {@code control port N} names the new
 * front's control port, and whose every line is appended to the same log file (the {@code
 * front-stdout} thread, {@link #pumpFrontStdout}). Then the Data Server's INIT handshake with it,
 * as at start ({@link DataServer#handshakeRetrying}).
 */
public final class FrontServerLauncher {
  private final DataServer data;
  private final ServerConfig config;
  private final Supervisor supervisor;
  /** The pair secret (PROTOCOL.md §7.1), handed to every Front Server launched. */
  private final ControlAuth auth;

  public FrontServerLauncher(DataServer data, ServerConfig config, Supervisor supervisor,
      ControlAuth auth) {
    this.data = data;
    this.config = config;
    this.supervisor = supervisor;
    this.auth = auth;
  }

  /**
   * Relaunches the Front Server and does the handshake with it: see the class comment. On failure
   * the process is killed, unless a stop began.
   */
  public Supervisor.Peer launch() throws IOException {
    Path logFile = config.dataDir.resolve(ServerConfig.FRONT_LOG_FILE);
    if (!Files.exists(logFile)) {
      Files.createFile(logFile);
    }
    PrivateFiles.file(logFile);
    List<String> command = JavaCommand.of(FrontServer.class, List.of(),
        config.frontServerArgs(ProcessHandle.current().pid()));
    ProcessBuilder builder = new ProcessBuilder(command)
        .redirectInput(ProcessBuilder.Redirect.PIPE)
        .redirectOutput(ProcessBuilder.Redirect.PIPE)
        .redirectError(ProcessBuilder.Redirect.appendTo(logFile.toFile()));
    Supervisor.Peer peer = supervisor.track(builder);
    try {
      auth.writeTo(peer.process.getOutputStream()); // Its stdin: the pair secret, then closed.
    } catch (IOException e) {
      // It died at once; its exit is seen below as a start that printed no control port.
    }
    ServerLog.info("launched front server pid " + peer.pid() + " (its log: " + logFile + ")");
    CompletableFuture<Integer> controlPort = new CompletableFuture<>();
    Thread pump = new Thread(() -> pumpFrontStdout(peer.process, logFile, controlPort),
        "front-stdout");
    pump.setDaemon(true);
    pump.start();
    try {
      int port;
      try {
        port = controlPort.get(Supervisor.PEER_START_TIMEOUT_MILLIS, TimeUnit.MILLISECONDS);
      } catch (TimeoutException e) {
        throw new IOException("the front server (pid " + peer.pid() + ") did not print its"
            + " control port within " + Supervisor.PEER_START_TIMEOUT_MILLIS + " ms");
      } catch (ExecutionException e) {
        throw new IOException(e.getCause().getMessage(), e.getCause());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted");
      }
      ControlLink link = data.handshakeRetrying(port, peer.pid());
      if (!data.lifecycle().linkUnlessStopping(peer, link)) {
        // The stop found no link and sends SIGTERM to the front.
        throw new IOException("stopping");
      }
      link.start(data.frontLinkHandler(peer));
    } catch (IOException | RuntimeException e) {
      supervisor.abandonLaunch(peer);
      throw e;
    }
    peer.process.onExit().thenRun(() -> supervisor.peerDown(peer, peer.exitDescription()));
    return peer;
  }

  /**
   * The {@code front-stdout} thread: appends a relaunched front's stdout lines to its log file
   * and completes {@code controlPort} with the port of its first line {@code control port N}
   * (exceptionally if the output ends first: the front died during its start).
   */
  private static void pumpFrontStdout(Process front, Path logFile,
      CompletableFuture<Integer> controlPort) {
    try (BufferedReader r = new BufferedReader(
        new InputStreamReader(front.getInputStream(), StandardCharsets.UTF_8))) {
      for (String line; (line = r.readLine()) != null; ) {
        if (!controlPort.isDone() && line.startsWith(FrontServer.CONTROL_PORT_LINE)) {
          try {
            controlPort.complete(
                Integer.parseInt(line.substring(FrontServer.CONTROL_PORT_LINE.length()).trim()));
          } catch (NumberFormatException e) {
            controlPort.completeExceptionally(new IOException("bad control port line: " + line));
          }
        }
        try {
          Files.writeString(logFile, "[stdout] " + line + "\n", StandardCharsets.UTF_8,
              StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        } catch (IOException e) {
          // The log is a diagnostic aid; keep reading so the front never blocks on its stdout.
        }
      }
    } catch (IOException e) {
      // The front is gone; fall through.
    }
    controlPort.completeExceptionally(new IOException("the front server (pid " + front.pid()
        + ") ended its output before it printed its control port (it exited: see "
        + logFile + ")"));
  }
}
