package io.psiskv.protocol;

import static io.psiskv.protocol.Protocol.*;

/**
 * The MUST rules of PROTOCOL.md §6 and §7 for a request header, in one place. A server decodes a
 * header, asks {@link #checkRequest}, and answers with the returned status when it is not {@code
 * null}; the check never looks at a body, so the server allocates nothing a peer merely claims
 * before it passes.
 */
public final class Rules {
  private Rules() {}

  /**
   * Checks a decoded request header.
   *
   * @param maxValueBytes the server's maximum value length (§9)
   * @return {@code null} if the header obeys every rule, else the status to answer with. After any
   *     non-null status the server closes the connection (§8).
   */
  public static Status checkRequest(Header h, int maxValueBytes) {
    if (h.magic != REQUEST_MAGIC) {
      return Status.BAD_REQUEST;
    }
    if (h.version != VERSION) {
      return Status.UNSUPPORTED_VERSION;
    }
    Opcode op = Opcode.of(h.opcode);
    if (op == null) {
      return Status.UNKNOWN_OPCODE;
    }
    if (h.flagsOrStatus != 0 && !(op == Opcode.PUT && h.flagsOrStatus == FLAG_OVERWRITE)) {
      return Status.BAD_REQUEST;
    }
    if (op == Opcode.PUT) {
      return h.bodyLength > maxValueBytes ? Status.TOO_LARGE : null;
    }
    if (!usesKey(op) && h.key != 0) {
      return Status.BAD_REQUEST;
    }
    return h.bodyLength == requestBodyBytes(op) ? null : Status.BAD_REQUEST;
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
      default:
        return 0;
    }
  }

  /**
   * Checks a response header against the request it answers: magic, version, echoed opcode and
   * request id. Returns a description of the first mismatch, or {@code null} if it matches.
   */
  public static String checkResponse(Header h, Opcode expected, long requestId) {
    if (h.magic != RESPONSE_MAGIC) {
      return String.format("bad response magic 0x%02x", h.magic & 0xFF);
    }
    if (h.version != VERSION) {
      return "unsupported response version " + (h.version & 0xFF);
    }
    if (h.opcode != expected.code()) {
      return "response opcode 0x" + Integer.toHexString(h.opcode) + " does not echo " + expected;
    }
    if (Status.of(h.flagsOrStatus) == null) {
      return "unknown status 0x" + Integer.toHexString(h.flagsOrStatus);
    }
    if (h.requestId != requestId) {
      return "response id " + h.requestId + " does not echo " + requestId;
    }
    return null;
  }
}
