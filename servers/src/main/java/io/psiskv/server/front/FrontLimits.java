package io.psiskv.server.front;

import io.psiskv.server.ServerConfig;
import io.psiskv.server.ServerLogProblems;

/**
 * The limits of front connections: {@link ServerConfig}'s defaults, which the system properties
 * named here override (tests use them to make a timeout short; users get the defaults).
 */
public record FrontLimits(int requestDeadlineMillis, int idleTimeoutMillis, int maxConnections,
    long summaryIntervalMillis) {
  public static final String REQUEST_DEADLINE_PROPERTY = "psiskv.front.requestDeadlineMillis";
  public static final String IDLE_TIMEOUT_PROPERTY = "psiskv.front.idleTimeoutMillis";
  public static final String MAX_CONNECTIONS_PROPERTY = "psiskv.front.maxConnections";
  public static final String SUMMARY_INTERVAL_PROPERTY = ServerLogProblems.INTERVAL_PROPERTY;
  /** Largest value of any override: an hour in milliseconds, or more connections than fds. */
  private static final int MAX_OVERRIDE = 3_600_000;

  static FrontLimits defaults() {
    return new FrontLimits(ServerConfig.FRONT_REQUEST_DEADLINE_MILLIS,
        ServerConfig.FRONT_IDLE_TIMEOUT_MILLIS, ServerConfig.MAX_FRONT_CONNECTIONS,
        ServerConfig.LOG_SUMMARY_INTERVAL_MILLIS);
  }

  /**
   * The defaults with the overrides of the system properties.
   *
   * @throws IllegalArgumentException naming the property whose value is not an integer from 1
   *     to {@value #MAX_OVERRIDE}
   */
  public static FrontLimits fromSystemProperties() {
    FrontLimits d = defaults();
    return new FrontLimits(
        property(REQUEST_DEADLINE_PROPERTY, d.requestDeadlineMillis()),
        property(IDLE_TIMEOUT_PROPERTY, d.idleTimeoutMillis()),
        property(MAX_CONNECTIONS_PROPERTY, d.maxConnections()),
        property(SUMMARY_INTERVAL_PROPERTY, (int) d.summaryIntervalMillis()));
  }

  private static int property(String name, int defaultValue) {
    String value = System.getProperty(name);
    if (value == null) {
      return defaultValue;
    }
    try {
      int n = Integer.parseInt(value.trim());
      if (n >= 1 && n <= MAX_OVERRIDE) {
        return n;
      }
    } catch (NumberFormatException e) {
      // Reported below.
    }
    throw new IllegalArgumentException("system property " + name
        + " must be an integer from 1 to " + MAX_OVERRIDE + ", not '" + value + "'");
  }
}
