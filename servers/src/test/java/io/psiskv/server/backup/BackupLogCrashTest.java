package io.psiskv.server.backup;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;

import io.psiskv.server.backup.BackupLogTestSupport.Model;
import io.psiskv.server.testkit.JavaChild;
import io.psiskv.server.testkit.Poll;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Real crashes: a child JVM ({@link BackupLogCrashChild}) writes from several threads and prints
 * each acknowledged write; the test kills it with SIGKILL (or it halts itself at a compaction
 * step), reopens the log here and checks every acknowledged write is there with its exact value.
 */
@Tag("process")
class BackupLogCrashTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(60);
  private static final int THREADS = 8;

  @TempDir Path tmp;

  /**
   * Checks the recovered state against the acknowledgements. Exact because each overwrite key is
   * written by one thread in increasing versions (an acknowledged version v means the recovered
   * version is v or later, and the value is exactly that version's bytes), and each unique key is
   * written once and deleted once.
   */
  static void verify(Path dir, List<String> lines) throws Exception {
    Map<Integer, Integer> ackedVersion = new HashMap<>();
    Set<Integer> uniquePut = new HashSet<>();
    Set<Integer> uniqueDeleted = new HashSet<>();
    for (String line : lines) {
      String[] f = line.split(" ");
      switch (f[0]) {
        case "P":
          ackedVersion.merge(Integer.parseInt(f[1]), Integer.parseInt(f[2]), Math::max);
          break;
        case "U":
          uniquePut.add(Integer.parseInt(f[1]));
          break;
        case "D":
          uniqueDeleted.add(Integer.parseInt(f[1]));
          break;
        default:
          break; // COMPACTED, HALT
      }
    }
    Model m = BackupLogTestSupport.replay(dir);
    assertThat(Files.exists(dir.resolve(BackupLog.COMPACT_FILE_NAME))).isFalse();
    for (Map.Entry<Integer, byte[]> e : m.map.entrySet()) {
      int key = e.getKey();
      if (key >= BackupLogCrashChild.UNIQUE_KEY_BASE) {
        assertWithMessage("unique key %s", key).that(uniqueDeleted).doesNotContain(key);
        assertWithMessage("unique key %s", key).that(e.getValue())
            .isEqualTo(BackupLogCrashChild.valueFor(key, 0));
      } else {
        int v = BackupLogCrashChild.versionOf(e.getValue());
        assertWithMessage("key %s", key).that(e.getValue())
            .isEqualTo(BackupLogCrashChild.valueFor(key, v));
      }
    }
    for (Map.Entry<Integer, Integer> e : ackedVersion.entrySet()) {
      byte[] value = m.map.get(e.getKey());
      assertWithMessage("acknowledged key %s", e.getKey()).that(value).isNotNull();
      assertWithMessage("version of key %s", e.getKey())
          .that(BackupLogCrashChild.versionOf(value)).isAtLeast(e.getValue());
    }
    for (int key : uniquePut) {
      if (!uniqueDeleted.contains(key) && m.map.containsKey(key)) {
        assertThat(m.map.get(key)).isEqualTo(BackupLogCrashChild.valueFor(key, 0));
      }
    }
  }

  private static long count(List<String> lines, String prefix) {
    return lines.stream().filter(l -> l.startsWith(prefix)).count();
  }

  @Test
  void sigkillLosesNoAcknowledgedWrite() throws Exception {
    Path dir = tmp.resolve("data");
    try (JavaChild child = new JavaChild(BackupLogCrashChild.class, tmp.resolve("stderr.txt"),
        List.of(), dir.toString(), "write", String.valueOf(THREADS))) {
      Poll.require("3000 acknowledgements", TIMEOUT, () -> child.lines.size() >= 3000
          || !child.process.isAlive());
      assertWithMessage("child died: %s", child.stderrText()).that(child.process.isAlive())
          .isTrue();
      child.kill();
      assertThat(child.lines.size()).isAtLeast(3000);
      verify(dir, child.lines);
    }
  }

  @Test
  void sigkillDuringRepeatedCompactionsLosesNoAcknowledgedWrite() throws Exception {
    Path dir = tmp.resolve("data");
    try (JavaChild child = new JavaChild(BackupLogCrashChild.class, tmp.resolve("stderr.txt"),
        List.of(), dir.toString(), "compact", String.valueOf(THREADS))) {
      Poll.require("3 compactions", TIMEOUT, () -> count(child.lines, "COMPACTED") >= 3
          || !child.process.isAlive());
      assertWithMessage("child died: %s", child.stderrText()).that(child.process.isAlive())
          .isTrue();
      child.kill();
      verify(dir, child.lines);
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"compact.after-snapshot", "compact.before-switch",
      "compact.before-rename", "compact.after-rename", "compact.after-switch"})
  void crashAtEachCompactionStepLosesNoAcknowledgedWrite(String point) throws Exception {
    Path dir = tmp.resolve("data");
    try (JavaChild child = new JavaChild(BackupLogCrashChild.class, tmp.resolve("stderr.txt"),
        List.of("-Dpsiskv.test.haltAt=" + point), dir.toString(), "compact",
        String.valueOf(THREADS))) {
      int status = child.finish();
      assertWithMessage("exit status; stderr: %s", child.stderrText()).that(status)
          .isEqualTo(BackupLogCrashChild.HALT_STATUS);
      assertThat(child.lines).contains("HALT " + point);
      assertThat(count(child.lines, "P "))
          .isAtLeast(BackupLogCrashChild.ACKS_BEFORE_COMPACTING / 2);
      verify(dir, child.lines);
    }
  }
}
