package io.psiskv.client;

import static com.google.common.truth.Truth.assertThat;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The receive buffer against a scripted stream, no socket: how many reads a response costs, where
 * each read puts its bytes and how many it asks for, and that bytes come out in order whatever
 * pieces they arrive in.
 */
class ResponseReaderTest {
  /** A 124-byte GET answer as far as this class cares: header, stored length, 100-byte value. */
  private static final int HEADER = 20;
  private static final int PREFIX = 4;
  private static final int VALUE = 100;

  /**
   * Hands out {@code data}: the first reads at most {@code pieces[0]}, {@code pieces[1]}, ... bytes,
   * every later one at most {@code then} (0: as many as asked). Records every read: the array it
   * was given and how many bytes it asked for.
   */
  private static final class ScriptedStream extends InputStream {
    private final byte[] data;
    private final int[] pieces;
    private final int then;
    private int pos;
    final List<byte[]> into = new ArrayList<>();
    final List<Integer> asked = new ArrayList<>();

    ScriptedStream(byte[] data, int[] pieces, int then) {
      this.data = data;
      this.pieces = pieces;
      this.then = then;
    }

    ScriptedStream(byte[] data, int then) {
      this(data, new int[0], then);
    }

    @Override
    public int read() {
      throw new AssertionError("the reader reads into arrays");
    }

    @Override
    public int read(byte[] b, int off, int len) {
      int piece = asked.size() < pieces.length ? pieces[asked.size()] : then;
      into.add(b);
      asked.add(len);
      if (pos == data.length) {
        return -1;
      }
      int n = Math.min(len, data.length - pos);
      if (piece > 0) {
        n = Math.min(n, piece);
      }
      System.arraycopy(data, pos, b, off, n);
      pos += n;
      return n;
    }

    int reads() {
      return asked.size();
    }
  }

  private static byte[] counting(int n) {
    byte[] b = new byte[n];
    for (int i = 0; i < n; i++) {
      b[i] = (byte) (i * 7 + 3);
    }
    return b;
  }

  /** Takes a header and a stored length and copies the value, as KvClient reads a GET answer. */
  private static byte[] readAnswer(ResponseReader r, int valueBytes) throws IOException {
    byte[] got = new byte[HEADER + PREFIX + valueBytes];
    System.arraycopy(r.bytes(), r.take(HEADER), got, 0, HEADER);
    System.arraycopy(r.bytes(), r.take(PREFIX), got, HEADER, PREFIX);
    r.readFully(got, HEADER + PREFIX, valueBytes);
    return got;
  }

  @Test
  void aSmallAnswerTakesOneRead() throws IOException {
    byte[] answer = counting(HEADER + PREFIX + VALUE);
    ScriptedStream s = new ScriptedStream(answer, 0);
    ResponseReader r = new ResponseReader(s, 1024);
    assertThat(readAnswer(r, VALUE)).isEqualTo(answer);
    assertThat(s.reads()).isEqualTo(1);
    assertThat(s.asked).containsExactly(1024);
    assertThat(r.unread()).isEqualTo(0);
  }

  @Test
  void anAnswerOneByteAtATimeComesOutWhole() throws IOException {
    byte[] answer = counting(HEADER + PREFIX + VALUE);
    ScriptedStream s = new ScriptedStream(answer, 1);
    ResponseReader r = new ResponseReader(s, 1024);
    assertThat(readAnswer(r, VALUE)).isEqualTo(answer);
    assertThat(s.reads()).isEqualTo(answer.length);
    assertThat(r.unread()).isEqualTo(0);
  }

  @Test
  void anAnswerInTwoPiecesTakesTwoReadsWhereverItIsCut() throws IOException {
    byte[] answer = counting(HEADER + PREFIX + VALUE);
    for (int cut : new int[] {1, 7, HEADER, HEADER + 2, HEADER + PREFIX, HEADER + PREFIX + 30,
        answer.length - 1}) {
      ScriptedStream s = new ScriptedStream(answer, new int[] {cut}, 0);
      ResponseReader r = new ResponseReader(s, 1024);
      assertThat(readAnswer(r, VALUE)).isEqualTo(answer);
      assertThat(s.reads()).isEqualTo(2);
      assertThat(r.unread()).isEqualTo(0);
    }
  }

  @Test
  void bytesAfterAnAnswerStayUnread() throws IOException {
    byte[] stream = counting(HEADER + PREFIX + VALUE + 4);
    ResponseReader r = new ResponseReader(new ScriptedStream(stream, 0), 1024);
    readAnswer(r, VALUE);
    assertThat(r.unread()).isEqualTo(4);
  }

  @Test
  void theRestOfALongValueIsReadStraightIntoTheDestinationAndNoFurther() throws IOException {
    int capacity = 64;
    int valueBytes = 1000;
    byte[] stream = counting(HEADER + PREFIX + valueBytes + 50); // 50 bytes of the next answer
    ScriptedStream s = new ScriptedStream(stream, 0);
    ResponseReader r = new ResponseReader(s, capacity);
    r.take(HEADER);
    r.take(PREFIX);
    byte[] value = new byte[valueBytes];
    r.readFully(value, 0, valueBytes);
    assertThat(value).isEqualTo(Arrays.copyOfRange(stream, HEADER + PREFIX, HEADER + PREFIX
        + valueBytes));
    assertThat(s.reads()).isEqualTo(2);
    assertThat(s.into.get(1)).isSameInstanceAs(value);
    assertThat(s.asked.get(1)).isEqualTo(valueBytes - (capacity - HEADER - PREFIX));
    assertThat(r.unread()).isEqualTo(0);
  }

  @Test
  void aReadStraightIntoTheDestinationAsksForAtMostOneTransfer() throws IOException {
    int valueBytes = 2 * Connection.TRANSFER_MAX_BYTES + 17;
    ScriptedStream s = new ScriptedStream(counting(valueBytes), 0);
    ResponseReader r = new ResponseReader(s, 64);
    byte[] value = new byte[valueBytes];
    r.readFully(value, 0, valueBytes);
    assertThat(value).isEqualTo(counting(valueBytes));
    assertThat(s.asked).containsExactly(Connection.TRANSFER_MAX_BYTES, Connection.TRANSFER_MAX_BYTES,
        17).inOrder();
  }

  @Test
  void takeMovesUnreadBytesToTheFrontWhenTheRoomBehindThemIsTooSmall() throws IOException {
    byte[] stream = counting(100);
    ResponseReader r = new ResponseReader(new ScriptedStream(stream, 30), 32);
    byte[] got = new byte[100];
    int off = 0;
    for (int n : new int[] {20, 4, 20, 4, 20, 4, 20, 8}) {
      System.arraycopy(r.bytes(), r.take(n), got, off, n);
      off += n;
    }
    assertThat(got).isEqualTo(stream);
  }

  @Test
  void aValueLongerThanTheFirstArrayComesOutWhole() throws IOException {
    int valueBytes = 3 * ResponseReader.VALUE_INITIAL_BYTES + 5;
    ResponseReader r = new ResponseReader(new ScriptedStream(counting(valueBytes), 0), 64);
    assertThat(r.readValue(valueBytes)).isEqualTo(counting(valueBytes));
    assertThat(new ResponseReader(new ScriptedStream(new byte[0], 0), 64).readValue(0)).isEmpty();
  }

  /** Found by ResponseDecodingFuzzTest: KvClient.get allocated the stored length announced. */
  @Test
  void aValueAnnouncedLongerThanItsBytesAllocatesWhatArrivedNotWhatWasAnnounced()
      throws IOException {
    com.sun.management.ThreadMXBean threads =
        (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
    ResponseReader r = new ResponseReader(new ScriptedStream(counting(10), 0), 64);
    long before = threads.getCurrentThreadAllocatedBytes();
    assertThrows(EOFException.class, () -> r.readValue(Integer.MAX_VALUE - 16));
    long allocated = threads.getCurrentThreadAllocatedBytes() - before;
    assertThat(allocated).isLessThan(2L * ResponseReader.VALUE_INITIAL_BYTES);
  }

  @Test
  void endOfStreamInTheMiddleIsAnEofException() throws IOException {
    ResponseReader r = new ResponseReader(new ScriptedStream(counting(HEADER + 2), 0), 1024);
    r.take(HEADER);
    assertThrows(EOFException.class, () -> r.take(PREFIX));
    ResponseReader s = new ResponseReader(new ScriptedStream(counting(HEADER + 10), 0), 1024);
    s.take(HEADER);
    assertThrows(EOFException.class, () -> s.readFully(new byte[20], 0, 20));
  }
}
