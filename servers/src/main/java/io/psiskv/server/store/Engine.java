package io.psiskv.server.store;

import io.psiskv.protocol.Status;
import io.psiskv.server.ServerLog;
import io.psiskv.server.backup.BackupLog;
import io.psiskv.server.backup.FsyncPolicy;
import io.psiskv.server.backup.LogFormat;
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
 *     same request id as the last write?  -> the same request (op, key, length, digest)?
 *                                              its stored result and log sequence
 *                                            : BAD_REQUEST (never OK without effect)
 *     lower id (unsigned)?                -> BAD_REQUEST (a stale duplicate)
 *     store op; when it takes effect, under the stripe lock, the session's SESSION record (if
 *       the log has none yet) and the write's record are appended
 *     session.recordWrite(request id, result, log sequence, op, key, length, digest)
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
public final class Engine implements AutoCloseable {
  /** The outcome of a write: the status to answer and the log sequence the answer waits for. */
  public record WriteResult(Status status, long durableSeq) {}

  /** Where a write's record stands. */
  public enum Durability {
    /** As durable as the fsync policy promises: the answer may be sent. */
    DURABLE,
    /** Not yet: a commit will decide. */
    PENDING,
    /** It will not become durable in this state: the answer is SERVER_ERROR. */
    FAILED
  }

  private static final WriteResult STALE = new WriteResult(Status.BAD_REQUEST, 0);
  private static final WriteResult NOT_A_RETRY = new WriteResult(Status.BAD_REQUEST, 0);
  private static final WriteResult LOG_REFUSED = new WriteResult(Status.SERVER_ERROR, 0);
  private static final WriteResult NO_MEMORY = new WriteResult(Status.SERVER_ERROR, 0);

  private final Store store;
  private final Sessions sessions;
  private final BackupLog log;
  private final ServerStats stats;

  public Engine(Store store, Sessions sessions, BackupLog log) {
    this.store = store;
    this.sessions = sessions;
    this.log = log;
    this.stats = new ServerStats(this);
  }

  /**
   * Opens the backup log in {@code dataDir} and replays it into a new store and session table
   * (PROTOCOL.md §11.3). The caller holds the data directory's lock.
   */
  public static Engine open(Path dataDir, FsyncPolicy fsync, boolean salvage, int maxSessions)
      throws IOException {
    Store store = new Store();
    Sessions sessions = new Sessions(maxSessions);
    long now = System.currentTimeMillis();
    BackupLog.Replay replay = new BackupLog.Replay() {
      @Override
      public void put(int key, byte[] value, long session, long requestId, int result) {
        store.put(key, value, null);
        restoreWrite(session, requestId, result, LogFormat.OP_PUT, key, value);
      }

      @Override
      public void putIfAbsent(int key, byte[] value, long session, long requestId, int result) {
        store.put(key, value, null);
        restoreWrite(session, requestId, result, LogFormat.OP_PUT_IF_ABSENT, key, value);
      }

      @Override
      public void delete(int key, long session, long requestId, int result) {
        store.remove(key, null);
        restoreWrite(session, requestId, result, LogFormat.OP_DELETE, key, null);
      }

      @Override
      public void session(long session, long requestId, int result, byte[] info) {
        sessions.restoreSession(session, requestId, result, info, now);
      }

      private void restoreWrite(long session, long requestId, int result, int op, int key,
          byte[] value) {
        if (session != LogFormat.NO_SESSION) {
          sessions.restoreWrite(session, requestId, result, op, key,
              value == null ? 0 : value.length, LogFormat.digest(value));
        }
      }
    };
    BackupLog log = BackupLog.open(dataDir, fsync, replay,
        BackupLog.OpenOptions.defaults().salvage(salvage));
    Engine engine = new Engine(store, sessions, log);
    if (log.isOlderFormat()) {
      // A version 1 file: rewritten as version 2 before the first append (PROTOCOL.md §11.1).
      try {
        log.compact(engine.liveData());
      } catch (IOException e) {
        log.close();
        throw new IOException("cannot rewrite " + log.path() + " in the current format: "
            + e.getMessage(), e);
      }
      ServerLog.info(log.path() + ": rewritten from format version " + LogFormat.VERSION_1 + " to "
          + LogFormat.VERSION + " (its sessions are not kept: they had no secret)");
    }
    return engine;
  }

  /** The counters of the requests served with this engine, and their snapshot (STATS). */
  public ServerStats stats() {
    return stats;
  }

  public Store store() {
    return store;
  }

  public BackupLog log() {
    return log;
  }

  public Sessions sessions() {
    return sessions;
  }

  /**
   * SESSION (PROTOCOL.md §6.2) for the connection whose close request is {@code holder}; see
   * {@link Sessions#attach}.
   */
  public Sessions.Attached openSession(long requestedId, byte[] secret, Runnable holder) {
    return sessions.attach(requestedId, secret, holder, System.currentTimeMillis());
  }

  /** The connection {@code holder} that used {@code session} closed. */
  public void closeSession(Sessions.Session session, Runnable holder) {
    sessions.detach(session, holder, System.currentTimeMillis());
  }

  /** PUT (§6.4): OK, or KEY_EXISTS when {@code overwrite} is false and the key is present. */
  public WriteResult put(Sessions.Session s, long requestId, int key, byte[] value,
      boolean overwrite) {
    return write(s, requestId, overwrite ? LogFormat.OP_PUT : LogFormat.OP_PUT_IF_ABSENT, key,
        value);
  }

  /** GET (§6.5), for tests and tools: a copy of the value, or null if absent. */
  public byte[] get(int key) {
    return store.get(key);
  }

  /**
   * GET (§6.5) on the request path: hands the value to {@code reader} under its stripe's lock
   * (see {@link Store#read}); false if the key is absent.
   */
  public boolean read(int key, Store.ValueReader reader) {
    return store.read(key, reader);
  }

  /** DELETE (§6.6): OK if the key was present and is now removed, else NOT_FOUND. */
  public WriteResult delete(Sessions.Session s, long requestId, int key) {
    return write(s, requestId, LogFormat.OP_DELETE, key, null);
  }

  /** Where the record with sequence {@code seq} of a {@link WriteResult} stands. */
  public Durability durability(long seq) {
    if (log.isDurable(seq)) {
      return Durability.DURABLE;
    }
    return log.hasFailed(seq) ? Durability.FAILED : Durability.PENDING;
  }

  /**
   * Blocks until the record {@code seq} is durable (true) or will not be (false: answer
   * SERVER_ERROR), committing it itself when no other thread is committing.
   */
  public boolean awaitDurable(long seq) {
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
  public boolean commit(boolean wait) {
    return log.commit(wait);
  }

  /** Hands the commit to the log's sync thread (see {@link BackupLog#requestCommit}). */
  public void requestCommit() {
    log.requestCommit();
  }

  /** Whether writes were applied that no commit has taken yet. */
  public boolean hasUncommitted() {
    return log.hasUncommitted();
  }

  /** See {@link BackupLog#addCommitListener}. */
  public void addCommitListener(Runnable listener) {
    log.addCommitListener(listener);
  }

  public void removeCommitListener(Runnable listener) {
    log.removeCommitListener(listener);
  }

  /**
   * A write of log op {@code op} ({@link LogFormat#OP_PUT}, {@link LogFormat#OP_PUT_IF_ABSENT}
   * with {@code value}, {@link LogFormat#OP_DELETE} with null), exactly once per request id.
   */
  private WriteResult write(Sessions.Session s, long requestId, int op, int key, byte[] value) {
    int length = value == null ? 0 : value.length;
    long digest = LogFormat.digest(value); // Outside the lock: it reads the whole value.
    synchronized (s) {
      if (s.hasLastWrite()) {
        int order = Long.compareUnsigned(requestId, s.lastWriteId());
        if (order == 0) {
          // A retry (PROTOCOL.md §12.5): its answer once its record is durable, if it is the
          // same request; the same id for another request is a client bug, never OK.
          return s.repeatsLastWrite(op, key, length, digest)
              ? new WriteResult(s.lastResult(), s.lastSeq())
              : NOT_A_RETRY;
        }
        if (order < 0) {
          return STALE; // Ids of a session only grow.
        }
      }
      LogAppend append = new LogAppend(s, requestId, op);
      boolean changed;
      try {
        if (value == null) {
          changed = store.remove(key, append);
        } else if (op == LogFormat.OP_PUT) {
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
      s.recordWrite(requestId, result, append.seq, op, key, length, digest);
      return new WriteResult(result, append.seq);
    }
  }

  /**
   * The store's mutation callback for one write: appends the record inside the stripe lock, when
   * and only when the mutation takes effect, and keeps its sequence (0 if nothing was appended).
   */
  private final class LogAppend implements Store.Mutation {
    /** Its monitor is held by the caller of the store operation. */
    private final Sessions.Session session;
    private final long requestId;
    private final int op;
    long seq;

    LogAppend(Sessions.Session session, long requestId, int op) {
      this.session = session;
      this.requestId = requestId;
      this.op = op;
    }

    @Override
    public void applied(int key, byte[] value) {
      try {
        if (session.needsRecord()) {
          // The session and its secret reach the log before its first write (§11.2). Its last
          // write so far (if any) changed nothing, so the record carries none.
          log.appendSession(session.id, 0, 0, LogFormat.encodeSessionValue(session.secret(), 0,
              0, 0, 0));
          session.markRecorded();
        }
        long sid = session.id;
        int ok = Status.OK.code();
        seq = op == LogFormat.OP_DELETE ? log.appendDelete(key, sid, requestId, ok)
            : op == LogFormat.OP_PUT ? log.appendPut(key, value, sid, requestId, ok)
            : log.appendPutIfAbsent(key, value, sid, requestId, ok);
      } catch (IOException e) {
        // The store leaves the map unchanged when its callback throws: nothing is applied.
        throw new UncheckedIOException(e);
      }
    }
  }

  /** Compaction's view of the live data: the map stripe by stripe, then the session table. */
  public BackupLog.LiveData liveData() {
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
        sessions.forEachEntry(sink);
      }
    };
  }

  /** Syncs and closes the backup log; call after the last write has been answered. */
  @Override
  public void close() throws IOException {
    log.close();
  }
}
