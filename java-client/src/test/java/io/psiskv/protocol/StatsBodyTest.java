package io.psiskv.protocol;

import static com.google.common.truth.Truth.assertThat;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** PROTOCOL.md §6.7: the counters body, its bounds and the bodies a client refuses. */
class StatsBodyTest {
  private final byte[] buf = new byte[Protocol.STATS_MAX_BODY_BYTES + 64];

  @Test
  void roundTripKeepsOrderTypesAndUnsignedValues() {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("z_last_first", 1L);
    m.put("max", -1L); // u64 0xffffffffffffffff
    m.put("name", "psiskv \u00e9");
    m.put("empty", "");
    int n = StatsBody.encode(m, buf, 3);
    Map<String, Object> back = StatsBody.decode(buf, 3, n);
    assertThat(back).containsExactlyEntriesIn(m).inOrder();
    assertThat(Long.toUnsignedString((Long) back.get("max"))).isEqualTo("18446744073709551615");
  }

  @Test
  void emptyBodyIsTwoZeroBytes() {
    assertThat(StatsBody.encode(Map.of(), buf, 0)).isEqualTo(2);
    assertThat(StatsBody.decode(buf, 0, 2)).isEmpty();
  }

  @Test
  void encoderRefusesBadNamesLongStringsAndOversizedBodies() {
    assertThrows(IllegalArgumentException.class,
        () -> StatsBody.encode(Map.of("Upper", 1L), buf, 0));
    assertThrows(IllegalArgumentException.class, () -> StatsBody.encode(Map.of("", 1L), buf, 0));
    assertThrows(IllegalArgumentException.class,
        () -> StatsBody.encode(Map.of("a".repeat(65), 1L), buf, 0));
    assertThrows(IllegalArgumentException.class,
        () -> StatsBody.encode(Map.of("s", "x".repeat(256)), buf, 0));
    Map<String, Object> big = new LinkedHashMap<>();
    for (int i = 0; i < 400; i++) {
      big.put("counter_" + i, (long) i); // 400 * 19 bytes > 4096
    }
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> StatsBody.encode(big, buf, 0));
    assertThat(e).hasMessageThat().contains("4096");
  }

  @Test
  void decoderRefusesLyingCountsUnknownTypesDuplicatesAndTrailingBytes() {
    assertRefused("0001", "ends before counter 0");
    assertRefused("0001016b01000000", "value cut off");
    assertRefused("0001016b09", "unknown type 9");
    assertRefused("0001016b0205616263", "value cut off");
    assertRefused("0002" + "016b01" + "0000000000000001" + "016b01" + "0000000000000002",
        "twice");
    assertRefused("0000ff", "after its 0 counters");
    assertRefused("000101 4b010000000000000001".replace(" ", ""), "bad STATS counter name");
    assertRefused("000100", "bad name length 0");
    assertRefused("00", "STATS body of 1 bytes");
  }

  private static void assertRefused(String hex, String reason) {
    byte[] b = HexFormat.of().parseHex(hex);
    int len = b.length;
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> StatsBody.decode(b, 0, len));
    assertThat(e).hasMessageThat().contains(reason);
  }
}
