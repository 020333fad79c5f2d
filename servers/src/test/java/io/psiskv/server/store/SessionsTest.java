package io.psiskv.server.store;

import static com.google.common.truth.Truth.assertThat;

import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Status;
import io.psiskv.server.ServerConfig;
import io.psiskv.server.backup.BackupLog;
import io.psiskv.server.backup.LogFormat;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * {@link Sessions}: fresh ids and secrets, resume only with the secret, take-over, the bounds
 * (blank sessions dropped, the cap, expiry from the head of the idle queue), the last write and
 * replay.
 */
class SessionsTest {
  private static final byte[] ZERO = new byte[Protocol.SESSION_SECRET_BYTES];
  private static final Runnable NOBODY = () -> {};
  private static final long T0 = 1_000_000;

  private final Sessions sessions = new Sessions(1_000);

  private static byte[] secret(int b) {
    byte[] s = new byte[Protocol.SESSION_SECRET_BYTES];
    Arrays.fill(s, (byte) b);
    return s;
  }

  private Sessions.Session attach(Sessions table, long id, byte[] secret, Runnable holder) {
    Sessions.Attached a = table.attach(id, secret, holder, T0);
    assertThat(a.refusal()).isNull();
    return a.session();
  }

  /** A session that wrote once (so it is kept when detached). */
  private static void wrote(Sessions.Session s, long requestId) {
    synchronized (s) {
      s.recordWrite(requestId, Status.OK, 0, LogFormat.OP_PUT, 1, 1, 1);
    }
  }

  @Test
  void freshSessionsHaveDistinctNonZeroIdsAndRandomSecrets() {
    Set<Long> ids = new HashSet<>();
    Set<String> secrets = new HashSet<>();
    for (int i = 0; i < 1000; i++) {
      Sessions.Session s = attach(sessions, 0, ZERO, NOBODY);
      assertThat(s.id).isNotEqualTo(0L);
      assertThat(s.secret()).isNotEqualTo(ZERO);
      ids.add(s.id);
      secrets.add(Arrays.toString(s.secret()));
    }
    assertThat(ids).hasSize(1000);
    assertThat(secrets).hasSize(1000);
  }

  @Test
  void onlyTheSecretResumesASession() {
    Sessions.Session s = attach(sessions, 0, ZERO, NOBODY);
    assertThat(sessions.attach(s.id, secret(7), NOBODY, T0).refusal())
        .isEqualTo(Status.FORBIDDEN);
    byte[] almost = s.secret();
    almost[15] ^= 1;
    assertThat(sessions.attach(s.id, almost, NOBODY, T0).refusal()).isEqualTo(Status.FORBIDDEN);
    assertThat(attach(sessions, s.id, s.secret(), NOBODY)).isSameInstanceAs(s);
  }

  @Test
  void halfZeroRequestsAreMalformed() {
    assertThat(sessions.attach(0, secret(1), NOBODY, T0).refusal())
        .isEqualTo(Status.BAD_REQUEST);
    assertThat(sessions.attach(5, ZERO, NOBODY, T0).refusal()).isEqualTo(Status.BAD_REQUEST);
    assertThat(sessions.size()).isEqualTo(0);
  }

  @Test
  void anUnknownIdIsMadeAnewWithThePresentedSecret() {
    Sessions.Session s = attach(sessions, 42, secret(9), NOBODY);
    assertThat(s.id).isEqualTo(42);
    assertThat(s.secret()).isEqualTo(secret(9));
    assertThat(sessions.attach(42, secret(8), NOBODY, T0).refusal()).isEqualTo(Status.FORBIDDEN);
  }

  @Test
  void aResumeTakesTheSessionOverAndClosesTheOlderConnection() {
    AtomicInteger closedA = new AtomicInteger();
    Runnable a = closedA::incrementAndGet;
    Runnable b = () -> {};
    Sessions.Session s = attach(sessions, 0, ZERO, a);
    wrote(s, 1);
    assertThat(attach(sessions, s.id, s.secret(), b)).isSameInstanceAs(s);
    assertThat(closedA.get()).isEqualTo(1);
    sessions.detach(s, a, T0); // The old connection's close: the session stays with b.
    assertThat(sessions.idleCount()).isEqualTo(0);
    sessions.detach(s, b, T0);
    assertThat(sessions.idleCount()).isEqualTo(1);
  }

  @Test
  void aSessionThatNeverWroteIsDroppedWhenItsConnectionCloses() {
    // 100,000 open-and-close sessions leave no entry: a session is kept only once it wrote.
    for (int i = 0; i < 100_000; i++) {
      Sessions.Session s = attach(sessions, 0, ZERO, NOBODY);
      sessions.detach(s, NOBODY, T0);
    }
    assertThat(sessions.size()).isEqualTo(0);
    Sessions.Session kept = attach(sessions, 0, ZERO, NOBODY);
    wrote(kept, 1);
    sessions.detach(kept, NOBODY, T0);
    assertThat(sessions.size()).isEqualTo(1);
  }

  @Test
  void expiryForgetsDetachedSessionsOldestFirstAndKeepsAttachedOnes() {
    Sessions.Session attached = attach(sessions, 1, secret(1), NOBODY);
    wrote(attached, 1);
    Sessions.Session first = attach(sessions, 2, secret(2), NOBODY);
    wrote(first, 1);
    Sessions.Session second = attach(sessions, 3, secret(3), NOBODY);
    wrote(second, 1);
    sessions.detach(first, NOBODY, T0);
    sessions.detach(second, NOBODY, T0 + 5_000);
    long expiry = ServerConfig.SESSION_IDLE_EXPIRY_MILLIS;
    assertThat(sessions.expireIdle(T0 + expiry)).isEqualTo(0);
    assertThat(sessions.expireIdle(T0 + expiry + 1)).isEqualTo(1);
    assertThat(sessions.expireIdle(T0 + expiry + 5_001)).isEqualTo(1);
    assertThat(sessions.expireIdle(T0 + 10 * expiry)).isEqualTo(0);
    assertThat(sessions.size()).isEqualTo(1);
    assertThat(attach(sessions, 1, secret(1), NOBODY)).isSameInstanceAs(attached);
    // A forgotten session is resumed as a new one with its id and secret (PROTOCOL.md §12.6).
    Sessions.Session again = attach(sessions, 2, secret(2), NOBODY);
    assertThat(again).isNotSameInstanceAs(first);
    synchronized (again) {
      assertThat(again.hasLastWrite()).isFalse();
    }
  }

  @Test
  void aFullTableEvictsOnlyASessionIdleLongerThanTheRetryGrace() {
    Sessions small = new Sessions(2);
    Sessions.Session a = attach(small, 0, ZERO, NOBODY);
    wrote(a, 1);
    Sessions.Session b = attach(small, 0, ZERO, NOBODY);
    wrote(b, 1);
    assertThat(small.attach(0, ZERO, NOBODY, T0).refusal()).isEqualTo(Status.UNAVAILABLE);
    small.detach(a, NOBODY, T0);
    long grace = ServerConfig.SESSION_EVICT_MIN_IDLE_MILLIS;
    assertThat(small.attach(0, ZERO, NOBODY, T0 + grace - 1).refusal())
        .isEqualTo(Status.UNAVAILABLE);
    assertThat(small.attach(77, secret(7), NOBODY, T0 + grace - 1).refusal())
        .isEqualTo(Status.UNAVAILABLE);
    Sessions.Attached c = small.attach(0, ZERO, NOBODY, T0 + grace);
    assertThat(c.refusal()).isNull();
    assertThat(small.size()).isEqualTo(2);
    // a was forgotten: its resume is a new session, refused while the table is full of fresh ones.
    assertThat(small.attach(a.id, a.secret(), NOBODY, T0 + grace).refusal())
        .isEqualTo(Status.UNAVAILABLE);
  }

  @Test
  void aRetryMustRepeatTheLastWrite() {
    Sessions.Session s = attach(sessions, 0, ZERO, NOBODY);
    synchronized (s) {
      assertThat(s.hasLastWrite()).isFalse();
      s.recordWrite(7, Status.OK, 99, LogFormat.OP_PUT, 5, 3, 0xabcL);
      assertThat(s.lastWriteId()).isEqualTo(7);
      assertThat(s.lastSeq()).isEqualTo(99);
      assertThat(s.repeatsLastWrite(LogFormat.OP_PUT, 5, 3, 0xabcL)).isTrue();
      assertThat(s.repeatsLastWrite(LogFormat.OP_PUT_IF_ABSENT, 5, 3, 0xabcL)).isFalse();
      assertThat(s.repeatsLastWrite(LogFormat.OP_DELETE, 5, 0, 0)).isFalse();
      assertThat(s.repeatsLastWrite(LogFormat.OP_PUT, 6, 3, 0xabcL)).isFalse();
      assertThat(s.repeatsLastWrite(LogFormat.OP_PUT, 5, 4, 0xabcL)).isFalse();
      assertThat(s.repeatsLastWrite(LogFormat.OP_PUT, 5, 3, 0xabdL)).isFalse();
    }
  }

  @Test
  void replayRestoresSessionsWithTheirSecretAndTheHighestUnsignedRequestId() {
    byte[] info = LogFormat.encodeSessionValue(secret(5), 0, 0, 0, 0);
    sessions.restoreSession(5, 0, 0, info, T0);
    sessions.restoreWrite(5, 10, Status.OK.code(), LogFormat.OP_PUT, 1, 2, 3);
    sessions.restoreWrite(5, 0x8000_0000_0000_0001L, Status.OK.code(), LogFormat.OP_DELETE, 4,
        0, 0);
    sessions.restoreWrite(5, 11, Status.OK.code(), LogFormat.OP_PUT, 1, 2, 3); // Lower, unsigned.
    sessions.restoreWrite(6, 99, Status.OK.code(), LogFormat.OP_PUT, 1, 2, 3); // No SESSION record.
    sessions.restoreWrite(0, 99, Status.OK.code(), LogFormat.OP_PUT, 1, 2, 3); // A snapshot's.
    assertThat(sessions.size()).isEqualTo(1);
    assertThat(sessions.attach(5, secret(6), NOBODY, T0).refusal()).isEqualTo(Status.FORBIDDEN);
    Sessions.Session s = attach(sessions, 5, secret(5), NOBODY);
    synchronized (s) {
      assertThat(s.lastWriteId()).isEqualTo(0x8000_0000_0000_0001L);
      assertThat(s.lastSeq()).isEqualTo(0); // Replayed records are durable.
      assertThat(s.repeatsLastWrite(LogFormat.OP_DELETE, 4, 0, 0)).isTrue();
      assertThat(s.needsRecord()).isFalse();
    }
  }

  @Test
  void aSnapshotSessionRecordCarriesTheLastWrite() {
    Sessions.Session s = attach(sessions, 0, ZERO, NOBODY);
    synchronized (s) {
      s.recordWrite(12, Status.KEY_EXISTS, 0, LogFormat.OP_PUT_IF_ABSENT, 8, 100, 0x1234L);
      s.markRecorded();
    }
    Sessions restored = new Sessions(10);
    byte[][] seen = new byte[1][];
    long[] ids = new long[2];
    try {
      sessions.forEachEntry(new BackupLog.SnapshotSink() {
        @Override
        public void put(int key, byte[] value) {}

        @Override
        public void session(long session, long requestId, int result, byte[] info) {
          ids[0] = session;
          ids[1] = requestId;
          seen[0] = info;
          restored.restoreSession(session, requestId, result, info, T0);
        }
      });
    } catch (java.io.IOException e) {
      throw new AssertionError(e);
    }
    assertThat(ids[0]).isEqualTo(s.id);
    assertThat(ids[1]).isEqualTo(12);
    assertThat(seen[0]).hasLength(LogFormat.SESSION_VALUE_BYTES);
    Sessions.Session back = attach(restored, s.id, s.secret(), NOBODY);
    synchronized (back) {
      assertThat(back.lastResult()).isEqualTo(Status.KEY_EXISTS);
      assertThat(back.repeatsLastWrite(LogFormat.OP_PUT_IF_ABSENT, 8, 100, 0x1234L)).isTrue();
    }
  }
}
