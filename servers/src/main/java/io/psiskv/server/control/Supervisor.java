package io.psiskv.server.control;

import io.psiskv.server.Deadlines;
import io.psiskv.server.ServerLog;
import java.io.IOException;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Each server process supervises the other and relaunches it: the Front Server watches
 * and relaunches the Data Server, the Data Server watches and relaunches the Front Server. This
 * class is the rule, the same on both sides; {@code FrontServer} and {@code DataServer} supply
 * how to launch their peer and what to do when it is down.
 *
 * <p><b>The numbers.</b>
 *
 * <table>
 *   <tr><td>heartbeat interval</td><td>{@value #HEARTBEAT_INTERVAL_MILLIS} ms, each way</td></tr>
 *   <tr><td>silent</td><td>nothing read for {@value #MISSED_HEARTBEATS_BEFORE_HUNG} intervals
 *       ({@value #HUNG_AFTER_MILLIS} ms, checked every {@value #WATCHDOG_CHECK_MILLIS} ms): the
 *       peer's process is judged at each check ({@link HangJudge}, {@link ProcStat})</td></tr>
 *   <tr><td>hung: stopped</td><td>state T or t (SIGSTOP, Ctrl-Z, a debugger): SIGKILL at the
 *       first check past the limit, 1.5-1.6 s after the last message; then relaunch</td></tr>
 *   <tr><td>hung: idle</td><td>no progress in the {@value HangJudge#WINDOW_MILLIS} ms window after
 *       that (under {@value HangJudge#MIN_CPU_MILLIS} ms of CPU, a thread running in under half
 *       the looks: a deadlock): SIGKILL 2.0-2.2 s after the last message; then relaunch</td></tr>
 *   <tr><td>paused</td><td>progress (a collection, a busy JVM, a wait for a CPU): waited for
 *       until the silence reaches {@code --hang-timeout-ms} (default {@value
 *       ServerConfig#DEFAULT_HANG_TIMEOUT_MILLIS} ms), then SIGKILL and relaunch</td></tr>
 *   <tr><td>no {@code /proc}</td><td>SIGKILL at the first check past the limit</td></tr>
 *   <tr><td>exit grace</td><td>a peer whose control connection broke but whose process has not
 *       exited after {@value #PEER_EXIT_GRACE_MILLIS} ms is SIGKILLed</td></tr>
 *   <tr><td>relaunch delay</td><td>0 for a peer that ran {@value #RELAUNCH_STABLE_MILLIS} ms or
 *       more; else {@value #RELAUNCH_FIRST_BACKOFF_MILLIS} ms, doubling with each early death in a
 *       row, at most {@value #RELAUNCH_MAX_BACKOFF_MILLIS} ms ({@link Backoff})</td></tr>
 *   <tr><td>start</td><td>a relaunched peer must complete INIT within {@value
 *       #PEER_START_TIMEOUT_MILLIS} ms, else it is killed and counts as an early death</td></tr>
 * </table>
 *
 * <p><b>Detection.</b> A peer is <em>down</em> at the first of: end of stream on the control
 * connection (the kernel closes a dead process's sockets: seen at once), the exit of its process
 * ({@code onExit}: at once for a child, polled by the JDK for a non-child), a silence the
 * watchdog ({@link ControlLink}) reports and {@link #silent} judges a hang (the peer is SIGKILLed
 * first, which also ends a SIGSTOPped one), or a protocol error on the control connection. A
 * silent peer is judged by what its process does, read in {@code /proc} by the watchdog thread
 * of this process (the same user may read it): a paused one is not killed before the hang
 * timeout, a stopped or idle one is. A peer that announced an orderly stop (the Data Server's
 * SHUTDOWN, PROTOCOL.md §7.3) is not relaunched: its side stops too.
 *
 * <p><b>Loop</b> ({@link #run}, on the thread {@code <peer>-supervisor}, one per process): wait
 * until the current peer is down or this process stops; wait (bounded) until its control reader
 * has read everything the peer sent before it went, so that a SHUTDOWN sent just before an exit is
 * never mistaken for a crash; make sure the old process is gone (SIGKILL after the grace) before
 * anything is relaunched, so there are never two Data Servers on one data directory nor two Front
 * Servers on one port (the Data Server's directory lock refuses a second one anyway); wait the
 * back-off; launch and handshake ({@link Launcher}); log one line per relaunch with its count and
 * reason, and one when the new peer is ready with the time since the old one went down. A launch
 * that fails (the process exits before INIT, for instance on the data directory lock, or no INIT
 * in time) is not a success: it counts as an early death and is retried after the back-off.
 *
 * <p><b>Stop.</b> {@link #stop} (the owner's orderly stop) ends the loop: nothing is launched
 * after it, and it returns the current peer, possibly still starting, for the owner to stop.
 *
 * <p><b>Locks.</b> {@code lock} guards {@code stopped}, {@code current}, the peers' down state and
 * the relaunch count; it is held across no I/O and no wait other than {@code lock.wait}, except
 * the fork of the peer's process in {@link #track} (so that a stop cannot miss a process being
 * started). The owner's {@code onDown} hook runs under it and must only update fields. A peer's
 * judge belongs to the watchdog thread of its control link and needs no lock.
 */
public final class Supervisor {
  /** Each side sends a HEARTBEAT this often (PROTOCOL.md §7.2). */
  static final long HEARTBEAT_INTERVAL_MILLIS = 500;
  /**
   * A peer silent for this many heartbeat intervals is judged ({@link HangJudge}): killed and
   * relaunched if it is hung, waited for if it is paused.
   */
  static final int MISSED_HEARTBEATS_BEFORE_HUNG = 3;
  public static final long HUNG_AFTER_MILLIS =
      HEARTBEAT_INTERVAL_MILLIS * MISSED_HEARTBEATS_BEFORE_HUNG;
  /** The watchdog compares the silence with the limit this often: a hang is seen within 0.1 s. */
  static final long WATCHDOG_CHECK_MILLIS = 100;
  /**
   * A watchdog check that comes this much later than scheduled means this process itself was not
   * running (suspended, starved): the peer's heartbeats may wait unread in the socket, so the
   * peer is not judged until the reader has had this long again to catch up.
   */
  static final long SELF_PAUSE_MILLIS = HEARTBEAT_INTERVAL_MILLIS;
  /** Link broken, process still there after this long: SIGKILL. */
  static final long PEER_EXIT_GRACE_MILLIS = 1_000;
  /** After a SIGKILL, how long to wait for the process to disappear before carrying on. */
  public static final long PEER_KILL_WAIT_MILLIS = 10_000;
  /** A relaunched peer must send or answer INIT within this long. */
  static final long PEER_START_TIMEOUT_MILLIS = 60_000;
  /** Back-off after the first early death in a row; doubles with each further one. */
  static final long RELAUNCH_FIRST_BACKOFF_MILLIS = 100;
  /** The back-off never exceeds this. */
  static final long RELAUNCH_MAX_BACKOFF_MILLIS = 5_000;
  /** A peer that ran this long is healthy: its death is relaunched at once and resets the back-off. */
  static final long RELAUNCH_STABLE_MILLIS = 10_000;
  /** How often the exit of a process that is not our child is checked while waiting for it. */
  static final long EXIT_POLL_MILLIS = 10;

  /**
   * The relaunch delay rule, apart from threads and clocks so that it can be tested: feed it how
   * long each dead peer ran, get the delay before its relaunch. Not thread-safe (the loop's).
   */
  static final class Backoff {
    private int earlyDeaths;

    /** The delay before relaunching a peer that ran {@code livedMillis}. */
    long next(long livedMillis) {
      if (livedMillis >= RELAUNCH_STABLE_MILLIS) {
        earlyDeaths = 0;
        return 0;
      }
      earlyDeaths++;
      int doublings = Math.min(earlyDeaths - 1, 30);
      return Math.min(RELAUNCH_MAX_BACKOFF_MILLIS, RELAUNCH_FIRST_BACKOFF_MILLIS << doublings);
    }

    /** Early deaths in a row so far (0 after a healthy run). */
    int earlyDeaths() {
      return earlyDeaths;
    }
  }

  /** A peer process, launched by this side or adopted, and its control link once connected. */
  public static final class Peer {
    public final ProcessHandle handle;
    /** Our child (exit code, prompt exit); null for an adopted peer. */
    public final Process process;
    final long startNanos = System.nanoTime();
    private final CountDownLatch linkClosed = new CountDownLatch(1);
    private volatile ControlLink link;
    /** The peer announced an orderly stop (§7.3): its end is not a crash. */
    public volatile boolean stoppingOnPurpose;
    /** The control-watchdog thread's: the judge of the current silence, null before one. */
    private HangJudge judge;
    /** Guarded by the supervisor's lock. */
    private String downReason;
    private long downNanos;

    Peer(ProcessHandle handle, Process process) {
      this.handle = handle;
      this.process = process;
    }

    public long pid() {
      return handle.pid();
    }

    public ControlLink link() {
      return link;
    }

    /** The handshake is done: the link is the peer's control connection. */
    public void linked(ControlLink link) {
      this.link = link;
    }

    /** The link's reader has ended (call from {@link ControlLink.Handler#onClosed}). */
    void linkClosed() {
      linkClosed.countDown();
    }

    /**
     * Whether the process is gone: a child once the JDK has reaped it (its exit code is then
     * known), another process once it exited or is a zombie waiting for its parent.
     */
    public boolean isGone() {
      return process != null ? !process.isAlive() : Supervisor.isGone(handle);
    }

    /** The exit code for a child that has exited, else a description without one. */
    public String exitDescription() {
      if (process != null && !process.isAlive()) {
        int code = process.exitValue();
        return "exited with code " + code + (code > 128 ? " (signal " + (code - 128) + ")" : "");
      }
      return "exited";
    }
  }

  /** Launches a new peer and completes its handshake; see {@link #track}. */
  public interface Launcher {
    /**
     * Starts the peer process through {@link #track} and waits for the INIT handshake. On failure
     * it kills what it started (unless the supervisor was stopped: then the owner's stop deals
     * with it) and throws with a message for the log.
     */
    Peer launch() throws IOException;
  }

  private final String peerName;
  private final Launcher launcher;
  private final Runnable onDownHook;
  private final long hangTimeoutMillis;
  private final Backoff backoff = new Backoff();
  private final Object lock = new Object();
  /** Guarded by lock. */
  private boolean stopped;
  /** Guarded by lock: the peer being watched or launched; null before the first. */
  private Peer current;
  /** Guarded by lock: launches after the first start. */
  private int relaunches;

  /**
   * @param peerName for log lines: "data server" or "front server"
   * @param onDownHook runs under the lock when the current peer goes down (e.g. HELLO answers
   *     UNAVAILABLE from then on); must not block
   * @param hangTimeoutMillis {@code --hang-timeout-ms}: the silence after which a peer that is
   *     still running is killed anyway
   */
  public Supervisor(String peerName, Launcher launcher, Runnable onDownHook,
      long hangTimeoutMillis) {
    this.peerName = peerName;
    this.launcher = launcher;
    this.onDownHook = onDownHook;
    this.hangTimeoutMillis = hangTimeoutMillis;
  }

  /**
   * Starts a process for a launcher: refused (IOException) once stopped, so that a stop can never
   * miss a peer launched concurrently; the process becomes the current peer.
   */
  public Peer track(ProcessBuilder builder) throws IOException {
    synchronized (lock) {
      if (stopped) {
        throw new IOException("stopping: no " + peerName + " is launched");
      }
      Process p = builder.start();
      Peer peer = new Peer(p.toHandle(), p);
      current = peer;
      return peer;
    }
  }

  /** Makes a process this side did not start the current peer (the first peer of an adoption). */
  public Peer adopt(ProcessHandle handle) {
    synchronized (lock) {
      Peer peer = new Peer(handle, null);
      current = peer;
      return peer;
    }
  }

  /**
   * Reports {@code peer} down (first report wins; later ones and reports about a peer that is no
   * longer current are ignored). Any thread.
   */
  public void peerDown(Peer peer, String reason) {
    synchronized (lock) {
      if (peer.downReason != null) {
        return;
      }
      peer.downReason = reason;
      peer.downNanos = System.nanoTime();
      if (peer == current && !stopped) {
        onDownHook.run();
      }
      lock.notifyAll();
    }
  }

  /**
   * The peer's control connection ended (a {@link ControlLink.Handler#onClosed}): the peer is
   * down, unless this process is stopping and no longer cares.
   */
  void linkClosed(Peer peer, String reason, boolean stopping) {
    peer.linkClosed();
    if (!stopping) {
      peerDown(peer, "control connection lost (" + reason + ")");
    }
  }

  /**
   * The peer has been silent for {@code silentMillis}, more than {@link #HUNG_AFTER_MILLIS} (a
   * {@link ControlLink.Handler#onSilent}, at each watchdog check of the silence; {@code first} at
   * its first): judges the peer by its process ({@link HangJudge} fed by {@link ProcStat}) and,
   * if it is hung, SIGKILLs it (that works on a stopped process too) and treats it as down.
   * Nothing is judged while this process is stopping or the peer is stopping on purpose, nor
   * once the peer is down. The watchdog thread only.
   */
  void silent(Peer peer, long silentMillis, boolean first, boolean stopping) {
    if (stopping || isDown(peer)) {
      return;
    }
    if (first || peer.judge == null) {
      peer.judge = new HangJudge(hangTimeoutMillis);
    }
    HangJudge.Action before = peer.judge.last();
    HangJudge.Verdict verdict = peer.judge.judge(ProcStat.sample(peer.pid()), silentMillis);
    switch (verdict.action()) {
      case HUNG:
        ServerLog.warn("killing the hung " + peerName + " (pid " + peer.pid() + ") with SIGKILL: "
            + verdict.reason());
        peer.handle.destroyForcibly();
        peerDown(peer, "hung (" + verdict.reason() + "), killed");
        break;
      case PAUSED:
        if (before != HangJudge.Action.PAUSED) {
          ServerLog.info(peerName + " (pid " + peer.pid() + ") is paused, not hung: "
              + verdict.reason() + "; waiting for it up to " + hangTimeoutMillis
              + " ms of silence");
        }
        break;
      default:
        break;
    }
  }

  private boolean isDown(Peer peer) {
    synchronized (lock) {
      return peer.downReason != null;
    }
  }

  /**
   * A launch of {@code peer} failed after its process started (no INIT, a bad handshake): SIGKILLs
   * the process and waits (bounded) until it is gone, so the relaunch never meets it; nothing if
   * this process is stopping (its stop ends the peer). The launcher's thread, before it rethrows.
   */
  public void abandonLaunch(Peer peer) {
    if (!isStopped()) {
      peer.handle.destroyForcibly();
      awaitGone(peer, PEER_KILL_WAIT_MILLIS);
    }
  }

  /** Runs {@code action} under the lock if {@code peer} is current and not down; true if it ran. */
  public boolean ifUp(Peer peer, Runnable action) {
    synchronized (lock) {
      if (stopped || peer != current || peer.downReason != null) {
        return false;
      }
      action.run();
      return true;
    }
  }

  /** Ends supervision: nothing is launched from now on. Returns the current peer (or null). */
  public Peer stop() {
    synchronized (lock) {
      stopped = true;
      lock.notifyAll();
      return current;
    }
  }

  /** The peer being watched or launched (possibly down), or null. */
  public Peer current() {
    synchronized (lock) {
      return current;
    }
  }

  public boolean isStopped() {
    synchronized (lock) {
      return stopped;
    }
  }

  /** Relaunches so far (attempts after the first start, failed ones included). */
  public int relaunches() {
    synchronized (lock) {
      return relaunches;
    }
  }

  /**
   * Starts the loop on its own thread, watching {@code first} (which may be down already); null
   * means there is no peer to watch: launch one at once, {@code noPeerReason} says why.
   */
  public void startLoop(Peer first, String noPeerReason) {
    Thread t = new Thread(() -> run(first, noPeerReason),
        peerName.replace(' ', '-') + "-supervisor");
    t.setDaemon(true);
    t.start();
  }

  private void run(Peer first, String noPeerReason) {
    Peer peer = first;
    String reason = noPeerReason;
    long livedMillis = 0;
    long outageStartNanos = 0;
    while (true) {
      if (peer != null) {
        if (!awaitDown(peer)) {
          return;
        }
        // What the peer sent before it went (a SHUTDOWN announcing an orderly stop) is read
        // before its end is judged; its reader ends at once when the process is gone.
        awaitQuietly(peer.linkClosed, PEER_EXIT_GRACE_MILLIS);
        if (peer.stoppingOnPurpose || isStopped()) {
          return;
        }
        synchronized (lock) {
          reason = peer.downReason;
          livedMillis = (peer.downNanos - peer.startNanos) / 1_000_000L;
          outageStartNanos = peer.downNanos;
        }
        if (!ensureGone(peer)) {
          return;
        }
        if (peer.isGone() && !reason.contains("exited")) {
          reason += "; " + peer.exitDescription(); // With its exit code when it was our child.
        }
      } else if (outageStartNanos == 0) {
        outageStartNanos = System.nanoTime();
      }
      long delay = backoff.next(livedMillis);
      int count;
      synchronized (lock) {
        if (stopped) {
          return;
        }
        count = ++relaunches;
      }
      ServerLog.warn(peerName + (peer != null ? " (pid " + peer.pid() + ")" : "") + " is down: "
          + reason + ", after running " + livedMillis + " ms; relaunch " + count
          + (delay == 0 ? " now"
              : " in " + delay + " ms (back-off: early death " + backoff.earlyDeaths()
                  + " in a row)"));
      if (!sleepUnlessStopped(delay)) {
        return;
      }
      long launchNanos = System.nanoTime();
      try {
        peer = launcher.launch();
        ServerLog.info(peerName + " relaunched: pid " + peer.pid() + " ready "
            + (System.nanoTime() - outageStartNanos) / 1_000_000L + " ms after the old one went"
            + " down (relaunch " + count + ")");
      } catch (IOException | RuntimeException e) {
        if (isStopped()) {
          return;
        }
        ServerLog.error("relaunch " + count + " of the " + peerName + " failed: " + ServerLog.describe(e));
        peer = null;
        reason = "relaunch " + count + " failed";
        livedMillis = (System.nanoTime() - launchNanos) / 1_000_000L;
      }
    }
  }

  /** Waits until {@code peer} is down (true) or the supervisor stopped (false). */
  private boolean awaitDown(Peer peer) {
    synchronized (lock) {
      while (!stopped && peer.downReason == null) {
        try {
          lock.wait();
        } catch (InterruptedException e) {
          return false;
        }
      }
      return !stopped;
    }
  }

  /** The back-off; false if the supervisor stopped meanwhile. */
  private boolean sleepUnlessStopped(long millis) {
    long deadline = System.nanoTime() + millis * 1_000_000L;
    synchronized (lock) {
      while (!stopped) {
        long left = Deadlines.remainingMillis(deadline);
        if (left == 0) {
          return true;
        }
        try {
          lock.wait(left);
        } catch (InterruptedException e) {
          return false;
        }
      }
      return false;
    }
  }

  /**
   * Makes sure the old process is gone before its successor starts: SIGKILL after the grace.
   * False if this side began to stop meanwhile (a stopping side kills no one: the peer may be
   * stopping in order too).
   */
  private boolean ensureGone(Peer peer) {
    if (awaitGone(peer, PEER_EXIT_GRACE_MILLIS)) {
      return !isStopped();
    }
    if (isStopped()) {
      return false;
    }
    ServerLog.info(peerName + " (pid " + peer.pid() + ") still runs " + PEER_EXIT_GRACE_MILLIS
        + " ms after its control connection broke; killing it (SIGKILL)");
    peer.handle.destroyForcibly();
    if (!awaitGone(peer, PEER_KILL_WAIT_MILLIS)) {
      ServerLog.warn(peerName + " (pid " + peer.pid() + ") did not exit within "
          + PEER_KILL_WAIT_MILLIS + " ms of SIGKILL; relaunching anyway");
    }
    return !isStopped();
  }

  /**
   * Waits up to {@code millis} for the peer's process to be gone; true if it is. A child is
   * waited for (and reaped); another process is polled every {@value #EXIT_POLL_MILLIS} ms.
   */
  public static boolean awaitGone(Peer peer, long millis) {
    long deadline = System.nanoTime() + millis * 1_000_000L;
    try {
      if (peer.process != null) {
        return peer.process.waitFor(millis, TimeUnit.MILLISECONDS);
      }
      while (!peer.isGone()) {
        if (Deadlines.remainingMillis(deadline) == 0) {
          return false;
        }
        Thread.sleep(EXIT_POLL_MILLIS); // Polling a non-child's exit: no event exists for it.
      }
      return true;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return peer.isGone();
    }
  }

  /**
   * Whether a process has ended: not alive, or {@linkplain ProcStat#ended ended} although still
   * listed (a zombie orphan waiting for init, a JVM whose threads still exit). A dead process's
   * sockets and file locks are released already, which is all a relaunch needs.
   */
  public static boolean isGone(ProcessHandle handle) {
    return !handle.isAlive() || ProcStat.ended(handle.pid());
  }

  private static void awaitQuietly(CountDownLatch latch, long millis) {
    try {
      latch.await(millis, TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
