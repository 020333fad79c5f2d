package io.psiskv.server.front;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;

import io.psiskv.protocol.Status;
import io.psiskv.server.testkit.FrontLog;
import io.psiskv.server.testkit.Poll;
import io.psiskv.server.testkit.RawClient;
import io.psiskv.server.testkit.ServerFixture;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The front's connection cap (here 8, with timeouts far beyond the test so that only the cap
 * closes anything): a new connection at the cap evicts the oldest incomplete one and is served,
 * so silent connections never lock a client out, and the evictions are one summary line.
 */
@Tag("process")
class FrontCapTest {
  private static final int CAP = 8;
  private static final int LONG_MILLIS = 600_000;
  private static final Duration TIMEOUT = Duration.ofSeconds(20);

  @RegisterExtension
  final ServerFixture server = ServerFixture.builder()
      .jvmArgs(FrontLog.maxConnectionsArg(CAP), FrontLog.requestDeadlineArg(LONG_MILLIS),
          FrontLog.idleTimeoutArg(LONG_MILLIS), FrontLog.summaryIntervalArg(500))
      .build();

  @Test
  void atTheCapTheOldestIncompleteConnectionMakesRoomForANewClient() throws IOException {
    List<RawClient> open = new ArrayList<>();
    try {
      List<RawClient> silent = new ArrayList<>();
      for (int i = 0; i < CAP; i++) {
        silent.add(RawClient.front(server));
      }
      open.addAll(silent);
      // One more: the front accepts in arrival order, so silent.get(0) is the oldest.
      RawClient client = RawClient.front(server);
      open.add(client);
      assertThat(client.hello().status()).isEqualTo(Status.OK);
      assertWithMessage("the oldest silent connection is evicted")
          .that(silent.get(0).closedByPeer()).isTrue();
      for (RawClient c : silent.subList(1, CAP)) {
        assertWithMessage("a newer one is still served").that(c.ping().status())
            .isEqualTo(Status.OK);
      }

      // A flood of silent connections at the cap: each evicts one, and a client after it is
      // still served.
      int flood = 3 * CAP;
      for (int i = 0; i < flood; i++) {
        open.add(RawClient.front(server));
      }
      RawClient last = RawClient.front(server);
      open.add(last);
      assertThat(last.hello().status()).isEqualTo(Status.OK);

      // Every connection beyond the cap evicted exactly one, all in the summary.
      long expected = open.size() - CAP;
      Poll.require(TIMEOUT, () -> FrontLog.total(server.log(), "evicted at the cap of " + CAP)
          == expected, () -> "expected " + expected + " evictions; summary lines: "
              + FrontLog.summaries(server.log()));
      assertThat(server.log()).contains("at most " + CAP + " open");
      for (RawClient c : open) {
        assertThat(server.log()).doesNotContain("front connection " + c.localAddress() + ": ");
      }
    } finally {
      for (RawClient c : open) {
        c.close();
      }
    }
  }
}
