package io.psiskv.protocol;

import static io.psiskv.protocol.Protocol.*;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * The 20-byte message header of PROTOCOL.md §3, and the byte-order helpers of the whole protocol.
 *
 * <p>This is the codec: it reads and writes byte arrays and does no I/O, so that protocol tests
 * need no socket. All multi-byte fields are big-endian (network byte order). A {@code Header} is a
 * mutable holder meant to be reused for every message of a connection, so that decoding allocates
 * nothing; it is not thread-safe.
 */
public final class Header {
  private static final VarHandle U16 =
      MethodHandles.byteArrayViewVarHandle(short[].class, ByteOrder.BIG_ENDIAN);
  private static final VarHandle U32 =
      MethodHandles.byteArrayViewVarHandle(int[].class, ByteOrder.BIG_ENDIAN);
  private static final VarHandle U64 =
      MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.BIG_ENDIAN);

  /** Byte 0: {@link Protocol#REQUEST_MAGIC} or {@link Protocol#RESPONSE_MAGIC}. */
  public byte magic;
  /** Byte 1. */
  public byte version;
  /** Byte 2, as an unsigned value 0..255 (see {@link Opcode#of}). */
  public int opcode;
  /** Byte 3, as an unsigned value 0..255: flags in a request, status in a response. */
  public int flagsOrStatus;
  /** Bytes 4..7: the key, unsigned 32-bit held in an int. */
  public int key;
  /** Bytes 8..15: the request id. */
  public long requestId;
  /** Bytes 16..19: the body length, unsigned 32-bit (0..4294967295). */
  public long bodyLength;

  /** Decodes the header at {@code buf[off..off+20)} into this holder. */
  public Header decode(byte[] buf, int off) {
    magic = buf[off + OFF_MAGIC];
    version = buf[off + OFF_VERSION];
    opcode = buf[off + OFF_OPCODE] & 0xFF;
    flagsOrStatus = buf[off + OFF_FLAGS_OR_STATUS] & 0xFF;
    key = getU32(buf, off + OFF_KEY);
    requestId = getU64(buf, off + OFF_REQUEST_ID);
    bodyLength = getU32(buf, off + OFF_BODY_LENGTH) & 0xFFFF_FFFFL;
    return this;
  }

  /** Writes a request header at {@code buf[off..off+20)}. */
  public static void encodeRequest(
      byte[] buf, int off, Opcode op, int flags, int key, long requestId, long bodyLength) {
    encode(buf, off, REQUEST_MAGIC, op.code(), flags, key, requestId, bodyLength);
  }

  /** Writes a response header at {@code buf[off..off+20)}. {@code opcode} echoes the request. */
  public static void encodeResponse(
      byte[] buf, int off, int opcode, Status status, int key, long requestId, long bodyLength) {
    encode(buf, off, RESPONSE_MAGIC, opcode, status.code(), key, requestId, bodyLength);
  }

  private static void encode(
      byte[] buf, int off, byte magic, int opcode, int flagsOrStatus, int key, long requestId,
      long bodyLength) {
    buf[off + OFF_MAGIC] = magic;
    buf[off + OFF_VERSION] = VERSION;
    buf[off + OFF_OPCODE] = (byte) opcode;
    buf[off + OFF_FLAGS_OR_STATUS] = (byte) flagsOrStatus;
    putU32(buf, off + OFF_KEY, key);
    putU64(buf, off + OFF_REQUEST_ID, requestId);
    putU32(buf, off + OFF_BODY_LENGTH, (int) bodyLength);
  }

  public static int getU16(byte[] buf, int off) {
    return ((short) U16.get(buf, off)) & 0xFFFF;
  }

  public static void putU16(byte[] buf, int off, int value) {
    U16.set(buf, off, (short) value);
  }

  /** Reads an unsigned 32-bit field into an int (mask with {@code 0xFFFFFFFFL} for its value). */
  public static int getU32(byte[] buf, int off) {
    return (int) U32.get(buf, off);
  }

  public static void putU32(byte[] buf, int off, int value) {
    U32.set(buf, off, value);
  }

  public static long getU64(byte[] buf, int off) {
    return (long) U64.get(buf, off);
  }

  public static void putU64(byte[] buf, int off, long value) {
    U64.set(buf, off, value);
  }

  @Override
  public String toString() {
    Opcode op = Opcode.of(opcode);
    return String.format(
        "magic=0x%02x version=%d opcode=%s flags/status=0x%02x key=%s id=%d body=%d",
        magic & 0xFF, version & 0xFF, op == null ? String.format("0x%02x", opcode) : op,
        flagsOrStatus, Integer.toUnsignedString(key), requestId, bodyLength);
  }
}
