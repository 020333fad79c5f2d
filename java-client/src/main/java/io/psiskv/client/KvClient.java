package io.psiskv.client;

import static io.psiskv.protocol.Protocol.GET_RESPONSE_PREFIX_BYTES;
import static io.psiskv.protocol.Protocol.HEADER_BYTES;
import static io.psiskv.protocol.Protocol.HELLO_RESPONSE_BODY_BYTES;
import static io.psiskv.protocol.Protocol.SESSION_RESPONSE_BODY_BYTES;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Rules;
import io.psiskv.protocol.StatsBody;
import io.psiskv.protocol.Status;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketException;
import java.nio.channels.ClosedByInterruptException;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executor;
import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
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
  /** PROTOCOL.md §12.3: the first pause between two attempts; it doubles after each. */
  static final long FIRST_BACKOFF_MILLIS = 50;
  /** PROTOCOL.md §12.3: the longest pause between two attempts. */
  static final long MAX_BACKOFF_MILLIS = 1000;

  /** The environment's retry timeout as read once, at class initialisation; null when unset. */
  private static final String RETRY_TIMEOUT_ENV_VALUE = System.getenv(RETRY_TIMEOUT_ENV);

  /** Values up to this size are copied behind the header so the request leaves in one write. */
  private static final int SINGLE_WRITE_MAX_BYTES = 16 * 1024;

  /**
   * Capacity of a connection's receive buffer ({@link ResponseReader}): a response with a value up
   * to {@link #SINGLE_WRITE_MAX_BYTES} arrives with one read; the rest of a longer value is read
   * straight into the caller's array.
   */
  private static final int RECEIVE_BUFFER_BYTES =
      HEADER_BYTES + GET_RESPONSE_PREFIX_BYTES + SINGLE_WRITE_MAX_BYTES;

  /**
   * Most bytes one read or write of a socket moves between the network and a value's array. A
   * socket here is a {@link SocketChannel}'s (see {@link #openLive}); the JDK moves a heap array
   * to and from a channel through a temporary direct buffer as large as the transfer and keeps
   * that buffer cached by the thread, so an unbounded transfer of a 64 MiB value would leave a 64
   * MiB direct buffer behind in every thread that made one. A plain {@link Socket} stops at 128
   * KiB itself; this is the same bound.
   */
  static final int TRANSFER_MAX_BYTES = 128 * 1024;

  private final String host;
  private final int port;
  private final int connectTimeoutMillis;
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
  private final Consumer<? super KvClient> onReconnect;
  /** Written under lock: data connections made after the first (each resumed the session). */
  private volatile long reconnects;

  /*
   * Asynchronous requests (getAsync, putAsync, putIfAbsentAsync, removeAsync). A request is sent
   * by its calling thread under `lock`, as a synchronous call's is, and then waits in `inFlight`,
   * oldest first, for the `reader` thread, which reads the answers in order (PROTOCOL.md §2),
   * checks each against the oldest unanswered request, and completes its future through
   * `asyncExecutor`. The reader never takes `lock`: a sender blocked in a write (a server that
   * stops reading until its answers are taken) is unblocked by the reader taking them. `queueLock`
   * guards `inFlight` and the timer's arming while requests are in flight; it is never held
   * during I/O nor while a future completes. Lock order: lock, then queueLock. A synchronous call
   * first waits until `inFlight` is empty, so the reader and a synchronous call never use the
   * connection's receive buffer at once.
   */
  private final Executor asyncExecutor;
  private final ReentrantLock queueLock = new ReentrantLock();
  /** Signalled whenever {@link #inFlight} changes and at close. */
  private final Condition queueChanged = queueLock.newCondition();
  /** Guarded by queueLock: the requests sent and not yet answered, oldest first. */
  private final ArrayDeque<Pending> inFlight = new ArrayDeque<>();
  /** Guarded by lock: the reader thread, started by the first asynchronous call; else null. */
  private Thread reader;

  /**
   * Held by a call from its first byte sent to its result, across every reconnection and retry
   * (so a retry is never interleaved with another call's request), by connection set-up, and by
   * an asynchronous call while it sends its request (not while it waits for the answer).
   */
  private final ReentrantLock lock = new ReentrantLock();

  /*
   * Closing, the only state shared without the lock. close() sets `closed`, counts `closing`
   * down (which ends a back-off wait at once), and closes `live` (which ends a blocking connect,
   * read or write of the lock holder with an IOException). The lock holder publishes every new
   * socket in `live` before it uses it and then checks `closed`, so either close() sees the
   * socket or the holder sees `closed`: no socket escapes a close.
   */
  private volatile boolean closed;
  private final CountDownLatch closing = new CountDownLatch(1);
  private volatile Socket live;

  // Guarded by lock.
  /** The data connection with its session resumed or opened, or null between connections. */
  private Socket socket;
  /**
   * The data connection's receive buffer: empty between synchronous calls' responses (see {@link
   * #expectEnd}); read by the reader thread instead while asynchronous requests are in flight.
   */
  private ResponseReader in;
  private OutputStream out;
  /** PROTOCOL.md §3.2: strictly increasing; set-up requests draw from it too. */
  private long nextRequestId = 1;
  /** With reconnection disabled only: why the client is unusable, or null. */
  private KvException broken;
  /** The scratch buffer for requests: headers, set-up messages and small values. */
  private final byte[] buf = new byte[HEADER_BYTES + SINGLE_WRITE_MAX_BYTES];
  private final Header header = new Header();

  /** Written under lock; 0 until the first SESSION answer, then this client's id for life. */
  private volatile long sessionId;
  /**
   * Guarded by lock: the session's secret (PROTOCOL.md §6.2), null until the first SESSION answer;
   * presented to resume the session, so that no other client can.
   */
  private byte[] sessionSecret;
  /** Written under lock by every SESSION answer: a relaunched server may have another maximum. */
  private volatile int maxValueBytes;

  private KvClient(String host, int port, Duration connectTimeout, Duration retryTimeout,
      Duration callTimeout, Consumer<? super KvClient> onReconnect, Executor asyncExecutor) {
    this.host = host;
    this.asyncExecutor = asyncExecutor;
    this.onReconnect = onReconnect;
    this.port = port;
    this.connectTimeoutMillis = (int) connectTimeout.toMillis();
    this.retryTimeoutNanos = saturatedNanos(retryTimeout);
    // Capped (at 73 years) so that a deadline, now plus the timeout, cannot overflow.
    this.callTimeoutNanos = Math.min(saturatedNanos(callTimeout), Long.MAX_VALUE / 4);
    this.timer = callTimeoutNanos == 0 ? null : new CallTimer(callTimeoutNanos, this::expire);
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
      kv.open();
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
    write(key, value, true);
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
    return write(key, value, false) == Status.OK;
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
    return call(Opcode.GET, key, id -> {
      int capacity = maxValueBytes;
      out.write(buf, 0, Messages.get(buf, key, id, capacity));
      if (readResult(Opcode.GET, key, id) == Status.NOT_FOUND) {
        return Optional.empty();
      }
      int stored = readStoredLength(capacity);
      if (stored > capacity) {
        // Its first `capacity` bytes are still unread: this drops the connection (not retried).
        throw new KvRejectedException(Status.TOO_LARGE, "the value of key "
            + Integer.toUnsignedString(key) + " has " + stored
            + " bytes, more than the server's maximum of " + capacity);
      }
      byte[] value = in.readValue(stored); // Grows with what arrives, not with what is claimed.
      expectEnd(in, Opcode.GET);
      return Optional.of(value);
    });
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
    Objects.requireNonNull(buffer, "buffer");
    return call(Opcode.GET, key, id -> {
      out.write(buf, 0, Messages.get(buf, key, id, buffer.length));
      if (readResult(Opcode.GET, key, id) == Status.NOT_FOUND) {
        return -1;
      }
      int stored = readStoredLength(buffer.length);
      in.readFully(buffer, 0, Math.min(stored, buffer.length));
      expectEnd(in, Opcode.GET);
      return stored;
    });
  }

  /**
   * Removes {@code key} and its value. Retried across reconnections, exactly once: a removal that
   * succeeded before a crash still returns {@code true}.
   *
   * @param key the key, unsigned
   * @return {@code true} if the key had a value; {@code false} if there was none
   */
  public boolean remove(int key) {
    return call(Opcode.DELETE, key, id -> {
      out.write(buf, 0, Messages.delete(buf, key, id));
      return readResult(Opcode.DELETE, key, id) == Status.OK;
    });
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
    return submit(Opcode.GET, key, false, null);
  }

  /**
   * {@link #put}, asynchronously (see the class comment, "Asynchronous calls").
   *
   * @param key the key, unsigned
   * @param value the value, not kept after the call returns (the request has been sent then)
   * @return completed with {@code null} once stored, or exceptionally with a {@link KvException}
   */
  public CompletableFuture<Void> putAsync(int key, byte[] value) {
    return submit(Opcode.PUT, key, true, Objects.requireNonNull(value, "value"));
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
    return submit(Opcode.PUT, key, false, Objects.requireNonNull(value, "value"));
  }

  /**
   * {@link #remove}, asynchronously (see the class comment, "Asynchronous calls").
   *
   * @param key the key, unsigned
   * @return completed with {@code true} if the key had a value, {@code false} if not, or
   *     exceptionally with a {@link KvException}
   */
  public CompletableFuture<Boolean> removeAsync(int key) {
    return submit(Opcode.DELETE, key, false, null);
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
    return call(Opcode.STATS, 0, id -> {
      out.write(buf, 0, Messages.stats(buf, id));
      readResult(Opcode.STATS, 0, id);
      int length = (int) header.bodyLength; // Rules.checkResponse bounded it.
      Map<String, Object> counters;
      try {
        counters = StatsBody.decode(in.bytes(), in.take(length), length);
      } catch (IllegalArgumentException e) {
        throw protocolError(e.getMessage());
      }
      expectEnd(in, Opcode.STATS);
      return counters;
    });
  }

  /**
   * The server's maximum value length in bytes, as the last SESSION answer gave it (a relaunched
   * Data Server may have been configured differently). Thread-safe; never blocks.
   *
   * @return the maximum, in bytes
   */
  public int maxValueBytes() {
    return maxValueBytes;
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
    return reconnects;
  }

  /**
   * Closes the connection. Idempotent, thread-safe, and never blocks on a call in progress: that
   * call, even one waiting to reconnect, ends promptly with {@link Status#IO_ERROR}, and every
   * later call throws the same.
   */
  @Override
  public void close() {
    closed = true;
    closing.countDown();
    closeQuietly(live);
    if (timer != null) {
      timer.stop();
    }
    queueLock.lock();
    try {
      queueChanged.signalAll(); // the reader and callers waiting for room see `closed`
    } finally {
      queueLock.unlock();
    }
  }

  @Override
  public String toString() {
    return "KvClient[" + host + ":" + port + ", session " + Long.toHexString(sessionId) + "]";
  }

  private Status write(int key, byte[] value, boolean overwrite) {
    Objects.requireNonNull(value, "value");
    int max = maxValueBytes;
    if (value.length > max) {
      throw new KvRejectedException(Status.TOO_LARGE, "value of " + value.length
          + " bytes exceeds the server's maximum of " + max);
    }
    return call(Opcode.PUT, key, id -> {
      sendPut(key, id, overwrite, value);
      Status result = readResult(Opcode.PUT, key, id);
      if (overwrite && result == Status.KEY_EXISTS) {
        // §6.4: an overwriting PUT is answered OK (or an error), never "nothing changed".
        throw protocolError("KEY_EXISTS is not an answer to an overwriting PUT");
      }
      return result;
    });
  }

  /** Caller holds {@link #lock}: sends a PUT request on the data connection. */
  private void sendPut(int key, long id, boolean overwrite, byte[] value) throws IOException {
    int n = Messages.putHeader(buf, key, id, overwrite, value.length);
    if (value.length <= SINGLE_WRITE_MAX_BYTES) {
      System.arraycopy(value, 0, buf, n, value.length);
      out.write(buf, 0, n + value.length);
    } else {
      out.write(buf, 0, n);
      for (int off = 0; off < value.length; off += TRANSFER_MAX_BYTES) {
        out.write(value, off, Math.min(TRANSFER_MAX_BYTES, value.length - off));
      }
    }
  }

  /**
   * One attempt of a call: sends its request with {@code requestId} on the data connection ({@link
   * #out}, {@link #in}) and reads the answer. Runs under {@link #lock}. Throws {@link IOException}
   * when the attempt may be retried (the connection broke, or {@link Unavailable}), {@link
   * KvException} when it must not be.
   */
  private interface Attempt<T> {
    T run(long requestId) throws IOException;
  }

  /**
   * Runs one call under the lock with a new request id, retried per PROTOCOL.md §12, within the
   * call timeout if there is one: {@link #timer} is armed with the call's id and deadline while it
   * holds the lock, and {@link #expire} closes its socket if the deadline passes.
   */
  private <T> T call(Opcode op, int key, Attempt<T> attempt) {
    long deadline = callDeadline();
    lockWithin(op, key, deadline);
    long reconnectsBefore = reconnects;
    try {
      if (closed) {
        throw closedError(null);
      }
      if (broken != null) {
        throw broken.again();
      }
      if (reader != null) {
        awaitInFlightBelow(1, op, key, deadline); // one stream: asynchronous requests go first
        dropIfClosedByReader(op, key);
      }
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
    } finally {
      boolean reconnected = reconnects != reconnectsBefore;
      lock.unlock();
      if (reconnected) {
        notifyReconnect();
      }
    }
  }

  /** Tells {@link #onReconnect}, holding no lock; what it throws goes to the uncaught handler. */
  private void notifyReconnect() {
    if (onReconnect == null) {
      return;
    }
    try {
      onReconnect.accept(this);
    } catch (RuntimeException e) {
      Thread t = Thread.currentThread();
      t.getUncaughtExceptionHandler().uncaughtException(t, e);
    }
  }

  /** The deadline of a call starting now ({@link System#nanoTime} scale), or 0 for none. */
  private long callDeadline() {
    if (callTimeoutNanos == 0) {
      return 0;
    }
    long deadline = System.nanoTime() + callTimeoutNanos;
    return deadline == 0 ? 1 : deadline; // 0 means none
  }

  /**
   * Takes {@link #lock}; with a call deadline ({@code deadline != 0}) waits for it only until then.
   *
   * @throws KvTimeoutException if the deadline passes first
   * @throws KvException if the thread is interrupted while it waits
   */
  private void lockWithin(Opcode op, int key, long deadline) {
    if (deadline == 0) {
      lock.lock();
      return;
    }
    try {
      if (!lock.tryLock(deadline - System.nanoTime(), TimeUnit.NANOSECONDS)) {
        throw timeoutError(op, key, "this client's other calls", null);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new KvException(Status.IO_ERROR, what(op, key) + " interrupted", e);
    }
  }

  /**
   * The timer thread's action when the call or request with id {@code id} is still running at
   * its deadline: records the id and closes the socket it is blocked on, which ends its connect,
   * read or write with an IOException that {@link #withRetries} reports as a timeout. Holds no
   * lock (the call holds the client's).
   */
  private void expire(long id) {
    expiredId = id;
    Socket s = live;
    queueLock.lock();
    try {
      Pending head = inFlight.peekFirst();
      if (head != null && head.id == id) {
        s = head.socket; // an asynchronous request's: the connection it was sent on
      }
    } finally {
      queueLock.unlock();
    }
    closeQuietly(s);
  }

  /**
   * Sends one asynchronous request under {@link #lock} and queues it for the {@link #reader}; every
   * failure is the future's. With no data connection it first waits until the requests of the
   * broken one have been failed and then connects (in the calling thread, retried as a call's
   * set-up is); with {@link #MAX_IN_FLIGHT} requests in flight it waits for room.
   */
  private <T> CompletableFuture<T> submit(Opcode op, int key, boolean overwrite, byte[] value) {
    CompletableFuture<T> future = new CompletableFuture<>();
    long deadline = callDeadline();
    int max = maxValueBytes;
    if (value != null && value.length > max) {
      future.completeExceptionally(new KvRejectedException(Status.TOO_LARGE, "value of "
          + value.length + " bytes exceeds the server's maximum of " + max));
      return future;
    }
    try {
      lockWithin(op, key, deadline);
    } catch (KvException e) {
      future.completeExceptionally(e);
      return future;
    }
    long reconnectsBefore = reconnects;
    try {
      if (closed) {
        throw closedError(null);
      }
      if (broken != null) {
        throw broken.again();
      }
      if (reader == null) {
        reader = new Thread(this::readAnswers, "psiskv-async-reader");
        reader.setDaemon(true);
        reader.start();
      }
      dropIfClosedByReader(op, key);
      if (socket == null) {
        awaitInFlightBelow(1, op, key, deadline);
        long setupId = nextRequestId++; // names the set-up for the timer only
        if (timer != null) {
          timer.arm(setupId, deadline);
        }
        try {
          withRetries(op, key, setupId, id -> null, deadline);
        } finally {
          if (timer != null) {
            timer.disarm();
          }
        }
      }
      awaitInFlightBelow(MAX_IN_FLIGHT, op, key, deadline);
      long id = nextRequestId++;
      int capacity = maxValueBytes;
      Pending p = new Pending(op, key, id, overwrite, capacity, socket, in, deadline, future);
      queueLock.lock();
      try {
        // Queued before it is sent: its answer may arrive before the write returns.
        inFlight.addLast(p);
        if (inFlight.size() == 1 && timer != null) {
          timer.arm(id, deadline);
        }
        queueChanged.signalAll();
      } finally {
        queueLock.unlock();
      }
      try {
        if (op == Opcode.PUT) {
          sendPut(key, id, overwrite, value);
        } else if (op == Opcode.GET) {
          out.write(buf, 0, Messages.get(buf, key, id, capacity));
        } else {
          out.write(buf, 0, Messages.delete(buf, key, id));
        }
      } catch (IOException e) {
        // The reader, reading the closed connection, fails this request and those before it.
        disconnect();
      }
    } catch (KvException e) {
      future.completeExceptionally(e);
    } finally {
      boolean reconnected = reconnects != reconnectsBefore;
      lock.unlock();
      if (reconnected) {
        notifyReconnect();
      }
    }
    return future;
  }

  /**
   * Caller holds {@link #lock}: waits until fewer than {@code n} asynchronous requests are in
   * flight, until the call's deadline ({@code deadline != 0}) at most.
   *
   * @throws KvTimeoutException if the deadline passes first
   * @throws KvException if the client is closed or the thread is interrupted meanwhile
   * @throws IllegalStateException if it would wait on the reader thread (for itself)
   */
  private void awaitInFlightBelow(int n, Opcode op, int key, long deadline) {
    queueLock.lock();
    try {
      while (inFlight.size() >= n) {
        if (closed) {
          throw closedError(null);
        }
        if (Thread.currentThread() == reader) {
          // A stage run on the reader (a direct asyncExecutor) would wait for itself.
          throw new IllegalStateException("a call on the psiskv reader thread cannot wait for"
              + " answers: give the client an asyncExecutor that runs stages elsewhere");
        }
        if (deadline == 0) {
          queueChanged.await();
        } else {
          long left = deadline - System.nanoTime();
          if (left <= 0) {
            throw timeoutError(op, key, "earlier asynchronous requests' answers", null);
          }
          queueChanged.awaitNanos(left);
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new KvException(Status.IO_ERROR, what(op, key) + " interrupted", e);
    } finally {
      queueLock.unlock();
    }
  }

  /**
   * Caller holds {@link #lock}: forgets a data connection that the {@link #reader} closed after a
   * failure, so the caller connects again; with reconnection disabled that failure is final.
   */
  private void dropIfClosedByReader(Opcode op, int key) {
    if (socket != null && socket.isClosed()) {
      disconnect();
      if (retryTimeoutNanos == 0) {
        throw notRetried(new KvConnectionException(Status.IO_ERROR, what(op, key)
            + " failed (reconnection is disabled): the connection broke under asynchronous"
            + " requests"));
      }
    }
  }

  /**
   * The {@link #reader} thread: reads the answers of {@link #inFlight} in order until the client
   * is closed. An answer that fails its request with the stream still in step (an error status,
   * UNAVAILABLE) fails that request only; anything else (the connection broke or timed out, a
   * protocol violation) closes the connection and fails every request sent on it.
   */
  private void readAnswers() {
    Header h = new Header();
    while (true) {
      Pending p;
      queueLock.lock();
      try {
        while (inFlight.isEmpty()) {
          if (closed) {
            return;
          }
          queueChanged.awaitUninterruptibly();
        }
        p = inFlight.peekFirst();
      } finally {
        queueLock.unlock();
      }
      Object result = null;
      KvException failure = null;
      boolean inStep = true;
      try {
        result = readAnswer(p, h);
      } catch (Unavailable e) {
        inStep = false; // the server closes the connection after it (§12.1)
        failure = new KvConnectionException(Status.UNAVAILABLE,
            what(p.op, p.key) + " failed: " + e.getMessage(), e);
      } catch (IOException e) {
        inStep = false;
        failure = closed ? closedError(e) : expiredId == p.id
            ? timeoutError(p.op, p.key, "its answer", e)
            : new KvConnectionException(Status.IO_ERROR, what(p.op, p.key)
                + " failed: the connection broke before its answer (asynchronous requests are"
                + " not resent): " + describe(e), e);
      } catch (KvRejectedException e) {
        inStep = !p.valueUnread; // else the answer was read to its end
        failure = e;
      } catch (KvException e) {
        inStep = false;
        failure = e;
      } catch (RuntimeException | Error e) {
        inStep = false;
        failure = new KvException(Status.IO_ERROR, what(p.op, p.key) + " failed: " + e, e);
      }
      ArrayDeque<Pending> dropped = new ArrayDeque<>();
      queueLock.lock();
      try {
        inFlight.pollFirst();
        if (!inStep) {
          closeQuietly(p.socket);
          for (java.util.Iterator<Pending> it = inFlight.iterator(); it.hasNext(); ) {
            Pending q = it.next();
            if (q.socket == p.socket) {
              dropped.add(q);
              it.remove();
            }
          }
        }
        Pending next = inFlight.peekFirst();
        if (timer != null) {
          if (next != null) {
            timer.arm(next.id, next.deadline);
          } else {
            timer.disarm();
          }
        }
        queueChanged.signalAll();
      } finally {
        queueLock.unlock();
      }
      complete(p, result, failure);
      for (Pending q : dropped) {
        complete(q, null, closed ? closedError(failure) : new KvConnectionException(
            Status.IO_ERROR, what(q.op, q.key) + " failed: the connection was dropped before its"
                + " answer, after " + what(p.op, p.key) + " failed: " + failure.getMessage(),
            failure));
      }
    }
  }

  /**
   * Reader thread: reads and checks the answer to {@code p}, the oldest request in flight; returns
   * its result as the future wants it. Throws as {@link #readResponse} does.
   */
  private static Object readAnswer(Pending p, Header h) throws IOException {
    ResponseReader rin = p.in;
    readResponse(rin, h, p.op, p.key, p.id, true);
    Status status = Status.of(h.flagsOrStatus);
    switch (p.op) {
      case PUT:
        if (p.overwrite && status == Status.KEY_EXISTS) {
          throw protocolError("KEY_EXISTS is not an answer to an overwriting PUT");
        }
        return p.overwrite ? null : status == Status.OK;
      case DELETE:
        return status == Status.OK;
      default: // GET
        if (status == Status.NOT_FOUND) {
          return Optional.empty();
        }
        int stored = Header.getU32(rin.bytes(), rin.take(GET_RESPONSE_PREFIX_BYTES));
        String mismatch = Rules.checkGetOkBody(h.bodyLength, p.capacity, stored);
        if (mismatch == null && stored < 0) {
          mismatch = "GET stored length " + Integer.toUnsignedString(stored) + " exceeds any value";
        }
        if (mismatch != null) {
          throw protocolError(mismatch);
        }
        if (stored > p.capacity) {
          p.valueUnread = true; // its first `capacity` bytes: the stream is not in step
          throw new KvRejectedException(Status.TOO_LARGE, "the value of key "
              + Integer.toUnsignedString(p.key) + " has " + stored
              + " bytes, more than the server's maximum of " + p.capacity);
        }
        return Optional.of(rin.readValue(stored));
    }
  }

  /** Completes {@code p}'s future through {@link #asyncExecutor}, or here if it refuses. */
  private void complete(Pending p, Object result, KvException failure) {
    @SuppressWarnings("unchecked")
    CompletableFuture<Object> f = (CompletableFuture<Object>) p.future;
    Runnable r =
        failure == null ? () -> f.complete(result) : () -> f.completeExceptionally(failure);
    try {
      asyncExecutor.execute(r);
    } catch (RuntimeException refused) {
      r.run();
    }
  }

  /** Opens the first connection and session (set-up only), retried per {@link Builder#connect}. */
  private void open() {
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
        if (socket == null) {
          establish();
        }
        return attempt == null ? null : attempt.run(requestId);
      } catch (ClosedByInterruptException e) {
        // This thread was interrupted: its caller wants it to stop, so the call ends here.
        disconnect();
        throw closed ? closedError(e) : notRetried(new KvException(Status.IO_ERROR,
            what(op, key) + " interrupted", e));
      } catch (IOException e) {
        disconnect();
        if (closed) {
          throw closedError(e);
        }
        if (deadline != 0 && (expiredId == requestId || System.nanoTime() - deadline >= 0)) {
          throw notRetried(timeoutError(op, key, "its answer", e));
        }
        if (attempt == null && attempts == 1 && e instanceof FrontUnreachable) {
          // connect() fails fast on a dead address, like kv_connect (see Builder.connect).
          throw new KvConnectionException(Status.IO_ERROR,
              "cannot reach the psiskv Front Server at " + host + ":" + port + ": "
              + e.getCause(), e);
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
              + " attempts to reach psiskv at " + host + ":" + port + "; last cause: "
              + describe(e), e);
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
        throw closed ? closedError(e) : notRetried(e);
      } catch (RuntimeException | Error e) {
        disconnect();
        throw e;
      }
    }
  }

  /**
   * Caller holds {@link #lock} and has no data connection: HELLO at the Front Server, then
   * SESSION at the Data Server it names, presenting {@link #sessionId} (0 the first time, then this
   * client's id: a resume, §12.2). On success the connection is {@link #socket}.
   *
   * @throws FrontUnreachable if the TCP connection to the Front Server cannot be made
   * @throws Unavailable if a server answers UNAVAILABLE
   * @throws IOException if a connection cannot be made or breaks
   * @throws KvException on any other error status or a protocol violation
   */
  private void establish() throws IOException {
    InetSocketAddress dataAddress;
    Socket front;
    try {
      front = openLive(new InetSocketAddress(host, port));
    } catch (ClosedByInterruptException e) {
      throw e; // not the Front Server's fault: withRetries ends the call
    } catch (IOException e) {
      throw new FrontUnreachable(e);
    }
    try {
      long id = nextRequestId++;
      front.getOutputStream().write(buf, 0, Messages.hello(buf, id));
      ResponseReader frontIn = new ResponseReader(front.getInputStream(), RECEIVE_BUFFER_BYTES);
      readResponse(frontIn, header, Opcode.HELLO, 0, id);
      int at = frontIn.take(HELLO_RESPONSE_BODY_BYTES);
      expectEnd(frontIn, Opcode.HELLO);
      int ipv4 = Header.getU32(frontIn.bytes(), at);
      int dataPort = Header.getU16(frontIn.bytes(), at + 4);
      // §6.1: 0.0.0.0 means the host this client reached the Front Server at.
      InetAddress dataHost =
          ipv4 == 0 ? front.getInetAddress() : InetAddress.getByAddress(toBytes(ipv4));
      dataAddress = new InetSocketAddress(dataHost, dataPort);
    } finally {
      closeQuietly(front);
    }
    Socket data = openLive(dataAddress);
    try {
      long id = nextRequestId++;
      long presented = sessionId;
      OutputStream dataOut = data.getOutputStream();
      ResponseReader dataIn = new ResponseReader(data.getInputStream(), RECEIVE_BUFFER_BYTES);
      dataOut.write(buf, 0, Messages.session(buf, id, presented, sessionSecret));
      readResponse(dataIn, header, Opcode.SESSION, 0, id);
      int at = dataIn.take(SESSION_RESPONSE_BODY_BYTES);
      expectEnd(dataIn, Opcode.SESSION);
      long granted = Header.getU64(dataIn.bytes(), at);
      byte[] secret = Messages.sessionSecret(dataIn.bytes(), at);
      int max = Messages.sessionMaxValueBytes(dataIn.bytes(), at);
      boolean resumed = presented != 0;
      if (granted == 0 || (resumed && (granted != presented
          || !java.util.Arrays.equals(secret, sessionSecret))) || max < 0) {
        // §6.2, §12.6: a resumed session keeps its id and secret, even one the server forgot.
        throw protocolError("SESSION " + Long.toHexString(presented) + " answered session "
            + Long.toHexString(granted) + " with maximum " + Integer.toUnsignedString(max)
            + (resumed ? " and another secret" : ""));
      }
      data.setSoTimeout(0);
      if (resumed) {
        reconnects++; // only this thread writes it, under the lock
      }
      sessionId = granted;
      sessionSecret = secret;
      maxValueBytes = max;
      socket = data;
      in = dataIn;
      out = dataOut;
    } catch (IOException | RuntimeException e) {
      closeQuietly(data);
      throw e;
    }
  }

  /** Caller holds {@link #lock}: forgets the data connection, closing it. */
  private void disconnect() {
    closeQuietly(socket);
    socket = null;
    in = null;
    out = null;
  }

  /**
   * Caller holds {@link #lock}: a socket connected to {@code address} with the set-up timeouts,
   * published in {@link #live} before it connects so that {@link #close} can end the connect.
   *
   * <p>The socket is a {@link SocketChannel}'s, used through its {@link Socket} adaptor, because
   * that makes a blocking read one system call. A plain {@code Socket} turns its file descriptor
   * non-blocking at its first read with a timeout (the SESSION answer's) and keeps it so; each
   * later read of an answer that has not arrived yet is then a read that fails (EAGAIN), a poll
   * and a second read. A channel's adaptor returns to blocking mode after a timed read, so once
   * the timeout is 0 a read is one blocking read(2), and a write one write(2) (DESIGN.md §9 has
   * the figures). A channel does not cap a transfer as a plain socket does: see {@link
   * #TRANSFER_MAX_BYTES}.
   */
  private Socket openLive(InetSocketAddress address) throws IOException {
    Socket s = SocketChannel.open().socket();
    live = s;
    try {
      if (closed) {
        throw new SocketException("client is closed");
      }
      s.setTcpNoDelay(true);
      s.connect(address, connectTimeoutMillis);
      s.setSoTimeout(connectTimeoutMillis);
      return s;
    } catch (IOException | RuntimeException e) {
      closeQuietly(s);
      throw e;
    }
  }

  /** Caller holds {@link #lock}: waits {@code millis}, or less if {@link #close} comes first. */
  private void pause(long millis) {
    try {
      if (closing.await(millis, TimeUnit.MILLISECONDS)) {
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

  /** Names a call in an error message (built only on failure: calls allocate no strings). */
  private static String what(Opcode op, int key) {
    return op == null ? "connect" : op + " of key " + Integer.toUnsignedString(key);
  }

  /** Our own retryable failures by their message; the JDK's with their class name. */
  private static String describe(IOException e) {
    boolean ours = e instanceof Unavailable || e instanceof FrontUnreachable;
    return ours ? e.getMessage() : e.toString();
  }

  private static KvException closedError(Throwable cause) {
    return new KvConnectionException(Status.IO_ERROR, "client is closed", cause);
  }

  private KvTimeoutException timeoutError(Opcode op, int key, String waitingFor, Throwable cause) {
    return new KvTimeoutException(what(op, key) + " timed out after "
        + TimeUnit.NANOSECONDS.toMillis(callTimeoutNanos) + " ms waiting for " + waitingFor, cause);
  }

  private static KvException protocolError(String mismatch) {
    return new KvException(Status.IO_ERROR, "protocol error: " + mismatch);
  }

  /**
   * Reads a response header; returns OK, KEY_EXISTS or NOT_FOUND (with the body still unread), or
   * throws for an error status. Caller holds {@link #lock}.
   */
  private Status readResult(Opcode op, int key, long id) throws IOException {
    readResponse(in, header, op, key, id);
    return Status.of(header.flagsOrStatus);
  }

  /** Reads the stored-length prefix of a GET OK body and checks the body length against it. */
  private int readStoredLength(int capacity) throws IOException {
    int stored = Header.getU32(in.bytes(), in.take(GET_RESPONSE_PREFIX_BYTES));
    String mismatch = Rules.checkGetOkBody(header.bodyLength, capacity, stored);
    if (mismatch == null && stored < 0) {
      mismatch = "GET stored length " + Integer.toUnsignedString(stored) + " exceeds any value";
    }
    if (mismatch != null) {
      throw protocolError(mismatch);
    }
    return stored;
  }

  /**
   * Reads and checks a response header (PROTOCOL.md §8), and for a response without a body that
   * nothing follows it ({@link #expectEnd}). Returns for a result status, with the body unread;
   * throws {@link Unavailable} for UNAVAILABLE (retried), {@link KvException} for any other error
   * status or a protocol violation (not retried), {@link IOException} if the connection breaks.
   */
  private static void readResponse(ResponseReader in, Header h, Opcode op, int key, long id)
      throws IOException {
    readResponse(in, h, op, key, id, false);
  }

  /**
   * {@link #readResponse(ResponseReader, Header, Opcode, int, long)}; {@code pipelined}: more
   * requests may be in flight, so bytes after the response are the next one's, not unasked.
   */
  private static void readResponse(ResponseReader in, Header h, Opcode op, int key, long id,
      boolean pipelined) throws IOException {
    h.decode(in.bytes(), in.take(HEADER_BYTES));
    String mismatch = Rules.checkResponse(h, op, key, id);
    if (mismatch != null) {
      throw protocolError(mismatch);
    }
    if (h.bodyLength == 0 && !pipelined) {
      expectEnd(in, op);
    }
    Status status = Status.of(h.flagsOrStatus);
    if (status == Status.UNAVAILABLE) {
      throw new Unavailable(op + " answered " + status + ": " + status.message());
    }
    if (Rules.isError(status)) {
      throw new KvRejectedException(status, op + " failed: " + status.message());
    }
  }

  /**
   * Called once a response has been read to its end: nothing may follow it in the receive buffer.
   * A client with one request in flight hears nothing it did not ask for (PROTOCOL.md §2), so a
   * byte there is a protocol violation, and the connection is dropped as for any other. Bytes that
   * come after a response in a later segment are not in the buffer yet; they are read as the start
   * of the next response, whose header then does not match.
   */
  private static void expectEnd(ResponseReader in, Opcode op) {
    if (in.unread() != 0) {
      throw protocolError(op + " response is followed by " + in.unread()
          + " bytes the client did not ask for");
    }
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

  private static byte[] toBytes(int ipv4) {
    return new byte[] {(byte) (ipv4 >>> 24), (byte) (ipv4 >>> 16), (byte) (ipv4 >>> 8), (byte) ipv4};
  }

  private static void closeQuietly(Socket s) {
    if (s != null) {
      try {
        s.close();
      } catch (IOException ignored) {
        // Nothing to do: the socket is unusable either way.
      }
    }
  }

  /** An asynchronous request sent and not yet answered, with the connection it was sent on. */
  private static final class Pending {
    final Opcode op;
    final int key;
    final long id;
    final boolean overwrite;
    /** GET: the capacity sent. */
    final int capacity;
    final Socket socket;
    final ResponseReader in;
    /** The call timeout's deadline, or 0. */
    final long deadline;
    final CompletableFuture<?> future;
    /** Reader thread only: its answer was refused with bytes of it still unread. */
    boolean valueUnread;

    Pending(Opcode op, int key, long id, boolean overwrite, int capacity, Socket socket,
        ResponseReader in, long deadline, CompletableFuture<?> future) {
      this.op = op;
      this.key = key;
      this.id = id;
      this.overwrite = overwrite;
      this.capacity = capacity;
      this.socket = socket;
      this.in = in;
      this.deadline = deadline;
      this.future = future;
    }
  }

  /** The server answered UNAVAILABLE (PROTOCOL.md §12.1): retried like a broken connection. */
  private static final class Unavailable extends IOException {
    private static final long serialVersionUID = 1L;

    Unavailable(String message) {
      super(message);
    }
  }

  /** The TCP connection to the Front Server could not be made; {@link #open} fails fast on it. */
  private static final class FrontUnreachable extends IOException {
    private static final long serialVersionUID = 1L;

    FrontUnreachable(IOException cause) {
      super("cannot reach the Front Server: " + cause, cause);
    }
  }
}
