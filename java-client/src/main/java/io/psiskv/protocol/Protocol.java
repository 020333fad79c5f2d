package io.psiskv.protocol;

/**
 * Wire constants of the psiskv protocol, written once for Java. Each constant names the section of
 * {@code PROTOCOL.md} it implements; no other Java file may spell these numbers.
 *
 * <p>This package is shared by the client and the servers. It is public only so that the servers
 * module can use it; applications use {@link io.psiskv.client.KvClient}.
 */
public final class Protocol {
  private Protocol() {}

  /** PROTOCOL.md §3.3: first byte of every request. */
  public static final byte REQUEST_MAGIC = (byte) 0xA5;
  /** PROTOCOL.md §3.3: first byte of every response. */
  public static final byte RESPONSE_MAGIC = (byte) 0x5A;
  /** PROTOCOL.md §3.4: the only version this code speaks. */
  public static final byte VERSION = 0x02;

  /** PROTOCOL.md §3: every message starts with a header of exactly this many bytes. */
  public static final int HEADER_BYTES = 20;
  /** PROTOCOL.md §3.1: header field offsets. */
  public static final int OFF_MAGIC = 0;
  public static final int OFF_VERSION = 1;
  public static final int OFF_OPCODE = 2;
  public static final int OFF_FLAGS_OR_STATUS = 3;
  public static final int OFF_KEY = 4;
  public static final int OFF_REQUEST_ID = 8;
  public static final int OFF_BODY_LENGTH = 16;

  /** PROTOCOL.md §6.4: PUT flag bit 0, replace an existing value. No other flag bit is defined. */
  public static final int FLAG_OVERWRITE = 0x01;

  /** PROTOCOL.md §6.1: HELLO response body, u32 IPv4 address and u16 port. */
  public static final int HELLO_RESPONSE_BODY_BYTES = 6;
  /** PROTOCOL.md §6.2: a session's secret, required to resume it. */
  public static final int SESSION_SECRET_BYTES = 16;
  /**
   * PROTOCOL.md §6.2: SESSION request body, u64 session id and its secret (both zero ask for a
   * new session).
   */
  public static final int SESSION_REQUEST_BODY_BYTES = 8 + SESSION_SECRET_BYTES;
  /** PROTOCOL.md §6.2: SESSION response body, u64 session id, its secret, u32 maximum value. */
  public static final int SESSION_RESPONSE_BODY_BYTES = 8 + SESSION_SECRET_BYTES + 4;
  /** PROTOCOL.md §6.5: GET request body, u32 capacity of the caller's buffer. */
  public static final int GET_REQUEST_BODY_BYTES = 4;
  /** PROTOCOL.md §6.5: GET OK response body starts with the u32 stored length. */
  public static final int GET_RESPONSE_PREFIX_BYTES = 4;
  /** PROTOCOL.md §7.1: the random challenges of the control handshake. */
  public static final int NONCE_BYTES = 32;
  /** PROTOCOL.md §7.1: an HMAC-SHA256 proof of the pair secret. */
  public static final int MAC_BYTES = 32;
  /** PROTOCOL.md §7.1: CHALLENGE body, the Front Server's nonce. */
  public static final int CHALLENGE_BODY_BYTES = NONCE_BYTES;
  /** PROTOCOL.md §7.1: INIT request body: u16 client port, u64 pid, the Data Server nonce, MAC. */
  public static final int INIT_REQUEST_BODY_BYTES = 2 + 8 + NONCE_BYTES + MAC_BYTES;
  /** PROTOCOL.md §7.1: INIT response body: u64 pid of the Front Server, MAC. */
  public static final int INIT_RESPONSE_BODY_BYTES = 8 + MAC_BYTES;
  /**
   * PROTOCOL.md §6.7: the most bytes a STATS (or §7.4 STATUS) OK body may have; a server never
   * sends more and a client refuses more before it reads the body.
   */
  public static final int STATS_MAX_BODY_BYTES = 4096;
  /** PROTOCOL.md §6.7: the smallest STATS OK body, a u16 count of 0. */
  public static final int STATS_MIN_BODY_BYTES = 2;
  /** PROTOCOL.md §6.7: a counter's name is 1 to this many bytes of {@code [a-z0-9_]}. */
  public static final int STATS_NAME_MAX_BYTES = 64;
  /** PROTOCOL.md §6.7: a string value is at most this many bytes of UTF-8 (u8 length). */
  public static final int STATS_STRING_MAX_BYTES = 255;
  /** PROTOCOL.md §6.7: entry type u64, an unsigned 64-bit value follows. */
  public static final int STATS_TYPE_U64 = 1;
  /** PROTOCOL.md §6.7: entry type string, a u8 length and that many bytes of UTF-8 follow. */
  public static final int STATS_TYPE_STRING = 2;

  /** PROTOCOL.md §9: default server maximum for a value, 64 MiB. */
  public static final int DEFAULT_MAX_VALUE_BYTES = 64 * 1024 * 1024;
  /**
   * PROTOCOL.md §9: the largest maximum a Java server can be configured with (the largest Java
   * array less the GET prefix). The wire field is u32, but no psiskv server stores more than this.
   */
  public static final int MAX_VALUE_BYTES_LIMIT = Integer.MAX_VALUE - 16;

  /** README: the Front Server's default client port. */
  public static final int DEFAULT_FRONT_PORT = 9999;
}
