package io.psiskv.server.store;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;
import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.psiskv.client.KvClient;
import io.psiskv.client.KvException;
import io.psiskv.server.backup.BackupLog;
import io.psiskv.server.testkit.ServerFixture;
import java.io.IOException;
import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The backup file through the real servers (PROTOCOL.md §11): what was acknowledged survives
 * SIGKILL of the Data Server and an orderly stop, and only one Data Server owns a data directory.
 */
@Tag("process")
@Tag("server-pair")
class DurabilityTest {
  private static final int WRITERS = 16;
  private static final int KEYS_PER_WRITER = 200;
  private static final long ACKS_BEFORE_KILL = 6_000;

  @RegisterExtension
  final ServerFixture server = ServerFixture.builder().manualStart().build();

  /** What one writer knows of one key: the acknowledged value (null = absent). */
  private static final class KeyState {
    byte[] acked;
    /** The write in flight when the server died: its outcome is unknown. */
    boolean uncertain;
    byte[] attempted;
  }

  @Test
  void everyAcknowledgedWriteSurvivesSigkillOfTheDataServer() throws Exception {
    server.start();
    Map<Integer, KeyState> model = new ConcurrentHashMap<>();
    AtomicLong acks = new AtomicLong();
    CountDownLatch enough = new CountDownLatch(1);
    // Set right after the kill: writers end at their next operation. Without it a client that
    // reconnects (PROTOCOL.md §12) to the relaunched Data Server would write forever.
    AtomicBoolean killed = new AtomicBoolean();
    List<Thread> writers = new ArrayList<>();
    List<Throwable> failures = new ArrayList<>();
    for (int w = 0; w < WRITERS; w++) {
      int base = w * 10_000;
      long seed = w;
      Thread t = new Thread(() -> {
        SplittableRandom random = new SplittableRandom(seed);
        try (KvClient kv = KvClient.connect(server.host(), server.port())) {
          for (long op = 0; !killed.get(); op++) {
            int key = base + random.nextInt(KEYS_PER_WRITER);
            KeyState st = model.computeIfAbsent(key, k -> new KeyState());
            int kind = random.nextInt(10);
            byte[] next = kind < 7 ? (key + ":" + op).getBytes(UTF_8) : null;
            st.attempted = next;
            st.uncertain = true;
            if (next == null) {
              boolean existed = kv.remove(key);
              assertWithMessage("remove(%s)", key).that(existed).isEqualTo(st.acked != null);
            } else if (st.acked == null) {
              // Unique new value under an absent key: must be stored, never -2.
              assertWithMessage("putIfAbsent(%s)", key).that(kv.putIfAbsent(key, next)).isTrue();
            } else {
              kv.put(key, next);
            }
            st.acked = next;
            st.uncertain = false;
            if (acks.incrementAndGet() == ACKS_BEFORE_KILL) {
              enough.countDown();
            }
          }
        } catch (KvException expectedAfterKill) {
          // The Data Server died under this writer (a client without reconnection); its last
          // write stays uncertain.
        } catch (Throwable t2) {
          synchronized (failures) {
            failures.add(t2);
          }
          enough.countDown();
        }
      }, "writer-" + w);
      writers.add(t);
      t.start();
    }
    enough.await();
    server.dataProcess().destroyForcibly(); // SIGKILL
    killed.set(true);
    for (Thread t : writers) {
      t.join(Duration.ofSeconds(60).toMillis());
      assertThat(t.isAlive()).isFalse();
    }
    assertThat(failures).isEmpty();
    server.killBoth();

    server.start();
    int uncertain = 0;
    try (KvClient kv = KvClient.connect(server.host(), server.port())) {
      for (Map.Entry<Integer, KeyState> e : model.entrySet()) {
        KeyState st = e.getValue();
        byte[] found = kv.get(e.getKey()).orElse(null);
        if (st.uncertain) {
          uncertain++;
          assertWithMessage("key %s (write in flight at the kill)", e.getKey())
              .that(matches(found, st.acked) || matches(found, st.attempted)).isTrue();
        } else {
          assertWithMessage("key %s", e.getKey())
              .that(found == null ? "absent" : new String(found, UTF_8))
              .isEqualTo(st.acked == null ? "absent" : new String(st.acked, UTF_8));
        }
      }
    }
    assertThat(acks.get()).isAtLeast(ACKS_BEFORE_KILL);
    assertThat(uncertain).isAtMost(WRITERS);
    server.stop();
  }

  private static boolean matches(byte[] found, byte[] expected) {
    return found == null ? expected == null : expected != null && Arrays.equals(found, expected);
  }

  @Test
  void orderlyStopThenStartReloadsTheExactFinalState() throws Exception {
    server.start();
    Map<Integer, Optional<byte[]>> expected = new HashMap<>();
    byte[] binary = new byte[256];
    for (int i = 0; i < 256; i++) {
      binary[i] = (byte) i;
    }
    try (KvClient kv = KvClient.connect(server.host(), server.port())) {
      kv.put(0, binary);
      kv.put(-1, new byte[0]);
      kv.put(1, "old".getBytes(UTF_8));
      kv.put(1, "new".getBytes(UTF_8)); // overwrite
      kv.put(2, "gone".getBytes(UTF_8));
      assertThat(kv.remove(2)).isTrue(); // delete
      kv.put(3, "first".getBytes(UTF_8));
      assertThat(kv.remove(3)).isTrue();
      assertThat(kv.putIfAbsent(3, "again".getBytes(UTF_8))).isTrue(); // re-create
      kv.put(4, new byte[1 << 20]);
    }
    expected.put(0, Optional.of(binary));
    expected.put(-1, Optional.of(new byte[0]));
    expected.put(1, Optional.of("new".getBytes(UTF_8)));
    expected.put(2, Optional.empty());
    expected.put(3, Optional.of("again".getBytes(UTF_8)));
    expected.put(4, Optional.of(new byte[1 << 20]));
    server.stop();
    assertThat(Files.exists(server.dataDir().resolve(BackupLog.FILE_NAME))).isTrue();

    server.start();
    try (KvClient kv = KvClient.connect(server.host(), server.port())) {
      for (Map.Entry<Integer, Optional<byte[]>> e : expected.entrySet()) {
        Optional<byte[]> got = kv.get(e.getKey());
        assertWithMessage("key %s", Integer.toUnsignedString(e.getKey()))
            .that(got.isPresent()).isEqualTo(e.getValue().isPresent());
        if (got.isPresent()) {
          assertThat(got.get()).isEqualTo(e.getValue().get());
        }
      }
    }
    assertThat(server.log()).contains("loaded 5 keys");
    server.stop();
  }

  @Test
  void aSecondServerPairOnTheSameDataDirectoryIsRefused() throws Exception {
    server.start();
    ServerFixture other = ServerFixture.builder().manualStart().dataDir(server.dataDir()).build();
    try {
      IOException e = assertThrows(IOException.class, other::start);
      assertThat(e).hasMessageThat().contains("another psiskv server (pid " + server.frontPid());
    } finally {
      other.killBoth();
    }
    try (KvClient kv = KvClient.connect(server.host(), server.port())) {
      kv.put(7, new byte[] {7});
      assertThat(kv.get(7)).isPresent();
    }
    server.stop();
  }
}
