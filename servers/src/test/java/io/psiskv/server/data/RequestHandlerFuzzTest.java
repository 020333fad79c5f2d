package io.psiskv.server.data;

import static io.psiskv.protocol.Protocol.FLAG_OVERWRITE;
import static io.psiskv.protocol.Protocol.GET_REQUEST_BODY_BYTES;
import static io.psiskv.protocol.Protocol.GET_RESPONSE_PREFIX_BYTES;
import static io.psiskv.protocol.Protocol.HEADER_BYTES;
import static io.psiskv.protocol.Protocol.OFF_BODY_LENGTH;
import static io.psiskv.protocol.Protocol.OFF_FLAGS_OR_STATUS;
import static io.psiskv.protocol.Protocol.OFF_KEY;
import static io.psiskv.protocol.Protocol.OFF_MAGIC;
import static io.psiskv.protocol.Protocol.OFF_OPCODE;
import static io.psiskv.protocol.Protocol.OFF_REQUEST_ID;
import static io.psiskv.protocol.Protocol.OFF_VERSION;
import static io.psiskv.protocol.Protocol.REQUEST_MAGIC;
import static io.psiskv.protocol.Protocol.RESPONSE_MAGIC;
import static io.psiskv.protocol.Protocol.SESSION_REQUEST_BODY_BYTES;
import static io.psiskv.protocol.Protocol.SESSION_RESPONSE_BODY_BYTES;
import static io.psiskv.protocol.Protocol.VERSION;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.psiskv.protocol.Header;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Rules;
import io.psiskv.protocol.StatsBody;
import io.psiskv.protocol.Status;
import io.psiskv.server.ServerConfig;
import io.psiskv.server.ServerLogProblems;
import io.psiskv.server.backup.BackupLog;
import io.psiskv.server.backup.BackupLogTestSupport;
import io.psiskv.server.backup.FsyncPolicy;
import io.psiskv.server.store.Engine;
import io.psiskv.server.store.Sessions;
import io.psiskv.server.store.Store;
import io.psiskv.server.testkit.GoldenVectors;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.management.ClassLoadingMXBean;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.channels.GatheringByteChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Named;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Coverage-guided fuzzing (Jazzer) of the Data Server's protocol: a {@link RequestHandler} with a
 * real {@link Engine} (store, session table, backup log) is fed an arbitrary byte stream split at
 * arbitrary points, the way a transport feeds it, and its answers are written out as a transport
 * writes them.
 *
 * <p><b>Invariants</b>, checked after every feed:
 *
 * <ul>
 *   <li>no exception escapes the handler, the reply queue or the engine;
 *   <li>the output is a sequence of well-formed answers (PROTOCOL.md §3.1, §5): response magic and
 *       version, a status from the table, the body length its status and opcode imply, and the
 *       {@code k}-th answer echoes the opcode byte, key and id of the {@code k}-th request of the
 *       stream (requests answered in order, §2);
 *   <li>every answer is the one a reference model of §3.2, §4, §6 and §12.5 predicts, status and
 *       body: the MUST rules of each opcode (BAD_REQUEST, UNKNOWN_OPCODE, UNSUPPORTED_VERSION,
 *       TOO_LARGE), NO_SESSION before SESSION, a second SESSION refused; SESSION's id and secret
 *       (new, resumed, made anew, a half-zero pair refused, the wrong secret for a session another
 *       connection holds FORBIDDEN and a resume with the right one taking it over from that
 *       connection); a store with KEY_EXISTS and NOT_FOUND; GET's stored length and {@code
 *       min(capacity, stored)} value bytes; and exactly once per session (a retry that repeats the
 *       last write exactly answers its first result unchanged; the same id for another request,
 *       or a lower id as u64, is BAD_REQUEST); and the store holds, key by key, what the model
 *       does: its contents change only through writes answered OK. The healthy log and the
 *       roomy session table leave SERVER_ERROR and UNAVAILABLE no cause, so either fails;
 *   <li>after an answer that PROTOCOL.md §8 ends the connection with (an error that is not the
 *       server's own state: neither SERVER_ERROR nor UNAVAILABLE) the handler asks to close and
 *       consumes nothing past that request, then or in any later feed; every complete request
 *       before it is answered (after NEED_INPUT nothing complete is left waiting), and a request
 *       is dated as partial exactly while bytes of it have arrived;
 *   <li>memory: a PUT value in arrival holds budget for at most {@code max(16 KiB, 2 x arrived)}
 *       and never more than its length, none once answered or closed; NEED_BUDGET comes only while
 *       another body holds the budget; and the thread allocates at most a constant plus 16 bytes
 *       per byte of input and output, whatever lengths the requests claim (judged for the inputs
 *       that load no class: Jazzer instruments a class in the thread that loads it).
 * </ul>
 *
 * <p><b>Input</b>:
 *
 * <pre>
 *   input   = control:u8 cut:u8{control &amp; 7} stream
 *   control = bits 0-2: how many cuts; bit 3: an older body holds the whole body budget (released
 *             when the handler asks for budget); bit 4: the peer takes 5 answer bytes per write
 *   cut     = a feed of cut + 1 more bytes; the cuts repeat in turn; no cut: the stream at once
 * </pre>
 *
 * <p><b>Each input</b> gets a session table of its own, in which another connection holds the
 * session of the golden {@code session_request_resume} vector (so that resuming it, with its
 * secret or without, means something); the store, emptied after each input, and the backup log
 * are shared.
 *
 * <p><b>Seeds</b> are made at test time from the golden vectors (PROTOCOL.md §10): the request
 * vectors as a conversation after the new-session vector, whole, a byte at a time and in 5-byte
 * pieces; the conversation after the resume vector; a PUT, its retry and a retry with another
 * value; and each request vector alone, before and after a SESSION.
 *
 * <p>Runs in the fuzz-request-handler execution of servers/pom.xml; README "Fuzzing" says how to
 * fuzz for longer.
 */
class RequestHandlerFuzzTest {
  private static final int MAX_VALUE_BYTES = Protocol.DEFAULT_MAX_VALUE_BYTES;
  private static final long BODY_BUDGET_BYTES = 1 << 20;
  /** What one input may allocate in this thread beyond 16 bytes per byte in and out. */
  private static final long ALLOCATION_BASE_BYTES = 4L << 20;
  private static final long ALLOCATION_PER_BYTE = 16;
  /** The peer's window with control bit 4: answers leave in pieces. */
  private static final int SMALL_WRITE_BYTES = 5;
  /** The shared backup log is replaced past this size (looked at every 1024 inputs). */
  private static final long LOG_ROTATE_BYTES = 64L << 20;
  /** Room for the held session and the input's own, and more: never full (no UNAVAILABLE). */
  private static final int MAX_SESSIONS = 16;

  private static final com.sun.management.ThreadMXBean THREADS =
      (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
  private static final ClassLoadingMXBean CLASSES = ManagementFactory.getClassLoadingMXBean();
  /** A rejected request logs a line: counted, not printed, or every input prints one. */
  private static final ServerLogProblems PROBLEMS = new ServerLogProblems(line -> {},
      ServerConfig.LOG_SUMMARY_INTERVAL_MILLIS, ServerConfig.LOG_PROBLEM_LINES_PER_INTERVAL);

  /** One store and log for every input: the store is emptied after each, the log only grows. */
  private static Path dir;
  private static BackupLog log;
  private static final Store STORE = new Store();
  private static final ByteArrayPool POOL =
      new ByteArrayPool(ServerConfig.CONNECTION_BUFFER_BYTES, 4);
  private static long inputs;

  @BeforeAll
  static void openLog() throws IOException {
    // tmpfs when there is one: the log's creation forces the file and the directory.
    Path shm = Path.of("/dev/shm");
    dir = Files.isDirectory(shm) && Files.isWritable(shm)
        ? Files.createTempDirectory(shm, "psiskv-fuzz")
        : Files.createTempDirectory("psiskv-fuzz");
    log = openFreshLog();
    // Warm-up: the first inputs load classes and seed the session ids' random numbers, which is
    // not what any input allocates. A seed that fails fails again as its own test.
    for (Arguments seed : goldenSeeds().toList()) {
      byte[] input = (byte[]) ((Named<?>) seed.get()[0]).getPayload();
      try {
        new RequestHandlerFuzzTest().requestStreams(input);
      } catch (AssertionError | RuntimeException ignored) {
        // Reported by the seed's own invocation.
      }
    }
  }

  @AfterAll
  static void closeLog() throws IOException {
    if (log == null) {
      return;
    }
    log.close();
    Files.deleteIfExists(dir.resolve(BackupLog.FILE_NAME));
    Files.deleteIfExists(dir);
  }

  private static BackupLog openFreshLog() throws IOException {
    Files.deleteIfExists(dir.resolve(BackupLog.FILE_NAME));
    return BackupLog.open(dir, FsyncPolicy.NO, new BackupLogTestSupport.Model(),
        BackupLog.OpenOptions.defaults());
  }

  @MethodSource("goldenSeeds")
  @FuzzTest(maxDuration = "20s")
  void requestStreams(byte[] input) throws IOException {
    if (++inputs % 1024 == 0 && Files.size(dir.resolve(BackupLog.FILE_NAME)) > LOG_ROTATE_BYTES) {
      log.close();
      log = openFreshLog();
    }
    Connection c = new Connection(input);
    try {
      c.run();
      c.finish();
    } finally {
      c.release();
    }
  }

  // ---- One input: a connection fed in pieces, checked after every feed.

  private static final class Connection {
    private final byte[] stream;
    private final int[] cuts;
    private final BodyBudget budget = new BodyBudget(BODY_BUDGET_BYTES);
    private final RequestHandler handler;
    private final Engine engine;
    private final Sink out = new Sink();
    private final ByteBuffer in;
    private long hogTicket;
    private long hogBytes;
    private long now = 1;

    /** The reference model. */
    private final Map<Integer, byte[]> model = new HashMap<>();
    private final Set<Integer> touched = new TreeSet<>(Integer::compareUnsigned);
    private boolean sessionOpen;
    /** A write was answered since the store was last compared with the model. */
    private boolean wrote;
    /** The session's last write (§12.5), null before the first. */
    private Write lastWrite;
    /** Close requests: to the connection that holds the held session, and to this one. */
    private int heldCloseRequests;
    private int ownCloseRequests;

    /** Requests framed so far (start offsets), and the answers checked so far. */
    private final List<Integer> starts = new ArrayList<>(List.of(0));
    private int answered;
    private int outChecked;
    /** Index of the request answered with a closing status, or -1. */
    private int closedAt = -1;
    private int closedConsumed = -1;

    Connection(byte[] input) {
      int control = input.length == 0 ? 0 : input[0] & 0xFF;
      int n = Math.min(control & 7, Math.max(0, input.length - 1));
      cuts = new int[n];
      for (int i = 0; i < n; i++) {
        cuts[i] = (input[1 + i] & 0xFF) + 1;
      }
      stream = Arrays.copyOfRange(input, Math.min(input.length, 1 + n), input.length);
      out.small = (control & 0x10) != 0;
      Sessions sessions = new Sessions(MAX_SESSIONS);
      sessions.attach(HELD_ID, HELD_SECRET, () -> heldCloseRequests++, 0);
      engine = new Engine(STORE, sessions, log);
      handler = new RequestHandler(engine, MAX_VALUE_BYTES, budget, new ReplyQueue(POOL), "fuzz",
          PROBLEMS, () -> ownCloseRequests++, engine.stats().register());
      if ((control & 0x08) != 0) {
        hogTicket = budget.begin();
        hogBytes = BODY_BUDGET_BYTES;
        budget.tryGrow(hogTicket, hogBytes);
      }
      in = ByteBuffer.wrap(stream);
      in.limit(0);
    }

    void run() throws IOException {
      long classes = CLASSES.getTotalLoadedClassCount();
      long before = THREADS.getCurrentThreadAllocatedBytes();
      int available = 0;
      int turn = 0;
      do {
        available = cuts.length == 0 ? stream.length
            : Math.min(stream.length, available + cuts[turn++ % cuts.length]);
        in.limit(available);
        serve();
      } while (available < stream.length);
      long allocated = THREADS.getCurrentThreadAllocatedBytes() - before;
      long bound = ALLOCATION_BASE_BYTES + ALLOCATION_PER_BYTE * (stream.length + out.size);
      // Loading a class (Jazzer instruments it in this thread) is not the input's allocation.
      boolean judged = CLASSES.getTotalLoadedClassCount() == classes;
      check(!judged || allocated <= bound,
          "%d bytes in and %d out allocated %d bytes, more than %d", stream.length, out.size,
          allocated, bound);
    }

    /** Feeds what is available until the handler needs more input or closes, as a transport. */
    private void serve() throws IOException {
      for (int rounds = 0; ; rounds++) {
        check(rounds <= stream.length + 2, "the handler makes no progress");
        int consumedBefore = in.position();
        RequestHandler.Outcome o = handler.feed(in, now++);
        flush();
        checkAfterFeed(o, consumedBefore);
        if (o == RequestHandler.Outcome.OUTPUT_FULL) {
          continue;
        }
        if (o == RequestHandler.Outcome.NEED_BUDGET) {
          check(hogBytes > 0, "NEED_BUDGET with no other body in flight");
          budget.end(hogTicket, hogBytes); // The older body completes.
          hogBytes = 0;
          continue;
        }
        return;
      }
    }

    /** Commits what the answers wait for, settles them and writes them, as the event loop does. */
    private void flush() throws IOException {
      ReplyQueue replies = handler.replies();
      if (replies.isEmpty()) {
        return;
      }
      if (replies.needSeq() != 0) {
        engine.commit(true);
      }
      check(replies.settle(engine), "answers still wait for a committed record");
      check(replies.writeTo(out), "a blocking peer took only part of the answers");
    }

    /** The connection closes: no budget left held, the store holds what the model does. */
    void finish() {
      handler.close();
      check(budget.usedBytes() == hogBytes, "a closed connection left %d bytes of body budget",
          budget.usedBytes() - hogBytes);
      // Only a resume elsewhere closes a connection from outside, and there is none.
      check(ownCloseRequests == 0, "the connection was asked to close from outside");
      checkStore();
      for (int key : touched) {
        STORE.remove(key);
      }
      check(STORE.size() == 0, "the store holds %d keys no request touched", STORE.size());
    }

    /** Whatever happened: the handler closed and the shared store emptied for the next input. */
    void release() {
      handler.close();
      if (STORE.size() != 0) {
        List<Integer> keys = new ArrayList<>();
        STORE.forEach((key, value) -> keys.add(key));
        keys.forEach(STORE::remove);
      }
    }

    // ---- The checks.

    private void checkAfterFeed(RequestHandler.Outcome o, int consumedBefore) {
      int consumed = in.position();
      int available = in.limit();
      if (closedAt >= 0) {
        check(o == RequestHandler.Outcome.CLOSE && consumed == consumedBefore
            && outChecked == out.size, "the handler went on after closing: %s, consumed %d -> %d",
            o, consumedBefore, consumed);
      }
      frame(available);
      while (outChecked < out.size) {
        checkAnswer();
      }
      check(outChecked == out.size, "a partial answer was written");
      if (wrote) { // A feed serves all it can before its answers are read: compare after them.
        checkStore();
        wrote = false;
      }
      if (closedAt >= 0) {
        check(o == RequestHandler.Outcome.CLOSE && handler.isClosing(),
            "answered %s to request %d but asks for no close (%s)",
            statusOf(closedAt), closedAt, o);
        check(consumed <= end(closedAt), "consumed %d, past the end %d of the request closed on",
            consumed, end(closedAt));
        if (closedConsumed < 0) {
          closedConsumed = consumed;
        }
        check(consumed == closedConsumed, "consumed more after the close");
        return;
      }
      check(o != RequestHandler.Outcome.CLOSE && !handler.isClosing(),
          "%s with no answer that ends the connection", o);
      // Every request before the next unanswered one was consumed; nothing past that one was.
      check(consumed >= starts.get(answered) && consumed <= Math.min(available, end(answered)),
          "consumed %d, answered %d requests ending at %d", consumed, answered,
          starts.get(answered));
      boolean midBody = isPut(answered) && consumed >= starts.get(answered) + HEADER_BYTES
          && consumed < end(answered);
      if (o == RequestHandler.Outcome.NEED_INPUT) {
        check(end(answered) > available, "request %d is complete but unanswered", answered);
        boolean partial = available > consumed || midBody;
        check((handler.partialSinceNanos() != 0) == partial,
            "partial since %d with %d unconsumed bytes", handler.partialSinceNanos(),
            available - consumed);
        check((handler.describePartial(available - consumed) != null) == partial,
            "describePartial disagrees");
      }
      long ours = budget.usedBytes() - hogBytes;
      if (midBody) {
        long len = bodyLength(answered);
        long arrived = consumed - (starts.get(answered) + HEADER_BYTES);
        check(ours <= Math.min(len, Math.max(RequestHandler.BODY_INITIAL_BYTES, 2 * arrived)),
            "a value of %d bytes, %d arrived, holds %d bytes of budget", len, arrived, ours);
      } else {
        check(ours == 0, "%d bytes of budget held outside a value in arrival", ours);
      }
    }

    /** Frames the requests of the stream so far: each is a header and its body length. */
    private void frame(int available) {
      while (true) {
        int last = starts.size() - 1;
        int start = starts.get(last);
        if (start + HEADER_BYTES > available) {
          return;
        }
        long next = end(last);
        if (next > stream.length) {
          return;
        }
        starts.add((int) next);
      }
    }

    private long end(int request) {
      int start = starts.get(request);
      if (start + HEADER_BYTES > stream.length) {
        return Long.MAX_VALUE;
      }
      return start + HEADER_BYTES + bodyLength(request);
    }

    private long bodyLength(int request) {
      return Integer.toUnsignedLong(ByteBuffer.wrap(stream).getInt(starts.get(request)
          + OFF_BODY_LENGTH));
    }

    private boolean isPut(int request) {
      int start = starts.get(request);
      return start + HEADER_BYTES <= stream.length
          && (stream[start + OFF_OPCODE] & 0xFF) == Opcode.PUT.code();
    }

    private Status statusOf(int request) {
      return request < answered ? statusByRequest.get(request) : null;
    }

    private final List<Status> statusByRequest = new ArrayList<>();

    /** Checks the answer at {@code out[outChecked..)} against request {@code answered}. */
    private void checkAnswer() {
      int k = answered;
      check(closedAt < 0, "an answer after the answer to request %d, which ends the connection",
          closedAt);
      check(out.size - outChecked >= HEADER_BYTES, "an answer shorter than a header");
      ByteBuffer a = ByteBuffer.wrap(out.bytes, outChecked, out.size - outChecked).slice();
      long body = Integer.toUnsignedLong(a.getInt(OFF_BODY_LENGTH));
      check(HEADER_BYTES + body <= a.remaining(), "an answer of %d body bytes, %d written", body,
          a.remaining() - HEADER_BYTES);
      check(k < starts.size() && starts.get(k) + HEADER_BYTES <= in.limit(),
          "answer %d to a request whose header has not arrived", k);
      ByteBuffer r = ByteBuffer.wrap(stream, starts.get(k), stream.length - starts.get(k)).slice();
      Object what = new Object() { // Spelt out only for a failure.
        @Override
        public String toString() {
          return "answer " + hex(a, HEADER_BYTES + (int) Math.min(body, 16)) + " to request " + k
              + " " + hex(r, HEADER_BYTES + 8);
        }
      };
      check(a.get(OFF_MAGIC) == RESPONSE_MAGIC && a.get(OFF_VERSION) == VERSION, "%s", what);
      check(a.get(OFF_OPCODE) == r.get(OFF_OPCODE) && a.getInt(OFF_KEY) == r.getInt(OFF_KEY)
          && a.getLong(OFF_REQUEST_ID) == r.getLong(OFF_REQUEST_ID), "%s: not echoed", what);
      Status s = Status.of(a.get(OFF_FLAGS_OR_STATUS) & 0xFF);
      check(s != null && s != Status.IO_ERROR, "%s: not a status", what);
      check(!Rules.isError(s) || body == 0, "%s: an error with a body", what);
      Opcode op = Opcode.of(r.get(OFF_OPCODE));
      if (DATA_OPCODES.contains(op)) { // What a client accepts (§8), by the clients' own codec.
        Header h = new Header();
        h.decode(out.bytes, outChecked);
        String refused = Rules.checkResponse(h, op, r.getInt(OFF_KEY), r.getLong(OFF_REQUEST_ID));
        check(refused == null, "%s: a client refuses it: %s", what, refused);
      }
      expect(k, r, a, s, body, what);
      statusByRequest.add(s);
      answered++;
      outChecked += HEADER_BYTES + (int) body;
      if (closes(s)) {
        closedAt = k;
      }
    }

    /** The reference model: what request {@code r} must be answered, given the answers before. */
    private void expect(int k, ByteBuffer r, ByteBuffer a, Status s, long body, Object what) {
      int flags = r.get(OFF_FLAGS_OR_STATUS) & 0xFF;
      int key = r.getInt(OFF_KEY);
      long id = r.getLong(OFF_REQUEST_ID);
      long len = Integer.toUnsignedLong(r.getInt(OFF_BODY_LENGTH));
      if (r.get(OFF_MAGIC) != REQUEST_MAGIC) {
        check(s == Status.BAD_REQUEST, "%s: a bad magic is BAD_REQUEST (§3.3)", what);
        return;
      }
      if (r.get(OFF_VERSION) != VERSION) {
        check(s == Status.UNSUPPORTED_VERSION, "%s: §3.4", what);
        return;
      }
      Opcode op = Opcode.of(r.get(OFF_OPCODE));
      if (op == null) {
        check(s == Status.UNKNOWN_OPCODE, "%s: §4", what);
        return;
      }
      boolean ruleBroken;
      switch (op) {
        case PUT:
          if (flags != 0 && flags != FLAG_OVERWRITE) {
            ruleBroken = true;
          } else if (len > MAX_VALUE_BYTES) {
            check(s == Status.TOO_LARGE, "%s: §6.4 TOO_LARGE", what);
            return;
          } else {
            ruleBroken = false;
          }
          break;
        case GET:
          ruleBroken = flags != 0 || len != GET_REQUEST_BODY_BYTES;
          break;
        case DELETE:
          ruleBroken = flags != 0 || len != 0;
          break;
        case PING:
        case STATS:
          ruleBroken = flags != 0 || key != 0 || len != 0;
          break;
        case SESSION:
          ruleBroken = flags != 0 || key != 0 || len != SESSION_REQUEST_BODY_BYTES || sessionOpen;
          break;
        default: // HELLO and the control opcodes: not on a data connection (§4).
          ruleBroken = true;
      }
      if (ruleBroken) {
        check(s == Status.BAD_REQUEST, "%s: a broken rule (§4, §6) is BAD_REQUEST", what);
        return;
      }
      if (op == Opcode.PING) {
        check(s == Status.OK && body == 0, "%s: PING", what);
        return;
      }
      if (op == Opcode.STATS) { // §6.7: answered with or without a session, a valid body.
        check(s == Status.OK, "%s: STATS", what);
        StatsBody.decode(a.array(), a.arrayOffset() + HEADER_BYTES, (int) body);
        return;
      }
      if (op == Opcode.SESSION) {
        expectSession(r, a, s, body, what);
        return;
      }
      if (!sessionOpen) {
        check(s == Status.NO_SESSION, "%s: §6.2 NO_SESSION", what);
        return;
      }
      touched.add(key);
      if (op == Opcode.GET) {
        long capacity = Integer.toUnsignedLong(r.getInt(HEADER_BYTES));
        byte[] v = model.get(key);
        if (v == null) {
          check(s == Status.NOT_FOUND && body == 0, "%s: the key is absent", what);
          return;
        }
        long sent = Math.min(capacity, v.length);
        check(s == Status.OK && body == GET_RESPONSE_PREFIX_BYTES + sent
            && Integer.toUnsignedLong(a.getInt(HEADER_BYTES)) == v.length
            && Arrays.equals(out.bytes, outChecked + HEADER_BYTES + GET_RESPONSE_PREFIX_BYTES,
                outChecked + HEADER_BYTES + GET_RESPONSE_PREFIX_BYTES + (int) sent, v, 0,
                (int) sent), "%s: the key holds %d bytes", what, v.length);
        return;
      }
      // A write (§3.2, §12.5): once per session and id; a retry repeats its request exactly.
      int from = starts.get(k) + HEADER_BYTES;
      Write w = new Write(id, op == Opcode.DELETE ? -1 : flags, key,
          op == Opcode.DELETE ? null : Arrays.copyOfRange(stream, from, from + (int) len), null);
      Status expected;
      if (lastWrite != null && id == lastWrite.id) {
        expected = w.repeats(lastWrite) ? lastWrite.result : Status.BAD_REQUEST;
      } else if (lastWrite != null && Long.compareUnsigned(id, lastWrite.id) < 0) {
        expected = Status.BAD_REQUEST; // A stale duplicate.
      } else {
        boolean present = model.containsKey(key);
        if (op == Opcode.DELETE) {
          expected = present ? Status.OK : Status.NOT_FOUND;
          model.remove(key);
        } else {
          expected = present && flags != FLAG_OVERWRITE ? Status.KEY_EXISTS : Status.OK;
          if (expected == Status.OK) {
            model.put(key, w.value);
          }
        }
        // Recorded whatever it changed: a retry of a KEY_EXISTS is KEY_EXISTS again.
        lastWrite = new Write(id, w.flags, key, w.value, expected);
      }
      check(s == expected && body == 0, "%s: expected %s (last write %s)", what, expected,
          lastWrite);
      wrote = true;
    }

    /**
     * SESSION (§6.2) with a sound header, on a connection without one. Its body: zero id and
     * secret ask for a new session; one of them zero is BAD_REQUEST; the held session's id wants
     * its secret (else FORBIDDEN) and takes the session over from the connection holding it; any
     * other id is made anew with the secret presented.
     */
    private void expectSession(ByteBuffer r, ByteBuffer a, Status s, long body, Object what) {
      long requested = r.getLong(HEADER_BYTES);
      byte[] secret = new byte[Protocol.SESSION_SECRET_BYTES];
      r.get(HEADER_BYTES + 8, secret);
      boolean zeroSecret = Arrays.equals(secret, new byte[secret.length]);
      if ((requested == 0) != zeroSecret) {
        check(s == Status.BAD_REQUEST, "%s: a half-zero id and secret", what);
        return;
      }
      if (requested == HELD_ID && !Arrays.equals(secret, HELD_SECRET)) {
        check(s == Status.FORBIDDEN, "%s: the held session with the wrong secret", what);
        return;
      }
      check(s == Status.OK && body == SESSION_RESPONSE_BODY_BYTES, "%s: SESSION", what);
      long granted = a.getLong(HEADER_BYTES);
      byte[] grantedSecret = new byte[Protocol.SESSION_SECRET_BYTES];
      a.get(HEADER_BYTES + 8, grantedSecret);
      check(requested == 0
          ? granted != 0 && granted != HELD_ID
              && !Arrays.equals(grantedSecret, new byte[grantedSecret.length])
          : granted == requested && Arrays.equals(grantedSecret, secret),
          "%s: session %x granted for %x", what, granted, requested);
      check(a.getInt(HEADER_BYTES + 8 + Protocol.SESSION_SECRET_BYTES) == MAX_VALUE_BYTES,
          "%s: not the maximum value length", what);
      // §6.2: a resume of a session another connection holds asks that one to close.
      check(heldCloseRequests == (requested == HELD_ID ? 1 : 0),
          "%s: the holder of the held session was asked to close %d times", what,
          heldCloseRequests);
      sessionOpen = true;
    }

    private void checkStore() {
      for (int key : touched) {
        byte[] want = model.get(key);
        byte[] got = engine.get(key);
        // Nulls apart: Jazzer 0.24's hook of Arrays.equals crashes the JVM on a null array.
        boolean same = want == null || got == null ? want == got : Arrays.equals(want, got);
        check(same, "key %s holds %s, the model %s",
            Integer.toUnsignedString(key), got == null ? null : hex(ByteBuffer.wrap(got), 16),
            want == null ? null : hex(ByteBuffer.wrap(want), 16));
      }
    }
  }

  /**
   * A write as the model keeps it: its id, what a retry must repeat (PUT's flags, or -1 for
   * DELETE; the key; the value, null for DELETE) and its answer.
   */
  record Write(long id, int flags, int key, byte[] value, Status result) {
    /** §12.5: the same request. The server compares a 64-bit digest, the model the bytes. */
    boolean repeats(Write w) {
      // Nulls apart: Jazzer 0.24's hook of Arrays.equals crashes the JVM on a null array.
      boolean values = value == null || w.value == null ? value == w.value
          : Arrays.equals(value, w.value);
      return flags == w.flags && key == w.key && values;
    }

    @Override
    public String toString() {
      return Long.toUnsignedString(id) + " " + (flags < 0 ? "DELETE" : "PUT flags " + flags)
          + " key " + Integer.toUnsignedString(key) + " " + result;
    }
  }

  /** The session another connection holds in every input's table: the golden resume's. */
  private static final long HELD_ID;
  private static final byte[] HELD_SECRET = new byte[Protocol.SESSION_SECRET_BYTES];

  static {
    try {
      ByteBuffer resume = ByteBuffer.wrap(GoldenVectors.load().get("session_request_resume"));
      HELD_ID = resume.getLong(HEADER_BYTES);
      resume.get(HEADER_BYTES + 8, HELD_SECRET);
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  private static final Set<Opcode> DATA_OPCODES = EnumSet.of(Opcode.SESSION, Opcode.PING,
      Opcode.STATS, Opcode.PUT, Opcode.GET, Opcode.DELETE);

  /**
   * PROTOCOL.md §8: an error answer ends the connection, unless it reports the server's own state
   * (SERVER_ERROR, UNAVAILABLE: §11.4, §12.1) rather than a rule the request broke.
   */
  static boolean closes(Status s) {
    return Rules.isError(s) && s != Status.SERVER_ERROR && s != Status.UNAVAILABLE;
  }

  private static void check(boolean ok, String format, Object... args) {
    if (!ok) {
      throw new AssertionError(String.format(format, args));
    }
  }

  private static String hex(ByteBuffer b, int n) {
    byte[] bytes = new byte[Math.min(n, b.remaining())];
    b.duplicate().get(bytes);
    return HexFormat.of().formatHex(bytes);
  }

  /** The peer: takes every answer byte, or {@link #SMALL_WRITE_BYTES} per write. */
  private static final class Sink implements GatheringByteChannel {
    byte[] bytes = new byte[256];
    int size;
    boolean small;

    @Override
    public long write(ByteBuffer[] srcs, int offset, int length) {
      long n = 0;
      for (int i = offset; i < offset + length; i++) {
        n += write(srcs[i]);
        if (srcs[i].hasRemaining()) {
          break;
        }
      }
      return n;
    }

    @Override
    public long write(ByteBuffer[] srcs) {
      return write(srcs, 0, srcs.length);
    }

    @Override
    public int write(ByteBuffer src) {
      int n = small ? Math.min(src.remaining(), SMALL_WRITE_BYTES) : src.remaining();
      if (size + n > bytes.length) {
        bytes = Arrays.copyOf(bytes, Math.max(2 * bytes.length, size + n));
      }
      src.get(bytes, size, n);
      size += n;
      return n;
    }

    @Override
    public boolean isOpen() {
      return true;
    }

    @Override
    public void close() {}
  }

  // ---- Seeds from the golden vectors.

  static Stream<Arguments> goldenSeeds() throws IOException {
    List<byte[]> requests = new ArrayList<>();
    Map<String, byte[]> named = new LinkedHashMap<>();
    for (Map.Entry<String, byte[]> e : GoldenVectors.load().entrySet()) {
      byte[] v = e.getValue();
      if (v.length >= HEADER_BYTES && v[OFF_MAGIC] == REQUEST_MAGIC) {
        requests.add(v);
        named.put(e.getKey(), v);
      }
    }
    byte[] session = named.get("session_request_new");
    ByteArrayOutputStream data = new ByteArrayOutputStream();
    for (byte[] v : requests) {
      Opcode op = Opcode.of(v[OFF_OPCODE]);
      if (op != Opcode.SESSION && DATA_OPCODES.contains(op)) {
        data.writeBytes(v);
      }
    }
    List<Arguments> seeds = new ArrayList<>();
    byte[] talk = concat(session, data.toByteArray());
    seeds.add(seed("the conversation", talk));
    seeds.add(seed("the conversation in the held session",
        concat(named.get("session_request_resume"), data.toByteArray())));
    // A retry that repeats its request, then one with the same id and another value (§12.5).
    byte[] put = named.get("put_request");
    byte[] otherValue = put.clone();
    otherValue[otherValue.length - 1] ^= 1;
    seeds.add(seed("a retry, then a retry of another value", concat(session, put, put, otherValue)));
    seeds.add(seed("the conversation a byte at a time, the budget held", talk, 0x08, 0));
    seeds.add(seed("the conversation in 5-byte pieces, 5-byte writes", talk, 0x10, 4));
    seeds.add(seed("the conversation split after each header", talk, 0x08, 19, 1, 3));
    // The golden PUT with its value repeated past the inline bound of GET answers, then GETs of
    // it: a seed that long also lets the fuzzer make inputs that long.
    int large = RequestHandler.INLINE_VALUE_MAX_BYTES + 1000;
    ByteBuffer big = ByteBuffer.allocate(HEADER_BYTES + large).put(put, 0, HEADER_BYTES);
    big.putInt(OFF_BODY_LENGTH, large);
    while (big.hasRemaining()) {
      big.put(put, HEADER_BYTES, Math.min(put.length - HEADER_BYTES, big.remaining()));
    }
    ByteArrayOutputStream gets = new ByteArrayOutputStream();
    for (byte[] v : requests) {
      if ((v[OFF_OPCODE] & 0xFF) == Opcode.GET.code()) {
        gets.writeBytes(v);
      }
    }
    seeds.add(seed("a large value and GETs of it", concat(session, big.array(),
        gets.toByteArray(), gets.toByteArray()), 0x10, 200));
    for (Map.Entry<String, byte[]> e : named.entrySet()) {
      seeds.add(seed(e.getKey() + " first", concat(e.getValue(), talk)));
      seeds.add(seed(e.getKey() + " after SESSION", concat(session, e.getValue(), talk)));
    }
    return seeds.stream();
  }

  private static Arguments seed(String name, byte[] stream, int... controlAndCuts) {
    int control = controlAndCuts.length == 0 ? 0 : controlAndCuts[0];
    int n = Math.max(0, controlAndCuts.length - 1);
    ByteArrayOutputStream b = new ByteArrayOutputStream();
    b.write(control | n);
    for (int i = 1; i < controlAndCuts.length; i++) {
      b.write(controlAndCuts[i]);
    }
    b.writeBytes(stream);
    return Arguments.of(Named.of(name, b.toByteArray()));
  }

  private static byte[] concat(byte[]... parts) {
    ByteArrayOutputStream b = new ByteArrayOutputStream();
    for (byte[] p : parts) {
      b.writeBytes(p);
    }
    return b.toByteArray();
  }
}
