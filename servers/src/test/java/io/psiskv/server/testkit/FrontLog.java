package io.psiskv.server.testkit;

import io.psiskv.server.ServerConfig;
import io.psiskv.server.front.FrontLimits;
import java.util.List;
import java.util.stream.Collectors;

/**
 * The Front Server's connection limits as tests see them: the JVM options that override them
 * ({@link FrontLimits}, for {@code ServerFixture.builder().jvmArgs}), and the {@link
 * ServerLogSummary} lines read out of a server log: {@code front connections: 300 closed past the 2000
 * ms request deadline, 12 evicted at the cap of 4096, in the last 10 s}.
 */
public final class FrontLog {
  private static final String PREFIX = "front connections: ";
  private static final String WINDOW = "in the last ";

  private FrontLog() {}

  /** The JVM option for a summary line at most every {@code millis} ms. */
  public static String summaryIntervalArg(int millis) {
    return "-D" + FrontLimits.SUMMARY_INTERVAL_PROPERTY + "=" + millis;
  }

  /** The JVM option for the request deadline. */
  public static String requestDeadlineArg(int millis) {
    return "-D" + FrontLimits.REQUEST_DEADLINE_PROPERTY + "=" + millis;
  }

  /** The JVM option for the idle timeout. */
  public static String idleTimeoutArg(int millis) {
    return "-D" + FrontLimits.IDLE_TIMEOUT_PROPERTY + "=" + millis;
  }

  /** The JVM option for the connection cap. */
  public static String maxConnectionsArg(int connections) {
    return "-D" + FrontLimits.MAX_CONNECTIONS_PROPERTY + "=" + connections;
  }

  /** The default request deadline, for tests outside this package. */
  public static final int DEFAULT_REQUEST_DEADLINE_MILLIS =
      ServerConfig.FRONT_REQUEST_DEADLINE_MILLIS;

  /** The summary lines of the front's connections, oldest first. */
  public static List<String> summaries(String log) {
    return log.lines().filter(l -> l.contains(PREFIX) && l.contains(", " + WINDOW))
        .collect(Collectors.toList());
  }

  /**
   * The sum over every summary line of the counts whose description contains {@code fragment}
   * (e.g. {@code "request deadline"}).
   */
  public static long total(String log, String fragment) {
    long sum = 0;
    for (String line : summaries(log)) {
      String items = line.substring(line.indexOf(PREFIX) + PREFIX.length());
      for (String item : items.split(", ")) {
        int space = item.indexOf(' ');
        if (item.startsWith(WINDOW) || space < 0 || !item.contains(fragment)) {
          continue;
        }
        sum += Long.parseLong(item.substring(0, space));
      }
    }
    return sum;
  }
}
