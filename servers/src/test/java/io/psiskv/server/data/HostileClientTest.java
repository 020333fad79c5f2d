package io.psiskv.server.data;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;

import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Status;
import io.psiskv.server.testkit.RawClient;
import io.psiskv.server.testkit.ServerFixture;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Hostile clients beside a normal one, on loopback, bounded in count: {@value #HOSTILE_THREADS}
 * threads open {@value #CONNECTIONS_PER_THREAD} connections each and send garbage, truncated
 * requests, lying lengths, unknown opcodes, guessed sessions and reused request ids, chosen by a
 * seeded random generator (the seed is printed, so a failure can be replayed). Throughout, a
 * normal client's every request must succeed with the right answer, and afterwards the data
 * written before and during the attack must be intact.
 */
@Tag("process")
@Tag("server-pair")
class HostileClientTest {
  private static final int HOSTILE_THREADS = 8;
  private static final int CONNECTIONS_PER_THREAD = 150;
  private static final int PRELOADED_KEYS = 200;
  private static final int MAX_VALUE_BYTES = 1 << 20;

  @RegisterExtension
  final ServerFixture server = ServerFixture.builder().maxValueBytes(MAX_VALUE_BYTES).build();

  private static byte[] value(int key) {
    return ("value " + key).getBytes(StandardCharsets.UTF_8);
  }

  @Test
  void aNormalClientIsServedThroughoutAndNoDataIsLost() throws Exception {
    try (RawClient c = RawClient.session(server)) {
      for (int k = 0; k < PRELOADED_KEYS; k++) {
        assertThat(c.put(k, value(k), true)).isEqualTo(Status.OK);
      }
    }
    InetSocketAddress data = RawClient.redirect(server);
    long seed = System.nanoTime();
    System.out.println("HostileClientTest seed " + seed);
    AtomicBoolean attacking = new AtomicBoolean(true);
    AtomicInteger normalOps = new AtomicInteger();
    ExecutorService pool = Executors.newFixedThreadPool(HOSTILE_THREADS + 1);
    try {
      Future<Integer> normal = pool.submit(() -> {
        int k = PRELOADED_KEYS;
        try (RawClient c = RawClient.session(server)) {
          while (attacking.get()) {
            assertThat(c.put(k, value(k), true)).isEqualTo(Status.OK);
            assertThat(c.getValue(k)).isEqualTo(value(k));
            assertThat(c.getValue(k % PRELOADED_KEYS)).isEqualTo(value(k % PRELOADED_KEYS));
            normalOps.addAndGet(3);
            k++;
          }
        }
        return k;
      });
      List<Future<?>> hostile = new ArrayList<>();
      for (int t = 0; t < HOSTILE_THREADS; t++) {
        SplittableRandom random = new SplittableRandom(seed + t);
        hostile.add(pool.submit(() -> {
          for (int i = 0; i < CONNECTIONS_PER_THREAD; i++) {
            attack(data, random);
          }
          return null;
        }));
      }
      for (Future<?> f : hostile) {
        f.get(120, TimeUnit.SECONDS);
      }
      attacking.set(false);
      int written = normal.get(60, TimeUnit.SECONDS);
      System.out.printf("measured: %d normal operations, all answered right, beside %d hostile"
          + " connections%n", normalOps.get(), HOSTILE_THREADS * CONNECTIONS_PER_THREAD);
      try (RawClient c = RawClient.session(server)) {
        for (int k = 0; k < written; k++) {
          assertWithMessage("key %s", k).that(c.getValue(k)).isEqualTo(value(k));
        }
      }
    } finally {
      pool.shutdownNow();
    }
  }

  /** One hostile connection: a request the protocol forbids, or one that stops halfway. */
  private static void attack(InetSocketAddress data, SplittableRandom random) {
    try (Socket s = new Socket()) {
      s.connect(data, 5_000);
      s.setSoTimeout(2_000);
      OutputStream out = s.getOutputStream();
      byte[] buf = new byte[Messages.MAX_FIXED_BYTES + 64];
      switch (random.nextInt(8)) {
        case 0: { // Random bytes.
          byte[] junk = new byte[1 + random.nextInt(300)];
          random.nextBytes(junk);
          out.write(junk);
          break;
        }
        case 1: { // A header cut short.
          int n = Messages.ping(buf, 1);
          out.write(buf, 0, 1 + random.nextInt(n - 1));
          break;
        }
        case 2: { // A PUT that claims more than it sends, or more than the maximum.
          out.write(buf, 0, Messages.session(buf, 1, 0, null));
          int claimed = random.nextBoolean() ? MAX_VALUE_BYTES : MAX_VALUE_BYTES + 1 + random
              .nextInt(1 << 20);
          out.write(buf, 0, Messages.putHeader(buf, random.nextInt(), 2, true, claimed));
          byte[] some = new byte[random.nextInt(1000)];
          out.write(some);
          break;
        }
        case 3: { // A fixed-body request with a lying body length.
          byte[] h = RawClient.header(Opcode.GET, 0, 1, 1, 1 + random.nextInt(1000));
          out.write(h);
          break;
        }
        case 4: { // An unknown opcode, or a control opcode on a data connection.
          int op = random.nextBoolean() ? 0x40 + random.nextInt(0x80) : Opcode.INIT.code();
          out.write(RawClient.header(Protocol.REQUEST_MAGIC, Protocol.VERSION, op, 0, 0, 1, 0));
          break;
        }
        case 5: { // A guessed session: FORBIDDEN if it exists, else made and dropped unused.
          byte[] secret = new byte[Protocol.SESSION_SECRET_BYTES];
          random.nextBytes(secret);
          secret[0] |= 1;
          out.write(buf, 0, Messages.session(buf, 1, random.nextLong() | 1, secret));
          break;
        }
        case 6: { // A session that reuses a write's id for another request.
          out.write(buf, 0, Messages.session(buf, 1, 0, null));
          int key = 1_000_000 + random.nextInt(1000);
          out.write(buf, 0, Messages.putHeader(buf, key, 7, true, 1));
          out.write(1);
          out.write(buf, 0, Messages.delete(buf, key, 7));
          break;
        }
        default: { // A wrong version, then more.
          out.write(RawClient.header(Protocol.REQUEST_MAGIC, 1, Opcode.PING.code(), 0, 0, 1, 0));
          out.write(new byte[random.nextInt(100)]);
          break;
        }
      }
      out.flush();
      // The peer stops here (half-sent requests stay half-sent): the server sees the end of the
      // stream. Read whatever it answers until it closes, or give up after 2 s.
      s.shutdownOutput();
      byte[] sink = new byte[4096];
      while (s.getInputStream().read(sink) >= 0) {
        // Discard.
      }
    } catch (IOException e) {
      // Resets and timeouts are what hostile connections get; only the normal client matters.
    }
  }
}
