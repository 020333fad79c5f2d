package io.psiskv.bench;

import static java.nio.charset.StandardCharsets.US_ASCII;

import redis.clients.jedis.DefaultJedisClientConfig;
import redis.clients.jedis.HostAndPort;
import redis.clients.jedis.Jedis;

/**
 * Redis through Jedis: GET and SET, one {@link Jedis} connection (TCP_NODELAY is Jedis's default).
 * Keys are the key numbers in decimal, as the C load generator writes them. The only class that
 * needs Jedis on the classpath (it is not in psiskv-server.jar: servers/pom.xml).
 */
final class JedisLoadClient implements LoadClient {
  /** Jedis's default read timeout is 2 s; a loaded 2-core machine may answer slower. */
  private static final int SOCKET_TIMEOUT_MILLIS = 30_000;
  private static final int CONNECT_TIMEOUT_MILLIS = 3_000;

  private final Jedis jedis;

  private JedisLoadClient(Jedis jedis) {
    this.jedis = jedis;
  }

  static LoadClient connect(String host, int port) {
    Jedis jedis = new Jedis(new HostAndPort(host, port), DefaultJedisClientConfig.builder()
        .connectionTimeoutMillis(CONNECT_TIMEOUT_MILLIS)
        .socketTimeoutMillis(SOCKET_TIMEOUT_MILLIS)
        .build());
    jedis.ping(); // Connects now: an unreachable server fails here, not in the first operation.
    return new JedisLoadClient(jedis);
  }

  private static byte[] key(int key) {
    return Integer.toUnsignedString(key).getBytes(US_ASCII);
  }

  @Override
  public boolean get(int key, byte[] buffer) {
    byte[] value = jedis.get(key(key));
    if (value == null) {
      return false;
    }
    System.arraycopy(value, 0, buffer, 0, Math.min(value.length, buffer.length));
    return true;
  }

  @Override
  public void set(int key, byte[] value) {
    jedis.set(key(key), value);
  }

  @Override
  public void close() {
    jedis.close();
  }
}
