package io.psiskv.server.front;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Status;
import io.psiskv.server.ServerConfig;
import io.psiskv.server.testkit.FrontLog;
import io.psiskv.server.testkit.Poll;
import io.psiskv.server.testkit.RawClient;
import io.psiskv.server.testkit.ServerFixture;
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

/**
 * The Front Server's client side: HELLO redirects, PING, pipelined requests, and bad or silent
 * front clients. The front's limits are the defaults; only the log summary comes more often, so
 * that the test need not wait 10 s for it.
 */
@Tag("process")
@Tag("server-pair")
class FrontServerTest {
  private static final Duration LOG_TIMEOUT = Duration.ofSeconds(20);
  private static final int SUMMARY_INTERVAL_MILLIS = 500;

  @RegisterExtension
  static final ServerFixture server = ServerFixture.builder()
      .jvmArgs(FrontLog.summaryIntervalArg(SUMMARY_INTERVAL_MILLIS))
      .build();

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

  @Test
  void pipelinedRequestsAreAnsweredInOrder() throws IOException {
    try (RawClient front = RawClient.front(server)) {
      byte[] three = new byte[3 * Protocol.HEADER_BYTES];
      System.arraycopy(RawClient.header(Opcode.HELLO, 0, 0, 11, 0), 0, three, 0, 20);
      System.arraycopy(RawClient.header(Opcode.PING, 0, 0, 12, 0), 0, three, 20, 20);
      System.arraycopy(RawClient.header(Opcode.HELLO, 0, 0, 13, 0), 0, three, 40, 20);
      front.send(three);
      RawClient.Response hello = front.readChecked(Opcode.HELLO, 11);
      assertThat(hello.status()).isEqualTo(Status.OK);
      assertThat(Header.getU16(hello.body, 4)).isEqualTo(server.dataPort());
      assertThat(front.readChecked(Opcode.PING, 12).status()).isEqualTo(Status.OK);
      assertThat(front.readChecked(Opcode.HELLO, 13).status()).isEqualTo(Status.OK);
    }
  }

  @Test
  void aRejectedRequestWithALargeBodyStillGetsItsAnswerAndEndOfStream() throws IOException {
    // The front drains the 200 KiB (within its 256 KiB linger limit) instead of resetting the
    // connection, which would destroy the error answer.
    byte[] put = RawClient.header(Opcode.PUT, 0, 1, 14, 200 * 1024);
    assertFrontRejects(Arrays.copyOf(put, put.length + 200 * 1024), Status.BAD_REQUEST,
        "PUT is not a front-connection request");
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
    byte[] session = RawClient.header(Opcode.SESSION, 0, 0, 5, 24);
    assertFrontRejects(Arrays.copyOf(session, session.length + 24), Status.BAD_REQUEST,
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
  void silentAndHalfSentClientsBlockNobodyAndAreClosedAfterTheIdleTimeout() throws IOException {
    List<RawClient> silent = new ArrayList<>();
    long opened = System.nanoTime();
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
      for (RawClient c : silent) {
        assertWithMessage("closed by the front").that(c.closedByPeer()).isTrue();
      }
      // Not before the idle timeout (the clocks started after our connects returned).
      assertThat(Duration.ofNanos(System.nanoTime() - opened))
          .isAtLeast(Duration.ofMillis(ServerConfig.FRONT_IDLE_TIMEOUT_MILLIS));
      // Counted in the summary, by the idle timeout (the half-sent one too: it went silent), and
      // no line per connection. No other test of this class leaves a connection silent.
      Poll.require(LOG_TIMEOUT, () -> FrontLog.total(server.log(),
              "closed after " + ServerConfig.FRONT_IDLE_TIMEOUT_MILLIS + " ms idle") == 4,
          () -> "summary lines: " + FrontLog.summaries(server.log()));
      assertThat(FrontLog.total(server.log(), "request deadline")).isEqualTo(0);
      for (RawClient c : silent) {
        assertThat(server.log()).doesNotContain("front connection " + c.localAddress() + ": ");
      }
    } finally {
      for (RawClient c : silent) {
        c.close();
      }
    }
  }
}
