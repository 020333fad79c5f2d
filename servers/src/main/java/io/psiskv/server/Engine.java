package io.psiskv.server;

import io.psiskv.protocol.Status;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;

/**
 * What a data request does, apart from the socket: decoded fields in, a status (and for GET the
 * stored array) out. It joins the three owners of the Data Server's state: the {@link Store} (the
 * map), the {@link BackupLog} (the file) and the {@link Sessions} table (exactly-once retries), and
 * owns the whole of a write. Connections call it from their own threads concurrently; it never
 * blocks on the disk inside a write.
 *
 * <p><b>A write</b>, in {@link #put} and {@link #delete}:
 *
 * <pre>
 *   synchronized (session) {                     // one write of a session at a time
 *     same request id as the last write?  -> its stored result and log sequence
 *     lower id?                           -> BAD_REQUEST (a stale duplicate)
 *     store op; when it takes effect, under the stripe lock, the log record is appended
 *     session.recordWrite(request id, result, log sequence)
 *   }
 *   return (result, log sequence)                // the completion the caller waits for
 * </pre>
 *
 * The caller sends the answer only once {@link #durability} of that sequence is {@link
 * Durability#DURABLE}: the record is on disk before the client hears OK. It waits for that with
 * {@link #awaitDurable} (a blocking connection thread) or by committing at the end of its wake-up
 * ({@link #commit}, an event loop); {@link Durability#FAILED} is answered SERVER_ERROR. If the log
 * has failed before the write, the append throws before the store changes anything and the write
 * is answered SERVER_ERROR at once. Reads never wait on the disk.
 */
final class Engine implements AutoCloseable {
  /** The outcome of a write: the status to answer and the log sequence the answer waits for. */
  record WriteResult(Status status, long durableSeq) {}

  /** Where a write's record stands. */
  enum Durability {
    /** As durable as the fsync policy promises: the answer may be sent. */
    DURABLE,
    /** Not yet: a commit will decide. */
    PENDING,
    /** It will not become durable in this state: the answer is SERVER_ERROR. */
    FAILED
  }

  private static final WriteResult STALE = new WriteResult(Status.BAD_REQUEST, 0);
  private static final WriteResult LOG_REFUSED = new WriteResult(Status.SERVER_ERROR, 0);
  private static final WriteResult NO_MEMORY = new WriteResult(Status.SERVER_ERROR, 0);

  private final Store store;
  private final Sessions sessions;
  private final BackupLog log;

  Engine(Store store, Sessions sessions, BackupLog log) {
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
  WriteResult put(Sessions.Session s, long requestId, int key, byte[] value, boolean overwrite) {
    return write(s, requestId, key, value, overwrite);
  }

  /** GET (§6.5), for tests and tools: a copy of the value, or null if absent. */
  byte[] get(int key) {
    return store.get(key);
  }

  /**
   * GET (§6.5) on the request path: hands the value to {@code reader} under its stripe's lock
   * (see {@link Store#read}); false if the key is absent.
   */
  boolean read(int key, Store.ValueReader reader) {
    return store.read(key, reader);
  }

  /** DELETE (§6.6): OK if the key was present and is now removed, else NOT_FOUND. */
  WriteResult delete(Sessions.Session s, long requestId, int key) {
    return write(s, requestId, key, null, false);
  }

  /** Where the record with sequence {@code seq} of a {@link WriteResult} stands. */
  Durability durability(long seq) {
    if (log.isDurable(seq)) {
      return Durability.DURABLE;
    }
    return log.hasFailed(seq) ? Durability.FAILED : Durability.PENDING;
  }

  /**
   * Blocks until the record {@code seq} is durable (true) or will not be (false: answer
   * SERVER_ERROR), committing it itself when no other thread is committing.
   */
  boolean awaitDurable(long seq) {
    try {
      log.awaitDurable(seq);
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  /**
   * The group commit of {@link BackupLog#commit}: makes every write appended so far durable.
   * With {@code wait} false it returns false at once if another thread is committing; that
   * thread's listeners ({@link #addCommitListener}) hear when it is done.
   */
  boolean commit(boolean wait) {
    return log.commit(wait);
  }

  /** Hands the commit to the log's sync thread (see {@link BackupLog#requestCommit}). */
  void requestCommit() {
    log.requestCommit();
  }

  /** Whether writes were applied that no commit has taken yet. */
  boolean hasUncommitted() {
    return log.hasUncommitted();
  }

  /** See {@link BackupLog#addCommitListener}. */
  void addCommitListener(Runnable listener) {
    log.addCommitListener(listener);
  }

  void removeCommitListener(Runnable listener) {
    log.removeCommitListener(listener);
  }

  /** A PUT ({@code value} non-null) or a DELETE ({@code value} null), exactly once per id. */
  private WriteResult write(Sessions.Session s, long requestId, int key, byte[] value,
      boolean overwrite) {
    synchronized (s) {
      if (s.isLastWrite(requestId)) {
        // A retry of a write already applied (PROTOCOL.md §12.5): its answer, once its record is.
        return new WriteResult(s.lastResult(), s.lastSeq());
      }
      if (Long.compareUnsigned(requestId, s.lastWriteId()) < 0) {
        return STALE; // Ids of a session only grow (as u64, PROTOCOL.md §3.2).
      }
      LogAppend append = new LogAppend(s.id, requestId);
      boolean changed;
      try {
        if (value == null) {
          changed = store.remove(key, append);
        } else if (overwrite) {
          store.put(key, value, append);
          changed = true;
        } else {
          changed = store.putIfAbsent(key, value, append);
        }
      } catch (UncheckedIOException e) {
        return LOG_REFUSED; // The log refused the record: nothing was applied.
      } catch (ValueArena.ArenaFullException e) {
        return NO_MEMORY; // No memory for the value: nothing was applied or logged.
      }
      Status result = changed ? Status.OK : value == null ? Status.NOT_FOUND : Status.KEY_EXISTS;
      s.recordWrite(requestId, result, append.seq);
      return new WriteResult(result, append.seq);
    }
  }

  /**
   * The store's mutation callback for one write: appends the record inside the stripe lock, when
   * and only when the mutation takes effect, and keeps its sequence (0 if nothing was appended).
   */
  private final class LogAppend implements Store.Mutation {
    private final long session;
    private final long requestId;
    long seq;

    LogAppend(long session, long requestId) {
      this.session = session;
      this.requestId = requestId;
    }

    @Override
    public void applied(int key, byte[] value) {
      try {
        seq = value == null
            ? log.appendDelete(key, session, requestId, Status.OK.code())
            : log.appendPut(key, value, session, requestId, Status.OK.code());
      } catch (IOException e) {
        // The store leaves the map unchanged when its callback throws: nothing is applied.
        throw new UncheckedIOException(e);
      }
    }
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
