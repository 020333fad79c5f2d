package io.psiskv.server;

import io.psiskv.protocol.Status;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.security.SecureRandom;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The exactly-once table of PROTOCOL.md §12: for every client session, the request id and result
 * of the last PUT or DELETE it applied. A client that lost its connection resends the interrupted
 * write with the same (session, request id); {@link Engine} finds it here and answers the stored
 * result instead of applying the write again. The same three fields are in the backup-log record
 * of every applied write (§11.2), so the table is rebuilt by replay after a crash, and compaction
 * writes it out as SESSION records.
 *
 * <p><b>Bound.</b> A session with no connection attached for {@link
 * ServerConfig#SESSION_IDLE_EXPIRY_MILLIS} is forgotten by {@link #expireIdle}; the maintenance
 * thread calls it every second. A client that resumes a forgotten session keeps its id and starts
 * afresh (§12.6).
 *
 * <p><b>Locking.</b> The map is concurrent. Each {@link Session}'s write fields are guarded by the
 * session's own monitor, which {@link Engine} holds across the check and the apply of one write;
 * the lock order is session, then store stripe, then the log's append lock. {@code attached} and
 * {@code idleSinceMillis} are guarded by the monitor as well.
 */
final class Sessions {
  /** Session ids must not be guessable by another client, hence a CSPRNG. */
  private final SecureRandom random = new SecureRandom();
  private final ConcurrentHashMap<Long, Session> table = new ConcurrentHashMap<>();
  /** Set once by {@link #logTo}, before any client is served (replay needs no log). */
  private volatile BackupLog log;

  /** Sessions' writes append to {@code log} from now on; call once, after replay. */
  void logTo(BackupLog log) {
    this.log = log;
  }

  /**
   * One client session. It doubles as the store's mutation callback for this session's writes:
   * {@link #applied} appends the log record inside the stripe lock, so no object is allocated per
   * request.
   */
  final class Session implements Store.Mutation {
    final long id;
    /** Guarded by this: the last applied write (0 = none yet). */
    long lastWriteId;
    /** Guarded by this: the status that write was answered. */
    Status lastResult;
    /** Guarded by this: its log sequence, to await before repeating its answer (0 = durable). */
    long lastSeq;
    /** Guarded by this: the write being applied now, and its log sequence once appended. */
    long pendingRequestId;
    long pendingSeq;
    /** Guarded by this: connections using the session, and since when it has had none. */
    int attached;
    long idleSinceMillis;

    Session(long id) {
      this.id = id;
      this.idleSinceMillis = System.currentTimeMillis();
    }

    /** Store callback: called under the stripe lock when the write takes effect. */
    @Override
    public void applied(int key, byte[] value) {
      try {
        pendingSeq = value == null
            ? log.appendDelete(key, id, pendingRequestId, Status.OK.code())
            : log.appendPut(key, value, id, pendingRequestId, Status.OK.code());
      } catch (IOException e) {
        // The store leaves the map unchanged when its callback throws: nothing is applied.
        throw new UncheckedIOException(e);
      }
    }
  }

  /**
   * SESSION (§6.2): a new session for 0, else the session with that id (resumed, or made anew if
   * it was forgotten). Attaching runs inside the map's per-key compute, as expiry does, so a
   * session being resumed is never expired under the connection that resumes it.
   */
  Session attach(long requested) {
    long id = requested;
    while (id == 0 || (requested == 0 && table.containsKey(id))) {
      id = random.nextLong();
    }
    return table.compute(id, (k, existing) -> {
      Session s = existing != null ? existing : new Session(k);
      synchronized (s) {
        s.attached++;
      }
      return s;
    });
  }

  /** A connection using {@code s} closed. */
  void detach(Session s) {
    synchronized (s) {
      s.attached--;
      s.idleSinceMillis = System.currentTimeMillis();
    }
  }

  /** Replay: the last applied write of {@code session} was {@code requestId}, answered so. */
  void restore(long session, long requestId, int result) {
    if (session == 0) {
      return; // A compacted snapshot's record: no session (§11.2).
    }
    Session s = table.computeIfAbsent(session, Session::new);
    synchronized (s) {
      if (requestId >= s.lastWriteId) {
        s.lastWriteId = requestId;
        s.lastResult = Status.of(result);
        s.lastSeq = 0;
      }
    }
  }

  /** Forgets sessions idle for longer than the expiry; returns how many. */
  int expireIdle(long nowMillis) {
    int expired = 0;
    for (Long id : table.keySet()) {
      boolean[] removed = {false};
      table.computeIfPresent(id, (k, s) -> {
        synchronized (s) {
          removed[0] = s.attached == 0
              && nowMillis - s.idleSinceMillis > ServerConfig.SESSION_IDLE_EXPIRY_MILLIS;
          return removed[0] ? null : s;
        }
      });
      expired += removed[0] ? 1 : 0;
    }
    return expired;
  }

  /** Compaction: every session's last write, as a SESSION record of the snapshot. */
  void forEachLastWrite(BackupLog.SnapshotSink sink) throws IOException {
    for (Session s : table.values()) {
      long requestId;
      Status result;
      synchronized (s) {
        requestId = s.lastWriteId;
        result = s.lastResult;
      }
      if (requestId != 0 && result != null) {
        sink.session(s.id, requestId, result.code());
      }
    }
  }

  int size() {
    return table.size();
  }
}
