package io.psiskv.client;

import static io.psiskv.client.Failures.closedError;
import static io.psiskv.client.Failures.describe;
import static io.psiskv.client.Failures.protocolError;
import static io.psiskv.client.Failures.what;

import io.psiskv.client.Connection.Endpoint;
import io.psiskv.client.Connection.Session;
import io.psiskv.client.Failures.FrontUnreachable;
import io.psiskv.client.Failures.Unavailable;
import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.StatsBody;
import io.psiskv.protocol.Status;
import java.io.IOException;
import java.net.Socket;
import java.nio.channels.ClosedByInterruptException;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The synchronous call path of one {@link KvClient}, built from a {@link Connection} and the
 * response checks ({@link ResponseCheck}): one call at a time under the client's lock, each with a
 * new request id, retried per PROTOCOL.md §12 in {@link #withRetries}, within the call timeout if
 * there is one. It owns the client's data connection, its session and its request ids; the
 * asynchronous calls ({@link Pipeline}) send through it too, under the same lock.
 *
 * <p>Threads: the callers, one at a time under {@link #lock}; the call timer's thread ({@link
 * CallTimer}), which runs {@link #expire} holding no lock; and {@link #close}, from any thread at
 * any time ({@link Closing}).
 */
final class Calls {
  /** PROTOCOL.md §12.3: the first pause between two attempts; it doubles after each. */
  static final long FIRST_BACKOFF_MILLIS = 50;
  /** PROTOCOL.md §12.3: the longest pause between two attempts. */
  static final long MAX_BACKOFF_MILLIS = 1000;

  private final Endpoint front;
  /** 0: reconnection disabled. */
  private final long retryTimeoutNanos;
  /** 0: no call timeout. */
  private final long callTimeoutNanos;
  /** The watchdog of {@link #callTimeoutNanos}; null without a call timeout. */
  private final CallTimer timer;
  /**
   * The request id of the last call whose deadline {@link #timer} saw pass (it then closed the
   * call's socket), or 0: a call whose connection breaks with its own id here has timed out.
   */
  private volatile long expiredId;
  /** Told of each reconnection, outside the lock; null if none was given. */
  private final Runnable onReconnect;
  /** Written under lock: data connections made after the first (each resumed the session). */
  private volatile long reconnects;

  /**
   * Held by a call from its first byte sent to its result, across every reconnection and retry
   * (so a retry is never interleaved with another call's request), by connection set-up, and by
   * an asynchronous call while it sends its request (not while it waits for the answer).
   */
  private final ReentrantLock lock = new ReentrantLock();
  private final Closing closing = new Closing();
  private final InFlight inFlight;

  // Guarded by lock.
  /** The data connection with its session resumed or opened, or null between connections. */
  private Connection connection;
  /** PROTOCOL.md §3.2: strictly increasing; set-up requests draw from it too. */
  private long nextRequestId = 1;
  /** With reconnection disabled only: why the client is unusable, or null. */
  private KvException broken;
  /** The scratch buffer for requests: headers, set-up messages and small values. */
  private final byte[] buf = new byte[Connection.SEND_BUFFER_BYTES];
  private final Header header = new Header();

  /**
   * Written under lock by every SESSION answer: {@link Session#NONE} until the first, then this
   * client's id and secret for life, and the server's current maximum value length.
   */
  private volatile Session session = Session.NONE;

  Calls(Endpoint front, long retryTimeoutNanos, long callTimeoutNanos, Runnable onReconnect) {
    this.front = front;
    this.retryTimeoutNanos = retryTimeoutNanos;
    this.callTimeoutNanos = callTimeoutNanos;
    this.onReconnect = onReconnect;
    this.timer = callTimeoutNanos == 0 ? null : new CallTimer(callTimeoutNanos, this::expire);
    this.inFlight = new InFlight(closing, timer, callTimeoutNanos);
  }

  /** Thread-safe: the server's maximum value length as the last SESSION answer gave it. */
  int maxValueBytes() {
    return session.maxValueBytes();
  }

  /** Thread-safe: this client's session id, 0 before the first SESSION answer. */
  long sessionId() {
    return session.id();
  }

  /** Thread-safe: data connections made after the first. */
  long reconnects() {
    return reconnects;
  }

  InFlight inFlight() {
    return inFlight;
  }

  Closing closing() {
    return closing;
  }

  /** Whether the call or request with id {@code id} has passed its deadline (the timer said so). */
  boolean expired(long id) {
    return expiredId == id;
  }

  /** A {@link KvTimeoutException} for a call past {@link #callTimeoutNanos}. */
  KvTimeoutException timeoutError(Opcode op, int key, String waitingFor, Throwable cause) {
    return Failures.timeoutError(op, key, callTimeoutNanos, waitingFor, cause);
  }

  /** {@link KvClient#put} and {@link KvClient#putIfAbsent}: OK, or KEY_EXISTS if not stored. */
  Status write(int key, byte[] value, boolean overwrite) {
    Objects.requireNonNull(value, "value");
    KvRejectedException tooLarge = Failures.valueTooLarge(value, maxValueBytes());
    if (tooLarge != null) {
      throw tooLarge;
    }
    return call(Opcode.PUT, key, id -> {
      connection.sendPut(buf, key, id, overwrite, value);
      return ResponseCheck.checkPutResult(readResult(Opcode.PUT, key, id), overwrite);
    });
  }

  /** {@link KvClient#get}. */
  Optional<byte[]> get(int key) {
    return call(Opcode.GET, key, id -> {
      int capacity = maxValueBytes();
      ResponseReader in = connection.in;
      connection.out.write(buf, 0, Messages.get(buf, key, id, capacity));
      if (readResult(Opcode.GET, key, id) == Status.NOT_FOUND) {
        return Optional.empty();
      }
      int stored = ResponseCheck.readStoredLength(in, header, capacity);
      if (stored > capacity) {
        // Its first `capacity` bytes are still unread: this drops the connection (not retried).
        throw Failures.storedTooLarge(key, stored, capacity);
      }
      byte[] value = in.readValue(stored); // Grows with what arrives, not with what is claimed.
      ResponseCheck.expectEnd(in, Opcode.GET);
      return Optional.of(value);
    });
  }

  /** {@link KvClient#read}. */
  int read(int key, byte[] buffer) {
    Objects.requireNonNull(buffer, "buffer");
    return call(Opcode.GET, key, id -> {
      ResponseReader in = connection.in;
      connection.out.write(buf, 0, Messages.get(buf, key, id, buffer.length));
      if (readResult(Opcode.GET, key, id) == Status.NOT_FOUND) {
        return -1;
      }
      int stored = ResponseCheck.readStoredLength(in, header, buffer.length);
      in.readFully(buffer, 0, Math.min(stored, buffer.length));
      ResponseCheck.expectEnd(in, Opcode.GET);
      return stored;
    });
  }

  /** {@link KvClient#remove}. */
  boolean remove(int key) {
    return call(Opcode.DELETE, key, id -> {
      connection.out.write(buf, 0, Messages.delete(buf, key, id));
      return readResult(Opcode.DELETE, key, id) == Status.OK;
    });
  }

  /** {@link KvClient#stats}. */
  Map<String, Object> stats() {
    return call(Opcode.STATS, 0, id -> {
      ResponseReader in = connection.in;
      connection.out.write(buf, 0, Messages.stats(buf, id));
      readResult(Opcode.STATS, 0, id);
      int length = (int) header.bodyLength; // Rules.checkResponse bounded it.
      Map<String, Object> counters;
      try {
        counters = StatsBody.decode(in.bytes(), in.take(length), length);
      } catch (IllegalArgumentException e) {
        throw protocolError(e.getMessage());
      }
      ResponseCheck.expectEnd(in, Opcode.STATS);
      return counters;
    });
  }

  /**
   * Caller holds {@link #lock} (an asynchronous call, {@link Pipeline#submit}): sends a GET, PUT
   * or DELETE request on the data connection, answer unread.
   */
  void send(Opcode op, int key, long id, boolean overwrite, byte[] value, int capacity)
      throws IOException {
    if (op == Opcode.PUT) {
      connection.sendPut(buf, key, id, overwrite, value);
    } else if (op == Opcode.GET) {
      connection.out.write(buf, 0, Messages.get(buf, key, id, capacity));
    } else {
      connection.out.write(buf, 0, Messages.delete(buf, key, id));
    }
  }

  /**
   * One attempt of a call: sends its request with {@code requestId} on the data connection and
   * reads the answer. Runs under {@link #lock}. Throws {@link IOException} when the attempt may be
   * retried (the connection broke, or {@link Unavailable}), {@link KvException} when it must not
   * be.
   */
  interface Attempt<T> {
    T run(long requestId) throws IOException;
  }

  /**
   * Runs one call under the lock with a new request id, retried per PROTOCOL.md §12, within the
   * call timeout if there is one: {@link #timer} is armed with the call's id and deadline while it
   * holds the lock, and {@link #expire} closes its socket if the deadline passes.
   */
  private <T> T call(Opcode op, int key, Attempt<T> attempt) {
    long deadline = callDeadline();
    long reconnectsBefore = lockWithin(op, key, deadline);
    try {
      checkUsable();
      if (inFlight.readerStarted()) {
        inFlight.awaitBelow(1, op, key, deadline); // one stream: asynchronous requests go first
        dropIfClosedByReader(op, key);
      }
      return timed(op, key, attempt, deadline);
    } finally {
      unlock(reconnectsBefore);
    }
  }

  /**
   * Caller holds {@link #lock}: {@link #withRetries} with a new request id, {@link #timer} armed
   * with it until {@code deadline} (the call's, from {@link #callDeadline}).
   */
  private <T> T timed(Opcode op, int key, Attempt<T> attempt, long deadline) {
    long id = nextRequestId++;
    if (timer == null) {
      return withRetries(op, key, id, attempt, 0);
    }
    timer.arm(id, deadline);
    try {
      return withRetries(op, key, id, attempt, deadline);
    } finally {
      timer.disarm();
    }
  }

  /**
   * Caller holds {@link #lock} (an asynchronous call): with no data connection, waits until the
   * requests of the broken one have been failed and then connects, retried as a call's set-up
   * is, within {@code deadline}.
   */
  void connectIfNone(Opcode op, int key, long deadline) {
    if (connection == null) {
      inFlight.awaitBelow(1, op, key, deadline);
      timed(op, key, id -> null, deadline); // the id names the set-up for the timer only
    }
  }

  /** Caller holds {@link #lock}: the data connection (null between connections). */
  Connection connection() {
    return connection;
  }

  /** Caller holds {@link #lock}: a new request id (PROTOCOL.md §3.2). */
  long nextId() {
    return nextRequestId++;
  }

  /**
   * Caller holds {@link #lock}: throws unless calls may run (the client is not closed, nor broken
   * for good with reconnection disabled).
   */
  void checkUsable() {
    if (closing.isClosed()) {
      throw closedError(null);
    }
    if (broken != null) {
      throw broken.again();
    }
  }

  /**
   * Releases {@link #lock} taken by {@link #lockWithin} and then, holding no lock, tells {@link
   * #onReconnect} if the client reconnected since {@code reconnectsBefore}; what it throws goes to
   * the uncaught handler.
   */
  void unlock(long reconnectsBefore) {
    boolean reconnected = reconnects != reconnectsBefore;
    lock.unlock();
    if (!reconnected || onReconnect == null) {
      return;
    }
    try {
      onReconnect.run();
    } catch (RuntimeException e) {
      Thread t = Thread.currentThread();
      t.getUncaughtExceptionHandler().uncaughtException(t, e);
    }
  }

  /** The deadline of a call starting now ({@link System#nanoTime} scale), or 0 for none. */
  long callDeadline() {
    if (callTimeoutNanos == 0) {
      return 0;
    }
    long deadline = System.nanoTime() + callTimeoutNanos;
    return deadline == 0 ? 1 : deadline; // 0 means none
  }

  /**
   * Takes {@link #lock}; with a call deadline ({@code deadline != 0}) waits for it only until then.
   *
   * @return the reconnection count now, for {@link #unlock}
   * @throws KvTimeoutException if the deadline passes first
   * @throws KvException if the thread is interrupted while it waits
   */
  long lockWithin(Opcode op, int key, long deadline) {
    if (deadline == 0) {
      lock.lock();
      return reconnects;
    }
    try {
      if (!lock.tryLock(deadline - System.nanoTime(), TimeUnit.NANOSECONDS)) {
        throw timeoutError(op, key, "this client's other calls", null);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw Failures.interrupted(op, key, e);
    }
    return reconnects;
  }

  /**
   * The timer thread's action when the call or request with id {@code id} is still running at
   * its deadline: records the id and closes the socket it is blocked on, which ends its connect,
   * read or write with an IOException that {@link #withRetries} reports as a timeout. Holds no
   * lock (the call holds the client's).
   */
  private void expire(long id) {
    expiredId = id;
    Socket s = closing.live();
    Socket oldest = inFlight.socketOfOldest(id);
    if (oldest != null) {
      s = oldest; // an asynchronous request's: the connection it was sent on
    }
    Connection.closeQuietly(s);
  }

  /**
   * Caller holds {@link #lock}: forgets a data connection that the reader thread closed after a
   * failure, so the caller connects again; with reconnection disabled that failure is final.
   */
  void dropIfClosedByReader(Opcode op, int key) {
    if (connection != null && connection.isClosed()) {
      disconnect();
      if (retryTimeoutNanos == 0) {
        throw notRetried(new KvConnectionException(Status.IO_ERROR, what(op, key)
            + " failed (reconnection is disabled): the connection broke under asynchronous"
            + " requests"));
      }
    }
  }

  /** Opens the first connection and session (set-up only), retried per KvClient.Builder#connect. */
  void open() {
    lock.lock();
    try {
      withRetries(null, 0, 0, null, 0);
    } catch (RuntimeException | Error e) {
      close();
      throw e;
    } finally {
      lock.unlock();
    }
  }

  /**
   * The retry loop of PROTOCOL.md §12, the one place that decides what is retried. Caller holds
   * {@link #lock}. Each attempt (re)establishes the data connection if there is none and then
   * runs {@code attempt} (none, and no {@code op}, for {@link #open}) with the same {@code
   * requestId}, so a resent write carries the id of the interrupted one and the server can answer
   * it exactly once.
   *
   * <p>An {@link IOException} (the connection broke, or {@link Unavailable}) is retried after a
   * back-off until {@link #retryTimeoutNanos} after the first failure; a {@link KvException} (an
   * error status, a protocol violation) and a {@link ClosedByInterruptException} (this thread was
   * interrupted) are not. Either way the connection is dropped: the server
   * closes it after an error status (§8), and after a violation or a broken connection the stream
   * is out of step.
   */
  private <T> T withRetries(Opcode op, int key, long requestId, Attempt<T> attempt,
      long deadline) {
    int attempts = 0;
    long firstFailureNanos = 0;
    long backoffMillis = FIRST_BACKOFF_MILLIS;
    while (true) {
      attempts++;
      try {
        if (connection == null) {
          establish();
        }
        return attempt == null ? null : attempt.run(requestId);
      } catch (ClosedByInterruptException e) {
        // This thread was interrupted: its caller wants it to stop, so the call ends here.
        disconnect();
        throw closing.isClosed() ? closedError(e) : notRetried(Failures.interrupted(op, key, e));
      } catch (IOException e) {
        disconnect();
        if (closing.isClosed()) {
          throw closedError(e);
        }
        if (deadline != 0 && (expiredId == requestId || System.nanoTime() - deadline >= 0)) {
          throw notRetried(timeoutError(op, key, "its answer", e));
        }
        if (attempt == null && attempts == 1 && e instanceof FrontUnreachable) {
          // connect() fails fast on a dead address, like kv_connect (see Builder.connect).
          throw new KvConnectionException(Status.IO_ERROR,
              "cannot reach the psiskv Front Server at " + front.host() + ":" + front.port()
              + ": " + e.getCause(), e);
        }
        if (retryTimeoutNanos == 0) {
          throw notRetried(e instanceof Unavailable
              ? new KvConnectionException(Status.UNAVAILABLE,
                  what(op, key) + " failed: " + describe(e), e)
              : new KvConnectionException(Status.IO_ERROR, what(op, key)
                  + " failed (reconnection is disabled): " + describe(e), e));
        }
        long now = System.nanoTime();
        if (attempts == 1) {
          firstFailureNanos = now;
        }
        long elapsedNanos = now - firstFailureNanos;
        if (elapsedNanos >= retryTimeoutNanos) {
          throw new KvConnectionException(Status.IO_ERROR, what(op, key) + " failed: gave up after "
              + TimeUnit.NANOSECONDS.toMillis(elapsedNanos) + " ms and " + attempts
              + " attempts to reach psiskv at " + front.host() + ":" + front.port()
              + "; last cause: " + describe(e), e);
        }
        long remainingNanos = retryTimeoutNanos - elapsedNanos;
        if (deadline != 0) {
          remainingNanos = Math.min(remainingNanos, deadline - now);
        }
        pause(Math.min(backoffMillis, TimeUnit.NANOSECONDS.toMillis(remainingNanos + 999_999)));
        if (deadline != 0 && System.nanoTime() - deadline >= 0) {
          throw timeoutError(op, key, "reconnecting (last cause: " + describe(e) + ")", e);
        }
        backoffMillis = Math.min(2 * backoffMillis, MAX_BACKOFF_MILLIS);
      } catch (KvException e) {
        disconnect();
        throw closing.isClosed() ? closedError(e) : notRetried(e);
      } catch (RuntimeException | Error e) {
        disconnect();
        throw e;
      }
    }
  }

  /**
   * Caller holds {@link #lock} and has no data connection: {@link Connection#establish}, resuming
   * this client's session if it has one (§12.2); on success the connection is {@link
   * #connection} and the session's id, secret and maximum are the SESSION answer's.
   */
  private void establish() throws IOException {
    Connection c = Connection.establish(front, closing, this::nextId, buf, header, session);
    if (c.resumed) {
      reconnects++; // only this thread writes it, under the lock
    }
    session = c.session;
    connection = c;
  }

  /** Caller holds {@link #lock}: forgets the data connection, closing it. */
  void disconnect() {
    if (connection != null) {
      connection.close();
      connection = null;
    }
  }

  /** Caller holds {@link #lock}: waits {@code millis}, or less if {@link #close} comes first. */
  private void pause(long millis) {
    try {
      if (closing.await(millis)) {
        throw closedError(null);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new KvException(Status.IO_ERROR, "interrupted while waiting to reconnect to psiskv", e);
    }
  }

  /** Caller holds {@link #lock}: with reconnection disabled a failure is final (sticky). */
  private KvException notRetried(KvException e) {
    if (retryTimeoutNanos == 0) {
      broken = e;
    }
    return e;
  }

  /**
   * Reads a response header; returns OK, KEY_EXISTS or NOT_FOUND (with the body still unread), or
   * throws for an error status. Caller holds {@link #lock}.
   */
  private Status readResult(Opcode op, int key, long id) throws IOException {
    ResponseCheck.readResponse(connection.in, header, op, key, id);
    return Status.of(header.flagsOrStatus);
  }

  /**
   * {@link KvClient#close}: idempotent, thread-safe, never blocks on a call in progress; ends it
   * and every asynchronous request in flight (see {@link Closing}).
   */
  void close() {
    closing.close();
    if (timer != null) {
      timer.stop();
    }
    inFlight.wakeAll();
  }
}
