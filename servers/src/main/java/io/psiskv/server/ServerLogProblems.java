package io.psiskv.server;

import java.util.EnumMap;
import java.util.function.Consumer;

/**
 * The log lines of data connections' problems, which a peer can cause as often as it likes
 * (one line per connection would be tens of thousands of lines a minute): per {@link Kind}, the
 * first {@code linesPerInterval} of each interval get a line each, naming the peer; the rest are
 * counted, and one summary line per interval gives the counts of every kind ({@link
 * ServerLogSummary}), for example
 *
 * <pre>
 *   data connections: 48,210 more protocol violations, 31 more broken off mid-request, in the
 *   last 10 s
 * </pre>
 *
 * <p>The Data Server's uses {@link ServerConfig#LOG_SUMMARY_INTERVAL_MILLIS} and {@link
 * ServerConfig#LOG_PROBLEM_LINES_PER_INTERVAL}; the system properties {@value
 * #INTERVAL_PROPERTY} and {@value #LINES_PROPERTY} override them (tests that read every line).
 * Thread-safe: every connection of every policy reports here; the maintenance thread calls
 * {@link #flushIfDue} every second so that the last counts are logged without waiting for a new
 * problem.
 */
public final class ServerLogProblems {
  /** The kinds of problem, each with its own allowance of lines. */
  public enum Kind {
    /** A request broke a rule of PROTOCOL.md and was answered with an error. */
    VIOLATION("protocol violations"),
    /** The peer closed or stalled in the middle of a request. */
    BROKEN_OFF("broken off mid-request"),
    /** The connection failed (reset, I/O error) or the server failed serving it. */
    FAILED("connection failures"),
    /** The connection was closed because its session was resumed on another one. */
    TAKEN_OVER("closed for a resume of their session elsewhere");

    final String description;

    Kind(String description) {
      this.description = description;
    }
  }

  public static final String INTERVAL_PROPERTY = "psiskv.logSummaryIntervalMillis";
  public static final String LINES_PROPERTY = "psiskv.logProblemLinesPerInterval";

  private final Consumer<String> sink;
  private final ServerLogSummary summary;
  private final EnumMap<Kind, ServerLogSummary.Kind> kinds = new EnumMap<>(Kind.class);

  public ServerLogProblems(Consumer<String> sink, long intervalMillis, int linesPerInterval) {
    this.sink = sink;
    this.summary = new ServerLogSummary("data connections", intervalMillis, sink);
    for (Kind k : Kind.values()) {
      kinds.put(k, summary.detailedKind("more " + k.description, linesPerInterval));
    }
  }

  /** The Data Server's: {@link ServerLog#info}, with the configured interval and allowance. */
  static ServerLogProblems forDataServer() {
    return new ServerLogProblems(ServerLog::info,
        Long.getLong(INTERVAL_PROPERTY, ServerConfig.LOG_SUMMARY_INTERVAL_MILLIS),
        Integer.getInteger(LINES_PROPERTY, ServerConfig.LOG_PROBLEM_LINES_PER_INTERVAL));
  }

  /** A problem of {@code kind} of the connection from {@code peer}: its own line, or counted. */
  public void report(Kind kind, String peer, String message) {
    if (summary.record(kinds.get(kind))) {
      sink.accept("data connection " + peer + ": " + message);
    }
  }

  /** Logs the summary if one is due. */
  void flushIfDue() {
    summary.flushIfDue(System.nanoTime());
  }

  /** Logs the open summary now (at a stop). */
  void flush() {
    summary.flush(System.nanoTime());
  }
}
