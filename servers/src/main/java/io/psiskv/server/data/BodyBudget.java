package io.psiskv.server.data;

import java.util.List;
import java.util.TreeSet;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

/**
 * The server-wide budget of PUT body bytes in flight: bytes held for values that are still
 * arriving. A value whose bytes do not arrive with its header is accumulated as they come, in an
 * array that grows with what has arrived (never with what the header merely claims), and every
 * growth is charged here. Past the budget a connection that wants more is not failed: it is not
 * read from until another body completes or is dropped ({@link #end}), so no number of
 * large or lying PUTs can pin more than the budget.
 *
 * <p><b>No deadlock.</b> Bodies that wait for budget hold what they have, so bodies in flight
 * could together hold the whole budget while each waits for more. The oldest body in flight may
 * therefore always grow: it completes (or its request deadline drops it), and the next oldest
 * takes its place. The memory held is thus at most the budget plus one maximum value.
 *
 * <p>Thread-safe (one monitor; held for a counter update, never across I/O). Listeners are told,
 * with no lock held, whenever bytes are released, so that event loops can retry the connections
 * they parked.
 */
public final class BodyBudget {
  private final long limitBytes;
  /** Guarded by this. */
  private long usedBytes;
  /** Guarded by this: the start tickets of the bodies in flight (oldest first). */
  private final TreeSet<Long> inFlight = new TreeSet<>();
  /** Guarded by this. */
  private long nextTicket = 1;
  private final List<Runnable> listeners = new CopyOnWriteArrayList<>();

  public BodyBudget(long limitBytes) {
    this.limitBytes = limitBytes;
  }

  /** A body starts accumulating; returns its ticket for {@link #tryGrow} and {@link #end}. */
  synchronized long begin() {
    long t = nextTicket++;
    inFlight.add(t);
    return t;
  }

  /**
   * Charges {@code bytes} more to the body {@code ticket}: true if they fit in the budget or the
   * body is the oldest in flight, false if the caller must wait for an {@link #end}.
   */
  synchronized boolean tryGrow(long ticket, long bytes) {
    if (usedBytes + bytes <= limitBytes || inFlight.first() == ticket) {
      usedBytes += bytes;
      return true;
    }
    return false;
  }

  /**
   * Blocking form of {@link #tryGrow} for connection threads: waits until the bytes fit, or the
   * body is the oldest, or {@code deadlineNanos} (a {@code System.nanoTime()} value) passes.
   */
  synchronized boolean grow(long ticket, long bytes, long deadlineNanos)
      throws InterruptedException {
    while (!tryGrow(ticket, bytes)) {
      long left = deadlineNanos - System.nanoTime();
      if (left <= 0) {
        return false;
      }
      TimeUnit.NANOSECONDS.timedWait(this, left);
    }
    return true;
  }

  /**
   * The body {@code ticket} is complete or dropped: its {@code chargedBytes} are released (a
   * completed value now belongs to the store, which the budget does not count).
   */
  void end(long ticket, long chargedBytes) {
    synchronized (this) {
      inFlight.remove(ticket);
      usedBytes -= chargedBytes;
      notifyAll();
    }
    for (Runnable l : listeners) {
      l.run();
    }
  }

  /** Registers a quick, non-blocking {@code listener} run after every {@link #end}. */
  void addListener(Runnable listener) {
    listeners.add(listener);
  }

  void removeListener(Runnable listener) {
    listeners.remove(listener);
  }

  synchronized long usedBytes() {
    return usedBytes;
  }

  long limitBytes() {
    return limitBytes;
  }
}
