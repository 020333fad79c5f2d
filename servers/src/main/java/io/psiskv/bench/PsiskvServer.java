package io.psiskv.bench;

import io.psiskv.server.control.JavaCommand;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A psiskv pair started as a user would: {@code java -jar psiskv-server.jar --port 0 --data-dir
 * DIR [options]}. Its stdout says {@code data server pid P port Q} and then {@code psiskv front
 * server listening on ADDR:PORT}; stderr goes to {@code server.log} in the work directory. Stopped
 * by {@code quit} on the console (stdin), as README says, killed only if that does not end it in
 * time.
 */
final class PsiskvServer extends BenchServer {
  private static final Pattern DATA_LINE = Pattern.compile("data server pid (\\d+) port (\\d+)");
  private static final Pattern LISTENING_LINE =
      Pattern.compile("psiskv front server listening on (\\S+):(\\d+)");

  private final Path jar;
  private final List<String> options;
  private Process process;
  private volatile int frontPort;
  private int dataPort;
  private long dataPid;

  PsiskvServer(String label, Path jar, List<String> options, Path workDir) {
    super(label, Kind.PSISKV, workDir);
    this.jar = jar;
    this.options = List.copyOf(options);
  }

  @Override
  List<String> command() {
    List<String> cmd = new ArrayList<>(List.of(JavaCommand.javaBinary(), "-jar", jar.toString(), "--port",
        "0", "--data-dir", workDir.resolve("data").toString()));
    cmd.addAll(options);
    return cmd;
  }

  @Override
  void start() throws IOException {
    Files.createDirectories(workDir);
    process = new ProcessBuilder(command())
        .redirectError(ProcessBuilder.Redirect.appendTo(workDir.resolve("server.log").toFile()))
        .start();
    BufferedReader out = new BufferedReader(
        new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(START_TIMEOUT_MILLIS);
    // readLine blocks, but the server either prints the lines or exits (end of stream) quickly;
    // a watchdog kills a server that does neither within the deadline.
    Thread watchdog = new Thread(() -> {
      try {
        if (!process.waitFor(START_TIMEOUT_MILLIS, TimeUnit.MILLISECONDS) && frontPort == 0) {
          process.descendants().forEach(ProcessHandle::destroyForcibly);
          process.destroyForcibly();
        }
      } catch (InterruptedException e) {
        // Started: nothing to watch.
      }
    }, "psiskv-start-watchdog");
    watchdog.setDaemon(true);
    watchdog.start();
    try {
      for (String line; (line = out.readLine()) != null && System.nanoTime() < deadline; ) {
        Matcher data = DATA_LINE.matcher(line);
        if (data.find()) {
          dataPid = Long.parseLong(data.group(1));
          dataPort = Integer.parseInt(data.group(2));
        }
        Matcher listening = LISTENING_LINE.matcher(line);
        if (listening.find()) {
          frontPort = Integer.parseInt(listening.group(2));
          break;
        }
      }
    } finally {
      watchdog.interrupt();
    }
    if (frontPort == 0 || dataPid == 0) {
      close();
      throw new IOException("psiskv did not start (" + String.join(" ", command()) + "); its"
          + " log:\n" + logTail());
    }
    // Keep reading stdout, so that the console's output never fills the pipe.
    Thread drain = new Thread(() -> {
      try {
        while (out.readLine() != null) {
          // Discarded: status lines only.
        }
      } catch (IOException e) {
        // The process is gone.
      }
    }, "psiskv-stdout");
    drain.setDaemon(true);
    drain.start();
  }

  @Override
  int port() {
    return frontPort;
  }

  /** The Data Server's client port (the hostile phase connects there directly). */
  int dataPort() {
    return dataPort;
  }

  /**
   * The Data Server's pid: the current one from {@code data.pid} (the Front Server relaunches a
   * Data Server that died), else the one printed at start.
   */
  @Override
  long measuredPid() {
    try {
      String text = Files.readString(workDir.resolve("data").resolve("data.pid")).trim();
      return Long.parseLong(text);
    } catch (IOException | NumberFormatException e) {
      return dataPid;
    }
  }

  /** The Data Server pid printed at start. */
  long firstDataPid() {
    return dataPid;
  }

  @Override
  public void close() {
    if (process == null) {
      return;
    }
    Process p = process;
    process = null;
    try (OutputStream console = p.getOutputStream()) {
      console.write("quit\n".getBytes(StandardCharsets.UTF_8));
    } catch (IOException e) {
      // Already gone.
    }
    try {
      if (!p.waitFor(STOP_TIMEOUT_MILLIS, TimeUnit.MILLISECONDS)) {
        System.err.println("psiskv-bench: " + label + " did not stop on quit within "
            + STOP_TIMEOUT_MILLIS / 1000 + " s: killing it");
        p.descendants().forEach(ProcessHandle::destroyForcibly);
        p.destroyForcibly();
        p.waitFor(STOP_TIMEOUT_MILLIS, TimeUnit.MILLISECONDS);
      }
    } catch (InterruptedException e) {
      p.descendants().forEach(ProcessHandle::destroyForcibly);
      p.destroyForcibly();
      Thread.currentThread().interrupt();
    }
    // A Data Server relaunched by the Front Server is its child too; one adopted after a Front
    // Server crash would not be: stop it by its pid file's pid.
    String dir = workDir.toString();
    ProcessHandle.of(measuredPid())
        .filter(h -> h.info().commandLine().map(c -> c.contains("DataServer") && c.contains(dir))
            .orElse(false))
        .ifPresent(ProcessHandle::destroyForcibly);
  }
}
