package io.psiskv.protocol;

import static io.psiskv.protocol.Protocol.*;

/**
 * The MUST rules of PROTOCOL.md §6 and §7 for a request header, and the §8 rules for a response,
 * in one place. A server decodes a header, asks {@link #checkRequest}, and answers with the
 * status of the returned {@link Rejection} when there is one (logging its reason); the check never
 * looks at a body, so the server allocates nothing a peer merely claims before it passes. A client asks {@link
 * #checkResponse(Header, Opcode, int, long)} of every response header before it reads the body,
 * for the same reason.
 */
public final class Rules {
  private Rules() {}

  /**
   * Why a request header breaks a rule: the status to answer with and the log text that names the
   * rule of PROTOCOL.md it broke. Both come from the same test, so the answer and the log line
   * always agree.
   */
  public record Rejection(Status status, String reason) {}

  /**
   * Checks a decoded request header.
   *
   * @param maxValueBytes the server's maximum value length (§9)
   * @return {@code null} if the header obeys every rule, else the status to answer with and why.
   *     After any rejection the server closes the connection (§8). A header that passes allocates
   *     nothing.
   */
  public static Rejection checkRequest(Header h, int maxValueBytes) {
    if (h.magic != REQUEST_MAGIC) {
      return badRequest(String.format("bad magic 0x%02x", h.magic & 0xFF));
    }
    if (h.version != VERSION) {
      return new Rejection(
          Status.UNSUPPORTED_VERSION, "unsupported protocol version " + (h.version & 0xFF));
    }
    Opcode op = Opcode.of(h.opcode);
    if (op == null) {
      return new Rejection(Status.UNKNOWN_OPCODE, String.format("unknown opcode 0x%02x", h.opcode));
    }
    if (h.flagsOrStatus != 0 && !(op == Opcode.PUT && h.flagsOrStatus == FLAG_OVERWRITE)) {
      return badRequest(String.format("%s with bad flags 0x%02x", op, h.flagsOrStatus));
    }
    if (op == Opcode.PUT) {
      return h.bodyLength <= maxValueBytes
          ? null
          : new Rejection(Status.TOO_LARGE,
              "PUT of " + h.bodyLength + " bytes exceeds the maximum of " + maxValueBytes);
    }
    if (!usesKey(op) && h.key != 0) {
      return badRequest(op + " with nonzero key " + Integer.toUnsignedString(h.key));
    }
    long expected = requestBodyBytes(op);
    return h.bodyLength == expected
        ? null
        : badRequest(op + " with body length " + h.bodyLength + ", expected " + expected);
  }

  private static Rejection badRequest(String reason) {
    return new Rejection(Status.BAD_REQUEST, reason);
  }

  /** Whether the key field of a request with this opcode is meaningful (else it MUST be 0). */
  public static boolean usesKey(Opcode op) {
    return op == Opcode.PUT || op == Opcode.GET || op == Opcode.DELETE;
  }

  /** The exact body length of a request with this opcode; PUT has a variable body (-1). */
  public static long requestBodyBytes(Opcode op) {
    switch (op) {
      case PUT:
        return -1;
      case GET:
        return GET_REQUEST_BODY_BYTES;
      case SESSION:
        return SESSION_REQUEST_BODY_BYTES;
      case INIT:
        return INIT_REQUEST_BODY_BYTES;
      case CHALLENGE:
        return CHALLENGE_BODY_BYTES;
      default:
        return 0;
    }
  }

  /**
   * Checks a response header against the request it answers (PROTOCOL.md §3.1, §5, §8): magic,
   * version, echoed opcode, key and request id, a known status, a status this opcode may answer,
   * and a body length allowed for that status. A client that gets a non-null answer treats the
   * connection as broken (a protocol violation: not retried, §12.1).
   *
   * <p>The allowed answers: any error status ({@code 0x10} and up) with an empty body; OK to every
   * answered opcode, with the fixed body of §4 (HELLO 6, SESSION 28, INIT 40 bytes, else empty),
   * for GET at least the 4-byte stored length (the exact length needs the capacity and the stored
   * length: {@link #checkGetOkBody}), and for STATS and STATUS a counters body of 2 to {@value
   * Protocol#STATS_MAX_BODY_BYTES} bytes (its content: {@link StatsBody#decode}); KEY_EXISTS only
   * to PUT and NOT_FOUND only to GET and DELETE, both with an empty body. HEARTBEAT is never answered, so no response to it is allowed.
   *
   * @param key the request's key (0 for keyless opcodes)
   * @return a description of the first mismatch, or {@code null} if the response is allowed
   */
  public static String checkResponse(Header h, Opcode expected, int key, long requestId) {
    if (h.magic != RESPONSE_MAGIC) {
      return String.format("bad response magic 0x%02x", h.magic & 0xFF);
    }
    if (h.version != VERSION) {
      return "unsupported response version " + (h.version & 0xFF);
    }
    if (h.opcode != expected.code()) {
      return "response opcode 0x" + Integer.toHexString(h.opcode) + " does not echo " + expected;
    }
    Status known = Status.of(h.flagsOrStatus);
    if (known == null || known == Status.IO_ERROR) {
      // 0xFF (IO_ERROR) is reserved for the Java client's own use and never sent (§5).
      return "unknown status 0x" + Integer.toHexString(h.flagsOrStatus);
    }
    if (h.requestId != requestId) {
      return "response id " + h.requestId + " does not echo " + requestId;
    }
    if (h.key != key) {
      return "response key " + Integer.toUnsignedString(h.key) + " does not echo "
          + Integer.toUnsignedString(key);
    }
    Status status = Status.of(h.flagsOrStatus);
    if (expected == Opcode.HEARTBEAT || expected == Opcode.CHALLENGE) {
      return expected + " is never answered, got " + status;
    }
    if (status != Status.OK) {
      boolean allowed = isError(status)
          || (status == Status.KEY_EXISTS && expected == Opcode.PUT)
          || (status == Status.NOT_FOUND
              && (expected == Opcode.GET || expected == Opcode.DELETE));
      if (!allowed) {
        return status + " is not an answer to " + expected;
      }
      return h.bodyLength == 0 ? null : bodyMismatch(h, status, expected, "0");
    }
    if (expected == Opcode.GET) {
      return h.bodyLength >= GET_RESPONSE_PREFIX_BYTES
          ? null : bodyMismatch(h, status, expected, "at least " + GET_RESPONSE_PREFIX_BYTES);
    }
    if (expected == Opcode.STATS || expected == Opcode.STATUS) {
      return h.bodyLength >= STATS_MIN_BODY_BYTES && h.bodyLength <= STATS_MAX_BODY_BYTES
          ? null : bodyMismatch(h, status, expected,
              STATS_MIN_BODY_BYTES + " to " + STATS_MAX_BODY_BYTES);
    }
    long okBody = okResponseBodyBytes(expected);
    return h.bodyLength == okBody ? null : bodyMismatch(h, status, expected, "" + okBody);
  }

  /**
   * Checks the body length of a GET OK response once its stored-length prefix is read (§6.5): it
   * must be {@code 4 + min(capacity, storedLength)}, all unsigned 32-bit. Returns a description of
   * the mismatch, or {@code null}.
   */
  public static String checkGetOkBody(long bodyLength, int capacity, int storedLength) {
    long sent = Math.min(Integer.toUnsignedLong(capacity), Integer.toUnsignedLong(storedLength));
    if (bodyLength == GET_RESPONSE_PREFIX_BYTES + sent) {
      return null;
    }
    return "GET response body of " + bodyLength + " bytes does not match stored length "
        + Integer.toUnsignedString(storedLength) + " and capacity "
        + Integer.toUnsignedString(capacity);
  }

  /** Whether a status is an error (§5: {@code 0x10} and up) rather than a result. */
  public static boolean isError(Status status) {
    return status.code() >= Status.BAD_REQUEST.code();
  }

  /** §4: the body length of an OK response to an opcode whose OK body is fixed. */
  private static long okResponseBodyBytes(Opcode op) {
    switch (op) {
      case HELLO:
        return HELLO_RESPONSE_BODY_BYTES;
      case SESSION:
        return SESSION_RESPONSE_BODY_BYTES;
      case INIT:
        return INIT_RESPONSE_BODY_BYTES;
      default:
        return 0;
    }
  }

  private static String bodyMismatch(Header h, Status status, Opcode op, String allowed) {
    return status + " answer to " + op + " has a body of " + h.bodyLength + " bytes, allowed "
        + allowed;
  }
}
