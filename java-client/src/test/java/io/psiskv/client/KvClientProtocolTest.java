package io.psiskv.client;

import static com.google.common.truth.Truth.assertThat;
import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Status;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The client's side of the protocol against a scripted server: result mapping, short reads, and
 * every way a server's answer can be wrong. End-to-end behaviour against the real servers is
 * tested in the servers module.
 */
class KvClientProtocolTest {
  private final Map<Integer, byte[]> map = new ConcurrentHashMap<>();
  private FakeServer server;

  @BeforeEach
  void start() throws IOException {
    server = new FakeServer(1000, FakeServer.correct(map));
  }

  @AfterEach
  void stop() throws IOException {
    server.close();
  }

  private KvClient connect() {
    return KvClient.connect("127.0.0.1", server.port());
  }

  @Test
  void resultsMapOntoTheApi() {
    try (KvClient kv = connect()) {
      assertThat(kv.maxValueBytes()).isEqualTo(1000);
      assertThat(kv.putIfAbsent(-1, "a".getBytes(UTF_8))).isTrue();
      assertThat(kv.putIfAbsent(-1, "b".getBytes(UTF_8))).isFalse();
      assertThat(new String(kv.get(-1).orElseThrow(), UTF_8)).isEqualTo("a");
      kv.put(-1, "c".getBytes(UTF_8));
      assertThat(new String(kv.get(-1).orElseThrow(), UTF_8)).isEqualTo("c");
      assertThat(kv.get(5)).isEmpty();
      assertThat(kv.read(5, new byte[4])).isEqualTo(-1);
      assertThat(kv.remove(-1)).isTrue();
      assertThat(kv.remove(-1)).isFalse();
    }
  }

  @Test
  void readWithShortBufferReturnsStoredLengthAndFillsOnlyTheBuffer() {
    try (KvClient kv = connect()) {
      kv.put(1, "hello world".getBytes(UTF_8));
      byte[] small = new byte[5];
      assertThat(kv.read(1, small)).isEqualTo(11);
      assertThat(new String(small, UTF_8)).isEqualTo("hello");
      assertThat(kv.read(1, new byte[0])).isEqualTo(11);
      // The connection is still in step: the next call gets its own answer.
      assertThat(kv.get(1).orElseThrow()).hasLength(11);
    }
  }

  @Test
  void valueOverTheServerMaximumIsRefusedLocallyAndTheClientStaysUsable() {
    try (KvClient kv = connect()) {
      KvException e = assertThrows(KvException.class, () -> kv.put(1, new byte[1001]));
      assertThat(e.status()).isEqualTo(Status.TOO_LARGE);
      kv.put(1, new byte[1000]);
      assertThat(kv.get(1).orElseThrow()).hasLength(1000);
    }
  }

  @Test
  void errorStatusFromTheServerThrowsWithThatStatusAndBreaksTheConnection() {
    server.setScript((h, body, out) -> {
      byte[] b = new byte[Protocol.HEADER_BYTES];
      out.write(b, 0, Messages.status(b, h.opcode, Status.SERVER_ERROR, h.key, h.requestId));
    });
    try (KvClient kv = connect()) {
      KvException e = assertThrows(KvException.class, () -> kv.put(1, new byte[1]));
      assertThat(e.status()).isEqualTo(Status.SERVER_ERROR);
      KvException later = assertThrows(KvException.class, () -> kv.get(1));
      assertThat(later.status()).isEqualTo(Status.SERVER_ERROR);
    }
  }

  @Test
  void responseWithWrongRequestIdIsAnIoError() {
    server.setScript((h, body, out) -> {
      byte[] b = new byte[Protocol.HEADER_BYTES];
      out.write(b, 0, Messages.status(b, h.opcode, Status.OK, h.key, h.requestId + 1));
    });
    try (KvClient kv = connect()) {
      KvException e = assertThrows(KvException.class, () -> kv.remove(1));
      assertThat(e.status()).isEqualTo(Status.IO_ERROR);
      assertThat(e).hasMessageThat().contains("does not echo");
    }
  }

  @Test
  void responseWithBadMagicIsAnIoError() {
    server.setScript((h, body, out) -> {
      byte[] b = new byte[Protocol.HEADER_BYTES];
      Messages.status(b, h.opcode, Status.OK, h.key, h.requestId);
      b[0] = 0x00;
      out.write(b);
    });
    try (KvClient kv = connect()) {
      assertThat(assertThrows(KvException.class, () -> kv.remove(1)).status())
          .isEqualTo(Status.IO_ERROR);
    }
  }

  @Test
  void getResponseWhoseLengthDisagreesWithCapacityIsAnIoError() {
    server.setScript((h, body, out) -> {
      byte[] b = new byte[Protocol.HEADER_BYTES + 4];
      // Claims 100 stored bytes and sends all 100 although the capacity was 2.
      out.write(b, 0, Messages.getOkPrefix(b, h.key, h.requestId, 100, 100));
      out.write(new byte[100]);
    });
    try (KvClient kv = connect()) {
      byte[] two = new byte[2];
      assertThat(assertThrows(KvException.class, () -> kv.read(1, two)).status())
          .isEqualTo(Status.IO_ERROR);
    }
  }

  @Test
  void serverClosingMidResponseIsAnIoErrorAndLaterCallsFailFast() {
    server.setScript((h, body, out) -> {
      byte[] b = new byte[Protocol.HEADER_BYTES + 4];
      Messages.getOkPrefix(b, h.key, h.requestId, 10, 10);
      out.write(b, 0, 12);
      out.close();
    });
    try (KvClient kv = connect()) {
      assertThat(assertThrows(KvException.class, () -> kv.get(1)).status())
          .isEqualTo(Status.IO_ERROR);
      assertThat(assertThrows(KvException.class, () -> kv.get(1)).status())
          .isEqualTo(Status.IO_ERROR);
    }
  }

  @Test
  void unreachableServerIsAnIoError() throws IOException {
    int port;
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort();
    }
    KvException e = assertThrows(KvException.class, () -> KvClient.connect("127.0.0.1", port));
    assertThat(e.status()).isEqualTo(Status.IO_ERROR);
    assertThat(e).hasMessageThat().contains("Front Server");
  }

  @Test
  void closedClientThrowsAndCloseIsIdempotent() {
    KvClient kv = connect();
    kv.close();
    kv.close();
    assertThat(assertThrows(KvException.class, () -> kv.get(1)).status())
        .isEqualTo(Status.IO_ERROR);
  }

  @Test
  void headerDecodesUnsignedKeys() {
    byte[] b = new byte[Protocol.HEADER_BYTES];
    Messages.delete(b, -1, 1);
    assertThat(Integer.toUnsignedLong(new Header().decode(b, 0).key)).isEqualTo(0xFFFFFFFFL);
  }
}
