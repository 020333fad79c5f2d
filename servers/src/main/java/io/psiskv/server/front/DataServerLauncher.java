package io.psiskv.server.front;

import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.server.DataServer;
import io.psiskv.server.Deadlines;
import io.psiskv.server.FrontServer;
import io.psiskv.server.ServerConfig;
import io.psiskv.server.ServerLog;
import io.psiskv.server.control.ControlAcceptor;
import io.psiskv.server.control.ControlAuth;
import io.psiskv.server.control.ControlLink;
import io.psiskv.server.control.JavaCommand;
import io.psiskv.server.control.PeerLinkHandler;
import io.psiskv.server.control.Supervisor;
import java.io.IOException;
import java.net.ProtocolException;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The Front Server's launcher of Data Servers ({@link Supervisor.Launcher}): starts one as a
 * child process (the same java binary and classpath, no shell, {@code --control-port} and {@code
 * --front-port}), writes the pair secret to its stdin, waits up to {@value
 * ServerConfig#DATA_START_TIMEOUT_MILLIS} ms for its authenticated INIT (the {@link
 * ControlAcceptor} runs the handshake), links its control connection and makes it the endpoint
 * HELLO redirects to. Runs at start on the main thread, later on the supervisor's; an adopted
 * start uses {@link #awaitInit} alone.
 */
public final class DataServerLauncher {
  private final FrontServer front;
  private final ServerConfig config;
  private final Supervisor supervisor;
  /** The pair secret (PROTOCOL.md §7.1), handed to every Data Server launched. */
  private final ControlAuth auth;
  private final ControlAcceptor acceptor;
  /** The Front Server's client port, which a launched Data Server gets as {@code --front-port}. */
  private final int frontPort;

  public DataServerLauncher(FrontServer front, ServerConfig config, Supervisor supervisor,
      ControlAuth auth, ControlAcceptor acceptor, int frontPort) {
    this.front = front;
    this.config = config;
    this.supervisor = supervisor;
    this.auth = auth;
    this.acceptor = acceptor;
    this.frontPort = frontPort;
  }

  /**
   * Launches a Data Server and waits for its INIT ({@link Supervisor.Launcher}): at start on the
   * main thread, later on the supervisor's. On failure the process is killed, unless a stop began
   * (the stop then deals with it).
   */
  public Supervisor.Peer launch() throws IOException {
    List<String> command = JavaCommand.of(DataServer.class,
        ServerConfig.dataServerJvmOptions(),
        config.dataServerArgs(acceptor.port(), frontPort));
    ProcessBuilder builder = new ProcessBuilder(command)
        .redirectInput(ProcessBuilder.Redirect.PIPE)
        .redirectOutput(ProcessBuilder.Redirect.INHERIT)
        .redirectError(ProcessBuilder.Redirect.INHERIT);
    Supervisor.Peer peer;
    try {
      peer = supervisor.track(builder);
    } catch (IOException e) {
      throw front.lifecycle().isStopping()
          ? new StartException("stopped during start") : e;
    }
    auth.writeTo(peer.process.getOutputStream()); // Its stdin: the pair secret, then closed.
    ServerLog.info("launched data server pid " + peer.pid());
    try {
      awaitInit(peer);
    } catch (IOException | RuntimeException e) {
      supervisor.abandonLaunch(peer);
      throw e;
    }
    peer.process.onExit().thenRun(() -> supervisor.peerDown(peer, peer.exitDescription()));
    return peer;
  }

  /**
   * Waits for an authenticated INIT from {@code peer} (PROTOCOL.md §7.1), starts the link and
   * makes the peer the endpoint. The {@link ControlAcceptor} runs the handshakes; this only names
   * the peer it waits for and waits, waking every {@value ServerConfig#INIT_ACCEPT_POLL_MILLIS} ms
   * to notice a peer that died before it connected, or a stop.
   */
  public void awaitInit(Supervisor.Peer peer) throws IOException {
    long deadline =
        System.nanoTime() + ServerConfig.DATA_START_TIMEOUT_MILLIS * 1_000_000L;
    ControlAcceptor.Awaited w = new ControlAcceptor.Awaited(peer);
    acceptor.expect(w);
    ControlAcceptor.Handshake hs = null;
    try {
      while (hs == null) {
        if (front.lifecycle().isStopping() || supervisor.isStopped()) {
          throw new StartException("stopped during start");
        }
        if (peer.isGone()) {
          throw new StartException(peer.process != null
              ? "the data server exited during start with code " + peer.process.exitValue()
                  + " (see its log lines above)"
              : "the data server (pid " + peer.pid() + ") is gone");
        }
        long remaining = Deadlines.remainingMillis(deadline);
        if (remaining == 0) {
          throw new StartException("the data server (pid " + peer.pid()
              + ") did not report ready (INIT) within " + ServerConfig.DATA_START_TIMEOUT_MILLIS
              + " ms");
        }
        try {
          hs = w.won.get(Math.min(ServerConfig.INIT_ACCEPT_POLL_MILLIS, remaining),
              TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
          // The checks above run again.
        } catch (ExecutionException e) {
          throw new IllegalStateException("a handshake future never fails", e);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new StartException("interrupted during start");
        }
      }
    } finally {
      acceptor.expect(null);
      // A handshake that completes from now on finds the future done and closes its link.
      if (!w.won.complete(null) && hs == null) {
        ControlAcceptor.Handshake late = w.won.getNow(null);
        if (late != null) {
          late.link.close();
        }
      }
    }
    if (!front.lifecycle().linkUnlessStopping(peer, hs.link)) {
      // The stop found no link and sends SIGTERM; the Data Server stops on that.
      throw new StartException("stopped during start");
    }
    ControlAcceptor.Handshake done = hs;
    hs.link.start(dataLinkHandler(peer));
    supervisor.ifUp(peer,
        () -> front.setEndpoint(new DataEndpoint(peer.pid(), done.clientPort)));
  }

  /** The Front Server's reactions to its Data Server's control connection. */
  private ControlLink.Handler dataLinkHandler(Supervisor.Peer peer) {
    return new PeerLinkHandler(supervisor, peer, front.lifecycle()::isStopping, (h, buf) -> {
      if (ControlLink.isRequest(h, Opcode.SHUTDOWN)) {
        // PROTOCOL.md §7.3: the Data Server got SIGINT/SIGTERM and stops in order; its end is
        // no crash. Both stop.
        peer.stoppingOnPurpose = true;
        front.setEndpoint(null);
        ServerLog.info("data server (pid " + peer.pid() + ") is stopping on purpose; the front"
            + " server stops too");
        front.requestStop("the data server is stopping on purpose");
        return;
      }
      if (h.magic == Protocol.RESPONSE_MAGIC && h.opcode == Opcode.SHUTDOWN.code()) {
        ServerLog.info("data server acknowledged SHUTDOWN");
        return;
      }
      throw new ProtocolException("unexpected control message " + h);
    });
  }
}
