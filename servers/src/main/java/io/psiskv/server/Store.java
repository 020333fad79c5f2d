package io.psiskv.server;

/**
 * The in-memory map of the Data Server: unsigned 32-bit keys (held in a Java {@code int}, every
 * bit pattern a distinct key) to byte-array values. It knows nothing of sockets or files.
 *
 * <p><b>Structure.</b> {@value #STRIPES} stripes; a key's stripe is chosen by the low bits of a
 * mixed hash of the key. Each stripe is a primitive open-addressing table {@code int[] keys} /
 * {@code byte[][] values} with linear probing: a slot is empty when its value is {@code null}
 * (stored values are never null; an empty value is a zero-length array). Deletion shifts the
 * following entries of the probe run back (no tombstones), so lookups stay short after many
 * deletes. A stripe doubles when it would exceed a load of 3/4. No operation allocates except a
 * resize: no boxing, no entry objects.
 *
 * <p><b>Locking contract.</b> Each stripe is guarded by its own monitor (the {@code Stripe}
 * object). Every public operation locks exactly one stripe, does its map work, and unlocks: it is
 * atomic and linearizable per key. Critical sections contain only the table operation and the
 * {@link Mutation} callback; callers must never do socket I/O or wait while the lock is held, and
 * callbacks run under it must be short. No operation holds two stripe locks at once, so there is
 * no lock order and no deadlock. {@link #size} sums the stripes one at a time and is exact only
 * when no writer runs concurrently.
 *
 * <p><b>Values are immutable.</b> A value array handed to the store must never be modified
 * afterwards by anyone, and {@link #get} returns the stored array itself: a reader may write it to
 * a socket without a copy and without a lock, while a concurrent {@code put} merely replaces the
 * reference in the table.
 */
final class Store {
  /** Number of stripes; a power of two so that a mask picks the stripe. */
  static final int STRIPES = 256;
  /** Initial slots per stripe; a power of two. */
  static final int INITIAL_STRIPE_SLOTS = 16;
  /** Largest table of one stripe (2^30 slots, far beyond the 2^32 / 256 keys one stripe gets). */
  static final int MAX_STRIPE_SLOTS = 1 << 30;

  /**
   * Observer of applied mutations, the hook of the backup log. Called inside the stripe's
   * critical section when, and only when, a mutation takes effect (not when {@code putIfAbsent}
   * finds the key present or {@code remove} finds it absent), after the decision and before the
   * new state is visible to any other thread. Hence the callback order for one key is the apply
   * order. If the callback throws, the store is left unchanged and the exception propagates to the
   * caller of the mutating method.
   */
  @FunctionalInterface
  interface Mutation {
    /**
     * @param key the key
     * @param value the new value, or {@code null} for a removal
     */
    void applied(int key, byte[] value);
  }

  /** Receives pairs during iteration; called under the stripe lock (keep it short). */
  @FunctionalInterface
  interface EntryVisitor {
    void visit(int key, byte[] value);
  }

  /** A copy of one stripe's pairs taken under its lock: {@code count} valid entries. */
  static final class StripeSnapshot {
    final int[] keys;
    final byte[][] values;
    final int count;

    StripeSnapshot(int[] keys, byte[][] values, int count) {
      this.keys = keys;
      this.values = values;
      this.count = count;
    }
  }

  private final Stripe[] stripes = new Stripe[STRIPES];

  Store() {
    for (int i = 0; i < STRIPES; i++) {
      stripes[i] = new Stripe();
    }
  }

  /** The stored value (the stored array itself: never modify it), or {@code null} if absent. */
  byte[] get(int key) {
    int h = mix(key);
    return stripes[h & (STRIPES - 1)].get(key, h);
  }

  /**
   * Stores {@code value} only if the key is absent: one check-and-insert under the stripe lock, so
   * of concurrent callers for one absent key exactly one gets {@code true}.
   *
   * @param onApplied called under the lock if (and only if) the value is inserted; may be null
   * @return true if inserted, false if the key was present (nothing changed)
   */
  boolean putIfAbsent(int key, byte[] value, Mutation onApplied) {
    int h = mix(key);
    return !stripes[h & (STRIPES - 1)].put(key, h, value, false, onApplied);
  }

  boolean putIfAbsent(int key, byte[] value) {
    return putIfAbsent(key, value, null);
  }

  /**
   * Stores {@code value}, replacing any earlier one.
   *
   * @param onApplied called under the lock before the new value becomes visible; may be null
   * @return true if the key had a value before
   */
  boolean put(int key, byte[] value, Mutation onApplied) {
    int h = mix(key);
    return stripes[h & (STRIPES - 1)].put(key, h, value, true, onApplied);
  }

  boolean put(int key, byte[] value) {
    return put(key, value, null);
  }

  /**
   * Removes the key.
   *
   * @param onApplied called under the lock (with a null value) if the key was present; may be null
   * @return true if the key was present
   */
  boolean remove(int key, Mutation onApplied) {
    int h = mix(key);
    return stripes[h & (STRIPES - 1)].remove(key, h, onApplied);
  }

  boolean remove(int key) {
    return remove(key, null);
  }

  /** Number of pairs; exact only without concurrent writers (stripes are summed one by one). */
  long size() {
    long n = 0;
    for (Stripe s : stripes) {
      n += s.size();
    }
    return n;
  }

  /** Sum of the values' lengths; exact only without concurrent writers, like {@link #size}. */
  long valueBytes() {
    long n = 0;
    for (Stripe s : stripes) {
      n += s.valueBytes();
    }
    return n;
  }

  /** Number of stripes, for stripe-by-stripe iteration. */
  int stripeCount() {
    return STRIPES;
  }

  /** Visits all pairs stripe by stripe; each stripe is consistent, the whole is not a snapshot. */
  void forEach(EntryVisitor visitor) {
    for (Stripe s : stripes) {
      s.forEach(visitor);
    }
  }

  /**
   * Copies one stripe's keys and value references under its lock, so that the caller can then
   * work on them (write a file, say) without holding the lock. The values are shared, not copied:
   * they are immutable.
   */
  StripeSnapshot snapshotStripe(int stripe) {
    return stripes[stripe].snapshot();
  }

  /**
   * Murmur3's 32-bit finalizer: spreads sequential and patterned keys over stripes and slots.
   * The low 8 bits pick the stripe; the slot uses the hash rotated so that it does not reuse them
   * (see {@link Stripe#home}).
   */
  static int mix(int key) {
    int h = key;
    h ^= h >>> 16;
    h *= 0x85EBCA6B;
    h ^= h >>> 13;
    h *= 0xC2B2AE35;
    h ^= h >>> 16;
    return h;
  }

  /** One stripe: a linear-probing table guarded by its own monitor. */
  private static final class Stripe {
    /** Guarded by this. Keys of occupied slots; meaningless where {@code values[i] == null}. */
    private int[] keys = new int[INITIAL_STRIPE_SLOTS];
    /** Guarded by this. Null marks an empty slot. */
    private byte[][] values = new byte[INITIAL_STRIPE_SLOTS][];
    /** Guarded by this. */
    private int size;
    /** Guarded by this: the sum of the stored values' lengths (compaction's trigger). */
    private long valueBytes;

    private static int home(int h, int mask) {
      return Integer.rotateRight(h, 8) & mask;
    }

    synchronized byte[] get(int key, int h) {
      int mask = keys.length - 1;
      for (int i = home(h, mask); ; i = (i + 1) & mask) {
        byte[] v = values[i];
        if (v == null) {
          return null;
        }
        if (keys[i] == key) {
          return v;
        }
      }
    }

    /**
     * Inserts, or replaces if {@code replace}; returns whether the key was present before (if it
     * was and {@code replace} is false, nothing changed).
     */
    synchronized boolean put(int key, int h, byte[] value, boolean replace, Mutation onApplied) {
      if (value == null) {
        throw new NullPointerException("value");
      }
      int mask = keys.length - 1;
      int i = home(h, mask);
      for (; values[i] != null; i = (i + 1) & mask) {
        if (keys[i] == key) {
          if (replace) {
            if (onApplied != null) {
              onApplied.applied(key, value);
            }
            valueBytes += value.length - values[i].length;
            values[i] = value;
          }
          return true;
        }
      }
      if (onApplied != null) {
        onApplied.applied(key, value);
      }
      if ((size + 1) * 4L > keys.length * 3L && keys.length < MAX_STRIPE_SLOTS) {
        grow();
        insertNew(key, h, value);
      } else {
        keys[i] = key;
        values[i] = value;
      }
      size++;
      valueBytes += value.length;
      return false;
    }

    synchronized boolean remove(int key, int h, Mutation onApplied) {
      int mask = keys.length - 1;
      int i = home(h, mask);
      for (; ; i = (i + 1) & mask) {
        if (values[i] == null) {
          return false;
        }
        if (keys[i] == key) {
          break;
        }
      }
      if (onApplied != null) {
        onApplied.applied(key, null);
      }
      valueBytes -= values[i].length;
      // Backward-shift deletion: walk the rest of the probe run and move back every entry whose
      // home slot is not cyclically within (i, j], so that no lookup meets a false gap.
      int j = i;
      while (true) {
        j = (j + 1) & mask;
        if (values[j] == null) {
          break;
        }
        int k = home(mix(keys[j]), mask);
        boolean stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
          keys[i] = keys[j];
          values[i] = values[j];
          i = j;
        }
      }
      values[i] = null;
      size--;
      return true;
    }

    synchronized int size() {
      return size;
    }

    synchronized long valueBytes() {
      return valueBytes;
    }

    synchronized void forEach(EntryVisitor visitor) {
      for (int i = 0; i < values.length; i++) {
        if (values[i] != null) {
          visitor.visit(keys[i], values[i]);
        }
      }
    }

    synchronized StripeSnapshot snapshot() {
      int[] k = new int[size];
      byte[][] v = new byte[size][];
      int n = 0;
      for (int i = 0; i < values.length; i++) {
        if (values[i] != null) {
          k[n] = keys[i];
          v[n] = values[i];
          n++;
        }
      }
      return new StripeSnapshot(k, v, n);
    }

    /** Caller holds the lock. Doubles the table and reinserts every entry. */
    private void grow() {
      int[] oldKeys = keys;
      byte[][] oldValues = values;
      keys = new int[oldKeys.length * 2];
      values = new byte[oldKeys.length * 2][];
      for (int i = 0; i < oldValues.length; i++) {
        if (oldValues[i] != null) {
          insertNew(oldKeys[i], mix(oldKeys[i]), oldValues[i]);
        }
      }
    }

    /** Caller holds the lock and knows the key is absent and a slot is free. */
    private void insertNew(int key, int h, byte[] value) {
      int mask = keys.length - 1;
      int i = home(h, mask);
      while (values[i] != null) {
        i = (i + 1) & mask;
      }
      keys[i] = key;
      values[i] = value;
    }
  }
}
