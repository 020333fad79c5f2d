package io.psiskv.server;

import java.io.IOException;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Set;

/**
 * The data directory is its owner's only (DESIGN.md §12): mode 0700, and every file the servers
 * create in it (backup log and its temporary, damaged copies, pid files, lock, front log) 0600,
 * so that no other local user reads the data, the session ids or the log, whatever the umask.
 * The directory's mode is the protection (nobody else can reach a file in it); the files' modes
 * keep them private if they are copied or the directory is opened up later. On a file system
 * without POSIX permissions nothing is changed.
 */
public final class PrivateFiles {
  static final Set<PosixFilePermission> DIRECTORY_MODE =
      PosixFilePermissions.fromString("rwx------");
  static final Set<PosixFilePermission> FILE_MODE = PosixFilePermissions.fromString("rw-------");
  private static final boolean POSIX =
      FileSystems.getDefault().supportedFileAttributeViews().contains("posix");

  private PrivateFiles() {}

  /**
   * Creates {@code dir} (and missing parents) if needed and makes it 0700. A directory that
   * cannot be changed (owned by another user) is an error: its files would not be private.
   */
  public static void directory(Path dir) throws IOException {
    if (!POSIX) {
      Files.createDirectories(dir);
      return;
    }
    Files.createDirectories(dir, PosixFilePermissions.asFileAttribute(DIRECTORY_MODE));
    if (!Files.getPosixFilePermissions(dir).equals(DIRECTORY_MODE)) {
      try {
        Files.setPosixFilePermissions(dir, DIRECTORY_MODE);
      } catch (IOException e) {
        throw new IOException("cannot make the data directory " + dir + " private (mode 0700): "
            + e.getMessage() + "; use a directory you own", e);
      }
    }
  }

  /** Makes {@code file} 0600; call right after creating it, before it holds anything. */
  public static void file(Path file) throws IOException {
    if (POSIX) {
      Files.setPosixFilePermissions(file, FILE_MODE);
    }
  }
}
