package io.psiskv.server.backup;

import static io.psiskv.server.backup.LogFormat.*;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The backup log's pending batch: the records appended and not yet taken by a commit, the
 * sequence counter, the failed/closing state and the compaction hand-over, all guarded by {@link
 * #appendLock}. Appending threads (many) hold the lock for a copy of at most {@link
 * #LARGE_VALUE_BYTES}; the committer ({@link LogWriter}) takes everything pending as one {@link
 * Batch} under it.
 *
 * <p>Naming: a {@code do*} method expects {@code appendLock} held by its caller; the method of the
 * same name without {@code do} takes it.
 */
final class AppendBuffer {
  /** Appends are copied into chunks of this size. */
  static final int CHUNK_BYTES = 64 * 1024;
  /** Values at least this long are written from the caller's array instead of being copied. */
  static final int LARGE_VALUE_BYTES = 32 * 1024;

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

  /**
   * The log's one global append lock. Lock order: the writer's {@code fileLock}, then this, then
   * the writer's {@code durableLock}. The sync thread's schedule ({@link SyncThread}) and a
   * compaction's rewrite buffer ({@link Compactor}) are guarded by it too.
   */
  final ReentrantLock appendLock = new ReentrantLock();

  private final Path logPath;

  // ---- Guarded by appendLock.
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

  AppendBuffer(Path logPath) {
    this.logPath = logPath;
  }

  /**
   * Encodes a record (CRC included) before taking {@code appendLock}, then copies it into the
   * pending batch (a value of {@link #LARGE_VALUE_BYTES} or more is referenced, not copied).
   *
   * @return the record's sequence number
   * @throws IOException if the log has failed or is closed; nothing was appended
   */
  long append(int op, int key, byte[] value, long session, long requestId, int result)
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
    appendLock.lock();
    try {
      return doAppend(fixed, value, valueLength);
    } finally {
      appendLock.unlock();
    }
  }

  /** Copies an encoded record into the pending batch and returns its sequence. */
  private long doAppend(byte[] fixed, byte[] value, int valueLength) throws IOException {
    boolean inline = valueLength < LARGE_VALUE_BYTES;
    doCheckWritable();
    int need = RECORD_FIXED_BYTES + (inline ? valueLength : 0);
    if (chunk.length - chunkPos < need) {
      doSealOpen();
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
      doSealOpen();
      pendingParts.add(ByteBuffer.wrap(value));
    }
    pendingRecords++;
    appends++;
    long seq = appendedSeq + RECORD_FIXED_BYTES + valueLength;
    appendedSeq = seq;
    return seq;
  }

  /** Throws the reason appends are refused (failed or closed), or returns if they are accepted. */
  void checkWritable() throws IOException {
    appendLock.lock();
    try {
      doCheckWritable();
    } finally {
      appendLock.unlock();
    }
  }

  void doCheckWritable() throws IOException {
    if (closing) {
      throw new IOException("backup log " + logPath + " is closed");
    }
    IOException f = failure;
    if (f != null) {
      throw new IOException("backup log refuses writes until the disk recovers: "
          + f.getMessage(), f);
    }
  }

  /** Moves the open region of the chunk into the pending parts. */
  private void doSealOpen() {
    if (chunkPos > openStart) {
      pendingParts.add(ByteBuffer.wrap(chunk, openStart, chunkPos - openStart).slice());
      openStart = chunkPos;
    }
  }

  /** Takes everything appended so far as one batch. */
  Batch doTakePending() {
    doSealOpen();
    Batch b = new Batch(pendingParts.toArray(new ByteBuffer[0]), appendedSeq, pendingRecords);
    pendingParts.clear();
    pendingRecords = 0;
    takenSeq = b.endSeq;
    return b;
  }

  /**
   * The commit's step under {@code appendLock}: takes everything pending as one batch and hands
   * it to a running compaction's rewrite buffer; null if the log has failed, {@code
   * channelClosed} holds, or nothing is pending.
   */
  Batch takeForCommit(boolean channelClosed) {
    appendLock.lock();
    try {
      if (failure != null || channelClosed || pendingRecords == 0) {
        return null;
      }
      Batch batch = doTakePending();
      if (compaction != null) {
        compaction.doAddRewrite(batch);
      }
      return batch;
    } finally {
      appendLock.unlock();
    }
  }

  /** Whether records are pending that no commit has taken. */
  boolean doHasPending() {
    return pendingRecords > 0;
  }

  /**
   * Whether records were appended that no commit has taken yet. Cheap (two volatile reads), no
   * lock.
   */
  boolean hasUncommitted() {
    return appendedSeq != takenSeq;
  }

  /** The sequence of the last append (volatile read). */
  long appendedSeq() {
    return appendedSeq;
  }

  /** Append calls since open (volatile read). */
  long appends() {
    return appends;
  }

  /** The reason the log is failed, or null (volatile read). */
  IOException failure() {
    return failure;
  }

  /** Enters (or stays in) the failed state with {@code f}: appends throw from now on. */
  void doFail(IOException f) {
    failure = f;
  }

  /** {@link #doFail}, taking {@code appendLock}. */
  void fail(IOException f) {
    appendLock.lock();
    try {
      doFail(f);
    } finally {
      appendLock.unlock();
    }
  }

  /** Leaves the failed state: appends are accepted again. */
  void clearFailure() {
    appendLock.lock();
    try {
      failure = null;
    } finally {
      appendLock.unlock();
    }
  }

  /** Whether the log is closing (volatile read). */
  boolean isClosing() {
    return closing;
  }

  /** Refuses every later append. */
  void doClose() {
    closing = true;
  }

  /**
   * Starts {@code c}'s rewrite buffer: every later commit's batch is handed to it.
   *
   * @throws IOException if the log has failed or is closed
   */
  void attachCompaction(Compactor c) throws IOException {
    appendLock.lock();
    try {
      doCheckWritable();
      compaction = c;
    } finally {
      appendLock.unlock();
    }
  }

  /** Ends the hand-over to a running compaction and returns it (null if none ran). */
  Compactor doDetachCompaction() {
    Compactor c = compaction;
    compaction = null;
    return c;
  }

  /** Ends the hand-over to {@code c}, if it is still the running compaction. */
  void detachCompaction(Compactor c) {
    appendLock.lock();
    try {
      if (compaction == c) {
        compaction = null;
      }
    } finally {
      appendLock.unlock();
    }
  }

  /**
   * The switch's step under {@code appendLock}: throws if {@code c} was aborted, else takes the
   * rest of its rewrite buffer and ends the hand-over, so later batches go to the new file only.
   */
  List<Batch> takeLastRewrite(Compactor c) throws IOException {
    appendLock.lock();
    try {
      c.checkAborted();
      List<Batch> rest = c.doTakeRewrite();
      compaction = null;
      return rest;
    } finally {
      appendLock.unlock();
    }
  }
}
