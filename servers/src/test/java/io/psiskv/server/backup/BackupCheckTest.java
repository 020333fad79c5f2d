package io.psiskv.server.backup;

import static com.google.common.truth.Truth.assertThat;

import io.psiskv.protocol.Status;
import io.psiskv.server.DataDirLock;
import io.psiskv.server.backup.BackupLogTestSupport.Model;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The offline checker on clean, torn, damaged and foreign files. */
class BackupCheckTest {
  @TempDir Path dir;
  Path file;
  byte[] clean;
  long secondRecord;
  String out;
  String err;

  @BeforeEach
  void writeLog() throws IOException {
    file = dir.resolve(BackupLog.FILE_NAME);
    try (BackupLog log = BackupLog.open(dir, FsyncPolicy.ALWAYS, new Model(),
        BackupLog.OpenOptions.defaults())) {
      log.awaitDurable(log.appendPut(1, new byte[10], 1, 1, 0));
      secondRecord = log.stats().fileBytes();
      log.awaitDurable(log.appendPut(2, new byte[20], 1, 2, 0));
      log.awaitDurable(log.appendPut(1, new byte[5], 1, 3, 0));
      log.awaitDurable(log.appendPut(3, new byte[7], 1, 4, 0));
      log.awaitDurable(log.appendDelete(3, 1, 5, 0));
      log.awaitDurable(log.appendSession(2, 1, Status.KEY_EXISTS.code(), LogFormat.encodeSessionValue(new byte[16], 0, 0, 0, 0)));
    }
    clean = Files.readAllBytes(file);
  }

  private int run(String... args) {
    ByteArrayOutputStream o = new ByteArrayOutputStream();
    ByteArrayOutputStream e = new ByteArrayOutputStream();
    int status = BackupCheck.run(args, new PrintStream(o, true, StandardCharsets.UTF_8),
        new PrintStream(e, true, StandardCharsets.UTF_8));
    out = o.toString(StandardCharsets.UTF_8);
    err = e.toString(StandardCharsets.UTF_8);
    return status;
  }

  @Test
  void cleanLogPrintsHeaderCountsLiveDataAndExitsZero() {
    assertThat(run(dir.toString())).isEqualTo(0);
    assertThat(out).contains("header: magic PSISKVLG, version 2");
    assertThat(out).contains("size: " + clean.length + " bytes");
    assertThat(out).contains("records: 6 (puts 4, deletes 1, sessions 1)");
    assertThat(out).contains("live: 2 keys, 25 value bytes");
    assertThat(out).contains("status: clean");
    assertThat(run(file.toString())).isEqualTo(0); // the file itself works too
  }

  @Test
  void tornTailExitsOneAndFixTruncatesIt() throws IOException {
    Files.write(file, Arrays.copyOf(clean, clean.length - 3));
    assertThat(run(dir.toString())).isEqualTo(1);
    assertThat(out).contains("status: torn tail at offset");
    assertThat(run("--fix", dir.toString())).isEqualTo(0);
    assertThat(out).contains("fixed: truncated");
    assertThat(run(dir.toString())).isEqualTo(0);
    assertThat(out).contains("records: 5 (puts 4, deletes 1, sessions 0)");
  }

  @Test
  void damageExitsOneNamingTheOffsetAndFixSalvagesWithACopy() throws IOException {
    byte[] b = clean.clone();
    b[(int) secondRecord + LogFormat.RECORD_FIXED_BYTES + 1] ^= 0x01;
    Files.write(file, b);
    assertThat(run(dir.toString())).isEqualTo(1);
    assertThat(out).contains("status: damaged at offset " + secondRecord + ": checksum mismatch");
    assertThat(out).contains("records: 1 (puts 1, deletes 0, sessions 0)");
    assertThat(Files.readAllBytes(file)).isEqualTo(b); // a check changes nothing
    assertThat(run("--fix", dir.toString())).isEqualTo(0);
    assertThat(Files.size(file)).isEqualTo(secondRecord);
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir,
        BackupLog.DAMAGED_FILE_PREFIX + "*")) {
      Path copy = ds.iterator().next();
      assertThat(Files.readAllBytes(copy)).isEqualTo(b);
    }
    assertThat(run(dir.toString())).isEqualTo(0);
  }

  @Test
  void foreignFileIsReportedAsDamaged() throws IOException {
    Files.writeString(file, "GET / HTTP/1.1\r\nHost: example\r\n\r\n");
    assertThat(run(dir.toString())).isEqualTo(1);
    assertThat(out).contains("bad magic");
  }

  @Test
  void fixRefusesWhileADataServerHoldsTheDirectory() throws IOException {
    Files.write(file, Arrays.copyOf(clean, clean.length - 3));
    try (DataDirLock lock = DataDirLock.acquire(dir)) {
      assertThat(run("--fix", dir.toString())).isEqualTo(2);
      assertThat(err).contains("in use by another psiskv Data Server");
    }
    assertThat(Files.size(file)).isEqualTo(clean.length - 3);
  }

  @Test
  void usageErrorsExitTwo() {
    assertThat(run()).isEqualTo(2);
    assertThat(err).contains("try --help");
    assertThat(run("--frobnicate", dir.toString())).isEqualTo(2);
    assertThat(err).isEqualTo("psiskv-check: unknown option '--frobnicate' (try --help)\n");
    assertThat(run(dir.resolve("missing").toString())).isEqualTo(2);
    assertThat(err).isEqualTo(
        "psiskv-check: " + dir.resolve("missing") + ": no such file or directory\n");
  }

  @Test
  void helpExitsZeroAndDocumentsTheExitCodes() {
    assertThat(run("--help")).isEqualTo(0);
    assertThat(out).contains("usage: psiskv-check [--fix] DIR|FILE");
    assertThat(out).contains("exit status: 0 clean (or fixed), 1 damaged");
    assertThat(out).contains("2 usage error");
  }

  @Test
  void aDirectoryWithoutABackupFileSaysSo() throws IOException {
    Path empty = Files.createDirectory(dir.resolve("empty"));
    assertThat(run(empty.toString())).isEqualTo(2);
    assertThat(err).contains("holds no backup file (" + BackupLog.FILE_NAME + ")");
    assertThat(run("--fix", empty.toString())).isEqualTo(2);
    try (java.util.stream.Stream<Path> files = Files.list(empty)) {
      assertThat(files.count()).isEqualTo(0); // No lock file, nothing.
    }
  }

  @Test
  void fixLeavesNoLockFileWhereThereWasNone() throws IOException {
    Files.write(file, Arrays.copyOf(clean, clean.length - 3));
    Path lock = dir.resolve(DataDirLock.FILE_NAME);
    assertThat(Files.exists(lock)).isFalse();
    assertThat(run("--fix", dir.toString())).isEqualTo(0);
    assertThat(Files.exists(lock)).isFalse();
  }

  @Test
  void theOldFileNameIsCheckedWhenItIsTheOnlyOne() throws IOException {
    Files.move(file, dir.resolve(BackupLog.OLD_FILE_NAME));
    assertThat(run(dir.toString())).isEqualTo(0);
    assertThat(out).contains("file: " + dir.resolve(BackupLog.OLD_FILE_NAME) + " (the old name");
  }
}
