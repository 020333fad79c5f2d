package io.psiskv.server.backup;

import static io.psiskv.server.backup.LogFormat.*;

import io.psiskv.server.PrivateFiles;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;

/**
 * One compaction of a {@link BackupLog} (PROTOCOL.md §11.5): the temporary file {@code
 * psiskv.data.compact}, the snapshot written into it, and the rewrite buffer of the batches
 * appended meanwhile. {@link CompactionDriver#compactOwned} drives it and explains why the result
 * is exact; {@link LogWriter} switches the log to its file.
 *
 * <p>Ownership: the compactor thread owns the channel and its position; at the switch it holds the
 * log's {@code fileLock}, and from then on the channel is the log's ({@link #adopt}). The rewrite
 * list is guarded by the log's {@code appendLock} (its methods are named {@code do*}: the caller
 * holds the lock): each commit adds the batch it takes, the compactor takes them in catch-up
 * rounds and takes the rest at the switch. Batches are immutable, so a commit and the compactor
 * can both write one.
 */
final class Compactor {
  /** The snapshot is encoded into a buffer of this size and written when it fills. */
  static final int SNAPSHOT_BUFFER_BYTES = 1 << 20;

  private final Path tmp;
  private final BackupLog.ChannelOpener opener;
  private FileChannel channel;
  private long pos;
  private long records;
  /** Guarded by the log's appendLock. */
  private ArrayList<AppendBuffer.Batch> rewrite = new ArrayList<>();
  private volatile IOException aborted;
  private volatile boolean adopted;

  Compactor(Path tmp, BackupLog.ChannelOpener opener) {
    this.tmp = tmp;
    this.opener = opener;
  }

  /** Creates the temporary file with a fresh header. A leftover one is replaced. */
  void create(long createdMillis) throws IOException {
    Files.deleteIfExists(tmp);
    channel = opener.open(tmp, EnumSet.of(StandardOpenOption.CREATE_NEW,
        StandardOpenOption.READ, StandardOpenOption.WRITE));
    PrivateFiles.file(tmp);
    byte[] h = new byte[HEADER_BYTES];
    encodeHeader(h, createdMillis);
    pos = LogFiles.writeFully(channel, ByteBuffer.wrap(h), 0);
  }

  /** Writes every live pair and session entry as PUT and SESSION records (session 0 for PUTs). */
  void writeSnapshot(BackupLog.LiveData live) throws IOException {
    SnapshotWriter w = new SnapshotWriter();
    live.forEach(w);
    w.flush();
  }

  /** Copies batches of the rewrite buffer to the file; returns the bytes copied. */
  long writeBatches(List<AppendBuffer.Batch> batches) throws IOException {
    checkAborted();
    long start = pos;
    for (AppendBuffer.Batch b : batches) {
      pos = LogFiles.writeParts(channel, b.parts, pos);
      records += b.records;
    }
    return pos - start;
  }

  void force() throws IOException {
    checkAborted();
    channel.force(false);
  }

  /** Adds a commit's batch to the rewrite buffer. Caller holds the log's appendLock. */
  void doAddRewrite(AppendBuffer.Batch b) {
    rewrite.add(b);
  }

  /** Takes the rewrite buffer's batches so far. Caller holds the log's appendLock. */
  List<AppendBuffer.Batch> doTakeRewrite() {
    List<AppendBuffer.Batch> taken = rewrite;
    rewrite = new ArrayList<>();
    return taken;
  }

  void checkAborted() throws IOException {
    IOException a = aborted;
    if (a != null) {
      throw new IOException("compaction aborted: " + a.getMessage(), a);
    }
  }

  /** Ends the compaction with an error (the log failed or is closing, or the switch failed). */
  void abort(IOException why) {
    aborted = why;
  }

  /** The log takes over the channel: the temporary file is now the log. */
  FileChannel adopt() {
    adopted = true;
    return channel;
  }

  /** Closes and deletes the temporary file, unless the log adopted it. */
  void discard() {
    if (adopted) {
      return;
    }
    LogFiles.closeQuietly(channel);
    try {
      Files.deleteIfExists(tmp);
    } catch (IOException e) {
      // Deleted at the next open anyway.
    }
  }

  long position() {
    return pos;
  }

  long records() {
    return records;
  }

  /** Encodes snapshot records into one buffer; writes to the OS when it fills, never forces. */
  private final class SnapshotWriter implements BackupLog.SnapshotSink {
    private final byte[] buf = new byte[SNAPSHOT_BUFFER_BYTES];
    private int n;

    @Override
    public void put(int key, byte[] value) throws IOException {
      add(OP_PUT, key, NO_SESSION, 0, io.psiskv.protocol.Status.OK.code(), value);
    }

    @Override
    public void session(long session, long requestId, int result, byte[] info)
        throws IOException {
      add(OP_SESSION, 0, session, requestId, result, info);
    }

    private void add(int op, int key, long session, long requestId, int result, byte[] value)
        throws IOException {
      checkAborted();
      int valueLength = value == null ? 0 : value.length;
      long need = recordBytes(valueLength);
      if (n + need > buf.length) {
        flush();
      }
      if (need <= buf.length) {
        encodeRecord(buf, n, op, key, session, requestId, result, value);
        n += RECORD_FIXED_BYTES;
        if (valueLength > 0) {
          System.arraycopy(value, 0, buf, n, valueLength);
          n += valueLength;
        }
      } else {
        encodeRecord(buf, 0, op, key, session, requestId, result, value);
        pos = LogFiles.writeFully(channel, ByteBuffer.wrap(buf, 0, RECORD_FIXED_BYTES), pos);
        pos = LogFiles.writeFully(channel, ByteBuffer.wrap(value), pos);
      }
      records++;
    }

    void flush() throws IOException {
      if (n > 0) {
        pos = LogFiles.writeFully(channel, ByteBuffer.wrap(buf, 0, n), pos);
        n = 0;
      }
    }
  }
}
