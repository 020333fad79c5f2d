package io.psiskv.server.backup;

import static com.google.common.truth.Truth.assertThat;
import static io.psiskv.server.backup.BackupLogTestSupport.hexMap;
import static io.psiskv.server.backup.BackupLogTestSupport.replay;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.psiskv.protocol.Status;
import io.psiskv.server.backup.BackupLogTestSupport.Model;
import io.psiskv.server.testkit.Poll;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** Round trips through a real file: what is appended is exactly what replay reports. */
class BackupLogTest {
  @TempDir Path dir;

  /** Appends a mix of operations, recording what replay must report in order. */
  private static final class Writer {
    final BackupLog log;
    final Map<Integer, byte[]> model = new HashMap<>();
    final List<String> events = new ArrayList<>();
    long lastSeq;

    Writer(BackupLog log) {
      this.log = log;
    }

    void put(int key, byte[] value, long session, long request) throws IOException {
      long seq = log.appendPut(key, value, session, request, Status.OK.code());
      assertThat(seq).isGreaterThan(lastSeq);
      lastSeq = seq;
      log.awaitDurable(seq);
      model.put(key, value);
      events.add(String.format("put %s %s %d %d 0", Integer.toUnsignedString(key),
          BackupLogTestSupport.hex(value), session, request));
    }

    void delete(int key, long session, long request) throws IOException {
      long seq = log.appendDelete(key, session, request, Status.OK.code());
      lastSeq = seq;
      log.awaitDurable(seq);
      model.remove(key);
      events.add(String.format("delete %s %d %d 0", Integer.toUnsignedString(key), session,
          request));
    }

    void session(long session, long request, Status result) throws IOException {
      long seq = log.appendSession(session, request, result.code(), LogFormat.encodeSessionValue(new byte[16], 0, 0, 0, 0));
      lastSeq = seq;
      log.awaitDurable(seq);
      events.add(String.format("session %d %d %d", session, request, result.code()));
    }
  }

  private static byte[] bytes(int n, int seed) {
    byte[] b = new byte[n];
    new Random(seed).nextBytes(b);
    return b;
  }

  private static byte[] allByteValues() {
    byte[] b = new byte[256];
    for (int i = 0; i < 256; i++) {
      b[i] = (byte) i;
    }
    return b;
  }

  @ParameterizedTest
  @EnumSource(FsyncPolicy.class)
  void roundTripReplaysExactStateAndSessions(FsyncPolicy policy) throws IOException {
    Writer w;
    try (BackupLog log = BackupLog.open(dir, policy, new Model(),
        BackupLog.OpenOptions.defaults())) {
      w = new Writer(log);
      w.put(0, "zero".getBytes(), 11, 1);
      w.put(0xFFFFFFFF, allByteValues(), 11, 2);
      w.put(7, new byte[0], 12, 1);
      w.put(8, bytes(100, 1), 12, 2);
      w.put(8, bytes(90, 2), 12, 3); // overwrite
      w.delete(7, 11, 3); // delete of an empty value
      w.put(9, bytes(5, 3), 13, 1);
      w.delete(9, 13, 2);
      w.put(9, bytes(6, 4), 13, 3); // re-create after delete
      w.put(0x80000000, bytes(AppendBuffer.LARGE_VALUE_BYTES, 5), 14, 1); // referenced, not copied
      w.put(10, bytes(3 * LogFiles.WRITE_SLICE_BYTES + 17, 6), 14, 2); // written in slices
      w.put(11, bytes(1, 7), 0, 0); // no session
      w.session(15, 1, Status.KEY_EXISTS);
      w.delete(12, 15, 2); // tombstone for a key never written: replay must accept it
    }
    Model m = replay(dir);
    assertThat(m.hexMap()).containsExactlyEntriesIn(hexMap(w.model));
    assertThat(m.events).containsExactlyElementsIn(w.events).inOrder();
    assertThat(m.sessions).containsExactly(
        11L, List.of(3L, 0L), 12L, List.of(3L, 0L), 13L, List.of(3L, 0L),
        14L, List.of(2L, 0L), 15L, List.of(2L, 0L));
  }

  @Test
  void reopenAppendReopenKeepsEverythingInOrder() throws IOException {
    Map<Integer, byte[]> expected = new HashMap<>();
    for (int round = 0; round < 3; round++) {
      Model m = new Model();
      try (BackupLog log = BackupLog.open(dir, FsyncPolicy.ALWAYS, m,
          BackupLog.OpenOptions.defaults())) {
        assertThat(m.hexMap()).containsExactlyEntriesIn(hexMap(expected));
        Writer w = new Writer(log);
        for (int i = 0; i < 50; i++) {
          int key = (round * 31 + i) % 40;
          if (i % 7 == 3) {
            w.delete(key, 1, round * 100 + i);
            expected.remove(key);
          } else {
            byte[] v = bytes(i * 3, round * 1000 + i);
            w.put(key, v, 1, round * 100 + i);
            expected.put(key, v);
          }
        }
      }
    }
    assertThat(replay(dir).hexMap()).containsExactlyEntriesIn(hexMap(expected));
  }

  @Test
  void newLogIsJustTheHeaderAndStatsMatchTheFile() throws IOException {
    Path file = dir.resolve(BackupLog.FILE_NAME);
    try (BackupLog log = BackupLog.open(dir, FsyncPolicy.ALWAYS, new Model(),
        BackupLog.OpenOptions.defaults())) {
      assertThat(Files.size(file)).isEqualTo(LogFormat.HEADER_BYTES);
      assertThat(log.stats().fileBytes()).isEqualTo(LogFormat.HEADER_BYTES);
      assertThat(log.stats().fileRecords()).isEqualTo(0);
      log.awaitDurable(log.appendPut(1, new byte[10], 1, 1, 0));
      log.awaitDurable(log.appendDelete(1, 1, 2, 0));
      BackupLog.Stats s = log.stats();
      assertThat(s.fileBytes()).isEqualTo(LogFormat.HEADER_BYTES
          + 2L * LogFormat.RECORD_FIXED_BYTES + 10);
      assertThat(s.fileBytes()).isEqualTo(Files.size(file));
      assertThat(s.fileRecords()).isEqualTo(2);
      assertThat(s.appends()).isEqualTo(2);
      assertThat(s.syncs()).isAtLeast(1);
      assertThat(s.lastSyncMillis()).isGreaterThan(0);
      assertThat(s.failed()).isFalse();
    }
    try (BackupLog log = BackupLog.open(dir, FsyncPolicy.ALWAYS, new Model(),
        BackupLog.OpenOptions.defaults())) {
      assertThat(log.stats().fileRecords()).isEqualTo(2);
    }
  }

  @Test
  void closeWritesPendingRecordsAndThenRefusesAppends() throws IOException {
    BackupLog log = BackupLog.open(dir, FsyncPolicy.NO, new Model(),
        BackupLog.OpenOptions.defaults());
    long seq = 0;
    for (int i = 0; i < 100; i++) {
      seq = log.appendPut(i, new byte[] {(byte) i}, 1, i + 1, 0);
    }
    log.close();
    log.awaitDurable(seq); // written by close
    IOException e = assertThrows(IOException.class, () -> log.appendPut(1, new byte[1], 1, 1, 0));
    assertThat(e).hasMessageThat().contains("closed");
    assertThrows(IOException.class, log::checkWritable);
    log.close(); // idempotent
    assertThat(replay(dir).map).hasSize(100);
  }

  @Test
  void rejectsBadArguments() throws IOException {
    try (BackupLog log = BackupLog.open(dir, FsyncPolicy.ALWAYS, new Model(),
        BackupLog.OpenOptions.defaults())) {
      assertThrows(IllegalArgumentException.class, () -> log.appendPut(1, new byte[1], 1, 1, 256));
      assertThrows(IllegalArgumentException.class, () -> log.appendDelete(1, 1, 1, -1));
      assertThrows(NullPointerException.class, () -> log.appendPut(1, null, 1, 1, 0));
      assertThrows(IllegalArgumentException.class, () -> log.awaitDurable(1));
      log.awaitDurable(0); // nothing to wait for
    }
  }

  @Test
  void policyParsesConfigurationValues() {
    assertThat(FsyncPolicy.parse("always")).isEqualTo(FsyncPolicy.ALWAYS);
    assertThat(FsyncPolicy.parse(" EverySec ")).isEqualTo(FsyncPolicy.EVERYSEC);
    assertThat(FsyncPolicy.parse("no")).isEqualTo(FsyncPolicy.NO);
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> FsyncPolicy.parse("sometimes"));
    assertThat(e).hasMessageThat().contains("always, everysec or no");
  }

  @Test
  void everysecForcesInTheBackground() throws IOException {
    try (BackupLog log = BackupLog.open(dir, FsyncPolicy.EVERYSEC, new Model(),
        BackupLog.OpenOptions.defaults())) {
      log.awaitDurable(log.appendPut(1, new byte[1], 1, 1, 0));
      // Acknowledged once written; the force follows within the interval.
      Poll.require("a background force", java.time.Duration.ofSeconds(10),
          () -> log.stats().syncs() >= 1);
    }
  }
}
