package io.psiskv.clients;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;
import static java.nio.charset.StandardCharsets.UTF_8;

import io.psiskv.client.KvClient;
import io.psiskv.server.testkit.ServerFixture;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The behaviour of the C API's five calls, run against real servers through both clients: {@code
 * libpsiskv.so} via JNA and the Java client mapped onto the same return codes. Subclasses supply
 * the server pair (one per thread policy). Each test uses its own keys, so tests of one class can
 * share a server.
 */
@Tag("process")
abstract class ClientBehaviourSuite {
  /** Servers of this suite accept values up to this size (set by the subclasses' fixtures). */
  static final int MAX_VALUE_BYTES = 16 * 1024 * 1024;
  static final String MAX_VALUE_OPTION = Integer.toString(MAX_VALUE_BYTES);

  private static final AtomicInteger NEXT_KEY_BLOCK = new AtomicInteger(1);

  abstract ServerFixture server();

  /** A fresh block of 2^16 keys for one test and client, so tests never see each other's data. */
  static int keys() {
    return NEXT_KEY_BLOCK.getAndIncrement() << 16;
  }

  KvApi connect(Client client) {
    return client.connect(server().host(), server().port())
        .orElseThrow(() -> new AssertionError(client + " could not connect"));
  }

  static byte[] bytes(String s) {
    return s.getBytes(UTF_8);
  }

  static byte[] read(KvApi kv, int key, int capacity) {
    byte[] buf = new byte[capacity];
    int n = kv.read(key, buf, capacity);
    assertWithMessage("read of key %s", Integer.toUnsignedString(key)).that(n).isAtLeast(0);
    return Arrays.copyOf(buf, Math.min(n, capacity));
  }

  @ParameterizedTest
  @EnumSource(Client.class)
  void everyReturnCodeOfWriteReadAndDelete(Client client) {
    int k = keys();
    try (KvApi kv = connect(client)) {
      assertThat(kv.read(k, new byte[8], 8)).isEqualTo(-2);
      assertThat(kv.write(k, bytes("first"), false)).isEqualTo(0);
      assertThat(kv.write(k, bytes("second"), false)).isEqualTo(-2);
      assertThat(read(kv, k, 100)).isEqualTo(bytes("first"));
      assertThat(kv.write(k, bytes("third!"), true)).isEqualTo(0);
      assertThat(read(kv, k, 100)).isEqualTo(bytes("third!"));
      assertThat(kv.delete(k)).isEqualTo(0);
      assertThat(kv.delete(k)).isEqualTo(-1);
      assertThat(kv.read(k, new byte[8], 8)).isEqualTo(-2);
      assertThat(kv.write(k, bytes("again"), false)).isEqualTo(0);
      assertThat(read(kv, k, 100)).isEqualTo(bytes("again"));
      assertThat(kv.write(k + 1, bytes("x"), true)).isEqualTo(0);
    }
  }

  @ParameterizedTest
  @EnumSource(Client.class)
  void shortReadReturnsStoredLengthAndCopiesOnlyTheBuffer(Client client) {
    int k = keys();
    try (KvApi kv = connect(client)) {
      assertThat(kv.write(k, bytes("0123456789"), false)).isEqualTo(0);
      byte[] buf = new byte[16];
      Arrays.fill(buf, (byte) 0x7E);
      assertThat(kv.read(k, buf, 4)).isEqualTo(10);
      assertThat(Arrays.copyOf(buf, 4)).isEqualTo(bytes("0123"));
      for (int i = 4; i < buf.length; i++) {
        assertWithMessage("byte %s past the length", i).that(buf[i]).isEqualTo((byte) 0x7E);
      }
      assertThat(kv.read(k, null, 0)).isEqualTo(10);
      assertThat(read(kv, k, 10)).isEqualTo(bytes("0123456789"));
    }
  }

  @ParameterizedTest
  @EnumSource(Client.class)
  void emptyValueIsStoredAndDistinctFromAbsent(Client client) {
    int k = keys();
    try (KvApi kv = connect(client)) {
      assertThat(kv.write(k, new byte[0], false)).isEqualTo(0);
      assertThat(kv.read(k, new byte[4], 4)).isEqualTo(0);
      assertThat(kv.write(k, new byte[0], false)).isEqualTo(-2);
      assertThat(kv.delete(k)).isEqualTo(0);
      assertThat(kv.read(k, new byte[4], 4)).isEqualTo(-2);
    }
  }

  @ParameterizedTest
  @EnumSource(Client.class)
  void binaryValueWithEveryByteValueRoundTrips(Client client) {
    int k = keys();
    byte[] value = new byte[1024];
    for (int i = 0; i < value.length; i++) {
      value[i] = (byte) (i * 7);
    }
    try (KvApi kv = connect(client)) {
      assertThat(kv.write(k, value, false)).isEqualTo(0);
      assertThat(read(kv, k, 2048)).isEqualTo(value);
    }
  }

  @ParameterizedTest
  @EnumSource(Client.class)
  void extremeKeysAreDistinct(Client client) {
    int[] extremes = {0, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF};
    try (KvApi kv = connect(client)) {
      for (int key : extremes) {
        kv.delete(key);
      }
      for (int key : extremes) {
        assertThat(kv.write(key, bytes(client + ":" + Integer.toUnsignedString(key)), false))
            .isEqualTo(0);
      }
      for (int key : extremes) {
        assertThat(read(kv, key, 64)).isEqualTo(bytes(client + ":" + Integer.toUnsignedString(key)));
        assertThat(kv.delete(key)).isEqualTo(0);
      }
    }
  }

  @ParameterizedTest
  @EnumSource(Client.class)
  void eightMebibyteValueRoundTrips(Client client) {
    int k = keys();
    byte[] value = new byte[8 * 1024 * 1024];
    for (int i = 0; i < value.length; i++) {
      value[i] = (byte) (i ^ (i >>> 11));
    }
    try (KvApi kv = connect(client)) {
      assertThat(kv.write(k, value, false)).isEqualTo(0);
      assertThat(read(kv, k, value.length)).isEqualTo(value);
      assertThat(kv.read(k, new byte[3], 3)).isEqualTo(value.length);
    }
  }

  @ParameterizedTest
  @EnumSource(Client.class)
  void valueOverTheServerMaximumFailsAndTheConnectionStillWorks(Client client) {
    int k = keys();
    try (KvApi kv = connect(client)) {
      assertThat(kv.write(k, new byte[MAX_VALUE_BYTES + 1], true)).isEqualTo(-1);
      assertThat(kv.write(k, bytes("fits"), false)).isEqualTo(0);
      assertThat(read(kv, k, 8)).isEqualTo(bytes("fits"));
    }
  }

  @ParameterizedTest
  @EnumSource(Client.class)
  void connectToAClosedPortFails(Client client) throws Exception {
    int port;
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort();
    }
    assertThat(client.connect("127.0.0.1", port)).isEmpty();
  }

  @ParameterizedTest
  @EnumSource(Client.class)
  void putIfAbsentRaceHasExactlyOneWinner(Client client) throws Exception {
    int k = keys();
    int racers = 16;
    ExecutorService pool = Executors.newFixedThreadPool(racers);
    try {
      List<KvApi> conns = new ArrayList<>();
      for (int i = 0; i < racers; i++) {
        conns.add(connect(client));
      }
      CountDownLatch go = new CountDownLatch(1);
      List<Future<Integer>> results = new ArrayList<>();
      for (int i = 0; i < racers; i++) {
        KvApi kv = conns.get(i);
        byte[] mine = bytes("racer-" + i);
        results.add(pool.submit(() -> {
          go.await();
          return kv.write(k, mine, false);
        }));
      }
      go.countDown();
      int winner = -1;
      for (int i = 0; i < racers; i++) {
        int r = results.get(i).get(30, TimeUnit.SECONDS);
        assertThat(r).isAnyOf(0, -2);
        if (r == 0) {
          assertWithMessage("a second winner").that(winner).isEqualTo(-1);
          winner = i;
        }
      }
      assertThat(winner).isAtLeast(0);
      assertThat(read(conns.get(0), k, 64)).isEqualTo(bytes("racer-" + winner));
      conns.forEach(KvApi::close);
    } finally {
      pool.shutdownNow();
    }
  }

  @ParameterizedTest
  @EnumSource(Client.class)
  void sixtyFourConcurrentClientsEachSeeTheirOwnResults(Client client) throws Exception {
    int clients = 64;
    int base = keys();
    ExecutorService pool = Executors.newFixedThreadPool(clients);
    try {
      List<Future<Void>> done = new ArrayList<>();
      for (int c = 0; c < clients; c++) {
        int first = base + c * 100;
        done.add(pool.submit((Callable<Void>) () -> {
          try (KvApi kv = connect(client)) {
            for (int i = 0; i < 50; i++) {
              int key = first + i;
              byte[] v = bytes(key + "/v1");
              assertThat(kv.write(key, v, false)).isEqualTo(0);
              assertThat(kv.write(key, v, false)).isEqualTo(-2);
              assertThat(read(kv, key, 64)).isEqualTo(v);
              assertThat(kv.write(key, bytes(key + "/v2"), true)).isEqualTo(0);
              assertThat(read(kv, key, 64)).isEqualTo(bytes(key + "/v2"));
              if (i % 2 == 0) {
                assertThat(kv.delete(key)).isEqualTo(0);
                assertThat(kv.read(key, new byte[1], 1)).isEqualTo(-2);
              }
            }
          }
          return null;
        }));
      }
      for (Future<Void> f : done) {
        f.get(120, TimeUnit.SECONDS);
      }
      try (KvApi kv = connect(client)) {
        for (int c = 0; c < clients; c++) {
          for (int i = 0; i < 50; i++) {
            int key = base + c * 100 + i;
            if (i % 2 == 0) {
              assertThat(kv.read(key, new byte[1], 1)).isEqualTo(-2);
            } else {
              assertThat(read(kv, key, 64)).isEqualTo(bytes(key + "/v2"));
            }
          }
        }
      }
    } finally {
      pool.shutdownNow();
    }
  }

  @ParameterizedTest
  @EnumSource(Client.class)
  void oneConnectionSharedByEightThreadsGivesEachItsOwnAnswers(Client client) throws Exception {
    int base = keys();
    ExecutorService pool = Executors.newFixedThreadPool(8);
    try (KvApi kv = connect(client)) {
      List<Future<Void>> done = new ArrayList<>();
      for (int t = 0; t < 8; t++) {
        int first = base + t * 1000;
        done.add(pool.submit((Callable<Void>) () -> {
          for (int i = 0; i < 200; i++) {
            int key = first + i;
            byte[] v = bytes("t" + key);
            assertThat(kv.write(key, v, false)).isEqualTo(0);
            assertThat(read(kv, key, 64)).isEqualTo(v);
            assertThat(kv.delete(key)).isEqualTo(0);
            assertThat(kv.delete(key)).isEqualTo(-1);
          }
          return null;
        }));
      }
      for (Future<Void> f : done) {
        f.get(120, TimeUnit.SECONDS);
      }
    } finally {
      pool.shutdownNow();
    }
  }

  /**
   * PROTOCOL.md §2 on the real server: asynchronous requests of one KvClient, pipelined on one
   * connection (more than {@link KvClient#MAX_IN_FLIGHT}, so the client's bound is reached), are
   * answered in order, each with its own result; large values sent while answers arrive exercise
   * both directions at once. A write's effect is seen by the requests after it.
   */
  @Test
  void javaAsyncRequestsPipelinedOnOneConnectionAreAnsweredInOrder() throws Exception {
    int base = keys();
    try (KvClient kv = KvClient.connect(server().host(), server().port())) {
      int n = 100;
      List<CompletableFuture<?>> all = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        int key = base + i;
        all.add(kv.putIfAbsentAsync(key, bytes("v" + key)));
        all.add(kv.getAsync(key));
        all.add(kv.putIfAbsentAsync(key, bytes("not stored")));
        all.add(kv.removeAsync(key));
        all.add(kv.getAsync(key));
      }
      byte[] large = new byte[2 << 20];
      Arrays.fill(large, (byte) 'L');
      for (int i = 0; i < 4; i++) {
        all.add(kv.putAsync(base + n + i, large));
        all.add(kv.getAsync(base + n + i));
      }
      for (int i = 0; i < n; i++) {
        int key = base + i;
        assertThat(all.get(5 * i).get(60, TimeUnit.SECONDS)).isEqualTo(true);
        Optional<?> value = (Optional<?>) all.get(5 * i + 1).get(60, TimeUnit.SECONDS);
        assertThat((byte[]) value.orElseThrow()).isEqualTo(bytes("v" + key));
        assertThat(all.get(5 * i + 2).get(60, TimeUnit.SECONDS)).isEqualTo(false);
        assertThat(all.get(5 * i + 3).get(60, TimeUnit.SECONDS)).isEqualTo(true);
        assertThat((Optional<?>) all.get(5 * i + 4).get(60, TimeUnit.SECONDS)).isEmpty();
      }
      for (int i = 0; i < 4; i++) {
        assertThat(all.get(5 * n + 2 * i).get(60, TimeUnit.SECONDS)).isNull();
        Optional<?> value = (Optional<?>) all.get(5 * n + 2 * i + 1).get(60, TimeUnit.SECONDS);
        assertThat((byte[]) value.orElseThrow()).isEqualTo(large);
      }
      assertThat(kv.reconnects()).isEqualTo(0);
    }
  }
}
