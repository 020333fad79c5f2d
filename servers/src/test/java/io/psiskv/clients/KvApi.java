package io.psiskv.clients;

/**
 * The C API's contract, as the behaviour suite sees every client: the same five calls and the same
 * return codes, whether the calls go to {@code libpsiskv.so} (through JNA) or to the Java {@link
 * io.psiskv.client.KvClient}. One suite, parameterised over {@link Client}, tests both.
 */
interface KvApi extends AutoCloseable {
  /** {@code kv_write}: 0 stored, -2 key exists and not {@code overwrite}, -1 error. */
  int write(int key, byte[] value, boolean overwrite);

  /**
   * {@code kv_read} into {@code buffer[0..length)}: the stored length (only {@code length} bytes
   * copied), -2 no such key, -1 error. {@code buffer} may be null when {@code length} is 0.
   */
  int read(int key, byte[] buffer, int length);

  /** {@code kv_delete}: 0 deleted, -1 no such key or error. */
  int delete(int key);

  /** {@code kv_close}. */
  @Override
  void close();
}
