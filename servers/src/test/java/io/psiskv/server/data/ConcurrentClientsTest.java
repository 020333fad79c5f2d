package io.psiskv.server.data;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;

import io.psiskv.protocol.Status;
import io.psiskv.server.testkit.RawClient;
import io.psiskv.server.testkit.ServerFixture;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/** Many clients at once over the wire: verified mixed operations and the putIfAbsent race. */
@Tag("process")
@Tag("server-pair")
class ConcurrentClientsTest {
  @RegisterExtension static final ServerFixture server = ServerFixture.builder().build();

  private final ExecutorService pool = Executors.newCachedThreadPool();

  @AfterEach
  void shutdownPool() throws InterruptedException {
    pool.shutdownNow();
    assertThat(pool.awaitTermination(30, TimeUnit.SECONDS)).isTrue();
  }

  @AfterAll
  static void stopsCleanly() {
    server.stop();
  }

  private static byte[] value(int key, int version, int length) {
    ByteBuffer b = ByteBuffer.allocate(Math.max(8, length));
    b.putInt(key).putInt(version);
    return b.array();
  }

  @Test
  void sixtyFourClientsDoMixedOperationsWithVerifiedResults() throws Exception {
    int clients = 64;
    int opsPerClient = 600;
    runClients(clients, c -> {
      SplittableRandom random = new SplittableRandom(c);
      Map<Integer, byte[]> model = new HashMap<>();
      int base = 0x4000_0000 + c * 10_000; // Each client owns its keys: results are exact.
      try (RawClient client = RawClient.session(server)) {
        for (int i = 0; i < opsPerClient; i++) {
          int key = base + random.nextInt(50);
          byte[] v = value(key, i, random.nextInt(2_000));
          switch (random.nextInt(4)) {
            case 0:
              assertThat(client.put(key, v, false))
                  .isEqualTo(model.containsKey(key) ? Status.KEY_EXISTS : Status.OK);
              model.putIfAbsent(key, v);
              break;
            case 1:
              assertThat(client.put(key, v, true)).isEqualTo(Status.OK);
              model.put(key, v);
              break;
            case 2:
              assertThat(client.delete(key))
                  .isEqualTo(model.remove(key) != null ? Status.OK : Status.NOT_FOUND);
              break;
            default:
              assertThat(client.getValue(key)).isEqualTo(model.get(key));
          }
        }
        for (Map.Entry<Integer, byte[]> e : model.entrySet()) {
          assertThat(client.getValue(e.getKey())).isEqualTo(e.getValue());
        }
      }
    });
  }

  @Test
  void exactlyOneOfManyClientsRacingOnANewKeyWins() throws Exception {
    int clients = 24;
    int rounds = 20;
    List<RawClient> connections = new ArrayList<>();
    try {
      for (int c = 0; c < clients; c++) {
        connections.add(RawClient.session(server));
      }
      for (int round = 0; round < rounds; round++) {
        int key = 0x7000_0000 + round;
        CyclicBarrier start = new CyclicBarrier(clients);
        List<Future<Status>> results = new ArrayList<>();
        for (int c = 0; c < clients; c++) {
          RawClient client = connections.get(c);
          byte[] v = value(key, c, 8);
          results.add(pool.submit(() -> {
            start.await();
            return client.put(key, v, false);
          }));
        }
        int winner = -1;
        for (int c = 0; c < clients; c++) {
          Status s = results.get(c).get(60, TimeUnit.SECONDS);
          if (s == Status.OK) {
            assertWithMessage("second winner for key %s", key).that(winner).isEqualTo(-1);
            winner = c;
          } else {
            assertThat(s).isEqualTo(Status.KEY_EXISTS);
          }
        }
        assertWithMessage("a winner for key %s", key).that(winner).isAtLeast(0);
        byte[] stored = connections.get(0).getValue(key);
        assertThat(ByteBuffer.wrap(stored).getInt(4)).isEqualTo(winner);
      }
    } finally {
      for (RawClient c : connections) {
        c.close();
      }
    }
  }

  private interface ClientBody {
    void run(int client) throws Exception;
  }

  private void runClients(int n, ClientBody body) throws Exception {
    CyclicBarrier start = new CyclicBarrier(n);
    List<Future<?>> futures = new ArrayList<>();
    for (int c = 0; c < n; c++) {
      int client = c;
      futures.add(pool.submit(() -> {
        start.await();
        body.run(client);
        return null;
      }));
    }
    for (Future<?> f : futures) {
      f.get(90, TimeUnit.SECONDS);
    }
  }
}
