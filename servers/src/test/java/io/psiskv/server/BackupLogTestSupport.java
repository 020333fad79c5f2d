package io.psiskv.server;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.BooleanSupplier;

/** Helpers shared by the backup log tests: a replay model, child JVMs, polling with a deadline. */
final class BackupLogTestSupport {
  private BackupLogTestSupport() {}

  /** Rebuilds the map and the session table from a replay, as the Data Server would. */
  static final class Model implements BackupLog.Replay {
    final Map<Integer, byte[]> map = new HashMap<>();
    /** session -> {requestId, result} of its last record. */
    final Map<Long, List<Long>> sessions = new HashMap<>();
    final List<String> events = new ArrayList<>();

    @Override
    public void put(int key, byte[] value, long session, long requestId, int result) {
      map.put(key, value);
      note(session, requestId, result);
      events.add(String.format("put %s %s %d %d %d", Integer.toUnsignedString(key), hex(value),
          session, requestId, result));
    }

    @Override
    public void delete(int key, long session, long requestId, int result) {
      map.remove(key);
      note(session, requestId, result);
      events.add(String.format("delete %s %d %d %d", Integer.toUnsignedString(key), session,
          requestId, result));
    }

    @Override
    public void session(long session, long requestId, int result, byte[] info) {
      note(session, requestId, result);
      events.add(String.format("session %d %d %d", session, requestId, result));
    }

    private void note(long session, long requestId, int result) {
      if (session != LogFormat.NO_SESSION) {
        sessions.put(session, List.of(requestId, (long) result));
      }
    }

    /** The map with hex values, comparable with Truth. */
    Map<Integer, String> hexMap() {
      return BackupLogTestSupport.hexMap(map);
    }
  }

  static Map<Integer, String> hexMap(Map<Integer, byte[]> m) {
    Map<Integer, String> out = new TreeMap<>();
    m.forEach((k, v) -> out.put(k, hex(v)));
    return out;
  }

  static String hex(byte[] b) {
    return HexFormat.of().formatHex(b);
  }

  /** Opens the log in {@code dir}, replays it into a fresh model and closes it again. */
  static Model replay(Path dir) throws IOException {
    Model m = new Model();
    try (BackupLog log = BackupLog.open(dir, FsyncPolicy.ALWAYS, m,
        BackupLog.OpenOptions.defaults())) {
      return m;
    }
  }

  static BackupLog open(Path dir, Model m) throws IOException {
    return BackupLog.open(dir, FsyncPolicy.ALWAYS, m, BackupLog.OpenOptions.defaults());
  }

  /** Waits until {@code cond} holds, failing after {@code timeout}. Polls; never a fixed sleep. */
  static void pollUntil(String what, Duration timeout, BooleanSupplier cond) {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!cond.getAsBoolean()) {
      if (System.nanoTime() - deadline > 0) {
        throw new AssertionError("timed out after " + timeout + " waiting for " + what);
      }
      try {
        Thread.sleep(2); // a poll interval, not synchronisation: the condition decides
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new AssertionError("interrupted waiting for " + what);
      }
    }
  }

  /** A child JVM running {@code main} with this JVM's classpath; stdout lines are collected. */
  static final class Child implements AutoCloseable {
    final Process process;
    final List<String> lines = new CopyOnWriteArrayList<>();
    final Path stderr;
    private final Thread reader;

    Child(Class<?> main, Path stderr, List<String> jvmArgs, String... args) throws IOException {
      this.stderr = stderr;
      List<String> cmd = new ArrayList<>();
      cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
      cmd.add("-Xmx256m");
      cmd.add("-XX:TieredStopAtLevel=1");
      cmd.addAll(jvmArgs);
      cmd.add("-cp");
      cmd.add(System.getProperty("java.class.path"));
      cmd.add(main.getName());
      cmd.addAll(List.of(args));
      process = new ProcessBuilder(cmd)
          .redirectError(stderr.toFile())
          .redirectInput(ProcessBuilder.Redirect.PIPE)
          .start();
      reader = new Thread(() -> {
        try (BufferedReader r = new BufferedReader(
            new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
          String line;
          while ((line = r.readLine()) != null) {
            lines.add(line);
          }
        } catch (IOException e) {
          // The child died; what was read is what it printed.
        }
      }, "child-stdout");
      reader.setDaemon(true);
      reader.start();
    }

    /** SIGKILL (destroyForcibly on Linux), then collect every line printed before the kill. */
    int kill() throws InterruptedException {
      process.destroyForcibly();
      return finish();
    }

    /** Waits for the child to exit by itself (bounded) and for its output to be read. */
    int finish() throws InterruptedException {
      if (!process.waitFor(60, java.util.concurrent.TimeUnit.SECONDS)) {
        process.destroyForcibly();
        throw new AssertionError("child did not exit; stderr: " + stderrText());
      }
      reader.join(10_000);
      return process.exitValue();
    }

    String stderrText() {
      try {
        return Files.exists(stderr) ? Files.readString(stderr) : "";
      } catch (IOException e) {
        return e.toString();
      }
    }

    @Override
    public void close() {
      if (process.isAlive()) {
        process.destroyForcibly();
        try {
          process.waitFor(30, java.util.concurrent.TimeUnit.SECONDS);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      }
    }
  }
}
