package io.psiskv.bench;

import io.psiskv.client.KvClient;

/**
 * One blocking connection of the Java load ({@link JavaLoad}) to a store: the Java counterpart of
 * the C load generator's backend.h. Used by one thread. A failure is the client library's own
 * unchecked exception; the load counts it and connects again.
 */
interface LoadClient extends AutoCloseable {
  /** Reads the key into buffer; false if there is no such key. */
  boolean get(int key, byte[] buffer);

  /** Stores the value, replacing any earlier one. */
  void set(int key, byte[] value);

  @Override
  void close();

  /** Opens connections of one kind. */
  interface Factory {
    LoadClient connect(String host, int port);
  }

  /** psiskv through {@link KvClient}: {@code read} and {@code put}. */
  static LoadClient psiskv(String host, int port) {
    KvClient kv = KvClient.connect(host, port);
    return new LoadClient() {
      @Override
      public boolean get(int key, byte[] buffer) {
        return kv.read(key, buffer) >= 0;
      }

      @Override
      public void set(int key, byte[] value) {
        kv.put(key, value);
      }

      @Override
      public void close() {
        kv.close();
      }
    };
  }
}
