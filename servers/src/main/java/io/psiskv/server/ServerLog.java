package io.psiskv.server;

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.BindException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.Locale;

/**
 * The servers' log: one line per event, {@code <iso time> <LEVEL> <role> <pid> <message>}, on
 * stderr or appended to the {@code --log-file}, e.g.
 * {@code 2026-12-01T12:00:00.123Z INFO  front 4242 listening on 127.0.0.1:9999}.
 *
 * <p>Events are starts, stops, peers that break the protocol, lost peers: never one line per
 * request. Lines below the {@code --log-level} are dropped. Any thread may log; each line is
 * written with one {@code write(2)} (under this class's lock), so lines of different threads do
 * not interleave, and the two processes may append to the same file (opened with {@code
 * O_APPEND}, where each write lands whole at the end).
 *
 * <p>Messages are for operators: they name what failed and why in words ({@link #describe}),
 * never a Java exception class or a stack trace (those go to {@code debug}).
 */
public final class ServerLog {
  /** The {@code --log-level} values, most severe first; a level logs itself and those above. */
  enum Level {
    ERROR,
    WARN,
    INFO,
    DEBUG;

    /** The option's spelling: {@code error}, {@code warn}, {@code info} or {@code debug}. */
    String optionName() {
      return name().toLowerCase(Locale.ROOT);
    }

    /** Parses an option value; null if it is none of the four. */
    static Level parse(String value) {
      for (Level l : values()) {
        if (l.optionName().equals(value.toLowerCase(Locale.ROOT))) {
          return l;
        }
      }
      return null;
    }
  }

  private static final long PID = ProcessHandle.current().pid();
  private static volatile String role = "-";
  private static volatile Level threshold = Level.INFO;
  /** Guarded by the class lock. */
  private static OutputStream out = new FileOutputStream(FileDescriptor.err);

  private ServerLog() {}

  /** Sets the role shown on every line ({@code front} or {@code data}); call once in main. */
  static void init(String roleName) {
    role = roleName;
  }

  /**
   * Applies {@code --log-level} and {@code --log-file} (null: stderr); call once in main, before
   * the first line. The file is created if missing (owner read-write only) and appended to.
   *
   * @throws IOException if the file cannot be opened; the message says why, in words
   */
  static void configure(Level level, Path file) throws IOException {
    threshold = level;
    if (file != null) {
      OutputStream stream;
      try {
        boolean existed = Files.exists(file);
        stream = Files.newOutputStream(file, StandardOpenOption.CREATE,
            StandardOpenOption.APPEND, StandardOpenOption.WRITE);
        if (!existed) {
          PrivateFiles.file(file); // Before its first line, like the data directory's files.
        }
      } catch (IOException e) {
        throw new IOException("cannot open log file " + file + ": " + describe(e), e);
      }
      synchronized (ServerLog.class) {
        out = stream;
      }
    }
  }

  static boolean enabled(Level level) {
    return level.compareTo(threshold) <= 0;
  }

  public static void error(String message) {
    write(Level.ERROR, message);
  }

  public static void warn(String message) {
    write(Level.WARN, message);
  }

  public static void info(String message) {
    write(Level.INFO, message);
  }

  public static void debug(String message) {
    write(Level.DEBUG, message);
  }

  /** At debug level, {@code what} and the stack trace of {@code e}: for a developer, not a user. */
  static void debugTrace(String what, Throwable e) {
    if (enabled(Level.DEBUG)) {
      java.io.StringWriter trace = new java.io.StringWriter();
      e.printStackTrace(new java.io.PrintWriter(trace));
      write(Level.DEBUG, what + ": " + trace.toString().stripTrailing().replace("\n", "\n    "));
    }
  }

  private static void write(Level level, String message) {
    if (!enabled(level)) {
      return;
    }
    String line = Instant.now().truncatedTo(ChronoUnit.MILLIS) + " "
        + String.format("%-5s", level.name()) + " " + role + " " + PID + " " + message + "\n";
    byte[] bytes = line.getBytes(StandardCharsets.UTF_8);
    synchronized (ServerLog.class) {
      try {
        out.write(bytes);
        out.flush();
      } catch (IOException e) {
        // Nowhere left to say it: the log is the servers' only channel to the operator.
      }
    }
  }

  /**
   * What went wrong, in words, for a log line or an error message: the exception's own message
   * for the errors a user can act on (files, sockets, the servers' own messages), the file and
   * its problem for file-system errors, and "unexpected internal error" for an exception without
   * a message (a bug; {@link #debugTrace} shows its trace). Never the exception's class name.
   */
  public static String describe(Throwable e) {
    if (e instanceof FileSystemException) {
      FileSystemException f = (FileSystemException) e;
      String file = f.getFile() == null ? "" : f.getFile();
      String problem;
      if (e instanceof NoSuchFileException) {
        problem = "no such file or directory";
      } else if (e instanceof AccessDeniedException) {
        problem = "permission denied";
      } else if (e instanceof FileAlreadyExistsException) {
        problem = "already exists";
      } else if (e instanceof NotDirectoryException) {
        problem = "not a directory";
      } else if (e instanceof DirectoryNotEmptyException) {
        problem = "directory not empty";
      } else {
        problem = f.getReason() == null ? "file system error" : f.getReason();
      }
      String other = f.getOtherFile() == null ? "" : " -> " + f.getOtherFile();
      return file.isEmpty() ? problem : file + other + ": " + problem;
    }
    String message = e.getMessage();
    if (message == null || message.isBlank()) {
      return e.getCause() != null ? describe(e.getCause()) : "unexpected internal error";
    }
    return message;
  }

  /**
   * A failed bind of {@code address:port}, in words: the port is in use, the address is not one
   * of this host's, or binding needs a privilege. The JDK reports the errno only as its strerror
   * text, so that text is what is matched.
   */
  static String describeBind(BindException e, String address, int port) {
    if (portInUse(e)) {
      return "port " + port + " is in use on " + address;
    }
    String m = e.getMessage() == null ? "" : e.getMessage().toLowerCase(Locale.ROOT);
    if (m.contains("assign requested address") || m.contains("not available")) {
      return "address " + address + " is not available (not an address of this host)";
    }
    if (m.contains("permission denied") || m.contains("access")) {
      return "permission denied to listen on " + address + ":" + port
          + (port < 1024 ? " (ports below 1024 need privileges)" : "");
    }
    return "cannot listen on " + address + ":" + port + ": " + describe(e);
  }

  /** Whether a bind failed only because the port is taken (the next one may be free). */
  static boolean portInUse(BindException e) {
    return e.getMessage() != null && e.getMessage().toLowerCase(Locale.ROOT).contains("in use");
  }
}
