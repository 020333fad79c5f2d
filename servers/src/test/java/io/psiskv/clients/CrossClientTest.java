package io.psiskv.clients;

import static com.google.common.truth.Truth.assertThat;

import io.psiskv.server.testkit.ServerFixture;
import java.util.Arrays;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/** What one client writes, the other reads: the two speak one protocol, byte for byte. */
@Tag("process")
@Tag("server-pair")
class CrossClientTest {
  @RegisterExtension
  static final ServerFixture SERVER = ServerFixture.builder().build();

  private static KvApi connect(Client client) {
    return client.connect(SERVER.host(), SERVER.port()).orElseThrow();
  }

  private static byte[] everyByte() {
    byte[] v = new byte[512];
    for (int i = 0; i < v.length; i++) {
      v[i] = (byte) (255 - i);
    }
    return v;
  }

  private static void crossCheck(Client writer, Client reader, int key) {
    byte[] value = everyByte();
    try (KvApi w = connect(writer); KvApi r = connect(reader)) {
      assertThat(w.write(key, value, false)).isEqualTo(0);
      assertThat(r.write(key, new byte[] {1}, false)).isEqualTo(-2);
      byte[] buf = new byte[1024];
      assertThat(r.read(key, buf, buf.length)).isEqualTo(value.length);
      assertThat(Arrays.copyOf(buf, value.length)).isEqualTo(value);
      assertThat(r.write(key, new byte[0], true)).isEqualTo(0);
      assertThat(w.read(key, buf, buf.length)).isEqualTo(0);
      assertThat(r.delete(key)).isEqualTo(0);
      assertThat(w.delete(key)).isEqualTo(-1);
      assertThat(w.read(key, buf, buf.length)).isEqualTo(-2);
    }
  }

  @Test
  void whatCWritesJavaReads() {
    crossCheck(Client.C, Client.JAVA, 0xC0FFEE);
  }

  @Test
  void whatJavaWritesCReads() {
    crossCheck(Client.JAVA, Client.C, 0xFFFFFFFF);
  }
}
