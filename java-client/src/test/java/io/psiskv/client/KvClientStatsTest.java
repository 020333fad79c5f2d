package io.psiskv.client;

import static com.google.common.truth.Truth.assertThat;
import static io.psiskv.protocol.Protocol.HEADER_BYTES;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Status;
import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * {@link KvClient#stats} against a scripted server (PROTOCOL.md §6.7): the counters as sent, an
 * older server's UNKNOWN_OPCODE, and the bodies a client refuses (a protocol violation: the call
 * fails at once, the connection is dropped, and the next call reconnects).
 */
class KvClientStatsTest {
  private final Map<Integer, byte[]> map = new ConcurrentHashMap<>();
  private FakeServer server;

  @AfterEach
  void stop() throws IOException {
    server.close();
  }

  /** A fake whose STATS answer is {@code body} raw (header made to match), the rest correct. */
  private KvClient connectWithStatsBody(byte[] body, long claimedLength) throws IOException {
    FakeServer.Script correct = FakeServer.correct(map);
    server = new FakeServer(1000, (r, out) -> {
      if (r.op() != Opcode.STATS) {
        correct.answer(r, out);
        return;
      }
      byte[] b = new byte[HEADER_BYTES + body.length];
      Header.encodeResponse(b, 0, Opcode.STATS.code(), Status.OK, 0, r.requestId(),
          claimedLength);
      System.arraycopy(body, 0, b, HEADER_BYTES, body.length);
      out.write(b);
    });
    return KvClient.connect("127.0.0.1", server.port());
  }

  private static byte[] body(Map<String, ?> counters) {
    byte[] b = new byte[Protocol.STATS_MAX_BODY_BYTES];
    int n = io.psiskv.protocol.StatsBody.encode(counters, b, 0);
    return java.util.Arrays.copyOf(b, n);
  }

  @Test
  void countersComeBackInTheServersOrder() throws IOException {
    Map<String, Object> sent = new LinkedHashMap<>();
    sent.put("version", "9.9");
    sent.put("zeta", 1L);
    sent.put("alpha", -1L);
    byte[] b = body(sent);
    try (KvClient kv = connectWithStatsBody(b, b.length)) {
      Map<String, Object> got = kv.stats();
      assertThat(got).containsExactlyEntriesIn(sent).inOrder();
      assertThrows(UnsupportedOperationException.class, () -> got.put("x", 1L));
    }
  }

  @Test
  void anOlderServerAnswersUnknownOpcode() throws IOException {
    FakeServer.Script correct = FakeServer.correct(map);
    server = new FakeServer(1000, (r, out) -> {
      if (r.op() == Opcode.STATS) {
        FakeServer.answerStatus(r, out, Status.UNKNOWN_OPCODE);
      } else {
        correct.answer(r, out);
      }
    });
    try (KvClient kv = KvClient.connect("127.0.0.1", server.port())) {
      KvException e = assertThrows(KvException.class, kv::stats);
      assertThat(e.status()).isEqualTo(Status.UNKNOWN_OPCODE);
      kv.put(1, new byte[] {1}); // The client goes on, on a new connection.
      assertThat(kv.get(1)).isPresent();
    }
  }

  @Test
  void malformedBodiesAreProtocolErrors() throws IOException {
    byte[][] bodies = {
        {0, 1}, // One counter promised, none sent.
        {0, 1, 1, 'k', 9}, // Unknown type.
        {0, 0, 7}, // A byte after the last counter.
        {0, 1, 1, 'K', 1, 0, 0, 0, 0, 0, 0, 0, 1}, // A name outside [a-z0-9_].
    };
    for (byte[] b : bodies) {
      try (KvClient kv = connectWithStatsBody(b, b.length)) {
        KvException e = assertThrows(KvException.class, kv::stats);
        assertThat(e.status()).isEqualTo(Status.IO_ERROR);
        assertThat(e).hasMessageThat().contains("protocol error");
        kv.put(2, new byte[] {2}); // Reconnected: the stream is in step again.
      }
      server.close();
    }
  }

  @Test
  void aBodyLongerThanTheBoundIsRefusedBeforeItIsRead() throws IOException {
    try (KvClient kv = connectWithStatsBody(new byte[0], Protocol.STATS_MAX_BODY_BYTES + 1)) {
      KvException e = assertThrows(KvException.class, kv::stats);
      assertThat(e.status()).isEqualTo(Status.IO_ERROR);
      assertThat(e).hasMessageThat().contains("allowed 2 to 4096");
    }
  }
}
