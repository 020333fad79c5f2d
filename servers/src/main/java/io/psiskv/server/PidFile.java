package io.psiskv.server;

import io.psiskv.server.control.Supervisor;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Optional;

/**
 * The pid files in the data directory: {@value #FRONT} and {@value #DATA} hold the pid of the
 * running Front Server and Data Server (one decimal line). {@code build-scripts/psiskv-stop}
 * reads them to stop a pair; the Front Server reads them to refuse a second pair on one data
 * directory. Each process writes its own file at start and deletes it on an orderly exit; a file
 * left by a crash is recognised as stale because its process is gone.
 */
public final class PidFile {
  public static final String FRONT = "front.pid";
  public static final String DATA = "data.pid";

  private static final long PID = ProcessHandle.current().pid();

  private PidFile() {}

  /** Writes this process's pid; atomic (temp file and rename) so a reader never sees half. */
  static void write(Path dir, String name) throws IOException {
    Path tmp = dir.resolve(name + ".tmp");
    Files.deleteIfExists(tmp);
    Files.createFile(tmp);
    PrivateFiles.file(tmp);
    Files.writeString(tmp, PID + "\n", StandardCharsets.US_ASCII);
    Files.move(tmp, dir.resolve(name), StandardCopyOption.REPLACE_EXISTING,
        StandardCopyOption.ATOMIC_MOVE);
  }

  /** Deletes the file if it still names this process; best effort (called on the exit path). */
  static void deleteIfOurs(Path dir, String name) {
    Path file = dir.resolve(name);
    try {
      if (read(file).orElse(-1L) == PID) {
        Files.deleteIfExists(file);
      }
    } catch (IOException e) {
      ServerLog.info("could not delete " + file + ": " + ServerLog.describe(e));
    }
  }

  /**
   * The live psiskv process named by the file, if any: a pid whose process is gone (or a zombie:
   * dead, waiting for init to reap it), or whose command line does not mention psiskv (the pid
   * was reused), counts as stale.
   */
  static Optional<ProcessHandle> livePeer(Path dir, String name) {
    Path file = dir.resolve(name);
    try {
      Optional<Long> pid = read(file);
      if (pid.isEmpty() || pid.get() == PID) {
        return Optional.empty();
      }
      return ProcessHandle.of(pid.get())
          .filter(p -> !Supervisor.isGone(p))
          .filter(p -> p.info().commandLine().map(c -> c.contains("psiskv")).orElse(true));
    } catch (IOException e) {
      return Optional.empty();
    }
  }

  private static Optional<Long> read(Path file) throws IOException {
    if (!Files.exists(file)) {
      return Optional.empty();
    }
    try {
      return Optional.of(Long.parseLong(Files.readString(file, StandardCharsets.US_ASCII).trim()));
    } catch (NumberFormatException e) {
      return Optional.empty();
    }
  }
}
