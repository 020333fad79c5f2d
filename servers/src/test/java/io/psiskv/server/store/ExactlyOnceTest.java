package io.psiskv.server.store;

import static com.google.common.truth.Truth.assertThat;

import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Status;
import io.psiskv.server.testkit.RawClient;
import io.psiskv.server.testkit.ServerFixture;
import java.io.IOException;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * PROTOCOL.md §12.5 on the server: a write resent with the same (session, request id) is answered
 * its original result and not applied again, on the same Data Server and after a SIGKILL and a
 * reload of the backup file.
 */
@Tag("process")
@Tag("server-pair")
class ExactlyOnceTest {
  @RegisterExtension
  final ServerFixture server = ServerFixture.builder().manualStart().build();

  private static Status put(RawClient c, int key, long id, boolean overwrite, byte[] value)
      throws IOException {
    c.send(RawClient.header(Opcode.PUT, overwrite ? 1 : 0, key, id, value.length));
    c.send(value);
    return c.readChecked(Opcode.PUT, id).status();
  }

  private static Status delete(RawClient c, int key, long id) throws IOException {
    c.send(RawClient.header(Opcode.DELETE, 0, key, id, 0));
    return c.readChecked(Opcode.DELETE, id).status();
  }

  private RawClient resume(long session, byte[] secret) throws IOException {
    RawClient c = RawClient.data(server);
    assertThat(c.resume(session, secret)).isEqualTo(session);
    return c;
  }

  @Test
  void retriedWritesAnswerTheirOriginalResultOnTheSameServer() throws Exception {
    server.start();
    long session;
    byte[] secret;
    try (RawClient c = RawClient.session(server)) {
      session = c.sessionId();
      secret = c.sessionSecret();
      assertThat(put(c, 1, 100, false, new byte[] {1})).isEqualTo(Status.OK);
    }
    try (RawClient c = resume(session, secret)) {
      assertThat(put(c, 1, 100, false, new byte[] {1})).isEqualTo(Status.OK); // not KEY_EXISTS
      assertThat(put(c, 1, 101, false, new byte[] {2})).isEqualTo(Status.KEY_EXISTS);
      assertThat(delete(c, 1, 102)).isEqualTo(Status.OK);
      assertThat(delete(c, 1, 102)).isEqualTo(Status.OK); // not NOT_FOUND
      assertThat(delete(c, 1, 103)).isEqualTo(Status.NOT_FOUND);
      assertThat(put(c, 1, 99, true, new byte[] {3})).isEqualTo(Status.BAD_REQUEST);
    }
    try (RawClient c = RawClient.session(server)) {
      assertThat(c.getValue(1)).isNull(); // The stale duplicate applied nothing.
    }
    server.stop();
  }

  @Test
  void aRequestIdReusedForAnotherRequestIsBadRequestAndIdsFrom2To63AreValid() throws Exception {
    // The same id with another key is BAD_REQUEST, never OK unapplied; ids from 2^63 up are
    // valid (u64, compared unsigned; PROTOCOL.md §12).
    server.start();
    long session;
    byte[] secret;
    try (RawClient c = RawClient.session(server)) {
      session = c.sessionId();
      secret = c.sessionSecret();
      assertThat(put(c, 1, Long.MIN_VALUE, true, new byte[] {1})).isEqualTo(Status.OK);
      assertThat(put(c, 2, Long.MIN_VALUE + 1, true, new byte[] {2})).isEqualTo(Status.OK);
      assertThat(put(c, 3, Long.MIN_VALUE + 1, true, new byte[] {3})).isEqualTo(Status.BAD_REQUEST);
      assertThat(c.readEndOfStream()).isTrue(); // Closed after the answer.
    }
    try (RawClient c = resume(session, secret)) {
      assertThat(delete(c, 2, Long.MIN_VALUE + 1)).isEqualTo(Status.BAD_REQUEST); // Not a DELETE.
    }
    try (RawClient c = resume(session, secret)) {
      assertThat(put(c, 2, Long.MIN_VALUE + 1, true, new byte[] {2})).isEqualTo(Status.OK);
      assertThat(c.getValue(1)).isEqualTo(new byte[] {1});
      assertThat(c.getValue(2)).isEqualTo(new byte[] {2});
      assertThat(c.getValue(3)).isNull();
      assertThat(delete(c, 2, -1L)).isEqualTo(Status.OK); // 2^64-1
      assertThat(c.getValue(2)).isNull();
    }
    server.stop();
  }

  @Test
  void retriedWritesAnswerTheirOriginalResultAfterSigkillAndReload() throws Exception {
    server.start();
    long session;
    byte[] secret;
    try (RawClient c = RawClient.session(server)) {
      session = c.sessionId();
      secret = c.sessionSecret();
      assertThat(put(c, 5, 10, false, new byte[] {5})).isEqualTo(Status.OK);
      assertThat(put(c, 6, 11, false, new byte[] {6})).isEqualTo(Status.OK);
      assertThat(delete(c, 6, 12)).isEqualTo(Status.OK);
    }
    server.dataProcess().destroyForcibly();
    server.killBoth();
    server.start();
    try (RawClient c = resume(session, secret)) {
      assertThat(delete(c, 6, 12)).isEqualTo(Status.OK); // the last write: its stored result
      assertThat(put(c, 5, 13, false, new byte[] {9})).isEqualTo(Status.KEY_EXISTS);
      assertThat(c.getValue(5)).isEqualTo(new byte[] {5});
    }
    try (RawClient other = RawClient.session(server)) {
      assertThat(other.sessionId()).isNotEqualTo(session);
      assertThat(other.getValue(6)).isNull();
    }
    server.stop();
  }
}
