package io.psiskv.server;

import io.psiskv.protocol.Status;
import java.security.SecureRandom;

/**
 * What a data request does, apart from the socket: decoded fields in, a status (and for GET the
 * stored array) out. Connections call it from their own threads concurrently; it holds no lock of
 * its own, the {@link Store} does the locking.
 *
 * <p>This is the seam for the durability and exactly-once work: the backup log is appended from
 * the {@link Store.Mutation} callback, inside the stripe lock, so its record order per key equals
 * the apply order, and the reply must not be sent before the record is durable (the connection
 * sends it only after these methods return). The session table consults {@code (sessionId,
 * requestId)} of PUT and DELETE here, before the store is touched, to answer a retried write with
 * its original result. Today both are absent and the store is called directly.
 */
final class Engine {
  private final Store store;
  /** Session ids must not be guessable by another client, hence a CSPRNG. */
  private final SecureRandom random = new SecureRandom();

  Engine(Store store) {
    this.store = store;
  }

  Store store() {
    return store;
  }

  /**
   * SESSION (PROTOCOL.md §6.2): a fresh random non-zero id for 0, else the presented id (resume).
   */
  long openSession(long requested) {
    if (requested != 0) {
      return requested;
    }
    long id;
    do {
      id = random.nextLong();
    } while (id == 0);
    return id;
  }

  /** PUT (§6.4): OK, or KEY_EXISTS when {@code overwrite} is false and the key is present. */
  Status put(long sessionId, long requestId, int key, byte[] value, boolean overwrite) {
    if (overwrite) {
      store.put(key, value, null);
      return Status.OK;
    }
    return store.putIfAbsent(key, value, null) ? Status.OK : Status.KEY_EXISTS;
  }

  /** GET (§6.5): the stored array (never modify it), or null if absent. */
  byte[] get(int key) {
    return store.get(key);
  }

  /** DELETE (§6.6): OK if the key was present and is now removed, else NOT_FOUND. */
  Status delete(long sessionId, long requestId, int key) {
    return store.remove(key, null) ? Status.OK : Status.NOT_FOUND;
  }
}
