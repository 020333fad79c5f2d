package io.psiskv.server.data;

import static com.google.common.truth.Truth.assertThat;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Status;
import io.psiskv.server.testkit.RawClient;
import io.psiskv.server.testkit.ServerFixture;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Every data operation and result status of PROTOCOL.md §6 through a real server pair. The pair
 * is shared by the class, so each test uses its own keys.
 */
@Tag("process")
@Tag("server-pair")
class DataProtocolTest {
  @RegisterExtension static final ServerFixture server = ServerFixture.builder().build();

  @AfterAll
  static void stopsCleanly() {
    server.stop();
  }

  private static byte[] bytes(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  @Test
  void sessionIssuesFreshNonZeroIdsAndAnnouncesTheMaximum() throws Exception {
    try (RawClient a = RawClient.data(server); RawClient b = RawClient.data(server)) {
      long ida = a.newSession();
      long idb = b.newSession();
      assertThat(ida).isNotEqualTo(0L);
      assertThat(idb).isNotEqualTo(0L);
      assertThat(ida).isNotEqualTo(idb);
      assertThat(a.maxValueBytes()).isEqualTo(Protocol.DEFAULT_MAX_VALUE_BYTES);
    }
  }

  @Test
  void sessionWithAnIdResumesIt() throws Exception {
    long id;
    byte[] secret;
    try (RawClient a = RawClient.session(server)) {
      id = a.sessionId();
      secret = a.sessionSecret();
      assertThat(a.put(100, bytes("before"), false)).isEqualTo(Status.OK);
    }
    try (RawClient b = RawClient.data(server)) {
      assertThat(b.resume(id, secret)).isEqualTo(id);
      assertThat(b.sessionSecret()).isEqualTo(secret);
      assertThat(b.getValue(100)).isEqualTo(bytes("before"));
    }
  }

  @Test
  void pingIsAnsweredBeforeAndAfterSession() throws Exception {
    try (RawClient c = RawClient.data(server)) {
      assertThat(c.ping().status()).isEqualTo(Status.OK);
      c.newSession();
      assertThat(c.ping().status()).isEqualTo(Status.OK);
      assertThat(c.ping().body).hasLength(0);
    }
  }

  @Test
  void putWithoutOverwriteInsertsOnceThenReportsKeyExists() throws Exception {
    try (RawClient c = RawClient.session(server)) {
      assertThat(c.put(200, bytes("first"), false)).isEqualTo(Status.OK);
      assertThat(c.put(200, bytes("second"), false)).isEqualTo(Status.KEY_EXISTS);
      assertThat(c.getValue(200)).isEqualTo(bytes("first"));
    }
  }

  @Test
  void putWithOverwriteReplacesOrInserts() throws Exception {
    try (RawClient c = RawClient.session(server)) {
      assertThat(c.put(300, bytes("new"), true)).isEqualTo(Status.OK);
      assertThat(c.put(300, bytes("replaced"), true)).isEqualTo(Status.OK);
      assertThat(c.getValue(300)).isEqualTo(bytes("replaced"));
    }
  }

  @Test
  void getReturnsTheValueOrNotFound() throws Exception {
    try (RawClient c = RawClient.session(server)) {
      RawClient.Response missing = c.get(400, 100);
      assertThat(missing.status()).isEqualTo(Status.NOT_FOUND);
      assertThat(missing.body).hasLength(0);
      assertThat(c.put(400, bytes("value"), false)).isEqualTo(Status.OK);
      RawClient.Response found = c.get(400, 100);
      assertThat(found.status()).isEqualTo(Status.OK);
      assertThat(found.header.key).isEqualTo(400);
      assertThat(Header.getU32(found.body, 0)).isEqualTo(5);
      assertThat(Arrays.copyOfRange(found.body, 4, found.body.length)).isEqualTo(bytes("value"));
    }
  }

  @Test
  void getWithSmallCapacityReturnsTheFullLengthAndOnlyCapacityBytes() throws Exception {
    try (RawClient c = RawClient.session(server)) {
      c.put(500, bytes("0123456789"), false);
      RawClient.Response r = c.get(500, 3);
      assertThat(r.status()).isEqualTo(Status.OK);
      assertThat(r.header.bodyLength).isEqualTo(4 + 3);
      assertThat(Header.getU32(r.body, 0)).isEqualTo(10);
      assertThat(Arrays.copyOfRange(r.body, 4, r.body.length)).isEqualTo(bytes("012"));

      RawClient.Response zero = c.get(500, 0);
      assertThat(zero.status()).isEqualTo(Status.OK);
      assertThat(zero.body).hasLength(4);
      assertThat(Header.getU32(zero.body, 0)).isEqualTo(10);

      RawClient.Response exact = c.get(500, 10);
      assertThat(exact.body).hasLength(14);
      RawClient.Response huge = c.get(500, 0xFFFF_FFFFL);
      assertThat(huge.body).hasLength(14);
      // The connection is still in step after all of these.
      assertThat(c.ping().status()).isEqualTo(Status.OK);
    }
  }

  @Test
  void deleteRemovesOnceThenReportsNotFound() throws Exception {
    try (RawClient c = RawClient.session(server)) {
      assertThat(c.delete(600)).isEqualTo(Status.NOT_FOUND);
      c.put(600, bytes("x"), false);
      assertThat(c.delete(600)).isEqualTo(Status.OK);
      assertThat(c.delete(600)).isEqualTo(Status.NOT_FOUND);
      assertThat(c.getValue(600)).isNull();
      assertThat(c.put(600, bytes("again"), false)).isEqualTo(Status.OK);
      assertThat(c.getValue(600)).isEqualTo(bytes("again"));
    }
  }

  @Test
  void emptyValueIsStoredAndDistinctFromAbsent() throws Exception {
    try (RawClient c = RawClient.session(server)) {
      assertThat(c.put(700, new byte[0], false)).isEqualTo(Status.OK);
      RawClient.Response r = c.get(700, 10);
      assertThat(r.status()).isEqualTo(Status.OK);
      assertThat(r.body).hasLength(4);
      assertThat(Header.getU32(r.body, 0)).isEqualTo(0);
      assertThat(c.put(700, new byte[0], false)).isEqualTo(Status.KEY_EXISTS);
    }
  }

  @Test
  void binaryValueWithAllByteValuesRoundTrips() throws Exception {
    byte[] all = new byte[512];
    for (int i = 0; i < all.length; i++) {
      all[i] = (byte) (255 - i % 256);
    }
    try (RawClient c = RawClient.session(server)) {
      assertThat(c.put(800, all, false)).isEqualTo(Status.OK);
      assertThat(c.getValue(800)).isEqualTo(all);
    }
  }

  @Test
  void extremeKeysAreDistinct() throws Exception {
    int[] keys = {0, 0xFFFFFFFF, Integer.MIN_VALUE, Integer.MAX_VALUE};
    try (RawClient c = RawClient.session(server)) {
      for (int k : keys) {
        assertThat(c.put(k, bytes("key " + Integer.toUnsignedString(k)), false))
            .isEqualTo(Status.OK);
      }
      for (int k : keys) {
        assertThat(c.getValue(k)).isEqualTo(bytes("key " + Integer.toUnsignedString(k)));
      }
      assertThat(c.delete(0)).isEqualTo(Status.OK);
      assertThat(c.getValue(0xFFFFFFFF)).isEqualTo(bytes("key 4294967295"));
    }
  }

  @Test
  void eightMebibyteValueRoundTrips() throws Exception {
    byte[] big = new byte[8 * 1024 * 1024];
    new Random(8).nextBytes(big);
    try (RawClient c = RawClient.session(server)) {
      assertThat(c.put(900, big, false)).isEqualTo(Status.OK);
      assertThat(c.getValue(900)).isEqualTo(big);
      RawClient.Response head = c.get(900, 16);
      assertThat(Header.getU32(head.body, 0)).isEqualTo(big.length);
      assertThat(Arrays.copyOfRange(head.body, 4, 20)).isEqualTo(Arrays.copyOf(big, 16));
    }
  }

  @Test
  void writesAreVisibleToOtherConnections() throws Exception {
    try (RawClient a = RawClient.session(server); RawClient b = RawClient.session(server)) {
      assertThat(a.put(1000, bytes("from a"), false)).isEqualTo(Status.OK);
      assertThat(b.getValue(1000)).isEqualTo(bytes("from a"));
      assertThat(b.delete(1000)).isEqualTo(Status.OK);
      assertThat(a.getValue(1000)).isNull();
    }
  }
}
