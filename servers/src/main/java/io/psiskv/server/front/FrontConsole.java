package io.psiskv.server.front;

import io.psiskv.server.ServerConfig;
import io.psiskv.server.ServerLog;
import io.psiskv.server.backup.BackupLog;
import io.psiskv.server.control.Supervisor;
import java.io.IOException;
import java.time.Duration;
import java.time.Instant;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * The Front Server's console commands ({@link Console} reads stdin and matches them): {@code
 * status}, {@code help}, {@code quit} and {@code exit}. {@code status} prints this process's
 * figures and the Data Server's, from a STATUS control request (PROTOCOL.md §7.4), one {@code
 * name: fields} line per subject. Runs on the {@code console} thread.
 */
public final class FrontConsole {
  private final ServerConfig config;
  /** When the Front Server started ({@link System#nanoTime}), for its uptime. */
  private final long startNanos;
  private final FrontListener clients;
  private final Supervisor supervisor;
  /** Where HELLO sends clients now; null while the Data Server is down. */
  private final Supplier<DataEndpoint> endpoint;
  /** Asks the Front Server to stop both processes, with the reason for the log. */
  private final Consumer<String> requestStop;

  public FrontConsole(ServerConfig config, long startNanos, FrontListener clients,
      Supervisor supervisor, Supplier<DataEndpoint> endpoint,
      Consumer<String> requestStop) {
    this.config = config;
    this.startNanos = startNanos;
    this.clients = clients;
    this.supervisor = supervisor;
    this.endpoint = endpoint;
    this.requestStop = requestStop;
  }

  /** The console's commands by name ({@link Console} matches them ignoring case). */
  public Map<String, Console.Command> commands() {
    Console.Command quit = () -> {
      requestStop.accept("quit on the console");
      return false;
    };
    return Map.of(
        "quit", quit,
        "exit", quit,
        "help", () -> {
          System.out.println("commands: status (pids, ports, uptime, keys, connections,"
              + " requests, backup file and fsync, memory, relaunches), help, quit or exit (stop"
              + " both servers)");
          return true;
        },
        "status", () -> {
          printStatus();
          return true;
        });
  }

  /**
   * The console's {@code status}: this process's figures, and the Data Server's from a STATUS
   * control request (PROTOCOL.md §7.4). One {@code name: fields} line per subject.
   */
  private void printStatus() {
    DataEndpoint e = endpoint.get();
    System.out.printf("front server: pid %d, listening on %s:%d, up %s, data server relaunches"
            + " %d%n", ProcessHandle.current().pid(), config.bindAddress.getHostAddress(),
        clients.localPort(),
        formatDuration(System.nanoTime() - startNanos), supervisor.relaunches());
    Supervisor.Peer peer = currentLinkedPeer();
    if (e == null || peer == null) {
      System.out.println("data server: not available (being started or relaunched)");
    } else {
      Map<String, Object> st;
      try {
        st = peer.link().requestStatus(ServerConfig.STATUS_TIMEOUT_MILLIS);
      } catch (IOException ex) {
        System.out.printf("data server: pid %d, port %d, no status (%s)%n", e.pid, e.port,
            ServerLog.describe(ex));
        st = null;
      }
      if (st != null) {
        printDataStatus(st, e.port);
      }
    }
    System.out.println("data dir: " + config.dataDir);
  }

  /**
   * The Data Server's lines of {@code status}, from its counters (the STATS body, PROTOCOL.md
   * §6.7, which {@code psiskv-cli status} prints too). A counter the Data Server left out shows
   * as {@code ?}.
   */
  private void printDataStatus(Map<String, Object> st, int port) {
    long lastSync = number(st, "log_last_sync_ms");
    long fsyncs = number(st, "fsyncs");
    System.out.printf("data server: pid %s, port %d, up %s, threads %s, max value %d bytes,"
            + " front server relaunches %s%n",
        figure(st, "pid"), port, formatDuration(number(st, "uptime_ms") * 1_000_000L),
        config.threads, config.maxValueBytes, figure(st, "front_relaunches"));
    System.out.printf("store: %s keys, %s value bytes, %s sessions, %s connected clients%n",
        figure(st, "keys"), figure(st, "value_bytes"), figure(st, "sessions"),
        figure(st, "connections"));
    System.out.printf("connections: %s accepted, %s refused at the limit%n",
        figure(st, "connections_total"), figure(st, "connections_refused"));
    System.out.printf("requests: %s get (%s hits, %s misses), %s put, %s put-if-absent,"
            + " %s delete, %s stats; %s bytes in, %s bytes out%n",
        figure(st, "ops_get"), figure(st, "get_hits"), figure(st, "get_misses"),
        figure(st, "ops_put"), figure(st, "ops_put_if_absent"), figure(st, "ops_delete"),
        figure(st, "ops_stats"), figure(st, "bytes_in"), figure(st, "bytes_out"));
    System.out.printf("backup file: %s, %s bytes, last sync %s, fsync %s%s%n",
        config.dataDir.resolve(BackupLog.FILE_NAME), figure(st, "log_file_bytes"),
        lastSync == 0 ? "never" : Instant.ofEpochMilli(lastSync).toString(), figure(st, "fsync"),
        number(st, "log_failed") != 0 ? ", FAILED: writes are refused until it recovers" : "");
    System.out.printf("fsync: %d commits, %s records per fsync, latency p50 %s us, p99 %s us%n",
        fsyncs, fsyncs == 0 ? "-"
            : String.format("%.1f", (double) number(st, "fsync_records") / fsyncs),
        figure(st, "fsync_p50_us"), figure(st, "fsync_p99_us"));
    System.out.printf("process: version %s, heap %s bytes used of %s committed, rss %s bytes%n",
        figure(st, "version"), figure(st, "heap_used_bytes"), figure(st, "heap_committed_bytes"),
        figure(st, "rss_bytes"));
  }

  /** A counter as the console shows it: unsigned decimal, the string, or ? if absent. */
  private static String figure(Map<String, Object> st, String name) {
    Object v = st.get(name);
    return v == null ? "?" : v instanceof Long ? Long.toUnsignedString((Long) v) : v.toString();
  }

  /** A u64 counter, 0 if absent or not a number. */
  private static long number(Map<String, Object> st, String name) {
    Object v = st.get(name);
    return v instanceof Long ? (Long) v : 0;
  }

  /** The Data Server being served to clients, if its control link is up. */
  private Supervisor.Peer currentLinkedPeer() {
    Supervisor.Peer p = supervisor.current();
    return p != null && p.link() != null && !p.link().isClosed() ? p : null;
  }

  private static String formatDuration(long nanos) {
    Duration d = Duration.ofNanos(nanos);
    return String.format("%dh%02dm%02ds", d.toHours(), d.toMinutesPart(), d.toSecondsPart());
  }
}
