package io.psiskv.server;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.psiskv.protocol.Protocol;
import io.psiskv.server.ServerConfig.Role;
import io.psiskv.server.ServerOptions.ConfigException;
import io.psiskv.server.backup.FsyncPolicy;
import io.psiskv.server.control.Supervisor;
import io.psiskv.server.front.Console;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

class ServerConfigTest {
  private static String error(Role role, String... args) {
    return assertThrows(ConfigException.class, () -> ServerOptions.parse(role, args)).getMessage();
  }

  @Test
  void defaults() throws Exception {
    ServerConfig c = ServerOptions.parse(Role.FRONT);
    assertThat(c.port).isEqualTo(9999);
    assertThat(c.bindAddress.getHostAddress()).isEqualTo("127.0.0.1");
    assertThat(c.dataDir).isEqualTo(Path.of("data").toAbsolutePath());
    assertThat(c.threads.kind()).isEqualTo(ServerConfig.ThreadPolicy.Kind.EVENT_LOOP);
    assertThat(c.threads.count()).isEqualTo(Runtime.getRuntime().availableProcessors());
    assertThat(c.threads.toString())
        .isEqualTo("event-loop:" + Runtime.getRuntime().availableProcessors());
    assertThat(c.maxValueBytes).isEqualTo(Protocol.DEFAULT_MAX_VALUE_BYTES);
    assertThat(c.controlPort).isEqualTo(-1);
    assertThat(c.maxConnections).isEqualTo(ServerConfig.DEFAULT_MAX_CONNECTIONS);
    assertThat(c.requestTimeoutMillis).isEqualTo(ServerConfig.DEFAULT_REQUEST_TIMEOUT_MILLIS);
    assertThat(c.idleTimeoutMillis).isEqualTo(ServerConfig.DEFAULT_IDLE_TIMEOUT_MILLIS);
    assertThat(c.bodyBudgetBytes).isEqualTo(ServerConfig.DEFAULT_BODY_BUDGET_BYTES);
    assertThat(c.hangTimeoutMillis).isEqualTo(ServerConfig.DEFAULT_HANG_TIMEOUT_MILLIS);
  }

  @Test
  void everyThreadPolicyParsesAndPrintsAsWritten() throws Exception {
    for (String policy : new String[] {"event-loop:3", "on-demand", "pool:4"}) {
      assertThat(ServerOptions.parse(Role.FRONT, "--threads", policy).threads.toString())
          .isEqualTo(policy);
    }
    assertThat(ServerOptions.parse(Role.FRONT, "--threads", "event-loop").threads)
        .isEqualTo(ServerConfig.ThreadPolicy.defaults());
  }

  @Test
  void limitsParse() throws Exception {
    ServerConfig c = ServerOptions.parse(Role.FRONT, "--max-connections", "7",
        "--request-timeout-ms=250", "--idle-timeout-ms", "300", "--body-budget-bytes",
        "8589934592", "--hang-timeout-ms", "30000");
    assertThat(c.maxConnections).isEqualTo(7);
    assertThat(c.hangTimeoutMillis).isEqualTo(30_000);
    assertThat(c.requestTimeoutMillis).isEqualTo(250);
    assertThat(c.idleTimeoutMillis).isEqualTo(300);
    assertThat(c.bodyBudgetBytes).isEqualTo(8L << 30);
  }

  @Test
  void optionsInBothSpellings() throws Exception {
    ServerConfig c = ServerOptions.parse(Role.FRONT, "--port=0", "--bind", "0.0.0.0",
        "--data-dir=/tmp/x/../y", "--threads", "pool:4", "--max-value-bytes", "1000");
    assertThat(c.port).isEqualTo(0);
    assertThat(c.bindAddress.isAnyLocalAddress()).isTrue();
    assertThat(c.dataDir).isEqualTo(Path.of("/tmp/y"));
    assertThat(c.threads).isEqualTo(
        new ServerConfig.ThreadPolicy(ServerConfig.ThreadPolicy.Kind.POOL, 4));
    assertThat(c.maxValueBytes).isEqualTo(1000);
  }

  @Test
  void helpReturnsNull() throws Exception {
    assertThat(ServerOptions.parse(Role.FRONT, "--port", "1", "--help")).isNull();
  }

  @Test
  void badValuesAreRefusedWithAClearMessage() {
    assertThat(error(Role.FRONT, "--port", "65536")).contains("--port must be an integer");
    assertThat(error(Role.FRONT, "--port", "x")).contains("not 'x'");
    assertThat(error(Role.FRONT, "--port")).contains("--port needs a value");
    assertThat(error(Role.FRONT, "--threads", "pool:0")).contains("pool:N must be an integer");
    assertThat(error(Role.FRONT, "--threads", "pool:10001")).contains("from 1 to 10000");
    assertThat(error(Role.FRONT, "--threads", "many"))
        .contains("event-loop[:N], on-demand or pool:N");
    assertThat(error(Role.FRONT, "--threads", "event-loop:0")).contains("from 1 to 256");
    assertThat(error(Role.FRONT, "--max-connections", "0")).contains("--max-connections must");
    assertThat(error(Role.FRONT, "--body-budget-bytes", "-1")).contains("--body-budget-bytes");
    assertThat(error(Role.FRONT, "--hang-timeout-ms", "1499"))
        .contains("--hang-timeout-ms must be an integer from " + Supervisor.HUNG_AFTER_MILLIS);
    assertThat(error(Role.FRONT, "--max-value-bytes", "2147483632"))
        .contains("from 0 to " + Protocol.MAX_VALUE_BYTES_LIMIT);
    assertThat(error(Role.FRONT, "--bind", "::1")).contains("IPv4");
    assertThat(error(Role.FRONT, "--data-dir", "")).contains("must not be empty");
    assertThat(error(Role.FRONT, "--verbose")).contains("unknown option '--verbose'");
    assertThat(error(Role.FRONT, "--control-port", "5")).contains("for the Data Server");
    assertThat(error(Role.DATA)).contains("--control-port is required");
    assertThat(error(Role.DATA, "--control-port", "5")).contains("--front-port is required");
    assertThat(error(Role.FRONT, "--front-port", "5")).contains("for the Data Server");
    assertThat(error(Role.DATA, "--control-port", "5", "--front-port", "6", "--adopt-data", "7"))
        .contains("for the Front Server");
    assertThat(error(Role.FRONT, "--port", "0", "--adopt-data", "7"))
        .contains("--adopt-data needs the exact --port");
  }

  @Test
  void dataServerArgsCarryEverySettingAcross() throws Exception {
    ServerConfig front = ServerOptions.parse(Role.FRONT, "--bind", "127.0.0.1", "--data-dir",
        "/tmp/d", "--threads", "pool:3", "--max-value-bytes", "77", "--fsync", "everysec",
        "--salvage", "--hang-timeout-ms", "4000");
    ServerConfig data = ServerOptions.parse(Role.DATA,
        front.dataServerArgs(4242, 9876).toArray(new String[0]));
    assertThat(data.bindAddress).isEqualTo(front.bindAddress);
    assertThat(data.dataDir).isEqualTo(front.dataDir);
    assertThat(data.threads.toString()).isEqualTo("pool:3");
    assertThat(data.maxValueBytes).isEqualTo(77);
    assertThat(data.fsync).isEqualTo(FsyncPolicy.EVERYSEC);
    assertThat(data.salvage).isTrue();
    assertThat(data.hangTimeoutMillis).isEqualTo(4000);
    assertThat(data.controlPort).isEqualTo(4242);
    assertThat(data.frontPort).isEqualTo(9876);
  }

  @Test
  void frontServerArgsOfARelaunchCarryEverySettingTheExactPortAndTheAdoption() throws Exception {
    ServerConfig data = ServerOptions.parse(Role.DATA, "--bind", "127.0.0.1", "--data-dir",
        "/tmp/d", "--threads", "pool:3", "--max-value-bytes", "77", "--fsync", "no",
        "--hang-timeout-ms", "4000", "--control-port", "5", "--front-port", "9876");
    ServerConfig front = ServerOptions.parse(Role.FRONT,
        data.frontServerArgs(4242).toArray(new String[0]));
    assertThat(front.port).isEqualTo(9876);
    assertThat(front.adoptDataPid).isEqualTo(4242);
    assertThat(front.bindAddress).isEqualTo(data.bindAddress);
    assertThat(front.dataDir).isEqualTo(data.dataDir);
    assertThat(front.threads.toString()).isEqualTo("pool:3");
    assertThat(front.maxValueBytes).isEqualTo(77);
    assertThat(front.fsync).isEqualTo(FsyncPolicy.NO);
    assertThat(front.salvage).isFalse();
    assertThat(front.hangTimeoutMillis).isEqualTo(4000);
    assertThat(ServerOptions.parse(Role.FRONT).adoptDataPid).isEqualTo(0);
  }

  @Test
  void serviceOptionsParseAndTravelToTheOtherProcess() throws Exception {
    ServerConfig front = ServerOptions.parse(Role.FRONT, "--no-console", "--log-file",
        "/tmp/x/../psiskv-test.log", "--log-level=WARN");
    assertThat(front.console).isEqualTo(Console.Mode.OFF);
    assertThat(front.logFile.toString()).isEqualTo("/tmp/psiskv-test.log");
    assertThat(front.logLevel).isEqualTo(ServerLog.Level.WARN);
    assertThat(ServerOptions.parse(Role.FRONT, "--console").console).isEqualTo(Console.Mode.ON);
    ServerConfig defaults = ServerOptions.parse(Role.FRONT);
    assertThat(defaults.console).isEqualTo(Console.Mode.AUTO);
    assertThat(defaults.logFile).isNull();
    assertThat(defaults.logLevel).isEqualTo(ServerLog.Level.INFO);

    ServerConfig data = ServerOptions.parse(Role.DATA,
        front.dataServerArgs(4242, 9876).toArray(new String[0]));
    assertThat(data.logFile).isEqualTo(front.logFile);
    assertThat(data.logLevel).isEqualTo(ServerLog.Level.WARN);
    ServerConfig relaunched = ServerOptions.parse(Role.FRONT,
        data.frontServerArgs(7).toArray(new String[0]));
    assertThat(relaunched.logFile).isEqualTo(front.logFile);
    assertThat(relaunched.logLevel).isEqualTo(ServerLog.Level.WARN);
  }

  @Test
  void serviceOptionsRefuseBadValues() {
    assertThat(error(Role.FRONT, "--log-level", "loud"))
        .isEqualTo("--log-level must be error, warn, info or debug, not 'loud'");
    assertThat(error(Role.FRONT, "--log-file=")).isEqualTo("--log-file must not be empty");
    assertThat(error(Role.FRONT, "--log-file")).contains("--log-file needs a value");
  }

  @Test
  void versionIsAskedForAndTheOptionsBeforeItAreStillChecked() throws Exception {
    assertThat(ServerOptions.parse(Role.FRONT, "--version").versionRequested).isTrue();
    assertThat(ServerOptions.parse(Role.DATA, "--version").versionRequested).isTrue();
    assertThat(ServerOptions.parse(Role.FRONT).versionRequested).isFalse();
    assertThat(error(Role.FRONT, "--port", "x", "--version")).contains("not 'x'");
    // Built by Maven, the classes carry the pom's version.
    assertThat(ServerConfig.version()).matches("\\d+\\.\\d+\\.\\d+.*");
  }

  @Test
  void theUsageNamesEveryOption() {
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    ServerOptions.printUsage(Role.FRONT, new java.io.PrintStream(out, true));
    String usage = out.toString();
    for (String option : new String[] {"--port", "--bind", "--data-dir", "--threads",
        "--max-connections", "--request-timeout-ms", "--idle-timeout-ms",
        "--pool-idle-timeout-ms", "--body-budget-bytes", "--max-sessions", "--hang-timeout-ms",
        "--max-value-bytes", "--fsync", "--salvage", "--log-file", "--log-level", "--console",
        "--no-console", "--version", "--help"}) {
      assertWithMessage(option).that(usage).contains("  " + option + " ");
    }
  }
}
