package io.psiskv.server.backup;

import static com.google.common.truth.Truth.assertThat;
import static io.psiskv.server.backup.BackupLogTestSupport.hexMap;
import static io.psiskv.server.backup.BackupLogTestSupport.replay;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.psiskv.protocol.Header;
import io.psiskv.server.backup.BackupLogTestSupport.Model;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The recovery rule of PROTOCOL.md §11.3 on real files, damaged in every way the rule names. */
class BackupLogRecoveryTest {
  @TempDir Path tmp;
  Path dir;
  Path file;
  /** The state before the last record, the file length then, and the full state and file. */
  Map<Integer, byte[]> before;
  long lastRecordStart;
  Map<Integer, byte[]> all;
  byte[] full;
  /** Offsets at which each record starts. */
  final List<Long> recordStarts = new ArrayList<>();

  @BeforeEach
  void writeLog() throws IOException {
    dir = tmp.resolve("data");
    file = dir.resolve(BackupLog.FILE_NAME);
    Map<Integer, byte[]> model = new HashMap<>();
    try (BackupLog log = BackupLog.open(dir, FsyncPolicy.ALWAYS, new Model(),
        BackupLog.OpenOptions.defaults())) {
      for (int i = 0; i < 20; i++) {
        recordStarts.add(log.stats().fileBytes());
        byte[] v = value(i);
        log.awaitDurable(log.appendPut(i % 8, v, 5, i + 1, 0));
        model.put(i % 8, v);
      }
      recordStarts.add(log.stats().fileBytes());
      log.awaitDurable(log.appendDelete(3, 5, 21, 0));
      model.remove(3);
      before = new HashMap<>(model);
      lastRecordStart = log.stats().fileBytes();
      recordStarts.add(lastRecordStart);
      byte[] last = value(99);
      log.awaitDurable(log.appendPut(3, last, 5, 22, 0));
      model.put(3, last);
      all = model;
    }
    full = Files.readAllBytes(file);
  }

  private static byte[] value(int i) {
    byte[] v = new byte[10 + i * 3 % 50];
    Arrays.fill(v, (byte) (i + 1));
    return v;
  }

  private void writeFile(byte[] content) throws IOException {
    Files.write(file, content);
  }

  @Test
  void tornTailAtEveryByteOfTheLastRecordReloadsTheStateBeforeIt() throws IOException {
    assertThat(replay(dir).hexMap()).containsExactlyEntriesIn(hexMap(all));
    for (long len = lastRecordStart; len < full.length; len++) {
      writeFile(Arrays.copyOf(full, (int) len));
      Model m = replay(dir);
      assertThat(m.hexMap()).containsExactlyEntriesIn(hexMap(before));
      assertThat(m.events).hasSize(21);
      assertThat(Files.size(file)).isEqualTo(lastRecordStart);
    }
  }

  @Test
  void lastRecordWithBadChecksumIsATornTail() throws IOException {
    byte[] b = full.clone();
    b[b.length - 2] ^= 0x40; // inside the last value; the record still ends at EOF
    writeFile(b);
    assertThat(replay(dir).hexMap()).containsExactlyEntriesIn(hexMap(before));
    assertThat(Files.size(file)).isEqualTo(lastRecordStart);
  }

  @Test
  void zeroFilledTailIsATornTail() throws IOException {
    byte[] b = Arrays.copyOf(full, full.length + 4096); // extent allocated, never written
    writeFile(b);
    assertThat(replay(dir).hexMap()).containsExactlyEntriesIn(hexMap(all));
    assertThat(Files.size(file)).isEqualTo(full.length);
  }

  @Test
  void tailClaimingAHugeValueIsTornAndNothingIsAllocated() throws IOException {
    // A consistent record header claiming the largest value, then a few bytes: a partial record.
    byte[] fixed = new byte[LogFormat.RECORD_FIXED_BYTES + 10];
    Header.putU32(fixed, LogFormat.OFF_LENGTH, LogFormat.BODY_FIXED_BYTES
        + LogFormat.MAX_VALUE_BYTES);
    fixed[LogFormat.OFF_OP] = LogFormat.OP_PUT;
    Header.putU32(fixed, LogFormat.OFF_VALUE_LENGTH, LogFormat.MAX_VALUE_BYTES);
    byte[] b = Arrays.copyOf(full, full.length + fixed.length);
    System.arraycopy(fixed, 0, b, full.length, fixed.length);
    writeFile(b);
    // The test JVM's heap is far smaller than 2 GiB: an allocation would fail the test.
    assertThat(replay(dir).hexMap()).containsExactlyEntriesIn(hexMap(all));
    assertThat(Files.size(file)).isEqualTo(full.length);
  }

  @Test
  void flippedByteInTheMiddleIsRefusedWithAClearMessageAndNothingChanges() throws IOException {
    long damaged = recordStarts.get(10);
    byte[] b = full.clone();
    b[(int) damaged + LogFormat.RECORD_FIXED_BYTES + 2] ^= 0x01; // in record 10's value
    writeFile(b);
    IOException e = assertThrows(IOException.class, () -> replay(dir));
    assertThat(e).hasMessageThat().contains(file.toString());
    assertThat(e).hasMessageThat().contains("damaged at offset " + damaged);
    assertThat(e).hasMessageThat().contains("checksum mismatch");
    assertThat(e).hasMessageThat().contains("build-scripts/psiskv-check");
    assertThat(e).hasMessageThat().contains("salvage");
    assertThat(Files.readAllBytes(file)).isEqualTo(b);
  }

  @Test
  void corruptLengthFieldInTheMiddleIsRefusedNotTakenForATornTail() throws IOException {
    long damaged = recordStarts.get(5);
    byte[] b = full.clone();
    b[(int) damaged + LogFormat.OFF_LENGTH + 1] ^= 0x10; // claims ~1 MiB more: past EOF
    writeFile(b);
    IOException e = assertThrows(IOException.class, () -> replay(dir));
    assertThat(e).hasMessageThat().contains("damaged at offset " + damaged);
    assertThat(e).hasMessageThat().contains("does not match value length");
    assertThat(Files.readAllBytes(file)).isEqualTo(b);
  }

  @Test
  void salvageCopiesTheFileAsideAndKeepsTheRecordsBeforeTheDamage() throws IOException {
    long damaged = recordStarts.get(10);
    byte[] b = full.clone();
    b[(int) damaged + LogFormat.OFF_KEY] ^= 0x01;
    writeFile(b);
    // The expected state: the first 10 records.
    Map<Integer, byte[]> expected = new HashMap<>();
    for (int i = 0; i < 10; i++) {
      expected.put(i % 8, value(i));
    }
    Model m = new Model();
    try (BackupLog log = BackupLog.open(dir, FsyncPolicy.ALWAYS, m,
        BackupLog.OpenOptions.defaults().salvage(true))) {
      assertThat(m.hexMap()).containsExactlyEntriesIn(hexMap(expected));
      log.awaitDurable(log.appendPut(100, new byte[] {1}, 6, 1, 0)); // and it works on
      expected.put(100, new byte[] {1});
    }
    assertThat(replay(dir).hexMap()).containsExactlyEntriesIn(hexMap(expected));
    List<Path> copies = new ArrayList<>();
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir,
        BackupLog.DAMAGED_FILE_PREFIX + "*")) {
      ds.forEach(copies::add);
    }
    assertThat(copies).hasSize(1);
    assertThat(Files.readAllBytes(copies.get(0))).isEqualTo(b);
  }

  @Test
  void badMagicIsRefusedWithAClearMessage() throws IOException {
    byte[] b = full.clone();
    b[0] = 'X';
    writeFile(b);
    IOException e = assertThrows(IOException.class, () -> replay(dir));
    assertThat(e).hasMessageThat().contains(file.toString());
    assertThat(e).hasMessageThat().contains("bad magic");
    assertThat(e).hasMessageThat().contains("not a psiskv backup log");
    // Salvage does not apply to a file that is not ours.
    assertThrows(IOException.class, () -> BackupLog.open(dir, FsyncPolicy.ALWAYS, new Model(),
        BackupLog.OpenOptions.defaults().salvage(true)));
    assertThat(Files.readAllBytes(file)).isEqualTo(b);
  }

  @Test
  void unknownVersionIsRefusedWithAClearMessage() throws IOException {
    byte[] b = full.clone();
    Header.putU16(b, LogFormat.OFF_HEADER_VERSION, 3);
    Header.putU32(b, LogFormat.OFF_HEADER_CRC, LogFormat.headerCrc(b));
    writeFile(b);
    IOException e = assertThrows(IOException.class, () -> replay(dir));
    assertThat(e).hasMessageThat().contains("format version 3");
    assertThat(e).hasMessageThat().contains("reads versions 1 and 2 only");
  }

  @Test
  void damagedHeaderIsRefused() throws IOException {
    byte[] b = full.clone();
    b[LogFormat.OFF_HEADER_CREATED] ^= 0x01;
    writeFile(b);
    IOException e = assertThrows(IOException.class, () -> replay(dir));
    assertThat(e).hasMessageThat().contains("header checksum mismatch");
  }

  @Test
  void fileShorterThanTheHeaderIsRefused() throws IOException {
    writeFile(Arrays.copyOf(full, 10));
    IOException e = assertThrows(IOException.class, () -> replay(dir));
    assertThat(e).hasMessageThat().contains("too short to be a psiskv backup log");
  }

  @Test
  void leftoverCompactionFileIsDeletedAtOpen() throws IOException {
    Path leftover = dir.resolve(BackupLog.COMPACT_FILE_NAME);
    Files.write(leftover, new byte[] {1, 2, 3});
    assertThat(replay(dir).hexMap()).containsExactlyEntriesIn(hexMap(all));
    assertThat(Files.exists(leftover)).isFalse();
  }

  @Test
  void replayIsIdempotentAcrossReopens() throws IOException {
    for (int i = 0; i < 3; i++) {
      assertThat(replay(dir).hexMap()).containsExactlyEntriesIn(hexMap(all));
    }
    assertThat(Files.readAllBytes(file)).isEqualTo(full);
  }

  @Test
  void readerNeverAllocatesAClaimedLengthThatRunsPastTheFile() throws IOException {
    // Both length fields of a middle record damaged consistently, claiming a 2 GiB value: the
    // record cannot be told from a partial one (the documented limit of the rule, §11.3: it takes
    // two fields damaged in agreement). What matters here: nothing of the claim is allocated.
    long damaged = recordStarts.get(2);
    byte[] b = full.clone();
    Header.putU32(b, (int) damaged + LogFormat.OFF_LENGTH,
        LogFormat.BODY_FIXED_BYTES + LogFormat.MAX_VALUE_BYTES);
    Header.putU32(b, (int) damaged + LogFormat.OFF_VALUE_LENGTH, LogFormat.MAX_VALUE_BYTES);
    writeFile(b);
    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
      LogRecordReader r = new LogRecordReader(ch, file);
      r.readHeader();
      LogRecordReader.Scan s = r.scan(true, (op, key, session, request, result, value, len) -> {});
      // It runs past EOF, so by the rule it is a partial record: torn, at that offset.
      assertThat(s.outcome).isEqualTo(LogRecordReader.Outcome.TORN);
      assertThat(s.goodEnd).isEqualTo(damaged);
      assertThat(s.records).isEqualTo(2);
    }
  }

  @Test
  void headerOnlyFileIsClean() throws IOException {
    writeFile(Arrays.copyOf(full, LogFormat.HEADER_BYTES));
    assertThat(replay(dir).map).isEmpty();
    assertThat(Files.size(file)).isEqualTo(LogFormat.HEADER_BYTES);
  }
}
