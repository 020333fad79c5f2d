package io.psiskv.server.backup;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * The backup file's I/O helpers: the write-fully loop, truncation and directory forces that the
 * writer, the compactor, recovery and the offline tool share. No state; every method works on the
 * channel it is given.
 */
public final class LogFiles {
  /**
   * The largest single write: the JDK copies a heap buffer into a temporary direct buffer of the
   * same size for each write (and caches it per thread), so a 64 MiB value is written in slices.
   */
  static final int WRITE_SLICE_BYTES = 1 << 20;

  private LogFiles() {}

  /** Writes each part (a duplicate; the parts stay untouched) from {@code position} on. */
  static long writeParts(FileChannel ch, ByteBuffer[] parts, long position) throws IOException {
    for (ByteBuffer p : parts) {
      position = writeFully(ch, p.duplicate(), position);
    }
    return position;
  }

  /**
   * Writes all of {@code src} at {@code position}. Loops because a positional write may write
   * fewer bytes than asked; writes at most {@link #WRITE_SLICE_BYTES} per call.
   */
  public static long writeFully(FileChannel ch, ByteBuffer src, long position) throws IOException {
    int end = src.limit();
    while (src.position() < end) {
      src.limit(Math.min(end, src.position() + WRITE_SLICE_BYTES));
      while (src.hasRemaining()) {
        position += ch.write(src, position);
      }
      src.limit(end);
    }
    return position;
  }

  /** Cuts the file at {@code size} and forces the new length. */
  static void truncate(FileChannel ch, long size) throws IOException {
    ch.truncate(size);
    ch.force(true);
  }

  /** Forces a directory, making a rename or a new file in it durable (Linux: fsync on the dir). */
  static void fsyncDirectory(Path dir) throws IOException {
    try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
      d.force(true);
    }
  }

  static void closeQuietly(FileChannel ch) {
    if (ch == null) {
      return;
    }
    try {
      ch.close();
    } catch (IOException e) {
      // Closing a channel we are abandoning; nothing more to do with it.
    }
  }
}
