package io.psiskv.server.front;

import io.psiskv.server.ServerLog;
import io.psiskv.server.control.ProcStat;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;

/**
 * The Front Server's console: reads commands from stdin, one per line, on its own thread.
 *
 * <p><b>Whether stdin is read</b> ({@link #decide}, once at start). A process that reads its
 * controlling terminal while its process group is not the terminal's foreground group (it was
 * started with {@code &}) gets SIGTTIN, which stops its whole process group: both servers, with
 * the client port still accepting. So the console reads stdin only when that cannot happen:
 *
 * <ul>
 *   <li>{@code --no-console}: never (a service; stop with SIGTERM or {@code psiskv-stop}).
 *   <li>stdin is the controlling terminal and the process is in the foreground: read, with a
 *       prompt ({@link Decision#TERMINAL}); in the background: not read, unless {@code --console}.
 *   <li>stdin is anything else (a pipe, a file, {@code /dev/null}): read as lines, no prompt
 *       ({@link Decision#STREAM}); this is how scripts and the tests drive the console.
 * </ul>
 *
 * <p>Both servers also ignore SIGTTIN and SIGTTOU ({@link #ignoreTerminalStops}): should the
 * pair be moved to the background later (Ctrl-Z, {@code bg}), a read of the terminal fails with
 * EIO instead of stopping the processes, and the console waits until the pair is in the
 * foreground again ({@code fg}). Without a console the server runs until SIGTERM, SIGINT or
 * {@code psiskv-stop}; the end of stdin ends only the console.
 *
 * <p><b>Lines.</b> On an interactive terminal (stdin and stdout are the terminal, in the
 * foreground) lines are read with line editing and history ({@link TerminalLines}, JLine) after
 * the prompt {@value #PROMPT}; if JLine cannot drive the terminal, plainly after the prompt.
 * Anything else is read plainly, without a prompt.
 *
 * <p><b>Commands</b> are matched ignoring case and surrounding blanks; what each one does is the
 * Front Server's ({@link Command}). An unknown command is echoed with its control characters
 * shown as {@code ?}, so that an arrow key's escape sequence is not replayed to the terminal.
 */
public final class Console {
  /** {@code --console}, {@code --no-console}, or neither. */
  public enum Mode {
    AUTO,
    ON,
    OFF
  }

  /** What the console does with stdin. */
  enum Decision {
    /** {@code --no-console}: stdin is not read. */
    OFF,
    /** stdin is the controlling terminal and this process is a background job: not read. */
    BACKGROUND,
    /** stdin is a terminal this process may read: prompted, interactive. */
    TERMINAL,
    /** stdin is a pipe, a file or {@code /dev/null}: read as lines, no prompt. */
    STREAM,
    /** There is no stdin (file descriptor 0 is closed). */
    NONE
  }

  /** A console command; runs on the console thread. Returns false to end the console. */
  interface Command {
    boolean run();
  }

  /** Where command lines come from. */
  interface Lines extends java.io.Closeable {
    /**
     * The next line without its line end, or null at the end of input.
     *
     * @param prompt shown first, or null for none
     */
    String read(String prompt) throws IOException;

    @Override
    void close();
  }

  /** Lines read plainly from a stream; the prompt, if any, printed to {@code out}. */
  static final class StreamLines implements Lines {
    private final BufferedReader in;
    private final PrintStream out;

    StreamLines(InputStream in, PrintStream out) {
      this.in = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
      this.out = out;
    }

    @Override
    public String read(String prompt) throws IOException {
      if (prompt != null) {
        out.print(prompt);
        out.flush();
      }
      return in.readLine();
    }

    @Override
    public void close() {
      // Nothing to release: stdin belongs to the process and stays open.
    }
  }

  /** Printed before each command is read, on a terminal only. */
  public static final String PROMPT = "psiskv> ";
  /** How often a console paused in the background looks whether it is in the foreground. */
  static final long FOREGROUND_POLL_MILLIS = 500;
  /** At most this many characters of an unknown command are echoed. */
  static final int ECHO_MAX_CHARS = 40;

  private final Decision decision;
  private final Map<String, Command> commands;
  private final Lines lines;
  private final boolean prompted;
  private final PrintStream out;

  /**
   * @param commands by lower-case name; the same command may have several names ({@code quit},
   *     {@code exit})
   * @param prompted whether {@link #PROMPT} is shown before each line (an interactive terminal)
   */
  Console(Decision decision, Map<String, Command> commands, Lines lines, boolean prompted,
      PrintStream out) {
    this.decision = decision;
    this.commands = Map.copyOf(commands);
    this.lines = lines;
    this.prompted = prompted;
    this.out = out;
  }

  /**
   * The console of this process's stdin and stdout, as {@link #decideNow} decides: prompted and
   * with line editing on an interactive terminal (JLine is loaded only then), else plain.
   */
  public static Console forStdin(Mode mode, Map<String, Command> commands) {
    Decision d = decideNow(mode);
    boolean interactive = d == Decision.TERMINAL && System.console() != null;
    Lines lines = interactive ? TerminalLines.open() : null;
    if (lines == null) {
      lines = new StreamLines(System.in, System.out);
    }
    return new Console(d, commands, lines, interactive, System.out);
  }

  /**
   * Whether and how to read stdin. Pure: the inputs are what {@link #decideNow} reads.
   *
   * @param stdinRdev the device number of the file open as stdin ({@code st_rdev}), 0 for a pipe
   *     or a regular file, -1 if there is no stdin
   * @param jc this process's pgrp, tty_nr and tpgid (proc(5)); null if unknown (no /proc)
   * @param systemConsole {@code System.console() != null}: stdin and stdout are terminals
   */
  static Decision decide(Mode mode, long stdinRdev, ProcStat.JobControl jc,
      boolean systemConsole) {
    if (mode == Mode.OFF) {
      return Decision.OFF;
    }
    if (stdinRdev < 0) {
      return Decision.NONE;
    }
    boolean controllingTerminal = jc != null && jc.ttyNr() != 0 && stdinRdev == jc.ttyNr();
    if (controllingTerminal) {
      return jc.foreground() || mode == Mode.ON ? Decision.TERMINAL : Decision.BACKGROUND;
    }
    if (jc == null && systemConsole && mode != Mode.ON) {
      // A terminal, and no /proc to say whether it is ours to read: reading risks SIGTTIN.
      return Decision.BACKGROUND;
    }
    return systemConsole ? Decision.TERMINAL : Decision.STREAM;
  }

  /** {@link #decide} for this process, now. */
  static Decision decideNow(Mode mode) {
    long rdev;
    try {
      Object r = Files.getAttribute(Path.of("/proc/self/fd/0"), "unix:rdev");
      rdev = r instanceof Long ? (Long) r : 0;
    } catch (java.nio.file.NoSuchFileException e) {
      rdev = -1; // fd 0 is closed.
    } catch (IOException | UnsupportedOperationException | IllegalArgumentException e) {
      rdev = 0; // Not Linux: decided from System.console() alone.
    }
    return decide(mode, rdev, ProcStat.selfJobControl(), System.console() != null);
  }

  /**
   * Makes SIGTTIN and SIGTTOU ignored in this process: a read of the controlling terminal from
   * the background then fails with EIO, and a write succeeds, instead of stopping the process
   * group (both servers). Does nothing where the JDK does not offer these signals.
   */
  public static void ignoreTerminalStops() {
    for (String name : new String[] {"TTIN", "TTOU"}) {
      try {
        sun.misc.Signal.handle(new sun.misc.Signal(name), sun.misc.SignalHandler.SIG_IGN);
      } catch (IllegalArgumentException | UnsupportedOperationException e) {
        // Not on this platform: the console's decision alone protects the pair.
      }
    }
  }

  /** The line the log gets for a console that does not read stdin; null if it does. */
  static String offReason(Decision d) {
    switch (d) {
      case OFF:
        return "console off (--no-console): stop with SIGTERM or build-scripts/psiskv-stop";
      case BACKGROUND:
        return "console off: stdin is a terminal and this process runs in the background"
            + " (started with &); stop with SIGTERM or build-scripts/psiskv-stop (--console reads"
            + " it anyway)";
      case NONE:
        return "console off: no stdin; stop with SIGTERM or build-scripts/psiskv-stop";
      default:
        return null;
    }
  }

  /** Reads and runs commands until {@code quit}, the end of stdin, or a failed read. */
  public void run() {
    String off = offReason(decision);
    if (off != null) {
      ServerLog.info(off);
      return;
    }
    try {
      readCommands();
    } finally {
      lines.close();
    }
  }

  private void readCommands() {
    boolean terminal = decision == Decision.TERMINAL;
    boolean paused = false;
    while (true) {
      String line;
      try {
        line = lines.read(prompted && !paused ? PROMPT : null);
      } catch (IOException e) {
        if (terminal && inBackground()) {
          if (!paused) {
            ServerLog.info("console paused: the server runs in the background; fg resumes it");
            paused = true;
          }
          awaitForeground();
          continue;
        }
        ServerLog.warn("console: stdin failed (" + ServerLog.describe(e) + "); the server keeps running");
        return;
      }
      if (paused) {
        ServerLog.info("console resumed");
        paused = false;
      }
      if (line == null) {
        if (prompted) {
          out.println();
        }
        ServerLog.info("console: end of stdin; the server keeps running (stop it with SIGTERM or"
            + " build-scripts/psiskv-stop)");
        return;
      }
      boolean more = dispatch(line);
      out.flush();
      if (!more) {
        return;
      }
    }
  }

  /** Runs one command line; false if the console ends (quit). */
  boolean dispatch(String line) {
    String name = line.strip().toLowerCase(Locale.ROOT);
    if (name.isEmpty()) {
      return true;
    }
    Command c = commands.get(name);
    if (c == null) {
      out.println("unknown command '" + printable(line.strip()) + "'; type help");
      return true;
    }
    return c.run();
  }

  /** {@code s} with control characters as {@code ?}, cut to {@value #ECHO_MAX_CHARS} chars. */
  static String printable(String s) {
    StringBuilder b = new StringBuilder();
    for (int i = 0; i < s.length() && b.length() < ECHO_MAX_CHARS; i++) {
      char ch = s.charAt(i);
      b.append(Character.isISOControl(ch) ? '?' : ch);
    }
    return s.length() > ECHO_MAX_CHARS ? b + "..." : b.toString();
  }

  private static boolean inBackground() {
    ProcStat.JobControl jc = ProcStat.selfJobControl();
    return jc != null && jc.ttyNr() != 0 && !jc.foreground();
  }

  /**
   * Waits until this process is in the foreground again. Nothing signals that (SIGCONT comes
   * only after a stop, and the pair is never stopped now), so it is polled.
   */
  private static void awaitForeground() {
    while (inBackground()) {
      try {
        Thread.sleep(FOREGROUND_POLL_MILLIS); // A poll of a state no event reports.
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return;
      }
    }
  }
}
