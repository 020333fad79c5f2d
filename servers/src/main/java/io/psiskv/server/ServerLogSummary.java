package io.psiskv.server;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * Counts events that a peer can cause as often as it likes, and logs them as one summary line
 * per interval instead of one line each, for example:
 *
 * <pre>
 *   front connections: 300 closed past the 2000 ms request deadline, 12 evicted at the cap
 *   of 4096, in the last 10 s      (one line)
 * </pre>
 *
 * <p><b>Windows.</b> The first event after a summary (or ever) opens a window; its summary is
 * due one interval later and names every kind counted in it, then the counts start again from
 * zero. So a subject logs at most one summary per interval, and none while nothing happens.
 *
 * <p><b>Who logs it.</b> {@link #flushIfDue} logs a due summary; an event loop calls it on every
 * wake-up and wakes no later than {@link #nanosUntilDue}. {@link #record} logs a due summary too
 * (before counting its own event in a new window), so that code without a timer of its own gets
 * its lines; its last window then waits for the next event or flush. {@link #flush} logs the
 * open window at once, for a stop.
 *
 * <p><b>Kinds with detail.</b> A kind made by {@link #detailedKind} allows a few lines of its own
 * per window: {@link #record} returns true for the first {@code linesPerWindow} events of the
 * window, and the caller logs its own line for each (naming the peer, say); only the events
 * beyond that are counted in the summary, so the kind's description reads like "more ...".
 *
 * <p>Thread-safe: any thread may record and flush; a summary is logged under the lock, so lines
 * of one subject never overtake each other. Times are {@code System.nanoTime()} values, passed
 * in so that tests can drive the clock.
 */
public final class ServerLogSummary {
  /** One kind of event; made by {@link #kind} or {@link #detailedKind} of its summary. */
  public static final class Kind {
    private final String description;
    private final int linesPerWindow;
    /** Guarded by the summary's lock. */
    private long count;
    private int lines;

    private Kind(String description, int linesPerWindow) {
      this.description = description;
      this.linesPerWindow = linesPerWindow;
    }
  }

  private final String subject;
  private final long intervalNanos;
  private final Consumer<String> sink;
  /** Guarded by this. */
  private final List<Kind> kinds = new ArrayList<>();
  private boolean windowOpen;
  private long windowStartNanos;
  /** Whether the open window has counted anything a summary would name. */
  private boolean pending;

  /**
   * @param subject the start of every line, e.g. {@code "front connections"}
   * @param intervalMillis the shortest time between two summary lines of this subject
   * @param sink where lines go ({@code ServerLog::info} in the servers)
   */
  public ServerLogSummary(String subject, long intervalMillis, Consumer<String> sink) {
    if (intervalMillis <= 0) {
      throw new IllegalArgumentException("interval must be positive: " + intervalMillis);
    }
    this.subject = subject;
    this.intervalNanos = intervalMillis * 1_000_000L;
    this.sink = sink;
  }

  /** A kind that is only counted; {@code description} follows the count ("12 evicted at ..."). */
  public synchronized Kind kind(String description) {
    return add(new Kind(description, 0));
  }

  /**
   * A kind whose first {@code linesPerWindow} events of each window get a line of their own from
   * the caller ({@link #record} returns true); the rest are counted under {@code description}.
   */
  public synchronized Kind detailedKind(String description, int linesPerWindow) {
    return add(new Kind(description, linesPerWindow));
  }

  private Kind add(Kind k) {
    kinds.add(k);
    return k;
  }

  /**
   * Records one event of {@code kind} at {@code nowNanos}.
   *
   * @return true if the caller should log the event's own line (a detailed kind within its
   *     allowance); false if it was counted for the summary
   */
  public synchronized boolean record(Kind kind, long nowNanos) {
    flushIfDue(nowNanos);
    if (!windowOpen) {
      windowOpen = true;
      windowStartNanos = nowNanos;
    }
    if (kind.lines < kind.linesPerWindow) {
      kind.lines++;
      return true;
    }
    kind.count++;
    pending = true;
    return false;
  }

  /** {@link #record} at the current time. */
  public boolean record(Kind kind) {
    return record(kind, System.nanoTime());
  }

  /** Logs the open window's summary if it is due at {@code nowNanos}, and closes the window. */
  public synchronized void flushIfDue(long nowNanos) {
    if (windowOpen && nowNanos - windowStartNanos >= intervalNanos) {
      flush(nowNanos);
    }
  }

  /**
   * Logs the open window's summary now, due or not, and closes the window: for a stop, so that
   * the last counts are not lost.
   */
  public synchronized void flush(long nowNanos) {
    if (!windowOpen) {
      return;
    }
    if (pending) {
      StringBuilder line = new StringBuilder(subject).append(": ");
      for (Kind k : kinds) {
        if (k.count > 0) {
          line.append(k.count).append(' ').append(k.description).append(", ");
        }
      }
      line.append("in the last ").append(formatElapsed(nowNanos - windowStartNanos));
      sink.accept(line.toString());
    }
    for (Kind k : kinds) {
      k.count = 0;
      k.lines = 0;
    }
    windowOpen = false;
    pending = false;
  }

  /**
   * Nanoseconds from {@code nowNanos} until a summary is due (0 if it is), or {@code
   * Long.MAX_VALUE} if none is pending: the longest a loop calling {@link #flushIfDue} may sleep.
   */
  public synchronized long nanosUntilDue(long nowNanos) {
    if (!pending) {
      return Long.MAX_VALUE;
    }
    return Math.max(0, windowStartNanos + intervalNanos - nowNanos);
  }

  /** "10 s" from a second up (rounded), "250 ms" below. */
  private static String formatElapsed(long nanos) {
    long millis = nanos / 1_000_000L;
    return millis >= 1_000 ? (millis + 500) / 1_000 + " s" : millis + " ms";
  }
}
