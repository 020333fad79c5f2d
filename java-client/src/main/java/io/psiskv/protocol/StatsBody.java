package io.psiskv.protocol;

import static io.psiskv.protocol.Protocol.STATS_MAX_BODY_BYTES;
import static io.psiskv.protocol.Protocol.STATS_MIN_BODY_BYTES;
import static io.psiskv.protocol.Protocol.STATS_NAME_MAX_BYTES;
import static io.psiskv.protocol.Protocol.STATS_STRING_MAX_BYTES;
import static io.psiskv.protocol.Protocol.STATS_TYPE_STRING;
import static io.psiskv.protocol.Protocol.STATS_TYPE_U64;

import java.nio.charset.StandardCharsets;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The body of a STATS OK answer (PROTOCOL.md §6.7), which is also the body of the control
 * connection's STATUS OK answer (§7.4): named counters in the server's order.
 *
 * <pre>
 *   body  = count:u16 *entry
 *   entry = name-length:u8 name:byte[name-length] type:u8 value
 *   value = u64                                   (type 1)
 *         | length:u8 utf8:byte[length]           (type 2)
 * </pre>
 *
 * A name is 1 to {@value Protocol#STATS_NAME_MAX_BYTES} bytes of {@code [a-z0-9_]}, unique in the
 * body; a u64 is unsigned (Java holds it in a {@code long}: read it with {@link
 * Long#toUnsignedString}); a body is at most {@value Protocol#STATS_MAX_BODY_BYTES} bytes. Values
 * are {@link Long} (type 1) or {@link String} (type 2). No I/O.
 */
public final class StatsBody {
  private StatsBody() {}

  /**
   * Encodes {@code counters} (values {@link Long}, {@link Integer} or {@link String}) at {@code
   * buf[off..)} and returns the body's length.
   *
   * @throws IllegalArgumentException if a name or value breaks a rule above or the body would be
   *     longer than {@link Protocol#STATS_MAX_BODY_BYTES}
   */
  public static int encode(Map<String, ?> counters, byte[] buf, int off) {
    if (counters.size() > 0xFFFF) {
      throw new IllegalArgumentException("too many counters: " + counters.size());
    }
    int p = off + 2;
    for (Map.Entry<String, ?> e : counters.entrySet()) {
      byte[] name = checkedName(e.getKey());
      Object v = e.getValue();
      byte[] text = null;
      int need = 1 + name.length + 1;
      if (v instanceof Long || v instanceof Integer) {
        need += 8;
      } else if (v instanceof String) {
        text = ((String) v).getBytes(StandardCharsets.UTF_8);
        if (text.length > STATS_STRING_MAX_BYTES) {
          throw new IllegalArgumentException("counter " + e.getKey() + ": string of "
              + text.length + " bytes, more than " + STATS_STRING_MAX_BYTES);
        }
        need += 1 + text.length;
      } else {
        throw new IllegalArgumentException("counter " + e.getKey() + ": not a number or string");
      }
      if (p - off + need > STATS_MAX_BODY_BYTES) {
        throw new IllegalArgumentException("counters exceed " + STATS_MAX_BODY_BYTES + " bytes");
      }
      buf[p++] = (byte) name.length;
      System.arraycopy(name, 0, buf, p, name.length);
      p += name.length;
      if (text == null) {
        buf[p++] = STATS_TYPE_U64;
        Header.putU64(buf, p, ((Number) v).longValue());
        p += 8;
      } else {
        buf[p++] = STATS_TYPE_STRING;
        buf[p++] = (byte) text.length;
        System.arraycopy(text, 0, buf, p, text.length);
        p += text.length;
      }
    }
    Header.putU16(buf, off, counters.size());
    return p - off;
  }

  /**
   * Decodes a body of {@code length} bytes at {@code buf[off..)}: an unmodifiable map in wire
   * order, values {@link Long} (unsigned) or {@link String}.
   *
   * @throws IllegalArgumentException naming the first rule the body breaks (a protocol violation)
   */
  public static Map<String, Object> decode(byte[] buf, int off, int length) {
    if (length < STATS_MIN_BODY_BYTES || length > STATS_MAX_BODY_BYTES) {
      throw new IllegalArgumentException("STATS body of " + length + " bytes");
    }
    int end = off + length;
    int count = Header.getU16(buf, off);
    int p = off + 2;
    Map<String, Object> out = new LinkedHashMap<>();
    for (int i = 0; i < count; i++) {
      if (p >= end) {
        throw new IllegalArgumentException("STATS body ends before counter " + i + " of " + count);
      }
      int nameLength = buf[p++] & 0xFF;
      if (nameLength == 0 || nameLength > STATS_NAME_MAX_BYTES || p + nameLength + 1 > end) {
        throw new IllegalArgumentException("STATS counter " + i + ": bad name length "
            + nameLength);
      }
      String name = new String(buf, p, nameLength, StandardCharsets.US_ASCII);
      p += nameLength;
      checkedName(name);
      int type = buf[p++] & 0xFF;
      Object value;
      if (type == STATS_TYPE_U64) {
        if (p + 8 > end) {
          throw new IllegalArgumentException("STATS counter " + name + ": value cut off");
        }
        value = Header.getU64(buf, p);
        p += 8;
      } else if (type == STATS_TYPE_STRING) {
        int n = p < end ? buf[p++] & 0xFF : -1;
        if (n < 0 || p + n > end) {
          throw new IllegalArgumentException("STATS counter " + name + ": value cut off");
        }
        value = new String(buf, p, n, StandardCharsets.UTF_8);
        p += n;
      } else {
        throw new IllegalArgumentException("STATS counter " + name + ": unknown type " + type);
      }
      if (out.put(name, value) != null) {
        throw new IllegalArgumentException("STATS counter " + name + " appears twice");
      }
    }
    if (p != end) {
      throw new IllegalArgumentException("STATS body has " + (end - p)
          + " bytes after its " + count + " counters");
    }
    return Collections.unmodifiableMap(out);
  }

  /** The name's bytes if it obeys §6.7 (1..64 of {@code [a-z0-9_]}). */
  private static byte[] checkedName(String name) {
    int n = name.length();
    boolean ok = n >= 1 && n <= STATS_NAME_MAX_BYTES;
    for (int i = 0; ok && i < n; i++) {
      char c = name.charAt(i);
      ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    }
    if (!ok) {
      throw new IllegalArgumentException("bad STATS counter name \"" + name
          + "\" (1 to " + STATS_NAME_MAX_BYTES + " of a-z, 0-9, _)");
    }
    return name.getBytes(StandardCharsets.US_ASCII);
  }
}
