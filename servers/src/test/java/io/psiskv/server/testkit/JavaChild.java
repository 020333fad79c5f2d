package io.psiskv.server.testkit;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A child JVM running {@code main} with this JVM's classpath; its stdout lines are collected as
 * they arrive, its stderr goes to a file. For tests whose subject is a process: a crash, a lock
 * held by another process.
 */
public final class JavaChild implements AutoCloseable {
  public final Process process;
  public final List<String> lines = new CopyOnWriteArrayList<>();
  public final Path stderr;
  private final Thread reader;

  public JavaChild(Class<?> main, Path stderr, List<String> jvmArgs, String... args)
      throws IOException {
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
  public int kill() throws InterruptedException {
    process.destroyForcibly();
    return finish();
  }

  /** Waits for the child to exit by itself (bounded) and for its output to be read. */
  public int finish() throws InterruptedException {
    if (!process.waitFor(60, java.util.concurrent.TimeUnit.SECONDS)) {
      process.destroyForcibly();
      throw new AssertionError("child did not exit; stderr: " + stderrText());
    }
    reader.join(10_000);
    return process.exitValue();
  }

  public String stderrText() {
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
