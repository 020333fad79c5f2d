package io.psiskv.server.backup;

import static io.psiskv.server.backup.LogFormat.*;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.channels.FileChannel;
import java.nio.file.OpenOption;
import java.nio.file.Path;
import java.util.Objects;
import java.util.Set;
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
 *       {@link AppendBuffer#LARGE_VALUE_BYTES} or more are referenced, not copied: the caller must
 *       never modify an array it has appended), and return its sequence. Records therefore
 *       reach the file in the order of their append calls, which for one key is the order the
 *       stripe lock applied them.
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
 * <h2>Threads, locks and the classes that own them</h2>
 *
 * This class is the front: it checks arguments and hands each call to its owner.
 *
 * <ul>
 *   <li>Appending threads (many): {@link AppendBuffer}, under its {@code appendLock}, held for a
 *       copy of at most 32 KiB. {@code appendLock} guards the pending batch, the sequence counter,
 *       the failed/closing state and the compaction hand-over.
 *   <li>The committer: whichever thread holds {@link LogWriter}'s {@code fileLock}. It owns the
 *       file channel, the file position and the failure-recovery state while it holds the lock; it
 *       takes the pending batch under {@code appendLock}, then writes and forces with only {@code
 *       fileLock} held, so appends go on during the force and form the next batch.
 *   <li>{@code psiskv-log-sync}, one background thread ({@link SyncThread}): the commits callers
 *       hand it ({@link #requestCommit}), the periodic force of EVERYSEC and the retries after a
 *       disk failure, each under {@code fileLock}.
 *   <li>At most one compactor ({@link CompactionDriver}: the caller of {@link #compact}, or a
 *       {@code psiskv-log-compactor} thread started by {@link #maybeCompact}): writes the snapshot
 *       to the temporary file ({@link Compactor}), then takes {@code fileLock} for the switch.
 *   <li>Recovery at open ({@link LogRecovery}) runs on the opening thread before any other.
 *   <li>Lock order: {@code fileLock}, then {@code appendLock}, then {@code durableLock}. {@code
 *       durableLock} guards nothing but the condition blocking waiters sleep on. {@code
 *       durableSeq}, {@code failure} and the counters are volatile. A method named {@code do*}
 *       expects its class's lock held ({@code appendLock} in AppendBuffer, Compactor and
 *       SyncThread, {@code fileLock} in LogWriter); the same name without {@code do} takes it.
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
public final class BackupLog implements AutoCloseable {

  /**
   * §11: the log file's name in the data directory. Not {@code *.log}: log-rotation globs take
   * text logs by that suffix (the {@code front.log} beside it), and rotating or compressing this
   * file would lose the store.
   */
  public static final String FILE_NAME = "psiskv.data";
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
  /** Compaction trigger: never compact a log smaller than this. */
  static final long COMPACT_MIN_FILE_BYTES = 64L << 20;

  /** Receives the records of the log at open, in file order. */
  public interface Replay {
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
  public interface LiveData {
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
  public interface SnapshotSink {
    void put(int key, byte[] value) throws IOException;

    /** A session-table entry; {@code info} as for {@link Replay#session}. */
    void session(long session, long requestId, int result, byte[] info) throws IOException;
  }

  /** Opens the log's files; a test substitutes channels that fail or stall on command. */
  interface ChannelOpener {
    public FileChannel open(Path path, Set<? extends OpenOption> options) throws IOException;
  }

  /** Options of {@link #open}. Mutable, used only during open; defaults suit production. */
  public static final class OpenOptions {
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
    public ChannelOpener channelOpener = (path, options) -> FileChannel.open(path, options);
    /**
     * Test hook: called with a name at each step of a compaction ({@code compact.after-snapshot},
     * {@code compact.before-switch}, {@code compact.before-rename}, {@code compact.after-rename},
     * {@code compact.after-switch}); a crash test halts the process there.
     */
    Consumer<String> crashPoint = name -> {};

    public static OpenOptions defaults() {
      return new OpenOptions();
    }

    public OpenOptions salvage(boolean salvage) {
      this.salvage = salvage;
      return this;
    }
  }

  /** A snapshot of the counters, for monitoring and tests. */
  public record Stats(
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

  private final Path logPath;
  private final FsyncPolicy policy;
  private final AppendBuffer buffer;
  private final LogWriter writer;
  private final CompactionDriver compactions;

  private BackupLog(Path dir, FsyncPolicy policy, OpenOptions opts, LogRecovery.Recovered file) {
    this.logPath = dir.resolve(FILE_NAME);
    this.policy = policy;
    this.buffer = new AppendBuffer(logPath);
    this.writer = new LogWriter(dir, policy, opts, buffer, file);
    this.compactions = new CompactionDriver(dir, opts, buffer, writer);
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
  public static BackupLog open(Path dataDir, FsyncPolicy policy, Replay sink, OpenOptions opts)
      throws IOException {
    Objects.requireNonNull(policy);
    Objects.requireNonNull(sink);
    LogRecovery.Recovered file = LogRecovery.recover(dataDir, sink, opts);
    try {
      BackupLog bl = new BackupLog(dataDir, policy, opts, file);
      bl.writer.syncThread().start();
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
   * @param value not copied if {@link AppendBuffer#LARGE_VALUE_BYTES} or longer: never modify it
   *     afterwards
   * @param result the wire status the request is answered with (PROTOCOL.md §5)
   * @return the record's sequence number, for {@link #awaitDurable} and {@link #isDurable}
   * @throws IOException if the log has failed or is closed; nothing was appended
   */
  public long appendPut(int key, byte[] value, long session, long requestId, int result)
      throws IOException {
    Objects.requireNonNull(value, "value");
    return buffer.append(OP_PUT, key, value, session, requestId, result);
  }

  /** Appends a PUT_IF_ABSENT record (a PUT without the overwrite flag stored): {@link #appendPut}. */
  public long appendPutIfAbsent(int key, byte[] value, long session, long requestId, int result)
      throws IOException {
    Objects.requireNonNull(value, "value");
    return buffer.append(OP_PUT_IF_ABSENT, key, value, session, requestId, result);
  }

  /** Appends a DELETE record (a tombstone); see {@link #appendPut}. */
  public long appendDelete(int key, long session, long requestId, int result) throws IOException {
    return buffer.append(OP_DELETE, key, null, session, requestId, result);
  }

  /**
   * Appends a SESSION record ({@link Replay#session}): before a session's first write record, so
   * that the session and its secret come back with its writes after a crash.
   *
   * @param info {@link LogFormat#encodeSessionValue}'s {@link LogFormat#SESSION_VALUE_BYTES}
   */
  public long appendSession(long session, long requestId, int result, byte[] info)
      throws IOException {
    if (info.length != SESSION_VALUE_BYTES) {
      throw new IllegalArgumentException("a SESSION record's value has " + SESSION_VALUE_BYTES
          + " bytes, not " + info.length);
    }
    return buffer.append(OP_SESSION, 0, info, session, requestId, result);
  }

  /**
   * Whether the file was opened in an older format ({@link LogFormat#VERSION_1}): it must be
   * rewritten ({@link #compact}) before the first append, which {@code Engine.open} does.
   */
  public boolean isOlderFormat() {
    return writer.isOlderFormat();
  }

  /** Throws the reason appends are refused (failed or closed), or returns if they are accepted. */
  void checkWritable() throws IOException {
    buffer.checkWritable();
  }

  // ----------------------------------------------------------------------------------------------
  // Committing: the group commit, driven by the threads that need it.

  /**
   * Whether records were appended that no commit has taken yet. An event loop commits at the end
   * of a wake-up while this is true. Cheap (two volatile reads).
   */
  public boolean hasUncommitted() {
    return buffer.hasUncommitted();
  }

  /**
   * Whether the record with sequence {@code seq} is as durable as the policy promises (ALWAYS:
   * written and forced; EVERYSEC, NO: written to the OS). {@code 0} is always durable: a write that
   * appended nothing.
   */
  public boolean isDurable(long seq) {
    return writer.isDurable(seq);
  }

  /**
   * Whether the record with sequence {@code seq} will not become durable in the present state:
   * the log has failed (or is closed) and the record is not durable. Its client is answered
   * SERVER_ERROR (the record may still reach the disk after a retry: BackupLog's contract).
   */
  public boolean hasFailed(long seq) {
    return writer.hasFailed(seq);
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
  public boolean commit(boolean wait) {
    return writer.commit(wait);
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
  public void awaitDurable(long seq) throws IOException {
    writer.awaitDurable(seq);
  }

  /**
   * Registers {@code listener} to be called after every commit, failure and close, by the thread
   * that did it, with no lock held. A listener must be quick and must not block (an event loop's
   * listener wakes its selector). An event loop registers once, at start.
   */
  public void addCommitListener(Runnable listener) {
    writer.addCommitListener(listener);
  }

  public void removeCommitListener(Runnable listener) {
    writer.removeCommitListener(listener);
  }

  /**
   * Asks the sync thread to commit what is pending, for a caller that must not block on the disk
   * (an event loop that hands its commit off); the commit listeners hear when it is done. Cheap
   * when a request is already pending.
   */
  public void requestCommit() {
    writer.syncThread().requestCommit();
  }

  // ----------------------------------------------------------------------------------------------
  // Compaction.

  /**
   * Starts a compaction in a background thread if the log is much larger than the live data: file
   * larger than {@link OpenOptions#compactMinFileBytes} and more than {@link
   * CompactionDriver#COMPACT_GROWTH_FACTOR} times the size a fresh log of the live data would
   * have. Cheap; the Data Server may call it after every write or from a timer.
   *
   * @return whether a compaction was started
   */
  public boolean maybeCompact(LiveData live) {
    return compactions.maybeCompact(live);
  }

  /**
   * Rewrites the log as a snapshot of {@code live} plus the records appended meanwhile, in the
   * caller's thread (tests, an operator command). Appends and acknowledgements go on meanwhile.
   *
   * @throws IOException if the compaction failed or was aborted; the log is then unchanged
   */
  public void compact(LiveData live) throws IOException {
    compactions.compact(live);
  }

  // ----------------------------------------------------------------------------------------------
  // Stats and close.

  public Stats stats() {
    return writer.stats();
  }

  public FsyncPolicy policy() {
    return policy;
  }

  public Path path() {
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
    writer.close();
  }
}
