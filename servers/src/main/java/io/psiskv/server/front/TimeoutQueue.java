package io.psiskv.server.front;

/**
 * Items that share one timeout, in the order their clocks were last started: {@link #restart}
 * moves an item to the tail with the current time, so the head is always the first to expire.
 * Every operation is O(1) and allocates nothing; an item joins a queue through a {@link Node} it
 * owns, and one node is in at most one queue at a time.
 *
 * <p>The order holds because every restart uses {@code System.nanoTime()} of the moment, which
 * never goes backwards: a tail is never older than the items before it.
 *
 * <p>Not thread-safe: a queue and its nodes belong to one thread (the {@link FrontListener} loop).
 */
final class TimeoutQueue<T> {
  /** An item's place in a queue. */
  static final class Node<T> {
    final T item;
    private TimeoutQueue<T> queue;
    private Node<T> prev;
    private Node<T> next;
    private long startNanos;

    Node(T item) {
      this.item = item;
    }

    /** Leaves the queue it is in, if any. */
    void detach() {
      if (queue != null) {
        queue.unlink(this);
      }
    }

    boolean isQueued() {
      return queue != null;
    }
  }

  private final long timeoutNanos;
  private Node<T> head;
  private Node<T> tail;
  private int size;

  TimeoutQueue(long timeoutMillis) {
    this.timeoutNanos = timeoutMillis * 1_000_000L;
  }

  /** Starts {@code node}'s clock at {@code nowNanos}: it leaves its queue and joins this tail. */
  void restart(Node<T> node, long nowNanos) {
    node.detach();
    node.startNanos = nowNanos;
    node.queue = this;
    node.prev = tail;
    if (tail == null) {
      head = node;
    } else {
      tail.next = node;
    }
    tail = node;
    size++;
  }

  /** The item whose clock started first (the next to expire), or null if the queue is empty. */
  T oldest() {
    return head == null ? null : head.item;
  }

  /** The oldest item if its timeout has passed at {@code nowNanos}, else null. */
  T expired(long nowNanos) {
    return head != null && nowNanos - (head.startNanos + timeoutNanos) >= 0 ? head.item : null;
  }

  /**
   * Nanoseconds from {@code nowNanos} until the oldest item expires (0 if it has), or {@code
   * Long.MAX_VALUE} if the queue is empty.
   */
  long nanosToNextExpiry(long nowNanos) {
    return head == null ? Long.MAX_VALUE
        : Math.max(0, head.startNanos + timeoutNanos - nowNanos);
  }

  int size() {
    return size;
  }

  private void unlink(Node<T> node) {
    if (node.prev == null) {
      head = node.next;
    } else {
      node.prev.next = node.next;
    }
    if (node.next == null) {
      tail = node.prev;
    } else {
      node.next.prev = node.prev;
    }
    node.prev = null;
    node.next = null;
    node.queue = null;
    size--;
  }
}
