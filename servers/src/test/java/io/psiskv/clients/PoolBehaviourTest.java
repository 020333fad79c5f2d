package io.psiskv.clients;

import io.psiskv.server.testkit.ServerFixture;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The behaviour suite against servers with a fixed pool of threads. The pool is larger than the
 * most connections any test holds open at once (64 clients plus one), since at most N clients are
 * served at a time in this mode.
 */
class PoolBehaviourTest extends ClientBehaviourSuite {
  @RegisterExtension
  static final ServerFixture SERVER = ServerFixture.builder()
      .threads("pool:72").args("--max-value-bytes", MAX_VALUE_OPTION).build();

  @Override
  ServerFixture server() {
    return SERVER;
  }
}
