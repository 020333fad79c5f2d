package io.psiskv.server;

import io.psiskv.server.control.Supervisor;
import java.nio.file.Path;
import java.util.Optional;

/**
 * {@code build-scripts/psiskv-stop}: stops a running pair in order. The liveness rule (a pid file
 * names a live psiskv process: not gone, not a zombie, its command line mentions psiskv) is
 * {@link PidFile#livePeer}'s, the one the servers use, not a copy in the script.
 *
 * <p>SIGTERM goes to the Front Server named by {@code front.pid}, which sends SHUTDOWN to the
 * Data Server and waits for it; if no Front Server is running (it died and is being relaunched)
 * the Data Server gets it, stops, and relaunches nothing. Then it waits, at most the timeout,
 * until neither process is running and neither pid file names a live server (a front that the
 * Data Server was relaunching as it was signalled is stopped by the Data Server). Exit status: 0
 * stopped, 1 nothing running or still running at the timeout, 2 bad usage.
 */
final class StopTool {
  /** How often the wait looks at the processes again: a poll of a condition with a deadline. */
  static final long POLL_MILLIS = 50;
  static final int DEFAULT_TIMEOUT_SECONDS = 30;

  private StopTool() {}

  public static void main(String[] args) throws InterruptedException {
    Path dir = Path.of("data");
    int timeoutSeconds = DEFAULT_TIMEOUT_SECONDS;
    for (int i = 0; i < args.length; i++) {
      String a = args[i];
      String value = null;
      int eq = a.indexOf('=');
      if (a.startsWith("--") && eq > 0) {
        value = a.substring(eq + 1);
        a = a.substring(0, eq);
      } else if ((a.equals("--data-dir") || a.equals("--timeout")) && i + 1 < args.length) {
        value = args[++i];
      }
      if (a.equals("--data-dir") && value != null) {
        dir = Path.of(value);
      } else if (a.equals("--timeout") && value != null && value.matches("[0-9]{1,9}")) {
        timeoutSeconds = Integer.parseInt(value);
      } else if (a.equals("--data-dir") || a.equals("--timeout")) {
        usage(a.equals("--timeout") && value != null
            ? "--timeout must be a whole number of seconds" : a + " needs a value");
      } else {
        usage("unknown option '" + args[i] + "' (try --help)");
      }
    }
    System.exit(stop(dir, timeoutSeconds * 1_000L));
  }

  private static void usage(String message) {
    System.err.println("psiskv-stop: " + message);
    System.exit(2);
  }

  /** Stops the pair of {@code dir}; returns the exit status. */
  static int stop(Path dir, long timeoutMillis) throws InterruptedException {
    Optional<ProcessHandle> front = PidFile.livePeer(dir, PidFile.FRONT);
    Optional<ProcessHandle> data = PidFile.livePeer(dir, PidFile.DATA);
    if (front.isEmpty() && data.isEmpty()) {
      System.err.println("psiskv-stop: no running psiskv server uses data directory " + dir);
      return 1;
    }
    (front.isPresent() ? front : data).get().destroy(); // SIGTERM: an orderly stop.
    long deadline = System.nanoTime() + timeoutMillis * 1_000_000L;
    while (running(front) || running(data) || PidFile.livePeer(dir, PidFile.FRONT).isPresent()
        || PidFile.livePeer(dir, PidFile.DATA).isPresent()) {
      if (System.nanoTime() - deadline >= 0) {
        System.err.println("psiskv-stop: still running after " + timeoutMillis / 1_000 + "s"
            + " (front pid " + pid(front) + ", data pid " + pid(data) + ")");
        return 1;
      }
      Thread.sleep(POLL_MILLIS);
    }
    System.out.println("psiskv-stop: stopped (front pid " + pid(front) + ", data pid "
        + pid(data) + ")");
    return 0;
  }

  private static boolean running(Optional<ProcessHandle> p) {
    return p.isPresent() && !Supervisor.isGone(p.get());
  }

  private static String pid(Optional<ProcessHandle> p) {
    return p.map(h -> Long.toString(h.pid())).orElse("none");
  }
}
