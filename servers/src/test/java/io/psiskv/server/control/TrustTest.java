package io.psiskv.server.control;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;
import static java.nio.charset.StandardCharsets.UTF_8;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Status;
import io.psiskv.server.DataDirLock;
import io.psiskv.server.DataServer;
import io.psiskv.server.PidFile;
import io.psiskv.server.ServerConfig;
import io.psiskv.server.ServerLogProblems;
import io.psiskv.server.backup.BackupLog;
import io.psiskv.server.testkit.Poll;
import io.psiskv.server.testkit.RawClient;
import io.psiskv.server.testkit.ServerFixture;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The local threats of DESIGN.md §12 against a real pair, each tried as a local attacker would,
 * on loopback only: a forged or silent control connection, resuming another client's session and
 * the data directory's modes, the session table's bound, and log flooding. A request id reused
 * for another request is tried in {@code ExactlyOnceTest} and {@code EngineTest}, fork and a
 * reused descriptor in the C tests, a paused peer in {@code PausedPeerTest}.
 */
@Tag("process")
class TrustTest {
  private static final Duration RECOVERY = Duration.ofSeconds(30);
  private static final Duration TIMEOUT = Duration.ofSeconds(20);
  /** More than the handshakes the Front Server runs at once. */
  private static final int SILENT_CONTROL_CONNECTIONS = ServerConfig.MAX_CONTROL_HANDSHAKES + 8;
  private static final int GARBAGE_CONNECTIONS = 300;
  private static final Pattern CONTROL_PORT = Pattern.compile("--control-port\\s(\\d+)");

  @RegisterExtension
  final ServerFixture server = ServerFixture.builder()
      .jvmArgs("-D" + ServerLogProblems.INTERVAL_PROPERTY + "=1000")
      .build();

  /** The Front Server's control port, read where any local user can: the Data Server's argv. */
  private static int controlPort(long dataPid) {
    String cmd = ProcessHandle.of(dataPid).flatMap(p -> p.info().commandLine()).orElse("");
    Matcher m = CONTROL_PORT.matcher(cmd);
    assertWithMessage("the data server's command line: %s", cmd).that(m.find()).isTrue();
    return Integer.parseInt(m.group(1));
  }

  /** Live Data Servers of this pair's data directory other than {@code old}. */
  private Optional<Long> newDataServer(long old) {
    String dir = server.dataDir().toString();
    return ProcessHandle.allProcesses()
        .filter(p -> p.pid() != old)
        .filter(p -> p.info().commandLine()
            .map(c -> c.contains(DataServer.class.getName()) && c.contains(dir)).orElse(false))
        .map(ProcessHandle::pid)
        .findFirst();
  }

  /**
   * One forged handshake: reads the CHALLENGE (if any), answers INIT naming {@code pid} and a
   * client port of ours with a MAC made without the secret. True if the front answered INIT OK.
   */
  private static boolean forgeInit(int controlPort, long pid, int fakePort) {
    try (Socket s = new Socket()) {
      s.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), controlPort), 1_000);
      s.setSoTimeout(3_000);
      DataInputStream in = new DataInputStream(s.getInputStream());
      byte[] challenge = new byte[Protocol.HEADER_BYTES + Protocol.CHALLENGE_BODY_BYTES];
      in.readFully(challenge);
      SecureRandom r = new SecureRandom();
      byte[] nonce = new byte[Protocol.NONCE_BYTES];
      byte[] mac = new byte[Protocol.MAC_BYTES];
      r.nextBytes(nonce);
      r.nextBytes(mac);
      byte[] init = new byte[Messages.MAX_CONTROL_BYTES];
      s.getOutputStream().write(init, 0, Messages.init(init, 1, fakePort, pid, nonce, mac));
      byte[] answer = new byte[Protocol.HEADER_BYTES];
      in.readFully(answer);
      Header h = new Header();
      h.decode(answer, 0);
      return h.opcode == Opcode.INIT.code() && h.flagsOrStatus == Status.OK.code();
    } catch (IOException e) {
      return false; // Closed on us: refused.
    }
  }

  @Test
  void forgedAndSilentControlConnectionsNeitherRedirectClientsNorDelayTheRealDataServer()
      throws Exception {
    // A forged INIT that carries the new child's pid must be refused, and silent control
    // connections must not keep the service down.
    long old = server.dataPid();
    int controlPort = controlPort(old);
    List<Socket> silent = new ArrayList<>();
    try (ServerSocket fake = new ServerSocket(0, 50, InetAddress.getLoopbackAddress())) {
      fake.setSoTimeout(1);
      for (int i = 0; i < SILENT_CONTROL_CONNECTIONS; i++) {
        Socket s = new Socket();
        s.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), controlPort), 1_000);
        silent.add(s);
      }
      AtomicInteger forged = new AtomicInteger();
      AtomicInteger accepted = new AtomicInteger();
      for (int i = 0; i < 3; i++) { // With the live child's pid, public in /proc and data.pid.
        forged.incrementAndGet();
        if (forgeInit(controlPort, old, fake.getLocalPort())) {
          accepted.incrementAndGet();
        }
      }
      long t0 = System.nanoTime();
      server.dataProcess().destroyForcibly();
      Poll.require(RECOVERY, () -> {
        Optional<Long> child = newDataServer(old);
        if (child.isPresent() && server.dataPid() == old) {
          forged.incrementAndGet();
          if (forgeInit(controlPort, child.get(), fake.getLocalPort())) {
            accepted.incrementAndGet();
          }
        }
        return server.dataPid() != old && RawClient.servesClients(server);
      }, () -> "no new data server after pid " + old + "; log " + server.logFile());
      System.out.printf("measured: data server SIGKILL with %d silent control connections and %d"
          + " forged INITs -> clients served: %d ms%n", SILENT_CONTROL_CONNECTIONS, forged.get(),
          (System.nanoTime() - t0) / 1_000_000);
      assertThat(accepted.get()).isEqualTo(0);
      for (int i = 0; i < 20; i++) {
        try (RawClient front = RawClient.front(server)) {
          RawClient.Response r = front.hello();
          assertThat(r.status()).isEqualTo(Status.OK);
          assertThat(Header.getU16(r.body, 4)).isNotEqualTo(fake.getLocalPort());
        }
      }
      assertThrows(SocketTimeoutException.class, fake::accept);
      // Each silent connection got its CHALLENGE and was closed (its deadline, or evicted by a
      // newer one): none is kept.
      for (Socket s : silent) {
        s.setSoTimeout((int) TIMEOUT.toMillis());
        assertThat(s.getInputStream().readAllBytes().length)
            .isEqualTo(Protocol.HEADER_BYTES + Protocol.CHALLENGE_BODY_BYTES);
      }
    } finally {
      for (Socket s : silent) {
        s.close();
      }
    }
  }

  @Test
  void onlyTheOwnerResumesASessionAndTheDataDirectoryIsPrivate() throws Exception {
    // No other local process may resume a live session, or write under it (with request id
    // 2^63-1 it would make the owner's writes stale); nor read its id from the data directory.
    try (RawClient owner = RawClient.session(server)) {
      assertThat(owner.put(1, "mine".getBytes(UTF_8), true)).isEqualTo(Status.OK);
      try (RawClient thief = RawClient.data(server)) {
        byte[] guess = new byte[Protocol.SESSION_SECRET_BYTES];
        guess[0] = 1;
        assertThat(thief.sessionResponse(owner.sessionId(), guess).status())
            .isEqualTo(Status.FORBIDDEN);
        assertThat(thief.readEndOfStream()).isTrue();
      }
      assertThat(owner.put(2, "still mine".getBytes(UTF_8), true)).isEqualTo(Status.OK);
      assertThat(owner.getValue(2)).isEqualTo("still mine".getBytes(UTF_8));

      // The owner itself resuming from a second connection takes the session over: the older
      // connection is closed, and the session's writes go on from the new one.
      try (RawClient again = RawClient.data(server)) {
        assertThat(again.resume(owner.sessionId(), owner.sessionSecret()))
            .isEqualTo(owner.sessionId());
        Poll.require(TIMEOUT, owner::readEndOfStreamQuietly,
            () -> "the older connection of a resumed session stayed open");
        again.nextRequestId(1_000); // Above the owner's ids: the session's writes go on.
        assertThat(again.put(3, "resumed".getBytes(UTF_8), true)).isEqualTo(Status.OK);
      }
    }
    Path dir = server.dataDir();
    assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(dir)))
        .isEqualTo("rwx------");
    for (String name : new String[] {BackupLog.FILE_NAME, PidFile.DATA, PidFile.FRONT,
        DataDirLock.FILE_NAME}) {
      assertWithMessage(name)
          .that(PosixFilePermissions.toString(Files.getPosixFilePermissions(dir.resolve(name))))
          .isEqualTo("rw-------");
    }
  }

  @Test
  void sessionsThatNeverWroteLeaveNoEntry() throws Exception {
    // Open-and-close sessions leave no entry: a session is kept only once it writes.
    for (int i = 0; i < 500; i++) {
      try (RawClient c = RawClient.session(server)) {
        c.ping();
      }
    }
    try (RawClient writer = RawClient.session(server)) {
      assertThat(writer.put(9, new byte[] {9}, true)).isEqualTo(Status.OK);
    }
    // Counted once the connections' closes have been seen: one session, the writer's.
    Poll.require(TIMEOUT, () -> sessionsInStatus() == 1,
        () -> "sessions in STATUS: " + sessionsInStatus() + "; log " + server.logFile());
  }

  private long sessionsInStatus() {
    int before = server.stdoutLines().size();
    server.console("status");
    Pattern p = Pattern.compile("store: \\d+ keys, \\d+ value bytes, (\\d+) sessions");
    long[] found = {-1};
    Poll.require(TIMEOUT, () -> {
      List<String> lines = server.stdoutLines();
      for (int i = before; i < lines.size(); i++) {
        Matcher m = p.matcher(lines.get(i));
        if (m.find()) {
          found[0] = Long.parseLong(m.group(1));
          return true;
        }
      }
      return false;
    }, () -> "no status line");
    return found[0];
  }

  @Test
  void garbageFromManyConnectionsIsLoggedWithinTheRateLimitAndEveryProblemIsCounted()
      throws Exception {
    // Bad connections do not each cost a log line: the lines are limited per interval and the
    // rest counted in a summary.
    InetSocketAddress data = RawClient.redirect(server);
    byte[] garbage = "GET / HTTP/1.1\r\nHost: psiskv\r\n\r\n".getBytes(UTF_8);
    for (int i = 0; i < GARBAGE_CONNECTIONS; i++) {
      try (Socket s = new Socket(data.getHostString(), data.getPort())) {
        s.setSoTimeout(5_000);
        s.getOutputStream().write(garbage);
        InputStream in = s.getInputStream();
        byte[] answer = in.readNBytes(Protocol.HEADER_BYTES);
        assertThat(answer).hasLength(Protocol.HEADER_BYTES);
        assertThat(Status.of(answer[3] & 0xFF)).isEqualTo(Status.BAD_REQUEST);
      }
    }
    Pattern summary = Pattern.compile("data connections: (\\d+) more protocol violations");
    Poll.require(TIMEOUT, () -> {
      String log = server.log();
      long ownLines = log.lines().filter(l -> l.contains("data connection 127.0.0.1:")
          && l.contains("bad magic")).count();
      long counted = 0;
      for (Matcher m = summary.matcher(log); m.find(); ) {
        counted += Long.parseLong(m.group(1));
      }
      return ownLines + counted == GARBAGE_CONNECTIONS;
    }, () -> "the log does not account for " + GARBAGE_CONNECTIONS + " bad connections: "
        + server.logFile());
    String log = server.log();
    long ownLines = log.lines().filter(l -> l.contains("bad magic")).count();
    long windows = log.lines().filter(l -> summary.matcher(l).find()).count();
    // At most the allowance per window, and at least one window was summarised.
    assertThat(windows).isAtLeast(1);
    assertThat(ownLines).isAtMost((windows + 1) * ServerConfig.LOG_PROBLEM_LINES_PER_INTERVAL);
    assertThat(RawClient.servesClients(server)).isTrue();
  }

  private static <T extends Throwable> void assertThrows(Class<T> type,
      org.junit.jupiter.api.function.Executable e) {
    org.junit.jupiter.api.Assertions.assertThrows(type, e);
  }
}
