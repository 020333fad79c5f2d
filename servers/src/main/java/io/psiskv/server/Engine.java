package io.psiskv.server;

import io.psiskv.protocol.Status;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;

/**
 * What a data request does, apart from the socket: decoded fields in, a status (and for GET the
 * stored array) out. It joins the three owners of the Data Server's state: the {@link Store} (the
 * map), the {@link BackupLog} (the file) and the {@link Sessions} table (exactly-once retries).
 * Connections call it from their own threads concurrently.
 *
 * <p><b>A write</b>, in {@link #put} and {@link #delete}:
 *
 * <pre>
 *   synchronized (session) {                     // one write of a session at a time
 *     same request id as the last write?  -> its stored result (await its record first)
 *     store op, whose callback appends the log record inside the stripe lock
 *     remember (request id, result, log sequence) as the session's last write
 *   }
 *   log.awaitDurable(sequence)                   // the record is on disk before the client
 *   return the result                            // hears OK; no lock is held while waiting
 * </pre>
 *
 * If the log has failed, the append throws before the store changes anything and the write is
 * answered SERVER_ERROR; if the record cannot be made durable, SERVER_ERROR as well (the write may
 * then still be applied: BackupLog's contract). Reads never wait on the disk.
 */
final class Engine implements AutoCloseable {
  private final Store store;
  private final Sessions sessions;
  private final BackupLog log;

  private Engine(Store store, Sessions sessions, BackupLog log) {
    this.store = store;
    this.sessions = sessions;
    this.log = log;
  }

  /**
   * Opens the backup log in {@code dataDir} and replays it into a new store and session table
   * (PROTOCOL.md §11.3). The caller holds the data directory's lock.
   */
  static Engine open(Path dataDir, FsyncPolicy fsync, boolean salvage) throws IOException {
    Store store = new Store();
    Sessions sessions = new Sessions();
    BackupLog.Replay replay = new BackupLog.Replay() {
      @Override
      public void put(int key, byte[] value, long session, long requestId, int result) {
        store.put(key, value, null);
        sessions.restore(session, requestId, result);
      }

      @Override
      public void delete(int key, long session, long requestId, int result) {
        store.remove(key, null);
        sessions.restore(session, requestId, result);
      }

      @Override
      public void session(long session, long requestId, int result) {
        sessions.restore(session, requestId, result);
      }
    };
    BackupLog log = BackupLog.open(dataDir, fsync, replay,
        BackupLog.OpenOptions.defaults().salvage(salvage));
    sessions.logTo(log);
    return new Engine(store, sessions, log);
  }

  Store store() {
    return store;
  }

  BackupLog log() {
    return log;
  }

  Sessions sessions() {
    return sessions;
  }

  /** SESSION (PROTOCOL.md §6.2): a fresh session for 0, else the presented one (resume). */
  Sessions.Session openSession(long requested) {
    return sessions.attach(requested);
  }

  /** The connection that used {@code session} closed. */
  void closeSession(Sessions.Session session) {
    sessions.detach(session);
  }

  /** PUT (§6.4): OK, or KEY_EXISTS when {@code overwrite} is false and the key is present. */
  Status put(Sessions.Session s, long requestId, int key, byte[] value, boolean overwrite) {
    return write(s, requestId, key, value, overwrite);
  }

  /** GET (§6.5): the stored array (never modify it), or null if absent. */
  byte[] get(int key) {
    return store.get(key);
  }

  /** DELETE (§6.6): OK if the key was present and is now removed, else NOT_FOUND. */
  Status delete(Sessions.Session s, long requestId, int key) {
    return write(s, requestId, key, null, false);
  }

  /** A PUT ({@code value} non-null) or a DELETE ({@code value} null), exactly once per id. */
  private Status write(Sessions.Session s, long requestId, int key, byte[] value,
      boolean overwrite) {
    Status result;
    long seq;
    synchronized (s) {
      if (requestId == s.lastWriteId && s.lastResult != null) {
        result = s.lastResult; // A retry of a write already applied (PROTOCOL.md §12.5).
        seq = s.lastSeq;
      } else if (requestId < s.lastWriteId) {
        return Status.BAD_REQUEST; // A stale duplicate: ids of a session only grow.
      } else {
        s.pendingRequestId = requestId;
        s.pendingSeq = 0;
        try {
          boolean changed;
          if (value == null) {
            changed = store.remove(key, s);
          } else if (overwrite) {
            store.put(key, value, s);
            changed = true;
          } else {
            changed = store.putIfAbsent(key, value, s);
          }
          result = changed ? Status.OK : value == null ? Status.NOT_FOUND : Status.KEY_EXISTS;
        } catch (UncheckedIOException e) {
          return Status.SERVER_ERROR; // The log refused the record: nothing was applied.
        }
        seq = s.pendingSeq;
        s.lastWriteId = requestId;
        s.lastResult = result;
        s.lastSeq = seq;
      }
    }
    if (seq != 0) {
      try {
        log.awaitDurable(seq); // The record is on disk before the client hears OK.
      } catch (IOException e) {
        return Status.SERVER_ERROR;
      }
    }
    return result;
  }

  /** Compaction's view of the live data: the map stripe by stripe, then the session table. */
  BackupLog.LiveData liveData() {
    return new BackupLog.LiveData() {
      @Override
      public long keyCount() {
        return store.size();
      }

      @Override
      public long valueBytes() {
        return store.valueBytes();
      }

      @Override
      public void forEach(BackupLog.SnapshotSink sink) throws IOException {
        for (int i = 0; i < store.stripeCount(); i++) {
          Store.StripeSnapshot snap = store.snapshotStripe(i); // Copied under the stripe lock,
          for (int j = 0; j < snap.count; j++) { // written without it.
            sink.put(snap.keys[j], snap.values[j]);
          }
        }
        sessions.forEachLastWrite(sink);
      }
    };
  }

  /** Syncs and closes the backup log; call after the last write has been answered. */
  @Override
  public void close() throws IOException {
    log.close();
  }
}
