package io.psiskv.server;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Status;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/** The Front Server's client side: HELLO redirects, PING, and bad or silent front clients. */
@Tag("server-pair")
class FrontServerTest {
  private static final Duration LOG_TIMEOUT = Duration.ofSeconds(20);

  @RegisterExtension static final ServerFixture server = ServerFixture.builder().build();

  @AfterAll
  static void stopsCleanly() {
    server.stop();
  }

  @Test
  void helloRedirectsToTheDataServerOnTheBindAddress() throws IOException {
    try (RawClient front = RawClient.front(server)) {
      RawClient.Response r = front.hello();
      assertThat(r.status()).isEqualTo(Status.OK);
      assertThat(r.body).hasLength(Protocol.HELLO_RESPONSE_BODY_BYTES);
      assertThat(Header.getU32(r.body, 0)).isEqualTo(0x7F000001); // --bind 127.0.0.1
      assertThat(Header.getU16(r.body, 4)).isEqualTo(server.dataPort());
      // The same connection answers again, and PING.
      assertThat(front.hello().status()).isEqualTo(Status.OK);
      assertThat(front.ping().status()).isEqualTo(Status.OK);
    }
    InetSocketAddress data = RawClient.redirect(server);
    assertThat(data.getPort()).isNotEqualTo(server.port());
    try (RawClient c = RawClient.session(server)) {
      assertThat(c.put(1, "via the redirect".getBytes(StandardCharsets.UTF_8), false))
          .isEqualTo(Status.OK);
    }
  }

  private void assertFrontRejects(byte[] request, Status expected, String reason)
      throws IOException {
    Header sent = new Header().decode(request, 0);
    try (RawClient bad = RawClient.front(server)) {
      bad.send(request);
      RawClient.Response r = bad.read();
      assertThat(r.status()).isEqualTo(expected);
      assertThat(r.header.opcode).isEqualTo(sent.opcode);
      assertThat(r.header.requestId).isEqualTo(sent.requestId);
      assertThat(bad.closedByPeer()).isTrue();
      String peer = "front connection " + bad.localAddress() + ": ";
      server.awaitLog(peer + reason, LOG_TIMEOUT);
      assertThat(server.log().lines().filter(l -> l.contains(peer)).count()).isEqualTo(1);
    }
    try (RawClient other = RawClient.front(server)) {
      assertThat(other.hello().status()).isEqualTo(Status.OK);
    }
  }

  @Test
  void wrongMagicIsBadRequest() throws IOException {
    assertFrontRejects(RawClient.header(0x17, Protocol.VERSION, Opcode.HELLO.code(), 0, 0, 1, 0),
        Status.BAD_REQUEST, "bad magic 0x17");
  }

  @Test
  void wrongVersionIsUnsupportedVersion() throws IOException {
    assertFrontRejects(
        RawClient.header(Protocol.REQUEST_MAGIC, 9, Opcode.HELLO.code(), 0, 0, 2, 0),
        Status.UNSUPPORTED_VERSION, "unsupported protocol version 9");
  }

  @Test
  void unknownOpcodeIsUnknownOpcode() throws IOException {
    assertFrontRejects(RawClient.header(Protocol.REQUEST_MAGIC, Protocol.VERSION, 0xEE, 0, 0, 3, 0),
        Status.UNKNOWN_OPCODE, "unknown opcode 0xee");
  }

  @Test
  void dataOperationsAreBadRequestOnTheFront() throws IOException {
    byte[] put = RawClient.header(Opcode.PUT, 0, 1, 4, 2);
    assertFrontRejects(Arrays.copyOf(put, put.length + 2), Status.BAD_REQUEST,
        "PUT is not a front-connection request");
    byte[] session = RawClient.header(Opcode.SESSION, 0, 0, 5, 8);
    assertFrontRejects(Arrays.copyOf(session, session.length + 8), Status.BAD_REQUEST,
        "SESSION is not a front-connection request");
  }

  @Test
  void helloWithAKeyOrBodyIsBadRequest() throws IOException {
    assertFrontRejects(RawClient.header(Opcode.HELLO, 0, 5, 6, 0), Status.BAD_REQUEST,
        "HELLO with nonzero key 5");
    byte[] withBody = RawClient.header(Opcode.HELLO, 0, 0, 7, 3);
    assertFrontRejects(Arrays.copyOf(withBody, withBody.length + 3), Status.BAD_REQUEST,
        "HELLO with body length 3");
  }

  @Test
  void silentAndHalfSentClientsBlockNobodyAndAreDisconnected() throws IOException {
    List<RawClient> silent = new ArrayList<>();
    try {
      for (int i = 0; i < 3; i++) {
        silent.add(RawClient.front(server));
      }
      RawClient half = RawClient.front(server);
      silent.add(half);
      half.send(Arrays.copyOf(RawClient.header(Opcode.HELLO, 0, 0, 8, 0), 9));
      for (int i = 0; i < 5; i++) {
        try (RawClient other = RawClient.front(server)) {
          assertThat(other.hello().status()).isEqualTo(Status.OK);
        }
      }
      // The front's read timeout ends the silent ones, each with one log line.
      for (RawClient c : silent) {
        assertWithMessage("closed by the front").that(c.closedByPeer()).isTrue();
      }
      server.awaitLog("front connection " + silent.get(0).localAddress() + ": sent nothing for",
          LOG_TIMEOUT);
    } finally {
      for (RawClient c : silent) {
        c.close();
      }
    }
  }
}
