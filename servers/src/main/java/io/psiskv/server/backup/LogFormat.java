package io.psiskv.server.backup;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Protocol;
import java.nio.charset.StandardCharsets;
import java.util.zip.CRC32;
import java.util.zip.CRC32C;

/**
 * The byte layout of the backup log, PROTOCOL.md §11, written once: the file header and the record
 * layout, their encoders, and the consistency rules a record's fixed part must obey. Like the wire
 * codec this class does no I/O: {@link BackupLog} and {@link Compactor} write what it encodes and
 * {@link LogRecordReader} checks what it reads against it.
 *
 * <pre>
 * file    = header *record
 * header  = magic:"PSISKVLG" version:u16(=2) flags:u16(=0) created-millis:u64 header-crc:u32
 *                                                      ; 24 bytes, header-crc = crc32c(bytes 0..19)
 * record  = crc:u32 length:u32 op:u8 key:u32 session:u64 request:u64 result:u8
 *           value-length:u32 value:byte[value-length]
 *                     ; crc = crc32c of every byte after the crc field (length .. end of value)
 *                     ; length = 26 + value-length (the bytes after the length field)
 * op      = PUT:1 | DELETE:2 | SESSION:3 | PUT_IF_ABSENT:4  ; DELETE has value-length 0
 * session-value = secret:byte[16] last-op:u8 last-key:u32 last-length:u32 last-digest:u64
 *                     ; the 33-byte value of a SESSION record (version 2)
 * </pre>
 *
 * Version 1 files (psiskv before session secrets) have the same records without PUT_IF_ABSENT
 * and with empty SESSION values; they are read, their sessions ignored, and rewritten as
 * version 2 at once ({@link BackupLog#open}).
 *
 * All integers are big-endian and unsigned, as on the wire.
 */
public final class LogFormat {
  private LogFormat() {}

  /** §11.1: the first 8 bytes of every log file. */
  static final byte[] MAGIC = "PSISKVLG".getBytes(StandardCharsets.US_ASCII);
  /** §11.1: the format version this code writes. */
  public static final int VERSION = 2;
  /** §11.1: the older version this code still reads (and rewrites as {@link #VERSION}). */
  public static final int VERSION_1 = 1;
  /** §11.1: the header is fixed-size; the first record starts right after it. */
  public static final int HEADER_BYTES = 24;

  public static final int OFF_HEADER_VERSION = 8;
  static final int OFF_HEADER_FLAGS = 10;
  static final int OFF_HEADER_CREATED = 12;
  public static final int OFF_HEADER_CRC = 20;

  /** §11.2: record field offsets from the start of the record. */
  static final int OFF_CRC = 0;
  static final int OFF_LENGTH = 4;
  static final int OFF_OP = 8;
  static final int OFF_KEY = 9;
  static final int OFF_SESSION = 13;
  static final int OFF_REQUEST = 21;
  static final int OFF_RESULT = 29;
  static final int OFF_VALUE_LENGTH = 30;

  /** §11.2: bytes of a record before its value (crc through value-length). */
  public static final int RECORD_FIXED_BYTES = 34;
  /** §11.2: the bytes before the part the CRC covers, and before the part length counts. */
  static final int CRC_COVERS_FROM = OFF_LENGTH;
  static final int LENGTH_COUNTS_FROM = OFF_OP;
  /** §11.2: {@code length} of a record with an empty value. */
  static final int BODY_FIXED_BYTES = RECORD_FIXED_BYTES - LENGTH_COUNTS_FROM;

  /**
   * §11.2: the largest value a record may hold: the largest value any psiskv server can be
   * configured to accept (PROTOCOL.md §9). The limit does not follow the server's configured
   * maximum so that lowering the maximum never makes an existing log unreadable.
   */
  static final int MAX_VALUE_BYTES = Protocol.MAX_VALUE_BYTES_LIMIT;

  /** §11.2: record operations. */
  public static final int OP_PUT = 1;
  public static final int OP_DELETE = 2;
  public static final int OP_SESSION = 3;
  /** A PUT without the overwrite flag that stored its value; replayed as a PUT. */
  public static final int OP_PUT_IF_ABSENT = 4;

  /** §11.2: the value of a SESSION record, version 2: field offsets and its length. */
  public static final int OFF_SV_SECRET = 0;
  public static final int OFF_SV_OP = 16;
  public static final int OFF_SV_KEY = 17;
  public static final int OFF_SV_LENGTH = 21;
  public static final int OFF_SV_DIGEST = 25;
  public static final int SESSION_VALUE_BYTES = 33;

  /** §11.2: session id of records that belong to no client session (a compacted snapshot). */
  public static final long NO_SESSION = 0;

  /** Writes a complete header into {@code buf[0..24)}. */
  public static void encodeHeader(byte[] buf, long createdMillis) {
    System.arraycopy(MAGIC, 0, buf, 0, MAGIC.length);
    Header.putU16(buf, OFF_HEADER_VERSION, VERSION);
    Header.putU16(buf, OFF_HEADER_FLAGS, 0);
    Header.putU64(buf, OFF_HEADER_CREATED, createdMillis);
    Header.putU32(buf, OFF_HEADER_CRC, headerCrc(buf));
  }

  /** The CRC the header stores: crc32c of its bytes 0..19. */
  public static int headerCrc(byte[] buf) {
    CRC32C crc = new CRC32C();
    crc.update(buf, 0, OFF_HEADER_CRC);
    return (int) crc.getValue();
  }

  /**
   * Writes the fixed part of a record (all 34 bytes, the CRC included) at {@code buf[off..)}. The
   * CRC covers {@code value}, which the caller writes right after the fixed part.
   */
  public static void encodeRecord(
      byte[] buf, int off, int op, int key, long session, long requestId, int result,
      byte[] value) {
    int valueLength = value == null ? 0 : value.length;
    Header.putU32(buf, off + OFF_LENGTH, BODY_FIXED_BYTES + valueLength);
    buf[off + OFF_OP] = (byte) op;
    Header.putU32(buf, off + OFF_KEY, key);
    Header.putU64(buf, off + OFF_SESSION, session);
    Header.putU64(buf, off + OFF_REQUEST, requestId);
    buf[off + OFF_RESULT] = (byte) result;
    Header.putU32(buf, off + OFF_VALUE_LENGTH, valueLength);
    CRC32C crc = new CRC32C();
    crc.update(buf, off + CRC_COVERS_FROM, RECORD_FIXED_BYTES - CRC_COVERS_FROM);
    if (valueLength > 0) {
      crc.update(value, 0, valueLength);
    }
    Header.putU32(buf, off + OFF_CRC, (int) crc.getValue());
  }

  /**
   * The value of a SESSION record: the session's secret and what identifies its last write
   * ({@code lastOp} 0 if none), the fields a retry must repeat (PROTOCOL.md §12.5).
   */
  public static byte[] encodeSessionValue(byte[] secret, int lastOp, int lastKey, int lastLength,
      long lastDigest) {
    byte[] v = new byte[SESSION_VALUE_BYTES];
    System.arraycopy(secret, 0, v, OFF_SV_SECRET, Protocol.SESSION_SECRET_BYTES);
    v[OFF_SV_OP] = (byte) lastOp;
    Header.putU32(v, OFF_SV_KEY, lastKey);
    Header.putU32(v, OFF_SV_LENGTH, lastLength);
    Header.putU64(v, OFF_SV_DIGEST, lastDigest);
    return v;
  }

  /**
   * PROTOCOL.md §11.2 and §12.5: the 64-bit digest of a value that a retried PUT must repeat:
   * CRC-32 (java.util.zip.CRC32) of the value in the high 32 bits, CRC-32C in the low 32 bits.
   * Both are hardware-assisted in the JDK, so a digest costs little next to the copy of the value.
   */
  public static long digest(byte[] value) {
    if (value == null) {
      return 0;
    }
    CRC32 hi = new CRC32();
    hi.update(value, 0, value.length);
    CRC32C lo = new CRC32C();
    lo.update(value, 0, value.length);
    return (hi.getValue() << 32) | lo.getValue();
  }

  /** Bytes a record with a value of this length occupies in the file. */
  static long recordBytes(long valueLength) {
    return RECORD_FIXED_BYTES + valueLength;
  }

  /**
   * Checks the fixed part of a record for self-consistency, before anything of the value is read
   * or allocated. A torn write leaves a correct prefix of a record, so a fixed part that breaks one
   * of these rules is damage, not a torn tail (§11.3).
   *
   * @param version the file's format version
   * @param length the length field as an unsigned value
   * @param valueLength the value-length field as an unsigned value
   * @return {@code null} if consistent, else what is wrong
   */
  static String checkFixed(int version, long length, int op, long valueLength) {
    if (op != OP_PUT && op != OP_DELETE && op != OP_SESSION
        && !(op == OP_PUT_IF_ABSENT && version >= VERSION)) {
      return "unknown record op " + op;
    }
    if (valueLength > MAX_VALUE_BYTES) {
      return "value length " + valueLength + " exceeds the maximum " + MAX_VALUE_BYTES;
    }
    if (length != BODY_FIXED_BYTES + valueLength) {
      return "record length " + length + " does not match value length " + valueLength;
    }
    if (op == OP_DELETE && valueLength != 0
        || op == OP_SESSION && valueLength != (version >= VERSION ? SESSION_VALUE_BYTES : 0)) {
      return opName(op) + " record with a value of " + valueLength + " bytes";
    }
    return null;
  }

  static String opName(int op) {
    switch (op) {
      case OP_PUT:
        return "PUT";
      case OP_DELETE:
        return "DELETE";
      case OP_SESSION:
        return "SESSION";
      case OP_PUT_IF_ABSENT:
        return "PUT_IF_ABSENT";
      default:
        return "op " + op;
    }
  }
}
