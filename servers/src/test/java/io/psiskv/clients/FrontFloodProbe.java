package io.psiskv.clients;

import com.sun.jna.Native;
import io.psiskv.client.KvClient;
import io.psiskv.client.KvException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * A measurement, run by hand (not a test): {@link DripFlood} against a running Front Server
 * while new clients connect, as in {@link FrontFloodTest} but for any server (also an older
 * build) and with figures: the front's threads and resident memory from /proc (pid given), and
 * how long each {@code kv_connect} (libpsiskv through JNA) and {@code KvClient.connect} took and
 * whether it succeeded.
 *
 * <pre>
 *   java -Djna.library.path=native/target -cp TEST_CLASSPATH io.psiskv.clients.FrontFloodProbe \
 *       HOST FRONT_PORT FRONT_PID DRIPPERS TICK_MILLIS SECONDS
 * </pre>
 */
public final class FrontFloodProbe {
  private static final long CLIENT_PACE_MILLIS = 200;

  private FrontFloodProbe() {}

  public static void main(String[] args) throws Exception {
    String host = args[0];
    int port = Integer.parseInt(args[1]);
    long pid = Long.parseLong(args[2]);
    int drippers = Integer.parseInt(args[3]);
    long tick = Long.parseLong(args[4]);
    long seconds = Long.parseLong(args[5]);
    // One unmeasured connect of each kind first: loading the library and the classes is no part
    // of what the flood costs a client.
    long t0 = System.nanoTime();
    NativePsiskv.LIB.kv_close(NativePsiskv.LIB.kv_connect(host, port));
    KvClient.connect(host, port).close();
    System.out.printf("before: front threads %d, VmRSS %d kB; warm-up connects %.1f ms%n",
        ProcStatus.field(pid, "Threads"), ProcStatus.field(pid, "VmRSS"),
        (System.nanoTime() - t0) / 1e6);

    DripFlood flood = new DripFlood(host, port, drippers, tick, (seconds + 30) * 1_000);
    Thread t = new Thread(flood, "drip-flood");
    t.start();
    long settle = System.nanoTime() + 3 * tick * 1_000_000L; // Let the flood reach its size.
    while (System.nanoTime() - settle < 0) {
      Thread.sleep(tick / 4);
    }
    long maxThreads = 0;
    long maxRss = 0;
    List<Double> cMillis = new ArrayList<>();
    List<Double> javaMillis = new ArrayList<>();
    int cFailed = 0;
    int javaFailed = 0;
    String cErrno = "";
    int minOpen = Integer.MAX_VALUE;
    long end = System.nanoTime() + seconds * 1_000_000_000L;
    while (System.nanoTime() - end < 0) {
      minOpen = Math.min(minOpen, flood.open());
      t0 = System.nanoTime();
      int d = NativePsiskv.LIB.kv_connect(host, port);
      double took = (System.nanoTime() - t0) / 1e6;
      if (d > 0) {
        cMillis.add(took);
        NativePsiskv.LIB.kv_close(d);
      } else {
        cFailed++;
        cErrno = "errno " + Native.getLastError();
      }
      t0 = System.nanoTime();
      try (KvClient kv = KvClient.connect(host, port)) {
        javaMillis.add((System.nanoTime() - t0) / 1e6);
      } catch (KvException e) {
        javaFailed++;
      }
      maxThreads = Math.max(maxThreads, ProcStatus.field(pid, "Threads"));
      maxRss = Math.max(maxRss, ProcStatus.field(pid, "VmRSS"));
      Thread.sleep(CLIENT_PACE_MILLIS);
    }
    flood.stopReplacing();
    System.out.printf("during: %d..%d connections dripping, %d opened in all; front threads at"
        + " most %d, VmRSS at most %d kB%n", minOpen, drippers, flood.opened(), maxThreads,
        maxRss);
    System.out.printf("kv_connect (C): %d ok, %d failed %s; %s%n", cMillis.size(), cFailed,
        cErrno, describe(cMillis));
    System.out.printf("KvClient.connect: %d ok, %d failed; %s%n", javaMillis.size(), javaFailed,
        describe(javaMillis));
    t.join();
    long[] ends = new long[DripFlood.End.values().length];
    for (DripFlood.Result r : flood.results()) {
      ends[r.end().ordinal()]++;
    }
    System.out.printf("dripping connections ended: %s %d, %s %d, %s %d, %s %d%n",
        DripFlood.End.values()[0], ends[0], DripFlood.End.values()[1], ends[1],
        DripFlood.End.values()[2], ends[2], DripFlood.End.values()[3], ends[3]);
  }

  private static String describe(List<Double> millis) {
    if (millis.isEmpty()) {
      return "no successful connect";
    }
    Collections.sort(millis);
    return String.format("connect median %.2f ms, p90 %.2f ms, max %.2f ms (slowest: %s)",
        millis.get(millis.size() / 2), millis.get(millis.size() * 9 / 10),
        millis.get(millis.size() - 1),
        millis.subList(Math.max(0, millis.size() - 5), millis.size()));
  }
}
