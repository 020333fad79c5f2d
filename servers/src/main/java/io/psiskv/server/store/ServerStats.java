package io.psiskv.server.store;

import io.psiskv.protocol.Protocol;
import io.psiskv.server.ServerConfig;
import io.psiskv.server.backup.BackupLog;
import java.io.IOException;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryUsage;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The Data Server's counters, and the one snapshot of them ({@link #snapshot}) that answers both
 * a client's STATS (PROTOCOL.md §6.7) and the Front Server's STATUS for its console (§7.4). The
 * Data Server holds the store, the log and the connections, so it is the one source; the Front
 * Server's own figures (its relaunches of the Data Server, its front connections) stay in its
 * console's lines.
 *
 * <p><b>Hot path.</b> The per-request counters live in {@link Counters}, one per thread that
 * serves requests (an event loop, or a connection thread of the blocking policies): plain longs
 * that only their thread writes, with opaque accesses so that a reader sees whole values without
 * any fence or lock on the writer's side. {@link #snapshot} sums the live ones and the retired
 * ones (a connection thread's, added when its connection ends). A figure is exact for some
 * instant during the snapshot, not all for the same instant.
 *
 * <p>Thread-safe.
 */
public final class ServerStats {
  /*
   * Indices of Counters: requests served by opcode, GET hits and misses, bytes. GETS is not
   * counted: every GET is a hit or a miss, so snapshot() derives ops_get from those two.
   */
  private static final int GETS = 0;
  public static final int PUTS = 1;
  public static final int PUTS_IF_ABSENT = 2;
  public static final int DELETES = 3;
  public static final int STATS_REQUESTS = 4;
  public static final int GET_HITS = 5;
  public static final int GET_MISSES = 6;
  /** Request bytes the handler consumed (whole requests, and parts of one in arrival). */
  public static final int BYTES_IN = 7;
  /** Answer bytes the handler queued. */
  public static final int BYTES_OUT = 8;
  private static final int COUNTERS = 9;
  /** Wire names of the indices above, in snapshot order. */
  private static final String[] NAMES = {"ops_get", "ops_put", "ops_put_if_absent",
      "ops_delete", "ops_stats", "get_hits", "get_misses", "bytes_in", "bytes_out"};

  /** {@link ServerConfig#version}, read once: a STATS costs no resource read. */
  private static final String VERSION = ServerConfig.version();

  private static final VarHandle SLOT = MethodHandles.arrayElementVarHandle(long[].class);

  /**
   * The RSS is read from {@code /proc} at most this often: a file read is the dearest part of a
   * snapshot, and a peer that sends STATS in a loop must not make every one pay it.
   */
  static final long RSS_REFRESH_MILLIS = 1000;

  /** One serving thread's counters; written by that thread only. */
  public static final class Counters {
    /**
     * Padded past a cache line on both sides, so two loops' counters never share one (the
     * arrays are allocated separately; the padding guards against neighbours in the heap).
     */
    private static final int PAD = 8;
    private final long[] slots = new long[PAD + COUNTERS + PAD];

    /** Adds {@code n} to counter {@code index}; the owning thread only. */
    public void add(int index, long n) {
      int i = PAD + index;
      SLOT.setOpaque(slots, i, (long) SLOT.getOpaque(slots, i) + n);
    }

    long get(int index) {
      return (long) SLOT.getOpaque(slots, PAD + index);
    }
  }

  /**
   * What only the Data Server process knows (its transport, its supervisor); set once it serves.
   */
  public interface ProcessFigures {
    /** Data connections open now. */
    int openConnections();

    /** Data connections accepted since start (counted in by the connection limit). */
    long connectionsAccepted();

    /** Data connections refused at the connection limit since start. */
    long connectionsRefused();

    /** The Front Server's pid, 0 if none is linked now. */
    long frontPid();

    /** Front Server relaunches done by this Data Server. */
    int frontRelaunches();
  }

  /** The figures the snapshot reads from the store, the sessions and the log. */
  private final Engine engine;
  private final Set<Counters> live = ConcurrentHashMap.newKeySet();
  /** Guarded by itself: the sums of the counters of threads that ended. */
  private final long[] retired = new long[COUNTERS];
  private volatile ProcessFigures process;
  /** Guarded by this: the last RSS read and when (System.nanoTime), 0 = never. */
  private long rss = -1;
  private long rssReadNanos;

  ServerStats(Engine engine) {
    this.engine = engine;
  }

  /** New counters for a thread that serves requests; {@link #retire} them when it ends. */
  public Counters register() {
    Counters c = new Counters();
    live.add(c);
    return c;
  }

  /** A thread's counters are final: their sums move to the retired totals. */
  public void retire(Counters c) {
    synchronized (retired) {
      if (live.remove(c)) {
        for (int i = 0; i < COUNTERS; i++) {
          retired[i] += c.get(i);
        }
      }
    }
  }

  public void setProcessFigures(ProcessFigures figures) {
    this.process = figures;
  }

  /**
   * The counters of PROTOCOL.md §6.7, in its order: names and values for {@link
   * io.psiskv.protocol.StatsBody#encode}. Reads {@code /proc/self/status} for the RSS; of the data
   * path's locks it takes only each store stripe's, briefly, to count its keys and bytes.
   */
  public Map<String, Object> snapshot() {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("version", VERSION);
    m.put("protocol_version", (long) Protocol.VERSION);
    m.put("pid", ProcessHandle.current().pid());
    ProcessFigures p = process;
    if (p != null && p.frontPid() != 0) {
      m.put("front_pid", p.frontPid());
    }
    m.put("uptime_ms", ManagementFactory.getRuntimeMXBean().getUptime()); // Since the JVM began.
    m.put("keys", engine.store().size());
    m.put("value_bytes", engine.store().valueBytes());
    m.put("sessions", (long) engine.sessions().size());
    if (p != null) {
      m.put("connections", (long) p.openConnections());
      m.put("connections_total", p.connectionsAccepted());
      m.put("connections_refused", p.connectionsRefused());
    }
    long[] sums;
    synchronized (retired) {
      sums = retired.clone();
      for (Counters c : live) {
        for (int i = 0; i < COUNTERS; i++) {
          sums[i] += c.get(i);
        }
      }
    }
    sums[GETS] = sums[GET_HITS] + sums[GET_MISSES]; // Every GET is one or the other.
    for (int i = 0; i < COUNTERS; i++) {
      m.put(NAMES[i], sums[i]);
    }
    BackupLog.Stats log = engine.log().stats();
    m.put("fsync", engine.log().policy().optionName());
    m.put("log_file_bytes", log.fileBytes());
    m.put("log_last_sync_ms", log.lastSyncMillis());
    m.put("log_failed", log.failed() ? 1L : 0L);
    m.put("fsyncs", log.commitSyncs());
    m.put("fsync_records", log.commitSyncRecords());
    m.put("fsync_p50_us", log.commitSyncP50Micros());
    m.put("fsync_p99_us", log.commitSyncP99Micros());
    if (p != null) {
      m.put("front_relaunches", (long) p.frontRelaunches());
    }
    MemoryUsage heap = ManagementFactory.getMemoryMXBean().getHeapMemoryUsage();
    m.put("heap_used_bytes", heap.getUsed());
    m.put("heap_committed_bytes", heap.getCommitted());
    long rssNow = recentRssBytes();
    if (rssNow >= 0) {
      m.put("rss_bytes", rssNow);
    }
    return m;
  }

  /** {@link #rssBytes}, read again only if the last read is {@link #RSS_REFRESH_MILLIS} old. */
  private synchronized long recentRssBytes() {
    long now = System.nanoTime();
    if (rssReadNanos == 0 || now - rssReadNanos >= RSS_REFRESH_MILLIS * 1_000_000L) {
      rss = rssBytes();
      rssReadNanos = now == 0 ? 1 : now;
    }
    return rss;
  }

  /** VmRSS of {@code /proc/self/status} in bytes, or -1 where there is none (not Linux). */
  static long rssBytes() {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/status"),
          StandardCharsets.US_ASCII)) {
        if (line.startsWith("VmRSS:")) {
          // "VmRSS:    123456 kB" (proc(5)): the figure is in KiB.
          String[] f = line.substring(6).trim().split("\\s+");
          return Long.parseLong(f[0]) * 1024;
        }
      }
    } catch (IOException | RuntimeException e) {
      // No /proc (not Linux) or an unexpected format: the counter is left out.
    }
    return -1;
  }
}
