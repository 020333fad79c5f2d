package io.psiskv.server.backup;

import java.util.Locale;

/**
 * When {@link BackupLog} forces its file to stable storage, and therefore what {@link
 * BackupLog#awaitDurable} promises when it returns. Modelled on Redis {@code appendfsync}; see
 * PROTOCOL.md §11.4. The promise is enforced in one place, {@code LogWriter.doWriteBatch}, run by
 * whichever thread commits.
 */
public enum FsyncPolicy {
  /**
   * The default. {@code awaitDurable(seq)} returns only after the record was written and the file
   * forced ({@code fdatasync}). A crash (process, kernel or power) loses no acknowledged write.
   * Concurrent writers share one force (group commit).
   */
  ALWAYS,
  /**
   * {@code awaitDurable(seq)} returns once the record was written to the operating system (it
   * survives a crash of the process, not of the machine); the log's sync thread forces the file
   * every {@link BackupLog#EVERYSEC_SYNC_INTERVAL_MILLIS} while it has unforced writes. A power
   * loss or kernel crash loses about the last second of acknowledged writes.
   */
  EVERYSEC,
  /**
   * {@code awaitDurable(seq)} returns once the record was written to the operating system; the file
   * is forced only by {@link BackupLog#close} and by compaction. The kernel decides when data
   * reaches the disk (typically within 30 s on Linux).
   */
  NO;

  /**
   * The policy's name in {@code --fsync} and in the {@code fsync} counter of STATS and STATUS
   * (PROTOCOL.md §6.7): {@code always}, {@code everysec} or {@code no}.
   */
  public String optionName() {
    return name().toLowerCase(Locale.ROOT);
  }

  /** Parses a configuration value ({@code always}, {@code everysec}, {@code no}; any case). */
  public static FsyncPolicy parse(String s) {
    for (FsyncPolicy p : values()) {
      if (p.optionName().equalsIgnoreCase(s.trim())) {
        return p;
      }
    }
    throw new IllegalArgumentException(
        "unknown fsync policy '" + s + "': expected always, everysec or no");
  }
}
