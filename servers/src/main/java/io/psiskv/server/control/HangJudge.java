package io.psiskv.server.control;

/**
 * Tells a hung peer from a paused one (a long collection must not pass for a deadlock), apart from
 * threads, clocks and {@code /proc} so that the rule can be tested case by case. One judge serves
 * one silence: the watchdog feeds it, at each of its checks while the peer has been silent for
 * more than {@link Supervisor#HUNG_AFTER_MILLIS}, how long the silence has lasted and a {@link
 * Sample} of the peer's process ({@link ProcStat#sample}); it answers with a {@link Verdict}.
 *
 * <p><b>The rule</b> (DESIGN.md §8), the first that applies:
 *
 * <ol>
 *   <li>Nothing is known of the process (no {@code /proc}): HUNG. This is the rule without a
 *       judge: silence past the limit is a hang.
 *   <li>The process is gone (exited, a zombie): HUNG; the kill costs nothing and the peer is
 *       relaunched.
 *   <li>The process is stopped (state T or t: SIGSTOP, Ctrl-Z, a debugger): HUNG. It cannot
 *       resume on its own.
 *   <li>The silence has lasted the hang timeout ({@code --hang-timeout-ms}) or longer: HUNG,
 *       whatever the process does.
 *   <li>Otherwise the silence is cut into windows of {@value #WINDOW_MILLIS} ms, from the first
 *       sample on. A window in which the process used at least {@value #MIN_CPU_MILLIS} ms of
 *       CPU, or in at least half of whose samples one of its threads was {@linkplain
 *       ProcStat.Stat#active running, runnable or in uninterruptible sleep}, shows progress: the
 *       peer is PAUSED (a garbage collection, a busy JVM, a wait for a CPU, the disk or memory),
 *       and the next window is judged afresh. The first window that shows no progress makes the
 *       peer HUNG: it is silent and does nothing, which is what a deadlock looks like. Until the
 *       first window closes the verdict is WATCHING.
 * </ol>
 *
 * <p>So a stopped peer is HUNG at the first check past the limit, an idle or deadlocked one about
 * one window later, and one that keeps running at the hang timeout. Not thread-safe: the
 * watchdog thread's.
 */
public final class HangJudge {
  /** Progress is judged over windows of this much silence: one heartbeat interval. */
  static final long WINDOW_MILLIS = Supervisor.HEARTBEAT_INTERVAL_MILLIS;
  /**
   * CPU time per window that is progress: a tenth of one core. A Data Server whose heartbeats
   * stopped but whose collector runs uses a core or more; an idle one (its periodic collection
   * included) uses less than 10 ms per window (DESIGN.md §8).
   */
  static final long MIN_CPU_MILLIS = WINDOW_MILLIS / 10;

  /** What the OS says about the peer's process at one check. */
  record Sample(Condition condition, long cpuMillis, int activeThreads) {
    enum Condition {
      /** No {@code /proc}: nothing is known. */
      UNKNOWN,
      /** No such process, or only its zombie. */
      GONE,
      /** Stopped by a signal or a tracer. */
      STOPPED,
      /** Running or sleeping: {@code cpuMillis} and {@code activeThreads} say which. */
      LIVE
    }

    static Sample unknown() {
      return new Sample(Condition.UNKNOWN, 0, 0);
    }

    static Sample gone() {
      return new Sample(Condition.GONE, 0, 0);
    }

    static Sample stopped() {
      return new Sample(Condition.STOPPED, 0, 0);
    }

    /**
     * @param cpuMillis the process's CPU time (user and system, all threads) since it started
     * @param activeThreads its threads running, runnable or in uninterruptible sleep now
     */
    static Sample live(long cpuMillis, int activeThreads) {
      return new Sample(Condition.LIVE, cpuMillis, activeThreads);
    }
  }

  /** What the watchdog does about the silent peer. */
  enum Action {
    /** The first window is still open: no verdict yet; keep waiting. */
    WATCHING,
    /** The peer is making progress: a pause, not a hang; keep waiting. */
    PAUSED,
    /** The peer is hung: kill it. */
    HUNG
  }

  /** An action and its reason, a phrase for the log (e.g. "it is stopped (state T)"). */
  record Verdict(Action action, String reason) {}

  private final long hangTimeoutMillis;
  private boolean started;
  /** The silence and the CPU time at the start of the open window. */
  private long windowSilentMillis;
  private long windowCpuMillis;
  /** Samples since the open window's first, and how many of them had an active thread. */
  private int samples;
  private int activeSamples;
  private Action last = Action.WATCHING;

  /** @param hangTimeoutMillis silence after which a peer is hung even if it makes progress */
  HangJudge(long hangTimeoutMillis) {
    this.hangTimeoutMillis = hangTimeoutMillis;
  }

  /**
   * The verdict on the peer after {@code silentMillis} of silence (not decreasing from one call
   * to the next) and what its process looks like now.
   */
  Verdict judge(Sample s, long silentMillis) {
    switch (s.condition()) {
      case UNKNOWN:
        return hung("silent for " + silentMillis + " ms, and without /proc nothing else is known");
      case GONE:
        return hung("its process is gone");
      case STOPPED:
        return hung("it is stopped (state T: SIGSTOP, Ctrl-Z or a debugger)");
      default:
        break;
    }
    if (silentMillis >= hangTimeoutMillis) {
      return hung("silent for " + silentMillis + " ms although it was still running, the hang"
          + " timeout is " + hangTimeoutMillis + " ms (--hang-timeout-ms)");
    }
    if (!started) {
      started = true;
      openWindow(s, silentMillis);
      return verdict(Action.WATCHING, "watching its CPU time and threads");
    }
    samples++;
    if (s.activeThreads() > 0) {
      activeSamples++;
    }
    long windowMillis = silentMillis - windowSilentMillis;
    if (windowMillis < WINDOW_MILLIS) {
      return verdict(last, last == Action.PAUSED ? "still running" : "watching");
    }
    long cpuMillis = Math.max(0, s.cpuMillis() - windowCpuMillis);
    String seen = cpuMillis + " ms of CPU, and threads active (R or D) in " + activeSamples
        + " of " + samples + " looks, over the last " + windowMillis + " ms";
    boolean progress = cpuMillis >= MIN_CPU_MILLIS || 2 * activeSamples >= samples;
    openWindow(s, silentMillis);
    if (!progress) {
      return hung("silent for " + silentMillis + " ms and idle: " + seen);
    }
    return verdict(Action.PAUSED, "silent for " + silentMillis + " ms but running: " + seen);
  }

  /** The action of the last verdict ({@link Action#WATCHING} before the first). */
  Action last() {
    return last;
  }

  private void openWindow(Sample s, long silentMillis) {
    windowSilentMillis = silentMillis;
    windowCpuMillis = s.cpuMillis();
    samples = 0;
    activeSamples = 0;
  }

  private Verdict hung(String reason) {
    return verdict(Action.HUNG, reason);
  }

  private Verdict verdict(Action action, String reason) {
    last = action;
    return new Verdict(action, reason);
  }
}
