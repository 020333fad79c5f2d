package io.psiskv.server.data;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Status;
import io.psiskv.server.ServerLogProblems;
import io.psiskv.server.testkit.RawClient;
import io.psiskv.server.testkit.ServerFixture;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Hostile and broken input on data connections (PROTOCOL.md §8): each case gets its error status
 * when the header could be read, its connection is closed, the server logs exactly one line
 * naming the peer and the reason, and a bystander client connected before keeps working, as do
 * new clients.
 */
@Tag("process")
@Tag("server-pair")
class MalformedInputTest {
  private static final int MAX_VALUE_BYTES = 1024 * 1024;
  private static final Duration LOG_TIMEOUT = Duration.ofSeconds(20);
  private static final AtomicInteger KEYS = new AtomicInteger(1);

  @RegisterExtension
  static final ServerFixture server =
      ServerFixture.builder().maxValueBytes(MAX_VALUE_BYTES)
          // Every rejection's own log line is asserted: no rate limit within this test.
          .jvmArgs("-D" + ServerLogProblems.LINES_PROPERTY + "=1000").build();

  private RawClient bystander;

  @BeforeEach
  void connectBystander() throws IOException {
    bystander = RawClient.session(server);
  }

  @AfterAll
  static void serverStillStopsCleanly() {
    server.stop();
  }

  /** The bystander and a brand-new client both still get correct answers. */
  private void assertOthersUnaffected() throws IOException {
    int key = KEYS.getAndIncrement();
    byte[] v = ("still fine " + key).getBytes(StandardCharsets.UTF_8);
    assertThat(bystander.put(key, v, false)).isEqualTo(Status.OK);
    assertThat(bystander.getValue(key)).isEqualTo(v);
    try (RawClient fresh = RawClient.session(server)) {
      assertThat(fresh.getValue(key)).isEqualTo(v);
      assertThat(fresh.delete(key)).isEqualTo(Status.OK);
    }
    bystander.close();
  }

  /** Exactly one log line names the peer, and it contains {@code reason}. */
  private void assertLoggedOnce(RawClient bad, String reason) {
    String peer = "data connection " + bad.localAddress() + ": ";
    server.awaitLog(peer + reason, LOG_TIMEOUT);
    long lines = server.log().lines().filter(l -> l.contains(peer)).count();
    assertWithMessage("log lines about %s", peer).that(lines).isEqualTo(1);
  }

  /**
   * Sends {@code request} on a connection (with a session if {@code withSession}) and expects
   * {@code expected} echoing the header, then the close, one log line, unaffected others.
   */
  private void assertRejected(byte[] request, boolean withSession, Status expected,
      String reason) throws IOException {
    Header sent = new Header().decode(request, 0);
    try (RawClient bad = withSession ? RawClient.session(server) : RawClient.data(server)) {
      bad.send(request);
      RawClient.Response r = bad.read();
      assertThat(r.status()).isEqualTo(expected);
      assertThat(r.header.version).isEqualTo(Protocol.VERSION);
      assertThat(r.header.opcode).isEqualTo(sent.opcode);
      assertThat(r.header.key).isEqualTo(sent.key);
      assertThat(r.header.requestId).isEqualTo(sent.requestId);
      assertThat(r.body).hasLength(0);
      assertThat(bad.closedByPeer()).isTrue();
      assertLoggedOnce(bad, reason);
    }
    assertOthersUnaffected();
  }

  private static byte[] concat(byte[] a, byte[] b) {
    byte[] r = Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, r, a.length, b.length);
    return r;
  }

  @Test
  void wrongMagicIsBadRequest() throws IOException {
    byte[] h = RawClient.header(0x00, Protocol.VERSION, Opcode.PING.code(), 0, 0, 11, 0);
    assertRejected(h, false, Status.BAD_REQUEST, "bad magic 0x00");
  }

  @Test
  void responseMagicFromAClientIsBadRequest() throws IOException {
    byte[] h = RawClient.header(Protocol.RESPONSE_MAGIC, Protocol.VERSION, Opcode.PING.code(),
        0, 0, 12, 0);
    assertRejected(h, true, Status.BAD_REQUEST, "bad magic 0x5a");
  }

  @Test
  void textIsRejectedAtItsFirstByte() throws IOException {
    try (RawClient bad = RawClient.data(server)) {
      bad.send("GET / HTTP/1.1\r\nHost: psiskv\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
      assertThat(bad.read().status()).isEqualTo(Status.BAD_REQUEST);
      assertThat(bad.closedByPeer()).isTrue();
      assertLoggedOnce(bad, "bad magic 0x47");
    }
    assertOthersUnaffected();
  }

  @Test
  void wrongVersionIsUnsupportedVersion() throws IOException {
    byte[] h = RawClient.header(Protocol.REQUEST_MAGIC, 1, Opcode.PING.code(), 0, 0, 13, 0);
    assertRejected(h, false, Status.UNSUPPORTED_VERSION, "unsupported protocol version 1");
  }

  @Test
  void unknownOpcodeIsUnknownOpcode() throws IOException {
    byte[] h = RawClient.header(Protocol.REQUEST_MAGIC, Protocol.VERSION, 0x7F, 0, 0, 14, 0);
    assertRejected(h, true, Status.UNKNOWN_OPCODE, "unknown opcode 0x7f");
  }

  @Test
  void flagsOnGetAreBadRequest() throws IOException {
    byte[] h = concat(RawClient.header(Opcode.GET, Protocol.FLAG_OVERWRITE, 5, 15, 4),
        new byte[4]);
    assertRejected(h, true, Status.BAD_REQUEST, "GET with bad flags 0x01");
  }

  @Test
  void undefinedPutFlagIsBadRequest() throws IOException {
    byte[] h = concat(RawClient.header(Opcode.PUT, 0x02, 5, 16, 1), new byte[1]);
    assertRejected(h, true, Status.BAD_REQUEST, "PUT with bad flags 0x02");
  }

  @Test
  void wrongBodyLengthIsBadRequest() throws IOException {
    byte[] getWithLongBody = concat(RawClient.header(Opcode.GET, 0, 5, 17, 8), new byte[8]);
    assertRejected(getWithLongBody, true, Status.BAD_REQUEST, "GET with body length 8");
  }

  @Test
  void deleteWithBodyIsBadRequest() throws IOException {
    byte[] h = concat(RawClient.header(Opcode.DELETE, 0, 5, 18, 1), new byte[1]);
    assertRejected(h, true, Status.BAD_REQUEST, "DELETE with body length 1");
  }

  @Test
  void sessionWithShortBodyIsBadRequest() throws IOException {
    byte[] h = concat(RawClient.header(Opcode.SESSION, 0, 0, 19, 4), new byte[4]);
    assertRejected(h, false, Status.BAD_REQUEST, "SESSION with body length 4");
  }

  @Test
  void nonzeroKeyOnKeylessOpIsBadRequest() throws IOException {
    byte[] h = RawClient.header(Opcode.PING, 0, 42, 20, 0);
    assertRejected(h, true, Status.BAD_REQUEST, "PING with nonzero key 42");
  }

  @Test
  void putLongerThanTheMaximumIsTooLargeFromTheHeaderAlone() throws IOException {
    byte[] h = RawClient.header(Opcode.PUT, 0, 6, 21, MAX_VALUE_BYTES + 1L);
    assertRejected(h, true, Status.TOO_LARGE, "PUT of " + (MAX_VALUE_BYTES + 1) + " bytes");
  }

  @Test
  void putClaimingFourGibibytesIsTooLargeAndAllocatesNothing() throws IOException {
    byte[] h = RawClient.header(Opcode.PUT, 0, 7, 22, 0xFFFF_FFFFL);
    assertRejected(h, true, Status.TOO_LARGE, "PUT of 4294967295 bytes");
  }

  @Test
  void putOfExactlyTheMaximumIsAccepted() throws IOException {
    int key = KEYS.getAndIncrement();
    byte[] v = new byte[MAX_VALUE_BYTES];
    v[v.length - 1] = 1;
    assertThat(bystander.put(key, v, false)).isEqualTo(Status.OK);
    assertThat(bystander.getValue(key)).isEqualTo(v);
    assertThat(bystander.maxValueBytes()).isEqualTo(MAX_VALUE_BYTES);
  }

  @Test
  void dataOperationsBeforeSessionAreNoSession() throws IOException {
    assertRejected(concat(RawClient.header(Opcode.GET, 0, 1, 23, 4), new byte[4]), false,
        Status.NO_SESSION, "GET before SESSION");
    bystander = RawClient.session(server);
    assertRejected(RawClient.header(Opcode.DELETE, 0, 1, 24, 0), false, Status.NO_SESSION,
        "DELETE before SESSION");
    bystander = RawClient.session(server);
    assertRejected(concat(RawClient.header(Opcode.PUT, 0, 1, 25, 3), new byte[3]), false,
        Status.NO_SESSION, "PUT before SESSION");
  }

  @Test
  void secondSessionIsBadRequest() throws IOException {
    byte[] h = new byte[Messages.MAX_FIXED_BYTES];
    int n = Messages.session(h, 26, 0, null);
    assertRejected(Arrays.copyOf(h, n), true, Status.BAD_REQUEST, "second SESSION");
  }

  @Test
  void controlAndFrontOpcodesAreBadRequestOnADataConnection() throws IOException {
    assertRejected(RawClient.header(Opcode.SHUTDOWN, 0, 0, 27, 0), true, Status.BAD_REQUEST,
        "SHUTDOWN is not a data-connection request");
    bystander = RawClient.session(server);
    assertRejected(RawClient.header(Opcode.HELLO, 0, 0, 28, 0), false, Status.BAD_REQUEST,
        "HELLO is not a data-connection request");
    bystander = RawClient.session(server);
    assertRejected(concat(RawClient.header(Opcode.INIT, 0, 0, 29, 74), new byte[74]), true,
        Status.BAD_REQUEST, "INIT is not a data-connection request");
  }

  @Test
  void peerClosingMidHeaderIsClosedWithoutReply() throws IOException {
    RawClient bad = RawClient.session(server);
    String peer = bad.localAddress();
    bad.send(Arrays.copyOf(RawClient.header(Opcode.PING, 0, 0, 30, 0), 7));
    bad.close();
    server.awaitLog("data connection " + peer + ": closed the connection mid-header (7 of 20",
        LOG_TIMEOUT);
    assertOthersUnaffected();
  }

  @Test
  void peerClosingMidBodyAppliesNothing() throws IOException {
    int key = KEYS.getAndIncrement();
    RawClient bad = RawClient.session(server);
    String peer = bad.localAddress();
    bad.send(concat(RawClient.header(Opcode.PUT, 0, key, 31, 1000), new byte[300]));
    bad.close();
    server.awaitLog("data connection " + peer + ": closed the connection mid-body (300 of 1000",
        LOG_TIMEOUT);
    assertThat(bystander.getValue(key)).isNull();
    assertOthersUnaffected();
  }

  @Test
  void peerClosingMidGetBodyIsClosedWithoutReply() throws IOException {
    RawClient bad = RawClient.session(server);
    String peer = bad.localAddress();
    bad.send(concat(RawClient.header(Opcode.GET, 0, 1, 32, 4), new byte[2]));
    bad.close();
    server.awaitLog("data connection " + peer + ": closed the connection mid-body (2 of 4",
        LOG_TIMEOUT);
    assertOthersUnaffected();
  }

  @Test
  void peerStallingAfterAHeaderBlocksNobodyElse() throws IOException {
    int key = KEYS.getAndIncrement();
    try (RawClient staller = RawClient.session(server);
        RawClient halfHeader = RawClient.session(server)) {
      staller.send(concat(RawClient.header(Opcode.PUT, 0, key, 33, 1000), new byte[10]));
      halfHeader.send(Arrays.copyOf(RawClient.header(Opcode.PING, 0, 0, 34, 0), 5));
      // Both connections' threads now wait for bytes that do not come; everyone else is served.
      assertOthersUnaffected();
      bystander = RawClient.session(server);
      assertThat(bystander.getValue(key)).isNull();
    }
  }
}
