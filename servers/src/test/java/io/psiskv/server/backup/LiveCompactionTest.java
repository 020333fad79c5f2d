package io.psiskv.server.backup;

import static com.google.common.truth.Truth.assertThat;

import io.psiskv.client.KvClient;
import io.psiskv.server.testkit.ServerFixture;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Compaction inside a running Data Server (PROTOCOL.md §11.5): once the log outgrows the live data
 * the maintenance thread rewrites it in the background, writes go on meanwhile, and the compacted
 * log reloads to the exact state after a SIGKILL.
 */
@Tag("process")
@Tag("server-pair")
class LiveCompactionTest {
  private static final int MIB = 1 << 20;
  private static final Duration TIMEOUT = Duration.ofSeconds(60);

  @RegisterExtension
  final ServerFixture server = ServerFixture.builder().build();

  private static byte[] value(int key, int version, int size) {
    byte[] v = new byte[size];
    Arrays.fill(v, (byte) (key * 31 + version));
    v[0] = (byte) version;
    return v;
  }

  @Test
  void theLogIsCompactedWhileClientsWriteAndReloadsExactlyAfterSigkill() throws Exception {
    Path log = server.dataDir().resolve(BackupLog.FILE_NAME);
    int rounds = (int) (BackupLog.COMPACT_MIN_FILE_BYTES / MIB) + 16;
    try (KvClient kv = KvClient.connect(server.host(), server.port())) {
      // Overwrite four 1 MiB keys again and again: the log grows to ~80 MiB, the live data
      // stays at 4 MiB, so the trigger (file > 64 MiB and > 2 x live) fires.
      for (int r = 0; r < rounds; r++) {
        kv.put(r % 4, value(r % 4, r, MIB));
      }
      assertThat(Files.size(log)).isGreaterThan(BackupLog.COMPACT_MIN_FILE_BYTES);
      // Keep writing small keys while the compaction runs, until the file has shrunk.
      int small = 0;
      long deadline = System.nanoTime() + TIMEOUT.toNanos();
      while (Files.size(log) > BackupLog.COMPACT_MIN_FILE_BYTES / 2) {
        assertThat(System.nanoTime()).isLessThan(deadline);
        kv.put(1000 + small, value(small, 1, 100));
        small++;
      }
      kv.put(-2, value(2000, 7, 10)); // a key no loop above uses
      assertThat(kv.remove(1000)).isTrue();
      server.awaitLog("compacted ", TIMEOUT);

      server.dataProcess().destroyForcibly(); // SIGKILL: the relaunched one replays the new log
      try (KvClient after = KvClient.connect(server.host(), server.port())) {
        for (int k = 0; k < 4; k++) {
          int lastRound = rounds - 1 - ((rounds - 1 - k) % 4);
          assertThat(after.get(k).orElseThrow()).isEqualTo(value(k, lastRound, MIB));
        }
        assertThat(after.get(1000)).isEmpty();
        for (int i = 1; i < small; i++) {
          assertThat(after.get(1000 + i).orElseThrow()).isEqualTo(value(i, 1, 100));
        }
        assertThat(after.get(-2).orElseThrow()).isEqualTo(value(2000, 7, 10));
      }
    }
    server.stop();
  }
}
