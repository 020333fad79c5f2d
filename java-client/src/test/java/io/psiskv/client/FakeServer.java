package io.psiskv.client;

import static io.psiskv.protocol.Protocol.HEADER_BYTES;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.Arrays;

/**
 * A scripted in-process stand-in for the two servers, to test the client's side of the protocol
 * (including answers no correct server gives) without starting processes. It answers HELLO with
 * its own data port and SESSION with a fixed session, then hands every data request to a {@link
 * Script}.
 */
final class FakeServer implements AutoCloseable {
  static final long SESSION_ID = 0x1122334455667788L;

  /** Answers one data request; {@code body} is the request body. May write anything, or close. */
  interface Script {
    void answer(Header request, byte[] body, OutputStream out) throws IOException;
  }

  private final ServerSocket front;
  private final ServerSocket data;
  private final Thread thread;
  private final int maxValueBytes;
  private volatile Script script;

  FakeServer(int maxValueBytes, Script script) throws IOException {
    InetAddress loopback = InetAddress.getLoopbackAddress();
    this.front = new ServerSocket(0, 50, loopback);
    this.data = new ServerSocket(0, 50, loopback);
    this.maxValueBytes = maxValueBytes;
    this.script = script;
    this.thread = new Thread(this::run, "fake-server");
    thread.setDaemon(true);
    thread.start();
  }

  int port() {
    return front.getLocalPort();
  }

  /** One client at a time: the front connection, then its data connection. */
  private void run() {
    byte[] buf = new byte[64];
    Header h = new Header();
    try {
      while (true) {
        try (Socket f = front.accept()) {
          DataInputStream in = new DataInputStream(f.getInputStream());
          in.readFully(buf, 0, HEADER_BYTES);
          h.decode(buf, 0);
          f.getOutputStream().write(buf, 0, Messages.helloOk(buf, h.requestId, 0, data.getLocalPort()));
        }
        try (Socket d = data.accept()) {
          DataInputStream in = new DataInputStream(d.getInputStream());
          OutputStream out = d.getOutputStream();
          in.readFully(buf, 0, HEADER_BYTES + 8);
          h.decode(buf, 0);
          out.write(buf, 0, Messages.sessionOk(buf, h.requestId, SESSION_ID, maxValueBytes));
          while (true) {
            in.readFully(buf, 0, HEADER_BYTES);
            h.decode(buf, 0);
            byte[] body = new byte[(int) h.bodyLength];
            in.readFully(body);
            script.answer(h, body, out);
          }
        } catch (IOException endOfClient) {
          // The client closed or the script closed: accept the next client.
        }
      }
    } catch (IOException closed) {
      // close() was called.
    }
  }

  /** A script that behaves like a correct server over one in-memory map. */
  static Script correct(java.util.Map<Integer, byte[]> map) {
    return (h, body, out) -> {
      byte[] b = new byte[HEADER_BYTES + 4];
      Opcode op = Opcode.of(h.opcode);
      switch (op) {
        case PUT: {
          boolean overwrite = h.flagsOrStatus == 1;
          boolean stored = overwrite || !map.containsKey(h.key);
          if (stored) {
            map.put(h.key, body);
          }
          out.write(b, 0, Messages.status(b, h.opcode,
              stored ? io.psiskv.protocol.Status.OK : io.psiskv.protocol.Status.KEY_EXISTS,
              h.key, h.requestId));
          break;
        }
        case GET: {
          byte[] v = map.get(h.key);
          if (v == null) {
            out.write(b, 0, Messages.status(b, h.opcode, io.psiskv.protocol.Status.NOT_FOUND,
                h.key, h.requestId));
          } else {
            int cap = Header.getU32(body, 0);
            int sent = (int) Math.min(Integer.toUnsignedLong(cap), v.length);
            out.write(b, 0, Messages.getOkPrefix(b, h.key, h.requestId, v.length, sent));
            out.write(Arrays.copyOf(v, sent));
          }
          break;
        }
        case DELETE: {
          boolean had = map.remove(h.key) != null;
          out.write(b, 0, Messages.status(b, h.opcode,
              had ? io.psiskv.protocol.Status.OK : io.psiskv.protocol.Status.NOT_FOUND,
              h.key, h.requestId));
          break;
        }
        default:
          throw new IOException("unexpected " + op);
      }
    };
  }

  void setScript(Script script) {
    this.script = script;
  }

  @Override
  public void close() throws IOException {
    front.close();
    data.close();
  }
}
