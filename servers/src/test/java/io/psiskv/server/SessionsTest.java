package io.psiskv.server;

import static com.google.common.truth.Truth.assertThat;

import io.psiskv.protocol.Status;
import java.util.HashSet;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** {@link Sessions}: fresh ids, resume, the last write, expiry only of detached sessions, replay. */
class SessionsTest {
  private final Sessions sessions = new Sessions();

  @Test
  void freshSessionsHaveDistinctNonZeroIdsAndAPresentedIdIsResumed() {
    Set<Long> ids = new HashSet<>();
    for (int i = 0; i < 1000; i++) {
      long id = sessions.attach(0).id;
      assertThat(id).isNotEqualTo(0L);
      ids.add(id);
    }
    assertThat(ids).hasSize(1000);
    Sessions.Session s = sessions.attach(42);
    assertThat(s.id).isEqualTo(42);
    assertThat(sessions.attach(42)).isSameInstanceAs(s);
  }

  @Test
  void theLastWriteIsRecordedAndRecognised() {
    Sessions.Session s = sessions.attach(0);
    synchronized (s) {
      assertThat(s.isLastWrite(0)).isFalse();
      s.recordWrite(7, Status.OK, 99);
      assertThat(s.isLastWrite(7)).isTrue();
      assertThat(s.isLastWrite(8)).isFalse();
      assertThat(s.lastSeq()).isEqualTo(99);
      assertThat(s.lastResult()).isEqualTo(Status.OK);
    }
  }

  @Test
  void onlySessionsWithoutAConnectionExpire() {
    Sessions.Session attached = sessions.attach(1);
    Sessions.Session detached = sessions.attach(2);
    sessions.detach(detached);
    long later = System.currentTimeMillis() + ServerConfig.SESSION_IDLE_EXPIRY_MILLIS + 1;
    assertThat(sessions.expireIdle(later)).isEqualTo(1);
    assertThat(sessions.size()).isEqualTo(1);
    assertThat(sessions.attach(1)).isSameInstanceAs(attached);
  }

  @Test
  void replayKeepsTheHighestRequestIdOfEachSession() {
    sessions.restore(5, 10, Status.OK.code());
    sessions.restore(5, 3, Status.NOT_FOUND.code()); // An older record (a compacted snapshot).
    sessions.restore(0, 99, Status.OK.code()); // No session: ignored.
    Sessions.Session s = sessions.attach(5);
    synchronized (s) {
      assertThat(s.lastWriteId()).isEqualTo(10);
      assertThat(s.lastResult()).isEqualTo(Status.OK);
      assertThat(s.lastSeq()).isEqualTo(0); // Replayed records are durable.
    }
    assertThat(sessions.size()).isEqualTo(1);
  }

  @Test
  void replayComparesRequestIdsAsUnsigned() {
    sessions.restore(6, 10, Status.OK.code());
    sessions.restore(6, 0x8000_0000_0000_0001L, Status.NOT_FOUND.code()); // Higher, as a u64.
    sessions.restore(6, 11, Status.OK.code()); // Lower than the one before.
    Sessions.Session s = sessions.attach(6);
    synchronized (s) {
      assertThat(s.lastWriteId()).isEqualTo(0x8000_0000_0000_0001L);
      assertThat(s.lastResult()).isEqualTo(Status.NOT_FOUND);
    }
  }
}
