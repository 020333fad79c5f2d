package io.psiskv.server.control;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryIteratorException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/**
 * What Linux says about a process: the servers' one reader of {@code /proc/<pid>/stat} and
 * {@code /proc/<pid>/task/<tid>/stat} (proc(5)). The {@link Supervisor} asks it whether its peer
 * has ended ({@link #ended}) and, while the peer is silent, how its process fares ({@link
 * #sample}, judged by {@link HangJudge}).
 *
 * <p><b>Format.</b> A stat file is one line, {@code pid (comm) state ppid ...}, fields separated
 * by one space. {@code comm} may itself hold spaces and parentheses, so the fields are counted
 * after the <em>last</em> {@code ')'}: field 3 is the state (R running or runnable, S sleeping, D
 * uninterruptible sleep, T stopped by a signal, t stopped by a tracer, Z zombie, X dead, I idle
 * kernel thread), fields 14 and 15 are utime and stime in clock ticks. The process's file ({@code
 * /proc/<pid>/stat}) gives the state of its main thread and the CPU time of all its threads; a
 * thread's file ({@code task/<tid>/stat}) gives that thread's state.
 *
 * <p>Reading these files takes no lock of the process described, so it does not block however
 * that process is stuck; the watchdog thread may do it. Without {@code /proc} (not Linux) nothing
 * is known: {@link #sample} says UNKNOWN and {@link #ended} says false.
 */
public final class ProcStat {
  /**
   * Clock ticks per second of utime and stime: the kernel's USER_HZ, 100 on every architecture
   * Linux and the JDK run on (the ABI fixes it; {@code getconf CLK_TCK} prints it).
   */
  static final long TICKS_PER_SECOND = 100;

  private static final Path PROC = Path.of("/proc");
  /** Whether this system has a Linux {@code /proc}; decided once. */
  private static final boolean AVAILABLE = Files.isRegularFile(PROC.resolve("self/stat"));

  private ProcStat() {}

  /** The fields of one stat line that the servers use. */
  record Stat(char state, long cpuTicks) {
    /** State Z (zombie) or X (dead): the thread has ended. */
    boolean ended() {
      return state == 'Z' || state == 'X' || state == 'x';
    }

    /** State T (stopped by a signal: SIGSTOP, Ctrl-Z) or t (stopped by a tracer). */
    boolean stopped() {
      return state == 'T' || state == 't';
    }

    /**
     * State R (running, or runnable and waiting for a CPU) or D (uninterruptible sleep: waiting
     * for the disk or for memory to be paged in): the states the load average counts.
     */
    boolean active() {
      return state == 'R' || state == 'D';
    }
  }

  /**
   * Parses a stat line; null if it is not one (too few fields after the command name).
   * Does no I/O.
   */
  static Stat parse(String line) {
    String[] f = fieldsAfterName(line);
    // f[0] is field 3 (state); utime and stime, fields 14 and 15, are f[11] and f[12].
    if (f == null || f.length < 13 || f[0].length() != 1) {
      return null;
    }
    try {
      return new Stat(f[0].charAt(0), Long.parseLong(f[11]) + Long.parseLong(f[12]));
    } catch (NumberFormatException e) {
      return null;
    }
  }

  /**
   * The fields of a stat line after the command name (field 2, in parentheses, which may itself
   * hold spaces and parentheses: the last ')' ends it); null if there are none.
   */
  private static String[] fieldsAfterName(String line) {
    int close = line.lastIndexOf(')');
    if (close < 0 || close + 2 >= line.length()) {
      return null;
    }
    return line.substring(close + 2).trim().split(" ");
  }

  /**
   * The job-control fields of a stat line, for the console's question "may this process read its
   * terminal?" ({@code Console.decide}): field 5 pgrp (its process group), field 7 tty_nr (its
   * controlling terminal as a device number, 0 for none) and field 8 tpgid (the foreground process
   * group of that terminal, -1 for none).
   */
  public record JobControl(long pgrp, long ttyNr, long tpgid) {
    /** Whether this process's group is the foreground group of its controlling terminal. */
    public boolean foreground() {
      return ttyNr != 0 && pgrp == tpgid;
    }
  }

  /** Parses the job-control fields of a stat line; null if it is not one. Does no I/O. */
  public static JobControl parseJobControl(String line) {
    String[] f = fieldsAfterName(line);
    // f[0] is field 3, so pgrp (5), tty_nr (7) and tpgid (8) are f[2], f[4] and f[5].
    if (f == null || f.length < 6) {
      return null;
    }
    try {
      return new JobControl(Long.parseLong(f[2]), Long.parseLong(f[4]), Long.parseLong(f[5]));
    } catch (NumberFormatException e) {
      return null;
    }
  }

  /** This process's job-control fields, read now (they change with fg and bg); null if unknown. */
  public static JobControl selfJobControl() {
    if (!AVAILABLE) {
      return null;
    }
    try {
      return parseJobControl(readStat(PROC.resolve("self/stat")));
    } catch (IOException e) {
      return null;
    }
  }

  /**
   * Whether process {@code pid} has ended although it may still have an entry: every one of its
   * threads is a zombie or dead, or it has no entry at all. A dead orphan stays a zombie until
   * init reaps it; the main thread of a multi-threaded process shows as a zombie while its other
   * threads still exit (and still hold the process's files), so only the threads tell. False
   * when {@code /proc} cannot tell (not Linux, unreadable).
   */
  static boolean ended(long pid) {
    if (!AVAILABLE) {
      return false;
    }
    Path proc = PROC.resolve(Long.toString(pid));
    try {
      Stat main = read(proc.resolve("stat"));
      if (main == null || !main.ended()) {
        return false;
      }
      try (DirectoryStream<Path> tasks = Files.newDirectoryStream(proc.resolve("task"))) {
        for (Path task : tasks) {
          Stat t;
          try {
            t = read(task.resolve("stat"));
          } catch (NoSuchFileException e) {
            continue; // The thread ended meanwhile.
          }
          if (t == null || !t.ended()) {
            return false;
          }
        }
      }
      return true;
    } catch (NoSuchFileException e) {
      return true; // Reaped meanwhile.
    } catch (IOException | DirectoryIteratorException e) {
      return false;
    }
  }

  /**
   * One look at process {@code pid} for the {@link HangJudge}: gone, stopped, or live with its
   * CPU time so far and how many of its threads are {@linkplain Stat#active active} right now;
   * UNKNOWN without {@code /proc}. A thread list that cannot be read counts no active thread.
   */
  static HangJudge.Sample sample(long pid) {
    if (!AVAILABLE) {
      return HangJudge.Sample.unknown();
    }
    Path proc = PROC.resolve(Long.toString(pid));
    Stat main;
    try {
      main = read(proc.resolve("stat"));
    } catch (NoSuchFileException e) {
      return HangJudge.Sample.gone();
    } catch (IOException e) {
      return HangJudge.Sample.unknown();
    }
    if (main == null) {
      return HangJudge.Sample.unknown();
    }
    if (main.stopped()) {
      return HangJudge.Sample.stopped();
    }
    long cpuMillis = main.cpuTicks() * 1_000 / TICKS_PER_SECOND;
    int live = 0;
    int active = 0;
    try (DirectoryStream<Path> tasks = Files.newDirectoryStream(proc.resolve("task"))) {
      for (Path task : tasks) {
        Stat t = readTask(task);
        if (t != null && !t.ended()) {
          live++;
          if (t.active()) {
            active++;
          }
        }
      }
    } catch (NoSuchFileException e) {
      return HangJudge.Sample.gone();
    } catch (IOException | DirectoryIteratorException e) {
      return HangJudge.Sample.live(cpuMillis, 0); // Its threads cannot be told: CPU time only.
    }
    return live == 0 && main.ended() ? HangJudge.Sample.gone()
        : HangJudge.Sample.live(cpuMillis, active);
  }

  /** The stat file's fields; ISO-8859-1 because a thread's name may hold any bytes. */
  private static Stat read(Path stat) throws IOException {
    return parse(readStat(stat));
  }

  private static String readStat(Path stat) throws IOException {
    return new String(Files.readAllBytes(stat), StandardCharsets.ISO_8859_1);
  }

  /** A thread's stat, or null if it cannot be parsed or the thread exited meanwhile. */
  private static Stat readTask(Path task) throws IOException {
    try {
      return read(task.resolve("stat"));
    } catch (NoSuchFileException e) {
      return null;
    }
  }
}
