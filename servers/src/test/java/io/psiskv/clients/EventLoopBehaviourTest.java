package io.psiskv.clients;

import io.psiskv.server.testkit.ServerFixture;
import org.junit.jupiter.api.extension.RegisterExtension;

/** The behaviour suite against servers with the default policy: a few event loops. */
class EventLoopBehaviourTest extends ClientBehaviourSuite {
  @RegisterExtension
  static final ServerFixture SERVER = ServerFixture.builder()
      .threads("event-loop").args("--max-value-bytes", MAX_VALUE_OPTION).build();

  @Override
  ServerFixture server() {
    return SERVER;
  }
}
