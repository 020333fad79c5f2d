package io.psiskv.server.store;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;
import static org.junit.jupiter.api.Assertions.assertThrows;

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
import java.util.concurrent.atomic.AtomicIntegerArray;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class StoreTest {
  private final Store store = new Store();
  private final ExecutorService pool = Executors.newCachedThreadPool();

  @AfterEach
  void shutdownPool() throws InterruptedException {
    pool.shutdownNow();
    assertThat(pool.awaitTermination(10, TimeUnit.SECONDS)).isTrue();
  }

  /** A value that names its key and a version, so a reader can tell whose value it got. */
  private static byte[] value(int key, int version) {
    return ByteBuffer.allocate(8).putInt(key).putInt(version).array();
  }

  private static int keyOf(byte[] value) {
    return ByteBuffer.wrap(value).getInt(0);
  }

  private static int versionOf(byte[] value) {
    return ByteBuffer.wrap(value).getInt(4);
  }

  @Test
  void edgeKeysAreDistinct() {
    int[] keys = {0, 0xFFFFFFFF, Integer.MIN_VALUE, Integer.MAX_VALUE, 1, -2};
    for (int i = 0; i < keys.length; i++) {
      assertThat(store.putIfAbsent(keys[i], value(keys[i], i))).isTrue();
    }
    for (int i = 0; i < keys.length; i++) {
      assertThat(store.get(keys[i])).isEqualTo(value(keys[i], i));
    }
    assertThat(store.size()).isEqualTo(keys.length);
    assertThat(store.remove(0)).isTrue();
    assertThat(store.get(0)).isNull();
    assertThat(store.get(0xFFFFFFFF)).isEqualTo(value(-1, 1));
  }

  @Test
  void operationsReturnWhatTheyDid() {
    byte[] a = {1};
    byte[] b = {2};
    assertThat(store.get(7)).isNull();
    assertThat(store.putIfAbsent(7, a)).isTrue();
    assertThat(store.putIfAbsent(7, b)).isFalse();
    assertThat(store.get(7)).isEqualTo(a);
    assertThat(store.put(7, b)).isTrue();
    assertThat(store.get(7)).isEqualTo(b);
    assertThat(store.put(8, a)).isFalse();
    assertThat(store.remove(7)).isTrue();
    assertThat(store.remove(7)).isFalse();
    assertThat(store.get(7)).isNull();
    assertThat(store.putIfAbsent(7, new byte[0])).isTrue();
    assertThat(store.get(7)).hasLength(0);
    assertThat(store.size()).isEqualTo(2);
  }

  @Test
  void nullValueIsRefusedAndChangesNothing() {
    assertThrows(NullPointerException.class, () -> store.put(1, null));
    assertThat(store.size()).isEqualTo(0);
    assertThat(store.get(1)).isNull();
  }

  @Test
  void randomOperationsMatchHashMap() {
    SplittableRandom random = new SplittableRandom(42);
    Map<Integer, byte[]> model = new HashMap<>();
    // A small key space gives many hits, misses, deletions and re-insertions; the offset puts
    // it across 0 and the sign bit.
    for (int op = 0; op < 300_000; op++) {
      int key = random.nextInt(4_000) - 2_000;
      if (random.nextInt(10) == 0) {
        key ^= Integer.MIN_VALUE;
      }
      byte[] v = value(key, op);
      switch (random.nextInt(4)) {
        case 0:
          assertThat(store.putIfAbsent(key, v)).isEqualTo(!model.containsKey(key));
          model.putIfAbsent(key, v);
          break;
        case 1:
          assertThat(store.put(key, v)).isEqualTo(model.put(key, v) != null);
          break;
        case 2:
          assertThat(store.remove(key)).isEqualTo(model.remove(key) != null);
          break;
        default:
          assertThat(store.get(key)).isEqualTo(model.get(key));
      }
      if (op % 50_000 == 0) {
        assertSameContent(model);
      }
    }
    assertSameContent(model);
  }

  @Test
  void growsAndShrinksContentThroughManyResizes() {
    Map<Integer, byte[]> model = new HashMap<>();
    for (int k = 0; k < 200_000; k++) {
      int key = k * 0x9E3779B1; // Spread over the whole int range, both signs.
      byte[] v = value(key, k);
      assertThat(store.putIfAbsent(key, v)).isTrue();
      model.put(key, v);
    }
    assertSameContent(model);
    for (int k = 0; k < 200_000; k += 2) {
      int key = k * 0x9E3779B1;
      assertThat(store.remove(key)).isTrue();
      model.remove(key);
    }
    assertSameContent(model);
    for (int k = 0; k < 200_000; k += 2) {
      int key = k * 0x9E3779B1;
      assertThat(store.get(key)).isNull();
      assertThat(store.putIfAbsent(key, value(key, -k))).isTrue();
      model.put(key, store.get(key));
    }
    assertSameContent(model);
  }

  @Test
  void deletionInsideACollisionClusterKeepsTheOthersReachable() {
    // Keys of stripe 0 whose home slot in a fresh 16-slot stripe is 3: one probe run.
    List<Integer> cluster = new ArrayList<>();
    for (int k = 0; cluster.size() < 8; k++) {
      int h = Store.mix(k);
      if ((h & (Store.STRIPES - 1)) == 0 && (Integer.rotateRight(h, 8) & 15) == 3) {
        cluster.add(k);
      }
    }
    // And one key that wraps around the end of the table (home 15).
    for (int k = 0; ; k++) {
      int h = Store.mix(k);
      if ((h & (Store.STRIPES - 1)) == 0 && (Integer.rotateRight(h, 8) & 15) == 15) {
        cluster.add(k);
        break;
      }
    }
    for (int key : cluster) {
      assertThat(store.putIfAbsent(key, value(key, 0))).isTrue();
    }
    for (int victim = 0; victim < cluster.size(); victim++) {
      int removed = cluster.get(victim);
      assertThat(store.remove(removed)).isTrue();
      for (int key : cluster) {
        if (key == removed) {
          assertThat(store.get(key)).isNull();
        } else {
          assertWithMessage("key %s after removing %s", key, removed)
              .that(store.get(key)).isEqualTo(value(key, 0));
        }
      }
      assertThat(store.putIfAbsent(removed, value(removed, 0))).isTrue();
    }
  }

  @Test
  void mutationCallbackRunsExactlyWhenAMutationIsApplied() {
    List<String> events = new ArrayList<>();
    Store.Mutation log = (key, v) -> events.add(key + "=" + (v == null ? "removed" : v.length));
    assertThat(store.putIfAbsent(5, new byte[1], log)).isTrue();
    assertThat(store.putIfAbsent(5, new byte[2], log)).isFalse();
    assertThat(store.put(5, new byte[3], log)).isTrue();
    assertThat(store.put(6, new byte[4], log)).isFalse();
    assertThat(store.remove(5, log)).isTrue();
    assertThat(store.remove(5, log)).isFalse();
    assertThat(events).containsExactly("5=1", "5=3", "6=4", "5=removed").inOrder();
  }

  @Test
  void failingMutationCallbackLeavesTheStoreUnchanged() {
    Store.Mutation failing = (key, v) -> {
      throw new IllegalStateException("backup file full");
    };
    byte[] old = {9};
    store.put(1, old);
    assertThrows(IllegalStateException.class, () -> store.putIfAbsent(2, new byte[1], failing));
    assertThrows(IllegalStateException.class, () -> store.put(1, new byte[1], failing));
    assertThrows(IllegalStateException.class, () -> store.remove(1, failing));
    assertThat(store.get(2)).isNull();
    assertThat(store.get(1)).isEqualTo(old);
    assertThat(store.size()).isEqualTo(1);
  }

  @Test
  void callbackOrderPerKeyIsApplyOrder() throws Exception {
    int keys = 64;
    int threads = 8;
    List<List<byte[]>> logged = new ArrayList<>();
    for (int k = 0; k < keys; k++) {
      logged.add(new ArrayList<>());
    }
    // The callback runs under the stripe lock, so appending to the key's list needs no lock.
    Store.Mutation log = (key, v) -> logged.get(key).add(v);
    runConcurrently(threads, t -> {
      SplittableRandom random = new SplittableRandom(t);
      for (int i = 0; i < 20_000; i++) {
        int key = random.nextInt(keys);
        int op = random.nextInt(3);
        if (op == 0) {
          store.put(key, value(key, t * 1_000_000 + i), log);
        } else if (op == 1) {
          store.putIfAbsent(key, value(key, t * 1_000_000 + i), log);
        } else {
          store.remove(key, log);
        }
      }
    });
    for (int k = 0; k < keys; k++) {
      List<byte[]> history = logged.get(k);
      byte[] last = history.isEmpty() ? null : history.get(history.size() - 1);
      assertWithMessage("key %s", k).that(store.get(k)).isEqualTo(last);
    }
  }

  @Test
  void exactlyOneOfManyRacingPutIfAbsentWins() throws Exception {
    int keys = 2_000;
    int threads = 16;
    AtomicIntegerArray wins = new AtomicIntegerArray(keys);
    int[] winner = new int[keys];
    runConcurrently(threads, t -> {
      for (int k = 0; k < keys; k++) {
        int key = k * 7919 - 1000; // Some negative keys too.
        if (store.putIfAbsent(key, value(key, t))) {
          wins.incrementAndGet(k);
          winner[k] = t; // Read after the join below, which orders it.
        }
      }
    });
    for (int k = 0; k < keys; k++) {
      int key = k * 7919 - 1000;
      assertWithMessage("winners for key %s", key).that(wins.get(k)).isEqualTo(1);
      assertThat(versionOf(store.get(key))).isEqualTo(winner[k]);
    }
    assertThat(store.size()).isEqualTo(keys);
  }

  @Test
  void concurrentWritersAndReadersStayConsistent() throws Exception {
    int threads = 8;
    int ownKeys = 3_000;
    int sharedKeys = 256;
    // Each thread owns a key range and checks every result against its own model, while all
    // threads also hammer a shared range; readers of the shared range must only ever see a
    // value written for that very key (no torn tables during resize or backward shift).
    runConcurrently(threads, t -> {
      SplittableRandom random = new SplittableRandom(t * 31L);
      Map<Integer, byte[]> model = new HashMap<>();
      int base = (t + 1) * 1_000_000;
      for (int i = 0; i < 60_000; i++) {
        int key = base + random.nextInt(ownKeys);
        byte[] v = value(key, i);
        switch (random.nextInt(5)) {
          case 0:
            assertThat(store.putIfAbsent(key, v)).isEqualTo(!model.containsKey(key));
            model.putIfAbsent(key, v);
            break;
          case 1:
            assertThat(store.put(key, v)).isEqualTo(model.put(key, v) != null);
            break;
          case 2:
            assertThat(store.remove(key)).isEqualTo(model.remove(key) != null);
            break;
          case 3:
            assertThat(store.get(key)).isEqualTo(model.get(key));
            break;
          default:
            int shared = -random.nextInt(sharedKeys);
            int op = random.nextInt(3);
            if (op == 0) {
              store.put(shared, value(shared, i));
            } else if (op == 1) {
              store.remove(shared);
            } else {
              byte[] seen = store.get(shared);
              if (seen != null) {
                assertThat(keyOf(seen)).isEqualTo(shared);
              }
            }
        }
      }
      for (Map.Entry<Integer, byte[]> e : model.entrySet()) {
        assertThat(store.get(e.getKey())).isEqualTo(e.getValue());
      }
    });
  }

  @Test
  void largeValuesAreKeptAndHandedOutWithoutACopySmallOnesAreCopied() {
    byte[] small = new byte[ValueArena.MAX_VALUE_BYTES];
    byte[] large = new byte[ValueArena.MAX_VALUE_BYTES + 1];
    large[large.length - 1] = 7;
    store.put(1, small);
    store.put(2, large);
    assertThat(store.get(1)).isNotSameInstanceAs(small);
    assertThat(store.get(1)).isEqualTo(small);
    assertThat(store.get(2)).isSameInstanceAs(large);
    byte[][] seen = new byte[1][];
    assertThat(store.read(2, new Store.ValueReader() {
      @Override
      public void small(int length, Store.SmallValue value) {
        throw new AssertionError("a large value is not small");
      }

      @Override
      public void large(byte[] value) {
        seen[0] = value;
      }
    })).isTrue();
    assertThat(seen[0]).isSameInstanceAs(large);
    store.put(2, new byte[3]); // Large to small and back: the side table slot is reused.
    store.put(2, large);
    assertThat(store.get(2)).isSameInstanceAs(large);
    assertThat(store.remove(2)).isTrue();
    assertThat(store.remove(1)).isTrue();
    assertThat(store.arenaBytesInUse()).isEqualTo(0);
  }

  @Test
  void aFailingCallbackLeavesNoChunkBehind() {
    Store.Mutation failing = (key, v) -> {
      throw new IllegalStateException("log refused");
    };
    for (int i = 0; i < 100; i++) {
      assertThrows(IllegalStateException.class, () -> store.put(9, new byte[50], failing));
    }
    assertThat(store.arenaBytesInUse()).isEqualTo(0);
    assertThat(store.get(9)).isNull();
  }

  @Test
  void snapshotAndIterationSeeEveryPairOnce() {
    Map<Integer, byte[]> model = new HashMap<>();
    for (int k = -500; k < 500; k++) {
      byte[] v = value(k, 1);
      store.put(k, v);
      model.put(k, v);
    }
    Map<Integer, byte[]> fromSnapshots = new HashMap<>();
    for (int s = 0; s < store.stripeCount(); s++) {
      Store.StripeSnapshot snap = store.snapshotStripe(s);
      for (int i = 0; i < snap.count; i++) {
        assertThat(fromSnapshots.put(snap.keys[i], snap.values[i])).isNull();
      }
    }
    assertThat(fromSnapshots.keySet()).isEqualTo(model.keySet());
    for (Map.Entry<Integer, byte[]> e : model.entrySet()) {
      assertThat(fromSnapshots.get(e.getKey())).isEqualTo(e.getValue());
    }
  }

  private void assertSameContent(Map<Integer, byte[]> model) {
    assertThat(store.size()).isEqualTo(model.size());
    Map<Integer, byte[]> seen = new HashMap<>();
    store.forEach((k, v) -> assertThat(seen.put(k, v)).isNull());
    assertThat(seen.keySet()).isEqualTo(model.keySet());
    for (Map.Entry<Integer, byte[]> e : model.entrySet()) {
      assertThat(seen.get(e.getKey())).isEqualTo(e.getValue());
      assertThat(store.get(e.getKey())).isEqualTo(e.getValue());
    }
  }

  private interface Body {
    void run(int thread) throws Exception;
  }

  /** Runs {@code body} on {@code n} threads that start together; rethrows the first failure. */
  private void runConcurrently(int n, Body body) throws Exception {
    CyclicBarrier start = new CyclicBarrier(n);
    List<Future<?>> futures = new ArrayList<>();
    for (int t = 0; t < n; t++) {
      int thread = t;
      futures.add(pool.submit(() -> {
        start.await();
        body.run(thread);
        return null;
      }));
    }
    for (Future<?> f : futures) {
      f.get(60, TimeUnit.SECONDS);
    }
  }
}
