package io.psiskv.server.store;

import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Off-heap memory for the small values of the {@link Store}, a slab allocator in the manner of
 * memcached's {@code slabs.c}: values of up to {@link #MAX_VALUE_BYTES} live in chunks of a few
 * fixed size classes, carved out of {@link #PAGE_BYTES} pages of direct memory, so that a stored
 * 100-byte value costs 104 bytes and no garbage-collector headroom (a heap array costs 120 bytes
 * plus the collector's slack).
 *
 * <p><b>Layout.</b> A chunk holds {@code u32 length | value bytes}. A location is an {@code int}:
 * the page number in the high 16 bits and the chunk's index in that page in the low 16 (every
 * chunk is at least 16 bytes, so a page has at most 65,536 chunks); location 0 is never handed
 * out, so a table may use 0 for "no value". Size classes step by 8 bytes up to 256, then by about
 * 6%, so a chunk wastes at most ~6% beyond the 4-byte length. Each page belongs to one class for
 * life; a freed chunk goes on its class's free list (its first 4 bytes then hold the next free
 * location) and is reused before a new page is taken. Pages are not returned to the OS: the store
 * reuses them (memcached's rule too); DESIGN.md §3 states the bound.
 *
 * <p><b>Threads.</b> Allocation and freeing lock the size class (never two at once). Reading and
 * writing a chunk's bytes take no lock: the {@link Store} stripe that owns the location orders
 * them (the writer fills a chunk before it publishes the location under the stripe lock; a
 * reader copies under the same lock; a location is freed under it too, so no reader sees a reused
 * chunk). The page table is written under a class lock before any location in the page is
 * published, and read through such a location.
 */
public final class ValueArena {
  /** Values up to this length live here; longer ones stay heap arrays (sent without a copy). */
  public static final int MAX_VALUE_BYTES = 4096;
  /** Direct memory is taken from the OS in pages of this size. */
  static final int PAGE_BYTES = 1 << 20;
  /** The page table's size: 65,536 pages of 1 MiB, 64 GiB of small values. */
  static final int MAX_PAGES = 1 << 16;
  /** Bytes before a value in its chunk: its length. */
  static final int LENGTH_BYTES = 4;
  /** The smallest chunk: 16 bytes, so that a page's chunk index fits in 16 bits. */
  static final int MIN_CHUNK_BYTES = 16;

  /** Thrown when no page can be had (the page table is full or direct memory is exhausted). */
  static final class ArenaFullException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    ArenaFullException(String message) {
      super(message);
    }
  }

  /** One size class: its chunk size, free list and the page being carved. */
  private static final class SizeClass {
    final int chunkBytes;
    final int chunksPerPage;
    /** Guarded by this: the first free location, 0 if none. */
    int freeHead;
    /** Guarded by this: the page being carved (-1 none) and its next uncarved chunk. */
    int carvePage = -1;
    int carveNext;

    SizeClass(int chunkBytes) {
      this.chunkBytes = chunkBytes;
      this.chunksPerPage = PAGE_BYTES / chunkBytes;
    }
  }

  private final SizeClass[] classes;
  /** Size class index by (length + LENGTH_BYTES + 7) / 8, for chunk sizes up to the largest. */
  private final byte[] classByUnits;
  private final ByteBuffer[] pages = new ByteBuffer[MAX_PAGES];
  private final byte[] pageClass = new byte[MAX_PAGES];
  private final Object pagesLock = new Object();
  /** Guarded by pagesLock. */
  private int pageCount;
  private final AtomicLong chunkBytesInUse = new AtomicLong();

  ValueArena() {
    int[] sizes = chunkSizes();
    classes = new SizeClass[sizes.length];
    for (int i = 0; i < sizes.length; i++) {
      classes[i] = new SizeClass(sizes[i]);
    }
    int maxUnits = sizes[sizes.length - 1] / 8;
    classByUnits = new byte[maxUnits + 1];
    for (int units = 0, c = 0; units <= maxUnits; units++) {
      while (sizes[c] < units * 8) {
        c++;
      }
      classByUnits[units] = (byte) c;
    }
  }

  /** The chunk sizes: 16..256 by 8, then about 6% apart (multiples of 8) up to the largest value. */
  static int[] chunkSizes() {
    int largest = (MAX_VALUE_BYTES + LENGTH_BYTES + 7) & ~7;
    java.util.ArrayList<Integer> list = new java.util.ArrayList<>();
    for (int s = MIN_CHUNK_BYTES; s <= 256; s += 8) {
      list.add(s);
    }
    for (int s = 256; s < largest; ) {
      s = Math.min(largest, ((s + s / 16) + 7) & ~7);
      list.add(s);
    }
    int[] sizes = new int[list.size()];
    for (int i = 0; i < sizes.length; i++) {
      sizes[i] = list.get(i);
    }
    return sizes;
  }

  /** Whether a value of this length lives in the arena (else it stays a heap array). */
  static boolean fits(int length) {
    return length <= MAX_VALUE_BYTES;
  }

  /**
   * A location holding a copy of {@code value} (which must {@link #fits}); the caller publishes it
   * under its stripe lock and frees it with {@link #free} when it is replaced or removed.
   *
   * @throws ArenaFullException if no memory is left for a new page
   */
  int store(byte[] value) {
    SizeClass c = classes[classByUnits[(value.length + LENGTH_BYTES + 7) >>> 3]];
    int loc = allocate(c);
    ByteBuffer page = pages[loc >>> 16];
    int off = (loc & 0xFFFF) * c.chunkBytes;
    page.putInt(off, value.length);
    page.put(off + LENGTH_BYTES, value, 0, value.length);
    chunkBytesInUse.addAndGet(c.chunkBytes);
    return loc;
  }

  private int allocate(SizeClass c) {
    synchronized (c) {
      if (c.freeHead != 0) {
        int loc = c.freeHead;
        c.freeHead = pages[loc >>> 16].getInt((loc & 0xFFFF) * c.chunkBytes);
        return loc;
      }
      if (c.carvePage < 0 || c.carveNext == c.chunksPerPage) {
        c.carvePage = newPage(c);
        c.carveNext = c.carvePage == 0 ? 1 : 0; // Location 0 means "none".
      }
      return (c.carvePage << 16) | c.carveNext++;
    }
  }

  private int newPage(SizeClass c) {
    synchronized (pagesLock) {
      if (pageCount == MAX_PAGES) {
        throw new ArenaFullException("the value arena is full (" + MAX_PAGES + " pages of "
            + PAGE_BYTES + " bytes)");
      }
      ByteBuffer page;
      try {
        page = ByteBuffer.allocateDirect(PAGE_BYTES);
      } catch (OutOfMemoryError e) {
        throw new ArenaFullException("no direct memory for another value page: " + e.getMessage());
      }
      int index = pageCount++;
      pageClass[index] = (byte) indexOf(c);
      pages[index] = page;
      return index;
    }
  }

  private int indexOf(SizeClass c) {
    for (int i = 0; i < classes.length; i++) {
      if (classes[i] == c) {
        return i;
      }
    }
    throw new AssertionError();
  }

  /** Returns a location's chunk to its class; the caller holds the owning stripe's lock. */
  void free(int loc) {
    SizeClass c = classes[pageClass[loc >>> 16]];
    synchronized (c) {
      pages[loc >>> 16].putInt((loc & 0xFFFF) * c.chunkBytes, c.freeHead);
      c.freeHead = loc;
    }
    chunkBytesInUse.addAndGet(-c.chunkBytes);
  }

  /** The stored value's length. */
  int length(int loc) {
    return pages[loc >>> 16].getInt(offset(loc));
  }

  /** Copies {@code n} bytes of the value at {@code loc} into {@code dst[off..)}. */
  void copy(int loc, byte[] dst, int off, int n) {
    pages[loc >>> 16].get(offset(loc) + LENGTH_BYTES, dst, off, n);
  }

  /** A copy of the whole value. */
  byte[] read(int loc) {
    byte[] v = new byte[length(loc)];
    copy(loc, v, 0, v.length);
    return v;
  }

  private int offset(int loc) {
    return (loc & 0xFFFF) * classes[pageClass[loc >>> 16]].chunkBytes;
  }

  /** Bytes of the chunks holding values now. */
  long chunkBytesInUse() {
    return chunkBytesInUse.get();
  }

  /** Bytes of direct memory taken (pages, never returned). */
  long reservedBytes() {
    synchronized (pagesLock) {
      return (long) pageCount * PAGE_BYTES;
    }
  }
}
