package io.psiskv.client;

import static io.psiskv.protocol.Protocol.GET_RESPONSE_PREFIX_BYTES;
import static io.psiskv.protocol.Protocol.HEADER_BYTES;
import static io.psiskv.protocol.Protocol.HELLO_RESPONSE_BODY_BYTES;
import static io.psiskv.protocol.Protocol.OFF_BODY_LENGTH;
import static io.psiskv.protocol.Protocol.OFF_FLAGS_OR_STATUS;
import static io.psiskv.protocol.Protocol.OFF_KEY;
import static io.psiskv.protocol.Protocol.OFF_MAGIC;
import static io.psiskv.protocol.Protocol.OFF_OPCODE;
import static io.psiskv.protocol.Protocol.OFF_REQUEST_ID;
import static io.psiskv.protocol.Protocol.OFF_VERSION;
import static io.psiskv.protocol.Protocol.RESPONSE_MAGIC;
import static io.psiskv.protocol.Protocol.SESSION_RESPONSE_BODY_BYTES;
import static io.psiskv.protocol.Protocol.VERSION;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Rules;
import io.psiskv.protocol.Status;
import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.lang.management.ClassLoadingMXBean;
import java.lang.management.ManagementFactory;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Named;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Coverage-guided fuzzing (Jazzer) of the client's side of the protocol: how {@link KvClient}
 * decodes answers (PROTOCOL.md §3, §5, §6, §8) with the codec ({@code Header}, {@code Rules}) and
 * its {@link ResponseReader}. A real client connects, through {@link MemorySockets}, to a scripted
 * server whose every answer is taken from the fuzz input; nothing else is stubbed.
 *
 * <p><b>Invariants</b>, checked for every input:
 *
 * <ul>
 *   <li>connecting and every call either return or throw {@link KvException}: no other exception
 *       escapes;
 *   <li>a call that returns has read exactly one answer, one PROTOCOL.md allows for its request:
 *       the response magic and version, the request's opcode, key and id echoed, a result status
 *       allowed for the opcode and the body length that status implies (GET: its stored length and
 *       {@code min(capacity, stored)} value bytes); and its result is what the answer says (GET's
 *       value byte for byte, {@code read}'s stored length and bytes, the booleans of {@code
 *       putIfAbsent} and {@code remove}). A connect that returns has read one OK answer per
 *       set-up request, each echoing it;
 *   <li>a {@link KvException} carries IO_ERROR (a broken connection, a protocol violation), an
 *       error status the server answered (the one in the header the client read), or TOO_LARGE
 *       for a value over the server's maximum; after a failed exchange every later call fails the
 *       same way (or refuses a value over the maximum) without sending anything (reconnection is
 *       disabled here);
 *   <li>what the client allocates is bounded by the input, not by what the answers claim: a GET
 *       answer announcing 2 GiB of value must not cost 2 GiB before the bytes arrive (judged for
 *       the inputs that load no class: Jazzer instruments a class in the thread that loads it).
 * </ul>
 *
 * <p><b>Input</b> (all integers big-endian):
 *
 * <pre>
 *   input   = count:u8 call:u8{(count &amp; 3) + 1} segment*
 *   call    = bits 0-2: what (mod 5: get, read, put, putIfAbsent, remove), all of key 7;
 *             bits 3-7: size, the read buffer or the value in bytes (31 means {@link #LARGE_SIZE})
 *   segment = control:u8 length:u16 byte{length}     the answer to the next request, in order
 *   control = bit 0: overwrite the answer's opcode, key and id with the request's, so that
 *                    mutations reach statuses and bodies and not only mismatched echoes;
 *             bit 1: overwrite its body length with the one its other bytes imply: for an answer
 *                    to GET, 4 + min(capacity, stored length), whatever follows (an answer that
 *                    claims more than it sends); else the bytes after the header;
 *             bits 2-4: k &gt; 0 caps every read of the client at 2^(k-1) bytes from then on
 * </pre>
 *
 * A request for which no segment is left gets nothing: the client reads the end of the stream.
 *
 * <p><b>Seeds</b> are made at test time from the golden vectors (PROTOCOL.md §10): the client is
 * run against a server answering each request with a golden response of the request's opcode, and
 * the answers it gave are written down as segments. Each call kind meets each golden response of
 * its opcode, and each set-up opcode each of its golden responses.
 *
 * <p>Runs as a JUnit test of the fuzz-response-decoding execution of java-client/pom.xml, which
 * installs MemorySockets; README "Fuzzing" says how to fuzz for longer.
 */
class ResponseDecodingFuzzTest {
  /** A call's size field at its maximum means this: more than the client writes in one go. */
  static final int LARGE_SIZE = 20_000;
  private static final int KEY = 7;
  private static final String FRONT_HOST = "127.0.0.1";
  private static final int FRONT_PORT = 9999;
  /**
   * What one input may allocate in this thread, beyond {@link #ALLOCATION_PER_INPUT_BYTE} per
   * byte of input: the client's buffers, the calls' arrays and exceptions take some hundred KiB.
   */
  private static final long ALLOCATION_BASE_BYTES = 4L << 20;
  private static final long ALLOCATION_PER_INPUT_BYTE = 16;

  private static final com.sun.management.ThreadMXBean THREADS =
      (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
  private static final ClassLoadingMXBean CLASSES = ManagementFactory.getClassLoadingMXBean();

  @BeforeAll
  static void inMemorySockets() throws IOException {
    assumeTrue(MemorySockets.installed(), "needs -Djava.nio.channels.spi.SelectorProvider="
        + MemorySockets.class.getName() + " (the fuzz-response-decoding execution sets it)");
    goldenSeeds().count(); // Warm-up: the first clients load classes, not the inputs' doing.
  }

  @MethodSource("goldenSeeds")
  @FuzzTest(maxDuration = "20s")
  void answers(byte[] input) {
    long classes = CLASSES.getTotalLoadedClassCount();
    long before = THREADS.getCurrentThreadAllocatedBytes();
    run(new InputScript(input), calls(input), true);
    long allocated = THREADS.getCurrentThreadAllocatedBytes() - before;
    long bound = ALLOCATION_BASE_BYTES + ALLOCATION_PER_INPUT_BYTE * input.length;
    // Loading a class (Jazzer instruments it in this thread) is not the input's allocation.
    if (CLASSES.getTotalLoadedClassCount() == classes && allocated > bound) {
      throw new AssertionError("an input of " + input.length + " bytes made the client allocate "
          + allocated + " bytes, more than " + bound + ": it allocated what an answer claims");
    }
  }

  // ---- One input: connect, make the calls, check each outcome.

  /** What a call does; all of them use key {@link #KEY}. */
  enum What {
    GET(Opcode.GET), READ(Opcode.GET), PUT(Opcode.PUT), PUT_IF_ABSENT(Opcode.PUT),
    REMOVE(Opcode.DELETE);

    final Opcode op;

    What(Opcode op) {
      this.op = op;
    }
  }

  record Call(What what, int size) {
    static Call of(int b) {
      int size = (b & 0xFF) >>> 3;
      What what = What.values()[(b & 7) % What.values().length];
      return new Call(what, size == 31 ? LARGE_SIZE : size);
    }

    byte encode() {
      int size = this.size == LARGE_SIZE ? 31 : this.size;
      return (byte) (what.ordinal() | size << 3);
    }
  }

  static Call[] calls(byte[] input) {
    int n = input.length == 0 ? 1 : (input[0] & 3) + 1;
    Call[] calls = new Call[n];
    for (int i = 0; i < n; i++) {
      calls[i] = Call.of(1 + i < input.length ? input[1 + i] : 0);
    }
    return calls;
  }

  private static void run(Script script, Call[] calls, boolean check) {
    Server server = new Server(script);
    MemorySockets.connector(server);
    KvClient kv;
    try {
      kv = KvClient.builder(FRONT_HOST, FRONT_PORT).retryTimeout(Duration.ZERO).connect();
    } catch (KvException e) {
      if (check) {
        checkStatusKind(e, "connect");
      }
      return;
    }
    try {
      if (check) {
        checkSetUp(server);
      }
      Conn data = server.connections.get(server.connections.size() - 1);
      KvException first = null;
      for (Call call : calls) {
        int requestsBefore = data.requests.size();
        int servedBefore = data.served;
        Object result;
        try {
          result = perform(kv, call);
        } catch (KvException e) {
          if (check) {
            checkFailure(e, call, data, requestsBefore, servedBefore, first);
          }
          if (first == null && data.requests.size() > requestsBefore) {
            first = e; // A failed exchange breaks the client; a value refused unsent does not.
          }
          continue;
        }
        if (check) {
          if (first != null) {
            throw new AssertionError(call + " returned after an earlier call failed with "
                + first + ", with reconnection disabled");
          }
          checkReturned(call, result, data, requestsBefore, servedBefore);
        }
      }
    } finally {
      kv.close();
    }
  }

  private static Object perform(KvClient kv, Call call) {
    switch (call.what) {
      case GET:
        return kv.get(KEY);
      case READ:
        byte[] buffer = new byte[call.size];
        int stored = kv.read(KEY, buffer);
        return new ReadResult(stored, buffer);
      case PUT:
        kv.put(KEY, value(call.size));
        return null;
      case PUT_IF_ABSENT:
        return kv.putIfAbsent(KEY, value(call.size));
      default:
        return kv.remove(KEY);
    }
  }

  record ReadResult(int stored, byte[] buffer) {}

  private static byte[] value(int size) {
    byte[] v = new byte[size];
    for (int i = 0; i < size; i++) {
      v[i] = (byte) (i * 31 + 1);
    }
    return v;
  }

  // ---- The checks.

  /** A connect that returned read one OK answer per set-up request, each echoing it. */
  private static void checkSetUp(Server server) {
    for (Conn c : server.connections) {
      int at = 0;
      for (Request r : c.requests) {
        Frame f = Frame.at(c.log, at, c.served, r, "set-up answer to " + r);
        check(f.status() == Status.OK, "connect returned, but %s was answered %s", r, f.status());
        Opcode op = Opcode.of(r.opcode);
        if (op == Opcode.HELLO) {
          check(f.bodyLength == HELLO_RESPONSE_BODY_BYTES, "HELLO OK with a body of %d bytes",
              f.bodyLength);
        } else if (op == Opcode.SESSION) {
          check(f.bodyLength == SESSION_RESPONSE_BODY_BYTES, "SESSION OK with a body of %d bytes",
              f.bodyLength);
        }
        at += f.length();
      }
      check(at == c.served, "connect read %d bytes on a connection, its answers have %d",
          c.served, at);
    }
  }

  /** A call that returned read exactly one answer allowed for its request, and reports it. */
  private static void checkReturned(Call call, Object result, Conn data, int requestsBefore,
      int servedBefore) {
    List<Request> made = data.requests.subList(requestsBefore, data.requests.size());
    check(made.size() == 1, "%s returned after sending %d requests", call, made.size());
    Request r = made.get(0);
    check(r.opcode == call.what.op.code(), "%s sent %s", call, r);
    Frame f = Frame.at(data.log, servedBefore, data.served, r, call + " answer");
    check(servedBefore + f.length() == data.served,
        "%s returned having read %d bytes, but its answer has %d", call,
        data.served - servedBefore, f.length());
    Status s = f.status();
    String what = call + " returned " + describe(result) + " for " + f;
    switch (call.what) {
      case GET: {
        @SuppressWarnings("unchecked")
        Optional<byte[]> value = (Optional<byte[]>) result;
        if (value.isEmpty()) {
          check(s == Status.NOT_FOUND && f.bodyLength == 0, "%s", what);
        } else {
          checkValue(f, r.capacity(), value.get().length, value.get(), what);
        }
        break;
      }
      case READ: {
        ReadResult read = (ReadResult) result;
        if (read.stored == -1) {
          check(s == Status.NOT_FOUND && f.bodyLength == 0, "%s", what);
        } else {
          check(read.stored >= 0, "%s", what);
          checkValue(f, r.capacity(), read.stored, read.buffer, what);
        }
        break;
      }
      case PUT:
        check(s == Status.OK && f.bodyLength == 0, "%s", what);
        break;
      case PUT_IF_ABSENT:
        check(f.bodyLength == 0 && s == ((Boolean) result ? Status.OK : Status.KEY_EXISTS), "%s",
            what);
        break;
      default:
        check(f.bodyLength == 0 && s == ((Boolean) result ? Status.OK : Status.NOT_FOUND), "%s",
            what);
        break;
    }
  }

  /**
   * A GET answer that gave {@code stored} and the bytes in {@code got}: OK, {@code 4 +
   * min(capacity, stored)} body bytes, the stored length in its prefix, the value bytes in {@code
   * got}.
   */
  private static void checkValue(Frame f, long capacity, long stored, byte[] got, String what) {
    check(f.status() == Status.OK, "%s", what);
    long sent = Math.min(capacity, stored);
    check(f.bodyLength == GET_RESPONSE_PREFIX_BYTES + sent, "%s (capacity %d)", what, capacity);
    check(f.u32(HEADER_BYTES) == stored, "%s", what);
    int from = HEADER_BYTES + GET_RESPONSE_PREFIX_BYTES;
    check(Arrays.equals(f.bytes, from, from + (int) sent, got, 0, (int) sent),
        "%s: the value differs from the answer's bytes", what);
  }

  private static void checkFailure(KvException e, Call call, Conn data, int requestsBefore,
      int servedBefore, KvException first) {
    checkStatusKind(e, call.toString());
    int made = data.requests.size() - requestsBefore;
    if (first != null) {
      // The same failure again, or a value over the maximum refused before anything is sent.
      check((e.status() == first.status() || e.status() == Status.TOO_LARGE) && made == 0,
          "%s after a failure (%s) failed with %s having sent %d requests", call, first, e, made);
      return;
    }
    Status s = e.status();
    if (s == Status.IO_ERROR) {
      return;
    }
    // Not a broken connection: the status is the one in the header the client read, or the
    // client's own TOO_LARGE (a value over the maximum is not sent; a GET answer storing more than
    // the capacity the client asked for is refused).
    byte[] header = Arrays.copyOfRange(data.log, servedBefore,
        Math.min(data.served, servedBefore + HEADER_BYTES));
    int status = header.length == HEADER_BYTES ? header[OFF_FLAGS_OR_STATUS] & 0xFF : -1;
    boolean answered = status == s.code();
    boolean tooLarge = s == Status.TOO_LARGE
        && (made == 0 || (call.what.op == Opcode.GET && status == Status.OK.code()));
    check(answered || tooLarge, "%s failed with %s, which the answer %s does not say", call, e,
        HexFormat.of().formatHex(header));
  }

  /** §5: a failure is a broken connection (IO_ERROR) or an error status, never a result. */
  private static void checkStatusKind(KvException e, String what) {
    Status s = e.status();
    check(s != null && (s == Status.IO_ERROR || Rules.isError(s)) && e.getMessage() != null,
        "%s failed with a result status: %s", what, e);
  }

  private static void check(boolean ok, String format, Object... args) {
    if (!ok) {
      throw new AssertionError(String.format(format, args));
    }
  }

  private static String describe(Object result) {
    if (result instanceof Optional<?> o) {
      return o.isEmpty() ? "empty" : "a value of " + ((byte[]) o.get()).length + " bytes";
    }
    return String.valueOf(result);
  }

  /** One answer as the client read it, decoded by PROTOCOL.md §3.1 independently of the codec. */
  private static final class Frame {
    final byte[] bytes;
    final long bodyLength;

    private Frame(byte[] bytes, long bodyLength) {
      this.bytes = bytes;
      this.bodyLength = bodyLength;
    }

    /**
     * The answer starting at {@code log[at]}, of which {@code end - at} bytes were read; checks
     * that its header was read whole and echoes {@code r}.
     */
    static Frame at(byte[] log, int at, int end, Request r, String what) {
      check(end - at >= HEADER_BYTES, "%s: only %d bytes read", what, end - at);
      ByteBuffer h = ByteBuffer.wrap(log, at, HEADER_BYTES).slice();
      long body = Integer.toUnsignedLong(h.getInt(OFF_BODY_LENGTH));
      int read = (int) Math.min(end - at, HEADER_BYTES + body);
      Frame f = new Frame(Arrays.copyOfRange(log, at, at + read), body);
      check(h.get(OFF_MAGIC) == RESPONSE_MAGIC && h.get(OFF_VERSION) == VERSION
          && (h.get(OFF_OPCODE) & 0xFF) == r.opcode && h.getInt(OFF_KEY) == r.key
          && h.getLong(OFF_REQUEST_ID) == r.id, "%s: %s does not answer %s", what, f, r);
      check(f.status() != null && f.status() != Status.IO_ERROR, "%s: unknown status in %s",
          what, f);
      return f;
    }

    Status status() {
      return Status.of(bytes[OFF_FLAGS_OR_STATUS] & 0xFF);
    }

    long length() {
      return HEADER_BYTES + bodyLength;
    }

    long u32(int off) {
      return bytes.length < off + 4 ? -1
          : Integer.toUnsignedLong(ByteBuffer.wrap(bytes).getInt(off));
    }

    @Override
    public String toString() {
      return HexFormat.of().formatHex(bytes, 0, Math.min(bytes.length, 64))
          + (bytes.length > 64 ? "..." : "");
    }
  }

  // ---- The scripted server.

  /** A request as the server saw it: header fields and the first body bytes. */
  record Request(int opcode, int flags, int key, long id, long bodyLength, byte[] bodyStart) {
    /** GET's u32 capacity (§6.5). */
    long capacity() {
      return bodyStart.length < 4 ? -1
          : Integer.toUnsignedLong(ByteBuffer.wrap(bodyStart).getInt());
    }

    @Override
    public String toString() {
      Opcode op = Opcode.of(opcode);
      return (op == null ? "opcode " + opcode : op.toString()) + " key "
          + Integer.toUnsignedString(key) + " id " + id + " body " + bodyLength;
    }
  }

  /** Where the server's answers come from. */
  interface Script {
    /** The answer to {@code r}: control byte and bytes; null to send nothing. */
    Segment answer(Request r);
  }

  record Segment(int control, byte[] bytes) {}

  /** The segments of a fuzz input, in order. */
  static final class InputScript implements Script {
    private final byte[] input;
    private int pos;

    InputScript(byte[] input) {
      this.input = input;
      this.pos = input.length == 0 ? 0 : Math.min(input.length, 1 + (input[0] & 3) + 1);
    }

    @Override
    public Segment answer(Request r) {
      if (pos >= input.length) {
        return null;
      }
      int control = input[pos++] & 0xFF;
      int len = 0;
      for (int i = 0; i < 2; i++) {
        len = len << 8 | (pos < input.length ? input[pos++] & 0xFF : 0);
      }
      len = Math.min(len, input.length - pos);
      byte[] bytes = Arrays.copyOfRange(input, pos, pos + len);
      pos += len;
      return new Segment(control, bytes);
    }
  }

  /** A server of MemorySockets connections, all answered from one script in order. */
  static final class Server implements MemorySockets.Connector {
    final Script script;
    final List<Conn> connections = new ArrayList<>();

    Server(Script script) {
      this.script = script;
    }

    @Override
    public MemorySockets.Peer connect(InetSocketAddress address) {
      Conn c = new Conn(script);
      connections.add(c);
      return c;
    }
  }

  /** One connection: parses the client's requests, queues an answer for each one. */
  static final class Conn implements MemorySockets.Peer {
    private final Script script;
    final List<Request> requests = new ArrayList<>();
    /** Every answer byte queued on this connection, in order; the client has read [0, served). */
    byte[] log = new byte[64];
    int logged;
    int served;
    /** Most bytes one read hands over; 0 for no limit. */
    private int readCap;

    private final byte[] header = new byte[HEADER_BYTES];
    private int headerFill;
    private long bodyLeft;
    private final byte[] bodyStart = new byte[8];
    private int bodyStartFill;

    Conn(Script script) {
      this.script = script;
    }

    @Override
    public void received(byte[] b, int off, int len) {
      while (len > 0) {
        if (headerFill < HEADER_BYTES) {
          int n = Math.min(len, HEADER_BYTES - headerFill);
          System.arraycopy(b, off, header, headerFill, n);
          headerFill += n;
          off += n;
          len -= n;
          if (headerFill == HEADER_BYTES) {
            bodyLeft = Integer.toUnsignedLong(ByteBuffer.wrap(header).getInt(OFF_BODY_LENGTH));
            bodyStartFill = 0;
            if (bodyLeft == 0) {
              complete();
            }
          }
          continue;
        }
        int n = (int) Math.min(len, bodyLeft);
        int keep = Math.min(n, bodyStart.length - bodyStartFill);
        System.arraycopy(b, off, bodyStart, bodyStartFill, keep);
        bodyStartFill += keep;
        bodyLeft -= n;
        off += n;
        len -= n;
        if (bodyLeft == 0) {
          complete();
        }
      }
    }

    private void complete() {
      ByteBuffer h = ByteBuffer.wrap(header);
      Request r = new Request(h.get(OFF_OPCODE) & 0xFF, h.get(OFF_FLAGS_OR_STATUS) & 0xFF,
          h.getInt(OFF_KEY), h.getLong(OFF_REQUEST_ID),
          Integer.toUnsignedLong(h.getInt(OFF_BODY_LENGTH)),
          Arrays.copyOf(bodyStart, bodyStartFill));
      requests.add(r);
      headerFill = 0;
      Segment s = script.answer(r);
      if (s == null) {
        return;
      }
      byte[] a = s.bytes.clone();
      if ((s.control & 1) != 0) {
        ByteBuffer echo = ByteBuffer.allocate(HEADER_BYTES);
        echo.put(OFF_OPCODE, (byte) r.opcode).putInt(OFF_KEY, r.key).putLong(OFF_REQUEST_ID, r.id);
        int to = Math.min(a.length, OFF_REQUEST_ID + 8);
        for (int i = OFF_OPCODE; i < to; i++) {
          if (i != OFF_FLAGS_OR_STATUS) {
            a[i] = echo.get(i);
          }
        }
      }
      if ((s.control & 2) != 0 && a.length >= HEADER_BYTES) {
        long body = a.length - HEADER_BYTES;
        if (r.opcode == Opcode.GET.code() && a.length >= HEADER_BYTES + GET_RESPONSE_PREFIX_BYTES) {
          long stored = Integer.toUnsignedLong(ByteBuffer.wrap(a).getInt(HEADER_BYTES));
          body = GET_RESPONSE_PREFIX_BYTES + Math.min(r.capacity(), stored);
        }
        ByteBuffer.wrap(a).putInt(OFF_BODY_LENGTH, (int) body);
      }
      int k = (s.control >>> 2) & 7;
      readCap = k == 0 ? 0 : 1 << (k - 1);
      if (logged + a.length > log.length) {
        log = Arrays.copyOf(log, Math.max(2 * log.length, logged + a.length));
      }
      System.arraycopy(a, 0, log, logged, a.length);
      logged += a.length;
    }

    @Override
    public int send(byte[] b, int off, int len) {
      if (served == logged) {
        return -1;
      }
      int n = Math.min(len, logged - served);
      if (readCap > 0) {
        n = Math.min(n, readCap);
      }
      System.arraycopy(log, served, b, off, n);
      served += n;
      return n;
    }
  }

  // ---- Seeds from the golden vectors.

  /** The control of a seed's segments: echo and body length fixed up (a no-op on golden bytes). */
  private static final int FIX_UP = 1 | 2;

  /** Records the answers a golden server gives, as the segments of a seed. */
  private static final class GoldenScript implements Script {
    private final Map<Integer, byte[]> answers;
    private final int control;
    final ByteArrayOutputStream segments = new ByteArrayOutputStream();

    GoldenScript(Map<Integer, byte[]> answers, int control) {
      this.answers = answers;
      this.control = control;
    }

    @Override
    public Segment answer(Request r) {
      byte[] a = answers.get(r.opcode);
      if (a == null) {
        return null;
      }
      segments.write(control);
      segments.write(a.length >>> 8);
      segments.write(a.length);
      segments.write(a, 0, a.length);
      return new Segment(control, a);
    }
  }

  static Stream<Arguments> goldenSeeds() throws IOException {
    if (!MemorySockets.installed()) {
      return Stream.of(Arguments.of(Named.of("no seeds without MemorySockets", new byte[0])));
    }
    Map<String, byte[]> responses = new LinkedHashMap<>();
    for (Map.Entry<String, byte[]> e : goldenVectors().entrySet()) {
      if (e.getValue().length >= HEADER_BYTES && e.getValue()[OFF_MAGIC] == RESPONSE_MAGIC) {
        responses.put(e.getKey(), e.getValue());
      }
    }
    // Every opcode's first OK answer: what a working server says.
    Map<Integer, byte[]> ok = new LinkedHashMap<>();
    for (byte[] v : responses.values()) {
      if ((v[OFF_FLAGS_OR_STATUS] & 0xFF) == Status.OK.code()) {
        ok.putIfAbsent(v[OFF_OPCODE] & 0xFF, v);
      }
    }
    List<Arguments> seeds = new ArrayList<>();
    Call[] singles = {new Call(What.GET, 0), new Call(What.READ, 2), new Call(What.READ, 30),
        new Call(What.READ, LARGE_SIZE), new Call(What.PUT, 2), new Call(What.PUT, LARGE_SIZE),
        new Call(What.PUT_IF_ABSENT, 2), new Call(What.REMOVE, 0)};
    for (Call call : singles) {
      for (Map.Entry<String, byte[]> e : responses.entrySet()) {
        if ((e.getValue()[OFF_OPCODE] & 0xFF) == call.what.op.code()) {
          Map<Integer, byte[]> answers = new LinkedHashMap<>(ok);
          answers.put(call.what.op.code(), e.getValue());
          seeds.add(seed(call + " answered " + e.getKey(), answers, FIX_UP, call));
        }
      }
    }
    // Set-up answers: every golden answer to an opcode the client sends while connecting.
    Server probe = new Server(new GoldenScript(ok, FIX_UP));
    MemorySockets.connector(probe);
    KvClient.builder(FRONT_HOST, FRONT_PORT).retryTimeout(Duration.ZERO).connect().close();
    for (Conn c : probe.connections) {
      for (Request r : c.requests) {
        for (Map.Entry<String, byte[]> e : responses.entrySet()) {
          if ((e.getValue()[OFF_OPCODE] & 0xFF) == r.opcode) {
            Map<Integer, byte[]> answers = new LinkedHashMap<>(ok);
            answers.put(r.opcode, e.getValue());
            seeds.add(seed("connect answered " + e.getKey(), answers, FIX_UP,
                new Call(What.GET, 0)));
          }
        }
      }
    }
    // A working conversation, whole and in pieces of 1 and 8 bytes.
    Call[] conversation = {new Call(What.PUT, 5), new Call(What.GET, 0),
        new Call(What.PUT_IF_ABSENT, 1), new Call(What.REMOVE, 0)};
    for (int control : new int[] {FIX_UP, FIX_UP | 1 << 2, FIX_UP | 4 << 2}) {
      seeds.add(seed("a conversation, reads capped by control " + control, ok, control,
          conversation));
    }
    return seeds.stream();
  }

  /** A seed: the calls, then the answers a golden server gives them. */
  private static Arguments seed(String name, Map<Integer, byte[]> answers, int control,
      Call... calls) {
    GoldenScript golden = new GoldenScript(answers, control);
    run(golden, calls, false);
    ByteArrayOutputStream seed = new ByteArrayOutputStream();
    seed.write(calls.length - 1);
    for (Call c : calls) {
      seed.write(c.encode());
    }
    seed.writeBytes(golden.segments.toByteArray());
    return Arguments.of(Named.of(name, seed.toByteArray()));
  }

  /** PROTOCOL.md §10: {@code name hex} per line, {@code #} comments. */
  static Map<String, byte[]> goldenVectors() throws IOException {
    Map<String, byte[]> vectors = new LinkedHashMap<>();
    try (InputStream in = ResponseDecodingFuzzTest.class.getResourceAsStream("/golden-vectors.txt");
        BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
      for (String line; (line = r.readLine()) != null; ) {
        if (!line.isBlank() && !line.startsWith("#")) {
          String[] parts = line.trim().split("\\s+");
          vectors.put(parts[0], HexFormat.of().parseHex(parts[1]));
        }
      }
    }
    return vectors;
  }
}
