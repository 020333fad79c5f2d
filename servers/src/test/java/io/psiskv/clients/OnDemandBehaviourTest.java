package io.psiskv.clients;

import io.psiskv.server.testkit.ServerFixture;
import org.junit.jupiter.api.extension.RegisterExtension;

/** The behaviour suite against servers with a thread per connection. */
class OnDemandBehaviourTest extends ClientBehaviourSuite {
  @RegisterExtension
  static final ServerFixture SERVER = ServerFixture.builder()
      .threads("on-demand").args("--max-value-bytes", MAX_VALUE_OPTION).build();

  @Override
  ServerFixture server() {
    return SERVER;
  }
}
