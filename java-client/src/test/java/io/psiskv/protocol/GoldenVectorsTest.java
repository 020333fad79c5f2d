package io.psiskv.protocol;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;
import static io.psiskv.protocol.Protocol.HEADER_BYTES;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Encodes every message of the golden-vector file (PROTOCOL.md §10) with the codec and compares it
 * byte for byte, and decodes every vector and checks its fields. The C tests read the same file.
 */
class GoldenVectorsTest {
  private static final Map<String, byte[]> VECTORS = new LinkedHashMap<>();

  /** The session secret of the vectors. */
  static final byte[] SECRET = hex("00112233445566778899aabbccddeeff");
  /**
   * HMAC-SHA256 of the INIT vectors with pair secret 00..1f and the nonces of {@link #range}: the
   * servers' ControlAuth test computes the same values (PROTOCOL.md §7.1).
   */
  static final String MAC_INIT =
      "d77bda7c533e3642c7e6484656886c7314adb2951cc98e9b34c50e844caec50e";
  static final String MAC_INIT_OK =
      "787e8973f06e53961c849022172050290c20f9671a85abf67bebd3123e58e1d0";

  private static byte[] hex(String s) {
    return HexFormat.of().parseHex(s);
  }

  /** {@code n} bytes counting up from {@code first}. */
  private static byte[] range(int first, int n) {
    byte[] b = new byte[n];
    for (int i = 0; i < n; i++) {
      b[i] = (byte) (first + i);
    }
    return b;
  }

  /** The counters of the STATS and STATUS vectors (PROTOCOL.md §6.7, §7.4), in wire order. */
  static final Map<String, Object> STATS = new LinkedHashMap<>();

  static {
    STATS.put("version", "0.1.0");
    STATS.put("uptime_ms", 3_723_000L);
    STATS.put("keys", 3L);
  }

  /** How each vector is made with the codec. Value bytes follow the encoded prefix. */
  private static final Map<String, Function<byte[], Integer>> ENCODERS = new LinkedHashMap<>();

  static {
    ENCODERS.put("hello_request", b -> Messages.hello(b, 1));
    ENCODERS.put("hello_response", b -> Messages.helloOk(b, 1, 0x7F000001, 10000));
    ENCODERS.put("hello_response_same_host", b -> Messages.helloOk(b, 1, 0, 10000));
    ENCODERS.put("hello_response_unavailable",
        b -> Messages.status(b, Opcode.HELLO.code(), Status.UNAVAILABLE, 0, 1));
    ENCODERS.put("session_request_new", b -> Messages.session(b, 2, 0, null));
    ENCODERS.put("session_request_resume",
        b -> Messages.session(b, 2, 0x0123456789ABCDEFL, SECRET));
    ENCODERS.put("session_response",
        b -> Messages.sessionOk(b, 2, 0x0123456789ABCDEFL, SECRET, 64 * 1024 * 1024));
    ENCODERS.put("session_response_forbidden",
        b -> Messages.status(b, Opcode.SESSION.code(), Status.FORBIDDEN, 0, 2));
    ENCODERS.put("ping_request", b -> Messages.ping(b, 3));
    ENCODERS.put("ping_response", b -> Messages.status(b, Opcode.PING.code(), Status.OK, 0, 3));
    ENCODERS.put("stats_request", b -> Messages.stats(b, 13));
    ENCODERS.put("stats_response", b -> Messages.statsOk(b, 0, Opcode.STATS, 13, STATS));
    ENCODERS.put("put_request", b -> withValue(b, Messages.putHeader(b, 7, 4, false, 2), "3700"));
    ENCODERS.put("put_request_overwrite",
        b -> withValue(b, Messages.putHeader(b, 0xFFFFFFFF, 5, true, 3), "00ff80"));
    ENCODERS.put("put_request_empty_value", b -> Messages.putHeader(b, 0, 6, false, 0));
    ENCODERS.put("put_request_high_id",
        b -> withValue(b, Messages.putHeader(b, 7, 0x8000000000000001L, false, 1), "37"));
    ENCODERS.put("put_response_ok", b -> Messages.status(b, Opcode.PUT.code(), Status.OK, 7, 4));
    ENCODERS.put("put_response_key_exists",
        b -> Messages.status(b, Opcode.PUT.code(), Status.KEY_EXISTS, 7, 4));
    ENCODERS.put("put_response_too_large",
        b -> Messages.status(b, Opcode.PUT.code(), Status.TOO_LARGE, 7, 4));
    ENCODERS.put("get_request", b -> Messages.get(b, 7, 8, 1000));
    ENCODERS.put("get_request_zero_capacity", b -> Messages.get(b, 7, 9, 0));
    ENCODERS.put("get_response_ok",
        b -> withValue(b, Messages.getOkPrefix(b, 7, 8, 2, 2), "3700"));
    ENCODERS.put("get_response_truncated",
        b -> withValue(b, Messages.getOkPrefix(b, 0xDEADBEEF, 10, 5, 2), "6865"));
    ENCODERS.put("get_response_not_found",
        b -> Messages.status(b, Opcode.GET.code(), Status.NOT_FOUND, 7, 8));
    ENCODERS.put("delete_request", b -> Messages.delete(b, 0x80000000, 11));
    ENCODERS.put("delete_response_ok",
        b -> Messages.status(b, Opcode.DELETE.code(), Status.OK, 0x80000000, 11));
    ENCODERS.put("delete_response_not_found",
        b -> Messages.status(b, Opcode.DELETE.code(), Status.NOT_FOUND, 0x80000000, 11));
    ENCODERS.put("error_bad_request",
        b -> Messages.status(b, Opcode.PUT.code(), Status.BAD_REQUEST, 7, 4));
    ENCODERS.put("error_unknown_opcode",
        b -> Messages.status(b, 0x7F, Status.UNKNOWN_OPCODE, 0, 12));
    ENCODERS.put("error_unsupported_version",
        b -> Messages.status(b, Opcode.PING.code(), Status.UNSUPPORTED_VERSION, 0, 0));
    ENCODERS.put("error_no_session",
        b -> Messages.status(b, Opcode.GET.code(), Status.NO_SESSION, 7, 8));
    ENCODERS.put("error_server_error",
        b -> Messages.status(b, Opcode.PUT.code(), Status.SERVER_ERROR, 7, 4));
    ENCODERS.put("error_unavailable",
        b -> Messages.status(b, Opcode.PUT.code(), Status.UNAVAILABLE, 7, 4));
    ENCODERS.put("challenge", b -> Messages.challenge(b, 1, range(0xA0, 32)));
    ENCODERS.put("init_request",
        b -> Messages.init(b, 1, 10000, 4242, range(0xC0, 32), hex(MAC_INIT)));
    ENCODERS.put("init_response", b -> Messages.initOk(b, 1, 4241, hex(MAC_INIT_OK)));
    ENCODERS.put("heartbeat", b -> Messages.heartbeat(b, 17));
    ENCODERS.put("shutdown_request", b -> Messages.shutdown(b, 2));
    ENCODERS.put("shutdown_response",
        b -> Messages.status(b, Opcode.SHUTDOWN.code(), Status.OK, 0, 2));
    ENCODERS.put("status_request", b -> Messages.statusRequest(b, 3));
    ENCODERS.put("status_response", b -> Messages.statsOk(b, 0, Opcode.STATUS, 3, STATS));
  }

  private static int withValue(byte[] buf, int prefix, String hex) {
    byte[] value = HexFormat.of().parseHex(hex);
    System.arraycopy(value, 0, buf, prefix, value.length);
    return prefix + value.length;
  }

  @BeforeAll
  static void load() throws IOException {
    try (InputStream in = GoldenVectorsTest.class.getResourceAsStream("/golden-vectors.txt");
        BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
      for (String line; (line = r.readLine()) != null; ) {
        if (line.isBlank() || line.startsWith("#")) {
          continue;
        }
        String[] parts = line.trim().split("\\s+");
        assertWithMessage("line %s", line).that(parts).hasLength(2);
        VECTORS.put(parts[0], HexFormat.of().parseHex(parts[1]));
      }
    }
  }

  @Test
  void everyVectorHasAnEncoderAndEveryEncoderAVector() {
    assertThat(VECTORS.keySet()).containsExactlyElementsIn(ENCODERS.keySet());
  }

  @Test
  void encodingMatchesEveryVectorByteForByte() {
    for (Map.Entry<String, Function<byte[], Integer>> e : ENCODERS.entrySet()) {
      byte[] buf = new byte[Messages.MAX_CONTROL_BYTES + 16];
      int n = e.getValue().apply(buf);
      assertWithMessage(e.getKey())
          .that(HexFormat.of().formatHex(Arrays.copyOf(buf, n)))
          .isEqualTo(HexFormat.of().formatHex(VECTORS.get(e.getKey())));
    }
  }

  @Test
  void everyVectorDecodesToAConsistentHeader() {
    for (Map.Entry<String, byte[]> e : VECTORS.entrySet()) {
      byte[] bytes = e.getValue();
      Header h = new Header().decode(bytes, 0);
      assertWithMessage(e.getKey()).that(h.version).isEqualTo(Protocol.VERSION);
      assertWithMessage(e.getKey()).that(h.bodyLength).isEqualTo(bytes.length - HEADER_BYTES);
      if (h.magic == Protocol.REQUEST_MAGIC) {
        assertWithMessage(e.getKey())
            .that(Rules.checkRequest(h, Protocol.DEFAULT_MAX_VALUE_BYTES)).isNull();
      } else {
        assertWithMessage(e.getKey()).that(h.magic).isEqualTo(Protocol.RESPONSE_MAGIC);
        assertWithMessage(e.getKey()).that(Status.of(h.flagsOrStatus)).isNotNull();
      }
    }
  }

  @Test
  void decodedFieldsOfSelectedVectors() {
    Header put = new Header().decode(VECTORS.get("put_request_overwrite"), 0);
    assertThat(put.opcode).isEqualTo(Opcode.PUT.code());
    assertThat(put.flagsOrStatus).isEqualTo(Protocol.FLAG_OVERWRITE);
    assertThat(Integer.toUnsignedLong(put.key)).isEqualTo(0xFFFFFFFFL);
    assertThat(put.requestId).isEqualTo(5);

    byte[] get = VECTORS.get("get_response_truncated");
    Header g = new Header().decode(get, 0);
    assertThat(Rules.checkResponse(g, Opcode.GET, 0xDEADBEEF, 10)).isNull();
    assertThat(Integer.toUnsignedLong(g.key)).isEqualTo(0xDEADBEEFL);
    assertThat(Header.getU32(get, HEADER_BYTES)).isEqualTo(5);

    byte[] session = VECTORS.get("session_response");
    assertThat(Header.getU64(session, HEADER_BYTES)).isEqualTo(0x0123456789ABCDEFL);
    assertThat(Messages.sessionSecret(session, HEADER_BYTES)).isEqualTo(SECRET);
    assertThat(Messages.sessionMaxValueBytes(session, HEADER_BYTES)).isEqualTo(64 * 1024 * 1024);

    Header high = new Header().decode(VECTORS.get("put_request_high_id"), 0);
    assertThat(Long.toUnsignedString(high.requestId)).isEqualTo("9223372036854775809");

    byte[] hello = VECTORS.get("hello_response");
    assertThat(Header.getU32(hello, HEADER_BYTES)).isEqualTo(0x7F000001);
    assertThat(Header.getU16(hello, HEADER_BYTES + 4)).isEqualTo(10000);

    byte[] init = VECTORS.get("init_request");
    assertThat(Header.getU16(init, HEADER_BYTES)).isEqualTo(10000);
    assertThat(Header.getU64(init, HEADER_BYTES + 2)).isEqualTo(4242);

    for (String name : new String[] {"stats_response", "status_response"}) {
      byte[] bytes = VECTORS.get(name);
      Header st = new Header().decode(bytes, 0);
      Opcode op = name.startsWith("stats") ? Opcode.STATS : Opcode.STATUS;
      long id = op == Opcode.STATS ? 13 : 3;
      assertWithMessage(name).that(Rules.checkResponse(st, op, 0, id)).isNull();
      Map<String, Object> counters = StatsBody.decode(bytes, HEADER_BYTES, (int) st.bodyLength);
      assertWithMessage(name).that(counters).containsExactlyEntriesIn(STATS).inOrder();
    }
  }

  @Test
  void everyOpcodeAndEveryWireStatusAppears() {
    Set<Opcode> ops = EnumSet.noneOf(Opcode.class);
    Set<Status> statuses = EnumSet.noneOf(Status.class);
    for (byte[] bytes : VECTORS.values()) {
      Header h = new Header().decode(bytes, 0);
      if (Opcode.of(h.opcode) != null) {
        ops.add(Opcode.of(h.opcode));
      }
      if (h.magic == Protocol.RESPONSE_MAGIC) {
        statuses.add(Status.of(h.flagsOrStatus));
      }
    }
    assertThat(ops).containsExactlyElementsIn(EnumSet.allOf(Opcode.class));
    assertThat(statuses).containsExactlyElementsIn(EnumSet.complementOf(EnumSet.of(Status.IO_ERROR)));
  }
}
