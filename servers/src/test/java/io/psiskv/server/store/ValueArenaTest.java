package io.psiskv.server.store;

import static com.google.common.truth.Truth.assertThat;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** {@link ValueArena}: chunks by size class, exact copies, reuse after free, location 0 unused. */
class ValueArenaTest {
  private final ValueArena arena = new ValueArena();

  private static byte[] value(int length, int seed) {
    byte[] v = new byte[length];
    for (int i = 0; i < length; i++) {
      v[i] = (byte) (seed * 31 + i);
    }
    return v;
  }

  @Test
  void everyLengthUpToTheMaximumComesBackExactly() {
    for (int len = 0; len <= ValueArena.MAX_VALUE_BYTES; len += len < 300 ? 1 : 97) {
      byte[] v = value(len, len);
      int loc = arena.store(v);
      assertThat(loc).isNotEqualTo(0);
      assertThat(arena.length(loc)).isEqualTo(len);
      assertThat(arena.read(loc)).isEqualTo(v);
    }
    assertThat(ValueArena.fits(ValueArena.MAX_VALUE_BYTES)).isTrue();
    assertThat(ValueArena.fits(ValueArena.MAX_VALUE_BYTES + 1)).isFalse();
  }

  @Test
  void aHundredByteValueTakesA104ByteChunkAndSizeClassesWasteLittle() {
    arena.store(new byte[100]);
    assertThat(arena.chunkBytesInUse()).isEqualTo(104);
    int[] sizes = ValueArena.chunkSizes();
    for (int i = 1; i < sizes.length; i++) {
      assertThat(sizes[i] % 8).isEqualTo(0);
      assertThat((double) sizes[i] / sizes[i - 1]).isAtMost(1.0625 + 8.0 / sizes[i - 1]);
    }
    assertThat(sizes[sizes.length - 1])
        .isAtLeast(ValueArena.MAX_VALUE_BYTES + ValueArena.LENGTH_BYTES);
  }

  @Test
  void freedChunksAreReusedBeforeANewPage() {
    List<Integer> locs = new ArrayList<>();
    for (int i = 0; i < 20_000; i++) { // 2 MB of 104-byte chunks: two pages and a bit.
      locs.add(arena.store(value(100, i)));
    }
    long reserved = arena.reservedBytes();
    for (int loc : locs) {
      arena.free(loc);
    }
    assertThat(arena.chunkBytesInUse()).isEqualTo(0);
    Set<Integer> again = new HashSet<>();
    for (int i = 0; i < 20_000; i++) {
      again.add(arena.store(value(100, -i)));
    }
    assertThat(arena.reservedBytes()).isEqualTo(reserved);
    assertThat(again).containsExactlyElementsIn(locs);
  }
}
