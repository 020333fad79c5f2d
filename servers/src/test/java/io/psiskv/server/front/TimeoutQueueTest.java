package io.psiskv.server.front;

import static com.google.common.truth.Truth.assertThat;

import org.junit.jupiter.api.Test;

/** {@link TimeoutQueue}: expiry order, restarts, removal, and a node moving between queues. */
class TimeoutQueueTest {
  private static final long MS = 1_000_000L;
  /** Near the wrap of nanoTime values: the queue must compare by difference. */
  private static final long T0 = Long.MAX_VALUE - 50 * MS;

  @Test
  void theOldestExpiresFirstAndARestartMovesAnItemToTheTail() {
    TimeoutQueue<String> q = new TimeoutQueue<>(100);
    TimeoutQueue.Node<String> a = new TimeoutQueue.Node<>("a");
    TimeoutQueue.Node<String> b = new TimeoutQueue.Node<>("b");
    TimeoutQueue.Node<String> c = new TimeoutQueue.Node<>("c");
    q.restart(a, T0);
    q.restart(b, T0 + 10 * MS);
    q.restart(c, T0 + 20 * MS);
    assertThat(q.oldest()).isEqualTo("a");
    assertThat(q.nanosToNextExpiry(T0 + 40 * MS)).isEqualTo(60 * MS);
    assertThat(q.expired(T0 + 99 * MS)).isNull();

    q.restart(a, T0 + 30 * MS); // a's clock starts again: b is now the oldest.
    assertThat(q.size()).isEqualTo(3);
    assertThat(q.expired(T0 + 110 * MS)).isEqualTo("b");
    b.detach();
    assertThat(q.expired(T0 + 110 * MS)).isNull(); // c expires at 120, a at 130.
    assertThat(q.expired(T0 + 120 * MS)).isEqualTo("c");
    c.detach();
    assertThat(q.expired(T0 + 130 * MS)).isEqualTo("a");
    a.detach();
    assertThat(q.size()).isEqualTo(0);
    assertThat(q.oldest()).isNull();
    assertThat(q.nanosToNextExpiry(T0)).isEqualTo(Long.MAX_VALUE);
  }

  @Test
  void aNodeIsInOneQueueAtATime() {
    TimeoutQueue<String> requests = new TimeoutQueue<>(2_000);
    TimeoutQueue<String> linger = new TimeoutQueue<>(250);
    TimeoutQueue.Node<String> n = new TimeoutQueue.Node<>("n");
    TimeoutQueue.Node<String> m = new TimeoutQueue.Node<>("m");
    requests.restart(n, T0);
    requests.restart(m, T0 + MS);
    linger.restart(n, T0 + 2 * MS);
    assertThat(requests.size()).isEqualTo(1);
    assertThat(requests.oldest()).isEqualTo("m");
    assertThat(linger.oldest()).isEqualTo("n");
    assertThat(linger.expired(T0 + 252 * MS)).isEqualTo("n");
    n.detach();
    n.detach(); // Detaching twice is harmless.
    assertThat(n.isQueued()).isFalse();
    assertThat(linger.size()).isEqualTo(0);
    assertThat(requests.size()).isEqualTo(1);
  }
}
