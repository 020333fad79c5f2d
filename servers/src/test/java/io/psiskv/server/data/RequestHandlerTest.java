package io.psiskv.server.data;

import static com.google.common.truth.Truth.assertThat;
import static io.psiskv.protocol.Protocol.HEADER_BYTES;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Status;
import io.psiskv.server.backup.BackupLog;
import io.psiskv.server.backup.BackupLogTestChannel;
import io.psiskv.server.backup.BackupLogTestSupport;
import io.psiskv.server.backup.FsyncPolicy;
import io.psiskv.server.store.Engine;
import io.psiskv.server.store.Sessions;
import io.psiskv.server.store.Store;
import io.psiskv.server.testkit.RawClient;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The data connection's protocol with no socket ({@link RequestHandler} through {@link
 * HandlerHarness}): a request stream fed whole, split at every byte boundary, one byte and five
 * bytes at a time gives the same answers byte for byte (as Netty tests its decoders); hostile
 * input gets its error and consumes nothing more; nothing is allocated for a claimed length; the
 * answers of writes wait for their records and turn into SERVER_ERROR when the log fails.
 */
class RequestHandlerTest {
  private static final int MAX_VALUE_BYTES = 1 << 20;
  /** A resumed session id makes the SESSION answer, and so the whole output, deterministic. */
  private static final long SESSION = 0x0123456789ABCDEFL;
  /** The secret every test session is resumed (created) with. */
  static final byte[] SECRET = "0123456789abcdef".getBytes(java.nio.charset.StandardCharsets.US_ASCII);

  @TempDir Path dir;
  private final List<Engine> engines = new ArrayList<>();
  private int engineNumber;

  @AfterEach
  void closeEngines() throws IOException {
    for (Engine e : engines) {
      e.close();
    }
  }

  private Engine freshEngine() throws IOException {
    Path d = Files.createDirectories(dir.resolve("e" + engineNumber++));
    Engine e = Engine.open(d, FsyncPolicy.ALWAYS, false, 1_000);
    engines.add(e);
    return e;
  }

  private HandlerHarness harness() throws IOException {
    return new HandlerHarness(freshEngine(), new BodyBudget(64L << 20), MAX_VALUE_BYTES);
  }

  /** Requests of every kind, a value large enough to be accumulated, and reads of each result. */
  private static byte[] conversation() {
    byte[] big = new byte[40_000];
    for (int i = 0; i < big.length; i++) {
      big[i] = (byte) (i * 31);
    }
    Requests r = new Requests();
    r.session(SESSION);
    r.ping();
    r.put(7, "seven".getBytes(), false);
    r.put(7, "again".getBytes(), false); // KEY_EXISTS
    r.get(7, 100);
    r.put(7, big, true);
    r.get(7, 5); // Truncated to the capacity.
    r.get(7, big.length); // Larger than the inline bound: sent from the stored array.
    r.put(8, new byte[0], false);
    r.get(8, 10);
    r.delete(7);
    r.delete(7); // NOT_FOUND
    r.get(7, 10); // NOT_FOUND
    return r.bytes();
  }

  private byte[] answersFedIn(byte[] stream, int... cuts) throws IOException {
    HandlerHarness h = harness();
    int from = 0;
    for (int cut : cuts) {
      h.feed(Arrays.copyOfRange(stream, from, cut));
      from = cut;
    }
    assertThat(h.feed(Arrays.copyOfRange(stream, from, stream.length)))
        .isEqualTo(RequestHandler.Outcome.NEED_INPUT);
    assertThat(h.unconsumed()).isEqualTo(0);
    assertThat(h.handler.partialSinceNanos()).isEqualTo(0);
    return h.out.toByteArray();
  }

  @Test
  void wholeStreamIsAnsweredInOrder() throws IOException {
    List<Header> answers = headers(answersFedIn(conversation()));
    List<String> got = new ArrayList<>();
    for (Header a : answers) {
      got.add(Opcode.of(a.opcode) + " " + Status.of(a.flagsOrStatus));
    }
    assertThat(got).containsExactly("SESSION OK", "PING OK", "PUT OK", "PUT KEY_EXISTS",
        "GET OK", "PUT OK", "GET OK", "GET OK", "PUT OK", "GET OK", "DELETE OK",
        "DELETE NOT_FOUND", "GET NOT_FOUND").inOrder();
  }

  @Test
  void statsPipelinedPastTheReplyQueueIsAnsweredInOrderWithCountersThatMoved()
      throws IOException {
    // 60 answers of about 550 bytes fill the 16 KiB reply queue twice: OUTPUT_FULL, write, go on.
    Requests r = new Requests();
    r.stats(); // Before SESSION: allowed (PROTOCOL.md §6.7).
    r.session(SESSION);
    for (int i = 0; i < 30; i++) {
      r.stats();
    }
    r.put(1, "one".getBytes(), true);
    r.get(2, 10); // A miss.
    for (int i = 0; i < 30; i++) {
      r.stats();
    }
    byte[] stream = r.bytes();
    byte[] answers = answersFedIn(stream);
    List<Header> hs = headers(answers);
    assertThat(hs).hasSize(64);
    java.util.Map<String, Object> last = null;
    int off = 0;
    for (int i = 0; i < hs.size(); i++) {
      Header a = hs.get(i);
      assertThat(a.requestId).isEqualTo(i + 1);
      if (a.opcode == Opcode.STATS.code()) {
        assertThat(Status.of(a.flagsOrStatus)).isEqualTo(Status.OK);
        last = io.psiskv.protocol.StatsBody.decode(answers, off + HEADER_BYTES,
            (int) a.bodyLength);
      }
      off += HEADER_BYTES + (int) a.bodyLength;
    }
    assertThat(last.get("ops_stats")).isEqualTo(61L);
    assertThat(last.get("ops_put")).isEqualTo(1L);
    assertThat(last.get("get_misses")).isEqualTo(1L);
    assertThat(last.get("keys")).isEqualTo(1L);
    // A STATS answer counts every request byte up to its own and every answer byte before it.
    assertThat(last.get("bytes_in")).isEqualTo((long) stream.length);
    long lastAnswerBytes = HEADER_BYTES + hs.get(63).bodyLength;
    assertThat(last.get("bytes_out")).isEqualTo(off - lastAnswerBytes);
  }

  @Test
  void everySplitPointGivesTheSameAnswers() throws IOException {
    byte[] stream = conversation();
    byte[] expected = answersFedIn(stream);
    // Every cut in the small requests, and every 997th in the large value (and its edges).
    for (int cut = 1; cut < stream.length; cut += cut < 200 || cut > stream.length - 300 ? 1 : 997) {
      assertThat(answersFedIn(stream, cut)).isEqualTo(expected);
    }
  }

  @Test
  void oneByteAndFiveBytesAtATimeGiveTheSameAnswers() throws IOException {
    byte[] stream = conversation();
    byte[] expected = answersFedIn(stream);
    for (int step : new int[] {1, 5}) {
      HandlerHarness h = harness();
      for (int i = 0; i < stream.length; i += step) {
        h.feed(Arrays.copyOfRange(stream, i, Math.min(stream.length, i + step)));
      }
      assertThat(h.out.toByteArray()).isEqualTo(expected);
    }
  }

  @Test
  void answersAreWrittenEvenWhenThePeerTakesOneByteAtATime() throws IOException {
    byte[] stream = conversation();
    byte[] expected = answersFedIn(stream);
    HandlerHarness h = harness();
    h.out.perCall = 1;
    h.feed(stream);
    assertThat(h.out.toByteArray()).isEqualTo(expected);
  }

  @Test
  void aClaimedLengthAllocatesNothingButWhatArrives() throws IOException {
    HandlerHarness h = harness();
    Requests r = new Requests();
    r.session(SESSION);
    byte[] start = r.bytes();
    byte[] header = new byte[HEADER_BYTES];
    Messages.putHeader(header, 1, 9, false, MAX_VALUE_BYTES);
    assertThat(h.feed(concat(start, header, new byte[10]))).isEqualTo(
        RequestHandler.Outcome.NEED_INPUT);
    assertThat(h.budget.usedBytes()).isEqualTo(RequestHandler.BODY_INITIAL_BYTES);
    assertThat(h.handler.partialSinceNanos()).isNotEqualTo(0);
    assertThat(h.handler.describePartial(0))
        .isEqualTo("mid-body (10 of " + MAX_VALUE_BYTES + " value bytes); nothing applied");
    h.handler.close();
    assertThat(h.budget.usedBytes()).isEqualTo(0);
    assertThat(h.engine.get(1)).isNull();
  }

  @Test
  void aValueGrowsWithWhatArrivedAndIsExactWhenComplete() throws IOException {
    HandlerHarness h = harness();
    int len = 100_000;
    byte[] value = new byte[len];
    value[len - 1] = 42;
    Requests r = new Requests();
    r.session(SESSION);
    r.put(3, value, false);
    byte[] stream = r.bytes();
    int headerEnd = stream.length - len;
    h.feed(Arrays.copyOf(stream, headerEnd + 20_000));
    // 20,000 bytes arrived: the array doubled once from 16 KiB, never towards 100,000.
    assertThat(h.budget.usedBytes()).isEqualTo(2L * RequestHandler.BODY_INITIAL_BYTES);
    h.feed(Arrays.copyOfRange(stream, headerEnd + 20_000, stream.length));
    assertThat(h.budget.usedBytes()).isEqualTo(0);
    assertThat(h.engine.get(3)).isEqualTo(value);
  }

  @Test
  void pastTheBudgetOnlyTheOldestValueGrowsUntilBytesAreReleased() throws IOException {
    Engine engine = freshEngine();
    BodyBudget budget = new BodyBudget(40 * 1024);
    HandlerHarness first = new HandlerHarness(engine, budget, MAX_VALUE_BYTES);
    HandlerHarness second = new HandlerHarness(engine, budget, MAX_VALUE_BYTES);
    byte[][] streams = new byte[2][];
    byte[][] values = new byte[2][];
    for (int i = 0; i < 2; i++) {
      values[i] = new byte[200_000];
      Arrays.fill(values[i], (byte) (i + 1));
      Requests r = new Requests();
      r.session(SESSION + i);
      r.put(100 + i, values[i], false);
      streams[i] = r.bytes();
    }
    int head = streams[0].length - values[0].length;
    first.feed(Arrays.copyOf(streams[0], head + 10));
    second.feed(Arrays.copyOf(streams[1], head + 30_000));
    // The second got 16 KiB, then wanted 16 more: 32 + 16 > 40 KiB, and it is not the oldest.
    assertThat(second.last).isEqualTo(RequestHandler.Outcome.NEED_BUDGET);
    // The oldest may grow past the budget: no deadlock between values that wait for bytes.
    assertThat(first.feed(Arrays.copyOfRange(streams[0], head + 10, streams[0].length)))
        .isEqualTo(RequestHandler.Outcome.NEED_INPUT);
    assertThat(engine.get(100)).isEqualTo(values[0]);
    // Its bytes are released: the second goes on with what it had buffered, then finishes.
    assertThat(second.serve()).isEqualTo(RequestHandler.Outcome.NEED_INPUT);
    second.feed(Arrays.copyOfRange(streams[1], head + 30_000, streams[1].length));
    assertThat(engine.get(101)).isEqualTo(values[1]);
    assertThat(budget.usedBytes()).isEqualTo(0);
  }

  @Test
  void aFullReplyQueueStopsTheHandlerUntilItIsWritten() throws IOException {
    HandlerHarness h = harness();
    Requests r = new Requests();
    r.session(SESSION);
    r.put(5, new byte[10], true);
    int gets = 1000; // 1000 answers of 34 bytes do not fit in one 16 KiB queue.
    for (int i = 0; i < gets; i++) {
      r.get(5, 10);
    }
    RequestHandler handler = h.handler;
    java.nio.ByteBuffer in = java.nio.ByteBuffer.wrap(r.bytes());
    assertThat(handler.feed(in, 1)).isEqualTo(RequestHandler.Outcome.OUTPUT_FULL);
    assertThat(in.hasRemaining()).isTrue(); // Whole requests wait in the input.
    h.engine.commit(true);
    assertThat(handler.replies().settle(h.engine)).isTrue();
    handler.replies().writeTo(h.out);
    while (handler.feed(in, 1) == RequestHandler.Outcome.OUTPUT_FULL) {
      handler.replies().writeTo(h.out);
    }
    handler.replies().writeTo(h.out);
    assertThat(headers(h.out.toByteArray())).hasSize(2 + gets);
  }

  @Test
  void aWriteIsAnsweredOnlyOnceItsRecordIsDurable() throws IOException {
    HandlerHarness h = harness();
    h.autoCommit = false;
    Requests r = new Requests();
    r.session(SESSION);
    r.put(1, "v".getBytes(), false);
    h.feed(r.bytes());
    ReplyQueue replies = h.handler.replies();
    assertThat(replies.needSeq()).isGreaterThan(0L);
    assertThat(replies.settle(h.engine)).isFalse(); // Not durable: nothing may be written.
    assertThat(h.engine.hasUncommitted()).isTrue();
    assertThat(h.engine.commit(false)).isTrue();
    assertThat(replies.settle(h.engine)).isTrue();
    replies.writeTo(h.out);
    assertThat(headers(h.out.toByteArray()).get(1).flagsOrStatus).isEqualTo(Status.OK.code());
  }

  @Test
  void aWriteWhoseRecordFailsIsAnsweredServerError() throws IOException {
    BackupLogTestChannel.Faults faults = new BackupLogTestChannel.Faults();
    BackupLog.OpenOptions opts = BackupLog.OpenOptions.defaults();
    opts.channelOpener = faults.opener();
    Sessions sessions = new Sessions(1_000);
    Store store = new Store();
    BackupLog log = BackupLog.open(dir, FsyncPolicy.ALWAYS, new BackupLogTestSupport.Model(),
        opts);
    Engine engine = new Engine(store, sessions, log);
    HandlerHarness h = new HandlerHarness(engine, new BodyBudget(1 << 20), MAX_VALUE_BYTES);
    faults.failForce = true;
    Requests r = new Requests();
    r.session(SESSION);
    r.put(1, "lost?".getBytes(), false);
    h.feed(r.bytes());
    List<Header> answers = headers(h.out.toByteArray());
    assertThat(Status.of(answers.get(1).flagsOrStatus)).isEqualTo(Status.SERVER_ERROR);
    IOException closed = org.junit.jupiter.api.Assertions.assertThrows(IOException.class,
        engine::close);
    assertThat(closed).hasMessageThat().contains("closed with an error");
  }

  @Test
  void hostileInputIsAnsweredOnceAndNothingAfterItIsServed() throws IOException {
    HandlerHarness h = harness();
    byte[] bad = RawClient.header(0x47, 1, 1, 0, 0, 1, 0); // "G": text sent to the port
    Requests after = new Requests();
    after.session(SESSION);
    assertThat(h.feed(concat(bad, after.bytes()))).isEqualTo(RequestHandler.Outcome.CLOSE);
    assertThat(h.handler.isClosing()).isTrue();
    List<Header> answers = headers(h.out.toByteArray());
    assertThat(answers).hasSize(1);
    assertThat(Status.of(answers.get(0).flagsOrStatus)).isEqualTo(Status.BAD_REQUEST);
  }

  @Test
  void dataRequestsBeforeSessionAreNoSession() throws IOException {
    for (Opcode op : new Opcode[] {Opcode.GET, Opcode.PUT, Opcode.DELETE}) {
      HandlerHarness h = harness();
      Requests r = new Requests();
      if (op == Opcode.GET) {
        r.get(1, 10);
      } else if (op == Opcode.PUT) {
        r.put(1, new byte[3], false);
      } else {
        r.delete(1);
      }
      assertThat(h.feed(r.bytes())).isEqualTo(RequestHandler.Outcome.CLOSE);
      assertThat(Status.of(headers(h.out.toByteArray()).get(0).flagsOrStatus))
          .isEqualTo(Status.NO_SESSION);
    }
  }

  @Test
  void aPartialRequestIsDatedAndDescribed() throws IOException {
    HandlerHarness h = harness();
    Requests r = new Requests();
    r.session(SESSION);
    byte[] session = r.bytes();
    assertThat(h.feed(Arrays.copyOf(session, 7))).isEqualTo(RequestHandler.Outcome.NEED_INPUT);
    assertThat(h.handler.partialSinceNanos()).isNotEqualTo(0);
    assertThat(h.handler.describePartial(h.unconsumed())).isEqualTo("mid-header (7 of 20 bytes)");
    h.feed(Arrays.copyOfRange(session, 7, 22));
    assertThat(h.handler.describePartial(h.unconsumed())).isEqualTo("mid-body (2 of 24 bytes)");
    h.feed(Arrays.copyOfRange(session, 22, session.length));
    assertThat(h.handler.partialSinceNanos()).isEqualTo(0);
    assertThat(h.handler.hasSession()).isTrue();
  }

  // ---- Helpers.

  /** Builds a request stream with ascending ids. */
  static final class Requests {
    private final ByteArrayOutputStream out = new ByteArrayOutputStream();
    private final byte[] buf = new byte[Messages.MAX_FIXED_BYTES];
    private long id = 1;

    /** SESSION for {@code session} (0: a new one) with the test secret {@link #SECRET}. */
    void session(long session) {
      out.write(buf, 0, Messages.session(buf, id++, session, session == 0 ? null : SECRET));
    }

    void ping() {
      out.write(buf, 0, Messages.ping(buf, id++));
    }

    void put(int key, byte[] value, boolean overwrite) {
      out.write(buf, 0, Messages.putHeader(buf, key, id++, overwrite, value.length));
      out.write(value, 0, value.length);
    }

    void get(int key, int capacity) {
      out.write(buf, 0, Messages.get(buf, key, id++, capacity));
    }

    void delete(int key) {
      out.write(buf, 0, Messages.delete(buf, key, id++));
    }

    void stats() {
      out.write(buf, 0, Messages.stats(buf, id++));
    }

    byte[] bytes() {
      return out.toByteArray();
    }
  }

  /** The headers of a stream of answers (bodies skipped). */
  static List<Header> headers(byte[] answers) {
    List<Header> list = new ArrayList<>();
    for (int off = 0; off < answers.length; ) {
      Header h = new Header().decode(answers, off);
      list.add(h);
      off += HEADER_BYTES + (int) h.bodyLength;
    }
    return list;
  }

  static byte[] concat(byte[]... parts) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    for (byte[] p : parts) {
      out.write(p, 0, p.length);
    }
    return out.toByteArray();
  }
}
