package io.psiskv.cli;

import io.psiskv.client.KvClient;
import io.psiskv.client.KvException;
import io.psiskv.protocol.Status;
import java.io.PrintStream;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/**
 * {@code status}, {@code status --json}: the Data Server's counters (STATS, PROTOCOL.md §6.7),
 * the same snapshot the server console's {@code status} prints.
 */
@Command(exitCodeListHeading = "%nExit codes:%n",
    exitCodeList = {
        "0:printed",
        PsiskvCli.EXIT_2_LINE,
        PsiskvCli.EXIT_3_LINE},
    name = "status", mixinStandardHelpOptions = true,
    description = {"Prints the server's counters (PROTOCOL.md 6.7): version, pids, uptime, keys,"
        + " connections, requests by type, hits and misses, bytes, fsync figures, memory.",
        "--json prints them as one JSON object, numbers as numbers, in the server's order."})
final class StatusCommand implements Callable<Integer> {
  @ParentCommand PsiskvCli cli;
  @Spec CommandSpec spec;

  @Option(names = "--json", description = "one JSON object, for programs")
  boolean json;

  @Override
  public Integer call() {
    cli.checkConnectionOptions(spec.commandLine());
    Map<String, Object> stats;
    try (KvClient kv = cli.connect()) {
      stats = kv.stats();
    } catch (KvException e) {
      if (e.status() == Status.UNKNOWN_OPCODE) { // PROTOCOL.md §3.4: a server older than STATS.
        throw new PsiskvCli.Failure("the server at " + cli.host + ":" + cli.port
            + " does not answer STATS (it is older than this psiskv-cli)", e);
      }
      throw e;
    }
    PrintStream out = cli.stdout();
    out.print(json ? json(stats) : human(stats, cli.host + ":" + cli.port));
    out.flush();
    return PsiskvCli.EXIT_OK;
  }

  /**
   * One JSON object (RFC 8259), one member per line: u64 counters as JSON numbers (unsigned
   * decimal, exact), strings escaped.
   */
  static String json(Map<String, Object> stats) {
    StringBuilder b = new StringBuilder("{");
    String sep = "\n";
    for (Map.Entry<String, Object> e : stats.entrySet()) {
      b.append(sep).append("  ");
      quote(b, e.getKey());
      b.append(": ");
      Object v = e.getValue();
      if (v instanceof Long) {
        b.append(Long.toUnsignedString((Long) v));
      } else {
        quote(b, String.valueOf(v));
      }
      sep = ",\n";
    }
    return b.append(stats.isEmpty() ? "}\n" : "\n}\n").toString();
  }

  private static void quote(StringBuilder b, String s) {
    b.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"':
          b.append("\\\"");
          break;
        case '\\':
          b.append("\\\\");
          break;
        default:
          if (c < 0x20 || c == 0x7F || Character.isSurrogate(c)) {
            b.append(String.format("\\u%04x", (int) c));
          } else {
            b.append(c);
          }
      }
    }
    b.append('"');
  }

  /** A line per counter, aligned, with the uptime and records per fsync spelled out. */
  static String human(Map<String, Object> stats, String where) {
    StringBuilder b = new StringBuilder("psiskv at ").append(where).append('\n');
    for (Map.Entry<String, Object> e : stats.entrySet()) {
      Object v = e.getValue();
      String shown = v instanceof Long ? Long.toUnsignedString((Long) v) : String.valueOf(v);
      if (e.getKey().equals("uptime_ms") && v instanceof Long) {
        Duration d = Duration.ofMillis((Long) v);
        shown += String.format(" (%dh%02dm%02ds)", d.toHours(), d.toMinutesPart(),
            d.toSecondsPart());
      }
      b.append(String.format("  %-22s %s%n", e.getKey(), printable(shown)));
    }
    Object fsyncs = stats.get("fsyncs");
    Object records = stats.get("fsync_records");
    if (fsyncs instanceof Long && records instanceof Long && (Long) fsyncs > 0) {
      b.append(String.format("  %-22s %.2f%n", "records_per_fsync",
          (double) (Long) records / (Long) fsyncs));
    }
    return b.toString();
  }

  /** A server's string without control characters (they could drive the terminal). */
  private static String printable(String s) {
    StringBuilder b = new StringBuilder(s.length());
    s.codePoints().forEach(c -> b.append(Character.isISOControl(c) ? "?" : Character.toString(c)));
    return b.toString();
  }
}
