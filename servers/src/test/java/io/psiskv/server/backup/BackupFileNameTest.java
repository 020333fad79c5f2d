package io.psiskv.server.backup;

import static com.google.common.truth.Truth.assertThat;
import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.psiskv.client.KvClient;
import io.psiskv.server.testkit.ServerFixture;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * The backup file's name (PROTOCOL.md §11): {@value BackupLog#FILE_NAME}, which no {@code *.log}
 * rotation takes. A real server pair on a data directory holding the file under its old name
 * ({@value BackupLog#OLD_FILE_NAME}) renames it once and serves its keys; both names at once are
 * refused.
 */
@Tag("process")
class BackupFileNameTest {
  @TempDir Path dir;

  @RegisterExtension
  final ServerFixture server = ServerFixture.builder().manualStart().build();

  /** A data directory whose backup file holds keys 1 and 2, under the old name. */
  private Path oldDataDir() throws Exception {
    Path data = dir.resolve("data");
    ServerFixture first = ServerFixture.builder().manualStart().dataDir(data).build();
    first.start();
    try {
      try (KvClient c = KvClient.builder(first.host(), first.port()).connect()) {
        c.put(1, "one".getBytes(UTF_8));
        c.put(2, "two".getBytes(UTF_8));
      }
      assertThat(first.stop()).isEqualTo(0);
    } catch (Throwable t) {
      first.killBoth();
      throw t;
    }
    Files.move(data.resolve(BackupLog.FILE_NAME), data.resolve(BackupLog.OLD_FILE_NAME));
    return data;
  }

  @Test
  void theOldNameIsRenamedOnceAndItsKeysAreServed() throws Exception {
    Path data = oldDataDir();
    ServerFixture pair = ServerFixture.builder().manualStart().dataDir(data).build();
    pair.start();
    try {
      assertThat(Files.exists(data.resolve(BackupLog.OLD_FILE_NAME))).isFalse();
      assertThat(Files.exists(data.resolve(BackupLog.FILE_NAME))).isTrue();
      try (KvClient c = KvClient.builder(pair.host(), pair.port()).connect()) {
        assertThat(new String(c.get(1).orElseThrow(), UTF_8)).isEqualTo("one");
        assertThat(new String(c.get(2).orElseThrow(), UTF_8)).isEqualTo("two");
        c.put(3, "three".getBytes(UTF_8));
      }
      assertThat(pair.log()).contains("renamed the backup file "
          + data.resolve(BackupLog.OLD_FILE_NAME) + " to " + BackupLog.FILE_NAME);
      assertThat(pair.stop()).isEqualTo(0);
      // The next start finds the new name only: nothing to rename, the new key is there.
      pair.start();
      try (KvClient c = KvClient.builder(pair.host(), pair.port()).connect()) {
        assertThat(c.get(3)).isPresent();
      }
      assertThat(pair.log().split("renamed the backup file", -1)).hasLength(2);
      assertThat(pair.stop()).isEqualTo(0);
    } catch (Throwable t) {
      pair.killBoth();
      throw t;
    }
  }

  @Test
  void bothNamesAtOnceAreRefusedAndLeftAlone() throws Exception {
    Path data = oldDataDir();
    Path old = data.resolve(BackupLog.OLD_FILE_NAME);
    Path current = data.resolve(BackupLog.FILE_NAME);
    Files.copy(old, current);
    byte[] before = Files.readAllBytes(old);
    ServerFixture pair = ServerFixture.builder().manualStart().dataDir(data).build();
    IOException e = assertThrows(IOException.class, pair::start);
    String log = pair.log();
    pair.killBoth();
    assertThat(log).contains("holds both " + BackupLog.FILE_NAME + " (the backup file) and "
        + BackupLog.OLD_FILE_NAME);
    assertThat(log).doesNotContain("Exception");
    assertThat(e).hasMessageThat().contains("did not start");
    assertThat(Files.readAllBytes(old)).isEqualTo(before);
    assertThat(Files.readAllBytes(current)).isEqualTo(before);
  }
}
