package io.psiskv.server;

import io.psiskv.protocol.Status;
import java.io.IOException;
import java.security.SecureRandom;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The exactly-once table of PROTOCOL.md §12: for every client session, the request id and result
 * of the last PUT or DELETE it applied, and the log sequence of that write's record. It is a plain
 * table: {@link Engine} decides what a write does and records the outcome here; nothing in this
 * class touches the store or the log. The same three fields are in the backup-log record of every
 * applied write (§11.2), so the table is rebuilt by replay after a crash, and compaction writes it
 * out as SESSION records.
 *
 * <p><b>Bound.</b> A session with no connection attached for {@link
 * ServerConfig#SESSION_IDLE_EXPIRY_MILLIS} is forgotten by {@link #expireIdle}; the maintenance
 * thread calls it every second. A client that resumes a forgotten session keeps its id and starts
 * afresh (§12.6).
 *
 * <p><b>Locking.</b> The map is concurrent. Every field of a {@link Session} but its id is guarded
 * by the session's own monitor, and only the session's methods write them. {@link Engine} holds
 * that monitor across the check and the apply of one write (lock order: session, then store
 * stripe, then the log's append lock); the attach and expiry steps hold it inside the map's
 * per-key compute, so a session being resumed is never expired under the connection that resumes
 * it.
 */
final class Sessions {
  /** Session ids must not be guessable by another client, hence a CSPRNG. */
  private final SecureRandom random = new SecureRandom();
  private final ConcurrentHashMap<Long, Session> table = new ConcurrentHashMap<>();

  /** One client session's entry. Every method expects the caller to hold the session's monitor. */
  static final class Session {
    final long id;
    private long lastWriteId;
    private Status lastResult;
    private long lastSeq;
    private int attached;
    private long idleSinceMillis;

    Session(long id) {
      this.id = id;
      this.idleSinceMillis = System.currentTimeMillis();
    }

    /** The id of the last applied write, 0 if none. */
    long lastWriteId() {
      return lastWriteId;
    }

    /** The status the last write was answered, or null if none. */
    Status lastResult() {
      return lastResult;
    }

    /** The log sequence to await before that answer is repeated (0: nothing to await). */
    long lastSeq() {
      return lastSeq;
    }

    /** Whether {@code requestId} repeats the last applied write (a retry, §12.5). */
    boolean isLastWrite(long requestId) {
      return lastResult != null && requestId == lastWriteId;
    }

    /** Records a write this session applied (or answered without a change). */
    void recordWrite(long requestId, Status result, long seq) {
      lastWriteId = requestId;
      lastResult = result;
      lastSeq = seq;
    }

    private void attach() {
      attached++;
    }

    private void detach(long nowMillis) {
      attached--;
      idleSinceMillis = nowMillis;
    }

    private boolean expired(long nowMillis) {
      return attached == 0 && nowMillis - idleSinceMillis > ServerConfig.SESSION_IDLE_EXPIRY_MILLIS;
    }
  }

  /**
   * SESSION (§6.2): a new session for 0, else the session with that id (resumed, or made anew if
   * it was forgotten).
   */
  Session attach(long requested) {
    long id = requested;
    while (id == 0 || (requested == 0 && table.containsKey(id))) {
      id = random.nextLong();
    }
    return table.compute(id, (k, existing) -> {
      Session s = existing != null ? existing : new Session(k);
      synchronized (s) {
        s.attach();
      }
      return s;
    });
  }

  /** A connection using {@code s} closed. */
  void detach(Session s) {
    synchronized (s) {
      s.detach(System.currentTimeMillis());
    }
  }

  /** Replay: the last applied write of {@code session} was {@code requestId}, answered so. */
  void restore(long session, long requestId, int result) {
    if (session == 0) {
      return; // A compacted snapshot's record: no session (§11.2).
    }
    Session s = table.computeIfAbsent(session, Session::new);
    synchronized (s) {
      if (Long.compareUnsigned(requestId, s.lastWriteId()) >= 0) { // Ids are u64 (§3.2).
        s.recordWrite(requestId, Status.of(result), 0);
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
          removed[0] = s.expired(nowMillis);
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
        requestId = s.lastWriteId();
        result = s.lastResult();
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
