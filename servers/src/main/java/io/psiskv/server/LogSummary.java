package io.psiskv.server;

import java.util.concurrent.atomic.AtomicLong;

/**
 * One log line per interval for a problem that can repeat without bound (connections refused at
 * the limit, timeouts): each occurrence is counted, and the first after a quiet interval and then
 * at most one line per {@link ServerConfig#LOG_SUMMARY_INTERVAL_MILLIS} report how many there
 * were, so that no peer can fill the log. {@link #flush} reports a count left at the end of an
 * interval; a periodic caller (a loop's deadline check, the maintenance thread) calls it.
 *
 * <p>Thread-safe and lock-free.
 */
final class LogSummary {
  private final String what;
  private final long intervalNanos;
  private final AtomicLong count = new AtomicLong();
  /** When the last line was written (System.nanoTime), or 0 before any. */
  private final AtomicLong lastLineNanos = new AtomicLong();

  /** @param what what is counted, as it reads after a number ("connections refused: ...") */
  LogSummary(String what, long intervalMillis) {
    this.what = what;
    this.intervalNanos = intervalMillis * 1_000_000L;
  }

  LogSummary(String what) {
    this(what, ServerConfig.LOG_SUMMARY_INTERVAL_MILLIS);
  }

  /** Counts one occurrence; writes the line if the interval since the last one has passed. */
  void note() {
    count.incrementAndGet();
    flush(System.nanoTime());
  }

  /** Writes the line for the occurrences counted so far if an interval has passed since the last. */
  void flush(long nowNanos) {
    long last = lastLineNanos.get();
    if (count.get() == 0 || (last != 0 && nowNanos - last < intervalNanos)) {
      return;
    }
    if (!lastLineNanos.compareAndSet(last, nowNanos == 0 ? 1 : nowNanos)) {
      return; // Another thread writes this line.
    }
    long n = count.getAndSet(0);
    if (n > 0) {
      Log.info(n + " " + what + (last == 0 ? "" : " in the last "
          + Math.round((nowNanos - last) / 1e9) + " s"));
    }
  }
}
