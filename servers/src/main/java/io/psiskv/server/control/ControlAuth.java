package io.psiskv.server.control;

import io.psiskv.protocol.Protocol;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.HexFormat;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The pair secret and the proofs of the control handshake (PROTOCOL.md §7.1): only the pair's own
 * processes may speak on the control connection.
 *
 * <p>The Front Server a user starts makes the secret ({@link #generate}, 32 bytes of {@link
 * SecureRandom}); a process hands it to each process it launches as the first line of that
 * child's standard input ({@link #writeTo}, {@link #readFrom}), a pipe that no other user can
 * read. No file holds it. Each control connection then proves both ends know it: the Front Server
 * sends a nonce (CHALLENGE), the Data Server answers INIT with its own nonce and {@link
 * #initMac}, the Front Server answers INIT OK with {@link #initOkMac}; each side compares in
 * constant time ({@link #matches}).
 *
 * <p>Immutable and thread-safe; a {@link Mac} is made per call (handshakes are rare).
 */
public final class ControlAuth {
  /** Bytes of the pair secret. */
  static final int SECRET_BYTES = 32;
  private static final String ALGORITHM = "HmacSHA256";
  private static final byte[] INIT_LABEL = "psiskv INIT".getBytes(StandardCharsets.US_ASCII);
  private static final byte[] INIT_OK_LABEL =
      "psiskv INIT OK".getBytes(StandardCharsets.US_ASCII);
  private static final SecureRandom RANDOM = new SecureRandom();

  private final byte[] secret;

  private ControlAuth(byte[] secret) {
    if (secret.length != SECRET_BYTES) {
      throw new IllegalArgumentException("a pair secret has " + SECRET_BYTES + " bytes");
    }
    this.secret = secret.clone();
  }

  /** A new pair secret, for a Front Server started by a user. */
  public static ControlAuth generate() {
    byte[] s = new byte[SECRET_BYTES];
    RANDOM.nextBytes(s);
    return new ControlAuth(s);
  }

  /** For tests: a given secret. */
  static ControlAuth of(byte[] secret) {
    return new ControlAuth(secret);
  }

  /** Hands the secret to a launched child: one line of hex on its stdin, then stdin closes. */
  public void writeTo(OutputStream childStdin) throws IOException {
    try (OutputStream out = childStdin) {
      out.write((HexFormat.of().formatHex(secret) + "\n").getBytes(StandardCharsets.US_ASCII));
    }
  }

  /**
   * The secret a launching process wrote on this process's stdin ({@link #writeTo}).
   *
   * @throws IOException if stdin ends first or holds no such line (the process was not started by
   *     its pair: {@code psiskv-server} starts the Front Server, which starts the Data Server)
   */
  public static ControlAuth readFrom(InputStream stdin) throws IOException {
    String line = new BufferedReader(new InputStreamReader(stdin, StandardCharsets.US_ASCII))
        .readLine();
    if (line == null || line.length() != 2 * SECRET_BYTES) {
      throw new IOException("no pair secret on standard input: this process is started by its"
          + " peer server only (start the pair with build-scripts/psiskv-server)");
    }
    try {
      return new ControlAuth(HexFormat.of().parseHex(line));
    } catch (IllegalArgumentException e) {
      throw new IOException("the pair secret on standard input is not hex");
    }
  }

  /** A fresh nonce for CHALLENGE or INIT. */
  public static byte[] nonce() {
    byte[] n = new byte[Protocol.NONCE_BYTES];
    RANDOM.nextBytes(n);
    return n;
  }

  /** The INIT MAC: HMAC(secret, "psiskv INIT" || n1 || port || pid || n2). */
  public byte[] initMac(byte[] n1, int clientPort, long pid, byte[] n2) {
    ByteBuffer fields = ByteBuffer.allocate(2 + 8).putShort((short) clientPort).putLong(pid);
    return mac(INIT_LABEL, n1, fields.array(), n2);
  }

  /** The INIT OK MAC: HMAC(secret, "psiskv INIT OK" || n2 || front pid || n1). */
  public byte[] initOkMac(byte[] n2, long frontPid, byte[] n1) {
    return mac(INIT_OK_LABEL, n2, ByteBuffer.allocate(8).putLong(frontPid).array(), n1);
  }

  /** Constant-time comparison of a received MAC with the expected one. */
  public static boolean matches(byte[] expected, byte[] received) {
    return MessageDigest.isEqual(expected, received);
  }

  private byte[] mac(byte[]... parts) {
    try {
      Mac m = Mac.getInstance(ALGORITHM);
      m.init(new SecretKeySpec(secret, ALGORITHM));
      for (byte[] p : parts) {
        m.update(p);
      }
      return m.doFinal();
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("HMAC-SHA256 is part of every JDK", e);
    }
  }
}
