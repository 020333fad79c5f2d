package io.psiskv.client;

import static io.psiskv.client.Failures.protocolError;
import static io.psiskv.protocol.Protocol.GET_RESPONSE_PREFIX_BYTES;
import static io.psiskv.protocol.Protocol.HEADER_BYTES;

import io.psiskv.client.Failures.Unavailable;
import io.psiskv.protocol.Header;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Rules;
import io.psiskv.protocol.Status;
import java.io.IOException;

/**
 * Reads a response through a connection's receive buffer and checks it against its request
 * (PROTOCOL.md §8), with the codec's rules ({@link Rules}); the parsing itself is the codec's,
 * the bytes {@link ResponseReader}'s. Stateless: the caller owns the reader and the header.
 */
final class ResponseCheck {
  private ResponseCheck() {}

  /**
   * Reads and checks a response header (PROTOCOL.md §8), and for a response without a body that
   * nothing follows it ({@link #expectEnd}). Returns for a result status, with the body unread;
   * throws {@link Unavailable} for UNAVAILABLE (retried), {@link KvException} for any other error
   * status or a protocol violation (not retried), {@link IOException} if the connection breaks.
   */
  static void readResponse(ResponseReader in, Header h, Opcode op, int key, long id)
      throws IOException {
    readResponse(in, h, op, key, id, false);
  }

  /**
   * {@link #readResponse(ResponseReader, Header, Opcode, int, long)}; {@code pipelined}: more
   * requests may be in flight, so bytes after the response are the next one's, not unasked.
   */
  static void readResponse(ResponseReader in, Header h, Opcode op, int key, long id,
      boolean pipelined) throws IOException {
    h.decode(in.bytes(), in.take(HEADER_BYTES));
    String mismatch = Rules.checkResponse(h, op, key, id);
    if (mismatch != null) {
      throw protocolError(mismatch);
    }
    if (h.bodyLength == 0 && !pipelined) {
      expectEnd(in, op);
    }
    Status status = Status.of(h.flagsOrStatus);
    if (status == Status.UNAVAILABLE) {
      throw new Unavailable(op + " answered " + status + ": " + status.message());
    }
    if (Rules.isError(status)) {
      throw new KvRejectedException(status, op + " failed: " + status.message());
    }
  }

  /**
   * Reads the stored-length prefix of a GET OK body (header {@code h}) and checks the body length
   * against it and the {@code capacity} the request asked for.
   */
  static int readStoredLength(ResponseReader in, Header h, int capacity) throws IOException {
    int stored = Header.getU32(in.bytes(), in.take(GET_RESPONSE_PREFIX_BYTES));
    String mismatch = Rules.checkGetOkBody(h.bodyLength, capacity, stored);
    if (mismatch == null && stored < 0) {
      mismatch = "GET stored length " + Integer.toUnsignedString(stored) + " exceeds any value";
    }
    if (mismatch != null) {
      throw protocolError(mismatch);
    }
    return stored;
  }

  /**
   * The result of a PUT: §6.4 answers an overwriting PUT OK (or an error), never KEY_EXISTS
   * ("nothing changed"), which would be a protocol violation.
   */
  static Status checkPutResult(Status result, boolean overwrite) {
    if (overwrite && result == Status.KEY_EXISTS) {
      throw protocolError("KEY_EXISTS is not an answer to an overwriting PUT");
    }
    return result;
  }

  /**
   * Called once a response has been read to its end: nothing may follow it in the receive buffer.
   * A client with one request in flight hears nothing it did not ask for (PROTOCOL.md §2), so a
   * byte there is a protocol violation, and the connection is dropped as for any other. Bytes that
   * come after a response in a later segment are not in the buffer yet; they are read as the start
   * of the next response, whose header then does not match.
   */
  static void expectEnd(ResponseReader in, Opcode op) {
    if (in.unread() != 0) {
      throw protocolError(op + " response is followed by " + in.unread()
          + " bytes the client did not ask for");
    }
  }
}
