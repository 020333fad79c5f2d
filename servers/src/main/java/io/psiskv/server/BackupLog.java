package io.psiskv.server;

import static io.psiskv.server.LogFormat.*;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.OpenOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

/**
 * The Data Server's backup file: an append-only log of applied mutations (Bitcask / Redis AOF
 * style), replayed at start, compacted in the background. PROTOCOL.md §11 is the normative
 * description; this comment states the contracts where they are enforced.
 *
 * <h2>File format ({@code <dataDir>/psiskv.log}, big-endian, see {@link LogFormat})</h2>
 *
 * <pre>
 * file    = header *record
 * header  = magic:"PSISKVLG" version:u16(=1) flags:u16(=0) created-millis:u64 header-crc:u32
 * record  = crc:u32 length:u32 op:u8 key:u32 session:u64 request:u64 result:u8
 *           value-length:u32 value:byte[value-length]
 * op      = PUT:1 | DELETE:2 (tombstone) | SESSION:3 (exactly-once entry, no key change)
 * crc     = crc32c(length .. end of value);  length = 26 + value-length
 * </pre>
 *
 * <h2>Contract with the Data Server</h2>
 *
 * <pre>
 *   synchronized (stripe) {                   // the map stripe's monitor
 *     seq = log.appendPut(key, value, ...);   // throws if the log has failed: nothing applied
 *     map.put(key, value);                    // applied in memory, in log order for this key
 *   }
 *   log.awaitDurable(seq);                    // the record is on disk before the client hears OK
 *   answer OK                                 // on IOException answer SERVER_ERROR instead
 * </pre>
 *
 * <ul>
 *   <li>The append methods never do I/O and never wait for a sync: they encode the record (CRC
 *       included) before taking the one global {@code appendLock}, copy it into the pending batch
 *       (values of {@link #LARGE_VALUE_BYTES} or more are referenced, not copied: the caller must
 *       never modify an array it has appended), and return. Records therefore reach the file in the
 *       order of their append calls, which for one key is the order the stripe lock applied them.
 *   <li>{@link #awaitDurable} blocks (no spinning) until the writer thread has made the record as
 *       durable as the {@link FsyncPolicy} says, or throws if it never will be.
 *   <li>Reads never touch the log. A read on another connection can see a value before its write
 *       is durable (between apply and awaitDurable); if the process dies in that window the write
 *       is lost although it was read. Its writer was never answered OK, so no acknowledged write
 *       is lost.
 *   <li>Replay reports, for each record, the session id, request id and result the write was
 *       answered with; records of a compacted snapshot carry session {@link LogFormat#NO_SESSION}
 *       and the session table comes back as SESSION records.
 * </ul>
 *
 * <h2>Threads and locks</h2>
 *
 * <ul>
 *   <li>Caller threads (many): append under {@code appendLock} (held for a copy of at most 32 KiB);
 *       wait in {@link #awaitDurable} on {@code durableLock}/{@code durableChanged}.
 *   <li>One writer thread, {@code psiskv-log-writer}: owns the file channel, the file position and
 *       the failure-recovery state. Loop: take everything appended so far (one batch), write it
 *       with positional writes, force it (ALWAYS), publish {@code ackedSeq}, wake the waiters.
 *       While it forces, the next batch fills up: that is the group commit. It also performs the
 *       last step of a compaction (the file switch) and the retries after a disk failure.
 *   <li>At most one compactor (the caller of {@link #compact}, or a {@code psiskv-log-compactor}
 *       thread started by {@link #maybeCompact}): writes the snapshot to the temporary file.
 *   <li>{@code appendLock} guards the pending batch, the sequence counter, the failed/closing
 *       state and the compaction hand-over fields. {@code durableLock} guards nothing but the
 *       condition waiters sleep on; {@code ackedSeq} and {@code failure} are volatile.
 * </ul>
 *
 * <h2>Disk failure</h2>
 *
 * If a write or force fails, every record not yet durable (the failed batch and everything
 * appended since) is retained in memory and its waiters get an IOException: the client hears
 * SERVER_ERROR, never OK. The log enters the failed state: appends throw before the caller applies
 * anything, reads keep working. Every {@link #FAILURE_RETRY_INTERVAL_MILLIS} the writer reopens the
 * file, truncates it to where the retained records start, rewrites them from memory (never
 * trusting the page cache after a failed fsync), forces, and if that works leaves the failed state.
 * So an errored write may or may not end up applied: it is in memory at once, and it is on disk
 * after a successful retry, or lost if the process ends first — the usual contract of an
 * indeterminate outcome. In EVERYSEC and NO modes, writes acknowledged since the last good force
 * may be lost when a force fails (they were acknowledged on the OS's word, see {@link
 * FsyncPolicy}).
 */
final class BackupLog implements AutoCloseable {

  /** §11: the log file's name in the data directory. */
  static final String FILE_NAME = "psiskv.log";
  /** §11.5: the temporary file a compaction writes; deleted at open if a crash left it. */
  static final String COMPACT_FILE_NAME = FILE_NAME + ".compact";
  /** §11.3: prefix of the copy salvage keeps of a damaged log (followed by the time in millis). */
  static final String DAMAGED_FILE_PREFIX = FILE_NAME + ".damaged-";

  /** EVERYSEC: the writer forces the file at most this often. */
  static final long EVERYSEC_SYNC_INTERVAL_MILLIS = 1000;
  /** Pause between attempts to leave the failed state. */
  static final long FAILURE_RETRY_INTERVAL_MILLIS = 1000;
  /** Appends are copied into chunks of this size. */
  static final int CHUNK_BYTES = 64 * 1024;
  /** Values at least this long are written from the caller's array instead of being copied. */
  static final int LARGE_VALUE_BYTES = 32 * 1024;
  /**
   * The largest single write: the JDK copies a heap buffer into a temporary direct buffer of the
   * same size for each write (and caches it per thread), so a 64 MiB value is written in slices.
   */
  static final int WRITE_SLICE_BYTES = 1 << 20;
  /** Compaction trigger: never compact a log smaller than this. */
  static final long COMPACT_MIN_FILE_BYTES = 64L << 20;
  /** Compaction trigger: compact when the file is more than this many times the live data. */
  static final int COMPACT_GROWTH_FACTOR = 2;
  /** Compaction: copy the rewrite buffer in rounds until a round copies less than this. */
  static final long COMPACT_CATCHUP_BYTES = 1L << 20;
  /** Compaction: at most this many catch-up rounds before handing over to the writer. */
  static final int COMPACT_CATCHUP_ROUNDS = 8;

  /** Receives the records of the log at open, in file order. */
  interface Replay {
    /** A PUT: {@code value} is a fresh array the sink may keep. */
    void put(int key, byte[] value, long session, long requestId, int result);

    /** A DELETE (tombstone). */
    void delete(int key, long session, long requestId, int result);

    /**
     * A SESSION record: session {@code session}'s last applied write had id {@code requestId} and
     * was answered {@code result}. Written for the session table by compaction and by {@link
     * #appendSession}.
     */
    void session(long session, long requestId, int result);
  }

  /** What a compaction snapshots: the live map and the exactly-once session table. */
  interface LiveData {
    /** Number of live keys (for the trigger of {@link #maybeCompact}). */
    long keyCount();

    /** Sum of the live values' lengths (for the trigger of {@link #maybeCompact}). */
    long valueBytes();

    /**
     * Hands every live pair and every session-table entry to {@code sink}, each key at most once.
     * An implementation iterates stripe by stripe holding the stripe's lock (or copies a stripe's
     * (key, value reference) pairs under its lock and calls the sink after releasing it: values
     * are never mutated, so that is the same snapshot). Called on the compactor thread. The sink
     * writes to the OS when its 1 MiB buffer fills, never forces.
     */
    void forEach(SnapshotSink sink) throws IOException;
  }

  /** Receives a compaction snapshot; see {@link LiveData#forEach}. */
  interface SnapshotSink {
    void put(int key, byte[] value) throws IOException;

    void session(long session, long requestId, int result) throws IOException;
  }

  /** Opens the log's files; a test substitutes channels that fail or stall on command. */
  interface ChannelOpener {
    FileChannel open(Path path, Set<? extends OpenOption> options) throws IOException;
  }

  /** Options of {@link #open}. Mutable, used only during open; defaults suit production. */
  static final class OpenOptions {
    /**
     * §11.3: on damage before the tail, copy the file aside to {@code psiskv.log.damaged-<millis>}
     * and truncate at the first bad record instead of refusing to start.
     */
    boolean salvage;
    /** {@link #maybeCompact} leaves smaller files alone. */
    long compactMinFileBytes = COMPACT_MIN_FILE_BYTES;
    /** Pause between recovery attempts in the failed state. */
    long failureRetryIntervalMillis = FAILURE_RETRY_INTERVAL_MILLIS;
    /** Test hook: how files are opened. */
    ChannelOpener channelOpener = (path, options) -> FileChannel.open(path, options);
    /**
     * Test hook: called with a name at each step of a compaction ({@code compact.after-snapshot},
     * {@code compact.before-switch}, {@code compact.before-rename}, {@code compact.after-rename},
     * {@code compact.after-switch}); a crash test halts the process there.
     */
    Consumer<String> crashPoint = name -> {};

    static OpenOptions defaults() {
      return new OpenOptions();
    }

    OpenOptions salvage(boolean salvage) {
      this.salvage = salvage;
      return this;
    }
  }

  /** A snapshot of the counters, for monitoring and tests. */
  record Stats(
      /** Bytes of the current file (header included) written by the writer thread. */
      long fileBytes,
      /** Records in the current file (replayed or written since; reset by compaction). */
      long fileRecords,
      /** Append calls since open. */
      long appends,
      /** Batches written since open (one write loop and, in ALWAYS, one force each). */
      long batches,
      /** Forces of the log file for durability since open. */
      long syncs,
      /** Wall-clock time of the last successful force, 0 if none yet. */
      long lastSyncMillis,
      /** Completed compactions since open. */
      long compactions,
      /** Whether the log is in the failed state (appends refused). */
      boolean failed) {}

  /** Records taken by the writer in one go; immutable once taken. */
  static final class Batch {
    /** Byte ranges to write in order; never modified (writers write duplicates). */
    final ByteBuffer[] parts;
    final long endSeq;
    final int records;

    Batch(ByteBuffer[] parts, long endSeq, int records) {
      this.parts = parts;
      this.endSeq = endSeq;
      this.records = records;
    }
  }

  private final Path dir;
  private final Path logPath;
  private final Path compactPath;
  private final FsyncPolicy policy;
  private final OpenOptions opts;

  // ---- Guarded by appendLock.
  private final ReentrantLock appendLock = new ReentrantLock();
  /** The writer sleeps here; signalled when the first record of a batch arrives, and on events. */
  private final Condition writerWake = appendLock.newCondition();
  private byte[] chunk = new byte[CHUNK_BYTES];
  private int chunkPos;
  /** Start of the part of {@code chunk} appended but not yet sealed into {@code pendingParts}. */
  private int openStart;
  private final ArrayList<ByteBuffer> pendingParts = new ArrayList<>();
  private int pendingRecords;
  /** The sequence of the last append: the logical byte count appended since open. */
  private volatile long appendedSeq;
  private volatile long appends;
  /** Non-null while failed: appends throw, waiters of non-durable records throw. */
  private volatile IOException failure;
  private boolean closing;
  /** The compaction collecting a rewrite buffer, if any. */
  private Compactor compaction;
  /** A compaction ready for the writer to switch to. */
  private Compactor switchRequest;

  // ---- Owned by the writer thread.
  private FileChannel channel;
  private long filePos;
  private long writtenSeq;
  private boolean dirty;
  private long lastSyncNanos = System.nanoTime();
  /** Failed state: batches not durable, to be rewritten from {@code retainFilePos}. */
  private final ArrayList<Batch> retained = new ArrayList<>();
  private long retainFilePos;
  private long nextRetryNanos;
  private IOException closeError;

  // ---- Published by the writer thread.
  /** Records up to this sequence satisfy awaitDurable. */
  private volatile long ackedSeq;
  private volatile boolean writerExited;
  private volatile long fileBytes;
  private volatile long fileRecords;
  private volatile long batches;
  private volatile long syncs;
  private volatile long lastSyncMillis;
  private volatile long compactions;

  private final ReentrantLock durableLock = new ReentrantLock();
  private final Condition durableChanged = durableLock.newCondition();
  private final AtomicBoolean compactorBusy = new AtomicBoolean();
  private final Thread writer;

  private BackupLog(Path dir, FsyncPolicy policy, OpenOptions opts, FileChannel channel,
      long fileSize, long records) {
    this.dir = dir;
    this.logPath = dir.resolve(FILE_NAME);
    this.compactPath = dir.resolve(COMPACT_FILE_NAME);
    this.policy = policy;
    this.opts = opts;
    this.channel = channel;
    this.filePos = fileSize;
    this.fileBytes = fileSize;
    this.fileRecords = records;
    this.writer = new Thread(this::runWriter, "psiskv-log-writer");
    writer.setDaemon(true);
  }

  /**
   * Opens (or creates) {@code <dataDir>/psiskv.log} and replays every record into {@code sink}
   * before returning, by the recovery rule of PROTOCOL.md §11.3: a torn tail is truncated (one
   * warning names the offset and the bytes dropped); damage before the tail, a bad magic or an
   * unknown version throw an IOException that names the file and offset and says what to do,
   * unless {@link OpenOptions#salvage} is set for damage. If open throws, the sink may have seen a
   * prefix of the records: discard it. The caller must hold the {@link DataDirLock}.
   */
  static BackupLog open(Path dataDir, FsyncPolicy policy, Replay sink, OpenOptions opts)
      throws IOException {
    Objects.requireNonNull(policy);
    Objects.requireNonNull(sink);
    Files.createDirectories(dataDir);
    Path log = dataDir.resolve(FILE_NAME);
    Path tmp = dataDir.resolve(COMPACT_FILE_NAME);
    if (Files.deleteIfExists(tmp)) {
      Log.info(tmp + ": deleted the temporary file of an interrupted compaction");
    }
    if (!Files.exists(log)) {
      createEmpty(dataDir, log, tmp, opts);
    }
    FileChannel ch = opts.channelOpener.open(log,
        EnumSet.of(StandardOpenOption.READ, StandardOpenOption.WRITE));
    try {
      LogRecordReader reader = new LogRecordReader(ch, log);
      reader.readHeader();
      LogRecordReader.Scan scan = reader.scan(true, (op, key, session, request, result, value,
          valueLength) -> {
        if (op == OP_PUT) {
          sink.put(key, value, session, request, result);
        } else if (op == OP_DELETE) {
          sink.delete(key, session, request, result);
        } else {
          sink.session(session, request, result);
        }
      });
      if (scan.outcome == LogRecordReader.Outcome.TORN) {
        Log.info(String.format("%s: torn tail at offset %d (%s): truncated, %d bytes "
            + "dropped", log, scan.goodEnd, scan.reason, scan.badBytes()));
        truncate(ch, scan.goodEnd);
      } else if (scan.outcome == LogRecordReader.Outcome.DAMAGED) {
        if (!opts.salvage) {
          throw new IOException(damageMessage(log, scan));
        }
        Path copy = salvage(dataDir, log, ch, scan);
        Log.info(String.format("%s: damaged at offset %d (%s); salvaged: kept %d "
            + "records, dropped %d bytes, the original is in %s",
            log, scan.goodEnd, scan.reason, scan.records, scan.badBytes(), copy));
      }
      BackupLog bl = new BackupLog(dataDir, policy, opts, ch, scan.goodEnd, scan.records);
      bl.writer.start();
      return bl;
    } catch (IOException | RuntimeException | Error e) {
      ch.close();
      throw e;
    }
  }

  static String damageMessage(Path log, LogRecordReader.Scan scan) {
    return String.format(
        "%s is damaged at offset %d: %s. The %d bytes from there to the end of the file (%d "
            + "bytes) cannot be replayed, and they are not a torn tail, so the server refuses to "
            + "start; nothing was changed. Inspect the file with 'java -cp psiskv-server.jar "
            + "io.psiskv.server.BackupCheck %s'. To start with the %d records before the damage, "
            + "restart with salvage enabled (or run BackupCheck --fix): the file is first copied "
            + "to %s<time>.",
        log, scan.goodEnd, scan.reason, scan.badBytes(), scan.fileSize, log, scan.records,
        DAMAGED_FILE_PREFIX);
  }

  /** Copies the damaged file aside (forced), then truncates it at the first bad record. */
  static Path salvage(Path dataDir, Path log, FileChannel ch, LogRecordReader.Scan scan)
      throws IOException {
    Path copy = dataDir.resolve(DAMAGED_FILE_PREFIX + System.currentTimeMillis());
    Files.copy(log, copy);
    try (FileChannel c = FileChannel.open(copy, StandardOpenOption.WRITE)) {
      c.force(true);
    }
    fsyncDirectory(dataDir);
    truncate(ch, scan.goodEnd);
    return copy;
  }

  /** Cuts the file at {@code size} and forces the new length. */
  static void truncate(FileChannel ch, long size) throws IOException {
    ch.truncate(size);
    ch.force(true);
  }

  /**
   * Creates a log holding only a header, atomically: the header is written to the temporary file,
   * forced, and renamed into place, so {@code psiskv.log} never exists with a partial header.
   */
  private static void createEmpty(Path dataDir, Path log, Path tmp, OpenOptions opts)
      throws IOException {
    try (FileChannel c = opts.channelOpener.open(tmp,
        EnumSet.of(StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE))) {
      byte[] h = new byte[HEADER_BYTES];
      encodeHeader(h, System.currentTimeMillis());
      writeFully(c, ByteBuffer.wrap(h), 0);
      c.force(true);
    }
    Files.move(tmp, log, StandardCopyOption.ATOMIC_MOVE);
    fsyncDirectory(dataDir);
  }

  /** Forces a directory, making a rename or a new file in it durable (Linux: fsync on the dir). */
  static void fsyncDirectory(Path dir) throws IOException {
    try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
      d.force(true);
    }
  }

  // ----------------------------------------------------------------------------------------------
  // Appending (caller threads, inside the map stripe's critical section).

  /**
   * Appends a PUT record. No I/O: see the class comment. Call inside the stripe lock, before
   * applying the write to the map; if this throws, apply nothing and answer SERVER_ERROR.
   *
   * @param value not copied if {@link #LARGE_VALUE_BYTES} or longer: never modify it afterwards
   * @param result the wire status the request is answered with (PROTOCOL.md §5)
   * @return the record's sequence number, for {@link #awaitDurable}
   * @throws IOException if the log has failed or is closed; nothing was appended
   */
  long appendPut(int key, byte[] value, long session, long requestId, int result)
      throws IOException {
    Objects.requireNonNull(value, "value");
    return append(OP_PUT, key, value, session, requestId, result);
  }

  /** Appends a DELETE record (a tombstone); see {@link #appendPut}. */
  long appendDelete(int key, long session, long requestId, int result) throws IOException {
    return append(OP_DELETE, key, null, session, requestId, result);
  }

  /**
   * Appends a SESSION record: session {@code session} was answered {@code result} for request
   * {@code requestId} without a change to the map (e.g. KEY_EXISTS), for the exactly-once table.
   */
  long appendSession(long session, long requestId, int result) throws IOException {
    return append(OP_SESSION, 0, null, session, requestId, result);
  }

  /** Throws the reason appends are refused (failed or closed), or returns if they are accepted. */
  void checkWritable() throws IOException {
    appendLock.lock();
    try {
      checkWritableLocked();
    } finally {
      appendLock.unlock();
    }
  }

  private void checkWritableLocked() throws IOException {
    if (closing) {
      throw new IOException("backup log " + logPath + " is closed");
    }
    IOException f = failure;
    if (f != null) {
      throw new IOException("backup log refuses writes until the disk recovers: "
          + f.getMessage(), f);
    }
  }

  private long append(int op, int key, byte[] value, long session, long requestId, int result)
      throws IOException {
    if (result < 0 || result > 0xFF) {
      throw new IllegalArgumentException("result must be a wire status byte: " + result);
    }
    int valueLength = value == null ? 0 : value.length;
    if (valueLength > MAX_VALUE_BYTES) {
      throw new IllegalArgumentException("value of " + valueLength + " bytes exceeds "
          + MAX_VALUE_BYTES);
    }
    // Encode and checksum before taking the global lock: only copying happens under it.
    byte[] fixed = new byte[RECORD_FIXED_BYTES];
    encodeRecord(fixed, 0, op, key, session, requestId, result, value);
    boolean inline = valueLength < LARGE_VALUE_BYTES;
    appendLock.lock();
    try {
      checkWritableLocked();
      int need = RECORD_FIXED_BYTES + (inline ? valueLength : 0);
      if (chunk.length - chunkPos < need) {
        sealOpen();
        chunk = new byte[CHUNK_BYTES];
        chunkPos = 0;
        openStart = 0;
      }
      System.arraycopy(fixed, 0, chunk, chunkPos, RECORD_FIXED_BYTES);
      chunkPos += RECORD_FIXED_BYTES;
      if (inline) {
        if (valueLength > 0) {
          System.arraycopy(value, 0, chunk, chunkPos, valueLength);
          chunkPos += valueLength;
        }
      } else {
        sealOpen();
        pendingParts.add(ByteBuffer.wrap(value));
      }
      if (pendingRecords++ == 0) {
        writerWake.signal();
      }
      appends++;
      long seq = appendedSeq + RECORD_FIXED_BYTES + valueLength;
      appendedSeq = seq;
      return seq;
    } finally {
      appendLock.unlock();
    }
  }

  /** Moves the open region of the chunk into the pending parts. Caller holds appendLock. */
  private void sealOpen() {
    if (chunkPos > openStart) {
      pendingParts.add(ByteBuffer.wrap(chunk, openStart, chunkPos - openStart).slice());
      openStart = chunkPos;
    }
  }

  /** Takes everything appended so far as one batch. Caller holds appendLock. */
  private Batch takePending() {
    sealOpen();
    Batch b = new Batch(pendingParts.toArray(new ByteBuffer[0]), appendedSeq, pendingRecords);
    pendingParts.clear();
    pendingRecords = 0;
    return b;
  }

  // ----------------------------------------------------------------------------------------------
  // Waiting for durability (caller threads, after leaving the stripe lock).

  /**
   * Returns once the record with sequence {@code seq} is durable as the policy promises (ALWAYS:
   * written and forced; EVERYSEC, NO: written to the OS). Throws if it will not become so: the
   * log failed (see the class comment) or was closed first. Blocks without spinning.
   *
   * @throws InterruptedIOException if the thread is interrupted while waiting (interrupt status
   *     kept); the record's fate is then unknown to the caller
   */
  void awaitDurable(long seq) throws IOException {
    if (ackedSeq >= seq) {
      return;
    }
    if (seq <= 0 || seq > appendedSeq) {
      throw new IllegalArgumentException("no record has sequence " + seq);
    }
    durableLock.lock();
    try {
      while (ackedSeq < seq) {
        IOException f = failure;
        if (f != null) {
          throw new IOException("the record did not reach the disk: " + f.getMessage(), f);
        }
        if (writerExited) {
          throw new IOException("backup log " + logPath
              + " was closed before the record was durable");
        }
        try {
          durableChanged.await();
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new InterruptedIOException("interrupted while waiting for the backup log");
        }
      }
    } finally {
      durableLock.unlock();
    }
  }

  private void wakeWaiters() {
    durableLock.lock();
    try {
      durableChanged.signalAll();
    } finally {
      durableLock.unlock();
    }
  }

  // ----------------------------------------------------------------------------------------------
  // The writer thread.

  private void runWriter() {
    try {
      writerLoop();
    } catch (Throwable t) {
      // A bug, not a disk error: fail loudly rather than leave waiters hanging.
      Log.info("backup log writer thread died: " + t);
      appendLock.lock();
      try {
        failure = new IOException("backup log writer thread died: " + t, t);
      } finally {
        appendLock.unlock();
      }
      closeQuietly(channel);
      writerExited = true;
      wakeWaiters();
    }
  }

  private void writerLoop() {
    while (true) {
      Batch batch = null;
      Compactor toSwitch = null;
      List<Batch> switchRest = null;
      boolean retry = false;
      boolean sync = false;
      appendLock.lock();
      try {
        while (true) {
          long now = System.nanoTime();
          if (failure != null) {
            if (closing) {
              break;
            }
            if (now - nextRetryNanos >= 0) {
              retry = true;
              break;
            }
            awaitNanos(nextRetryNanos - now);
            continue;
          }
          if (switchRequest != null) {
            toSwitch = switchRequest;
            switchRequest = null;
            compaction = null;
            switchRest = toSwitch.takeRewrite();
            break;
          }
          if (pendingRecords > 0) {
            batch = takePending();
            if (compaction != null) {
              compaction.addRewrite(batch);
            }
            break;
          }
          if (closing) {
            break;
          }
          if (dirty && policy == FsyncPolicy.EVERYSEC) {
            long due = lastSyncNanos + TimeUnit.MILLISECONDS.toNanos(EVERYSEC_SYNC_INTERVAL_MILLIS);
            if (now - due >= 0) {
              sync = true;
              break;
            }
            awaitNanos(due - now);
          } else {
            writerWake.awaitUninterruptibly();
          }
        }
      } finally {
        appendLock.unlock();
      }
      if (retry) {
        retryAfterFailure();
      } else if (toSwitch != null) {
        switchTo(toSwitch, switchRest);
      } else if (sync) {
        syncWritten();
      } else if (batch != null) {
        writeBatch(batch);
      } else {
        finishAtClose();
        return;
      }
    }
  }

  private void awaitNanos(long nanos) {
    try {
      writerWake.awaitNanos(nanos);
    } catch (InterruptedException e) {
      // Nobody interrupts this private thread; the loop re-checks its state anyway.
    }
  }

  /**
   * Where the durability promise of each {@link FsyncPolicy} is kept: ALWAYS forces before it
   * acknowledges; the other modes acknowledge after the write.
   *
   * <p>force(false) is fdatasync(2) on Linux. It is enough for an appended file although the
   * append changes the file's size: fdatasync flushes "metadata needed to allow a subsequent data
   * retrieval", and the Linux man page names the file size as such metadata. What it skips is
   * mtime/atime, which recovery never reads. (Truncation, rare, uses force(true).)
   */
  private void writeBatch(Batch b) {
    long start = filePos;
    try {
      long end = writeParts(channel, b.parts, start);
      filePos = end;
      if (policy == FsyncPolicy.ALWAYS) {
        channel.force(false);
        noteSync();
      } else {
        dirty = true;
      }
    } catch (IOException e) {
      filePos = start;
      enterFailed(e, b, start);
      return;
    }
    writtenSeq = b.endSeq;
    fileBytes = filePos;
    fileRecords += b.records;
    batches++;
    ackedSeq = b.endSeq;
    wakeWaiters();
  }

  /** EVERYSEC: the periodic force. */
  private void syncWritten() {
    try {
      channel.force(false);
      noteSync();
    } catch (IOException e) {
      enterFailed(e, null, filePos);
    }
  }

  private void noteSync() {
    syncs++;
    dirty = false;
    lastSyncNanos = System.nanoTime();
    lastSyncMillis = System.currentTimeMillis();
  }

  /**
   * Enters the failed state: the failed batch (if any) and everything pending are retained for
   * the retry; waiters of non-durable records are woken to throw; a running compaction is aborted.
   */
  private void enterFailed(IOException cause, Batch failedBatch, long batchFilePos) {
    IOException f = new IOException("write to " + logPath + " failed: " + cause, cause);
    Compactor abort1;
    Compactor abort2;
    appendLock.lock();
    try {
      if (retained.isEmpty()) {
        retainFilePos = batchFilePos;
      }
      if (failedBatch != null) {
        retained.add(failedBatch);
      }
      if (pendingRecords > 0) {
        retained.add(takePending());
      }
      failure = f;
      nextRetryNanos = System.nanoTime()
          + TimeUnit.MILLISECONDS.toNanos(opts.failureRetryIntervalMillis);
      abort1 = compaction;
      abort2 = switchRequest;
      compaction = null;
      switchRequest = null;
    } finally {
      appendLock.unlock();
    }
    if (abort1 != null) {
      abort1.abort(f);
    }
    if (abort2 != null) {
      abort2.abort(f);
    }
    Log.info(String.format("backup log failed; refusing writes, retrying every %d ms: %s",
        opts.failureRetryIntervalMillis, cause));
    wakeWaiters();
  }

  /**
   * One attempt to leave the failed state: reopen, cut the file back to where the retained
   * records start, rewrite them from memory, force the file and the directory.
   */
  private void retryAfterFailure() {
    long end;
    try {
      closeQuietly(channel);
      channel = opts.channelOpener.open(logPath,
          EnumSet.of(StandardOpenOption.READ, StandardOpenOption.WRITE));
      if (channel.size() < retainFilePos) {
        throw new IOException(logPath + " is shorter (" + channel.size()
            + " bytes) than its durable part (" + retainFilePos + " bytes)");
      }
      channel.truncate(retainFilePos);
      end = retainFilePos;
      for (Batch b : retained) {
        end = writeParts(channel, b.parts, end);
      }
      channel.force(true);
      fsyncDirectory(dir);
    } catch (IOException e) {
      appendLock.lock();
      try {
        nextRetryNanos = System.nanoTime()
            + TimeUnit.MILLISECONDS.toNanos(opts.failureRetryIntervalMillis);
      } finally {
        appendLock.unlock();
      }
      Log.info("backup log still failing: " + e);
      return;
    }
    long seq = writtenSeq;
    long records = 0;
    for (Batch b : retained) {
      seq = b.endSeq;
      records += b.records;
    }
    int rewritten = retained.size();
    retained.clear();
    filePos = end;
    fileBytes = end;
    fileRecords += records;
    writtenSeq = seq;
    noteSync();
    appendLock.lock();
    try {
      failure = null;
    } finally {
      appendLock.unlock();
    }
    ackedSeq = seq;
    Log.info(String.format("backup log recovered: rewrote %d records (%d batches) and "
        + "accepts writes again", records, rewritten));
    wakeWaiters();
  }

  /**
   * The last step of a compaction, on the writer thread between two batches so that no record
   * is acknowledged from a file that is about to be replaced: copy the rest of the rewrite buffer
   * to the new file, force it, rename it over the log, force the directory, and write to it from
   * now on. Appends are not blocked meanwhile: they collect in the pending batch, which the next
   * loop writes to the new file.
   */
  private void switchTo(Compactor c, List<Batch> rest) {
    boolean renamed = false;
    try {
      c.writeBatches(rest);
      c.force();
      opts.crashPoint.accept("compact.before-rename");
      Files.move(compactPath, logPath, StandardCopyOption.ATOMIC_MOVE);
      renamed = true;
      opts.crashPoint.accept("compact.after-rename");
      fsyncDirectory(dir);
    } catch (IOException e) {
      if (!renamed) {
        // The live log was not touched: the compaction fails, the log goes on.
        c.abort(e);
        return;
      }
      // The new file is the log now but its name may not be durable: use it, but fail the log
      // until a retry has forced the directory.
      adopt(c);
      enterFailed(e, null, filePos);
      c.abort(e);
      return;
    }
    adopt(c);
    opts.crashPoint.accept("compact.after-switch");
    c.finish();
  }

  private void adopt(Compactor c) {
    FileChannel old = channel;
    channel = c.adopt();
    filePos = c.position();
    fileBytes = filePos;
    fileRecords = c.records();
    compactions++;
    noteSync();
    closeQuietly(old);
  }

  private void finishAtClose() {
    IOException err = failure;
    if (err == null) {
      try {
        channel.force(true);
        noteSync();
      } catch (IOException e) {
        err = e;
        failure = new IOException("final force of " + logPath + " failed: " + e, e);
      }
    } else if (!retained.isEmpty()) {
      long lost = 0;
      for (Batch b : retained) {
        lost += b.records;
      }
      Log.info("backup log closed while failed: " + lost + " records never reached the disk");
    }
    closeError = err;
    closeQuietly(channel);
    writerExited = true;
    wakeWaiters();
  }

  // ----------------------------------------------------------------------------------------------
  // Compaction.

  /**
   * Starts a compaction in a background thread if the log is much larger than the live data: file
   * larger than {@link OpenOptions#compactMinFileBytes} and more than {@link
   * #COMPACT_GROWTH_FACTOR} times the size a fresh log of the live data would have. Cheap; the
   * Data Server may call it after every write or from a timer.
   *
   * @return whether a compaction was started
   */
  boolean maybeCompact(LiveData live) {
    long size = fileBytes;
    if (size < opts.compactMinFileBytes || failure != null || writerExited) {
      return false;
    }
    long liveBytes = HEADER_BYTES + live.keyCount() * RECORD_FIXED_BYTES + live.valueBytes();
    if (size <= COMPACT_GROWTH_FACTOR * liveBytes) {
      return false;
    }
    if (!compactorBusy.compareAndSet(false, true)) {
      return false;
    }
    Thread t = new Thread(() -> {
      try {
        compactOwned(live);
      } catch (IOException | RuntimeException e) {
        Log.info("background compaction of " + logPath + " failed: " + e);
      } finally {
        compactorBusy.set(false);
      }
    }, "psiskv-log-compactor");
    t.setDaemon(true);
    t.start();
    return true;
  }

  /**
   * Rewrites the log as a snapshot of {@code live} plus the records appended meanwhile, in the
   * caller's thread (tests, an operator command). Appends and acknowledgements go on meanwhile.
   *
   * @throws IOException if the compaction failed or was aborted; the log is then unchanged
   */
  void compact(LiveData live) throws IOException {
    if (!compactorBusy.compareAndSet(false, true)) {
      throw new IOException("a compaction of " + logPath + " is already running");
    }
    try {
      compactOwned(live);
    } finally {
      compactorBusy.set(false);
    }
  }

  /**
   * The compaction scheme (Redis AOF rewrite), PROTOCOL.md §11.5.
   *
   * <p>Why the result is exact: at start every later batch the writer takes is also kept in the
   * rewrite buffer, so the new file holds a snapshot taken after the start followed by (at least)
   * every record appended after the start, in log order. Take a key k. If some record for k was
   * appended after the start, replay ends with the last of them, which is k's current state,
   * whatever the snapshot held. If none was, k did not change after the start, and the snapshot
   * read k after the start (under k's stripe lock, which orders it with k's appends), so it holds
   * k's current state. Records from just before the start that the buffer may also hold are
   * older than every later record for their key, and replay is ordered and idempotent, so they
   * change nothing. The same argument holds for each session's table entry.
   */
  private void compactOwned(LiveData live) throws IOException {
    Compactor c = new Compactor(compactPath, opts.channelOpener);
    long t0 = System.nanoTime();
    long before = fileBytes;
    try {
      appendLock.lock();
      try {
        checkWritableLocked();
        compaction = c;
      } finally {
        appendLock.unlock();
      }
      c.create(System.currentTimeMillis());
      c.writeSnapshot(live);
      opts.crashPoint.accept("compact.after-snapshot");
      for (int round = 0; round < COMPACT_CATCHUP_ROUNDS; round++) {
        List<Batch> batches;
        appendLock.lock();
        try {
          batches = c.takeRewrite();
        } finally {
          appendLock.unlock();
        }
        if (c.writeBatches(batches) < COMPACT_CATCHUP_BYTES) {
          break;
        }
      }
      c.force();
      opts.crashPoint.accept("compact.before-switch");
      appendLock.lock();
      try {
        c.checkAborted();
        switchRequest = c;
        writerWake.signal();
      } finally {
        appendLock.unlock();
      }
      c.awaitFinished();
    } catch (IOException | RuntimeException | Error e) {
      appendLock.lock();
      try {
        if (compaction == c) {
          compaction = null;
        }
        if (switchRequest == c) {
          switchRequest = null;
        }
      } finally {
        appendLock.unlock();
      }
      c.discard();
      throw e;
    }
    Log.info(String.format("compacted %s: %d -> %d bytes, %d records, in %d ms", logPath,
        before, c.position(), c.records(),
        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0)));
  }

  // ----------------------------------------------------------------------------------------------
  // Stats and close.

  Stats stats() {
    return new Stats(fileBytes, fileRecords, appends, batches, syncs, lastSyncMillis, compactions,
        failure != null);
  }

  FsyncPolicy policy() {
    return policy;
  }

  Path path() {
    return logPath;
  }

  /**
   * Refuses further appends, aborts a running compaction, writes everything appended, forces the
   * file (in every mode) and closes it. Idempotent.
   *
   * @throws IOException if the log was failed, or the final write or force failed: the records
   *     not yet durable then are lost (their waiters got an exception)
   */
  @Override
  public void close() throws IOException {
    Compactor abort1;
    Compactor abort2;
    appendLock.lock();
    try {
      closing = true;
      abort1 = compaction;
      abort2 = switchRequest;
      compaction = null;
      switchRequest = null;
      writerWake.signal();
    } finally {
      appendLock.unlock();
    }
    IOException closed = new IOException("backup log " + logPath + " is closing");
    if (abort1 != null) {
      abort1.abort(closed);
    }
    if (abort2 != null) {
      abort2.abort(closed);
    }
    boolean interrupted = false;
    while (true) {
      try {
        writer.join();
        break;
      } catch (InterruptedException e) {
        interrupted = true;
      }
    }
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
    if (closeError != null) {
      throw new IOException("backup log " + logPath + " closed with an error: " + closeError,
          closeError);
    }
  }

  // ----------------------------------------------------------------------------------------------
  // I/O helpers.

  /** Writes each part (a duplicate; the parts stay untouched) from {@code position} on. */
  static long writeParts(FileChannel ch, ByteBuffer[] parts, long position) throws IOException {
    for (ByteBuffer p : parts) {
      position = writeFully(ch, p.duplicate(), position);
    }
    return position;
  }

  /**
   * Writes all of {@code src} at {@code position}. Loops because a positional write may write
   * fewer bytes than asked; writes at most {@link #WRITE_SLICE_BYTES} per call.
   */
  static long writeFully(FileChannel ch, ByteBuffer src, long position) throws IOException {
    int end = src.limit();
    while (src.position() < end) {
      src.limit(Math.min(end, src.position() + WRITE_SLICE_BYTES));
      while (src.hasRemaining()) {
        position += ch.write(src, position);
      }
      src.limit(end);
    }
    return position;
  }

  static void closeQuietly(FileChannel ch) {
    if (ch == null) {
      return;
    }
    try {
      ch.close();
    } catch (IOException e) {
      // Closing a channel we are abandoning; nothing more to do with it.
    }
  }
}
