package io.psiskv.bench;

import io.psiskv.client.KvClient;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Protocol;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.SocketTimeoutException;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The benchmark's hostile phase ({@code psiskv-bench --hostile}): how a psiskv Data Server started
 * with default options holds up against connections that cost it without doing work. It measures
 * and asserts nothing. Three attacks, each against a fresh server pair, each bounded in count and
 * time and fully closed before the next:
 *
 * <ol>
 *   <li><b>idle</b>: {@value #IDLE_CONNECTIONS} TCP connections to the Data Server's port (from
 *       its {@code data server pid P port Q} line) that send nothing;
 *   <li><b>stalled PUT</b>: {@value #STALLED_PUTS} data connections that each send SESSION, then a
 *       PUT header claiming 64 MiB, 10 bytes of it, and nothing more;
 *   <li><b>slow HELLO</b>: {@value #SLOW_HELLOS} connections to the Front Server that send a HELLO
 *       one byte every 3 s.
 * </ol>
 *
 * <p>For each, the Data Server's thread count ({@code Threads:}) and VmRSS are read before, every
 * {@value #SAMPLE_MILLIS} ms while the attack holds (the peak is reported), and
 * {@value #AFTER_MILLIS} ms after its connections are closed. Throughout, a well-behaved probe (a
 * new {@link KvClient}: connect, put, get, close) runs every {@value #PROBE_INTERVAL_MILLIS} ms;
 * an attempt that takes more than {@value #PROBE_TIMEOUT_MILLIS} ms is abandoned and counted as
 * failed. Connections are opened within {@value #OPEN_BUDGET_MILLIS} ms, each connect bounded by
 * {@value #CONNECT_TIMEOUT_MILLIS} ms; the attack holds until {@value #HOLD_MILLIS} ms after it
 * began. Hostile sockets close with a reset (SO_LINGER 0), so no TIME_WAIT is left behind.
 * Loopback only. The process's file-descriptor limit (20,000 here) covers the hostile sockets.
 */
final class Hostile {
  static final int IDLE_CONNECTIONS = 10_000;
  static final int STALLED_PUTS = 400;
  static final int SLOW_HELLOS = 300;
  /** What the stalled PUT claims and what it sends of it. */
  static final int STALLED_PUT_CLAIM_BYTES = Protocol.DEFAULT_MAX_VALUE_BYTES;
  static final int STALLED_PUT_SENT_BYTES = 10;
  static final long DRIP_INTERVAL_MILLIS = 3_000;
  /** An attack holds this long from its first connection. */
  static final long HOLD_MILLIS = 10_000;
  static final long OPEN_BUDGET_MILLIS = 10_000;
  static final int CONNECT_TIMEOUT_MILLIS = 1_000;
  /** How long the SESSION answer of a stalled PUT connection is waited for. */
  static final int SESSION_TIMEOUT_MILLIS = 2_000;
  static final long SAMPLE_MILLIS = 250;
  static final long AFTER_MILLIS = 2_000;
  static final long SETTLE_MILLIS = 1_000;
  static final long PROBE_INTERVAL_MILLIS = 100;
  static final long PROBE_TIMEOUT_MILLIS = 5_000;
  private static final int PROBE_VALUE_BYTES = 100;

  private final Path jar;
  private final List<String> serverArgs;
  private final Path work;
  private final Set<Object> live;

  /** Threads and RSS of the Data Server at one moment; null fields: it was gone. */
  record Sample(Integer threads, Long rssBytes) {
    static Sample of(long pid) {
      try {
        return new Sample(Proc.threads(pid), Proc.rssBytes(pid));
      } catch (IOException e) {
        return new Sample(null, null);
      }
    }

    Sample max(Sample o) {
      return new Sample(o.threads == null ? threads : threads == null ? o.threads
          : Math.max(threads, o.threads), o.rssBytes == null ? rssBytes : rssBytes == null
          ? o.rssBytes : Math.max(rssBytes, o.rssBytes));
    }
  }

  /** What one attack did. */
  record Report(String attack, int wanted, int opened, int closedByServer, Sample before,
      Sample peak, Sample after, int probeOk, int probeFailed, long probeWorstMillis,
      List<String> notes) {}

  Hostile(Path jar, List<String> serverArgs, Path work, Set<Object> live) {
    this.jar = jar;
    this.serverArgs = serverArgs;
    this.work = work;
    this.live = live;
  }

  List<Report> run() throws Bench.BenchException, InterruptedException {
    List<Report> reports = new ArrayList<>();
    reports.add(attack("idle connections", IDLE_CONNECTIONS));
    reports.add(attack("stalled PUT (64 MiB claimed, 10 B sent)", STALLED_PUTS));
    reports.add(attack("slow HELLO (1 byte / 3 s)", SLOW_HELLOS));
    return reports;
  }

  private Report attack(String name, int wanted) throws Bench.BenchException,
      InterruptedException {
    Path dir = work.resolve("hostile-" + name.replaceAll("[^A-Za-z0-9]+", "-"));
    PsiskvServer server = new PsiskvServer("psiskv", jar, serverArgs, dir);
    live.add(server);
    List<SocketChannel> sockets = new ArrayList<>();
    List<String> notes = new ArrayList<>();
    try {
      try {
        server.start();
      } catch (IOException e) {
        throw new Bench.BenchException("cannot start psiskv for the hostile phase: "
            + e.getMessage());
      }
      long pid = server.firstDataPid();
      Bench.progress(String.format(Locale.ROOT, "hostile: %s, %d connections (Data Server pid %d"
          + " port %d, Front Server port %d)", name, wanted, pid, server.dataPort(),
          server.port()));
      Thread.sleep(SETTLE_MILLIS); // Let start-up finish before the first reading.
      Sample before = Sample.of(pid);
      Probe probe = new Probe(server.port());
      probe.start();
      long start = System.nanoTime();
      Sampler sampler = new Sampler(server, before);
      sampler.start();
      String openFailure = null;
      Thread dripper = null;
      try {
        openFailure = open(name, server, wanted, sockets, start);
        int opened = sockets.size();
        if (name.startsWith("slow HELLO")) {
          dripper = drip(sockets, start);
        }
        long rest = TimeUnit.MILLISECONDS.toNanos(HOLD_MILLIS) - (System.nanoTime() - start);
        if (rest > 0) {
          TimeUnit.NANOSECONDS.sleep(rest); // The attack holds.
        }
        Sample peak = sampler.stop();
        if (dripper != null) {
          dripper.interrupt();
          dripper.join();
        }
        int closed = closedByServer(sockets);
        probe.stop();
        closeAll(sockets);
        Thread.sleep(AFTER_MILLIS);
        long nowPid = server.measuredPid();
        Sample after = Sample.of(nowPid);
        if (openFailure != null) {
          notes.add("opened " + opened + " of " + wanted + ": " + openFailure);
        }
        if (nowPid != pid) {
          notes.add("Data Server relaunched (pid " + pid + " -> " + nowPid + "); peak and after"
              + " cover both");
        } else if (!Proc.alive(pid)) {
          notes.add("Data Server gone");
        }
        if (probe.firstFailure.get() != null) {
          notes.add("probe: " + probe.firstFailure.get());
        }
        Report r = new Report(name, wanted, opened, closed, before, peak, after,
            probe.ok, probe.failed, probe.worstMillis, notes);
        Bench.progress(String.format(Locale.ROOT, "hostile: %s: opened %d, threads %s -> %s ->"
            + " %s, probe %d ok / %d failed, worst %d ms", name, r.opened(),
            threads(before), threads(peak), threads(after), r.probeOk(), r.probeFailed(),
            r.probeWorstMillis()));
        return r;
      } finally {
        if (dripper != null) {
          dripper.interrupt();
        }
        sampler.stop();
        probe.stop();
      }
    } finally {
      closeAll(sockets);
      server.close();
      live.remove(server);
      Bench.deleteTree(dir);
    }
  }

  /**
   * Reads the Data Server's threads and RSS every {@value #SAMPLE_MILLIS} ms from the start of an
   * attack to the end of its hold, keeping the highest of each. It follows a relaunched Data
   * Server (the pid in data.pid), so a process that grew and died is counted up to its last
   * reading.
   */
  private static final class Sampler {
    private final PsiskvServer server;
    private volatile Sample peak;
    private volatile boolean stopped;
    private Thread thread;

    Sampler(PsiskvServer server, Sample start) {
      this.server = server;
      this.peak = start;
    }

    void start() {
      thread = new Thread(() -> {
        while (!stopped) {
          peak = peak.max(Sample.of(server.measuredPid()));
          try {
            Thread.sleep(SAMPLE_MILLIS);
          } catch (InterruptedException e) {
            return;
          }
        }
      }, "hostile-sampler");
      thread.setDaemon(true);
      thread.start();
    }

    Sample stop() throws InterruptedException {
      stopped = true;
      if (thread != null) {
        thread.interrupt();
        thread.join();
        thread = null;
        peak = peak.max(Sample.of(server.measuredPid()));
      }
      return peak;
    }
  }

  /**
   * Opens the attack's connections; returns null, or why some could not be opened (the first
   * failure and how many failed) when the budget ran out or connects failed.
   */
  private static String open(String name, PsiskvServer server, int wanted,
      List<SocketChannel> sockets, long start) {
    boolean front = name.startsWith("slow HELLO");
    boolean stalled = name.startsWith("stalled PUT");
    InetSocketAddress address = new InetSocketAddress("127.0.0.1",
        front ? server.port() : server.dataPort());
    String firstFailure = null;
    int failures = 0;
    byte[] hello = new byte[Protocol.HEADER_BYTES];
    Messages.hello(hello, 1);
    for (int i = 0; i < wanted; i++) {
      if (Thread.currentThread().isInterrupted()) {
        return "stopped";
      }
      if (System.nanoTime() - start > TimeUnit.MILLISECONDS.toNanos(OPEN_BUDGET_MILLIS)) {
        return (firstFailure != null ? firstFailure + "; " : "") + "the "
            + OPEN_BUDGET_MILLIS / 1000 + " s budget for opening ran out";
      }
      SocketChannel s = null;
      try {
        s = SocketChannel.open();
        s.setOption(StandardSocketOptions.SO_LINGER, 0);
        s.setOption(StandardSocketOptions.TCP_NODELAY, true);
        s.socket().connect(address, CONNECT_TIMEOUT_MILLIS);
        sockets.add(s);
        if (stalled) {
          stallPut(s, i + 1);
        } else if (front) {
          s.write(ByteBuffer.wrap(hello, 0, 1));
        }
      } catch (IOException e) {
        failures++;
        if (firstFailure == null) {
          firstFailure = "connection " + (i + 1) + ": " + e;
        }
        if (s != null) {
          sockets.remove(s); // Connected, but its messages could not be sent: not opened.
          closeQuietly(s);
        }
      }
    }
    return failures == 0 ? null : failures + " failed, the first at " + firstFailure;
  }

  /** SESSION (its answer waited for, briefly), then a PUT header claiming 64 MiB and 10 bytes. */
  private static void stallPut(SocketChannel s, int key) throws IOException {
    byte[] buf = new byte[Protocol.HEADER_BYTES + Protocol.SESSION_REQUEST_BODY_BYTES];
    int n = Messages.session(buf, 1, 0, null);
    s.write(ByteBuffer.wrap(buf, 0, n));
    s.socket().setSoTimeout(SESSION_TIMEOUT_MILLIS);
    byte[] answer = new byte[Protocol.HEADER_BYTES + Protocol.SESSION_RESPONSE_BODY_BYTES];
    int got = 0;
    try {
      InputStream in = s.socket().getInputStream();
      while (got < answer.length) {
        int r = in.read(answer, got, answer.length - got);
        if (r < 0) {
          throw new IOException("the server closed the connection after SESSION");
        }
        got += r;
      }
    } catch (SocketTimeoutException e) {
      // No answer in time: stall anyway, the PUT header follows.
    }
    byte[] put = new byte[Protocol.HEADER_BYTES + STALLED_PUT_SENT_BYTES];
    Messages.putHeader(put, key, 2, true, STALLED_PUT_CLAIM_BYTES);
    Arrays.fill(put, Protocol.HEADER_BYTES, put.length, (byte) 'x');
    s.write(ByteBuffer.wrap(put));
  }

  /** Sends the next HELLO byte on every slow connection every 3 s, until interrupted. */
  private static Thread drip(List<SocketChannel> sockets, long start) {
    byte[] hello = new byte[Protocol.HEADER_BYTES];
    Messages.hello(hello, 1);
    Thread t = new Thread(() -> {
      int sent = 1;
      try {
        while (sent < hello.length) {
          Thread.sleep(DRIP_INTERVAL_MILLIS);
          for (SocketChannel s : sockets) {
            try {
              s.write(ByteBuffer.wrap(hello, sent, 1));
            } catch (IOException e) {
              // Closed by the server: counted at the end.
            }
          }
          sent++;
        }
      } catch (InterruptedException e) {
        // The attack is over.
      }
    }, "hostile-drip");
    t.setDaemon(true);
    t.start();
    return t;
  }

  /** How many of the connections the server has closed (end of stream or reset). */
  private static int closedByServer(List<SocketChannel> sockets) {
    int closed = 0;
    ByteBuffer buf = ByteBuffer.allocate(256);
    for (SocketChannel s : sockets) {
      try {
        s.configureBlocking(false);
        buf.clear();
        int n;
        while ((n = s.read(buf)) > 0) {
          buf.clear(); // An answer (e.g. an error status): the end of stream may follow.
        }
        if (n < 0) {
          closed++;
        }
      } catch (IOException e) {
        closed++;
      }
    }
    return closed;
  }

  private static void closeAll(List<SocketChannel> sockets) {
    for (SocketChannel s : sockets) {
      closeQuietly(s);
    }
    sockets.clear();
  }

  private static void closeQuietly(SocketChannel s) {
    try {
      s.close();
    } catch (IOException e) {
      // Closing.
    }
  }

  /**
   * The well-behaved client: every {@value #PROBE_INTERVAL_MILLIS} ms (or right after the previous
   * attempt, if that took longer) a new KvClient connects, puts, gets and checks the value, and
   * closes. An attempt still running after {@value #PROBE_TIMEOUT_MILLIS} ms is ended by closing
   * its client and counts as failed.
   */
  private static final class Probe {
    private final int frontPort;
    private final ExecutorService attempts = Executors.newSingleThreadExecutor(r -> {
      Thread t = new Thread(r, "hostile-probe-attempt");
      t.setDaemon(true);
      return t;
    });
    private final AtomicReference<String> firstFailure = new AtomicReference<>();
    private final AtomicReference<KvClient> current = new AtomicReference<>();
    private Thread loop;
    private volatile boolean stopped;
    int ok;
    int failed;
    long worstMillis;

    Probe(int frontPort) {
      this.frontPort = frontPort;
    }

    void start() {
      loop = new Thread(this::loop, "hostile-probe");
      loop.setDaemon(true);
      loop.start();
    }

    void stop() throws InterruptedException {
      stopped = true;
      if (loop != null) {
        loop.join();
        loop = null;
      }
      attempts.shutdownNow();
    }

    private void loop() {
      byte[] value = new byte[PROBE_VALUE_BYTES];
      Arrays.fill(value, (byte) 'p');
      long next = System.nanoTime();
      int key = 0;
      while (!stopped) {
        int k = key++;
        long t0 = System.nanoTime();
        Future<?> f = attempts.submit(() -> attempt(k, value));
        String failure = null;
        try {
          f.get(PROBE_TIMEOUT_MILLIS, TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
          failure = "an attempt took more than " + PROBE_TIMEOUT_MILLIS + " ms";
          KvClient c = current.get();
          if (c != null) {
            c.close(); // Ends the call in progress.
          }
          f.cancel(true);
        } catch (ExecutionException e) {
          failure = String.valueOf(e.getCause());
        } catch (InterruptedException e) {
          return;
        }
        long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
        worstMillis = Math.max(worstMillis, millis);
        if (failure == null) {
          ok++;
        } else {
          failed++;
          firstFailure.compareAndSet(null, failure);
        }
        next += TimeUnit.MILLISECONDS.toNanos(PROBE_INTERVAL_MILLIS);
        long wait = next - System.nanoTime();
        if (wait > 0) {
          try {
            TimeUnit.NANOSECONDS.sleep(wait); // The probe's pace.
          } catch (InterruptedException e) {
            return;
          }
        } else {
          next = System.nanoTime();
        }
      }
    }

    private Void attempt(int key, byte[] value) {
      KvClient kv = KvClient.builder("127.0.0.1", frontPort)
          .connectTimeout(Duration.ofMillis(PROBE_TIMEOUT_MILLIS))
          .retryTimeout(Duration.ofMillis(PROBE_TIMEOUT_MILLIS))
          .connect();
      current.set(kv);
      try {
        kv.put(key, value);
        byte[] got = kv.get(key).orElseThrow(() -> new IllegalStateException(
            "get found no value after put"));
        if (!Arrays.equals(got, value)) {
          throw new IllegalStateException("get returned another value than put");
        }
        return null;
      } finally {
        current.set(null);
        kv.close();
      }
    }
  }

  // ---- report ----------------------------------------------------------------------------------

  static String render(List<Report> reports) {
    MarkdownTable table = new MarkdownTable("attack", "connections", "opened",
        "closed by server", "threads before / peak / after", "RSS MiB before / peak / after",
        "probe ok / failed", "probe worst ms", "notes").right(1, 2, 3, 6, 7);
    for (Report r : reports) {
      table.add(r.attack(), String.format(Locale.ROOT, "%,d", r.wanted()),
          String.format(Locale.ROOT, "%,d", r.opened()), Integer.toString(r.closedByServer()),
          threads(r.before()) + " / " + threads(r.peak()) + " / " + threads(r.after()),
          rss(r.before()) + " / " + rss(r.peak()) + " / " + rss(r.after()),
          r.probeOk() + " / " + r.probeFailed(), Long.toString(r.probeWorstMillis()),
          String.join("; ", r.notes()));
    }
    return "## Hostile connections\n\n" + table.render() + String.format(Locale.ROOT, "%nEach"
        + " attack against a fresh psiskv (default options), held %d s from its first"
        + " connection; Data Server threads and VmRSS from /proc before, at their peak during"
        + " the attack (sampled every %d ms), and %d s after its connections were closed. Probe:"
        + " a new KvClient doing connect + put + get every %d ms during the attack; an attempt"
        + " over %d ms counts as failed. Measured, not asserted.%n", HOLD_MILLIS / 1000,
        SAMPLE_MILLIS, AFTER_MILLIS / 1000, PROBE_INTERVAL_MILLIS, PROBE_TIMEOUT_MILLIS);
  }

  private static String threads(Sample s) {
    return s.threads() == null ? "gone" : String.format(Locale.ROOT, "%,d", s.threads());
  }

  private static String rss(Sample s) {
    return s.rssBytes() == null ? "gone" : BenchFormat.mib(s.rssBytes());
  }
}
