package io.psiskv.server.backup;

import static com.google.common.truth.Truth.assertThat;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The worked examples of PROTOCOL.md §11, byte for byte, encoded and read back. */
class LogRecordFormatTest {
  /** §11.1 example: a header created at 2026-01-01T00:00:00Z. */
  static final String HEADER = "505349534b564c47" + "0002" + "0000" + "0000019b76daa800"
      + "66cecdaf";
  /** §11.2 example: PUT key 7, value "7\0", session 0x0123456789abcdef, request 4, result OK. */
  static final String PUT = "f5ebd85a" + "0000001c" + "01" + "00000007" + "0123456789abcdef"
      + "0000000000000004" + "00" + "00000002" + "3700";
  /** §11.2 example: DELETE key 7, same session, request 5, result OK. */
  static final String DELETE = "39daaa36" + "0000001a" + "02" + "00000007" + "0123456789abcdef"
      + "0000000000000005" + "00" + "00000000";
  /**
   * §11.2 example: SESSION 0x0123456789abcdef, secret 00112233445566778899aabbccddeeff, its last
   * write request 4 answered OK: PUT key 7, 2 bytes, digest of "7\0" d1deb2cb cb42ac14.
   */
  static final String SESSION = "8948d540" + "0000003b" + "03" + "00000000" + "0123456789abcdef"
      + "0000000000000004" + "00" + "00000021" + "00112233445566778899aabbccddeeff" + "01"
      + "00000007" + "00000002" + "d1deb2cbcb42ac14";

  @TempDir Path dir;

  @Test
  void encodesTheWorkedExamples() {
    byte[] h = new byte[LogFormat.HEADER_BYTES];
    LogFormat.encodeHeader(h, 1767225600000L);
    assertThat(HexFormat.of().formatHex(h)).isEqualTo(HEADER);
    byte[] put = new byte[LogFormat.RECORD_FIXED_BYTES + 2];
    LogFormat.encodeRecord(put, 0, LogFormat.OP_PUT, 7, 0x0123456789abcdefL, 4, 0,
        new byte[] {0x37, 0});
    put[LogFormat.RECORD_FIXED_BYTES] = 0x37;
    assertThat(HexFormat.of().formatHex(put)).isEqualTo(PUT);
    byte[] del = new byte[LogFormat.RECORD_FIXED_BYTES];
    LogFormat.encodeRecord(del, 0, LogFormat.OP_DELETE, 7, 0x0123456789abcdefL, 5, 0, null);
    assertThat(HexFormat.of().formatHex(del)).isEqualTo(DELETE);
    byte[] info = LogFormat.encodeSessionValue(
        HexFormat.of().parseHex("00112233445566778899aabbccddeeff"), LogFormat.OP_PUT, 7, 2,
        LogFormat.digest(new byte[] {0x37, 0}));
    byte[] session = new byte[LogFormat.RECORD_FIXED_BYTES + info.length];
    LogFormat.encodeRecord(session, 0, LogFormat.OP_SESSION, 0, 0x0123456789abcdefL, 4, 0, info);
    System.arraycopy(info, 0, session, LogFormat.RECORD_FIXED_BYTES, info.length);
    assertThat(HexFormat.of().formatHex(session)).isEqualTo(SESSION);
  }

  @Test
  void readsTheWorkedExamples() throws IOException {
    Path file = dir.resolve(BackupLog.FILE_NAME);
    Files.write(file, HexFormat.of().parseHex(HEADER + PUT + DELETE + SESSION));
    List<String> seen = new ArrayList<>();
    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
      LogRecordReader r = new LogRecordReader(ch, file);
      LogRecordReader.FileHeader h = r.readHeader();
      assertThat(h.version()).isEqualTo(2);
      assertThat(h.createdMillis()).isEqualTo(1767225600000L);
      LogRecordReader.Scan s = r.scan(true, (op, key, session, request, result, value, len) ->
          seen.add(String.format("%s %d %x %d %d %s", LogFormat.opName(op), key, session,
              request, result, value == null ? "-" : HexFormat.of().formatHex(value))));
      assertThat(s.outcome).isEqualTo(LogRecordReader.Outcome.CLEAN);
      assertThat(s.goodEnd).isEqualTo(Files.size(file));
    }
    assertThat(seen).containsExactly("PUT 7 123456789abcdef 4 0 3700",
        "DELETE 7 123456789abcdef 5 0 ",
        "SESSION 0 123456789abcdef 4 0 " + SESSION.substring(SESSION.length() - 66)).inOrder();
  }

  @Test
  void fixedPartRules() {
    int v2 = LogFormat.VERSION;
    assertThat(LogFormat.checkFixed(v2, 26, LogFormat.OP_DELETE, 0)).isNull();
    assertThat(LogFormat.checkFixed(v2, 28, LogFormat.OP_PUT, 2)).isNull();
    assertThat(LogFormat.checkFixed(v2, 28, LogFormat.OP_PUT_IF_ABSENT, 2)).isNull();
    assertThat(LogFormat.checkFixed(v2, 28, LogFormat.OP_DELETE, 2))
        .contains("DELETE record with");
    assertThat(LogFormat.checkFixed(v2, 27, LogFormat.OP_PUT, 2)).contains("does not match");
    assertThat(LogFormat.checkFixed(v2, 26, 0, 0)).contains("unknown record op 0");
    assertThat(LogFormat.checkFixed(v2, 26L + 0xFFFF_FFFFL, LogFormat.OP_PUT, 0xFFFF_FFFFL))
        .contains("exceeds the maximum");
    // A SESSION record holds the 33-byte secret-and-last-write value in version 2, nothing in 1.
    assertThat(LogFormat.checkFixed(v2, 26 + 33, LogFormat.OP_SESSION, 33)).isNull();
    assertThat(LogFormat.checkFixed(v2, 26, LogFormat.OP_SESSION, 0))
        .contains("SESSION record with");
    int v1 = LogFormat.VERSION_1;
    assertThat(LogFormat.checkFixed(v1, 26, LogFormat.OP_SESSION, 0)).isNull();
    assertThat(LogFormat.checkFixed(v1, 26 + 33, LogFormat.OP_SESSION, 33))
        .contains("SESSION record with");
    assertThat(LogFormat.checkFixed(v1, 28, LogFormat.OP_PUT_IF_ABSENT, 2))
        .contains("unknown record op 4");
  }

  @Test
  void theDigestCombinesCrc32AndCrc32c() {
    byte[] v = "123456789".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
    // The check values of CRC-32 (0xcbf43926) and CRC-32C (0xe3069283) for "123456789".
    assertThat(LogFormat.digest(v)).isEqualTo(0xcbf43926_e3069283L);
    assertThat(LogFormat.digest(new byte[0])).isEqualTo(0L);
    assertThat(LogFormat.digest(null)).isEqualTo(0L);
  }
}
