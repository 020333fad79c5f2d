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
import java.util.concurrent.CopyOnWriteArrayList;
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
 * <h2>File format ({@code <dataDir>/psiskv.data}, big-endian, see {@link LogFormat})</h2>
 *
 * <pre>
 * file    = header *record
 * header  = magic:"PSISKVLG" version:u16(=2) flags:u16(=0) created-millis:u64 header-crc:u32
 * record  = crc:u32 length:u32 op:u8 key:u32 session:u64 request:u64 result:u8
 *           value-length:u32 value:byte[value-length]
 * op      = PUT:1 | DELETE:2 (tombstone) | SESSION:3 (a session's secret and last write, no
 *           key change) | PUT_IF_ABSENT:4
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
 *   ... later, no lock held:
 *   log.commit(...) / log.awaitDurable(seq)  // the record is on disk before the client hears OK
 *   answer OK                                // SERVER_ERROR instead if the record failed
 * </pre>
 *
 * <ul>
 *   <li>The append methods never do I/O and never wait: they encode the record (CRC included)
 *       before taking the one global {@code appendLock}, copy it into the pending batch (values of
 *       {@link #LARGE_VALUE_BYTES} or more are referenced, not copied: the caller must never modify
 *       an array it has appended), and return its sequence. Records therefore reach the file in
 *       the order of their append calls, which for one key is the order the stripe lock applied
 *       them.
 *   <li><b>Group commit is driven by the callers</b>, as Redis writes its AOF before its event
 *       loop sleeps: {@link #commit} takes everything appended so far as one batch, writes it,
 *       forces it (ALWAYS), publishes {@link #durableSeq} and tells the {@linkplain
 *       #addCommitListener listeners}. One caller at a time holds the file ({@code fileLock});
 *       {@code commit(false)} returns false at once when another caller holds it, and that
 *       caller's commit (or the next one) covers the waiting records. An event loop commits once
 *       per wake-up for every write it read; a blocking connection thread calls {@link
 *       #awaitDurable}, which commits itself or waits for the committing thread. No thread
 *       hand-off lies on the write path: the thread that needs the force does it.
 *   <li>Reads never touch the log. A read on another connection can see a value before its write
 *       is durable (between apply and commit); if the process dies in that window the write is
 *       lost although it was read. Its writer was never answered OK, so no acknowledged write is
 *       lost.
 *   <li>Replay reports, for each record, the session id, request id and result the write was
 *       answered with; records of a compacted snapshot carry session {@link LogFormat#NO_SESSION}
 *       and the session table comes back as SESSION records. A version 1 file is read without
 *       its sessions and must be compacted before the first append ({@link #isOlderFormat}).
 * </ul>
 *
 * <h2>Threads and locks</h2>
 *
 * <ul>
 *   <li>Appending threads (many): under {@code appendLock}, held for a copy of at most 32 KiB.
 *   <li>The committer: whichever thread holds {@code fileLock}. It owns the file channel, the
 *       file position and the failure-recovery state while it holds the lock; it takes the
 *       pending batch under {@code appendLock}, then writes and forces with only {@code fileLock}
 *       held, so appends go on during the force and form the next batch.
 *   <li>{@code psiskv-log-sync}, one background thread: the commits callers hand it ({@link
 *       #requestCommit}), the periodic force of EVERYSEC and the retries after a disk failure,
 *       each under {@code fileLock}.
 *   <li>At most one compactor (the caller of {@link #compact}, or a {@code psiskv-log-compactor}
 *       thread started by {@link #maybeCompact}): writes the snapshot to the temporary file, then
 *       takes {@code fileLock} for the switch.
 *   <li>Lock order: {@code fileLock}, then {@code appendLock}, then {@code durableLock}. {@code
 *       appendLock} guards the pending batch, the sequence counter, the failed/closing state and
 *       the compaction hand-over; {@code durableLock} guards nothing but the condition blocking
 *       waiters sleep on. {@code durableSeq}, {@code failure} and the counters are volatile.
 * </ul>
 *
 * <h2>Disk failure</h2>
 *
 * If a write or force fails, every record not yet durable (the failed batch and everything
 * appended since) is retained in memory and its waiters are told: the client hears SERVER_ERROR,
 * never OK. The log enters the failed state: appends throw before the caller applies anything,
 * reads keep working. Every {@link #FAILURE_RETRY_INTERVAL_MILLIS} the sync thread reopens the
 * file, truncates it to where the retained records start, rewrites them from memory (never
 * trusting the page cache after a failed fsync), forces, and if that works leaves the failed state.
 * So an errored write may or may not end up applied: it is in memory at once, and it is on disk
 * after a successful retry, or lost if the process ends first — the usual contract of an
 * indeterminate outcome. In EVERYSEC and NO modes, writes acknowledged since the last good force
 * may be lost when a force fails (they were acknowledged on the OS's word, see {@link
 * FsyncPolicy}).
 */
final class BackupLog implements AutoCloseable {

  /**
   * §11: the log file's name in the data directory. Not {@code *.log}: log-rotation globs take
   * text logs by that suffix (the {@code front.log} beside it), and rotating or compressing this
   * file would lose the store.
   */
  static final String FILE_NAME = "psiskv.data";
  /**
   * §11: the file's name before 0.1.0 (taken by {@code *.log} globs): a Data Server finding it
   * alone renames it to {@link #FILE_NAME} at start ({@link LogRecovery#adoptOldName}).
   */
  static final String OLD_FILE_NAME = "psiskv.log";
  /** §11.5: the temporary file a compaction writes; deleted at open if a crash left it. */
  static final String COMPACT_FILE_NAME = FILE_NAME + ".compact";
  /** §11.3: prefix of the copy salvage keeps of a damaged log (followed by the time in millis). */
  static final String DAMAGED_FILE_PREFIX = FILE_NAME + ".damaged-";

  /** EVERYSEC: the sync thread forces the file at most this often. */
  static final long EVERYSEC_SYNC_INTERVAL_MILLIS = 1000;
  /** Pause between attempts to leave the failed state. */
  static final long FAILURE_RETRY_INTERVAL_MILLIS = 1000;
  /** Appends are copied into chunks of this size. */
  static final int CHUNK_BYTES = 64 * 1024;
  /** Values at least this long are written from the caller's array instead of being copied. */
  static final int LARGE_VALUE_BYTES = 32 * 1024;
  /** Compaction trigger: never compact a log smaller than this. */
  static final long COMPACT_MIN_FILE_BYTES = 64L << 20;
  /** Compaction trigger: compact when the file is more than this many times the live data. */
  static final int COMPACT_GROWTH_FACTOR = 2;
  /** Compaction: copy the rewrite buffer in rounds until a round copies less than this. */
  static final long COMPACT_CATCHUP_BYTES = 1L << 20;
  /** Compaction: at most this many catch-up rounds before the switch. */
  static final int COMPACT_CATCHUP_ROUNDS = 8;

  /** Receives the records of the log at open, in file order. */
  interface Replay {
    /** A PUT: {@code value} is a fresh array the sink may keep. */
    void put(int key, byte[] value, long session, long requestId, int result);

    /**
     * A PUT_IF_ABSENT record: a PUT without the overwrite flag that stored its value. It changes
     * the map as a PUT does; only the session's record of its last write tells them apart.
     */
    default void putIfAbsent(int key, byte[] value, long session, long requestId, int result) {
      put(key, value, session, requestId, result);
    }

    /** A DELETE (tombstone). */
    void delete(int key, long session, long requestId, int result);

    /**
     * A SESSION record: session {@code session} exists with the secret and last write in {@code
     * info} ({@link LogFormat#SESSION_VALUE_BYTES} bytes, {@link LogFormat#OFF_SV_SECRET} and
     * on); its last write had id {@code requestId} (0 and last op 0: none yet) and was answered
     * {@code result}. Written before a session's first write ({@link #appendSession}) and for the
     * session table by compaction. A version 1 file's records reach the sink with session
     * {@link LogFormat#NO_SESSION} and without its SESSION records: they hold no secret.
     */
    void session(long session, long requestId, int result, byte[] info);
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

    /** A session-table entry; {@code info} as for {@link Replay#session}. */
    void session(long session, long requestId, int result, byte[] info) throws IOException;
  }

  /** Opens the log's files; a test substitutes channels that fail or stall on command. */
  interface ChannelOpener {
    FileChannel open(Path path, Set<? extends OpenOption> options) throws IOException;
  }

  /** Options of {@link #open}. Mutable, used only during open; defaults suit production. */
  static final class OpenOptions {
    /**
     * §11.3: on damage before the tail, copy the file aside to {@code
     * psiskv.data.damaged-<millis>} and truncate at the first bad record instead of refusing to
     * start.
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
      /** Bytes of the current file (header included) written by the committers. */
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
      boolean failed,
      /** Commit forces since open (ALWAYS: one per batch; EVERYSEC: the periodic ones). */
      long commitSyncs,
      /** Records those forces made durable: records per fsync is this over commitSyncs. */
      long commitSyncRecords,
      /** Median duration of a commit force, microseconds (within 12.5 %), 0 if none yet. */
      long commitSyncP50Micros,
      /** 99th percentile of the same. */
      long commitSyncP99Micros) {}

  /** Records taken by one commit; immutable once taken. */
  static final class Batch {
    /** Byte ranges to write in order; never modified (each write uses a duplicate). */
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
  /** The sync thread sleeps here; signalled on a failure and at close. */
  private final Condition syncWake = appendLock.newCondition();
  private byte[] chunk = new byte[CHUNK_BYTES];
  private int chunkPos;
  /** Start of the part of {@code chunk} appended but not yet sealed into {@code pendingParts}. */
  private int openStart;
  private final ArrayList<ByteBuffer> pendingParts = new ArrayList<>();
  private int pendingRecords;
  /** The sequence of the last append: the logical byte count appended since open. */
  private volatile long appendedSeq;
  /** The sequence of the last record taken into a batch (written, being written, or retained). */
  private volatile long takenSeq;
  private volatile long appends;
  /** Non-null while failed: appends throw, waiters of non-durable records are failed. */
  private volatile IOException failure;
  private volatile boolean closing;
  /** The compaction collecting a rewrite buffer, if any. */
  private Compactor compaction;
  /** A caller asked the sync thread to commit ({@link #requestCommit}); volatile for its check. */
  private volatile boolean commitRequested;
  /** EVERYSEC: when the sync thread looks for unforced writes next. */
  private long nextPeriodicNanos =
      System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(EVERYSEC_SYNC_INTERVAL_MILLIS);

  // ---- Guarded by fileLock: the committer's state.
  private final ReentrantLock fileLock = new ReentrantLock();
  private FileChannel channel;
  private long filePos;
  private boolean dirty;
  private long lastSyncNanos = System.nanoTime();
  /** EVERYSEC and NO: records written since the last commit force. */
  private long unsyncedRecords;
  /** Failed state: batches not durable, to be rewritten from {@code retainFilePos}. */
  private final ArrayList<Batch> retained = new ArrayList<>();
  private long retainFilePos;
  private long nextRetryNanos;
  private boolean channelClosed;
  private IOException closeError;

  // ---- Published by the committer.
  /** Records up to this sequence are as durable as the policy promises. */
  private volatile long durableSeq;
  private volatile boolean closed;
  private volatile long fileBytes;
  private volatile long fileRecords;
  private volatile long batches;
  private volatile long syncs;
  private volatile long lastSyncMillis;
  private volatile long compactions;
  private volatile long commitSyncRecords;
  /** Durations of the commit forces (ALWAYS batches, EVERYSEC periodic), for STATS. */
  private final LatencyHistogram commitSyncLatency = new LatencyHistogram();
  /** See {@link #isOlderFormat}. */
  private volatile boolean olderFormat;

  private final ReentrantLock durableLock = new ReentrantLock();
  /** Signalled after every commit, failure and close: blocking waiters re-check. */
  private final Condition durableChanged = durableLock.newCondition();
  private final List<Runnable> commitListeners = new CopyOnWriteArrayList<>();
  private final AtomicBoolean compactorBusy = new AtomicBoolean();
  private final Thread syncThread;

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
    this.syncThread = new Thread(this::runSyncThread, "psiskv-log-sync");
    syncThread.setDaemon(true);
  }


  /**
   * Opens (or creates) {@code <dataDir>/psiskv.data} and replays every record into {@code sink}
   * before returning, by the recovery rule of PROTOCOL.md §11.3 ({@link LogRecovery}): a torn
   * tail is truncated (one warning names the offset and the bytes dropped); damage before the
   * tail, a bad magic or an unknown version throw an IOException that names the file and offset
   * and says what to do, unless {@link OpenOptions#salvage} is set for damage. If open throws, the
   * sink may have seen a prefix of the records: discard it. The caller must hold the {@link
   * DataDirLock}.
   */
  static BackupLog open(Path dataDir, FsyncPolicy policy, Replay sink, OpenOptions opts)
      throws IOException {
    Objects.requireNonNull(policy);
    Objects.requireNonNull(sink);
    LogRecovery.Recovered file = LogRecovery.recover(dataDir, sink, opts);
    try {
      BackupLog bl = new BackupLog(dataDir, policy, opts, file.channel(), file.fileBytes(),
          file.records());
      bl.olderFormat = file.olderFormat();
      bl.syncThread.start();
      return bl;
    } catch (RuntimeException | Error e) {
      file.channel().close();
      throw e;
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
   * @return the record's sequence number, for {@link #awaitDurable} and {@link #isDurable}
   * @throws IOException if the log has failed or is closed; nothing was appended
   */
  long appendPut(int key, byte[] value, long session, long requestId, int result)
      throws IOException {
    Objects.requireNonNull(value, "value");
    return append(OP_PUT, key, value, session, requestId, result);
  }

  /** Appends a PUT_IF_ABSENT record (a PUT without the overwrite flag stored): {@link #appendPut}. */
  long appendPutIfAbsent(int key, byte[] value, long session, long requestId, int result)
      throws IOException {
    Objects.requireNonNull(value, "value");
    return append(OP_PUT_IF_ABSENT, key, value, session, requestId, result);
  }

  /** Appends a DELETE record (a tombstone); see {@link #appendPut}. */
  long appendDelete(int key, long session, long requestId, int result) throws IOException {
    return append(OP_DELETE, key, null, session, requestId, result);
  }

  /**
   * Appends a SESSION record ({@link Replay#session}): before a session's first write record, so
   * that the session and its secret come back with its writes after a crash.
   *
   * @param info {@link LogFormat#encodeSessionValue}'s {@link LogFormat#SESSION_VALUE_BYTES}
   */
  long appendSession(long session, long requestId, int result, byte[] info) throws IOException {
    if (info.length != SESSION_VALUE_BYTES) {
      throw new IllegalArgumentException("a SESSION record's value has " + SESSION_VALUE_BYTES
          + " bytes, not " + info.length);
    }
    return append(OP_SESSION, 0, info, session, requestId, result);
  }

  /**
   * Whether the file was opened in an older format ({@link LogFormat#VERSION_1}): it must be
   * rewritten ({@link #compact}) before the first append, which {@link Engine#open} does.
   */
  boolean isOlderFormat() {
    return olderFormat;
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
      pendingRecords++;
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
    takenSeq = b.endSeq;
    return b;
  }

  // ----------------------------------------------------------------------------------------------
  // Committing: the group commit, driven by the threads that need it.

  /**
   * Whether records were appended that no commit has taken yet. An event loop commits at the end
   * of a wake-up while this is true. Cheap (two volatile reads).
   */
  boolean hasUncommitted() {
    return appendedSeq != takenSeq;
  }

  /**
   * Whether the record with sequence {@code seq} is as durable as the policy promises (ALWAYS:
   * written and forced; EVERYSEC, NO: written to the OS). {@code 0} is always durable: a write that
   * appended nothing.
   */
  boolean isDurable(long seq) {
    return durableSeq >= seq;
  }

  /**
   * Whether the record with sequence {@code seq} will not become durable in the present state:
   * the log has failed (or is closed) and the record is not durable. Its client is answered
   * SERVER_ERROR (the record may still reach the disk after a retry: BackupLog's contract).
   */
  boolean hasFailed(long seq) {
    return durableSeq < seq && (failure != null || closed);
  }

  /**
   * The group commit: writes every record appended so far as one batch and forces it as the
   * policy says, then publishes the new durable sequence and tells the listeners. Only one
   * thread commits at a time (it holds the file).
   *
   * <p>This is where the durability promise of each {@link FsyncPolicy} is kept: ALWAYS forces
   * before it publishes; the other modes publish after the write. force(false) is fdatasync(2)
   * on Linux. It is enough for an appended file although the append changes the file's size:
   * fdatasync flushes "metadata needed to allow a subsequent data retrieval", and the Linux man
   * page names the file size as such metadata. What it skips is mtime/atime, which recovery never
   * reads. (Truncation, rare, uses force(true).)
   *
   * @param wait if another thread is committing, wait for it and then commit what is left; if
   *     false, return false at once instead (that thread's commit, or the next one, covers the
   *     caller's records: register a {@linkplain #addCommitListener listener} to hear of it)
   * @return true if this call committed (or found nothing to commit), false if it did not wait
   */
  boolean commit(boolean wait) {
    if (wait) {
      fileLock.lock();
    } else if (!fileLock.tryLock()) {
      return false;
    }
    try {
      commitLocked();
    } finally {
      fileLock.unlock();
    }
    committed();
    return true;
  }

  /** Caller holds fileLock. Writes (and forces) what is pending, unless failed or closed. */
  private void commitLocked() {
    Batch batch = null;
    appendLock.lock();
    try {
      if (failure != null || channelClosed || pendingRecords == 0) {
        return;
      }
      batch = takePending();
      if (compaction != null) {
        compaction.addRewrite(batch);
      }
    } finally {
      appendLock.unlock();
    }
    writeBatch(batch);
  }

  /** Caller holds fileLock: writes one batch at the end of the file and forces it (ALWAYS). */
  private void writeBatch(Batch b) {
    long start = filePos;
    try {
      long end = LogFiles.writeParts(channel, b.parts, start);
      filePos = end;
      if (policy == FsyncPolicy.ALWAYS) {
        long t0 = System.nanoTime();
        channel.force(false);
        noteCommitSync(t0, b.records);
      } else {
        dirty = true;
        unsyncedRecords += b.records;
      }
    } catch (IOException e) {
      filePos = start;
      enterFailed(e, b, start);
      return;
    }
    fileBytes = filePos;
    fileRecords += b.records;
    batches++;
    durableSeq = b.endSeq;
  }

  /**
   * Returns once the record with sequence {@code seq} is durable as the policy promises, committing
   * it itself when no other thread is committing (so a lone writer pays one force and no thread
   * hand-off), else waiting for that thread. Blocks without spinning.
   *
   * @throws IOException if the record will not become durable: the log failed (see the class
   *     comment) or was closed first
   * @throws InterruptedIOException if the thread is interrupted while waiting (interrupt status
   *     kept); the record's fate is then unknown to the caller
   */
  void awaitDurable(long seq) throws IOException {
    if (seq > appendedSeq) {
      throw new IllegalArgumentException("no record has sequence " + seq);
    }
    while (durableSeq < seq) {
      checkDurable(seq);
      if (commit(false)) {
        continue;
      }
      durableLock.lock();
      try {
        // The committer signals after it releases the file, under durableLock: either it has
        // not signalled yet (this thread is woken) or the checks below see its work.
        while (durableSeq < seq && fileLock.isLocked() && failure == null && !closed) {
          durableChanged.await();
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new InterruptedIOException("interrupted while waiting for the backup log");
      } finally {
        durableLock.unlock();
      }
    }
  }

  /** Throws if the record {@code seq}, not yet durable, will not become so in this state. */
  private void checkDurable(long seq) throws IOException {
    IOException f = failure;
    if (f != null && durableSeq < seq) {
      throw new IOException("the record did not reach the disk: " + f.getMessage(), f);
    }
    if (closed && durableSeq < seq) {
      throw new IOException("backup log " + logPath
          + " was closed before the record was durable");
    }
  }

  /**
   * Registers {@code listener} to be called after every commit, failure and close, by the thread
   * that did it, with no lock held. A listener must be quick and must not block (an event loop's
   * listener wakes its selector). An event loop registers once, at start.
   */
  void addCommitListener(Runnable listener) {
    commitListeners.add(listener);
  }

  void removeCommitListener(Runnable listener) {
    commitListeners.remove(listener);
  }

  /** After a commit, failure or close, with fileLock released: wake every kind of waiter. */
  private void committed() {
    durableLock.lock();
    try {
      durableChanged.signalAll();
    } finally {
      durableLock.unlock();
    }
    for (Runnable listener : commitListeners) {
      listener.run();
    }
  }

  // ----------------------------------------------------------------------------------------------
  // The sync thread: commits asked of it, EVERYSEC's periodic force, the retries after a failure.

  /**
   * Asks the sync thread to commit what is pending, for a caller that must not block on the disk
   * (an event loop that hands its commit off); the commit listeners hear when it is done. Cheap
   * when a request is already pending.
   */
  void requestCommit() {
    if (commitRequested) {
      return;
    }
    appendLock.lock();
    try {
      commitRequested = true;
      syncWake.signal();
    } finally {
      appendLock.unlock();
    }
  }

  /** What the sync thread was woken for. */
  private enum SyncWork { COMMIT, PERIODIC, CLOSE }

  private void runSyncThread() {
    try {
      for (SyncWork w; (w = awaitSyncWork()) != SyncWork.CLOSE; ) {
        fileLock.lock();
        try {
          if (failure != null) {
            if (System.nanoTime() - nextRetryNanos >= 0) {
              retryAfterFailure();
            }
          } else if (w == SyncWork.COMMIT) {
            commitLocked();
          } else if (dirty && policy == FsyncPolicy.EVERYSEC && !channelClosed) {
            syncWritten();
          }
        } finally {
          fileLock.unlock();
        }
        committed();
      }
    } catch (Throwable t) {
      // A bug, not a disk error: fail loudly rather than leave waiters hanging.
      Log.error("backup log sync thread died: " + Log.describe(t));
      appendLock.lock();
      try {
        failure = new IOException("backup log sync thread died: " + Log.describe(t), t);
      } finally {
        appendLock.unlock();
      }
      committed();
    }
  }

  /**
   * Sleeps until a commit is asked for, the next retry is due (failed), the next periodic check
   * is due (EVERYSEC), or the log closes.
   */
  private SyncWork awaitSyncWork() {
    appendLock.lock();
    try {
      while (!closing) {
        long now = System.nanoTime();
        if (commitRequested) {
          commitRequested = false;
          if (failure == null && pendingRecords > 0) {
            return SyncWork.COMMIT;
          }
        }
        long due;
        if (failure != null) {
          due = nextRetryNanos;
        } else if (policy == FsyncPolicy.EVERYSEC) {
          due = nextPeriodicNanos;
        } else {
          syncWake.awaitUninterruptibly();
          continue;
        }
        if (now - due >= 0) {
          nextPeriodicNanos = now + TimeUnit.MILLISECONDS.toNanos(EVERYSEC_SYNC_INTERVAL_MILLIS);
          return SyncWork.PERIODIC;
        }
        try {
          syncWake.awaitNanos(due - now);
        } catch (InterruptedException e) {
          // Nobody interrupts this private thread; the loop re-checks its state anyway.
        }
      }
      return SyncWork.CLOSE;
    } finally {
      appendLock.unlock();
    }
  }

  /** EVERYSEC: the periodic force. Caller holds fileLock. */
  private void syncWritten() {
    try {
      long t0 = System.nanoTime();
      channel.force(false);
      noteCommitSync(t0, unsyncedRecords);
      unsyncedRecords = 0;
    } catch (IOException e) {
      enterFailed(e, null, filePos);
    }
  }

  /** Caller holds fileLock: a commit force begun at {@code startNanos} made records durable. */
  private void noteCommitSync(long startNanos, long records) {
    commitSyncLatency.record(System.nanoTime() - startNanos);
    commitSyncRecords += records;
    noteSync();
  }

  /** Caller holds fileLock. */
  private void noteSync() {
    syncs++;
    dirty = false;
    lastSyncNanos = System.nanoTime();
    lastSyncMillis = System.currentTimeMillis();
  }

  /**
   * Enters the failed state: the failed batch (if any) and everything pending are retained for
   * the retry; waiters of non-durable records are told (by the caller's {@link #committed}); a
   * running compaction is aborted. Caller holds fileLock.
   */
  private void enterFailed(IOException cause, Batch failedBatch, long batchFilePos) {
    IOException f =
        new IOException("write to " + logPath + " failed: " + Log.describe(cause), cause);
    Compactor abort;
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
      abort = compaction;
      compaction = null;
      syncWake.signal();
    } finally {
      appendLock.unlock();
    }
    if (abort != null) {
      abort.abort(f);
    }
    Log.error(String.format("backup log failed; refusing writes, retrying every %d ms: %s",
        opts.failureRetryIntervalMillis, cause));
  }

  /**
   * One attempt to leave the failed state: reopen, cut the file back to where the retained
   * records start, rewrite them from memory, force the file and the directory. Caller holds
   * fileLock.
   */
  private void retryAfterFailure() {
    long end;
    try {
      LogFiles.closeQuietly(channel);
      channel = opts.channelOpener.open(logPath,
          EnumSet.of(StandardOpenOption.READ, StandardOpenOption.WRITE));
      if (channel.size() < retainFilePos) {
        throw new IOException(logPath + " is shorter (" + channel.size()
            + " bytes) than its durable part (" + retainFilePos + " bytes)");
      }
      channel.truncate(retainFilePos);
      end = retainFilePos;
      for (Batch b : retained) {
        end = LogFiles.writeParts(channel, b.parts, end);
      }
      channel.force(true);
      LogFiles.fsyncDirectory(dir);
    } catch (IOException e) {
      appendLock.lock();
      try {
        nextRetryNanos = System.nanoTime()
            + TimeUnit.MILLISECONDS.toNanos(opts.failureRetryIntervalMillis);
      } finally {
        appendLock.unlock();
      }
      Log.error("backup log still failing: " + Log.describe(e));
      return;
    }
    long seq = durableSeq;
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
    noteSync();
    durableSeq = seq;
    appendLock.lock();
    try {
      failure = null;
    } finally {
      appendLock.unlock();
    }
    Log.info(String.format("backup log recovered: rewrote %d records (%d batches) and "
        + "accepts writes again", records, rewritten));
  }

  /**
   * The last step of a compaction, under fileLock so that no batch is written to the file being
   * replaced meanwhile: copy the rest of the rewrite buffer to the new file, force it, rename it
   * over the log, force the directory, and write to it from now on. Appends are not blocked: they
   * collect in the pending batch, which the next commit writes to the new file.
   */
  private void switchTo(Compactor c, List<Batch> rest) throws IOException {
    boolean renamed = false;
    try {
      c.writeBatches(rest);
      c.force();
      opts.crashPoint.accept("compact.before-rename");
      Files.move(compactPath, logPath, StandardCopyOption.ATOMIC_MOVE);
      renamed = true;
      olderFormat = false; // The new file has this version's header.
      opts.crashPoint.accept("compact.after-rename");
      LogFiles.fsyncDirectory(dir);
    } catch (IOException e) {
      if (!renamed) {
        // The live log was not touched: the compaction fails, the log goes on.
        c.abort(e);
        throw e;
      }
      // The new file is the log now but its name may not be durable: use it, but fail the log
      // until a retry has forced the directory.
      adopt(c);
      enterFailed(e, null, filePos);
      c.abort(e);
      throw e;
    }
    adopt(c);
    opts.crashPoint.accept("compact.after-switch");
  }

  /** Caller holds fileLock: the compacted file becomes the log. */
  private void adopt(Compactor c) {
    FileChannel old = channel;
    channel = c.adopt();
    filePos = c.position();
    fileBytes = filePos;
    fileRecords = c.records();
    compactions++;
    noteSync();
    LogFiles.closeQuietly(old);
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
    if (size < opts.compactMinFileBytes || failure != null || closing) {
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
        Log.warn("background compaction of " + logPath + " failed: " + Log.describe(e));
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
   * <p>Why the result is exact: at start every later batch a commit takes is also kept in the
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
      fileLock.lock();
      try {
        List<Batch> rest;
        appendLock.lock();
        try {
          c.checkAborted();
          rest = c.takeRewrite();
          compaction = null;
        } finally {
          appendLock.unlock();
        }
        switchTo(c, rest);
      } finally {
        fileLock.unlock();
      }
      committed();
    } catch (IOException | RuntimeException | Error e) {
      appendLock.lock();
      try {
        if (compaction == c) {
          compaction = null;
        }
      } finally {
        appendLock.unlock();
      }
      c.discard();
      committed();
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
        failure != null, commitSyncLatency.count(), commitSyncRecords,
        commitSyncLatency.percentileMicros(50), commitSyncLatency.percentileMicros(99));
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
    Compactor abort;
    appendLock.lock();
    try {
      closing = true;
      abort = compaction;
      compaction = null;
      syncWake.signal();
    } finally {
      appendLock.unlock();
    }
    if (abort != null) {
      abort.abort(new IOException("backup log " + logPath + " is closing"));
    }
    joinUninterruptibly(syncThread);
    fileLock.lock();
    try {
      if (!channelClosed) {
        commitLocked();
        finishAtClose();
      }
    } finally {
      fileLock.unlock();
    }
    committed();
    if (closeError != null) {
      throw new IOException("backup log " + logPath + " closed with an error: " + closeError,
          closeError);
    }
  }

  /** Caller holds fileLock: the final force, then the channel is closed for good. */
  private void finishAtClose() {
    IOException err = failure;
    if (err == null) {
      try {
        channel.force(true);
        noteSync();
      } catch (IOException e) {
        err = e;
        failure = new IOException("final force of " + logPath + " failed: " + Log.describe(e), e);
      }
    } else if (!retained.isEmpty()) {
      long lost = 0;
      for (Batch b : retained) {
        lost += b.records;
      }
      Log.error("backup log closed while failed: " + lost + " records never reached the disk");
    }
    closeError = err;
    LogFiles.closeQuietly(channel);
    channelClosed = true;
    closed = true;
  }

  private static void joinUninterruptibly(Thread t) {
    boolean interrupted = false;
    while (true) {
      try {
        t.join();
        break;
      } catch (InterruptedException e) {
        interrupted = true;
      }
    }
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
  }
}
