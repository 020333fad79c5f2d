package io.psiskv.server.data;

import static com.google.common.truth.Truth.assertThat;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Status;
import io.psiskv.server.testkit.RawClient;
import io.psiskv.server.testkit.ServerFixture;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/** The three thread policies of the Data Server (see {@link DataTransport}). */
@Tag("process")
class ThreadPolicyTest {
  private static final int POOL_THREADS = 2;
  /** How long a client that must wait is given to (wrongly) get an answer. */
  private static final int NO_ANSWER_MILLIS = 500;

  @RegisterExtension
  final ServerFixture pooled =
      ServerFixture.builder().threads("pool:" + POOL_THREADS).manualStart().build();

  @RegisterExtension
  final ServerFixture onDemand = ServerFixture.builder().threads("on-demand").manualStart().build();

  @RegisterExtension
  final ServerFixture pooledWithIdleTimeout = ServerFixture.builder().threads("pool:1")
      .args("--pool-idle-timeout-ms", "300").manualStart().build();

  @RegisterExtension
  final ServerFixture eventLoop =
      ServerFixture.builder().threads("event-loop:1").manualStart().build();

  @Test
  void poolServesAtMostNClientsAndTheNextWaitsUntilOneCloses() throws Exception {
    pooled.start();
    List<RawClient> served = new ArrayList<>();
    for (int i = 0; i < POOL_THREADS; i++) {
      served.add(RawClient.session(pooled));
    }
    try (RawClient waiting = RawClient.data(pooled)) {
      byte[] buf = new byte[Messages.MAX_FIXED_BYTES];
      int n = Messages.session(buf, 77, 0, null);
      waiting.send(Arrays.copyOf(buf, n)); // Connected (backlog) but not served: no answer.
      waiting.setReadTimeoutMillis(NO_ANSWER_MILLIS);
      assertThrows(SocketTimeoutException.class, waiting::read);

      for (RawClient c : served) {
        assertThat(c.ping().status()).isEqualTo(Status.OK); // The served ones are fine.
      }
      served.remove(0).close(); // Frees one pool thread, which accepts the waiting client.

      waiting.setReadTimeoutMillis(RawClient.READ_TIMEOUT_MILLIS);
      RawClient.Response r = waiting.readChecked(Opcode.SESSION, 77);
      assertThat(r.status()).isEqualTo(Status.OK);
      byte[] v = "pooled".getBytes(StandardCharsets.UTF_8);
      assertThat(waiting.put(1, v, false)).isEqualTo(Status.OK);
      assertThat(served.get(0).getValue(1)).isEqualTo(v);
    } finally {
      for (RawClient c : served) {
        c.close();
      }
    }
    pooled.stop();
  }

  @Test
  void aPoolThreadIsFreedFromAnIdleSessionAndItsClientRidesThrough() throws Exception {
    pooledWithIdleTimeout.start();
    ServerFixture server = pooledWithIdleTimeout;
    try (io.psiskv.client.KvClient idle =
        io.psiskv.client.KvClient.connect(server.host(), server.port())) {
      idle.put(1, "first".getBytes(StandardCharsets.UTF_8));
      // The only pool thread is idle with `idle`; after 300 ms it closes it and serves this one.
      try (RawClient next = RawClient.session(server)) {
        assertThat(next.getValue(1)).isEqualTo("first".getBytes(StandardCharsets.UTF_8));
      }
      // The idle client's connection was closed under it: its next call reconnects, resumes.
      idle.put(2, "second".getBytes(StandardCharsets.UTF_8));
      assertThat(idle.get(2).orElseThrow()).isEqualTo("second".getBytes(StandardCharsets.UTF_8));
    }
    server.stop();
  }

  @Test
  void oneEventLoopServesAHundredSimultaneousConnections() throws Exception {
    eventLoop.start();
    servesAHundredSimultaneousConnections(eventLoop);
    eventLoop.stop();
  }

  @Test
  void onDemandServesAHundredSimultaneousConnections() throws Exception {
    onDemand.start();
    servesAHundredSimultaneousConnections(onDemand);
    onDemand.stop();
  }

  private static void servesAHundredSimultaneousConnections(ServerFixture server)
      throws Exception {
    List<RawClient> clients = new ArrayList<>();
    try {
      for (int i = 0; i < 100; i++) {
        clients.add(RawClient.session(server)); // All stay open.
      }
      for (int i = 0; i < clients.size(); i++) {
        byte[] v = ("client " + i).getBytes(StandardCharsets.UTF_8);
        assertThat(clients.get(i).put(i, v, false)).isEqualTo(Status.OK);
      }
      for (int i = 0; i < clients.size(); i++) {
        RawClient reader = clients.get((i + 1) % clients.size());
        assertThat(reader.getValue(i)).isEqualTo(("client " + i).getBytes(StandardCharsets.UTF_8));
      }
    } finally {
      for (RawClient c : clients) {
        c.close();
      }
    }
  }
}
