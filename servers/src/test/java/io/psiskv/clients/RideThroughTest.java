package io.psiskv.clients;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;
import static java.nio.charset.StandardCharsets.UTF_8;

import io.psiskv.client.KvClient;
import io.psiskv.client.KvConnectionException;
import io.psiskv.server.testkit.ServerFixture;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Fault tolerance seen by the clients (PROTOCOL.md §12): 16 clients, half of them {@code
 * libpsiskv.so} through JNA and half {@code KvClient}, write, read and delete while the test
 * SIGKILLs the Data Server again and again. Every call must return its correct result, on the same
 * descriptor or client object: nothing acknowledged is lost, nothing is applied twice (a {@code
 * putIfAbsent} of a key the client knows to be new never answers -2, a delete of a key it knows
 * to exist never answers -1).
 */
@Tag("process")
@Tag("server-pair")
class RideThroughTest {
  private static final int CLIENTS_PER_KIND = 8;
  private static final int KILLS = 3;
  private static final long OPS_BETWEEN_KILLS = 2_000;
  private static final Duration RELAUNCH_DEADLINE = Duration.ofSeconds(60);

  @RegisterExtension
  final ServerFixture server = ServerFixture.builder().build();

  private long pid(String file) {
    try {
      return Long.parseLong(Files.readString(server.dataDir().resolve(file)).trim());
    } catch (IOException | NumberFormatException e) {
      return -1;
    }
  }

  private static void await(Duration timeout, BooleanSupplier condition, String what)
      throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!condition.getAsBoolean()) {
      assertWithMessage("waited %s for %s", timeout, what)
          .that(System.nanoTime() < deadline).isTrue();
      Thread.sleep(20); // Polling interval of a condition with a deadline.
    }
  }

  /** One client's work: its own key range, a model of what it stored, every result checked. */
  private static Callable<Map<Integer, byte[]>> worker(KvApi kv, int base, AtomicBoolean stop,
      AtomicLong ops) {
    return () -> {
      Map<Integer, byte[]> model = new HashMap<>();
      SplittableRandom random = new SplittableRandom(base);
      byte[] buf = new byte[64];
      for (long n = 0; !stop.get(); n++) {
        int key = base + random.nextInt(64);
        byte[] known = model.get(key);
        int choice = random.nextInt(4);
        if (choice == 0) {
          byte[] v = ("v" + key + "." + n).getBytes(UTF_8);
          int r = kv.write(key, v, false);
          assertWithMessage("write(%s, overwrite 0)", key).that(r).isEqualTo(known == null ? 0 : -2);
          if (known == null) {
            model.put(key, v);
          }
        } else if (choice == 1) {
          byte[] v = ("o" + key + "." + n).getBytes(UTF_8);
          assertWithMessage("write(%s, overwrite 1)", key).that(kv.write(key, v, true)).isEqualTo(0);
          model.put(key, v);
        } else if (choice == 2) {
          int r = kv.read(key, buf, buf.length);
          if (known == null) {
            assertWithMessage("read(%s) of an absent key", key).that(r).isEqualTo(-2);
          } else {
            assertWithMessage("read(%s)", key).that(r).isEqualTo(known.length);
            assertThat(Arrays.copyOf(buf, r)).isEqualTo(known);
          }
        } else {
          int r = kv.delete(key);
          assertWithMessage("delete(%s)", key).that(r).isEqualTo(known == null ? -1 : 0);
          model.remove(key);
        }
        ops.incrementAndGet();
      }
      return model;
    };
  }

  /**
   * KvClient's asynchronous requests in flight when the Data Server is SIGKILLed are not resent
   * (the server keeps only a session's last write for a retry): each fails with
   * KvConnectionException or succeeded, and the calls after it reconnect and go on. Every write
   * acknowledged is there afterwards; none was applied twice (a putIfAbsent of a fresh key never
   * answers false).
   */
  @Test
  void javaAsyncRequestsInFlightAtASigkillFailOrSucceedAndTheClientGoesOn() throws Exception {
    int base = 7_000_000;
    int n = 6_000;
    List<CompletableFuture<Boolean>> puts = new ArrayList<>();
    try (KvClient kv = KvClient.connect(server.host(), server.port())) {
      long victim = pid("data.pid");
      assertThat(victim).isGreaterThan(0L);
      for (int i = 0; i < n; i++) {
        puts.add(kv.putIfAbsentAsync(base + i, ("a" + i).getBytes(UTF_8)));
        if (i == n / 3) {
          puts.get(n / 6).get(60, TimeUnit.SECONDS); // some are answered, some in flight
          ProcessHandle.of(victim).ifPresent(ProcessHandle::destroyForcibly); // SIGKILL
        }
      }
      int acknowledged = 0;
      int failed = 0;
      List<Integer> unknown = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        try {
          assertWithMessage("putIfAbsentAsync(%s)", base + i)
              .that(puts.get(i).get(60, TimeUnit.SECONDS)).isTrue();
          acknowledged++;
        } catch (ExecutionException e) {
          assertWithMessage("putIfAbsentAsync(%s) failed with", base + i)
              .that(e.getCause()).isInstanceOf(KvConnectionException.class);
          failed++;
          unknown.add(i);
        }
      }
      assertThat(kv.reconnects()).isAtLeast(1);
      assertThat(failed).isLessThan(n);
      for (int i = 0; i < n; i++) {
        Optional<byte[]> v = kv.get(base + i);
        if (!unknown.contains(i) || v.isPresent()) { // a failed write may or may not be there
          assertWithMessage("get(%s)", base + i).that(new String(v.orElseThrow(), UTF_8))
              .isEqualTo("a" + i);
        }
      }
      System.out.printf("%d asynchronous writes acknowledged, %d failed with the connection,"
          + " across a SIGKILL of the Data Server%n", acknowledged, failed);
    }
  }

  @Test
  void clientsOfBothKindsRideThroughRepeatedSigkillOfTheDataServer() throws Exception {
    List<KvApi> conns = new ArrayList<>();
    List<Integer> bases = new ArrayList<>();
    for (Client kind : Client.values()) {
      for (int i = 0; i < CLIENTS_PER_KIND; i++) {
        conns.add(kind.connect(server.host(), server.port()).orElseThrow());
        bases.add((kind.ordinal() * 100 + i) * 1000);
      }
    }
    AtomicBoolean stop = new AtomicBoolean();
    AtomicLong ops = new AtomicLong();
    ExecutorService pool = Executors.newFixedThreadPool(conns.size());
    List<Future<Map<Integer, byte[]>>> results = new ArrayList<>();
    try {
      for (int i = 0; i < conns.size(); i++) {
        results.add(pool.submit(worker(conns.get(i), bases.get(i), stop, ops)));
      }
      for (int k = 0; k < KILLS; k++) {
        long before = ops.get();
        await(RELAUNCH_DEADLINE, () -> ops.get() >= before + OPS_BETWEEN_KILLS
            || results.stream().anyMatch(Future::isDone), "clients to make progress");
        long victim = pid("data.pid");
        assertThat(victim).isGreaterThan(0L);
        ProcessHandle.of(victim).ifPresent(ProcessHandle::destroyForcibly); // SIGKILL
        await(RELAUNCH_DEADLINE, () -> {
          long now = pid("data.pid");
          return now > 0 && now != victim;
        }, "a relaunched Data Server");
      }
      long before = ops.get();
      await(RELAUNCH_DEADLINE, () -> ops.get() >= before + OPS_BETWEEN_KILLS
          || results.stream().anyMatch(Future::isDone), "clients to make progress after the last kill");
    } finally {
      stop.set(true);
      pool.shutdown();
    }
    Map<Integer, byte[]> expected = new HashMap<>();
    for (Future<Map<Integer, byte[]>> f : results) {
      expected.putAll(f.get(120, TimeUnit.SECONDS)); // Rethrows any wrong result.
    }
    conns.forEach(KvApi::close);
    assertThat(pool.awaitTermination(60, TimeUnit.SECONDS)).isTrue();
    System.out.printf("%d client calls, all correct, across %d SIGKILLs of the Data Server%n",
        ops.get(), KILLS);

    // Everything acknowledged is there, exactly, through a fresh client of each kind.
    for (Client kind : Client.values()) {
      try (KvApi kv = kind.connect(server.host(), server.port()).orElseThrow()) {
        byte[] buf = new byte[64];
        for (int base : bases) {
          for (int key = base; key < base + 64; key++) {
            Optional<byte[]> want = Optional.ofNullable(expected.get(key));
            int r = kv.read(key, buf, buf.length);
            if (want.isEmpty()) {
              assertWithMessage("%s read(%s)", kind, key).that(r).isEqualTo(-2);
            } else {
              assertWithMessage("%s read(%s)", kind, key).that(r).isEqualTo(want.get().length);
              assertThat(Arrays.copyOf(buf, r)).isEqualTo(want.get());
            }
          }
        }
      }
    }
  }

  @Test
  void clientsKeepWorkingAndNewOnesConnectAfterSigkillOfTheFrontServer() throws Exception {
    List<KvApi> conns = new ArrayList<>();
    for (Client kind : Client.values()) {
      conns.add(kind.connect(server.host(), server.port()).orElseThrow());
    }
    long victim = pid("front.pid");
    ProcessHandle.of(victim).ifPresent(ProcessHandle::destroyForcibly); // SIGKILL
    // Connected clients talk to the Data Server: they go on while the front is away.
    for (int i = 0; i < conns.size(); i++) {
      KvApi kv = conns.get(i);
      assertThat(kv.write(7000 + i, new byte[] {(byte) i}, false)).isEqualTo(0);
      byte[] b = new byte[1];
      assertThat(kv.read(7000 + i, b, 1)).isEqualTo(1);
      assertThat(b[0]).isEqualTo((byte) i);
    }
    long start = System.nanoTime();
    await(RELAUNCH_DEADLINE, () -> {
      long now = pid("front.pid");
      return now > 0 && now != victim;
    }, "a relaunched Front Server");
    for (Client kind : Client.values()) {
      await(RELAUNCH_DEADLINE, () -> {
        Optional<KvApi> c = kind.connect(server.host(), server.port());
        c.ifPresent(KvApi::close);
        return c.isPresent();
      }, "a new " + kind + " client to connect");
    }
    System.out.printf("front server relaunched and accepting new clients %d ms after SIGKILL%n",
        (System.nanoTime() - start) / 1_000_000);
    for (KvApi kv : conns) {
      assertThat(kv.delete(7000 + conns.indexOf(kv))).isEqualTo(0);
      kv.close();
    }
    Path dir = server.dataDir();
    assertThat(Files.exists(dir.resolve("front.pid"))).isTrue();
  }
}
