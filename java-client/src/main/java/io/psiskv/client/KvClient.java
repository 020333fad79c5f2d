package io.psiskv.client;

import io.psiskv.client.Connection.Endpoint;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Status;
import java.time.Duration;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.ForkJoinPool;
import java.util.function.Consumer;

/**
 * A connection to a psiskv store: byte-array values under unsigned 32-bit keys.
 *
 * <pre>{@code
 * try (KvClient kv = KvClient.connect("127.0.0.1", 9999)) {
 *   kv.put(42, "hello".getBytes(UTF_8));                 // store, replacing any old value
 *   boolean stored = kv.putIfAbsent(7, new byte[] {1});  // false if key 7 already existed
 *   Optional<byte[]> v = kv.get(42);                     // the value, or empty
 *   boolean existed = kv.remove(42);
 * }
 * }</pre>
 *
 * <p><b>Keys</b> are Java {@code int}s read as <em>unsigned</em> 32-bit numbers: every one of the
 * 2<sup>32</sup> keys is usable, and {@code -1} is key {@code 0xFFFFFFFF} (4294967295). Use {@link
 * Integer#parseUnsignedInt} and {@link Integer#toUnsignedString} to convert.
 *
 * <p><b>Values</b> are byte arrays of 0 bytes up to the server's maximum ({@link
 * #maxValueBytes()}, 64 MiB by default). The client never keeps a reference to an array it is given
 * after the call returns, and every array it returns is the caller's own.
 *
 * <p><b>Reconnection</b> (PROTOCOL.md §12). The client rides through a crash and relaunch of the
 * Data Server without the caller noticing. When the data connection breaks (end of stream, reset,
 * refused, any I/O error while sending or receiving) or a request is answered {@link
 * Status#UNAVAILABLE}, the call reconnects on its own: HELLO to the Front Server address given at
 * connect time, a connection to the Data Server it names, SESSION with this client's session id
 * (resume), and then it sends the interrupted request again with the same request id. Attempts are
 * spaced by a back-off of 50 ms doubling up to 1 s; the call gives up, with {@link
 * KvConnectionException} ({@link Status#IO_ERROR}), only when the retry deadline has passed: by
 * default 10 s after the failure, or the environment variable {@code PSISKV_RETRY_TIMEOUT_MS} (read
 * once), or {@link Builder#retryTimeout}. A retry timeout of 0 disables reconnection. A protocol
 * violation (an answer that breaks PROTOCOL.md §8) and every other error status fail the call at
 * once.
 *
 * <p><b>Call timeout.</b> With {@link Builder#callTimeout} a call that has not produced its result
 * within that time of its start (waiting for other threads' calls, the request, the answer, and
 * any reconnection in between) fails with {@link KvTimeoutException}. There is no call timeout by
 * default. A timed-out call drops its connection, since the answer may still come and the stream
 * is no longer known to be in step; the next call connects again and resumes the session. The
 * timed-out request is <em>abandoned</em>: the client never sends it again, and the next call has
 * a new request id. So a write that timed out may or may not have been applied (it may even be
 * applied after the exception, if it was on its way), and repeating it is a new write, not the
 * exactly-once retry of the old one: a {@code putIfAbsent} repeated after a timeout returns {@code
 * false} if the first one was applied. Read the key to find out. A late copy of the abandoned
 * write can never overtake a later call's write: the server refuses a write whose id is below the
 * session's last one (PROTOCOL.md §12.5).
 *
 * <p><b>Exactly once.</b> A write interrupted by a crash is applied exactly once: the server
 * remembers the last write of each session, so the resent request is answered with the original
 * result ({@code putIfAbsent} that succeeded before the crash returns {@code true} on its retry,
 * {@code remove} returns {@code true}). Reads are simply repeated. A write that fails (an
 * exception) may or may not have been applied, like any write whose answer was lost.
 *
 * <p><b>Errors.</b> Results are return values ({@code putIfAbsent} returns {@code false} when the key
 * exists, {@code get} returns empty when it does not). Everything else throws {@link KvException}
 * with its {@link Status}, as one of its subclasses where one applies: {@link
 * KvConnectionException} for an unreachable server, a connection that stayed broken past the retry
 * deadline or a closed client; {@link KvTimeoutException} for a call past its call timeout; {@link
 * KvRejectedException} for a value over the maximum or an error answered by the server. The client
 * object stays valid: after a failed call the next call connects again (with its own retry
 * deadline), unless reconnection is disabled, in which case every later call throws the same
 * error.
 *
 * <p><b>Thread safety.</b> A {@code KvClient} is safe for use by several threads: each call holds
 * the client's lock for one request and its response, including any reconnection and retry, so
 * calls from different threads are serialised on the one connection. {@link #close()} may be
 * called from any thread at any time and ends a call in progress (even one waiting to reconnect)
 * promptly, and fails every asynchronous request in flight. For parallelism, give each thread its
 * own client, or use the asynchronous calls.
 *
 * <p><b>Asynchronous calls.</b> {@link #getAsync}, {@link #putAsync}, {@link #putIfAbsentAsync} and
 * {@link #removeAsync} return a {@link CompletableFuture} as soon as their request is sent, so that
 * several requests are in flight together on the one data connection (pipelining, PROTOCOL.md §2):
 * the server answers them in the order they were sent, and the client's reader thread ({@code
 * psiskv-async-reader}, one per client, started by the first asynchronous call) matches each answer
 * to the oldest unanswered request and checks its request id. A future completes with the result
 * the synchronous call would return, or exceptionally with the {@link KvException} it would throw;
 * it is completed through {@link Builder#asyncExecutor} (the common fork-join pool by default), not
 * on the reader thread unless that executor runs tasks in place. At most {@link #MAX_IN_FLIGHT}
 * requests are in flight; an asynchronous call beyond that <em>waits</em> in the calling thread for
 * an answer (bounded by the call timeout). Requests of several threads are sent one at a time, in
 * the order they take the client's lock; a synchronous call waits until no asynchronous request is
 * in flight, then runs as usual.
 *
 * <p><b>Asynchronous calls are not retried.</b> If the connection breaks (or a request times out)
 * while requests are in flight, every one of them fails with {@link KvConnectionException} (the
 * timed-out one with {@link KvTimeoutException}) and none is sent again: the server remembers
 * only the last write of each session (PROTOCOL.md §12.5), so of several writes in flight at most
 * one could be resent exactly once. Each of those writes may or may not have been applied. The
 * next call, synchronous or asynchronous, connects again and resumes the session as after any
 * broken connection (a call that finds no connection connects in its calling thread, retried up
 * to the retry deadline). An error answer (for example {@link Status#SERVER_ERROR}) fails its own
 * request only; a protocol violation or {@link Status#UNAVAILABLE} drops the connection and so
 * fails every request in flight on it.
 *
 * <p><b>Interrupts.</b> A call whose thread is interrupted, before or while it waits for the
 * server, ends at once with {@link Status#IO_ERROR} and is not retried; the thread's interrupt
 * status stays set. The connection it was using is closed (as an interrupted channel is), and the
 * next call connects again, unless reconnection is disabled (then every later call throws the
 * same error, as after any broken connection).
 *
 * <p>The calls map onto the C API one to one; see the table in README.md and PROTOCOL.md §5.1.
 */
public final class KvClient implements AutoCloseable {
  /** Default bound on establishing each TCP connection (Front Server, then Data Server). */
  public static final Duration DEFAULT_CONNECT_TIMEOUT = Duration.ofMillis(3000);

  /**
   * PROTOCOL.md §12.3: how long a call keeps reconnecting after a failure when neither {@link
   * Builder#retryTimeout} nor the environment variable {@code PSISKV_RETRY_TIMEOUT_MS} says
   * otherwise.
   */
  public static final Duration DEFAULT_RETRY_TIMEOUT = Duration.ofMillis(10_000);

  /**
   * Most asynchronous requests one client has in flight (sent, answer not yet read; PROTOCOL.md
   * §2). An asynchronous call made while this many are in flight waits in the calling thread until
   * an answer arrives (within the call timeout, if there is one): the client's memory for
   * unanswered requests is bounded, and so is the work a server is asked for at once.
   */
  public static final int MAX_IN_FLIGHT = 256;

  /** PROTOCOL.md §12.3: milliseconds, 0 disables reconnection; the default of every client. */
  static final String RETRY_TIMEOUT_ENV = "PSISKV_RETRY_TIMEOUT_MS";
  /** The environment's retry timeout as read once, at class initialisation; null when unset. */
  private static final String RETRY_TIMEOUT_ENV_VALUE = System.getenv(RETRY_TIMEOUT_ENV);

  private final String host;
  private final int port;
  /** The synchronous calls, the connection and the session; the asynchronous ones send here. */
  private final Calls calls;
  /** The asynchronous calls: their requests in flight and the reader thread. */
  private final Pipeline pipeline;

  private KvClient(String host, int port, Duration connectTimeout, Duration retryTimeout,
      Duration callTimeout, Consumer<? super KvClient> onReconnect, Executor asyncExecutor) {
    this.host = host;
    this.port = port;
    // Capped (at 73 years) so that a deadline, now plus the timeout, cannot overflow.
    long callTimeoutNanos = Math.min(saturatedNanos(callTimeout), Long.MAX_VALUE / 4);
    Runnable hook = onReconnect == null ? null : () -> onReconnect.accept(this);
    this.calls = new Calls(new Endpoint(host, port, (int) connectTimeout.toMillis()),
        saturatedNanos(retryTimeout), callTimeoutNanos, hook);
    this.pipeline = new Pipeline(calls, asyncExecutor);
  }

  /**
   * Connects with {@link #DEFAULT_CONNECT_TIMEOUT}, the default retry timeout and no call timeout;
   * see {@link Builder#connect()}.
   *
   * @param host the Front Server's host name or IPv4 address
   * @param port the Front Server's port (9999 by default)
   * @return the connected client
   * @throws KvException as {@link Builder#connect()}
   */
  public static KvClient connect(String host, int port) {
    return builder(host, port).connect();
  }

  /**
   * Connects with the given connect timeout, the default retry timeout and no call timeout; see
   * {@link Builder#connect()}.
   *
   * @param host the Front Server's host name or IPv4 address
   * @param port the Front Server's port (9999 by default)
   * @param connectTimeout as {@link Builder#connectTimeout}
   * @return the connected client
   * @throws KvException as {@link Builder#connect()}
   * @throws IllegalArgumentException as {@link Builder#connectTimeout}
   */
  public static KvClient connect(String host, int port, Duration connectTimeout) {
    return builder(host, port).connectTimeout(connectTimeout).connect();
  }

  /**
   * Options for a client of the Front Server at {@code host:port}, for example {@code
   * KvClient.builder("127.0.0.1", 9999).retryTimeout(Duration.ofSeconds(30)).connect()}.
   *
   * @param host a host name or an IPv4 address
   * @param port the Front Server's port (9999 by default)
   * @return a builder with the defaults, which connects nothing until {@link Builder#connect()}
   * @throws IllegalArgumentException if the port is not 0..65535
   */
  public static Builder builder(String host, int port) {
    return new Builder(host, port);
  }

  /** Options of a {@link KvClient}; not thread-safe, use it from one thread and discard it. */
  public static final class Builder {
    private final String host;
    private final int port;
    private Duration connectTimeout = DEFAULT_CONNECT_TIMEOUT;
    private Duration retryTimeout;
    private Duration callTimeout = Duration.ZERO;
    private Consumer<? super KvClient> onReconnect;
    private Executor asyncExecutor = ForkJoinPool.commonPool();

    private Builder(String host, int port) {
      this.host = Objects.requireNonNull(host, "host");
      if (port < 0 || port > 0xFFFF) {
        throw new IllegalArgumentException("port " + port + " is not 0..65535");
      }
      this.port = port;
    }

    /**
     * Bound on each TCP connect (Front Server, then Data Server) and on each set-up answer
     * (HELLO, SESSION); {@link #DEFAULT_CONNECT_TIMEOUT} if not set.
     *
     * @param connectTimeout the bound
     * @return this builder
     * @throws IllegalArgumentException unless between 1 ms and {@link Integer#MAX_VALUE} ms
     */
    public Builder connectTimeout(Duration connectTimeout) {
      long millis = connectTimeout.toMillis();
      if (millis < 1 || millis > Integer.MAX_VALUE) {
        throw new IllegalArgumentException("connect timeout " + connectTimeout + " out of range");
      }
      this.connectTimeout = connectTimeout;
      return this;
    }

    /**
     * How long a call keeps reconnecting after a failure (PROTOCOL.md §12.3) before it throws
     * {@link Status#IO_ERROR}; {@link Duration#ZERO} disables reconnection. If not set: the
     * environment variable {@code PSISKV_RETRY_TIMEOUT_MS}, else {@link #DEFAULT_RETRY_TIMEOUT}.
     * A call that gives up throws {@link KvConnectionException}.
     *
     * @param retryTimeout how long, counted from the first failure of a call
     * @return this builder
     * @throws IllegalArgumentException if negative
     */
    public Builder retryTimeout(Duration retryTimeout) {
      if (retryTimeout.isNegative()) {
        throw new IllegalArgumentException("retry timeout " + retryTimeout + " is negative");
      }
      this.retryTimeout = retryTimeout;
      return this;
    }

    /**
     * Bound on each call, from the moment it is made to its result: waiting for other threads'
     * calls on this client, sending, waiting for the answer, and any reconnection and retry in
     * between. {@link Duration#ZERO}, the default, means no bound (a call then waits for a server
     * that accepts and never answers as long as the connection stays open). A call still running
     * at its deadline fails with {@link KvTimeoutException}; see the class comment ("Call
     * timeout") for what becomes of its request.
     *
     * <p>With the retry timeout ({@link #retryTimeout}), a call ends at whichever deadline comes
     * first: the call timeout counts from the call's start and covers everything; the retry
     * timeout counts from the first failure and covers only reconnecting. A call timeout shorter
     * than the retry timeout thus also cuts a ride-through short.
     *
     * <p>A client with a call timeout has one daemon thread of its own ({@code
     * psiskv-call-timer}), which sleeps except at deadlines and ends with {@link KvClient#close}.
     *
     * @param callTimeout the bound, at least 1 ms, or zero for none
     * @return this builder
     * @throws IllegalArgumentException if negative, or positive and under 1 ms
     */
    public Builder callTimeout(Duration callTimeout) {
      if (callTimeout.isNegative()
          || (!callTimeout.isZero() && callTimeout.compareTo(Duration.ofMillis(1)) < 0)) {
        throw new IllegalArgumentException("call timeout " + callTimeout
            + " is not zero (none) nor at least 1 ms");
      }
      this.callTimeout = callTimeout;
      return this;
    }

    /**
     * A listener told of every reconnection: each time the client has made a new data connection
     * and resumed its session after the first one (see {@link KvClient#reconnects()}). It runs on
     * the thread of the call that reconnected, after that call has released the client's lock and
     * before it returns or throws, so other threads' calls are not held up by it and it may itself
     * call this client. It should be quick: the call's result waits for it. An exception it throws
     * goes to the thread's uncaught exception handler and does not change the call's outcome.
     *
     * @param listener given this client; replaces any listener set before
     * @return this builder
     */
    public Builder onReconnect(Consumer<? super KvClient> listener) {
      this.onReconnect = Objects.requireNonNull(listener, "listener");
      return this;
    }

    /**
     * Where the futures of the asynchronous calls ({@link KvClient#getAsync} and the others) are
     * completed, and so where their dependent stages without an executor of their own run: {@link
     * ForkJoinPool#commonPool()} if not set, so that a stage may block or call this client. An
     * executor that runs a task in the calling thread (such as {@code Runnable::run}), or refuses
     * it ({@link java.util.concurrent.RejectedExecutionException}), has the future completed on
     * the client's reader thread: cheaper, but a stage there must not block, and a call of this
     * client that would have to wait for answers fails with {@link IllegalStateException}.
     *
     * @param executor the executor
     * @return this builder
     */
    public Builder asyncExecutor(Executor executor) {
      this.asyncExecutor = Objects.requireNonNull(executor, "executor");
      return this;
    }

    /**
     * Connects to the Front Server, which redirects this client to the Data Server, and opens a
     * session there (PROTOCOL.md §2).
     *
     * <p>Fails fast when the Front Server cannot be reached at all on the first try (connection
     * refused, unknown host, connect timeout), as {@code kv_connect} to a dead address does. Once
     * the Front Server has been reached, set-up is retried like a call until the retry deadline:
     * while the Front Server answers {@link Status#UNAVAILABLE} (its Data Server is being
     * launched or relaunched), and while the Data Server refuses or drops the connection.
     *
     * @return the connected client
     * @throws KvException with {@link Status#IO_ERROR} if the Front Server cannot be reached, if
     *     set-up still fails at the retry deadline, or on a protocol violation; with the status the
     *     server answered if it is an error other than {@link Status#UNAVAILABLE}, or {@link
     *     Status#UNAVAILABLE} itself when reconnection is disabled
     * @throws IllegalArgumentException if no retry timeout was set and {@code
     *     PSISKV_RETRY_TIMEOUT_MS} is not a number of milliseconds {@code >= 0}
     */
    public KvClient connect() {
      Duration retry = retryTimeout != null ? retryTimeout : retryTimeoutFromEnv(
          RETRY_TIMEOUT_ENV_VALUE);
      KvClient kv = new KvClient(host, port, connectTimeout, retry, callTimeout, onReconnect,
          asyncExecutor);
      kv.calls.open();
      return kv;
    }
  }

  /**
   * Stores {@code value} under {@code key}, replacing any earlier value ({@code kv_write} with
   * overwrite 1). Retried across reconnections, exactly once (see the class comment).
   *
   * @param key the key, unsigned
   * @param value the value, not kept after the call returns
   * @throws KvRejectedException {@link Status#TOO_LARGE} if the value exceeds {@link
   *     #maxValueBytes()} (nothing is sent); see the class comment for the others
   */
  public void put(int key, byte[] value) {
    calls.write(key, value, true);
  }

  /**
   * Stores {@code value} under {@code key} only if the key has no value, as one atomic
   * check-and-insert on the server ({@code kv_write} with overwrite 0). Retried across
   * reconnections, exactly once: a store that succeeded before a crash still returns {@code true}.
   *
   * @param key the key, unsigned
   * @param value the value, not kept after the call returns
   * @return {@code true} if stored; {@code false} if the key already had a value (unchanged)
   * @throws KvRejectedException {@link Status#TOO_LARGE} if the value exceeds {@link
   *     #maxValueBytes()} (nothing is sent); see the class comment for the others
   */
  public boolean putIfAbsent(int key, byte[] value) {
    return calls.write(key, value, false) == Status.OK;
  }

  /**
   * The value stored under {@code key}, or empty if there is none. Retried across reconnections.
   *
   * @param key the key, unsigned
   * @return the value, in a new array that is the caller's; or empty if there is no such key
   * @throws KvRejectedException {@link Status#TOO_LARGE} if the stored value is longer than the
   *     server's current maximum (possible only after the server was restarted with a smaller
   *     one; use {@link #read}); see the class comment for the others
   */
  public Optional<byte[]> get(int key) {
    return calls.get(key);
  }

  /**
   * Reads the value of {@code key} into {@code buffer}, like {@code kv_read}: copies at most {@code
   * buffer.length} bytes, and only as many as the server sends, so a short buffer costs only what
   * it holds. Retried across reconnections (an interrupted attempt may have written part of the
   * buffer; the retry overwrites it).
   *
   * @param key the key, unsigned
   * @param buffer where the value's first {@code buffer.length} bytes go
   * @return the stored length, which may exceed {@code buffer.length}; or {@code -1} if there is no
   *     such key
   */
  public int read(int key, byte[] buffer) {
    return calls.read(key, buffer);
  }

  /**
   * Removes {@code key} and its value. Retried across reconnections, exactly once: a removal that
   * succeeded before a crash still returns {@code true}.
   *
   * @param key the key, unsigned
   * @return {@code true} if the key had a value; {@code false} if there was none
   */
  public boolean remove(int key) {
    return calls.remove(key);
  }

  /**
   * {@link #get}, asynchronously: sends the request and returns without waiting for the answer,
   * with several requests in flight on the one connection (see the class comment, "Asynchronous
   * calls").
   *
   * @param key the key, unsigned
   * @return completed with the value or empty, or exceptionally with a {@link KvException}
   */
  public CompletableFuture<Optional<byte[]>> getAsync(int key) {
    return pipeline.submit(Opcode.GET, key, false, null);
  }

  /**
   * {@link #put}, asynchronously (see the class comment, "Asynchronous calls").
   *
   * @param key the key, unsigned
   * @param value the value, not kept after the call returns (the request has been sent then)
   * @return completed with {@code null} once stored, or exceptionally with a {@link KvException}
   */
  public CompletableFuture<Void> putAsync(int key, byte[] value) {
    return pipeline.submit(Opcode.PUT, key, true, Objects.requireNonNull(value, "value"));
  }

  /**
   * {@link #putIfAbsent}, asynchronously (see the class comment, "Asynchronous calls").
   *
   * @param key the key, unsigned
   * @param value the value, not kept after the call returns (the request has been sent then)
   * @return completed with {@code true} if stored, {@code false} if the key had a value, or
   *     exceptionally with a {@link KvException}
   */
  public CompletableFuture<Boolean> putIfAbsentAsync(int key, byte[] value) {
    return pipeline.submit(Opcode.PUT, key, false, Objects.requireNonNull(value, "value"));
  }

  /**
   * {@link #remove}, asynchronously (see the class comment, "Asynchronous calls").
   *
   * @param key the key, unsigned
   * @return completed with {@code true} if the key had a value, {@code false} if not, or
   *     exceptionally with a {@link KvException}
   */
  public CompletableFuture<Boolean> removeAsync(int key) {
    return pipeline.submit(Opcode.DELETE, key, false, null);
  }

  /**
   * The Data Server's named counters (STATS, PROTOCOL.md §6.7), in the server's order: values are
   * {@link Long} (unsigned 64-bit: print with {@link Long#toUnsignedString(long)}) or {@link
   * String}. Which names appear is the server's choice; PROTOCOL.md lists psiskv's. Retried
   * across reconnections (it changes nothing).
   *
   * @return an unmodifiable map
   * @throws KvRejectedException {@link Status#UNKNOWN_OPCODE} from a server older than STATS;
   *     see the class comment for the others
   */
  public Map<String, Object> stats() {
    return calls.stats();
  }

  /**
   * The server's maximum value length in bytes, as the last SESSION answer gave it (a relaunched
   * Data Server may have been configured differently). Thread-safe; never blocks.
   *
   * @return the maximum, in bytes
   */
  public int maxValueBytes() {
    return calls.maxValueBytes();
  }

  /**
   * How many times this client has reconnected: made a new data connection, and resumed its
   * session there, after the first one (a crash and relaunch of the Data Server, a connection the
   * server closed, a call that timed out). A call that rides through one failure usually adds 1;
   * attempts that fail are not counted. Thread-safe; never blocks.
   *
   * @return the count since {@link Builder#connect()}, 0 if the first connection still serves
   */
  public long reconnects() {
    return calls.reconnects();
  }

  /**
   * Closes the connection. Idempotent, thread-safe, and never blocks on a call in progress: that
   * call, even one waiting to reconnect, ends promptly with {@link Status#IO_ERROR}, and every
   * later call throws the same.
   */
  @Override
  public void close() {
    calls.close();
  }

  @Override
  public String toString() {
    return "KvClient[" + host + ":" + port + ", session " + Long.toHexString(calls.sessionId())
        + "]";
  }

  /**
   * The value of {@code PSISKV_RETRY_TIMEOUT_MS}: {@link #DEFAULT_RETRY_TIMEOUT} if unset or empty,
   * else a whole number of milliseconds {@code >= 0}.
   *
   * @throws IllegalArgumentException naming the variable if the value is not such a number
   */
  static Duration retryTimeoutFromEnv(String value) {
    if (value == null || value.isBlank()) {
      return DEFAULT_RETRY_TIMEOUT;
    }
    try {
      long millis = Long.parseLong(value.trim());
      if (millis >= 0) {
        return Duration.ofMillis(millis);
      }
    } catch (NumberFormatException notANumber) {
      // Reported below with the variable's name.
    }
    throw new IllegalArgumentException(RETRY_TIMEOUT_ENV + "=\"" + value
        + "\" is not a number of milliseconds >= 0 (0 disables reconnection)");
  }

  private static long saturatedNanos(Duration d) {
    try {
      return d.toNanos();
    } catch (ArithmeticException tooLong) {
      return Long.MAX_VALUE;
    }
  }
}
