package io.psiskv.protocol;

import static com.google.common.truth.Truth.assertThat;
import static io.psiskv.protocol.Protocol.HEADER_BYTES;

import org.junit.jupiter.api.Test;

/** The MUST rules of PROTOCOL.md §6 as {@link Rules#checkRequest} enforces them. */
class RulesTest {
  private static final int MAX = 1000;
  private final byte[] b = new byte[64];

  private Status check() {
    return Rules.checkRequest(new Header().decode(b, 0), MAX);
  }

  @Test
  void wellFormedRequestsPass() {
    Messages.putHeader(b, -1, 1, true, MAX);
    assertThat(check()).isNull();
    Messages.get(b, 0, 1, 0);
    assertThat(check()).isNull();
    Messages.session(b, 1, 0);
    assertThat(check()).isNull();
  }

  @Test
  void badMagicIsBadRequest() {
    Messages.ping(b, 1);
    b[0] = 'G';
    assertThat(check()).isEqualTo(Status.BAD_REQUEST);
  }

  @Test
  void responseMagicInARequestIsBadRequest() {
    Messages.status(b, Opcode.PING.code(), Status.OK, 0, 1);
    assertThat(check()).isEqualTo(Status.BAD_REQUEST);
  }

  @Test
  void futureVersionIsUnsupported() {
    Messages.ping(b, 1);
    b[1] = 2;
    assertThat(check()).isEqualTo(Status.UNSUPPORTED_VERSION);
  }

  @Test
  void unknownOpcode() {
    Messages.ping(b, 1);
    b[2] = 0x7F;
    assertThat(check()).isEqualTo(Status.UNKNOWN_OPCODE);
  }

  @Test
  void putLongerThanMaximumIsTooLargeWhateverItClaims() {
    Messages.putHeader(b, 1, 1, false, MAX + 1);
    assertThat(check()).isEqualTo(Status.TOO_LARGE);
    Header.putU32(b, Protocol.OFF_BODY_LENGTH, 0xFFFFFFFF);
    assertThat(check()).isEqualTo(Status.TOO_LARGE);
  }

  @Test
  void undefinedFlagBitsAreBadRequest() {
    Messages.putHeader(b, 1, 1, false, 1);
    b[3] = 0x02;
    assertThat(check()).isEqualTo(Status.BAD_REQUEST);
    Messages.get(b, 1, 1, 10);
    b[3] = 0x01;
    assertThat(check()).isEqualTo(Status.BAD_REQUEST);
  }

  @Test
  void wrongFixedBodyLengthIsBadRequest() {
    Messages.get(b, 1, 1, 10);
    Header.putU32(b, Protocol.OFF_BODY_LENGTH, 5);
    assertThat(check()).isEqualTo(Status.BAD_REQUEST);
    Messages.delete(b, 1, 1);
    Header.putU32(b, Protocol.OFF_BODY_LENGTH, 0x7FFFFFFF);
    assertThat(check()).isEqualTo(Status.BAD_REQUEST);
  }

  @Test
  void keyOnAKeylessOperationIsBadRequest() {
    Messages.ping(b, 1);
    Header.putU32(b, Protocol.OFF_KEY, 9);
    assertThat(check()).isEqualTo(Status.BAD_REQUEST);
  }

  @Test
  void responseChecksCatchEveryMismatch() {
    Messages.status(b, Opcode.GET.code(), Status.OK, 0, 7);
    Header h = new Header().decode(b, 0);
    assertThat(Rules.checkResponse(h, Opcode.GET, 7)).isNull();
    assertThat(Rules.checkResponse(h, Opcode.PUT, 7)).contains("does not echo");
    assertThat(Rules.checkResponse(h, Opcode.GET, 8)).contains("does not echo");
    b[3] = (byte) 0x99;
    assertThat(Rules.checkResponse(new Header().decode(b, 0), Opcode.GET, 7)).contains("status");
    assertThat(HEADER_BYTES).isEqualTo(20);
  }
}
