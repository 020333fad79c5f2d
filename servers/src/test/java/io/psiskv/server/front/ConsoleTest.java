package io.psiskv.server.front;

import static com.google.common.truth.Truth.assertThat;

import io.psiskv.server.control.ProcStat;
import io.psiskv.server.front.Console.Decision;
import io.psiskv.server.front.Console.Mode;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The console's decision whether to read stdin, from the /proc fields it is made of, and its
 * command dispatch, on in-memory streams. The real thing (a server started with {@code &} on a
 * pseudo-terminal) is {@code BackgroundStartTest}.
 */
class ConsoleTest {
  /** /dev/pts/0's device number as tty_nr and st_rdev give it: major 136, minor 0. */
  private static final long PTS0 = 136 << 8;
  private static final ProcStat.JobControl FOREGROUND = new ProcStat.JobControl(100, PTS0, 100);
  private static final ProcStat.JobControl BACKGROUND = new ProcStat.JobControl(100, PTS0, 90);
  /** No controlling terminal (systemd, setsid): tty_nr 0, tpgid -1. */
  private static final ProcStat.JobControl DETACHED = new ProcStat.JobControl(100, 0, -1);

  @Test
  void aTerminalIsReadOnlyInTheForeground() {
    assertThat(Console.decide(Mode.AUTO, PTS0, FOREGROUND, true)).isEqualTo(Decision.TERMINAL);
    assertThat(Console.decide(Mode.AUTO, PTS0, BACKGROUND, true)).isEqualTo(Decision.BACKGROUND);
    // stdout redirected to a file: still our terminal on stdin, still job control.
    assertThat(Console.decide(Mode.AUTO, PTS0, BACKGROUND, false))
        .isEqualTo(Decision.BACKGROUND);
  }

  @Test
  void consoleForcesTheReadAndNoConsoleForbidsIt() {
    assertThat(Console.decide(Mode.ON, PTS0, BACKGROUND, true)).isEqualTo(Decision.TERMINAL);
    assertThat(Console.decide(Mode.OFF, PTS0, FOREGROUND, true)).isEqualTo(Decision.OFF);
    assertThat(Console.decide(Mode.OFF, 0, DETACHED, false)).isEqualTo(Decision.OFF);
  }

  @Test
  void pipesFilesAndDevNullAreReadAsStreams() {
    // A pipe or a regular file has st_rdev 0; /dev/null is 1:3, not the controlling terminal.
    assertThat(Console.decide(Mode.AUTO, 0, BACKGROUND, false)).isEqualTo(Decision.STREAM);
    assertThat(Console.decide(Mode.AUTO, (1 << 8) | 3, BACKGROUND, false))
        .isEqualTo(Decision.STREAM);
    assertThat(Console.decide(Mode.AUTO, 0, DETACHED, false)).isEqualTo(Decision.STREAM);
    assertThat(Console.decide(Mode.AUTO, -1, DETACHED, false)).isEqualTo(Decision.NONE);
  }

  @Test
  void anotherTerminalThanTheControllingOneCannotStopUs() {
    long pts5 = (136 << 8) | 5;
    assertThat(Console.decide(Mode.AUTO, pts5, BACKGROUND, true)).isEqualTo(Decision.TERMINAL);
    assertThat(Console.decide(Mode.AUTO, pts5, DETACHED, true)).isEqualTo(Decision.TERMINAL);
  }

  @Test
  void withoutProcATerminalIsLeftAlone() {
    assertThat(Console.decide(Mode.AUTO, PTS0, null, true)).isEqualTo(Decision.BACKGROUND);
    assertThat(Console.decide(Mode.ON, PTS0, null, true)).isEqualTo(Decision.TERMINAL);
    assertThat(Console.decide(Mode.AUTO, 0, null, false)).isEqualTo(Decision.STREAM);
  }

  @Test
  void jobControlFieldsAreCountedAfterTheLastParenthesis() {
    String line = "4242 (java) x) S 1 4242 4000 34816 4242 4194304 0 0 0 0 0 2 0 0 20 0 19 0";
    ProcStat.JobControl jc = ProcStat.parseJobControl(line);
    assertThat(jc).isEqualTo(new ProcStat.JobControl(4242, 34816, 4242));
    assertThat(jc.foreground()).isTrue();
    assertThat(ProcStat.parseJobControl("4242 (java) S 1 2")).isNull();
    assertThat(ProcStat.parseJobControl("garbage")).isNull();
    // This test JVM: its own fields parse (it has no terminal under Maven: tty_nr may be 0).
    assertThat(ProcStat.selfJobControl()).isNotNull();
  }

  @Test
  void commandsIgnoreCaseAndBlanksAndExitIsQuit() {
    List<String> ran = new ArrayList<>();
    Console.Command quit = () -> {
      ran.add("quit");
      return false;
    };
    Map<String, Console.Command> commands = Map.of("status", () -> {
      ran.add("status");
      return true;
    }, "quit", quit, "exit", quit);
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    byte[] in = "STATUS\n  Status \n\n\u001b[Abogus\n Exit\nstatus\n"
        .getBytes(StandardCharsets.UTF_8);
    PrintStream print = new PrintStream(out, true, StandardCharsets.UTF_8);
    new Console(Decision.STREAM, commands,
        new Console.StreamLines(new ByteArrayInputStream(in), print), false, print).run();
    assertThat(ran).containsExactly("status", "status", "quit").inOrder();
    String printed = out.toString(StandardCharsets.UTF_8);
    // The escape sequence is not replayed to the terminal; no prompt on a stream.
    assertThat(printed).isEqualTo("unknown command '?[Abogus'; type help\n");
  }

  @Test
  void aTerminalGetsAPrompt() {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    PrintStream print = new PrintStream(out, true, StandardCharsets.UTF_8);
    new Console(Decision.TERMINAL, Map.of(),
        new Console.StreamLines(new ByteArrayInputStream("\n".getBytes()), print), true, print)
        .run();
    assertThat(out.toString(StandardCharsets.UTF_8))
        .isEqualTo(Console.PROMPT + Console.PROMPT + System.lineSeparator());
  }

  @Test
  void anOffConsoleReadsNothing() {
    ByteArrayInputStream in = new ByteArrayInputStream("quit\n".getBytes());
    new Console(Decision.OFF, Map.of("quit", () -> false),
        new Console.StreamLines(in, System.out), false, System.out).run();
    assertThat(in.available()).isEqualTo(5);
  }
}
