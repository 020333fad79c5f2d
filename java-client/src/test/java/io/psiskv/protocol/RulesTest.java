package io.psiskv.protocol;

import static com.google.common.truth.Truth.assertThat;
import static io.psiskv.protocol.Protocol.HEADER_BYTES;

import org.junit.jupiter.api.Test;

/**
 * The MUST rules of PROTOCOL.md §6 as {@link Rules#checkRequest} enforces them: the status and the
 * reason, which come from one test.
 */
class RulesTest {
  private static final int MAX = 1000;
  private final byte[] b = new byte[64];

  private Status check() {
    Rules.Rejection r = Rules.checkRequest(new Header().decode(b, 0), MAX);
    return r == null ? null : r.status();
  }

  private String reason() {
    return Rules.checkRequest(new Header().decode(b, 0), MAX).reason();
  }

  @Test
  void wellFormedRequestsPass() {
    Messages.putHeader(b, -1, 1, true, MAX);
    assertThat(check()).isNull();
    Messages.get(b, 0, 1, 0);
    assertThat(check()).isNull();
    Messages.session(b, 1, 0, null);
    assertThat(check()).isNull();
  }

  @Test
  void badMagicIsBadRequest() {
    Messages.ping(b, 1);
    b[0] = 'G';
    assertThat(check()).isEqualTo(Status.BAD_REQUEST);
    assertThat(reason()).isEqualTo("bad magic 0x47");
  }

  @Test
  void responseMagicInARequestIsBadRequest() {
    Messages.status(b, Opcode.PING.code(), Status.OK, 0, 1);
    assertThat(check()).isEqualTo(Status.BAD_REQUEST);
  }

  @Test
  void otherVersionsAreUnsupported() {
    for (int version : new int[] {1, 3}) { // Version 1 (before session secrets) and a future one.
      Messages.ping(b, 1);
      b[1] = (byte) version;
      assertThat(check()).isEqualTo(Status.UNSUPPORTED_VERSION);
      assertThat(reason()).isEqualTo("unsupported protocol version " + version);
    }
  }

  @Test
  void unknownOpcode() {
    Messages.ping(b, 1);
    b[2] = 0x7F;
    assertThat(check()).isEqualTo(Status.UNKNOWN_OPCODE);
    assertThat(reason()).isEqualTo("unknown opcode 0x7f");
  }

  @Test
  void putLongerThanMaximumIsTooLargeWhateverItClaims() {
    Messages.putHeader(b, 1, 1, false, MAX + 1);
    assertThat(check()).isEqualTo(Status.TOO_LARGE);
    assertThat(reason()).isEqualTo("PUT of 1001 bytes exceeds the maximum of 1000");
    Header.putU32(b, Protocol.OFF_BODY_LENGTH, 0xFFFFFFFF);
    assertThat(check()).isEqualTo(Status.TOO_LARGE);
  }

  @Test
  void undefinedFlagBitsAreBadRequest() {
    Messages.putHeader(b, 1, 1, false, 1);
    b[3] = 0x02;
    assertThat(check()).isEqualTo(Status.BAD_REQUEST);
    assertThat(reason()).isEqualTo("PUT with bad flags 0x02");
    Messages.get(b, 1, 1, 10);
    b[3] = 0x01;
    assertThat(check()).isEqualTo(Status.BAD_REQUEST);
  }

  @Test
  void wrongFixedBodyLengthIsBadRequest() {
    Messages.get(b, 1, 1, 10);
    Header.putU32(b, Protocol.OFF_BODY_LENGTH, 5);
    assertThat(check()).isEqualTo(Status.BAD_REQUEST);
    assertThat(reason()).isEqualTo("GET with body length 5, expected 4");
    Messages.delete(b, 1, 1);
    Header.putU32(b, Protocol.OFF_BODY_LENGTH, 0x7FFFFFFF);
    assertThat(check()).isEqualTo(Status.BAD_REQUEST);
  }

  @Test
  void keyOnAKeylessOperationIsBadRequest() {
    Messages.ping(b, 1);
    Header.putU32(b, Protocol.OFF_KEY, 9);
    assertThat(check()).isEqualTo(Status.BAD_REQUEST);
    assertThat(reason()).isEqualTo("PING with nonzero key 9");
  }

  @Test
  void responseChecksCatchEveryMismatch() {
    Messages.status(b, Opcode.GET.code(), Status.NOT_FOUND, 9, 7);
    Header h = new Header().decode(b, 0);
    assertThat(Rules.checkResponse(h, Opcode.GET, 9, 7)).isNull();
    assertThat(Rules.checkResponse(h, Opcode.DELETE, 9, 7)).contains("does not echo");
    assertThat(Rules.checkResponse(h, Opcode.GET, 9, 8)).contains("does not echo");
    assertThat(Rules.checkResponse(h, Opcode.GET, 10, 7)).contains("key 9 does not echo 10");
    b[3] = (byte) 0x99;
    assertThat(Rules.checkResponse(new Header().decode(b, 0), Opcode.GET, 9, 7))
        .contains("status");
    b[3] = (byte) Status.IO_ERROR.code();
    assertThat(Rules.checkResponse(new Header().decode(b, 0), Opcode.GET, 9, 7))
        .contains("unknown status 0xff");
    b[0] = 0x00;
    assertThat(Rules.checkResponse(new Header().decode(b, 0), Opcode.GET, 9, 7))
        .contains("magic");
    assertThat(HEADER_BYTES).isEqualTo(20);
  }

  @Test
  void responseKeyIsCompareUnsignedAndShownUnsigned() {
    Messages.status(b, Opcode.DELETE.code(), Status.OK, -1, 1);
    Header h = new Header().decode(b, 0);
    assertThat(Rules.checkResponse(h, Opcode.DELETE, -1, 1)).isNull();
    assertThat(Rules.checkResponse(h, Opcode.DELETE, 0, 1)).contains("4294967295");
  }

  @Test
  void controlResponsesHaveTheirFixedBodies() {
    Messages.status(b, Opcode.INIT.code(), Status.OK, 0, 3);
    assertThat(Rules.checkResponse(new Header().decode(b, 0), Opcode.INIT, 0, 3))
        .contains("body of 0 bytes");
    Messages.initOk(b, 3, 77, new byte[Protocol.MAC_BYTES]);
    assertThat(Rules.checkResponse(new Header().decode(b, 0), Opcode.INIT, 0, 3)).isNull();
    Messages.status(b, Opcode.STATUS.code(), Status.OK, 0, 4);
    assertThat(Rules.checkResponse(new Header().decode(b, 0), Opcode.STATUS, 0, 4))
        .contains("allowed 2 to 4096");
  }

  @Test
  void statsAnswersHaveABoundedCountersBody() {
    for (Opcode op : new Opcode[] {Opcode.STATS, Opcode.STATUS}) {
      Header.encodeResponse(b, 0, op.code(), Status.OK, 0, 5, Protocol.STATS_MIN_BODY_BYTES);
      assertThat(Rules.checkResponse(new Header().decode(b, 0), op, 0, 5)).isNull();
      Header.encodeResponse(b, 0, op.code(), Status.OK, 0, 5, Protocol.STATS_MAX_BODY_BYTES);
      assertThat(Rules.checkResponse(new Header().decode(b, 0), op, 0, 5)).isNull();
      Header.encodeResponse(b, 0, op.code(), Status.OK, 0, 5, Protocol.STATS_MAX_BODY_BYTES + 1);
      assertThat(Rules.checkResponse(new Header().decode(b, 0), op, 0, 5))
          .contains("allowed 2 to 4096");
    }
    // A STATS request is keyless with an empty body, like PING.
    Messages.stats(b, 6);
    assertThat(Rules.checkRequest(new Header().decode(b, 0), 100)).isNull();
  }

  @Test
  void resultStatusesAreAllowedOnlyForTheirOpcodes() {
    assertThat(answer(Opcode.PUT, Status.OK, 0)).isNull();
    assertThat(answer(Opcode.PUT, Status.KEY_EXISTS, 0)).isNull();
    assertThat(answer(Opcode.PUT, Status.NOT_FOUND, 0)).contains("not an answer to PUT");
    assertThat(answer(Opcode.GET, Status.NOT_FOUND, 0)).isNull();
    assertThat(answer(Opcode.GET, Status.KEY_EXISTS, 0)).contains("not an answer to GET");
    assertThat(answer(Opcode.DELETE, Status.OK, 0)).isNull();
    assertThat(answer(Opcode.DELETE, Status.NOT_FOUND, 0)).isNull();
    assertThat(answer(Opcode.DELETE, Status.KEY_EXISTS, 0)).contains("not an answer");
    assertThat(answer(Opcode.HELLO, Status.NOT_FOUND, 0)).contains("not an answer");
    assertThat(answer(Opcode.SESSION, Status.KEY_EXISTS, 0)).contains("not an answer");
    assertThat(answer(Opcode.HEARTBEAT, Status.OK, 0)).contains("never answered");
  }

  @Test
  void bodyLengthsFollowOpcodeAndStatus() {
    assertThat(answer(Opcode.PUT, Status.OK, 1)).contains("body of 1 bytes");
    assertThat(answer(Opcode.PUT, Status.KEY_EXISTS, 1)).contains("body of 1 bytes");
    assertThat(answer(Opcode.DELETE, Status.OK, 1)).contains("body");
    assertThat(answer(Opcode.GET, Status.NOT_FOUND, 4)).contains("body");
    assertThat(answer(Opcode.GET, Status.OK, 3)).contains("at least 4");
    assertThat(answer(Opcode.GET, Status.OK, 4)).isNull();
    assertThat(answer(Opcode.GET, Status.OK, 0xFFFFFFFFL)).isNull();
    assertThat(answer(Opcode.HELLO, Status.OK, 6)).isNull();
    assertThat(answer(Opcode.HELLO, Status.OK, 0)).contains("allowed 6");
    assertThat(answer(Opcode.SESSION, Status.OK, 28)).isNull();
    assertThat(answer(Opcode.SESSION, Status.OK, 12)).contains("allowed 28");
    assertThat(answer(Opcode.SESSION, Status.FORBIDDEN, 0)).isNull();
    assertThat(answer(Opcode.INIT, Status.OK, 40)).isNull();
    assertThat(answer(Opcode.PING, Status.OK, 0)).isNull();
    assertThat(answer(Opcode.PING, Status.OK, 1)).contains("body");
  }

  @Test
  void errorStatusesAnswerAnyOpcodeWithAnEmptyBodyOnly() {
    for (Status s : Status.values()) {
      if (s == Status.IO_ERROR || !Rules.isError(s)) {
        continue;
      }
      assertThat(answer(Opcode.PUT, s, 0)).isNull();
      assertThat(answer(Opcode.HELLO, s, 0)).isNull();
      assertThat(answer(Opcode.GET, s, 4)).contains("body of 4 bytes");
    }
  }

  @Test
  void getOkBodyMustBePrefixPlusWhatFitsTheCapacity() {
    assertThat(Rules.checkGetOkBody(4 + 5, 10, 5)).isNull();
    assertThat(Rules.checkGetOkBody(4 + 2, 2, 5)).isNull();
    assertThat(Rules.checkGetOkBody(4, 0, 5)).isNull();
    assertThat(Rules.checkGetOkBody(4 + 5, 2, 5)).contains("does not match");
    assertThat(Rules.checkGetOkBody(4 + 1, 10, 5)).contains("does not match");
    // Unsigned: a capacity of 0xFFFFFFFF takes the whole value.
    assertThat(Rules.checkGetOkBody(4 + 7, -1, 7)).isNull();
    assertThat(Rules.checkGetOkBody(4 + 0xFFFFFFFFL, -1, -1)).isNull();
  }

  /** Checks a response header of {@code op} with {@code status} and body length, key 3, id 1. */
  private String answer(Opcode op, Status status, long bodyLength) {
    Header.encodeResponse(b, 0, op.code(), status, 3, 1, bodyLength);
    return Rules.checkResponse(new Header().decode(b, 0), op, 3, 1);
  }
}
