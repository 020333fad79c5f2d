package io.psiskv.server.control;

import io.psiskv.protocol.Header;
import java.io.IOException;
import java.util.function.BooleanSupplier;

/**
 * A supervised peer's control-link reactions, the same on both sides: the end of the link and
 * the peer's silence go to the {@link Supervisor}; the messages go to the server's own {@link
 * Messages}. Nothing is judged while this process is stopping or the peer is stopping on purpose.
 */
public final class PeerLinkHandler implements ControlLink.Handler {
  /** The server's answers to its peer's messages ({@link ControlLink.Handler#onMessage}). */
  public interface Messages {
    void onMessage(Header h, byte[] buf) throws IOException;
  }

  private final Supervisor supervisor;
  private final Supervisor.Peer peer;
  private final BooleanSupplier stopping;
  private final Messages messages;

  /**
   * @param stopping whether this process is stopping (and no longer cares that the peer ends)
   */
  public PeerLinkHandler(Supervisor supervisor, Supervisor.Peer peer, BooleanSupplier stopping,
      Messages messages) {
    this.supervisor = supervisor;
    this.peer = peer;
    this.stopping = stopping;
    this.messages = messages;
  }

  @Override
  public void onMessage(Header h, byte[] buf) throws IOException {
    messages.onMessage(h, buf);
  }

  @Override
  public void onClosed(String reason) {
    supervisor.linkClosed(peer, reason, stopping.getAsBoolean());
  }

  @Override
  public void onSilent(long silentMillis, boolean first) {
    supervisor.silent(peer, silentMillis, first,
        stopping.getAsBoolean() || peer.stoppingOnPurpose);
  }
}
