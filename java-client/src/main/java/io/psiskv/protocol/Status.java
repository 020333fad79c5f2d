package io.psiskv.protocol;

/**
 * PROTOCOL.md §5: response status, one byte, in the header at offset 3. The table in §5 maps each
 * status onto the C API's return codes; {@link #OK}, {@link #KEY_EXISTS} and {@link #NOT_FOUND} are
 * results, every status from 0x10 up is an error.
 */
public enum Status {
  /** The operation was applied (PUT, DELETE) or the value follows (GET). */
  OK(0x00, "ok"),
  /** PUT without the overwrite flag found the key present; nothing was changed. */
  KEY_EXISTS(0x01, "key exists"),
  /** GET or DELETE found no such key. */
  NOT_FOUND(0x02, "no such key"),
  /** The request broke a MUST rule of PROTOCOL.md (bad magic, flags, lengths). */
  BAD_REQUEST(0x10, "malformed request"),
  /** The opcode byte names no operation. */
  UNKNOWN_OPCODE(0x11, "unknown opcode"),
  /** The value is longer than the server's maximum (§9). */
  TOO_LARGE(0x12, "value too large"),
  /** The version byte is not one this server speaks. */
  UNSUPPORTED_VERSION(0x13, "unsupported protocol version"),
  /** A data operation arrived before SESSION on this connection. */
  NO_SESSION(0x14, "no session: send SESSION first"),
  /** SESSION presented the wrong secret for an existing session: it belongs to another client. */
  FORBIDDEN(0x15, "the session belongs to another client"),
  /** The server failed while applying the request (for example the backup file). */
  SERVER_ERROR(0x20, "server error"),
  /** The server cannot serve now (Data Server not ready, shutting down); try again later. */
  UNAVAILABLE(0x21, "server unavailable"),
  /** Not a wire status: the client could not reach the server or the connection broke. */
  IO_ERROR(0xFF, "I/O error");

  private static final Status[] BY_CODE = new Status[256];

  static {
    for (Status s : values()) {
      BY_CODE[s.code] = s;
    }
  }

  private final int code;
  private final String message;

  Status(int code, String message) {
    this.code = code;
    this.message = message;
  }

  /**
   * The byte on the wire.
   *
   * @return the code, 0..255
   */
  public int code() {
    return code;
  }

  /**
   * A short human-readable description.
   *
   * @return the description, in lower case
   */
  public String message() {
    return message;
  }

  /**
   * The status for a wire byte.
   *
   * @param code the byte (only its low 8 bits count)
   * @return the status, or {@code null} if the byte names none
   */
  public static Status of(int code) {
    return BY_CODE[code & 0xFF];
  }
}
