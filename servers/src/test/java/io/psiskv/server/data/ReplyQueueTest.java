package io.psiskv.server.data;

import static com.google.common.truth.Truth.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.util.Arrays;
import org.junit.jupiter.api.Test;

/**
 * {@link ReplyQueue}: bytes and referenced values leave in order whatever the channel takes per
 * call, at most {@link ReplyQueue#WRITE_MAX_BYTES} per call, and the buffer goes back to the pool
 * once everything is written.
 */
class ReplyQueueTest {
  private final ByteArrayPool pool = new ByteArrayPool(64, 2);

  private static byte[] bytes(int n, int seed) {
    byte[] b = new byte[n];
    for (int i = 0; i < n; i++) {
      b[i] = (byte) (seed + i);
    }
    return b;
  }

  /** Queues bytes, a value, bytes, a value, bytes; returns what must come out. */
  private byte[] fill(ReplyQueue q, byte[] v1, byte[] v2) {
    ByteArrayOutputStream expected = new ByteArrayOutputStream();
    for (int part = 0; part < 3; part++) {
      byte[] b = bytes(10, part * 10);
      int at = q.claim(b.length);
      System.arraycopy(b, 0, q.buffer(), at, b.length);
      expected.write(b, 0, b.length);
      byte[] v = part == 0 ? v1 : part == 1 ? v2 : null;
      if (v != null) {
        q.value(v, v.length);
        expected.write(v, 0, v.length);
      }
    }
    return expected.toByteArray();
  }

  @Test
  void everythingLeavesInOrderWhateverTheChannelTakesPerCall() throws IOException {
    for (int perCall : new int[] {1, 3, 7, 25, 1000, Integer.MAX_VALUE}) {
      ReplyQueue q = new ReplyQueue(pool);
      byte[] expected = fill(q, bytes(100, 1), bytes(5, 2));
      HandlerHarness.MemoryChannel ch = new HandlerHarness.MemoryChannel(perCall);
      while (!q.writeTo(ch)) {
        // A channel that takes a few bytes per call: write again, as on a writable event.
        ch.perCall = perCall;
      }
      assertThat(ch.toByteArray()).isEqualTo(expected);
      assertThat(q.isEmpty()).isTrue();
    }
  }

  @Test
  void aLargeValueIsWrittenInSlices() throws IOException {
    ReplyQueue q = new ReplyQueue(pool);
    byte[] big = bytes(3 * ReplyQueue.WRITE_MAX_BYTES + 5, 9);
    byte[] expected = fill(q, big, new byte[0]);
    HandlerHarness.MemoryChannel ch = new HandlerHarness.MemoryChannel(Integer.MAX_VALUE);
    assertThat(q.writeTo(ch)).isTrue();
    assertThat(ch.toByteArray()).isEqualTo(expected);
    assertThat(ch.calls).isEqualTo(4);
  }

  @Test
  void theBufferReturnsToThePoolWhenEmptyAndIsReused() throws IOException {
    ReplyQueue q = new ReplyQueue(pool);
    q.claim(8);
    assertThat(pool.pooled()).isEqualTo(0);
    q.writeTo(new HandlerHarness.MemoryChannel(Integer.MAX_VALUE));
    assertThat(pool.pooled()).isEqualTo(1);
    assertThat(q.hasRoom(64)).isTrue();
    q.claim(64);
    assertThat(pool.pooled()).isEqualTo(0);
    assertThat(q.hasRoom(1)).isFalse();
  }

  @Test
  void answersWaitingForARecordMustBeSettledFirst() {
    ReplyQueue q = new ReplyQueue(pool);
    int at = q.claim(20);
    q.awaitRecord(at, 42);
    assertThat(q.needSeq()).isEqualTo(42);
    IllegalStateException e = org.junit.jupiter.api.Assertions.assertThrows(
        IllegalStateException.class,
        () -> q.writeTo(new HandlerHarness.MemoryChannel(Integer.MAX_VALUE)));
    assertThat(e).hasMessageThat().contains("settle first");
    q.awaitRecord(q.claim(20), 0); // 0 waits for nothing
    assertThat(q.needSeq()).isEqualTo(42);
    assertThat(Arrays.asList(q.isEmpty())).containsExactly(false);
  }
}
