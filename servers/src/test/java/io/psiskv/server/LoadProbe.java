package io.psiskv.server;

import static io.psiskv.protocol.Protocol.HEADER_BYTES;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Status;
import java.io.DataInputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.LongAdder;

/**
 * A throughput probe, run by hand (not a test): N client threads, each on its own data
 * connection, doing a mix of 50% GET, 40% PUT (overwrite) and 10% DELETE on a shared key space,
 * for a fixed time; prints operations per second. The client loop reuses its buffers so that the
 * probe measures the server rather than itself (they share the machine).
 *
 * <pre>
 *   java -cp servers/target/test-classes:servers/target/classes:java-client/target/classes \
 *       io.psiskv.server.LoadProbe HOST FRONT_PORT THREADS SECONDS VALUE_BYTES
 * </pre>
 */
public final class LoadProbe {
  private LoadProbe() {}

  public static void main(String[] args) throws Exception {
    String host = args[0];
    int frontPort = Integer.parseInt(args[1]);
    int threads = Integer.parseInt(args[2]);
    int seconds = Integer.parseInt(args[3]);
    int valueBytes = Integer.parseInt(args[4]);
    int keys = 100_000;

    int dataPort;
    try (Socket front = new Socket(host, frontPort)) {
      byte[] b = new byte[64];
      front.getOutputStream().write(b, 0, Messages.hello(b, 1));
      DataInputStream in = new DataInputStream(front.getInputStream());
      in.readFully(b, 0, HEADER_BYTES + 6);
      dataPort = Header.getU16(b, HEADER_BYTES + 4);
    }

    LongAdder ops = new LongAdder();
    CountDownLatch ready = new CountDownLatch(threads);
    CountDownLatch go = new CountDownLatch(1);
    volatileStop = false;
    Thread[] workers = new Thread[threads];
    for (int t = 0; t < threads; t++) {
      int seed = t;
      workers[t] = new Thread(() -> {
        try {
          run(host, dataPort, seed, keys, valueBytes, ops, ready, go);
        } catch (Exception e) {
          e.printStackTrace();
        }
      });
      workers[t].start();
    }
    ready.await();
    long start = System.nanoTime();
    go.countDown();
    Thread.sleep(seconds * 1000L);
    volatileStop = true;
    long n = ops.sum();
    double elapsed = (System.nanoTime() - start) / 1e9;
    for (Thread w : workers) {
      w.join();
    }
    System.out.printf("%d threads, %d-byte values: %d ops in %.1f s = %.0f ops/s%n", threads,
        valueBytes, n, elapsed, n / elapsed);
  }

  private static volatile boolean volatileStop;

  private static void run(String host, int port, int seed, int keys, int valueBytes,
      LongAdder ops, CountDownLatch ready, CountDownLatch go) throws Exception {
    try (Socket s = new Socket()) {
      s.setTcpNoDelay(true);
      s.connect(new InetSocketAddress(host, port));
      OutputStream out = s.getOutputStream();
      DataInputStream in = new DataInputStream(s.getInputStream());
      byte[] req = new byte[HEADER_BYTES + 64 + valueBytes];
      byte[] resp = new byte[HEADER_BYTES + 4 + valueBytes + 64];
      Header h = new Header();
      out.write(req, 0, Messages.session(req, 1, 0, null));
      in.readFully(resp, 0, HEADER_BYTES + Protocol.SESSION_RESPONSE_BODY_BYTES);
      SplittableRandom random = new SplittableRandom(seed);
      long id = 2;
      ready.countDown();
      go.await();
      long local = 0;
      while (!volatileStop) {
        int key = random.nextInt(keys);
        int op = random.nextInt(10);
        int len;
        if (op < 5) {
          len = Messages.get(req, key, id, valueBytes);
        } else if (op < 9) {
          len = Messages.putHeader(req, key, id, true, valueBytes);
          len += valueBytes; // Value bytes: whatever is in the buffer.
        } else {
          len = Messages.delete(req, key, id);
        }
        out.write(req, 0, len);
        in.readFully(resp, 0, HEADER_BYTES);
        h.decode(resp, 0);
        if (h.bodyLength > 0) {
          in.readFully(resp, HEADER_BYTES, (int) h.bodyLength);
        }
        if (h.requestId != id || Status.of(h.flagsOrStatus).code() >= 0x10
            || (op >= 5 && op < 9 && h.opcode != Opcode.PUT.code())) {
          throw new IllegalStateException("bad response " + h);
        }
        id++;
        local++;
        if ((local & 255) == 0) {
          ops.add(256);
        }
      }
      ops.add(local & 255);
    }
  }
}
