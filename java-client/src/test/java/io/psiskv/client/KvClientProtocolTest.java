package io.psiskv.client;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;
import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Status;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The client's side of the protocol against a scripted server: result mapping, short reads, and
 * every way a server's answer can be wrong (a protocol violation or an error status fails the call
 * at once: never retried). Reconnection is tested in {@link KvClientReconnectTest}; end-to-end
 * behaviour against the real servers in the servers module.
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
  void errorStatusIsThrownAtOnceAndTheNextCallConnectsAgain() {
    server.setScript((r, out) -> FakeServer.answerStatus(r, out, Status.SERVER_ERROR));
    try (KvClient kv = connect()) {
      KvException e = assertThrows(KvException.class, () -> kv.put(1, new byte[1]));
      assertThat(e.status()).isEqualTo(Status.SERVER_ERROR);
      assertThat(server.dataConnections()).isEqualTo(1);
      // The server closes after an error status (§8); the client is still valid and reconnects.
      server.setScript(FakeServer.correct(map));
      kv.put(1, new byte[1]);
      assertThat(server.dataConnections()).isEqualTo(2);
      assertThat(kv.get(1).orElseThrow()).hasLength(1);
    }
  }

  @Test
  void responseWithWrongRequestIdIsAnIoErrorAndNotRetried() {
    server.setScript((r, out) -> {
      byte[] b = new byte[Protocol.HEADER_BYTES];
      out.write(b, 0, Messages.status(b, r.op().code(), Status.OK, r.key(), r.requestId() + 1));
    });
    try (KvClient kv = connect()) {
      KvException e = assertThrows(KvException.class, () -> kv.remove(1));
      assertThat(e.status()).isEqualTo(Status.IO_ERROR);
      assertThat(e).hasMessageThat().contains("does not echo");
      assertThat(server.dataConnections()).isEqualTo(1);
      assertThat(server.hellos()).isEqualTo(1);
    }
  }

  @Test
  void responseWithWrongKeyIsAnIoErrorAndNotRetried() {
    server.setScript((r, out) -> {
      byte[] b = new byte[Protocol.HEADER_BYTES];
      out.write(b, 0, Messages.status(b, r.op().code(), Status.OK, r.key() + 1, r.requestId()));
    });
    try (KvClient kv = connect()) {
      KvException e = assertThrows(KvException.class, () -> kv.put(1, new byte[1]));
      assertThat(e.status()).isEqualTo(Status.IO_ERROR);
      assertThat(e).hasMessageThat().contains("key 2 does not echo 1");
      assertThat(server.dataConnections()).isEqualTo(1);
    }
  }

  @Test
  void resultStatusTheOpcodeCannotAnswerIsAnIoError() {
    server.setScript((r, out) -> FakeServer.answerStatus(r, out, Status.KEY_EXISTS));
    try (KvClient kv = connect()) {
      KvException e = assertThrows(KvException.class, () -> kv.remove(1));
      assertThat(e.status()).isEqualTo(Status.IO_ERROR);
      assertThat(e).hasMessageThat().contains("KEY_EXISTS is not an answer to DELETE");
      assertThat(server.dataConnections()).isEqualTo(1);
    }
  }

  /** Found by ResponseDecodingFuzzTest: put() returned as if stored. */
  @Test
  void keyExistsAnswerToAnOverwritingPutIsAnIoError() {
    server.setScript((r, out) -> FakeServer.answerStatus(r, out, Status.KEY_EXISTS));
    try (KvClient kv = connect()) {
      assertThat(kv.putIfAbsent(1, new byte[1])).isFalse();
      KvException e = assertThrows(KvException.class, () -> kv.put(1, new byte[1]));
      assertThat(e.status()).isEqualTo(Status.IO_ERROR);
      assertThat(e).hasMessageThat().contains("KEY_EXISTS is not an answer to an overwriting PUT");
      assertThat(server.dataConnections()).isEqualTo(1);
    }
  }

  @Test
  void responseWithBadMagicIsAnIoError() {
    server.setScript((r, out) -> {
      byte[] b = new byte[Protocol.HEADER_BYTES];
      Messages.status(b, r.op().code(), Status.OK, r.key(), r.requestId());
      b[0] = 0x00;
      out.write(b);
    });
    try (KvClient kv = connect()) {
      assertThat(assertThrows(KvException.class, () -> kv.remove(1)).status())
          .isEqualTo(Status.IO_ERROR);
      assertThat(server.dataConnections()).isEqualTo(1);
    }
  }

  @Test
  void getResponseWhoseLengthDisagreesWithCapacityIsAnIoError() {
    server.setScript((r, out) -> {
      byte[] b = new byte[Protocol.HEADER_BYTES + 4];
      // Claims 100 stored bytes and sends all 100 although the capacity was 2.
      out.write(b, 0, Messages.getOkPrefix(b, r.key(), r.requestId(), 100, 100));
      out.write(new byte[100]);
    });
    try (KvClient kv = connect()) {
      byte[] two = new byte[2];
      KvException e = assertThrows(KvException.class, () -> kv.read(1, two));
      assertThat(e.status()).isEqualTo(Status.IO_ERROR);
      assertThat(e).hasMessageThat().contains("does not match stored length 100");
      assertThat(server.dataConnections()).isEqualTo(1);
    }
  }

  @Test
  void withReconnectionDisabledAServerClosingMidResponseFailsThisAndEveryLaterCall() {
    server.setScript((r, out) -> {
      byte[] b = new byte[Protocol.HEADER_BYTES + 4];
      Messages.getOkPrefix(b, r.key(), r.requestId(), 10, 10);
      out.write(b, 0, 12);
      out.close();
    });
    try (KvClient kv = KvClient.builder("127.0.0.1", server.port())
        .retryTimeout(Duration.ZERO).connect()) {
      KvException first = assertThrows(KvException.class, () -> kv.get(1));
      assertThat(first.status()).isEqualTo(Status.IO_ERROR);
      assertThat(first).hasMessageThat().contains("reconnection is disabled");
      server.setScript(FakeServer.correct(map));
      assertThat(assertThrows(KvException.class, () -> kv.get(1)).status())
          .isEqualTo(Status.IO_ERROR);
      assertThat(server.dataConnections()).isEqualTo(1);
    }
  }

  @Test
  void unreachableServerIsAnIoError() throws IOException {
    int port;
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort();
    }
    // Fails fast (connect does not retry a dead address): this message comes only from that path.
    KvException e = assertThrows(KvException.class, () -> KvClient.connect("127.0.0.1", port));
    assertThat(e.status()).isEqualTo(Status.IO_ERROR);
    assertThat(e).hasMessageThat().startsWith("cannot reach the psiskv Front Server");
  }

  @Test
  void closedClientThrowsAndCloseIsIdempotent() {
    KvClient kv = connect();
    kv.close();
    kv.close();
    KvException e = assertThrows(KvException.class, () -> kv.get(1));
    assertThat(e.status()).isEqualTo(Status.IO_ERROR);
    assertThat(e).hasMessageThat().isEqualTo("client is closed");
    assertThat(server.dataConnections()).isEqualTo(1);
  }

  /**
   * A put, a putIfAbsent that finds the key, a get, a short read, a remove and a get of nothing,
   * all on the connection the client has (no reconnection).
   */
  private void everyKindOfAnswer(KvClient kv, String what) {
    int connections = server.dataConnections();
    byte[] value = new byte[100];
    for (int i = 0; i < value.length; i++) {
      value[i] = (byte) (i * 7 + 1);
    }
    kv.put(7, value);
    assertThat(kv.putIfAbsent(7, value)).isFalse();
    assertThat(kv.get(7).orElseThrow()).isEqualTo(value);
    byte[] ten = new byte[10];
    assertThat(kv.read(7, ten)).isEqualTo(100);
    assertThat(ten).isEqualTo(Arrays.copyOf(value, 10));
    assertThat(kv.remove(7)).isTrue();
    assertThat(kv.get(7)).isEmpty();
    assertWithMessage("%s: data connections", what).that(server.dataConnections())
        .isEqualTo(connections);
  }

  @Test
  void answersWrittenOneByteAtATimeGiveTheSameResults() {
    server.setScript(FakeServer.inPieces(FakeServer.correct(map), true));
    try (KvClient kv = connect()) {
      everyKindOfAnswer(kv, "one byte at a time");
    }
  }

  @Test
  void answersSplitInTheHeaderAfterItOrInTheValueGiveTheSameResults() {
    int header = Protocol.HEADER_BYTES;
    int prefix = Protocol.GET_RESPONSE_PREFIX_BYTES;
    for (int cut : new int[] {7, header, header + 2, header + prefix, header + prefix + 30}) {
      server.setScript(FakeServer.inPieces(FakeServer.correct(map), false, cut));
      try (KvClient kv = connect()) {
        everyKindOfAnswer(kv, "split after " + cut + " bytes");
      }
      server.dropConnections();
    }
  }

  @Test
  void valueLongerThanTheReceiveBufferRoundTripsAndAShortReadStopsAtTheBuffer() throws IOException {
    server.close();
    server = new FakeServer(1 << 20, FakeServer.correct(map));
    byte[] value = new byte[100_000];
    for (int i = 0; i < value.length; i++) {
      value[i] = (byte) (i * 31 + 5);
    }
    try (KvClient kv = connect()) {
      kv.put(3, value);
      assertThat(kv.get(3).orElseThrow()).isEqualTo(value);
      byte[] part = new byte[40_000];
      assertThat(kv.read(3, part)).isEqualTo(value.length);
      assertThat(part).isEqualTo(Arrays.copyOf(value, part.length));
      assertThat(kv.remove(3)).isTrue(); // still in step
      assertThat(server.dataConnections()).isEqualTo(1);
    }
  }

  @Test
  void bytesAfterAnAnswerAreAProtocolErrorAndNotRetried() {
    map.put(5, new byte[] {1, 2, 3});
    server.setScript(FakeServer.trailing(4, FakeServer.correct(map)));
    try (KvClient kv = connect()) {
      KvException e = assertThrows(KvException.class, () -> kv.remove(6));
      assertThat(e.status()).isEqualTo(Status.IO_ERROR);
      assertThat(e).hasMessageThat().contains("DELETE response is followed by 4 bytes");
      e = assertThrows(KvException.class, () -> kv.read(5, new byte[3]));
      assertThat(e).hasMessageThat().contains("GET response is followed by 4 bytes");
      assertThat(server.seen(Opcode.DELETE)).hasSize(1);
      assertThat(server.seen(Opcode.GET)).hasSize(1);
      // Each call dropped the connection; the next connects again and is served.
      server.setScript(FakeServer.correct(map));
      assertThat(kv.get(5).orElseThrow()).hasLength(3);
      assertThat(server.dataConnections()).isEqualTo(3);
    }
  }

  @Test
  void bytesAfterTheSessionAnswerFailConnectAtOnce() {
    server.setSessionTrailingBytes(4);
    KvException e = assertThrows(KvException.class, this::connect);
    assertThat(e.status()).isEqualTo(Status.IO_ERROR);
    assertThat(e).hasMessageThat().contains("SESSION response is followed by 4 bytes");
    assertThat(server.dataConnections()).isEqualTo(1);
  }

  @Test
  void aCallOfAnInterruptedThreadFailsAtOnceAndKeepsTheInterrupt() {
    try (KvClient kv = connect()) {
      Thread.currentThread().interrupt();
      KvException e = assertThrows(KvException.class, () -> kv.get(1));
      assertThat(Thread.interrupted()).isTrue();
      assertThat(e.status()).isEqualTo(Status.IO_ERROR);
      assertThat(e).hasMessageThat().contains("GET of key 1 interrupted");
      assertThat(server.seen(Opcode.GET)).isEmpty();
      // The channel was closed by the interrupt; the next call connects again.
      assertThat(kv.get(1)).isEmpty();
      assertThat(server.dataConnections()).isEqualTo(2);
    }
  }

  @Test
  void interruptingACallThatWaitsForItsAnswerEndsIt() throws Exception {
    CountDownLatch arrived = new CountDownLatch(1);
    CountDownLatch release = new CountDownLatch(1);
    server.setScript((r, out) -> {
      arrived.countDown();
      try {
        release.await(); // never answers while the test runs
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      throw new IOException("released");
    });
    try (KvClient kv = connect()) {
      AtomicReference<Throwable> thrown = new AtomicReference<>();
      AtomicBoolean stillInterrupted = new AtomicBoolean();
      Thread caller = new Thread(() -> {
        try {
          kv.remove(1);
        } catch (Throwable t) {
          thrown.set(t);
          stillInterrupted.set(Thread.currentThread().isInterrupted());
        }
      });
      caller.start();
      assertThat(arrived.await(10, TimeUnit.SECONDS)).isTrue();
      caller.interrupt();
      caller.join(10_000);
      assertThat(caller.isAlive()).isFalse();
      assertThat(thrown.get()).isInstanceOf(KvException.class);
      assertThat(((KvException) thrown.get()).status()).isEqualTo(Status.IO_ERROR);
      assertThat(thrown.get()).hasMessageThat().contains("DELETE of key 1 interrupted");
      assertThat(stillInterrupted.get()).isTrue();
      assertThat(server.seen(Opcode.DELETE)).hasSize(1); // not resent
    } finally {
      release.countDown();
    }
  }

  @Test
  void headerDecodesUnsignedKeys() {
    byte[] b = new byte[Protocol.HEADER_BYTES];
    Messages.delete(b, -1, 1);
    assertThat(Integer.toUnsignedLong(new Header().decode(b, 0).key)).isEqualTo(0xFFFFFFFFL);
  }
}
