package io.psiskv.server.backup;

import static io.psiskv.server.backup.LogFormat.*;

import io.psiskv.server.DataDirLock;
import io.psiskv.server.ServerLog;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Instant;

/**
 * Offline checker of a backup log, like {@code redis-check-aof} (PROTOCOL.md §11.7):
 *
 * <pre>
 *   java -cp psiskv-server.jar io.psiskv.server.backup.BackupCheck [--fix] &lt;dir or file&gt;
 * </pre>
 *
 * Prints the header, the record counts, the live keys and bytes the log replays to, the file size,
 * and where the first bad record is, using the same reader and recovery rule as {@link
 * BackupLog#open}. Exit status: 0 clean (or fixed), 1 damaged (torn tail, damage, bad header), 2
 * usage or I/O error. {@code --fix} truncates a torn tail, or salvages damage (copy aside to
 * {@code psiskv.data.damaged-<millis>}, then truncate at the first bad record); it takes the data
 * directory's {@link DataDirLock}, so it refuses to touch the log of a running Data Server. Without
 * {@code --fix} the file is only read (a running server's tail may then look torn).
 */
public final class BackupCheck {
  static final int EXIT_CLEAN = 0;
  static final int EXIT_DAMAGED = 1;
  static final int EXIT_USAGE = 2;

  private BackupCheck() {}

  public static void main(String[] args) {
    System.exit(run(args, System.out, System.err));
  }

  /** The usage text, printed by {@code --help} (stdout) and after a usage error (stderr). */
  static final String USAGE = String.join("\n",
      "usage: psiskv-check [--fix] DIR|FILE",
      "Checks a psiskv backup file (DIR/" + BackupLog.FILE_NAME + ", or the FILE given) the way the"
          + " Data Server replays it at start, and prints its header, records, live keys and the"
          + " first bad record.",
      "  --fix    truncate a torn tail; or, if damaged before its end, copy the file aside ("
          + BackupLog.FILE_NAME + ".damaged-<millis>) and keep the records before the damage."
          + " Refused while a Data Server uses the directory.",
      "  --help   this text",
      "exit status: " + EXIT_CLEAN + " clean (or fixed), " + EXIT_DAMAGED + " damaged (torn tail,"
          + " damage, bad header), " + EXIT_USAGE + " usage error or the file cannot be read");

  /** The tool without {@code System.exit}, for tests. */
  @SuppressWarnings("try") // the lock is held, not used, while the body runs
  static int run(String[] args, PrintStream out, PrintStream err) {
    boolean fix = false;
    Path target = null;
    for (String a : args) {
      if (a.equals("--help") || a.equals("-h")) {
        out.println(USAGE);
        return EXIT_CLEAN;
      } else if (a.equals("--fix")) {
        fix = true;
      } else if (a.startsWith("-")) {
        err.println("psiskv-check: unknown option '" + a + "' (try --help)");
        return EXIT_USAGE;
      } else if (target != null) {
        err.println("psiskv-check: one DIR or FILE only, not '" + target + "' and '" + a
            + "' (try --help)");
        return EXIT_USAGE;
      } else {
        target = Path.of(a);
      }
    }
    if (target == null) {
      err.println("psiskv-check: which data directory or backup file? (try --help)");
      return EXIT_USAGE;
    }
    if (!Files.exists(target)) {
      err.println("psiskv-check: " + target + ": no such file or directory");
      return EXIT_USAGE;
    }
    Path file = Files.isDirectory(target) ? LogRecovery.fileIn(target) : target;
    Path dir = file.toAbsolutePath().getParent();
    if (!Files.exists(file)) {
      err.println("psiskv-check: " + target + " holds no backup file (" + BackupLog.FILE_NAME
          + "): not a psiskv data directory, or no Data Server has started there");
      return EXIT_USAGE;
    }
    try {
      if (!fix) {
        return check(file, dir, false, out);
      }
      // --fix takes the directory's lock; a lock file it had to create is removed again (after
      // the fix, still locked: a Data Server starting meanwhile fails on our lock, or locks a
      // new file once the fix is done), so that checking a copied file leaves nothing behind.
      Path lockFile = dir.resolve(DataDirLock.FILE_NAME);
      boolean hadLockFile = Files.exists(lockFile);
      try (DataDirLock lock = DataDirLock.acquire(dir)) {
        try {
          return check(file, dir, true, out);
        } finally {
          if (!hadLockFile) {
            Files.deleteIfExists(lockFile);
          }
        }
      }
    } catch (IOException e) {
      err.println("psiskv-check: " + ServerLog.describe(e));
      return EXIT_USAGE;
    }
  }

  private static int check(Path file, Path dir, boolean fix, PrintStream out) throws IOException {
    out.println("file: " + file + (file.getFileName().toString().equals(BackupLog.OLD_FILE_NAME)
        ? " (the old name: the Data Server renames it to " + BackupLog.FILE_NAME + " at start)"
        : ""));
    try (FileChannel ch = fix
        ? FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE)
        : FileChannel.open(file, StandardOpenOption.READ)) {
      LogRecordReader reader = new LogRecordReader(ch, file);
      LogRecordReader.FileHeader header;
      try {
        header = reader.readHeader();
      } catch (IOException e) {
        out.println("size: " + ch.size() + " bytes");
        out.println("status: bad header: " + e.getMessage());
        return EXIT_DAMAGED;
      }
      out.printf("header: magic PSISKVLG, version %d, created %s (%d)%n", header.version(),
          Instant.ofEpochMilli(header.createdMillis()), header.createdMillis());
      LiveKeys live = new LiveKeys();
      LogRecordReader.Scan s = reader.scan(false, (op, key, session, request, result, value,
          valueLength) -> {
        if (op == OP_PUT) {
          live.put(key, valueLength);
        } else if (op == OP_DELETE) {
          live.remove(key);
        }
      });
      out.println("size: " + s.fileSize + " bytes");
      out.printf("records: %d (puts %d, deletes %d, sessions %d)%n", s.records, s.puts,
          s.deletes, s.sessions);
      out.printf("live: %d keys, %d value bytes%n", live.size, live.bytes);
      switch (s.outcome) {
        case CLEAN:
          out.println("status: clean");
          return EXIT_CLEAN;
        case TORN:
          out.printf("status: torn tail at offset %d: %s (%d bytes after the last good record)%n",
              s.goodEnd, s.reason, s.badBytes());
          if (!fix) {
            out.println("hint: the Data Server truncates a torn tail at start; --fix does it now");
            return EXIT_DAMAGED;
          }
          LogFiles.truncate(ch, s.goodEnd);
          out.printf("fixed: truncated to %d bytes%n", s.goodEnd);
          return EXIT_CLEAN;
        default:
          out.printf("status: damaged at offset %d: %s (%d bytes after the last good record)%n",
              s.goodEnd, s.reason, s.badBytes());
          if (!fix) {
            out.println("hint: --fix copies the file aside and keeps the " + s.records
                + " records before the damage");
            return EXIT_DAMAGED;
          }
          Path copy = LogRecovery.salvage(dir, file, ch, s);
          out.printf("fixed: original copied to %s, truncated to %d bytes%n", copy, s.goodEnd);
          return EXIT_CLEAN;
      }
    }
  }

  /**
   * The live key set a replay would produce, with each value's length: an open-addressing map of
   * int keys to int lengths (a key is 4 bytes and a length 4, so millions of keys fit easily).
   */
  static final class LiveKeys {
    private int[] keys = new int[1024];
    private int[] lengths = new int[1024];
    /** 0 free, 1 used, 2 deleted (a tombstone keeps probe chains intact). */
    private byte[] state = new byte[1024];
    private int used;
    long size;
    long bytes;

    void put(int key, int length) {
      if ((used + 1) * 2 > keys.length) {
        rehash();
      }
      int mask = keys.length - 1;
      int i = mix(key) & mask;
      int firstDeleted = -1;
      while (state[i] != 0) {
        if (state[i] == 1 && keys[i] == key) {
          bytes += length - lengths[i];
          lengths[i] = length;
          return;
        }
        if (state[i] == 2 && firstDeleted < 0) {
          firstDeleted = i;
        }
        i = (i + 1) & mask;
      }
      if (firstDeleted >= 0) {
        i = firstDeleted;
      } else {
        used++;
      }
      state[i] = 1;
      keys[i] = key;
      lengths[i] = length;
      size++;
      bytes += length;
    }

    void remove(int key) {
      int mask = keys.length - 1;
      int i = mix(key) & mask;
      while (state[i] != 0) {
        if (state[i] == 1 && keys[i] == key) {
          state[i] = 2;
          size--;
          bytes -= lengths[i];
          return;
        }
        i = (i + 1) & mask;
      }
    }

    private void rehash() {
      int[] oldKeys = keys;
      int[] oldLengths = lengths;
      byte[] oldState = state;
      int cap = keys.length;
      while (size * 4 > cap) {
        cap *= 2;
      }
      keys = new int[cap];
      lengths = new int[cap];
      state = new byte[cap];
      used = 0;
      size = 0;
      bytes = 0;
      for (int i = 0; i < oldKeys.length; i++) {
        if (oldState[i] == 1) {
          put(oldKeys[i], oldLengths[i]);
        }
      }
    }

    private static int mix(int k) {
      int h = k * 0x9E3779B9;
      return h ^ (h >>> 16);
    }
  }
}
