package io.psiskv.server.backup;

import static io.psiskv.server.backup.LogFormat.*;

import io.psiskv.protocol.Header;
import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.zip.CRC32C;

/**
 * Reads a backup log front to back and applies the recovery rule of PROTOCOL.md §11.3 to what it
 * finds. Shared by {@link LogRecovery#recover} (replay) and {@link BackupCheck} (the offline
 * tool), so the two can never disagree about where a file is damaged.
 *
 * <p>Reading goes through one 1 MiB buffer with positional reads; the only per-record allocation
 * is the value array handed to the visitor, and a value is allocated only after the record's
 * fixed part is consistent and the whole record is known to lie inside the file, so a length that
 * a damaged file merely claims is never allocated. Not thread-safe; the caller owns the channel.
 */
final class LogRecordReader {
  /** Size of the read buffer. Big reads make replay of a large log run at disk/cache speed. */
  static final int READ_BUFFER_BYTES = 1 << 20;

  /** The decoded file header. */
  record FileHeader(int version, long createdMillis) {}

  /** Receives each good record, in file order. */
  interface Visitor {
    /**
     * @param value the value, a fresh array the visitor may keep, or {@code null} when the scan
     *     was asked not to materialise values
     * @param valueLength the value's length (also when {@code value} is null)
     */
    void record(int op, int key, long session, long requestId, int result, byte[] value,
        int valueLength) throws IOException;
  }

  /** What a scan found. */
  enum Outcome {
    /** Every byte after the header belongs to a good record. */
    CLEAN,
    /** The good records are followed by a torn tail; truncating at {@link Scan#goodEnd} is safe. */
    TORN,
    /** A bad record is followed by more bytes: the file is damaged before its end. */
    DAMAGED
  }

  /** The result of {@link #scan}. */
  static final class Scan {
    Outcome outcome = Outcome.CLEAN;
    /** File size when the scan started. */
    long fileSize;
    /** Offset just past the last good record (the header's end if there is none). */
    long goodEnd = HEADER_BYTES;
    /** Why the first bad record is bad; null when clean. */
    String reason;
    long records;
    long puts;
    long deletes;
    long sessions;

    /** Bytes after the last good record. */
    long badBytes() {
      return fileSize - goodEnd;
    }
  }

  private final FileChannel channel;
  private final Path file;
  private final byte[] buf = new byte[READ_BUFFER_BYTES];
  private final ByteBuffer bb = ByteBuffer.wrap(buf);
  private final CRC32C crc = new CRC32C();
  /** buf[pos..lim) holds the file bytes at [readPos - (lim - pos), readPos). */
  /** The file's format version, set by {@link #readHeader} (which a scan must follow). */
  private int version = VERSION;
  private int pos;
  private int lim;
  private long readPos;
  private long size;

  LogRecordReader(FileChannel channel, Path file) {
    this.channel = channel;
    this.file = file;
  }

  /**
   * Reads and checks the file header. A header problem is never a torn tail (the header is written
   * to a temporary file, forced and renamed into place before any record, §11.3), so every problem
   * is an exception whose message names the file and says what to do.
   */
  FileHeader readHeader() throws IOException {
    long fileSize = channel.size();
    if (fileSize < HEADER_BYTES) {
      throw new IOException(String.format(
          "%s: %d bytes, too short to be a psiskv backup log (the header alone is %d bytes). "
              + "A psiskv server never leaves such a file; move it away to start with an empty "
              + "store.", file, fileSize, HEADER_BYTES));
    }
    byte[] h = new byte[HEADER_BYTES];
    readFully(ByteBuffer.wrap(h), 0);
    if (!Arrays.equals(h, 0, MAGIC.length, MAGIC, 0, MAGIC.length)) {
      throw new IOException(String.format(
          "%s: bad magic %s at offset 0, not a psiskv backup log (expected \"PSISKVLG\"). "
              + "Check the data directory; move the file away to start with an empty store.",
          file, hex(h, 0, MAGIC.length)));
    }
    int version = Header.getU16(h, OFF_HEADER_VERSION);
    int flags = Header.getU16(h, OFF_HEADER_FLAGS);
    if ((version != VERSION && version != VERSION_1) || flags != 0) {
      throw new IOException(String.format(
          "%s: backup log format version %d (flags 0x%04x) at offset %d; this psiskv reads "
              + "versions %d and %d only. Start the psiskv release that wrote it.",
          file, version, flags, OFF_HEADER_VERSION, VERSION_1, VERSION));
    }
    int stored = Header.getU32(h, OFF_HEADER_CRC);
    if (stored != headerCrc(h)) {
      throw new IOException(String.format(
          "%s: header checksum mismatch at offset %d (stored 0x%08x, computed 0x%08x). The "
              + "header is damaged; run build-scripts/psiskv-check on the file.",
          file, OFF_HEADER_CRC, stored, headerCrc(h)));
    }
    this.version = version;
    return new FileHeader(version, Header.getU64(h, OFF_HEADER_CREATED));
  }

  /**
   * Scans every record after the header, handing each good one to {@code visitor}, and stops at
   * the first bad one. Classifies what follows the last good record by the rule of §11.3:
   *
   * <ul>
   *   <li>fewer bytes than a record's fixed part: TORN (a partial record);
   *   <li>a fixed part that breaks {@link LogFormat#checkFixed}: TORN if every byte from there to
   *       the end is zero (an extent the file system allocated but never wrote), else DAMAGED;
   *   <li>a consistent fixed part whose record would end past the end of the file: TORN;
   *   <li>a CRC mismatch in a record that ends exactly at the end of the file: TORN;
   *   <li>a CRC mismatch in a record followed by more bytes: DAMAGED.
   * </ul>
   *
   * @param wantValues whether to allocate and pass each value (replay) or only its length (check)
   */
  Scan scan(boolean wantValues, Visitor visitor) throws IOException {
    Scan s = new Scan();
    size = channel.size();
    s.fileSize = size;
    pos = 0;
    lim = 0;
    readPos = HEADER_BYTES;
    long off = HEADER_BYTES;
    while (off < size) {
      long remaining = size - off;
      if (remaining < RECORD_FIXED_BYTES) {
        return bad(s, off, Outcome.TORN,
            "partial record: " + remaining + " bytes, fewer than a record header");
      }
      fill(RECORD_FIXED_BYTES);
      int storedCrc = Header.getU32(buf, pos + OFF_CRC);
      long length = Header.getU32(buf, pos + OFF_LENGTH) & 0xFFFF_FFFFL;
      int op = buf[pos + OFF_OP] & 0xFF;
      int key = Header.getU32(buf, pos + OFF_KEY);
      long session = Header.getU64(buf, pos + OFF_SESSION);
      long requestId = Header.getU64(buf, pos + OFF_REQUEST);
      int result = buf[pos + OFF_RESULT] & 0xFF;
      long valueLength = Header.getU32(buf, pos + OFF_VALUE_LENGTH) & 0xFFFF_FFFFL;
      String inconsistent = checkFixed(version, length, op, valueLength);
      if (inconsistent != null) {
        if (zerosToEnd(off)) {
          return bad(s, off, Outcome.TORN, "zero-filled tail (" + remaining + " bytes)");
        }
        return bad(s, off, Outcome.DAMAGED, inconsistent);
      }
      long end = off + LENGTH_COUNTS_FROM + length;
      if (end > size) {
        return bad(s, off, Outcome.TORN, String.format(
            "partial record: %s needs %d bytes, %d present",
            opName(op), end - off, remaining));
      }
      crc.reset();
      crc.update(buf, pos + CRC_COVERS_FROM, RECORD_FIXED_BYTES - CRC_COVERS_FROM);
      pos += RECORD_FIXED_BYTES;
      int vlen = (int) valueLength;
      // Allocating here is safe: checkFixed bounded the length and the record lies in the file.
      byte[] value = wantValues ? new byte[vlen] : null;
      int done = 0;
      while (done < vlen) {
        if (pos == lim) {
          fill(1);
        }
        int n = Math.min(vlen - done, lim - pos);
        crc.update(buf, pos, n);
        if (value != null) {
          System.arraycopy(buf, pos, value, done, n);
        }
        pos += n;
        done += n;
      }
      if ((int) crc.getValue() != storedCrc) {
        if (end == size) {
          return bad(s, off, Outcome.TORN,
              "the last record (" + opName(op) + ", " + (end - off) + " bytes) fails its checksum");
        }
        return bad(s, off, Outcome.DAMAGED, String.format(
            "checksum mismatch in a %s record of %d bytes, followed by %d more bytes",
            opName(op), end - off, size - end));
      }
      visitor.record(op, key, session, requestId, result, value, vlen);
      s.records++;
      if (op == OP_PUT || op == OP_PUT_IF_ABSENT) {
        s.puts++;
      } else if (op == OP_DELETE) {
        s.deletes++;
      } else {
        s.sessions++;
      }
      off = end;
      s.goodEnd = end;
    }
    return s;
  }

  private static Scan bad(Scan s, long off, Outcome outcome, String reason) {
    s.outcome = outcome;
    s.goodEnd = off;
    s.reason = reason;
    return s;
  }

  /** Makes at least {@code n} bytes available at buf[pos..), reading big chunks. */
  private void fill(int n) throws IOException {
    if (lim - pos >= n) {
      return;
    }
    System.arraycopy(buf, pos, buf, 0, lim - pos);
    lim -= pos;
    pos = 0;
    while (lim < n) {
      int want = (int) Math.min(buf.length - lim, size - readPos);
      if (want <= 0) {
        throw new EOFException(file + ": file shrank while it was being read (offset "
            + readPos + ")");
      }
      bb.limit(lim + want).position(lim);
      int r = channel.read(bb, readPos);
      if (r < 0) {
        throw new EOFException(file + ": file shrank while it was being read (offset "
            + readPos + ")");
      }
      lim += r;
      readPos += r;
    }
  }

  /** Whether every byte in [off, size) is zero. Leaves the buffer state undefined. */
  private boolean zerosToEnd(long off) throws IOException {
    long p = off;
    while (p < size) {
      int n = (int) Math.min(buf.length, size - p);
      ByteBuffer w = ByteBuffer.wrap(buf, 0, n);
      readFully(w, p);
      for (int i = 0; i < n; i++) {
        if (buf[i] != 0) {
          return false;
        }
      }
      p += n;
    }
    return true;
  }

  /** Positional read until {@code dst} is full; loops because a read may return fewer bytes. */
  private void readFully(ByteBuffer dst, long position) throws IOException {
    while (dst.hasRemaining()) {
      int r = channel.read(dst, position);
      if (r < 0) {
        throw new EOFException(file + ": unexpected end of file at offset " + position);
      }
      position += r;
    }
  }

  private static String hex(byte[] b, int off, int len) {
    StringBuilder sb = new StringBuilder();
    for (int i = off; i < off + len; i++) {
      sb.append(String.format("%02x", b[i] & 0xFF));
    }
    return sb.toString();
  }
}
