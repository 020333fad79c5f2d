package io.psiskv.server.store;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Status;
import io.psiskv.server.ServerConfig;
import io.psiskv.server.backup.BackupLog;
import io.psiskv.server.backup.LogFormat;
import java.io.IOException;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;

/**
 * The client sessions (PROTOCOL.md §6.2, §12): who may resume a session, and for each the last
 * PUT or DELETE it applied, so that a retried write is answered its original result (exactly
 * once) and any other reuse of its request id is refused. A plain table: {@link Engine} decides
 * what a write does and records the outcome here; nothing in this class touches the store or the
 * log.
 *
 * <p><b>Ownership.</b> A session has an id and a 16-byte secret, both from {@link SecureRandom};
 * resuming it needs both ({@link #attach}). A resume while another connection holds the session
 * takes it over: the older connection is asked to close ({@code holder}'s callback).
 *
 * <p><b>Bounds.</b> At most {@code maxSessions} entries. A session that never wrote is dropped
 * when its connection closes. A detached session that wrote waits in an idle queue, oldest
 * first (an intrusive list: no allocation, no scan): {@link #expireIdle} forgets those idle for
 * {@link ServerConfig#SESSION_IDLE_EXPIRY_MILLIS}, looking only at the head; a new session when
 * the table is full takes the place of the head if it has been idle for {@link
 * ServerConfig#SESSION_EVICT_MIN_IDLE_MILLIS}, else it is refused (UNAVAILABLE). A client that
 * resumes a forgotten session gets it anew with its id and secret (§12.6).
 *
 * <p><b>Durability.</b> The log holds a SESSION record (secret and last write) written before a
 * session's first write record ({@link Session#needsRecord}), and the id and request id of every
 * write record, so the table of sessions that wrote comes back by replay after a crash; compaction
 * writes it out as SESSION records ({@link #forEachEntry}).
 *
 * <p><b>Locking.</b> {@code this} guards the map, the idle queue and each session's holder and
 * idle links; it is held for no I/O and never inside a session's monitor. A session's monitor
 * guards its last-write fields; {@link Engine} holds it across the check and the apply of one
 * write (lock order: session, then store stripe, then the log's append lock). So the order is
 * {@code this}, then a session; never the reverse.
 */
public final class Sessions {
  /** The outcome of {@link #attach}: the session, or the status that refuses it. */
  public record Attached(Session session, Status refusal) {}

  private static final Attached MALFORMED = new Attached(null, Status.BAD_REQUEST);
  private static final Attached FORBIDDEN = new Attached(null, Status.FORBIDDEN);
  private static final Attached FULL = new Attached(null, Status.UNAVAILABLE);

  private final SecureRandom random = new SecureRandom();
  private final int maxSessions;
  /** Guarded by this. */
  private final HashMap<Long, Session> table = new HashMap<>();
  /** The idle queue, oldest at the head; guarded by this. */
  private Session idleHead;
  private Session idleTail;

  public Sessions(int maxSessions) {
    if (maxSessions < 1) {
      throw new IllegalArgumentException("maxSessions must be positive: " + maxSessions);
    }
    this.maxSessions = maxSessions;
  }

  /** One client session. */
  public static final class Session {
    public final long id;
    private final byte[] secret;

    // Guarded by the session's monitor.
    private boolean hasLastWrite;
    private long lastWriteId;
    private Status lastResult;
    private long lastSeq;
    private int lastOp;
    private int lastKey;
    private int lastLength;
    private long lastDigest;
    private boolean recorded;

    // Guarded by the table (Sessions.this).
    private Runnable holder;
    private long idleSinceMillis;
    private boolean idle;
    private Session prevIdle;
    private Session nextIdle;

    Session(long id, byte[] secret) {
      this.id = id;
      this.secret = secret.clone();
    }

    /** The secret a client must present to resume this session. */
    public byte[] secret() {
      return secret.clone();
    }

    // The methods below expect the caller to hold the session's monitor.

    /** Whether a write was recorded ({@link #recordWrite}). */
    boolean hasLastWrite() {
      return hasLastWrite;
    }

    /** The id of the last recorded write (meaningful if {@link #hasLastWrite}). */
    long lastWriteId() {
      return lastWriteId;
    }

    /** The status the last write was answered. */
    Status lastResult() {
      return lastResult;
    }

    /** The log sequence to await before that answer is repeated (0: nothing to await). */
    long lastSeq() {
      return lastSeq;
    }

    /**
     * Whether a request with the last write's id repeats it (PROTOCOL.md §12.5): the same
     * operation ({@link LogFormat#OP_PUT}, {@link LogFormat#OP_PUT_IF_ABSENT} or {@link
     * LogFormat#OP_DELETE}), key, value length and value digest.
     */
    boolean repeatsLastWrite(int op, int key, int length, long digest) {
      return op == lastOp && key == lastKey && length == lastLength && digest == lastDigest;
    }

    /** Records a write this session applied (or answered without a change). */
    void recordWrite(long requestId, Status result, long seq, int op, int key, int length,
        long digest) {
      hasLastWrite = true;
      lastWriteId = requestId;
      lastResult = result;
      lastSeq = seq;
      lastOp = op;
      lastKey = key;
      lastLength = length;
      lastDigest = digest;
    }

    /** Whether the log lacks this session's SESSION record, which must precede its first write. */
    boolean needsRecord() {
      return !recorded;
    }

    /** The log now holds (or will, in append order) this session's SESSION record. */
    void markRecorded() {
      recorded = true;
    }

    /** The SESSION record's value: the secret and the last write (PROTOCOL.md §11.2). */
    byte[] recordValue() {
      return hasLastWrite
          ? LogFormat.encodeSessionValue(secret, lastOp, lastKey, lastLength, lastDigest)
          : LogFormat.encodeSessionValue(secret, 0, 0, 0, 0);
    }

    /** Whether dropping the session loses nothing: it never wrote and has no SESSION record. */
    private boolean isBlank() {
      return !hasLastWrite && !recorded;
    }
  }

  /**
   * SESSION (§6.2) from a connection, {@code holder} being that connection's close request
   * (callable from any thread). An all-zero id and secret ask for a new session; a known id with
   * its secret resumes it, taking it over from a connection that holds it (whose {@code holder}
   * is run, after this returns); an unknown id with a secret is made anew with them.
   *
   * @return the session, or BAD_REQUEST (one of id and secret zero), FORBIDDEN (a wrong secret)
   *     or UNAVAILABLE (the table is full of sessions idle for less than the eviction minimum)
   */
  public Attached attach(long requestedId, byte[] secret, Runnable holder, long nowMillis) {
    boolean zeroSecret = isZero(secret);
    if ((requestedId == 0) != zeroSecret || secret.length != Protocol.SESSION_SECRET_BYTES) {
      return MALFORMED;
    }
    Runnable takenFrom = null;
    Session s;
    synchronized (this) {
      if (requestedId == 0) {
        if (!makeRoom(nowMillis)) {
          return FULL;
        }
        long id;
        do {
          id = random.nextLong();
        } while (id == 0 || table.containsKey(id));
        byte[] fresh = new byte[Protocol.SESSION_SECRET_BYTES];
        do {
          random.nextBytes(fresh);
        } while (isZero(fresh));
        s = new Session(id, fresh);
        table.put(id, s);
      } else {
        s = table.get(requestedId);
        if (s == null) {
          if (!makeRoom(nowMillis)) {
            return FULL;
          }
          s = new Session(requestedId, secret);
          table.put(requestedId, s);
        } else if (!MessageDigest.isEqual(s.secret, secret)) {
          return FORBIDDEN;
        } else {
          unlinkIdle(s);
          takenFrom = s.holder;
        }
      }
      s.holder = holder;
    }
    if (takenFrom != null) {
      takenFrom.run();
    }
    return new Attached(s, null);
  }

  /**
   * The connection {@code holder} that used {@code s} closed. Unless another connection took the
   * session over meanwhile, the session is dropped if it never wrote, else queued as idle.
   */
  void detach(Session s, Runnable holder, long nowMillis) {
    synchronized (this) {
      if (s.holder != holder) {
        return; // Taken over: the new connection holds it.
      }
      s.holder = null;
      boolean blank;
      synchronized (s) {
        blank = s.isBlank();
      }
      if (blank) {
        table.remove(s.id, s);
      } else {
        s.idleSinceMillis = nowMillis;
        linkIdleTail(s);
      }
    }
  }

  /**
   * Replay: a SESSION record ({@link BackupLog.Replay#session}). Its session comes back, idle,
   * with its secret and last write; a later record of the same session replaces what it held.
   */
  void restoreSession(long id, long requestId, int result, byte[] info, long nowMillis) {
    if (id == 0) {
      return;
    }
    byte[] secret = java.util.Arrays.copyOfRange(info, LogFormat.OFF_SV_SECRET,
        LogFormat.OFF_SV_SECRET + Protocol.SESSION_SECRET_BYTES);
    Session s;
    synchronized (this) {
      s = table.get(id);
      if (s == null || !MessageDigest.isEqual(s.secret, secret)) {
        if (s != null) {
          unlinkIdle(s);
        }
        s = new Session(id, secret);
        table.put(id, s);
      } else {
        unlinkIdle(s);
      }
      s.idleSinceMillis = nowMillis;
      linkIdleTail(s);
      while (table.size() > maxSessions && idleHead != null) {
        forget(idleHead);
      }
    }
    synchronized (s) {
      s.markRecorded();
      int lastOp = info[LogFormat.OFF_SV_OP] & 0xFF;
      if (lastOp != 0) {
        s.recordWrite(requestId, Status.of(result), 0, lastOp,
            Header.getU32(info, LogFormat.OFF_SV_KEY), Header.getU32(info, LogFormat.OFF_SV_LENGTH),
            Header.getU64(info, LogFormat.OFF_SV_DIGEST));
      }
    }
  }

  /**
   * Replay: a write record of session {@code id} (PUT, PUT_IF_ABSENT or DELETE). Ignored for a
   * session whose SESSION record was not replayed before it (a snapshot's record, or a version 1
   * file): without its secret nobody could resume it.
   */
  void restoreWrite(long id, long requestId, int result, int op, int key, int length,
      long digest) {
    if (id == 0) {
      return;
    }
    Session s;
    synchronized (this) {
      s = table.get(id);
    }
    if (s == null) {
      return;
    }
    synchronized (s) {
      if (!s.hasLastWrite() || Long.compareUnsigned(requestId, s.lastWriteId()) >= 0) {
        s.recordWrite(requestId, Status.of(result), 0, op, key, length, digest);
      }
    }
  }

  /** Forgets detached sessions idle for longer than the expiry; returns how many. */
  public int expireIdle(long nowMillis) {
    int expired = 0;
    synchronized (this) {
      while (idleHead != null
          && nowMillis - idleHead.idleSinceMillis > ServerConfig.SESSION_IDLE_EXPIRY_MILLIS) {
        forget(idleHead);
        expired++;
      }
    }
    return expired;
  }

  /**
   * Compaction: every session that has a SESSION record, with its secret and last write. The
   * sessions are listed under the table's lock, then written one by one under their own.
   */
  void forEachEntry(BackupLog.SnapshotSink sink) throws IOException {
    List<Session> all;
    synchronized (this) {
      all = new ArrayList<>(table.values());
    }
    for (Session s : all) {
      long requestId;
      int result;
      byte[] info;
      synchronized (s) {
        if (!s.recorded) {
          continue; // Its first write will append its record after the switch.
        }
        requestId = s.hasLastWrite() ? s.lastWriteId() : 0;
        result = s.hasLastWrite() ? s.lastResult().code() : 0;
        info = s.recordValue();
      }
      sink.session(s.id, requestId, result, info);
    }
  }

  public synchronized int size() {
    return table.size();
  }

  /** Sessions detached and waiting in the idle queue (for tests and figures). */
  synchronized int idleCount() {
    int n = 0;
    for (Session s = idleHead; s != null; s = s.nextIdle) {
      n++;
    }
    return n;
  }

  /** Under this: room for one more session, by forgetting the head of the idle queue if allowed. */
  private boolean makeRoom(long nowMillis) {
    if (table.size() < maxSessions) {
      return true;
    }
    if (idleHead != null
        && nowMillis - idleHead.idleSinceMillis >= ServerConfig.SESSION_EVICT_MIN_IDLE_MILLIS) {
      forget(idleHead);
      return true;
    }
    return false;
  }

  private void forget(Session s) {
    unlinkIdle(s);
    table.remove(s.id, s);
  }

  private void linkIdleTail(Session s) {
    s.idle = true;
    s.prevIdle = idleTail;
    s.nextIdle = null;
    if (idleTail != null) {
      idleTail.nextIdle = s;
    } else {
      idleHead = s;
    }
    idleTail = s;
  }

  private void unlinkIdle(Session s) {
    if (!s.idle) {
      return;
    }
    if (s.prevIdle != null) {
      s.prevIdle.nextIdle = s.nextIdle;
    } else {
      idleHead = s.nextIdle;
    }
    if (s.nextIdle != null) {
      s.nextIdle.prevIdle = s.prevIdle;
    } else {
      idleTail = s.prevIdle;
    }
    s.prevIdle = null;
    s.nextIdle = null;
    s.idle = false;
  }

  private static boolean isZero(byte[] b) {
    int acc = 0;
    for (byte x : b) {
      acc |= x;
    }
    return acc == 0;
  }
}
