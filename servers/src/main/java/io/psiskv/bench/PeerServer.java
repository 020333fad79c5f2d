package io.psiskv.bench;

import java.io.File;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A peer store started for a comparison, on a free loopback port, in the foreground (no daemon), its
 * output in {@code server.log}: Redis 7 without persistence, Redis with the append-only file
 * fsynced on every write, memcached. Ready when its port accepts a connection; stopped with
 * SIGTERM (both exit at once), killed if that does not end it in time.
 */
final class PeerServer extends BenchServer {
  private static final long POLL_MILLIS = 20;

  private final List<String> commandWithoutPort;
  private int port;
  private Process process;

  private PeerServer(String label, Kind kind, Path workDir, List<String> commandWithoutPort) {
    super(label, kind, workDir);
    this.commandWithoutPort = List.copyOf(commandWithoutPort);
  }

  /** Redis, nothing persisted. */
  static PeerServer redis(Path workDir) {
    return new PeerServer("redis", Kind.REDIS, workDir, List.of("redis-server", "--bind",
        "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workDir.toString()));
  }

  /** Redis with every write in the append-only file and fsynced before the reply. */
  static PeerServer redisAof(Path workDir) {
    return new PeerServer("redis AOF always", Kind.REDIS, workDir, List.of("redis-server",
        "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always",
        "--dir", workDir.toString()));
  }

  /** memcached with 2 worker threads (the machine's cores), TCP only, 4 GiB of item memory. */
  static PeerServer memcached(Path workDir) {
    List<String> cmd = new ArrayList<>(List.of("memcached", "-t", "2", "-l", "127.0.0.1", "-U",
        "0", "-m", "4096"));
    if ("root".equals(System.getProperty("user.name"))) {
      cmd.addAll(List.of("-u", "root")); // memcached refuses to run as root without it.
    }
    return new PeerServer("memcached", Kind.MEMCACHED, workDir, cmd);
  }

  @Override
  List<String> command() {
    List<String> cmd = new ArrayList<>(commandWithoutPort);
    if (kind == Kind.REDIS) {
      cmd.addAll(1, List.of("--port", Integer.toString(port)));
    } else {
      cmd.addAll(1, List.of("-p", Integer.toString(port)));
    }
    return cmd;
  }

  /** Attempts at start: the free port picked may be taken by another process before it binds. */
  private static final int START_ATTEMPTS = 3;

  @Override
  void start() throws IOException {
    for (int attempt = 1; ; attempt++) {
      try {
        startOnce();
        return;
      } catch (ExitedAtStart e) {
        if (attempt == START_ATTEMPTS) {
          throw e;
        }
      }
    }
  }

  /** The process exited before it listened (a port taken in the meantime, a bad option). */
  private static final class ExitedAtStart extends IOException {
    private static final long serialVersionUID = 1L;

    ExitedAtStart(String message) {
      super(message);
    }
  }

  private void startOnce() throws IOException {
    Files.createDirectories(workDir);
    try (ServerSocket probe = new ServerSocket(0, 1,
        InetAddress.getLoopbackAddress())) {
      port = probe.getLocalPort(); // Free now; the server binds it a moment later.
    }
    process = new ProcessBuilder(command())
        .redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(workDir.resolve("server.log").toFile()))
        .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
        .start();
    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(START_TIMEOUT_MILLIS);
    while (System.nanoTime() < deadline) {
      if (!process.isAlive()) {
        process = null;
        throw new ExitedAtStart(label + " exited at start (" + String.join(" ", command())
            + "); its log:\n" + logTail());
      }
      try (Socket s = new Socket()) {
        s.connect(new InetSocketAddress("127.0.0.1", port), 1000);
        return;
      } catch (IOException notYet) {
        sleep(POLL_MILLIS);
      }
    }
    close();
    throw new IOException(label + " did not listen on port " + port + " within "
        + START_TIMEOUT_MILLIS / 1000 + " s; its log:\n" + logTail());
  }

  @Override
  int port() {
    return port;
  }

  @Override
  long measuredPid() {
    return process == null ? 0 : process.pid();
  }

  @Override
  public void close() {
    if (process == null) {
      return;
    }
    Process p = process;
    process = null;
    p.destroy();
    try {
      if (!p.waitFor(STOP_TIMEOUT_MILLIS, TimeUnit.MILLISECONDS)) {
        p.destroyForcibly();
        p.waitFor(STOP_TIMEOUT_MILLIS, TimeUnit.MILLISECONDS);
      }
    } catch (InterruptedException e) {
      p.destroyForcibly();
      Thread.currentThread().interrupt();
    }
  }

  private static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
