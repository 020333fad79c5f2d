package io.psiskv.server.store;

/**
 * The in-memory map of the Data Server: unsigned 32-bit keys (held in a Java {@code int}, every
 * bit pattern a distinct key) to byte-array values. It knows nothing of sockets or files.
 *
 * <p><b>Structure.</b> {@value #STRIPES} stripes; a key's stripe is chosen by the low bits of a
 * mixed hash of the key. Each stripe is a primitive open-addressing table {@code int[] keys} /
 * {@code int[] locs} with linear probing: {@code locs[i] == 0} marks an empty slot. A value of up
 * to {@link ValueArena#MAX_VALUE_BYTES} is copied into the {@link ValueArena} (off-heap slab
 * chunks: 104 bytes for a 100-byte value, no collector slack) and its slot holds the chunk's
 * location (&gt; 0); a longer value stays the caller's heap array, in the stripe's {@code large}
 * side table, and its slot holds {@code -(index + 1)}. Deletion shifts the following entries of
 * the probe run back (no tombstones), so lookups stay short after many deletes. A stripe doubles
 * when it would exceed a load of 3/4. So a stored 100-byte value costs about 121 bytes (the chunk
 * and 8 bytes per slot at a load of 3/8 to 3/4), and no operation allocates on the heap except a
 * resize and the copies {@link #get} hands out.
 *
 * <p><b>Locking contract.</b> Each stripe is guarded by its own monitor (the {@code Stripe}
 * object). Every public operation locks exactly one stripe, does its map work, and unlocks: it is
 * atomic and linearizable per key. Critical sections contain only the table operation, a copy of
 * a small value into or out of the arena, and the {@link Mutation} callback; callers must never
 * do socket I/O or wait while the lock is held, and callbacks run under it must be short. No
 * operation holds two stripe locks at once, so there is no lock order and no deadlock (the arena
 * takes its size-class lock inside, never the other way round). {@link #size} sums the stripes
 * one at a time and is exact only when no writer runs concurrently.
 *
 * <p><b>Values.</b> A small value is copied when stored and copied when read ({@link #get}, {@link
 * #read}); the caller's array is not kept. A large value's array is kept and handed out as it is
 * ({@link #read} gives the reader the stored array to send without a copy): it must never be
 * modified afterwards by anyone, and a concurrent {@code put} merely replaces the reference.
 */
public final class Store {
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
  public interface EntryVisitor {
    void visit(int key, byte[] value);
  }

  /**
   * Receives a value under its stripe's lock ({@link #read}): either a small value's length and
   * the means to copy it now, or a large value's stored array. Called at most once per read; must
   * be quick and must not block.
   */
  public interface ValueReader {
    /** A small value: copy up to {@code length} bytes with {@code copier} before returning. */
    void small(int length, SmallValue copier);

    /** A large value: the stored array itself (never modify it), safe to use after the lock. */
    void large(byte[] value);
  }

  /** Copies the bytes of a small value being read; valid only inside {@link ValueReader#small}. */
  public interface SmallValue {
    void copyTo(byte[] dst, int off, int n);
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

  private final ValueArena arena = new ValueArena();
  private final Stripe[] stripes = new Stripe[STRIPES];

  public Store() {
    for (int i = 0; i < STRIPES; i++) {
      stripes[i] = new Stripe(arena);
    }
  }

  /**
   * The stored value, or {@code null} if absent: a copy of a small value, the stored array of a
   * large one (never modify it). The request path uses {@link #read}, which copies straight into
   * an answer.
   */
  byte[] get(int key) {
    int h = mix(key);
    return stripes[h & (STRIPES - 1)].get(key, h);
  }

  /**
   * Hands the value of {@code key} to {@code reader} under the stripe lock (see {@link
   * ValueReader}); returns false, without calling it, if the key is absent.
   */
  boolean read(int key, ValueReader reader) {
    int h = mix(key);
    return stripes[h & (STRIPES - 1)].read(key, h, reader);
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

  public boolean remove(int key) {
    return remove(key, null);
  }

  /** Number of pairs; exact only without concurrent writers (stripes are summed one by one). */
  public long size() {
    long n = 0;
    for (Stripe s : stripes) {
      n += s.size();
    }
    return n;
  }

  /** Bytes of off-heap chunks holding small values now (for figures and tests). */
  long arenaBytesInUse() {
    return arena.chunkBytesInUse();
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
  public void forEach(EntryVisitor visitor) {
    for (Stripe s : stripes) {
      s.forEach(visitor);
    }
  }

  /**
   * Copies one stripe's keys and values under its lock, so that the caller can then work on them
   * (write a file, say) without holding the lock: small values are copied out of the arena, large
   * ones are shared (they are immutable).
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

  /**
   * One stripe: a linear-probing table guarded by its own monitor. A slot is empty when its
   * location is 0; a location above 0 is an arena chunk, below 0 the index {@code -(loc + 1)} into
   * {@code large}.
   */
  private static final class Stripe implements SmallValue {
    private final ValueArena arena;
    /** Guarded by this: the location {@link #read} is handing out (the copier is the stripe). */
    private int readLoc;
    /** Guarded by this. Keys of occupied slots; meaningless where {@code locs[i] == 0}. */
    private int[] keys = new int[INITIAL_STRIPE_SLOTS];
    /** Guarded by this. 0 marks an empty slot. */
    private int[] locs = new int[INITIAL_STRIPE_SLOTS];
    /** Guarded by this: the large values, and the free indexes below {@code largeTop}. */
    private byte[][] large;
    private int largeTop;
    private int[] largeFree;
    private int largeFreeCount;
    /** Guarded by this. */
    private int size;
    /** Guarded by this: the sum of the stored values' lengths (compaction's trigger). */
    private long valueBytes;

    Stripe(ValueArena arena) {
      this.arena = arena;
    }

    private static int home(int h, int mask) {
      return Integer.rotateRight(h, 8) & mask;
    }

    /** The slot of {@code key}, or -1. Caller holds the lock. */
    private int find(int key, int h) {
      int mask = keys.length - 1;
      for (int i = home(h, mask); ; i = (i + 1) & mask) {
        if (locs[i] == 0) {
          return -1;
        }
        if (keys[i] == key) {
          return i;
        }
      }
    }

    synchronized byte[] get(int key, int h) {
      int i = find(key, h);
      if (i < 0) {
        return null;
      }
      int loc = locs[i];
      return loc > 0 ? arena.read(loc) : large[-(loc + 1)];
    }

    synchronized boolean read(int key, int h, ValueReader reader) {
      int i = find(key, h);
      if (i < 0) {
        return false;
      }
      int loc = locs[i];
      if (loc > 0) {
        readLoc = loc;
        reader.small(arena.length(loc), this);
      } else {
        reader.large(large[-(loc + 1)]);
      }
      return true;
    }

    /** The copier of {@link #read}: called by its reader while this thread holds the lock. */
    @Override
    public void copyTo(byte[] dst, int off, int n) {
      arena.copy(readLoc, dst, off, n);
    }

    private int lengthOf(int loc) {
      return loc > 0 ? arena.length(loc) : large[-(loc + 1)].length;
    }

    /** Stores a value where it belongs; returns its location. Caller holds the lock. */
    private int place(byte[] value) {
      if (ValueArena.fits(value.length)) {
        return arena.store(value);
      }
      int idx;
      if (largeFreeCount > 0) {
        idx = largeFree[--largeFreeCount];
      } else {
        if (large == null) {
          large = new byte[4][];
          largeFree = new int[4];
        } else if (largeTop == large.length) {
          large = java.util.Arrays.copyOf(large, largeTop * 2);
          largeFree = java.util.Arrays.copyOf(largeFree, largeTop * 2);
        }
        idx = largeTop++;
      }
      large[idx] = value;
      return -(idx + 1);
    }

    /**
     * Stores the value, then tells the callback; if either fails, nothing is left behind (the
     * store is unchanged and the exception propagates). Caller holds the lock.
     */
    private int placeAndLog(int key, byte[] value, Mutation onApplied) {
      int loc = place(value);
      if (onApplied != null) {
        try {
          onApplied.applied(key, value);
        } catch (RuntimeException | Error e) {
          release(loc);
          throw e;
        }
      }
      return loc;
    }

    /** Releases what a location holds. Caller holds the lock. */
    private void release(int loc) {
      if (loc > 0) {
        arena.free(loc);
      } else {
        int idx = -(loc + 1);
        large[idx] = null;
        largeFree[largeFreeCount++] = idx;
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
      for (; locs[i] != 0; i = (i + 1) & mask) {
        if (keys[i] == key) {
          if (replace) {
            int loc = placeAndLog(key, value, onApplied);
            int old = locs[i];
            valueBytes += value.length - lengthOf(old);
            locs[i] = loc;
            release(old);
          }
          return true;
        }
      }
      int loc = placeAndLog(key, value, onApplied);
      if ((size + 1) * 4L > keys.length * 3L && keys.length < MAX_STRIPE_SLOTS) {
        grow();
        insertNew(key, h, loc);
      } else {
        keys[i] = key;
        locs[i] = loc;
      }
      size++;
      valueBytes += value.length;
      return false;
    }

    synchronized boolean remove(int key, int h, Mutation onApplied) {
      int i = find(key, h);
      if (i < 0) {
        return false;
      }
      if (onApplied != null) {
        onApplied.applied(key, null);
      }
      valueBytes -= lengthOf(locs[i]);
      release(locs[i]);
      // Backward-shift deletion: walk the rest of the probe run and move back every entry whose
      // home slot is not cyclically within (i, j], so that no lookup meets a false gap.
      int mask = keys.length - 1;
      int j = i;
      while (true) {
        j = (j + 1) & mask;
        if (locs[j] == 0) {
          break;
        }
        int k = home(mix(keys[j]), mask);
        boolean stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
          keys[i] = keys[j];
          locs[i] = locs[j];
          i = j;
        }
      }
      locs[i] = 0;
      size--;
      return true;
    }

    public synchronized int size() {
      return size;
    }

    synchronized long valueBytes() {
      return valueBytes;
    }

    public synchronized void forEach(EntryVisitor visitor) {
      for (int i = 0; i < locs.length; i++) {
        if (locs[i] != 0) {
          visitor.visit(keys[i], locs[i] > 0 ? arena.read(locs[i]) : large[-(locs[i] + 1)]);
        }
      }
    }

    synchronized StripeSnapshot snapshot() {
      int[] k = new int[size];
      byte[][] v = new byte[size][];
      int n = 0;
      for (int i = 0; i < locs.length; i++) {
        if (locs[i] != 0) {
          k[n] = keys[i];
          v[n] = locs[i] > 0 ? arena.read(locs[i]) : large[-(locs[i] + 1)];
          n++;
        }
      }
      return new StripeSnapshot(k, v, n);
    }

    /** Caller holds the lock. Doubles the table and reinserts every entry. */
    private void grow() {
      int[] oldKeys = keys;
      int[] oldLocs = locs;
      keys = new int[oldKeys.length * 2];
      locs = new int[oldKeys.length * 2];
      for (int i = 0; i < oldLocs.length; i++) {
        if (oldLocs[i] != 0) {
          insertNew(oldKeys[i], mix(oldKeys[i]), oldLocs[i]);
        }
      }
    }

    /** Caller holds the lock and knows the key is absent and a slot is free. */
    private void insertNew(int key, int h, int loc) {
      int mask = keys.length - 1;
      int i = home(h, mask);
      while (locs[i] != 0) {
        i = (i + 1) & mask;
      }
      keys[i] = key;
      locs[i] = loc;
    }
  }
}
