package io.psiskv.server.front;

import io.psiskv.server.ServerLog;
import java.io.IOError;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import org.jline.reader.EndOfFileException;
import org.jline.reader.LineReader;
import org.jline.reader.LineReaderBuilder;
import org.jline.reader.UserInterruptException;
import org.jline.terminal.Terminal;
import org.jline.terminal.TerminalBuilder;

/**
 * The console's lines on an interactive terminal, read with JLine: line editing (arrow keys,
 * Ctrl-A/E, Backspace), a history of this session's commands (Up/Down, Ctrl-R; kept in memory
 * only), and no escape sequence echoed back. Used only when stdin and stdout are the terminal
 * and the process is in its foreground ({@link Console#decide}); JLine puts the terminal in raw
 * mode while it reads a line and restores it after.
 *
 * <p>JLine is kept out of the signals ({@code nativeSignals(false)}): Ctrl-C stays SIGINT to
 * both servers and stops them in order through their shutdown hooks, as without JLine; Ctrl-Z
 * stops them, {@code fg} resumes them.
 */
final class TerminalLines implements Console.Lines {
  private final Terminal terminal;
  private final LineReader reader;

  private TerminalLines(Terminal terminal, LineReader reader) {
    this.terminal = terminal;
    this.reader = reader;
  }

  /** The system terminal, or null if JLine cannot drive it (a dumb one): read lines plainly. */
  static TerminalLines open() {
    Terminal t;
    try {
      t = TerminalBuilder.builder().system(true).nativeSignals(false).dumb(false)
          .encoding(StandardCharsets.UTF_8).build();
    } catch (IOException | IllegalStateException e) {
      ServerLog.debug("console: no line editing (" + ServerLog.describe(e) + ")");
      return null;
    }
    if (Terminal.TYPE_DUMB.equals(t.getType()) || Terminal.TYPE_DUMB_COLOR.equals(t.getType())) {
      close(t);
      return null;
    }
    LineReader r = LineReaderBuilder.builder().terminal(t).appName("psiskv")
        .option(LineReader.Option.DISABLE_EVENT_EXPANSION, true) // "!" is no history command.
        .build();
    return new TerminalLines(t, r);
  }

  @Override
  public String read(String prompt) throws IOException {
    try {
      return reader.readLine(prompt);
    } catch (EndOfFileException e) {
      return null; // Ctrl-D on an empty line.
    } catch (UserInterruptException e) {
      return ""; // Not expected (JLine is out of the signals); an empty line, as in a shell.
    } catch (IOError e) {
      throw e.getCause() instanceof IOException ? (IOException) e.getCause()
          : new IOException(ServerLog.describe(e), e);
    }
  }

  @Override
  public void close() {
    close(terminal);
  }

  private static void close(Terminal t) {
    try {
      t.close();
    } catch (IOException e) {
      // The terminal is gone anyway.
    }
  }
}
