package io.psiskv.server;

import static com.google.common.truth.Truth.assertThat;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.psiskv.server.testkit.JavaChild;
import io.psiskv.server.testkit.Poll;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** One Data Server per data directory, with an error that names the holder. */
@Tag("process")
class DataDirLockTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(60);

  @TempDir Path tmp;

  @Test
  void lockFileHoldsThePidAndASecondLockInThisProcessFails() throws IOException {
    Path dir = tmp.resolve("data");
    try (DataDirLock lock = DataDirLock.acquire(dir)) {
      String pid = String.valueOf(ProcessHandle.current().pid());
      assertThat(Files.readString(lock.file()).trim()).isEqualTo(pid);
      IOException e = assertThrows(IOException.class, () -> DataDirLock.acquire(dir));
      assertThat(e).hasMessageThat().contains("pid " + pid);
      assertThat(e).hasMessageThat().contains(dir.toString());
    }
    DataDirLock.acquire(dir).close(); // released
  }

  @Test
  void lockHeldByAnotherProcessIsRefusedNamingItsPid() throws Exception {
    Path dir = tmp.resolve("data");
    try (JavaChild child = new JavaChild(DataDirLockChild.class, tmp.resolve("stderr.txt"),
        List.of(), dir.toString())) {
      Poll.require("the child to lock", TIMEOUT,
          () -> !child.lines.isEmpty() || !child.process.isAlive());
      assertThat(child.lines.get(0)).startsWith("LOCKED");
      IOException e = assertThrows(IOException.class, () -> DataDirLock.acquire(dir));
      assertThat(e).hasMessageThat().contains("in use by another psiskv Data Server");
      assertThat(e).hasMessageThat().contains("pid " + child.process.pid() + " holds");
      child.process.getOutputStream().close(); // the child releases and exits
      assertThat(child.finish()).isEqualTo(0);
    }
    try (DataDirLock lock = DataDirLock.acquire(dir)) {
      assertThat(Files.readString(lock.file()).trim())
          .isEqualTo(String.valueOf(ProcessHandle.current().pid()));
    }
  }

  @Test
  void anotherProcessIsRefusedWhileThisOneHoldsTheLockAndLockDiesWithItsHolder()
      throws Exception {
    Path dir = tmp.resolve("data");
    try (DataDirLock lock = DataDirLock.acquire(dir);
        JavaChild child = new JavaChild(DataDirLockChild.class, tmp.resolve("stderr.txt"),
            List.of(), dir.toString())) {
      assertThat(child.finish()).isEqualTo(0);
      assertThat(child.lines.get(0)).startsWith("REFUSED");
      assertThat(child.lines.get(0)).contains("pid " + ProcessHandle.current().pid());
    }
    // A holder killed with SIGKILL leaves the file but not the lock.
    try (JavaChild holder = new JavaChild(DataDirLockChild.class, tmp.resolve("stderr2.txt"),
        List.of(), dir.toString())) {
      Poll.require("the child to lock", TIMEOUT,
          () -> !holder.lines.isEmpty() || !holder.process.isAlive());
      assertThat(holder.lines.get(0)).startsWith("LOCKED");
      holder.kill();
    }
    DataDirLock.acquire(dir).close();
  }
}
