package io.psiskv.protocol;

import static io.psiskv.protocol.Protocol.*;

/**
 * Encoders for whole messages of PROTOCOL.md §6 and §7, each writing header and fixed body into a
 * caller's buffer (at offset 0, or at {@code off} for the responses a server queues several of in
 * one buffer) and returning the number of bytes written. A PUT request's or a GET
 * response's value bytes are not copied here: the I/O layer writes them straight from the stored
 * array after the encoded prefix. No I/O, no allocation.
 */
public final class Messages {
  private Messages() {}

  /** Bytes a buffer needs for any message of this class (header plus the largest fixed body). */
  public static final int MAX_FIXED_BYTES = HEADER_BYTES + SESSION_RESPONSE_BODY_BYTES;

  /**
   * Bytes a buffer needs for any control message (§7): header plus the largest control body, a
   * STATUS answer's counters (§7.4). Larger than {@link #MAX_FIXED_BYTES}, which covers the fixed
   * client messages.
   */
  public static final int MAX_CONTROL_BYTES =
      HEADER_BYTES + Math.max(STATS_MAX_BODY_BYTES, INIT_REQUEST_BODY_BYTES);

  /** §6.1 HELLO request. */
  public static int hello(byte[] buf, long requestId) {
    Header.encodeRequest(buf, 0, Opcode.HELLO, 0, 0, requestId, 0);
    return HEADER_BYTES;
  }

  /** §6.1 HELLO OK response: the Data Server's IPv4 address (0 for "same host") and port. */
  public static int helloOk(byte[] buf, long requestId, int ipv4, int port) {
    Header.encodeResponse(buf, 0, Opcode.HELLO.code(), Status.OK, 0, requestId,
        HELLO_RESPONSE_BODY_BYTES);
    Header.putU32(buf, HEADER_BYTES, ipv4);
    Header.putU16(buf, HEADER_BYTES + 4, port);
    return HEADER_BYTES + HELLO_RESPONSE_BODY_BYTES;
  }

  /**
   * §6.2 SESSION request: {@code sessionId} 0 and a null (all-zero) secret ask for a new session;
   * an id and its secret resume it.
   */
  public static int session(byte[] buf, long requestId, long sessionId, byte[] secret) {
    Header.encodeRequest(buf, 0, Opcode.SESSION, 0, 0, requestId, SESSION_REQUEST_BODY_BYTES);
    Header.putU64(buf, HEADER_BYTES, sessionId);
    putSecret(buf, HEADER_BYTES + 8, secret);
    return HEADER_BYTES + SESSION_REQUEST_BODY_BYTES;
  }

  /** §6.2 SESSION OK response. */
  public static int sessionOk(byte[] buf, long requestId, long sessionId, byte[] secret,
      int maxValueBytes) {
    return sessionOk(buf, 0, requestId, sessionId, secret, maxValueBytes);
  }

  /** §6.2 SESSION OK response at {@code buf[off..)}. */
  public static int sessionOk(byte[] buf, int off, long requestId, long sessionId, byte[] secret,
      int maxValueBytes) {
    Header.encodeResponse(buf, off, Opcode.SESSION.code(), Status.OK, 0, requestId,
        SESSION_RESPONSE_BODY_BYTES);
    Header.putU64(buf, off + HEADER_BYTES, sessionId);
    putSecret(buf, off + HEADER_BYTES + 8, secret);
    Header.putU32(buf, off + HEADER_BYTES + 8 + SESSION_SECRET_BYTES, maxValueBytes);
    return HEADER_BYTES + SESSION_RESPONSE_BODY_BYTES;
  }

  /** The session secret of a SESSION request or response body starting at {@code bodyOff}. */
  public static byte[] sessionSecret(byte[] buf, int bodyOff) {
    return java.util.Arrays.copyOfRange(buf, bodyOff + 8, bodyOff + 8 + SESSION_SECRET_BYTES);
  }

  /** The maximum value length of a SESSION OK body starting at {@code bodyOff}. */
  public static int sessionMaxValueBytes(byte[] buf, int bodyOff) {
    return Header.getU32(buf, bodyOff + 8 + SESSION_SECRET_BYTES);
  }

  private static void putSecret(byte[] buf, int off, byte[] secret) {
    if (secret == null) {
      java.util.Arrays.fill(buf, off, off + SESSION_SECRET_BYTES, (byte) 0);
    } else {
      if (secret.length != SESSION_SECRET_BYTES) {
        throw new IllegalArgumentException("a session secret has " + SESSION_SECRET_BYTES
            + " bytes, not " + secret.length);
      }
      System.arraycopy(secret, 0, buf, off, SESSION_SECRET_BYTES);
    }
  }

  /** §6.3 PING request. */
  public static int ping(byte[] buf, long requestId) {
    Header.encodeRequest(buf, 0, Opcode.PING, 0, 0, requestId, 0);
    return HEADER_BYTES;
  }

  /** §6.4 PUT request header; the {@code valueLength} value bytes follow it on the wire. */
  public static int putHeader(byte[] buf, int key, long requestId, boolean overwrite,
      int valueLength) {
    Header.encodeRequest(buf, 0, Opcode.PUT, overwrite ? FLAG_OVERWRITE : 0, key, requestId,
        valueLength);
    return HEADER_BYTES;
  }

  /** §6.5 GET request. */
  public static int get(byte[] buf, int key, long requestId, int capacity) {
    Header.encodeRequest(buf, 0, Opcode.GET, 0, key, requestId, GET_REQUEST_BODY_BYTES);
    Header.putU32(buf, HEADER_BYTES, capacity);
    return HEADER_BYTES + GET_REQUEST_BODY_BYTES;
  }

  /**
   * §6.5 GET OK response prefix (header and stored length); the first {@code sent} value bytes
   * follow it on the wire, where {@code sent = min(capacity, storedLength)}.
   */
  public static int getOkPrefix(byte[] buf, int key, long requestId, int storedLength, int sent) {
    return getOkPrefix(buf, 0, key, requestId, storedLength, sent);
  }

  /** §6.5 GET OK response prefix at {@code buf[off..)}; see the method above. */
  public static int getOkPrefix(byte[] buf, int off, int key, long requestId, int storedLength,
      int sent) {
    Header.encodeResponse(buf, off, Opcode.GET.code(), Status.OK, key, requestId,
        GET_RESPONSE_PREFIX_BYTES + (long) sent);
    Header.putU32(buf, off + HEADER_BYTES, storedLength);
    return HEADER_BYTES + GET_RESPONSE_PREFIX_BYTES;
  }

  /** §6.6 DELETE request. */
  public static int delete(byte[] buf, int key, long requestId) {
    Header.encodeRequest(buf, 0, Opcode.DELETE, 0, key, requestId, 0);
    return HEADER_BYTES;
  }

  /** Any response with an empty body: results without data and every error status (§5). */
  public static int status(byte[] buf, int opcode, Status status, int key, long requestId) {
    return status(buf, 0, opcode, status, key, requestId);
  }

  /** A response with an empty body at {@code buf[off..)}; see the method above. */
  public static int status(byte[] buf, int off, int opcode, Status status, int key,
      long requestId) {
    Header.encodeResponse(buf, off, opcode, status, key, requestId, 0);
    return HEADER_BYTES;
  }

  /**
   * Rewrites the status of the response encoded at {@code buf[off..)}: a server that queued a
   * write's answer before the write's record was durable answers SERVER_ERROR instead when the
   * record fails (PROTOCOL.md §11.4).
   */
  public static void setStatus(byte[] buf, int off, Status status) {
    buf[off + OFF_FLAGS_OR_STATUS] = (byte) status.code();
  }

  /** §7.1 CHALLENGE from the Front Server: its nonce, first on every control connection. */
  public static int challenge(byte[] buf, long requestId, byte[] nonce) {
    Header.encodeRequest(buf, 0, Opcode.CHALLENGE, 0, 0, requestId, CHALLENGE_BODY_BYTES);
    putBytes(buf, HEADER_BYTES, nonce, NONCE_BYTES);
    return HEADER_BYTES + CHALLENGE_BODY_BYTES;
  }

  /**
   * §7.1 INIT request from the Data Server: its client port and pid, its own nonce, and the MAC
   * proving it holds the pair secret (computed by the caller).
   */
  public static int init(byte[] buf, long requestId, int clientPort, long pid, byte[] nonce,
      byte[] mac) {
    Header.encodeRequest(buf, 0, Opcode.INIT, 0, 0, requestId, INIT_REQUEST_BODY_BYTES);
    Header.putU16(buf, HEADER_BYTES, clientPort);
    Header.putU64(buf, HEADER_BYTES + 2, pid);
    putBytes(buf, HEADER_BYTES + 10, nonce, NONCE_BYTES);
    putBytes(buf, HEADER_BYTES + 10 + NONCE_BYTES, mac, MAC_BYTES);
    return HEADER_BYTES + INIT_REQUEST_BODY_BYTES;
  }

  /** §7.1 INIT OK response from the Front Server: its pid and its MAC. */
  public static int initOk(byte[] buf, long requestId, long frontPid, byte[] mac) {
    Header.encodeResponse(buf, 0, Opcode.INIT.code(), Status.OK, 0, requestId,
        INIT_RESPONSE_BODY_BYTES);
    Header.putU64(buf, HEADER_BYTES, frontPid);
    putBytes(buf, HEADER_BYTES + 8, mac, MAC_BYTES);
    return HEADER_BYTES + INIT_RESPONSE_BODY_BYTES;
  }

  private static void putBytes(byte[] buf, int off, byte[] bytes, int length) {
    if (bytes.length != length) {
      throw new IllegalArgumentException("expected " + length + " bytes, got " + bytes.length);
    }
    System.arraycopy(bytes, 0, buf, off, length);
  }

  /** §7.2 HEARTBEAT. */
  public static int heartbeat(byte[] buf, long requestId) {
    Header.encodeRequest(buf, 0, Opcode.HEARTBEAT, 0, 0, requestId, 0);
    return HEADER_BYTES;
  }

  /** §7.3 SHUTDOWN request. */
  public static int shutdown(byte[] buf, long requestId) {
    Header.encodeRequest(buf, 0, Opcode.SHUTDOWN, 0, 0, requestId, 0);
    return HEADER_BYTES;
  }

  /** §7.4 STATUS request from the Front Server. */
  public static int statusRequest(byte[] buf, long requestId) {
    Header.encodeRequest(buf, 0, Opcode.STATUS, 0, 0, requestId, 0);
    return HEADER_BYTES;
  }

  /** §6.7 STATS request. */
  public static int stats(byte[] buf, long requestId) {
    Header.encodeRequest(buf, 0, Opcode.STATS, 0, 0, requestId, 0);
    return HEADER_BYTES;
  }

  /**
   * §6.7 STATS OK, or §7.4 STATUS OK ({@code opcode}), at {@code buf[off..)}: the header and the
   * counters' body ({@link StatsBody}). {@code buf} needs {@code HEADER_BYTES +
   * STATS_MAX_BODY_BYTES} bytes from {@code off}.
   *
   * @throws IllegalArgumentException if a counter breaks a §6.7 rule or the body would exceed
   *     {@link Protocol#STATS_MAX_BODY_BYTES}
   */
  public static int statsOk(byte[] buf, int off, Opcode opcode, long requestId,
      java.util.Map<String, ?> counters) {
    int body = StatsBody.encode(counters, buf, off + HEADER_BYTES);
    Header.encodeResponse(buf, off, opcode.code(), Status.OK, 0, requestId, body);
    return HEADER_BYTES + body;
  }
}
