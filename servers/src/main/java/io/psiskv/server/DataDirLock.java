package io.psiskv.server;

import io.psiskv.server.backup.BackupLog;
import io.psiskv.server.backup.LogFiles;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Exclusive ownership of a data directory for the life of a process (PROTOCOL.md §11.6): an OS
 * file lock ({@code fcntl}/{@code flock} through {@link FileChannel#tryLock}) on {@code
 * <dataDir>/lock}, whose content is the holder's pid and a newline. Two Data Servers appending to
 * one log would interleave records and corrupt it, so the second one must not start.
 *
 * <p>The OS releases the lock when the process dies however it dies (SIGKILL included), so a stale
 * lock file never blocks a restart; the file itself is left in place (deleting it would let a
 * third process lock a new inode while the second still holds the old one). Take the lock before
 * {@link BackupLog#open} and keep the object until the process exits.
 */
public final class DataDirLock implements AutoCloseable {
  /** The lock file's name in the data directory. */
  public static final String FILE_NAME = "lock";
  /** Bytes of the lock file read for the holder's pid; a pid and a newline are far shorter. */
  static final int MAX_PID_BYTES = 32;

  private final Path file;
  private final FileChannel channel;
  private final FileLock lock;

  private DataDirLock(Path file, FileChannel channel, FileLock lock) {
    this.file = file;
    this.channel = channel;
    this.lock = lock;
  }

  /**
   * Locks {@code dataDir} (created if missing) for this process.
   *
   * @throws IOException if another process (or this one) holds the lock; the message names the
   *     directory and the holder's pid as written in the lock file
   */
  public static DataDirLock acquire(Path dataDir) throws IOException {
    PrivateFiles.directory(dataDir);
    Path file = dataDir.resolve(FILE_NAME);
    FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.READ,
        StandardOpenOption.WRITE);
    PrivateFiles.file(file);
    FileLock lock;
    try {
      lock = ch.tryLock();
    } catch (OverlappingFileLockException e) {
      lock = null; // held by this very JVM
    } catch (IOException | RuntimeException e) {
      ch.close();
      throw e;
    }
    if (lock == null) {
      String holder;
      try {
        holder = readPid(ch);
      } finally {
        ch.close();
      }
      throw new IOException(String.format(
          "data directory %s is in use by another psiskv Data Server (pid %s holds %s). Stop that "
              + "process first, or start this one with another data directory.",
          dataDir, holder, file));
    }
    try {
      byte[] pid = (ProcessHandle.current().pid() + "\n").getBytes(StandardCharsets.US_ASCII);
      ch.truncate(0);
      LogFiles.writeFully(ch, ByteBuffer.wrap(pid), 0);
      ch.force(false);
    } catch (IOException | RuntimeException e) {
      ch.close(); // releases the lock
      throw e;
    }
    return new DataDirLock(file, ch, lock);
  }

  /** The pid the lock file names, or a note if the holder has not written it yet. */
  private static String readPid(FileChannel ch) throws IOException {
    ByteBuffer b = ByteBuffer.allocate(MAX_PID_BYTES);
    long p = 0;
    int r;
    while (b.hasRemaining() && (r = ch.read(b, p)) > 0) {
      p += r;
    }
    String s = new String(b.array(), 0, b.position(), StandardCharsets.US_ASCII).trim();
    return s.matches("[0-9]+") ? s : "unknown, the lock file holds no pid yet";
  }

  Path file() {
    return file;
  }

  /** Releases the lock (the OS also does when the process exits). */
  @Override
  public void close() throws IOException {
    try {
      lock.release();
    } finally {
      channel.close();
    }
  }
}
