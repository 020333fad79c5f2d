package io.psiskv.server.backup;

import static io.psiskv.server.backup.LogFormat.HEADER_BYTES;
import static io.psiskv.server.backup.LogFormat.LENGTH_COUNTS_FROM;
import static io.psiskv.server.backup.LogFormat.MAGIC;
import static io.psiskv.server.backup.LogFormat.OFF_HEADER_CRC;
import static io.psiskv.server.backup.LogFormat.OP_DELETE;
import static io.psiskv.server.backup.LogFormat.OP_PUT;
import static io.psiskv.server.backup.LogFormat.OP_PUT_IF_ABSENT;
import static io.psiskv.server.backup.LogFormat.OP_SESSION;
import static io.psiskv.server.backup.LogFormat.RECORD_FIXED_BYTES;
import static io.psiskv.server.backup.LogFormat.SESSION_VALUE_BYTES;
import static io.psiskv.server.backup.LogFormat.VERSION;
import static io.psiskv.server.backup.LogFormat.VERSION_1;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.server.store.Engine;
import io.psiskv.server.store.Sessions;
import io.psiskv.server.testkit.GoldenVectors;
import java.io.IOException;
import java.lang.management.ClassLoadingMXBean;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.Named;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Coverage-guided fuzzing (Jazzer) of the backup log's reader, {@link LogRecordReader}, which both
 * recovery ({@link BackupLog#open}) and {@link BackupCheck} use: arbitrary file bytes go through
 * {@code readHeader} and {@code scan}, and what they say is compared with an implementation of
 * PROTOCOL.md §11.1-§11.3 written here from the text.
 *
 * <p><b>Invariants</b>, for every file:
 *
 * <ul>
 *   <li>{@code readHeader} returns exactly when the header is sound (size, magic, version 1 or 2
 *       and flags 0, CRC), with the file's version, and otherwise throws an IOException that names
 *       the file; {@code scan} never throws;
 *   <li>the verdict (CLEAN, TORN, DAMAGED), the end of the last good record and the record counts
 *       are those of the §11.3 rule with the §11.2 consistency of the file's version (version 2:
 *       PUT_IF_ABSENT records, 33-byte SESSION values; version 1: neither), and the visitor gets
 *       exactly the good records in file order,
 *       each field and value as written (or only the value's length, for a scan without values);
 *   <li>a value is allocated only for a record that lies whole in the file: the scan allocates at
 *       most twice the file's size plus a constant, whatever lengths the records claim.
 * </ul>
 *
 * <p><b>Input</b>: {@code control:u8 file}. Control bit 0 rewrites the header's CRC and bit 1 every
 * record's CRC, as a writer would, wherever a record's fixed part is consistent and it lies in the
 * file (so that mutations reach the structure behind the checksums); bit 2 scans without values.
 *
 * <p><b>Seeds</b> are logs the real {@link BackupLog} writes for the golden requests' writes
 * (PROTOCOL.md §10), with SESSION, PUT, PUT_IF_ABSENT and DELETE records: whole, compacted,
 * torn at several offsets, with a zero-filled tail, damaged in the middle; and the same records
 * as a version 1 file would hold them.
 *
 * <p>Runs in the fuzz-log-reader execution of servers/pom.xml; README "Fuzzing".
 */
class LogRecordReaderFuzzTest {
  private static final Path FILE = Path.of("fuzzed", BackupLog.FILE_NAME);
  private static final long ALLOCATION_BASE_BYTES = 1L << 20;
  private static final com.sun.management.ThreadMXBean THREADS =
      (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
  private static final ClassLoadingMXBean CLASSES = ManagementFactory.getClassLoadingMXBean();

  /** One channel and reader for every input (the reader's 1 MiB buffer is not the input's). */
  private static final BytesChannel CHANNEL = new BytesChannel();
  private static final LogRecordReader READER = new LogRecordReader(CHANNEL, FILE);

  /** A good record as the visitor got it, or as the rule says it must be. */
  record Rec(int op, int key, long session, long request, int result, byte[] value, int length) {
    boolean same(Rec o) {
      // Jazzer 0.24's hook of Arrays.equals crashes the JVM on a null array: nulls apart.
      boolean values = value == null || o.value == null ? value == o.value
          : Arrays.equals(value, o.value);
      return op == o.op && key == o.key && session == o.session && request == o.request
          && result == o.result && length == o.length && values;
    }
  }

  @MethodSource("writtenLogs")
  @FuzzTest(maxDuration = "15s")
  void files(byte[] input) throws IOException {
    int control = input.length == 0 ? 0 : input[0] & 0xFF;
    byte[] file = Arrays.copyOfRange(input, Math.min(1, input.length), input.length);
    if ((control & 1) != 0 && file.length >= HEADER_BYTES) {
      ByteBuffer.wrap(file).putInt(OFF_HEADER_CRC, crc(file, 0, OFF_HEADER_CRC));
    }
    if ((control & 2) != 0) {
      fixRecordCrcs(file);
    }
    boolean wantValues = (control & 4) == 0;
    CHANNEL.bytes = file;

    Expected want = expected(file, wantValues);
    LogRecordReader.FileHeader header;
    try {
      header = READER.readHeader();
    } catch (IOException e) {
      check(want.headerProblem != null, "readHeader refused a sound header: %s", e);
      check(e.getMessage() != null && e.getMessage().contains(FILE.toString()),
          "the header error does not name the file: %s", e);
      return;
    }
    check(want.headerProblem == null, "readHeader accepted a header with %s", want.headerProblem);
    check(header.version() == want.version, "version %d, the file's %d", header.version(),
        want.version);

    List<Rec> got = new ArrayList<>();
    long classes = CLASSES.getTotalLoadedClassCount();
    long before = THREADS.getCurrentThreadAllocatedBytes();
    LogRecordReader.Scan scan = READER.scan(wantValues, (op, key, session, request, result,
        value, length) -> got.add(new Rec(op, key, session, request, result, value, length)));
    long allocated = THREADS.getCurrentThreadAllocatedBytes() - before;

    check(scan.outcome == want.outcome && scan.goodEnd == want.goodEnd,
        "scan says %s at %d (%s), the rule %s at %d", scan.outcome, scan.goodEnd, scan.reason,
        want.outcome, want.goodEnd);
    check((scan.reason == null) == (want.outcome == LogRecordReader.Outcome.CLEAN),
        "reason %s for %s", scan.reason, scan.outcome);
    check(scan.fileSize == file.length && scan.records == want.records.size(),
        "%d records, the rule %d", scan.records, want.records.size());
    check(scan.puts == want.count(OP_PUT) + want.count(OP_PUT_IF_ABSENT)
        && scan.deletes == want.count(OP_DELETE)
        && scan.sessions == want.count(OP_SESSION), "counts %d %d %d", scan.puts, scan.deletes,
        scan.sessions);
    check(got.size() == want.records.size(), "visited %d records, the rule %d", got.size(),
        want.records.size());
    for (int i = 0; i < got.size(); i++) {
      check(got.get(i).same(want.records.get(i)), "record %d read as %s, written as %s", i,
          got.get(i), want.records.get(i));
    }
    // A class loaded meanwhile (Jazzer instruments it in this thread) is not the scan's doing.
    long bound = ALLOCATION_BASE_BYTES + 2L * file.length;
    check(CLASSES.getTotalLoadedClassCount() != classes || allocated <= bound,
        "a scan of %d bytes allocated %d", file.length, allocated);
  }

  // ---- PROTOCOL.md §11.1-§11.3, from the text.

  static final class Expected {
    String headerProblem;
    int version;
    LogRecordReader.Outcome outcome = LogRecordReader.Outcome.CLEAN;
    long goodEnd = HEADER_BYTES;
    final List<Rec> records = new ArrayList<>();

    long count(int op) {
      return records.stream().filter(r -> r.op == op).count();
    }
  }

  static Expected expected(byte[] f, boolean wantValues) {
    Expected e = new Expected();
    ByteBuffer b = ByteBuffer.wrap(f);
    if (f.length < HEADER_BYTES) {
      e.headerProblem = "a file shorter than the header";
      return e;
    }
    if (!Arrays.equals(f, 0, MAGIC.length, MAGIC, 0, MAGIC.length)) {
      e.headerProblem = "a bad magic";
      return e;
    }
    e.version = b.getShort(MAGIC.length) & 0xFFFF;
    if ((e.version != VERSION && e.version != VERSION_1) || b.getShort(MAGIC.length + 2) != 0) {
      e.headerProblem = "an unknown version or flags";
      return e;
    }
    if (b.getInt(OFF_HEADER_CRC) != crc(f, 0, OFF_HEADER_CRC)) {
      e.headerProblem = "a bad header CRC";
      return e;
    }
    long off = HEADER_BYTES;
    while (off < f.length) {
      int at = (int) off;
      if (f.length - off < RECORD_FIXED_BYTES) {
        return torn(e, off); // A partial record header.
      }
      long length = Integer.toUnsignedLong(b.getInt(at + 4));
      int op = f[at + 8] & 0xFF;
      long valueLength = Integer.toUnsignedLong(b.getInt(at + 30));
      if (!consistent(e.version, length, op, valueLength)) {
        for (int i = at; i < f.length; i++) {
          if (f[i] != 0) {
            e.outcome = LogRecordReader.Outcome.DAMAGED;
            e.goodEnd = off;
            return e;
          }
        }
        return torn(e, off); // Allocated, never written.
      }
      long end = off + LENGTH_COUNTS_FROM + length;
      if (end > f.length) {
        return torn(e, off); // A partial record.
      }
      if (b.getInt(at) != crc(f, at + 4, (int) (end - off - 4))) {
        if (end == f.length) {
          return torn(e, off);
        }
        e.outcome = LogRecordReader.Outcome.DAMAGED;
        e.goodEnd = off;
        return e;
      }
      int vlen = (int) valueLength;
      e.records.add(new Rec(op, b.getInt(at + 9), b.getLong(at + 13), b.getLong(at + 21),
          f[at + 29] & 0xFF, wantValues ? Arrays.copyOfRange(f, at + 34, at + 34 + vlen) : null,
          vlen));
      off = end;
      e.goodEnd = end;
    }
    return e;
  }

  /**
   * §11.2: a known op (PUT_IF_ABSENT only from version 2), length = 26 + value length, a bounded
   * value, none for DELETE, and for SESSION 33 bytes (version 1: none).
   */
  private static boolean consistent(int version, long length, int op, long valueLength) {
    boolean v2 = version == VERSION;
    return (op == OP_PUT || op == OP_DELETE || op == OP_SESSION || v2 && op == OP_PUT_IF_ABSENT)
        && valueLength <= Protocol.MAX_VALUE_BYTES_LIMIT
        && length == RECORD_FIXED_BYTES - LENGTH_COUNTS_FROM + valueLength
        && (op != OP_DELETE || valueLength == 0)
        && (op != OP_SESSION || valueLength == (v2 ? SESSION_VALUE_BYTES : 0));
  }

  private static Expected torn(Expected e, long off) {
    e.outcome = LogRecordReader.Outcome.TORN;
    e.goodEnd = off;
    return e;
  }

  /** Rewrites the CRC of every consistent record that lies in the file, up to the first other. */
  private static void fixRecordCrcs(byte[] f) {
    if (f.length < HEADER_BYTES) {
      return;
    }
    ByteBuffer b = ByteBuffer.wrap(f);
    int version = b.getShort(MAGIC.length) & 0xFFFF;
    long off = HEADER_BYTES;
    while (f.length - off >= RECORD_FIXED_BYTES) {
      int at = (int) off;
      long length = Integer.toUnsignedLong(b.getInt(at + 4));
      long valueLength = Integer.toUnsignedLong(b.getInt(at + 30));
      long end = off + LENGTH_COUNTS_FROM + length;
      if (!consistent(version, length, f[at + 8] & 0xFF, valueLength) || end > f.length) {
        return;
      }
      b.putInt(at, crc(f, at + 4, (int) (end - off - 4)));
      off = end;
    }
  }

  private static int crc(byte[] b, int off, int len) {
    CRC32C c = new CRC32C();
    c.update(b, off, len);
    return (int) c.getValue();
  }

  private static void check(boolean ok, String format, Object... args) {
    if (!ok) {
      throw new AssertionError(String.format(format, args));
    }
  }

  // ---- Seeds: logs the real writer writes for the golden requests' writes.

  static Stream<Arguments> writtenLogs() throws IOException {
    byte[] log = goldenLog(false);
    List<Arguments> seeds = new ArrayList<>();
    seeds.add(seed("the golden writes' log", 0, log));
    seeds.add(seed("the golden writes' log compacted", 0, goldenLog(true)));
    seeds.add(seed("the golden writes' log, scanned without values", 4, log));
    seeds.add(seed("the header alone", 0, Arrays.copyOf(log, HEADER_BYTES)));
    for (int cut : new int[] {HEADER_BYTES + 10, HEADER_BYTES + RECORD_FIXED_BYTES + 1,
        log.length - 1}) {
      seeds.add(seed("torn at " + cut, 0, Arrays.copyOf(log, cut)));
    }
    seeds.add(seed("a zero-filled tail", 0, Arrays.copyOf(log, log.length + 100)));
    byte[] damaged = log.clone();
    damaged[HEADER_BYTES + RECORD_FIXED_BYTES] ^= 1; // The first record's value.
    seeds.add(seed("damaged in the middle", 0, damaged));
    seeds.add(seed("damaged in the middle, CRCs rewritten", 2, damaged));
    byte[] v1 = asVersion1(log);
    seeds.add(seed("the golden writes' log in version 1", 0, v1));
    seeds.add(seed("version 1, torn", 0, Arrays.copyOf(v1, v1.length - 1)));
    // A version 2 record in a version 1 file is damage: the file's version decides.
    seeds.add(seed("version 2 records under a version 1 header", 1,
        concat(Arrays.copyOf(v1, HEADER_BYTES), Arrays.copyOfRange(log, HEADER_BYTES, log.length))));
    return seeds.stream();
  }

  private static byte[] concat(byte[] a, byte[] b) {
    byte[] c = Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, c, a.length, b.length);
    return c;
  }

  private static Arguments seed(String name, int control, byte[] file) {
    byte[] input = new byte[1 + file.length];
    input[0] = (byte) control;
    System.arraycopy(file, 0, input, 1, file.length);
    return Arguments.of(Named.of(name, input));
  }

  /**
   * The log a Data Server writes for the golden request vectors' PUTs and DELETEs, applied in one
   * new session in the order of their ids (unsigned: the writes' order, §3.2), then a DELETE of
   * the first PUT's key (the golden DELETE's key is never stored): the header and records the
   * real BackupLog writes (SESSION, PUT_IF_ABSENT, PUT, DELETE), or its compaction (snapshot PUTs
   * and the session's SESSION record with its last write).
   */
  private static byte[] goldenLog(boolean compacted) throws IOException {
    List<ByteBuffer> writes = new ArrayList<>();
    for (byte[] v : GoldenVectors.load().values()) {
      Opcode op = v.length < Protocol.HEADER_BYTES || v[Protocol.OFF_MAGIC] != Protocol.REQUEST_MAGIC
          ? null : Opcode.of(v[Protocol.OFF_OPCODE]);
      if (op == Opcode.PUT || op == Opcode.DELETE) {
        writes.add(ByteBuffer.wrap(v));
      }
    }
    writes.sort((x, y) -> Long.compareUnsigned(x.getLong(Protocol.OFF_REQUEST_ID),
        y.getLong(Protocol.OFF_REQUEST_ID)));
    Path dir = Files.createTempDirectory("psiskv-fuzz-log");
    try {
      Engine engine = Engine.open(dir, FsyncPolicy.NO, false, 1);
      Sessions.Session s = engine.openSession(0, new byte[Protocol.SESSION_SECRET_BYTES], () -> {})
          .session();
      long id = 0;
      for (ByteBuffer v : writes) {
        int key = v.getInt(Protocol.OFF_KEY);
        id = v.getLong(Protocol.OFF_REQUEST_ID);
        if (v.get(Protocol.OFF_OPCODE) == Opcode.PUT.code()) {
          byte[] value = Arrays.copyOfRange(v.array(), Protocol.HEADER_BYTES, v.limit());
          engine.put(s, id, key, value, v.get(Protocol.OFF_FLAGS_OR_STATUS) != 0);
        } else {
          engine.delete(s, id, key);
        }
      }
      engine.delete(s, id + 1, writes.get(0).getInt(Protocol.OFF_KEY));
      engine.commit(true);
      if (compacted) {
        engine.log().compact(engine.liveData());
      }
      engine.close();
      return Files.readAllBytes(dir.resolve(BackupLog.FILE_NAME));
    } finally {
      try (Stream<Path> files = Files.list(dir)) {
        for (Path p : files.toList()) {
          Files.delete(p);
        }
      }
      Files.delete(dir);
    }
  }

  /**
   * A clean version 2 log as a version 1 writer would have written its records (§11.1): the
   * header's version 1, PUT_IF_ABSENT records as PUTs, SESSION records without a value.
   */
  private static byte[] asVersion1(byte[] log) {
    ByteBuffer in = ByteBuffer.wrap(log);
    ByteBuffer out = ByteBuffer.allocate(log.length);
    out.put(log, 0, HEADER_BYTES).putShort(LogFormat.OFF_HEADER_VERSION, (short) VERSION_1);
    out.putInt(OFF_HEADER_CRC, crc(out.array(), 0, OFF_HEADER_CRC));
    for (int at = HEADER_BYTES; at < log.length; ) {
      int op = log[at + LogFormat.OFF_OP];
      int valueLength = in.getInt(at + LogFormat.OFF_VALUE_LENGTH);
      byte[] value = op == OP_SESSION ? null
          : Arrays.copyOfRange(log, at + RECORD_FIXED_BYTES, at + RECORD_FIXED_BYTES + valueLength);
      byte[] fixed = new byte[RECORD_FIXED_BYTES];
      LogFormat.encodeRecord(fixed, 0, op == OP_PUT_IF_ABSENT ? OP_PUT : op,
          in.getInt(at + LogFormat.OFF_KEY), in.getLong(at + LogFormat.OFF_SESSION),
          in.getLong(at + LogFormat.OFF_REQUEST), log[at + LogFormat.OFF_RESULT], value);
      out.put(fixed);
      if (value != null) {
        out.put(value);
      }
      at += RECORD_FIXED_BYTES + valueLength;
    }
    return Arrays.copyOf(out.array(), out.position());
  }

  /** A read-only FileChannel over an array, which the test replaces for every input. */
  static final class BytesChannel extends FileChannel {
    byte[] bytes = new byte[0];

    @Override
    public int read(ByteBuffer dst, long position) {
      if (position >= bytes.length) {
        return -1;
      }
      int n = (int) Math.min(dst.remaining(), bytes.length - position);
      dst.put(bytes, (int) position, n);
      return n;
    }

    @Override
    public long size() {
      return bytes.length;
    }

    @Override
    public int read(ByteBuffer dst) {
      throw new UnsupportedOperationException("LogRecordReader reads at positions");
    }

    @Override
    public long read(ByteBuffer[] dsts, int offset, int length) {
      throw new UnsupportedOperationException();
    }

    @Override
    public int write(ByteBuffer src) {
      throw new UnsupportedOperationException();
    }

    @Override
    public long write(ByteBuffer[] srcs, int offset, int length) {
      throw new UnsupportedOperationException();
    }

    @Override
    public int write(ByteBuffer src, long position) {
      throw new UnsupportedOperationException();
    }

    @Override
    public long position() {
      return 0;
    }

    @Override
    public FileChannel position(long newPosition) {
      throw new UnsupportedOperationException();
    }

    @Override
    public FileChannel truncate(long size) {
      throw new UnsupportedOperationException();
    }

    @Override
    public void force(boolean metaData) {}

    @Override
    public long transferTo(long position, long count, WritableByteChannel target) {
      throw new UnsupportedOperationException();
    }

    @Override
    public long transferFrom(ReadableByteChannel src, long position, long count) {
      throw new UnsupportedOperationException();
    }

    @Override
    public MappedByteBuffer map(MapMode mode, long position, long size) {
      throw new UnsupportedOperationException();
    }

    @Override
    public FileLock lock(long position, long size, boolean shared) {
      throw new UnsupportedOperationException();
    }

    @Override
    public FileLock tryLock(long position, long size, boolean shared) {
      throw new UnsupportedOperationException();
    }

    @Override
    protected void implCloseChannel() {}
  }
}
