package io.psiskv.server.data;

import static com.google.common.truth.Truth.assertThat;

import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Status;
import io.psiskv.server.ServerConfig;
import io.psiskv.server.testkit.Poll;
import io.psiskv.server.testkit.RawClient;
import io.psiskv.server.testkit.ServerFixture;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The Data Server's limits under hostile load, on loopback, bounded in count and time: each test
 * asserts a cap or a close, and that a well-behaved client is served meanwhile; none asserts a
 * timing. The limits are set small here so that reaching them is quick; the defaults are in
 * {@link ServerConfig}.
 */
@Tag("process")
@Tag("server-pair")
class LimitsTest {
  private static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(20);

  @RegisterExtension
  final ServerFixture eventLoop = ServerFixture.builder().threads("event-loop").manualStart()
      .build();

  @RegisterExtension
  final ServerFixture limited = ServerFixture.builder().manualStart()
      .args("--max-connections", "20", "--idle-timeout-ms", "300", "--request-timeout-ms", "800")
      .build();

  @RegisterExtension
  final ServerFixture smallBudget = ServerFixture.builder().manualStart()
      .args("--body-budget-bytes", Integer.toString(1 << 20), "--request-timeout-ms", "20000")
      .maxValueBytes(4 << 20).build();

  /** A field of /proc/PID/status, e.g. "Threads" or "VmRSS" (kB), as a number. */
  private static long procStatus(long pid, String field) throws IOException {
    for (String line : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
      if (line.startsWith(field + ":")) {
        return Long.parseLong(line.substring(field.length() + 1).trim().split("\\s+")[0]);
      }
    }
    throw new IOException(field + " not in /proc/" + pid + "/status");
  }

  private static Socket connect(ServerFixture server) throws IOException {
    Socket s = new Socket();
    s.connect(new InetSocketAddress(server.host(), server.dataPort()), 10_000);
    s.setSoTimeout(20_000);
    return s;
  }

  private static void closeAll(List<Socket> sockets) {
    for (Socket s : sockets) {
      try {
        s.close();
      } catch (IOException e) {
        // Closing test sockets: nothing to do.
      }
    }
  }

  /** Whether the server closed {@code s}: a read gives end of stream (or a reset). */
  private static boolean closedByServer(Socket s) {
    try {
      InputStream in = s.getInputStream();
      while (true) {
        if (in.read() < 0) {
          return true;
        }
      }
    } catch (SocketTimeoutException e) {
      return false;
    } catch (IOException e) {
      return true; // Reset.
    }
  }

  private static void assertServed(ServerFixture server, int key) throws IOException {
    byte[] v = ("served " + key).getBytes(StandardCharsets.UTF_8);
    try (RawClient c = RawClient.session(server)) {
      assertThat(c.put(key, v, true)).isEqualTo(Status.OK);
      assertThat(c.getValue(key)).isEqualTo(v);
    }
  }

  @Test
  void idleConnectionsCostTheEventLoopNoThreadsAndLittleMemory() throws Exception {
    eventLoop.start();
    long pid = eventLoop.dataPid();
    assertServed(eventLoop, 1);
    long threadsBefore = procStatus(pid, "Threads");
    long rssBefore = procStatus(pid, "VmRSS");
    List<Socket> idle = new ArrayList<>();
    try {
      for (int i = 0; i < 2000; i++) {
        idle.add(connect(eventLoop));
      }
      try (RawClient probe = RawClient.session(eventLoop)) {
        assertThat(probe.ping().status()).isEqualTo(Status.OK); // All 2000 are registered.
      }
      assertServed(eventLoop, 2);
      assertThat(procStatus(pid, "Threads") - threadsBefore).isLessThan(10L);
      assertThat(procStatus(pid, "VmRSS") - rssBefore).isLessThan(64L * 1024); // kB
    } finally {
      closeAll(idle);
    }
  }

  @Test
  void connectionsOverTheLimitAreAnsweredUnavailableAndLoggedOncePerInterval() throws Exception {
    limited.start();
    List<RawClient> held = new ArrayList<>();
    try {
      for (int i = 0; i < 20; i++) {
        held.add(RawClient.session(limited));
      }
      for (int i = 0; i < 30; i++) {
        try (RawClient over = RawClient.data(limited)) {
          RawClient.Response r = over.sessionResponse(0, null);
          assertThat(r.status()).isEqualTo(Status.UNAVAILABLE);
          assertThat(over.closedByPeer()).isTrue();
        }
      }
      limited.awaitLog("refused with UNAVAILABLE at the limit of 20 open connections",
          CLOSE_TIMEOUT);
      long lines = limited.log().lines().filter(l -> l.contains("refused with UNAVAILABLE"))
          .count();
      assertThat(lines).isLessThan(3L); // A summary, not 30 lines.
      held.remove(0).close(); // Room for one again.
      Poll.require(CLOSE_TIMEOUT, () -> {
        try (RawClient again = RawClient.data(limited)) {
          return again.sessionResponse(0, null).status() == Status.OK;
        } catch (IOException e) {
          return false;
        }
      }, () -> "a connection was not accepted after one closed");
      for (RawClient c : held) {
        assertThat(c.ping().status()).isEqualTo(Status.OK);
      }
    } finally {
      for (RawClient c : held) {
        c.close();
      }
    }
  }

  @Test
  void aConnectionWithoutASessionIsClosedAfterTheIdleTimeout() throws Exception {
    limited.start();
    try (Socket silent = connect(limited); RawClient withSession = RawClient.session(limited)) {
      assertThat(closedByServer(silent)).isTrue();
      limited.awaitLog("closed after 300 ms without a session", CLOSE_TIMEOUT);
      // A connection with a session has no idle timeout (a pool thread's own aside, 5 s).
      assertThat(withSession.ping().status()).isEqualTo(Status.OK);
    }
  }

  @Test
  void aRequestDrippedByteByByteIsClosedAtItsWholeRequestDeadline() throws Exception {
    limited.start();
    byte[] put = RequestHandlerTest.concat(
        RawClient.header(Opcode.PUT, 0, 5, 99, 1000), new byte[1000]);
    try (RawClient dripper = RawClient.session(limited)) {
      // 200 bytes, one every 20 ms: the deadline (800 ms) passes long before the last.
      try {
        for (int i = 0; i < 200; i++) {
          dripper.send(Arrays.copyOfRange(put, i, i + 1));
          Thread.sleep(20); // The drip's pace, not a synchronisation.
        }
      } catch (IOException e) {
        // The server closed the connection: the sends fail.
      }
      assertThat(dripper.closedByPeer()).isTrue();
      limited.awaitLog("for not completing a request or taking its answer within 800 ms",
          CLOSE_TIMEOUT);
    }
    try (RawClient c = RawClient.session(limited)) {
      assertThat(c.getValue(5)).isNull(); // Nothing of the partial request was applied.
    }
    assertServed(limited, 6);
  }

  @Test
  void putHeadersClaimingHugeValuesPinNoMemory() throws Exception {
    eventLoop.start();
    long pid = eventLoop.dataPid();
    long rssBefore = procStatus(pid, "VmRSS");
    List<RawClient> liars = new ArrayList<>();
    try {
      for (int i = 0; i < 200; i++) {
        RawClient c = RawClient.session(eventLoop);
        liars.add(c);
        c.send(RequestHandlerTest.concat(
            RawClient.header(Opcode.PUT, 0, 1000 + i, 50, 64L << 20), new byte[10]));
      }
      assertServed(eventLoop, 7);
      // 200 claims of 64 MiB = 12.5 GiB; what arrived is 2,000 bytes.
      assertThat(procStatus(pid, "VmRSS") - rssBefore).isLessThan(128L * 1024); // kB
    } finally {
      for (RawClient c : liars) {
        c.close();
      }
    }
  }

  @Test
  void valuesLargerThanTheBodyBudgetWaitTheirTurnAndAllComplete() throws Exception {
    smallBudget.start();
    int len = 2 << 20; // Each value is twice the 1 MiB budget; four arrive at once.
    int clients = 4;
    ExecutorService pool = Executors.newFixedThreadPool(clients);
    try {
      List<Future<Status>> answers = new ArrayList<>();
      for (int i = 0; i < clients; i++) {
        int key = 20 + i;
        answers.add(pool.submit(() -> {
          byte[] value = new byte[len];
          Arrays.fill(value, (byte) key);
          try (RawClient c = RawClient.session(smallBudget)) {
            return c.put(key, value, true);
          }
        }));
      }
      for (Future<Status> a : answers) {
        assertThat(a.get(60, TimeUnit.SECONDS)).isEqualTo(Status.OK); // None failed.
      }
    } finally {
      pool.shutdownNow();
    }
    try (RawClient c = RawClient.session(smallBudget)) {
      for (int i = 0; i < clients; i++) {
        byte[] expected = new byte[len];
        Arrays.fill(expected, (byte) (20 + i));
        assertThat(c.getValue(20 + i)).isEqualTo(expected);
      }
    }
  }
}
