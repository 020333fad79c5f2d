package io.psiskv.server.control;

import static io.psiskv.protocol.Protocol.HEADER_BYTES;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.server.ServerConfig;
import io.psiskv.server.ServerLog;
import io.psiskv.server.ServerLogSummary;
import io.psiskv.server.Sockets;
import java.io.Closeable;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.ArrayDeque;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The Front Server's control listener (127.0.0.1, an ephemeral port) and the handshakes of the
 * connections it accepts (PROTOCOL.md §7.1). The Data Server being launched is named by {@link
 * #expect}; a connection that proves it is that process's gets handed over in its {@link
 * Awaited}, every other one is rejected and closed.
 *
 * <p><b>Threads.</b> The {@code control-acceptor} thread, for the Front Server's life: accepts
 * every control connection at once (so the listen backlog never fills, however many connect) and
 * gives each its own short-lived {@code control-handshake} thread ({@link #handshake}). A
 * connection is closed {@value ServerConfig#CONTROL_HANDSHAKE_TIMEOUT_MILLIS} ms after its accept
 * unless its handshake completed; at most {@value ServerConfig#MAX_CONTROL_HANDSHAKES} are in
 * progress at once, and one more closes the oldest. So no number of silent or forged connections
 * delays the real child, which completes its handshake within milliseconds of connecting. Ends
 * when the listener is closed ({@link #close}, the stop).
 */
public final class ControlAcceptor implements Closeable {
  /** A control connection that proved it is {@code peer}'s, with the client port it announced. */
  public static final class Handshake {
    public final ControlLink link;
    public final int clientPort;

    Handshake(ControlLink link, int clientPort) {
      this.link = link;
      this.clientPort = clientPort;
    }
  }

  /** The peer whose INIT is awaited, and where its handshake is handed over. */
  public static final class Awaited {
    final Supervisor.Peer peer;
    public final CompletableFuture<Handshake> won = new CompletableFuture<>();

    public Awaited(Supervisor.Peer peer) {
      this.peer = peer;
    }
  }

  private final ServerSocket server;
  /** The pair secret (PROTOCOL.md §7.1) the peer must prove. */
  private final ControlAuth auth;
  private final ServerLogSummary controlLog = new ServerLogSummary("control connections",
      ServerConfig.LOG_SUMMARY_INTERVAL_MILLIS, ServerLog::info);
  private final ServerLogSummary.Kind controlRejections = controlLog.detailedKind(
      "more rejected", ServerConfig.LOG_PROBLEM_LINES_PER_INTERVAL);
  /** The Data Server whose INIT is awaited ({@link #expect}), or null. */
  private volatile Awaited awaited;

  /** Opens the listener; {@link #start} starts accepting. */
  public ControlAcceptor(ControlAuth auth) throws IOException {
    this.auth = auth;
    this.server = new ServerSocket(0, ServerConfig.CONTROL_LISTEN_BACKLOG,
        InetAddress.getLoopbackAddress());
  }

  /** The control port, which a launched Data Server gets as {@code --control-port}. */
  public int port() {
    return server.getLocalPort();
  }

  public void start() {
    Thread controlAcceptor = new Thread(this::acceptControl, "control-acceptor");
    controlAcceptor.setDaemon(true);
    controlAcceptor.start();
  }

  /**
   * Names the Data Server whose INIT is awaited: its handshake completes {@code w.won}. Null: no
   * Data Server is starting, and every INIT is rejected.
   */
  public void expect(Awaited w) {
    awaited = w;
  }

  /** Closes the listener, which ends the {@code control-acceptor} thread. */
  @Override
  public void close() {
    Sockets.closeQuietly(server);
  }

  /** The {@code control-acceptor} thread: see the class comment. */
  private void acceptControl() {
    ArrayDeque<Attempt> attempts = new ArrayDeque<>(); // Oldest first; guarded by itself.
    while (true) {
      Socket socket;
      try {
        socket = server.accept();
      } catch (IOException e) {
        if (server.isClosed()) {
          return;
        }
        ServerLog.warn("control accept failed, retrying in " + ServerConfig.FRONT_ACCEPT_RETRY_MILLIS
            + " ms: " + ServerLog.describe(e));
        try {
          // A back-off, not a synchronisation.
          Thread.sleep(ServerConfig.FRONT_ACCEPT_RETRY_MILLIS);
        } catch (InterruptedException ie) {
          return;
        }
        continue;
      }
      Attempt attempt = new Attempt(socket);
      synchronized (attempts) {
        if (attempts.size() >= ServerConfig.MAX_CONTROL_HANDSHAKES) {
          attempts.pollFirst().end("closed for a newer one: "
              + ServerConfig.MAX_CONTROL_HANDSHAKES + " control handshakes at once");
        }
        attempts.addLast(attempt);
      }
      CompletableFuture.delayedExecutor(
              ServerConfig.CONTROL_HANDSHAKE_TIMEOUT_MILLIS, TimeUnit.MILLISECONDS)
          .execute(() -> attempt.end("no handshake within "
              + ServerConfig.CONTROL_HANDSHAKE_TIMEOUT_MILLIS + " ms"));
      Thread t = new Thread(() -> {
        try {
          handshake(attempt);
        } finally {
          synchronized (attempts) {
            attempts.remove(attempt);
          }
        }
      }, "control-handshake");
      t.setDaemon(true);
      t.start();
    }
  }

  /**
   * One accepted control connection until its handshake ends: completed ({@link #succeed}), or
   * ended by its deadline, an eviction or a failure ({@link #end}), whichever comes first; the
   * other then does nothing. One log line (rate-limited) says why a connection was rejected.
   */
  private final class Attempt {
    final Socket socket;
    private final AtomicBoolean ended = new AtomicBoolean();

    Attempt(Socket socket) {
      this.socket = socket;
    }

    /** The handshake completed: the deadline and evictions no longer apply. False if too late. */
    boolean succeed() {
      return ended.compareAndSet(false, true);
    }

    /** Rejects the connection and closes it, unless its handshake already ended. */
    void end(String why) {
      if (ended.compareAndSet(false, true)) {
        controlRejected(socket, why);
        Sockets.closeQuietly(socket);
      }
    }
  }

  /**
   * One control connection's handshake (its own thread): CHALLENGE, then an INIT whose MAC proves
   * the pair secret and whose pid is that of the peer {@link #expect} names, then INIT OK with
   * this side's proof. The attempt's deadline closes the socket, which ends a read in progress.
   */
  private void handshake(Attempt attempt) {
    ControlLink link = null;
    try {
      link = new ControlLink(attempt.socket, "data server");
      byte[] n1 = ControlAuth.nonce();
      link.sendChallenge(n1);
      Header h = link.read();
      if (!ControlLink.isRequest(h, Opcode.INIT)) {
        throw new IOException("expected INIT, got " + h);
      }
      int port = Header.getU16(link.body(), HEADER_BYTES);
      long pid = Header.getU64(link.body(), HEADER_BYTES + 2);
      byte[] n2 = link.bodyBytes(10, Protocol.NONCE_BYTES);
      byte[] mac = link.bodyBytes(10 + Protocol.NONCE_BYTES, Protocol.MAC_BYTES);
      if (!ControlAuth.matches(auth.initMac(n1, port, pid, n2), mac)) {
        throw new IOException("INIT with a wrong MAC (not the pair's process)");
      }
      Awaited w = awaited;
      if (w == null || pid != w.peer.pid()) {
        throw new IOException("INIT from pid " + pid + ", expected " + (w == null
            ? "none (no data server is starting)" : w.peer.pid()));
      }
      long self = ProcessHandle.current().pid();
      link.sendInitOk(h.requestId, self, auth.initOkMac(n2, self, n1));
      if (!attempt.succeed()) {
        throw new IOException("handshake completed after its deadline");
      }
      if (!w.won.complete(new Handshake(link, port))) {
        link.close(); // A second valid INIT from the same child: the first one stands.
      }
    } catch (IOException | RuntimeException e) {
      attempt.end(ServerLog.describe(e));
      if (link != null) {
        link.close();
      }
    }
  }

  private void controlRejected(Socket socket, String why) {
    if (controlLog.record(controlRejections)) {
      ServerLog.warn("control connection from " + Sockets.peer(socket) + " rejected: " + why);
    }
  }
}
