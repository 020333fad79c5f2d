package io.psiskv.clients;

import io.psiskv.client.KvClient;
import io.psiskv.client.KvException;
import java.util.Optional;

/** The two clients the behaviour suite runs against. */
enum Client {
  /** {@code libpsiskv.so} through JNA: exactly what a C program calls. */
  C {
    @Override
    Optional<KvApi> connect(String host, int port) {
      int d = NativePsiskv.LIB.kv_connect(host, port);
      return d > 0 ? Optional.of(new NativeKv(d)) : Optional.empty();
    }
  },
  /** {@link KvClient}, with its results mapped onto the C return codes. */
  JAVA {
    @Override
    Optional<KvApi> connect(String host, int port) {
      try {
        return Optional.of(new JavaKv(KvClient.connect(host, port)));
      } catch (KvException e) {
        return Optional.empty();
      }
    }
  };

  /** {@code kv_connect}: a connection, or empty where the C API returns -1. */
  abstract Optional<KvApi> connect(String host, int port);

  private static final class NativeKv implements KvApi {
    private final int d;

    NativeKv(int d) {
      this.d = d;
    }

    @Override
    public int write(int key, byte[] value, boolean overwrite) {
      return NativePsiskv.LIB.kv_write(d, key, value, value.length, overwrite ? 1 : 0);
    }

    @Override
    public int read(int key, byte[] buffer, int length) {
      return NativePsiskv.LIB.kv_read(d, key, buffer, length);
    }

    @Override
    public int delete(int key) {
      return NativePsiskv.LIB.kv_delete(d, key);
    }

    @Override
    public void close() {
      NativePsiskv.LIB.kv_close(d);
    }
  }

  private static final class JavaKv implements KvApi {
    private final KvClient kv;

    JavaKv(KvClient kv) {
      this.kv = kv;
    }

    @Override
    public int write(int key, byte[] value, boolean overwrite) {
      try {
        if (overwrite) {
          kv.put(key, value);
          return 0;
        }
        return kv.putIfAbsent(key, value) ? 0 : -2;
      } catch (KvException e) {
        return -1;
      }
    }

    @Override
    public int read(int key, byte[] buffer, int length) {
      try {
        byte[] into = new byte[length];
        int stored = kv.read(key, into);
        if (stored < 0) {
          return -2;
        }
        System.arraycopy(into, 0, buffer == null ? new byte[0] : buffer, 0,
            Math.min(stored, length));
        return stored;
      } catch (KvException e) {
        return -1;
      }
    }

    @Override
    public int delete(int key) {
      try {
        return kv.remove(key) ? 0 : -1;
      } catch (KvException e) {
        return -1;
      }
    }

    @Override
    public void close() {
      kv.close();
    }
  }
}
