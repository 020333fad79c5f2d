package io.psiskv.protocol;

/** PROTOCOL.md §4: opcodes, one byte, in the header at offset 2. */
public enum Opcode {
  /** §6.1 client to Front Server: where is the Data Server? */
  HELLO(0x01),
  /** §6.2 client to Data Server, first message of a data connection: open or resume a session. */
  SESSION(0x02),
  /** §6.3 liveness check on any client connection. */
  PING(0x03),
  /** §6.7 any client connection of a Data Server: its named counters. */
  STATS(0x04),
  /** §6.4 store a value. */
  PUT(0x10),
  /** §6.5 read a value (at most the caller's capacity). */
  GET(0x11),
  /** §6.6 remove a key. */
  DELETE(0x12),
  /** §7.1 Data Server to Front Server, first control message. */
  INIT(0x20),
  /** §7.2 either direction on the control connection; never answered. */
  HEARTBEAT(0x21),
  /**
   * §7.3 orderly termination: Front Server to Data Server "stop", or Data Server to Front Server
   * "I am stopping on purpose, stop too".
   */
  SHUTDOWN(0x22),
  /**
   * §7.4 Front Server to Data Server: report your figures (the console's {@code status}); the
   * answer's body is the STATS body (§6.7).
   */
  STATUS(0x23),
  /** §7.1 Front Server to Data Server, first control message: the nonce INIT must answer. */
  CHALLENGE(0x24);

  private static final Opcode[] BY_CODE = new Opcode[256];

  static {
    for (Opcode op : values()) {
      BY_CODE[op.code] = op;
    }
  }

  private final int code;

  Opcode(int code) {
    this.code = code;
  }

  /** The byte on the wire. */
  public int code() {
    return code;
  }

  /** The opcode for a wire byte, or {@code null} if the byte names none (UNKNOWN_OPCODE). */
  public static Opcode of(int code) {
    return BY_CODE[code & 0xFF];
  }
}
