package io.psiskv.server.backup;

import static io.psiskv.server.backup.BackupLog.COMPACT_FILE_NAME;
import static io.psiskv.server.backup.BackupLog.DAMAGED_FILE_PREFIX;
import static io.psiskv.server.backup.BackupLog.FILE_NAME;
import static io.psiskv.server.backup.BackupLog.OLD_FILE_NAME;
import static io.psiskv.server.backup.LogFormat.*;

import io.psiskv.server.DataDirLock;
import io.psiskv.server.PrivateFiles;
import io.psiskv.server.ServerLog;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.EnumSet;

/**
 * Recovery at open (PROTOCOL.md §11.3): finds the backup file under its name (adopting the old
 * one), creates an empty log atomically, replays the records into the caller's sink, and applies
 * the one recovery rule: a torn tail is truncated; damage before the tail refuses the start, or,
 * with salvage, is copied aside and cut off. {@link BackupCheck} shares {@link #salvage} and
 * {@link #fileIn}. Runs on the opening thread, before any other thread touches the file.
 */
final class LogRecovery {
  private LogRecovery() {}

  /**
   * What recovery leaves for the writer: the open channel, its replayed length and record count,
   * and whether the file is in an older format ({@link BackupLog#isOlderFormat}).
   */
  record Recovered(FileChannel channel, long fileBytes, long records, boolean olderFormat) {}

  /**
   * Opens (or creates) {@code <dataDir>/psiskv.data} and replays every record into {@code sink}
   * by the recovery rule of {@link BackupLog#open}. If this throws, the channel is closed and the
   * sink may have seen a prefix of the records. The caller must hold the {@link DataDirLock}.
   */
  static Recovered recover(Path dataDir, BackupLog.Replay sink, BackupLog.OpenOptions opts)
      throws IOException {
    PrivateFiles.directory(dataDir);
    adoptOldName(dataDir);
    Path log = dataDir.resolve(FILE_NAME);
    Path tmp = dataDir.resolve(COMPACT_FILE_NAME);
    if (Files.deleteIfExists(tmp)) {
      ServerLog.info(tmp + ": deleted the temporary file of an interrupted compaction");
    }
    if (!Files.exists(log)) {
      createEmpty(dataDir, log, tmp, opts);
    }
    FileChannel ch = opts.channelOpener.open(log,
        EnumSet.of(StandardOpenOption.READ, StandardOpenOption.WRITE));
    try {
      LogRecordReader reader = new LogRecordReader(ch, log);
      int version = reader.readHeader().version();
      boolean withSessions = version >= VERSION;
      LogRecordReader.Scan scan = reader.scan(true, (op, key, session, request, result, value,
          valueLength) -> {
        long sid = withSessions ? session : NO_SESSION;
        long rid = withSessions ? request : 0;
        if (op == OP_PUT) {
          sink.put(key, value, sid, rid, result);
        } else if (op == OP_PUT_IF_ABSENT) {
          sink.putIfAbsent(key, value, sid, rid, result);
        } else if (op == OP_DELETE) {
          sink.delete(key, sid, rid, result);
        } else if (withSessions) {
          sink.session(session, request, result, value);
        }
      });
      if (scan.outcome == LogRecordReader.Outcome.TORN) {
        ServerLog.warn(String.format("%s: torn tail at offset %d (%s): truncated, %d bytes "
            + "dropped", log, scan.goodEnd, scan.reason, scan.badBytes()));
        LogFiles.truncate(ch, scan.goodEnd);
      } else if (scan.outcome == LogRecordReader.Outcome.DAMAGED) {
        if (!opts.salvage) {
          throw new IOException(damageMessage(log, scan));
        }
        Path copy = salvage(dataDir, log, ch, scan);
        ServerLog.warn(String.format("%s: damaged at offset %d (%s); salvaged: kept %d "
            + "records, dropped %d bytes, the original is in %s",
            log, scan.goodEnd, scan.reason, scan.records, scan.badBytes(), copy));
      }
      return new Recovered(ch, scan.goodEnd, scan.records, version != VERSION);
    } catch (IOException | RuntimeException | Error e) {
      ch.close();
      throw e;
    }
  }

  static String damageMessage(Path log, LogRecordReader.Scan scan) {
    return String.format(
        "%s is damaged at offset %d: %s. The %d bytes from there to the end of the file (%d "
            + "bytes) cannot be replayed, and they are not a torn tail, so the server refuses to "
            + "start; nothing was changed. Inspect the file with 'build-scripts/psiskv-check %s'. "
            + "To start with the %d records before the damage, restart with --salvage (or run "
            + "build-scripts/psiskv-check --fix): the file is first copied to %s<time>.",
        log, scan.goodEnd, scan.reason, scan.badBytes(), scan.fileSize, log, scan.records,
        DAMAGED_FILE_PREFIX);
  }

  /** Copies the damaged file aside (forced), then truncates it at the first bad record. */
  static Path salvage(Path dataDir, Path log, FileChannel ch, LogRecordReader.Scan scan)
      throws IOException {
    Path copy = dataDir.resolve(DAMAGED_FILE_PREFIX + System.currentTimeMillis());
    Files.copy(log, copy);
    PrivateFiles.file(copy);
    try (FileChannel c = FileChannel.open(copy, StandardOpenOption.WRITE)) {
      c.force(true);
    }
    LogFiles.fsyncDirectory(dataDir);
    LogFiles.truncate(ch, scan.goodEnd);
    return copy;
  }

  /**
   * §11: a data directory holding the backup file under its old name only ({@link
   * BackupLog#OLD_FILE_NAME}) gets it renamed to {@link BackupLog#FILE_NAME}, once, atomically
   * ({@code rename(2)}, then the directory forced), with one log line; an interrupted
   * compaction's temporary file of the old name is deleted. Both names present is ambiguous
   * (which one is current?) and refused with a message saying what to do. The caller must hold
   * the {@link DataDirLock}.
   */
  static void adoptOldName(Path dataDir) throws IOException {
    Path old = dataDir.resolve(OLD_FILE_NAME);
    Path log = dataDir.resolve(FILE_NAME);
    if (!Files.exists(old, LinkOption.NOFOLLOW_LINKS)) {
      return;
    }
    if (Files.exists(log, LinkOption.NOFOLLOW_LINKS)) {
      throw new IOException("data directory " + dataDir + " holds both " + FILE_NAME
          + " (the backup file) and " + OLD_FILE_NAME + " (its name before psiskv 0.1.0): keep"
          + " the current one (build-scripts/psiskv-check shows what each holds), move the other"
          + " out of the directory, and start again");
    }
    Files.move(old, log, StandardCopyOption.ATOMIC_MOVE);
    LogFiles.fsyncDirectory(dataDir);
    ServerLog.info("renamed the backup file " + old + " to " + FILE_NAME + " (its new name, which no"
        + " *.log rotation takes)");
    Path oldTmp = dataDir.resolve(OLD_FILE_NAME + ".compact");
    if (Files.deleteIfExists(oldTmp)) {
      ServerLog.info(oldTmp + ": deleted the temporary file of an interrupted compaction");
    }
  }

  /**
   * The backup file of {@code dataDir} as the offline tools see it: {@link BackupLog#FILE_NAME},
   * or the old name if only that exists (no server has started there since the rename).
   */
  static Path fileIn(Path dataDir) {
    Path log = dataDir.resolve(FILE_NAME);
    Path old = dataDir.resolve(OLD_FILE_NAME);
    return !Files.exists(log) && Files.exists(old) ? old : log;
  }

  /**
   * Creates a log holding only a header, atomically: the header is written to the temporary file,
   * forced, and renamed into place, so {@code psiskv.data} never exists with a partial header.
   */
  private static void createEmpty(Path dataDir, Path log, Path tmp,
      BackupLog.OpenOptions opts) throws IOException {
    try (FileChannel c = opts.channelOpener.open(tmp,
        EnumSet.of(StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE))) {
      PrivateFiles.file(tmp);
      byte[] h = new byte[HEADER_BYTES];
      encodeHeader(h, System.currentTimeMillis());
      LogFiles.writeFully(c, ByteBuffer.wrap(h), 0);
      c.force(true);
    }
    Files.move(tmp, log, StandardCopyOption.ATOMIC_MOVE);
    LogFiles.fsyncDirectory(dataDir);
  }
}
